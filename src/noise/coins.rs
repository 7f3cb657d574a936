//! The primitive draws a mechanism is built from, behind a trait so a mechanism's
//! exact output distribution can be computed by enumerating them (tests/ldp_exact.rs).

use super::Ratio;
use super::bernoulli::{bern_exp_neg_u128, bern_u128, bernoulli_logistic};
use super::lanes::{bernoulli_logistic_bits, bernoulli_logistic_lanes};
use super::mixture::{Mixture, bernoulli_mixture};
use super::uniform::uniform_u64;
use crate::rng::CryptoRng;
use alloc::vec::Vec;
use core::num::NonZeroU64;

/// A source of exact primitive draws.
///
/// The LDP encoders are written against this trait only. [`RngCoins`] realises each
/// draw with the exact samplers of this module; an analysis can instead enumerate the
/// alternatives of each draw with their exact probabilities.
pub trait Coins {
    /// Uniform in `0..n`.
    fn uniform(&mut self, n: NonZeroU64) -> u64;
    /// Bernoulli(`num/den`); callers guarantee `num <= den`.
    fn bernoulli(&mut self, num: u64, den: NonZeroU64) -> bool;
    /// Bernoulli(exp(−γ)).
    fn bernoulli_exp_neg(&mut self, gamma: Ratio) -> bool;
    /// Bernoulli(1/(1 + exp(γ))).
    fn bernoulli_logistic(&mut self, gamma: Ratio) -> bool;
    /// Bernoulli((e^γ − 1)/(e^γ − 1 + D)) for the plan's γ and D ([`Mixture`]).
    fn bernoulli_mixture(&mut self, mix: &Mixture) -> bool;
    /// `lanes` (1 to 64) independent Bernoulli(1/(1 + exp(γ))) in the low bits of a word,
    /// the bits from `lanes` up zero. The default draws them one by one with
    /// [`Coins::bernoulli_logistic`]; [`RngCoins`] draws 64 at a time, bit-sliced
    /// ([`bernoulli_logistic_lanes`](super::bernoulli_logistic_lanes)), with the same law.
    fn bernoulli_logistic_lanes(&mut self, gamma: Ratio, lanes: u32) -> u64 {
        (0..lanes.min(64)).fold(0, |w, i| w | (u64::from(self.bernoulli_logistic(gamma)) << i))
    }

    /// `bits` independent Bernoulli(1/(1 + exp(γ))), 64 to a word (bit `i` is bit `i % 64`
    /// of word `i / 64`), the bits from `bits` up zero. The default draws each word with
    /// [`Coins::bernoulli_logistic_lanes`]; [`RngCoins`] shares the sampler's deeper steps
    /// across words ([`bernoulli_logistic_bits`](super::bernoulli_logistic_bits)), with
    /// the same law.
    fn bernoulli_logistic_bits(&mut self, gamma: Ratio, bits: u32) -> Vec<u64> {
        (0..bits.div_ceil(64))
            .map(|w| self.bernoulli_logistic_lanes(gamma, (bits - w * 64).min(64)))
            .collect()
    }
}

/// [`Coins`] drawn from a cryptographic RNG with the exact samplers.
///
/// ```
/// use confiance::{hazmat::ChaCha20Rng, noise::{Coins, RngCoins}};
/// use core::num::NonZeroU64;
/// use rand_core::SeedableRng;
/// let mut rng = ChaCha20Rng::seed_from_u64(3);
/// let mut coins = RngCoins::new(&mut rng);
/// assert!(coins.uniform(NonZeroU64::new(10).unwrap()) < 10);
/// ```
#[derive(Debug)]
pub struct RngCoins<'a, R: ?Sized>(&'a mut R);

impl<'a, R: CryptoRng + ?Sized> RngCoins<'a, R> {
    /// Draw from `rng`.
    pub fn new(rng: &'a mut R) -> Self {
        Self(rng)
    }
}

impl<R: CryptoRng + ?Sized> Coins for RngCoins<'_, R> {
    #[inline]
    fn uniform(&mut self, n: NonZeroU64) -> u64 {
        uniform_u64(self.0, n)
    }

    #[inline]
    fn bernoulli(&mut self, num: u64, den: NonZeroU64) -> bool {
        bern_u128(self.0, u128::from(num), u128::from(den.get()))
    }

    #[inline]
    fn bernoulli_exp_neg(&mut self, gamma: Ratio) -> bool {
        bern_exp_neg_u128(self.0, u128::from(gamma.numerator()), u128::from(gamma.denominator()))
    }

    #[inline]
    fn bernoulli_logistic(&mut self, gamma: Ratio) -> bool {
        bernoulli_logistic(self.0, gamma)
    }

    #[inline]
    fn bernoulli_mixture(&mut self, mix: &Mixture) -> bool {
        bernoulli_mixture(self.0, mix)
    }

    #[inline]
    fn bernoulli_logistic_lanes(&mut self, gamma: Ratio, lanes: u32) -> u64 {
        bernoulli_logistic_lanes(self.0, gamma, lanes)
    }

    #[inline]
    fn bernoulli_logistic_bits(&mut self, gamma: Ratio, bits: u32) -> Vec<u64> {
        bernoulli_logistic_bits(self.0, gamma, bits)
    }
}

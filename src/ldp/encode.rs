//! The encoders. Each one draws the same primitives in the same order whatever the
//! value, and compares with the value in constant time, so the distribution of running
//! time and random draws is the same for every input (tests/ldp_timing.rs).

use super::hash::olh_hash;
use super::{LdpError, LdpReport, LdpValue, Mechanism, Params};
use crate::noise::{Coins, Mixture, Ratio, RngCoins};
use crate::rng::CryptoRng;
use alloc::vec::Vec;
use core::num::NonZeroU64;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq, ConstantTimeLess};

impl Mechanism {
    /// Privatise one value.
    ///
    /// ```
    /// use confiance::ldp::{Domain, LdpReport, LdpValue, MechanismName, Selection};
    /// use confiance::{Epsilon, hazmat::{ChaCha20Rng, SeedableRng}};
    /// let s = Selection::new(Domain::Numeric { min: 0, max: 40 }, Epsilon::from_ratio(1, 1)?, MechanismName::Duchi)?;
    /// let m = s.for_period("thermostat.setpoint", 1_800_000_000);
    /// let mut rng = ChaCha20Rng::seed_from_u64(1); // tests only: devices use OsRng
    /// assert!(matches!(m.encode(LdpValue::Numeric(21), &mut rng)?, LdpReport::Duchi(_)));
    /// assert!(m.encode(LdpValue::Numeric(41), &mut rng).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LdpError::ValueKindMismatch`] or [`LdpError::OutOfDomain`]; never panics.
    pub fn encode<R: CryptoRng + ?Sized>(&self, value: LdpValue, rng: &mut R) -> Result<LdpReport, LdpError> {
        self.encode_with(value, &mut RngCoins::new(rng))
    }

    /// [`Mechanism::encode`] with an arbitrary source of primitive draws.
    ///
    /// # Errors
    /// As [`Mechanism::encode`].
    pub fn encode_with<C: Coins>(&self, value: LdpValue, coins: &mut C) -> Result<LdpReport, LdpError> {
        let x = self.offset(value)?;
        loop {
            if let Some(r) = self.round_unchecked(x, coins)? {
                return Ok(r);
            }
        }
    }

    /// One round of the encoder: `Some(report)` if accepted, `None` if the rejection
    /// sampler must try again. [`Mechanism::encode`] repeats rounds until one is
    /// accepted, so the output distribution is that of one round conditioned on
    /// acceptance — which lets an analysis compute it exactly from a single round.
    ///
    /// # Errors
    /// As [`Mechanism::encode`].
    pub fn round<C: Coins>(&self, value: LdpValue, coins: &mut C) -> Result<Option<LdpReport>, LdpError> {
        let x = self.offset(value)?;
        self.round_unchecked(x, coins)
    }

    /// The value as an offset in `0..d` or `0..=max − min`.
    fn offset(&self, value: LdpValue) -> Result<u64, LdpError> {
        match (self.domain(), value) {
            (super::Domain::Categorical { d }, LdpValue::Category(c)) => {
                if c < d {
                    Ok(u64::from(c))
                } else {
                    Err(LdpError::OutOfDomain)
                }
            }
            (super::Domain::Numeric { min, max }, LdpValue::Numeric(x)) => {
                if (min..=max).contains(&x) {
                    Ok(x.abs_diff(min))
                } else {
                    Err(LdpError::OutOfDomain)
                }
            }
            _ => Err(LdpError::ValueKindMismatch),
        }
    }

    fn round_unchecked<C: Coins>(&self, x: u64, coins: &mut C) -> Result<Option<LdpReport>, LdpError> {
        let eps = Ratio::from(self.epsilon());
        let nz = |n: u64| NonZeroU64::new(n).ok_or(LdpError::BadParameters);
        let accept_if = |c: Choice| -> bool { c.into() };
        let report = match *self.params() {
            Params::Grr { d: 2 } => {
                // Two values: keep with e^ε/(e^ε + 1), i.e. flip with Bernoulli(1/(1 + e^ε)),
                // one lane of the bit-sliced sampler (about half the words of the mixture coin
                // and a uniform draw, whose law is the same; docs/benchmarks.md).
                let flip = coins.bernoulli_logistic_lanes(eps, 1);
                Some(LdpReport::Grr(narrow(x ^ (flip & 1))))
            }
            Params::Grr { d } => {
                // GRR as a mixture (docs/privacy.md §2): with probability
                // q = (e^ε − 1)/(e^ε − 1 + d) the value, otherwise uniform over 0..d;
                // P(x) = e^ε/(e^ε + d − 1), P(y ≠ x) = 1/(e^ε + d − 1).
                let keep = coins.bernoulli_mixture(&mixture(eps, u64::from(d))?);
                let y = coins.uniform(nz(u64::from(d))?);
                Some(LdpReport::Grr(narrow(u64::conditional_select(&y, &x, Choice::from(u8::from(keep))))))
            }
            Params::Olh { g, pool, pool_key, .. } => {
                // GRR over 0..g of the value's hash under a uniformly chosen pool entry.
                let seed = coins.uniform(nz(u64::from(pool))?);
                let h = u64::from(olh_hash(pool_key, narrow(seed), narrow(x), g));
                let keep = coins.bernoulli_mixture(&mixture(eps, u64::from(g))?);
                let y = coins.uniform(nz(u64::from(g))?);
                let value = u64::conditional_select(&y, &h, Choice::from(u8::from(keep)));
                Some(LdpReport::Olh { seed: narrow(seed), value: narrow(value) })
            }
            Params::Hadamard { k, .. } => Some(hadamard(x, 1, k, 0, eps, coins)?),
            Params::HadamardBlocks { blocks, block_size, key, .. } => {
                Some(hadamard(x, blocks, block_size, key, eps, coins)?)
            }
            Params::Piecewise { step, window, outputs, .. } => {
                let start = x.saturating_mul(step);
                let y = coins.uniform(nz(outputs)?);
                let b = coins.bernoulli_exp_neg(eps);
                let inside = y.wrapping_sub(start).ct_lt(&window);
                accept_if(inside | Choice::from(u8::from(b))).then_some(LdpReport::Piecewise(y))
            }
            Params::Duchi { min, max } => {
                let range = nz(max.abs_diff(min))?;
                let bit = coins.bernoulli(x, range);
                let flip = coins.bernoulli_logistic(eps);
                Some(LdpReport::Duchi(bit ^ flip))
            }
            Params::Oue { d } => {
                // Own position: a fair coin; every other: Bernoulli(1/(e^ε + 1)).
                let c = u64::from(coins.bernoulli(1, NonZeroU64::MIN.saturating_add(1)));
                Some(LdpReport::Oue(unary(d, x, eps, coins, |_| c)))
            }
            Params::Sue { d } => {
                // Every position flipped with probability 1/(e^{ε/2} + 1): the noise bit,
                // inverted at the own position.
                let half = eps.half().map_err(|_| LdpError::BadParameters)?;
                Some(LdpReport::Sue(unary(d, x, half, coins, |noise| noise ^ 1)))
            }
        };
        Ok(report)
    }
}

/// The mixture coin for ε and `weight` outputs.
fn mixture(eps: Ratio, weight: u64) -> Result<Mixture, LdpError> {
    Mixture::new(eps, weight).map_err(|_| LdpError::BadParameters)
}

/// Hadamard response over `blocks` blocks of `size` outputs (both powers of two).
/// Category x is row `⌊x / blocks⌋ + 1` of block [`super::hadamard_block`]`(key, blocks, x)`
/// (`x mod blocks` rotated by a keyed offset of its row); it owns the `size/2`
/// columns of its block where the row is +1 (parity of popcount(row & column) even).
/// Mixture: with probability (e^ε − 1)/(e^ε − 1 + 2·blocks) a uniform column of x's
/// half — a uniform column, moved into the half by flipping the row's lowest set bit
/// when outside, a bijection — otherwise a uniform output. Then P(o) = 2e^ε/(size·Z)
/// inside x's half and 2/(size·Z) elsewhere, Z = 2·blocks − 1 + e^ε (Acharya et al. 2019).
/// Shifts and masks only: nothing secret-dependent in timing.
fn hadamard<C: Coins>(
    x: u64,
    blocks: u32,
    size: u32,
    key: u64,
    eps: Ratio,
    coins: &mut C,
) -> Result<LdpReport, LdpError> {
    let keep = coins.bernoulli_mixture(&mixture(eps, 2 * u64::from(blocks))?);
    let u =
        coins.uniform(NonZeroU64::new(u64::from(blocks) * u64::from(size)).ok_or(LdpError::BadParameters)?);
    let (block_bits, size_bits) = (blocks.trailing_zeros(), size.trailing_zeros());
    let block = u64::from(super::hadamard_block(key, blocks, narrow(x)));
    let row = (x >> block_bits) + 1;
    let column = u & (u64::from(size) - 1);
    #[allow(clippy::cast_possible_truncation, reason = "a parity bit")]
    let inside = Choice::from((((row & column).count_ones() & 1) as u8) ^ 1);
    let moved = u64::conditional_select(&(column ^ (row & row.wrapping_neg())), &column, inside);
    let own = (block << size_bits) | moved;
    Ok(LdpReport::Hadamard(narrow(u64::conditional_select(&u, &own, Choice::from(u8::from(keep))))))
}

/// `d` bits of Bernoulli(1/(1 + e^γ)) noise ([`Coins::bernoulli_logistic_bits`], drawn
/// the same way for every `x`), with the bit at `x` replaced by `own(noise bit)`. Every
/// word goes through the same constant-time select, so neither the draws nor the memory
/// accesses depend on `x`.
fn unary<C: Coins>(d: u32, x: u64, gamma: Ratio, coins: &mut C, own: impl Fn(u64) -> u64) -> Vec<u8> {
    let noise = coins.bernoulli_logistic_bits(gamma, d);
    let mut bytes = Vec::with_capacity((d as usize).div_ceil(8));
    let (own_word, shift) = (x / 64, x % 64);
    for (word, noise) in (0u64..).zip(noise) {
        let lanes = (u64::from(d) - word * 64).min(64);
        let fixed = (noise & !(1 << shift)) | ((own((noise >> shift) & 1) & 1) << shift);
        let out = u64::conditional_select(&noise, &fixed, word.ct_eq(&own_word));
        #[allow(clippy::cast_possible_truncation, reason = "at most 8 bytes")]
        bytes.extend_from_slice(out.to_le_bytes().get(..lanes.div_ceil(8) as usize).unwrap_or_default());
    }
    bytes
}

/// Values below a `u32` bound (d, g, k, pool) narrowed to `u32`.
#[inline]
#[allow(clippy::cast_possible_truncation, reason = "callers pass values drawn below a u32 bound")]
const fn narrow(v: u64) -> u32 {
    v as u32
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::super::{Domain, MechanismName, Selection};
    use super::*;
    use crate::Epsilon;
    use crate::hazmat::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn out_of_domain_and_kind_are_errors() {
        let e = Epsilon::from_ratio(1, 1).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for name in [
            MechanismName::Grr,
            MechanismName::Oue,
            MechanismName::Sue,
            MechanismName::Olh,
            MechanismName::Hadamard,
            MechanismName::HadamardBlocks,
        ] {
            let m = Selection::new(Domain::Categorical { d: 5 }, e, name)
                .map(|s| s.for_period("test", 0))
                .unwrap();
            assert_eq!(m.encode(LdpValue::Category(5), &mut rng), Err(LdpError::OutOfDomain));
            assert_eq!(m.encode(LdpValue::Numeric(1), &mut rng), Err(LdpError::ValueKindMismatch));
            assert!(m.encode(LdpValue::Category(4), &mut rng).is_ok());
        }
        for name in [MechanismName::Piecewise, MechanismName::Duchi] {
            let m = Selection::new(Domain::Numeric { min: -3, max: 3 }, e, name)
                .map(|s| s.for_period("test", 0))
                .unwrap();
            assert_eq!(m.encode(LdpValue::Numeric(4), &mut rng), Err(LdpError::OutOfDomain));
            assert_eq!(m.encode(LdpValue::Numeric(-4), &mut rng), Err(LdpError::OutOfDomain));
            assert_eq!(m.encode(LdpValue::Category(0), &mut rng), Err(LdpError::ValueKindMismatch));
            assert!(m.encode(LdpValue::Numeric(-3), &mut rng).is_ok());
        }
    }

    #[test]
    fn unary_reports_have_clean_padding() {
        let e = Epsilon::from_ratio(1, 4).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let m = Selection::new(Domain::Categorical { d: 11 }, e, MechanismName::Sue)
            .map(|s| s.for_period("test", 0))
            .unwrap();
        for _ in 0..200 {
            let LdpReport::Sue(bits) = m.encode(LdpValue::Category(10), &mut rng).unwrap() else { panic!() };
            assert_eq!(bits.len(), 2);
            assert_eq!(bits[1] & 0xf8, 0);
        }
    }
}

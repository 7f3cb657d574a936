//! Bernoulli((e^γ − 1)/(e^γ − 1 + D)): the coin of randomised response written as a
//! mixture, sampled exactly in O(1) expected rounds.
//!
//! GRR over `D` values outputs the true value with probability e^γ/(e^γ + D − 1). The
//! same law is a mixture: with probability `q = (e^γ − 1)/(e^γ − 1 + D)` output the true
//! value, otherwise a uniform draw over all `D` values. Rejection over the `D` values
//! needs about `D/(1 + (D − 1)e^{−γ})` rounds (54 at γ = 4, D = 65 536); this coin needs
//! O(1) for every `D`.
//!
//! Construction ("choose a side and accept", with an exact amplifying coin):
//!
//! * Split γ into `K = ⌊mγ⌋` pieces of `1/m` (m = 4, or 2 when the integers below
//!   would not fit in 128 bits) and a remainder `r = γ − K/m ∈ [0, 1/m)`.
//! * For a piece δ ∈ [0, 1): draw J = the number of successes of Bernoulli(δ) before the
//!   first failure (P(J = j) = (1 − δ)δ^j), then accept with probability 1/J! (J − 1
//!   rational coins 1/2, 1/3, …). P(accept) = Σ (1 − δ)δ^j/j! = (1 − δ)e^δ. All pieces
//!   accepting has probability `e^γ · P` with the rational `P = (1 − 1/m)^K (1 − r)`.
//!   For m a power of two a success of Bernoulli(1/m) is log2(m) zero bits.
//! * With `y = D·P` (rational): side A with probability `1/(1 + y)`, accepted when all
//!   pieces accept and a Bernoulli(e^{−γ}) fails (probability `e^γ P (1 − e^{−γ})`);
//!   side B with probability `y/(1 + y)`, always accepted. Then
//!   `P(A, accepted) : P(B, accepted) = (e^γ − 1)P : D·P = (e^γ − 1) : D`, so the
//!   outcome "A" has probability exactly `q`. A round is accepted with probability
//!   `P(e^γ − 1 + D)/(1 + DP)`, which is ≈ 1 when `DP ≫ 1` and ≥ `(e^γ − 1)P` otherwise.
//!
//! When the 128-bit integers overflow even with m = 2 (never for D < 2^30 and ε ≤ 32) or
//! pieces of 1/2 would cost more than the plain two-sided coin (ε > 11 with small D),
//! the coin uses sides 1 : D with coins ¬Bernoulli(e^{−γ}) and Bernoulli(e^{−γ}), exact
//! as well, in `(1 + D)/(1 − e^{−γ} + De^{−γ})` expected rounds.
//!
//! Nothing here depends on a private value: the value only selects, in constant time,
//! between the true value and the uniform draw *after* the coin (src/ldp/encode.rs).

use super::bernoulli::{bern_exp_neg_u128, bern_u128};
use super::uniform::uniform_u128;
use super::{NoiseError, Ratio};
use crate::rng::CryptoRng;

/// A precomputed plan for [`bernoulli_mixture`]: true with probability
/// `(e^γ − 1)/(e^γ − 1 + D)`.
///
/// ```
/// use confiance::noise::{Mixture, Ratio};
/// let m = Mixture::new(Ratio::new(4, 1)?, 65_536)?;
/// assert_eq!((m.gamma(), m.weight()), (Ratio::new(4, 1)?, 65_536));
/// assert!(Mixture::new(Ratio::new(0, 1)?, 2).is_err());
/// # Ok::<(), confiance::noise::NoiseError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mixture {
    gamma: Ratio,
    weight: u64,
    method: Method,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Method {
    /// Sides 1 : D, coins ¬Bernoulli(e^{−γ}) and Bernoulli(e^{−γ}).
    TwoSided,
    /// Pieces of 1/2^shift; side A with probability `side_num / side_den`.
    Pieces { shift: u32, pieces: u64, rem_num: u64, rem_den: u64, side_num: u128, side_den: u128 },
}

/// `m^K·bm` and `D·(m−1)^K·(bm − r_num)` for m = 2^shift, or `None` on overflow.
fn pieces_plan(gamma: Ratio, weight: u64, shift: u32) -> Option<Method> {
    let (a, b) = (u128::from(gamma.numerator()), u128::from(gamma.denominator()));
    let m: u128 = 1 << shift;
    let pieces = (a << shift) / b;
    let rem_num = (a << shift) - pieces * b; // r = rem_num / (b·m) < 1/m
    let rem_den = b << shift;
    let k = u32::try_from(pieces).ok()?;
    let side_num = m.checked_pow(k)?.checked_mul(rem_den)?;
    let other = (m - 1).checked_pow(k)?.checked_mul(rem_den - rem_num)?.checked_mul(u128::from(weight))?;
    let side_den = side_num.checked_add(other)?;
    Some(Method::Pieces {
        shift,
        pieces: u64::try_from(pieces).ok()?,
        rem_num: u64::try_from(rem_num).ok()?,
        rem_den: u64::try_from(rem_den).ok()?,
        side_num,
        side_den,
    })
}

impl Mixture {
    /// The plan for `(e^γ − 1)/(e^γ − 1 + weight)`.
    ///
    /// # Errors
    /// [`NoiseError::ZeroScale`] when γ = 0 or `weight == 0`; [`NoiseError::TooLarge`]
    /// when γ > 32.
    pub fn new(gamma: Ratio, weight: u64) -> Result<Self, NoiseError> {
        if gamma.numerator() == 0 || weight == 0 {
            return Err(NoiseError::ZeroScale);
        }
        if u128::from(gamma.numerator()) > 32 * u128::from(gamma.denominator()) {
            return Err(NoiseError::TooLarge);
        }
        // Pieces of 1/4 cost e^{0.151γ} in acceptance, pieces of 1/2 e^{0.386γ}; the
        // two-sided coin about 1 + D rounds when D e^{−γ} is small. Integer estimate of
        // log2 of the halves' overhead: 0.557γ.
        let method = pieces_plan(gamma, weight, 2).unwrap_or_else(|| {
            let overhead_bits =
                u128::from(gamma.numerator()) * 557 / (u128::from(gamma.denominator()) * 1000);
            let two_sided_cheaper = overhead_bits >= 64 || u128::from(weight) < 1u128 << overhead_bits;
            if two_sided_cheaper {
                Method::TwoSided
            } else {
                pieces_plan(gamma, weight, 1).unwrap_or(Method::TwoSided)
            }
        });
        Ok(Self { gamma, weight, method })
    }

    /// γ.
    #[must_use]
    pub const fn gamma(&self) -> Ratio {
        self.gamma
    }

    /// D.
    #[must_use]
    pub const fn weight(&self) -> u64 {
        self.weight
    }
}

/// Fair random bits taken from 64-bit words, `s ≤ 2` at a time.
struct Bits {
    word: u64,
    left: u32,
}

impl Bits {
    fn take<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, s: u32) -> u64 {
        if self.left < s {
            self.word = rng.next_u64();
            self.left = 64;
        }
        let v = self.word & ((1 << s) - 1);
        self.word >>= s;
        self.left -= s;
        v
    }
}

/// Accept with probability 1/j!: rational coins 1/2, …, 1/j until the first failure.
fn inverse_factorial<R: CryptoRng + ?Sized>(rng: &mut R, j: u64) -> bool {
    let mut i: u64 = 2;
    while i <= j {
        if !bern_u128(rng, 1, u128::from(i)) {
            return false;
        }
        i += 1;
    }
    true
}

/// Bernoulli(e^γ · (1 − 1/m)^K (1 − r)): every piece accepts (early exit on the first
/// that does not).
fn all_pieces<R: CryptoRng + ?Sized>(
    rng: &mut R,
    shift: u32,
    pieces: u64,
    rem_num: u64,
    rem_den: u64,
) -> bool {
    let mut bits = Bits { word: 0, left: 0 };
    for _ in 0..pieces {
        let mut j: u64 = 0;
        while bits.take(rng, shift) == 0 {
            j = j.saturating_add(1);
        }
        if !inverse_factorial(rng, j) {
            return false;
        }
    }
    if rem_num == 0 {
        return true;
    }
    let mut j: u64 = 0;
    while bern_u128(rng, u128::from(rem_num), u128::from(rem_den)) {
        j = j.saturating_add(1);
    }
    inverse_factorial(rng, j)
}

/// True with probability exactly `(e^γ − 1)/(e^γ − 1 + D)` for the plan's γ and D
/// (construction in the module documentation). The number of words drawn depends on
/// γ, D and the random words only.
///
/// ```
/// use confiance::{hazmat::ChaCha20Rng, noise::{Mixture, Ratio, bernoulli_mixture}};
/// use rand_core::SeedableRng;
/// let mut rng = ChaCha20Rng::seed_from_u64(9);
/// let mix = Mixture::new(Ratio::new(1, 1)?, 4)?; // (e − 1)/(e + 3) ≈ 0.300
/// let hits = (0..10_000).filter(|_| bernoulli_mixture(&mut rng, &mix)).count();
/// assert!((2_800..3_200).contains(&hits));
/// # Ok::<(), confiance::noise::NoiseError>(())
/// ```
pub fn bernoulli_mixture<R: CryptoRng + ?Sized>(rng: &mut R, mix: &Mixture) -> bool {
    let (gn, gd) = (u128::from(mix.gamma.numerator()), u128::from(mix.gamma.denominator()));
    loop {
        match mix.method {
            Method::TwoSided => {
                let side_a = bern_u128(rng, 1, u128::from(mix.weight) + 1);
                let b = bern_exp_neg_u128(rng, gn, gd);
                if side_a && !b {
                    return true;
                }
                if !side_a && b {
                    return false;
                }
            }
            Method::Pieces { shift, pieces, rem_num, rem_den, side_num, side_den } => {
                if uniform_u128(rng, side_den) >= side_num {
                    return false;
                }
                if all_pieces(rng, shift, pieces, rem_num, rem_den) && !bern_exp_neg_u128(rng, gn, gd) {
                    return true;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::cast_precision_loss, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use crate::hazmat::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn q(a: u64, b: u64, d: u64) -> f64 {
        let e = (a as f64 / b as f64).exp();
        (e - 1.0) / (e - 1.0 + d as f64)
    }

    /// Within 6 standard errors of the exact probability, for both methods and across
    /// the regimes (D ≪ e^γ, D ≈ e^γ, D ≫ e^γ, a remainder piece, ε up to 32).
    #[test]
    fn frequencies() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let n = 200_000u32;
        for (a, b, d) in [
            (1u64, 2u64, 2u64),
            (1, 1, 4),
            (4, 1, 16),
            (4, 1, 65_536),
            (7, 3, 55),
            (37, 10, 1024),
            (20, 1, 3),
            (12, 1, 1 << 20),
        ] {
            let mix = Mixture::new(Ratio::new(a, b).unwrap(), d).unwrap();
            let p = q(a, b, d);
            let hits = (0..n).filter(|_| bernoulli_mixture(&mut rng, &mix)).count() as f64 / f64::from(n);
            let tol = 6.0 * (p * (1.0 - p) / f64::from(n)).sqrt() + 1e-9;
            assert!((hits - p).abs() <= tol, "γ = {a}/{b}, D = {d} ({:?}): {hits} vs {p}", mix.method);
        }
    }

    /// The amplifying coin alone: Bernoulli(e^γ·(3/4)^K·(1 − r)) for γ = 7/3
    /// (K = 9 pieces of 1/4, r = 1/12), within 6 standard errors.
    #[test]
    fn pieces_amplify_exactly() {
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let n = 200_000u32;
        let p = (7f64 / 3.0).exp() * 0.75f64.powi(9) * (11.0 / 12.0);
        let hits = (0..n).filter(|_| all_pieces(&mut rng, 2, 9, 1, 12)).count() as f64 / f64::from(n);
        assert!((hits - p).abs() <= 6.0 * (p * (1.0 - p) / f64::from(n)).sqrt(), "{hits} vs {p}");
    }

    #[test]
    fn plans() {
        let r = |a, b| Ratio::new(a, b).unwrap();
        // γ = 4, D = 65 536: 16 pieces of 1/4, no remainder, side A with 4^16·4 / (4^16·4 + D·3^16·4).
        let Method::Pieces { shift, pieces, rem_num, side_num, side_den, .. } =
            Mixture::new(r(4, 1), 65_536).unwrap().method
        else {
            panic!()
        };
        assert_eq!((shift, pieces, rem_num), (2, 16, 0));
        assert_eq!(side_den - side_num, 65_536 * 3u128.pow(16) * 4);
        // γ = 7/3: K = ⌊28/3⌋ = 9, r = 7/3 − 9/4 = 1/12.
        let Method::Pieces { pieces, rem_num, rem_den, .. } = Mixture::new(r(7, 3), 5).unwrap().method else {
            panic!()
        };
        assert_eq!((pieces, rem_num, rem_den), (9, 1, 12));
        // Large γ with a small D: the two-sided coin.
        assert_eq!(Mixture::new(r(20, 1), 3).unwrap().method, Method::TwoSided);
        assert_eq!(Mixture::new(r(33, 1), 3), Err(NoiseError::TooLarge));
        assert_eq!(Mixture::new(r(1, 1), 0), Err(NoiseError::ZeroScale));
    }
}

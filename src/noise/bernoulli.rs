//! Exact Bernoulli trials.

use super::uniform::uniform_u128;
use super::{NoiseError, Ratio};
use crate::rng::CryptoRng;

/// Bernoulli(`num/den`): true with probability exactly `num/den`.
///
/// ```
/// use confiance::{hazmat::ChaCha20Rng, noise::bernoulli_ratio};
/// use rand_core::SeedableRng;
/// let mut rng = ChaCha20Rng::seed_from_u64(1);
/// assert!(bernoulli_ratio(&mut rng, 1, 1)?);
/// assert!(!bernoulli_ratio(&mut rng, 0, 5)?);
/// assert!(bernoulli_ratio(&mut rng, 6, 5).is_err());
/// # Ok::<(), confiance::noise::NoiseError>(())
/// ```
///
/// # Errors
/// [`NoiseError::ZeroDenominator`] or [`NoiseError::NotAProbability`] (`num > den`).
pub fn bernoulli_ratio<R: CryptoRng + ?Sized>(rng: &mut R, num: u64, den: u64) -> Result<bool, NoiseError> {
    if den == 0 {
        return Err(NoiseError::ZeroDenominator);
    }
    if num > den {
        return Err(NoiseError::NotAProbability);
    }
    Ok(bern_u128(rng, u128::from(num), u128::from(den)))
}

/// Bernoulli(`num/den`) for `0 < den`, `num <= den` (checked by callers).
#[inline]
pub(crate) fn bern_u128<R: CryptoRng + ?Sized>(rng: &mut R, num: u128, den: u128) -> bool {
    uniform_u128(rng, den) < num
}

/// Bernoulli(exp(−γ)) for a rational `γ = num/den ≥ 0`.
///
/// Canonne, Kamath, Steinke 2020, Algorithm 1: for γ ≤ 1, draw A_k ~ Bernoulli(γ/k)
/// for k = 1, 2, … until the first failure and return whether that k is odd (the
/// alternating Taylor series of exp(−γ)); for γ > 1, ⌊γ⌋ draws of Bernoulli(exp(−1))
/// must all succeed, then one Bernoulli(exp(−(γ − ⌊γ⌋))).
/// The number of draws depends on γ and on the random words only: γ must be public
/// (it is ε, or a value derived from earlier random draws, in this crate).
///
/// ```
/// use confiance::{hazmat::ChaCha20Rng, noise::{bernoulli_exp_neg, Ratio}};
/// use rand_core::SeedableRng;
/// let mut rng = ChaCha20Rng::seed_from_u64(1);
/// assert!(bernoulli_exp_neg(&mut rng, Ratio::new(0, 1)?)); // exp(0) = 1
/// # Ok::<(), confiance::noise::NoiseError>(())
/// ```
pub fn bernoulli_exp_neg<R: CryptoRng + ?Sized>(rng: &mut R, gamma: Ratio) -> bool {
    bern_exp_neg_u128(rng, u128::from(gamma.numerator()), u128::from(gamma.denominator()))
}

/// Bernoulli(exp(−num/den)), `den > 0`.
pub(crate) fn bern_exp_neg_u128<R: CryptoRng + ?Sized>(rng: &mut R, num: u128, den: u128) -> bool {
    if den == 0 {
        return false;
    }
    let whole = num / den;
    let mut i: u128 = 0;
    while i < whole {
        if !bern_exp_neg_unit(rng, 1, 1) {
            return false;
        }
        i += 1;
    }
    bern_exp_neg_unit(rng, num % den, den)
}

/// CKS 2020 Algorithm 1 for `γ = num/den ∈ [0, 1]`.
fn bern_exp_neg_unit<R: CryptoRng + ?Sized>(rng: &mut R, num: u128, den: u128) -> bool {
    // γ = 0 or γ = 1 decide their first trial without randomness (A_1 ~ Bernoulli(γ));
    // skipping that draw depends on the public γ only, never on a private value.
    let mut k: u128 = 1;
    if num == 0 {
        return true;
    }
    if num == den {
        k = 2;
    }
    // den·k saturates only after k > 2^64 successive successes, whose probability is
    // below 1/(2^64)!: unreachable, documented in docs/privacy.md.
    while bern_u128(rng, num, den.saturating_mul(k)) {
        k += 1;
    }
    k % 2 == 1
}

/// Bernoulli(1/(1 + exp(γ))) for a rational γ ≥ 0, exactly.
///
/// By rejection: draw a fair coin C and B ~ Bernoulli(exp(−γ)) (always both, so the
/// draws do not depend on the outcome); C = 0 gives false, C = 1 and B gives true,
/// otherwise retry. P(true) = e^{−γ}/(1 + e^{−γ}) = 1/(1 + e^γ).
///
/// ```
/// use confiance::{hazmat::ChaCha20Rng, noise::{bernoulli_logistic, Ratio}};
/// use rand_core::SeedableRng;
/// let mut rng = ChaCha20Rng::seed_from_u64(2);
/// let hits = (0..10_000).filter(|_| bernoulli_logistic(&mut rng, Ratio::new(1, 1).unwrap())).count();
/// assert!((2_500..2_900).contains(&hits)); // 1/(1+e) ≈ 0.269
/// ```
pub fn bernoulli_logistic<R: CryptoRng + ?Sized>(rng: &mut R, gamma: Ratio) -> bool {
    loop {
        let c = bern_u128(rng, 1, 2);
        let b = bernoulli_exp_neg(rng, gamma);
        if !c {
            return false;
        }
        if b {
            return true;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use crate::hazmat::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn freq(f: impl FnMut() -> bool, n: u32) -> f64 {
        let mut f = f;
        f64::from((0..n).filter(|_| f()).count() as u32) / f64::from(n)
    }

    /// Within 6 standard errors of the exact probability.
    fn close(observed: f64, p: f64, n: u32) -> bool {
        (observed - p).abs() <= 6.0 * (p * (1.0 - p) / f64::from(n)).sqrt() + 1e-12
    }

    #[test]
    fn ratio_frequencies() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        for (a, b) in [(1u64, 3u64), (2, 7), (999, 1000), (1, u64::MAX)] {
            let p = a as f64 / b as f64;
            let o = freq(|| bernoulli_ratio(&mut rng, a, b).unwrap(), 200_000);
            assert!(close(o, p, 200_000), "{a}/{b}: {o}");
        }
    }

    #[test]
    fn exp_neg_frequencies() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        for (a, b) in [(1u64, 2u64), (1, 1), (2, 1), (7, 3), (1, 1000), (40, 1)] {
            let p = (-(a as f64) / b as f64).exp();
            let o = freq(|| bernoulli_exp_neg(&mut rng, Ratio::new(a, b).unwrap()), 200_000);
            assert!(close(o, p, 200_000), "exp(-{a}/{b}): {o} vs {p}");
        }
    }

    #[test]
    fn logistic_frequencies() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        for (a, b) in [(1u64, 2u64), (1, 1), (4, 1)] {
            let p = 1.0 / (1.0 + (a as f64 / b as f64).exp());
            let o = freq(|| bernoulli_logistic(&mut rng, Ratio::new(a, b).unwrap()), 200_000);
            assert!(close(o, p, 200_000), "{a}/{b}: {o} vs {p}");
        }
    }
}

//! Geometric and discrete Laplace samplers (CKS 2020, Algorithm 2).

use super::bernoulli::{bern_exp_neg_u128, bern_u128};
use super::uniform::uniform_u64;
use super::{NoiseError, Ratio};
use crate::rng::CryptoRng;
use core::num::NonZeroU64;

/// The number of successes of Bernoulli(exp(−γ)) before the first failure:
/// P(k) = (1 − e^{−γ})·e^{−γk}, k ≥ 0. Saturates at `u64::MAX`.
///
/// ```
/// use confiance::{hazmat::ChaCha20Rng, noise::{geometric_exp_neg, Ratio}};
/// use rand_core::SeedableRng;
/// let mut rng = ChaCha20Rng::seed_from_u64(4);
/// let k = geometric_exp_neg(&mut rng, Ratio::new(1, 1)?)?;
/// assert!(k < 100);
/// # Ok::<(), confiance::noise::NoiseError>(())
/// ```
///
/// # Errors
/// [`NoiseError::ZeroScale`] when γ = 0 (the loop would never end).
pub fn geometric_exp_neg<R: CryptoRng + ?Sized>(rng: &mut R, gamma: Ratio) -> Result<u64, NoiseError> {
    if gamma.numerator() == 0 {
        return Err(NoiseError::ZeroScale);
    }
    let (n, d) = (u128::from(gamma.numerator()), u128::from(gamma.denominator()));
    let mut k = 0u64;
    while bern_exp_neg_u128(rng, n, d) {
        k = k.saturating_add(1);
    }
    Ok(k)
}

/// The discrete Laplace distribution with scale `s = num/den`: P(x) ∝ exp(−|x|/s)
/// over all integers.
///
/// Canonne, Kamath, Steinke 2020, Algorithm 2 with t = `num`, s = `den`: U uniform in
/// `0..t` accepted with probability exp(−U/t), V geometric with parameter exp(−1),
/// Y = ⌊(U + t·V)/s⌋, a fair sign, and (sign −, Y = 0) rejected.
///
/// ```
/// use confiance::{hazmat::ChaCha20Rng, noise::{discrete_laplace, Ratio}};
/// use rand_core::SeedableRng;
/// let mut rng = ChaCha20Rng::seed_from_u64(5);
/// let x = discrete_laplace(&mut rng, Ratio::new(10, 1)?)?;
/// assert!(x.abs() < 1_000);
/// # Ok::<(), confiance::noise::NoiseError>(())
/// ```
///
/// # Errors
/// [`NoiseError::ZeroScale`] when the scale is zero.
pub fn discrete_laplace<R: CryptoRng + ?Sized>(rng: &mut R, scale: Ratio) -> Result<i64, NoiseError> {
    let t = NonZeroU64::new(scale.numerator()).ok_or(NoiseError::ZeroScale)?;
    let s = NonZeroU64::new(scale.denominator()).ok_or(NoiseError::ZeroDenominator)?;
    Ok(dlap(rng, t, s))
}

pub(crate) fn dlap<R: CryptoRng + ?Sized>(rng: &mut R, t: NonZeroU64, s: NonZeroU64) -> i64 {
    loop {
        let u = uniform_u64(rng, t);
        if !bern_exp_neg_u128(rng, u128::from(u), u128::from(t.get())) {
            continue;
        }
        let mut v: u128 = 0;
        while bern_exp_neg_u128(rng, 1, 1) {
            v += 1;
        }
        let x = u128::from(u) + u128::from(t.get()) * v;
        let y = x / u128::from(s.get());
        let negative = bern_u128(rng, 1, 2);
        if negative && y == 0 {
            continue;
        }
        // |Y| beyond i64 needs ~2^63·s/t successive exp(−1) successes: unreachable,
        // but saturate rather than wrap.
        let y = i64::try_from(y).unwrap_or(i64::MAX);
        return if negative { -y } else { y };
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use crate::hazmat::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn laplace_pmf() {
        // Scale 3/2: P(x) = (1 − a)/(1 + a)·a^{|x|}, a = e^{−2/3}. 300k draws; each cell
        // within 6 binomial standard errors.
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let n = 300_000u32;
        let mut c = [0u32; 21];
        for _ in 0..n {
            let x = discrete_laplace(&mut rng, Ratio::new(3, 2).unwrap()).unwrap();
            if x.abs() <= 10 {
                c[(x + 10) as usize] += 1;
            }
        }
        let a = (-2.0f64 / 3.0).exp();
        for (i, &k) in c.iter().enumerate() {
            let x = i as i32 - 10;
            let p = (1.0 - a) / (1.0 + a) * a.powi(x.abs());
            let o = f64::from(k) / f64::from(n);
            assert!((o - p).abs() < 6.0 * (p * (1.0 - p) / f64::from(n)).sqrt(), "x={x} {o} {p}");
        }
        assert_eq!(discrete_laplace(&mut rng, Ratio::new(0, 1).unwrap()), Err(NoiseError::ZeroScale));
    }

    #[test]
    fn geometric_mean() {
        // Mean of Geometric with ratio e^{-1/2}: a/(1−a) = 1.5415; sd of the mean over
        // 200k draws ≈ 0.0044, tolerance 0.03 (~7 sd).
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let n = 200_000;
        let s: u64 = (0..n).map(|_| geometric_exp_neg(&mut rng, Ratio::new(1, 2).unwrap()).unwrap()).sum();
        let a = (-0.5f64).exp();
        assert!((s as f64 / n as f64 - a / (1.0 - a)).abs() < 0.03);
        assert!(geometric_exp_neg(&mut rng, Ratio::new(0, 3).unwrap()).is_err());
    }
}

//! The discrete Gaussian (CKS 2020, Algorithm 3).

use super::NoiseError;
use super::bernoulli::bern_exp_neg_u128;
use super::laplace::dlap;
use crate::rng::CryptoRng;
use core::num::NonZeroU64;

/// The discrete Gaussian with variance parameter σ² = `num/den`:
/// P(x) ∝ exp(−x²/(2σ²)) over all integers.
///
/// Canonne, Kamath, Steinke 2020, Algorithm 3: t = ⌊σ⌋ + 1, Y ~ discrete Laplace with
/// scale t, accepted with probability exp(−(|Y| − σ²/t)²/(2σ²)), all in exact rational
/// arithmetic on u128. `num` and `den` are limited to 32 bits so every intermediate fits;
/// a candidate with |Y| so large that the squared numerator overflows 128 bits is
/// rejected — its acceptance probability is below exp(−2^29), so the deviation from
/// the exact distribution is below that bound (docs/privacy.md).
///
/// ```
/// use confiance::{hazmat::ChaCha20Rng, noise::discrete_gaussian};
/// use rand_core::SeedableRng;
/// let mut rng = ChaCha20Rng::seed_from_u64(6);
/// let x = discrete_gaussian(&mut rng, 100, 1)?; // σ = 10
/// assert!(x.abs() < 200);
/// # Ok::<(), confiance::noise::NoiseError>(())
/// ```
///
/// # Errors
/// [`NoiseError::ZeroScale`] for σ² = 0, [`NoiseError::ZeroDenominator`] for `den = 0`,
/// [`NoiseError::TooLarge`] when `num` or `den` exceeds `u32::MAX`.
pub fn discrete_gaussian<R: CryptoRng + ?Sized>(rng: &mut R, num: u64, den: u64) -> Result<i64, NoiseError> {
    if den == 0 {
        return Err(NoiseError::ZeroDenominator);
    }
    if num == 0 {
        return Err(NoiseError::ZeroScale);
    }
    if num > u64::from(u32::MAX) || den > u64::from(u32::MAX) {
        return Err(NoiseError::TooLarge);
    }
    let (a, b) = (u128::from(num), u128::from(den));
    // t = ⌊sqrt(a/b)⌋ + 1: the largest m with m²·b ≤ a, plus one.
    let mut m = isqrt(a / b);
    while (m + 1) * (m + 1) * b <= a {
        m += 1;
    }
    while m > 0 && m * m * b > a {
        m -= 1;
    }
    let t = m + 1;
    let t64 =
        NonZeroU64::new(u64::try_from(t).map_err(|_| NoiseError::TooLarge)?).ok_or(NoiseError::TooLarge)?;
    // γ = (|Y| − σ²/t)² / (2σ²) = (|Y|·t·b − a)² / (2·a·b·t²).
    let gamma_den = 2 * a * b * t * t;
    loop {
        let y = dlap(rng, t64, NonZeroU64::MIN);
        let abs = u128::from(y.unsigned_abs());
        let Some(lin) = abs.checked_mul(t * b) else { continue };
        let diff = lin.abs_diff(a);
        let Some(gamma_num) = diff.checked_mul(diff) else { continue };
        if bern_exp_neg_u128(rng, gamma_num, gamma_den) {
            return Ok(y);
        }
    }
}

/// ⌊√x⌋ by Newton's method on integers.
fn isqrt(x: u128) -> u128 {
    if x < 2 {
        return x;
    }
    let mut r = 1u128 << (128 - x.leading_zeros()).div_ceil(2);
    loop {
        let next = (r + x / r) / 2;
        if next >= r {
            return r;
        }
        r = next;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use crate::hazmat::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn isqrt_exact() {
        for x in [0u128, 1, 2, 3, 4, 15, 16, 17, 1 << 64, (1 << 64) - 1, u128::from(u64::MAX) * 3] {
            let r = isqrt(x);
            assert!(r * r <= x && (r + 1) * (r + 1) > x, "{x}");
        }
    }

    #[test]
    fn gaussian_pmf() {
        // σ² = 9/4: P(x) = exp(−x²/4.5)/Z. 300k draws, each cell within 6 binomial sd.
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let n = 300_000u32;
        let mut c = [0u32; 17];
        for _ in 0..n {
            let x = discrete_gaussian(&mut rng, 9, 4).unwrap();
            assert!(x.abs() <= 8, "{x}");
            c[(x + 8) as usize] += 1;
        }
        let w = |x: i32| (-(f64::from(x * x)) / 4.5).exp();
        let z: f64 = (-40..=40).map(w).sum();
        for (i, &k) in c.iter().enumerate() {
            let x = i as i32 - 8;
            let p = w(x) / z;
            let o = f64::from(k) / f64::from(n);
            assert!((o - p).abs() < 6.0 * (p * (1.0 - p) / f64::from(n)).sqrt() + 1e-6, "x={x} {o} {p}");
        }
    }

    #[test]
    fn gaussian_rejects_bad_parameters() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        assert_eq!(discrete_gaussian(&mut rng, 0, 1), Err(NoiseError::ZeroScale));
        assert_eq!(discrete_gaussian(&mut rng, 1, 0), Err(NoiseError::ZeroDenominator));
        assert_eq!(discrete_gaussian(&mut rng, 1 << 40, 1), Err(NoiseError::TooLarge));
        // A large σ (σ² = 2^32 − 1) still works.
        assert!(discrete_gaussian(&mut rng, u64::from(u32::MAX), 1).is_ok());
    }
}

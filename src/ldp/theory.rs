//! Approximate arithmetic for *choosing* parameters (OLH's g, the Piecewise window,
//! `auto`), never for drawing noise: a wrong approximation costs utility, not privacy,
//! because every choice is then realised exactly.

use crate::Epsilon;

/// e^x for a rational x ≥ 0, using only `+ − × ÷` (no libm in `no_std`): Taylor
/// series of e^{x/1024}, squared ten times. Relative error below 1e-12 for ε ≤ 32.
///
/// ```
/// use confiance::{Epsilon, ldp::exp_approx};
/// let e = exp_approx(Epsilon::from_ratio(1, 1)?);
/// assert!((e - core::f64::consts::E).abs() < 1e-12);
/// # Ok::<(), confiance::epsilon::EpsilonError>(())
/// ```
#[must_use]
pub fn exp_approx(eps: Epsilon) -> f64 {
    exp_ratio(f64::from(eps.numerator()), f64::from(eps.denominator()))
}

/// e^{num/den}.
pub(crate) fn exp_ratio(num: f64, den: f64) -> f64 {
    let x = num / den / 1024.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..=12 {
        term *= x / f64::from(k);
        sum += term;
    }
    for _ in 0..10 {
        sum *= sum;
    }
    sum
}

/// Per-user variance factor of each frequency oracle at a rare category
/// (Wang et al. 2017, Table 1; Acharya et al. 2019 for HR): Var[ĉ_v] ≈ n × this.
pub(crate) fn grr_var(e: f64, d: f64) -> f64 {
    (e + d - 2.0) / ((e - 1.0) * (e - 1.0))
}
pub(crate) fn oue_var(e: f64) -> f64 {
    4.0 * e / ((e - 1.0) * (e - 1.0))
}
pub(crate) fn sue_var(e_half: f64) -> f64 {
    e_half / ((e_half - 1.0) * (e_half - 1.0))
}
pub(crate) fn olh_var(e: f64, g: f64) -> f64 {
    (e + g - 1.0) * (e + g - 1.0) / ((g - 1.0) * (e - 1.0) * (e - 1.0))
}
/// General-privacy HR with `B` blocks: `Var[ĉ_v]/n = Z(2 + (e^ε − 1) n_j/n)/(e^ε − 1)²`
/// with `Z = 2B − 1 + e^ε` (docs/privacy.md), taking the block's share `n_j/n` at its
/// average `1/B`. `B = 1` is the high-privacy HR, `(e^ε + 1)²/(e^ε − 1)²`.
pub(crate) fn hr_blocks_var(e: f64, blocks: f64) -> f64 {
    (2.0 * blocks - 1.0 + e) * (2.0 + (e - 1.0) / blocks) / ((e - 1.0) * (e - 1.0))
}
/// Worst-case (|t| = 1) variance of the Piecewise mechanism on [−1, 1] (Wang et al. 2019, Lemma 1).
pub(crate) fn pm_worst(e_half: f64) -> f64 {
    1.0 / (e_half - 1.0) + (e_half + 3.0) / (3.0 * (e_half - 1.0) * (e_half - 1.0))
}
/// Worst-case (t = 0) variance of Duchi et al.'s mechanism on [−1, 1].
pub(crate) fn duchi_worst(e: f64) -> f64 {
    let b = (e + 1.0) / (e - 1.0);
    b * b
}

/// The integer g ≥ 2 minimising OLH's variance (the real optimum is e^ε + 1).
pub(crate) fn olh_g(e: f64) -> u32 {
    let lo = (e + 1.0).clamp(2.0, 4_294_967_295.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "clamped to u32 range first")]
    let lo = lo as u32;
    let hi = lo.saturating_add(1);
    if olh_var(e, f64::from(hi)) < olh_var(e, f64::from(lo)) { hi } else { lo }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        for (n, d) in [(1u32, 2u32), (1, 1), (2, 1), (4, 1), (32, 1), (1, 1000)] {
            let want = (f64::from(n) / f64::from(d)).exp();
            let got = exp_approx(Epsilon::from_ratio(n, d).unwrap());
            assert!(((got - want) / want).abs() < 1e-12, "{n}/{d}: {got} {want}");
        }
    }

    #[test]
    fn olh_g_is_optimal_integer() {
        // e^1 + 1 = 3.72 → g = 4 (variance 3.70 vs 3.72 at g = 3); e^4 + 1 = 55.6 → 55 or 56.
        assert_eq!(olh_g(1f64.exp()), 4);
        let g = olh_g(4f64.exp());
        assert!(g == 55 || g == 56);
        assert_eq!(olh_g(1.01), 2);
    }
}

//! Theoretical variances of every estimator, as functions of the true data; the
//! estimators plug their own estimates into the same formulas. Sources per function;
//! docs/privacy.md gathers them.

use super::exps;
use confiance::ldp::{Mechanism, Params};

/// For the frequency oracles, `(p, q)`: the probability that a report *supports*
/// category `v` when the user holds `v`, and when the user holds anything else.
/// Wang et al. 2017 ("pure" protocols): GRR p = e^ε/(e^ε+d−1), q = 1/(e^ε+d−1);
/// OUE p = 1/2, q = 1/(e^ε+1); SUE p = e^{ε/2}/(e^{ε/2}+1), q = 1/(e^{ε/2}+1);
/// OLH p = e^ε/(e^ε+g−1), q = 1/g; Hadamard response (Acharya et al. 2019)
/// p = e^ε/(e^ε+1), q = 1/2. `None` for numeric mechanisms.
///
/// ```
/// use confiance::{Epsilon, ldp::{Domain, MechanismName, Selection}};
/// use confiance_estimate::theory::support_probabilities;
/// let m = Selection::new(Domain::Categorical { d: 4 }, Epsilon::from_ratio(1, 1)?, MechanismName::Oue)?.for_period("m", 0);
/// let (p, q) = support_probabilities(&m).unwrap();
/// assert_eq!(p, 0.5);
/// assert!((q - 1.0 / (1f64.exp() + 1.0)).abs() < 1e-15);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn support_probabilities(m: &Mechanism) -> Option<(f64, f64)> {
    let (e, eh) = exps(m);
    match *m.params() {
        Params::Grr { d } => Some((e / (e + f64::from(d) - 1.0), 1.0 / (e + f64::from(d) - 1.0))),
        Params::Oue { .. } => Some((0.5, 1.0 / (e + 1.0))),
        Params::Sue { .. } => Some((eh / (eh + 1.0), 1.0 / (eh + 1.0))),
        Params::Olh { g, .. } => Some((e / (e + f64::from(g) - 1.0), 1.0 / f64::from(g))),
        Params::Hadamard { .. } => Some((e / (e + 1.0), 0.5)),
        _ => None,
    }
}

/// General-privacy Hadamard response (Acharya, Sun, Zhang 2019) with `B` blocks:
/// `Z = 2B − 1 + e^ε` and `e^ε − 1`. A report falls in v's half of its block with
/// probability `e^ε/Z` (user holds v), `(e^ε + 1)/(2Z)` (another category of the same
/// block), `1/Z` (another block); in v's block with `(e^ε + 1)/Z` or `2/Z`. `None` for
/// other mechanisms.
#[must_use]
pub fn hadamard_blocks_constants(m: &Mechanism) -> Option<(f64, f64)> {
    let Params::HadamardBlocks { blocks, .. } = *m.params() else { return None };
    let (e, _) = exps(m);
    Some((2.0 * f64::from(blocks) - 1.0 + e, e - 1.0))
}

/// Variance of general-privacy HR's count estimate `ĉ_v = Z(2S_v − T_j)/(e^ε − 1)`
/// (`S_v` reports in v's half, `T_j` in v's block `j`) when `n_v` of `n` users hold `v`
/// and `n_block` hold a category of v's block (v included):
/// `Z(2n + n_block(e^ε − 1))/(e^ε − 1)² − n_v`. Each report adds +1 (in v's half), −1
/// (rest of the block) or 0, with second moment `(e^ε + 1)/Z` inside the block and
/// `2/Z` outside, and mean `(e^ε − 1)/Z` only for v's own users (docs/privacy.md). With
/// one block (`n_block = n`) it is the high-privacy HR's `n(e^ε+1)²/(e^ε−1)² − n_v`.
/// `NaN` for other mechanisms.
#[must_use]
pub fn hadamard_blocks_count_variance(m: &Mechanism, n: f64, n_block: f64, n_v: f64) -> f64 {
    let Some((z, em1)) = hadamard_blocks_constants(m) else { return f64::NAN };
    z * (2.0 * n + n_block * em1) / (em1 * em1) - n_v
}

/// Variance of the unbiased count estimate ĉ_v = (S_v − nq)/(p − q) when `n_v` of `n`
/// users hold `v`: `(n q(1−q) + n_v (p(1−p) − q(1−q))) / (p−q)²` — Wang et al. 2017,
/// Theorem 2 (`n q(1−q)/(p−q)² + n_v (1−p−q)/(p−q)`). For OLH add [`olh_pool_variance`]
/// (uncorrected), or see [`olh_count_variances`] (after the collision correction).
#[must_use]
pub fn count_variance(m: &Mechanism, n: f64, n_v: f64) -> f64 {
    let Some((p, q)) = support_probabilities(m) else { return f64::NAN };
    (n * q * (1.0 - q) + n_v * (p * (1.0 - p) - q * (1.0 - q))) / ((p - q) * (p - q))
}

/// The extra variance of OLH's count estimate for `v` caused by a finite seed pool of
/// `P` random hash functions (derived in docs/privacy.md): users holding the same
/// `x ≠ v` share the pool's collisions of `x` with `v`, so
/// `Var_pool = Σ_{x≠v} n_x (n_x − 1) / ((g − 1) P)`. Zero for other mechanisms.
#[must_use]
pub fn olh_pool_variance(m: &Mechanism, counts: &[f64], v: usize) -> f64 {
    let Params::Olh { g, pool, .. } = *m.params() else { return 0.0 };
    let s: f64 = counts.iter().enumerate().filter(|(x, _)| *x != v).map(|(_, n)| n * (n - 1.0)).sum();
    s / ((f64::from(g) - 1.0) * f64::from(pool))
}

/// OLH's heavy set: the categories whose pool collisions the aggregator corrects
/// (docs/privacy.md §3). It keeps `corrected` (the set of the previous round) and adds
/// each other category with `n_x(n_x − 1) > Var ĉ_x` (its share of the pool term exceeds
/// the noise its correction adds) that also stands at least [`OLH_HEAVY_Z`] standard
/// deviations above zero — Wang et al.'s variance plus the pool term of the categories
/// not yet corrected — up to `g·P/64` categories in all (the largest first), in
/// increasing order. The second rule keeps out categories that only look large: noise,
/// or the pool bias itself, which inflates exactly the categories that collide with the
/// heaviest ones and would make the correction's iteration diverge; the estimator
/// re-selects after each correction, as the pool term left shrinks. The cap keeps
/// `‖κD_HH‖ ≈ 2√(|H|/(gP)) ≤ 1/4` for unselected sets. `counts` are true counts
/// (theory, `plug_in = false`: iterate until the set stops growing) or clamped estimates
/// (`plug_in = true`: each `n̂_y²` in the pool term debiased by its variance). Empty for
/// other mechanisms.
///
/// ```
/// use confiance::{Epsilon, ldp::Mechanism};
/// use confiance_estimate::theory::{count_variance, olh_count_variances, olh_heavy_set};
/// // 10^6 reports over 64 categories, pool of 1024 at ε = 1 (g = 4): one heavy category.
/// let m = Mechanism::olh_with_pool(64, Epsilon::from_ratio(1, 1)?, 1024, 0)?;
/// let mut counts = vec![5_000.0; 64];
/// counts[0] = 1e6 - 63.0 * 5_000.0;
/// let heavy = olh_heavy_set(&m, 1e6, &counts, false, &[]);
/// assert_eq!(heavy, [0]);
/// // Correcting it leaves category 1 with Wang et al.'s variance plus the 62 other light
/// // categories' pool term (62 × 5000² / (3 × 1024), 14% more); uncorrected, the heavy
/// // category's own term alone would add 685 000² / 3072, 41 times Wang's.
/// let var = olh_count_variances(&m, 1e6, &counts, &heavy, false);
/// let wang = count_variance(&m, 1e6, counts[1]);
/// assert!(var[1] > 1.1 * wang && var[1] < 1.2 * wang);
/// let uncorrected = olh_count_variances(&m, 1e6, &counts, &[], false);
/// assert!(uncorrected[1] > 40.0 * wang);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub fn olh_heavy_set(
    m: &Mechanism,
    n: f64,
    counts: &[f64],
    plug_in: bool,
    corrected: &[usize],
) -> Vec<usize> {
    let Params::Olh { g, pool, .. } = *m.params() else { return Vec::new() };
    let cap = usize::try_from(u64::from(g) * u64::from(pool) / 64).unwrap_or(usize::MAX).max(corrected.len());
    let denom = (f64::from(g) - 1.0) * f64::from(pool);
    let wang: Vec<f64> = counts.iter().map(|c| count_variance(m, n, *c)).collect();
    let done = membership(counts.len(), corrected);
    let square = |c: f64, v: f64| c * (c - 1.0) - if plug_in { v } else { 0.0 };
    let light: f64 = counts
        .iter()
        .zip(&wang)
        .zip(&done)
        .filter(|(_, d)| !**d)
        .map(|((c, v), _)| square(*c, *v))
        .sum::<f64>()
        .max(0.0);
    let mut new: Vec<(usize, f64)> = counts
        .iter()
        .zip(&wang)
        .zip(&done)
        .enumerate()
        .filter(|(_, ((c, v), d))| {
            let pool_term = (light - square(**c, **v)).max(0.0) / denom;
            !**d && **c * (**c - 1.0) > **v && **c > OLH_HEAVY_Z * (**v + pool_term).sqrt()
        })
        .map(|(x, ((c, _), _))| (x, *c))
        .collect();
    new.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    new.truncate(cap - corrected.len());
    let mut heavy: Vec<usize> = corrected.iter().copied().chain(new.into_iter().map(|h| h.0)).collect();
    heavy.sort_unstable();
    heavy.dedup();
    heavy
}

/// `len` flags, set at the indices in `set`.
fn membership(len: usize, set: &[usize]) -> Vec<bool> {
    let mut flags = vec![false; len];
    for x in set {
        if let Some(f) = flags.get_mut(*x) {
            *f = true;
        }
    }
    flags
}

/// How many standard deviations of its uncorrected estimate a count must stand above
/// zero to enter OLH's heavy set ([`olh_heavy_set`]): 4, so that among d = 65 536 pure
/// noise categories about 2 pass.
pub const OLH_HEAVY_Z: f64 = 4.0;

/// The variance of each OLH count after the aggregator's collision correction on the
/// heavy set `heavy` ([`olh_heavy_set`]; docs/privacy.md §3): Wang et al.'s
/// [`count_variance`], plus `Σ_{x∈H, x≠v} Var ĉ_x / ((g − 1)P)` (the heavy counts' noise
/// seen through the collisions), plus the pool term of the light ones,
/// `Σ_{x∉H, x≠v} n_x(n_x − 1) / ((g − 1)P)` ([`olh_pool_variance`] restricted to them).
/// With `plug_in`, `counts` are unbiased estimates, unclamped (the estimator passes them
/// so: Wang et al.'s term is linear in `n_v`, so it stays unbiased), and each light
/// `n_x(n_x − 1)` is debiased by `Var ĉ_x` (the sum is then floored at 0). For other
/// mechanisms, Wang et al.'s alone.
#[must_use]
pub fn olh_count_variances(
    m: &Mechanism,
    n: f64,
    counts: &[f64],
    heavy: &[usize],
    plug_in: bool,
) -> Vec<f64> {
    let wang: Vec<f64> = counts.iter().map(|c| count_variance(m, n, *c)).collect();
    let Params::Olh { g, pool, .. } = *m.params() else { return wang };
    let denom = (f64::from(g) - 1.0) * f64::from(pool);
    let is_heavy = membership(counts.len(), heavy);
    let light = |x: usize| {
        let c = counts.get(x).copied().unwrap_or(0.0);
        c * (c - 1.0) - if plug_in { wang.get(x).copied().unwrap_or(0.0) } else { 0.0 }
    };
    let heavy_noise: f64 = heavy.iter().filter_map(|x| wang.get(*x)).sum();
    let light_sum: f64 = (0..counts.len()).filter(|x| !is_heavy[*x]).map(light).sum();
    (0..counts.len())
        .map(|v| {
            let (own_heavy, own_light) = if is_heavy[v] { (wang[v], 0.0) } else { (0.0, light(v)) };
            wang[v] + (heavy_noise - own_heavy) / denom + (light_sum - own_light).max(0.0) / denom
        })
        .collect()
}

/// Constants of the discretised Piecewise mechanism: with `s` the window start,
/// `E[y | s] = b0 + a·s` and `Var[y | s] = c0 + c1·s + c2·s²` (docs/privacy.md).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PiecewiseConstants {
    /// Slope of E[y | s].
    pub a: f64,
    /// Intercept of E[y | s].
    pub b0: f64,
    /// Constant term of Var[y | s].
    pub c0: f64,
    /// Linear term of Var[y | s].
    pub c1: f64,
    /// Quadratic term of Var[y | s].
    pub c2: f64,
    /// Grid steps per input unit.
    pub step: f64,
}

/// The constants of a Piecewise mechanism (`None` for others).
#[must_use]
#[allow(clippy::cast_precision_loss, reason = "grid sizes <= 2^60; f64 rounding is far below sampling error")]
pub fn piecewise_constants(m: &Mechanism) -> Option<PiecewiseConstants> {
    let Params::Piecewise { step, window, outputs, .. } = *m.params() else { return None };
    let (e, _) = exps(m);
    let (n, w) = (outputs as f64, window as f64);
    let z = n + w * (e - 1.0);
    let s1 = |k: f64| k * (k - 1.0) / 2.0;
    let s2 = |k: f64| (k - 1.0) * k * (2.0 * k - 1.0) / 6.0;
    let a = (e - 1.0) * w / z;
    let b0 = (s1(n) + (e - 1.0) * s1(w)) / z;
    let a0 = (s2(n) + (e - 1.0) * s2(w)) / z;
    let a1 = 2.0 * (e - 1.0) * s1(w) / z;
    Some(PiecewiseConstants {
        a,
        b0,
        c0: a0 - b0 * b0,
        c1: a1 - 2.0 * b0 * a,
        c2: a - a * a,
        step: step as f64,
    })
}

/// Variance of the mean estimate when the users hold exactly `values`.
/// Piecewise: `Σ Var[y|s_u] / (n a step)²` (the discretised mechanism; as the grid
/// refines it tends to Wang et al. 2019, Lemma 1, rescaled to [min, max]).
/// Duchi: `Σ (B² − t_u²) (R/2)² / n²` with B = (e^ε+1)/(e^ε−1), t ∈ [−1, 1] (Duchi,
/// Jordan, Wainwright 2018). `NaN` for frequency oracles.
#[must_use]
#[allow(clippy::cast_precision_loss, reason = "variance formulas in f64")]
pub fn mean_variance(m: &Mechanism, values: &[i64]) -> f64 {
    let n = values.len() as f64;
    match *m.params() {
        Params::Piecewise { min, .. } => {
            let Some(k) = piecewise_constants(m) else { return f64::NAN };
            let total: f64 = values
                .iter()
                .map(|x| {
                    let s = x.abs_diff(min) as f64 * k.step;
                    k.c0 + k.c1 * s + k.c2 * s * s
                })
                .sum();
            total / (n * k.a * k.step).powi(2)
        }
        Params::Duchi { min, max } => {
            let (e, _) = exps(m);
            let b = (e + 1.0) / (e - 1.0);
            let r = max.abs_diff(min) as f64;
            let total: f64 = values
                .iter()
                .map(|x| {
                    let t = 2.0 * x.abs_diff(min) as f64 / r - 1.0;
                    b * b - t * t
                })
                .sum();
            total * (r / 2.0).powi(2) / (n * n)
        }
        _ => f64::NAN,
    }
}

/// The continuous Piecewise mechanism's variance for an input t ∈ [−1, 1]
/// (Wang et al. 2019, Lemma 1): `t²/(e^{ε/2} − 1) + (e^{ε/2} + 3)/(3(e^{ε/2} − 1)²)`.
#[must_use]
pub fn piecewise_continuous_variance(epsilon: f64, t: f64) -> f64 {
    let h = (epsilon / 2.0).exp();
    t * t / (h - 1.0) + (h + 3.0) / (3.0 * (h - 1.0) * (h - 1.0))
}

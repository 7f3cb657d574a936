//! From counts to estimates with variance and intervals.

use super::accumulator::{Accumulator, Counts, State};
use super::theory::{
    count_variance, hadamard_blocks_constants, hadamard_blocks_count_variance, olh_count_variances,
    olh_heavy_set, piecewise_constants, support_probabilities,
};
use super::{exps, fwht, project_simplex};
use confiance::ldp::{MechanismName, Params, for_each_hash, hadamard_block, olh_hash_with_key, olh_seed_key};

use super::{EstimateError, Level};

/// The 0.975 quantile of the standard normal distribution.
const Z95: f64 = 1.959_963_984_540_054;

/// One estimated quantity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PointEstimate {
    /// Unbiased estimate: a frequency in [0, 1] up to noise (frequency oracles, may be
    /// negative or above one), or the mean in the metric's units (numeric mechanisms).
    pub value: f64,
    /// Estimated variance of `value` (plug-in of the estimates into the theoretical
    /// formula, see [`super::theory`]).
    pub variance: f64,
    /// `sqrt(variance)`.
    pub std_error: f64,
    /// Lower end of the 95% normal interval.
    pub ci95_low: f64,
    /// Upper end of the 95% normal interval.
    pub ci95_high: f64,
}

impl PointEstimate {
    pub(super) fn new(value: f64, variance: f64) -> Self {
        let variance = variance.max(0.0);
        let se = variance.sqrt();
        Self { value, variance, std_error: se, ci95_low: value - Z95 * se, ci95_high: value + Z95 * se }
    }

    /// The normal interval at `level`: `value ± z·std_error` with `z` the
    /// `(1 + level)/2` normal quantile ([`Level::z`]); at 0.95 it is
    /// `(ci95_low, ci95_high)`.
    ///
    /// ```
    /// use confiance::{Epsilon, hazmat::{ChaCha20Rng, SeedableRng}, ldp::{Domain, LdpValue, MechanismName, Selection}};
    /// use confiance_estimate::{Accumulator, Level};
    /// let m = Selection::new(Domain::Categorical { d: 4 }, Epsilon::from_ratio(1, 1)?, MechanismName::Grr)?.for_period("m", 0);
    /// let mut acc = Accumulator::new(&m);
    /// let mut rng = ChaCha20Rng::seed_from_u64(3);
    /// for i in 0..1000u32 {
    ///     acc.add(&m.encode(LdpValue::Category(i % 4), &mut rng)?)?;
    /// }
    /// let p = acc.estimate().values[0];
    /// let (lo99, hi99) = p.interval(Level::new(0.99)?);
    /// let (lo90, hi90) = p.interval(Level::new(0.90)?);
    /// assert!(lo99 < p.ci95_low && p.ci95_low < lo90 && hi90 < p.ci95_high && p.ci95_high < hi99);
    /// assert_eq!(p.interval(Level::P95), (p.ci95_low, p.ci95_high));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn interval(&self, level: Level) -> (f64, f64) {
        if level == Level::P95 {
            return (self.ci95_low, self.ci95_high);
        }
        let half = level.z() * self.std_error;
        (self.value - half, self.value + half)
    }

    /// [`Self::interval`] at a level given as a number.
    ///
    /// # Errors
    /// [`EstimateError::BadLevel`] unless `0 < level < 1`.
    pub fn interval_at(&self, level: f64) -> Result<(f64, f64), EstimateError> {
        Level::new(level).map(|l| self.interval(l))
    }
}

/// An estimate from an [`Accumulator`]: one [`PointEstimate`] per category for
/// frequency oracles, a single one (the mean) for numeric mechanisms. With no
/// reports every value is 0 with infinite variance.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// The mechanism.
    pub mechanism: MechanismName,
    /// Reports behind the estimate.
    pub n: u64,
    /// Per category (frequency) or the mean.
    pub values: Vec<PointEstimate>,
}

impl Estimate {
    /// The point estimates alone.
    #[must_use]
    pub fn point_values(&self) -> Vec<f64> {
        self.values.iter().map(|p| p.value).collect()
    }

    /// The frequencies projected onto the probability simplex (`None` for a mean).
    /// Biased, and can amplify poisoning: see [`project_simplex`].
    #[must_use]
    pub fn projected(&self) -> Option<Vec<f64>> {
        matches!(self.mechanism, MechanismName::Piecewise | MechanismName::Duchi)
            .then_some(())
            .map_or_else(|| Some(project_simplex(&self.point_values())), |()| None)
    }
}

impl Accumulator {
    /// For frequency oracles, the number of reports supporting each category
    /// (S_v of Wang et al. 2017): the decoding step. Hadamard response by one fast
    /// Walsh–Hadamard transform (O(k log k)); OLH by evaluating each pool entry that
    /// holds a report once per category (O(min(pool, nonzero)·d), independent of n).
    /// `None` for numeric mechanisms.
    #[must_use]
    #[allow(clippy::cast_precision_loss, reason = "counts below 2^53 are exact in f64")]
    pub fn support_counts(&self) -> Option<Vec<f64>> {
        let State::Counts(c) = &self.state else { return None };
        let m = self.mechanism();
        Some(match *m.params() {
            Params::Grr { .. } | Params::Oue { .. } | Params::Sue { .. } => {
                c.to_dense().into_iter().map(|x| x as f64).collect()
            }
            Params::Hadamard { d, .. } => {
                let mut t = vec![0i64; c.len()];
                let to_i64 = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
                match c {
                    Counts::Dense(v) => t.iter_mut().zip(v).for_each(|(t, x)| *t = to_i64(*x)),
                    Counts::Sparse { .. } => {
                        for (j, x) in c.nonzero() {
                            if let Some(slot) = t.get_mut(j) {
                                *slot = to_i64(x);
                            }
                        }
                    }
                }
                fwht(&mut t);
                // Column j supports v iff H[v+1][j] = +1: S_v = (n + (H c)[v+1]) / 2.
                let n = self.count() as f64;
                t.iter().skip(1).take(d as usize).map(|h| (n + *h as f64) / 2.0).collect()
            }
            Params::HadamardBlocks { d, .. } => {
                let (s, _) = self.hadamard_blocks_sums()?;
                s.into_iter().take(d as usize).collect()
            }
            Params::Olh { d, g, pool, pool_key } => {
                let mut support = vec![0u64; d as usize];
                let width = g as usize;
                let add_row = |support: &mut Vec<u64>, seed: u32, row: &[u64]| {
                    for_each_hash(pool_key, seed, d, g, |v, h| {
                        if let (Some(s), Some(x)) = (support.get_mut(v as usize), row.get(h as usize)) {
                            *s += *x;
                        }
                    });
                };
                if let Counts::Dense(v) = c {
                    for (seed, row) in (0..pool).zip(v.chunks_exact(width)) {
                        if row.iter().any(|x| *x != 0) {
                            add_row(&mut support, seed, row);
                        }
                    }
                    return Some(support.into_iter().map(|x| x as f64).collect());
                }
                // The non-zero cells come in index order, so a pool entry's cells are
                // consecutive: gather one row, then hash each category once for it.
                let mut row = vec![0u64; width];
                let mut cells = c.nonzero().peekable();
                while let Some((first, _)) = cells.peek().copied() {
                    let seed = first / width;
                    row.fill(0);
                    while let Some((i, x)) = cells.next_if(|(i, _)| *i / width == seed) {
                        if let Some(slot) = row.get_mut(i % width) {
                            *slot = x;
                        }
                    }
                    let Ok(seed) = u32::try_from(seed) else { break };
                    if seed >= pool {
                        break;
                    }
                    add_row(&mut support, seed, &row);
                }
                support.into_iter().map(|x| x as f64).collect()
            }
            _ => return None,
        })
    }

    /// General-privacy HR: one FWHT per block. Returns, per category, `S_v` (reports
    /// in v's half of its block) and `T_j` (reports in v's block).
    #[allow(clippy::cast_precision_loss, reason = "counts below 2^53 are exact in f64")]
    fn hadamard_blocks_sums(&self) -> Option<(Vec<f64>, Vec<f64>)> {
        let (State::Counts(c), Params::HadamardBlocks { d, blocks, block_size, key }) =
            (&self.state, *self.mechanism().params())
        else {
            return None;
        };
        let (b, size) = (blocks as usize, block_size as usize);
        let to_i64 = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
        let mut all = vec![0i64; c.len()];
        match c {
            Counts::Dense(v) => all.iter_mut().zip(v).for_each(|(t, x)| *t = to_i64(*x)),
            Counts::Sparse { .. } => {
                for (j, x) in c.nonzero() {
                    if let Some(slot) = all.get_mut(j) {
                        *slot = to_i64(x);
                    }
                }
            }
        }
        for block in all.chunks_exact_mut(size) {
            fwht(block);
        }
        // Category v: block `hadamard_block(key, B, v)`, row ⌊v/B⌋ + 1;
        // (H c)[row] = 2S_v − T_j, (H c)[0] = T_j.
        let (mut support, mut block_totals) =
            (Vec::with_capacity(d as usize), Vec::with_capacity(d as usize));
        for v in 0..d {
            let j = hadamard_block(key, blocks, v) as usize;
            let t = all.get(j * size..(j + 1) * size)?;
            let (total, h) = (*t.first()? as f64, *t.get(v as usize / b + 1)? as f64);
            support.push((total + h) / 2.0);
            block_totals.push(total);
        }
        Some((support, block_totals))
    }

    /// General-privacy HR's estimates: `f̂_v = Z(2S_v − T_j)/(n(e^ε − 1))`, unbiased since
    /// `E[S_v/n] = 1/Z + (e^ε − 1)(f_v + f_j)/(2Z)` and `E[T_j/n] = 2/Z + (e^ε − 1)f_j/Z`
    /// (Acharya et al. 2019); variance [`hadamard_blocks_count_variance`] with the
    /// estimated `n_v` and block count `n_j = (Z T_j − 2n)/(e^ε − 1)` plugged in.
    #[allow(clippy::cast_precision_loss, reason = "estimators in f64")]
    fn hadamard_blocks_estimate(&self) -> Option<Vec<PointEstimate>> {
        let m = *self.mechanism();
        let (z, em1) = hadamard_blocks_constants(&m)?;
        let (support, totals) = self.hadamard_blocks_sums()?;
        let n = self.count() as f64;
        Some(
            support
                .iter()
                .zip(&totals)
                .map(|(s, t)| {
                    let count = z * (2.0 * s - t) / em1;
                    // Unclamped: the variance is linear in n_j and n_v, so unbiased counts
                    // give an unbiased variance (clamping at 0 inflated it). Floored at
                    // 2nZ/(e^ε − 1)², below which no (n_j ≥ n_v ≥ 0) puts the true one.
                    let n_block = (z * t - 2.0 * n) / em1;
                    let floor = 2.0 * n * z / (em1 * em1);
                    let var = hadamard_blocks_count_variance(&m, n, n_block, count).max(floor);
                    PointEstimate::new(count / n, var / (n * n))
                })
                .collect(),
        )
    }

    /// Unbiased estimates with variance, standard error and 95% interval.
    ///
    /// Frequencies: f̂_v = (S_v − nq)/(n(p − q)), variance from Wang et al. 2017
    /// (plus the seed-pool term for OLH) with the estimated counts plugged in;
    /// general-privacy HR by its blocks (`hadamard_blocks_count_variance`).
    /// Piecewise: the mean from Σy, variance from Σy and Σy² (docs/privacy.md).
    /// Duchi: the mean from the sign count; its variance `Σ(B² − t_u²)` cannot be
    /// estimated from one-bit reports, so `(B² − t̄²)/n` is used — an upper bound
    /// (conservative intervals).
    #[must_use]
    #[allow(clippy::cast_precision_loss, reason = "estimators in f64")]
    pub fn estimate(&self) -> Estimate {
        let m = *self.mechanism();
        let n = self.count() as f64;
        let name = m.name();
        let empty = |k: usize| Estimate {
            mechanism: name,
            n: 0,
            values: vec![PointEstimate::new(0.0, f64::INFINITY); k],
        };
        if let Params::HadamardBlocks { d, .. } = *m.params() {
            if self.count() == 0 {
                return empty(d as usize);
            }
            let values = self.hadamard_blocks_estimate().unwrap_or_default();
            return Estimate { mechanism: name, n: self.count(), values };
        }
        if let (Some(support), Some((p, q))) = (self.support_counts(), support_probabilities(&m)) {
            if self.count() == 0 {
                return empty(support.len());
            }
            let counts: Vec<f64> = support.iter().map(|s| (s - n * q) / (p - q)).collect();
            let (counts, variance) = olh_pool_correction(&m, counts, n);
            let values = counts
                .iter()
                .zip(variance)
                .map(|(c, var)| PointEstimate::new(c / n, var / (n * n)))
                .collect();
            return Estimate { mechanism: name, n: self.count(), values };
        }
        if self.count() == 0 {
            return empty(1);
        }
        let value = match (*m.params(), &self.state) {
            (Params::Piecewise { min, .. }, State::Moments { sum, sum_sq }) => {
                let Some(k) = piecewise_constants(&m) else { return empty(1) };
                let (sy, syy) = (*sum as f64, *sum_sq as f64);
                // Σŝ and Σŝ² with ŝ = (y − b0)/a; then an unbiased Σs² from
                // E[ŝ²|s] = s² + Var[y|s]/a².
                let s_hat = (sy - n * k.b0) / k.a;
                let s_hat_sq = (syy - 2.0 * k.b0 * sy + n * k.b0 * k.b0) / (k.a * k.a);
                let s_sq = ((s_hat_sq - (n * k.c0 + k.c1 * s_hat) / (k.a * k.a))
                    / (1.0 + k.c2 / (k.a * k.a)))
                    .max(s_hat * s_hat / n);
                let var_sum = n * k.c0 + k.c1 * s_hat + k.c2 * s_sq;
                let mean = min as f64 + s_hat / n / k.step;
                PointEstimate::new(mean, var_sum / (n * k.a * k.step).powi(2))
            }
            (Params::Duchi { min, max }, State::Ones(ones)) => {
                let (e, _) = exps(&m);
                let b = (e + 1.0) / (e - 1.0);
                let r = max.abs_diff(min) as f64;
                let t_bar = b * (2.0 * *ones as f64 - n) / n;
                let var_t = (b * b - t_bar.clamp(-1.0, 1.0).powi(2)) / n;
                PointEstimate::new(min as f64 + (t_bar + 1.0) / 2.0 * r, var_t * (r / 2.0).powi(2))
            }
            _ => return empty(1),
        };
        Estimate { mechanism: name, n: self.count(), values: vec![value] }
    }
}

/// The most Neumann steps on the heavy categories (each `P·|H|` hash evaluations).
const OLH_CORRECTION_MAX_STEPS: usize = 32;

/// Rounds of heavy-set selection and correction (each at most one `P·d` pass).
const OLH_CORRECTION_MAX_ROUNDS: usize = 4;

/// Wang et al.'s counts `counts` (`ĉ`) with, for OLH, the seed pool's collisions
/// corrected on the heavy categories (docs/privacy.md §3, "Correcting the pool's
/// collisions"), and each count's variance.
///
/// Given the pool, `E[ĉ] = (I + κD)·n` with `κ = g/(g − 1)`, `D[v][x] = c_vx − 1/g` for
/// `x ≠ v` (0 on the diagonal) and `c_vx` the fraction of pool entries that hash `x` and
/// `v` together. The decoder knows the pool, so it removes `κ·D·n` over the heavy set
/// `H` ([`olh_heavy_set`]): it solves `(I + κD_HH)·n̂_H = ĉ_H` by the Neumann iteration
/// (`P·|H|` hashes a step; if a step moves more than the one before, the round's
/// correction is dropped), then corrects every category once,
/// `n̂_v = ĉ_v − κ·(D·n̂_H)_v` (`P·(d + |H|)` hashes), and selects again from the
/// corrected counts until the set stops growing (at most
/// [`OLH_CORRECTION_MAX_ROUNDS`]). Variances: [`olh_count_variances`].
#[allow(clippy::cast_precision_loss, reason = "estimators in f64")]
fn olh_pool_correction(m: &confiance::ldp::Mechanism, counts: Vec<f64>, n: f64) -> (Vec<f64>, Vec<f64>) {
    let clamp = |c: &[f64]| -> Vec<f64> { c.iter().map(|x| x.clamp(0.0, n)).collect() };
    if !matches!(m.params(), Params::Olh { .. }) {
        // Unclamped: Wang et al.'s variance is linear in n_v, so the unbiased ĉ_v gives
        // an unbiased variance; clamping negative ĉ_v to 0 inflated it (GRR at d = 1024:
        // 98% coverage for 95% intervals). It stays positive for every S_v in [0, n].
        let variance = olh_count_variances(m, n, &counts, &[], true);
        return (counts, variance);
    }
    let (mut best, mut heavy) = (counts.clone(), Vec::new());
    for _ in 0..OLH_CORRECTION_MAX_ROUNDS {
        let next = olh_heavy_set(m, n, &clamp(&best), true, &heavy);
        if next == heavy {
            break;
        }
        match olh_correct_on(m, &counts, n, &next) {
            Some(corrected) => (best, heavy) = (corrected, next),
            None => break,
        }
    }
    // Unclamped, as above: linear terms and debiased squares are unbiased as they are.
    let variance = olh_count_variances(m, n, &best, &heavy, true);
    (best, variance)
}

/// `ĉ` corrected for the collisions of the categories in `heavy`; `None` when the
/// iteration on them does not contract.
#[allow(clippy::cast_precision_loss, reason = "estimators in f64")]
fn olh_correct_on(
    m: &confiance::ldp::Mechanism,
    counts: &[f64],
    n: f64,
    heavy: &[usize],
) -> Option<Vec<f64>> {
    let Params::Olh { d, g, pool, pool_key } = *m.params() else { return None };
    let (g_f, pool_f) = (f64::from(g), f64::from(pool));
    let kappa = g_f / (g_f - 1.0);
    let values: Vec<u32> = heavy.iter().filter_map(|x| u32::try_from(*x).ok()).collect();
    let raw: Vec<f64> = heavy.iter().map(|x| counts.get(*x).copied().unwrap_or(0.0)).collect();
    // (D·x)_v for x supported on H, from t_v = Σ_s Σ_{y∈H : h_s(y) = h_s(v)} x_y:
    // t_v/P − (x_v if v ∈ H) − (Σx − x_v·[v ∈ H])/g.
    let d_x = |t: f64, own: f64, total: f64| t / pool_f - own - (total - own) / g_f;
    let tolerance =
        0.01 * raw.iter().map(|c| count_variance(m, n, c.clamp(0.0, n))).fold(f64::INFINITY, f64::min).sqrt();
    let mut solved = raw.clone();
    let (mut converged, mut last_move) = (false, f64::INFINITY);
    for _ in 0..OLH_CORRECTION_MAX_STEPS {
        let sources: Vec<(u32, f64)> = values.iter().copied().zip(solved.iter().copied()).collect();
        let together = olh_collision_sums(pool_key, pool, g, &sources, &values);
        let total: f64 = solved.iter().sum();
        let next: Vec<f64> = raw
            .iter()
            .zip(&solved)
            .zip(&together)
            .map(|((c, x), t)| c - kappa * d_x(*t, *x, total))
            .collect();
        let moved = next.iter().zip(&solved).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        solved = next;
        if moved <= tolerance {
            converged = true;
            break;
        }
        if moved > last_move {
            break;
        }
        last_move = moved;
    }
    if !converged {
        return None;
    }
    // Every category, once, against the solved heavy counts.
    let sources: Vec<(u32, f64)> = values.iter().copied().zip(solved.iter().copied()).collect();
    let all: Vec<u32> = (0..d).collect();
    let together = olh_collision_sums(pool_key, pool, g, &sources, &all);
    let total: f64 = solved.iter().sum();
    let mut own = vec![0.0; d as usize];
    for (x, v) in heavy.iter().zip(&solved) {
        if let Some(o) = own.get_mut(*x) {
            *o = *v;
        }
    }
    Some(counts.iter().zip(&together).zip(&own).map(|((c, t), o)| c - kappa * d_x(*t, *o, total)).collect())
}

/// For every target value `v`, `Σ_s Σ_{(x, w) ∈ sources : h_s(x) = h_s(v)} w` over all
/// pool entries `s`: `P·(|sources| + |targets|)` hash evaluations, split into 8 fixed
/// chunks (summed in order, so the result is the same on every machine) run on the
/// available cores when that is worth a thread.
fn olh_collision_sums(pool_key: u64, pool: u32, g: u32, sources: &[(u32, f64)], targets: &[u32]) -> Vec<f64> {
    let run = |seeds: core::ops::Range<u32>| {
        let mut sums = vec![0.0f64; targets.len()];
        let mut buckets = vec![0.0f64; g as usize];
        for seed in seeds {
            let key = olh_seed_key(pool_key, seed);
            for (x, w) in sources {
                if let Some(b) = buckets.get_mut(olh_hash_with_key(key, *x, g) as usize) {
                    *b += *w;
                }
            }
            for (s, v) in sums.iter_mut().zip(targets) {
                *s += buckets.get(olh_hash_with_key(key, *v, g) as usize).copied().unwrap_or(0.0);
            }
            for (x, _) in sources {
                if let Some(b) = buckets.get_mut(olh_hash_with_key(key, *x, g) as usize) {
                    *b = 0.0;
                }
            }
        }
        sums
    };
    let work = u64::from(pool) * (sources.len() + targets.len()) as u64;
    let chunks: u32 = if work < 1 << 22 { 1 } else { 8 };
    let size = pool.div_ceil(chunks);
    let ranges: Vec<_> = (0..chunks)
        .map(|i| i.saturating_mul(size).min(pool)..(i + 1).saturating_mul(size).min(pool))
        .collect();
    let parallel = chunks > 1 && std::thread::available_parallelism().map_or(1, std::num::NonZero::get) > 1;
    let parts: Vec<Vec<f64>> = if parallel {
        std::thread::scope(|scope| {
            let run = &run;
            let handles: Vec<_> =
                ranges.iter().map(|r| (r.clone(), scope.spawn(move || run(r.clone())))).collect();
            // A worker cannot panic (no indexing, no unwrap); if one did, redo its chunk here.
            handles.into_iter().map(|(r, h)| h.join().unwrap_or_else(|_| run(r))).collect()
        })
    } else {
        ranges.into_iter().map(run).collect()
    };
    let mut total = vec![0.0f64; targets.len()];
    for part in parts {
        for (t, x) in total.iter_mut().zip(part) {
            *t += x;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::olh_collision_sums;
    use confiance::ldp::olh_hash;

    /// The chunked (and, with two cores, threaded) sums equal the definition
    /// `Σ_s Σ_{(x, w) : h_s(x) = h_s(v)} w`, evaluated naively.
    #[test]
    #[allow(clippy::cast_precision_loss, reason = "small test values")]
    fn collision_sums_match_the_definition() {
        for (d, pool, g) in [(5u32, 7u32, 3u32), (32, 1 << 17, 4)] {
            let sources: Vec<(u32, f64)> =
                (0..d).filter(|x| x % 3 != 1).map(|x| (x, f64::from(x * x % 11) - 2.5)).collect();
            let targets: Vec<u32> = (0..d).rev().collect();
            let fast = olh_collision_sums(42, pool, g, &sources, &targets);
            for (i, v) in targets.iter().enumerate() {
                let mut naive = 0.0;
                for s in 0..pool {
                    let hv = olh_hash(42, s, *v, g);
                    for (x, w) in &sources {
                        if olh_hash(42, s, *x, g) == hv {
                            naive += w;
                        }
                    }
                }
                let err = (fast[i] - naive).abs();
                assert!(err <= 1e-9 * f64::abs(naive).max(1.0), "d={d} v={v}: {} vs {naive}", fast[i]);
            }
        }
    }
}

//! From counts to estimates with variance and intervals.

use super::accumulator::{Accumulator, Counts, State};
use super::theory::{
    count_variance, hadamard_blocks_constants, hadamard_blocks_count_variance, piecewise_constants,
    support_probabilities,
};
use super::{exps, fwht, project_simplex};
use confiance::ldp::{MechanismName, Params, for_each_hash};

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
        let (State::Counts(c), Params::HadamardBlocks { d, blocks, block_size }) =
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
        // Category v: block v mod B, row ⌊v/B⌋ + 1; (H c)[row] = 2S_v − T_j, (H c)[0] = T_j.
        let (mut support, mut block_totals) =
            (Vec::with_capacity(d as usize), Vec::with_capacity(d as usize));
        for v in 0..d as usize {
            let t = all.get((v % b) * size..(v % b + 1) * size)?;
            let (total, h) = (*t.first()? as f64, *t.get(v / b + 1)? as f64);
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
                    let n_block = ((z * t - 2.0 * n) / em1).clamp(0.0, n);
                    let var = hadamard_blocks_count_variance(&m, n, n_block, count.clamp(0.0, n));
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
            let values = match olh_pool_correction(&m, &counts, n) {
                OlhPool::Corrected { counts, variance } => counts
                    .iter()
                    .zip(variance)
                    .map(|(c, var)| PointEstimate::new(c / n, var / (n * n)))
                    .collect(),
                OlhPool::Uncorrected { extra } => counts
                    .iter()
                    .map(|c| {
                        let cc = c.clamp(0.0, n);
                        let var = count_variance(&m, n, cc)
                            + extra.map_or(0.0, |(sum, denom)| ((sum - (cc * cc - cc)).max(0.0)) / denom);
                        PointEstimate::new(c / n, var / (n * n))
                    })
                    .collect(),
            };
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

/// How [`Accumulator::estimate`] treats OLH's finite seed pool.
enum OlhPool {
    /// Counts with the pool's collisions removed, and their variances.
    Corrected { counts: Vec<f64>, variance: Vec<f64> },
    /// Wang et al.'s counts; for OLH `(Σ_x (n̂_x² − n̂_x − V̂_x), (g − 1)·pool)`, the plug-in
    /// of the seed-pool variance term, each squared estimate debiased by its variance V̂_x.
    Uncorrected { extra: Option<(f64, f64)> },
}

/// OLH's collision correction needs `d·16 ≤ g·pool`, so that `‖κD‖ ≈ 2√(d/(g·pool)) ≤ 1/2`
/// and its iteration converges geometrically.
const OLH_CORRECTION_MAX_RATIO: u64 = 16;

/// The most correction steps (each `P·d` hash evaluations); at `‖κD‖ ≤ 1/2` eight steps
/// leave `2^-8` of the pool's bias.
const OLH_CORRECTION_MAX_STEPS: usize = 8;

/// OLH's collision correction (docs/privacy.md §3, "Correcting the pool's collisions").
///
/// With a pool of `P` hash functions, `E[ĉ | pool] = n + κ·D·n` where ĉ are Wang et
/// al.'s counts, `κ = g/(g − 1)` and `D[v][x] = c_vx − 1/g` for `x ≠ v` (0 on the
/// diagonal), `c_vx` the fraction of pool entries that hash `x` and `v` together. The
/// decoder knows the pool, so it solves `(I + κD)·n̂ = ĉ` by the Neumann iteration
/// `n̂ ← ĉ − κ·D·n̂` (each step P·d hash evaluations). The correction trades the
/// pool term `Σ_{x≠v} n_x(n_x − 1)/((g−1)P)` for `Σ_{x≠v} Var ĉ_x/((g−1)P)` (the noise of
/// the other counts seen through `D`), so it is applied only when the first, estimated,
/// exceeds the second, and when `16·d ≤ g·P`.
#[allow(clippy::cast_precision_loss, reason = "estimators in f64")]
fn olh_pool_correction(m: &confiance::ldp::Mechanism, counts: &[f64], n: f64) -> OlhPool {
    let Params::Olh { d, g, pool, pool_key } = *m.params() else {
        return OlhPool::Uncorrected { extra: None };
    };
    let variance: Vec<f64> = counts.iter().map(|c| count_variance(m, n, c.clamp(0.0, n))).collect();
    let squares: f64 =
        counts.iter().zip(&variance).map(|(c, v)| c.clamp(0.0, n).powi(2) - c.clamp(0.0, n) - v).sum();
    let (g_f, pool_f) = (f64::from(g), f64::from(pool));
    let denom = (g_f - 1.0) * pool_f;
    let total_var: f64 = variance.iter().sum();
    let small_enough = u64::from(d) * OLH_CORRECTION_MAX_RATIO <= u64::from(g) * u64::from(pool);
    if !small_enough || squares <= total_var {
        return OlhPool::Uncorrected { extra: Some((squares.max(0.0), denom)) };
    }
    // Solve (I + κD)·n̂ = ĉ by the Neumann iteration n̂ ← ĉ − κ·D·n̂. The steps shrink by
    // ρ ≈ ‖κD‖ ≈ 2√(d/(gP)) ≤ 1/2, so after a step that moved a count by δ the rest of the
    // series moves it by at most δρ/(1 − ρ): stop once that is a twentieth of the
    // smallest standard error (a bias of 0.05 sd adds 0.25% to the MSE).
    let kappa = g_f / (g_f - 1.0);
    let rho = 2.0 * (f64::from(d) / (g_f * pool_f)).sqrt();
    let tolerance = 0.05 * variance.iter().copied().fold(f64::INFINITY, f64::min).sqrt() * (1.0 - rho) / rho;
    let mut corrected = counts.to_vec();
    for _ in 0..OLH_CORRECTION_MAX_STEPS {
        let together = olh_collision_sums(pool_key, pool, d, g, &corrected);
        let total: f64 = corrected.iter().sum();
        let next: Vec<f64> = counts
            .iter()
            .zip(&corrected)
            .zip(&together)
            .map(|((c, x), t)| {
                // (D·x)_v = Σ_{y≠v} (c_vy − 1/g) x_y = t_v/P − x_v − (Σx − x_v)/g.
                c - kappa * (t / pool_f - x - (total - x) / g_f)
            })
            .collect();
        let moved = next.iter().zip(&corrected).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        corrected = next;
        if moved <= tolerance {
            break;
        }
    }
    let variance: Vec<f64> = corrected.iter().map(|c| count_variance(m, n, c.clamp(0.0, n))).collect();
    let total_var: f64 = variance.iter().sum();
    let variance = variance.iter().map(|v| v + (total_var - v) / denom).collect();
    OlhPool::Corrected { counts: corrected, variance }
}

/// For every category `v`, `Σ_s Σ_{x : h_s(x) = h_s(v)} counts[x]` over all pool entries
/// `s` (x = v included): `P·d` hash evaluations, split over the available cores when
/// that is worth a thread.
fn olh_collision_sums(pool_key: u64, pool: u32, d: u32, g: u32, counts: &[f64]) -> Vec<f64> {
    let run = |seeds: core::ops::Range<u32>| {
        let mut sums = vec![0.0f64; d as usize];
        let mut buckets = vec![0.0f64; g as usize];
        let mut hashes = vec![0u32; d as usize];
        for seed in seeds {
            for_each_hash(pool_key, seed, d, g, |v, h| {
                if let (Some(slot), Some(b), Some(c)) =
                    (hashes.get_mut(v as usize), buckets.get_mut(h as usize), counts.get(v as usize))
                {
                    *slot = h;
                    *b += *c;
                }
            });
            for (s, h) in sums.iter_mut().zip(&hashes) {
                *s += buckets.get(*h as usize).copied().unwrap_or(0.0);
            }
            for h in &hashes {
                if let Some(b) = buckets.get_mut(*h as usize) {
                    *b = 0.0;
                }
            }
        }
        sums
    };
    // Fixed chunks summed in order, whatever the number of cores: the estimate is the
    // same on every machine.
    let chunks: u32 = if u64::from(pool) * u64::from(d) < 1 << 22 { 1 } else { 8 };
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
    let mut total = vec![0.0f64; d as usize];
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
    /// `Σ_s Σ_{x : h_s(x) = h_s(v)} counts[x]`, evaluated naively.
    #[test]
    #[allow(clippy::cast_precision_loss, reason = "small test values")]
    fn collision_sums_match_the_definition() {
        for (d, pool, g) in [(5u32, 7u32, 3u32), (32, 1 << 17, 4)] {
            let counts: Vec<f64> = (0..d).map(|x| f64::from(x * x % 11) - 2.5).collect();
            let fast = olh_collision_sums(42, pool, d, g, &counts);
            for v in 0..d {
                let mut naive = 0.0;
                for s in 0..pool {
                    let hv = olh_hash(42, s, v, g);
                    for x in 0..d {
                        if olh_hash(42, s, x, g) == hv {
                            naive += counts[x as usize];
                        }
                    }
                }
                let err = (fast[v as usize] - naive).abs();
                assert!(err <= 1e-9 * naive.abs().max(1.0), "d={d} v={v}: {} vs {naive}", fast[v as usize]);
            }
        }
    }
}

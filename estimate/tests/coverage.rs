//! Interval coverage at scale (issue 22): GRR at d = 1024, where the plug-in variance
//! over-covered (95.8–96.1% here, 96.1–96.4% in the issue's own runs), and a coverage
//! table per mechanism for the docs.
//!
//! Each repetition encodes a fixed population (exact counts per category, so the truth
//! is `n_v / n` and the variance is the mechanism's alone) with fresh seeds, estimates,
//! and counts the categories whose 95% interval covers the truth. GRR, d = 1024,
//! n = 10^5 (about 100 expected supporting reports per category), three cells (ε = 1 and
//! 4, Zipf(1.1) and uniform), 100 repetitions each: 102 400 intervals per cell. The
//! estimates of one repetition are nearly independent (multinomial, correlation about
//! −1/d), so the coverage's standard error is √(0.95 · 0.05 / 102 400) ≈ 0.07%; the
//! test measures it across repetitions and requires it below 0.1%, so [94%, 96%] is more
//! than ±10 standard errors, and the mean over the three cells (standard error 0.04%)
//! must lie within [94.5%, 95.5%].
//!
//! Measured: 94.71%, 94.64%, 94.74% (the plug-in of the unclamped, unbiased count);
//! with the former clamped plug-in 95.75%, 96.14%, 95.93% (mean 95.94%: fails both
//! checks). The remaining 0.3% below 95% is the Wald interval's: its standard error is
//! itself estimated, from the same ~100 reports.
//!
//! At n = 10^4 (~10 supporting reports per category, S_v about Poisson(10)) no plug-in
//! normal interval is right: 98.2% clamped, 91.7% unclamped — Poisson discreteness and a
//! standard error as noisy as the estimate. Keep n/d large enough for ~100 reports of
//! support, or widen `Level`.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "tests"
)]

use confiance::Epsilon;
use confiance::hazmat::{ChaCha20Rng, SeedableRng};
use confiance::ldp::{Domain, LdpValue, Mechanism, MechanismName, Selection};
use confiance_estimate::{Accumulator, Level};

/// Counts of a Zipf(s) law over `k` values, summing to exactly `n` (s = 0: uniform).
fn zipf_counts(k: usize, s: f64, n: usize) -> Vec<usize> {
    let w: Vec<f64> = (1..=k).map(|i| (i as f64).powf(-s)).collect();
    let total: f64 = w.iter().sum();
    let mut c: Vec<usize> = w.iter().map(|x| (x / total * n as f64).floor() as usize).collect();
    let short = n - c.iter().sum::<usize>();
    c[0] += short;
    c
}

/// Coverage at each of `levels` per repetition (the fraction of outputs whose interval
/// covers the truth), over `reps` repetitions; repetition `r` uses `make(r)` (a fresh
/// period, so a fresh key for keyed mechanisms) and seed `seed + r`. Indexed
/// `[level][repetition]`.
fn coverage_per_rep(
    make: &(dyn Fn(u64) -> Mechanism + Sync),
    values: &[LdpValue],
    truth: &[f64],
    reps: u64,
    seed: u64,
    levels: &[Level],
) -> Vec<Vec<f64>> {
    let run = |rep: u64| {
        let m = make(rep);
        let mut acc = Accumulator::new(&m);
        let mut rng = ChaCha20Rng::seed_from_u64(seed + rep);
        for v in values {
            acc.add(&m.encode(*v, &mut rng).unwrap()).unwrap();
        }
        let est = acc.estimate();
        levels
            .iter()
            .map(|level| {
                let hits = est
                    .values
                    .iter()
                    .zip(truth)
                    .filter(|(p, t)| {
                        let (lo, hi) = p.interval(*level);
                        lo <= **t && **t <= hi
                    })
                    .count();
                hits as f64 / truth.len() as f64
            })
            .collect::<Vec<f64>>()
    };
    let runs = std::thread::scope(|s| {
        let a = s.spawn(|| (0..reps).filter(|r| r % 2 == 0).map(run).collect::<Vec<_>>());
        let b = s.spawn(|| (0..reps).filter(|r| r % 2 == 1).map(run).collect::<Vec<_>>());
        let mut out = a.join().unwrap();
        out.extend(b.join().unwrap());
        out
    });
    (0..levels.len()).map(|l| runs.iter().map(|r| r[l]).collect()).collect()
}

/// Mean and standard error of the mean of per-repetition coverages.
fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

fn population(counts: &[usize]) -> (Vec<LdpValue>, Vec<f64>) {
    let n: usize = counts.iter().sum();
    let values = counts
        .iter()
        .enumerate()
        .flat_map(|(v, c)| std::iter::repeat_n(LdpValue::Category(v as u32), *c))
        .collect();
    let truth = counts.iter().map(|c| *c as f64 / n as f64).collect();
    (values, truth)
}

fn categorical(name: MechanismName, d: u32, eps: Epsilon) -> Selection {
    Selection::new(Domain::Categorical { d }, eps, name).unwrap()
}

#[test]
fn grr_at_d_1024_covers_95_percent() {
    const REPS: u64 = 100;
    let mut report = Vec::new();
    for (eps, s) in [(1u32, 1.1f64), (1, 0.0), (4, 1.1)] {
        let sel = categorical(MechanismName::Grr, 1024, Epsilon::from_ratio(eps, 1).unwrap());
        let (values, truth) = population(&zipf_counts(1024, s, 100_000));
        let per_rep = coverage_per_rep(
            &|r| sel.for_period("m", r),
            &values,
            &truth,
            REPS,
            0xc0_0000 + u64::from(eps),
            &[Level::P95],
        );
        let (cov, se) = mean_se(&per_rep[0]);
        report.push((format!("ε = {eps}, Zipf({s}): {:.2}% ± {:.3}%", 100.0 * cov, 100.0 * se), cov, se));
    }
    println!("{report:#?}");
    for (cell, cov, se) in &report {
        assert!(*se < 0.001, "not resolved: {cell}");
        assert!((0.94..=0.96).contains(cov), "{cell}");
    }
    let mean = report.iter().map(|r| r.1).sum::<f64>() / report.len() as f64;
    assert!((0.945..=0.955).contains(&mean), "mean coverage {mean}: {report:#?}");
}

/// Coverage of every mechanism's 90%, 95% and 99% intervals, printed as the table in
/// docs/benchmarks.md: `cargo test -p confiance-estimate --test coverage -- --ignored
/// --nocapture`. Categorical: Zipf(1.1), ε = 1 and 4; d = 16 with n = 10^4 (400
/// repetitions: 6 400 intervals, standard error 0.27% at 95%) and d = 1024 with n = 10^5
/// (40 repetitions: 40 960 intervals, 0.11%; unary encodings and OLH at d = 16 only, for
/// their cost). Numeric: Zipf(1.1) over [0, 100], n = 10^4, 1000 repetitions (0.69%).
#[test]
#[ignore = "prints the docs' coverage table; a few minutes"]
fn coverage_table() {
    let levels = [Level::new(0.90).unwrap(), Level::P95, Level::new(0.99).unwrap()];
    let row = |label: String,
               make: &(dyn Fn(u64) -> Mechanism + Sync),
               values: &[LdpValue],
               truth: &[f64],
               reps: u64| {
        let cells: Vec<String> = coverage_per_rep(make, values, truth, reps, 0x7ab1e, &levels)
            .iter()
            .map(|per_rep| {
                let (cov, se) = mean_se(per_rep);
                format!("{:.2} ± {:.2}", 100.0 * cov, 100.0 * se)
            })
            .collect();
        println!("| {label} | {reps} | {} |", cells.join(" | "));
    };
    println!("| mechanism, domain, ε | repetitions | 90% | 95% | 99% |\n|---|---|---|---|---|");
    for eps in [1u32, 4] {
        let e = Epsilon::from_ratio(eps, 1).unwrap();
        for (d, n, reps) in [(16u32, 10_000, 400), (1024, 100_000, 40)] {
            let (values, truth) = population(&zipf_counts(d as usize, 1.1, n));
            for name in [
                MechanismName::Grr,
                MechanismName::Oue,
                MechanismName::Sue,
                MechanismName::Olh,
                MechanismName::Hadamard,
                MechanismName::HadamardBlocks,
            ] {
                if d > 16 && matches!(name, MechanismName::Oue | MechanismName::Sue | MechanismName::Olh) {
                    continue;
                }
                let sel = categorical(name, d, e);
                row(
                    format!("{name}, d = {d}, n = {n}, ε = {eps}"),
                    &|r| sel.for_period("m", r),
                    &values,
                    &truth,
                    reps,
                );
            }
        }
        let counts = zipf_counts(101, 1.1, 10_000);
        let values: Vec<LdpValue> = counts
            .iter()
            .enumerate()
            .flat_map(|(v, c)| std::iter::repeat_n(LdpValue::Numeric(v as i64), *c))
            .collect();
        let mean = counts.iter().enumerate().map(|(v, c)| v as f64 * *c as f64).sum::<f64>() / 10_000.0;
        for name in [MechanismName::Piecewise, MechanismName::Duchi] {
            let sel = Selection::new(Domain::Numeric { min: 0, max: 100 }, e, name).unwrap();
            row(
                format!("{name}, [0, 100], n = 10^4, ε = {eps}"),
                &|r| sel.for_period("m", r),
                &values,
                &[mean],
                1000,
            );
        }
    }
}

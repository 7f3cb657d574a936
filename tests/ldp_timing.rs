//! Must show (issue 3): for each mechanism, the distribution of the number of random
//! words drawn per report is the same for every input value.
//!
//! Test: for every value of a d = 8 domain (and 5 values across a numeric range), draw
//! 20 000 reports from an independent seeded stream and record how many 64-bit words
//! each consumed (the encoders draw nothing else). The k histograms form a contingency
//! table; a chi-square test of homogeneity (cells with expected count < 5 pooled into
//! one tail cell per row) must not reject at p = 1e-6. The loop-iteration count is a
//! function of the draws, so it is covered too. A deliberately leaky GRR (skips its
//! Bernoulli draw when the candidate equals the value) is rejected by the same test,
//! which shows the test has the power to see the leak it guards against.

#![allow(
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use confiance::Epsilon;
use confiance::hazmat::{ChaCha20Rng, SeedableRng, bernoulli_exp_neg, uniform_below};
use confiance::ldp::{Domain, LdpValue, MechanismName, Selection};
use confiance::noise::Ratio;
use rand_core::{TryCryptoRng, TryRng};
use std::collections::BTreeMap;

const REPORTS: u64 = 20_000;

/// Counts the 64-bit words drawn (`fill_bytes` counted in 8-byte words, rounded up).
struct Counting {
    inner: ChaCha20Rng,
    words: u64,
}

impl TryRng for Counting {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        self.words += 1;
        self.inner.try_next_u32()
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.words += 1;
        self.inner.try_next_u64()
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.words += dst.len().div_ceil(8) as u64;
        self.inner.try_fill_bytes(dst)
    }
}
impl TryCryptoRng for Counting {}

fn histogram(seed: u64, mut encode: impl FnMut(&mut Counting)) -> BTreeMap<u64, u64> {
    let mut rng = Counting { inner: ChaCha20Rng::seed_from_u64(seed), words: 0 };
    let mut h = BTreeMap::new();
    for _ in 0..REPORTS {
        let before = rng.words;
        encode(&mut rng);
        *h.entry(rng.words - before).or_insert(0) += 1;
    }
    h
}

/// Chi-square homogeneity statistic and degrees of freedom over the rows.
fn homogeneity(rows: &[BTreeMap<u64, u64>]) -> (f64, usize) {
    let mut col_totals: BTreeMap<u64, u64> = BTreeMap::new();
    for r in rows {
        for (k, v) in r {
            *col_totals.entry(*k).or_insert(0) += v;
        }
    }
    let total: u64 = col_totals.values().sum();
    let rows_n = rows.len() as f64;
    // Pool sparse columns (expected per row < 5) into one tail column.
    let big: Vec<u64> =
        col_totals.iter().filter(|(_, v)| **v as f64 / rows_n >= 5.0).map(|(k, _)| *k).collect();
    let mut stat = 0.0;
    let columns = big.len() + usize::from(big.len() < col_totals.len());
    for r in rows {
        let row_total: u64 = r.values().sum();
        let mut tail_obs = 0.0;
        let mut tail_exp = 0.0;
        for (k, col) in &col_totals {
            let obs = *r.get(k).unwrap_or(&0) as f64;
            let exp = row_total as f64 * *col as f64 / total as f64;
            if big.contains(k) {
                stat += (obs - exp).powi(2) / exp;
            } else {
                tail_obs += obs;
                tail_exp += exp;
            }
        }
        if tail_exp > 0.0 {
            stat += (tail_obs - tail_exp).powi(2) / tail_exp;
        }
    }
    (stat, (rows.len() - 1) * (columns.max(2) - 1))
}

fn critical(df: usize) -> f64 {
    let k = df as f64;
    let z = 4.753_424;
    if df == 1 { 23.928 } else { k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3) }
}

fn assert_homogeneous(label: &str, rows: &[BTreeMap<u64, u64>]) {
    let (stat, df) = homogeneity(rows);
    let crit = critical(df);
    eprintln!("{label}: chi2 = {stat:.1}, df = {df}, critical(1e-6) = {crit:.1}");
    assert!(stat < crit, "{label}: draw counts depend on the value (chi2 {stat:.1} ≥ {crit:.1}, df {df})");
}

#[test]
fn frequency_oracles_draw_independently_of_the_value() {
    for eps in [Epsilon::from_ratio(1, 2).unwrap(), Epsilon::from_ratio(2, 1).unwrap()] {
        for name in [
            MechanismName::Grr,
            MechanismName::Oue,
            MechanismName::Sue,
            MechanismName::Olh,
            MechanismName::Hadamard,
            MechanismName::HadamardBlocks,
        ] {
            let m = Selection::new(Domain::Categorical { d: 8 }, eps, name)
                .map(|s| s.for_period("test", 0))
                .unwrap();
            let rows: Vec<_> = (0..8u32)
                .map(|v| {
                    histogram(1000 + u64::from(v), |rng| drop(m.encode(LdpValue::Category(v), rng).unwrap()))
                })
                .collect();
            assert_homogeneous(&format!("{name:?} ε={eps}"), &rows);
        }
    }
}

/// The unary encoders draw their d bits 64 lanes at a time: at d = 130 (three words, the
/// last partial) the own position in each word, at each word's edges, must not change the
/// draws. ε = 1/2 and 4 take both lane constructions (logistic below γ = 4/3, alternating
/// from it) for OUE (γ = ε) and SUE (γ = ε/2); GRR over two values takes one lane.
#[test]
fn unary_encoders_draw_independently_of_the_value_across_words() {
    for eps in [Epsilon::from_ratio(1, 2).unwrap(), Epsilon::from_ratio(4, 1).unwrap()] {
        for name in [MechanismName::Oue, MechanismName::Sue] {
            let m = Selection::new(Domain::Categorical { d: 130 }, eps, name)
                .map(|s| s.for_period("test", 0))
                .unwrap();
            let rows: Vec<_> = [0u32, 1, 63, 64, 100, 127, 128, 129]
                .iter()
                .map(|v| {
                    histogram(3000 + u64::from(*v), |rng| {
                        drop(m.encode(LdpValue::Category(*v), rng).unwrap());
                    })
                })
                .collect();
            assert_homogeneous(&format!("{name:?} d=130 ε={eps}"), &rows);
        }
        // GRR over two values draws one lane of the same sampler.
        let m = Selection::new(Domain::Categorical { d: 2 }, eps, MechanismName::Grr)
            .map(|s| s.for_period("test", 0))
            .unwrap();
        let rows: Vec<_> = (0..2u32)
            .map(|v| {
                histogram(3500 + u64::from(v), |rng| drop(m.encode(LdpValue::Category(v), rng).unwrap()))
            })
            .collect();
        assert_homogeneous(&format!("Grr d=2 ε={eps}"), &rows);
    }
}

#[test]
fn numeric_mechanisms_draw_independently_of_the_value() {
    let eps = Epsilon::from_ratio(1, 1).unwrap();
    for name in [MechanismName::Piecewise, MechanismName::Duchi] {
        let m = Selection::new(Domain::Numeric { min: -50, max: 50 }, eps, name)
            .map(|s| s.for_period("test", 0))
            .unwrap();
        let rows: Vec<_> = [-50i64, -17, 0, 33, 50]
            .iter()
            .map(|x| {
                histogram(2000 + x.unsigned_abs(), |rng| drop(m.encode(LdpValue::Numeric(*x), rng).unwrap()))
            })
            .collect();
        assert_homogeneous(&format!("{name:?}"), &rows);
    }
}

/// The test has power: an encoder whose draws do depend on the value — here, one that
/// skips the Bernoulli(e^{−ε}) draw for even values (where a careless implementation
/// might short-circuit `y == v || b`) — is rejected.
#[test]
fn the_test_sees_a_leak() {
    let eps = Ratio::new(1, 1).unwrap();
    let rows: Vec<_> = (0..8u64)
        .map(|v| {
            histogram(4000 + v, |rng| {
                loop {
                    let y = uniform_below(rng, 8).unwrap();
                    let b = if v % 2 == 0 && y == v { false } else { bernoulli_exp_neg(rng, eps) };
                    if y == v || b {
                        return;
                    }
                }
            })
        })
        .collect();
    let (stat, df) = homogeneity(&rows);
    assert!(stat > critical(df), "leak not detected: chi2 {stat:.1}, df {df}");
}

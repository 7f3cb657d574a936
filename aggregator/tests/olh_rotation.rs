//! OLH's seed-pool key rotates per time bucket, end to end: devices encode with the key
//! of their report's bucket, each partition's accumulator carries that key, and releases
//! (and the report's estimates) over several buckets combine per-bucket estimates by their
//! counts instead of dropping the buckets that do not merge. Restarts and shard merges
//! keep working; every other mechanism is estimated exactly as one merge did before.

use std::collections::BTreeSet;

use confiance::consent::{ConsentRequest, Scope};
use confiance::envelope::{AeadId, KeyConfig};
use confiance::hazmat::{ChaCha20Rng, SeedableRng as _, SeededRng};
use confiance::ids::MetricId;
use confiance::ldp::{Domain, LdpValue, Mechanism, MechanismName, Params, Selection, olh_pool_key};
use confiance::recorder::{MemoryStorage, Recorder, Value};
use confiance::{Epsilon, Timestamp};
use confiance_aggregator::estimate::{Accumulator, Combined, EstimateError};
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::report::{GatherOptions, ReportData};
use confiance_aggregator::service::{Aggregator, AggregatorConfig};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{catalogue, id, recorder};

const T0: u64 = 1_800_000_000;
const WEEK: u64 = 7 * 86_400;
/// OLH, d = 8, ε = 2, weekly buckets, recipients pulsa and lab-eu (examples/catalogue.toml).
const ACTIVITY: &str = "watch.activity";
/// GRR, boolean, ε = 1, daily buckets, recipient pulsa.
const DISPLAY: &str = "watch.always-on-display";
/// The 0.975 normal quantile, as in `PointEstimate`'s intervals.
const Z95: f64 = 1.959_963_984_540_054;

fn mechanism(metric: &str) -> Selection {
    catalogue().metric(&id(metric)).unwrap().mechanism().unwrap()
}

/// The start of three consecutive weekly buckets after the consents.
fn weeks() -> [Timestamp; 3] {
    let w0 = Timestamp::from_secs(T0).truncate(WEEK).saturating_add_secs(WEEK);
    [w0, w0.saturating_add_secs(WEEK), w0.saturating_add_secs(2 * WEEK)]
}

/// Device `i`'s activity in week `k`: half always category 0, a fifth always 7, the rest
/// category `k + 1` — so each week's distribution differs and over the three weeks the
/// truth is [0.5, 0.1, 0.1, 0.1, 0, 0, 0, 0.2].
fn activity(i: u64, k: usize) -> u32 {
    match i % 10 {
        0..5 => 0,
        5..8 => k as u32 + 1,
        _ => 7,
    }
}
const TRUTH: [f64; 8] = [0.5, 0.1, 0.1, 0.1, 0.0, 0.0, 0.0, 0.2];

struct Fleet {
    keys: KeyStore,
    /// Per week: the time the week's envelopes are sent and ingested, and the envelopes.
    weeks: Vec<(Timestamp, Vec<Vec<u8>>)>,
}

/// `devices` watches, each consenting once and then reporting its activity (OLH) and its
/// always-on display (GRR) once in each of the three weeks, one envelope a week.
fn fleet(devices: u64, seed: u64) -> Fleet {
    let mut rng = SeededRng::seed_from_u64(seed);
    let mut keys = KeyStore::new(86_400);
    let config: KeyConfig = keys
        .generate(
            AeadId::ChaCha20Poly1305,
            Timestamp::EPOCH,
            Timestamp::from_secs(T0 + 100 * 86_400),
            &mut rng,
        )
        .unwrap();
    let t = Timestamp::from_secs(T0 - 10_000);
    let mut recorders: Vec<Recorder<SeededRng, MemoryStorage>> = (0..devices)
        .map(|i| {
            let mut d = recorder(seed * 1_000_003 + i, "pulsa", vec![config]);
            d.give_consent(
                ConsentRequest::new(
                    id("pulsa"),
                    id("product-improvement"),
                    Scope::metrics([id::<MetricId>(ACTIVITY), id::<MetricId>(DISPLAY)]),
                    "P90D".parse().unwrap(),
                ),
                t,
            )
            .unwrap();
            d
        })
        .collect();
    let weeks = weeks()
        .iter()
        .enumerate()
        .map(|(k, w)| {
            let now = w.saturating_add_secs(3_600);
            let frames = recorders
                .iter_mut()
                .enumerate()
                .flat_map(|(i, d)| {
                    let i = i as u64;
                    let _ = d.record(
                        &id(ACTIVITY),
                        &id("product-improvement"),
                        Value::Category(activity(i, k)),
                        now,
                    );
                    let _ = d.record(
                        &id(DISPLAY),
                        &id("product-improvement"),
                        Value::Bool(i.is_multiple_of(4)),
                        now,
                    );
                    // Acknowledged at once (as the aggregator will), or the next
                    // flush would send this envelope again.
                    let frames = d.flush(now);
                    frames.iter().for_each(|f| d.acknowledge(f));
                    frames
                })
                .collect();
            (now, frames)
        })
        .collect();
    Fleet { keys, weeks }
}

/// Stages and commits every week's envelopes whose index passes `take`, week by week.
fn ingest(agg: &mut Aggregator, fleet: &Fleet, take: impl Fn(usize) -> bool) {
    for (now, frames) in &fleet.weeks {
        for (i, f) in frames.iter().enumerate().filter(|(i, _)| take(*i)) {
            agg.stage(f, *now).unwrap_or_else(|e| panic!("frame {i}: {e}"));
        }
        agg.commit(*now).unwrap();
    }
}

fn in_memory(fleet: &Fleet) -> Aggregator {
    Aggregator::in_memory(catalogue(), fleet.keys.clone(), AggregatorConfig::default()).unwrap()
}

/// The committed accumulators of `metric`, with their bucket starts.
fn partitions(agg: &Aggregator, metric: &str) -> Vec<(Timestamp, Accumulator)> {
    agg.partition_states()
        .into_iter()
        .filter(|(k, _)| k.metric.as_str() == metric)
        .map(|(k, (_, bytes))| (k.bucket_start, Accumulator::from_bytes(&bytes).unwrap()))
        .collect()
}

fn pool_key(m: &Mechanism) -> u64 {
    match *m.params() {
        Params::Olh { pool_key, .. } => pool_key,
        other => panic!("not OLH: {other:?}"),
    }
}

#[test]
fn olh_release_over_three_buckets_counts_every_partition_and_is_accurate() {
    const DEVICES: u64 = 400;
    let fleet = fleet(DEVICES, 1);
    let mut agg = in_memory(&fleet);
    ingest(&mut agg, &fleet, |_| true);
    let last = fleet.weeks[2].0;

    // Each partition's accumulator is keyed by its bucket: three buckets, three keys.
    let parts = partitions(&agg, ACTIVITY);
    assert_eq!(parts.len(), 3);
    for (start, acc) in &parts {
        assert_eq!(pool_key(acc.mechanism()), olh_pool_key(ACTIVITY, start.as_secs()), "bucket {start:?}");
        assert_eq!(acc.mechanism().selection(), mechanism(ACTIVITY));
        assert_eq!(acc.count(), DEVICES);
    }
    let starts: Vec<Timestamp> = parts.iter().map(|(s, _)| *s).collect();
    assert_eq!(starts, weeks());
    let keys: BTreeSet<u64> = parts.iter().map(|(_, a)| pool_key(a.mechanism())).collect();
    assert_eq!(keys.len(), 3);

    // The release counts every bucket (the single-merge path counted one: the others
    // failed to merge and were skipped).
    let rel = agg.release(&id("pulsa"), &id(ACTIVITY), Timestamp::EPOCH, Timestamp::MAX, last).unwrap();
    assert_eq!(rel.partitions, 3);
    assert_eq!(rel.estimate.n, 3 * DEVICES);
    // Tolerance: 5 of the estimate's own standard errors (a false failure has probability
    // < 1e-5 per category); the standard error is 0.025–0.032 here (OLH at ε = 2 has
    // per-report variance ≈ 0.72, n = 1200; each bucket alone has 0.043–0.056), so a
    // device/aggregator key mismatch (every estimate near 0: category 0 at 0.04, fifteen
    // standard errors off) fails, as does a bias. The bound 0.05 on the standard error
    // keeps the check meaningful.
    for (v, (p, truth)) in rel.estimate.values.iter().zip(TRUTH).enumerate() {
        assert!(p.std_error < 0.05, "category {v}: {p:?}");
        assert!((p.value - truth).abs() < 5.0 * p.std_error, "category {v}: {p:?} vs {truth}");
    }
    // It is exactly the combination of the per-bucket accumulators.
    let mut all = Combined::new(&mechanism(ACTIVITY));
    for (_, a) in &parts {
        all.add(a).unwrap();
    }
    assert_eq!(all.estimate(), rel.estimate);

    // A window over the first two buckets counts those two.
    let w = weeks();
    let two = agg.release(&id("pulsa"), &id(ACTIVITY), w[0], w[2], last).unwrap();
    assert_eq!((two.partitions, two.estimate.n), (2, 2 * DEVICES));
    // One bucket alone is that bucket's estimate.
    let one = agg.release(&id("pulsa"), &id(ACTIVITY), w[1], w[2], last).unwrap();
    assert_eq!(one.partitions, 1);
    assert_eq!(one.estimate, parts[1].1.estimate());

    // GRR over three daily buckets: bit-identical to merging every partition into one
    // accumulator (the path before pool keys rotated).
    let display = partitions(&agg, DISPLAY);
    assert_eq!(display.len(), 3);
    let mut merged = Accumulator::new(&mechanism(DISPLAY).for_period(DISPLAY, 0));
    for (_, a) in &display {
        merged.merge(a).unwrap();
    }
    let rel = agg.release(&id("pulsa"), &id(DISPLAY), Timestamp::EPOCH, Timestamp::MAX, last).unwrap();
    assert_eq!(rel.partitions, 3);
    assert_eq!(rel.estimate, merged.estimate());
    assert_eq!(rel.estimate.n, 3 * DEVICES);

    // The report's estimates cover every bucket too (they failed with a corrupt
    // partition when the buckets' accumulators were merged).
    let data =
        ReportData::gather(&agg, &GatherOptions { at: last, generated_at: last, ..GatherOptions::default() })
            .unwrap();
    let rows: Vec<_> = data.estimates.iter().filter(|r| r.metric == ACTIVITY).collect();
    assert_eq!(rows.len(), 8);
    for (r, p) in rows.iter().zip(&all.estimate().values) {
        assert_eq!((r.n, r.estimate, r.std_error), (3 * DEVICES, p.value, p.std_error));
    }
}

#[test]
fn rotated_partitions_survive_a_restart_and_shard_merges() {
    let fleet = fleet(60, 2);
    let mut all = in_memory(&fleet);
    ingest(&mut all, &fleet, |_| true);

    // Reopened from disk: each stored accumulator is checked against the metric's
    // mechanism with its bucket's pool key, and is accepted.
    let dir = std::env::temp_dir().join(format!("confiance-olh-rotation-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("agg.sqlite");
    {
        let mut disk =
            Aggregator::open(&db, catalogue(), fleet.keys.clone(), AggregatorConfig::default()).unwrap();
        ingest(&mut disk, &fleet, |_| true);
        assert_eq!(disk.partition_states(), all.partition_states());
    }
    let reopened =
        Aggregator::open(&db, catalogue(), fleet.keys.clone(), AggregatorConfig::default()).unwrap();
    assert_eq!(reopened.partition_states(), all.partition_states());
    drop(reopened);
    let _ = std::fs::remove_dir_all(&dir);

    // Shards: same partition key, same pool key, so a shard merge is a plain merge.
    let mut a = in_memory(&fleet);
    let mut b = in_memory(&fleet);
    ingest(&mut a, &fleet, |i| i.is_multiple_of(2));
    ingest(&mut b, &fleet, |i| i % 2 == 1);
    let now = fleet.weeks[2].0;
    a.merge_from(&b, now).unwrap();
    assert_eq!(a.partition_states(), all.partition_states());
    let rel = a.release(&id("pulsa"), &id(ACTIVITY), Timestamp::EPOCH, Timestamp::MAX, now).unwrap();
    assert_eq!((rel.partitions, rel.estimate.n), (3, 180));
}

/// `n` OLH reports under `m`, category `v` with probability `weights[v] / Σ weights`.
fn olh_acc(m: &Mechanism, n: u32, weights: &[u32], seed: u64) -> Accumulator {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let total: u32 = weights.iter().sum();
    let mut acc = Accumulator::new(m);
    for i in 0..n {
        let (mut r, mut v) = (i % total, 0u32);
        for w in weights {
            if r < *w {
                break;
            }
            r -= w;
            v += 1;
        }
        acc.add(&m.encode(LdpValue::Category(v), &mut rng).unwrap()).unwrap();
    }
    acc
}

fn olh(d: u32, eps: u32) -> Mechanism {
    Selection::new(Domain::Categorical { d }, Epsilon::from_ratio(eps, 1).unwrap(), MechanismName::Olh)
        .map(|s| s.for_period("test", 0))
        .unwrap()
}

#[test]
fn combined_estimate_is_the_count_weighted_formula() {
    let m = olh(8, 1);
    let groups = [
        olh_acc(&m.for_period(ACTIVITY, 0), 2_000, &[4, 1, 1, 0, 0, 0, 0, 2], 1),
        olh_acc(&m.for_period(ACTIVITY, WEEK), 5_000, &[1, 1, 1, 1, 1, 1, 1, 1], 2),
        olh_acc(&m.for_period(ACTIVITY, 2 * WEEK), 9_000, &[0, 0, 0, 0, 0, 0, 1, 3], 3),
    ];
    let mut all = Combined::new(&m.selection());
    for g in &groups {
        all.add(g).unwrap();
    }
    assert_eq!(all.groups(), 3);
    let est = all.estimate();
    assert_eq!(est.n, 16_000);
    assert_eq!(est.mechanism, MechanismName::Olh);
    let each: Vec<_> = groups.iter().map(Accumulator::estimate).collect();
    let n: f64 = 16_000.0;
    for (v, p) in est.values.iter().enumerate() {
        let count: f64 = groups.iter().zip(&each).map(|(g, e)| g.count() as f64 * e.values[v].value).sum();
        let var: f64 =
            groups.iter().zip(&each).map(|(g, e)| (g.count() as f64).powi(2) * e.values[v].variance).sum();
        let (value, variance) = (count / n, var / (n * n));
        // Same formula, possibly another summation order: equal to 1e-12 relative.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1e-12);
        assert!(close(p.value, value) && close(p.variance, variance), "category {v}: {p:?}");
        assert!(close(p.std_error, variance.sqrt()));
        assert!(close(p.ci95_low, value - Z95 * variance.sqrt()));
        assert!(close(p.ci95_high, value + Z95 * variance.sqrt()));
        assert!(p.variance < each.iter().map(|e| e.values[v].variance).fold(f64::INFINITY, f64::min));
    }
    // The same key just after merges into the open group; an earlier key that is not
    // the latest opens a group of its own (estimated apart, combined by counts).
    let same = olh_acc(&m.for_period(ACTIVITY, 2 * WEEK), 1_000, &[1], 4);
    all.add(&same).unwrap();
    assert_eq!((all.groups(), all.count()), (3, 17_000));
    let earlier = olh_acc(&m.for_period(ACTIVITY, WEEK), 1_000, &[1], 5);
    all.add(&earlier).unwrap();
    assert_eq!((all.groups(), all.count()), (4, 18_000));
    let mut last = groups[2].clone();
    last.merge(&same).unwrap();
    let parts = [&groups[0], &groups[1], &last, &earlier];
    let each: Vec<_> = parts.iter().map(|a| a.estimate()).collect();
    let est = all.estimate();
    for (v, p) in est.values.iter().enumerate() {
        let count: f64 = parts.iter().zip(&each).map(|(g, e)| g.count() as f64 * e.values[v].value).sum();
        assert!((p.value - count / 18_000.0).abs() <= 1e-12, "category {v}: {p:?}");
    }
    // An empty group changes nothing.
    let before = all.estimate();
    all.add(&Accumulator::new(&m.for_period(ACTIVITY, 9 * WEEK))).unwrap();
    assert_eq!(all.estimate(), before);
}

#[test]
fn one_group_is_exactly_the_merged_estimate() {
    // GRR (no pool key): several "buckets" combine into one group, bit-identical to the
    // single-merge path.
    let grr =
        Selection::new(Domain::Categorical { d: 6 }, Epsilon::from_ratio(1, 1).unwrap(), MechanismName::Grr)
            .map(|s| s.for_period("test", 0))
            .unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let buckets: Vec<Accumulator> = (0..4u32)
        .map(|b| {
            let mut a = Accumulator::new(&grr);
            for i in 0..(500 + 300 * b) {
                a.add(&grr.encode(LdpValue::Category((i * (b + 1)) % 6), &mut rng).unwrap()).unwrap();
            }
            a
        })
        .collect();
    let mut merged = Accumulator::new(&grr);
    let mut all = Combined::new(&grr.selection());
    for a in &buckets {
        merged.merge(a).unwrap();
        all.add(a).unwrap();
    }
    assert_eq!(all.groups(), 1);
    assert_eq!(all.estimate(), merged.estimate());
    // OLH under one pool key likewise.
    let m = olh(8, 2).for_period(ACTIVITY, 0);
    let (a, b) = (olh_acc(&m, 3_000, &[1, 2], 5), olh_acc(&m, 1_000, &[3, 1], 6));
    let mut merged = a.clone();
    merged.merge(&b).unwrap();
    let mut all = Combined::new(&m.selection());
    all.add(&a).unwrap();
    all.add(&b).unwrap();
    assert_eq!(all.estimate(), merged.estimate());
    // Nothing added: the empty accumulator's estimate.
    assert_eq!(Combined::new(&m.selection()).estimate(), Accumulator::new(&m).estimate());
}

#[test]
fn mismatched_mechanisms_are_typed_errors_and_change_nothing() {
    let m = olh(8, 2);
    let mut all = Combined::new(&m.selection());
    all.add(&olh_acc(&m.for_period(ACTIVITY, 0), 500, &[1], 7)).unwrap();
    let before = all.clone();
    let grr =
        Selection::new(Domain::Categorical { d: 8 }, Epsilon::from_ratio(2, 1).unwrap(), MechanismName::Grr)
            .map(|s| s.for_period("test", 0))
            .unwrap();
    for other in [olh(16, 2), olh(8, 1), grr] {
        let mut a = Accumulator::new(&other.for_period(ACTIVITY, WEEK));
        if other.name() == MechanismName::Grr {
            a.add(&other.encode(LdpValue::Category(1), &mut ChaCha20Rng::seed_from_u64(1)).unwrap()).unwrap();
        }
        assert_eq!(all.add(&a), Err(EstimateError::MismatchedConfig), "{other:?}");
        assert_eq!(all, before);
    }
    // Another pool size is another mechanism too (only the key may differ).
    let pool = Mechanism::olh_with_pool(8, Epsilon::from_ratio(2, 1).unwrap(), 64, 0);
    assert_eq!(all.add(&Accumulator::new(&pool.unwrap())), Err(EstimateError::MismatchedConfig));
    assert_eq!(all, before);
    // Merging two accumulators of one selection under different keys (buckets) is a
    // typed error of its own, and changes nothing.
    let mut a = olh_acc(&m.for_period(ACTIVITY, 0), 500, &[1], 8);
    let b = olh_acc(&m.for_period(ACTIVITY, WEEK), 500, &[1], 9);
    let a0 = a.clone();
    assert_eq!(a.merge(&b), Err(EstimateError::MismatchedKey));
    assert_eq!(a, a0);
}

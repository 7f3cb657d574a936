//! Decoding cost (issue 3 target: Hadamard and OLH-pool decoding of n = 10^7 reports at
//! d = 65536 in ≤ 1 s). Reports are generated cheaply (uniform indices, not the
//! encoder): decoding time depends on the accumulator's size, not on report contents.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "bench"
)]

use confiance::Epsilon;
use confiance::hazmat::{ChaCha20Rng, SeedableRng};
use confiance::ldp::{Domain, LdpReport, LdpValue, Mechanism, MechanismName, Params, Selection};
use confiance_estimate::Accumulator;
use criterion::{Criterion, criterion_group, criterion_main};
use rand_core::Rng;
use std::time::Duration;

const N: u64 = 10_000_000;
const D: u32 = 65_536;

fn filled(m: &Mechanism) -> Accumulator {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut acc = Accumulator::new(m);
    for _ in 0..N {
        let x = rng.next_u64();
        let r = match *m.params() {
            Params::Hadamard { k, .. } => LdpReport::Hadamard((x % u64::from(k)) as u32),
            Params::HadamardBlocks { blocks, block_size, .. } => {
                LdpReport::Hadamard((x % (u64::from(blocks) * u64::from(block_size))) as u32)
            }
            Params::Olh { g, pool, .. } => LdpReport::Olh {
                seed: (x % u64::from(pool)) as u32,
                value: ((x >> 32) % u64::from(g)) as u32,
            },
            Params::Grr { d } => LdpReport::Grr((x % u64::from(d)) as u32),
            _ => unreachable!(),
        };
        acc.add(&r).unwrap();
    }
    acc
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_1e7_d65536");
    g.measurement_time(Duration::from_secs(10)).warm_up_time(Duration::from_secs(1)).sample_size(10);
    for e in [1u32, 4] {
        let eps = Epsilon::from_ratio(e, 1).unwrap();
        for name in
            [MechanismName::Hadamard, MechanismName::HadamardBlocks, MechanismName::Olh, MechanismName::Grr]
        {
            let m = Selection::new(Domain::Categorical { d: D }, eps, name)
                .map(|s| s.for_period("test", 0))
                .unwrap();
            let acc = filled(&m);
            g.bench_function(format!("{name:?}/eps={e}"), |b| b.iter(|| acc.estimate()));
        }
    }
    g.finish();
    // OLH on encoded Zipf(1.1) data, where the estimator corrects the pool's collisions
    // (docs/privacy.md §3): decoding plus the correction's P·d-hash steps.
    let mut g = c.benchmark_group("olh_corrected_1e6");
    g.measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1)).sample_size(10);
    for (d, e) in [(16u32, 4u32), (1024, 1), (1024, 4), (65_536, 1), (65_536, 4)] {
        let eps = Epsilon::from_ratio(e, 1).unwrap();
        let m = Selection::new(Domain::Categorical { d }, eps, MechanismName::Olh)
            .map(|s| s.for_period("test", 0))
            .unwrap();
        let w: Vec<f64> = (1..=d).map(|i| f64::from(i).powf(-1.1)).collect();
        let total: f64 = w.iter().sum();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut acc = Accumulator::new(&m);
        for (v, x) in w.iter().enumerate() {
            for _ in 0..(x / total * 1e6) as u64 {
                acc.add(&m.encode(LdpValue::Category(v as u32), &mut rng).unwrap()).unwrap();
            }
        }
        g.bench_function(format!("d={d}/eps={e}"), |b| b.iter(|| acc.estimate()));
    }
    g.finish();
    let mut g = c.benchmark_group("ingest");
    g.measurement_time(Duration::from_secs(3)).sample_size(20);
    let m =
        Selection::new(Domain::Categorical { d: D }, Epsilon::from_ratio(1, 1).unwrap(), MechanismName::Olh)
            .map(|s| s.for_period("test", 0))
            .unwrap();
    let mut acc = Accumulator::new(&m);
    let r = LdpReport::Olh { seed: 5, value: 1 };
    g.bench_function("add/olh", |b| b.iter(|| acc.add(&r).unwrap()));
    // A unary report at d = 1024, ε = 1: ~27% of its bits set (q = 1/(e+1)).
    let oue = Selection::new(
        Domain::Categorical { d: 1024 },
        Epsilon::from_ratio(1, 1).unwrap(),
        MechanismName::Oue,
    )
    .map(|s| s.for_period("test", 0))
    .unwrap();
    let mut acc = Accumulator::new(&oue);
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let reports: Vec<LdpReport> = (0..64)
        .map(|_| LdpReport::Oue((0..128).map(|_| (rng.next_u32() & rng.next_u32()) as u8).collect()))
        .collect();
    let mut k = 0;
    g.bench_function("add/oue_d1024", |b| {
        b.iter(|| {
            k = (k + 1) % reports.len();
            acc.add(&reports[k]).unwrap();
        });
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);

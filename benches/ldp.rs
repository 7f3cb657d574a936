//! Encoding cost per report, every mechanism at d ∈ {2, 16, 1024, 65 536} and ε ∈ {1/2, 1, 4}
//! (issue 3 target: ≤ 2 µs for GRR, OLH and HR at d = 65536; issue 20: ≤ pure-LDP everywhere).
#![allow(missing_docs, clippy::unwrap_used, reason = "bench")]

use confiance::Epsilon;
use confiance::hazmat::{ChaCha20Rng, SeedableRng};
use confiance::ldp::{Domain, LdpValue, MechanismName, Selection};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.measurement_time(Duration::from_secs(1)).warm_up_time(Duration::from_millis(300)).sample_size(20);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    // Every categorical mechanism on the grid of docs/benchmarks.md (pure-LDP's encode times
    // for the same cells: benches/peers/, `encode` mode). `LDP_BENCH_ONLY=oue` keeps one.
    let only = std::env::var("LDP_BENCH_ONLY").ok();
    for (en, ed) in [(1u32, 2u32), (1, 1), (4, 1)] {
        let eps = Epsilon::from_ratio(en, ed).unwrap();
        for name in [
            MechanismName::Grr,
            MechanismName::Oue,
            MechanismName::Sue,
            MechanismName::Olh,
            MechanismName::Hadamard,
            MechanismName::HadamardBlocks,
        ] {
            if only.as_deref().is_some_and(|o| !format!("{name:?}").eq_ignore_ascii_case(o)) {
                continue;
            }
            for d in [2u32, 16, 1024, 65_536] {
                let m = Selection::new(Domain::Categorical { d }, eps, name)
                    .map(|s| s.for_period("test", 0))
                    .unwrap();
                let mut v = 0u32;
                g.bench_function(format!("{name:?}/d={d}/eps={eps}"), |b| {
                    b.iter(|| {
                        v = (v + 7919) % d;
                        m.encode(black_box(LdpValue::Category(v)), &mut rng).unwrap()
                    })
                });
            }
        }
        if only.is_some() {
            continue;
        }
        for name in [MechanismName::Piecewise, MechanismName::Duchi] {
            let m = Selection::new(Domain::Numeric { min: 0, max: 1000 }, eps, name)
                .map(|s| s.for_period("test", 0))
                .unwrap();
            let mut x = 0i64;
            g.bench_function(format!("{name:?}/[0,1000]/eps={eps}"), |b| {
                b.iter(|| {
                    x = (x + 17) % 1001;
                    m.encode(black_box(LdpValue::Numeric(x)), &mut rng).unwrap()
                })
            });
        }
    }
    if only.is_some() {
        g.finish();
        return;
    }
    // The device default: `OsRng`, a buffered ChaCha20 keyed from the OS.
    let mut os = confiance::rng::OsRng::new();
    for e in [1u32, 4] {
        let eps = Epsilon::from_ratio(e, 1).unwrap();
        for name in [MechanismName::Grr, MechanismName::Olh, MechanismName::HadamardBlocks] {
            let m = Selection::new(Domain::Categorical { d: 65_536 }, eps, name)
                .map(|s| s.for_period("test", 0))
                .unwrap();
            let mut v = 0u32;
            g.bench_function(format!("{name:?}/d=65536/eps={e}/OsRng"), |b| {
                b.iter(|| {
                    v = (v + 7919) % 65_536;
                    m.encode(black_box(LdpValue::Category(v)), &mut os).unwrap()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);

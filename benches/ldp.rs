//! Encoding cost per report (issue 3 target: ≤ 2 µs for GRR, OLH and HR at d = 65536).
#![allow(missing_docs, clippy::unwrap_used, reason = "bench")]

use confiance::Epsilon;
use confiance::hazmat::{ChaCha20Rng, SeedableRng};
use confiance::ldp::{Domain, LdpValue, MechanismName, Selection};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for e in [1u32, 4] {
        let eps = Epsilon::from_ratio(e, 1).unwrap();
        for (name, d) in [
            (MechanismName::Grr, 65_536u32),
            (MechanismName::Olh, 65_536),
            (MechanismName::Hadamard, 65_536),
            (MechanismName::HadamardBlocks, 65_536),
            (MechanismName::Oue, 1024),
            (MechanismName::Sue, 1024),
        ] {
            let m = Selection::new(Domain::Categorical { d }, eps, name)
                .map(|s| s.for_period("test", 0))
                .unwrap();
            let mut v = 0u32;
            g.bench_function(format!("{name:?}/d={d}/eps={e}"), |b| {
                b.iter(|| {
                    v = (v + 7919) % d;
                    m.encode(black_box(LdpValue::Category(v)), &mut rng).unwrap()
                })
            });
        }
        for name in [MechanismName::Piecewise, MechanismName::Duchi] {
            let m = Selection::new(Domain::Numeric { min: 0, max: 1000 }, eps, name)
                .map(|s| s.for_period("test", 0))
                .unwrap();
            let mut x = 0i64;
            g.bench_function(format!("{name:?}/[0,1000]/eps={e}"), |b| {
                b.iter(|| {
                    x = (x + 17) % 1001;
                    m.encode(black_box(LdpValue::Numeric(x)), &mut rng).unwrap()
                })
            });
        }
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

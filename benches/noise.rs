//! Exact sampler throughput (compare with OpenDP: benches/peers/).
#![allow(missing_docs, clippy::unwrap_used, reason = "bench")]

use confiance::hazmat::{ChaCha20Rng, SeedableRng};
use confiance::noise::{Ratio, bernoulli_exp_neg, discrete_gaussian, discrete_laplace};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

fn samplers(c: &mut Criterion) {
    let mut g = c.benchmark_group("noise");
    g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    g.bench_function("chacha20_next_u64", |b| b.iter(|| rand_core::Rng::next_u64(&mut rng)));
    g.bench_function("bernoulli_exp_neg(1/2)", |b| {
        b.iter(|| bernoulli_exp_neg(&mut rng, black_box(Ratio::new(1, 2).unwrap())))
    });
    for scale in [1u64, 10, 1000] {
        g.bench_function(format!("discrete_laplace(scale={scale})"), |b| {
            b.iter(|| discrete_laplace(&mut rng, black_box(Ratio::new(scale, 1).unwrap())).unwrap())
        });
        g.bench_function(format!("discrete_gaussian(sigma={scale})"), |b| {
            b.iter(|| discrete_gaussian(&mut rng, black_box(scale * scale), 1).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, samplers);
criterion_main!(benches);

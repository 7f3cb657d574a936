//! Exact sampler throughput (compare with OpenDP: benches/peers/).
#![allow(missing_docs, clippy::unwrap_used, reason = "bench")]

use confiance::hazmat::{ChaCha20Rng, SeedableRng};
use confiance::noise::{
    Ratio, bernoulli_exp_neg, bernoulli_logistic_bits, bernoulli_logistic_lanes, discrete_gaussian,
    discrete_laplace,
};
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

/// The unary encodings' noise: 1024 Bernoulli(1/(1 + e^γ)) bits (OUE at ε = γ, SUE at
/// ε = 2γ), drawn word by word with the bit-sliced lanes against the pooled sampler,
/// interleaved in one run so the load is shared.
fn logistic_1024(c: &mut Criterion) {
    let mut g = c.benchmark_group("logistic_1024");
    g.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500)).sample_size(30);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    for (n, d) in [(1u64, 4u64), (1, 2), (1, 1), (2, 1), (4, 1)] {
        let gamma = Ratio::new(n, d).unwrap();
        g.bench_function(format!("lanes/gamma={n}/{d}"), |b| {
            b.iter(|| {
                (0..16).map(|_| bernoulli_logistic_lanes(&mut rng, black_box(gamma), 64)).collect::<Vec<_>>()
            })
        });
        g.bench_function(format!("pooled/gamma={n}/{d}"), |b| {
            b.iter(|| bernoulli_logistic_bits(&mut rng, black_box(gamma), 1024))
        });
    }
    g.finish();
}

criterion_group!(benches, samplers, logistic_1024);
criterion_main!(benches);

//! Envelope costs beside their physical limits (docs/design.md#cost-floor), measured in one run.
//!
//! Criterion reports seal and open for batches of 1, 10, 100 and 1000 reports of about
//! 40 bytes, and X25519 fixed-base and variable-base multiplications
//! (curve25519-dalek's `MontgomeryPoint`, what x25519-dalek and so HPKE use). Then an
//! interleaved loop (each round times every operation once, so machine noise hits all of
//! them alike) prints medians and the two ratios the issue bounds:
//! seal(1) / (base + variable-base) and open(1) / variable-base.
//!
//! Run: `cargo bench -p confiance --bench envelope`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests and benches fail loudly")]

use confiance::Timestamp;
use confiance::envelope::{
    self, AeadId, CatalogueDigest, Envelope, HeaderFields, KeyConfig, KeyId, ReportId, SecretKey,
    encode_batch,
};
use confiance::ids::MetricId;
use criterion::{BenchmarkId, Criterion, Throughput};
use curve25519_dalek::montgomery::MontgomeryPoint;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng as _, SeedableRng as _};

fn bytes32(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut b);
    b
}
use std::hint::black_box;
use std::time::{Duration, Instant};

#[derive(serde::Serialize)]
struct Report {
    id: ReportId,
    metric: MetricId,
    tag: u16,
    payload: [u8; 4],
}

const SIZES: [usize; 4] = [1, 10, 100, 1000];

fn batch(rng: &mut ChaCha20Rng, n: usize) -> Vec<u8> {
    let metric = MetricId::new("thermostat.mode").unwrap();
    let reports: Vec<Report> = (0..n)
        .map(|i| Report {
            id: ReportId::random(rng),
            metric: metric.clone(),
            tag: 300,
            payload: u32::try_from(i).unwrap().to_le_bytes(),
        })
        .collect();
    encode_batch(&reports).unwrap()
}

struct Setup {
    rng: ChaCha20Rng,
    sk: SecretKey,
    config: KeyConfig,
    fields: HeaderFields,
}

fn setup() -> Setup {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let sk = SecretKey::generate(&mut rng);
    let config =
        KeyConfig::new(KeyId(1), AeadId::ChaCha20Poly1305, sk.public_key(), Timestamp::EPOCH, Timestamp::MAX)
            .unwrap();
    let fields = HeaderFields {
        catalogue_digest: CatalogueDigest([3; 32]),
        time_bucket: Timestamp::from_secs(1 << 30),
    };
    Setup { rng, sk, config, fields }
}

fn bench_criterion(c: &mut Criterion) {
    let mut s = setup();
    let mut g = c.benchmark_group("x25519");
    let scalar = bytes32(&mut s.rng);
    let point = MontgomeryPoint::mul_base_clamped(bytes32(&mut s.rng));
    g.bench_function("base", |b| b.iter(|| MontgomeryPoint::mul_base_clamped(black_box(scalar))));
    g.bench_function("variable_base", |b| b.iter(|| black_box(point).mul_clamped(black_box(scalar))));
    g.finish();

    let mut g = c.benchmark_group("envelope");
    for n in SIZES {
        let plaintext = batch(&mut s.rng, n);
        let frame = envelope::seal(&s.config, &s.fields, &plaintext, &mut s.rng).unwrap();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("seal", n), &plaintext, |b, pt| {
            b.iter(|| envelope::seal(&s.config, &s.fields, black_box(pt), &mut s.rng).unwrap());
        });
        g.bench_with_input(BenchmarkId::new("open", n), &frame, |b, f| {
            b.iter(|| Envelope::parse(black_box(f)).unwrap().open(&s.sk, AeadId::ChaCha20Poly1305).unwrap());
        });
    }
    g.finish();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Times `f` over `iters` calls; returns the time per call.
fn per_call(iters: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed() / iters
}

fn ratios() {
    let mut s = setup();
    let plaintext = batch(&mut s.rng, 1);
    let frame = envelope::seal(&s.config, &s.fields, &plaintext, &mut s.rng).unwrap();
    let scalar = bytes32(&mut s.rng);
    let point = MontgomeryPoint::mul_base_clamped(bytes32(&mut s.rng));
    let (rounds, iters) = (1001, 10);
    let (mut base, mut var, mut seal, mut open) = (vec![], vec![], vec![], vec![]);
    let (mut seal_ratio, mut open_ratio) = (vec![], vec![]);
    for _ in 0..rounds {
        let b = per_call(iters, || {
            black_box(MontgomeryPoint::mul_base_clamped(black_box(scalar)));
        });
        let v = per_call(iters, || {
            black_box(black_box(point).mul_clamped(black_box(scalar)));
        });
        let s_ = per_call(iters, || {
            black_box(envelope::seal(&s.config, &s.fields, black_box(&plaintext), &mut s.rng).unwrap());
        });
        let o = per_call(iters, || {
            black_box(envelope::open(black_box(&frame), &s.sk, AeadId::ChaCha20Poly1305).unwrap());
        });
        seal_ratio.push(s_.as_secs_f64() / (b + v).as_secs_f64());
        open_ratio.push(o.as_secs_f64() / v.as_secs_f64());
        base.push(b);
        var.push(v);
        seal.push(s_);
        open.push(o);
    }
    let (base, var, seal, open) = (median(base), median(var), median(seal), median(open));
    let fmedian = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "\n== envelope of one report ({} bytes plaintext, {} bytes frame) ==",
        plaintext.len(),
        frame.len()
    );
    println!("interleaved: {rounds} rounds, each timing {iters} calls of every operation in turn; medians:");
    println!("  X25519 base            {:8.2} µs", us(base));
    println!("  X25519 variable-base   {:8.2} µs", us(var));
    println!("  seal(1 report)         {:8.2} µs", us(seal));
    println!("  open(1 report)         {:8.2} µs", us(open));
    println!("ratios (median of per-round ratios; ratio of medians in brackets):");
    println!(
        "  seal / (base + variable-base) = {:.3} [{:.3}]  (target <= 1.3)",
        fmedian(seal_ratio),
        seal.as_secs_f64() / (base + var).as_secs_f64()
    );
    println!(
        "  open / variable-base          = {:.3} [{:.3}]  (target <= 1.3)",
        fmedian(open_ratio),
        open.as_secs_f64() / var.as_secs_f64()
    );
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_criterion(&mut c);
    c.final_summary();
    ratios();
}

//! What a device pays to start a transcryption: the polymorphic pseudonym alone (what it
//! sent before issue #21) against the signed transcryption request (encryption, proof of
//! plaintext knowledge, Ed25519 signature), measured in one run.
//!
//! Criterion reports both; then an interleaved loop (each round times both once, so
//! machine noise hits them alike) prints their medians and the ratio request / encrypt.
//!
//! Run: `cargo bench -p confiance --bench pseudonym`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests and benches fail loudly")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use confiance::consent::DeviceKey;
use confiance::ids::{ReceiptId, RecipientId};
use confiance::pseudonym::{DeviceSecret, Epoch, SystemPublicKey, TranscryptionRequest};
use criterion::Criterion;
use curve25519_dalek::{RistrettoPoint, Scalar};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng as _;

struct Setup {
    secret: DeviceSecret,
    key: DeviceKey,
    pk: SystemPublicKey,
    recipient: RecipientId,
}

fn setup() -> Setup {
    Setup {
        secret: DeviceSecret::from_bytes([7; 32]),
        key: DeviceKey::from_bytes(&[8; 32]),
        pk: SystemPublicKey::from_point(RistrettoPoint::mul_base(&Scalar::from(12_345u32))).unwrap(),
        recipient: RecipientId::new("acme-thermo").unwrap(),
    }
}

fn encrypt(s: &Setup, rng: &mut ChaCha20Rng) {
    black_box(s.secret.polymorphic(&s.pk, rng));
}

fn request(s: &Setup, rng: &mut ChaCha20Rng) {
    black_box(TranscryptionRequest::sign(
        &s.key,
        &s.secret,
        &s.pk,
        ReceiptId([9; 32]),
        s.recipient.clone(),
        Some(Epoch(19_675)),
        rng,
    ));
}

fn main() {
    let s = setup();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .without_plots()
        .configure_from_args();
    let mut g = c.benchmark_group("device pseudonym");
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    g.bench_function("polymorphic encrypt", |b| b.iter(|| encrypt(&s, &mut rng)));
    g.bench_function("signed transcryption request", |b| b.iter(|| request(&s, &mut rng)));
    g.finish();
    c.final_summary();
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let ops: [fn(&Setup, &mut ChaCha20Rng); 2] = [encrypt, request];
    let mut samples = [Vec::new(), Vec::new()];
    for _ in 0..15 {
        for (op, out) in ops.iter().zip(&mut samples) {
            let start = Instant::now();
            let mut n = 0u32;
            while start.elapsed() < Duration::from_millis(25) {
                op(&s, &mut rng);
                n += 1;
            }
            out.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(n));
        }
    }
    let [mut e, mut r] = samples;
    e.sort_by(f64::total_cmp);
    r.sort_by(f64::total_cmp);
    let (e, r) = (e[e.len() / 2], r[r.len() / 2]);
    println!("\n| device operation | µs (median) |\n|---|---:|");
    println!("| polymorphic encrypt | {e:.1} |\n| signed transcryption request | {r:.1} |");
    println!("ratio request / encrypt: {:.2}", r / e);
}

//! Pseudonym transcryption costs beside the cost of the scalar multiplications they need
//! (docs/design.md#cost-floor), measured in the same run.
//!
//! `cargo bench -p confiance-aggregator --bench transcrypt` runs the criterion benches,
//! then prints a table: for each operation, its median µs, how many fixed-base (B) and
//! variable-base (V) scalar multiplications it performs, the sum `B·t_B + V·t_V` of their
//! measured costs, and the ratio (target ≤ 1.3 for the transcryption step and proof
//! verification).
#![allow(missing_docs, reason = "criterion_group generates undocumented items")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use confiance::consent::DeviceKey;
use confiance::ids::{ReceiptId, RecipientId};
use confiance::pseudonym::{Ciphertext, DeviceSecret, Epoch, TranscryptionRequest, hazmat as eg};
use confiance_aggregator::transcrypt::{
    Domain, DomainCommitments, DomainTranscryptor, RecipientKey, Step, Transcryptor, TranscryptorId,
    TranscryptorSecret, hazmat, system_public_key, verify_chain, verify_step,
};
use criterion::Criterion;
use curve25519_dalek::{RistrettoPoint, Scalar};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Consumes a result so the optimiser keeps the work.
fn sink<T>(t: T) {
    black_box(t);
}

struct Setup {
    device: DeviceSecret,
    device_key: DeviceKey,
    request: TranscryptionRequest,
    ct: Ciphertext,
    domain: Domain,
    transcryptors: Vec<Transcryptor>,
    dts: Vec<DomainTranscryptor>,
    commitments: Vec<DomainCommitments>,
    steps: Vec<Step>,
    key: RecipientKey,
    pk: confiance::pseudonym::SystemPublicKey,
}

fn setup() -> Setup {
    let mut rng = ChaCha20Rng::from_seed([1; 32]);
    let transcryptors: Vec<Transcryptor> = (0..3u8)
        .map(|i| Transcryptor::new(TranscryptorId(u32::from(i)), TranscryptorSecret::from_bytes([i + 1; 32])))
        .collect();
    let refs: Vec<&Transcryptor> = transcryptors.iter().collect();
    let (pk, _) = system_public_key(&refs, &mut rng).unwrap();
    let domain = Domain::with_epoch(RecipientId::new("acme-thermo").unwrap(), Epoch(19_675));
    let dts: Vec<DomainTranscryptor> = transcryptors.iter().map(|t| t.for_domain(&domain)).collect();
    let device = DeviceSecret::from_bytes([7; 32]);
    let device_key = DeviceKey::from_bytes(&[8; 32]);
    let request = TranscryptionRequest::sign(
        &device_key,
        &device,
        &pk,
        ReceiptId([9; 32]),
        domain.recipient().clone(),
        domain.epoch(),
        &mut rng,
    );
    let ct = *request.ciphertext();
    let mut steps = vec![];
    let mut cur = ct;
    for (i, dt) in dts.iter().enumerate() {
        let r = Scalar::from(u64::try_from(i).unwrap() + 11);
        let nonces = [Scalar::from(3u8), Scalar::from(5u8), Scalar::from(7u8)];
        let s = hazmat::transcrypt_with(dt, &cur, &r, &nonces);
        cur = s.output;
        steps.push(s);
    }
    let commitments = dts.iter().map(DomainTranscryptor::commitments).collect();
    let key = RecipientKey::from_shares(
        &dts.iter().map(DomainTranscryptor::recipient_key_share).collect::<Vec<_>>(),
    )
    .unwrap();
    Setup { device, device_key, request, ct, domain, transcryptors, dts, commitments, steps, key, pk }
}

/// One measured operation: a name, its (fixed-base, variable-base) multiplication count,
/// and a closure to time.
/// `encrypt` and `decrypt` also need a hash to the group or a point compression, each
/// about one field inversion; their counts below leave those out.
type Op<'a> = (&'a str, u32, u32, Box<dyn FnMut() + 'a>);

fn ops(s: &Setup) -> Vec<Op<'_>> {
    let (x, p) = (Scalar::from_bytes_mod_order([9; 32]), RistrettoPoint::mul_base(&Scalar::from(3u8)));
    let (sf, kf) = hazmat::factors(&s.dts[0]);
    let k_inv = kf.invert();
    let r = Scalar::from_bytes_mod_order([5; 32]);
    let nonces = [Scalar::from(3u8), Scalar::from(5u8), Scalar::from(7u8)];
    let last = s.steps.last().unwrap().output;
    vec![
        (
            "ristretto variable-base mult",
            0,
            1,
            Box::new(move || sink(black_box(black_box(x) * black_box(p)))),
        ),
        (
            "ristretto base mult",
            1,
            0,
            Box::new(move || sink(black_box(RistrettoPoint::mul_base(black_box(&x))))),
        ),
        (
            "transcrypt step, no proof (rsk)",
            1,
            4,
            Box::new(move || sink(black_box(eg::rsk(black_box(&s.ct), &sf, &kf, &k_inv, &r)))),
        ),
        (
            "transcrypt step + proof",
            5,
            9,
            Box::new(move || {
                sink(black_box(hazmat::transcrypt_with(&s.dts[0], black_box(&s.ct), &r, &nonces)))
            }),
        ),
        (
            // Ed25519 verify (~1 base + 1 variable-base) and the plaintext proof (5 variable-base products).
            "verify request (Ed25519 + plaintext proof)",
            1,
            6,
            Box::new(move || sink(black_box(black_box(&s.request).verify()))),
        ),
        (
            "verify one step proof",
            4,
            10,
            Box::new(move || {
                sink(black_box(verify_step(black_box(&s.ct), &s.domain, &s.steps[0], &s.commitments[0])));
            }),
        ),
        (
            "verify chain of 3",
            12,
            30,
            Box::new(move || {
                sink(black_box(verify_chain(black_box(&s.ct), &s.domain, &s.steps, &s.commitments)))
            }),
        ),
        (
            "recipient decrypt",
            0,
            1,
            Box::new(move || sink(black_box(s.key.decrypt_unverified(black_box(&last))))),
        ),
        (
            // The identity point m·G, then r·G and M + r·Y.
            "device polymorphic encrypt",
            2,
            1,
            Box::new({
                let mut rng = ChaCha20Rng::from_seed([3; 32]);
                move || sink(black_box(s.device.polymorphic(&s.pk, &mut rng)))
            }),
        ),
        (
            // Encrypt (2 base + 1 variable), prove (2 base + 1 variable), Ed25519 sign (1 base).
            "device signed transcryption request",
            5,
            2,
            Box::new({
                let mut rng = ChaCha20Rng::from_seed([5; 32]);
                let recipient = s.domain.recipient().clone();
                move || {
                    sink(black_box(TranscryptionRequest::sign(
                        &s.device_key,
                        &s.device,
                        &s.pk,
                        ReceiptId([9; 32]),
                        recipient.clone(),
                        s.domain.epoch(),
                        &mut rng,
                    )));
                }
            }),
        ),
        (
            // What `sign` computed before issue 20's change, from public parts: the
            // identity point, its encryption, then the proof and signature with every
            // point encoded on its own (the hazmat signer does exactly that work; its
            // zero witnesses cost what real ones do in constant time).
            "device signed transcryption request, before (issue 20)",
            5,
            2,
            Box::new({
                let mut rng = ChaCha20Rng::from_seed([6; 32]);
                let recipient = s.domain.recipient().clone();
                move || {
                    let r = Scalar::random(&mut rng);
                    let ct = eg::encrypt_with(&s.device.identity_point(), s.pk.point(), &r).unwrap();
                    sink(black_box(eg::sign_request_for_ciphertext(
                        &s.device_key,
                        &ct,
                        ReceiptId([9; 32]),
                        recipient.clone(),
                        s.domain.epoch(),
                        &mut rng,
                    )));
                }
            }),
        ),
        (
            "device polymorphic, rerandomise the stored one",
            1,
            1,
            Box::new({
                let mut rng = ChaCha20Rng::from_seed([4; 32]);
                move || sink(black_box(s.ct.rerandomise(&mut rng)))
            }),
        ),
    ]
}

fn criterion_benches(c: &mut Criterion, s: &Setup) {
    let mut g = c.benchmark_group("pseudonym");
    for (name, _, _, mut f) in ops(s) {
        g.bench_function(name, |b| b.iter(&mut f));
    }
    let recipient = RecipientId::new("acme-thermo").unwrap();
    g.bench_function("device scoped pseudonym (HKDF-SHA256)", |b| {
        b.iter(|| black_box(s.device.scoped(&recipient, Epoch(19_675))));
    });
    g.bench_function("derive domain factors + commitments", |b| {
        b.iter(|| black_box(s.transcryptors[0].for_domain(&s.domain)));
    });
    g.finish();
}

/// Median over 15 rounds of the mean µs per call of each op. Rounds interleave the
/// ops, so load that drifts during the run (the machine is shared) hits all of them
/// alike and the ratios stay meaningful.
fn ratio_table(s: &Setup) {
    let mut ops = ops(s);
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); ops.len()];
    for _ in 0..15 {
        for ((_, _, _, f), out) in ops.iter_mut().zip(&mut samples) {
            let start = Instant::now();
            let mut n = 0u32;
            while start.elapsed() < Duration::from_millis(25) {
                f();
                n += 1;
            }
            out.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(n));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let us: Vec<f64> = samples.iter_mut().map(median).collect();
    let (t_v, t_b) = (us[0], us[1]);
    println!("\nPseudonym costs vs scalar multiplications (same run; t_V = {t_v:.1} µs, t_B = {t_b:.1} µs)");
    println!("| operation | µs (median) | base mults | var mults | B·t_B + V·t_V µs | ratio |");
    println!("|---|---:|---:|---:|---:|---:|");
    for ((name, nb, nv, _), us) in ops.iter().zip(&us) {
        let sum = f64::from(*nb) * t_b + f64::from(*nv) * t_v;
        println!("| {name} | {us:.1} | {nb} | {nv} | {sum:.1} | {:.2} |", us / sum);
    }
}

fn main() {
    let s = setup();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .without_plots()
        .configure_from_args();
    criterion_benches(&mut c, &s);
    c.final_summary();
    if !std::env::args().any(|a| a == "--test" || a == "--list") {
        ratio_table(&s);
    }
}

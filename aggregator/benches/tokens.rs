//! Report tokens, in one run so the ratios compare like with like:
//!
//! - issuance per token (`Issuer::issue` of a 32-token request: signature check,
//!   `BlindEvaluate`, one batched DLEQ proof) and the bare VOPRF part
//!   (`ServerKey::blind_evaluate`), against one Ristretto255 variable-base
//!   multiplication (target ≤ 1.3× each), and the same at the other request sizes
//!   ([`REQUEST_SIZES`]: the fleet's, the recorder's default quota, larger batches);
//! - verification per token (`TokenVerifier::verify`), against the same multiplication
//!   (target ≤ 1.3×): of type `0xC0F1` (`Evaluate` and a constant-time comparison) alone
//!   and in a window of 32 (`TokenVerifier::verify_many`), and of type `0xC0F2` (the
//!   unblinded element, a window checked with one equation) alone and in windows of
//!   [`WINDOWS`];
//! - ingest of one-report envelopes with a token against the same without tokens;
//! - the bytes a token adds to an envelope (printed).
//!
//! `cargo bench -p confiance-aggregator --bench tokens`.
#![allow(missing_docs, reason = "criterion_group generates undocumented items")]

use std::hint::black_box;

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{ConsentRequest, DeviceKey, Scope};
use confiance::envelope::{self, AeadId, HeaderFields, KeyConfig, ReportId};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::MetricId;
use confiance::recorder::Value;
use confiance::report::Report;
use confiance::token::{PendingTokens, SpentToken, Token, TokenPeriod, TokenScope, TokenType};
use confiance_aggregator::issuer::voprf::ServerKey;
use confiance_aggregator::issuer::{AllowAll, Issuer, IssuerSecret, TokenVerifier};
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::service::{Aggregator, AggregatorConfig};
use criterion::{BatchSize, Criterion, Throughput};
use curve25519_dalek::{RistrettoPoint, Scalar};

const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;
const BATCH: usize = 32;
/// Request sizes measured besides [`BATCH`].
const REQUEST_SIZES: [usize; 5] = [1, 3, 24, 128, 1024];
/// Envelopes staged at once in the `stage_many` ingest cases.
const STAGED: usize = 64;
/// Windows of `0xC0F2` tokens verified at once.
const WINDOWS: [usize; 3] = [1, 32, 128];

fn catalogue() -> Catalogue {
    // A quota large enough for the benchmark's many requests from one device.
    let text = include_str!("../../examples/catalogue.toml")
        .replace("pseudonym_epoch = \"P30D\"", "pseudonym_epoch = \"P30D\"\ntokens_per_period = 1000000");
    Catalogue::from_toml_str(&text).unwrap()
}

fn scope(now: Timestamp) -> TokenScope {
    TokenScope::new(
        ["calora".parse().unwrap()],
        "product-improvement".parse().unwrap(),
        TokenPeriod::at(now, DAY),
    )
}

fn tokens(c: &mut Criterion) {
    let now = Timestamp::from_secs(T0);
    let mut rng = SeededRng::seed_from_u64(0x70CE);
    let secret = IssuerSecret::from_bytes([3; 32]);
    let mut issuer = Issuer::new(secret.clone(), &catalogue()).unwrap();
    let verifier = TokenVerifier::new(secret, &catalogue()).unwrap();
    let scope = scope(now);
    let pk = issuer.public_key(&scope).unwrap();
    let device = DeviceKey::generate(&mut rng);
    let (pending, request) =
        PendingTokens::request_as(TokenType::Authenticator, &device, scope.clone(), pk, BATCH, &mut rng)
            .unwrap();
    let tokens = pending.finalize(&issuer.issue(&request, &AllowAll, now, &mut rng).unwrap()).unwrap();
    let max_window = WINDOWS.iter().copied().max().unwrap_or(1);
    let (pending, elements_request) =
        PendingTokens::request(&device, scope.clone(), pk, max_window, &mut rng).unwrap();
    let elements =
        pending.finalize(&issuer.issue(&elements_request, &AllowAll, now, &mut rng).unwrap()).unwrap();
    let blinded = request.blinded.clone();
    let server_key = ServerKey::derive(&[9; 32], b"bench").unwrap();

    let mut g = c.benchmark_group("tokens");
    let point = RistrettoPoint::mul_base(&Scalar::from(0x1234_5678u64));
    let scalar = Scalar::from_bytes_mod_order([0x5a; 32]);
    g.throughput(Throughput::Elements(1));
    g.bench_function("ristretto_variable_base_mul", |b| {
        b.iter(|| black_box(black_box(scalar) * black_box(point)))
    });
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(format!("blind_evaluate_batch_{BATCH}"), |b| {
        b.iter(|| black_box(server_key.blind_evaluate(black_box(&blinded), &mut rng).unwrap()));
    });
    g.bench_function(format!("issue_batch_{BATCH}"), |b| {
        b.iter(|| black_box(issuer.issue(black_box(&request), &AllowAll, now, &mut rng).unwrap()));
    });
    // The other request sizes: the fleet's (at most 3: a 60-day period's monthly flushes
    // and one), the recorder's default quota (24 a day), and larger batches (the variable-
    // time multiscalar of the proof is Straus below 190 points, Pippenger from there).
    for n in REQUEST_SIZES {
        g.throughput(Throughput::Elements(n as u64));
        // Criterion's least run (a hundred samples, 5 050 calls) would take minutes and
        // pass the quota at the largest sizes.
        g.sample_size(if n >= 128 { 10 } else { 100 });
        // Each size from its own device (its own quota), the request made on first use,
        // so that a filter that skips the case skips its setup too.
        let device = DeviceKey::generate(&mut rng);
        let mut request: Option<confiance::token::TokenRequest> = None;
        let mut made = |rng: &mut SeededRng| {
            request
                .get_or_insert_with(|| PendingTokens::request(&device, scope.clone(), pk, n, rng).unwrap().1)
                .clone()
        };
        g.bench_function(format!("blind_evaluate_batch_{n}"), |b| {
            let blinded = made(&mut rng).blinded;
            b.iter(|| black_box(server_key.blind_evaluate(black_box(&blinded), &mut rng).unwrap()));
        });
        g.bench_function(format!("issue_batch_{n}"), |b| {
            let request = made(&mut rng);
            b.iter(|| black_box(issuer.issue(black_box(&request), &AllowAll, now, &mut rng).unwrap()));
        });
    }
    g.sample_size(100);
    g.throughput(Throughput::Elements(1));
    let token: Token = tokens[0];
    g.bench_function("verify", |b| {
        b.iter(|| black_box(verifier.verify(&scope, black_box(&token), now)).is_ok())
    });
    // A window of tokens verified at once (one batched inversion for the compressions).
    let window: Vec<(TokenScope, Token)> = tokens.iter().map(|t| (scope.clone(), *t)).collect();
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(format!("verify_window_{BATCH}"), |b| {
        b.iter(|| black_box(verifier.verify_many(black_box(&window), now)))
    });
    // The 0xC0F2 form: alone, and windows checked with one equation each.
    g.throughput(Throughput::Elements(1));
    let element: Token = elements[0];
    g.bench_function("verify_element", |b| {
        b.iter(|| black_box(verifier.verify(&scope, black_box(&element), now)).is_ok())
    });
    for n in WINDOWS {
        let window: Vec<(TokenScope, Token)> = elements[..n].iter().map(|t| (scope.clone(), *t)).collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("verify_element_window_{n}"), |b| {
            b.iter(|| black_box(verifier.verify_many(black_box(&window), now)))
        });
    }
    g.finish();
}

/// One-report envelopes, with and without a token, and the aggregators to ingest them.
fn ingest(c: &mut Criterion) {
    let now = Timestamp::from_secs(T0);
    let mut rng = SeededRng::seed_from_u64(0x1A6E);
    let mut keys = KeyStore::new(DAY);
    let config: KeyConfig = keys
        .generate(AeadId::ChaCha20Poly1305, Timestamp::EPOCH, Timestamp::from_secs(T0 + 100 * DAY), &mut rng)
        .unwrap();
    let secret = IssuerSecret::from_bytes([4; 32]);
    let mut issuer = Issuer::new(secret.clone(), &catalogue()).unwrap();
    let scope = scope(now);
    let pk = issuer.public_key(&scope).unwrap();
    // A real report from a consenting device, re-used under fresh ids.
    let template: Report = {
        let mut d = confiance::recorder::Recorder::new(
            confiance::recorder::RecorderParts {
                catalogue: catalogue(),
                consent: confiance::consent::ConsentState::new(DeviceKey::generate(&mut rng)),
                pseudonyms: confiance::pseudonym::DeviceSecret::generate(&mut rng),
                controller: "calora".parse().unwrap(),
                key_configs: vec![config],
                rng: SeededRng::seed_from_u64(5),
            },
            confiance::recorder::MemoryStorage::default(),
        );
        let t = Timestamp::from_secs(T0 - DAY);
        d.give_consent(
            ConsentRequest::new(
                "calora".parse().unwrap(),
                "product-improvement".parse().unwrap(),
                Scope::metrics(["thermostat.mode".parse::<MetricId>().unwrap()]),
                "P90D".parse().unwrap(),
            )
            .valid_from(t),
            t,
        )
        .unwrap();
        d.record(
            &"thermostat.mode".parse().unwrap(),
            &"product-improvement".parse().unwrap(),
            Value::Category(1),
            now,
        )
        .unwrap();
        let f = d.flush(now).remove(0);
        let opened = keys.open(&f, now, &catalogue().digest()).unwrap();
        envelope::decode_body::<Report>(&opened.plaintext, &Default::default()).unwrap().1.remove(0)
    };
    let device = DeviceKey::generate(&mut rng);
    let fields = HeaderFields { catalogue_digest: catalogue().digest(), time_bucket: now.truncate(DAY) };
    let mut make = |with_token: bool, n: usize, rng: &mut SeededRng| -> Vec<Vec<u8>> {
        let mut spent: Vec<SpentToken> = Vec::new();
        if with_token {
            for _ in 0..n.div_ceil(1024) {
                let k = (n - spent.len()).min(1024);
                let (pending, request) = PendingTokens::request(&device, scope.clone(), pk, k, rng).unwrap();
                let response = issuer.issue(&request, &AllowAll, now, rng).unwrap();
                spent.extend(
                    pending
                        .finalize(&response)
                        .unwrap()
                        .into_iter()
                        .map(|token| SpentToken { scope: scope.clone(), token }),
                );
            }
        }
        (0..n)
            .map(|i| {
                let r = Report { id: ReportId::random(rng), ..template.clone() };
                let plain =
                    envelope::encode_body(if with_token { &spent[i..=i] } else { &[] }, &[r]).unwrap();
                envelope::seal(&config, &fields, &plain, rng).unwrap()
            })
            .collect()
    };
    let without = make(false, 1, &mut rng);
    let with = make(true, 1, &mut rng);
    println!(
        "one-report envelope: {} bytes without a token, {} with one: a token adds {} bytes ({} of them the token itself, type 0xC0F2; 0xC0F1 is {})",
        without[0].len(),
        with[0].len(),
        with[0].len() - without[0].len(),
        confiance::token::ELEMENT_TOKEN_LEN,
        confiance::token::TOKEN_LEN
    );
    let mut g = c.benchmark_group("tokens_ingest");
    // One envelope at a time (`stage`: each token checked alone), and [`STAGED`] at once
    // (`stage_many`: each thread's envelopes' `0xC0F2` tokens checked as one window).
    for (staged, with_token) in [(1, false), (1, true), (STAGED, false), (STAGED, true)] {
        let name = match (staged, with_token) {
            (1, true) => "one_report_envelope_with_token".to_owned(),
            (1, false) => "one_report_envelope_without_token".to_owned(),
            (n, true) => format!("staged_{n}_one_report_envelopes_with_token"),
            (n, false) => format!("staged_{n}_one_report_envelopes_without_token"),
        };
        g.throughput(Throughput::Elements(staged as u64));
        // Made on first use, so that a filter that skips this case skips its setup too.
        let mut setup: Option<(Aggregator, std::iter::Cycle<std::vec::IntoIter<Vec<u8>>>)> = None;
        g.bench_function(name, |b| {
            let (agg, next) = setup.get_or_insert_with(|| {
                let mut agg =
                    Aggregator::in_memory(catalogue(), keys.clone(), AggregatorConfig::default()).unwrap();
                if with_token {
                    agg.set_token_verifier(Some(TokenVerifier::new(secret.clone(), &catalogue()).unwrap()));
                }
                // `TOKENS_BENCH_POOL` frames (default 20 000) before they come round again
                // (a smaller pool for a run under callgrind, whose setup would take long).
                let pool =
                    std::env::var("TOKENS_BENCH_POOL").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
                (agg, make(with_token, pool, &mut rng).into_iter().cycle())
            });
            b.iter_batched(
                || next.by_ref().take(staged).collect::<Vec<_>>(),
                |frames| {
                    // A refusal (a frame seen before, once the pool wraps) costs at least
                    // as much as an acceptance up to the replay check: both are timed.
                    if let [f] = frames.as_slice() {
                        let _ = black_box(agg.stage(f, now));
                    } else {
                        let batch: Vec<(&[u8], Timestamp)> =
                            frames.iter().map(|f| (f.as_slice(), now)).collect();
                        let _ = black_box(agg.stage_many(&batch));
                    }
                },
                BatchSize::SmallInput,
            );
        });
        if let Some((mut agg, _)) = setup {
            agg.commit(now).unwrap();
        }
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    tokens(&mut c);
    ingest(&mut c);
    c.final_summary();
}

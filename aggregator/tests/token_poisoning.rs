//! The poisoning bound that report tokens give (docs/privacy.md): `k` enrolled attacker
//! devices, each issued at most the catalogue's quota `q` of tokens per scope and period,
//! and each token standing for at most one report per metric and bucket, control at
//! most `k·q` of the reports of one bucket — whatever they send. With `N` reports in the
//! bucket, they move a frequency estimate by at most `k·q/N` times the largest change
//! one report can make; for reports that encode a real value (input poisoning) that is
//! `k·q/N · (1 − p)` towards the value they push.
//!
//! Measured with fixed seeds: 2 000 honest reports (labels 0–2, none of label 5) and
//! k = 10 attackers with q = 24 pushing label 5, each trying a 25th token, a token-less
//! envelope, a spent token and two reports under one token. The attackers' accepted
//! reports are exactly k·q = 240; the shift of label 5 between an aggregator that saw
//! only the honest envelopes and one that saw everything is `k·q/N · (p_att − p₀)`,
//! whose noise (the attackers' own LDP noise) has standard deviation
//! `se · √(k·q/N)` (`se` the combined estimate's standard error); the test accepts the
//! bound plus five of those.

use confiance::Timestamp;
use confiance::consent::{ConsentRequest, DeviceKey, Scope};
use confiance::envelope::{self, AeadId, HeaderFields, KeyConfig, ReportId};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::MetricId;
use confiance::recorder::{MemoryStorage, Recorder, Value};
use confiance::report::Report;
use confiance::token::{PendingTokens, SpentToken, TokenPeriod, TokenScope};
use confiance_aggregator::issuer::{AllowAll, IssueError, Issuer, IssuerSecret, TokenVerifier};
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::service::{Aggregator, AggregatorConfig};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{catalogue, id, recorder};

const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;
const HONEST_DEVICES: u64 = 250; // 8 reports each (the metric's daily ε budget)
const ATTACKERS: usize = 10;

fn consenting(
    seed: u64,
    config: KeyConfig,
    aggs: &mut [&mut Aggregator],
) -> Recorder<SeededRng, MemoryStorage> {
    let mut d = recorder(seed, "calora", vec![config]);
    let t = Timestamp::from_secs(T0 - 20 * DAY);
    let bytes = d
        .give_consent(
            ConsentRequest::new(
                id("calora"),
                id("product-improvement"),
                Scope::metrics([id::<MetricId>("thermostat.mode")]),
                "P90D".parse().unwrap(),
            )
            .valid_from(t),
            t,
        )
        .unwrap();
    for a in aggs {
        a.receive_receipt(&bytes, t).unwrap();
    }
    d
}

#[test]
fn k_attackers_shift_an_estimate_by_at_most_what_their_quota_allows() {
    let mut rng = SeededRng::seed_from_u64(77);
    let mut keys = KeyStore::new(DAY);
    let config = keys
        .generate(AeadId::ChaCha20Poly1305, Timestamp::EPOCH, Timestamp::from_secs(T0 + 100 * DAY), &mut rng)
        .unwrap();
    let secret = IssuerSecret::generate(&mut rng);
    let mut honest_only =
        Aggregator::in_memory(catalogue(), keys.clone(), AggregatorConfig::default()).unwrap();
    let mut attacked = Aggregator::in_memory(catalogue(), keys, AggregatorConfig::default()).unwrap();
    for a in [&mut honest_only, &mut attacked] {
        a.set_token_verifier(Some(TokenVerifier::new(secret.clone(), &catalogue()).unwrap()));
    }
    let mut issuer = Issuer::new(secret, &catalogue()).unwrap();
    let q = issuer.quota() as usize;
    let now = Timestamp::from_secs(T0).truncate(DAY);
    let scope = TokenScope::new([id("calora")], id("product-improvement"), TokenPeriod::at(now, DAY));
    let pk = issuer.public_key(&scope).unwrap();

    // Honest devices: 8 reports each of labels 0..3, each in its own envelope and token.
    for i in 0..HONEST_DEVICES {
        let mut d = consenting(1000 + i, config, &mut [&mut honest_only, &mut attacked]);
        d.require_tokens(true);
        let key = DeviceKey::generate(&mut rng);
        let request = d.token_request(&key, scope.clone(), pk, 8).unwrap();
        let response = issuer.issue(&request, &AllowAll, now, &mut rng).unwrap();
        assert_eq!(d.take_token_response(&response), 8);
        for _ in 0..8 {
            d.record(
                &id("thermostat.mode"),
                &id("product-improvement"),
                Value::Category((i % 3) as u32),
                now,
            )
            .unwrap();
        }
        let frames = d.flush(now);
        assert_eq!(frames.len(), 8);
        for f in &frames {
            honest_only.ingest(f, now).unwrap();
            attacked.ingest(f, now).unwrap();
        }
    }
    let n_honest = 8 * HONEST_DEVICES;

    // The attackers' ammunition: well-formed reports of label 5 (from ordinary
    // recorders, 8 a day each), far more than their tokens allow.
    let mut ammo: Vec<Report> = Vec::new();
    for i in 0..(ATTACKERS * (q + 4)).div_ceil(8) as u64 {
        let mut d = consenting(5000 + i, config, &mut []);
        for _ in 0..8 {
            d.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(5), now).unwrap();
        }
        for f in d.flush(now) {
            let opened = attacked.keys().open(&f, now, &catalogue().digest()).unwrap();
            ammo.extend(envelope::decode_body::<Report>(&opened.plaintext, &Default::default()).unwrap().1);
        }
    }
    let fields = HeaderFields { catalogue_digest: catalogue().digest(), time_bucket: now };
    let seal = |spent: &[SpentToken], reports: &[Report], rng: &mut SeededRng| {
        let plain = envelope::encode_body(spent, reports).unwrap();
        envelope::seal(&config, &fields, &plain, rng).unwrap()
    };
    let mut accepted = 0u64;
    let mut id_rng = SeededRng::seed_from_u64(78);
    let mut ammo = ammo.into_iter().map(|r| Report { id: ReportId::random(&mut id_rng), ..r });
    for _ in 0..ATTACKERS {
        let key = DeviceKey::generate(&mut rng);
        // More than the quota: refused outright.
        let (_, greedy) = PendingTokens::request(&key, scope.clone(), pk, q + 1, &mut rng).unwrap();
        assert!(matches!(issuer.issue(&greedy, &AllowAll, now, &mut rng), Err(IssueError::OverQuota { .. })));
        let (pending, request) = PendingTokens::request(&key, scope.clone(), pk, q, &mut rng).unwrap();
        let tokens = pending.finalize(&issuer.issue(&request, &AllowAll, now, &mut rng).unwrap()).unwrap();
        let (_, more) = PendingTokens::request(&key, scope.clone(), pk, 1, &mut rng).unwrap();
        assert!(matches!(issuer.issue(&more, &AllowAll, now, &mut rng), Err(IssueError::OverQuota { .. })));
        // Two reports under one token: refused.
        let two = [ammo.next().unwrap(), ammo.next().unwrap()];
        let f = seal(&[SpentToken { scope: scope.clone(), token: tokens[0] }], &two, &mut rng);
        assert_eq!(attacked.ingest(&f, now).unwrap_err().code(), "token_overused");
        for t in &tokens {
            let f =
                seal(&[SpentToken { scope: scope.clone(), token: *t }], &[ammo.next().unwrap()], &mut rng);
            accepted += u64::from(attacked.ingest(&f, now).unwrap().reports);
        }
        // Out of tokens: a spent one, or none, gets nothing in.
        let f =
            seal(&[SpentToken { scope: scope.clone(), token: tokens[0] }], &[ammo.next().unwrap()], &mut rng);
        assert_eq!(attacked.ingest(&f, now).unwrap_err().code(), "token_spent");
        let f = seal(&[], &[ammo.next().unwrap()], &mut rng);
        assert_eq!(attacked.ingest(&f, now).unwrap_err().code(), "token_missing");
    }
    let kq = (ATTACKERS * q) as u64;
    assert_eq!(accepted, kq);

    let release = |a: &mut Aggregator| {
        a.release(
            &id("calora"),
            &id("thermostat.mode"),
            Timestamp::EPOCH,
            Timestamp::MAX,
            now.saturating_add_secs(DAY),
        )
        .unwrap()
    };
    let before = release(&mut honest_only);
    let after = release(&mut attacked);
    assert_eq!(before.estimate.n, n_honest);
    assert_eq!(after.estimate.n, n_honest + kq, "the attackers hold exactly k·q reports of the bucket");
    let share = kq as f64 / (n_honest + kq) as f64;
    let p0 = before.estimate.values[5].value;
    let shift = after.estimate.values[5].value - p0;
    let bound = share * (1.0 - p0);
    let noise = after.estimate.values[5].std_error * share.sqrt();
    println!(
        "k·q = {kq} of {} reports: label 5 moved {shift:.4} (bound k·q/N·(1 − p₀) = {bound:.4}, noise sd {noise:.4})",
        n_honest + kq
    );
    assert!(shift <= bound + 5.0 * noise, "shift {shift} above the bound {bound}");
    assert!(shift >= bound - 5.0 * noise, "the attack should reach its bound: {shift} vs {bound}");
}

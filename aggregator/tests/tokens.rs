//! Anonymous report tokens end to end: devices fetch tokens from the issuer, spend one
//! per scope in each envelope, and ingest refuses a spent, foreign-scope, wrong-period,
//! expired, forged, overused or missing token — each with its own code, keeping nothing.
//! The issuer refuses bad signatures, unknown scopes, closed periods, devices the policy
//! refuses (no consent, not enrolled) and requests over the catalogue's quota, counting
//! nothing for them.

use std::collections::BTreeSet;

use confiance::Timestamp;
use confiance::catalogue::LegalBasis;
use confiance::consent::{ConsentRequest, DeviceKey, Scope};
use confiance::envelope::{self, AeadId, HeaderFields, KeyConfig, ReportId};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{DevicePublicKey, MetricId};
use confiance::recorder::{MemoryStorage, Recorder, Value};
use confiance::report::Report;
use confiance::token::{PendingTokens, SpentToken, Token, TokenPeriod, TokenScope};
use confiance_aggregator::ingest::IngestError;
use confiance_aggregator::issuer::{
    AllowAll, IssuancePolicy, IssueError, Issuer, IssuerSecret, PolicyRefusal, TokenRefusal, TokenVerifier,
};
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::service::{Aggregator, AggregatorConfig};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{catalogue, id, recorder};

const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

struct World {
    agg: Aggregator,
    issuer: Issuer,
    secret: IssuerSecret,
    config: KeyConfig,
    rng: SeededRng,
}

fn world(seed: u64) -> World {
    let mut rng = SeededRng::seed_from_u64(seed);
    let mut keys = KeyStore::new(DAY);
    let config = keys
        .generate(AeadId::ChaCha20Poly1305, Timestamp::EPOCH, Timestamp::from_secs(T0 + 100 * DAY), &mut rng)
        .unwrap();
    let mut agg = Aggregator::in_memory(catalogue(), keys, AggregatorConfig::default()).unwrap();
    let secret = IssuerSecret::generate(&mut rng);
    agg.set_token_verifier(Some(TokenVerifier::new(secret.clone(), &catalogue()).unwrap()));
    let issuer = Issuer::new(secret.clone(), &catalogue()).unwrap();
    World { agg, issuer, secret, config, rng }
}

fn device(w: &mut World, seed: u64) -> Recorder<SeededRng, MemoryStorage> {
    let mut d = recorder(seed, "calora", vec![w.config]);
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
    w.agg.receive_receipt(&bytes, t).unwrap();
    d.require_tokens(true);
    d
}

fn scope_at(recipients: &[&str], t: Timestamp) -> TokenScope {
    TokenScope::new(recipients.iter().map(|r| id(r)), id("product-improvement"), TokenPeriod::at(t, DAY))
}

/// Fetches `n` tokens of `scope` for `d` at `now` through the recorder's host calls.
fn fetch(
    w: &mut World,
    d: &mut Recorder<SeededRng, MemoryStorage>,
    key: &DeviceKey,
    scope: TokenScope,
    n: usize,
    now: Timestamp,
) -> Result<usize, IssueError> {
    let pk = w.issuer.public_key(&scope).unwrap();
    let request = d.token_request(key, scope, pk, n).unwrap();
    let response = w.issuer.issue(&request, &AllowAll, now, &mut w.rng)?;
    Ok(d.take_token_response(&response))
}

/// Tokens made outside a recorder, for crafted envelopes.
fn tokens(w: &mut World, scope: &TokenScope, n: usize, now: Timestamp) -> Vec<Token> {
    let key = DeviceKey::generate(&mut w.rng);
    let pk = w.issuer.public_key(scope).unwrap();
    let (pending, request) = PendingTokens::request(&key, scope.clone(), pk, n, &mut w.rng).unwrap();
    let response = w.issuer.issue(&request, &AllowAll, now, &mut w.rng).unwrap();
    pending.finalize(&response).unwrap()
}

fn seal(w: &mut World, spent: &[SpentToken], reports: &[Report], day: Timestamp) -> Vec<u8> {
    let plain = envelope::encode_body(spent, reports).unwrap();
    let fields = HeaderFields { catalogue_digest: catalogue().digest(), time_bucket: day };
    envelope::seal(&w.config, &fields, &plain, &mut w.rng).unwrap()
}

/// Everything that must not change when an envelope is refused.
fn snapshot(agg: &Aggregator) -> (Vec<u64>, u64, usize) {
    let log = agg.store().audit_log().unwrap().size();
    let seen = agg.store().seen_ids(Timestamp::EPOCH).unwrap().len();
    (agg.partition_states().values().map(|(n, _)| *n).collect(), log, seen)
}

#[test]
fn reports_wait_for_tokens_then_go_out_with_one_per_scope() {
    let mut w = world(1);
    let now = Timestamp::from_secs(T0);
    let mut d = device(&mut w, 10);
    let key = DeviceKey::generate(&mut w.rng);
    d.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(2), now).unwrap();
    // No token yet: the report waits, counted; the host is told what to fetch.
    assert!(d.flush(now).is_empty());
    assert_eq!(d.counters().waiting_for_token, 1);
    let scope = scope_at(&["calora"], now);
    assert_eq!(d.tokens_needed().into_iter().collect::<Vec<_>>(), [(scope.clone(), 1)]);
    assert_eq!(fetch(&mut w, &mut d, &key, scope.clone(), 4, now), Ok(4));
    let frames = d.flush(now);
    assert_eq!(frames.len(), 1);
    assert_eq!(d.tokens_held(&scope), 3);
    assert_eq!(w.agg.ingest(&frames[0], now).unwrap().reports, 1);
    // A second report in the same metric and bucket goes in a second envelope, with its
    // own token.
    d.acknowledge(&frames[0]);
    d.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(1), now).unwrap();
    d.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(0), now).unwrap();
    let frames = d.flush(now);
    assert_eq!(frames.len(), 2);
    assert_eq!(d.tokens_held(&scope), 1);
    for f in &frames {
        assert_eq!(w.agg.ingest(f, now).unwrap().reports, 1);
    }
}

#[test]
fn each_bad_token_is_refused_with_its_own_code_and_changes_nothing() {
    let mut w = world(2);
    let now = Timestamp::from_secs(T0);
    let day = now.truncate(DAY);
    let mut d = device(&mut w, 20);
    let key = DeviceKey::generate(&mut w.rng);
    let scope = scope_at(&["calora"], now);
    fetch(&mut w, &mut d, &key, scope.clone(), 2, now).unwrap();
    d.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(2), now).unwrap();
    let good = d.flush(now).remove(0);
    let opened = w.agg.keys().open(&good, now, &catalogue().digest()).unwrap();
    let (spent, reports) = envelope::decode_body::<Report>(&opened.plaintext, &Default::default()).unwrap();
    assert_eq!(spent.len(), 1);
    w.agg.ingest(&good, now).unwrap();
    let before = snapshot(&w.agg);

    let mut ids = SeededRng::seed_from_u64(5);
    let mut fresh = || vec![Report { id: ReportId::random(&mut ids), ..reports[0].clone() }];
    let other_scope = scope_at(&["gridco"], now);
    let next_period = TokenScope { period: TokenPeriod(scope.period.0 + 1), ..scope.clone() };
    let other = tokens(&mut w, &other_scope, 1, now)[0];
    let next = tokens(&mut w, &next_period, 1, now)[0];
    let unspent = tokens(&mut w, &scope, 1, now)[0];
    let mut forged = unspent;
    forged.authenticator[7] ^= 1;
    let mut bad_key_id = unspent;
    bad_key_id.key_id[0] ^= 1;

    let cases: Vec<(&str, Vec<SpentToken>, Vec<Report>, TokenRefusal)> = vec![
        ("double spend", spent.clone(), fresh(), TokenRefusal::Spent),
        ("missing", vec![], fresh(), TokenRefusal::Missing),
        (
            "another scope's token, claimed for this scope",
            vec![SpentToken { scope: scope.clone(), token: other }],
            fresh(),
            TokenRefusal::Scope,
        ),
        (
            "another scope, for reports not in it",
            vec![SpentToken { scope: other_scope.clone(), token: other }],
            fresh(),
            TokenRefusal::Scope,
        ),
        (
            "the next period's token",
            vec![SpentToken { scope: next_period.clone(), token: next }],
            fresh(),
            TokenRefusal::Scope,
        ),
        (
            "two tokens for one scope",
            vec![SpentToken { scope: scope.clone(), token: unspent }; 2],
            fresh(),
            TokenRefusal::Scope,
        ),
        (
            "forged authenticator",
            vec![SpentToken { scope: scope.clone(), token: forged }],
            fresh(),
            TokenRefusal::Invalid,
        ),
        (
            "wrong key id",
            vec![SpentToken { scope: scope.clone(), token: bad_key_id }],
            fresh(),
            TokenRefusal::Invalid,
        ),
        (
            "two reports of one metric and bucket under one token",
            vec![SpentToken { scope: scope.clone(), token: unspent }],
            [fresh(), fresh()].concat(),
            TokenRefusal::Overused,
        ),
    ];
    let mut codes = BTreeSet::new();
    for (name, spent, reports, expected) in cases {
        let frame = seal(&mut w, &spent, &reports, day);
        let err = w.agg.ingest(&frame, now).unwrap_err();
        assert!(matches!(err, IngestError::Token(e) if e == expected), "{name}: {err:?}");
        assert_eq!(err.code(), expected.code(), "{name}");
        assert_eq!(snapshot(&w.agg), before, "{name}: something was kept");
        codes.insert(err.code());
    }
    assert_eq!(codes.len(), 5, "{codes:?}");
    // The unspent token is still good: the refusals above spent nothing.
    let frame = seal_plain(&mut w, &[SpentToken { scope: scope.clone(), token: unspent }], &fresh(), day);
    w.agg.ingest(&frame, now).unwrap();
    // Expired: a report three days old (within the 14-day report window) whose token's
    // period ended more than a period ago.
    let old = Timestamp::from_secs(T0 - 3 * DAY).truncate(DAY);
    let old_scope = scope_at(&["calora"], old);
    let old_token = {
        let key = DeviceKey::generate(&mut w.rng);
        let pk = w.issuer.public_key(&old_scope).unwrap();
        let (pending, request) = PendingTokens::request(&key, old_scope.clone(), pk, 1, &mut w.rng).unwrap();
        pending.finalize(&w.issuer.issue(&request, &AllowAll, old, &mut w.rng).unwrap()).unwrap()[0]
    };
    let before = snapshot(&w.agg);
    let old_report = Report { id: ReportId([0x77; 16]), time: old, ..reports[0].clone() };
    let frame = seal_plain(&mut w, &[SpentToken { scope: old_scope, token: old_token }], &[old_report], day);
    let err = w.agg.ingest(&frame, now).unwrap_err();
    assert_eq!(err.code(), "token_expired");
    assert_eq!(snapshot(&w.agg), before);
}

fn seal_plain(w: &mut World, spent: &[SpentToken], reports: &[Report], day: Timestamp) -> Vec<u8> {
    seal(w, spent, reports, day)
}

#[test]
fn spent_tokens_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("confiance-tokens-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("agg.sqlite");
    let mut w = world(3);
    let now = Timestamp::from_secs(T0);
    let secret = IssuerSecret::from_bytes([9; 32]);
    w.issuer = Issuer::new(secret.clone(), &catalogue()).unwrap();
    let mut d = device(&mut w, 30);
    let key = DeviceKey::generate(&mut w.rng);
    fetch(&mut w, &mut d, &key, scope_at(&["calora"], now), 1, now).unwrap();
    d.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(2), now).unwrap();
    let frame = d.flush(now).remove(0);
    let opened = w.agg.keys().open(&frame, now, &catalogue().digest()).unwrap();
    let (spent, reports) = envelope::decode_body::<Report>(&opened.plaintext, &Default::default()).unwrap();
    let keys = w.agg.keys().clone();
    {
        let mut agg =
            Aggregator::open(&path, catalogue(), keys.clone(), AggregatorConfig::default()).unwrap();
        agg.set_token_verifier(Some(TokenVerifier::new(secret.clone(), &catalogue()).unwrap()));
        agg.ingest(&frame, now).unwrap();
    }
    let mut agg = Aggregator::open(&path, catalogue(), keys, AggregatorConfig::default()).unwrap();
    agg.set_token_verifier(Some(TokenVerifier::new(secret, &catalogue()).unwrap()));
    let again = Report { id: ReportId([0x42; 16]), ..reports[0].clone() };
    let frame = seal(&mut w, &spent, &[again], now.truncate(DAY));
    assert_eq!(agg.ingest(&frame, now).unwrap_err().code(), "token_spent");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A policy that knows which devices are enrolled and which have consent.
struct Ledgerish {
    enrolled: BTreeSet<DevicePublicKey>,
    consenting: BTreeSet<DevicePublicKey>,
}

impl IssuancePolicy for Ledgerish {
    fn allows(
        &self,
        d: &DevicePublicKey,
        _: &TokenScope,
        basis: LegalBasis,
        _: Timestamp,
    ) -> Result<(), PolicyRefusal> {
        if !self.enrolled.contains(d) {
            return Err(PolicyRefusal::NotEnrolled);
        }
        if basis == LegalBasis::Consent && !self.consenting.contains(d) {
            return Err(PolicyRefusal::NotConsented);
        }
        Ok(())
    }
}

#[test]
fn issuance_refusals_each_have_their_own_code_and_count_nothing() {
    let mut w = world(4);
    let now = Timestamp::from_secs(T0);
    let scope = scope_at(&["calora"], now);
    let pk = w.issuer.public_key(&scope).unwrap();
    let [a, b, c] = [1u8, 2, 3].map(|s| DeviceKey::from_bytes(&[s; 32]));
    let policy =
        Ledgerish { enrolled: [a.public_key(), b.public_key()].into(), consenting: [a.public_key()].into() };
    let quota = w.issuer.quota() as usize;
    assert_eq!(quota, 24, "the catalogue's default");
    let issue = |w: &mut World, key: &DeviceKey, scope: &TokenScope, n: usize| {
        let pk = w.issuer.public_key(scope).unwrap();
        let (_, request) = PendingTokens::request(key, scope.clone(), pk, n, &mut w.rng).unwrap();
        w.issuer.issue(&request, &policy, now, &mut w.rng).map(|r| r.evaluated.len())
    };
    let code = |r: Result<usize, IssueError>| r.unwrap_err().code();
    assert_eq!(code(issue(&mut w, &b, &scope, 1)), "not_consented");
    assert_eq!(code(issue(&mut w, &c, &scope, 1)), "not_enrolled");
    assert_eq!(code(issue(&mut w, &a, &scope, quota + 1)), "over_quota");
    let unknown = TokenScope::new([id("calora")], id("no-such-purpose"), scope.period);
    assert_eq!(code(issue(&mut w, &a, &unknown, 1)), "unknown_scope");
    // No metric goes to both calora and pulsa.
    let not_allowed = TokenScope::new([id("calora"), id("pulsa")], id("product-improvement"), scope.period);
    assert_eq!(code(issue(&mut w, &a, &not_allowed, 1)), "unknown_scope");
    let past = TokenScope { period: TokenPeriod(scope.period.0 - 1), ..scope.clone() };
    assert_eq!(code(issue(&mut w, &a, &past, 1)), "period_not_open");
    let far = TokenScope { period: TokenPeriod(scope.period.0 + 2), ..scope.clone() };
    assert_eq!(code(issue(&mut w, &a, &far, 1)), "period_not_open");
    let (_, mut forged) = PendingTokens::request(&a, scope.clone(), pk, 1, &mut w.rng).unwrap();
    forged.device_key = c.public_key();
    assert_eq!(w.issuer.issue(&forged, &policy, now, &mut w.rng).unwrap_err().code(), "bad_signature");
    let (_, mut identity) = PendingTokens::request(&a, scope.clone(), pk, 1, &mut w.rng).unwrap();
    identity.blinded[0] = [0; 32];
    // (the signature no longer matches either; signature comes first)
    assert_eq!(w.issuer.issue(&identity, &policy, now, &mut w.rng).unwrap_err().code(), "bad_signature");
    // Nothing was counted: the whole quota is still there, and then it is gone.
    assert!(w.issuer.take_counts().is_empty());
    assert_eq!(issue(&mut w, &a, &scope, quota - 1), Ok(quota - 1));
    assert_eq!(issue(&mut w, &a, &scope, 1), Ok(1));
    assert_eq!(
        issue(&mut w, &a, &scope, 1).unwrap_err(),
        IssueError::OverQuota { issued: quota as u32, quota: quota as u32 }
    );
    // The next period has its own quota; the audit counts are per scope, counts only.
    let next = TokenScope { period: TokenPeriod(scope.period.0 + 1), ..scope.clone() };
    assert_eq!(issue(&mut w, &a, &next, 2), Ok(2));
    let counts = w.issuer.take_counts();
    assert_eq!(counts.get(&scope), Some(&(quota as u64)));
    assert_eq!(counts.get(&next), Some(&2));
}

/// A window verified at once gives each token the verdict it gets alone.
#[test]
fn a_window_of_tokens_gets_the_verdicts_of_one_at_a_time() {
    let mut w = world(9);
    let now = Timestamp::from_secs(T0);
    let a = scope_at(&["calora"], now);
    let b = scope_at(&["calora", "gridco"], now);
    let old = scope_at(&["calora"], Timestamp::from_secs(T0 - 3 * DAY));
    let ta = tokens(&mut w, &a, 3, now);
    let tb = tokens(&mut w, &b, 2, now);
    let told = tokens(&mut w, &old, 1, Timestamp::from_secs(T0 - 3 * DAY));
    let mut forged = ta[2];
    forged.authenticator[0] ^= 1;
    let verifier = TokenVerifier::new(w.secret.clone(), &catalogue()).unwrap();
    let window = vec![
        (a.clone(), ta[0]),
        (b.clone(), tb[0]),
        (a.clone(), forged),
        (b.clone(), ta[1]),
        (old.clone(), told[0]),
        (a.clone(), ta[1]),
        (b.clone(), tb[1]),
    ];
    let many = verifier.verify_many(&window, now);
    let alone: Vec<_> = window.iter().map(|(s, t)| verifier.verify(s, t, now)).collect();
    assert_eq!(many, alone);
    assert_eq!(
        many,
        [
            Ok(()),
            Ok(()),
            Err(TokenRefusal::Invalid),
            Err(TokenRefusal::Scope),
            Err(TokenRefusal::Expired),
            Ok(()),
            Ok(())
        ]
    );
}

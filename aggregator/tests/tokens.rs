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
use confiance::token::{PendingTokens, Redemption, SpentToken, Token, TokenPeriod, TokenScope, TokenType};
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

/// A consenting device's first envelope at `now` (one report of `thermostat.mode`, its
/// token from `fetched` fetched), with the tokens and reports it carries.
fn first_envelope(
    w: &mut World,
    seed: u64,
    fetched: usize,
    now: Timestamp,
) -> (Vec<u8>, Vec<SpentToken>, Vec<Report>) {
    let mut d = device(w, seed);
    let key = DeviceKey::generate(&mut w.rng);
    fetch(w, &mut d, &key, scope_at(&["calora"], now), fetched, now).unwrap();
    d.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(2), now).unwrap();
    let frame = d.flush(now).remove(0);
    let opened = w.agg.keys().open(&frame, now, &catalogue().digest()).unwrap();
    let (spent, reports) = envelope::decode_body::<Report>(&opened.plaintext, &Default::default()).unwrap();
    (frame, spent, reports)
}

/// Flips bit 0 of byte `i` of the token's redemption (authenticator or element).
fn tamper(t: &mut Token, i: usize) {
    match &mut t.redemption {
        Redemption::Authenticator(a) => a[i] ^= 1,
        Redemption::Element(n) => n[i] ^= 1,
    }
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
    let scope = scope_at(&["calora"], now);
    let (good, spent, reports) = first_envelope(&mut w, 20, 2, now);
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
    tamper(&mut forged, 7);
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
    tamper(&mut forged, 0);
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

/// Tokens of `token_type` made outside a recorder, their nonces drawn from `nonces`.
fn tokens_of(
    w: &mut World,
    token_type: TokenType,
    scope: &TokenScope,
    n: usize,
    now: Timestamp,
    nonces: &mut SeededRng,
) -> Vec<Token> {
    let key = DeviceKey::generate(&mut w.rng);
    let pk = w.issuer.public_key(scope).unwrap();
    let (pending, request) =
        PendingTokens::request_as(token_type, &key, scope.clone(), pk, n, nonces).unwrap();
    let response = w.issuer.issue(&request, &AllowAll, now, &mut w.rng).unwrap();
    pending.finalize(&response).unwrap()
}

fn element(t: &Token) -> [u8; 32] {
    match t.redemption {
        Redemption::Element(n) => n,
        Redemption::Authenticator(_) => panic!("not a 0xC0F2 token"),
    }
}

fn with_element(t: Token, n: [u8; 32]) -> Token {
    Token { redemption: Redemption::Element(n), ..t }
}

/// `N + G`: a valid, canonical element that is not the token's.
fn shifted(n: [u8; 32]) -> [u8; 32] {
    let p = curve25519_dalek::ristretto::CompressedRistretto(n).decompress().unwrap();
    (p + curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT).compress().to_bytes()
}

/// The `0xC0F2` form: devices make it by default; a forged element, two tokens' elements
/// swapped, a non-canonical encoding and the identity are each refused `token_invalid`,
/// alone and in a window, where the honest tokens beside them pass; `0xC0F1` tokens
/// still verify, and in the same window.
#[test]
fn element_tokens_refuse_forged_swapped_noncanonical_and_identity_elements() {
    let mut w = world(21);
    let now = Timestamp::from_secs(T0);
    let scope = scope_at(&["calora"], now);
    let good = tokens(&mut w, &scope, 8, now);
    assert!(good.iter().all(|t| t.token_type() == TokenType::Element && t.to_bytes().len() == 130));
    let mut nonces = SeededRng::seed_from_u64(3);
    let old = tokens_of(&mut w, TokenType::Authenticator, &scope, 2, now, &mut nonces);
    assert_eq!(old[0].to_bytes().len(), 162);
    let verifier = TokenVerifier::new(w.secret.clone(), &catalogue()).unwrap();
    for t in good.iter().chain(&old) {
        assert_eq!(verifier.verify(&scope, t, now), Ok(()));
    }
    let n = |i: usize| element(&good[i]);
    let mut negative = n(4);
    negative[0] |= 1; // a canonical encoding is even: an odd one is "negative", refused
    let cases: Vec<(&str, Token)> = vec![
        ("forged (another valid element)", with_element(good[0], shifted(n(0)))),
        ("another token's element", with_element(good[1], n(2))),
        ("non-canonical (≥ p)", with_element(good[3], [0xff; 32])),
        ("non-canonical (negative)", with_element(good[4], negative)),
        ("the identity", with_element(good[5], [0; 32])),
        ("an authenticator's token with an element", with_element(old[0], n(6))),
    ];
    for (name, t) in &cases {
        assert_eq!(verifier.verify(&scope, t, now), Err(TokenRefusal::Invalid), "{name}");
    }
    // Bytes on the wire decode, and are refused by the check, not the decoder.
    for (name, t) in &cases {
        assert_eq!(Token::from_bytes(&t.to_bytes()).as_ref(), Ok(t), "{name}");
    }
    // Two tokens' elements swapped within a window: both refused, their neighbours pass.
    let swapped = [with_element(good[1], n(2)), with_element(good[2], n(1))];
    let window: Vec<(TokenScope, Token)> =
        [good[0], swapped[0], good[6], swapped[1], old[1], good[7], old[0]]
            .into_iter()
            .map(|t| (scope.clone(), t))
            .collect();
    let ok = Ok(());
    let bad = Err(TokenRefusal::Invalid);
    assert_eq!(verifier.verify_many(&window, now), [ok, bad, ok, bad, ok, ok, ok]);
    // Each case in a window of honest tokens: it alone is refused.
    for (name, t) in &cases {
        let window: Vec<(TokenScope, Token)> =
            [good[6], *t, good[7], old[1]].into_iter().map(|t| (scope.clone(), t)).collect();
        assert_eq!(verifier.verify_many(&window, now), [ok, bad, ok, ok], "{name}");
    }
}

/// A window of 32 envelopes staged at once, one of them with a forged element: it alone
/// is refused `token_invalid` and keeps nothing; the other 31 are accepted.
#[test]
fn a_forged_token_among_staged_envelopes_is_refused_alone() {
    let mut w = world(22);
    let now = Timestamp::from_secs(T0);
    let day = now.truncate(DAY);
    let scope = scope_at(&["calora"], now);
    let (_, _, reports) = first_envelope(&mut w, 23, 1, now);
    // Two devices' tokens (the quota is 24 a device).
    let mut spend = [tokens(&mut w, &scope, 16, now), tokens(&mut w, &scope, 16, now)].concat();
    spend[13] = with_element(spend[13], shifted(element(&spend[13])));
    let mut ids = SeededRng::seed_from_u64(24);
    let frames: Vec<Vec<u8>> = spend
        .iter()
        .map(|t| {
            let r = Report { id: ReportId::random(&mut ids), ..reports[0].clone() };
            seal(&mut w, &[SpentToken { scope: scope.clone(), token: *t }], &[r], day)
        })
        .collect();
    let staged: Vec<(&[u8], Timestamp)> = frames.iter().map(|f| (f.as_slice(), now)).collect();
    let results = w.agg.stage_many(&staged);
    for (i, r) in results.iter().enumerate() {
        if i == 13 {
            assert!(matches!(r, Err(IngestError::Token(TokenRefusal::Invalid))), "{r:?}");
        } else {
            assert!(r.is_ok(), "envelope {i}: {r:?}");
        }
    }
    assert_eq!(w.agg.commit(now).unwrap().len(), 31);
    assert_eq!(w.agg.partition_states().values().map(|(n, _)| *n).sum::<u64>(), 31);
}

/// A token is spent by its nonce whatever its type: the same nonce under `0xC0F1` and
/// `0xC0F2` (two valid tokens) is accepted once; and an old-type token goes through
/// ingest as before.
#[test]
fn a_nonce_is_spent_once_across_token_types() {
    let mut w = world(25);
    let now = Timestamp::from_secs(T0);
    let day = now.truncate(DAY);
    let scope = scope_at(&["calora"], now);
    let (_, _, reports) = first_envelope(&mut w, 26, 1, now);
    let old =
        tokens_of(&mut w, TokenType::Authenticator, &scope, 1, now, &mut SeededRng::seed_from_u64(8))[0];
    let new = tokens_of(&mut w, TokenType::Element, &scope, 1, now, &mut SeededRng::seed_from_u64(8))[0];
    assert_eq!(old.nonce, new.nonce);
    assert_ne!(old.to_bytes()[..2], new.to_bytes()[..2]);
    let verifier = TokenVerifier::new(w.secret.clone(), &catalogue()).unwrap();
    assert_eq!((verifier.verify(&scope, &old, now), verifier.verify(&scope, &new, now)), (Ok(()), Ok(())));
    let mut ids = SeededRng::seed_from_u64(27);
    let mut fresh = || vec![Report { id: ReportId::random(&mut ids), ..reports[0].clone() }];
    let frame = seal(&mut w, &[SpentToken { scope: scope.clone(), token: old }], &fresh(), day);
    assert_eq!(w.agg.ingest(&frame, now).unwrap().reports, 1);
    let before = snapshot(&w.agg);
    let frame = seal(&mut w, &[SpentToken { scope: scope.clone(), token: new }], &fresh(), day);
    let err = w.agg.ingest(&frame, now).unwrap_err();
    assert_eq!(err.code(), "token_spent");
    assert_eq!(snapshot(&w.agg), before);
}

/// Property: over random windows (fixed seeds) mixing both types, two scopes, honest
/// tokens and every kind of bad element, the batched verdicts are the one-at-a-time
/// verdicts, and those are the truth by construction.
#[test]
fn batched_and_single_checks_agree_over_random_windows() {
    use rand_core::Rng as _;
    let mut w = world(28);
    let now = Timestamp::from_secs(T0);
    let scopes = [scope_at(&["calora"], now), scope_at(&["calora", "gridco"], now)];
    let mut nonces = SeededRng::seed_from_u64(29);
    let pools: Vec<(Vec<Token>, Vec<Token>)> = scopes
        .iter()
        .map(|s| {
            (
                tokens_of(&mut w, TokenType::Element, s, 24, now, &mut nonces),
                tokens_of(&mut w, TokenType::Authenticator, s, 8, now, &mut nonces),
            )
        })
        .collect();
    let verifier = TokenVerifier::new(w.secret.clone(), &catalogue()).unwrap();
    let mut rng = SeededRng::seed_from_u64(30);
    let mut bad_seen = 0;
    for round in 0..60 {
        let len = 1 + (rng.next_u32() % 40) as usize;
        let mut window = Vec::with_capacity(len);
        let mut truth = Vec::with_capacity(len);
        for _ in 0..len {
            let si = (rng.next_u32() % 2) as usize;
            let (elements, authenticators) = &pools[si];
            let pick = |r: &mut SeededRng, v: &[Token]| v[(r.next_u32() as usize) % v.len()];
            let honest = pick(&mut rng, elements);
            // Mostly honest, so that most windows pass at once and some need the fall-back.
            let (token, ok) = match rng.next_u32() % 16 {
                0 => (with_element(honest, shifted(element(&honest))), false),
                1 => {
                    let other = pick(&mut rng, elements);
                    (with_element(honest, element(&other)), other.nonce == honest.nonce)
                }
                2 => (with_element(honest, [0xff; 32]), false),
                3 => (with_element(honest, [0; 32]), false),
                4 => (pick(&mut rng, authenticators), true),
                5 => {
                    let mut t = pick(&mut rng, authenticators);
                    tamper(&mut t, 1);
                    (t, false)
                }
                _ => (honest, true),
            };
            bad_seen += usize::from(!ok);
            window.push((scopes[si].clone(), token));
            truth.push(if ok { Ok(()) } else { Err(TokenRefusal::Invalid) });
        }
        let many = verifier.verify_many(&window, now);
        let alone: Vec<_> = window.iter().map(|(s, t)| verifier.verify(s, t, now)).collect();
        assert_eq!(many, alone, "round {round}");
        assert_eq!(many, truth, "round {round}");
    }
    assert!(bad_seen > 60, "{bad_seen} bad tokens: the property would test little");
}

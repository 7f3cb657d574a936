//! Token issuance by the aggregator: the ledger is the policy (an enrolled device key, a
//! live receipt of its subject where the purpose needs consent), the quota is counted in
//! the database (a restart does not reset it), every refusal has its own code and
//! issues and stores nothing, and issuance is logged per scope and period as counts.

use confiance::Timestamp;
use confiance::consent::{DeviceKey, SignedReceipt, SubjectKey};
use confiance::envelope::AeadId;
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::token::{PendingTokens, TokenPeriod, TokenScope};
use confiance_aggregator::audit::{AuditEvent, EventKind};
use confiance_aggregator::issuer::{IssueError, IssuerSecret};
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::service::{Aggregator, AggregatorConfig};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{calora_mode_receipt as receipt, catalogue, id};

const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(s)
}

fn open(path: &std::path::Path) -> Aggregator {
    let mut rng = SeededRng::seed_from_u64(1);
    let mut keys = KeyStore::new(DAY);
    keys.generate(AeadId::ChaCha20Poly1305, Timestamp::EPOCH, t(T0 + 100 * DAY), &mut rng).unwrap();
    let mut agg = Aggregator::open(path, catalogue(), keys, AggregatorConfig::default()).unwrap();
    agg.enable_tokens(IssuerSecret::from_bytes([7; 32])).unwrap();
    agg
}

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("confiance-token-issuance-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("agg.sqlite")
}

fn scope(now: Timestamp) -> TokenScope {
    TokenScope::new([id("calora")], id("product-improvement"), TokenPeriod::at(now, DAY))
}

/// Asks for `n` tokens of `scope` for `key`; on success checks the proof and returns the
/// tokens' count.
fn ask(
    agg: &mut Aggregator,
    key: &DeviceKey,
    scope: &TokenScope,
    n: usize,
    now: Timestamp,
) -> Result<usize, IssueError> {
    let mut rng = SeededRng::seed_from_u64(u64::from(key.public_key().0[0]) + n as u64);
    let pk = agg.token_public_key(scope)?;
    let (pending, request) = PendingTokens::request(key, scope.clone(), pk, n, &mut rng).unwrap();
    let response = agg.issue_tokens(&request, now, &mut rng)?;
    Ok(pending.finalize(&response).expect("the aggregator's proof verifies").len())
}

/// What a refused request must leave unchanged: the per-device counts, the per-scope
/// counts and the audit log.
fn counted(agg: &Aggregator) -> (i64, i64, i64, u64) {
    let c = agg.ledger().connection();
    let (rows, sum): (i64, i64) = c
        .query_row("SELECT COUNT(*), COALESCE(SUM(issued), 0) FROM token_issued", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let scoped: i64 =
        c.query_row("SELECT COALESCE(SUM(issued), 0) FROM token_scope_issued", [], |r| r.get(0)).unwrap();
    (rows, sum, scoped, agg.store().audit_log().unwrap().size())
}

/// An owner with four devices: `ok` (consented), `quiet` (enrolled, no consent),
/// `revoked`, `expired`; and a `stranger` nobody delegated.
struct Fleet {
    owner: SubjectKey,
    /// The owner's receipts (given by `ok`, `revoked` and `expired`).
    receipts: Vec<SignedReceipt>,
    ok: DeviceKey,
    quiet: DeviceKey,
    revoked: DeviceKey,
    expired: DeviceKey,
    stranger: DeviceKey,
}

fn enroll(agg: &mut Aggregator) -> Fleet {
    let owner = SubjectKey::from_bytes(&[1; 32]);
    let other = SubjectKey::from_bytes(&[2; 32]);
    let [ok, quiet, revoked, expired, stranger] =
        [11u8, 12, 13, 14, 15].map(|s| DeviceKey::from_bytes(&[s; 32]));
    let start = t(T0 - 30 * DAY);
    for (o, d, until) in [
        (&owner, &ok, None),
        (&other, &quiet, None),
        (&owner, &revoked, None),
        (&owner, &expired, Some(t(T0 - DAY))),
    ] {
        agg.receive_delegation(&o.delegate(d.public_key(), start, until, start).unwrap().to_bytes(), start)
            .unwrap();
    }
    let receipts = [(&ok, 1), (&revoked, 2), (&expired, 3)]
        .map(|(d, nonce)| receipt(&owner, d, T0 - 20 * DAY, nonce))
        .to_vec();
    for r in &receipts {
        agg.receive_receipt(&r.to_bytes(), t(T0 - 20 * DAY)).unwrap();
    }
    let lost = t(T0 - 2 * DAY);
    agg.receive_revocation(&owner.revoke(revoked.public_key(), lost, lost).to_bytes(), lost).unwrap();
    Fleet { owner, receipts, ok, quiet, revoked, expired, stranger }
}

#[test]
fn issuance_follows_the_ledger_and_each_refusal_has_its_code_and_stores_nothing() {
    let path = temp_db("refusals");
    let mut agg = open(&path);
    let f = enroll(&mut agg);
    let now = t(T0 + 3_600);
    let s = scope(now);
    let quota = catalogue().limits().tokens_per_period as usize;
    assert_eq!(quota, 24, "the catalogue's default");
    let cases: [(&str, &DeviceKey, usize, &str, bool); 5] = [
        ("nobody delegated it", &f.stranger, 1, "not_enrolled", true),
        ("its subject revoked it", &f.revoked, 1, "delegation_revoked", false),
        ("its delegation ended", &f.expired, 1, "delegation_expired", false),
        ("its subject never consented", &f.quiet, 1, "not_consented", true),
        ("more than the quota at once", &f.ok, quota + 1, "over_quota", true),
    ];
    for (what, key, n, code, retry) in cases {
        let before = counted(&agg);
        let err = ask(&mut agg, key, &s, n, now).expect_err(what);
        assert_eq!((err.code(), err.is_retryable()), (code, retry), "{what}: {err}");
        assert_eq!(counted(&agg), before, "{what}: something was stored");
    }
    // The consenting device gets its quota, in two requests, and not one token more.
    assert_eq!(ask(&mut agg, &f.ok, &s, 20, now), Ok(20));
    assert_eq!(ask(&mut agg, &f.ok, &s, 4, now), Ok(4));
    let before = counted(&agg);
    assert_eq!((before.0, before.1, before.2), (1, 24, 24));
    let err = ask(&mut agg, &f.ok, &s, 1, now).unwrap_err();
    assert_eq!(err, IssueError::OverQuota { issued: 24, quota: 24 });
    assert_eq!(counted(&agg), before);
    // The next period has its own quota; the one after is not open yet.
    let next = TokenScope { period: TokenPeriod(s.period.0 + 1), ..s.clone() };
    assert_eq!(ask(&mut agg, &f.ok, &next, 24, now), Ok(24));
    let later = TokenScope { period: TokenPeriod(s.period.0 + 2), ..s.clone() };
    assert_eq!(ask(&mut agg, &f.ok, &later, 1, now).unwrap_err().code(), "period_not_open");
    // Withdrawals by the owner end the device's right to tokens from their instant (what
    // the revoked and expired devices gave also counted for the subject).
    for r in &f.receipts {
        agg.receive_withdrawal(&f.owner.withdraw(r, now, now).unwrap().to_bytes(), now).unwrap();
    }
    let before = counted(&agg);
    let err = ask(&mut agg, &f.ok, &next, 1, t(now.as_secs() + 1)).unwrap_err();
    assert_eq!(err.code(), "not_consented", "the policy is asked before the quota");
    assert_eq!(counted(&agg), before);
    drop(agg);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn a_restart_does_not_reset_a_quota() {
    let path = temp_db("restart");
    let now = t(T0 + 3_600);
    let s = scope(now);
    let ok = {
        let mut agg = open(&path);
        let f = enroll(&mut agg);
        assert_eq!(ask(&mut agg, &f.ok, &s, 20, now), Ok(20));
        f.ok
    };
    let mut agg = open(&path);
    let err = ask(&mut agg, &ok, &s, 5, now).unwrap_err();
    assert_eq!(err, IssueError::OverQuota { issued: 20, quota: 24 });
    assert_eq!(ask(&mut agg, &ok, &s, 4, now), Ok(4));
    drop(agg);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn issuance_is_logged_once_per_scope_and_period_as_counts_without_devices() {
    let path = temp_db("audit");
    let mut agg = open(&path);
    let owner = SubjectKey::from_bytes(&[3; 32]);
    let start = t(T0 - 30 * DAY);
    let devices: Vec<DeviceKey> = (0..3u8).map(|i| DeviceKey::from_bytes(&[40 + i; 32])).collect();
    for (i, d) in devices.iter().enumerate() {
        agg.receive_delegation(
            &owner.delegate(d.public_key(), start, None, start).unwrap().to_bytes(),
            start,
        )
        .unwrap();
        agg.receive_receipt(&receipt(&owner, d, T0 - 20 * DAY, 10 + i as u8).to_bytes(), start).unwrap();
    }
    let now = t(T0 + 3_600);
    let s = scope(now);
    for (d, n) in devices.iter().zip([5, 7, 24]) {
        assert_eq!(ask(&mut agg, d, &s, n, now), Ok(n));
    }
    // A second request of one device adds tokens, not a device.
    assert_eq!(ask(&mut agg, &devices[0], &s, 1, now), Ok(1));
    let issued = |agg: &Aggregator| {
        agg.store().audit_log().unwrap().store().events_of_kind(&[EventKind::TokensIssued]).unwrap()
    };
    assert!(issued(&agg).is_empty(), "nothing is logged while the period runs");
    // Still nothing at the last second of the period; one event once it is over.
    let end = s.period.end(DAY);
    assert_eq!(agg.log_token_issuance(t(end.as_secs() - 1)).unwrap(), 0);
    agg.purge(end).unwrap();
    let events = issued(&agg);
    assert_eq!(events.len(), 1);
    let AuditEvent::TokensIssued { recipients, purpose, period, tokens, devices: n, at } = &events[0].event
    else {
        panic!("{:?}", events[0]);
    };
    assert_eq!(
        (recipients.as_slice(), purpose, *period),
        ([id("calora")].as_slice(), &id("product-improvement"), s.period.0)
    );
    assert_eq!((*tokens, *n, *at), (37, 3, end));
    let leaf = events[0].leaf_bytes().unwrap();
    for d in &devices {
        let key = d.public_key().0;
        assert!(!leaf.windows(32).any(|w| w == key), "the event names no device");
    }
    // Logged once: the counts of that period are gone, and a later purge adds nothing.
    assert_eq!(counted(&agg).0, 0);
    agg.purge(t(end.as_secs() + 10 * DAY)).unwrap();
    assert_eq!(issued(&agg).len(), 1);
    drop(agg);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// A batch answered on several threads is answered as if its requests came one at a
/// time, in order: a device's later request sees its earlier ones counted.
#[test]
fn a_batch_is_answered_in_order_as_if_its_requests_came_one_at_a_time() {
    let path = temp_db("batch");
    let now = t(T0 + 3_600);
    let s = scope(now);
    let mut agg = open(&path);
    let f = enroll(&mut agg);
    let pk = agg.token_public_key(&s).unwrap();
    let mut rng = SeededRng::seed_from_u64(17);
    let asks = [(&f.ok, 20), (&f.stranger, 1), (&f.ok, 5), (&f.ok, 4), (&f.quiet, 1), (&f.ok, 1)];
    let (pending, requests): (Vec<_>, Vec<_>) =
        asks.iter().map(|(k, n)| PendingTokens::request(k, s.clone(), pk, *n, &mut rng).unwrap()).unzip();
    let answers = agg.issue_tokens_many(&requests, now, &mut rng).unwrap();
    let got: Vec<Result<usize, IssueError>> = answers
        .iter()
        .zip(&pending)
        .map(|(a, p)| a.clone().map(|r| p.finalize(&r).expect("each proof verifies").len()))
        .collect();
    assert_eq!(got[0], Ok(20));
    assert_eq!(got[1].as_ref().unwrap_err().code(), "not_enrolled");
    assert_eq!(got[2], Err(IssueError::OverQuota { issued: 20, quota: 24 }));
    assert_eq!(got[3], Ok(4));
    assert_eq!(got[4].as_ref().unwrap_err().code(), "not_consented");
    assert_eq!(got[5], Err(IssueError::OverQuota { issued: 24, quota: 24 }));
    assert_eq!(counted(&agg).1, 24, "only what was answered is counted");
    drop(agg);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

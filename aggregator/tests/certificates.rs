//! Admission control (docs/privacy.md, "Device certificates"): when the catalogue names
//! certifiers, a delegation is accepted, and tokens are issued, only for a key with a
//! device certificate in force by one of them; every refusal has its code and stores
//! nothing; an open catalogue behaves as before; a certifier removed from the catalogue
//! certifies nothing from then on; and the poisoning bound's `k` becomes the number of
//! certified keys an attacker holds — none, none accepted.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{
    CertificateError, CertifierKey, ConsentReceipt, DeviceKey, RECEIPT_VERSION, Scope, SignedReceipt,
    SubjectKey,
};
use confiance::envelope::AeadId;
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::token::{PendingTokens, TokenPeriod, TokenScope};
use confiance_aggregator::audit::{AuditEvent, LoggedEvent, verify_signed_facts};
use confiance_aggregator::issuer::{IssuancePolicy as _, IssueError, IssuerSecret, PolicyRefusal};
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::ledger::{EnrollError, Ledger, LedgerError};
use confiance_aggregator::service::{Aggregator, AggregatorConfig, ServiceError};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::id;

const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(s)
}

fn maker() -> CertifierKey {
    CertifierKey::from_bytes(&[0xc1; 32])
}

/// The example catalogue, trusting `certifiers` (none: the example itself).
fn catalogue(certifiers: &[&CertifierKey]) -> Catalogue {
    let toml = include_str!("../../examples/catalogue.toml");
    if certifiers.is_empty() {
        return Catalogue::from_toml_str(toml).unwrap();
    }
    let list: Vec<String> = certifiers.iter().map(|c| format!("\"{}\"", c.public_key())).collect();
    Catalogue::from_toml_str(&format!("{toml}\n[enrollment]\ncertifiers = [{}]\n", list.join(", "))).unwrap()
}

fn aggregator(catalogue: Catalogue) -> Aggregator {
    let mut rng = SeededRng::seed_from_u64(1);
    let mut keys = KeyStore::new(DAY);
    keys.generate(AeadId::ChaCha20Poly1305, Timestamp::EPOCH, t(T0 + 100 * DAY), &mut rng).unwrap();
    let mut agg = Aggregator::in_memory(catalogue, keys, AggregatorConfig::default()).unwrap();
    agg.enable_tokens(IssuerSecret::from_bytes([7; 32])).unwrap();
    agg
}

/// A receipt of `owner` for calora / product-improvement, signed by `dev`.
fn receipt(cat: &Catalogue, owner: &SubjectKey, dev: &DeviceKey, from: u64, nonce: u8) -> SignedReceipt {
    ConsentReceipt {
        version: RECEIPT_VERSION,
        catalogue_version: cat.version(),
        catalogue_digest: cat.digest(),
        subject: owner.subject_id(),
        subject_key: owner.public_key(),
        recipient: id("calora"),
        purpose: id("product-improvement"),
        scope: Scope::metrics([id::<confiance::ids::MetricId>("thermostat.mode")]),
        valid_from: t(from),
        valid_until: None,
        hold: "P90D".parse().unwrap(),
        issued_at: t(from),
        nonce: [nonce; 16],
        signer: dev.public_key(),
    }
    .sign(dev)
}

fn scope(now: Timestamp) -> TokenScope {
    TokenScope::new([id("calora")], id("product-improvement"), TokenPeriod::at(now, DAY))
}

/// Asks for `n` tokens for `key`: how many were issued, or the refusal.
fn ask(agg: &mut Aggregator, key: &DeviceKey, n: usize, now: Timestamp) -> Result<usize, IssueError> {
    let mut rng = SeededRng::seed_from_u64(u64::from(key.public_key().0[0]) + n as u64);
    let scope = scope(now);
    let pk = agg.token_public_key(&scope)?;
    let (pending, request) = PendingTokens::request(key, scope, pk, n, &mut rng).unwrap();
    let response = agg.issue_tokens(&request, now, &mut rng)?;
    Ok(pending.finalize(&response).expect("the proof verifies").len())
}

fn code(e: &ServiceError) -> &'static str {
    match e {
        ServiceError::Ledger(LedgerError::Enroll(e)) => e.code(),
        ServiceError::Ledger(LedgerError::Certificate(e)) => e.code(),
        ServiceError::Ledger(LedgerError::DuplicateCertificate(_)) => "duplicate_certificate",
        other => panic!("unexpected {other}"),
    }
}

/// The number of certificates and delegations stored, and the log's size: what a
/// refusal must leave as it was.
fn stored(agg: &Aggregator) -> (i64, i64, u64) {
    let c = agg.ledger().connection();
    let n = |table: &str| c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap();
    (n("ledger_certificate"), n("ledger_delegation"), agg.store().audit_log().unwrap().size())
}

#[test]
fn a_delegation_needs_a_certificate_of_its_device_and_each_bad_one_has_its_code() {
    let m = maker();
    let cat = catalogue(&[&m]);
    let mut agg = aggregator(cat);
    let (owner, dev, other) =
        (SubjectKey::from_bytes(&[1; 32]), DeviceKey::from_bytes(&[2; 32]), DeviceKey::from_bytes(&[3; 32]));
    let now = t(T0);
    let del = owner.delegate(dev.public_key(), t(T0 - DAY), None, t(T0 - DAY)).unwrap();

    let nothing = stored(&agg);
    let e = agg.receive_delegation(&del.to_bytes(), now).unwrap_err();
    assert_eq!(code(&e), "not_certified");
    assert_eq!(stored(&agg), nothing, "a refused delegation stores and logs nothing");

    let stranger = CertifierKey::from_bytes(&[0xee; 32]);
    let key = dev.public_key();
    let bad = [
        (stranger.certify(key, "t3", t(0), t(T0 + DAY)).unwrap().to_bytes(), "unknown_certifier"),
        (m.certify(key, "t3", t(0), now).unwrap().to_bytes(), "certificate_expired"),
        (m.certify(key, "t3", t(T0 + 1), t(T0 + DAY)).unwrap().to_bytes(), "certificate_not_yet_valid"),
        (
            {
                let mut b = m.certify(key, "t3", t(0), t(T0 + DAY)).unwrap().to_bytes();
                b[40] ^= 1; // the certified key
                b
            },
            "bad_signature",
        ),
        (b"not a certificate".to_vec(), "malformed_certificate"),
    ];
    for (bytes, want) in &bad {
        let e = agg.receive_certificate(bytes, now).unwrap_err();
        assert_eq!(code(&e), *want);
        assert_eq!(stored(&agg), nothing, "{want}: nothing stored or logged");
    }
    // A certificate of another key is a good certificate, but not this device's.
    agg.receive_certificate(&m.certify(other.public_key(), "t3", t(0), t(T0 + DAY)).unwrap().to_bytes(), now)
        .unwrap();
    assert_eq!(code(&agg.receive_delegation(&del.to_bytes(), now).unwrap_err()), "not_certified");

    let good = m.certify(key, "t3", t(0), t(T0 + 365 * DAY)).unwrap();
    let id = agg.receive_certificate(&good.to_bytes(), now).unwrap();
    assert_eq!(id, good.id());
    assert_eq!(code(&agg.receive_certificate(&good.to_bytes(), now).unwrap_err()), "duplicate_certificate");
    agg.receive_delegation(&del.to_bytes(), now).unwrap();
    // Logged: the two certificates (their ids and certifier), then the delegation.
    let log = agg.store().audit_log().unwrap().export(agg.store().audit_log().unwrap().size()).unwrap();
    let certified: Vec<_> = log
        .iter()
        .filter_map(|e| match &e.event {
            AuditEvent::DeviceCertified { certificate, certifier, .. } => Some((*certificate, *certifier)),
            _ => None,
        })
        .collect();
    assert_eq!(certified.len(), 2);
    assert_eq!(certified[1], (good.id(), m.public_key()));
    // The auditor re-verifies both from the certifier's key and finds every delegation certified.
    let facts = verify_signed_facts(agg.ledger(), &log, || Ok(Vec::new())).unwrap();
    assert_eq!((facts.certificates, facts.delegations, facts.uncertified_delegations), (2, 1, 0));
    // A certificate row edited in the database is caught.
    agg.ledger().connection().execute("UPDATE ledger_certificate SET not_after = not_after + 1", []).unwrap();
    let err = verify_signed_facts(agg.ledger(), &log, || Ok(Vec::new())).unwrap_err();
    assert!(err.contains("certificate row"), "{err}");
}

#[test]
fn tokens_need_a_certified_key_delegated_device_and_single_device_subject_alike() {
    let m = maker();
    let cat = catalogue(&[&m]);
    let mut agg = aggregator(cat.clone());
    let now = t(T0);
    let since = T0 - DAY;
    // A single-device subject: its receipt is accepted (consent is not gated), its token
    // request is not until its own key is certified.
    let solo = SubjectKey::from_bytes(&[4; 32]);
    let solo_dev = solo.to_device_key();
    agg.receive_receipt(&receipt(&cat, &solo, &solo_dev, since, 1).to_bytes(), t(since)).unwrap();
    assert_eq!(ask(&mut agg, &solo_dev, 2, now), Err(IssueError::Refused(PolicyRefusal::NotCertified)));
    let e = IssueError::Refused(PolicyRefusal::NotCertified);
    assert_eq!((e.code(), e.is_retryable()), ("not_certified", true));
    let future = m.certify(solo_dev.public_key(), "t3", t(T0 - 10), t(T0 + DAY)).unwrap();
    agg.receive_certificate(&future.to_bytes(), t(T0 - 5)).unwrap();
    assert_eq!(ask(&mut agg, &solo_dev, 2, now), Ok(2));
    // Past its certificate's end, the key gets no more.
    let later = t(T0 + DAY);
    let e = ask(&mut agg, &solo_dev, 1, later).unwrap_err();
    assert_eq!((e.code(), e.is_retryable()), ("certificate_expired", false));

    // A delegated device, certified then delegated, with its subject's consent.
    let (owner, dev) = (SubjectKey::from_bytes(&[5; 32]), DeviceKey::from_bytes(&[6; 32]));
    agg.receive_certificate(
        &m.certify(dev.public_key(), "t3", t(0), t(T0 + 365 * DAY)).unwrap().to_bytes(),
        now,
    )
    .unwrap();
    agg.receive_delegation(
        &owner.delegate(dev.public_key(), t(since), None, t(since)).unwrap().to_bytes(),
        now,
    )
    .unwrap();
    agg.receive_receipt(&receipt(&cat, &owner, &dev, since, 2).to_bytes(), now).unwrap();
    assert_eq!(ask(&mut agg, &dev, 24, now), Ok(24));
}

#[test]
fn an_open_catalogue_behaves_as_before() {
    let cat = catalogue(&[]);
    let mut agg = aggregator(cat.clone());
    let (owner, dev) = (SubjectKey::from_bytes(&[1; 32]), DeviceKey::from_bytes(&[2; 32]));
    let now = t(T0);
    // No certificate anywhere: the delegation is accepted and the device gets tokens.
    agg.receive_delegation(
        &owner.delegate(dev.public_key(), t(T0 - DAY), None, t(T0 - DAY)).unwrap().to_bytes(),
        now,
    )
    .unwrap();
    agg.receive_receipt(&receipt(&cat, &owner, &dev, T0 - DAY, 1).to_bytes(), now).unwrap();
    assert_eq!(ask(&mut agg, &dev, 24, now), Ok(24));
    assert_eq!(agg.ledger().certified(&dev.public_key(), now), Ok(()));
    // A certificate is refused (no certifier is trusted), and nothing is stored.
    let cert = maker().certify(dev.public_key(), "t3", t(0), t(T0 + DAY)).unwrap();
    let before = stored(&agg);
    assert_eq!(code(&agg.receive_certificate(&cert.to_bytes(), now).unwrap_err()), "unknown_certifier");
    assert_eq!(stored(&agg), before);
}

/// docs/privacy.md's poisoning bound, restated: `k` attackers each enroll a key of
/// their own (a single-device subject with a receipt it signs, and a device it
/// delegates) and ask for their quota and one more. With an open catalogue they get
/// `k × q` tokens; with certifiers, none: `k` is the number of *certified* keys.
#[test]
fn without_certified_keys_an_attacker_gets_no_token() {
    let k = 10u8;
    let m = maker();
    let now = t(T0);
    let since = T0 - DAY;
    for (certifiers, want_per_key) in [(vec![], 24usize), (vec![&m], 0)] {
        let cat = catalogue(&certifiers);
        let mut agg = aggregator(cat.clone());
        let mut issued = 0;
        let mut refusals = std::collections::BTreeSet::new();
        for i in 0..k {
            let solo = SubjectKey::from_bytes(&[100 + i; 32]);
            let solo_dev = solo.to_device_key();
            agg.receive_receipt(&receipt(&cat, &solo, &solo_dev, since, i).to_bytes(), now).unwrap();
            let dev = DeviceKey::from_bytes(&[200 + i; 32]);
            let del = solo.delegate(dev.public_key(), t(since), None, t(since)).unwrap();
            match agg.receive_delegation(&del.to_bytes(), now) {
                Ok(_) => assert!(certifiers.is_empty()),
                Err(e) => assert_eq!(code(&e), "not_certified"),
            }
            for key in [&solo_dev, &dev] {
                for n in [24, 1] {
                    match ask(&mut agg, key, n, now) {
                        Ok(got) => issued += got,
                        Err(e) => {
                            refusals.insert(e.code());
                        }
                    }
                }
            }
        }
        // Two keys per attacker when open (the self-subject's and its delegated device's).
        assert_eq!(issued, usize::from(k) * 2 * want_per_key, "certifiers: {}", certifiers.len());
        if certifiers.is_empty() {
            assert_eq!(refusals, ["over_quota"].into());
        } else {
            // The single-device subjects are enrolled but not certified; the devices are not enrolled.
            assert_eq!(refusals, ["not_certified", "not_enrolled"].into());
        }
    }
}

/// A certifier removed from the catalogue (a new catalogue adopted, as `confiance
/// identity adopt` does) certifies nothing from then on: its devices get no more
/// tokens; another certifier's still do. The rows are read back from the SQLite file.
#[test]
fn a_certifier_removed_from_the_catalogue_certifies_nothing_more() {
    let (m1, m2) = (maker(), CertifierKey::from_bytes(&[0xc2; 32]));
    let both = catalogue(&[&m1, &m2]);
    let dir = std::env::temp_dir().join(format!("confiance-certificates-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ledger.sqlite");
    let (a, b) = (DeviceKey::from_bytes(&[2; 32]).public_key(), DeviceKey::from_bytes(&[3; 32]).public_key());
    let owner = SubjectKey::from_bytes(&[1; 32]);
    let now = t(T0);
    {
        let mut ledger = Ledger::open(rusqlite::Connection::open(&path).unwrap(), both.clone()).unwrap();
        ledger.ingest_certificate(&m1.certify(a, "t3", t(0), t(T0 + DAY)).unwrap().to_bytes(), now).unwrap();
        ledger.ingest_certificate(&m2.certify(b, "t3", t(0), t(T0 + DAY)).unwrap().to_bytes(), now).unwrap();
        for d in [a, b] {
            ledger.ingest_delegation(&owner.delegate(d, t(0), None, t(0)).unwrap().to_bytes(), now).unwrap();
        }
        let contract = confiance::catalogue::LegalBasis::Contract;
        assert_eq!(
            (ledger.allows(&a, &scope(now), contract, now), ledger.allows(&b, &scope(now), contract, now)),
            (Ok(()), Ok(()))
        );
    }
    let only_m1 = catalogue(&[&m1]);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE ledger_meta SET value = ?1 WHERE key = 'catalogue'",
        [only_m1.digest().as_bytes().as_slice()],
    )
    .unwrap();
    let ledger = Ledger::open(conn, only_m1).unwrap();
    assert_eq!(ledger.certificate_count(), 2, "the certificates are still held, for the record");
    assert_eq!(ledger.devices(&owner.subject_id(), None).len(), 2, "and the delegations");
    let contract = confiance::catalogue::LegalBasis::Contract;
    assert_eq!(ledger.allows(&a, &scope(now), contract, now), Ok(()));
    assert_eq!(
        ledger.allows(&b, &scope(now), contract, now),
        Err(PolicyRefusal::Uncertified(CertificateError::UnknownCertifier))
    );
    assert_eq!(ledger.certified(&b, now), Err(EnrollError::Uncertified(CertificateError::UnknownCertifier)));
    // The auditor, with the new catalogue, finds `b`'s delegation no longer certified
    // (and both certificates still verifying from their certifiers' keys).
    let (ca, cb) =
        (m1.certify(a, "t3", t(0), t(T0 + DAY)).unwrap(), m2.certify(b, "t3", t(0), t(T0 + DAY)).unwrap());
    let events: Vec<LoggedEvent> = [(&ca, &m1), (&cb, &m2)]
        .iter()
        .enumerate()
        .map(|(i, (c, m))| LoggedEvent {
            seq: i as u64,
            event: AuditEvent::DeviceCertified { certificate: c.id(), certifier: m.public_key(), at: now },
        })
        .collect();
    let facts = verify_signed_facts(&ledger, &events, || Ok(Vec::new())).unwrap();
    assert_eq!((facts.certificates, facts.delegations, facts.uncertified_delegations), (2, 2, 1));
    let err = verify_signed_facts(&ledger, &events[..1], || Ok(Vec::new())).unwrap_err();
    assert!(err.contains("the ledger holds it, the log does not"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// On PostgreSQL, lazily loaded ledgers of two processes: a certificate one process
/// records is seen by the other's next check — read by key on demand, and caught up
/// by a refresh once the key is loaded — and a delegation is admitted across them.
/// Needs `CONFIANCE_TEST_POSTGRES` (`bash .ci/postgres -- …`); skipped, saying so, without.
#[cfg(feature = "postgres")]
#[test]
fn lazy_postgres_ledgers_see_each_others_certificates() {
    use std::io::Write as _;
    let Ok(url) = std::env::var("CONFIANCE_TEST_POSTGRES") else {
        let _ = writeln!(std::io::stderr(), "skipped: CONFIANCE_TEST_POSTGRES is unset");
        return;
    };
    let admin: postgres::Config = url.parse().unwrap();
    let mut c = admin.connect(postgres::NoTls).unwrap();
    c.batch_execute("DROP DATABASE IF EXISTS confiance_s_certificates WITH (FORCE)").unwrap();
    c.batch_execute("CREATE DATABASE confiance_s_certificates").unwrap();
    let db = format!("{}/confiance_s_certificates", url.rsplit_once('/').unwrap().0);
    let m = maker();
    let cat = catalogue(&[&m]);
    let mut one = Ledger::open_postgres_lazy(&db, cat.clone()).unwrap();
    let mut two = Ledger::open_postgres_lazy(&db, cat).unwrap();
    let now = t(T0);
    let (owner, a, b) =
        (SubjectKey::from_bytes(&[1; 32]), DeviceKey::from_bytes(&[2; 32]), DeviceKey::from_bytes(&[3; 32]));
    // `two` loads `b` before it is certified: not certified; `one` certifies it; `two`'s
    // refresh brings the certificate in.
    two.load_device(&b.public_key()).unwrap();
    assert_eq!(two.certified(&b.public_key(), now), Err(EnrollError::NotCertified));
    for key in [a.public_key(), b.public_key()] {
        let cert = m.certify(key, "t3", t(0), t(T0 + DAY)).unwrap();
        one.atomically(|l| l.ingest_certificate(&cert.to_bytes(), now)).unwrap();
    }
    assert!(two.refresh().unwrap());
    assert_eq!(two.certified(&b.public_key(), now), Ok(()));
    // `a` was never loaded by `two`: its delegation loads its certificates by key.
    let del = owner.delegate(a.public_key(), t(0), None, t(0)).unwrap();
    two.atomically(|l| l.ingest_delegation(&del.to_bytes(), now)).unwrap();
    // An uncertified device is refused there too, and nothing is written.
    let c3 = DeviceKey::from_bytes(&[4; 32]).public_key();
    let del3 = owner.delegate(c3, t(0), None, t(0)).unwrap();
    let e = two.atomically(|l| l.ingest_delegation(&del3.to_bytes(), now)).unwrap_err();
    assert!(matches!(e, LedgerError::Enroll(EnrollError::NotCertified)), "{e}");
    one.refresh().unwrap();
    one.load_subject(&owner.subject_id()).unwrap();
    assert_eq!(one.devices(&owner.subject_id(), None).len(), 1);
}

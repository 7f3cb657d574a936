//! Self-certifying subjects and enrolled devices: only the subject key, or a device key
//! it delegated (in force, not revoked), can give or withdraw consent in the subject's
//! name; every refusal has its own typed error and changes nothing; an admin override
//! is logged with its reason; and random enrolment/consent histories agree with a small
//! reference model.

use std::collections::BTreeMap;

use confiance::Timestamp;
use confiance::consent::{
    ConsentReceipt, ConsentState, DeviceKey, Grant, RECEIPT_VERSION, Scope, SignedReceipt, SubjectKey,
    Withdrawal,
};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{MetricId, PurposeId, RecipientId, SubjectId};
use confiance_aggregator::audit::{AuditEvent, EventKind};
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::ledger::{EnrollError, Ledger, LedgerError};
use confiance_aggregator::service::{Aggregator, AggregatorConfig, ServiceError};
use proptest::prelude::*;

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{catalogue, id};

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(s)
}

fn lab() -> (RecipientId, PurposeId, MetricId) {
    (id("lab-eu"), id("research"), id("thermostat.setpoint"))
}

/// An unsigned receipt of the subject of `owner` (lab-eu, research, setpoint), valid from
/// `issued` on, issued at `issued`.
fn terms(owner: &SubjectKey, issued: u64, nonce: u8) -> ConsentReceipt {
    let c = catalogue();
    let (r, p, m) = lab();
    ConsentReceipt {
        version: RECEIPT_VERSION,
        catalogue_version: c.version(),
        catalogue_digest: c.digest(),
        subject: owner.subject_id(),
        subject_key: owner.public_key(),
        recipient: r,
        purpose: p,
        scope: Scope::metrics([m]),
        valid_from: t(issued),
        valid_until: None,
        hold: "P30D".parse().unwrap(),
        issued_at: t(issued),
        nonce: [nonce; 16],
        signer: owner.public_key().as_device_key(),
    }
}

fn allowed(l: &Ledger, s: &SubjectId, at: u64) -> bool {
    let (r, p, m) = lab();
    l.check_at(&r, &m, &p, s, t(at), None).allowed()
}

fn stats(l: &Ledger) -> String {
    format!(
        "{:?} {:?}",
        l.stats(),
        l.subject_access(&SubjectKey::from_bytes(&[1; 32]).subject_id(), t(0), None)
    )
}

#[test]
fn a_receipt_for_s_signed_by_any_key_s_did_not_delegate_is_refused() {
    let mut l = Ledger::in_memory(catalogue()).unwrap();
    let (owner, other_owner) = (SubjectKey::from_bytes(&[1; 32]), SubjectKey::from_bytes(&[2; 32]));
    let (dev, foreign_dev, stranger) = (
        DeviceKey::from_bytes(&[11; 32]),
        DeviceKey::from_bytes(&[12; 32]),
        DeviceKey::from_bytes(&[13; 32]),
    );
    // `dev` is S's from 100 to 1000; `foreign_dev` is T's.
    l.ingest_delegation(
        &owner.delegate(dev.public_key(), t(100), Some(t(1_000)), t(100)).unwrap().to_bytes(),
        t(100),
    )
    .unwrap();
    l.ingest_delegation(
        &other_owner.delegate(foreign_dev.public_key(), t(0), None, t(0)).unwrap().to_bytes(),
        t(100),
    )
    .unwrap();
    let before = stats(&l);
    let cases: Vec<(&str, SignedReceipt, EnrollError)> = vec![
        ("a fresh key", terms(&owner, 500, 1).sign(&stranger), EnrollError::NotEnrolled),
        ("another subject's device", terms(&owner, 500, 2).sign(&foreign_dev), EnrollError::NotEnrolled),
        (
            "another subject's own key",
            terms(&owner, 500, 3).sign(&other_owner.to_device_key()),
            EnrollError::NotEnrolled,
        ),
        (
            "S's device before its delegation",
            terms(&owner, 50, 4).sign(&dev),
            EnrollError::DelegationNotYetValid,
        ),
        (
            "S's device after its delegation",
            terms(&owner, 1_000, 5).sign(&dev),
            EnrollError::DelegationExpired,
        ),
    ];
    for (what, receipt, expected) in cases {
        let err = l.ingest_receipt(&receipt.to_bytes(), t(1_500)).unwrap_err();
        assert!(matches!(err, LedgerError::Enroll(e) if e == expected), "{what}: {err:?}");
        assert_eq!(stats(&l), before, "{what} changed the ledger");
    }
    assert!(!allowed(&l, &owner.subject_id(), 600));
    // The subject key itself, and the delegated device in its window, are accepted.
    l.ingest_receipt(&terms(&owner, 500, 6).sign(&dev).to_bytes(), t(1_500)).unwrap();
    l.ingest_receipt(&terms(&owner, 600, 7).sign_by_subject(&owner).to_bytes(), t(1_500)).unwrap();
    assert!(allowed(&l, &owner.subject_id(), 600));
}

#[test]
fn a_withdrawal_by_the_subject_key_ends_a_receipt_a_delegated_device_gave() {
    let mut rng = SeededRng::seed_from_u64(3);
    let c = catalogue();
    let mut l = Ledger::in_memory(c.clone()).unwrap();
    let owner = SubjectKey::generate(&mut rng);
    let key = DeviceKey::generate(&mut rng);
    let delegation = owner.delegate(key.public_key(), t(0), None, t(0)).unwrap();
    l.ingest_delegation(&delegation.to_bytes(), t(10)).unwrap();
    let mut device = ConsentState::delegated(key, delegation).unwrap();
    let (r, p, m) = lab();
    let grant = Grant {
        recipient: r,
        purpose: p,
        scope: Scope::metrics([m]),
        valid_from: t(100),
        valid_until: None,
        hold: "P30D".parse().unwrap(),
    };
    let receipt = device.give(&c, grant, t(100), &mut rng).unwrap();
    assert_eq!(receipt.receipt().subject, owner.subject_id());
    l.ingest_receipt(&receipt.to_bytes(), t(100)).unwrap();
    assert!(allowed(&l, &owner.subject_id(), 400));
    // The owner's phone withdraws from 500; the device learns of it.
    let w = owner.withdraw(&receipt, t(500), t(500)).unwrap();
    l.ingest_withdrawal(&w.to_bytes(), t(510)).unwrap();
    assert!(allowed(&l, &owner.subject_id(), 499));
    assert!(!allowed(&l, &owner.subject_id(), 500));
    device.note_withdrawal(&w).unwrap();
    assert_eq!(device.get(&receipt.id()).unwrap().withdrawn_at, Some(t(500)));
    // A stranger's key cannot withdraw for the subject, even with the right subject key.
    let stranger = DeviceKey::from_bytes(&[99; 32]);
    let r2 = terms(&owner, 600, 1).sign_by_subject(&owner);
    l.ingest_receipt(&r2.to_bytes(), t(600)).unwrap();
    let forged = Withdrawal {
        version: RECEIPT_VERSION,
        receipt: r2.id(),
        subject: owner.subject_id(),
        subject_key: owner.public_key(),
        at: t(700),
        issued_at: t(700),
        signer: stranger.public_key(),
    }
    .sign(&stranger);
    let err = l.ingest_withdrawal(&forged.to_bytes(), t(700)).unwrap_err();
    assert!(matches!(err, LedgerError::Enroll(EnrollError::NotEnrolled)), "{err:?}");
    assert!(allowed(&l, &owner.subject_id(), 800));
}

#[test]
fn a_revoked_device_is_refused_after_its_revocation_and_kept_before() {
    let mut l = Ledger::in_memory(catalogue()).unwrap();
    let owner = SubjectKey::from_bytes(&[1; 32]);
    let dev = DeviceKey::from_bytes(&[11; 32]);
    l.ingest_delegation(&owner.delegate(dev.public_key(), t(0), None, t(0)).unwrap().to_bytes(), t(0))
        .unwrap();
    // Before the revocation: accepted.
    let before = terms(&owner, 100, 1).sign(&dev);
    l.ingest_receipt(&before.to_bytes(), t(100)).unwrap();
    // Lost on day 1000: the owner revokes it from then.
    l.ingest_revocation(&owner.revoke(dev.public_key(), t(1_000), t(1_000)).to_bytes(), t(1_000)).unwrap();
    let snapshot = stats(&l);
    // After: refused, including one backdated to before the revocation by the thief.
    for (what, issued, nonce) in [("after", 1_200, 2), ("backdated", 900, 3)] {
        let r = terms(&owner, issued, nonce).sign(&dev);
        let err = l.ingest_receipt(&r.to_bytes(), t(1_300)).unwrap_err();
        assert!(matches!(err, LedgerError::Enroll(EnrollError::DelegationRevoked)), "{what}: {err:?}");
        assert_eq!(stats(&l), snapshot, "{what} changed the ledger");
    }
    // A revoked key's withdrawals are refused too, and it is never delegated again.
    let w = Withdrawal {
        version: RECEIPT_VERSION,
        receipt: before.id(),
        subject: owner.subject_id(),
        subject_key: owner.public_key(),
        at: t(1_100),
        issued_at: t(1_100),
        signer: dev.public_key(),
    }
    .sign(&dev);
    assert!(matches!(
        l.ingest_withdrawal(&w.to_bytes(), t(1_100)),
        Err(LedgerError::Enroll(EnrollError::DelegationRevoked))
    ));
    let again = owner.delegate(dev.public_key(), t(2_000), None, t(2_000)).unwrap();
    assert!(matches!(
        l.ingest_delegation(&again.to_bytes(), t(2_000)),
        Err(LedgerError::Enroll(EnrollError::DelegationRevoked))
    ));
    assert!(matches!(
        l.ingest_revocation(&owner.revoke(dev.public_key(), t(1_000), t(1_500)).to_bytes(), t(1_500)),
        Err(LedgerError::AlreadyRevoked)
    ));
    // The receipt given before stays, and subject access shows the device and its revocation.
    assert!(allowed(&l, &owner.subject_id(), 5_000));
    let access = l.subject_access(&owner.subject_id(), t(5_000), None);
    assert_eq!(access.devices.len(), 1);
    assert_eq!((access.devices[0].device, access.devices[0].revoked_at), (dev.public_key(), Some(t(1_000))));
    // As known before the revocation arrived, it was not revoked.
    assert_eq!(l.subject_access(&owner.subject_id(), t(5_000), Some(t(999))).devices[0].revoked_at, None);
    // Only the subject key revokes: another subject's revocation of the key is refused.
    let other = SubjectKey::from_bytes(&[2; 32]);
    let dev2 = DeviceKey::from_bytes(&[12; 32]);
    l.ingest_delegation(&owner.delegate(dev2.public_key(), t(0), None, t(0)).unwrap().to_bytes(), t(10))
        .unwrap();
    assert!(matches!(
        l.ingest_revocation(&other.revoke(dev2.public_key(), t(10), t(10)).to_bytes(), t(10)),
        Err(LedgerError::Enroll(EnrollError::NotEnrolled))
    ));
    // A device key is delegated by one subject only.
    assert!(matches!(
        l.ingest_delegation(&other.delegate(dev2.public_key(), t(0), None, t(0)).unwrap().to_bytes(), t(10)),
        Err(LedgerError::DeviceEnrolledElsewhere)
    ));
}

/// An in-memory aggregator (key set from `seed`) with one subject, key `[1; 32]`, that
/// delegated one device, key `[11; 32]`, from t = 0.
fn owner_with_one_device(seed: u64) -> (Aggregator, SubjectKey, DeviceKey) {
    let mut rng = SeededRng::seed_from_u64(seed);
    let mut keys = KeyStore::new(7 * 86_400);
    keys.generate(confiance::envelope::AeadId::ChaCha20Poly1305, t(0), Timestamp::MAX, &mut rng).unwrap();
    let mut agg = Aggregator::in_memory(catalogue(), keys, AggregatorConfig::default()).unwrap();
    let owner = SubjectKey::from_bytes(&[1; 32]);
    let dev = DeviceKey::from_bytes(&[11; 32]);
    agg.receive_delegation(&owner.delegate(dev.public_key(), t(0), None, t(0)).unwrap().to_bytes(), t(0))
        .unwrap();
    (agg, owner, dev)
}

/// A revocation signed with an `at` still to come (a sale planned for later) takes effect
/// when it reaches the ledger, not later: what arrives after it is refused, the device
/// gets no tokens, and an override that closes the subject leaves it no window. Before,
/// the device kept speaking for its subject until the `at` it was given, and the owner
/// could not revoke it sooner (`already_revoked`).
#[test]
fn a_revocation_dated_in_the_future_takes_effect_when_it_reaches_the_ledger() {
    let (mut agg, owner, dev) = owner_with_one_device(9);
    // Signed and posted on day 1000, dated day 5000.
    agg.receive_revocation(&owner.revoke(dev.public_key(), t(5_000), t(1_000)).to_bytes(), t(1_000)).unwrap();
    let l = agg.ledger();
    assert_eq!(l.enrolled_device(&dev.public_key(), t(1_000)), Err(EnrollError::DelegationRevoked));
    assert_eq!(l.enrolled_device(&dev.public_key(), t(999)), Ok(owner.subject_id()));
    let access = l.subject_access(&owner.subject_id(), t(2_000), None);
    assert_eq!(access.devices[0].revoked_at, Some(t(1_000)));
    let logged =
        agg.store().audit_log().unwrap().store().events_of_kind(&[EventKind::DeviceRevoked]).unwrap();
    assert!(
        matches!(logged[..], [ref e] if matches!(e.event, AuditEvent::DeviceRevoked { at, .. } if at == t(1_000)))
    );
    // What the device signs afterwards, whatever its `issued_at`, is refused.
    for (issued, nonce) in [(1_100, 2), (900, 3)] {
        let r = terms(&owner, issued, nonce).sign(&dev);
        assert!(matches!(
            agg.receive_receipt(&r.to_bytes(), t(1_200)),
            Err(ServiceError::Ledger(LedgerError::Enroll(EnrollError::DelegationRevoked)))
        ));
    }
    // The subject closed by an admin: its device speaks for nobody, now or before day 5000.
    agg.admin_override(&owner.subject_id(), "ticket 12: subject key lost", t(1_500), t(1_500)).unwrap();
    assert_eq!(
        agg.ledger().enrolled_device(&dev.public_key(), t(1_600)),
        Err(EnrollError::DelegationRevoked)
    );
}

#[test]
fn an_admin_override_is_logged_with_its_reason_and_closes_the_subject() {
    let (mut agg, owner, dev) = owner_with_one_device(8);
    let a = terms(&owner, 100, 1).sign(&dev);
    let b = terms(&owner, 200, 2).sign_by_subject(&owner);
    agg.receive_receipt(&a.to_bytes(), t(100)).unwrap();
    agg.receive_receipt(&b.to_bytes(), t(200)).unwrap();
    let s = owner.subject_id();
    // No reason, no override; nothing changes.
    for reason in ["", "   "] {
        assert!(matches!(
            agg.admin_override(&s, reason, t(1_000), t(1_000)),
            Err(ServiceError::Ledger(LedgerError::BadReason))
        ));
    }
    let long = "x".repeat(confiance_aggregator::ledger::MAX_REASON_BYTES + 1);
    assert!(matches!(
        agg.admin_override(&s, &long, t(1_000), t(1_000)),
        Err(ServiceError::Ledger(LedgerError::BadReason))
    ));
    assert!(matches!(
        agg.admin_override(&SubjectId([5; 32]), "lost phone", t(1_000), t(1_000)),
        Err(ServiceError::Ledger(LedgerError::UnknownSubject(_)))
    ));
    // Nor one dated after it is made: it would close the subject at once but withdraw its
    // consents and revoke its devices only later (at the end of time: never).
    for at in [1_001, u64::MAX] {
        assert!(matches!(
            agg.admin_override(&s, "lost phone", t(at), t(1_000)),
            Err(ServiceError::Ledger(LedgerError::OverrideInFuture))
        ));
    }
    assert_eq!(agg.ledger().closed(&s), None);
    assert!(allowed(agg.ledger(), &s, 1_500));
    let logged_before =
        agg.store().audit_log().unwrap().store().events_of_kind(&[EventKind::AdminOverride]).unwrap();
    assert!(logged_before.is_empty());

    let reason = "ticket 4711: owner lost the phone holding the subject key; identity checked in shop";
    let withdrawn = agg.admin_override(&s, reason, t(1_000), t(1_005)).unwrap();
    assert_eq!(withdrawn.len(), 2);
    assert!(allowed(agg.ledger(), &s, 999));
    assert!(!allowed(agg.ledger(), &s, 1_000));
    let logged =
        agg.store().audit_log().unwrap().store().events_of_kind(&[EventKind::AdminOverride]).unwrap();
    assert_eq!(logged.len(), 1);
    match &logged[0].event {
        AuditEvent::AdminOverride { reason: r, receipts, at } => {
            assert_eq!(r, reason);
            assert_eq!(*at, t(1_000));
            let mut expect = vec![a.id(), b.id()];
            expect.sort();
            let mut got = receipts.clone();
            got.sort();
            assert_eq!(got, expect);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(agg.ledger().closed(&s), Some((t(1_000), reason)));
    // Closed: the lost key (or its devices) can give nothing more, and no second override.
    for r in [terms(&owner, 2_000, 3).sign_by_subject(&owner), terms(&owner, 2_000, 4).sign(&dev)] {
        assert!(matches!(
            agg.receive_receipt(&r.to_bytes(), t(2_000)),
            Err(ServiceError::Ledger(LedgerError::Enroll(EnrollError::SubjectClosed)))
        ));
    }
    assert_eq!(
        agg.ledger().enrolled_device(&dev.public_key(), t(2_000)),
        Err(EnrollError::DelegationRevoked)
    );
    assert!(agg.admin_override(&s, reason, t(3_000), t(3_000)).is_err());
    // The owner starts again under a new subject key (and a new device key).
    let (owner2, dev2) = (SubjectKey::from_bytes(&[3; 32]), DeviceKey::from_bytes(&[13; 32]));
    agg.receive_delegation(
        &owner2.delegate(dev2.public_key(), t(2_000), None, t(2_000)).unwrap().to_bytes(),
        t(2_000),
    )
    .unwrap();
    agg.receive_receipt(&terms(&owner2, 2_100, 1).sign(&dev2).to_bytes(), t(2_100)).unwrap();
    assert!(allowed(agg.ledger(), &owner2.subject_id(), 2_200));
}

#[test]
fn enrollment_survives_a_reopen() {
    let dir = std::env::temp_dir().join(format!("confiance-enroll-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ledger.sqlite");
    let owner = SubjectKey::from_bytes(&[1; 32]);
    let (d1, d2) = (DeviceKey::from_bytes(&[11; 32]), DeviceKey::from_bytes(&[12; 32]));
    let answers = |l: &Ledger| {
        (
            l.enrolled_device(&d1.public_key(), t(50)),
            l.enrolled_device(&d1.public_key(), t(600)),
            l.enrolled_device(&d2.public_key(), t(50)),
            l.subject_access(&owner.subject_id(), t(50), None),
            l.closed(&owner.subject_id()).map(|(a, r)| (a, r.to_owned())),
        )
    };
    let before = {
        let mut l = Ledger::open(rusqlite::Connection::open(&path).unwrap(), catalogue()).unwrap();
        for d in [&d1, &d2] {
            l.ingest_delegation(&owner.delegate(d.public_key(), t(0), None, t(0)).unwrap().to_bytes(), t(0))
                .unwrap();
        }
        l.ingest_revocation(&owner.revoke(d1.public_key(), t(500), t(500)).to_bytes(), t(500)).unwrap();
        l.ingest_receipt(&terms(&owner, 10, 1).sign(&d2).to_bytes(), t(10)).unwrap();
        l.override_subject(&owner.subject_id(), "lost key", t(700), t(700)).unwrap();
        answers(&l)
    };
    let l = Ledger::open(rusqlite::Connection::open(&path).unwrap(), catalogue()).unwrap();
    assert_eq!(answers(&l), before);
    assert_eq!(before.1, Err(EnrollError::DelegationRevoked));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// Property test: random enrolment/consent histories against a reference model.

#[derive(Clone, Copy, Debug)]
enum Signer {
    Subject,
    Device(usize),
    Outsider,
}

#[derive(Clone, Debug)]
enum Op {
    Delegate { subject: usize, device: usize, from: u64, len: Option<u64> },
    Revoke { subject: usize, device: usize, back: u64 },
    Give { subject: usize, signer: Signer, back: u64 },
    Withdraw { receipt: usize, signer: Signer },
}

const SUBJECTS: usize = 2;
const DEVICES: usize = 3;

fn op() -> impl Strategy<Value = Op> {
    let signer = prop_oneof![
        2 => Just(Signer::Subject),
        5 => (0..DEVICES).prop_map(Signer::Device),
        1 => Just(Signer::Outsider),
    ];
    prop_oneof![
        3 => (0..SUBJECTS, 0..DEVICES, 0u64..3_000, proptest::option::of(1u64..2_000))
            .prop_map(|(subject, device, from, len)| Op::Delegate { subject, device, from, len }),
        1 => (0..SUBJECTS, 0..DEVICES, 0u64..300).prop_map(|(subject, device, back)| Op::Revoke { subject, device, back }),
        5 => (0..SUBJECTS, signer.clone(), 0u64..300).prop_map(|(subject, signer, back)| Op::Give { subject, signer, back }),
        2 => (0usize..20, signer).prop_map(|(receipt, signer)| Op::Withdraw { receipt, signer }),
    ]
}

/// The reference: plain vectors and the rules of the trust model, written out.
#[derive(Default)]
struct Model {
    /// Per device: its subject, delegations (from, until) and revocation instant.
    devices: BTreeMap<usize, (usize, Vec<(u64, u64)>, Option<u64>)>,
    /// Accepted receipts: (subject, valid_from, withdrawn_at).
    receipts: Vec<(usize, u64, Option<u64>)>,
}

impl Model {
    fn authorize(&self, subject: usize, signer: Signer, issued: u64, now: u64) -> Result<(), &'static str> {
        let d = match signer {
            Signer::Subject => return Ok(()),
            Signer::Outsider => return Err("not_enrolled"),
            Signer::Device(d) => d,
        };
        let Some((s, dels, revoked)) = self.devices.get(&d) else { return Err("not_enrolled") };
        if *s != subject {
            return Err("not_enrolled");
        }
        if revoked.is_some_and(|r| r <= issued.max(now)) {
            return Err("delegation_revoked");
        }
        if dels.iter().any(|&(a, b)| a <= issued && issued < b) {
            return Ok(());
        }
        Err(if dels.iter().any(|&(_, b)| b <= issued) {
            "delegation_expired"
        } else {
            "delegation_not_yet_valid"
        })
    }

    fn enrolled(&self, device: usize, at: u64) -> Result<usize, &'static str> {
        let Some((s, dels, revoked)) = self.devices.get(&device) else { return Err("not_enrolled") };
        if revoked.is_some_and(|r| r <= at) {
            return Err("delegation_revoked");
        }
        if dels.iter().any(|&(a, b)| a <= at && at < b) {
            return Ok(*s);
        }
        Err(if dels.iter().any(|&(_, b)| b <= at) {
            "delegation_expired"
        } else {
            "delegation_not_yet_valid"
        })
    }
}

fn code(e: &LedgerError) -> &'static str {
    match e {
        LedgerError::Enroll(e) => e.code(),
        LedgerError::DeviceEnrolledElsewhere => "device_enrolled_elsewhere",
        LedgerError::AlreadyRevoked => "already_revoked",
        LedgerError::AlreadyWithdrawn => "already_withdrawn",
        other => panic!("unexpected refusal {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Every delegation, revocation, receipt and withdrawal is accepted or refused (with
    /// the same code) as the reference model says; afterwards `check` and
    /// `enrolled_device` agree with it at every instant probed, and subject access lists
    /// each subject's devices.
    #[test]
    fn histories_agree_with_the_reference(ops in proptest::collection::vec(op(), 1..40)) {
        let subjects: Vec<SubjectKey> = (0..SUBJECTS).map(|i| SubjectKey::from_bytes(&[i as u8 + 1; 32])).collect();
        let devices: Vec<DeviceKey> = (0..DEVICES).map(|i| DeviceKey::from_bytes(&[i as u8 + 11; 32])).collect();
        let outsider = DeviceKey::from_bytes(&[99; 32]);
        let mut l = Ledger::in_memory(catalogue()).unwrap();
        let mut m = Model::default();
        let mut given: Vec<(usize, SignedReceipt)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let now = 1_000 + 100 * i as u64;
            let key = |signer: Signer, subject: usize| match signer {
                Signer::Subject => subjects[subject].to_device_key(),
                Signer::Device(d) => DeviceKey::from_bytes(&devices[d].to_bytes()),
                Signer::Outsider => DeviceKey::from_bytes(&outsider.to_bytes()),
            };
            match op.clone() {
                Op::Delegate { subject, device, from, len } => {
                    let until = len.map(|n| from + n);
                    let d = subjects[subject].delegate(devices[device].public_key(), t(from), until.map(t), t(now)).unwrap();
                    let got = l.ingest_delegation(&d.to_bytes(), t(now)).map(|_| ()).map_err(|e| code(&e));
                    let expect = match m.devices.get(&device) {
                        Some((s, _, _)) if *s != subject => Err("device_enrolled_elsewhere"),
                        Some((_, _, Some(_))) => Err("delegation_revoked"),
                        _ => Ok(()),
                    };
                    prop_assert_eq!(got, expect, "{:?}", op);
                    if got.is_ok() {
                        m.devices.entry(device).or_insert((subject, Vec::new(), None)).1.push((from, until.unwrap_or(u64::MAX)));
                    }
                }
                Op::Revoke { subject, device, back } => {
                    let at = now - back;
                    let r = subjects[subject].revoke(devices[device].public_key(), t(at), t(now));
                    let got = l.ingest_revocation(&r.to_bytes(), t(now)).map(|_| ()).map_err(|e| code(&e));
                    let expect = match m.devices.get(&device) {
                        Some((s, _, _)) if *s != subject => Err("not_enrolled"),
                        None => Err("not_enrolled"),
                        Some((_, _, Some(_))) => Err("already_revoked"),
                        Some(_) => Ok(()),
                    };
                    prop_assert_eq!(got, expect, "{:?}", op);
                    if got.is_ok() && let Some(e) = m.devices.get_mut(&device) {
                        e.2 = Some(at);
                    }
                }
                Op::Give { subject, signer, back } => {
                    let issued = now - back;
                    let r = terms(&subjects[subject], issued, i as u8).sign(&key(signer, subject));
                    let got = l.ingest_receipt(&r.to_bytes(), t(now)).map(|_| ()).map_err(|e| code(&e));
                    let expect = m.authorize(subject, signer, issued, now);
                    prop_assert_eq!(got, expect, "{:?}", op);
                    if got.is_ok() {
                        m.receipts.push((subject, issued, None));
                        given.push((m.receipts.len() - 1, r));
                    }
                }
                Op::Withdraw { receipt, signer } => {
                    let Some((mi, r)) = given.get(receipt % given.len().max(1)).cloned() else { continue };
                    let subject = m.receipts[mi].0;
                    let owner = &subjects[subject];
                    let w = Withdrawal {
                        version: RECEIPT_VERSION,
                        receipt: r.id(),
                        subject: owner.subject_id(),
                        subject_key: owner.public_key(),
                        at: t(now),
                        issued_at: t(now),
                        signer: owner.public_key().as_device_key(),
                    }
                    .sign(&key(signer, subject));
                    let got = l.ingest_withdrawal(&w.to_bytes(), t(now)).map(|_| ()).map_err(|e| code(&e));
                    let expect = m.authorize(subject, signer, now, now).and_then(|()| {
                        if m.receipts[mi].2.is_some() { Err("already_withdrawn") } else { Ok(()) }
                    });
                    prop_assert_eq!(got, expect, "{:?}", op);
                    if got.is_ok() {
                        m.receipts[mi].2 = Some(now);
                    }
                }
            }
        }
        let end = 1_000 + 100 * ops.len() as u64 + 100;
        for at in (0..end).step_by(50) {
            for (s, key) in subjects.iter().enumerate() {
                let expect = m.receipts.iter().any(|&(rs, from, w)| rs == s && from <= at && w.is_none_or(|w| at < w));
                prop_assert_eq!(allowed(&l, &key.subject_id(), at), expect, "subject {} at {}", s, at);
            }
            for (d, key) in devices.iter().enumerate() {
                let got = l.enrolled_device(&key.public_key(), t(at)).map_err(|e| e.code());
                let expect = m.enrolled(d, at).map(|s| subjects[s].subject_id());
                prop_assert_eq!(got, expect, "device {} at {}", d, at);
            }
        }
        for (s, key) in subjects.iter().enumerate() {
            let listed = l.subject_access(&key.subject_id(), t(0), None).devices.len();
            let dels: usize = m.devices.values().filter(|(ms, _, _)| *ms == s).map(|(_, d, _)| d.len()).sum();
            prop_assert_eq!(listed, dels);
        }
    }
}

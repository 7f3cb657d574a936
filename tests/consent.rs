//! Consent receipts and withdrawals: signatures, strict decoding, catalogue checks, the
//! device's consent state and the access-window semantics of docs/design.md#access-window.

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{
    ConsentError, ConsentReceipt, ConsentState, DeviceKey, Grant, Message, Scope, SignedReceipt,
    SignedWithdrawal,
};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{CategoryId, DevicePublicKey, MetricId, PurposeId, RecipientId, SubjectId};
use confiance::retention::{RetentionTag, TagError};
use proptest::prelude::*;

fn catalogue() -> Catalogue {
    Catalogue::from_toml_str(include_str!("../examples/catalogue.toml")).unwrap()
}

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(s)
}

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

fn grant(recipient: &str, purpose: &str, metrics: &[&str], from: u64, until: Option<u64>) -> Grant {
    Grant {
        recipient: id(recipient),
        purpose: id(purpose),
        scope: Scope::metrics(metrics.iter().map(|m| id::<MetricId>(m))),
        valid_from: t(from),
        valid_until: until.map(t),
        hold: "P90D".parse().unwrap(),
    }
}

fn state(seed: u64) -> (ConsentState, SeededRng) {
    let mut rng = SeededRng::seed_from_u64(seed);
    (ConsentState::new(DeviceKey::generate(&mut rng)), rng)
}

fn signed(seed: u64) -> SignedReceipt {
    let (mut s, mut rng) = state(seed);
    s.give(
        &catalogue(),
        grant("lab-eu", "research", &["thermostat.setpoint"], 100, Some(10_000)),
        t(100),
        &mut rng,
    )
    .unwrap()
}

/// Re-signs `r` with `key`, bypassing the state's checks, to make receipts that are
/// well signed but wrong in substance.
fn forge(r: ConsentReceipt, key_seed: u64) -> Vec<u8> {
    let key = ed25519_sign_key(key_seed);
    let mut msg = b"confiance/receipt/v2\0".to_vec();
    let r = ConsentReceipt { signer: DevicePublicKey(key.verifying_key().to_bytes()), ..r };
    msg.extend_from_slice(&r.canonical_bytes());
    let sig = ed25519_dalek::Signer::sign(&key, &msg).to_bytes();
    let mut bytes = postcard::to_allocvec(&r).unwrap();
    bytes.extend_from_slice(&sig);
    bytes
}

fn ed25519_sign_key(seed: u64) -> ed25519_dalek::SigningKey {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&seed.to_le_bytes());
    ed25519_dalek::SigningKey::from_bytes(&b)
}

#[test]
fn receipt_round_trips_and_verifies() {
    let r = signed(1);
    let back = SignedReceipt::from_bytes(&r.to_bytes()).unwrap();
    assert_eq!(back, r);
    assert_eq!(back.id(), r.id());
    r.receipt().check_against(&catalogue()).unwrap();
    let forged = forge(r.receipt().clone(), 9);
    let ok = SignedReceipt::from_bytes(&forged).unwrap();
    assert_ne!(ok.id(), r.id(), "a different device key makes a different receipt id");
}

#[test]
fn every_flipped_bit_of_a_signed_receipt_is_rejected() {
    let bytes = signed(2).to_bytes();
    for bit in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(SignedReceipt::from_bytes(&b).is_err(), "bit {bit} flipped and still accepted");
    }
}

#[test]
fn every_flipped_bit_of_a_signed_withdrawal_is_rejected() {
    let (mut s, mut rng) = state(3);
    let r = s
        .give(
            &catalogue(),
            grant("calora", "product-improvement", &["thermostat.mode"], 0, None),
            t(0),
            &mut rng,
        )
        .unwrap();
    let w = s.withdraw(&r.id(), t(50)).unwrap();
    let bytes = w.to_bytes();
    assert_eq!(SignedWithdrawal::from_bytes(&bytes).unwrap(), w);
    w.check_for(&r).unwrap();
    for bit in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(SignedWithdrawal::from_bytes(&b).is_err(), "bit {bit}");
    }
}

#[test]
fn bad_receipts_get_their_own_errors() {
    let good = signed(4);
    let bytes = good.to_bytes();
    let body = good.receipt().clone();
    let c = catalogue();

    assert_eq!(SignedReceipt::from_bytes(&vec![1u8; 20_000]), Err(ConsentError::TooLarge(Message::Receipt)));
    assert_eq!(
        SignedReceipt::from_bytes(&bytes[..bytes.len() - 1]),
        Err(ConsentError::Malformed(Message::Receipt))
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(SignedReceipt::from_bytes(&trailing), Err(ConsentError::TrailingBytes(Message::Receipt)));
    let mut v1 = bytes.clone();
    v1[0] = 1;
    assert_eq!(SignedReceipt::from_bytes(&v1), Err(ConsentError::UnsupportedVersion(Message::Receipt, 1)));
    // A subject id that is not the hash of the subject key it carries.
    let foreign = forge(ConsentReceipt { subject: SubjectId([3; 32]), ..body.clone() }, 4);
    assert_eq!(SignedReceipt::from_bytes(&foreign), Err(ConsentError::SubjectKeyMismatch));
    let mut badsig = bytes.clone();
    let n = badsig.len();
    badsig[n - 40] ^= 0x10;
    assert_eq!(SignedReceipt::from_bytes(&badsig), Err(ConsentError::BadSignature));
    let inverted = forge(ConsentReceipt { valid_until: Some(t(50)), ..body.clone() }, 4);
    assert_eq!(SignedReceipt::from_bytes(&inverted), Err(ConsentError::InvertedValidity));
    let empty = forge(ConsentReceipt { scope: Scope::metrics([]), ..body.clone() }, 4);
    assert_eq!(SignedReceipt::from_bytes(&empty), Err(ConsentError::EmptyScope));

    let check =
        |r: ConsentReceipt| SignedReceipt::from_bytes(&forge(r, 4)).unwrap().receipt().check_against(&c);
    assert_eq!(
        check(ConsentReceipt { catalogue_version: 2, ..body.clone() }),
        Err(ConsentError::CatalogueMismatch)
    );
    assert_eq!(
        check(ConsentReceipt { recipient: id("acme"), ..body.clone() }),
        Err(ConsentError::UnknownRecipient(id("acme")))
    );
    assert_eq!(
        check(ConsentReceipt { purpose: id("marketing"), ..body.clone() }),
        Err(ConsentError::UnknownPurpose(id("marketing")))
    );
    assert_eq!(
        check(ConsentReceipt { scope: Scope::metrics([id("car.colour")]), ..body.clone() }),
        Err(ConsentError::UnknownMetric(id("car.colour")))
    );
    // lab-eu may not have the thermostat mode: the scope is wider than the catalogue allows.
    assert_eq!(
        check(ConsentReceipt { scope: Scope::metrics([id("thermostat.mode")]), ..body.clone() }),
        Err(ConsentError::ScopeTooWide(id("thermostat.mode")))
    );
    assert_eq!(
        check(ConsentReceipt {
            scope: Scope::categories([id::<CategoryId>("device-state")]),
            ..body.clone()
        }),
        Err(ConsentError::UnknownCategory(id("device-state")))
    );
    let mut bad_key = forge(body.clone(), 4);
    // Replace the device key with bytes that are not a curve point encoding.
    let key = ed25519_sign_key(4).verifying_key().to_bytes();
    let pos = bad_key.windows(32).position(|w| w == key).unwrap();
    bad_key[pos..pos + 32].copy_from_slice(&[0xff; 32]);
    assert!(matches!(
        SignedReceipt::from_bytes(&bad_key),
        Err(ConsentError::BadKey | ConsentError::BadSignature)
    ));
}

#[test]
fn give_refuses_terms_the_catalogue_does_not_allow_and_keeps_nothing() {
    let (mut s, mut rng) = state(5);
    let c = catalogue();
    let e = s.give(&c, grant("pulsa", "research", &["thermostat.setpoint"], 0, None), t(0), &mut rng);
    assert_eq!(e, Err(ConsentError::ScopeTooWide(id("thermostat.setpoint"))));
    let e = s.give(&c, grant("gridco", "service", &["thermostat.setpoint"], 0, None), t(0), &mut rng);
    assert_eq!(e, Err(ConsentError::ScopeTooWide(id("thermostat.setpoint"))));
    let e =
        s.give(&c, grant("gridco", "grid-balancing", &["thermostat.setpoint"], 10, Some(10)), t(0), &mut rng);
    assert_eq!(e, Err(ConsentError::InvertedValidity));
    assert_eq!(s.list().count(), 0);
}

#[test]
fn access_window_is_the_union_of_receipt_spans() {
    let (mut s, mut rng) = state(6);
    let c = catalogue();
    let (gridco, setpoint) = (id::<RecipientId>("gridco"), id::<MetricId>("thermostat.setpoint"));
    let a = s
        .give(&c, grant("gridco", "grid-balancing", &["thermostat.setpoint"], 100, Some(200)), t(0), &mut rng)
        .unwrap();
    s.give(
        &c,
        grant("gridco", "grid-balancing", &["thermostat.setpoint", "thermostat.mode"], 150, Some(300)),
        t(0),
        &mut rng,
    )
    .unwrap();
    let c3 = s
        .give(&c, grant("gridco", "research", &["thermostat.heating-minutes"], 500, None), t(0), &mut rng)
        .unwrap();
    s.give(&c, grant("gridco", "grid-balancing", &["thermostat.mode"], 400, Some(450)), t(0), &mut rng)
        .unwrap();
    assert_eq!(s.access_window(&c, &gridco, &setpoint), vec![(t(100), t(300))]);
    s.withdraw(&a.id(), t(120)).unwrap();
    assert_eq!(s.access_window(&c, &gridco, &setpoint), vec![(t(100), t(120)), (t(150), t(300))]);
    assert_eq!(s.withdraw(&a.id(), t(130)), Err(ConsentError::AlreadyWithdrawn));
    let hm = id::<MetricId>("thermostat.heating-minutes");
    assert_eq!(s.access_window(&c, &gridco, &hm), vec![(t(500), Timestamp::MAX)]);
    s.withdraw(&c3.id(), t(600)).unwrap();
    assert_eq!(s.access_window(&c, &gridco, &hm), vec![(t(500), t(600))]);
    assert_eq!(s.withdraw(&c3.id(), t(700)), Err(ConsentError::AlreadyWithdrawn));
    assert_eq!(s.list().count(), 4);
}

#[test]
fn narrowing_withdraws_and_regives_a_strict_subset() {
    let (mut s, mut rng) = state(7);
    let c = catalogue();
    let r = s
        .give(
            &c,
            grant("gridco", "grid-balancing", &["thermostat.setpoint", "thermostat.mode"], 0, Some(1_000)),
            t(0),
            &mut rng,
        )
        .unwrap();
    assert_eq!(
        s.narrow(
            &c,
            &r.id(),
            Scope::metrics([id("thermostat.setpoint"), id("thermostat.mode")]),
            t(10),
            &mut rng
        )
        .unwrap_err(),
        ConsentError::NotNarrower
    );
    let (w, n) = s.narrow(&c, &r.id(), Scope::metrics([id("thermostat.mode")]), t(10), &mut rng).unwrap();
    assert_eq!(w.withdrawal().receipt, r.id());
    assert_eq!(n.receipt().valid_from, t(10));
    assert_eq!(n.receipt().valid_until, Some(t(1_000)));
    let (g, sp, mode) =
        (id::<RecipientId>("gridco"), id::<MetricId>("thermostat.setpoint"), id("thermostat.mode"));
    assert_eq!(s.access_window(&c, &g, &sp), vec![(t(0), t(10))]);
    assert_eq!(s.access_window(&c, &g, &mode), vec![(t(0), t(1_000))]);
}

#[test]
fn tags_follow_consent_and_hold_arithmetic() {
    let (mut s, mut rng) = state(8);
    let c = catalogue();
    let (setpoint, gp) = (id::<MetricId>("thermostat.setpoint"), id::<PurposeId>("grid-balancing"));
    let gridco = id::<RecipientId>("gridco");
    let e = RetentionTag::for_statistic(&c, &s, &setpoint, &gp, [gridco.clone()], t(50));
    assert_eq!(e, Err(TagError::NoConsent(gridco.clone())));
    let r = s
        .give(&c, grant("gridco", "grid-balancing", &["thermostat.setpoint"], 0, Some(100)), t(0), &mut rng)
        .unwrap();
    let tag = RetentionTag::for_statistic(&c, &s, &setpoint, &gp, [gridco.clone()], t(50)).unwrap();
    assert_eq!(tag.deadline(t(86_400)).at, t(86_400 + 90 * 86_400), "receipt's P90D is shorter than P1Y");
    assert!(tag.receipt().is_none());
    tag.check(&c, &setpoint).unwrap();
    // Outside the validity, or to a recipient the catalogue does not allow, nothing.
    assert_eq!(
        RetentionTag::for_statistic(&c, &s, &setpoint, &gp, [gridco.clone()], t(100)),
        Err(TagError::NoConsent(gridco.clone()))
    );
    assert_eq!(
        RetentionTag::for_statistic(&c, &s, &setpoint, &gp, [id("pulsa")], t(50)),
        Err(TagError::RecipientNotAllowed(id("pulsa")))
    );
    assert_eq!(
        RetentionTag::for_statistic(&c, &s, &setpoint, &id("service"), [gridco.clone()], t(50)),
        Err(TagError::PurposeNotAllowed(id("service")))
    );
    assert_eq!(
        RetentionTag::for_record(&c, &s, &setpoint, &r.id(), t(50)),
        Err(TagError::WrongTrack(setpoint.clone()))
    );
    // A pseudonymous record: hold = min(receipt hold, catalogue max hold). The device
    // signs no receipt held longer than the metric's maximum.
    let odo = id::<MetricId>("car.odometer-km");
    let mut g = grant("voltis", "service", &["car.odometer-km"], 0, None);
    g.hold = "P10Y".parse().unwrap();
    assert_eq!(
        s.give(&c, g.clone(), t(0), &mut rng),
        Err(ConsentError::HoldTooLong { metric: odo.clone(), max: "P3Y".parse().unwrap() })
    );
    g.hold = "P2Y".parse().unwrap();
    let rr = s.give(&c, g, t(0), &mut rng).unwrap();
    let rec = RetentionTag::for_record(&c, &s, &odo, &rr.id(), t(1_000)).unwrap();
    assert_eq!(rec.hold().to_string(), "P2Y");
    assert_eq!(rec.receipt(), Some(&rr.id()));
    rec.check(&c, &odo).unwrap();
    assert_eq!(tag.check(&c, &odo), Err(TagError::PurposeNotAllowed(gp.clone())));
    s.withdraw(&rr.id(), t(2_000)).unwrap();
    assert_eq!(RetentionTag::for_record(&c, &s, &odo, &rr.id(), t(2_000)), Err(TagError::ReceiptNotActive));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn receipts_round_trip(seed in any::<u64>(), from in 0u64..1 << 40, len in proptest::option::of(1u64..1 << 30)) {
        let (mut s, mut rng) = state(seed);
        let r = s.give(
            &catalogue(),
            grant("lab-eu", "research", &["thermostat.setpoint", "watch.activity"], from, len.map(|l| from + l)),
            t(from),
            &mut rng,
        ).unwrap();
        prop_assert_eq!(SignedReceipt::from_bytes(&r.to_bytes()).unwrap(), r);
    }

    #[test]
    fn flipped_bit_rejected(seed in any::<u64>(), bit in any::<prop::sample::Index>()) {
        let bytes = signed(seed).to_bytes();
        let i = bit.index(bytes.len() * 8);
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        prop_assert!(SignedReceipt::from_bytes(&b).is_err());
    }
}

/// The worked example of docs/wire-format.md §7 (subject id, delegation, revocation,
/// withdrawal), reproduced byte for byte.
#[test]
fn consent_wire_example_matches_the_docs() {
    use confiance::consent::{SubjectKey, Withdrawal};
    use confiance::ids::ReceiptId;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let owner = SubjectKey::from_bytes(&[1; 32]);
    let device = DeviceKey::from_bytes(&[2; 32]);
    let t0 = t(1_764_460_800);
    let delegation = owner.delegate(device.public_key(), t0, None, t0).unwrap();
    let revocation = owner.revoke(device.public_key(), t(1_767_225_600), t(1_767_225_600));
    let withdrawal = Withdrawal {
        version: confiance::consent::RECEIPT_VERSION,
        receipt: ReceiptId([7; 32]),
        subject: owner.subject_id(),
        subject_key: owner.public_key(),
        at: t(1_765_000_000),
        issued_at: t(1_765_000_000),
        signer: device.public_key(),
    }
    .sign(&device);
    let doc = include_str!("../docs/wire-format.md").replace(['\n', ' '], "");
    for (what, bytes) in [
        ("subject public key", owner.public_key().0.to_vec()),
        ("subject id", owner.subject_id().0.to_vec()),
        ("device public key", device.public_key().0.to_vec()),
        ("delegation", delegation.to_bytes()),
        ("revocation", revocation.to_bytes()),
        ("withdrawal", withdrawal.to_bytes()),
    ] {
        assert!(doc.contains(&hex(&bytes)), "docs/wire-format.md lacks the {what} {}", hex(&bytes));
    }
    // And they decode and verify.
    assert_eq!(confiance::consent::SignedDelegation::from_bytes(&delegation.to_bytes()).unwrap(), delegation);
    assert_eq!(confiance::consent::SignedRevocation::from_bytes(&revocation.to_bytes()).unwrap(), revocation);
    assert_eq!(SignedWithdrawal::from_bytes(&withdrawal.to_bytes()).unwrap(), withdrawal);
}

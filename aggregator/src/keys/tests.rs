#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use super::*;
use confiance::envelope::{self, HeaderFields, PublicKey};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng as _;

const GRACE: u64 = 3_600;
const DIGEST: CatalogueDigest = CatalogueDigest([0x11; 32]);

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(s)
}

fn fields(digest: CatalogueDigest) -> HeaderFields {
    HeaderFields { catalogue_digest: digest, time_bucket: t(1_000) }
}

/// A store with key 0 over [1000, 2000) and key 1 over [2000, 3000).
fn store(rng: &mut ChaCha20Rng) -> (KeyStore, KeyConfig, KeyConfig) {
    let mut store = KeyStore::new(GRACE);
    let a = store.generate(AeadId::ChaCha20Poly1305, t(1_000), t(2_000), rng).unwrap();
    let b = store.generate(AeadId::ChaCha20Poly1305, t(2_000), t(3_000), rng).unwrap();
    assert_eq!((a.id, b.id), (KeyId(0), KeyId(1)));
    (store, a, b)
}

#[test]
fn opens_for_active_and_grace_keys_only() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (store, a, b) = store(&mut rng);
    let frame = envelope::seal(&a, &fields(DIGEST), b"reports", &mut rng).unwrap();
    let opened = store.open(&frame, t(1_500), &DIGEST).unwrap();
    assert_eq!(opened.plaintext, b"reports");
    assert_eq!(opened.header.key_id, a.id);
    assert_eq!(opened.envelope_id, EnvelopeId::of(&frame));
    assert_eq!(opened.key_state, KeyState::Active);
    assert_eq!(store.open(&frame, t(2_000 + GRACE - 1), &DIGEST).unwrap().key_state, KeyState::Grace);
    assert_eq!(store.open(&frame, t(2_000 + GRACE), &DIGEST), Err(OpenError::KeyExpired(a.id)));
    assert_eq!(store.open(&frame, t(999), &DIGEST), Err(OpenError::KeyPending(a.id)));

    let frame_b = envelope::seal(&b, &fields(DIGEST), b"later", &mut rng).unwrap();
    assert_eq!(store.open(&frame_b, t(1_999), &DIGEST), Err(OpenError::KeyPending(b.id)));
    assert_eq!(store.open(&frame_b, t(2_000), &DIGEST).unwrap().plaintext, b"later");
}

#[test]
fn each_refusal_has_its_own_error() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let (store, a, _) = store(&mut rng);
    let now = t(1_500);

    // Wrong catalogue digest: opened (so authenticated), then refused.
    let other = CatalogueDigest([0x22; 32]);
    let frame = envelope::seal(&a, &fields(other), b"x", &mut rng).unwrap();
    assert_eq!(
        store.open(&frame, now, &DIGEST),
        Err(OpenError::BadCatalogueDigest { expected: DIGEST, found: other })
    );
    assert!(store.open(&frame, now, &other).is_ok());

    // Unknown key id: a config the store never had.
    let stranger = KeyConfig::new(KeyId(77), AeadId::ChaCha20Poly1305, a.public_key, t(0), t(9_999)).unwrap();
    let frame = envelope::seal(&stranger, &fields(DIGEST), b"x", &mut rng).unwrap();
    assert_eq!(store.open(&frame, now, &DIGEST), Err(OpenError::UnknownKey(KeyId(77))));

    // Sealed to the right id but another public key: the AEAD fails, opaquely.
    let wrong_pk = SecretKey::generate(&mut rng).public_key();
    let forged = KeyConfig { public_key: wrong_pk, ..a };
    let frame = envelope::seal(&forged, &fields(DIGEST), b"x", &mut rng).unwrap();
    assert_eq!(store.open(&frame, now, &DIGEST), Err(OpenError::Decrypt));

    // Malformed frames.
    assert_eq!(
        store.open(&[1; 20], now, &DIGEST),
        Err(OpenError::Malformed(EnvelopeError::TooShort { len: 20 }))
    );
    let mut v2 = envelope::seal(&a, &fields(DIGEST), b"x", &mut rng).unwrap();
    v2[0] = 2;
    assert_eq!(store.open(&v2, now, &DIGEST), Err(OpenError::Malformed(EnvelopeError::UnknownVersion(2))));
}

#[test]
fn every_single_bit_flip_is_rejected_by_the_store() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let (store, a, b) = store(&mut rng);
    let plaintext = envelope::encode_batch(&[(envelope::ReportId([9; 16]), 4u8)]).unwrap();
    let frame = envelope::seal(&a, &fields(DIGEST), &plaintext, &mut rng).unwrap();
    let now = t(2_100); // a in grace, b active: a flip of key id 0 -> 1 reaches a real key
    assert!(store.open(&frame, now, &DIGEST).is_ok());
    for bit in 0..frame.len() * 8 {
        let mut bad = frame.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let got = store.open(&bad, now, &DIGEST);
        let id = KeyId(u16::from_be_bytes([bad[1], bad[2]]));
        let expected = match bit / 8 {
            0 => OpenError::Malformed(EnvelopeError::UnknownVersion(bad[0])),
            1 | 2 if id == b.id => OpenError::Decrypt,
            1 | 2 => OpenError::UnknownKey(id),
            _ => OpenError::Decrypt,
        };
        assert_eq!(got, Err(expected), "bit {bit}");
    }
}

#[test]
fn lifecycle_publish_retire_purge() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let (mut store, a, b) = store(&mut rng);
    let ids = |v: Vec<KeyConfig>| v.iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(ids(store.published(t(500))), [a.id, b.id]);
    assert_eq!(ids(store.published(t(2_500))), [b.id]);
    assert_eq!(store.state(a.id, t(2_500)), Some(KeyState::Grace));

    // Retiring the active key starts its grace now; a pending one is removed.
    let c = store.generate(AeadId::ChaCha20Poly1305, t(3_000), t(4_000), &mut rng).unwrap();
    assert_eq!(c.id, KeyId(2));
    assert_eq!(store.retire(b.id, t(2_100)).unwrap().not_after, t(2_100));
    assert_eq!(store.state(b.id, t(2_100)), Some(KeyState::Grace));
    assert_eq!(store.state(b.id, t(2_100 + GRACE)), Some(KeyState::Expired));
    assert_eq!(store.retire(c.id, t(2_100)).unwrap(), c);
    assert_eq!(store.config(c.id), None);
    assert_eq!(store.retire(KeyId(99), t(0)), Err(LifecycleError::UnknownKey(KeyId(99))));

    assert_eq!(store.purge(t(2_000 + GRACE - 1)), []);
    assert_eq!(store.purge(t(2_000 + GRACE)), [a.id]);
    assert_eq!(store.purge(t(2_100 + GRACE)), [b.id]);
    assert_eq!(store.iter().count(), 0);
    // Ids continue after the highest ever handed out only while keys remain; an empty
    // store starts again at 0, which is safe since every old key is gone.
    assert_eq!(store.generate(AeadId::ChaCha20Poly1305, t(0), t(1), &mut rng).unwrap().id, KeyId(0));
}

#[test]
fn insert_checks_the_key_pair_and_the_id() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let (mut store, a, _) = store(&mut rng);
    let sk = SecretKey::generate(&mut rng);
    let config = KeyConfig::new(KeyId(9), AeadId::ChaCha20Poly1305, sk.public_key(), t(0), t(10)).unwrap();
    assert_eq!(
        store.insert(KeyConfig { id: a.id, ..config }, sk.clone()),
        Err(LifecycleError::DuplicateId(a.id))
    );
    let mismatched = KeyConfig { public_key: PublicKey([1; 32]), ..config };
    assert_eq!(store.insert(mismatched, sk.clone()), Err(LifecycleError::PublicKeyMismatch(KeyId(9))));
    assert_eq!(store.insert(config, sk.clone()), Ok(()));
    // Round trip through storage: the serialized secret reloads to the same key.
    let (stored_config, stored_secret) = store.iter().find(|(c, _)| c.id == KeyId(9)).unwrap();
    assert_eq!(SecretKey::from_bytes(&stored_secret.to_bytes()), sk);
    assert_eq!(KeyConfig::from_bytes(&stored_config.to_bytes()).unwrap(), config);
    assert!(
        store.generate(AeadId::ChaCha20Poly1305, t(5), t(5), &mut rng) == Err(LifecycleError::EmptyWindow)
    );
    // Debug never shows a secret.
    let shown = format!("{store:?}");
    assert!(!shown.contains(&format!("{:?}", &sk.to_bytes()[..])));
}

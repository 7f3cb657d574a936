//! Envelopes: RFC 9180 known-answer vectors (through the `hpke` crate and through our
//! seal/open path), round trips, bit flips, strict decoding.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests and benches fail loudly")]

use confiance::Timestamp;
use confiance::envelope::{
    self, AeadId, BatchError, BatchLimits, CatalogueDigest, Envelope, EnvelopeError, EnvelopeId,
    HeaderFields, KeyConfig, KeyId, PublicKey, ReportId, SecretKey, decode_batch, encode_batch, hpke_base,
    select_config,
};
use confiance::ids::MetricId;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng as _;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------
// RFC 9180 vectors

#[path = "support/replay.rs"]
mod replay;
use replay::Replay;

fn hex(s: &serde_json::Value) -> Vec<u8> {
    let s = s.as_str().unwrap();
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn arr32(v: &serde_json::Value) -> [u8; 32] {
    hex(v).try_into().unwrap()
}

/// RFC 7748 clamping: RFC 9180 §7.1.2 says `SerializePrivateKey` clamps, while the
/// appendix prints `skRm` unclamped, so compare clamped forms.
fn clamp(mut k: [u8; 32]) -> [u8; 32] {
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    k
}

fn vectors(json: &str) -> Vec<serde_json::Value> {
    let v: Vec<serde_json::Value> = serde_json::from_str(json).unwrap();
    assert!(!v.is_empty());
    for t in &v {
        assert_eq!(
            (t["mode"].as_u64(), t["kem_id"].as_u64(), t["kdf_id"].as_u64()),
            (Some(0), Some(32), Some(1))
        );
    }
    v
}

/// The suite through the `hpke` crate directly: key schedule outputs via every
/// encryption (sequence numbers 0..=256) and every export, both directions.
fn check_with_hpke_crate<A: hpke::aead::Aead>(t: &serde_json::Value) {
    use hpke::{Deserializable as _, Kem as _, Serializable as _};
    type Kem = hpke::kem::X25519HkdfSha256;
    type Kdf = hpke::kdf::HkdfSha256;

    let (sk_r, pk_r) = Kem::derive_keypair(&hex(&t["ikmR"]));
    assert_eq!(pk_r.to_bytes().as_slice(), hex(&t["pkRm"]));
    assert_eq!(sk_r.to_bytes().as_slice(), clamp(arr32(&t["skRm"])));
    let info = hex(&t["info"]);
    let (enc, mut sender) = hpke::setup_sender_with_rng::<A, Kdf, Kem>(
        &hpke::OpModeS::Base,
        &pk_r,
        &info,
        &mut Replay(hex(&t["ikmE"])),
    )
    .unwrap();
    assert_eq!(enc.to_bytes().as_slice(), hex(&t["enc"]));
    let sk_from_vector = <Kem as hpke::Kem>::PrivateKey::from_bytes(&hex(&t["skRm"])).unwrap();
    let mut receiver =
        hpke::setup_receiver::<A, Kdf, Kem>(&hpke::OpModeR::Base, &sk_from_vector, &enc, &info).unwrap();

    let encryptions = t["encryptions"].as_array().unwrap();
    let mut checked = 0;
    for seq in 0..=256u64 {
        let wanted = encryptions.iter().find(|e| e["seq"].as_u64() == Some(seq));
        let (pt, aad) = wanted.map_or((vec![0u8; 4], vec![]), |e| (hex(&e["pt"]), hex(&e["aad"])));
        let ct = sender.seal(&pt, &aad).unwrap();
        assert_eq!(receiver.open(&ct, &aad).unwrap(), pt, "open at sequence {seq}");
        if let Some(e) = wanted {
            assert_eq!(ct, hex(&e["ct"]), "ciphertext at sequence {seq}");
            checked += 1;
        }
    }
    assert_eq!(checked, encryptions.len());
    for x in t["exports"].as_array().unwrap() {
        let mut out = vec![0u8; usize::try_from(x["L"].as_u64().unwrap()).unwrap()];
        sender.export(&hex(&x["exporter_context"]), &mut out).unwrap();
        assert_eq!(out, hex(&x["exported_value"]));
        receiver.export(&hex(&x["exporter_context"]), &mut out).unwrap();
        assert_eq!(out, hex(&x["exported_value"]));
    }
}

/// The suite through our single-shot path (`SealBase`/`OpenBase` = sequence number 0) and
/// our key types, plus the `_bad_` cases that must not open.
fn check_with_our_path(t: &serde_json::Value, aead: AeadId) {
    let sk = SecretKey::derive(&hex(&t["ikmR"]));
    assert_eq!(sk.public_key(), PublicKey(arr32(&t["pkRm"])));
    assert_eq!(*sk.to_bytes(), clamp(arr32(&t["skRm"])));
    assert_eq!(SecretKey::from_bytes(&arr32(&t["skRm"])), sk);
    assert_eq!(SecretKey::derive(&hex(&t["ikmE"])).public_key(), PublicKey(arr32(&t["pkEm"])));

    let info = hex(&t["info"]);
    let e0 = &t["encryptions"][0];
    assert_eq!(e0["seq"].as_u64(), Some(0));
    let (enc, ct) = hpke_base::seal_base(
        aead,
        &sk.public_key(),
        &info,
        &hex(&e0["aad"]),
        &hex(&e0["pt"]),
        &mut Replay(hex(&t["ikmE"])),
    )
    .unwrap();
    assert_eq!(enc.as_slice(), hex(&t["enc"]));
    assert_eq!(ct, hex(&e0["ct"]));
    assert_eq!(hpke_base::open_base(aead, &sk, &enc, &info, &hex(&e0["aad"]), &ct).unwrap(), hex(&e0["pt"]));

    let bad = t["_bad_"].as_array().unwrap();
    assert!(!bad.is_empty());
    for b in bad {
        let got = hpke_base::open_base(aead, &sk, &hex(&b["enc"]), &info, &hex(&b["aad"]), &hex(&b["ct"]));
        assert_eq!(got, Err(EnvelopeError::Open), "{}", b["why"]);
    }
}

/// Our composition and the `hpke` crate interoperate both ways on random inputs.
fn cross_check_with_hpke_crate<A: hpke::aead::Aead>(aead: AeadId, seed: u64) {
    use hpke::{Deserializable as _, Serializable as _};
    use rand_core::Rng as _;
    type Kem = hpke::kem::X25519HkdfSha256;
    type Kdf = hpke::kdf::HkdfSha256;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    for round in 0..20usize {
        let sk = SecretKey::generate(&mut rng);
        let their_sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(&sk.to_bytes()[..]).unwrap();
        let their_pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&sk.public_key().0).unwrap();
        let mut buf = vec![0u8; 3 * round + 7];
        rng.fill_bytes(&mut buf);
        let (info, rest) = buf.split_at(round);
        let (aad, pt) = rest.split_at(round + 3);

        let (enc, ct) = hpke_base::seal_base(aead, &sk.public_key(), info, aad, pt, &mut rng).unwrap();
        let enc_theirs = <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc).unwrap();
        let opened = hpke::single_shot_open::<A, Kdf, Kem>(
            &hpke::OpModeR::Base,
            &their_sk,
            &enc_theirs,
            info,
            &ct,
            aad,
        );
        assert_eq!(opened.unwrap(), pt, "hpke crate opens ours, round {round}");

        let (enc, ct) = hpke::single_shot_seal_with_rng::<A, Kdf, Kem>(
            &hpke::OpModeS::Base,
            &their_pk,
            info,
            pt,
            aad,
            &mut rng,
        )
        .unwrap();
        let opened = hpke_base::open_base(aead, &sk, &enc.to_bytes(), info, aad, &ct);
        assert_eq!(opened.unwrap(), pt, "we open the hpke crate's, round {round}");
    }
}

#[test]
fn interoperates_with_the_hpke_crate() {
    cross_check_with_hpke_crate::<hpke::aead::ChaCha20Poly1305>(AeadId::ChaCha20Poly1305, 11);
    #[cfg(feature = "aes")]
    cross_check_with_hpke_crate::<hpke::aead::AesGcm128>(AeadId::Aes128Gcm, 12);
}

#[test]
fn rfc9180_chacha20poly1305_vectors() {
    for t in vectors(include_str!("vectors/rfc9180_x25519_sha256_chacha20poly1305.json")) {
        assert_eq!(t["aead_id"].as_u64(), Some(3));
        check_with_hpke_crate::<hpke::aead::ChaCha20Poly1305>(&t);
        check_with_our_path(&t, AeadId::ChaCha20Poly1305);
    }
}

#[test]
fn rfc9180_aes128gcm_vectors() {
    for t in vectors(include_str!("vectors/rfc9180_x25519_sha256_aes128gcm.json")) {
        assert_eq!(t["aead_id"].as_u64(), Some(1));
        #[cfg(feature = "aes")]
        {
            check_with_hpke_crate::<hpke::aead::AesGcm128>(&t);
            check_with_our_path(&t, AeadId::Aes128Gcm);
        }
        #[cfg(not(feature = "aes"))]
        {
            let pk = PublicKey(arr32(&t["pkRm"]));
            let got = hpke_base::seal_base(AeadId::Aes128Gcm, &pk, b"", b"", b"", &mut Replay(vec![0; 32]));
            assert_eq!(got, Err(EnvelopeError::UnsupportedAead(1)));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Envelopes

/// A stand-in for the recorder's report: id, metric, a small tag, a payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Report {
    id: ReportId,
    metric: MetricId,
    tag: u16,
    payload: Vec<u8>,
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn report(rng: &mut ChaCha20Rng, metric: &str, payload: &[u8]) -> Report {
    Report {
        id: ReportId::random(rng),
        metric: MetricId::new(metric).unwrap(),
        tag: 3,
        payload: payload.to_vec(),
    }
}

fn key(rng: &mut ChaCha20Rng, id: u16, aead: AeadId) -> (SecretKey, KeyConfig) {
    let sk = SecretKey::generate(rng);
    let config = KeyConfig::new(KeyId(id), aead, sk.public_key(), Timestamp::EPOCH, Timestamp::MAX).unwrap();
    (sk, config)
}

const FIELDS: HeaderFields = HeaderFields {
    catalogue_digest: CatalogueDigest([0xcd; 32]),
    time_bucket: Timestamp::from_secs(1_700_003_600),
};

#[test]
fn round_trip_of_a_batch_with_authenticated_header() {
    let mut rng = rng(1);
    let (sk, config) = key(&mut rng, 42, AeadId::ChaCha20Poly1305);
    let batch = vec![
        report(&mut rng, "boolean.door_open", &[1]),
        report(&mut rng, "categorical.mode", &[0, 0, 1, 0]),
        report(&mut rng, "numeric.temperature", &(-1234i32).to_le_bytes()),
        report(&mut rng, "count.boots", &[]),
    ];
    let plaintext = encode_batch(&batch).unwrap();
    let frame = envelope::seal(&config, &FIELDS, &plaintext, &mut rng).unwrap();
    assert_eq!(frame.len(), envelope::OVERHEAD + plaintext.len());
    assert_eq!(frame[0], envelope::VERSION);
    assert_eq!(&frame[1..3], &42u16.to_be_bytes());
    assert_eq!(&frame[3..35], &[0xcd; 32]);
    assert_eq!(&frame[35..43], &1_700_003_600u64.to_be_bytes());

    let env = Envelope::parse(&frame).unwrap();
    assert_eq!(env.id(), EnvelopeId::of(&frame));
    let (header, opened) = envelope::open(&frame, &sk, config.aead).unwrap();
    assert_eq!(header.key_id, KeyId(42));
    assert_eq!(header.catalogue_digest, FIELDS.catalogue_digest);
    assert_eq!(header.time_bucket, FIELDS.time_bucket);
    assert_eq!(decode_batch::<Report>(&opened, &BatchLimits::default()).unwrap(), batch);

    // Two seals of the same batch differ (fresh ephemeral key), so do their ids.
    let again = envelope::seal(&config, &FIELDS, &plaintext, &mut rng).unwrap();
    assert_ne!(again, frame);
    assert_ne!(EnvelopeId::of(&again), EnvelopeId::of(&frame));
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let mut rng = rng(2);
    let (sk, config) = key(&mut rng, 1, AeadId::ChaCha20Poly1305);
    let plaintext = encode_batch(&[report(&mut rng, "m", &[5])]).unwrap();
    let frame = envelope::seal(&config, &FIELDS, &plaintext, &mut rng).unwrap();
    assert!(envelope::open(&frame, &sk, config.aead).is_ok());
    let mut flips = 0;
    for bit in 0..frame.len() * 8 {
        let mut bad = frame.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let got = envelope::open(&bad, &sk, config.aead);
        match bit / 8 {
            0 => assert_eq!(got, Err(EnvelopeError::UnknownVersion(bad[0])), "bit {bit}"),
            // The key id is not checked here (the key store does); like every other
            // header byte it is AAD, so the AEAD rejects it.
            _ => assert_eq!(got, Err(EnvelopeError::Open), "bit {bit}"),
        }
        flips += 1;
    }
    assert_eq!(flips, (envelope::OVERHEAD + plaintext.len()) * 8);
}

#[test]
fn strict_frame_parsing() {
    let mut rng = rng(3);
    let (sk, config) = key(&mut rng, 1, AeadId::ChaCha20Poly1305);
    let frame = envelope::seal(&config, &FIELDS, b"x", &mut rng).unwrap();
    for len in 0..envelope::OVERHEAD {
        assert_eq!(Envelope::parse(&frame[..len]).unwrap_err(), EnvelopeError::TooShort { len });
    }
    // Truncated or extended ciphertexts are AEAD failures, never plaintext.
    assert_eq!(envelope::open(&frame[..frame.len() - 1], &sk, config.aead), Err(EnvelopeError::Open));
    let mut longer = frame.clone();
    longer.push(0);
    assert_eq!(envelope::open(&longer, &sk, config.aead), Err(EnvelopeError::Open));
    let huge = vec![1u8; envelope::MAX_FRAME_LEN + 1];
    assert_eq!(Envelope::parse(&huge).unwrap_err(), EnvelopeError::TooLong { len: huge.len() });
    let too_much = vec![0u8; envelope::MAX_FRAME_LEN - envelope::OVERHEAD + 1];
    assert_eq!(
        envelope::seal(&config, &FIELDS, &too_much, &mut rng),
        Err(EnvelopeError::TooLong { len: envelope::MAX_FRAME_LEN + 1 })
    );
    let just_fits = &too_much[1..];
    assert_eq!(envelope::seal(&config, &FIELDS, just_fits, &mut rng).unwrap().len(), envelope::MAX_FRAME_LEN);
    // The wrong key or the wrong AEAD do not open.
    let (other, _) = key(&mut rng, 1, AeadId::ChaCha20Poly1305);
    assert_eq!(envelope::open(&frame, &other, config.aead), Err(EnvelopeError::Open));
    #[cfg(feature = "aes")]
    assert_eq!(envelope::open(&frame, &sk, AeadId::Aes128Gcm), Err(EnvelopeError::Open));
    #[cfg(not(feature = "aes"))]
    assert_eq!(envelope::open(&frame, &sk, AeadId::Aes128Gcm), Err(EnvelopeError::UnsupportedAead(1)));
}

#[test]
fn low_order_public_key_cannot_be_sealed_to() {
    let mut rng = rng(4);
    // The identity (u = 0) gives an all-zero shared secret, which DHKEM must refuse.
    let config = KeyConfig::new(
        KeyId(1),
        AeadId::ChaCha20Poly1305,
        PublicKey([0; 32]),
        Timestamp::EPOCH,
        Timestamp::MAX,
    )
    .unwrap();
    assert_eq!(envelope::seal(&config, &FIELDS, b"x", &mut rng), Err(EnvelopeError::InvalidPublicKey));
}

#[cfg(feature = "aes")]
#[test]
fn round_trip_with_aes128gcm() {
    let mut rng = rng(5);
    let (sk, config) = key(&mut rng, 9, AeadId::Aes128Gcm);
    let frame = envelope::seal(&config, &FIELDS, b"aes", &mut rng).unwrap();
    assert_eq!(envelope::open(&frame, &sk, AeadId::Aes128Gcm).unwrap().1, b"aes");
    assert_eq!(envelope::open(&frame, &sk, AeadId::ChaCha20Poly1305), Err(EnvelopeError::Open));
}

#[test]
fn key_configs_encode_strictly_and_select_the_newest_valid() {
    let t = Timestamp::from_secs;
    let c =
        KeyConfig::new(KeyId(0x0102), AeadId::ChaCha20Poly1305, PublicKey([0xee; 32]), t(5), t(9)).unwrap();
    let bytes = c.to_bytes();
    assert_eq!(&bytes[..8], &[0x01, 0x02, 0x00, 0x20, 0x00, 0x01, 0x00, 0x03]);
    assert_eq!(&bytes[40..], &[0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9]);
    assert_eq!(KeyConfig::from_bytes(&bytes).unwrap(), c);
    let malformed = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.to_vec();
        f(&mut b);
        KeyConfig::from_bytes(&b)
    };
    let bad = Err(EnvelopeError::MalformedKeyConfig);
    assert_eq!(malformed(&|b| b.push(0)), bad);
    assert_eq!(malformed(&|b| b.truncate(55)), bad);
    assert_eq!(malformed(&|b| b[3] = 0x21), bad); // another KEM
    assert_eq!(malformed(&|b| b[5] = 0x02), bad); // another KDF
    assert_eq!(malformed(&|b| b[7] = 0x02), bad); // AES-256-GCM: not ours
    assert_eq!(malformed(&|b| b[47] = 9), bad); // empty window
    assert_eq!(KeyConfig::new(KeyId(1), AeadId::ChaCha20Poly1305, PublicKey([0; 32]), t(9), t(9)), bad);

    let older = KeyConfig::new(KeyId(7), AeadId::ChaCha20Poly1305, PublicKey([1; 32]), t(0), t(100)).unwrap();
    let newer =
        KeyConfig::new(KeyId(3), AeadId::ChaCha20Poly1305, PublicKey([2; 32]), t(50), t(150)).unwrap();
    let aes = KeyConfig::new(KeyId(8), AeadId::Aes128Gcm, PublicKey([3; 32]), t(60), t(150)).unwrap();
    let all = [older, newer, aes];
    assert_eq!(select_config(&all, t(49)).map(|c| c.id), Some(KeyId(7)));
    let at_70 = if cfg!(feature = "aes") { KeyId(8) } else { KeyId(3) };
    assert_eq!(select_config(&all, t(70)).map(|c| c.id), Some(at_70));
    assert_eq!(select_config(&all, t(150)), None);
}

#[test]
fn batches_decode_strictly_within_limits() {
    let mut rng = rng(6);
    let batch: Vec<Report> = (0..10).map(|i| report(&mut rng, "m.x", &[i; 3])).collect();
    let bytes = encode_batch(&batch).unwrap();
    let limits = BatchLimits { max_reports: 10, max_bytes: bytes.len() };
    assert_eq!(decode_batch::<Report>(&bytes, &limits).unwrap(), batch);
    assert_eq!(
        decode_batch::<Report>(&bytes, &BatchLimits { max_bytes: bytes.len() - 1, ..limits }),
        Err(BatchError::TooLarge { len: bytes.len(), max: bytes.len() - 1 })
    );
    assert_eq!(
        decode_batch::<Report>(&bytes, &BatchLimits { max_reports: 9, ..limits }),
        Err(BatchError::TooManyReports { count: 10, max: 9 })
    );
    let mut trailing = bytes.clone();
    trailing.push(0);
    let roomy = BatchLimits::default();
    assert_eq!(decode_batch::<Report>(&trailing, &roomy), Err(BatchError::TrailingBytes { count: 1 }));
    for cut in 0..bytes.len() {
        assert!(decode_batch::<Report>(&bytes[..cut], &roomy).is_err(), "truncated at {cut}");
    }
    // A count of 2^64 - 1 is refused before any allocation.
    let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    assert_eq!(
        decode_batch::<Report>(&huge, &roomy),
        Err(BatchError::TooManyReports { count: u64::MAX, max: roomy.max_reports })
    );
    // A count within limits but beyond the bytes left is malformed, not an allocation.
    assert_eq!(decode_batch::<Report>(&[100, 0, 0], &roomy), Err(BatchError::Malformed));
    // An invalid metric id inside a report is malformed.
    let mut bad_id = encode_batch(&batch[..1]).unwrap();
    bad_id[18] = b'A';
    assert_eq!(decode_batch::<Report>(&bad_id, &roomy), Err(BatchError::Malformed));
}

#[test]
fn overhead_is_as_documented() {
    // docs/wire-format.md: 91 bytes per envelope (+ the batch's varint count), and per
    // report 16 (id) + 1 + |metric| + |tag| + 1 + |payload| for the stand-in report.
    assert_eq!(envelope::HEADER_LEN, 75);
    assert_eq!(envelope::OVERHEAD, 91);
    let mut rng = rng(7);
    let r = report(&mut rng, "thermostat.setpoint", &[0x12, 0x34]);
    let one = encode_batch(core::slice::from_ref(&r)).unwrap();
    assert_eq!(one.len(), 1 + 16 + 1 + 19 + 1 + 1 + 2);
    let many = encode_batch(&vec![r; 200]).unwrap();
    assert_eq!(many.len(), 2 + 200 * (16 + 1 + 19 + 1 + 1 + 2));
}

// The worked example of docs/wire-format.md (a real report, sealed) is rebuilt with every
// other example by tests/wire_examples.rs.

#[test]
fn overhead_table_of_the_docs() {
    // The bench's report shape: 16 + (1 + 15) + 2 + 4 = 38 bytes.
    #[derive(Serialize)]
    struct BenchReport {
        id: ReportId,
        metric: MetricId,
        tag: u16,
        payload: [u8; 4],
    }
    let r = BenchReport {
        id: ReportId([0; 16]),
        metric: MetricId::new("thermostat.mode").unwrap(),
        tag: 300,
        payload: [0; 4],
    };
    let mut rng = rng(8);
    let (_, config) = key(&mut rng, 1, AeadId::ChaCha20Poly1305);
    let doc = include_str!("../docs/wire-format.md");
    for (n, plaintext, frame) in [(1, 39, 130), (10, 381, 472), (100, 3_801, 3_892), (1000, 38_002, 38_093)] {
        let batch: Vec<&BenchReport> = std::iter::repeat_n(&r, n).collect();
        let bytes = encode_batch(&batch).unwrap();
        assert_eq!(bytes.len(), plaintext, "{n} reports");
        assert_eq!(envelope::seal(&config, &FIELDS, &bytes, &mut rng).unwrap().len(), frame);
        let group =
            |x: usize| if x >= 1000 { format!("{} {:03}", x / 1000, x % 1000) } else { x.to_string() };
        let row = format!("| {} | {} | {} |", group(n).replace(' ', ""), group(plaintext), group(frame));
        assert!(doc.contains(&row), "docs/wire-format.md lacks the row {row}");
    }
}

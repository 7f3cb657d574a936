//! Fuzz harnesses for confiance, one function per target; `fuzz_targets/*.rs` are one
//! line each. Each harness asserts the properties that must hold for *any* input: no
//! panic, and whatever decodes re-encodes to the same bytes.

use confiance::Timestamp;
use confiance::envelope::{
    self, AeadId, BatchLimits, CatalogueDigest, Envelope, HeaderFields, KeyConfig, KeyId, SecretKey,
    decode_batch, decode_body, encode_batch, encode_body,
};
use confiance::ids::MetricId;
use std::sync::OnceLock;

pub use confiance::report::Report;

/// The key every corpus envelope is sealed to.
pub const KEY_ID: KeyId = KeyId(1);
/// The catalogue digest of every corpus envelope.
pub const DIGEST: CatalogueDigest = CatalogueDigest([0x42; 32]);
/// Limits used by the harnesses.
pub const LIMITS: BatchLimits = BatchLimits { max_reports: 1024, max_bytes: 1 << 16 };

/// The fuzz key (derived from a fixed string: known to everyone, used for nothing else).
pub fn key() -> &'static (SecretKey, KeyConfig) {
    static KEY: OnceLock<(SecretKey, KeyConfig)> = OnceLock::new();
    KEY.get_or_init(|| {
        let sk = SecretKey::derive(b"confiance fuzz key, public on purpose");
        let config =
            KeyConfig::new(KEY_ID, AeadId::ChaCha20Poly1305, sk.public_key(), Timestamp::EPOCH, Timestamp::MAX)
                .unwrap_or_else(|_| unreachable!());
        (sk, config)
    })
}

/// Target `open_envelope`: parse any bytes as a frame; open those addressed to the fuzz
/// key; decode what opens as a batch.
pub fn open_envelope(data: &[u8]) {
    let Ok(env) = Envelope::parse(data) else { return };
    assert!(data.len() >= envelope::OVERHEAD && data.len() <= envelope::MAX_FRAME_LEN);
    let _ = env.id();
    if env.header().key_id != KEY_ID {
        return;
    }
    let (sk, config) = key();
    if let Ok(plaintext) = env.open(sk, config.aead) {
        assert_eq!(plaintext.len(), data.len() - envelope::OVERHEAD);
        decode_report_batch(&plaintext);
    }
}

/// Target `decode_report_batch`: any bytes as a batch; what decodes must be within the
/// limits and re-encode to exactly the input.
pub fn decode_report_batch(data: &[u8]) {
    if let Ok(batch) = decode_batch::<Report>(data, &LIMITS) {
        assert!(batch.len() <= LIMITS.max_reports && data.len() <= LIMITS.max_bytes);
        assert_eq!(encode_batch(&batch).ok().as_deref(), Some(data));
    }
    // The envelope body: tokens, then the batch; what decodes is canonical too.
    if let Ok((tokens, batch)) = decode_body::<Report>(data, &LIMITS) {
        assert!(tokens.len() <= envelope::MAX_TOKENS && batch.len() <= LIMITS.max_reports);
        assert_eq!(encode_body(&tokens, &batch).ok().as_deref(), Some(data));
    }
}

/// Target `parse_catalogue`: any bytes as TOML text and as canonical bytes; what parses
/// must round-trip with the same digest.
pub fn parse_catalogue(data: &[u8]) {
    use confiance::catalogue::Catalogue;
    if let Ok(text) = core::str::from_utf8(data) {
        if let Ok(c) = Catalogue::from_toml_str(text) {
            let again = c.to_toml_string().ok().and_then(|t| Catalogue::from_toml_str(&t).ok());
            assert_eq!(again.map(|a| a.digest()), Some(c.digest()));
        }
    }
    if let Ok(c) = Catalogue::from_canonical_bytes(data) {
        assert_eq!(c.canonical_bytes(), data);
    }
}

/// Target `verify_receipt`: any bytes as a signed receipt and as a signed withdrawal;
/// what verifies must re-encode to exactly the input.
pub fn verify_receipt(data: &[u8]) {
    use confiance::consent::{SignedReceipt, SignedWithdrawal};
    if let Ok(r) = SignedReceipt::from_bytes(data) {
        assert_eq!(r.to_bytes(), data);
        let _ = r.receipt().check_against(sample_catalogue());
    }
    if let Ok(w) = SignedWithdrawal::from_bytes(data) {
        assert_eq!(w.to_bytes(), data);
    }
}

fn sample_catalogue() -> &'static confiance::catalogue::Catalogue {
    static C: OnceLock<confiance::catalogue::Catalogue> = OnceLock::new();
    C.get_or_init(|| {
        confiance::catalogue::Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))
            .unwrap_or_else(|_| unreachable!())
    })
}

/// Seed inputs: (target, name, bytes). Written to `corpus/` by `examples/make_corpus.rs`:
/// real envelopes and batches from a recorder following the sample catalogue, the
/// catalogue itself, and signed receipts and withdrawals.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    use confiance::consent::{ConsentRequest, ConsentState, DeviceKey, Scope};
    use confiance::pseudonym::DeviceSecret;
    use confiance::recorder::{MemoryStorage, Recorder, RecorderParts, Value};
    use rand_core::SeedableRng as _;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2026);
    let (sk, config) = key();
    let catalogue = sample_catalogue().clone();
    let mut out = Vec::new();
    let mut recorder = Recorder::new(
        RecorderParts {
            catalogue: catalogue.clone(),
            consent: ConsentState::new(DeviceKey::generate(&mut rng)),
            pseudonyms: DeviceSecret::generate(&mut rng),
            controller: "calora".parse().unwrap_or_else(|_| unreachable!()),
            key_configs: vec![*config],
            rng: rand_chacha::ChaCha20Rng::seed_from_u64(7),
        },
        MemoryStorage::default(),
    );
    let t = Timestamp::from_secs(1_764_460_800);
    let metric = |s: &str| -> MetricId { s.parse().unwrap_or_else(|_| unreachable!()) };
    let receipt = recorder
        .give_consent(
            ConsentRequest::new(
                "calora".parse().unwrap_or_else(|_| unreachable!()),
                "product-improvement".parse().unwrap_or_else(|_| unreachable!()),
                Scope::metrics([metric("thermostat.mode"), metric("thermostat.setpoint")]),
                "P30D".parse().unwrap_or_else(|_| unreachable!()),
            ),
            t,
        )
        .unwrap_or_default();
    let service = recorder
        .give_consent(
            ConsentRequest::new(
                "calora".parse().unwrap_or_else(|_| unreachable!()),
                "service".parse().unwrap_or_else(|_| unreachable!()),
                Scope::metrics([metric("thermostat.fault-code")]),
                "P1Y".parse().unwrap_or_else(|_| unreachable!()),
            ),
            t,
        )
        .unwrap_or_default();
    out.push(("verify_receipt", "receipt".into(), receipt.clone()));
    out.push(("verify_receipt", "service_receipt".into(), service));
    if let Ok(r) = confiance::consent::SignedReceipt::from_bytes(&receipt) {
        if let Ok(w) = recorder.withdraw_consent(&r.id(), t.saturating_add_secs(100)) {
            out.push(("verify_receipt", "withdrawal".into(), w));
        }
    }
    for n in [1usize, 3, 10] {
        for i in 0..n {
            let purpose = "product-improvement".parse().unwrap_or_else(|_| unreachable!());
            let _ = recorder.record(&metric("thermostat.mode"), &purpose, Value::Category((i % 6) as u32), t);
            let _ = recorder.record(&metric("thermostat.setpoint"), &purpose, Value::Int(200), t);
            let _ = recorder.record_service(&metric("thermostat.fault-code"), Value::Int(3), t);
        }
        for frame in recorder.flush(t) {
            if let Ok(plain) = envelope::open(&frame, sk, config.aead).map(|(_, p)| p) {
                out.push(("decode_report_batch", format!("batch_{n}_rounds"), plain));
            }
            recorder.acknowledge(&frame);
            out.push(("open_envelope", format!("sealed_{n}_rounds"), frame));
        }
    }
    let fields = HeaderFields { catalogue_digest: DIGEST, time_bucket: t };
    out.push(("open_envelope", "empty".into(), envelope::seal(config, &fields, &[0], &mut rng).unwrap_or_default()));
    out.push(("open_envelope", "too_short".into(), vec![1; 40]));
    out.push(("decode_report_batch", "overlong_count".into(), vec![0x80, 0x00]));
    out.push(("parse_catalogue", "fleet.toml".into(), include_bytes!("../../examples/catalogue.toml").to_vec()));
    out.push(("parse_catalogue", "fleet.canonical".into(), catalogue.canonical_bytes()));
    out
}

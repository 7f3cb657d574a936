//! Fuzz harnesses for confiance, one function per target; `fuzz_targets/*.rs` are one
//! line each. Each harness asserts the properties that must hold for *any* input: no
//! panic, and whatever decodes re-encodes to the same bytes.

use confiance::Timestamp;
use confiance::envelope::{
    self, AeadId, BatchLimits, CatalogueDigest, Envelope, HeaderFields, KeyConfig, KeyId, ReportId, SecretKey,
    decode_batch, encode_batch,
};
use confiance::ids::MetricId;
use std::sync::OnceLock;

/// A stand-in for the recorder's report (the real one has the same shape: id, metric,
/// retention tag, payload).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Random report id.
    pub id: ReportId,
    /// Catalogue metric.
    pub metric: MetricId,
    /// Retention tag (a stand-in).
    pub tag: u16,
    /// Privatized payload.
    pub payload: Vec<u8>,
}

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
}

/// Seed inputs: (target, name, bytes). Written to `corpus/` by `examples/make_corpus.rs`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    use rand_core::SeedableRng as _;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2026);
    let (_, config) = key();
    let metrics = ["thermostat.mode", "door.open", "temp.c"];
    let mut out = Vec::new();
    for n in [0usize, 1, 3, 10] {
        let batch: Vec<Report> = (0..n)
            .map(|i| Report {
                id: ReportId::random(&mut rng),
                metric: MetricId::new(metrics[i % 3]).unwrap_or_else(|_| unreachable!()),
                tag: u16::try_from(i * 100).unwrap_or(0),
                payload: vec![u8::try_from(i).unwrap_or(0); i % 5],
            })
            .collect();
        let plaintext = encode_batch(&batch).unwrap_or_default();
        let fields = HeaderFields { catalogue_digest: DIGEST, time_bucket: Timestamp::from_secs(1_764_460_800) };
        let frame = envelope::seal(config, &fields, &plaintext, &mut rng).unwrap_or_default();
        out.push(("open_envelope", format!("sealed_{n}_reports"), frame));
        out.push(("decode_report_batch", format!("batch_{n}_reports"), plaintext));
    }
    out.push(("open_envelope", "too_short".into(), vec![1; 40]));
    out.push(("decode_report_batch", "overlong_count".into(), vec![0x80, 0x00]));
    out
}

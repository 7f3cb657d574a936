//! Every worked example of docs/wire-format.md, rebuilt from the code.
//!
//! The document marks each example with a fenced block whose info string names it:
//! ```` ```hex example=NAME ```` holds the bytes as hex (whitespace ignored), and
//! ```` ```text example=NAME ```` the same bytes annotated: on each line, the hex before the
//! first run of two spaces (single spaces inside it ignored), the rest a comment;
//! ```` ```note example=NAME ```` is a text (a checkpoint) compared verbatim. This test
//! rebuilds every example with the inputs the document states and asserts the bytes are
//! equal, so a change of any encoding (or of the document) without the other fails here;
//! and every example the code builds must appear in the document, so none goes missing.
//!
//! `cargo test --test wire_examples -- --nocapture print` prints every example.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail loudly")]

use std::collections::BTreeMap;

use confiance::Timestamp;
use confiance::catalogue::{Catalogue, LegalBasis, Metric, MetricKind, Purpose, Recipient, Role};
use confiance::consent::{
    CertifierKey, ConsentReceipt, ConsentState, DeviceCertificate, DeviceKey, Scope, SubjectKey, Withdrawal,
};
use confiance::envelope::{
    self, AeadId, CatalogueDigest, HeaderFields, KeyConfig, KeyId, ReportId, SecretKey, encode_batch,
    encode_body,
};
use confiance::ids::{MetricId, ReceiptId, RecipientId};
use confiance::ldp::{LdpReport, MechanismName};
use confiance::pseudonym::{DeviceSecret, Epoch, SystemPublicKey, TranscryptionRequest};
use confiance::recorder::{SentEntry, SentLogExport};
use confiance::report::{Payload, RecordValue, Report};
use confiance::retention::RetentionTag;
use confiance::token::{
    PendingTokens, SpentToken, Token, TokenPeriod, TokenRequest, TokenResponse, TokenScope,
};
use confiance_aggregator::audit::{AuditEvent, CheckpointSigner, LoggedEvent};
use confiance_aggregator::issuer::{AllowAll, Issuer, IssuerSecret, TokenVerifier};
use curve25519_dalek::{RistrettoPoint, Scalar};

#[path = "support/replay.rs"]
mod replay;
use replay::Replay;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn t(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

/// 2025-11-30T00:00:00Z: the day of every example.
const DAY: u64 = 1_764_460_800;

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

/// The example catalogue of docs/wire-format.md §8.
fn catalogue() -> Catalogue {
    Catalogue::builder("example", 1)
        .purpose(id("diagnostics"), Purpose::new("Find faults", LegalBasis::LegitimateInterest))
        .purpose(id("service"), Purpose::new("Bill the energy used", LegalBasis::Contract))
        .recipient(id("acme"), Recipient::new("Acme", Role::Controller, "FR"))
        .metric(
            id("door.open"),
            Metric::new("Whether the door opened that day", MetricKind::Boolean, id("usage"))
                .ldp(id("1"), MechanismName::Grr)
                .purposes([id("diagnostics")])
                .recipients([id("acme")])
                .max_hold(id("P30D"))
                .time_precision(id("P1D")),
        )
        .metric(
            id("heating.kwh"),
            Metric::new("Energy used that day, kWh", MetricKind::Numeric { min: 0, max: 100 }, id("energy"))
                .pseudonymous()
                .purposes([id("service")])
                .recipients([id("acme")])
                .max_hold(id("P1Y"))
                .time_precision(id("P1D")),
        )
        .build()
        .unwrap()
}

/// The token worked example of docs/wire-format.md §10.3, with what made it.
struct TokenExample {
    scope: TokenScope,
    scope_key: [u8; 32],
    request: TokenRequest,
    response: TokenResponse,
    token: Token,
    /// The token's blind, as `PendingTokens::request` drew it (after the nonce).
    blind: Scalar,
    verifier: TokenVerifier,
    now: Timestamp,
}

impl TokenExample {
    fn spent(&self) -> SpentToken {
        SpentToken { scope: self.scope.clone(), token: self.token }
    }
}

/// Issuer secret `0x05 × 32`, scope (calora, product-improvement, period 20 833), device
/// key seed `0x03 × 32`, one token, every draw from `SeededRng::seed_from_u64(1)`.
fn token_example() -> TokenExample {
    use confiance::hazmat::{SeedableRng as _, SeededRng};
    let cat = Catalogue::from_toml_str(include_str!("../examples/catalogue.toml")).unwrap();
    let secret = IssuerSecret::from_bytes([0x05; 32]);
    let mut issuer = Issuer::new(secret.clone(), &cat).unwrap();
    let scope = TokenScope::new([id("calora")], id("product-improvement"), TokenPeriod(20_833));
    let now = t(20_833 * 86_400 + 3_600);
    let device = DeviceKey::from_bytes(&[0x03; 32]);
    let mut rng = SeededRng::seed_from_u64(1);
    let pk = issuer.public_key(&scope).unwrap();
    let (pending, request) = PendingTokens::request(&device, scope.clone(), pk, 1, &mut rng).unwrap();
    let response = issuer.issue(&request, &AllowAll, now, &mut rng).unwrap();
    let token = pending.finalize(&response).unwrap()[0];
    let verifier = TokenVerifier::new(secret, &cat).unwrap();
    // The same draws again, in the order of RFC 9497 `Blind` per token: the nonce, then the
    // blind (published so that a second implementation can check its `HashToGroup` of the
    // token input, its blinding and its unblinding on the example).
    let (nonce, blind) = nonce_then_blind(&mut SeededRng::seed_from_u64(1));
    let bytes = token.to_bytes();
    assert_eq!(bytes[2..34], nonce, "the replayed draws are the request's");
    let (_, blinded) = confiance::token::voprf::blind_with(&bytes[..98], blind).unwrap();
    assert_eq!(blinded.compress().to_bytes(), request.blinded[0], "the blind makes the request's element");
    TokenExample { scope, scope_key: pk.to_bytes(), request, response, token, blind, verifier, now }
}

fn nonce_then_blind<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> ([u8; 32], Scalar) {
    let mut nonce = [0u8; 32];
    rng.fill_bytes(&mut nonce);
    (nonce, confiance::token::voprf::random_blind(rng))
}

/// The transcryption request of docs/wire-format.md §11: device key seed `0x02 × 32`,
/// device secret `0x03 × 32`, system key `9·G`, receipt `0x07 × 32`, recipient `acme`,
/// epoch 680, every draw from `SeededRng::seed_from_u64(1)`.
fn transcryption_example() -> TranscryptionRequest {
    use confiance::hazmat::{SeedableRng as _, SeededRng};
    let system = SystemPublicKey::from_point(RistrettoPoint::mul_base(&Scalar::from(9u8))).unwrap();
    TranscryptionRequest::sign(
        &DeviceKey::from_bytes(&[2; 32]),
        &DeviceSecret::from_bytes([3; 32]),
        &system,
        ReceiptId([7; 32]),
        id("acme"),
        Some(Epoch(680)),
        &mut SeededRng::seed_from_u64(1),
    )
}

/// Everything the document shows, by example name.
#[allow(clippy::too_many_lines, reason = "one list of examples, read top to bottom like the document")]
fn examples() -> BTreeMap<&'static str, Vec<u8>> {
    let mut out: BTreeMap<&'static str, Vec<u8>> = BTreeMap::new();
    let cat = catalogue();
    let acme: RecipientId = id("acme");

    // §2 key config
    let sk = SecretKey::derive(&[0x01; 32]);
    let config =
        KeyConfig::new(KeyId(1), AeadId::ChaCha20Poly1305, sk.public_key(), t(DAY), t(1_767_225_600))
            .unwrap();
    out.insert("key-public", sk.public_key().0.to_vec());
    out.insert("key-config", config.to_bytes().to_vec());

    // §8 catalogue
    out.insert("catalogue-canonical", cat.canonical_bytes());
    out.insert("catalogue-digest", cat.digest().0.to_vec());

    // §3.3 LDP reports and record values
    for (name, r) in [
        ("ldp-grr", LdpReport::Grr(1)),
        ("ldp-oue", LdpReport::Oue(vec![0b0000_0101, 0b0000_0010])),
        ("ldp-sue", LdpReport::Sue(vec![0b0000_0101, 0b0000_0010])),
        ("ldp-olh", LdpReport::Olh { seed: 300, value: 2 }),
        ("ldp-hadamard", LdpReport::Hadamard(5)),
        ("ldp-piecewise", LdpReport::Piecewise(1000)),
        ("ldp-duchi", LdpReport::Duchi(true)),
    ] {
        out.insert(name, postcard::to_allocvec(&r).unwrap());
    }
    for (name, v) in [
        ("value-bool", RecordValue::Bool(true)),
        ("value-category", RecordValue::Category(3)),
        ("value-numeric", RecordValue::Numeric(-2)),
        ("value-count", RecordValue::Count(12)),
    ] {
        out.insert(name, postcard::to_allocvec(&v).unwrap());
    }

    // §7 consent (the subject is a single device: its key is the subject key)
    let owner = SubjectKey::from_bytes(&[1; 32]);
    let device = DeviceKey::from_bytes(&[2; 32]);
    out.insert("subject-key", owner.public_key().0.to_vec());
    out.insert("subject-id", owner.subject_id().0.to_vec());
    out.insert("device-key", device.public_key().0.to_vec());
    let delegation = owner.delegate(device.public_key(), t(DAY), None, t(DAY)).unwrap();
    out.insert("delegation", delegation.to_bytes());
    let revocation = owner.revoke(device.public_key(), t(1_767_225_600), t(1_767_225_600));
    out.insert("revocation", revocation.to_bytes());
    // §7.2 a device certificate: the certifier from seed 0x03 × 32 certifies the device
    // key for model "t3", from the example day for ten years of 365 days.
    let maker = CertifierKey::from_bytes(&[3; 32]);
    out.insert("certifier-key", maker.public_key().0.to_vec());
    let certificate = maker.certify(device.public_key(), "t3", t(DAY), t(DAY + 3_650 * 86_400)).unwrap();
    out.insert("device-certificate", certificate.to_bytes());
    out.insert("certificate-id", certificate.id().0.to_vec());
    let receipt = ConsentReceipt {
        version: confiance::consent::RECEIPT_VERSION,
        catalogue_version: cat.version(),
        catalogue_digest: cat.digest(),
        subject: owner.subject_id(),
        subject_key: owner.public_key(),
        recipient: acme.clone(),
        purpose: id("service"),
        scope: Scope::metrics([id::<MetricId>("heating.kwh")]),
        valid_from: t(DAY),
        valid_until: None,
        hold: id("P1Y"),
        issued_at: t(DAY),
        nonce: [0x05; 16],
        signer: device.public_key(),
    }
    .sign_by_subject(&owner);
    out.insert("receipt", receipt.to_bytes());
    out.insert("receipt-id", receipt.id().0.to_vec());
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
    out.insert("withdrawal", withdrawal.to_bytes());

    // §3 retention tags and reports
    let consent_free = ConsentState::new(DeviceKey::from_bytes(&[9; 32]));
    let door: MetricId = id("door.open");
    let stat_tag =
        RetentionTag::for_statistic(&cat, &consent_free, &door, &id("diagnostics"), [acme.clone()], t(DAY))
            .unwrap();
    out.insert("tag-statistic", postcard::to_allocvec(&stat_tag).unwrap());
    let mut consent = ConsentState::new(owner.to_device_key());
    consent.accept(receipt.clone()).unwrap();
    let kwh: MetricId = id("heating.kwh");
    let record_tag = RetentionTag::for_record(&cat, &consent, &kwh, &receipt.id(), t(DAY)).unwrap();
    out.insert("tag-record", postcard::to_allocvec(&record_tag).unwrap());
    let statistic = Report {
        id: ReportId([0x07; 16]),
        metric: door,
        time: t(DAY),
        tag: stat_tag,
        payload: Payload::Statistic(LdpReport::Grr(1)),
    };
    out.insert("report-statistic", postcard::to_allocvec(&statistic).unwrap());
    let epoch_secs = cat.limits().pseudonym_epoch.fixed_secs().unwrap();
    let epoch = Epoch::containing(t(DAY), epoch_secs).unwrap();
    let pseudonym = DeviceSecret::from_bytes([0x03; 32]).scoped(&acme, epoch);
    out.insert("pseudonym", pseudonym.0.to_vec());
    out.insert(
        "identity-point",
        DeviceSecret::from_bytes([0x03; 32]).identity_point().compress().to_bytes().to_vec(),
    );
    let record = Report {
        id: ReportId([0x08; 16]),
        metric: kwh,
        time: t(DAY),
        tag: record_tag,
        payload: Payload::Record { pseudonym, epoch, value: RecordValue::Numeric(7) },
    };
    out.insert("report-record", postcard::to_allocvec(&record).unwrap());

    // §3 batch and body, §5 envelope
    out.insert("batch", encode_batch(core::slice::from_ref(&statistic)).unwrap());
    let plaintext = encode_body(&[], core::slice::from_ref(&statistic)).unwrap();
    let fields = HeaderFields { catalogue_digest: cat.digest(), time_bucket: t(DAY) };
    let frame = envelope::seal(&config, &fields, &plaintext, &mut Replay(vec![0x02; 32])).unwrap();
    assert_eq!(envelope::open(&frame, &sk, AeadId::ChaCha20Poly1305).unwrap().1, plaintext);
    out.insert("body", plaintext);

    // §12 the device's sent-log export: the two reports above, as the recorder logs them
    let envelope_id = confiance::envelope::EnvelopeId::of(&frame);
    // Held until: the hold from the bucket's end (a statistic) or from collection (a record).
    let sent = |r: &Report, start: Timestamp| SentEntry {
        metric: r.metric.clone(),
        time: r.time,
        purpose: r.tag.purpose().clone(),
        audience: r.tag.audience().iter().cloned().collect(),
        held_until: r.tag.deadline(start).at,
        receipt: r.tag.receipt().copied(),
        envelope: envelope_id,
    };
    let door_bucket = Metric::bucket_secs(cat.metric(&statistic.metric).unwrap());
    let export = SentLogExport {
        version: confiance::recorder::SENT_LOG_VERSION,
        subject: owner.subject_id(),
        catalogue_name: cat.name().into(),
        catalogue_version: cat.version(),
        catalogue_digest: cat.digest(),
        exported_at: t(2 * DAY),
        entries: vec![
            sent(&statistic, statistic.time.saturating_add_secs(door_bucket)),
            sent(&record, record.time),
        ],
    };
    let bytes = export.to_bytes();
    assert_eq!(SentLogExport::from_bytes(&bytes).as_ref(), Ok(&export));
    out.insert("sent-log", bytes);
    out.insert("envelope", frame);

    // §10 report tokens (the scope of examples/catalogue.toml, as aggregator/tests/token_wire.rs)
    let tokens = token_example();
    out.insert("token-scope-key", tokens.scope_key.to_vec());
    out.insert("token-request", postcard::to_allocvec(&tokens.request).unwrap());
    out.insert("token-response", postcard::to_allocvec(&tokens.response).unwrap());
    out.insert("token-blind", tokens.blind.to_bytes().to_vec());
    out.insert("token", tokens.token.to_bytes().to_vec());
    out.insert("token-list", postcard::to_allocvec(&vec![tokens.spent()]).unwrap());

    // §11 a signed transcryption request
    let request = transcryption_example();
    out.insert("transcryption-request", request.to_bytes());
    out.insert("transcryption-signed", request.signed_bytes());

    // §9 audit log: a leaf and a checkpoint
    let leaf = LoggedEvent { seq: 5, event: AuditEvent::ConsentGiven { receipt: receipt.id() } };
    out.insert("audit-leaf", leaf.leaf_bytes().unwrap());
    out.insert("audit-leaf-hash", leaf.leaf_hash().unwrap().to_vec());
    let signer = CheckpointSigner::from_secret_bytes("example.org/audit", &[0x04; 32]).unwrap();
    out.insert("checkpoint-key", signer.verifying_key().to_bytes().to_vec());
    let root = confiance_aggregator::audit::merkle::leaf_hash(b"example");
    out.insert("checkpoint", signer.sign(6, root, t(DAY)).to_text().into_bytes());
    out
}

#[derive(Debug)]
enum Form {
    /// Hex, whitespace ignored.
    Hex,
    /// Hex before the first double space of each line.
    Annotated,
    /// Verbatim text.
    Note,
}

/// `(name, form, bytes)` of every example block of the document.
fn doc_examples(doc: &str) -> Vec<(String, Form, Vec<u8>)> {
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else { continue };
        let mut words = info.split_whitespace();
        let lang = words.next().unwrap_or("");
        let Some(name) = words.find_map(|w| w.strip_prefix("example=")) else {
            // Skip the body of an unmarked block.
            for l in lines.by_ref() {
                if l.starts_with("```") {
                    break;
                }
            }
            continue;
        };
        let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
        let (form, bytes) = match lang {
            "hex" => (Form::Hex, unhex(&body.concat().replace(' ', ""), name)),
            "text" => {
                let h: String =
                    body.iter().map(|l| l.split("  ").next().unwrap_or("").trim().replace(' ', "")).collect();
                (Form::Annotated, unhex(&h, name))
            }
            "note" => (Form::Note, (body.join("\n") + "\n").into_bytes()),
            other => panic!("example {name}: unknown block language {other}"),
        };
        out.push((name.to_owned(), form, bytes));
    }
    out
}

fn unhex(s: &str, name: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "example {name}: odd number of hex digits");
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .unwrap_or_else(|_| panic!("example {name}: not hex near {:?}", &s[i..(i + 8).min(s.len())]))
        })
        .collect()
}

#[test]
fn every_example_of_the_wire_format_is_what_the_code_builds() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/wire-format.md")).unwrap();
    let built = examples();
    let found = doc_examples(&doc);
    let mut failures = Vec::new();
    for (name, form, bytes) in &found {
        match built.get(name.as_str()) {
            None => failures.push(format!("docs example `{name}` is not built by this test")),
            Some(b) if b != bytes => failures.push(format!(
                "docs example `{name}` ({form:?}) drifted:\n  docs {}\n  code {}",
                hex(bytes),
                hex(b)
            )),
            Some(_) => {}
        }
    }
    for name in built.keys() {
        if !found.iter().any(|(n, _, _)| n == name) {
            failures
                .push(format!("example `{name}` is missing from docs/wire-format.md: {}", hex(&built[name])));
        }
    }
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
    assert!(found.len() >= built.len(), "{} blocks for {} examples", found.len(), built.len());
}

#[test]
fn the_example_parser_reads_each_form() {
    let doc = "```hex example=a\n01 02\n0304\n```\n```text\n99\n```\n```text example=b\n01 02  one two\n03      three\n```\n```note example=c\nx\n\n— y\n```\n";
    let found = doc_examples(doc);
    assert_eq!(found.len(), 3);
    assert_eq!(found[0].2, [1, 2, 3, 4]);
    assert_eq!(found[1].2, [1, 2, 3]);
    assert_eq!(found[2].2, b"x\n\n\xe2\x80\x94 y\n");
}

/// Prints every example (`cargo test --test wire_examples -- --ignored --nocapture`).
#[test]
#[ignore = "prints the examples for the document; run by hand"]
fn print() {
    for (name, bytes) in examples() {
        match std::str::from_utf8(&bytes) {
            Ok(s) if name == "checkpoint" => println!("{name}:\n{s}"),
            _ => println!("{name} ({} bytes): {}", bytes.len(), hex(&bytes)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Cross-language test vectors: tests/vectors/wire.json
//
// Each case is one structure as hex, valid (with the fields it is built from, so another
// implementation can rebuild it) or `_bad_` (with the error code the documented decoder
// answers). This test builds every case from the code, runs each through the Rust
// decoders, and checks the file is exactly what it builds (regenerate it with
// `CONFIANCE_WRITE_VECTORS=1 cargo test --test wire_examples`).

use confiance::consent::{ConsentError, SignedDelegation, SignedReceipt, SignedRevocation, SignedWithdrawal};
use confiance::envelope::{BatchLimits, decode_batch, decode_body};
use confiance::hazmat::SeedableRng as _;
use confiance_aggregator::audit::{AuditError, Verifier, merkle};
use confiance_aggregator::ingest::IngestError;
use confiance_aggregator::keys::KeyStore;
use ed25519_dalek::Signer as _;
use serde_json::{Value, json};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/wire.json");
const ENVELOPE_NOW: u64 = DAY + 3_600;
const ORIGIN: &str = "example.org/audit";

struct Vectors {
    cases: Vec<Value>,
}

impl Vectors {
    fn ok(&mut self, kind: &str, name: &str, bytes: &[u8], fields: Value) {
        self.cases.push(json!({"kind": kind, "name": name, "hex": hex(bytes), "fields": fields}));
    }
    fn bad(&mut self, kind: &str, name: &str, bytes: &[u8], error: &str) {
        assert!(name.starts_with("_bad_"), "{name}");
        self.cases.push(json!({"kind": kind, "name": name, "hex": hex(bytes), "error": error}));
    }
}

/// `haystack` with the first `from` replaced by `to` (which must be there).
fn splice(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = haystack.windows(from.len()).position(|w| w == from).expect("splice: pattern present");
    [&haystack[..at], to, &haystack[at + from.len()..]].concat()
}

/// `body ‖ Ed25519(key, domain ‖ body)`: a consent message signed over any body bytes.
fn signed(domain: &[u8], body: &[u8], seed: [u8; 32]) -> Vec<u8> {
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let sig = key.sign(&[domain, body].concat());
    [body, &sig.to_bytes()[..]].concat()
}

fn unsigned(message: &[u8]) -> &[u8] {
    &message[..message.len() - 64]
}

fn flip_at(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= 1;
    b
}

fn flip_last(bytes: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    *b.last_mut().unwrap() ^= 1;
    b
}

fn varint(n: u64) -> Vec<u8> {
    postcard::to_allocvec(&n).unwrap()
}

fn tag_json(purpose: &str, audience: &[&str], hold: &str, receipt: Option<&[u8]>) -> Value {
    json!({"purpose": purpose, "audience": audience, "hold": hold, "catalogue_version": 1,
           "receipt": receipt.map(hex)})
}

#[allow(clippy::too_many_lines, reason = "one list of vectors, read top to bottom")]
fn build_vectors() -> Value {
    let ex = examples();
    let mut v = Vectors { cases: Vec::new() };
    let subject_seed = [1u8; 32];
    let device_seed = [2u8; 32];

    // Key configs.
    let config = &ex["key-config"];
    v.ok(
        "key_config",
        "key_config",
        config,
        json!({"key_id": 1, "kem_id": 0x20, "kdf_id": 1, "aead_id": 3, "public_key": hex(&ex["key-public"]),
               "not_before": DAY, "not_after": 1_767_225_600u64}),
    );
    v.bad("key_config", "_bad_key_config_short", &config[..55], "malformed_key_config");
    let mut kem = config.clone();
    kem[3] = 0x21;
    v.bad("key_config", "_bad_key_config_kem_x448", &kem, "malformed_key_config");
    let mut aead = config.clone();
    aead[7] = 0x02;
    v.bad("key_config", "_bad_key_config_aead_aes256", &aead, "malformed_key_config");
    let mut window = config.clone();
    window[48..56].copy_from_slice(&DAY.to_be_bytes());
    v.bad("key_config", "_bad_key_config_empty_window", &window, "malformed_key_config");

    // Catalogue.
    let canonical = &ex["catalogue-canonical"];
    v.ok("catalogue", "catalogue", canonical, json!({"digest": hex(&ex["catalogue-digest"])}));
    v.bad(
        "catalogue",
        "_bad_catalogue_trailing_byte",
        &[canonical.as_slice(), &[0]].concat(),
        "bad_catalogue",
    );
    v.bad(
        "catalogue",
        "_bad_catalogue_hold_p720h",
        &splice(canonical, b"\x04P30D", b"\x05P720H"),
        "bad_catalogue",
    );

    // Reports, in a batch.
    let statistic = &ex["report-statistic"];
    let record = &ex["report-record"];
    let stat_json = json!({"id": hex(&[7; 16]), "metric": "door.open", "time": DAY,
        "tag": tag_json("diagnostics", &["acme"], "P30D", None), "payload": {"statistic": {"grr": 1}}});
    let record_json = json!({"id": hex(&[8; 16]), "metric": "heating.kwh", "time": DAY,
        "tag": tag_json("service", &["acme"], "P1Y", Some(&ex["receipt-id"])),
        "payload": {"record": {"pseudonym": hex(&ex["pseudonym"]), "epoch": 680, "value": {"numeric": 7}}}});
    let batch = [&[2u8][..], statistic, record].concat();
    v.ok("batch", "batch_statistic_and_record", &batch, json!({"reports": [stat_json, record_json]}));
    v.ok("batch", "batch_statistic", &ex["batch"], json!({"reports": [stat_json]}));
    let one = |r: &[u8]| [&[1u8][..], r].concat();
    v.bad("batch", "_bad_batch_count_too_high", &[&[2u8][..], statistic].concat(), "malformed_batch");
    v.bad("batch", "_bad_batch_trailing_byte", &[batch.as_slice(), &[0]].concat(), "malformed_batch");
    v.bad("batch", "_bad_batch_hold_p12m", &one(&splice(record, b"\x03P1Y", b"\x04P12M")), "malformed_batch");
    v.bad(
        "batch",
        "_bad_batch_audience_unsorted",
        &one(&splice(statistic, b"\x01\x04acme", b"\x02\x04beta\x04acme")),
        "malformed_batch",
    );
    v.bad(
        "batch",
        "_bad_batch_audience_duplicate",
        &one(&splice(statistic, b"\x01\x04acme", b"\x02\x04acme\x04acme")),
        "malformed_batch",
    );
    let time = varint(DAY);
    let mut long_time = time.clone();
    *long_time.last_mut().unwrap() |= 0x80;
    long_time.push(0);
    v.bad(
        "batch",
        "_bad_batch_overlong_varint",
        &one(&splice(statistic, &time, &long_time)),
        "malformed_batch",
    );
    v.bad(
        "batch",
        "_bad_batch_metric_id_upper_case",
        &one(&splice(statistic, b"door.open", b"Door.open")),
        "malformed_batch",
    );
    let ldp = |r: &[u8]| [&statistic[..statistic.len() - 6], r].concat();
    v.bad("batch", "_bad_batch_unknown_ldp_variant", &one(&ldp(&[0, 7, 1, 0, 0, 0])), "malformed_batch");
    v.bad(
        "batch",
        "_bad_batch_duchi_bool_2",
        &one(&[&statistic[..statistic.len() - 5], &[6, 2][..]].concat()),
        "malformed_batch",
    );
    v.bad("batch", "_bad_batch_empty_bytes", &[], "malformed_batch");

    // Envelopes.
    let frame = &ex["envelope"];
    v.ok(
        "envelope",
        "envelope",
        frame,
        json!({"key_seed": hex(&[1; 32]), "ikm_e": hex(&[2; 32]), "key_id": 1, "aead_id": 3,
               "catalogue_digest": hex(&ex["catalogue-digest"]), "time_bucket": DAY, "plaintext": hex(&ex["body"])}),
    );
    let mut bit = frame.clone();
    bit[100] ^= 0x01;
    v.bad("envelope", "_bad_envelope_ciphertext_bit", &bit, "decrypt_failed");
    v.bad("envelope", "_bad_envelope_tag_bit", &flip_last(frame), "decrypt_failed");
    let mut hdr = frame.clone();
    hdr[42] ^= 0x01;
    v.bad("envelope", "_bad_envelope_header_bit", &hdr, "decrypt_failed");
    let mut version = frame.clone();
    version[0] = 2;
    v.bad("envelope", "_bad_envelope_version_2", &version, "malformed_envelope");
    v.bad("envelope", "_bad_envelope_truncated", &frame[..90], "malformed_envelope");
    let mut key = frame.clone();
    key[2] = 2;
    v.bad("envelope", "_bad_envelope_unknown_key", &key, "unknown_key");
    let sk = SecretKey::derive(&[0x01; 32]);
    let cfg = KeyConfig::new(KeyId(1), AeadId::ChaCha20Poly1305, sk.public_key(), t(DAY), t(1_767_225_600))
        .unwrap();
    let other_digest = HeaderFields { catalogue_digest: CatalogueDigest([0x42; 32]), time_bucket: t(DAY) };
    let wrong = envelope::seal(&cfg, &other_digest, &ex["body"], &mut Replay(vec![0x02; 32])).unwrap();
    v.bad("envelope", "_bad_envelope_other_catalogue", &wrong, "wrong_catalogue");

    // Consent messages.
    let receipt = &ex["receipt"];
    v.ok(
        "receipt",
        "receipt",
        receipt,
        json!({"signer_seed": hex(&subject_seed), "catalogue_version": 1, "catalogue_digest": hex(&ex["catalogue-digest"]),
               "subject_key": hex(&ex["subject-key"]), "recipient": "acme", "purpose": "service",
               "scope": {"metrics": ["heating.kwh"]}, "valid_from": DAY, "valid_until": null, "hold": "P1Y",
               "issued_at": DAY, "nonce": hex(&[5; 16]), "id": hex(&ex["receipt-id"])}),
    );
    const RECEIPT: &[u8] = b"confiance/receipt/v2\0";
    let body = unsigned(receipt);
    v.bad("receipt", "_bad_receipt_signature", &flip_last(receipt), "bad_signature");
    v.bad("receipt", "_bad_receipt_trailing_byte", &[receipt.as_slice(), &[0]].concat(), "bad_consent");
    v.bad("receipt", "_bad_receipt_version_1", &[&[1u8][..], &receipt[1..]].concat(), "bad_consent");
    v.bad(
        "receipt",
        "_bad_receipt_hold_p12m",
        &signed(RECEIPT, &splice(body, b"\x03P1Y", b"\x04P12M"), subject_seed),
        "bad_consent",
    );
    let two = splice(body, b"\x01\x0bheating.kwh", b"\x02\x09door.open\x0bheating.kwh");
    v.ok(
        "receipt",
        "receipt_two_metrics",
        &signed(RECEIPT, &two, subject_seed),
        json!({"signer_seed": hex(&subject_seed), "catalogue_version": 1, "catalogue_digest": hex(&ex["catalogue-digest"]),
               "subject_key": hex(&ex["subject-key"]), "recipient": "acme", "purpose": "service",
               "scope": {"metrics": ["door.open", "heating.kwh"]}, "valid_from": DAY, "valid_until": null, "hold": "P1Y",
               "issued_at": DAY, "nonce": hex(&[5; 16])}),
    );
    let unsorted = splice(body, b"\x01\x0bheating.kwh", b"\x02\x0bheating.kwh\x09door.open");
    v.bad("receipt", "_bad_receipt_scope_unsorted", &signed(RECEIPT, &unsorted, subject_seed), "bad_consent");
    let other_subject = splice(body, &ex["subject-id"], &[0; 32]);
    v.bad(
        "receipt",
        "_bad_receipt_subject_id",
        &signed(RECEIPT, &other_subject, subject_seed),
        "subject_key_mismatch",
    );
    let empty = splice(body, b"\x00\x01\x0bheating.kwh", b"\x00\x00");
    v.bad("receipt", "_bad_receipt_empty_scope", &signed(RECEIPT, &empty, subject_seed), "bad_consent");
    let from = varint(DAY);
    let inverted = splice(body, &[&from[..], &[0]].concat(), &[&from[..], &[1], &varint(DAY - 1)].concat());
    v.bad(
        "receipt",
        "_bad_receipt_inverted_validity",
        &signed(RECEIPT, &inverted, subject_seed),
        "bad_consent",
    );
    v.bad(
        "receipt",
        "_bad_receipt_signed_by_other_key",
        &signed(RECEIPT, body, device_seed),
        "bad_signature",
    );

    let withdrawal = &ex["withdrawal"];
    v.ok(
        "withdrawal",
        "withdrawal",
        withdrawal,
        json!({"signer_seed": hex(&device_seed), "receipt": hex(&[7; 32]), "subject_key": hex(&ex["subject-key"]),
               "at": 1_765_000_000u64, "issued_at": 1_765_000_000u64}),
    );
    v.bad("withdrawal", "_bad_withdrawal_signature", &flip_last(withdrawal), "bad_signature");
    v.bad("withdrawal", "_bad_withdrawal_version_3", &[&[3u8][..], &withdrawal[1..]].concat(), "bad_consent");
    v.bad(
        "withdrawal",
        "_bad_withdrawal_trailing_byte",
        &[withdrawal.as_slice(), &[0]].concat(),
        "bad_consent",
    );
    v.bad("withdrawal", "_bad_withdrawal_truncated", &withdrawal[..withdrawal.len() - 1], "bad_consent");

    let delegation = &ex["delegation"];
    v.ok(
        "delegation",
        "delegation",
        delegation,
        json!({"signer_seed": hex(&subject_seed), "device_key": hex(&ex["device-key"]), "valid_from": DAY,
               "valid_until": null, "issued_at": DAY}),
    );
    v.bad("delegation", "_bad_delegation_signature", &flip_last(delegation), "bad_signature");
    v.bad(
        "delegation",
        "_bad_delegation_signed_by_device",
        &signed(b"confiance/delegation/v2\0", unsigned(delegation), device_seed),
        "bad_signature",
    );
    let revocation = &ex["revocation"];
    v.ok(
        "revocation",
        "revocation",
        revocation,
        json!({"signer_seed": hex(&subject_seed), "device_key": hex(&ex["device-key"]), "at": 1_767_225_600u64,
               "issued_at": 1_767_225_600u64}),
    );
    v.bad("revocation", "_bad_revocation_signature", &flip_last(revocation), "bad_signature");
    let certificate = &ex["device-certificate"];
    v.ok(
        "device_certificate",
        "device_certificate",
        certificate,
        json!({"certifier_seed": hex(&[3u8; 32]), "key": hex(&ex["device-key"]), "model": "t3",
               "not_before": DAY, "not_after": DAY + 3_650 * 86_400, "id": hex(&ex["certificate-id"])}),
    );
    v.bad(
        "device_certificate",
        "_bad_device_certificate_signature",
        &flip_last(certificate),
        "bad_signature",
    );
    v.bad("device_certificate", "_bad_device_certificate_key", &flip_at(certificate, 40), "bad_signature");
    v.bad(
        "device_certificate",
        "_bad_device_certificate_trailing_byte",
        &[certificate.as_slice(), &[0]].concat(),
        "malformed_certificate",
    );
    v.bad(
        "device_certificate",
        "_bad_device_certificate_version_2",
        &[&[2u8][..], &certificate[1..]].concat(),
        "malformed_certificate",
    );
    // Validity inverted (not_after = not_before), re-signed: refused before the signature.
    let inverted = splice(unsigned(certificate), &varint(DAY + 3_650 * 86_400), &varint(DAY));
    v.bad(
        "device_certificate",
        "_bad_device_certificate_inverted_validity",
        &signed(b"confiance/device-certificate/v1\0", &inverted, [3; 32]),
        "malformed_certificate",
    );

    // Report tokens (§10): the request an issuer answers, and a token as spent.
    let tokens = token_example();
    let request = &ex["token-request"];
    let scope_json = json!({"recipients": ["calora"], "purpose": "product-improvement", "period": 20_833});
    v.ok(
        "token_request",
        "token_request",
        request,
        json!({"device_seed": hex(&[3; 32]), "scope": scope_json, "blinded": [hex(&tokens.request.blinded[0])]}),
    );
    let device_seed = [3u8; 32];
    let resign = |blinded: &[[u8; 32]]| {
        let mut body = postcard::to_allocvec(&(&tokens.request.device_key, &tokens.request.scope)).unwrap();
        body.extend(postcard::to_allocvec(&blinded.to_vec()).unwrap());
        let sig =
            ed25519_dalek::SigningKey::from_bytes(&device_seed).sign(&[TOKEN_REQUEST, &body[..]].concat());
        [&body[..], &sig.to_bytes()[..]].concat()
    };
    assert_eq!(&resign(&tokens.request.blinded), request, "the re-signer is the request's layout");
    v.bad("token_request", "_bad_token_request_signature", &flip_last(request), "bad_signature");
    v.bad(
        "token_request",
        "_bad_token_request_identity_element",
        &resign(&[[0; 32]]),
        "malformed_token_request",
    );
    v.bad(
        "token_request",
        "_bad_token_request_non_canonical_element",
        &resign(&[[0xff; 32]]),
        "malformed_token_request",
    );
    v.bad("token_request", "_bad_token_request_no_element", &resign(&[]), "malformed_token_request");
    v.bad(
        "token_request",
        "_bad_token_request_trailing_byte",
        &[request.as_slice(), &[0]].concat(),
        "malformed_token_request",
    );
    let mut other_scope = tokens.request.clone();
    other_scope.scope = TokenScope::new([id("calora")], id("product-improvement"), TokenPeriod(20_840));
    let other_period = resign_request(&other_scope, device_seed);
    v.bad("token_request", "_bad_token_request_period_not_open", &other_period, "period_not_open");
    other_scope.scope = TokenScope::new([id("calora")], id("fraud-prevention"), TokenPeriod(20_833));
    v.bad(
        "token_request",
        "_bad_token_request_unknown_scope",
        &resign_request(&other_scope, device_seed),
        "unknown_scope",
    );

    let spent = postcard::to_allocvec(&tokens.spent()).unwrap();
    let token_json = |t: &Token| {
        let b = t.to_bytes();
        // 0xC0F2 carries the element, 0xC0F1 the authenticator (§10.1).
        let last = if b[..2] == [0xc0, 0xf2] { "element" } else { "authenticator" };
        json!({"token_type": hex(&b[..2]), "nonce": hex(&b[2..34]), "scope_digest": hex(&b[34..66]),
               "key_id": hex(&b[66..98]), last: hex(&b[98..])})
    };
    v.ok(
        "spent_token",
        "spent_token",
        &spent,
        json!({"scope": scope_json, "token": token_json(&tokens.token)}),
    );
    let token_len = tokens.token.to_bytes().len();
    // Another valid element: the token's `N` plus the base point.
    let mut forged = tokens.token.to_bytes();
    let n = curve25519_dalek::ristretto::CompressedRistretto(forged[98..].try_into().unwrap())
        .decompress()
        .unwrap();
    forged[98..]
        .copy_from_slice((n + curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT).compress().as_bytes());
    v.bad(
        "spent_token",
        "_bad_spent_token_element",
        &[&spent[..spent.len() - token_len], &forged[..]].concat(),
        "token_invalid",
    );
    let mut other_key = tokens.token.to_bytes();
    other_key[66] ^= 1;
    v.bad(
        "spent_token",
        "_bad_spent_token_key_id",
        &[&spent[..spent.len() - token_len], &other_key[..]].concat(),
        "token_invalid",
    );
    let later = SpentToken {
        scope: TokenScope::new([id("calora")], id("product-improvement"), TokenPeriod(20_834)),
        token: tokens.token,
    };
    v.bad(
        "spent_token",
        "_bad_spent_token_other_period",
        &postcard::to_allocvec(&later).unwrap(),
        "token_scope",
    );

    // Envelope bodies: the token list, then the batch.
    v.ok("body", "body_no_token", &ex["body"], json!({"tokens": [], "reports": [stat_json]}));
    let with_token = [&ex["token-list"][..], &ex["batch"][..]].concat();
    v.ok(
        "body",
        "body_one_token",
        &with_token,
        json!({"tokens": [{"scope": scope_json, "token": hex(&tokens.token.to_bytes())}], "reports": [stat_json]}),
    );
    v.bad("body", "_bad_body_65_tokens", &[&[65u8][..], &ex["batch"][..]].concat(), "malformed_batch");
    v.bad("body", "_bad_body_token_truncated", &with_token[..100], "malformed_batch");
    v.bad(
        "body",
        "_bad_body_token_unknown_type",
        &splice(&with_token, b"\xc0\xf2", b"\xc0\xf3"),
        "malformed_batch",
    );
    v.bad(
        "body",
        "_bad_body_token_scope_unsorted",
        &splice(&with_token, b"\x01\x06calora", b"\x02\x06calora\x04acme"),
        "malformed_batch",
    );

    // Transcryption requests (§11).
    let treq = &ex["transcryption-request"];
    v.ok(
        "transcryption_request",
        "transcryption_request",
        treq,
        json!({"device_key": hex(&ex["device-key"]), "receipt": hex(&[7; 32]), "recipient": "acme", "epoch": 680,
               "signed": hex(&ex["transcryption-signed"])}),
    );
    let fixed = confiance::pseudonym::REQUEST_FIXED_LEN;
    let (flag_at, sig_at) = (fixed - 64 - 8 - 1, fixed - 64);
    v.bad(
        "transcryption_request",
        "_bad_transcryption_request_signature",
        &flip_at(treq, sig_at),
        "bad-signature",
    );
    v.bad(
        "transcryption_request",
        "_bad_transcryption_request_other_recipient",
        &[&treq[..fixed], b"acmf"].concat(),
        "bad-signature",
    );
    let mut other_epoch = treq.clone();
    other_epoch[sig_at - 1] ^= 1;
    v.bad("transcryption_request", "_bad_transcryption_request_other_epoch", &other_epoch, "bad-signature");
    let mut flag2 = treq.clone();
    flag2[flag_at] = 2;
    v.bad("transcryption_request", "_bad_transcryption_request_epoch_flag_2", &flag2, "encoding");
    let mut version = treq.clone();
    version[0] = 2;
    v.bad("transcryption_request", "_bad_transcryption_request_version_2", &version, "encoding");
    v.bad("transcryption_request", "_bad_transcryption_request_no_recipient", &treq[..fixed], "encoding");
    let mut identity_b = treq.clone();
    identity_b[1..33].fill(0);
    v.bad("transcryption_request", "_bad_transcryption_request_identity_b", &identity_b, "encoding");
    let mut non_canonical = treq.clone();
    non_canonical[33..65].fill(0xff);
    v.bad("transcryption_request", "_bad_transcryption_request_non_canonical_c", &non_canonical, "encoding");
    // The proof's z_r changed (still canonical) and the request signed again: only the
    // plaintext proof catches it.
    let mut zr = treq.clone();
    zr[97 + 64] ^= 1;
    let resigned = TranscryptionRequest::from_bytes(&zr).unwrap().signed_bytes();
    let sig = ed25519_dalek::SigningKey::from_bytes(&[2; 32]).sign(&resigned);
    zr[sig_at..fixed].copy_from_slice(&sig.to_bytes());
    v.bad("transcryption_request", "_bad_transcryption_request_plaintext_proof", &zr, "bad-plaintext-proof");

    // Checkpoints (text as UTF-8 bytes).
    let cp = String::from_utf8(ex["checkpoint"].clone()).unwrap();
    let root = merkle::leaf_hash(b"example");
    v.ok(
        "checkpoint",
        "checkpoint",
        cp.as_bytes(),
        json!({"origin": ORIGIN, "size": 6, "root": hex(&root), "time": DAY}),
    );
    let witness = confiance_aggregator::audit::sign_note(
        &cp[..cp.find("\n\n").unwrap() + 1],
        "witness.example",
        &ed25519_dalek::SigningKey::from_bytes(&[5; 32]),
    )
    .unwrap();
    let cosigned = format!("{cp}{}", &witness[witness.find("\n\n").unwrap() + 2..]);
    v.ok(
        "checkpoint",
        "checkpoint_cosigned",
        cosigned.as_bytes(),
        json!({"origin": ORIGIN, "size": 6, "root": hex(&root), "time": DAY}),
    );
    v.bad("checkpoint", "_bad_checkpoint_size", cp.replacen("\n6\n", "\n7\n", 1).as_bytes(), "bad_signature");
    v.bad(
        "checkpoint",
        "_bad_checkpoint_time",
        cp.replacen("time 1764460800", "time 1764460801", 1).as_bytes(),
        "bad_signature",
    );
    let b64_root = cp.lines().nth(2).unwrap();
    v.bad(
        "checkpoint",
        "_bad_checkpoint_hex_root",
        cp.replacen(b64_root, &hex(&root), 1).as_bytes(),
        "malformed_checkpoint",
    );
    v.bad(
        "checkpoint",
        "_bad_checkpoint_no_blank_line",
        cp.replacen("\n\n", "\n", 1).as_bytes(),
        "malformed_checkpoint",
    );
    let other = CheckpointSigner::from_secret_bytes(ORIGIN, &[0x06; 32]).unwrap();
    v.bad(
        "checkpoint",
        "_bad_checkpoint_other_key",
        other.sign(6, root, t(DAY)).to_text().as_bytes(),
        "bad_signature",
    );

    json!({
        "version": 1,
        "description": "confiance wire-format vectors (docs/wire-format.md). Valid cases carry the fields they are built from; _bad_ cases the error code the documented decoder answers.",
        "context": {
            "envelope": {"key_seed": hex(&[1; 32]), "key_id": 1, "aead_id": 3, "not_before": DAY,
                         "not_after": 1_767_225_600u64, "now": ENVELOPE_NOW,
                         "catalogue_digest": hex(&ex["catalogue-digest"])},
            "checkpoint": {"origin": ORIGIN, "public_key": hex(&ex["checkpoint-key"])},
            "token": {"scope_key": hex(&ex["token-scope-key"]), "now": 20_833u64 * 86_400 + 3_600,
                      "token_period": 86_400},
        },
        "cases": v.cases,
    })
}

const TOKEN_REQUEST: &[u8] = b"confiance/token-request/v1";

/// `request` (its signature ignored) signed again by the device key of `seed`.
fn resign_request(request: &TokenRequest, seed: [u8; 32]) -> Vec<u8> {
    let body = postcard::to_allocvec(&(&request.device_key, &request.scope, &request.blinded)).unwrap();
    let sig = ed25519_dalek::SigningKey::from_bytes(&seed).sign(&[TOKEN_REQUEST, &body[..]].concat());
    [&body[..], &sig.to_bytes()[..]].concat()
}

fn consent_code(e: &ConsentError) -> &'static str {
    // As the server answers (docs/wire-format.md §7).
    match e {
        ConsentError::BadSignature | ConsentError::BadKey => "bad_signature",
        ConsentError::SubjectKeyMismatch => "subject_key_mismatch",
        _ => "bad_consent",
    }
}

/// What the Rust decoders say of one case: `Ok` or the error code.
fn rust_verdict(kind: &str, bytes: &[u8], context: &Value) -> Result<(), &'static str> {
    let as_consent = |r: Result<(), ConsentError>| r.map_err(|e| consent_code(&e));
    match kind {
        "key_config" => KeyConfig::from_bytes(bytes).map(drop).map_err(|_| "malformed_key_config"),
        "catalogue" => Catalogue::from_canonical_bytes(bytes).map(drop).map_err(|_| "bad_catalogue"),
        "batch" => {
            decode_batch::<Report>(bytes, &BatchLimits::default()).map(drop).map_err(|_| "malformed_batch")
        }
        "envelope" => {
            let c = &context["envelope"];
            let sk = SecretKey::derive(&[0x01; 32]);
            let config = KeyConfig::new(
                KeyId(1),
                AeadId::ChaCha20Poly1305,
                sk.public_key(),
                t(c["not_before"].as_u64().unwrap()),
                t(c["not_after"].as_u64().unwrap()),
            )
            .unwrap();
            let mut keys = KeyStore::new(0);
            keys.insert(config, sk).unwrap();
            let digest =
                CatalogueDigest(unhex(c["catalogue_digest"].as_str().unwrap(), "digest").try_into().unwrap());
            keys.open(bytes, t(c["now"].as_u64().unwrap()), &digest)
                .map(drop)
                .map_err(|e| IngestError::Open(e).code())
        }
        "token_request" => {
            let ex = token_example();
            let cat = Catalogue::from_toml_str(include_str!("../examples/catalogue.toml")).unwrap();
            let mut issuer = Issuer::new(IssuerSecret::from_bytes([0x05; 32]), &cat).unwrap();
            let (request, rest) =
                postcard::take_from_bytes::<TokenRequest>(bytes).map_err(|_| "malformed_token_request")?;
            if !rest.is_empty() {
                return Err("malformed_token_request");
            }
            let mut rng = confiance::hazmat::SeededRng::seed_from_u64(2);
            issuer.issue(&request, &AllowAll, ex.now, &mut rng).map(drop).map_err(|e| e.code())
        }
        "spent_token" => {
            let ex = token_example();
            let (spent, rest) =
                postcard::take_from_bytes::<SpentToken>(bytes).map_err(|_| "malformed_batch")?;
            if !rest.is_empty() {
                return Err("malformed_batch");
            }
            ex.verifier.verify(&spent.scope, &spent.token, ex.now).map_err(|e| e.code())
        }
        "body" => decode_body::<Report>(bytes, &BatchLimits::default())
            .map_err(|_| "malformed_batch")
            .and_then(|(_, reports)| if reports.is_empty() { Err("malformed_batch") } else { Ok(()) }),
        "transcryption_request" => TranscryptionRequest::from_bytes(bytes)
            .and_then(|r| r.verify())
            .map_err(|e| confiance_aggregator::transcrypt::TranscryptError::from(e).code()),
        "receipt" => as_consent(SignedReceipt::from_bytes(bytes).map(drop)),
        "withdrawal" => as_consent(SignedWithdrawal::from_bytes(bytes).map(drop)),
        "delegation" => as_consent(SignedDelegation::from_bytes(bytes).map(drop)),
        "revocation" => as_consent(SignedRevocation::from_bytes(bytes).map(drop)),
        "device_certificate" => DeviceCertificate::from_bytes(bytes).map(drop).map_err(|e| e.code()),
        "checkpoint" => {
            let c = &context["checkpoint"];
            let pk: [u8; 32] = unhex(c["public_key"].as_str().unwrap(), "key").try_into().unwrap();
            let verifier = Verifier::new(
                c["origin"].as_str().unwrap(),
                ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap(),
            )
            .unwrap();
            let text = std::str::from_utf8(bytes).map_err(|_| "malformed_checkpoint")?;
            verifier.verify_checkpoint_text(text).map(drop).map_err(|e| match e {
                AuditError::BadSignature | AuditError::WrongOrigin => "bad_signature",
                _ => "malformed_checkpoint",
            })
        }
        other => panic!("unknown kind {other}"),
    }
}

#[test]
fn wire_vectors_hold_and_the_file_is_what_the_code_builds() {
    let built = build_vectors();
    let cases = built["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    for case in cases {
        let (kind, name) = (case["kind"].as_str().unwrap(), case["name"].as_str().unwrap());
        let bytes = unhex(case["hex"].as_str().unwrap(), name);
        let want = case["error"].as_str();
        let got = rust_verdict(kind, &bytes, &built["context"]);
        if got.err() != want {
            failures.push(format!("{kind} {name}: expected {want:?}, the code says {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let bad = cases.iter().filter(|c| c["error"].is_string()).count();
    assert!(bad >= 30 && cases.len() - bad >= 12, "{} cases, {bad} bad", cases.len());
    let text = serde_json::to_string_pretty(&built).unwrap() + "\n";
    if std::env::var_os("CONFIANCE_WRITE_VECTORS").is_some() {
        std::fs::write(VECTORS, &text).unwrap();
    }
    let file = std::fs::read_to_string(VECTORS).unwrap_or_default();
    assert!(
        file == text,
        "tests/vectors/wire.json differs from what the code builds; regenerate it with CONFIANCE_WRITE_VECTORS=1"
    );
}

//! An auditor's session against a running `confiance serve`, over HTTP only.
//!
//! The operator's part (first half) starts a server on loopback and lets a few hundred
//! thermostats give, and some withdraw, consent and send sealed statistics and service
//! records. The auditor's part (second half) holds nothing but an auditor token and the
//! log's published public key. It checks:
//!
//! 1. that two signed checkpoints, taken before and after more traffic, verify under the
//!    published key, and that the log between them only grew (RFC 9162 consistency proof);
//! 2. that sampled events are in the log (inclusion proofs against the later root);
//! 3. who sees each metric now, what is overdue, and whether any disclosure lacked consent;
//! 4. and it downloads the server's report (HTML, JSON, Markdown) and checks the JSON says
//!    the log was recomputed to a signed root.
//!
//! Run: `cargo run -p confiance-aggregator --example auditor_report [-- --out DIR]`
//! It writes `DIR/auditor-report.{html,json,md}` (default `out/`) and exits non-zero if a
//! check fails.

use std::path::PathBuf;

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{ConsentRequest, ConsentState, DeviceKey, Scope, SignedReceipt, SubjectKey};
use confiance::envelope::AeadId;
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{MetricId, PurposeId, RecipientId};
use confiance::pseudonym::DeviceSecret;
use confiance::recorder::{MemoryStorage, Recorder, RecorderParts, Value as DevValue};
use confiance_aggregator::audit::{CheckpointSigner, Hash, Verifier, merkle};
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::server::{Role, ServerConfig, TokenEntry, serve_until, unhex};
use confiance_aggregator::service::{Aggregator, AggregatorConfig};
use serde_json::Value;
use sha2::Digest as _;

const DAY: u64 = 86_400;
const DEVICES: u64 = 300;

type Fail = Box<dyn std::error::Error>;

/// A client with a bearer token; errors are answers, not failures.
struct Client {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl Client {
    fn new(base: &str, token: &str) -> Self {
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Self { agent, base: base.to_owned(), auth: format!("Bearer {token}") }
    }
    fn get_text(&self, path: &str) -> Result<(u16, String), Fail> {
        let mut r =
            self.agent.get(format!("{}{path}", self.base)).header("Authorization", &self.auth).call()?;
        Ok((r.status().as_u16(), r.body_mut().read_to_string()?))
    }
    fn get(&self, path: &str) -> Result<Value, Fail> {
        let (status, text) = self.get_text(path)?;
        let v: Value = serde_json::from_str(&text)?;
        if status == 200 { Ok(v) } else { Err(format!("GET {path}: {status} {v}").into()) }
    }
    fn post(&self, path: &str, body: &[u8]) -> Result<Value, Fail> {
        let mut r =
            self.agent.post(format!("{}{path}", self.base)).header("Authorization", &self.auth).send(body)?;
        let status = r.status().as_u16();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string()?)?;
        if status == 201 { Ok(v) } else { Err(format!("POST {path}: {status} {v}").into()) }
    }
}

fn id<T: std::str::FromStr>(s: &str) -> Result<T, Fail>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e: T::Err| format!("{s}: {e}").into())
}

fn hash_of(v: &Value) -> Result<Hash, Fail> {
    let bytes = v.as_str().and_then(unhex).ok_or("not a hex string")?;
    bytes.try_into().map_err(|_| "not a 32-byte hash".into())
}

fn main() -> Result<(), Fail> {
    let out_dir = std::env::args()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[0] == "--out")
        .map_or_else(|| PathBuf::from("out"), |w| PathBuf::from(&w[1]));
    std::fs::create_dir_all(&out_dir)?;

    // ---- The operator: a server on loopback, fed by simulated thermostats --------------
    let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    let now =
        Timestamp::from_secs(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs());
    let mut rng = SeededRng::seed_from_u64(7);
    let mut keys = KeyStore::new(DAY);
    let key_config = keys.generate(
        AeadId::ChaCha20Poly1305,
        now.saturating_sub_secs(14 * DAY),
        now.saturating_add_secs(DAY),
        &mut rng,
    )?;
    let db = out_dir.join("auditor-demo.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let agg = Aggregator::open(&db, catalogue.clone(), keys, AggregatorConfig::default())?;
    let signer = CheckpointSigner::generate("confiance.example/auditor", &mut rng)?;
    // What the operator publishes (a web page, a transparency report): origin and key.
    let published = Verifier::new(signer.origin(), signer.verifying_key())?;
    let token = |role: Role, recipient: Option<&str>, secret: &str| -> Result<TokenEntry, Fail> {
        let recipient = recipient.map(id).transpose()?;
        Ok(TokenEntry { role, recipient, sha256: sha2::Sha256::digest(secret).into() })
    };
    // Devices hold no bearer token: what they post is signed by keys their owners enrolled.
    let tokens = vec![token(Role::Auditor, None, "cf_auditor")?];
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        serve_until(
            agg,
            signer,
            ServerConfig::new(1 << 20, tokens),
            ([127, 0, 0, 1], 0).into(),
            |a| {
                let _ = addr_tx.send(a);
            },
            async {
                let _ = stop_rx.await;
            },
        )
    });
    let base = format!("http://{}", addr_rx.recv()?);
    let device = Client::new(&base, "-");

    let (calora, gridco): (RecipientId, RecipientId) = (id("calora")?, id("gridco")?);
    let (improve, grid, service): (PurposeId, PurposeId, PurposeId) =
        (id("product-improvement")?, id("grid-balancing")?, id("service")?);
    let (mode, setpoint, fault): (MetricId, MetricId, MetricId) =
        (id("thermostat.mode")?, id("thermostat.setpoint")?, id("thermostat.fault-code")?);
    let joined = now.saturating_sub_secs(10 * DAY);
    let mut devices = Vec::new();
    for i in 0..DEVICES {
        let mut r = SeededRng::seed_from_u64(1_000 + i);
        // The owner's phone holds the subject key and enrolls the thermostat's key.
        let (owner, key) = (SubjectKey::generate(&mut r), DeviceKey::generate(&mut r));
        let delegation = owner.delegate(key.public_key(), joined, None, joined)?;
        device.post("/v1/delegations", &delegation.to_bytes())?;
        let parts = RecorderParts {
            catalogue: catalogue.clone(),
            consent: ConsentState::delegated(key, delegation)?,
            pseudonyms: DeviceSecret::generate(&mut r),
            controller: calora.clone(),
            key_configs: vec![key_config],
            rng: SeededRng::seed_from_u64(i),
        };
        let mut d = Recorder::new(parts, MemoryStorage::default());
        let grants = [
            (calora.clone(), improve.clone(), vec![mode.clone(), setpoint.clone()], "P90D"),
            (gridco.clone(), grid.clone(), vec![mode.clone()], "P30D"),
            (calora.clone(), service.clone(), vec![fault.clone()], "P1Y"),
        ];
        let mut first = None;
        for (k, (to, why, metrics, hold)) in grants.into_iter().enumerate() {
            if k == 1 && i % 3 == 0 {
                continue; // a third of the owners keep the grid operator out
            }
            let receipt =
                d.give_consent(ConsentRequest::new(to, why, Scope::metrics(metrics), hold.parse()?), joined)?;
            device.post("/v1/receipts", &receipt)?;
            first.get_or_insert(SignedReceipt::from_bytes(&receipt)?.id());
        }
        for day in 0..10u64 {
            let t = joined.saturating_add_secs(day * DAY + 3_600 * (i % 24));
            let _ = d.record(&mode, &improve, DevValue::Category(((i + day) % 6) as u32), t);
            let _ = d.record(&mode, &grid, DevValue::Category(((i + day) % 6) as u32), t);
            let _ = d.record(&setpoint, &improve, DevValue::Int(180 + (i % 40) as i64), t);
        }
        let _ = d.record_service(&fault, DevValue::Int((i % 7) as i64), now.saturating_sub_secs(DAY));
        devices.push((d, first));
    }
    let send_all = |devices: &mut Vec<(Recorder<SeededRng, MemoryStorage>, _)>| -> Result<u64, Fail> {
        let mut sent = 0;
        for (d, _) in devices.iter_mut() {
            for frame in d.flush(now) {
                device.post("/v1/envelopes", &frame)?;
                d.acknowledge(&frame);
                sent += 1;
            }
        }
        Ok(sent)
    };
    let sent = send_all(&mut devices)?;
    println!("operator: {DEVICES} thermostats gave consent and sent {sent} envelopes to {base}");

    // ---- The auditor: an auditor token and the published key, nothing else ------------
    let auditor = Client::new(&base, "cf_auditor");
    let mut failures = Vec::new();
    let mut check = |ok: bool, what: String| {
        println!("  [{}] {what}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failures.push(what);
        }
    };
    println!("\nauditor:");
    let cp1 = auditor.get("/v1/audit/checkpoint")?;
    let old = published.verify_checkpoint_text(cp1["text"].as_str().ok_or("no checkpoint text")?);
    check(old.is_ok(), format!("checkpoint 1 (size {}) verifies under the published key", cp1["tree_size"]));

    // More happens: a tenth of the owners withdraw their first consent, the rest report.
    let mut withdrawn = 0;
    for (i, (d, first)) in devices.iter_mut().enumerate() {
        if i % 10 == 0
            && let Some(r) = first
        {
            let w = d.withdraw_consent(r, now.saturating_sub_secs(60))?;
            device.post("/v1/withdrawals", &w)?;
            withdrawn += 1;
        }
        let _ = d.record(&setpoint, &improve, DevValue::Int(200), now.saturating_sub_secs(30));
    }
    let sent2 = send_all(&mut devices)?;
    println!("  (meanwhile {withdrawn} owners withdrew consent and {sent2} more envelopes arrived)");

    let cp2 = auditor.get("/v1/audit/checkpoint")?;
    let new = published.verify_checkpoint_text(cp2["text"].as_str().ok_or("no checkpoint text")?);
    check(new.is_ok(), format!("checkpoint 2 (size {}) verifies under the published key", cp2["tree_size"]));
    let (Ok(old), Ok(new)) = (old, new) else { return Err("checkpoints do not verify".into()) };
    let proof = auditor.get(&format!("/v1/audit/consistency?old={}&new={}", old.size(), new.size()))?;
    let path: Vec<Hash> =
        proof["path"].as_array().ok_or("no path")?.iter().map(hash_of).collect::<Result<_, _>>()?;
    let grew = merkle::verify_consistency(old.size(), new.size(), &path, old.root(), new.root());
    check(
        grew.is_ok(),
        format!("the log only grew from {} to {} events (consistency proof)", old.size(), new.size()),
    );

    let mut included = 0;
    let samples: Vec<u64> = (0..16).map(|k| k * new.size() / 16).collect();
    for seq in &samples {
        let p = auditor.get(&format!("/v1/audit/inclusion?seq={seq}&tree_size={}", new.size()))?;
        let path: Vec<Hash> =
            p["path"].as_array().ok_or("no path")?.iter().map(hash_of).collect::<Result<_, _>>()?;
        // The auditor hashes the leaf bytes it is shown (the event, docs/wire-format.md §9)
        // rather than trusting the leaf hash it is told.
        let leaf_bytes = p["leaf"].as_str().and_then(unhex).ok_or("no leaf bytes")?;
        let leaf = merkle::leaf_hash(&leaf_bytes);
        let shown = confiance_aggregator::audit::LoggedEvent::from_leaf_bytes(&leaf_bytes)
            .is_ok_and(|e| e.seq == *seq && serde_json::to_value(&e.event).is_ok());
        included += u32::from(
            shown
                && hash_of(&p["leaf_hash"])? == leaf
                && merkle::verify_inclusion(&leaf, *seq, new.size(), &path, new.root()).is_ok(),
        );
    }
    check(
        included == 16,
        format!("{included}/16 sampled events, hashed from their bytes, are in the log (inclusion proofs)"),
    );

    for m in [&mode, &setpoint, &fault] {
        let ws = auditor.get(&format!("/v1/metrics/{m}/who-sees"))?;
        let line: Vec<String> = ws["entries"]
            .as_array()
            .ok_or("no entries")?
            .iter()
            .map(|e| {
                format!("{} ({} subjects)", e["recipient"].as_str().unwrap_or("?"), e["subjects_in_window"])
            })
            .collect();
        println!("  who sees {m}: {}", line.join(", "));
    }
    let overdue = auditor.get("/v1/overdue")?;
    let n_overdue = overdue["records"].as_array().map_or(0, Vec::len)
        + overdue["partitions"].as_array().map_or(0, Vec::len);
    check(n_overdue == 0, format!("{n_overdue} items held past their deadline"));
    let disclosures = auditor.get("/v1/disclosures")?;
    let unconsented = disclosures["disclosures"].as_array().map_or(0, Vec::len);
    check(unconsented == 0, format!("{unconsented} disclosures without a consent that covered them"));

    for format in ["html", "json", "markdown"] {
        let (status, text) = auditor.get_text(&format!("/v1/report?format={format}"))?;
        let ext = if format == "markdown" { "md" } else { format };
        let file = out_dir.join(format!("auditor-report.{ext}"));
        std::fs::write(&file, &text)?;
        check(
            status == 200,
            format!("report ({format}) written to {} ({} bytes)", file.display(), text.len()),
        );
        if format == "json" {
            let v: Value = serde_json::from_str(&text)?;
            check(
                v["log"]["checkpoint_verified"] == Value::Bool(true),
                format!("the report recomputed all {} events to a signed root", v["log"]["tree_size"]),
            );
        }
    }

    let _ = stop_tx.send(());
    server.join().map_err(|_| "server thread panicked")??;
    if failures.is_empty() {
        println!("\nevery check passed");
        Ok(())
    } else {
        Err(format!("{} checks failed: {}", failures.len(), failures.join("; ")).into())
    }
}

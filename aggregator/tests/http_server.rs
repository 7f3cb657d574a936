//! `confiance serve` as a separate process on a loopback port, driven by a real HTTP
//! client through every endpoint and role and through bad requests, each answered with
//! its documented status and error code (docs/http.md); then SIGTERM, and every
//! acknowledged envelope is in the database.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use confiance::Timestamp;
use confiance::consent::{ConsentRequest, Scope};
use confiance::envelope::EnvelopeId;
use confiance::hazmat::SeededRng;
use confiance::ids::MetricId;
use confiance::recorder::{MemoryStorage, Recorder, Value as DevValue};
use confiance_aggregator::server::{KeyFile, hex, unhex};
use confiance_aggregator::service::{Aggregator, AggregatorConfig};
use serde_json::{Value, json};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{catalogue, id, recorder};
#[path = "support/schemas.rs"]
mod schemas;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_confiance"))
}

fn cli(d: &Path, args: &[&str]) -> Value {
    let o = bin()
        .arg("--db")
        .arg(d.join("db.sqlite"))
        .arg("--keys")
        .arg(d.join("keys"))
        .args(["--catalogue", concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/catalogue.toml")])
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn now() -> Timestamp {
    Timestamp::from_secs(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
    )
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(d: &Path) -> Server {
    let mut child = bin()
        .arg("--db")
        .arg(d.join("db.sqlite"))
        .arg("--keys")
        .arg(d.join("keys"))
        .args(["--catalogue", concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/catalogue.toml")])
        .args(["serve", "--addr", "127.0.0.1:0", "--max-body", "65536"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line}")).to_owned();
    Server { child, base: format!("http://{addr}") }
}

struct Http {
    agent: ureq::Agent,
    base: String,
}

impl Http {
    fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<&[u8]>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Bearer {t}"));
        let r = match (method, body) {
            ("GET", _) => {
                let mut rq = self.agent.get(&url);
                if let Some(a) = &auth {
                    rq = rq.header("Authorization", a);
                }
                rq.call()
            }
            (_, b) => {
                let mut rq = self.agent.post(&url);
                if let Some(a) = &auth {
                    rq = rq.header("Authorization", a);
                }
                rq.send(b.unwrap_or(&[]))
            }
        };
        let mut r = r.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        // Every answer, success or error, against its schema in docs/schemas/ (docs/http.md).
        schemas::check_http(method, path, status, &v);
        (status, v)
    }
    fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.send("GET", path, Some(token), None)
    }
    fn post(&self, path: &str, token: &str, body: &[u8]) -> (u16, Value) {
        self.send("POST", path, Some(token), Some(body))
    }
}

#[track_caller]
fn refused(r: (u16, Value), status: u16, code: &str) {
    assert_eq!((r.0, r.1["error"]["code"].as_str()), (status, Some(code)), "{}", r.1);
    assert!(r.1["error"]["message"].is_string());
}

#[test]
fn every_endpoint_role_and_bad_request() {
    let d: PathBuf = std::env::temp_dir().join(format!("confiance-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    cli(&d, &["keygen"]);
    let tok = |args: &[&str]| {
        let mut a = vec!["token", "--role"];
        a.extend_from_slice(args);
        cli(&d, &a)["token"].as_str().unwrap().to_owned()
    };
    // Devices hold no bearer token (they sign what they post); the key file refuses the
    // old device role. What a device sends in the header is ignored.
    let o = bin()
        .arg("--keys")
        .arg(d.join("keys"))
        .args(["--catalogue", concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/catalogue.toml")])
        .args(["--json", "token", "--role", "device"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "the device role is gone");
    let device = String::from("no-token");
    let calora = tok(&["recipient", "--recipient", "calora"]);
    let gridco = tok(&["recipient", "--recipient", "gridco"]);
    let auditor = tok(&["auditor"]);
    let admin = tok(&["admin"]);
    // Tokens are stored hashed: the key file never holds one in clear.
    let keytext = std::fs::read_to_string(d.join("keys")).unwrap();
    assert!(!keytext.contains(&auditor) && !keytext.contains(&admin));

    let kf = KeyFile::read(&d.join("keys")).unwrap();
    let server = start(&d);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let h = Http { agent, base: server.base.clone() };

    assert_eq!(h.send("GET", "/v1/health", None, None), (200, json!({"status": "ok"})));
    assert_eq!(h.send("GET", "/v1/ready", None, None), (200, json!({"status": "ready"})));
    let (s, v) = h.send("GET", "/v1/keys", None, None);
    assert_eq!((s, v["keys"][0]["state"].as_str()), (200, Some("current")), "{v}");
    // The catalogue, public: its schema requires each anonymous metric's mechanism.
    let (s, v) = h.send("GET", "/v1/catalogue", None, None);
    assert_eq!((s, v["mechanisms"].as_object().map(|m| !m.is_empty())), (200, Some(true)), "{v}");

    // A device gives consent, records, seals; the server acknowledges each envelope after commit.
    let t = now();
    let mut dev = recorder(5, "calora", kf.hpke.iter().map(|(c, _)| *c).collect());
    let subject = hex(&dev.subject().0);
    let given = t.saturating_sub_secs(7_200);
    let receipt = |dev: &mut Recorder<SeededRng, MemoryStorage>, r: &str, p: &str, ms: &[&str]| {
        dev.give_consent(
            ConsentRequest::new(
                id(r),
                id(p),
                Scope::metrics(ms.iter().map(|m| id::<MetricId>(m))),
                "P90D".parse().unwrap(),
            ),
            given,
        )
        .unwrap()
    };
    let r1 = receipt(&mut dev, "calora", "product-improvement", &["thermostat.mode"]);
    let r2 = receipt(&mut dev, "calora", "service", &["thermostat.fault-code"]);
    let r3 = receipt(&mut dev, "gridco", "grid-balancing", &["thermostat.mode"]);
    let (s, v) = h.post("/v1/receipts", &device, &r1);
    assert_eq!(s, 201, "{v}");
    let grid_receipt = unhex(v["receipt"].as_str().unwrap()).unwrap();
    assert_eq!(h.post("/v1/receipts", &device, &r2).0, 201);
    let (s, v) = h.post("/v1/receipts", &device, &r3);
    assert_eq!(s, 201, "{v}");
    let r3_id = confiance::ids::ReceiptId(unhex(v["receipt"].as_str().unwrap()).unwrap().try_into().unwrap());
    let _ = grid_receipt;
    refused(h.post("/v1/receipts", &device, &r1), 409, "duplicate_receipt");
    refused(h.post("/v1/receipts", &device, b"not a receipt"), 400, "bad_consent");
    // Another subject enrolls a device, then revokes it (answers checked against their schemas).
    {
        use confiance::consent::{DeviceKey, SubjectKey};
        use confiance::hazmat::SeedableRng as _;
        let mut rng = SeededRng::seed_from_u64(77);
        let (sk, dk) = (SubjectKey::generate(&mut rng), DeviceKey::generate(&mut rng));
        let since = t.saturating_sub_secs(3_600);
        let del = sk.delegate(dk.public_key(), since, None, since).unwrap();
        let (s, v) = h.post("/v1/delegations", &device, &del.to_bytes());
        assert_eq!(s, 201, "{v}");
        let rev = sk.revoke(dk.public_key(), t, t);
        let (s, v) = h.post("/v1/revocations", &device, &rev.to_bytes());
        assert_eq!((s, v["revoked"].as_bool()), (201, Some(true)), "{v}");
    }

    let _ = dev.record(&id("thermostat.mode"), &id("product-improvement"), DevValue::Category(2), t);
    let _ = dev.record_service(&id("thermostat.fault-code"), DevValue::Int(7), t);
    let frames = dev.flush(t);
    assert!(!frames.is_empty());
    let mut acked = Vec::new();
    for f in &frames {
        let (s, v) = h.post("/v1/envelopes", &device, f);
        assert_eq!(s, 201, "{v}");
        assert!(v["reports"].as_u64().unwrap() >= 1);
        acked.push(v["envelope"].as_str().unwrap().to_owned());
    }
    // 1. Replayed envelope.
    refused(h.post("/v1/envelopes", &device, &frames[0]), 409, "replayed_envelope");
    // 2. Bad envelope: garbage, and a real one with its last byte flipped.
    refused(h.post("/v1/envelopes", &device, &[1, 2, 3]), 400, "malformed_envelope");
    let mut tampered = frames[0].clone();
    *tampered.last_mut().unwrap() ^= 1;
    refused(h.post("/v1/envelopes", &device, &tampered), 400, "decrypt_failed");
    // 3. Oversize body.
    let (s, v) = h.post("/v1/envelopes", &device, &vec![0u8; 70_000]);
    refused((s, v.clone()), 413, "body_too_large");
    // Refused from its Content-Length, it says the limit, as one cut while streaming does.
    assert_eq!(v["error"]["message"].as_str(), Some("request bodies are limited to 65536 bytes"), "{v}");
    // 4. Missing credentials, 5. bad token, 6. not a bearer header.
    refused(h.send("GET", "/v1/overdue", None, None), 401, "missing_credentials");
    refused(h.get("/v1/overdue", "cf_0000"), 401, "bad_token");
    {
        let mut r = h
            .agent
            .get(format!("{}/v1/overdue", h.base))
            .header("Authorization", "Basic Zm9vOmJhcg==")
            .call()
            .unwrap();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        refused((r.status().as_u16(), v), 401, "bad_credentials");
    }
    // 7. Wrong role: a device has no token to query with, a recipient may not override
    // a subject, an auditor may not purge.
    refused(h.get("/v1/overdue", &device), 401, "bad_token");
    refused(h.post(&format!("/v1/subjects/{subject}/override"), &calora, b""), 403, "wrong_role");
    refused(h.post("/v1/purge", &auditor, b""), 403, "wrong_role");
    // The refusal says which role the endpoint takes.
    let (_, v) = h.post("/v1/purge", &auditor, b"");
    assert_eq!(
        v["error"]["message"].as_str(),
        Some("an auditor token may not call this endpoint: it takes admin"),
        "{v}"
    );
    let (_, v) = h.get("/v1/report", &calora);
    assert_eq!(
        v["error"]["message"].as_str(),
        Some("a recipient token may not call this endpoint: it takes auditor or admin"),
        "{v}"
    );

    // Queries, auditor.
    let (s, v) = h.get(&format!("/v1/subjects/{subject}/access"), &auditor);
    assert_eq!(s, 200, "{v}");
    assert!(v["entries"].as_array().unwrap().iter().any(|e| e["recipient"] == "gridco"), "{v}");
    let (s, v) = h.get("/v1/metrics/thermostat.mode/who-sees", &auditor);
    assert_eq!(s, 200, "{v}");
    let (s, v) = h.get(&format!("/v1/history?subject={subject}"), &auditor);
    assert_eq!(s, 200);
    assert!(v["entries"].as_array().unwrap().len() >= 3, "{v}");
    assert_eq!(h.get("/v1/overdue", &auditor).0, 200);
    let (s, v) = h.get("/v1/disclosures", &auditor);
    assert_eq!((s, v["disclosures"].as_array().map(Vec::len)), (200, Some(0)));
    // Queries, recipient: only its own view.
    let (s, v) = h.get("/v1/recipients/calora/view", &calora);
    assert_eq!((s, v["recipient"].as_str()), (200, Some("calora")), "{v}");
    let check =
        format!("/v1/check?recipient=calora&metric=thermostat.fault-code&purpose=service&subject={subject}");
    let (s, v) = h.get(&check, &calora);
    assert_eq!((s, v["allowed"].as_bool()), (200, Some(true)), "{v}");
    // A recipient's history names subjects by its own alias (docs/http.md): the subject
    // consented to calora and gridco, and their histories, pooled, do not share an id.
    let subjects_in = |v: &Value| -> std::collections::BTreeSet<String> {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| Some(e["fact"]["subject"].as_str()?.to_owned()))
            .collect()
    };
    let alias = |recipient: &str| {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(b"confiance/recipient-subject/v1\0");
        h.update(recipient.as_bytes());
        h.update([0]);
        h.update(unhex(&subject).unwrap());
        hex(&h.finalize())
    };
    let (s, of_calora) = h.get("/v1/history?recipient=calora", &calora);
    let (s2, of_gridco) = h.get("/v1/history?recipient=gridco", &gridco);
    assert_eq!((s, s2), (200, 200));
    let (of_calora, of_gridco) = (subjects_in(&of_calora), subjects_in(&of_gridco));
    assert!(of_calora.contains(&alias("calora")) && of_gridco.contains(&alias("gridco")), "{of_calora:?}");
    assert!(of_calora.is_disjoint(&of_gridco), "{of_calora:?} {of_gridco:?}");
    assert!(!of_calora.contains(&subject) && !of_gridco.contains(&subject));
    // The auditor (and an admin) see the subject id itself.
    let (_, audited) = h.get("/v1/history?recipient=calora", &auditor);
    assert!(subjects_in(&audited).contains(&subject));
    // 8. A recipient asking for another recipient's view, check or history.
    refused(h.get("/v1/recipients/gridco/view", &calora), 403, "not_your_view");
    refused(h.get(&check, &gridco), 403, "not_your_view");
    refused(h.get(&format!("/v1/history?subject={subject}"), &gridco), 403, "not_your_view");
    // 9. Unknown metric, 10. unknown recipient, 11. bad subject, 12. bad time, 13. missing parameter.
    refused(h.get("/v1/metrics/no.such/who-sees", &auditor), 404, "unknown_metric");
    refused(h.get("/v1/recipients/nobody/view", &auditor), 404, "unknown_recipient");
    refused(h.get("/v1/subjects/xyz/access", &auditor), 400, "bad_subject");
    refused(h.get("/v1/overdue?now=yesterday", &auditor), 400, "bad_time");
    refused(h.get("/v1/check?recipient=calora", &auditor), 400, "missing_parameter");
    // 14. A parameter the endpoint does not take — a misspelt `as_known_at` — is refused,
    // never answered as of now; on every endpoint that reads a query string.
    let past = "as_know_at=2020-01-01T00:00:00Z";
    for path in [
        format!("/v1/subjects/{subject}/access?{past}"),
        format!("/v1/recipients/calora/view?{past}"),
        format!("/v1/metrics/thermostat.mode/who-sees?{past}"),
        format!("/v1/categories/usage/who-sees?{past}"),
        format!("/v1/diff?subject={subject}&from=0&to=1&{past}"),
        format!("{check}&{past}"),
        format!("/v1/history?subject={subject}&{past}"),
        format!("/v1/overdue?{past}"),
        format!("/v1/disclosures?{past}"),
        format!("/v1/report?{past}"),
        format!("/v1/subjects/{subject}/report?{past}"),
        format!("/v1/audit/inclusion?seq=0&{past}"),
        format!("/v1/audit/consistency?old=1&{past}"),
    ] {
        let (s, v) = h.get(&path, &auditor);
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("bad_parameter")), "{path}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("`as_know_at`") && msg.contains("takes"), "{path}: {msg}");
    }
    // A parameter given twice has no single meaning: refused, not the last one taken.
    for path in [
        format!("/v1/subjects/{subject}/access?at=0&at=2020-01-01T00:00:00Z"),
        "/v1/overdue?as_known_at=0&as_known_at=1".to_string(),
        "/v1/audit/inclusion?seq=0&seq=1".to_string(),
    ] {
        let (s, v) = h.get(&path, &auditor);
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("bad_parameter")), "{path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("twice"), "{path}: {v}");
    }
    // Who sees a data category; what changed in who sees what between two instants.
    let (s, v) = h.get("/v1/categories/usage/who-sees", &auditor);
    assert_eq!((s, v["target"]["category"].as_str()), (200, Some("usage")), "{v}");
    let pairs = |v: &Value, key: &str| -> Vec<(String, String)> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["recipient"].as_str().unwrap().to_owned(), e["metric"].as_str().unwrap().to_owned()))
            .collect()
    };
    let mode = |r: &str| (r.to_owned(), "thermostat.mode".to_owned());
    assert!(pairs(&v, "entries").contains(&mode("gridco")), "{v}");
    let before_consent = given.as_secs() - 60;
    let (s, v) =
        h.get(&format!("/v1/diff?subject={subject}&from={before_consent}&to={}", t.as_secs()), &auditor);
    assert_eq!(s, 200, "{v}");
    let gained = pairs(&v, "gained");
    assert!(gained.contains(&mode("gridco")) && gained.contains(&mode("calora")), "{v}");
    assert!(v["lost"].as_array().unwrap().is_empty(), "{v}");
    let (s, v) =
        h.get(&format!("/v1/diff?category=usage&from={before_consent}&to={}", t.as_secs()), &auditor);
    assert!(s == 200 && pairs(&v, "gained").contains(&mode("gridco")), "{v}");
    let (s, v) =
        h.get(&format!("/v1/diff?recipient=calora&from=2020-01-01T00:00:00Z&to={}", t.as_secs()), &calora);
    assert_eq!((s, v["of"]["recipient"].as_str()), (200, Some("calora")), "{v}");
    // 14. Bad diffs: another recipient's view, a subject's answer asked by a recipient, no
    // target or two, a missing or malformed instant, an unknown metric or category.
    let window = format!("from={before_consent}&to={}", t.as_secs());
    refused(h.get(&format!("/v1/diff?recipient=gridco&{window}"), &calora), 403, "not_your_view");
    refused(h.get(&format!("/v1/diff?subject={subject}&{window}"), &calora), 403, "not_your_view");
    refused(h.get(&format!("/v1/diff?metric=thermostat.mode&{window}"), &device), 401, "bad_token");
    refused(h.get(&format!("/v1/diff?{window}"), &auditor), 400, "missing_parameter");
    refused(
        h.get(&format!("/v1/diff?metric=thermostat.mode&category=usage&{window}"), &auditor),
        400,
        "missing_parameter",
    );
    refused(h.get("/v1/diff?metric=thermostat.mode&from=0", &auditor), 400, "missing_parameter");
    refused(h.get("/v1/diff?metric=thermostat.mode&from=0&to=soon", &auditor), 400, "bad_time");
    refused(h.get(&format!("/v1/diff?metric=no.such&{window}"), &auditor), 404, "unknown_metric");
    refused(h.get(&format!("/v1/diff?category=no-such&{window}"), &auditor), 404, "unknown_category");
    refused(h.get("/v1/categories/no-such/who-sees", &auditor), 404, "unknown_category");
    refused(h.get("/v1/categories/usage/who-sees?at=noon", &auditor), 400, "bad_time");
    refused(h.get("/v1/categories/usage/who-sees", &calora), 403, "wrong_role");
    // The catalogue diff: gridco no longer allowed the thermostat mode loses the grant it had.
    let narrower = include_str!("../../examples/catalogue.toml").replacen(
        r#"recipients = ["calora", "gridco"]"#,
        r#"recipients = ["calora"]"#,
        1,
    );
    let (s, v) = h.post("/v1/catalogue-diff", &auditor, narrower.as_bytes());
    assert_eq!(s, 200, "{v}");
    let removed = v["removed"].as_array().unwrap();
    assert!(
        removed.iter().any(|r| r["access"]["recipient"] == "gridco"
            && r["access"]["purpose"] == "grid-balancing"
            && r["grants"] == 1),
        "{v}"
    );
    assert!(v["added"].as_array().unwrap().is_empty(), "{v}");
    refused(h.post("/v1/catalogue-diff", &auditor, b"name = "), 400, "bad_catalogue");
    refused(h.post("/v1/catalogue-diff", &calora, narrower.as_bytes()), 403, "wrong_role");
    // 15. Unknown endpoint, 16. wrong method.
    refused(h.get("/v1/nothing", &auditor), 404, "not_found");
    refused(h.post("/v1/overdue", &auditor, b""), 405, "method_not_allowed");

    // Releases: JSON bodies.
    // One report is below the catalogue's minimum release size (30): 422, typed, nothing logged.
    let (s, v) = h.post("/v1/releases", &calora, br#"{"metric": "thermostat.mode"}"#);
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("too_few_reports")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("1 reports"), "{v}");
    // 17. Malformed JSON, 18. unknown field, 19. another recipient's release, 20. not allowed.
    refused(h.post("/v1/releases", &calora, b"{\"metric\": "), 400, "malformed_json");
    refused(
        h.post("/v1/releases", &calora, br#"{"metric": "thermostat.mode", "x": 1}"#),
        400,
        "malformed_json",
    );
    refused(
        h.post("/v1/releases", &calora, br#"{"metric": "thermostat.mode", "recipient": "gridco"}"#),
        403,
        "not_your_view",
    );
    refused(h.post("/v1/releases", &calora, br#"{"metric": "watch.activity"}"#), 403, "not_allowed");
    refused(h.post("/v1/releases", &calora, br#"{"metric": "no.such"}"#), 404, "unknown_metric");
    // The device recorded the mode for product improvement only: nothing is open to gridco.
    refused(
        h.post("/v1/releases", &admin, br#"{"metric": "thermostat.mode", "recipient": "gridco"}"#),
        404,
        "nothing_to_release",
    );
    let (s, v) = h.post("/v1/releases", &admin, br#"{"metric": "thermostat.mode", "recipient": "calora"}"#);
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("too_few_reports")), "{v}");
    // Records have no minimum count: the service record is released to calora, by calora
    // and by the admin on calora's behalf, each logged as a release.
    for token in [&calora, &admin] {
        let (s, v) =
            h.post("/v1/releases", token, br#"{"metric": "thermostat.fault-code", "recipient": "calora"}"#);
        assert_eq!(s, 200, "{v}");
    }

    // Withdrawal, then the check answers no.
    let w = dev.withdraw_consent(&r3_id, t).unwrap();
    let (s, v) = h.post("/v1/withdrawals", &device, &w);
    assert_eq!((s, v["withdrawn"].as_bool()), (201, Some(true)), "{v}");
    refused(h.post("/v1/withdrawals", &device, &w), 409, "already_withdrawn");
    // Errors about a withdrawal say "withdrawal", never call it a receipt (issue #16).
    let mut flipped = w.clone();
    *flipped.last_mut().unwrap() ^= 1;
    for (what, bytes, status, code) in [
        ("again", w.clone(), 409, "already_withdrawn"),
        ("truncated", w[..w.len() - 1].to_vec(), 400, "bad_consent"),
        ("a trailing byte", [&w[..], &[0]].concat(), 400, "bad_consent"),
        ("version 3", [&[3u8][..], &w[1..]].concat(), 400, "bad_consent"),
        ("a flipped signature bit", flipped, 403, "bad_signature"),
    ] {
        let r = h.post("/v1/withdrawals", &device, &bytes);
        let message = r.1["error"]["message"].as_str().unwrap_or_default().to_owned();
        refused(r, status, code);
        assert!(message.contains("withdrawal"), "{what}: {message}");
        assert!(
            !message.contains("receipt bytes") && !message.contains("receipt already"),
            "{what}: {message}"
        );
    }
    let (s, v) = h.get(
        &format!("/v1/check?recipient=gridco&metric=thermostat.mode&purpose=grid-balancing&subject={subject}&at={}", t.as_secs() + 1),
        &auditor,
    );
    assert_eq!(
        (s, v["allowed"].as_bool(), v["reason"].as_str()),
        (200, Some(false), Some("withdrawn")),
        "{v}"
    );

    // The withdrawal, seen as a loss between just before and just after it.
    let (s, v) = h.get(
        &format!("/v1/diff?subject={subject}&from={}&to={}", t.as_secs() - 1, t.as_secs() + 1),
        &auditor,
    );
    assert_eq!((s, pairs(&v, "lost")), (200, vec![mode("gridco")]), "{v}");

    // Audit log: checkpoint, inclusion and consistency proofs, verified here.
    let (s, cp) = h.get("/v1/audit/checkpoint", &calora);
    assert_eq!(s, 200);
    let size = cp["tree_size"].as_u64().unwrap();
    assert!(size >= 6, "{cp}");
    let verifier =
        confiance_aggregator::audit::Verifier::new(&kf.log_origin, kf.signer().unwrap().verifying_key())
            .unwrap();
    let signed = verifier.verify_checkpoint_text(cp["text"].as_str().unwrap()).unwrap();
    assert_eq!(hex(signed.root()), cp["root"].as_str().unwrap());
    let (s, inc) = h.get(&format!("/v1/audit/inclusion?seq=1&tree_size={size}"), &auditor);
    assert_eq!(s, 200, "{inc}");
    let path: Vec<[u8; 32]> = inc["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| unhex(p.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect();
    let leaf: [u8; 32] = unhex(inc["leaf_hash"].as_str().unwrap()).unwrap().try_into().unwrap();
    confiance_aggregator::audit::merkle::verify_inclusion(&leaf, 1, size, &path, signed.root()).unwrap();
    // The leaf bytes are answered with the event: they hash to the leaf and decode to
    // the event shown, at its sequence number (docs/wire-format.md §9).
    let leaf_bytes = unhex(inc["leaf"].as_str().unwrap()).unwrap();
    assert_eq!(confiance_aggregator::audit::merkle::leaf_hash(&leaf_bytes), leaf);
    let logged = confiance_aggregator::audit::LoggedEvent::from_leaf_bytes(&leaf_bytes).unwrap();
    assert_eq!(logged.seq, 1);
    let kind = |v: &Value| v.as_object().and_then(|o| o.keys().next().cloned());
    assert_eq!(kind(&serde_json::to_value(&logged.event).unwrap()), kind(&inc["event"]), "{inc}");
    // Issue #14, defect 9: a recipient reads its own events and those naming no party,
    // never another recipient's release (metric, window, partitions); a device reads no
    // party's event. The leaf hash and path are answered to everyone.
    let mut releases = 0;
    for seq in 0..size {
        let ask = |token: &str| {
            let (s, v) = h.get(&format!("/v1/audit/inclusion?seq={seq}&tree_size={size}"), token);
            assert_eq!(s, 200, "{v}");
            assert!(v["leaf_hash"].is_string() && v["path"].is_array(), "{v}");
            assert_eq!(
                v["leaf"].is_null(),
                v["event"].is_null(),
                "leaf bytes shown exactly with the event: {v}"
            );
            v["event"].clone()
        };
        let full = ask(&auditor);
        let (kind, body) = full.as_object().and_then(|o| o.iter().next()).unwrap();
        let party = body["recipient"].as_str();
        // (Devices hold no token: they read no event body at all.)
        for (token, name) in [(&calora, Some("calora")), (&gridco, Some("gridco"))] {
            let seen = ask(token);
            match kind.as_str() {
                "Release" | "Transcryption" if party == name => assert_eq!(seen, full),
                "Release" | "Transcryption" => assert!(seen.is_null(), "{name:?} read {full}"),
                "ConsentGiven" | "ConsentWithdrawn" if name.is_none() => assert!(seen.is_null(), "{full}"),
                "ConsentGiven" | "ConsentWithdrawn" => assert!(seen.is_null() || seen == full),
                // Enrollment events: the auditor only.
                "DeviceDelegated" | "DeviceRevoked" => assert!(seen.is_null(), "{name:?} read {full}"),
                _ => assert_eq!(seen, full, "{name:?}: an event naming no party"),
            }
        }
        releases += usize::from(kind == "Release");
    }
    assert!(releases >= 2, "calora's releases were checked: {releases}");
    let (s, con) = h.get(&format!("/v1/audit/consistency?old=2&new={size}"), &calora);
    assert_eq!((s, con["new_size"].as_u64()), (200, Some(size)), "{con}");
    // RFC 9162 defines consistency for 0 < old ≤ new (issue #14, defect 8).
    refused(h.get(&format!("/v1/audit/consistency?old=0&new={size}"), &auditor), 400, "bad_proof_request");
    refused(
        h.get(&format!("/v1/audit/inclusion?seq={}&tree_size={size}", size + 5), &auditor),
        400,
        "bad_proof_request",
    );

    // The auditor report: HTML with its charts, and JSON saying the log was recomputed to
    // a signed root; recipients may not have it, and an unknown format is refused.
    let raw = |path: &str, token: &str| {
        let mut r = h
            .agent
            .get(format!("{}{path}", h.base))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .unwrap();
        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        (r.status().as_u16(), ct, r.body_mut().read_to_string().unwrap())
    };
    let (s, ct, html) = raw("/v1/report", &auditor);
    assert_eq!((s, ct.as_str()), (200, "text/html; charset=utf-8"));
    assert!(html.starts_with("<!DOCTYPE html>") && html.matches("<svg").count() >= 3, "{html:.300}");
    let (s, ct, text) = raw("/v1/report?format=json", &auditor);
    assert_eq!((s, ct.as_str()), (200, "application/json"));
    let report: Value = serde_json::from_str(&text).unwrap();
    schemas::check_http("GET", "/v1/report?format=json", s, &report);
    assert_eq!(report["log"]["checkpoint_verified"], json!(true), "{:#}", report["log"]);
    assert!(report["log"]["tree_size"].as_u64().unwrap() >= size);
    assert!(report["access"].as_array().is_some_and(|a| !a.is_empty()), "{text:.300}");
    let (s, ct, md) = raw("/v1/report?format=markdown", &auditor);
    assert_eq!((s, ct.as_str(), md.starts_with('#')), (200, "text/markdown; charset=utf-8", true));
    refused(h.get("/v1/report", &calora), 403, "wrong_role");
    refused(h.get("/v1/report?format=pdf", &auditor), 400, "bad_parameter");
    refused(h.get("/v1/report?at=yesterday", &auditor), 400, "bad_time");
    // The subject's own report: HTML and JSON (its schema), auditors only.
    let (s, ct, page) = raw(&format!("/v1/subjects/{subject}/report"), &auditor);
    assert_eq!((s, ct.as_str()), (200, "text/html; charset=utf-8"));
    assert!(page.contains("Linked to you") && page.contains("records handed over"), "{page:.300}");
    let path = format!("/v1/subjects/{subject}/report?format=json");
    let (s, ct, text) = raw(&path, &auditor);
    assert_eq!((s, ct.as_str()), (200, "application/json"));
    let sr: Value = serde_json::from_str(&text).unwrap();
    schemas::check_http("GET", &path, s, &sr);
    assert_eq!(sr["subject"].as_str(), Some(subject.as_str()));
    assert!(sr["disclosures"].as_array().unwrap().len() >= 2, "{sr:#}");
    let w: Vec<_> =
        sr["consents"].as_array().unwrap().iter().filter(|c| c["withdrawn_at"].is_u64()).collect();
    assert_eq!(w.len(), 1, "the gridco consent was withdrawn: {sr:#}");
    refused(h.get(&format!("/v1/subjects/{subject}/report"), &calora), 403, "wrong_role");
    refused(h.get(&format!("/v1/subjects/{subject}/report?format=pdf"), &auditor), 400, "bad_parameter");
    refused(h.get("/v1/subjects/xyz/report", &auditor), 400, "bad_subject");
    // Reports read a snapshot copy of the database, removed once the report is written.
    let leftovers: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("snapshot"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Admin: purge (nothing is due yet) and every other role's endpoints.
    let (s, v) = h.post("/v1/purge", &admin, b"");
    assert_eq!((s, v["partitions"].as_u64()), (200, Some(0)), "{v}");
    assert_eq!(h.get("/v1/overdue", &admin).0, 200);
    // The lost-key recovery withdraws the subject's open receipts (calora's two).
    let (s, v) = h.post(&format!("/v1/subjects/{subject}/override"), &admin, br#"{"reason": "lost phone"}"#);
    assert_eq!((s, v["withdrawn"].as_array().map(Vec::len)), (200, Some(2)), "{v}");

    // Graceful shutdown on SIGTERM while 4 clients are posting envelopes: every envelope
    // answered 201 (before or during the shutdown) is in the database afterwards.
    let mut pending = Vec::new();
    for k in 0..120u64 {
        let mut dv = recorder(10_000 + k, "calora", kf.hpke.iter().map(|(c, _)| *c).collect());
        let r = receipt(&mut dv, "calora", "product-improvement", &["thermostat.mode"]);
        assert_eq!(h.post("/v1/receipts", &device, &r).0, 201);
        let _ = dv.record(&id("thermostat.mode"), &id("product-improvement"), DevValue::Category(1), t);
        pending.extend(dv.flush(t));
    }
    let pending = std::sync::Arc::new(pending);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (pending, next, base, device) =
                (pending.clone(), next.clone(), h.base.clone(), device.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent =
                    ureq::Agent::config_builder().http_status_as_error(false).build().into();
                let mut acked = Vec::new();
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(f) = pending.get(k) else { break };
                    let Ok(mut r) = agent
                        .post(format!("{base}/v1/envelopes"))
                        .header("Authorization", &format!("Bearer {device}"))
                        .send(&f[..])
                    else {
                        break; // the server is gone: nothing was acknowledged for this one
                    };
                    if r.status().as_u16() == 201 {
                        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
                        acked.push(v["envelope"].as_str().unwrap().to_owned());
                    }
                }
                acked
            })
        })
        .collect();
    while next.load(std::sync::atomic::Ordering::SeqCst) < 30 {
        std::thread::yield_now();
    }
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut server = server;
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let before = acked.len();
    for c in clients {
        acked.extend(c.join().unwrap());
    }
    assert!(acked.len() >= before + 25, "the clients were acknowledged before the shutdown");
    let agg = Aggregator::open(
        d.join("db.sqlite"),
        catalogue(),
        kf.key_store().unwrap(),
        AggregatorConfig::default(),
    )
    .unwrap();
    for a in &acked {
        let id = EnvelopeId(unhex(a).unwrap().try_into().unwrap());
        assert!(agg.has_envelope(&id).unwrap(), "acknowledged envelope {a} lost");
    }
    drop(agg);
    let _ = std::fs::remove_dir_all(&d);
}

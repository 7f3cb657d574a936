//! The `confiance` binary end to end: keygen → simulate → query → report → audit verify,
//! checking exit codes (0 ok, 1 refused/bad input, 2 usage) and the `--json` documents.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("confiance-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(d: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_confiance"))
        .arg("--db")
        .arg(d.join("db.sqlite"))
        .arg("--keys")
        .arg(d.join("keys"))
        .args(args)
        .output()
        .unwrap()
}

fn json(d: &Path, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let o = run(d, &a);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&o.stdout)))
}

fn error_code(o: &Output) -> String {
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["error"]["code"].as_str().unwrap().to_owned()
}

#[test]
fn keygen_simulate_query_report_verify() {
    let d = dir("flow");
    let k = json(&d, &["keygen"]);
    assert_eq!(k["key_config"].as_str().unwrap().len() % 2, 0);
    assert_eq!(k["log_public_key"].as_str().unwrap().len(), 64);
    // A second keygen would destroy the keys: refused with exit 1.
    let again = run(&d, &["--json", "keygen"]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(error_code(&again), "exists");

    let s = json(&d, &["simulate", "--devices", "24", "--days", "2", "--seed", "7"]);
    assert_eq!(s["devices"], 24);
    assert_eq!(s["receipts"], 24 + 12 + 8);
    assert!(s["envelopes"].as_u64().unwrap() >= 48);
    assert_eq!(s["estimate_released"], true);
    assert!(s["records_released"].as_u64().unwrap() > 0);
    let subject = s["sample_subjects"][0].as_str().unwrap().to_owned();

    // Subject 0 consented to calora (improvement, service) and gridco (grid), then withdrew gridco.
    let a = json(&d, &["query", "subject", &subject]);
    let recipients: Vec<&str> =
        a["entries"].as_array().unwrap().iter().map(|e| e["recipient"].as_str().unwrap()).collect();
    assert!(recipients.contains(&"calora"), "{a}");
    let v = json(&d, &["query", "recipient", "calora"]);
    assert_eq!(v["recipient"], "calora");
    assert!(!v["metrics"].as_array().unwrap().is_empty());
    let m = json(&d, &["query", "metric", "thermostat.fault-code"]);
    assert!(m["entries"].as_array().unwrap().iter().any(|e| e["recipient"] == "calora"));
    let c = json(
        &d,
        &[
            "query",
            "check",
            "--recipient",
            "calora",
            "--metric",
            "thermostat.fault-code",
            "--purpose",
            "service",
            "--subject",
            &subject,
        ],
    );
    assert_eq!(c["allowed"], true, "{c}");
    let c = json(
        &d,
        &[
            "query",
            "check",
            "--recipient",
            "gridco",
            "--metric",
            "thermostat.mode",
            "--purpose",
            "grid-balancing",
            "--subject",
            &subject,
        ],
    );
    assert_eq!(c["allowed"], false, "subject 0 withdrew its gridco consent: {c}");
    // A data category; what changed for the subject since before it consented; a
    // catalogue that no longer gives gridco the thermostat mode.
    let cat = json(&d, &["query", "category", "device-state"]);
    let pairs = |v: &Value, key: &str| -> Vec<(String, String)> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["recipient"].as_str().unwrap().to_owned(), e["metric"].as_str().unwrap().to_owned()))
            .collect()
    };
    let fault = ("calora".to_owned(), "thermostat.fault-code".to_owned());
    assert!(pairs(&cat, "entries").contains(&fault), "{cat}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let df = json(&d, &["query", "diff", "--subject", &subject, "--from", "0", "--to", &now.to_string()]);
    let gained = pairs(&df, "gained");
    assert!(gained.contains(&fault), "{df}");
    assert!(!gained.iter().any(|(r, _)| r == "gridco"), "gridco's consent was withdrawn: {df}");
    assert!(df["lost"].as_array().unwrap().is_empty(), "{df}");
    let narrower = include_str!("../../examples/catalogue.toml").replacen(
        r#"recipients = ["calora", "gridco"]"#,
        r#"recipients = ["calora"]"#,
        1,
    );
    std::fs::write(d.join("narrower.toml"), narrower).unwrap();
    let cd = json(&d, &["query", "catalogue-diff", d.join("narrower.toml").to_str().unwrap()]);
    assert!(
        cd["removed"].as_array().unwrap().iter().any(|r| r["access"]["recipient"] == "gridco"
            && r["access"]["metric"] == "thermostat.mode"
            && r["grants"].as_u64().unwrap() >= 1),
        "{cd}"
    );
    let h = json(&d, &["query", "history", "--subject", &subject]);
    assert!(h["entries"].as_array().unwrap().len() >= 3);
    let o = json(&d, &["query", "overdue"]);
    assert!(o["records"].as_array().unwrap().is_empty());
    let u = json(&d, &["query", "disclosures"]);
    assert!(u["disclosures"].as_array().unwrap().is_empty(), "every release was consented: {u}");

    for (fmt, needle) in [("html", "<svg"), ("json", "\"schema_version\""), ("markdown", "# ")] {
        let out = d.join(format!("report.{fmt}"));
        let r = json(&d, &["report", "--format", fmt, "--out", out.to_str().unwrap()]);
        assert_eq!(r["log_verified"], true);
        assert!(r["estimates"].as_u64().unwrap() > 0 && r["access_rows"].as_u64().unwrap() > 0, "{r}");
        assert!(std::fs::read_to_string(&out).unwrap().contains(needle), "{fmt}");
    }

    let cp = json(&d, &["audit", "checkpoint"]);
    std::fs::write(d.join("cp.txt"), cp["text"].as_str().unwrap()).unwrap();
    json(&d, &["simulate", "--devices", "3", "--days", "1", "--seed", "8"]);
    let ver = json(&d, &["audit", "verify", "--checkpoint", d.join("cp.txt").to_str().unwrap()]);
    assert_eq!(ver["verified"], true);
    assert_eq!(ver["consistent_with_checkpoint"], true);
    assert!(ver["tree_size"].as_u64().unwrap() > cp["tree_size"].as_u64().unwrap());

    // A tampered log (event 0 replaced by event 1) fails the audit: exit 1, `log_invalid`.
    // (An attacker with the file drops the append-only triggers first.)
    let conn = rusqlite::Connection::open(d.join("db.sqlite")).unwrap();
    let triggers: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_leaf'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for t in triggers {
        conn.execute_batch(&format!("DROP TRIGGER \"{t}\"")).unwrap();
    }
    let n = conn
        .execute("UPDATE audit_leaf SET leaf = (SELECT leaf FROM audit_leaf WHERE seq = 1) WHERE seq = 0", [])
        .unwrap();
    assert_eq!(n, 1);
    drop(conn);
    let o = run(&d, &["--json", "audit", "verify"]);
    assert_eq!((o.status.code(), error_code(&o).as_str()), (Some(1), "log_invalid"));
    let r = json(&d, &["report", "--format", "json", "--out", d.join("tampered.json").to_str().unwrap()]);
    assert_eq!(r["log_verified"], false, "the report shows the failed verification");

    // Human output is a table, not JSON.
    let t = run(&d, &["query", "recipient", "calora"]);
    assert_eq!(t.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&t.stdout).contains("metrics ("));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn exit_codes() {
    let d = dir("codes");
    // Usage errors: 2.
    assert_eq!(run(&d, &["frobnicate"]).status.code(), Some(2));
    assert_eq!(run(&d, &["query", "check", "--recipient", "calora"]).status.code(), Some(2));
    // No key file yet: bad input, 1.
    let o = run(&d, &["--json", "query", "overdue"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(error_code(&o), "bad_key_file");
    json(&d, &["keygen"]);
    // A read-only command given no database does not make one.
    let o = run(&d, &["--json", "query", "overdue"]);
    assert_eq!((o.status.code(), error_code(&o).as_str()), (Some(1), "no_database"));
    let o = run(&d, &["--json", "audit", "verify"]);
    assert_eq!((o.status.code(), error_code(&o).as_str()), (Some(1), "no_database"));
    assert!(!d.join("db.sqlite").exists());
    json(&d, &["purge"]);
    let o = run(&d, &["--json", "query", "recipient", "nobody"]);
    assert_eq!((o.status.code(), error_code(&o).as_str()), (Some(1), "unknown_recipient"));
    let o = run(&d, &["--json", "query", "subject", "zz"]);
    assert_eq!((o.status.code(), error_code(&o).as_str()), (Some(1), "bad_subject"));
    let o = run(&d, &["--json", "query", "metric", "no.such"]);
    assert_eq!((o.status.code(), error_code(&o).as_str()), (Some(1), "unknown_metric"));
    let o = run(&d, &["--json", "query", "category", "no-such"]);
    assert_eq!((o.status.code(), error_code(&o).as_str()), (Some(1), "unknown_category"));
    let o = run(&d, &["--json", "query", "diff", "--metric", "thermostat.mode", "--from", "x", "--to", "0"]);
    assert_eq!((o.status.code(), error_code(&o).as_str()), (Some(1), "bad_time"));
    let o = run(&d, &["--json", "query", "diff", "--from", "0", "--to", "1"]);
    assert_eq!((o.status.code(), error_code(&o).as_str()), (Some(1), "missing_parameter"));
    let two =
        ["query", "diff", "--metric", "thermostat.mode", "--category", "usage", "--from", "0", "--to", "1"];
    assert_eq!(run(&d, &two).status.code(), Some(2));
    std::fs::write(d.join("bad.toml"), "name = ").unwrap();
    let o = run(&d, &["--json", "query", "catalogue-diff", d.join("bad.toml").to_str().unwrap()]);
    assert_eq!((o.status.code(), error_code(&o).as_str()), (Some(1), "bad_catalogue"));
    // A garbage envelope file is refused, one result per envelope.
    std::fs::write(d.join("bad.env"), [1u8, 2, 3]).unwrap();
    let o = run(&d, &["--json", "ingest", d.join("bad.env").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let first: Value = serde_json::from_slice(o.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["refused"], 1);
    assert_eq!(first["results"][0]["code"], "malformed_envelope");
    // Framed stdin with a truncated prefix: 1.
    let mut c = Command::new(env!("CARGO_BIN_EXE_confiance"))
        .args(["--json", "--db"])
        .arg(d.join("db.sqlite"))
        .arg("--keys")
        .arg(d.join("keys"))
        .arg("ingest")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), &[0, 0]).unwrap();
    let o = c.wait_with_output().unwrap();
    assert_eq!((o.status.code(), error_code(&o).as_str()), (Some(1), "bad_framing"));
    let _ = std::fs::remove_dir_all(&d);
}

fn run_with(db: &Path, keys: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_confiance"))
        .arg("--db")
        .arg(db)
        .arg("--keys")
        .arg(keys)
        .arg("--json")
        .args(args)
        .output()
        .unwrap()
}

fn ok_with(db: &Path, keys: &Path, args: &[&str]) -> Value {
    let o = run_with(db, keys, args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn refused_with(o: &Output, code: &str) -> String {
    assert_eq!(
        (o.status.code(), error_code(o).as_str()),
        (Some(1), code),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["error"]["message"].as_str().unwrap().to_owned()
}

/// A database knows the key set and catalogue it was made with: another key file or
/// catalogue is refused naming both fingerprints until `identity adopt`; an empty or
/// foreign file is never taken for a new database.
#[test]
fn database_identity() {
    let d = dir("identity");
    let (db, keys_a, keys_b) = (d.join("db.sqlite"), d.join("a.keys"), d.join("b.keys"));
    ok_with(&db, &keys_a, &["keygen"]);
    ok_with(&db, &keys_b, &["keygen"]);
    ok_with(&db, &keys_a, &["purge"]);
    let shown = ok_with(&db, &keys_b, &["identity", "show"]);
    let (stored, given) =
        (shown["stored_key_set"].as_str().unwrap(), shown["given_key_set"].as_str().unwrap());
    assert_ne!(stored, given);
    assert_eq!(shown["matches"], false);
    // Another key file: refused, by every command, the message naming both key sets.
    for cmd in [&["purge"][..], &["query", "overdue"], &["audit", "checkpoint"]] {
        let msg = refused_with(&run_with(&db, &keys_b, cmd), "identity_mismatch");
        assert!(msg.contains(&stored[..16]) && msg.contains(&given[..16]), "{msg}");
    }
    // Another catalogue: refused too.
    let other = d.join("other.toml");
    let text = include_str!("../../examples/catalogue.toml").replacen(
        r#"recipients = ["calora", "gridco"]"#,
        r#"recipients = ["calora"]"#,
        1,
    );
    std::fs::write(&other, text).unwrap();
    let o = run_with(&db, &keys_a, &["--catalogue", other.to_str().unwrap(), "purge"]);
    refused_with(&o, "identity_mismatch");
    // A key rotation is explicit, and then the old key file is the one refused.
    let adopted = ok_with(&db, &keys_b, &["identity", "adopt"]);
    assert_eq!(adopted["changed"][0]["what"], "key_set");
    assert_eq!(adopted["changed"][0]["old"].as_str(), Some(stored));
    ok_with(&db, &keys_b, &["purge"]);
    refused_with(&run_with(&db, &keys_a, &["purge"]), "identity_mismatch");

    // A zero-length file, a text file, an SQLite database of something else: refused,
    // and left as they were.
    let empty = d.join("empty.sqlite");
    std::fs::write(&empty, b"").unwrap();
    refused_with(&run_with(&empty, &keys_a, &["purge"]), "not_a_database");
    refused_with(&run_with(&empty, &keys_a, &["query", "overdue"]), "not_a_database");
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
    let text = d.join("notes.txt");
    std::fs::write(&text, b"not a database at all, but long enough to have a header").unwrap();
    refused_with(&run_with(&text, &keys_a, &["purge"]), "not_a_database");
    let foreign = d.join("foreign.sqlite");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    refused_with(&run_with(&foreign, &keys_a, &["purge"]), "not_a_database");
    // Read-only commands given a missing database fail and create nothing.
    let missing = d.join("missing.sqlite");
    refused_with(&run_with(&missing, &keys_a, &["audit", "verify"]), "no_database");
    refused_with(&run_with(&missing, &keys_a, &["report", "--format", "json"]), "no_database");
    assert!(!missing.exists());
    let _ = std::fs::remove_dir_all(&d);
}

/// Key ids differ between key files; out-of-range arguments are usage errors; parallel
/// `token` runs each keep their token.
#[test]
fn keys_and_bounded_arguments() {
    let d = dir("keys");
    let db = d.join("db.sqlite");
    let ids: Vec<u64> = (0..3)
        .map(|i| ok_with(&db, &d.join(format!("k{i}")), &["keygen"])["key_id"].as_u64().unwrap())
        .collect();
    assert!(ids.iter().any(|&i| i != ids[0]), "every keygen made key id {}", ids[0]);
    for args in [
        &["keygen", "--force", "--days", "213503982334602"][..],
        &["keygen", "--force", "--days", "0"],
        &["serve", "--commit-wait-ms", "100000"],
        &["serve", "--commit-max", "0"],
        &["serve", "--max-body", "0"],
        &["serve", "--header-timeout-ms", "0"],
    ] {
        let o = run_with(&db, &d.join("k0"), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    // Eight token runs at once: each printed token is in the key file.
    let keys = d.join("k0");
    let runs: Vec<_> = (0..8)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_confiance"))
                .arg("--keys")
                .arg(&keys)
                .args(["--json", "token", "--role", "auditor"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let kf = |p: &Path| std::fs::read_to_string(p).unwrap();
    let mut tokens = Vec::new();
    for r in runs {
        let o = r.wait_with_output().unwrap();
        assert!(o.status.success());
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        tokens.push(v["token"].as_str().unwrap().to_owned());
    }
    let text = kf(&keys);
    for t in &tokens {
        use sha2::Digest as _;
        let h: String = sha2::Sha256::digest(t.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        assert!(text.contains(&h), "token {t} printed but not kept");
    }
    assert_eq!(text.matches("token = auditor").count(), 8);
    let _ = std::fs::remove_dir_all(&d);
}

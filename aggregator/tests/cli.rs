//! The `confiance` binary end to end: keygen → simulate → query → report → audit verify,
//! checking exit codes (0 ok, 1 refused/bad input, 2 usage) and the `--json` documents.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/tmpfs.rs"]
mod tmpfs;

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
    // `from_slice` refuses anything after the first document: exactly one is printed.
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&o.stdout)));
    if let Some(name) = schema_of(args) {
        check_schema(name, &v);
    }
    v
}

/// The schema in docs/schemas/ of a command's answer (docs/cli.md).
fn schema_of(args: &[&str]) -> Option<&'static str> {
    let words: Vec<&str> = args.iter().copied().filter(|a| !a.starts_with('-')).collect();
    let has = |flag: &str| args.contains(&flag);
    Some(match words.as_slice() {
        ["keygen", ..] => "keygen",
        ["token", ..] => "token",
        ["simulate", ..] => "simulate",
        ["purge", ..] => "purge",
        ["ingest", ..] => "ingest",
        ["release", ..] => "release",
        ["report", ..] if has("--out") => "report-written",
        ["audit", "checkpoint", ..] => "audit-checkpoint",
        ["audit", "verify", ..] => "audit-verify",
        ["identity", "show", ..] => "identity-show",
        ["identity", "adopt", ..] => "identity-adopt",
        ["query", "subject", ..] => "subject-access",
        ["query", "recipient", ..] => "recipient-view",
        ["query", "metric" | "category", ..] => "who-sees",
        ["query", "diff", ..] => "diff",
        ["query", "catalogue-diff", ..] => "catalogue-diff",
        ["query", "check", ..] => "check",
        ["query", "history", ..] => "history",
        ["query", "overdue", ..] => "overdue",
        ["query", "disclosures", ..] => "disclosures",
        _ => return None,
    })
}

/// Validates `v` against docs/schemas/NAME.schema.json (JSON Schema draft 2020-12).
fn check_schema(name: &str, v: &Value) {
    let path = format!("{}/../docs/schemas/{name}.schema.json", env!("CARGO_MANIFEST_DIR"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{path}: {e}"));
    let errors: Vec<String> =
        validator.iter_errors(v).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}\n{v}");
}

fn error_code(o: &Output) -> String {
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    check_schema(if v.get("results").is_some() { "ingest" } else { "error" }, &v);
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
    // The database holds the records and the period keys that open them: readable by
    // its owner only, like the key file (it was made 0644, readable by every local user).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.join("db.sqlite")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the database's mode is {mode:o}");
    }
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
    json(&d, &["release", "calora", "thermostat.mode"]);
    json(&d, &["release", "calora", "thermostat.fault-code"]);
    json(&d, &["identity", "show"]);

    // Every command in human form: tables, no JSON, no Rust debug text, times in RFC 3339.
    let now_s = now.to_string();
    let humans: [&[&str]; 14] = [
        &["query", "subject", &subject],
        &["query", "recipient", "calora"],
        &["query", "metric", "thermostat.mode"],
        &["query", "category", "device-state"],
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
        &["query", "history", "--subject", &subject],
        &["query", "diff", "--subject", &subject, "--from", "0", "--to", &now_s],
        &["query", "overdue"],
        &["query", "disclosures"],
        &["release", "calora", "thermostat.mode"],
        &["release", "calora", "thermostat.fault-code"],
        &["identity", "show"],
        &["audit", "checkpoint"],
        &["audit", "verify"],
    ];
    for args in humans {
        let o = run(&d, args);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(!text.trim().is_empty(), "{args:?}");
        assert_no_debug_text(&text);
        // (The checkpoint note's own `time` line is signed bytes, shown as they are.)
        if args[0] != "audit" {
            let epoch = now_s.get(..6).unwrap_or_default();
            assert!(!text.contains(&format!(" {epoch}")), "{args:?}: epoch seconds in a table:\n{text}");
        }
    }
    let r = String::from_utf8_lossy(&run(&d, &["query", "recipient", "calora"]).stdout).into_owned();
    let rfc3339 = |w: &str| w.len() == 20 && w.ends_with('Z') && w.as_bytes()[10] == b'T';
    assert!(r.contains("open — until withdrawn") && r.split_whitespace().any(rfc3339), "{r}");

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
    // Saved as people save it — `jq -r .text` adds a newline, an editor may write CRLF —
    // the note still reads: those bytes are after the signature, outside what is signed.
    let text = cp["text"].as_str().unwrap();
    for (name, saved) in [("jq.txt", format!("{text}\n")), ("crlf.txt", text.replace('\n', "\r\n"))] {
        std::fs::write(d.join(name), saved).unwrap();
        let ver = json(&d, &["audit", "verify", "--checkpoint", d.join(name).to_str().unwrap()]);
        assert_eq!(ver["consistent_with_checkpoint"], true, "{name}");
    }
    // The log of an older copy of the database, against a checkpoint signed since: it
    // lost events, and says so (not an out-of-range proof index).
    let older = d.join("older.sqlite");
    std::fs::copy(d.join("db.sqlite"), &older).unwrap();
    if d.join("db.sqlite-wal").exists() {
        std::fs::copy(d.join("db.sqlite-wal"), d.join("older.sqlite-wal")).unwrap();
    }
    json(&d, &["simulate", "--devices", "2", "--days", "1", "--seed", "9"]);
    let later = json(&d, &["audit", "checkpoint"]);
    std::fs::write(d.join("later.txt"), later["text"].as_str().unwrap()).unwrap();
    let o = run_with(
        &older,
        &d.join("keys"),
        &["audit", "verify", "--checkpoint", d.join("later.txt").to_str().unwrap()],
    );
    let msg = refused_with(&o, "log_invalid");
    assert!(msg.contains("events were lost since") && msg.contains("later.txt"), "{msg}");
    // A file that is no checkpoint: `bad_checkpoint`, naming the file, saying what it holds.
    std::fs::write(d.join("not-cp.txt"), "tree_size: 4\n").unwrap();
    let o = run(&d, &["audit", "verify", "--checkpoint", d.join("not-cp.txt").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not-cp.txt")
            && stderr(&o).contains("(bad_checkpoint)")
            && stderr(&o).contains("hint: the file holds the `text`"),
        "{}",
        stderr(&o)
    );

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
    json(&d, &["--catalogue", SAMPLE, "purge"]);
    // A purge dated ahead would forget report ids and spent tokens that can still come
    // back: refused, the database untouched.
    let before = std::fs::read(d.join("db.sqlite")).unwrap();
    let o = run(&d, &["--json", "purge", "--now", "2999-01-01T00:00:00Z"]);
    assert_eq!((o.status.code(), error_code(&o).as_str()), (Some(1), "purge_in_future"));
    assert_eq!(std::fs::read(d.join("db.sqlite")).unwrap(), before);
    json(&d, &["purge", "--now", "2001-01-01T00:00:00Z"]); // the past is fine
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

/// A full disk under the files a command would replace: `report --out`, `catalogue
/// compile --out` and `token` (the key file) fail with exit 3 and leave each file as it
/// was, as their "nothing was changed" says — `report --out` used to truncate the file
/// it replaced and leave part of the new report in it — and succeed once space is freed.
#[test]
fn a_full_disk_changes_no_file_a_command_would_replace() {
    let d = dir("full-out");
    let fs = d.join("fs");
    let _mount = match tmpfs::mount_tmpfs(&fs, "1m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    json(&d, &["keygen"]);
    json(&d, &["--catalogue", SAMPLE, "simulate", "--devices", "20", "--days", "2"]);
    let keys = fs.join("keys");
    std::fs::copy(d.join("keys"), &keys).unwrap();
    let full_db = fs.join("db.sqlite");
    std::fs::copy(d.join("db.sqlite"), &full_db).unwrap();
    let (report, compiled) = (fs.join("report.html"), fs.join("catalogue.bin"));
    // Small files an earlier run wrote, which a larger answer would replace.
    std::fs::write(&report, b"<p>an earlier report</p>").unwrap();
    std::fs::write(&compiled, b"an earlier catalogue").unwrap();
    let filler = tmpfs::fill(&fs);
    let db = d.join("db.sqlite");
    let full = |args: &[&str], file: &Path| {
        let before = std::fs::read(file).unwrap();
        let o = run_with(&db, &keys, args);
        assert_eq!(
            (o.status.code(), error_code(&o).as_str()),
            (Some(3), "internal"),
            "{args:?} on a full disk: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let after = std::fs::read(file).unwrap();
        assert!(
            after == before,
            "{args:?} left {} bytes in {}, not its {}",
            after.len(),
            file.display(),
            before.len()
        );
    };
    full(&["report", "--format", "html", "--out", report.to_str().unwrap()], &report);
    full(&["catalogue", "compile", "--out", compiled.to_str().unwrap()], &compiled);
    full(&["token", "--role", "auditor"], &keys);
    // A database on the full disk cannot even be opened (SQLite makes its `-shm` file):
    // the database failed, `store_failed` as over HTTP — not `internal`, which says a
    // bug or a corrupt file — and the file is left as it was.
    for args in [&["query", "overdue"][..], &["purge"], &["identity", "adopt"]] {
        let before = std::fs::read(&full_db).unwrap();
        let o = run_with(&full_db, &keys, args);
        assert_eq!(
            (o.status.code(), error_code(&o).as_str()),
            (Some(3), "store_failed"),
            "{args:?} on a full disk: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(std::fs::read(&full_db).unwrap() == before, "{args:?} changed the database");
    }
    let left: Vec<_> =
        std::fs::read_dir(&fs).unwrap().filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    assert!(left.iter().all(|n| !n.ends_with(".tmp")), "temporary files left: {left:?}");
    std::fs::remove_file(filler).unwrap();
    let written = ok_with(&db, &keys, &["report", "--format", "html", "--out", report.to_str().unwrap()]);
    assert_eq!(written["bytes"].as_u64(), Some(std::fs::metadata(&report).unwrap().len()));
    ok_with(&db, &keys, &["catalogue", "compile", "--out", compiled.to_str().unwrap()]);
    ok_with(&db, &keys, &["token", "--role", "auditor"]);
    drop(_mount);
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
    ok_with(&db, &keys_a, &["--catalogue", SAMPLE, "purge"]);
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
    // The device role is gone: refused, saying why and where the migration is written.
    let o = run_with(&db, &d.join("k0"), &["token", "--role", "device"]);
    refused_with(&o, "bad_role");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["error"]["hint"].as_str().is_some_and(|h| h.contains("\"Migration\"")), "{v}");
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

// ----- the operator's daily commands -------------------------------------------------

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/catalogue.toml");

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs with `input` on stdin.
fn run_stdin(d: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_confiance"))
        .arg("--db")
        .arg(d.join("db.sqlite"))
        .arg("--keys")
        .arg(d.join("keys"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), input).unwrap();
    c.wait_with_output().unwrap()
}

/// A table cell never holds Rust debug text or raw JSON.
fn assert_no_debug_text(text: &str) {
    for bad in ["Some(", "EnvelopeId(", "NotYetValid", "{\"", "\"kind\""] {
        assert!(!text.contains(bad), "`{bad}` in:\n{text}");
    }
}

/// What one delegated device sends: its delegation, two receipts (improvement: mode;
/// service: fault code), one envelope, a withdrawal of the improvement receipt, and
/// its subject's revocation of the device.
struct Outbox {
    subject: String,
    delegation: Vec<u8>,
    receipts: Vec<Vec<u8>>,
    envelopes: Vec<Vec<u8>>,
    withdrawal: Vec<u8>,
    revocation: Vec<u8>,
    /// The device's sent log after its flush (`Recorder::export_sent_log`).
    sent_log: Vec<u8>,
}

fn outbox(key_config_hex: &str) -> Outbox {
    use confiance::Timestamp;
    use confiance::catalogue::Catalogue;
    use confiance::consent::{ConsentRequest, ConsentState, DeviceKey, Scope, SignedReceipt, SubjectKey};
    use confiance::envelope::KeyConfig;
    use confiance::hazmat::{SeedableRng as _, SeededRng};
    use confiance::pseudonym::DeviceSecret;
    use confiance::recorder::{MemoryStorage, Recorder, RecorderParts, Value as V};

    let config = KeyConfig::from_bytes(&unhex(key_config_hex)).unwrap();
    let cat = Catalogue::from_toml_str(&std::fs::read_to_string(SAMPLE).unwrap()).unwrap();
    let mut rng = SeededRng::seed_from_u64(19);
    let subject = SubjectKey::generate(&mut rng);
    let device = DeviceKey::generate(&mut rng);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let day = Timestamp::from_secs(now - now % 86_400);
    let given = day.saturating_sub_secs(2 * 86_400);
    let device_pub = device.public_key();
    let delegation = subject.delegate(device_pub, given, None, given).unwrap();
    let parts = RecorderParts {
        catalogue: cat,
        consent: ConsentState::delegated(device, delegation.clone()).unwrap(),
        pseudonyms: DeviceSecret::generate(&mut rng),
        controller: "calora".parse().unwrap(),
        key_configs: vec![config],
        rng,
    };
    let mut d = Recorder::new(parts, MemoryStorage::default());
    let (mode, fault) = ("thermostat.mode".parse().unwrap(), "thermostat.fault-code".parse().unwrap());
    let improve = "product-improvement".parse().unwrap();
    let hold = "P90D".parse().unwrap();
    let r1 = d
        .give_consent(
            ConsentRequest::new("calora".parse().unwrap(), improve, Scope::metrics([mode]), hold)
                .valid_from(given),
            given,
        )
        .unwrap();
    let r2 = d
        .give_consent(
            ConsentRequest::new(
                "calora".parse().unwrap(),
                "service".parse().unwrap(),
                Scope::metrics([fault]),
                "P90D".parse().unwrap(),
            )
            .valid_from(given),
            given,
        )
        .unwrap();
    let t = day.saturating_sub_secs(86_400);
    d.record(&"thermostat.mode".parse().unwrap(), &"product-improvement".parse().unwrap(), V::Category(1), t)
        .unwrap();
    d.record_service(&"thermostat.fault-code".parse().unwrap(), V::Int(7), t).unwrap();
    let envelopes = d.flush(t.saturating_add_secs(3_600));
    assert!(!envelopes.is_empty());
    let sent_log = d.export_sent_log(t.saturating_add_secs(3_600));
    let improvement = SignedReceipt::from_bytes(&r1).unwrap().id();
    let withdrawal = d.withdraw_consent(&improvement, t.saturating_add_secs(7_200)).unwrap();
    let revocation = subject.revoke(device_pub, t.saturating_add_secs(10_000), t.saturating_add_secs(10_000));
    Outbox {
        subject: hex(&subject.subject_id().0),
        delegation: delegation.to_bytes(),
        receipts: vec![r1, r2],
        envelopes,
        withdrawal,
        revocation: revocation.to_bytes(),
        sent_log,
    }
}

/// `ingest` takes a device's whole outbox — delegation, receipts (one as hex text),
/// envelopes, withdrawal, and a revocation as a framed stream on stdin — from a
/// directory whose names sort envelopes first: kinds are told from the bytes and taken
/// in dependency order. Then the subject's access reads in words, and the service
/// record is released from the CLI.
#[test]
fn ingest_every_kind_then_release_records() {
    let d = dir("outbox");
    let k = json(&d, &["keygen"]);
    let o = outbox(k["key_config"].as_str().unwrap());
    let inbox = d.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    for (i, e) in o.envelopes.iter().enumerate() {
        std::fs::write(inbox.join(format!("a-envelope-{i}.bin")), e).unwrap();
    }
    std::fs::write(inbox.join("b-receipt-0.hex"), format!("{}\n", hex(&o.receipts[0]))).unwrap();
    std::fs::write(inbox.join("b-receipt-1.bin"), &o.receipts[1]).unwrap();
    std::fs::write(inbox.join("c-withdrawal.bin"), &o.withdrawal).unwrap();
    std::fs::write(inbox.join("d-delegation.bin"), &o.delegation).unwrap();
    std::fs::write(inbox.join(".hidden"), b"skipped").unwrap();
    let mut framed = (o.revocation.len() as u32).to_be_bytes().to_vec();
    framed.extend(&o.revocation);
    let out =
        run_stdin(&d, &["--json", "--catalogue", SAMPLE, "ingest", inbox.to_str().unwrap(), "-"], &framed);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("exactly one JSON document");
    let n = o.envelopes.len() as u64;
    assert_eq!((v["accepted"].as_u64(), v["refused"].as_u64()), (Some(n + 5), Some(0)), "{v}");
    for (kind, count) in
        [("delegation", 1), ("receipt", 2), ("envelope", n), ("withdrawal", 1), ("revocation", 1)]
    {
        assert_eq!(v["kinds"][kind].as_u64(), Some(count), "{kind}: {v}");
    }
    assert_eq!(v["reports"].as_u64(), Some(2), "{v}");
    let sources: Vec<&str> =
        v["results"].as_array().unwrap().iter().map(|r| r["source"].as_str().unwrap()).collect();
    assert_eq!(sources[0], "stdin#0");
    assert!(sources.iter().any(|s| s.ends_with("b-receipt-0.hex")), "{sources:?}");
    assert!(!sources.iter().any(|s| s.contains("hidden")));
    // Ingesting the same inbox again: every message refused as already known, each named.
    let again = run(&d, &["ingest", inbox.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    let text = stdout(&again);
    assert!(text.contains("refused: duplicate_delegation") && text.contains("b-receipt-1.bin"), "{text}");
    assert_no_debug_text(&text);
    assert!(stderr(&again).contains("messages refused"), "{}", stderr(&again));

    // The subject's access, as a table: the open service consent in words, times in RFC 3339.
    let t = run(&d, &["query", "subject", &o.subject]);
    let text = stdout(&t);
    assert_eq!(t.status.code(), Some(0), "{}", stderr(&t));
    assert!(text.contains("open — until withdrawn"), "{text}");
    assert!(text.contains("thermostat.fault-code"), "{text}");
    let header = text.lines().find(|l| l.contains("recipient") && l.contains("metric")).unwrap();
    assert!(
        header.find("recipient") < header.find("metric")
            && header.find("metric") < header.find("window_until")
    );
    assert!(text.lines().any(|l| l.starts_with("at: 20")), "{text}");
    assert_no_debug_text(&text);
    // JSON: the open window says so.
    let j = json(&d, &["query", "subject", &o.subject]);
    let fault =
        j["entries"].as_array().unwrap().iter().find(|e| e["metric"] == "thermostat.fault-code").unwrap();
    assert_eq!(fault["window_until"]["kind"], "open_until_withdrawn", "{j}");

    // Pseudonymous records are released from the CLI, and the release is a disclosure.
    let r = json(&d, &["release", "calora", "thermostat.fault-code"]);
    assert_eq!((r["kind"].as_str(), r["count"].as_u64()), (Some("records"), Some(1)), "{r}");
    assert_eq!(r["records"][0]["value"], 7);
    assert_eq!(r["records"][0]["pseudonym"].as_str().unwrap().len(), 64);
    let h = run(&d, &["release", "calora", "thermostat.fault-code"]);
    assert!(stdout(&h).contains("1 records of thermostat.fault-code released to calora"), "{}", stdout(&h));
    // One mode report is below the catalogue's minimum release size (30): refused, typed,
    // with the count, the minimum and a hint; nothing released.
    let few = run(&d, &["--json", "release", "calora", "thermostat.mode"]);
    let msg = refused_with(&few, "too_few_reports");
    assert!(msg.contains("1 reports") && msg.contains("30"), "{msg}");
    let e: Value = serde_json::from_slice(&few.stdout).unwrap();
    assert!(e["error"]["hint"].as_str().unwrap().contains("min_release_reports"));
    let few = run(&d, &["release", "calora", "thermostat.mode"]);
    assert_eq!(few.status.code(), Some(1));
    assert!(stderr(&few).contains("too_few_reports") && stderr(&few).contains("hint:"), "{}", stderr(&few));

    // The subject's own report (issue #19): the enrolled (since revoked) device, the
    // service record linked to them with its purpose and legal basis, open until they
    // withdraw, the withdrawn product-improvement consent, the record and both releases.
    let r = run(&d, &["report", "--subject", &o.subject, "--format", "json"]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let j: Value = serde_json::from_slice(&r.stdout).unwrap();
    check_schema("subject-report", &j);
    assert_eq!(j["subject"].as_str(), Some(o.subject.as_str()));
    assert_eq!(j["devices"].as_array().unwrap().len(), 1, "{j:#}");
    assert!(j["devices"][0]["revoked_at"].is_u64(), "{j:#}");
    let linked = j["linked"].as_array().unwrap();
    assert_eq!(linked.len(), 1, "{j:#}");
    let fault = &linked[0];
    assert_eq!(
        (fault["recipient"].as_str(), fault["metric"].as_str()),
        (Some("calora"), Some("thermostat.fault-code"))
    );
    assert_eq!(fault["purposes"][0]["purpose"], "service");
    assert!(!fault["purposes"][0]["legal_basis"].as_str().unwrap().is_empty(), "{fault}");
    assert_eq!((fault["open_until_withdrawn"].as_bool(), fault["hold"].as_str()), (Some(true), Some("P90D")));
    assert_eq!(fault["records_held"].as_u64(), Some(1), "{fault}");
    assert!(j["not_linked"].as_array().unwrap().is_empty(), "the mode consent was withdrawn: {j:#}");
    let consents = j["consents"].as_array().unwrap();
    assert_eq!(consents.len(), 2);
    let withdrawn: Vec<&str> = consents
        .iter()
        .filter(|c| c["withdrawn_at"].is_u64())
        .map(|c| c["purpose"].as_str().unwrap())
        .collect();
    assert_eq!(withdrawn, ["product-improvement"]);
    assert_eq!(j["records"].as_array().unwrap().len(), 1, "{j:#}");
    let releases = j["disclosures"].as_array().unwrap();
    assert_eq!(releases.len(), 2, "two releases of the record: {j:#}");
    assert!(releases.iter().all(|x| x["kind"] == "release" && x["recipient"] == "calora"));
    let h = run(&d, &["report", "--subject", &o.subject]);
    let page = stdout(&h);
    assert!(page.starts_with("<!DOCTYPE html>"), "{page:.200}");
    for needle in [
        "data-section=\"devices\"",
        "Linked to you",
        "Not linked to you",
        "until you withdraw your consent",
        "up to P90D after collection",
        "records handed over",
        "Your consents and withdrawals",
    ] {
        assert!(page.contains(needle), "{needle}");
    }
    assert_no_debug_text(&page);
    refused_with(&run(&d, &["--json", "report", "--subject", "xyz"]), "bad_subject");
    refused_with(
        &run(&d, &["--json", "report", "--subject", &o.subject, "--format", "markdown"]),
        "bad_parameter",
    );
    // Every row re-checks, the device's receipts and withdrawal against its delegation
    // (in force when they were signed, revoked only after).
    let v = json(&d, &["audit", "verify"]);
    let f = &v["signed_facts"];
    let counts = [&f["receipts"], &f["withdrawals"], &f["delegations"], &f["revocations"]];
    assert_eq!(counts, [2, 1, 1, 1], "{v}");
    let _ = std::fs::remove_dir_all(&d);
}

/// Each common mistake of docs/cli.md gets its code, its exit code, a message naming
/// the thing at fault and a hint — in human and JSON form.
#[test]
fn common_mistakes_have_messages_and_hints() {
    let d = dir("mistakes");
    json(&d, &["keygen"]);
    // A new database without --catalogue: refused, nothing created.
    let o = run(&d, &["purge"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("(missing_catalogue)") && stderr(&o).contains("hint: give the catalogue"),
        "{}",
        stderr(&o)
    );
    let msg = refused_with(&run(&d, &["--json", "purge"]), "missing_catalogue");
    assert!(msg.contains("db.sqlite"), "{msg}");
    assert!(!d.join("db.sqlite").exists());
    // `catalogue compile` makes no database: without one or --catalogue it says what it reads.
    let bin = d.join("catalogue.bin");
    let o = run(&d, &["catalogue", "compile", "--out", bin.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("no catalogue to compile")
            && stderr(&o).contains("hint: give the catalogue's TOML file"),
        "{}",
        stderr(&o)
    );
    refused_with(
        &run(&d, &["--json", "catalogue", "compile", "--out", bin.to_str().unwrap()]),
        "missing_catalogue",
    );
    assert!(!d.join("db.sqlite").exists() && !bin.exists());
    // Created with the catalogue, the database keeps it: later commands need none.
    json(&d, &["--catalogue", SAMPLE, "purge"]);
    json(&d, &["purge"]);
    let shown = json(&d, &["identity", "show"]);
    let compiled = json(&d, &["catalogue", "compile", "--out", bin.to_str().unwrap()]);
    assert_eq!(compiled["digest"], shown["stored_catalogue"], "the stored catalogue is compiled");
    assert_eq!(
        (shown["stored_catalogue_name"].as_str(), shown["matches"].as_bool()),
        (Some("confiance-fleet"), Some(true))
    );
    // Another catalogue: refused naming both names and versions.
    let other = d.join("v2.toml");
    std::fs::write(
        &other,
        std::fs::read_to_string(SAMPLE).unwrap().replacen("version = 1", "version = 2", 1),
    )
    .unwrap();
    let o = run(&d, &["--json", "--catalogue", other.to_str().unwrap(), "purge"]);
    let msg = refused_with(&o, "identity_mismatch");
    assert!(
        msg.contains("`confiance-fleet` version 1") && msg.contains("`confiance-fleet` version 2"),
        "{msg}"
    );
    // `serve` on an address another process listens on: the operator's to change (exit 1,
    // `bad_address`, a hint saying so), not an internal failure (exit 3).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = run(&d, &["serve", "--addr", &addr]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("(bad_address)") && stderr(&o).contains("hint: another process listens"),
        "{}",
        stderr(&o)
    );
    drop(taken);
    // An --out (or keygen's --keys) in no existing directory: the caller's to fix (exit 1,
    // `bad_file`, naming the path), not the disk failing (exit 3).
    let nowhere = d.join("no-such-dir").join("file");
    let nowhere = nowhere.to_str().unwrap();
    for cmd in [
        &["report", "--out", nowhere][..],
        &["report", "--subject", &"ab".repeat(32), "--out", nowhere],
        &["catalogue", "compile", "--out", nowhere],
    ] {
        let msg = refused_with(&run(&d, &[&["--json"][..], cmd].concat()), "bad_file");
        assert!(msg.contains("no-such-dir"), "{cmd:?}: {msg}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_confiance"))
        .args(["--json", "--keys", nowhere, "keygen"])
        .output()
        .unwrap();
    assert!(refused_with(&o, "bad_file").contains("no-such-dir"));
    // A token secret file that is not there: named, with how to make one.
    let o = run(&d, &["serve", "--addr", "127.0.0.1:0", "--token-secret", nowhere]);
    assert!(
        stderr(&o).contains("no-such-dir")
            && stderr(&o).contains("(bad_token_secret)")
            && stderr(&o).contains("openssl rand -hex 32"),
        "{}",
        stderr(&o)
    );
    // `identity` on a PostgreSQL URL: SQLite-only, said before any connection is tried
    // (port 1: nothing listens), never "no such database".
    for cmd in [&["identity", "show"][..], &["identity", "adopt"]] {
        let o = run_with(Path::new("postgres://confiance@127.0.0.1:1/confiance"), &d.join("keys"), cmd);
        let msg = refused_with(&o, "bad_parameter");
        assert!(msg.contains("a PostgreSQL database keeps none"), "{cmd:?}: {msg}");
    }
    // Wrong --db for a read-only command.
    let o = run_with(&d.join("nope.sqlite"), &d.join("keys"), &["query", "overdue"]);
    let msg = refused_with(&o, "no_database");
    assert!(msg.contains("nope.sqlite"), "{msg}");
    let o = Command::new(env!("CARGO_BIN_EXE_confiance"))
        .arg("--db")
        .arg(d.join("nope.sqlite"))
        .arg("--keys")
        .arg(d.join("keys"))
        .args(["query", "overdue"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("hint: check --db"), "{}", stderr(&o));
    // Wrong key file: another one, or none.
    ok_with(&d.join("db.sqlite"), &d.join("other.keys"), &["keygen"]);
    let o = run_with(&d.join("db.sqlite"), &d.join("other.keys"), &["purge"]);
    refused_with(&o, "identity_mismatch");
    let e: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(e["error"]["hint"].as_str().unwrap().contains("wrong key file"), "{e}");
    let o = run_with(&d.join("db.sqlite"), &d.join("missing.keys"), &["purge"]);
    refused_with(&o, "bad_key_file");
    let e: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(e["error"]["hint"].as_str().unwrap().contains("confiance keygen"), "{e}");
    // A malformed file: named, with what its bytes are and a hint; one JSON document.
    std::fs::write(d.join("notes.txt"), b"hello, this is not a message").unwrap();
    let o = run(&d, &["--json", "ingest", d.join("notes.txt").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).expect("exactly one JSON document");
    assert_eq!((v["refused"].as_u64(), v["error"]["code"].as_str()), (Some(1), Some("refused")));
    let r = &v["results"][0];
    assert_eq!(r["code"], "unrecognized");
    assert!(
        r["message"].as_str().unwrap().contains("notes.txt")
            && r["message"].as_str().unwrap().contains("0x68"),
        "{r}"
    );
    assert!(r["hint"].as_str().unwrap().contains("envelopes"), "{r}");
    let o = run(&d, &["ingest", d.join("notes.txt").to_str().unwrap()]);
    assert!(stdout(&o).contains("notes.txt") && stdout(&o).contains("hint: ingest takes"), "{}", stdout(&o));
    // A truncated stream: the file and the offset.
    std::fs::write(d.join("cut.bin"), [0u8, 0, 0, 9, 1, 2]).unwrap();
    let msg =
        refused_with(&run(&d, &["--json", "ingest", d.join("cut.bin").to_str().unwrap()]), "bad_framing");
    assert!(msg.contains("cut.bin") && msg.contains("byte 0"), "{msg}");
    let _ = std::fs::remove_dir_all(&d);
}

/// Shares outside [0, 1] from a small release are projected onto the simplex with the
/// raw estimates kept; the table rounds to 3 decimals and warns about the sample size.
#[test]
fn release_projects_shares_and_rounds() {
    let d = dir("shares");
    json(&d, &["keygen"]);
    let cat = d.join("min1.toml");
    std::fs::write(
        &cat,
        std::fs::read_to_string(SAMPLE).unwrap().replacen(
            "min_release_reports = 30",
            "min_release_reports = 1",
            1,
        ),
    )
    .unwrap();
    let c = cat.to_str().unwrap();
    json(&d, &["--catalogue", c, "simulate", "--devices", "4", "--days", "1", "--seed", "3"]);
    let r = json(&d, &["release", "calora", "thermostat.mode"]);
    assert_eq!((r["kind"].as_str(), r["statistic"].as_str()), (Some("estimate"), Some("share")), "{r}");
    let values = r["values"].as_array().unwrap();
    let (mut sum, mut moved) = (0.0, false);
    for v in values {
        let (x, raw) = (v["value"].as_f64().unwrap(), v["raw"].as_f64().unwrap());
        assert!((0.0..=1.0).contains(&x), "{v}");
        assert!(
            (0.0..=1.0).contains(&v["ci95_low"].as_f64().unwrap())
                && (0.0..=1.0).contains(&v["ci95_high"].as_f64().unwrap())
        );
        moved |= (x - raw).abs() > 1e-9;
        sum += x;
    }
    assert!((sum - 1.0).abs() < 1e-9, "shares sum to {sum}");
    assert_eq!(r["projected"].as_bool(), Some(moved));
    // With 4 reports and six labels the raw estimates cannot all be shares.
    assert!(values.iter().any(|v| !(0.0..=1.0).contains(&v["raw"].as_f64().unwrap())), "{r}");
    let h = run(&d, &["release", "calora", "thermostat.mode"]);
    let text = stdout(&h);
    assert!(
        text.contains("95% interval") && text.contains("projection") && text.contains("intervals are wide"),
        "{text}"
    );
    for word in text.split(|c: char| c.is_whitespace() || c == ',') {
        if let Some((_, frac)) = word.split_once('.')
            && word.trim_start_matches('-').chars().next().is_some_and(|c| c.is_ascii_digit())
        {
            assert!(frac.len() <= 3, "`{word}` in:\n{text}");
        }
    }
    assert_no_debug_text(&text);
    let _ = std::fs::remove_dir_all(&d);
}

/// `report --sent-log FILE` renders a real device's export (`Recorder::export_sent_log`)
/// as the subject report's view, with no database — only the catalogue: the fault-code
/// record linked to the subject (service, kept until collection + P90D), the mode
/// statistic not linked (product improvement); HTML in words, JSON against the subject
/// report's schema. A malformed file, an empty one and one read under another catalogue
/// are refused with a code naming the file, exit 1 (docs/cli.md).
#[test]
fn sent_log_report_renders_the_device_log() {
    let d = dir("sent-log");
    let k = json(&d, &["keygen"]);
    let o = outbox(k["key_config"].as_str().unwrap());
    let file = d.join("sent.log");
    std::fs::write(&file, &o.sent_log).unwrap();
    let file = file.to_str().unwrap();
    let r = run(&d, &["--catalogue", SAMPLE, "report", "--sent-log", file, "--format", "json"]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let j: Value = serde_json::from_slice(&r.stdout).unwrap();
    check_schema("subject-report", &j);
    assert_eq!(
        (j["source"].as_str(), j["subject"].as_str()),
        (Some("device_sent_log"), Some(o.subject.as_str()))
    );
    let linked = j["linked"].as_array().unwrap();
    assert_eq!(linked.len(), 1, "{j:#}");
    assert_eq!(
        (linked[0]["recipient"].as_str(), linked[0]["metric"].as_str(), linked[0]["records_held"].as_u64()),
        (Some("calora"), Some("thermostat.fault-code"), Some(1))
    );
    assert_eq!(linked[0]["purposes"][0]["purpose"], "service");
    assert!(!linked[0]["purposes"][0]["legal_basis"].as_str().unwrap().is_empty(), "{j:#}");
    // Kept until the record's bucket + P90D: within [collected + 90 days, + 91 days].
    let collected = j["records"][0]["collected_at"].as_u64().unwrap();
    let until = linked[0]["records_until"].as_u64().unwrap();
    assert!((collected + 90 * 86_400..=collected + 91 * 86_400).contains(&until), "{j:#}");
    assert_eq!(j["records"].as_array().unwrap().len(), 1, "{j:#}");
    assert_eq!(j["records"][0]["recipient"], "calora");
    let not_linked = j["not_linked"].as_array().unwrap();
    assert_eq!(not_linked.len(), 1, "the mode statistic, to calora only (consented): {j:#}");
    assert_eq!(
        (not_linked[0]["recipient"].as_str(), not_linked[0]["metric"].as_str()),
        (Some("calora"), Some("thermostat.mode"))
    );
    assert_eq!(not_linked[0]["purposes"][0]["purpose"], "product-improvement");
    assert!(j["consents"].as_array().unwrap().is_empty() && j["disclosures"].as_array().unwrap().is_empty());

    let h = run(&d, &["--catalogue", SAMPLE, "report", "--sent-log", file]);
    assert_eq!(h.status.code(), Some(0), "{}", stderr(&h));
    let page = stdout(&h);
    for needle in [
        "What your device sent",
        "Linked to you",
        "Not linked to you",
        "data-recipient=\"calora\" data-metric=\"thermostat.fault-code\"",
        "data-recipient=\"calora\" data-metric=\"thermostat.mode\"",
        "Records your device sent",
        "at the latest",
    ] {
        assert!(page.contains(needle), "{needle}");
    }
    assert!(!page.contains("Your consents and withdrawals"), "consents are the aggregator's to tell");
    assert_no_debug_text(&page);
    let w = json(
        &d,
        &["--catalogue", SAMPLE, "report", "--sent-log", file, "--out", d.join("s.html").to_str().unwrap()],
    );
    assert!(w["bytes"].as_u64().unwrap() > 1_000, "{w}");

    // Bad files: typed, the file named, exit 1 (`refused_with` checks the exit code).
    let bad = d.join("bad.log");
    for (bytes, what) in
        [(&b"\x01garbage"[..], "malformed"), (&b""[..], "empty"), (&b"\x07"[..], "version 7")]
    {
        std::fs::write(&bad, bytes).unwrap();
        let out = run(&d, &["--json", "--catalogue", SAMPLE, "report", "--sent-log", bad.to_str().unwrap()]);
        let msg = refused_with(&out, "bad_sent_log");
        assert!(msg.contains("bad.log"), "{what}: {msg}");
        let e: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(e["error"]["hint"].as_str().unwrap().contains("export_sent_log"), "{what}: {e}");
    }
    let missing =
        run(&d, &["--json", "--catalogue", SAMPLE, "report", "--sent-log", d.join("nope").to_str().unwrap()]);
    assert!(refused_with(&missing, "bad_sent_log").contains("nope"));
    // Another catalogue (the sample with another version) is refused, naming both.
    let other = d.join("other.toml");
    let text = std::fs::read_to_string(SAMPLE).unwrap();
    let line = text.lines().find(|l| l.starts_with("version")).unwrap();
    std::fs::write(&other, text.replacen(line, "version = 99", 1)).unwrap();
    let out = run(&d, &["--json", "--catalogue", other.to_str().unwrap(), "report", "--sent-log", file]);
    let msg = refused_with(&out, "catalogue_mismatch");
    assert!(msg.contains("sent.log") && msg.contains("v99"), "{msg}");
    // Markdown has no subject view; --subject and --sent-log exclude each other (usage, 2).
    refused_with(
        &run(&d, &["--json", "--catalogue", SAMPLE, "report", "--sent-log", file, "--format", "markdown"]),
        "bad_parameter",
    );
    let both = run(&d, &["report", "--sent-log", file, "--subject", &o.subject]);
    assert_eq!(both.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&d);
}

/// A backup made with `VACUUM INTO` is in rollback-journal mode: the read-only commands
/// read it as it is (they tried to switch it to WAL, a write: `internal`, exit 3), and the
/// first command that writes turns it back to WAL.
#[test]
fn read_only_commands_read_a_vacuum_into_backup() {
    let d = dir("vacuum-into");
    json(&d, &["keygen"]);
    json(
        &d,
        &[
            "--catalogue",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/catalogue.toml"),
            "simulate",
            "--devices",
            "20",
            "--days",
            "2",
        ],
    );
    let backup = d.join("backup.sqlite");
    let conn = rusqlite::Connection::open(d.join("db.sqlite")).unwrap();
    conn.execute("VACUUM INTO ?1", [backup.to_str().unwrap()]).unwrap();
    drop(conn);
    let mode = |p: &Path| -> String {
        let c = rusqlite::Connection::open_with_flags(p, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap()
    };
    assert_eq!(mode(&backup), "delete", "VACUUM INTO writes a rollback-journal database");
    let keys = d.join("keys");
    let verified = ok_with(&backup, &keys, &["audit", "verify"]);
    assert_eq!(verified["verified"], true, "{verified}");
    let original = json(&d, &["query", "overdue"]);
    assert_eq!(ok_with(&backup, &keys, &["query", "overdue"]), original);
    assert_eq!(mode(&backup), "delete", "a read-only command wrote nothing");
    ok_with(&backup, &keys, &["purge"]);
    assert_eq!(mode(&backup), "wal", "a writer sets WAL");
}

/// A log that lost its last consent events — a crash between the ledger's commit and the
/// log's, or events removed by hand — needs a repair that a read-only command cannot
/// make: `audit verify` says so (`needs_repair`, exit 1) instead of an internal error
/// asking to check the disk (before: exit 3, "attempt to write a readonly database").
/// A read-write command repairs it, and a checkpoint saved before still shows the loss.
#[test]
fn a_log_that_lost_consent_events_needs_a_repair_and_says_so() {
    let d = dir("needs-repair");
    json(&d, &["keygen"]);
    json(&d, &["--catalogue", SAMPLE, "simulate", "--devices", "3", "--days", "1"]);
    let cp = json(&d, &["audit", "checkpoint"]);
    std::fs::write(d.join("cp.txt"), cp["text"].as_str().unwrap()).unwrap();
    {
        // Cut the log at its last consent event (kind 0), the tree's nodes with it.
        let conn = rusqlite::Connection::open(d.join("db.sqlite")).unwrap();
        let cut: i64 = conn
            .query_row("SELECT max(seq) FROM audit_leaf WHERE substr(leaf, 1, 1) = x'00'", [], |r| r.get(0))
            .unwrap();
        conn.execute_batch(&format!(
            "DROP TRIGGER audit_leaf_no_delete; DROP TRIGGER audit_node_no_delete;
             DELETE FROM audit_leaf WHERE seq >= {cut};
             DELETE FROM audit_node WHERE ((idx + 1) << level) > {cut};"
        ))
        .unwrap();
    }
    let o = run(&d, &["--json", "audit", "verify"]);
    let msg = refused_with(&o, "needs_repair");
    assert!(msg.contains("read-only") && msg.contains("db.sqlite"), "{msg}");
    // Repaired by a read-write command: the consent event is appended again, and the
    // saved checkpoint no longer matches the log.
    json(&d, &["purge"]);
    assert_eq!(json(&d, &["audit", "verify"])["verified"], true);
    let o = run(&d, &["--json", "audit", "verify", "--checkpoint", d.join("cp.txt").to_str().unwrap()]);
    refused_with(&o, "log_invalid");
}

/// The ledger answers from its rows; the log holds only the facts' ids. `audit verify`
/// re-checks every receipt, withdrawal, delegation and revocation row against the signed
/// bytes it keeps and against the log's consent events: a receipt's signature altered in
/// the file, its recipient and purpose edited (a consent the subject never gave) and a
/// withdrawal row deleted (a consent revived) are `ledger_invalid` (before: `verified:
/// true`). A receipt, or a withdrawal, the ledger holds without its consent event (written
/// through the ledger alone, as a crash between two commits would leave it) is
/// `needs_repair` on SQLite — the read-only open's reconciliation would have to append
/// the event — until a read-write command appends it. (The same cases on PostgreSQL:
/// `pg_serve::audit_verify_re_checks_the_ledger_rows_on_postgres`.)
#[test]
fn audit_verify_re_checks_the_ledger_rows_against_their_signed_bytes() {
    let d = dir("signed-facts");
    json(&d, &["keygen"]);
    json(&d, &["--catalogue", SAMPLE, "simulate", "--devices", "20", "--days", "3"]);
    let v = json(&d, &["audit", "verify"]);
    let facts = &v["signed_facts"];
    assert!(facts["receipts"].as_u64().unwrap() > 0 && facts["withdrawals"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(facts["unsigned_receipts"], 0);
    let db = d.join("db.sqlite");
    let copy = |name: &str| {
        let copy = d.join(format!("{name}.sqlite"));
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute(&format!("VACUUM INTO '{}'", copy.display()), [])
            .unwrap();
        copy
    };
    let first_calora = "(SELECT min(seq) FROM ledger_receipt WHERE recipient = 'calora')";
    let flip = |c: &rusqlite::Connection| {
        let sql = format!("SELECT signed FROM ledger_receipt WHERE seq = {first_calora}");
        let mut signed: Vec<u8> = c.query_row(&sql, [], |r| r.get(0)).unwrap();
        *signed.last_mut().unwrap() ^= 1;
        let sql = format!("UPDATE ledger_receipt SET signed = ?1 WHERE seq = {first_calora}");
        c.execute(&sql, [signed]).unwrap();
    };
    let widen = |c: &rusqlite::Connection| {
        c.execute_batch(&format!(
            "UPDATE ledger_receipt SET recipient = 'lab-eu', purpose = 'research' WHERE seq = {first_calora}"
        ))
        .unwrap();
    };
    let revive = |c: &rusqlite::Connection| {
        c.execute_batch("DELETE FROM ledger_withdrawal WHERE seq = (SELECT min(seq) FROM ledger_withdrawal)")
            .unwrap();
    };
    // A record released to calora, hidden from the subject's report and from `query
    // history`, or moved to another recipient: the log's release event counts the
    // records it disclosed.
    let first_release = "(SELECT min(seq) FROM ledger_disclosure WHERE kind = 'release')";
    let hide = |c: &rusqlite::Connection| {
        c.execute_batch(&format!("DELETE FROM ledger_disclosure WHERE seq = {first_release}")).unwrap();
    };
    let redirect = |c: &rusqlite::Connection| {
        c.execute_batch(&format!(
            "UPDATE ledger_disclosure SET recipient = 'gridco' WHERE seq = {first_release}"
        ))
        .unwrap();
    };
    let cases: [(&str, &dyn Fn(&rusqlite::Connection), &str); 5] = [
        ("signature", &flip, "signed bytes"),
        ("widened", &widen, "is not what was signed"),
        ("revived", &revive, "the log holds it, the ledger does not"),
        ("hidden", &hide, "records to calora"),
        ("redirected", &redirect, "records to calora"),
    ];
    for (name, alter, says) in cases {
        let copy = copy(name);
        alter(&rusqlite::Connection::open(&copy).unwrap());
        let o = run_with(&copy, &d.join("keys"), &["audit", "verify"]);
        let msg = refused_with(&o, "ledger_invalid");
        assert!(msg.contains(says), "{name}: {msg}");
    }
    // Consent the ledger holds and the log does not.
    let gap = copy("gap");
    let t = confiance::Timestamp::from_secs(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
    );
    let mut dev = fixtures::recorder(900, "calora", vec![]);
    let request = confiance::consent::ConsentRequest::new(
        fixtures::id("calora"),
        fixtures::id("product-improvement"),
        confiance::consent::Scope::metrics([fixtures::id::<confiance::ids::MetricId>("thermostat.mode")]),
        "P90D".parse().unwrap(),
    );
    let bytes = dev.give_consent(request, t).unwrap();
    let ledger = |path: &Path| {
        confiance_aggregator::ledger::Ledger::open(
            rusqlite::Connection::open(path).unwrap(),
            fixtures::catalogue(),
        )
        .unwrap()
    };
    let receipt = ledger(&gap).ingest_receipt(&bytes, t).unwrap();
    let keys = d.join("keys");
    refused_with(&run_with(&gap, &keys, &["audit", "verify"]), "needs_repair");
    ok_with(&gap, &keys, &["purge"]);
    ok_with(&gap, &keys, &["audit", "verify"]);
    let w = dev.withdraw_consent(&receipt, t.saturating_add_secs(1)).unwrap();
    ledger(&gap).ingest_withdrawal(&w, t.saturating_add_secs(1)).unwrap();
    refused_with(&run_with(&gap, &keys, &["audit", "verify"]), "needs_repair");
    ok_with(&gap, &keys, &["purge"]);
    ok_with(&gap, &keys, &["audit", "verify"]);
}

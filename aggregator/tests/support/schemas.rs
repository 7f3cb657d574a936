//! Checks JSON answers against the JSON Schemas of docs/schemas/ (draft 2020-12), and
//! that byte strings in them are lowercase hex (included with
//! `#[path = "support/schemas.rs"] mod schemas;`; not a test crate of its own).

#![allow(dead_code, reason = "each test crate uses its own subset")]

use serde_json::Value;

/// Validates `v` against docs/schemas/NAME.schema.json, panicking with every violation.
#[track_caller]
pub fn check(name: &str, v: &Value) {
    let path = format!("{}/../docs/schemas/{name}.schema.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let schema: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let validator = jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{path}: {e}"));
    let errors: Vec<String> =
        validator.iter_errors(v).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}\n{v}");
}

/// The schema of the answer to `method path` with `status` (docs/http.md): every error
/// is `error`; `None` for answers that are not JSON (metrics, tokens, HTML reports).
pub fn of_http(method: &str, path: &str, status: u16) -> Option<&'static str> {
    if status >= 400 {
        return Some("error");
    }
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Some(match (method, segments.as_slice()) {
        ("GET", ["v1", "health" | "ready"]) => "status",
        ("GET", ["v1", "keys"]) => "keys",
        ("GET", ["v1", "catalogue"]) => "catalogue",
        ("POST", ["v1", "envelopes"]) => "envelope-accepted",
        ("POST", ["v1", "receipts"]) => "receipt-accepted",
        ("POST", ["v1", "withdrawals"]) => "withdrawal-accepted",
        ("POST", ["v1", "delegations"]) => "delegation-accepted",
        ("POST", ["v1", "device-certificates"]) => "certificate-accepted",
        ("POST", ["v1", "revocations"]) => "revocation-accepted",
        ("GET", ["v1", "token-keys"]) => "token-keys",
        ("POST", ["v1", "subjects", _, "override"]) => "override",
        ("POST", ["v1", "releases"]) => "release",
        ("POST", ["v1", "purge"]) => "purge",
        ("GET", ["v1", "subjects", _, "access"]) => "subject-access",
        ("GET", ["v1", "recipients", _, "view"]) => "recipient-view",
        ("GET", ["v1", "metrics" | "categories", _, "who-sees"]) => "who-sees",
        ("GET", ["v1", "diff"]) => "diff",
        ("POST", ["v1", "catalogue-diff"]) => "catalogue-diff",
        ("GET", ["v1", "check"]) => "check",
        ("GET", ["v1", "history"]) => "history",
        ("GET", ["v1", "overdue"]) => "overdue",
        ("GET", ["v1", "disclosures"]) => "disclosures",
        ("GET", ["v1", "audit", "checkpoint"]) => "audit-checkpoint",
        ("GET", ["v1", "audit", "inclusion"]) => "audit-inclusion",
        ("GET", ["v1", "audit", "consistency"]) => "audit-consistency",
        ("GET", ["v1", "report"]) if query.contains("format=json") => "report",
        ("GET", ["v1", "subjects", _, "report"]) if query.contains("format=json") => "subject-report",
        _ => return None,
    })
}

/// Checks an HTTP answer: its schema (if JSON) and lowercase-hex byte strings.
#[track_caller]
pub fn check_http(method: &str, path: &str, status: u16, v: &Value) {
    if let Some(name) = of_http(method, path, status) {
        check(name, v);
    }
    assert_hex_bytes(v, "$");
}

/// Panics on a byte string that is not lowercase hex: an array of 16 or more numbers
/// all in 0..=255 (a byte array serialized as numbers), or a hex-looking string of 16
/// or more characters with an uppercase digit.
#[track_caller]
pub fn assert_hex_bytes(v: &Value, at: &str) {
    match v {
        Value::Array(a) => {
            let bytes = a.len() >= 16 && a.iter().all(|x| x.as_u64().is_some_and(|n| n <= 255));
            assert!(!bytes, "{at}: a byte string as an array of numbers, not lowercase hex: {v}");
            for (i, x) in a.iter().enumerate() {
                assert_hex_bytes(x, &format!("{at}[{i}]"));
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                assert_hex_bytes(x, &format!("{at}.{k}"));
            }
        }
        Value::String(s) => {
            let hexish = s.len() >= 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
            assert!(!(hexish && s.bytes().any(|b| b.is_ascii_uppercase())), "{at}: uppercase hex {s}");
        }
        _ => {}
    }
}

//! Calling a real server on loopback: one request, its answer checked against its
//! schema in docs/schemas/ (docs/http.md), and refusals checked by code and `retry`.

use confiance::Timestamp;
use serde_json::Value;

#[path = "schemas.rs"]
mod schemas;

/// The wall clock, as the server reads it.
pub fn now() -> Timestamp {
    Timestamp::from_secs(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
    )
}

/// An answer: status, JSON (or `Null` for a binary body), raw body.
pub fn call(agent: &ureq::Agent, method: &str, url: &str, body: &[u8]) -> (u16, Value, Vec<u8>) {
    let r = if method == "GET" { agent.get(url).call() } else { agent.post(url).send(body) };
    let mut r = r.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = r.status().as_u16();
    let bytes = r.body_mut().read_to_vec().unwrap();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !v.is_null() {
        // Every JSON answer against its schema in docs/schemas/ (docs/http.md).
        let path = &url[url.find("/v1/").unwrap()..];
        schemas::check_http(method, path, status, &v);
    }
    (status, v, bytes)
}

/// `r` is the refusal `status` with error `code` and `retry`.
#[track_caller]
pub fn refused(r: &(u16, Value, Vec<u8>), status: u16, code: &str, retry: Option<bool>) {
    assert_eq!((r.0, r.1["error"]["code"].as_str()), (status, Some(code)), "{}", r.1);
    assert_eq!(r.1["error"]["retry"].as_bool(), retry, "{}", r.1);
}

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

/// A `serve_until` on loopback in its own thread, with `agg` and a checkpoint key of
/// `origin`: its base URL, and what stops it and waits for its end.
pub fn spawn_server(agg: confiance_aggregator::service::Aggregator, origin: &str) -> (String, impl FnOnce()) {
    use confiance_aggregator::audit::CheckpointSigner;
    use confiance_aggregator::server::{ServerConfig, serve_until};
    let (bound_tx, bound) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let signer = CheckpointSigner::from_secret_bytes(origin, &[3; 32]).unwrap();
    let server = std::thread::spawn(move || {
        serve_until(
            agg,
            signer,
            ServerConfig::new(1 << 16, Vec::new()),
            "127.0.0.1:0".parse().unwrap(),
            move |a| bound_tx.send(a).unwrap(),
            async move {
                let _ = stop_rx.await;
            },
        )
        .unwrap();
    });
    let base = format!("http://{}", bound.recv().unwrap());
    (base, move || {
        stop_tx.send(()).unwrap();
        server.join().unwrap();
    })
}

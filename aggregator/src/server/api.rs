//! Routes, authentication and handlers of the HTTP API (docs/http.md).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{MatchedPath, Path, Query as QueryParams, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use confiance::Timestamp;
use confiance::ids::RecipientId;
use confiance::token::{TokenPeriod, TokenRequest, TokenScope};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use super::query::{
    ApiError, DiffOf, Query, hexify, parse_catalogue, parse_category, parse_metric, parse_purpose,
    parse_recipient, parse_subject, parse_time, run_query,
};
use super::{Limits, Role, State, hex};
use crate::audit::AuditEvent;
use crate::ledger::Party;
use crate::report::{Format, GatherOptions, ReportData};
use crate::service::Aggregator;

type St = AxState<Arc<State>>;
type Params = Result<QueryParams<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;
type PathParam = Result<Path<String>, PathRejection>;

/// The code of an error answer, kept on the response for the request log.
#[derive(Clone, Copy, Debug)]
struct ErrorCode(&'static str);

/// Seconds a client is asked to wait before retrying a `503`.
const RETRY_AFTER_SECS: u32 = 2;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, axum::Json(self.to_json())).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if matches!(status, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT) {
            // The request's body was not read to its end, so the connection cannot carry
            // another request: say so (RFC 9112 §9.6), or a client that pools connections
            // sends its next request on one the server is closing ("peer disconnected").
            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r.extensions_mut().insert(ErrorCode(self.code));
        r
    }
}

/// Answers that a layer or an extractor made (a `413` from the body limit, a `408` from
/// the request deadline, a `400` from a malformed query…) in the documented JSON shape,
/// with a code by status.
async fn json_errors<B>(r: axum::http::Response<B>, max_body: usize) -> Response
where
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let status = r.status();
    if !(status.is_client_error() || status.is_server_error()) || r.extensions().get::<ErrorCode>().is_some()
    {
        return r.map(Body::new);
    }
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // Refused from its Content-Length: the same answer as a body cut while streaming.
        return ApiError::new(
            413,
            "body_too_large",
            format!("request bodies are limited to {max_body} bytes"),
        )
        .into_response();
    }
    let (code, message) = match status {
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took longer than the limit"),
        StatusCode::BAD_REQUEST => ("bad_request", "the request could not be read"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "unsupported content type"),
        StatusCode::SERVICE_UNAVAILABLE => ("overloaded", "the server is overloaded"),
        s if s.is_server_error() => ("internal", "internal error"),
        _ => ("bad_request", "the request was refused"),
    };
    ApiError::new(status.as_u16(), code, message).into_response()
}

/// One log line per request: method, route template (never the path itself, which can
/// hold a subject id), status, latency, error code and request id; never tokens, bodies
/// or query strings.
fn traced(router: Router, metrics: Arc<super::metrics::Metrics>) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|r: &Request<Body>| {
            let route = r.extensions().get::<MatchedPath>().map_or("(unmatched)", MatchedPath::as_str);
            let id =
                r.extensions().get::<RequestId>().and_then(|i| i.header_value().to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %r.method(), route = %route, request_id = %id)
        })
        .on_request(())
        .on_response(move |r: &Response, latency: core::time::Duration, _: &tracing::Span| {
            metrics.response(r.status().as_u16());
            let code = r.extensions().get::<ErrorCode>().map_or("-", |c| c.0);
            let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            tracing::info!(status = r.status().as_u16(), latency_us = micros, code = %code, "answered");
        })
        .on_failure(());
    router.layer(trace)
}

fn ok(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

/// Who is calling.
struct Principal {
    role: Role,
    recipient: Option<RecipientId>,
}

/// The token of an `Authorization: Bearer <token>` header; the scheme name is
/// case-insensitive (RFC 9110 §11.1).
fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let v = value.to_str().ok()?.trim_start();
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn authenticate(st: &State, headers: &HeaderMap, allowed: &[Role]) -> Result<Principal, ApiError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::new(401, "missing_credentials", "an `Authorization: Bearer` header is required")
    })?;
    let token = bearer_token(value)
        .ok_or_else(|| ApiError::new(401, "bad_credentials", "expected `Authorization: Bearer <token>`"))?;
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let mut found = None;
    for t in &st.config.tokens {
        if bool::from(t.sha256.ct_eq(&digest)) {
            found = Some(t);
        }
    }
    let t = found.ok_or_else(|| ApiError::new(401, "bad_token", "unknown token"))?;
    if !allowed.contains(&t.role) && t.role != Role::Admin {
        let mut needs: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        if !allowed.contains(&Role::Admin) {
            needs.push(Role::Admin.to_string());
        }
        let role = t.role.to_string();
        let article = if role.starts_with('a') { "an" } else { "a" };
        return Err(ApiError::new(
            403,
            "wrong_role",
            format!("{article} {role} token may not call this endpoint: it takes {}", needs.join(" or ")),
        ));
    }
    Ok(Principal { role: t.role, recipient: t.recipient.clone() })
}

/// A recipient may only ask about itself.
fn own(p: &Principal, recipient: &RecipientId) -> Result<(), ApiError> {
    match (&p.role, &p.recipient) {
        (Role::Recipient, Some(r)) if r != recipient => Err(ApiError::new(
            403,
            "not_your_view",
            format!("this token belongs to recipient `{r}`, not `{recipient}`"),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn now() -> Timestamp {
    Timestamp::from_secs(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    )
}

async fn with_agg<T, F>(st: &Arc<State>, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut Aggregator, &State) -> Result<T, ApiError> + Send + 'static,
{
    let st = Arc::clone(st);
    tokio::task::spawn_blocking(move || {
        let mut g = st.agg.lock().map_err(|_| ApiError::internal("aggregator lock poisoned"))?;
        // A shared (PostgreSQL) ledger: see what the other processes recorded first (one
        // query; a no-op on a ledger of this process's own).
        g.refresh_ledger().map_err(|e| ApiError::internal(format!("ledger: {e}")))?;
        f(&mut g, &st)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
}

/// Reads a body. Its size was bounded while it streamed (`RequestBodyLimitLayer`: a
/// larger `Content-Length` never reaches here, a longer stream is cut at the limit) and
/// so was the wait for each piece (`RequestBodyTimeoutLayer`).
async fn read_body(st: &State, body: Body) -> Result<Bytes, ApiError> {
    let limit = st.config.limits.max_body_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if cause_is::<tower_http::timeout::TimeoutError>(&e) {
            return ApiError::new(408, "body_timeout", "the request body stalled");
        }
        if cause_is::<http_body_util::LengthLimitError>(&e) {
            return ApiError::new(
                413,
                "body_too_large",
                format!("request bodies are limited to {limit} bytes"),
            );
        }
        ApiError::new(400, "bad_body", "the request body could not be read")
    })
}

/// Whether `e` or one of its sources is a `T`.
fn cause_is<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<T>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A path parameter, read after authentication (an invalid one is a JSON `400`).
fn path(p: PathParam) -> Result<String, ApiError> {
    p.map(|Path(s)| s).map_err(|e| ApiError::new(400, "bad_path", e.body_text()))
}

/// The query string, refused (`400 bad_parameter`) when it names a parameter the endpoint
/// does not take (a misspelt `as_known_at` must not silently answer as of now) or names
/// one twice (`at=1&at=2` has no single meaning).
fn params(p: Params, known: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let pairs = p.map(|QueryParams(v)| v).map_err(|e| ApiError::new(400, "bad_query", e.body_text()))?;
    let mut p: HashMap<String, String> = HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if p.contains_key(&k) {
            return Err(ApiError::new(400, "bad_parameter", format!("parameter `{k}` given twice")));
        }
        p.insert(k, v);
    }
    let mut unknown: Vec<&str> = p.keys().map(String::as_str).filter(|k| !known.contains(k)).collect();
    if unknown.is_empty() {
        return Ok(p);
    }
    unknown.sort_unstable();
    let list = |names: &[&str]| names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    Err(ApiError::new(
        400,
        "bad_parameter",
        format!("unknown parameter {}: this endpoint takes {}", list(&unknown), list(known)),
    ))
}

fn time_param(p: &HashMap<String, String>, name: &str, default: Timestamp) -> Result<Timestamp, ApiError> {
    p.get(name).map_or(Ok(default), |s| parse_time(s))
}

fn opt_time(p: &HashMap<String, String>, name: &str) -> Result<Option<Timestamp>, ApiError> {
    p.get(name).map(|s| parse_time(s)).transpose()
}

fn required<'a>(p: &'a HashMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    p.get(name)
        .map(String::as_str)
        .ok_or_else(|| ApiError::new(400, "missing_parameter", format!("`{name}` is required")))
}

/// The API with its layers, outermost first: a request id, the request log, JSON
/// errors, the body size limit, the request deadline and the body idle timeout; the
/// in-flight cap on every endpoint but the liveness and readiness probes, which answer
/// from memory and must not queue behind slow clients.
pub(crate) fn router(state: Arc<State>, limits: &Limits) -> Router {
    let layers = tower::ServiceBuilder::new()
        .layer(axum::middleware::map_response({
            let max_body = limits.max_body_bytes;
            move |r| json_errors(r, max_body)
        }))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body_timeout));
    let metrics = Arc::clone(&state.metrics);
    let routes = routes()
        .route_layer(tower::limit::GlobalConcurrencyLimitLayer::new(limits.max_in_flight.max(1)))
        .route("/v1/health", get(health))
        .route("/v1/ready", get(ready))
        .route("/v1/keys", get(get_keys))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(layers);
    traced(routes, metrics)
        .layer(axum::middleware::from_fn(close_after_unread_body))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_unfit_request_id))
}

/// Marks the answer `Connection: close` when it is sent before the request's body was
/// read to its end — authentication, the path and the query string are checked first,
/// so a refusal leaves the body unread — because hyper then ends the connection (the
/// next request would start inside the unread bytes). Said in the answer (RFC 9112
/// §9.6), a pooling client opens a new connection instead of losing its next request on
/// this one. A body read to its end keeps the connection.
async fn close_after_unread_body(r: Request<Body>, next: axum::middleware::Next) -> Response {
    use http_body::Body as _;
    let (parts, body) = r.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let body = Body::new(Watched { inner: body, ended: Arc::clone(&ended) });
    let mut answer = next.run(Request::from_parts(parts, body)).await;
    if !ended.load(std::sync::atomic::Ordering::SeqCst) {
        answer.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    answer
}

/// A request body that notes when it has been read to its end.
struct Watched {
    inner: Body,
    ended: Arc<std::sync::atomic::AtomicBool>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: core::pin::Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let polled = core::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, core::task::Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The longest client `X-Request-Id` kept.
const MAX_REQUEST_ID: usize = 64;

/// Removes a client's `X-Request-Id` that is not 1 to 64 letters, digits, `-`, `_` or
/// `.` (a fresh UUID replaces it): the id is written into the request log line, where
/// spaces or braces would let a client forge fields (`status=201`) and a long one
/// would bloat every line.
async fn drop_unfit_request_id(mut r: Request<Body>) -> Request<Body> {
    let fit = |v: &HeaderValue| {
        let b = v.as_bytes();
        (1..=MAX_REQUEST_ID).contains(&b.len())
            && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    };
    if r.headers().get("x-request-id").is_some_and(|v| !fit(v)) {
        r.headers_mut().remove("x-request-id");
    }
    r
}

fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/v1/catalogue", get(get_catalogue))
        .route("/v1/envelopes", post(post_envelope))
        .route("/v1/receipts", post(post_receipt))
        .route("/v1/withdrawals", post(post_withdrawal))
        .route("/v1/delegations", post(post_delegation))
        .route("/v1/device-certificates", post(post_certificate))
        .route("/v1/tokens", post(post_tokens))
        .route("/v1/token-keys", get(get_token_key))
        .route("/v1/revocations", post(post_revocation))
        .route("/v1/subjects/{subject}/override", post(post_override))
        .route("/v1/releases", post(post_release))
        .route("/v1/purge", post(post_purge))
        .route("/v1/subjects/{subject}/access", get(get_subject))
        .route("/v1/recipients/{recipient}/view", get(get_recipient))
        .route("/v1/metrics/{metric}/who-sees", get(get_metric))
        .route("/v1/categories/{category}/who-sees", get(get_category))
        .route("/v1/diff", get(get_diff))
        .route("/v1/catalogue-diff", post(post_catalogue_diff))
        .route("/v1/check", get(get_check))
        .route("/v1/history", get(get_history))
        .route("/v1/overdue", get(get_overdue))
        .route("/v1/disclosures", get(get_disclosures))
        .route("/v1/audit/checkpoint", get(get_checkpoint))
        .route("/v1/audit/inclusion", get(get_inclusion))
        .route("/v1/audit/consistency", get(get_consistency))
        .route("/v1/report", get(get_report))
        .route("/v1/subjects/{subject}/report", get(get_subject_report))
        .route("/metrics", get(get_metrics))
}

async fn not_found() -> ApiError {
    ApiError::new(404, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(405, "method_not_allowed", "method not allowed on this endpoint")
}

async fn health() -> Response {
    ok(StatusCode::OK, json!({"status": "ok"}))
}

/// Readiness: `503 not_ready` once the server is draining, so that a load balancer stops
/// sending before the connections close.
async fn ready(AxState(st): St) -> Response {
    if st.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        return ApiError::new(503, "not_ready", "the server is stopping").into_response();
    }
    ok(StatusCode::OK, json!({"status": "ready"}))
}

/// `GET /v1/catalogue`: the served catalogue — its digest (what a device puts in every
/// envelope header and every receipt), its canonical bytes (whose SHA-256 after the
/// domain prefix is the digest, docs/wire-format.md §8) and its TOML. Public, like the
/// keys: a device needs it before it can seal.
async fn get_catalogue(AxState(st): St) -> Response {
    let c = &st.catalogue;
    ok(
        StatusCode::OK,
        json!({
            "name": c.name(),
            "version": c.version(),
            "digest": hex(c.digest().as_bytes()),
            "canonical": hex(&c.canonical_bytes()),
            "toml": c.to_toml_string().ok(),
            "mechanisms": mechanisms(c),
        }),
    )
}

/// Each anonymous metric's local-DP mechanism as the device must encode it — `auto`
/// resolved and every parameter the report's validity depends on (docs/wire-format.md
/// §3.3) — so a device written in another language needs no copy of the selection
/// rules. The per-period public key (OLH's pool key, general-privacy HR's permutation
/// key) is not a parameter of the catalogue: it is `olh_pool_key(metric, period)`.
fn mechanisms(c: &confiance::catalogue::Catalogue) -> Value {
    let mut out = serde_json::Map::new();
    for (id, metric) in c.metrics() {
        let Some(selection) = metric.mechanism() else { continue };
        let mut entry = serde_json::Map::new();
        entry.insert("mechanism".into(), json!(selection.name().to_string()));
        entry.insert(
            "epsilon".into(),
            json!({"num": selection.epsilon().numerator(), "den": selection.epsilon().denominator()}),
        );
        // `Params` serialises as {"Variant": {fields}}: keep the fields, minus the key.
        if let Ok(Value::Object(outer)) = serde_json::to_value(selection.params()) {
            for (_, fields) in outer {
                if let Value::Object(fields) = fields {
                    for (k, v) in fields {
                        if k != "pool_key" && k != "key" {
                            entry.insert(k, v);
                        }
                    }
                }
            }
        }
        let keyed = matches!(
            selection.params(),
            confiance::ldp::Params::Olh { .. } | confiance::ldp::Params::HadamardBlocks { .. }
        );
        entry.insert("keyed".into(), json!(keyed));
        out.insert(id.to_string(), Value::Object(entry));
    }
    Value::Object(out)
}

/// `GET /v1/keys`: the HPKE key configs devices should seal to — `current` (in their
/// validity window) and `next` (published ahead of their window) — so a rotation is
/// learnt over the API. Public keys only; no token needed.
async fn get_keys(AxState(st): St) -> Response {
    use crate::keys::KeyState;
    let t = now();
    let keys: Vec<Value> = st
        .key_configs
        .iter()
        .filter_map(|c| {
            let state = match KeyState::of(c, t, st.grace_secs) {
                KeyState::Active => "current",
                KeyState::Pending => "next",
                _ => return None,
            };
            Some(json!({
                "id": c.id.0,
                "state": state,
                "not_before": c.not_before.as_secs(),
                "not_after": c.not_after.as_secs(),
                "config": hex(&c.to_bytes()),
            }))
        })
        .collect();
    ok(StatusCode::OK, json!({"keys": keys}))
}

/// `GET /metrics` (admin): Prometheus text format.
async fn get_metrics(AxState(st): St, headers: HeaderMap) -> Result<Response, ApiError> {
    authenticate(&st, &headers, &[Role::Admin])?;
    let sizes = with_agg(&st, |agg, _| {
        // A lazily loaded ledger's counts would be those of the subjects it loaded: a
        // scrape loads nothing, and says how many subjects are loaded instead.
        let ledger = agg.ledger();
        let loaded_subjects = ledger.loaded_subjects();
        let counts = loaded_subjects.is_none().then(|| ledger.stats());
        let log = agg.store().audit_log().map_err(|e| ApiError::store_failed(e.to_string()))?;
        Ok(super::metrics::Sizes {
            ledger: counts.map(|l| [l.receipts, l.withdrawals, l.partitions, l.records]),
            loaded_subjects: loaded_subjects.map(|n| u64::try_from(n).unwrap_or(u64::MAX)),
            log_events: log.size(),
        })
    })
    .await
    .ok();
    let text = st.metrics.render(sizes.as_ref());
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
        .into_response())
}

/// Envelopes need no bearer token: they are sealed to the aggregator and anonymous;
/// what admits them is what they carry (report tokens), not who posts them.
async fn post_envelope(AxState(st): St, body: Body) -> Result<Response, ApiError> {
    let frame = read_body(&st, body).await?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    st.metrics.queued(1);
    st.ingest.send(super::commit::Job { frame, reply }).map_err(|_| {
        st.metrics.queued(-1);
        ApiError::new(503, "shutting_down", "the server is stopping")
    })?;
    let answered = answer.await.map_err(|_| ApiError::internal("the commit thread stopped"))?;
    match &answered {
        Ok(_) => st.metrics.envelope_accepted(),
        Err(e) => st.metrics.envelope_refused(e.code),
    }
    let ack = answered?;
    // Per report (docs/wire-format.md §6): those not listed were accepted (or were
    // already held); each listed one is refused for good or, with `retry`, for now.
    let refused: Vec<Value> = ack
        .refused
        .iter()
        .map(|r| json!({"index": r.index, "code": r.refusal.code(), "retry": r.retry}))
        .collect();
    Ok(ok(
        StatusCode::CREATED,
        json!({"envelope": hex(&ack.envelope.0), "reports": ack.reports, "refused": refused}),
    ))
}

/// Receipts, withdrawals, delegations and revocations need no bearer token: each is
/// signed, and the ledger checks the signer speaks for the subject.
async fn post_receipt(AxState(st): St, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(&st, body).await?;
    let id = with_agg(&st, move |agg, _| {
        agg.receive_receipt(&bytes, now()).map_err(|e| ApiError::from_service(&e))
    })
    .await?;
    Ok(ok(StatusCode::CREATED, json!({"receipt": hex(&id.0)})))
}

async fn post_withdrawal(AxState(st): St, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(&st, body).await?;
    let id = with_agg(&st, move |agg, _| {
        agg.receive_withdrawal(&bytes, now()).map_err(|e| {
            // Say what was refused: checks shared with other messages (signer, times)
            // do not name it themselves.
            let mut err = ApiError::from_service(&e);
            if !err.message.contains("withdrawal") {
                err.message = format!("withdrawal refused: {}", err.message);
            }
            err
        })
    })
    .await?;
    Ok(ok(StatusCode::CREATED, json!({"receipt": hex(&id.0), "withdrawn": true})))
}

async fn post_delegation(AxState(st): St, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(&st, body).await?;
    let id = with_agg(&st, move |agg, _| {
        agg.receive_delegation(&bytes, now()).map_err(|e| ApiError::from_service(&e))
    })
    .await?;
    Ok(ok(StatusCode::CREATED, json!({"delegation": hex(&id.0)})))
}

/// `POST /v1/device-certificates`: a device certificate, raw bytes (docs/wire-format.md
/// §7.6). No bearer: the certifier's signature, and the catalogue's trust in it, admit it.
async fn post_certificate(AxState(st): St, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(&st, body).await?;
    let id = with_agg(&st, move |agg, _| {
        agg.receive_certificate(&bytes, now()).map_err(|e| ApiError::from_service(&e))
    })
    .await?;
    Ok(ok(StatusCode::CREATED, json!({"certificate": hex(&id.0)})))
}

async fn post_revocation(AxState(st): St, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(&st, body).await?;
    let device = with_agg(&st, move |agg, _| {
        agg.receive_revocation(&bytes, now()).map_err(|e| ApiError::from_service(&e))
    })
    .await?;
    Ok(ok(StatusCode::CREATED, json!({"device": hex(&device.0), "revoked": true})))
}

/// `GET /v1/token-keys`: the issuer's public key for one scope — the key directory a
/// device blinds against (RFC 9576 §6.2.2: the same for every device; no credential, so
/// anyone can compare). `recipients` (comma-separated), `purpose`, `period` (default:
/// the current one).
async fn get_token_key(AxState(st): St, p: Params) -> Result<Response, ApiError> {
    let p = params(p, &["recipients", "purpose", "period"])?;
    let v = with_agg(&st, move |agg, _| {
        let secs = agg.token_period_secs().ok_or_else(tokens_disabled)?;
        let recipients = required(&p, "recipients")?
            .split(',')
            .map(|r| parse_recipient(agg, r.trim()))
            .collect::<Result<std::collections::BTreeSet<_>, _>>()?;
        let purpose = parse_purpose(agg, required(&p, "purpose")?)?;
        let period = match p.get("period") {
            Some(_) => TokenPeriod(u64_param(&p, "period")?),
            None => TokenPeriod::at(now(), secs),
        };
        let scope = TokenScope { recipients, purpose, period };
        let pk = agg.token_public_key(&scope).map_err(|e| ApiError::from_issue(&e))?;
        Ok(json!({
            "recipients": scope.recipients.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "purpose": scope.purpose.to_string(),
            "period": period.0,
            "start": period.start(secs).as_secs(),
            "end": period.end(secs).as_secs(),
            "public_key": hex(&pk.to_bytes()),
            "key_id": hex(&confiance::token::key_id(&pk)),
        }))
    })
    .await?;
    Ok(ok(StatusCode::OK, v))
}

fn tokens_disabled() -> ApiError {
    ApiError::new(404, "tokens_disabled", "this aggregator does not issue report tokens")
}

/// `POST /v1/tokens`: a token request signed by an enrolled device key (postcard
/// `TokenRequest`, docs/wire-format.md) in, the evaluated elements with their batched
/// proof (postcard `TokenResponse`) out. No bearer: the device key's signature and the
/// ledger's enrollment admit it.
async fn post_tokens(AxState(st): St, body: Body) -> Result<Response, ApiError> {
    let bytes = read_body(&st, body).await?;
    let request = match postcard::take_from_bytes::<TokenRequest>(&bytes) {
        Ok((r, [])) => r,
        _ => {
            return Err(
                ApiError::new(400, "malformed_token_request", "not a token request").with_retry(false)
            );
        }
    };
    let response = with_agg(&st, move |agg, _| {
        if agg.token_period_secs().is_none() {
            return Err(tokens_disabled());
        }
        let mut rng = confiance::rng::OsRng::new();
        agg.issue_tokens(&request, now(), &mut rng).map_err(|e| ApiError::from_issue(&e))
    })
    .await?;
    let body = postcard::to_allocvec(&response).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideRequest {
    reason: String,
    #[serde(default)]
    at: Option<u64>,
}

/// Admin only: closes a subject whose key is lost (docs/privacy.md, "Lost subject key").
async fn post_override(
    AxState(st): St,
    headers: HeaderMap,
    subject: PathParam,
    body: Body,
) -> Result<Response, ApiError> {
    authenticate(&st, &headers, &[Role::Admin])?;
    let subject = parse_subject(&path(subject)?)?;
    let bytes = read_body(&st, body).await?;
    let req: OverrideRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(400, "malformed_json", format!("bad override request: {e}")))?;
    let v = with_agg(&st, move |agg, _| {
        let now = now();
        let at = req.at.map_or(now, Timestamp::from_secs);
        let receipts =
            agg.admin_override(&subject, &req.reason, at, now).map_err(|e| ApiError::from_service(&e))?;
        Ok(json!({
            "subject": hex(&subject.0),
            "at": at.as_secs(),
            "withdrawn": receipts.iter().map(|r| hex(&r.0)).collect::<Vec<_>>(),
        }))
    })
    .await?;
    Ok(ok(StatusCode::OK, v))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseRequest {
    metric: String,
    #[serde(default)]
    recipient: Option<String>,
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    to: Option<u64>,
}

async fn post_release(AxState(st): St, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let p = authenticate(&st, &headers, &[Role::Recipient])?;
    let bytes = read_body(&st, body).await?;
    let req: ReleaseRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(400, "malformed_json", format!("bad release request: {e}")))?;
    let v = with_agg(&st, move |agg, _| {
        let recipient = match (&p.recipient, &req.recipient) {
            (Some(own_r), None) => own_r.clone(),
            (_, Some(r)) => parse_recipient(agg, r)?,
            (None, None) => return Err(ApiError::new(400, "missing_parameter", "`recipient` is required")),
        };
        own(&p, &recipient)?;
        let metric = parse_metric(agg, &req.metric)?;
        let from = Timestamp::from_secs(req.from.unwrap_or(0));
        let to = req.to.map_or(Timestamp::MAX, Timestamp::from_secs);
        super::query::release(agg, &recipient, &metric, from, to, now())
    })
    .await?;
    Ok(ok(StatusCode::OK, v))
}

async fn post_purge(AxState(st): St, headers: HeaderMap) -> Result<Response, ApiError> {
    authenticate(&st, &headers, &[Role::Admin])?;
    let v = with_agg(&st, |agg, _| {
        let r = agg.purge(now()).map_err(|e| ApiError::from_service(&e))?;
        Ok(json!({"partitions": r.partitions, "records": r.records, "keys_destroyed": r.keys_destroyed.len()}))
    })
    .await?;
    Ok(ok(StatusCode::OK, v))
}

async fn query(
    st: &Arc<State>,
    build: impl FnOnce(&Aggregator) -> Result<Query, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let v = with_agg(st, move |agg, _| {
        let q = build(agg)?;
        run_query(agg, &q)
    })
    .await?;
    Ok(ok(StatusCode::OK, v))
}

async fn get_subject(
    AxState(st): St,
    headers: HeaderMap,
    subject: PathParam,
    p: Params,
) -> Result<Response, ApiError> {
    authenticate(&st, &headers, &[Role::Auditor])?;
    let subject = path(subject)?;
    let p = params(p, &["at", "as_known_at"])?;
    query(&st, move |_| {
        Ok(Query::Subject {
            subject: parse_subject(&subject)?,
            at: time_param(&p, "at", now())?,
            as_known_at: opt_time(&p, "as_known_at")?,
        })
    })
    .await
}

async fn get_recipient(
    AxState(st): St,
    headers: HeaderMap,
    recipient: PathParam,
    p: Params,
) -> Result<Response, ApiError> {
    let who = authenticate(&st, &headers, &[Role::Auditor, Role::Recipient])?;
    let recipient = path(recipient)?;
    let p = params(p, &["at", "as_known_at"])?;
    query(&st, move |agg| {
        let recipient = parse_recipient(agg, &recipient)?;
        own(&who, &recipient)?;
        Ok(Query::Recipient {
            recipient,
            at: time_param(&p, "at", now())?,
            as_known_at: opt_time(&p, "as_known_at")?,
        })
    })
    .await
}

async fn get_metric(
    AxState(st): St,
    headers: HeaderMap,
    metric: PathParam,
    p: Params,
) -> Result<Response, ApiError> {
    authenticate(&st, &headers, &[Role::Auditor])?;
    let metric = path(metric)?;
    let p = params(p, &["at", "as_known_at"])?;
    query(&st, move |agg| {
        Ok(Query::Metric {
            metric: parse_metric(agg, &metric)?,
            at: time_param(&p, "at", now())?,
            as_known_at: opt_time(&p, "as_known_at")?,
        })
    })
    .await
}

async fn get_category(
    AxState(st): St,
    headers: HeaderMap,
    category: PathParam,
    p: Params,
) -> Result<Response, ApiError> {
    authenticate(&st, &headers, &[Role::Auditor])?;
    let category = path(category)?;
    let p = params(p, &["at", "as_known_at"])?;
    query(&st, move |agg| {
        Ok(Query::Category {
            category: parse_category(agg, &category)?,
            at: time_param(&p, "at", now())?,
            as_known_at: opt_time(&p, "as_known_at")?,
        })
    })
    .await
}

/// `GET /v1/diff?from=…&to=…&subject=…|recipient=…|metric=…|category=…`: a recipient may
/// only compare its own view.
async fn get_diff(AxState(st): St, headers: HeaderMap, p: Params) -> Result<Response, ApiError> {
    let who = authenticate(&st, &headers, &[Role::Auditor, Role::Recipient])?;
    let p = params(p, &["subject", "recipient", "metric", "category", "from", "to", "as_known_at"])?;
    query(&st, move |agg| {
        let given: Vec<&str> = ["subject", "recipient", "metric", "category"]
            .into_iter()
            .filter(|k| p.contains_key(*k))
            .collect();
        let [which] = given[..] else {
            return Err(ApiError::new(
                400,
                "missing_parameter",
                "exactly one of `subject`, `recipient`, `metric` and `category` is required",
            ));
        };
        let value = required(&p, which)?;
        let of = match which {
            "recipient" => {
                let r = parse_recipient(agg, value)?;
                own(&who, &r)?;
                DiffOf::Recipient(r)
            }
            _ if who.role == Role::Recipient => {
                return Err(ApiError::new(403, "not_your_view", "a recipient may only compare its own view"));
            }
            "subject" => DiffOf::Subject(parse_subject(value)?),
            "metric" => DiffOf::Metric(parse_metric(agg, value)?),
            _ => DiffOf::Category(parse_category(agg, value)?),
        };
        Ok(Query::Diff {
            of,
            from: parse_time(required(&p, "from")?)?,
            to: parse_time(required(&p, "to")?)?,
            as_known_at: opt_time(&p, "as_known_at")?,
        })
    })
    .await
}

/// `POST /v1/catalogue-diff` with a candidate catalogue (TOML) as the body.
async fn post_catalogue_diff(AxState(st): St, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    authenticate(&st, &headers, &[Role::Auditor])?;
    let bytes = read_body(&st, body).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::new(400, "bad_catalogue", "the catalogue is not UTF-8 text"))?;
    let other = Box::new(parse_catalogue(text)?);
    query(&st, move |_| Ok(Query::CatalogueDiff { other })).await
}

async fn get_check(AxState(st): St, headers: HeaderMap, p: Params) -> Result<Response, ApiError> {
    let who = authenticate(&st, &headers, &[Role::Auditor, Role::Recipient])?;
    let p = params(p, &["recipient", "metric", "purpose", "subject", "at", "as_known_at"])?;
    query(&st, move |agg| {
        let recipient = parse_recipient(agg, required(&p, "recipient")?)?;
        own(&who, &recipient)?;
        Ok(Query::Check {
            recipient,
            metric: parse_metric(agg, required(&p, "metric")?)?,
            purpose: parse_purpose(agg, required(&p, "purpose")?)?,
            subject: parse_subject(required(&p, "subject")?)?,
            at: time_param(&p, "at", now())?,
            as_known_at: opt_time(&p, "as_known_at")?,
        })
    })
    .await
}

async fn get_history(AxState(st): St, headers: HeaderMap, p: Params) -> Result<Response, ApiError> {
    let who = authenticate(&st, &headers, &[Role::Auditor, Role::Recipient])?;
    let p = params(p, &["subject", "recipient", "from", "to"])?;
    let alias_for = (who.role == Role::Recipient).then(|| who.recipient.clone()).flatten();
    let mut v = with_agg(&st, move |agg, _| {
        let q = history_query(agg, &who, &p)?;
        run_query(agg, &q)
    })
    .await?;
    // A recipient's history names each subject by an alias of its own: the subject id
    // is the same for every recipient, and recipients pooling their histories would
    // link the subject across their domains (docs/privacy.md, "Pseudonyms").
    if let Some(recipient) = alias_for {
        alias_subjects(&mut v, &recipient);
    }
    Ok(ok(StatusCode::OK, v))
}

/// The alias under which `recipient` sees `subject`:
/// SHA-256(`confiance/recipient-subject/v1\0` ‖ recipient id ‖ `\0` ‖ subject id).
/// Anyone who knows both ids (the subject, an auditor) computes it; recipients cannot
/// join two aliases of one subject.
fn subject_alias(recipient: &RecipientId, subject: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"confiance/recipient-subject/v1\0");
    h.update(recipient.as_str().as_bytes());
    h.update([0]);
    h.update(subject);
    h.finalize().into()
}

/// Replaces every `"subject"` field (64 hex digits) of `v` by the recipient's alias.
fn alias_subjects(v: &mut Value, recipient: &RecipientId) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                let id = (k == "subject").then(|| x.as_str().and_then(|s| parse_subject(s).ok())).flatten();
                match id {
                    Some(id) => *x = Value::String(hex(&subject_alias(recipient, &id.0))),
                    None => alias_subjects(x, recipient),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| alias_subjects(x, recipient)),
        _ => {}
    }
}

fn history_query(agg: &Aggregator, who: &Principal, p: &HashMap<String, String>) -> Result<Query, ApiError> {
    let party = match (p.get("subject"), p.get("recipient")) {
        (Some(s), None) if who.role != Role::Recipient => Party::Subject(parse_subject(s)?),
        (None, Some(r)) => {
            let r = parse_recipient(agg, r)?;
            own(who, &r)?;
            Party::Recipient(r)
        }
        (Some(_), None) => {
            return Err(ApiError::new(403, "not_your_view", "a recipient sees only its own history"));
        }
        _ => {
            return Err(ApiError::new(
                400,
                "missing_parameter",
                "exactly one of `subject` and `recipient` is required",
            ));
        }
    };
    Ok(Query::History {
        party,
        from: time_param(p, "from", Timestamp::EPOCH)?,
        to: time_param(p, "to", Timestamp::MAX)?,
    })
}

async fn get_overdue(AxState(st): St, headers: HeaderMap, p: Params) -> Result<Response, ApiError> {
    authenticate(&st, &headers, &[Role::Auditor])?;
    let p = params(p, &["now", "as_known_at"])?;
    query(&st, move |_| {
        Ok(Query::Overdue { now: time_param(&p, "now", now())?, as_known_at: opt_time(&p, "as_known_at")? })
    })
    .await
}

async fn get_disclosures(AxState(st): St, headers: HeaderMap, p: Params) -> Result<Response, ApiError> {
    authenticate(&st, &headers, &[Role::Auditor])?;
    let p = params(p, &["from", "to"])?;
    query(&st, move |_| {
        Ok(Query::Disclosures {
            from: time_param(&p, "from", Timestamp::EPOCH)?,
            to: time_param(&p, "to", Timestamp::MAX)?,
        })
    })
    .await
}

async fn get_checkpoint(AxState(st): St, headers: HeaderMap) -> Result<Response, ApiError> {
    authenticate(&st, &headers, &[Role::Auditor, Role::Recipient])?;
    let v = with_agg(&st, |agg, st| {
        let log = agg.store().audit_log().map_err(|e| ApiError::internal(e.to_string()))?;
        let cp = log.checkpoint(&st.signer, now());
        Ok(json!({
            "origin": cp.checkpoint().origin(),
            "tree_size": cp.checkpoint().size(),
            "root": hex(cp.checkpoint().root()),
            "timestamp": cp.checkpoint().timestamp().as_secs(),
            "text": cp.to_text(),
            "public_key": hex(st.signer.verifying_key().as_bytes()),
            "verifier_key": st.signer.verifier_key(),
        }))
    })
    .await?;
    Ok(ok(StatusCode::OK, v))
}

/// The auditor report (docs/reports.md) of the whole database as it is now: access windows
/// by cohort, budgets, estimates, retention and the audit log recomputed against a fresh
/// checkpoint signed by this server. `format` is `html` (default), `json` or `markdown`;
/// `at` is the valid time overdue items are judged at (default: now).
async fn get_report(AxState(st): St, headers: HeaderMap, p: Params) -> Result<Response, ApiError> {
    authenticate(&st, &headers, &[Role::Auditor])?;
    let p = params(p, &["format", "at"])?;
    let format: Format = p.get("format").map_or(Ok(Format::Html), |f| {
        f.parse().map_err(|_| ApiError::new(400, "bad_parameter", "`format` is `html`, `json` or `markdown`"))
    })?;
    let at = time_param(&p, "at", now())?;
    let text = match st.db_path.clone() {
        // A snapshot of the file, read without the aggregator's lock: ingest goes on.
        Some(db) => {
            // One snapshot at a time: each is a copy of the whole database, loaded whole.
            // The permit goes with the blocking task, which outlives a request cut by
            // its deadline, so a timed-out report still holds its turn until it ends.
            let turn = Arc::clone(&st.report_turn)
                .acquire_owned()
                .await
                .map_err(|_| ApiError::new(503, "shutting_down", "the server is stopping"))?;
            let st = Arc::clone(&st);
            tokio::task::spawn_blocking(move || {
                let _turn = turn;
                let snap = super::snapshot::Snapshot::take(&db, st.catalogue.clone(), st.keys.clone())?;
                let agg = snap.aggregator();
                render_report(format, at, &st, agg.catalogue().name(), |o| ReportData::gather(agg, o))
            })
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??
        }
        // A lazily loaded ledger (PostgreSQL), read a page of subjects at a time.
        None => {
            with_agg(&st, move |agg, st| {
                let name = agg.catalogue().name().to_owned();
                render_report(format, at, st, &name, |o| ReportData::gather_paged(agg, o))
            })
            .await?
        }
    };
    let content_type = match format {
        Format::Html => "text/html; charset=utf-8",
        Format::Json => "application/json",
        Format::Markdown => "text/markdown; charset=utf-8",
    };
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, content_type)], text).into_response())
}

/// The auditor report at `at` in `format`, of the catalogue named `name`, from `gather`.
fn render_report(
    format: Format,
    at: Timestamp,
    st: &State,
    name: &str,
    gather: impl FnOnce(&GatherOptions<'_>) -> Result<ReportData, crate::service::ServiceError>,
) -> Result<String, ApiError> {
    let title = format!("Who sees what — {name}");
    let opts = GatherOptions {
        title: &title,
        at,
        generated_at: now(),
        signer: Some(&st.signer),
        ..GatherOptions::default()
    };
    let data = gather(&opts).map_err(|e| ApiError::internal(e.to_string()))?;
    format.render(&data).map_err(|e| ApiError::internal(e.to_string()))
}

/// `GET /v1/subjects/{subject}/report`: the report of one data subject (HTML or JSON).
async fn get_subject_report(
    AxState(st): St,
    headers: HeaderMap,
    subject: PathParam,
    p: Params,
) -> Result<Response, ApiError> {
    authenticate(&st, &headers, &[Role::Auditor])?;
    let subject = parse_subject(&path(subject)?)?;
    let p = params(p, &["format", "at"])?;
    let json = match p.get("format").map(String::as_str) {
        None | Some("html") => false,
        Some("json") => true,
        Some(_) => return Err(ApiError::new(400, "bad_parameter", "`format` is `html` or `json`")),
    };
    let at = time_param(&p, "at", now())?;
    let text = with_agg(&st, move |agg, _| {
        agg.load_subject(&subject).map_err(|e| ApiError::internal(format!("ledger: {e}")))?;
        let r = crate::report::SubjectReport::gather(agg, &subject, at, now());
        if json {
            r.render_json().map_err(|e| ApiError::internal(e.to_string()))
        } else {
            Ok(r.render_html())
        }
    })
    .await?;
    let content_type = if json { "application/json" } else { "text/html; charset=utf-8" };
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, content_type)], text).into_response())
}

fn u64_param(p: &HashMap<String, String>, name: &str) -> Result<u64, ApiError> {
    required(p, name)?
        .parse()
        .map_err(|_| ApiError::new(400, "bad_parameter", format!("`{name}` must be a number")))
}

/// Whether `who` may read the body of `event` (issue #14, defect 9). The auditor (and
/// the admin) read every event. Anyone may read an event that names no party (ingest
/// batches, purges, key destructions, catalogue changes). A recipient reads the events
/// about itself — its releases and transcryptions, consent given or withdrawn under its
/// receipts — and nothing of another recipient's; a device reads no party's event. The
/// leaf hash and the path are always answered: they prove inclusion and say nothing
/// about the event.
fn may_read(agg: &Aggregator, who: &Principal, event: &AuditEvent) -> bool {
    if matches!(who.role, Role::Auditor | Role::Admin) {
        return true;
    }
    let concerns = |r: &RecipientId| who.role == Role::Recipient && who.recipient.as_ref() == Some(r);
    match event {
        AuditEvent::Release { recipient, .. }
        | AuditEvent::Transcryption { recipient, .. }
        | AuditEvent::TranscryptionRefused { recipient, .. } => concerns(recipient),
        AuditEvent::ConsentGiven { receipt } | AuditEvent::ConsentWithdrawn { receipt, .. } => {
            agg.ledger().receipt_terms(receipt).is_some_and(|t| concerns(&t.recipient))
        }
        // Token issuance counts: the scope's recipients and the auditor.
        AuditEvent::TokensIssued { recipients, .. } => recipients.iter().any(concerns),
        // Enrollment and overrides are about subjects, not recipients: auditors only.
        AuditEvent::DeviceDelegated { .. }
        | AuditEvent::DeviceCertified { .. }
        | AuditEvent::DeviceRevoked { .. }
        | AuditEvent::AdminOverride { .. } => false,
        _ => true,
    }
}

async fn get_inclusion(AxState(st): St, headers: HeaderMap, p: Params) -> Result<Response, ApiError> {
    let who = authenticate(&st, &headers, &[Role::Auditor, Role::Recipient])?;
    let p = params(p, &["seq", "tree_size"])?;
    let v = with_agg(&st, move |agg, _| {
        let seq = u64_param(&p, "seq")?;
        let log = agg.store().audit_log().map_err(|e| ApiError::internal(e.to_string()))?;
        let size = match p.get("tree_size") {
            Some(_) => u64_param(&p, "tree_size")?,
            None => log.size(),
        };
        let bad = |e: crate::audit::AuditError| ApiError::new(400, "bad_proof_request", e.to_string());
        let proof = log.inclusion_proof(seq, size).map_err(bad)?;
        let event = log.event(seq).map_err(bad)?;
        let leaf = event.leaf_hash().map_err(bad)?;
        drop(log);
        // Whose consent event it is, read from a lazily loaded ledger first.
        if let AuditEvent::ConsentGiven { receipt } | AuditEvent::ConsentWithdrawn { receipt, .. } =
            &event.event
        {
            agg.load_receipt(receipt).map_err(|e| ApiError::internal(format!("ledger: {e}")))?;
        }
        // The leaf bytes are the event itself (docs/wire-format.md §9): shown exactly
        // when the event is, so an auditor hashes what it reads.
        let (body, leaf_bytes) = if may_read(agg, &who, &event.event) {
            (
                hexify(serde_json::to_value(&event.event).map_err(|e| ApiError::internal(e.to_string()))?),
                Value::String(hex(&event.leaf_bytes().map_err(bad)?)),
            )
        } else {
            (Value::Null, Value::Null)
        };
        Ok(json!({
            "seq": proof.leaf_index,
            "tree_size": proof.tree_size,
            "leaf_hash": hex(&leaf),
            "leaf": leaf_bytes,
            "event": body,
            "path": proof.path.iter().map(|h| hex(h)).collect::<Vec<_>>(),
        }))
    })
    .await?;
    Ok(ok(StatusCode::OK, v))
}

async fn get_consistency(AxState(st): St, headers: HeaderMap, p: Params) -> Result<Response, ApiError> {
    authenticate(&st, &headers, &[Role::Auditor, Role::Recipient])?;
    let p = params(p, &["old", "new"])?;
    let v = with_agg(&st, move |agg, _| {
        let old = u64_param(&p, "old")?;
        let log = agg.store().audit_log().map_err(|e| ApiError::internal(e.to_string()))?;
        let new = match p.get("new") {
            Some(_) => u64_param(&p, "new")?,
            None => log.size(),
        };
        let proof = log
            .consistency_proof(old, new)
            .map_err(|e| ApiError::new(400, "bad_proof_request", e.to_string()))?;
        Ok(json!({
            "old_size": proof.old_size,
            "new_size": proof.new_size,
            "path": proof.path.iter().map(|h| hex(h)).collect::<Vec<_>>(),
        }))
    })
    .await?;
    Ok(ok(StatusCode::OK, v))
}

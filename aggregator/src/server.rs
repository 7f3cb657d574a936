//! The HTTP server behind `confiance serve` (docs/design.md#interfaces): a JSON API for devices,
//! recipients, auditors and admins. Devices and subjects hold no bearer token: what they
//! post (receipts, withdrawals, delegations, revocations) is signed and verified from
//! public keys alone. Recipients, auditors and admins have bearer tokens (stored as
//! SHA-256 hashes in the [key file](keyfile)). Request bodies are bounded, and errors are
//! `{"error": {"code": "...", "message": "..."}}` with stable codes. The endpoints,
//! statuses and codes are documented in `docs/http.md`.
//!
//! The [`Aggregator`] is not `Sync`: it lives behind a [`std::sync::Mutex`] used only from
//! [`tokio::task::spawn_blocking`] and from the [group-commit](commit) thread, which
//! stages concurrent envelopes together and commits them at once. An envelope is answered
//! `201` only after the commit that holds it, and graceful shutdown lets in-flight requests
//! finish (the commit thread outlives them), so nothing acknowledged is lost.
//!
//! ```
//! use confiance_aggregator::server::{Role, hex, unhex};
//! assert_eq!("auditor".parse::<Role>(), Ok(Role::Auditor));
//! assert_eq!(unhex(&hex(&[1, 2, 255])), Some(vec![1, 2, 255]));
//! ```

mod api;
pub mod commit;
mod connection;
pub mod keyfile;
mod metrics;
pub mod query;
mod replace;
mod snapshot;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confiance::ids::RecipientId;

use crate::audit::CheckpointSigner;
use crate::service::Aggregator;

pub use commit::GroupCommit;
pub use keyfile::{KeyFile, KeyFileError};
pub use query::{ApiError, Query, run_query};
pub use replace::replace_file;

/// A bearer-token role of the HTTP API. (There is no device role: devices authenticate
/// by signature; a key file line with the old `device` role is refused.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sees its own view, checks and history, and asks for releases to itself.
    Recipient,
    /// Reads every query and the audit log.
    Auditor,
    /// Everything, including purge.
    Admin,
}

impl Role {
    /// The role's name in key files, tokens and JSON.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Recipient => "recipient",
            Self::Auditor => "auditor",
            Self::Admin => "admin",
        }
    }
}

impl core::fmt::Display for Role {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::str::FromStr for Role {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "recipient" => Ok(Self::Recipient),
            "auditor" => Ok(Self::Auditor),
            "admin" => Ok(Self::Admin),
            _ => Err(()),
        }
    }
}

/// A bearer token as stored: its role, the recipient it is bound to (recipients only)
/// and the SHA-256 of the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEntry {
    /// The role the token grants.
    pub role: Role,
    /// The recipient a recipient token is bound to.
    pub recipient: Option<RecipientId>,
    /// SHA-256 of the token text.
    pub sha256: [u8; 32],
}

/// Lowercase hex of `bytes`.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Bytes of a hex string (either case); `None` if it is not hex.
#[must_use]
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok())).collect()
}

/// The bounds on what a client may hold: connections, time and memory. Every one is
/// enforced by hyper (header read timeout, buffer size) or a tower / tower-http layer
/// (body size and idle timeout, request deadline, in-flight cap); the connection cap is
/// a semaphore the accept loop takes a permit of before accepting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body accepted: a larger `Content-Length` is answered `413` before
    /// the body is read, and a streamed body is cut at this size.
    pub max_body_bytes: usize,
    /// Longest wait for a request's headers, from the connection's first byte or the end
    /// of the previous response: also the idle timeout of a kept-alive connection.
    pub header_timeout: Duration,
    /// Longest wait for the next piece of a request body (`408 body_timeout` after it).
    pub body_timeout: Duration,
    /// Longest time a request may take from its headers to its answer, body included
    /// (`408 request_timeout`).
    pub request_timeout: Duration,
    /// Most open connections; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Most requests handled at once; further requests wait (within `request_timeout`).
    pub max_in_flight: usize,
    /// Largest read buffer of a connection (request line and headers must fit in it).
    pub max_header_bytes: usize,
    /// On SIGTERM: how long in-flight requests may take to finish before the
    /// connections still open are cut.
    pub drain: Duration,
}

impl Limits {
    /// The defaults: 10 s for headers and idle keep-alive, 10 s between body pieces,
    /// 30 s per request, 128 requests at once, a 32 KiB header buffer, a 10 s drain, and
    /// as many connections as the file-descriptor limit allows with 64 to spare (at most
    /// 1024).
    ///
    /// ```
    /// let l = confiance_aggregator::server::Limits::new(1 << 16);
    /// assert_eq!(l.max_body_bytes, 65_536);
    /// assert!(l.max_connections >= 1 && l.max_connections <= 1024);
    /// ```
    #[must_use]
    pub fn new(max_body_bytes: usize) -> Self {
        Self {
            max_body_bytes,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: default_max_connections(),
            max_in_flight: 128,
            max_header_bytes: 32 * 1024,
            drain: Duration::from_secs(10),
        }
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux); `None` elsewhere.
fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Connections the file-descriptor limit leaves room for, keeping 64 descriptors for the
/// database, the listener and the runtime: accepting past the limit fails with `EMFILE`,
/// which is what let idle sockets take the server down.
fn default_max_connections() -> usize {
    open_files_limit().map_or(1024, |n| n.saturating_sub(64).clamp(1, 1024))
}

/// What [`serve`] needs.
#[derive(Debug)]
pub struct ServerConfig {
    /// Largest request body accepted (413 above it); the same as `limits.max_body_bytes`.
    pub max_body_bytes: usize,
    /// The bearer tokens.
    pub tokens: Vec<TokenEntry>,
    /// How concurrent envelopes are grouped into commits.
    pub group_commit: GroupCommit,
    /// Connection, time and memory bounds.
    pub limits: Limits,
}

impl ServerConfig {
    /// A configuration with the default [`GroupCommit`] and [`Limits`].
    ///
    /// ```
    /// let c = confiance_aggregator::server::ServerConfig::new(1 << 16, Vec::new());
    /// assert_eq!(c.group_commit.max_envelopes, 256);
    /// assert_eq!(c.limits.max_body_bytes, 1 << 16);
    /// ```
    #[must_use]
    pub fn new(max_body_bytes: usize, tokens: Vec<TokenEntry>) -> Self {
        Self {
            max_body_bytes,
            tokens,
            group_commit: GroupCommit::default(),
            limits: Limits::new(max_body_bytes),
        }
    }
}

/// Why the server stopped with an error.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// Binding or serving failed.
    Io(std::io::Error),
}

impl core::fmt::Display for ServeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "server: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

pub(crate) struct State {
    pub(crate) agg: Arc<Mutex<Aggregator>>,
    /// The queue of the group-commit thread.
    pub(crate) ingest: std::sync::mpsc::Sender<commit::Job>,
    pub(crate) signer: CheckpointSigner,
    pub(crate) config: ServerConfig,
    pub(crate) metrics: Arc<metrics::Metrics>,
    /// Set when the server starts draining: readiness answers 503 from then on.
    pub(crate) stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Every HPKE key config, for `GET /v1/keys`, and the keys' grace period.
    pub(crate) key_configs: Vec<confiance::envelope::KeyConfig>,
    pub(crate) grace_secs: u64,
    /// Where reports read their snapshot from: the database file (`None` in memory).
    pub(crate) db_path: Option<std::path::PathBuf>,
    /// The turn to take a report snapshot: one at a time (each copies the database).
    pub(crate) report_turn: Arc<tokio::sync::Semaphore>,
    /// What a snapshot is opened with.
    pub(crate) catalogue: confiance::catalogue::Catalogue,
    pub(crate) keys: crate::keys::KeyStore,
}

/// Serves the API on `addr` until SIGTERM or Ctrl-C, then drains (see [`serve_until`])
/// and returns. `on_bound` is called with the bound address (port 0 picks a free one).
///
/// # Errors
/// [`ServeError::Io`] when the address cannot be bound or the runtime fails.
pub fn serve(
    agg: Aggregator,
    signer: CheckpointSigner,
    config: ServerConfig,
    addr: SocketAddr,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    serve_until(agg, signer, config, addr, on_bound, shutdown_signal())
}

/// As [`serve`], but stops when `stop` completes (tests, benches, embedding).
///
/// On `stop` the listener closes, idle connections close, and requests in flight have
/// [`Limits::drain`] to finish; connections still open then are cut. Envelopes handed to
/// the commit thread are committed whatever happens to their connection, so an envelope
/// is either acknowledged after its commit or not acknowledged at all.
///
/// # Errors
/// [`ServeError::Io`] when the address cannot be bound or the runtime fails.
pub fn serve_until(
    agg: Aggregator,
    signer: CheckpointSigner,
    mut config: ServerConfig,
    addr: SocketAddr,
    on_bound: impl FnOnce(SocketAddr),
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.limits.max_body_bytes = config.max_body_bytes;
    let limits = config.limits;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServeError::Io)?;
    let key_configs = agg.keys().iter().map(|(c, _)| *c).collect();
    let grace_secs = agg.keys().grace_secs();
    let db_path = agg
        .store()
        .as_sqlite()
        .and_then(|s| s.connection().path())
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from);
    if let Some(db) = &db_path {
        // Before any snapshot of this process exists: those left are a dead process's.
        for p in snapshot::remove_stale(db) {
            tracing::warn!(file = %p.display(), "removed a report snapshot left by a process that was killed");
        }
    }
    let (catalogue, keys) = (agg.catalogue().clone(), agg.keys().clone());
    let agg = Arc::new(Mutex::new(agg));
    let (ingest, jobs) = std::sync::mpsc::channel();
    let policy = config.group_commit;
    let metrics = Arc::new(metrics::Metrics::default());
    let committer = {
        let (agg, metrics) = (Arc::clone(&agg), Arc::clone(&metrics));
        std::thread::Builder::new()
            .name("confiance-commit".into())
            .spawn(move || commit::run(&agg, &jobs, policy, &metrics))
            .map_err(ServeError::Io)?
    };
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let state = Arc::new(State {
        agg,
        ingest,
        signer,
        config,
        metrics,
        stopping: Arc::clone(&stopping),
        key_configs,
        grace_secs,
        db_path,
        report_turn: Arc::new(tokio::sync::Semaphore::new(1)),
        catalogue,
        keys,
    });
    let served = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(ServeError::Io)?;
        on_bound(listener.local_addr().map_err(ServeError::Io)?);
        let stop = async move {
            stop.await;
            stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        };
        connection::serve(listener, api::router(state, &limits), limits, stop).await;
        Ok(())
    });
    // Every connection is closed; dropping the runtime drops the last sender of the
    // queue, and the commit thread ends after committing what it holds.
    drop(rt);
    let _ = committer.join();
    served
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

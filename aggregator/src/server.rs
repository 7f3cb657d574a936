//! The HTTP server behind `confiance serve` (DESIGN.md §11): a JSON API for devices,
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
pub mod keyfile;
pub mod query;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use confiance::ids::RecipientId;

use crate::audit::CheckpointSigner;
use crate::service::Aggregator;

pub use commit::GroupCommit;
pub use keyfile::{KeyFile, KeyFileError};
pub use query::{ApiError, Query, run_query};

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

/// What [`serve`] needs.
#[derive(Debug)]
pub struct ServerConfig {
    /// Largest request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// The bearer tokens.
    pub tokens: Vec<TokenEntry>,
    /// How concurrent envelopes are grouped into commits.
    pub group_commit: GroupCommit,
}

impl ServerConfig {
    /// A configuration with the default [`GroupCommit`].
    ///
    /// ```
    /// let c = confiance_aggregator::server::ServerConfig::new(1 << 16, Vec::new());
    /// assert_eq!(c.group_commit.max_envelopes, 256);
    /// ```
    #[must_use]
    pub fn new(max_body_bytes: usize, tokens: Vec<TokenEntry>) -> Self {
        Self { max_body_bytes, tokens, group_commit: GroupCommit::default() }
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
}

/// Serves the API on `addr` until SIGTERM or Ctrl-C, then finishes in-flight requests
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
/// # Errors
/// [`ServeError::Io`] when the address cannot be bound or the runtime fails.
pub fn serve_until(
    agg: Aggregator,
    signer: CheckpointSigner,
    config: ServerConfig,
    addr: SocketAddr,
    on_bound: impl FnOnce(SocketAddr),
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServeError::Io)?;
    let agg = Arc::new(Mutex::new(agg));
    let (ingest, jobs) = std::sync::mpsc::channel();
    let policy = config.group_commit;
    let committer = {
        let agg = Arc::clone(&agg);
        std::thread::Builder::new()
            .name("confiance-commit".into())
            .spawn(move || commit::run(&agg, &jobs, policy))
            .map_err(ServeError::Io)?
    };
    let state = Arc::new(State { agg, ingest, signer, config });
    let served = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(ServeError::Io)?;
        on_bound(listener.local_addr().map_err(ServeError::Io)?);
        axum::serve(listener, api::router(state)).with_graceful_shutdown(stop).await.map_err(ServeError::Io)
    });
    // Every request has had its answer; dropping the runtime drops the last sender of the
    // queue, and the commit thread ends.
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

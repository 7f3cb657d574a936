//! A consistent snapshot of the database for long reads (`GET /v1/report`), taken
//! without the aggregator's lock: `VACUUM INTO` on a read-only connection of its own
//! copies the database as of one read transaction (WAL mode lets commits go on
//! meanwhile), and the report is gathered from an aggregator opened on the copy. The
//! copy sits next to the database (same directory, same protection) and is removed
//! when the snapshot is dropped. A process killed while it held one cannot remove it:
//! [`remove_stale`] does, when the server starts again.

use std::path::{Path, PathBuf};

use confiance::catalogue::Catalogue;
use rusqlite::{Connection, OpenFlags};

use super::hex;
use super::query::ApiError;
use crate::keys::KeyStore;
use crate::service::{Aggregator, AggregatorConfig};

/// An aggregator over a private copy of the database.
pub(crate) struct Snapshot {
    agg: Option<Aggregator>,
    path: PathBuf,
}

impl Snapshot {
    /// Copies the database at `db` and opens the copy.
    pub(crate) fn take(db: &Path, catalogue: Catalogue, keys: KeyStore) -> Result<Self, ApiError> {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| ApiError::internal(e.to_string()))?;
        let path = db.with_file_name(format!("{}{}.sqlite", snapshot_prefix(db), hex(&nonce)));
        let mut snap = Self { agg: None, path };
        let store = |e: rusqlite::Error| ApiError::store_failed(format!("snapshot: {e}"));
        let conn = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(store)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(store)?;
        // As private as the database: an empty file of mode 0600, which VACUUM INTO fills.
        crate::store::sqlite::create_private(&snap.path)
            .map_err(|e| ApiError::store_failed(format!("snapshot: {e}")))?;
        let target = snap.path.to_str().ok_or_else(|| ApiError::internal("database path is not UTF-8"))?;
        conn.execute("VACUUM INTO ?1", [target]).map_err(store)?;
        drop(conn);
        // The report reads; the replay filter only serves ingest, so it is kept small.
        let config = AggregatorConfig { replay_filter_bytes: 4096, ..AggregatorConfig::default() };
        snap.agg = Some(
            Aggregator::open(&snap.path, catalogue, keys, config)
                .map_err(|e| ApiError::internal(format!("snapshot: {e}")))?,
        );
        Ok(snap)
    }

    pub(crate) fn aggregator(&self) -> &Aggregator {
        self.agg.as_ref().unwrap_or_else(|| unreachable!("set by take"))
    }
}

/// The start of the name of every snapshot of `db`: `.<name>.snapshot-`.
fn snapshot_prefix(db: &Path) -> String {
    let name = db.file_name().map_or_else(|| "db".into(), |n| n.to_string_lossy().into_owned());
    format!(".{name}.snapshot-")
}

/// The files a snapshot of the database is made of: the copy, then SQLite's own.
const SNAPSHOT_SUFFIXES: [&str; 4] = ["", "-wal", "-shm", "-journal"];

/// Removes the snapshots of `db` left by a process killed while it gathered a report
/// (`SIGKILL`, a power cut, the OOM killer): each is a full copy of the database as it
/// was — records, period keys and report ids that a later purge deletes from the
/// database itself would otherwise outlive their deadline there, and each leftover holds
/// as much disk as the database. Called when `serve` starts, before it takes any
/// snapshot of its own; the names are exactly those [`Snapshot::take`] makes, so nothing
/// else in the directory is touched. Returns the files removed.
pub(crate) fn remove_stale(db: &Path) -> Vec<PathBuf> {
    let prefix = snapshot_prefix(db);
    let dir = match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let is_snapshot = |name: &str| {
        let Some(rest) = name.strip_prefix(&prefix) else { return false };
        let Some((nonce, tail)) = rest.split_at_checked(16) else { return false };
        nonce.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && SNAPSHOT_SUFFIXES.iter().any(|s| tail.strip_prefix(".sqlite") == Some(*s))
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(is_snapshot) && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        drop(self.agg.take());
        for suffix in SNAPSHOT_SUFFIXES {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
}

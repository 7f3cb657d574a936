//! A consistent snapshot of the database for long reads (`GET /v1/report`), taken
//! without the aggregator's lock: `VACUUM INTO` on a read-only connection of its own
//! copies the database as of one read transaction (WAL mode lets commits go on
//! meanwhile), and the report is gathered from an aggregator opened on the copy. The
//! copy sits next to the database (same directory, same protection) and is removed
//! when the snapshot is dropped.

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
        let name = db.file_name().map_or_else(|| "db".into(), |n| n.to_string_lossy().into_owned());
        let path = db.with_file_name(format!(".{name}.snapshot-{}.sqlite", hex(&nonce)));
        let mut snap = Self { agg: None, path };
        let store = |e: rusqlite::Error| ApiError::store_failed(format!("snapshot: {e}"));
        let conn = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(store)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(store)?;
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

impl Drop for Snapshot {
    fn drop(&mut self) {
        drop(self.agg.take());
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
}

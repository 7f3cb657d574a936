//! The SQLite [`AuditStore`]: two append-only tables in the aggregator's database.

use std::borrow::Borrow;

use rusqlite::{Connection, OptionalExtension, ToSql, params};

use super::AuditError;
use super::event::{EventKind, LoggedEvent};
use super::merkle::Hash;
use super::store::{AppendBatch, AuditStore};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_leaf (
    seq  INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    leaf BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_node (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS audit_leaf_no_update BEFORE UPDATE ON audit_leaf
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_leaf_no_delete BEFORE DELETE ON audit_leaf
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_node_no_update BEFORE UPDATE ON audit_node
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_node_no_delete BEFORE DELETE ON audit_node
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
";

/// An [`AuditStore`] in SQLite. Tables:
///
/// - `audit_leaf(seq INTEGER PRIMARY KEY, hash BLOB, leaf BLOB)` — leaf `seq`, its RFC 9162
///   leaf hash (level 0 of the tree) and its bytes;
/// - `audit_node(level, idx, hash)` — the complete subtrees at levels ≥ 1
///   (see the [module docs](super)), `WITHOUT ROWID` keyed by `(level, idx)`.
///
/// Triggers refuse `UPDATE` and `DELETE` on both (a guard against mistakes; against an
/// attacker with write access to the file, the signed checkpoints are the defence).
///
/// `C` is an owned [`Connection`] or a borrowed one — including a caller's
/// [`rusqlite::Transaction`] (`&*tx`), so an audit event commits or rolls back with the
/// writes it records. Each append runs inside a `SAVEPOINT`: all of it is written or none,
/// whether or not a transaction is already open.
///
/// ```
/// use confiance::ids::ReceiptId;
/// use confiance_aggregator::audit::{AuditEvent, AuditLog, SqliteStore};
/// let mut conn = rusqlite::Connection::open_in_memory()?;
/// let event = AuditEvent::ConsentGiven { receipt: ReceiptId([3; 32]) };
/// {
///     let tx = conn.transaction()?;
///     // ... the ingest's own writes in `tx` ...
///     let mut log = AuditLog::open(SqliteStore::open(&*tx)?)?;
///     log.append(&event)?;
///     drop(log);
///     tx.commit()?;
/// }
/// let reopened = AuditLog::open_sqlite(conn)?;
/// assert_eq!(reopened.size(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SqliteStore<C: Borrow<Connection>> {
    conn: C,
}

impl<C: Borrow<Connection>> SqliteStore<C> {
    /// Wraps `conn`, creating the tables and triggers if missing — unless the
    /// connection is read-only (an audit reads the log as it is, triggers or not).
    ///
    /// # Errors
    /// [`AuditError::Sqlite`] when the schema cannot be created.
    pub fn open(conn: C) -> Result<Self, AuditError> {
        if !conn.borrow().is_readonly(rusqlite::MAIN_DB)? {
            conn.borrow().execute_batch(SCHEMA)?;
        }
        Ok(Self { conn })
    }

    /// Wraps `conn` whose tables already exist (a previous [`SqliteStore::open`] on the
    /// same database), skipping the schema statements: the cheap way to open the log in
    /// every ingest transaction. Missing tables surface as [`AuditError::Sqlite`] on use.
    pub const fn attach(conn: C) -> Self {
        Self { conn }
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        self.conn.borrow()
    }

    /// Gives the connection back.
    pub fn into_inner(self) -> C {
        self.conn
    }

    /// Every event of one of `kinds`, oldest first.
    ///
    /// One pass over `audit_leaf` in SQLite, filtering on the leaf's first byte
    /// ([`EventKind::leaf_tag`]) so that only the matching leaves are copied out and
    /// decoded: what a reconciliation at open needs (consent events among many ingest
    /// events) without decoding the whole log. Hashes are not re-checked here (that is
    /// [`AuditLog::event`](super::AuditLog::event)'s and the verifier's job).
    ///
    /// ```
    /// use confiance::{Timestamp, ids::ReceiptId};
    /// use confiance_aggregator::audit::{AuditEvent, AuditLog, EventKind};
    /// let mut log = AuditLog::open_sqlite(rusqlite::Connection::open_in_memory()?)?;
    /// let at = Timestamp::from_secs(9);
    /// log.append(&AuditEvent::Purge { partitions: 1, records: 0, at })?;
    /// log.append(&AuditEvent::ConsentGiven { receipt: ReceiptId([2; 32]) })?;
    /// let found = log.store().events_of_kind(&[EventKind::ConsentGiven])?;
    /// assert_eq!(found.len(), 1);
    /// assert_eq!(found[0].seq, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`AuditError::Sqlite`]; [`AuditError::Corrupt`] for a leaf that does not decode or
    /// carries another sequence number than its row.
    pub fn events_of_kind(&self, kinds: &[EventKind]) -> Result<Vec<LoggedEvent>, AuditError> {
        self.scan(kinds, "ORDER BY seq")
    }

    /// The newest event of one of `kinds`, if any (a backward walk from the end of the
    /// log that stops at the first match).
    ///
    /// # Errors
    /// As [`Self::events_of_kind`].
    pub fn last_of_kind(&self, kinds: &[EventKind]) -> Result<Option<LoggedEvent>, AuditError> {
        Ok(self.scan(kinds, "ORDER BY seq DESC LIMIT 1")?.pop())
    }

    fn scan(&self, kinds: &[EventKind], tail: &str) -> Result<Vec<LoggedEvent>, AuditError> {
        let tags: Vec<u8> = kinds.iter().map(|k| k.leaf_tag()).collect();
        let sql = format!("SELECT seq, leaf FROM audit_leaf WHERE instr(?1, substr(leaf, 1, 1)) > 0 {tail}");
        let mut st = self.connection().prepare_cached(&sql)?;
        let mut rows = st.query([tags])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let leaf = r.get_ref(1)?.as_blob().map_err(|_| AuditError::Corrupt("leaf is not a blob"))?;
            let e = LoggedEvent::from_leaf_bytes(leaf)?;
            if i64::try_from(e.seq).ok() != Some(seq) {
                return Err(AuditError::Corrupt("stored leaf disagrees with its position"));
            }
            out.push(e);
        }
        Ok(out)
    }

    fn write(&self, batch: &AppendBatch) -> Result<(), AuditError> {
        let conn = self.conn.borrow();
        let seqs = (batch.first..).take(batch.leaves.len()).map(to_i64).collect::<Result<Vec<_>, _>>()?;
        let leaves: Vec<[&dyn ToSql; 3]> =
            seqs.iter().zip(&batch.leaves).map(|(seq, (h, bytes))| [seq as &dyn ToSql, h, bytes]).collect();
        insert_rows(conn, "audit_leaf (seq, hash, leaf)", &leaves)?;
        let idxs = batch.nodes.iter().map(|n| to_i64(n.index)).collect::<Result<Vec<_>, _>>()?;
        let nodes: Vec<[&dyn ToSql; 3]> =
            batch.nodes.iter().zip(&idxs).map(|(n, idx)| [&n.level as &dyn ToSql, idx, &n.hash]).collect();
        insert_rows(conn, "audit_node (level, idx, hash)", &nodes)?;
        Ok(())
    }
}

/// Rows per statement of [`insert_rows`].
const INSERT_CHUNK: usize = 32;

/// `INSERT OR FAIL INTO {into} VALUES (…), (…), …` of `rows`, [`INSERT_CHUNK`] rows a
/// statement and the rest one a statement, through the connection's statement cache: one
/// statement run (its cursors opened and closed once) per chunk instead of per row, which
/// is most of what an insert costs besides its B-tree work. `into` is the table and its
/// column list, e.g. `"t (a, b)"`, with `N` columns.
///
/// `OR FAIL`, not the default `OR ABORT`: an aborting statement that writes several rows
/// must be able to undo its own rows, so SQLite keeps a statement journal for it (a copy
/// of every page it changes, spilled to a temporary file past 64 KiB), which cost more
/// wall time than the statements saved. Undoing is the caller's: every caller writes
/// inside a transaction or savepoint that it rolls back on error.
///
/// # Errors
/// The first failing statement's; rows before it are written (and rolled back by the
/// caller).
pub(crate) fn insert_rows<const N: usize>(
    conn: &Connection,
    into: &str,
    rows: &[[&dyn ToSql; N]],
) -> rusqlite::Result<()> {
    let sql = |n: usize| {
        let one = format!("({})", vec!["?"; N].join(", "));
        format!("INSERT OR FAIL INTO {into} VALUES {}", vec![one; n].join(", "))
    };
    let mut chunks = rows.chunks_exact(INSERT_CHUNK);
    if chunks.len() > 0 {
        let mut stmt = conn.prepare_cached(&sql(INSERT_CHUNK))?;
        for chunk in &mut chunks {
            stmt.execute(rusqlite::params_from_iter(chunk.iter().flatten()))?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut stmt = conn.prepare_cached(&sql(1))?;
        for row in rest {
            stmt.execute(rusqlite::params_from_iter(row.iter()))?;
        }
    }
    Ok(())
}

fn to_i64(v: u64) -> Result<i64, AuditError> {
    i64::try_from(v).map_err(|_| AuditError::OutOfRange { index: v, size: i64::MAX as u64 })
}

impl<C: Borrow<Connection>> AuditStore for SqliteStore<C> {
    fn len(&self) -> Result<u64, AuditError> {
        let n: i64 = self
            .connection()
            .prepare_cached("SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_leaf")?
            .query_row([], |r| r.get(0))?;
        u64::try_from(n).map_err(|_| AuditError::Corrupt("negative sequence number"))
    }

    fn node(&self, level: u32, index: u64) -> Result<Hash, AuditError> {
        let conn = self.connection();
        let found: Option<Hash> = if level == 0 {
            conn.prepare_cached("SELECT hash FROM audit_leaf WHERE seq = ?1")?
                .query_row([to_i64(index)?], |r| r.get(0))
                .optional()?
        } else {
            conn.prepare_cached("SELECT hash FROM audit_node WHERE level = ?1 AND idx = ?2")?
                .query_row(params![level, to_i64(index)?], |r| r.get(0))
                .optional()?
        };
        found.ok_or(AuditError::Corrupt("node missing from the store"))
    }

    fn leaf(&self, index: u64) -> Result<Vec<u8>, AuditError> {
        let found: Option<Vec<u8>> = self
            .connection()
            .prepare_cached("SELECT leaf FROM audit_leaf WHERE seq = ?1")?
            .query_row([to_i64(index)?], |r| r.get(0))
            .optional()?;
        match found {
            Some(bytes) => Ok(bytes),
            None => Err(AuditError::OutOfRange { index, size: self.len()? }),
        }
    }

    fn append(&mut self, batch: &AppendBatch) -> Result<(), AuditError> {
        let conn = self.conn.borrow();
        conn.execute_batch("SAVEPOINT audit_append")?;
        let result = self.len().and_then(|size| {
            if batch.first == size {
                self.write(batch)
            } else {
                Err(AuditError::OutOfRange { index: batch.first, size })
            }
        });
        match result {
            Ok(()) => {
                conn.execute_batch("RELEASE audit_append")?;
                Ok(())
            }
            Err(e) => {
                // Undo this batch only; the caller's transaction, if any, stays open.
                conn.execute_batch("ROLLBACK TO audit_append; RELEASE audit_append")?;
                Err(e)
            }
        }
    }

    fn events_of_kind(&self, kinds: &[EventKind]) -> Result<Vec<LoggedEvent>, AuditError> {
        self.scan(kinds, "ORDER BY seq")
    }

    fn last_of_kind(&self, kinds: &[EventKind]) -> Result<Option<LoggedEvent>, AuditError> {
        Ok(self.scan(kinds, "ORDER BY seq DESC LIMIT 1")?.pop())
    }
}

//! The SQLite store: WAL, `synchronous=FULL`, `secure_delete=ON`, versioned migrations.

use std::path::Path;

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rusqlite::{Connection, OptionalExtension as _, ToSql, Transaction, params};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::{
    CommitBatch, NewRecord, PartitionKey, PurgeReport, Record, RecordHead, Store, StoreError, StoredPartition,
};
use crate::audit::{AuditEvent, AuditLog, AuditStore, SqliteStore as AuditSqlite, insert_rows};
use confiance::Timestamp;
use confiance::ids::{MetricId, ReceiptId, RecipientId};

/// The schema version this build writes; older databases are migrated on open.
pub const SCHEMA_VERSION: i64 = 4;

/// Width of a record key's period: all records of one hold class collected in the same
/// UTC day share a key, destroyed once the last of them is past its deadline.
pub const PERIOD_SECS: u64 = 86_400;

/// Migrations, in order; `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE partition_state (
    pkey         BLOB PRIMARY KEY,
    metric       TEXT NOT NULL,
    bucket_start INTEGER NOT NULL,
    deadline     INTEGER NOT NULL,
    reports      INTEGER NOT NULL,
    state        BLOB NOT NULL
);
CREATE INDEX partition_deadline ON partition_state (deadline);
CREATE INDEX partition_metric ON partition_state (metric, bucket_start);

CREATE TABLE period_key (
    key_id        BLOB PRIMARY KEY,
    hold          TEXT NOT NULL,
    period_start  INTEGER NOT NULL,
    destroy_after INTEGER NOT NULL,
    key           BLOB NOT NULL
);

CREATE TABLE record (
    id           BLOB PRIMARY KEY,
    metric       TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    receipt      BLOB NOT NULL,
    collected_at INTEGER NOT NULL,
    deadline     INTEGER NOT NULL,
    key_id       BLOB NOT NULL REFERENCES period_key (key_id),
    nonce        BLOB NOT NULL,
    ciphertext   BLOB NOT NULL
);
CREATE INDEX record_deadline ON record (deadline);
CREATE INDEX record_lookup ON record (recipient, metric, collected_at);
CREATE INDEX record_key ON record (key_id);

CREATE TABLE seen_envelope (
    digest     BLOB PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    ids        BLOB NOT NULL
);
CREATE INDEX seen_expiry ON seen_envelope (expires_at);
",
    r"
-- 2: one row per remembered report id, looked up by id when the in-memory filter says
-- maybe (replaces the ids blob per envelope, which could only be scanned). No index
-- on expires_at: ids are random, so each insert into such an index would dirty another
-- random page on the ingest path; purge scans the table instead (rare, measured).
CREATE TABLE seen_id (
    id         BLOB PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
WITH RECURSIVE split(ids, expires_at, i) AS (
    SELECT ids, expires_at, 0 FROM seen_envelope WHERE length(ids) >= 16
    UNION ALL
    SELECT ids, expires_at, i + 16 FROM split WHERE i + 32 <= length(ids)
)
INSERT INTO seen_id (id, expires_at)
SELECT substr(ids, i + 1, 16), max(expires_at) FROM split GROUP BY substr(ids, i + 1, 16);
UPDATE seen_envelope SET ids = x'';
",
    r"
-- 3: remembered report ids move from a row per id (schema 2) into runs bucketed by
-- the id's first byte: each commit writes, per (bucket, expiry), one row of its sorted
-- ids. Rows are appended (rowid order), and the bucket index gets one entry per row, so
-- a commit dirties a few hundred pages however
-- many ids the table holds; a row per id keyed by the id would dirty one random page per
-- id (measured: ~7 KB written per id at 6·10^6 ids). A lookup (only when the in-memory
-- filter says maybe) reads the bucket's runs, 1/256 of the ids. `migrate_seen_ids` moves
-- schema 2's rows here and drops its table.
CREATE TABLE seen_run (
    bucket     INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ids        BLOB NOT NULL
);
CREATE INDEX seen_run_bucket ON seen_run (bucket);
",
    r"
-- 4: remembered envelopes in one B-tree keyed by their digest (WITHOUT ROWID). Schemas
-- 1 to 3 wrote three per envelope: the rowid table, its primary-key index and an index
-- on expires_at; and the ids column has been empty since schema 2. The digest stays the
-- primary key, so committing an envelope twice still fails the commit. No index on
-- expires_at: in a WITHOUT ROWID table it would be ordered by (expires_at, digest),
-- random within one expiry, another random page per insert on the ingest path; purge
-- scans the table instead (rare, as for seen_run).
CREATE TABLE seen_envelope_4 (
    digest     BLOB PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO seen_envelope_4 (digest, expires_at) SELECT digest, expires_at FROM seen_envelope ORDER BY digest;
DROP TABLE seen_envelope;
ALTER TABLE seen_envelope_4 RENAME TO seen_envelope;
",
];

/// SQLite stores instants as signed 64-bit integers; "never" saturates to `i64::MAX`.
pub(super) fn sql_time(t: Timestamp) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

pub(super) fn from_sql_time(v: i64) -> Timestamp {
    if v == i64::MAX { Timestamp::MAX } else { Timestamp::from_secs(u64::try_from(v).unwrap_or(0)) }
}

pub(super) fn blob<const N: usize>(v: Vec<u8>, what: &'static str) -> Result<[u8; N], StoreError> {
    v.try_into().map_err(|_| StoreError::Corrupt(what))
}

/// The embedded store. See the [module documentation](super).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, sets WAL, `synchronous=FULL`,
    /// `secure_delete=ON`, incremental auto-vacuum and foreign keys, and migrates it to
    /// [`SCHEMA_VERSION`].
    ///
    /// ```
    /// use confiance_aggregator::store::{SqliteStore, Store};
    /// let dir = std::env::temp_dir().join(format!("confiance-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let store = SqliteStore::open(dir.join("agg.sqlite"))?;
    /// assert!(store.partitions()?.is_empty());
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`StoreError::Sqlite`], or [`StoreError::SchemaTooNew`] for a database written by
    /// a newer build.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        // Where the file cannot be made, SQLite cannot make it either: its error says why.
        let _ = create_private(path.as_ref());
        Self::setup(Connection::open(path)?)
    }

    /// A private in-memory database (tests, simulations).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(conn: Connection) -> Result<Self, StoreError> {
        // auto_vacuum must be chosen before the first table exists; it is set only when
        // not already, since setting it is a write (a read-only open would fail).
        let auto_vacuum: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
        if auto_vacuum != 2 {
            conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
        }
        // Page cache and checkpoints sized for ingest's commits: one commit of 10,000
        // one-report envelopes dirties ~1,300 pages (5 MB). With SQLite's default cache
        // (2 MB) a commit spilled dirty pages into the WAL before it ended (written again
        // at commit) and the statement sub-journal into a temporary file; 16 MiB is a cap,
        // pages are allocated as used. With the default checkpoint threshold (1,000 WAL
        // pages) nearly every such commit ended in a checkpoint (a copy into the database
        // file and one more fsync); at 16,384 pages (64 MiB of WAL) a page rewritten by
        // successive commits is copied once. Durability does not depend on either: a
        // commit returns once its WAL frames are synced (`synchronous = FULL`), and purge
        // still checkpoints and truncates the WAL itself.
        // WAL is set by the writers. Switching a rollback-journal database (a `VACUUM INTO`
        // copy, `sqlite3 .restore`) to it is a write, which a read-only open must not try:
        // it reads such a database as it is.
        if !conn.is_readonly(rusqlite::MAIN_DB)? {
            conn.execute_batch("PRAGMA journal_mode = WAL;")?;
        }
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             PRAGMA secure_delete = ON;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;
             PRAGMA cache_size = -16384;
             PRAGMA wal_autocheckpoint = 16384;",
        )?;
        let mut store = Self { conn };
        store.migrate()?;
        // Creates the audit tables and triggers if missing.
        AuditSqlite::open(&store.conn)?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let found: i64 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew { found, supported: SCHEMA_VERSION });
        }
        let tx = self.conn.transaction()?;
        for (v, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
            tx.execute_batch(sql)?;
            if v == 2 {
                migrate_seen_ids(&tx)?;
            }
            tx.pragma_update(None, "user_version", i64::try_from(v + 1).unwrap_or(SCHEMA_VERSION))?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The connection, for the ledger's tables and read-only queries. Writes that must be
    /// atomic with ingest go through [`Store::commit`].
    #[must_use]
    pub const fn connection(&self) -> &Connection {
        &self.conn
    }

    fn period_key(
        tx: &Transaction<'_>,
        r: &NewRecord,
    ) -> Result<([u8; 32], Zeroizing<[u8; 32]>), StoreError> {
        let (key_id, hold, period_start) = period_key_id(r);
        let existing: Option<Vec<u8>> = tx
            .prepare_cached("SELECT key FROM period_key WHERE key_id = ?1")?
            .query_row([&key_id[..]], |row| row.get(0))
            .optional()?;
        if let Some(k) = existing {
            let k = Zeroizing::new(k);
            let key: [u8; 32] = k.as_slice().try_into().map_err(|_| StoreError::Corrupt("period key"))?;
            return Ok((key_id, Zeroizing::new(key)));
        }
        let key = fresh_key()?;
        let destroy_after = r.hold.deadline_from(period_start.saturating_add_secs(PERIOD_SECS)).at;
        tx.prepare_cached(
            "INSERT INTO period_key (key_id, hold, period_start, destroy_after, key) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![&key_id[..], hold, sql_time(period_start), sql_time(destroy_after), &key[..]])?;
        Ok((key_id, key))
    }
}

/// The id of the key that seals `r` (one per hold class and UTC day), the hold's text and
/// the period's start: the same derivation in every backend.
pub(super) fn period_key_id(r: &NewRecord) -> ([u8; 32], String, Timestamp) {
    let period_start = r.collected_at.truncate(PERIOD_SECS);
    let hold = r.hold.to_string();
    let mut h = Sha256::new();
    h.update(b"confiance/period-key/v1\0");
    h.update(hold.as_bytes());
    h.update(period_start.as_secs().to_be_bytes());
    (h.finalize().into(), hold, period_start)
}

/// A new random period key.
pub(super) fn fresh_key() -> Result<Zeroizing<[u8; 32]>, StoreError> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(key.as_mut_slice()).map_err(|_| StoreError::Randomness)?;
    Ok(key)
}

/// Seals a record's body under its period key: `(nonce, ciphertext)`; the record's clear
/// columns are the associated data.
pub(super) fn seal_record(key: &[u8; 32], r: &NewRecord) -> Result<([u8; 12], Vec<u8>), StoreError> {
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|_| StoreError::Randomness)?;
    let aead = ChaCha20Poly1305::new_from_slice(key).map_err(|_| StoreError::Corrupt("period key"))?;
    let aad = record_aad(&r.id, &r.metric, &r.recipient, &r.receipt);
    let ct = aead
        .encrypt(&Nonce::from(nonce), Payload { msg: &r.body, aad: &aad })
        .map_err(|_| StoreError::Corrupt("record encryption"))?;
    Ok((nonce, ct))
}

/// Opens a record sealed by [`seal_record`].
pub(super) fn open_record(key: &[u8], nonce: [u8; 12], ct: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError> {
    if key.len() != 32 {
        return Err(StoreError::Corrupt("period key"));
    }
    let aead = ChaCha20Poly1305::new_from_slice(key).map_err(|_| StoreError::Corrupt("period key"))?;
    aead.decrypt(&Nonce::from(nonce), Payload { msg: ct, aad }).map_err(|_| StoreError::RecordUnreadable)
}

/// Schema 3's data step: schema 2's rows (one per id) go into `seen_run` runs, grouped a
/// hundred thousand at a time (bounded memory), and their table is dropped.
/// Makes the file of a database that does not exist yet, empty and readable by its owner
/// only (0600 on Unix), for SQLite to fill: the database holds the pseudonymous records
/// and the period keys that open them, and SQLite would make it 0644, readable by every
/// user of the host. Its `-wal` and `-shm` files take its mode. An existing file, an
/// SQLite URI (`file:…`) or `:memory:` is left to SQLite.
pub(crate) fn create_private(path: &Path) -> std::io::Result<()> {
    let name = path.to_string_lossy();
    if name.is_empty() || name == ":memory:" || name.starts_with("file:") {
        return Ok(());
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn migrate_seen_ids(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let mut pending: Vec<([u8; 16], Timestamp)> = Vec::new();
    {
        let mut stmt = tx.prepare("SELECT id, expires_at FROM seen_id")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id = row.get_ref(0)?.as_blob().map_err(|_| StoreError::Corrupt("seen id"))?;
            let id: [u8; 16] = id.try_into().map_err(|_| StoreError::Corrupt("seen id"))?;
            pending.push((id, from_sql_time(row.get(1)?)));
            if pending.len() >= 100_000 {
                put_seen_ids(tx, &mut pending)?;
            }
        }
    }
    put_seen_ids(tx, &mut pending)?;
    tx.execute_batch("DROP TABLE seen_id;")?;
    Ok(())
}

/// Writes `ids` as one sorted run per (bucket, expiry), emptying `ids`.
fn put_seen_ids(tx: &Transaction<'_>, ids: &mut Vec<([u8; 16], Timestamp)>) -> Result<(), StoreError> {
    ids.sort_unstable_by_key(|(id, exp)| (id[0], *exp, *id));
    let mut put = tx.prepare_cached("INSERT INTO seen_run (bucket, expires_at, ids) VALUES (?1, ?2, ?3)")?;
    for run in ids.chunk_by(|a, b| (a.0[0], a.1) == (b.0[0], b.1)) {
        let Some(&(first, exp)) = run.first() else { continue };
        let bytes: Vec<u8> = run.iter().flat_map(|(id, _)| *id).collect();
        put.execute(params![first[0], sql_time(exp), bytes])?;
    }
    ids.clear();
    Ok(())
}

pub(super) fn record_aad(
    id: &[u8; 16],
    metric: &MetricId,
    recipient: &RecipientId,
    receipt: &ReceiptId,
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + 32 + metric.as_str().len() + recipient.as_str().len() + 2);
    aad.extend_from_slice(id);
    aad.extend_from_slice(receipt.as_bytes());
    aad.extend_from_slice(metric.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(recipient.as_str().as_bytes());
    aad
}

impl Store for SqliteStore {
    fn record_heads(&self) -> Result<Vec<RecordHead>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, metric, recipient, receipt, collected_at, deadline FROM record ORDER BY rowid",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let name = |i| r.get::<_, String>(i);
            out.push(RecordHead {
                id: blob(r.get(0)?, "record id")?,
                metric: name(1)?.parse().map_err(|_| StoreError::Corrupt("record metric"))?,
                recipient: name(2)?.parse().map_err(|_| StoreError::Corrupt("record recipient"))?,
                receipt: ReceiptId(blob(r.get(3)?, "receipt id")?),
                collected_at: from_sql_time(r.get(4)?),
                deadline: from_sql_time(r.get(5)?),
            });
        }
        Ok(out)
    }

    fn audit_store(&self) -> Box<dyn AuditStore + '_> {
        Box::new(AuditSqlite::attach(&self.conn))
    }

    fn as_sqlite(&self) -> Option<&SqliteStore> {
        Some(self)
    }

    fn partitions(&self) -> Result<Vec<StoredPartition>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT pkey, state, reports FROM partition_state ORDER BY pkey")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (k, state, reports) = row?;
            let key: PartitionKey =
                postcard::from_bytes(&k).map_err(|_| StoreError::Corrupt("partition key"))?;
            out.push(StoredPartition { key, state, reports: u64::try_from(reports).unwrap_or(0) });
        }
        Ok(out)
    }

    fn seen_ids(&self, now: Timestamp) -> Result<Vec<([u8; 16], Timestamp)>, StoreError> {
        let mut out = Vec::new();
        self.for_each_seen_id(now, &mut |id, exp| out.push((*id, exp)))?;
        Ok(out)
    }

    fn for_each_seen_id(
        &self,
        now: Timestamp,
        f: &mut dyn FnMut(&[u8; 16], Timestamp),
    ) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare("SELECT ids, expires_at FROM seen_run WHERE expires_at > ?1")?;
        let mut rows = stmt.query([sql_time(now)])?;
        while let Some(row) = rows.next()? {
            let ids = row.get_ref(0)?.as_blob().map_err(|_| StoreError::Corrupt("seen ids"))?;
            let exp = from_sql_time(row.get(1)?);
            let (ids, []) = ids.as_chunks::<16>() else { return Err(StoreError::Corrupt("seen ids")) };
            for id in ids {
                f(id, exp);
            }
        }
        Ok(())
    }

    fn id_seen(&self, id: &[u8; 16]) -> Result<bool, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT ids FROM seen_run WHERE bucket = ?1")?;
        let mut rows = stmt.query([id[0]])?;
        while let Some(row) = rows.next()? {
            let ids = row.get_ref(0)?.as_blob().map_err(|_| StoreError::Corrupt("seen ids"))?;
            let (ids, []) = ids.as_chunks::<16>() else { return Err(StoreError::Corrupt("seen ids")) };
            // A run is sorted.
            if ids.binary_search(id).is_ok() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn for_each_seen_envelope(&self, f: &mut dyn FnMut(&[u8; 32])) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare("SELECT digest FROM seen_envelope")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let digest = row.get_ref(0)?.as_blob().map_err(|_| StoreError::Corrupt("envelope digest"))?;
            f(digest.try_into().map_err(|_| StoreError::Corrupt("envelope digest"))?);
        }
        Ok(())
    }

    fn envelope_seen(&self, digest: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM seen_envelope WHERE digest = ?1")?
            .query_row([&digest[..]], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn commit(&mut self, batch: &CommitBatch) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut put = tx.prepare_cached(
                "INSERT INTO partition_state (pkey, metric, bucket_start, deadline, reports, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (pkey) DO UPDATE SET reports = excluded.reports, state = excluded.state",
            )?;
            for p in &batch.partitions {
                put.execute(params![
                    p.key.to_bytes(),
                    p.key.metric.as_str(),
                    sql_time(p.key.bucket_start),
                    sql_time(p.key.deadline()),
                    i64::try_from(p.reports).unwrap_or(i64::MAX),
                    p.state,
                ])?;
            }
        }
        for r in &batch.records {
            let (key_id, key) = Self::period_key(&tx, r)?;
            let (nonce, ct) = seal_record(&key, r)?;
            tx.prepare_cached(
                "INSERT INTO record (id, metric, recipient, receipt, collected_at, deadline, key_id, nonce, ciphertext)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                &r.id[..],
                r.metric.as_str(),
                r.recipient.as_str(),
                &r.receipt.as_bytes()[..],
                sql_time(r.collected_at),
                sql_time(r.deadline()),
                &key_id[..],
                &nonce[..],
                ct,
            ])?;
        }
        {
            // In digest order: consecutive inserts descend to the same or neighbouring
            // leaves of the `seen_envelope` B-tree, still in the CPU's caches, instead of
            // one random leaf each (the digests are uniformly random).
            let mut seen: Vec<(&[u8; 32], i64)> =
                batch.seen.iter().map(|s| (&s.envelope, sql_time(s.expires_at))).collect();
            seen.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let rows: Vec<[&dyn ToSql; 2]> = seen.iter().map(|(d, e)| [*d as &dyn ToSql, e]).collect();
            insert_rows(&tx, "seen_envelope (digest, expires_at)", &rows)?;
            let mut ids: Vec<([u8; 16], Timestamp)> =
                batch.seen.iter().flat_map(|s| s.ids.iter().map(|id| (*id, s.expires_at))).collect();
            put_seen_ids(&tx, &mut ids)?;
        }
        if !batch.audit.is_empty() {
            let mut log = AuditLog::open(AuditSqlite::attach(&*tx))?;
            log.append_batch(batch.audit.iter())?;
        }
        tx.commit()?;
        Ok(())
    }

    fn records(
        &self,
        recipient: &RecipientId,
        metric: &MetricId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Record>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT r.id, r.receipt, r.collected_at, r.deadline, r.nonce, r.ciphertext, k.key
             FROM record r JOIN period_key k ON k.key_id = r.key_id
             WHERE r.recipient = ?1 AND r.metric = ?2 AND r.collected_at >= ?3 AND r.collected_at < ?4
             ORDER BY r.collected_at, r.id",
        )?;
        let rows = stmt.query_map(
            params![recipient.as_str(), metric.as_str(), sql_time(from), sql_time(to)],
            |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                    r.get::<_, Vec<u8>>(5)?,
                    Zeroizing::new(r.get::<_, Vec<u8>>(6)?),
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (id, receipt, collected, deadline, nonce, ct, key) = row?;
            let id: [u8; 16] = blob(id, "record id")?;
            let receipt = ReceiptId(blob(receipt, "receipt id")?);
            let nonce: [u8; 12] = blob(nonce, "nonce")?;
            let aad = record_aad(&id, metric, recipient, &receipt);
            let body = open_record(&key, nonce, &ct, &aad)?;
            out.push(Record {
                id,
                metric: metric.clone(),
                recipient: recipient.clone(),
                receipt,
                collected_at: from_sql_time(collected),
                deadline: from_sql_time(deadline),
                body,
            });
        }
        Ok(out)
    }

    fn purge(&mut self, now: Timestamp) -> Result<PurgeReport, StoreError> {
        let t = sql_time(now);
        let tx = self.conn.transaction()?;
        let partition_keys: Vec<Vec<u8>> = {
            let mut stmt = tx.prepare("SELECT pkey FROM partition_state WHERE deadline <= ?1")?;
            let rows = stmt.query_map([t], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let record_ids: Vec<[u8; 16]> = {
            let mut stmt = tx.prepare("SELECT id FROM record WHERE deadline <= ?1")?;
            let rows = stmt.query_map([t], |r| r.get::<_, Vec<u8>>(0))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(blob(row?, "record id")?);
            }
            out
        };
        let partitions = tx.execute("DELETE FROM partition_state WHERE deadline <= ?1", [t])?;
        let records = tx.execute("DELETE FROM record WHERE deadline <= ?1", [t])?;
        let keys: Vec<Vec<u8>> = {
            let mut stmt = tx.prepare(
                "SELECT key_id FROM period_key k WHERE destroy_after <= ?1
                 AND NOT EXISTS (SELECT 1 FROM record r WHERE r.key_id = k.key_id)",
            )?;
            let rows = stmt.query_map([t], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut keys_destroyed = Vec::with_capacity(keys.len());
        for k in keys {
            tx.execute("DELETE FROM period_key WHERE key_id = ?1", [&k])?;
            keys_destroyed.push(blob(k, "key id")?);
        }
        tx.execute("DELETE FROM seen_envelope WHERE expires_at <= ?1", [t])?;
        let ids_forgotten: i64 = tx.query_row(
            "SELECT COALESCE(SUM(LENGTH(ids)), 0) / 16 FROM seen_run WHERE expires_at <= ?1",
            [t],
            |r| r.get(0),
        )?;
        tx.execute("DELETE FROM seen_run WHERE expires_at <= ?1", [t])?;
        let report = PurgeReport {
            partitions: partitions as u64,
            records: records as u64,
            partition_keys,
            record_ids,
            keys_destroyed,
            ids_forgotten: u64::try_from(ids_forgotten).unwrap_or(0),
        };
        {
            let mut events = vec![AuditEvent::Purge {
                partitions: u32::try_from(report.partitions).unwrap_or(u32::MAX),
                records: u32::try_from(report.records).unwrap_or(u32::MAX),
                at: now,
            }];
            events.extend(
                report.keys_destroyed.iter().map(|k| AuditEvent::KeyDestruction { key_id: *k, at: now }),
            );
            let mut log = AuditLog::open(AuditSqlite::attach(&*tx))?;
            log.append_batch(events.iter())?;
        }
        tx.commit()?;
        // Push every page out of the WAL and truncate it, so no old frame still holds a
        // deleted record or key, then give freed pages back to the file system.
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        self.conn.execute_batch("PRAGMA incremental_vacuum;")?;
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(report)
    }

    fn append_audit(&mut self, events: &[AuditEvent]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        AuditLog::open(AuditSqlite::attach(&*tx))?.append_batch(events.iter())?;
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SeenIds;

    const DAY: u64 = 86_400;

    fn digest(i: u16) -> [u8; 32] {
        let mut d = [0xd0; 32];
        d[..2].copy_from_slice(&i.to_be_bytes());
        d
    }

    #[test]
    fn commits_of_10000_envelopes_fit_the_page_cache_and_end_without_a_checkpoint() {
        let dir = std::env::temp_dir().join(format!("confiance-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("agg.sqlite");
        let mut store = SqliteStore::open(&db).unwrap();
        let db_bytes = std::fs::metadata(&db).unwrap().len();
        let wal_frames =
            || std::fs::metadata(dir.join("agg.sqlite-wal")).map_or(0, |m| m.len() / (4096 + 24));
        let hashed = |i: u32, tag: &[u8]| -> [u8; 32] {
            Sha256::new().chain_update(tag).chain_update(i.to_le_bytes()).finalize().into()
        };
        // The page cache, in pages (a negative `cache_size` is in KiB).
        let cache_kib: i64 = store.conn.query_row("PRAGMA cache_size", [], |r| r.get(0)).unwrap();
        let cache_pages = u64::try_from(-cache_kib).unwrap_or(0) * 1024 / 4096;
        // Three commits as ingest makes them from 10,000 one-report envelopes each: their
        // digests (spread over the table) and report ids, and one audit event each.
        for c in 0..3u32 {
            let before = wal_frames();
            let seen: Vec<SeenIds> = (c * 10_000..(c + 1) * 10_000)
                .map(|i| SeenIds {
                    envelope: hashed(i, b"envelope"),
                    expires_at: Timestamp::from_secs(DAY),
                    ids: vec![hashed(i, b"id")[..16].try_into().unwrap()],
                })
                .collect();
            let audit = seen
                .iter()
                .map(|s| AuditEvent::IngestBatch {
                    envelope_digest: s.envelope,
                    reports: 1,
                    partitions: 1,
                    at: Timestamp::EPOCH,
                })
                .collect();
            store.commit(&CommitBatch { seen, audit, ..CommitBatch::default() }).unwrap();
            // The cache holds every page the commit dirtied (it wrote each to the WAL),
            // so none had to be spilled before the commit ended.
            let written = wal_frames() - before;
            assert!(
                written <= cache_pages,
                "commit {c} wrote {written} pages, the cache holds {cache_pages}"
            );
        }
        // Past SQLite's default checkpoint threshold (1,000 pages), and yet the commits
        // stayed in the WAL: no checkpoint copied them into the database file.
        assert!(wal_frames() > 1_000, "{} WAL frames", wal_frames());
        assert_eq!(std::fs::metadata(&db).unwrap().len(), db_bytes, "checkpointed at commit");
        // Reopened, everything is there (read from the WAL).
        drop(store);
        let store = SqliteStore::open(&db).unwrap();
        assert!((0..30_000).step_by(997).all(|i| store.envelope_seen(&hashed(i, b"envelope")).unwrap()));
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_schema_3_database_is_migrated_to_one_b_tree_of_envelopes() {
        let dir = std::env::temp_dir().join(format!("confiance-schema-3-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("agg.sqlite");
        // A database as schema 3 left it: migrations 1 to 3, then 300 envelopes written
        // as schema 3's commit wrote them (digest, expiry, an empty ids blob).
        {
            let mut conn = Connection::open(&db).unwrap();
            conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL;").unwrap();
            let tx = conn.transaction().unwrap();
            for (v, sql) in MIGRATIONS[..3].iter().enumerate() {
                tx.execute_batch(sql).unwrap();
                if v == 2 {
                    migrate_seen_ids(&tx).unwrap();
                }
            }
            tx.pragma_update(None, "user_version", 3).unwrap();
            for i in 0..300u16 {
                tx.execute(
                    "INSERT INTO seen_envelope (digest, expires_at, ids) VALUES (?1, ?2, x'')",
                    params![&digest(i)[..], (1 + i64::from(i % 3)) * DAY as i64],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
        let mut store = SqliteStore::open(&db).unwrap();
        let version: i64 = store.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let table: String = store
            .conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'seen_envelope'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(table.contains("WITHOUT ROWID") && !table.contains("ids"), "{table}");
        let expiry_index: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'seen_expiry'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(expiry_index, 0);
        // Every envelope is still remembered, exactly, with its expiry.
        assert!((0..300).all(|i| store.envelope_seen(&digest(i)).unwrap()));
        assert!(!store.envelope_seen(&digest(300)).unwrap());
        let mut listed = Vec::new();
        store.for_each_seen_envelope(&mut |d| listed.push(*d)).unwrap();
        listed.sort_unstable();
        assert_eq!(listed, (0..300).map(digest).collect::<Vec<_>>());
        // The digest is still the key: the same envelope committed again fails.
        let again = CommitBatch {
            seen: vec![SeenIds {
                envelope: digest(7),
                expires_at: Timestamp::from_secs(DAY),
                ids: Vec::new(),
            }],
            ..CommitBatch::default()
        };
        assert!(store.commit(&again).is_err());
        // Purge forgets by the migrated expiry: the 100 of day 1, no other.
        store.purge(Timestamp::from_secs(DAY)).unwrap();
        assert!((0..300).all(|i| store.envelope_seen(&digest(i)).unwrap() == (i % 3 != 0)));
        // And new envelopes are written to the new table.
        let fresh = CommitBatch {
            seen: vec![SeenIds {
                envelope: digest(300),
                expires_at: Timestamp::from_secs(DAY),
                ids: Vec::new(),
            }],
            ..CommitBatch::default()
        };
        store.commit(&fresh).unwrap();
        assert!(store.envelope_seen(&digest(300)).unwrap());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The PostgreSQL [`AuditStore`]: the same two append-only tables as SQLite's, shared by
//! every aggregator process on the database (docs/scaling.md#audit).

use std::cell::RefCell;

use postgres::GenericClient;

use super::AuditError;
use super::merkle::Hash;
use super::store::{AppendBatch, AuditStore};

/// The tables and triggers, created if missing (idempotent; run under
/// [`MIGRATION_LOCK`] so that two processes starting together do not race).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_leaf (
    seq  BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL,
    leaf BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_node (
    level INTEGER NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE OR REPLACE FUNCTION confiance_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$;
CREATE OR REPLACE TRIGGER audit_leaf_append_only BEFORE UPDATE OR DELETE ON audit_leaf
    FOR EACH ROW EXECUTE FUNCTION confiance_audit_append_only();
CREATE OR REPLACE TRIGGER audit_leaf_no_truncate BEFORE TRUNCATE ON audit_leaf
    FOR EACH STATEMENT EXECUTE FUNCTION confiance_audit_append_only();
CREATE OR REPLACE TRIGGER audit_node_append_only BEFORE UPDATE OR DELETE ON audit_node
    FOR EACH ROW EXECUTE FUNCTION confiance_audit_append_only();
CREATE OR REPLACE TRIGGER audit_node_no_truncate BEFORE TRUNCATE ON audit_node
    FOR EACH STATEMENT EXECUTE FUNCTION confiance_audit_append_only();
";

/// The transaction-scoped advisory lock every append takes before it reads the log's
/// size: appends from all processes on the database are serialized, so the log stays one
/// linear sequence with one checkpoint history. (The key is `"confaudt"` in ASCII.)
pub const APPEND_LOCK: i64 = 0x636f_6e66_6175_6474;

/// The advisory lock held while a schema is created or migrated (`"confmigr"`).
pub const MIGRATION_LOCK: i64 = 0x636f_6e66_6d69_6772;

/// An [`AuditStore`] in PostgreSQL. Tables `audit_leaf(seq, hash, leaf)` and
/// `audit_node(level, idx, hash)` as in [`SqliteStore`](super::SqliteStore); triggers
/// refuse `UPDATE`, `DELETE` and `TRUNCATE`.
///
/// `C` is a [`postgres::Client`] or a [`postgres::Transaction`] — the caller's, so an audit
/// event commits or rolls back with the writes it records. Each append runs in its own
/// transaction (or a savepoint of the caller's) and first takes [`APPEND_LOCK`], then
/// checks that the log still has the size the [`AuditLog`](super::AuditLog) expects: a
/// log opened before another process appended refuses to write
/// ([`AuditError::OutOfRange`]) instead of forking the log; reopen it and retry. The
/// primary key on `seq` is the second guard.
///
/// ```no_run
/// use confiance::ids::ReceiptId;
/// use confiance_aggregator::audit::{AuditEvent, AuditLog, PgStore};
/// let client = postgres::Client::connect("postgres://confiance@127.0.0.1/confiance", postgres::NoTls)?;
/// let mut log = AuditLog::open(PgStore::open(client)?)?;
/// log.append(&AuditEvent::ConsentGiven { receipt: ReceiptId([3; 32]) })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PgStore<C: GenericClient> {
    client: RefCell<C>,
}

impl<C: GenericClient> core::fmt::Debug for PgStore<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl<C: GenericClient> PgStore<C> {
    /// Wraps `client`, creating the tables and triggers if missing.
    ///
    /// # Errors
    /// [`AuditError::Postgres`] when the schema cannot be created.
    pub fn open(mut client: C) -> Result<Self, AuditError> {
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute(SCHEMA)?;
        tx.commit()?;
        Ok(Self { client: RefCell::new(client) })
    }

    /// Wraps `client` whose tables already exist (the store's migrations made them),
    /// without touching the schema: the cheap way to open the log in each transaction.
    pub const fn attach(client: C) -> Self {
        Self { client: RefCell::new(client) }
    }

    /// Gives the client back.
    pub fn into_inner(self) -> C {
        self.client.into_inner()
    }
}

fn to_i64(v: u64) -> Result<i64, AuditError> {
    i64::try_from(v).map_err(|_| AuditError::OutOfRange { index: v, size: i64::MAX as u64 })
}

fn hash(bytes: &[u8]) -> Result<Hash, AuditError> {
    bytes.try_into().map_err(|_| AuditError::Corrupt("stored hash is not 32 bytes"))
}

fn size_of(client: &mut impl GenericClient) -> Result<u64, AuditError> {
    let n: i64 = client.query_one("SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_leaf", &[])?.get(0);
    u64::try_from(n).map_err(|_| AuditError::Corrupt("negative sequence number"))
}

impl<C: GenericClient> AuditStore for PgStore<C> {
    fn len(&self) -> Result<u64, AuditError> {
        size_of(&mut *self.client.borrow_mut())
    }

    fn node(&self, level: u32, index: u64) -> Result<Hash, AuditError> {
        let mut c = self.client.borrow_mut();
        let row = if level == 0 {
            c.query_opt("SELECT hash FROM audit_leaf WHERE seq = $1", &[&to_i64(index)?])?
        } else {
            let level = i32::try_from(level).map_err(|_| AuditError::Corrupt("level out of range"))?;
            c.query_opt(
                "SELECT hash FROM audit_node WHERE level = $1 AND idx = $2",
                &[&level, &to_i64(index)?],
            )?
        };
        match row {
            Some(r) => hash(r.get::<_, &[u8]>(0)),
            None => Err(AuditError::Corrupt("node missing from the store")),
        }
    }

    fn leaf(&self, index: u64) -> Result<Vec<u8>, AuditError> {
        let mut c = self.client.borrow_mut();
        match c.query_opt("SELECT leaf FROM audit_leaf WHERE seq = $1", &[&to_i64(index)?])? {
            Some(r) => Ok(r.get(0)),
            None => Err(AuditError::OutOfRange { index, size: size_of(&mut *c)? }),
        }
    }

    fn append(&mut self, batch: &AppendBatch) -> Result<(), AuditError> {
        let c = self.client.get_mut();
        // A transaction of its own, or a savepoint of the caller's: all or nothing.
        let mut tx = c.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK])?;
        let size = size_of(&mut tx)?;
        if batch.first != size {
            return Err(AuditError::OutOfRange { index: batch.first, size });
        }
        let mut seqs = Vec::with_capacity(batch.leaves.len());
        for seq in batch.first..batch.first + batch.leaves.len() as u64 {
            seqs.push(to_i64(seq)?);
        }
        let hashes: Vec<&[u8]> = batch.leaves.iter().map(|(h, _)| &h[..]).collect();
        let leaves: Vec<&[u8]> = batch.leaves.iter().map(|(_, b)| b.as_slice()).collect();
        tx.execute(
            "INSERT INTO audit_leaf (seq, hash, leaf) SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[], $3::BYTEA[])",
            &[&seqs, &hashes, &leaves],
        )?;
        if !batch.nodes.is_empty() {
            let mut levels = Vec::with_capacity(batch.nodes.len());
            let mut idxs = Vec::with_capacity(batch.nodes.len());
            for n in &batch.nodes {
                levels.push(i32::try_from(n.level).map_err(|_| AuditError::Corrupt("level out of range"))?);
                idxs.push(to_i64(n.index)?);
            }
            let hashes: Vec<&[u8]> = batch.nodes.iter().map(|n| &n.hash[..]).collect();
            tx.execute(
                "INSERT INTO audit_node (level, idx, hash) SELECT * FROM UNNEST($1::INT[], $2::BIGINT[], $3::BYTEA[])",
                &[&levels, &idxs, &hashes],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

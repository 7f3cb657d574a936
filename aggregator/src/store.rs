//! The aggregator's durable state (docs/design.md#store): partitions of anonymous accumulators,
//! encrypted pseudonymous records under per-period keys, remembered report ids, and the
//! audit log — behind the [`Store`] trait, with SQLite as the embedded default.
//!
//! **Atomicity.** Everything one ingest batch changes — partition states, records, report
//! ids, audit events — goes into one [`CommitBatch`] and commits in one transaction. The
//! aggregator acknowledges envelopes only after [`Store::commit`] returns, so a crash at
//! any moment loses nothing acknowledged and counts nothing twice.
//!
//! **Deletion by key destruction.** Records are sealed with ChaCha20-Poly1305 under a key
//! per (hold class, period). When the last record a key could protect is past its
//! deadline, [`Store::purge`] deletes the records and the key; with SQLite's
//! `secure_delete=ON` and a truncating WAL checkpoint afterwards, neither the plaintext,
//! nor the ciphertext, nor the key remains in the database file, its WAL or its journal.

#[cfg(feature = "postgres")]
mod postgres;
pub(crate) mod sqlite;

use std::collections::BTreeSet;

#[cfg(feature = "postgres")]
pub(crate) use postgres::migrate as migrate_postgres;
#[cfg(feature = "postgres")]
pub use postgres::{PG_SCHEMA_VERSION, PgStore};
pub use sqlite::{PERIOD_SECS, SCHEMA_VERSION, SqliteStore};

use confiance::Timestamp;
use confiance::ids::{MetricId, ReceiptId, RecipientId};
use confiance::retention::Duration;

use crate::audit::{AuditEvent, AuditLog, AuditStore};

/// Why the store failed. Nothing is half-written: a failed commit rolls back whole.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The database reported an error.
    Sqlite(rusqlite::Error),
    /// The PostgreSQL server reported an error (connection lost, query refused…).
    #[cfg(feature = "postgres")]
    Postgres(::postgres::Error),
    /// The batch collides with rows already committed — by this process or another on the
    /// same database: a report id, an envelope digest or a record id is already stored.
    /// Nothing of the batch is stored; the envelope is a replay, not retryable as is.
    /// (Raised by the PostgreSQL store, where the unique keys are what keeps replay
    /// protection exact across processes.)
    Conflict,
    /// The database was written by a newer schema than this build knows.
    SchemaTooNew {
        /// The database's schema version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// Stored bytes that do not decode (a corrupted or foreign database).
    Corrupt(&'static str),
    /// The audit log refused an append.
    Audit(crate::audit::AuditError),
    /// The operating system's random generator failed (no key could be made).
    Randomness,
    /// A record could not be opened with its period key (tampered or key missing).
    RecordUnreadable,
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Sqlite(e) => write!(f, "sqlite: {e}"),
            #[cfg(feature = "postgres")]
            Self::Postgres(e) => write!(f, "postgres: {e}"),
            Self::Conflict => f.write_str("a report id, envelope or record in the batch is already stored"),
            Self::SchemaTooNew { found, supported } => {
                write!(f, "database schema {found} is newer than this build's {supported}")
            }
            Self::Corrupt(what) => write!(f, "corrupt store: {what}"),
            Self::Audit(e) => write!(f, "audit log: {e}"),
            Self::Randomness => f.write_str("the OS random generator failed"),
            Self::RecordUnreadable => f.write_str("record cannot be decrypted"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

impl From<crate::audit::AuditError> for StoreError {
    fn from(e: crate::audit::AuditError) -> Self {
        Self::Audit(e)
    }
}

/// What identifies a partition of anonymous reports (docs/design.md#ingest): the metric, the
/// time bucket, the audience and the hold class.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct PartitionKey {
    /// The metric.
    pub metric: MetricId,
    /// Start of the time bucket.
    pub bucket_start: Timestamp,
    /// End of the time bucket (exclusive).
    pub bucket_end: Timestamp,
    /// Who may see the partition's estimates.
    pub audience: BTreeSet<RecipientId>,
    /// The tag's hold: the partition is kept until `bucket_end + hold`.
    pub hold: Duration,
}

impl PartitionKey {
    /// The hold deadline: bucket end plus hold (docs/design.md#hold-deadline).
    #[must_use]
    pub fn deadline(&self) -> Timestamp {
        self.hold.deadline_from(self.bucket_end).at
    }

    /// The canonical encoding used as the storage key.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

/// A partition as stored: its key, the accumulator's serialized state and its report count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPartition {
    /// The partition.
    pub key: PartitionKey,
    /// The accumulator state (opaque to the store).
    pub state: Vec<u8>,
    /// Reports accumulated.
    pub reports: u64,
}

/// A pseudonymous record to store. The store encrypts `body` under its period key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRecord {
    /// The report id.
    pub id: [u8; 16],
    /// The metric.
    pub metric: MetricId,
    /// The recipient (the record's audience).
    pub recipient: RecipientId,
    /// The receipt it was collected under.
    pub receipt: ReceiptId,
    /// When it was collected (truncated to the metric's precision).
    pub collected_at: Timestamp,
    /// The tag's hold (its class selects the period key).
    pub hold: Duration,
    /// The sensitive part: the pseudonym and the value, encoded by the caller.
    pub body: Vec<u8>,
}

impl NewRecord {
    /// `collected_at + hold` (docs/design.md#hold-deadline).
    #[must_use]
    pub fn deadline(&self) -> Timestamp {
        self.hold.deadline_from(self.collected_at).at
    }
}

/// A stored record, decrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The report id.
    pub id: [u8; 16],
    /// The metric.
    pub metric: MetricId,
    /// The recipient.
    pub recipient: RecipientId,
    /// The receipt it was collected under.
    pub receipt: ReceiptId,
    /// When it was collected.
    pub collected_at: Timestamp,
    /// Its hold deadline.
    pub deadline: Timestamp,
    /// The decrypted body.
    pub body: Vec<u8>,
}

/// A stored record's clear-text columns, without its body (nothing is decrypted):
/// what the ledger's holdings index is rebuilt from
/// ([`Store::record_heads`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordHead {
    /// The report id.
    pub id: [u8; 16],
    /// The metric.
    pub metric: MetricId,
    /// The recipient.
    pub recipient: RecipientId,
    /// The receipt it was collected under.
    pub receipt: ReceiptId,
    /// When it was collected.
    pub collected_at: Timestamp,
    /// Its hold deadline in the store (`collected_at` + the tag's hold).
    pub deadline: Timestamp,
}

/// What the aggregator's reconciliation compares, answered by the database itself where
/// the store and the ledger share one (PostgreSQL, [`Store::ledger_gaps`]): three
/// anti-joins instead of reading every record, holding and receipt into memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerGaps {
    /// Stored records the ledger's holdings have no row for, in the order they were stored.
    pub unnoted_records: Vec<RecordHead>,
    /// Records the ledger holds (noted, not noted purged) that the store no longer has,
    /// with the ledger's deadline, by id.
    pub gone_records: Vec<([u8; 16], Timestamp)>,
    /// Receipts (`None`) and withdrawals (`Some(at)`) whose consent event has no key in
    /// the log's `audit_consent` table (schema version 5), in the ledger's order. Events
    /// logged before version 5 got theirs when the database was migrated to version 6,
    /// so these are exactly the facts whose event is missing.
    pub unlogged_consent: Vec<(ReceiptId, Option<Timestamp>)>,
    /// What these answers cover, for [`Store::mark_reconciled`] once they are repaired
    /// (`None`: the store keeps no watermark).
    pub mark: Option<ReconcileMark>,
}

/// The reconciliation's watermark (PostgreSQL, schema version 6): how far a
/// reconciliation examined the store and the ledger. [`Store::ledger_gaps`] looks only
/// past the stored one — so a start costs what was written since the last one, not the
/// ledger's size — and returns the next, which [`Store::mark_reconciled`] stores once
/// its gaps are repaired. Each bound is one that no uncommitted write can fall under
/// (docs/scaling.md, "The reconciliation's watermark").
///
/// ```
/// use confiance_aggregator::store::ReconcileMark;
/// let first = ReconcileMark { ledger_seq: 10, record_seq: 4, gone_seq: 0 };
/// assert!(first.ledger_seq > 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReconcileMark {
    /// Every ledger fact whose `seq` is below it was examined: consent facts without an
    /// event, holdings whose record is gone.
    pub ledger_seq: i64,
    /// Every stored record whose `seq` is at most it was examined (a holding noted).
    pub record_seq: i64,
    /// Every record purged at or before this position of `record_gone` was examined.
    pub gone_seq: i64,
}

/// Report ids remembered for replay protection, grouped by envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenIds {
    /// SHA-256 of the envelope they came in.
    pub envelope: [u8; 32],
    /// Until when they must be remembered (after that, their bucket can no longer be
    /// accepted anyway).
    pub expires_at: Timestamp,
    /// The ids.
    pub ids: Vec<[u8; 16]>,
}

/// Everything one ingest batch changes, committed atomically.
#[derive(Clone, Debug, Default)]
pub struct CommitBatch {
    /// Partitions to write, with their full new state.
    pub partitions: Vec<StoredPartition>,
    /// Records to add.
    pub records: Vec<NewRecord>,
    /// Report ids to remember.
    pub seen: Vec<SeenIds>,
    /// Audit events to append.
    pub audit: Vec<AuditEvent>,
}

/// What a purge removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PurgeReport {
    /// Partitions deleted.
    pub partitions: u64,
    /// Records deleted.
    pub records: u64,
    /// The deleted partitions' keys ([`PartitionKey::to_bytes`]).
    pub partition_keys: Vec<Vec<u8>>,
    /// The deleted records' ids.
    pub record_ids: Vec<[u8; 16]>,
    /// Period keys destroyed (their ids).
    pub keys_destroyed: Vec<[u8; 32]>,
    /// Remembered report ids forgotten.
    pub ids_forgotten: u64,
}

/// Durable state of an aggregator. SQLite ([`SqliteStore`]) is the embedded default; with
/// the `postgres` feature, `PgStore` keeps the same state in PostgreSQL for several
/// processes (docs/scaling.md). Both pass one conformance suite
/// (`aggregator/tests/store_conformance.rs`).
pub trait Store {
    /// Every partition, ordered by encoded key. A [shared](Self::shared) store holds one
    /// partial per writing process and lists each: the reader merges a partition's
    /// partials (accumulators merge associatively and commutatively).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    fn partitions(&self) -> Result<Vec<StoredPartition>, StoreError>;

    /// Every remembered report id that has not expired at `now` (all in memory: for
    /// tests and tools; the aggregator streams them with [`Self::for_each_seen_id`]).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    fn seen_ids(&self, now: Timestamp) -> Result<Vec<([u8; 16], Timestamp)>, StoreError>;

    /// Calls `f` with every remembered report id that has not expired at `now` and its
    /// expiry, in no particular order, without holding them all in memory.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    fn for_each_seen_id(
        &self,
        now: Timestamp,
        f: &mut dyn FnMut(&[u8; 16], Timestamp),
    ) -> Result<(), StoreError>;

    /// Whether report id `id` is remembered (committed and not yet purged): the exact
    /// answer behind the aggregator's in-memory filter.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    fn id_seen(&self, id: &[u8; 16]) -> Result<bool, StoreError>;

    /// Calls `f` with the digest of every remembered envelope (committed, not yet
    /// forgotten), in no particular order: what the aggregator's replay filter is built
    /// from, so that a fresh envelope costs no store read.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    fn for_each_seen_envelope(&self, f: &mut dyn FnMut(&[u8; 32])) -> Result<(), StoreError>;

    /// Whether an envelope with this digest was committed (and not yet forgotten).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    fn envelope_seen(&self, digest: &[u8; 32]) -> Result<bool, StoreError>;

    /// Commits a batch atomically: all of it or none of it.
    ///
    /// # Errors
    /// [`StoreError`]; on error nothing of the batch is stored.
    fn commit(&mut self, batch: &CommitBatch) -> Result<(), StoreError>;

    /// The records of `recipient` for `metric` collected in `[from, to)`, decrypted.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read or a record cannot be decrypted.
    fn records(
        &self,
        recipient: &RecipientId,
        metric: &MetricId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Record>, StoreError>;

    /// Deletes partitions and records whose deadline is at or before `now`, destroys the
    /// period keys no live record needs, forgets expired report ids, logs the purge and
    /// each key destruction, and reclaims the space.
    ///
    /// # Errors
    /// [`StoreError`]; on error nothing is deleted.
    fn purge(&mut self, now: Timestamp) -> Result<PurgeReport, StoreError>;

    /// Appends audit events on their own (releases, consent events, transcryptions).
    ///
    /// # Errors
    /// [`StoreError`] when the append fails; then nothing is appended.
    fn append_audit(&mut self, events: &[AuditEvent]) -> Result<(), StoreError>;

    /// Every stored record's clear-text columns, in the order they were stored; no body
    /// is read or decrypted (what the ledger's holdings are reconciled against).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read or an id does not read back.
    fn record_heads(&self) -> Result<Vec<RecordHead>, StoreError>;

    /// The audit log's storage, read through this store's connection (for scans such as
    /// [`AuditStore::events_of_kind`]; appends go through [`Self::commit`] and
    /// [`Self::append_audit`]).
    fn audit_store(&self) -> Box<dyn AuditStore + '_>;

    /// The audit log as committed now (opened on demand: `O(log n)` reads).
    ///
    /// # Errors
    /// [`StoreError::Audit`].
    fn audit_log(&self) -> Result<AuditLog<Box<dyn AuditStore + '_>>, StoreError> {
        Ok(AuditLog::open(self.audit_store())?)
    }

    /// Whether other processes may write to this store at the same time (PostgreSQL):
    /// then a process's in-memory replay filter does not know their report ids, and
    /// every id is checked in the store, whose unique keys keep replay protection exact
    /// ([`StoreError::Conflict`] for two commits racing with one id).
    fn shared(&self) -> bool {
        false
    }

    /// Where the ledger's tables are in the store's database (PostgreSQL): the records
    /// and consent facts the reconciliation would repair, found in SQL ([`LedgerGaps`]),
    /// among what was written after the stored [`ReconcileMark`] (everything when there
    /// is none: a database not reconciled since schema version 6). `Ok(None)` where the store cannot see the ledger (SQLite, whose ledger may be
    /// elsewhere): the caller compares in memory.
    ///
    /// # Errors
    /// [`StoreError`] when the tables cannot be read or an id does not read back.
    fn ledger_gaps(&self) -> Result<Option<LedgerGaps>, StoreError> {
        Ok(None)
    }

    /// Stores `mark` ([`LedgerGaps::mark`]) once everything [`Self::ledger_gaps`] found
    /// below it is repaired, unless a mark at least as far is stored already. A no-op
    /// where the store keeps no watermark (SQLite).
    ///
    /// # Errors
    /// [`StoreError`] when the mark cannot be written.
    fn mark_reconciled(&mut self, mark: &ReconcileMark) -> Result<(), StoreError> {
        let _ = mark;
        Ok(())
    }

    /// The SQLite store when this is one: the aggregator then keeps its ledger in the
    /// same file and writes consent facts and their audit events in one transaction.
    fn as_sqlite(&self) -> Option<&SqliteStore> {
        None
    }
}

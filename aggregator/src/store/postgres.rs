//! The PostgreSQL store: the same tables as SQLite's, shared by several aggregator
//! processes (docs/scaling.md). Versioned migrations run on open under an advisory lock;
//! report ids and envelope digests are unique keys, so a report accepted by one process
//! is refused by all; audit appends are serialized by [`APPEND_LOCK`].

use std::sync::{Mutex, MutexGuard, PoisonError};

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator as _;
use postgres::{Client, Config, IsolationLevel, NoTls, Transaction};
use zeroize::Zeroizing;

use super::sqlite::{
    blob, fresh_key, from_sql_time, open_record, period_key_id, record_aad, seal_record, sql_time,
};
use super::{
    CommitBatch, LedgerGaps, NewRecord, PERIOD_SECS, PartitionKey, PurgeReport, ReconcileMark, Record,
    RecordHead, Store, StoreError, StoredPartition,
};
use crate::audit::{
    APPEND_LOCK, AppendBatch, AuditError, AuditEvent, AuditLog, AuditStore, EventKind, Hash, LoggedEvent,
    MIGRATION_LOCK, PgStore as AuditPg,
};
use confiance::Timestamp;
use confiance::ids::{MetricId, ReceiptId, RecipientId};

/// The schema version this build writes; older databases are migrated on open, newer
/// ones refused ([`StoreError::SchemaTooNew`]).
pub const PG_SCHEMA_VERSION: i64 = 8;

/// Migrations, in order; `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
/// (The audit tables come from [`crate::audit::PgStore`]'s schema, applied by migration 1.)
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE partition_state (
    pkey         BYTEA PRIMARY KEY,
    metric       TEXT NOT NULL,
    bucket_start BIGINT NOT NULL,
    deadline     BIGINT NOT NULL,
    reports      BIGINT NOT NULL,
    state        BYTEA NOT NULL
);
CREATE INDEX partition_deadline ON partition_state (deadline);
CREATE INDEX partition_metric ON partition_state (metric, bucket_start);

CREATE TABLE period_key (
    key_id        BYTEA PRIMARY KEY,
    hold          TEXT NOT NULL,
    period_start  BIGINT NOT NULL,
    destroy_after BIGINT NOT NULL,
    key           BYTEA NOT NULL
);

CREATE TABLE record (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY,
    id           BYTEA PRIMARY KEY,
    metric       TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    receipt      BYTEA NOT NULL,
    collected_at BIGINT NOT NULL,
    deadline     BIGINT NOT NULL,
    key_id       BYTEA NOT NULL REFERENCES period_key (key_id),
    nonce        BYTEA NOT NULL,
    ciphertext   BYTEA NOT NULL
);
CREATE INDEX record_deadline ON record (deadline);
CREATE INDEX record_lookup ON record (recipient, metric, collected_at);
CREATE INDEX record_key ON record (key_id);

CREATE TABLE seen_envelope (
    digest     BYTEA PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX seen_envelope_expiry ON seen_envelope (expires_at);

-- One row per remembered report id: the primary key is what makes replay protection
-- exact across processes (a second insert of an id fails the whole commit).
CREATE TABLE seen_id (
    id         BYTEA PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX seen_id_expiry ON seen_id (expires_at);
",
    r"
-- One partial accumulator per partition and writing process (`writer`, random per
-- handle): a process upserts only its own row, so two processes ingesting into one
-- partition never overwrite each other; readers merge a partition's rows.
ALTER TABLE partition_state ADD COLUMN writer BYTEA NOT NULL DEFAULT '\x'::BYTEA;
ALTER TABLE partition_state DROP CONSTRAINT partition_state_pkey;
ALTER TABLE partition_state ADD PRIMARY KEY (pkey, writer);
",
    r"
-- The consent ledger (the columns of SQLite's `ledger_*` tables) and the report-token
-- quotas, shared by every process. `ledger_head.next_seq` is the change sequence: the
-- `seq` of the next fact, moved by each writing transaction under the ledger's lock.
CREATE TABLE ledger_meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE ledger_head (
    one      BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    next_seq BIGINT NOT NULL
);
INSERT INTO ledger_head (next_seq) VALUES (0);
CREATE TABLE ledger_receipt (
  seq BIGINT PRIMARY KEY, id BYTEA NOT NULL UNIQUE, subject BYTEA NOT NULL, device_key BYTEA NOT NULL,
  recipient TEXT NOT NULL, purpose TEXT NOT NULL, metrics TEXT NOT NULL, hold TEXT NOT NULL,
  valid_from BIGINT NOT NULL, valid_until BIGINT NOT NULL, recorded_at BIGINT NOT NULL, signed BYTEA);
CREATE INDEX ledger_receipt_subject ON ledger_receipt (subject);
CREATE TABLE ledger_withdrawal (
  seq BIGINT PRIMARY KEY, receipt BYTEA NOT NULL UNIQUE, at BIGINT NOT NULL,
  recorded_at BIGINT NOT NULL, signed BYTEA);
CREATE TABLE ledger_record (
  seq BIGINT PRIMARY KEY, id BYTEA NOT NULL UNIQUE, receipt BYTEA NOT NULL, metric TEXT NOT NULL,
  collected_at BIGINT NOT NULL, deadline BIGINT NOT NULL, recorded_at BIGINT NOT NULL);
CREATE TABLE ledger_record_purge (
  seq BIGINT PRIMARY KEY, record BYTEA NOT NULL UNIQUE, at BIGINT NOT NULL, recorded_at BIGINT NOT NULL);
CREATE TABLE ledger_partition (
  seq BIGINT PRIMARY KEY, id BYTEA NOT NULL UNIQUE, metric TEXT NOT NULL, bucket_end BIGINT NOT NULL,
  audience TEXT NOT NULL, deadline BIGINT NOT NULL, recorded_at BIGINT NOT NULL);
CREATE TABLE ledger_partition_purge (
  seq BIGINT PRIMARY KEY, partition BYTEA NOT NULL UNIQUE, at BIGINT NOT NULL, recorded_at BIGINT NOT NULL);
CREATE TABLE ledger_delegation (
  seq BIGINT PRIMARY KEY, id BYTEA NOT NULL UNIQUE, subject BYTEA NOT NULL, device BYTEA NOT NULL,
  valid_from BIGINT NOT NULL, valid_until BIGINT NOT NULL, recorded_at BIGINT NOT NULL, signed BYTEA NOT NULL);
CREATE TABLE ledger_revocation (
  seq BIGINT PRIMARY KEY, device BYTEA NOT NULL UNIQUE, at BIGINT NOT NULL, recorded_at BIGINT NOT NULL,
  signed BYTEA NOT NULL);
CREATE TABLE ledger_override (
  seq BIGINT PRIMARY KEY, subject BYTEA NOT NULL UNIQUE, reason TEXT NOT NULL, at BIGINT NOT NULL,
  recorded_at BIGINT NOT NULL);
CREATE TABLE ledger_disclosure (
  seq BIGINT PRIMARY KEY, kind TEXT NOT NULL, recipient TEXT NOT NULL, metric TEXT NOT NULL,
  purpose TEXT NOT NULL, subject BYTEA NOT NULL, at BIGINT NOT NULL, record BYTEA,
  recorded_at BIGINT NOT NULL);
CREATE TABLE token_issued (
  device BYTEA NOT NULL, scope BYTEA NOT NULL, period BIGINT NOT NULL, issued BIGINT NOT NULL,
  PRIMARY KEY (device, scope));
CREATE TABLE token_scope_issued (
  scope BYTEA PRIMARY KEY, period BIGINT NOT NULL, issued BIGINT NOT NULL, devices BIGINT NOT NULL);
",
    r"
-- The indexes a lazily loaded ledger reads a subject's facts through
-- (`Ledger::open_postgres_lazy`): its records (by receipt), disclosures, delegations,
-- and the subject that delegated a device key. (Receipts by subject, withdrawals by
-- receipt, purges by record, revocations by device and overrides by subject are
-- indexed since version 3.)
CREATE INDEX ledger_record_receipt ON ledger_record (receipt);
CREATE INDEX ledger_disclosure_subject ON ledger_disclosure (subject);
CREATE INDEX ledger_delegation_subject ON ledger_delegation (subject);
CREATE INDEX ledger_delegation_device ON ledger_delegation (device);
",
    r"
-- One consent event per receipt (given) and per withdrawal: a consent fact and its event
-- are written in two steps (the ledger's transaction, then the log's), so a process
-- starting between them (its reconciliation appends the events of facts it finds
-- without one) and the writer would both append it. Each append records the event's
-- key here in its own transaction, under the log's lock, and leaves out an event whose
-- key is already here. (Events logged before this version are not here: the
-- reconciliation finds them in the log itself.)
CREATE TABLE audit_consent (
  receipt BYTEA NOT NULL, withdrawn BOOLEAN NOT NULL, PRIMARY KEY (receipt, withdrawn));
",
    r"
-- The reconciliation's watermark (`Store::ledger_gaps`): what the last reconciliation
-- covered, so the next one examines only what came after. `ledger_seq`: every ledger
-- fact below it (consent events, holdings whose record is gone); `record_seq`: every
-- stored record up to it (holdings noted); `gone_seq`: every record purged up to it
-- (`record_gone`). No row: nothing covered yet, the next reconciliation examines all.
-- (Written with IF NOT EXISTS: a test re-runs this step on a database set back to 5.)
CREATE TABLE IF NOT EXISTS reconcile_mark (
  one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
  ledger_seq BIGINT NOT NULL, record_seq BIGINT NOT NULL, gone_seq BIGINT NOT NULL);
-- The records each purge deleted, in purge order (written by the purge, under the log's
-- lock): the holdings a crash left unmarked after the watermark are found through them.
CREATE TABLE IF NOT EXISTS record_gone (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id BYTEA NOT NULL);
CREATE INDEX IF NOT EXISTS record_seq ON record (seq);
-- The subjects a question about one recipient reads (`Ledger::load_recipient`).
CREATE INDEX IF NOT EXISTS ledger_receipt_recipient ON ledger_receipt (recipient, seq);
CREATE INDEX IF NOT EXISTS ledger_disclosure_recipient ON ledger_disclosure (recipient, seq);
",
    r"
-- The subjects a question across subjects reads, found without reading the others
-- (`Ledger::scan_overdue`, `Ledger::scan_unconsented_disclosures`): records by
-- deadline, disclosures by valid time.
CREATE INDEX IF NOT EXISTS ledger_record_deadline ON ledger_record (deadline);
CREATE INDEX IF NOT EXISTS ledger_disclosure_at ON ledger_disclosure (at);
",
    r"
-- Device certificates (admission control, docs/privacy.md): the signed bytes for
-- auditors, the columns the ledger checks, read by key (`Ledger::load_certificates`).
-- (IF NOT EXISTS: a test re-runs the steps after 5 on a database set back to 5.)
CREATE TABLE IF NOT EXISTS ledger_certificate (
  seq BIGINT PRIMARY KEY, id BYTEA NOT NULL UNIQUE, key BYTEA NOT NULL, certifier BYTEA NOT NULL,
  not_before BIGINT NOT NULL, not_after BIGINT NOT NULL, recorded_at BIGINT NOT NULL, signed BYTEA NOT NULL);
CREATE INDEX IF NOT EXISTS ledger_certificate_key ON ledger_certificate (key);
",
];

/// The store on a PostgreSQL server. See the [module documentation](super) and
/// docs/scaling.md. One connection, behind a mutex: a process that needs more
/// concurrency opens several handles (a pool is the next step, see docs/scaling.md).
///
/// ```no_run
/// use confiance_aggregator::store::{PgStore, Store};
/// let store = PgStore::connect("postgres://confiance@127.0.0.1/confiance")?;
/// assert!(store.partitions()?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PgStore {
    client: Mutex<Client>,
    /// This handle's name on its partial partitions (random, so a restarted process
    /// never writes over rows a predecessor's partials hold).
    writer: [u8; 16],
}

impl core::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl From<postgres::Error> for StoreError {
    /// A unique-key violation is [`StoreError::Conflict`]; anything else
    /// [`StoreError::Postgres`].
    fn from(e: postgres::Error) -> Self {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) { Self::Conflict } else { Self::Postgres(e) }
    }
}

/// An audit failure inside a store transaction: a unique violation there is a conflict too.
fn audit_error(e: crate::audit::AuditError) -> StoreError {
    match e {
        crate::audit::AuditError::Postgres(e) => StoreError::from(e),
        e => StoreError::Audit(e),
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/database`, without TLS: a database
    /// on the same host or network) and migrates the schema to [`PG_SCHEMA_VERSION`].
    ///
    /// # Errors
    /// [`StoreError::Postgres`], or [`StoreError::SchemaTooNew`] for a database migrated
    /// by a newer build.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        Self::with_config(&url.parse::<Config>()?)
    }

    /// As [`Self::connect`], with a parsed configuration.
    ///
    /// # Errors
    /// As [`Self::connect`].
    pub fn with_config(config: &Config) -> Result<Self, StoreError> {
        let mut client = config.connect(NoTls)?;
        migrate(&mut client)?;
        let mut writer = [0u8; 16];
        getrandom::fill(&mut writer).map_err(|_| StoreError::Randomness)?;
        Ok(Self { client: Mutex::new(client), writer })
    }

    fn client(&self) -> MutexGuard<'_, Client> {
        // A panic while holding the client leaves no transaction open (dropping a
        // `Transaction` rolls it back), so the connection is still usable.
        self.client.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The schema version of the database.
    ///
    /// # Errors
    /// [`StoreError::Postgres`].
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.client().query_one("SELECT version FROM confiance_schema", &[])?.get(0))
    }

    /// Runs `f` on the connection (tests and tools: raw SQL). Writes that must be atomic
    /// with ingest go through [`Store::commit`].
    pub fn with_client<T>(&self, f: impl FnOnce(&mut Client) -> T) -> T {
        f(&mut self.client())
    }

    /// The audit log's events as committed now, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Audit`].
    pub fn audit_events(&self) -> Result<Vec<crate::audit::LoggedEvent>, StoreError> {
        let mut c = self.client();
        let log = AuditLog::open(AuditPg::attach(snapshot(&mut c)?)).map_err(audit_error)?;
        log.export(log.size()).map_err(audit_error)
    }

    /// The audit log's root and size as committed now.
    ///
    /// # Errors
    /// [`StoreError::Audit`].
    pub fn audit_root(&self) -> Result<(u64, crate::audit::Hash), StoreError> {
        let mut c = self.client();
        let log = AuditLog::open(AuditPg::attach(snapshot(&mut c)?)).map_err(audit_error)?;
        Ok((log.size(), log.root()))
    }

    /// The key sealing `r`: the stored one, or a new one inserted. Two processes creating
    /// the same period's key at once both end with the one that won the insert.
    fn period_key(
        tx: &mut Transaction<'_>,
        r: &NewRecord,
    ) -> Result<([u8; 32], Zeroizing<[u8; 32]>), StoreError> {
        let (key_id, hold, period_start) = period_key_id(r);
        let destroy_after = r.hold.deadline_from(period_start.saturating_add_secs(PERIOD_SECS)).at;
        let fresh = fresh_key()?;
        tx.execute(
            "INSERT INTO period_key (key_id, hold, period_start, destroy_after, key) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (key_id) DO NOTHING",
            &[&&key_id[..], &hold, &sql_time(period_start), &sql_time(destroy_after), &&fresh[..]],
        )?;
        let row = tx.query_one("SELECT key FROM period_key WHERE key_id = $1", &[&&key_id[..]])?;
        let stored = Zeroizing::new(row.get::<_, Vec<u8>>(0));
        let key: [u8; 32] = stored.as_slice().try_into().map_err(|_| StoreError::Corrupt("period key"))?;
        Ok((key_id, Zeroizing::new(key)))
    }
}

/// A read-only transaction on one snapshot: a log read while other processes append
/// sees one size and the nodes of that size.
fn snapshot(client: &mut Client) -> Result<Transaction<'_>, StoreError> {
    Ok(client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?)
}

/// Creates or migrates the schema under [`MIGRATION_LOCK`], refusing a newer one.
pub(crate) fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS confiance_schema (
             one     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
             version BIGINT NOT NULL
         );
         INSERT INTO confiance_schema (version) VALUES (0) ON CONFLICT DO NOTHING;",
    )?;
    let found: i64 = tx.query_one("SELECT version FROM confiance_schema", &[])?.get(0);
    if found > PG_SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found, supported: PG_SCHEMA_VERSION });
    }
    for (v, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        tx.batch_execute(sql)?;
        if v == 0 {
            tx.batch_execute(crate::audit::PG_SCHEMA)?;
        }
        if v == 5 {
            backfill_audit_consent(&mut tx)?;
        }
        let next = i64::try_from(v + 1).unwrap_or(PG_SCHEMA_VERSION);
        tx.execute("UPDATE confiance_schema SET version = $1", &[&next])?;
    }
    tx.commit()?;
    Ok(())
}

/// Schema version 6: the key in `audit_consent` of every consent event logged before
/// version 5, read from the log once, so that the reconciliation's candidates (facts
/// without a key) are exactly the facts without an event and the log is never scanned
/// at start again.
fn backfill_audit_consent(tx: &mut Transaction<'_>) -> Result<(), StoreError> {
    let tags: Vec<i32> = [EventKind::ConsentGiven, EventKind::ConsentWithdrawn]
        .iter()
        .map(|k| i32::from(k.leaf_tag()))
        .collect();
    let (mut receipts, mut withdrawn): (Vec<Vec<u8>>, Vec<bool>) = (Vec::new(), Vec::new());
    for row in tx.query("SELECT leaf FROM audit_leaf WHERE get_byte(leaf, 0) = ANY($1)", &[&tags])? {
        match LoggedEvent::from_leaf_bytes(row.get(0)).map_err(StoreError::Audit)?.event {
            AuditEvent::ConsentGiven { receipt } => {
                (receipts.push(receipt.as_bytes().to_vec()), withdrawn.push(false))
            }
            AuditEvent::ConsentWithdrawn { receipt, .. } => {
                (receipts.push(receipt.as_bytes().to_vec()), withdrawn.push(true))
            }
            _ => continue,
        };
    }
    tx.execute(
        "INSERT INTO audit_consent (receipt, withdrawn) SELECT * FROM UNNEST($1::BYTEA[], $2::BOOLEAN[])
         ON CONFLICT DO NOTHING",
        &[&receipts, &withdrawn],
    )?;
    Ok(())
}

/// Appends `events` to the log inside `tx`, after taking [`APPEND_LOCK`] (held to the end
/// of `tx`, so the whole transaction is one step of the linear log).
fn append_in(tx: &mut Transaction<'_>, events: &[AuditEvent]) -> Result<(), StoreError> {
    // A consent event is logged once per fact, whichever process appends it first
    // (schema version 5, `audit_consent`): the others' copies are left out. The caller
    // holds the log's lock, so the first to record the key is the one that appends.
    let mut kept: Vec<&AuditEvent> = Vec::with_capacity(events.len());
    for e in events {
        let key = match e {
            AuditEvent::ConsentGiven { receipt } => Some((receipt, false)),
            AuditEvent::ConsentWithdrawn { receipt, .. } => Some((receipt, true)),
            _ => None,
        };
        if let Some((receipt, withdrawn)) = key {
            let new = tx.execute(
                "INSERT INTO audit_consent (receipt, withdrawn) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&receipt.as_bytes().as_slice(), &withdrawn],
            )?;
            if new == 0 {
                continue;
            }
        }
        kept.push(e);
    }
    if kept.is_empty() {
        return Ok(());
    }
    let mut log = AuditLog::open(AuditPg::attach(tx.transaction()?)).map_err(audit_error)?;
    log.append_batch(kept).map_err(audit_error)?;
    log.into_store().into_inner().commit()?;
    Ok(())
}

fn lock_log(tx: &mut Transaction<'_>) -> Result<(), StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK])?;
    Ok(())
}

/// Stored records without a holding (`ledger_record.id` is unique, so indexed), stored
/// after the watermark's `record_seq` ($1; `record_seq` is indexed).
const UNNOTED_RECORDS: &str = "SELECT id, metric, recipient, receipt, collected_at, deadline FROM record r
     WHERE r.seq > $1 AND NOT EXISTS (SELECT 1 FROM ledger_record l WHERE l.id = r.id) ORDER BY seq";
/// Held records (no purge noted) the store no longer has, among the holdings noted from
/// the watermark's `ledger_seq` on ($1) and the records purged after its `gone_seq` ($2).
const GONE_RECORDS: &str = "SELECT l.id, l.deadline FROM ledger_record l WHERE l.seq >= $1
       AND NOT EXISTS (SELECT 1 FROM ledger_record_purge p WHERE p.record = l.id)
       AND NOT EXISTS (SELECT 1 FROM record r WHERE r.id = l.id)
     UNION
     SELECT l.id, l.deadline FROM record_gone g JOIN ledger_record l ON l.id = g.id WHERE g.seq > $2
       AND NOT EXISTS (SELECT 1 FROM ledger_record_purge p WHERE p.record = l.id)
       AND NOT EXISTS (SELECT 1 FROM record r WHERE r.id = l.id)
     ORDER BY 1";
/// Receipts and withdrawals from the watermark's `ledger_seq` on ($1) whose consent event
/// has no key in `audit_consent`, by `seq`.
const UNLOGGED_CONSENT: &str = "SELECT id, NULL::BIGINT AS at, seq FROM ledger_receipt c
     WHERE c.seq >= $1 AND NOT EXISTS (SELECT 1 FROM audit_consent a WHERE a.receipt = c.id AND NOT a.withdrawn)
     UNION ALL
     SELECT receipt, at, seq FROM ledger_withdrawal w
     WHERE w.seq >= $1 AND NOT EXISTS (SELECT 1 FROM audit_consent a WHERE a.receipt = w.receipt AND a.withdrawn)
     ORDER BY seq";

/// A time in the ledger's columns (its seconds' bits, as the ledger writes them).
const fn ledger_time(v: i64) -> Timestamp {
    Timestamp::from_secs(u64::from_ne_bytes(v.to_ne_bytes()))
}

fn record_heads_of(rows: &[postgres::Row]) -> Result<Vec<RecordHead>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(RecordHead {
                id: blob(r.get(0), "record id")?,
                metric: r.get::<_, &str>(1).parse().map_err(|_| StoreError::Corrupt("record metric"))?,
                recipient: r
                    .get::<_, &str>(2)
                    .parse()
                    .map_err(|_| StoreError::Corrupt("record recipient"))?,
                receipt: ReceiptId(blob(r.get(3), "receipt id")?),
                collected_at: from_sql_time(r.get(4)),
                deadline: from_sql_time(r.get(5)),
            })
        })
        .collect()
}

impl Store for PgStore {
    fn ledger_gaps(&self) -> Result<Option<LedgerGaps>, StoreError> {
        let mut c = self.client();
        // The store's bounds, read under the log's lock: every commit that stores records
        // and every purge holds it to its end, so no record or purge at or below them is
        // still uncommitted (identity values are drawn at insert, not at commit).
        let (record_seq, gone_seq) = {
            let mut tx = c.transaction()?;
            lock_log(&mut tx)?;
            let row = tx.query_one(
                "SELECT (SELECT COALESCE(MAX(seq), 0) FROM record), (SELECT COALESCE(MAX(seq), 0) FROM record_gone)",
                &[],
            )?;
            let bounds: (i64, i64) = (row.get(0), row.get(1));
            tx.commit()?;
            bounds
        };
        // One later snapshot: the answers describe one committed state, holding every
        // record and purge up to the bounds, and every ledger fact below the head it reads
        // (a ledger write commits its facts and the head together).
        let mut tx = snapshot(&mut c)?;
        let head: i64 = tx.query_one("SELECT next_seq FROM ledger_head", &[])?.get(0);
        let from = tx.query_opt("SELECT ledger_seq, record_seq, gone_seq FROM reconcile_mark", &[])?;
        let (from_ledger, from_record, from_gone) =
            from.map_or((0, 0, 0), |r| (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)));
        let unnoted_records = record_heads_of(&tx.query(UNNOTED_RECORDS, &[&from_record])?)?;
        let gone_records = tx
            .query(GONE_RECORDS, &[&from_ledger, &from_gone])?
            .iter()
            .map(|r| Ok((blob(r.get(0), "record id")?, ledger_time(r.get(1)))))
            .collect::<Result<_, StoreError>>()?;
        let unlogged_consent = tx
            .query(UNLOGGED_CONSENT, &[&from_ledger])?
            .iter()
            .map(|r| {
                Ok((ReceiptId(blob(r.get(0), "receipt id")?), r.get::<_, Option<i64>>(1).map(ledger_time)))
            })
            .collect::<Result<_, StoreError>>()?;
        tx.commit()?;
        let mark = ReconcileMark {
            ledger_seq: head.max(from_ledger),
            record_seq: record_seq.max(from_record),
            gone_seq: gone_seq.max(from_gone),
        };
        Ok(Some(LedgerGaps { unnoted_records, gone_records, unlogged_consent, mark: Some(mark) }))
    }

    fn mark_reconciled(&mut self, mark: &ReconcileMark) -> Result<(), StoreError> {
        let mut c = self.client();
        let mut tx = c.transaction()?;
        // Replaced whole, and only by a mark at least as far on every count: the stored
        // mark is always one reconciliation's, whose repairs cover everything below it.
        tx.execute(
            "INSERT INTO reconcile_mark (ledger_seq, record_seq, gone_seq) VALUES ($1, $2, $3)
             ON CONFLICT (one) DO UPDATE
             SET ledger_seq = excluded.ledger_seq, record_seq = excluded.record_seq, gone_seq = excluded.gone_seq
             WHERE reconcile_mark.ledger_seq <= excluded.ledger_seq
               AND reconcile_mark.record_seq <= excluded.record_seq
               AND reconcile_mark.gone_seq <= excluded.gone_seq",
            &[&mark.ledger_seq, &mark.record_seq, &mark.gone_seq],
        )?;
        // Purges the mark covers are not read again.
        tx.execute("DELETE FROM record_gone WHERE seq <= (SELECT gone_seq FROM reconcile_mark)", &[])?;
        tx.commit()?;
        Ok(())
    }

    fn record_heads(&self) -> Result<Vec<RecordHead>, StoreError> {
        let rows = self.client().query(
            "SELECT id, metric, recipient, receipt, collected_at, deadline FROM record ORDER BY seq",
            &[],
        )?;
        record_heads_of(&rows)
    }

    fn shared(&self) -> bool {
        true
    }

    fn audit_store(&self) -> Box<dyn AuditStore + '_> {
        Box::new(LogView { client: &self.client })
    }

    fn partitions(&self) -> Result<Vec<StoredPartition>, StoreError> {
        let rows = self
            .client()
            .query("SELECT pkey, state, reports FROM partition_state ORDER BY pkey, writer", &[])?;
        rows.iter()
            .map(|r| {
                let key: PartitionKey =
                    postcard::from_bytes(r.get(0)).map_err(|_| StoreError::Corrupt("partition key"))?;
                Ok(StoredPartition {
                    key,
                    state: r.get(1),
                    reports: u64::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                })
            })
            .collect()
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
        let mut c = self.client();
        let t = sql_time(now);
        let mut rows = c.query_raw("SELECT id, expires_at FROM seen_id WHERE expires_at > $1", [&t])?;
        while let Some(row) = rows.next()? {
            let id: [u8; 16] =
                row.get::<_, &[u8]>(0).try_into().map_err(|_| StoreError::Corrupt("seen id"))?;
            f(&id, from_sql_time(row.get(1)));
        }
        Ok(())
    }

    fn id_seen(&self, id: &[u8; 16]) -> Result<bool, StoreError> {
        Ok(self.client().query_opt("SELECT 1 FROM seen_id WHERE id = $1", &[&&id[..]])?.is_some())
    }

    fn for_each_seen_envelope(&self, f: &mut dyn FnMut(&[u8; 32])) -> Result<(), StoreError> {
        for row in self.client().query("SELECT digest FROM seen_envelope", &[])? {
            let digest: Vec<u8> = row.get(0);
            f(digest.as_slice().try_into().map_err(|_| StoreError::Corrupt("envelope digest"))?);
        }
        Ok(())
    }

    fn envelope_seen(&self, digest: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self
            .client()
            .query_opt("SELECT 1 FROM seen_envelope WHERE digest = $1", &[&&digest[..]])?
            .is_some())
    }

    fn commit(&mut self, batch: &CommitBatch) -> Result<(), StoreError> {
        let mut c = self.client();
        let mut tx = c.transaction()?;
        // The log lock first: every lock an audited commit takes comes after it, so two
        // commits cannot wait on each other in opposite orders.
        // Records too are stored under it, so a reconciliation reading the highest
        // record `seq` under the lock knows no lower one is still uncommitted.
        if !batch.audit.is_empty() || !batch.records.is_empty() {
            lock_log(&mut tx)?;
        }
        for p in &batch.partitions {
            tx.execute(
                "INSERT INTO partition_state (pkey, metric, bucket_start, deadline, reports, state, writer)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (pkey, writer) DO UPDATE SET reports = excluded.reports, state = excluded.state",
                &[
                    &p.key.to_bytes(),
                    &p.key.metric.as_str(),
                    &sql_time(p.key.bucket_start),
                    &sql_time(p.key.deadline()),
                    &i64::try_from(p.reports).unwrap_or(i64::MAX),
                    &p.state,
                    &&self.writer[..],
                ],
            )?;
        }
        for r in &batch.records {
            let (key_id, key) = Self::period_key(&mut tx, r)?;
            let (nonce, ct) = seal_record(&key, r)?;
            tx.execute(
                "INSERT INTO record (id, metric, recipient, receipt, collected_at, deadline, key_id, nonce, ciphertext)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &&r.id[..],
                    &r.metric.as_str(),
                    &r.recipient.as_str(),
                    &&r.receipt.as_bytes()[..],
                    &sql_time(r.collected_at),
                    &sql_time(r.deadline()),
                    &&key_id[..],
                    &&nonce[..],
                    &ct,
                ],
            )?;
        }
        if !batch.seen.is_empty() {
            let digests: Vec<&[u8]> = batch.seen.iter().map(|s| &s.envelope[..]).collect();
            let expiries: Vec<i64> = batch.seen.iter().map(|s| sql_time(s.expires_at)).collect();
            tx.execute(
                "INSERT INTO seen_envelope (digest, expires_at) SELECT * FROM UNNEST($1::BYTEA[], $2::BIGINT[])",
                &[&digests, &expiries],
            )?;
            let ids: Vec<&[u8]> = batch.seen.iter().flat_map(|s| s.ids.iter().map(|id| &id[..])).collect();
            let expiries: Vec<i64> =
                batch.seen.iter().flat_map(|s| s.ids.iter().map(|_| sql_time(s.expires_at))).collect();
            tx.execute(
                "INSERT INTO seen_id (id, expires_at) SELECT * FROM UNNEST($1::BYTEA[], $2::BIGINT[])",
                &[&ids, &expiries],
            )?;
        }
        if !batch.audit.is_empty() {
            append_in(&mut tx, &batch.audit)?;
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
        let rows = self.client().query(
            "SELECT r.id, r.receipt, r.collected_at, r.deadline, r.nonce, r.ciphertext, k.key
             FROM record r JOIN period_key k ON k.key_id = r.key_id
             WHERE r.recipient = $1 AND r.metric = $2 AND r.collected_at >= $3 AND r.collected_at < $4
             ORDER BY r.collected_at, r.id",
            &[&recipient.as_str(), &metric.as_str(), &sql_time(from), &sql_time(to)],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: [u8; 16] = blob(r.get(0), "record id")?;
            let receipt = ReceiptId(blob(r.get(1), "receipt id")?);
            let nonce: [u8; 12] = blob(r.get(4), "nonce")?;
            let key = Zeroizing::new(r.get::<_, Vec<u8>>(6));
            let aad = record_aad(&id, metric, recipient, &receipt);
            let body = open_record(&key, nonce, r.get(5), &aad)?;
            out.push(Record {
                id,
                metric: metric.clone(),
                recipient: recipient.clone(),
                receipt,
                collected_at: from_sql_time(r.get(2)),
                deadline: from_sql_time(r.get(3)),
                body,
            });
        }
        Ok(out)
    }

    fn purge(&mut self, now: Timestamp) -> Result<PurgeReport, StoreError> {
        let t = sql_time(now);
        let mut c = self.client();
        let mut tx = c.transaction()?;
        lock_log(&mut tx)?;
        // One row per writer's partial: each partition counted once.
        let partition_keys: Vec<Vec<u8>> = tx
            .query("DELETE FROM partition_state WHERE deadline <= $1 RETURNING pkey", &[&t])?
            .iter()
            .map(|r| r.get(0))
            .collect::<std::collections::BTreeSet<Vec<u8>>>()
            .into_iter()
            .collect();
        let mut record_ids = Vec::new();
        for r in tx.query("DELETE FROM record WHERE deadline <= $1 RETURNING id", &[&t])? {
            record_ids.push(blob(r.get(0), "record id")?);
        }
        // Which records went, for the reconciliation after the watermark (`record_gone`).
        let gone: Vec<&[u8]> = record_ids.iter().map(<[u8; 16]>::as_slice).collect();
        tx.execute("INSERT INTO record_gone (id) SELECT * FROM UNNEST($1::BYTEA[])", &[&gone])?;
        let mut keys_destroyed = Vec::new();
        for r in tx.query(
            "DELETE FROM period_key k WHERE destroy_after <= $1
             AND NOT EXISTS (SELECT 1 FROM record r WHERE r.key_id = k.key_id) RETURNING key_id",
            &[&t],
        )? {
            keys_destroyed.push(blob(r.get(0), "key id")?);
        }
        // Ordered like SQLite's (insertion order is not kept by PostgreSQL's RETURNING).
        keys_destroyed.sort_unstable();
        tx.execute("DELETE FROM seen_envelope WHERE expires_at <= $1", &[&t])?;
        let ids_forgotten = tx.execute("DELETE FROM seen_id WHERE expires_at <= $1", &[&t])?;
        let report = PurgeReport {
            partitions: partition_keys.len() as u64,
            records: record_ids.len() as u64,
            partition_keys,
            record_ids,
            keys_destroyed,
            ids_forgotten,
        };
        let mut events = vec![AuditEvent::Purge {
            partitions: u32::try_from(report.partitions).unwrap_or(u32::MAX),
            records: u32::try_from(report.records).unwrap_or(u32::MAX),
            at: now,
        }];
        events
            .extend(report.keys_destroyed.iter().map(|k| AuditEvent::KeyDestruction { key_id: *k, at: now }));
        append_in(&mut tx, &events)?;
        tx.commit()?;
        Ok(report)
    }

    fn append_audit(&mut self, events: &[AuditEvent]) -> Result<(), StoreError> {
        let mut c = self.client();
        let mut tx = c.transaction()?;
        lock_log(&mut tx)?;
        append_in(&mut tx, events)?;
        tx.commit()?;
        Ok(())
    }
}

/// The audit log read through the store's connection ([`Store::audit_store`]), which it
/// locks for each read only: a caller keeping a log open (`Store::audit_log`) may still
/// use the store. Stored nodes never change, so reads of a size taken once stay
/// consistent while this or other processes append. Appends go through the store.
struct LogView<'a> {
    client: &'a Mutex<Client>,
}

fn audit_i64(v: u64) -> Result<i64, AuditError> {
    i64::try_from(v).map_err(|_| AuditError::OutOfRange { index: v, size: i64::MAX as u64 })
}

impl LogView<'_> {
    fn lock(&self) -> MutexGuard<'_, Client> {
        self.client.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn scan(&self, kinds: &[EventKind], tail: &str) -> Result<Vec<LoggedEvent>, AuditError> {
        let tags: Vec<i32> = kinds.iter().map(|k| i32::from(k.leaf_tag())).collect();
        let sql = format!("SELECT seq, leaf FROM audit_leaf WHERE get_byte(leaf, 0) = ANY($1) {tail}");
        let rows = self.lock().query(&sql, &[&tags])?;
        rows.iter()
            .map(|r| {
                let e = LoggedEvent::from_leaf_bytes(r.get::<_, &[u8]>(1))?;
                if i64::try_from(e.seq).ok() != Some(r.get::<_, i64>(0)) {
                    return Err(AuditError::Corrupt("stored leaf disagrees with its position"));
                }
                Ok(e)
            })
            .collect()
    }
}

impl AuditStore for LogView<'_> {
    fn len(&self) -> Result<u64, AuditError> {
        let n: i64 = self.lock().query_one("SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_leaf", &[])?.get(0);
        u64::try_from(n).map_err(|_| AuditError::Corrupt("negative sequence number"))
    }

    fn node(&self, level: u32, index: u64) -> Result<Hash, AuditError> {
        let mut c = self.lock();
        let row = if level == 0 {
            c.query_opt("SELECT hash FROM audit_leaf WHERE seq = $1", &[&audit_i64(index)?])?
        } else {
            let level = i32::try_from(level).map_err(|_| AuditError::Corrupt("level out of range"))?;
            c.query_opt(
                "SELECT hash FROM audit_node WHERE level = $1 AND idx = $2",
                &[&level, &audit_i64(index)?],
            )?
        };
        let bytes = row.ok_or(AuditError::Corrupt("node missing from the store"))?;
        bytes.get::<_, &[u8]>(0).try_into().map_err(|_| AuditError::Corrupt("stored hash is not 32 bytes"))
    }

    fn leaf(&self, index: u64) -> Result<Vec<u8>, AuditError> {
        let row =
            self.lock().query_opt("SELECT leaf FROM audit_leaf WHERE seq = $1", &[&audit_i64(index)?])?;
        match row {
            Some(r) => Ok(r.get(0)),
            None => Err(AuditError::OutOfRange { index, size: self.len()? }),
        }
    }

    /// Appends in a transaction of its own, under [`APPEND_LOCK`].
    fn append(&mut self, batch: &AppendBatch) -> Result<(), AuditError> {
        let mut c = self.lock();
        let tx = c.transaction()?;
        let mut log = AuditPg::attach(tx);
        log.append(batch)?;
        log.into_inner().commit()?;
        Ok(())
    }

    fn events_of_kind(&self, kinds: &[EventKind]) -> Result<Vec<LoggedEvent>, AuditError> {
        self.scan(kinds, "ORDER BY seq")
    }

    fn last_of_kind(&self, kinds: &[EventKind]) -> Result<Option<LoggedEvent>, AuditError> {
        Ok(self.scan(kinds, "ORDER BY seq DESC LIMIT 1")?.pop())
    }
}

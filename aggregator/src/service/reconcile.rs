//! Keeping the store, the consent ledger and the audit log in step across crashes
//! (docs/design.md#store, docs/design.md#audit-log; `docs/crash-safety.md`).
//!
//! With [`Aggregator::open`] the three live in one SQLite file but are written through
//! two connections: the store's (partitions, records, report ids, and the audit log) and
//! the ledger's. A SQLite transaction belongs to one connection, so:
//!
//! - **Consent** (receipts, withdrawals) and **disclosures** (record releases,
//!   transcryptions) are written *through the ledger's connection together with their
//!   audit events*, in one savepoint ([`Ledger::atomically`]): the audit tables are in
//!   the same file, and the log is opened from the database in every transaction, so
//!   either connection can append. A crash leaves both or neither.
//! - **Holdings** (the ledger's index of partitions and records, with audiences and
//!   deadlines) are derived from the store. Writing them in the store's commit would mean
//!   reworking [`Store::commit`](crate::store::Store::commit) around the ledger; instead
//!   they are written right after it, in one ledger savepoint, and
//!   [`Aggregator::reconcile`] — run by [`Aggregator::open`] before anything else —
//!   notes whatever the store holds that the ledger lacks and marks purged whatever the
//!   ledger holds that the store no longer has. Until a crash is reconciled, holdings can
//!   only lag the store, never lead it: the store always commits first.
//!
//! Reconciliation also appends the audit events of consent facts that have none (a
//! database written before consent and audit shared a savepoint, when a crash between
//! the two commits lost the events), in the ledger's order, before any new event.
//!
//! **Times.** A note repaired by reconciliation takes the time the lost note would have
//! had: the commit's — read back as the `at` of the newest `IngestBatch` event, which
//! the same store commit wrote — and a purge note the `at` of the first logged `Purge`
//! at or after the holding's deadline. So in the crash model (one commit or purge torn
//! at a time, reconciled at the next open) the repaired ledger answers exactly as one
//! that never crashed. Only if a note was lost *and* the aggregator kept running (an
//! error, not a crash) are the repaired times later than the truth.
//!
//! **Cost at open**: one pass over the stored records' clear-text columns, the
//! partitions already loaded, and one SQLite-side filtered scan of the audit leaves
//! ([`AuditStore::events_of_kind`](crate::audit::AuditStore::events_of_kind)); nothing is written when nothing is missing.
//!
//! **On a lazily loaded ledger** ([`Ledger::open_postgres_lazy`], what `confiance serve`
//! opens on PostgreSQL) the ledger holds no subject at open, so the comparisons are made
//! by the database the store and the ledger share
//! ([`Store::ledger_gaps`](crate::store::Store::ledger_gaps): three anti-joins in one
//! snapshot), and only the subjects of what needs repair are loaded. The repairs are the
//! same, in the same order (tested: `pg_service`,
//! `the_reconciliation_from_sql_repairs_exactly_what_the_in_memory_one_repairs`). The
//! consent facts without a key in `audit_consent` are those without an event (schema
//! version 6 added the keys of events logged before version 5), and the database keeps a
//! watermark of what the last reconciliation examined ([`ReconcileMark`](crate::store::ReconcileMark)):
//! only what was written after it is compared, so a start does not grow with the ledger.
//!
//! **Limit.** A partition purged and later recreated by a late report keeps its purged
//! holding (the ledger has one row per partition id); its data is still released and
//! purged correctly, only the holdings index under-reports it.

use std::collections::HashSet;

use confiance::Timestamp;
use confiance::ids::ReceiptId;
use rusqlite::Connection;

use super::{Aggregator, ServiceError};
use crate::audit::{AuditEvent, AuditLog, EventKind, SqliteStore as AuditSqlite};
use crate::ledger::{Ledger, LedgerError, PartitionNote, RecordNote};
use crate::store::{PartitionKey, StoreError};

/// What [`Aggregator::reconcile`] repaired; all zero for a consistent database.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Stored partitions the ledger's holdings lacked, now noted.
    pub partitions_noted: u64,
    /// Stored records the ledger's holdings lacked, now noted.
    pub records_noted: u64,
    /// Partitions the ledger held but the store had purged, now noted purged.
    pub partitions_purged: u64,
    /// Records the ledger held but the store had purged, now noted purged.
    pub records_purged: u64,
    /// Consent events appended to the audit log for receipts and withdrawals it lacked.
    pub consent_events_logged: u64,
    /// A leaf of the audit log did not read back (corruption or tampering): the log was
    /// left untouched — no consent event appended — for verification to report, and
    /// repaired holdings took fallback times (the bucket start, the deadline).
    pub audit_log_unreadable: bool,
}

impl ReconcileReport {
    /// Whether nothing needed repair.
    #[must_use]
    pub const fn is_clean(&self) -> bool {
        self.partitions_noted == 0
            && self.records_noted == 0
            && self.partitions_purged == 0
            && self.records_purged == 0
            && self.consent_events_logged == 0
    }
}

/// **Test-only fault injection.** When this environment variable names a crash point,
/// the process stops there: it prints `crash-point <name>` on stdout and sleeps until
/// it is killed, so a test harness can SIGKILL it at exactly that moment. Points:
/// `holdings` (after the store's commit or purge, before the ledger's holdings notes)
/// and `ledger-audit` (inside a ledger savepoint — consent, disclosures — after its
/// facts, before its audit events). Unset in production; read once per process.
#[doc(hidden)]
pub const CRASH_POINT_ENV: &str = "CONFIANCE_TEST_CRASH_POINT";

fn crash_point(name: &str) {
    static POINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if POINT.get_or_init(|| std::env::var(CRASH_POINT_ENV).ok()).as_deref() == Some(name) {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "crash-point {name}");
        let _ = out.flush();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}

/// A ledger failure while noting holdings, as the store-level error `commit` returns.
pub(super) fn ledger_to_store(e: LedgerError) -> StoreError {
    match e {
        LedgerError::Store(e) => StoreError::Sqlite(e),
        _ => StoreError::Corrupt("the ledger refused a holdings note"),
    }
}

/// Appends `events` to the audit log through `conn` — the ledger's connection, inside
/// its open savepoint, so that they commit with the ledger facts they record.
fn append_events(conn: &Connection, events: &[AuditEvent]) -> Result<(), ServiceError> {
    crash_point("ledger-audit");
    if events.is_empty() {
        return Ok(());
    }
    let mut log = AuditLog::open(AuditSqlite::attach(conn)).map_err(StoreError::Audit)?;
    log.append_batch(events.iter()).map_err(StoreError::Audit)?;
    Ok(())
}

/// The event a consent fact is logged with: given (`None`) or withdrawn at `at`.
const fn consent_event(receipt: ReceiptId, at: Option<Timestamp>) -> AuditEvent {
    match at {
        None => AuditEvent::ConsentGiven { receipt },
        Some(at) => AuditEvent::ConsentWithdrawn { receipt, at },
    }
}

fn partition_note(key: &PartitionKey) -> PartitionNote {
    PartitionNote {
        partition: key.to_bytes(),
        metric: key.metric.clone(),
        bucket_end: key.bucket_end,
        audience: key.audience.iter().cloned().collect(),
        deadline: key.deadline(),
    }
}

/// Marks purged, at `at` (valid and record time), the partitions and records among
/// those given that the ledger holds and has not marked purged yet.
fn mark_purged<'a>(
    l: &mut Ledger,
    partitions: impl IntoIterator<Item = (&'a [u8], Timestamp)>,
    records: impl IntoIterator<Item = (&'a [u8; 16], Timestamp)>,
) -> Result<(u64, u64), LedgerError> {
    let held_p: HashSet<Vec<u8>> = l.held_partitions().into_iter().map(|(id, _)| id).collect();
    let held_r: HashSet<[u8; 16]> = l.held_records().into_iter().map(|(id, _)| id).collect();
    let (mut np, mut nr) = (0, 0);
    for (id, at) in partitions {
        if held_p.contains(id) {
            l.note_partition_purged(id, at, at)?;
            np += 1;
        }
    }
    for (id, at) in records {
        if held_r.contains(id) {
            l.note_record_purged(id, at, at)?;
            nr += 1;
        }
    }
    Ok((np, nr))
}

/// A scan's events, or `None` (noted in the report) when a leaf does not read back: a
/// damaged log is an auditor's finding, not a reason to refuse to open.
fn readable<T>(
    scan: Result<T, crate::audit::AuditError>,
    report: &mut ReconcileReport,
) -> Result<Option<T>, ServiceError> {
    match scan {
        Ok(v) => Ok(Some(v)),
        Err(crate::audit::AuditError::Corrupt(_)) => {
            report.audit_log_unreadable = true;
            Ok(None)
        }
        Err(e) => Err(StoreError::Audit(e).into()),
    }
}

impl Aggregator {
    /// Whether the ledger's connection is on the store's database file (an aggregator
    /// from [`Self::open`]); `false` for [`Self::in_memory`], whose two in-memory
    /// databases are separate.
    fn shares_file(&self) -> bool {
        let Some(store) = self.store.as_sqlite() else { return false };
        match (self.ledger.connection().path(), store.connection().path()) {
            (Some(a), Some(b)) => !a.is_empty() && a == b,
            _ => false,
        }
    }

    /// Runs `f`, which records facts in the ledger (consent, disclosures) and pushes
    /// their audit events, then appends those events — all in one savepoint on the
    /// ledger's connection, so a crash leaves the facts and their events both or neither.
    /// (In memory the ledger and the store are separate databases: the events are
    /// appended after the ledger's commit; nothing there survives a crash anyway.)
    pub(super) fn record_with_events<T>(
        &mut self,
        f: impl FnOnce(&mut Ledger, &mut Vec<AuditEvent>) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        let mut events = Vec::new();
        if self.shares_file() {
            return self.ledger.atomically(|l| {
                let v = f(l, &mut events)?;
                append_events(l.connection(), &events)?;
                Ok(v)
            });
        }
        let v = self.ledger.atomically(|l| f(l, &mut events))?;
        self.store.append_audit(&events)?;
        Ok(v)
    }

    /// Notes, in one ledger savepoint, the partitions a store commit just created and
    /// the records it stored. Partitions the ledger already knows (a partition purged
    /// and recreated) are skipped. Called right after [`Store::commit`](crate::store::Store::commit):
    /// a crash before it is repaired by [`Self::reconcile`] at the next open.
    pub(super) fn note_holdings(
        &mut self,
        partitions: &[PartitionKey],
        records: &[RecordNote],
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        crash_point("holdings");
        if partitions.is_empty() && records.is_empty() {
            return Ok(());
        }
        self.ledger.atomically(|l| {
            for key in partitions {
                let note = partition_note(key);
                if !l.knows_partition(&note.partition) {
                    l.note_partition(&note, now)?;
                }
            }
            for note in records {
                // On a shared ledger another process's reconciliation may have noted it
                // first (between this process's store commit and this note). (A lazily
                // loaded ledger knows it once the receipt's subject is loaded.)
                l.load_receipt(&note.receipt)?;
                if l.is_shared() && l.knows_record(&note.record) {
                    continue;
                }
                l.note_record(note, now)?;
            }
            Ok(())
        })
    }

    /// Notes, in one ledger savepoint and in id order, what a store purge at `now`
    /// removed. Called right after [`Store::purge`](crate::store::Store::purge); a crash
    /// before it is repaired by [`Self::reconcile`].
    pub(super) fn note_purged(
        &mut self,
        partitions: &[Vec<u8>],
        records: &[[u8; 16]],
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        crash_point("holdings");
        if partitions.is_empty() && records.is_empty() {
            return Ok(());
        }
        let mut partitions: Vec<&[u8]> = partitions.iter().map(Vec::as_slice).collect();
        let mut records: Vec<&[u8; 16]> = records.iter().collect();
        partitions.sort_unstable();
        records.sort_unstable();
        self.ledger.atomically(|l| {
            // A lazily loaded ledger knows a record's holding once its subject is loaded.
            for r in &records {
                l.load_record(r)?;
            }
            mark_purged(l, partitions.into_iter().map(|p| (p, now)), records.into_iter().map(|r| (r, now)))
                .map(|_| ())
        })
    }

    /// Brings the ledger's holdings and the audit log's consent events in line with
    /// what the store and the ledger hold (`docs/crash-safety.md` explains why). Run
    /// by [`Self::open`]; idempotent, and writes nothing to a consistent database.
    ///
    /// 1. Stored partitions and records the holdings lack are noted, in the order the
    ///    commit would have noted them (partitions by key, then records as stored), at
    ///    the time of the newest `IngestBatch` event.
    /// 2. Holdings whose data the store no longer has are noted purged, in id order, at
    ///    the first logged `Purge` at or after their deadline.
    /// 3. Receipts and withdrawals without a `ConsentGiven` / `ConsentWithdrawn` event
    ///    get one, in the ledger's order, appended after everything else.
    ///
    /// # Errors
    /// [`ServiceError`] when a table cannot be read or written, or a stored record names
    /// a receipt the ledger does not hold (a corrupt database); then nothing of that
    /// step is written.
    pub fn reconcile(&mut self) -> Result<ReconcileReport, ServiceError> {
        let mut report = ReconcileReport::default();
        // A lazily loaded ledger holds no subject at open: the comparisons are made by
        // the database the store and the ledger share (anti-joins), and only the subjects
        // of what needs repair are loaded.
        let gaps = if self.ledger.is_lazy() { self.store.ledger_gaps()? } else { None };
        let (heads, gone_r, facts, mark) = match gaps {
            Some(g) => (g.unnoted_records, Some(g.gone_records), Some(g.unlogged_consent), g.mark),
            None => (self.store.record_heads()?, None, None, None),
        };
        self.reconcile_holdings(heads, gone_r, &mut report)?;
        self.reconcile_consent_log(facts, &mut report)?;
        // Only once every repair below it is committed: a crash before this line leaves
        // the older mark, and the next open finds (and repairs, idempotently) the same.
        if let Some(mark) = mark {
            self.store.mark_reconciled(&mark)?;
        }
        Ok(report)
    }

    pub(super) fn reconciled(mut self) -> Result<Self, ServiceError> {
        self.reconcile()?;
        Ok(self)
    }

    /// Step 1 and 2 of [`Self::reconcile`]. `heads`: every stored record (in memory), or
    /// those the holdings lack (`gone_r` then given too, from SQL: the held records the
    /// store no longer has). The partitions are compared in memory either way (a lazily
    /// loaded ledger loads them all at open).
    fn reconcile_holdings(
        &mut self,
        heads: Vec<crate::store::RecordHead>,
        gone_r: Option<Vec<([u8; 16], Timestamp)>>,
        report: &mut ReconcileReport,
    ) -> Result<(), ServiceError> {
        // What the notes read (the receipts' terms and times) is loaded first.
        for h in &heads {
            self.ledger.load_receipt(&h.receipt)?;
        }
        let committed = self.committed()?;
        let fresh: Vec<&PartitionKey> =
            committed.keys().filter(|k| !self.ledger.knows_partition(&k.to_bytes())).collect();
        let new_heads: Vec<_> = heads.iter().filter(|h| !self.ledger.knows_record(&h.id)).collect();
        let stored_p: HashSet<Vec<u8>> = committed.keys().map(PartitionKey::to_bytes).collect();
        let gone_p: Vec<(Vec<u8>, Timestamp)> =
            self.ledger.held_partitions().into_iter().filter(|(id, _)| !stored_p.contains(id)).collect();
        let gone_r: Vec<([u8; 16], Timestamp)> = gone_r.unwrap_or_else(|| {
            let stored_r: HashSet<[u8; 16]> = heads.iter().map(|h| h.id).collect();
            self.ledger.held_records().into_iter().filter(|(id, _)| !stored_r.contains(id)).collect()
        });
        if fresh.is_empty() && new_heads.is_empty() && gone_p.is_empty() && gone_r.is_empty() {
            return Ok(());
        }
        let log = self.store.audit_store();
        let ingest_at = readable(log.last_of_kind(&[EventKind::IngestBatch]), report)?.flatten();
        let ingest_at = ingest_at.and_then(|e| e.event.at());
        let purges: Vec<Timestamp> = readable(log.events_of_kind(&[EventKind::Purge]), report)?
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.event.at())
            .collect();
        let purged_at = |deadline: Timestamp| {
            purges
                .iter()
                .copied()
                .find(|&t| t >= deadline)
                .or_else(|| purges.last().copied())
                .unwrap_or(deadline)
        };
        let partition_notes: Vec<(PartitionNote, Timestamp)> =
            fresh.iter().map(|k| (partition_note(k), ingest_at.unwrap_or(k.bucket_start))).collect();
        let mut record_notes = Vec::with_capacity(new_heads.len());
        for h in new_heads {
            let terms =
                self.ledger.receipt_terms(&h.receipt).ok_or(LedgerError::UnknownReceipt(h.receipt))?;
            // As `stage` computes it: the receipt's and the catalogue's hold, capped by the tag's.
            let deadline = self
                .ledger
                .record_deadline(&h.receipt, &h.metric, h.collected_at)
                .unwrap_or(h.deadline)
                .min(h.deadline);
            let known = self.ledger.receipt_recorded_at(&h.receipt).unwrap_or(Timestamp::EPOCH);
            let at = ingest_at.unwrap_or(h.collected_at).max(known);
            let note = RecordNote {
                record: h.id,
                subject: terms.subject,
                recipient: terms.recipient,
                metric: h.metric.clone(),
                receipt: h.receipt,
                collected_at: h.collected_at,
                deadline,
            };
            record_notes.push((note, at));
        }
        let (noted_p, noted_r, np, nr) = self.ledger.atomically(|l| {
            // On a shared ledger this transaction first caught up with the other
            // processes: one of them may have noted since this index was loaded what its
            // own store commit wrote (its commit fell between this process's load and its
            // reading of the store). Only what is still missing is noted.
            let (mut noted_p, mut noted_r) = (0u64, 0u64);
            for (note, at) in &partition_notes {
                if !l.knows_partition(&note.partition) {
                    l.note_partition(note, *at)?;
                    noted_p += 1;
                }
            }
            for (note, at) in &record_notes {
                if !l.knows_record(&note.record) {
                    l.note_record(note, *at)?;
                    noted_r += 1;
                }
            }
            for (id, _) in &gone_r {
                l.load_record(id)?;
            }
            let (np, nr) = mark_purged(
                l,
                gone_p.iter().map(|(id, d)| (id.as_slice(), purged_at(*d))),
                gone_r.iter().map(|(id, d)| (id, purged_at(*d))),
            )?;
            Ok::<_, LedgerError>((noted_p, noted_r, np, nr))
        })?;
        report.partitions_noted += noted_p;
        report.records_noted += noted_r;
        report.partitions_purged += np;
        report.records_purged += nr;
        Ok(())
    }

    /// Step 3 of [`Self::reconcile`]. `missing`: the consent facts whose event is
    /// missing, from SQL (those with no key in `audit_consent`, which holds every logged
    /// consent event's since schema version 6); `None`: every fact, each checked against
    /// the log.
    fn reconcile_consent_log(
        &mut self,
        missing: Option<Vec<(ReceiptId, Option<Timestamp>)>>,
        report: &mut ReconcileReport,
    ) -> Result<(), ServiceError> {
        if let Some(facts) = missing {
            let events: Vec<AuditEvent> = facts.into_iter().map(|(r, at)| consent_event(r, at)).collect();
            return self.log_consent(&events, report);
        }
        let facts = self.ledger.consent_facts();
        if facts.is_empty() {
            return Ok(());
        }
        let scan =
            self.store.audit_store().events_of_kind(&[EventKind::ConsentGiven, EventKind::ConsentWithdrawn]);
        let Some(logged) = readable(scan, report)? else { return Ok(()) };
        let mut given: HashSet<ReceiptId> = HashSet::with_capacity(logged.len());
        let mut withdrawn: HashSet<ReceiptId> = HashSet::new();
        for e in &logged {
            match e.event {
                AuditEvent::ConsentGiven { receipt } => given.insert(receipt),
                AuditEvent::ConsentWithdrawn { receipt, .. } => withdrawn.insert(receipt),
                _ => false,
            };
        }
        let missing: Vec<AuditEvent> = facts
            .into_iter()
            .filter(
                |(receipt, at)| {
                    if at.is_none() { !given.contains(receipt) } else { !withdrawn.contains(receipt) }
                },
            )
            .map(|(receipt, at)| consent_event(receipt, at))
            .collect();
        self.log_consent(&missing, report)
    }

    fn log_consent(
        &mut self,
        missing: &[AuditEvent],
        report: &mut ReconcileReport,
    ) -> Result<(), ServiceError> {
        if !missing.is_empty() {
            self.store.append_audit(missing)?;
            report.consent_events_logged += u64::try_from(missing.len()).unwrap_or(u64::MAX);
        }
        Ok(())
    }
}

//! The ledger's tables: compact rows written at ingest, read back at open — in SQLite
//! (this file) or in PostgreSQL ([`super::postgres`]), the same columns in both. A fact
//! is written as a [`Fact`] through a [`FactSink`] and read back through a
//! [`FactSource`]: the code turning rows into the index is the same for both backends.
//!
//! Rows hold what the index needs and nothing derived from it; a receipt row also keeps
//! the signed bytes (`signed`, for export and re-verification by an auditor) but a cold
//! load never reads them: signatures were verified at ingest, and the store is trusted
//! to be the ledger's own (whoever can write it can also rewrite the audit log's input).
//! Times are stored as the two's-complement `i64` of their `u64` seconds, so
//! [`Timestamp::MAX`] ("never") round-trips as `-1`.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};

use confiance::Timestamp;
use confiance::catalogue::CatalogueDigest;
use confiance::ids::{
    CertificateId, CertifierPublicKey, DelegationId, DevicePublicKey, ReceiptId, SubjectId,
};
use confiance::retention::Duration;
use rusqlite::{Connection, OptionalExtension as _, params, params_from_iter};

use super::LedgerError;
use super::answer::DisclosureKind;
use super::index::{
    CertificateRow, DelegationRow, DisclosureRow, Index, NEVER, Names, OverrideRow, PartitionRow, ReceiptRow,
    RecordRow, RevocationRow,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger_meta (
  key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_receipt (
  seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, subject BLOB NOT NULL, device_key BLOB NOT NULL,
  recipient TEXT NOT NULL, purpose TEXT NOT NULL, metrics TEXT NOT NULL, hold TEXT NOT NULL,
  valid_from INTEGER NOT NULL, valid_until INTEGER NOT NULL, recorded_at INTEGER NOT NULL, signed BLOB);
CREATE TABLE IF NOT EXISTS ledger_withdrawal (
  seq INTEGER PRIMARY KEY, receipt BLOB NOT NULL UNIQUE, at INTEGER NOT NULL,
  recorded_at INTEGER NOT NULL, signed BLOB);
CREATE TABLE IF NOT EXISTS ledger_record (
  seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, receipt BLOB NOT NULL, metric TEXT NOT NULL,
  collected_at INTEGER NOT NULL, deadline INTEGER NOT NULL, recorded_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_record_purge (
  seq INTEGER PRIMARY KEY, record BLOB NOT NULL UNIQUE, at INTEGER NOT NULL, recorded_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_partition (
  seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, metric TEXT NOT NULL, bucket_end INTEGER NOT NULL,
  audience TEXT NOT NULL, deadline INTEGER NOT NULL, recorded_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_partition_purge (
  seq INTEGER PRIMARY KEY, partition BLOB NOT NULL UNIQUE, at INTEGER NOT NULL, recorded_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_delegation (
  seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, subject BLOB NOT NULL, device BLOB NOT NULL,
  valid_from INTEGER NOT NULL, valid_until INTEGER NOT NULL, recorded_at INTEGER NOT NULL, signed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_revocation (
  seq INTEGER PRIMARY KEY, device BLOB NOT NULL UNIQUE, at INTEGER NOT NULL, recorded_at INTEGER NOT NULL,
  signed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_override (
  seq INTEGER PRIMARY KEY, subject BLOB NOT NULL UNIQUE, reason TEXT NOT NULL, at INTEGER NOT NULL,
  recorded_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_certificate (
  seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, key BLOB NOT NULL, certifier BLOB NOT NULL,
  not_before INTEGER NOT NULL, not_after INTEGER NOT NULL, recorded_at INTEGER NOT NULL, signed BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS ledger_certificate_key ON ledger_certificate (key);
CREATE TABLE IF NOT EXISTS ledger_disclosure (
  seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, recipient TEXT NOT NULL, metric TEXT NOT NULL,
  purpose TEXT NOT NULL, subject BLOB NOT NULL, at INTEGER NOT NULL, record BLOB,
  recorded_at INTEGER NOT NULL);
";

/// One fact as stored: the columns of one row of one `ledger_*` table, borrowed.
/// Times and sequence numbers as stored (`i64`, see the module documentation).
#[derive(Debug)]
pub(crate) enum Fact<'a> {
    Receipt {
        seq: i64,
        id: &'a [u8],
        subject: &'a [u8],
        device_key: &'a [u8],
        recipient: &'a str,
        purpose: &'a str,
        metrics: &'a str,
        hold: &'a str,
        valid_from: i64,
        valid_until: i64,
        recorded_at: i64,
        signed: Option<&'a [u8]>,
    },
    Withdrawal {
        seq: i64,
        receipt: &'a [u8],
        at: i64,
        recorded_at: i64,
        signed: Option<&'a [u8]>,
    },
    Record {
        seq: i64,
        id: &'a [u8],
        receipt: &'a [u8],
        metric: &'a str,
        collected_at: i64,
        deadline: i64,
        recorded_at: i64,
    },
    Purge {
        partition: bool,
        seq: i64,
        id: &'a [u8],
        at: i64,
        recorded_at: i64,
    },
    Partition {
        seq: i64,
        id: &'a [u8],
        metric: &'a str,
        bucket_end: i64,
        audience: &'a str,
        deadline: i64,
        recorded_at: i64,
    },
    Delegation {
        seq: i64,
        id: &'a [u8],
        subject: &'a [u8],
        device: &'a [u8],
        valid_from: i64,
        valid_until: i64,
        recorded_at: i64,
        signed: &'a [u8],
    },
    Revocation {
        seq: i64,
        device: &'a [u8],
        at: i64,
        recorded_at: i64,
        signed: &'a [u8],
    },
    Override {
        seq: i64,
        subject: &'a [u8],
        reason: &'a str,
        at: i64,
        recorded_at: i64,
    },
    Certificate {
        seq: i64,
        id: &'a [u8],
        key: &'a [u8],
        certifier: &'a [u8],
        not_before: i64,
        not_after: i64,
        recorded_at: i64,
        signed: &'a [u8],
    },
    Disclosure {
        seq: i64,
        kind: &'a str,
        recipient: &'a str,
        metric: &'a str,
        purpose: &'a str,
        subject: &'a [u8],
        at: i64,
        record: Option<&'a [u8]>,
        recorded_at: i64,
    },
}

/// A column value of a [`Fact`], for either backend's parameter binding.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Val<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    Text(&'a str),
    OptBytes(Option<&'a [u8]>),
}

impl rusqlite::ToSql for Val<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Self::Int(v) => v.to_sql(),
            Self::Bytes(v) => v.to_sql(),
            Self::Text(v) => v.to_sql(),
            Self::OptBytes(v) => v.to_sql(),
        }
    }
}

impl Fact<'_> {
    /// Its `seq`.
    pub(crate) const fn seq(&self) -> i64 {
        match *self {
            Self::Receipt { seq, .. }
            | Self::Withdrawal { seq, .. }
            | Self::Record { seq, .. }
            | Self::Purge { seq, .. }
            | Self::Partition { seq, .. }
            | Self::Delegation { seq, .. }
            | Self::Revocation { seq, .. }
            | Self::Override { seq, .. }
            | Self::Certificate { seq, .. }
            | Self::Disclosure { seq, .. } => seq,
        }
    }

    /// Its `INSERT` (parameters `$1`, `$2`, … in order: both SQLite and PostgreSQL read
    /// them) and its values.
    pub(crate) fn insert(&self) -> (&'static str, Vec<Val<'_>>) {
        use Val::{Bytes as B, Int as I, OptBytes as N, Text as T};
        match *self {
            Self::Receipt {
                seq,
                id,
                subject,
                device_key,
                recipient,
                purpose,
                metrics,
                hold,
                valid_from,
                valid_until,
                recorded_at,
                signed,
            } => (
                "INSERT INTO ledger_receipt (seq, id, subject, device_key, recipient, purpose, metrics, hold,
                 valid_from, valid_until, recorded_at, signed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                vec![
                    I(seq),
                    B(id),
                    B(subject),
                    B(device_key),
                    T(recipient),
                    T(purpose),
                    T(metrics),
                    T(hold),
                    I(valid_from),
                    I(valid_until),
                    I(recorded_at),
                    N(signed),
                ],
            ),
            Self::Withdrawal { seq, receipt, at, recorded_at, signed } => (
                "INSERT INTO ledger_withdrawal (seq, receipt, at, recorded_at, signed) VALUES ($1, $2, $3, $4, $5)",
                vec![I(seq), B(receipt), I(at), I(recorded_at), N(signed)],
            ),
            Self::Record { seq, id, receipt, metric, collected_at, deadline, recorded_at } => (
                "INSERT INTO ledger_record (seq, id, receipt, metric, collected_at, deadline, recorded_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                vec![I(seq), B(id), B(receipt), T(metric), I(collected_at), I(deadline), I(recorded_at)],
            ),
            Self::Purge { partition, seq, id, at, recorded_at } => (
                if partition {
                    "INSERT INTO ledger_partition_purge (seq, partition, at, recorded_at) VALUES ($1, $2, $3, $4)"
                } else {
                    "INSERT INTO ledger_record_purge (seq, record, at, recorded_at) VALUES ($1, $2, $3, $4)"
                },
                vec![I(seq), B(id), I(at), I(recorded_at)],
            ),
            Self::Partition { seq, id, metric, bucket_end, audience, deadline, recorded_at } => (
                "INSERT INTO ledger_partition (seq, id, metric, bucket_end, audience, deadline, recorded_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                vec![I(seq), B(id), T(metric), I(bucket_end), T(audience), I(deadline), I(recorded_at)],
            ),
            Self::Delegation { seq, id, subject, device, valid_from, valid_until, recorded_at, signed } => (
                "INSERT INTO ledger_delegation (seq, id, subject, device, valid_from, valid_until, recorded_at, signed)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                vec![
                    I(seq),
                    B(id),
                    B(subject),
                    B(device),
                    I(valid_from),
                    I(valid_until),
                    I(recorded_at),
                    B(signed),
                ],
            ),
            Self::Revocation { seq, device, at, recorded_at, signed } => (
                "INSERT INTO ledger_revocation (seq, device, at, recorded_at, signed) VALUES ($1, $2, $3, $4, $5)",
                vec![I(seq), B(device), I(at), I(recorded_at), B(signed)],
            ),
            Self::Override { seq, subject, reason, at, recorded_at } => (
                "INSERT INTO ledger_override (seq, subject, reason, at, recorded_at) VALUES ($1, $2, $3, $4, $5)",
                vec![I(seq), B(subject), T(reason), I(at), I(recorded_at)],
            ),
            Self::Certificate { seq, id, key, certifier, not_before, not_after, recorded_at, signed } => (
                "INSERT INTO ledger_certificate (seq, id, key, certifier, not_before, not_after, recorded_at, signed)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                vec![
                    I(seq),
                    B(id),
                    B(key),
                    B(certifier),
                    I(not_before),
                    I(not_after),
                    I(recorded_at),
                    B(signed),
                ],
            ),
            Self::Disclosure { seq, kind, recipient, metric, purpose, subject, at, record, recorded_at } => (
                "INSERT INTO ledger_disclosure (seq, kind, recipient, metric, purpose, subject, at, record, recorded_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                vec![
                    I(seq),
                    T(kind),
                    T(recipient),
                    T(metric),
                    T(purpose),
                    B(subject),
                    I(at),
                    N(record),
                    I(recorded_at),
                ],
            ),
        }
    }
}

/// Where the ledger writes its facts: its SQLite connection, or the shared PostgreSQL
/// ledger.
pub(crate) trait FactSink {
    /// Writes one fact (in the caller's transaction, if one is open).
    fn put(&self, fact: &Fact<'_>) -> Result<(), LedgerError>;
}

impl FactSink for Connection {
    fn put(&self, fact: &Fact<'_>) -> Result<(), LedgerError> {
        let (sql, vals) = fact.insert();
        self.prepare_cached(sql)?.execute(params_from_iter(vals))?;
        Ok(())
    }
}

/// The ledger's tables, in the order a load reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Receipt,
    Withdrawal,
    Record,
    RecordPurge,
    Partition,
    PartitionPurge,
    Disclosure,
    Delegation,
    Revocation,
    Override,
    Certificate,
}

/// Which rows of the ledger's tables a load reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Select<'a> {
    /// Every fact with `from <= seq < to` (`Seqs(from, to)`).
    Seqs(i64, i64),
    /// The facts of one subject (its id's bytes) with `seq < to`: its receipts, their
    /// withdrawals, records and purges, its disclosures, delegations, the revocations of
    /// its devices and its override. Partitions belong to no subject: none.
    Subject(&'a [u8], i64),
    /// As `Subject`, for several subjects at once (one query per table).
    Subjects(&'a [&'a [u8]], i64),
    /// The partitions and their purges with `seq < to` (what a lazy ledger loads at
    /// open: O(partitions), no subject's fact).
    Partitions(i64),
    /// The device certificates of one key (its bytes) with `seq < to`: certificates
    /// belong to no subject (one arrives before its key's delegation), so a lazy ledger
    /// reads them by key.
    Key(&'a [u8], i64),
}

impl Select<'_> {
    /// Whether this selection reads anything of `table`.
    pub(crate) const fn reads(self, table: Table) -> bool {
        match self {
            Self::Seqs(..) => true,
            Self::Subject(..) | Self::Subjects(..) => {
                !matches!(table, Table::Partition | Table::PartitionPurge | Table::Certificate)
            }
            Self::Partitions(_) => matches!(table, Table::Partition | Table::PartitionPurge),
            Self::Key(..) => matches!(table, Table::Certificate),
        }
    }
}

/// The subjects with a receipt or a disclosure for recipient `$1` among the facts with
/// `$2 <= seq < $3` (the same SQL on both backends).
pub(crate) const SUBJECTS_OF_RECIPIENT: &str = "SELECT subject FROM ledger_receipt
     WHERE recipient = $1 AND seq >= $2 AND seq < $3
     UNION SELECT subject FROM ledger_disclosure WHERE recipient = $1 AND seq >= $2 AND seq < $3";

/// Which subjects a question across subjects reads, for [`FactSource::subjects_page`]:
/// a superset of those whose facts can change its answer (the in-memory query decides,
/// so a superset costs reading time, never exactness). Times as stored (`i64`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scan<'a> {
    /// Subjects with a receipt covering one of these metrics: who sees them, and the
    /// grants a catalogue change removes (a record needs a receipt covering its metric).
    Metrics(&'a [&'a str]),
    /// Subjects with a record whose deadline is at or before `now` (or never, stored as
    /// a negative number) and that no purge known at `known` had removed by `now`:
    /// every subject with a record overdue at `now` as known at `known`.
    Overdue { now: i64, known: i64 },
    /// Subjects with a disclosure at a valid time in `[from, to)`.
    Disclosures { from: i64, to: i64 },
    /// Every subject with a receipt or a disclosure: whoever a recipient's history
    /// names (a record needs a receipt).
    All,
}

impl Scan<'_> {
    /// Its page on PostgreSQL: `$1` the last subject of the previous page (the empty
    /// bytes first), `$2` the bound on `seq`, `$3` the page's length, then the scan's
    /// own parameters. Each reads an index (docs/scaling.md).
    pub(crate) const fn pg_sql(self) -> &'static str {
        match self {
            Self::Metrics(_) => {
                "SELECT DISTINCT subject FROM ledger_receipt
                 WHERE subject > $1 AND seq < $2 AND string_to_array(metrics, ' ') && $4::text[]
                 ORDER BY subject LIMIT $3"
            }
            Self::Overdue { .. } => {
                "SELECT DISTINCT r.subject FROM ledger_record c JOIN ledger_receipt r ON r.id = c.receipt
                 WHERE r.subject > $1 AND c.seq < $2 AND (c.deadline <= $4 OR c.deadline < 0)
                 AND NOT EXISTS (SELECT 1 FROM ledger_record_purge p WHERE p.record = c.id
                   AND p.seq < $2 AND p.at <= $4 AND p.recorded_at <= $5)
                 ORDER BY r.subject LIMIT $3"
            }
            Self::Disclosures { .. } => {
                "SELECT DISTINCT subject FROM ledger_disclosure
                 WHERE subject > $1 AND seq < $2 AND at >= $4 AND at < $5
                 ORDER BY subject LIMIT $3"
            }
            // Each side limited first: the page's subjects are among each side's first.
            Self::All => {
                "(SELECT DISTINCT subject FROM ledger_receipt WHERE subject > $1 AND seq < $2
                   ORDER BY subject LIMIT $3)
                 UNION (SELECT DISTINCT subject FROM ledger_disclosure WHERE subject > $1 AND seq < $2
                   ORDER BY subject LIMIT $3)
                 ORDER BY subject LIMIT $3"
            }
        }
    }
}

/// Every subject with a receipt or a disclosure (`$1` the last subject of the previous
/// page, `$2` the bound on `seq`, `$3` the page's length): SQLite's page for every
/// [`Scan`], a superset of each (an SQLite ledger is never lazy: no question scans it).
const ALL_SUBJECTS_PAGE: &str = "SELECT subject FROM (SELECT subject FROM ledger_receipt WHERE seq < ?2
     UNION SELECT subject FROM ledger_disclosure WHERE seq < ?2) WHERE subject > ?1 ORDER BY subject LIMIT ?3";

/// Lookups a lazily loaded ledger makes to find which subject's facts it needs: each is
/// one indexed query, `$1` the key's bytes and `$2` the bound on `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The subject of a receipt (by its id).
    Receipt,
    /// The subject of a record (through its receipt).
    Record,
    /// The subject that delegated a device key.
    Device,
    /// The subject of a delegation (by its id).
    Delegation,
}

impl Lookup {
    pub(crate) const fn sql(self) -> &'static str {
        match self {
            Self::Receipt => "SELECT subject FROM ledger_receipt WHERE id = $1 AND seq < $2",
            Self::Record => {
                "SELECT r.subject FROM ledger_record c JOIN ledger_receipt r ON r.id = c.receipt
                 WHERE c.id = $1 AND c.seq < $2"
            }
            Self::Device => "SELECT subject FROM ledger_delegation WHERE device = $1 AND seq < $2 LIMIT 1",
            Self::Delegation => "SELECT subject FROM ledger_delegation WHERE id = $1 AND seq < $2",
        }
    }
}

impl Table {
    /// Its rows with `$1 <= seq < $2`, by `seq`; the columns the load reads, in the
    /// order it reads them.
    pub(crate) const fn select(self) -> &'static str {
        match self {
            Self::Receipt => {
                "SELECT seq, id, subject, device_key, recipient, purpose, metrics, hold, valid_from, valid_until,
                 recorded_at FROM ledger_receipt WHERE seq >= $1 AND seq < $2 ORDER BY seq"
            }
            Self::Withdrawal => {
                "SELECT seq, receipt, at, recorded_at FROM ledger_withdrawal WHERE seq >= $1 AND seq < $2 ORDER BY seq"
            }
            Self::Record => {
                "SELECT seq, id, receipt, metric, collected_at, deadline, recorded_at FROM ledger_record
                 WHERE seq >= $1 AND seq < $2 ORDER BY seq"
            }
            Self::RecordPurge => {
                "SELECT seq, record, at, recorded_at FROM ledger_record_purge WHERE seq >= $1 AND seq < $2 ORDER BY seq"
            }
            Self::Partition => {
                "SELECT seq, id, metric, bucket_end, audience, deadline, recorded_at FROM ledger_partition
                 WHERE seq >= $1 AND seq < $2 ORDER BY seq"
            }
            Self::PartitionPurge => {
                "SELECT seq, partition, at, recorded_at FROM ledger_partition_purge
                 WHERE seq >= $1 AND seq < $2 ORDER BY seq"
            }
            Self::Disclosure => {
                "SELECT seq, kind, recipient, metric, purpose, subject, at, record, recorded_at
                 FROM ledger_disclosure WHERE seq >= $1 AND seq < $2 ORDER BY seq"
            }
            Self::Delegation => {
                "SELECT seq, id, subject, device, valid_from, valid_until, recorded_at FROM ledger_delegation
                 WHERE seq >= $1 AND seq < $2 ORDER BY seq"
            }
            Self::Revocation => {
                "SELECT seq, device, at, recorded_at FROM ledger_revocation WHERE seq >= $1 AND seq < $2 ORDER BY seq"
            }
            Self::Override => {
                "SELECT seq, subject, reason, at, recorded_at FROM ledger_override
                 WHERE seq >= $1 AND seq < $2 ORDER BY seq"
            }
            Self::Certificate => {
                "SELECT seq, id, key, certifier, not_before, not_after, recorded_at FROM ledger_certificate
                 WHERE seq >= $1 AND seq < $2 ORDER BY seq"
            }
        }
    }

    /// The same columns for one key's rows (`$1` its bytes, `$2` the bound on `seq`):
    /// certificates only (indexed by key); any other table, the empty selection.
    pub(crate) const fn select_key(self) -> &'static str {
        match self {
            Self::Certificate => {
                "SELECT seq, id, key, certifier, not_before, not_after, recorded_at FROM ledger_certificate
                 WHERE key = $1 AND seq < $2 ORDER BY seq"
            }
            _ => "SELECT seq FROM ledger_certificate WHERE FALSE AND key = $1 AND seq < $2",
        }
    }

    /// The same columns for one subject's facts: `$1` the subject id's bytes, `$2` the
    /// bound on `seq`; by `seq`. Each reads an index (docs/scaling.md: `ledger_receipt
    /// (subject)`, `ledger_record (receipt)`, …). Partitions: the empty selection.
    pub(crate) const fn select_subject(self) -> &'static str {
        match self {
            Self::Receipt => {
                "SELECT seq, id, subject, device_key, recipient, purpose, metrics, hold, valid_from, valid_until,
                 recorded_at FROM ledger_receipt WHERE subject = $1 AND seq < $2 ORDER BY seq"
            }
            Self::Withdrawal => {
                "SELECT w.seq, w.receipt, w.at, w.recorded_at FROM ledger_withdrawal w
                 JOIN ledger_receipt r ON r.id = w.receipt WHERE r.subject = $1 AND w.seq < $2 ORDER BY w.seq"
            }
            Self::Record => {
                "SELECT c.seq, c.id, c.receipt, c.metric, c.collected_at, c.deadline, c.recorded_at
                 FROM ledger_record c JOIN ledger_receipt r ON r.id = c.receipt
                 WHERE r.subject = $1 AND c.seq < $2 ORDER BY c.seq"
            }
            Self::RecordPurge => {
                "SELECT p.seq, p.record, p.at, p.recorded_at FROM ledger_record_purge p
                 JOIN ledger_record c ON c.id = p.record JOIN ledger_receipt r ON r.id = c.receipt
                 WHERE r.subject = $1 AND p.seq < $2 ORDER BY p.seq"
            }
            Self::Partition | Self::PartitionPurge => {
                "SELECT seq FROM ledger_partition WHERE FALSE AND id = $1 AND seq < $2"
            }
            Self::Disclosure => {
                "SELECT seq, kind, recipient, metric, purpose, subject, at, record, recorded_at
                 FROM ledger_disclosure WHERE subject = $1 AND seq < $2 ORDER BY seq"
            }
            Self::Delegation => {
                "SELECT seq, id, subject, device, valid_from, valid_until, recorded_at FROM ledger_delegation
                 WHERE subject = $1 AND seq < $2 ORDER BY seq"
            }
            Self::Revocation => {
                "SELECT seq, device, at, recorded_at FROM ledger_revocation
                 WHERE device IN (SELECT device FROM ledger_delegation WHERE subject = $1) AND seq < $2 ORDER BY seq"
            }
            Self::Override => {
                "SELECT seq, subject, reason, at, recorded_at FROM ledger_override
                 WHERE subject = $1 AND seq < $2 ORDER BY seq"
            }
            Self::Certificate => "SELECT seq FROM ledger_certificate WHERE FALSE AND key = $1 AND seq < $2",
        }
    }
}

/// One row as read back, whichever the backend.
pub(crate) trait Cols {
    fn int(&self, i: usize) -> Result<i64, LedgerError>;
    fn bytes(&self, i: usize) -> Result<&[u8], LedgerError>;
    fn text(&self, i: usize) -> Result<&str, LedgerError>;
    fn opt_bytes(&self, i: usize) -> Result<Option<&[u8]>, LedgerError>;
}

impl Cols for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<i64, LedgerError> {
        Ok(self.get(i)?)
    }
    fn bytes(&self, i: usize) -> Result<&[u8], LedgerError> {
        Ok(self.get_ref(i)?.as_blob()?)
    }
    fn text(&self, i: usize) -> Result<&str, LedgerError> {
        Ok(self.get_ref(i)?.as_str()?)
    }
    fn opt_bytes(&self, i: usize) -> Result<Option<&[u8]>, LedgerError> {
        Ok(self.get_ref(i)?.as_blob_or_null()?)
    }
}

/// Where the ledger reads its facts back from.
pub(crate) trait FactSource {
    /// Calls `f` on each row of `table` that `sel` selects, in `seq` order.
    fn each(
        &self,
        table: Table,
        sel: Select<'_>,
        f: &mut dyn FnMut(&dyn Cols) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError>;

    /// The subject (its id's bytes) that `lookup` finds for `key` among the facts with
    /// `seq < to`, if any.
    fn subject_of(&self, lookup: Lookup, key: &[u8], to: i64) -> Result<Option<Vec<u8>>, LedgerError>;

    /// The subjects (their ids' bytes) with a receipt or a disclosure for `recipient`
    /// among the facts with `from <= seq < to`: every subject a question about that
    /// recipient reads (indexed by (recipient, seq) on PostgreSQL, schema version 6).
    fn subjects_of_recipient(&self, recipient: &str, from: i64, to: i64)
    -> Result<Vec<Vec<u8>>, LedgerError>;

    /// How many receipts are stored (to reserve room before a load).
    fn receipt_count(&self) -> Result<u64, LedgerError>;

    /// Calls `f` on each row of `sql` — one `SELECT` whose only parameter, `$1`, bounds
    /// `seq` (the same text on both backends) — in the order it gives, one row at a time
    /// (an auditor's pass over whole tables, [`crate::audit::verify_signed_facts`], holds
    /// no table in memory). `f` must not read the ledger itself: the connection is busy.
    fn each_row(
        &self,
        sql: &str,
        to: i64,
        f: &mut dyn FnMut(&dyn Cols) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError>;

    /// The next `limit` subjects (their ids' bytes, ascending) after `after` that `scan`
    /// selects among the facts with `seq < to`: a question across subjects reads them a
    /// page at a time, so its memory does not grow with the ledger.
    fn subjects_page(
        &self,
        scan: Scan<'_>,
        after: &[u8],
        limit: usize,
        to: i64,
    ) -> Result<Vec<Vec<u8>>, LedgerError>;
}

impl FactSource for Connection {
    fn each(
        &self,
        table: Table,
        sel: Select<'_>,
        f: &mut dyn FnMut(&dyn Cols) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        if !sel.reads(table) {
            return Ok(());
        }
        if let Select::Subjects(subjects, to) = sel {
            // No arrays in SQLite: one subject after the other.
            for subject in subjects {
                self.each(table, Select::Subject(subject, to), f)?;
            }
            return Ok(());
        }
        let sql = match sel {
            Select::Subject(..) => table.select_subject(),
            Select::Key(..) => table.select_key(),
            _ => table.select(),
        };
        let mut st = self.prepare_cached(sql)?;
        let mut rows = match sel {
            Select::Seqs(from, to) => st.query(params![from, to])?,
            Select::Subject(subject, to) | Select::Key(subject, to) => st.query(params![subject, to])?,
            Select::Subjects(..) => return Ok(()),
            Select::Partitions(to) => st.query(params![0i64, to])?,
        };
        while let Some(r) = rows.next()? {
            f(r)?;
        }
        Ok(())
    }

    fn subject_of(&self, lookup: Lookup, key: &[u8], to: i64) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.prepare_cached(lookup.sql())?.query_row(params![key, to], |r| r.get(0)).optional()?)
    }

    fn subjects_of_recipient(
        &self,
        recipient: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<Vec<u8>>, LedgerError> {
        let mut st = self.prepare_cached(SUBJECTS_OF_RECIPIENT)?;
        let rows = st.query_map(params![recipient, from, to], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn receipt_count(&self) -> Result<u64, LedgerError> {
        let n: i64 = self.query_row("SELECT count(*) FROM ledger_receipt", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn each_row(
        &self,
        sql: &str,
        to: i64,
        f: &mut dyn FnMut(&dyn Cols) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        let mut st = self.prepare(sql)?;
        let mut rows = st.query(params![to])?;
        while let Some(r) = rows.next()? {
            f(r)?;
        }
        Ok(())
    }

    fn subjects_page(
        &self,
        _scan: Scan<'_>,
        after: &[u8],
        limit: usize,
        to: i64,
    ) -> Result<Vec<Vec<u8>>, LedgerError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut st = self.prepare_cached(ALL_SUBJECTS_PAGE)?;
        let rows = st.query_map(params![after, to, limit], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The `seq` the next fact of the SQLite ledger in `conn` takes, as committed now (`seq`
/// is dense over the tables: one past the largest of any).
pub(super) fn stored_head(conn: &Connection) -> Result<u64, LedgerError> {
    let max = TABLES.map(|t| format!("SELECT max(seq) AS m FROM {t}")).join(" UNION ALL ");
    let last: Option<i64> = conn.query_row(&format!("SELECT max(m) FROM ({max})"), [], |r| r.get(0))?;
    Ok(last.map_or(0, |m| i2u(m) + 1))
}

/// The ledger's tables, each with a `seq` column.
const TABLES: [&str; 10] = [
    "ledger_receipt",
    "ledger_withdrawal",
    "ledger_record",
    "ledger_record_purge",
    "ledger_partition",
    "ledger_partition_purge",
    "ledger_delegation",
    "ledger_revocation",
    "ledger_override",
    "ledger_disclosure",
];

/// The report-token quota counts (tables `token_issued`, `token_scope_issued`): in the
/// ledger's SQLite database, or in the shared PostgreSQL database.
pub(crate) trait TokenCounts {
    /// Creates the tables if absent (PostgreSQL: made by the migrations).
    fn create_token_tables(&self) -> Result<(), LedgerError>;
    /// Tokens issued to `device` for `scope` (its bytes) so far.
    fn issued_before(&self, device: &[u8], scope: &[u8]) -> Result<u32, LedgerError>;
    /// Counts `n` more tokens issued to `device` for `scope`, which had `before`. A
    /// conditional update: when the stored count is not `before` (another process
    /// counted meanwhile) nothing is written and the answer is
    /// [`StoreError::Conflict`](crate::store::StoreError::Conflict).
    fn count_issued(
        &self,
        device: &[u8],
        scope: &[u8],
        period: i64,
        before: u32,
        n: u32,
    ) -> Result<(), LedgerError>;
    /// The earliest period with counts.
    fn first_period(&self) -> Result<Option<i64>, LedgerError>;
    /// Per scope of a period before `open`: (scope bytes, tokens, devices), by scope.
    fn scope_counts_before(&self, open: i64) -> Result<Vec<(Vec<u8>, i64, i64)>, LedgerError>;
    /// Forgets every count of a period before `open`.
    fn forget_before(&self, open: i64) -> Result<(), LedgerError>;
}

/// A ledger shared by several processes ([`super::postgres`]): its facts, its quota
/// counts, and transactions that serialize writers and give each fact its `seq`.
pub(crate) trait SharedLedger: Send + Sync {
    /// The facts, as written.
    fn sink(&self) -> &dyn FactSink;
    /// The facts, as read.
    fn source(&self) -> &dyn FactSource;
    /// The quota counts.
    fn tokens(&self) -> &dyn TokenCounts;
    /// Opens a transaction (outermost: takes the writers' lock, so no other process
    /// writes a fact until it ends) or a savepoint inside the open one.
    fn begin(&self) -> Result<(), LedgerError>;
    /// Ends what [`Self::begin`] opened: commits (outermost: storing `next_seq` as the
    /// ledger's head) when `ok`, else rolls back.
    fn end(&self, ok: bool, next_seq: u64) -> Result<(), LedgerError>;
    /// Whether a transaction is open.
    fn in_transaction(&self) -> bool;
    /// The `seq` the next fact will take: one past the last committed (the change
    /// sequence a process reads before each decision).
    fn head(&self) -> Result<u64, LedgerError>;
    /// Binds the ledger to the catalogue digest (refusing another).
    fn init(&self, digest: &[u8]) -> Result<(), LedgerError>;
}

pub(super) const fn t2i(t: Timestamp) -> i64 {
    t.as_secs() as i64
}

pub(super) const fn i2t(i: i64) -> Timestamp {
    Timestamp::from_secs(i as u64)
}

const fn u2i(u: u64) -> i64 {
    u as i64
}

const fn i2u(i: i64) -> u64 {
    i as u64
}

/// Creates the tables if absent and binds the store to the catalogue digest.
pub(super) fn init<C: Borrow<Connection>>(conn: &C, digest: CatalogueDigest) -> Result<(), LedgerError> {
    let conn = conn.borrow();
    conn.execute_batch(SCHEMA)?;
    let stored: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM ledger_meta WHERE key = 'catalogue'", [], |r| r.get(0))
        .optional()?;
    match stored {
        Some(d) if d.as_slice() != digest.as_bytes() => Err(LedgerError::CatalogueChanged),
        Some(_) => Ok(()),
        None => {
            conn.execute(
                "INSERT INTO ledger_meta (key, value) VALUES ('catalogue', ?1)",
                params![digest.as_bytes().as_slice()],
            )?;
            Ok(())
        }
    }
}

fn join<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut s = String::new();
    for (i, n) in names.enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(n);
    }
    s
}

pub(super) fn insert_receipt(
    sink: &dyn FactSink,
    names: &Names,
    row: &ReceiptRow,
    subject: &SubjectId,
    hold: &Duration,
    signed: Option<&[u8]>,
) -> Result<(), LedgerError> {
    let metrics =
        join(row.metrics.iter().filter_map(|&m| names.metrics.get(usize::from(m))).map(|m| m.as_str()));
    let hold = hold.to_string();
    sink.put(&Fact::Receipt {
        seq: u2i(row.seq),
        id: row.id.as_bytes().as_slice(),
        subject: subject.as_bytes().as_slice(),
        device_key: row.device_key.as_slice(),
        recipient: names.recipients.get(usize::from(row.recipient)).map_or("", |r| r.as_str()),
        purpose: names.purposes.get(usize::from(row.purpose)).map_or("", |p| p.as_str()),
        metrics: &metrics,
        hold: &hold,
        valid_from: t2i(row.valid_from),
        valid_until: t2i(row.valid_until),
        recorded_at: t2i(row.recorded_at),
        signed,
    })
}

pub(super) fn insert_withdrawal(
    sink: &dyn FactSink,
    seq: u64,
    receipt: &ReceiptId,
    at: Timestamp,
    recorded_at: Timestamp,
    signed: Option<&[u8]>,
) -> Result<(), LedgerError> {
    sink.put(&Fact::Withdrawal {
        seq: u2i(seq),
        receipt: receipt.as_bytes().as_slice(),
        at: t2i(at),
        recorded_at: t2i(recorded_at),
        signed,
    })
}

pub(super) fn insert_record(
    sink: &dyn FactSink,
    names: &Names,
    ix: &Index,
    row: &RecordRow,
) -> Result<(), LedgerError> {
    let receipt = ix.receipts.get(row.receipt as usize).ok_or(LedgerError::Corrupt("record receipt"))?;
    sink.put(&Fact::Record {
        seq: u2i(row.seq),
        id: row.id.as_slice(),
        receipt: receipt.id.as_bytes().as_slice(),
        metric: names.metrics.get(usize::from(row.metric)).map_or("", |m| m.as_str()),
        collected_at: t2i(row.collected_at),
        deadline: t2i(row.deadline),
        recorded_at: t2i(row.recorded_at),
    })
}

pub(super) fn insert_purge(
    sink: &dyn FactSink,
    partition: bool,
    seq: u64,
    id: &[u8],
    at: Timestamp,
    recorded_at: Timestamp,
) -> Result<(), LedgerError> {
    sink.put(&Fact::Purge { partition, seq: u2i(seq), id, at: t2i(at), recorded_at: t2i(recorded_at) })
}

pub(super) fn insert_partition(
    sink: &dyn FactSink,
    names: &Names,
    row: &PartitionRow,
) -> Result<(), LedgerError> {
    let audience =
        join(row.audience.iter().filter_map(|&r| names.recipients.get(usize::from(r))).map(|r| r.as_str()));
    sink.put(&Fact::Partition {
        seq: u2i(row.seq),
        id: &row.id,
        metric: names.metrics.get(usize::from(row.metric)).map_or("", |m| m.as_str()),
        bucket_end: t2i(row.bucket_end),
        audience: &audience,
        deadline: t2i(row.deadline),
        recorded_at: t2i(row.recorded_at),
    })
}

fn kind_str(k: DisclosureKind) -> &'static str {
    match k {
        DisclosureKind::Release => "release",
        DisclosureKind::Transcryption => "transcryption",
    }
}

pub(super) fn insert_disclosure(
    sink: &dyn FactSink,
    names: &Names,
    row: &DisclosureRow,
    subject: &SubjectId,
) -> Result<(), LedgerError> {
    sink.put(&Fact::Disclosure {
        seq: u2i(row.seq),
        kind: kind_str(row.kind),
        recipient: names.recipients.get(usize::from(row.recipient)).map_or("", |r| r.as_str()),
        metric: names.metrics.get(usize::from(row.metric)).map_or("", |m| m.as_str()),
        purpose: names.purposes.get(usize::from(row.purpose)).map_or("", |p| p.as_str()),
        subject: subject.as_bytes().as_slice(),
        at: t2i(row.at),
        record: row.record.as_ref().map(|r| r.as_slice()),
        recorded_at: t2i(row.recorded_at),
    })
}

pub(super) fn insert_delegation(
    sink: &dyn FactSink,
    row: &DelegationRow,
    subject: &SubjectId,
    signed: &[u8],
) -> Result<(), LedgerError> {
    sink.put(&Fact::Delegation {
        seq: u2i(row.seq),
        id: row.id.as_bytes().as_slice(),
        subject: subject.as_bytes().as_slice(),
        device: row.device.as_bytes().as_slice(),
        valid_from: t2i(row.valid_from),
        valid_until: t2i(row.valid_until),
        recorded_at: t2i(row.recorded_at),
        signed,
    })
}

pub(super) fn insert_revocation(
    sink: &dyn FactSink,
    device: &DevicePublicKey,
    row: &RevocationRow,
    signed: &[u8],
) -> Result<(), LedgerError> {
    sink.put(&Fact::Revocation {
        seq: u2i(row.seq),
        device: device.as_bytes().as_slice(),
        at: t2i(row.at),
        recorded_at: t2i(row.recorded_at),
        signed,
    })
}

pub(super) fn insert_override(
    sink: &dyn FactSink,
    row: &OverrideRow,
    subject: &SubjectId,
) -> Result<(), LedgerError> {
    sink.put(&Fact::Override {
        seq: u2i(row.seq),
        subject: subject.as_bytes().as_slice(),
        reason: &row.reason,
        at: t2i(row.at),
        recorded_at: t2i(row.recorded_at),
    })
}

pub(super) fn insert_certificate(
    sink: &dyn FactSink,
    row: &CertificateRow,
    signed: &[u8],
) -> Result<(), LedgerError> {
    sink.put(&Fact::Certificate {
        seq: u2i(row.seq),
        id: row.id.as_bytes().as_slice(),
        key: row.key.as_bytes().as_slice(),
        certifier: row.certifier.as_bytes().as_slice(),
        not_before: t2i(row.not_before),
        not_after: t2i(row.not_after),
        recorded_at: t2i(row.recorded_at),
        signed,
    })
}

/// Reads delegations, revocations and overrides back (after the receipts, so subjects
/// are interned; an override's revocations follow from its delegations).
fn load_enrollment(
    src: &dyn FactSource,
    ix: &mut Index,
    sel: Select<'_>,
    only: Option<&HashSet<SubjectId>>,
) -> Result<(), LedgerError> {
    let skip = |s: &SubjectId| only.is_some_and(|set| !set.contains(s));
    src.each(Table::Delegation, sel, &mut |r| {
        let subject = SubjectId(bytes32(r.bytes(2)?, "subject")?);
        if skip(&subject) {
            return Ok(());
        }
        let row = DelegationRow {
            id: DelegationId(bytes32(r.bytes(1)?, "delegation id")?),
            seq: i2u(r.int(0)?),
            subject: ix.intern_subject(subject),
            device: DevicePublicKey(bytes32(r.bytes(3)?, "device key")?),
            valid_from: i2t(r.int(4)?),
            valid_until: i2t(r.int(5)?),
            recorded_at: i2t(r.int(6)?),
        };
        ix.add_delegation(row);
        Ok(())
    })?;
    src.each(Table::Revocation, sel, &mut |r| {
        let device = DevicePublicKey(bytes32(r.bytes(1)?, "device key")?);
        if !ix.devices.contains_key(&device) {
            // Lazily loaded: the device of a subject not loaded.
            if only.is_some() {
                return Ok(());
            }
            return Err(LedgerError::Corrupt("revocation of unknown device"));
        }
        let row = RevocationRow { seq: i2u(r.int(0)?), at: i2t(r.int(2)?), recorded_at: i2t(r.int(3)?) };
        ix.apply_revocation(&device, row);
        Ok(())
    })?;
    src.each(Table::Override, sel, &mut |r| {
        let subject = SubjectId(bytes32(r.bytes(1)?, "subject")?);
        if skip(&subject) {
            return Ok(());
        }
        let row = OverrideRow {
            seq: i2u(r.int(0)?),
            subject: ix.intern_subject(subject),
            reason: r.text(2)?.to_owned(),
            at: i2t(r.int(3)?),
            recorded_at: i2t(r.int(4)?),
        };
        ix.add_override(row);
        Ok(())
    })?;
    src.each(Table::Certificate, sel, &mut |r| {
        let key = DevicePublicKey(bytes32(r.bytes(2)?, "certified key")?);
        // A lazily loaded ledger catching up keeps the certificates of the keys it
        // loaded only (a load by key, `only` unset, keeps what it reads).
        if only.is_some() && !ix.certified_keys.contains(&key) {
            return Ok(());
        }
        ix.add_certificate(CertificateRow {
            id: CertificateId(bytes32(r.bytes(1)?, "certificate id")?),
            seq: i2u(r.int(0)?),
            key,
            certifier: CertifierPublicKey(bytes32(r.bytes(3)?, "certifier")?),
            not_before: i2t(r.int(4)?),
            not_after: i2t(r.int(5)?),
            recorded_at: i2t(r.int(6)?),
        });
        Ok(())
    })
}

fn bytes16(b: &[u8]) -> Result<[u8; 16], LedgerError> {
    b.try_into().map_err(|_| LedgerError::Corrupt("record id"))
}

fn bytes32(b: &[u8], what: &'static str) -> Result<[u8; 32], LedgerError> {
    b.try_into().map_err(|_| LedgerError::Corrupt(what))
}

/// Reads every fact with `seq < to` back into a fresh index, without re-verifying
/// signatures.
pub(super) fn load(src: &dyn FactSource, names: &Names, to: i64) -> Result<Index, LedgerError> {
    let mut ix = Index::new(names);
    let count = usize::try_from(src.receipt_count()?).unwrap_or(0);
    ix.receipts.reserve_exact(count);
    ix.receipt_ix.reserve(count);
    load_into(src, names, &mut ix, Select::Seqs(0, to), None, true)?;
    Ok(ix)
}

/// Adds the facts `sel` selects to `ix`, table by table (facts of a table only refer to
/// facts of earlier tables, or of their own with a smaller `seq`). With `only`, the
/// facts of subjects outside it are skipped (a lazily loaded ledger catching up: it
/// keeps only the subjects it loaded; partitions belong to none and are always kept).
/// `bulk`: a cold load — receipts and withdrawals are appended unsorted and sorted once;
/// otherwise (catching up with a few facts another process wrote) each is inserted in
/// place, as when it is ingested.
pub(super) fn load_into(
    src: &dyn FactSource,
    names: &Names,
    ix: &mut Index,
    sel: Select<'_>,
    only: Option<&HashSet<SubjectId>>,
    bulk: bool,
) -> Result<(), LedgerError> {
    let skip = |s: &SubjectId| only.is_some_and(|set| !set.contains(s));
    ix.deferred = bulk;
    let mut hold_cache: HashMap<String, u32> = HashMap::new();
    let mut metric_buf: Vec<u16> = Vec::new();
    src.each(Table::Receipt, sel, &mut |r| {
        let id = ReceiptId(bytes32(r.bytes(1)?, "receipt id")?);
        let subject = SubjectId(bytes32(r.bytes(2)?, "subject")?);
        if skip(&subject) {
            return Ok(());
        }
        let device_key = bytes32(r.bytes(3)?, "device key")?;
        let recipient = names.recipient_str(r.text(4)?).ok_or(LedgerError::Corrupt("recipient"))?;
        let purpose = names.purpose_str(r.text(5)?).ok_or(LedgerError::Corrupt("purpose"))?;
        metric_buf.clear();
        for m in r.text(6)?.split(' ') {
            metric_buf.push(names.metric_str(m).ok_or(LedgerError::Corrupt("metric"))?);
        }
        metric_buf.sort_unstable();
        let hold_s = r.text(7)?;
        let hold = match hold_cache.get(hold_s) {
            Some(&h) => h,
            None => {
                let d: Duration = hold_s.parse().map_err(|_| LedgerError::Corrupt("hold"))?;
                let h = ix.intern_hold(&d)?;
                hold_cache.insert(hold_s.to_owned(), h);
                h
            }
        };
        let subject = ix.intern_subject(subject);
        let row = ReceiptRow {
            id,
            device_key,
            seq: i2u(r.int(0)?),
            wseq: u64::MAX,
            subject,
            recipient,
            purpose,
            hold,
            metrics: metric_buf.as_slice().into(),
            valid_from: i2t(r.int(8)?),
            valid_until: i2t(r.int(9)?),
            recorded_at: i2t(r.int(10)?),
            withdrawn_at: NEVER,
            withdrawal_recorded_at: NEVER,
        };
        ix.add_receipt(names, row);
        Ok(())
    })?;
    // Withdrawals find their grants by binary search: sort the postings first.
    if bulk {
        ix.finish();
    }
    src.each(Table::Withdrawal, sel, &mut |r| {
        let id = ReceiptId(bytes32(r.bytes(1)?, "receipt id")?);
        let Some(&ri) = ix.receipt_ix.get(&id) else {
            // Lazily loaded: the receipt of a subject not loaded.
            return if only.is_some() {
                Ok(())
            } else {
                Err(LedgerError::Corrupt("withdrawal of unknown receipt"))
            };
        };
        ix.apply_withdrawal(names, ri, i2t(r.int(2)?), i2t(r.int(3)?), i2u(r.int(0)?));
        Ok(())
    })?;
    if bulk {
        ix.finish();
    }
    ix.deferred = false;
    src.each(Table::Record, sel, &mut |r| {
        let rid = ReceiptId(bytes32(r.bytes(2)?, "receipt id")?);
        let Some(&ri) = ix.receipt_ix.get(&rid) else {
            return if only.is_some() {
                Ok(())
            } else {
                Err(LedgerError::Corrupt("record of unknown receipt"))
            };
        };
        let receipt = ix.receipts.get(ri as usize).ok_or(LedgerError::Corrupt("receipt"))?;
        let row = RecordRow {
            id: bytes16(r.bytes(1)?)?,
            seq: i2u(r.int(0)?),
            pseq: u64::MAX,
            subject: receipt.subject,
            recipient: receipt.recipient,
            metric: names.metric_str(r.text(3)?).ok_or(LedgerError::Corrupt("metric"))?,
            receipt: ri,
            collected_at: i2t(r.int(4)?),
            deadline: i2t(r.int(5)?),
            recorded_at: i2t(r.int(6)?),
            purged_at: NEVER,
            purge_recorded_at: NEVER,
        };
        ix.add_record(names, row);
        Ok(())
    })?;
    src.each(Table::RecordPurge, sel, &mut |r| {
        let Some(&i) = ix.record_ix.get(&bytes16(r.bytes(1)?)?) else {
            return if only.is_some() {
                Ok(())
            } else {
                Err(LedgerError::Corrupt("purge of unknown record"))
            };
        };
        ix.apply_record_purge(i, i2t(r.int(2)?), i2t(r.int(3)?), i2u(r.int(0)?));
        Ok(())
    })?;
    src.each(Table::Partition, sel, &mut |r| {
        let mut audience = Vec::new();
        for a in r.text(4)?.split(' ') {
            audience.push(names.recipient_str(a).ok_or(LedgerError::Corrupt("recipient"))?);
        }
        let row = PartitionRow {
            id: r.bytes(1)?.into(),
            seq: i2u(r.int(0)?),
            pseq: u64::MAX,
            metric: names.metric_str(r.text(2)?).ok_or(LedgerError::Corrupt("metric"))?,
            bucket_end: i2t(r.int(3)?),
            audience: audience.into(),
            deadline: i2t(r.int(5)?),
            recorded_at: i2t(r.int(6)?),
            purged_at: NEVER,
            purge_recorded_at: NEVER,
        };
        ix.add_partition(row);
        Ok(())
    })?;
    src.each(Table::PartitionPurge, sel, &mut |r| {
        let i =
            *ix.partition_ix.get(r.bytes(1)?).ok_or(LedgerError::Corrupt("purge of unknown partition"))?;
        ix.apply_partition_purge(i, i2t(r.int(2)?), i2t(r.int(3)?), i2u(r.int(0)?));
        Ok(())
    })?;
    src.each(Table::Disclosure, sel, &mut |r| {
        let kind = match r.text(1)? {
            "release" => DisclosureKind::Release,
            "transcryption" => DisclosureKind::Transcryption,
            _ => return Err(LedgerError::Corrupt("disclosure kind")),
        };
        let subject = SubjectId(bytes32(r.bytes(5)?, "subject")?);
        if skip(&subject) {
            return Ok(());
        }
        let row = DisclosureRow {
            seq: i2u(r.int(0)?),
            kind,
            recipient: names.recipient_str(r.text(2)?).ok_or(LedgerError::Corrupt("recipient"))?,
            metric: names.metric_str(r.text(3)?).ok_or(LedgerError::Corrupt("metric"))?,
            purpose: names.purpose_str(r.text(4)?).ok_or(LedgerError::Corrupt("purpose"))?,
            subject: ix.intern_subject(subject),
            at: i2t(r.int(6)?),
            record: r.opt_bytes(7)?.map(bytes16).transpose()?,
            recorded_at: i2t(r.int(8)?),
        };
        ix.add_disclosure(row);
        Ok(())
    })?;
    load_enrollment(src, ix, sel, only)
}

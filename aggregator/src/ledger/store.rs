//! The ledger's SQLite tables: compact rows written at ingest, read back at open.
//!
//! Rows hold what the index needs and nothing derived from it; a receipt row also keeps
//! the signed bytes (`signed`, for export and re-verification by an auditor) but a cold
//! load never reads them: signatures were verified at ingest, and the store is trusted
//! to be the ledger's own (whoever can write it can also rewrite the audit log's input).
//! Times are stored as the two's-complement `i64` of their `u64` seconds, so
//! [`Timestamp::MAX`] ("never") round-trips as `-1`.

use std::borrow::Borrow;
use std::collections::HashMap;

use confiance::Timestamp;
use confiance::catalogue::CatalogueDigest;
use confiance::ids::{DelegationId, DevicePublicKey, ReceiptId, SubjectId};
use confiance::retention::Duration;
use rusqlite::{Connection, OptionalExtension as _, params};

use super::LedgerError;
use super::answer::DisclosureKind;
use super::index::{
    DelegationRow, DisclosureRow, Index, NEVER, Names, OverrideRow, PartitionRow, ReceiptRow, RecordRow,
    RevocationRow,
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
CREATE TABLE IF NOT EXISTS ledger_disclosure (
  seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, recipient TEXT NOT NULL, metric TEXT NOT NULL,
  purpose TEXT NOT NULL, subject BLOB NOT NULL, at INTEGER NOT NULL, record BLOB,
  recorded_at INTEGER NOT NULL);
";

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
    conn: &Connection,
    names: &Names,
    row: &ReceiptRow,
    subject: &SubjectId,
    hold: &Duration,
    signed: Option<&[u8]>,
) -> Result<(), LedgerError> {
    let metrics =
        join(row.metrics.iter().filter_map(|&m| names.metrics.get(usize::from(m))).map(|m| m.as_str()));
    let mut st = conn.prepare_cached(
        "INSERT INTO ledger_receipt (seq, id, subject, device_key, recipient, purpose, metrics, hold,
         valid_from, valid_until, recorded_at, signed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    st.execute(params![
        u2i(row.seq),
        row.id.as_bytes().as_slice(),
        subject.as_bytes().as_slice(),
        row.device_key.as_slice(),
        names.recipients.get(usize::from(row.recipient)).map(|r| r.as_str()),
        names.purposes.get(usize::from(row.purpose)).map(|p| p.as_str()),
        metrics,
        hold.to_string(),
        t2i(row.valid_from),
        t2i(row.valid_until),
        t2i(row.recorded_at),
        signed,
    ])?;
    Ok(())
}

pub(super) fn insert_withdrawal(
    conn: &Connection,
    seq: u64,
    receipt: &ReceiptId,
    at: Timestamp,
    recorded_at: Timestamp,
    signed: Option<&[u8]>,
) -> Result<(), LedgerError> {
    conn.prepare_cached(
        "INSERT INTO ledger_withdrawal (seq, receipt, at, recorded_at, signed) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![u2i(seq), receipt.as_bytes().as_slice(), t2i(at), t2i(recorded_at), signed])?;
    Ok(())
}

pub(super) fn insert_record(
    conn: &Connection,
    names: &Names,
    ix: &Index,
    row: &RecordRow,
) -> Result<(), LedgerError> {
    let receipt = ix.receipts.get(row.receipt as usize).ok_or(LedgerError::Corrupt("record receipt"))?;
    conn.prepare_cached(
        "INSERT INTO ledger_record (seq, id, receipt, metric, collected_at, deadline, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        u2i(row.seq),
        row.id.as_slice(),
        receipt.id.as_bytes().as_slice(),
        names.metrics.get(usize::from(row.metric)).map(|m| m.as_str()),
        t2i(row.collected_at),
        t2i(row.deadline),
        t2i(row.recorded_at),
    ])?;
    Ok(())
}

pub(super) fn insert_purge(
    conn: &Connection,
    partition: bool,
    seq: u64,
    id: &[u8],
    at: Timestamp,
    recorded_at: Timestamp,
) -> Result<(), LedgerError> {
    let sql = if partition {
        "INSERT INTO ledger_partition_purge (seq, partition, at, recorded_at) VALUES (?1, ?2, ?3, ?4)"
    } else {
        "INSERT INTO ledger_record_purge (seq, record, at, recorded_at) VALUES (?1, ?2, ?3, ?4)"
    };
    conn.prepare_cached(sql)?.execute(params![u2i(seq), id, t2i(at), t2i(recorded_at)])?;
    Ok(())
}

pub(super) fn insert_partition(
    conn: &Connection,
    names: &Names,
    row: &PartitionRow,
) -> Result<(), LedgerError> {
    let audience =
        join(row.audience.iter().filter_map(|&r| names.recipients.get(usize::from(r))).map(|r| r.as_str()));
    conn.prepare_cached(
        "INSERT INTO ledger_partition (seq, id, metric, bucket_end, audience, deadline, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        u2i(row.seq),
        &*row.id,
        names.metrics.get(usize::from(row.metric)).map(|m| m.as_str()),
        t2i(row.bucket_end),
        audience,
        t2i(row.deadline),
        t2i(row.recorded_at),
    ])?;
    Ok(())
}

fn kind_str(k: DisclosureKind) -> &'static str {
    match k {
        DisclosureKind::Release => "release",
        DisclosureKind::Transcryption => "transcryption",
    }
}

pub(super) fn insert_disclosure(
    conn: &Connection,
    names: &Names,
    row: &DisclosureRow,
    subject: &SubjectId,
) -> Result<(), LedgerError> {
    conn.prepare_cached(
        "INSERT INTO ledger_disclosure (seq, kind, recipient, metric, purpose, subject, at, record, recorded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        u2i(row.seq),
        kind_str(row.kind),
        names.recipients.get(usize::from(row.recipient)).map(|r| r.as_str()),
        names.metrics.get(usize::from(row.metric)).map(|m| m.as_str()),
        names.purposes.get(usize::from(row.purpose)).map(|p| p.as_str()),
        subject.as_bytes().as_slice(),
        t2i(row.at),
        row.record.as_ref().map(|r| r.as_slice()),
        t2i(row.recorded_at),
    ])?;
    Ok(())
}

pub(super) fn insert_delegation(
    conn: &Connection,
    row: &DelegationRow,
    subject: &SubjectId,
    signed: &[u8],
) -> Result<(), LedgerError> {
    conn.prepare_cached(
        "INSERT INTO ledger_delegation (seq, id, subject, device, valid_from, valid_until, recorded_at, signed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        u2i(row.seq),
        row.id.as_bytes().as_slice(),
        subject.as_bytes().as_slice(),
        row.device.as_bytes().as_slice(),
        t2i(row.valid_from),
        t2i(row.valid_until),
        t2i(row.recorded_at),
        signed,
    ])?;
    Ok(())
}

pub(super) fn insert_revocation(
    conn: &Connection,
    device: &DevicePublicKey,
    row: &RevocationRow,
    signed: &[u8],
) -> Result<(), LedgerError> {
    conn.prepare_cached(
        "INSERT INTO ledger_revocation (seq, device, at, recorded_at, signed) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        u2i(row.seq),
        device.as_bytes().as_slice(),
        t2i(row.at),
        t2i(row.recorded_at),
        signed
    ])?;
    Ok(())
}

pub(super) fn insert_override(
    conn: &Connection,
    row: &OverrideRow,
    subject: &SubjectId,
) -> Result<(), LedgerError> {
    conn.prepare_cached(
        "INSERT INTO ledger_override (seq, subject, reason, at, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        u2i(row.seq),
        subject.as_bytes().as_slice(),
        row.reason,
        t2i(row.at),
        t2i(row.recorded_at)
    ])?;
    Ok(())
}

/// Reads delegations, revocations and overrides back (after the receipts, so subjects
/// are interned; an override's revocations follow from its delegations).
fn load_enrollment(conn: &Connection, ix: &mut Index) -> Result<(), LedgerError> {
    {
        let mut st = conn.prepare(
            "SELECT seq, id, subject, device, valid_from, valid_until, recorded_at FROM ledger_delegation
             ORDER BY seq",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let subject = SubjectId(bytes32(r.get_ref(2)?.as_blob()?, "subject")?);
            let row = DelegationRow {
                id: DelegationId(bytes32(r.get_ref(1)?.as_blob()?, "delegation id")?),
                seq: i2u(r.get(0)?),
                subject: ix.intern_subject(subject),
                device: DevicePublicKey(bytes32(r.get_ref(3)?.as_blob()?, "device key")?),
                valid_from: i2t(r.get(4)?),
                valid_until: i2t(r.get(5)?),
                recorded_at: i2t(r.get(6)?),
            };
            ix.add_delegation(row);
        }
    }
    {
        let mut st =
            conn.prepare("SELECT seq, device, at, recorded_at FROM ledger_revocation ORDER BY seq")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let device = DevicePublicKey(bytes32(r.get_ref(1)?.as_blob()?, "device key")?);
            if !ix.devices.contains_key(&device) {
                return Err(LedgerError::Corrupt("revocation of unknown device"));
            }
            let row = RevocationRow { seq: i2u(r.get(0)?), at: i2t(r.get(2)?), recorded_at: i2t(r.get(3)?) };
            ix.apply_revocation(&device, row);
        }
    }
    {
        let mut st =
            conn.prepare("SELECT seq, subject, reason, at, recorded_at FROM ledger_override ORDER BY seq")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let subject = SubjectId(bytes32(r.get_ref(1)?.as_blob()?, "subject")?);
            let row = OverrideRow {
                seq: i2u(r.get(0)?),
                subject: ix.intern_subject(subject),
                reason: r.get(2)?,
                at: i2t(r.get(3)?),
                recorded_at: i2t(r.get(4)?),
            };
            ix.add_override(row);
        }
    }
    Ok(())
}

fn bytes16(b: &[u8]) -> Result<[u8; 16], LedgerError> {
    b.try_into().map_err(|_| LedgerError::Corrupt("record id"))
}

fn bytes32(b: &[u8], what: &'static str) -> Result<[u8; 32], LedgerError> {
    b.try_into().map_err(|_| LedgerError::Corrupt(what))
}

/// Reads every table back into a fresh index, without re-verifying signatures.
pub(super) fn load(conn: &Connection, names: &Names) -> Result<Index, LedgerError> {
    let mut ix = Index::new(names);
    ix.deferred = true;
    let count: i64 = conn.query_row("SELECT count(*) FROM ledger_receipt", [], |r| r.get(0))?;
    let count = usize::try_from(count).unwrap_or(0);
    ix.receipts.reserve_exact(count);
    ix.receipt_ix.reserve(count);
    let mut hold_cache: HashMap<String, u32> = HashMap::new();
    let mut metric_buf: Vec<u16> = Vec::new();
    {
        let mut st = conn.prepare(
            "SELECT seq, id, subject, device_key, recipient, purpose, metrics, hold, valid_from, valid_until,
             recorded_at FROM ledger_receipt ORDER BY seq",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let id = ReceiptId(bytes32(r.get_ref(1)?.as_blob()?, "receipt id")?);
            let subject = SubjectId(bytes32(r.get_ref(2)?.as_blob()?, "subject")?);
            let device_key = bytes32(r.get_ref(3)?.as_blob()?, "device key")?;
            let recipient =
                names.recipient_str(r.get_ref(4)?.as_str()?).ok_or(LedgerError::Corrupt("recipient"))?;
            let purpose =
                names.purpose_str(r.get_ref(5)?.as_str()?).ok_or(LedgerError::Corrupt("purpose"))?;
            metric_buf.clear();
            for m in r.get_ref(6)?.as_str()?.split(' ') {
                metric_buf.push(names.metric_str(m).ok_or(LedgerError::Corrupt("metric"))?);
            }
            metric_buf.sort_unstable();
            let hold_s = r.get_ref(7)?.as_str()?;
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
                seq: i2u(r.get(0)?),
                wseq: u64::MAX,
                subject,
                recipient,
                purpose,
                hold,
                metrics: metric_buf.as_slice().into(),
                valid_from: i2t(r.get(8)?),
                valid_until: i2t(r.get(9)?),
                recorded_at: i2t(r.get(10)?),
                withdrawn_at: NEVER,
                withdrawal_recorded_at: NEVER,
            };
            ix.add_receipt(names, row);
        }
    }
    // Withdrawals find their grants by binary search: sort the postings first.
    ix.finish();
    {
        let mut st =
            conn.prepare("SELECT seq, receipt, at, recorded_at FROM ledger_withdrawal ORDER BY seq")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let id = ReceiptId(bytes32(r.get_ref(1)?.as_blob()?, "receipt id")?);
            let ri = *ix.receipt_ix.get(&id).ok_or(LedgerError::Corrupt("withdrawal of unknown receipt"))?;
            ix.apply_withdrawal(names, ri, i2t(r.get(2)?), i2t(r.get(3)?), i2u(r.get(0)?));
        }
    }
    ix.finish();
    ix.deferred = false;
    {
        let mut st = conn.prepare(
            "SELECT seq, id, receipt, metric, collected_at, deadline, recorded_at FROM ledger_record ORDER BY seq",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let rid = ReceiptId(bytes32(r.get_ref(2)?.as_blob()?, "receipt id")?);
            let ri = *ix.receipt_ix.get(&rid).ok_or(LedgerError::Corrupt("record of unknown receipt"))?;
            let receipt = ix.receipts.get(ri as usize).ok_or(LedgerError::Corrupt("receipt"))?;
            let row = RecordRow {
                id: bytes16(r.get_ref(1)?.as_blob()?)?,
                seq: i2u(r.get(0)?),
                pseq: u64::MAX,
                subject: receipt.subject,
                recipient: receipt.recipient,
                metric: names.metric_str(r.get_ref(3)?.as_str()?).ok_or(LedgerError::Corrupt("metric"))?,
                receipt: ri,
                collected_at: i2t(r.get(4)?),
                deadline: i2t(r.get(5)?),
                recorded_at: i2t(r.get(6)?),
                purged_at: NEVER,
                purge_recorded_at: NEVER,
            };
            ix.add_record(names, row);
        }
    }
    {
        let mut st =
            conn.prepare("SELECT seq, record, at, recorded_at FROM ledger_record_purge ORDER BY seq")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let i = *ix
                .record_ix
                .get(&bytes16(r.get_ref(1)?.as_blob()?)?)
                .ok_or(LedgerError::Corrupt("purge of unknown record"))?;
            ix.apply_record_purge(i, i2t(r.get(2)?), i2t(r.get(3)?), i2u(r.get(0)?));
        }
    }
    {
        let mut st = conn.prepare(
            "SELECT seq, id, metric, bucket_end, audience, deadline, recorded_at FROM ledger_partition ORDER BY seq",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let mut audience = Vec::new();
            for a in r.get_ref(4)?.as_str()?.split(' ') {
                audience.push(names.recipient_str(a).ok_or(LedgerError::Corrupt("recipient"))?);
            }
            let row = PartitionRow {
                id: r.get_ref(1)?.as_blob()?.into(),
                seq: i2u(r.get(0)?),
                pseq: u64::MAX,
                metric: names.metric_str(r.get_ref(2)?.as_str()?).ok_or(LedgerError::Corrupt("metric"))?,
                bucket_end: i2t(r.get(3)?),
                audience: audience.into(),
                deadline: i2t(r.get(5)?),
                recorded_at: i2t(r.get(6)?),
                purged_at: NEVER,
                purge_recorded_at: NEVER,
            };
            ix.add_partition(row);
        }
    }
    {
        let mut st =
            conn.prepare("SELECT seq, partition, at, recorded_at FROM ledger_partition_purge ORDER BY seq")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let i = *ix
                .partition_ix
                .get(r.get_ref(1)?.as_blob()?)
                .ok_or(LedgerError::Corrupt("purge of unknown partition"))?;
            ix.apply_partition_purge(i, i2t(r.get(2)?), i2t(r.get(3)?), i2u(r.get(0)?));
        }
    }
    {
        let mut st = conn.prepare(
            "SELECT seq, kind, recipient, metric, purpose, subject, at, record, recorded_at
             FROM ledger_disclosure ORDER BY seq",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let kind = match r.get_ref(1)?.as_str()? {
                "release" => DisclosureKind::Release,
                "transcryption" => DisclosureKind::Transcryption,
                _ => return Err(LedgerError::Corrupt("disclosure kind")),
            };
            let subject = SubjectId(bytes32(r.get_ref(5)?.as_blob()?, "subject")?);
            let row = DisclosureRow {
                seq: i2u(r.get(0)?),
                kind,
                recipient: names
                    .recipient_str(r.get_ref(2)?.as_str()?)
                    .ok_or(LedgerError::Corrupt("recipient"))?,
                metric: names.metric_str(r.get_ref(3)?.as_str()?).ok_or(LedgerError::Corrupt("metric"))?,
                purpose: names.purpose_str(r.get_ref(4)?.as_str()?).ok_or(LedgerError::Corrupt("purpose"))?,
                subject: ix.intern_subject(subject),
                at: i2t(r.get(6)?),
                record: r.get_ref(7)?.as_blob_or_null()?.map(bytes16).transpose()?,
                recorded_at: i2t(r.get(8)?),
            };
            ix.add_disclosure(row);
        }
    }
    load_enrollment(conn, &mut ix)?;
    Ok(ix)
}

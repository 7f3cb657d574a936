//! The ledger's signed facts re-checked against their rows: what `confiance audit verify`
//! adds to the log's verification on an SQLite database.
//!
//! The audit log holds ids (hashes of signed bytes), never the facts, and the ledger
//! answers from the rows' columns. A row edited in the database file — a receipt's
//! recipient or purpose changed, its validity widened — would change every answer
//! while the log still verifies. Each receipt, withdrawal, delegation and revocation row
//! keeps the signed bytes it was accepted from; this check decodes and verifies them
//! and compares every column an answer reads with what was signed. It also compares the
//! receipts and withdrawals the ledger holds with the consent events of the log, so that
//! a row deleted (a withdrawal, to revive a consent) is caught too; and the disclosures
//! the ledger notes with the log's releases of records and transcryptions, each of which
//! counts what it disclosed, so that a disclosure deleted or moved to another recipient
//! (hidden from the subject's report and from `query history`) is caught. The log names
//! no subject of a disclosure: a row whose subject alone was edited is not.

use std::collections::{BTreeMap, BTreeSet};

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{SignedDelegation, SignedReceipt, SignedRevocation, SignedWithdrawal};
use confiance::ids::ReceiptId;
use rusqlite::Connection;

use super::{AuditEvent, LoggedEvent};

/// How many signed facts were re-checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignedFacts {
    /// Receipts whose signed bytes verify and match their row.
    pub receipts: u64,
    /// Withdrawals likewise (an admin override's withdrawals carry no signature and
    /// are not counted).
    pub withdrawals: u64,
    /// Delegations likewise.
    pub delegations: u64,
    /// Revocations likewise.
    pub revocations: u64,
    /// Receipt rows without signed bytes (accepted unverified, before receipts were
    /// signed by subject keys), not checked.
    pub unsigned_receipts: u64,
}

/// Re-checks every signed fact of the ledger tables in `conn` against its row, and the
/// receipts and withdrawals held against the consent events of `events` (the whole
/// log, verified; module documentation).
///
/// ```
/// # use confiance_aggregator::audit::{LoggedEvent, verify_signed_facts};
/// // `conn` holds the ledger tables (the aggregator's SQLite file), `events` the whole
/// // log, read and verified against a checkpoint first.
/// # fn check(conn: &rusqlite::Connection, catalogue: &confiance::catalogue::Catalogue, events: &[LoggedEvent]) -> Result<(), String> {
/// let facts = verify_signed_facts(conn, catalogue, events)?;
/// println!("{} receipts and {} withdrawals match their signatures", facts.receipts, facts.withdrawals);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// A message naming the first row whose signed bytes do not verify or do not match its
/// columns, or a receipt whose giving or withdrawal the ledger and the log disagree on;
/// the SQLite error.
pub fn verify_signed_facts(
    conn: &Connection,
    catalogue: &Catalogue,
    events: &[LoggedEvent],
) -> Result<SignedFacts, String> {
    let mut out = SignedFacts::default();
    let (mut given, mut withdrawn) = (BTreeSet::new(), BTreeSet::new());
    // What the log says was disclosed: (kind, recipient, metric, at) → count. A
    // transcryption's event names no metric.
    let mut disclosed: BTreeMap<(&str, String, String, i64), u64> = BTreeMap::new();
    for e in events {
        match &e.event {
            AuditEvent::Release { recipient, metric, partitions, at, .. }
                if catalogue.metric(metric).is_some_and(|m| !m.is_anonymous()) =>
            {
                // A release of records: `partitions` counts the records disclosed.
                let key = ("release", recipient.to_string(), metric.to_string(), secs(*at));
                *disclosed.entry(key).or_default() += u64::from(*partitions);
            }
            AuditEvent::Transcryption { recipient, at, .. } => {
                *disclosed
                    .entry(("transcryption", recipient.to_string(), String::new(), secs(*at)))
                    .or_default() += 1;
            }
            AuditEvent::ConsentGiven { receipt } => {
                given.insert(*receipt);
            }
            AuditEvent::ConsentWithdrawn { receipt, .. } => {
                withdrawn.insert(*receipt);
            }
            AuditEvent::AdminOverride { receipts, .. } => withdrawn.extend(receipts.iter().copied()),
            _ => {}
        }
    }
    let ids = |table: &str, column: &str| -> Result<BTreeSet<ReceiptId>, String> {
        let mut q = conn.prepare(&format!("SELECT {column} FROM {table}")).map_err(sql_error)?;
        let rows = q.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(sql_error)?;
        rows.map(|b| {
            let b = b.map_err(sql_error)?;
            <[u8; 32]>::try_from(b.as_slice()).map(ReceiptId).map_err(|_| format!("{table}: a malformed id"))
        })
        .collect()
    };
    for (what, held, logged) in [
        ("given", ids("ledger_receipt", "id")?, &given),
        ("withdrawn", ids("ledger_withdrawal", "receipt")?, &withdrawn),
    ] {
        if let Some(r) = held.symmetric_difference(logged).next() {
            let side = if held.contains(r) {
                "the ledger holds it, the log does not"
            } else {
                "the log holds it, the ledger does not"
            };
            return Err(format!("consent {what} for receipt {r}: {side}"));
        }
    }
    check_disclosures(conn, &disclosed)?;
    let sql = sql_error;
    let t = |i: i64| Timestamp::from_secs(i as u64);
    let receipts = "SELECT seq, id, subject, device_key, recipient, purpose, metrics, hold, valid_from, valid_until, signed
             FROM ledger_receipt ORDER BY seq";
    each_row(conn, receipts, "receipt", |row, bad| {
        let Some(bytes) = row.get::<_, Option<Vec<u8>>>(10).map_err(sql)? else {
            out.unsigned_receipts += 1;
            return Ok(());
        };
        let signed = SignedReceipt::from_bytes(&bytes).map_err(|e| bad(&format!("signed bytes: {e}")))?;
        let r = signed.receipt();
        let metrics: BTreeSet<String> =
            r.scope.metrics_in(catalogue, &r.recipient, &r.purpose).map(ToString::to_string).collect();
        let stored: BTreeSet<String> = row
            .get::<_, String>(6)
            .map_err(sql)?
            .split(' ')
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect();
        let checks = [
            ("id", row.get::<_, Vec<u8>>(1).map_err(sql)? == signed.id().as_bytes()),
            ("subject", row.get::<_, Vec<u8>>(2).map_err(sql)? == r.subject.as_bytes()),
            ("signer", row.get::<_, Vec<u8>>(3).map_err(sql)? == r.signer.as_bytes()),
            ("recipient", row.get::<_, String>(4).map_err(sql)? == r.recipient.as_str()),
            ("purpose", row.get::<_, String>(5).map_err(sql)? == r.purpose.as_str()),
            ("metrics", stored == metrics),
            ("hold", row.get::<_, String>(7).map_err(sql)? == r.hold.to_string()),
            ("valid_from", t(row.get(8).map_err(sql)?) == r.valid_from),
            ("valid_until", t(row.get(9).map_err(sql)?) == r.valid_until.unwrap_or(Timestamp::MAX)),
        ];
        if let Some((what, _)) = checks.iter().find(|(_, ok)| !ok) {
            return Err(bad(&format!("its {what} is not what was signed")));
        }
        out.receipts += 1;
        Ok(())
    })?;
    each_row(
        conn,
        "SELECT seq, receipt, at, signed FROM ledger_withdrawal WHERE signed IS NOT NULL ORDER BY seq",
        "withdrawal",
        |row, bad| {
            let signed = SignedWithdrawal::from_bytes(&row.get::<_, Vec<u8>>(3).map_err(sql)?)
                .map_err(|e| bad(&format!("signed bytes: {e}")))?;
            let w = signed.withdrawal();
            if row.get::<_, Vec<u8>>(1).map_err(sql)? != w.receipt.as_bytes()
                || t(row.get(2).map_err(sql)?) != w.at
            {
                return Err(bad("its receipt or instant is not what was signed"));
            }
            out.withdrawals += 1;
            Ok(())
        },
    )?;
    each_row(
        conn,
        "SELECT seq, id, subject, device, valid_from, valid_until, signed FROM ledger_delegation ORDER BY seq",
        "delegation",
        |row, bad| {
            let signed = SignedDelegation::from_bytes(&row.get::<_, Vec<u8>>(6).map_err(sql)?)
                .map_err(|e| bad(&format!("signed bytes: {e}")))?;
            let d = signed.delegation();
            let same = row.get::<_, Vec<u8>>(1).map_err(sql)? == signed.id().as_bytes()
                && row.get::<_, Vec<u8>>(2).map_err(sql)? == d.subject().as_bytes()
                && row.get::<_, Vec<u8>>(3).map_err(sql)? == d.device.as_bytes()
                && t(row.get(4).map_err(sql)?) == d.valid_from
                && t(row.get(5).map_err(sql)?) == d.valid_until.unwrap_or(Timestamp::MAX);
            if !same {
                return Err(bad("its subject, device or validity is not what was signed"));
            }
            out.delegations += 1;
            Ok(())
        },
    )?;
    each_row(
        conn,
        "SELECT seq, device, at, recorded_at, signed FROM ledger_revocation ORDER BY seq",
        "revocation",
        |row, bad| {
            let signed = SignedRevocation::from_bytes(&row.get::<_, Vec<u8>>(4).map_err(sql)?)
                .map_err(|e| bad(&format!("signed bytes: {e}")))?;
            let r = signed.revocation();
            let effective = crate::ledger::effective_revocation(r.at, t(row.get(3).map_err(sql)?));
            if row.get::<_, Vec<u8>>(1).map_err(sql)? != r.device.as_bytes()
                || t(row.get(2).map_err(sql)?) != effective
            {
                return Err(bad("its device or instant is not what was signed"));
            }
            out.revocations += 1;
            Ok(())
        },
    )?;
    Ok(out)
}

/// Every disclosure the log counts is noted in `ledger_disclosure` (more may be: a
/// disclosure the library's user noted itself has no event).
fn check_disclosures(
    conn: &Connection,
    logged: &BTreeMap<(&str, String, String, i64), u64>,
) -> Result<(), String> {
    let mut q = conn
        .prepare(
            "SELECT kind, recipient, CASE kind WHEN 'release' THEN metric ELSE '' END, at, count(*)
             FROM ledger_disclosure GROUP BY 1, 2, 3, 4",
        )
        .map_err(sql_error)?;
    let held: BTreeMap<(String, String, String, i64), u64> = q
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?), r.get::<_, i64>(4)?)))
        .map_err(sql_error)?
        .map(|row| row.map(|(k, n)| (k, u64::try_from(n).unwrap_or(0))).map_err(sql_error))
        .collect::<Result<_, _>>()?;
    for ((kind, recipient, metric, at), &n) in logged {
        let key = ((*kind).to_owned(), recipient.clone(), metric.clone(), *at);
        let notes = held.get(&key).copied().unwrap_or(0);
        if notes < n {
            let what = if *kind == "release" {
                format!("release of {metric} records")
            } else {
                "transcryption".into()
            };
            return Err(format!(
                "disclosures: the log's {what} to {recipient} at {at} disclosed {n}, the ledger notes {notes} (a disclosure row deleted or edited)"
            ));
        }
    }
    Ok(())
}

/// A time as the ledger tables store it.
fn secs(t: Timestamp) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

/// Runs `check` on every row of `query`, whose first column is the row's `seq`: `bad`
/// prefixes a finding with `"{kind} row {seq}: "`.
fn each_row(
    conn: &Connection,
    query: &str,
    kind: &str,
    mut check: impl FnMut(&rusqlite::Row<'_>, &dyn Fn(&str) -> String) -> Result<(), String>,
) -> Result<(), String> {
    let mut q = conn.prepare(query).map_err(sql_error)?;
    let mut rows = q.query([]).map_err(sql_error)?;
    while let Some(row) = rows.next().map_err(sql_error)? {
        let seq: i64 = row.get(0).map_err(sql_error)?;
        check(row, &|what: &str| format!("{kind} row {seq}: {what}"))?;
    }
    Ok(())
}

fn sql_error(e: rusqlite::Error) -> String {
    format!("ledger tables: {e}")
}

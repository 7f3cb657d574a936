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
//! a row deleted (a withdrawal, to revive a consent) is caught too. Device certificates
//! (admission control) are re-verified from their certifier's public key, matched with
//! the `DeviceCertified` events of the log, and every delegation is checked against
//! them when the catalogue names certifiers.

use std::collections::BTreeSet;

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{
    DeviceCertificate, SignedDelegation, SignedReceipt, SignedRevocation, SignedWithdrawal,
};
use confiance::ids::{CertificateId, ReceiptId};
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
    /// Device certificates whose signed bytes verify under the certifier key they name
    /// and match their row.
    pub certificates: u64,
    /// When the catalogue names certifiers: delegations whose device key had no
    /// certificate held by then, by a certifier the catalogue trusts, in force when the
    /// delegation arrived — delegations accepted before the catalogue named certifiers,
    /// or certified by a certifier since removed. (Always 0 for an open catalogue.)
    pub uncertified_delegations: u64,
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
    let mut certified: BTreeSet<CertificateId> = BTreeSet::new();
    for e in events {
        match &e.event {
            AuditEvent::ConsentGiven { receipt } => {
                given.insert(*receipt);
            }
            AuditEvent::ConsentWithdrawn { receipt, .. } => {
                withdrawn.insert(*receipt);
            }
            AuditEvent::AdminOverride { receipts, .. } => withdrawn.extend(receipts.iter().copied()),
            AuditEvent::DeviceCertified { certificate, .. } => {
                certified.insert(*certificate);
            }
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
    // Certificates: (key, certifier, not_before, not_after, recorded_at) of each row
    // whose signed bytes verify and match it.
    let mut certs: Vec<([u8; 32], confiance::ids::CertifierPublicKey, Timestamp, Timestamp, Timestamp)> =
        Vec::new();
    let mut held: BTreeSet<CertificateId> = BTreeSet::new();
    each_row(
        conn,
        "SELECT seq, id, key, certifier, not_before, not_after, recorded_at, signed FROM ledger_certificate ORDER BY seq",
        "certificate",
        |row, bad| {
            let signed = DeviceCertificate::from_bytes(&row.get::<_, Vec<u8>>(7).map_err(sql)?)
                .map_err(|e| bad(&format!("signed bytes: {e}")))?;
            let c = signed.certificate();
            let same = row.get::<_, Vec<u8>>(1).map_err(sql)? == signed.id().as_bytes()
                && row.get::<_, Vec<u8>>(2).map_err(sql)? == c.key.as_bytes()
                && row.get::<_, Vec<u8>>(3).map_err(sql)? == c.certifier.as_bytes()
                && t(row.get(4).map_err(sql)?) == c.not_before
                && t(row.get(5).map_err(sql)?) == c.not_after;
            if !same {
                return Err(bad("its key, certifier or validity is not what was signed"));
            }
            held.insert(signed.id());
            certs.push((c.key.0, c.certifier, c.not_before, c.not_after, t(row.get(6).map_err(sql)?)));
            out.certificates += 1;
            Ok(())
        },
    )?;
    if let Some(id) = held.symmetric_difference(&certified).next() {
        let side = if held.contains(id) {
            "the ledger holds it, the log does not"
        } else {
            "the log holds it, the ledger does not"
        };
        return Err(format!("device certificate {id}: {side}"));
    }
    let trusted = catalogue.certifiers();
    if !trusted.is_empty() {
        let mut q = conn.prepare("SELECT device, recorded_at FROM ledger_delegation").map_err(sql)?;
        let rows = q.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))).map_err(sql)?;
        for r in rows {
            let (device, at) = r.map_err(sql)?;
            let at = t(at);
            let ok = certs.iter().any(|(key, certifier, from, until, recorded)| {
                key.as_slice() == device.as_slice()
                    && trusted.contains(certifier)
                    && *from <= at
                    && at < *until
                    && *recorded <= at
            });
            out.uncertified_delegations += u64::from(!ok);
        }
    }
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

//! The ledger's signed facts re-checked against their rows: what `confiance audit verify`
//! adds to the log's verification, on SQLite and on PostgreSQL alike.
//!
//! The audit log holds ids (hashes of signed bytes), never the facts, and the ledger
//! answers from the rows' columns. A row edited in the database file — a receipt's
//! recipient or purpose changed, its validity widened — would change every answer
//! while the log still verifies. Each receipt, withdrawal, delegation and revocation row
//! keeps the signed bytes it was accepted from; this check decodes and verifies them
//! and compares every column an answer reads with what was signed. It also compares the
//! receipts and withdrawals the ledger holds with the consent events of the log, so that
//! a row deleted (a withdrawal, to revive a consent) is caught too, and replays the rule
//! on who may sign for a subject (`ledger::enroll`) from the delegation, revocation and
//! override rows, so that a row written past the ledger's checks — well signed, by a key
//! that did not speak for its subject — is caught as well. Last, it compares the
//! disclosures the ledger notes with the log's releases of records and transcryptions,
//! each of which counts what it disclosed, so that a disclosure deleted or moved to
//! another recipient or instant (hidden from the subject's report and from `query
//! history`) is caught. The log names no subject of a disclosure: a row whose subject
//! alone was edited is not. Device certificates (admission control) are re-verified from
//! their certifier's public key, matched with the `DeviceCertified` events of the log,
//! and every delegation is checked against them when the catalogue names certifiers.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use confiance::Timestamp;
use confiance::consent::{
    DeviceCertificate, SignedDelegation, SignedReceipt, SignedRevocation, SignedWithdrawal,
};
use confiance::ids::{CertificateId, DevicePublicKey, ReceiptId, SubjectId, SubjectPublicKey};
use rusqlite::Connection;

use super::{AuditEvent, LoggedEvent};
use crate::ledger::{Cols, FactSource, Ledger, LedgerError};

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

/// Re-checks every signed fact of `ledger`'s tables — in its SQLite file or in the
/// PostgreSQL database it shares, read row by row through the same queries — against
/// its row, and the receipts and withdrawals held against the consent events of
/// `events` (the whole log, verified; module documentation).
///
/// The rows read are those committed when the check starts, which must be after
/// `events` were read: a fact is committed before (PostgreSQL) or with (SQLite) its
/// event, so every event of `events` has its row. A row whose event is not in `events`
/// may have been written since by another process: `later` is then called, once the
/// rows are read, for the events appended after `events` (`Ok(vec![])` where nothing
/// else writes), and only a fact whose event is in neither is a finding.
///
/// ```
/// # use confiance_aggregator::audit::{LoggedEvent, verify_signed_facts};
/// # use confiance_aggregator::ledger::Ledger;
/// // `ledger` is the aggregator's, `events` the whole log, read and verified against a
/// // checkpoint first.
/// # fn check(ledger: &Ledger, events: &[LoggedEvent]) -> Result<(), String> {
/// let facts = verify_signed_facts(ledger, events, || Ok(Vec::new()))?;
/// println!("{} receipts and {} withdrawals match their signatures", facts.receipts, facts.withdrawals);
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// A message naming the first row whose signed bytes do not verify or do not match its
/// columns, or whose signer did not speak for its subject when it was signed, or a receipt whose giving or withdrawal the ledger and the log disagree on;
/// the database's error; `later`'s.
pub fn verify_signed_facts<C: Borrow<Connection>>(
    ledger: &Ledger<C>,
    events: &[LoggedEvent],
    later: impl FnOnce() -> Result<Vec<LoggedEvent>, String>,
) -> Result<SignedFacts, String> {
    let catalogue = ledger.catalogue();
    let rows = ledger.rows();
    let to = i64::try_from(ledger.stored_head().map_err(col)?).unwrap_or(i64::MAX);
    let mut out = SignedFacts::default();
    let (mut given, mut withdrawn) = (BTreeSet::new(), BTreeSet::new());
    let t = |i: i64| Timestamp::from_secs(i as u64);
    // Who could sign for whom: the overrides, delegations and revocations, read first;
    // each signed message is checked against those recorded before it.
    let mut signers = Signers::default();
    let overrides = "SELECT seq, subject FROM ledger_override WHERE seq < $1 ORDER BY seq";
    each_row(rows, overrides, to, "override", |row, _| {
        signers.closed.insert(subject_id(row.bytes(1).map_err(col)?)?, row.int(0).map_err(col)?);
        Ok(())
    })?;
    let delegations =
        "SELECT seq, id, subject, device, valid_from, valid_until, signed FROM ledger_delegation
             WHERE seq < $1 ORDER BY seq";
    each_row(rows, delegations, to, "delegation", |row, bad| {
        let signed = SignedDelegation::from_bytes(row.bytes(6).map_err(col)?)
            .map_err(|e| bad(&format!("signed bytes: {e}")))?;
        let d = signed.delegation();
        let same = row.bytes(1).map_err(col)? == signed.id().as_bytes()
            && row.bytes(2).map_err(col)? == d.subject().as_bytes()
            && row.bytes(3).map_err(col)? == d.device.as_bytes()
            && t(row.int(4).map_err(col)?) == d.valid_from
            && t(row.int(5).map_err(col)?) == d.valid_until.unwrap_or(Timestamp::MAX);
        if !same {
            return Err(bad("its subject, device or validity is not what was signed"));
        }
        let until = d.valid_until.unwrap_or(Timestamp::MAX);
        let seq = row.int(0).map_err(col)?;
        signers.delegations.entry(d.device).or_default().push((d.subject(), d.valid_from, until, seq));
        out.delegations += 1;
        Ok(())
    })?;
    // Certificates: (key, certifier, not_before, not_after, recorded_at) of each row
    // whose signed bytes verify and match it.
    let mut certs = Vec::new();
    let mut certified: BTreeSet<CertificateId> = BTreeSet::new();
    let certificates = "SELECT seq, id, key, certifier, not_before, not_after, recorded_at, signed
             FROM ledger_certificate WHERE seq < $1 ORDER BY seq";
    each_row(rows, certificates, to, "certificate", |row, bad| {
        let signed = DeviceCertificate::from_bytes(row.bytes(7).map_err(col)?)
            .map_err(|e| bad(&format!("signed bytes: {e}")))?;
        let c = signed.certificate();
        let same = row.bytes(1).map_err(col)? == signed.id().as_bytes()
            && row.bytes(2).map_err(col)? == c.key.as_bytes()
            && row.bytes(3).map_err(col)? == c.certifier.as_bytes()
            && t(row.int(4).map_err(col)?) == c.not_before
            && t(row.int(5).map_err(col)?) == c.not_after;
        if !same {
            return Err(bad("its key, certifier or validity is not what was signed"));
        }
        certified.insert(signed.id());
        certs.push((c.key.0, c.certifier, c.not_before, c.not_after, t(row.int(6).map_err(col)?)));
        out.certificates += 1;
        Ok(())
    })?;
    let trusted = catalogue.certifiers();
    if !trusted.is_empty() {
        let delegated = "SELECT seq, device, recorded_at FROM ledger_delegation WHERE seq < $1 ORDER BY seq";
        each_row(rows, delegated, to, "delegation", |row, _| {
            let (device, at) = (row.bytes(1).map_err(col)?, t(row.int(2).map_err(col)?));
            let ok = certs.iter().any(|(key, certifier, from, until, recorded)| {
                key.as_slice() == device
                    && trusted.contains(certifier)
                    && *from <= at
                    && at < *until
                    && *recorded <= at
            });
            out.uncertified_delegations += u64::from(!ok);
            Ok(())
        })?;
    }
    let revocations =
        "SELECT seq, device, at, recorded_at, signed FROM ledger_revocation WHERE seq < $1 ORDER BY seq";
    each_row(rows, revocations, to, "revocation", |row, bad| {
        let signed = SignedRevocation::from_bytes(row.bytes(4).map_err(col)?)
            .map_err(|e| bad(&format!("signed bytes: {e}")))?;
        let r = signed.revocation();
        let effective = crate::ledger::effective_revocation(r.at, t(row.int(3).map_err(col)?));
        if row.bytes(1).map_err(col)? != r.device.as_bytes() || t(row.int(2).map_err(col)?) != effective {
            return Err(bad("its device or instant is not what was signed"));
        }
        signers.revocations.insert(r.device, (effective, row.int(0).map_err(col)?));
        out.revocations += 1;
        Ok(())
    })?;
    let receipts = "SELECT seq, id, subject, device_key, recipient, purpose, metrics, hold, valid_from, valid_until, signed,
             recorded_at FROM ledger_receipt WHERE seq < $1 ORDER BY seq";
    each_row(rows, receipts, to, "receipt", |row, bad| {
        given.insert(receipt_id(row.bytes(1).map_err(col)?, "ledger_receipt")?);
        let Some(bytes) = row.opt_bytes(10).map_err(col)? else {
            out.unsigned_receipts += 1;
            return Ok(());
        };
        let signed = SignedReceipt::from_bytes(bytes).map_err(|e| bad(&format!("signed bytes: {e}")))?;
        let r = signed.receipt();
        let metrics: BTreeSet<String> =
            r.scope.metrics_in(catalogue, &r.recipient, &r.purpose).map(ToString::to_string).collect();
        let stored: BTreeSet<String> =
            row.text(6).map_err(col)?.split(' ').filter(|m| !m.is_empty()).map(str::to_owned).collect();
        let checks = [
            ("id", row.bytes(1).map_err(col)? == signed.id().as_bytes()),
            ("subject", row.bytes(2).map_err(col)? == r.subject.as_bytes()),
            ("signer", row.bytes(3).map_err(col)? == r.signer.as_bytes()),
            ("recipient", row.text(4).map_err(col)? == r.recipient.as_str()),
            ("purpose", row.text(5).map_err(col)? == r.purpose.as_str()),
            ("metrics", stored == metrics),
            ("hold", row.text(7).map_err(col)? == r.hold.to_string()),
            ("valid_from", t(row.int(8).map_err(col)?) == r.valid_from),
            ("valid_until", t(row.int(9).map_err(col)?) == r.valid_until.unwrap_or(Timestamp::MAX)),
        ];
        if let Some((what, _)) = checks.iter().find(|(_, ok)| !ok) {
            return Err(bad(&format!("its {what} is not what was signed")));
        }
        let (seq, recorded_at) = (row.int(0).map_err(col)?, t(row.int(11).map_err(col)?));
        signers.check(&r.signer, &r.subject_key, &r.subject, r.issued_at, recorded_at, seq).map_err(bad)?;
        out.receipts += 1;
        Ok(())
    })?;
    let withdrawals =
        "SELECT seq, receipt, at, signed, recorded_at FROM ledger_withdrawal WHERE seq < $1 ORDER BY seq";
    each_row(rows, withdrawals, to, "withdrawal", |row, bad| {
        withdrawn.insert(receipt_id(row.bytes(1).map_err(col)?, "ledger_withdrawal")?);
        // An admin override's withdrawals carry no signature (its event names them).
        let Some(bytes) = row.opt_bytes(3).map_err(col)? else { return Ok(()) };
        let signed = SignedWithdrawal::from_bytes(bytes).map_err(|e| bad(&format!("signed bytes: {e}")))?;
        let w = signed.withdrawal();
        if row.bytes(1).map_err(col)? != w.receipt.as_bytes() || t(row.int(2).map_err(col)?) != w.at {
            return Err(bad("its receipt or instant is not what was signed"));
        }
        let (seq, recorded_at) = (row.int(0).map_err(col)?, t(row.int(4).map_err(col)?));
        signers.check(&w.signer, &w.subject_key, &w.subject, w.issued_at, recorded_at, seq).map_err(bad)?;
        out.withdrawals += 1;
        Ok(())
    })?;
    compare_with_log(&Logged { given, withdrawn, certified }, events, later)?;
    check_disclosures(rows, to, &disclosed_of(catalogue, events))?;
    Ok(out)
}

/// What the log says was disclosed: (kind, recipient, metric, at) → count. A release of
/// records counts the records it disclosed; a transcryption, one (its event names no
/// metric).
fn disclosed_of(
    catalogue: &confiance::catalogue::Catalogue,
    events: &[LoggedEvent],
) -> BTreeMap<(&'static str, String, String, i64), u64> {
    let mut disclosed = BTreeMap::new();
    for e in events {
        match &e.event {
            AuditEvent::Release { recipient, metric, partitions, at, .. }
                if catalogue.metric(metric).is_some_and(|m| !m.is_anonymous()) =>
            {
                let key = ("release", recipient.to_string(), metric.to_string(), secs(*at));
                *disclosed.entry(key).or_default() += u64::from(*partitions);
            }
            AuditEvent::Transcryption { recipient, at, .. } => {
                *disclosed
                    .entry(("transcryption", recipient.to_string(), String::new(), secs(*at)))
                    .or_default() += 1;
            }
            _ => {}
        }
    }
    disclosed
}

/// Every disclosure the log counts is noted in `ledger_disclosure` (more may be: a
/// disclosure the library's user noted itself has no event). The rows are those of
/// facts before `to`, read after the log, so each logged disclosure has its rows.
fn check_disclosures(
    rows: &dyn FactSource,
    to: i64,
    logged: &BTreeMap<(&'static str, String, String, i64), u64>,
) -> Result<(), String> {
    let mut held: BTreeMap<(String, String, String, i64), u64> = BTreeMap::new();
    let query = "SELECT seq, kind, recipient, metric, at FROM ledger_disclosure WHERE seq < $1 ORDER BY seq";
    each_row(rows, query, to, "disclosure", |row, _| {
        let kind = row.text(1).map_err(col)?.to_owned();
        let metric = if kind == "release" { row.text(3).map_err(col)?.to_owned() } else { String::new() };
        let key = (kind, row.text(2).map_err(col)?.to_owned(), metric, row.int(4).map_err(col)?);
        *held.entry(key).or_default() += 1;
        Ok(())
    })?;
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

/// The facts the log names by id: receipts given and withdrawn, device certificates.
#[derive(Default)]
struct Logged {
    given: BTreeSet<ReceiptId>,
    withdrawn: BTreeSet<ReceiptId>,
    certified: BTreeSet<CertificateId>,
}

impl Logged {
    /// Adds what `events` log: receipts given and withdrawn (an admin override names
    /// those it withdrew), certificates received.
    fn add(&mut self, events: &[LoggedEvent]) {
        for e in events {
            match &e.event {
                AuditEvent::ConsentGiven { receipt } => {
                    self.given.insert(*receipt);
                }
                AuditEvent::ConsentWithdrawn { receipt, .. } => {
                    self.withdrawn.insert(*receipt);
                }
                AuditEvent::AdminOverride { receipts, .. } => self.withdrawn.extend(receipts.iter().copied()),
                AuditEvent::DeviceCertified { certificate, .. } => {
                    self.certified.insert(*certificate);
                }
                _ => {}
            }
        }
    }

    /// The first fact `self` has and `other` lacks, named, with `side`.
    fn first_missing_from(&self, other: &Self, side: &str) -> Option<String> {
        let given = self.given.difference(&other.given).next();
        let withdrawn = self.withdrawn.difference(&other.withdrawn).next();
        let certified = self.certified.difference(&other.certified).next();
        given
            .map(|r| format!("consent given for receipt {r}: {side}"))
            .or_else(|| withdrawn.map(|r| format!("consent withdrawn for receipt {r}: {side}")))
            .or_else(|| certified.map(|c| format!("device certificate {c}: {side}")))
    }
}

/// The facts the ledger holds against the log's events: an event without its fact is a
/// row deleted; a fact without its event, one the log lacks unless it was appended since
/// `events` were read (`later`).
fn compare_with_log(
    held: &Logged,
    events: &[LoggedEvent],
    later: impl FnOnce() -> Result<Vec<LoggedEvent>, String>,
) -> Result<(), String> {
    let mut logged = Logged::default();
    logged.add(events);
    if let Some(finding) = logged.first_missing_from(held, "the log holds it, the ledger does not") {
        return Err(finding);
    }
    if held.first_missing_from(&logged, "").is_none() {
        return Ok(());
    }
    logged.add(&later()?);
    held.first_missing_from(&logged, "the ledger holds it, the log does not").map_or(Ok(()), Err)
}

/// Who could sign for whom, read from the rows. A message accepted as fact `seq` is
/// checked against the delegations, revocations and overrides recorded before it: what
/// the ledger knew when it accepted it.
#[derive(Default)]
struct Signers {
    /// Device key → (delegating subject, valid from, valid until, seq), in `seq` order.
    delegations: HashMap<DevicePublicKey, Vec<(SubjectId, Timestamp, Timestamp, i64)>>,
    /// Device key → (effective instant, seq) of its revocation.
    revocations: HashMap<DevicePublicKey, (Timestamp, i64)>,
    /// Subject → seq of the admin override that closed it.
    closed: HashMap<SubjectId, i64>,
}

impl Signers {
    /// Whether `signer` spoke for `subject` (whose key is `subject_key`) for a message
    /// signed at `issued_at`, recorded at `recorded_at` as fact `seq`: the ledger's rules
    /// at ingest (`ledger::enroll`, docs/privacy.md "Trust model") replayed from the rows.
    fn check(
        &self,
        signer: &DevicePublicKey,
        subject_key: &SubjectPublicKey,
        subject: &SubjectId,
        issued_at: Timestamp,
        recorded_at: Timestamp,
        seq: i64,
    ) -> Result<(), &'static str> {
        if self.closed.get(subject).is_some_and(|&closed| closed < seq) {
            return Err("its subject had been closed by an admin override");
        }
        if *signer == subject_key.as_device_key() {
            return Ok(());
        }
        let known: Vec<_> =
            self.delegations.get(signer).into_iter().flatten().filter(|(.., at)| *at < seq).collect();
        if known.is_empty() || known.iter().any(|(by, ..)| by != subject) {
            return Err("its signer is not a device key its subject delegated");
        }
        let revoked = self.revocations.get(signer);
        if revoked.is_some_and(|&(at, rs)| rs < seq && at <= issued_at.max(recorded_at)) {
            return Err("its signer had been revoked");
        }
        if !known.iter().any(|&&(_, from, until, _)| from <= issued_at && issued_at < until) {
            return Err("its signer's delegation was not in force when it was signed");
        }
        Ok(())
    }
}

fn subject_id(bytes: &[u8]) -> Result<SubjectId, String> {
    <[u8; 32]>::try_from(bytes).map(SubjectId).map_err(|_| "ledger_override: a malformed subject".to_owned())
}

fn receipt_id(bytes: &[u8], table: &str) -> Result<ReceiptId, String> {
    <[u8; 32]>::try_from(bytes).map(ReceiptId).map_err(|_| format!("{table}: a malformed id"))
}

/// Runs `check` on every row of `query` (`$1` the bound on `seq`), whose first column is
/// the row's `seq`: `bad` prefixes a finding with `"{kind} row {seq}: "`. One row loop
/// for every table and both backends.
fn each_row(
    rows: &dyn FactSource,
    query: &str,
    to: i64,
    kind: &str,
    mut check: impl FnMut(&dyn Cols, &dyn Fn(&str) -> String) -> Result<(), String>,
) -> Result<(), String> {
    let mut finding = None;
    let read = rows.each_row(query, to, &mut |row| {
        let seq = row.int(0)?;
        check(row, &|what: &str| format!("{kind} row {seq}: {what}")).map_err(|m| {
            finding = Some(m);
            LedgerError::Corrupt("a finding")
        })
    });
    match (read, finding) {
        (_, Some(m)) => Err(m),
        (Err(e), None) => Err(col(e)),
        (Ok(()), None) => Ok(()),
    }
}

fn col(e: LedgerError) -> String {
    format!("ledger tables: {e}")
}

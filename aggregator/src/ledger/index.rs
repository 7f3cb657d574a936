//! The in-memory index: interned names, compact rows and the posting lists the queries
//! read. See the [module documentation](super) for the design and its costs.

use std::collections::{BTreeSet, HashMap, HashSet};

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::ids::{
    CategoryId, CertificateId, CertifierPublicKey, DelegationId, DevicePublicKey, MetricId, PurposeId,
    ReceiptId, RecipientId, SubjectId,
};
use confiance::retention::Duration;

use super::LedgerError;
use super::answer::DisclosureKind;

/// Most distinct hold durations the index interns (its hold indices are `u32`).
pub(super) const MAX_HOLDS: usize = u32::MAX as usize;

/// Most rows of one table (subjects, receipts, records, partitions, disclosures): their
/// indices are `u32`. The ledger refuses an input past it with [`LedgerError::Full`]
/// before storing anything, so [`to_u32`] never saturates.
pub(super) const MAX_ROWS: usize = u32::MAX as usize;

// Catalogue names are interned as `u16`: a catalogue has at most `MAX_ITEMS` of a kind.
const _: () = assert!(confiance::catalogue::MAX_ITEMS < u16::MAX as usize);

/// "Never" / "not yet" for times stored as plain instants.
pub(super) const NEVER: Timestamp = Timestamp::MAX;

/// Catalogue names interned as small integers (positions in the catalogue's sorted maps).
#[derive(Debug)]
pub(super) struct Names {
    pub recipients: Vec<RecipientId>,
    pub purposes: Vec<PurposeId>,
    pub metrics: Vec<MetricId>,
    pub metric_category: Vec<CategoryId>,
    pub metric_max_hold: Vec<Duration>,
    recipient_ix: HashMap<String, u16>,
    purpose_ix: HashMap<String, u16>,
    metric_ix: HashMap<String, u16>,
    /// `allowed[(r * metrics + m) * purposes + p]`: the catalogue lets r have m for p.
    allowed: Vec<bool>,
}

impl Names {
    pub fn new(catalogue: &Catalogue) -> Self {
        let recipients: Vec<RecipientId> = catalogue.recipients().map(|(id, _)| id.clone()).collect();
        let purposes: Vec<PurposeId> = catalogue.purposes().map(|(id, _)| id.clone()).collect();
        let metrics: Vec<MetricId> = catalogue.metrics().map(|(id, _)| id.clone()).collect();
        let metric_category = catalogue.metrics().map(|(_, m)| m.category.clone()).collect();
        let metric_max_hold = catalogue.metrics().map(|(_, m)| m.max_hold.clone()).collect();
        // Lossless: at most `MAX_ITEMS` < 2^16 names of a kind (asserted above).
        let ix = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        let recipient_ix =
            recipients.iter().enumerate().map(|(i, r)| (r.as_str().to_owned(), ix(i))).collect();
        let purpose_ix = purposes.iter().enumerate().map(|(i, p)| (p.as_str().to_owned(), ix(i))).collect();
        let metric_ix = metrics.iter().enumerate().map(|(i, m)| (m.as_str().to_owned(), ix(i))).collect();
        let mut allowed = Vec::with_capacity(recipients.len() * metrics.len() * purposes.len());
        for r in &recipients {
            for m in &metrics {
                for p in &purposes {
                    allowed.push(catalogue.allows(m, p, r));
                }
            }
        }
        Self {
            recipients,
            purposes,
            metrics,
            metric_category,
            metric_max_hold,
            recipient_ix,
            purpose_ix,
            metric_ix,
            allowed,
        }
    }

    pub fn recipient(&self, id: &RecipientId) -> Option<u16> {
        self.recipient_str(id.as_str())
    }
    pub fn purpose(&self, id: &PurposeId) -> Option<u16> {
        self.purpose_str(id.as_str())
    }
    pub fn metric(&self, id: &MetricId) -> Option<u16> {
        self.metric_str(id.as_str())
    }
    pub fn recipient_str(&self, s: &str) -> Option<u16> {
        self.recipient_ix.get(s).copied()
    }
    pub fn purpose_str(&self, s: &str) -> Option<u16> {
        self.purpose_ix.get(s).copied()
    }
    pub fn metric_str(&self, s: &str) -> Option<u16> {
        self.metric_ix.get(s).copied()
    }
    /// The name interned as `r`, `m`, `p`: the reverse of the lookups above.
    pub fn recipient_id(&self, r: u16) -> Option<&RecipientId> {
        self.recipients.get(usize::from(r))
    }
    pub fn metric_id(&self, m: u16) -> Option<&MetricId> {
        self.metrics.get(usize::from(m))
    }
    pub fn purpose_id(&self, p: u16) -> Option<&PurposeId> {
        self.purposes.get(usize::from(p))
    }

    /// Index of the (recipient, metric) pair in per-pair tables.
    pub fn pair(&self, r: u16, m: u16) -> usize {
        usize::from(r) * self.metrics.len() + usize::from(m)
    }
    pub fn pairs(&self) -> usize {
        self.recipients.len() * self.metrics.len()
    }
    pub fn allows(&self, r: u16, m: u16, p: u16) -> bool {
        let i = self.pair(r, m) * self.purposes.len() + usize::from(p);
        self.allowed.get(i).copied().unwrap_or(false)
    }
    /// The catalogue lets r have m for some purpose.
    pub fn allows_any(&self, r: u16, m: u16) -> bool {
        (0..self.purposes.len()).any(|p| self.allows(r, m, u16::try_from(p).unwrap_or(u16::MAX)))
    }
}

/// A receipt as the index keeps it: about 170 bytes, shared by all its metrics.
#[derive(Clone, Debug)]
pub(super) struct ReceiptRow {
    pub id: ReceiptId,
    pub device_key: [u8; 32],
    pub seq: u64,
    /// Sequence number of its withdrawal; `u64::MAX` while not withdrawn.
    pub wseq: u64,
    pub subject: u32,
    pub recipient: u16,
    pub purpose: u16,
    /// Index into [`Index::holds`].
    pub hold: u32,
    /// Sorted metric indices the receipt covers under the catalogue.
    pub metrics: Box<[u16]>,
    pub valid_from: Timestamp,
    /// [`NEVER`] when it does not end by itself.
    pub valid_until: Timestamp,
    pub recorded_at: Timestamp,
    /// [`NEVER`] while not withdrawn.
    pub withdrawn_at: Timestamp,
    pub withdrawal_recorded_at: Timestamp,
}

impl ReceiptRow {
    pub fn withdrawn(&self) -> bool {
        self.wseq != u64::MAX
    }
    pub fn visible(&self, known: Timestamp) -> bool {
        self.recorded_at <= known
    }
    /// `min(valid_until, withdrawn_at)` with the withdrawal counted only if known at `known`.
    pub fn end(&self, known: Timestamp) -> Timestamp {
        end(self.valid_until, self.withdrawn_at, self.withdrawal_recorded_at, known)
    }
    /// Whether the withdrawal, as known at `known`, is what ended it.
    pub fn ended_by_withdrawal(&self, known: Timestamp) -> bool {
        // A withdrawal taking effect at the very instant the receipt expires ended it too;
        // the subject's act is the reason given (one rule, `withdrawn_at <= valid_until`).
        self.withdrawn() && self.withdrawal_recorded_at <= known && self.withdrawn_at <= self.valid_until
    }
}

fn end(
    valid_until: Timestamp,
    withdrawn_at: Timestamp,
    w_recorded: Timestamp,
    known: Timestamp,
) -> Timestamp {
    if w_recorded <= known { valid_until.min(withdrawn_at) } else { valid_until }
}

/// One grant (receipt × metric) in the posting list of its (recipient, metric): the
/// receipt's times copied in, so a stabbing query never leaves the list. 48 bytes.
#[derive(Clone, Copy, Debug)]
pub(super) struct GrantEntry {
    pub valid_from: Timestamp,
    pub valid_until: Timestamp,
    pub withdrawn_at: Timestamp,
    pub withdrawal_recorded_at: Timestamp,
    pub recorded_at: Timestamp,
    pub subject: u32,
    pub receipt: u32,
}

impl GrantEntry {
    pub fn end(&self, known: Timestamp) -> Timestamp {
        end(self.valid_until, self.withdrawn_at, self.withdrawal_recorded_at, known)
    }
}

#[derive(Clone, Debug)]
pub(super) struct RecordRow {
    pub id: [u8; 16],
    pub seq: u64,
    pub pseq: u64,
    pub subject: u32,
    pub recipient: u16,
    pub metric: u16,
    pub receipt: u32,
    pub collected_at: Timestamp,
    pub deadline: Timestamp,
    pub recorded_at: Timestamp,
    pub purged_at: Timestamp,
    pub purge_recorded_at: Timestamp,
}

impl RecordRow {
    pub fn purged(&self) -> bool {
        self.pseq != u64::MAX
    }
    /// In the store at `at` as known at `known`, deadline aside: collected by then and
    /// not purged by then.
    fn present(&self, at: Timestamp, known: Timestamp) -> bool {
        self.recorded_at <= known
            && self.collected_at <= at
            && !(self.purge_recorded_at <= known && self.purged_at <= at)
    }
    /// Held at `at` as known at `known`: present and not past its deadline.
    pub fn held(&self, at: Timestamp, known: Timestamp) -> bool {
        self.present(at, known) && at < self.deadline
    }
    /// Overdue at `at` as known at `known`: present at or after its deadline.
    pub fn overdue(&self, at: Timestamp, known: Timestamp) -> bool {
        self.present(at, known) && self.deadline <= at
    }
}

#[derive(Clone, Debug)]
pub(super) struct PartitionRow {
    pub id: Box<[u8]>,
    pub seq: u64,
    pub pseq: u64,
    pub metric: u16,
    pub bucket_end: Timestamp,
    pub audience: Box<[u16]>,
    pub deadline: Timestamp,
    pub recorded_at: Timestamp,
    pub purged_at: Timestamp,
    pub purge_recorded_at: Timestamp,
}

impl PartitionRow {
    pub fn purged(&self) -> bool {
        self.pseq != u64::MAX
    }
    /// In the store at `at` as known at `known`, deadline aside: noted by then and not
    /// purged by then.
    fn present(&self, at: Timestamp, known: Timestamp) -> bool {
        self.recorded_at <= known
            && self.recorded_at <= at
            && !(self.purge_recorded_at <= known && self.purged_at <= at)
    }
    /// Held at `at` as known at `known`: present and not past its deadline.
    pub fn held(&self, at: Timestamp, known: Timestamp) -> bool {
        self.present(at, known) && at < self.deadline
    }
    /// Overdue at `at` as known at `known`: present at or after its deadline.
    pub fn overdue(&self, at: Timestamp, known: Timestamp) -> bool {
        self.present(at, known) && self.deadline <= at
    }
}

#[derive(Clone, Debug)]
pub(super) struct DisclosureRow {
    pub seq: u64,
    pub kind: DisclosureKind,
    pub recipient: u16,
    pub metric: u16,
    pub purpose: u16,
    pub subject: u32,
    pub at: Timestamp,
    pub record: Option<[u8; 16]>,
    pub recorded_at: Timestamp,
}

#[derive(Clone, Debug, Default)]
pub(super) struct SubjectEntry {
    pub receipts: Vec<u32>,
    pub records: Vec<u32>,
    pub disclosures: Vec<u32>,
    /// Its delegations, in the order recorded.
    pub delegations: Vec<u32>,
    /// When an admin closed it (lost subject key), as (valid time, record time).
    pub closed: Option<(Timestamp, Timestamp)>,
}

/// A device delegation as the index keeps it.
#[derive(Clone, Debug)]
pub(super) struct DelegationRow {
    pub id: DelegationId,
    pub seq: u64,
    pub subject: u32,
    pub device: DevicePublicKey,
    pub valid_from: Timestamp,
    /// [`NEVER`] when it does not end by itself.
    pub valid_until: Timestamp,
    pub recorded_at: Timestamp,
}

/// A device key's revocation: from `at` (valid time), learned at `recorded_at`.
#[derive(Clone, Copy, Debug)]
pub(super) struct RevocationRow {
    pub seq: u64,
    pub at: Timestamp,
    pub recorded_at: Timestamp,
}

/// A device certificate as the index keeps it (its signature was verified at ingest;
/// the signed bytes stay in the table for auditors).
#[derive(Clone, Copy, Debug)]
pub(super) struct CertificateRow {
    pub id: CertificateId,
    pub seq: u64,
    pub key: DevicePublicKey,
    pub certifier: CertifierPublicKey,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub recorded_at: Timestamp,
}

/// What the ledger knows of one device key: the subject that delegated it (one only),
/// its delegations, and its revocation.
#[derive(Clone, Debug)]
pub(super) struct DeviceEntry {
    pub subject: u32,
    pub delegations: Vec<u32>,
    pub revoked: Option<RevocationRow>,
}

/// An admin override of a subject (a lost subject key), as the index keeps it.
#[derive(Clone, Debug)]
pub(super) struct OverrideRow {
    pub seq: u64,
    pub subject: u32,
    pub reason: String,
    pub at: Timestamp,
    pub recorded_at: Timestamp,
}

/// Per recipient, each list sorted by the record time of its fact (for `history`).
#[derive(Clone, Debug, Default)]
pub(super) struct RecipientEntry {
    pub receipts: Vec<u32>,
    pub withdrawals: Vec<u32>,
    pub records: Vec<u32>,
    pub purges: Vec<u32>,
    pub disclosures: Vec<u32>,
    pub partitions: Vec<u32>,
}

/// Everything in memory.
#[derive(Debug)]
pub(super) struct Index {
    pub subject_ids: Vec<SubjectId>,
    pub subject_ix: HashMap<SubjectId, u32>,
    pub subjects: Vec<SubjectEntry>,
    pub receipts: Vec<ReceiptRow>,
    pub receipt_ix: HashMap<ReceiptId, u32>,
    pub holds: Vec<Duration>,
    pub hold_ix: HashMap<Duration, u32>,
    /// Per (recipient, metric): grants sorted by `valid_from`.
    pub postings: Vec<Vec<GrantEntry>>,
    pub recipients: Vec<RecipientEntry>,
    pub records: Vec<RecordRow>,
    pub record_ix: HashMap<[u8; 16], u32>,
    /// Per (recipient, metric): record indices sorted by `collected_at`.
    pub record_postings: Vec<Vec<u32>>,
    /// Every record, purged or not, by deadline (a late purge stays a past violation).
    pub records_by_deadline: BTreeSet<(Timestamp, u32)>,
    pub partitions: Vec<PartitionRow>,
    pub partition_ix: HashMap<Box<[u8]>, u32>,
    /// Per metric: partition indices.
    pub metric_partitions: Vec<Vec<u32>>,
    /// Every partition, purged or not, by deadline.
    pub partitions_by_deadline: BTreeSet<(Timestamp, u32)>,
    pub disclosures: Vec<DisclosureRow>,
    /// Disclosure indices sorted by `at` (valid time).
    pub disclosures_by_at: Vec<u32>,
    pub delegations: Vec<DelegationRow>,
    pub delegation_ix: HashMap<DelegationId, u32>,
    pub devices: HashMap<DevicePublicKey, DeviceEntry>,
    pub overrides: Vec<OverrideRow>,
    /// Device certificates per certified key.
    pub certificates: HashMap<DevicePublicKey, Vec<CertificateRow>>,
    pub certificate_ix: HashSet<CertificateId>,
    /// On a lazily loaded ledger, the keys whose certificates are loaded (every key's
    /// are on any other).
    pub certified_keys: HashSet<DevicePublicKey>,
    pub next_seq: u64,
    /// While set, receipts and withdrawals are appended unsorted and [`Index::finish`]
    /// sorts once: a bulk load in arbitrary `valid_from` order would otherwise cost a
    /// `memmove` of the posting list per grant.
    pub deferred: bool,
}

/// Inserts `value` keeping `v` sorted by `key`; an append when keys arrive in order.
pub(super) fn insert_sorted<K: Ord>(v: &mut Vec<u32>, value: u32, key: impl Fn(u32) -> K) {
    let k = key(value);
    if v.last().is_none_or(|&last| key(last) <= k) {
        v.push(value);
    } else {
        let at = v.partition_point(|&x| key(x) <= k);
        v.insert(at, value);
    }
}

/// A row index; callers checked [`Index::room`] first, so `n < MAX_ROWS`.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Index {
    pub fn new(names: &Names) -> Self {
        Self {
            subject_ids: Vec::new(),
            subject_ix: HashMap::new(),
            subjects: Vec::new(),
            receipts: Vec::new(),
            receipt_ix: HashMap::new(),
            holds: Vec::new(),
            hold_ix: HashMap::new(),
            postings: vec![Vec::new(); names.pairs()],
            recipients: vec![RecipientEntry::default(); names.recipients.len()],
            records: Vec::new(),
            record_ix: HashMap::new(),
            record_postings: vec![Vec::new(); names.pairs()],
            records_by_deadline: BTreeSet::new(),
            partitions: Vec::new(),
            partition_ix: HashMap::new(),
            metric_partitions: vec![Vec::new(); names.metrics.len()],
            partitions_by_deadline: BTreeSet::new(),
            disclosures: Vec::new(),
            disclosures_by_at: Vec::new(),
            delegations: Vec::new(),
            delegation_ix: HashMap::new(),
            devices: HashMap::new(),
            overrides: Vec::new(),
            certificates: HashMap::new(),
            certificate_ix: HashSet::new(),
            certified_keys: HashSet::new(),
            next_seq: 0,
            deferred: false,
        }
    }

    pub fn subject(&self, id: &SubjectId) -> Option<u32> {
        self.subject_ix.get(id).copied()
    }

    /// The subject interned as `s`.
    pub fn subject_id(&self, s: u32) -> Option<SubjectId> {
        self.subject_ids.get(s as usize).copied()
    }

    pub fn intern_subject(&mut self, id: SubjectId) -> u32 {
        let n = to_u32(self.subject_ids.len());
        *self.subject_ix.entry(id).or_insert_with(|| {
            self.subject_ids.push(id);
            self.subjects.push(SubjectEntry::default());
            n
        })
    }

    /// The index of `hold`, interning it if new.
    ///
    /// # Errors
    /// [`LedgerError::Full`] past [`MAX_HOLDS`] distinct holds (each distinct hold needs
    /// a receipt, so ~4·10^9 receipts in memory first); nothing is interned then.
    pub fn intern_hold(&mut self, hold: &Duration) -> Result<u32, LedgerError> {
        if let Some(&h) = self.hold_ix.get(hold) {
            return Ok(h);
        }
        let h = u32::try_from(self.holds.len())
            .ok()
            .filter(|&h| (h as usize) < MAX_HOLDS)
            .ok_or(LedgerError::Full("distinct holds"))?;
        self.holds.push(hold.clone());
        self.hold_ix.insert(hold.clone(), h);
        Ok(h)
    }

    /// Room for `pending + 1` more rows in `table` of `len` rows.
    ///
    /// # Errors
    /// [`LedgerError::Full`] naming the table.
    pub fn room(table: &'static str, len: usize, pending: usize) -> Result<(), LedgerError> {
        if len.saturating_add(pending) < MAX_ROWS { Ok(()) } else { Err(LedgerError::Full(table)) }
    }

    /// Whether `hold` can be interned after `pending` other new holds.
    pub fn has_room_for_hold(&self, hold: &Duration, pending: usize) -> bool {
        self.hold_ix.contains_key(hold) || self.holds.len().saturating_add(pending) < MAX_HOLDS
    }

    pub fn bump_seq(&mut self, seq: u64) {
        self.next_seq = self.next_seq.max(seq.saturating_add(1));
    }

    /// Adds a receipt row (already checked and stored).
    pub fn add_receipt(&mut self, names: &Names, row: ReceiptRow) {
        let ri = to_u32(self.receipts.len());
        self.bump_seq(row.seq);
        self.receipt_ix.insert(row.id, ri);
        let entry = GrantEntry {
            valid_from: row.valid_from,
            valid_until: row.valid_until,
            withdrawn_at: row.withdrawn_at,
            withdrawal_recorded_at: row.withdrawal_recorded_at,
            recorded_at: row.recorded_at,
            subject: row.subject,
            receipt: ri,
        };
        for &m in &row.metrics {
            if let Some(list) = self.postings.get_mut(names.pair(row.recipient, m)) {
                if self.deferred || list.last().is_none_or(|l| l.valid_from <= entry.valid_from) {
                    list.push(entry);
                } else {
                    let at = list.partition_point(|g| g.valid_from <= entry.valid_from);
                    list.insert(at, entry);
                }
            }
        }
        if let Some(s) = self.subjects.get_mut(row.subject as usize) {
            s.receipts.push(ri);
        }
        let recorded = row.recorded_at;
        let rc = row.recipient;
        self.receipts.push(row);
        let receipts = &self.receipts;
        if let Some(r) = self.recipients.get_mut(usize::from(rc)) {
            if self.deferred {
                r.receipts.push(ri);
                return;
            }
            insert_sorted(&mut r.receipts, ri, |i| {
                receipts.get(i as usize).map_or((recorded, 0), |x| (x.recorded_at, x.seq))
            });
        }
    }

    /// Marks receipt `ri` withdrawn (already checked and stored).
    pub fn apply_withdrawal(
        &mut self,
        names: &Names,
        ri: u32,
        at: Timestamp,
        recorded_at: Timestamp,
        seq: u64,
    ) {
        self.bump_seq(seq);
        let Some(row) = self.receipts.get_mut(ri as usize) else { return };
        row.withdrawn_at = at;
        row.withdrawal_recorded_at = recorded_at;
        row.wseq = seq;
        let (recipient, valid_from) = (row.recipient, row.valid_from);
        for &m in row.metrics.iter() {
            let Some(list) = self.postings.get_mut(names.pair(recipient, m)) else { continue };
            let start = list.partition_point(|g| g.valid_from < valid_from);
            if let Some(g) = list.iter_mut().skip(start).find(|g| g.receipt == ri) {
                g.withdrawn_at = at;
                g.withdrawal_recorded_at = recorded_at;
            }
        }
        let receipts = &self.receipts;
        if let Some(r) = self.recipients.get_mut(usize::from(recipient)) {
            if self.deferred {
                r.withdrawals.push(ri);
                return;
            }
            insert_sorted(&mut r.withdrawals, ri, |i| {
                receipts.get(i as usize).map_or((NEVER, 0), |x| (x.withdrawal_recorded_at, x.wseq))
            });
        }
    }

    /// Sorts what was appended unsorted while [`Self::deferred`] was set. Stable sorts
    /// over lists that are mostly sorted runs: O(n) to O(n log n).
    pub fn finish(&mut self) {
        for list in &mut self.postings {
            list.sort_by_key(|g| g.valid_from);
        }
        let receipts = &self.receipts;
        for r in &mut self.recipients {
            r.receipts.sort_by_key(|&i| receipts.get(i as usize).map(|x| (x.recorded_at, x.seq)));
            r.withdrawals
                .sort_by_key(|&i| receipts.get(i as usize).map(|x| (x.withdrawal_recorded_at, x.wseq)));
        }
    }

    pub fn add_record(&mut self, names: &Names, row: RecordRow) {
        let i = to_u32(self.records.len());
        self.bump_seq(row.seq);
        self.record_ix.insert(row.id, i);
        let (pair, subject, recipient, collected) =
            (names.pair(row.recipient, row.metric), row.subject, row.recipient, row.collected_at);
        self.records_by_deadline.insert((row.deadline, i));
        self.records.push(row);
        let records = &self.records;
        if let Some(list) = self.record_postings.get_mut(pair) {
            insert_sorted(list, i, |x| records.get(x as usize).map_or(collected, |r| r.collected_at));
        }
        if let Some(s) = self.subjects.get_mut(subject as usize) {
            s.records.push(i);
        }
        if let Some(r) = self.recipients.get_mut(usize::from(recipient)) {
            insert_sorted(&mut r.records, i, |x| {
                records.get(x as usize).map_or((NEVER, 0), |r| (r.recorded_at, r.seq))
            });
        }
    }

    pub fn apply_record_purge(&mut self, i: u32, at: Timestamp, recorded_at: Timestamp, seq: u64) {
        self.bump_seq(seq);
        let Some(row) = self.records.get_mut(i as usize) else { return };
        row.purged_at = at;
        row.purge_recorded_at = recorded_at;
        row.pseq = seq;
        let recipient = row.recipient;
        let records = &self.records;
        if let Some(r) = self.recipients.get_mut(usize::from(recipient)) {
            insert_sorted(&mut r.purges, i, |x| {
                records.get(x as usize).map_or((NEVER, 0), |r| (r.purge_recorded_at, r.pseq))
            });
        }
    }

    pub fn add_partition(&mut self, row: PartitionRow) {
        let i = to_u32(self.partitions.len());
        self.bump_seq(row.seq);
        self.partition_ix.insert(row.id.clone(), i);
        self.partitions_by_deadline.insert((row.deadline, i));
        if let Some(list) = self.metric_partitions.get_mut(usize::from(row.metric)) {
            list.push(i);
        }
        for &r in row.audience.iter() {
            if let Some(e) = self.recipients.get_mut(usize::from(r)) {
                e.partitions.push(i);
            }
        }
        self.partitions.push(row);
    }

    pub fn apply_partition_purge(&mut self, i: u32, at: Timestamp, recorded_at: Timestamp, seq: u64) {
        self.bump_seq(seq);
        let Some(row) = self.partitions.get_mut(i as usize) else { return };
        row.purged_at = at;
        row.purge_recorded_at = recorded_at;
        row.pseq = seq;
    }

    /// Adds a delegation (already checked and stored).
    pub fn add_delegation(&mut self, row: DelegationRow) {
        let i = to_u32(self.delegations.len());
        self.bump_seq(row.seq);
        self.delegation_ix.insert(row.id, i);
        if let Some(s) = self.subjects.get_mut(row.subject as usize) {
            s.delegations.push(i);
        }
        self.devices
            .entry(row.device)
            .or_insert_with(|| DeviceEntry { subject: row.subject, delegations: Vec::new(), revoked: None })
            .delegations
            .push(i);
        self.delegations.push(row);
    }

    /// Adds a device certificate (already checked and stored).
    pub fn add_certificate(&mut self, row: CertificateRow) {
        self.bump_seq(row.seq);
        self.certificate_ix.insert(row.id);
        self.certificates.entry(row.key).or_default().push(row);
    }

    /// Marks a device key revoked (already checked and stored).
    pub fn apply_revocation(&mut self, device: &DevicePublicKey, row: RevocationRow) {
        self.bump_seq(row.seq);
        if let Some(d) = self.devices.get_mut(device) {
            d.revoked = Some(row);
        }
    }

    /// Adds an admin override and closes its subject (already checked and stored).
    /// Its devices are revoked from the override's instant (those not revoked before).
    pub fn add_override(&mut self, row: OverrideRow) {
        self.bump_seq(row.seq);
        if let Some(s) = self.subjects.get_mut(row.subject as usize) {
            s.closed = Some((row.at, row.recorded_at));
            for &i in &s.delegations {
                let Some(d) = self.delegations.get(i as usize) else { continue };
                if let Some(dev) = self.devices.get_mut(&d.device)
                    && dev.revoked.is_none()
                {
                    dev.revoked =
                        Some(RevocationRow { seq: row.seq, at: row.at, recorded_at: row.recorded_at });
                }
            }
        }
        self.overrides.push(row);
    }

    pub fn add_disclosure(&mut self, row: DisclosureRow) {
        let i = to_u32(self.disclosures.len());
        self.bump_seq(row.seq);
        let (subject, recipient, at) = (row.subject, row.recipient, row.at);
        self.disclosures.push(row);
        let ds = &self.disclosures;
        insert_sorted(&mut self.disclosures_by_at, i, |x| {
            ds.get(x as usize).map_or((at, 0), |d| (d.at, d.seq))
        });
        if let Some(s) = self.subjects.get_mut(subject as usize) {
            s.disclosures.push(i);
        }
        if let Some(r) = self.recipients.get_mut(usize::from(recipient)) {
            insert_sorted(&mut r.disclosures, i, |x| {
                ds.get(x as usize).map_or((NEVER, 0), |d| (d.recorded_at, d.seq))
            });
        }
    }
}

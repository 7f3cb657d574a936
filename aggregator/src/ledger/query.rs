//! The queries of docs/design.md#queries, read from the in-memory index.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::ids::{MetricId, PurposeId, ReceiptId, RecipientId, SubjectId};
use rusqlite::Connection;

use super::answer::{
    AccessEntry, CatalogueDiff, Disclosure, Fact, HistoryEntry, MetricView, Overdue, PartitionInfo,
    PartitionNote, Party, RecipientView, RecordNote, SubjectAccess, Target, UnconsentedDisclosure, Until,
    WhoSees,
};
use super::index::{NEVER, ReceiptRow};
use super::{Ledger, diff};
use crate::decision::{ConsentCheck, Decision, DecisionReason};

/// The end of the union of `spans` (half-open, any order) that holds `at`, if any.
fn merged_end(
    spans: impl Iterator<Item = (Timestamp, Timestamp)> + Clone,
    at: Timestamp,
) -> Option<Timestamp> {
    let mut end = spans.clone().filter(|&(a, b)| a <= at && at < b).map(|(_, b)| b).max()?;
    // Extend through spans that start inside (or at the end of) what is covered so far.
    loop {
        let next = spans.clone().filter(|&(a, b)| a <= end && b > end).map(|(_, b)| b).max();
        match next {
            Some(e) => end = e,
            None => return Some(end),
        }
    }
}

fn known_at(as_known_at: Option<Timestamp>) -> Timestamp {
    as_known_at.unwrap_or(NEVER)
}

fn until_of(end: Timestamp) -> Option<Timestamp> {
    (end != NEVER).then_some(end)
}

impl<C: Borrow<Connection>> Ledger<C> {
    fn receipt(&self, rx: u32) -> Option<&ReceiptRow> {
        self.ix.receipts.get(rx as usize)
    }

    /// May `recipient` have `metric` of `subject` for `purpose` at `at`, as known at
    /// `as_known_at` (`None` = now)? See the [module documentation](super) for the rules.
    #[must_use]
    pub fn check_at(
        &self,
        recipient: &RecipientId,
        metric: &MetricId,
        purpose: &PurposeId,
        subject: &SubjectId,
        at: Timestamp,
        as_known_at: Option<Timestamp>,
    ) -> Decision {
        let known = known_at(as_known_at);
        let (Some(ri), Some(mi)) = (self.names.recipient(recipient), self.names.metric(metric)) else {
            return Decision::deny(DecisionReason::NotInCatalogue);
        };
        if !self.names.allows_any(ri, mi) {
            return Decision::deny(DecisionReason::NotInCatalogue);
        }
        let Some(pi) = self.names.purpose(purpose).filter(|&p| self.names.allows(ri, mi, p)) else {
            return Decision::deny(DecisionReason::PurposeNotAllowed);
        };
        let Some(entry) = self.ix.subject(subject).and_then(|s| self.ix.subjects.get(s as usize)) else {
            return Decision::deny(DecisionReason::NoConsent);
        };
        let matching = entry.receipts.iter().filter_map(|&rx| {
            let row = self.receipt(rx)?;
            (row.recipient == ri
                && row.purpose == pi
                && row.visible(known)
                && row.metrics.binary_search(&mi).is_ok())
            .then(|| (row.valid_from, row.end(known), rx))
        });
        if let Some(end) = merged_end(matching.clone().map(|(a, b, _)| (a, b)), at) {
            // The receipt in force with the latest end (the first recorded on a tie).
            let best = matching.clone().filter(|&(a, b, _)| a <= at && at < b).fold(
                None::<(Timestamp, u32)>,
                |acc, (_, b, rx)| match acc {
                    Some((e, _)) if e >= b => acc,
                    _ => Some((b, rx)),
                },
            );
            return Decision::allow(best.and_then(|(_, rx)| self.receipt(rx)).map(|r| r.id), until_of(end));
        }
        let lapsed = matching.clone().filter(|&(a, b, _)| a <= at && b <= at).fold(
            None::<(Timestamp, u32)>,
            |acc, (_, b, rx)| match acc {
                Some((e, _)) if e >= b => acc,
                _ => Some((b, rx)),
            },
        );
        if let Some(row) = lapsed.and_then(|(_, rx)| self.receipt(rx)) {
            let reason = if row.ended_by_withdrawal(known) {
                DecisionReason::Withdrawn
            } else {
                DecisionReason::Expired
            };
            return Decision::deny_with(row.id, reason);
        }
        let pending = matching.filter(|&(a, _, _)| a > at).fold(
            None::<(Timestamp, u32)>,
            |acc, (a, _, rx)| match acc {
                Some((f, _)) if f <= a => acc,
                _ => Some((a, rx)),
            },
        );
        if let Some(row) = pending.and_then(|(_, rx)| self.receipt(rx)) {
            return Decision::deny_with(row.id, DecisionReason::NotYetValid);
        }
        Decision::deny(DecisionReason::NoConsent)
    }

    /// Every recipient and metric that sees `subject`'s data at `at` (as known at
    /// `as_known_at`), with the end of the access window, the hold, and the records held.
    #[must_use]
    pub fn subject_access(
        &self,
        subject: &SubjectId,
        at: Timestamp,
        as_known_at: Option<Timestamp>,
    ) -> SubjectAccess {
        let known = known_at(as_known_at);
        let mut out = SubjectAccess {
            subject: *subject,
            at,
            as_known_at,
            entries: Vec::new(),
            devices: self.devices(subject, as_known_at),
        };
        let Some(entry) = self.ix.subject(subject).and_then(|s| self.ix.subjects.get(s as usize)) else {
            return out;
        };
        // (recipient, metric, from, end, receipt) for every visible grant of the subject.
        let mut spans: Vec<(u16, u16, Timestamp, Timestamp, u32)> = Vec::new();
        for &rx in &entry.receipts {
            let Some(row) = self.receipt(rx).filter(|r| r.visible(known)) else { continue };
            let end = row.end(known);
            spans.extend(row.metrics.iter().map(|&m| (row.recipient, m, row.valid_from, end, rx)));
        }
        spans.sort_unstable();
        let mut by_pair: BTreeMap<(u16, u16), AccessEntry> = BTreeMap::new();
        for group in spans.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
            let Some(&(r, m, ..)) = group.first() else { continue };
            let Some(end) = merged_end(group.iter().map(|g| (g.2, g.3)), at) else { continue };
            let Some(mut e) = self.empty_entry(r, m) else { continue };
            e.window_until = Some(Until::from_end(end));
            let mut best_hold: Option<(Timestamp, u32)> = None;
            // The hold is over every receipt of the window from `at` to its end — also
            // those starting later: a record collected under them is held that long
            // (`record_deadline`), so "for how long" must cover it.
            for &(_, _, a, b, rx) in group.iter().filter(|g| g.2 < end && at < g.3) {
                let Some(row) = self.receipt(rx) else { continue };
                if a <= at {
                    e.receipts.push(row.id);
                    if let Some(p) = self.names.purpose_id(row.purpose) {
                        e.purposes.push(p.clone());
                    }
                }
                let _ = b;
                let d = self.deadline_of(row.hold, m, at);
                if best_hold.is_none_or(|(bd, _)| d > bd) {
                    best_hold = Some((d, row.hold));
                }
            }
            e.receipts.sort_unstable();
            e.purposes.sort_unstable();
            e.purposes.dedup();
            e.hold = best_hold.and_then(|(_, h)| self.effective_hold(h, m, at));
            by_pair.insert((r, m), e);
        }
        for &i in &entry.records {
            let Some(rec) = self.ix.records.get(i as usize).filter(|r| r.held(at, known)) else { continue };
            let key = (rec.recipient, rec.metric);
            let e = match by_pair.entry(key) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => {
                    let Some(e) = self.empty_entry(rec.recipient, rec.metric) else { continue };
                    v.insert(e)
                }
            };
            e.records_held += 1;
            e.records_until = Some(e.records_until.map_or(rec.deadline, |d| d.max(rec.deadline)));
        }
        out.entries = by_pair.into_values().collect();
        out
    }

    fn empty_entry(&self, r: u16, m: u16) -> Option<AccessEntry> {
        Some(AccessEntry {
            recipient: self.names.recipient_id(r)?.clone(),
            metric: self.names.metric_id(m)?.clone(),
            window_until: None,
            receipts: Vec::new(),
            purposes: Vec::new(),
            hold: None,
            records_held: 0,
            records_until: None,
        })
    }

    /// `min(receipt hold, metric max hold)` as a duration: whichever ends first from
    /// `start` (as the device's retention tag picks it). Compared by deadline, not with
    /// `Duration::is_within`, which scans calendar years for mixed periods.
    fn effective_hold(&self, hold: u32, m: u16, start: Timestamp) -> Option<confiance::retention::Duration> {
        let h = self.ix.holds.get(hold as usize)?;
        match self.names.metric_max_hold.get(usize::from(m)) {
            Some(max) if max.deadline_from(start).at < h.deadline_from(start).at => Some(max.clone()),
            _ => Some(h.clone()),
        }
    }

    /// What recipient `r` sees of metric `m` at `at`: one stabbing scan of the pair's
    /// posting list prefix, one of its records, and the metric's partitions.
    fn pair_view(&self, r: u16, m: u16, at: Timestamp, known: Timestamp) -> Option<MetricView> {
        self.view_of(r, m, self.pair_counts(r, m, at, known), self.pair_partitions(r, m, at, known))
    }

    /// The subjects' part of [`Self::pair_view`]: one stabbing scan of the pair's posting
    /// list prefix and one of its records.
    pub(super) fn pair_counts(&self, r: u16, m: u16, at: Timestamp, known: Timestamp) -> PairCounts {
        let pair = self.names.pair(r, m);
        let mut in_window: Vec<u32> = Vec::new();
        let mut out = PairCounts::default();
        if let Some(list) = self.ix.postings.get(pair) {
            let n = list.partition_point(|g| g.valid_from <= at);
            for g in list.get(..n).unwrap_or_default() {
                if g.recorded_at <= known {
                    let e = g.end(known);
                    if at < e {
                        in_window.push(g.subject);
                        out.latest = Some(out.latest.map_or(e, |l| l.max(e)));
                    }
                }
            }
        }
        in_window.sort_unstable();
        in_window.dedup();
        let mut holding: Vec<u32> = Vec::new();
        if let Some(list) = self.ix.record_postings.get(pair) {
            let recs = &self.ix.records;
            let n = list.partition_point(|&i| recs.get(i as usize).is_some_and(|x| x.collected_at <= at));
            for rec in list.get(..n).unwrap_or_default().iter().filter_map(|&i| recs.get(i as usize)) {
                if rec.held(at, known) {
                    holding.push(rec.subject);
                    out.records_until = Some(out.records_until.map_or(rec.deadline, |d| d.max(rec.deadline)));
                }
            }
        }
        holding.sort_unstable();
        holding.dedup();
        let n = |x: usize| u64::try_from(x).unwrap_or(u64::MAX);
        out.both = n(count_common(&in_window, &holding));
        out.in_window = n(in_window.len());
        out.holding = n(holding.len());
        out
    }

    /// The partitions of metric `m` in `r`'s audience held at `at`: the part of
    /// [`Self::pair_view`] no subject's facts change.
    pub(super) fn pair_partitions(
        &self,
        r: u16,
        m: u16,
        at: Timestamp,
        known: Timestamp,
    ) -> Vec<PartitionInfo> {
        self.ix
            .metric_partitions
            .get(usize::from(m))
            .map(|ps| {
                ps.iter()
                    .filter_map(|&i| self.ix.partitions.get(i as usize))
                    .filter(|p| p.audience.binary_search(&r).is_ok() && p.held(at, known))
                    .map(|p| PartitionInfo {
                        partition: p.id.to_vec(),
                        bucket_end: p.bucket_end,
                        deadline: p.deadline,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The view of pair (`r`, `m`) from its subjects' counts and its partitions; `None`
    /// when it sees nothing.
    pub(super) fn view_of(
        &self,
        r: u16,
        m: u16,
        c: PairCounts,
        partitions: Vec<PartitionInfo>,
    ) -> Option<MetricView> {
        let subjects = c.in_window + c.holding - c.both;
        if subjects == 0 && partitions.is_empty() {
            return None;
        }
        Some(MetricView {
            recipient: self.names.recipient_id(r)?.clone(),
            metric: self.names.metric_id(m)?.clone(),
            subjects,
            subjects_in_window: c.in_window,
            subjects_with_records: c.holding,
            consent_until: c.latest.map(Until::from_end),
            records_until: c.records_until,
            partitions,
        })
    }

    /// What `recipient` sees at `at` (as known at `as_known_at`), per metric: how many
    /// subjects, the partitions in its audience, until when.
    #[must_use]
    pub fn recipient_view(
        &self,
        recipient: &RecipientId,
        at: Timestamp,
        as_known_at: Option<Timestamp>,
    ) -> RecipientView {
        let known = known_at(as_known_at);
        let mut out = RecipientView { recipient: recipient.clone(), at, as_known_at, metrics: Vec::new() };
        if let Some(r) = self.names.recipient(recipient) {
            for m in 0..self.names.metrics.len() {
                let m = u16::try_from(m).unwrap_or(u16::MAX);
                if self.names.allows_any(r, m)
                    && let Some(v) = self.pair_view(r, m, at, known)
                {
                    out.metrics.push(v);
                }
            }
        }
        out
    }

    /// Who sees a metric, or every metric of a data category, at `at` (as known at
    /// `as_known_at`): per (metric, recipient), as [`Self::recipient_view`] counts.
    #[must_use]
    pub fn who_sees(&self, target: &Target, at: Timestamp, as_known_at: Option<Timestamp>) -> WhoSees {
        let known = known_at(as_known_at);
        let entries = self
            .target_pairs(target)
            .into_iter()
            .filter_map(|(m, r)| self.pair_view(r, m, at, known))
            .collect();
        WhoSees { target: target.clone(), at, as_known_at, entries }
    }

    /// The (metric, recipient) pairs a who-sees of `target` answers about, in its order.
    pub(super) fn target_pairs(&self, target: &Target) -> Vec<(u16, u16)> {
        let metrics: Vec<u16> = match target {
            Target::Metric(m) => self.names.metric(m).into_iter().collect(),
            Target::Category(c) => (0..self.names.metric_category.len())
                .filter(|&i| self.names.metric_category.get(i) == Some(c))
                .filter_map(|i| u16::try_from(i).ok())
                .collect(),
        };
        let mut pairs = Vec::new();
        for m in metrics {
            for r in 0..self.names.recipients.len() {
                let r = u16::try_from(r).unwrap_or(u16::MAX);
                if self.names.allows_any(r, m) {
                    pairs.push((m, r));
                }
            }
        }
        pairs
    }

    fn fact_receipt(&self, rx: u32) -> Option<HistoryEntry> {
        let r = self.receipt(rx)?;
        Some(HistoryEntry {
            recorded_at: r.recorded_at,
            seq: r.seq,
            fact: Fact::ConsentGiven {
                receipt: r.id,
                subject: self.ix.subject_id(r.subject)?,
                recipient: self.names.recipient_id(r.recipient)?.clone(),
                purpose: self.names.purpose_id(r.purpose)?.clone(),
                metrics: r.metrics.iter().filter_map(|&m| self.names.metric_id(m).cloned()).collect(),
                valid_from: r.valid_from,
                valid_until: until_of(r.valid_until),
                hold: self.ix.holds.get(r.hold as usize)?.clone(),
            },
        })
    }

    /// The subject and the recipient a row names, resolved from the index.
    fn parties(&self, subject: u32, recipient: u16) -> Option<(SubjectId, RecipientId)> {
        Some((self.ix.subject_id(subject)?, self.names.recipient_id(recipient)?.clone()))
    }

    fn fact_withdrawal(&self, rx: u32) -> Option<HistoryEntry> {
        let r = self.receipt(rx).filter(|r| r.withdrawn())?;
        let (subject, recipient) = self.parties(r.subject, r.recipient)?;
        let fact = Fact::ConsentWithdrawn { receipt: r.id, subject, recipient, at: r.withdrawn_at };
        Some(HistoryEntry { recorded_at: r.withdrawal_recorded_at, seq: r.wseq, fact })
    }

    fn record_note(&self, i: u32) -> Option<RecordNote> {
        let r = self.ix.records.get(i as usize)?;
        let (subject, recipient) = self.parties(r.subject, r.recipient)?;
        Some(RecordNote {
            record: r.id,
            subject,
            recipient,
            metric: self.names.metric_id(r.metric)?.clone(),
            receipt: self.receipt(r.receipt)?.id,
            collected_at: r.collected_at,
            deadline: r.deadline,
        })
    }

    fn fact_record(&self, i: u32) -> Option<HistoryEntry> {
        let r = self.ix.records.get(i as usize)?;
        Some(HistoryEntry {
            recorded_at: r.recorded_at,
            seq: r.seq,
            fact: Fact::RecordHeld(self.record_note(i)?),
        })
    }

    fn fact_record_purge(&self, i: u32) -> Option<HistoryEntry> {
        let r = self.ix.records.get(i as usize).filter(|r| r.purged())?;
        let (subject, recipient) = self.parties(r.subject, r.recipient)?;
        let fact = Fact::RecordPurged { record: r.id, subject, recipient, at: r.purged_at };
        Some(HistoryEntry { recorded_at: r.purge_recorded_at, seq: r.pseq, fact })
    }

    fn partition_note(&self, i: u32) -> Option<PartitionNote> {
        let p = self.ix.partitions.get(i as usize)?;
        Some(PartitionNote {
            partition: p.id.to_vec(),
            metric: self.names.metric_id(p.metric)?.clone(),
            bucket_end: p.bucket_end,
            audience: p.audience.iter().filter_map(|&r| self.names.recipient_id(r).cloned()).collect(),
            deadline: p.deadline,
        })
    }

    fn disclosure(&self, i: u32) -> Option<(Disclosure, Timestamp, u64)> {
        let d = self.ix.disclosures.get(i as usize)?;
        Some((
            Disclosure {
                kind: d.kind,
                recipient: self.names.recipient_id(d.recipient)?.clone(),
                metric: self.names.metric_id(d.metric)?.clone(),
                purpose: self.names.purpose_id(d.purpose)?.clone(),
                subject: self.ix.subject_id(d.subject)?,
                at: d.at,
                record: d.record,
            },
            d.recorded_at,
            d.seq,
        ))
    }

    fn fact_disclosure(&self, i: u32) -> Option<HistoryEntry> {
        let (d, recorded_at, seq) = self.disclosure(i)?;
        Some(HistoryEntry { recorded_at, seq, fact: Fact::Disclosed(d) })
    }

    /// Every consent fact the ledger holds, in the order it recorded them (by `seq`):
    /// `(receipt, None)` for a receipt, `(receipt, Some(at))` for its withdrawal taking
    /// effect at `at`. What the audit log must cover: one `ConsentGiven` or
    /// `ConsentWithdrawn` event each. `O(n log n)` in receipts, no per-fact allocation.
    #[must_use]
    pub fn consent_facts(&self) -> Vec<(ReceiptId, Option<Timestamp>)> {
        let mut seqs: Vec<(u64, ReceiptId, Option<Timestamp>)> = Vec::with_capacity(self.ix.receipts.len());
        for r in &self.ix.receipts {
            seqs.push((r.seq, r.id, None));
            if r.withdrawn() {
                seqs.push((r.wseq, r.id, Some(r.withdrawn_at)));
            }
        }
        seqs.sort_unstable_by_key(|f| f.0);
        seqs.into_iter().map(|(_, id, at)| (id, at)).collect()
    }

    /// The facts about a subject or a recipient recorded in `[from, to)`, in record
    /// order: receipts, withdrawals, records, purges, partitions (recipients only) and
    /// disclosures.
    #[must_use]
    pub fn history(&self, party: &Party, from: Timestamp, to: Timestamp) -> Vec<HistoryEntry> {
        let mut out: Vec<HistoryEntry> = Vec::new();
        let in_range = |t: Timestamp| from <= t && t < to;
        match party {
            Party::Subject(s) => {
                let Some(e) = self.ix.subject(s).and_then(|s| self.ix.subjects.get(s as usize)) else {
                    return out;
                };
                for &rx in &e.receipts {
                    out.extend(self.fact_receipt(rx));
                    out.extend(self.fact_withdrawal(rx));
                }
                for &i in &e.records {
                    out.extend(self.fact_record(i));
                    out.extend(self.fact_record_purge(i));
                }
                out.extend(e.disclosures.iter().filter_map(|&i| self.fact_disclosure(i)));
                out.retain(|h| in_range(h.recorded_at));
            }
            Party::Recipient(r) => {
                let Some(e) = self.names.recipient(r).and_then(|r| self.ix.recipients.get(usize::from(r)))
                else {
                    return out;
                };
                // Each list is sorted by the record time of its fact: binary-search the range.
                let range = |list: &[u32], time: &dyn Fn(u32) -> Timestamp| {
                    let a = list.partition_point(|&i| time(i) < from);
                    let b = list.partition_point(|&i| time(i) < to);
                    list.get(a..b.max(a)).unwrap_or_default().to_vec()
                };
                let rt = |i: u32| self.receipt(i).map_or(NEVER, |r| r.recorded_at);
                let wt = |i: u32| self.receipt(i).map_or(NEVER, |r| r.withdrawal_recorded_at);
                let ct = |i: u32| self.ix.records.get(i as usize).map_or(NEVER, |r| r.recorded_at);
                let pt = |i: u32| self.ix.records.get(i as usize).map_or(NEVER, |r| r.purge_recorded_at);
                let dt = |i: u32| self.ix.disclosures.get(i as usize).map_or(NEVER, |d| d.recorded_at);
                out.extend(range(&e.receipts, &rt).into_iter().filter_map(|i| self.fact_receipt(i)));
                out.extend(range(&e.withdrawals, &wt).into_iter().filter_map(|i| self.fact_withdrawal(i)));
                out.extend(range(&e.records, &ct).into_iter().filter_map(|i| self.fact_record(i)));
                out.extend(range(&e.purges, &pt).into_iter().filter_map(|i| self.fact_record_purge(i)));
                out.extend(range(&e.disclosures, &dt).into_iter().filter_map(|i| self.fact_disclosure(i)));
                for &i in &e.partitions {
                    let Some(p) = self.ix.partitions.get(i as usize) else { continue };
                    if in_range(p.recorded_at) {
                        out.extend(self.partition_note(i).map(|n| HistoryEntry {
                            recorded_at: p.recorded_at,
                            seq: p.seq,
                            fact: Fact::PartitionHeld(n),
                        }));
                    }
                    if p.purged() && in_range(p.purge_recorded_at) {
                        out.push(HistoryEntry {
                            recorded_at: p.purge_recorded_at,
                            seq: p.pseq,
                            fact: Fact::PartitionPurged { partition: p.id.to_vec(), at: p.purged_at },
                        });
                    }
                }
            }
        }
        out.sort_by_key(|h| (h.recorded_at, h.seq));
        out
    }

    /// Every disclosure that happened in `[from, to)` (valid time) that the consent
    /// valid at its time, as known at its time, did not allow.
    #[must_use]
    pub fn unconsented_disclosures(&self, from: Timestamp, to: Timestamp) -> Vec<UnconsentedDisclosure> {
        self.unconsented_keyed(from, to).into_iter().map(|(_, u)| u).collect()
    }

    /// [`Self::unconsented_disclosures`], each with its place in the answer: (valid
    /// time, `seq`), the order the answer lists them in.
    pub(super) fn unconsented_keyed(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Vec<((Timestamp, u64), UnconsentedDisclosure)> {
        let list = &self.ix.disclosures_by_at;
        let at = |i: u32| self.ix.disclosures.get(i as usize).map_or(NEVER, |d| d.at);
        let a = list.partition_point(|&i| at(i) < from);
        let b = list.partition_point(|&i| at(i) < to).max(a);
        list.get(a..b)
            .unwrap_or_default()
            .iter()
            .filter_map(|&i| {
                let (d, recorded_at, seq) = self.disclosure(i)?;
                let decision =
                    self.check_at(&d.recipient, &d.metric, &d.purpose, &d.subject, d.at, Some(d.at));
                (!decision.allowed())
                    .then_some(((d.at, seq), UnconsentedDisclosure { disclosure: d, recorded_at, decision }))
            })
            .collect()
    }

    /// What was overdue at `now`, as known at `as_known_at` (`None` = now): records and
    /// partitions in the store at `now` (collected or noted by then, not purged by then)
    /// whose hold deadline is at or before `now`. A purge after `now` does not hide a
    /// violation at `now`: asked about a past instant, a late purge stays visible. A
    /// deadline is the first instant the data may no longer be held, so data purged at
    /// its deadline is never overdue. `O(k)` in the records and partitions whose deadline
    /// is at or before `now`, purged or not.
    #[must_use]
    pub fn overdue(&self, now: Timestamp, as_known_at: Option<Timestamp>) -> Overdue {
        let records = self.overdue_records(now, as_known_at).into_iter().map(|(_, n)| n).collect();
        Overdue { now, as_known_at, records, partitions: self.overdue_partitions(now, as_known_at) }
    }

    /// The records of [`Self::overdue`], each with its place in the answer: (deadline,
    /// `seq`). (The answer lists them by deadline, then in the order the index holds
    /// them, which on a ledger loaded whole or written by one process is `seq` order.)
    pub(crate) fn overdue_records(
        &self,
        now: Timestamp,
        as_known_at: Option<Timestamp>,
    ) -> Vec<((Timestamp, u64), RecordNote)> {
        let known = known_at(as_known_at);
        self.ix
            .records_by_deadline
            .range(..=(now, u32::MAX))
            .filter_map(|&(_, i)| {
                let r = self.ix.records.get(i as usize).filter(|r| r.overdue(now, known))?;
                Some(((r.deadline, r.seq), self.record_note(i)?))
            })
            .collect()
    }

    /// The partitions of [`Self::overdue`] (no subject's facts change them).
    pub(crate) fn overdue_partitions(
        &self,
        now: Timestamp,
        as_known_at: Option<Timestamp>,
    ) -> Vec<PartitionNote> {
        let known = known_at(as_known_at);
        self.ix
            .partitions_by_deadline
            .range(..=(now, u32::MAX))
            .filter(|&&(_, i)| self.ix.partitions.get(i as usize).is_some_and(|p| p.overdue(now, known)))
            .filter_map(|&(_, i)| self.partition_note(i))
            .collect()
    }

    /// Who gains or loses access to what from catalogue `a` to `b` ([`super::diff`]),
    /// with, for each removed access, the number of grants in this ledger that named it.
    #[must_use]
    pub fn diff(&self, a: &Catalogue, b: &Catalogue) -> CatalogueDiff {
        let mut d = diff::diff(a, b);
        for removal in &mut d.removed {
            let acc = &removal.access;
            let (Some(r), Some(m), Some(p)) = (
                self.names.recipient(&acc.recipient),
                self.names.metric(&acc.metric),
                self.names.purpose(&acc.purpose),
            ) else {
                continue;
            };
            let list = self.ix.postings.get(self.names.pair(r, m)).map_or(&[][..], Vec::as_slice);
            let n = list.iter().filter(|g| self.receipt(g.receipt).is_some_and(|x| x.purpose == p)).count();
            removal.grants = u64::try_from(n).unwrap_or(u64::MAX);
        }
        d
    }
}

/// What the subjects of one (recipient, metric) pair add to its [`MetricView`]: counts of
/// distinct subjects and the latest ends, which add up (counts) and combine (the later
/// end) over disjoint sets of subjects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct PairCounts {
    in_window: u64,
    holding: u64,
    both: u64,
    latest: Option<Timestamp>,
    records_until: Option<Timestamp>,
}

impl PairCounts {
    /// Adds the counts of a disjoint set of subjects.
    pub(super) fn add(&mut self, o: &Self) {
        let later = |a: Option<Timestamp>, b: Option<Timestamp>| a.max(b);
        self.in_window += o.in_window;
        self.holding += o.holding;
        self.both += o.both;
        self.latest = later(self.latest, o.latest);
        self.records_until = later(self.records_until, o.records_until);
    }
}

fn count_common(a: &[u32], b: &[u32]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        match x.cmp(y) {
            core::cmp::Ordering::Less => i += 1,
            core::cmp::Ordering::Greater => j += 1,
            core::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

impl<C: Borrow<Connection>> ConsentCheck for Ledger<C> {
    /// [`Ledger::check_at`] as known now.
    fn check(
        &self,
        recipient: &RecipientId,
        metric: &MetricId,
        purpose: &PurposeId,
        subject: &SubjectId,
        at: Timestamp,
    ) -> Decision {
        self.check_at(recipient, metric, purpose, subject, at, None)
    }

    /// [`Ledger::enrolled_device`], or the device key itself when it is a single-device
    /// subject's key (the subject id is the hash of that key) and the ledger knows the
    /// subject.
    fn device_subject(&self, device: &confiance::ids::DevicePublicKey, at: Timestamp) -> Option<SubjectId> {
        self.enrolled_device(device, at).ok().or_else(|| {
            let own = SubjectId::of_key(&device.as_subject_key());
            self.ix.subject(&own).is_some().then_some(own)
        })
    }

    fn receipt_terms(&self, receipt: &confiance::ids::ReceiptId) -> Option<crate::ledger::ReceiptTerms> {
        Ledger::receipt_terms(self, receipt)
    }
}

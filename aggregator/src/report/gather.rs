//! Filling a [`ReportData`] from a running [`Aggregator`]: the ledger's consent history,
//! the committed partitions, the retention deadlines and the audit log, verified.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use confiance::Timestamp;
use confiance::catalogue::Privacy;

use super::text::instant;
use super::{
    AccessRow, BudgetRow, EstimateRow, Header, LogStatus, PurposeBasis, RecipientSummary, ReportData,
    RetentionKind, RetentionRow,
};
use crate::audit::{AuditEvent, CheckpointSigner, EventKind, Verifier};
use crate::estimate::{Accumulator, Combined};
use crate::ledger::{Fact, HistoryEntry, Ledger, Party};
use crate::service::{Aggregator, ServiceError};

/// What [`ReportData::gather`] needs besides the aggregator.
#[derive(Clone, Copy, Debug)]
pub struct GatherOptions<'a> {
    /// The report's title.
    pub title: &'a str,
    /// The valid time the report is about: overdue items are those whose deadline is at or
    /// before it.
    pub at: Timestamp,
    /// When the report is generated (also the checkpoint's time).
    pub generated_at: Timestamp,
    /// Signs the checkpoint the audit log is verified against; `None` leaves the log
    /// section out.
    pub signer: Option<&'a CheckpointSigner>,
    /// At most this many access rows: consent windows are grouped into cohorts by day, and
    /// by week, 30 days or 90 days when days would give more rows than this (a cohort's
    /// window starts at its members' earliest start and ends at their latest end).
    pub max_access_rows: usize,
    /// At most this many retention rows for partitions (the overdue records are all
    /// listed): the ones with the nearest deadlines are kept and a note says how many were
    /// left out.
    pub max_partition_rows: usize,
}

impl Default for GatherOptions<'_> {
    fn default() -> Self {
        Self {
            title: "Who sees what, for how long",
            at: Timestamp::EPOCH,
            generated_at: Timestamp::EPOCH,
            signer: None,
            max_access_rows: 400,
            max_partition_rows: 400,
        }
    }
}

/// One consent window before grouping: recipient, metric, start, end, hold in seconds,
/// hold as written.
type Window = (String, String, u64, Option<u64>, u64, String);

impl ReportData {
    /// Everything a report shows, read from `agg`: access windows grouped into cohorts
    /// from the ledger's history, the budget and estimate per anonymous metric over all
    /// committed partitions (no release is made or recorded), partitions and overdue
    /// records with their deadlines, and — when a signer is given — the audit log fully
    /// recomputed against a fresh signed checkpoint.
    ///
    /// ```
    /// use confiance::catalogue::Catalogue;
    /// use confiance::Timestamp;
    /// use confiance_aggregator::keys::KeyStore;
    /// use confiance_aggregator::report::{GatherOptions, ReportData};
    /// use confiance_aggregator::service::{Aggregator, AggregatorConfig};
    ///
    /// let catalogue = Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?;
    /// let agg = Aggregator::in_memory(catalogue, KeyStore::new(86_400), AggregatorConfig::default())?;
    /// let at = Timestamp::from_secs(1_800_000_000);
    /// let data = ReportData::gather(&agg, &GatherOptions { at, generated_at: at, ..GatherOptions::default() })?;
    /// assert!(data.access.is_empty() && data.estimates.is_empty());
    /// assert_eq!(data.budgets.len(), 8); // one row per anonymous metric
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ServiceError`] when the store cannot be read.
    pub fn gather(agg: &Aggregator, opts: &GatherOptions<'_>) -> Result<Self, ServiceError> {
        let states = agg.partition_states();
        let part = LedgerPart::of(agg.ledger(), agg.catalogue(), opts, &held_now(&states));
        Self::assemble(agg, opts, &states, vec![part])
    }

    /// [`Self::gather`], the same report byte for byte, reading a lazily loaded ledger
    /// ([`Ledger::open_postgres_lazy`](crate::ledger::Ledger::open_postgres_lazy)) a page
    /// of subjects at a time ([`Ledger::scan_pages_of_everything`](crate::ledger::Ledger::scan_pages_of_everything)):
    /// its memory is one page's facts plus the report's own rows, whatever the ledger's
    /// size, and the subjects it keeps loaded are left as they were. On any other
    /// ledger, [`Self::gather`].
    ///
    /// ```
    /// use confiance::catalogue::Catalogue;
    /// use confiance::Timestamp;
    /// use confiance_aggregator::keys::KeyStore;
    /// use confiance_aggregator::report::{GatherOptions, ReportData};
    /// use confiance_aggregator::service::{Aggregator, AggregatorConfig};
    ///
    /// let catalogue = Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?;
    /// let mut agg = Aggregator::in_memory(catalogue, KeyStore::new(86_400), AggregatorConfig::default())?;
    /// let at = Timestamp::from_secs(1_800_000_000);
    /// let opts = GatherOptions { at, generated_at: at, ..GatherOptions::default() };
    /// assert_eq!(ReportData::gather_paged(&mut agg, &opts)?, ReportData::gather(&agg, &opts)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::gather`], and [`ServiceError::Ledger`] when the shared ledger cannot be read.
    pub fn gather_paged(agg: &mut Aggregator, opts: &GatherOptions<'_>) -> Result<Self, ServiceError> {
        let states = agg.partition_states();
        let held = held_now(&states);
        let cat = agg.catalogue().clone();
        let parts = agg.ledger_mut().scan_pages_of_everything(|l| LedgerPart::of(l, &cat, opts, &held))?;
        Self::assemble(agg, opts, &states, parts)
    }

    /// The report from the ledger's parts (one per page) and the rest of `agg`.
    fn assemble(
        agg: &Aggregator,
        opts: &GatherOptions<'_>,
        states: &BTreeMap<crate::store::PartitionKey, (u64, Vec<u8>)>,
        parts: Vec<LedgerPart>,
    ) -> Result<Self, ServiceError> {
        let cat = agg.catalogue();
        let mut data = Self::new(Header {
            title: opts.title.to_owned(),
            catalogue_name: cat.name().to_owned(),
            catalogue_version: cat.version(),
            catalogue_digest_hex: cat.digest().to_string(),
            generated_at: opts.generated_at,
            at: opts.at,
            as_known_at: None,
            horizon: None,
        });
        let mut whole = LedgerPart::new(cat, opts.max_access_rows);
        for p in parts {
            whole.add(p);
        }
        let LedgerPart { cohorts, recipients, partitions, records } = whole;
        data.access = cohorts.rows();
        data.summary = summaries(agg, opts.at, recipients)?;
        for (id, m) in cat.metrics() {
            let Privacy::Ldp { epsilon, budget, .. } = &m.privacy else { continue };
            let mine = || states.iter().filter(|(k, _)| &k.metric == id);
            data.budgets.push(BudgetRow {
                metric: id.to_string(),
                epsilon_per_report: epsilon.to_f64(),
                budget_per_period: budget.as_ref().map_or(epsilon.to_f64(), |b| b.epsilon.to_f64()),
                period_secs: budget.as_ref().and_then(|b| b.period.fixed_secs()).unwrap_or(86_400),
                reports_received: mine().map(|(_, (n, _))| *n).sum(),
                spent: None,
            });
            // Buckets with different OLH pool keys do not merge: estimated apart, then
            // combined by their counts (one merge for every other mechanism).
            let Some(mech) = m.mechanism() else { continue };
            let mut all = Combined::new(&mech);
            for (_, (_, bytes)) in mine() {
                let a = Accumulator::from_bytes(bytes).map_err(|_| ServiceError::CorruptPartition)?;
                all.add(&a).map_err(|_| ServiceError::CorruptPartition)?;
            }
            if all.count() == 0 {
                continue;
            }
            let est = all.estimate();
            let labels = m.kind.labels();
            for (i, p) in est.values.iter().enumerate() {
                data.estimates.push(EstimateRow {
                    metric: id.to_string(),
                    label: labels.get(i).map_or_else(
                        || if labels.is_empty() { "mean".into() } else { i.to_string() },
                        |l| (*l).to_owned(),
                    ),
                    estimate: p.value,
                    ci95_low: p.ci95_low,
                    ci95_high: p.ci95_high,
                    std_error: p.std_error,
                    true_value: None,
                    n: est.n,
                });
            }
        }
        data.retention = retention(partitions, records, opts.max_partition_rows, &mut data.notes);
        if let Some(signer) = opts.signer {
            data.log = Some(log_status(agg, signer, opts.generated_at)?);
        }
        Ok(data)
    }
}

/// The reports each partition holds now, by partition id.
fn held_now(states: &BTreeMap<crate::store::PartitionKey, (u64, Vec<u8>)>) -> HashMap<Vec<u8>, u64> {
    states.iter().map(|(k, (n, _))| (k.to_bytes(), *n)).collect()
}

/// Consent windows grouped into cohorts at each grain of [`GRAINS`], counted as they come;
/// a grain whose cohorts pass the row limit is dropped (cohorts only grow: it will not
/// be the one shown), except the coarsest, shown when every grain passes it.
struct Cohorts {
    max: usize,
    by_grain: Vec<Option<BTreeMap<Window, u64>>>,
}

/// Day, week, 30 days, 90 days: the first grain giving at most the row limit is shown.
const GRAINS: [u64; 4] = [86_400, 7 * 86_400, 30 * 86_400, 90 * 86_400];

impl Cohorts {
    fn new(max: usize) -> Self {
        Self { max, by_grain: GRAINS.iter().map(|_| Some(BTreeMap::new())).collect() }
    }

    /// Counts `n` windows of `w`'s cohort at `grain` (index `g`), dropping a grain that
    /// passed the limit.
    fn count(&mut self, g: usize, key: Window, n: u64) {
        let last = g + 1 == GRAINS.len();
        let Some(Some(map)) = self.by_grain.get_mut(g) else { return };
        *map.entry(key).or_insert(0) += n;
        if !last && map.len() > self.max {
            self.by_grain[g] = None;
        }
    }

    fn add_window(&mut self, w: &Window) {
        for (g, &grain) in GRAINS.iter().enumerate() {
            self.count(g, widen(w, grain), 1);
        }
    }

    fn add(&mut self, o: Self) {
        for (g, theirs) in o.by_grain.into_iter().enumerate() {
            match theirs {
                None => {
                    if g + 1 < GRAINS.len() {
                        self.by_grain[g] = None;
                    }
                }
                Some(map) => {
                    for (k, n) in map {
                        self.count(g, k, n);
                    }
                }
            }
        }
    }

    fn rows(self) -> Vec<AccessRow> {
        let cohorts = self
            .by_grain
            .into_iter()
            .flatten()
            .reduce(|chosen, next| if chosen.len() <= self.max { chosen } else { next })
            .unwrap_or_default();
        cohorts
            .into_iter()
            .map(|((recipient, metric, from, end, hold_secs, hold), n)| AccessRow {
                recipient,
                metric,
                subject: format!("{n} subject{}", if n == 1 { "" } else { "s" }),
                window_start: Timestamp::from_secs(from),
                window_end: end.map(Timestamp::from_secs),
                hold_secs,
                hold: Some(hold),
            })
            .collect()
    }
}

/// A window widened to `grain` seconds (start rounded down, end rounded up, so a cohort's
/// window covers each of its members').
fn widen((r, m, from, end, hold, written): &Window, grain: u64) -> Window {
    let up = |e: u64| e.div_ceil(grain).saturating_mul(grain);
    (r.clone(), m.clone(), from - from % grain, end.map(up), *hold, written.clone())
}

/// What a page of the ledger says of one recipient, for its summary: every field adds
/// up (sets unite, counts add, the earliest start and latest end win) over pages holding
/// disjoint facts.
#[derive(Default)]
struct RecipientPart {
    metrics: BTreeSet<String>,
    purposes: BTreeSet<confiance::ids::PurposeId>,
    from: Option<Timestamp>,
    until: Option<Timestamp>,
    open: bool,
    /// The longest receipt hold: its length, its fact's place in the history (record
    /// time, `seq`: the first of equal lengths wins), as written.
    longest: Option<(u64, (Timestamp, u64), String)>,
    records_held: u64,
    purged: u64,
    disclosed: u64,
    partitions_held: u64,
    overdue: u64,
}

impl RecipientPart {
    fn add(&mut self, o: Self) {
        self.metrics.extend(o.metrics);
        self.purposes.extend(o.purposes);
        self.from = match (self.from, o.from) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.until = self.until.max(o.until);
        self.open |= o.open;
        if let Some(l) = o.longest
            && self
                .longest
                .as_ref()
                .is_none_or(|m| (l.0, core::cmp::Reverse(l.1)) > (m.0, core::cmp::Reverse(m.1)))
        {
            self.longest = Some(l);
        }
        self.records_held += o.records_held;
        self.purged += o.purged;
        self.disclosed += o.disclosed;
        self.partitions_held += o.partitions_held;
        self.overdue += o.overdue;
    }
}

/// What a page of the ledger adds to a report ([`Ledger::scan_pages_of_everything`](crate::ledger::Ledger::scan_pages_of_everything)).
struct LedgerPart {
    cohorts: Cohorts,
    /// One per recipient of the catalogue, in its order.
    recipients: Vec<RecipientPart>,
    /// Retention rows of partitions (each partition's facts are in one page).
    partitions: Vec<RetentionRow>,
    /// Retention rows of overdue records, with their place in the overdue answer
    /// (deadline, `seq`).
    records: Vec<((Timestamp, u64), RetentionRow)>,
}

impl LedgerPart {
    fn new(cat: &confiance::catalogue::Catalogue, max_access_rows: usize) -> Self {
        Self {
            cohorts: Cohorts::new(max_access_rows),
            recipients: cat.recipients().map(|_| RecipientPart::default()).collect(),
            partitions: Vec::new(),
            records: Vec::new(),
        }
    }

    fn add(&mut self, o: Self) {
        self.cohorts.add(o.cohorts);
        for (mine, theirs) in self.recipients.iter_mut().zip(o.recipients) {
            mine.add(theirs);
        }
        self.partitions.extend(o.partitions);
        self.records.extend(o.records);
    }

    /// What `l` (a page, or the whole ledger) says: each recipient's history read once,
    /// its view at `at`, and what is overdue at `at`.
    fn of(
        l: &Ledger,
        cat: &confiance::catalogue::Catalogue,
        opts: &GatherOptions<'_>,
        held_now: &HashMap<Vec<u8>, u64>,
    ) -> Self {
        let at = opts.at;
        let mut part = Self::new(cat, opts.max_access_rows);
        let overdue_records = l.overdue_records(at, None);
        let overdue_partitions = l.overdue_partitions(at, None);
        let (mut partition_purged, mut record_purged, mut receipt_hold) =
            (HashMap::new(), HashMap::new(), HashMap::new());
        let mut views = Vec::new();
        for ((rid, _), summary) in cat.recipients().zip(&mut part.recipients) {
            let hist = l.history(&Party::Recipient(rid.clone()), Timestamp::EPOCH, Timestamp::MAX);
            for h in &hist {
                match &h.fact {
                    Fact::PartitionPurged { partition, at: t } => {
                        partition_purged.insert(partition.clone(), *t);
                    }
                    Fact::RecordPurged { record, at: t, .. } => {
                        record_purged.insert(*record, *t);
                    }
                    Fact::ConsentGiven { receipt, hold, .. } => {
                        receipt_hold.insert(*receipt, hold.clone());
                    }
                    _ => {}
                }
            }
            for w in windows(rid, &hist) {
                part.cohorts.add_window(&w);
            }
            let view = l.recipient_view(rid, at, None);
            *summary = recipient_part(&hist, &view, at);
            summary.overdue = (overdue_records.iter().filter(|(_, r)| &r.recipient == rid).count()
                + overdue_partitions.iter().filter(|p| p.audience.contains(rid)).count())
                as u64;
            views.push(view);
        }
        // Held past their deadline at `at` (whether purged since or not), then held within it.
        let mut seen = BTreeSet::new();
        let mut push = |partition: &[u8], metric: &str, bucket_end: Timestamp, deadline: Timestamp| {
            if !seen.insert(partition.to_vec()) {
                return;
            }
            let key = postcard::from_bytes::<crate::store::PartitionKey>(partition).ok();
            part.partitions.push(RetentionRow {
                // Metric, bucket and audience: partitions of one bucket differ by audience.
                item: key.as_ref().map_or_else(
                    || format!("{metric} bucket ending {}", instant(bucket_end)),
                    |k| {
                        let audience: Vec<&str> = k.audience.iter().map(|r| r.as_str()).collect();
                        format!("{} {} / {}", k.metric, instant(k.bucket_start), audience.join(", "))
                    },
                ),
                kind: RetentionKind::Partition,
                metric: metric.to_owned(),
                records: held_now.get(partition).copied(),
                collected_from: key.as_ref().map(|k| k.bucket_start),
                deadline,
                hold: key.as_ref().map(|k| k.hold.to_string()),
                purged_at: partition_purged.get(partition).copied(),
                overdue_by_secs: (deadline <= at).then(|| at.as_secs() - deadline.as_secs()),
            });
        };
        for p in &overdue_partitions {
            push(&p.partition, p.metric.as_str(), p.bucket_end, p.deadline);
        }
        for view in &views {
            for m in &view.metrics {
                for p in &m.partitions {
                    push(&p.partition, m.metric.as_str(), p.bucket_end, p.deadline);
                }
            }
        }
        for (key, r) in overdue_records {
            // The deadline is set by the shorter of the receipt's hold and the metric's
            // maximum: name the one that set it, as written.
            let max_hold = cat.metric(&r.metric).map(|m| m.max_hold.clone());
            let hold = [receipt_hold.get(&r.receipt).cloned(), max_hold]
                .into_iter()
                .flatten()
                .find(|h| h.deadline_from(r.collected_at).at == r.deadline)
                .map(|h| h.to_string());
            part.records.push((
                key,
                RetentionRow {
                    item: format!("{} record {}", r.metric, hex(&r.record)),
                    kind: RetentionKind::Records,
                    metric: r.metric.to_string(),
                    records: Some(1),
                    collected_from: Some(r.collected_at),
                    deadline: r.deadline,
                    hold,
                    purged_at: record_purged.get(&r.record).copied(),
                    overdue_by_secs: Some(at.as_secs().saturating_sub(r.deadline.as_secs())),
                },
            ));
        }
        part
    }
}

/// The retention table as of `at`: every partition held at `at` (whoever may see it)
/// and every record overdue at `at`, each with the instant a later purge removed it.
/// A purge after `at` does not hide what was held, or overdue, at `at` (issue #19:
/// the table showed the state after a later purge while the badge spoke of the
/// report instant).
fn retention(
    mut parts: Vec<RetentionRow>,
    mut records: Vec<((Timestamp, u64), RetentionRow)>,
    max_partition_rows: usize,
    notes: &mut Vec<String>,
) -> Vec<RetentionRow> {
    parts.sort_by(|a, b| (a.deadline, &a.item).cmp(&(b.deadline, &b.item)));
    if parts.len() > max_partition_rows {
        let left = parts.len() - max_partition_rows;
        parts.truncate(max_partition_rows);
        notes.push(format!(
            "{left} further partitions with later deadlines are not listed (the {max_partition_rows} nearest are)."
        ));
    }
    records.sort_by_key(|&(k, _)| k);
    parts.extend(records.into_iter().map(|(_, r)| r));
    parts
}

/// When each receipt of a history was withdrawn.
fn withdrawals(hist: &[HistoryEntry]) -> HashMap<confiance::ids::ReceiptId, Timestamp> {
    hist.iter()
        .filter_map(|h| match &h.fact {
            Fact::ConsentWithdrawn { receipt, at, .. } => Some((*receipt, *at)),
            _ => None,
        })
        .collect()
}

/// One recipient's consent windows, one per grant, from its history.
fn windows(r: &confiance::ids::RecipientId, hist: &[HistoryEntry]) -> Vec<Window> {
    let withdrawn = withdrawals(hist);
    let mut out = Vec::new();
    for h in hist {
        let Fact::ConsentGiven { receipt, metrics, valid_from, valid_until, hold, .. } = &h.fact else {
            continue;
        };
        let end = match (valid_until, withdrawn.get(receipt)) {
            (Some(u), Some(w)) => Some((*u).min(*w)),
            (u, w) => u.or(w.copied()),
        };
        let hold_secs = hold
            .deadline_from(*valid_from)
            .at
            .as_secs()
            .saturating_sub(valid_from.as_secs())
            .min(10 * 365 * 86_400);
        for m in metrics {
            out.push((
                r.to_string(),
                m.to_string(),
                valid_from.as_secs(),
                end.map(Timestamp::as_secs),
                hold_secs,
                hold.to_string(),
            ));
        }
    }
    out
}

/// What one recipient's history and view (of a page, or of the whole ledger) say for its
/// summary at `at` (its overdue count aside).
fn recipient_part(
    hist: &[HistoryEntry],
    view: &crate::ledger::RecipientView,
    at: Timestamp,
) -> RecipientPart {
    let mut out = RecipientPart::default();
    let withdrawn = withdrawals(hist);
    let (mut held, mut purged_records) = (BTreeSet::new(), BTreeSet::new());
    for h in hist {
        match &h.fact {
            Fact::ConsentGiven { receipt, metrics: ms, purpose, valid_from, valid_until, hold, .. } => {
                out.metrics.extend(ms.iter().map(ToString::to_string));
                out.purposes.insert(purpose.clone());
                out.from = Some(out.from.map_or(*valid_from, |f| f.min(*valid_from)));
                let end = match (valid_until, withdrawn.get(receipt)) {
                    (Some(u), Some(w)) => Some((*u).min(*w)),
                    (u, w) => u.or(w.copied()),
                };
                match end {
                    None => out.open = true,
                    Some(e) => out.until = Some(out.until.map_or(e, |u| u.max(e))),
                }
                let len = hold.deadline_from(*valid_from).at.as_secs().saturating_sub(valid_from.as_secs());
                if out.longest.as_ref().is_none_or(|(l, ..)| len > *l) {
                    out.longest = Some((len, (h.recorded_at, h.seq), hold.to_string()));
                }
            }
            Fact::PartitionHeld(n) => {
                out.metrics.insert(n.metric.to_string());
            }
            Fact::RecordHeld(n) if n.collected_at <= at => {
                held.insert(n.record);
            }
            Fact::RecordPurged { record, at: t, .. } => {
                if *t <= at {
                    held.remove(record);
                }
                purged_records.insert(*record);
            }
            Fact::PartitionPurged { .. } => out.purged += 1,
            Fact::Disclosed(d) if d.at <= at && d.record.is_some() => out.disclosed += 1,
            _ => {}
        }
    }
    out.metrics.extend(view.metrics.iter().map(|m| m.metric.to_string()));
    out.partitions_held = view.metrics.iter().map(|m| m.partitions.len() as u64).sum();
    out.records_held = held.len() as u64;
    out.purged += purged_records.len() as u64;
    out
}

/// One plain-language summary per recipient of the catalogue, at `at`, from what the
/// ledger says of each (`parts`, in the catalogue's order) and the releases the audit
/// log holds.
fn summaries(
    agg: &Aggregator,
    at: Timestamp,
    parts: Vec<RecipientPart>,
) -> Result<Vec<RecipientSummary>, ServiceError> {
    let cat = agg.catalogue();
    let releases = agg
        .store()
        .audit_store()
        .events_of_kind(&[EventKind::Release])
        .map_err(|e| ServiceError::Store(e.into()))?;
    let mut out = Vec::new();
    for ((rid, rec), part) in cat.recipients().zip(parts) {
        let RecipientPart { metrics, mut purposes, from, until, open, longest, .. } = part;
        let mut longest = longest.map(|(len, _, hold)| (len, hold));
        // Anonymous metrics carry no receipt in a recipient's history: their purposes are
        // the catalogue's.
        for m in &metrics {
            if let Ok(mid) = m.parse::<confiance::ids::MetricId>()
                && let Some(meta) = cat.metric(&mid)
                && meta.is_anonymous()
            {
                purposes.extend(meta.purposes.iter().cloned());
                let h = &meta.max_hold;
                let len = h.deadline_from(at).at.as_secs().saturating_sub(at.as_secs());
                if longest.as_ref().is_none_or(|(l, _)| len > *l) {
                    longest = Some((len, h.to_string()));
                }
            }
        }
        out.push(RecipientSummary {
            recipient: rid.to_string(),
            name: rec.name.clone(),
            role: serde_json::to_value(rec.role).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
            metrics: metrics.into_iter().collect(),
            purposes: purposes
                .iter()
                .map(|p| PurposeBasis {
                    purpose: p.to_string(),
                    legal_basis: cat
                        .purpose(p)
                        .and_then(|x| serde_json::to_value(x.legal_basis).ok())
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                })
                .collect(),
            from,
            until: if open { None } else { until },
            open_until_withdrawn: open,
            longest_hold: longest.map(|(_, h)| h),
            partitions_held: part.partitions_held,
            records_held: part.records_held,
            releases: releases
                .iter()
                .filter(|e| matches!(&e.event, AuditEvent::Release { recipient, at: t, .. } if recipient == rid && *t <= at))
                .count() as u64,
            records_disclosed: part.disclosed,
            overdue: part.overdue,
            purged: part.purged,
        });
    }
    Ok(out)
}

/// A fresh checkpoint signed by `signer`, and every event recomputed against it.
fn log_status(
    agg: &Aggregator,
    signer: &CheckpointSigner,
    now: Timestamp,
) -> Result<LogStatus, ServiceError> {
    let log = agg.store().audit_log()?;
    let cp = log.checkpoint(signer, now);
    let (events, verdict) =
        match (log.export(log.size()), Verifier::new(signer.origin(), signer.verifying_key())) {
            (Ok(events), Ok(verifier)) => {
                let verdict =
                    verifier.audit(&cp, &events).and_then(|()| log.check_nodes()).map_err(|e| e.to_string());
                (events, verdict)
            }
            (Err(e), _) => (Vec::new(), Err(format!("export failed: {e}"))),
            (_, Err(e)) => (Vec::new(), Err(format!("no verifier for the signer: {e}"))),
        };
    Ok(LogStatus {
        tree_size: log.size(),
        root_hex: hex(cp.checkpoint().root()),
        checkpoint_verified: verdict.is_ok(),
        consistency_verified: None,
        inclusion_checked: events.len() as u64,
        inclusion_failed: u64::from(verdict.is_err()),
        message: verdict.map_or_else(
            |e| format!("audit failed: {e}"),
            |()| format!("every one of the {} events recomputed to the signed root", events.len()),
        ),
        signer_key_hex: Some(hex(signer.verifying_key().as_bytes())),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

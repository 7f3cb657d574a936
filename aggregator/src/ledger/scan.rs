//! Questions across subjects on a lazily loaded ledger, in bounded memory: the subjects a
//! question concerns are read a page at a time (in id order, through an index: a
//! [`Scan`]), each page into a scratch index of its own that the in-memory query answers
//! from and that is dropped before the next page; the partial answers merge into the
//! whole ledger's answer (counts add, lists merge in the full answer's order). The
//! in-memory queries stay the one definition of each answer (docs/scaling.md). Answers
//! are kept for the change sequence they were read at ([`Memo`]).

use std::borrow::Borrow;
use std::collections::HashMap;

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use rusqlite::Connection;

use super::answer::{CatalogueDiff, Overdue, Target, UnconsentedDisclosure, WhoSees};
use super::index::Index;
use super::query::PairCounts;
use super::store::{self, Scan, Select};
use super::{Ledger, LedgerError, to_i64};

/// The subjects a page reads when the host sets none ([`Ledger::set_scan_chunk`]).
pub const DEFAULT_SCAN_CHUNK: usize = 50_000;

/// At most this many answers are kept ([`Memo`]); past it they are all dropped.
const MEMO_MAX: usize = 64;

/// The answers of questions read page by page, kept for the change sequence they were
/// read at: each is a function of the question and of the facts below that `seq`
/// (committed, never changed), so it is exact for as long as the index's change sequence
/// has not moved, and dropped when it moves (a [`Ledger::refresh`] that found facts, or
/// a write). A repeated question on a quiet ledger then costs no read.
#[derive(Debug, Default)]
pub(super) struct Memo {
    seq: u64,
    answers: HashMap<String, Memoized>,
    hits: u64,
}

#[derive(Clone, Debug)]
enum Memoized {
    WhoSees(WhoSees),
    Overdue(Overdue),
    Unconsented(Vec<UnconsentedDisclosure>),
    Diff(CatalogueDiff),
}

/// A time as a bound in SQL: its seconds, or `i64::MAX` past them (never, stored as a
/// negative number, compares as after every stored time).
fn bound(t: Timestamp) -> i64 {
    i64::try_from(t.as_secs()).unwrap_or(i64::MAX)
}

impl<C: Borrow<Connection>> Ledger<C> {
    /// How many subjects a question across subjects reads at a time on a lazily loaded
    /// ledger ([`Self::scan_who_sees`] and the others): its memory is about that many
    /// subjects' facts, whatever the ledger's size.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?;
    /// let mut ledger = Ledger::in_memory(catalogue)?;
    /// assert_eq!(ledger.scan_chunk(), 50_000);
    /// ledger.set_scan_chunk(0); // at least one subject a page
    /// assert_eq!(ledger.scan_chunk(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub const fn scan_chunk(&self) -> usize {
        self.scan_chunk
    }

    /// Sets [`Self::scan_chunk`] (at least 1).
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?;
    /// let mut ledger = Ledger::in_memory(catalogue)?;
    /// ledger.set_scan_chunk(1_000);
    /// assert_eq!(ledger.scan_chunk(), 1_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_scan_chunk(&mut self, subjects: usize) {
        self.scan_chunk = subjects.max(1);
    }

    /// How many questions across subjects were answered from the memo of answers read
    /// at the current change sequence, without reading a page (lazily loaded ledgers
    /// only: any other answers from memory).
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?;
    /// let ledger = Ledger::in_memory(catalogue)?;
    /// assert_eq!(ledger.scan_memo_hits(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub const fn scan_memo_hits(&self) -> u64 {
        self.memo.hits
    }

    /// Whether answers may be kept and reused now: a lazy ledger outside a transaction
    /// (inside one the index holds facts not committed).
    fn memo_usable(&mut self) -> bool {
        if self.lazy.is_none() || self.shared.as_ref().is_some_and(|s| s.in_transaction()) {
            return false;
        }
        if self.memo.seq != self.ix.next_seq {
            self.memo.answers.clear();
            self.memo.seq = self.ix.next_seq;
        }
        true
    }

    /// The answer kept for `key` at the current change sequence, if any.
    fn memo_get(&mut self, key: &str) -> Option<Memoized> {
        if !self.memo_usable() {
            return None;
        }
        let found = self.memo.answers.get(key).cloned();
        self.memo.hits += u64::from(found.is_some());
        found
    }

    /// Keeps `answer` for `key` at the current change sequence.
    fn memo_put(&mut self, key: String, answer: Memoized) {
        if self.memo_usable() {
            if self.memo.answers.len() >= MEMO_MAX {
                self.memo.answers.clear();
            }
            self.memo.answers.insert(key, answer);
        }
    }

    /// Calls `f` on this ledger with its index replaced, page after page, by the facts
    /// (up to the index's change sequence) of the subjects `scan` finds, and returns what
    /// each call returned. The ledger's own index — its loaded subjects, its partitions —
    /// is put back after each call, untouched. `None` on a ledger that is not lazy.
    fn scan_pages<T>(
        &mut self,
        scan: Scan<'_>,
        mut f: impl FnMut(&Self) -> T,
    ) -> Result<Option<Vec<T>>, LedgerError> {
        let (true, Some(shared)) = (self.lazy.is_some(), &self.shared) else { return Ok(None) };
        let to = to_i64(self.ix.next_seq);
        let mut after: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        loop {
            let page = shared.source().subjects_page(scan, &after, self.scan_chunk, to)?;
            let Some(last) = page.last() else { break };
            after.clone_from(last);
            let keys: Vec<&[u8]> = page.iter().map(Vec::as_slice).collect();
            let mut scratch = Index::new(&self.names);
            store::load_into(
                shared.source(),
                &self.names,
                &mut scratch,
                Select::Subjects(&keys, to),
                None,
                true,
            )?;
            scratch.next_seq = self.ix.next_seq;
            let own = core::mem::replace(&mut self.ix, scratch);
            out.push(f(self));
            self.ix = own;
            if page.len() < self.scan_chunk {
                break;
            }
        }
        Ok(Some(out))
    }

    /// Calls `f` on pages that together hold every receipt, withdrawal, record, purge,
    /// disclosure and partition of the ledger, each in exactly one page: on a lazily
    /// loaded ledger, its subjects (those with a receipt or a disclosure)
    /// [`Self::scan_chunk`] at a time, then its partitions alone; on any other ledger,
    /// once, on the whole of it. What a question over the whole ledger folds its answer
    /// from (the auditor report), in bounded memory; its parts must add up over the
    /// pages. The loaded subjects are left as they were.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?;
    /// let mut ledger = Ledger::in_memory(catalogue)?;
    /// let receipts: Vec<u64> = ledger.scan_pages_of_everything(|page| page.stats().receipts)?;
    /// assert_eq!(receipts, [0]); // one page: the ledger itself
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::scan_who_sees`].
    pub fn scan_pages_of_everything<T>(
        &mut self,
        mut f: impl FnMut(&Self) -> T,
    ) -> Result<Vec<T>, LedgerError> {
        let Some(mut pages) = self.scan_pages(Scan::All, &mut f)? else { return Ok(vec![f(self)]) };
        let mut partitions = Index::new(&self.names);
        for p in &self.ix.partitions {
            partitions.add_partition(p.clone());
        }
        partitions.next_seq = self.ix.next_seq;
        let own = core::mem::replace(&mut self.ix, partitions);
        pages.push(f(self));
        self.ix = own;
        Ok(pages)
    }

    /// [`Self::who_sees`] as the fully loaded ledger answers it, on any ledger: on a
    /// lazily loaded one, the subjects with a receipt covering a metric of `target` are
    /// read [`Self::scan_chunk`] at a time and not kept (the loaded subjects are left as
    /// they were); the partitions are the ledger's own.
    ///
    /// ```
    /// # use confiance::{Timestamp, catalogue::Catalogue};
    /// # use confiance_aggregator::ledger::{Ledger, Target};
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?;
    /// let mut ledger = Ledger::in_memory(catalogue)?;
    /// let target = Target::Metric("thermostat.setpoint".parse()?);
    /// let at = Timestamp::from_secs(1_000);
    /// assert_eq!(ledger.scan_who_sees(&target, at, None)?, ledger.who_sees(&target, at, None));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LedgerError::Shared`], [`LedgerError::Corrupt`] when the shared ledger cannot be
    /// read (nothing is changed).
    pub fn scan_who_sees(
        &mut self,
        target: &Target,
        at: Timestamp,
        as_known_at: Option<Timestamp>,
    ) -> Result<WhoSees, LedgerError> {
        let key = format!("who {target:?} {at:?} {as_known_at:?}");
        if let Some(Memoized::WhoSees(w)) = self.memo_get(&key) {
            return Ok(w);
        }
        let known = as_known_at.unwrap_or(Timestamp::MAX);
        let pairs = self.target_pairs(target);
        let mut metrics: Vec<&str> = Vec::new();
        for &(m, _) in &pairs {
            if let Some(id) = self.names.metric_id(m)
                && metrics.last() != Some(&id.as_str())
            {
                metrics.push(id.as_str());
            }
        }
        let metrics: Vec<String> = metrics.into_iter().map(str::to_owned).collect();
        let refs: Vec<&str> = metrics.iter().map(String::as_str).collect();
        let pages = self.scan_pages(Scan::Metrics(&refs), |l| {
            pairs.iter().map(|&(m, r)| l.pair_counts(r, m, at, known)).collect::<Vec<_>>()
        })?;
        let Some(pages) = pages else { return Ok(self.who_sees(target, at, as_known_at)) };
        let mut sum = vec![PairCounts::default(); pairs.len()];
        for page in &pages {
            for (s, c) in sum.iter_mut().zip(page) {
                s.add(c);
            }
        }
        let entries = pairs
            .iter()
            .zip(sum)
            .filter_map(|(&(m, r), c)| self.view_of(r, m, c, self.pair_partitions(r, m, at, known)))
            .collect();
        let out = WhoSees { target: target.clone(), at, as_known_at, entries };
        self.memo_put(key, Memoized::WhoSees(out.clone()));
        Ok(out)
    }

    /// [`Self::overdue`] as the fully loaded ledger answers it, on any ledger: on a
    /// lazily loaded one, the subjects with a record past its deadline at `now` and not
    /// purged by then (as known at `as_known_at`) are read [`Self::scan_chunk`] at a time
    /// through the index on deadlines, and not kept; the partitions are the ledger's own.
    ///
    /// ```
    /// # use confiance::{Timestamp, catalogue::Catalogue};
    /// # use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?;
    /// let mut ledger = Ledger::in_memory(catalogue)?;
    /// let now = Timestamp::from_secs(1_000);
    /// assert_eq!(ledger.scan_overdue(now, None)?, ledger.overdue(now, None));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::scan_who_sees`].
    pub fn scan_overdue(
        &mut self,
        now: Timestamp,
        as_known_at: Option<Timestamp>,
    ) -> Result<Overdue, LedgerError> {
        let key = format!("overdue {now:?} {as_known_at:?}");
        if let Some(Memoized::Overdue(o)) = self.memo_get(&key) {
            return Ok(o);
        }
        let scan = Scan::Overdue { now: bound(now), known: bound(as_known_at.unwrap_or(Timestamp::MAX)) };
        let Some(pages) = self.scan_pages(scan, |l| l.overdue_records(now, as_known_at))? else {
            return Ok(self.overdue(now, as_known_at));
        };
        let mut records: Vec<_> = pages.into_iter().flatten().collect();
        records.sort_by_key(|&(k, _)| k);
        let out = Overdue {
            now,
            as_known_at,
            records: records.into_iter().map(|(_, n)| n).collect(),
            partitions: self.overdue_partitions(now, as_known_at),
        };
        self.memo_put(key, Memoized::Overdue(out.clone()));
        Ok(out)
    }

    /// [`Self::unconsented_disclosures`] as the fully loaded ledger answers it, on any
    /// ledger: on a lazily loaded one, the subjects with a disclosure in `[from, to)` are
    /// read [`Self::scan_chunk`] at a time through the index on disclosure times, and
    /// not kept.
    ///
    /// ```
    /// # use confiance::{Timestamp, catalogue::Catalogue};
    /// # use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?;
    /// let mut ledger = Ledger::in_memory(catalogue)?;
    /// let (from, to) = (Timestamp::from_secs(0), Timestamp::from_secs(1_000));
    /// assert!(ledger.scan_unconsented_disclosures(from, to)?.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::scan_who_sees`].
    pub fn scan_unconsented_disclosures(
        &mut self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<UnconsentedDisclosure>, LedgerError> {
        let key = format!("unconsented {from:?} {to:?}");
        if let Some(Memoized::Unconsented(u)) = self.memo_get(&key) {
            return Ok(u);
        }
        let scan = Scan::Disclosures { from: bound(from), to: bound(to) };
        let Some(pages) = self.scan_pages(scan, |l| l.unconsented_keyed(from, to))? else {
            return Ok(self.unconsented_disclosures(from, to));
        };
        let mut all: Vec<_> = pages.into_iter().flatten().collect();
        all.sort_by_key(|&(k, _)| k);
        let out: Vec<UnconsentedDisclosure> = all.into_iter().map(|(_, u)| u).collect();
        self.memo_put(key, Memoized::Unconsented(out.clone()));
        Ok(out)
    }

    /// [`Self::diff`] as the fully loaded ledger answers it, on any ledger: on a lazily
    /// loaded one, the grants a removal names are counted over the subjects with a
    /// receipt covering a removed metric, [`Self::scan_chunk`] at a time, not kept.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?;
    /// let mut ledger = Ledger::in_memory(catalogue.clone())?;
    /// assert!(ledger.scan_diff(&catalogue, &catalogue)?.removed.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::scan_who_sees`].
    pub fn scan_diff(&mut self, a: &Catalogue, b: &Catalogue) -> Result<CatalogueDiff, LedgerError> {
        let mut d = self.diff(a, b);
        if d.removed.is_empty() {
            return Ok(d);
        }
        let key = format!("diff {} {}", a.digest(), b.digest());
        if let Some(Memoized::Diff(d)) = self.memo_get(&key) {
            return Ok(d);
        }
        let mut metrics: Vec<String> = d.removed.iter().map(|r| r.access.metric.to_string()).collect();
        metrics.sort_unstable();
        metrics.dedup();
        let refs: Vec<&str> = metrics.iter().map(String::as_str).collect();
        let Some(pages) = self.scan_pages(Scan::Metrics(&refs), |l| l.diff(a, b))? else { return Ok(d) };
        for (i, removal) in d.removed.iter_mut().enumerate() {
            removal.grants = pages.iter().filter_map(|p| p.removed.get(i)).map(|r| r.grants).sum();
        }
        self.memo_put(key, Memoized::Diff(d.clone()));
        Ok(d)
    }
}

//! Estimates over accumulators that cannot be merged: OLH's seed pool and general-privacy
//! HR's block permutation are keyed per time bucket ([`Selection::for_period`]), so two
//! buckets' counts mean different things and [`Accumulator::merge`] refuses them. [`Combined`] merges what can be
//! merged (consecutive accumulators with the same mechanism and pool key) and combines
//! the groups' estimates by their report counts, holding one accumulator at a time.

use super::{Accumulator, Estimate, EstimateError, PointEstimate};
use confiance::ldp::Selection;

/// Accumulators of one metric combined across OLH pool keys: consecutive accumulators
/// with the same mechanism (for OLH, the same pool key, that is the same time bucket;
/// for every other mechanism, always) are merged into one group; a new pool key closes
/// the group, whose estimate is folded into running sums, so memory holds one
/// accumulator and `O(d)` numbers however many buckets are combined.
///
/// [`Combined::estimate`] combines the `k` non-empty groups — independent, since their
/// reports are — by their report counts `n_i`:
///
/// `f̂_v = Σ n_i f̂_{i,v} / N` and `Var(f̂_v) = Σ n_i² Var_{i,v} / N²`, with `N = Σ n_i`,
///
/// and the 95% interval `f̂_v ± z_{0.975} √Var(f̂_v)` as for one accumulator. With a
/// single group the estimate is exactly that group's, so a metric whose mechanism is not
/// OLH is estimated exactly as one merged accumulator would be. Feed accumulators in
/// bucket order (as the aggregator's `Aggregator` stores partitions) so that each
/// bucket is one group; an accumulator whose pool key came before but not just before
/// starts a group of its own — estimated apart and combined like the others, which is
/// as unbiased, not an error.
///
/// ```
/// use confiance::ldp::{Domain, LdpValue, MechanismName, Selection};
/// use confiance::{Epsilon, hazmat::{ChaCha20Rng, SeedableRng}};
/// use confiance_estimate::{Accumulator, Combined, EstimateError};
/// let olh = Selection::new(Domain::Categorical { d: 4 }, Epsilon::from_ratio(2, 1)?, MechanismName::Olh)?;
/// let mut rng = ChaCha20Rng::seed_from_u64(1);
/// let mut all = Combined::new(&olh);
/// for week in 0..3u64 {
///     // Each week's reports use that week's pool key, and so does its accumulator.
///     let m = olh.for_period("watch.activity", week * 604_800);
///     let mut acc = Accumulator::new(&m);
///     for i in 0..5_000u32 {
///         acc.add(&m.encode(LdpValue::Category(u32::from(i % 2 == 0)), &mut rng)?)?;
///     }
///     all.add(&acc)?;
/// }
/// assert_eq!((all.groups(), all.count()), (3, 15_000));
/// let est = all.estimate();
/// assert_eq!(est.n, 15_000);
/// let f1 = &est.values[1];
/// assert!(f1.ci95_low < 0.5 && 0.5 < f1.ci95_high, "{f1:?}");
/// // Another mechanism is refused, and nothing changes.
/// let grr = Selection::new(Domain::Categorical { d: 4 }, Epsilon::from_ratio(2, 1)?, MechanismName::Grr)?;
/// assert_eq!(all.add(&Accumulator::new(&grr.for_period("watch.activity", 0))), Err(EstimateError::MismatchedConfig));
/// assert_eq!(all.count(), 15_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Combined {
    selection: Selection,
    /// The open group: the merge of the latest consecutive same-mechanism accumulators.
    open: Option<Accumulator>,
    /// The closed groups, folded.
    closed: Folded,
}

/// Running sums over closed, non-empty groups.
#[derive(Clone, Debug, Default, PartialEq)]
struct Folded {
    /// Groups closed (empty ones included).
    groups: usize,
    /// Reports in the non-empty ones.
    n: u64,
    /// Their number.
    non_empty: usize,
    /// The estimate of the only non-empty one, while there is exactly one.
    only: Option<Estimate>,
    /// Per output, `Σ n_i f̂_{i,v}` and `Σ n_i² Var_{i,v}`.
    sums: Vec<(f64, f64)>,
}

impl Folded {
    #[allow(clippy::cast_precision_loss, reason = "report counts below 2^53 are exact in f64")]
    fn fold(&mut self, group: &Accumulator) {
        self.groups += 1;
        if group.count() == 0 {
            return;
        }
        let est = group.estimate();
        let n_i = group.count() as f64;
        if self.sums.is_empty() {
            self.sums = vec![(0.0, 0.0); est.values.len()];
        }
        for (s, p) in self.sums.iter_mut().zip(&est.values) {
            s.0 += n_i * p.value;
            s.1 += n_i * n_i * p.variance;
        }
        self.n += group.count();
        self.non_empty += 1;
        self.only = (self.non_empty == 1).then_some(est);
    }
}

impl Combined {
    /// Nothing combined yet, for accumulators of `selection` under any key.
    #[must_use]
    pub fn new(selection: &Selection) -> Self {
        Self { selection: *selection, open: None, closed: Folded::default() }
    }

    /// Adds `acc`: merged into the open group when it has the same mechanism (key
    /// included), else the open group is closed and `acc` opens the next.
    ///
    /// # Errors
    /// [`EstimateError::MismatchedConfig`] when `acc`'s mechanism differs from this
    /// selection other than by the key (another mechanism, ε or parameter);
    /// [`EstimateError::Overflow`] when a count would overflow. On error nothing changes.
    pub fn add(&mut self, acc: &Accumulator) -> Result<(), EstimateError> {
        let m = acc.mechanism();
        if !self.selection.matches(m) {
            return Err(EstimateError::MismatchedConfig);
        }
        self.count().checked_add(acc.count()).ok_or(EstimateError::Overflow)?;
        match &mut self.open {
            Some(open) if open.mechanism() == m => open.merge(acc),
            _ => {
                if let Some(done) = self.open.replace(acc.clone()) {
                    self.closed.fold(&done);
                }
                Ok(())
            }
        }
    }

    /// The selection given to [`Self::new`].
    #[must_use]
    pub const fn selection(&self) -> &Selection {
        &self.selection
    }

    /// The number of groups so far (the open one included).
    #[must_use]
    pub fn groups(&self) -> usize {
        self.closed.groups + usize::from(self.open.is_some())
    }

    /// Reports in all groups.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.closed.n + self.open.as_ref().map_or(0, Accumulator::count)
    }

    /// The combined estimate (see [`Combined`]): exactly the group's [`Estimate`] when
    /// at most one group has reports; with none, the estimate of an empty accumulator
    /// (values 0, infinite variance).
    #[must_use]
    #[allow(clippy::cast_precision_loss, reason = "report counts below 2^53 are exact in f64")]
    pub fn estimate(&self) -> Estimate {
        let open = self.open.as_ref().filter(|a| a.count() > 0);
        match (open, self.closed.non_empty) {
            // No reports: the key does not matter.
            (None, 0) => return Accumulator::new(&confiance::hazmat::keyed(&self.selection, 0)).estimate(),
            (Some(open), 0) => return open.estimate(),
            (None, 1) => {
                if let Some(only) = &self.closed.only {
                    return only.clone();
                }
            }
            _ => {}
        }
        let mut all = self.closed.clone();
        if let Some(open) = open {
            all.fold(open);
        }
        let total = all.n as f64;
        let values =
            all.sums.iter().map(|(c, v)| PointEstimate::new(c / total, v / (total * total))).collect();
        Estimate { mechanism: self.selection.name(), n: all.n, values }
    }
}

//! Estimates over accumulators that cannot be merged: OLH's seed pool is keyed per time
//! bucket ([`Mechanism::for_period`]), so two buckets' counts are over different hash
//! functions and [`Accumulator::merge`] refuses them. [`Combined`] merges what can be
//! merged (same mechanism and pool key) and combines the groups' estimates by their
//! report counts.

use super::{Accumulator, Estimate, EstimateError, PointEstimate};
use confiance::ldp::Mechanism;

/// The 0.975 quantile of the standard normal distribution (as in [`PointEstimate`]'s
/// intervals).
const Z95: f64 = 1.959_963_984_540_054;

/// Accumulators of one metric combined across OLH pool keys: a group per distinct
/// mechanism (for OLH, per pool key, that is per time bucket; for every other mechanism
/// a single group), each group the [`Accumulator::merge`] of its members.
///
/// [`Combined::estimate`] estimates each group with [`Accumulator::estimate`] and
/// combines the `k` non-empty groups, independent since their reports are, by their
/// report counts `n_i`:
///
/// `f̂_v = Σ n_i f̂_{i,v} / N` and `Var(f̂_v) = Σ n_i² Var_{i,v} / N²`, with `N = Σ n_i`,
///
/// and the 95% interval `f̂_v ± z_{0.975} √Var(f̂_v)` as for one accumulator. With a
/// single group the estimate is exactly that group's, so a metric whose mechanism is not
/// OLH is estimated exactly as one merged accumulator would be. (Called `Combined`, not
/// an accumulator: it is not a monoid over reports — it holds one accumulator per group,
/// so its memory grows with the number of pool keys, i.e. of OLH buckets, combined.)
///
/// ```
/// use confiance::ldp::{Domain, LdpValue, Mechanism, MechanismName};
/// use confiance::{Epsilon, hazmat::{ChaCha20Rng, SeedableRng}};
/// use confiance_aggregator::estimate::{Accumulator, Combined, EstimateError};
/// let olh = Mechanism::select(Domain::Categorical { d: 4 }, Epsilon::from_ratio(2, 1)?, MechanismName::Olh)?;
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
/// assert_eq!((all.groups().len(), all.count()), (3, 15_000));
/// let est = all.estimate();
/// assert_eq!(est.n, 15_000);
/// let f1 = &est.values[1];
/// assert!(f1.ci95_low < 0.5 && 0.5 < f1.ci95_high, "{f1:?}");
/// // Another mechanism is refused, and nothing changes.
/// let grr = Mechanism::select(Domain::Categorical { d: 4 }, Epsilon::from_ratio(2, 1)?, MechanismName::Grr)?;
/// assert_eq!(all.add(&Accumulator::new(&grr)), Err(EstimateError::MismatchedConfig));
/// assert_eq!(all.count(), 15_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Combined {
    mechanism: Mechanism,
    groups: Vec<Accumulator>,
}

impl Combined {
    /// Nothing combined yet, for accumulators of `mechanism` under any OLH pool key.
    #[must_use]
    pub const fn new(mechanism: &Mechanism) -> Self {
        Self { mechanism: *mechanism, groups: Vec::new() }
    }

    /// Adds `acc`: merged into the group with its exact mechanism (pool key included), or
    /// a new group when only its OLH pool key is new.
    ///
    /// # Errors
    /// [`EstimateError::MismatchedConfig`] when `acc`'s mechanism differs from this one's
    /// other than by the pool key (another mechanism, ε or parameter);
    /// [`EstimateError::Overflow`] when a count would overflow. On error nothing changes.
    pub fn add(&mut self, acc: &Accumulator) -> Result<(), EstimateError> {
        let m = acc.mechanism();
        if m.with_pool_key(0) != self.mechanism.with_pool_key(0) {
            return Err(EstimateError::MismatchedConfig);
        }
        self.count().checked_add(acc.count()).ok_or(EstimateError::Overflow)?;
        match self.groups.iter_mut().find(|g| g.mechanism() == m) {
            Some(g) => g.merge(acc),
            None => {
                self.groups.push(acc.clone());
                Ok(())
            }
        }
    }

    /// The mechanism given to [`Self::new`].
    #[must_use]
    pub const fn mechanism(&self) -> &Mechanism {
        &self.mechanism
    }

    /// The groups, one per distinct mechanism (pool key), in the order first seen.
    #[must_use]
    pub fn groups(&self) -> &[Accumulator] {
        &self.groups
    }

    /// Reports in all groups.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.groups.iter().map(Accumulator::count).sum()
    }

    /// The combined estimate (see [`Combined`]): exactly the group's [`Estimate`] when
    /// at most one group has reports; with none, the estimate of an empty accumulator
    /// (values 0, infinite variance).
    #[must_use]
    #[allow(clippy::cast_precision_loss, reason = "report counts below 2^53 are exact in f64")]
    pub fn estimate(&self) -> Estimate {
        let non_empty: Vec<&Accumulator> = self.groups.iter().filter(|g| g.count() > 0).collect();
        match non_empty.as_slice() {
            [] => return Accumulator::new(&self.mechanism).estimate(),
            [one] => return one.estimate(),
            _ => {}
        }
        let parts: Vec<(f64, Estimate)> =
            non_empty.iter().map(|g| (g.count() as f64, g.estimate())).collect();
        let n: u64 = non_empty.iter().map(|g| g.count()).sum();
        let total = n as f64;
        let width = parts.iter().map(|(_, e)| e.values.len()).min().unwrap_or(0);
        let values = (0..width)
            .map(|v| {
                let (mut count, mut var) = (0.0, 0.0);
                for (n_i, e) in &parts {
                    if let Some(p) = e.values.get(v) {
                        count += n_i * p.value;
                        var += n_i * n_i * p.variance;
                    }
                }
                point(count / total, var / (total * total))
            })
            .collect();
        Estimate { mechanism: self.mechanism.name(), n, values }
    }
}

/// A point estimate with its interval, built as [`PointEstimate`]'s own constructor does.
fn point(value: f64, variance: f64) -> PointEstimate {
    let variance = variance.max(0.0);
    let se = variance.sqrt();
    PointEstimate { value, variance, std_error: se, ci95_low: value - Z95 * se, ci95_high: value + Z95 * se }
}

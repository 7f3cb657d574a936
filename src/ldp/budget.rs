//! The device's per-metric, per-period ε budget.

use crate::Epsilon;

/// A per-metric ε cap per period (e.g. a day): a report that would take the period's
/// total above the cap is not produced, and the refusal is counted rather than raised
/// to the host (docs/design.md#budget, glean's `record_error` habit).
///
/// ```
/// use confiance::{Epsilon, ldp::Budget};
/// let one = Epsilon::from_ratio(1, 1)?;
/// let mut b = Budget::new(Epsilon::from_ratio(2, 1)?);
/// assert!(b.try_charge(10, one));
/// assert!(b.try_charge(10, one));
/// assert!(!b.try_charge(10, one)); // would exceed 2 in period 10
/// assert_eq!(b.refused(), 1);
/// assert!(b.try_charge(11, one)); // a new period starts afresh
/// # Ok::<(), confiance::epsilon::EpsilonError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    cap: Epsilon,
    period: u64,
    spent: Option<Epsilon>,
    refused: u32,
}

impl Budget {
    /// A budget of `cap` per period, nothing spent yet.
    #[must_use]
    pub const fn new(cap: Epsilon) -> Self {
        Self { cap, period: 0, spent: None, refused: 0 }
    }

    /// Charge `eps` to `period`. Returns whether the report may be produced.
    /// A later period resets the spending; an earlier one than the current is refused
    /// (a clock going backwards must not reopen a spent period). Refusals are counted.
    pub fn try_charge(&mut self, period: u64, eps: Epsilon) -> bool {
        if period < self.period {
            self.refused = self.refused.saturating_add(1);
            return false;
        }
        if period > self.period {
            self.period = period;
            self.spent = None;
        }
        let total = match self.spent {
            None => Ok(eps),
            Some(s) => s.checked_add(eps),
        };
        match total {
            Ok(t) if t <= self.cap => {
                self.spent = Some(t);
                true
            }
            _ => {
                self.refused = self.refused.saturating_add(1);
                false
            }
        }
    }

    /// ε spent in the current period.
    #[must_use]
    pub const fn spent(&self) -> Option<Epsilon> {
        self.spent
    }

    /// The cap per period.
    #[must_use]
    pub const fn cap(&self) -> Epsilon {
        self.cap
    }

    /// Reports refused so far (saturating).
    #[must_use]
    pub const fn refused(&self) -> u32 {
        self.refused
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn exact_rational_accounting() {
        let third = Epsilon::from_ratio(1, 3).unwrap();
        let mut b = Budget::new(Epsilon::from_ratio(1, 1).unwrap());
        assert!(b.try_charge(5, third) && b.try_charge(5, third) && b.try_charge(5, third));
        assert_eq!(b.spent(), Some(Epsilon::from_ratio(1, 1).unwrap()), "1/3 × 3 is exactly 1");
        assert!(!b.try_charge(5, third));
        assert!(!b.try_charge(4, third), "earlier period refused");
        assert_eq!(b.refused(), 2);
        let big = Epsilon::from_ratio(3, 1).unwrap();
        assert!(!b.try_charge(6, big), "a single report above the cap is refused");
        assert_eq!(b.spent(), None);
    }
}

//! The answer to "may recipient R have metric M of subject S for purpose P at t?" —
//! what the ledger's `check` returns and what every release and transcryption needs.

use confiance::Timestamp;
use confiance::ids::{MetricId, PurposeId, ReceiptId, RecipientId, SubjectId};

/// Why a [`Decision`] came out as it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DecisionReason {
    /// A receipt in force allows it.
    Allowed,
    /// No receipt names this recipient, metric and purpose for the subject.
    NoConsent,
    /// A receipt did, but it was withdrawn before `at`.
    Withdrawn,
    /// A receipt did, but it expired (`valid_until`) before `at`.
    Expired,
    /// A receipt does, but it starts after `at`.
    NotYetValid,
    /// The catalogue does not let this recipient have this metric at all.
    NotInCatalogue,
    /// The catalogue does not allow this metric for this purpose.
    PurposeNotAllowed,
}

/// The ledger's answer for one (recipient, metric, purpose, subject, instant).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    /// Whether it is allowed.
    pub allowed: bool,
    /// When allowed: until when the access window runs (`None` = until withdrawn).
    pub until: Option<Timestamp>,
    /// The receipt that allows it (or, when refused, the one that lapsed, if any).
    pub receipt: Option<ReceiptId>,
    /// Why.
    pub reason: DecisionReason,
}

impl Decision {
    /// A refusal for `reason`.
    #[must_use]
    pub const fn deny(reason: DecisionReason) -> Self {
        Self { allowed: false, until: None, receipt: None, reason }
    }

    /// An allowing decision backed by `receipt`, holding until `until` (`None`: until
    /// withdrawn).
    ///
    /// ```
    /// use confiance::Timestamp;
    /// use confiance_aggregator::decision::Decision;
    /// let d = Decision::allow(None, Some(Timestamp::from_secs(10)));
    /// assert!(d.allows_at(Timestamp::from_secs(9)));
    /// assert!(!d.allows_at(Timestamp::from_secs(10)));
    /// ```
    #[must_use]
    pub const fn allow(receipt: Option<ReceiptId>, until: Option<Timestamp>) -> Self {
        Self { allowed: true, until, receipt, reason: DecisionReason::Allowed }
    }

    /// Whether the decision allows the query at `at`: it is allowing, its reason agrees,
    /// and `at` is before `until`.
    #[must_use]
    pub fn allows_at(&self, at: Timestamp) -> bool {
        self.allowed && self.reason == DecisionReason::Allowed && self.until.is_none_or(|u| at < u)
    }
}

/// Anything that can answer `check` — the ledger, or a stand-in in tests.
pub trait ConsentCheck {
    /// May `recipient` have `metric` of `subject` for `purpose` at `at`?
    fn check(
        &self,
        recipient: &RecipientId,
        metric: &MetricId,
        purpose: &PurposeId,
        subject: &SubjectId,
        at: Timestamp,
    ) -> Decision;
}

//! The consent ledger's answer to "may this recipient receive this metric about this
//! subject for this purpose, now?" — the type every consent-gated operation takes.
//!
//! The ledger itself (`ledger`) implements [`ConsentCheck`]; until it does, tests and
//! callers can implement it themselves.
//!
//! ```
//! use confiance::Timestamp;
//! use confiance::ids::{MetricId, PurposeId, RecipientId, SubjectId};
//! use confiance_aggregator::decision::{ConsentCheck, Decision, DecisionReason};
//!
//! struct Nobody;
//! impl ConsentCheck for Nobody {
//!     fn check(&self, _: &RecipientId, _: &MetricId, _: &PurposeId, _: &SubjectId, _: Timestamp) -> Decision {
//!         Decision::deny(DecisionReason::NoConsent)
//!     }
//! }
//! let d = Nobody.check(
//!     &RecipientId::new("acme")?, &MetricId::new("m")?, &PurposeId::new("service")?,
//!     &SubjectId([0; 32]), Timestamp::from_secs(0),
//! );
//! assert!(!d.allowed);
//! # Ok::<(), confiance::ids::IdError>(())
//! ```

use confiance::Timestamp;
use confiance::ids::{MetricId, PurposeId, ReceiptId, RecipientId, SubjectId};

/// Why a [`Decision`] came out the way it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecisionReason {
    /// A valid consent receipt (or another legal basis) covers the query.
    Allowed,
    /// No receipt of the subject covers this recipient, metric and purpose.
    NoConsent,
    /// The subject withdrew the consent that covered the query.
    Withdrawn,
    /// The consent covered the query but its period has ended.
    Expired,
    /// The metric or the recipient is not in the catalogue.
    NotInCatalogue,
    /// The catalogue does not allow this purpose (or recipient) for this metric.
    PurposeNotAllowed,
}

/// The ledger's decision on one query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the query is allowed.
    pub allowed: bool,
    /// Until when an allowing decision holds (`None`: until withdrawn or not allowed).
    pub until: Option<Timestamp>,
    /// The receipt that allows the query, if any.
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

    /// An allowing decision backed by `receipt`, holding until `until`.
    #[must_use]
    pub const fn allow(receipt: Option<ReceiptId>, until: Option<Timestamp>) -> Self {
        Self { allowed: true, until, receipt, reason: DecisionReason::Allowed }
    }

    /// Whether the decision allows the query at `at`: it is allowing, its reason says so,
    /// and `at` is before `until`.
    #[must_use]
    pub fn allows_at(&self, at: Timestamp) -> bool {
        self.allowed && self.reason == DecisionReason::Allowed && self.until.is_none_or(|u| at < u)
    }
}

/// What the consent ledger answers; implemented by the ledger.
pub trait ConsentCheck {
    /// May `recipient` receive `metric` about `subject` for `purpose` at `at`?
    fn check(
        &self,
        recipient: &RecipientId,
        metric: &MetricId,
        purpose: &PurposeId,
        subject: &SubjectId,
        at: Timestamp,
    ) -> Decision;
}

//! The answer to "may recipient R have metric M of subject S for purpose P at t?" —
//! what the ledger's `check` returns and what every release and transcryption needs.

use confiance::Timestamp;
use confiance::ids::{DevicePublicKey, MetricId, PurposeId, ReceiptId, RecipientId, SubjectId};

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
///
/// Only the ledger's `check` makes one ([`ConsentCheck::check`] on
/// [`Ledger`](crate::ledger::Ledger)); the fields are private so that an allowing decision
/// cannot be written by hand. Stand-ins for tests build them with [`hazmat`].
///
/// Neither a struct literal nor a constructor outside `hazmat` compiles (on the code
/// before issue #21 both did):
///
/// ```compile_fail
/// use confiance_aggregator::decision::{Decision, DecisionReason};
/// let forged = Decision { allowed: true, until: None, receipt: None, reason: DecisionReason::Allowed };
/// ```
///
/// ```compile_fail
/// let forged = confiance_aggregator::decision::Decision::allow(None, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    allowed: bool,
    until: Option<Timestamp>,
    receipt: Option<ReceiptId>,
    reason: DecisionReason,
}

impl Decision {
    /// A refusal for `reason`.
    pub(crate) const fn deny(reason: DecisionReason) -> Self {
        Self { allowed: false, until: None, receipt: None, reason }
    }

    /// An allowing decision backed by `receipt`, holding until `until` (`None`: until
    /// withdrawn).
    pub(crate) const fn allow(receipt: Option<ReceiptId>, until: Option<Timestamp>) -> Self {
        Self { allowed: true, until, receipt, reason: DecisionReason::Allowed }
    }

    /// A refusal for `reason` naming the receipt that lapsed or is pending.
    pub(crate) const fn deny_with(receipt: ReceiptId, reason: DecisionReason) -> Self {
        Self { allowed: false, until: None, receipt: Some(receipt), reason }
    }

    /// Whether it is allowed.
    #[must_use]
    pub const fn allowed(&self) -> bool {
        self.allowed
    }

    /// When allowed: until when the access window runs (`None` = until withdrawn).
    #[must_use]
    pub const fn until(&self) -> Option<Timestamp> {
        self.until
    }

    /// The receipt that allows it (or, when refused, the one that lapsed, if any).
    #[must_use]
    pub const fn receipt(&self) -> Option<ReceiptId> {
        self.receipt
    }

    /// Why.
    #[must_use]
    pub const fn reason(&self) -> DecisionReason {
        self.reason
    }

    /// Whether the decision allows the query at `at`: it is allowing, its reason agrees,
    /// and `at` is before `until`.
    ///
    /// ```
    /// use confiance::Timestamp;
    /// use confiance_aggregator::decision::hazmat;
    /// let d = hazmat::allow(None, Some(Timestamp::from_secs(10)));
    /// assert!(d.allows_at(Timestamp::from_secs(9)));
    /// assert!(!d.allows_at(Timestamp::from_secs(10)));
    /// ```
    #[must_use]
    pub fn allows_at(&self, at: Timestamp) -> bool {
        self.allowed && self.reason == DecisionReason::Allowed && self.until.is_none_or(|u| at < u)
    }
}

/// Decisions made without the ledger, for stand-in [`ConsentCheck`]s in tests and
/// simulations. Hazardous: a decision made here allows whatever its caller says.
pub mod hazmat {
    use super::{Decision, DecisionReason, ReceiptId, Timestamp};

    /// An allowing decision backed by `receipt`, holding until `until`.
    #[must_use]
    pub const fn allow(receipt: Option<ReceiptId>, until: Option<Timestamp>) -> Decision {
        Decision::allow(receipt, until)
    }

    /// A refusal for `reason`.
    #[must_use]
    pub const fn deny(reason: DecisionReason) -> Decision {
        Decision::deny(reason)
    }
}

/// Anything that can answer `check` — the ledger, or a stand-in in tests — and say who a
/// device speaks for and what a receipt is about: what a transcryptor asks before it
/// transcrypts ([`crate::transcrypt::DomainTranscryptor::transcrypt`]).
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

    /// The subject whose delegation of `device` is in force at `at` (not revoked), if
    /// any: the ledger's [`enrolled_device`](crate::ledger::Ledger::enrolled_device).
    fn device_subject(&self, device: &DevicePublicKey, at: Timestamp) -> Option<SubjectId>;

    /// Who `receipt` is about, for whom and what for; `None` for an unknown receipt.
    fn receipt_terms(&self, receipt: &ReceiptId) -> Option<crate::ledger::ReceiptTerms>;
}

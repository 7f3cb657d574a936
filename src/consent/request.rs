//! A consent request: the terms a device asks its owner to agree to, named one by one.

use super::receipt::Scope;
use super::state::Grant;
use crate::Timestamp;
use crate::ids::{PurposeId, RecipientId};
use crate::retention::Duration;

/// The terms of a consent, built by name: who ([`RecipientId`]), what for
/// ([`PurposeId`]), over what ([`Scope`]) and held how long ([`Duration`]) — four
/// distinct types, so no two can be swapped — then, optionally, when it starts
/// ([`Self::valid_from`], by default when it is given) and when it ends by itself
/// ([`Self::valid_until`], by default never: until withdrawn).
///
/// [`crate::recorder::Recorder::give_consent`] checks it against the catalogue and signs
/// it; the hold may not exceed the maximum hold of any metric it covers
/// ([`super::ConsentError::HoldTooLong`]).
///
/// ```
/// use confiance::consent::{ConsentRequest, Scope};
/// use confiance::ids::{MetricId, PurposeId, RecipientId};
/// use confiance::Timestamp;
///
/// let request = ConsentRequest::new(
///     RecipientId::new("calora")?,
///     PurposeId::new("product-improvement")?,
///     Scope::metrics([MetricId::new("thermostat.mode")?]),
///     "P90D".parse()?,
/// )
/// .valid_until(Timestamp::parse_rfc3339("2027-12-31T00:00:00Z")?);
/// assert_eq!(request.recipient().as_str(), "calora");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a consent request does nothing until it is given"]
pub struct ConsentRequest {
    recipient: RecipientId,
    purpose: PurposeId,
    scope: Scope,
    hold: Duration,
    valid_from: Option<Timestamp>,
    valid_until: Option<Timestamp>,
}

impl ConsentRequest {
    /// A request that `recipient` may have the metrics of `scope` for `purpose`, data
    /// held at most `hold`; in force from when it is given until withdrawn.
    pub const fn new(recipient: RecipientId, purpose: PurposeId, scope: Scope, hold: Duration) -> Self {
        Self { recipient, purpose, scope, hold, valid_from: None, valid_until: None }
    }

    /// In force from `t` (by default: the instant it is given).
    pub const fn valid_from(mut self, t: Timestamp) -> Self {
        self.valid_from = Some(t);
        self
    }

    /// Ends by itself at `t` (by default: only a withdrawal ends it).
    pub const fn valid_until(mut self, t: Timestamp) -> Self {
        self.valid_until = Some(t);
        self
    }

    /// Who may receive the data.
    #[must_use]
    pub const fn recipient(&self) -> &RecipientId {
        &self.recipient
    }

    /// What for.
    #[must_use]
    pub const fn purpose(&self) -> &PurposeId {
        &self.purpose
    }

    /// Which metrics.
    #[must_use]
    pub const fn scope(&self) -> &Scope {
        &self.scope
    }

    /// How long data collected under it may be held.
    #[must_use]
    pub const fn hold(&self) -> &Duration {
        &self.hold
    }

    /// The grant these terms make when given at `now`.
    #[must_use]
    pub fn into_grant(self, now: Timestamp) -> Grant {
        Grant {
            recipient: self.recipient,
            purpose: self.purpose,
            scope: self.scope,
            valid_from: self.valid_from.unwrap_or(now),
            valid_until: self.valid_until,
            hold: self.hold,
        }
    }
}

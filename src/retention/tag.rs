//! The retention tag: purpose, audience, hold, catalogue version — and, on pseudonymous
//! records only, the receipt id.

use alloc::collections::BTreeSet;
use core::fmt;

use super::{Deadline, Duration};
use crate::Timestamp;
use crate::catalogue::{Catalogue, LegalBasis, Privacy};
use crate::consent::ConsentState;
use crate::ids::{MetricId, PurposeId, ReceiptId, RecipientId};

/// Why a tag cannot be made, or is not acceptable for a metric.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TagError {
    /// The catalogue has no such metric.
    UnknownMetric(MetricId),
    /// A statistic tag for a pseudonymous metric, or a record tag for an anonymous one.
    WrongTrack(MetricId),
    /// The catalogue does not allow the metric for this purpose.
    PurposeNotAllowed(PurposeId),
    /// The catalogue does not allow the metric to go to this recipient.
    RecipientNotAllowed(RecipientId),
    /// The purpose rests on consent and this recipient has no receipt in force for it.
    NoConsent(RecipientId),
    /// The audience is empty.
    EmptyAudience,
    /// The device holds no such receipt, or it is not in force at that instant.
    ReceiptNotActive,
    /// The receipt does not cover this metric.
    ReceiptDoesNotCover(MetricId),
    /// The tag was made under another catalogue version.
    CatalogueVersion {
        /// The tag's version.
        tag: u32,
        /// The catalogue's version.
        catalogue: u32,
    },
    /// The tag's hold is longer than the metric's maximum.
    HoldTooLong,
    /// A pseudonymous record without a receipt id, or an anonymous statistic with one.
    ReceiptPresence,
    /// A record tag's audience is not exactly the receipt's recipient.
    AudienceNotReceipt,
}

impl fmt::Display for TagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownMetric(m) => write!(f, "unknown metric `{m}`"),
            Self::WrongTrack(m) => write!(f, "metric `{m}` is on the other track (anonymous vs record)"),
            Self::PurposeNotAllowed(p) => write!(f, "purpose `{p}` not allowed for this metric"),
            Self::RecipientNotAllowed(r) => write!(f, "recipient `{r}` not allowed for this metric"),
            Self::NoConsent(r) => write!(f, "no consent in force for recipient `{r}`"),
            Self::EmptyAudience => f.write_str("empty audience"),
            Self::ReceiptNotActive => f.write_str("receipt not held or not in force"),
            Self::ReceiptDoesNotCover(m) => write!(f, "receipt does not cover metric `{m}`"),
            Self::CatalogueVersion { tag, catalogue } => {
                write!(f, "tag made under catalogue version {tag}, checked against {catalogue}")
            }
            Self::HoldTooLong => f.write_str("hold longer than the metric's maximum"),
            Self::ReceiptPresence => {
                f.write_str("receipt id must be present on records and absent on statistics")
            }
            Self::AudienceNotReceipt => f.write_str("record audience must be the receipt's recipient"),
        }
    }
}

impl core::error::Error for TagError {}

/// The retention tag on every report (docs/design.md#retention-tag).
///
/// On the device it can only be made by [`RetentionTag::for_statistic`] and
/// [`RetentionTag::for_record`], from the consent state and the catalogue, so a device
/// cannot tag data it was not allowed to send. A tag decoded from the wire is untrusted
/// until [`RetentionTag::check`] passes.
///
/// ```
/// use confiance::catalogue::Catalogue;
/// use confiance::consent::{ConsentState, DeviceKey, Grant, Scope};
/// use confiance::ids::*;
/// use confiance::retention::RetentionTag;
/// use confiance::Timestamp;
///
/// let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
/// let mut rng = confiance::rng::OsRng::new();
/// let mut consent = ConsentState::new(DeviceKey::generate(&mut rng));
/// let setpoint = MetricId::new("thermostat.setpoint")?;
/// let (calora, research) = (RecipientId::new("calora")?, PurposeId::new("product-improvement")?);
/// let t = Timestamp::from_secs(10_000);
/// // No consent yet: the device cannot tag the statistic for Calora.
/// assert!(RetentionTag::for_statistic(&catalogue, &consent, &setpoint, &research, [calora.clone()], t).is_err());
/// consent.give(&catalogue, Grant {
///     recipient: calora.clone(), purpose: research.clone(),
///     scope: Scope::metrics([setpoint.clone()]), valid_from: t, valid_until: None,
///     hold: "P90D".parse()?,
/// }, t, &mut rng)?;
/// let tag = RetentionTag::for_statistic(&catalogue, &consent, &setpoint, &research, [calora], t)?;
/// assert_eq!(tag.hold().to_string(), "P90D");
/// tag.check(&catalogue, &setpoint)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RetentionTag {
    purpose: PurposeId,
    audience: BTreeSet<RecipientId>,
    hold: Duration,
    catalogue_version: u32,
    receipt: Option<ReceiptId>,
}

/// The duration among `candidates` that ends first from `start`.
fn earliest(start: Timestamp, candidates: impl IntoIterator<Item = Duration>) -> Option<Duration> {
    candidates.into_iter().min_by_key(|d| d.deadline_from(start).at)
}

impl RetentionTag {
    /// A tag for an anonymous statistic of `metric` sent to `audience` for `purpose` at `at`.
    ///
    /// Every member of the audience must be allowed by the catalogue and, when the
    /// purpose rests on consent, hold a receipt in force at `at` covering the metric.
    /// The hold is the shortest of the metric's maximum and those receipts' holds.
    ///
    /// # Errors
    /// [`TagError`] naming what is not allowed.
    pub fn for_statistic(
        catalogue: &Catalogue,
        consent: &ConsentState,
        metric: &MetricId,
        purpose: &PurposeId,
        audience: impl IntoIterator<Item = RecipientId>,
        at: Timestamp,
    ) -> Result<Self, TagError> {
        let m = catalogue.metric(metric).ok_or_else(|| TagError::UnknownMetric(metric.clone()))?;
        if !matches!(m.privacy, Privacy::Ldp { .. }) {
            return Err(TagError::WrongTrack(metric.clone()));
        }
        if !m.purposes.contains(purpose) {
            return Err(TagError::PurposeNotAllowed(purpose.clone()));
        }
        let needs_consent = catalogue.purpose(purpose).is_none_or(|p| p.legal_basis == LegalBasis::Consent);
        let audience: BTreeSet<RecipientId> = audience.into_iter().collect();
        if audience.is_empty() {
            return Err(TagError::EmptyAudience);
        }
        let mut holds = alloc::vec![m.max_hold.clone()];
        for r in &audience {
            if !m.recipients.contains(r) {
                return Err(TagError::RecipientNotAllowed(r.clone()));
            }
            if needs_consent {
                let entry = consent
                    .active_receipt(catalogue, r, metric, purpose, at)
                    .ok_or_else(|| TagError::NoConsent(r.clone()))?;
                holds.push(entry.receipt.receipt().hold.clone());
            }
        }
        let hold = earliest(at, holds).ok_or(TagError::EmptyAudience)?;
        Ok(Self {
            purpose: purpose.clone(),
            audience,
            hold,
            catalogue_version: catalogue.version(),
            receipt: None,
        })
    }

    /// A tag for a pseudonymous record of `metric` under the device's receipt `receipt`
    /// at `at`: the audience is the receipt's recipient, the purpose the receipt's, the
    /// hold `min(receipt hold, metric maximum)`.
    ///
    /// # Errors
    /// [`TagError`] naming what is not allowed.
    pub fn for_record(
        catalogue: &Catalogue,
        consent: &ConsentState,
        metric: &MetricId,
        receipt: &ReceiptId,
        at: Timestamp,
    ) -> Result<Self, TagError> {
        let m = catalogue.metric(metric).ok_or_else(|| TagError::UnknownMetric(metric.clone()))?;
        if !matches!(m.privacy, Privacy::Pseudonymous) {
            return Err(TagError::WrongTrack(metric.clone()));
        }
        let entry = consent.get(receipt).filter(|e| e.active_at(at)).ok_or(TagError::ReceiptNotActive)?;
        let r = entry.receipt.receipt();
        if !r.scope.names(catalogue, metric) {
            return Err(TagError::ReceiptDoesNotCover(metric.clone()));
        }
        if !m.purposes.contains(&r.purpose) {
            return Err(TagError::PurposeNotAllowed(r.purpose.clone()));
        }
        if !m.recipients.contains(&r.recipient) {
            return Err(TagError::RecipientNotAllowed(r.recipient.clone()));
        }
        let hold = earliest(at, [r.hold.clone(), m.max_hold.clone()]).ok_or(TagError::HoldTooLong)?;
        Ok(Self {
            purpose: r.purpose.clone(),
            audience: core::iter::once(r.recipient.clone()).collect(),
            hold,
            catalogue_version: catalogue.version(),
            receipt: Some(*receipt),
        })
    }

    /// Checks a tag (typically decoded from the wire) against the catalogue for `metric`:
    /// same catalogue version, purpose and audience allowed, hold within the metric's
    /// maximum, a receipt id exactly on pseudonymous records.
    ///
    /// # Errors
    /// [`TagError`] naming what is not allowed.
    pub fn check(&self, catalogue: &Catalogue, metric: &MetricId) -> Result<(), TagError> {
        let m = catalogue.metric(metric).ok_or_else(|| TagError::UnknownMetric(metric.clone()))?;
        if self.catalogue_version != catalogue.version() {
            return Err(TagError::CatalogueVersion {
                tag: self.catalogue_version,
                catalogue: catalogue.version(),
            });
        }
        if !m.purposes.contains(&self.purpose) {
            return Err(TagError::PurposeNotAllowed(self.purpose.clone()));
        }
        if self.audience.is_empty() {
            return Err(TagError::EmptyAudience);
        }
        if let Some(r) = self.audience.iter().find(|r| !m.recipients.contains(*r)) {
            return Err(TagError::RecipientNotAllowed(r.clone()));
        }
        if !self.hold.is_within(&m.max_hold) {
            return Err(TagError::HoldTooLong);
        }
        let record = matches!(m.privacy, Privacy::Pseudonymous);
        if record != self.receipt.is_some() {
            return Err(TagError::ReceiptPresence);
        }
        if record && self.audience.len() != 1 {
            return Err(TagError::AudienceNotReceipt);
        }
        Ok(())
    }

    /// The purpose.
    #[must_use]
    pub const fn purpose(&self) -> &PurposeId {
        &self.purpose
    }

    /// The recipients who may see the data.
    #[must_use]
    pub const fn audience(&self) -> &BTreeSet<RecipientId> {
        &self.audience
    }

    /// How long the data may be held after its start (collection instant for a record,
    /// bucket end for a partition).
    #[must_use]
    pub const fn hold(&self) -> &Duration {
        &self.hold
    }

    /// The catalogue version the tag was made under.
    #[must_use]
    pub const fn catalogue_version(&self) -> u32 {
        self.catalogue_version
    }

    /// The receipt a pseudonymous record was collected under; `None` on statistics.
    #[must_use]
    pub const fn receipt(&self) -> Option<&ReceiptId> {
        self.receipt.as_ref()
    }

    /// The hold deadline of data that starts at `start` (docs/design.md#hold-deadline): `start + hold`,
    /// saturating.
    #[must_use]
    pub fn deadline(&self, start: Timestamp) -> Deadline {
        self.hold.deadline_from(start)
    }
}

//! Why a value was not recorded: returned in strict mode, counted per metric and cause
//! otherwise.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{MetricId, PurposeId};

/// Why a [`Recorder::record`](super::Recorder::record) or
/// [`Recorder::record_service`](super::Recorder::record_service) call made no report.
///
/// A recorder in its default mode counts these ([`super::Recorder::errors`], per metric
/// and [`Cause`]) and returns `Ok`; in strict mode
/// ([`super::Recorder::set_strict`]) it returns them instead, to find mistakes in
/// development and tests. Nothing is queued and no ε is spent either way.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// No metric with this id in the catalogue (a typo, or a catalogue too old).
    UnknownMetric(MetricId),
    /// A pseudonymous metric recorded with `record`, or an anonymous one with
    /// `record_service`: the metric is on the other track.
    WrongTrack(MetricId),
    /// A value of the wrong variant for the metric's kind.
    WrongValue {
        /// The metric.
        metric: MetricId,
        /// The variant the metric takes.
        expected: ValueKind,
    },
    /// A category index past the metric's last label.
    LabelOutOfRange {
        /// The metric.
        metric: MetricId,
        /// The index given.
        index: u32,
        /// How many labels the metric has (valid indices are below it).
        labels: u32,
    },
    /// A number outside the metric's `[min, max]`.
    OutOfRange {
        /// The metric.
        metric: MetricId,
        /// The value given.
        value: i64,
        /// The smallest allowed value.
        min: i64,
        /// The largest allowed value.
        max: i64,
    },
    /// The catalogue does not allow this metric for this purpose.
    PurposeNotAllowed {
        /// The metric.
        metric: MetricId,
        /// The purpose given.
        purpose: PurposeId,
    },
    /// The purpose rests on consent and none is in force for any recipient.
    NoConsent {
        /// The metric.
        metric: MetricId,
        /// Why, as far as the device can tell.
        reason: NoConsentReason,
    },
    /// The metric's ε budget for the current period is spent.
    BudgetExhausted(MetricId),
    /// The metric has an ε budget and its charge could not be kept (storage failed or
    /// keeps nothing, or the saved state was lost): the recorder fails closed.
    BudgetUnsaved(MetricId),
    /// The metric's local-DP mechanism could not encode the value.
    Unencodable(MetricId),
}

impl RecordError {
    /// The metric the call named.
    #[must_use]
    pub const fn metric(&self) -> &MetricId {
        match self {
            Self::UnknownMetric(m)
            | Self::WrongTrack(m)
            | Self::BudgetExhausted(m)
            | Self::BudgetUnsaved(m)
            | Self::Unencodable(m)
            | Self::WrongValue { metric: m, .. }
            | Self::LabelOutOfRange { metric: m, .. }
            | Self::OutOfRange { metric: m, .. }
            | Self::PurposeNotAllowed { metric: m, .. }
            | Self::NoConsent { metric: m, .. } => m,
        }
    }

    /// What kind of mistake it is, without its details: the key it is counted under.
    #[must_use]
    pub const fn cause(&self) -> Cause {
        match self {
            Self::UnknownMetric(_) => Cause::UnknownMetric,
            Self::WrongTrack(_) => Cause::WrongTrack,
            Self::WrongValue { .. } => Cause::WrongValue,
            Self::LabelOutOfRange { .. } => Cause::LabelOutOfRange,
            Self::OutOfRange { .. } => Cause::OutOfRange,
            Self::PurposeNotAllowed { .. } => Cause::PurposeNotAllowed,
            Self::NoConsent { reason, .. } => Cause::NoConsent(*reason),
            Self::BudgetExhausted(_) => Cause::BudgetExhausted,
            Self::BudgetUnsaved(_) => Cause::BudgetUnsaved,
            Self::Unencodable(_) => Cause::Unencodable,
        }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownMetric(m) => write!(f, "no metric `{m}` in the catalogue"),
            Self::WrongTrack(m) => write!(
                f,
                "metric `{m}` is on the other track (record for anonymous statistics, record_service for pseudonymous records)"
            ),
            Self::WrongValue { metric, expected } => write!(f, "metric `{metric}` takes a {expected} value"),
            Self::LabelOutOfRange { metric, index, labels } => {
                write!(f, "metric `{metric}` has {labels} labels; index {index} is past the last")
            }
            Self::OutOfRange { metric, value, min, max } => {
                write!(f, "metric `{metric}` takes values in [{min}, {max}], not {value}")
            }
            Self::PurposeNotAllowed { metric, purpose } => {
                write!(f, "the catalogue does not allow metric `{metric}` for purpose `{purpose}`")
            }
            Self::NoConsent { metric, reason } => {
                write!(f, "no consent in force for metric `{metric}`: {reason}")
            }
            Self::BudgetExhausted(m) => write!(f, "metric `{m}`: the ε budget of this period is spent"),
            Self::BudgetUnsaved(m) => write!(f, "metric `{m}`: the ε budget's charge could not be saved"),
            Self::Unencodable(m) => write!(f, "metric `{m}`: the mechanism could not encode the value"),
        }
    }
}

impl core::error::Error for RecordError {}

/// The variants of [`super::Value`], to say which one a metric takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ValueKind {
    /// [`super::Value::Bool`]: boolean metrics.
    Bool,
    /// [`super::Value::Category`]: categorical metrics.
    Category,
    /// [`super::Value::Int`]: numeric metrics and counts.
    Int,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bool => "Value::Bool",
            Self::Category => "Value::Category",
            Self::Int => "Value::Int",
        })
    }
}

/// Why no consent is in force, as far as the device can tell from the receipts it holds
/// that name the metric (and, for statistics, the purpose).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum NoConsentReason {
    /// No receipt names this metric (for this purpose): consent was never given.
    NotGiven,
    /// Every receipt naming it was withdrawn or has expired.
    Ended,
    /// A receipt names it but is not in force yet (`valid_from` is later).
    NotYetInForce,
    /// A receipt is in force now but started within the record's time bucket; the
    /// aggregator checks consent at the bucket's start, so records resume with the next
    /// bucket (docs/catalogue.md, "Consent timing").
    StartedThisBucket,
}

impl fmt::Display for NoConsentReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotGiven => "consent was never given",
            Self::Ended => "consent was withdrawn or has expired",
            Self::NotYetInForce => "consent is not in force yet",
            Self::StartedThisBucket => "consent started within the current time bucket",
        })
    }
}

/// What a per-metric error counter counts: a [`RecordError`] without its details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Cause {
    /// [`RecordError::UnknownMetric`].
    UnknownMetric,
    /// [`RecordError::WrongTrack`].
    WrongTrack,
    /// [`RecordError::WrongValue`].
    WrongValue,
    /// [`RecordError::LabelOutOfRange`].
    LabelOutOfRange,
    /// [`RecordError::OutOfRange`].
    OutOfRange,
    /// [`RecordError::PurposeNotAllowed`].
    PurposeNotAllowed,
    /// [`RecordError::NoConsent`], with its reason.
    NoConsent(NoConsentReason),
    /// [`RecordError::BudgetExhausted`].
    BudgetExhausted,
    /// [`RecordError::BudgetUnsaved`].
    BudgetUnsaved,
    /// [`RecordError::Unencodable`].
    Unencodable,
}

//! Why a catalogue is rejected. Every variant names the offending item.

use alloc::string::String;
use core::fmt;

use crate::epsilon::EpsilonError;
use crate::ids::{MetricId, PurposeId, RecipientId};
use crate::retention::DurationError;

/// Why a catalogue is rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CatalogueError {
    /// Two items of the same kind (`"purpose"`, `"recipient"`, `"metric"`) share an id.
    DuplicateId {
        /// The kind of item.
        kind: &'static str,
        /// The id.
        id: String,
    },
    /// The catalogue's name is not an id (`[a-z0-9][a-z0-9_.-]*`, 1–64 bytes).
    BadName(String),
    /// Version 0 is reserved for "no catalogue".
    ZeroVersion,
    /// More than [`super::MAX_ITEMS`] items of one kind.
    TooManyItems(&'static str),
    /// The encoded catalogue is larger than [`super::MAX_CANONICAL_BYTES`].
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// A metric names a purpose the catalogue does not define.
    UnknownPurpose {
        /// The metric.
        metric: MetricId,
        /// The undefined purpose.
        purpose: PurposeId,
    },
    /// A metric names a recipient the catalogue does not define.
    UnknownRecipient {
        /// The metric.
        metric: MetricId,
        /// The undefined recipient.
        recipient: RecipientId,
    },
    /// A metric allows no purpose.
    NoPurpose(MetricId),
    /// A metric allows no recipient.
    NoRecipient(MetricId),
    /// A categorical metric with fewer than two labels.
    DomainTooSmall {
        /// The metric.
        metric: MetricId,
        /// How many labels it has.
        size: usize,
    },
    /// A categorical metric with more than [`super::MAX_CATEGORICAL_LABELS`] labels, or a
    /// count whose maximum is 0 or above 2^32.
    DomainTooLarge {
        /// The metric.
        metric: MetricId,
        /// Its size.
        size: u64,
    },
    /// A categorical metric lists a label twice, or an empty label.
    BadLabel {
        /// The metric.
        metric: MetricId,
        /// The label.
        label: String,
    },
    /// A numeric metric with `min >= max`, or a range too wide to compute with (over 2^53).
    BadRange {
        /// The metric.
        metric: MetricId,
        /// Its minimum.
        min: i64,
        /// Its maximum.
        max: i64,
    },
    /// An ε that is not a positive rational within bounds.
    BadEpsilon {
        /// The metric.
        metric: MetricId,
        /// What is wrong with it.
        error: EpsilonError,
    },
    /// A mechanism that does not fit the metric's kind (a numeric mechanism on a
    /// categorical metric or the reverse).
    MechanismMismatch {
        /// The metric.
        metric: MetricId,
    },
    /// A per-period budget smaller than one report's ε, or over a calendar period.
    BadBudget {
        /// The metric.
        metric: MetricId,
    },
    /// A time precision that is not a fixed period of at most 366 days.
    BadPrecision {
        /// The metric.
        metric: MetricId,
    },
    /// A metric's maximum hold exceeds the catalogue's or a purpose's limit.
    HoldTooLong {
        /// The metric.
        metric: MetricId,
        /// The purpose whose limit is exceeded; `None` for the catalogue-wide limit.
        purpose: Option<PurposeId>,
    },
    /// A maximum hold given as "until an event": a maximum must bound time by itself.
    EventBoundLimit {
        /// The item (`limits`, a purpose or a metric id).
        item: String,
    },
    /// The pseudonym epoch is not a fixed period between one hour and one year.
    BadEpoch,
    /// The token period is not a fixed period between one hour and one year, or the
    /// tokens per period are not between 1 and 1 000 000.
    BadTokenLimits,
    /// A recipient's country is not two upper-case ASCII letters.
    BadCountry {
        /// The recipient.
        recipient: RecipientId,
    },
    /// A required text (description, name) is empty or over 1 024 bytes.
    BadText {
        /// The item.
        item: String,
        /// The field.
        field: &'static str,
    },
    /// A field is missing or does not belong with the others (TOML form).
    Field {
        /// The item.
        item: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// A duration or period that does not parse (TOML form).
    BadDuration {
        /// The item.
        item: String,
        /// What is wrong.
        error: DurationError,
    },
    /// An id that does not parse (TOML form).
    BadId(String),
    /// The TOML does not parse, or has unknown fields; the message says where.
    Toml(String),
    /// Canonical bytes that do not decode.
    Malformed,
    /// A certifier key (`[enrollment] certifiers`) that is not a valid Ed25519 public
    /// key, is of small order, is listed twice, or one too many (more than
    /// [`MAX_CERTIFIERS`](super::model::MAX_CERTIFIERS)); the key in hex, or the count.
    BadCertifier(String),
}

impl fmt::Display for CatalogueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateId { kind, id } => write!(f, "duplicate {kind} id `{id}`"),
            Self::BadName(n) => write!(f, "catalogue name `{n}` is not an id"),
            Self::ZeroVersion => f.write_str("catalogue version must be >= 1"),
            Self::TooManyItems(k) => write!(f, "too many {k} items"),
            Self::TooLarge { bytes } => write!(f, "catalogue of {bytes} bytes is too large"),
            Self::UnknownPurpose { metric, purpose } => {
                write!(f, "metric `{metric}` names unknown purpose `{purpose}`")
            }
            Self::UnknownRecipient { metric, recipient } => {
                write!(f, "metric `{metric}` names unknown recipient `{recipient}`")
            }
            Self::NoPurpose(m) => write!(f, "metric `{m}` allows no purpose"),
            Self::NoRecipient(m) => write!(f, "metric `{m}` allows no recipient"),
            Self::DomainTooSmall { metric, size } => {
                write!(f, "metric `{metric}` has {size} labels; at least 2 are needed")
            }
            Self::DomainTooLarge { metric, size } => {
                write!(f, "metric `{metric}` has a domain of {size}: too large")
            }
            Self::BadLabel { metric, label } => {
                write!(f, "metric `{metric}` has a bad or repeated label `{label}`")
            }
            Self::BadRange { metric, min, max } => {
                write!(f, "metric `{metric}` has a bad range [{min}, {max}]")
            }
            Self::BadEpsilon { metric, error } => write!(f, "metric `{metric}`: {error}"),
            Self::MechanismMismatch { metric } => {
                write!(f, "metric `{metric}`: mechanism does not fit its kind")
            }
            Self::BadBudget { metric } => {
                write!(f, "metric `{metric}`: budget below one report's epsilon or over a calendar period")
            }
            Self::BadPrecision { metric } => {
                write!(f, "metric `{metric}`: time precision must be a fixed period of at most 366 days")
            }
            Self::HoldTooLong { metric, purpose: Some(p) } => {
                write!(f, "metric `{metric}`: max hold exceeds purpose `{p}`'s limit")
            }
            Self::HoldTooLong { metric, purpose: None } => {
                write!(f, "metric `{metric}`: max hold exceeds the catalogue's limit")
            }
            Self::EventBoundLimit { item } => write!(f, "`{item}`: a maximum hold cannot be until an event"),
            Self::BadTokenLimits => f.write_str(
                "token period must be a fixed period between 1 hour and 366 days, tokens per period 1 to 1000000",
            ),
            Self::BadEpoch => {
                f.write_str("pseudonym epoch must be a fixed period between 1 hour and 366 days")
            }
            Self::BadCountry { recipient } => {
                write!(f, "recipient `{recipient}`: country must be ISO 3166-1 alpha-2")
            }
            Self::BadText { item, field } => write!(f, "`{item}`: {field} must be 1 to 1024 bytes"),
            Self::Field { item, field, problem } => write!(f, "`{item}`: field `{field}` {problem}"),
            Self::BadDuration { item, error } => write!(f, "`{item}`: {error}"),
            Self::BadId(e) => write!(f, "bad id: {e}"),
            Self::Toml(e) => write!(f, "TOML: {e}"),
            Self::Malformed => f.write_str("malformed canonical catalogue bytes"),
            Self::BadCertifier(k) => write!(f, "enrollment certifier {k}: not a usable Ed25519 public key, or listed twice, or one too many"),
        }
    }
}

impl core::error::Error for CatalogueError {}

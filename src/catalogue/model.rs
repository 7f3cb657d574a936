//! The catalogue's items. Plain data with public fields: a [`super::Catalogue`] checks
//! them as a whole when it is built.

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;

use crate::Epsilon;
use crate::ids::{CategoryId, CertifierPublicKey, PurposeId, RecipientId};
use crate::ldp::MechanismName;
use crate::retention::{Duration, Period};

/// The most labels a categorical metric may have (the LDP decoders' memory is
/// proportional to it).
pub const MAX_CATEGORICAL_LABELS: usize = 1 << 20;

/// The most purposes, recipients or metrics a catalogue may hold.
pub const MAX_ITEMS: usize = 10_000;

/// The legal basis of a purpose (GDPR Art. 6(1)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LegalBasis {
    /// Art. 6(1)(a): the data subject's consent. Data flows only under a receipt.
    Consent,
    /// Art. 6(1)(b): performance of a contract.
    Contract,
    /// Art. 6(1)(c): a legal obligation.
    LegalObligation,
    /// Art. 6(1)(d): vital interests.
    VitalInterest,
    /// Art. 6(1)(e): a task in the public interest.
    PublicTask,
    /// Art. 6(1)(f): legitimate interests.
    LegitimateInterest,
}

/// A purpose of processing.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Purpose {
    /// What the data is used for, in words a data subject can read.
    pub description: String,
    /// Why the processing is lawful.
    pub legal_basis: LegalBasis,
    /// The longest any metric may be held for this purpose, if shorter than the
    /// catalogue's limit.
    pub max_hold: Option<Duration>,
}

impl Purpose {
    /// A purpose with no hold limit of its own.
    #[must_use]
    pub fn new(description: &str, legal_basis: LegalBasis) -> Self {
        Self { description: String::from(description), legal_basis, max_hold: None }
    }
}

/// A recipient's role (GDPR Art. 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Decides purposes and means.
    Controller,
    /// Processes on a controller's behalf.
    Processor,
    /// Any other party data is disclosed to.
    ThirdParty,
}

/// A party data may be disclosed to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recipient {
    /// Display name.
    pub name: String,
    /// Role in the processing.
    pub role: Role,
    /// ISO 3166-1 alpha-2 country code, upper case (`FR`, `DE`, `US`).
    pub country: String,
}

impl Recipient {
    /// A recipient.
    #[must_use]
    pub fn new(name: &str, role: Role, country: &str) -> Self {
        Self { name: String::from(name), role, country: String::from(country) }
    }
}

/// How sensitive a metric's data category is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sensitivity {
    /// Device state with little bearing on a person.
    Low,
    /// Usage that reveals habits.
    Medium,
    /// Location, presence, anything that reveals a person's life.
    High,
    /// GDPR Art. 9 special categories (health and the like).
    Special,
}

/// What a metric's values are.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MetricKind {
    /// `true` or `false`.
    Boolean,
    /// One of `labels` (at least 2, at most [`MAX_CATEGORICAL_LABELS`], distinct).
    Categorical {
        /// The labels, in the order that gives their indices.
        labels: Vec<String>,
    },
    /// An integer in `[min, max]`.
    Numeric {
        /// Smallest value.
        min: i64,
        /// Largest value; greater than `min`.
        max: i64,
    },
    /// A count of events in `[0, max]` per time bucket.
    Count {
        /// Largest count; values above are clamped on the device.
        max: u64,
    },
}

impl MetricKind {
    /// The number of categories for a categorical or boolean metric.
    #[must_use]
    pub fn categories(&self) -> Option<usize> {
        match self {
            Self::Boolean => Some(2),
            Self::Categorical { labels } => Some(labels.len()),
            Self::Numeric { .. } | Self::Count { .. } => None,
        }
    }

    /// The category labels in index order (`false`, `true` for a boolean); empty for a
    /// numeric or count metric.
    ///
    /// ```
    /// use confiance::catalogue::MetricKind;
    ///
    /// assert_eq!(MetricKind::Boolean.labels(), ["false", "true"]);
    /// assert!(MetricKind::Count { max: 10 }.labels().is_empty());
    /// ```
    #[must_use]
    pub fn labels(&self) -> Vec<&str> {
        match self {
            Self::Boolean => alloc::vec!["false", "true"],
            Self::Categorical { labels } => labels.iter().map(String::as_str).collect(),
            Self::Numeric { .. } | Self::Count { .. } => Vec::new(),
        }
    }
}

/// A per-period cap on the ε one device spends on one metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Budget {
    /// Total ε allowed per period.
    pub epsilon: Epsilon,
    /// The period (a fixed number of seconds: no months or years).
    pub period: Period,
}

/// How a metric is protected.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Privacy {
    /// Anonymous statistics under local differential privacy.
    Ldp {
        /// ε per report.
        epsilon: Epsilon,
        /// The mechanism, or `auto`.
        mechanism: MechanismName,
        /// The device's cap per period, if any.
        budget: Option<Budget>,
    },
    /// Exact values under a consent receipt and a recipient-scoped pseudonym.
    Pseudonymous,
}

/// A metric the catalogue allows to be collected.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Metric {
    /// What is measured, in words a data subject can read.
    pub description: String,
    /// The values.
    pub kind: MetricKind,
    /// The data category (after W3C DPV), such as `usage` or `location`.
    pub category: CategoryId,
    /// How sensitive the category is.
    pub sensitivity: Sensitivity,
    /// How it is protected.
    pub privacy: Privacy,
    /// Purposes it may serve (at least one).
    pub purposes: BTreeSet<PurposeId>,
    /// Recipients it may go to (at least one).
    pub recipients: BTreeSet<RecipientId>,
    /// The longest anything collected for it may be held.
    pub max_hold: Duration,
    /// Width of the time buckets reports are truncated to (a fixed period, at most a year).
    pub time_precision: Period,
}

/// One hour, the default time precision.
const HOUR: u64 = 3_600;

impl Metric {
    /// A metric with sensible defaults: sensitivity `Low`, local DP with ε = 1 and the
    /// `auto` mechanism, a maximum hold of 30 days, hourly buckets; no purposes and no
    /// recipients yet (a catalogue rejects a metric without them).
    #[must_use]
    pub fn new(description: &str, kind: MetricKind, category: CategoryId) -> Self {
        Self {
            description: String::from(description),
            kind,
            category,
            sensitivity: Sensitivity::Low,
            privacy: Privacy::Ldp { epsilon: Epsilon::ONE, mechanism: MechanismName::Auto, budget: None },
            purposes: BTreeSet::new(),
            recipients: BTreeSet::new(),
            max_hold: Duration::Temporal(Period::DAYS_30),
            time_precision: Period::HOUR,
        }
    }

    /// Local DP with `epsilon` per report and `mechanism`.
    #[must_use]
    pub fn ldp(mut self, epsilon: Epsilon, mechanism: MechanismName) -> Self {
        self.privacy = Privacy::Ldp { epsilon, mechanism, budget: None };
        self
    }

    /// A per-period ε cap (only meaningful on a local DP metric).
    #[must_use]
    pub fn budget(mut self, budget: Budget) -> Self {
        if let Privacy::Ldp { budget: b, .. } = &mut self.privacy {
            *b = Some(budget);
        }
        self
    }

    /// A pseudonymous service record.
    #[must_use]
    pub fn pseudonymous(mut self) -> Self {
        self.privacy = Privacy::Pseudonymous;
        self
    }

    /// Sets the sensitivity.
    #[must_use]
    pub fn sensitivity(mut self, sensitivity: Sensitivity) -> Self {
        self.sensitivity = sensitivity;
        self
    }

    /// Sets the allowed purposes.
    #[must_use]
    pub fn purposes(mut self, purposes: impl IntoIterator<Item = PurposeId>) -> Self {
        self.purposes = purposes.into_iter().collect();
        self
    }

    /// Sets the allowed recipients.
    #[must_use]
    pub fn recipients(mut self, recipients: impl IntoIterator<Item = RecipientId>) -> Self {
        self.recipients = recipients.into_iter().collect();
        self
    }

    /// Sets the maximum hold.
    #[must_use]
    pub fn max_hold(mut self, hold: Duration) -> Self {
        self.max_hold = hold;
        self
    }

    /// Sets the time precision.
    #[must_use]
    pub fn time_precision(mut self, precision: Period) -> Self {
        self.time_precision = precision;
        self
    }

    /// The bucket width in seconds (validated to be a fixed period).
    #[must_use]
    pub fn bucket_secs(&self) -> u64 {
        self.time_precision.fixed_secs().unwrap_or(HOUR)
    }

    /// The LDP domain of the metric's values: booleans are two categories, counts are
    /// integers in `[0, max]`.
    #[must_use]
    pub fn ldp_domain(&self) -> Option<crate::ldp::Domain> {
        use crate::ldp::Domain;
        Some(match &self.kind {
            MetricKind::Boolean => Domain::Categorical { d: 2 },
            MetricKind::Categorical { labels } => {
                Domain::Categorical { d: u32::try_from(labels.len()).ok()? }
            }
            MetricKind::Numeric { min, max } => Domain::Numeric { min: *min, max: *max },
            MetricKind::Count { max } => Domain::Numeric { min: 0, max: i64::try_from(*max).ok()? },
        })
    }

    /// The local-DP mechanism the device encodes with and the aggregator decodes with
    /// (`auto` resolved), before its period's key
    /// ([`crate::ldp::Selection::for_period`]); `None` for a pseudonymous metric.
    #[must_use]
    pub fn mechanism(&self) -> Option<crate::ldp::Selection> {
        match &self.privacy {
            Privacy::Ldp { epsilon, mechanism, .. } => {
                crate::ldp::Selection::new(self.ldp_domain()?, *epsilon, *mechanism).ok()
            }
            Privacy::Pseudonymous => None,
        }
    }

    /// Whether this metric is anonymous (local DP).
    #[must_use]
    pub const fn is_anonymous(&self) -> bool {
        matches!(self.privacy, Privacy::Ldp { .. })
    }
}

/// Catalogue-wide limits.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// No metric may be held longer than this.
    pub max_hold: Duration,
    /// Length of a pseudonym epoch: devices derive a fresh scoped pseudonym per
    /// recipient each epoch (a fixed period).
    pub pseudonym_epoch: Period,
    /// The fewest reports an estimate of an anonymous metric may be released from (like
    /// DAP's minimum batch size): a release from fewer is refused, because a handful of
    /// randomized reports says more about the devices that sent them than about the
    /// population, and its estimate is mostly noise. `1` (the default) sets no minimum.
    pub min_release_reports: u32,
    /// Length of a report-token period (a fixed period, 1 hour to 366 days): anonymous
    /// report tokens are issued per (recipients, purpose, period).
    pub token_period: Period,
    /// The most report tokens one device may be issued per scope (recipients, purpose)
    /// and token period, that is the most envelopes it may send for that scope in that
    /// period (1 to 1 000 000). This bounds what one device can inject.
    pub tokens_per_period: u32,
}

/// The default [`Limits::tokens_per_period`]: 24 a day is an envelope an hour per scope.
pub const DEFAULT_TOKENS_PER_PERIOD: u32 = 24;
/// The largest [`Limits::tokens_per_period`].
pub const MAX_TOKENS_PER_PERIOD: u32 = 1_000_000;

impl Default for Limits {
    /// Hold at most 10 years; pseudonym epochs of 30 days; no minimum release size;
    /// token periods of one day with [`DEFAULT_TOKENS_PER_PERIOD`] tokens per device and scope.
    fn default() -> Self {
        Self {
            max_hold: Duration::Temporal(Period::YEARS_10),
            pseudonym_epoch: Period::DAYS_30,
            min_release_reports: 1,
            token_period: Period::DAY,
            tokens_per_period: DEFAULT_TOKENS_PER_PERIOD,
        }
    }
}

/// The most certifiers a catalogue may name.
pub const MAX_CERTIFIERS: usize = 64;

/// Who may enroll (docs/catalogue.md, "Enrollment"): the certifiers (manufacturers)
/// whose [`DeviceCertificate`](crate::consent::DeviceCertificate)s the aggregator
/// requires before it accepts a delegation of a device key or issues report tokens to a
/// key. None (the default): enrollment is open, as before.
///
/// ```
/// use confiance::catalogue::Enrollment;
/// use confiance::ids::CertifierPublicKey;
/// assert!(Enrollment::default().is_open());
/// assert!(!Enrollment::certified_by([CertifierPublicKey([1; 32])]).is_open());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Enrollment {
    /// The trusted certifiers' public keys, sorted, each once.
    pub certifiers: Vec<CertifierPublicKey>,
}

impl Enrollment {
    /// Enrollment restricted to keys certified by `certifiers` (sorted and deduplicated
    /// here).
    /// ```
    /// use confiance::catalogue::Enrollment;
    /// use confiance::consent::CertifierKey;
    /// let (a, b) = (CertifierKey::from_bytes(&[7; 32]).public_key(), CertifierKey::from_bytes(&[8; 32]).public_key());
    /// assert_eq!(Enrollment::certified_by([b, a, b]), Enrollment::certified_by([a, b]));
    /// ```
    pub fn certified_by(certifiers: impl IntoIterator<Item = CertifierPublicKey>) -> Self {
        let mut certifiers: Vec<_> = certifiers.into_iter().collect();
        certifiers.sort_unstable();
        certifiers.dedup();
        Self { certifiers }
    }

    /// Whether anyone may enroll (no certifier named).
    /// ```
    /// use confiance::catalogue::Enrollment;
    /// assert!(Enrollment::default().is_open());
    /// ```
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.certifiers.is_empty()
    }
}

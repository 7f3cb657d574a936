//! What one report is, as sealed in an envelope (docs/design.md#envelopes): a random 16-byte id, the
//! metric, the start of its time bucket, its retention tag and its payload.
//!
//! Anonymous statistics carry an LDP report and nothing that identifies the device; the
//! tag on them names no receipt. Pseudonymous records carry the device's pseudonym for
//! their one recipient (scoped to the current epoch) and the exact value.

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::envelope::ReportId;
use crate::ids::MetricId;
use crate::ldp::LdpReport;
use crate::pseudonym::{Epoch, ScopedPseudonym};
use crate::retention::RetentionTag;

/// An exact value of a pseudonymous record. Integers are encoded at full width
/// (little-endian, never varints), so every record of a metric has the same length
/// whatever its value (docs/wire-format.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordValue {
    /// A boolean metric.
    Bool(bool),
    /// A categorical metric: the label's index.
    Category(#[serde(with = "postcard::fixint::le")] u32),
    /// A numeric metric.
    Numeric(#[serde(with = "postcard::fixint::le")] i64),
    /// A count.
    Count(#[serde(with = "postcard::fixint::le")] u64),
}

/// What a report carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Payload {
    /// An anonymous statistic under local differential privacy.
    Statistic(LdpReport),
    /// A pseudonymous service record.
    Record {
        /// The device's pseudonym for the record's recipient in `epoch`.
        pseudonym: ScopedPseudonym,
        /// The pseudonym's epoch.
        epoch: Epoch,
        /// The exact value.
        value: RecordValue,
    },
}

/// One report. See the [module documentation](self).
///
/// ```
/// use confiance::report::{Payload, Report};
/// use confiance::ldp::LdpReport;
/// // Reports are built by the Recorder; this shows the shape only.
/// fn is_anonymous(r: &Report) -> bool {
///     matches!(r.payload, Payload::Statistic(_)) && r.tag.receipt().is_none()
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Report {
    /// 16 random bytes: the aggregator's replay protection.
    pub id: ReportId,
    /// The metric.
    pub metric: MetricId,
    /// Start of the report's time bucket (the metric's precision).
    pub time: Timestamp,
    /// Purpose, audience, hold, catalogue version (and receipt, on records).
    pub tag: RetentionTag,
    /// The statistic or the record.
    pub payload: Payload,
}

/// Why the aggregator refused one report of an envelope: the stable codes of its answer
/// (docs/wire-format.md §6, docs/http.md). The device counts permanent refusals per
/// metric and code, and retries those the aggregator marks retryable.
///
/// ```
/// use confiance::report::Refusal;
/// assert_eq!(Refusal::from_code("not_consented"), Refusal::NotConsented);
/// assert_eq!(Refusal::NotConsented.code(), "not_consented");
/// assert_eq!(Refusal::from_code("a code of a later version"), Refusal::Other);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Refusal {
    /// `unknown_metric`: the aggregator's catalogue has no such metric.
    UnknownMetric,
    /// `tag_not_allowed`: the tag is wider than the catalogue (or the receipt) allows.
    TagNotAllowed,
    /// `wrong_track`: a statistic of a pseudonymous metric or a record of an anonymous one.
    WrongTrack,
    /// `misaligned_time`: the time is not the start of a bucket of the metric.
    MisalignedTime,
    /// `time_outside_window`: too old, after the envelope's day, or in the future.
    TimeOutsideWindow,
    /// `malformed_ldp_report`: the payload does not fit the metric's mechanism.
    MalformedLdpReport,
    /// `invalid_record_value`: the record's value does not fit the metric.
    InvalidRecordValue,
    /// `unknown_receipt`: the aggregator has not (yet) received the record's receipt.
    UnknownReceipt,
    /// `not_consented`: the ledger does not allow the record at its time.
    NotConsented,
    /// A code this version does not know.
    Other,
}

impl Refusal {
    const ALL: [Self; 9] = [
        Self::UnknownMetric,
        Self::TagNotAllowed,
        Self::WrongTrack,
        Self::MisalignedTime,
        Self::TimeOutsideWindow,
        Self::MalformedLdpReport,
        Self::InvalidRecordValue,
        Self::UnknownReceipt,
        Self::NotConsented,
    ];

    /// The stable code of the aggregator's answer.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::UnknownMetric => "unknown_metric",
            Self::TagNotAllowed => "tag_not_allowed",
            Self::WrongTrack => "wrong_track",
            Self::MisalignedTime => "misaligned_time",
            Self::TimeOutsideWindow => "time_outside_window",
            Self::MalformedLdpReport => "malformed_ldp_report",
            Self::InvalidRecordValue => "invalid_record_value",
            Self::UnknownReceipt => "unknown_receipt",
            Self::NotConsented => "not_consented",
            Self::Other => "other",
        }
    }

    /// The refusal of a code; [`Refusal::Other`] for a code this version does not know.
    #[must_use]
    pub fn from_code(code: &str) -> Self {
        Self::ALL.into_iter().find(|r| r.code() == code).unwrap_or(Self::Other)
    }
}

/// One report of an envelope that the aggregator did not keep, as its answer lists it:
/// the report's position in the envelope, why, and whether to send it again later. The
/// reports an answer does not list were accepted (or already held).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Refused {
    /// Position of the report in its envelope.
    pub index: u32,
    /// Why.
    pub refusal: Refusal,
    /// `true`: refused for now (send it again later, in a new envelope); `false`: refused
    /// for good (never send it again).
    pub retry: bool,
}

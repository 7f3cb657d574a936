//! What one report is, as sealed in an envelope (DESIGN.md §8): a random 16-byte id, the
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


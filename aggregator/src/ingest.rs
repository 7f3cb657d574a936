//! Ingest (DESIGN.md §9): size check → header → key → HPKE open → bounded decode →
//! catalogue digest → per report: metric, tag ⊆ catalogue (and, for records, ⊆ the
//! receipt), time within the accepted window, report id unseen → accumulate into the
//! partition (metric, time bucket, audience, hold class).
//!
//! An envelope is all or nothing: if any of its reports is refused, the envelope is
//! refused with an [`IngestError`] naming the report and the reason, and nothing it
//! carried is kept.

pub(crate) mod prepare;
mod replay;

pub(crate) use replay::ReplayFilter;

use core::fmt;

use confiance::envelope::{BatchError, EnvelopeId};
use confiance::ids::{MetricId, ReceiptId};
use confiance::retention::TagError;

use crate::decision::DecisionReason;
use crate::estimate::EstimateError;
use crate::issuer::TokenRefusal;
use crate::keys::OpenError;
use crate::store::StoreError;

/// Why an envelope was refused. Each is final for that envelope except
/// [`IngestError::Store`], after which the device should send it again.
#[derive(Debug)]
#[non_exhaustive]
pub enum IngestError {
    /// The frame is larger than the configured maximum; refused before parsing.
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// The envelope did not open (malformed, unknown/pending/expired key, decryption
    /// failure, another catalogue).
    Open(OpenError),
    /// The plaintext is not a valid report batch (too many reports, malformed, trailing
    /// bytes, non-canonical).
    Batch(BatchError),
    /// The envelope holds no report.
    Empty,
    /// This envelope was already ingested (a replay, or a resend of an acknowledged one).
    ReplayedEnvelope(EnvelopeId),
    /// A report refused.
    Report {
        /// Its position in the envelope.
        index: usize,
        /// Why.
        reason: ReportError,
    },
    /// The envelope's report tokens were refused (missing, another scope, expired,
    /// forged or already spent); nothing it carried is kept.
    Token(TokenRefusal),
    /// The store failed; nothing was kept and the envelope was not acknowledged.
    Store(StoreError),
}

/// Why one report of an envelope was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportError {
    /// The catalogue has no such metric.
    UnknownMetric(MetricId),
    /// The report id was already seen (in this envelope or an earlier one).
    Replayed,
    /// The tag is wider than the catalogue allows, or malformed.
    Tag(TagError),
    /// A statistic for a pseudonymous metric, or a record for an anonymous one.
    WrongTrack,
    /// The report's time is not the start of one of its metric's buckets.
    Misaligned,
    /// The report's time is after the envelope's day, or outside the accepted window
    /// (its bucket ended more than `max_age` ago, or it starts after `now + skew`).
    TimeOutsideWindow,
    /// The LDP payload does not fit the metric's mechanism.
    Ldp(EstimateError),
    /// The record's value does not fit the metric.
    InvalidValue,
    /// The record's receipt is not in the ledger.
    UnknownReceipt(ReceiptId),
    /// The ledger does not allow this record at its collection time.
    NotConsented(DecisionReason),
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownMetric(m) => write!(f, "unknown metric `{m}`"),
            Self::Replayed => f.write_str("report id already seen"),
            Self::Tag(e) => write!(f, "tag: {e}"),
            Self::WrongTrack => f.write_str("payload is on the wrong track for the metric"),
            Self::Misaligned => f.write_str("time is not the start of a bucket of the metric's precision"),
            Self::TimeOutsideWindow => f.write_str("time outside the accepted window"),
            Self::Ldp(e) => write!(f, "LDP payload: {e}"),
            Self::InvalidValue => f.write_str("record value does not fit the metric"),
            Self::UnknownReceipt(r) => write!(f, "unknown receipt {r}"),
            Self::NotConsented(r) => write!(f, "not consented: {r:?}"),
        }
    }
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len } => write!(f, "envelope of {len} bytes is too large"),
            Self::Open(e) => write!(f, "{e}"),
            Self::Batch(e) => write!(f, "report batch: {e:?}"),
            Self::Empty => f.write_str("envelope holds no report"),
            Self::ReplayedEnvelope(id) => write!(f, "envelope {id:?} already ingested"),
            Self::Report { index, reason } => write!(f, "report {index}: {reason}"),
            Self::Token(e) => write!(f, "token: {e}"),
            Self::Store(e) => write!(f, "store: {e}"),
        }
    }
}

impl std::error::Error for IngestError {}

impl IngestError {
    /// A stable, machine-readable code for this refusal (used by the CLI and HTTP API).
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "envelope_too_large",
            Self::Open(OpenError::Malformed(_)) => "malformed_envelope",
            Self::Open(OpenError::UnknownKey(_)) => "unknown_key",
            Self::Open(OpenError::KeyPending(_)) => "key_pending",
            Self::Open(OpenError::KeyExpired(_)) => "key_expired",
            Self::Open(OpenError::Decrypt) => "decrypt_failed",
            Self::Open(OpenError::BadCatalogueDigest { .. }) => "wrong_catalogue",
            Self::Batch(_) => "malformed_batch",
            Self::Empty => "empty_envelope",
            Self::ReplayedEnvelope(_) => "replayed_envelope",
            Self::Report { reason, .. } => match reason {
                ReportError::UnknownMetric(_) => "unknown_metric",
                ReportError::Replayed => "replayed_report",
                ReportError::Tag(_) => "tag_not_allowed",
                ReportError::WrongTrack => "wrong_track",
                ReportError::Misaligned => "misaligned_time",
                ReportError::TimeOutsideWindow => "time_outside_window",
                ReportError::Ldp(_) => "malformed_ldp_report",
                ReportError::InvalidValue => "invalid_record_value",
                ReportError::UnknownReceipt(_) => "unknown_receipt",
                ReportError::NotConsented(_) => "not_consented",
            },
            Self::Token(e) => e.code(),
            Self::Store(_) => "store_failed",
        }
    }
}

/// What the aggregator acknowledges for an envelope, once it is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// SHA-256 of the envelope.
    pub envelope: EnvelopeId,
    /// Reports it carried.
    pub reports: u32,
}

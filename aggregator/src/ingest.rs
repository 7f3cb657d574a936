//! Ingest (docs/design.md#ingest): size check → header → key → HPKE open → bounded decode →
//! catalogue digest → per report: metric, tag ⊆ catalogue (and, for records, ⊆ the
//! receipt), time within the accepted window, report id unseen → accumulate into the
//! partition (metric, time bucket, audience, hold class).
//!
//! An envelope is refused whole ([`IngestError`]) only when nothing in it can be trusted
//! or read: it does not open, does not decode, names another catalogue or a bad time
//! bucket, is a replay, its report tokens are refused, or the store fails. Otherwise each
//! report stands on its own (docs/wire-format.md §6): the valid ones are kept, and the
//! [`Ack`] lists each refused one with its [`Refusal`] code and whether the device should
//! send it again later ([`ReportError::retryable`]). A report already held (a resend) is
//! neither: it is acknowledged without being kept twice.

pub(crate) mod prehashed;
pub(crate) mod prepare;
mod replay;

pub(crate) use replay::{Probe, ReplayFilter};

use core::fmt;

use confiance::Timestamp;
use confiance::envelope::{BatchError, EnvelopeId};
use confiance::ids::{MetricId, ReceiptId};
use confiance::report::{Refusal, Refused};
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
    /// The header's `time_bucket` is not the start of a UTC day, or is a day that has not
    /// begun yet at `now + clock skew` (docs/wire-format.md §1).
    TimeBucket(Timestamp),
    /// This envelope was already ingested (a replay, or a resend of an acknowledged one).
    ReplayedEnvelope(EnvelopeId),
    /// The envelope's report tokens were refused (missing, another scope, expired,
    /// forged or already spent); nothing it carried is kept.
    Token(TokenRefusal),
    /// The store failed; nothing was kept and the envelope was not acknowledged.
    Store(StoreError),
}

/// Why one report of an envelope was refused (listed in the envelope's [`Ack`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportError {
    /// The catalogue has no such metric.
    UnknownMetric(MetricId),
    /// The tag is wider than the catalogue allows, or malformed.
    Tag(TagError),
    /// A statistic for a pseudonymous metric, or a record for an anonymous one.
    WrongTrack,
    /// The report's time is not the start of one of its metric's buckets.
    Misaligned,
    /// The report's time is after the envelope's day, or outside the accepted window
    /// (its bucket ended more than `max_age` ago, or it starts after `now + skew`), or
    /// its hold ended before it arrived (bucket end, or collection time for a record,
    /// plus the tag's hold is at or before `now`): it could not be kept at all.
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
            Self::TimeBucket(t) => {
                write!(f, "envelope time bucket {} is not the start of a UTC day that has begun", t.as_secs())
            }
            Self::ReplayedEnvelope(id) => {
                f.write_str("envelope ")?;
                for b in id.0 {
                    write!(f, "{b:02x}")?;
                }
                f.write_str(" already ingested")
            }
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
            Self::TimeBucket(_) => "bad_time_bucket",
            Self::ReplayedEnvelope(_) => "replayed_envelope",
            Self::Token(e) => e.code(),
            Self::Store(_) => "store_failed",
        }
    }
}

impl ReportError {
    /// The refusal as the device sees it (its stable code is [`Refusal::code`]).
    #[must_use]
    pub const fn refusal(&self) -> Refusal {
        match self {
            Self::UnknownMetric(_) => Refusal::UnknownMetric,
            Self::Tag(_) => Refusal::TagNotAllowed,
            Self::WrongTrack => Refusal::WrongTrack,
            Self::Misaligned => Refusal::MisalignedTime,
            Self::TimeOutsideWindow => Refusal::TimeOutsideWindow,
            Self::Ldp(_) => Refusal::MalformedLdpReport,
            Self::InvalidValue => Refusal::InvalidRecordValue,
            Self::UnknownReceipt(_) => Refusal::UnknownReceipt,
            Self::NotConsented(_) => Refusal::NotConsented,
        }
    }

    /// Whether the same report may be accepted later: only a record whose receipt the
    /// aggregator has not received yet (receipts and envelopes travel separately).
    /// Every other refusal is final: the report does not fit the catalogue, or the
    /// ledger refuses it at its own time, which a later send does not change.
    #[must_use]
    pub const fn retryable(&self) -> bool {
        matches!(self, Self::UnknownReceipt(_))
    }

    /// The refusal as an [`Ack`] lists it.
    #[must_use]
    pub fn refused(&self, index: usize) -> Refused {
        Refused {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            refusal: self.refusal(),
            retry: self.retryable(),
        }
    }
}

/// What the aggregator acknowledges for an envelope, once it is durable: per report,
/// accepted (not listed in `refused`), refused for good, or refused for now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// SHA-256 of the envelope.
    pub envelope: EnvelopeId,
    /// Reports kept (not counting those already held from an earlier send).
    pub reports: u32,
    /// The reports not kept, by position, with why and whether to retry; empty when every
    /// report was accepted.
    pub refused: Vec<Refused>,
}

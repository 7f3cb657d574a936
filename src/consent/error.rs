//! Why a receipt, a withdrawal or a consent change is refused.

use core::fmt;

use crate::ids::{CategoryId, MetricId, PurposeId, RecipientId};
use crate::retention::Duration;

/// Which signed consent message a decoding error is about, so that its message names
/// it: a bad withdrawal is reported as a withdrawal, never as a receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// A consent receipt.
    Receipt,
    /// A withdrawal of a receipt.
    Withdrawal,
    /// A device delegation.
    Delegation,
    /// A device revocation.
    Revocation,
}

impl Message {
    /// The message's name, lower case (`"withdrawal"`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Receipt => "receipt",
            Self::Withdrawal => "withdrawal",
            Self::Delegation => "delegation",
            Self::Revocation => "revocation",
        }
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a receipt, a withdrawal or a consent change is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsentError {
    /// More bytes than [`super::MAX_RECEIPT_BYTES`]: refused before decoding.
    TooLarge(Message),
    /// Bytes that do not decode as this message, or not in its canonical form.
    Malformed(Message),
    /// Bytes left over after a complete message.
    TrailingBytes(Message),
    /// A format version this build does not know, of this message.
    UnsupportedVersion(Message, u8),
    /// The device key is not a valid Ed25519 public key.
    BadKey,
    /// The signature does not verify under the device key.
    BadSignature,
    /// `valid_until` is not after `valid_from`.
    InvertedValidity,
    /// The receipt covers no metric and no category.
    EmptyScope,
    /// The receipt names a catalogue other than the one it is checked against.
    CatalogueMismatch,
    /// The receipt names a recipient the catalogue does not define.
    UnknownRecipient(RecipientId),
    /// The receipt names a purpose the catalogue does not define.
    UnknownPurpose(PurposeId),
    /// The receipt names a metric the catalogue does not define.
    UnknownMetric(MetricId),
    /// The receipt names a data category with no metric the catalogue lets this
    /// recipient have for this purpose.
    UnknownCategory(CategoryId),
    /// The catalogue does not let this recipient have this metric for this purpose:
    /// the scope is wider than the catalogue allows.
    ScopeTooWide(MetricId),
    /// No receipt with that id in this consent state.
    UnknownReceipt,
    /// The receipt was already withdrawn.
    AlreadyWithdrawn,
    /// A key that does not fit: a delegation for another device key than the one
    /// given, or a restored receipt of another subject.
    KeyMismatch,
    /// The subject id is not the hash of the subject key carried with it, or a
    /// withdrawal names another subject (or subject key) than its receipt.
    SubjectKeyMismatch,
    /// Only a device that holds the subject key itself can do this (self-delegation).
    NotSubjectKey,
    /// A narrowed scope that is not a strict subset of the receipt's scope.
    NotNarrower,
    /// A withdrawal or narrowing at an instant before the receipt started.
    BeforeValidity,
    /// The hold asked for is longer than the catalogue lets this metric be held: a
    /// device signs no promise the aggregator would not keep.
    HoldTooLong {
        /// The first covered metric whose maximum hold is exceeded.
        metric: MetricId,
        /// That metric's maximum hold.
        max: Duration,
    },
}

impl fmt::Display for ConsentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge(m) => write!(f, "{m} is too large"),
            Self::Malformed(m) => write!(f, "{m} bytes are malformed"),
            Self::TrailingBytes(m) => write!(f, "trailing bytes after the {m}"),
            Self::UnsupportedVersion(m, v) => write!(f, "unsupported {m} version {v}"),
            Self::BadKey => f.write_str("device key is not a valid Ed25519 public key"),
            Self::BadSignature => f.write_str("signature does not verify"),
            Self::InvertedValidity => f.write_str("valid_until must be after valid_from"),
            Self::EmptyScope => f.write_str("receipt covers nothing"),
            Self::CatalogueMismatch => f.write_str("receipt is for another catalogue"),
            Self::UnknownRecipient(r) => write!(f, "unknown recipient `{r}`"),
            Self::UnknownPurpose(p) => write!(f, "unknown purpose `{p}`"),
            Self::UnknownMetric(m) => write!(f, "unknown metric `{m}`"),
            Self::UnknownCategory(c) => write!(f, "no allowed metric in category `{c}`"),
            Self::ScopeTooWide(m) => {
                write!(f, "the catalogue does not allow metric `{m}` for this recipient and purpose")
            }
            Self::UnknownReceipt => f.write_str("unknown receipt"),
            Self::AlreadyWithdrawn => f.write_str("already withdrawn"),
            Self::KeyMismatch => f.write_str("the key does not fit"),
            Self::SubjectKeyMismatch => f.write_str("the subject id is not the hash of the subject key"),
            Self::NotSubjectKey => f.write_str("this device does not hold the subject key"),
            Self::NotNarrower => f.write_str("narrowed scope must be a strict subset"),
            Self::BeforeValidity => f.write_str("instant is before the receipt's validity"),
            Self::HoldTooLong { metric, max } => {
                write!(f, "hold is longer than metric `{metric}`'s maximum of {max}")
            }
        }
    }
}

impl core::error::Error for ConsentError {}

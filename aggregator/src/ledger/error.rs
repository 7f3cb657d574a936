//! Why the ledger refuses an input or cannot open its store.

use core::fmt;

use confiance::consent::{CertificateError, ConsentError};
use confiance::ids::{CertificateId, DelegationId, MetricId, PurposeId, ReceiptId, RecipientId, SubjectId};

use super::EnrollError;

/// Why the ledger refuses an input, or cannot read or write its store.
///
/// A refused input changes nothing: neither the SQLite tables nor the in-memory index.
#[derive(Debug)]
#[non_exhaustive]
pub enum LedgerError {
    /// The receipt or withdrawal bytes do not decode, or their signature, shape or
    /// catalogue check fails; the [`ConsentError`] says which (bad signature, unknown
    /// purpose, recipient or metric, scope too wide, another catalogue, …).
    Consent(ConsentError),
    /// A receipt with this id is already in the ledger.
    DuplicateReceipt(ReceiptId),
    /// A record or disclosure names a receipt the ledger does not hold.
    UnknownReceipt(ReceiptId),
    /// A withdrawal withdraws a consent (a receipt id) the ledger does not hold.
    WithdrawalOfUnknownConsent(ReceiptId),
    /// The signer of a receipt or withdrawal does not speak for its subject (not its key,
    /// not delegated, delegation expired or revoked, subject closed); the
    /// [`EnrollError`] says which.
    Enroll(EnrollError),
    /// A delegation with this id is already in the ledger.
    DuplicateDelegation(DelegationId),
    /// A delegation of a device key another subject already delegated.
    DeviceEnrolledElsewhere,
    /// The device key was already revoked.
    AlreadyRevoked,
    /// A device certificate refused as it was posted: bytes, signature, a certifier the
    /// catalogue does not trust, or not in force when it arrived.
    Certificate(CertificateError),
    /// A device certificate with this id is already in the ledger.
    DuplicateCertificate(CertificateId),
    /// An override names a subject the ledger knows nothing of.
    UnknownSubject(SubjectId),
    /// An admin override without a reason, or with one longer than
    /// [`MAX_REASON_BYTES`](super::MAX_REASON_BYTES).
    BadReason,
    /// An admin override dated after the instant it is made: it would close the subject
    /// at once but withdraw its consents and revoke its devices only later.
    OverrideInFuture,
    /// A withdrawal naming another subject than its receipt's.
    SubjectMismatch,
    /// A withdrawal taking effect before its receipt started.
    BeforeValidity,
    /// The receipt was already withdrawn.
    AlreadyWithdrawn,
    /// A withdrawal (or record) said to be recorded before its receipt was.
    RecordedBeforeReceipt,
    /// A record with this id was already noted.
    DuplicateRecord([u8; 16]),
    /// A purge names a record the ledger does not hold.
    UnknownRecord([u8; 16]),
    /// A record that does not match its receipt (another subject or recipient, or a
    /// metric the receipt does not cover).
    RecordMismatch,
    /// A partition with this id was already noted.
    DuplicatePartition(Vec<u8>),
    /// A purge names a partition the ledger does not hold.
    UnknownPartition(Vec<u8>),
    /// The record or partition was already purged.
    AlreadyPurged,
    /// A recipient the catalogue does not define.
    UnknownRecipient(RecipientId),
    /// A metric the catalogue does not define.
    UnknownMetric(MetricId),
    /// A purpose the catalogue does not define.
    UnknownPurpose(PurposeId),
    /// A partition with an empty audience.
    EmptyAudience,
    /// The store was written under another catalogue than the one given to open it.
    CatalogueChanged,
    /// The store holds a row the ledger cannot read back.
    Corrupt(&'static str),
    /// SQLite failed.
    Store(rusqlite::Error),
    /// The shared (PostgreSQL) ledger failed, or another process's write won a race
    /// ([`StoreError::Conflict`](crate::store::StoreError::Conflict): nothing of this
    /// change was kept; refresh and try again), or the database's schema is newer than
    /// this build's.
    Shared(crate::store::StoreError),
    /// An in-memory table of the index is at its capacity (the name says which); the
    /// input was not recorded.
    Full(&'static str),
}

impl fmt::Display for LedgerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Consent(e) => write!(f, "consent refused: {e}"),
            Self::DuplicateReceipt(id) => write!(f, "receipt {id} is already in the ledger"),
            Self::UnknownReceipt(id) => write!(f, "unknown receipt {id}"),
            Self::WithdrawalOfUnknownConsent(id) => {
                write!(f, "withdrawal of consent {id}, which the ledger does not hold")
            }
            Self::Enroll(e) => write!(f, "signer refused: {e}"),
            Self::DuplicateDelegation(id) => write!(f, "delegation {id} is already in the ledger"),
            Self::Certificate(e) => write!(f, "device certificate refused: {e}"),
            Self::DuplicateCertificate(id) => write!(f, "device certificate {id} is already in the ledger"),
            Self::DeviceEnrolledElsewhere => f.write_str("the device key is delegated by another subject"),
            Self::AlreadyRevoked => f.write_str("the device key is already revoked"),
            Self::UnknownSubject(s) => write!(f, "unknown subject {s}"),
            Self::BadReason => f.write_str("an override needs a reason (at most 1024 bytes)"),
            Self::OverrideInFuture => f.write_str("an override takes effect now or in the past, not later"),
            Self::SubjectMismatch => f.write_str("withdrawal names another subject than its receipt"),
            Self::BeforeValidity => f.write_str("withdrawal takes effect before its receipt started"),
            Self::AlreadyWithdrawn => f.write_str("withdrawal refused: that consent is already withdrawn"),
            Self::RecordedBeforeReceipt => f.write_str("recorded before its receipt was"),
            Self::DuplicateRecord(id) => write!(f, "record {} already noted", hex(id)),
            Self::UnknownRecord(id) => write!(f, "unknown record {}", hex(id)),
            Self::RecordMismatch => f.write_str("record does not match its receipt"),
            Self::DuplicatePartition(id) => write!(f, "partition {} already noted", hex(id)),
            Self::UnknownPartition(id) => write!(f, "unknown partition {}", hex(id)),
            Self::AlreadyPurged => f.write_str("already purged"),
            Self::UnknownRecipient(r) => write!(f, "unknown recipient `{r}`"),
            Self::UnknownMetric(m) => write!(f, "unknown metric `{m}`"),
            Self::UnknownPurpose(p) => write!(f, "unknown purpose `{p}`"),
            Self::EmptyAudience => f.write_str("partition has an empty audience"),
            Self::CatalogueChanged => f.write_str("the ledger store was written under another catalogue"),
            Self::Corrupt(what) => write!(f, "ledger store is corrupt: {what}"),
            Self::Store(e) => write!(f, "ledger store: {e}"),
            Self::Shared(e) => write!(f, "shared ledger: {e}"),
            Self::Full(what) => write!(f, "ledger index full: too many {what}"),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl std::error::Error for LedgerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Consent(e) => Some(e),
            Self::Enroll(e) => Some(e),
            Self::Certificate(e) => Some(e),
            Self::Store(e) => Some(e),
            Self::Shared(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConsentError> for LedgerError {
    fn from(e: ConsentError) -> Self {
        Self::Consent(e)
    }
}

impl From<CertificateError> for LedgerError {
    fn from(e: CertificateError) -> Self {
        Self::Certificate(e)
    }
}

impl From<EnrollError> for LedgerError {
    fn from(e: EnrollError) -> Self {
        Self::Enroll(e)
    }
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e)
    }
}

impl From<rusqlite::types::FromSqlError> for LedgerError {
    fn from(_: rusqlite::types::FromSqlError) -> Self {
        Self::Corrupt("a column of the wrong type")
    }
}

impl From<crate::store::StoreError> for LedgerError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Shared(e)
    }
}

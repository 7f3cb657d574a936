//! The device's sent log, exported for its owner: what it sent, to whom, held until when
//! — the bytes a host saves to a file for `confiance report --sent-log FILE`, which
//! renders them as the subject report's view (docs/wire-format.md §12).
//!
//! The export is a pure function of the recorder's state: no I/O, no clock.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

use super::SentEntry;
use crate::Timestamp;
use crate::catalogue::CatalogueDigest;
use crate::ids::SubjectId;

/// The version byte [`SentLogExport`] starts with.
pub const SENT_LOG_VERSION: u8 = 1;

/// Largest export [`SentLogExport::from_bytes`] reads (a recorder keeps 4 096 entries by
/// default, `Limits::max_sent_log`, each well under 1 KiB).
pub const MAX_SENT_LOG_BYTES: usize = 4 << 20;

/// A device's sent log with what it needs to be read on its own: whose device, under
/// which catalogue, exported when. Encoded with postcard, fields in this order
/// (docs/wire-format.md §12).
///
/// ```
/// use confiance::recorder::SentLogExport;
/// use confiance::catalogue::CatalogueDigest;
/// use confiance::ids::SubjectId;
/// use confiance::Timestamp;
///
/// let log = SentLogExport {
///     version: confiance::recorder::SENT_LOG_VERSION,
///     subject: SubjectId([7; 32]),
///     catalogue_name: "demo".into(),
///     catalogue_version: 1,
///     catalogue_digest: CatalogueDigest([0; 32]),
///     exported_at: Timestamp::from_secs(1_800_000_000),
///     entries: Vec::new(),
/// };
/// let bytes = log.to_bytes();
/// assert_eq!(SentLogExport::from_bytes(&bytes), Ok(log));
/// assert!(SentLogExport::from_bytes(&bytes[..10]).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentLogExport {
    /// [`SENT_LOG_VERSION`].
    pub version: u8,
    /// The subject the device speaks for.
    pub subject: SubjectId,
    /// The catalogue's name.
    pub catalogue_name: String,
    /// The catalogue's version.
    pub catalogue_version: u32,
    /// The catalogue's digest: a reader checks it is reading under the same catalogue.
    pub catalogue_digest: CatalogueDigest,
    /// When the host exported it (the instant given to
    /// [`Recorder::export_sent_log`](super::Recorder::export_sent_log)).
    pub exported_at: Timestamp,
    /// The log, oldest first.
    pub entries: Vec<SentEntry>,
}

/// Why bytes are not a sent-log export.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SentLogError {
    /// Longer than [`MAX_SENT_LOG_BYTES`].
    TooLong(usize),
    /// A version this code does not read.
    UnsupportedVersion(u8),
    /// Not a postcard encoding of [`SentLogExport`], or bytes left after it.
    Malformed,
}

impl fmt::Display for SentLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong(n) => {
                write!(f, "a sent-log export of {n} bytes is longer than {MAX_SENT_LOG_BYTES}")
            }
            Self::UnsupportedVersion(v) => {
                write!(f, "sent-log export version {v}; this version reads {SENT_LOG_VERSION}")
            }
            Self::Malformed => f.write_str("not a sent-log export (malformed postcard)"),
        }
    }
}

impl core::error::Error for SentLogError {}

impl SentLogExport {
    /// The postcard bytes.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        // Plain data with no map keys that could fail: serializing to a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Reads an export.
    ///
    /// # Errors
    /// [`SentLogError::TooLong`], [`SentLogError::UnsupportedVersion`] (checked on the
    /// first byte, before the rest), [`SentLogError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SentLogError> {
        if bytes.len() > MAX_SENT_LOG_BYTES {
            return Err(SentLogError::TooLong(bytes.len()));
        }
        match bytes.first() {
            None => return Err(SentLogError::Malformed),
            Some(&v) if v != SENT_LOG_VERSION => return Err(SentLogError::UnsupportedVersion(v)),
            Some(_) => {}
        }
        match postcard::take_from_bytes::<Self>(bytes) {
            Ok((log, [])) => Ok(log),
            _ => Err(SentLogError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;

    use super::*;
    use crate::envelope::EnvelopeId;
    use crate::ids::{MetricId, PurposeId, ReceiptId, RecipientId};

    /// The bytes are laid out as docs/wire-format.md §12 says: version, subject, name,
    /// version, digest, export time, then each entry's fields in order.
    #[test]
    fn bytes_follow_the_documented_layout() {
        let id = |s: &str| s.parse::<RecipientId>().unwrap();
        let log = SentLogExport {
            version: SENT_LOG_VERSION,
            subject: SubjectId([7; 32]),
            catalogue_name: "c".into(),
            catalogue_version: 300,
            catalogue_digest: CatalogueDigest([9; 32]),
            exported_at: Timestamp::from_secs(5),
            entries: vec![SentEntry {
                metric: "m".parse::<MetricId>().unwrap(),
                time: Timestamp::from_secs(1),
                purpose: "p".parse::<PurposeId>().unwrap(),
                audience: vec![id("a"), id("b")],
                held_until: Timestamp::MAX,
                receipt: Some(ReceiptId([3; 32])),
                envelope: EnvelopeId([4; 32]),
            }],
        };
        let mut want = vec![1u8];
        want.extend([7; 32]);
        want.extend([1, b'c', 0xac, 0x02]);
        want.extend([9; 32]);
        want.extend([5, 1]);
        want.extend([1, b'm', 1, 1, b'p', 2, 1, b'a', 1, b'b']);
        want.extend([0xff; 9]);
        want.push(0x01);
        want.push(1);
        want.extend([3; 32]);
        want.extend([4; 32]);
        assert_eq!(log.to_bytes(), want);
        assert_eq!(SentLogExport::from_bytes(&want), Ok(log));
        let mut longer = want.clone();
        longer.push(0);
        assert_eq!(SentLogExport::from_bytes(&longer), Err(SentLogError::Malformed));
        want[0] = 2;
        assert_eq!(SentLogExport::from_bytes(&want), Err(SentLogError::UnsupportedVersion(2)));
        assert_eq!(SentLogExport::from_bytes(&[]), Err(SentLogError::Malformed));
    }
}

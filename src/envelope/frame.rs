//! The frame: a fixed header (the AAD), then the HPKE ciphertext.

use super::{
    AeadId, ENC_LEN, EnvelopeError, HEADER_LEN, MAX_FRAME_LEN, OVERHEAD, SecretKey, VERSION, hpke_base,
};
use crate::Timestamp;
use crate::catalogue::CatalogueDigest;
use alloc::vec::Vec;
use core::fmt;

/// The SHA-256 of a whole frame: a stable name for an envelope, for replay detection
/// and audit events. Any change to any byte of the frame changes it.
///
/// ```
/// use confiance::envelope::EnvelopeId;
/// assert_ne!(EnvelopeId::of(b"a"), EnvelopeId::of(b"b"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct EnvelopeId(pub [u8; 32]);

impl EnvelopeId {
    /// The id of `frame`: `SHA-256(frame)`.
    #[must_use]
    pub fn of(frame: &[u8]) -> Self {
        use sha2::Digest as _;
        Self(sha2::Sha256::digest(frame).into())
    }
}

macro_rules! hex_display {
    ($name:ident) => {
        impl fmt::Display for $name {
            /// Lower-case hex.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in &self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }
    };
}
hex_display!(EnvelopeId);

/// The header fields the device chooses when it seals (the key id comes from the
/// [`KeyConfig`](super::KeyConfig)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderFields {
    /// The digest of the catalogue every report in the batch was made under.
    pub catalogue_digest: CatalogueDigest,
    /// The start of the UTC day of the batch (UTC seconds): no report in it is later than
    /// that day's end; reports may be older.
    pub time_bucket: Timestamp,
}

/// An envelope header, as parsed (before the open it is unauthenticated; after a
/// successful [`Envelope::open`] every field is authenticated, being the AAD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Which aggregator key config the envelope is sealed to.
    pub key_id: super::KeyId,
    /// The digest of the catalogue the reports were made under.
    pub catalogue_digest: CatalogueDigest,
    /// The start of the reports' time bucket (UTC seconds).
    pub time_bucket: Timestamp,
}

impl Header {
    /// The header bytes before `enc`: version, key id, digest, time bucket.
    pub(crate) fn write_prefix(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.extend_from_slice(&self.key_id.0.to_be_bytes());
        out.extend_from_slice(&self.catalogue_digest.0);
        out.extend_from_slice(&self.time_bucket.as_secs().to_be_bytes());
    }
}

/// A parsed, still sealed envelope borrowing its frame.
#[derive(Clone, Copy, Debug)]
pub struct Envelope<'a> {
    header: Header,
    frame: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Parses the header of `frame` without allocating. Checks, in order: the length is
    /// at most [`MAX_FRAME_LEN`] and at least [`OVERHEAD`](super::OVERHEAD), then the
    /// version.
    ///
    /// # Errors
    /// [`EnvelopeError::TooLong`], [`EnvelopeError::TooShort`],
    /// [`EnvelopeError::UnknownVersion`].
    ///
    /// ```
    /// use confiance::envelope::{Envelope, EnvelopeError};
    /// assert_eq!(Envelope::parse(&[1; 10]).unwrap_err(), EnvelopeError::TooShort { len: 10 });
    /// let mut frame = [0u8; 91];
    /// frame[0] = 9;
    /// assert_eq!(Envelope::parse(&frame).unwrap_err(), EnvelopeError::UnknownVersion(9));
    /// ```
    pub fn parse(frame: &'a [u8]) -> Result<Self, EnvelopeError> {
        let len = frame.len();
        if len > MAX_FRAME_LEN {
            return Err(EnvelopeError::TooLong { len });
        }
        if len < OVERHEAD {
            return Err(EnvelopeError::TooShort { len });
        }
        let (&[version], rest) = frame.split_first_chunk::<1>().ok_or(EnvelopeError::TooShort { len })?;
        if version != VERSION {
            return Err(EnvelopeError::UnknownVersion(version));
        }
        let (key_id, rest) = rest.split_first_chunk::<2>().ok_or(EnvelopeError::TooShort { len })?;
        let (digest, rest) = rest.split_first_chunk::<32>().ok_or(EnvelopeError::TooShort { len })?;
        let (bucket, _) = rest.split_first_chunk::<8>().ok_or(EnvelopeError::TooShort { len })?;
        let header = Header {
            key_id: super::KeyId(u16::from_be_bytes(*key_id)),
            catalogue_digest: CatalogueDigest(*digest),
            time_bucket: Timestamp::from_secs(u64::from_be_bytes(*bucket)),
        };
        Ok(Self { header, frame })
    }

    /// The header (unauthenticated until [`Envelope::open`] succeeds).
    #[must_use]
    pub const fn header(&self) -> &Header {
        &self.header
    }

    /// The HPKE encapsulated key.
    #[must_use]
    pub fn enc(&self) -> &'a [u8] {
        self.frame.get(HEADER_LEN - ENC_LEN..HEADER_LEN).unwrap_or_default()
    }

    /// The SHA-256 of the whole frame.
    #[must_use]
    pub fn id(&self) -> EnvelopeId {
        EnvelopeId::of(self.frame)
    }

    /// The frame this envelope was parsed from.
    #[must_use]
    pub const fn frame(&self) -> &'a [u8] {
        self.frame
    }

    /// Opens the envelope with `secret` (one X25519 variable-base multiplication) and
    /// returns the plaintext. The header becomes authenticated with it.
    ///
    /// # Errors
    /// [`EnvelopeError::Open`] (opaque) if decapsulation or the AEAD fails;
    /// [`EnvelopeError::UnsupportedAead`] for AES-128-GCM without the `aes` feature.
    pub fn open(&self, secret: &SecretKey, aead: AeadId) -> Result<Vec<u8>, EnvelopeError> {
        let (aad, body) = self.frame.split_at_checked(HEADER_LEN).ok_or(EnvelopeError::Open)?;
        let enc = aad.get(HEADER_LEN - ENC_LEN..).ok_or(EnvelopeError::Open)?;
        hpke_base::open_in_place(aead, secret, enc, aad, body)
    }
}

//! Sealed envelopes: how a batch of reports leaves the device.
//!
//! An envelope is one HPKE (RFC 9180) base-mode encryption, DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256 and ChaCha20-Poly1305 (AES-128-GCM with the `aes` feature; see
//! [`hpke_base`] for how the suite is composed), of a
//! postcard-encoded [`ReportBatch`], framed behind a fixed 75-byte header (docs/design.md#envelopes):
//!
//! ```text
//! version (1) | key id (2, BE) | catalogue digest (32) | time bucket (8, BE) | enc (32) | ciphertext ‖ tag (n + 16)
//! ```
//!
//! The whole header is the AEAD's associated data and the HPKE `info` is [`INFO`]
//! (`"confiance/v1"`), so a header byte cannot change without the open failing. The frame
//! is specified byte by byte in `docs/wire-format.md`.
//!
//! The device side is [`seal`] with a [`KeyConfig`] it has cached ([`select_config`]
//! picks the one to use); the aggregator side is [`Envelope::parse`] then
//! [`Envelope::open`] with the matching [`SecretKey`] (the aggregator's key store wraps
//! this with the key lifecycle). Decoding is strict and bounded: the frame length is
//! checked against [`MAX_FRAME_LEN`] before anything is allocated, unknown versions are
//! typed errors, and an AEAD or decapsulation failure is one opaque
//! [`EnvelopeError::Open`].
//!
//! ```
//! use confiance::Timestamp;
//! use confiance::envelope::{self, AeadId, CatalogueDigest, Envelope, HeaderFields, KeyConfig, KeyId, SecretKey};
//! use confiance::rng::OsRng;
//!
//! let mut rng = OsRng::new();
//! // The aggregator makes a key and publishes its config; the device caches it.
//! let secret = SecretKey::generate(&mut rng);
//! let config = KeyConfig::new(
//!     KeyId(7),
//!     AeadId::ChaCha20Poly1305,
//!     secret.public_key(),
//!     Timestamp::from_secs(0),
//!     Timestamp::MAX,
//! )?;
//! let fields = HeaderFields {
//!     catalogue_digest: CatalogueDigest([1; 32]),
//!     time_bucket: Timestamp::from_secs(1_700_000_000).truncate(3_600),
//! };
//! let frame = envelope::seal(&config, &fields, b"postcard batch", &mut rng)?;
//! assert_eq!(frame.len(), envelope::OVERHEAD + 14);
//!
//! let env = Envelope::parse(&frame)?;
//! assert_eq!(env.header().key_id, KeyId(7));
//! assert_eq!(env.open(&secret, config.aead)?, b"postcard batch");
//! # Ok::<(), confiance::envelope::EnvelopeError>(())
//! ```

mod batch;
mod frame;
pub mod hpke_base;
mod keys;

pub use crate::catalogue::CatalogueDigest;
pub use batch::{
    BatchError, BatchLimits, MAX_TOKENS, ReportBatch, ReportId, decode_batch, decode_body, encode_batch,
    encode_body,
};
pub use frame::{Envelope, EnvelopeId, Header, HeaderFields};
pub use keys::{AeadId, KEY_CONFIG_LEN, KeyConfig, KeyId, PublicKey, SecretKey, select_config};

use alloc::vec::Vec;
use core::fmt;
use rand_core::CryptoRng;

/// The frame version this crate writes and the only one it reads.
pub const VERSION: u8 = 1;

/// The HPKE `info` string: it names the protocol and its version (RFC 9180 §5.1), so a
/// key shared with another protocol, or a future version, derives different keys.
pub const INFO: &[u8] = b"confiance/v1";

/// Bytes of the serialized HPKE encapsulated key (`Nenc` of DHKEM(X25519, HKDF-SHA256)).
pub const ENC_LEN: usize = 32;

/// Bytes of the AEAD tag (`Nt`, 16 for both ChaCha20-Poly1305 and AES-128-GCM).
pub const TAG_LEN: usize = 16;

/// Bytes of the header: version, key id, catalogue digest, time bucket, `enc`.
pub const HEADER_LEN: usize = 1 + 2 + 32 + 8 + ENC_LEN;

/// Bytes an envelope adds to its plaintext: the header and the AEAD tag.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// The largest frame this crate seals or parses (1 MiB). Checked before any allocation.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Why an envelope could not be sealed, parsed or opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The frame is shorter than a header and a tag ([`OVERHEAD`] bytes).
    TooShort {
        /// The length of the frame.
        len: usize,
    },
    /// The frame (or the frame a plaintext would make) is longer than [`MAX_FRAME_LEN`].
    TooLong {
        /// The length of the frame.
        len: usize,
    },
    /// The frame's version byte is not [`VERSION`].
    UnknownVersion(u8),
    /// The AEAD is not one this build supports (AES-128-GCM needs the `aes` feature).
    UnsupportedAead(u16),
    /// Encapsulation to the public key failed (a low-order point gives an all-zero DH).
    InvalidPublicKey,
    /// A serialized key config is malformed: wrong length, another KEM or KDF, an
    /// unknown AEAD, or a validity window that ends before it starts.
    MalformedKeyConfig,
    /// The envelope did not open. Decapsulation and AEAD failures are deliberately one
    /// opaque variant: which one happened is of use only to an attacker.
    Open,
    /// Sealing failed inside the AEAD (cannot happen for a single-shot context; kept
    /// so that no failure is turned into a panic).
    Seal,
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => write!(f, "envelope of {len} bytes is shorter than {OVERHEAD}"),
            Self::TooLong { len } => write!(f, "envelope of {len} bytes is longer than {MAX_FRAME_LEN}"),
            Self::UnknownVersion(v) => write!(f, "unknown envelope version {v}"),
            Self::UnsupportedAead(id) => write!(f, "unsupported HPKE AEAD 0x{id:04x}"),
            Self::InvalidPublicKey => f.write_str("invalid public key"),
            Self::MalformedKeyConfig => f.write_str("malformed key config"),
            Self::Open => f.write_str("envelope did not open"),
            Self::Seal => f.write_str("envelope could not be sealed"),
        }
    }
}

impl core::error::Error for EnvelopeError {}

/// Seals `plaintext` (normally an [`encode_batch`] output) to `config`'s public key under
/// a header made of `config.id` and `fields`; returns the frame for the host to send.
///
/// Costs one X25519 fixed-base and one variable-base multiplication. The only randomness
/// drawn is the 32-byte ephemeral key (RFC 9180 `GenerateKeyPair` via `DeriveKeyPair`).
/// Whether `config` is valid *now* is the caller's choice ([`select_config`]).
///
/// # Errors
/// [`EnvelopeError::TooLong`] if the frame would exceed [`MAX_FRAME_LEN`];
/// [`EnvelopeError::UnsupportedAead`] for AES-128-GCM without the `aes` feature;
/// [`EnvelopeError::InvalidPublicKey`] if the public key is a low-order point.
///
/// ```
/// use confiance::Timestamp;
/// use confiance::envelope::{self, AeadId, CatalogueDigest, HeaderFields, KeyConfig, KeyId, SecretKey};
/// let mut rng = confiance::rng::OsRng::new();
/// let pk = SecretKey::generate(&mut rng).public_key();
/// let config = KeyConfig::new(KeyId(1), AeadId::ChaCha20Poly1305, pk, Timestamp::EPOCH, Timestamp::MAX)?;
/// let fields = HeaderFields { catalogue_digest: CatalogueDigest([0; 32]), time_bucket: Timestamp::EPOCH };
/// let frame = envelope::seal(&config, &fields, &[], &mut rng)?;
/// assert_eq!(frame.len(), envelope::OVERHEAD);
/// # Ok::<(), envelope::EnvelopeError>(())
/// ```
pub fn seal<R: CryptoRng + ?Sized>(
    config: &KeyConfig,
    fields: &HeaderFields,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, EnvelopeError> {
    let len = plaintext.len().saturating_add(OVERHEAD);
    if len > MAX_FRAME_LEN {
        return Err(EnvelopeError::TooLong { len });
    }
    let header = Header {
        key_id: config.id,
        catalogue_digest: fields.catalogue_digest,
        time_bucket: fields.time_bucket,
    };
    hpke_base::seal_frame(config.aead, &config.public_key, &header, plaintext, rng)
}

/// Parses and opens `frame` with `secret` in one call: [`Envelope::parse`] then
/// [`Envelope::open`]. Returns the header (authenticated) and the plaintext.
///
/// # Errors
/// Those of [`Envelope::parse`] and [`Envelope::open`].
pub fn open(frame: &[u8], secret: &SecretKey, aead: AeadId) -> Result<(Header, Vec<u8>), EnvelopeError> {
    let env = Envelope::parse(frame)?;
    let plaintext = env.open(secret, aead)?;
    Ok((*env.header(), plaintext))
}

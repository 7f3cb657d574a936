//! Pseudonyms: scoped pseudonyms derived on the device, and polymorphic pseudonyms that
//! transcryptors turn into per-recipient pseudonyms (docs/design.md#pseudonyms).
//!
//! - **Scoped pseudonyms** ([`DeviceSecret::scoped`]): HKDF-SHA256 (RFC 5869) of a device
//!   secret, one 32-byte value per (recipient, [`Epoch`]). Different recipients or epochs
//!   give values that nobody without the device secret can link; the device can
//!   recompute all of them to answer a subject-access request
//!   ([`DeviceSecret::list_pseudonyms`]).
//! - **Polymorphic pseudonyms** ([`DeviceSecret::polymorphic`]), after PEP (Verheul and
//!   Jacobs, *Polymorphic Encryption and Pseudonymisation in Identity Management and
//!   Medical Research*, 2017) and its implementation libpep: an ElGamal encryption on
//!   Ristretto255 of the device's identity point under the system public key. The
//!   aggregator's transcryptors (`confiance_aggregator::transcrypt`) rerandomise,
//!   reshuffle and rekey it into the pseudonym of one recipient domain. It travels in a
//!   [`TranscryptionRequest`], signed by the device for one receipt and one recipient,
//!   with a proof that the device knows what it encrypted.
//!
//! ```
//! use confiance::ids::RecipientId;
//! use confiance::pseudonym::{DeviceSecret, Epoch};
//!
//! let secret = DeviceSecret::from_bytes([7; 32]);
//! let acme = RecipientId::new("acme-thermo")?;
//! let other = RecipientId::new("other-brand")?;
//! let a = secret.scoped(&acme, Epoch(3));
//! assert_eq!(a, secret.scoped(&acme, Epoch(3)));
//! assert_ne!(a, secret.scoped(&other, Epoch(3)));
//! assert_ne!(a, secret.scoped(&acme, Epoch(4)));
//! # Ok::<(), confiance::ids::IdError>(())
//! ```

use core::fmt;

mod elgamal;
pub mod hazmat;
mod request;
mod scoped;

pub use elgamal::{
    CIPHERTEXT_LEN, Ciphertext, POINT_LEN, SCALAR_LEN, SystemPublicKey, decode_point, decode_scalar,
};
pub use request::{
    MAX_REQUEST_RECIPIENT_LEN, PLAINTEXT_PROOF_LEN, PlaintextProof, REQUEST_FIXED_LEN, REQUEST_VERSION,
    TranscryptionRequest,
};
pub use scoped::{DeviceSecret, Epoch, MAX_LISTED_PSEUDONYMS, ScopedPseudonym, ScopedPseudonymEntry};

/// Why a pseudonym operation or decoding failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PseudonymError {
    /// An epoch length of zero seconds was given.
    ZeroEpochLength,
    /// The first epoch of a listing comes after the last.
    EpochRangeReversed,
    /// A listing would hold more than [`MAX_LISTED_PSEUDONYMS`] entries.
    TooManyPseudonyms,
    /// An encoding has the wrong number of bytes.
    BadLength,
    /// 32 bytes that are not the canonical encoding of a Ristretto255 point.
    NonCanonicalPoint,
    /// 32 bytes that are not the canonical encoding of a scalar (they are ≥ ℓ).
    NonCanonicalScalar,
    /// The identity point where it is forbidden (a public key, a commitment, any
    /// component of a ciphertext).
    IdentityPoint,
    /// A transcryption request's Ed25519 signature does not verify under its device key.
    BadSignature,
    /// A transcryption request's proof of plaintext knowledge does not verify.
    BadPlaintextProof,
    /// An encoding's version byte is not one this build reads.
    UnsupportedVersion,
    /// An encoding's fields are inconsistent (a bad flag, recipient name or epoch).
    Malformed,
}

impl fmt::Display for PseudonymError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroEpochLength => "epoch length must be at least one second",
            Self::EpochRangeReversed => "first epoch is after the last",
            Self::TooManyPseudonyms => "too many pseudonyms requested in one listing",
            Self::BadLength => "encoding has the wrong length",
            Self::NonCanonicalPoint => "not a canonical Ristretto255 point encoding",
            Self::NonCanonicalScalar => "not a canonical scalar encoding",
            Self::IdentityPoint => "identity point not allowed here",
            Self::BadSignature => "transcryption request signature does not verify",
            Self::BadPlaintextProof => "transcryption request plaintext proof does not verify",
            Self::UnsupportedVersion => "unsupported encoding version",
            Self::Malformed => "malformed encoding",
        })
    }
}

#[cfg(feature = "std")]
impl core::error::Error for PseudonymError {}

/// Writes `bytes` into `out` preceded by its length as a big-endian `u64`, so that
/// concatenated fields cannot be confused with each other (domain separation).
pub(crate) fn push_field(out: &mut alloc::vec::Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

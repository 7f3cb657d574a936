//! Device certificates: a manufacturer (a *certifier*) vouches that a key is a real
//! device's (docs/privacy.md, "Enrollment is open").
//!
//! A [`DeviceCertificate`] is signed by a [`CertifierKey`] over
//! `confiance/device-certificate/v1\0` ‖ postcard(version, certifier key, certified key,
//! model, not_before, not_after). The certified key is a device key, or the subject key
//! of a single-device subject (which reports with it). A deployment that names
//! certifiers in its catalogue (`[enrollment] certifiers`) accepts a delegation, and
//! issues report tokens, only for a key with a certificate from one of them in force.
//! The certifier's public key travels in the certificate, so a verifier finds its key
//! without trying each one it trusts, and an auditor sees who vouched for each device.
//!
//! ```
//! use confiance::consent::{CertifierKey, DeviceCertificate, DeviceKey};
//! use confiance::Timestamp;
//!
//! let maker = CertifierKey::from_bytes(&[7; 32]);
//! let device = DeviceKey::from_bytes(&[2; 32]);
//! let t = Timestamp::from_secs;
//! // At the factory: the device's public key, certified for 20 years.
//! let cert = maker.certify(device.public_key(), "thermostat-t3", t(0), t(20 * 365 * 86_400))?;
//! let bytes = cert.to_bytes();
//! // At the aggregator: decoded (signature checked), then checked against the
//! // certifiers the catalogue trusts, at an instant.
//! let cert = DeviceCertificate::from_bytes(&bytes)?;
//! assert_eq!(cert.verify(&[maker.public_key()], t(1_000))?, device.public_key());
//! # Ok::<(), confiance::consent::CertificateError>(())
//! ```

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use ed25519_dalek::{Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::receipt::{Sig, signing_message};
use crate::Timestamp;
use crate::ids::{CertificateId, CertifierPublicKey, DevicePublicKey};

/// The format version of device certificates.
pub const CERTIFICATE_VERSION: u8 = 1;
/// The most bytes a signed certificate may have (checked before decoding).
pub const MAX_CERTIFICATE_BYTES: usize = 256;
/// The longest model string, in bytes (printable ASCII).
pub const MAX_MODEL_BYTES: usize = 64;

const SIG_DOMAIN: &[u8] = b"confiance/device-certificate/v1\0";
const ID_DOMAIN: &[u8] = b"confiance/device-certificate-id/v1\0";

/// Why a device certificate is refused.
/// ```
/// use confiance::consent::{CertificateError, DeviceCertificate};
/// assert_eq!(DeviceCertificate::from_bytes(&[0; 300]), Err(CertificateError::TooLarge));
/// assert_eq!(CertificateError::TooLarge.code(), "malformed_certificate");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CertificateError {
    /// More than [`MAX_CERTIFICATE_BYTES`]: refused before decoding.
    TooLarge,
    /// Bytes that do not decode as a certificate, or not in its canonical form.
    Malformed,
    /// Bytes left over after a complete certificate.
    TrailingBytes,
    /// A format version this build does not know.
    UnsupportedVersion(u8),
    /// A model longer than [`MAX_MODEL_BYTES`] or not printable ASCII.
    BadModel,
    /// `not_after` is not after `not_before`.
    InvertedValidity,
    /// The certifier key is not a valid Ed25519 public key.
    BadKey,
    /// The signature does not verify under the certifier key it names.
    BadSignature,
    /// Signed by a certifier the verifier does not trust.
    UnknownCertifier,
    /// Not in force yet at the instant asked about (before `not_before`).
    NotYetValid,
    /// No longer in force at the instant asked about (at or after `not_after`).
    Expired,
    /// It certifies another key than the one it is checked for.
    KeyMismatch,
}

impl CertificateError {
    /// The stable code of the error (HTTP, CLI, logs).
    ///
    /// ```
    /// use confiance::consent::CertificateError;
    /// assert_eq!(CertificateError::Expired.code(), "certificate_expired");
    /// ```
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::TooLarge
            | Self::Malformed
            | Self::TrailingBytes
            | Self::UnsupportedVersion(_)
            | Self::BadModel
            | Self::InvertedValidity
            | Self::BadKey => "malformed_certificate",
            Self::BadSignature => "bad_signature",
            Self::UnknownCertifier => "unknown_certifier",
            Self::NotYetValid => "certificate_not_yet_valid",
            Self::Expired => "certificate_expired",
            Self::KeyMismatch => "certificate_key_mismatch",
        }
    }
}

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => f.write_str("device certificate is too large"),
            Self::Malformed => f.write_str("device certificate bytes are malformed"),
            Self::TrailingBytes => f.write_str("trailing bytes after the device certificate"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported device certificate version {v}"),
            Self::BadModel => f.write_str("model must be at most 64 bytes of printable ASCII"),
            Self::InvertedValidity => f.write_str("not_after must be after not_before"),
            Self::BadKey => f.write_str("certifier key is not a valid Ed25519 public key"),
            Self::BadSignature => f.write_str("certificate signature does not verify"),
            Self::UnknownCertifier => f.write_str("certificate signed by a certifier that is not trusted"),
            Self::NotYetValid => f.write_str("certificate is not valid yet"),
            Self::Expired => f.write_str("certificate has expired"),
            Self::KeyMismatch => f.write_str("certificate is for another key"),
        }
    }
}

impl core::error::Error for CertificateError {}

/// What a certifier vouches for, unsigned.
///
/// ```
/// use confiance::consent::{CertifierKey, DeviceKey};
/// use confiance::Timestamp;
/// let maker = CertifierKey::from_bytes(&[7; 32]);
/// let cert = maker.certify(DeviceKey::from_bytes(&[2; 32]).public_key(), "t3", Timestamp::from_secs(10), Timestamp::from_secs(20))?;
/// let c = cert.certificate();
/// assert_eq!((c.certifier, c.model.as_str()), (maker.public_key(), "t3"));
/// assert!(c.in_force_at(Timestamp::from_secs(10)) && !c.in_force_at(Timestamp::from_secs(20)));
/// # Ok::<(), confiance::consent::CertificateError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Certificate {
    /// Format version ([`CERTIFICATE_VERSION`]).
    pub version: u8,
    /// The certifier's public key (it signs the certificate).
    pub certifier: CertifierPublicKey,
    /// The key certified: a device key, or a single-device subject's own key.
    pub key: DevicePublicKey,
    /// The device model, at most [`MAX_MODEL_BYTES`] of printable ASCII (may be empty):
    /// lets one certifier key serve several product lines, and an auditor count
    /// certified devices per model.
    pub model: String,
    /// From when the certificate is in force.
    pub not_before: Timestamp,
    /// Until when (exclusive): `not_before <= t < not_after`.
    pub not_after: Timestamp,
}

impl Certificate {
    /// Whether it is in force at `t`: `not_before <= t < not_after`.
    /// ```
    /// use confiance::consent::{CertifierKey, DeviceKey};
    /// use confiance::Timestamp;
    /// let t = Timestamp::from_secs;
    /// let device = DeviceKey::from_bytes(&[2; 32]).public_key();
    /// let cert = CertifierKey::from_bytes(&[7; 32]).certify(device, "t3", t(10), t(20))?;
    /// let c = cert.certificate();
    /// assert!(!c.in_force_at(t(9)) && c.in_force_at(t(10)) && c.in_force_at(t(19)));
    /// assert!(!c.in_force_at(t(20)));
    /// # Ok::<(), confiance::consent::CertificateError>(())
    /// ```
    #[must_use]
    pub fn in_force_at(&self, t: Timestamp) -> bool {
        self.not_before <= t && t < self.not_after
    }

    fn check(&self) -> Result<(), CertificateError> {
        if self.version != CERTIFICATE_VERSION {
            return Err(CertificateError::UnsupportedVersion(self.version));
        }
        if self.model.len() > MAX_MODEL_BYTES || !self.model.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(CertificateError::BadModel);
        }
        if self.not_after <= self.not_before {
            return Err(CertificateError::InvertedValidity);
        }
        Ok(())
    }

    fn body(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

/// A certificate with its certifier's signature. Only [`DeviceCertificate::from_bytes`]
/// and [`CertifierKey::certify`] make one, and both guarantee the signature verifies
/// under the certifier key it names — *not* that the certifier is trusted or the
/// certificate in force: that is [`DeviceCertificate::verify`].
///
/// ```
/// use confiance::consent::{CertifierKey, DeviceCertificate, DeviceKey};
/// use confiance::Timestamp;
/// let maker = CertifierKey::from_bytes(&[7; 32]);
/// let device = DeviceKey::from_bytes(&[2; 32]).public_key();
/// let cert = maker.certify(device, "t3", Timestamp::from_secs(0), Timestamp::from_secs(100))?;
/// assert_eq!(cert.certificate().key, device);
/// assert_eq!(DeviceCertificate::from_bytes(&cert.to_bytes())?.id(), cert.id());
/// # Ok::<(), confiance::consent::CertificateError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct DeviceCertificate {
    certificate: Certificate,
    signature: Sig,
}

#[derive(Deserialize)]
struct DeviceCertificateWire {
    certificate: Certificate,
    signature: Sig,
}

impl DeviceCertificate {
    /// The certificate.
    /// ```
    /// use confiance::consent::{CertifierKey, DeviceKey};
    /// use confiance::Timestamp;
    /// let t = Timestamp::from_secs;
    /// let device = DeviceKey::from_bytes(&[2; 32]).public_key();
    /// let cert = CertifierKey::from_bytes(&[7; 32]).certify(device, "t3", t(10), t(20))?;
    /// assert_eq!((cert.certificate().key, cert.certificate().model.as_str()), (device, "t3"));
    /// # Ok::<(), confiance::consent::CertificateError>(())
    /// ```
    #[must_use]
    pub const fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// Its id: SHA-256 of `confiance/device-certificate-id/v1\0` and the wire bytes.
    /// ```
    /// use confiance::consent::{CertifierKey, DeviceKey};
    /// use confiance::Timestamp;
    /// let t = Timestamp::from_secs;
    /// let device = DeviceKey::from_bytes(&[2; 32]).public_key();
    /// let cert = CertifierKey::from_bytes(&[7; 32]).certify(device, "t3", t(10), t(20))?;
    /// let other = CertifierKey::from_bytes(&[7; 32]).certify(device, "t4", t(10), t(20))?;
    /// assert_ne!(cert.id(), other.id());
    /// # Ok::<(), confiance::consent::CertificateError>(())
    /// ```
    #[must_use]
    pub fn id(&self) -> CertificateId {
        let mut h = Sha256::new();
        h.update(ID_DOMAIN);
        h.update(self.to_bytes());
        CertificateId(h.finalize().into())
    }

    /// The wire encoding: postcard of the certificate, then the 64 signature bytes.
    /// ```
    /// use confiance::consent::{CertifierKey, DeviceKey};
    /// use confiance::Timestamp;
    /// let t = Timestamp::from_secs;
    /// let device = DeviceKey::from_bytes(&[2; 32]).public_key();
    /// let cert = CertifierKey::from_bytes(&[7; 32]).certify(device, "t3", t(10), t(20))?;
    /// let bytes = cert.to_bytes();
    /// assert_eq!(confiance::consent::DeviceCertificate::from_bytes(&bytes)?, cert);
    /// # Ok::<(), confiance::consent::CertificateError>(())
    /// ```
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes (bounded, strict, canonical) and verifies the signature under the
    /// certifier key the certificate names. Whether that certifier is trusted, and
    /// whether the certificate is in force, is [`Self::verify`]'s question.
    ///
    /// ```
    /// use confiance::consent::{CertificateError, CertifierKey, DeviceCertificate, DeviceKey};
    /// use confiance::Timestamp;
    /// let maker = CertifierKey::from_bytes(&[7; 32]);
    /// let cert = maker.certify(DeviceKey::from_bytes(&[2; 32]).public_key(), "t3", Timestamp::from_secs(0), Timestamp::from_secs(100))?;
    /// let mut bytes = cert.to_bytes();
    /// bytes[40] ^= 1; // the certified key, altered
    /// assert_eq!(DeviceCertificate::from_bytes(&bytes), Err(CertificateError::BadSignature));
    /// # Ok::<(), CertificateError>(())
    /// ```
    ///
    /// # Errors
    /// [`CertificateError::TooLarge`], [`CertificateError::UnsupportedVersion`],
    /// [`CertificateError::Malformed`], [`CertificateError::TrailingBytes`],
    /// [`CertificateError::BadModel`], [`CertificateError::InvertedValidity`],
    /// [`CertificateError::BadKey`] or [`CertificateError::BadSignature`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CertificateError> {
        if bytes.len() > MAX_CERTIFICATE_BYTES {
            return Err(CertificateError::TooLarge);
        }
        if let Some(&v) = bytes.first()
            && v != CERTIFICATE_VERSION
        {
            return Err(CertificateError::UnsupportedVersion(v));
        }
        let (w, rest): (DeviceCertificateWire, _) =
            postcard::take_from_bytes(bytes).map_err(|_| CertificateError::Malformed)?;
        if !rest.is_empty() {
            return Err(CertificateError::TrailingBytes);
        }
        let signed = Self { certificate: w.certificate, signature: w.signature };
        // One certificate, one byte string: a non-canonical varint is refused whatever
        // its signature.
        if signed.to_bytes() != bytes {
            return Err(CertificateError::Malformed);
        }
        signed.certificate.check()?;
        let c = &signed.certificate;
        let vk = ed25519_dalek::VerifyingKey::from_bytes(c.certifier.as_bytes())
            .map_err(|_| CertificateError::BadKey)?;
        vk.verify_strict(
            &signing_message(SIG_DOMAIN, &c.body()),
            &ed25519_dalek::Signature::from_bytes(&signed.signature.0),
        )
        .map_err(|_| CertificateError::BadSignature)?;
        Ok(signed)
    }

    /// The key certified, if the certificate was signed by one of `certifiers` and is in
    /// force at `at`.
    ///
    /// ```
    /// use confiance::consent::{CertificateError, CertifierKey, DeviceKey};
    /// use confiance::Timestamp;
    /// let (maker, other) = (CertifierKey::from_bytes(&[7; 32]), CertifierKey::from_bytes(&[8; 32]));
    /// let t = Timestamp::from_secs;
    /// let cert = maker.certify(DeviceKey::from_bytes(&[2; 32]).public_key(), "t3", t(10), t(100))?;
    /// assert!(cert.verify(&[maker.public_key()], t(10)).is_ok());
    /// assert_eq!(cert.verify(&[other.public_key()], t(50)), Err(CertificateError::UnknownCertifier));
    /// assert_eq!(cert.verify(&[maker.public_key()], t(9)), Err(CertificateError::NotYetValid));
    /// assert_eq!(cert.verify(&[maker.public_key()], t(100)), Err(CertificateError::Expired));
    /// # Ok::<(), CertificateError>(())
    /// ```
    ///
    /// # Errors
    /// [`CertificateError::UnknownCertifier`], [`CertificateError::NotYetValid`] or
    /// [`CertificateError::Expired`], in that order.
    pub fn verify(
        &self,
        certifiers: &[CertifierPublicKey],
        at: Timestamp,
    ) -> Result<DevicePublicKey, CertificateError> {
        certificate_status(&self.certificate, certifiers.contains(&self.certificate.certifier), at)?;
        Ok(self.certificate.key)
    }

    /// [`Self::verify`] for one key: also refuses a certificate of another key.
    ///
    /// ```
    /// use confiance::consent::{CertificateError, CertifierKey, DeviceKey};
    /// use confiance::Timestamp;
    /// let maker = CertifierKey::from_bytes(&[7; 32]);
    /// let (a, b) = (DeviceKey::from_bytes(&[2; 32]).public_key(), DeviceKey::from_bytes(&[3; 32]).public_key());
    /// let cert = maker.certify(a, "t3", Timestamp::from_secs(0), Timestamp::from_secs(100))?;
    /// let trusted = [maker.public_key()];
    /// assert!(cert.verify_for(&a, &trusted, Timestamp::from_secs(5)).is_ok());
    /// assert_eq!(cert.verify_for(&b, &trusted, Timestamp::from_secs(5)), Err(CertificateError::KeyMismatch));
    /// # Ok::<(), CertificateError>(())
    /// ```
    ///
    /// # Errors
    /// [`CertificateError::KeyMismatch`], then as [`Self::verify`].
    pub fn verify_for(
        &self,
        key: &DevicePublicKey,
        certifiers: &[CertifierPublicKey],
        at: Timestamp,
    ) -> Result<(), CertificateError> {
        if self.certificate.key != *key {
            return Err(CertificateError::KeyMismatch);
        }
        self.verify(certifiers, at).map(|_| ())
    }
}

/// Whether a certificate (its signature verified before) signed by a certifier that is
/// (`trusted`) or is not trusted is in force at `at`: the rule [`DeviceCertificate::verify`]
/// applies, for a verifier that keeps a certificate's fields rather than its bytes.
///
/// ```
/// use confiance::consent::{Certificate, CertificateError, CERTIFICATE_VERSION, certificate_status};
/// use confiance::ids::{CertifierPublicKey, DevicePublicKey};
/// use confiance::Timestamp;
/// let c = Certificate {
///     version: CERTIFICATE_VERSION,
///     certifier: CertifierPublicKey([1; 32]),
///     key: DevicePublicKey([2; 32]),
///     model: "t3".into(),
///     not_before: Timestamp::from_secs(10),
///     not_after: Timestamp::from_secs(20),
/// };
/// assert_eq!(certificate_status(&c, true, Timestamp::from_secs(15)), Ok(()));
/// assert_eq!(certificate_status(&c, false, Timestamp::from_secs(15)), Err(CertificateError::UnknownCertifier));
/// assert_eq!(certificate_status(&c, true, Timestamp::from_secs(20)), Err(CertificateError::Expired));
/// ```
///
/// # Errors
/// [`CertificateError::UnknownCertifier`], [`CertificateError::NotYetValid`] or
/// [`CertificateError::Expired`], in that order.
pub fn certificate_status(c: &Certificate, trusted: bool, at: Timestamp) -> Result<(), CertificateError> {
    if !trusted {
        return Err(CertificateError::UnknownCertifier);
    }
    if at < c.not_before {
        return Err(CertificateError::NotYetValid);
    }
    if at >= c.not_after {
        return Err(CertificateError::Expired);
    }
    Ok(())
}

/// A certifier's (manufacturer's) Ed25519 signing key: it certifies device keys at the
/// factory. Kept by the manufacturer, in an HSM in production; wiped on drop, never
/// printed by `Debug`.
///
/// ```
/// use confiance::consent::CertifierKey;
/// let key = CertifierKey::from_bytes(&[7; 32]);
/// assert_eq!(format!("{key:?}"), "CertifierKey(..)");
/// assert_eq!(key.public_key().to_string().len(), 64);
/// ```
pub struct CertifierKey(SigningKey);

impl fmt::Debug for CertifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertifierKey(..)")
    }
}

impl CertifierKey {
    /// A fresh key from a CSPRNG.
    /// ```
    /// use confiance::consent::CertifierKey;
    /// use confiance::hazmat::SeedableRng as _;
    /// let mut rng = confiance::hazmat::SeededRng::seed_from_u64(1);
    /// assert_ne!(CertifierKey::generate(&mut rng).public_key(), CertifierKey::generate(&mut rng).public_key());
    /// ```
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(SigningKey::generate(rng))
    }

    /// The key from its 32-byte seed. The caller should wipe its copy.
    /// ```
    /// use confiance::consent::CertifierKey;
    /// assert_eq!(CertifierKey::from_bytes(&[7; 32]).public_key(), CertifierKey::from_bytes(&[7; 32]).public_key());
    /// ```
    #[must_use]
    pub fn from_bytes(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The public key a catalogue names in `[enrollment] certifiers`.
    /// ```
    /// use confiance::catalogue::Enrollment;
    /// use confiance::consent::CertifierKey;
    /// let maker = CertifierKey::from_bytes(&[7; 32]);
    /// assert!(!Enrollment::certified_by([maker.public_key()]).is_open());
    /// ```
    #[must_use]
    pub fn public_key(&self) -> CertifierPublicKey {
        CertifierPublicKey(self.0.verifying_key().to_bytes())
    }

    /// Certifies `key` (a device key, or a single-device subject's key as
    /// `SubjectPublicKey::as_device_key`) for `model`, in force from `not_before` until
    /// `not_after` (exclusive).
    ///
    /// ```
    /// use confiance::consent::{CertificateError, CertifierKey, SubjectKey};
    /// use confiance::Timestamp;
    /// let maker = CertifierKey::from_bytes(&[7; 32]);
    /// // A single-device subject: its own key is the one that asks for tokens.
    /// let solo = SubjectKey::from_bytes(&[4; 32]).public_key().as_device_key();
    /// let t = Timestamp::from_secs;
    /// assert!(maker.certify(solo, "plug-p1", t(0), t(100)).is_ok());
    /// assert_eq!(maker.certify(solo, "plug-p1", t(100), t(100)), Err(CertificateError::InvertedValidity));
    /// ```
    ///
    /// # Errors
    /// [`CertificateError::BadModel`] for a model longer than [`MAX_MODEL_BYTES`] or not
    /// printable ASCII; [`CertificateError::InvertedValidity`].
    pub fn certify(
        &self,
        key: DevicePublicKey,
        model: &str,
        not_before: Timestamp,
        not_after: Timestamp,
    ) -> Result<DeviceCertificate, CertificateError> {
        let certificate = Certificate {
            version: CERTIFICATE_VERSION,
            certifier: self.public_key(),
            key,
            model: String::from(model),
            not_before,
            not_after,
        };
        certificate.check()?;
        let signature = Sig(self.0.sign(&signing_message(SIG_DOMAIN, &certificate.body())).to_bytes());
        Ok(DeviceCertificate { certificate, signature })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::DeviceKey;

    fn t(s: u64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    fn cert() -> (CertifierKey, DeviceCertificate) {
        let maker = CertifierKey::from_bytes(&[7; 32]);
        let c = maker.certify(DeviceKey::from_bytes(&[2; 32]).public_key(), "t3", t(10), t(100)).unwrap();
        (maker, c)
    }

    #[test]
    fn round_trips_and_every_flipped_byte_is_refused() {
        let (_, c) = cert();
        let bytes = c.to_bytes();
        assert_eq!(DeviceCertificate::from_bytes(&bytes).unwrap(), c);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(DeviceCertificate::from_bytes(&b).is_err(), "byte {i} flipped was accepted");
        }
    }

    #[test]
    fn trailing_truncated_and_oversized_bytes_are_refused() {
        let (_, c) = cert();
        let mut bytes = c.to_bytes();
        bytes.push(0);
        assert_eq!(DeviceCertificate::from_bytes(&bytes), Err(CertificateError::TrailingBytes));
        bytes.truncate(bytes.len() - 2);
        assert_eq!(DeviceCertificate::from_bytes(&bytes), Err(CertificateError::Malformed));
        assert_eq!(DeviceCertificate::from_bytes(&[1; 257]), Err(CertificateError::TooLarge));
        assert_eq!(DeviceCertificate::from_bytes(&[2, 0]), Err(CertificateError::UnsupportedVersion(2)));
    }

    #[test]
    fn bad_models_and_validity_are_refused_when_signing() {
        let maker = CertifierKey::from_bytes(&[7; 32]);
        let key = DeviceKey::from_bytes(&[2; 32]).public_key();
        assert_eq!(maker.certify(key, &"m".repeat(65), t(0), t(1)), Err(CertificateError::BadModel));
        assert_eq!(maker.certify(key, "a\nb", t(0), t(1)), Err(CertificateError::BadModel));
        assert!(maker.certify(key, &"m".repeat(64), t(0), t(1)).is_ok());
        assert_eq!(maker.certify(key, "t3", t(5), t(5)), Err(CertificateError::InvertedValidity));
    }

    #[test]
    fn verify_checks_certifier_then_validity() {
        let (maker, c) = cert();
        let other = CertifierKey::from_bytes(&[8; 32]).public_key();
        assert_eq!(c.verify(&[other, maker.public_key()], t(10)), Ok(c.certificate().key));
        assert_eq!(c.verify(&[], t(50)), Err(CertificateError::UnknownCertifier));
        assert_eq!(c.verify(&[other], t(5)), Err(CertificateError::UnknownCertifier));
        assert_eq!(c.verify(&[maker.public_key()], t(9)), Err(CertificateError::NotYetValid));
        assert_eq!(c.verify(&[maker.public_key()], t(99)), Ok(c.certificate().key));
        assert_eq!(c.verify(&[maker.public_key()], t(100)), Err(CertificateError::Expired));
    }
}

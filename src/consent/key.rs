//! The Ed25519 keys of consent: the subject's key and the device's key.

use ed25519_dalek::{Signer as _, SigningKey};

use crate::ids::{DevicePublicKey, SubjectId, SubjectPublicKey};

/// A device's Ed25519 key: it signs receipts and withdrawals on behalf of the subject
/// that delegated it (or, for a single-device subject, it *is* the subject key). Wiped
/// on drop (ed25519-dalek's `ZeroizeOnDrop`), never printed by `Debug`.
///
/// ```
/// use confiance::consent::DeviceKey;
/// let key = DeviceKey::from_bytes(&[9; 32]);
/// assert_eq!(format!("{key:?}"), "DeviceKey(..)");
/// assert_eq!(key.public_key().as_bytes().len(), 32);
/// ```
pub struct DeviceKey(pub(super) SigningKey);

impl core::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("DeviceKey(..)")
    }
}

impl DeviceKey {
    /// A fresh key from a CSPRNG.
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(SigningKey::generate(rng))
    }

    /// The key from its 32-byte seed (for a host that stores it in a secure element or
    /// keystore). The caller should wipe its copy.
    #[must_use]
    pub fn from_bytes(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed, for the host's secure storage. Wipe it after use.
    #[must_use]
    pub fn to_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.0.to_bytes())
    }

    /// The Ed25519 public key that verifies what this device signs.
    #[must_use]
    pub fn public_key(&self) -> DevicePublicKey {
        DevicePublicKey(self.0.verifying_key().to_bytes())
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}

/// A subject's Ed25519 key, held by the owner (a phone app) or, for a single-device
/// subject, by the device itself. The subject id is the hash of its public key
/// ([`SubjectId::of_key`]). It signs device delegations and revocations, and may sign
/// receipts and withdrawals itself. Wiped on drop, never printed by `Debug`.
///
/// ```
/// use confiance::consent::{DeviceKey, SubjectKey};
/// use confiance::ids::SubjectId;
/// use confiance::Timestamp;
/// let subject = SubjectKey::from_bytes(&[1; 32]);
/// assert_eq!(format!("{subject:?}"), "SubjectKey(..)");
/// assert_eq!(subject.subject_id(), SubjectId::of_key(&subject.public_key()));
/// let device = DeviceKey::from_bytes(&[2; 32]);
/// let d = subject.delegate(device.public_key(), Timestamp::from_secs(0), None, Timestamp::from_secs(0))?;
/// assert_eq!(d.delegation().device, device.public_key());
/// # Ok::<(), confiance::consent::ConsentError>(())
/// ```
pub struct SubjectKey(pub(super) SigningKey);

impl core::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SubjectKey(..)")
    }
}

impl SubjectKey {
    /// A fresh key from a CSPRNG.
    pub fn generate<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(SigningKey::generate(rng))
    }

    /// The key from its 32-byte seed. The caller should wipe its copy.
    #[must_use]
    pub fn from_bytes(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed, for the owner's secure storage. Wipe it after use.
    #[must_use]
    pub fn to_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.0.to_bytes())
    }

    /// The subject's public key.
    #[must_use]
    pub fn public_key(&self) -> SubjectPublicKey {
        SubjectPublicKey(self.0.verifying_key().to_bytes())
    }

    /// The subject this key names.
    #[must_use]
    pub fn subject_id(&self) -> SubjectId {
        SubjectId::of_key(&self.public_key())
    }

    /// The same key as a device key: a single-device subject whose device holds the
    /// subject key signs its receipts with it.
    #[must_use]
    pub fn to_device_key(&self) -> DeviceKey {
        DeviceKey(self.0.clone())
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}

//! The device's Ed25519 signing key for consent receipts and withdrawals.

use ed25519_dalek::{Signer as _, SigningKey};

/// The device's Ed25519 key. Wiped on drop (ed25519-dalek's `ZeroizeOnDrop`), never
/// printed by `Debug`.
///
/// ```
/// use confiance::consent::DeviceKey;
/// let key = DeviceKey::from_bytes(&[9; 32]);
/// assert_eq!(format!("{key:?}"), "DeviceKey(..)");
/// assert_eq!(key.public_key().len(), 32);
/// ```
pub struct DeviceKey(SigningKey);

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

    /// The Ed25519 public key that verifies this device's receipts.
    #[must_use]
    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}

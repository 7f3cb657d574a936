//! Aggregator keys as the device sees them (public key configs) and as the aggregator
//! holds them (secret keys).

use super::EnvelopeError;
use super::hpke_base;
use crate::Timestamp;
use core::fmt;
use curve25519_dalek::montgomery::MontgomeryPoint;
use rand_core::CryptoRng;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// HPKE KEM id of DHKEM(X25519, HKDF-SHA256) (RFC 9180 §7.1).
pub(crate) const KEM_ID: u16 = 0x0020;
/// HPKE KDF id of HKDF-SHA256 (RFC 9180 §7.2).
pub(crate) const KDF_ID: u16 = 0x0001;

/// Bytes of a serialized [`KeyConfig`].
pub const KEY_CONFIG_LEN: usize = 2 + 2 + 2 + 2 + 32 + 8 + 8;

/// The id of an aggregator key config, carried in every envelope header (big-endian
/// `u16`). Ids are never reused while a key is pending, active or in its grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyId(pub u16);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The HPKE AEAD of a key config, by its RFC 9180 §7.3 id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AeadId {
    /// AES-128-GCM (`0x0001`); sealing and opening need the `aes` feature.
    Aes128Gcm,
    /// ChaCha20-Poly1305 (`0x0003`): the default, fast without AES hardware.
    ChaCha20Poly1305,
}

impl AeadId {
    /// The RFC 9180 registry value.
    #[must_use]
    pub const fn to_u16(self) -> u16 {
        match self {
            Self::Aes128Gcm => 0x0001,
            Self::ChaCha20Poly1305 => 0x0003,
        }
    }

    /// The AEAD with registry value `id`, if it is one of ours.
    #[must_use]
    pub const fn from_u16(id: u16) -> Option<Self> {
        match id {
            0x0001 => Some(Self::Aes128Gcm),
            0x0003 => Some(Self::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// Whether this build can seal and open with it.
    #[must_use]
    pub const fn is_supported(self) -> bool {
        match self {
            Self::Aes128Gcm => cfg!(feature = "aes"),
            Self::ChaCha20Poly1305 => true,
        }
    }
}

/// An aggregator's X25519 public key (`pkRm`, RFC 9180 `SerializePublicKey`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// An aggregator's X25519 secret key. Wiped on drop, hidden from `Debug`, compared in
/// constant time. Keeps its public key so that opening costs one variable-base scalar
/// multiplication and nothing else of note.
///
/// ```
/// use confiance::envelope::SecretKey;
/// let sk = SecretKey::derive(&[7; 32]);
/// let again = SecretKey::from_bytes(&sk.to_bytes());
/// assert_eq!(sk, again);
/// assert_eq!(format!("{sk:?}"), format!("SecretKey {{ public: {:?}, .. }}", sk.public_key()));
/// ```
#[derive(Clone)]
pub struct SecretKey {
    sk: Zeroizing<[u8; 32]>,
    pk: PublicKey,
    /// The key-independent start of every open's first HKDF-Extract (public).
    eae: hpke_base::EaeExtract,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey").field("public", &self.pk).finish_non_exhaustive()
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        self.sk.ct_eq(&*other.sk).into()
    }
}
impl Eq for SecretKey {}

impl SecretKey {
    /// A fresh key: RFC 9180 `GenerateKeyPair` (32 random bytes into `DeriveKeyPair`).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut ikm = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut ikm[..]);
        Self::derive(&ikm[..])
    }

    /// RFC 9180 §7.1.3 `DeriveKeyPair(ikm)`: a deterministic key from input keying
    /// material with at least 32 bytes of entropy.
    #[must_use]
    pub fn derive(ikm: &[u8]) -> Self {
        let (sk, pk) = hpke_base::derive_keypair(ikm);
        Self { sk, pk: PublicKey(pk), eae: hpke_base::EaeExtract::new() }
    }

    /// RFC 9180 `DeserializePrivateKey` (clamps, RFC 9180 §7.1.2).
    #[must_use]
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let sk = Zeroizing::new(curve25519_dalek::scalar::clamp_integer(*bytes));
        let pk = PublicKey(MontgomeryPoint::mul_base_clamped(*sk).to_bytes());
        Self { sk, pk, eae: hpke_base::EaeExtract::new() }
    }

    /// RFC 9180 `SerializePrivateKey` (clamped), in a buffer wiped on drop.
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        self.sk.clone()
    }

    /// The matching public key.
    #[must_use]
    pub const fn public_key(&self) -> PublicKey {
        self.pk
    }

    pub(crate) fn scalar(&self) -> &[u8; 32] {
        &self.sk
    }

    pub(crate) const fn eae_extract(&self) -> &hpke_base::EaeExtract {
        &self.eae
    }
}

/// An aggregator key config as the device caches it: which key, which AEAD, and when it
/// may be used. The device seals only to a config valid at its clock's now
/// ([`KeyConfig::is_valid_at`], [`select_config`]); the aggregator keeps opening for a
/// grace period after `not_after` for devices that flushed late.
///
/// Serialized as [`KEY_CONFIG_LEN`] bytes (see `docs/wire-format.md`), after the
/// OHTTP key configuration of RFC 9458 §3.1 but with a validity window.
///
/// ```
/// use confiance::Timestamp;
/// use confiance::envelope::{AeadId, KeyConfig, KeyId, PublicKey};
/// let c = KeyConfig::new(KeyId(3), AeadId::ChaCha20Poly1305, PublicKey([9; 32]),
///     Timestamp::from_secs(100), Timestamp::from_secs(200))?;
/// assert_eq!(KeyConfig::from_bytes(&c.to_bytes())?, c);
/// assert!(c.is_valid_at(Timestamp::from_secs(100)) && !c.is_valid_at(Timestamp::from_secs(200)));
/// # Ok::<(), confiance::envelope::EnvelopeError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyConfig {
    /// The id written into envelope headers.
    pub id: KeyId,
    /// The AEAD to seal with.
    pub aead: AeadId,
    /// The aggregator's public key.
    pub public_key: PublicKey,
    /// First instant the device may seal to this key.
    pub not_before: Timestamp,
    /// First instant the device must no longer seal to this key.
    pub not_after: Timestamp,
}

impl KeyConfig {
    /// A config; `not_before` must be before `not_after`.
    ///
    /// # Errors
    /// [`EnvelopeError::MalformedKeyConfig`] if the window is empty.
    pub const fn new(
        id: KeyId,
        aead: AeadId,
        public_key: PublicKey,
        not_before: Timestamp,
        not_after: Timestamp,
    ) -> Result<Self, EnvelopeError> {
        if not_before.as_secs() >= not_after.as_secs() {
            return Err(EnvelopeError::MalformedKeyConfig);
        }
        Ok(Self { id, aead, public_key, not_before, not_after })
    }

    /// Whether the device may seal to this key at `now`: `not_before <= now < not_after`.
    #[must_use]
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        self.not_before <= now && now < self.not_after
    }

    /// The fixed-size encoding (all integers big-endian):
    /// `id u16 | kem_id u16 = 0x0020 | kdf_id u16 = 0x0001 | aead_id u16 | public key [32] |
    /// not_before u64 | not_after u64`.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; KEY_CONFIG_LEN] {
        let mut out = [0u8; KEY_CONFIG_LEN];
        let fields: [&[u8]; 7] = [
            &self.id.0.to_be_bytes(),
            &KEM_ID.to_be_bytes(),
            &KDF_ID.to_be_bytes(),
            &self.aead.to_u16().to_be_bytes(),
            &self.public_key.0,
            &self.not_before.as_secs().to_be_bytes(),
            &self.not_after.as_secs().to_be_bytes(),
        ];
        let mut at = 0;
        for field in fields {
            if let Some(dst) = out.get_mut(at..at + field.len()) {
                dst.copy_from_slice(field);
            }
            at += field.len();
        }
        out
    }

    /// Strict inverse of [`KeyConfig::to_bytes`].
    ///
    /// # Errors
    /// [`EnvelopeError::MalformedKeyConfig`] for a wrong length, another KEM or KDF, an
    /// unknown AEAD id, or an empty validity window.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        const BAD: EnvelopeError = EnvelopeError::MalformedKeyConfig;
        let bytes: &[u8; KEY_CONFIG_LEN] = bytes.try_into().map_err(|_| BAD)?;
        let (id, rest) = bytes.split_first_chunk::<2>().ok_or(BAD)?;
        let (kem, rest) = rest.split_first_chunk::<2>().ok_or(BAD)?;
        let (kdf, rest) = rest.split_first_chunk::<2>().ok_or(BAD)?;
        let (aead, rest) = rest.split_first_chunk::<2>().ok_or(BAD)?;
        let (pk, rest) = rest.split_first_chunk::<32>().ok_or(BAD)?;
        let (nb, rest) = rest.split_first_chunk::<8>().ok_or(BAD)?;
        let (na, _) = rest.split_first_chunk::<8>().ok_or(BAD)?;
        if u16::from_be_bytes(*kem) != KEM_ID || u16::from_be_bytes(*kdf) != KDF_ID {
            return Err(BAD);
        }
        let aead = AeadId::from_u16(u16::from_be_bytes(*aead)).ok_or(BAD)?;
        Self::new(
            KeyId(u16::from_be_bytes(*id)),
            aead,
            PublicKey(*pk),
            Timestamp::from_secs(u64::from_be_bytes(*nb)),
            Timestamp::from_secs(u64::from_be_bytes(*na)),
        )
    }
}

/// The config the device should seal to at `now`: among those valid at `now` whose AEAD
/// this build supports, the one that became valid last (ties: the highest id). `None`
/// means the device has no usable key and should keep its reports queued.
///
/// ```
/// use confiance::Timestamp;
/// use confiance::envelope::{AeadId, KeyConfig, KeyId, PublicKey, select_config};
/// let t = Timestamp::from_secs;
/// let old = KeyConfig::new(KeyId(1), AeadId::ChaCha20Poly1305, PublicKey([1; 32]), t(0), t(200))?;
/// let new = KeyConfig::new(KeyId(2), AeadId::ChaCha20Poly1305, PublicKey([2; 32]), t(100), t(300))?;
/// assert_eq!(select_config(&[old, new], t(50)).map(|c| c.id), Some(KeyId(1)));
/// assert_eq!(select_config(&[old, new], t(150)).map(|c| c.id), Some(KeyId(2)));
/// assert_eq!(select_config(&[old, new], t(300)), None);
/// # Ok::<(), confiance::envelope::EnvelopeError>(())
/// ```
#[must_use]
pub fn select_config(configs: &[KeyConfig], now: Timestamp) -> Option<&KeyConfig> {
    configs
        .iter()
        .filter(|c| c.is_valid_at(now) && c.aead.is_supported())
        .max_by_key(|c| (c.not_before, c.id))
}

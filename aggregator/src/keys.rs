//! The aggregator's private keys and the first step of ingest: opening envelopes.
//!
//! A [`KeyStore`] holds HPKE secret keys with their published [`KeyConfig`]s. Each key
//! goes pending → active → grace → expired ([`KeyState`]); devices seal to the active
//! config they cached, and the store opens envelopes only for active keys and keys in
//! their grace period (docs/design.md#envelopes). Secret keys are wiped when dropped (on
//! [`KeyStore::purge`] or with the store) and never printed.
//!
//! [`KeyStore::open`] follows docs/design.md#ingest: size and header → key → HPKE open →
//! catalogue digest, and tells apart every reason to refuse an envelope except *why* the
//! AEAD failed ([`OpenError::Decrypt`] is opaque).
//!
//! ```
//! use confiance::Timestamp;
//! use confiance::envelope::{self, AeadId, CatalogueDigest, HeaderFields};
//! use confiance_aggregator::keys::{KeyStore, OpenError};
//! let t = Timestamp::from_secs;
//! let mut rng = confiance::rng::OsRng::new();
//! let mut store = KeyStore::new(86_400);
//! let config = store.generate(AeadId::ChaCha20Poly1305, t(0), t(1_000), &mut rng)?;
//!
//! // A device caches `config` and seals a batch to it.
//! let digest = CatalogueDigest([5; 32]);
//! let fields = HeaderFields { catalogue_digest: digest, time_bucket: t(600) };
//! let frame = envelope::seal(&config, &fields, b"batch", &mut rng)?;
//!
//! let opened = store.open(&frame, t(700), &digest)?;
//! assert_eq!(opened.plaintext, b"batch");
//! // Still opened in the grace period, refused after it.
//! assert!(store.open(&frame, t(1_000 + 86_399), &digest).is_ok());
//! assert_eq!(store.open(&frame, t(1_000 + 86_400), &digest).unwrap_err(), OpenError::KeyExpired(config.id));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod lifecycle;
#[cfg(test)]
mod tests;

pub use lifecycle::{KeyState, LifecycleError};

use confiance::Timestamp;
use confiance::envelope::{
    AeadId, CatalogueDigest, Envelope, EnvelopeError, EnvelopeId, Header, KeyConfig, KeyId, SecretKey,
};
use core::fmt;
use rand_core::CryptoRng;
use std::collections::BTreeMap;

/// An envelope the store opened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Opened {
    /// The header, authenticated by the AEAD.
    pub header: Header,
    /// The plaintext: a postcard report batch, to decode with
    /// [`decode_batch`](confiance::envelope::decode_batch).
    pub plaintext: Vec<u8>,
    /// SHA-256 of the frame, for replay detection and the audit log.
    pub envelope_id: EnvelopeId,
    /// [`KeyState::Active`] or [`KeyState::Grace`].
    pub key_state: KeyState,
}

/// Why an envelope was refused. Each cause has its own variant, except the AEAD's, which
/// is one opaque [`OpenError::Decrypt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// The frame is malformed: too short, too long or of an unknown version.
    Malformed(EnvelopeError),
    /// No key with the header's id.
    UnknownKey(KeyId),
    /// The key exists but is not active yet.
    KeyPending(KeyId),
    /// The key's grace period has ended.
    KeyExpired(KeyId),
    /// Decapsulation or the AEAD failed: a tampered, truncated or misaddressed envelope.
    Decrypt,
    /// The envelope opened, but its reports were made under another catalogue.
    BadCatalogueDigest {
        /// The digest the aggregator expected.
        expected: CatalogueDigest,
        /// The (authenticated) digest in the header.
        found: CatalogueDigest,
    },
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed envelope: {e}"),
            Self::UnknownKey(id) => write!(f, "no key with id {id}"),
            Self::KeyPending(id) => write!(f, "key {id} is not active yet"),
            Self::KeyExpired(id) => write!(f, "key {id} has expired"),
            Self::Decrypt => f.write_str("envelope did not decrypt"),
            Self::BadCatalogueDigest { expected, found } => {
                write!(f, "catalogue digest {found} is not the expected {expected}")
            }
        }
    }
}

impl std::error::Error for OpenError {}

#[derive(Clone, Debug)]
struct StoredKey {
    config: KeyConfig,
    secret: SecretKey,
}

/// The aggregator's HPKE keys, by id, with one grace period for all of them.
#[derive(Clone, Debug)]
pub struct KeyStore {
    keys: BTreeMap<KeyId, StoredKey>,
    grace_secs: u64,
}

impl KeyStore {
    /// An empty store whose keys stay openable `grace_secs` after their window ends.
    #[must_use]
    pub const fn new(grace_secs: u64) -> Self {
        Self { keys: BTreeMap::new(), grace_secs }
    }

    /// The grace period, in seconds.
    #[must_use]
    pub const fn grace_secs(&self) -> u64 {
        self.grace_secs
    }

    /// Makes a fresh key valid over `[not_before, not_after)` under the first free id
    /// after the highest in use, and returns its config for publication.
    ///
    /// # Errors
    /// [`LifecycleError::EmptyWindow`], [`LifecycleError::NoFreeId`],
    /// [`LifecycleError::UnsupportedAead`].
    pub fn generate<R: CryptoRng + ?Sized>(
        &mut self,
        aead: AeadId,
        not_before: Timestamp,
        not_after: Timestamp,
        rng: &mut R,
    ) -> Result<KeyConfig, LifecycleError> {
        let start = self.keys.keys().next_back().map_or(0, |id| id.0.wrapping_add(1));
        let id = (0..=u16::MAX)
            .map(|i| KeyId(start.wrapping_add(i)))
            .find(|id| !self.keys.contains_key(id))
            .ok_or(LifecycleError::NoFreeId)?;
        let secret = SecretKey::generate(rng);
        let config = KeyConfig::new(id, aead, secret.public_key(), not_before, not_after)
            .map_err(|_| LifecycleError::EmptyWindow)?;
        self.insert(config, secret)?;
        Ok(config)
    }

    /// Adds a key (for example one loaded from storage).
    ///
    /// # Errors
    /// [`LifecycleError::DuplicateId`], [`LifecycleError::PublicKeyMismatch`],
    /// [`LifecycleError::UnsupportedAead`].
    pub fn insert(&mut self, config: KeyConfig, secret: SecretKey) -> Result<(), LifecycleError> {
        if self.keys.contains_key(&config.id) {
            return Err(LifecycleError::DuplicateId(config.id));
        }
        if secret.public_key() != config.public_key {
            return Err(LifecycleError::PublicKeyMismatch(config.id));
        }
        if !config.aead.is_supported() {
            return Err(LifecycleError::UnsupportedAead(config.id));
        }
        self.keys.insert(config.id, StoredKey { config, secret });
        Ok(())
    }

    /// The config of key `id`.
    #[must_use]
    pub fn config(&self, id: KeyId) -> Option<&KeyConfig> {
        self.keys.get(&id).map(|k| &k.config)
    }

    /// The state of key `id` at `now`.
    #[must_use]
    pub fn state(&self, id: KeyId, now: Timestamp) -> Option<KeyState> {
        self.keys.get(&id).map(|k| KeyState::of(&k.config, now, self.grace_secs))
    }

    /// Every key with its config, for persistence. The secrets are the caller's to
    /// protect.
    pub fn iter(&self) -> impl Iterator<Item = (&KeyConfig, &SecretKey)> {
        self.keys.values().map(|k| (&k.config, &k.secret))
    }

    /// The configs devices should cache at `now`: pending and active ones, by id.
    #[must_use]
    pub fn published(&self, now: Timestamp) -> Vec<KeyConfig> {
        self.keys
            .values()
            .filter(|k| {
                matches!(KeyState::of(&k.config, now, self.grace_secs), KeyState::Pending | KeyState::Active)
            })
            .map(|k| k.config)
            .collect()
    }

    /// Ends key `id`'s window at `now` (a compromised or rotated key); its grace period
    /// starts now. A key still pending is removed outright (and wiped).
    ///
    /// # Errors
    /// [`LifecycleError::UnknownKey`].
    pub fn retire(&mut self, id: KeyId, now: Timestamp) -> Result<KeyConfig, LifecycleError> {
        let key = self.keys.get_mut(&id).ok_or(LifecycleError::UnknownKey(id))?;
        if now < key.config.not_before {
            let removed = self.keys.remove(&id).ok_or(LifecycleError::UnknownKey(id))?;
            return Ok(removed.config);
        }
        if now < key.config.not_after {
            // `now >= not_before`; keep the window non-empty.
            key.config.not_after = now.max(key.config.not_before.saturating_add_secs(1));
        }
        Ok(key.config)
    }

    /// Removes (and wipes) every key expired at `now`; returns their ids.
    pub fn purge(&mut self, now: Timestamp) -> Vec<KeyId> {
        let grace = self.grace_secs;
        let expired: Vec<KeyId> = self
            .keys
            .values()
            .filter(|k| KeyState::of(&k.config, now, grace) == KeyState::Expired)
            .map(|k| k.config.id)
            .collect();
        for id in &expired {
            self.keys.remove(id);
        }
        expired
    }

    /// Opens `frame` at `now` for reports expected under the catalogue `expected`.
    ///
    /// Order (docs/design.md#ingest): frame size and version; key id known; key active or in
    /// grace; HPKE open (one X25519 variable-base multiplication); catalogue digest.
    /// The digest is compared after the open, so the value reported in
    /// [`OpenError::BadCatalogueDigest`] is authenticated.
    ///
    /// # Errors
    /// [`OpenError::Malformed`], [`OpenError::UnknownKey`], [`OpenError::KeyPending`],
    /// [`OpenError::KeyExpired`], [`OpenError::Decrypt`], [`OpenError::BadCatalogueDigest`].
    pub fn open(
        &self,
        frame: &[u8],
        now: Timestamp,
        expected: &CatalogueDigest,
    ) -> Result<Opened, OpenError> {
        let env = Envelope::parse(frame).map_err(OpenError::Malformed)?;
        let header = *env.header();
        let key = self.keys.get(&header.key_id).ok_or(OpenError::UnknownKey(header.key_id))?;
        let key_state = KeyState::of(&key.config, now, self.grace_secs);
        match key_state {
            KeyState::Pending => return Err(OpenError::KeyPending(header.key_id)),
            KeyState::Expired => return Err(OpenError::KeyExpired(header.key_id)),
            KeyState::Active | KeyState::Grace => {}
        }
        let plaintext = env.open(&key.secret, key.config.aead).map_err(|e| match e {
            EnvelopeError::Open => OpenError::Decrypt,
            other => OpenError::Malformed(other),
        })?;
        if header.catalogue_digest != *expected {
            return Err(OpenError::BadCatalogueDigest {
                expected: *expected,
                found: header.catalogue_digest,
            });
        }
        Ok(Opened { header, plaintext, envelope_id: env.id(), key_state })
    }
}

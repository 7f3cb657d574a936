//! The life of an aggregator key: pending → active → (grace) → expired.

use confiance::Timestamp;
use confiance::envelope::{KeyConfig, KeyId};
use core::fmt;

/// Where a key is in its life at some instant, given its config's window
/// `[not_before, not_after)` and the store's grace period.
///
/// | state | when | devices seal to it | the aggregator opens |
/// |---|---|---|---|
/// | `Pending` | `now < not_before` | no (but they may cache it) | no |
/// | `Active` | `not_before <= now < not_after` | yes | yes |
/// | `Grace` | `not_after <= now < not_after + grace` | no | yes (late flushes) |
/// | `Expired` | `now >= not_after + grace` | no | no; the key may be purged |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// Published ahead of use; not yet valid.
    Pending,
    /// In its validity window.
    Active,
    /// Past its window, still opened for devices that sealed before it ended.
    Grace,
    /// Past its grace period: envelopes to it are refused.
    Expired,
}

impl KeyState {
    /// The state of `config` at `now` with a grace period of `grace_secs`.
    ///
    /// ```
    /// use confiance::Timestamp;
    /// use confiance::envelope::{AeadId, KeyConfig, KeyId, PublicKey};
    /// use confiance_aggregator::keys::KeyState;
    /// let t = Timestamp::from_secs;
    /// let c = KeyConfig::new(KeyId(1), AeadId::ChaCha20Poly1305, PublicKey([9; 32]), t(10), t(20))?;
    /// let states: Vec<_> = [9, 10, 19, 20, 24, 25].map(|s| KeyState::of(&c, t(s), 5)).into();
    /// assert_eq!(states, [KeyState::Pending, KeyState::Active, KeyState::Active,
    ///                     KeyState::Grace, KeyState::Grace, KeyState::Expired]);
    /// # Ok::<(), confiance::envelope::EnvelopeError>(())
    /// ```
    #[must_use]
    pub fn of(config: &KeyConfig, now: Timestamp, grace_secs: u64) -> Self {
        if now < config.not_before {
            Self::Pending
        } else if now < config.not_after {
            Self::Active
        } else if now < config.not_after.saturating_add_secs(grace_secs) {
            Self::Grace
        } else {
            Self::Expired
        }
    }

    /// Whether envelopes sealed to a key in this state are opened.
    #[must_use]
    pub const fn opens(self) -> bool {
        matches!(self, Self::Active | Self::Grace)
    }
}

/// Why a key could not be added to, made in, or retired from a
/// [`KeyStore`](super::KeyStore).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LifecycleError {
    /// A key with this id is already in the store (ids are not reused until the old key
    /// is purged).
    DuplicateId(KeyId),
    /// Every one of the 65 536 ids is in use.
    NoFreeId,
    /// The secret key does not match the config's public key.
    PublicKeyMismatch(KeyId),
    /// The config's AEAD is not supported by this build.
    UnsupportedAead(KeyId),
    /// No key with this id.
    UnknownKey(KeyId),
    /// The validity window is empty (`not_before >= not_after`).
    EmptyWindow,
}

impl fmt::Display for LifecycleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateId(id) => write!(f, "key id {id} is already in use"),
            Self::NoFreeId => f.write_str("no free key id"),
            Self::PublicKeyMismatch(id) => write!(f, "secret key of {id} does not match its public key"),
            Self::UnsupportedAead(id) => write!(f, "AEAD of key {id} is not supported by this build"),
            Self::UnknownKey(id) => write!(f, "no key with id {id}"),
            Self::EmptyWindow => f.write_str("key validity window is empty"),
        }
    }
}

impl std::error::Error for LifecycleError {}

//! Scoped pseudonyms: HKDF-SHA256 (RFC 5869) of the device secret, one per
//! (recipient, epoch).

use alloc::vec::Vec;
use core::fmt;

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{Ciphertext, PseudonymError, SystemPublicKey, push_field};
use crate::Timestamp;
use crate::ids::{RecipientId, SubjectId};

/// HKDF salt for every derivation from a device secret; bumping the version changes
/// every pseudonym.
const SALT: &[u8] = b"confiance/pseudonym/v1";
/// HKDF info label of scoped pseudonyms.
const SCOPED_LABEL: &[u8] = b"confiance/pseudonym/scoped";
/// HKDF info label of the identity point hidden in polymorphic pseudonyms.
const IDENTITY_LABEL: &[u8] = b"confiance/pseudonym/identity/v2";

/// The most entries one [`DeviceSecret::list_pseudonyms`] call returns, so that a bad
/// range cannot exhaust the device's memory.
pub const MAX_LISTED_PSEUDONYMS: usize = 1 << 16;

/// An epoch: the index of a time window of a fixed length, counted from the Unix epoch.
/// Pseudonyms change from one epoch to the next.
///
/// ```
/// use confiance::Timestamp;
/// use confiance::pseudonym::Epoch;
/// let day = 86_400;
/// let e = Epoch::containing(Timestamp::from_secs(3 * day + 5), day)?;
/// assert_eq!(e, Epoch(3));
/// assert_eq!(e.start(day)?, Timestamp::from_secs(3 * day));
/// # Ok::<(), confiance::pseudonym::PseudonymError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch of length `length_secs` (the catalogue's epoch length) that holds `at`.
    ///
    /// # Errors
    /// [`PseudonymError::ZeroEpochLength`] when `length_secs` is zero.
    pub const fn containing(at: Timestamp, length_secs: u64) -> Result<Self, PseudonymError> {
        match at.as_secs().checked_div(length_secs) {
            Some(i) => Ok(Self(i)),
            None => Err(PseudonymError::ZeroEpochLength),
        }
    }

    /// The first instant of this epoch when epochs last `length_secs` (saturating at
    /// [`Timestamp::MAX`]).
    ///
    /// # Errors
    /// [`PseudonymError::ZeroEpochLength`] when `length_secs` is zero.
    pub const fn start(self, length_secs: u64) -> Result<Timestamp, PseudonymError> {
        if length_secs == 0 {
            return Err(PseudonymError::ZeroEpochLength);
        }
        Ok(Timestamp::from_secs(self.0.saturating_mul(length_secs)))
    }
}

/// The device's long-term pseudonym secret: 32 uniformly random bytes, wiped on drop,
/// never printed, compared in constant time.
///
/// ```
/// use confiance::pseudonym::DeviceSecret;
/// let s = DeviceSecret::from_bytes([1; 32]);
/// assert_eq!(format!("{s:?}"), "DeviceSecret(..)");
/// ```
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DeviceSecret([u8; 32]);

impl fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceSecret(..)")
    }
}

impl ConstantTimeEq for DeviceSecret {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for DeviceSecret {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for DeviceSecret {}

impl DeviceSecret {
    /// A fresh secret from `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        Self(b)
    }

    /// A secret from stored bytes (which must have come from [`DeviceSecret::generate`]
    /// and [`DeviceSecret::expose_bytes`]).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The secret bytes, for the host to persist in protected storage. Anyone who reads
    /// them can link every pseudonym of this device.
    #[must_use]
    pub const fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn expand(&self, info: &[u8], out: &mut [u8]) {
        let hk = Hkdf::<Sha256>::new(Some(SALT), &self.0);
        // HKDF-Expand only fails above 255 * 32 bytes; every caller asks for 32 or 64.
        if hk.expand(info, out).is_err() {
            out.fill(0);
        }
    }

    /// The device's scoped pseudonym for `recipient` in `epoch`:
    /// `HKDF-SHA256(salt = "confiance/pseudonym/v1", ikm = secret,
    /// info = len‖"confiance/pseudonym/scoped" ‖ len‖recipient ‖ len‖epoch_be)` where every
    /// field is preceded by its length as a big-endian `u64`.
    #[must_use]
    pub fn scoped(&self, recipient: &RecipientId, epoch: Epoch) -> ScopedPseudonym {
        let mut info = Vec::with_capacity(64 + recipient.as_str().len());
        push_field(&mut info, SCOPED_LABEL);
        push_field(&mut info, recipient.as_str().as_bytes());
        push_field(&mut info, &epoch.0.to_be_bytes());
        let mut out = [0u8; 32];
        self.expand(&info, &mut out);
        ScopedPseudonym(out)
    }

    /// Every scoped pseudonym of this device for `recipients` in the epochs
    /// `first..=last`, in recipient order then epoch order — what a subject-access
    /// request needs to find the device's records at each recipient.
    ///
    /// ```
    /// use confiance::ids::RecipientId;
    /// use confiance::pseudonym::{DeviceSecret, Epoch};
    /// let s = DeviceSecret::from_bytes([2; 32]);
    /// let r = [RecipientId::new("acme")?, RecipientId::new("partner")?];
    /// let list = s.list_pseudonyms(&r, Epoch(10), Epoch(12))?;
    /// assert_eq!(list.len(), 6);
    /// assert_eq!(list[4].pseudonym, s.scoped(&r[1], Epoch(11)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`PseudonymError::EpochRangeReversed`] when `first > last`;
    /// [`PseudonymError::TooManyPseudonyms`] when the listing would exceed
    /// [`MAX_LISTED_PSEUDONYMS`] entries.
    pub fn list_pseudonyms(
        &self,
        recipients: &[RecipientId],
        first: Epoch,
        last: Epoch,
    ) -> Result<Vec<ScopedPseudonymEntry>, PseudonymError> {
        let Some(span) = last.0.checked_sub(first.0) else {
            return Err(PseudonymError::EpochRangeReversed);
        };
        let per_recipient = usize::try_from(span)
            .ok()
            .and_then(|s| s.checked_add(1))
            .ok_or(PseudonymError::TooManyPseudonyms)?;
        let total = per_recipient.checked_mul(recipients.len()).ok_or(PseudonymError::TooManyPseudonyms)?;
        if total > MAX_LISTED_PSEUDONYMS {
            return Err(PseudonymError::TooManyPseudonyms);
        }
        let mut out = Vec::with_capacity(total);
        for recipient in recipients {
            for e in first.0..=last.0 {
                let epoch = Epoch(e);
                out.push(ScopedPseudonymEntry {
                    recipient: recipient.clone(),
                    epoch,
                    pseudonym: self.scoped(recipient, epoch),
                });
            }
        }
        Ok(out)
    }

    /// Like [`DeviceSecret::list_pseudonyms`], for the epochs of length `epoch_length_secs`
    /// that overlap `from..=to`.
    ///
    /// # Errors
    /// As [`DeviceSecret::list_pseudonyms`], and [`PseudonymError::ZeroEpochLength`].
    pub fn list_pseudonyms_between(
        &self,
        recipients: &[RecipientId],
        from: Timestamp,
        to: Timestamp,
        epoch_length_secs: u64,
    ) -> Result<Vec<ScopedPseudonymEntry>, PseudonymError> {
        let first = Epoch::containing(from, epoch_length_secs)?;
        let last = Epoch::containing(to, epoch_length_secs)?;
        self.list_pseudonyms(recipients, first, last)
    }

    /// The device's identity point `M = m·G`, where the identity scalar `m` is
    /// HKDF-SHA256 expanded to 64 bytes under the label `"confiance/pseudonym/identity/v2"`
    /// and reduced mod ℓ (zero, probability 2⁻²⁵², replaced by one). Polymorphic
    /// pseudonyms encrypt it; recipients only ever see `s·M` for secret domain factors `s`.
    ///
    /// `M` has a discrete logarithm the device knows so that a transcryption request can
    /// prove knowledge of it ([`super::TranscryptionRequest`]): a recipient who holds a
    /// pseudonym `s·M` does not know its logarithm and so cannot submit it back in.
    #[must_use]
    pub fn identity_point(&self) -> RistrettoPoint {
        let mut m = self.identity_scalar();
        let p = curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE * &m;
        m.zeroize();
        p
    }

    /// The identity scalar `m` of [`DeviceSecret::identity_point`] (secret).
    pub(crate) fn identity_scalar(&self) -> Scalar {
        let mut info = Vec::with_capacity(40);
        push_field(&mut info, IDENTITY_LABEL);
        let mut wide = [0u8; 64];
        self.expand(&info, &mut wide);
        let m = Scalar::from_bytes_mod_order_wide(&wide);
        wide.zeroize();
        if m == Scalar::ZERO { Scalar::ONE } else { m }
    }

    /// A fresh polymorphic pseudonym: the ElGamal encryption of
    /// [`DeviceSecret::identity_point`] under the system public key, with fresh
    /// randomness, so two calls give unlinkable ciphertexts of the same identity.
    ///
    /// Deriving the identity point costs about a quarter of the two scalar
    /// multiplications (docs/benchmarks.md); a device that sends often can keep one
    /// ciphertext and send [`Ciphertext::rerandomise`] of it each time: the same law as a
    /// fresh encryption, for the multiplications alone.
    ///
    /// ```
    /// use confiance::pseudonym::{DeviceSecret, SystemPublicKey};
    /// use curve25519_dalek::{RistrettoPoint, Scalar};
    /// let mut rng = rand_chacha::ChaCha20Rng::from_seed([0; 32]);
    /// # use rand_core::SeedableRng;
    /// let pk = SystemPublicKey::from_point(RistrettoPoint::mul_base(&Scalar::from(5u8)))?;
    /// let s = DeviceSecret::from_bytes([3; 32]);
    /// let (a, b) = (s.polymorphic(&pk, &mut rng), s.polymorphic(&pk, &mut rng));
    /// assert_ne!(a.to_bytes(), b.to_bytes());
    /// # Ok::<(), confiance::pseudonym::PseudonymError>(())
    /// ```
    pub fn polymorphic<R: CryptoRng + ?Sized>(&self, pk: &SystemPublicKey, rng: &mut R) -> Ciphertext {
        Ciphertext::encrypt(&self.identity_point(), pk, rng)
    }
}

/// A scoped pseudonym: 32 bytes that identify a device to one recipient for one epoch.
///
/// ```
/// use confiance::ids::{RecipientId, SubjectId};
/// use confiance::pseudonym::{DeviceSecret, Epoch};
/// let p = DeviceSecret::from_bytes([4; 32]).scoped(&RecipientId::new("acme")?, Epoch(0));
/// let subject: SubjectId = p.into();
/// assert_eq!(subject.as_bytes(), p.as_bytes());
/// # Ok::<(), confiance::ids::IdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct ScopedPseudonym(pub [u8; 32]);

impl ScopedPseudonym {
    /// The raw bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<ScopedPseudonym> for SubjectId {
    fn from(p: ScopedPseudonym) -> Self {
        Self(p.0)
    }
}

impl fmt::Display for ScopedPseudonym {
    /// Lower-case hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ScopedPseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScopedPseudonym({self})")
    }
}

/// One line of a subject-access listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopedPseudonymEntry {
    /// Who knows the device under this pseudonym.
    pub recipient: RecipientId,
    /// When.
    pub epoch: Epoch,
    /// The pseudonym.
    pub pseudonym: ScopedPseudonym,
}

#[cfg(test)]
mod tests {
    use alloc::format;

    use super::*;

    fn r(s: &str) -> RecipientId {
        RecipientId::new(s).unwrap()
    }

    #[test]
    fn secrets_are_hidden_and_compared_by_value() {
        let s = DeviceSecret::from_bytes([0xab; 32]);
        assert_eq!(format!("{s:?}"), "DeviceSecret(..)");
        assert!(!format!("{s:?}").contains("ab"));
        assert_eq!(s, DeviceSecret::from_bytes([0xab; 32]));
        assert_ne!(s, DeviceSecret::from_bytes([0xac; 32]));
    }

    #[test]
    fn epochs_follow_the_length() {
        assert_eq!(Epoch::containing(Timestamp::from_secs(0), 60), Ok(Epoch(0)));
        assert_eq!(Epoch::containing(Timestamp::from_secs(59), 60), Ok(Epoch(0)));
        assert_eq!(Epoch::containing(Timestamp::from_secs(60), 60), Ok(Epoch(1)));
        assert_eq!(Epoch::containing(Timestamp::MAX, 1), Ok(Epoch(u64::MAX)));
        assert_eq!(Epoch::containing(Timestamp::from_secs(5), 0), Err(PseudonymError::ZeroEpochLength));
        assert_eq!(Epoch(u64::MAX).start(2), Ok(Timestamp::MAX));
        assert_eq!(Epoch(1).start(0), Err(PseudonymError::ZeroEpochLength));
    }

    #[test]
    fn listing_covers_every_scope_and_refuses_bad_ranges() {
        let s = DeviceSecret::from_bytes([1; 32]);
        let rs = [r("a"), r("b"), r("c")];
        let list = s
            .list_pseudonyms_between(&rs, Timestamp::from_secs(100), Timestamp::from_secs(399), 100)
            .unwrap();
        assert_eq!(list.len(), 9);
        for e in &list {
            assert_eq!(e.pseudonym, s.scoped(&e.recipient, e.epoch));
        }
        assert_eq!(list[0].epoch, Epoch(1));
        assert_eq!(list[8].epoch, Epoch(3));
        assert_eq!(s.list_pseudonyms(&rs, Epoch(2), Epoch(1)), Err(PseudonymError::EpochRangeReversed));
        assert_eq!(s.list_pseudonyms(&rs, Epoch(0), Epoch(u64::MAX)), Err(PseudonymError::TooManyPseudonyms));
        assert_eq!(
            s.list_pseudonyms(&rs, Epoch(0), Epoch((MAX_LISTED_PSEUDONYMS / 3) as u64)),
            Err(PseudonymError::TooManyPseudonyms)
        );
        assert!(s.list_pseudonyms(&[], Epoch(0), Epoch(1 << 40)).is_ok_and(|l| l.is_empty()));
    }

    #[test]
    fn scopes_and_labels_are_separated() {
        let s = DeviceSecret::from_bytes([2; 32]);
        // Recipient "ab" in epoch e must not collide with a recipient "a" whose epoch
        // bytes start with "b": fields are length-prefixed.
        assert_ne!(s.scoped(&r("ab"), Epoch(0)), s.scoped(&r("a"), Epoch(0)));
        assert_ne!(s.scoped(&r("a"), Epoch(1)), s.scoped(&r("a"), Epoch(1 << 56)));
        let id = s.identity_point().compress().to_bytes();
        assert_ne!(&id[..], &s.scoped(&r("a"), Epoch(0)).0[..]);
        assert_ne!(s.identity_point(), DeviceSecret::from_bytes([3; 32]).identity_point());
    }
}

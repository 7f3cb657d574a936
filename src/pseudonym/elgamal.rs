//! ElGamal on Ristretto255 (RFC 9496), in the form PEP uses: a ciphertext carries the
//! public key it is under, so rekeying is visible and verifiable.
//!
//! A ciphertext of the point `M` under the key `Y = x·G` with randomness `r` is
//! `(B, C, Y) = (r·G, M + r·Y, Y)`; it decrypts to `C − x·B`.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use rand_core::CryptoRng;
use zeroize::Zeroize;

use super::PseudonymError;

/// Bytes of an encoded point.
pub const POINT_LEN: usize = 32;
/// Bytes of an encoded scalar.
pub const SCALAR_LEN: usize = 32;
/// Bytes of an encoded [`Ciphertext`]: `B ‖ C ‖ Y`.
pub const CIPHERTEXT_LEN: usize = 3 * POINT_LEN;

/// Decodes a point, rejecting every non-canonical encoding (RFC 9496 §4.3.1).
///
/// # Errors
/// [`PseudonymError::BadLength`] unless `bytes` has 32 bytes;
/// [`PseudonymError::NonCanonicalPoint`] when they do not encode a point canonically.
pub fn decode_point(bytes: &[u8]) -> Result<RistrettoPoint, PseudonymError> {
    let c = CompressedRistretto::from_slice(bytes).map_err(|_| PseudonymError::BadLength)?;
    c.decompress().ok_or(PseudonymError::NonCanonicalPoint)
}

/// Decodes a scalar, rejecting encodings of values ≥ ℓ.
///
/// # Errors
/// [`PseudonymError::BadLength`] unless `bytes` has 32 bytes;
/// [`PseudonymError::NonCanonicalScalar`] when the value is not reduced.
pub fn decode_scalar(bytes: &[u8]) -> Result<Scalar, PseudonymError> {
    let arr: [u8; SCALAR_LEN] = bytes.try_into().map_err(|_| PseudonymError::BadLength)?;
    Option::from(Scalar::from_canonical_bytes(arr)).ok_or(PseudonymError::NonCanonicalScalar)
}

/// The system public key `Y` under which devices encrypt their identity point. With
/// several transcryptors it is `(x₁·…·xₙ)·G`, and no single party knows its secret.
///
/// ```
/// use confiance::pseudonym::SystemPublicKey;
/// use curve25519_dalek::{RistrettoPoint, Scalar};
/// let pk = SystemPublicKey::from_point(RistrettoPoint::mul_base(&Scalar::from(9u8)))?;
/// assert_eq!(SystemPublicKey::from_bytes(&pk.to_bytes())?, pk);
/// assert!(SystemPublicKey::from_bytes(&[0; 32]).is_err()); // the identity
/// # Ok::<(), confiance::pseudonym::PseudonymError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemPublicKey {
    point: RistrettoPoint,
    /// Its RFC 9496 encoding, computed once: every transcryption request hashes it.
    encoded: [u8; POINT_LEN],
}

impl SystemPublicKey {
    /// Wraps a point.
    ///
    /// # Errors
    /// [`PseudonymError::IdentityPoint`] for the identity, which would encrypt nothing.
    pub fn from_point(p: RistrettoPoint) -> Result<Self, PseudonymError> {
        if p.is_identity() {
            Err(PseudonymError::IdentityPoint)
        } else {
            Ok(Self { point: p, encoded: p.compress().to_bytes() })
        }
    }

    /// Decodes a key strictly.
    ///
    /// # Errors
    /// As [`decode_point`], and [`PseudonymError::IdentityPoint`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PseudonymError> {
        let point = decode_point(bytes)?;
        if point.is_identity() {
            return Err(PseudonymError::IdentityPoint);
        }
        // `decode_point` accepted only the canonical encoding: `bytes` is it.
        let encoded = bytes.try_into().map_err(|_| PseudonymError::BadLength)?;
        Ok(Self { point, encoded })
    }

    /// The 32-byte encoding (kept, not recomputed).
    #[must_use]
    pub const fn to_bytes(&self) -> [u8; POINT_LEN] {
        self.encoded
    }

    /// The point.
    #[must_use]
    pub const fn point(&self) -> &RistrettoPoint {
        &self.point
    }
}

/// An ElGamal ciphertext `(B, C, Y)` of a point, carrying the key `Y` it is under.
/// Encoded as 96 bytes `B ‖ C ‖ Y`, decoded strictly.
///
/// ```
/// use confiance::pseudonym::{Ciphertext, DeviceSecret, SystemPublicKey};
/// use curve25519_dalek::{RistrettoPoint, Scalar};
/// use rand_core::SeedableRng;
/// let mut rng = rand_chacha::ChaCha20Rng::from_seed([1; 32]);
/// let pk = SystemPublicKey::from_point(RistrettoPoint::mul_base(&Scalar::from(9u8)))?;
/// let ct = DeviceSecret::from_bytes([5; 32]).polymorphic(&pk, &mut rng);
/// let bytes = ct.to_bytes();
/// assert_eq!(Ciphertext::from_bytes(&bytes)?, ct);
/// let mut bad = bytes;
/// bad[0] ^= 1;
/// assert!(Ciphertext::from_bytes(&bad).is_err() || Ciphertext::from_bytes(&bad)? != ct);
/// # Ok::<(), confiance::pseudonym::PseudonymError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ciphertext {
    pub(crate) b: RistrettoPoint,
    pub(crate) c: RistrettoPoint,
    pub(crate) y: RistrettoPoint,
}

impl Ciphertext {
    /// Encrypts `m` under `pk` with fresh randomness from `rng`.
    pub fn encrypt<R: CryptoRng + ?Sized>(m: &RistrettoPoint, pk: &SystemPublicKey, rng: &mut R) -> Self {
        let mut r = Scalar::random(rng);
        let ct = Self::encrypt_with(m, &pk.point, &r);
        r.zeroize();
        ct
    }

    pub(crate) fn encrypt_with(m: &RistrettoPoint, y: &RistrettoPoint, r: &Scalar) -> Self {
        Self { b: RISTRETTO_BASEPOINT_TABLE * r, c: m + r * y, y: *y }
    }

    /// A ciphertext from its three points `(B, C, Y)`.
    ///
    /// Degenerate ciphertexts are refused: `Y` the identity encrypts nothing, `B` the
    /// identity means `r = 0` (the plaintext in clear as `C`), and `C` the identity is
    /// what a plaintext of `−r·Y` gives (probability 2⁻²⁵² for an honest device) and
    /// what a forger aiming at a known output would send.
    ///
    /// # Errors
    /// [`PseudonymError::IdentityPoint`] when any of the three is the identity.
    pub fn from_points(
        b: RistrettoPoint,
        c: RistrettoPoint,
        y: RistrettoPoint,
    ) -> Result<Self, PseudonymError> {
        if y.is_identity() || b.is_identity() || c.is_identity() {
            Err(PseudonymError::IdentityPoint)
        } else {
            Ok(Self { b, c, y })
        }
    }

    /// The three points `(B, C, Y)`.
    #[must_use]
    pub const fn points(&self) -> (&RistrettoPoint, &RistrettoPoint, &RistrettoPoint) {
        (&self.b, &self.c, &self.y)
    }

    /// The public key this ciphertext is under.
    #[must_use]
    pub const fn public_key(&self) -> &RistrettoPoint {
        &self.y
    }

    /// The same plaintext under the same key with fresh randomness: anyone can do this,
    /// and the result cannot be linked to `self` without the secret key (DDH).
    #[must_use]
    pub fn rerandomise<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> Self {
        let mut r = Scalar::random(rng);
        let ct = self.rerandomise_with(&r);
        r.zeroize();
        ct
    }

    pub(crate) fn rerandomise_with(&self, r: &Scalar) -> Self {
        Self { b: self.b + RISTRETTO_BASEPOINT_TABLE * r, c: self.c + r * self.y, y: self.y }
    }

    /// `B ‖ C ‖ Y`, 96 bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; CIPHERTEXT_LEN] {
        let mut out = [0u8; CIPHERTEXT_LEN];
        out[..32].copy_from_slice(self.b.compress().as_bytes());
        out[32..64].copy_from_slice(self.c.compress().as_bytes());
        out[64..].copy_from_slice(self.y.compress().as_bytes());
        out
    }

    /// Decodes 96 bytes strictly: each point canonical, none the identity
    /// ([`Ciphertext::from_points`]).
    ///
    /// # Errors
    /// [`PseudonymError::BadLength`], [`PseudonymError::NonCanonicalPoint`],
    /// [`PseudonymError::IdentityPoint`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PseudonymError> {
        if bytes.len() != CIPHERTEXT_LEN {
            return Err(PseudonymError::BadLength);
        }
        let b = decode_point(&bytes[..32])?;
        let c = decode_point(&bytes[32..64])?;
        let y = decode_point(&bytes[64..])?;
        Self::from_points(b, c, y)
    }
}

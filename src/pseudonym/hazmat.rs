//! The ElGamal algebra of PEP with caller-chosen scalars: fixed encryption randomness,
//! reshuffle, rekey, the combined rerandomise-reshuffle-rekey step and decryption.
//!
//! Hazardous: fixed randomness links ciphertexts, and the transcryptors' factors are
//! what keeps recipient domains apart. The aggregator's transcryptors call these behind
//! a consent check; tests and known-answer vectors call them directly.
//!
//! With `(B, C, Y)` an encryption of `M` (see [`Ciphertext`]):
//! - rerandomise by `r`: `(B + r·G, C + r·Y, Y)` — same `M`;
//! - reshuffle by `s`: `(s·B, s·C, Y)` — encrypts `s·M`;
//! - rekey by `k`: `(k⁻¹·B, C, k·Y)` — same `M`, now under `k·Y`, decryptable with `k·x`;
//! - rsk by `(s, k, r)`: rerandomise by `r`, reshuffle by `s`, rekey by `k`, in one step:
//!   `((s·k⁻¹)·B + (s·r·k⁻¹)·G, s·C + (s·r)·Y, k·Y)`.
//!
//! ```
//! use confiance::pseudonym::hazmat;
//! use curve25519_dalek::{RistrettoPoint, Scalar};
//! let (x, r, s, k) = (Scalar::from(3u8), Scalar::from(5u8), Scalar::from(7u8), Scalar::from(11u8));
//! let y = RistrettoPoint::mul_base(&x);
//! let m = RistrettoPoint::mul_base(&Scalar::from(42u8));
//! let ct = hazmat::encrypt_with(&m, &y, &r)?;
//! let out = hazmat::rsk(&ct, &s, &k, &k.invert(), &Scalar::from(13u8));
//! assert_eq!(hazmat::decrypt(&out, &(x * k)), s * m);
//! # Ok::<(), confiance::pseudonym::PseudonymError>(())
//! ```

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::MultiscalarMul;

use super::{Ciphertext, PseudonymError};

/// Encrypts `m` under the key `y` with the randomness `r` (which must be secret and
/// never reused outside test vectors).
///
/// # Errors
/// [`PseudonymError::IdentityPoint`] when any component would be the identity (`y` the
/// identity, `r = 0`, or `m = −r·y`): see [`Ciphertext::from_points`].
pub fn encrypt_with(
    m: &RistrettoPoint,
    y: &RistrettoPoint,
    r: &Scalar,
) -> Result<Ciphertext, PseudonymError> {
    let ct = Ciphertext::encrypt_with(m, y, r);
    Ciphertext::from_points(ct.b, ct.c, ct.y)
}

/// Rerandomises with the given `r`.
#[must_use]
pub fn rerandomise_with(ct: &Ciphertext, r: &Scalar) -> Ciphertext {
    ct.rerandomise_with(r)
}

/// Reshuffles by `s`: the plaintext `M` becomes `s·M`.
#[must_use]
pub fn reshuffle(ct: &Ciphertext, s: &Scalar) -> Ciphertext {
    Ciphertext { b: s * ct.b, c: s * ct.c, y: ct.y }
}

/// Rekeys by `k`: the key `Y` becomes `k·Y`. A zero `k` yields an unusable ciphertext
/// under the identity key (factors are hashes, so this has probability 2⁻²⁵²).
#[must_use]
pub fn rekey(ct: &Ciphertext, k: &Scalar) -> Ciphertext {
    Ciphertext { b: k.invert() * ct.b, c: ct.c, y: k * ct.y }
}

/// Rerandomise by `r`, reshuffle by `s` and rekey by `k` in one step (`k_inv` must be
/// `k⁻¹`, computed once per domain). Costs one fixed-base and four variable-base
/// scalar multiplications.
#[must_use]
pub fn rsk(ct: &Ciphertext, s: &Scalar, k: &Scalar, k_inv: &Scalar, r: &Scalar) -> Ciphertext {
    let s_over_k = s * k_inv;
    let sr = s * r;
    let b = s_over_k * ct.b + RISTRETTO_BASEPOINT_TABLE * &(sr * k_inv);
    let c = RistrettoPoint::multiscalar_mul([s, &sr], [ct.c, ct.y]);
    Ciphertext { b, c, y: k * ct.y }
}

/// Decrypts with the secret key `sk` of the ciphertext's key: `C − sk·B`.
#[must_use]
pub fn decrypt(ct: &Ciphertext, sk: &Scalar) -> RistrettoPoint {
    ct.c - sk * ct.b
}

/// A transcryption request for an arbitrary ciphertext `ct`, signed by `key`, whose
/// plaintext proof is made with zero witnesses: it verifies only if `ct` encrypts the
/// identity with `r = 0`, which decoding refuses. This is what a holder of a device key
/// can send for a ciphertext it did not make (a pseudonym re-encrypted, a ciphertext
/// scaled or shifted): tests check the transcryptors refuse it.
pub fn sign_request_for_ciphertext<R: rand_core::CryptoRng + ?Sized>(
    key: &crate::consent::DeviceKey,
    ct: &Ciphertext,
    receipt: crate::ids::ReceiptId,
    recipient: crate::ids::RecipientId,
    epoch: Option<super::Epoch>,
    rng: &mut R,
) -> super::TranscryptionRequest {
    super::request::sign_raw(key, *ct, &Scalar::ZERO, &Scalar::ZERO, receipt, recipient, epoch, rng)
}

//! Transcryption steps with fixed randomness, and the raw factors.
//!
//! Hazardous: these bypass every check of
//! [`DomainTranscryptor::transcrypt`](super::DomainTranscryptor::transcrypt) (request
//! signature, plaintext proof, ledger, replay) or expose the secrets that keep domains
//! apart. For known-answer vectors and tests; there is no unchecked transcryption with
//! fresh randomness.

use confiance::pseudonym::Ciphertext;
use curve25519_dalek::scalar::Scalar;

use curve25519_dalek::ristretto::RistrettoPoint;

use super::{DomainTranscryptor, KeyProof, Step, Transcryptor};

/// One step with the given rerandomisation `r` and proof nonces `(a_k, a_s, a_t)`.
pub fn transcrypt_with(t: &DomainTranscryptor, ct: &Ciphertext, r: &Scalar, nonces: &[Scalar; 3]) -> Step {
    t.transcrypt_with(ct, r, nonces)
}

/// The domain factors `(s, k)` of a transcryptor.
#[must_use]
pub fn factors(t: &DomainTranscryptor) -> (Scalar, Scalar) {
    let (s, k, _) = t.factors();
    (*s, *k)
}

/// The transcryptor's system-key share `x_i`.
#[must_use]
pub fn system_key_share(t: &Transcryptor) -> Scalar {
    *t.system_secret()
}

/// A system-key contribution with a fixed proof nonce.
#[must_use]
pub fn contribute_system_key_with(
    t: &Transcryptor,
    y_in: &RistrettoPoint,
    nonce: &Scalar,
) -> (RistrettoPoint, KeyProof) {
    t.contribute_system_key_with(y_in, nonce)
}

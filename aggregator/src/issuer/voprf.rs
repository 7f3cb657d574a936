//! The server's side of the RFC 9497 VOPRF (mode `0x01`, ristretto255-SHA512):
//! `BlindEvaluate` with a batched `GenerateProof` (using `ComputeCompositesFast`,
//! RFC 9497 §2.2.1), and `Evaluate` (§3.3.1), which redemption uses to recompute a
//! token's authenticator. The shared building blocks and the client live in
//! [`confiance::token::voprf`].

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use zeroize::Zeroize;

use confiance::token::voprf::{
    self, ELEMENT_LEN, MAX_BATCH, OUTPUT_LEN, Proof, PublicKey, VoprfError, challenge, composite_weights,
    deserialize_element, finalize_hash, hash_to_group,
};

/// A server's VOPRF key pair. The secret scalar is wiped on drop and never printed.
pub struct ServerKey {
    sk: Scalar,
    pk: PublicKey,
}

impl core::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerKey").field("pk", &self.pk).finish_non_exhaustive()
    }
}

impl Drop for ServerKey {
    fn drop(&mut self) {
        self.sk.zeroize();
    }
}

impl ServerKey {
    /// `DeriveKeyPair(seed, info)` (RFC 9497 §3.2.1).
    ///
    /// ```
    /// use confiance_aggregator::issuer::voprf::ServerKey;
    /// let key = ServerKey::derive(&[0xa3; 32], b"test key")?;
    /// assert_eq!(key.public_key().to_bytes().len(), 32);
    /// # Ok::<(), confiance::token::VoprfError>(())
    /// ```
    ///
    /// # Errors
    /// [`VoprfError::DeriveKeyPair`] (never in practice).
    pub fn derive(seed: &[u8; 32], info: &[u8]) -> Result<Self, VoprfError> {
        let (sk, pk) = voprf::derive_key_pair(seed, info)?;
        Ok(Self { sk, pk })
    }

    /// The public key `pkS`.
    #[must_use]
    pub const fn public_key(&self) -> PublicKey {
        self.pk
    }

    /// The secret scalar's bytes, for known-answer tests only.
    #[must_use]
    pub fn secret_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.sk.to_bytes())
    }

    /// `BlindEvaluate` over a batch of serialised blinded elements, with one batched
    /// proof (RFC 9497 §3.3.2), the proof's nonce drawn from `rng`; the evaluations are
    /// returned serialised, as they go on the wire.
    ///
    /// # Errors
    /// [`VoprfError::BatchSize`] for an empty batch or one over [`MAX_BATCH`];
    /// [`VoprfError::NonCanonicalElement`] or [`VoprfError::IdentityElement`] for a bad
    /// blinded element.
    pub fn blind_evaluate<R: rand_core::CryptoRng + ?Sized>(
        &self,
        blinded: &[[u8; ELEMENT_LEN]],
        rng: &mut R,
    ) -> Result<(Vec<[u8; ELEMENT_LEN]>, Proof), VoprfError> {
        let mut r = Scalar::random(rng);
        let out = self.blind_evaluate_with(blinded, r);
        r.zeroize();
        out
    }

    /// [`ServerKey::blind_evaluate`] with the proof nonce `r` given (known-answer tests
    /// only: a repeated `r` reveals the key).
    ///
    /// # Errors
    /// As [`ServerKey::blind_evaluate`].
    pub fn blind_evaluate_with(
        &self,
        blinded: &[[u8; ELEMENT_LEN]],
        r: Scalar,
    ) -> Result<(Vec<[u8; ELEMENT_LEN]>, Proof), VoprfError> {
        if blinded.is_empty() || blinded.len() > MAX_BATCH {
            return Err(VoprfError::BatchSize);
        }
        let points = blinded.iter().map(deserialize_element).collect::<Result<Vec<_>, _>>()?;
        let evaluated: Vec<[u8; ELEMENT_LEN]> =
            points.iter().map(|b| (self.sk * b).compress().to_bytes()).collect();
        // ComputeCompositesFast: M = Σ dᵢ·Cᵢ, Z = k·M (one multiplication, not n); the
        // weights hash the encodings already at hand.
        let w = composite_weights(&self.pk, blinded, &evaluated);
        let m = RistrettoPoint::vartime_multiscalar_mul(&w, &points);
        let z = self.sk * m;
        let t2 = RistrettoPoint::mul_base(&r);
        let t3 = r * m;
        let c = challenge(&self.pk, &m, &z, &t2, &t3);
        Ok((evaluated, Proof { c, s: r - c * self.sk }))
    }

    /// `Evaluate(skS, input)` (RFC 9497 §3.3.1): the output the client's `Finalize`
    /// gives, computed directly (how redemption checks an authenticator).
    ///
    /// # Errors
    /// [`VoprfError::InvalidInput`] if the input hashes to the identity.
    pub fn evaluate(&self, input: &[u8]) -> Result<[u8; OUTPUT_LEN], VoprfError> {
        let p = hash_to_group(input);
        if p.is_identity() {
            return Err(VoprfError::InvalidInput);
        }
        Ok(finalize_hash(input, &(self.sk * p)))
    }
}

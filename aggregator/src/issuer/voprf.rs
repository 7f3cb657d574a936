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
    self, Composite, ELEMENT_LEN, Hasher, MAX_BATCH, OUTPUT_LEN, Proof, PublicKey, VoprfError,
    challenge_encoded, deserialize_element, finalize_hash, finalize_hash_encoded,
};

/// A server's VOPRF key pair. The secret scalar is wiped on drop and never printed.
pub struct ServerKey {
    sk: Scalar,
    /// `sk / 2`: evaluations are computed as `2·((sk/2)·B)`, so that one batched
    /// inversion (`double_and_compress_batch`) compresses them all.
    half_sk: Scalar,
    /// `1/2`, kept: inverting a scalar costs as much as a third of a multiplication.
    half: Scalar,
    pk: PublicKey,
    /// `pkS` serialised, once (serialising a point costs a field inversion).
    pk_bytes: [u8; ELEMENT_LEN],
    /// `HashToGroup` with its first block hashed once.
    hasher: Hasher,
    /// The composite weights of `pkS`, their common first blocks hashed once.
    composite: Composite,
}

impl core::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerKey").field("pk", &self.pk).finish_non_exhaustive()
    }
}

impl Drop for ServerKey {
    fn drop(&mut self) {
        self.sk.zeroize();
        self.half_sk.zeroize();
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
        let half = voprf::half();
        let pk_bytes = pk.to_bytes();
        let hasher = Hasher::new();
        let composite = hasher.composite(&pk_bytes);
        Ok(Self { sk, half_sk: sk * half, half, pk, pk_bytes, hasher, composite })
    }

    /// The public key `pkS`.
    #[must_use]
    pub const fn public_key(&self) -> PublicKey {
        self.pk
    }

    /// `pkS` serialised (kept from the key's derivation).
    #[must_use]
    pub const fn public_key_bytes(&self) -> [u8; ELEMENT_LEN] {
        self.pk_bytes
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
        // Each evaluation k·B is 2·((k/2)·B): the doubling and the compression of the
        // whole batch share one field inversion instead of one per element.
        let half_evaluated: Vec<RistrettoPoint> = points.iter().map(|b| self.half_sk * b).collect();
        let evaluated: Vec<[u8; ELEMENT_LEN]> =
            RistrettoPoint::double_and_compress_batch(&half_evaluated).iter().map(|c| c.to_bytes()).collect();
        // ComputeCompositesFast: M = Σ dᵢ·Cᵢ, Z = k·M (one multiplication, not n); the
        // weights hash the encodings already at hand, their common first blocks hashed
        // once per key. M, Z, t2 = r·G and t3 = r·M are computed halved, so that one
        // batched inversion compresses all four.
        let half = self.half;
        let w: Vec<Scalar> = self.composite.weights(blinded, &evaluated).iter().map(|d| d * half).collect();
        let half_m = RistrettoPoint::vartime_multiscalar_mul(&w, &points);
        let mut half_r = r * half;
        let halves = [half_m, self.sk * half_m, RistrettoPoint::mul_base(&half_r), r * half_m];
        half_r.zeroize();
        let mut encoded = [[0; ELEMENT_LEN]; 4];
        for (e, c) in encoded.iter_mut().zip(RistrettoPoint::double_and_compress_batch(&halves)) {
            *e = c.to_bytes();
        }
        let c = challenge_encoded(&self.pk_bytes, &encoded);
        Ok((evaluated, Proof { c, s: r - c * self.sk }))
    }

    /// `Evaluate(skS, input)` (RFC 9497 §3.3.1): the output the client's `Finalize`
    /// gives, computed directly (how redemption checks an authenticator).
    ///
    /// # Errors
    /// [`VoprfError::InvalidInput`] if the input hashes to the identity.
    pub fn evaluate(&self, input: &[u8]) -> Result<[u8; OUTPUT_LEN], VoprfError> {
        let p = self.hasher.hash_to_group(input);
        if p.is_identity() {
            return Err(VoprfError::InvalidInput);
        }
        Ok(finalize_hash(input, &(self.sk * p)))
    }

    /// Checks one redeemed element (a token of type `0xC0F2`): `element` is the canonical
    /// encoding of `skS·HashToGroup(input)`, the unblinded element the client's
    /// `Finalize` hashes.
    ///
    /// ```
    /// use confiance_aggregator::issuer::voprf::ServerKey;
    /// use confiance::token::voprf;
    /// let key = ServerKey::derive(&[0xa3; 32], b"test key")?;
    /// let sk = curve25519_dalek::Scalar::from_canonical_bytes(*key.secret_bytes()).unwrap();
    /// let n = (sk * voprf::hash_to_group(b"in")).compress().to_bytes();
    /// assert_eq!(key.check_element(b"in", &n), Ok(()));
    /// assert_eq!(key.check_element(b"other", &n), Err(voprf::VoprfError::BadProof));
    /// # Ok::<(), voprf::VoprfError>(())
    /// ```
    ///
    /// # Errors
    /// [`VoprfError::NonCanonicalElement`] or [`VoprfError::IdentityElement`] for the
    /// element's bytes, [`VoprfError::InvalidInput`] if the input hashes to the identity,
    /// [`VoprfError::BadProof`] if the element is another.
    pub fn check_element(&self, input: &[u8], element: &[u8; ELEMENT_LEN]) -> Result<(), VoprfError> {
        let (h, n) = self.element_statement(input, element)?;
        self.check_one(&h, &n)
    }

    /// `HashToGroup(input)` and the decoded element, or why the pair is refused before
    /// any multiplication.
    fn element_statement(
        &self,
        input: &[u8],
        element: &[u8; ELEMENT_LEN],
    ) -> Result<(RistrettoPoint, RistrettoPoint), VoprfError> {
        let n = deserialize_element(element)?;
        let h = self.hasher.hash_to_group(input);
        if h.is_identity() {
            return Err(VoprfError::InvalidInput);
        }
        Ok((h, n))
    }

    /// `skS·h == n` (one constant-time multiplication).
    fn check_one(&self, h: &RistrettoPoint, n: &RistrettoPoint) -> Result<(), VoprfError> {
        if self.sk * h == *n { Ok(()) } else { Err(VoprfError::BadProof) }
    }

    /// [`ServerKey::check_element`] of a window of `(input, element)` pairs, with the same
    /// verdicts in order, checked at once: with fresh random 128-bit weights `rᵢ` from
    /// `rng`, `Σ rᵢ·Nᵢ == skS·(Σ rᵢ·Hᵢ)` (two variable-time multiscalar multiplications
    /// over public points and one constant-time multiplication by the key for the whole
    /// window). If any `Nᵢ ≠ skS·Hᵢ`, the equation holds for at most one value of that
    /// `rᵢ` modulo the group's prime order, so with probability at most 2⁻¹²⁸. When it
    /// fails, each pair is checked alone, so that a wrong element is refused by itself and
    /// its neighbours pass.
    ///
    /// ```
    /// use confiance_aggregator::issuer::voprf::ServerKey;
    /// use confiance::token::voprf::{self, VoprfError};
    /// # use confiance::hazmat::SeedableRng as _;
    /// let key = ServerKey::derive(&[0xa3; 32], b"test key")?;
    /// let sk = curve25519_dalek::Scalar::from_canonical_bytes(*key.secret_bytes()).unwrap();
    /// let n = |i: &[u8]| (sk * voprf::hash_to_group(i)).compress().to_bytes();
    /// let (a, b) = (n(b"a"), n(b"b"));
    /// let mut rng = confiance::hazmat::SeededRng::seed_from_u64(1);
    /// let verdicts = key.check_elements(&[(b"a".as_slice(), &a), (b"b", &b), (b"c", &a)], &mut rng);
    /// assert_eq!(verdicts, vec![Ok(()), Ok(()), Err(VoprfError::BadProof)]);
    /// # Ok::<(), VoprfError>(())
    /// ```
    pub fn check_elements<R: rand_core::CryptoRng + ?Sized>(
        &self,
        window: &[(&[u8], &[u8; ELEMENT_LEN])],
        rng: &mut R,
    ) -> Vec<Result<(), VoprfError>> {
        let statements: Vec<Result<(RistrettoPoint, RistrettoPoint), VoprfError>> =
            window.iter().map(|(input, element)| self.element_statement(input, element)).collect();
        let mut verdicts: Vec<Result<(), VoprfError>> =
            statements.iter().map(|s| s.as_ref().map(|_| ()).map_err(|e| *e)).collect();
        let live: Vec<(usize, &(RistrettoPoint, RistrettoPoint))> =
            statements.iter().enumerate().filter_map(|(i, s)| s.as_ref().ok().map(|s| (i, s))).collect();
        // One pair alone: the batch's two multiscalars would cost more than the check.
        if live.len() >= 2 {
            let weights: Vec<Scalar> = live
                .iter()
                .map(|_| {
                    let mut bytes = [0u8; 32];
                    rng.fill_bytes(&mut bytes[..16]);
                    Scalar::from_bytes_mod_order(bytes)
                })
                .collect();
            let sum_n = RistrettoPoint::vartime_multiscalar_mul(&weights, live.iter().map(|(_, (_, n))| n));
            let sum_h = RistrettoPoint::vartime_multiscalar_mul(&weights, live.iter().map(|(_, (h, _))| h));
            if self.sk * sum_h == sum_n {
                return verdicts;
            }
        }
        for (i, (h, n)) in live {
            verdicts[i] = self.check_one(h, n);
        }
        verdicts
    }

    /// [`ServerKey::evaluate`] of many inputs at once: each `k·P` is computed as
    /// `2·((k/2)·P)` so that one batched inversion compresses them all. An input that
    /// hashes to the identity gets [`VoprfError::InvalidInput`] alone.
    ///
    /// ```
    /// use confiance_aggregator::issuer::voprf::ServerKey;
    /// let key = ServerKey::derive(&[0xa3; 32], b"test key")?;
    /// let many = key.evaluate_many(&[b"a".as_slice(), b"b"]);
    /// assert_eq!(many[1], key.evaluate(b"b"));
    /// # Ok::<(), confiance::token::VoprfError>(())
    /// ```
    #[must_use]
    pub fn evaluate_many(&self, inputs: &[&[u8]]) -> Vec<Result<[u8; OUTPUT_LEN], VoprfError>> {
        let points: Vec<RistrettoPoint> = inputs.iter().map(|i| self.hasher.hash_to_group(i)).collect();
        let halves: Vec<RistrettoPoint> = points.iter().map(|p| self.half_sk * p).collect();
        let encoded = RistrettoPoint::double_and_compress_batch(&halves);
        inputs
            .iter()
            .zip(&points)
            .zip(&encoded)
            .map(|((input, p), e)| {
                if p.is_identity() {
                    return Err(VoprfError::InvalidInput);
                }
                Ok(finalize_hash_encoded(input, e.as_bytes()))
            })
            .collect()
    }
}

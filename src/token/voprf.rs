//! The verifiable oblivious pseudorandom function of RFC 9497 (Davidson, Faz-Hernández,
//! Sullivan, Wood, 2023), mode `0x01` (VOPRF), suite `ristretto255-SHA512`, composed from
//! curve25519-dalek and sha2.
//!
//! This module holds the client's side (RFC 9497 §3.3.2: [`blind`], [`finalize`] with
//! [`verify_proof`], and their batched forms [`blind_batch_with`] and
//! [`finalize_encoded`] with [`unblind_encoded`], which serialise a whole batch with one field inversion and
//! hash the wire bytes as they are) and the suite's shared building blocks
//! ([`hash_to_group`], [`hash_to_scalar`], [`derive_key_pair`], [`composite_weights`],
//! [`challenge`], [`finalize_hash`], and [`Hasher`] and [`Composite`], which hash the
//! constant first block of a batch's hashes once). The server's side (`BlindEvaluate`, `GenerateProof` with
//! `ComputeCompositesFast`, `Evaluate`) lives in `confiance_aggregator::issuer`.
//!
//! Elements are the 32-byte canonical Ristretto255 encodings (RFC 9496 §4.3.2); the
//! identity element is refused wherever an element is deserialised (RFC 9497 §2.1), with
//! its own error.
//!
//! ```
//! use confiance::token::voprf::{self, PublicKey};
//! use curve25519_dalek::{RistrettoPoint, Scalar};
//!
//! // A server key (the server side would come from `derive_key_pair` on its secret seed).
//! let (sk, pk) = voprf::derive_key_pair(&[7; 32], b"example")?;
//! let mut rng = rand_chacha::ChaCha20Rng::from_seed([1; 32]);
//! # use rand_core::SeedableRng;
//! let (blind, blinded) = voprf::blind(b"input", &mut rng)?;
//! // The server evaluates and proves (here by hand, with the proof's nonce fixed).
//! let evaluated = sk * blinded;
//! let r = Scalar::from(5u64);
//! let w = voprf::composite_weights(&pk, &[blinded.compress().to_bytes()], &[evaluated.compress().to_bytes()]);
//! let m: RistrettoPoint = w[0] * blinded;
//! let z = sk * m;
//! let c = voprf::challenge(&pk, &m, &z, &RistrettoPoint::mul_base(&r), &(r * m));
//! let proof = voprf::Proof { c, s: r - c * sk };
//! let out = voprf::finalize(&pk, &[b"input".as_slice()], &[blind], &[blinded], &[evaluated], &proof)?;
//! assert_eq!(out[0], voprf::finalize_hash(b"input", &(sk * voprf::hash_to_group(b"input"))));
//! # Ok::<(), voprf::VoprfError>(())
//! ```

use alloc::vec::Vec;
use core::fmt;

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// RFC 9497 §3.1: `"OPRFV1-" ‖ I2OSP(mode, 1) ‖ "-" ‖ identifier`, mode `0x01`.
pub const CONTEXT_STRING: &[u8] = b"OPRFV1-\x01-ristretto255-SHA512";
/// Bytes of a serialised element (`Ne`).
pub const ELEMENT_LEN: usize = 32;
/// Bytes of a serialised scalar (`Ns`).
pub const SCALAR_LEN: usize = 32;
/// Bytes of a serialised proof: `c ‖ s`.
pub const PROOF_LEN: usize = 2 * SCALAR_LEN;
/// Bytes of an output (`Nh`, SHA-512).
pub const OUTPUT_LEN: usize = 64;
/// The largest batch this implementation blinds, evaluates or proves at once (composite
/// transcripts number elements with two bytes; a smaller bound keeps requests small).
pub const MAX_BATCH: usize = 1024;

/// Why a VOPRF operation failed. Each is final: retrying with the same bytes fails again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VoprfError {
    /// 32 bytes that are not the canonical encoding of a Ristretto255 element.
    NonCanonicalElement,
    /// The identity element, which RFC 9497 §2.1 forbids on the wire.
    IdentityElement,
    /// 32 bytes that are not a canonical scalar (the value is ≥ ℓ).
    NonCanonicalScalar,
    /// An input that hashes to the identity (RFC 9497 `InvalidInputError`; probability
    /// about 2⁻²⁵²).
    InvalidInput,
    /// The DLEQ proof does not verify (RFC 9497 `VerifyError`).
    BadProof,
    /// The evaluation was made under another public key than the one the client expects.
    WrongKey,
    /// Inputs, blinds and elements differ in number, or a batch is empty or larger than
    /// [`MAX_BATCH`].
    BatchSize,
    /// `DeriveKeyPair` found no non-zero scalar in 256 tries (RFC 9497
    /// `DeriveKeyPairError`; probability about 2⁻²⁵²·²⁵⁶).
    DeriveKeyPair,
}

impl fmt::Display for VoprfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NonCanonicalElement => "non-canonical element",
            Self::IdentityElement => "identity element",
            Self::NonCanonicalScalar => "non-canonical scalar",
            Self::InvalidInput => "input hashes to the identity",
            Self::BadProof => "proof does not verify",
            Self::WrongKey => "evaluated under another key",
            Self::BatchSize => "batch sizes differ, or the batch is empty or too large",
            Self::DeriveKeyPair => "key derivation failed",
        })
    }
}

impl core::error::Error for VoprfError {}

/// A server's public key `pkS = skS·G`, as the client knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(pub RistrettoPoint);

impl PublicKey {
    /// The 32-byte serialisation.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; ELEMENT_LEN] {
        self.0.compress().to_bytes()
    }

    /// Deserialises a public key.
    ///
    /// # Errors
    /// [`VoprfError::NonCanonicalElement`] or [`VoprfError::IdentityElement`].
    pub fn from_bytes(bytes: &[u8; ELEMENT_LEN]) -> Result<Self, VoprfError> {
        deserialize_element(bytes).map(Self)
    }
}

/// A batched DLEQ proof `(c, s)` (RFC 9497 §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proof {
    /// The challenge.
    pub c: Scalar,
    /// The response.
    pub s: Scalar,
}

impl Proof {
    /// `c ‖ s`, 64 bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; PROOF_LEN] {
        let mut out = [0; PROOF_LEN];
        out[..SCALAR_LEN].copy_from_slice(self.c.as_bytes());
        out[SCALAR_LEN..].copy_from_slice(self.s.as_bytes());
        out
    }

    /// Deserialises `c ‖ s`.
    ///
    /// # Errors
    /// [`VoprfError::NonCanonicalScalar`] if either half is not reduced.
    pub fn from_bytes(bytes: &[u8; PROOF_LEN]) -> Result<Self, VoprfError> {
        let mut c = [0; SCALAR_LEN];
        let mut s = [0; SCALAR_LEN];
        c.copy_from_slice(&bytes[..SCALAR_LEN]);
        s.copy_from_slice(&bytes[SCALAR_LEN..]);
        Ok(Self { c: deserialize_scalar(c)?, s: deserialize_scalar(s)? })
    }
}

/// `DeserializeElement` (RFC 9497 §2.1): canonical encodings only, never the identity.
///
/// # Errors
/// [`VoprfError::NonCanonicalElement`] or [`VoprfError::IdentityElement`].
pub fn deserialize_element(bytes: &[u8; ELEMENT_LEN]) -> Result<RistrettoPoint, VoprfError> {
    let p = CompressedRistretto(*bytes).decompress().ok_or(VoprfError::NonCanonicalElement)?;
    if p.is_identity() {
        return Err(VoprfError::IdentityElement);
    }
    Ok(p)
}

/// Checks that the key a response announces is the key the client expects (the key
/// directory's, the same for every client).
///
/// # Errors
/// [`VoprfError::NonCanonicalElement`] or [`VoprfError::IdentityElement`] for a
/// malformed announced key, [`VoprfError::WrongKey`] for another valid key.
pub fn check_key(expected: &PublicKey, announced: &[u8; ELEMENT_LEN]) -> Result<(), VoprfError> {
    if PublicKey::from_bytes(announced)? == *expected { Ok(()) } else { Err(VoprfError::WrongKey) }
}

/// `DeserializeScalar`: canonical (reduced) encodings only.
///
/// # Errors
/// [`VoprfError::NonCanonicalScalar`].
pub fn deserialize_scalar(bytes: [u8; SCALAR_LEN]) -> Result<Scalar, VoprfError> {
    Option::from(Scalar::from_canonical_bytes(bytes)).ok_or(VoprfError::NonCanonicalScalar)
}

/// `expand_message_xmd` (RFC 9380 §5.3.1) with SHA-512, for the one output length the
/// suite uses (64 bytes, so `ell = 1`). `dst` is at most 255 bytes (ours are constants).
fn expand_message_xmd_64(msg: &[&[u8]], dst: &[&[u8]]) -> [u8; 64] {
    expand_message_xmd_64_from(zpad_state(), msg, dst)
}

/// SHA-512 after its first block, `Z_pad` (128 zero bytes), which every
/// `expand_message_xmd` hashes first.
fn zpad_state() -> Sha512 {
    let mut h = Sha512::new();
    h.update([0u8; 128]); // Z_pad: one SHA-512 block
    h
}

/// `expand_message_xmd` of `msg` from a state that has absorbed `Z_pad` and possibly the
/// start of the message (so that a batch hashes its common first block once).
fn expand_message_xmd_64_from(mut h: Sha512, msg: &[&[u8]], dst: &[&[u8]]) -> [u8; 64] {
    let dst_len: usize = dst.iter().map(|d| d.len()).sum();
    let dst_len = u8::try_from(dst_len).unwrap_or(u8::MAX);
    for m in msg {
        h.update(m);
    }
    h.update([0, 64, 0]); // I2OSP(len_in_bytes, 2) ‖ I2OSP(0, 1)
    for d in dst {
        h.update(d);
    }
    h.update([dst_len]);
    let b0 = h.finalize();
    let mut h = Sha512::new();
    h.update(b0);
    h.update([1]);
    for d in dst {
        h.update(d);
    }
    h.update([dst_len]);
    let mut out = [0; 64];
    out.copy_from_slice(&h.finalize());
    out
}

/// `1/2` modulo ℓ: `(ℓ + 1) / 2`, little-endian.
const HALF_BYTES: [u8; 32] = [
    0xf7, 0xe9, 0x7a, 0x2e, 0x8d, 0x31, 0x09, 0x2c, 0x6b, 0xce, 0x7b, 0x51, 0xef, 0x7c, 0x6f, 0x0a, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08,
];

/// The scalar `1/2` (mod ℓ), without a scalar inversion. A point computed halved, `P/2`,
/// is serialised as `P` by [`RistrettoPoint::double_and_compress_batch`], which shares
/// one field inversion among a whole batch (serialising points one by one costs one
/// each).
///
/// ```
/// use confiance::token::voprf;
/// use curve25519_dalek::Scalar;
/// assert_eq!(voprf::half() + voprf::half(), Scalar::ONE);
/// ```
#[must_use]
pub fn half() -> Scalar {
    Scalar::from_bytes_mod_order(HALF_BYTES)
}

/// The suite's hashes with their constant first SHA-512 block (`Z_pad`) absorbed once:
/// a batch's `HashToGroup`s, and [`Composite`] weights, each skip that block.
/// The results are exactly [`hash_to_group`]'s and [`composite_weights`]'.
///
/// ```
/// use confiance::token::voprf::{self, Hasher};
/// let h = Hasher::new();
/// assert_eq!(h.hash_to_group(b"input"), voprf::hash_to_group(b"input"));
/// ```
#[derive(Clone)]
pub struct Hasher {
    zpad: Sha512,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hasher")
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher {
    /// A hasher (one SHA-512 block hashed).
    #[must_use]
    pub fn new() -> Self {
        Self { zpad: zpad_state() }
    }

    /// [`hash_to_group`] of `input`.
    #[must_use]
    pub fn hash_to_group(&self, input: &[u8]) -> RistrettoPoint {
        let u = expand_message_xmd_64_from(self.zpad.clone(), &[input], &[b"HashToGroup-", CONTEXT_STRING]);
        RistrettoPoint::from_uniform_bytes(&u)
    }

    /// The [`Composite`] weights of the public key whose serialisation is `pk`.
    #[must_use]
    pub fn composite(&self, pk: &[u8; ELEMENT_LEN]) -> Composite {
        let mut h = Sha512::new();
        h.update(len2(ELEMENT_LEN));
        h.update(pk);
        h.update(len2(5 + CONTEXT_STRING.len()));
        h.update(b"Seed-");
        h.update(CONTEXT_STRING);
        let seed = h.finalize();
        let mut prefix = self.zpad.clone();
        prefix.update(len2(seed.len()));
        prefix.update(seed);
        Composite { prefix }
    }
}

/// The composite weights of `ComputeComposites` (RFC 9497 §2.2.1) under one public key,
/// with the common start of every weight's hash (`Z_pad ‖ I2OSP(64, 2) ‖ seed`, a block
/// and a half) absorbed once.
///
/// ```
/// use confiance::token::voprf::{self, Hasher};
/// let (_, pk) = voprf::derive_key_pair(&[7; 32], b"example")?;
/// let (c, d) = ([[1; 32]], [[2; 32]]);
/// let w = Hasher::new().composite(&pk.to_bytes()).weights(&c, &d);
/// assert_eq!(w, voprf::composite_weights(&pk, &c, &d));
/// # Ok::<(), voprf::VoprfError>(())
/// ```
#[derive(Clone)]
pub struct Composite {
    prefix: Sha512,
}

impl fmt::Debug for Composite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Composite")
    }
}

impl Composite {
    /// The weights `dᵢ` for the statement `(B = pkS, C = blinded, D = evaluated)`, given
    /// the elements' serialisations; the caller checks that `c` and `d` have the same
    /// length (extra elements of the longer are ignored).
    #[must_use]
    pub fn weights(&self, c: &[[u8; ELEMENT_LEN]], d: &[[u8; ELEMENT_LEN]]) -> Vec<Scalar> {
        c.iter()
            .zip(d)
            .enumerate()
            .map(|(i, (ci, di))| {
                Scalar::from_bytes_mod_order_wide(&expand_message_xmd_64_from(
                    self.prefix.clone(),
                    &[&len2(i), &len2(ELEMENT_LEN), ci, &len2(ELEMENT_LEN), di, b"Composite"],
                    &[b"HashToScalar-", CONTEXT_STRING],
                ))
            })
            .collect()
    }
}

/// `HashToGroup` (RFC 9497 §4.1): `hash_to_ristretto255` of RFC 9380 §6.8.1 with
/// DST `"HashToGroup-" ‖ contextString`.
#[must_use]
pub fn hash_to_group(input: &[u8]) -> RistrettoPoint {
    let u = expand_message_xmd_64(&[input], &[b"HashToGroup-", CONTEXT_STRING]);
    RistrettoPoint::from_uniform_bytes(&u)
}

/// `HashToScalar` (RFC 9497 §4.1) of the concatenation of `parts`, with DST
/// `"HashToScalar-" ‖ contextString`: 64 bytes of `expand_message_xmd` reduced mod ℓ.
#[must_use]
pub fn hash_to_scalar(parts: &[&[u8]]) -> Scalar {
    Scalar::from_bytes_mod_order_wide(&expand_message_xmd_64(parts, &[b"HashToScalar-", CONTEXT_STRING]))
}

fn len2(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes()
}

/// `DeriveKeyPair(seed, info)` (RFC 9497 §3.2.1): the server's key from a 32-byte seed.
///
/// # Errors
/// [`VoprfError::DeriveKeyPair`] if 256 tries all give zero (never in practice).
pub fn derive_key_pair(seed: &[u8; 32], info: &[u8]) -> Result<(Scalar, PublicKey), VoprfError> {
    let info_len = len2(info.len());
    for counter in 0..=255u8 {
        let sk = Scalar::from_bytes_mod_order_wide(&expand_message_xmd_64(
            &[seed, &info_len, info, &[counter]],
            &[b"DeriveKeyPair", CONTEXT_STRING],
        ));
        if sk != Scalar::ZERO {
            return Ok((sk, PublicKey(RistrettoPoint::mul_base(&sk))));
        }
    }
    Err(VoprfError::DeriveKeyPair)
}

/// `Blind(input)` (RFC 9497 §3.3.1): a random non-zero blind and `blind·HashToGroup(input)`.
///
/// # Errors
/// [`VoprfError::InvalidInput`] if the input hashes to the identity.
pub fn blind<R: rand_core::CryptoRng + ?Sized>(
    input: &[u8],
    rng: &mut R,
) -> Result<(Scalar, RistrettoPoint), VoprfError> {
    blind_with(input, random_blind(rng))
}

/// `Blind` with a given blind (for known-answer tests; a real client draws it with
/// [`blind`]: a reused or guessable blind links the evaluation to the output).
///
/// # Errors
/// [`VoprfError::InvalidInput`] if the input hashes to the identity.
pub fn blind_with(input: &[u8], blind: Scalar) -> Result<(Scalar, RistrettoPoint), VoprfError> {
    let p = hash_to_group(input);
    if p.is_identity() {
        return Err(VoprfError::InvalidInput);
    }
    Ok((blind, blind * p))
}

/// The composite weights `dᵢ` of `ComputeComposites` (RFC 9497 §2.2.1) for the statement
/// `(B = pkS, C = blinded, D = evaluated)`, given the elements' serialisations (which
/// both sides already hold from the wire, so nothing is compressed again): `M = Σ dᵢ·Cᵢ`,
/// `Z = Σ dᵢ·Dᵢ` (the server computes `Z = k·M` instead). The caller checks that `c`
/// and `d` have the same length.
#[must_use]
pub fn composite_weights(pk: &PublicKey, c: &[[u8; ELEMENT_LEN]], d: &[[u8; ELEMENT_LEN]]) -> Vec<Scalar> {
    composite_weights_encoded(&pk.to_bytes(), c, d)
}

/// [`composite_weights`] with the public key already serialised (a server keeps its
/// key's encoding: serialising a point costs a field inversion).
#[must_use]
pub fn composite_weights_encoded(
    pk: &[u8; ELEMENT_LEN],
    c: &[[u8; ELEMENT_LEN]],
    d: &[[u8; ELEMENT_LEN]],
) -> Vec<Scalar> {
    Hasher::new().composite(pk).weights(c, d)
}

/// The proof's challenge (RFC 9497 §2.2.1, `GenerateProof` and `VerifyProof`):
/// `HashToScalar` of the length-prefixed `B, M, Z, t2, t3` and `"Challenge"`.
#[must_use]
pub fn challenge(
    pk: &PublicKey,
    m: &RistrettoPoint,
    z: &RistrettoPoint,
    t2: &RistrettoPoint,
    t3: &RistrettoPoint,
) -> Scalar {
    let pts = [*m, *z, *t2, *t3].map(|p| p.compress().to_bytes());
    challenge_encoded(&pk.to_bytes(), &pts)
}

/// [`challenge`] of elements already serialised: `pkS`, then `[M, Z, t2, t3]` (a server
/// compresses the last four with one batched inversion).
#[must_use]
pub fn challenge_encoded(pk: &[u8; ELEMENT_LEN], points: &[[u8; ELEMENT_LEN]; 4]) -> Scalar {
    let l = len2(ELEMENT_LEN);
    let [m, z, t2, t3] = points;
    hash_to_scalar(&[&l, pk, &l, m, &l, z, &l, t2, &l, t3, b"Challenge"])
}

/// `VerifyProof(G, pkS, blinded, evaluated, proof)` (RFC 9497 §2.2.2), batched.
///
/// # Errors
/// [`VoprfError::BatchSize`] or [`VoprfError::BadProof`].
pub fn verify_proof(
    pk: &PublicKey,
    blinded: &[RistrettoPoint],
    evaluated: &[RistrettoPoint],
    proof: &Proof,
) -> Result<(), VoprfError> {
    if blinded.len() != evaluated.len() || blinded.is_empty() || blinded.len() > MAX_BATCH {
        return Err(VoprfError::BatchSize);
    }
    let c: Vec<[u8; ELEMENT_LEN]> = blinded.iter().map(|p| p.compress().to_bytes()).collect();
    let d: Vec<[u8; ELEMENT_LEN]> = evaluated.iter().map(|p| p.compress().to_bytes()).collect();
    verify_proof_encoded(pk, &pk.to_bytes(), (blinded, &c), (evaluated, &d), proof)
}

/// [`verify_proof`] with the elements at hand both as points and serialised (the
/// serialisations a client already has from the wire: serialising a point costs a field
/// inversion). `pk_bytes` is `pk`'s serialisation, and each slice pair holds the same
/// elements in the same order — else the proof does not verify.
///
/// `M`, `Z`, `t2 = s·G + c·pkS` and `t3 = s·M + c·Z` are computed halved and
/// serialised with one batched inversion.
///
/// # Errors
/// [`VoprfError::BatchSize`] or [`VoprfError::BadProof`].
pub fn verify_proof_encoded(
    pk: &PublicKey,
    pk_bytes: &[u8; ELEMENT_LEN],
    blinded: (&[RistrettoPoint], &[[u8; ELEMENT_LEN]]),
    evaluated: (&[RistrettoPoint], &[[u8; ELEMENT_LEN]]),
    proof: &Proof,
) -> Result<(), VoprfError> {
    let n = blinded.0.len();
    if n == 0 || n > MAX_BATCH || blinded.1.len() != n || evaluated.0.len() != n || evaluated.1.len() != n {
        return Err(VoprfError::BatchSize);
    }
    let half = half();
    let w: Vec<Scalar> =
        Hasher::new().composite(pk_bytes).weights(blinded.1, evaluated.1).iter().map(|d| d * half).collect();
    let half_m = RistrettoPoint::vartime_multiscalar_mul(&w, blinded.0);
    let half_z = RistrettoPoint::vartime_multiscalar_mul(&w, evaluated.0);
    let half_t2 =
        RistrettoPoint::vartime_double_scalar_mul_basepoint(&(proof.c * half), &pk.0, &(proof.s * half));
    let half_t3 = RistrettoPoint::vartime_multiscalar_mul([proof.s, proof.c], [half_m, half_z]);
    let mut encoded = [[0; ELEMENT_LEN]; 4];
    for (e, c) in
        encoded.iter_mut().zip(RistrettoPoint::double_and_compress_batch(&[half_m, half_z, half_t2, half_t3]))
    {
        *e = c.to_bytes();
    }
    let expected = challenge_encoded(pk_bytes, &encoded);
    if bool::from(expected.ct_eq(&proof.c)) { Ok(()) } else { Err(VoprfError::BadProof) }
}

/// The output hash (RFC 9497 §3.3.2, `Finalize`, and §3.3.1, `Evaluate`):
/// `SHA-512(I2OSP(len(input), 2) ‖ input ‖ I2OSP(32, 2) ‖ element ‖ "Finalize")`.
#[must_use]
pub fn finalize_hash(input: &[u8], element: &RistrettoPoint) -> [u8; OUTPUT_LEN] {
    finalize_hash_encoded(input, element.compress().as_bytes())
}

/// [`finalize_hash`] of an element already serialised (for callers that compress many
/// elements with one batched inversion).
#[must_use]
pub fn finalize_hash_encoded(input: &[u8], element: &[u8; ELEMENT_LEN]) -> [u8; OUTPUT_LEN] {
    let mut h = Sha512::new();
    h.update(len2(input.len()));
    h.update(input);
    h.update(len2(ELEMENT_LEN));
    h.update(element);
    h.update(b"Finalize");
    let mut out = [0; OUTPUT_LEN];
    out.copy_from_slice(&h.finalize());
    out
}

/// `Finalize` for a batch (RFC 9497 §3.3.2): checks the batched proof once, then
/// unblinds each evaluation (one batched inversion) and hashes it with its input.
///
/// # Errors
/// [`VoprfError::BatchSize`], [`VoprfError::BadProof`].
pub fn finalize(
    pk: &PublicKey,
    inputs: &[&[u8]],
    blinds: &[Scalar],
    blinded: &[RistrettoPoint],
    evaluated: &[RistrettoPoint],
    proof: &Proof,
) -> Result<Vec<[u8; OUTPUT_LEN]>, VoprfError> {
    if blinded.len() != evaluated.len() {
        return Err(VoprfError::BatchSize);
    }
    let c: Vec<[u8; ELEMENT_LEN]> = blinded.iter().map(|p| p.compress().to_bytes()).collect();
    let d: Vec<[u8; ELEMENT_LEN]> = evaluated.iter().map(|p| p.compress().to_bytes()).collect();
    finalize_encoded(pk, &pk.to_bytes(), inputs, blinds, (blinded, &c), &d, proof)
}

/// [`finalize`] as a client holds its batch: `pk` with its serialisation `pk_bytes`, its
/// blinded elements as points and as sent, and the evaluations as received (deserialised
/// here: canonical, never the identity). Nothing is serialised twice: the proof check
/// hashes the wire bytes, and the unblinded elements `blindᵢ⁻¹·evaluatedᵢ` are computed
/// halved and serialised with one batched field inversion.
///
/// ```
/// use confiance::token::voprf;
/// use curve25519_dalek::{RistrettoPoint, Scalar};
/// let (sk, pk) = voprf::derive_key_pair(&[7; 32], b"example")?;
/// let (points, wire) = voprf::blind_batch_with(&[b"input".as_slice()], &[Scalar::from(3u8)])?;
/// // The server's evaluation and proof, by hand (proof nonce 5).
/// let e = sk * points[0];
/// let w = voprf::composite_weights(&pk, &wire, &[e.compress().to_bytes()]);
/// let (m, r) = (w[0] * points[0], Scalar::from(5u8));
/// let c = voprf::challenge(&pk, &m, &(sk * m), &RistrettoPoint::mul_base(&r), &(r * m));
/// let proof = voprf::Proof { c, s: r - c * sk };
/// let out = voprf::finalize_encoded(
///     &pk, &pk.to_bytes(), &[b"input".as_slice()], &[Scalar::from(3u8)],
///     (&points, &wire), &[e.compress().to_bytes()], &proof,
/// )?;
/// assert_eq!(out[0], voprf::finalize_hash(b"input", &(sk * voprf::hash_to_group(b"input"))));
/// # Ok::<(), voprf::VoprfError>(())
/// ```
///
/// # Errors
/// [`VoprfError::BatchSize`], [`VoprfError::NonCanonicalElement`],
/// [`VoprfError::IdentityElement`], [`VoprfError::BadProof`].
pub fn finalize_encoded(
    pk: &PublicKey,
    pk_bytes: &[u8; ELEMENT_LEN],
    inputs: &[&[u8]],
    blinds: &[Scalar],
    blinded: (&[RistrettoPoint], &[[u8; ELEMENT_LEN]]),
    evaluated: &[[u8; ELEMENT_LEN]],
    proof: &Proof,
) -> Result<Vec<[u8; OUTPUT_LEN]>, VoprfError> {
    if inputs.len() != blinds.len() {
        return Err(VoprfError::BatchSize);
    }
    let unblinded = unblind_encoded(pk, pk_bytes, blinds, blinded, evaluated, proof)?;
    Ok(inputs.iter().zip(&unblinded).map(|(input, n)| finalize_hash_encoded(input, n)).collect())
}

/// The first half of [`finalize_encoded`]: checks the proof and returns the unblinded
/// elements `Nᵢ = blindᵢ⁻¹·evaluatedᵢ = skS·HashToGroup(inputᵢ)` serialised (one
/// batched inversion), before `Finalize` hashes them. A token of type `0xC0F2`
/// (docs/wire-format.md §10.1) carries `Nᵢ` itself.
///
/// ```
/// use confiance::token::voprf;
/// use curve25519_dalek::{RistrettoPoint, Scalar};
/// let (sk, pk) = voprf::derive_key_pair(&[7; 32], b"example")?;
/// let (points, wire) = voprf::blind_batch_with(&[b"input".as_slice()], &[Scalar::from(3u8)])?;
/// let e = sk * points[0];
/// let w = voprf::composite_weights(&pk, &wire, &[e.compress().to_bytes()]);
/// let (m, r) = (w[0] * points[0], Scalar::from(5u8));
/// let c = voprf::challenge(&pk, &m, &(sk * m), &RistrettoPoint::mul_base(&r), &(r * m));
/// let proof = voprf::Proof { c, s: r - c * sk };
/// let n = voprf::unblind_encoded(
///     &pk, &pk.to_bytes(), &[Scalar::from(3u8)], (&points, &wire), &[e.compress().to_bytes()], &proof,
/// )?;
/// assert_eq!(n[0], (sk * voprf::hash_to_group(b"input")).compress().to_bytes());
/// # Ok::<(), voprf::VoprfError>(())
/// ```
///
/// # Errors
/// As [`finalize_encoded`].
pub fn unblind_encoded(
    pk: &PublicKey,
    pk_bytes: &[u8; ELEMENT_LEN],
    blinds: &[Scalar],
    blinded: (&[RistrettoPoint], &[[u8; ELEMENT_LEN]]),
    evaluated: &[[u8; ELEMENT_LEN]],
    proof: &Proof,
) -> Result<Vec<[u8; ELEMENT_LEN]>, VoprfError> {
    if blinds.len() != blinded.0.len() || evaluated.len() != blinds.len() {
        return Err(VoprfError::BatchSize);
    }
    if blinds.contains(&Scalar::ZERO) {
        return Err(VoprfError::BatchSize);
    }
    let points = evaluated.iter().map(deserialize_element).collect::<Result<Vec<_>, _>>()?;
    verify_proof_encoded(pk, pk_bytes, blinded, (&points, evaluated), proof)?;
    // 1/(2·blind): the unblinded element halved, for the batched serialisation.
    let mut inverses: Vec<Scalar> = blinds.iter().map(|b| b + b).collect();
    Scalar::invert_batch_alloc(&mut inverses);
    let halves: Vec<RistrettoPoint> = inverses.iter().zip(&points).map(|(inv, e)| inv * e).collect();
    inverses.iter_mut().for_each(Zeroize::zeroize);
    Ok(RistrettoPoint::double_and_compress_batch(&halves).iter().map(|n| n.to_bytes()).collect())
}

/// A random non-zero blind, as [`blind`] draws it.
pub fn random_blind<R: rand_core::CryptoRng + ?Sized>(rng: &mut R) -> Scalar {
    let mut b = Scalar::random(rng);
    while b == Scalar::ZERO {
        b = Scalar::random(rng);
    }
    b
}

/// `Blind` of a batch with the blinds given (drawn by [`random_blind`]): the blinded
/// elements as points and serialised, all serialised with one batched field inversion
/// (each `blind·P` is computed as `2·((blind/2)·P)`), and the inputs hashed with
/// [`Hasher`].
///
/// ```
/// use confiance::token::voprf;
/// use curve25519_dalek::Scalar;
/// let (points, wire) = voprf::blind_batch_with(&[b"a".as_slice(), b"b"], &[Scalar::from(3u8), Scalar::from(4u8)])?;
/// assert_eq!(points[1], voprf::blind_with(b"b", Scalar::from(4u8))?.1);
/// assert_eq!(wire[1], points[1].compress().to_bytes());
/// # Ok::<(), voprf::VoprfError>(())
/// ```
///
/// # Errors
/// [`VoprfError::BatchSize`] if the counts differ; [`VoprfError::InvalidInput`] if an
/// input hashes to the identity.
pub fn blind_batch_with(
    inputs: &[&[u8]],
    blinds: &[Scalar],
) -> Result<(Vec<RistrettoPoint>, Vec<[u8; ELEMENT_LEN]>), VoprfError> {
    if inputs.len() != blinds.len() {
        return Err(VoprfError::BatchSize);
    }
    let hasher = Hasher::new();
    let half = half();
    let mut halves = Vec::with_capacity(inputs.len());
    for (input, b) in inputs.iter().zip(blinds) {
        let p = hasher.hash_to_group(input);
        if p.is_identity() {
            return Err(VoprfError::InvalidInput);
        }
        let mut h = b * half;
        halves.push(h * p);
        h.zeroize();
    }
    let wire: Vec<[u8; ELEMENT_LEN]> =
        RistrettoPoint::double_and_compress_batch(&halves).iter().map(|c| c.to_bytes()).collect();
    let points = halves.iter().map(|h| h + h).collect();
    Ok((points, wire))
}

/// The identity element, for tests that must show it is refused.
#[must_use]
pub fn identity_bytes() -> [u8; ELEMENT_LEN] {
    RistrettoPoint::identity().compress().to_bytes()
}

//! Transcryption requests: the only way a polymorphic pseudonym enters transcryption.
//!
//! A device sends its ciphertext of `M = m·G` ([`DeviceSecret::identity_point`]) together
//! with
//! - a proof of knowledge of the plaintext's logarithm `m` and of the randomness `r`
//!   (a Schnorr proof of the two linear relations `B = r·G`, `C = m·G + r·Y`, after
//!   Camenisch and Stadler 1997, Fiat–Shamir over SHA-512), bound to everything below;
//! - the consent receipt it is sent under, the target recipient (and epoch, for an
//!   epoch domain) and a fresh 32-byte nonce;
//! - an Ed25519 signature over all of it by the device key the subject delegated.
//!
//! The transcryptors check the signature against the subject the consent check names,
//! the target against their domain, the proof, and the nonce against replays. So only a
//! subject's own device can start a transcryption; a ciphertext cannot be re-addressed,
//! scaled or shifted (the signature and the proof break); and a pseudonym `s·M` handed to
//! a recipient cannot be sent back in, because nobody knows its logarithm `s·m`. The
//! bytes are in docs/wire-format.md ("Transcryption request").

use alloc::vec::Vec;

use curve25519_dalek::constants::{RISTRETTO_BASEPOINT_POINT, RISTRETTO_BASEPOINT_TABLE};
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{MultiscalarMul, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, VerifyingKey};
use rand_core::CryptoRng;
use sha2::{Digest as _, Sha512};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use super::{
    CIPHERTEXT_LEN, Ciphertext, DeviceSecret, Epoch, POINT_LEN, PseudonymError, SCALAR_LEN, SystemPublicKey,
};
use super::{decode_scalar, push_field};
use crate::consent::DeviceKey;
use crate::ids::{DevicePublicKey, ReceiptId, RecipientId};

/// Version byte of [`TranscryptionRequest`] encodings.
pub const REQUEST_VERSION: u8 = 1;
/// Bytes of an encoded [`PlaintextProof`]: `e ‖ z_m ‖ z_r`.
pub const PLAINTEXT_PROOF_LEN: usize = 3 * SCALAR_LEN;
/// Bytes of a request before the recipient name: version, ciphertext, proof, receipt,
/// nonce, device key, epoch flag and epoch, signature.
pub const REQUEST_FIXED_LEN: usize = 1 + CIPHERTEXT_LEN + PLAINTEXT_PROOF_LEN + 32 + 32 + 32 + 1 + 8 + 64;
/// Longest recipient name a request carries.
pub const MAX_REQUEST_RECIPIENT_LEN: usize = 255;

/// Ed25519 domain prefix of the signed bytes.
const SIG_DOMAIN: &[u8] = b"confiance/transcrypt-request/v1\0";
/// Fiat–Shamir label of the plaintext proof.
const PROOF_LABEL: &[u8] = b"confiance/pseudonym/plaintext-proof/v1";

/// A proof that the prover knows `(m, r)` with `B = r·G` and `C = m·G + r·Y` for a
/// ciphertext `(B, C, Y)`: it knows the logarithm of what it encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaintextProof {
    e: Scalar,
    zm: Scalar,
    zr: Scalar,
}

fn challenge(context: &[u8], points: &[RistrettoPoint; 5]) -> Scalar {
    challenge_encoded(context, &points.map(|p| p.compress().to_bytes()))
}

/// The Fiat–Shamir challenge from the points' encodings `B, C, Y, A₁, A₂`:
/// `SHA-512(len‖label ‖ len‖context ‖ enc(B) ‖ enc(C) ‖ enc(Y) ‖ enc(A₁) ‖ enc(A₂))` mod ℓ.
fn challenge_encoded(context: &[u8], encoded: &[[u8; POINT_LEN]; 5]) -> Scalar {
    let mut head = Vec::with_capacity(16 + PROOF_LABEL.len() + context.len());
    push_field(&mut head, PROOF_LABEL);
    push_field(&mut head, context);
    let mut h = Sha512::new_with_prefix(&head);
    for p in encoded {
        h.update(p);
    }
    Scalar::from_hash(h)
}

/// `1/2 mod ℓ`, that is `(ℓ + 1) / 2`, little-endian.
const HALF_BYTES: [u8; SCALAR_LEN] = [
    247, 233, 122, 46, 141, 49, 9, 44, 107, 206, 123, 81, 239, 124, 111, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 8,
];

impl PlaintextProof {
    fn prove(ct: &Ciphertext, m: &Scalar, r: &Scalar, context: &[u8], nonces: &[Scalar; 2]) -> Self {
        let [am, ar] = nonces;
        let a1 = RISTRETTO_BASEPOINT_TABLE * ar;
        let a2 = RISTRETTO_BASEPOINT_TABLE * am + ar * ct.y;
        let e = challenge(context, &[ct.b, ct.c, ct.y, a1, a2]);
        Self { e, zm: am + e * m, zr: ar + e * r }
    }

    /// Checks the proof for `ct`, whose encoding `ct_bytes` the caller already has.
    fn verify(&self, ct: &Ciphertext, ct_bytes: &[u8; CIPHERTEXT_LEN], context: &[u8]) -> bool {
        let ne = -self.e;
        let g = RISTRETTO_BASEPOINT_POINT;
        let a1 = RistrettoPoint::vartime_multiscalar_mul([self.zr, ne], [g, ct.b]);
        let a2 = RistrettoPoint::vartime_multiscalar_mul([self.zm, self.zr, ne], [g, ct.y, ct.c]);
        let mut encoded = [[0u8; POINT_LEN]; 5];
        for (out, chunk) in encoded.iter_mut().zip(ct_bytes.chunks_exact(POINT_LEN)) {
            out.copy_from_slice(chunk);
        }
        encoded[3] = a1.compress().to_bytes();
        encoded[4] = a2.compress().to_bytes();
        challenge_encoded(context, &encoded).ct_eq(&self.e).into()
    }

    fn to_bytes(self) -> [u8; PLAINTEXT_PROOF_LEN] {
        let mut out = [0u8; PLAINTEXT_PROOF_LEN];
        for (chunk, s) in out.chunks_exact_mut(SCALAR_LEN).zip([self.e, self.zm, self.zr]) {
            chunk.copy_from_slice(s.as_bytes());
        }
        out
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, PseudonymError> {
        if bytes.len() != PLAINTEXT_PROOF_LEN {
            return Err(PseudonymError::BadLength);
        }
        Ok(Self {
            e: decode_scalar(&bytes[..32])?,
            zm: decode_scalar(&bytes[32..64])?,
            zr: decode_scalar(&bytes[64..])?,
        })
    }
}

/// A device's signed request to transcrypt its polymorphic pseudonym for one recipient
/// (and epoch) under one consent receipt: the ciphertext of its identity point `M = m·G`,
/// a proof that it knows `m` and the encryption randomness, the receipt, the target and a
/// fresh nonce, signed by the device key its subject delegated. A pseudonym handed to a
/// recipient cannot be sent back in (nobody knows its logarithm), and a ciphertext cannot
/// be re-addressed, scaled or shifted without breaking the signature and the proof. The
/// bytes are in docs/wire-format.md ("Transcryption request").
///
/// ```
/// use confiance::consent::DeviceKey;
/// use confiance::ids::{ReceiptId, RecipientId};
/// use confiance::pseudonym::{DeviceSecret, SystemPublicKey, TranscryptionRequest};
/// use curve25519_dalek::{RistrettoPoint, Scalar};
/// use rand_core::SeedableRng;
/// let mut rng = rand_chacha::ChaCha20Rng::from_seed([1; 32]);
/// let pk = SystemPublicKey::from_point(RistrettoPoint::mul_base(&Scalar::from(9u8)))?;
/// let key = DeviceKey::from_bytes(&[3; 32]);
/// let req = TranscryptionRequest::sign(
///     &key, &DeviceSecret::from_bytes([5; 32]), &pk, ReceiptId([7; 32]),
///     RecipientId::new("voltis")?, None, &mut rng,
/// );
/// req.verify()?;
/// let bytes = req.to_bytes();
/// assert_eq!(TranscryptionRequest::from_bytes(&bytes)?, req);
/// // Another recipient under the same signature does not verify.
/// let mut moved = bytes.clone();
/// *moved.last_mut().unwrap() ^= 1;
/// assert!(TranscryptionRequest::from_bytes(&moved).map_or(true, |r| r.verify().is_err()));
/// # Ok::<(), Box<dyn core::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranscryptionRequest {
    ciphertext: Ciphertext,
    proof: PlaintextProof,
    receipt: ReceiptId,
    recipient: RecipientId,
    epoch: Option<Epoch>,
    nonce: [u8; 32],
    device: DevicePublicKey,
    signature: [u8; 64],
}

impl TranscryptionRequest {
    /// Encrypts `secret`'s identity point under `system_key` with fresh randomness,
    /// proves knowledge of its plaintext, and signs it for `recipient` (in `epoch`, for an
    /// epoch domain) under `receipt` with a fresh nonce, with the device key `key`.
    pub fn sign<R: CryptoRng + ?Sized>(
        key: &DeviceKey,
        secret: &DeviceSecret,
        system_key: &SystemPublicKey,
        receipt: ReceiptId,
        recipient: RecipientId,
        epoch: Option<Epoch>,
        rng: &mut R,
    ) -> Self {
        let mut m = secret.identity_scalar();
        let req = sign_fresh(key, &m, system_key, receipt, recipient, epoch, rng);
        m.zeroize();
        req
    }

    /// The polymorphic pseudonym.
    #[must_use]
    pub const fn ciphertext(&self) -> &Ciphertext {
        &self.ciphertext
    }

    /// The consent receipt the request is sent under.
    #[must_use]
    pub const fn receipt(&self) -> &ReceiptId {
        &self.receipt
    }

    /// The recipient whose domain the pseudonym is for.
    #[must_use]
    pub const fn recipient(&self) -> &RecipientId {
        &self.recipient
    }

    /// The epoch of the target domain (`None` for a recipient's stable domain).
    #[must_use]
    pub const fn epoch(&self) -> Option<Epoch> {
        self.epoch
    }

    /// The fresh nonce transcryptors remember to refuse replays.
    #[must_use]
    pub const fn nonce(&self) -> &[u8; 32] {
        &self.nonce
    }

    /// The device key that signed it.
    #[must_use]
    pub const fn device(&self) -> &DevicePublicKey {
        &self.device
    }

    /// The bytes the device signs (docs/wire-format.md): `"confiance/transcrypt-request/v1\0"`
    /// then, each preceded by its length as a big-endian `u64`: the version byte, the
    /// ciphertext, the proof, the receipt id, the recipient, the epoch (8 bytes big-endian,
    /// or empty), the nonce and the device key.
    #[must_use]
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes_of(&self.ciphertext.to_bytes(), &self.proof.to_bytes(), &self.context())
    }

    fn context(&self) -> Vec<u8> {
        proof_context(&self.receipt, &self.recipient, self.epoch, &self.nonce, &self.device)
    }

    /// Checks the signature (strict Ed25519, RFC 8032 with the checks of
    /// `verify_strict`) by [`TranscryptionRequest::device`] and the plaintext proof. Who
    /// that device speaks for is the ledger's to say; the transcryptors ask it.
    ///
    /// # Errors
    /// [`PseudonymError::BadSignature`], [`PseudonymError::BadPlaintextProof`].
    pub fn verify(&self) -> Result<(), PseudonymError> {
        let vk =
            VerifyingKey::from_bytes(self.device.as_bytes()).map_err(|_| PseudonymError::BadSignature)?;
        // The ciphertext encoded once, for the signed bytes and the proof's transcript.
        let ct_bytes = self.ciphertext.to_bytes();
        let context = self.context();
        let signed = signed_bytes_of(&ct_bytes, &self.proof.to_bytes(), &context);
        vk.verify_strict(&signed, &Signature::from_bytes(&self.signature))
            .map_err(|_| PseudonymError::BadSignature)?;
        if self.proof.verify(&self.ciphertext, &ct_bytes, &context) {
            Ok(())
        } else {
            Err(PseudonymError::BadPlaintextProof)
        }
    }

    /// `version ‖ ciphertext(96) ‖ proof(96) ‖ receipt(32) ‖ nonce(32) ‖ device(32) ‖
    /// epoch flag(1) ‖ epoch_be(8) ‖ signature(64) ‖ recipient (UTF-8, to the end)`.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REQUEST_FIXED_LEN + self.recipient.as_str().len());
        out.push(REQUEST_VERSION);
        out.extend_from_slice(&self.ciphertext.to_bytes());
        out.extend_from_slice(&self.proof.to_bytes());
        out.extend_from_slice(self.receipt.as_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(self.device.as_bytes());
        out.push(u8::from(self.epoch.is_some()));
        out.extend_from_slice(&self.epoch.map_or(0, |e| e.0).to_be_bytes());
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(self.recipient.as_str().as_bytes());
        out
    }

    /// Decodes a request strictly (canonical points and scalars, no identity component,
    /// a valid recipient name, an epoch flag of 0 or 1 with a zero epoch after 0). Does
    /// **not** check the signature or the proof: [`TranscryptionRequest::verify`] does.
    ///
    /// # Errors
    /// [`PseudonymError::BadLength`], [`PseudonymError::UnsupportedVersion`],
    /// [`PseudonymError::Malformed`] and the point and scalar errors.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PseudonymError> {
        if bytes.len() <= REQUEST_FIXED_LEN || bytes.len() > REQUEST_FIXED_LEN + MAX_REQUEST_RECIPIENT_LEN {
            return Err(PseudonymError::BadLength);
        }
        if bytes[0] != REQUEST_VERSION {
            return Err(PseudonymError::UnsupportedVersion);
        }
        let (ct, rest) = bytes[1..].split_at(CIPHERTEXT_LEN);
        let (proof, rest) = rest.split_at(PLAINTEXT_PROOF_LEN);
        let (receipt, rest) = rest.split_at(32);
        let (nonce, rest) = rest.split_at(32);
        let (device, rest) = rest.split_at(32);
        let (flag, rest) = rest.split_at(1);
        let (epoch, rest) = rest.split_at(8);
        let (signature, recipient) = rest.split_at(64);
        let epoch_value = u64::from_be_bytes(epoch.try_into().map_err(|_| PseudonymError::BadLength)?);
        let epoch = match (flag[0], epoch_value) {
            (0, 0) => None,
            (1, e) => Some(Epoch(e)),
            _ => return Err(PseudonymError::Malformed),
        };
        let recipient = core::str::from_utf8(recipient)
            .ok()
            .and_then(|s| RecipientId::new(s).ok())
            .ok_or(PseudonymError::Malformed)?;
        let arr = |b: &[u8]| -> Result<[u8; 32], PseudonymError> {
            b.try_into().map_err(|_| PseudonymError::BadLength)
        };
        Ok(Self {
            ciphertext: Ciphertext::from_bytes(ct)?,
            proof: PlaintextProof::from_bytes(proof)?,
            receipt: ReceiptId(arr(receipt)?),
            recipient,
            epoch,
            nonce: arr(nonce)?,
            device: DevicePublicKey(arr(device)?),
            signature: signature.try_into().map_err(|_| PseudonymError::BadLength)?,
        })
    }
}

/// Proves `ciphertext` with the witnesses `(m, r)` and signs it (see
/// [`TranscryptionRequest::sign`]; hazmat gives wrong witnesses on purpose).
#[allow(clippy::too_many_arguments, reason = "the signed fields, the witnesses and the rng")]
pub(super) fn sign_raw<R: CryptoRng + ?Sized>(
    key: &DeviceKey,
    ciphertext: Ciphertext,
    m: &Scalar,
    r: &Scalar,
    receipt: ReceiptId,
    recipient: RecipientId,
    epoch: Option<Epoch>,
    rng: &mut R,
) -> TranscryptionRequest {
    let mut nonce = [0u8; 32];
    rng.fill_bytes(&mut nonce);
    let device = key.public_key();
    let context = proof_context(&receipt, &recipient, epoch, &nonce, &device);
    let mut proof_nonces = [Scalar::random(rng), Scalar::random(rng)];
    let proof = PlaintextProof::prove(&ciphertext, m, r, &context, &proof_nonces);
    proof_nonces.zeroize();
    let mut req = TranscryptionRequest {
        ciphertext,
        proof,
        receipt,
        recipient,
        epoch,
        nonce,
        device,
        signature: [0; 64],
    };
    req.signature = key.sign(&req.signed_bytes());
    req
}

/// [`TranscryptionRequest::sign`] for the identity scalar `m`: the same draws from `rng`
/// in the same order as [`sign_raw`] after `r`, so the same bytes, with fewer field
/// inversions. Every point the transcript hashes is computed halved (from halved
/// scalars), so that one batched inversion (`double_and_compress_batch`, which encodes
/// `2·P`) encodes `B`, `C`, `A₁` and `A₂`; `Y`'s encoding is kept in the key; the
/// ciphertext is encoded once for the transcript and the signed bytes; and `C = m·G + r·Y`
/// and `A₂ = a_m·G + a_r·Y` are each one constant-time two-point multiscalar product.
#[allow(clippy::too_many_arguments, reason = "the signed fields, the witness and the rng")]
fn sign_fresh<R: CryptoRng + ?Sized>(
    key: &DeviceKey,
    m: &Scalar,
    system_key: &SystemPublicKey,
    receipt: ReceiptId,
    recipient: RecipientId,
    epoch: Option<Epoch>,
    rng: &mut R,
) -> TranscryptionRequest {
    let mut r = Scalar::random(rng);
    let mut nonce = [0u8; 32];
    rng.fill_bytes(&mut nonce);
    let device = key.public_key();
    let context = proof_context(&receipt, &recipient, epoch, &nonce, &device);
    let [mut am, mut ar] = [Scalar::random(rng), Scalar::random(rng)];
    let half = Scalar::from_bytes_mod_order(HALF_BYTES);
    // m/2, r/2, a_m/2, a_r/2.
    let mut halves = [m * half, r * half, am * half, ar * half];
    let [m2, r2, am2, ar2] = &halves;
    let (g, y) = (RISTRETTO_BASEPOINT_POINT, *system_key.point());
    let b2 = RISTRETTO_BASEPOINT_TABLE * r2;
    let c2 = RistrettoPoint::multiscalar_mul([m2, r2], [g, y]);
    let a1_2 = RISTRETTO_BASEPOINT_TABLE * ar2;
    let a2_2 = RistrettoPoint::multiscalar_mul([am2, ar2], [g, y]);
    halves.zeroize();
    // Encodings of 2·(P/2) = P: one batch for the four, none of them recomputed.
    let batch = RistrettoPoint::double_and_compress_batch(&[b2, c2, a1_2, a2_2]);
    let at = |i: usize| batch.get(i).map_or([0; POINT_LEN], |p| p.to_bytes());
    // Transcript order: B, C, Y, A₁, A₂.
    let encoded = [at(0), at(1), system_key.to_bytes(), at(2), at(3)];
    let e = challenge_encoded(&context, &encoded);
    let proof = PlaintextProof { e, zm: am + e * m, zr: ar + e * r };
    am.zeroize();
    ar.zeroize();
    r.zeroize();
    let ciphertext = Ciphertext { b: b2 + b2, c: c2 + c2, y };
    let mut ct_bytes = [0u8; CIPHERTEXT_LEN];
    for (chunk, p) in ct_bytes.chunks_exact_mut(POINT_LEN).zip(&encoded) {
        chunk.copy_from_slice(p);
    }
    let signature = key.sign(&signed_bytes_of(&ct_bytes, &proof.to_bytes(), &context));
    TranscryptionRequest { ciphertext, proof, receipt, recipient, epoch, nonce, device, signature }
}

/// The bytes the device signs, from the encoded ciphertext, the encoded proof and the
/// [`proof_context`] (see [`TranscryptionRequest::signed_bytes`]).
fn signed_bytes_of(ct: &[u8; CIPHERTEXT_LEN], proof: &[u8; PLAINTEXT_PROOF_LEN], context: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(SIG_DOMAIN.len() + 24 + CIPHERTEXT_LEN + PLAINTEXT_PROOF_LEN + 1 + context.len());
    out.extend_from_slice(SIG_DOMAIN);
    push_field(&mut out, &[REQUEST_VERSION]);
    push_field(&mut out, ct);
    push_field(&mut out, proof);
    out.extend_from_slice(context);
    out
}

/// What the proof is bound to and the signature covers after the proof: the receipt,
/// the recipient, the epoch, the nonce and the device key, each length-prefixed.
fn proof_context(
    receipt: &ReceiptId,
    recipient: &RecipientId,
    epoch: Option<Epoch>,
    nonce: &[u8; 32],
    device: &DevicePublicKey,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(200);
    push_field(&mut out, receipt.as_bytes());
    push_field(&mut out, recipient.as_str().as_bytes());
    match epoch {
        Some(e) => push_field(&mut out, &e.0.to_be_bytes()),
        None => push_field(&mut out, &[]),
    }
    push_field(&mut out, nonce);
    push_field(&mut out, device.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng as _, SeedableRng as _};

    use super::*;

    /// What `sign` computed before it halved its points: encrypt `m·G`, then prove with
    /// every point encoded on its own and sign.
    fn reference_sign(
        key: &DeviceKey,
        secret: &DeviceSecret,
        system_key: &SystemPublicKey,
        receipt: ReceiptId,
        recipient: RecipientId,
        epoch: Option<Epoch>,
        rng: &mut ChaCha20Rng,
    ) -> TranscryptionRequest {
        let m = secret.identity_scalar();
        let r = Scalar::random(rng);
        let ct = Ciphertext::encrypt_with(&(RISTRETTO_BASEPOINT_TABLE * &m), system_key.point(), &r);
        sign_raw(key, ct, &m, &r, receipt, recipient, epoch, rng)
    }

    #[test]
    fn halved_signing_gives_the_bytes_of_the_plain_composition() {
        for seed in 0..12u8 {
            let secret = DeviceSecret::from_bytes([seed.wrapping_mul(31).wrapping_add(1); 32]);
            let key = DeviceKey::from_bytes(&[seed ^ 0x5a; 32]);
            let y = RISTRETTO_BASEPOINT_TABLE * &Scalar::from(u64::from(seed) * 1_000_003 + 7);
            // Through bytes and through a point: the kept encoding is the same.
            let system_key = if seed % 2 == 0 {
                SystemPublicKey::from_point(y).unwrap()
            } else {
                SystemPublicKey::from_bytes(y.compress().as_bytes()).unwrap()
            };
            let recipient = RecipientId::new(if seed % 3 == 0 { "acme" } else { "acme-thermo" }).unwrap();
            let epoch = (seed % 2 == 1).then_some(Epoch(u64::from(seed) << 40));
            let receipt = ReceiptId([seed; 32]);
            let mut rng = ChaCha20Rng::from_seed([seed; 32]);
            let mut same = rng.clone();
            let fast = TranscryptionRequest::sign(
                &key,
                &secret,
                &system_key,
                receipt,
                recipient.clone(),
                epoch,
                &mut rng,
            );
            let slow = reference_sign(&key, &secret, &system_key, receipt, recipient, epoch, &mut same);
            assert_eq!(fast.to_bytes(), slow.to_bytes(), "seed {seed}");
            assert_eq!(fast, slow);
            // Both consumed the same randomness.
            assert_eq!(rng.next_u64(), same.next_u64());
            assert_eq!(fast.verify(), Ok(()));
            // The ciphertext encrypts the identity point under the key.
            let decrypted =
                fast.ciphertext().c - Scalar::from(u64::from(seed) * 1_000_003 + 7) * fast.ciphertext().b;
            assert_eq!(decrypted, secret.identity_point());
        }
    }

    #[test]
    fn half_is_the_inverse_of_two() {
        let half = Scalar::from_bytes_mod_order(HALF_BYTES);
        assert_eq!(half * Scalar::from(2u8), Scalar::ONE);
        assert_eq!(half.to_bytes(), HALF_BYTES, "a canonical scalar");
    }

    #[test]
    fn a_tampered_request_still_fails_both_checks() {
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let pk = SystemPublicKey::from_point(RISTRETTO_BASEPOINT_TABLE * &Scalar::from(77u8)).unwrap();
        let key = DeviceKey::from_bytes(&[4; 32]);
        let req = TranscryptionRequest::sign(
            &key,
            &DeviceSecret::from_bytes([6; 32]),
            &pk,
            ReceiptId([1; 32]),
            RecipientId::new("voltis").unwrap(),
            None,
            &mut rng,
        );
        // Another proof under a fresh signature: the proof no longer verifies.
        let mut other = req.clone();
        other.proof.zm += Scalar::ONE;
        other.signature = key.sign(&other.signed_bytes());
        assert_eq!(other.verify(), Err(PseudonymError::BadPlaintextProof));
        // The ciphertext shifted, the signature kept: the signature fails first.
        let mut shifted = req;
        shifted.ciphertext.c += RISTRETTO_BASEPOINT_POINT;
        assert_eq!(shifted.verify(), Err(PseudonymError::BadSignature));
        shifted.signature = key.sign(&shifted.signed_bytes());
        assert_eq!(shifted.verify(), Err(PseudonymError::BadPlaintextProof));
    }
}

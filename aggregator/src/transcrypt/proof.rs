//! Non-interactive Chaum–Pedersen proofs (Chaum and Pedersen, *Wallet Databases with
//! Observers*, CRYPTO 1992), generalised to several linear relations (Camenisch and
//! Stadler, *Proof Systems for General Statements about Discrete Logarithms*, 1997),
//! made non-interactive with Fiat–Shamir over a domain-separated SHA-512 transcript.
//!
//! **Transcription step.** For an input `(B, C, Y)`, an output `(B', C', Y')` and the
//! transcryptor's published commitments `S = s·G`, `K = k·G` for the domain, the
//! prover knows `s`, `k` and `t = s·r` such that
//!
//! ```text
//! K = k·G   Y' = k·Y   S = s·G   C' = s·C + t·Y   O = k·B' − s·B − t·G   T = t·G
//! ```
//!
//! which holds exactly when the output is the rerandomise-reshuffle-rekey of the input
//! by the committed `s` and `k` with some `r = t/s` (the fifth relation is
//! `B' = (s/k)·(B + r·G)` multiplied through by `k`, so every relation is linear in
//! the witnesses). The proof is `(T, e, z_k, z_s, z_t)`, 160 bytes.
//!
//! **The step rerandomises.** `T = t·G` is published and the verifier refuses
//! `T = identity`. By soundness the same `t` satisfies all six relations, so `t ≠ 0`;
//! `S` is not the identity (commitments are decoded strictly), so `s ≠ 0`, and
//! `r = t/s ≠ 0`. `T` is a uniformly random point independent of the plaintext (`r` is
//! fresh and uniform), and the simulator of the zero-knowledge argument picks it at
//! random, so it tells nothing about `M`.
//!
//! **System-key contribution.** A plain Chaum–Pedersen proof that
//! `log_G X = log_{Y_in} Y_out`.
//!
//! **Transcript.** `e = SHA-512(len‖label ‖ len‖context ‖ enc(2·P₁) ‖ … ‖ enc(2·Pₘ))`
//! reduced mod ℓ, where the points are the statement's points then the prover's
//! commitments, and `enc(2·P)` is the RFC 9496 encoding of `2·P` (a bijection of the
//! prime-order group, computed for all points with one batched inversion by
//! `RistrettoPoint::double_and_compress_batch`).

use curve25519_dalek::constants::{RISTRETTO_BASEPOINT_POINT, RISTRETTO_BASEPOINT_TABLE};
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{MultiscalarMul, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use confiance::pseudonym::{POINT_LEN, PseudonymError, SCALAR_LEN, decode_point, decode_scalar};
use curve25519_dalek::traits::IsIdentity;

use super::push_field;

/// Label of transcription-step proofs.
const STEP_LABEL: &[u8] = b"confiance/transcrypt/step-proof/v1";
/// Label of system-key contribution proofs.
const KEY_LABEL: &[u8] = b"confiance/transcrypt/key-proof/v1";

/// Bytes of an encoded [`StepProof`]: `T ‖ e ‖ z_k ‖ z_s ‖ z_t`.
pub const STEP_PROOF_LEN: usize = POINT_LEN + 4 * SCALAR_LEN;
/// Bytes of an encoded [`KeyProof`].
pub const KEY_PROOF_LEN: usize = 2 * SCALAR_LEN;

fn challenge(label: &[u8], context: &[u8], points: &[RistrettoPoint]) -> Scalar {
    let mut h = Sha512::new();
    let mut head = Vec::with_capacity(16 + label.len() + context.len());
    push_field(&mut head, label);
    push_field(&mut head, context);
    h.update(&head);
    for p in RistrettoPoint::double_and_compress_batch(points) {
        h.update(p.as_bytes());
    }
    Scalar::from_hash(h)
}

/// The points of a step statement, in transcript order.
#[derive(Clone, Copy)]
pub(crate) struct StepStatement<'a> {
    pub k_commit: &'a RistrettoPoint,
    pub s_commit: &'a RistrettoPoint,
    pub input: (&'a RistrettoPoint, &'a RistrettoPoint, &'a RistrettoPoint),
    pub output: (&'a RistrettoPoint, &'a RistrettoPoint, &'a RistrettoPoint),
}

impl StepStatement<'_> {
    fn points(&self, t_public: RistrettoPoint, commitments: [RistrettoPoint; 6]) -> [RistrettoPoint; 15] {
        let (b, c, y) = self.input;
        let (b2, c2, y2) = self.output;
        let [a1, a2, a3, a4, a5, a6] = commitments;
        [*self.k_commit, *self.s_commit, *b, *c, *y, *b2, *c2, *y2, t_public, a1, a2, a3, a4, a5, a6]
    }
}

/// The witnesses of a step: `s`, `k` and `t = s·r`.
pub(crate) struct StepWitness<'a> {
    pub s: &'a Scalar,
    pub k: &'a Scalar,
    pub t: &'a Scalar,
}

/// A proof that one transcription step used the transcryptor's committed factors and
/// rerandomised. Encoded as `T ‖ e ‖ z_k ‖ z_s ‖ z_t`, 160 bytes, decoded strictly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepProof {
    t_public: RistrettoPoint,
    e: Scalar,
    zk: Scalar,
    zs: Scalar,
    zt: Scalar,
}

impl StepProof {
    /// Proves `stmt` with the given nonces `(a_k, a_s, a_t)`, which must be fresh and
    /// secret. Five fixed-base and five variable-base scalar multiplications.
    pub(crate) fn prove(
        context: &[u8],
        stmt: &StepStatement<'_>,
        w: &StepWitness<'_>,
        nonces: &[Scalar; 3],
    ) -> Self {
        let [ak, as_, at] = nonces;
        let (b, c, y) = stmt.input;
        let (b2, _, _) = stmt.output;
        let a1 = RISTRETTO_BASEPOINT_TABLE * ak;
        let a2 = ak * y;
        let a3 = RISTRETTO_BASEPOINT_TABLE * as_;
        let a4 = RistrettoPoint::multiscalar_mul([as_, at], [c, y]);
        let a6 = RISTRETTO_BASEPOINT_TABLE * at;
        let a5 = RistrettoPoint::multiscalar_mul([ak, &-as_], [b2, b]) - a6;
        let t_public = RISTRETTO_BASEPOINT_TABLE * w.t;
        let e = challenge(STEP_LABEL, context, &stmt.points(t_public, [a1, a2, a3, a4, a5, a6]));
        Self { t_public, e, zk: ak + e * w.k, zs: as_ + e * w.s, zt: at + e * w.t }
    }

    /// Whether the step proves it rerandomised: `T = t·G` is not the identity.
    pub(crate) fn rerandomises(&self) -> bool {
        !self.t_public.is_identity()
    }

    /// Checks the proof against `stmt`: recomputes the prover's commitments from the
    /// responses (four fixed-base and ten variable-base products, as variable-time
    /// multiscalar multiplications on public data) and compares the challenge.
    pub(crate) fn verify(&self, context: &[u8], stmt: &StepStatement<'_>) -> bool {
        let (b, c, y) = stmt.input;
        let (b2, c2, y2) = stmt.output;
        let ne = -self.e;
        let g = RISTRETTO_BASEPOINT_POINT;
        let a1 = RistrettoPoint::vartime_double_scalar_mul_basepoint(&ne, stmt.k_commit, &self.zk);
        let a2 = RistrettoPoint::vartime_multiscalar_mul([self.zk, ne], [y, y2]);
        let a3 = RistrettoPoint::vartime_double_scalar_mul_basepoint(&ne, stmt.s_commit, &self.zs);
        let a4 = RistrettoPoint::vartime_multiscalar_mul([self.zs, self.zt, ne], [c, y, c2]);
        let a5 = RistrettoPoint::vartime_multiscalar_mul([self.zk, -self.zs, -self.zt], [b2, b, &g]);
        let a6 = RistrettoPoint::vartime_double_scalar_mul_basepoint(&ne, &self.t_public, &self.zt);
        let e = challenge(STEP_LABEL, context, &stmt.points(self.t_public, [a1, a2, a3, a4, a5, a6]));
        e.ct_eq(&self.e).into()
    }

    /// `T ‖ e ‖ z_k ‖ z_s ‖ z_t`.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; STEP_PROOF_LEN] {
        let mut out = [0u8; STEP_PROOF_LEN];
        out[..POINT_LEN].copy_from_slice(self.t_public.compress().as_bytes());
        for (chunk, s) in
            out[POINT_LEN..].chunks_exact_mut(SCALAR_LEN).zip([self.e, self.zk, self.zs, self.zt])
        {
            chunk.copy_from_slice(s.as_bytes());
        }
        out
    }

    /// Decodes 160 bytes, rejecting non-canonical points and scalars. (`T` may be the
    /// identity here so that the verifier can name the refusal:
    /// [`TranscryptError::NotRerandomised`](super::TranscryptError::NotRerandomised).)
    ///
    /// # Errors
    /// [`PseudonymError::BadLength`], [`PseudonymError::NonCanonicalPoint`] or
    /// [`PseudonymError::NonCanonicalScalar`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PseudonymError> {
        if bytes.len() != STEP_PROOF_LEN {
            return Err(PseudonymError::BadLength);
        }
        let s = &bytes[POINT_LEN..];
        Ok(Self {
            t_public: decode_point(&bytes[..POINT_LEN])?,
            e: decode_scalar(&s[..32])?,
            zk: decode_scalar(&s[32..64])?,
            zs: decode_scalar(&s[64..96])?,
            zt: decode_scalar(&s[96..])?,
        })
    }
}

/// A Chaum–Pedersen proof that a transcryptor multiplied the partial system key by the
/// secret behind its published key share `X = x·G`. Encoded as `e ‖ z`, 64 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyProof {
    e: Scalar,
    z: Scalar,
}

impl KeyProof {
    pub(crate) fn prove(
        context: &[u8],
        x: &Scalar,
        share: &RistrettoPoint,
        y_in: &RistrettoPoint,
        y_out: &RistrettoPoint,
        nonce: &Scalar,
    ) -> Self {
        let a1 = RISTRETTO_BASEPOINT_TABLE * nonce;
        let a2 = nonce * y_in;
        let e = challenge(KEY_LABEL, context, &[*share, *y_in, *y_out, a1, a2]);
        Self { e, z: nonce + e * x }
    }

    pub(crate) fn verify(
        &self,
        context: &[u8],
        share: &RistrettoPoint,
        y_in: &RistrettoPoint,
        y_out: &RistrettoPoint,
    ) -> bool {
        let ne = -self.e;
        let a1 = RistrettoPoint::vartime_double_scalar_mul_basepoint(&ne, share, &self.z);
        let a2 = RistrettoPoint::vartime_multiscalar_mul([self.z, ne], [y_in, y_out]);
        let e = challenge(KEY_LABEL, context, &[*share, *y_in, *y_out, a1, a2]);
        e.ct_eq(&self.e).into()
    }

    /// `e ‖ z`.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; KEY_PROOF_LEN] {
        let mut out = [0u8; KEY_PROOF_LEN];
        out[..32].copy_from_slice(self.e.as_bytes());
        out[32..].copy_from_slice(self.z.as_bytes());
        out
    }

    /// Decodes 64 bytes, rejecting non-canonical scalars.
    ///
    /// # Errors
    /// [`PseudonymError::BadLength`] or [`PseudonymError::NonCanonicalScalar`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PseudonymError> {
        if bytes.len() != KEY_PROOF_LEN {
            return Err(PseudonymError::BadLength);
        }
        Ok(Self { e: decode_scalar(&bytes[..32])?, z: decode_scalar(&bytes[32..])? })
    }
}

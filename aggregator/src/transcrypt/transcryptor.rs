//! Transcryptors: each holds its own secret, derives its per-domain factors from it, and
//! publishes commitments to them.

use core::fmt;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use confiance::pseudonym::{
    Ciphertext, POINT_LEN, PseudonymError, SystemPublicKey, TranscryptionRequest, decode_point,
    decode_scalar, hazmat as eg,
};
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use rand_core::CryptoRng;
use sha2::{Digest, Sha512};
use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::proof::{KeyProof, StepProof, StepStatement, StepWitness};
use super::{ConsentQuery, Domain, Step, TranscryptError, push_field};
use crate::decision::{ConsentCheck, DecisionReason};

/// Label of the system-key share derivation.
const SYSTEM_KEY_LABEL: &[u8] = b"confiance/transcrypt/system-key/v1";
/// Label of pseudonymisation (reshuffle) factor derivation.
const PSEUDONYMISE_LABEL: &[u8] = b"confiance/transcrypt/pseudonymise/v1";
/// Label of rekey factor derivation.
const REKEY_LABEL: &[u8] = b"confiance/transcrypt/rekey/v1";
/// Label of the proof context.
const CONTEXT_LABEL: &[u8] = b"confiance/transcrypt/context/v1";

/// A transcryptor's public name, bound into every proof it makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TranscryptorId(pub u32);

/// A transcryptor's master secret: 32 random bytes, wiped on drop, never printed.
///
/// ```
/// use confiance_aggregator::transcrypt::TranscryptorSecret;
/// assert_eq!(format!("{:?}", TranscryptorSecret::from_bytes([1; 32])), "TranscryptorSecret(..)");
/// ```
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct TranscryptorSecret([u8; 32]);

impl TranscryptorSecret {
    /// A fresh secret.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        Self(b)
    }

    /// A secret from stored bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes, for protected storage.
    #[must_use]
    pub const fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `SHA-512(len‖label ‖ len‖secret ‖ len‖domain)` reduced mod ℓ (wide reduction, so
    /// the result is uniform to within 2⁻²⁵⁹); zero, which has probability 2⁻²⁵², is
    /// replaced by one so that every factor is invertible.
    fn derive(&self, label: &[u8], domain: &[u8]) -> Scalar {
        let mut buf = Vec::with_capacity(64 + label.len() + domain.len());
        push_field(&mut buf, label);
        push_field(&mut buf, &self.0);
        push_field(&mut buf, domain);
        let s = Scalar::from_hash(Sha512::new_with_prefix(&buf));
        buf.zeroize();
        if s == Scalar::ZERO { Scalar::ONE } else { s }
    }
}

impl fmt::Debug for TranscryptorSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TranscryptorSecret(..)")
    }
}

impl ConstantTimeEq for TranscryptorSecret {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

/// A transcryptor's published commitments for one domain: `S = s·G` to its
/// pseudonymisation factor and `K = k·G` to its rekey factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainCommitments {
    /// Who committed.
    pub transcryptor: TranscryptorId,
    /// `S = s·G`.
    pub s_commit: RistrettoPoint,
    /// `K = k·G`.
    pub k_commit: RistrettoPoint,
}

/// Bytes of encoded [`DomainCommitments`]: `id_be(4) ‖ S ‖ K`.
pub const COMMITMENTS_LEN: usize = 4 + 2 * POINT_LEN;

impl DomainCommitments {
    /// `id_be ‖ S ‖ K`, for publication (in the audit log).
    #[must_use]
    pub fn to_bytes(&self) -> [u8; COMMITMENTS_LEN] {
        let mut out = [0u8; COMMITMENTS_LEN];
        out[..4].copy_from_slice(&self.transcryptor.0.to_be_bytes());
        out[4..36].copy_from_slice(self.s_commit.compress().as_bytes());
        out[36..].copy_from_slice(self.k_commit.compress().as_bytes());
        out
    }

    /// Decodes strictly: canonical points, neither the identity.
    ///
    /// # Errors
    /// [`TranscryptError::Encoding`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TranscryptError> {
        if bytes.len() != COMMITMENTS_LEN {
            return Err(PseudonymError::BadLength.into());
        }
        let mut id = [0u8; 4];
        id.copy_from_slice(&bytes[..4]);
        let s_commit = decode_point(&bytes[4..36])?;
        let k_commit = decode_point(&bytes[36..])?;
        if s_commit.is_identity() || k_commit.is_identity() {
            return Err(PseudonymError::IdentityPoint.into());
        }
        Ok(Self { transcryptor: TranscryptorId(u32::from_be_bytes(id)), s_commit, k_commit })
    }
}

/// A transcryptor's share of a recipient's decryption key for one domain, `x_i·k_i`. It
/// goes to the recipient over a confidential channel; the recipient multiplies the
/// shares of all transcryptors ([`super::RecipientKey::from_shares`]).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyShare(pub(crate) Scalar);

impl KeyShare {
    /// The 32-byte scalar, to send to the recipient confidentially.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Decodes a share, rejecting non-canonical scalars and zero.
    ///
    /// # Errors
    /// [`TranscryptError::Encoding`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TranscryptError> {
        let s = decode_scalar(bytes)?;
        if s == Scalar::ZERO {
            return Err(PseudonymError::NonCanonicalScalar.into());
        }
        Ok(Self(s))
    }
}

impl fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyShare(..)")
    }
}

/// One transcryptor: its id, secret, and the share `x_i` of the system secret key.
///
/// ```
/// use confiance::Timestamp;
/// use confiance::consent::DeviceKey;
/// use confiance::ids::{DevicePublicKey, MetricId, PurposeId, ReceiptId, RecipientId, SubjectId};
/// use confiance::pseudonym::{DeviceSecret, TranscryptionRequest};
/// use confiance_aggregator::decision::{ConsentCheck, Decision, DecisionReason, hazmat};
/// use confiance_aggregator::ledger::ReceiptTerms;
/// use confiance_aggregator::transcrypt::*;
/// use rand_core::SeedableRng;
///
/// /// A stand-in for the ledger: one single-device subject, consenting to acme.
/// struct OneSubject(SubjectId);
/// impl ConsentCheck for OneSubject {
///     fn check(&self, _: &RecipientId, _: &MetricId, _: &PurposeId, s: &SubjectId, _: Timestamp) -> Decision {
///         if *s == self.0 { hazmat::allow(None, None) } else { hazmat::deny(DecisionReason::NoConsent) }
///     }
///     fn device_subject(&self, d: &DevicePublicKey, _: Timestamp) -> Option<SubjectId> {
///         Some(SubjectId::of_key(&d.as_subject_key())).filter(|s| *s == self.0)
///     }
///     fn receipt_terms(&self, _: &ReceiptId) -> Option<ReceiptTerms> {
///         let (recipient, purpose) = (RecipientId::new("acme").ok()?, PurposeId::new("service").ok()?);
///         Some(ReceiptTerms { subject: self.0, recipient, purpose })
///     }
/// }
///
/// let mut rng = rand_chacha::ChaCha20Rng::from_seed([9; 32]);
/// let t = Transcryptor::new(TranscryptorId(1), TranscryptorSecret::from_bytes([1; 32]));
/// let (pk, _) = system_public_key(&[&t], &mut rng)?;
///
/// // The device signs its polymorphic pseudonym for acme under its receipt.
/// let device = DeviceKey::from_bytes(&[3; 32]);
/// let subject = SubjectId::of_key(&device.public_key().as_subject_key());
/// let acme = RecipientId::new("acme")?;
/// let request = TranscryptionRequest::sign(
///     &device, &DeviceSecret::from_bytes([2; 32]), &pk, ReceiptId([7; 32]), acme.clone(), None, &mut rng,
/// );
///
/// let domain = Domain::new(acme.clone());
/// let dt = t.for_domain(&domain);
/// let ledger = OneSubject(subject);
/// let query = ConsentQuery {
///     recipient: acme,
///     metric: MetricId::new("car.odometer-km")?,
///     purpose: PurposeId::new("service")?,
///     subject,
///     at: Timestamp::from_secs(1_000),
/// };
/// let step = dt.transcrypt(&request, &[], &[], &ledger, &query, &mut rng)?;
/// verify_chain(request.ciphertext(), &domain, &[step.clone()], &[dt.commitments()])?;
///
/// // The same request again is a replay.
/// let again = dt.transcrypt(&request, &[], &[], &ledger, &query, &mut rng);
/// assert_eq!(again.unwrap_err(), TranscryptError::Replayed);
///
/// let key = RecipientKey::from_shares(&[dt.recipient_key_share()])?;
/// // The recipient checks the chain from the request's ciphertext, then decrypts.
/// let pseudonym = key.open(request.ciphertext(), &domain, &[step.clone()], &[dt.commitments()])?;
/// assert_eq!(Ok(pseudonym), key.decrypt_unverified(&step.output));
/// # let _ = pseudonym;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Transcryptor {
    id: TranscryptorId,
    secret: TranscryptorSecret,
    x: Scalar,
    x_public: RistrettoPoint,
    /// Nonces of the requests transcrypted, shared by every domain's state.
    seen: Seen,
}

/// The request nonces a transcryptor has used (in memory: 32 bytes a request).
type Seen = Arc<Mutex<HashSet<[u8; 32]>>>;

impl fmt::Debug for Transcryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transcryptor").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Drop for Transcryptor {
    fn drop(&mut self) {
        self.x.zeroize();
    }
}

impl Transcryptor {
    /// A transcryptor with its master secret; derives its system-key share
    /// `x_i = H("confiance/transcrypt/system-key/v1", secret)`.
    #[must_use]
    pub fn new(id: TranscryptorId, secret: TranscryptorSecret) -> Self {
        let x = secret.derive(SYSTEM_KEY_LABEL, &[]);
        Self { id, secret, x, x_public: RISTRETTO_BASEPOINT_TABLE * &x, seen: Seen::default() }
    }

    /// Its id.
    #[must_use]
    pub const fn id(&self) -> TranscryptorId {
        self.id
    }

    pub(crate) const fn system_secret(&self) -> &Scalar {
        &self.x
    }

    /// Its published system-key share `X_i = x_i·G`.
    #[must_use]
    pub const fn public_key_share(&self) -> &RistrettoPoint {
        &self.x_public
    }

    fn key_context(&self) -> Vec<u8> {
        let mut ctx = Vec::with_capacity(48);
        push_field(&mut ctx, CONTEXT_LABEL);
        push_field(&mut ctx, &self.id.0.to_be_bytes());
        ctx
    }

    /// Multiplies the partial system key `y_in` by `x_i` and proves it did (Chaum–Pedersen
    /// against [`Transcryptor::public_key_share`]). Starting from `G` and passing the
    /// result along all transcryptors gives the system key `(x₁·…·xₙ)·G`.
    pub fn contribute_system_key<R: CryptoRng + ?Sized>(
        &self,
        y_in: &RistrettoPoint,
        rng: &mut R,
    ) -> (RistrettoPoint, KeyProof) {
        let mut nonce = Scalar::random(rng);
        let out = self.contribute_system_key_with(y_in, &nonce);
        nonce.zeroize();
        out
    }

    pub(crate) fn contribute_system_key_with(
        &self,
        y_in: &RistrettoPoint,
        nonce: &Scalar,
    ) -> (RistrettoPoint, KeyProof) {
        let y_out = self.x * y_in;
        let proof = KeyProof::prove(&self.key_context(), &self.x, &self.x_public, y_in, &y_out, nonce);
        (y_out, proof)
    }

    /// Checks another transcryptor's system-key contribution.
    #[must_use]
    pub fn verify_key_contribution(
        id: TranscryptorId,
        share: &RistrettoPoint,
        y_in: &RistrettoPoint,
        y_out: &RistrettoPoint,
        proof: &KeyProof,
    ) -> bool {
        let mut ctx = Vec::with_capacity(48);
        push_field(&mut ctx, CONTEXT_LABEL);
        push_field(&mut ctx, &id.0.to_be_bytes());
        proof.verify(&ctx, share, y_in, y_out)
    }

    /// The transcryptor's state for `domain`: its factors
    /// `s = H("…/pseudonymise/v1", secret, domain)`, `k = H("…/rekey/v1", secret, domain)`,
    /// `k⁻¹`, and the commitments `S = s·G`, `K = k·G`. Derive once per domain and reuse.
    #[must_use]
    pub fn for_domain(&self, domain: &Domain) -> DomainTranscryptor {
        let enc = domain.encode();
        let s = self.secret.derive(PSEUDONYMISE_LABEL, &enc);
        let k = self.secret.derive(REKEY_LABEL, &enc);
        let mut context = self.key_context();
        push_field(&mut context, &enc);
        DomainTranscryptor {
            domain: domain.clone(),
            context,
            commitments: DomainCommitments {
                transcryptor: self.id,
                s_commit: RISTRETTO_BASEPOINT_TABLE * &s,
                k_commit: RISTRETTO_BASEPOINT_TABLE * &k,
            },
            key_share: self.x * k,
            seen: Arc::clone(&self.seen),
            k_inv: k.invert(),
            s,
            k,
        }
    }
}

/// The proof context of transcryptor `id` in a domain: its id and the domain encoding.
pub(crate) fn step_context(id: TranscryptorId, domain: &Domain) -> Vec<u8> {
    let mut ctx = Vec::with_capacity(96);
    push_field(&mut ctx, CONTEXT_LABEL);
    push_field(&mut ctx, &id.0.to_be_bytes());
    push_field(&mut ctx, &domain.encode());
    ctx
}

/// A transcryptor's secrets for one recipient domain, wiped on drop.
pub struct DomainTranscryptor {
    domain: Domain,
    context: Vec<u8>,
    commitments: DomainCommitments,
    seen: Seen,
    s: Scalar,
    k: Scalar,
    k_inv: Scalar,
    key_share: Scalar,
}

impl fmt::Debug for DomainTranscryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainTranscryptor")
            .field("domain", &self.domain)
            .field("transcryptor", &self.commitments.transcryptor)
            .finish_non_exhaustive()
    }
}

impl Drop for DomainTranscryptor {
    fn drop(&mut self) {
        self.s.zeroize();
        self.k.zeroize();
        self.k_inv.zeroize();
        self.key_share.zeroize();
    }
}

impl DomainTranscryptor {
    /// The domain.
    #[must_use]
    pub const fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The commitments to publish (in the audit log) for this domain.
    #[must_use]
    pub const fn commitments(&self) -> DomainCommitments {
        self.commitments
    }

    /// This transcryptor's share of the domain's decryption key, for the recipient.
    #[must_use]
    pub fn recipient_key_share(&self) -> KeyShare {
        KeyShare(self.key_share)
    }

    /// Transcrypts a device's request into this domain — rerandomise, reshuffle by `s`,
    /// rekey by `k`, with a proof — taking as input the request's ciphertext after the
    /// `prior` steps of the transcryptors before this one in the chain (checked against
    /// their `prior_commitments`). It does so **only if**, in this order:
    ///
    /// 1. `query.recipient`, the request's recipient and epoch are this domain's;
    /// 2. the request's Ed25519 signature verifies under its device key, and its proof
    ///    of plaintext knowledge verifies;
    /// 3. `ledger` says the device key speaks for `query.subject` at `query.at` (a
    ///    delegation in force, or the subject's own key);
    /// 4. the request's receipt is `query.subject`'s, for `query.recipient` and
    ///    `query.purpose`;
    /// 5. `ledger`'s check of `query` allows it at `query.at`;
    /// 6. the `prior` steps verify;
    /// 7. the request's nonce is new to this transcryptor (then it is remembered).
    ///
    /// A refusal changes nothing.
    ///
    /// # Errors
    /// [`TranscryptError::DomainMismatch`], [`TranscryptError::BadSignature`],
    /// [`TranscryptError::BadPlaintextProof`], [`TranscryptError::DeviceNotAuthorised`],
    /// [`TranscryptError::ReceiptMismatch`], [`TranscryptError::ConsentRefused`] (with
    /// the decision's reason, or `Expired` past its `until`), the errors of
    /// [`super::verify_chain`] for `prior`, and [`TranscryptError::Replayed`].
    #[allow(
        clippy::too_many_arguments,
        reason = "the request, the chain so far, the ledger and the query it is asked, the rng"
    )]
    pub fn transcrypt<R: CryptoRng + ?Sized>(
        &self,
        request: &TranscryptionRequest,
        prior: &[Step],
        prior_commitments: &[DomainCommitments],
        ledger: &dyn ConsentCheck,
        query: &ConsentQuery,
        rng: &mut R,
    ) -> Result<Step, TranscryptError> {
        let input = self.admit(request, prior, prior_commitments, ledger, query)?;
        {
            let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !seen.insert(*request.nonce()) {
                return Err(TranscryptError::Replayed);
            }
        }
        let mut r = Scalar::random(rng);
        let mut nonces = [Scalar::random(rng), Scalar::random(rng), Scalar::random(rng)];
        let step = self.transcrypt_with(&input, &r, &nonces);
        r.zeroize();
        nonces.zeroize();
        Ok(step)
    }

    /// Checks 1–6 of [`DomainTranscryptor::transcrypt`]; returns this step's input.
    fn admit(
        &self,
        request: &TranscryptionRequest,
        prior: &[Step],
        prior_commitments: &[DomainCommitments],
        ledger: &dyn ConsentCheck,
        query: &ConsentQuery,
    ) -> Result<Ciphertext, TranscryptError> {
        let recipient = self.domain.recipient();
        if query.recipient != *recipient
            || request.recipient() != recipient
            || request.epoch() != self.domain.epoch()
        {
            return Err(TranscryptError::DomainMismatch);
        }
        request.verify()?;
        if ledger.device_subject(request.device(), query.at) != Some(query.subject) {
            return Err(TranscryptError::DeviceNotAuthorised);
        }
        let terms = ledger.receipt_terms(request.receipt()).ok_or(TranscryptError::ReceiptMismatch)?;
        if terms.subject != query.subject || terms.recipient != *recipient || terms.purpose != query.purpose {
            return Err(TranscryptError::ReceiptMismatch);
        }
        let d = ledger.check(&query.recipient, &query.metric, &query.purpose, &query.subject, query.at);
        if !d.allows_at(query.at) {
            let reason = if d.allowed() && d.reason() == DecisionReason::Allowed {
                DecisionReason::Expired
            } else {
                d.reason()
            };
            return Err(TranscryptError::ConsentRefused(reason));
        }
        if prior.len() != prior_commitments.len() {
            return Err(TranscryptError::ChainMismatch);
        }
        if prior.is_empty() {
            Ok(*request.ciphertext())
        } else {
            super::verify_chain(request.ciphertext(), &self.domain, prior, prior_commitments)
        }
    }

    /// The step with caller-chosen rerandomisation `r` and proof nonces.
    pub(crate) fn transcrypt_with(&self, ct: &Ciphertext, r: &Scalar, nonces: &[Scalar; 3]) -> Step {
        let output = eg::rsk(ct, &self.s, &self.k, &self.k_inv, r);
        let mut t = self.s * r;
        let stmt = StepStatement {
            k_commit: &self.commitments.k_commit,
            s_commit: &self.commitments.s_commit,
            input: ct.points(),
            output: output.points(),
        };
        let proof =
            StepProof::prove(&self.context, &stmt, &StepWitness { s: &self.s, k: &self.k, t: &t }, nonces);
        t.zeroize();
        Step { transcryptor: self.commitments.transcryptor, output, proof }
    }

    pub(crate) const fn factors(&self) -> (&Scalar, &Scalar, &Scalar) {
        (&self.s, &self.k, &self.k_inv)
    }
}

/// The system public key of `transcryptors`, `(x₁·…·xₙ)·G`, built by passing a partial key
/// along the chain, with each contribution's proof (in order). In a deployment each
/// transcryptor runs [`Transcryptor::contribute_system_key`] on its own machine.
///
/// # Errors
/// [`TranscryptError::EmptyChain`] for no transcryptors.
pub fn system_public_key<R: CryptoRng + ?Sized>(
    transcryptors: &[&Transcryptor],
    rng: &mut R,
) -> Result<(SystemPublicKey, Vec<KeyProof>), TranscryptError> {
    if transcryptors.is_empty() {
        return Err(TranscryptError::EmptyChain);
    }
    let mut y = curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
    let mut proofs = Vec::with_capacity(transcryptors.len());
    for t in transcryptors {
        let (next, proof) = t.contribute_system_key(&y, rng);
        y = next;
        proofs.push(proof);
    }
    Ok((SystemPublicKey::from_point(y)?, proofs))
}

//! Consent-gated, distributed, verifiable transcryption of polymorphic pseudonyms
//! (docs/design.md#pseudonyms), after PEP (Verheul and Jacobs 2017) and libpep.
//!
//! A device sends `ElGamal(M, Y)`: its identity point `M` under the system key
//! `Y = (x₁·…·xₙ)·G` ([`system_public_key`]). For a recipient [`Domain`] `D`, each
//! transcryptor `i` derives from its own secret a pseudonymisation factor `s_i` and a
//! rekey factor `k_i` ([`Transcryptor::for_domain`]) and turns the ciphertext into a
//! rerandomised encryption of `s_i·(…)` under `k_i·(…)`
//! ([`DomainTranscryptor::transcrypt`]) **only** for a device's signed
//! [`TranscryptionRequest`](confiance::pseudonym::TranscryptionRequest) addressed to its domain, whose device the ledger says
//! speaks for the subject of the consent query, whose receipt is that subject's for the
//! recipient, whose nonce is fresh, and when the ledger's check allows the query. After all `n` transcryptors, the recipient
//! decrypts with `∏ x_i·k_i` ([`RecipientKey`]) and gets `(∏ s_i)·M`, its
//! [`DomainPseudonym`] of the device — the same whatever `n`, and unlinkable to the
//! device's pseudonym in any other domain as long as one transcryptor keeps its secret
//! (under DDH on Ristretto255).
//!
//! Beyond libpep, every step carries a Chaum–Pedersen proof ([`StepProof`]) that it used
//! the factors the transcryptor committed to for the domain ([`DomainCommitments`]);
//! [`verify_chain`] checks a whole chain. Steps with fixed randomness and the raw factors live in [`hazmat`].

use core::fmt;

use confiance::Timestamp;
use confiance::ids::{MetricId, PurposeId, RecipientId, SubjectId};
use confiance::pseudonym::PseudonymError;

use crate::decision::DecisionReason;

mod chain;
mod domain;
pub mod hazmat;
mod proof;
mod recipient;
mod transcryptor;

pub use chain::{STEP_LEN, Step, transcrypt_chain, verify_chain, verify_step};
pub use domain::Domain;
pub use proof::{KEY_PROOF_LEN, KeyProof, STEP_PROOF_LEN, StepProof};
pub use recipient::{DomainPseudonym, RecipientKey};
pub use transcryptor::{
    COMMITMENTS_LEN, DomainCommitments, DomainTranscryptor, KeyShare, Transcryptor, TranscryptorId,
    TranscryptorSecret, system_public_key,
};

/// Why a transcryption or its verification failed. Every refusal of
/// [`DomainTranscryptor::transcrypt`] changes nothing (no nonce is remembered) and has
/// its own [`code`](TranscryptError::code), which the aggregator logs
/// ([`AuditEvent::TranscryptionRefused`](crate::audit::AuditEvent::TranscryptionRefused)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TranscryptError {
    /// The ledger's consent check refuses the query; the reason is the decision's (or
    /// `Expired` when `at` is past the decision's `until`).
    ConsentRefused(DecisionReason),
    /// The query's recipient, the request's recipient or epoch, or another transcryptor
    /// of the chain, is for another domain.
    DomainMismatch,
    /// No transcryptors, steps or key shares were given.
    EmptyChain,
    /// Steps and commitments do not pair up (count or transcryptor ids differ).
    ChainMismatch,
    /// The proof of step `step` (0-based) does not verify.
    InvalidProof {
        /// Index of the first failing step.
        step: usize,
    },
    /// Step `step` (0-based) does not rerandomise: its published `T = t·G` is the
    /// identity, so `r = 0`.
    NotRerandomised {
        /// Index of the failing step.
        step: usize,
    },
    /// The ciphertext is not under the recipient's domain key.
    WrongKey,
    /// A point, scalar or ciphertext failed strict decoding.
    Encoding(PseudonymError),
    /// The request's Ed25519 signature does not verify under the device key it names
    /// (the ciphertext, receipt, recipient, epoch or nonce was changed after signing).
    BadSignature,
    /// The request's proof of plaintext knowledge does not verify: the device does not
    /// know what it encrypted (a pseudonym sent back in, a scaled or shifted ciphertext).
    BadPlaintextProof,
    /// The request's device key is not delegated, at the query's instant, by the subject
    /// the query names (nor is it that subject's own key).
    DeviceNotAuthorised,
    /// The request's receipt is unknown, or not of the query's subject, recipient and
    /// purpose.
    ReceiptMismatch,
    /// The request's nonce was already used with this transcryptor.
    Replayed,
}

impl TranscryptError {
    /// A stable kebab-case code for logs and the audit log.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::ConsentRefused(_) => "consent-refused",
            Self::DomainMismatch => "domain-mismatch",
            Self::EmptyChain => "empty-chain",
            Self::ChainMismatch => "chain-mismatch",
            Self::InvalidProof { .. } => "invalid-proof",
            Self::NotRerandomised { .. } => "not-rerandomised",
            Self::WrongKey => "wrong-key",
            Self::Encoding(_) => "encoding",
            Self::BadSignature => "bad-signature",
            Self::BadPlaintextProof => "bad-plaintext-proof",
            Self::DeviceNotAuthorised => "device-not-authorised",
            Self::ReceiptMismatch => "receipt-mismatch",
            Self::Replayed => "replayed",
        }
    }
}

impl fmt::Display for TranscryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConsentRefused(r) => write!(f, "transcryption refused by consent decision: {r:?}"),
            Self::DomainMismatch => f.write_str("transcryptor, query or request is for another domain"),
            Self::EmptyChain => f.write_str("empty transcryptor chain"),
            Self::ChainMismatch => f.write_str("steps and commitments do not pair up"),
            Self::InvalidProof { step } => write!(f, "proof of step {step} does not verify"),
            Self::NotRerandomised { step } => write!(f, "step {step} does not rerandomise"),
            Self::WrongKey => f.write_str("ciphertext is not under the recipient's key"),
            Self::Encoding(e) => write!(f, "bad encoding: {e}"),
            Self::BadSignature => f.write_str("request signature does not verify"),
            Self::BadPlaintextProof => f.write_str("request plaintext proof does not verify"),
            Self::DeviceNotAuthorised => f.write_str("device key not delegated by the query's subject"),
            Self::ReceiptMismatch => f.write_str("receipt is not the query's subject, recipient and purpose"),
            Self::Replayed => f.write_str("request nonce already used"),
        }
    }
}

impl std::error::Error for TranscryptError {}

impl From<PseudonymError> for TranscryptError {
    fn from(e: PseudonymError) -> Self {
        match e {
            PseudonymError::BadSignature => Self::BadSignature,
            PseudonymError::BadPlaintextProof => Self::BadPlaintextProof,
            other => Self::Encoding(other),
        }
    }
}

/// The question the consent ledger must answer before a transcryption: may `recipient`
/// receive `metric` about `subject` for `purpose` at `at`? These are the check's inputs:
/// the transcryptor asks the ledger itself, and checks that the request's device speaks
/// for `subject` and is addressed to `recipient`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentQuery {
    /// The recipient (must be the domain's).
    pub recipient: RecipientId,
    /// The metric of the record the pseudonym goes with.
    pub metric: MetricId,
    /// The purpose.
    pub purpose: PurposeId,
    /// The subject as the ledger knows it.
    pub subject: SubjectId,
    /// When.
    pub at: Timestamp,
}

/// Writes `bytes` preceded by its length as a big-endian `u64` (domain separation).
fn push_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

//! Consent-gated, distributed, verifiable transcryption of polymorphic pseudonyms
//! (docs/design.md#pseudonyms), after PEP (Verheul and Jacobs 2017) and libpep.
//!
//! A device sends `ElGamal(M, Y)`: its identity point `M` under the system key
//! `Y = (x₁·…·xₙ)·G` ([`system_public_key`]). For a recipient [`Domain`] `D`, each
//! transcryptor `i` derives from its own secret a pseudonymisation factor `s_i` and a
//! rekey factor `k_i` ([`Transcryptor::for_domain`]) and, **only when the consent
//! ledger's [`Decision`](crate::decision::Decision) allows it**, turns the ciphertext
//! into a rerandomised encryption of `s_i·(…)` under `k_i·(…)`
//! ([`DomainTranscryptor::transcrypt`]). After all `n` transcryptors, the recipient
//! decrypts with `∏ x_i·k_i` ([`RecipientKey`]) and gets `(∏ s_i)·M`, its
//! [`DomainPseudonym`] of the device — the same whatever `n`, and unlinkable to the
//! device's pseudonym in any other domain as long as one transcryptor keeps its secret
//! (under DDH on Ristretto255).
//!
//! Beyond libpep, every step carries a Chaum–Pedersen proof ([`StepProof`]) that it used
//! the factors the transcryptor committed to for the domain ([`DomainCommitments`]);
//! [`verify_chain`] checks a whole chain. Unchecked operations live in [`hazmat`].

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

/// Why a transcryption or its verification failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TranscryptError {
    /// The consent decision does not allow the transcryption; the reason is the
    /// decision's (or `Expired` when the decision's `until` has passed).
    ConsentRefused(DecisionReason),
    /// The query's recipient, or another transcryptor of the chain, is for another domain.
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
    /// The ciphertext is not under the recipient's domain key.
    WrongKey,
    /// A point, scalar or ciphertext failed strict decoding.
    Encoding(PseudonymError),
}

impl fmt::Display for TranscryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConsentRefused(r) => write!(f, "transcryption refused by consent decision: {r:?}"),
            Self::DomainMismatch => f.write_str("transcryptor or query is for another domain"),
            Self::EmptyChain => f.write_str("empty transcryptor chain"),
            Self::ChainMismatch => f.write_str("steps and commitments do not pair up"),
            Self::InvalidProof { step } => write!(f, "proof of step {step} does not verify"),
            Self::WrongKey => f.write_str("ciphertext is not under the recipient's key"),
            Self::Encoding(e) => write!(f, "bad encoding: {e}"),
        }
    }
}

impl std::error::Error for TranscryptError {}

impl From<PseudonymError> for TranscryptError {
    fn from(e: PseudonymError) -> Self {
        Self::Encoding(e)
    }
}

/// The question the consent ledger must answer before a transcryption: may `recipient`
/// receive `metric` about `subject` for `purpose` at `at`?
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

//! Steps, distributed transcryption along a chain of transcryptors, and the chain verifier.

use confiance::pseudonym::{CIPHERTEXT_LEN, Ciphertext, TranscryptionRequest};
use rand_core::CryptoRng;

use super::proof::{STEP_PROOF_LEN, StepProof, StepStatement};
use super::transcryptor::step_context;
use super::{ConsentQuery, Domain, DomainCommitments, DomainTranscryptor, TranscryptError, TranscryptorId};
use crate::decision::ConsentCheck;

/// Bytes of an encoded [`Step`]: `id_be(4) ‖ output(96) ‖ proof(160)`.
pub const STEP_LEN: usize = 4 + CIPHERTEXT_LEN + STEP_PROOF_LEN;

/// One transcryptor's work on a ciphertext: the output and the proof that it came from
/// the input by the transcryptor's committed factors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Who did it.
    pub transcryptor: TranscryptorId,
    /// The transcrypted ciphertext.
    pub output: Ciphertext,
    /// The proof.
    pub proof: StepProof,
}

impl Step {
    /// `id_be ‖ output ‖ proof`, [`STEP_LEN`] bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; STEP_LEN] {
        let mut out = [0u8; STEP_LEN];
        out[..4].copy_from_slice(&self.transcryptor.0.to_be_bytes());
        out[4..4 + CIPHERTEXT_LEN].copy_from_slice(&self.output.to_bytes());
        out[4 + CIPHERTEXT_LEN..].copy_from_slice(&self.proof.to_bytes());
        out
    }

    /// Decodes a step strictly (canonical points and scalars, non-identity key).
    ///
    /// # Errors
    /// [`TranscryptError::Encoding`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TranscryptError> {
        if bytes.len() != STEP_LEN {
            return Err(confiance::pseudonym::PseudonymError::BadLength.into());
        }
        let mut id = [0u8; 4];
        id.copy_from_slice(&bytes[..4]);
        Ok(Self {
            transcryptor: TranscryptorId(u32::from_be_bytes(id)),
            output: Ciphertext::from_bytes(&bytes[4..4 + CIPHERTEXT_LEN])?,
            proof: StepProof::from_bytes(&bytes[4 + CIPHERTEXT_LEN..])?,
        })
    }
}

/// Checks one step: `step` turns `input` into `step.output` with the factors behind
/// `commitments`, in `domain`.
///
/// # Errors
/// [`TranscryptError::ChainMismatch`] when the step is not by the committer;
/// [`TranscryptError::NotRerandomised`] (with `step: 0`) when the step proves `r = 0`;
/// [`TranscryptError::InvalidProof`] (with `step: 0`) when the proof fails.
pub fn verify_step(
    input: &Ciphertext,
    domain: &Domain,
    step: &Step,
    commitments: &DomainCommitments,
) -> Result<(), TranscryptError> {
    if step.transcryptor != commitments.transcryptor {
        return Err(TranscryptError::ChainMismatch);
    }
    if !step.proof.rerandomises() {
        return Err(TranscryptError::NotRerandomised { step: 0 });
    }
    let stmt = StepStatement {
        k_commit: &commitments.k_commit,
        s_commit: &commitments.s_commit,
        input: input.points(),
        output: step.output.points(),
    };
    if step.proof.verify(&step_context(step.transcryptor, domain), &stmt) {
        Ok(())
    } else {
        Err(TranscryptError::InvalidProof { step: 0 })
    }
}

/// Checks a whole chain: step `i` is by the transcryptor of `commitments[i]` and turns
/// the previous output (`input` for the first) into its own. Returns the final output.
///
/// # Errors
/// [`TranscryptError::EmptyChain`]; [`TranscryptError::ChainMismatch`] when the steps
/// and commitments do not pair up; [`TranscryptError::InvalidProof`] or
/// [`TranscryptError::NotRerandomised`] with the index of the first failing step.
pub fn verify_chain(
    input: &Ciphertext,
    domain: &Domain,
    steps: &[Step],
    commitments: &[DomainCommitments],
) -> Result<Ciphertext, TranscryptError> {
    if steps.is_empty() {
        return Err(TranscryptError::EmptyChain);
    }
    if steps.len() != commitments.len() {
        return Err(TranscryptError::ChainMismatch);
    }
    let mut current = *input;
    for (i, (step, com)) in steps.iter().zip(commitments).enumerate() {
        verify_step(&current, domain, step, com).map_err(|e| match e {
            TranscryptError::InvalidProof { .. } => TranscryptError::InvalidProof { step: i },
            TranscryptError::NotRerandomised { .. } => TranscryptError::NotRerandomised { step: i },
            other => other,
        })?;
        current = step.output;
    }
    Ok(current)
}

/// Runs a device's `request` through every transcryptor of `chain` in order (all for the
/// same domain), each checking the request, the ledger and the steps before it
/// ([`DomainTranscryptor::transcrypt`]). Each transcryptor is its own party in a
/// deployment; this runs them in one process, as tests, benches and single-operator
/// setups do.
///
/// # Errors
/// [`TranscryptError::EmptyChain`]; [`TranscryptError::DomainMismatch`] when the
/// transcryptors are for different domains; any refusal of a transcryptor.
pub fn transcrypt_chain<R: CryptoRng + ?Sized>(
    chain: &[&DomainTranscryptor],
    request: &TranscryptionRequest,
    ledger: &dyn ConsentCheck,
    query: &ConsentQuery,
    rng: &mut R,
) -> Result<Vec<Step>, TranscryptError> {
    let Some(first) = chain.first() else { return Err(TranscryptError::EmptyChain) };
    if chain.iter().any(|t| t.domain() != first.domain()) {
        return Err(TranscryptError::DomainMismatch);
    }
    let mut steps: Vec<Step> = Vec::with_capacity(chain.len());
    let mut commitments: Vec<DomainCommitments> = Vec::with_capacity(chain.len());
    for t in chain {
        let step = t.transcrypt(request, &steps, &commitments, ledger, query, rng)?;
        steps.push(step);
        commitments.push(t.commitments());
    }
    Ok(steps)
}

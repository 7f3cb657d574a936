//! The auditor's side: everything checked with the checkpoint public key alone.

use ed25519_dalek::VerifyingKey;

use super::AuditError;
use super::checkpoint::{Checkpoint, SignedCheckpoint, check_origin};
use super::event::LoggedEvent;
use super::log::{ConsistencyProof, InclusionProof};
use super::merkle::{self, Frontier};

/// Verifies checkpoints, proofs and whole exported logs of one log (`origin`), holding
/// only its public key. Every method first verifies the checkpoint signature, so an
/// unsigned or forged checkpoint never vouches for anything.
///
/// ```
/// use confiance::{Timestamp, ids::ReceiptId};
/// use confiance_aggregator::audit::{AuditError, AuditEvent, AuditLog, CheckpointSigner, Verifier};
/// let signer = CheckpointSigner::from_secret_bytes("log", &[1; 32])?;
/// let verifier = Verifier::new("log", signer.verifying_key())?;
/// let mut log = AuditLog::in_memory();
/// for i in 0..5u8 {
///     log.append(&AuditEvent::ConsentGiven { receipt: ReceiptId([i; 32]) })?;
/// }
/// let cp = log.checkpoint(&signer, Timestamp::from_secs(9));
/// let mut export = log.export(5)?;
/// verifier.audit(&cp, &export)?;
/// export[2].event = AuditEvent::ConsentGiven { receipt: ReceiptId([7; 32]) };
/// assert!(matches!(verifier.audit(&cp, &export), Err(AuditError::RootMismatch)));
/// # Ok::<(), AuditError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Verifier {
    origin: String,
    key: VerifyingKey,
}

impl Verifier {
    /// A verifier for the log named `origin` whose checkpoints `key` signs.
    ///
    /// # Errors
    /// [`AuditError::BadOrigin`].
    pub fn new(origin: &str, key: VerifyingKey) -> Result<Self, AuditError> {
        check_origin(origin)?;
        Ok(Self { origin: origin.to_owned(), key })
    }

    /// Checks a checkpoint's origin, key id and Ed25519 signature (strict verification:
    /// no malleable or small-order signatures).
    ///
    /// # Errors
    /// [`AuditError::WrongOrigin`]; [`AuditError::BadSignature`].
    pub fn verify_checkpoint<'c>(&self, cp: &'c SignedCheckpoint) -> Result<&'c Checkpoint, AuditError> {
        let c = cp.checkpoint();
        if c.origin() != self.origin {
            return Err(AuditError::WrongOrigin);
        }
        // A signed note may carry other keys' lines (cosignatures): only the log's counts.
        if !cp.verifies(&self.key) {
            return Err(AuditError::BadSignature);
        }
        Ok(c)
    }

    /// Parses a checkpoint's text form and verifies it.
    ///
    /// # Errors
    /// As [`SignedCheckpoint::from_text`] and [`Verifier::verify_checkpoint`].
    pub fn verify_checkpoint_text(&self, text: &str) -> Result<Checkpoint, AuditError> {
        let cp = SignedCheckpoint::from_text(text)?;
        self.verify_checkpoint(&cp).cloned()
    }

    /// Checks that `event` is in the log `cp` signs: the proof is for `event.seq` in a
    /// tree of `cp`'s size, and RFC 9162 §2.1.3.2 leads from the event's leaf hash to
    /// `cp`'s root.
    ///
    /// # Errors
    /// [`AuditError::InclusionProofInvalid`]; the checkpoint's errors.
    pub fn verify_inclusion(
        &self,
        cp: &SignedCheckpoint,
        event: &LoggedEvent,
        proof: &InclusionProof,
    ) -> Result<(), AuditError> {
        let c = self.verify_checkpoint(cp)?;
        if proof.leaf_index != event.seq || proof.tree_size != c.size() {
            return Err(AuditError::InclusionProofInvalid);
        }
        merkle::verify_inclusion(&event.leaf_hash()?, event.seq, c.size(), &proof.path, c.root())
    }

    /// Checks that the log only grew from `old` to `new` (RFC 9162 §2.1.4.2).
    ///
    /// # Errors
    /// [`AuditError::ConsistencyProofInvalid`]; the checkpoints' errors.
    pub fn verify_consistency(
        &self,
        old: &SignedCheckpoint,
        new: &SignedCheckpoint,
        proof: &ConsistencyProof,
    ) -> Result<(), AuditError> {
        let (o, n) = (self.verify_checkpoint(old)?, self.verify_checkpoint(new)?);
        if proof.old_size != o.size() || proof.new_size != n.size() {
            return Err(AuditError::ConsistencyProofInvalid);
        }
        merkle::verify_consistency(o.size(), n.size(), &proof.path, o.root(), n.root())
    }

    /// A full audit: the export holds exactly `cp`'s number of events, each carrying its
    /// position as sequence number, and the root recomputed from all of them is `cp`'s
    /// root. Any changed, reordered, removed or inserted event fails.
    ///
    /// # Errors
    /// [`AuditError::ExportLength`]; [`AuditError::SequenceMismatch`];
    /// [`AuditError::RootMismatch`]; the checkpoint's errors.
    pub fn audit(&self, cp: &SignedCheckpoint, events: &[LoggedEvent]) -> Result<(), AuditError> {
        let c = self.verify_checkpoint(cp)?;
        let found = events.len() as u64;
        if found != c.size() {
            return Err(AuditError::ExportLength { expected: c.size(), found });
        }
        let mut frontier = Frontier::default();
        let mut scratch = Vec::new();
        for (expected, e) in (0u64..).zip(events) {
            if e.seq != expected {
                return Err(AuditError::SequenceMismatch { expected, found: e.seq });
            }
            frontier.push(e.leaf_hash()?, &mut scratch);
            scratch.clear();
        }
        if frontier.root() == *c.root() { Ok(()) } else { Err(AuditError::RootMismatch) }
    }
}

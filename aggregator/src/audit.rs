//! The tamper-evident audit log (docs/design.md#audit-log): an RFC 9162 Merkle tree over
//! [`AuditEvent`]s, signed checkpoints, inclusion and consistency proofs, and a
//! [`Verifier`] that needs nothing but the checkpoint public key.
//!
//! # What is logged
//!
//! Every consent given or withdrawn, ingest batch summary, release, transcryption, purge,
//! key destruction and catalogue change is one [`AuditEvent`]. Events carry **ids and
//! hashes only — never personal data**: receipt ids, catalogue ids, digests, counts and
//! instants. Erasing a subject's data therefore never requires touching the log, and the
//! log never has to be rewritten, so erasure and tamper evidence do not fight.
//!
//! The leaf of event number `seq` (0-based, the tree index) is the canonical postcard
//! encoding of the pair `(event, seq)` ([`LoggedEvent::leaf_bytes`]); binding the sequence
//! number into the leaf makes a reordered export fail even when two events are equal.
//!
//! # The tree
//!
//! [RFC 9162] §2.1 with SHA-256: the leaf hash is `SHA-256(0x00 || leaf)`, an interior node
//! `SHA-256(0x01 || left || right)`, and the Merkle Tree Hash of `n` leaves splits at the
//! largest power of two below `n`. Inclusion proofs follow §2.1.3 (generation §2.1.3.1,
//! verification §2.1.3.2) and consistency proofs §2.1.4 (§2.1.4.1, §2.1.4.2); see
//! [`merkle`].
//!
//! # Storage: perfect subtrees, written once
//!
//! The store keeps, for every level `l`, the hash of every *complete* aligned subtree:
//! node `(l, i)` covers leaves `[i·2^l, (i+1)·2^l)` and is written exactly once, when its
//! last leaf arrives — it never changes afterwards, so the storage is append-only (about
//! `2n` hashes for `n` leaves; level 0 holds the leaf hashes). In memory the log keeps
//! only the *frontier* (the compact range `[0, n)`: one node per set bit of `n`).
//!
//! - **Append** hashes the leaf and merges it with the frontier like a binary counter:
//!   2 hashes and 2 node writes amortised, `O(log n)` worst case.
//! - **Any past size `m`** is answerable: `MTH(D[0:m])` is the right fold of the perfect
//!   nodes of `m`'s binary decomposition — `popcount(m) ≤ ⌊log₂ m⌋ + 1` reads.
//! - **Proofs** follow the RFC's recursion; every sibling it asks for is a perfect node
//!   (one read) except at most one right-border subtree (a fold of `≤ ⌊log₂ n⌋ + 1`
//!   reads), so an inclusion or consistency proof for any sizes costs `O(log n)` reads.
//! - **Reopen** reads the frontier of the stored size: `O(log n)` reads, same root.
//!
//! Two stores implement [`AuditStore`]: [`MemoryStore`] and [`SqliteStore`] (tables
//! `audit_leaf` and `audit_node`, created if missing, append-only by trigger). A
//! [`SqliteStore`] can borrow a caller's transaction so that an audit event commits or
//! rolls back together with the ingest that caused it (docs/design.md#store); opening the log in
//! each transaction ([`SqliteStore::attach`] + [`AuditLog::open`]) costs the frontier's
//! `O(log n)` reads, so the database stays the only source of truth. With the `postgres`
//! feature, `PgStore` keeps the same tables in PostgreSQL and serializes the appends of
//! every process on the database with an advisory lock (docs/scaling.md).
//!
//! # Checkpoints
//!
//! A [`SignedCheckpoint`] is the statement "log `origin` has `size` leaves with root
//! `root`, as of `timestamp`", signed with Ed25519 (RFC 8032). Its text form is a C2SP
//! [signed note](https://c2sp.org/signed-note) whose text is a C2SP
//! [tlog-checkpoint](https://c2sp.org/tlog-checkpoint) with one extension line:
//!
//! ```text
//! <origin>
//! <size, decimal>
//! <root, standard padded base64 of the 32 bytes>
//! time <timestamp, decimal UTC seconds>
//!
//! — <origin> <base64(key id (4 bytes) || Ed25519 signature (64 bytes))>
//! ```
//!
//! The signature covers the four text lines, each ending in `\n`. The key name is the
//! origin; the key id is the first four bytes of `SHA-256(origin || 0x0A || 0x01 || public
//! key)`, the signed-note rule for Ed25519, so any signed-note verifier given the verifier
//! key `<origin>+<hex key id>+base64(0x01 || public key)` accepts it. Further signature
//! lines (witness cosignatures) are kept and ignored. docs/wire-format.md §9 has a worked
//! example. [`SignedCheckpoint`] serializes (serde) as this text.
//!
//! ```
//! use confiance::Timestamp;
//! use confiance::ids::ReceiptId;
//! use confiance_aggregator::audit::{AuditEvent, AuditLog, CheckpointSigner, Verifier};
//!
//! let signer = CheckpointSigner::from_secret_bytes("example.org/audit", &[7; 32])?;
//! let verifier = Verifier::new("example.org/audit", signer.verifying_key())?;
//!
//! let mut log = AuditLog::in_memory();
//! let at = Timestamp::from_secs(1_700_000_000);
//! log.append(&AuditEvent::ConsentGiven { receipt: ReceiptId([1; 32]) })?;
//! let old = log.checkpoint(&signer, at);
//! log.append(&AuditEvent::ConsentWithdrawn { receipt: ReceiptId([1; 32]), at })?;
//! let new = log.checkpoint(&signer, at);
//!
//! // An auditor holding only the public key:
//! let proof = log.inclusion_proof(1, new.checkpoint().size())?;
//! verifier.verify_inclusion(&new, &log.event(1)?, &proof)?;
//! verifier.verify_consistency(&old, &new, &log.consistency_proof(1, 2)?)?;
//! verifier.audit(&new, &log.export(2)?)?;
//! let parsed = verifier.verify_checkpoint_text(&new.to_text())?;
//! assert_eq!(parsed.root(), &log.root());
//! # Ok::<(), confiance_aggregator::audit::AuditError>(())
//! ```
//!
//! [RFC 9162]: https://www.rfc-editor.org/rfc/rfc9162

use core::fmt;

mod checkpoint;
mod event;
mod facts;
mod log;
pub mod merkle;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;
pub(crate) use sqlite::insert_rows;
mod store;
mod verifier;

pub use checkpoint::{
    Checkpoint, CheckpointSigner, MAX_CHECKPOINT_LEN, MAX_NOTE_SIGNATURES, NoteSignature, SignedCheckpoint,
    note_key_id, open_note, sign_note,
};
pub use event::{AuditEvent, EventKind, LoggedEvent};
pub use facts::{SignedFacts, verify_signed_facts};
pub use log::{AuditLog, ConsistencyProof, InclusionProof};
pub use merkle::Hash;
#[cfg(feature = "postgres")]
pub(crate) use postgres::SCHEMA as PG_SCHEMA;
#[cfg(feature = "postgres")]
pub use postgres::{APPEND_LOCK, MIGRATION_LOCK, PgStore};
pub use sqlite::SqliteStore;
pub use store::{AppendBatch, AuditStore, MemoryStore, NodeRecord};
pub use verifier::Verifier;

/// Everything that can go wrong in the audit log, its stores, proofs and checkpoints.
#[derive(Debug)]
#[non_exhaustive]
pub enum AuditError {
    /// An index or size beyond the log: `index` was asked of a log (or tree) of `size`
    /// leaves, or a proof was asked between sizes that are not `0 < old ≤ new ≤ size`.
    OutOfRange {
        /// The index or size asked for.
        index: u64,
        /// The size it must stay within.
        size: u64,
    },
    /// An inclusion proof does not prove the leaf under the root (RFC 9162 §2.1.3.2 failed),
    /// or its index or size disagree with the event and checkpoint it is checked against.
    InclusionProofInvalid,
    /// A consistency proof does not link the two roots (RFC 9162 §2.1.4.2 failed), or its
    /// sizes disagree with the checkpoints it is checked against.
    ConsistencyProofInvalid,
    /// A checkpoint's Ed25519 signature does not verify under the verifier's key, or it
    /// was made with another key (key id mismatch).
    BadSignature,
    /// A checkpoint names another log than the verifier's.
    WrongOrigin,
    /// An origin is empty, longer than 255 bytes, or has a byte outside printable ASCII
    /// without space (`0x21..=0x7e`).
    BadOrigin,
    /// A checkpoint's text is not in the documented format.
    MalformedCheckpoint,
    /// An exported log does not have the number of events the checkpoint states.
    ExportLength {
        /// The checkpoint's tree size.
        expected: u64,
        /// The number of events in the export.
        found: u64,
    },
    /// An exported event does not carry the sequence number of its position
    /// (an event was reordered, inserted or removed).
    SequenceMismatch {
        /// The position in the export.
        expected: u64,
        /// The sequence number the event carries.
        found: u64,
    },
    /// The root recomputed from an export differs from the signed root: some event was
    /// changed, reordered, removed or inserted.
    RootMismatch,
    /// A stored leaf does not decode as `(AuditEvent, seq)` or does not match its hash, a
    /// node the tree structure requires is missing, or an event failed to encode.
    Corrupt(&'static str),
    /// The SQLite store failed.
    Sqlite(rusqlite::Error),
    /// The PostgreSQL store failed (connection, query, or a concurrent writer's key).
    #[cfg(feature = "postgres")]
    Postgres(::postgres::Error),
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange { index, size } => write!(f, "index or size {index} out of range for {size}"),
            Self::InclusionProofInvalid => f.write_str("inclusion proof does not verify"),
            Self::ConsistencyProofInvalid => f.write_str("consistency proof does not verify"),
            Self::BadSignature => f.write_str("checkpoint signature does not verify"),
            Self::WrongOrigin => f.write_str("checkpoint is for another log"),
            Self::BadOrigin => f.write_str("log origin must be 1..=255 bytes of printable ASCII, no space"),
            Self::MalformedCheckpoint => f.write_str("malformed checkpoint text"),
            Self::ExportLength { expected, found } => {
                write!(f, "export has {found} events, checkpoint says {expected}")
            }
            Self::SequenceMismatch { expected, found } => {
                write!(f, "event at position {expected} carries sequence number {found}")
            }
            Self::RootMismatch => f.write_str("recomputed root differs from the signed root"),
            Self::Corrupt(what) => write!(f, "audit store is corrupt: {what}"),
            Self::Sqlite(e) => write!(f, "audit store: {e}"),
            #[cfg(feature = "postgres")]
            Self::Postgres(e) => write!(f, "audit store: {e}"),
        }
    }
}

impl std::error::Error for AuditError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Sqlite(e) => Some(e),
            #[cfg(feature = "postgres")]
            Self::Postgres(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(feature = "postgres")]
impl From<::postgres::Error> for AuditError {
    fn from(e: ::postgres::Error) -> Self {
        Self::Postgres(e)
    }
}

impl From<rusqlite::Error> for AuditError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

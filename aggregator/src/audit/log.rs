//! The log itself: append, roots at any size, proofs, checkpoints, export.

use core::ops::Range;
use std::borrow::Borrow;

use confiance::Timestamp;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::AuditError;
use super::checkpoint::{CheckpointSigner, SignedCheckpoint};
use super::event::{AuditEvent, LoggedEvent, encode_leaf};
use super::merkle::{self, Frontier, Hash};
use super::sqlite::SqliteStore;
use super::store::{AppendBatch, AuditStore, MemoryStore, Nodes};

/// An RFC 9162 §2.1.3 inclusion proof: the audit path of leaf `leaf_index` in the tree of
/// `tree_size` leaves, deepest sibling first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The leaf's index (the event's sequence number).
    pub leaf_index: u64,
    /// The size of the tree the proof is for.
    pub tree_size: u64,
    /// Sibling hashes, leaf to root.
    pub path: Vec<Hash>,
}

/// An RFC 9162 §2.1.4 consistency proof between the trees of `old_size` and `new_size`
/// leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The older (smaller) tree size.
    pub old_size: u64,
    /// The newer tree size.
    pub new_size: u64,
    /// The proof's hashes, in RFC order.
    pub path: Vec<Hash>,
}

/// The audit log: an append-only RFC 9162 Merkle tree over [`AuditEvent`]s on an
/// [`AuditStore`]. See the [module docs](super) for the storage layout and costs.
///
/// ```
/// use confiance::Timestamp;
/// use confiance_aggregator::audit::{AuditEvent, AuditLog};
/// let mut log = AuditLog::in_memory();
/// let at = Timestamp::from_secs(1);
/// let seqs = log.append_batch(&[
///     AuditEvent::Purge { partitions: 3, records: 0, at },
///     AuditEvent::KeyDestruction { key_id: [4; 32], at },
/// ])?;
/// assert_eq!(seqs, 0..2);
/// let root_1 = log.root_at(1)?;
/// assert_eq!(log.consistency_proof(1, 2)?.path.len(), 1);
/// assert_ne!(root_1, log.root());
/// # Ok::<(), confiance_aggregator::audit::AuditError>(())
/// ```
#[derive(Debug)]
pub struct AuditLog<S> {
    store: S,
    frontier: Frontier,
}

impl AuditLog<MemoryStore> {
    /// An empty log in memory.
    #[must_use]
    pub fn in_memory() -> Self {
        Self { store: MemoryStore::default(), frontier: Frontier::default() }
    }
}

impl<C: Borrow<Connection>> AuditLog<SqliteStore<C>> {
    /// Opens the log kept in `conn`, creating its tables if missing
    /// ([`SqliteStore::open`] then [`AuditLog::open`]).
    ///
    /// # Errors
    /// As those two.
    pub fn open_sqlite(conn: C) -> Result<Self, AuditError> {
        Self::open(SqliteStore::open(conn)?)
    }
}

impl<S: AuditStore> AuditLog<S> {
    /// Opens the log in `store`: reads its size and its frontier (`O(log n)` reads).
    ///
    /// # Errors
    /// Storage failures; [`AuditError::Corrupt`] when a frontier node is missing.
    pub fn open(store: S) -> Result<Self, AuditError> {
        let size = store.len()?;
        let frontier = Frontier::load(&Nodes(&store), size)?;
        Ok(Self { store, frontier })
    }

    /// The store.
    pub const fn store(&self) -> &S {
        &self.store
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// The number of events.
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The current root, `MTH(D[0:size])`.
    #[must_use]
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The root the log had at `size` events (`O(log n)` reads).
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] when `size` is beyond the log; storage failures.
    pub fn root_at(&self, size: u64) -> Result<Hash, AuditError> {
        self.check_size(size)?;
        merkle::range_hash(&Nodes(&self.store), 0, size)
    }

    /// Appends one event; returns its sequence number.
    ///
    /// # Errors
    /// Storage failures (then the log is unchanged).
    pub fn append(&mut self, event: &AuditEvent) -> Result<u64, AuditError> {
        self.append_batch(core::slice::from_ref(event)).map(|r| r.start)
    }

    /// Appends events in one atomic store write; returns their sequence numbers.
    ///
    /// # Errors
    /// Storage failures (then the log is unchanged).
    pub fn append_batch<'e, I>(&mut self, events: I) -> Result<Range<u64>, AuditError>
    where
        I: IntoIterator<Item = &'e AuditEvent>,
    {
        let first = self.size();
        let mut frontier = self.frontier.clone();
        let mut nodes = Vec::new();
        let mut leaves = Vec::new();
        for event in events {
            let bytes = encode_leaf(event, frontier.size())?;
            let h = merkle::leaf_hash(&bytes);
            frontier.push(h, &mut nodes);
            leaves.push((h, bytes));
        }
        self.store.append(&AppendBatch { first, leaves, nodes })?;
        self.frontier = frontier;
        Ok(first..self.size())
    }

    /// Event `seq`, decoded from its stored leaf and checked against its stored hash.
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] past the end; [`AuditError::Corrupt`] when the stored
    /// leaf does not decode, carries another sequence number or has another hash.
    pub fn event(&self, seq: u64) -> Result<LoggedEvent, AuditError> {
        self.check_index(seq, self.size())?;
        let bytes = self.store.leaf(seq)?;
        let e = LoggedEvent::from_leaf_bytes(&bytes)?;
        if e.seq != seq || merkle::leaf_hash(&bytes) != self.store.node(0, seq)? {
            return Err(AuditError::Corrupt("stored leaf disagrees with its position or hash"));
        }
        Ok(e)
    }

    /// The first `size` events, for an auditor ([`Verifier::audit`](super::Verifier::audit)).
    ///
    /// # Errors
    /// As [`AuditLog::event`].
    pub fn export(&self, size: u64) -> Result<Vec<LoggedEvent>, AuditError> {
        self.check_size(size)?;
        (0..size).map(|seq| self.event(seq)).collect()
    }

    /// Recomputes every stored node — each complete subtree's hash, level by level — from
    /// the stored leaf hashes and compares it with the store. [`Verifier::audit`] checks
    /// the events against a root, which reads only the nodes on the root's path; a node
    /// below them can be rewritten without changing an event or the root, and the
    /// inclusion and consistency proofs served through it then fail. `O(n)` reads and
    /// `32 n` bytes.
    ///
    /// [`Verifier::audit`]: super::Verifier::audit
    ///
    /// ```
    /// use confiance_aggregator::audit::{AuditEvent, AuditLog};
    /// let mut log = AuditLog::in_memory();
    /// log.append(&AuditEvent::CatalogueChange { digest: [1; 32], at: confiance::Timestamp::EPOCH })?;
    /// log.check_nodes()?;
    /// # Ok::<(), confiance_aggregator::audit::AuditError>(())
    /// ```
    ///
    /// # Errors
    /// [`AuditError::Corrupt`] when a stored node disagrees with the leaves or is
    /// missing; storage failures.
    pub fn check_nodes(&self) -> Result<(), AuditError> {
        let mut level: Vec<Hash> =
            (0..self.size()).map(|i| self.store.node(0, i)).collect::<Result<_, _>>()?;
        let mut height = 0u32;
        while level.len() >= 2 {
            height += 1;
            level = level.chunks_exact(2).map(|p| merkle::node_hash(&p[0], &p[1])).collect();
            for (i, h) in (0u64..).zip(&level) {
                if self.store.node(height, i)? != *h {
                    return Err(AuditError::Corrupt("a stored tree node disagrees with the leaves"));
                }
            }
        }
        Ok(())
    }

    /// The inclusion proof of event `seq` in the tree of `tree_size` events
    /// (RFC 9162 §2.1.3.1; `O(log n)` reads).
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] unless `seq < tree_size ≤ size`; storage failures.
    pub fn inclusion_proof(&self, seq: u64, tree_size: u64) -> Result<InclusionProof, AuditError> {
        self.check_size(tree_size)?;
        self.check_index(seq, tree_size)?;
        let path = merkle::inclusion_path(&Nodes(&self.store), seq, tree_size)?;
        Ok(InclusionProof { leaf_index: seq, tree_size, path })
    }

    /// The consistency proof from `old_size` to `new_size` events
    /// (RFC 9162 §2.1.4.1; `O(log n)` reads).
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] unless `0 < old_size ≤ new_size ≤ size` (RFC 9162
    /// §2.1.4 defines no proof from the empty tree); storage failures.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<ConsistencyProof, AuditError> {
        self.check_size(new_size)?;
        if old_size == 0 || old_size > new_size {
            return Err(AuditError::OutOfRange { index: old_size, size: new_size });
        }
        let path = merkle::consistency_path(&Nodes(&self.store), old_size, new_size)?;
        Ok(ConsistencyProof { old_size, new_size, path })
    }

    /// Signs a checkpoint of the current size and root.
    #[must_use]
    pub fn checkpoint(&self, signer: &CheckpointSigner, timestamp: Timestamp) -> SignedCheckpoint {
        signer.sign(self.size(), self.root(), timestamp)
    }

    const fn check_size(&self, size: u64) -> Result<(), AuditError> {
        if size > self.size() {
            return Err(AuditError::OutOfRange { index: size, size: self.size() });
        }
        Ok(())
    }

    const fn check_index(&self, index: u64, size: u64) -> Result<(), AuditError> {
        if index >= size {
            return Err(AuditError::OutOfRange { index, size });
        }
        Ok(())
    }
}

//! Append-only storage for the log: leaves and perfect-subtree hashes.

use super::AuditError;
use super::event::{EventKind, LoggedEvent};
use super::merkle::{Hash, NodeSource};

/// A node written by an append, at `level ≥ 1`: the hash of leaves
/// `[index·2^level, (index+1)·2^level)`. Level 0 (the leaf hashes) travels with the leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    /// Height above the leaves (≥ 1).
    pub level: u32,
    /// Position within the level.
    pub index: u64,
    /// The subtree's hash.
    pub hash: Hash,
}

/// Everything one append writes: consecutive leaves starting at `first`, and the interior
/// nodes they complete. A store must write all of it or none of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppendBatch {
    /// The index of the first leaf (the store's size before the append).
    pub first: u64,
    /// `(leaf hash, leaf bytes)` in order.
    pub leaves: Vec<(Hash, Vec<u8>)>,
    /// Interior nodes completed by these leaves.
    pub nodes: Vec<NodeRecord>,
}

/// Append-only storage behind an [`AuditLog`](super::AuditLog).
///
/// Nothing is ever updated or deleted: a stored node is the hash of a complete subtree and
/// never changes (see the [module docs](super)).
pub trait AuditStore {
    /// The number of leaves stored.
    ///
    /// # Errors
    /// Storage failures.
    fn len(&self) -> Result<u64, AuditError>;

    /// Whether no leaf is stored.
    ///
    /// # Errors
    /// Storage failures.
    fn is_empty(&self) -> Result<bool, AuditError> {
        Ok(self.len()? == 0)
    }

    /// The hash of the complete subtree `(level, index)`; level 0 is leaf `index`'s hash.
    ///
    /// # Errors
    /// [`AuditError::Corrupt`] when it is not stored; storage failures.
    fn node(&self, level: u32, index: u64) -> Result<Hash, AuditError>;

    /// The bytes of leaf `index`.
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] past the end; storage failures.
    fn leaf(&self, index: u64) -> Result<Vec<u8>, AuditError>;

    /// Writes `batch` atomically.
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] when `batch.first` is not the current size; storage
    /// failures (then nothing was written).
    fn append(&mut self, batch: &AppendBatch) -> Result<(), AuditError>;

    /// Every event of one of `kinds`, oldest first. This default decodes the leaves one
    /// by one; database stores filter on the leaf's first byte
    /// ([`EventKind::leaf_tag`]) so only the matching leaves are copied out. Hashes are
    /// not re-checked here (that is [`AuditLog::event`](super::AuditLog::event)'s and the
    /// verifier's job).
    ///
    /// # Errors
    /// Storage failures; [`AuditError::Corrupt`] for a leaf that does not decode or
    /// carries another sequence number than its position.
    fn events_of_kind(&self, kinds: &[EventKind]) -> Result<Vec<LoggedEvent>, AuditError> {
        let mut out = Vec::new();
        for seq in 0..self.len()? {
            if let Some(e) = matching_leaf(&self.leaf(seq)?, seq, kinds)? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// The newest event of one of `kinds`, if any (a backward walk that stops at the
    /// first match).
    ///
    /// # Errors
    /// As [`Self::events_of_kind`].
    fn last_of_kind(&self, kinds: &[EventKind]) -> Result<Option<LoggedEvent>, AuditError> {
        for seq in (0..self.len()?).rev() {
            if let Some(e) = matching_leaf(&self.leaf(seq)?, seq, kinds)? {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }
}

/// Leaf `seq` decoded when its kind is one of `kinds`.
pub(crate) fn matching_leaf(
    leaf: &[u8],
    seq: u64,
    kinds: &[EventKind],
) -> Result<Option<LoggedEvent>, AuditError> {
    let Some(tag) = leaf.first() else { return Err(AuditError::Corrupt("empty leaf")) };
    if !kinds.iter().any(|k| k.leaf_tag() == *tag) {
        return Ok(None);
    }
    let e = LoggedEvent::from_leaf_bytes(leaf)?;
    if e.seq != seq {
        return Err(AuditError::Corrupt("stored leaf disagrees with its position"));
    }
    Ok(Some(e))
}

/// A boxed store is a store: what [`crate::store::Store::audit_store`] hands out, whatever
/// the backend.
impl<S: AuditStore + ?Sized> AuditStore for Box<S> {
    fn len(&self) -> Result<u64, AuditError> {
        (**self).len()
    }

    fn node(&self, level: u32, index: u64) -> Result<Hash, AuditError> {
        (**self).node(level, index)
    }

    fn leaf(&self, index: u64) -> Result<Vec<u8>, AuditError> {
        (**self).leaf(index)
    }

    fn append(&mut self, batch: &AppendBatch) -> Result<(), AuditError> {
        (**self).append(batch)
    }

    fn events_of_kind(&self, kinds: &[EventKind]) -> Result<Vec<LoggedEvent>, AuditError> {
        (**self).events_of_kind(kinds)
    }

    fn last_of_kind(&self, kinds: &[EventKind]) -> Result<Option<LoggedEvent>, AuditError> {
        (**self).last_of_kind(kinds)
    }
}

pub(crate) struct Nodes<'a, S: ?Sized>(pub(crate) &'a S);

impl<S: AuditStore + ?Sized> NodeSource for Nodes<'_, S> {
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, AuditError> {
        self.0.node(level, index)
    }
}

/// An in-memory [`AuditStore`]: one vector of hashes per level, leaf bytes in one buffer.
/// About `2 × 32` bytes of hashes plus the leaf bytes and 8 bytes of offset per event.
///
/// ```
/// use confiance_aggregator::audit::{AuditLog, AuditStore, MemoryStore};
/// let log = AuditLog::open(MemoryStore::default())?;
/// assert_eq!(log.store().len()?, 0);
/// # Ok::<(), confiance_aggregator::audit::AuditError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    levels: Vec<Vec<Hash>>,
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl MemoryStore {
    /// Reserves room for `additional` more leaves.
    pub fn reserve(&mut self, additional: usize) {
        self.ends.reserve(additional);
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        for (l, level) in self.levels.iter_mut().enumerate() {
            level.reserve(additional >> l);
        }
    }
}

impl AuditStore for MemoryStore {
    fn len(&self) -> Result<u64, AuditError> {
        Ok(self.ends.len() as u64)
    }

    fn node(&self, level: u32, index: u64) -> Result<Hash, AuditError> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or(AuditError::Corrupt("node missing from the store"))
    }

    fn leaf(&self, index: u64) -> Result<Vec<u8>, AuditError> {
        let size = self.ends.len() as u64;
        let i = usize::try_from(index).map_err(|_| AuditError::OutOfRange { index, size })?;
        let end = *self.ends.get(i).ok_or(AuditError::OutOfRange { index, size })?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Ok(self.data[start..end].to_vec())
    }

    fn append(&mut self, batch: &AppendBatch) -> Result<(), AuditError> {
        let size = self.ends.len() as u64;
        if batch.first != size {
            return Err(AuditError::OutOfRange { index: batch.first, size });
        }
        // Check every node lands at the end of its level before writing anything.
        let mut want: Vec<u64> = self.levels.iter().map(|l| l.len() as u64).collect();
        if want.is_empty() {
            want.push(0);
        }
        for n in &batch.nodes {
            let l = n.level as usize;
            if n.level == 0 || l > want.len() {
                return Err(AuditError::Corrupt("node out of order"));
            }
            if l == want.len() {
                want.push(0);
            }
            if want[l] != n.index {
                return Err(AuditError::Corrupt("node out of order"));
            }
            want[l] += 1;
        }
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        for (h, bytes) in &batch.leaves {
            self.levels[0].push(*h);
            self.data.extend_from_slice(bytes);
            self.ends.push(self.data.len());
        }
        for n in &batch.nodes {
            let l = n.level as usize;
            if l == self.levels.len() {
                self.levels.push(Vec::new());
            }
            self.levels[l].push(n.hash);
        }
        Ok(())
    }
}

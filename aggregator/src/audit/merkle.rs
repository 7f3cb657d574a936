//! RFC 9162 §2.1 Merkle Tree Hash with SHA-256, and the proof verification algorithms of
//! §2.1.3.2 (inclusion) and §2.1.4.2 (consistency).
//!
//! These functions need no log and no key: they are what any auditor runs.
//!
//! ```
//! use confiance_aggregator::audit::merkle::{leaf_hash, node_hash, verify_inclusion};
//! let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
//! let root = node_hash(&a, &b);
//! assert!(verify_inclusion(&b, 1, 2, &[a], &root).is_ok());
//! assert!(verify_inclusion(&a, 1, 2, &[b], &root).is_err());
//! ```

use sha2::{Digest, Sha256};

use super::AuditError;
use super::store::NodeRecord;

/// A SHA-256 hash: a leaf hash, a node hash or a root.
pub type Hash = [u8; 32];

/// The root of the empty tree: `SHA-256("")` (RFC 9162 §2.1.1).
#[must_use]
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The hash of a leaf: `SHA-256(0x00 || data)` (RFC 9162 §2.1.1).
#[must_use]
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)` (RFC 9162 §2.1.1).
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n`; `n ≥ 2` (the RFC's `k`).
pub(crate) const fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Verifies that `leaf` is leaf `index` of the tree of `size` leaves with root `root`:
/// the algorithm of RFC 9162 §2.1.3.2, step by step.
///
/// # Errors
/// [`AuditError::InclusionProofInvalid`] when `index ≥ size` or the path does not
/// lead to `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), AuditError> {
    if index >= size {
        return Err(AuditError::InclusionProofInvalid);
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if sn == 0 {
            return Err(AuditError::InclusionProofInvalid);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn == 0 && r == *root { Ok(()) } else { Err(AuditError::InclusionProofInvalid) }
}

/// Verifies that the tree of `size2` leaves with root `root2` extends the tree of `size1`
/// leaves with root `root1`: the algorithm of RFC 9162 §2.1.4.2, step by step, for
/// `0 < size1 < size2`. The cases the algorithm leaves out follow §2.1.4.1: between equal
/// sizes the proof is empty and the roots are equal; from the empty tree the proof is
/// empty; a tree never shrinks.
///
/// # Errors
/// [`AuditError::ConsistencyProofInvalid`] when the proof does not link the two roots.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    path: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), AuditError> {
    let bad = Err(AuditError::ConsistencyProofInvalid);
    if size1 > size2 {
        return bad;
    }
    if size1 == size2 {
        return if path.is_empty() && root1 == root2 { Ok(()) } else { bad };
    }
    if size1 == 0 {
        return if path.is_empty() { Ok(()) } else { bad };
    }
    // Step 1: an empty path fails. Step 2: a power-of-two first tree is its own first node.
    let Some((first, rest)) = path.split_first() else { return bad };
    let (start, rest) = if size1.is_power_of_two() { (root1, path) } else { (first, rest) };
    // Steps 3–4.
    let (mut fn_, mut sn) = (size1 - 1, size2 - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Steps 5–6.
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if sn == 0 {
            return bad;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 7.
    if fr == *root1 && sr == *root2 && sn == 0 { Ok(()) } else { bad }
}

/// Read access to stored perfect subtrees: node `(level, index)` covers leaves
/// `[index·2^level, (index+1)·2^level)` and exists once all of them are in the log.
pub(crate) trait NodeSource {
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, AuditError>;
}

/// `MTH(D[start : start + len])` where `start` is a multiple of the smallest power of two
/// `≥ len` — true of every subtree the RFC's recursions visit. Such a range is the right
/// fold of the perfect subtrees of `len`'s binary decomposition: `popcount(len)` reads.
pub(crate) fn range_hash<S: NodeSource + ?Sized>(src: &S, start: u64, len: u64) -> Result<Hash, AuditError> {
    if len == 0 {
        return Ok(empty_root());
    }
    let mut acc: Option<Hash> = None;
    let mut rest = len;
    while rest != 0 {
        let level = rest.trailing_zeros();
        rest &= rest - 1;
        // The piece of size 2^level sits after all larger pieces.
        let pos = start + rest;
        let h = src.perfect(level, pos >> level)?;
        acc = Some(match acc {
            None => h,
            Some(right) => node_hash(&h, &right),
        });
    }
    Ok(acc.unwrap_or_else(empty_root))
}

/// The inclusion path of leaf `index` in the tree of `size` leaves, RFC 9162 §2.1.3.1
/// (`PATH(m, D[n])`) unrolled top-down. At most one sibling is a right-border subtree
/// (once the path turns left it stays inside a perfect subtree): `O(log n)` reads.
pub(crate) fn inclusion_path<S: NodeSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, AuditError> {
    let (mut lo, mut m, mut n) = (0u64, index, size);
    let mut path = Vec::with_capacity(64 - size.leading_zeros() as usize);
    while n > 1 {
        let k = split(n);
        if m < k {
            path.push(range_hash(src, lo + k, n - k)?);
            n = k;
        } else {
            path.push(range_hash(src, lo, k)?);
            lo += k;
            m -= k;
            n -= k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The consistency path from `old` to `new` leaves, RFC 9162 §2.1.4.1
/// (`SUBPROOF(m, D[n], true)`) unrolled top-down; empty when `old == new`.
///
/// RFC 9162 §2.1.4 defines a consistency proof for `0 < old ≤ new` only: a proof from the
/// empty tree is refused rather than answered with an empty path a client could take for
/// a proof.
pub(crate) fn consistency_path<S: NodeSource + ?Sized>(
    src: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, AuditError> {
    if old == 0 || old > new {
        return Err(AuditError::OutOfRange { index: old, size: new });
    }
    if old == new {
        return Ok(Vec::new());
    }
    let (mut lo, mut m, mut n, mut complete) = (0u64, old, new, true);
    let mut path = Vec::with_capacity(2 * (64 - new.leading_zeros() as usize));
    loop {
        if m == n {
            if !complete {
                path.push(range_hash(src, lo, n)?);
            }
            break;
        }
        let k = split(n);
        if m <= k {
            path.push(range_hash(src, lo + k, n - k)?);
            n = k;
        } else {
            path.push(range_hash(src, lo, k)?);
            lo += k;
            m -= k;
            n -= k;
            complete = false;
        }
    }
    path.reverse();
    Ok(path)
}

/// The compact range `[0, size)`: the perfect subtrees of `size`'s binary decomposition,
/// largest (leftmost) first. Enough to append and to compute the current root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Frontier {
    size: u64,
    stack: Vec<Hash>,
}

impl Frontier {
    /// Loads the frontier of a tree of `size` leaves: `popcount(size)` reads.
    pub(crate) fn load<S: NodeSource + ?Sized>(src: &S, size: u64) -> Result<Self, AuditError> {
        let mut stack = Vec::with_capacity(size.count_ones() as usize);
        let mut pos = 0u64;
        for level in (0..64u32).rev() {
            if size >> level & 1 == 1 {
                stack.push(src.perfect(level, pos >> level)?);
                pos += 1 << level;
            }
        }
        Ok(Self { size, stack })
    }

    /// The number of leaves.
    pub(crate) const fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; every interior node it completes goes to `out`.
    /// Like incrementing a binary counter: each carry merges two equal subtrees.
    pub(crate) fn push(&mut self, leaf: Hash, out: &mut Vec<NodeRecord>) {
        let mut carry = leaf;
        let mut index = self.size;
        let mut level = 0u32;
        while index & 1 == 1 {
            // The stack holds one node per set bit of `size`, so this never runs dry.
            let Some(left) = self.stack.pop() else { break };
            carry = node_hash(&left, &carry);
            index >>= 1;
            level += 1;
            out.push(NodeRecord { level, index, hash: carry });
        }
        self.stack.push(carry);
        self.size += 1;
    }

    /// `MTH(D[0:size])`.
    pub(crate) fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(last) = it.next() else { return empty_root() };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// A Merkle tree over raw leaf bytes, in memory: the same storage layout and proof
/// algorithms as the audit log, without events or a store. For test vectors and tools.
///
/// ```
/// use confiance_aggregator::audit::merkle::{MerkleTree, verify_consistency};
/// let mut t = MerkleTree::default();
/// for d in [&b"a"[..], b"b", b"c"] {
///     t.push(d);
/// }
/// let proof = t.consistency_path(2, 3)?;
/// assert!(verify_consistency(2, 3, &proof, &t.root_at(2)?, &t.root()).is_ok());
/// # Ok::<(), confiance_aggregator::audit::AuditError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl NodeSource for MerkleTree {
    fn perfect(&self, level: u32, index: u64) -> Result<Hash, AuditError> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or(AuditError::Corrupt("node missing"))
    }
}

impl MerkleTree {
    /// Appends a leaf's bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.push_hash(leaf_hash(data));
    }

    /// Appends a leaf by its leaf hash.
    pub fn push_hash(&mut self, leaf: Hash) {
        let mut out = Vec::new();
        self.frontier.push(leaf, &mut out);
        for n in core::iter::once(NodeRecord { level: 0, index: 0, hash: leaf }).chain(out) {
            let l = n.level as usize;
            if l == self.levels.len() {
                self.levels.push(Vec::new());
            }
            self.levels[l].push(n.hash);
        }
    }

    /// The number of leaves.
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The current root.
    #[must_use]
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// `MTH(D[0:size])` for a past size.
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] beyond the tree.
    pub fn root_at(&self, size: u64) -> Result<Hash, AuditError> {
        if size > self.size() {
            return Err(AuditError::OutOfRange { index: size, size: self.size() });
        }
        range_hash(self, 0, size)
    }

    /// The inclusion path of leaf `index` in the tree of `size` leaves (RFC 9162 §2.1.3.1).
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] unless `index < size ≤ self.size()`.
    pub fn inclusion_path(&self, index: u64, size: u64) -> Result<Vec<Hash>, AuditError> {
        if size > self.size() || index >= size {
            return Err(AuditError::OutOfRange { index, size: size.min(self.size()) });
        }
        inclusion_path(self, index, size)
    }

    /// The consistency path from `old` to `new` leaves (RFC 9162 §2.1.4.1).
    ///
    /// # Errors
    /// [`AuditError::OutOfRange`] unless `0 < old ≤ new ≤ self.size()`.
    pub fn consistency_path(&self, old: u64, new: u64) -> Result<Vec<Hash>, AuditError> {
        if new > self.size() || old > new {
            return Err(AuditError::OutOfRange { index: old, size: new.min(self.size()) });
        }
        consistency_path(self, old, new)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    struct Flat(Vec<Vec<Hash>>);
    impl NodeSource for Flat {
        fn perfect(&self, level: u32, index: u64) -> Result<Hash, AuditError> {
            self.0
                .get(level as usize)
                .and_then(|l| l.get(index as usize))
                .copied()
                .ok_or(AuditError::Corrupt("missing node"))
        }
    }

    fn naive_mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&naive_mth(&leaves[..k]), &naive_mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn frontier_and_stored_nodes_agree_with_naive_mth_for_every_size() {
        let mut f = Frontier::default();
        let mut levels: Vec<Vec<Hash>> = vec![Vec::new()];
        let mut leaves = Vec::new();
        for i in 0..70u64 {
            assert_eq!(f.root(), naive_mth(&leaves), "size {i}");
            let h = leaf_hash(&i.to_le_bytes());
            leaves.push(h);
            levels[0].push(h);
            let mut out = Vec::new();
            f.push(h, &mut out);
            for n in out {
                if levels.len() <= n.level as usize {
                    levels.push(Vec::new());
                }
                assert_eq!(levels[n.level as usize].len() as u64, n.index, "nodes arrive in order");
                levels[n.level as usize].push(n.hash);
            }
            let src = Flat(levels.clone());
            assert_eq!(Frontier::load(&src, i + 1).unwrap(), f);
            for m in 0..=i + 1 {
                assert_eq!(range_hash(&src, 0, m).unwrap(), naive_mth(&leaves[..m as usize]));
            }
        }
    }

    #[test]
    fn split_is_the_largest_power_of_two_below() {
        assert_eq!([2, 3, 4, 5, 8, 9].map(split), [1, 2, 2, 4, 4, 8]);
        assert_eq!(split(u64::MAX), 1 << 63);
    }
}

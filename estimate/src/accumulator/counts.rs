//! Count vectors whose cost follows their content: sparse while few cells are non-zero,
//! dense once that is cheaper.
//!
//! **Canonical form.** Which representation a vector uses is a function of its content
//! alone — sparse iff fewer than a quarter of the cells are non-zero, and a sparse vector
//! stores no zero — so equal vectors are equal values and serialise to equal bytes
//! (shards merged in any order give byte-identical partitions). A quarter is where the
//! two cost about the same: a sparse cell costs ~20 bytes in memory and ~4 postcard bytes
//! (index and count varints), a dense cell 8 bytes and ~1 byte.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::EstimateError;

/// A vector of `u64` counts in canonical form (see the [module documentation](self)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Counts {
    /// Every cell, in order.
    Dense(Vec<u64>),
    /// The non-zero cells by index, and the vector's length.
    Sparse {
        /// Number of cells.
        len: u32,
        /// Index → count, no zero count.
        cells: BTreeMap<u32, u64>,
    },
}

/// Byte `b` spread to eight 0/1 cells (bit `j` → cell `j`): a dense unary-report add is
/// then eight plain adds per byte, which vectorise.
const SPREAD: [[u64; 8]; 256] = {
    let mut t = [[0u64; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let mut j = 0;
        while j < 8 {
            t[b][j] = ((b >> j) & 1) as u64;
            j += 1;
        }
        b += 1;
    }
    t
};

/// Whether a vector of `len` cells with `nonzero` non-zero ones is sparse in canonical form.
const fn sparse_form(nonzero: usize, len: usize) -> bool {
    nonzero.saturating_mul(4) < len && len <= u32::MAX as usize
}

impl Counts {
    /// `len` zero cells.
    pub(crate) fn zeros(len: usize) -> Self {
        match u32::try_from(len) {
            Ok(len32) if sparse_form(0, len) => Self::Sparse { len: len32, cells: BTreeMap::new() },
            _ => Self::Dense(vec![0; len]),
        }
    }

    /// Number of cells.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Dense(v) => v.len(),
            Self::Sparse { len, .. } => *len as usize,
        }
    }

    /// Cell `i` (0 when out of range).
    pub(crate) fn get(&self, i: usize) -> u64 {
        match self {
            Self::Dense(v) => v.get(i).copied().unwrap_or(0),
            Self::Sparse { cells, .. } => {
                u32::try_from(i).ok().and_then(|i| cells.get(&i)).copied().unwrap_or(0)
            }
        }
    }

    /// The non-zero cells `(index, count)` in increasing index order.
    pub(crate) fn nonzero(&self) -> Box<dyn Iterator<Item = (usize, u64)> + '_> {
        match self {
            Self::Dense(v) => Box::new(v.iter().enumerate().filter(|(_, x)| **x != 0).map(|(i, x)| (i, *x))),
            Self::Sparse { cells, .. } => Box::new(cells.iter().map(|(i, x)| (*i as usize, *x))),
        }
    }

    /// Every cell, as a dense vector.
    pub(crate) fn to_dense(&self) -> Vec<u64> {
        match self {
            Self::Dense(v) => v.clone(),
            Self::Sparse { len, cells } => {
                let mut v = vec![0; *len as usize];
                for (i, x) in cells {
                    if let Some(slot) = v.get_mut(*i as usize) {
                        *slot = *x;
                    }
                }
                v
            }
        }
    }

    /// The sum of the cells, `None` on overflow.
    pub(crate) fn sum(&self) -> Option<u64> {
        self.nonzero().try_fold(0u64, |acc, (_, x)| acc.checked_add(x))
    }

    /// The largest cell.
    pub(crate) fn max(&self) -> u64 {
        self.nonzero().map(|(_, x)| x).max().unwrap_or(0)
    }

    /// Adds one to cell `i`, keeping the canonical form. The caller bounds the counts
    /// (per-cell counts never exceed the accumulator's `n`), so this saturates rather
    /// than fails.
    ///
    /// # Errors
    /// [`EstimateError::OutOfRange`] when `i >= len`; then nothing changes.
    pub(crate) fn increment(&mut self, i: usize) -> Result<(), EstimateError> {
        match self {
            Self::Dense(v) => {
                let slot = v.get_mut(i).ok_or(EstimateError::OutOfRange)?;
                *slot = slot.saturating_add(1);
            }
            Self::Sparse { len, cells } => {
                let i = u32::try_from(i).ok().filter(|i| i < len).ok_or(EstimateError::OutOfRange)?;
                if let Some(slot) = cells.get_mut(&i) {
                    *slot = slot.saturating_add(1);
                } else {
                    // Only a new non-zero cell can change the canonical form.
                    cells.insert(i, 1);
                    self.normalise();
                }
            }
        }
        Ok(())
    }

    /// Adds one to every cell whose bit is set in `bits` (bit `j` of byte `i` is cell
    /// `8i + j`; bits past the length are ignored). A dense vector takes one branch-free
    /// add per cell, which the compiler vectorises (a unary-encoded report sets a large
    /// share of its bits); a sparse one goes bit by bit and may turn dense on the way.
    pub(crate) fn add_bits(&mut self, bits: &[u8]) {
        match self {
            Self::Dense(v) => {
                let whole = v.len() / 8;
                let (head, tail) = v.split_at_mut(whole * 8);
                // Counts never exceed the accumulator's checked `n`: wrapping adds are exact.
                for (cells, byte) in head.chunks_exact_mut(8).zip(bits) {
                    if let Some(add) = SPREAD.get(usize::from(*byte)) {
                        for (cell, a) in cells.iter_mut().zip(add) {
                            *cell = cell.wrapping_add(*a);
                        }
                    }
                }
                if let Some(byte) = bits.get(whole) {
                    for (j, cell) in tail.iter_mut().enumerate() {
                        *cell = cell.wrapping_add(u64::from((*byte >> j) & 1));
                    }
                }
            }
            Self::Sparse { .. } => {
                for (byte_index, byte) in bits.iter().enumerate() {
                    let mut b = *byte;
                    while b != 0 {
                        // Out-of-range bits are ignored, as documented.
                        let _ = self.increment(byte_index * 8 + b.trailing_zeros() as usize);
                        b &= b - 1;
                    }
                }
            }
        }
    }

    /// Adds `other` cell by cell, in place.
    ///
    /// # Errors
    /// [`EstimateError::MismatchedConfig`] for different lengths, [`EstimateError::Overflow`]
    /// when a cell would overflow; both are checked before the first write, so on error
    /// `self` is unchanged.
    pub(crate) fn merge(&mut self, other: &Self) -> Result<(), EstimateError> {
        if self.len() != other.len() {
            return Err(EstimateError::MismatchedConfig);
        }
        for (i, x) in other.nonzero() {
            self.get(i).checked_add(x).ok_or(EstimateError::Overflow)?;
        }
        if let (Self::Sparse { .. }, Self::Dense(_)) = (&*self, other) {
            // `other` holds at least a quarter non-zero cells, so the sum does too.
            *self = Self::Dense(self.to_dense());
        }
        match self {
            Self::Dense(v) => {
                for (i, x) in other.nonzero() {
                    if let Some(slot) = v.get_mut(i) {
                        *slot += x;
                    }
                }
            }
            Self::Sparse { cells, .. } => {
                for (i, x) in other.nonzero() {
                    if let Ok(i) = u32::try_from(i) {
                        *cells.entry(i).or_insert(0) += x;
                    }
                }
            }
        }
        self.normalise();
        Ok(())
    }

    /// Subtracts `other` cell by cell, in place: undoes a [`Self::merge`] of `other`.
    ///
    /// # Errors
    /// [`EstimateError::MismatchedConfig`] for different lengths or a cell that would go
    /// below zero (checked before the first write: on error `self` is unchanged).
    pub(crate) fn unmerge(&mut self, other: &Self) -> Result<(), EstimateError> {
        if self.len() != other.len() || other.nonzero().any(|(i, x)| self.get(i) < x) {
            return Err(EstimateError::MismatchedConfig);
        }
        match self {
            Self::Dense(v) => {
                for (i, x) in other.nonzero() {
                    if let Some(slot) = v.get_mut(i) {
                        *slot -= x;
                    }
                }
            }
            Self::Sparse { cells, .. } => {
                for (i, x) in other.nonzero() {
                    if let Ok(i) = u32::try_from(i)
                        && let Some(slot) = cells.get_mut(&i)
                    {
                        *slot -= x;
                    }
                }
                cells.retain(|_, x| *x != 0);
            }
        }
        self.normalise();
        Ok(())
    }

    /// Whether the representation is the canonical one for the content.
    pub(crate) fn is_canonical(&self) -> bool {
        match self {
            Self::Dense(v) => !sparse_form(v.iter().filter(|x| **x != 0).count(), v.len()),
            Self::Sparse { len, cells } => {
                sparse_form(cells.len(), *len as usize)
                    && cells.values().all(|x| *x != 0)
                    && cells.keys().next_back().is_none_or(|i| i < len)
            }
        }
    }

    /// Puts the vector in canonical form (a sparse one must already be in range and
    /// hold no zero, as [`Self::is_canonical`] checks for decoded ones).
    pub(crate) fn normalise(&mut self) {
        match self {
            Self::Sparse { len, cells } if !sparse_form(cells.len(), *len as usize) => {
                *self = Self::Dense(self.to_dense());
            }
            Self::Dense(v) => {
                let nonzero = v.iter().filter(|x| **x != 0).count();
                if sparse_form(nonzero, v.len())
                    && let Ok(len) = u32::try_from(v.len())
                {
                    let cells =
                        (0u32..).zip(v.iter()).filter(|(_, x)| **x != 0).map(|(i, x)| (i, *x)).collect();
                    *self = Self::Sparse { len, cells };
                }
            }
            Self::Sparse { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_to_dense_at_a_quarter_and_back_on_unmerge() {
        let mut c = Counts::zeros(8);
        c.increment(3).unwrap();
        assert!(matches!(c, Counts::Sparse { .. }));
        let one = c.clone();
        c.increment(5).unwrap();
        assert_eq!(c, Counts::Dense(vec![0, 0, 0, 1, 0, 1, 0, 0]));
        c.increment(5).unwrap();
        let before = c.clone();
        let mut d = Counts::zeros(8);
        d.increment(5).unwrap();
        d.increment(5).unwrap();
        c.unmerge(&d).unwrap();
        assert_eq!(c, one);
        c.merge(&d).unwrap();
        assert_eq!(c, before);
        assert!(c.is_canonical() && one.is_canonical());
        assert_eq!(c.increment(8), Err(EstimateError::OutOfRange));
    }

    #[test]
    fn add_bits_equals_one_increment_per_set_bit() {
        // Dense from the start (len 12, all cells soon non-zero) and sparse (len 4096).
        for len in [12usize, 4096] {
            let mut by_bits = Counts::zeros(len);
            let mut by_cell = Counts::zeros(len);
            for k in 0u32..40 {
                let bits: Vec<u8> = (0..len.div_ceil(8))
                    .map(|i| (k.wrapping_mul(2_654_435_761).rotate_left(i as u32) & 0xff) as u8)
                    .map(|b| if len < 4096 || k % 3 == 0 { b } else { b & 0x01 })
                    .collect();
                by_bits.add_bits(&bits);
                for i in 0..len {
                    if bits[i / 8] >> (i % 8) & 1 == 1 {
                        by_cell.increment(i).unwrap();
                    }
                }
                assert_eq!(by_bits, by_cell, "len {len}, report {k}");
            }
        }
    }

    #[test]
    fn merge_checks_before_writing() {
        let mut a = Counts::Dense(vec![u64::MAX, 0, 0, 0]);
        let mut b = Counts::zeros(4);
        b.increment(1).unwrap();
        b.increment(0).unwrap();
        let before = a.clone();
        assert_eq!(a.merge(&b), Err(EstimateError::Overflow));
        assert_eq!(a, before);
        assert_eq!(a.merge(&Counts::zeros(5)), Err(EstimateError::MismatchedConfig));
        let mut small = Counts::zeros(4);
        assert_eq!(small.unmerge(&b), Err(EstimateError::MismatchedConfig));
        assert_eq!(small, Counts::zeros(4));
    }

    #[test]
    fn non_canonical_forms_are_detected() {
        assert!(!Counts::Dense(vec![0; 8]).is_canonical());
        let zero = Counts::Sparse { len: 8, cells: [(1, 0)].into() };
        assert!(!zero.is_canonical());
        let out = Counts::Sparse { len: 8, cells: [(8, 1)].into() };
        assert!(!out.is_canonical());
        let mut dense = Counts::Dense(vec![0, 1, 0, 0, 0, 0, 0, 0]);
        dense.normalise();
        assert_eq!(dense, Counts::Sparse { len: 8, cells: [(1, 1)].into() });
    }
}

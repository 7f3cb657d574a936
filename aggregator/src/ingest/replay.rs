//! The in-memory half of replay protection: a fixed-size Bloom filter over the report
//! ids the store remembers (Bloom 1970), blocked so that all of an id's bits lie in one
//! 64-byte cache line (Putze, Sanders and Singler, "Cache-, hash- and space-efficient
//! Bloom filters", WEA 2007: one cache miss per probe or insert instead of seven).
//!
//! "No" is certain, so a fresh id costs no store read; "maybe" is checked against the
//! store's `seen_run` table, so a false positive costs one read of the id's bucket (1/256
//! of the remembered ids) and never refuses a fresh report. The filter cannot forget one id, so after a purge it is
//! rebuilt from the table (a full scan, rare: purges run on a schedule).

use std::hash::{BuildHasher, RandomState};

/// Bits set per id. Optimal (`m/n · ln 2`) at ~10 bits per id; at 16 MiB that is
/// 1.3·10^7 ids with a false-positive rate of ~1% (blocking costs a little over the
/// classic filter's 0.8%), and 10^7 ids give ~0.3%.
const PROBES: u64 = 7;

/// Words per block: 8 × 64 bits, one cache line.
const BLOCK_WORDS: usize = 8;

/// A Bloom filter of report ids. The hash is keyed per process (SipHash with a random
/// key), so devices choosing their ids cannot aim at chosen bits to force lookups. Tests
/// fix the key (`S`) so that their false-positive counts are reproducible.
pub(crate) struct ReplayFilter<S = RandomState> {
    bits: Vec<u64>,
    /// Number of bits minus one (a power of two minus one).
    mask: u64,
    hasher: S,
}

impl ReplayFilter {
    /// A filter of at most `bytes` bytes (rounded down to a power of two, at least 8).
    pub(crate) fn with_bytes(bytes: usize) -> Self {
        Self::with_bytes_and_hasher(bytes, RandomState::new())
    }
}

impl<S: BuildHasher> ReplayFilter<S> {
    /// A filter of at most `bytes` bytes (rounded down to a power of two, at least 8),
    /// hashing with `hasher`.
    pub(crate) fn with_bytes_and_hasher(bytes: usize, hasher: S) -> Self {
        let words = (bytes / 8).max(1);
        let words = if words.is_power_of_two() { words } else { words.next_power_of_two() / 2 };
        Self { bits: vec![0; words], mask: (words as u64 * 64) - 1, hasher }
    }

    /// The id's block (its first word) and the bits to set in it, as (word offset, mask).
    fn probes(&self, id: &[u8; 16]) -> (usize, [(usize, u64); PROBES as usize]) {
        // One hash picks the block, a second gives the seven 9-bit positions in it: double
        // hashing inside a 512-bit block repeats whole patterns too often (measured:
        // 10^-4 false positives at 84 bits per id instead of ~10^-8).
        let block_bits = self.mask.min(511);
        let h = self.hasher.hash_one(id);
        let block = usize::try_from(h & self.mask & !block_bits).unwrap_or(0) / 64;
        let positions = self.hasher.hash_one((id, 1u8));
        let mut out = [(0, 0); PROBES as usize];
        for (i, slot) in (0..PROBES).zip(out.iter_mut()) {
            let bit = (positions >> (9 * i)) & block_bits;
            *slot = (usize::try_from(bit / 64).unwrap_or(0) % BLOCK_WORDS, 1 << (bit % 64));
        }
        (block, out)
    }

    /// Remembers `id`.
    pub(crate) fn insert(&mut self, id: &[u8; 16]) {
        let (block, probes) = self.probes(id);
        for (word, bit) in probes {
            if let Some(w) = self.bits.get_mut(block + word) {
                *w |= bit;
            }
        }
    }

    /// `false`: `id` was certainly never inserted. `true`: it may have been.
    pub(crate) fn maybe_contains(&self, id: &[u8; 16]) -> bool {
        let (block, probes) = self.probes(id);
        probes.iter().all(|(word, bit)| self.bits.get(block + word).is_some_and(|w| w & bit != 0))
    }

    /// Forgets everything (before a rebuild).
    pub(crate) fn clear(&mut self) {
        self.bits.fill(0);
    }

    /// Its size in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.bits.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        // 1 MiB for 10^5 ids: 84 bits per id, 16,384 blocks of 512 bits holding ~6.1 ids
        // each (Poisson). Summed over the block loads, a fresh id's false-positive rate
        // is 1.66e-7, so 10^5 fresh ids expect 0.017 false positives: at most 3 allows
        // for bad luck (P(>3) ~ 3e-9), while a filter that lost its blocking or its
        // second hash (1e-4 measured, 10 expected) fails. The key is fixed (SipHash
        // with zero keys) so the count is the same on every run; the server's key is
        // random per process, which an earlier version of this test also used and
        // then failed about one run in 60.
        let fixed = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default();
        let mut f = ReplayFilter::with_bytes_and_hasher(1 << 20, fixed.clone());
        assert_eq!(f.bytes(), 1 << 20);
        let id = |i: u32, salt: u8| {
            let mut b = [salt; 16];
            b[..4].copy_from_slice(&i.to_le_bytes());
            b
        };
        for i in 0..100_000 {
            f.insert(&id(i, 1));
        }
        assert!((0..100_000).all(|i| f.maybe_contains(&id(i, 1))));
        let false_positives = (0..100_000).filter(|i| f.maybe_contains(&id(*i, 2))).count();
        assert!(false_positives <= 3, "{false_positives} false positives among 10^5 fresh ids");
        f.clear();
        assert!(!f.maybe_contains(&id(0, 1)));
        // A tiny filter saturates and says "maybe" to everything.
        let mut tiny = ReplayFilter::with_bytes_and_hasher(13, fixed);
        assert_eq!(tiny.bytes(), 8);
        for i in 0..200 {
            tiny.insert(&id(i, 3));
        }
        assert!((0..100).all(|i| tiny.maybe_contains(&id(i, 4))));
    }
}

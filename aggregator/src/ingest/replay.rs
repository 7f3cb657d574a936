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
    /// The bits, with 7 spare words so that the blocks can start on a cache line: a
    /// `Vec<u64>` of 16 MiB starts 16 bytes into its pages, so blocks taken from its
    /// start would each straddle two lines. (A `Vec` of a 64-byte-aligned type would be
    /// aligned, but `vec![…; n]` writes every element of such a type at once, making all
    /// 16 MiB resident at open; zeroed `u64`s come from `calloc`, pages mapped as used.)
    words: Vec<u64>,
    /// Index in `words` of the first block's first word (on a 64-byte boundary).
    first: usize,
    /// Number of bits minus one (a power of two minus one; below 512 for filters smaller
    /// than one block, which use only the first bits of their one block).
    mask: u64,
    hasher: S,
}

/// An id's place in a [`ReplayFilter`]: its block and, per word of the block, the bits
/// to test or set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Probe {
    block: usize,
    masks: [u64; BLOCK_WORDS],
    /// The keyed hash of the id the block and bits come from (staged sets reuse it:
    /// [`super::prehashed`]).
    hash: u64,
}

impl Probe {
    /// The filter's keyed hash of the id (SipHash-1-3 under the filter's key).
    pub(crate) const fn hash(&self) -> u64 {
        self.hash
    }
}

/// SplitMix64's output function (Steele, Lea and Flood, "Fast splittable pseudorandom
/// number generators", OOPSLA 2014): a bijection of 64 bits whose every output bit
/// depends on every input bit. Not a keyed hash: its input is already one.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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
        let all = vec![0u64; words.div_ceil(BLOCK_WORDS) * BLOCK_WORDS + BLOCK_WORDS - 1];
        let first = (64 - all.as_ptr().addr() % 64) % 64 / 8;
        Self { words: all, first, mask: (words as u64 * 64) - 1, hasher }
    }

    /// Where `id`'s bits lie: one keyed hash, computed once and then used both to ask
    /// ([`Self::maybe_contains_probe`]) and to remember ([`Self::insert_probe`]).
    ///
    /// One SipHash-1-3 of the id (keyed per process) gives 64 bits `h`: its bits from the
    /// tenth up pick the block; the seven 9-bit positions inside it come from `mix(h)`, a
    /// fixed bijection of the 64 bits (SplitMix64's finaliser), so ids of one block share
    /// a pattern only by chance, not because they share the block's bits. (Double hashing
    /// inside a 512-bit block repeats whole patterns too often — measured: 10^-4 false
    /// positives at 84 bits per id instead of ~10^-8.) Devices choose ids but not the
    /// key: `h` is a pseudo-random function of the id, so block and positions, public
    /// functions of `h`, are as unpredictable to them as with two keyed hashes.
    pub(crate) fn probe(&self, id: &[u8; 16]) -> Probe {
        let block_bits = self.mask.min(511);
        let h = self.hasher.hash_one(id);
        let block = usize::try_from((h & self.mask) >> 9).unwrap_or(0);
        let positions = mix(h);
        let mut masks = [0u64; BLOCK_WORDS];
        for i in 0..PROBES {
            let bit = (positions >> (9 * i)) & block_bits;
            if let Some(m) = masks.get_mut(usize::try_from(bit / 64).unwrap_or(0)) {
                *m |= 1 << (bit % 64);
            }
        }
        Probe { block, masks, hash: h }
    }

    /// Remembers `id`.
    pub(crate) fn insert(&mut self, id: &[u8; 16]) {
        let probe = self.probe(id);
        self.insert_probe(&probe);
    }

    /// The words of block `block`.
    fn block(&self, block: usize) -> Option<&[u64]> {
        let start = self.first + block * BLOCK_WORDS;
        self.words.get(start..start + BLOCK_WORDS)
    }

    /// Remembers the id `probe` was computed for (by this filter).
    pub(crate) fn insert_probe(&mut self, probe: &Probe) {
        let start = self.first + probe.block * BLOCK_WORDS;
        if let Some(words) = self.words.get_mut(start..start + BLOCK_WORDS) {
            for (w, m) in words.iter_mut().zip(probe.masks) {
                *w |= m;
            }
        }
    }

    /// `false`: `id` was certainly never inserted. `true`: it may have been.
    pub(crate) fn maybe_contains(&self, id: &[u8; 16]) -> bool {
        self.maybe_contains_probe(&self.probe(id))
    }

    /// [`Self::maybe_contains`] for the id `probe` was computed for (by this filter).
    pub(crate) fn maybe_contains_probe(&self, probe: &Probe) -> bool {
        self.block(probe.block).is_some_and(|words| words.iter().zip(probe.masks).all(|(w, m)| w & m == m))
    }

    /// Forgets everything (before a rebuild).
    pub(crate) fn clear(&mut self) {
        self.words.fill(0);
    }

    /// Its size in bytes.
    pub(crate) fn bytes(&self) -> usize {
        usize::try_from(self.mask / 8 + 1).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SipHash builder (zero keys) that counts the hashes it starts.
    #[derive(Clone, Default)]
    struct Counting(std::rc::Rc<std::cell::Cell<u32>>);

    impl BuildHasher for Counting {
        type Hasher = std::hash::DefaultHasher;
        fn build_hasher(&self) -> Self::Hasher {
            self.0.set(self.0.get() + 1);
            std::hash::DefaultHasher::default()
        }
    }

    #[test]
    fn an_id_is_hashed_once_and_its_probe_asks_and_inserts() {
        let hashes = Counting::default();
        let mut f = ReplayFilter::with_bytes_and_hasher(1 << 16, hashes.clone());
        let id = [0x5a; 16];
        let probe = f.probe(&id);
        assert_eq!(hashes.0.get(), 1, "one keyed hash per id");
        // At most seven bits, all in the probe's block.
        let set: u32 = probe.masks.iter().map(|m| m.count_ones()).sum();
        assert!((1..=7).contains(&set), "{set} bits");
        assert!(!f.maybe_contains_probe(&probe));
        f.insert_probe(&probe);
        assert!(f.maybe_contains_probe(&probe));
        assert_eq!(hashes.0.get(), 1, "asking and inserting with a probe hash nothing");
        // The probe is the id's: asking by id finds it, and sets only the probe's bits.
        assert!(f.maybe_contains(&id));
        let ones: u32 = f.words.iter().map(|w| w.count_ones()).sum();
        assert_eq!(ones, set);
        assert_eq!(f.block(probe.block), Some(&probe.masks[..]));
    }

    #[test]
    fn blocks_are_cache_lines() {
        // 16 MiB, as the server's default: a `Vec<u64>` of that size starts 16 bytes
        // into its pages (the allocator's header), so its 64-byte blocks straddled two
        // cache lines each.
        let f = ReplayFilter::with_bytes(16 << 20);
        assert_eq!(f.bytes(), 16 << 20);
        let blocks = (16 << 20) / 64;
        for b in [0, 1, blocks / 2, blocks - 1] {
            assert_eq!(f.block(b).unwrap().as_ptr().addr() % 64, 0, "block {b}");
        }
        assert!(f.block(blocks).is_none());
    }

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

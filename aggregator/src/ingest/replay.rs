//! The in-memory half of replay protection: a fixed-size Bloom filter over the report
//! ids the store remembers (Bloom 1970), probed by double hashing (Kirsch and
//! Mitzenmacher, "Less hashing, same performance", ESA 2006).
//!
//! "No" is certain, so a fresh id costs no store read; "maybe" is checked against the
//! store's `seen_id` table, so a false positive costs one indexed lookup and never
//! refuses a fresh report. The filter cannot forget one id, so after a purge it is
//! rebuilt from the table (a full scan, rare: purges run on a schedule).

use std::hash::{BuildHasher as _, RandomState};

/// Bits set per id. Optimal (`m/n · ln 2`) at ~10 bits per id; at 16 MiB that is
/// 1.3·10^7 ids with a false-positive rate of ~0.8%, and 10^7 ids give ~0.2%.
const PROBES: u64 = 7;

/// A Bloom filter of report ids. The hash is keyed per process (SipHash with a random
/// key), so devices choosing their ids cannot aim at chosen bits to force lookups.
pub(crate) struct ReplayFilter {
    bits: Vec<u64>,
    /// Number of bits minus one (a power of two minus one).
    mask: u64,
    hasher: RandomState,
}

impl ReplayFilter {
    /// A filter of at most `bytes` bytes (rounded down to a power of two, at least 8).
    pub(crate) fn with_bytes(bytes: usize) -> Self {
        let words = (bytes / 8).max(1);
        let words = if words.is_power_of_two() { words } else { words.next_power_of_two() / 2 };
        Self { bits: vec![0; words], mask: (words as u64 * 64) - 1, hasher: RandomState::new() }
    }

    fn probes(&self, id: &[u8; 16]) -> impl Iterator<Item = u64> + use<> {
        let h = self.hasher.hash_one(id);
        let (h1, h2, mask) = (h, h.rotate_left(32) | 1, self.mask);
        (0..PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) & mask)
    }

    /// Remembers `id`.
    pub(crate) fn insert(&mut self, id: &[u8; 16]) {
        for bit in self.probes(id) {
            if let Some(w) = self.bits.get_mut(usize::try_from(bit / 64).unwrap_or(usize::MAX)) {
                *w |= 1 << (bit % 64);
            }
        }
    }

    /// `false`: `id` was certainly never inserted. `true`: it may have been.
    pub(crate) fn maybe_contains(&self, id: &[u8; 16]) -> bool {
        self.probes(id).all(|bit| {
            self.bits
                .get(usize::try_from(bit / 64).unwrap_or(usize::MAX))
                .is_some_and(|w| w & (1 << (bit % 64)) != 0)
        })
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
        // 1 MiB for 10^5 ids: 84 bits per id, so a false positive is ~1e-13 likely
        // per probe: none expected among 10^5 fresh ids.
        let mut f = ReplayFilter::with_bytes(1 << 20);
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
        assert_eq!((0..100_000).filter(|i| f.maybe_contains(&id(*i, 2))).count(), 0);
        f.clear();
        assert!(!f.maybe_contains(&id(0, 1)));
        // A tiny filter saturates and says "maybe" to everything.
        let mut tiny = ReplayFilter::with_bytes(13);
        assert_eq!(tiny.bytes(), 8);
        for i in 0..200 {
            tiny.insert(&id(i, 3));
        }
        assert!((0..100).all(|i| tiny.maybe_contains(&id(i, 4))));
    }
}

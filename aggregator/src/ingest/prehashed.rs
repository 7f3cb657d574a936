//! Hash sets of the ids staged for the next commit, hashed by the replay filter's keyed
//! hash instead of hashing each id again.
//!
//! Every report id and envelope key that `apply` looks up in a staged set has just been
//! hashed once for the replay filter ([`ReplayFilter::probe`]): SipHash-1-3 under a
//! random per-process key, the hash `std`'s default `HashSet` would compute too. A
//! [`Keyed`] id carries that hash, and [`PassThrough`] hands it to the table unchanged,
//! so a lookup or insert costs no second SipHash (three or four per envelope were ~0.35 µs
//! of its ~7 µs beyond the X25519 multiplication). Devices choose their ids but not the
//! key, so they can no more aim ids at one bucket of these tables than at one block of the
//! filter: the table sees the same kind of hash as with `RandomState`, from the same
//! family, its key as secret. Equality compares the ids themselves, so two ids whose
//! hashes collide stay two entries.
//!
//! [`ReplayFilter::probe`]: super::ReplayFilter::probe

use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher};

use super::Probe;

/// An id (16-byte report or token id, 32-byte envelope key) with the replay filter's
/// keyed hash of it ([`Probe::hash`]). Two `Keyed` made by the same filter from equal
/// ids are equal, with equal hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Keyed<const N: usize> {
    hash: u64,
    id: [u8; N],
}

impl<const N: usize> Keyed<N> {
    /// `id`, with the hash of `probe`, which the replay filter computed for `id` (for an
    /// envelope, for its 16-byte filter key).
    pub(crate) const fn new(probe: &Probe, id: [u8; N]) -> Self {
        Self { hash: probe.hash(), id }
    }

    /// The id.
    pub(crate) const fn id(&self) -> &[u8; N] {
        &self.id
    }
}

impl<const N: usize> Hash for Keyed<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Builds [`PassThroughHasher`]s: the hash of a [`Keyed`] is the hash it carries.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PassThrough;

/// A [`Hasher`] that returns the `u64` it was given ([`Keyed`] writes exactly one).
#[derive(Debug, Default)]
pub(crate) struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    /// Not used by [`Keyed`]; anything else hashed here is folded in, not dropped.
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;

    fn build_hasher(&self) -> Self::Hasher {
        PassThroughHasher::default()
    }
}

/// A set of ids hashed by the replay filter ([`Keyed`]).
pub(crate) type KeyedSet<const N: usize> = HashSet<Keyed<N>, PassThrough>;

#[cfg(test)]
mod tests {
    use super::super::ReplayFilter;
    use super::*;

    fn filter() -> ReplayFilter<std::hash::BuildHasherDefault<std::hash::DefaultHasher>> {
        ReplayFilter::with_bytes_and_hasher(1 << 16, std::hash::BuildHasherDefault::default())
    }

    #[test]
    fn the_table_hashes_with_the_filters_keyed_hash() {
        let f = filter();
        let id = [0x5a; 16];
        let probe = f.probe(&id);
        let key = Keyed::new(&probe, id);
        // What the table computes is the filter's hash of the id, not a hash of its bytes.
        assert_eq!(PassThrough.hash_one(key), probe.hash());
        assert_eq!(
            probe.hash(),
            std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(id)
        );
        assert_ne!(f.probe(&[0x5b; 16]).hash(), probe.hash());
    }

    #[test]
    fn a_set_holds_ids_not_hashes() {
        let f = filter();
        let mut set: KeyedSet<16> = KeyedSet::default();
        let ids: Vec<[u8; 16]> = (0..1_000u32)
            .map(|i| {
                let mut id = [7; 16];
                id[..4].copy_from_slice(&i.to_le_bytes());
                id
            })
            .collect();
        for id in &ids[..500] {
            assert!(set.insert(Keyed::new(&f.probe(id), *id)));
        }
        assert!(!set.insert(Keyed::new(&f.probe(&ids[3]), ids[3])), "an id inserted twice is one entry");
        assert!(ids[..500].iter().all(|id| set.contains(&Keyed::new(&f.probe(id), *id))));
        assert!(!ids[500..].iter().any(|id| set.contains(&Keyed::new(&f.probe(id), *id))));
        // Two ids under one hash (a collision) are still two entries, each found only
        // as itself.
        let probe = f.probe(&ids[0]);
        let (a, b) = (Keyed::new(&probe, [1; 16]), Keyed::new(&probe, [2; 16]));
        let mut set: KeyedSet<16> = KeyedSet::default();
        assert!(set.insert(a) && set.insert(b));
        assert_eq!(set.len(), 2);
        assert!(set.contains(&a) && set.contains(&b));
        assert!(!set.contains(&Keyed::new(&probe, [3; 16])));
        assert_eq!(set.iter().map(Keyed::id).filter(|id| **id == [1; 16]).count(), 1);
    }
}

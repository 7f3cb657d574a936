//! Randomness for the device.
//!
//! Every sampler and encoder in this crate is generic over [`rand_core::CryptoRng`], so
//! the host decides where randomness comes from. With the `std` feature, [`OsRng`] is a
//! buffered ChaCha20 keyed and periodically reseeded from the operating system's CSPRNG
//! (fast key erasure, wiped on drop); `no_std` hosts bring their own [`CryptoRng`].
//! Seeded generators live in [`crate::hazmat`] because a seed turns privacy noise into
//! something an attacker can replay.

pub use rand_core::{CryptoRng, Rng, TryCryptoRng, TryRng};

/// Bytes of one refill: four ChaCha20 blocks, the first 32 bytes of which key the next
/// generator (fast key erasure).
#[cfg(feature = "std")]
const BUFFER: usize = 256;
/// Key bytes taken from each refill.
#[cfg(feature = "std")]
const KEY: usize = 32;
/// Output bytes between two reseeds from the operating system.
#[cfg(feature = "std")]
pub const RESEED_BYTES: u64 = 1 << 20;

/// The device's default CSPRNG: ChaCha20 keyed from the operating system (`getrandom`),
/// buffered, with fast key erasure, reseeded from the OS every [`RESEED_BYTES`] of output,
/// wiped on drop.
///
/// Each refill generates 256 bytes of ChaCha20 (RFC 8439 core, `chacha20` crate): the
/// first 32 bytes become the key of the next generator and the previous generator is
/// zeroized (Bernstein, "Fast-key-erasure random-number generators", 2017), the other
/// 224 are served and wiped from the buffer as they are handed out. Whoever reads the
/// state learns nothing about outputs already returned. Every [`RESEED_BYTES`] the key
/// is XORed with 32 fresh bytes from the OS, so a state compromise heals. A `getrandom`
/// call per 64-bit word (what an unbuffered OS generator costs) took 3 µs per Hadamard
/// report here; this takes nanoseconds (docs/benchmarks.md).
///
/// An OS RNG failure is not something the device can recover from with good
/// randomness, and docs/design.md#randomness forbids falling back to bad randomness silently. Rather
/// than panic, a failed (re)seed is counted in [`OsRng::failures`] so the host can report
/// it; the generator then keeps its current key (all zero if the very first read
/// failed). Callers that must know at once should use [`getrandom::SysRng`] through
/// [`TryRng`] directly. After `fork`, make a new `OsRng` in the child: a copied state
/// would repeat the parent's stream.
///
/// ```
/// use confiance::rng::{OsRng, Rng};
/// let mut rng = OsRng::new();
/// let a = rng.next_u64();
/// let b = rng.next_u64();
/// assert_ne!(a, b);
/// assert_eq!(rng.failures(), 0);
/// ```
#[cfg(feature = "std")]
pub struct OsRng {
    core: chacha20::ChaCha20Rng,
    buffer: [u8; BUFFER],
    /// The next unread byte of `buffer`; everything before it is zero.
    pos: usize,
    /// Bytes generated since the last reseed.
    since_reseed: u64,
    failures: u32,
}

#[cfg(feature = "std")]
impl core::fmt::Debug for OsRng {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OsRng").field("failures", &self.failures).finish_non_exhaustive()
    }
}

#[cfg(feature = "std")]
impl Default for OsRng {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "std")]
impl Drop for OsRng {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.buffer.zeroize();
    }
}

#[cfg(feature = "std")]
impl OsRng {
    /// A generator keyed with 32 bytes from the OS CSPRNG.
    #[must_use]
    pub fn new() -> Self {
        use rand_core::SeedableRng as _;
        let mut seed = zeroize::Zeroizing::new([0u8; KEY]);
        let failures = u32::from(getrandom::fill(seed.as_mut()).is_err());
        Self {
            core: chacha20::ChaCha20Rng::from_seed(*seed),
            buffer: [0; BUFFER],
            pos: BUFFER,
            since_reseed: 0,
            failures,
        }
    }

    /// How many OS reads have failed since this generator was made (saturating).
    #[must_use]
    pub const fn failures(&self) -> u32 {
        self.failures
    }

    /// Generate the next 256 bytes; rekey from the first 32 (fast key erasure).
    fn refill(&mut self) {
        use rand_core::SeedableRng as _;
        use zeroize::Zeroize as _;
        if self.since_reseed >= RESEED_BYTES {
            self.reseed();
        }
        self.core.fill_bytes(&mut self.buffer);
        let mut key = zeroize::Zeroizing::new([0u8; KEY]);
        if let Some(head) = self.buffer.get_mut(..KEY) {
            key.copy_from_slice(head);
            head.zeroize();
        }
        // The old generator (key and its own output buffer) is wiped when dropped.
        self.core = chacha20::ChaCha20Rng::from_seed(*key);
        self.pos = KEY;
        self.since_reseed = self.since_reseed.saturating_add(BUFFER as u64);
    }

    /// Mix 32 fresh OS bytes into the key.
    fn reseed(&mut self) {
        use rand_core::SeedableRng as _;
        let mut fresh = zeroize::Zeroizing::new([0u8; KEY]);
        if getrandom::fill(fresh.as_mut()).is_err() {
            self.failures = self.failures.saturating_add(1);
        } else {
            let mut key = zeroize::Zeroizing::new([0u8; KEY]);
            self.core.fill_bytes(key.as_mut());
            for (k, f) in key.iter_mut().zip(fresh.iter()) {
                *k ^= f;
            }
            self.core = chacha20::ChaCha20Rng::from_seed(*key);
        }
        self.since_reseed = 0;
    }

    /// Copy the next `dst.len()` bytes out, wiping them from the buffer.
    fn take(&mut self, dst: &mut [u8]) {
        use zeroize::Zeroize as _;
        let mut done = 0;
        while done < dst.len() {
            if self.pos >= BUFFER {
                self.refill();
            }
            let n = (dst.len() - done).min(BUFFER - self.pos);
            if let (Some(out), Some(src)) =
                (dst.get_mut(done..done + n), self.buffer.get_mut(self.pos..self.pos + n))
            {
                out.copy_from_slice(src);
                src.zeroize();
            }
            self.pos += n;
            done += n;
        }
    }
}

#[cfg(feature = "std")]
impl TryRng for OsRng {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.take(&mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.take(&mut b);
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.take(dst);
        Ok(())
    }
}

#[cfg(feature = "std")]
impl TryCryptoRng for OsRng {}

#[cfg(all(test, feature = "std"))]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn served_bytes_are_wiped_and_keys_rotate() {
        let mut rng = OsRng::new();
        let _ = rng.next_u64();
        assert_eq!(rng.pos, KEY + 8);
        assert!(rng.buffer[..rng.pos].iter().all(|b| *b == 0), "served bytes left in the buffer");
        // Crossing refills: 1000 words, all distinct, buffer prefix always wiped.
        let mut seen = alloc::collections::BTreeSet::new();
        for _ in 0..1000 {
            assert!(seen.insert(rng.next_u64()));
            assert!(rng.buffer[..rng.pos].iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn reseeds_from_the_os() {
        let mut rng = OsRng::new();
        let mut sink = alloc::vec![0u8; usize::try_from(RESEED_BYTES).unwrap() + 4096];
        rng.fill_bytes(&mut sink);
        // 1 MiB + 4 KiB served is about 1.17 MiB generated: without a reseed the
        // counter would be above RESEED_BYTES.
        assert!(rng.since_reseed < RESEED_BYTES, "no reseed after {} bytes", RESEED_BYTES);
        assert_eq!(rng.failures(), 0);
        // Not all zero, not constant.
        assert!(sink.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn two_generators_differ() {
        let (mut a, mut b) = (OsRng::new(), OsRng::new());
        assert_ne!(a.next_u64(), b.next_u64());
    }
}

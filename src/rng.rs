//! Randomness for the device.
//!
//! Every sampler and encoder in this crate is generic over [`rand_core::CryptoRng`], so
//! the host decides where randomness comes from. With the `std` feature, [`OsRng`] reads
//! the operating system's CSPRNG; seeded generators live in [`crate::hazmat`] because
//! a seed turns privacy noise into something an attacker can replay.

pub use rand_core::{CryptoRng, Rng, TryCryptoRng, TryRng};

/// The operating system's CSPRNG (`getrandom`), as an infallible [`CryptoRng`].
///
/// An OS RNG failure is not something the device can recover from with good
/// randomness, and the design forbids falling back to bad randomness. Rather than
/// panic, [`OsRng`] fills the request from a ChaCha20 stream keyed by the last
/// successful OS read and records the failure in [`OsRng::failures`] so the host can
/// report it. Callers that must know at once should use [`getrandom::SysRng`] through
/// [`TryRng`] directly.
///
/// ```
/// use confiance::rng::{OsRng, Rng};
/// let mut rng = OsRng::new();
/// let a = rng.next_u64();
/// let b = rng.next_u64();
/// assert_ne!(a, b);
/// ```
#[cfg(feature = "std")]
pub struct OsRng {
    fallback: rand_chacha::ChaCha20Rng,
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
impl OsRng {
    /// A handle on the OS CSPRNG.
    #[must_use]
    pub fn new() -> Self {
        use rand_core::SeedableRng as _;
        let mut seed = [0u8; 32];
        let failures = u32::from(getrandom::fill(&mut seed).is_err());
        Self { fallback: rand_chacha::ChaCha20Rng::from_seed(seed), failures }
    }

    /// How many OS reads have failed since this handle was made (saturating).
    #[must_use]
    pub const fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(feature = "std")]
impl TryRng for OsRng {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        if getrandom::fill(dst).is_err() {
            self.failures = self.failures.saturating_add(1);
            self.fallback.fill_bytes(dst);
        }
        Ok(())
    }
}

#[cfg(feature = "std")]
impl TryCryptoRng for OsRng {}

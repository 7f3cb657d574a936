//! Uniform integers without modulo bias.

use super::NoiseError;
use crate::rng::CryptoRng;
use core::num::NonZeroU64;

/// A uniform integer in `0..n`.
///
/// Lemire, *Fast Random Integer Generation in an Interval* (ACM TOMACS 2019): the
/// 128-bit product of a 64-bit draw and `n` is accepted unless its low half falls in
/// the `2^64 mod n` values that would bias the result. The work per draw depends on
/// `n` and on the random words only.
///
/// ```
/// use confiance::{hazmat::ChaCha20Rng, noise::uniform_below};
/// use rand_core::SeedableRng;
/// let mut rng = ChaCha20Rng::seed_from_u64(1);
/// let x = uniform_below(&mut rng, 6)?;
/// assert!(x < 6);
/// # Ok::<(), confiance::noise::NoiseError>(())
/// ```
///
/// # Errors
/// [`NoiseError::ZeroDenominator`] when `n == 0`.
pub fn uniform_below<R: CryptoRng + ?Sized>(rng: &mut R, n: u64) -> Result<u64, NoiseError> {
    let n = NonZeroU64::new(n).ok_or(NoiseError::ZeroDenominator)?;
    Ok(uniform_u64(rng, n))
}

/// Uniform in `0..n` (Lemire 2019, "nearly divisionless"): the exact rejection
/// threshold `2^64 mod n` is only computed when the low half falls below `n`, which
/// depends on `n` and the random word only — never on a private value.
#[inline]
pub(crate) fn uniform_u64<R: CryptoRng + ?Sized>(rng: &mut R, n: NonZeroU64) -> u64 {
    let n = n.get();
    let mut m = u128::from(rng.next_u64()) * u128::from(n);
    #[allow(clippy::cast_possible_truncation, reason = "taking the low 64 bits on purpose")]
    let mut low = m as u64;
    if low < n {
        let threshold = n.wrapping_neg() % n;
        while low < threshold {
            m = u128::from(rng.next_u64()) * u128::from(n);
            #[allow(clippy::cast_possible_truncation, reason = "taking the low 64 bits on purpose")]
            {
                low = m as u64;
            }
        }
    }
    #[allow(clippy::cast_possible_truncation, reason = "high half of a 128-bit product fits in 64 bits")]
    let high = (m >> 64) as u64;
    high
}

/// Uniform in `0..n` for a 128-bit bound `n > 0`: masked rejection (at most two
/// expected rounds); the 64-bit path is used whenever `n` fits in 64 bits.
#[inline]
pub(crate) fn uniform_u128<R: CryptoRng + ?Sized>(rng: &mut R, n: u128) -> u128 {
    if let Ok(small) = u64::try_from(n) {
        return NonZeroU64::new(small).map_or(0, |s| u128::from(uniform_u64(rng, s)));
    }
    let mask = u128::MAX >> n.leading_zeros();
    loop {
        let x = ((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64())) & mask;
        if x < n {
            return x;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use crate::hazmat::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    /// A generator returning a fixed script of words, to check the rejection zone.
    struct Script(&'static [u64], usize);
    impl rand_core::TryRng for Script {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            unreachable!()
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            self.1 += 1;
            Ok(self.0[self.1 - 1])
        }
        fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), Self::Error> {
            unreachable!()
        }
    }
    impl rand_core::TryCryptoRng for Script {}

    #[test]
    fn rejects_the_biased_zone() {
        // n = 3: 2^64 mod 3 = 1, so a draw whose low product half is 0 must be rejected.
        let mut s = Script(&[0, u64::MAX], 0);
        assert_eq!(uniform_below(&mut s, 3).unwrap(), 2);
        assert_eq!(s.1, 2, "the word 0 lands in the rejection zone");
    }

    #[test]
    fn every_value_equally_likely() {
        // 600k draws over 6 values: each count ~ 100k with sd 289; 6 sd = 1.7k.
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let mut c = [0u32; 6];
        for _ in 0..600_000 {
            c[uniform_below(&mut rng, 6).unwrap() as usize] += 1;
        }
        for x in c {
            assert!((98_300..101_700).contains(&x), "{c:?}");
        }
        assert_eq!(uniform_below(&mut rng, 0), Err(NoiseError::ZeroDenominator));
        assert_eq!(uniform_below(&mut rng, 1).unwrap(), 0);
        let _ = rng.next_u64();
    }

    #[test]
    fn wide_bounds() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let n = (1u128 << 100) + 7;
        let mut high = 0;
        for _ in 0..1000 {
            let x = uniform_u128(&mut rng, n);
            assert!(x < n);
            high += usize::from(x >= 1u128 << 99);
        }
        // About half should fall in the upper half; 6 sd of Binomial(1000, 1/2) is 95.
        assert!((405..595).contains(&high), "{high}");
    }
}

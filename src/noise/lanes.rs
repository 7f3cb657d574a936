//! Bit-sliced exact Bernoulli trials: up to 64 independent trials in one 64-bit word.
//!
//! Unary encodings (OUE, SUE) need d independent Bernoulli(1/(1 + e^γ)) bits. Drawn one
//! at a time, each costs a fair coin and a Bernoulli(e^{−γ}) of several 64-bit words.
//! Here every bit position of a word is a *lane* running the same exact algorithm as the
//! scalar samplers, and one random word feeds one step of all 64 lanes at once:
//!
//! * Bernoulli(a/b), rational: each lane compares its own uniform U ∈ [0, 1) with a/b,
//!   bit by bit, the binary digits of a/b coming from long division. A lane is decided
//!   at the first digit where U's bit differs (U < a/b iff that digit of a/b is 1), and
//!   one random word gives every undecided lane its next bit. When the expansion of a/b
//!   ends (a dyadic a/b), a lane still undecided has U ≥ a/b. Exact: P(U < a/b) = a/b.
//!   Expected words for 64 lanes ≈ log2(64) + 1.3.
//! * Bernoulli(e^{−γ}), γ = a/b: Canonne, Kamath, Steinke (NeurIPS 2020), Algorithm 1,
//!   per lane — ⌊γ⌋ trials of Bernoulli(e^{−1}) that must all succeed, then for the
//!   fractional part A_k ~ Bernoulli(γ/k) for k = 1, 2, … until a lane's first failure,
//!   success iff that k is odd. Lanes that are already decided draw nothing further.
//! * Bernoulli(1/(1 + e^γ)) = Bernoulli(θ/(1 + θ)), θ = e^{−γ}, two exact constructions:
//!   *alternating* — X = the number of successive Bernoulli(θ) successes, P(X ≥ k) = θ^k,
//!   and the lane is true iff X is odd: Σ_k (−1)^{k+1} θ^k = θ/(1 + θ) (cheap when θ is
//!   small); *logistic* — the scalar sampler's rejection, fair coin C and
//!   B ~ Bernoulli(θ), C = 0 → false, C = 1 ∧ B → true, otherwise the lane retries
//!   (cheap when θ is large). Which one runs depends on γ only (γ ≥ 4/3: alternating).
//!
//! Lanes never interact: each lane's outcome is a function of its own bit of each word,
//! so the lanes are independent, each with exactly the scalar law. The number of words
//! drawn depends on γ and on the random words only.

use super::Ratio;
use crate::rng::CryptoRng;
use alloc::vec::Vec;

/// The lanes of `mask` where a uniform U ∈ [0, 1) is below `num/den` (lazy bitwise
/// comparison with the binary expansion of `num/den`). `den > 0`.
fn ratio_lanes<R: CryptoRng + ?Sized>(rng: &mut R, num: u128, den: u128, mask: u64) -> u64 {
    if num >= den {
        return mask;
    }
    let mut undecided = mask;
    let mut below = 0u64;
    // Invariant: the digits of num/den not yet used are those of rem/den, rem < den.
    let mut rem = num;
    while undecided != 0 && rem != 0 {
        let r = rng.next_u64();
        // Next digit: ⌊2·rem/den⌋, without computing 2·rem (which may not fit).
        if rem >= den - rem {
            rem -= den - rem;
            // Digit 1: a lane whose bit is 0 has U below.
            below |= undecided & !r;
            undecided &= r;
        } else {
            rem += rem;
            // Digit 0: a lane whose bit is 1 has U above.
            undecided &= !r;
        }
    }
    below
}

/// CKS 2020 Algorithm 1 for γ = num/den ∈ [0, 1], per lane of `mask`.
fn exp_neg_unit_lanes<R: CryptoRng + ?Sized>(rng: &mut R, num: u128, den: u128, mask: u64) -> u64 {
    if num == 0 {
        return mask;
    }
    // γ = 1: A_1 ~ Bernoulli(1) always succeeds (as in the scalar sampler).
    let mut k: u128 = if num == den { 2 } else { 1 };
    let mut active = mask;
    let mut odd = 0u64;
    while active != 0 {
        // den·k saturates only after 2^64 successive successes: see docs/privacy.md §2.
        let success = ratio_lanes(rng, num, den.saturating_mul(k), active);
        if k % 2 == 1 {
            odd |= active & !success;
        }
        active = success;
        k += 1;
    }
    odd
}

/// Bernoulli(e^{−num/den}) per lane of `mask`. `den > 0`.
fn exp_neg_lanes<R: CryptoRng + ?Sized>(rng: &mut R, num: u128, den: u128, mask: u64) -> u64 {
    let whole = num / den;
    let mut alive = mask;
    let mut i: u128 = 0;
    while i < whole && alive != 0 {
        alive = exp_neg_unit_lanes(rng, 1, 1, alive);
        i += 1;
    }
    if alive == 0 {
        return 0;
    }
    exp_neg_unit_lanes(rng, num % den, den, alive)
}

/// γ at or above which the alternating construction is used. Words drawn per 64 lanes
/// (`words_per_64_lanes` below): logistic 13, 17, 29, 57, 83 at γ = 1/4, 1/2, 1, 2, 4;
/// alternating 85, 49, 37, 37, 37 (for γ ≥ 1 it is one chain of Bernoulli(e^{−1}) trials
/// per lane until its first failure, whatever γ). They cross near γ = 1.3.
const ALTERNATING_FROM: (u128, u128) = (4, 3);

/// `lanes` (1 to 64) independent Bernoulli(1/(1 + e^γ)) trials in the low bits of one
/// word, exactly (module documentation); bits at and above `lanes` are zero.
///
/// ```
/// use confiance::{hazmat::ChaCha20Rng, noise::{bernoulli_logistic_lanes, Ratio}};
/// use rand_core::SeedableRng;
/// let mut rng = ChaCha20Rng::seed_from_u64(2);
/// let gamma = Ratio::new(1, 1)?; // 1/(1 + e) ≈ 0.269 per lane
/// let ones: u32 = (0..1000).map(|_| bernoulli_logistic_lanes(&mut rng, gamma, 64).count_ones()).sum();
/// assert!((16_500..17_900).contains(&ones)); // 64 000 lanes, mean 17 216, sd 112
/// assert_eq!(bernoulli_logistic_lanes(&mut rng, gamma, 3) >> 3, 0);
/// # Ok::<(), confiance::noise::NoiseError>(())
/// ```
pub fn bernoulli_logistic_lanes<R: CryptoRng + ?Sized>(rng: &mut R, gamma: Ratio, lanes: u32) -> u64 {
    let mask = match lanes {
        0 => return 0,
        1..64 => (1u64 << lanes) - 1,
        _ => u64::MAX,
    };
    let (num, den) = (u128::from(gamma.numerator()), u128::from(gamma.denominator()));
    if num == 0 {
        // e^0 = 1: the fair coin 1/2.
        return rng.next_u64() & mask;
    }
    if num * ALTERNATING_FROM.1 >= den * ALTERNATING_FROM.0 {
        alternating_lanes(rng, num, den, mask)
    } else {
        logistic_lanes(rng, num, den, mask)
    }
}

/// Lanes where the number X of successive Bernoulli(e^{−γ}) successes is odd:
/// P = Σ_k (−1)^{k+1} e^{−kγ} = 1/(1 + e^γ).
fn alternating_lanes<R: CryptoRng + ?Sized>(rng: &mut R, num: u128, den: u128, mask: u64) -> u64 {
    let mut odd = 0u64;
    let mut active = mask;
    while active != 0 {
        active = exp_neg_lanes(rng, num, den, active);
        odd ^= active;
    }
    odd
}

/// The scalar rejection per lane: fair coin C and B ~ Bernoulli(e^{−γ}); C = 0 → false,
/// C = 1 ∧ B → true, otherwise the lane goes again. P = e^{−γ}/(1 + e^{−γ}).
fn logistic_lanes<R: CryptoRng + ?Sized>(rng: &mut R, num: u128, den: u128, mask: u64) -> u64 {
    let mut ones = 0u64;
    let mut pending = mask;
    while pending != 0 {
        let c = rng.next_u64() & pending;
        let b = exp_neg_lanes(rng, num, den, c);
        ones |= b;
        pending = c & !b;
    }
    ones
}

/// Independent outcomes of one exact 64-lane sampler, handed out one per requesting lane.
///
/// A bit-sliced draw costs about as many words whether 64 lanes or 3 still need a trial,
/// so when few lanes are undecided most of a word's bits are wasted. A pool makes its
/// outcomes 64 at a time, every lane used, and deposits them one by one into the lanes
/// that ask. Each outcome is fresh and independent of the others and of where it goes
/// (which lanes ask depends only on outcomes already handed out), so every lane gets
/// exactly the sampler's law, independently.
#[derive(Default)]
struct Pool {
    /// Outcomes not yet handed out, in the low `left` bits.
    word: u64,
    left: u32,
}

/// Below this many requesting lanes a pool deposits its outcomes one by one; from it on,
/// a fresh 64-lane draw is masked (cheaper than the per-lane loop, and as exact).
const DENSE_FROM: u32 = 40;

impl Pool {
    /// A fresh outcome at each lane of `mask`, zero elsewhere. `draw` makes 64.
    fn take<R: ?Sized>(&mut self, rng: &mut R, mask: u64, draw: impl Fn(&mut R) -> u64) -> u64 {
        if mask.count_ones() >= DENSE_FROM {
            return draw(rng) & mask;
        }
        let mut out = 0u64;
        let mut rest = mask;
        while rest != 0 {
            if self.left == 0 {
                self.word = draw(rng);
                self.left = 64;
            }
            let lane = rest & rest.wrapping_neg();
            out |= lane & (self.word & 1).wrapping_neg();
            self.word >>= 1;
            self.left -= 1;
            rest ^= lane;
        }
        out
    }
}

/// Bernoulli(e^{−num/den}) lanes from pools: ⌊γ⌋ Bernoulli(e^{−1}) trials then one
/// Bernoulli(e^{−frac γ}), each from its own pool (CKS 2020 Algorithm 1's chain).
struct ExpNegPools {
    whole: u128,
    frac: u128,
    den: u128,
    one: Pool,
    part: Pool,
}

impl ExpNegPools {
    fn new(num: u128, den: u128) -> Self {
        Self { whole: num / den, frac: num % den, den, one: Pool::default(), part: Pool::default() }
    }

    fn lanes<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, mask: u64) -> u64 {
        let mut alive = mask;
        let mut i: u128 = 0;
        while i < self.whole && alive != 0 {
            alive = self.one.take(rng, alive, |r| exp_neg_unit_lanes(r, 1, 1, u64::MAX));
            i += 1;
        }
        if self.frac != 0 && alive != 0 {
            let (num, den) = (self.frac, self.den);
            alive = self.part.take(rng, alive, |r| exp_neg_unit_lanes(r, num, den, u64::MAX));
        }
        alive
    }
}

/// `bits` independent Bernoulli(1/(1 + e^γ)) trials, 64 to a word (bit `i` of the report
/// is bit `i % 64` of word `i / 64`), the bits from `bits` up zero. For γ < 1, word by
/// word with [`bernoulli_logistic_lanes`]; from γ = 1 on, its constructions with the same
/// law per bit, their Bernoulli(e^{−1}),
/// Bernoulli(e^{−frac γ}) and fair coins drawn from pools shared by all the words (the
/// deeper steps, which few lanes reach, no longer draw a word per step per 64 lanes).
/// The number of words drawn depends on γ, `bits` and the random words only.
///
/// ```
/// use confiance::{hazmat::ChaCha20Rng, noise::{bernoulli_logistic_bits, Ratio}};
/// use rand_core::SeedableRng;
/// let mut rng = ChaCha20Rng::seed_from_u64(2);
/// let words = bernoulli_logistic_bits(&mut rng, Ratio::new(4, 1)?, 1000); // 1/(1 + e⁴) ≈ 0.018
/// assert_eq!(words.len(), 16);
/// assert_eq!(words[15] >> 40, 0); // 1000 = 15·64 + 40
/// let ones: u32 = words.iter().map(|w| w.count_ones()).sum();
/// assert!(ones < 60); // mean 18, sd 4.2
/// # Ok::<(), confiance::noise::NoiseError>(())
/// ```
pub fn bernoulli_logistic_bits<R: CryptoRng + ?Sized>(rng: &mut R, gamma: Ratio, bits: u32) -> Vec<u64> {
    let words = bits.div_ceil(64);
    let mut out = Vec::with_capacity(words as usize);
    let (num, den) = (u128::from(gamma.numerator()), u128::from(gamma.denominator()));
    if num < den {
        // γ < 1: the deposits would cost more than the words they save (docs/benchmarks.md).
        return (0..words).map(|w| bernoulli_logistic_lanes(rng, gamma, (bits - w * 64).min(64))).collect();
    }
    let alternating = num * ALTERNATING_FROM.1 >= den * ALTERNATING_FROM.0;
    let mut exp_neg = ExpNegPools::new(num, den);
    let mut fair = Pool::default();
    for w in 0..words {
        let lanes = bits - w * 64;
        let mask = if lanes >= 64 { u64::MAX } else { (1u64 << lanes) - 1 };
        let word = if alternating {
            // Lanes where the number of successive Bernoulli(e^{−γ}) successes is odd.
            let (mut odd, mut active) = (0u64, mask);
            while active != 0 {
                active = exp_neg.lanes(rng, active);
                odd ^= active;
            }
            odd
        } else {
            // Fair coin C, B ~ Bernoulli(e^{−γ}): C = 0 → false, C ∧ B → true, else again.
            let (mut ones, mut pending) = (0u64, mask);
            while pending != 0 {
                let c = fair.take(rng, pending, |r| r.next_u64());
                let b = exp_neg.lanes(rng, c);
                ones |= b;
                pending = c & !b;
            }
            ones
        };
        out.push(word);
    }
    out
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    reason = "tests fail loudly"
)]
mod tests {
    use super::*;
    use crate::hazmat::ChaCha20Rng;
    use alloc::{format, vec, vec::Vec};
    use rand_core::SeedableRng;

    /// Per-lane frequencies over `words` words of 64 lanes, within 6 standard errors of
    /// `p` in every lane and in total.
    fn check_lanes(name: &str, p: f64, words: u32, mut draw: impl FnMut() -> u64) {
        let mut per_lane = [0u32; 64];
        for _ in 0..words {
            let w = draw();
            for (i, c) in per_lane.iter_mut().enumerate() {
                *c += ((w >> i) & 1) as u32;
            }
        }
        let n = f64::from(words);
        for (i, c) in per_lane.iter().enumerate() {
            let o = f64::from(*c) / n;
            assert!((o - p).abs() <= 6.0 * (p * (1.0 - p) / n).sqrt(), "{name}: lane {i}: {o} vs {p}");
        }
        let total = per_lane.iter().map(|c| f64::from(*c)).sum::<f64>() / (64.0 * n);
        assert!((total - p).abs() <= 6.0 * (p * (1.0 - p) / (64.0 * n)).sqrt(), "{name}: {total} vs {p}");
    }

    #[test]
    fn ratio_lanes_frequencies() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        for (a, b) in [(1u128, 3u128), (1, 2), (3, 8), (999, 1000), (1, 1 << 70), (5, 7)] {
            let p = a as f64 / b as f64;
            check_lanes(&format!("{a}/{b}"), p, 20_000, || ratio_lanes(&mut rng, a, b, u64::MAX));
        }
        assert_eq!(ratio_lanes(&mut rng, 0, 5, u64::MAX), 0);
        assert_eq!(ratio_lanes(&mut rng, 5, 5, 0b1011), 0b1011);
    }

    /// A dyadic probability ends its expansion: 1/4 is decided by two bits per lane.
    #[test]
    fn dyadic_expansion_ends() {
        struct Words(Vec<u64>);
        impl rand_core::TryRng for Words {
            type Error = core::convert::Infallible;
            fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
                unreachable!()
            }
            fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
                Ok(self.0.remove(0))
            }
            fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), Self::Error> {
                unreachable!()
            }
        }
        impl rand_core::TryCryptoRng for Words {}
        // Lane bits (first word, second word): lane 0 (0,0) → U = 0.00… < 1/4;
        // lane 1 (0,1) → U = 0.01… ≥ 1/4; lane 2 (1, ·) → U ≥ 1/2.
        let mut rng = Words(vec![0b100, 0b010]);
        assert_eq!(ratio_lanes(&mut rng, 1, 4, 0b111), 0b001);
        assert!(rng.0.is_empty());
    }

    #[test]
    fn exp_neg_lanes_frequencies() {
        let mut rng = ChaCha20Rng::seed_from_u64(22);
        for (a, b) in [(1u128, 2u128), (1, 1), (2, 1), (7, 3), (4, 1), (1, 1000)] {
            let p = (-(a as f64) / b as f64).exp();
            check_lanes(&format!("exp(-{a}/{b})"), p, 20_000, || exp_neg_lanes(&mut rng, a, b, u64::MAX));
        }
    }

    /// Both constructions (γ below and above the switch), per lane; and the lanes are
    /// independent: the 16 patterns of 4 lanes straddling bits 30–33 follow the product law
    /// (chi-square, 15 degrees of freedom, below the p = 10^-6 critical value 57.4).
    #[test]
    fn logistic_lanes_frequencies_and_independence() {
        let mut rng = ChaCha20Rng::seed_from_u64(23);
        for (a, b) in [(1u64, 4u64), (1, 2), (3, 4), (1, 1), (2, 1), (4, 1), (0, 1)] {
            let gamma = Ratio::new(a, b).unwrap();
            let p = 1.0 / (1.0 + (a as f64 / b as f64).exp());
            check_lanes(&format!("γ = {a}/{b}"), p, 20_000, || {
                bernoulli_logistic_lanes(&mut rng, gamma, 64)
            });
            let n = 100_000u32;
            let mut cells = [0u32; 16];
            for _ in 0..n {
                cells[((bernoulli_logistic_lanes(&mut rng, gamma, 64) >> 30) & 15) as usize] += 1;
            }
            let chi2: f64 = cells
                .iter()
                .enumerate()
                .map(|(pattern, c)| {
                    let ones = (pattern as u32).count_ones() as i32;
                    let e = f64::from(n) * p.powi(ones) * (1.0 - p).powi(4 - ones);
                    (f64::from(*c) - e).powi(2) / e
                })
                .sum();
            assert!(chi2 < 57.4, "γ = {a}/{b}: chi2 {chi2}");
        }
        assert_eq!(bernoulli_logistic_lanes(&mut rng, Ratio::new(1, 1).unwrap(), 0), 0);
        // Both constructions at a γ where the other one is the default.
        for (a, b, alternating) in [(1u128, 4u128, true), (2, 1, false)] {
            let p = 1.0 / (1.0 + (a as f64 / b as f64).exp());
            check_lanes(&format!("other construction, γ = {a}/{b}"), p, 20_000, || {
                if alternating {
                    alternating_lanes(&mut rng, a, b, u64::MAX)
                } else {
                    logistic_lanes(&mut rng, a, b, u64::MAX)
                }
            });
        }
        for lanes in [1, 7, 63] {
            assert_eq!(bernoulli_logistic_lanes(&mut rng, Ratio::new(1, 9).unwrap(), lanes) >> lanes, 0);
        }
    }

    /// The pooled sampler (`bernoulli_logistic_bits`), for γ on both sides of the switch
    /// and with a fractional and an integer part: every lane of a middle word and of the
    /// partial last word within 6 standard errors of p; and the joint law of the 8 bits
    /// straddling both word boundaries of 150-bit draws is the product law (chi-square, 255
    /// degrees of freedom, below the p = 10^-6 critical value 377.2). The pools hand out
    /// outcomes across lanes and words, so a reused or misplaced outcome shows as
    /// dependence here.
    #[test]
    fn logistic_bits_frequencies_and_independence() {
        let mut rng = ChaCha20Rng::seed_from_u64(24);
        const STRADDLE: [u32; 8] = [62, 63, 64, 65, 126, 127, 128, 129];
        for (a, b) in [(1u64, 4u64), (1, 2), (1, 1), (3, 2), (2, 1), (9, 4), (4, 1), (0, 1)] {
            let gamma = Ratio::new(a, b).unwrap();
            let p = 1.0 / (1.0 + (a as f64 / b as f64).exp());
            check_lanes(&format!("bits, γ = {a}/{b}"), p, 20_000, || {
                let w = bernoulli_logistic_bits(&mut rng, gamma, 150);
                assert_eq!(w.len(), 3);
                assert_eq!(w[2] >> 22, 0, "bits from 150 up are zero");
                w[1]
            });
            // The last word's 22 lanes: as many trials, in 22 of the 64 counted lanes.
            let mut last = [0u32; 22];
            for _ in 0..20_000 {
                let w = bernoulli_logistic_bits(&mut rng, gamma, 150)[2];
                for (i, c) in last.iter_mut().enumerate() {
                    *c += ((w >> i) & 1) as u32;
                }
            }
            for (i, c) in last.iter().enumerate() {
                let o = f64::from(*c) / 20_000.0;
                assert!(
                    (o - p).abs() <= 6.0 * (p * (1.0 - p) / 20_000.0).sqrt(),
                    "γ = {a}/{b}: last word lane {i}"
                );
            }
            let n = 200_000u32;
            let mut cells = [0u32; 256];
            for _ in 0..n {
                let w = bernoulli_logistic_bits(&mut rng, gamma, 150);
                let cell =
                    STRADDLE.iter().enumerate().map(|(j, i)| ((w[(i / 64) as usize] >> (i % 64)) & 1) << j);
                cells[cell.sum::<u64>() as usize] += 1;
            }
            let chi2: f64 = cells
                .iter()
                .enumerate()
                .map(|(pattern, c)| {
                    let ones = (pattern as u32).count_ones() as i32;
                    let e = f64::from(n) * p.powi(ones) * (1.0 - p).powi(8 - ones);
                    (f64::from(*c) - e).powi(2) / e
                })
                .sum();
            assert!(chi2 < 377.2, "γ = {a}/{b}: chi2 {chi2}");
        }
        assert!(bernoulli_logistic_bits(&mut rng, Ratio::new(1, 1).unwrap(), 0).is_empty());
    }

    /// Words drawn per 64 lanes by each construction (prints; run with --ignored).
    #[test]
    #[ignore = "measurement, not a check"]
    fn words_per_64_lanes() {
        struct Count(ChaCha20Rng, u64);
        impl rand_core::TryRng for Count {
            type Error = core::convert::Infallible;
            fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
                unreachable!()
            }
            fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
                self.1 += 1;
                self.0.try_next_u64()
            }
            fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), Self::Error> {
                unreachable!()
            }
        }
        impl rand_core::TryCryptoRng for Count {}
        for (a, b) in [(1u128, 4u128), (1, 2), (5, 8), (3, 4), (1, 1), (2, 1), (4, 1), (8, 1)] {
            let mut r = Count(ChaCha20Rng::seed_from_u64(1), 0);
            for _ in 0..10_000 {
                let _ = alternating_lanes(&mut r, a, b, u64::MAX);
            }
            let alt = r.1 as f64 / 1e4;
            r.1 = 0;
            for _ in 0..10_000 {
                let _ = logistic_lanes(&mut r, a, b, u64::MAX);
            }
            let logistic = r.1 as f64 / 1e4;
            r.1 = 0;
            let gamma = Ratio::new(a as u64, b as u64).unwrap();
            for _ in 0..1_000 {
                let _ = bernoulli_logistic_bits(&mut r, gamma, 1024);
            }
            let pooled = r.1 as f64 / 16e3;
            std::eprintln!(
                "γ = {a}/{b}: alternating {alt:.3}, logistic {logistic:.3}, pooled {pooled:.3} words"
            );
        }
    }
}

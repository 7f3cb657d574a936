//! Exact samplers: integer and rational arithmetic only, never floating point.
//!
//! docs/design.md#exact-sampling: every probability the mechanisms use is realised exactly, so that
//! floating-point attacks on noise (Mironov, CCS 2012) have nothing to find.
//!
//! - [`uniform_below`]: uniform integers without modulo bias (Lemire 2019, with the
//!   rejection threshold always computed so the work per draw does not depend on luck).
//! - [`bernoulli_ratio`]: Bernoulli(`num/den`) for a rational probability.
//! - [`bernoulli_exp_neg`]: Bernoulli(exp(−γ)) for a rational γ ≥ 0
//!   (Canonne, Kamath, Steinke, *The Discrete Gaussian for Differential Privacy*,
//!   NeurIPS 2020, Algorithm 1).
//! - [`bernoulli_logistic`]: Bernoulli(1/(1 + exp(γ))), by rejection on the above.
//! - [`bernoulli_logistic_lanes`]: up to 64 independent Bernoulli(1/(1 + exp(γ))) in one
//!   word, bit-sliced; [`bernoulli_logistic_bits`]: any number of them, the deeper steps
//!   drawn from pools shared by all words (the unary encodings' d bits).
//! - [`bernoulli_mixture`]: Bernoulli((e^γ − 1)/(e^γ − 1 + D)), randomised response's
//!   coin, in O(1) expected rounds for every D (pieces of γ with an exact amplifying coin).
//! - [`geometric_exp_neg`], [`discrete_laplace`] (CKS 2020, Algorithm 2) and
//!   [`discrete_gaussian`] (CKS 2020, Algorithm 3).
//!
//! Each sampler takes any [`CryptoRng`](crate::rng::CryptoRng); the device's default is
//! the OS CSPRNG. Seeded generators are in [`crate::hazmat`].
//!
//! ```
//! use confiance::noise::{bernoulli_exp_neg, Ratio};
//! use confiance::hazmat::ChaCha20Rng;
//! use rand_core::SeedableRng;
//! let mut rng = ChaCha20Rng::seed_from_u64(7);
//! let gamma = Ratio::new(1, 2)?; // Bernoulli(exp(-1/2)) ≈ 0.607
//! let hits = (0..10_000).filter(|_| bernoulli_exp_neg(&mut rng, gamma)).count();
//! assert!((5_800..6_350).contains(&hits));
//! # Ok::<(), confiance::noise::NoiseError>(())
//! ```

mod bernoulli;
mod coins;
mod gaussian;
mod lanes;
mod laplace;
mod mixture;
mod uniform;

pub use bernoulli::{bernoulli_exp_neg, bernoulli_logistic, bernoulli_ratio};
pub use coins::{Coins, RngCoins};
pub use gaussian::discrete_gaussian;
pub use lanes::{bernoulli_logistic_bits, bernoulli_logistic_lanes};
pub use laplace::{discrete_laplace, geometric_exp_neg};
pub use mixture::{Mixture, bernoulli_mixture};
pub use uniform::uniform_below;

use core::fmt;

/// Why a sampler's parameters were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoiseError {
    /// A denominator (or the size of a range) was zero.
    ZeroDenominator,
    /// A probability `num/den` had `num > den`.
    NotAProbability,
    /// A scale or variance was zero.
    ZeroScale,
    /// A parameter is outside the range the fixed-width arithmetic supports.
    TooLarge,
}

impl fmt::Display for NoiseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroDenominator => "zero denominator or empty range",
            Self::NotAProbability => "probability numerator exceeds its denominator",
            Self::ZeroScale => "scale or variance must be positive",
            Self::TooLarge => "parameter too large for the exact samplers",
        })
    }
}

#[cfg(feature = "std")]
impl core::error::Error for NoiseError {}

/// A non-negative rational `num/den` with `den > 0`, as the samplers' parameter type.
///
/// ```
/// use confiance::noise::Ratio;
/// let r = Ratio::new(3, 2)?;
/// assert_eq!((r.numerator(), r.denominator()), (3, 2));
/// assert!(Ratio::new(1, 0).is_err());
/// # Ok::<(), confiance::noise::NoiseError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ratio {
    num: u64,
    den: u64,
}

impl Ratio {
    /// `num / den`.
    ///
    /// # Errors
    /// [`NoiseError::ZeroDenominator`] when `den == 0`.
    pub const fn new(num: u64, den: u64) -> Result<Self, NoiseError> {
        if den == 0 {
            return Err(NoiseError::ZeroDenominator);
        }
        Ok(Self { num, den })
    }

    /// The numerator.
    #[must_use]
    pub const fn numerator(self) -> u64 {
        self.num
    }

    /// The denominator (never zero).
    #[must_use]
    pub const fn denominator(self) -> u64 {
        self.den
    }

    /// ε as a ratio.
    #[must_use]
    pub const fn from_epsilon(e: crate::Epsilon) -> Self {
        Self { num: e.numerator() as u64, den: e.denominator() as u64 }
    }

    /// `self / 2`, exactly.
    ///
    /// # Errors
    /// [`NoiseError::TooLarge`] when the doubled denominator does not fit in 64 bits
    /// (never for a ratio made from an [`Epsilon`](crate::Epsilon)).
    pub const fn half(self) -> Result<Self, NoiseError> {
        if self.num.is_multiple_of(2) {
            return Ok(Self { num: self.num / 2, den: self.den });
        }
        match self.den.checked_mul(2) {
            Some(den) => Ok(Self { num: self.num, den }),
            None => Err(NoiseError::TooLarge),
        }
    }
}

impl From<crate::Epsilon> for Ratio {
    fn from(e: crate::Epsilon) -> Self {
        Self::from_epsilon(e)
    }
}

//! Hazardous materials: things that are right for tests and simulations and wrong in a
//! device's normal life.
//!
//! A seeded generator makes privacy noise replayable by whoever knows the seed; use one
//! only where reproducibility is the point (tests, simulations, known-answer vectors).

/// A seedable ChaCha20 CSPRNG, for tests and simulations only.
///
/// ```
/// use confiance::hazmat::{SeededRng, SeedableRng as _};
/// use confiance::rng::Rng as _;
/// let mut a = SeededRng::seed_from_u64(7);
/// let mut b = SeededRng::seed_from_u64(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// ```
pub use rand_chacha::ChaCha20Rng as SeededRng;
pub use rand_core::SeedableRng;

/// The same generator under its own name, as the LDP tests and benches use it.
pub use rand_chacha::ChaCha20Rng;

/// Raw exact samplers and the [`Coins`] trait the LDP encoders are written against.
pub use crate::noise::{
    Coins, Mixture, RngCoins, bernoulli_exp_neg, bernoulli_logistic, bernoulli_logistic_lanes,
    bernoulli_mixture, bernoulli_ratio, discrete_gaussian, discrete_laplace, geometric_exp_neg,
    uniform_below,
};

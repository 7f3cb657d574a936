//! Hazardous material: seeded generators and raw samplers.
//!
//! A seeded RNG turns privacy noise into something anyone holding the seed can replay
//! and subtract. Use these for tests, simulations and benchmarks — never to privatise
//! real data. Devices use [`crate::rng::OsRng`] (the default everywhere).

pub use rand_chacha::ChaCha20Rng;
pub use rand_core::SeedableRng;

pub use crate::noise::{
    Coins, RngCoins, bernoulli_exp_neg, bernoulli_logistic, bernoulli_ratio, discrete_gaussian,
    discrete_laplace, geometric_exp_neg, uniform_below,
};

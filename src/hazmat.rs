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
    Coins, Mixture, RngCoins, bernoulli_exp_neg, bernoulli_logistic, bernoulli_logistic_bits,
    bernoulli_logistic_lanes, bernoulli_mixture, bernoulli_ratio, discrete_gaussian, discrete_laplace,
    geometric_exp_neg, uniform_below,
};

/// The mechanism `selection` under an explicit public key instead of a period's
/// ([`crate::ldp::Selection::for_period`]): for benches and simulations that reuse one
/// key on purpose. A decoder must use the same key as the encoder; nothing in a report
/// says which one that was.
///
/// ```
/// use confiance::{Epsilon, hazmat, ldp::{Domain, MechanismName, Selection}};
/// let s = Selection::new(Domain::Categorical { d: 64 }, Epsilon::from_ratio(2, 1)?, MechanismName::Olh)?;
/// assert_eq!(hazmat::keyed(&s, 9).key(), Some(9));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub const fn keyed(selection: &crate::ldp::Selection, key: u64) -> crate::ldp::Mechanism {
    selection.keyed(key)
}

/// Storage for a recorder that is never restarted (a simulation): keeps nothing, yet ε
/// budgets hold, in memory, for the recorder's one life. A host that can restart must
/// not use it: each restart would reopen the budget periods.
///
/// ```
/// use confiance::hazmat::SingleLifeStorage;
/// use confiance::recorder::Storage as _;
/// assert!(!SingleLifeStorage.keeps_state() && SingleLifeStorage.single_life());
/// ```
pub use crate::recorder::storage::SingleLifeStorage;

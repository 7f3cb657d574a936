//! Accumulators and estimators for the LDP reports of [`confiance::ldp`].
//!
//! An [`Accumulator`] is built from a [`Mechanism`] — one metric's selection keyed for
//! one period, the key the devices used ([`confiance::ldp::Selection::for_period`]):
//! accumulators of other keys refuse to merge ([`EstimateError::MismatchedKey`]). It
//! validates each
//! report's shape before counting it (a malformed report gets an [`EstimateError`] and
//! changes nothing), keeps only integer counts or moments — memory independent of the
//! number of reports, exact and order-free, so [`Accumulator::merge`] is associative and
//! commutative — and serialises to postcard for storage.
//! [`Accumulator::estimate`] returns unbiased frequencies (or the mean) with variance,
//! standard error and a 95% normal interval, and [`PointEstimate::interval`] gives the
//! interval at any [`Level`]. OLH's pool key changes with the time
//! bucket, so accumulators of different buckets do not merge: [`Combined`] estimates
//! them apart and combines the estimates by their report counts.
//!
//! ```
//! use confiance::ldp::{Domain, LdpValue, MechanismName, Selection};
//! use confiance::{Epsilon, hazmat::{ChaCha20Rng, SeedableRng}};
//! use confiance_estimate::Accumulator;
//! let s = Selection::new(Domain::Categorical { d: 4 }, Epsilon::from_ratio(2, 1)?, MechanismName::Auto)?;
//! // The mechanism of one metric and period: its public key is derived from both.
//! let m = s.for_period("thermostat.mode", 1_800_000_000);
//! let mut acc = Accumulator::new(&m);
//! let mut rng = ChaCha20Rng::seed_from_u64(1);
//! for i in 0..20_000u32 {
//!     acc.add(&m.encode(LdpValue::Category(u32::from(i % 4 == 0)), &mut rng)?)?;
//! }
//! let est = acc.estimate();
//! let f1 = &est.values[1];
//! assert!(f1.ci95_low < 0.25 && 0.25 < f1.ci95_high, "{f1:?}");
//! let restored = Accumulator::from_bytes(&acc.to_bytes())?;
//! assert_eq!(restored, acc);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This crate needs only `confiance` (without its `std` feature), `serde` and `postcard`:
//! no storage, no HTTP stack, no async runtime. `confiance-aggregator` re-exports it as
//! `confiance_aggregator::estimate`.
#![forbid(unsafe_code)]
// Library code never unwraps, expects or panics; tests, examples and benches may.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod accumulator;
mod combine;
mod estimator;
mod fwht;
mod interval;
mod simplex;
pub mod theory;

pub use accumulator::{Accumulator, MAX_STORED_BYTES};
pub use combine::Combined;
pub use estimator::{Estimate, PointEstimate};
pub use fwht::fwht;
pub use interval::{Level, normal_quantile};
pub use simplex::project_simplex;

use confiance::ldp::Mechanism;
use core::fmt;

/// Why a report, a merge or stored bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EstimateError {
    /// The report belongs to another mechanism.
    WrongMechanism,
    /// A category, index, seed or grid point is out of range.
    OutOfRange,
    /// A bit vector has the wrong length or non-zero padding.
    BadLength,
    /// The two accumulators were built for different mechanisms, ε or parameters.
    MismatchedConfig,
    /// The two accumulators have the same mechanism and parameters but different public
    /// keys (OLH's pool key, general-privacy HR's permutation key): their reports were
    /// encoded for another metric or period, and their counts mean different things.
    MismatchedKey,
    /// A count would overflow.
    Overflow,
    /// Stored bytes are too long, do not decode, or are inconsistent.
    Corrupt,
    /// A confidence level outside (0, 1).
    BadLevel,
}

impl fmt::Display for EstimateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WrongMechanism => "report is for another mechanism",
            Self::OutOfRange => "report value out of range",
            Self::BadLength => "report bit vector has the wrong length or padding",
            Self::MismatchedConfig => "accumulators have different mechanisms or parameters",
            Self::MismatchedKey => "accumulators have different public keys (metric or period)",
            Self::Overflow => "count overflow",
            Self::Corrupt => "stored accumulator is corrupt",
            Self::BadLevel => "confidence level must be strictly between 0 and 1",
        })
    }
}

impl std::error::Error for EstimateError {}

/// e^ε and e^{ε/2} as f64 for the estimators (the aggregator may use floating point:
/// it only post-processes reports).
fn exps(m: &Mechanism) -> (f64, f64) {
    let e = m.epsilon().to_f64();
    (e.exp(), (e / 2.0).exp())
}

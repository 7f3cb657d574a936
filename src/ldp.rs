//! Local differential privacy: the device-side encoders and the report payloads.
//!
//! A [`Selection`] is chosen once per metric from its [`Domain`], its ε and a
//! [`MechanismName`] (the catalogue's `mechanism = "..."`, `auto` by default); for each
//! report's period it becomes a [`Mechanism`] with that period's public key
//! ([`Selection::for_period`]), and [`Mechanism::encode`] turns one private value into an
//! [`LdpReport`]:
//!
//! | name | domain | paper | report |
//! |---|---|---|---|
//! | `grr` | categorical | generalised randomised response (Wang et al., USENIX Security 2017) | one category |
//! | `oue` | categorical | optimised unary encoding (Wang et al. 2017) | `d` bits |
//! | `sue` | categorical | symmetric unary encoding, basic RAPPOR (Erlingsson et al., CCS 2014) | `d` bits |
//! | `olh` | categorical | optimised local hashing (Wang et al. 2017) with a public seed pool | seed index + hash value |
//! | `hadamard` | categorical | Hadamard response (Acharya, Sun, Zhang, AISTATS 2019), high-privacy variant | one index |
//! | `hadamard_blocks` | categorical | Hadamard response, general-privacy variant with blocks of about e^ε (same paper) | one index |
//! | `piecewise` | numeric | piecewise mechanism (Wang et al., ICDE 2019), discretised exactly | one grid point |
//! | `duchi` | numeric | Duchi, Jordan, Wainwright (JASA 2018), one dimension | one bit |
//!
//! Every probability is realised exactly by the samplers in [`crate::noise`]
//! (rejection with Bernoulli(exp(−ε)), no floating point), and every encoder draws
//! the same primitives whatever the value, so the distribution of its running time and
//! of the random words it consumes does not depend on the value (docs/privacy.md).
//!
//! ```
//! use confiance::ldp::{Domain, LdpValue, MechanismName, Selection};
//! use confiance::{Epsilon, rng::OsRng};
//! let eps = Epsilon::from_ratio(1, 1)?;
//! let s = Selection::new(Domain::Categorical { d: 16 }, eps, MechanismName::Auto)?;
//! let m = s.for_period("thermostat.mode", 1_800_000_000);
//! let report = m.encode(LdpValue::Category(3), &mut OsRng::new())?;
//! let bytes = postcard::to_allocvec(&report).unwrap();
//! assert!(bytes.len() <= 8);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod budget;
mod encode;
mod hash;
mod mechanism;
mod report;
mod theory;

pub use budget::Budget;
pub use hash::{for_each_hash, olh_hash, olh_hash_with_key, olh_seed_key};
pub use mechanism::{
    DEFAULT_OLH_POOL, MAX_CATEGORIES, MAX_NUMERIC_RANGE, MAX_UNARY_CATEGORIES, Mechanism,
    PIECEWISE_RESOLUTION, Params, Selection, hadamard_block, olh_default_pool, olh_pool_key,
};
pub use report::LdpReport;
pub use theory::exp_approx;

use core::fmt;
use serde::{Deserialize, Serialize};

/// The mechanism a metric asks for, as written in the catalogue (lowercase); `FromStr`
/// and `Display` use the same names.
///
/// ```
/// use confiance::ldp::MechanismName;
/// let m: MechanismName = serde_json::from_str("\"olh\"").unwrap();
/// assert_eq!(m, MechanismName::Olh);
/// assert_eq!("hadamard_blocks".parse::<MechanismName>(), Ok(MechanismName::HadamardBlocks));
/// assert_eq!(MechanismName::HadamardBlocks.to_string(), "hadamard_blocks");
/// assert!("OLH".parse::<MechanismName>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum MechanismName {
    /// Generalised randomised response.
    Grr,
    /// Optimised unary encoding.
    Oue,
    /// Symmetric unary encoding (basic RAPPOR).
    Sue,
    /// Optimised local hashing with a seed pool.
    Olh,
    /// Hadamard response.
    Hadamard,
    /// Piecewise mechanism (numeric).
    Piecewise,
    /// Duchi et al.'s mechanism (numeric).
    Duchi,
    /// The lowest theoretical variance for the domain and ε.
    #[default]
    Auto,
    /// Hadamard response, general-privacy variant: `B` blocks (≈ (e^ε − 1)/2, a power of
    /// two) of a smaller Hadamard matrix each (Acharya, Sun, Zhang 2019). Same law as
    /// [`MechanismName::Hadamard`] when `B = 1` (small ε); much lower variance for ε > 1.
    #[serde(rename = "hadamard_blocks")]
    HadamardBlocks,
}

impl MechanismName {
    /// Every name, `auto` last.
    pub const ALL: [Self; 9] = [
        Self::Grr,
        Self::Oue,
        Self::Sue,
        Self::Olh,
        Self::Hadamard,
        Self::HadamardBlocks,
        Self::Piecewise,
        Self::Duchi,
        Self::Auto,
    ];

    /// The catalogue's spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Grr => "grr",
            Self::Oue => "oue",
            Self::Sue => "sue",
            Self::Olh => "olh",
            Self::Hadamard => "hadamard",
            Self::HadamardBlocks => "hadamard_blocks",
            Self::Piecewise => "piecewise",
            Self::Duchi => "duchi",
            Self::Auto => "auto",
        }
    }
}

impl fmt::Display for MechanismName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no mechanism ([`MechanismName`]'s `FromStr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownMechanism;

impl fmt::Display for UnknownMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "unknown mechanism (grr, oue, sue, olh, hadamard, hadamard_blocks, piecewise, duchi, auto)",
        )
    }
}

#[cfg(feature = "std")]
impl core::error::Error for UnknownMechanism {}

impl core::str::FromStr for MechanismName {
    type Err = UnknownMechanism;
    fn from_str(s: &str) -> Result<Self, UnknownMechanism> {
        Self::ALL.into_iter().find(|n| n.as_str() == s).ok_or(UnknownMechanism)
    }
}

/// What is being privatised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Domain {
    /// One of `d` categories `0..d` (booleans are `d = 2`).
    Categorical {
        /// The number of categories.
        d: u32,
    },
    /// An integer in `[min, max]` (bounded numeric metrics and counts).
    Numeric {
        /// The smallest value.
        min: i64,
        /// The largest value.
        max: i64,
    },
}

/// A private value to encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LdpValue {
    /// A category index in `0..d`.
    Category(u32),
    /// An integer in `[min, max]`.
    Numeric(i64),
}

/// Why a mechanism could not be built or a value not encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LdpError {
    /// A categorical domain needs `2 <= d <= MAX_CATEGORIES`.
    BadCategoryCount,
    /// A numeric domain needs `min < max` and `max - min <= MAX_NUMERIC_RANGE`.
    BadNumericRange,
    /// The mechanism does not apply to this kind of domain (e.g. Piecewise on categories).
    MechanismDomainMismatch,
    /// A numeric value was given to a categorical mechanism or the reverse.
    ValueKindMismatch,
    /// The value is outside the domain.
    OutOfDomain,
    /// Mechanism parameters are inconsistent (e.g. a zero seed pool).
    BadParameters,
}

impl fmt::Display for LdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadCategoryCount => "categorical domain needs 2 <= d <= 2^24",
            Self::BadNumericRange => "numeric domain needs min < max and max - min <= 2^40",
            Self::MechanismDomainMismatch => "mechanism does not apply to this domain",
            Self::ValueKindMismatch => "value kind does not match the domain",
            Self::OutOfDomain => "value outside the domain",
            Self::BadParameters => "inconsistent mechanism parameters",
        })
    }
}

#[cfg(feature = "std")]
impl core::error::Error for LdpError {}

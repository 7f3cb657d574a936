//! Local differential privacy mechanisms (placeholder until the LDP work lands).

/// Which local DP mechanism privatises a metric (catalogue field `mechanism`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum MechanismName {
    /// Generalised randomised response.
    Grr,
    /// Optimised unary encoding.
    Oue,
    /// Symmetric unary encoding (basic RAPPOR).
    Sue,
    /// Optimised local hashing.
    Olh,
    /// Hadamard response.
    Hadamard,
    /// Piecewise mechanism (numeric).
    Piecewise,
    /// Duchi et al. (numeric).
    Duchi,
    /// The lowest-variance choice for the domain and ε.
    Auto,
}

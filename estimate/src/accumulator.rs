//! Per-mechanism accumulators: integer counts or moments, validated on entry.

mod counts;

pub(crate) use counts::Counts;

use super::EstimateError;
use confiance::ldp::{LdpReport, Mechanism, Params};
use serde::{Deserialize, Serialize};

/// The largest stored accumulator [`Accumulator::from_bytes`] will decode (256 MiB).
pub const MAX_STORED_BYTES: usize = 256 << 20;

/// Version 3: general-privacy HR's parameters carry their permutation key. Version 2
/// (counts as [`Counts`], sparse or dense, canonical) and version 1 (always dense) are
/// still decoded and written back as version 3 — except general-privacy HR, whose
/// reports then used the unkeyed layout (category v in block v mod B) that no decoder
/// supports any more: those are refused as [`EstimateError::Corrupt`].
const FORMAT_VERSION: u8 = 3;

/// What an accumulator keeps: bounded for a given mechanism, whatever the number of
/// reports, and no bigger than its non-zero counts while they are few.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum State {
    /// GRR: reports per category (d). OUE/SUE: set bits per position (d).
    /// OLH: reports per (pool entry, hash value), row-major (pool × g).
    /// Hadamard: reports per column (k); general-privacy HR: per output (blocks × block size).
    Counts(Counts),
    /// Piecewise: Σy and Σy² of the grid points (exact).
    Moments {
        /// Σ y.
        sum: u128,
        /// Σ y².
        sum_sq: u128,
    },
    /// Duchi: reports with the + sign.
    Ones(u64),
}

/// A mergeable accumulator for one mechanism's reports.
///
/// Its state is integers only, so merging is exactly associative and commutative and
/// the estimate does not depend on the order reports arrived or shards merged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accumulator {
    version: u8,
    mechanism: Mechanism,
    n: u64,
    pub(crate) state: State,
}

fn state_for(m: &Mechanism) -> State {
    match *m.params() {
        Params::Grr { d } | Params::Oue { d } | Params::Sue { d } => State::Counts(Counts::zeros(d as usize)),
        Params::Olh { g, pool, .. } => State::Counts(Counts::zeros(g as usize * pool as usize)),
        Params::Hadamard { k, .. } => State::Counts(Counts::zeros(k as usize)),
        Params::HadamardBlocks { blocks, block_size, .. } => {
            State::Counts(Counts::zeros(blocks as usize * block_size as usize))
        }
        Params::Piecewise { .. } => State::Moments { sum: 0, sum_sq: 0 },
        _ => State::Ones(0),
    }
}

impl Accumulator {
    /// An empty accumulator for `mechanism`.
    #[must_use]
    pub fn new(mechanism: &Mechanism) -> Self {
        Self { version: FORMAT_VERSION, mechanism: *mechanism, n: 0, state: state_for(mechanism) }
    }

    /// The mechanism the reports came from.
    #[must_use]
    pub const fn mechanism(&self) -> &Mechanism {
        &self.mechanism
    }

    /// The number of reports accumulated.
    #[must_use]
    pub const fn count(&self) -> u64 {
        self.n
    }

    /// Checks that `report` fits `mechanism` (the same checks as [`Self::add`]) without an
    /// accumulator: ingest validates a whole envelope before adding any of it.
    ///
    /// # Errors
    /// [`EstimateError::WrongMechanism`], [`EstimateError::OutOfRange`] or
    /// [`EstimateError::BadLength`].
    pub fn check(mechanism: &Mechanism, report: &LdpReport) -> Result<(), EstimateError> {
        match (*mechanism.params(), report) {
            (Params::Grr { d }, LdpReport::Grr(v)) => index(*v, d).map(|_| ()),
            (Params::Hadamard { k, .. }, LdpReport::Hadamard(j)) => index(*j, k).map(|_| ()),
            (Params::HadamardBlocks { blocks, block_size, .. }, LdpReport::Hadamard(j)) => {
                index(*j, blocks * block_size).map(|_| ())
            }
            (Params::Olh { g, pool, .. }, LdpReport::Olh { seed, value }) => {
                index(*seed, pool)?;
                index(*value, g).map(|_| ())
            }
            (Params::Oue { d }, LdpReport::Oue(bits)) | (Params::Sue { d }, LdpReport::Sue(bits)) => {
                check_bits(bits, d)
            }
            (Params::Piecewise { outputs, .. }, LdpReport::Piecewise(y)) => {
                if *y < outputs {
                    Ok(())
                } else {
                    Err(EstimateError::OutOfRange)
                }
            }
            (Params::Duchi { .. }, LdpReport::Duchi(_)) => Ok(()),
            _ => Err(EstimateError::WrongMechanism),
        }
    }

    /// Count one report after checking its shape against the mechanism.
    ///
    /// # Errors
    /// [`EstimateError::WrongMechanism`], [`EstimateError::OutOfRange`],
    /// [`EstimateError::BadLength`] or [`EstimateError::Overflow`]; on error the
    /// accumulator is unchanged.
    pub fn add(&mut self, report: &LdpReport) -> Result<(), EstimateError> {
        let n = self.n.checked_add(1).ok_or(EstimateError::Overflow)?;
        // Every check happens before the first write.
        match (*self.mechanism.params(), report, &mut self.state) {
            (Params::Grr { d }, LdpReport::Grr(v), State::Counts(c)) => c.increment(index(*v, d)?)?,
            (Params::Hadamard { k, .. }, LdpReport::Hadamard(j), State::Counts(c)) => {
                c.increment(index(*j, k)?)?;
            }
            (Params::HadamardBlocks { blocks, block_size, .. }, LdpReport::Hadamard(j), State::Counts(c)) => {
                c.increment(index(*j, blocks * block_size)?)?;
            }
            (Params::Olh { g, pool, .. }, LdpReport::Olh { seed, value }, State::Counts(c)) => {
                c.increment(index(*seed, pool)? * g as usize + index(*value, g)?)?;
            }
            (Params::Oue { d }, LdpReport::Oue(bits), State::Counts(c))
            | (Params::Sue { d }, LdpReport::Sue(bits), State::Counts(c)) => {
                check_bits(bits, d)?;
                c.add_bits(bits);
            }
            (Params::Piecewise { outputs, .. }, LdpReport::Piecewise(y), State::Moments { sum, sum_sq }) => {
                if *y >= outputs {
                    return Err(EstimateError::OutOfRange);
                }
                let y = u128::from(*y);
                let (s, q) = (sum.checked_add(y), sum_sq.checked_add(y * y));
                let (Some(s), Some(q)) = (s, q) else { return Err(EstimateError::Overflow) };
                (*sum, *sum_sq) = (s, q);
            }
            (Params::Duchi { .. }, LdpReport::Duchi(positive), State::Ones(ones)) => {
                *ones += u64::from(*positive);
            }
            _ => return Err(EstimateError::WrongMechanism),
        }
        // Per-slot counts never exceed n, which was checked not to overflow.
        self.n = n;
        Ok(())
    }

    /// Add every report of `other` (same mechanism, parameters and key) into `self`, in
    /// place: the cost follows `other`'s non-zero counts, not the vectors' length.
    ///
    /// # Errors
    /// [`EstimateError::MismatchedConfig`] (another mechanism, ε or parameter),
    /// [`EstimateError::MismatchedKey`] (the same but another public key: another
    /// metric or period) or [`EstimateError::Overflow`]; on error `self` is unchanged.
    pub fn merge(&mut self, other: &Self) -> Result<(), EstimateError> {
        same_identity(&self.mechanism, &other.mechanism)?;
        let n = self.n.checked_add(other.n).ok_or(EstimateError::Overflow)?;
        // Every check happens before the first write (`Counts::merge` checks its own).
        match (&mut self.state, &other.state) {
            (State::Counts(a), State::Counts(b)) => a.merge(b)?,
            (State::Moments { sum: s1, sum_sq: q1 }, State::Moments { sum: s2, sum_sq: q2 }) => {
                let (s, q) = (s1.checked_add(*s2), q1.checked_add(*q2));
                let (Some(s), Some(q)) = (s, q) else { return Err(EstimateError::Overflow) };
                (*s1, *q1) = (s, q);
            }
            (State::Ones(a), State::Ones(b)) => *a = a.checked_add(*b).ok_or(EstimateError::Overflow)?,
            _ => return Err(EstimateError::MismatchedConfig),
        }
        self.n = n;
        Ok(())
    }

    /// Takes back the reports of `other` from `self`, in place: undoes
    /// `self.merge(other)` exactly (integers), so a caller that merged before a failed
    /// durable write can restore what it had without having cloned it.
    ///
    /// # Errors
    /// [`EstimateError::MismatchedConfig`] when `other` is not part of `self` (another
    /// mechanism, or a count that would go below zero) or [`EstimateError::MismatchedKey`]
    /// (another key); on error `self` is unchanged.
    pub fn unmerge(&mut self, other: &Self) -> Result<(), EstimateError> {
        let n = self.n.checked_sub(other.n);
        same_identity(&self.mechanism, &other.mechanism)?;
        let Some(n) = n else { return Err(EstimateError::MismatchedConfig) };
        match (&mut self.state, &other.state) {
            (State::Counts(a), State::Counts(b)) => a.unmerge(b)?,
            (State::Moments { sum: s1, sum_sq: q1 }, State::Moments { sum: s2, sum_sq: q2 }) => {
                let (s, q) = (s1.checked_sub(*s2), q1.checked_sub(*q2));
                let (Some(s), Some(q)) = (s, q) else { return Err(EstimateError::MismatchedConfig) };
                (*s1, *q1) = (s, q);
            }
            (State::Ones(a), State::Ones(b)) => {
                *a = a.checked_sub(*b).ok_or(EstimateError::MismatchedConfig)?;
            }
            _ => return Err(EstimateError::MismatchedConfig),
        }
        self.n = n;
        Ok(())
    }

    /// Postcard bytes for storage (a format version, the mechanism, the count, the state).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain integers and vectors into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decode stored bytes, bounded: at most [`MAX_STORED_BYTES`], no trailing bytes,
    /// and the state must be consistent with the mechanism and the count.
    ///
    /// # Errors
    /// [`EstimateError::Corrupt`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EstimateError> {
        if bytes.len() > MAX_STORED_BYTES {
            return Err(EstimateError::Corrupt);
        }
        let (acc, rest) = match bytes.first() {
            Some(&FORMAT_VERSION) => {
                postcard::take_from_bytes::<Self>(bytes).map(|(acc, rest)| (Some(acc), rest))
            }
            Some(2) => postcard::take_from_bytes::<AccumulatorV2>(bytes).map(|(old, rest)| {
                let mechanism = old.mechanism.upgrade();
                (
                    mechanism.map(|m| Self {
                        version: FORMAT_VERSION,
                        mechanism: m,
                        n: old.n,
                        state: old.state,
                    }),
                    rest,
                )
            }),
            Some(1) => postcard::take_from_bytes::<AccumulatorV1>(bytes).map(|(old, rest)| {
                let mut state = match old.state {
                    StateV1::Counts(c) => State::Counts(Counts::Dense(c)),
                    StateV1::Moments { sum, sum_sq } => State::Moments { sum, sum_sq },
                    StateV1::Ones(x) => State::Ones(x),
                };
                if let State::Counts(c) = &mut state {
                    c.normalise();
                }
                let mechanism = old.mechanism.upgrade();
                (mechanism.map(|m| Self { version: FORMAT_VERSION, mechanism: m, n: old.n, state }), rest)
            }),
            _ => return Err(EstimateError::Corrupt),
        }
        .map_err(|_| EstimateError::Corrupt)?;
        let acc = acc.ok_or(EstimateError::Corrupt)?;
        if !rest.is_empty() || acc.version != FORMAT_VERSION || !acc.consistent() {
            return Err(EstimateError::Corrupt);
        }
        Ok(acc)
    }

    /// The invariants `add` maintains.
    fn consistent(&self) -> bool {
        let n = self.n;
        if let State::Counts(c) = &self.state
            && !c.is_canonical()
        {
            return false;
        }
        match (*self.mechanism.params(), &self.state) {
            (Params::Grr { d }, State::Counts(c)) => c.len() == d as usize && sum_is(c, n),
            (Params::Hadamard { k, .. }, State::Counts(c)) => c.len() == k as usize && sum_is(c, n),
            (Params::HadamardBlocks { blocks, block_size, .. }, State::Counts(c)) => {
                c.len() == blocks as usize * block_size as usize && sum_is(c, n)
            }
            (Params::Olh { g, pool, .. }, State::Counts(c)) => {
                c.len() == g as usize * pool as usize && sum_is(c, n)
            }
            (Params::Oue { d } | Params::Sue { d }, State::Counts(c)) => {
                c.len() == d as usize && c.max() <= n
            }
            (Params::Piecewise { outputs, .. }, State::Moments { sum, sum_sq }) => {
                let top = u128::from(outputs - 1);
                *sum <= u128::from(n) * top && *sum_sq <= u128::from(n) * top * top && *sum_sq >= *sum
            }
            (Params::Duchi { .. }, State::Ones(ones)) => *ones <= n,
            _ => false,
        }
    }
}

/// `Ok` when `a` and `b` are the same mechanism under the same key; otherwise which of
/// the two differs.
fn same_identity(a: &Mechanism, b: &Mechanism) -> Result<(), EstimateError> {
    if a.selection() != b.selection() {
        Err(EstimateError::MismatchedConfig)
    } else if a.key() != b.key() {
        Err(EstimateError::MismatchedKey)
    } else {
        Ok(())
    }
}

fn sum_is(c: &Counts, n: u64) -> bool {
    c.sum() == Some(n)
}

/// The version-1 layout (dense counts), still decoded by [`Accumulator::from_bytes`].
#[derive(Deserialize)]
struct AccumulatorV1 {
    #[allow(dead_code, reason = "checked by the caller from the first byte")]
    version: u8,
    mechanism: MechanismV2,
    n: u64,
    state: StateV1,
}

/// The version-2 layout: as version 3, with [`MechanismV2`].
#[derive(Deserialize)]
struct AccumulatorV2 {
    #[allow(dead_code, reason = "checked by the caller from the first byte")]
    version: u8,
    mechanism: MechanismV2,
    n: u64,
    state: State,
}

/// A mechanism as versions 1 and 2 stored it: general-privacy HR without its key.
#[derive(Deserialize)]
struct MechanismV2 {
    epsilon: confiance::Epsilon,
    params: ParamsV2,
}

/// [`Params`] before general-privacy HR had a key (same variant order).
#[derive(Deserialize)]
enum ParamsV2 {
    Grr { d: u32 },
    Oue { d: u32 },
    Sue { d: u32 },
    Olh { d: u32, g: u32, pool: u32, pool_key: u64 },
    Hadamard { d: u32, k: u32 },
    Piecewise { min: i64, max: i64, step: u64, window: u64, outputs: u64 },
    Duchi { min: i64, max: i64 },
    HadamardBlocks {},
}

impl MechanismV2 {
    /// The same mechanism today; `None` for general-privacy HR (unkeyed layout).
    fn upgrade(self) -> Option<Mechanism> {
        let params = match self.params {
            ParamsV2::Grr { d } => Params::Grr { d },
            ParamsV2::Oue { d } => Params::Oue { d },
            ParamsV2::Sue { d } => Params::Sue { d },
            ParamsV2::Olh { d, g, pool, pool_key } => Params::Olh { d, g, pool, pool_key },
            ParamsV2::Hadamard { d, k } => Params::Hadamard { d, k },
            ParamsV2::Piecewise { min, max, step, window, outputs } => {
                Params::Piecewise { min, max, step, window, outputs }
            }
            ParamsV2::Duchi { min, max } => Params::Duchi { min, max },
            ParamsV2::HadamardBlocks {} => return None,
        };
        Mechanism::from_parts(self.epsilon, params).ok()
    }
}

/// [`State`] of format version 1.
#[derive(Deserialize)]
enum StateV1 {
    Counts(Vec<u64>),
    Moments { sum: u128, sum_sq: u128 },
    Ones(u64),
}

fn index(v: u32, bound: u32) -> Result<usize, EstimateError> {
    if v < bound { Ok(v as usize) } else { Err(EstimateError::OutOfRange) }
}

fn check_bits(bits: &[u8], d: u32) -> Result<(), EstimateError> {
    if bits.len() != (d as usize).div_ceil(8) {
        return Err(EstimateError::BadLength);
    }
    let used = d % 8;
    if used != 0 && bits.last().is_some_and(|last| last >> used != 0) {
        return Err(EstimateError::BadLength);
    }
    Ok(())
}

#[cfg(test)]
mod tests;

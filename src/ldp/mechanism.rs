//! Mechanism selection and validated parameters.

use super::theory::{duchi_worst, exp_ratio, grr_var, hr_blocks_var, olh_g, oue_var, pm_worst, sue_var};
use super::{Domain, LdpError, MechanismName};
use crate::Epsilon;
use serde::{Deserialize, Serialize};

/// The largest number of categories a categorical domain may have (2^24).
pub const MAX_CATEGORIES: u32 = 1 << 24;
/// The largest `max − min` of a numeric domain (2^40).
pub const MAX_NUMERIC_RANGE: u64 = 1 << 40;
/// The smallest seed pool [`Selection::new`] gives OLH (see [`olh_default_pool`]).
pub const DEFAULT_OLH_POOL: u32 = 1024;
/// The largest `d` for which [`MechanismName::Auto`] considers the unary encodings (OUE,
/// SUE): they send `d` bits and draw `d` Bernoullis per report (128 bytes and about
/// 0.1–0.3 ms at d = 1024; 8 KiB and 3 ms at d = 65 536).
pub const MAX_UNARY_CATEGORIES: u32 = 1024;

/// The public key of OLH's seed pool for `metric` in `period` (for example the start of
/// the report's time bucket, in seconds): the first 8 bytes (little-endian) of
/// SHA-256(`"confiance/olh-pool/v1\0"` ‖ len(metric) as u32 LE ‖ metric ‖ period as u64 LE).
///
/// A pool reused across periods turns its hash collisions into a fixed bias and lets
/// one device's reports in different periods share hash functions; deriving the key per
/// period makes both fresh. Device and aggregator derive the same key from public data
/// ([`Mechanism::for_period`]).
///
/// ```
/// use confiance::ldp::olh_pool_key;
/// assert_ne!(olh_pool_key("app.screen", 0), olh_pool_key("app.screen", 1));
/// assert_ne!(olh_pool_key("app.screen", 0), olh_pool_key("app.screens", 0));
/// assert_eq!(olh_pool_key("a", 7), olh_pool_key("a", 7));
/// ```
#[must_use]
pub fn olh_pool_key(metric: &str, period: u64) -> u64 {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(b"confiance/olh-pool/v1\0");
    h.update(u32::try_from(metric.len()).unwrap_or(u32::MAX).to_le_bytes());
    h.update(metric.as_bytes());
    h.update(period.to_le_bytes());
    let out: [u8; 32] = h.finalize().into();
    let mut first = [0u8; 8];
    first.copy_from_slice(out.get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(first)
}

/// OLH's default seed-pool size for `d` categories hashed into `0..g`: the smallest
/// power of two with `g·pool ≥ 64·d`, at least [`DEFAULT_OLH_POOL`], but no larger than
/// `pool·d ≤ 2^26` (decoding: pool × d hash evaluations, about 0.1 s) and
/// `pool·g ≤ 2^20` (accumulator: 8 MiB of counts once dense).
///
/// A finite pool's hash collisions bias Wang et al.'s estimator; the aggregator removes
/// that bias for up to `g·pool/64` heavy categories (its collision correction,
/// docs/privacy.md §3), so `g·pool ≥ 64·d` lets it correct every category. For large `d`
/// the decoding bound wins (1024 at d = 65 536): the heaviest categories are corrected,
/// the light ones keep a small pool term.
///
/// ```
/// use confiance::ldp::olh_default_pool;
/// assert_eq!(olh_default_pool(65_536, 4), 1024);
/// assert_eq!(olh_default_pool(1024, 4), 16_384);
/// assert_eq!(olh_default_pool(1024, 56), 2048);
/// assert_eq!(olh_default_pool(16, 56), 1024);
/// ```
#[must_use]
pub const fn olh_default_pool(d: u32, g: u32) -> u32 {
    let (d, g) = (if d == 0 { 1 } else { d as u64 }, if g == 0 { 1 } else { g as u64 });
    let want = (64 * d).div_ceil(g).next_power_of_two();
    let by_d = (1u64 << 26) / d;
    let by_g = (1u64 << 20) / g;
    let cap = if by_d < by_g { by_d } else { by_g };
    // Largest power of two ≤ cap (cap ≤ 2^26).
    let cap = if cap == 0 { 1 } else { 1u64 << (63 - cap.leading_zeros()) };
    let pool = if want < cap { want } else { cap };
    if pool <= DEFAULT_OLH_POOL as u64 { DEFAULT_OLH_POOL } else { pool as u32 }
}
/// The Piecewise mechanism's minimum number of grid steps across the input range.
pub const PIECEWISE_RESOLUTION: u64 = 4096;

/// A mechanism's parameters, everything the encoder and the accumulator need.
///
/// Every combination accepted by [`Mechanism::from_parts`] is exactly ε-LDP; the
/// choices [`Selection::new`] makes only tune utility.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Params {
    /// Generalised randomised response over `0..d`.
    Grr {
        /// Categories.
        d: u32,
    },
    /// Optimised unary encoding: `d` bits, p = 1/2, q = 1/(e^ε + 1).
    Oue {
        /// Categories.
        d: u32,
    },
    /// Symmetric unary encoding: `d` bits, p = e^{ε/2}/(e^{ε/2} + 1), q = 1 − p.
    Sue {
        /// Categories.
        d: u32,
    },
    /// Optimised local hashing into `0..g` with hash functions from a public pool.
    Olh {
        /// Categories.
        d: u32,
        /// Hash range (≥ 2).
        g: u32,
        /// Number of hash functions in the pool (≥ 1).
        pool: u32,
        /// Public key naming the pool: [`olh_pool_key`] of the metric and period.
        pool_key: u64,
    },
    /// Hadamard response with a `k × k` Sylvester–Hadamard matrix, `k` a power of two `> d`;
    /// category `v` owns the columns where row `v + 1` is +1.
    Hadamard {
        /// Categories.
        d: u32,
        /// Matrix order.
        k: u32,
    },
    /// Discretised Piecewise mechanism: outputs `0..outputs`, a window of `window`
    /// outputs starting at `(x − min)·step` weighted e^ε, all others weighted 1.
    Piecewise {
        /// Smallest input.
        min: i64,
        /// Largest input.
        max: i64,
        /// Grid steps per unit of input (≥ 1).
        step: u64,
        /// Window width (≥ 1).
        window: u64,
        /// Number of outputs, `(max − min)·step + window`.
        outputs: u64,
    },
    /// Duchi et al.: one bit, P(1) = u·p + (1 − u)(1 − p), u = (x − min)/(max − min), p = e^ε/(e^ε + 1).
    Duchi {
        /// Smallest input.
        min: i64,
        /// Largest input.
        max: i64,
    },
    /// General-privacy Hadamard response (Acharya, Sun, Zhang 2019, §4): `blocks`
    /// blocks of `block_size` outputs (both powers of two), `blocks · block_size`
    /// outputs in all. Category `v` lives in block [`hadamard_block`]`(key, blocks, v)`
    /// — `v mod blocks` rotated by a keyed offset of its row, so that no fixed alignment
    /// of the data crowds one block — as row `⌊v / blocks⌋ + 1` of the
    /// `block_size × block_size` Sylvester–Hadamard matrix, and owns the
    /// `block_size / 2` outputs of its block where that row is +1; they get weight e^ε,
    /// every other output weight 1.
    HadamardBlocks {
        /// Categories.
        d: u32,
        /// Number of blocks `B` (a power of two, ≥ 1).
        blocks: u32,
        /// Outputs per block `b` (a power of two with `b > ⌈d / B⌉`).
        block_size: u32,
        /// Public key of the category-to-block permutation (the period's
        /// [`olh_pool_key`], like OLH's pool).
        key: u64,
    },
}

/// A resolved, validated LDP mechanism: ε plus [`Params`], public key included — its
/// whole identity. Encoders and accumulators use it; two mechanisms that differ in any
/// parameter (OLH's pool key, general-privacy HR's permutation key) are different.
///
/// A [`Selection`] (what a catalogue chooses) becomes a `Mechanism` only for a metric and
/// a period ([`Selection::for_period`]): there is no default key for a decoder to forget.
///
/// ```
/// use confiance::ldp::{Domain, MechanismName, Selection};
/// use confiance::Epsilon;
/// let eps = Epsilon::from_ratio(1, 2)?;
/// // Small d: generalised randomised response has the lowest variance.
/// let s = Selection::new(Domain::Categorical { d: 2 }, eps, MechanismName::Auto)?;
/// assert_eq!(s.name(), MechanismName::Grr);
/// let m = s.for_period("watch.always-on-display", 1_800_000_000);
/// assert_eq!(m.key(), None); // GRR has no public randomness
/// // A numeric mechanism on categories is refused.
/// assert!(Selection::new(Domain::Categorical { d: 4 }, eps, MechanismName::Piecewise).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "MechanismRepr")]
pub struct Mechanism {
    epsilon: Epsilon,
    params: Params,
}

#[derive(Deserialize)]
struct MechanismRepr {
    epsilon: Epsilon,
    params: Params,
}

impl TryFrom<MechanismRepr> for Mechanism {
    type Error = LdpError;
    fn try_from(r: MechanismRepr) -> Result<Self, LdpError> {
        Self::from_parts(r.epsilon, r.params)
    }
}

/// A mechanism chosen for a domain and ε, before its public key: what a catalogue's
/// `mechanism = "..."` resolves to, the same for every period. It cannot encode or
/// accumulate; [`Selection::for_period`] makes the [`Mechanism`] of one metric and
/// period, with the key device and aggregator both derive from public data.
///
/// ```
/// use confiance::ldp::{Domain, LdpValue, MechanismName, Selection, olh_pool_key};
/// use confiance::{Epsilon, rng::OsRng};
/// let s = Selection::new(Domain::Categorical { d: 100 }, Epsilon::from_ratio(1, 1)?, MechanismName::Olh)?;
/// let (a, b) = (s.for_period("app.screen", 0), s.for_period("app.screen", 3600));
/// assert_eq!(a.key(), Some(olh_pool_key("app.screen", 0)));
/// assert_ne!(a.key(), b.key());
/// assert_eq!(a.selection(), s);
/// let _report = a.encode(LdpValue::Category(7), &mut OsRng::new())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Selection(Mechanism);

impl Selection {
    /// Chooses the mechanism `name` for `domain` at `epsilon`, resolving
    /// [`MechanismName::Auto`] to the lowest theoretical variance among the mechanisms
    /// whose report size and encoding cost do not grow with `d`, plus OUE and SUE while
    /// `d ≤` [`MAX_UNARY_CATEGORIES`]: for categories the smallest of GRR, OUE, SUE and
    /// general-privacy Hadamard response (Wang et al. 2017; Acharya et al. 2019) — OLH
    /// is never picked, its seed pool adds variance growing with the number of reports
    /// (docs/privacy.md); for numbers the smaller worst-case variance of Piecewise and
    /// Duchi (Wang et al. 2019).
    ///
    /// # Errors
    /// [`LdpError::BadCategoryCount`], [`LdpError::BadNumericRange`] or
    /// [`LdpError::MechanismDomainMismatch`].
    pub fn new(domain: Domain, epsilon: Epsilon, name: MechanismName) -> Result<Self, LdpError> {
        Mechanism::choose(domain, epsilon, name).map(|m| m.selection())
    }

    /// The mechanism for reports of `metric` in `period` (the start of the report's time
    /// bucket, in seconds): its public key is [`olh_pool_key`]`(metric, period)` — OLH's
    /// pool and general-privacy HR's category-to-block permutation, fresh each period.
    /// Device and aggregator call it with the same metric and period (the report's
    /// `time`), so they agree on the key without sending it.
    #[must_use]
    pub fn for_period(&self, metric: &str, period: u64) -> Mechanism {
        if self.0.key().is_some() { self.0.with_key(olh_pool_key(metric, period)) } else { self.0 }
    }

    /// Whether `mechanism` is this selection under some key.
    #[must_use]
    pub fn matches(&self, mechanism: &Mechanism) -> bool {
        mechanism.selection() == *self
    }

    /// ε.
    #[must_use]
    pub const fn epsilon(&self) -> Epsilon {
        self.0.epsilon()
    }

    /// The parameters, with every key field 0 (a selection has no key yet).
    #[must_use]
    pub const fn params(&self) -> &Params {
        self.0.params()
    }

    /// The resolved name (never [`MechanismName::Auto`]).
    #[must_use]
    pub const fn name(&self) -> MechanismName {
        self.0.name()
    }

    /// The domain.
    #[must_use]
    pub const fn domain(&self) -> Domain {
        self.0.domain()
    }

    /// The mechanism under an explicit key (tests, simulations; `hazmat::keyed`).
    pub(crate) const fn keyed(&self, key: u64) -> Mechanism {
        self.0.with_key(key)
    }
}

/// General-privacy HR's block for category `v` among `blocks` blocks (a power of two)
/// under the permutation key `key`: with `v = r·B + c` (`c < B`), block
/// `(c + o(key, r)) mod B`, where `o` is a keyed 64-bit mix of the row index `r`. Each
/// row of `B` consecutive categories is rotated as a whole, so it is a bijection from
/// categories to (block, row) slots; two categories of one row never share a block, and
/// two of different rows share one with probability 1/B over the key — whatever their
/// alignment (0, B, 2B, … no longer all land in block 0). Multiplications, shifts and
/// xors only: constant time in `v`.
///
/// ```
/// use confiance::ldp::hadamard_block;
/// // Row 0 (categories 0..32) fills the 32 blocks once, under any key.
/// let mut row0: Vec<u32> = (0..32).map(|v| hadamard_block(7, 32, v)).collect();
/// row0.sort_unstable();
/// assert_eq!(row0, (0..32).collect::<Vec<_>>());
/// // Aligned categories spread over the blocks.
/// let aligned: std::collections::BTreeSet<u32> = (0..16).map(|r| hadamard_block(7, 32, 32 * r)).collect();
/// assert!(aligned.len() > 8);
/// ```
#[must_use]
pub const fn hadamard_block(key: u64, blocks: u32, v: u32) -> u32 {
    let mask = blocks.wrapping_sub(1);
    let row = v >> blocks.trailing_zeros();
    #[allow(clippy::cast_possible_truncation, reason = "masked below blocks, a u32")]
    let offset = super::hash::block_offset(key, row) as u32;
    (v.wrapping_add(offset)) & mask
}

fn numeric_range(min: i64, max: i64) -> Result<u64, LdpError> {
    if min >= max {
        return Err(LdpError::BadNumericRange);
    }
    let r = max.abs_diff(min);
    if r > MAX_NUMERIC_RANGE {
        return Err(LdpError::BadNumericRange);
    }
    Ok(r)
}

fn check_d(d: u32) -> Result<(), LdpError> {
    if (2..=MAX_CATEGORIES).contains(&d) { Ok(()) } else { Err(LdpError::BadCategoryCount) }
}

impl Mechanism {
    fn choose(domain: Domain, epsilon: Epsilon, name: MechanismName) -> Result<Self, LdpError> {
        let e = exp_ratio(f64::from(epsilon.numerator()), f64::from(epsilon.denominator()));
        let e_half = exp_ratio(f64::from(epsilon.numerator()), 2.0 * f64::from(epsilon.denominator()));
        let params = match domain {
            Domain::Categorical { d } => {
                check_d(d)?;
                let name = match name {
                    MechanismName::Auto => auto_categorical(e, e_half, d),
                    other => other,
                };
                match name {
                    MechanismName::Grr => Params::Grr { d },
                    MechanismName::Oue => Params::Oue { d },
                    MechanismName::Sue => Params::Sue { d },
                    MechanismName::Olh => {
                        let g = olh_g(e);
                        Params::Olh { d, g, pool: olh_default_pool(d, g), pool_key: 0 }
                    }
                    MechanismName::Hadamard => Params::Hadamard { d, k: hadamard_order(d)? },
                    MechanismName::HadamardBlocks => {
                        let (blocks, block_size) = hadamard_blocks(d, e);
                        Params::HadamardBlocks { d, blocks, block_size, key: 0 }
                    }
                    _ => return Err(LdpError::MechanismDomainMismatch),
                }
            }
            Domain::Numeric { min, max } => {
                let r = numeric_range(min, max)?;
                let name = match name {
                    MechanismName::Auto if pm_worst(e_half) <= duchi_worst(e) => MechanismName::Piecewise,
                    MechanismName::Auto => MechanismName::Duchi,
                    other => other,
                };
                match name {
                    MechanismName::Piecewise => piecewise(min, max, r, e_half),
                    MechanismName::Duchi => Params::Duchi { min, max },
                    _ => return Err(LdpError::MechanismDomainMismatch),
                }
            }
        };
        Self::from_parts(epsilon, params)
    }

    /// OLH with an explicit seed pool: `pool` hash functions named by the public
    /// `pool_key`. A larger pool lowers the extra variance a finite pool adds
    /// (docs/privacy.md) and raises decoding cost (pool × d).
    ///
    /// # Errors
    /// [`LdpError::BadCategoryCount`] or [`LdpError::BadParameters`] (`pool == 0`).
    pub fn olh_with_pool(d: u32, epsilon: Epsilon, pool: u32, pool_key: u64) -> Result<Self, LdpError> {
        let e = exp_ratio(f64::from(epsilon.numerator()), f64::from(epsilon.denominator()));
        Self::from_parts(epsilon, Params::Olh { d, g: olh_g(e), pool, pool_key })
    }

    /// The same mechanism under the public key `key`: OLH's pool key, general-privacy
    /// HR's permutation key; mechanisms without public randomness are returned unchanged.
    pub(crate) const fn with_key(mut self, key: u64) -> Self {
        match self.params {
            Params::Olh { d, g, pool, .. } => self.params = Params::Olh { d, g, pool, pool_key: key },
            Params::HadamardBlocks { d, blocks, block_size, .. } => {
                self.params = Params::HadamardBlocks { d, blocks, block_size, key };
            }
            _ => {}
        }
        self
    }

    /// The public key the decoder must share with the encoder: OLH's pool key or
    /// general-privacy HR's permutation key; `None` for mechanisms without public
    /// randomness (their parameters are their whole identity).
    #[must_use]
    pub const fn key(&self) -> Option<u64> {
        match self.params {
            Params::Olh { pool_key, .. } => Some(pool_key),
            Params::HadamardBlocks { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The mechanism without its key: what a catalogue chooses, the same for every period.
    #[must_use]
    pub const fn selection(&self) -> Selection {
        Selection(self.with_key(0))
    }

    /// The same mechanism re-keyed for reports of `metric` in `period`
    /// ([`Selection::for_period`]).
    #[must_use]
    pub fn for_period(self, metric: &str, period: u64) -> Self {
        self.selection().for_period(metric, period)
    }

    /// A mechanism from explicit parameters, validated.
    ///
    /// # Errors
    /// The [`LdpError`] naming the inconsistency.
    pub fn from_parts(epsilon: Epsilon, params: Params) -> Result<Self, LdpError> {
        match params {
            Params::Grr { d } | Params::Oue { d } | Params::Sue { d } => check_d(d)?,
            Params::Olh { d, g, pool, .. } => {
                check_d(d)?;
                if g < 2 || pool == 0 {
                    return Err(LdpError::BadParameters);
                }
            }
            Params::Hadamard { d, k } => {
                check_d(d)?;
                if !k.is_power_of_two() || k <= d {
                    return Err(LdpError::BadParameters);
                }
            }
            Params::HadamardBlocks { d, blocks, block_size, .. } => {
                check_d(d)?;
                let outputs = u64::from(blocks) * u64::from(block_size);
                if !blocks.is_power_of_two()
                    || !block_size.is_power_of_two()
                    || block_size < 2
                    || d.div_ceil(blocks) >= block_size
                    || outputs > 1 << 31
                {
                    return Err(LdpError::BadParameters);
                }
            }
            Params::Piecewise { min, max, step, window, outputs } => {
                let r = numeric_range(min, max)?;
                let t = r
                    .checked_mul(step)
                    .filter(|_| step >= 1 && window >= 1)
                    .ok_or(LdpError::BadParameters)?;
                if t.checked_add(window) != Some(outputs) || outputs > 1 << 60 {
                    return Err(LdpError::BadParameters);
                }
            }
            Params::Duchi { min, max } => {
                numeric_range(min, max)?;
            }
        }
        Ok(Self { epsilon, params })
    }

    /// ε.
    #[must_use]
    pub const fn epsilon(&self) -> Epsilon {
        self.epsilon
    }

    /// The parameters.
    #[must_use]
    pub const fn params(&self) -> &Params {
        &self.params
    }

    /// The resolved name (never [`MechanismName::Auto`]).
    #[must_use]
    pub const fn name(&self) -> MechanismName {
        match self.params {
            Params::Grr { .. } => MechanismName::Grr,
            Params::Oue { .. } => MechanismName::Oue,
            Params::Sue { .. } => MechanismName::Sue,
            Params::Olh { .. } => MechanismName::Olh,
            Params::Hadamard { .. } => MechanismName::Hadamard,
            Params::HadamardBlocks { .. } => MechanismName::HadamardBlocks,
            Params::Piecewise { .. } => MechanismName::Piecewise,
            Params::Duchi { .. } => MechanismName::Duchi,
        }
    }

    /// The domain the mechanism privatises.
    #[must_use]
    pub const fn domain(&self) -> Domain {
        match self.params {
            Params::Grr { d }
            | Params::Oue { d }
            | Params::Sue { d }
            | Params::Olh { d, .. }
            | Params::Hadamard { d, .. }
            | Params::HadamardBlocks { d, .. } => Domain::Categorical { d },
            Params::Piecewise { min, max, .. } | Params::Duchi { min, max } => Domain::Numeric { min, max },
        }
    }
}

/// `auto` for categories: the lowest per-report variance at a rare category among GRR,
/// general-privacy HR and (for `d ≤ MAX_UNARY_CATEGORIES`) OUE and SUE. Ties go to the
/// earlier candidate.
fn auto_categorical(e: f64, e_half: f64, d: u32) -> MechanismName {
    let (blocks, _) = hadamard_blocks(d, e);
    let unary = d <= MAX_UNARY_CATEGORIES;
    let candidates = [
        (MechanismName::Grr, grr_var(e, f64::from(d)), true),
        (MechanismName::Oue, oue_var(e), unary),
        (MechanismName::Sue, sue_var(e_half), unary),
        (MechanismName::HadamardBlocks, hr_blocks_var(e, f64::from(blocks)), true),
    ];
    let mut best = (MechanismName::Grr, f64::INFINITY);
    for (name, var, allowed) in candidates {
        if allowed && var < best.1 {
            best = (name, var);
        }
    }
    best.0
}

/// General-privacy HR's blocks `B` and block size `b` for `d` categories: the power of
/// two `B ≤ d` minimising [`hr_blocks_var`] (optimum near (e^ε − 1)/2; Acharya et al.
/// take ⌊log2 e^ε⌋, the same power of two or its neighbour), and the smallest power of two
/// `b > ⌈d/B⌉`.
fn hadamard_blocks(d: u32, e: f64) -> (u32, u32) {
    let size = |blocks: u32| (d.div_ceil(blocks) + 1).next_power_of_two();
    let mut best = (1u32, f64::INFINITY);
    let mut blocks = 1u32;
    while blocks <= d.max(1) && blocks <= 1 << 20 {
        let v = hr_blocks_var(e, f64::from(blocks));
        if v < best.1 {
            best = (blocks, v);
        }
        blocks *= 2;
    }
    (best.0, size(best.0))
}

/// The smallest power of two strictly greater than `d` (row 0 is all ones and unused).
fn hadamard_order(d: u32) -> Result<u32, LdpError> {
    d.checked_add(1).and_then(u32::checked_next_power_of_two).ok_or(LdpError::BadCategoryCount)
}

/// Grid size and window for the discretised Piecewise mechanism: at least
/// [`PIECEWISE_RESOLUTION`] steps, and a window of about T·e^{−ε/2} outputs — the
/// continuous mechanism's window-to-travel ratio (C − 1)/(C + 1) = e^{−ε/2}.
fn piecewise(min: i64, max: i64, r: u64, e_half: f64) -> Params {
    let step = PIECEWISE_RESOLUTION.div_ceil(r).max(1);
    let t = r * step;
    // Round half up by truncating w + 1/2 (no `f64::round` in `core`).
    #[allow(clippy::cast_precision_loss, reason = "t <= 2^52, exact in f64")]
    let w = t as f64 / e_half + 0.5;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "0 <= w <= t + 1/2 <= 2^52")]
    let window = (w as u64).max(1);
    Params::Piecewise { min, max, step, window, outputs: t + window }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn eps(n: u32, d: u32) -> Epsilon {
        Epsilon::from_ratio(n, d).unwrap()
    }

    #[test]
    fn auto_categorical_picks_lowest_variance() {
        // GRR wins while d < 3e^ε + 2 (Wang et al. 2017): ε = 1 → d < 10.15.
        let cat = |d| Selection::new(Domain::Categorical { d }, eps(1, 1), MechanismName::Auto).unwrap();
        assert_eq!(cat(10).name(), MechanismName::Grr);
        assert_eq!(cat(11).name(), MechanismName::Oue);
        assert_eq!(cat(1024).name(), MechanismName::Oue);
        // Above MAX_UNARY_CATEGORIES: no d-bit reports; HR (one block at ε = 1) beats GRR.
        assert_eq!(cat(1025).name(), MechanismName::HadamardBlocks);
        let big = cat(65_536);
        assert_eq!(
            *big.params(),
            Params::HadamardBlocks { d: 65_536, blocks: 1, block_size: 131_072, key: 0 }
        );
        // ε = 4: 32 blocks of 4096 (B = 2^⌊log2 e^4⌋, as Acharya et al. and pure-LDP).
        let m = Selection::new(Domain::Categorical { d: 65_536 }, eps(4, 1), MechanismName::Auto).unwrap();
        assert_eq!(*m.params(), Params::HadamardBlocks { d: 65_536, blocks: 32, block_size: 4096, key: 0 });
        // ε = 4, d = 16: GRR (d < 3e^4 + 2).
        let m = Selection::new(Domain::Categorical { d: 16 }, eps(4, 1), MechanismName::Auto).unwrap();
        assert_eq!(m.name(), MechanismName::Grr);
    }

    #[test]
    fn keys_rotate_per_period() {
        for name in [MechanismName::Olh, MechanismName::HadamardBlocks] {
            let s = Selection::new(Domain::Categorical { d: 64 }, eps(4, 1), name).unwrap();
            let keys: alloc::vec::Vec<u64> =
                (0..100).map(|p| s.for_period("metric", p).key().unwrap()).collect();
            let mut unique = keys.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), 100, "{name}");
            assert_eq!(s.for_period("metric", 5).key(), Some(olh_pool_key("metric", 5)));
            assert!(s.matches(&s.for_period("metric", 5)));
            assert_eq!(s.for_period("metric", 5).for_period("metric", 6), s.for_period("metric", 6));
        }
        // Mechanisms without public randomness have no key and do not change.
        let g = Selection::new(Domain::Categorical { d: 64 }, eps(2, 1), MechanismName::Grr).unwrap();
        assert_eq!(g.for_period("metric", 5), g.for_period("metric", 6));
        assert_eq!(g.for_period("metric", 5).key(), None);
    }

    #[test]
    fn hadamard_block_is_a_bijection_per_row() {
        // Every row of B consecutive categories covers the B blocks once, for any key;
        // over keys, category 32r lands in each block about equally often.
        for key in [0u64, 1, u64::MAX, 0x1234_5678_9abc_def0] {
            for row in 0..64u32 {
                let mut seen = [false; 32];
                for c in 0..32 {
                    seen[hadamard_block(key, 32, row * 32 + c) as usize] = true;
                }
                assert!(seen.iter().all(|x| *x));
            }
        }
        let mut hits = [0u32; 32];
        for key in 0..32_000u64 {
            hits[hadamard_block(olh_pool_key("m", key), 32, 32 * 5) as usize] += 1;
        }
        // Binomial(32 000, 1/32): mean 1000, sd 31; 6 sd either side.
        assert!(hits.iter().all(|h| (814..=1186).contains(h)), "{hits:?}");
        assert!((0..1000).all(|v| hadamard_block(9, 1, v) == 0));
    }

    #[test]
    fn auto_numeric_switches_near_1_29() {
        // Wang et al. 2019, §III: PM's worst-case variance beats Duchi's for ε > 1.29.
        let num = |e| Selection::new(Domain::Numeric { min: 0, max: 100 }, e, MechanismName::Auto).unwrap();
        assert_eq!(num(eps(1, 2)).name(), MechanismName::Duchi);
        assert_eq!(num(eps(128, 100)).name(), MechanismName::Duchi);
        assert_eq!(num(eps(130, 100)).name(), MechanismName::Piecewise);
    }

    #[test]
    fn rejects_mismatches_and_bad_domains() {
        let e = eps(1, 1);
        let sel = Selection::new;
        assert_eq!(
            sel(Domain::Categorical { d: 4 }, e, MechanismName::Duchi),
            Err(LdpError::MechanismDomainMismatch)
        );
        assert_eq!(
            sel(Domain::Numeric { min: 0, max: 9 }, e, MechanismName::Grr),
            Err(LdpError::MechanismDomainMismatch)
        );
        assert_eq!(sel(Domain::Categorical { d: 1 }, e, MechanismName::Grr), Err(LdpError::BadCategoryCount));
        assert_eq!(
            sel(Domain::Numeric { min: 5, max: 5 }, e, MechanismName::Auto),
            Err(LdpError::BadNumericRange)
        );
        assert_eq!(
            sel(Domain::Numeric { min: i64::MIN, max: i64::MAX }, e, MechanismName::Auto),
            Err(LdpError::BadNumericRange)
        );
        assert_eq!(
            Mechanism::from_parts(e, Params::Hadamard { d: 4, k: 4 }),
            Err(LdpError::BadParameters),
            "k must exceed d"
        );
        assert_eq!(Mechanism::olh_with_pool(8, e, 0, 1), Err(LdpError::BadParameters));
    }

    #[test]
    fn parameters_are_as_documented() {
        let m = Selection::new(Domain::Categorical { d: 8 }, eps(1, 1), MechanismName::Hadamard).unwrap();
        assert_eq!(*m.params(), Params::Hadamard { d: 8, k: 16 });
        let m =
            Selection::new(Domain::Numeric { min: -1, max: 1 }, eps(2, 1), MechanismName::Piecewise).unwrap();
        // step = 2048, T = 4096, window = round(4096/e) = 1507.
        assert_eq!(
            *m.params(),
            Params::Piecewise { min: -1, max: 1, step: 2048, window: 1507, outputs: 5603 }
        );
    }

    #[test]
    fn serde_validates() {
        let m = Selection::new(Domain::Categorical { d: 8 }, eps(1, 1), MechanismName::Olh)
            .unwrap()
            .for_period("m", 1);
        let bytes = postcard::to_allocvec(&m).unwrap();
        assert_eq!(postcard::from_bytes::<Mechanism>(&bytes).unwrap(), m);
        let bad = postcard::to_allocvec(&(eps(1, 1), Params::Hadamard { d: 8, k: 8 })).unwrap();
        assert!(postcard::from_bytes::<Mechanism>(&bad).is_err());
    }
}

//! The hash family of OLH's seed pool, shared by the device and the aggregator.

/// Murmur3's 64-bit finaliser: a bijective mixer with full avalanche.
#[inline]
const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The per-seed key of pool entry `seed` under the public `pool_key`.
#[inline]
#[must_use]
pub(crate) const fn seed_key(pool_key: u64, seed: u32) -> u64 {
    fmix64(pool_key ^ fmix64((seed as u64).wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// General-privacy HR's keyed offset of category row `row` (mechanism.rs,
/// `hadamard_block`): the same mixer as the pool's entry keys, under its own constant
/// (the first 64 bits of √2's fraction), so a period's two uses of one key are unrelated.
#[inline]
#[must_use]
pub(crate) const fn block_offset(key: u64, row: u32) -> u64 {
    fmix64(key ^ fmix64((row as u64) ^ 0x6a09_e667_f3bc_c908))
}

/// `value` hashed into `0..g` by pool entry `seed_key` (from [`olh_hash`]'s seed).
#[inline]
#[must_use]
pub(crate) const fn hash_with_key(seed_key: u64, value: u32, g: u32) -> u32 {
    let h = fmix64(seed_key ^ (value as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    // Lemire's multiply-shift range reduction; its bias (< g/2^64) affects utility only:
    // privacy comes from randomised response over 0..g, which is exact.
    ((h as u128 * g as u128) >> 64) as u32
}

/// OLH's hash: `value` into `0..g` under entry `seed` of the pool named by `pool_key`.
///
/// The pool is public; the device picks an entry uniformly, the aggregator evaluates
/// every entry on every category once (O(pool·d) decoding).
///
/// ```
/// use confiance::ldp::olh_hash;
/// let h = olh_hash(7, 3, 42, 5);
/// assert!(h < 5);
/// assert_eq!(h, olh_hash(7, 3, 42, 5));
/// ```
#[inline]
#[must_use]
pub const fn olh_hash(pool_key: u64, seed: u32, value: u32, g: u32) -> u32 {
    hash_with_key(seed_key(pool_key, seed), value, g)
}

/// The key of entry `seed` of the pool named by `pool_key`, for evaluating that entry on
/// many values with [`olh_hash_with_key`] (one mixing step fewer per value than
/// [`olh_hash`]).
///
/// ```
/// use confiance::ldp::{olh_hash, olh_hash_with_key, olh_seed_key};
/// let k = olh_seed_key(7, 3);
/// assert!((0..100).all(|v| olh_hash_with_key(k, v, 5) == olh_hash(7, 3, v, 5)));
/// ```
#[inline]
#[must_use]
pub const fn olh_seed_key(pool_key: u64, seed: u32) -> u64 {
    seed_key(pool_key, seed)
}

/// `value` hashed into `0..g` by the pool entry whose key is `seed_key`
/// ([`olh_seed_key`]); equal to [`olh_hash`] of that entry.
#[inline]
#[must_use]
pub const fn olh_hash_with_key(seed_key: u64, value: u32, g: u32) -> u32 {
    hash_with_key(seed_key, value, g)
}

/// Evaluate one pool entry on every category `0..d`, calling `f(v, h(v))`.
#[inline]
pub fn for_each_hash(pool_key: u64, seed: u32, d: u32, g: u32, mut f: impl FnMut(u32, u32)) {
    let k = seed_key(pool_key, seed);
    for v in 0..d {
        f(v, hash_with_key(k, v, g));
    }
}

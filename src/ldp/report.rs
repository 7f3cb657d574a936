//! Report payloads: what a device sends for one privatised value.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The payload of one LDP report, one variant per mechanism.
///
/// **Fixed length**: every integer is encoded at its full width (little-endian), never as
/// a varint, so all reports of one mechanism have the same length whatever the value —
/// a ciphertext's size must not say what a varint would (a small or a large grid point,
/// category or hash value). Under postcard: 1 byte of variant, then GRR and Hadamard 4
/// bytes, OLH 4 + 4, Piecewise 8, Duchi 1; OUE and SUE ⌈d/8⌉ bytes after a length prefix
/// that depends on `d` only. Reports carry no identifier of any kind (docs/design.md#tracks).
///
/// ```
/// use confiance::ldp::LdpReport;
/// let len = |r: &LdpReport| postcard::to_allocvec(r).unwrap().len();
/// assert_eq!(len(&LdpReport::Olh { seed: 300, value: 2 }), 9); // variant, u32 LE, u32 LE
/// assert_eq!(len(&LdpReport::Olh { seed: 0, value: 0 }), 9);
/// let r = LdpReport::Olh { seed: 300, value: 2 };
/// let bytes = postcard::to_allocvec(&r).unwrap();
/// assert_eq!(postcard::from_bytes::<LdpReport>(&bytes).unwrap(), r);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LdpReport {
    /// GRR: the reported category.
    Grr(#[serde(with = "postcard::fixint::le")] u32),
    /// OUE: `d` bits, bit `i` in byte `i / 8` at position `i % 8` (LSB first); padding bits zero.
    Oue(Vec<u8>),
    /// SUE: as OUE.
    Sue(Vec<u8>),
    /// OLH: the pool entry chosen and the randomised hash value in `0..g`.
    Olh {
        /// Pool entry in `0..pool`.
        #[serde(with = "postcard::fixint::le")]
        seed: u32,
        /// Reported hash value in `0..g`.
        #[serde(with = "postcard::fixint::le")]
        value: u32,
    },
    /// Hadamard response: a column index in `0..k`.
    Hadamard(#[serde(with = "postcard::fixint::le")] u32),
    /// Piecewise: a grid point in `0..outputs`.
    Piecewise(#[serde(with = "postcard::fixint::le")] u64),
    /// Duchi: the sign of the report (`true` = +B).
    Duchi(bool),
}

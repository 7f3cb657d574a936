//! Report payloads: what a device sends for one privatised value.

use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

/// The payload of one LDP report, one variant per mechanism.
///
/// Compact under postcard (varints): GRR, OLH, Hadamard, Piecewise and Duchi reports
/// take 1–10 bytes; OUE and SUE take ⌈d/8⌉ + a length prefix.
/// Reports carry no identifier of any kind (docs/design.md#tracks).
///
/// ```
/// use confiance::ldp::LdpReport;
/// let r = LdpReport::Olh { seed: 300, value: 2 };
/// let bytes = postcard::to_allocvec(&r).unwrap();
/// assert_eq!(bytes.len(), 4); // tag, varint(300), varint(2)
/// assert_eq!(postcard::from_bytes::<LdpReport>(&bytes).unwrap(), r);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum LdpReport {
    /// GRR: the reported category.
    Grr(u32),
    /// OUE: `d` bits, bit `i` in byte `i / 8` at position `i % 8` (LSB first); padding bits zero.
    Oue(Vec<u8>),
    /// SUE: as OUE.
    Sue(Vec<u8>),
    /// OLH: the pool entry chosen and the randomised hash value in `0..g`.
    Olh {
        /// Pool entry in `0..pool`.
        seed: u32,
        /// Reported hash value in `0..g`.
        value: u32,
    },
    /// Hadamard response: a column index in `0..k`.
    Hadamard(u32),
    /// Piecewise: a grid point in `0..outputs`.
    Piecewise(u64),
    /// Duchi: the sign of the report (`true` = +B).
    Duchi(bool),
}

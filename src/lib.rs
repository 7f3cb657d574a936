#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]
#![warn(clippy::std_instead_of_core, clippy::std_instead_of_alloc, clippy::alloc_instead_of_core)]
// Library code never unwraps, expects or panics; tests, examples and benches may.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod catalogue;
pub mod consent;
pub mod envelope;
pub mod epsilon;
pub mod hazmat;
pub mod ids;
pub mod ldp;
pub mod noise;
pub mod pseudonym;
pub mod recorder;
pub mod report;
pub mod retention;
pub mod rng;
pub mod time;
pub mod token;

pub use epsilon::Epsilon;
pub use time::Timestamp;

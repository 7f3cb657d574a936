//! The server side of confiance: ingest sealed reports, estimate with confidence
//! intervals, keep data no longer than its tag allows, and answer *who sees what, for
//! how long* with a tamper-evident audit log behind every answer.
#![forbid(unsafe_code)]
// Library code never unwraps, expects or panics; tests, examples and benches may.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod audit;
pub mod decision;
/// Accumulators and estimators: the `confiance-estimate` crate, re-exported.
pub use confiance_estimate as estimate;
pub mod identity;
pub mod ingest;
pub mod issuer;
pub mod keys;
pub mod ledger;
pub mod report;
#[cfg(feature = "server")]
pub mod server;
pub mod service;
pub mod store;
pub mod transcrypt;

//! The server side of confiance: ingest sealed reports, estimate with confidence
//! intervals, keep data no longer than its tag allows, and answer *who sees what, for
//! how long* with a tamper-evident audit log behind every answer.
#![forbid(unsafe_code)]

pub mod audit;
pub mod estimate;
pub mod keys;
pub mod ledger;
pub mod transcrypt;

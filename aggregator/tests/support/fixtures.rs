//! Fixtures shared by the aggregator's integration tests (included with
//! `#[path = "support/fixtures.rs"] mod fixtures;`; not a test crate of its own).

#![allow(dead_code, reason = "each test crate uses its own subset")]

use confiance::catalogue::Catalogue;

/// Parses an id (metric, purpose, recipient, …), panicking on a typo in the test.
pub fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

/// The example catalogue (examples/catalogue.toml): three brands, every metric kind.
pub fn catalogue() -> Catalogue {
    Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml")).unwrap()
}

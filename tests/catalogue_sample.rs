//! The sample fleet catalogue loads, validates and round-trips.

use confiance::catalogue::{Catalogue, MetricKind, Privacy};
use confiance::ids::MetricId;

const SAMPLE: &str = include_str!("../examples/catalogue.toml");

#[test]
fn sample_catalogue_is_valid_and_covers_both_tracks() {
    let c = Catalogue::from_toml_str(SAMPLE).unwrap();
    assert_eq!(c.recipients().count(), 5);
    let anonymous = c.metrics().filter(|(_, m)| matches!(m.privacy, Privacy::Ldp { .. })).count();
    let records = c.metrics().filter(|(_, m)| matches!(m.privacy, Privacy::Pseudonymous)).count();
    assert!(anonymous >= 5 && records >= 3, "{anonymous} anonymous, {records} records");
    let mode = c.metric(&MetricId::new("thermostat.mode").unwrap()).unwrap();
    assert_eq!(mode.kind.categories(), Some(6));
    assert!(matches!(mode.kind, MetricKind::Categorical { .. }));
}

#[test]
fn sample_round_trips_through_toml_and_canonical_bytes() {
    let c = Catalogue::from_toml_str(SAMPLE).unwrap();
    let again = Catalogue::from_toml_str(&c.to_toml_string().unwrap()).unwrap();
    assert_eq!(again, c);
    assert_eq!(again.digest(), c.digest());
    let decoded = Catalogue::from_canonical_bytes(&c.canonical_bytes()).unwrap();
    assert_eq!(decoded, c);
    let mut trailing = c.canonical_bytes();
    trailing.push(0);
    assert!(Catalogue::from_canonical_bytes(&trailing).is_err());
}

#[test]
fn non_canonical_bytes_are_rejected() {
    // Found by the parse_catalogue fuzz target: an encoding that decodes to a valid
    // catalogue but is not its canonical byte string.
    let found = include_bytes!("../fuzz/corpus/parse_catalogue/regression-noncanonical");
    assert!(Catalogue::from_canonical_bytes(found).is_err());
}

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

/// A device of `controller` whose keys and randomness all come from `seed`, in memory,
/// following the example catalogue and sealing to `key_configs`.
pub fn recorder(
    seed: u64,
    controller: &str,
    key_configs: Vec<confiance::envelope::KeyConfig>,
) -> confiance::recorder::Recorder<confiance::hazmat::SeededRng, confiance::recorder::MemoryStorage> {
    use confiance::hazmat::SeedableRng as _;
    let mut rng = confiance::hazmat::SeededRng::seed_from_u64(seed);
    let parts = confiance::recorder::RecorderParts {
        catalogue: catalogue(),
        consent: confiance::consent::ConsentState::new(confiance::consent::DeviceKey::generate(&mut rng)),
        pseudonyms: confiance::pseudonym::DeviceSecret::generate(&mut rng),
        controller: id(controller),
        key_configs,
        rng,
    };
    confiance::recorder::Recorder::new(parts, confiance::recorder::MemoryStorage::default())
}

/// A receipt of `owner`'s subject for calora / product-improvement / thermostat.mode
/// (hold P90D), signed by `dev`, valid and issued from `from` (UTC seconds), with the
/// nonce `[nonce; 16]`.
pub fn calora_mode_receipt(
    owner: &confiance::consent::SubjectKey,
    dev: &confiance::consent::DeviceKey,
    from: u64,
    nonce: u8,
) -> confiance::consent::SignedReceipt {
    use confiance::consent::{ConsentReceipt, RECEIPT_VERSION, Scope};
    let c = catalogue();
    let from = confiance::Timestamp::from_secs(from);
    ConsentReceipt {
        version: RECEIPT_VERSION,
        catalogue_version: c.version(),
        catalogue_digest: c.digest(),
        subject: owner.subject_id(),
        subject_key: owner.public_key(),
        recipient: id("calora"),
        purpose: id("product-improvement"),
        scope: Scope::metrics([id::<confiance::ids::MetricId>("thermostat.mode")]),
        valid_from: from,
        valid_until: None,
        hold: "P90D".parse().unwrap(),
        issued_at: from,
        nonce: [nonce; 16],
        signer: dev.public_key(),
    }
    .sign(dev)
}

//! Privacy-preserving telemetry on the device: a [`Recorder`](recorder::Recorder) takes
//! consent, records values — noised with local differential privacy for anonymous
//! statistics, under a scoped pseudonym and a signed receipt for service records — and
//! seals them to the aggregator's key for the host to send. `no_std` + `alloc`; the `std`
//! feature (default) adds OS randomness and TOML catalogues.
//!
//! # Quickstart: a thermostat
//!
//! A device needs four things, all named in [`RecorderParts`](recorder::RecorderParts):
//! the catalogue of what may be collected (the brand ships it), a device key (kept in the
//! device's secure storage), a pseudonym secret (likewise) and the aggregator's key
//! configuration (embedded at build time or fetched from the aggregator's `GET /v1/keys`, see
//! docs/http.md). Randomness comes from the operating system ([`rng::OsRng`]).
//!
//! ```
//! use confiance::Timestamp;
//! use confiance::catalogue::Catalogue;
//! use confiance::consent::{ConsentRequest, ConsentState, DeviceKey, Scope};
//! use confiance::envelope::KeyConfig;
//! use confiance::ids::{MetricId, PurposeId, RecipientId};
//! use confiance::pseudonym::DeviceSecret;
//! use confiance::recorder::{Limits, MemoryStorage, Recorder, RecorderParts, Value};
//! use confiance::rng::OsRng;
//! # let server = confiance::envelope::SecretKey::generate(&mut OsRng::new());
//! # let key_config_bytes = KeyConfig::new(confiance::envelope::KeyId(1), confiance::envelope::AeadId::ChaCha20Poly1305, server.public_key(), Timestamp::EPOCH, Timestamp::MAX)?.to_bytes();
//!
//! // At start-up. On a real device the keys are generated once and kept in secure
//! // storage, and `MemoryStorage` is replaced by the host's flash or file
//! // (`recorder::Storage`).
//! let mut rng = OsRng::new();
//! let parts = RecorderParts {
//!     catalogue: Catalogue::from_toml_str(include_str!("../examples/catalogue.toml"))?,
//!     consent: ConsentState::new(DeviceKey::generate(&mut rng)),
//!     pseudonyms: DeviceSecret::generate(&mut rng),
//!     controller: RecipientId::new("calora")?,
//!     key_configs: vec![KeyConfig::from_bytes(&key_config_bytes)?],
//!     rng,
//! };
//! let mut thermostat = Recorder::with_limits(parts, MemoryStorage::default(), Limits::microcontroller());
//! // In development, mistakes (a misspelt metric, a value out of range, no consent) are
//! // returned as errors; in the field they are counted and recording never fails.
//! thermostat.set_strict(cfg!(debug_assertions));
//!
//! // The owner agrees, in the app, to share the heating mode with Calora for product
//! // improvement, held 90 days. The signed receipt goes to the aggregator.
//! let now = Timestamp::from_secs(1_800_000_000);
//! let (mode, improvement) = (MetricId::new("thermostat.mode")?, PurposeId::new("product-improvement")?);
//! let request = ConsentRequest::new(
//!     RecipientId::new("calora")?,
//!     improvement.clone(),
//!     Scope::metrics([mode.clone()]),
//!     "P90D".parse()?,
//! );
//! let receipt: Vec<u8> = thermostat.give_consent(request, now)?;
//!
//! // Every hour: record (noised here, on the device).
//! thermostat.record(&mode, &improvement, Value::Category(2), now)?; // "comfort"
//!
//! // When the network is up: flush, upload, acknowledge what the aggregator accepted.
//! for envelope in thermostat.flush(now) {
//!     // POST `receipt` to /v1/receipts, `envelope` to /v1/envelopes (docs/http.md), then:
//!     thermostat.acknowledge(&envelope);
//! }
//! assert_eq!(thermostat.pending_envelopes(), 0);
//! assert_eq!(thermostat.counters().recorded, 1);
//! # let _ = receipt;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Where to go next
//!
//! - [`recorder`]: the device API in full — limits and their presets, storage, strict
//!   mode and error counters, acknowledgements and retries, the sent log.
//! - [`catalogue`]: what may be collected, for what, by whom, held how long; also loaded
//!   from its canonical bytes without TOML on a `no_std` target
//!   ([`Catalogue::from_canonical_bytes`](catalogue::Catalogue::from_canonical_bytes)).
//! - [`consent`]: subjects, delegations, receipts, withdrawals.
//! - [`ldp`], [`noise`], [`pseudonym`], [`envelope`], [`retention`]: the mechanisms.
//! - [`hazmat`]: seeded randomness and other things a device must not use.
//!
//! The design, wire format and privacy guarantees are in the repository's `docs/`.
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

// The repository README's examples stay tested, off the crate's front page.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

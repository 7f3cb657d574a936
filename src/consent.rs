//! Consent: signed receipts and withdrawals, and the device's own consent state
//! (docs/design.md#consent).
//!
//! A [`ConsentReceipt`] (fields after ISO/IEC TS 27560 and the Kantara consent receipt)
//! says that a subject lets one recipient use some metrics for one purpose from
//! `valid_from` until `valid_until` (or until withdrawn), and that data collected under
//! it may be held for `hold`. The device signs it with its Ed25519 [`DeviceKey`]; its id
//! is the SHA-256 of its canonical encoding. A [`Withdrawal`] names a receipt and an
//! instant, signed by the same key.
//!
//! *Access window* of recipient R on metric M: the union over the subject's receipts
//! naming R and M of `[valid_from, min(valid_until, withdrawn_at))`.
//!
//! ```
//! use confiance::catalogue::Catalogue;
//! use confiance::consent::{ConsentState, DeviceKey, Grant, Scope};
//! use confiance::ids::*;
//! use confiance::Timestamp;
//!
//! let catalogue = Catalogue::from_toml_str(include_str!("../examples/catalogue.toml"))?;
//! let mut rng = confiance::rng::OsRng::new();
//! let mut consent = ConsentState::new(DeviceKey::generate(&mut rng));
//! let grant = Grant {
//!     subject: SubjectId([7; 32]),
//!     recipient: RecipientId::new("lab-eu")?,
//!     purpose: PurposeId::new("research")?,
//!     scope: Scope::metrics([MetricId::new("thermostat.setpoint")?]),
//!     valid_from: Timestamp::from_secs(1_000),
//!     valid_until: None,
//!     hold: "P1Y".parse()?,
//! };
//! let receipt = consent.give(&catalogue, grant, Timestamp::from_secs(1_000), &mut rng)?;
//! let bytes = receipt.to_bytes();
//! let verified = confiance::consent::SignedReceipt::from_bytes(&bytes)?;
//! assert_eq!(verified.id(), receipt.id());
//! consent.withdraw(&receipt.id(), Timestamp::from_secs(5_000))?;
//! let window = consent.access_window(&catalogue, &RecipientId::new("lab-eu")?, &MetricId::new("thermostat.setpoint")?);
//! assert_eq!(window, vec![(Timestamp::from_secs(1_000), Timestamp::from_secs(5_000))]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod key;
mod receipt;
mod state;

pub use error::ConsentError;
pub use key::DeviceKey;
pub use receipt::{
    ConsentReceipt, MAX_RECEIPT_BYTES, RECEIPT_VERSION, Scope, SignedReceipt, SignedWithdrawal, Withdrawal,
};
pub use state::{ConsentState, Grant, ReceiptEntry};

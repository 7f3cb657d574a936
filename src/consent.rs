//! Consent: self-certifying subjects, device delegations, signed receipts and
//! withdrawals, and the device's own consent state (docs/privacy.md, "Trust model").
//!
//! A **subject** is named by a key it holds: its [`SubjectId`](crate::ids::SubjectId) is
//! SHA-256(`confiance/subject-id/v1\0` ‖ subject public key). The [`SubjectKey`] (the
//! owner's phone app, or the device itself for a single-device subject) signs
//! [`Delegation`]s of device keys (with a validity window) and [`Revocation`]s.
//!
//! A [`ConsentReceipt`] (fields after ISO/IEC TS 27560 and the Kantara consent receipt)
//! says that a subject lets one recipient use some metrics for one purpose from
//! `valid_from` until `valid_until` (or until withdrawn), and that data collected under
//! it may be held for `hold`. It carries the subject key and is signed by the subject key
//! or by a [`DeviceKey`] the subject delegated; its id is the SHA-256 of its canonical
//! encoding. A [`Withdrawal`] names a receipt and an instant, signed by the subject key
//! or any device key it delegated. Whoever holds neither cannot make either: the ledger
//! checks the chain subject key → delegation → signature from public keys alone.
//!
//! *Access window* of recipient R on metric M: the union over the subject's receipts
//! naming R and M of `[valid_from, min(valid_until, withdrawn_at))`.
//!
//! ```
//! use confiance::catalogue::Catalogue;
//! use confiance::consent::{ConsentState, DeviceKey, Grant, Scope, SubjectKey};
//! use confiance::ids::*;
//! use confiance::Timestamp;
//!
//! let catalogue = Catalogue::from_toml_str(include_str!("../examples/catalogue.toml"))?;
//! let mut rng = confiance::rng::OsRng::new();
//! // The owner's phone holds the subject key and delegates the thermostat's key.
//! let owner = SubjectKey::generate(&mut rng);
//! let device = DeviceKey::generate(&mut rng);
//! let delegation = owner.delegate(device.public_key(), Timestamp::from_secs(0), None, Timestamp::from_secs(0))?;
//! let mut consent = ConsentState::delegated(device, delegation)?;
//! assert_eq!(consent.subject(), owner.subject_id());
//! let grant = Grant {
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

mod certificate;
mod delegation;
mod error;
mod key;
mod receipt;
mod request;
mod state;

pub use certificate::{
    CERTIFICATE_VERSION, Certificate, CertificateError, CertifierKey, DeviceCertificate,
    MAX_CERTIFICATE_BYTES, MAX_MODEL_BYTES, certificate_status,
};
pub use delegation::{Delegation, Revocation, SignedDelegation, SignedRevocation};
pub use error::{ConsentError, Message};
pub use key::{DeviceKey, SubjectKey};
pub use receipt::{
    ConsentReceipt, MAX_RECEIPT_BYTES, RECEIPT_VERSION, Scope, SignedReceipt, SignedWithdrawal, Withdrawal,
};
pub use request::ConsentRequest;
pub use state::{ConsentState, Grant, ReceiptEntry};

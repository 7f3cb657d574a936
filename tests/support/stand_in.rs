//! A stand-in for the consent ledger in transcryption tests (included with
//! `#[path = "support/stand_in.rs"] mod stand_in;`): single-device subjects, one receipt
//! per (device, recipient), every check allowed unless a subject is refused. The real
//! ledger is exercised by the aggregator's tests; these tests are about the algebra.

#![allow(dead_code, reason = "each test crate uses its own subset")]

use std::collections::{HashMap, HashSet};

use confiance::Timestamp;
use confiance::consent::DeviceKey;
use confiance::ids::{DevicePublicKey, MetricId, PurposeId, ReceiptId, RecipientId, SubjectId};
use confiance::pseudonym::{DeviceSecret, Epoch, SystemPublicKey, TranscryptionRequest};
use confiance_aggregator::decision::{ConsentCheck, Decision, DecisionReason, hazmat};
use confiance_aggregator::ledger::ReceiptTerms;
use confiance_aggregator::transcrypt::ConsentQuery;
use rand_core::CryptoRng;

pub const NOW: Timestamp = Timestamp::from_secs(1_700_000_000);

/// A device: its signing key and its pseudonym secret.
pub struct Device {
    pub key: DeviceKey,
    pub secret: DeviceSecret,
}

impl Device {
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self { key: DeviceKey::generate(rng), secret: DeviceSecret::generate(rng) }
    }

    pub fn from_secret(secret: DeviceSecret) -> Self {
        let key = DeviceKey::from_bytes(secret.expose_bytes());
        Self { key, secret }
    }

    pub fn subject(&self) -> SubjectId {
        SubjectId::of_key(&self.key.public_key().as_subject_key())
    }
}

#[derive(Default)]
pub struct StandIn {
    terms: HashMap<ReceiptId, ReceiptTerms>,
    pub refused: HashMap<SubjectId, DecisionReason>,
    known: HashSet<SubjectId>,
}

pub fn purpose() -> PurposeId {
    PurposeId::new("service").unwrap()
}

pub fn metric() -> MetricId {
    MetricId::new("car.odometer-km").unwrap()
}

/// The receipt id the stand-in gives `device` for `recipient`.
pub fn receipt_of(device: &Device, recipient: &RecipientId) -> ReceiptId {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(device.key.public_key().as_bytes());
    h.update(recipient.as_str().as_bytes());
    ReceiptId(h.finalize().into())
}

impl StandIn {
    /// Records `device`'s consent to `recipient`; returns the receipt id.
    pub fn consent(&mut self, device: &Device, recipient: &RecipientId) -> ReceiptId {
        let id = receipt_of(device, recipient);
        self.terms.insert(
            id,
            ReceiptTerms { subject: device.subject(), recipient: recipient.clone(), purpose: purpose() },
        );
        self.known.insert(device.subject());
        id
    }

    /// A signed request of `device` for `recipient` (in `epoch`), consenting on the way.
    pub fn request<R: CryptoRng + ?Sized>(
        &mut self,
        device: &Device,
        pk: &SystemPublicKey,
        recipient: &RecipientId,
        epoch: Option<Epoch>,
        rng: &mut R,
    ) -> TranscryptionRequest {
        let receipt = self.consent(device, recipient);
        TranscryptionRequest::sign(&device.key, &device.secret, pk, receipt, recipient.clone(), epoch, rng)
    }
}

/// The consent query for `device`'s pseudonym going to `recipient` now.
pub fn query(device: &Device, recipient: &RecipientId) -> ConsentQuery {
    ConsentQuery {
        recipient: recipient.clone(),
        metric: metric(),
        purpose: purpose(),
        subject: device.subject(),
        at: NOW,
    }
}

impl ConsentCheck for StandIn {
    fn check(&self, _: &RecipientId, _: &MetricId, _: &PurposeId, s: &SubjectId, _: Timestamp) -> Decision {
        match self.refused.get(s) {
            Some(reason) => hazmat::deny(*reason),
            None => hazmat::allow(None, None),
        }
    }

    fn device_subject(&self, device: &DevicePublicKey, _: Timestamp) -> Option<SubjectId> {
        let s = SubjectId::of_key(&device.as_subject_key());
        self.known.contains(&s).then_some(s)
    }

    fn receipt_terms(&self, receipt: &ReceiptId) -> Option<ReceiptTerms> {
        self.terms.get(receipt).cloned()
    }
}

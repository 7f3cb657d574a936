//! Receipts and withdrawals: fields, canonical encoding, signatures, verification.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::error::{ConsentError, Message};
use super::key::{DeviceKey, SubjectKey};
use crate::Timestamp;
use crate::catalogue::{Catalogue, CatalogueDigest};
use crate::ids::{
    CategoryId, DevicePublicKey, MetricId, PurposeId, ReceiptId, RecipientId, SubjectId, SubjectPublicKey,
};
use crate::retention::Duration;

/// The format version of receipts, withdrawals, delegations and revocations this build
/// writes and reads. Version 2 names the subject by its key and the signer apart
/// (version 1, signed by a lone device key, is refused).
pub const RECEIPT_VERSION: u8 = 2;

/// The largest encoded receipt, withdrawal, delegation or revocation accepted; checked
/// before decoding.
pub const MAX_RECEIPT_BYTES: usize = 16 * 1024;

const RECEIPT_SIG_DOMAIN: &[u8] = b"confiance/receipt/v2\0";
const RECEIPT_ID_DOMAIN: &[u8] = b"confiance/receipt-id/v1\0";
const WITHDRAWAL_SIG_DOMAIN: &[u8] = b"confiance/withdrawal/v2\0";

/// What a receipt covers: named metrics, or whole data categories.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// These metrics.
    Metrics(BTreeSet<MetricId>),
    /// Every metric of these categories that the catalogue lets the recipient have for
    /// the purpose.
    Categories(BTreeSet<CategoryId>),
}

impl Scope {
    /// A scope of named metrics.
    pub fn metrics(ids: impl IntoIterator<Item = MetricId>) -> Self {
        Self::Metrics(ids.into_iter().collect())
    }

    /// A scope of whole data categories.
    pub fn categories(ids: impl IntoIterator<Item = CategoryId>) -> Self {
        Self::Categories(ids.into_iter().collect())
    }

    fn is_empty(&self) -> bool {
        match self {
            Self::Metrics(m) => m.is_empty(),
            Self::Categories(c) => c.is_empty(),
        }
    }

    /// The metrics this scope covers for `recipient` and `purpose` under `catalogue`:
    /// only those the catalogue allows.
    pub fn metrics_in<'a>(
        &'a self,
        catalogue: &'a Catalogue,
        recipient: &'a RecipientId,
        purpose: &'a PurposeId,
    ) -> impl Iterator<Item = &'a MetricId> + 'a {
        catalogue
            .metrics()
            .filter(move |(id, m)| {
                let named = match self {
                    Self::Metrics(ms) => ms.contains(*id),
                    Self::Categories(cs) => cs.contains(&m.category),
                };
                named && catalogue.allows(id, purpose, recipient)
            })
            .map(|(id, _)| id)
    }

    /// Whether the scope names `metric` (directly or by its category).
    #[must_use]
    pub fn names(&self, catalogue: &Catalogue, metric: &MetricId) -> bool {
        match self {
            Self::Metrics(ms) => ms.contains(metric),
            Self::Categories(cs) => catalogue.metric(metric).is_some_and(|m| cs.contains(&m.category)),
        }
    }
}

/// A consent receipt, unsigned. See the [module documentation](super).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConsentReceipt {
    /// Format version ([`RECEIPT_VERSION`]).
    pub version: u8,
    /// The catalogue's version.
    pub catalogue_version: u32,
    /// The catalogue's digest: the receipt's words mean what that catalogue says.
    pub catalogue_digest: CatalogueDigest,
    /// The subject: `SubjectId::of_key(subject_key)`.
    pub subject: SubjectId,
    /// The subject's public key, which the subject id is the hash of.
    pub subject_key: SubjectPublicKey,
    /// Who may receive the data.
    pub recipient: RecipientId,
    /// What for.
    pub purpose: PurposeId,
    /// Which metrics.
    pub scope: Scope,
    /// From when.
    pub valid_from: Timestamp,
    /// Until when, if it ends by itself.
    pub valid_until: Option<Timestamp>,
    /// How long data collected under it may be held (capped by the catalogue's maximum).
    pub hold: Duration,
    /// When the device issued it.
    pub issued_at: Timestamp,
    /// Random bytes, so two receipts with the same terms have different ids.
    pub nonce: [u8; 16],
    /// The Ed25519 key that signs it: the subject key itself
    /// ([`SubjectPublicKey::as_device_key`]) or a device key the subject delegated.
    pub signer: DevicePublicKey,
}

impl ConsentReceipt {
    /// The canonical encoding: postcard, with sets sorted. Signatures and ids are over it.
    #[must_use]
    pub fn canonical_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// SHA-256 of `confiance/receipt-id/v1\0` and the canonical encoding.
    #[must_use]
    pub fn id(&self) -> ReceiptId {
        let mut h = Sha256::new();
        h.update(RECEIPT_ID_DOMAIN);
        h.update(self.canonical_bytes());
        ReceiptId(h.finalize().into())
    }

    /// Whether it is in force at `t`, ignoring withdrawals: `valid_from <= t < valid_until`.
    #[must_use]
    pub fn in_force_at(&self, t: Timestamp) -> bool {
        self.valid_from <= t && self.valid_until.is_none_or(|u| t < u)
    }

    /// Whether the subject key signed it itself (no delegation needed).
    #[must_use]
    pub fn signed_by_subject(&self) -> bool {
        self.signer == self.subject_key.as_device_key()
    }

    /// Checks the receipt's own consistency (version, the subject id is the hash of the
    /// subject key, validity order, non-empty scope).
    ///
    /// # Errors
    /// [`ConsentError::UnsupportedVersion`], [`ConsentError::SubjectKeyMismatch`],
    /// [`ConsentError::InvertedValidity`] or [`ConsentError::EmptyScope`].
    pub fn check_shape(&self) -> Result<(), ConsentError> {
        if self.version != RECEIPT_VERSION {
            return Err(ConsentError::UnsupportedVersion(Message::Receipt, self.version));
        }
        if SubjectId::of_key(&self.subject_key) != self.subject {
            return Err(ConsentError::SubjectKeyMismatch);
        }
        if self.valid_until.is_some_and(|u| u <= self.valid_from) {
            return Err(ConsentError::InvertedValidity);
        }
        if self.scope.is_empty() {
            return Err(ConsentError::EmptyScope);
        }
        Ok(())
    }

    /// Checks the receipt against the catalogue it names: the same digest, a known
    /// recipient and purpose, and a scope no wider than the catalogue allows.
    ///
    /// # Errors
    /// [`ConsentError::CatalogueMismatch`], [`ConsentError::UnknownRecipient`],
    /// [`ConsentError::UnknownPurpose`], [`ConsentError::UnknownMetric`],
    /// [`ConsentError::UnknownCategory`] or [`ConsentError::ScopeTooWide`].
    pub fn check_against(&self, catalogue: &Catalogue) -> Result<(), ConsentError> {
        self.check_shape()?;
        if self.catalogue_digest != catalogue.digest() || self.catalogue_version != catalogue.version() {
            return Err(ConsentError::CatalogueMismatch);
        }
        if catalogue.recipient(&self.recipient).is_none() {
            return Err(ConsentError::UnknownRecipient(self.recipient.clone()));
        }
        if catalogue.purpose(&self.purpose).is_none() {
            return Err(ConsentError::UnknownPurpose(self.purpose.clone()));
        }
        match &self.scope {
            Scope::Metrics(ms) => {
                for m in ms {
                    if catalogue.metric(m).is_none() {
                        return Err(ConsentError::UnknownMetric(m.clone()));
                    }
                    if !catalogue.allows(m, &self.purpose, &self.recipient) {
                        return Err(ConsentError::ScopeTooWide(m.clone()));
                    }
                }
            }
            Scope::Categories(cs) => {
                for c in cs {
                    let single = Scope::Categories(core::iter::once(c.clone()).collect());
                    if single.metrics_in(catalogue, &self.recipient, &self.purpose).next().is_none() {
                        return Err(ConsentError::UnknownCategory(c.clone()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Signs the receipt with a device key (setting `signer` to its public key). Whether
    /// the key may speak for the subject is the ledger's question (its delegation).
    #[must_use]
    pub fn sign(mut self, key: &DeviceKey) -> SignedReceipt {
        self.signer = key.public_key();
        let signature = key.sign(&signing_message(RECEIPT_SIG_DOMAIN, &self.canonical_bytes()));
        SignedReceipt { receipt: self, signature: Sig(signature) }
    }

    /// Signs the receipt with the subject key itself (setting `signer` to it).
    #[must_use]
    pub fn sign_by_subject(mut self, key: &SubjectKey) -> SignedReceipt {
        self.signer = key.public_key().as_device_key();
        let signature = key.sign(&signing_message(RECEIPT_SIG_DOMAIN, &self.canonical_bytes()));
        SignedReceipt { receipt: self, signature: Sig(signature) }
    }
}

pub(super) fn signing_message(domain: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + body.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(body);
    m
}

pub(super) fn verify(key: &[u8; 32], domain: &[u8], body: &[u8], sig: &[u8; 64]) -> Result<(), ConsentError> {
    let vk = VerifyingKey::from_bytes(key).map_err(|_| ConsentError::BadKey)?;
    vk.verify_strict(&signing_message(domain, body), &Signature::from_bytes(sig))
        .map_err(|_| ConsentError::BadSignature)
}

/// Decodes a signed consent message: bounded, version first, no trailing bytes, and
/// canonical — re-encoding gives the same bytes — before any other check, so a
/// signature is only ever verified over the one byte string of its message, and every
/// implementation refuses a non-canonical message with the same error whatever its
/// signature (docs/wire-format.md §7).
pub(super) fn decode_bounded<'a, T: Deserialize<'a> + Serialize>(
    bytes: &'a [u8],
    kind: Message,
) -> Result<T, ConsentError> {
    if bytes.len() > MAX_RECEIPT_BYTES {
        return Err(ConsentError::TooLarge(kind));
    }
    if let Some(&v) = bytes.first()
        && v != RECEIPT_VERSION
    {
        return Err(ConsentError::UnsupportedVersion(kind, v));
    }
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(|_| ConsentError::Malformed(kind))?;
    if !rest.is_empty() {
        return Err(ConsentError::TrailingBytes(kind));
    }
    if postcard::to_allocvec(&value).map_err(|_| ConsentError::Malformed(kind))? != bytes {
        return Err(ConsentError::Malformed(kind));
    }
    Ok(value)
}

/// An Ed25519 signature, encoded as 64 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Sig(pub(super) [u8; 64]);

impl core::fmt::Debug for Sig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Sig({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

impl Serialize for Sig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple as _;
        let mut t = s.serialize_tuple(64)?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Sig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Sig;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("64 signature bytes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Sig, A::Error> {
                let mut out = [0u8; 64];
                for (i, b) in out.iter_mut().enumerate() {
                    *b = seq.next_element()?.ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(Sig(out))
            }
        }
        d.deserialize_tuple(64, V)
    }
}

/// A receipt with the device's signature. Only [`SignedReceipt::from_bytes`] and the
/// device's [`ConsentState`](super::ConsentState) make one, and both guarantee the
/// signature verifies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct SignedReceipt {
    receipt: ConsentReceipt,
    signature: Sig,
}

#[derive(Serialize, Deserialize)]
struct SignedReceiptWire {
    receipt: ConsentReceipt,
    signature: Sig,
}

impl SignedReceipt {
    /// The receipt.
    #[must_use]
    pub const fn receipt(&self) -> &ConsentReceipt {
        &self.receipt
    }

    /// The receipt's id.
    #[must_use]
    pub fn id(&self) -> ReceiptId {
        self.receipt.id()
    }

    /// The 64-byte Ed25519 signature.
    #[must_use]
    pub const fn signature(&self) -> &[u8; 64] {
        &self.signature.0
    }

    /// The wire encoding: postcard of the receipt then the 64 signature bytes.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes (bounded, strict) and verifies a signed receipt: its shape and its
    /// signature. Checking it against a catalogue is [`ConsentReceipt::check_against`].
    ///
    /// # Errors
    /// [`ConsentError::TooLarge`], [`ConsentError::UnsupportedVersion`],
    /// [`ConsentError::Malformed`], [`ConsentError::TrailingBytes`],
    /// [`ConsentError::SubjectKeyMismatch`], [`ConsentError::InvertedValidity`],
    /// [`ConsentError::EmptyScope`], [`ConsentError::BadKey`] or
    /// [`ConsentError::BadSignature`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ConsentError> {
        let w: SignedReceiptWire = decode_bounded(bytes, Message::Receipt)?;
        w.receipt.check_shape()?;
        verify(
            w.receipt.signer.as_bytes(),
            RECEIPT_SIG_DOMAIN,
            &w.receipt.canonical_bytes(),
            &w.signature.0,
        )?;
        let signed = Self { receipt: w.receipt, signature: w.signature };
        // Only the canonical encoding is accepted, so one receipt has one byte string.
        if signed.to_bytes() != bytes {
            return Err(ConsentError::Malformed(Message::Receipt));
        }
        Ok(signed)
    }
}

/// A withdrawal of a receipt, unsigned.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Withdrawal {
    /// Format version ([`RECEIPT_VERSION`]).
    pub version: u8,
    /// The receipt withdrawn.
    pub receipt: ReceiptId,
    /// The subject of the receipt: `SubjectId::of_key(subject_key)`.
    pub subject: SubjectId,
    /// The subject's public key.
    pub subject_key: SubjectPublicKey,
    /// From when the receipt no longer applies (valid time).
    pub at: Timestamp,
    /// When it was signed.
    pub issued_at: Timestamp,
    /// The key that signs it: the subject key or any device key the subject delegated
    /// (not necessarily the one that signed the receipt).
    pub signer: DevicePublicKey,
}

impl Withdrawal {
    /// Signs the withdrawal with a device key (setting `signer` to its public key).
    #[must_use]
    pub fn sign(mut self, key: &DeviceKey) -> SignedWithdrawal {
        self.signer = key.public_key();
        let body = postcard::to_allocvec(&self).unwrap_or_default();
        let signature = Sig(key.sign(&signing_message(WITHDRAWAL_SIG_DOMAIN, &body)));
        SignedWithdrawal { withdrawal: self, signature }
    }

    /// Signs the withdrawal with the subject key itself (setting `signer` to it).
    #[must_use]
    pub fn sign_by_subject(mut self, key: &SubjectKey) -> SignedWithdrawal {
        self.signer = key.public_key().as_device_key();
        let body = postcard::to_allocvec(&self).unwrap_or_default();
        let signature = Sig(key.sign(&signing_message(WITHDRAWAL_SIG_DOMAIN, &body)));
        SignedWithdrawal { withdrawal: self, signature }
    }

    /// Whether the subject key signed it itself.
    #[must_use]
    pub fn signed_by_subject(&self) -> bool {
        self.signer == self.subject_key.as_device_key()
    }
}

/// A withdrawal with the device's signature.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct SignedWithdrawal {
    withdrawal: Withdrawal,
    signature: Sig,
}

#[derive(Serialize, Deserialize)]
struct SignedWithdrawalWire {
    withdrawal: Withdrawal,
    signature: Sig,
}

impl SignedWithdrawal {
    /// The withdrawal.
    #[must_use]
    pub const fn withdrawal(&self) -> &Withdrawal {
        &self.withdrawal
    }

    /// The wire encoding.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes (bounded, strict) and verifies a signed withdrawal.
    ///
    /// # Errors
    /// As [`SignedReceipt::from_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ConsentError> {
        let w: SignedWithdrawalWire = decode_bounded(bytes, Message::Withdrawal)?;
        if w.withdrawal.version != RECEIPT_VERSION {
            return Err(ConsentError::UnsupportedVersion(Message::Withdrawal, w.withdrawal.version));
        }
        if SubjectId::of_key(&w.withdrawal.subject_key) != w.withdrawal.subject {
            return Err(ConsentError::SubjectKeyMismatch);
        }
        let body =
            postcard::to_allocvec(&w.withdrawal).map_err(|_| ConsentError::Malformed(Message::Withdrawal))?;
        verify(w.withdrawal.signer.as_bytes(), WITHDRAWAL_SIG_DOMAIN, &body, &w.signature.0)?;
        let signed = Self { withdrawal: w.withdrawal, signature: w.signature };
        if signed.to_bytes() != bytes {
            return Err(ConsentError::Malformed(Message::Withdrawal));
        }
        Ok(signed)
    }

    /// Checks that this withdrawal may withdraw `receipt`: same id and subject, not
    /// before the receipt started. (Whether its signer speaks for the subject is the
    /// ledger's question: the subject key, or a device it delegated.)
    ///
    /// # Errors
    /// [`ConsentError::UnknownReceipt`], [`ConsentError::SubjectKeyMismatch`] or
    /// [`ConsentError::BeforeValidity`].
    pub fn check_for(&self, receipt: &SignedReceipt) -> Result<(), ConsentError> {
        let (w, r) = (&self.withdrawal, receipt.receipt());
        if w.receipt != receipt.id() {
            return Err(ConsentError::UnknownReceipt);
        }
        if w.subject != r.subject || w.subject_key != r.subject_key {
            return Err(ConsentError::SubjectKeyMismatch);
        }
        if w.at < r.valid_from {
            return Err(ConsentError::BeforeValidity);
        }
        Ok(())
    }
}

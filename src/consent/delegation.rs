//! Device delegations and revocations, signed by the subject key.
//!
//! A [`Delegation`] says "device key D may speak for me from `valid_from` until
//! `valid_until`"; a [`Revocation`] says "device key D no longer speaks for me, from
//! `at` on" (a lost or sold device). Both are signed by the subject key, so anyone can
//! check them from public keys alone.

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::error::{ConsentError, Message};
use super::key::SubjectKey;
use super::receipt::{RECEIPT_VERSION, Sig, decode_bounded, signing_message, verify};
use crate::Timestamp;
use crate::ids::{DelegationId, DevicePublicKey, SubjectId, SubjectPublicKey};

const DELEGATION_SIG_DOMAIN: &[u8] = b"confiance/delegation/v2\0";
const DELEGATION_ID_DOMAIN: &[u8] = b"confiance/delegation-id/v2\0";
const REVOCATION_SIG_DOMAIN: &[u8] = b"confiance/revocation/v2\0";
const REVOCATION_ID_DOMAIN: &[u8] = b"confiance/revocation-id/v2\0";

/// A subject's delegation of a device key, unsigned.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Delegation {
    /// Format version ([`RECEIPT_VERSION`]).
    pub version: u8,
    /// The subject's public key (it signs the delegation).
    pub subject_key: SubjectPublicKey,
    /// The device key delegated.
    pub device: DevicePublicKey,
    /// From when the device may sign for the subject.
    pub valid_from: Timestamp,
    /// Until when, if the delegation ends by itself.
    pub valid_until: Option<Timestamp>,
    /// When the subject signed it.
    pub issued_at: Timestamp,
}

impl Delegation {
    /// The subject: `SubjectId::of_key(subject_key)`.
    #[must_use]
    pub fn subject(&self) -> SubjectId {
        SubjectId::of_key(&self.subject_key)
    }

    /// Whether it is in force at `t`, ignoring revocations: `valid_from <= t < valid_until`.
    #[must_use]
    pub fn in_force_at(&self, t: Timestamp) -> bool {
        self.valid_from <= t && self.valid_until.is_none_or(|u| t < u)
    }

    fn body(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

/// A delegation with the subject key's signature. Only [`SignedDelegation::from_bytes`]
/// and [`SubjectKey::delegate`] make one, and both guarantee the signature verifies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct SignedDelegation {
    delegation: Delegation,
    signature: Sig,
}

#[derive(Serialize, Deserialize)]
struct SignedDelegationWire {
    delegation: Delegation,
    signature: Sig,
}

impl SignedDelegation {
    /// The delegation.
    #[must_use]
    pub const fn delegation(&self) -> &Delegation {
        &self.delegation
    }

    /// Its id: SHA-256 of `confiance/delegation-id/v2\0` and the wire bytes.
    #[must_use]
    pub fn id(&self) -> DelegationId {
        let mut h = Sha256::new();
        h.update(DELEGATION_ID_DOMAIN);
        h.update(self.to_bytes());
        DelegationId(h.finalize().into())
    }

    /// The wire encoding: postcard of the delegation, then the 64 signature bytes.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes (bounded, strict, canonical) and verifies a signed delegation.
    ///
    /// # Errors
    /// [`ConsentError::TooLarge`], [`ConsentError::UnsupportedVersion`],
    /// [`ConsentError::Malformed`], [`ConsentError::TrailingBytes`],
    /// [`ConsentError::InvertedValidity`], [`ConsentError::BadKey`] or
    /// [`ConsentError::BadSignature`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ConsentError> {
        let w: SignedDelegationWire = decode_bounded(bytes, Message::Delegation)?;
        let d = &w.delegation;
        if d.version != RECEIPT_VERSION {
            return Err(ConsentError::UnsupportedVersion(Message::Delegation, d.version));
        }
        if d.valid_until.is_some_and(|u| u <= d.valid_from) {
            return Err(ConsentError::InvertedValidity);
        }
        verify(d.subject_key.as_bytes(), DELEGATION_SIG_DOMAIN, &d.body(), &w.signature.0)?;
        let signed = Self { delegation: w.delegation, signature: w.signature };
        if signed.to_bytes() != bytes {
            return Err(ConsentError::Malformed(Message::Delegation));
        }
        Ok(signed)
    }
}

/// A subject's revocation of a device key, unsigned.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Revocation {
    /// Format version ([`RECEIPT_VERSION`]).
    pub version: u8,
    /// The subject's public key (it signs the revocation).
    pub subject_key: SubjectPublicKey,
    /// The device key revoked.
    pub device: DevicePublicKey,
    /// From when the device no longer speaks for the subject.
    pub at: Timestamp,
    /// When the subject signed it.
    pub issued_at: Timestamp,
}

impl Revocation {
    /// The subject: `SubjectId::of_key(subject_key)`.
    #[must_use]
    pub fn subject(&self) -> SubjectId {
        SubjectId::of_key(&self.subject_key)
    }

    fn body(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

/// A revocation with the subject key's signature. Only [`SignedRevocation::from_bytes`]
/// and [`SubjectKey::revoke`] make one, and both guarantee the signature verifies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct SignedRevocation {
    revocation: Revocation,
    signature: Sig,
}

#[derive(Serialize, Deserialize)]
struct SignedRevocationWire {
    revocation: Revocation,
    signature: Sig,
}

impl SignedRevocation {
    /// The revocation.
    #[must_use]
    pub const fn revocation(&self) -> &Revocation {
        &self.revocation
    }

    /// The wire encoding: postcard of the revocation, then the 64 signature bytes.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Its id: SHA-256 of `confiance/revocation-id/v2\0` and the wire bytes.
    #[must_use]
    pub fn id(&self) -> DelegationId {
        let mut h = Sha256::new();
        h.update(REVOCATION_ID_DOMAIN);
        h.update(self.to_bytes());
        DelegationId(h.finalize().into())
    }

    /// Decodes (bounded, strict, canonical) and verifies a signed revocation.
    ///
    /// # Errors
    /// [`ConsentError::TooLarge`], [`ConsentError::UnsupportedVersion`],
    /// [`ConsentError::Malformed`], [`ConsentError::TrailingBytes`],
    /// [`ConsentError::BadKey`] or [`ConsentError::BadSignature`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ConsentError> {
        let w: SignedRevocationWire = decode_bounded(bytes, Message::Revocation)?;
        let r = &w.revocation;
        if r.version != RECEIPT_VERSION {
            return Err(ConsentError::UnsupportedVersion(Message::Revocation, r.version));
        }
        verify(r.subject_key.as_bytes(), REVOCATION_SIG_DOMAIN, &r.body(), &w.signature.0)?;
        let signed = Self { revocation: w.revocation, signature: w.signature };
        if signed.to_bytes() != bytes {
            return Err(ConsentError::Malformed(Message::Revocation));
        }
        Ok(signed)
    }
}

impl SubjectKey {
    /// Delegates `device` from `valid_from` until `valid_until` (or revoked), signed now.
    ///
    /// # Errors
    /// [`ConsentError::InvertedValidity`] when `valid_until` is not after `valid_from`.
    pub fn delegate(
        &self,
        device: DevicePublicKey,
        valid_from: Timestamp,
        valid_until: Option<Timestamp>,
        issued_at: Timestamp,
    ) -> Result<SignedDelegation, ConsentError> {
        sign_delegation(
            |m| self.sign(m),
            Delegation {
                version: RECEIPT_VERSION,
                subject_key: self.public_key(),
                device,
                valid_from,
                valid_until,
                issued_at,
            },
        )
    }

    /// Revokes `device` from `at` on (a lost, stolen or sold device), signed at `issued_at`.
    ///
    /// `at` may be in the past (from when the device was lost). An `at` still to come is
    /// not a planned revocation: the aggregator's ledger applies a revocation from `at`
    /// or from its arrival, whichever is earlier, so a device is revoked as soon as its
    /// revocation is posted (a key is revoked once; a later date could not be brought
    /// forward if the device were stolen meanwhile). To end a device's delegation at a
    /// later date, delegate it with that `valid_until`.
    #[must_use]
    pub fn revoke(&self, device: DevicePublicKey, at: Timestamp, issued_at: Timestamp) -> SignedRevocation {
        let revocation =
            Revocation { version: RECEIPT_VERSION, subject_key: self.public_key(), device, at, issued_at };
        let signature = Sig(self.sign(&signing_message(REVOCATION_SIG_DOMAIN, &revocation.body())));
        SignedRevocation { revocation, signature }
    }

    /// Withdraws `receipt` (of this subject, signed by any of its devices) from `at` on,
    /// signed by the subject key at `issued_at`: the owner's phone ends what a device gave.
    ///
    /// # Errors
    /// [`ConsentError::SubjectKeyMismatch`] for another subject's receipt,
    /// [`ConsentError::BeforeValidity`] for an `at` before the receipt started.
    pub fn withdraw(
        &self,
        receipt: &super::SignedReceipt,
        at: Timestamp,
        issued_at: Timestamp,
    ) -> Result<super::SignedWithdrawal, ConsentError> {
        let r = receipt.receipt();
        if r.subject_key != self.public_key() {
            return Err(ConsentError::SubjectKeyMismatch);
        }
        if at < r.valid_from {
            return Err(ConsentError::BeforeValidity);
        }
        Ok(super::Withdrawal {
            version: RECEIPT_VERSION,
            receipt: receipt.id(),
            subject: r.subject,
            subject_key: r.subject_key,
            at,
            issued_at,
            signer: self.public_key().as_device_key(),
        }
        .sign_by_subject(self))
    }
}

/// Signs `delegation` with `sign` (the subject key, or a self-subject device's key).
pub(super) fn sign_delegation(
    sign: impl FnOnce(&[u8]) -> [u8; 64],
    delegation: Delegation,
) -> Result<SignedDelegation, ConsentError> {
    if delegation.valid_until.is_some_and(|u| u <= delegation.valid_from) {
        return Err(ConsentError::InvertedValidity);
    }
    let signature = Sig(sign(&signing_message(DELEGATION_SIG_DOMAIN, &delegation.body())));
    Ok(SignedDelegation { delegation, signature })
}

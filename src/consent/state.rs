//! The device's own consent state: give, narrow, withdraw, list, and the access window.

use alloc::vec::Vec;

use super::delegation::{Delegation, SignedDelegation, sign_delegation};
use super::error::ConsentError;
use super::key::DeviceKey;
use super::receipt::{ConsentReceipt, RECEIPT_VERSION, Scope, SignedReceipt, SignedWithdrawal, Withdrawal};
use crate::Timestamp;
use crate::catalogue::Catalogue;
use crate::ids::{DevicePublicKey, MetricId, PurposeId, ReceiptId, RecipientId, SubjectId, SubjectPublicKey};
use crate::retention::Duration;

/// The terms of a consent the subject gives (the subject is the consent state's own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
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
    /// How long data collected under it may be held.
    pub hold: Duration,
}

/// The checks a device makes before it signs: the receipt's own (against the
/// catalogue), and a hold no longer than any covered metric's maximum — a receipt
/// promising five years for a metric the catalogue caps at two would mislead its subject.
fn check_terms(catalogue: &Catalogue, receipt: &ConsentReceipt) -> Result<(), ConsentError> {
    receipt.check_against(catalogue)?;
    for id in receipt.scope.metrics_in(catalogue, &receipt.recipient, &receipt.purpose) {
        if let Some(m) = catalogue.metric(id)
            && !hold_within(&receipt.hold, &m.max_hold, receipt.valid_from)
        {
            return Err(ConsentError::HoldTooLong { metric: id.clone(), max: m.max_hold.clone() });
        }
    }
    Ok(())
}

/// Whether data collected from `from` on and held for `hold` is never held longer than
/// `max` allows. A hold until an event ends at the event or at `max`, whichever is first
/// (the retention tag takes the earlier), so it always fits; a hold until an instant fits
/// when that instant is no later than `from + max`.
fn hold_within(hold: &Duration, max: &Duration, from: Timestamp) -> bool {
    match hold {
        Duration::UntilEvent(_) => true,
        Duration::UntilTime(t) => hold.is_within(max) || *t <= max.deadline_from(from).at,
        Duration::Temporal(_) | Duration::Endless => hold.is_within(max),
    }
}

/// A receipt the device gave, and when (if ever) it was withdrawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptEntry {
    /// The signed receipt.
    pub receipt: SignedReceipt,
    /// When it was withdrawn (valid time), if it was.
    pub withdrawn_at: Option<Timestamp>,
}

impl ReceiptEntry {
    /// The end of its contribution to the access window: `min(valid_until, withdrawn_at)`,
    /// or [`Timestamp::MAX`] for "until withdrawn".
    #[must_use]
    pub fn window_end(&self) -> Timestamp {
        let r = self.receipt.receipt();
        r.valid_until.unwrap_or(Timestamp::MAX).min(self.withdrawn_at.unwrap_or(Timestamp::MAX))
    }

    /// Whether it lets its recipient have data at `t`.
    #[must_use]
    pub fn active_at(&self, t: Timestamp) -> bool {
        self.receipt.receipt().valid_from <= t && t < self.window_end()
    }
}

/// What the subject has consented to, as this device knows it, and the device's right to
/// sign for the subject. See the [module documentation](super).
///
/// A device speaks for its subject in one of two ways:
/// - **single-device subject** ([`ConsentState::new`]): the device's key *is* the subject
///   key; the subject id is the hash of its public key. It can also delegate itself
///   ([`ConsentState::self_delegation`]) to enroll for anonymous report tokens.
/// - **delegated device** ([`ConsentState::delegated`]): the subject key (the owner's
///   phone) signed a [`SignedDelegation`] of this device's key, which the host passes in.
#[derive(Debug)]
pub struct ConsentState {
    key: DeviceKey,
    subject_key: SubjectPublicKey,
    delegation: Option<SignedDelegation>,
    entries: Vec<ReceiptEntry>,
}

impl ConsentState {
    /// An empty consent state of a single-device subject: `key` is the subject key too.
    #[must_use]
    pub fn new(key: DeviceKey) -> Self {
        let subject_key = key.public_key().as_subject_key();
        Self { key, subject_key, delegation: None, entries: Vec::new() }
    }

    /// An empty consent state of a device the subject delegated: `delegation` must be of
    /// `key`'s public key.
    ///
    /// # Errors
    /// [`ConsentError::KeyMismatch`] when the delegation is of another device key.
    pub fn delegated(key: DeviceKey, delegation: SignedDelegation) -> Result<Self, ConsentError> {
        if delegation.delegation().device != key.public_key() {
            return Err(ConsentError::KeyMismatch);
        }
        let subject_key = delegation.delegation().subject_key;
        Ok(Self { key, subject_key, delegation: Some(delegation), entries: Vec::new() })
    }

    /// This state with the entries the host persisted (see [`ConsentState::list`]).
    /// Every receipt must be of this state's subject.
    ///
    /// # Errors
    /// [`ConsentError::KeyMismatch`] for a receipt of another subject; nothing changes.
    pub fn restore(mut self, entries: Vec<ReceiptEntry>) -> Result<Self, ConsentError> {
        self.adopt(entries)?;
        Ok(self)
    }

    /// Replaces an empty state's entries with restored ones (all of this subject).
    pub(crate) fn adopt(&mut self, entries: Vec<ReceiptEntry>) -> Result<(), ConsentError> {
        let subject = self.subject();
        if !self.entries.is_empty() || entries.iter().any(|e| e.receipt.receipt().subject != subject) {
            return Err(ConsentError::KeyMismatch);
        }
        self.entries = entries;
        Ok(())
    }

    /// The device's public key.
    #[must_use]
    pub fn public_key(&self) -> DevicePublicKey {
        self.key.public_key()
    }

    /// The subject's public key (the device's own for a single-device subject).
    #[must_use]
    pub const fn subject_key(&self) -> SubjectPublicKey {
        self.subject_key
    }

    /// The subject this device speaks for: `SubjectId::of_key(subject_key)`.
    #[must_use]
    pub fn subject(&self) -> SubjectId {
        SubjectId::of_key(&self.subject_key)
    }

    /// A signed request to transcrypt this device's polymorphic pseudonym (the identity
    /// of `secret`) for `recipient` (in `epoch`, for an epoch domain) under `receipt`:
    /// see [`TranscryptionRequest`](crate::pseudonym::TranscryptionRequest).
    pub fn transcryption_request<R: rand_core::CryptoRng + ?Sized>(
        &self,
        secret: &crate::pseudonym::DeviceSecret,
        system_key: &crate::pseudonym::SystemPublicKey,
        receipt: crate::ids::ReceiptId,
        recipient: crate::ids::RecipientId,
        epoch: Option<crate::pseudonym::Epoch>,
        rng: &mut R,
    ) -> crate::pseudonym::TranscryptionRequest {
        crate::pseudonym::TranscryptionRequest::sign(
            &self.key, secret, system_key, receipt, recipient, epoch, rng,
        )
    }

    /// The delegation this device was given; `None` for a single-device subject.
    #[must_use]
    pub const fn delegation(&self) -> Option<&SignedDelegation> {
        self.delegation.as_ref()
    }

    /// A single-device subject delegates its own key (to enroll for anonymous report
    /// tokens, which the issuer gives only to enrolled device keys).
    ///
    /// # Errors
    /// [`ConsentError::NotSubjectKey`] on a delegated device;
    /// [`ConsentError::InvertedValidity`].
    pub fn self_delegation(
        &self,
        valid_from: Timestamp,
        valid_until: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<SignedDelegation, ConsentError> {
        if self.delegation.is_some() {
            return Err(ConsentError::NotSubjectKey);
        }
        sign_delegation(
            |m| self.key.sign(m),
            Delegation {
                version: RECEIPT_VERSION,
                subject_key: self.subject_key,
                device: self.key.public_key(),
                valid_from,
                valid_until,
                issued_at: now,
            },
        )
    }

    /// Takes in a receipt of this subject signed elsewhere (the owner's phone, another
    /// device), so reports can be tagged under it. A receipt already known is ignored.
    ///
    /// # Errors
    /// [`ConsentError::SubjectKeyMismatch`] for another subject's receipt; nothing changes.
    pub fn accept(&mut self, receipt: SignedReceipt) -> Result<(), ConsentError> {
        if receipt.receipt().subject_key != self.subject_key {
            return Err(ConsentError::SubjectKeyMismatch);
        }
        if self.get(&receipt.id()).is_none() {
            self.entries.push(ReceiptEntry { receipt, withdrawn_at: None });
        }
        Ok(())
    }

    /// Takes in a withdrawal signed elsewhere (the owner's phone) of a receipt this
    /// device knows.
    ///
    /// # Errors
    /// [`ConsentError::UnknownReceipt`], [`ConsentError::SubjectKeyMismatch`],
    /// [`ConsentError::AlreadyWithdrawn`]; nothing changes.
    pub fn note_withdrawal(&mut self, withdrawal: &SignedWithdrawal) -> Result<(), ConsentError> {
        let w = withdrawal.withdrawal();
        let entry = self
            .entries
            .iter_mut()
            .find(|e| e.receipt.id() == w.receipt)
            .ok_or(ConsentError::UnknownReceipt)?;
        withdrawal.check_for(&entry.receipt)?;
        if entry.withdrawn_at.is_some() {
            return Err(ConsentError::AlreadyWithdrawn);
        }
        entry.withdrawn_at = Some(w.at);
        Ok(())
    }

    /// Gives consent: makes, signs and keeps a receipt for `grant`, checked against
    /// `catalogue`. The host sends the returned receipt to the aggregator.
    ///
    /// # Errors
    /// What [`ConsentReceipt::check_against`] finds wrong with the terms, and
    /// [`ConsentError::HoldTooLong`] when the hold exceeds the maximum hold of a metric
    /// it covers (a hold until an event is bounded by the metric's maximum anyway).
    pub fn give<R: rand_core::CryptoRng + ?Sized>(
        &mut self,
        catalogue: &Catalogue,
        grant: Grant,
        now: Timestamp,
        rng: &mut R,
    ) -> Result<SignedReceipt, ConsentError> {
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let receipt = ConsentReceipt {
            version: RECEIPT_VERSION,
            catalogue_version: catalogue.version(),
            catalogue_digest: catalogue.digest(),
            subject: self.subject(),
            subject_key: self.subject_key,
            recipient: grant.recipient,
            purpose: grant.purpose,
            scope: grant.scope,
            valid_from: grant.valid_from,
            valid_until: grant.valid_until,
            hold: grant.hold,
            issued_at: now,
            nonce,
            signer: self.key.public_key(),
        };
        check_terms(catalogue, &receipt)?;
        let signed = receipt.sign(&self.key);
        self.entries.push(ReceiptEntry { receipt: signed.clone(), withdrawn_at: None });
        Ok(signed)
    }

    /// Withdraws a receipt from `at` on (signed now, at `at`). The host sends the
    /// returned withdrawal.
    ///
    /// # Errors
    /// [`ConsentError::UnknownReceipt`], [`ConsentError::AlreadyWithdrawn`] or
    /// [`ConsentError::BeforeValidity`].
    pub fn withdraw(&mut self, id: &ReceiptId, at: Timestamp) -> Result<SignedWithdrawal, ConsentError> {
        let entry =
            self.entries.iter_mut().find(|e| e.receipt.id() == *id).ok_or(ConsentError::UnknownReceipt)?;
        if entry.withdrawn_at.is_some() {
            return Err(ConsentError::AlreadyWithdrawn);
        }
        let r = entry.receipt.receipt();
        if at < r.valid_from {
            return Err(ConsentError::BeforeValidity);
        }
        let w = Withdrawal {
            version: RECEIPT_VERSION,
            receipt: *id,
            subject: r.subject,
            subject_key: r.subject_key,
            at,
            issued_at: at,
            signer: self.key.public_key(),
        };
        entry.withdrawn_at = Some(at);
        Ok(w.sign(&self.key))
    }

    /// Narrows a receipt to fewer metrics from `at` on: withdraws it at `at` and gives a
    /// new receipt with the same terms and the narrower scope, valid from `at`.
    ///
    /// # Errors
    /// [`ConsentError::NotNarrower`] when the new scope does not cover strictly fewer of
    /// the catalogue's metrics, and the errors of [`Self::withdraw`] and [`Self::give`].
    pub fn narrow<R: rand_core::CryptoRng + ?Sized>(
        &mut self,
        catalogue: &Catalogue,
        id: &ReceiptId,
        scope: Scope,
        at: Timestamp,
        rng: &mut R,
    ) -> Result<(SignedWithdrawal, SignedReceipt), ConsentError> {
        let entry =
            self.entries.iter().find(|e| e.receipt.id() == *id).ok_or(ConsentError::UnknownReceipt)?;
        if entry.withdrawn_at.is_some() {
            return Err(ConsentError::AlreadyWithdrawn);
        }
        let old = entry.receipt.receipt().clone();
        let covered = |s: &Scope| -> Vec<MetricId> {
            s.metrics_in(catalogue, &old.recipient, &old.purpose).cloned().collect()
        };
        let (before, after) = (covered(&old.scope), covered(&scope));
        if after.is_empty() || after.len() >= before.len() || !after.iter().all(|m| before.contains(m)) {
            return Err(ConsentError::NotNarrower);
        }
        if at < old.valid_from || old.valid_until.is_some_and(|u| at >= u) {
            return Err(ConsentError::BeforeValidity);
        }
        let grant = Grant {
            recipient: old.recipient,
            purpose: old.purpose,
            scope,
            valid_from: at,
            valid_until: old.valid_until,
            hold: old.hold,
        };
        // Check the new terms before withdrawing anything, so an error changes nothing.
        let probe = ConsentReceipt {
            scope: grant.scope.clone(),
            valid_from: at,
            issued_at: at,
            ..entry.receipt.receipt().clone()
        };
        check_terms(catalogue, &probe)?;
        let withdrawal = self.withdraw(id, at)?;
        let receipt = self.give(catalogue, grant, at, rng)?;
        Ok((withdrawal, receipt))
    }

    /// Every receipt the device gave, in the order given.
    pub fn list(&self) -> impl Iterator<Item = &ReceiptEntry> {
        self.entries.iter()
    }

    /// A receipt by id.
    #[must_use]
    pub fn get(&self, id: &ReceiptId) -> Option<&ReceiptEntry> {
        self.entries.iter().find(|e| e.receipt.id() == *id)
    }

    /// A receipt in force at `t` that lets `recipient` have `metric` for `purpose`.
    #[must_use]
    pub fn active_receipt(
        &self,
        catalogue: &Catalogue,
        recipient: &RecipientId,
        metric: &MetricId,
        purpose: &PurposeId,
        t: Timestamp,
    ) -> Option<&ReceiptEntry> {
        self.entries.iter().find(|e| {
            let r = e.receipt.receipt();
            &r.recipient == recipient
                && &r.purpose == purpose
                && e.active_at(t)
                && r.scope.names(catalogue, metric)
                && catalogue.allows(metric, purpose, recipient)
        })
    }

    /// The access window of `recipient` on `metric`: the union over receipts naming both
    /// of `[valid_from, min(valid_until, withdrawn_at))`, as sorted disjoint half-open
    /// intervals (an end of [`Timestamp::MAX`] means "until withdrawn").
    #[must_use]
    pub fn access_window(
        &self,
        catalogue: &Catalogue,
        recipient: &RecipientId,
        metric: &MetricId,
    ) -> Vec<(Timestamp, Timestamp)> {
        let mut spans: Vec<(Timestamp, Timestamp)> = self
            .entries
            .iter()
            .filter(|e| {
                let r = e.receipt.receipt();
                &r.recipient == recipient
                    && r.scope.names(catalogue, metric)
                    && catalogue.allows(metric, &r.purpose, recipient)
            })
            .map(|e| (e.receipt.receipt().valid_from, e.window_end()))
            .filter(|(a, b)| a < b)
            .collect();
        spans.sort();
        let mut out: Vec<(Timestamp, Timestamp)> = Vec::with_capacity(spans.len());
        for (a, b) in spans {
            match out.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        out
    }
}

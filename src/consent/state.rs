//! The device's own consent state: give, narrow, withdraw, list, and the access window.

use alloc::vec::Vec;

use super::error::ConsentError;
use super::key::DeviceKey;
use super::receipt::{ConsentReceipt, RECEIPT_VERSION, Scope, SignedReceipt, SignedWithdrawal, Withdrawal};
use crate::Timestamp;
use crate::catalogue::Catalogue;
use crate::ids::{MetricId, PurposeId, ReceiptId, RecipientId, SubjectId};
use crate::retention::Duration;

/// The terms of a consent the subject gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The subject (the device's pseudonym scoped to the controller).
    pub subject: SubjectId,
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

/// What the device has consented to. See the [module documentation](super).
#[derive(Debug)]
pub struct ConsentState {
    key: DeviceKey,
    entries: Vec<ReceiptEntry>,
}

impl ConsentState {
    /// An empty consent state signing with `key`.
    #[must_use]
    pub const fn new(key: DeviceKey) -> Self {
        Self { key, entries: Vec::new() }
    }

    /// A consent state restored from entries the host persisted (see
    /// [`ConsentState::list`]). Every receipt must carry this key's public key.
    ///
    /// # Errors
    /// [`ConsentError::KeyMismatch`] for a receipt signed by another key.
    pub fn restore(key: DeviceKey, entries: Vec<ReceiptEntry>) -> Result<Self, ConsentError> {
        let public = key.public_key();
        if entries.iter().any(|e| e.receipt.receipt().device_key != public) {
            return Err(ConsentError::KeyMismatch);
        }
        Ok(Self { key, entries })
    }

    /// Replaces an empty state's entries with restored ones (all signed by this key).
    pub(crate) fn adopt(&mut self, entries: Vec<ReceiptEntry>) -> Result<(), ConsentError> {
        let public = self.key.public_key();
        if !self.entries.is_empty() || entries.iter().any(|e| e.receipt.receipt().device_key != public) {
            return Err(ConsentError::KeyMismatch);
        }
        self.entries = entries;
        Ok(())
    }

    /// The device's public key.
    #[must_use]
    pub fn public_key(&self) -> [u8; 32] {
        self.key.public_key()
    }

    /// Gives consent: makes, signs and keeps a receipt for `grant`, checked against
    /// `catalogue`. The host sends the returned receipt to the aggregator.
    ///
    /// # Errors
    /// What [`ConsentReceipt::check_against`] finds wrong with the terms.
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
            subject: grant.subject,
            recipient: grant.recipient,
            purpose: grant.purpose,
            scope: grant.scope,
            valid_from: grant.valid_from,
            valid_until: grant.valid_until,
            hold: grant.hold,
            issued_at: now,
            nonce,
            device_key: self.key.public_key(),
        };
        receipt.check_against(catalogue)?;
        let signed = receipt.sign(&self.key);
        self.entries.push(ReceiptEntry { receipt: signed.clone(), withdrawn_at: None });
        Ok(signed)
    }

    /// Withdraws a receipt from `at` on. The host sends the returned withdrawal.
    ///
    /// # Errors
    /// [`ConsentError::UnknownReceipt`], [`ConsentError::AlreadyWithdrawn`] or
    /// [`ConsentError::BeforeValidity`].
    pub fn withdraw(&mut self, id: &ReceiptId, at: Timestamp) -> Result<SignedWithdrawal, ConsentError> {
        let public = self.key.public_key();
        let entry =
            self.entries.iter_mut().find(|e| e.receipt.id() == *id).ok_or(ConsentError::UnknownReceipt)?;
        if entry.withdrawn_at.is_some() {
            return Err(ConsentError::AlreadyWithdrawn);
        }
        let r = entry.receipt.receipt();
        if at < r.valid_from {
            return Err(ConsentError::BeforeValidity);
        }
        let w =
            Withdrawal { version: RECEIPT_VERSION, receipt: *id, subject: r.subject, at, device_key: public };
        entry.withdrawn_at = Some(at);
        Ok(SignedWithdrawal::sign(w, &self.key))
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
            subject: old.subject,
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
        probe.check_against(catalogue)?;
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

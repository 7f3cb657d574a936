//! Enrolled devices: delegations and revocations signed by subject keys, the check that
//! a receipt's or withdrawal's signer speaks for its subject, and the admin override
//! of a subject whose key is lost.
//!
//! Rules (docs/privacy.md, "Trust model"):
//! - A signer speaks for subject S at instant t iff it is S's key itself, or a device
//!   key S delegated with `valid_from <= t < valid_until`, not revoked by t.
//! - A receipt or withdrawal is checked at its `issued_at`; a revocation takes effect
//!   for everything signed from its `at` **and** everything that reaches the ledger from
//!   then on (a stolen device cannot backdate its way past it).
//! - A device key is delegated by one subject only; a revoked key is never delegated
//!   again (the device makes a new key).
//! - A subject an admin closed (lost subject key) accepts nothing more: its consents are
//!   withdrawn and its devices revoked from the override's instant, under a logged reason.

use std::borrow::Borrow;

use confiance::Timestamp;
use confiance::consent::{CertificateError, SignedDelegation, SignedRevocation};
use confiance::ids::{
    DelegationId, DevicePublicKey, MetricId, PurposeId, ReceiptId, RecipientId, SubjectId, SubjectPublicKey,
};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::index::{DelegationRow, NEVER, OverrideRow, RevocationRow};
use super::{Ledger, LedgerError, store};

/// The longest reason an admin override may carry, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;

/// Why a key does not speak for a subject (or a device is not enrolled) at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EnrollError {
    /// The key is not the subject's key and no delegation of it by the subject is known.
    NotEnrolled,
    /// Every delegation of the key ended before the instant.
    DelegationExpired,
    /// No delegation of the key has started by the instant.
    DelegationNotYetValid,
    /// The subject revoked the key (a lost or sold device).
    DelegationRevoked,
    /// An admin closed the subject (lost subject key): it accepts nothing more.
    SubjectClosed,
    /// The catalogue names certifiers and the ledger holds no device certificate of the
    /// key (docs/privacy.md, "Device certificates").
    NotCertified,
    /// The catalogue names certifiers and none of the key's device certificates is in
    /// force by a certifier it trusts: the [`CertificateError`] says why
    /// ([`CertificateError::UnknownCertifier`], [`CertificateError::NotYetValid`] or
    /// [`CertificateError::Expired`]).
    Uncertified(CertificateError),
}

impl EnrollError {
    /// The stable code of the error (HTTP, CLI, logs).
    ///
    /// ```
    /// use confiance_aggregator::ledger::EnrollError;
    /// assert_eq!(EnrollError::DelegationRevoked.code(), "delegation_revoked");
    /// ```
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::NotEnrolled => "not_enrolled",
            Self::DelegationExpired => "delegation_expired",
            Self::DelegationNotYetValid => "delegation_not_yet_valid",
            Self::DelegationRevoked => "delegation_revoked",
            Self::SubjectClosed => "subject_closed",
            Self::NotCertified => "not_certified",
            Self::Uncertified(e) => e.code(),
        }
    }
}

impl core::fmt::Display for EnrollError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NotEnrolled => "the key is not delegated by the subject",
            Self::DelegationExpired => "the device's delegation has expired",
            Self::DelegationNotYetValid => "the device's delegation has not started",
            Self::DelegationRevoked => "the subject revoked the device",
            Self::SubjectClosed => "the subject was closed by an admin override",
            Self::NotCertified => "the key has no device certificate (the catalogue requires one)",
            Self::Uncertified(CertificateError::UnknownCertifier) => {
                "the key's device certificates are by certifiers the catalogue does not trust"
            }
            Self::Uncertified(CertificateError::NotYetValid) => {
                "the key's device certificate is not valid yet"
            }
            Self::Uncertified(_) => "the key's device certificate has expired",
        })
    }
}

impl std::error::Error for EnrollError {}

/// A device a subject delegated, as subject access lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolledDevice {
    /// The device key.
    pub device: DevicePublicKey,
    /// The delegation's id.
    pub delegation: DelegationId,
    /// From when the device may sign for the subject.
    pub valid_from: Timestamp,
    /// Until when (`None`: until revoked).
    pub valid_until: Option<Timestamp>,
    /// When the ledger learned the delegation.
    pub recorded_at: Timestamp,
    /// From when the device is revoked, if it is (as known at the question's time).
    pub revoked_at: Option<Timestamp>,
}

impl<C: Borrow<Connection>> Ledger<C> {
    /// Verifies and records a device delegation (its wire bytes) learned at `recorded_at`.
    ///
    /// # Errors
    /// [`LedgerError::Consent`] for bad bytes or a bad signature;
    /// [`LedgerError::DuplicateDelegation`]; [`LedgerError::DeviceEnrolledElsewhere`];
    /// [`LedgerError::Enroll`] with [`EnrollError::DelegationRevoked`] (a revoked key is
    /// never delegated again) or [`EnrollError::SubjectClosed`]; [`LedgerError::Store`].
    pub fn ingest_delegation(
        &mut self,
        bytes: &[u8],
        recorded_at: Timestamp,
    ) -> Result<DelegationId, LedgerError> {
        let signed = SignedDelegation::from_bytes(bytes)?;
        self.ingest_signed_delegation(&signed, recorded_at)
    }

    /// Records an already decoded (hence signature-verified) delegation.
    ///
    /// # Errors
    /// As [`Self::ingest_delegation`].
    pub fn ingest_signed_delegation(
        &mut self,
        signed: &SignedDelegation,
        recorded_at: Timestamp,
    ) -> Result<DelegationId, LedgerError> {
        let d = signed.delegation();
        let subject = d.subject();
        let id = signed.id();
        self.load_subject(&subject)?;
        if self.is_lazy() && !self.ix.delegation_ix.contains_key(&id) {
            self.load_by(store::Lookup::Delegation, id.as_bytes())?;
        }
        self.load_delegator(&d.device)?;
        self.check_open(&subject)?;
        if self.ix.delegation_ix.contains_key(&id) {
            return Err(LedgerError::DuplicateDelegation(id));
        }
        if let Some(dev) = self.ix.devices.get(&d.device) {
            if self.ix.subject_id(dev.subject) != Some(subject) {
                return Err(LedgerError::DeviceEnrolledElsewhere);
            }
            if dev.revoked.is_some() {
                return Err(EnrollError::DelegationRevoked.into());
            }
        }
        // Admission control (docs/privacy.md, "Device certificates"): a certificate of
        // the device key in force when the delegation arrives.
        self.load_certificates(&d.device)?;
        self.certified(&d.device, recorded_at)?;
        let mut row = DelegationRow {
            id,
            seq: self.ix.next_seq,
            subject: u32::MAX,
            device: d.device,
            valid_from: d.valid_from,
            valid_until: d.valid_until.unwrap_or(NEVER),
            recorded_at,
        };
        store::insert_delegation(self.sink(), &row, &subject, &signed.to_bytes())?;
        row.subject = self.ix.intern_subject(subject);
        self.ix.add_delegation(row);
        Ok(id)
    }

    /// Verifies and records a revocation (its wire bytes) learned at `recorded_at`.
    /// Returns the device key revoked.
    ///
    /// # Errors
    /// [`LedgerError::Consent`] for bad bytes or a bad signature;
    /// [`LedgerError::Enroll`] with [`EnrollError::NotEnrolled`] when the subject never
    /// delegated that key; [`LedgerError::AlreadyRevoked`]; [`LedgerError::Store`].
    pub fn ingest_revocation(
        &mut self,
        bytes: &[u8],
        recorded_at: Timestamp,
    ) -> Result<DevicePublicKey, LedgerError> {
        let signed = SignedRevocation::from_bytes(bytes)?;
        self.ingest_signed_revocation(&signed, recorded_at)
    }

    /// Records an already decoded (hence signature-verified) revocation. It takes effect
    /// from its `at`, or from `recorded_at` if that is earlier: a revocation dated in the
    /// future is in effect as soon as the ledger has it (nothing arriving after it is
    /// accepted), so that a revocation planned ahead cannot leave a stolen device a
    /// window that the owner could no longer close (a key is revoked once).
    ///
    /// # Errors
    /// As [`Self::ingest_revocation`].
    pub fn ingest_signed_revocation(
        &mut self,
        signed: &SignedRevocation,
        recorded_at: Timestamp,
    ) -> Result<DevicePublicKey, LedgerError> {
        let r = signed.revocation();
        // A device this subject delegated is loaded with it (one another subject
        // delegated is refused either way).
        self.load_subject(&r.subject())?;
        let dev = self.ix.devices.get(&r.device).ok_or(EnrollError::NotEnrolled)?;
        if self.ix.subject_id(dev.subject) != Some(r.subject()) {
            return Err(EnrollError::NotEnrolled.into());
        }
        if dev.revoked.is_some() {
            return Err(LedgerError::AlreadyRevoked);
        }
        let row =
            RevocationRow { seq: self.ix.next_seq, at: effective_revocation(r.at, recorded_at), recorded_at };
        store::insert_revocation(self.sink(), &r.device, &row, &signed.to_bytes())?;
        self.ix.apply_revocation(&r.device, row);
        Ok(r.device)
    }

    /// The subject that enrolled `device`, if the device may speak for it at `at`: a
    /// delegation in force at `at` and no revocation in effect by `at`. This is what the
    /// token issuer asks before it gives a device anything.
    ///
    /// ```
    /// use confiance::{Timestamp, catalogue::Catalogue};
    /// use confiance::consent::{DeviceKey, SubjectKey};
    /// use confiance_aggregator::ledger::{EnrollError, Ledger};
    ///
    /// let catalogue = Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?;
    /// let mut ledger = Ledger::in_memory(catalogue)?;
    /// let (owner, device) = (SubjectKey::from_bytes(&[1; 32]), DeviceKey::from_bytes(&[2; 32]));
    /// let t = Timestamp::from_secs;
    /// assert_eq!(ledger.enrolled_device(&device.public_key(), t(5)), Err(EnrollError::NotEnrolled));
    /// let d = owner.delegate(device.public_key(), t(0), Some(t(100)), t(0))?;
    /// ledger.ingest_delegation(&d.to_bytes(), t(1))?;
    /// assert_eq!(ledger.enrolled_device(&device.public_key(), t(5)), Ok(owner.subject_id()));
    /// assert_eq!(ledger.enrolled_device(&device.public_key(), t(100)), Err(EnrollError::DelegationExpired));
    /// ledger.ingest_revocation(&owner.revoke(device.public_key(), t(50), t(50)).to_bytes(), t(50))?;
    /// assert_eq!(ledger.enrolled_device(&device.public_key(), t(60)), Err(EnrollError::DelegationRevoked));
    /// assert_eq!(ledger.enrolled_device(&device.public_key(), t(40)), Ok(owner.subject_id()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`EnrollError::NotEnrolled`], [`EnrollError::DelegationRevoked`],
    /// [`EnrollError::DelegationExpired`] or [`EnrollError::DelegationNotYetValid`].
    pub fn enrolled_device(&self, device: &DevicePublicKey, at: Timestamp) -> Result<SubjectId, EnrollError> {
        let dev = self.ix.devices.get(device).ok_or(EnrollError::NotEnrolled)?;
        if dev.revoked.is_some_and(|r| r.at <= at) {
            return Err(EnrollError::DelegationRevoked);
        }
        let subject = self.ix.subject_id(dev.subject).ok_or(EnrollError::NotEnrolled)?;
        let mut expired = false;
        for d in dev.delegations.iter().filter_map(|&i| self.ix.delegations.get(i as usize)) {
            if d.valid_from <= at && at < d.valid_until {
                return Ok(subject);
            }
            expired |= d.valid_until <= at;
        }
        Err(if expired { EnrollError::DelegationExpired } else { EnrollError::DelegationNotYetValid })
    }

    /// Whether `subject` has, at `at` (as known now), a receipt in force covering
    /// `metric` for `purpose` for **every** one of `recipients` (`false` for none): what
    /// the token issuer asks before giving tokens for an anonymous report whose
    /// purpose rests on consent. The same rule as [`Self::check_at`], recipient by
    /// recipient.
    #[must_use]
    pub fn consents_to(
        &self,
        subject: &SubjectId,
        recipients: &[RecipientId],
        purpose: &PurposeId,
        metric: &MetricId,
        at: Timestamp,
    ) -> bool {
        !recipients.is_empty()
            && recipients.iter().all(|r| self.check_at(r, metric, purpose, subject, at, None).allowed())
    }

    /// The devices `subject` delegated, as known at `as_known_at` (`None` = now), in the
    /// order recorded, with their validity and revocation.
    #[must_use]
    pub fn devices(&self, subject: &SubjectId, as_known_at: Option<Timestamp>) -> Vec<EnrolledDevice> {
        let known = as_known_at.unwrap_or(NEVER);
        let Some(entry) = self.ix.subject(subject).and_then(|s| self.ix.subjects.get(s as usize)) else {
            return Vec::new();
        };
        entry
            .delegations
            .iter()
            .filter_map(|&i| self.ix.delegations.get(i as usize))
            .filter(|d| d.recorded_at <= known)
            .map(|d| EnrolledDevice {
                device: d.device,
                delegation: d.id,
                valid_from: d.valid_from,
                valid_until: (d.valid_until != NEVER).then_some(d.valid_until),
                recorded_at: d.recorded_at,
                revoked_at: self
                    .ix
                    .devices
                    .get(&d.device)
                    .and_then(|dev| dev.revoked)
                    .filter(|r| r.recorded_at <= known)
                    .map(|r| r.at),
            })
            .collect()
    }

    /// Whether the ledger knows `subject` (it delegated a device or gave a receipt).
    #[must_use]
    pub fn knows_subject(&self, subject: &SubjectId) -> bool {
        self.ix.subject(subject).is_some()
    }

    /// When an admin closed `subject` (valid time) and why, if it was.
    #[must_use]
    pub fn closed(&self, subject: &SubjectId) -> Option<(Timestamp, &str)> {
        let s = self.ix.subject(subject)?;
        self.ix.overrides.iter().find(|o| o.subject == s).map(|o| (o.at, o.reason.as_str()))
    }

    /// Refuses anything more for a subject an admin closed.
    pub(super) fn check_open(&self, subject: &SubjectId) -> Result<(), LedgerError> {
        let closed = self
            .ix
            .subject(subject)
            .and_then(|s| self.ix.subjects.get(s as usize))
            .is_some_and(|e| e.closed.is_some());
        if closed { Err(EnrollError::SubjectClosed.into()) } else { Ok(()) }
    }

    /// Whether `signer` speaks for `subject` (named by `subject_key`) for a message signed
    /// at `issued_at` and reaching the ledger at `recorded_at`. See the [module
    /// documentation](self).
    pub(super) fn authorize(
        &self,
        subject_key: &SubjectPublicKey,
        subject: &SubjectId,
        signer: &DevicePublicKey,
        issued_at: Timestamp,
        recorded_at: Timestamp,
    ) -> Result<(), LedgerError> {
        self.check_open(subject)?;
        if *signer == subject_key.as_device_key() {
            return Ok(());
        }
        let dev = self.ix.devices.get(signer).ok_or(EnrollError::NotEnrolled)?;
        if self.ix.subject_id(dev.subject) != Some(*subject) {
            return Err(EnrollError::NotEnrolled.into());
        }
        if dev.revoked.is_some_and(|r| r.at <= issued_at.max(recorded_at)) {
            return Err(EnrollError::DelegationRevoked.into());
        }
        self.enrolled_device(signer, issued_at)?;
        Ok(())
    }

    /// **Admin override** for a lost subject key: withdraws every receipt of `subject`
    /// still running at `at` (from `at`, or from its start if later), revokes its devices
    /// from `at`, and closes the subject so that nothing more is accepted for it — all in
    /// one savepoint, with `reason` kept. The owner starts again under a new subject key
    /// (and new device keys). The caller logs the override with its reason
    /// ([`crate::service::Aggregator::admin_override`] does both in one transaction).
    ///
    /// # Errors
    /// [`LedgerError::BadReason`] for an empty (or blank) reason or one longer than
    /// [`MAX_REASON_BYTES`]; [`LedgerError::OverrideInFuture`] for an `at` after
    /// `recorded_at`; [`LedgerError::UnknownSubject`];
    /// [`LedgerError::Enroll`] with [`EnrollError::SubjectClosed`] when already closed;
    /// [`LedgerError::Store`]. Nothing changes on error.
    pub fn override_subject(
        &mut self,
        subject: &SubjectId,
        reason: &str,
        at: Timestamp,
        recorded_at: Timestamp,
    ) -> Result<Vec<ReceiptId>, LedgerError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > MAX_REASON_BYTES {
            return Err(LedgerError::BadReason);
        }
        // It closes the subject at once, so it must withdraw and revoke from now at the latest.
        if at > recorded_at {
            return Err(LedgerError::OverrideInFuture);
        }
        self.load_subject(subject)?;
        let s = self.ix.subject(subject).ok_or(LedgerError::UnknownSubject(*subject))?;
        self.check_open(subject)?;
        let running: Vec<(u32, ReceiptId, Timestamp)> = self
            .ix
            .subjects
            .get(s as usize)
            .map(|e| e.receipts.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|&ri| Some((ri, self.ix.receipts.get(ri as usize)?)))
            .filter(|(_, r)| !r.withdrawn() && at < r.valid_until)
            .map(|(ri, r)| (ri, r.id, at.max(r.valid_from)))
            .collect();
        let reason = reason.to_owned();
        self.atomically(|l| {
            for &(ri, id, w_at) in &running {
                let seq = l.ix.next_seq;
                let rec =
                    l.ix.receipts.get(ri as usize).map_or(recorded_at, |r| r.recorded_at.max(recorded_at));
                store::insert_withdrawal(l.sink(), seq, &id, w_at, rec, None)?;
                l.ix.apply_withdrawal(&l.names, ri, w_at, rec, seq);
            }
            let row = OverrideRow { seq: l.ix.next_seq, subject: s, reason, at, recorded_at };
            store::insert_override(l.sink(), &row, subject)?;
            l.ix.add_override(row);
            Ok::<_, LedgerError>(())
        })?;
        Ok(running.into_iter().map(|(_, id, _)| id).collect())
    }
}

/// The instant a revocation signed for `at` takes effect when it reaches the ledger at
/// `recorded_at`: `at`, or `recorded_at` if that is earlier.
///
/// ```
/// use confiance::Timestamp;
/// use confiance_aggregator::ledger::effective_revocation;
/// let t = Timestamp::from_secs;
/// assert_eq!(effective_revocation(t(50), t(100)), t(50)); // dated back: from when it was lost
/// assert_eq!(effective_revocation(t(500), t(100)), t(100)); // dated ahead: from its arrival
/// ```
#[must_use]
pub fn effective_revocation(at: Timestamp, recorded_at: Timestamp) -> Timestamp {
    at.min(recorded_at)
}

//! Admission control: device certificates from the manufacturers the catalogue trusts
//! (docs/privacy.md, "Device certificates").
//!
//! Rules:
//! - A certificate is accepted when its signature verifies under the certifier key it
//!   names, that certifier is in the catalogue's `[enrollment] certifiers`, and it is in
//!   force when it arrives. Its signed bytes are kept, so an auditor re-verifies it from
//!   public keys alone.
//! - When the catalogue names certifiers, a key is *certified* at `t` iff one of its
//!   certificates is by a certifier the catalogue trusts **now** and in force at `t`. A
//!   delegation is accepted only for a device key certified when it arrives, and tokens
//!   are issued only to a key certified at the request. A certifier removed from the
//!   catalogue certifies nothing from then on: its devices get no more tokens (their
//!   delegations and what they reported before stay).
//! - When it names none, enrollment is open: nothing is required.

use std::borrow::Borrow;

use confiance::Timestamp;
use confiance::consent::{CertificateError, DeviceCertificate};
use confiance::ids::{CertificateId, DevicePublicKey};
use rusqlite::Connection;

use super::enroll::EnrollError;
use super::index::CertificateRow;
use super::{Ledger, LedgerError, store, to_i64};

impl<C: Borrow<Connection>> Ledger<C> {
    /// Verifies and records a device certificate (its wire bytes) learned at
    /// `recorded_at`; returns its id.
    ///
    /// ```
    /// use confiance::catalogue::{Catalogue, Enrollment};
    /// use confiance::consent::{CertificateError, CertifierKey, DeviceKey};
    /// use confiance::Timestamp;
    /// use confiance_aggregator::ledger::{EnrollError, Ledger, LedgerError};
    ///
    /// let maker = CertifierKey::from_bytes(&[7; 32]);
    /// let toml = include_str!("../../../examples/catalogue.toml");
    /// let toml = format!("{toml}\n[enrollment]\ncertifiers = [\"{}\"]\n", maker.public_key());
    /// let mut ledger = Ledger::in_memory(Catalogue::from_toml_str(&toml)?)?;
    /// let device = DeviceKey::from_bytes(&[2; 32]).public_key();
    /// let t = Timestamp::from_secs;
    /// assert_eq!(ledger.certified(&device, t(5)), Err(EnrollError::NotCertified));
    /// let cert = maker.certify(device, "t3", t(0), t(100))?;
    /// ledger.ingest_certificate(&cert.to_bytes(), t(1))?;
    /// assert_eq!(ledger.certified(&device, t(5)), Ok(()));
    /// assert_eq!(ledger.certified(&device, t(100)), Err(EnrollError::Uncertified(CertificateError::Expired)));
    /// // Another maker's certificate is refused as it arrives.
    /// let stranger = CertifierKey::from_bytes(&[8; 32]).certify(device, "t3", t(0), t(100))?;
    /// assert!(matches!(
    ///     ledger.ingest_certificate(&stranger.to_bytes(), t(1)),
    ///     Err(LedgerError::Certificate(CertificateError::UnknownCertifier))
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LedgerError::Certificate`] for bad bytes or signature, a certifier the
    /// catalogue does not trust (every certifier, when it names none) or a certificate
    /// not in force at `recorded_at`; [`LedgerError::DuplicateCertificate`];
    /// [`LedgerError::Store`]. Nothing changes on error.
    pub fn ingest_certificate(
        &mut self,
        bytes: &[u8],
        recorded_at: Timestamp,
    ) -> Result<CertificateId, LedgerError> {
        let signed = DeviceCertificate::from_bytes(bytes)?;
        self.ingest_signed_certificate(&signed, recorded_at)
    }

    /// Records an already decoded (hence signature-verified) certificate.
    ///
    /// # Errors
    /// As [`Self::ingest_certificate`].
    /// ```
    /// use confiance::catalogue::Catalogue;
    /// use confiance::consent::{CertifierKey, DeviceCertificate, DeviceKey};
    /// use confiance::Timestamp;
    /// use confiance_aggregator::ledger::Ledger;
    /// let maker = CertifierKey::from_bytes(&[7; 32]);
    /// let toml = include_str!("../../../examples/catalogue.toml");
    /// let toml = format!("{toml}\n[enrollment]\ncertifiers = [\"{}\"]\n", maker.public_key());
    /// let mut ledger = Ledger::in_memory(Catalogue::from_toml_str(&toml)?)?;
    /// let device = DeviceKey::from_bytes(&[2; 32]).public_key();
    /// let t = Timestamp::from_secs;
    /// let signed = DeviceCertificate::from_bytes(&maker.certify(device, "t3", t(0), t(100))?.to_bytes())?;
    /// assert_eq!(ledger.ingest_signed_certificate(&signed, t(1))?, signed.id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ingest_signed_certificate(
        &mut self,
        signed: &DeviceCertificate,
        recorded_at: Timestamp,
    ) -> Result<CertificateId, LedgerError> {
        let key = signed.verify(self.catalogue.certifiers(), recorded_at)?;
        self.load_certificates(&key)?;
        let id = signed.id();
        if self.ix.certificate_ix.contains(&id) {
            return Err(LedgerError::DuplicateCertificate(id));
        }
        let c = signed.certificate();
        let row = CertificateRow {
            id,
            seq: self.ix.next_seq,
            key,
            certifier: c.certifier,
            not_before: c.not_before,
            not_after: c.not_after,
            recorded_at,
        };
        store::insert_certificate(self.sink(), &row, &signed.to_bytes())?;
        self.ix.add_certificate(row);
        Ok(id)
    }

    /// On a lazily loaded ledger, reads the device certificates of `key` (one indexed
    /// query, none when they are loaded already) and keeps them, and those that come
    /// with later refreshes; a no-op on any other ledger.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance::consent::DeviceKey;
    /// # use confiance_aggregator::ledger::Ledger;
    /// let mut ledger = Ledger::in_memory(Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?)?;
    /// ledger.load_certificates(&DeviceKey::from_bytes(&[2; 32]).public_key())?; // not lazy: a no-op
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LedgerError::Shared`], [`LedgerError::Corrupt`].
    pub fn load_certificates(&mut self, key: &DevicePublicKey) -> Result<(), LedgerError> {
        if self.lazy.is_none() || self.ix.certified_keys.contains(key) {
            return Ok(());
        }
        let Some(shared) = &self.shared else { return Ok(()) };
        let sel = store::Select::Key(key.as_bytes().as_slice(), to_i64(self.ix.next_seq));
        store::load_into(shared.source(), &self.names, &mut self.ix, sel, None, false)?;
        self.ix.certified_keys.insert(*key);
        Ok(())
    }

    /// Whether `key` may enroll and be issued tokens at `at`: always, when the catalogue
    /// names no certifier; otherwise iff one of its certificates is by a certifier the
    /// catalogue trusts and in force at `at` (module documentation). On a lazily loaded
    /// ledger, call [`Self::load_certificates`] first.
    ///
    /// # Errors
    /// [`EnrollError::NotCertified`] when the ledger holds no certificate of the key;
    /// else [`EnrollError::Uncertified`] with [`CertificateError::NotYetValid`] or
    /// [`CertificateError::Expired`] when a trusted certifier's certificate is not in
    /// force at `at` (not yet valid first), or [`CertificateError::UnknownCertifier`]
    /// when none is by a certifier the catalogue trusts.
    /// ```
    /// use confiance::catalogue::Catalogue;
    /// use confiance::consent::{CertifierKey, DeviceCertificate, DeviceKey};
    /// use confiance::Timestamp;
    /// use confiance_aggregator::ledger::Ledger;
    /// let maker = CertifierKey::from_bytes(&[7; 32]);
    /// let toml = include_str!("../../../examples/catalogue.toml");
    /// let toml = format!("{toml}\n[enrollment]\ncertifiers = [\"{}\"]\n", maker.public_key());
    /// let mut ledger = Ledger::in_memory(Catalogue::from_toml_str(&toml)?)?;
    /// let device = DeviceKey::from_bytes(&[2; 32]).public_key();
    /// let t = Timestamp::from_secs;
    /// assert!(ledger.certified(&device, t(5)).is_err());
    /// ledger.ingest_certificate(&maker.certify(device, "t3", t(0), t(100))?.to_bytes(), t(1))?;
    /// assert!(ledger.certified(&device, t(5)).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn certified(&self, key: &DevicePublicKey, at: Timestamp) -> Result<(), EnrollError> {
        let certifiers = self.catalogue.certifiers();
        if certifiers.is_empty() {
            return Ok(());
        }
        let rows = self.ix.certificates.get(key).map_or(&[][..], Vec::as_slice);
        if rows.is_empty() {
            return Err(EnrollError::NotCertified);
        }
        let mut why = CertificateError::UnknownCertifier;
        for c in rows.iter().filter(|c| certifiers.contains(&c.certifier)) {
            if c.not_before <= at && at < c.not_after {
                return Ok(());
            }
            if at < c.not_before || why == CertificateError::UnknownCertifier {
                why =
                    if at < c.not_before { CertificateError::NotYetValid } else { CertificateError::Expired };
            }
        }
        Err(EnrollError::Uncertified(why))
    }

    /// How many device certificates the ledger holds (loaded ones, on a lazy ledger).
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::ledger::Ledger;
    /// let ledger = Ledger::in_memory(Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?)?;
    /// assert_eq!(ledger.certificate_count(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn certificate_count(&self) -> usize {
        self.ix.certificate_ix.len()
    }
}

//! What goes into the log: audit events, ids and hashes only.

use confiance::Timestamp;
use confiance::ids::{
    CertificateId, CertifierPublicKey, DelegationId, MetricId, PurposeId, ReceiptId, RecipientId,
};
use serde::{Deserialize, Serialize};

use super::AuditError;
use super::merkle::{Hash, leaf_hash};

/// One auditable fact. Every field is an id, a digest, a count or an instant — **never
/// personal data** (no subject id, no pseudonym, no value): the log is kept forever and
/// must never need erasing (docs/design.md#audit-log).
///
/// New variants are only ever appended, so the postcard encoding of existing events
/// (their leaves) never changes.
///
/// ```
/// use confiance::{Timestamp, ids::ReceiptId};
/// use confiance_aggregator::audit::AuditEvent;
/// let e = AuditEvent::ConsentWithdrawn { receipt: ReceiptId([9; 32]), at: Timestamp::from_secs(5) };
/// assert_eq!(e.at(), Some(Timestamp::from_secs(5)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AuditEvent {
    /// A consent receipt was accepted into the ledger (its validity is in the receipt).
    ConsentGiven {
        /// The receipt's id (hash of its canonical encoding).
        receipt: ReceiptId,
    },
    /// A consent receipt was withdrawn.
    ConsentWithdrawn {
        /// The withdrawn receipt.
        receipt: ReceiptId,
        /// The instant the withdrawal takes effect.
        at: Timestamp,
    },
    /// A sealed envelope was ingested.
    IngestBatch {
        /// SHA-256 of the envelope bytes.
        envelope_digest: [u8; 32],
        /// Reports accepted from it.
        reports: u32,
        /// Partitions they were accumulated into.
        partitions: u32,
        /// Ingest time.
        at: Timestamp,
    },
    /// Estimates were released to a recipient.
    Release {
        /// Who received them.
        recipient: RecipientId,
        /// Which metric.
        metric: MetricId,
        /// Start of the released time window (inclusive).
        window_start: Timestamp,
        /// End of the released time window (exclusive).
        window_end: Timestamp,
        /// Number of partitions released.
        partitions: u32,
        /// Release time.
        at: Timestamp,
    },
    /// A polymorphic pseudonym was transcrypted for a recipient (docs/design.md#pseudonyms).
    Transcryption {
        /// The recipient domain.
        recipient: RecipientId,
        /// The consent receipt that allowed it, if the decision was made under one.
        receipt: Option<ReceiptId>,
        /// SHA-256 of the transcryption's Chaum–Pedersen proof.
        proof_digest: [u8; 32],
        /// Transcryption time.
        at: Timestamp,
    },
    /// Data past its hold deadline was purged.
    Purge {
        /// Anonymous partitions dropped.
        partitions: u32,
        /// Pseudonymous records dropped.
        records: u32,
        /// Purge time.
        at: Timestamp,
    },
    /// A per-period storage key was destroyed (deletion by key destruction).
    KeyDestruction {
        /// The key's id (a hash or a period-key label, never the key).
        key_id: [u8; 32],
        /// Destruction time.
        at: Timestamp,
    },
    /// A new catalogue version came into force.
    CatalogueChange {
        /// The catalogue's digest.
        digest: [u8; 32],
        /// When it took effect.
        at: Timestamp,
    },
    /// A subject enrolled a device: a delegation signed by the subject key was accepted
    /// (its subject, device key and validity are in the signed delegation the ledger
    /// keeps; the log holds its id only).
    DeviceDelegated {
        /// The delegation's id (hash of its signed bytes).
        delegation: DelegationId,
        /// From when the device may sign for the subject.
        valid_from: Timestamp,
    },
    /// A subject revoked a device key (a signed revocation was accepted).
    DeviceRevoked {
        /// The revocation's id (hash of its signed bytes).
        revocation: DelegationId,
        /// From when the device is revoked: the revocation's `at`, or when it was
        /// received if that is earlier (`ledger::effective_revocation`).
        at: Timestamp,
    },
    /// An admin closed a subject whose key was lost: its running consents were withdrawn
    /// and its devices revoked, for the reason given. The reason is the admin's words
    /// and must carry no personal data; the subject is not named (its receipts are).
    AdminOverride {
        /// Why (free text, at most 1024 bytes).
        reason: String,
        /// The receipts withdrawn by the override.
        receipts: Vec<ReceiptId>,
        /// From when.
        at: Timestamp,
    },
    /// A transcryption was refused (docs/privacy.md#polymorphic-pseudonyms): who asked
    /// for which recipient is not logged (the request names a device), only the
    /// recipient domain and the refusal's code.
    TranscryptionRefused {
        /// The recipient domain of the transcryptors asked.
        recipient: RecipientId,
        /// The refusal's code ([`TranscryptError::code`](crate::transcrypt::TranscryptError::code)).
        code: String,
        /// When.
        at: Timestamp,
    },
    /// Report tokens issued for one scope (recipients, purpose, token period), counted
    /// once the period is over: one event per scope and period, with how many tokens
    /// and how many devices in all — never which device got which token, nor when.
    TokensIssued {
        /// The scope's recipients (sorted).
        recipients: Vec<RecipientId>,
        /// The scope's purpose.
        purpose: PurposeId,
        /// The token period (its index: it starts at period × the catalogue's
        /// `token_period`).
        period: u64,
        /// Tokens issued for the scope in all.
        tokens: u64,
        /// Devices that received any.
        devices: u64,
        /// When the count was logged (at or after the period's end).
        at: Timestamp,
    },
    /// A device certificate was accepted (docs/privacy.md, "Device certificates"): the
    /// certified key and the validity are in the signed certificate the ledger keeps; the
    /// log holds its id and its certifier, so that an auditor can count certified
    /// devices per manufacturer key — a leaked certifier key shows as a jump.
    DeviceCertified {
        /// The certificate's id (hash of its signed bytes).
        certificate: CertificateId,
        /// The certifier (manufacturer) key that signed it.
        certifier: CertifierPublicKey,
        /// When it was accepted.
        at: Timestamp,
    },
}

/// The variant of an [`AuditEvent`], without its fields: what a scan of the log filters
/// on ([`SqliteStore::events_of_kind`](super::SqliteStore::events_of_kind)).
///
/// The discriminant of each kind is its event's variant index, which is also the first
/// byte of the event's leaf (postcard writes the variant index first, as a varint: one
/// byte below 128), so a store can filter leaves without decoding them.
///
/// ```
/// use confiance::ids::ReceiptId;
/// use confiance_aggregator::audit::{AuditEvent, EventKind};
/// assert_eq!(AuditEvent::ConsentGiven { receipt: ReceiptId([1; 32]) }.kind(), EventKind::ConsentGiven);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
#[repr(u8)]
pub enum EventKind {
    /// [`AuditEvent::ConsentGiven`].
    ConsentGiven = 0,
    /// [`AuditEvent::ConsentWithdrawn`].
    ConsentWithdrawn = 1,
    /// [`AuditEvent::IngestBatch`].
    IngestBatch = 2,
    /// [`AuditEvent::Release`].
    Release = 3,
    /// [`AuditEvent::Transcryption`].
    Transcryption = 4,
    /// [`AuditEvent::Purge`].
    Purge = 5,
    /// [`AuditEvent::KeyDestruction`].
    KeyDestruction = 6,
    /// [`AuditEvent::CatalogueChange`].
    CatalogueChange = 7,
    /// [`AuditEvent::DeviceDelegated`].
    DeviceDelegated = 8,
    /// [`AuditEvent::DeviceRevoked`].
    DeviceRevoked = 9,
    /// [`AuditEvent::AdminOverride`].
    AdminOverride = 10,
    /// [`AuditEvent::TranscryptionRefused`].
    TranscryptionRefused = 11,
    /// [`AuditEvent::TokensIssued`].
    TokensIssued = 12,
    /// [`AuditEvent::DeviceCertified`].
    DeviceCertified = 13,
}

impl EventKind {
    /// The first byte of the leaf of every event of this kind.
    #[must_use]
    pub const fn leaf_tag(self) -> u8 {
        self as u8
    }
}

impl AuditEvent {
    /// Which variant this is.
    #[must_use]
    pub const fn kind(&self) -> EventKind {
        match self {
            Self::ConsentGiven { .. } => EventKind::ConsentGiven,
            Self::ConsentWithdrawn { .. } => EventKind::ConsentWithdrawn,
            Self::IngestBatch { .. } => EventKind::IngestBatch,
            Self::Release { .. } => EventKind::Release,
            Self::Transcryption { .. } => EventKind::Transcryption,
            Self::Purge { .. } => EventKind::Purge,
            Self::KeyDestruction { .. } => EventKind::KeyDestruction,
            Self::CatalogueChange { .. } => EventKind::CatalogueChange,
            Self::DeviceDelegated { .. } => EventKind::DeviceDelegated,
            Self::DeviceRevoked { .. } => EventKind::DeviceRevoked,
            Self::AdminOverride { .. } => EventKind::AdminOverride,
            Self::TranscryptionRefused { .. } => EventKind::TranscryptionRefused,
            Self::TokensIssued { .. } => EventKind::TokensIssued,
            Self::DeviceCertified { .. } => EventKind::DeviceCertified,
        }
    }

    /// The instant the event carries, if any ([`AuditEvent::ConsentGiven`] has none: its
    /// times are in the receipt).
    #[must_use]
    pub const fn at(&self) -> Option<Timestamp> {
        match self {
            Self::ConsentGiven { .. } => None,
            Self::ConsentWithdrawn { at, .. }
            | Self::IngestBatch { at, .. }
            | Self::Release { at, .. }
            | Self::Transcryption { at, .. }
            | Self::Purge { at, .. }
            | Self::KeyDestruction { at, .. }
            | Self::CatalogueChange { at, .. }
            | Self::DeviceRevoked { at, .. }
            | Self::AdminOverride { at, .. }
            | Self::TranscryptionRefused { at, .. }
            | Self::TokensIssued { at, .. }
            | Self::DeviceCertified { at, .. } => Some(*at),
            Self::DeviceDelegated { valid_from, .. } => Some(*valid_from),
        }
    }
}

/// An event with its sequence number (its leaf index): one entry of an exported log.
///
/// ```
/// use confiance::ids::ReceiptId;
/// use confiance_aggregator::audit::{AuditEvent, LoggedEvent, merkle::leaf_hash};
/// let e = LoggedEvent { seq: 0, event: AuditEvent::ConsentGiven { receipt: ReceiptId([1; 32]) } };
/// assert_eq!(e.leaf_hash()?, leaf_hash(&e.leaf_bytes()?));
/// assert_eq!(LoggedEvent::from_leaf_bytes(&e.leaf_bytes()?)?, e);
/// # Ok::<(), confiance_aggregator::audit::AuditError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LoggedEvent {
    /// The 0-based position in the log.
    pub seq: u64,
    /// The event.
    pub event: AuditEvent,
}

impl LoggedEvent {
    /// The leaf: the canonical postcard encoding of `(event, seq)`.
    ///
    /// # Errors
    /// [`AuditError::Corrupt`] if encoding fails (it does not for these types).
    pub fn leaf_bytes(&self) -> Result<Vec<u8>, AuditError> {
        encode_leaf(&self.event, self.seq)
    }

    /// The RFC 9162 leaf hash of [`LoggedEvent::leaf_bytes`].
    ///
    /// # Errors
    /// As [`LoggedEvent::leaf_bytes`].
    pub fn leaf_hash(&self) -> Result<Hash, AuditError> {
        Ok(leaf_hash(&self.leaf_bytes()?))
    }

    /// Decodes a leaf; trailing bytes and non-canonical encodings are rejected (the
    /// decoded pair must re-encode to exactly `bytes`).
    ///
    /// # Errors
    /// [`AuditError::Corrupt`] when `bytes` is not a canonical leaf.
    pub fn from_leaf_bytes(bytes: &[u8]) -> Result<Self, AuditError> {
        let bad = AuditError::Corrupt("leaf does not decode as (event, seq)");
        let ((event, seq), rest): ((AuditEvent, u64), _) =
            postcard::take_from_bytes(bytes).map_err(|_| bad)?;
        let e = Self { seq, event };
        if !rest.is_empty() || e.leaf_bytes()? != bytes {
            return Err(AuditError::Corrupt("leaf is not canonical"));
        }
        Ok(e)
    }
}

pub(crate) fn encode_leaf(event: &AuditEvent, seq: u64) -> Result<Vec<u8>, AuditError> {
    postcard::to_allocvec(&(event, seq)).map_err(|_| AuditError::Corrupt("event does not encode"))
}

#[cfg(test)]
mod tests {
    use confiance::Timestamp;
    use confiance::ids::{
        CertificateId, CertifierPublicKey, DelegationId, MetricId, PurposeId, ReceiptId, RecipientId,
    };

    use super::{AuditEvent, encode_leaf};

    /// A store filters leaves on [`super::EventKind::leaf_tag`]: it must be the first byte of
    /// every variant's leaf, whatever the fields and the sequence number.
    #[test]
    fn leaf_tag_is_the_first_leaf_byte() {
        let at = Timestamp::from_secs(u64::MAX - 1);
        let (r, m) = (RecipientId::new("lab-eu").unwrap(), MetricId::new("a.b").unwrap());
        let events = [
            AuditEvent::ConsentGiven { receipt: ReceiptId([0xff; 32]) },
            AuditEvent::ConsentWithdrawn { receipt: ReceiptId([0x80; 32]), at },
            AuditEvent::IngestBatch { envelope_digest: [0xff; 32], reports: u32::MAX, partitions: 9, at },
            AuditEvent::Release {
                recipient: r.clone(),
                metric: m,
                window_start: at,
                window_end: at,
                partitions: 1,
                at,
            },
            AuditEvent::Transcryption { recipient: r, receipt: None, proof_digest: [1; 32], at },
            AuditEvent::Purge { partitions: 1, records: 2, at },
            AuditEvent::KeyDestruction { key_id: [0x7f; 32], at },
            AuditEvent::CatalogueChange { digest: [3; 32], at },
            AuditEvent::DeviceDelegated { delegation: DelegationId([4; 32]), valid_from: at },
            AuditEvent::DeviceRevoked { revocation: DelegationId([5; 32]), at },
            AuditEvent::AdminOverride { reason: "lost phone".into(), receipts: vec![ReceiptId([6; 32])], at },
            AuditEvent::TranscryptionRefused {
                recipient: RecipientId::new("voltis").unwrap(),
                code: "replayed".into(),
                at,
            },
            AuditEvent::TokensIssued {
                recipients: vec![RecipientId::new("lab-eu").unwrap()],
                purpose: PurposeId::new("research").unwrap(),
                period: u64::MAX,
                tokens: 240,
                devices: 10,
                at,
            },
            AuditEvent::DeviceCertified {
                certificate: CertificateId([7; 32]),
                certifier: CertifierPublicKey([8; 32]),
                at,
            },
        ];
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.kind() as usize, i, "kinds follow the variant order");
            for seq in [0, 127, 128, u64::MAX] {
                assert_eq!(encode_leaf(e, seq).unwrap().first(), Some(&e.kind().leaf_tag()));
            }
        }
    }
}

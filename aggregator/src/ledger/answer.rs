//! The ledger's answers: plain data that serializes with serde (the CLI and the HTTP
//! API print them as JSON).

use confiance::Timestamp;
use confiance::catalogue::LegalBasis;
use confiance::ids::{CategoryId, MetricId, PurposeId, ReceiptId, RecipientId, SubjectId};
use confiance::retention::Duration;
use serde::{Deserialize, Serialize};

use crate::decision::Decision;

/// When something ends: at an instant, or only when the subject withdraws.
///
/// As JSON: `{"kind": "at", "at": SECONDS}` or `{"kind": "open_until_withdrawn"}` — an
/// open window reads as open, never as "withdrawn".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "at", rename_all = "snake_case")]
pub enum Until {
    /// At this instant.
    At(Timestamp),
    /// Open-ended: until the subject withdraws.
    #[serde(rename = "open_until_withdrawn")]
    Withdrawn,
}

impl core::fmt::Display for Until {
    /// `until withdrawn`, or the instant in RFC 3339.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::At(t) => f.write_str(&t.to_rfc3339()),
            Self::Withdrawn => f.write_str("until withdrawn"),
        }
    }
}

impl Until {
    /// `Withdrawn` for [`Timestamp::MAX`], else `At(t)`.
    #[must_use]
    pub const fn from_end(end: Timestamp) -> Self {
        if end.as_secs() == u64::MAX { Self::Withdrawn } else { Self::At(end) }
    }
}

/// One recipient and metric that sees a subject's data (an entry of [`SubjectAccess`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    /// Who sees it.
    pub recipient: RecipientId,
    /// What.
    pub metric: MetricId,
    /// The end of the access window interval that holds `at`, when `at` is in the access
    /// window (docs/design.md#access-window: the union over the subject's receipts naming the recipient
    /// and the metric of `[valid_from, min(valid_until, withdrawn_at))`); `None` when the
    /// recipient sees the data only because it still holds records.
    pub window_until: Option<Until>,
    /// The receipts in force at `at` that give the access, sorted.
    pub receipts: Vec<ReceiptId>,
    /// Their purposes, sorted and without repeats.
    pub purposes: Vec<PurposeId>,
    /// The longest effective hold (`min(receipt hold, metric maximum)`, as
    /// [`Ledger::record_deadline`](super::Ledger::record_deadline) applies it) among the
    /// receipts of the access window from `at` to `window_until` — those in force at `at`
    /// and those that start later in the same window: "for how long" is `window_until`
    /// plus this hold, and no record collected in the window is held longer.
    pub hold: Option<Duration>,
    /// Pseudonymous records of the subject for this metric the recipient holds at `at`.
    pub records_held: u64,
    /// The latest hold deadline among those records.
    pub records_until: Option<Timestamp>,
}

/// Who sees a subject's data at an instant, and for how long.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectAccess {
    /// The subject.
    pub subject: SubjectId,
    /// Valid time of the question.
    pub at: Timestamp,
    /// Record time of the question (`None` = as known now).
    pub as_known_at: Option<Timestamp>,
    /// Every (recipient, metric) that sees the subject's data at `at`, sorted.
    pub entries: Vec<AccessEntry>,
    /// Every device the subject delegated (as known at `as_known_at`), in the order
    /// recorded, with its validity and revocation.
    pub devices: Vec<super::EnrolledDevice>,
}

/// An anonymous partition as the metric- and recipient-level answers show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// The store's partition key (`store::PartitionKey::to_bytes`; lowercase hex in JSON).
    #[serde(with = "hex_bytes")]
    pub partition: Vec<u8>,
    /// The end of its time bucket.
    pub bucket_end: Timestamp,
    /// Its hold deadline (bucket end plus the tag's hold).
    pub deadline: Timestamp,
}

/// What one recipient sees of one metric at an instant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricView {
    /// The recipient.
    pub recipient: RecipientId,
    /// The metric.
    pub metric: MetricId,
    /// Distinct subjects whose data of this metric the recipient sees (access window or
    /// records held).
    pub subjects: u64,
    /// Of them, those in the access window at `at`.
    pub subjects_in_window: u64,
    /// Distinct subjects of whom it holds records at `at`.
    pub subjects_with_records: u64,
    /// The latest end among the receipts in force at `at` (`None` when none is).
    pub consent_until: Option<Until>,
    /// The latest hold deadline among the records held at `at`.
    pub records_until: Option<Timestamp>,
    /// Anonymous partitions of the metric with the recipient in their audience, held at `at`.
    pub partitions: Vec<PartitionInfo>,
}

/// What a recipient sees at an instant, per metric.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientView {
    /// The recipient.
    pub recipient: RecipientId,
    /// Valid time of the question.
    pub at: Timestamp,
    /// Record time of the question (`None` = as known now).
    pub as_known_at: Option<Timestamp>,
    /// One entry per metric the recipient sees anything of, sorted by metric.
    pub metrics: Vec<MetricView>,
}

/// The subject of a [`who_sees`](super::Ledger::who_sees) question.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// One metric.
    Metric(MetricId),
    /// Every metric of a data category.
    Category(CategoryId),
}

/// Who sees a metric or a category at an instant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoSees {
    /// The question's target.
    pub target: Target,
    /// Valid time of the question.
    pub at: Timestamp,
    /// Record time of the question (`None` = as known now).
    pub as_known_at: Option<Timestamp>,
    /// One entry per (metric, recipient) that sees anything, sorted by metric then recipient.
    pub entries: Vec<MetricView>,
}

/// Whose history: a subject's or a recipient's.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Party {
    /// A data subject.
    Subject(SubjectId),
    /// A recipient.
    Recipient(RecipientId),
}

/// How pseudonymous data reached a recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DisclosureKind {
    /// A release of records.
    Release,
    /// A transcryption of a polymorphic pseudonym into the recipient's domain.
    Transcryption,
}

/// A disclosure of a subject's pseudonymous data to a recipient at an instant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Disclosure {
    /// Release or transcryption.
    pub kind: DisclosureKind,
    /// To whom.
    pub recipient: RecipientId,
    /// Which metric.
    pub metric: MetricId,
    /// For which purpose.
    pub purpose: PurposeId,
    /// Whose data.
    pub subject: SubjectId,
    /// When (valid time).
    pub at: Timestamp,
    /// The record disclosed (its report id), if one.
    pub record: Option<[u8; 16]>,
}

/// A pseudonymous record the store holds, as the ledger indexes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordNote {
    /// The store's record id (the report id).
    pub record: [u8; 16],
    /// Whose.
    pub subject: SubjectId,
    /// For whom.
    pub recipient: RecipientId,
    /// Which metric.
    pub metric: MetricId,
    /// Under which receipt it was collected.
    pub receipt: ReceiptId,
    /// When it was collected.
    pub collected_at: Timestamp,
    /// Its hold deadline: `collected_at + min(receipt hold, metric maximum)`
    /// ([`Ledger::record_deadline`](super::Ledger::record_deadline)).
    pub deadline: Timestamp,
}

/// An anonymous partition the store holds, as the ledger indexes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PartitionNote {
    /// The store's partition key (`store::PartitionKey::to_bytes`; lowercase hex in JSON).
    #[serde(with = "hex_bytes")]
    pub partition: Vec<u8>,
    /// The metric.
    pub metric: MetricId,
    /// The end of its time bucket.
    pub bucket_end: Timestamp,
    /// Who may see it.
    pub audience: Vec<RecipientId>,
    /// Its hold deadline: bucket end plus the tag's hold.
    pub deadline: Timestamp,
}

/// One fact of the ledger, as [`history`](super::Ledger::history) lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "fact")]
#[non_exhaustive]
pub enum Fact {
    /// A consent receipt was recorded.
    ConsentGiven {
        /// The receipt.
        receipt: ReceiptId,
        /// Its subject.
        subject: SubjectId,
        /// Its recipient.
        recipient: RecipientId,
        /// Its purpose.
        purpose: PurposeId,
        /// The metrics it covers under the ledger's catalogue.
        metrics: Vec<MetricId>,
        /// Its start.
        valid_from: Timestamp,
        /// Its end, if it ends by itself.
        valid_until: Option<Timestamp>,
        /// Its hold.
        hold: Duration,
    },
    /// A withdrawal was recorded.
    ConsentWithdrawn {
        /// The receipt withdrawn.
        receipt: ReceiptId,
        /// Its subject.
        subject: SubjectId,
        /// Its recipient.
        recipient: RecipientId,
        /// From when (valid time).
        at: Timestamp,
    },
    /// A pseudonymous record was noted.
    RecordHeld(RecordNote),
    /// A record was purged.
    RecordPurged {
        /// The record.
        record: [u8; 16],
        /// Whose.
        subject: SubjectId,
        /// For whom.
        recipient: RecipientId,
        /// When (valid time).
        at: Timestamp,
    },
    /// An anonymous partition was noted.
    PartitionHeld(PartitionNote),
    /// A partition was purged.
    PartitionPurged {
        /// The partition (lowercase hex in JSON).
        #[serde(with = "hex_bytes")]
        partition: Vec<u8>,
        /// When (valid time).
        at: Timestamp,
    },
    /// Pseudonymous data was disclosed.
    Disclosed(Disclosure),
}

/// A fact with its record time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When the ledger learned it.
    pub recorded_at: Timestamp,
    /// The order in which the ledger learned it (ties of `recorded_at`).
    pub seq: u64,
    /// What.
    pub fact: Fact,
}

/// A disclosure that the consent valid at its time, as known at its time, did not allow.
/// Serialized for reports and the HTTP API; not deserialized, because a [`Decision`]
/// only comes out of the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnconsentedDisclosure {
    /// The disclosure.
    pub disclosure: Disclosure,
    /// When it was recorded.
    pub recorded_at: Timestamp,
    /// What `check` said at its time, as known at its time.
    pub decision: Decision,
}

/// What is overdue: data held past its deadline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overdue {
    /// The instant of the question (valid time).
    pub now: Timestamp,
    /// Record time of the question (`None` = as known now).
    pub as_known_at: Option<Timestamp>,
    /// Records in the store at `now` (not purged by then) whose deadline is at or before
    /// `now`, by deadline.
    pub records: Vec<RecordNote>,
    /// Partitions in the store at `now` whose deadline is at or before `now`, by deadline.
    pub partitions: Vec<PartitionNote>,
}

/// One (metric, recipient, purpose) the catalogue allows.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Access {
    /// The metric.
    pub metric: MetricId,
    /// The recipient.
    pub recipient: RecipientId,
    /// The purpose.
    pub purpose: PurposeId,
}

/// An access a catalogue change removes, with how many recorded grants named it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// The access.
    pub access: Access,
    /// Grants (receipt × metric) in the ledger for this access: consent the new
    /// catalogue no longer honours.
    pub grants: u64,
}

/// A metric whose maximum hold changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldChange {
    /// The metric.
    pub metric: MetricId,
    /// Its maximum hold before.
    pub before: Duration,
    /// Its maximum hold after.
    pub after: Duration,
}

/// A purpose whose legal basis changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalBasisChange {
    /// The purpose.
    pub purpose: PurposeId,
    /// Before.
    pub before: LegalBasis,
    /// After.
    pub after: LegalBasis,
}

/// Who gains or loses access to what between two catalogues.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueDiff {
    /// Accesses in the second catalogue and not the first, sorted.
    pub added: Vec<Access>,
    /// Accesses in the first and not the second, sorted.
    pub removed: Vec<Removal>,
    /// Metrics in both whose maximum hold differs.
    pub hold_changes: Vec<HoldChange>,
    /// Purposes in both whose legal basis differs.
    pub legal_basis_changes: Vec<LegalBasisChange>,
}

/// Byte strings of any length as lowercase hex in JSON (ids of 16 and 32 bytes are
/// hexed by the API layer; partition keys have no fixed length).
mod hex_bytes {
    use core::fmt::Write as _;

    pub(super) fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let hex = b.iter().fold(String::with_capacity(b.len() * 2), |mut h, x| {
            let _ = write!(h, "{x:02x}");
            h
        });
        s.serialize_str(&hex)
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        if !text.len().is_multiple_of(2) {
            return Err(serde::de::Error::custom("odd number of hex digits"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom("not hex"))
            })
            .collect()
    }
}

//! The device API (docs/design.md#interfaces): record → privatise → tag → queue → [`flush`] returns
//! sealed bytes for the host to send.
//!
//! - [`Recorder::record`] (anonymous statistics) and [`Recorder::record_service`]
//!   (pseudonymous records) never fail and never panic: whatever goes wrong — an
//!   unknown metric, a value out of range, no consent, an exhausted ε budget, a full
//!   queue — becomes a [`Counters`] entry that the host can ship with its telemetry, and
//!   a count per metric and [`Cause`] ([`Recorder::errors`]). In strict mode
//!   ([`Recorder::set_strict`], for development and tests) they return the
//!   [`RecordError`] instead.
//! - Consent is asked for by a [`ConsentRequest`], checked against the catalogue (a hold
//!   longer than a metric's maximum is refused) before it is signed.
//! - The queue is bounded by count and by bytes; when full, the oldest report is dropped
//!   and counted. Sealed envelopes wait in an outbox (bounded by bytes) until the host
//!   [`acknowledge`](Recorder::acknowledge)s them, so a failed upload loses nothing. The
//!   aggregator answers per report ([`Recorder::acknowledge_refused`]): a report refused
//!   for good is dropped and counted per metric and code, never sent again; one refused
//!   for now is sent again later, in a new envelope, with an exponential backoff.
//! - State persists through the host's [`Storage`] (no I/O here).
//! - The recorder keeps a small log of what it sent, under which tag, to whom and held
//!   until when: the device-side twin of the aggregator's `subject_access`
//!   ([`Recorder::sent_log`]), for the anonymous statistics no server can attribute.
//!
//! A `Recorder` cannot exist half-built: [`RecorderParts`] names everything it needs.
//!
//! ```
//! use confiance::catalogue::Catalogue;
//! use confiance::consent::{ConsentRequest, ConsentState, DeviceKey, Scope};
//! use confiance::envelope::{AeadId, KeyConfig, KeyId, SecretKey};
//! use confiance::ids::*;
//! use confiance::pseudonym::DeviceSecret;
//! use confiance::recorder::{MemoryStorage, Recorder, RecorderParts, Value};
//! use confiance::rng::OsRng;
//! use confiance::Timestamp;
//!
//! let catalogue = Catalogue::from_toml_str(include_str!("../examples/catalogue.toml"))?;
//! let mut rng = OsRng::new();
//! let server = SecretKey::generate(&mut rng); // the aggregator's; the device has its config
//! let config = KeyConfig::new(KeyId(1), AeadId::ChaCha20Poly1305, server.public_key(), Timestamp::EPOCH, Timestamp::MAX)?;
//! let mut recorder = Recorder::new(RecorderParts {
//!     catalogue,
//!     consent: ConsentState::new(DeviceKey::generate(&mut rng)),
//!     pseudonyms: DeviceSecret::generate(&mut rng),
//!     controller: RecipientId::new("calora")?,
//!     key_configs: vec![config],
//!     rng,
//! }, MemoryStorage::default());
//!
//! let now = Timestamp::from_secs(1_800_000_000);
//! let (mode, improvement) = (MetricId::new("thermostat.mode")?, PurposeId::new("product-improvement")?);
//! let request = ConsentRequest::new(RecipientId::new("calora")?, improvement.clone(), Scope::metrics([mode.clone()]), "P90D".parse()?);
//! recorder.give_consent(request, now)?;
//! recorder.record(&mode, &improvement, Value::Category(2), now)?;
//! let envelopes = recorder.flush(now);
//! assert_eq!(envelopes.len(), 1);
//! recorder.acknowledge(&envelopes[0]);
//! assert_eq!(recorder.pending_envelopes(), 0);
//! assert_eq!(recorder.sent_log().count(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`flush`]: Recorder::flush

mod encoded;
mod error;
mod sent_log;
pub(crate) mod storage;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use encoded::{Count, Encoded, Seq, Sink, Stream};
pub use error::{Cause, NoConsentReason, RecordError, ValueKind};
pub use sent_log::{MAX_SENT_LOG_BYTES, SENT_LOG_VERSION, SentLogError, SentLogExport};
pub use storage::{MemoryStorage, NullStorage, StateWriter, Storage, StorageError};

use crate::Timestamp;
use crate::catalogue::{Catalogue, Metric, MetricKind, Privacy};
pub use crate::consent::ConsentRequest;
use crate::consent::{ConsentError, ConsentState, ReceiptEntry, Scope, SignedReceipt};
use crate::envelope::{self, EnvelopeId, HeaderFields, KeyConfig, ReportId};
use crate::ids::{MetricId, PurposeId, ReceiptId, RecipientId, SubjectId};
use crate::ldp::{LdpValue, Selection};
use crate::pseudonym::{DeviceSecret, Epoch, ScopedPseudonymEntry};
use crate::report::{Payload, RecordValue, Refusal, Refused, Report};
use crate::retention::RetentionTag;
use crate::token::{
    PendingTokens, SpentToken, Token, TokenPeriod, TokenRequest, TokenResponse, TokenScope, voprf,
};
use core::borrow::Borrow;

/// Width of an envelope's time bucket: the header carries the UTC day of the flush.
pub const ENVELOPE_BUCKET_SECS: u64 = 86_400;

/// A value to record. Booleans for boolean metrics, a label index for categorical ones,
/// an integer for numeric metrics and counts (counts above the maximum are clamped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// A category: the label's index in the catalogue.
    Category(u32),
    /// An integer.
    Int(i64),
}

/// Bounds on what the recorder keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most reports waiting to be sealed.
    pub max_queued_reports: usize,
    /// Most bytes of reports waiting to be sealed.
    pub max_queued_bytes: usize,
    /// Most bytes of sealed, unacknowledged envelopes.
    pub max_outbox_bytes: usize,
    /// Most reports in one envelope.
    pub max_reports_per_envelope: usize,
    /// Most entries in the sent log (oldest forgotten first).
    pub max_sent_log: usize,
}

impl Limits {
    /// For a phone, a gateway or a car (the default): 4096 reports or 256 KiB queued,
    /// 1 MiB of envelopes, 512 reports an envelope, 4096 sent-log entries — weeks offline
    /// at a few reports an hour, at a few MB of RAM when full (docs/benchmarks.md).
    #[must_use]
    pub const fn phone() -> Self {
        Self {
            max_queued_reports: 4096,
            max_queued_bytes: 256 * 1024,
            max_outbox_bytes: 1024 * 1024,
            max_reports_per_envelope: 512,
            max_sent_log: 4096,
        }
    }

    /// For a microcontroller: 64 reports or 8 KiB queued, 8 KiB of envelopes, 64 reports
    /// an envelope, 32 sent-log entries — a day offline at two metrics an hour fits, in
    /// a peak of 24.8 KiB of heap with a storage that takes the state as it is encoded
    /// ([`Storage::save_streamed`]; `tests/footprint.rs`, docs/benchmarks.md, "Device
    /// heap"). Past the bounds the oldest reports are dropped, counted.
    #[must_use]
    pub const fn microcontroller() -> Self {
        Self {
            max_queued_reports: 64,
            max_queued_bytes: 8 * 1024,
            max_outbox_bytes: 8 * 1024,
            max_reports_per_envelope: 64,
            max_sent_log: 32,
        }
    }
}

impl Default for Limits {
    /// [`Limits::phone`].
    fn default() -> Self {
        Self::phone()
    }
}

/// What went wrong, counted instead of raised (saturating). Ship them with the telemetry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Counters {
    /// Reports queued.
    pub recorded: u32,
    /// Metric not in the catalogue, or recorded on the wrong track.
    pub unknown_metric: u32,
    /// Value of the wrong kind or out of the metric's domain.
    pub invalid_value: u32,
    /// No consent in force for any recipient (or the purpose is not allowed).
    pub no_consent: u32,
    /// The per-period ε budget would have been exceeded.
    pub budget_exhausted: u32,
    /// Queued reports dropped (oldest first) because the queue was full.
    pub dropped_queue_full: u32,
    /// Sealed envelopes dropped (oldest first) because the outbox was full.
    pub dropped_outbox_full: u32,
    /// Flushes with no valid aggregator key config (reports stay queued).
    pub no_key: u32,
    /// Envelopes that could not be sealed or encoded (reports stay queued).
    pub seal_failed: u32,
    /// Host storage loads or saves that failed.
    pub storage_failed: u32,
    /// Envelopes sealed.
    pub envelopes_sealed: u32,
    /// Reports the aggregator refused for good (dropped; per metric and code in
    /// [`Recorder::refusals`]).
    pub refused: u32,
    /// Reports the aggregator refused for now, queued again with a backoff.
    pub retried: u32,
    /// Reports of a metric with an ε budget not made because the budget could not be
    /// kept: the charge could not be saved, the storage keeps nothing
    /// ([`NullStorage`]), or the saved state could not be read back (then the current
    /// period counts as spent). The recorder fails closed rather than reopen a period.
    pub budget_unsaved: u32,
    /// Reports left queued at a flush because no report token of their scope was held
    /// (counted once per report and flush; they go out once tokens arrive).
    pub waiting_for_token: u32,
    /// Token requests that could not be built, and token responses refused (bad proof,
    /// another key, no matching request).
    pub token_failed: u32,
    /// Queued reports dropped at a flush because their hold had already ended (bucket end
    /// plus hold for a statistic, collection plus hold for a record): nobody may keep
    /// them any more, and the aggregator refuses them (`time_outside_window`). A device
    /// that waits long for report tokens or stays offline past its shortest hold loses
    /// them here rather than send them. Not saved with the state (so that states saved
    /// before and after it load alike): it counts since the recorder was made or loaded.
    #[serde(skip)]
    pub expired: u32,
}

fn bump(c: &mut u32) {
    *c = c.saturating_add(1);
}

/// The most distinct (metric, cause) error counters a recorder keeps: a host recording
/// under ever new misspelt ids cannot grow them without bound. Errors past it still count
/// in [`Counters`].
pub const MAX_ERROR_COUNTERS: usize = 64;

/// One line of the device's own log of what it sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentEntry {
    /// The metric.
    pub metric: MetricId,
    /// Start of the report's time bucket.
    pub time: Timestamp,
    /// The purpose.
    pub purpose: PurposeId,
    /// Who may see it.
    pub audience: Vec<RecipientId>,
    /// Until when it may be held (bucket end + hold for statistics, collection + hold
    /// for records); [`Timestamp::MAX`] when only an event ends it.
    pub held_until: Timestamp,
    /// The receipt of a pseudonymous record; `None` for anonymous statistics.
    pub receipt: Option<ReceiptId>,
    /// The envelope it went in.
    pub envelope: EnvelopeId,
}

/// Everything a [`Recorder`] needs; there is no other way to make one.
#[derive(Debug)]
pub struct RecorderParts<R, C = Catalogue> {
    /// The catalogue this device follows: a [`Catalogue`], or anything that borrows one
    /// (`&'static Catalogue`, `Arc<Catalogue>`, `Rc<Catalogue>`), so that many recorders
    /// in one process — a gateway, a simulation — can share one copy.
    pub catalogue: C,
    /// The device's consent state (and signing key).
    pub consent: ConsentState,
    /// The device's pseudonym secret.
    pub pseudonyms: DeviceSecret,
    /// The controller the device belongs to (its brand).
    pub controller: RecipientId,
    /// The aggregator key configs the device caches.
    pub key_configs: Vec<KeyConfig>,
    /// The randomness (the OS CSPRNG in production; a seeded one only in tests).
    pub rng: R,
}

/// The saved state (read only by this crate, so not in docs/wire-format.md): the reports
/// are kept encoded ([`Seq`]) and saved as the sequence of reports they encode, the
/// bytes saved when they were kept decoded. The recorder writes it field by field
/// ([`SavedState::write`]), copying the reports' encodings.
#[derive(Serialize, Deserialize)]
struct Persisted {
    version: u8,
    queue: Seq<Report>,
    outbox: Vec<Vec<u8>>,
    budgets: Vec<(MetricId, u64, crate::Epsilon)>,
    sent: Seq<SentEntry>,
    receipts: Vec<(Vec<u8>, Option<Timestamp>)>,
    counters: Counters,
    in_flight: Vec<([u8; 32], Seq<Report>)>,
    retries: Vec<Retry>,
    refusals: Vec<(MetricId, Refusal, u32)>,
    tokens: Vec<SpentToken>,
    tokens_required: bool,
}

/// What the recorder saves, borrowed from it (apart from the storage it is saved to).
struct SavedState<'a> {
    queue: &'a VecDeque<Encoded<Report>>,
    outbox: &'a VecDeque<Vec<u8>>,
    budgets: &'a BTreeMap<MetricId, (u64, crate::ldp::Budget)>,
    sent: &'a VecDeque<Encoded<SentEntry>>,
    consent: &'a ConsentState,
    counters: Counters,
    in_flight: &'a BTreeMap<[u8; 32], Vec<Encoded<Report>>>,
    retries: &'a [Retry],
    refusals: &'a BTreeMap<(MetricId, Refusal), u32>,
    tokens: &'a BTreeMap<TokenScope, Vec<Token>>,
    tokens_required: bool,
    errors: &'a BTreeMap<(MetricId, Cause), u32>,
}

impl SavedState<'_> {
    /// The saved state: the fields of [`Persisted`] in order (postcard encodes a struct as
    /// its fields one after the other), the reports copied from their encodings rather
    /// than decoded; then the per-metric error counters.
    fn write<K: Sink>(&self, out: &mut K) -> postcard::Result<()> {
        out.value(&PERSIST_VERSION)?;
        out.seq(self.queue.iter())?;
        out.value(&self.outbox)?;
        let budgets: Vec<(&MetricId, u64, crate::Epsilon)> =
            self.budgets.iter().filter_map(|(m, (period, b))| Some((m, *period, b.spent()?))).collect();
        out.value(&budgets)?;
        out.seq(self.sent.iter())?;
        // A receipt encodes as its bytes (`SignedReceipt::to_bytes`), one at a time.
        out.value(&self.consent.list().count())?;
        for e in self.consent.list() {
            out.value(&(e.receipt.to_bytes(), e.withdrawn_at))?;
        }
        out.value(&self.counters)?;
        // A map encodes as the sequence of its pairs, and an array as its bytes.
        out.value(&self.in_flight.len())?;
        for (id, reports) in self.in_flight {
            out.value(id)?;
            out.seq(reports.iter())?;
        }
        out.value(&self.retries)?;
        let refusals: Vec<(&MetricId, Refusal, u32)> =
            self.refusals.iter().map(|((m, r), n)| (m, *r, *n)).collect();
        out.value(&refusals)?;
        // A pair encodes as a two-field struct, as [`SpentToken`].
        let tokens: Vec<(&TokenScope, &Token)> =
            self.tokens.iter().flat_map(|(scope, ts)| ts.iter().map(move |t| (scope, t))).collect();
        out.value(&tokens)?;
        out.value(&self.tokens_required)?;
        let errors: Vec<(&MetricId, Cause, u32)> =
            self.errors.iter().map(|((m, c), n)| (m, *c, *n)).collect();
        out.value(&errors)
    }
}

/// A report the aggregator refused for now, waiting to be sent again.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Retry {
    report: Report,
    /// Not sealed again before this instant.
    not_before: Timestamp,
    /// Times it was refused for now.
    attempts: u8,
}

/// First retry delay; doubled at each refusal, at most [`RETRY_MAX_SECS`].
const RETRY_BASE_SECS: u64 = 3_600;
const RETRY_MAX_SECS: u64 = 86_400;

/// Version 2 added [`Counters::budget_unsaved`] and the per-report acknowledgement state
/// (reports of unacknowledged envelopes, retries, refusals); version 3 added the report
/// tokens held, whether they are required, and [`Counters::waiting_for_token`] and
/// [`Counters::token_failed`]. An older state is not read (counted as a failed load, so
/// the current budget period counts as spent).
const PERSIST_VERSION: u8 = 3;

/// The device recorder: the one object a device's code talks to.
///
/// Made once at start-up from [`RecorderParts`] and the host's [`Storage`] (it restores
/// what was saved), it then does four things, each a method:
///
/// 1. **consent** — [`give_consent`](Self::give_consent) with a [`ConsentRequest`],
///    [`withdraw_consent`](Self::withdraw_consent),
///    [`narrow_consent`](Self::narrow_consent): each returns signed bytes for the host to
///    send to the aggregator;
/// 2. **record** — [`record`](Self::record) (anonymous statistics, noised here) and
///    [`record_service`](Self::record_service) (pseudonymous records under a receipt);
///    mistakes are counted per metric and [`Cause`] ([`errors`](Self::errors)), or
///    returned in strict mode ([`set_strict`](Self::set_strict));
/// 3. **flush** — [`flush`](Self::flush) seals the queue to the aggregator's key and
///    returns every envelope not yet acknowledged, for the host to upload;
/// 4. **acknowledge** — [`acknowledge`](Self::acknowledge) or
///    [`acknowledge_refused`](Self::acknowledge_refused) once the aggregator answered.
///
/// It does no I/O, never panics and never blocks: the host moves the bytes. Its memory is
/// bounded by its [`Limits`] ([`Limits::microcontroller`], [`Limits::phone`]).
///
/// ```
/// use confiance::catalogue::Catalogue;
/// use confiance::consent::{ConsentRequest, ConsentState, DeviceKey, Scope};
/// use confiance::envelope::KeyConfig;
/// use confiance::ids::{MetricId, PurposeId, RecipientId};
/// use confiance::pseudonym::DeviceSecret;
/// use confiance::recorder::{MemoryStorage, Recorder, RecorderParts, Value};
/// use confiance::rng::OsRng;
/// use confiance::Timestamp;
/// # let server = confiance::envelope::SecretKey::generate(&mut OsRng::new());
/// # let server_config = confiance::envelope::KeyConfig::new(confiance::envelope::KeyId(1), confiance::envelope::AeadId::ChaCha20Poly1305, server.public_key(), Timestamp::EPOCH, Timestamp::MAX)?.to_bytes();
///
/// let mut rng = OsRng::new();
/// let mut recorder = Recorder::new(
///     RecorderParts {
///         catalogue: Catalogue::from_toml_str(include_str!("../examples/catalogue.toml"))?,
///         consent: ConsentState::new(DeviceKey::generate(&mut rng)),
///         pseudonyms: DeviceSecret::generate(&mut rng),
///         controller: RecipientId::new("calora")?,
///         key_configs: vec![KeyConfig::from_bytes(&server_config)?], // fetched from the aggregator
///         rng,
///     },
///     MemoryStorage::default(),
/// );
/// recorder.set_strict(cfg!(debug_assertions)); // mistakes fail loudly in development
///
/// let now = Timestamp::from_secs(1_800_000_000);
/// let (mode, improvement) = (MetricId::new("thermostat.mode")?, PurposeId::new("product-improvement")?);
/// let scope = Scope::metrics([mode.clone()]);
/// let receipt = recorder.give_consent(
///     ConsentRequest::new(RecipientId::new("calora")?, improvement.clone(), scope, "P90D".parse()?),
///     now,
/// )?;
/// recorder.record(&mode, &improvement, Value::Category(2), now)?;
/// for envelope in recorder.flush(now) {
///     // upload `envelope` (and `receipt` before it); once the aggregator answered:
///     recorder.acknowledge(&envelope);
/// }
/// assert_eq!(recorder.pending_envelopes(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Recorder<R, S, C = Catalogue> {
    catalogue: C,
    consent: ConsentState,
    secret: DeviceSecret,
    controller: RecipientId,
    keys: Vec<KeyConfig>,
    rng: R,
    storage: S,
    limits: Limits,
    mechanisms: BTreeMap<MetricId, Selection>,
    budgets: BTreeMap<MetricId, (u64, crate::ldp::Budget)>,
    /// Reports waiting to be sealed, encoded.
    queue: VecDeque<Encoded<Report>>,
    /// Their encodings' total length.
    queued_bytes: usize,
    outbox: VecDeque<Vec<u8>>,
    /// The sent log, encoded (about 90 bytes an entry rather than 230 decoded).
    sent: VecDeque<Encoded<SentEntry>>,
    counters: Counters,
    /// The reports of each unacknowledged envelope (by envelope id), to act on a
    /// per-report answer.
    in_flight: BTreeMap<[u8; 32], Vec<Encoded<Report>>>,
    /// Reports refused for now, waiting for their backoff.
    retries: Vec<Retry>,
    /// Ids of retried reports already in the sent log (not logged twice).
    relogged: BTreeSet<[u8; 16]>,
    /// Times each report still retrying (waiting, or sealed again) was refused for now.
    attempts: BTreeMap<[u8; 16], u8>,
    /// Reports refused for good, per metric and code.
    refusals: BTreeMap<(MetricId, Refusal), u32>,
    /// The saved state could not be read at start: what was spent in the current budget
    /// period is unknown, so each budgeted metric's first period here counts as spent.
    budget_state_lost: bool,
    /// Calls that made no report, per metric and cause (at most [`MAX_ERROR_COUNTERS`]).
    errors: BTreeMap<(MetricId, Cause), u32>,
    /// Strict mode: `record` returns its errors instead of counting them.
    strict: bool,
    /// Report tokens held, per scope (spent from the end).
    tokens: BTreeMap<TokenScope, Vec<Token>>,
    /// Token requests sent and not yet answered.
    pending_tokens: Vec<PendingTokens>,
    /// Whether envelopes must carry a token per scope of their statistics.
    tokens_required: bool,
}

/// The most token requests awaiting an answer; the oldest is forgotten past it.
const MAX_PENDING_TOKEN_REQUESTS: usize = 16;

/// The value as the LDP encoder wants it, or `None` if it does not fit the metric.
fn ldp_value(kind: &MetricKind, v: Value) -> Option<LdpValue> {
    match (kind, v) {
        (MetricKind::Boolean, Value::Bool(b)) => Some(LdpValue::Category(u32::from(b))),
        (MetricKind::Categorical { labels }, Value::Category(i)) if (i as usize) < labels.len() => {
            Some(LdpValue::Category(i))
        }
        (MetricKind::Numeric { min, max }, Value::Int(x)) if (*min..=*max).contains(&x) => {
            Some(LdpValue::Numeric(x))
        }
        (MetricKind::Count { max }, Value::Int(x)) => {
            Some(LdpValue::Numeric(x.clamp(0, i64::try_from(*max).unwrap_or(i64::MAX))))
        }
        _ => None,
    }
}

/// Why `v` does not fit `kind` (called once [`ldp_value`] or [`record_value`] refused it).
fn value_error(metric: &MetricId, kind: &MetricKind, v: Value) -> RecordError {
    let metric = metric.clone();
    match (kind, v) {
        (MetricKind::Categorical { labels }, Value::Category(index)) => RecordError::LabelOutOfRange {
            metric,
            index,
            labels: u32::try_from(labels.len()).unwrap_or(u32::MAX),
        },
        (MetricKind::Numeric { min, max }, Value::Int(value)) => {
            RecordError::OutOfRange { metric, value, min: *min, max: *max }
        }
        (MetricKind::Boolean, _) => RecordError::WrongValue { metric, expected: ValueKind::Bool },
        (MetricKind::Categorical { .. }, _) => {
            RecordError::WrongValue { metric, expected: ValueKind::Category }
        }
        (MetricKind::Numeric { .. } | MetricKind::Count { .. }, _) => {
            RecordError::WrongValue { metric, expected: ValueKind::Int }
        }
    }
}

fn record_value(kind: &MetricKind, v: Value) -> Option<RecordValue> {
    match (kind, v) {
        (MetricKind::Boolean, Value::Bool(b)) => Some(RecordValue::Bool(b)),
        (MetricKind::Categorical { labels }, Value::Category(i)) if (i as usize) < labels.len() => {
            Some(RecordValue::Category(i))
        }
        (MetricKind::Numeric { min, max }, Value::Int(x)) if (*min..=*max).contains(&x) => {
            Some(RecordValue::Numeric(x))
        }
        (MetricKind::Count { max }, Value::Int(x)) => {
            Some(RecordValue::Count(u64::try_from(x.max(0)).unwrap_or(0).min(*max)))
        }
        _ => None,
    }
}

/// An envelope's body ([`envelope::encode_body`]'s bytes) from the reports' encodings:
/// the tokens, the reports' count, each report's encoding.
fn body(tokens: &[SpentToken], reports: &[Encoded<Report>]) -> postcard::Result<Vec<u8>> {
    let mut count = Count(0);
    count.value(tokens)?;
    count.seq(reports.iter())?;
    let mut out = Vec::with_capacity(count.0);
    out.value(tokens)?;
    out.seq(reports.iter())?;
    Ok(out)
}

impl<R: rand_core::CryptoRng, S: Storage, C: Borrow<Catalogue>> Recorder<R, S, C> {
    /// A recorder with default [`Limits`], restoring what `storage` holds (a failed or
    /// unreadable load is counted, and the recorder starts empty).
    pub fn new(parts: RecorderParts<R, C>, storage: S) -> Self {
        Self::with_limits(parts, storage, Limits::default())
    }

    /// A recorder with explicit limits.
    pub fn with_limits(parts: RecorderParts<R, C>, storage: S, limits: Limits) -> Self {
        let mechanisms = parts
            .catalogue
            .borrow()
            .metrics()
            .filter_map(|(id, m)| Some((id.clone(), m.mechanism()?)))
            .collect();
        let mut r = Self {
            catalogue: parts.catalogue,
            consent: parts.consent,
            secret: parts.pseudonyms,
            controller: parts.controller,
            keys: parts.key_configs,
            rng: parts.rng,
            storage,
            limits,
            mechanisms,
            budgets: BTreeMap::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            outbox: VecDeque::new(),
            sent: VecDeque::new(),
            counters: Counters::default(),
            in_flight: BTreeMap::new(),
            retries: Vec::new(),
            relogged: BTreeSet::new(),
            attempts: BTreeMap::new(),
            refusals: BTreeMap::new(),
            budget_state_lost: false,
            errors: BTreeMap::new(),
            strict: false,
            tokens: BTreeMap::new(),
            pending_tokens: Vec::new(),
            tokens_required: false,
        };
        r.restore();
        r
    }

    fn restore(&mut self) {
        let bytes = match self.storage.load() {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(_) => {
                self.budget_state_lost = true;
                return bump(&mut self.counters.storage_failed);
            }
        };
        let (p, rest) = match postcard::take_from_bytes::<Persisted>(&bytes) {
            Ok((p, rest)) if p.version == PERSIST_VERSION => (p, rest),
            _ => {
                self.budget_state_lost = true;
                return bump(&mut self.counters.storage_failed);
            }
        };
        // The per-metric error counters follow the state (absent in a state saved before
        // they existed); unreadable ones are only diagnostics, so they start again.
        if !rest.is_empty() {
            match postcard::from_bytes::<Vec<(MetricId, Cause, u32)>>(rest) {
                Ok(errors) => {
                    self.errors =
                        errors.into_iter().take(MAX_ERROR_COUNTERS).map(|(m, c, n)| ((m, c), n)).collect();
                }
                Err(_) => bump(&mut self.counters.storage_failed),
            }
        }
        let mut entries = Vec::with_capacity(p.receipts.len());
        for (b, withdrawn_at) in &p.receipts {
            match SignedReceipt::from_bytes(b) {
                Ok(receipt) => entries.push(ReceiptEntry { receipt, withdrawn_at: *withdrawn_at }),
                Err(_) => bump(&mut self.counters.storage_failed),
            }
        }
        if !entries.is_empty() && self.consent.list().next().is_none() && self.consent.adopt(entries).is_err()
        {
            bump(&mut self.counters.storage_failed);
        }
        self.tokens_required = p.tokens_required;
        for t in p.tokens {
            self.tokens.entry(t.scope).or_default().push(t.token);
        }
        for (metric, period, spent) in p.budgets {
            if let Some(cap) = self.budget_cap(&metric) {
                let mut b = crate::ldp::Budget::new(cap);
                let _ = b.try_charge(period, spent);
                self.budgets.insert(metric, (period, b));
            }
        }
        self.queued_bytes = p.queue.0.iter().map(Encoded::len).sum();
        self.queue = p.queue.0.into();
        self.outbox = p.outbox.into();
        self.sent = p.sent.0.into();
        self.counters = p.counters;
        self.in_flight = p.in_flight.into_iter().map(|(id, reports)| (id, reports.0)).collect();
        self.retries = p.retries;
        self.attempts = self.retries.iter().map(|r| (r.report.id.0, r.attempts)).collect();
        self.refusals = p.refusals.into_iter().map(|(m, r, n)| ((m, r), n)).collect();
    }

    /// Saves the recorder's state through the host's storage (done after every flush,
    /// acknowledgement, consent change and ε charge; call it too before the host shuts
    /// down). A failure is counted.
    pub fn persist(&mut self) {
        if self.save_state().is_err() {
            bump(&mut self.counters.storage_failed);
        }
    }

    fn save_state(&mut self) -> Result<(), StorageError> {
        if !self.storage.keeps_state() {
            return Ok(());
        }
        // Counted, then handed to the storage as it is encoded: the recorder holds no
        // copy of it (the storage may gather it, by default into a buffer of that size).
        let Self {
            storage,
            queue,
            outbox,
            budgets,
            sent,
            consent,
            counters,
            in_flight,
            retries,
            refusals,
            tokens,
            tokens_required,
            errors,
            ..
        } = self;
        let state = SavedState {
            queue,
            outbox,
            budgets,
            sent,
            consent,
            counters: *counters,
            in_flight,
            retries,
            refusals,
            tokens,
            tokens_required: *tokens_required,
            errors,
        };
        let mut count = Count(0);
        state.write(&mut count).map_err(|_| StorageError)?;
        storage.save_streamed(count.0, &mut |put| state.write(&mut Stream(put)).map_err(|_| StorageError))
    }

    fn budget_cap(&self, metric: &MetricId) -> Option<crate::Epsilon> {
        match &self.catalogue.borrow().metric(metric)?.privacy {
            Privacy::Ldp { budget: Some(b), .. } => Some(b.epsilon),
            _ => None,
        }
    }

    /// The subject this device speaks for: the hash of the subject key
    /// ([`ConsentState::subject`]). Receipts name the subject by it.
    #[must_use]
    pub fn subject(&self) -> SubjectId {
        self.consent.subject()
    }

    /// Records an anonymous statistic of `metric` for `purpose` at `now`: privatised with
    /// the metric's mechanism, tagged for every recipient the catalogue allows and the
    /// subject consented to (or every allowed recipient when the purpose's legal basis is
    /// not consent), charged to the ε budget, and queued.
    ///
    /// # Errors
    /// Only in strict mode ([`Self::set_strict`]): the [`RecordError`] that kept the value
    /// from being recorded. Otherwise it never fails: the error is counted in
    /// [`Counters`] and per metric and cause in [`Self::errors`], and `Ok` is returned.
    pub fn record(
        &mut self,
        metric: &MetricId,
        purpose: &PurposeId,
        value: Value,
        now: Timestamp,
    ) -> Result<(), RecordError> {
        let outcome = self.try_record(metric, purpose, value, now);
        self.settle(outcome)
    }

    fn try_record(
        &mut self,
        metric: &MetricId,
        purpose: &PurposeId,
        value: Value,
        now: Timestamp,
    ) -> Result<(), RecordError> {
        let m = self
            .catalogue
            .borrow()
            .metric(metric)
            .ok_or_else(|| RecordError::UnknownMetric(metric.clone()))?;
        if !m.is_anonymous() {
            return Err(RecordError::WrongTrack(metric.clone()));
        }
        let v = ldp_value(&m.kind, value).ok_or_else(|| value_error(metric, &m.kind, value))?;
        if !m.purposes.contains(purpose) {
            return Err(RecordError::PurposeNotAllowed { metric: metric.clone(), purpose: purpose.clone() });
        }
        let time = now.truncate(m.bucket_secs());
        let audience: Vec<RecipientId> = m
            .recipients
            .iter()
            .filter(|r| {
                RetentionTag::for_statistic(
                    self.catalogue.borrow(),
                    &self.consent,
                    metric,
                    purpose,
                    [(*r).clone()],
                    now,
                )
                .is_ok()
            })
            .cloned()
            .collect();
        let Ok(tag) = RetentionTag::for_statistic(
            self.catalogue.borrow(),
            &self.consent,
            metric,
            purpose,
            audience,
            now,
        ) else {
            let reason = self.no_consent_reason(metric, Some(purpose), now, time);
            return Err(RecordError::NoConsent { metric: metric.clone(), reason });
        };
        if !self.mechanisms.contains_key(metric) {
            return Err(RecordError::Unencodable(metric.clone()));
        }
        let budget = match &m.privacy {
            Privacy::Ldp { epsilon, budget: Some(b), .. } => {
                Some((*epsilon, b.epsilon, b.period.fixed_secs().unwrap_or(86_400).max(1)))
            }
            _ => None,
        };
        if let Some((epsilon, cap, period_secs)) = budget {
            // Fail closed: a budget that does not survive a restart would reopen its
            // period, so ε is spent only once its charge is saved (issue #14, defect 6).
            if !self.storage.keeps_state() && !self.storage.single_life() {
                return Err(RecordError::BudgetUnsaved(metric.clone()));
            }
            let period = now.as_secs() / period_secs;
            let before = self.budgets.get(metric).copied();
            let lost = self.budget_state_lost;
            let entry = self.budgets.entry(metric.clone()).or_insert_with(|| {
                let mut fresh = crate::ldp::Budget::new(cap);
                if lost {
                    // Unknown spending in this period: count it as all spent.
                    let _ = fresh.try_charge(period, cap);
                }
                (period, fresh)
            });
            if !entry.1.try_charge(period, epsilon) {
                if lost && before.is_none() {
                    return Err(RecordError::BudgetUnsaved(metric.clone()));
                }
                return Err(RecordError::BudgetExhausted(metric.clone()));
            }
            entry.0 = period;
            if self.save_state().is_err() {
                match before {
                    Some(old) => self.budgets.insert(metric.clone(), old),
                    None => self.budgets.remove(metric),
                };
                bump(&mut self.counters.storage_failed);
                return Err(RecordError::BudgetUnsaved(metric.clone()));
            }
        }
        let mech = self.mechanisms.get(metric).ok_or_else(|| RecordError::Unencodable(metric.clone()))?;
        // OLH's seed pool and general-privacy HR's block permutation are keyed per time
        // bucket (the aggregator derives the same key from the report's `time`).
        let mech = mech.for_period(metric.as_str(), time.as_secs());
        let ldp = mech.encode(v, &mut self.rng).map_err(|_| RecordError::Unencodable(metric.clone()))?;
        let report = Report {
            id: ReportId::random(&mut self.rng),
            metric: metric.clone(),
            time,
            tag,
            payload: Payload::Statistic(ldp),
        };
        if !self.enqueue(&report) {
            return Err(RecordError::Unencodable(metric.clone()));
        }
        Ok(())
    }

    /// Records a pseudonymous service record of `metric` at `now`: one report per
    /// receipt in force that covers it, each under the device's pseudonym for that
    /// receipt's recipient in the current epoch.
    ///
    /// The report is stamped with the start of its time bucket, and the aggregator can
    /// check consent only at that stamp: so a receipt counts only if it is in force both
    /// at the start of the bucket and at `now` (docs/catalogue.md, "Consent timing") — a
    /// record is not made in the partial bucket in which consent starts
    /// ([`NoConsentReason::StartedThisBucket`]).
    ///
    /// # Errors
    /// Only in strict mode, as [`Self::record`]; otherwise errors are counted.
    pub fn record_service(
        &mut self,
        metric: &MetricId,
        value: Value,
        now: Timestamp,
    ) -> Result<(), RecordError> {
        let outcome = self.try_record_service(metric, value, now);
        self.settle(outcome)
    }

    fn try_record_service(
        &mut self,
        metric: &MetricId,
        value: Value,
        now: Timestamp,
    ) -> Result<(), RecordError> {
        let m = self
            .catalogue
            .borrow()
            .metric(metric)
            .ok_or_else(|| RecordError::UnknownMetric(metric.clone()))?;
        if m.is_anonymous() {
            return Err(RecordError::WrongTrack(metric.clone()));
        }
        let v = record_value(&m.kind, value).ok_or_else(|| value_error(metric, &m.kind, value))?;
        let time = now.truncate(m.bucket_secs());
        let epoch_len = self.catalogue.borrow().limits().pseudonym_epoch.fixed_secs().unwrap_or(30 * 86_400);
        let epoch = Epoch::containing(now, epoch_len).unwrap_or(Epoch(0));
        let receipts: Vec<ReceiptId> = self
            .consent
            .list()
            .filter(|e| {
                // In force at the stamp (what the aggregator checks) and at `now` (what
                // the device knows): then the aggregator's check passes.
                e.active_at(time)
                    && e.active_at(now)
                    && e.receipt.receipt().scope.names(self.catalogue.borrow(), metric)
            })
            .map(|e| e.receipt.id())
            .collect();
        let mut any = false;
        for receipt in receipts {
            let Ok(tag) =
                RetentionTag::for_record(self.catalogue.borrow(), &self.consent, metric, &receipt, now)
            else {
                continue;
            };
            let Some(recipient) = tag.audience().iter().next().cloned() else { continue };
            let pseudonym = self.secret.scoped(&recipient, epoch);
            let report = Report {
                id: ReportId::random(&mut self.rng),
                metric: metric.clone(),
                time,
                tag,
                payload: Payload::Record { pseudonym, epoch, value: v },
            };
            any |= self.enqueue(&report);
        }
        if !any {
            let reason = self.no_consent_reason(metric, None, now, time);
            return Err(RecordError::NoConsent { metric: metric.clone(), reason });
        }
        Ok(())
    }

    /// Returns `outcome`'s error in strict mode; otherwise counts it (in [`Counters`] and
    /// per metric and cause) and returns `Ok`.
    fn settle(&mut self, outcome: Result<(), RecordError>) -> Result<(), RecordError> {
        let Err(e) = outcome else { return Ok(()) };
        if self.strict {
            return Err(e);
        }
        let global = match e.cause() {
            Cause::UnknownMetric | Cause::WrongTrack => &mut self.counters.unknown_metric,
            Cause::WrongValue | Cause::LabelOutOfRange | Cause::OutOfRange | Cause::Unencodable => {
                &mut self.counters.invalid_value
            }
            Cause::PurposeNotAllowed | Cause::NoConsent(_) => &mut self.counters.no_consent,
            Cause::BudgetExhausted => &mut self.counters.budget_exhausted,
            Cause::BudgetUnsaved => &mut self.counters.budget_unsaved,
        };
        bump(global);
        let key = (e.metric().clone(), e.cause());
        if let Some(n) = self.errors.get_mut(&key) {
            bump(n);
        } else if self.errors.len() < MAX_ERROR_COUNTERS {
            self.errors.insert(key, 1);
        }
        Ok(())
    }

    /// Why no receipt lets `metric` (for `purpose`, if given) be reported at `now` in the
    /// bucket starting at `bucket`, from the receipts that name it.
    fn no_consent_reason(
        &self,
        metric: &MetricId,
        purpose: Option<&PurposeId>,
        now: Timestamp,
        bucket: Timestamp,
    ) -> NoConsentReason {
        let catalogue = self.catalogue.borrow();
        self.consent
            .list()
            .filter(|e| {
                let r = e.receipt.receipt();
                r.scope.names(catalogue, metric)
                    && purpose.is_none_or(|p| &r.purpose == p)
                    && catalogue.allows(metric, &r.purpose, &r.recipient)
            })
            .map(|e| {
                if e.active_at(now) && !e.active_at(bucket) {
                    NoConsentReason::StartedThisBucket
                } else if now < e.receipt.receipt().valid_from {
                    NoConsentReason::NotYetInForce
                } else {
                    NoConsentReason::Ended
                }
            })
            .max()
            .unwrap_or(NoConsentReason::NotGiven)
    }

    /// Strict mode, for development and tests: [`Self::record`] and
    /// [`Self::record_service`] return their [`RecordError`] instead of counting it.
    /// Off by default; a shipped device leaves it off, so that recording never fails its
    /// host.
    pub const fn set_strict(&mut self, strict: bool) {
        self.strict = strict;
    }

    /// Whether strict mode is on.
    #[must_use]
    pub const fn is_strict(&self) -> bool {
        self.strict
    }

    /// Calls that made no report so far, per metric and [`Cause`] (the metric id as the
    /// call gave it, so a misspelt id shows as itself), in the order of metric then
    /// cause. At most [`MAX_ERROR_COUNTERS`] pairs are kept; [`Counters`] counts them all.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance::consent::{ConsentState, DeviceKey};
    /// # use confiance::ids::*;
    /// # use confiance::pseudonym::DeviceSecret;
    /// # use confiance::recorder::{MemoryStorage, Recorder, RecorderParts};
    /// # use confiance::rng::OsRng;
    /// use confiance::recorder::{Cause, NoConsentReason, Value};
    /// # use confiance::Timestamp;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../examples/catalogue.toml"))?;
    /// # let mut rng = OsRng::new();
    /// # let parts = RecorderParts { catalogue, consent: ConsentState::new(DeviceKey::generate(&mut rng)), pseudonyms: DeviceSecret::generate(&mut rng), controller: RecipientId::new("calora")?, key_configs: vec![], rng };
    /// # let mut recorder = Recorder::new(parts, MemoryStorage::default());
    /// # let now = Timestamp::from_secs(1_800_000_000);
    /// let improvement = PurposeId::new("product-improvement")?;
    /// let typo = MetricId::new("thermostat.mdoe")?;
    /// recorder.record(&typo, &improvement, Value::Category(2), now)?; // counted, not raised
    /// let mode = MetricId::new("thermostat.mode")?;
    /// recorder.record(&mode, &improvement, Value::Category(2), now)?; // no consent given yet
    /// assert_eq!(recorder.errors().collect::<Vec<_>>(), [
    ///     (&typo, Cause::UnknownMetric, 1),
    ///     (&mode, Cause::NoConsent(NoConsentReason::NotGiven), 1),
    /// ]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn errors(&self) -> impl Iterator<Item = (&MetricId, Cause, u32)> {
        self.errors.iter().map(|((m, c), n)| (m, *c, *n))
    }

    /// Queues `report`, encoded; `false` if it cannot be encoded (nothing changes).
    #[must_use]
    fn enqueue(&mut self, report: &Report) -> bool {
        let Some(encoded) = Encoded::new(report) else { return false };
        let size = encoded.len();
        while !self.queue.is_empty()
            && (self.queue.len() >= self.limits.max_queued_reports
                || self.queued_bytes.saturating_add(size) > self.limits.max_queued_bytes)
        {
            if let Some(old) = self.queue.pop_front() {
                self.queued_bytes = self.queued_bytes.saturating_sub(old.len());
            }
            bump(&mut self.counters.dropped_queue_full);
        }
        self.queued_bytes = self.queued_bytes.saturating_add(size);
        self.queue.push_back(encoded);
        bump(&mut self.counters.recorded);
        true
    }

    /// Seals every queued report into envelopes (at most
    /// [`Limits::max_reports_per_envelope`] each, time-bucketed by the day of `now`) to
    /// the active aggregator key — statistics and records never in the same envelope (a
    /// record names its receipt, which would link the statistics beside it to the
    /// subject) — and
    /// returns every envelope not yet acknowledged, oldest first — send them all.
    /// Without a valid key config the reports stay queued (counted as `no_key`). Queued
    /// reports whose hold has already ended at `now` are dropped, not sent (counted as
    /// [`Counters::expired`]): the aggregator could not keep them.
    pub fn flush(&mut self, now: Timestamp) -> Vec<Vec<u8>> {
        // Reports refused for now whose backoff has passed go out again, first.
        let (due, wait): (Vec<Retry>, Vec<Retry>) =
            core::mem::take(&mut self.retries).into_iter().partition(|r| r.not_before <= now);
        self.retries = wait;
        for r in due.into_iter().rev() {
            let Some(encoded) = Encoded::new(&r.report) else {
                // Not encodable (never the case): it keeps waiting rather than be lost.
                self.retries.push(r);
                continue;
            };
            self.queued_bytes = self.queued_bytes.saturating_add(encoded.len());
            self.relogged.insert(r.report.id.0);
            self.queue.push_front(encoded);
        }
        // What may no longer be held is not sent: the aggregator would refuse it.
        self.drop_expired(now);
        if !self.queue.is_empty() {
            match envelope::select_config(&self.keys, now).copied() {
                None => bump(&mut self.counters.no_key),
                Some(config) => self.seal_queue(&config, now),
            }
        }
        self.persist();
        self.outbox.iter().cloned().collect()
    }

    /// The token scope of a queued report: statistics only (records stand on receipts).
    fn token_scope(&self, r: &Report) -> Option<TokenScope> {
        if !self.tokens_required || !matches!(r.payload, Payload::Statistic(_)) {
            return None;
        }
        let secs = self.catalogue.borrow().limits().token_period.fixed_secs().unwrap_or(86_400);
        Some(TokenScope {
            recipients: r.tag.audience().clone(),
            purpose: r.tag.purpose().clone(),
            period: TokenPeriod::at(r.time, secs),
        })
    }

    /// The next envelope's reports and tokens, taken from the queue: reports in order,
    /// one token per scope; a statistic with no token for its scope goes to `waiting`.
    /// An envelope carries one track only — statistics or records — as the first report
    /// taken decides: a record names its receipt (hence its subject), and the statistics
    /// sealed beside it would be linked to that subject by whoever opens the envelope.
    fn next_batch(
        &mut self,
        waiting: &mut VecDeque<Encoded<Report>>,
    ) -> (Vec<Encoded<Report>>, Vec<SpentToken>) {
        let max = self.limits.max_reports_per_envelope.max(1);
        let mut batch = Vec::with_capacity(max.min(self.queue.len()));
        let mut spent: Vec<SpentToken> = Vec::new();
        let mut later = VecDeque::new();
        // A token stands for one report per metric and bucket: a second one waits for
        // the next envelope.
        let mut uses: Vec<(TokenScope, MetricId, Timestamp)> = Vec::new();
        let mut track: Option<bool> = None;
        while batch.len() < max {
            let Some(e) = self.queue.pop_front() else { break };
            let report = e.decode();
            // A report that does not decode (never one made here) goes with either track.
            let is_record = report.as_ref().is_some_and(|r| matches!(r.payload, Payload::Record { .. }));
            if report.is_some() && *track.get_or_insert(is_record) != is_record {
                later.push_back(e);
                continue;
            }
            // Its token scope is needed only when tokens are required.
            let scoped = if self.tokens_required {
                report.and_then(|r| Some((self.token_scope(&r)?, r.metric, r.time)))
            } else {
                None
            };
            if let Some((scope, metric, time)) = scoped {
                let key = (scope.clone(), metric, time);
                if uses.contains(&key) {
                    later.push_back(e);
                    continue;
                }
                uses.push(key);
                if !spent.iter().any(|t| t.scope == scope) {
                    if spent.len() >= envelope::MAX_TOKENS {
                        later.push_back(e);
                        continue;
                    }
                    match self.tokens.get_mut(&scope).and_then(Vec::pop) {
                        Some(token) => spent.push(SpentToken { scope, token }),
                        None => {
                            bump(&mut self.counters.waiting_for_token);
                            waiting.push_back(e);
                            continue;
                        }
                    }
                }
            }
            batch.push(e);
        }
        while let Some(x) = later.pop_back() {
            self.queue.push_front(x);
        }
        (batch, spent)
    }

    fn seal_queue(&mut self, config: &KeyConfig, now: Timestamp) {
        // The header's time bucket is the day of the flush; the reports may be older
        // (a device offline for a while), never newer — even if the clock went back.
        let newest = self.queue.iter().filter_map(|e| Some(e.head()?.time)).max().unwrap_or(now).max(now);
        let fields = HeaderFields {
            catalogue_digest: self.catalogue.borrow().digest(),
            time_bucket: newest.truncate(ENVELOPE_BUCKET_SECS),
        };
        let mut rest: VecDeque<Encoded<Report>> = VecDeque::new();
        while !self.queue.is_empty() {
            let (batch, spent) = self.next_batch(&mut rest);
            if batch.is_empty() {
                continue;
            }
            // The body from the reports' encodings, in a buffer of its size: no report
            // is decoded or copied twice (on a microcontroller, copies doubled the heap).
            let sealed = body(&spent, &batch)
                .ok()
                .and_then(|plain| envelope::seal(config, &fields, &plain, &mut self.rng).ok());
            match sealed {
                Some(frame) => {
                    let id = EnvelopeId::of(&frame);
                    for e in &batch {
                        self.queued_bytes = self.queued_bytes.saturating_sub(e.len());
                        let Some(r) = e.decode() else { continue };
                        if !self.relogged.remove(&r.id.0) {
                            self.log_sent(&r, id);
                        }
                    }
                    self.in_flight.insert(id.0, batch);
                    self.push_outbox(frame);
                    bump(&mut self.counters.envelopes_sealed);
                }
                None => {
                    bump(&mut self.counters.seal_failed);
                    for t in spent {
                        self.tokens.entry(t.scope).or_default().push(t.token);
                    }
                    rest.extend(batch);
                }
            }
        }
        // Waiting and unsealed reports stay queued for the next flush.
        self.queue = rest;
    }

    /// From now on, envelopes carry a report token per scope (recipients, purpose,
    /// token period) of their statistics, and statistics without a token wait in the
    /// queue (counted in [`Counters::waiting_for_token`]) until one arrives.
    pub fn require_tokens(&mut self, required: bool) {
        self.tokens_required = required;
    }

    /// The scopes of queued statistics for which no token is held, with how many
    /// envelopes' worth of those reports are waiting: what to ask the issuer for next
    /// (fetching a period's tokens ahead of time is better: the issuer then learns less
    /// about when the device reports).
    #[must_use]
    pub fn tokens_needed(&self) -> BTreeMap<TokenScope, usize> {
        let mut out: BTreeMap<TokenScope, usize> = BTreeMap::new();
        if !self.tokens_required {
            return out; // nothing to decode
        }
        for r in self.queue.iter().filter_map(Encoded::decode) {
            if let Some(scope) = self.token_scope(&r)
                && self.tokens.get(&scope).is_none_or(Vec::is_empty)
            {
                *out.entry(scope).or_default() = 1;
            }
        }
        out
    }

    /// Tokens held for `scope`.
    #[must_use]
    pub fn tokens_held(&self, scope: &TokenScope) -> usize {
        self.tokens.get(scope).map_or(0, Vec::len)
    }

    /// The report tokens to ask for now, per scope: what the coming flushes will
    /// plausibly spend, less what is held or already asked for. The host calls it as
    /// often as it likes (say after each recording) with its flush cadence, makes a
    /// [`Self::token_request`] for each entry and sends them.
    ///
    /// For each (recipients, purpose) the device reports in (its queued statistics,
    /// tokens held), a token period `p` needs one token per flush
    /// that may still carry its reports: `⌈(end of p − max(now, start of p)) /
    /// flush_every⌉ + 1` (the flush after `p` ends carries its last reports), at most the
    /// catalogue's
    /// `tokens_per_period`. The current period is asked for at once; the next one only
    /// once it starts within one flush interval (its tokens are then fetched before the
    /// first flush that spends them, and the issuer is not told about a period the
    /// device may never reach). A queued statistic of the current or the next period
    /// with no token held or asked for gets at least one (its reports wait, counted in
    /// [`Counters::waiting_for_token`], until it arrives). Empty when tokens are not
    /// required.
    ///
    /// ```
    /// # use confiance::recorder::{MemoryStorage, Recorder, RecorderParts};
    /// # use confiance::{catalogue::Catalogue, consent::{ConsentState, DeviceKey}, pseudonym::DeviceSecret, Timestamp};
    /// # use confiance::hazmat::{SeedableRng as _, SeededRng};
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../examples/catalogue.toml"))?;
    /// # let mut rng = SeededRng::seed_from_u64(1);
    /// # let parts = RecorderParts { catalogue, consent: ConsentState::new(DeviceKey::generate(&mut rng)), pseudonyms: DeviceSecret::generate(&mut rng), controller: "calora".parse()?, key_configs: vec![], rng };
    /// let mut device = Recorder::new(parts, MemoryStorage::default());
    /// device.require_tokens(true);
    /// let now = Timestamp::from_secs(1_800_000_000);
    /// // Nothing recorded yet: no scope to ask tokens for.
    /// assert!(device.tokens_to_fetch(now, 7 * 86_400).is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn tokens_to_fetch(&self, now: Timestamp, flush_every_secs: u64) -> BTreeMap<TokenScope, usize> {
        let mut out = BTreeMap::new();
        if !self.tokens_required {
            return out;
        }
        let (period_secs, quota) = {
            let catalogue = self.catalogue.borrow();
            let limits = catalogue.limits();
            (limits.token_period.fixed_secs().unwrap_or(86_400).max(1), limits.tokens_per_period)
        };
        let flush_every = flush_every_secs.max(1);
        let current = TokenPeriod::at(now, period_secs);
        let next = TokenPeriod(current.0.saturating_add(1));
        let open = |p: TokenPeriod| p == current || p == next;
        // What each open scope has, held or asked for.
        let mut have: BTreeMap<TokenScope, usize> = BTreeMap::new();
        for (scope, tokens) in &self.tokens {
            *have.entry(scope.clone()).or_default() += tokens.len();
        }
        for p in &self.pending_tokens {
            *have.entry(p.scope().clone()).or_default() += p.count();
        }
        // The kinds it reports in: tokens held for an open period (not a request
        // pending, which may have been refused: a scope it no longer reports in is asked
        // for at most once more) and queued statistics.
        let mut kinds: BTreeSet<(BTreeSet<RecipientId>, PurposeId)> = self
            .tokens
            .iter()
            .filter(|(s, t)| !t.is_empty() && open(s.period))
            .map(|(s, _)| (s.recipients.clone(), s.purpose.clone()))
            .collect();
        // Queued statistics: their kind, and one token at least for their open period.
        let mut floor: BTreeMap<TokenScope, usize> = BTreeMap::new();
        for r in self.queue.iter().filter_map(Encoded::decode) {
            if let Some(scope) = self.token_scope(&r) {
                kinds.insert((scope.recipients.clone(), scope.purpose.clone()));
                if open(scope.period) {
                    floor.insert(scope, 1);
                }
            }
        }
        for (recipients, purpose) in kinds {
            for period in [current, next] {
                let start = period.start(period_secs);
                if period == next && start.as_secs().saturating_sub(now.as_secs()) >= flush_every {
                    continue;
                }
                // Reports of the period come from its start (or now) to its end.
                let from = start.max(now).as_secs();
                let end = period.end(period_secs).as_secs();
                let flushes = end.saturating_sub(from).div_ceil(flush_every).saturating_add(1);
                let scope = TokenScope { recipients: recipients.clone(), purpose: purpose.clone(), period };
                let want = usize::try_from(flushes.min(u64::from(quota)))
                    .unwrap_or(usize::MAX)
                    .max(floor.get(&scope).copied().unwrap_or(0));
                let missing = want.saturating_sub(have.get(&scope).copied().unwrap_or(0));
                if missing > 0 {
                    out.insert(scope, missing.min(voprf::MAX_BATCH));
                }
            }
        }
        out
    }

    /// Forgets the pending token requests for `scope` (the issuer refused them, or the
    /// host gave up on them): [`Self::tokens_to_fetch`] asks for that scope again.
    pub fn forget_token_requests(&mut self, scope: &TokenScope) {
        self.pending_tokens.retain(|p| p.scope() != scope);
    }

    /// Builds a request for `count` tokens of `scope`, signed by `device`, blinded against
    /// the scope's public key `key` from the issuer's key directory. The host sends it
    /// (HTTP `POST /v1/tokens`) and gives the answer to [`Self::take_token_response`].
    /// `None` (counted in [`Counters::token_failed`]) for a count of 0 or above the
    /// VOPRF batch limit.
    pub fn token_request(
        &mut self,
        device: &crate::consent::DeviceKey,
        scope: TokenScope,
        key: voprf::PublicKey,
        count: usize,
    ) -> Option<TokenRequest> {
        match PendingTokens::request(device, scope, key, count, &mut self.rng) {
            Ok((pending, request)) => {
                if self.pending_tokens.len() >= MAX_PENDING_TOKEN_REQUESTS {
                    self.pending_tokens.remove(0);
                }
                self.pending_tokens.push(pending);
                Some(request)
            }
            Err(_) => {
                bump(&mut self.counters.token_failed);
                None
            }
        }
    }

    /// Takes the issuer's answer to a request from [`Self::token_request`]: checks the
    /// proof, unblinds and keeps the tokens. Returns how many were added; 0 (counted in
    /// [`Counters::token_failed`]) if it answers no pending request or does not verify.
    pub fn take_token_response(&mut self, response: &TokenResponse) -> usize {
        // Only a request under the response's key and of its size can be the one answered.
        let found = self
            .pending_tokens
            .iter()
            .enumerate()
            .filter(|(_, p)| p.may_answer(response))
            .find_map(|(i, p)| Some((i, p.finalize(response).ok()?)));
        let Some((i, tokens)) = found else {
            bump(&mut self.counters.token_failed);
            return 0;
        };
        let pending = self.pending_tokens.remove(i);
        let n = tokens.len();
        self.tokens.entry(pending.scope().clone()).or_default().extend(tokens);
        self.persist();
        n
    }

    /// Until when `r` may be held: its tag's hold from its bucket's end (a statistic) or
    /// from its collection (a record) — the aggregator's deadline for it.
    fn held_until(&self, r: &Report) -> Timestamp {
        let start = match (&r.payload, self.catalogue.borrow().metric(&r.metric)) {
            (Payload::Statistic(_), Some(m)) => r.time.saturating_add_secs(Metric::bucket_secs(m)),
            _ => r.time,
        };
        r.tag.deadline(start).at
    }

    /// Drops the queued reports whose hold has ended at `now` (counted as
    /// [`Counters::expired`]): they could not be kept by anyone they would go to.
    fn drop_expired(&mut self, now: Timestamp) {
        let queue = core::mem::take(&mut self.queue);
        for e in queue {
            // Not decodable (never the case): kept, as before.
            if let Some(r) = e.decode().filter(|r| self.held_until(r) <= now) {
                self.queued_bytes = self.queued_bytes.saturating_sub(e.len());
                self.relogged.remove(&r.id.0);
                bump(&mut self.counters.expired);
            } else {
                self.queue.push_back(e);
            }
        }
    }

    fn log_sent(&mut self, r: &Report, envelope: EnvelopeId) {
        let held_until = self.held_until(r);
        if self.sent.len() >= self.limits.max_sent_log {
            self.sent.pop_front();
        }
        let entry = SentEntry {
            metric: r.metric.clone(),
            time: r.time,
            purpose: r.tag.purpose().clone(),
            audience: r.tag.audience().iter().cloned().collect(),
            held_until,
            receipt: r.tag.receipt().copied(),
            envelope,
        };
        if let Some(e) = Encoded::new(&entry) {
            self.sent.push_back(e);
        }
    }

    fn push_outbox(&mut self, frame: Vec<u8>) {
        let total = |o: &VecDeque<Vec<u8>>| o.iter().map(Vec::len).sum::<usize>();
        while !self.outbox.is_empty()
            && total(&self.outbox).saturating_add(frame.len()) > self.limits.max_outbox_bytes
        {
            if let Some(old) = self.outbox.pop_front() {
                self.in_flight.remove(&EnvelopeId::of(&old).0);
            }
            bump(&mut self.counters.dropped_outbox_full);
        }
        self.outbox.push_back(frame);
    }

    /// The aggregator accepted every report of `frame` (or rejected it as a replay,
    /// which means it already has it): drop it from the outbox.
    ///
    /// Acknowledging an envelope the outbox does not hold — acknowledged already (an
    /// acknowledgement can arrive twice after a retried upload), or never sealed here —
    /// does nothing and is not an error; [`Recorder::is_pending`] tells the two apart
    /// beforehand. The C and UniFFI faces report it (`CONFIANCE_STATUS_UNKNOWN_ENVELOPE`,
    /// `false`; docs/sdk.md).
    pub fn acknowledge(&mut self, frame: &[u8]) {
        self.acknowledge_refused(frame, &[], Timestamp::EPOCH);
    }

    /// Whether `frame` (the same bytes a [`Recorder::flush`] returned) is in the outbox,
    /// sealed and not yet acknowledged.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance::consent::{ConsentRequest, ConsentState, DeviceKey, Scope};
    /// # use confiance::envelope::{AeadId, KeyConfig, KeyId, SecretKey};
    /// # use confiance::hazmat::{SeedableRng as _, SeededRng};
    /// # use confiance::ids::*;
    /// # use confiance::pseudonym::DeviceSecret;
    /// # use confiance::recorder::{MemoryStorage, Recorder, RecorderParts, Value};
    /// # use confiance::Timestamp;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../examples/catalogue.toml"))?;
    /// # let mut rng = SeededRng::seed_from_u64(1);
    /// # let server = SecretKey::generate(&mut rng);
    /// # let config = KeyConfig::new(KeyId(1), AeadId::ChaCha20Poly1305, server.public_key(), Timestamp::EPOCH, Timestamp::MAX)?;
    /// # let parts = RecorderParts { catalogue, consent: ConsentState::new(DeviceKey::generate(&mut rng)), pseudonyms: DeviceSecret::generate(&mut rng), controller: RecipientId::new("calora")?, key_configs: vec![config], rng };
    /// # let mut recorder = Recorder::new(parts, MemoryStorage::default());
    /// # let now = Timestamp::from_secs(1_800_000_000);
    /// # let (mode, improvement) = (MetricId::new("thermostat.mode")?, PurposeId::new("product-improvement")?);
    /// # recorder.give_consent(ConsentRequest::new(RecipientId::new("calora")?, improvement.clone(), Scope::metrics([mode.clone()]), "P90D".parse()?), now)?;
    /// recorder.record(&mode, &improvement, Value::Category(2), now)?;
    /// let frame = recorder.flush(now).remove(0);
    /// assert!(recorder.is_pending(&frame));
    /// recorder.acknowledge(&frame);
    /// assert!(!recorder.is_pending(&frame));
    /// recorder.acknowledge(&frame); // twice, after a retried upload: nothing to do
    /// assert_eq!(recorder.pending_envelopes(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn is_pending(&self, frame: &[u8]) -> bool {
        self.outbox.iter().any(|f| f.as_slice() == frame)
    }

    /// The aggregator answered `frame` per report (docs/wire-format.md §6): the reports
    /// `refused` lists were not kept, the others were. The frame leaves the outbox; each
    /// report refused for good is dropped and counted ([`Recorder::refusals`]) and never
    /// sent again; each refused for now is sealed again, in a new envelope, at the first
    /// [`Recorder::flush`] after its backoff (1 h, doubling to at most a day). An entry
    /// naming no report of the frame is ignored.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance::consent::{ConsentRequest, ConsentState, DeviceKey, Scope};
    /// # use confiance::envelope::{AeadId, KeyConfig, KeyId, SecretKey};
    /// # use confiance::hazmat::{SeedableRng as _, SeededRng};
    /// # use confiance::ids::*;
    /// # use confiance::pseudonym::DeviceSecret;
    /// # use confiance::recorder::{MemoryStorage, Recorder, RecorderParts, Value};
    /// use confiance::report::{Refusal, Refused};
    /// # use confiance::Timestamp;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../examples/catalogue.toml"))?;
    /// # let mut rng = SeededRng::seed_from_u64(1);
    /// # let server = SecretKey::generate(&mut rng);
    /// # let config = KeyConfig::new(KeyId(1), AeadId::ChaCha20Poly1305, server.public_key(), Timestamp::EPOCH, Timestamp::MAX)?;
    /// # let parts = RecorderParts { catalogue, consent: ConsentState::new(DeviceKey::generate(&mut rng)), pseudonyms: DeviceSecret::generate(&mut rng), controller: RecipientId::new("calora")?, key_configs: vec![config], rng };
    /// # let mut recorder = Recorder::new(parts, MemoryStorage::default());
    /// # let now = Timestamp::from_secs(1_800_000_000);
    /// # let (mode, improvement) = (MetricId::new("thermostat.mode")?, PurposeId::new("product-improvement")?);
    /// # recorder.give_consent(ConsentRequest::new(RecipientId::new("calora")?, improvement.clone(), Scope::metrics([mode.clone()]), "P90D".parse()?), now)?;
    /// recorder.record(&mode, &improvement, Value::Category(2), now)?;
    /// let frame = recorder.flush(now).remove(0);
    /// // The answer said: report 0 refused for good, `tag_not_allowed`.
    /// let refused = [Refused { index: 0, refusal: Refusal::from_code("tag_not_allowed"), retry: false }];
    /// recorder.acknowledge_refused(&frame, &refused, now);
    /// assert_eq!(recorder.pending_envelopes(), 0);
    /// assert_eq!(recorder.refusals().collect::<Vec<_>>(), [(&mode, Refusal::TagNotAllowed, 1)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acknowledge_refused(&mut self, frame: &[u8], refused: &[Refused], now: Timestamp) {
        let id = EnvelopeId::of(frame);
        self.outbox.retain(|f| EnvelopeId::of(f) != id);
        let reports = self.in_flight.remove(&id.0).unwrap_or_default();
        let mut done = BTreeSet::new();
        for r in refused {
            let Some(report) = reports.get(r.index as usize).and_then(Encoded::decode) else { continue };
            if !done.insert(r.index) {
                continue;
            }
            if r.retry {
                // Its attempts so far, if it was retried before (then it is not in
                // `retries` any more: it was sealed again into this frame).
                let attempts = self.retry_attempts(&report.id).saturating_add(1);
                let delay = RETRY_BASE_SECS.checked_shl(u32::from(attempts - 1)).unwrap_or(RETRY_MAX_SECS);
                self.retries.push(Retry {
                    report,
                    not_before: now.saturating_add_secs(delay.min(RETRY_MAX_SECS)),
                    attempts,
                });
                bump(&mut self.counters.retried);
            } else {
                let n = self.refusals.entry((report.metric, r.refusal)).or_insert(0);
                *n = n.saturating_add(1);
                bump(&mut self.counters.refused);
            }
        }
        for head in reports.iter().filter_map(Encoded::head) {
            self.attempts.remove(&head.id.0);
        }
        for r in &self.retries {
            self.attempts.insert(r.report.id.0, r.attempts);
        }
        self.persist();
    }

    fn retry_attempts(&self, id: &ReportId) -> u8 {
        self.attempts.get(&id.0).copied().unwrap_or(0)
    }

    /// Reports the aggregator refused for good so far, per metric and code.
    pub fn refusals(&self) -> impl Iterator<Item = (&MetricId, Refusal, u32)> {
        self.refusals.iter().map(|((m, r), n)| (m, *r, *n))
    }

    /// Reports refused for now, waiting for their backoff before they are sent again.
    #[must_use]
    pub fn retrying(&self) -> usize {
        self.retries.len()
    }

    /// Replaces the cached aggregator key configs (fetched by the host).
    pub fn set_key_configs(&mut self, configs: Vec<KeyConfig>) {
        self.keys = configs;
    }

    /// Gives consent on the terms of `request`, at `now`: checks them against the
    /// catalogue, signs a receipt and keeps it; returns the receipt's bytes for the host
    /// to send to the aggregator.
    ///
    /// Only purposes whose legal basis is consent need one for anonymous statistics; a
    /// purpose resting on a contract or a legal obligation is recorded without
    /// ([`Self::record`]).
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance::consent::{ConsentState, DeviceKey};
    /// # use confiance::ids::*;
    /// # use confiance::pseudonym::DeviceSecret;
    /// # use confiance::recorder::{MemoryStorage, Recorder, RecorderParts};
    /// # use confiance::rng::OsRng;
    /// use confiance::consent::{ConsentError, ConsentRequest, Scope};
    /// # use confiance::Timestamp;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../examples/catalogue.toml"))?;
    /// # let mut rng = OsRng::new();
    /// # let parts = RecorderParts { catalogue, consent: ConsentState::new(DeviceKey::generate(&mut rng)), pseudonyms: DeviceSecret::generate(&mut rng), controller: RecipientId::new("calora")?, key_configs: vec![], rng };
    /// # let mut recorder = Recorder::new(parts, MemoryStorage::default());
    /// let now = Timestamp::from_secs(1_800_000_000);
    /// let mode = MetricId::new("thermostat.mode")?;
    /// let request = |hold: &str| -> Result<ConsentRequest, Box<dyn std::error::Error>> {
    ///     Ok(ConsentRequest::new(
    ///         RecipientId::new("calora")?,
    ///         PurposeId::new("product-improvement")?,
    ///         Scope::metrics([mode.clone()]),
    ///         hold.parse()?,
    ///     ))
    /// };
    /// // The catalogue holds `thermostat.mode` at most a year: five years is refused.
    /// let refused = recorder.give_consent(request("P5Y")?, now);
    /// assert!(matches!(refused, Err(ConsentError::HoldTooLong { .. })));
    /// let receipt = recorder.give_consent(request("P90D")?, now)?; // send it to the brand
    /// assert!(!receipt.is_empty());
    /// assert_eq!(recorder.consent().list().count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ConsentError`] when the catalogue does not allow the terms (among them
    /// [`ConsentError::HoldTooLong`]); nothing changes.
    pub fn give_consent(&mut self, request: ConsentRequest, now: Timestamp) -> Result<Vec<u8>, ConsentError> {
        let r = self.consent.give(self.catalogue.borrow(), request.into_grant(now), now, &mut self.rng)?;
        self.persist();
        Ok(r.to_bytes())
    }

    /// Withdraws a receipt from `at`; returns the signed withdrawal bytes to send.
    ///
    /// # Errors
    /// [`ConsentError`]; nothing changes.
    pub fn withdraw_consent(&mut self, receipt: &ReceiptId, at: Timestamp) -> Result<Vec<u8>, ConsentError> {
        let w = self.consent.withdraw(receipt, at)?;
        self.persist();
        Ok(w.to_bytes())
    }

    /// Narrows a receipt to `scope` from `at`; returns the withdrawal and the new
    /// receipt, both signed, to send in that order.
    ///
    /// # Errors
    /// [`ConsentError`]; nothing changes.
    pub fn narrow_consent(
        &mut self,
        receipt: &ReceiptId,
        scope: Scope,
        at: Timestamp,
    ) -> Result<(Vec<u8>, Vec<u8>), ConsentError> {
        let (w, r) = self.consent.narrow(self.catalogue.borrow(), receipt, scope, at, &mut self.rng)?;
        self.persist();
        Ok((w.to_bytes(), r.to_bytes()))
    }

    /// A signed request to transcrypt this device's polymorphic pseudonym for `recipient`
    /// (in `epoch`, for an epoch domain) under `receipt`, for the host to send to the
    /// transcryptors ([`crate::pseudonym::TranscryptionRequest`]).
    pub fn transcryption_request(
        &mut self,
        system_key: &crate::pseudonym::SystemPublicKey,
        receipt: crate::ids::ReceiptId,
        recipient: RecipientId,
        epoch: Option<Epoch>,
    ) -> crate::pseudonym::TranscryptionRequest {
        self.consent.transcryption_request(&self.secret, system_key, receipt, recipient, epoch, &mut self.rng)
    }

    /// The consent state.
    #[must_use]
    pub const fn consent(&self) -> &ConsentState {
        &self.consent
    }

    /// The controller the device belongs to.
    #[must_use]
    pub const fn controller(&self) -> &RecipientId {
        &self.controller
    }

    /// Takes in a receipt of this subject given elsewhere (the owner's phone), so the
    /// device tags reports under it ([`ConsentState::accept`]).
    ///
    /// # Errors
    /// [`ConsentError::SubjectKeyMismatch`] for another subject's receipt; nothing changes.
    pub fn accept_receipt(&mut self, receipt: SignedReceipt) -> Result<(), ConsentError> {
        self.consent.accept(receipt)?;
        self.persist();
        Ok(())
    }

    /// Takes in a withdrawal signed elsewhere (the owner's phone) of a receipt this
    /// device knows ([`ConsentState::note_withdrawal`]).
    ///
    /// # Errors
    /// [`ConsentError`]; nothing changes.
    pub fn note_withdrawal(
        &mut self,
        withdrawal: &crate::consent::SignedWithdrawal,
    ) -> Result<(), ConsentError> {
        self.consent.note_withdrawal(withdrawal)?;
        self.persist();
        Ok(())
    }

    /// The catalogue.
    #[must_use]
    pub fn catalogue(&self) -> &Catalogue {
        self.catalogue.borrow()
    }

    /// What went wrong so far.
    #[must_use]
    pub const fn counters(&self) -> Counters {
        self.counters
    }

    /// Reports waiting to be sealed.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Sealed envelopes not yet acknowledged.
    #[must_use]
    pub fn pending_envelopes(&self) -> usize {
        self.outbox.len()
    }

    /// What the device sent, under which tag, to whom, held until when — newest last.
    /// The log is kept encoded (a third of its decoded size); each entry is decoded as
    /// the iterator reaches it.
    pub fn sent_log(&self) -> impl Iterator<Item = SentEntry> + '_ {
        self.sent.iter().filter_map(Encoded::decode)
    }

    /// The sent log as bytes for the device's owner ([`SentLogExport`], postcard,
    /// docs/wire-format.md §12), with the subject and the catalogue it was sent under;
    /// `now` is written as the export's time. The host saves them to a file;
    /// `confiance report --sent-log FILE` renders them as the subject report's view. A
    /// pure function: no I/O, no clock.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance::consent::{ConsentState, DeviceKey};
    /// # use confiance::ids::RecipientId;
    /// # use confiance::pseudonym::DeviceSecret;
    /// # use confiance::recorder::{MemoryStorage, Recorder, RecorderParts};
    /// # use confiance::rng::OsRng;
    /// use confiance::recorder::SentLogExport;
    /// use confiance::Timestamp;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../examples/catalogue.toml"))?;
    /// # let mut rng = OsRng::new();
    /// # let recorder = Recorder::new(RecorderParts {
    /// #     catalogue,
    /// #     consent: ConsentState::new(DeviceKey::generate(&mut rng)),
    /// #     pseudonyms: DeviceSecret::generate(&mut rng),
    /// #     controller: RecipientId::new("calora")?,
    /// #     key_configs: vec![],
    /// #     rng,
    /// # }, MemoryStorage::default());
    /// let now = Timestamp::from_secs(1_800_000_000);
    /// let log = SentLogExport::from_bytes(&recorder.export_sent_log(now))?;
    /// assert_eq!((log.subject, log.exported_at), (recorder.subject(), now));
    /// assert_eq!(log.entries.len(), recorder.sent_log().count());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn export_sent_log(&self, now: Timestamp) -> Vec<u8> {
        let catalogue = self.catalogue();
        SentLogExport {
            version: SENT_LOG_VERSION,
            subject: self.subject(),
            catalogue_name: catalogue.name().into(),
            catalogue_version: catalogue.version(),
            catalogue_digest: catalogue.digest(),
            exported_at: now,
            entries: self.sent_log().collect(),
        }
        .to_bytes()
    }

    /// The device's pseudonyms for `recipients` over `[from, to]`, for a subject-access
    /// request (at most 65 536 entries).
    #[must_use]
    pub fn pseudonyms(
        &self,
        recipients: &[RecipientId],
        from: Timestamp,
        to: Timestamp,
    ) -> Vec<ScopedPseudonymEntry> {
        let epoch_len = self.catalogue.borrow().limits().pseudonym_epoch.fixed_secs().unwrap_or(30 * 86_400);
        self.secret.list_pseudonyms_between(recipients, from, to, epoch_len).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::DeviceKey;
    use crate::envelope::{AeadId, KeyId, SecretKey};
    use crate::hazmat::{SeedableRng as _, SeededRng};

    /// A recorder of the example catalogue on `storage`, its keys from seed 5.
    fn recorder(storage: &mut MemoryStorage) -> Recorder<SeededRng, &mut MemoryStorage> {
        let catalogue = Catalogue::from_toml_str(include_str!("../examples/catalogue.toml")).unwrap();
        let mut rng = SeededRng::seed_from_u64(5);
        let server = SecretKey::generate(&mut rng);
        let config = KeyConfig::new(
            KeyId(1),
            AeadId::ChaCha20Poly1305,
            server.public_key(),
            Timestamp::EPOCH,
            Timestamp::MAX,
        )
        .unwrap();
        Recorder::new(
            RecorderParts {
                catalogue,
                consent: ConsentState::new(DeviceKey::generate(&mut rng)),
                pseudonyms: DeviceSecret::generate(&mut rng),
                controller: RecipientId::new("calora").unwrap(),
                key_configs: alloc::vec![config],
                rng,
            },
            storage,
        )
    }

    /// Consent to calora for `thermostat.mode`, purpose `product-improvement`, hold P90D:
    /// the metric and purpose the tests then record under.
    fn consent_to_mode(
        r: &mut Recorder<SeededRng, &mut MemoryStorage>,
        now: Timestamp,
    ) -> (MetricId, PurposeId) {
        let (mode, improvement) =
            (MetricId::new("thermostat.mode").unwrap(), PurposeId::new("product-improvement").unwrap());
        let request = ConsentRequest::new(
            RecipientId::new("calora").unwrap(),
            improvement.clone(),
            Scope::metrics([mode.clone()]),
            "P90D".parse().unwrap(),
        );
        r.give_consent(request, now).unwrap();
        (mode, improvement)
    }

    /// A recorder with something in every saved field: one envelope in flight, one
    /// report queued, one error counted, and (set by hand, as no server answers here) a
    /// retry, a refusal and a report token held, tokens required.
    fn every_field_set(storage: &mut MemoryStorage) {
        let mut r = recorder(storage);
        let now = Timestamp::from_secs(1_800_000_000);
        let (mode, improvement) = consent_to_mode(&mut r, now);
        r.record(&mode, &improvement, Value::Category(1), now).unwrap();
        let _ = r.flush(now); // one envelope in flight
        r.record(&mode, &improvement, Value::Category(2), now).unwrap(); // one report queued
        r.record(&mode, &PurposeId::new("research").unwrap(), Value::Category(2), now).unwrap(); // one error
        let report = r.queue[0].decode().unwrap();
        let scope = TokenScope {
            recipients: report.tag.audience().clone(),
            purpose: improvement,
            period: TokenPeriod::at(now, 86_400),
        };
        let token = Token {
            nonce: [1; 32],
            scope_digest: scope.digest(),
            key_id: [2; 32],
            redemption: crate::token::Redemption::Authenticator([3; 64]),
        };
        r.tokens.insert(scope, alloc::vec![token]);
        r.tokens_required = true;
        r.retries.push(Retry { report, not_before: now, attempts: 2 });
        r.refusals.insert((mode, Refusal::TimeOutsideWindow), 3);
        r.persist();
    }

    /// The fetch plan asks for one token per flush that may still carry a period's
    /// reports (the flush after its end included), capped by the quota; the next period
    /// only within one flush interval of its start; nothing again while a request is
    /// pending; again once it is forgotten. Before, a host asked three tokens per scope
    /// and period, the next period's at the first contact.
    #[test]
    fn the_fetch_plan_asks_for_what_the_coming_flushes_spend() {
        let mut storage = MemoryStorage::default();
        let mut r = recorder(&mut storage);
        r.require_tokens(true);
        // 8 h into a one-day token period (the example catalogue's; quota 24).
        let now = Timestamp::from_secs(1_800_000_000);
        assert_eq!(now.as_secs() % 86_400, 8 * 3_600);
        let (mode, improvement) = consent_to_mode(&mut r, now);
        assert!(r.tokens_to_fetch(now, 6 * 3_600).is_empty(), "nothing queued, nothing held");
        r.record(&mode, &improvement, Value::Category(1), now).unwrap();
        let today = TokenPeriod::at(now, 86_400);
        let scope = |period| TokenScope {
            recipients: [RecipientId::new("calora").unwrap()].into_iter().collect(),
            purpose: improvement.clone(),
            period,
        };
        // 16 h left at a 6-hour cadence: flushes at +6, +12 h and the one after the
        // period's end (which carries its last reports), plus the rounding: 4. Tomorrow
        // starts in 16 h, more than a flush interval away: not yet.
        assert_eq!(r.tokens_to_fetch(now, 6 * 3_600), BTreeMap::from([(scope(today), 4)]));
        // A flush every minute would spend more than the quota: capped at 24.
        assert_eq!(r.tokens_to_fetch(now, 60), BTreeMap::from([(scope(today), 24)]));
        let device = DeviceKey::generate(&mut SeededRng::seed_from_u64(9));
        let (_, key) = voprf::derive_key_pair(&[7; 32], b"test").unwrap();
        assert!(r.token_request(&device, scope(today), key, 4).is_some());
        assert!(r.tokens_to_fetch(now, 6 * 3_600).is_empty(), "asked for already");
        // 4 h before the end: tomorrow starts within a flush interval; its reports can
        // go in the flushes of its 24 h and the one after: 24/6 + 1 = 5.
        let later = now.saturating_add_secs(12 * 3_600);
        let tomorrow = TokenPeriod(today.0 + 1);
        assert_eq!(r.tokens_to_fetch(later, 6 * 3_600), BTreeMap::from([(scope(tomorrow), 5)]));
        // A refused request forgotten: asked again.
        r.forget_token_requests(&scope(today));
        assert_eq!(r.tokens_to_fetch(now, 6 * 3_600), BTreeMap::from([(scope(today), 4)]));
        // The reports wait for their token, counted, and the flush does not fail.
        assert!(r.flush(now).is_empty());
        assert_eq!(r.counters().waiting_for_token, 1);
        // Tokens off: nothing to fetch.
        r.require_tokens(false);
        assert!(r.tokens_to_fetch(now, 6 * 3_600).is_empty());
    }

    /// A report still queued when its hold ends is dropped at the next flush, counted as
    /// expired, and never sealed; a report recorded at that flush's time goes out. Before,
    /// the device sent it and the aggregator kept it past its deadline (or, since it
    /// refuses such reports, the device learnt of it only from the refusal).
    #[test]
    fn a_report_whose_hold_ended_in_the_queue_is_dropped_not_sent() {
        let mut storage = MemoryStorage::default();
        let mut r = recorder(&mut storage);
        let now = Timestamp::from_secs(1_800_000_000);
        let (mode, improvement) = consent_to_mode(&mut r, now);
        r.record(&mode, &improvement, Value::Category(1), now).unwrap();
        let held_until = r.held_until(&r.queue[0].decode().unwrap());
        assert!(held_until > now);
        // One second before its deadline it is still sent (checked on a copy of the queue).
        let late = held_until.saturating_sub_secs(1);
        let queued = r.queue.clone();
        assert_eq!(r.flush(late).len(), 1);
        assert_eq!(r.counters().expired, 0);
        // Put back in the queue as if never sent, then flushed at its deadline: dropped.
        r.outbox.clear();
        r.in_flight.clear();
        r.queued_bytes = queued.iter().map(Encoded::len).sum();
        r.queue = queued;
        assert!(r.flush(held_until).is_empty(), "an expired report was sealed");
        assert_eq!((r.counters().expired, r.queue.len(), r.queued_bytes), (1, 0, 0));
        // A report recorded then goes out as usual.
        r.record(&mode, &improvement, Value::Category(2), held_until).unwrap();
        assert_eq!(r.flush(held_until).len(), 1);
        assert_eq!(r.counters().expired, 1);
    }

    /// `expired` is not in the saved counters: their bytes are those of earlier builds,
    /// so a state saved before it existed still loads (postcard has no field names: one
    /// more field would shift everything after it).
    #[test]
    fn the_saved_counters_keep_their_layout() {
        let old = Counters { recorded: 3, refused: 2, ..Counters::default() };
        let new = Counters { expired: 5, ..old };
        let bytes = postcard::to_allocvec(&new).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&old).unwrap());
        assert_eq!(postcard::from_bytes::<Counters>(&bytes).unwrap(), old);
    }

    /// The state written field by field from the encoded reports decodes as [`Persisted`]
    /// and encodes back to the same bytes.
    #[test]
    fn the_written_state_encodes_as_the_owned_one() {
        let mut storage = MemoryStorage::default();
        every_field_set(&mut storage);
        let bytes = storage.load().unwrap().unwrap();
        let (owned, rest) = postcard::take_from_bytes::<Persisted>(&bytes).unwrap();
        // Every field named: a field added to `Persisted` fails to compile here until
        // this test (and `SavedState::write`) know it.
        let Persisted {
            version,
            ref queue,
            ref outbox,
            ref budgets,
            ref sent,
            ref receipts,
            counters,
            ref in_flight,
            ref retries,
            ref refusals,
            ref tokens,
            tokens_required,
        } = owned;
        assert_eq!(version, PERSIST_VERSION);
        assert_eq!(
            (queue.0.len(), outbox.len(), budgets.len(), sent.0.len(), receipts.len(), in_flight.len()),
            (1, 1, 1, 1, 1, 1)
        );
        assert_eq!((retries.len(), refusals.len(), tokens.len(), tokens_required), (1, 1, 1, true));
        assert_ne!(counters, Counters::default());
        let reencoded = postcard::to_allocvec(&owned).unwrap();
        assert_eq!(reencoded, bytes[..bytes.len() - rest.len()]);
        let errors: Vec<(MetricId, Cause, u32)> = postcard::from_bytes(rest).unwrap();
        assert_eq!(errors, [(MetricId::new("thermostat.mode").unwrap(), Cause::PurposeNotAllowed, 1)]);
    }

    /// The saved state is still the one saved when reports were kept decoded (version 3):
    /// it decodes as that layout — every report a [`Report`] — and encodes back to the
    /// same bytes, so states saved before and after load alike.
    #[test]
    fn the_saved_state_keeps_the_layout_of_decoded_reports() {
        /// `Persisted` as it was, its reports decoded.
        #[derive(Serialize, Deserialize)]
        struct Decoded {
            version: u8,
            queue: Vec<Report>,
            outbox: Vec<Vec<u8>>,
            budgets: Vec<(MetricId, u64, crate::Epsilon)>,
            sent: Vec<SentEntry>,
            receipts: Vec<(Vec<u8>, Option<Timestamp>)>,
            counters: Counters,
            in_flight: Vec<([u8; 32], Vec<Report>)>,
            retries: Vec<Retry>,
            refusals: Vec<(MetricId, Refusal, u32)>,
            tokens: Vec<SpentToken>,
            tokens_required: bool,
        }
        let mut storage = MemoryStorage::default();
        every_field_set(&mut storage);
        let bytes = storage.load().unwrap().unwrap();
        let (decoded, rest) = postcard::take_from_bytes::<Decoded>(&bytes).unwrap();
        assert_eq!((decoded.queue.len(), decoded.in_flight[0].1.len()), (1, 1));
        let mut again = postcard::to_allocvec(&decoded).unwrap();
        again.extend_from_slice(rest);
        assert_eq!(again, bytes);
    }

    /// An envelope body made from the reports' encodings is the one
    /// [`envelope::encode_body`] makes from the reports, with and without tokens.
    #[test]
    fn a_body_from_encodings_is_the_body_of_the_reports() {
        let mut storage = MemoryStorage::default();
        every_field_set(&mut storage);
        let mut r = recorder(&mut storage);
        let reports: Vec<Report> =
            r.queue.iter().chain(r.in_flight.values().flatten()).map(|e| e.decode().unwrap()).collect();
        let encoded: Vec<Encoded<Report>> = reports.iter().map(|x| Encoded::new(x).unwrap()).collect();
        assert_eq!(reports.len(), 2);
        let (scope, tokens) = r.tokens.pop_first().unwrap();
        let spent = [SpentToken { scope, token: tokens[0] }];
        for t in [&spent[..0], &spent[..]] {
            assert_eq!(body(t, &encoded).unwrap(), envelope::encode_body(t, &reports).unwrap());
        }
    }

    /// A state saved, loaded by a new recorder and saved again is the same bytes: every
    /// field (tokens, retries, refusals, error counters included) survives a restart.
    #[test]
    fn a_saved_state_round_trips_every_field() {
        let mut storage = MemoryStorage::default();
        every_field_set(&mut storage);
        let saved = storage.load().unwrap().unwrap();
        let mut again = MemoryStorage::default();
        again.save(&saved).unwrap();
        let mut r = recorder(&mut again);
        assert_eq!(r.tokens.values().map(Vec::len).sum::<usize>(), 1);
        assert!(r.tokens_required);
        r.persist();
        drop(r);
        assert_eq!(again.load().unwrap().unwrap(), saved);
    }
}

//! The [`Aggregator`]: ingest, release, purge and the ledger behind one object
//! (docs/design.md#aggregator, docs/design.md#interfaces).
//!
//! ```
//! use confiance::catalogue::Catalogue;
//! use confiance::envelope::AeadId;
//! use confiance::Timestamp;
//! use confiance_aggregator::keys::KeyStore;
//! use confiance_aggregator::service::{Aggregator, AggregatorConfig};
//!
//! let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
//! let mut keys = KeyStore::new(7 * 86_400);
//! let config = keys.generate(AeadId::ChaCha20Poly1305, Timestamp::EPOCH, Timestamp::MAX, &mut confiance::rng::OsRng::new())?;
//! let agg = Aggregator::in_memory(catalogue, keys, AggregatorConfig::default())?;
//! assert_eq!(agg.partitions().count(), 0);
//! // Devices seal to `config`; the host calls `agg.ingest(&frame, now)` for each envelope.
//! # let _ = config;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{SignedReceipt, SignedWithdrawal};
use confiance::envelope::{BatchLimits, EnvelopeId};
use confiance::ids::{MetricId, RecipientId};
use confiance::ldp::{Mechanism, Selection};
use confiance::report::{Payload, RecordValue};

use crate::audit::AuditEvent;
use crate::decision::Decision;
use crate::estimate::{Accumulator, Combined, Estimate};
use crate::ingest::prehashed::{Keyed, KeyedSet};
use crate::ingest::prepare::{Kind, Prepared, Preparer, TagCache};
use crate::ingest::{Ack, IngestError, Probe, ReplayFilter, ReportError};
use crate::issuer::{TokenRefusal, TokenVerifier};
use crate::keys::KeyStore;
use crate::ledger::{Disclosure, DisclosureKind, Ledger, LedgerError, RecordNote};
use crate::store::{
    CommitBatch, NewRecord, PartitionKey, PurgeReport, SeenIds, SqliteStore, Store, StoreError,
    StoredPartition,
};

mod reconcile;
mod tokens;

#[doc(hidden)]
pub use reconcile::CRASH_POINT_ENV;
pub use reconcile::ReconcileReport;

/// A consent message from a device, for [`Aggregator::receive_consent_batch`].
#[derive(Clone, Copy, Debug)]
pub enum ConsentMessage<'a> {
    /// A signed receipt's bytes.
    Receipt(&'a [u8]),
    /// A signed withdrawal's bytes.
    Withdrawal(&'a [u8]),
}

/// Tunables of an [`Aggregator`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AggregatorConfig {
    /// Largest envelope accepted, checked before anything else.
    pub max_envelope_bytes: usize,
    /// How old a report's bucket may be (a device offline for a while sends late).
    pub max_report_age_secs: u64,
    /// How far in the future a report's time may be (clock skew).
    pub clock_skew_secs: u64,
    /// Bounds on a decoded batch.
    pub batch_limits: BatchLimits,
    /// Size of the in-memory filter of remembered report ids (a Bloom filter, rounded
    /// down to a power of two). Memory for replay protection is this, whatever the
    /// number of ids; the exact set lives in the store. Its false-positive rate — the
    /// share of fresh reports that cost one indexed lookup — is ~0.2% at 13.4 bits per
    /// remembered id (10^7 ids in 16 MiB), ~0.8% at 10 bits, ~10^-5 at 35 bits.
    pub replay_filter_bytes: usize,
    /// On a lazily loaded ledger ([`Ledger::open_postgres_lazy`], what `confiance serve`
    /// opens on PostgreSQL), the most subjects kept loaded between two decisions: past
    /// it, the next decision starts by forgetting them all ([`Ledger::bound_subjects`]).
    /// A question across subjects (who sees a metric, overdue holdings, unconsented
    /// disclosures, the catalogue diff, the report) reads its subjects a page of at most
    /// this many (and at most [`DEFAULT_SCAN_CHUNK`](crate::ledger::DEFAULT_SCAN_CHUNK))
    /// at a time and keeps none ([`Ledger::scan_who_sees`]). Memory is then about this
    /// many subjects' facts (~1.2 KB for a subject of ten grants) plus one page, not the
    /// ledger's. Ignored by a ledger holding every fact.
    pub max_loaded_subjects: usize,
}

impl Default for AggregatorConfig {
    /// 1 MiB envelopes, reports up to 14 days old, 1 hour of skew, default batch limits,
    /// a 16 MiB replay filter, at most 100 000 subjects kept loaded.
    fn default() -> Self {
        Self {
            max_envelope_bytes: 1 << 20,
            max_report_age_secs: 14 * 86_400,
            clock_skew_secs: 3_600,
            batch_limits: BatchLimits::default(),
            replay_filter_bytes: 16 << 20,
            max_loaded_subjects: 100_000,
        }
    }
}

/// Why the aggregator could not be opened or an operation other than ingest failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServiceError {
    /// The store failed.
    Store(StoreError),
    /// The ledger refused or failed.
    Ledger(LedgerError),
    /// A stored partition does not match the catalogue (unknown metric, corrupt state).
    CorruptPartition,
}

impl core::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Store(e) => write!(f, "store: {e}"),
            Self::Ledger(e) => write!(f, "ledger: {e}"),
            Self::CorruptPartition => f.write_str("a stored partition does not match the catalogue"),
        }
    }
}

impl std::error::Error for ServiceError {}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<LedgerError> for ServiceError {
    fn from(e: LedgerError) -> Self {
        Self::Ledger(e)
    }
}

/// Why a release was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The catalogue has no such metric.
    UnknownMetric(MetricId),
    /// The catalogue has no such recipient.
    UnknownRecipient(RecipientId),
    /// The catalogue never lets this recipient have this metric.
    NotAllowed,
    /// The metric is on the other track (estimates are for anonymous metrics, records
    /// for pseudonymous ones).
    WrongTrack,
    /// No partition in the window is open to this recipient.
    NothingToRelease,
    /// The partitions hold fewer reports than the catalogue's minimum release size
    /// (`limits.min_release_reports`, docs/catalogue.md); nothing was released or logged.
    TooFewReports {
        /// Reports the release would have been made from.
        reports: u64,
        /// The catalogue's minimum.
        minimum: u32,
    },
    /// The store failed.
    Store(String),
}

impl core::fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::UnknownMetric(m) => write!(f, "unknown metric `{m}`"),
            Self::UnknownRecipient(r) => write!(f, "unknown recipient `{r}`"),
            Self::NotAllowed => f.write_str("the catalogue does not let this recipient have this metric"),
            Self::WrongTrack => f.write_str("the metric is on the other track"),
            Self::NothingToRelease => f.write_str("no partition in the window is open to this recipient"),
            Self::TooFewReports { reports, minimum } => write!(
                f,
                "{reports} reports, fewer than the catalogue's minimum release size of {minimum} (limits.min_release_reports)"
            ),
            Self::Store(e) => write!(f, "store: {e}"),
        }
    }
}

impl std::error::Error for ReleaseError {}

/// Why [`Aggregator::transcrypt`] did not transcrypt.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TranscryptRefusal {
    /// A transcryptor refused the request (consent, signature, proof, device, receipt,
    /// domain, replay: the error says which); the refusal is in the audit log.
    Failed(crate::transcrypt::TranscryptError),
    /// The ledger or the audit log could not record it.
    Store(String),
}

impl core::fmt::Display for TranscryptRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Failed(e) => write!(f, "transcryption refused: {e}"),
            Self::Store(e) => write!(f, "could not record the transcryption: {e}"),
        }
    }
}

impl std::error::Error for TranscryptRefusal {}

/// An estimate released to a recipient.
#[derive(Clone, Debug, PartialEq)]
pub struct Release {
    /// The metric.
    pub metric: MetricId,
    /// Partitions counted (merged; across OLH pool keys, combined: [`Combined`]).
    pub partitions: u32,
    /// The estimate (frequencies per label, or the mean) with intervals.
    pub estimate: Estimate,
    /// The labels of a categorical metric (`["false", "true"]` for booleans).
    pub labels: Vec<String>,
}

/// A pseudonymous record released to its recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleasedRecord {
    /// The report id.
    pub id: [u8; 16],
    /// The recipient's pseudonym for the device (its scope and epoch).
    pub pseudonym: confiance::pseudonym::ScopedPseudonym,
    /// When it was collected.
    pub collected_at: Timestamp,
    /// The value.
    pub value: RecordValue,
    /// The ledger's decision that allowed it.
    pub decision: Decision,
}

#[derive(Clone, Debug)]
struct Partition {
    acc: Accumulator,
    reports: u64,
}

#[derive(Default)]
struct Staged {
    partitions: BTreeMap<PartitionKey, Partition>,
    records: Vec<(NewRecord, RecordNote)>,
    seen: Vec<SeenIds>,
    /// Report and token ids staged, hashed by the replay filter ([`Keyed`]).
    ids: KeyedSet<16>,
    /// Keys the staged envelopes will be remembered under, hashed by the replay filter
    /// (their [`envelope_key`]'s hash).
    envelopes: KeyedSet<32>,
    audit: Vec<AuditEvent>,
    acks: Vec<Ack>,
    /// Sum of the acks' report counts, kept so a host may poll it after every stage.
    reports: u64,
}

impl Staged {
    /// Everything staged, for a commit. What is left is empty but keeps the memory of
    /// its id sets, and [`Self::recycle`] gives back that of the batch's lists: each
    /// batch is staged into the tables and lists of the one before instead of growing
    /// new ones (tables rehashed at every doubling, fresh pages faulted in).
    fn take(&mut self) -> Self {
        let mut ids = core::mem::take(&mut self.ids);
        let mut envelopes = core::mem::take(&mut self.envelopes);
        ids.clear();
        envelopes.clear();
        core::mem::replace(self, Self { ids, envelopes, ..Self::default() })
    }

    /// Keeps the memory of a committed (or failed) batch's lists for the next batch.
    fn recycle(&mut self, batch: CommitBatch) {
        let CommitBatch { mut seen, mut audit, .. } = batch;
        seen.clear();
        audit.clear();
        self.seen = seen;
        self.audit = audit;
    }
}

/// The server side of confiance. See the [module documentation](self).
pub struct Aggregator {
    catalogue: Catalogue,
    keys: KeyStore,
    store: Box<dyn Store + Send>,
    ledger: Ledger,
    config: AggregatorConfig,
    mechanisms: BTreeMap<MetricId, Selection>,
    partitions: BTreeMap<PartitionKey, Partition>,
    /// Filter over the report ids the store remembers: "no" is certain, "maybe" is
    /// checked in the store (memory fixed by the config, not by the number of ids).
    seen: ReplayFilter,
    staged: Staged,
    /// (metric, tag) pairs that passed [`RetentionTag::check`](confiance::retention::RetentionTag::check): devices send the same few
    /// tags over and over, and a check can cost tens of µs (calendar periods are compared
    /// day by day), which would dominate ingest. Bounded by [`TAG_CACHE_MAX`].
    checked_tags: TagCache,
    /// When set, anonymous statistics need report tokens ([`Self::set_token_verifier`]).
    tokens: Option<TokenVerifier>,
    /// When set, the aggregator issues report tokens ([`Self::enable_tokens`]).
    issuer: Option<std::sync::Arc<crate::issuer::Issuer>>,
    /// The end of the earliest token period whose issuance is not logged yet.
    issuance_due: Option<Timestamp>,
}

/// Most (metric, tag) pairs remembered as checked; the cache is emptied when full.
const TAG_CACHE_MAX: usize = 4_096;

/// Envelopes each thread prepares per window of [`Aggregator::stage_many`]: enough to
/// amortise starting the threads (~10 ms of opening per window), few enough that the
/// opened envelopes held at once stay small (256 × threads × at most one envelope).
const STAGE_WINDOW_PER_THREAD: usize = 256;

/// The mechanism of a partition's accumulator: the metric's selection keyed for the
/// partition's bucket (OLH's pool, general-privacy HR's permutation) — the key the device used, since the partition's `bucket_start` is
/// the reports' `time` ([`confiance::recorder::Recorder::record`]).
/// The 16 bytes under which an envelope's digest (or the key a partly accepted envelope
/// is remembered under) enters the replay filter beside report ids: its two halves
/// XORed. A filter hit, whatever it collides with, only costs the store read that
/// gives the exact answer; a miss is certain, so a fresh envelope costs no store read.
fn envelope_key(digest: &[u8; 32]) -> [u8; 16] {
    let mut key = [0u8; 16];
    for (k, (a, b)) in key.iter_mut().zip(digest.iter().zip(&digest[16..])) {
        *k = a ^ b;
    }
    key
}

fn partition_mechanism(metric: &Selection, key: &PartitionKey) -> Mechanism {
    metric.for_period(key.metric.as_str(), key.bucket_start.as_secs())
}

/// Every partition `store` holds, merged by key (a shared store holds one partial per
/// writing process: they merge associatively and commutatively, so the result does not
/// depend on which process ingested what), each checked against its metric's mechanism.
fn load_partitions(
    store: &dyn Store,
    mechanisms: &BTreeMap<MetricId, Selection>,
) -> Result<BTreeMap<PartitionKey, Partition>, ServiceError> {
    let mut partitions: BTreeMap<PartitionKey, Partition> = BTreeMap::new();
    for p in store.partitions()? {
        let acc = Accumulator::from_bytes(&p.state).map_err(|_| ServiceError::CorruptPartition)?;
        if mechanisms.get(&p.key.metric).map(|m| partition_mechanism(m, &p.key)).as_ref()
            != Some(acc.mechanism())
        {
            return Err(ServiceError::CorruptPartition);
        }
        match partitions.get_mut(&p.key) {
            Some(q) => {
                q.acc.merge(&acc).map_err(|_| ServiceError::CorruptPartition)?;
                q.reports += p.reports;
            }
            None => {
                partitions.insert(p.key, Partition { acc, reports: p.reports });
            }
        }
    }
    Ok(partitions)
}

impl core::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Aggregator")
            .field("catalogue", &self.catalogue)
            .field("partitions", &self.partitions.len())
            .field("replay_filter_bytes", &self.seen.bytes())
            .finish_non_exhaustive()
    }
}

/// A ledger failure where ingest can only report a store error: a lost race stays
/// [`StoreError::Conflict`], anything else the ledger's store failing.
pub(crate) fn ledger_store_error(e: LedgerError) -> StoreError {
    match e {
        LedgerError::Shared(e) => e,
        LedgerError::Store(e) => StoreError::Sqlite(e),
        _ => StoreError::Corrupt("the ledger could not be read"),
    }
}

/// The audit event of an accepted withdrawal: the instant it takes effect is the
/// signed withdrawal's (`recorded` only if the bytes, already accepted, did not decode).
fn withdrawn_event(receipt: confiance::ids::ReceiptId, bytes: &[u8], recorded: Timestamp) -> AuditEvent {
    let at = confiance::consent::SignedWithdrawal::from_bytes(bytes).map_or(recorded, |w| w.withdrawal().at);
    AuditEvent::ConsentWithdrawn { receipt, at }
}

/// A consent message decoded, its signature verified.
enum Decoded {
    Receipt(SignedReceipt),
    Withdrawal(SignedWithdrawal),
}

/// Fewest items worth starting threads for in [`on_every_core`]: starting one costs about
/// as much as verifying one signature.
const PARALLEL_MIN: usize = 8;

/// `f` of every item, computed on [`std::thread::available_parallelism`] threads (a
/// contiguous part each, the caller's thread taking the first), in `items`' order.
fn on_every_core<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    let threads = std::thread::available_parallelism().map_or(1, core::num::NonZeroUsize::get);
    if threads < 2 || items.len() < PARALLEL_MIN {
        return items.iter().map(&f).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let f = &f;
        let mut parts = items.chunks(per_thread);
        let mine = parts.next().unwrap_or_default();
        let workers: Vec<_> =
            parts.map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<_>>())).collect();
        let mut all: Vec<U> = mine.iter().map(f).collect();
        for w in workers {
            // A panic in `f` goes on in the caller, as if it had run there.
            match w.join() {
                Ok(done) => all.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    })
}

impl Aggregator {
    /// Opens (or creates) the aggregator's database at `path`: the store and the ledger
    /// share the file; partitions and remembered report ids are loaded into memory, and
    /// [`Self::reconcile`] repairs what a crash between the store's and the ledger's
    /// commits left behind.
    ///
    /// # Errors
    /// [`ServiceError`] when the database cannot be opened or does not match the catalogue.
    pub fn open(
        path: impl AsRef<Path>,
        catalogue: Catalogue,
        keys: KeyStore,
        config: AggregatorConfig,
    ) -> Result<Self, ServiceError> {
        let store = SqliteStore::open(path.as_ref())?;
        let conn = rusqlite::Connection::open(path.as_ref()).map_err(StoreError::Sqlite)?;
        conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA synchronous = FULL;")
            .map_err(StoreError::Sqlite)?;
        let ledger = Ledger::open(conn, catalogue.clone())?;
        Self::assemble(catalogue, keys, Box::new(store), ledger, config)?.reconciled()
    }

    /// An aggregator on any [`Store`] — [`PgStore`](crate::store::PgStore) for several
    /// processes on one PostgreSQL database (docs/scaling.md) — with `ledger` for its
    /// consent ledger. Partitions and remembered report ids are loaded into memory and
    /// [`Self::reconcile`] brings the ledger's holdings in line with the store.
    ///
    /// Consent facts and their audit events commit in one transaction only when the
    /// ledger shares the store's SQLite file ([`Self::open`]); otherwise the events are
    /// appended right after the ledger's commit, and a crash between the two is repaired
    /// by [`Self::reconcile`] at the next open.
    ///
    /// ```
    /// use confiance_aggregator::ledger::Ledger;
    /// use confiance_aggregator::service::{Aggregator, AggregatorConfig};
    /// use confiance_aggregator::store::SqliteStore;
    /// # let catalogue = confiance::catalogue::Catalogue::from_toml_str(
    /// #     include_str!("../../examples/catalogue.toml"))?;
    /// # let keys = confiance_aggregator::keys::KeyStore::new(0);
    /// let store = Box::new(SqliteStore::in_memory()?);
    /// let ledger = Ledger::in_memory(catalogue.clone())?;
    /// let agg = Aggregator::with_store(store, ledger, catalogue, keys, AggregatorConfig::default())?;
    /// assert_eq!(agg.partitions().count(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ServiceError`] when the store cannot be read or does not match the catalogue.
    pub fn with_store(
        store: Box<dyn Store + Send>,
        ledger: Ledger,
        catalogue: Catalogue,
        keys: KeyStore,
        config: AggregatorConfig,
    ) -> Result<Self, ServiceError> {
        Self::assemble(catalogue, keys, store, ledger, config)?.reconciled()
    }

    /// As [`Self::with_store`], without [`Self::reconcile`]: for a process that only
    /// reads — `confiance query`, `audit` and `report` on PostgreSQL — and must not write
    /// to a database that other processes serve. Its answers are the database's as it is:
    /// a consent fact whose audit event, or a stored record whose holdings note, was lost
    /// by a crash stays missing until a process that reconciles (a `serve` start, a
    /// `purge`) repairs it, and `audit verify` reports a consent fact without its event.
    ///
    /// ```
    /// use confiance_aggregator::ledger::Ledger;
    /// use confiance_aggregator::service::{Aggregator, AggregatorConfig};
    /// use confiance_aggregator::store::SqliteStore;
    /// # let catalogue = confiance::catalogue::Catalogue::from_toml_str(
    /// #     include_str!("../../examples/catalogue.toml"))?;
    /// # let keys = confiance_aggregator::keys::KeyStore::new(0);
    /// let store = Box::new(SqliteStore::in_memory()?);
    /// let ledger = Ledger::in_memory(catalogue.clone())?;
    /// let agg = Aggregator::with_store_unreconciled(store, ledger, catalogue, keys, AggregatorConfig::default())?;
    /// assert_eq!(agg.ledger().stats().receipts, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ServiceError`] when the store cannot be read or does not match the catalogue.
    pub fn with_store_unreconciled(
        store: Box<dyn Store + Send>,
        ledger: Ledger,
        catalogue: Catalogue,
        keys: KeyStore,
        config: AggregatorConfig,
    ) -> Result<Self, ServiceError> {
        Self::assemble(catalogue, keys, store, ledger, config)
    }

    /// An aggregator whose store and ledger live in memory (tests, simulations).
    ///
    /// # Errors
    /// [`ServiceError`].
    pub fn in_memory(
        catalogue: Catalogue,
        keys: KeyStore,
        config: AggregatorConfig,
    ) -> Result<Self, ServiceError> {
        let store = SqliteStore::in_memory()?;
        let ledger = Ledger::in_memory(catalogue.clone())?;
        Self::assemble(catalogue, keys, Box::new(store), ledger, config)
    }

    fn assemble(
        catalogue: Catalogue,
        keys: KeyStore,
        store: Box<dyn Store + Send>,
        ledger: Ledger,
        config: AggregatorConfig,
    ) -> Result<Self, ServiceError> {
        let mut ledger = ledger;
        // A question across subjects reads no more subjects at a time than are kept loaded.
        ledger.set_scan_chunk(config.max_loaded_subjects.min(crate::ledger::DEFAULT_SCAN_CHUNK));
        let mechanisms: BTreeMap<MetricId, Selection> =
            catalogue.metrics().filter_map(|(id, m)| Some((id.clone(), m.mechanism()?))).collect();
        // On a shared store this process keeps only its own partials, starting empty:
        // the others' (and its predecessors') are read and merged when needed
        // ([`Self::committed`]), never written back under this process's name.
        let partitions =
            if store.shared() { BTreeMap::new() } else { load_partitions(&*store, &mechanisms)? };
        let mut seen = ReplayFilter::with_bytes(config.replay_filter_bytes);
        // On a shared store the filter is never asked (`maybe_seen`: only the store
        // knows the other processes' ids), so its ids are not read: an open does not
        // grow with the report ids remembered.
        if !store.shared() {
            store.for_each_seen_id(Timestamp::EPOCH, &mut |id, _| seen.insert(id))?;
            store.for_each_seen_envelope(&mut |digest| seen.insert(&envelope_key(digest)))?;
        }
        Ok(Self {
            catalogue,
            keys,
            store,
            ledger,
            config,
            mechanisms,
            partitions,
            seen,
            staged: Staged::default(),
            checked_tags: TagCache::new(TAG_CACHE_MAX),
            tokens: None,
            issuer: None,
            issuance_due: None,
        })
    }

    /// The catalogue.
    #[must_use]
    pub const fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Brings the consent ledger up to date with what other processes wrote to a shared
    /// (PostgreSQL) ledger ([`Ledger::refresh`]: one query, and the new facts only when
    /// there are some), after forgetting the subjects a lazily loaded ledger holds if
    /// they are more than [`AggregatorConfig::max_loaded_subjects`]. Ingest and token issuance do it themselves before deciding; a
    /// host answering questions from [`Self::ledger`] (subject access, who sees what)
    /// calls it first. A no-op for a ledger of its own.
    ///
    /// ```
    /// # use confiance_aggregator::service::{Aggregator, AggregatorConfig};
    /// # let catalogue = confiance::catalogue::Catalogue::from_toml_str(
    /// #     include_str!("../../examples/catalogue.toml"))?;
    /// # let keys = confiance_aggregator::keys::KeyStore::new(0);
    /// let mut agg = Aggregator::in_memory(catalogue, keys, AggregatorConfig::default())?;
    /// assert!(!agg.refresh_ledger()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LedgerError`] when the shared ledger cannot be read.
    pub fn refresh_ledger(&mut self) -> Result<bool, LedgerError> {
        // Between two decisions: nothing loaded for the last one is needed any more.
        self.ledger.bound_subjects(self.config.max_loaded_subjects)?;
        self.ledger.refresh()
    }

    /// On a lazily loaded ledger ([`Ledger::open_postgres_lazy`]), loads `subject`'s
    /// facts: what a question about one subject ([`Ledger::subject_access`],
    /// [`Ledger::check_at`], its history) reads. A no-op on any other ledger.
    ///
    /// ```
    /// # use confiance::{catalogue::Catalogue, ids::SubjectId};
    /// # use confiance_aggregator::{keys::KeyStore, service::{Aggregator, AggregatorConfig}};
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// let mut agg = Aggregator::in_memory(catalogue, KeyStore::new(86_400), AggregatorConfig::default())?;
    /// agg.load_subject(&SubjectId([7; 32]))?; // in memory: everything is loaded already
    /// assert_eq!(agg.ledger().loaded_subjects(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LedgerError`] when the shared ledger cannot be read.
    pub fn load_subject(&mut self, subject: &confiance::ids::SubjectId) -> Result<(), LedgerError> {
        self.ledger.load_subject(subject)
    }

    /// On a lazily loaded ledger, loads the subject of receipt `receipt` (whose consent
    /// event an audit-log reader may see). A no-op on any other ledger.
    ///
    /// ```
    /// # use confiance::{catalogue::Catalogue, ids::ReceiptId};
    /// # use confiance_aggregator::{keys::KeyStore, service::{Aggregator, AggregatorConfig}};
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// let mut agg = Aggregator::in_memory(catalogue, KeyStore::new(86_400), AggregatorConfig::default())?;
    /// agg.load_receipt(&ReceiptId([1; 32]))?; // in memory: a no-op
    /// assert_eq!(agg.ledger().receipt_terms(&ReceiptId([1; 32])), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LedgerError`] when the shared ledger cannot be read.
    pub fn load_receipt(&mut self, receipt: &confiance::ids::ReceiptId) -> Result<(), LedgerError> {
        self.ledger.load_receipt(receipt)
    }

    /// On a lazily loaded ledger, loads the subjects with a receipt or a disclosure for
    /// `recipient` ([`Ledger::load_recipient`]): what a recipient's view and history
    /// read. A no-op on any other ledger.
    ///
    /// ```
    /// # use confiance_aggregator::service::{Aggregator, AggregatorConfig};
    /// # let catalogue = confiance::catalogue::Catalogue::from_toml_str(
    /// #     include_str!("../../examples/catalogue.toml"))?;
    /// # let keys = confiance_aggregator::keys::KeyStore::new(0);
    /// let mut agg = Aggregator::in_memory(catalogue, keys, AggregatorConfig::default())?;
    /// agg.load_recipient(&"calora".parse()?)?; // in memory: a no-op
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LedgerError`] when the shared ledger cannot be read.
    pub fn load_recipient(&mut self, recipient: &confiance::ids::RecipientId) -> Result<(), LedgerError> {
        self.ledger.load_recipient(recipient)
    }

    /// On a lazily loaded ledger, loads every fact (once; the ledger is then the fully
    /// loaded one, until the next decision forgets it: [`Self::refresh_ledger`]). No
    /// query of the server needs it any more: a recipient's view or history needs only
    /// [`Self::load_recipient`], and who sees what, overdue holdings, unconsented
    /// disclosures and the catalogue diff read their subjects page by page
    /// ([`Ledger::scan_who_sees`]). A no-op on any other ledger.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::{keys::KeyStore, service::{Aggregator, AggregatorConfig}};
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// let mut agg = Aggregator::in_memory(catalogue, KeyStore::new(86_400), AggregatorConfig::default())?;
    /// agg.load_everything()?;
    /// assert!(!agg.ledger().is_lazy());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LedgerError`] when the shared ledger cannot be read.
    pub fn load_everything(&mut self) -> Result<(), LedgerError> {
        self.ledger.load_everything()
    }

    /// The consent ledger.
    #[must_use]
    pub const fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The consent ledger, for the questions that read a lazily loaded one page by page
    /// ([`Ledger::scan_who_sees`] and the others; they write nothing).
    pub(crate) const fn ledger_mut(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    /// The store ([`SqliteStore`] unless built [`Self::with_store`]).
    #[must_use]
    pub fn store(&self) -> &(dyn Store + Send) {
        &*self.store
    }

    /// The HPKE keys.
    #[must_use]
    pub const fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// Committed partitions with their report counts — on a shared store
    /// ([`Store::shared`]), only what this process committed ([`Self::partition_states`]
    /// merges every process's).
    pub fn partitions(&self) -> impl Iterator<Item = (&PartitionKey, u64)> {
        self.partitions.iter().map(|(k, p)| (k, p.reports))
    }

    /// The serialized state of every committed partition, for comparing shards: on a
    /// shared store, every process's partials read from the store and merged (empty if
    /// the store cannot be read).
    #[must_use]
    pub fn partition_states(&self) -> BTreeMap<PartitionKey, (u64, Vec<u8>)> {
        let states = |m: &BTreeMap<PartitionKey, Partition>| {
            m.iter().map(|(k, p)| (k.clone(), (p.reports, p.acc.to_bytes()))).collect()
        };
        match self.committed() {
            Ok(m) => states(&m),
            Err(_) => BTreeMap::new(),
        }
    }

    /// Every committed partition: this process's in memory, or — on a shared store,
    /// where other processes commit too — every partial the store holds, merged.
    fn committed(&self) -> Result<std::borrow::Cow<'_, BTreeMap<PartitionKey, Partition>>, ServiceError> {
        if self.store.shared() {
            Ok(std::borrow::Cow::Owned(load_partitions(&*self.store, &self.mechanisms)?))
        } else {
            Ok(std::borrow::Cow::Borrowed(&self.partitions))
        }
    }

    /// Ingests one envelope and commits it: when this returns `Ok`, the envelope is
    /// durable and may be acknowledged to the device.
    ///
    /// # Errors
    /// [`IngestError`]; nothing the envelope carried is kept.
    pub fn ingest(&mut self, frame: &[u8], now: Timestamp) -> Result<Ack, IngestError> {
        self.stage(frame, now)?;
        let mut acks = self.commit(now).map_err(IngestError::Store)?;
        acks.pop().ok_or(IngestError::Empty)
    }

    /// Requires report tokens (RFC 9576/9578 style, see [`crate::issuer`]) from now on:
    /// every envelope must spend exactly one valid, unspent token per scope (recipients,
    /// purpose, token period) its anonymous statistics are in, or it is refused with
    /// [`IngestError::Token`] and nothing is kept. Spent tokens are remembered with the
    /// report ids, in the same transaction. `None` stops requiring them (tokens an
    /// envelope carries are then ignored).
    pub fn set_token_verifier(&mut self, verifier: Option<TokenVerifier>) {
        self.tokens = verifier;
    }

    /// Validates an envelope and stages its reports for the next [`Self::commit`]; the
    /// envelope is *not* durable yet and must not be acknowledged before the commit.
    /// Staging many envelopes and committing once is how ingest gets its throughput;
    /// [`Self::stage_many`] does the same for a slice of envelopes on all cores.
    ///
    /// # Errors
    /// [`IngestError`]; a refused envelope leaves the staged state as it was.
    pub fn stage(&mut self, frame: &[u8], now: Timestamp) -> Result<(), IngestError> {
        self.refresh_ledger().map_err(|e| IngestError::Store(ledger_store_error(e)))?;
        let prepared = self.preparer().prepare(frame, now)?;
        self.apply(prepared, now)
    }

    /// Stages many envelopes, each with its own `now`, exactly as calling
    /// [`Self::stage`] on each in order would — same result per envelope, replays caught
    /// across and within the slice — but the expensive stateless part (HPKE opening,
    /// decoding, the per-report checks against the catalogue, and the report tokens'
    /// check, each thread's envelopes' tokens as one window) runs on
    /// [`std::thread::available_parallelism`] threads, a window of envelopes at a time;
    /// the results are then applied in input order on the caller's thread.
    ///
    /// Result `i` is envelope `i`'s. As with `stage`, nothing is durable before
    /// [`Self::commit`]: a host calls `stage_many` on what it received, then `commit`,
    /// then acknowledges the envelopes whose result was `Ok`.
    ///
    /// ```
    /// # use confiance::{catalogue::Catalogue, envelope::AeadId, Timestamp};
    /// # use confiance_aggregator::{keys::KeyStore, service::{Aggregator, AggregatorConfig}};
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// # let mut keys = KeyStore::new(0);
    /// # keys.generate(AeadId::ChaCha20Poly1305, Timestamp::EPOCH, Timestamp::MAX, &mut confiance::rng::OsRng::new())?;
    /// let mut agg = Aggregator::in_memory(catalogue, keys, AggregatorConfig::default())?;
    /// let now = Timestamp::from_secs(1_800_000_000);
    /// let received: Vec<Vec<u8>> = vec![vec![0; 10], vec![1; 20]]; // frames from devices
    /// let frames: Vec<(&[u8], Timestamp)> = received.iter().map(|f| (f.as_slice(), now)).collect();
    /// let results = agg.stage_many(&frames);
    /// assert!(results.iter().all(Result::is_err)); // not envelopes
    /// let acks = agg.commit(now)?; // durable: acknowledge these
    /// assert!(acks.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stage_many(&mut self, frames: &[(&[u8], Timestamp)]) -> Vec<Result<(), IngestError>> {
        // One query on a shared ledger: the records of this batch are checked against
        // every receipt and withdrawal committed by any process before it.
        if let Err(e) = self.refresh_ledger() {
            let mut first = Some(ledger_store_error(e));
            return frames
                .iter()
                .map(|_| {
                    Err(IngestError::Store(
                        first.take().unwrap_or(StoreError::Corrupt("the shared ledger could not be read")),
                    ))
                })
                .collect();
        }
        let threads = std::thread::available_parallelism().map_or(1, core::num::NonZeroUsize::get);
        let mut out = Vec::with_capacity(frames.len());
        // A window bounds the opened-but-not-applied envelopes held in memory; each
        // thread gets a contiguous part of it.
        for window in frames.chunks(STAGE_WINDOW_PER_THREAD * threads) {
            let prepared: Vec<Result<Prepared, IngestError>> = {
                let preparer = self.preparer();
                let per_thread = window.len().div_ceil(threads);
                std::thread::scope(|s| {
                    let preparer = &preparer;
                    let mut parts = window.chunks(per_thread.max(1));
                    let mine = parts.next().unwrap_or_default();
                    let workers: Vec<_> =
                        parts.map(|part| s.spawn(move || preparer.prepare_many(part))).collect();
                    let mut all = preparer.prepare_many(mine);
                    for w in workers {
                        // A worker only runs `prepare`, which does not panic; if it did,
                        // its envelopes are prepared again here.
                        match w.join() {
                            Ok(part) => all.extend(part),
                            Err(_) => return None,
                        }
                    }
                    Some(all)
                })
                .unwrap_or_else(|| preparer.prepare_many(window))
            };
            for (p, (_, now)) in prepared.into_iter().zip(window) {
                out.push(p.and_then(|p| self.apply(p, *now)));
            }
        }
        out
    }

    fn preparer(&self) -> Preparer<'_> {
        Preparer {
            keys: &self.keys,
            catalogue: &self.catalogue,
            digest: self.catalogue.digest(),
            config: &self.config,
            mechanisms: &self.mechanisms,
            checked_tags: &self.checked_tags,
            tokens: self.tokens.as_ref(),
        }
    }

    /// The stateful half of [`Self::stage`], in its order: envelope replay, decoding
    /// errors, then per report: metric, report replay, the stateless verdict, the
    /// ledger's checks for records; then staging.
    ///
    /// Each report stands on its own (docs/wire-format.md §6): a refused one is listed in
    /// the envelope's [`Ack`] and not kept (its id is not remembered, so a retryable one
    /// can come again); one already held is acknowledged and not kept twice. An envelope
    /// with nothing to keep stages only its acknowledgement. An envelope is remembered as
    /// seen only when every report in it is final; with a retryable refusal it stays
    /// open, so a resend after a lost answer is processed again (its accepted reports
    /// are then already held).
    fn apply(&mut self, prepared: Prepared, now: Timestamp) -> Result<(), IngestError> {
        let env_id = prepared.envelope;
        // Each id is hashed once: its probe both asks the replay filter and, once the
        // id is staged, enters it (the same cache line, still in cache).
        let env_probe = self.seen.probe(&envelope_key(&env_id.0));
        if self.staged.envelopes.contains(&Keyed::new(&env_probe, env_id.0))
            || (self.maybe_seen(&env_probe)
                && self.store.envelope_seen(&env_id.0).map_err(IngestError::Store)?)
        {
            return Err(IngestError::ReplayedEnvelope(env_id));
        }
        let Prepared { reports, tokens, .. } = prepared;
        let reports = reports?;
        let mut stats: Vec<(&PartitionKey, &confiance::ldp::LdpReport)> = Vec::new();
        let mut records = Vec::new();
        let mut ids = KeyedSet::with_capacity_and_hasher(reports.len(), Default::default());
        let mut probes = Vec::with_capacity(reports.len());
        let mut expires = Timestamp::EPOCH;
        let mut new_tags = Vec::new();
        let mut refused = Vec::new();
        let mut held = false;
        for (index, c) in reports.iter().enumerate() {
            let r = &c.report;
            if let Err(e) = &c.known {
                refused.push(e.refused(index));
                continue;
            }
            let probe = self.seen.probe(&r.id.0);
            let key = Keyed::new(&probe, r.id.0);
            if self.staged.ids.contains(&key)
                || ids.contains(&key)
                || (self.maybe_seen(&probe) && self.store.id_seen(&r.id.0).map_err(IngestError::Store)?)
            {
                // Already held (a resend, or twice in this envelope): acknowledged, kept once.
                held = true;
                continue;
            }
            let kind = match &c.verdict {
                Ok(kind) => kind,
                Err(e) => {
                    refused.push(e.refused(index));
                    continue;
                }
            };
            if c.new_tag {
                new_tags.push((r.metric.clone(), r.tag.clone()));
            }
            match (kind, &r.payload) {
                (Kind::Statistic(key), Payload::Statistic(ldp)) => stats.push((key, ldp)),
                (Kind::Record(receipt), Payload::Record { pseudonym, epoch, value }) => {
                    let receipt = *receipt;
                    // A lazily loaded ledger reads the receipt's subject first.
                    self.ledger
                        .load_receipt(&receipt)
                        .map_err(|e| IngestError::Store(ledger_store_error(e)))?;
                    let Some(terms) = self.ledger.receipt_terms(&receipt) else {
                        refused.push(ReportError::UnknownReceipt(receipt).refused(index));
                        continue;
                    };
                    if !r.tag.audience().contains(&terms.recipient) || r.tag.purpose() != &terms.purpose {
                        let e = ReportError::Tag(confiance::retention::TagError::AudienceNotReceipt);
                        refused.push(e.refused(index));
                        continue;
                    }
                    let decision = self.ledger.check_at(
                        &terms.recipient,
                        &r.metric,
                        &terms.purpose,
                        &terms.subject,
                        r.time,
                        None,
                    );
                    if !decision.allowed() {
                        refused.push(ReportError::NotConsented(decision.reason()).refused(index));
                        continue;
                    }
                    let new = NewRecord {
                        id: r.id.0,
                        metric: r.metric.clone(),
                        recipient: terms.recipient.clone(),
                        receipt,
                        collected_at: r.time,
                        hold: r.tag.hold().clone(),
                        body: postcard::to_allocvec(&(pseudonym, epoch, value)).unwrap_or_default(),
                    };
                    let deadline = self
                        .ledger
                        .record_deadline(&receipt, &r.metric, r.time)
                        .unwrap_or_else(|_| new.deadline())
                        .min(new.deadline());
                    if deadline <= now {
                        // Its hold ended before it arrived: keeping it would break the hold.
                        refused.push(ReportError::TimeOutsideWindow.refused(index));
                        continue;
                    }
                    let note = RecordNote {
                        record: r.id.0,
                        subject: terms.subject,
                        recipient: terms.recipient,
                        metric: r.metric.clone(),
                        receipt,
                        collected_at: r.time,
                        deadline,
                    };
                    records.push((new, note));
                }
                _ => {
                    refused.push(ReportError::WrongTrack.refused(index));
                    continue;
                }
            }
            // Accepted: remember its id until its bucket can no longer be accepted.
            ids.insert(key);
            probes.push(probe);
            expires = expires.max(c.expires);
        }
        // Then the tokens: their stateless verdict, then — when the envelope keeps a
        // report — whether one was spent already (remembered with the report ids, in the
        // same transaction). An envelope that keeps nothing spends nothing: a resend after
        // a lost answer (its reports already held) is acknowledged again.
        let tokens = tokens.map_err(IngestError::Token)?;
        let accepted = ids.len();
        if accepted > 0 {
            for (id, until) in tokens {
                let probe = self.seen.probe(&id);
                let key = Keyed::new(&probe, id);
                if self.staged.ids.contains(&key)
                    || !ids.insert(key)
                    || (self.maybe_seen(&probe) && self.store.id_seen(&id).map_err(IngestError::Store)?)
                {
                    return Err(IngestError::Token(TokenRefusal::Spent));
                }
                probes.push(probe);
                expires = expires.max(until);
            }
        }
        // Every report passed; the tag cache only ever holds pairs that passed the check.
        for (metric, tag) in new_tags {
            self.checked_tags.insert(metric, tag);
        }
        // Everything checked: stage it. (`add` cannot fail after `check` but for a u64
        // count overflowing, which 2^64 reports would take.)
        let partitions =
            u32::try_from(stats.iter().map(|(k, _)| k).collect::<BTreeSet<_>>().len()).unwrap_or(u32::MAX);
        for (key, ldp) in stats {
            let Some(mech) = self.mechanisms.get(&key.metric) else { continue };
            // The key is cloned only for a partition new to this batch.
            if !self.staged.partitions.contains_key(key) {
                let acc = Accumulator::new(&partition_mechanism(mech, key));
                self.staged.partitions.insert(key.clone(), Partition { acc, reports: 0 });
            }
            let Some(p) = self.staged.partitions.get_mut(key) else { continue };
            if p.acc.add(ldp).is_ok() {
                p.reports += 1;
            }
        }
        // At most `max_reports` (4 096) reports an envelope: lossless.
        let n = u32::try_from(accepted).unwrap_or(u32::MAX);
        if accepted == 0 {
            // On a shared store another process may have committed this very envelope
            // between the envelope check above and the report checks: its reports are
            // then all held, and the envelope is a replay, not a resend to acknowledge.
            // (Its digest and ids commit together, so once an id is seen so is it.)
            if held
                && self.store.shared()
                && self.store.envelope_seen(&env_id.0).map_err(IngestError::Store)?
            {
                return Err(IngestError::ReplayedEnvelope(env_id));
            }
            // Nothing to keep: only the answer (refusals, or reports already held).
            self.staged.acks.push(Ack { envelope: env_id, reports: 0, refused });
            return Ok(());
        }
        self.staged.records.extend(records);
        self.staged.ids.extend(ids.iter().copied());
        // A retryable refusal keeps the envelope open for a resend: its accepted ids are
        // remembered under a key derived from the envelope and them, not under its id.
        let seen_key = if refused.iter().any(|r| r.retry) {
            let mut h = <sha2::Sha256 as sha2::Digest>::new();
            sha2::Digest::update(&mut h, b"confiance/partial-envelope/v1\0");
            sha2::Digest::update(&mut h, env_id.0);
            for id in &ids {
                sha2::Digest::update(&mut h, id.id());
            }
            sha2::Digest::finalize(h).into()
        } else {
            env_id.0
        };
        // Staged ids enter the replay filter now, while their lines are in cache, not at
        // commit: a commit that fails leaves their bits set, which only costs a store
        // read if they come again (a "maybe" is always checked); a rebuild of the filter
        // before the commit puts the staged ids back (`rebuild_replay_filter`).
        let seen_probe =
            if seen_key == env_id.0 { env_probe } else { self.seen.probe(&envelope_key(&seen_key)) };
        self.seen.insert_probe(&seen_probe);
        for probe in &probes {
            self.seen.insert_probe(probe);
        }
        self.staged.envelopes.insert(Keyed::new(&seen_probe, seen_key));
        self.staged.seen.push(SeenIds {
            envelope: seen_key,
            expires_at: expires,
            ids: ids.iter().map(|k| *k.id()).collect(),
        });
        self.staged.audit.push(AuditEvent::IngestBatch {
            envelope_digest: env_id.0,
            reports: n,
            partitions,
            at: now,
        });
        self.staged.acks.push(Ack { envelope: env_id, reports: n, refused });
        self.staged.reports += u64::from(n);
        Ok(())
    }

    /// Envelopes staged and not yet committed.
    #[must_use]
    pub fn staged_envelopes(&self) -> usize {
        self.staged.acks.len()
    }

    /// Reports staged and not yet committed.
    #[must_use]
    pub fn staged_reports(&self) -> u64 {
        self.staged.reports
    }

    /// Commits everything staged in one transaction and returns the acknowledgements of
    /// the envelopes it made durable. On error nothing staged is kept (the devices send
    /// again) and the committed state is unchanged — except when the store committed
    /// and only the ledger's holdings notes failed: then the envelopes are durable (a
    /// resend is a replay), and the holdings are repaired at the next open.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn commit(&mut self, now: Timestamp) -> Result<Vec<Ack>, StoreError> {
        if self.staged.acks.is_empty() {
            return Ok(Vec::new());
        }
        let staged = self.staged.take();
        // Merge in place (no copy of a committed accumulator); `undo` keeps what each
        // partition received, so a failed merge or write can take it back exactly.
        let mut undo: Vec<(PartitionKey, Option<Partition>)> = Vec::with_capacity(staged.partitions.len());
        for (key, p) in staged.partitions {
            let added = match self.partitions.get_mut(&key) {
                Some(old) => match old.acc.merge(&p.acc) {
                    Ok(()) => {
                        old.reports += p.reports;
                        Some(p)
                    }
                    Err(_) => {
                        self.undo_merges(undo);
                        return Err(StoreError::Corrupt("partition merge"));
                    }
                },
                None => {
                    self.partitions.insert(key.clone(), p);
                    None
                }
            };
            undo.push((key, added));
        }
        let (records, notes): (Vec<NewRecord>, Vec<RecordNote>) = staged.records.into_iter().unzip();
        let batch = CommitBatch {
            partitions: undo
                .iter()
                .filter_map(|(k, _)| self.partitions.get(k).map(|p| (k, p)))
                .map(|(k, p)| StoredPartition { key: k.clone(), state: p.acc.to_bytes(), reports: p.reports })
                .collect(),
            records,
            seen: staged.seen,
            audit: staged.audit,
        };
        let stored = self.store.commit(&batch);
        self.staged.recycle(batch);
        if let Err(e) = stored {
            self.undo_merges(undo);
            return Err(e);
        }
        // Durable: now update the ledger's holdings index (the replay filter took the
        // staged ids in `apply`). The notes are derived data, written in their own
        // ledger savepoint; a crash before they commit is repaired by `Self::reconcile`
        // on open (service/reconcile.rs).
        // Partitions that were new (nothing to undo) are the ones the ledger must note.
        let fresh: Vec<PartitionKey> =
            undo.into_iter().filter(|(_, added)| added.is_none()).map(|(key, _)| key).collect();
        self.note_holdings(&fresh, &notes, now).map_err(reconcile::ledger_to_store)?;
        Ok(staged.acks)
    }

    /// Takes back merges of [`Self::commit`] that will not be durable: a partition that
    /// was new is removed, an existing one gets its staged reports subtracted (exact).
    fn undo_merges(&mut self, undo: Vec<(PartitionKey, Option<Partition>)>) {
        for (key, added) in undo {
            match added {
                None => {
                    self.partitions.remove(&key);
                }
                Some(p) => {
                    if let Some(old) = self.partitions.get_mut(&key)
                        && old.acc.unmerge(&p.acc).is_ok()
                    {
                        old.reports -= p.reports;
                    }
                }
            }
        }
    }

    /// Records many receipts and withdrawals at once, in time order, in one transaction
    /// (one durable commit instead of one per message) that also appends their audit
    /// events: a crash leaves all of them recorded and logged, or none. Each message is
    /// accepted or refused on its own: the result at index `i` is message `i`'s.
    ///
    /// # Errors
    /// [`ServiceError::Store`] when the commit fails; then none of the messages is kept
    /// (on disk or in memory) and none is logged.
    pub fn receive_consent_batch(
        &mut self,
        messages: &[(ConsentMessage<'_>, Timestamp)],
    ) -> Result<Vec<Result<confiance::ids::ReceiptId, LedgerError>>, ServiceError> {
        // Decoding verifies each signature and reads no state: it runs on every core
        // first, and the ledger then takes the decoded messages in order, exactly as
        // `Ledger::ingest_receipt` and `Ledger::ingest_withdrawal` would (both decode,
        // then record).
        let decoded = on_every_core(messages, |(m, _)| match m {
            ConsentMessage::Receipt(b) => SignedReceipt::from_bytes(b).map(Decoded::Receipt),
            ConsentMessage::Withdrawal(b) => SignedWithdrawal::from_bytes(b).map(Decoded::Withdrawal),
        });
        self.record_with_events(|ledger, events| {
            let mut out = Vec::with_capacity(messages.len());
            for ((_, t), d) in messages.iter().zip(decoded) {
                let r = match d {
                    Err(e) => Err(e.into()),
                    Ok(Decoded::Receipt(s)) => ledger.ingest_signed_receipt(&s, *t).inspect(|&id| {
                        events.push(AuditEvent::ConsentGiven { receipt: id });
                    }),
                    Ok(Decoded::Withdrawal(s)) => ledger.ingest_signed_withdrawal(&s, *t).inspect(|&id| {
                        events.push(AuditEvent::ConsentWithdrawn { receipt: id, at: s.withdrawal().at });
                    }),
                };
                out.push(r);
            }
            Ok(out)
        })
    }

    /// Records a consent receipt the device sent (verified, checked against the
    /// catalogue, stored and logged in one transaction).
    ///
    /// # Errors
    /// [`ServiceError::Ledger`] with the typed reason; nothing changes.
    pub fn receive_receipt(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<confiance::ids::ReceiptId, ServiceError> {
        self.record_with_events(|ledger, events| {
            let id = ledger.ingest_receipt(bytes, now)?;
            events.push(AuditEvent::ConsentGiven { receipt: id });
            Ok(id)
        })
    }

    /// Records a withdrawal the device sent (stored and logged in one transaction).
    ///
    /// # Errors
    /// [`ServiceError::Ledger`] with the typed reason; nothing changes.
    pub fn receive_withdrawal(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<confiance::ids::ReceiptId, ServiceError> {
        self.record_with_events(|ledger, events| {
            let id = ledger.ingest_withdrawal(bytes, now)?;
            events.push(withdrawn_event(id, bytes, now));
            Ok(id)
        })
    }

    /// Records device delegations signed by subject keys (verified, stored and logged as
    /// [`AuditEvent::DeviceDelegated`]), many in one transaction; each is accepted or
    /// refused on its own: the result at index `i` is delegation `i`'s.
    ///
    /// # Errors
    /// [`ServiceError::Store`] when the commit fails; then none is kept or logged.
    pub fn receive_delegations(
        &mut self,
        delegations: &[(&[u8], Timestamp)],
    ) -> Result<Vec<Result<confiance::ids::DelegationId, LedgerError>>, ServiceError> {
        self.receive_signed(
            delegations,
            confiance::consent::SignedDelegation::from_bytes,
            |ledger, signed, t| {
                let id = ledger.ingest_signed_delegation(signed, t)?;
                Ok((
                    id,
                    AuditEvent::DeviceDelegated {
                        delegation: id,
                        valid_from: signed.delegation().valid_from,
                    },
                ))
            },
        )
    }

    /// Records device certificates signed by certifiers the catalogue trusts (verified,
    /// stored and logged as [`AuditEvent::DeviceCertified`]), many in one transaction:
    /// the admission control of docs/privacy.md, "Device certificates". Each is accepted
    /// or refused on its own: the result at index `i` is certificate `i`'s.
    ///
    /// # Errors
    /// [`ServiceError::Store`] when the commit fails; then none is kept or logged.
    /// ```
    /// use confiance::catalogue::Catalogue;
    /// use confiance::consent::{CertifierKey, DeviceKey};
    /// use confiance::Timestamp;
    /// use confiance_aggregator::{keys::KeyStore, service::{Aggregator, AggregatorConfig}};
    /// let maker = CertifierKey::from_bytes(&[7; 32]);
    /// let toml = include_str!("../../examples/catalogue.toml");
    /// let toml = format!("{toml}\n[enrollment]\ncertifiers = [\"{}\"]\n", maker.public_key());
    /// let mut agg = Aggregator::in_memory(Catalogue::from_toml_str(&toml)?, KeyStore::new(86_400), AggregatorConfig::default())?;
    /// let t = Timestamp::from_secs;
    /// let cert = |seed| maker.certify(DeviceKey::from_bytes(&[seed; 32]).public_key(), "t3", t(0), t(100)).map(|c| c.to_bytes());
    /// let (a, b) = (cert(1)?, cert(2)?);
    /// let ids = agg.receive_certificates(&[(&a, t(1)), (&b, t(1)), (&a, t(2))])?;
    /// assert!(ids[0].is_ok() && ids[1].is_ok() && ids[2].is_err()); // the third is a duplicate
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn receive_certificates(
        &mut self,
        certificates: &[(&[u8], Timestamp)],
    ) -> Result<Vec<Result<confiance::ids::CertificateId, LedgerError>>, ServiceError> {
        self.receive_signed(
            certificates,
            confiance::consent::DeviceCertificate::from_bytes,
            |ledger, signed, t| {
                let id = ledger.ingest_signed_certificate(signed, t)?;
                Ok((
                    id,
                    AuditEvent::DeviceCertified {
                        certificate: id,
                        certifier: signed.certificate().certifier,
                        at: t,
                    },
                ))
            },
        )
    }

    /// Signed messages decoded and their signatures verified on every core, then each
    /// recorded in order by `record` (which gives its id and its audit event) in one
    /// transaction; the result at index `i` is message `i`'s.
    fn receive_signed<T: Send, E: Send + Into<LedgerError>, Id>(
        &mut self,
        messages: &[(&[u8], Timestamp)],
        decode: impl Fn(&[u8]) -> Result<T, E> + Sync,
        record: impl Fn(&mut Ledger, &T, Timestamp) -> Result<(Id, AuditEvent), LedgerError>,
    ) -> Result<Vec<Result<Id, LedgerError>>, ServiceError> {
        let decoded = on_every_core(messages, |(bytes, _)| decode(bytes));
        self.record_with_events(|ledger, events| {
            Ok(messages
                .iter()
                .zip(decoded)
                .map(|((_, t), signed)| {
                    let (id, event) = record(ledger, &signed.map_err(Into::into)?, *t)?;
                    events.push(event);
                    Ok(id)
                })
                .collect())
        })
    }

    /// Records one device certificate ([`Self::receive_certificates`]).
    ///
    /// # Errors
    /// [`ServiceError::Ledger`] with the typed reason
    /// ([`LedgerError::Certificate`], [`LedgerError::DuplicateCertificate`]); nothing
    /// changes.
    /// ```
    /// use confiance::catalogue::Catalogue;
    /// use confiance::consent::{CertifierKey, DeviceKey};
    /// use confiance::Timestamp;
    /// use confiance_aggregator::{keys::KeyStore, service::{Aggregator, AggregatorConfig}};
    /// let maker = CertifierKey::from_bytes(&[7; 32]);
    /// let toml = include_str!("../../examples/catalogue.toml");
    /// let toml = format!("{toml}\n[enrollment]\ncertifiers = [\"{}\"]\n", maker.public_key());
    /// let mut agg = Aggregator::in_memory(Catalogue::from_toml_str(&toml)?, KeyStore::new(86_400), AggregatorConfig::default())?;
    /// let t = Timestamp::from_secs;
    /// let cert = |seed| maker.certify(DeviceKey::from_bytes(&[seed; 32]).public_key(), "t3", t(0), t(100)).map(|c| c.to_bytes());
    /// let id = agg.receive_certificate(&cert(1)?, t(1))?;
    /// assert!(agg.receive_certificate(&cert(1)?, t(2)).is_err()); // once only
    /// # let _ = id;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn receive_certificate(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<confiance::ids::CertificateId, ServiceError> {
        let mut out = self.receive_certificates(&[(bytes, now)])?;
        out.pop().unwrap_or(Err(LedgerError::Corrupt("no result"))).map_err(ServiceError::Ledger)
    }

    /// Records one device delegation ([`Self::receive_delegations`]).
    ///
    /// # Errors
    /// [`ServiceError::Ledger`] with the typed reason; nothing changes.
    pub fn receive_delegation(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<confiance::ids::DelegationId, ServiceError> {
        let mut out = self.receive_delegations(&[(bytes, now)])?;
        out.pop().unwrap_or(Err(LedgerError::Corrupt("no result"))).map_err(ServiceError::Ledger)
    }

    /// Records a revocation signed by a subject key (verified, stored and logged as
    /// [`AuditEvent::DeviceRevoked`] in one transaction). Returns the device key revoked.
    ///
    /// # Errors
    /// [`ServiceError::Ledger`] with the typed reason; nothing changes.
    pub fn receive_revocation(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
    ) -> Result<confiance::ids::DevicePublicKey, ServiceError> {
        self.record_with_events(|ledger, events| {
            let signed =
                confiance::consent::SignedRevocation::from_bytes(bytes).map_err(LedgerError::from)?;
            let device = ledger.ingest_signed_revocation(&signed, now)?;
            let at = crate::ledger::effective_revocation(signed.revocation().at, now);
            events.push(AuditEvent::DeviceRevoked { revocation: signed.id(), at });
            Ok(device)
        })
    }

    /// **Admin override** for a lost subject key ([`Ledger::override_subject`]): the
    /// subject's running consents are withdrawn from `at`, its devices revoked and the
    /// subject closed, and an [`AuditEvent::AdminOverride`] with `reason` and the
    /// receipts withdrawn is logged — in one transaction, never one without the other.
    ///
    /// # Errors
    /// [`ServiceError::Ledger`] with the typed reason (no reason, unknown or already
    /// closed subject); nothing changes.
    pub fn admin_override(
        &mut self,
        subject: &confiance::ids::SubjectId,
        reason: &str,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<confiance::ids::ReceiptId>, ServiceError> {
        self.record_with_events(|ledger, events| {
            let receipts = ledger.override_subject(subject, reason, at, now)?;
            events.push(AuditEvent::AdminOverride {
                reason: reason.trim().to_owned(),
                receipts: receipts.clone(),
                at,
            });
            Ok(receipts)
        })
    }

    /// Releases to `recipient` the estimate of `metric` over buckets starting in
    /// `[from, to)`: only partitions whose audience holds the recipient and whose
    /// deadline is after `now` are counted. Partitions of one bucket are merged; buckets
    /// with different OLH pool keys are estimated apart and combined by their report
    /// counts ([`Combined`]; for other mechanisms this is one merge). Every release is
    /// an audit event.
    ///
    /// # Errors
    /// [`ReleaseError`]: [`ReleaseError::TooFewReports`] below the catalogue's minimum
    /// release size; [`ReleaseError::Store`] also when a partition's accumulator
    /// does not combine with the metric's mechanism (a corrupt store).
    pub fn release(
        &mut self,
        recipient: &RecipientId,
        metric: &MetricId,
        from: Timestamp,
        to: Timestamp,
        now: Timestamp,
    ) -> Result<Release, ReleaseError> {
        let m = self.catalogue.metric(metric).ok_or_else(|| ReleaseError::UnknownMetric(metric.clone()))?;
        if self.catalogue.recipient(recipient).is_none() {
            return Err(ReleaseError::UnknownRecipient(recipient.clone()));
        }
        if !m.recipients.contains(recipient) {
            return Err(ReleaseError::NotAllowed);
        }
        let mech = self.mechanisms.get(metric).ok_or(ReleaseError::WrongTrack)?;
        let mut all = Combined::new(mech);
        let mut count = 0u32;
        let committed = self.committed().map_err(|e| ReleaseError::Store(e.to_string()))?;
        for (k, p) in committed.range(..) {
            if &k.metric == metric
                && k.audience.contains(recipient)
                && k.bucket_start >= from
                && k.bucket_start < to
                && k.deadline() > now
            {
                all.add(&p.acc).map_err(|e| {
                    ReleaseError::Store(format!(
                        "partition {} {}: {e}",
                        k.metric,
                        k.bucket_start.to_rfc3339()
                    ))
                })?;
                count += 1;
            }
        }
        if count == 0 {
            return Err(ReleaseError::NothingToRelease);
        }
        let estimate = all.estimate();
        let minimum = self.catalogue.limits().min_release_reports;
        if estimate.n < u64::from(minimum) {
            return Err(ReleaseError::TooFewReports { reports: estimate.n, minimum });
        }
        self.store
            .append_audit(&[AuditEvent::Release {
                recipient: recipient.clone(),
                metric: metric.clone(),
                window_start: from,
                window_end: to,
                partitions: count,
                at: now,
            }])
            .map_err(|e| ReleaseError::Store(e.to_string()))?;
        let labels = m.kind.labels().into_iter().map(str::to_owned).collect();
        Ok(Release { metric: metric.clone(), partitions: count, estimate, labels })
    }

    /// Releases to `recipient` its pseudonymous records of `metric` collected in
    /// `[from, to)` — each only if the ledger's `check` allows it at `now`; each
    /// disclosure is noted in the ledger, and the release is an audit event.
    ///
    /// # Errors
    /// [`ReleaseError`].
    pub fn release_records(
        &mut self,
        recipient: &RecipientId,
        metric: &MetricId,
        from: Timestamp,
        to: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<ReleasedRecord>, ReleaseError> {
        let m = self.catalogue.metric(metric).ok_or_else(|| ReleaseError::UnknownMetric(metric.clone()))?;
        if m.is_anonymous() {
            return Err(ReleaseError::WrongTrack);
        }
        if !m.recipients.contains(recipient) {
            return Err(ReleaseError::NotAllowed);
        }
        let stored = self
            .store
            .records(recipient, metric, from, to)
            .map_err(|e| ReleaseError::Store(e.to_string()))?;
        // The disclosures and the release's audit event commit together.
        self.record_with_events(|ledger, events| {
            let mut out = Vec::new();
            for r in stored {
                ledger.load_receipt(&r.receipt)?;
                let Some(terms) = ledger.receipt_terms(&r.receipt) else { continue };
                let Ok((pseudonym, _epoch, value)) = postcard::from_bytes::<(
                    confiance::pseudonym::ScopedPseudonym,
                    confiance::pseudonym::Epoch,
                    RecordValue,
                )>(&r.body) else {
                    continue;
                };
                if r.deadline <= now {
                    continue;
                }
                let d = Disclosure {
                    recipient: recipient.clone(),
                    metric: metric.clone(),
                    purpose: terms.purpose.clone(),
                    subject: terms.subject,
                    kind: DisclosureKind::Release,
                    at: now,
                    record: Some(r.id),
                };
                let decision = ledger.disclose(&d, now)?;
                if decision.allowed() {
                    out.push(ReleasedRecord {
                        id: r.id,
                        pseudonym,
                        collected_at: r.collected_at,
                        value,
                        decision,
                    });
                }
            }
            events.push(AuditEvent::Release {
                recipient: recipient.clone(),
                metric: metric.clone(),
                window_start: from,
                window_end: to,
                partitions: u32::try_from(out.len()).unwrap_or(u32::MAX),
                at: now,
            });
            Ok(out)
        })
        .map_err(|e| ReleaseError::Store(e.to_string()))
    }

    /// Transcrypts a device's signed `request` into the domain of `chain` (the recipient
    /// the request names) — only if every transcryptor admits it
    /// ([`DomainTranscryptor::transcrypt`](crate::transcrypt::DomainTranscryptor::transcrypt)):
    /// the device speaks for `subject`, its receipt is `subject`'s for the recipient and
    /// `purpose`, the ledger's `check` allows the recipient `metric` of `subject` for
    /// `purpose` at `now` (docs/privacy.md#polymorphic-pseudonyms), the signature, the
    /// plaintext proof and the nonce hold. An allowed transcryption is noted as a
    /// disclosure in the ledger and logged with the digest of its proofs; a refusal is
    /// logged with its code ([`AuditEvent::TranscryptionRefused`]) and changes nothing else.
    ///
    /// # Errors
    /// [`TranscryptRefusal::Failed`] with the transcryptor's refusal;
    /// [`TranscryptRefusal::Store`] when the ledger or the log cannot record it.
    #[allow(
        clippy::too_many_arguments,
        reason = "the chain, the request, the consent query's three parts, the time, the rng"
    )]
    pub fn transcrypt<R: rand_core::CryptoRng + ?Sized>(
        &mut self,
        chain: &[&crate::transcrypt::DomainTranscryptor],
        request: &confiance::pseudonym::TranscryptionRequest,
        metric: &MetricId,
        purpose: &confiance::ids::PurposeId,
        subject: &confiance::ids::SubjectId,
        now: Timestamp,
        rng: &mut R,
    ) -> Result<Vec<crate::transcrypt::Step>, TranscryptRefusal> {
        use crate::transcrypt::TranscryptError;
        let Some(first) = chain.first() else {
            return Err(TranscryptRefusal::Failed(TranscryptError::EmptyChain));
        };
        let recipient = first.domain().recipient().clone();
        let query = crate::transcrypt::ConsentQuery {
            recipient: recipient.clone(),
            metric: metric.clone(),
            purpose: purpose.clone(),
            subject: *subject,
            at: now,
        };
        // What the transcryptors check, loaded first on a lazily loaded ledger: the
        // device's subject, the receipt's and the subject asked about.
        let loaded = self
            .ledger
            .load_device(request.device())
            .and_then(|()| self.ledger.load_receipt(request.receipt()))
            .and_then(|()| self.ledger.load_subject(subject));
        loaded.map_err(|e| TranscryptRefusal::Store(e.to_string()))?;
        let steps = match crate::transcrypt::transcrypt_chain(chain, request, &self.ledger, &query, rng) {
            Ok(steps) => steps,
            Err(e) => {
                let event =
                    AuditEvent::TranscryptionRefused { recipient, code: e.code().to_owned(), at: now };
                self.record_with_events(|_, events| {
                    events.push(event);
                    Ok(())
                })
                .map_err(|err| TranscryptRefusal::Store(err.to_string()))?;
                return Err(TranscryptRefusal::Failed(e));
            }
        };
        let d = Disclosure {
            recipient: recipient.clone(),
            metric: metric.clone(),
            purpose: purpose.clone(),
            subject: *subject,
            kind: DisclosureKind::Transcryption,
            at: now,
            record: None,
        };
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        for step in &steps {
            sha2::Digest::update(&mut h, step.to_bytes());
        }
        let proof_digest: [u8; 32] = sha2::Digest::finalize(h).into();
        // The disclosure and its audit event commit together.
        self.record_with_events(|ledger, events| {
            ledger.note_disclosure(&d, now)?;
            events.push(AuditEvent::Transcryption {
                recipient,
                receipt: Some(*request.receipt()),
                proof_digest,
                at: now,
            });
            Ok(())
        })
        .map_err(|e| TranscryptRefusal::Store(e.to_string()))?;
        Ok(steps)
    }

    /// Deletes what is past its deadline at `now` (partitions, records and their period
    /// keys, expired report ids), tells the ledger, and logs it.
    ///
    /// # Errors
    /// [`ServiceError::Store`]; on error nothing is deleted. [`ServiceError::Ledger`]
    /// when the store purged but the ledger's notes failed: the data is gone and the
    /// holdings are repaired at the next open.
    pub fn purge(&mut self, now: Timestamp) -> Result<PurgeReport, ServiceError> {
        self.log_token_issuance(now)?;
        let report = self.store.purge(now)?;
        self.partitions.retain(|k, _| k.deadline() > now);
        if report.ids_forgotten > 0 {
            // A Bloom filter cannot forget one id: rebuild it from what the store keeps.
            self.rebuild_replay_filter()?;
        }
        // Derived data, in its own ledger savepoint; a crash before it commits is
        // repaired by `Self::reconcile` on open.
        self.note_purged(&report.partition_keys, &report.record_ids, now)?;
        Ok(report)
    }

    /// Merges another aggregator's committed partitions into this one (scale-out: shards
    /// ingest disjoint envelopes, then merge). Report ids are merged too, so a report
    /// seen by either shard stays a replay. (Processes sharing one database need no
    /// merge: each writes its own partials and every read merges them.)
    ///
    /// # Errors
    /// [`ServiceError::Store`] or [`ServiceError::CorruptPartition`] for mismatched
    /// mechanisms; on error this aggregator is unchanged — but for
    /// [`ServiceError::Ledger`], when only the holdings notes after the store's commit
    /// failed (repaired at the next open).
    pub fn merge_from(&mut self, other: &Self, now: Timestamp) -> Result<(), ServiceError> {
        let mut changed = Vec::new();
        for (k, p) in &other.partitions {
            let merged = match self.partitions.get(k) {
                Some(mine) => {
                    let mut acc = mine.acc.clone();
                    acc.merge(&p.acc).map_err(|_| ServiceError::CorruptPartition)?;
                    Partition { acc, reports: mine.reports + p.reports }
                }
                None => p.clone(),
            };
            changed.push((k.clone(), merged));
        }
        let mut seen: BTreeMap<Timestamp, Vec<[u8; 16]>> = BTreeMap::new();
        let mut lookup = Ok(());
        other.store.for_each_seen_id(Timestamp::EPOCH, &mut |id, exp| {
            let known = (self.store.shared() || self.seen.maybe_contains(id))
                && self.store.id_seen(id).unwrap_or_else(|e| {
                    lookup = Err(e);
                    true
                });
            if !known {
                seen.entry(exp).or_default().push(*id);
            }
        })?;
        lookup?;
        let batch = CommitBatch {
            partitions: changed
                .iter()
                .map(|(k, p)| StoredPartition { key: k.clone(), state: p.acc.to_bytes(), reports: p.reports })
                .collect(),
            seen: seen
                .iter()
                .enumerate()
                .map(|(i, (exp, ids))| {
                    let mut digest = [0u8; 32];
                    digest[..8].copy_from_slice(&now.as_secs().to_be_bytes());
                    digest[8..16].copy_from_slice(&(i as u64).to_be_bytes());
                    digest[16..24].copy_from_slice(&exp.as_secs().to_be_bytes());
                    digest[24] = 0xff;
                    SeenIds { envelope: digest, expires_at: *exp, ids: ids.clone() }
                })
                .collect(),
            ..CommitBatch::default()
        };
        self.store.commit(&batch)?;
        for s in &batch.seen {
            self.seen.insert(&envelope_key(&s.envelope));
        }
        for id in seen.values().flatten() {
            self.seen.insert(id);
        }
        let mut fresh = Vec::new();
        for (k, p) in changed {
            if !self.partitions.contains_key(&k) {
                fresh.push(k.clone());
            }
            self.partitions.insert(k, p);
        }
        self.note_holdings(&fresh, &[], now)?;
        Ok(())
    }

    /// Empties the replay filter and refills it from the ids the store remembers (on
    /// open, and after a purge forgot some).
    /// Staged and not yet committed ids were put in the filter by `apply`: they are put
    /// back, or their commit would leave them out of it.
    fn rebuild_replay_filter(&mut self) -> Result<(), StoreError> {
        self.seen.clear();
        if self.store.shared() {
            // Never asked on a shared store (`maybe_seen`): nothing to read back.
            return Ok(());
        }
        let seen = &mut self.seen;
        self.store.for_each_seen_id(Timestamp::EPOCH, &mut |id, _| seen.insert(id))?;
        self.store.for_each_seen_envelope(&mut |digest| seen.insert(&envelope_key(digest)))?;
        for s in &self.staged.seen {
            self.seen.insert(&envelope_key(&s.envelope));
            for id in &s.ids {
                self.seen.insert(id);
            }
        }
        Ok(())
    }

    /// Whether the report id (or an envelope's [`envelope_key`]) `probe` was computed
    /// for may be remembered by the store: the replay filter's
    /// answer, unless other processes write to the store ([`Store::shared`]) — then
    /// their ids are not in this process's filter, and only the store knows.
    fn maybe_seen(&self, probe: &Probe) -> bool {
        self.store.shared() || self.seen.maybe_contains_probe(probe)
    }

    /// Whether an envelope id was ingested (committed and not yet forgotten).
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn has_envelope(&self, id: &EnvelopeId) -> Result<bool, StoreError> {
        self.store.envelope_seen(&id.0)
    }

    /// Audience sets in use for `metric`.
    #[must_use]
    pub fn audiences(&self, metric: &MetricId) -> BTreeSet<BTreeSet<RecipientId>> {
        self.partitions.keys().filter(|k| &k.metric == metric).map(|k| k.audience.clone()).collect()
    }
}

//! The consent ledger: who sees what, for how long — bitemporal, indexed, persisted in
//! SQLite (docs/design.md#semantics, docs/design.md#queries).
//!
//! # What it holds
//! - **Consent**: signed receipts and withdrawals, verified on the way in
//!   ([`Ledger::ingest_receipt`], [`Ledger::ingest_withdrawal`]): signature and shape
//!   ([`SignedReceipt::from_bytes`]), the catalogue check
//!   ([`ConsentReceipt::check_against`](confiance::consent::ConsentReceipt::check_against)),
//!   and for a withdrawal the same key and subject as its receipt. Each failure is its own
//!   [`LedgerError`]; a refused input changes nothing.
//! - **Holdings**: pseudonymous records the store holds ([`Ledger::note_record`],
//!   [`Ledger::note_record_purged`]), anonymous partitions ([`Ledger::note_partition`],
//!   [`Ledger::note_partition_purged`]) and disclosures of pseudonymous data
//!   ([`Ledger::disclose`], [`Ledger::note_disclosure`]). These are the aggregator's entry
//!   points: ingest notes records and partitions, purge notes purges, release and
//!   transcryption call [`Ledger::disclose`], which runs `check` and notes the disclosure.
//!
//! # Semantics (docs/design.md#semantics)
//! - *Access window* of R on M of S: the union over S's receipts naming R and M of
//!   `[valid_from, min(valid_until, withdrawn_at))`.
//! - *Hold deadline* of a record collected at t under receipt g:
//!   `t + min(g.hold, metric max hold)` ([`Ledger::record_deadline`]); of a partition,
//!   its bucket end plus its tag's hold (given by the caller).
//! - *R sees M of S at t* iff t is in the access window, or R holds a record of S for M
//!   (collected by t, not purged by t) whose hold deadline is after t.
//! - **Bitemporal**: every fact carries its record time `recorded_at` (when the ledger
//!   learned it) besides its valid time. Every query takes `at` (valid time) and
//!   `as_known_at` (record time; `None` = as known now): a fact recorded after
//!   `as_known_at` is invisible to it. A withdrawal recorded late is thus invisible to a
//!   question asked as known before it arrived, which gets the answer it got then.
//!   Records are valid from `collected_at`, partitions from when they were noted.
//! - `check(R, M, P, S, at)` allows iff a receipt of S for R and P covering M, known at
//!   `as_known_at`, is in force at `at`; `until` is the end of the union of such
//!   receipts' intervals that holds `at` (`None` = until withdrawn). When refused, the
//!   reason is, in order: the catalogue (`NotInCatalogue`, `PurposeNotAllowed`); else the
//!   lapsed receipt with the latest end (`Withdrawn` if its known withdrawal ended it —
//!   `withdrawn_at <= valid_until`, so a withdrawal at the expiry instant counts as the
//!   reason — else `Expired`); else a receipt not yet valid (`NotYetValid`); else
//!   `NoConsent`.
//! - `overdue(now, as_known_at)`: what was overdue at `now` as known at `as_known_at` —
//!   records and partitions in the store at `now` (collected or noted by then, not purged
//!   by then) whose deadline is at or before `now`. A purge after `now` does not hide the
//!   violation at `now`; data purged at its deadline was never overdue.
//! - `subject_access(S, at)`: per (recipient, metric), the access window holding `at`,
//!   the receipts in force at `at`, and the longest effective hold among the receipts of
//!   the window from `at` to its end (so records collected later in the window, under a
//!   receipt that starts later, are covered by "for how long").
//!   The ledger answers for consent; a purpose with another legal basis still needs a
//!   receipt here (the aggregator decides whether to ask).
//!
//! # Index design and costs
//! Catalogue names are interned as `u16` (their positions in the catalogue, at most
//! `MAX_ITEMS` = 10 000 of a kind), subjects as `u32` through one hash map; rows and hold
//! durations are indexed by `u32`, and an input that would need a 2^32-th row or hold is
//! refused with [`LedgerError::Full`] before anything is stored — never saturated.
//! With g grants (receipt × metric), s subjects, r
//! recipients and m metrics:
//! - **Receipts** are kept once (~170 bytes each, shared by their metrics); each
//!   subject has the list of its receipts and records.
//! - **Postings**: per (recipient, metric), the grants as 48-byte entries sorted by
//!   `valid_from`, each with the receipt's valid, withdrawal and record times copied in,
//!   so a stabbing query reads one contiguous list and never touches the receipts.
//! - **Records** per subject and per (recipient, metric) sorted by collection time;
//!   all records and partitions (purged or not) in a `BTreeSet` by deadline; partitions per metric and
//!   per recipient; disclosures sorted by valid time; per recipient, every fact sorted
//!   by record time.
//!
//! Costs: `check` is one hash lookup plus a scan of the subject's receipts (O(k), k the
//! subject's receipts, typically a handful). `subject_access` is O(k·c log(k·c)) with c
//! metrics per receipt, plus the subject's records. `recipient_view(R)` and `who_sees`
//! binary-search each (R, M) posting list for `valid_from ≤ at` and scan that prefix:
//! O(Σ (log n + p)) where p is the grants of that pair started by `at` — never the
//! other recipients' or metrics' grants — then sort the matching subjects to count
//! them once. `history` binary-searches the per-subject or per-recipient lists by record
//! time. `unconsented_disclosures(from, to)` binary-searches disclosures by valid time
//! and runs `check` on each one in range. `overdue(now)` reads the live sets up to
//! `now`: O(log n + answer). Memory is 48 bytes per grant in postings plus ~170 bytes
//! per receipt and ~100 bytes per subject: 119 bytes per grant measured for 10^7 grants
//! of 10 metrics per receipt (see `docs/benchmarks.md`). Bulk ingest and cold load
//! append to the lists and sort once.
//!
//! # Persistence
//! Tables `ledger_*` live in a caller-given [`rusqlite::Connection`] (the aggregator's
//! store shares its own: pass it by value, by reference or in an `Rc`; WAL and
//! synchronous modes are the store's business). Each fact is one `INSERT`, so it is
//! atomic on its own and joins the caller's transaction if one is open;
//! [`Ledger::atomically`] groups several facts — and whatever else the same change writes
//! through [`Ledger::connection`], such as its audit events — into one savepoint. A store is
//! bound to the digest of the catalogue it was created with. [`Ledger::open`] loads
//! compact rows without re-verifying signatures: they were verified at ingest, and the
//! signed bytes stay in the table for an auditor to re-verify.
//!
//! ```
//! use confiance::Timestamp;
//! use confiance::catalogue::Catalogue;
//! use confiance::consent::{ConsentState, DeviceKey, Grant, Scope};
//! use confiance::hazmat::{SeedableRng as _, SeededRng};
//! use confiance::ids::*;
//! use confiance_aggregator::ledger::Ledger;
//!
//! let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
//! let mut rng = SeededRng::seed_from_u64(1);
//! let mut device = ConsentState::new(DeviceKey::generate(&mut rng));
//! let (lab, research) = (RecipientId::new("lab-eu")?, PurposeId::new("research")?);
//! let setpoint = MetricId::new("thermostat.setpoint")?;
//! // A single-device subject: the device's own key is the subject key.
//! let subject = device.subject();
//! let t = Timestamp::from_secs;
//! let receipt = device.give(&catalogue, Grant {
//!     recipient: lab.clone(), purpose: research.clone(),
//!     scope: Scope::metrics([setpoint.clone()]), valid_from: t(1_000), valid_until: None,
//!     hold: "P30D".parse()?,
//! }, t(1_000), &mut rng)?;
//! let withdrawal = device.withdraw(&receipt.id(), t(5_000))?;
//!
//! let mut ledger = Ledger::in_memory(catalogue)?;
//! ledger.ingest_receipt(&receipt.to_bytes(), t(1_000))?;
//! // The device was offline: the withdrawal of t=5000 reaches the ledger at t=9000.
//! ledger.ingest_withdrawal(&withdrawal.to_bytes(), t(9_000))?;
//! assert!(!ledger.check_at(&lab, &setpoint, &research, &subject, t(6_000), None).allowed());
//! // As known at t=7000, the withdrawal was not known yet.
//! assert!(ledger.check_at(&lab, &setpoint, &research, &subject, t(6_000), Some(t(7_000))).allowed());
//! let access = ledger.subject_access(&subject, t(2_000), None);
//! assert_eq!(access.entries.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod answer;
mod certificate;
mod diff;
mod enroll;
mod error;
mod index;
#[cfg(feature = "postgres")]
mod postgres;
mod query;
#[cfg(feature = "postgres")]
pub use postgres::LEDGER_LOCK;
mod scan;
pub use scan::DEFAULT_SCAN_CHUNK;
mod store;
pub(crate) use store::{Cols, FactSource};

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{ConsentError, SignedReceipt, SignedWithdrawal};
use confiance::ids::{DevicePublicKey, MetricId, PurposeId, ReceiptId, RecipientId, SubjectId};
use confiance::retention::Duration;
use rusqlite::Connection;

pub use answer::{
    Access, AccessEntry, CatalogueDiff, Disclosure, DisclosureKind, Fact, HistoryEntry, HoldChange,
    LegalBasisChange, MetricView, Overdue, PartitionInfo, PartitionNote, Party, RecipientView, RecordNote,
    Removal, SubjectAccess, Target, UnconsentedDisclosure, Until, WhoSees,
};
pub use diff::diff;
pub use enroll::{EnrollError, EnrolledDevice, MAX_REASON_BYTES, effective_revocation};
pub use error::LedgerError;
use index::{DisclosureRow, Index, NEVER, Names, PartitionRow, ReceiptRow, RecordRow};
pub(crate) use store::TokenCounts;

/// A `seq` as stored (`i64`).
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A receipt taken on trust, for [`Ledger::ingest_unverified`]: no signature is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnverifiedReceipt {
    /// Its id.
    pub id: ReceiptId,
    /// Its subject.
    pub subject: SubjectId,
    /// The key that signed it (kept for the record; withdrawals are checked against the
    /// subject's keys, not this one).
    pub device_key: [u8; 32],
    /// Its recipient.
    pub recipient: RecipientId,
    /// Its purpose.
    pub purpose: PurposeId,
    /// The metrics it covers (each must be allowed to the recipient for the purpose).
    pub metrics: Vec<MetricId>,
    /// Its start.
    pub valid_from: Timestamp,
    /// Its end, if it ends by itself.
    pub valid_until: Option<Timestamp>,
    /// Its hold.
    pub hold: Duration,
    /// When the ledger learned it.
    pub recorded_at: Timestamp,
}

/// The parties of a receipt, as [`Ledger::receipt_terms`] gives them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiptTerms {
    /// The subject.
    pub subject: SubjectId,
    /// The recipient.
    pub recipient: RecipientId,
    /// The purpose.
    pub purpose: PurposeId,
}

/// Counts of what the ledger holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LedgerStats {
    /// Receipts.
    pub receipts: u64,
    /// Receipts withdrawn.
    pub withdrawals: u64,
    /// Grants: receipt × metric covered.
    pub grants: u64,
    /// Distinct subjects.
    pub subjects: u64,
    /// Records noted.
    pub records: u64,
    /// Partitions noted.
    pub partitions: u64,
    /// Disclosures noted.
    pub disclosures: u64,
}

/// The consent ledger. See the [module documentation](self).
///
/// `C` is how it reaches its SQLite connection: owned ([`Connection`], the default), or
/// shared with the aggregator's store (`&Connection`, `Rc<Connection>`).
pub struct Ledger<C: Borrow<Connection> = Connection> {
    conn: C,
    catalogue: Catalogue,
    names: Names,
    ix: Index,
    /// When set, the facts live in a database several processes share
    /// ([`Ledger::open_postgres`]) and `conn` holds none of them: the index is this
    /// process's cache of it, brought up to date by [`Ledger::refresh`].
    shared: Option<Box<dyn store::SharedLedger>>,
    /// On a lazily loaded ledger ([`Ledger::open_postgres_lazy`]) until
    /// [`Ledger::load_everything`]: the subjects whose facts the index holds (all of
    /// them, each complete up to the index's `next_seq`). `None`: the index holds every
    /// fact.
    lazy: Option<HashSet<SubjectId>>,
    /// Opened by [`Ledger::open_postgres_lazy`]: [`Ledger::bound_subjects`] may take it
    /// back to holding no subject, even after [`Ledger::load_everything`].
    opened_lazy: bool,
    /// On a lazily loaded ledger, the recipients whose subjects are all loaded
    /// ([`Ledger::load_recipient`]) as of the `seq` given: the next load of one looks
    /// only at the facts from there on. Emptied with the subjects.
    recipients: HashMap<RecipientId, u64>,
    /// How many subjects a question across subjects reads at a time ([`Self::scan_chunk`]).
    scan_chunk: usize,
    /// The answers of questions across subjects read at the current change sequence.
    memo: scan::Memo,
}

impl<C: Borrow<Connection>> core::fmt::Debug for Ledger<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ledger")
            .field("catalogue", &self.catalogue)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Ledger<Connection> {
    /// A ledger in a fresh in-memory SQLite database.
    ///
    /// # Errors
    /// [`LedgerError::Store`] if SQLite fails.
    pub fn in_memory(catalogue: Catalogue) -> Result<Self, LedgerError> {
        Self::open(Connection::open_in_memory()?, catalogue)
    }

    /// Opens the ledger in the PostgreSQL database at `url`, which several aggregator
    /// processes share (docs/scaling.md): migrates the schema (a newer one is refused),
    /// binds the database to the catalogue, and loads the facts into memory. The index is
    /// then this process's cache: [`Self::refresh`] (one query) brings it up to date with
    /// the other processes' writes, and every write first catches up under the writers'
    /// lock, so a fact one process recorded is seen by the next decision of any other.
    /// The report-token quotas are counted in the same database. [`Self::connection`] is
    /// an empty in-memory SQLite database: no fact is written there.
    ///
    /// ```no_run
    /// # use confiance::catalogue::Catalogue;
    /// use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// let mut ledger = Ledger::open_postgres("postgres://confiance@127.0.0.1/confiance", catalogue)?;
    /// ledger.refresh()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LedgerError::Shared`] when the database cannot be reached or its schema is newer
    /// than this build's; [`LedgerError::CatalogueChanged`]; [`LedgerError::Corrupt`].
    #[cfg(feature = "postgres")]
    pub fn open_postgres(url: &str, catalogue: Catalogue) -> Result<Self, LedgerError> {
        Self::connect_postgres(url, catalogue, false)
    }

    /// Opens the ledger in the PostgreSQL database at `url` as [`Self::open_postgres`]
    /// does, but loads **no subject's facts**: only the head of the change sequence and
    /// the partitions (O(partitions), none of them a subject's), so it starts in the
    /// same few queries whatever the ledger's size. A subject's facts are read on demand
    /// through PostgreSQL's indexes (`WHERE subject = $1`, a receipt's, a record's or a
    /// device key's subject: one indexed query each) and then kept in the index, which
    /// [`Self::refresh`] keeps up to date for the subjects loaded only.
    ///
    /// Every write loads what it checks first (the subject of a receipt, withdrawal,
    /// delegation, revocation, override, record or disclosure, the receipt a record or
    /// withdrawal names, the subject that delegated the signing key), so a write is
    /// checked exactly as on a fully loaded ledger. The queries take `&self` and answer
    /// from the subjects loaded: before one about a subject call [`Self::load_subject`]
    /// (or [`Self::load_receipt`], [`Self::load_device`]); before a question about a
    /// recipient ([`Self::recipient_view`], its [`Self::history`]) call
    /// [`Self::load_recipient`]. Who sees a metric or a category, what is overdue, the
    /// unconsented disclosures and the catalogue diff are asked with
    /// [`Self::scan_who_sees`], [`Self::scan_overdue`],
    /// [`Self::scan_unconsented_disclosures`] and [`Self::scan_diff`], which read the
    /// subjects concerned a page at a time and keep none. What remains
    /// ([`Self::stats`], [`Self::held_records`], [`Self::consent_facts`]) needs
    /// [`Self::load_everything`], after which the ledger is the fully loaded one
    /// (docs/scaling.md says which question reads what). The loaded subjects are kept
    /// until [`Self::forget_subjects`] or [`Self::bound_subjects`].
    ///
    /// ```no_run
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance::ids::*;
    /// # use confiance::Timestamp;
    /// use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// # let (r, m, p, s) = (RecipientId::new("lab-eu")?, MetricId::new("thermostat.setpoint")?, PurposeId::new("research")?, SubjectId([7; 32]));
    /// let mut ledger = Ledger::open_postgres_lazy("postgres://confiance@127.0.0.1/confiance", catalogue)?;
    /// assert_eq!(ledger.loaded_subjects(), Some(0));
    /// ledger.refresh()?;
    /// ledger.load_subject(&s)?; // one indexed query per table, then cached
    /// let decision = ledger.check_at(&r, &m, &p, &s, Timestamp::from_secs(1_000), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::open_postgres`].
    #[cfg(feature = "postgres")]
    pub fn open_postgres_lazy(url: &str, catalogue: Catalogue) -> Result<Self, LedgerError> {
        Self::connect_postgres(url, catalogue, true)
    }

    #[cfg(feature = "postgres")]
    fn connect_postgres(url: &str, catalogue: Catalogue, lazy: bool) -> Result<Self, LedgerError> {
        let shared = postgres::PgLedger::connect(url)?;
        store::SharedLedger::init(&shared, catalogue.digest().as_bytes())?;
        let names = Names::new(&catalogue);
        let ix = Index::new(&names);
        let mut ledger = Self {
            conn: Connection::open_in_memory()?,
            catalogue,
            names,
            ix,
            shared: Some(Box::new(shared)),
            lazy: lazy.then(HashSet::new),
            opened_lazy: lazy,
            recipients: HashMap::new(),
            scan_chunk: DEFAULT_SCAN_CHUNK,
            memo: scan::Memo::default(),
        };
        ledger.reload()?;
        Ok(ledger)
    }
}

impl<C: Borrow<Connection>> Ledger<C> {
    /// Opens the ledger in `conn`: creates its tables if absent, then loads what they
    /// hold into memory, without re-verifying signatures (they were verified at ingest).
    ///
    /// # Errors
    /// [`LedgerError::CatalogueChanged`] when the tables were written under another
    /// catalogue, [`LedgerError::Corrupt`] for rows that do not read back,
    /// [`LedgerError::Store`] when SQLite fails.
    pub fn open(conn: C, catalogue: Catalogue) -> Result<Self, LedgerError> {
        store::init(&conn, catalogue.digest())?;
        let names = Names::new(&catalogue);
        let ix = store::load(conn.borrow(), &names, i64::MAX)?;
        Ok(Self {
            conn,
            catalogue,
            names,
            ix,
            shared: None,
            lazy: None,
            opened_lazy: false,
            recipients: HashMap::new(),
            scan_chunk: DEFAULT_SCAN_CHUNK,
            memo: scan::Memo::default(),
        })
    }

    /// Where facts are written: the shared database, or the SQLite connection.
    fn sink(&self) -> &dyn store::FactSink {
        match &self.shared {
            Some(s) => s.sink(),
            None => self.conn.borrow(),
        }
    }

    /// Where facts are read back from.
    fn source(&self) -> &dyn store::FactSource {
        match &self.shared {
            Some(s) => s.source(),
            None => self.conn.borrow(),
        }
    }

    /// Where an auditor reads the facts' rows back ([`crate::audit::verify_signed_facts`]):
    /// the shared database, or the SQLite connection.
    pub(crate) fn rows(&self) -> &dyn store::FactSource {
        self.source()
    }

    /// The `seq` the next fact takes as committed in the database now (not as this
    /// index knows it): every fact below it is committed.
    pub(crate) fn stored_head(&self) -> Result<u64, LedgerError> {
        match &self.shared {
            Some(s) => s.head(),
            None => store::stored_head(self.conn.borrow()),
        }
    }

    /// Where the report-token quotas are counted (the aggregator's issuance).
    pub(crate) fn token_counts(&self) -> &dyn store::TokenCounts {
        match &self.shared {
            Some(s) => s.tokens(),
            None => self.conn.borrow(),
        }
    }

    /// Whether the facts live in a database other processes write too
    /// ([`Ledger::open_postgres`]).
    #[must_use]
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Brings the in-memory index up to date with what other processes wrote to a shared
    /// ledger: one query reads the ledger's change sequence (the `seq` its next fact
    /// takes); when it moved, only the facts since the last one this index holds are read
    /// and added. Returns whether anything was added. A ledger of its own (SQLite) is
    /// always up to date: `Ok(false)`, no query.
    ///
    /// The aggregator calls it before each decision that reads consent (ingest of
    /// records, token issuance, subject access); every write does it too, under the
    /// writers' lock, before checking its input.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::ledger::Ledger;
    /// let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// let mut ledger = Ledger::in_memory(catalogue)?;
    /// assert!(!ledger.refresh()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LedgerError::Shared`] when the database fails, [`LedgerError::Corrupt`] for rows
    /// that do not read back; then the index is reloaded whole at the next refresh.
    pub fn refresh(&mut self) -> Result<bool, LedgerError> {
        let Some(shared) = &self.shared else { return Ok(false) };
        if shared.in_transaction() {
            return Ok(false);
        }
        let head = shared.head()?;
        self.catch_up(head)
    }

    /// Adds the facts `[self.ix.next_seq, head)` of the shared ledger to the index.
    fn catch_up(&mut self, head: u64) -> Result<bool, LedgerError> {
        let from = self.ix.next_seq;
        if head <= from {
            return Ok(false);
        }
        let Some(shared) = &self.shared else { return Ok(false) };
        let sel = store::Select::Seqs(to_i64(from), to_i64(head));
        // A lazily loaded ledger keeps the new facts of its loaded subjects only.
        let r = store::load_into(shared.source(), &self.names, &mut self.ix, sel, self.lazy.as_ref(), false);
        if let Err(e) = r {
            // Half of the facts may be in: start again from nothing next time (a lazy
            // ledger: from no subject, at `from`).
            if self.lazy.is_some() {
                // Best effort: when this fails too, the index restarts from `seq` 0.
                let _ = self.reset_lazy(from);
            } else {
                self.ix = Index::new(&self.names);
            }
            return Err(e);
        }
        self.ix.next_seq = self.ix.next_seq.max(head);
        Ok(true)
    }

    /// Runs `f` in one SQLite savepoint on the ledger's connection: every fact `f`
    /// records — and whatever else it writes through [`Self::connection`], such as the
    /// audit events of the same change — commits together or not at all (a crash
    /// anywhere inside leaves none of it). Nested in the caller's transaction if one is
    /// open, else its own durable commit.
    ///
    /// On error the savepoint is rolled back and, if `f` had added facts to the
    /// in-memory index, it is reloaded from the tables ([`Self::reload`]), so memory
    /// never keeps a fact the database lost.
    ///
    /// ```
    /// # use confiance::{Timestamp, catalogue::Catalogue, ids::*};
    /// # use confiance_aggregator::ledger::{Ledger, LedgerError, PartitionNote};
    /// let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// let mut ledger = Ledger::in_memory(catalogue)?;
    /// let note = |id: u8| PartitionNote {
    ///     partition: vec![id],
    ///     metric: MetricId::new("thermostat.setpoint").unwrap(),
    ///     bucket_end: Timestamp::from_secs(86_400),
    ///     audience: vec![RecipientId::new("lab-eu").unwrap()],
    ///     deadline: Timestamp::from_secs(10 * 86_400),
    /// };
    /// let t = Timestamp::from_secs(100);
    /// // The second note is a duplicate: neither is kept.
    /// let r = ledger.atomically(|l| {
    ///     l.note_partition(&note(1), t)?;
    ///     l.note_partition(&note(1), t)
    /// });
    /// assert!(matches!(r, Err(LedgerError::DuplicatePartition(_))));
    /// assert_eq!(ledger.stats().partitions, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `f`'s error; [`LedgerError::Store`] when the savepoint cannot be opened or released
    /// (then nothing of `f` is kept either).
    pub fn atomically<T, E: From<LedgerError>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E> {
        if self.shared.is_some() {
            return self.atomically_shared(f);
        }
        self.connection().execute_batch("SAVEPOINT ledger_atomic").map_err(LedgerError::from)?;
        let seq_before = self.ix.next_seq;
        let out = f(self).and_then(|v| {
            self.connection().execute_batch("RELEASE ledger_atomic").map_err(LedgerError::from)?;
            Ok(v)
        });
        if out.is_err() {
            // Best effort: the savepoint is gone if RELEASE failed after committing nothing.
            let _ = self.connection().execute_batch("ROLLBACK TO ledger_atomic; RELEASE ledger_atomic");
            // Every fact added to the index takes a new `seq`: an unmoved counter means a
            // refusal that changed nothing in memory, and a reload (O(ledger)) is skipped.
            if self.ix.next_seq != seq_before {
                self.reload()?;
            }
        }
        out
    }

    /// [`Self::atomically`] on a shared ledger: the outermost call opens a transaction
    /// holding the writers' lock and first catches up with what other processes wrote,
    /// so `f` checks its input against every fact committed before it; its facts take the
    /// next `seq`s and the new head commits with them.
    fn atomically_shared<T, E: From<LedgerError>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E> {
        let Some(shared) = &self.shared else { return Err(LedgerError::Corrupt("no shared ledger").into()) };
        let outermost = !shared.in_transaction();
        shared.begin()?;
        if outermost {
            let head = shared.head();
            let caught = head.and_then(|head| self.catch_up(head));
            if let Err(e) = caught {
                if let Some(s) = &self.shared {
                    let _ = s.end(false, 0);
                }
                return Err(e.into());
            }
        }
        let seq_before = self.ix.next_seq;
        let out = f(self);
        let next_seq = self.ix.next_seq;
        let ended = match &self.shared {
            Some(s) => s.end(out.is_ok(), next_seq),
            None => Ok(()),
        };
        let out = match (out, ended) {
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(e)) => Err(e.into()),
            (Err(e), _) => Err(e),
        };
        // As on SQLite: memory never keeps a fact the database lost (inside an outer
        // transaction the reload reads what that transaction holds so far). A lazily
        // loaded ledger also forgets the subjects `f` loaded (it may have loaded one
        // inside a savepoint now rolled back): it starts again from no subject, at the
        // `seq` the rollback went back to.
        if out.is_err() && self.lazy.is_some() {
            self.reset_lazy(seq_before)?;
        } else if out.is_err() && self.ix.next_seq != seq_before {
            self.reload()?;
        }
        out
    }

    /// Reads the in-memory index back from the tables (after a rollback, or to pick up
    /// rows another connection wrote).
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn reload(&mut self) -> Result<(), LedgerError> {
        // A shared ledger is read up to its head: the facts of transactions committing
        // meanwhile come with the next refresh, whole (a load reads table by table).
        // (Inside a transaction the writers' lock is held: nothing else commits, and the
        // transaction's own facts are past the head until it commits.)
        let to = match &self.shared {
            Some(s) if !s.in_transaction() => i64::try_from(s.head()?).unwrap_or(i64::MAX),
            _ => i64::MAX,
        };
        if self.lazy.is_some() {
            let next = match u64::try_from(to) {
                Ok(to) if to < u64::try_from(i64::MAX).unwrap_or(u64::MAX) => to,
                // Inside a transaction: no subject's fact is kept, so the next `seq` is
                // the one this index reached.
                _ => self.ix.next_seq,
            };
            return self.reset_lazy(next);
        }
        self.ix = store::load(self.source(), &self.names, to)?;
        if let Ok(to) = u64::try_from(to)
            && to < u64::try_from(i64::MAX).unwrap_or(u64::MAX)
        {
            self.ix.next_seq = self.ix.next_seq.max(to);
        }
        Ok(())
    }

    /// A lazily loaded ledger back to its state at open, as of `next`: no subject
    /// loaded, the partitions with `seq < next` read, `next` the next `seq`. If the
    /// partitions cannot be read, the index restarts from `seq` 0 (the next refresh
    /// reads the partitions again, and no subject's fact) and the error is returned.
    fn reset_lazy(&mut self, next: u64) -> Result<(), LedgerError> {
        self.ix = Index::new(&self.names);
        self.recipients.clear();
        if let Some(set) = &mut self.lazy {
            set.clear();
        }
        let Some(shared) = &self.shared else { return Ok(()) };
        let sel = store::Select::Partitions(to_i64(next));
        let r = store::load_into(shared.source(), &self.names, &mut self.ix, sel, None, false);
        if let Err(e) = r {
            self.ix = Index::new(&self.names);
            return Err(e);
        }
        self.ix.next_seq = next;
        Ok(())
    }

    /// Whether this ledger loads subjects on demand ([`Ledger::open_postgres_lazy`]) and
    /// has not loaded everything yet.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// let ledger = Ledger::in_memory(catalogue)?; // SQLite: every fact in memory
    /// assert!(!ledger.is_lazy());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub const fn is_lazy(&self) -> bool {
        self.lazy.is_some()
    }

    /// How many subjects a lazily loaded ledger holds; `None` when it holds every fact
    /// (SQLite, [`Ledger::open_postgres`], or after [`Self::load_everything`]).
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// let ledger = Ledger::in_memory(catalogue)?;
    /// assert_eq!(ledger.loaded_subjects(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn loaded_subjects(&self) -> Option<usize> {
        self.lazy.as_ref().map(HashSet::len)
    }

    /// On a lazily loaded ledger, reads `subject`'s facts (those the index's change
    /// sequence has reached: later ones come with [`Self::refresh`]) through
    /// PostgreSQL's indexes and keeps them; a no-op when they are loaded already, and on
    /// any other ledger. Afterwards every query about `subject` answers as on a fully
    /// loaded ledger.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// # use confiance::ids::SubjectId;
    /// let mut ledger = Ledger::in_memory(catalogue)?;
    /// ledger.load_subject(&SubjectId([7; 32]))?; // holds every subject already: a no-op
    /// assert_eq!(ledger.loaded_subjects(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LedgerError::Shared`], [`LedgerError::Corrupt`]; then no subject is loaded any
    /// more (the index starts again as at open).
    pub fn load_subject(&mut self, subject: &SubjectId) -> Result<(), LedgerError> {
        let Some(set) = &self.lazy else { return Ok(()) };
        if set.contains(subject) {
            return Ok(());
        }
        let Some(shared) = &self.shared else { return Ok(()) };
        let next = self.ix.next_seq;
        let sel = store::Select::Subject(subject.as_bytes().as_slice(), to_i64(next));
        if let Err(e) = store::load_into(shared.source(), &self.names, &mut self.ix, sel, None, false) {
            let _ = self.reset_lazy(next);
            return Err(e);
        }
        if let Some(set) = &mut self.lazy {
            set.insert(*subject);
        }
        Ok(())
    }

    /// On a lazily loaded ledger, loads every subject with a receipt or a disclosure for
    /// `recipient` (one indexed query to find them — among the facts since the last
    /// such load of that recipient, if its subjects are still loaded — then one query per
    /// table for all of those not loaded yet): what [`Self::recipient_view`] and the history of a
    /// recipient read, which then answer exactly as a fully loaded ledger. A no-op on any
    /// other ledger.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// let mut ledger = Ledger::in_memory(catalogue)?;
    /// ledger.load_recipient(&"calora".parse()?)?; // holds every subject already: a no-op
    /// assert_eq!(ledger.loaded_subjects(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::load_subject`].
    pub fn load_recipient(&mut self, recipient: &RecipientId) -> Result<(), LedgerError> {
        let (Some(set), Some(shared)) = (&self.lazy, &self.shared) else { return Ok(()) };
        let next = self.ix.next_seq;
        let from = self.recipients.get(recipient).copied().unwrap_or(0);
        let found = shared.source().subjects_of_recipient(recipient.as_str(), to_i64(from), to_i64(next))?;
        let mut fresh: Vec<SubjectId> = Vec::with_capacity(found.len());
        for b in &found {
            let s = SubjectId(b.as_slice().try_into().map_err(|_| LedgerError::Corrupt("subject"))?);
            if !set.contains(&s) {
                fresh.push(s);
            }
        }
        fresh.sort_unstable();
        fresh.dedup();
        if fresh.is_empty() {
            self.recipients.insert(recipient.clone(), next);
            return Ok(());
        }
        let keys: Vec<&[u8]> = fresh.iter().map(|s| s.as_bytes().as_slice()).collect();
        let sel = store::Select::Subjects(&keys, to_i64(next));
        if let Err(e) = store::load_into(shared.source(), &self.names, &mut self.ix, sel, None, false) {
            let _ = self.reset_lazy(next);
            return Err(e);
        }
        if let Some(set) = &mut self.lazy {
            set.extend(fresh);
        }
        self.recipients.insert(recipient.clone(), next);
        Ok(())
    }

    /// [`Self::load_subject`] for the subject `lookup` finds for `key` (one indexed
    /// query), if any.
    fn load_by(&mut self, lookup: store::Lookup, key: &[u8]) -> Result<(), LedgerError> {
        if self.lazy.is_none() {
            return Ok(());
        }
        let Some(shared) = &self.shared else { return Ok(()) };
        let found = shared.source().subject_of(lookup, key, to_i64(self.ix.next_seq))?;
        match found {
            Some(b) => {
                let s = b.as_slice().try_into().map_err(|_| LedgerError::Corrupt("subject"))?;
                self.load_subject(&SubjectId(s))
            }
            None => Ok(()),
        }
    }

    /// On a lazily loaded ledger, loads the subject of receipt `receipt` (one indexed
    /// query, none when it is loaded already): then [`Self::receipt_terms`],
    /// [`Self::record_deadline`] and [`Self::receipt_recorded_at`] know it.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// # use confiance::ids::ReceiptId;
    /// let mut ledger = Ledger::in_memory(catalogue)?;
    /// ledger.load_receipt(&ReceiptId([1; 32]))?; // not lazy: a no-op, no query
    /// assert_eq!(ledger.receipt_terms(&ReceiptId([1; 32])), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::load_subject`].
    pub fn load_receipt(&mut self, receipt: &ReceiptId) -> Result<(), LedgerError> {
        if self.lazy.is_none() || self.ix.receipt_ix.contains_key(receipt) {
            return Ok(());
        }
        self.load_by(store::Lookup::Receipt, receipt.as_bytes())
    }

    /// On a lazily loaded ledger, loads the subject that delegated `device` (one
    /// indexed query), the single-device subject whose key it is and the key's device
    /// certificates: then
    /// [`Self::enrolled_device`] and the `device_subject` of
    /// [`ConsentCheck`](crate::decision::ConsentCheck) answer as on a fully loaded ledger.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// # use confiance::{Timestamp, consent::DeviceKey};
    /// # use confiance_aggregator::ledger::EnrollError;
    /// let mut ledger = Ledger::in_memory(catalogue)?;
    /// let device = DeviceKey::from_bytes(&[2; 32]).public_key();
    /// ledger.load_device(&device)?; // not lazy: a no-op
    /// assert_eq!(ledger.enrolled_device(&device, Timestamp::from_secs(5)), Err(EnrollError::NotEnrolled));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::load_subject`].
    pub fn load_device(&mut self, device: &DevicePublicKey) -> Result<(), LedgerError> {
        self.load_certificates(device)?;
        self.load_delegator(device)?;
        self.load_subject(&SubjectId::of_key(&device.as_subject_key()))
    }

    /// On a lazily loaded ledger, loads the subject of record `record` (one indexed
    /// query, none when it is loaded already): then [`Self::knows_record`] knows it.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// let mut ledger = Ledger::in_memory(catalogue)?;
    /// ledger.load_record(&[3; 16])?; // not lazy: a no-op
    /// assert!(!ledger.knows_record(&[3; 16]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::load_subject`].
    pub fn load_record(&mut self, record: &[u8; 16]) -> Result<(), LedgerError> {
        if self.lazy.is_none() || self.ix.record_ix.contains_key(record) {
            return Ok(());
        }
        self.load_by(store::Lookup::Record, record)
    }

    /// Loads the subject that delegated `device`, if any (one indexed query, none when
    /// the index knows the device already).
    fn load_delegator(&mut self, device: &DevicePublicKey) -> Result<(), LedgerError> {
        if self.lazy.is_none() || self.ix.devices.contains_key(device) {
            return Ok(());
        }
        self.load_by(store::Lookup::Device, device.as_bytes())
    }

    /// On a lazily loaded ledger, drops every subject loaded (the index goes back to what
    /// it held at open, as of its change sequence): a host bounds its memory by calling it
    /// when [`Self::loaded_subjects`] passes a limit of its choosing, between two
    /// decisions. Returns whether it did: not inside [`Self::atomically`] (a decision in
    /// progress holds what it loaded), nor on a ledger that is not lazy.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// let mut ledger = Ledger::in_memory(catalogue)?;
    /// assert!(!ledger.forget_subjects()?); // not lazy: nothing to forget
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::reload`] when the partitions cannot be read back.
    pub fn forget_subjects(&mut self) -> Result<bool, LedgerError> {
        if self.lazy.is_none() || self.shared.as_ref().is_some_and(|s| s.in_transaction()) {
            return Ok(false);
        }
        self.reset_lazy(self.ix.next_seq)?;
        Ok(true)
    }

    /// On a ledger opened by [`Ledger::open_postgres_lazy`], forgets every subject (as
    /// [`Self::forget_subjects`]) when it holds more than `max` — counting every subject
    /// after [`Self::load_everything`], which it undoes: the ledger is lazy again. What
    /// bounds the memory of a long-running process: a host calls it between two
    /// decisions (`Aggregator` does, before each, with
    /// `AggregatorConfig::max_loaded_subjects`). Returns whether it forgot; never inside
    /// [`Self::atomically`], nor on a ledger not opened lazily.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// let mut ledger = Ledger::in_memory(catalogue)?;
    /// assert!(!ledger.bound_subjects(0)?); // not opened lazily: it holds every fact
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::forget_subjects`].
    pub fn bound_subjects(&mut self, max: usize) -> Result<bool, LedgerError> {
        let held = self.lazy.as_ref().map_or(self.ix.subjects.len(), HashSet::len);
        if !self.opened_lazy || held <= max || self.shared.as_ref().is_some_and(|s| s.in_transaction()) {
            return Ok(false);
        }
        self.lazy.get_or_insert_with(HashSet::new);
        self.reset_lazy(self.ix.next_seq)?;
        Ok(true)
    }

    /// On a lazily loaded ledger, loads every fact (as [`Ledger::open_postgres`] does at
    /// open) and stops being lazy: what a question across subjects needs. A no-op on
    /// any other ledger.
    ///
    /// ```
    /// # use confiance::catalogue::Catalogue;
    /// # use confiance_aggregator::ledger::Ledger;
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?;
    /// let mut ledger = Ledger::in_memory(catalogue)?;
    /// ledger.load_everything()?;
    /// assert!(!ledger.is_lazy() && ledger.loaded_subjects().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Self::reload`].
    pub fn load_everything(&mut self) -> Result<(), LedgerError> {
        if self.lazy.is_none() {
            return Ok(());
        }
        let next = self.ix.next_seq;
        self.ix = store::load(self.source(), &self.names, to_i64(next))?;
        self.ix.next_seq = self.ix.next_seq.max(next);
        self.lazy = None;
        Ok(())
    }

    /// Whether the holdings index has partition `partition` (held or purged).
    #[must_use]
    pub fn knows_partition(&self, partition: &[u8]) -> bool {
        self.ix.partition_ix.contains_key(partition)
    }

    /// Whether the holdings index has record `record` (held or purged).
    #[must_use]
    pub fn knows_record(&self, record: &[u8; 16]) -> bool {
        self.ix.record_ix.contains_key(record)
    }

    /// The partitions the holdings index says are held (not purged), with their hold
    /// deadlines, sorted by id.
    #[must_use]
    pub fn held_partitions(&self) -> Vec<(Vec<u8>, Timestamp)> {
        let mut out: Vec<(Vec<u8>, Timestamp)> =
            self.ix.partitions.iter().filter(|p| !p.purged()).map(|p| (p.id.to_vec(), p.deadline)).collect();
        out.sort_unstable();
        out
    }

    /// The records the holdings index says are held (not purged), with their hold
    /// deadlines, sorted by id.
    #[must_use]
    pub fn held_records(&self) -> Vec<([u8; 16], Timestamp)> {
        let mut out: Vec<([u8; 16], Timestamp)> =
            self.ix.records.iter().filter(|r| !r.purged()).map(|r| (r.id, r.deadline)).collect();
        out.sort_unstable();
        out
    }

    /// When the ledger learned receipt `receipt`; `None` for an unknown receipt.
    #[must_use]
    pub fn receipt_recorded_at(&self, receipt: &ReceiptId) -> Option<Timestamp> {
        let ri = *self.ix.receipt_ix.get(receipt)?;
        self.ix.receipts.get(ri as usize).map(|r| r.recorded_at)
    }

    /// The catalogue receipts are checked against.
    #[must_use]
    pub const fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The SQLite connection.
    #[must_use]
    pub fn connection(&self) -> &Connection {
        self.conn.borrow()
    }

    /// Counts of what the ledger holds.
    #[must_use]
    pub fn stats(&self) -> LedgerStats {
        let n = |x: usize| u64::try_from(x).unwrap_or(u64::MAX);
        LedgerStats {
            receipts: n(self.ix.receipts.len()),
            withdrawals: n(self.ix.receipts.iter().filter(|r| r.withdrawn()).count()),
            grants: n(self.ix.postings.iter().map(Vec::len).sum()),
            subjects: n(self.ix.subject_ids.len()),
            records: n(self.ix.records.len()),
            partitions: n(self.ix.partitions.len()),
            disclosures: n(self.ix.disclosures.len()),
        }
    }

    /// Verifies and records a signed receipt (its wire bytes) learned at `recorded_at`:
    /// its signature, its subject id (the hash of its subject key), the catalogue, and
    /// that its signer speaks for the subject when it signed (the subject key, or a
    /// device key the subject delegated, in force and not revoked: [`EnrollError`]).
    ///
    /// # Errors
    /// [`LedgerError::Consent`] for bad bytes, a bad signature, a subject id that is not
    /// its key's, or a receipt the catalogue refuses; [`LedgerError::Enroll`] for a
    /// signer that does not speak for the subject; [`LedgerError::DuplicateReceipt`];
    /// [`LedgerError::Store`].
    pub fn ingest_receipt(&mut self, bytes: &[u8], recorded_at: Timestamp) -> Result<ReceiptId, LedgerError> {
        let signed = SignedReceipt::from_bytes(bytes)?;
        self.ingest_signed_receipt(&signed, recorded_at)
    }

    /// Records an already decoded (hence signature-verified) receipt learned at `recorded_at`.
    ///
    /// # Errors
    /// As [`Self::ingest_receipt`].
    pub fn ingest_signed_receipt(
        &mut self,
        signed: &SignedReceipt,
        recorded_at: Timestamp,
    ) -> Result<ReceiptId, LedgerError> {
        let r = signed.receipt();
        r.check_against(&self.catalogue)?;
        // The signer, if a device, is checked against the subject's delegations: loaded
        // with the subject (a device some other subject delegated is refused either way).
        self.load_subject(&r.subject)?;
        self.load_receipt(&signed.id())?;
        self.authorize(&r.subject_key, &r.subject, &r.signer, r.issued_at, recorded_at)?;
        let id = signed.id();
        let metrics: Vec<MetricId> =
            r.scope.metrics_in(&self.catalogue, &r.recipient, &r.purpose).cloned().collect();
        let input = UnverifiedReceipt {
            id,
            subject: r.subject,
            device_key: r.signer.0,
            recipient: r.recipient.clone(),
            purpose: r.purpose.clone(),
            metrics,
            valid_from: r.valid_from,
            valid_until: r.valid_until,
            hold: r.hold.clone(),
            recorded_at,
        };
        let row = self.receipt_row(&input, self.ix.next_seq, 0)?;
        store::insert_receipt(
            self.sink(),
            &self.names,
            &row,
            &input.subject,
            &input.hold,
            Some(&signed.to_bytes()),
        )?;
        self.index_receipt(row, &input);
        Ok(id)
    }

    /// Checks an unverified receipt against the catalogue and the ledger and makes its row
    /// (subject and hold not yet interned); `pending` receipts of the same batch come
    /// before it, each of which may bring a new hold.
    fn receipt_row(
        &self,
        r: &UnverifiedReceipt,
        seq: u64,
        pending: usize,
    ) -> Result<ReceiptRow, LedgerError> {
        if self.ix.receipt_ix.contains_key(&r.id) {
            return Err(LedgerError::DuplicateReceipt(r.id));
        }
        if !self.ix.has_room_for_hold(&r.hold, pending) {
            return Err(LedgerError::Full("distinct holds"));
        }
        Index::room("receipts", self.ix.receipts.len(), pending)?;
        Index::room("subjects", self.ix.subject_ids.len(), pending)?;
        if r.valid_until.is_some_and(|u| u <= r.valid_from) {
            return Err(ConsentError::InvertedValidity.into());
        }
        let recipient = self
            .names
            .recipient(&r.recipient)
            .ok_or_else(|| ConsentError::UnknownRecipient(r.recipient.clone()))?;
        let purpose =
            self.names.purpose(&r.purpose).ok_or_else(|| ConsentError::UnknownPurpose(r.purpose.clone()))?;
        if r.metrics.is_empty() {
            return Err(ConsentError::EmptyScope.into());
        }
        let mut metrics = Vec::with_capacity(r.metrics.len());
        for m in &r.metrics {
            let mi = self.names.metric(m).ok_or_else(|| ConsentError::UnknownMetric(m.clone()))?;
            if !self.names.allows(recipient, mi, purpose) {
                return Err(ConsentError::ScopeTooWide(m.clone()).into());
            }
            metrics.push(mi);
        }
        metrics.sort_unstable();
        metrics.dedup();
        Ok(ReceiptRow {
            id: r.id,
            device_key: r.device_key,
            seq,
            wseq: u64::MAX,
            subject: u32::MAX,
            recipient,
            purpose,
            hold: u32::MAX,
            metrics: metrics.into(),
            valid_from: r.valid_from,
            valid_until: r.valid_until.unwrap_or(NEVER),
            recorded_at: r.recorded_at,
            withdrawn_at: NEVER,
            withdrawal_recorded_at: NEVER,
        })
    }

    fn index_receipt(&mut self, mut row: ReceiptRow, r: &UnverifiedReceipt) {
        row.subject = self.ix.intern_subject(r.subject);
        // `receipt_row` checked there is room for this hold: interning does not fail.
        if let Ok(h) = self.ix.intern_hold(&r.hold) {
            row.hold = h;
        }
        self.ix.add_receipt(&self.names, row);
    }

    /// **Hazard**: records receipts *without verifying any signature*, in one SQLite
    /// savepoint. For bulk loads of receipts verified elsewhere (a migration, a
    /// benchmark that cannot afford to sign 10^6 receipts). Everything else is checked as
    /// for [`Self::ingest_receipt`] (catalogue, duplicates, also within the batch); the
    /// rows carry no signed bytes. All or nothing.
    ///
    /// # Errors
    /// The first error of any receipt; then nothing was recorded.
    pub fn ingest_unverified(
        &mut self,
        receipts: impl IntoIterator<Item = UnverifiedReceipt>,
    ) -> Result<usize, LedgerError> {
        let receipts: Vec<UnverifiedReceipt> = receipts.into_iter().collect();
        // Checked, written and indexed in one transaction: on a shared ledger the checks
        // run after catching up with the other processes, under the writers' lock.
        self.atomically(|l| {
            for r in &receipts {
                l.load_subject(&r.subject)?;
                l.load_receipt(&r.id)?;
            }
            let mut rows = Vec::with_capacity(receipts.len());
            let mut batch_ids = std::collections::HashSet::with_capacity(receipts.len());
            for (i, r) in receipts.iter().enumerate() {
                if !batch_ids.insert(r.id) {
                    return Err(LedgerError::DuplicateReceipt(r.id));
                }
                rows.push(l.receipt_row(r, l.ix.next_seq + u64::try_from(i).unwrap_or(u64::MAX), i)?);
            }
            rows.iter().zip(&receipts).try_for_each(|(row, r)| {
                store::insert_receipt(l.sink(), &l.names, row, &r.subject, &r.hold, None)
            })?;
            let n = rows.len();
            l.ix.deferred = true;
            for (row, r) in rows.into_iter().zip(&receipts) {
                l.index_receipt(row, r);
            }
            l.ix.finish();
            l.ix.deferred = false;
            Ok(n)
        })
    }

    /// Verifies and records a signed withdrawal (its wire bytes) learned at `recorded_at`.
    ///
    /// # Errors
    /// [`LedgerError::Consent`] for bad bytes, a bad signature or a subject id that is
    /// not its key's; [`LedgerError::WithdrawalOfUnknownConsent`], [`LedgerError::SubjectMismatch`],
    /// [`LedgerError::Enroll`] for a signer that does not speak for the subject (any key
    /// that does may withdraw any of the subject's receipts), [`LedgerError::BeforeValidity`],
    /// [`LedgerError::AlreadyWithdrawn`], [`LedgerError::RecordedBeforeReceipt`];
    /// [`LedgerError::Store`].
    pub fn ingest_withdrawal(
        &mut self,
        bytes: &[u8],
        recorded_at: Timestamp,
    ) -> Result<ReceiptId, LedgerError> {
        let signed = SignedWithdrawal::from_bytes(bytes)?;
        self.ingest_signed_withdrawal(&signed, recorded_at)
    }

    /// Records an already decoded (hence signature-verified) withdrawal.
    ///
    /// # Errors
    /// As [`Self::ingest_withdrawal`].
    pub fn ingest_signed_withdrawal(
        &mut self,
        signed: &SignedWithdrawal,
        recorded_at: Timestamp,
    ) -> Result<ReceiptId, LedgerError> {
        let w = signed.withdrawal();
        self.load_receipt(&w.receipt)?;
        self.load_subject(&w.subject)?;
        let unknown = || LedgerError::WithdrawalOfUnknownConsent(w.receipt);
        let ri = *self.ix.receipt_ix.get(&w.receipt).ok_or_else(unknown)?;
        let row = self.ix.receipts.get(ri as usize).ok_or_else(unknown)?;
        if self.ix.subject_id(row.subject) != Some(w.subject) {
            return Err(LedgerError::SubjectMismatch);
        }
        self.authorize(&w.subject_key, &w.subject, &w.signer, w.issued_at, recorded_at)?;
        if row.withdrawn() {
            return Err(LedgerError::AlreadyWithdrawn);
        }
        if w.at < row.valid_from {
            return Err(LedgerError::BeforeValidity);
        }
        if recorded_at < row.recorded_at {
            return Err(LedgerError::RecordedBeforeReceipt);
        }
        let seq = self.ix.next_seq;
        store::insert_withdrawal(self.sink(), seq, &w.receipt, w.at, recorded_at, Some(&signed.to_bytes()))?;
        self.ix.apply_withdrawal(&self.names, ri, w.at, recorded_at, seq);
        Ok(w.receipt)
    }

    /// Who a receipt is about, for whom and what for — what ingest needs to check a
    /// pseudonymous record's tag against its receipt. `None` for an unknown receipt.
    #[must_use]
    pub fn receipt_terms(&self, receipt: &ReceiptId) -> Option<ReceiptTerms> {
        let ri = *self.ix.receipt_ix.get(receipt)?;
        let row = self.ix.receipts.get(ri as usize)?;
        Some(ReceiptTerms {
            subject: self.ix.subject_id(row.subject)?,
            recipient: self.names.recipient_id(row.recipient)?.clone(),
            purpose: self.names.purpose_id(row.purpose)?.clone(),
        })
    }

    /// The hold deadline of a record of `metric` collected at `collected_at` under
    /// `receipt`: `collected_at + min(receipt hold, metric max hold)` (an event-bound
    /// hold counts as never ending here: the event is not the ledger's to know).
    ///
    /// # Errors
    /// [`LedgerError::UnknownReceipt`], [`LedgerError::UnknownMetric`].
    pub fn record_deadline(
        &self,
        receipt: &ReceiptId,
        metric: &MetricId,
        collected_at: Timestamp,
    ) -> Result<Timestamp, LedgerError> {
        let ri = *self.ix.receipt_ix.get(receipt).ok_or(LedgerError::UnknownReceipt(*receipt))?;
        let row = self.ix.receipts.get(ri as usize).ok_or(LedgerError::UnknownReceipt(*receipt))?;
        let m = self.names.metric(metric).ok_or_else(|| LedgerError::UnknownMetric(metric.clone()))?;
        Ok(self.deadline_of(row.hold, m, collected_at))
    }

    fn deadline_of(&self, hold: u32, metric: u16, start: Timestamp) -> Timestamp {
        let h = self.ix.holds.get(hold as usize).map_or(NEVER, |h| h.deadline_from(start).at);
        let max =
            self.names.metric_max_hold.get(usize::from(metric)).map_or(NEVER, |d| d.deadline_from(start).at);
        h.min(max)
    }

    /// Notes a pseudonymous record the store now holds, learned at `recorded_at`.
    ///
    /// # Errors
    /// [`LedgerError::DuplicateRecord`], [`LedgerError::UnknownReceipt`],
    /// [`LedgerError::UnknownMetric`], [`LedgerError::RecordMismatch`] (subject or
    /// recipient not the receipt's, or a metric it does not cover),
    /// [`LedgerError::RecordedBeforeReceipt`], [`LedgerError::Store`].
    pub fn note_record(&mut self, note: &RecordNote, recorded_at: Timestamp) -> Result<(), LedgerError> {
        self.load_record(&note.record)?;
        self.load_receipt(&note.receipt)?;
        if self.ix.record_ix.contains_key(&note.record) {
            return Err(LedgerError::DuplicateRecord(note.record));
        }
        Index::room("records", self.ix.records.len(), 0)?;
        let ri = *self.ix.receipt_ix.get(&note.receipt).ok_or(LedgerError::UnknownReceipt(note.receipt))?;
        let receipt = self.ix.receipts.get(ri as usize).ok_or(LedgerError::UnknownReceipt(note.receipt))?;
        let metric =
            self.names.metric(&note.metric).ok_or_else(|| LedgerError::UnknownMetric(note.metric.clone()))?;
        if self.ix.subject_id(receipt.subject) != Some(note.subject)
            || self.names.recipient_id(receipt.recipient) != Some(&note.recipient)
            || receipt.metrics.binary_search(&metric).is_err()
        {
            return Err(LedgerError::RecordMismatch);
        }
        if recorded_at < receipt.recorded_at {
            return Err(LedgerError::RecordedBeforeReceipt);
        }
        let row = RecordRow {
            id: note.record,
            seq: self.ix.next_seq,
            pseq: u64::MAX,
            subject: receipt.subject,
            recipient: receipt.recipient,
            metric,
            receipt: ri,
            collected_at: note.collected_at,
            deadline: note.deadline,
            recorded_at,
            purged_at: NEVER,
            purge_recorded_at: NEVER,
        };
        store::insert_record(self.sink(), &self.names, &self.ix, &row)?;
        self.ix.add_record(&self.names, row);
        Ok(())
    }

    /// Notes that record `record` was purged at `at`, learned at `recorded_at`.
    ///
    /// # Errors
    /// [`LedgerError::UnknownRecord`], [`LedgerError::AlreadyPurged`], [`LedgerError::Store`].
    pub fn note_record_purged(
        &mut self,
        record: &[u8; 16],
        at: Timestamp,
        recorded_at: Timestamp,
    ) -> Result<(), LedgerError> {
        self.load_record(record)?;
        let i = *self.ix.record_ix.get(record).ok_or(LedgerError::UnknownRecord(*record))?;
        if self.ix.records.get(i as usize).is_none_or(index::RecordRow::purged) {
            return Err(LedgerError::AlreadyPurged);
        }
        let seq = self.ix.next_seq;
        store::insert_purge(self.sink(), false, seq, record, at, recorded_at)?;
        self.ix.apply_record_purge(i, at, recorded_at, seq);
        Ok(())
    }

    /// Notes an anonymous partition the store now holds, learned at `recorded_at`.
    ///
    /// # Errors
    /// [`LedgerError::DuplicatePartition`], [`LedgerError::UnknownMetric`],
    /// [`LedgerError::UnknownRecipient`], [`LedgerError::EmptyAudience`], [`LedgerError::Store`].
    pub fn note_partition(
        &mut self,
        note: &PartitionNote,
        recorded_at: Timestamp,
    ) -> Result<(), LedgerError> {
        Index::room("partitions", self.ix.partitions.len(), 0)?;
        if self.ix.partition_ix.contains_key(note.partition.as_slice()) {
            return Err(LedgerError::DuplicatePartition(note.partition.clone()));
        }
        let metric =
            self.names.metric(&note.metric).ok_or_else(|| LedgerError::UnknownMetric(note.metric.clone()))?;
        let mut audience = Vec::with_capacity(note.audience.len());
        for r in &note.audience {
            audience.push(self.names.recipient(r).ok_or_else(|| LedgerError::UnknownRecipient(r.clone()))?);
        }
        audience.sort_unstable();
        audience.dedup();
        if audience.is_empty() {
            return Err(LedgerError::EmptyAudience);
        }
        let row = PartitionRow {
            id: note.partition.as_slice().into(),
            seq: self.ix.next_seq,
            pseq: u64::MAX,
            metric,
            bucket_end: note.bucket_end,
            audience: audience.into(),
            deadline: note.deadline,
            recorded_at,
            purged_at: NEVER,
            purge_recorded_at: NEVER,
        };
        store::insert_partition(self.sink(), &self.names, &row)?;
        self.ix.add_partition(row);
        Ok(())
    }

    /// Notes that partition `partition` was purged at `at`, learned at `recorded_at`.
    ///
    /// # Errors
    /// [`LedgerError::UnknownPartition`], [`LedgerError::AlreadyPurged`], [`LedgerError::Store`].
    pub fn note_partition_purged(
        &mut self,
        partition: &[u8],
        at: Timestamp,
        recorded_at: Timestamp,
    ) -> Result<(), LedgerError> {
        let i = *self
            .ix
            .partition_ix
            .get(partition)
            .ok_or_else(|| LedgerError::UnknownPartition(partition.to_vec()))?;
        if self.ix.partitions.get(i as usize).is_none_or(index::PartitionRow::purged) {
            return Err(LedgerError::AlreadyPurged);
        }
        let seq = self.ix.next_seq;
        store::insert_purge(self.sink(), true, seq, partition, at, recorded_at)?;
        self.ix.apply_partition_purge(i, at, recorded_at, seq);
        Ok(())
    }

    /// Notes a disclosure that happened (allowed or not), learned at `recorded_at`.
    /// [`Self::unconsented_disclosures`] checks it later against the consent of its time.
    ///
    /// # Errors
    /// [`LedgerError::UnknownRecipient`], [`LedgerError::UnknownMetric`],
    /// [`LedgerError::UnknownPurpose`], [`LedgerError::Store`].
    pub fn note_disclosure(&mut self, d: &Disclosure, recorded_at: Timestamp) -> Result<(), LedgerError> {
        self.load_subject(&d.subject)?;
        Index::room("disclosures", self.ix.disclosures.len(), 0)?;
        Index::room("subjects", self.ix.subject_ids.len(), 0)?;
        let recipient = self
            .names
            .recipient(&d.recipient)
            .ok_or_else(|| LedgerError::UnknownRecipient(d.recipient.clone()))?;
        let metric =
            self.names.metric(&d.metric).ok_or_else(|| LedgerError::UnknownMetric(d.metric.clone()))?;
        let purpose =
            self.names.purpose(&d.purpose).ok_or_else(|| LedgerError::UnknownPurpose(d.purpose.clone()))?;
        let mut row = DisclosureRow {
            seq: self.ix.next_seq,
            kind: d.kind,
            recipient,
            metric,
            purpose,
            subject: u32::MAX,
            at: d.at,
            record: d.record,
            recorded_at,
        };
        store::insert_disclosure(self.sink(), &self.names, &row, &d.subject)?;
        row.subject = self.ix.intern_subject(d.subject);
        self.ix.add_disclosure(row);
        Ok(())
    }

    /// The aggregator's gate for releases and transcryptions: runs `check` for the
    /// disclosure as known now and, only if allowed, notes it (at `recorded_at`).
    /// Returns the decision either way; a refusal notes nothing.
    ///
    /// # Errors
    /// As [`Self::note_disclosure`].
    pub fn disclose(
        &mut self,
        d: &Disclosure,
        recorded_at: Timestamp,
    ) -> Result<crate::decision::Decision, LedgerError> {
        self.load_subject(&d.subject)?;
        let decision = self.check_at(&d.recipient, &d.metric, &d.purpose, &d.subject, d.at, None);
        if decision.allowed() {
            self.note_disclosure(d, recorded_at)?;
        }
        Ok(decision)
    }
}

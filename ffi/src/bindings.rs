//! The recorder for Kotlin, Swift and Python, through [UniFFI](https://mozilla.github.io/uniffi-rs)
//! (the approach of Mozilla's Glean SDK): the same library as the C ABI, another face.
//!
//! `uniffi-bindgen generate --library libconfiance_ffi.so --language python|kotlin|swift`
//! writes the foreign sources (namespace `confiance`; see docs/sdk.md). What they see:
//!
//! - [`Recorder`], an object: made from the catalogue's canonical bytes, the device's
//!   secrets, the aggregator's key config, a [`LimitsPreset`] and the host's
//!   [`HostStorage`] (a callback interface the host implements);
//! - [`ConsentRequest`], a record whose instants are the language's own timestamp type
//!   (Python `datetime`, Kotlin `java.time.Instant`, Swift `Date`), so they cannot be
//!   swapped with a count or a duration;
//! - [`ConfianceError`], one exception per C failure status (`ConfianceError.HoldTooLong`, …);
//! - report tokens: [`Recorder::tokens_to_fetch`] lists [`TokenFetch`]es (a scope's
//!   canonical bytes and its `GET /v1/token-keys` query), [`Recorder::token_request`] and
//!   [`Recorder::take_token_response`] make and take `POST /v1/tokens`, and
//!   [`Recorder::enrollment`] is the device's delegation for `POST /v1/delegations`;
//! - the owner's app: [`delegate_device`] and, for a lost device, [`revoke_device`]
//!   (`POST /v1/revocations`); [`subject_id_of_key`] and [`Recorder::subject_id`], the
//!   subject of `GET /v1/subjects/{subject}/access`.
//!
//! Nothing unwinds into the host: bad input is a [`ConfianceError`] and changes nothing,
//! and UniFFI's scaffolding turns a panic (a bug) into the language's internal error.
//! Calls on one recorder are serialised by a lock; the storage callbacks run under it
//! and must not call back into the recorder.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{self, ConsentError, DeviceKey, Scope, SignedReceipt};
use confiance::envelope::KeyConfig;
use confiance::ids::{DevicePublicKey, MetricId, PurposeId, ReceiptId, RecipientId};
use confiance::pseudonym::DeviceSecret;
use confiance::recorder::{self, Cause, Limits, RecordError, RecorderParts, StorageError};
use confiance::rng::OsRng;

use crate::enrolment;
use crate::tokens::{self, TokenInputError};

/// Why a call failed: one variant per C failure status (`CONFIANCE_STATUS_…`), plus the
/// one failure only this face has. (`CONFIANCE_STATUS_UNKNOWN_ENVELOPE` is no failure:
/// here [`Recorder::acknowledge`] returns `false`.) The call changed nothing (except where a method says
/// otherwise). In the foreign languages each variant is an exception class
/// (`ConfianceError.HoldTooLong`), whose message says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Error)]
#[non_exhaustive]
pub enum ConfianceError {
    /// An id is not a valid id, a hold is not a hold, a secret is not 32 bytes, an
    /// instant is before 1970 (`BAD_ARGUMENT`).
    BadArgument {
        /// What was wrong, in words.
        detail: String,
    },
    /// The catalogue bytes are not a valid canonical catalogue (`BAD_CATALOGUE`).
    BadCatalogue {
        /// What was wrong, in words.
        detail: String,
    },
    /// A key config is malformed (`BAD_KEY_CONFIG`).
    BadKeyConfig {
        /// What was wrong, in words.
        detail: String,
    },
    /// The consent request was refused by the catalogue: unknown id, scope too wide,
    /// inverted validity, … (`CONSENT_REFUSED`).
    ConsentRefused {
        /// What was wrong, in words.
        detail: String,
    },
    /// The consent request's hold is longer than a covered metric's maximum
    /// (`HOLD_TOO_LONG`).
    HoldTooLong {
        /// What was wrong, in words.
        detail: String,
    },
    /// No receipt with that id, or it was already withdrawn (`UNKNOWN_RECEIPT`).
    UnknownReceipt {
        /// What was wrong, in words.
        detail: String,
    },
    /// The bytes are not the canonical bytes of a report-token scope of the recorder's
    /// catalogue, as [`TokenFetch::scope`] gives them (`BAD_TOKEN_SCOPE`).
    BadTokenScope {
        /// What was wrong, in words.
        detail: String,
    },
    /// A report-token scope key is neither 32 bytes nor 64 hex digits of a valid
    /// ristretto255 element (`BAD_TOKEN_KEY`).
    BadTokenKey {
        /// What was wrong, in words.
        detail: String,
    },
    /// The bytes are not a token response, or answer no token request waiting here
    /// (another key or count, a proof that does not verify); no token was added
    /// (`BAD_TOKEN_RESPONSE`).
    BadTokenResponse {
        /// What was wrong, in words.
        detail: String,
    },
    /// The bytes are not a signed device delegation (bad encoding or signature), or it
    /// delegates another device key (`BAD_DELEGATION`).
    BadDelegation {
        /// What was wrong, in words.
        detail: String,
    },
    /// Strict mode: no such metric in the catalogue (`UNKNOWN_METRIC`).
    UnknownMetric {
        /// What was wrong, in words.
        detail: String,
    },
    /// Strict mode: the metric is on the other track, statistic vs service record
    /// (`WRONG_TRACK`).
    WrongTrack {
        /// What was wrong, in words.
        detail: String,
    },
    /// Strict mode: a value of the wrong kind for the metric (`WRONG_VALUE`).
    WrongValue {
        /// What was wrong, in words.
        detail: String,
    },
    /// Strict mode: a category index past the last label (`LABEL_OUT_OF_RANGE`).
    LabelOutOfRange {
        /// What was wrong, in words.
        detail: String,
    },
    /// Strict mode: a number outside the metric's range (`VALUE_OUT_OF_RANGE`).
    ValueOutOfRange {
        /// What was wrong, in words.
        detail: String,
    },
    /// Strict mode: the catalogue does not allow the metric for this purpose
    /// (`PURPOSE_NOT_ALLOWED`).
    PurposeNotAllowed {
        /// What was wrong, in words.
        detail: String,
    },
    /// Strict mode: no consent in force (`NO_CONSENT`).
    NoConsent {
        /// What was wrong, in words.
        detail: String,
    },
    /// Strict mode: the metric's ε budget for the period is spent (`BUDGET_EXHAUSTED`).
    BudgetExhausted {
        /// What was wrong, in words.
        detail: String,
    },
    /// Strict mode: the ε budget's charge could not be saved (`BUDGET_UNSAVED`).
    BudgetUnsaved {
        /// What was wrong, in words.
        detail: String,
    },
    /// Strict mode: another reason the value could not be recorded (`NOT_RECORDED`).
    NotRecorded {
        /// What was wrong, in words.
        detail: String,
    },
    /// Raised by a [`HostStorage`] callback (or an exception the callback did not
    /// declare). The recorder counts it (`storage_failed`) and goes on.
    StorageFailed {
        /// What was wrong, in words.
        detail: String,
    },
}

impl core::fmt::Display for ConfianceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (Self::BadArgument { detail: m }
        | Self::BadCatalogue { detail: m }
        | Self::BadKeyConfig { detail: m }
        | Self::ConsentRefused { detail: m }
        | Self::HoldTooLong { detail: m }
        | Self::UnknownReceipt { detail: m }
        | Self::BadTokenScope { detail: m }
        | Self::BadTokenKey { detail: m }
        | Self::BadTokenResponse { detail: m }
        | Self::BadDelegation { detail: m }
        | Self::UnknownMetric { detail: m }
        | Self::WrongTrack { detail: m }
        | Self::WrongValue { detail: m }
        | Self::LabelOutOfRange { detail: m }
        | Self::ValueOutOfRange { detail: m }
        | Self::PurposeNotAllowed { detail: m }
        | Self::NoConsent { detail: m }
        | Self::BudgetExhausted { detail: m }
        | Self::BudgetUnsaved { detail: m }
        | Self::NotRecorded { detail: m }
        | Self::StorageFailed { detail: m }) = self;
        f.write_str(m)
    }
}

impl std::error::Error for ConfianceError {}

impl From<uniffi::UnexpectedUniFFICallbackError> for ConfianceError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::StorageFailed { detail: e.reason }
    }
}

impl From<&RecordError> for ConfianceError {
    fn from(e: &RecordError) -> Self {
        let m = e.to_string();
        match e.cause() {
            Cause::UnknownMetric => Self::UnknownMetric { detail: m },
            Cause::WrongTrack => Self::WrongTrack { detail: m },
            Cause::WrongValue => Self::WrongValue { detail: m },
            Cause::LabelOutOfRange => Self::LabelOutOfRange { detail: m },
            Cause::OutOfRange => Self::ValueOutOfRange { detail: m },
            Cause::PurposeNotAllowed => Self::PurposeNotAllowed { detail: m },
            Cause::NoConsent(_) => Self::NoConsent { detail: m },
            Cause::BudgetExhausted => Self::BudgetExhausted { detail: m },
            Cause::BudgetUnsaved => Self::BudgetUnsaved { detail: m },
            _ => Self::NotRecorded { detail: m },
        }
    }
}

impl From<TokenInputError> for ConfianceError {
    fn from(e: TokenInputError) -> Self {
        let detail = e.detail().to_owned();
        match e {
            TokenInputError::Scope => Self::BadTokenScope { detail },
            TokenInputError::Key => Self::BadTokenKey { detail },
            TokenInputError::Count => Self::BadArgument { detail },
            TokenInputError::Response => Self::BadTokenResponse { detail },
        }
    }
}

impl From<&ConsentError> for ConfianceError {
    fn from(e: &ConsentError) -> Self {
        let m = e.to_string();
        match e {
            ConsentError::HoldTooLong { .. } => Self::HoldTooLong { detail: m },
            ConsentError::UnknownReceipt | ConsentError::AlreadyWithdrawn => {
                Self::UnknownReceipt { detail: m }
            }
            _ => Self::ConsentRefused { detail: m },
        }
    }
}

/// The host's persistent storage for the recorder's state (queue, outbox, budgets,
/// receipts): a file, a keystore, shared preferences. Implemented in the host's
/// language; an error (or any exception) is counted as `storage_failed`, never raised
/// from the recorder's own calls.
#[uniffi::export(callback_interface)]
pub trait HostStorage: Send + Sync {
    /// The bytes last saved; `None` when nothing was saved yet.
    ///
    /// # Errors
    /// [`ConfianceError::StorageFailed`] when the storage cannot be read.
    fn load(&self) -> Result<Option<Vec<u8>>, ConfianceError>;

    /// Replaces the saved bytes.
    ///
    /// # Errors
    /// [`ConfianceError::StorageFailed`] when the bytes cannot be written.
    fn save(&self, bytes: Vec<u8>) -> Result<(), ConfianceError>;
}

struct Host(Box<dyn HostStorage>);

impl recorder::Storage for Host {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        self.0.load().map_err(|_| StorageError)
    }

    fn save(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.0.save(bytes.to_vec()).map_err(|_| StorageError)
    }
}

/// How much the recorder may keep ([`Limits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum LimitsPreset {
    /// [`Limits::microcontroller`]: 64 reports or 8 KiB queued, 8 KiB of envelopes.
    Microcontroller,
    /// [`Limits::phone`]: 4096 reports or 256 KiB queued, 1 MiB of envelopes.
    Phone,
}

/// A value to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Value {
    /// For a boolean metric.
    Bool {
        /// The boolean.
        value: bool,
    },
    /// For a categorical metric: the label's index in the catalogue.
    Category {
        /// The label's index.
        index: u32,
    },
    /// For a numeric metric or a count.
    Int {
        /// The integer.
        value: i64,
    },
}

impl From<Value> for recorder::Value {
    fn from(v: Value) -> Self {
        match v {
            Value::Bool { value } => Self::Bool(value),
            Value::Category { index } => Self::Category(index),
            Value::Int { value } => Self::Int(value),
        }
    }
}

/// The terms of a consent, by name (the twin of [`consent::ConsentRequest`]).
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ConsentRequest {
    /// The recipient id (`calora`).
    pub recipient: String,
    /// The purpose id (`product-improvement`).
    pub purpose: String,
    /// The metric ids the consent covers.
    pub metrics: Vec<String>,
    /// How long data may be held: an ISO 8601 period (`P90D`), `until:<RFC 3339>` or
    /// `event:<name>`.
    pub hold: String,
    /// In force from; `None`: from the instant it is given.
    #[uniffi(default = None)]
    pub valid_from: Option<SystemTime>,
    /// Ends by itself at; `None`: never (until withdrawn).
    #[uniffi(default = None)]
    pub valid_until: Option<SystemTime>,
}

/// What went wrong so far, counted (the twin of [`recorder::Counters`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct Counters {
    /// Reports queued.
    pub recorded: u32,
    /// Unknown metric or wrong track.
    pub unknown_metric: u32,
    /// Value of the wrong kind or out of range.
    pub invalid_value: u32,
    /// No consent in force (or the purpose is not allowed).
    pub no_consent: u32,
    /// The ε budget was spent.
    pub budget_exhausted: u32,
    /// Queued reports dropped because the queue was full.
    pub dropped_queue_full: u32,
    /// Envelopes dropped because the outbox was full.
    pub dropped_outbox_full: u32,
    /// Flushes with no valid key config.
    pub no_key: u32,
    /// Envelopes that could not be sealed.
    pub seal_failed: u32,
    /// Storage loads or saves that failed.
    pub storage_failed: u32,
    /// Envelopes sealed.
    pub envelopes_sealed: u32,
    /// Reports refused for good by the aggregator.
    pub refused: u32,
    /// Reports refused for now, to be sent again.
    pub retried: u32,
    /// Budgeted reports not made because the charge could not be kept.
    pub budget_unsaved: u32,
    /// Reports left queued at a flush for want of a report token of their scope (counted
    /// once per report and flush).
    pub waiting_for_token: u32,
    /// Token requests that could not be built, and token responses refused.
    pub token_failed: u32,
    /// Queued reports dropped at a flush because their hold had already ended (counted
    /// since the recorder was made or loaded; not saved).
    pub expired: u32,
}

/// How many calls made no report of one metric for one cause (the recorder's
/// per-metric error counters).
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ErrorCount {
    /// The metric id the calls named.
    pub metric: String,
    /// The cause: the name of the [`ConfianceError`] variant a strict recorder would have
    /// raised (`UnknownMetric`, `LabelOutOfRange`, …).
    pub cause: String,
    /// How many calls.
    pub count: u32,
}

/// Report tokens to ask for now for one scope ([`Recorder::tokens_to_fetch`]).
///
/// `GET /v1/token-keys?{key_query}` gives the scope's `public_key`;
/// [`Recorder::token_request`] with `scope`, that key and `count` makes the body of
/// `POST /v1/tokens`, whose answer goes to [`Recorder::take_token_response`].
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct TokenFetch {
    /// The scope's canonical bytes (docs/wire-format.md §10.1): what the other token
    /// methods take; pass them back as they are.
    pub scope: Vec<u8>,
    /// The scope's recipients (sorted).
    pub recipients: Vec<String>,
    /// The scope's purpose.
    pub purpose: String,
    /// The scope's token period (⌊UTC seconds / the catalogue's `token_period`⌋).
    pub period: u64,
    /// How many tokens to ask for (1 to 1024).
    pub count: u32,
    /// The query string of `GET /v1/token-keys` for the scope:
    /// `recipients=calora&purpose=product-improvement&period=20454`.
    pub key_query: String,
}

/// The device recorder. Recording never raises unless strict mode is on.
///
/// The foreign languages call it as Rust does here (Python: `confiance.Recorder(…)`,
/// `Value.CATEGORY(index=2)`, `datetime` instants):
///
/// ```
/// # use std::time::{Duration, SystemTime};
/// # use confiance::catalogue::Catalogue;
/// use confiance_ffi::bindings::*;
///
/// struct NoStorage;
/// impl HostStorage for NoStorage {
///     fn load(&self) -> Result<Option<Vec<u8>>, ConfianceError> { Ok(None) }
///     fn save(&self, _: Vec<u8>) -> Result<(), ConfianceError> { Ok(()) }
/// }
///
/// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?.canonical_bytes();
/// let thermostat = Recorder::new(
///     catalogue, random_secret(), random_secret(), "calora".into(),
///     None, // no key config yet: reports wait in the queue
///     LimitsPreset::Microcontroller, Box::new(NoStorage),
/// )?;
/// thermostat.set_strict(true);
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
/// let request = |hold: &str| ConsentRequest {
///     recipient: "calora".into(), purpose: "product-improvement".into(),
///     metrics: vec!["thermostat.mode".into()], hold: hold.into(),
///     valid_from: None, valid_until: None,
/// };
/// assert!(matches!(thermostat.give_consent(request("P5Y"), now), Err(ConfianceError::HoldTooLong { .. })));
/// let receipt = thermostat.give_consent(request("P90D"), now)?; // POST /v1/receipts
/// let typo = thermostat.record("thermostat.mood".into(), "product-improvement".into(), Value::Category { index: 2 }, now);
/// assert!(matches!(typo, Err(ConfianceError::UnknownMetric { .. })));
/// let withdrawal = thermostat.withdraw_consent(receipt_id(receipt)?, now)?; // POST /v1/withdrawals
/// # assert!(!withdrawal.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(uniffi::Object)]
pub struct Recorder {
    inner: Mutex<recorder::Recorder<OsRng, Host>>,
    /// The device key (a copy of the recorder's), which signs token requests and the
    /// device's enrolment.
    device: DeviceKey,
    /// The subject's delegation of this device, when it is not its own subject.
    delegation: Option<Vec<u8>>,
}

fn secs(t: SystemTime) -> Result<Timestamp, ConfianceError> {
    t.duration_since(UNIX_EPOCH)
        .map(|d| Timestamp::from_secs(d.as_secs()))
        .map_err(|_| ConfianceError::BadArgument { detail: "an instant before 1970".into() })
}

fn id<T: core::str::FromStr>(what: &str, s: &str) -> Result<T, ConfianceError> {
    s.parse().map_err(|_| ConfianceError::BadArgument { detail: format!("`{s}` is not a valid {what}") })
}

fn secret(what: &str, b: &[u8]) -> Result<[u8; 32], ConfianceError> {
    b.try_into().map_err(|_| ConfianceError::BadArgument {
        detail: format!("the {what} is {} bytes, not 32", b.len()),
    })
}

fn key_config(b: &[u8]) -> Result<KeyConfig, ConfianceError> {
    KeyConfig::from_bytes(b).map_err(|e| ConfianceError::BadKeyConfig { detail: e.to_string() })
}

#[uniffi::export]
impl Recorder {
    /// A recorder for one device, its own subject.
    ///
    /// - `catalogue`: the catalogue's canonical bytes (`confiance catalogue compile`, or
    ///   `canonical` of `GET /v1/catalogue`);
    /// - `device_key`, `pseudonym_secret`: 32 bytes each ([`random_secret`]), kept by the
    ///   host in its secure storage and given again at every start;
    /// - `controller`: the brand's recipient id;
    /// - `key_config`: the aggregator's key config (`config` of `GET /v1/keys`); `None`
    ///   until the device has one ([`Recorder::set_key_config`]);
    /// - `storage`: where the state is kept between runs (loaded here).
    ///
    /// # Errors
    /// `BadCatalogue`, `BadKeyConfig`, `BadArgument` (a secret not 32 bytes, a bad id).
    #[uniffi::constructor]
    pub fn new(
        catalogue: Vec<u8>,
        device_key: Vec<u8>,
        pseudonym_secret: Vec<u8>,
        controller: String,
        key_config: Option<Vec<u8>>,
        limits: LimitsPreset,
        storage: Box<dyn HostStorage>,
    ) -> Result<Arc<Self>, ConfianceError> {
        Self::make(catalogue, device_key, pseudonym_secret, None, controller, key_config, limits, storage)
    }

    /// A recorder for a device that a subject delegated: the owner's phone app holds the
    /// subject key, signed `delegation` ([`delegate_device`], or the app's own library),
    /// posted it to `POST /v1/delegations` and handed it to the device. The device's
    /// receipts then name that subject, and its token requests are answered while the
    /// delegation is in force. The other arguments are those of [`Recorder::new`]; give
    /// the same delegation at every start.
    ///
    /// # Errors
    /// As [`Recorder::new`], and `BadDelegation` when the bytes are not a signed
    /// delegation or delegate another device key.
    #[uniffi::constructor]
    #[allow(clippy::too_many_arguments, reason = "the constructor of Recorder::new and the delegation")]
    pub fn delegated(
        catalogue: Vec<u8>,
        device_key: Vec<u8>,
        pseudonym_secret: Vec<u8>,
        delegation: Vec<u8>,
        controller: String,
        key_config: Option<Vec<u8>>,
        limits: LimitsPreset,
        storage: Box<dyn HostStorage>,
    ) -> Result<Arc<Self>, ConfianceError> {
        Self::make(
            catalogue,
            device_key,
            pseudonym_secret,
            Some(delegation),
            controller,
            key_config,
            limits,
            storage,
        )
    }

    /// Strict mode (development and tests): `record` and `record_service` raise the
    /// reason a value was not recorded instead of counting it.
    pub fn set_strict(&self, strict: bool) {
        self.lock().set_strict(strict);
    }

    /// Replaces the aggregator key configs with one (a new `GET /v1/keys`).
    ///
    /// # Errors
    /// `BadKeyConfig`.
    pub fn set_key_config(&self, key_config: Vec<u8>) -> Result<(), ConfianceError> {
        let config = self::key_config(&key_config)?;
        self.lock().set_key_configs(vec![config]);
        Ok(())
    }

    /// Gives consent on the terms of `request` at `now`; returns the signed receipt, to
    /// send to `POST /v1/receipts`.
    ///
    /// # Errors
    /// `BadArgument` (an id or hold that does not parse), `HoldTooLong`,
    /// `ConsentRefused`.
    pub fn give_consent(&self, request: ConsentRequest, now: SystemTime) -> Result<Vec<u8>, ConfianceError> {
        let metrics =
            request.metrics.iter().map(|m| id::<MetricId>("metric id", m)).collect::<Result<Vec<_>, _>>()?;
        let mut terms = consent::ConsentRequest::new(
            id::<RecipientId>("recipient id", &request.recipient)?,
            id::<PurposeId>("purpose id", &request.purpose)?,
            Scope::metrics(metrics),
            id("hold", &request.hold)?,
        );
        if let Some(t) = request.valid_from {
            terms = terms.valid_from(secs(t)?);
        }
        if let Some(t) = request.valid_until {
            terms = terms.valid_until(secs(t)?);
        }
        let now = secs(now)?;
        self.lock().give_consent(terms, now).map_err(|e| ConfianceError::from(&e))
    }

    /// Withdraws the receipt whose id is `receipt_id` ([`receipt_id`]) from `at`; returns
    /// the signed withdrawal, to send to `POST /v1/withdrawals`.
    ///
    /// # Errors
    /// `BadArgument` (not 32 bytes), `UnknownReceipt`.
    pub fn withdraw_consent(&self, receipt_id: Vec<u8>, at: SystemTime) -> Result<Vec<u8>, ConfianceError> {
        let receipt = ReceiptId(secret("receipt id", &receipt_id)?);
        let at = secs(at)?;
        self.lock().withdraw_consent(&receipt, at).map_err(|e| ConfianceError::from(&e))
    }

    /// Records an anonymous statistic of `metric` for `purpose` at `now` (noised here,
    /// queued until the next flush).
    ///
    /// # Errors
    /// `BadArgument` for an id that is not an id; in strict mode only, the reason the
    /// value was not recorded (`UnknownMetric` … `NotRecorded`). Otherwise it is counted.
    pub fn record(
        &self,
        metric: String,
        purpose: String,
        value: Value,
        now: SystemTime,
    ) -> Result<(), ConfianceError> {
        let (metric, purpose): (MetricId, PurposeId) =
            (id("metric id", &metric)?, id("purpose id", &purpose)?);
        let now = secs(now)?;
        self.lock().record(&metric, &purpose, value.into(), now).map_err(|e| ConfianceError::from(&e))
    }

    /// Records a pseudonymous service record of `metric` at `now`, under each receipt in
    /// force that covers it.
    ///
    /// # Errors
    /// As [`Recorder::record`].
    pub fn record_service(
        &self,
        metric: String,
        value: Value,
        now: SystemTime,
    ) -> Result<(), ConfianceError> {
        let metric: MetricId = id("metric id", &metric)?;
        let now = secs(now)?;
        self.lock().record_service(&metric, value.into(), now).map_err(|e| ConfianceError::from(&e))
    }

    /// Seals the queue at `now` and returns every envelope not yet acknowledged, oldest
    /// first: send each to `POST /v1/envelopes` and, on 201, [`Recorder::acknowledge`] it.
    ///
    /// # Errors
    /// `BadArgument` for an instant before 1970.
    pub fn flush(&self, now: SystemTime) -> Result<Vec<Vec<u8>>, ConfianceError> {
        let now = secs(now)?;
        Ok(self.lock().flush(now))
    }

    /// The aggregator accepted `envelope`: it leaves the outbox. Returns `true` when it
    /// did, `false` when the outbox did not hold it — acknowledged already (an
    /// acknowledgement can arrive twice after a retried upload) or never sealed here:
    /// not a failure, nothing to do, nothing changed (the C call's
    /// `CONFIANCE_STATUS_UNKNOWN_ENVELOPE`).
    pub fn acknowledge(&self, envelope: Vec<u8>) -> bool {
        let mut r = self.lock();
        if !r.is_pending(&envelope) {
            return false;
        }
        r.acknowledge(&envelope);
        true
    }

    /// How many sealed envelopes wait for an acknowledgement.
    pub fn pending_envelopes(&self) -> u64 {
        u64::try_from(self.lock().pending_envelopes()).unwrap_or(u64::MAX)
    }

    /// The recorder's counters.
    pub fn counters(&self) -> Counters {
        let c = self.lock().counters();
        Counters {
            recorded: c.recorded,
            unknown_metric: c.unknown_metric,
            invalid_value: c.invalid_value,
            no_consent: c.no_consent,
            budget_exhausted: c.budget_exhausted,
            dropped_queue_full: c.dropped_queue_full,
            dropped_outbox_full: c.dropped_outbox_full,
            no_key: c.no_key,
            seal_failed: c.seal_failed,
            storage_failed: c.storage_failed,
            envelopes_sealed: c.envelopes_sealed,
            refused: c.refused,
            retried: c.retried,
            budget_unsaved: c.budget_unsaved,
            waiting_for_token: c.waiting_for_token,
            token_failed: c.token_failed,
            expired: c.expired,
        }
    }

    /// The per-metric, per-cause error counters (what a strict recorder would have raised).
    pub fn errors(&self) -> Vec<ErrorCount> {
        self.lock()
            .errors()
            .map(|(m, c, count)| ErrorCount {
                metric: m.as_str().to_owned(),
                cause: cause_name(c).to_owned(),
                count,
            })
            .collect()
    }

    /// Whether envelopes must carry report tokens: `true` when the aggregator was started
    /// with `--token-secret` (its `GET /v1/token-keys` answers 200). While required, a
    /// statistic with no token of its scope waits in the queue at each flush, counted in
    /// `waiting_for_token`, until a token arrives. Kept in the saved state.
    pub fn require_tokens(&self, required: bool) {
        self.lock().require_tokens(required);
    }

    /// The report tokens to ask for at `now`, for a host that flushes every
    /// `flush_every_secs` seconds: what the coming flushes will spend, less what is held
    /// or already asked for (the Rust `Recorder::tokens_to_fetch`). Empty when tokens are
    /// not required or nothing is queued or held yet. A scope asked for is not listed
    /// again until its request is answered or forgotten.
    ///
    /// ```
    /// # use std::time::{Duration, SystemTime};
    /// # use confiance::catalogue::Catalogue;
    /// use confiance_ffi::bindings::*;
    /// # struct Kept;
    /// # impl HostStorage for Kept {
    /// #     fn load(&self) -> Result<Option<Vec<u8>>, ConfianceError> { Ok(None) }
    /// #     fn save(&self, _: Vec<u8>) -> Result<(), ConfianceError> { Ok(()) }
    /// # }
    /// # let catalogue = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))?.canonical_bytes();
    /// let device = Recorder::new(
    ///     catalogue, random_secret(), random_secret(), "calora".into(), None, LimitsPreset::Phone, Box::new(Kept),
    /// )?;
    /// device.require_tokens(true); // GET /v1/token-keys answers 200
    /// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000); // 08:00 UTC
    /// device.give_consent(ConsentRequest {
    ///     recipient: "calora".into(), purpose: "product-improvement".into(),
    ///     metrics: vec!["thermostat.mode".into()], hold: "P90D".into(), valid_from: None, valid_until: None,
    /// }, now)?;
    /// device.record("thermostat.mode".into(), "product-improvement".into(), Value::Category { index: 2 }, now)?;
    /// // A flush every 6 hours: today's 16 hours left need 4 tokens (the flush after midnight included).
    /// let plan = device.tokens_to_fetch(now, 6 * 3600)?;
    /// assert_eq!((plan.len(), plan[0].count, plan[0].period), (1, 4, 20_833));
    /// assert_eq!(plan[0].key_query, "recipients=calora&purpose=product-improvement&period=20833");
    /// // GET /v1/token-keys?{key_query}, then token_request(plan[0].scope, public_key, 4) …
    /// assert_eq!(device.tokens_held(plan[0].scope.clone())?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `BadArgument` for an instant before 1970.
    pub fn tokens_to_fetch(
        &self,
        now: SystemTime,
        flush_every_secs: u64,
    ) -> Result<Vec<TokenFetch>, ConfianceError> {
        let now = secs(now)?;
        Ok(self
            .lock()
            .tokens_to_fetch(now, flush_every_secs)
            .into_iter()
            .map(|(scope, count)| TokenFetch {
                scope: scope.to_bytes(),
                recipients: scope.recipients.iter().map(|r| r.as_str().to_owned()).collect(),
                purpose: scope.purpose.as_str().to_owned(),
                period: scope.period.0,
                count: u32::try_from(count).unwrap_or(u32::MAX),
                key_query: tokens::key_query(&scope),
            })
            .collect())
    }

    /// A request for `count` (1 to 1024) tokens of `scope` ([`TokenFetch::scope`]),
    /// blinded against the scope key `public_key` (the `public_key` of
    /// `GET /v1/token-keys`: its 32 bytes, or its 64 hex digits as served) and signed by
    /// the device key: the body of `POST /v1/tokens`. The recorder keeps the request's
    /// secrets until [`Recorder::take_token_response`] takes the answer (at most 16 wait,
    /// the oldest forgotten first). The device must be enrolled: its receipt posted for a
    /// purpose that needs consent, or its [`Recorder::enrollment`] posted.
    ///
    /// # Errors
    /// `BadTokenScope`, `BadTokenKey`, `BadArgument` (a count of 0 or above 1024); nothing
    /// changes.
    pub fn token_request(
        &self,
        scope: Vec<u8>,
        public_key: Vec<u8>,
        count: u32,
    ) -> Result<Vec<u8>, ConfianceError> {
        let mut r = self.lock();
        let scope = tokens::scope(r.catalogue(), &scope)?;
        let key = tokens::key(&public_key)?;
        let count = usize::try_from(count).map_err(|_| TokenInputError::Count)?;
        Ok(tokens::request(&mut *r, &self.device, scope, key, count)?)
    }

    /// Takes the issuer's answer (the body of a 200 from `POST /v1/tokens`): checks its
    /// proof against the key the request was made with, unblinds and keeps the tokens;
    /// returns how many.
    ///
    /// # Errors
    /// `BadTokenResponse` for bytes that are not a response or answer no request waiting
    /// here; no token is added (one that decodes but does not verify is counted in
    /// `token_failed`).
    pub fn take_token_response(&self, response: Vec<u8>) -> Result<u32, ConfianceError> {
        let n = tokens::take_response(&mut *self.lock(), &response)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Forgets the token requests waiting for `scope` (the issuer refused them — a 4xx
    /// from `POST /v1/tokens` —, or the host gave up on them): [`Recorder::tokens_to_fetch`]
    /// lists that scope again.
    ///
    /// # Errors
    /// `BadTokenScope`.
    pub fn forget_token_requests(&self, scope: Vec<u8>) -> Result<(), ConfianceError> {
        let mut r = self.lock();
        let scope = tokens::scope(r.catalogue(), &scope)?;
        r.forget_token_requests(&scope);
        Ok(())
    }

    /// How many report tokens are held for `scope`.
    ///
    /// # Errors
    /// `BadTokenScope`.
    pub fn tokens_held(&self, scope: Vec<u8>) -> Result<u32, ConfianceError> {
        let r = self.lock();
        let scope = tokens::scope(r.catalogue(), &scope)?;
        Ok(u32::try_from(r.tokens_held(&scope)).unwrap_or(u32::MAX))
    }

    /// The device's enrolment, for `POST /v1/delegations`. For a recorder that is its own
    /// subject ([`Recorder::new`]: its device key is the subject key), the delegation of
    /// its key by itself, valid from `valid_from` until `valid_until` (`None`: until
    /// revoked), signed at `now`; for a delegated one ([`Recorder::delegated`]), the
    /// delegation it was made with (the instants are not used; a 409
    /// `duplicate_delegation` means the app posted it already). Once the ledger has it,
    /// the device is enrolled: the issuer answers its token requests (for a purpose
    /// resting on consent, once its receipt is posted too) and subject access lists it.
    /// The same arguments give the same bytes. Enrol once (at first start, then again
    /// only when `201` never came back): each call with another `now` signs another
    /// delegation, and the ledger keeps each one posted (subject access lists them all);
    /// re-posting the same bytes is answered 409 `duplicate_delegation` and changes nothing.
    ///
    /// # Errors
    /// `ConsentRefused` when `valid_until` is not after `valid_from`; `BadArgument` for an
    /// instant before 1970.
    pub fn enrollment(
        &self,
        valid_from: SystemTime,
        valid_until: Option<SystemTime>,
        now: SystemTime,
    ) -> Result<Vec<u8>, ConfianceError> {
        if let Some(delegation) = &self.delegation {
            return Ok(delegation.clone());
        }
        let (from, until, now) = (secs(valid_from)?, valid_until.map(secs).transpose()?, secs(now)?);
        enrolment::self_delegation(&self.device, from, until, now).map_err(|e| ConfianceError::from(&e))
    }

    /// The id of the subject this device speaks for, as 64 lowercase hex digits: the
    /// `{subject}` of an auditor's `GET /v1/subjects/{subject}/access` (whose `devices`
    /// list this device once it is enrolled) and the subject its receipts name. For a
    /// recorder that is its own subject, the hash of its own public key; for a delegated
    /// one, its owner's ([`subject_id_of_key`] of the owner's key).
    pub fn subject_id(&self) -> String {
        self.lock().subject().to_string()
    }

    /// Saves the state now (the recorder also saves after each change).
    pub fn persist(&self) {
        self.lock().persist();
    }
}

impl Recorder {
    #[allow(clippy::too_many_arguments, reason = "the arguments of Recorder::delegated")]
    fn make(
        catalogue: Vec<u8>,
        device_key: Vec<u8>,
        pseudonym_secret: Vec<u8>,
        delegation: Option<Vec<u8>>,
        controller: String,
        key_config: Option<Vec<u8>>,
        limits: LimitsPreset,
        storage: Box<dyn HostStorage>,
    ) -> Result<Arc<Self>, ConfianceError> {
        let catalogue = Catalogue::from_canonical_bytes(&catalogue)
            .map_err(|e| ConfianceError::BadCatalogue { detail: e.to_string() })?;
        let key_configs = key_config.as_deref().map(self::key_config).transpose()?.into_iter().collect();
        let device_key = secret("device key", &device_key)?;
        let consent = enrolment::consent_state(&device_key, delegation.as_deref())
            .map_err(|e| ConfianceError::BadDelegation { detail: e.to_string() })?;
        let parts = RecorderParts {
            catalogue,
            consent,
            pseudonyms: DeviceSecret::from_bytes(secret("pseudonym secret", &pseudonym_secret)?),
            controller: id("recipient id", &controller)?,
            key_configs,
            rng: OsRng::new(),
        };
        let limits = match limits {
            LimitsPreset::Microcontroller => Limits::microcontroller(),
            LimitsPreset::Phone => Limits::phone(),
        };
        Ok(Arc::new(Self {
            inner: Mutex::new(recorder::Recorder::with_limits(parts, Host(storage), limits)),
            device: DeviceKey::from_bytes(&device_key),
            delegation,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, recorder::Recorder<OsRng, Host>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn cause_name(c: Cause) -> &'static str {
    match c {
        Cause::UnknownMetric => "UnknownMetric",
        Cause::WrongTrack => "WrongTrack",
        Cause::WrongValue => "WrongValue",
        Cause::LabelOutOfRange => "LabelOutOfRange",
        Cause::OutOfRange => "ValueOutOfRange",
        Cause::PurposeNotAllowed => "PurposeNotAllowed",
        Cause::NoConsent(_) => "NoConsent",
        Cause::BudgetExhausted => "BudgetExhausted",
        Cause::BudgetUnsaved => "BudgetUnsaved",
        _ => "NotRecorded",
    }
}

/// The 32-byte id of a signed receipt (the bytes [`Recorder::give_consent`] returned), to
/// withdraw it.
///
/// # Errors
/// `BadArgument` when the bytes are not a signed receipt.
#[uniffi::export]
pub fn receipt_id(receipt: Vec<u8>) -> Result<Vec<u8>, ConfianceError> {
    let r = SignedReceipt::from_bytes(&receipt)
        .map_err(|e| ConfianceError::BadArgument { detail: e.to_string() })?;
    Ok(r.id().0.to_vec())
}

/// 32 bytes from the operating system's CSPRNG: a new device key or pseudonym secret
/// (made once, on the first start, and kept by the host).
#[uniffi::export]
pub fn random_secret() -> Vec<u8> {
    use rand_core::Rng as _;
    let mut b = vec![0u8; 32];
    OsRng::new().fill_bytes(&mut b);
    b
}

/// For the owner's side (the phone app holding the subject key): the delegation of the
/// device whose public key is `device_public_key` ([`device_public_key`] of its device
/// key) by the subject whose key is `subject_key` (32 bytes, [`random_secret`], kept by
/// the owner), valid from `valid_from` until `valid_until` (`None`: until revoked),
/// signed at `now`. Post it to `POST /v1/delegations` and hand it to the device
/// ([`Recorder::delegated`]). The same arguments give the same bytes.
///
/// # Errors
/// `BadArgument` (a key not 32 bytes, an instant before 1970); `ConsentRefused` when
/// `valid_until` is not after `valid_from`.
#[uniffi::export]
pub fn delegate_device(
    subject_key: Vec<u8>,
    device_public_key: Vec<u8>,
    valid_from: SystemTime,
    valid_until: Option<SystemTime>,
    now: SystemTime,
) -> Result<Vec<u8>, ConfianceError> {
    let subject = secret("subject key", &subject_key)?;
    let device = secret("device public key", &device_public_key)?;
    let (from, until, now) = (secs(valid_from)?, valid_until.map(secs).transpose()?, secs(now)?);
    enrolment::delegate(&subject, DevicePublicKey(device), from, until, now)
        .map_err(|e| ConfianceError::from(&e))
}

/// The Ed25519 public key (32 bytes) of the device key `device_key`: what the owner's
/// app delegates ([`delegate_device`]).
///
/// # Errors
/// `BadArgument` when the key is not 32 bytes.
#[uniffi::export]
pub fn device_public_key(device_key: Vec<u8>) -> Result<Vec<u8>, ConfianceError> {
    Ok(enrolment::public_key(&secret("device key", &device_key)?).0.to_vec())
}

/// For the owner's side, when a device is lost, stolen or sold (docs/privacy.md, "Lost
/// device"): the revocation of the device whose public key is `device_public_key`
/// ([`device_public_key`] of its device key) by the subject whose key is `subject_key`
/// (the key that delegated it with [`delegate_device`]), from `at` on, signed at `now`.
/// Post it to `POST /v1/revocations` (201 `{"device", "revoked": true}`): from `at` on,
/// and for anything that reaches the ledger after the revocation, the device's receipts
/// and token requests are refused (`delegation_revoked`). What it gave before stays; a
/// revoked key is never delegated again. The same arguments give the same bytes.
///
/// ```
/// # use std::time::{Duration, SystemTime};
/// use confiance_ffi::bindings::*;
/// let (owner, thermostat) = (random_secret(), random_secret());
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
/// let public = device_public_key(thermostat)?;
/// let delegation = delegate_device(owner.clone(), public.clone(), now, None, now)?; // POST /v1/delegations
/// // … the thermostat is stolen a month later; the owner's app revokes it from then:
/// let stolen = now + Duration::from_secs(30 * 86_400);
/// let revocation = revoke_device(owner, public, stolen, stolen)?; // POST /v1/revocations
/// # assert!(!delegation.is_empty() && !revocation.is_empty());
/// # Ok::<(), ConfianceError>(())
/// ```
///
/// # Errors
/// `BadArgument` (a key not 32 bytes, an instant before 1970).
#[uniffi::export]
pub fn revoke_device(
    subject_key: Vec<u8>,
    device_public_key: Vec<u8>,
    at: SystemTime,
    now: SystemTime,
) -> Result<Vec<u8>, ConfianceError> {
    let subject = secret("subject key", &subject_key)?;
    let device = secret("device public key", &device_public_key)?;
    Ok(enrolment::revoke(&subject, DevicePublicKey(device), secs(at)?, secs(now)?))
}

/// For the owner's side: the id of the subject whose key is `subject_key` (32 bytes), as
/// 64 lowercase hex digits — what the devices it delegated report for
/// ([`Recorder::subject_id`]), and what `GET /v1/subjects/{subject}/access` takes.
///
/// # Errors
/// `BadArgument` when the key is not 32 bytes.
#[uniffi::export]
pub fn subject_id_of_key(subject_key: Vec<u8>) -> Result<String, ConfianceError> {
    Ok(enrolment::subject_id_of_key(&secret("subject key", &subject_key)?))
}

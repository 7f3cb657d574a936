//! The queries shared by the CLI and the HTTP API, their JSON answers and their errors —
//! so `confiance query … --json` and `GET /v1/…` return the same documents.

use std::collections::BTreeMap;

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{CertificateError, ConsentError};
use confiance::ids::{CategoryId, MetricId, PurposeId, RecipientId, SubjectId};
use serde_json::{Value, json};

use crate::ingest::IngestError;
use crate::issuer::IssueError;
use crate::ledger::{EnrollError, LedgerError, Party, Target};
use crate::service::{Aggregator, Release, ReleaseError, ServiceError};

use super::{hex, unhex};

/// An error with an HTTP status, a stable code and a message; the CLI maps it to an exit
/// code (1 for a 4xx, 3 for a 5xx).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Stable machine-readable code (docs/http.md).
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Whether the same request may succeed later, when the endpoint says so apart from
    /// the status (token issuance: `over_quota` is a 4xx that passes with the period).
    pub retry: Option<bool>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry: None }
    }

    /// The same error, saying whether the request may succeed later.
    #[must_use]
    pub const fn with_retry(mut self, retry: bool) -> Self {
        self.retry = Some(retry);
        self
    }

    /// `{"error": {"code": ..., "message": ...}}`, with `"retry"` when known.
    #[must_use]
    pub fn to_json(&self) -> Value {
        match self.retry {
            Some(retry) => json!({"error": {"code": self.code, "message": self.message, "retry": retry}}),
            None => json!({"error": {"code": self.code, "message": self.message}}),
        }
    }

    /// An internal error (500, `internal`).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal", message)
    }

    /// The store could not read or write (a full disk, an I/O error, a busy database):
    /// `503 store_failed`, answered with `Retry-After`. Nothing was kept, and the same
    /// request may be sent again; it is never a 4xx, which a device would take as a
    /// final refusal.
    pub fn store_failed(message: impl Into<String>) -> Self {
        Self::new(503, "store_failed", message)
    }

    /// Whether the same request may succeed later (a 5xx).
    #[must_use]
    pub const fn retryable(&self) -> bool {
        self.status >= 500
    }

    /// The answer to a refused envelope.
    #[must_use]
    pub fn from_ingest(e: &IngestError) -> Self {
        let status = match e {
            IngestError::TooLarge { .. } => 413,
            IngestError::ReplayedEnvelope(_) => 409,
            IngestError::Store(_) => 503,
            _ => 400,
        };
        Self::new(status, e.code(), e.to_string())
    }

    /// The answer to a refused receipt or withdrawal.
    #[must_use]
    pub fn from_service(e: &ServiceError) -> Self {
        let (status, code) = match e {
            ServiceError::Ledger(l) => match l {
                LedgerError::Consent(ConsentError::BadSignature | ConsentError::BadKey) => {
                    (403, "bad_signature")
                }
                LedgerError::Consent(ConsentError::SubjectKeyMismatch) => (403, "subject_key_mismatch"),
                LedgerError::Consent(_) => (400, "bad_consent"),
                LedgerError::Enroll(e) => (403, e.code()),
                LedgerError::Certificate(e) if e.code() == "malformed_certificate" => (400, e.code()),
                LedgerError::Certificate(e) => (403, e.code()),
                LedgerError::DuplicateCertificate(_) => (409, "duplicate_certificate"),
                LedgerError::SubjectMismatch => (403, "subject_mismatch"),
                LedgerError::DuplicateReceipt(_) => (409, "duplicate_receipt"),
                LedgerError::DuplicateDelegation(_) => (409, "duplicate_delegation"),
                LedgerError::DeviceEnrolledElsewhere => (409, "device_enrolled_elsewhere"),
                LedgerError::AlreadyRevoked => (409, "already_revoked"),
                LedgerError::UnknownSubject(_) => (404, "unknown_subject"),
                LedgerError::BadReason => (400, "bad_reason"),
                LedgerError::OverrideInFuture => (400, "override_in_future"),
                LedgerError::UnknownReceipt(_) | LedgerError::WithdrawalOfUnknownConsent(_) => {
                    (404, "unknown_receipt")
                }
                LedgerError::BeforeValidity => (400, "withdrawal_before_validity"),
                LedgerError::AlreadyWithdrawn => (409, "already_withdrawn"),
                LedgerError::UnknownRecipient(_) => (404, "unknown_recipient"),
                LedgerError::UnknownMetric(_) => (404, "unknown_metric"),
                LedgerError::UnknownPurpose(_) => (404, "unknown_purpose"),
                LedgerError::Store(_) => (503, "store_failed"),
                LedgerError::Corrupt(_) | LedgerError::CatalogueChanged => (500, "internal"),
                _ => (400, "refused"),
            },
            ServiceError::Store(_) => (503, "store_failed"),
            _ => (500, "internal"),
        };
        let err = Self::new(status, code, e.to_string());
        // Admission control says whether waiting helps (a certificate may be posted, or
        // come into force), as the token endpoints do.
        match e {
            ServiceError::Ledger(
                LedgerError::Enroll(
                    EnrollError::NotCertified | EnrollError::Uncertified(CertificateError::NotYetValid),
                )
                | LedgerError::Certificate(CertificateError::NotYetValid),
            ) => err.with_retry(true),
            ServiceError::Ledger(
                LedgerError::Enroll(EnrollError::Uncertified(_))
                | LedgerError::Certificate(_)
                | LedgerError::DuplicateCertificate(_),
            ) => err.with_retry(false),
            _ => err,
        }
    }

    /// The answer to a refused token request (or key lookup), with `retry`:
    /// `bad_signature` and the enrollment refusals 403, `malformed_token_request` 400,
    /// `unknown_scope` 404, `period_not_open` 409, `over_quota` 429, `store_failed` 503.
    #[must_use]
    pub fn from_issue(e: &IssueError) -> Self {
        let status = match e {
            IssueError::BadSignature | IssueError::Refused(_) => 403,
            IssueError::UnknownScope => 404,
            IssueError::PeriodNotOpen => 409,
            IssueError::OverQuota { .. } => 429,
            IssueError::Store(_) => 503,
            _ => 400,
        };
        Self::new(status, e.code(), e.to_string()).with_retry(e.is_retryable())
    }

    /// The answer to a refused release.
    #[must_use]
    pub fn from_release(e: &ReleaseError) -> Self {
        let (status, code) = match e {
            ReleaseError::UnknownMetric(_) => (404, "unknown_metric"),
            ReleaseError::UnknownRecipient(_) => (404, "unknown_recipient"),
            ReleaseError::NotAllowed => (403, "not_allowed"),
            ReleaseError::WrongTrack => (400, "wrong_track"),
            ReleaseError::NothingToRelease => (404, "nothing_to_release"),
            ReleaseError::TooFewReports { .. } => (422, "too_few_reports"),
            _ => (503, "store_failed"),
        };
        Self::new(status, code, e.to_string())
    }
}

impl core::fmt::Display for ApiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}

/// A query of the ledger (docs/design.md#queries).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Query {
    /// `subject_access(S, at)`.
    Subject {
        /// The subject.
        subject: SubjectId,
        /// Valid time.
        at: Timestamp,
        /// Record time (`None` = now).
        as_known_at: Option<Timestamp>,
    },
    /// `recipient_view(R, at)`.
    Recipient {
        /// The recipient.
        recipient: RecipientId,
        /// Valid time.
        at: Timestamp,
        /// Record time.
        as_known_at: Option<Timestamp>,
    },
    /// `who_sees(M, at)`.
    Metric {
        /// The metric.
        metric: MetricId,
        /// Valid time.
        at: Timestamp,
        /// Record time.
        as_known_at: Option<Timestamp>,
    },
    /// `check(R, M, purpose, S, at)`.
    Check {
        /// The recipient.
        recipient: RecipientId,
        /// The metric.
        metric: MetricId,
        /// The purpose.
        purpose: PurposeId,
        /// The subject.
        subject: SubjectId,
        /// Valid time.
        at: Timestamp,
        /// Record time.
        as_known_at: Option<Timestamp>,
    },
    /// `history(S or R, from, to)`.
    History {
        /// The subject or recipient.
        party: Party,
        /// Start (inclusive) of record time.
        from: Timestamp,
        /// End (exclusive).
        to: Timestamp,
    },
    /// `overdue(now, as_known_at)`.
    Overdue {
        /// The instant (valid time).
        now: Timestamp,
        /// Record time (`None` = now).
        as_known_at: Option<Timestamp>,
    },
    /// `unconsented_disclosures(from, to)`.
    Disclosures {
        /// Start (inclusive).
        from: Timestamp,
        /// End (exclusive).
        to: Timestamp,
    },
    /// `who_sees(category, at)`: every metric of a data category.
    Category {
        /// The data category.
        category: CategoryId,
        /// Valid time.
        at: Timestamp,
        /// Record time.
        as_known_at: Option<Timestamp>,
    },
    /// What changed in who sees what between two instants: the answer of the same query
    /// at `from` and at `to` (both as known at `as_known_at`), compared per (recipient,
    /// metric).
    Diff {
        /// Whose answer is compared.
        of: DiffOf,
        /// The earlier instant (valid time).
        from: Timestamp,
        /// The later instant (valid time).
        to: Timestamp,
        /// Record time of both answers.
        as_known_at: Option<Timestamp>,
    },
    /// `diff(catalogue_a, catalogue_b)`: who gains or loses access to what if the served
    /// catalogue were replaced by `other`, with the grants in the ledger a removal touches.
    CatalogueDiff {
        /// The candidate catalogue.
        other: Box<Catalogue>,
    },
}

/// The query a [`Query::Diff`] compares at two instants.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiffOf {
    /// `subject_access(S, ·)`.
    Subject(SubjectId),
    /// `recipient_view(R, ·)`.
    Recipient(RecipientId),
    /// `who_sees(M, ·)`.
    Metric(MetricId),
    /// `who_sees(category, ·)`.
    Category(CategoryId),
}

/// Parses a timestamp: UTC seconds, or RFC 3339 (`2027-01-31T12:00:00Z`,
/// `2027-01-31T14:00:00+02:00`, fractions of a second dropped, `t`/`z` in either case,
/// a bare date as midnight UTC). A space where the offset's sign should be is read as
/// `+`: that is what an unescaped `+` becomes in a query string.
///
/// ```
/// use confiance_aggregator::server::query::parse_time;
/// let utc = parse_time("2027-01-31T12:00:00Z").unwrap();
/// assert_eq!(parse_time("2027-01-31T14:00:00+02:00").unwrap(), utc);
/// assert_eq!(parse_time("2027-01-31T14:00:00.75 02:00").unwrap(), utc);
/// assert_eq!(parse_time("2027-01-31T09:30:00-02:30").unwrap(), utc);
/// assert!(parse_time("2027-01-31T12:00:00+24:00").is_err());
/// ```
///
/// # Errors
/// [`ApiError`] `bad_time` (400).
pub fn parse_time(s: &str) -> Result<Timestamp, ApiError> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Timestamp::from_secs(n));
    }
    rfc3339(s).ok_or_else(|| ApiError::new(400, "bad_time", format!("`{s}` is not a time")))
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, to UTC.
fn rfc3339(s: &str) -> Option<Timestamp> {
    if s.len() == 10 {
        return Timestamp::parse_rfc3339(s).ok();
    }
    let (date_time, rest) = (s.get(..19)?, s.get(19..)?);
    let rest = match rest.strip_prefix('.') {
        Some(r) => r.trim_start_matches(|c: char| c.is_ascii_digit()),
        None => rest,
    };
    let utc =
        Timestamp::parse_rfc3339(&format!("{}T{}Z", date_time.get(..10)?, date_time.get(11..)?)).ok()?;
    if !matches!(date_time.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    if rest.eq_ignore_ascii_case("z") {
        return Some(utc);
    }
    let (sign, hm) = (rest.as_bytes().first()?, rest.get(1..)?);
    let (h, m) = hm.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u64, u64) = (h.parse().ok()?, m.parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    let offset = h * 3_600 + m * 60;
    // Local time = UTC + offset, so UTC = local − offset.
    match sign {
        b'+' | b' ' => utc.as_secs().checked_sub(offset).map(Timestamp::from_secs),
        b'-' => utc.as_secs().checked_add(offset).map(Timestamp::from_secs),
        _ => None,
    }
}

/// Parses a subject id (64 hex digits).
///
/// # Errors
/// [`ApiError`] `bad_subject` (400).
pub fn parse_subject(s: &str) -> Result<SubjectId, ApiError> {
    unhex(s)
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .map(SubjectId)
        .ok_or_else(|| ApiError::new(400, "bad_subject", "a subject is 64 hex digits"))
}

/// Parses and checks a recipient against the catalogue.
///
/// # Errors
/// `bad_id` (400), `unknown_recipient` (404).
pub fn parse_recipient(agg: &Aggregator, s: &str) -> Result<RecipientId, ApiError> {
    let r: RecipientId =
        s.parse().map_err(|_| ApiError::new(400, "bad_id", format!("bad recipient id `{s}`")))?;
    agg.catalogue()
        .recipient(&r)
        .map(|_| r.clone())
        .ok_or_else(|| ApiError::new(404, "unknown_recipient", format!("unknown recipient `{s}`")))
}

/// Parses and checks a metric against the catalogue.
///
/// # Errors
/// `bad_id` (400), `unknown_metric` (404).
pub fn parse_metric(agg: &Aggregator, s: &str) -> Result<MetricId, ApiError> {
    let m: MetricId = s.parse().map_err(|_| ApiError::new(400, "bad_id", format!("bad metric id `{s}`")))?;
    agg.catalogue()
        .metric(&m)
        .map(|_| m.clone())
        .ok_or_else(|| ApiError::new(404, "unknown_metric", format!("unknown metric `{s}`")))
}

/// Parses and checks a purpose against the catalogue.
///
/// # Errors
/// `bad_id` (400), `unknown_purpose` (404).
pub fn parse_purpose(agg: &Aggregator, s: &str) -> Result<PurposeId, ApiError> {
    let p: PurposeId =
        s.parse().map_err(|_| ApiError::new(400, "bad_id", format!("bad purpose id `{s}`")))?;
    agg.catalogue()
        .purpose(&p)
        .map(|_| p.clone())
        .ok_or_else(|| ApiError::new(404, "unknown_purpose", format!("unknown purpose `{s}`")))
}

/// Parses and checks a data category against the catalogue (it must hold a metric of
/// the category).
///
/// # Errors
/// `bad_id` (400), `unknown_category` (404).
pub fn parse_category(agg: &Aggregator, s: &str) -> Result<CategoryId, ApiError> {
    let c: CategoryId =
        s.parse().map_err(|_| ApiError::new(400, "bad_id", format!("bad category id `{s}`")))?;
    if agg.catalogue().metrics_in(&c).next().is_none() {
        return Err(ApiError::new(404, "unknown_category", format!("no metric of category `{s}`")));
    }
    Ok(c)
}

/// Parses a candidate catalogue (TOML) for [`Query::CatalogueDiff`].
///
/// # Errors
/// `bad_catalogue` (400).
pub fn parse_catalogue(text: &str) -> Result<Catalogue, ApiError> {
    Catalogue::from_toml_str(text).map_err(|e| ApiError::new(400, "bad_catalogue", e.to_string()))
}

/// Byte strings the ledger serializes as arrays of integers (ids and hashes of 16 or 32
/// bytes) become lowercase hex strings.
#[must_use]
pub fn hexify(v: Value) -> Value {
    match v {
        Value::Array(a) => {
            let bytes: Option<Vec<u8>> = (a.len() == 16 || a.len() == 32)
                .then(|| a.iter().map(|x| x.as_u64().and_then(|n| u8::try_from(n).ok())).collect())
                .flatten();
            match bytes {
                Some(b) => Value::String(hex(&b)),
                None => Value::Array(a.into_iter().map(hexify).collect()),
            }
        }
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, hexify(v))).collect()),
        other => other,
    }
}

fn to_value<T: serde::Serialize>(t: &T) -> Result<Value, ApiError> {
    serde_json::to_value(t).map(hexify).map_err(|e| ApiError::internal(e.to_string()))
}

/// Loads from a lazily loaded ledger ([`Ledger::open_postgres_lazy`](crate::ledger::Ledger::open_postgres_lazy))
/// what `q` reads about one party: the subject of a question about one subject (its
/// access, a check, its history), the subjects of a recipient for a question about one
/// recipient. A question across subjects (who sees a metric or a category, overdue
/// holdings, unconsented disclosures, the diffs of those) loads nothing: [`run_query`]
/// reads its subjects page by page and keeps none. A no-op on any other ledger.
///
/// ```
/// # use confiance::{Timestamp, catalogue::Catalogue, ids::SubjectId};
/// # use confiance_aggregator::{keys::KeyStore, service::{Aggregator, AggregatorConfig}};
/// use confiance_aggregator::server::{Query, query::load_for_query, run_query};
/// # let catalogue = Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?;
/// let mut agg = Aggregator::in_memory(catalogue, KeyStore::new(86_400), AggregatorConfig::default())?;
/// let q = Query::Subject { subject: SubjectId([7; 32]), at: Timestamp::from_secs(1_000), as_known_at: None };
/// load_for_query(&mut agg, &q)?; // in memory: a no-op
/// let answer = run_query(&mut agg, &q)?;
/// assert!(answer.is_object());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`ApiError`] (internal) when the shared ledger cannot be read.
pub fn load_for_query(agg: &mut Aggregator, q: &Query) -> Result<(), ApiError> {
    let loaded = match q {
        Query::Subject { subject, .. }
        | Query::Check { subject, .. }
        | Query::History { party: Party::Subject(subject), .. }
        | Query::Diff { of: DiffOf::Subject(subject), .. } => agg.load_subject(subject),
        Query::Recipient { recipient, .. }
        | Query::History { party: Party::Recipient(recipient), .. }
        | Query::Diff { of: DiffOf::Recipient(recipient), .. } => agg.load_recipient(recipient),
        Query::Metric { .. }
        | Query::Overdue { .. }
        | Query::Disclosures { .. }
        | Query::Category { .. }
        | Query::Diff { .. }
        | Query::CatalogueDiff { .. } => Ok(()),
    };
    loaded.map_err(ledger_error)
}

fn ledger_error(e: crate::ledger::LedgerError) -> ApiError {
    ApiError::internal(format!("ledger: {e}"))
}

/// Answers `q` as JSON (the schema of docs/cli.md and docs/http.md), exactly as a fully
/// loaded ledger answers it. On a lazily loaded ledger it first loads what a question
/// about one party reads ([`load_for_query`]); a question across subjects reads its
/// subjects page by page ([`Ledger::scan_who_sees`](crate::ledger::Ledger::scan_who_sees)
/// and the others), so the subjects loaded stay as they were.
///
/// # Errors
/// [`ApiError`] (internal only: the ids were checked when `q` was built, and the shared
/// ledger cannot be read).
/// ```
/// # use confiance::{Timestamp, catalogue::Catalogue, ids::SubjectId};
/// # use confiance_aggregator::{keys::KeyStore, service::{Aggregator, AggregatorConfig}};
/// use confiance_aggregator::server::{Query, run_query};
/// # let catalogue = Catalogue::from_toml_str(include_str!("../../../examples/catalogue.toml"))?;
/// let mut agg = Aggregator::in_memory(catalogue, KeyStore::new(86_400), AggregatorConfig::default())?;
/// let q = Query::Overdue { now: Timestamp::from_secs(1_000), as_known_at: None };
/// let answer = run_query(&mut agg, &q)?;
/// assert!(answer.is_object());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn run_query(agg: &mut Aggregator, q: &Query) -> Result<Value, ApiError> {
    load_for_query(agg, q)?;
    match q {
        Query::Metric { metric, at, as_known_at } => {
            to_value(&who_sees(agg, &Target::Metric(metric.clone()), *at, *as_known_at)?)
        }
        Query::Category { category, at, as_known_at } => {
            to_value(&who_sees(agg, &Target::Category(category.clone()), *at, *as_known_at)?)
        }
        Query::Overdue { now, as_known_at } => {
            to_value(&agg.ledger_mut().scan_overdue(*now, *as_known_at).map_err(ledger_error)?)
        }
        Query::Disclosures { from, to } => {
            let found = agg.ledger_mut().scan_unconsented_disclosures(*from, *to).map_err(ledger_error)?;
            Ok(json!({ "disclosures": to_value(&found)? }))
        }
        Query::CatalogueDiff { other } => {
            let served = agg.catalogue().clone();
            to_value(&agg.ledger_mut().scan_diff(&served, other).map_err(ledger_error)?)
        }
        Query::Diff { of, from, to, as_known_at } => {
            let (before, after) =
                (entries_at(agg, of, *from, *as_known_at)?, entries_at(agg, of, *to, *as_known_at)?);
            let mut gained = Vec::new();
            let mut changed = Vec::new();
            for (k, a) in &after {
                match before.get(k) {
                    None => gained.push(a.clone()),
                    Some(b) if b != a => changed.push(json!({"before": b, "after": a})),
                    Some(_) => {}
                }
            }
            let lost: Vec<Value> =
                before.iter().filter(|(k, _)| !after.contains_key(*k)).map(|(_, b)| b.clone()).collect();
            let of = match of {
                DiffOf::Subject(s) => json!({"subject": hex(&s.0)}),
                DiffOf::Recipient(r) => json!({"recipient": r.as_str()}),
                DiffOf::Metric(m) => json!({"metric": m.as_str()}),
                DiffOf::Category(c) => json!({"category": c.as_str()}),
            };
            Ok(json!({
                "of": of,
                "from": from.as_secs(),
                "to": to.as_secs(),
                "as_known_at": as_known_at.map(Timestamp::as_secs),
                "gained": gained,
                "lost": lost,
                "changed": changed,
            }))
        }
        _ => answer_loaded(agg.ledger(), q),
    }
}

/// Who sees `target` at `at`, page by page on a lazily loaded ledger.
fn who_sees(
    agg: &mut Aggregator,
    target: &Target,
    at: Timestamp,
    as_known_at: Option<Timestamp>,
) -> Result<crate::ledger::WhoSees, ApiError> {
    agg.ledger_mut().scan_who_sees(target, at, as_known_at).map_err(ledger_error)
}

/// The questions about one party, from what [`load_for_query`] loaded.
fn answer_loaded(l: &crate::ledger::Ledger, q: &Query) -> Result<Value, ApiError> {
    match q {
        Query::Subject { subject, at, as_known_at } => {
            to_value(&l.subject_access(subject, *at, *as_known_at))
        }
        Query::Recipient { recipient, at, as_known_at } => {
            to_value(&l.recipient_view(recipient, *at, *as_known_at))
        }
        Query::Check { recipient, metric, purpose, subject, at, as_known_at } => {
            to_value(&l.check_at(recipient, metric, purpose, subject, *at, *as_known_at))
        }
        Query::History { party, from, to } => {
            Ok(json!({ "entries": to_value(&l.history(party, *from, *to))? }))
        }
        _ => Err(ApiError::internal("a question across subjects is answered page by page")),
    }
}

/// The entries of `of`'s answer at `at`, keyed by (recipient, metric).
fn entries_at(
    agg: &mut Aggregator,
    of: &DiffOf,
    at: Timestamp,
    as_known_at: Option<Timestamp>,
) -> Result<BTreeMap<(String, String), Value>, ApiError> {
    fn keyed<'a, E: serde::Serialize + 'a>(
        entries: impl Iterator<Item = (&'a RecipientId, &'a MetricId, &'a E)>,
    ) -> Result<BTreeMap<(String, String), Value>, ApiError> {
        entries.map(|(r, m, e)| Ok(((r.to_string(), m.to_string()), to_value(e)?))).collect()
    }
    let mut views = |t: Target| {
        let w = who_sees(agg, &t, at, as_known_at)?;
        keyed(w.entries.iter().map(|e| (&e.recipient, &e.metric, e)))
    };
    match of {
        DiffOf::Subject(s) => {
            let a = agg.ledger().subject_access(s, at, as_known_at);
            keyed(a.entries.iter().map(|e| (&e.recipient, &e.metric, e)))
        }
        DiffOf::Recipient(r) => {
            let v = agg.ledger().recipient_view(r, at, as_known_at);
            keyed(v.metrics.iter().map(|e| (&e.recipient, &e.metric, e)))
        }
        DiffOf::Metric(m) => views(Target::Metric(m.clone())),
        DiffOf::Category(c) => views(Target::Category(c.clone())),
    }
}

/// Releases `metric` to `recipient` over `[from, to)` at `now`, whichever its track: the
/// estimate of an anonymous metric ([`release_json`]) or the pseudonymous records the
/// ledger allows ([`records_json`]). The CLI's `release` and `POST /v1/releases` share it.
///
/// # Errors
/// [`ApiError`] from [`ApiError::from_release`].
pub fn release(
    agg: &mut Aggregator,
    recipient: &RecipientId,
    metric: &MetricId,
    from: Timestamp,
    to: Timestamp,
    now: Timestamp,
) -> Result<Value, ApiError> {
    let anonymous = agg.catalogue().metric(metric).is_none_or(confiance::catalogue::Metric::is_anonymous);
    if anonymous {
        let r = agg.release(recipient, metric, from, to, now).map_err(|e| ApiError::from_release(&e))?;
        Ok(release_json(recipient, &r))
    } else {
        let labels: Vec<String> = agg
            .catalogue()
            .metric(metric)
            .map(|m| m.kind.labels().into_iter().map(str::to_owned).collect())
            .unwrap_or_default();
        let records =
            agg.release_records(recipient, metric, from, to, now).map_err(|e| ApiError::from_release(&e))?;
        Ok(records_json(recipient, metric, &labels, &records))
    }
}

/// Pseudonymous records released to `recipient`, as JSON: `{"kind": "records", "recipient",
/// "metric", "count", "records": [{"id", "pseudonym", "collected_at", "value", "receipt",
/// "allowed_until"}]}` (ids and pseudonyms in hex; a categorical value as its label;
/// `allowed_until` `null` when the consent runs until withdrawn).
#[must_use]
pub fn records_json(
    recipient: &RecipientId,
    metric: &MetricId,
    labels: &[String],
    records: &[crate::service::ReleasedRecord],
) -> Value {
    use confiance::report::RecordValue;
    let rows: Vec<Value> = records
        .iter()
        .map(|r| {
            let value = match r.value {
                RecordValue::Bool(b) => json!(b),
                RecordValue::Category(i) => {
                    usize::try_from(i).ok().and_then(|x| labels.get(x)).map_or_else(|| json!(i), |l| json!(l))
                }
                RecordValue::Numeric(v) => json!(v),
                RecordValue::Count(v) => json!(v),
            };
            json!({
                "id": hex(&r.id),
                "pseudonym": hex(r.pseudonym.as_bytes()),
                "collected_at": r.collected_at.as_secs(),
                "value": value,
                "receipt": r.decision.receipt().map(|x| hex(&x.0)),
                "allowed_until": r.decision.until().map(Timestamp::as_secs),
            })
        })
        .collect();
    json!({
        "kind": "records",
        "recipient": recipient.to_string(),
        "metric": metric.to_string(),
        "count": rows.len(),
        "records": rows,
    })
}

/// A released estimate as JSON: `{"kind": "estimate", "recipient", "metric", "statistic":
/// "share" | "mean", "partitions", "n", "projected", "values": [{"label", "value", "raw",
/// "std_error", "ci95_low", "ci95_high"}]}`.
///
/// The unbiased estimate of a share can fall outside [0, 1] (randomized response adds
/// noise that the debiasing scales up, most with few reports): `raw` keeps it, `value` is
/// the Euclidean projection of all shares onto the probability simplex (non-negative,
/// summing to 1; [`confiance_estimate::project_simplex`], for display: decisions under
/// attack should use `raw`), and the interval is `raw ± 1.96 σ` clipped to [0, 1].
/// `projected` says whether any share moved by more than 10⁻⁹. A mean is given as is
/// (`value` = `raw`).
#[must_use]
pub fn release_json(recipient: &RecipientId, r: &Release) -> Value {
    let projected = r.estimate.projected().filter(|_| !r.labels.is_empty());
    let moved = projected
        .as_ref()
        .is_some_and(|p| p.iter().zip(&r.estimate.values).any(|(a, b)| (a - b.value).abs() > 1e-9));
    let values: Vec<Value> = r
        .estimate
        .values
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let label = r
                .labels
                .get(i)
                .cloned()
                .unwrap_or_else(|| if r.labels.is_empty() { "mean".into() } else { i.to_string() });
            let (value, low, high) = match &projected {
                Some(pr) => (
                    pr.get(i).copied().unwrap_or(p.value),
                    p.ci95_low.clamp(0.0, 1.0),
                    p.ci95_high.clamp(0.0, 1.0),
                ),
                None => (p.value, p.ci95_low, p.ci95_high),
            };
            json!({
                "label": label,
                "value": value,
                "raw": p.value,
                "std_error": p.std_error,
                "ci95_low": low,
                "ci95_high": high,
            })
        })
        .collect();
    json!({
        "kind": "estimate",
        "recipient": recipient.to_string(),
        "metric": r.metric.to_string(),
        "statistic": if projected.is_some() { "share" } else { "mean" },
        "partitions": r.partitions,
        "n": r.estimate.n,
        "projected": moved,
        "values": values,
    })
}

//! Auditor reports: *who sees what, for how long*, the privacy budget, the estimates with
//! their intervals, retention and the audit log's state — as one self-contained HTML file
//! with SVG charts, as JSON, and as Markdown (docs/design.md#interfaces).
//!
//! [`ReportData`] is the whole content of a report, in plain types: the CLI, the HTTP server
//! and the examples fill it from the ledger, the estimators and the audit log, then call
//! [`render_html`], [`render_json`] or [`render_markdown`]. All three are deterministic —
//! the same data gives the same bytes — so reports can be diffed and hashed.
//!
//! The JSON field names are a stable schema, versioned by [`SCHEMA_VERSION`]; instants are
//! [`Timestamp`]s, i.e. UTC seconds since the Unix epoch. `docs/reports.md` describes every
//! section and chart.
//!
//! ```
//! use confiance_aggregator::report::{self, ReportData};
//!
//! let data = ReportData::demo();
//! let html = report::render_html(&data);
//! assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg"));
//! let json = report::render_json(&data)?;
//! assert_eq!(ReportData::from_json(&json)?, data);
//! assert!(report::render_markdown(&data).contains("| research-lab |"));
//! # Ok::<(), report::ReportError>(())
//! ```

use confiance::Timestamp;
use serde::{Deserialize, Serialize};

mod charts;
mod demo;
mod gather;
mod html;
mod markdown;
mod subject;
mod summary;
mod table;
mod text;
mod time_axis;

pub use gather::GatherOptions;
pub use html::render_html;
pub use markdown::render_markdown;
pub use subject::{
    SubjectAccessRow, SubjectConsent, SubjectDevice, SubjectDisclosure, SubjectRecord, SubjectReport,
    SubjectReportSource,
};

/// The version of the JSON schema of [`ReportData`]; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Why report data cannot be written or read.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReportError {
    /// The JSON text is not a report (bad syntax, a missing or mistyped field).
    Json(serde_json::Error),
    /// The JSON report has a schema version this code does not read.
    UnsupportedSchema {
        /// The version found in the data.
        found: u32,
    },
    /// A number that JSON cannot carry (NaN or ±∞), or an interval whose low end is above
    /// its high end; the text names the field.
    InvalidNumber(String),
    /// A format name that is not `html`, `json`, `markdown` or `md`.
    UnknownFormat(String),
    /// Bytes that are not a device's sent-log export
    /// ([`SentLogExport`](confiance::recorder::SentLogExport)).
    SentLog(confiance::recorder::SentLogError),
    /// A sent log exported under another catalogue than the one given to read it: the
    /// recipients' names, purposes and legal bases would be another catalogue's. The texts
    /// name both catalogues (name, version, digest).
    CatalogueMismatch {
        /// The catalogue the device sent under.
        log: String,
        /// The catalogue given.
        given: String,
    },
}

impl core::fmt::Display for ReportError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Json(e) => write!(f, "report JSON: {e}"),
            Self::UnsupportedSchema { found } => {
                write!(
                    f,
                    "report schema version {found} is not supported (this build reads {SCHEMA_VERSION})"
                )
            }
            Self::InvalidNumber(what) => write!(f, "invalid number in report: {what}"),
            Self::UnknownFormat(name) => write!(f, "unknown report format {name:?} (html, json or markdown)"),
            Self::SentLog(e) => write!(f, "sent log: {e}"),
            Self::CatalogueMismatch { log, given } => {
                write!(f, "the sent log was exported under catalogue {log}, not {given}")
            }
        }
    }
}

impl std::error::Error for ReportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Json(e) => Some(e),
            Self::SentLog(e) => Some(e),
            _ => None,
        }
    }
}

/// Everything a report shows. Rows are rendered in the order given, grouped where a chart
/// needs it (access by recipient, estimates by metric) in order of first appearance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    /// Always [`SCHEMA_VERSION`] when written by this code.
    pub schema_version: u32,
    /// Title, catalogue and the instants the report is about.
    pub header: Header,
    /// The first page: one plain-language summary per recipient of the catalogue.
    #[serde(default)]
    pub summary: Vec<RecipientSummary>,
    /// Who sees what, for how long: one row per recipient × metric × subject (or cohort).
    pub access: Vec<AccessRow>,
    /// The privacy budget per metric.
    pub budgets: Vec<BudgetRow>,
    /// Estimates with their 95 % confidence intervals.
    pub estimates: Vec<EstimateRow>,
    /// Partitions and records with their hold deadlines; overdue ones flagged.
    pub retention: Vec<RetentionRow>,
    /// The audit log's verification; `None` when the log was not checked for this report.
    pub log: Option<LogStatus>,
    /// Free text notes, shown at the end, one paragraph each.
    pub notes: Vec<String>,
}

/// One recipient at a glance (the report's first page): what it sees, why, since and
/// until when, what it holds, received and lost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientSummary {
    /// The recipient's id.
    pub recipient: String,
    /// Its name in the catalogue.
    pub name: String,
    /// Its role (`controller`, `processor`, `third-party`).
    pub role: String,
    /// The metrics it has had access to, sorted.
    pub metrics: Vec<String>,
    /// The purposes it has them for, each with its legal basis (GDPR Art. 6(1)).
    pub purposes: Vec<PurposeBasis>,
    /// The start of its earliest access window; `None` when it never had one.
    pub from: Option<Timestamp>,
    /// The end of its latest access window; `None` when one is open (until withdrawn)
    /// or none exists.
    pub until: Option<Timestamp>,
    /// Whether an access window is still open: it ends only when subjects withdraw.
    pub open_until_withdrawn: bool,
    /// The longest hold of what it collects, in the catalogue's own terms (`P6M`).
    pub longest_hold: Option<String>,
    /// Anonymous partitions held for it at the report instant.
    pub partitions_held: u64,
    /// Pseudonymous records held for it at the report instant.
    pub records_held: u64,
    /// Releases made to it (estimates and records), from the audit log.
    pub releases: u64,
    /// Pseudonymous records disclosed to it (released or transcrypted).
    pub records_disclosed: u64,
    /// Partitions and records held for it past their deadline at the report instant.
    pub overdue: u64,
    /// Partitions and records of it purged (as known when the report was generated).
    pub purged: u64,
}

/// A purpose and its legal basis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurposeBasis {
    /// The purpose's id.
    pub purpose: String,
    /// Its legal basis (`consent`, `contract`, …).
    pub legal_basis: String,
}

/// The report's title, catalogue and instants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The report's title.
    pub title: String,
    /// The catalogue's name.
    pub catalogue_name: String,
    /// The catalogue's version.
    pub catalogue_version: u32,
    /// The catalogue's digest, lower-case hex.
    pub catalogue_digest_hex: String,
    /// When the report was generated.
    pub generated_at: Timestamp,
    /// The valid time the report is about (the `at` of every query, docs/design.md#bitemporal).
    pub at: Timestamp,
    /// The record time the report is about; `None` means "as known at `generated_at`".
    pub as_known_at: Option<Timestamp>,
    /// The right end of the time axes: where "until withdrawn" bars stop. `None` lets the
    /// renderer pick a little past the latest instant in the data (at least `at` + 30 days).
    pub horizon: Option<Timestamp>,
}

/// One access window: `recipient` sees `metric` of `subject` from `window_start` to
/// `window_end`, then may keep what it collected for `hold_secs` more (docs/design.md#for-how-long).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRow {
    /// The recipient's id.
    pub recipient: String,
    /// The metric's id (or a data category's).
    pub metric: String,
    /// A subject pseudonym (shortened hex) or a cohort label such as `brand-a (anonymous)`.
    pub subject: String,
    /// Start of the access window.
    pub window_start: Timestamp,
    /// End of the access window; `None` means "until withdrawn".
    pub window_end: Option<Timestamp>,
    /// How long data collected in the window may be kept after it (the effective hold,
    /// already capped by the catalogue's maximum).
    pub hold_secs: u64,
    /// The same hold in the catalogue's or the receipt's own terms (`P6M`), when known.
    #[serde(default)]
    pub hold: Option<String>,
}

impl AccessRow {
    /// When the recipient stops seeing the metric: the window's end plus the hold; `None`
    /// while the window is open ("until withdrawn, plus the hold").
    #[must_use]
    pub fn hold_until(&self) -> Option<Timestamp> {
        self.window_end.map(|end| end.saturating_add_secs(self.hold_secs))
    }
}

/// The privacy budget of one metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetRow {
    /// The metric's id.
    pub metric: String,
    /// ε spent by one report.
    pub epsilon_per_report: f64,
    /// ε a device may spend on this metric per period.
    pub budget_per_period: f64,
    /// The budget period, in seconds.
    pub period_secs: u64,
    /// Reports received for this metric over the report's range.
    pub reports_received: u64,
    /// How much of the budget devices spent in the latest period, when known.
    pub spent: Option<SpentSummary>,
}

/// The distribution of ε spent per device in one period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpentSummary {
    /// Devices counted.
    pub devices: u64,
    /// Least ε spent by a device.
    pub min: f64,
    /// Median ε spent.
    pub median: f64,
    /// 90th percentile of ε spent.
    pub p90: f64,
    /// Most ε spent by a device.
    pub max: f64,
}

/// One estimate with its 95 % confidence interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EstimateRow {
    /// The metric's id.
    pub metric: String,
    /// What is estimated: a bucket or category label, or `mean`.
    pub label: String,
    /// The point estimate.
    pub estimate: f64,
    /// Low end of the 95 % confidence interval.
    pub ci95_low: f64,
    /// High end of the 95 % confidence interval.
    pub ci95_high: f64,
    /// The estimate's standard error.
    pub std_error: f64,
    /// The true value, known in simulations only.
    pub true_value: Option<f64>,
    /// Reports behind the estimate.
    pub n: u64,
}

/// What a retention row holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionKind {
    /// An anonymous partition (a metric's time bucket under one tag).
    Partition,
    /// Pseudonymous records of one subject or receipt.
    Records,
}

/// Data held under a deadline (docs/design.md#hold-deadline).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRow {
    /// A label for the partition or records, starting with the metric: for a partition the
    /// metric, the bucket's start and who may see it (`indoor_temp 2027-03-01 /
    /// grid-operator`); for records the metric and the record id. Tables show it with the
    /// metric prefixed when it does not start with it.
    pub item: String,
    /// Partition or records.
    pub kind: RetentionKind,
    /// The metric's id.
    pub metric: String,
    /// Reports a partition holds, or `1` for a record, as the store holds them when the
    /// report is made; `None` for a partition the store no longer holds (purged since the
    /// instant): its count went with it, and `0` would read as "nothing was held".
    #[serde(default)]
    pub records: Option<u64>,
    /// When the data began to be collected (the bucket start), when known.
    pub collected_from: Option<Timestamp>,
    /// The hold deadline.
    pub deadline: Timestamp,
    /// The hold that sets the deadline, in the catalogue's (or the receipt's) own terms,
    /// as written there (`P6M`, not 181 days); `None` when not known.
    #[serde(default)]
    pub hold: Option<String>,
    /// When the data was purged; `None` if still held.
    pub purged_at: Option<Timestamp>,
    /// `Some(seconds)` if the data is (or was) held past its deadline, by that much.
    pub overdue_by_secs: Option<u64>,
}

/// The state of the audit log, as verified for this report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogStatus {
    /// Entries in the log.
    pub tree_size: u64,
    /// The Merkle root, lower-case hex.
    pub root_hex: String,
    /// Whether the signed checkpoint verified.
    pub checkpoint_verified: bool,
    /// Whether the consistency proof from the previous checkpoint verified; `None` when
    /// there was no previous checkpoint to check against.
    pub consistency_verified: Option<bool>,
    /// Inclusion proofs spot-checked.
    pub inclusion_checked: u64,
    /// Inclusion proofs among those that failed.
    pub inclusion_failed: u64,
    /// What the verifier said, in words.
    pub message: String,
    /// The checkpoint signer's Ed25519 public key, lower-case hex (what an auditor pins).
    #[serde(default)]
    pub signer_key_hex: Option<String>,
}

impl LogStatus {
    /// Whether everything that was checked verified.
    #[must_use]
    pub fn all_verified(&self) -> bool {
        self.checkpoint_verified && self.consistency_verified != Some(false) && self.inclusion_failed == 0
    }

    /// Whether something was verified at all: a signed checkpoint over at least one
    /// event, with events recomputed or a consistency proof checked, every check passing.
    /// An empty log, or one checked against nothing, is never called verified.
    #[must_use]
    pub fn verified_something(&self) -> bool {
        self.all_verified()
            && self.tree_size > 0
            && (self.inclusion_checked > 0 || self.consistency_verified == Some(true))
    }
}

impl ReportData {
    /// An empty report with `header`, at [`SCHEMA_VERSION`].
    ///
    /// ```
    /// use confiance::Timestamp;
    /// use confiance_aggregator::report::{Header, ReportData};
    /// let t = Timestamp::parse_rfc3339("2027-03-01")?;
    /// let data = ReportData::new(Header {
    ///     title: "Empty".into(),
    ///     catalogue_name: "thermostat".into(),
    ///     catalogue_version: 1,
    ///     catalogue_digest_hex: "00".repeat(32),
    ///     generated_at: t,
    ///     at: t,
    ///     as_known_at: None,
    ///     horizon: None,
    /// });
    /// assert!(data.access.is_empty() && data.log.is_none());
    /// # Ok::<(), confiance::time::TimeParseError>(())
    /// ```
    #[must_use]
    pub fn new(header: Header) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            header,
            summary: Vec::new(),
            access: Vec::new(),
            budgets: Vec::new(),
            estimates: Vec::new(),
            retention: Vec::new(),
            log: None,
            notes: Vec::new(),
        }
    }

    /// A realistic made-up report — three recipients, three metrics, estimates beside true
    /// values, an overdue partition — for documentation, tests and trying the renderers.
    #[must_use]
    pub fn demo() -> Self {
        demo::demo()
    }

    /// Checks what JSON needs: every number finite, every interval ordered.
    ///
    /// # Errors
    /// [`ReportError::InvalidNumber`] naming the first offending field.
    pub fn validate(&self) -> Result<(), ReportError> {
        let bad = |what: String| Err(ReportError::InvalidNumber(what));
        for b in &self.budgets {
            let mut nums = vec![
                ("epsilon_per_report", b.epsilon_per_report),
                ("budget_per_period", b.budget_per_period),
            ];
            if let Some(s) = &b.spent {
                nums.extend([
                    ("spent.min", s.min),
                    ("spent.median", s.median),
                    ("spent.p90", s.p90),
                    ("spent.max", s.max),
                ]);
            }
            if let Some((field, _)) = nums.iter().find(|(_, v)| !v.is_finite()) {
                return bad(format!("budgets[{}].{field} is not finite", b.metric));
            }
        }
        for e in &self.estimates {
            let nums = [
                ("estimate", e.estimate),
                ("ci95_low", e.ci95_low),
                ("ci95_high", e.ci95_high),
                ("std_error", e.std_error),
                ("true_value", e.true_value.unwrap_or(0.0)),
            ];
            if let Some((field, _)) = nums.iter().find(|(_, v)| !v.is_finite()) {
                return bad(format!("estimates[{} {}].{field} is not finite", e.metric, e.label));
            }
            if e.ci95_low > e.ci95_high {
                return bad(format!("estimates[{} {}]: ci95_low > ci95_high", e.metric, e.label));
            }
        }
        Ok(())
    }

    /// Reads a report written by [`render_json`].
    ///
    /// # Errors
    /// [`ReportError::Json`] for text that is not a report, [`ReportError::UnsupportedSchema`]
    /// for another schema version, [`ReportError::InvalidNumber`] as in [`ReportData::validate`].
    pub fn from_json(text: &str) -> Result<Self, ReportError> {
        #[derive(Deserialize)]
        struct Version {
            schema_version: u32,
        }
        let v: Version = serde_json::from_str(text).map_err(ReportError::Json)?;
        if v.schema_version != SCHEMA_VERSION {
            return Err(ReportError::UnsupportedSchema { found: v.schema_version });
        }
        let data: Self = serde_json::from_str(text).map_err(ReportError::Json)?;
        data.validate()?;
        Ok(data)
    }
}

/// The report as pretty-printed JSON (schema in `docs/reports.md`), ending in a newline.
///
/// ```
/// use confiance_aggregator::report::{render_json, ReportData};
/// let json = render_json(&ReportData::demo())?;
/// assert!(json.contains("\"schema_version\": 1"));
/// # Ok::<(), confiance_aggregator::report::ReportError>(())
/// ```
///
/// # Errors
/// [`ReportError::InvalidNumber`] when a number is not finite or an interval is reversed
/// (JSON would turn NaN into `null` and the report would not read back).
pub fn render_json(data: &ReportData) -> Result<String, ReportError> {
    data.validate()?;
    let mut s = serde_json::to_string_pretty(data).map_err(ReportError::Json)?;
    s.push('\n');
    Ok(s)
}

/// A report format, as named on a command line: `html`, `json`, `markdown` (or `md`).
///
/// ```
/// use confiance_aggregator::report::{Format, ReportData};
/// let format: Format = "md".parse()?;
/// assert_eq!(format, Format::Markdown);
/// assert_eq!(format.extension(), "md");
/// assert!(format.render(&ReportData::demo())?.starts_with("# "));
/// # Ok::<(), confiance_aggregator::report::ReportError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// [`render_html`].
    Html,
    /// [`render_json`].
    Json,
    /// [`render_markdown`].
    Markdown,
}

impl Format {
    /// The usual file extension: `html`, `json` or `md`.
    #[must_use]
    pub const fn extension(self) -> &'static str {
        match self {
            Self::Html => "html",
            Self::Json => "json",
            Self::Markdown => "md",
        }
    }

    /// Renders `data` in this format.
    ///
    /// # Errors
    /// As [`render_json`] for [`Format::Json`]; the other formats always succeed.
    pub fn render(self, data: &ReportData) -> Result<String, ReportError> {
        match self {
            Self::Html => Ok(render_html(data)),
            Self::Json => render_json(data),
            Self::Markdown => Ok(render_markdown(data)),
        }
    }
}

impl core::str::FromStr for Format {
    type Err = ReportError;

    fn from_str(s: &str) -> Result<Self, ReportError> {
        match s.to_ascii_lowercase().as_str() {
            "html" | "htm" => Ok(Self::Html),
            "json" => Ok(Self::Json),
            "markdown" | "md" => Ok(Self::Markdown),
            _ => Err(ReportError::UnknownFormat(s.to_string())),
        }
    }
}

//! `confiance`: the aggregator's command-line tool (docs/cli.md).
//!
//! Exit codes: 0 ok, 1 refused or bad input, 2 usage, 3 internal error.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{ConsentRequest, ConsentState, DeviceKey, Scope};
use confiance::envelope::{AeadId, KeyConfig, KeyId, SecretKey};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{MetricId, PurposeId, RecipientId};
use confiance::pseudonym::DeviceSecret;
use confiance::recorder::{MemoryStorage, Recorder, RecorderParts, Value as DevValue};
use confiance_aggregator::audit::{SignedCheckpoint, Verifier};
use confiance_aggregator::identity::{self, Access, Identity, IdentityError};
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::ledger::Party;
use confiance_aggregator::report::{
    Format, GatherOptions, LogStatus, ReportData, ReportError, SubjectReport,
};
use confiance_aggregator::server::query::{
    self, ApiError, DiffOf, Query, parse_catalogue, parse_category, parse_metric, parse_purpose,
    parse_recipient, parse_subject, parse_time, run_query,
};
use confiance_aggregator::server::{GroupCommit, KeyFile, KeyFileError, Role, ServerConfig, hex};
use confiance_aggregator::service::{Aggregator, AggregatorConfig};
use serde_json::{Value, json};

/// `println!` that ignores a closed stdout (a reader that went away is not an error).
macro_rules! outln {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

const SAMPLE_CATALOGUE: &str = include_str!("../../../examples/catalogue.toml");

/// The confiance aggregator: ingest sealed reports, answer who sees what, for how long.
#[derive(Parser, Debug)]
#[command(name = "confiance", version, about)]
struct Cli {
    /// The aggregator's database: an SQLite file, or `postgres://user@host:port/db` for
    /// a PostgreSQL database several processes share (docs/scaling.md; the catalogue
    /// then comes from --catalogue and the keys from --keys, files every process shares).
    #[arg(long, global = true, default_value = "./confiance.sqlite")]
    db: PathBuf,
    /// The key file (HPKE keys, checkpoint key, hashed tokens).
    #[arg(long, global = true, default_value = "./confiance.keys")]
    keys: PathBuf,
    /// The catalogue (TOML). Needed when a database is created, which keeps it; later
    /// commands use the database's own, and refuse another (`identity adopt` changes it).
    /// `simulate` on a new database uses the sample `examples/catalogue.toml`.
    #[arg(long, global = true)]
    catalogue: Option<PathBuf>,
    /// Print JSON (docs/cli.md) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Make a key file: an HPKE key for devices and a checkpoint signing key.
    Keygen {
        /// Overwrite an existing key file.
        #[arg(long)]
        force: bool,
        /// The audit log's origin line.
        #[arg(long, default_value = "confiance/audit")]
        origin: String,
        /// Days the HPKE key is valid from now, 1 to 3650 (it is also valid 60 days back).
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=3_650))]
        days: u64,
    },
    /// Add a bearer token for the HTTP API to the key file; prints the token once.
    Token {
        /// recipient, auditor or admin (devices sign what they post and hold no token).
        #[arg(long)]
        role: String,
        /// The recipient a recipient token is bound to.
        #[arg(long)]
        recipient: Option<String>,
    },
    /// Serve the HTTP API (docs/http.md) until SIGTERM or Ctrl-C.
    Serve {
        /// Address to listen on (port 0 picks a free port; the bound address is printed).
        #[arg(long, default_value = "127.0.0.1:8750")]
        addr: std::net::SocketAddr,
        /// Largest request body, in bytes (1 to 64 MiB).
        #[arg(long, default_value_t = 256 * 1024, value_parser = clap::value_parser!(u32).range(1..=64 << 20))]
        max_body: u32,
        /// Group commit: most envelopes one commit holds (1 to 65 536).
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
        commit_max: u32,
        /// Group commit: longest an envelope waits for others, in milliseconds (0 to 1000).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=1_000))]
        commit_wait_ms: u64,
        /// Longest wait for a request's headers, and idle time of a kept-alive
        /// connection, in milliseconds (100 to 600 000).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
        header_timeout_ms: u64,
        /// Longest wait for the next piece of a request body, in milliseconds (100 to 600 000).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
        body_timeout_ms: u64,
        /// Longest time a request may take, body included, in milliseconds (100 to 3 600 000).
        #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
        request_timeout_ms: u64,
        /// On SIGTERM, how long requests in flight may take to finish before the
        /// connections still open are cut, in milliseconds (0 to 600 000).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=600_000))]
        drain_ms: u64,
        /// Most open connections (default: the file-descriptor limit less 64, at most 1024).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        max_connections: Option<u32>,
        /// Most requests handled at once; more wait (1 to 65 536).
        #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=65_536))]
        max_in_flight: u32,
        /// On PostgreSQL, the most subjects of the ledger kept in memory between two
        /// requests; past it they are all forgotten and read again when asked about
        /// (docs/scaling.md). Ignored on SQLite, whose ledger is in memory whole.
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=1 << 32))]
        max_loaded_subjects: u64,
        /// Issue report tokens (`POST /v1/tokens`) and require them on envelopes: a file
        /// holding the issuer's 32-byte secret as 64 hex digits (docs/privacy.md).
        #[arg(long)]
        token_secret: Option<PathBuf>,
    },
    /// Ingest envelopes and signed delegations, receipts, withdrawals and revocations:
    /// files, directories or stdin; each file one message (raw bytes or hex) or a stream of
    /// length-prefixed ones (4-byte big-endian length, then the message). The kind of each
    /// is told from its bytes; delegations go first, then receipts, envelopes,
    /// withdrawals and revocations.
    Ingest {
        /// Files or directories (every file in it, by name); none or `-` reads stdin.
        files: Vec<PathBuf>,
        /// Every input is a length-prefixed stream (also detected: a stream starts with 0x00).
        #[arg(long)]
        framed: bool,
        /// Ingest as of this time (UTC seconds or RFC 3339; default now).
        #[arg(long)]
        now: Option<String>,
    },
    /// The database's identity: the key set and catalogue it is bound to.
    Identity {
        #[command(subcommand)]
        i: IdentityCmd,
    },
    /// Ask the ledger who sees what, for how long.
    Query {
        #[command(subcommand)]
        q: QueryCmd,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        a: AuditCmd,
    },
    /// Write an auditor report (HTML with SVG charts, JSON or Markdown).
    Report {
        /// html, json or markdown.
        #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
        format: ReportFormat,
        /// Output file (default stdout).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// The instant the report is about (default now).
        #[arg(long)]
        at: Option<String>,
        /// The report of one data subject (64 hex digits) instead: devices, who sees what
        /// about them, why, until when, records held, disclosures, consents and
        /// withdrawals (HTML or JSON).
        #[arg(long, conflicts_with = "sent_log")]
        subject: Option<String>,
        /// The same view of a device's own sent log instead: the file holds the bytes of
        /// `Recorder::export_sent_log` (docs/wire-format.md §12), read under the catalogue
        /// (`--catalogue`, or the database's) — who receives what from that device, linked
        /// or not, and until when it may be kept (HTML or JSON).
        #[arg(long, value_name = "FILE")]
        sent_log: Option<PathBuf>,
    },
    /// Release a metric to a recipient (an audit event): the estimate of an anonymous
    /// metric, or the pseudonymous records the consent in force allows.
    Release {
        /// The recipient.
        recipient: String,
        /// The metric.
        metric: String,
        /// Reports or records from (UTC seconds or RFC 3339; default the epoch).
        #[arg(long)]
        from: Option<String>,
        /// Up to (exclusive; default the end of time).
        #[arg(long)]
        to: Option<String>,
        /// Release as of this time (default now).
        #[arg(long)]
        now: Option<String>,
    },
    /// Delete what is past its deadline.
    Purge {
        /// As of this time (default now).
        #[arg(long)]
        now: Option<String>,
    },
    /// Simulate a small seeded fleet of thermostats into the database.
    Simulate {
        /// Number of devices.
        #[arg(long, default_value_t = 200)]
        devices: u64,
        /// Days of reports, ending now.
        #[arg(long, default_value_t = 3)]
        days: u64,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Work on the catalogue itself (no database needed).
    Catalogue {
        #[command(subcommand)]
        cmd: CatalogueCmd,
    },
}

#[derive(Subcommand, Debug)]
enum CatalogueCmd {
    /// Compile the catalogue (`--catalogue`, TOML, or the one stored in `--db`) to its canonical bytes, for devices
    /// that load it without a TOML parser (`Catalogue::from_canonical_bytes`, `no_std`).
    Compile {
        /// Where to write the canonical bytes.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum QueryCmd {
    /// Every recipient and metric that sees a subject's data.
    Subject {
        /// Subject id (64 hex digits).
        subject: String,
        #[command(flatten)]
        t: AtArgs,
    },
    /// What a recipient sees.
    Recipient {
        /// Recipient id.
        recipient: String,
        #[command(flatten)]
        t: AtArgs,
    },
    /// Who sees a metric.
    Metric {
        /// Metric id.
        metric: String,
        #[command(flatten)]
        t: AtArgs,
    },
    /// May a recipient have a metric of a subject for a purpose?
    Check {
        /// Recipient id.
        #[arg(long)]
        recipient: String,
        /// Metric id.
        #[arg(long)]
        metric: String,
        /// Purpose id.
        #[arg(long)]
        purpose: String,
        /// Subject id.
        #[arg(long)]
        subject: String,
        #[command(flatten)]
        t: AtArgs,
    },
    /// The facts recorded about a subject or a recipient.
    History {
        /// Subject id.
        #[arg(long, conflicts_with = "recipient", required_unless_present = "recipient")]
        subject: Option<String>,
        /// Recipient id.
        #[arg(long)]
        recipient: Option<String>,
        #[command(flatten)]
        w: Window,
    },
    /// Who sees the metrics of a data category.
    Category {
        /// Category id.
        category: String,
        #[command(flatten)]
        t: AtArgs,
    },
    /// What changed in who sees what between two instants, for a subject, a recipient, a
    /// metric or a category (exactly one).
    Diff {
        /// Subject id.
        #[arg(long, group = "of")]
        subject: Option<String>,
        /// Recipient id.
        #[arg(long, group = "of")]
        recipient: Option<String>,
        /// Metric id.
        #[arg(long, group = "of")]
        metric: Option<String>,
        /// Category id.
        #[arg(long, group = "of")]
        category: Option<String>,
        /// The earlier instant (UTC seconds or RFC 3339).
        #[arg(long)]
        from: String,
        /// The later instant.
        #[arg(long)]
        to: String,
        /// Record time of both answers (default: as known now).
        #[arg(long)]
        as_known_at: Option<String>,
    },
    /// Who would gain or lose access to what if the catalogue were replaced by another.
    CatalogueDiff {
        /// The candidate catalogue (TOML).
        #[arg(value_name = "CATALOGUE")]
        candidate: PathBuf,
    },
    /// Data held past its deadline.
    Overdue {
        /// As of (valid time; default now).
        #[arg(long)]
        now: Option<String>,
        /// Record time (default: as known now).
        #[arg(long)]
        as_known_at: Option<String>,
    },
    /// Disclosures the consent valid at their time did not allow.
    Disclosures {
        #[command(flatten)]
        w: Window,
    },
}

#[derive(clap::Args, Debug)]
struct AtArgs {
    /// Valid time (UTC seconds or RFC 3339; default now).
    #[arg(long)]
    at: Option<String>,
    /// Record time (default: as known now).
    #[arg(long)]
    as_known_at: Option<String>,
}

#[derive(clap::Args, Debug)]
struct Window {
    /// Start (inclusive; default the epoch).
    #[arg(long)]
    from: Option<String>,
    /// End (exclusive; default the end of time).
    #[arg(long)]
    to: Option<String>,
}

#[derive(Subcommand, Debug)]
enum IdentityCmd {
    /// Print the key-set fingerprint and catalogue digest stored in the database, and
    /// those of the given key file and catalogue.
    Show,
    /// Bind the database to the given key file and catalogue (a key rotation or a
    /// catalogue change); the change is kept in the database's identity history.
    Adopt,
}

#[derive(Subcommand, Debug)]
enum AuditCmd {
    /// Recompute the log from every event and check it against a fresh signed checkpoint,
    /// and, with `--checkpoint`, that the log only grew since that earlier checkpoint.
    Verify {
        /// An earlier checkpoint (text from `audit checkpoint`).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Print a signed checkpoint of the log now.
    Checkpoint,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ReportFormat {
    Html,
    Json,
    Markdown,
}

/// A failure with its exit code and, for a common mistake, a hint at the fix.
struct Fail {
    code: u8,
    err: ApiError,
    hint: Option<String>,
    /// A result document printed before the error (ingest with refused messages).
    partial: Option<Box<Value>>,
}

impl From<ApiError> for Fail {
    fn from(err: ApiError) -> Self {
        Self { code: if err.status >= 500 { 3 } else { 1 }, err, hint: None, partial: None }
    }
}

impl Fail {
    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The error document: `{"error": {"code", "message", "hint"?}}`, inside the
    /// partial result when there is one, so `--json` prints exactly one document.
    fn to_json(&self) -> Value {
        let mut e = self.err.to_json();
        if let (Some(h), Some(o)) = (&self.hint, e.get_mut("error").and_then(Value::as_object_mut)) {
            o.insert("hint".into(), json!(h));
        }
        match self.partial.as_deref() {
            Some(Value::Object(p)) => {
                let mut p = p.clone();
                p.insert("error".into(), e["error"].take());
                Value::Object(p)
            }
            _ => e,
        }
    }
}

impl Cmd {
    /// Commands that only read the database (and so never create one).
    const fn read_only(&self) -> bool {
        matches!(self, Self::Query { .. } | Self::Audit { .. } | Self::Report { .. } | Self::Identity { .. })
    }
}

fn bad(code: &'static str, msg: impl Into<String>) -> Fail {
    ApiError::new(400, code, msg).into()
}

/// Writes `--out`, whole or not at all: a full disk leaves the file it would replace as
/// it was ("nothing was changed").
fn write_out(path: &Path, bytes: &[u8]) -> Result<(), Fail> {
    confiance_aggregator::server::replace_file(path, bytes, None).map_err(|e| unwritable(path, &e, "--out"))
}

/// A file `flag` names could not be written: a path that cannot be (no such directory,
/// no permission, a directory) is the caller's to fix (`bad_file`, exit 1); anything
/// else, a full disk, is the file system failing (exit 3).
fn unwritable(path: &Path, e: &std::io::Error, flag: &str) -> Fail {
    if path_at_fault(e) {
        bad("bad_file", format!("{}: {e}", path.display())).hint(format!(
            "nothing was written: {flag} names a file in an existing directory you may write to"
        ))
    } else {
        internal(format!("{}: {e}", path.display()))
    }
}

/// Whether an I/O error says the disk could not take the bytes (full, over quota).
fn disk_failed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
    matches!(e.kind(), StorageFull | QuotaExceeded | FileTooLarge)
}

/// Whether an I/O error is the path's (no such directory, no permission, a directory):
/// the caller's to fix, exit 1. Anything else, a full disk first, is the file system
/// failing (exit 3).
fn path_at_fault(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{IsADirectory, NotADirectory, NotFound, PermissionDenied, ReadOnlyFilesystem};
    matches!(e.kind(), NotFound | PermissionDenied | IsADirectory | NotADirectory | ReadOnlyFilesystem)
}

/// `serve` could not listen on `--addr`.
fn unbound(addr: std::net::SocketAddr, e: &std::io::Error) -> Fail {
    bad("bad_address", format!("cannot listen on {addr}: {e}")).hint(match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "another process listens on this address (an earlier `confiance serve`?): stop it, or give another --addr"
        }
        std::io::ErrorKind::PermissionDenied => "ports below 1024 need privileges: give another --addr",
        _ => "--addr must be an address of this host and a free port, e.g. 127.0.0.1:8750",
    })
}

/// The database file could not be opened or read: a full disk or an I/O error is
/// `store_failed` (exit 3), as the same failure is over HTTP; a corrupt file stays
/// `internal`, the code of a bug or a corrupt database (docs/http.md, "Errors").
fn database_failed(e: &IdentityError) -> Fail {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match e {
        IdentityError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
            if matches!(f.code, DatabaseCorrupt | NotADatabase) =>
        {
            internal(e)
        }
        _ => ApiError::store_failed(e.to_string()).into(),
    }
}

fn internal(msg: impl std::fmt::Display) -> Fail {
    ApiError::internal(msg.to_string()).into()
}

/// The hint for an error code when the command gave none.
fn default_hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "unknown_recipient" | "unknown_metric" | "unknown_purpose" | "unknown_category" => {
            "ids are those of the database's catalogue (`confiance identity show` names it)"
        }
        "bad_time" => "times are UTC seconds or RFC 3339, e.g. 2027-01-01T00:00:00Z",
        "bad_subject" => "a subject id is 64 hex digits (`confiance query history --recipient R` lists some)",
        "too_few_reports" => {
            "wait for more reports or widen --from/--to: the minimum is the catalogue's limits.min_release_reports (docs/catalogue.md)"
        }
        "nothing_to_release" => "no partition of this metric open to this recipient is held in the window",
        "wrong_track" => {
            "`release` gives estimates of anonymous metrics and records of pseudonymous ones; this metric has neither for this recipient"
        }
        "store_failed" | "internal" => {
            "nothing was changed; check the disk and the database file, then run the command again"
        }
        _ => return None,
    })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let json = cli.json;
    let human = HumanKind::of(&cli.cmd);
    match run(cli) {
        Ok(v) => {
            print_out(&v, json, human);
            ExitCode::SUCCESS
        }
        Err(mut f) => {
            if f.hint.is_none() {
                f.hint = default_hint(f.err.code).map(str::to_owned);
            }
            if json {
                outln!("{}", f.to_json());
            } else {
                if let Some(p) = &f.partial {
                    print_out(p, false, human);
                }
                eprintln!("confiance: {}", f.err);
                if let Some(h) = &f.hint {
                    eprintln!("  hint: {h}");
                }
            }
            ExitCode::from(f.code)
        }
    }
}

/// How far ahead of this machine's clock `purge --now` may be (clock skew between the
/// machine that chose the instant and this one).
const PURGE_CLOCK_SKEW_SECS: u64 = 300;

fn wall_now() -> Timestamp {
    Timestamp::from_secs(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    )
}

fn time_or_now(s: Option<&String>) -> Result<Timestamp, Fail> {
    s.map_or(Ok(wall_now()), |s| parse_time(s).map_err(Fail::from))
}

/// The catalogue's text: the file given with `--catalogue`, else the one the database
/// stored when it was created; a new database needs `--catalogue` (`simulate` alone
/// falls back to the sample, whose ids its fleet uses).
fn catalogue_text(cli: &Cli) -> Result<String, Fail> {
    if let Some(p) = &cli.catalogue {
        return std::fs::read_to_string(p).map_err(|e| {
            bad("bad_catalogue", format!("{}: {e}", p.display()))
                .hint("--catalogue names the catalogue's TOML file (docs/catalogue.md)")
        });
    }
    if cli.db.exists() {
        // An empty or non-SQLite file is refused as such, not read as a database.
        let mut magic = [0u8; 16];
        let sqlite = std::fs::File::open(&cli.db)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok_and(|()| &magic == b"SQLite format 3\0");
        if !sqlite {
            let e = if std::fs::metadata(&cli.db).is_ok_and(|m| m.len() == 0) {
                IdentityError::Empty(cli.db.clone())
            } else {
                IdentityError::Foreign(cli.db.clone(), "not an SQLite file")
            };
            return Err(not_a_database(cli, &e));
        }
        return match identity::read(&cli.db) {
            Ok(Some(id)) if !id.catalogue_text.is_empty() => Ok(id.catalogue_text),
            Ok(_)
                if matches!(
                    identity::check(
                        &cli.db,
                        &Identity {
                            key_fingerprint: [0; 32],
                            catalogue_digest: [0; 32],
                            catalogue_text: String::new()
                        },
                        Access::ReadOnly
                    ),
                    Err(IdentityError::Foreign(..))
                ) =>
            {
                Err(not_a_database(
                    cli,
                    &IdentityError::Foreign(cli.db.clone(), "an SQLite database without confiance's tables"),
                ))
            }
            Ok(_) => Err(missing_catalogue(cli).hint(format!(
                "{} was made before databases kept their catalogue: give it once with --catalogue FILE",
                cli.db.display()
            ))),
            Err(e @ (IdentityError::Io(_) | IdentityError::Sqlite(_))) => Err(database_failed(&e)),
            Err(e) => Err(not_a_database(cli, &e)),
        };
    }
    if matches!(cli.cmd, Cmd::Simulate { .. }) {
        return Ok(SAMPLE_CATALOGUE.to_owned());
    }
    if cli.cmd.read_only() {
        return Err(no_database(cli, &IdentityError::Missing(cli.db.clone())));
    }
    if matches!(cli.cmd, Cmd::Catalogue { .. }) {
        // No database is made here: say what the command reads, not what a new one needs.
        return Err(bad(
            "missing_catalogue",
            format!("no catalogue to compile: no --catalogue was given and {} does not exist", cli.db.display()),
        )
        .hint("give the catalogue's TOML file: --catalogue FILE (or --db of a database, whose stored catalogue is compiled)"));
    }
    Err(missing_catalogue(cli))
}

fn missing_catalogue(cli: &Cli) -> Fail {
    bad("missing_catalogue", format!("{}: no catalogue: the database does not exist yet and no --catalogue was given", cli.db.display()))
        .hint("give the catalogue the new database is for: --catalogue FILE (it is stored in the database and used from then on; examples/catalogue.toml is a sample)")
}

fn no_database(cli: &Cli, e: &IdentityError) -> Fail {
    Fail::from(ApiError::new(404, "no_database", e.to_string())).hint(format!(
        "check --db (default ./confiance.sqlite); a read-only command never creates a database: make it with `confiance ingest --catalogue FILE …` or `confiance simulate`, or pass the path of the existing one{}",
        if cli.db.is_relative() { " (relative paths are from the current directory)" } else { "" }
    ))
}

fn not_a_database(cli: &Cli, e: &IdentityError) -> Fail {
    bad("not_a_database", e.to_string())
        .hint(format!("--db {} is not a confiance database: check the path", cli.db.display()))
}

fn parse_catalogue_text(text: &str, source: &str) -> Result<Catalogue, Fail> {
    Catalogue::from_toml_str(text).map_err(|e| {
        bad("bad_catalogue", format!("{source}: {e}")).hint("the catalogue format is in docs/catalogue.md")
    })
}

fn catalogue_source(cli: &Cli) -> String {
    cli.catalogue
        .as_ref()
        .map_or_else(|| format!("the catalogue stored in {}", cli.db.display()), |p| p.display().to_string())
}

fn catalogue(cli: &Cli) -> Result<Catalogue, Fail> {
    parse_catalogue_text(&catalogue_text(cli)?, &catalogue_source(cli))
}

fn key_file(cli: &Cli) -> Result<KeyFile, Fail> {
    KeyFile::read(&cli.keys).map_err(|e| {
        bad("bad_key_file", format!("{}: {e}", cli.keys.display())).hint(if cli.keys.exists() {
            "--keys must name a key file written by `confiance keygen` (docs/cli.md, \"The key file\")"
                .to_owned()
        } else {
            format!(
                "no key file at {}: make one with `confiance keygen --keys {}`, or point --keys at the database's own",
                cli.keys.display(),
                cli.keys.display()
            )
        })
    })
}

/// The identity the key file and catalogue in use would bind a database to.
fn identity(cli: &Cli, kf: &KeyFile) -> Result<(Identity, Catalogue), Fail> {
    let text = catalogue_text(cli)?;
    let cat = parse_catalogue_text(&text, &catalogue_source(cli))?;
    Ok((
        Identity {
            key_fingerprint: kf.fingerprint().map_err(|e| bad("bad_key_file", e))?,
            catalogue_digest: cat.digest().0,
            catalogue_text: text,
        },
        cat,
    ))
}

/// `name` version N (digest 0123abcd…).
fn describe_catalogue(c: &Catalogue) -> String {
    format!("`{}` version {} (digest {}…)", c.name(), c.version(), &hex(&c.digest().0)[..16])
}

/// Opens the database after checking that it is one, and bound to this key file and
/// catalogue. A read-only command never creates a database, and opens it read-only.
fn open_as(cli: &Cli, kf: &KeyFile, access: Access) -> Result<Aggregator, Fail> {
    if let Some(url) = postgres_url(cli) {
        return open_postgres(cli, kf, url, access, AggregatorConfig::default());
    }
    let keys = kf.key_store().map_err(|e| bad("bad_key_file", e))?;
    let (id, cat) = identity(cli, kf)?;
    match identity::check(&cli.db, &id, access) {
        Ok(_) => {}
        Err(e @ (IdentityError::Io(_) | IdentityError::Sqlite(_))) => return Err(database_failed(&e)),
        Err(e @ IdentityError::Missing(_)) => return Err(no_database(cli, &e)),
        Err(e @ IdentityError::KeyMismatch { .. }) => {
            return Err(Fail::from(ApiError::new(409, "identity_mismatch", e.to_string())).hint(format!(
                "wrong key file: --keys {} is not the one {} was made with; use that one, or record a key rotation with `confiance identity adopt`",
                cli.keys.display(),
                cli.db.display()
            )));
        }
        Err(IdentityError::CatalogueMismatch { .. }) => {
            let stored = identity::read(&cli.db).ok().flatten().map_or_else(
                || "another catalogue".to_owned(),
                |s| {
                    Catalogue::from_toml_str(&s.catalogue_text).map_or_else(
                        |_| format!("catalogue digest {}…", &hex(&s.catalogue_digest)[..16]),
                        |c| format!("catalogue {}", describe_catalogue(&c)),
                    )
                },
            );
            return Err(Fail::from(ApiError::new(
                409,
                "identity_mismatch",
                format!(
                    "{} was made for {stored}, but {} is catalogue {}",
                    cli.db.display(),
                    catalogue_source(cli),
                    describe_catalogue(&cat)
                ),
            ))
            .hint("omit --catalogue to use the database's own, or record the change with `confiance identity adopt --catalogue FILE`"));
        }
        Err(e) => return Err(not_a_database(cli, &e)),
    }
    let path = match access {
        // SQLite's URI form (rusqlite opens with SQLITE_OPEN_URI): any write fails.
        Access::ReadOnly => PathBuf::from(format!("file:{}?mode=ro", uri_path(&cli.db))),
        Access::ReadWrite => cli.db.clone(),
    };
    Aggregator::open(&path, cat, keys, AggregatorConfig::default()).map_err(|e| {
        if access == Access::ReadOnly && wrote_read_only(&e) {
            // Opening repairs what a crash between two commits left (docs/crash-safety.md):
            // a read-only open cannot, and this is what an auditor meets on a log whose
            // consent events were removed, too.
            return Fail::from(ApiError::new(
                409,
                "needs_repair",
                format!(
                    "{}: the database needs a repair a read-only command cannot make: its ledger holds consent the audit log has no event for, or its holdings lag the store (a crash between two commits, or events removed from the log)",
                    cli.db.display()
                ),
            ))
            .hint("a read-write command (`confiance purge`, `serve`) repairs it, appending the missing consent events at the end of the log; `audit verify --checkpoint` with a checkpoint saved before then tells whether events were removed");
        }
        internal(format!("{}: {e}", cli.db.display()))
    })
}

/// Whether opening failed because it had to write to a database opened read-only.
fn wrote_read_only(e: &confiance_aggregator::service::ServiceError) -> bool {
    use confiance_aggregator::audit::AuditError;
    use confiance_aggregator::ledger::LedgerError;
    use confiance_aggregator::service::ServiceError;
    use confiance_aggregator::store::StoreError;
    let sqlite = match e {
        ServiceError::Store(StoreError::Sqlite(e) | StoreError::Audit(AuditError::Sqlite(e)))
        | ServiceError::Ledger(LedgerError::Store(e)) => e,
        _ => return false,
    };
    sqlite.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly)
}

/// The PostgreSQL URL `--db` gives, if it is one.
fn postgres_url(cli: &Cli) -> Option<&str> {
    cli.db.to_str().filter(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
}

/// Opens the store and the ledger on the PostgreSQL database at `url`, shared with other
/// processes. Nothing of the identity is in that database: the catalogue is the file
/// `--catalogue` names (the ledger refuses one it was not created with) and the keys are
/// the key file's, files every process reads alike. The ledger is opened lazily whatever
/// the command: it loads no subject at open, and each command (each request of `serve`)
/// loads what it reads (docs/scaling.md). `ReadWrite` (`serve`, `ingest`, `release`,
/// `purge`, `simulate`) reconciles from the stored watermark first; `ReadOnly` (`query`,
/// `audit`, `report`) does not reconcile and writes nothing (but a schema migration): the
/// database is served by other processes, and a read answers from it as it is.
#[cfg(feature = "postgres")]
fn open_postgres(
    cli: &Cli,
    kf: &KeyFile,
    url: &str,
    access: Access,
    config: AggregatorConfig,
) -> Result<Aggregator, Fail> {
    use confiance_aggregator::ledger::Ledger;
    use confiance_aggregator::store::PgStore;
    let keys = kf.key_store().map_err(|e| bad("bad_key_file", e))?;
    if cli.catalogue.is_none() {
        return Err(bad("missing_catalogue", "--db postgres://… needs --catalogue FILE").hint(
            "several processes share a PostgreSQL database: each reads the catalogue from the same file",
        ));
    }
    let cat = parse_catalogue_text(&catalogue_text(cli)?, &catalogue_source(cli))?;
    let store = PgStore::connect(url).map_err(|e| internal(format!("postgres store: {e}")))?;
    let ledger = Ledger::open_postgres_lazy(url, cat.clone())
        .map_err(|e| internal(format!("postgres ledger: {e}")))?;
    let open = match access {
        Access::ReadWrite => Aggregator::with_store,
        Access::ReadOnly => Aggregator::with_store_unreconciled,
    };
    open(Box::new(store), ledger, cat, keys, config).map_err(|e| internal(format!("postgres: {e}")))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(_: &Cli, _: &KeyFile, _: &str, _: Access, _: AggregatorConfig) -> Result<Aggregator, Fail> {
    Err(bad("no_postgres", "this build has no PostgreSQL support (cargo feature `postgres`)"))
}

/// `path` escaped for a `file:` URI.
fn uri_path(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    abs.to_string_lossy().replace('%', "%25").replace('?', "%3f").replace('#', "%23")
}

fn open(cli: &Cli, kf: &KeyFile) -> Result<Aggregator, Fail> {
    open_as(cli, kf, Access::ReadWrite)
}

fn open_read_only(cli: &Cli, kf: &KeyFile) -> Result<Aggregator, Fail> {
    open_as(cli, kf, Access::ReadOnly)
}

fn identity_cmd(cli: &Cli, i: &IdentityCmd) -> Result<Value, Fail> {
    if postgres_url(cli).is_some() {
        return Err(bad(
            "bad_parameter",
            "`identity` reads the identity an SQLite database keeps; a PostgreSQL database keeps none: nothing binds it to a key file, and its ledger refuses a catalogue other than its own",
        )
        .hint("every process of a PostgreSQL database reads the same --keys and --catalogue files (docs/cli.md, \"--db postgres://…\")"));
    }
    let kf = key_file(cli)?;
    let (given, cat) = identity(cli, &kf)?;
    let fail = |e: IdentityError| match e {
        IdentityError::Missing(_) => no_database(cli, &e),
        IdentityError::Io(_) | IdentityError::Sqlite(_) => database_failed(&e),
        _ => not_a_database(cli, &e),
    };
    match i {
        IdentityCmd::Show => {
            let stored = identity::read(&cli.db).map_err(fail)?;
            let stored_cat = stored.as_ref().and_then(|s| Catalogue::from_toml_str(&s.catalogue_text).ok());
            Ok(json!({
                "stored_key_set": stored.as_ref().map(|s| hex(&s.key_fingerprint)),
                "stored_catalogue": stored.as_ref().map(|s| hex(&s.catalogue_digest)),
                "stored_catalogue_name": stored_cat.as_ref().map(|c| c.name().to_owned()),
                "stored_catalogue_version": stored_cat.as_ref().map(Catalogue::version),
                "given_key_set": hex(&given.key_fingerprint),
                "given_catalogue": hex(&given.catalogue_digest),
                "given_catalogue_name": cat.name(),
                "given_catalogue_version": cat.version(),
                "matches": stored.as_ref().map(|s| s.key_fingerprint == given.key_fingerprint && s.catalogue_digest == given.catalogue_digest),
            }))
        }
        IdentityCmd::Adopt => {
            let changed = identity::adopt(&cli.db, &given, wall_now().as_secs()).map_err(fail)?;
            for (what, old, new) in &changed {
                eprintln!("confiance: identity of {}: {what} {} -> {}", cli.db.display(), hex(old), hex(new));
            }
            Ok(json!({
                "changed": changed.iter().map(|(what, old, new)| json!({"what": what, "old": hex(old), "new": hex(new)})).collect::<Vec<_>>(),
            }))
        }
    }
}

fn random32() -> Result<[u8; 32], Fail> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(internal)?;
    Ok(b)
}

fn run(cli: Cli) -> Result<Value, Fail> {
    match &cli.cmd {
        Cmd::Keygen { force, origin, days } => keygen(&cli, *force, origin, *days),
        Cmd::Token { role, recipient } => {
            let role: Role = role.parse().map_err(|()| {
                bad("bad_role", format!("unknown role `{role}`")).hint(if role == "device" {
                    "devices hold no token: they sign what they post (docs/http.md, \"Migration\"); the roles are recipient, auditor and admin"
                } else {
                    "the roles are recipient (with --recipient R), auditor and admin"
                })
            })?;
            let recipient = match (role, recipient) {
                (Role::Recipient, Some(r)) => {
                    let c = catalogue(&cli)?;
                    let r: RecipientId = r.parse().map_err(|_| bad("bad_id", "bad recipient id"))?;
                    if c.recipient(&r).is_none() {
                        return Err(ApiError::new(
                            404,
                            "unknown_recipient",
                            format!("unknown recipient `{r}`"),
                        )
                        .into());
                    }
                    Some(r)
                }
                (Role::Recipient, None) => {
                    return Err(bad("missing_parameter", "a recipient token needs --recipient"));
                }
                (_, Some(_)) => return Err(bad("bad_parameter", "only recipient tokens take --recipient")),
                (_, None) => None,
            };
            let random = random32()?;
            // Read, add and write under the key file's lock: concurrent runs each add theirs.
            let token =
                KeyFile::update(&cli.keys, |kf| Ok::<_, Fail>(kf.add_token(role, recipient.clone(), random)))
                    .map_err(|e| match &e {
                        // A full disk is not the key file's fault: exit 3, the file unchanged.
                        KeyFileError::Io(io) if disk_failed(io) => {
                            internal(format!("{}: {e}", cli.keys.display()))
                        }
                        _ => bad("bad_key_file", format!("{}: {e}", cli.keys.display())),
                    })??;
            Ok(json!({"role": role.as_str(), "recipient": recipient.map(|r| r.to_string()), "token": token}))
        }
        Cmd::Serve {
            addr,
            max_body,
            commit_max,
            commit_wait_ms,
            header_timeout_ms,
            body_timeout_ms,
            request_timeout_ms,
            drain_ms,
            max_connections,
            max_in_flight,
            max_loaded_subjects,
            token_secret,
        } => {
            let kf = key_file(&cli)?;
            // On PostgreSQL the ledger is loaded lazily: a start reads no subject.
            let config = AggregatorConfig {
                max_loaded_subjects: usize::try_from(*max_loaded_subjects).unwrap_or(usize::MAX),
                ..AggregatorConfig::default()
            };
            let mut agg = match postgres_url(&cli) {
                Some(url) => open_postgres(&cli, &kf, url, Access::ReadWrite, config)?,
                None => open(&cli, &kf)?,
            };
            if let Some(path) = token_secret {
                let hint = "--token-secret names a file holding the issuer's secret as 64 hex digits, e.g. made with `openssl rand -hex 32 > FILE` (docs/cli.md, serve)";
                let text = std::fs::read_to_string(path)
                    .map_err(|e| bad("bad_token_secret", format!("{}: {e}", path.display())).hint(hint))?;
                let bytes: [u8; 32] = confiance_aggregator::server::unhex(text.trim())
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| {
                        bad(
                            "bad_token_secret",
                            format!("{}: the token secret file must hold 64 hex digits", path.display()),
                        )
                        .hint(hint)
                    })?;
                agg.enable_tokens(confiance_aggregator::issuer::IssuerSecret::from_bytes(bytes))
                    .map_err(internal)?;
            }
            let signer = kf.signer().map_err(|e| bad("bad_key_file", e))?;
            let ms = std::time::Duration::from_millis;
            let mut config = ServerConfig::new(*max_body as usize, kf.tokens.clone());
            config.group_commit =
                GroupCommit { max_envelopes: *commit_max as usize, max_wait: ms(*commit_wait_ms) };
            let l = &mut config.limits;
            l.header_timeout = ms(*header_timeout_ms);
            l.body_timeout = ms(*body_timeout_ms);
            l.request_timeout = ms(*request_timeout_ms);
            l.drain = ms(*drain_ms);
            l.max_in_flight = *max_in_flight as usize;
            if let Some(n) = max_connections {
                l.max_connections = *n as usize;
            }
            // Request logs on stderr (docs/http.md, "Operations").
            let _ = tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_max_level(tracing::Level::INFO)
                .with_target(false)
                .with_ansi(false)
                .try_init();
            let json_out = cli.json;
            // A lazily loaded ledger says (`--json`) how many subjects its start loaded:
            // none unless the reconciliation repaired something (also on `/metrics`).
            let loaded = agg.ledger().loaded_subjects();
            let listening = std::cell::Cell::new(false);
            confiance_aggregator::server::serve(agg, signer, config, *addr, |bound| {
                listening.set(true);
                match (json_out, loaded) {
                    (true, Some(n)) => {
                        outln!("{}", json!({"listening": bound.to_string(), "loaded_subjects": n}));
                    }
                    (true, None) => outln!("{}", json!({"listening": bound.to_string()})),
                    (false, _) => outln!("listening on {bound}"),
                }
                let _ = std::io::stdout().flush();
            })
            .map_err(|e| match e {
                // Not bound yet: the address is the operator's to change, not a failure inside.
                confiance_aggregator::server::ServeError::Io(io) if !listening.get() => unbound(*addr, &io),
                e => internal(e),
            })?;
            Ok(json!({"stopped": true}))
        }
        Cmd::Ingest { files, framed, now } => ingest(&cli, files, *framed, time_or_now(now.as_ref())?),
        Cmd::Identity { i } => identity_cmd(&cli, i),
        Cmd::Query { q } => {
            let kf = key_file(&cli)?;
            let mut agg = open_read_only(&cli, &kf)?;
            let q = build_query(&agg, q)?;
            // On PostgreSQL the ledger was opened lazily: `run_query` loads what `q` reads.
            Ok(run_query(&mut agg, &q)?)
        }
        Cmd::Audit { a } => audit(&cli, a),
        Cmd::Report { format, out, sent_log: Some(file), .. } => {
            sent_log_report(&cli, *format, out.as_deref(), file)
        }
        Cmd::Report { format, out, at, subject: None, sent_log: None } => {
            report(&cli, *format, out.as_deref(), time_or_now(at.as_ref())?)
        }
        Cmd::Report { format, out, at, subject: Some(s), sent_log: None } => {
            subject_report(&cli, *format, out.as_deref(), time_or_now(at.as_ref())?, s)
        }
        Cmd::Release { recipient, metric, from, to, now } => {
            let kf = key_file(&cli)?;
            let mut agg = open(&cli, &kf)?;
            let r = parse_recipient(&agg, recipient)?;
            let m = parse_metric(&agg, metric)?;
            let from = from.as_deref().map_or(Ok(Timestamp::EPOCH), parse_time)?;
            let to = to.as_deref().map_or(Ok(Timestamp::MAX), parse_time)?;
            Ok(query::release(&mut agg, &r, &m, from, to, time_or_now(now.as_ref())?)?)
        }
        Cmd::Purge { now } => {
            let kf = key_file(&cli)?;
            let at = time_or_now(now.as_ref())?;
            // A purge dated ahead would forget report ids, spent tokens and envelope
            // digests that can still arrive (replays accepted) and destroy period keys
            // before their deadline: refused before the database is opened.
            if at > wall_now().saturating_add_secs(PURGE_CLOCK_SKEW_SECS) {
                return Err(bad(
                    "purge_in_future",
                    format!("--now {} is after this machine's clock", at.to_rfc3339()),
                )
                .hint("a purge acts as of now or a past instant; leave --now out"));
            }
            let mut agg = open(&cli, &kf)?;
            let p = agg.purge(at).map_err(|e| Fail::from(ApiError::from_service(&e)))?;
            Ok(
                json!({"partitions": p.partitions, "records": p.records, "keys_destroyed": p.keys_destroyed.len()}),
            )
        }
        Cmd::Simulate { devices, days, seed } => simulate(&cli, *devices, *days, *seed),
        Cmd::Catalogue { cmd: CatalogueCmd::Compile { out } } => {
            let c = catalogue(&cli)?;
            let bytes = c.canonical_bytes();
            write_out(out, &bytes)?;
            Ok(json!({
                "out": out.display().to_string(),
                "bytes": bytes.len(),
                "name": c.name(),
                "version": c.version(),
                "digest": hex(&c.digest().0),
            }))
        }
    }
}

fn keygen(cli: &Cli, force: bool, origin: &str, days: u64) -> Result<Value, Fail> {
    if cli.keys.exists() && !force {
        return Err(bad("exists", format!("{} exists (use --force to replace it)", cli.keys.display())));
    }
    let now = wall_now();
    let mut rng = SeededRng::from_seed(random32()?);
    let mut ks = KeyStore::new(7 * 86_400);
    // A random key id, so that two key files almost never share one and an envelope
    // sealed to another aggregator's key is refused as `unknown key`, not as a
    // decryption failure.
    let id = random32()?;
    let secret = SecretKey::generate(&mut rng);
    let config = KeyConfig::new(
        KeyId(u16::from_be_bytes([id[0], id[1]])),
        AeadId::ChaCha20Poly1305,
        secret.public_key(),
        now.saturating_sub_secs(60 * 86_400),
        now.saturating_add_secs(days.saturating_mul(86_400)),
    )
    .map_err(internal)?;
    ks.insert(config, secret).map_err(internal)?;
    let hpke = ks.iter().map(|(c, s)| (*c, s.to_bytes())).collect();
    let kf = KeyFile {
        grace_secs: ks.grace_secs(),
        hpke,
        log_origin: origin.to_owned(),
        log_secret: zeroize::Zeroizing::new(random32()?),
        tokens: Vec::new(),
    };
    let signer = kf.signer().map_err(|e| bad("bad_origin", e))?;
    kf.write(&cli.keys).map_err(|e| match &e {
        KeyFileError::Io(io) => unwritable(&cli.keys, io, "--keys"),
        _ => internal(e),
    })?;
    Ok(json!({
        "key_file": cli.keys.display().to_string(),
        "key_id": config.id.0,
        "key_config": hex(&config.to_bytes()),
        "log_origin": origin,
        "log_public_key": hex(signer.verifying_key().as_bytes()),
    }))
}

/// What a message is, in the order `ingest` takes them: delegations first (a device's
/// receipts need its delegation), then receipts (envelopes need them), envelopes,
/// withdrawals (a withdrawal ends a receipt from its instant, reports before it stay
/// valid) and revocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum MessageKind {
    Delegation,
    Receipt,
    Envelope,
    Withdrawal,
    Revocation,
}

impl MessageKind {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Delegation => "delegation",
            Self::Receipt => "receipt",
            Self::Envelope => "envelope",
            Self::Withdrawal => "withdrawal",
            Self::Revocation => "revocation",
        }
    }
}

/// One message read from a file or stdin.
struct Message {
    /// `FILE`, or `FILE#N` for the N-th message (from 0) of a framed stream.
    source: String,
    bytes: Vec<u8>,
}

const MALFORMED_HINT: &str = "ingest takes envelopes (first byte 0x01) and signed delegations, receipts, withdrawals and revocations (first byte 0x02, docs/wire-format.md §7), as raw bytes or hex text, one per file, or a stream of them each preceded by its length as 4 bytes big-endian";

/// Tells the message kind from its bytes (docs/wire-format.md): envelopes start with
/// 0x01, consent messages with their version 0x02 and are told apart by which strict
/// decoder takes them. A message that decodes but does not verify is still given its
/// kind, so that the ledger refuses it with the typed reason.
fn detect(bytes: &[u8]) -> Result<MessageKind, String> {
    use confiance::consent::{
        ConsentError as C, SignedDelegation, SignedReceipt, SignedRevocation, SignedWithdrawal,
    };
    match bytes.first() {
        None => Err("empty".into()),
        Some(0x01) => Ok(MessageKind::Envelope),
        Some(0x02) => {
            let tries: [(MessageKind, Result<(), C>); 4] = [
                (MessageKind::Delegation, SignedDelegation::from_bytes(bytes).map(drop)),
                (MessageKind::Revocation, SignedRevocation::from_bytes(bytes).map(drop)),
                (MessageKind::Receipt, SignedReceipt::from_bytes(bytes).map(drop)),
                (MessageKind::Withdrawal, SignedWithdrawal::from_bytes(bytes).map(drop)),
            ];
            if let Some((k, _)) = tries.iter().find(|(_, r)| r.is_ok()) {
                return Ok(*k);
            }
            // Decoded, but refused after: the shape is this kind's.
            let shaped: Vec<MessageKind> = tries
                .iter()
                .filter(|(_, r)| !matches!(r, Err(C::Malformed(_) | C::TrailingBytes(_) | C::TooLarge(_))))
                .map(|(k, _)| *k)
                .collect();
            match shaped.as_slice() {
                [k] => Ok(*k),
                _ => Err(format!(
                    "a {} byte message with version 0x02 that decodes as no delegation, revocation, receipt or withdrawal",
                    bytes.len()
                )),
            }
        }
        Some(b) => Err(format!(
            "first byte 0x{b:02x} starts neither an envelope (0x01) nor a consent message (0x02)"
        )),
    }
}

/// Hex text (digits and white space only) decoded; anything else as it is.
fn maybe_hex(bytes: Vec<u8>) -> Vec<u8> {
    let digits: Vec<u8> = bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) || !digits.iter().all(u8::is_ascii_hexdigit) {
        return bytes;
    }
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
        .unwrap_or(bytes)
}

/// Splits a stream of length-prefixed messages (4 bytes big-endian, then the message).
fn read_framed(source: &str, mut data: &[u8]) -> Result<Vec<Message>, Fail> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    while !data.is_empty() {
        let framing = |what: &str| {
            bad("bad_framing", format!("{source}: {what} at byte {offset} (message #{})", out.len()))
                .hint(MALFORMED_HINT)
        };
        let (len, rest) = data.split_at_checked(4).ok_or_else(|| framing("truncated length prefix"))?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (msg, rest) = rest.split_at_checked(len).ok_or_else(|| framing("truncated message"))?;
        out.push(Message { source: format!("{source}#{}", out.len()), bytes: msg.to_vec() });
        offset += 4 + len;
        data = rest;
    }
    Ok(out)
}

/// The messages of one input: a framed stream when asked, or when it starts with a zero
/// byte (a length prefix below 16 MiB; no message starts with 0x00); else one message.
fn messages_of(source: &str, bytes: Vec<u8>, framed: bool) -> Result<Vec<Message>, Fail> {
    if framed || bytes.first() == Some(&0) {
        read_framed(source, &bytes)
    } else {
        Ok(vec![Message { source: source.to_owned(), bytes: maybe_hex(bytes) }])
    }
}

/// Reads every input before anything is ingested: a file, every file of a directory
/// (sorted by name, hidden ones skipped, not recursive), or stdin (`-`, or no FILE).
fn read_inputs(files: &[PathBuf], framed: bool) -> Result<Vec<Message>, Fail> {
    let mut out = Vec::new();
    let unreadable = |p: &Path, e: std::io::Error| {
        bad("bad_file", format!("{}: {e}", p.display())).hint("nothing was ingested; check the path")
    };
    if files.is_empty() || files.iter().any(|f| f.as_os_str() == "-") {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map_err(internal)?;
        out.extend(messages_of("stdin", buf, framed)?);
    }
    for f in files.iter().filter(|f| f.as_os_str() != "-") {
        let meta = std::fs::metadata(f).map_err(|e| unreadable(f, e))?;
        let paths = if meta.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(f)
                .map_err(|e| unreadable(f, e))?
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .collect();
            v.sort();
            v
        } else {
            vec![f.clone()]
        };
        for p in paths {
            let bytes = std::fs::read(&p).map_err(|e| unreadable(&p, e))?;
            out.extend(messages_of(&p.display().to_string(), bytes, framed)?);
        }
    }
    Ok(out)
}

/// The hint for a refused message.
fn message_hint(code: &str) -> Option<&'static str> {
    Some(match code {
        "unrecognized" | "malformed_envelope" | "bad_consent" => MALFORMED_HINT,
        "unknown_key" => {
            "the envelope was sealed to an HPKE key not in --keys: give devices this key file's key_config (`confiance keygen` prints it; GET /v1/keys serves it), or use the key file the devices were given"
        }
        "unknown_receipt" => {
            "the device's consent receipt is not in the ledger: ingest its receipts too (in the same run is fine: receipts are taken before envelopes)"
        }
        "bad_signature" | "subject_key_mismatch" | "subject_mismatch" => {
            "the signature does not verify for the key the message names: a truncated or altered file, or a device key the subject never delegated (ingest its delegation first)"
        }
        "duplicate_receipt"
        | "duplicate_delegation"
        | "replayed_envelope"
        | "already_withdrawn"
        | "already_revoked" => "already ingested: nothing changed",
        "bad_catalogue_digest" | "catalogue_mismatch" => {
            "the device used another catalogue than the database's (`confiance identity show`)"
        }
        _ => return None,
    })
}

fn ingest(cli: &Cli, files: &[PathBuf], framed: bool, now: Timestamp) -> Result<Value, Fail> {
    let messages = read_inputs(files, framed)?;
    let kf = key_file(cli)?;
    let mut agg = open(cli, &kf)?;
    let mut order: Vec<(usize, Result<MessageKind, String>)> =
        messages.iter().enumerate().map(|(i, m)| (i, detect(&m.bytes))).collect();
    // Stable: within a kind, the order given.
    order.sort_by_key(|(i, k)| (k.as_ref().map_or(MessageKind::Revocation, |k| *k), *i));
    let mut results: Vec<(usize, Value)> = Vec::with_capacity(messages.len());
    let (mut accepted, mut reports) = (0u64, 0u64);
    let mut kinds: std::collections::BTreeMap<&'static str, u64> = std::collections::BTreeMap::new();
    for (i, kind) in order {
        let m = &messages[i];
        let refused = |code: &'static str, message: String| {
            let mut v = json!({"index": i, "source": m.source, "ok": false, "code": code, "message": format!("{}: {message}", m.source)});
            if let Some(h) = message_hint(code) {
                v["hint"] = json!(h);
            }
            v
        };
        let kind = match kind {
            Ok(k) => k,
            Err(why) => {
                let mut v = refused("unrecognized", why);
                v["kind"] = Value::Null;
                results.push((i, v));
                continue;
            }
        };
        let service = |r: Result<Value, confiance_aggregator::service::ServiceError>| {
            r.map_err(|e| ApiError::from_service(&e))
        };
        let outcome: Result<Value, ApiError> = match kind {
            MessageKind::Envelope => match agg.ingest(&m.bytes, now) {
                Ok(ack) => {
                    reports += u64::from(ack.reports);
                    let refused: Vec<Value> = ack
                        .refused
                        .iter()
                        .map(|r| json!({"index": r.index, "code": r.refusal.code(), "retry": r.retry}))
                        .collect();
                    Ok(json!({"envelope": hex(&ack.envelope.0), "reports": ack.reports, "refused": refused}))
                }
                Err(e) => Err(ApiError::from_ingest(&e)),
            },
            MessageKind::Receipt => {
                service(agg.receive_receipt(&m.bytes, now).map(|id| json!({"receipt": hex(&id.0)})))
            }
            MessageKind::Withdrawal => service(
                agg.receive_withdrawal(&m.bytes, now)
                    .map(|id| json!({"receipt": hex(&id.0), "withdrawn": true})),
            ),
            MessageKind::Delegation => {
                service(agg.receive_delegation(&m.bytes, now).map(|id| json!({"delegation": hex(&id.0)})))
            }
            MessageKind::Revocation => service(
                agg.receive_revocation(&m.bytes, now).map(|d| json!({"device": hex(&d.0), "revoked": true})),
            ),
        };
        match outcome {
            Ok(detail) => {
                accepted += 1;
                *kinds.entry(kind.as_str()).or_default() += 1;
                let mut v = json!({"index": i, "source": m.source, "kind": kind.as_str(), "ok": true});
                if let (Some(o), Value::Object(d)) = (v.as_object_mut(), detail) {
                    o.extend(d);
                }
                results.push((i, v));
            }
            Err(a) if a.status >= 500 => {
                return Err(Fail::from(a).hint(format!(
                    "stopped at {}; messages before it were kept, and ingesting them again is harmless",
                    m.source
                )));
            }
            Err(a) => {
                let mut v = refused(a.code, a.message);
                v["kind"] = json!(kind.as_str());
                results.push((i, v));
            }
        }
    }
    results.sort_by_key(|(i, _)| *i);
    let refused = messages.len() as u64 - accepted;
    let v = json!({
        "accepted": accepted,
        "refused": refused,
        "reports": reports,
        "kinds": kinds,
        "results": results.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    });
    if refused > 0 {
        let mut f = Fail::from(ApiError::new(
            400,
            "refused",
            format!("{refused} of {} messages refused (see results)", messages.len()),
        ));
        f.partial = Some(Box::new(v));
        return Err(f);
    }
    Ok(v)
}

fn build_query(agg: &Aggregator, q: &QueryCmd) -> Result<Query, Fail> {
    let at = |t: &AtArgs| -> Result<(Timestamp, Option<Timestamp>), Fail> {
        Ok((time_or_now(t.at.as_ref())?, t.as_known_at.as_deref().map(parse_time).transpose()?))
    };
    let window = |w: &Window| -> Result<(Timestamp, Timestamp), Fail> {
        Ok((
            w.from.as_deref().map_or(Ok(Timestamp::EPOCH), parse_time)?,
            w.to.as_deref().map_or(Ok(Timestamp::MAX), parse_time)?,
        ))
    };
    Ok(match q {
        QueryCmd::Subject { subject, t } => {
            let (at, as_known_at) = at(t)?;
            Query::Subject { subject: parse_subject(subject)?, at, as_known_at }
        }
        QueryCmd::Recipient { recipient, t } => {
            let (at, as_known_at) = at(t)?;
            Query::Recipient { recipient: parse_recipient(agg, recipient)?, at, as_known_at }
        }
        QueryCmd::Metric { metric, t } => {
            let (at, as_known_at) = at(t)?;
            Query::Metric { metric: parse_metric(agg, metric)?, at, as_known_at }
        }
        QueryCmd::Check { recipient, metric, purpose, subject, t } => {
            let (at, as_known_at) = at(t)?;
            Query::Check {
                recipient: parse_recipient(agg, recipient)?,
                metric: parse_metric(agg, metric)?,
                purpose: parse_purpose(agg, purpose)?,
                subject: parse_subject(subject)?,
                at,
                as_known_at,
            }
        }
        QueryCmd::History { subject, recipient, w } => {
            let party = match (subject, recipient) {
                (Some(s), _) => Party::Subject(parse_subject(s)?),
                (None, Some(r)) => Party::Recipient(parse_recipient(agg, r)?),
                (None, None) => return Err(bad("missing_parameter", "--subject or --recipient")),
            };
            let (from, to) = window(w)?;
            Query::History { party, from, to }
        }
        QueryCmd::Category { category, t } => {
            let (at, as_known_at) = at(t)?;
            Query::Category { category: parse_category(agg, category)?, at, as_known_at }
        }
        QueryCmd::Diff { subject, recipient, metric, category, from, to, as_known_at } => {
            let of = match (subject, recipient, metric, category) {
                (Some(s), ..) => DiffOf::Subject(parse_subject(s)?),
                (_, Some(r), ..) => DiffOf::Recipient(parse_recipient(agg, r)?),
                (_, _, Some(m), _) => DiffOf::Metric(parse_metric(agg, m)?),
                (.., Some(c)) => DiffOf::Category(parse_category(agg, c)?),
                _ => {
                    return Err(bad(
                        "missing_parameter",
                        "one of --subject, --recipient, --metric, --category",
                    ));
                }
            };
            Query::Diff {
                of,
                from: parse_time(from)?,
                to: parse_time(to)?,
                as_known_at: as_known_at.as_deref().map(parse_time).transpose()?,
            }
        }
        QueryCmd::CatalogueDiff { candidate } => {
            let text = std::fs::read_to_string(candidate)
                .map_err(|e| bad("bad_catalogue", format!("{}: {e}", candidate.display())))?;
            Query::CatalogueDiff { other: Box::new(parse_catalogue(&text)?) }
        }
        QueryCmd::Overdue { now, as_known_at } => Query::Overdue {
            now: time_or_now(now.as_ref())?,
            as_known_at: as_known_at.as_deref().map(parse_time).transpose()?,
        },
        QueryCmd::Disclosures { w } => {
            let (from, to) = window(w)?;
            Query::Disclosures { from, to }
        }
    })
}

fn audit(cli: &Cli, a: &AuditCmd) -> Result<Value, Fail> {
    let kf = key_file(cli)?;
    let agg = open_read_only(cli, &kf)?;
    let signer = kf.signer().map_err(|e| bad("bad_key_file", e))?;
    let verifier = Verifier::new(signer.origin(), signer.verifying_key()).map_err(internal)?;
    let log = agg.store().audit_log().map_err(internal)?;
    let cp = log.checkpoint(&signer, wall_now());
    match a {
        AuditCmd::Checkpoint => Ok(json!({
            "tree_size": cp.checkpoint().size(),
            "root": hex(cp.checkpoint().root()),
            "text": cp.to_text(),
        })),
        AuditCmd::Verify { checkpoint } => {
            let size = log.size();
            let refused = |code: &'static str, m: String| Fail::from(ApiError::new(422, code, m));
            let events =
                log.export(size).map_err(|e| refused("log_invalid", format!("export failed: {e}")))?;
            verifier
                .audit(&cp, &events)
                .map_err(|e| refused("log_invalid", format!("full audit failed: {e}")))?;
            // The nodes off the root's path too: the proofs served to auditors read them.
            log.check_nodes().map_err(|e| refused("log_invalid", format!("stored tree: {e}")))?;
            // The ledger's rows against the signed bytes they were accepted from (the log
            // holds their ids only), read after the log: a fact whose event is not among
            // `events` may have been written since by a process serving the database, so
            // the events appended meanwhile are read before calling it missing.
            let later = || -> Result<Vec<_>, String> {
                let now = agg.store().audit_log().map_err(|e| e.to_string())?;
                (size..now.size()).map(|i| now.event(i).map_err(|e| e.to_string())).collect()
            };
            let facts = confiance_aggregator::audit::verify_signed_facts(agg.ledger(), &events, later)
                .map_err(|e| {
                    refused("ledger_invalid", e).hint(
                        "a row edited, inserted or deleted in the database; a consent fact without its event may also be a crash between the ledger's commit and the log's append that no `serve` start or `purge` has repaired yet",
                    )
                })?;
            let mut consistency = Value::Null;
            if let Some(p) = checkpoint {
                let hint = "the file holds the `text` of `confiance --json audit checkpoint` or of GET /v1/audit/checkpoint (e.g. `jq -r .text`)";
                let text = std::fs::read_to_string(p)
                    .map_err(|e| bad("bad_file", format!("{}: {e}", p.display())).hint(hint))?;
                let old = SignedCheckpoint::from_text(&saved_note(&text))
                    .map_err(|e| bad("bad_checkpoint", format!("{}: {e}", p.display())).hint(hint))?;
                verifier.verify_checkpoint(&old).map_err(|e| refused("checkpoint_invalid", e.to_string()))?;
                let old_size = old.checkpoint().size();
                if old_size > size {
                    return Err(refused(
                        "log_invalid",
                        format!(
                            "the log has {size} events but {} signs a log of {old_size}: events were lost since (a database restored from a backup, or tampering)",
                            p.display()
                        ),
                    ));
                }
                // Every log extends the empty one: RFC 9162 has no proof from size 0.
                if old.checkpoint().size() > 0 {
                    let proof = log
                        .consistency_proof(old.checkpoint().size(), size)
                        .map_err(|e| refused("log_invalid", e.to_string()))?;
                    verifier.verify_consistency(&old, &cp, &proof).map_err(|e| {
                        refused("log_invalid", format!("not consistent with the earlier checkpoint: {e}"))
                    })?;
                }
                consistency = json!(true);
            }
            Ok(json!({
                "verified": true,
                "tree_size": size,
                "root": hex(cp.checkpoint().root()),
                "events": events.len(),
                "consistent_with_checkpoint": consistency,
                "signed_facts": {
                    "receipts": facts.receipts,
                    "withdrawals": facts.withdrawals,
                    "delegations": facts.delegations,
                    "revocations": facts.revocations,
                    "unsigned_receipts": facts.unsigned_receipts,
                    "certificates": facts.certificates,
                    "uncertified_delegations": facts.uncertified_delegations,
                },
            }))
        }
    }
}

/// A signed note as a person saves it: `jq -r`, `echo` or an editor add a final newline
/// (or CRLF line ends) after the one the note ends with. Those bytes come after the last
/// signature line, outside what is signed, so the note is read with exactly one.
fn saved_note(text: &str) -> String {
    let mut note = text.replace("\r\n", "\n").trim_end().to_owned();
    note.push('\n');
    note
}

fn report(cli: &Cli, format: ReportFormat, out: Option<&Path>, at: Timestamp) -> Result<Value, Fail> {
    let kf = key_file(cli)?;
    let mut agg = open_read_only(cli, &kf)?;
    let signer = kf.signer().map_err(|e| bad("bad_key_file", e))?;
    let title = format!("Who sees what — {}", agg.catalogue().name());
    let opts = GatherOptions {
        title: &title,
        at,
        generated_at: wall_now(),
        signer: Some(&signer),
        ..GatherOptions::default()
    };
    // On PostgreSQL (a lazily loaded ledger) a page of subjects at a time, as GET
    // /v1/report; on SQLite the same as `gather`.
    let data = ReportData::gather_paged(&mut agg, &opts).map_err(internal)?;
    let fmt = match format {
        ReportFormat::Html => Format::Html,
        ReportFormat::Json => Format::Json,
        ReportFormat::Markdown => Format::Markdown,
    };
    let text = fmt.render(&data).map_err(internal)?;
    match out {
        Some(p) => {
            write_out(p, text.as_bytes())?;
            Ok(json!({
                "written": p.display().to_string(),
                "bytes": text.len(),
                "access_rows": data.access.len(),
                "estimates": data.estimates.len(),
                "retention_rows": data.retention.len(),
                "log_verified": data.log.as_ref().is_some_and(LogStatus::all_verified),
            }))
        }
        None => {
            let _ = write!(std::io::stdout(), "{text}");
            std::process::exit(0);
        }
    }
}

/// `report --subject ID`: one data subject's report.
fn subject_report(
    cli: &Cli,
    format: ReportFormat,
    out: Option<&Path>,
    at: Timestamp,
    subject: &str,
) -> Result<Value, Fail> {
    let sid = confiance_aggregator::server::unhex(subject)
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .map(confiance::ids::SubjectId)
        .ok_or_else(|| bad("bad_subject", format!("{subject:?} is not a subject id")))?;
    let text = match format {
        ReportFormat::Html | ReportFormat::Json => {
            let kf = key_file(cli)?;
            let mut agg = open_read_only(cli, &kf)?;
            agg.load_subject(&sid).map_err(|e| internal(format!("ledger: {e}")))?;
            let r = SubjectReport::gather(&agg, &sid, at, wall_now());
            if matches!(format, ReportFormat::Json) {
                r.render_json().map_err(internal)?
            } else {
                r.render_html()
            }
        }
        ReportFormat::Markdown => {
            return Err(bad("bad_parameter", "a subject report is HTML or JSON (--format html|json)"));
        }
    };
    match out {
        Some(p) => {
            write_out(p, text.as_bytes())?;
            Ok(json!({"written": p.display().to_string(), "bytes": text.len()}))
        }
        None => {
            let _ = write!(std::io::stdout(), "{text}");
            std::process::exit(0);
        }
    }
}

/// `report --sent-log FILE`: a device's sent log as the subject report's view.
fn sent_log_report(cli: &Cli, format: ReportFormat, out: Option<&Path>, file: &Path) -> Result<Value, Fail> {
    if matches!(format, ReportFormat::Markdown) {
        return Err(bad("bad_parameter", "a sent-log report is HTML or JSON (--format html|json)"));
    }
    let hint = "the file holds the bytes of the device's Recorder::export_sent_log (docs/wire-format.md §12)";
    let bytes = std::fs::read(file)
        .map_err(|e| bad("bad_sent_log", format!("{}: {e}", file.display())).hint(hint))?;
    let catalogue = catalogue(cli)?;
    let r = SubjectReport::from_sent_log(&bytes, &catalogue, wall_now()).map_err(|e| match e {
        ReportError::CatalogueMismatch { .. } => {
            bad("catalogue_mismatch", format!("{}: {e}", file.display()))
                .hint("read it under the catalogue the device sent under: --catalogue FILE")
        }
        e => bad("bad_sent_log", format!("{}: {e}", file.display())).hint(hint),
    })?;
    let text = if matches!(format, ReportFormat::Json) {
        r.render_json().map_err(internal)?
    } else {
        r.render_html()
    };
    match out {
        Some(p) => {
            write_out(p, text.as_bytes())?;
            Ok(json!({"written": p.display().to_string(), "bytes": text.len()}))
        }
        None => {
            let _ = write!(std::io::stdout(), "{text}");
            std::process::exit(0);
        }
    }
}

fn id<T: std::str::FromStr>(s: &str) -> Result<T, Fail> {
    s.parse().map_err(|_| internal(format!("bad id {s}")))
}

fn simulate(cli: &Cli, devices: u64, days: u64, seed: u64) -> Result<Value, Fail> {
    if !(1..=14).contains(&days) {
        return Err(bad(
            "bad_parameter",
            "--days is 1 to 14 (the aggregator takes reports up to 14 days old)",
        ));
    }
    let kf = key_file(cli)?;
    let mut agg = open(cli, &kf)?;
    let cat = agg.catalogue().clone();
    let configs: Vec<_> = kf.hpke.iter().map(|(c, _)| *c).collect();
    let now = wall_now().truncate(86_400);
    let start = now.saturating_sub_secs(days * 86_400);
    let (calora, gridco): (RecipientId, RecipientId) = (id("calora")?, id("gridco")?);
    let (improve, grid, service): (PurposeId, PurposeId, PurposeId) =
        (id("product-improvement")?, id("grid-balancing")?, id("service")?);
    let (mode, setpoint, fault): (MetricId, MetricId, MetricId) =
        (id("thermostat.mode")?, id("thermostat.setpoint")?, id("thermostat.fault-code")?);
    let (mut envelopes, mut reports, mut receipts, mut withdrawals) = (0u64, 0u64, 0u64, 0u64);
    let mut subjects = Vec::new();
    let given = start.saturating_sub_secs(3_600);
    for i in 0..devices {
        let mut drng = SeededRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(i));
        let parts = RecorderParts {
            catalogue: cat.clone(),
            consent: ConsentState::new(DeviceKey::generate(&mut drng)),
            pseudonyms: DeviceSecret::generate(&mut drng),
            controller: calora.clone(),
            key_configs: configs.clone(),
            rng: drng,
        };
        let mut d = Recorder::new(parts, MemoryStorage::default());
        let mut give = |d: &mut Recorder<SeededRng, MemoryStorage>,
                        agg: &mut Aggregator,
                        r: &RecipientId,
                        p: &PurposeId,
                        ms: &[&MetricId]|
         -> Result<confiance::ids::ReceiptId, Fail> {
            let bytes = d
                .give_consent(
                    ConsentRequest::new(
                        r.clone(),
                        p.clone(),
                        Scope::metrics(ms.iter().map(|m| (*m).clone())),
                        "P90D".parse().map_err(|_| internal("period"))?,
                    ),
                    given,
                )
                .map_err(internal)?;
            receipts += 1;
            agg.receive_receipt(&bytes, given).map_err(internal)
        };
        give(&mut d, &mut agg, &calora, &improve, &[&mode, &setpoint])?;
        if i % 2 == 0 {
            give(&mut d, &mut agg, &calora, &service, &[&fault])?;
        }
        let grid_receipt =
            if i % 3 == 0 { Some(give(&mut d, &mut agg, &gridco, &grid, &[&mode])?) } else { None };
        if subjects.len() < 5 {
            subjects.push(hex(&d.subject().0));
        }
        for day in 0..days {
            let t = start.saturating_add_secs(day * 86_400 + 43_200);
            let m = u32::try_from((i + day) % 4).unwrap_or(0);
            let _ = d.record(&mode, &improve, DevValue::Category(m), t);
            if grid_receipt.is_some() {
                let _ = d.record(&mode, &grid, DevValue::Category(m), t);
            }
            let _ = d.record(&setpoint, &improve, DevValue::Int(180 + i64::try_from(i % 40).unwrap_or(0)), t);
            if i % 2 == 0 {
                let _ = d.record_service(&fault, DevValue::Int(i64::try_from(i % 8).unwrap_or(0)), t);
            }
            let flushed = t.saturating_add_secs(86_400 - 43_200 - 60);
            for f in d.flush(flushed) {
                let ack = agg.ingest(&f, flushed).map_err(|e| Fail::from(ApiError::from_ingest(&e)))?;
                d.acknowledge(&f);
                envelopes += 1;
                reports += u64::from(ack.reports);
            }
            if day + 1 == days / 2 + 1
                && i % 9 == 0
                && let Some(g) = &grid_receipt
            {
                let at = flushed.saturating_add_secs(1);
                let bytes = d.withdraw_consent(g, at).map_err(internal)?;
                agg.receive_withdrawal(&bytes, at).map_err(internal)?;
                withdrawals += 1;
            }
        }
    }
    // A release of the estimate and of service records, so disclosures and releases exist.
    let released = agg.release(&calora, &mode, Timestamp::EPOCH, Timestamp::MAX, now).is_ok();
    let records =
        agg.release_records(&calora, &fault, Timestamp::EPOCH, Timestamp::MAX, now).map_or(0, |r| r.len());
    Ok(json!({
        "devices": devices,
        "days": days,
        "seed": seed,
        "receipts": receipts,
        "withdrawals": withdrawals,
        "envelopes": envelopes,
        "reports": reports,
        "estimate_released": released,
        "records_released": records,
        "sample_subjects": subjects,
    }))
}

// ----- human output ------------------------------------------------------------------

/// How a command's answer is shown without `--json`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HumanKind {
    Ingest,
    Release,
    Other,
}

impl HumanKind {
    const fn of(cmd: &Cmd) -> Self {
        match cmd {
            Cmd::Ingest { .. } => Self::Ingest,
            Cmd::Release { .. } => Self::Release,
            _ => Self::Other,
        }
    }
}

/// Fields that hold an instant (UTC seconds in JSON, RFC 3339 in tables).
const TIME_FIELDS: &[&str] = &[
    "at",
    "as_known_at",
    "now",
    "from",
    "to",
    "until",
    "recorded_at",
    "collected_at",
    "valid_from",
    "valid_until",
    "bucket_end",
    "deadline",
    "records_until",
    "allowed_until",
    "issued_at",
    "purged_at",
    "withdrawn_at",
    "revoked_at",
];

fn is_time_field(key: &str) -> bool {
    TIME_FIELDS.contains(&key)
}

/// A number as people read it: integers whole, others to 3 decimals (none from 10 000).
fn number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let x = n.as_f64().unwrap_or(f64::NAN);
    if x.abs() >= 10_000.0 { format!("{x:.0}") } else { format!("{x:.3}") }
}

fn instant(secs: u64) -> String {
    if secs == u64::MAX { "never".into() } else { Timestamp::from_secs(secs).to_rfc3339() }
}

/// One cell: times in RFC 3339, an open window in words, nested objects as `k=v`.
fn cell(key: &str, v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Number(n) if is_time_field(key) => n.as_u64().map_or_else(|| number(n), instant),
        Value::Number(n) => number(n),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        // A list of records in one cell would drown the table: its size says enough.
        Value::Array(a) if a.iter().any(Value::is_object) => a.len().to_string(),
        Value::Array(a) => a.iter().map(|x| cell(key, x)).collect::<Vec<_>>().join(", "),
        Value::Object(o) => match (o.get("kind").and_then(Value::as_str), o.get("at")) {
            (Some("open_until_withdrawn"), _) => "open — until withdrawn".into(),
            (Some("at"), Some(Value::Number(t))) => t.as_u64().map_or_else(|| number(t), instant),
            _ => o
                .iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| if k == "fact" { cell(k, x) } else { format!("{k}={}", cell(k, x)) })
                .collect::<Vec<_>>()
                .join(" "),
        },
    }
}

/// A table: one column per field, in the order of the first row that has it (the
/// documents list their fields in reading order).
fn table(rows: &[Value]) {
    let mut cols: Vec<String> = Vec::new();
    for r in rows {
        if let Value::Object(o) = r {
            for k in o.keys() {
                if !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
    }
    if cols.is_empty() {
        for r in rows {
            outln!("  {}", cell("", r));
        }
        return;
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|c| r.get(c).map_or_else(String::new, |v| cell(c, v))).collect())
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| cells.iter().map(|r| r[i].chars().count()).chain([c.len()]).max().unwrap_or(0))
        .collect();
    let line = |vals: &[String]| {
        let s: Vec<String> = vals.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        outln!("  {}", s.join("  ").trim_end());
    };
    line(&cols);
    for r in &cells {
        line(r);
    }
}

fn print_generic(v: &Value) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match x {
                    Value::Array(a) if a.iter().any(Value::is_object) => {
                        outln!("{k} ({}):", a.len());
                        table(a);
                    }
                    Value::Array(a) if a.is_empty() => outln!("{k}: (none)"),
                    Value::String(s) if s.contains('\n') => outln!("{k}:\n{s}"),
                    _ => outln!("{k}: {}", cell(k, x)),
                }
            }
        }
        other => outln!("{}", cell("", other)),
    }
}

fn print_ingest(v: &Value) {
    let rows: Vec<Value> = v["results"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let outcome = if r["ok"] == true {
                        match r["kind"].as_str() {
                            Some("envelope") => {
                                let refused = r["refused"].as_array().map_or(0, Vec::len);
                                format!(
                                    "accepted: {} reports{}",
                                    r["reports"],
                                    if refused > 0 { format!(", {refused} refused") } else { String::new() }
                                )
                            }
                            Some("withdrawal") => "accepted: receipt withdrawn".into(),
                            Some("revocation") => "accepted: device revoked".into(),
                            _ => "accepted".into(),
                        }
                    } else {
                        format!("refused: {}", r["code"].as_str().unwrap_or("?"))
                    };
                    json!({
                        "source": r["source"],
                        "kind": r["kind"].as_str().unwrap_or("unrecognized"),
                        "outcome": outcome,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    table(&rows);
    outln!(
        "{} accepted, {} refused, {} reports kept",
        cell("", &v["accepted"]),
        cell("", &v["refused"]),
        cell("", &v["reports"])
    );
    let mut hints: Vec<&str> = Vec::new();
    for r in v["results"].as_array().into_iter().flatten().filter(|r| r["ok"] == false) {
        outln!("  {}", r["message"].as_str().unwrap_or(""));
        if let Some(h) = r["hint"].as_str()
            && !hints.contains(&h)
        {
            hints.push(h);
        }
    }
    for h in hints {
        outln!("  hint: {h}");
    }
}

fn print_release(v: &Value) {
    if v["kind"] == "records" {
        outln!(
            "{} records of {} released to {}",
            cell("", &v["count"]),
            cell("", &v["metric"]),
            cell("", &v["recipient"])
        );
        if let Some(a) = v["records"].as_array().filter(|a| !a.is_empty()) {
            table(a);
        }
        return;
    }
    let share = v["statistic"] == "share";
    outln!(
        "estimate of {} released to {}: {} reports in {} partitions",
        cell("", &v["metric"]),
        cell("", &v["recipient"]),
        cell("", &v["n"]),
        cell("", &v["partitions"])
    );
    let rows: Vec<Value> = v["values"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    let mut row = serde_json::Map::new();
                    row.insert("label".into(), x["label"].clone());
                    row.insert(if share { "share" } else { "mean" }.into(), x["value"].clone());
                    row.insert(
                        "95% interval".into(),
                        json!(format!("{} – {}", cell("", &x["ci95_low"]), cell("", &x["ci95_high"]))),
                    );
                    row.insert("std error".into(), x["std_error"].clone());
                    if share {
                        row.insert("raw estimate".into(), x["raw"].clone());
                    }
                    Value::Object(row)
                })
                .collect()
        })
        .unwrap_or_default();
    table(&rows);
    if v["projected"] == true {
        outln!(
            "note: some raw estimates fell outside [0, 1] (the noise of randomized response, scaled up by debiasing); the shares shown are their projection onto shares that are non-negative and sum to 1, the raw unbiased estimates are kept beside them"
        );
    }
    if v["n"].as_u64().is_some_and(|n| n < 1_000) {
        outln!("note: from fewer than 1 000 reports the intervals are wide: read the shares as rough");
    }
}

fn print_out(v: &Value, json: bool, human: HumanKind) {
    if json {
        outln!("{v}");
        return;
    }
    match human {
        HumanKind::Ingest => print_ingest(v),
        HumanKind::Release => print_release(v),
        HumanKind::Other => print_generic(v),
    }
}

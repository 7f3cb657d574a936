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
use confiance_aggregator::report::{Format, GatherOptions, LogStatus, ReportData};
use confiance_aggregator::server::query::{
    ApiError, DiffOf, Query, parse_catalogue, parse_category, parse_metric, parse_purpose, parse_recipient,
    parse_subject, parse_time, release_json, run_query,
};
use confiance_aggregator::server::{GroupCommit, KeyFile, Role, ServerConfig, hex};
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
    /// The aggregator's database.
    #[arg(long, global = true, default_value = "./confiance.sqlite")]
    db: PathBuf,
    /// The key file (HPKE keys, checkpoint key, hashed tokens).
    #[arg(long, global = true, default_value = "./confiance.keys")]
    keys: PathBuf,
    /// The catalogue (TOML); default: the embedded sample `examples/catalogue.toml`.
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
    },
    /// Ingest envelopes: one per file, or length-prefixed (4-byte big-endian length, then
    /// the envelope) with `--framed` or from stdin (`-` or no file).
    Ingest {
        /// Envelope files; none or `-` reads framed envelopes from stdin.
        files: Vec<PathBuf>,
        /// The files hold length-prefixed envelopes.
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
    },
    /// Release an estimate of an anonymous metric to a recipient (an audit event).
    Release {
        /// The recipient.
        recipient: String,
        /// The metric.
        metric: String,
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
    /// Compile the catalogue (`--catalogue`, TOML) to its canonical bytes, for devices
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

/// A failure with its exit code.
struct Fail {
    code: u8,
    err: ApiError,
}

impl From<ApiError> for Fail {
    fn from(err: ApiError) -> Self {
        Self { code: if err.status >= 500 { 3 } else { 1 }, err }
    }
}

fn bad(code: &'static str, msg: impl Into<String>) -> Fail {
    ApiError::new(400, code, msg).into()
}

fn internal(msg: impl std::fmt::Display) -> Fail {
    ApiError::internal(msg.to_string()).into()
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
    match run(cli) {
        Ok(v) => {
            print_out(&v, json);
            ExitCode::SUCCESS
        }
        Err(f) => {
            if json {
                outln!("{}", f.err.to_json());
            } else {
                eprintln!("confiance: {}", f.err);
            }
            ExitCode::from(f.code)
        }
    }
}

fn wall_now() -> Timestamp {
    Timestamp::from_secs(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    )
}

fn time_or_now(s: Option<&String>) -> Result<Timestamp, Fail> {
    s.map_or(Ok(wall_now()), |s| parse_time(s).map_err(Fail::from))
}

fn catalogue(cli: &Cli) -> Result<Catalogue, Fail> {
    let text = match &cli.catalogue {
        Some(p) => {
            std::fs::read_to_string(p).map_err(|e| bad("bad_catalogue", format!("{}: {e}", p.display())))?
        }
        None => SAMPLE_CATALOGUE.to_owned(),
    };
    Catalogue::from_toml_str(&text).map_err(|e| bad("bad_catalogue", format!("catalogue: {e}")))
}

fn key_file(cli: &Cli) -> Result<KeyFile, Fail> {
    KeyFile::read(&cli.keys).map_err(|e| bad("bad_key_file", format!("{}: {e}", cli.keys.display())))
}

/// The identity the key file and catalogue given on the command line would bind a
/// database to.
fn identity(cli: &Cli, kf: &KeyFile) -> Result<Identity, Fail> {
    let text = match &cli.catalogue {
        Some(p) => {
            std::fs::read_to_string(p).map_err(|e| bad("bad_catalogue", format!("{}: {e}", p.display())))?
        }
        None => SAMPLE_CATALOGUE.to_owned(),
    };
    Ok(Identity {
        key_fingerprint: kf.fingerprint().map_err(|e| bad("bad_key_file", e))?,
        catalogue_digest: catalogue(cli)?.digest().0,
        catalogue_text: text,
    })
}

/// Opens the database after checking that it is one, and bound to this key file and
/// catalogue. A read-only command never creates a database, and opens it read-only.
fn open_as(cli: &Cli, kf: &KeyFile, access: Access) -> Result<Aggregator, Fail> {
    let keys = kf.key_store().map_err(|e| bad("bad_key_file", e))?;
    let id = identity(cli, kf)?;
    match identity::check(&cli.db, &id, access) {
        Ok(_) => {}
        Err(e @ (IdentityError::Io(_) | IdentityError::Sqlite(_))) => return Err(internal(e)),
        Err(e @ IdentityError::Missing(_)) => {
            return Err(ApiError::new(404, "no_database", e.to_string()).into());
        }
        Err(e @ (IdentityError::KeyMismatch { .. } | IdentityError::CatalogueMismatch { .. })) => {
            return Err(ApiError::new(409, "identity_mismatch", e.to_string()).into());
        }
        Err(e) => return Err(bad("not_a_database", e.to_string())),
    }
    let path = match access {
        // SQLite's URI form (rusqlite opens with SQLITE_OPEN_URI): any write fails.
        Access::ReadOnly => PathBuf::from(format!("file:{}?mode=ro", uri_path(&cli.db))),
        Access::ReadWrite => cli.db.clone(),
    };
    Aggregator::open(&path, catalogue(cli)?, keys, AggregatorConfig::default())
        .map_err(|e| internal(format!("{}: {e}", cli.db.display())))
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
    let kf = key_file(cli)?;
    let given = identity(cli, &kf)?;
    let fail = |e: IdentityError| match e {
        IdentityError::Missing(_) => Fail::from(ApiError::new(404, "no_database", e.to_string())),
        IdentityError::Io(_) | IdentityError::Sqlite(_) => internal(e),
        _ => bad("not_a_database", e.to_string()),
    };
    match i {
        IdentityCmd::Show => {
            let stored = identity::read(&cli.db).map_err(fail)?;
            Ok(json!({
                "stored_key_set": stored.as_ref().map(|s| hex(&s.key_fingerprint)),
                "stored_catalogue": stored.as_ref().map(|s| hex(&s.catalogue_digest)),
                "given_key_set": hex(&given.key_fingerprint),
                "given_catalogue": hex(&given.catalogue_digest),
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
            let role: Role = role.parse().map_err(|()| bad("bad_role", format!("unknown role `{role}`")))?;
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
                    .map_err(|e| bad("bad_key_file", format!("{}: {e}", cli.keys.display())))??;
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
        } => {
            let kf = key_file(&cli)?;
            let agg = open(&cli, &kf)?;
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
            confiance_aggregator::server::serve(agg, signer, config, *addr, |bound| {
                if json_out {
                    outln!("{}", json!({"listening": bound.to_string()}));
                } else {
                    outln!("listening on {bound}");
                }
                let _ = std::io::stdout().flush();
            })
            .map_err(internal)?;
            Ok(json!({"stopped": true}))
        }
        Cmd::Ingest { files, framed, now } => ingest(&cli, files, *framed, time_or_now(now.as_ref())?),
        Cmd::Identity { i } => identity_cmd(&cli, i),
        Cmd::Query { q } => {
            let kf = key_file(&cli)?;
            let agg = open_read_only(&cli, &kf)?;
            let q = build_query(&agg, q)?;
            Ok(run_query(&agg, &q)?)
        }
        Cmd::Audit { a } => audit(&cli, a),
        Cmd::Report { format, out, at } => report(&cli, *format, out.as_deref(), time_or_now(at.as_ref())?),
        Cmd::Release { recipient, metric } => {
            let kf = key_file(&cli)?;
            let mut agg = open(&cli, &kf)?;
            let r = parse_recipient(&agg, recipient)?;
            let m = parse_metric(&agg, metric)?;
            let rel = agg
                .release(&r, &m, Timestamp::EPOCH, Timestamp::MAX, wall_now())
                .map_err(|e| Fail::from(ApiError::from_release(&e)))?;
            Ok(release_json(&r, &rel))
        }
        Cmd::Purge { now } => {
            let kf = key_file(&cli)?;
            let mut agg = open(&cli, &kf)?;
            let p =
                agg.purge(time_or_now(now.as_ref())?).map_err(|e| Fail::from(ApiError::from_service(&e)))?;
            Ok(
                json!({"partitions": p.partitions, "records": p.records, "keys_destroyed": p.keys_destroyed.len()}),
            )
        }
        Cmd::Simulate { devices, days, seed } => simulate(&cli, *devices, *days, *seed),
        Cmd::Catalogue { cmd: CatalogueCmd::Compile { out } } => {
            let c = catalogue(&cli)?;
            let bytes = c.canonical_bytes();
            std::fs::write(out, &bytes).map_err(|e| internal(format!("{}: {e}", out.display())))?;
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
    kf.write(&cli.keys).map_err(internal)?;
    Ok(json!({
        "key_file": cli.keys.display().to_string(),
        "key_id": config.id.0,
        "key_config": hex(&config.to_bytes()),
        "log_origin": origin,
        "log_public_key": hex(signer.verifying_key().as_bytes()),
    }))
}

fn read_framed(mut data: &[u8]) -> Result<Vec<Vec<u8>>, Fail> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (len, rest) =
            data.split_at_checked(4).ok_or_else(|| bad("bad_framing", "truncated length prefix"))?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (env, rest) =
            rest.split_at_checked(len).ok_or_else(|| bad("bad_framing", "truncated envelope"))?;
        out.push(env.to_vec());
        data = rest;
    }
    Ok(out)
}

fn ingest(cli: &Cli, files: &[PathBuf], framed: bool, now: Timestamp) -> Result<Value, Fail> {
    let kf = key_file(cli)?;
    let mut agg = open(cli, &kf)?;
    let mut envelopes = Vec::new();
    if files.is_empty() || files.iter().any(|f| f.as_os_str() == "-") {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).map_err(internal)?;
        envelopes.extend(read_framed(&buf)?);
    }
    for f in files.iter().filter(|f| f.as_os_str() != "-") {
        let bytes = std::fs::read(f).map_err(|e| bad("bad_file", format!("{}: {e}", f.display())))?;
        if framed {
            envelopes.extend(read_framed(&bytes)?);
        } else {
            envelopes.push(bytes);
        }
    }
    let (mut accepted, mut reports, mut results) = (0u64, 0u64, Vec::new());
    for (i, e) in envelopes.iter().enumerate() {
        match agg.ingest(e, now) {
            Ok(ack) => {
                accepted += 1;
                reports += u64::from(ack.reports);
                let refused: Vec<Value> = ack
                    .refused
                    .iter()
                    .map(|r| json!({"index": r.index, "code": r.refusal.code(), "retry": r.retry}))
                    .collect();
                results.push(json!({"index": i, "ok": true, "envelope": hex(&ack.envelope.0),
                    "reports": ack.reports, "refused": refused}));
            }
            Err(err) => {
                let a = ApiError::from_ingest(&err);
                if a.status >= 500 {
                    return Err(a.into());
                }
                results.push(json!({"index": i, "ok": false, "code": a.code, "message": a.message}));
            }
        }
    }
    let refused = envelopes.len() as u64 - accepted;
    let v = json!({"accepted": accepted, "refused": refused, "reports": reports, "results": results});
    if refused > 0 {
        print_out(&v, cli.json);
        return Err(ApiError::new(
            400,
            "refused",
            format!("{refused} of {} envelopes refused", envelopes.len()),
        )
        .into());
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
            let mut consistency = Value::Null;
            if let Some(p) = checkpoint {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| bad("bad_file", format!("{}: {e}", p.display())))?;
                let old =
                    SignedCheckpoint::from_text(&text).map_err(|e| bad("bad_checkpoint", e.to_string()))?;
                verifier.verify_checkpoint(&old).map_err(|e| refused("checkpoint_invalid", e.to_string()))?;
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
            }))
        }
    }
}

fn report(cli: &Cli, format: ReportFormat, out: Option<&Path>, at: Timestamp) -> Result<Value, Fail> {
    let kf = key_file(cli)?;
    let agg = open_read_only(cli, &kf)?;
    let signer = kf.signer().map_err(|e| bad("bad_key_file", e))?;
    let title = format!("Who sees what — {}", agg.catalogue().name());
    let opts = GatherOptions {
        title: &title,
        at,
        generated_at: wall_now(),
        signer: Some(&signer),
        ..GatherOptions::default()
    };
    let data = ReportData::gather(&agg, &opts).map_err(internal)?;
    let fmt = match format {
        ReportFormat::Html => Format::Html,
        ReportFormat::Json => Format::Json,
        ReportFormat::Markdown => Format::Markdown,
    };
    let text = fmt.render(&data).map_err(internal)?;
    match out {
        Some(p) => {
            std::fs::write(p, &text).map_err(|e| internal(format!("{}: {e}", p.display())))?;
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

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => {
            let s = other.to_string();
            if s.len() > 60 { format!("{}…", s.chars().take(59).collect::<String>()) } else { s }
        }
    }
}

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
            outln!("  {}", scalar(r));
        }
        return;
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|c| r.get(c).map_or_else(String::new, scalar)).collect())
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

fn print_out(v: &Value, json: bool) {
    if json {
        outln!("{v}");
        return;
    }
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match x {
                    Value::Array(a) if a.iter().any(Value::is_object) => {
                        outln!("{k} ({}):", a.len());
                        table(a);
                    }
                    Value::Array(a) if a.is_empty() => outln!("{k}: (none)"),
                    Value::Array(a) => outln!("{k}: {}", a.iter().map(scalar).collect::<Vec<_>>().join(", ")),
                    Value::String(s) if s.contains('\n') => outln!("{k}:\n{s}"),
                    _ => outln!("{k}: {}", scalar(x)),
                }
            }
        }
        other => outln!("{}", scalar(other)),
    }
}

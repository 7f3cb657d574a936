//! Real `confiance serve --db postgres://…` processes for the tests that run several of
//! them on one database (pg_serve.rs, pg_crash.rs; included with
//! `#[path = "support/serve.rs"] mod serve;` next to `mod fixtures;`, not a test crate of
//! its own): a fresh database on the `CONFIANCE_TEST_POSTGRES` server, the CLI, a server
//! process on a free loopback port, an HTTP client, and a fleet of devices whose receipts
//! and sealed envelopes the processes are fed.

#![allow(dead_code, reason = "each test crate uses its own subset")]

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use confiance::Timestamp;
use confiance::consent::{ConsentRequest, Scope};
use confiance::envelope::KeyConfig;
use confiance::ids::MetricId;
use confiance::recorder::Value as DevValue;
use serde_json::Value;

use crate::fixtures::{id, recorder};

/// The example catalogue every process of a test reads.
pub const CATALOGUE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/catalogue.toml");

/// A fresh database named `confiance_p_{name}` on the `CONFIANCE_TEST_POSTGRES` server,
/// as a URL; `None` (said on stderr) when the variable is unset (`.ci/postgres` sets it).
pub fn fresh_database(name: &str) -> Option<String> {
    use std::io::Write as _;
    // No "must run under CI=true" check here: CI's plain `cargo test --workspace` step runs
    // these files without a server, and its next step (`.ci/postgres`) runs them with one.
    let Ok(url) = std::env::var("CONFIANCE_TEST_POSTGRES") else {
        let _ = writeln!(
            std::io::stderr(),
            "skipped: CONFIANCE_TEST_POSTGRES is unset (bash .ci/postgres runs this file on a throw-away server)"
        );
        return None;
    };
    let db = format!("confiance_p_{name}");
    let mut c =
        postgres::Client::connect(&url, postgres::NoTls).expect("cannot connect to CONFIANCE_TEST_POSTGRES");
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    c.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let config: postgres::Config = url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        postgres::config::Host::Tcp(h) => h.clone(),
        postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    Some(format!("postgres://{user}@{host}:{port}/{db}"))
}

/// A new empty directory for one test's key file and logs.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("confiance-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_confiance"))
}

/// Runs a CLI command on the key file in `d` (no database), returns its JSON.
pub fn cli(d: &Path, args: &[&str]) -> Value {
    let o = bin()
        .arg("--db")
        .arg(d.join("unused.sqlite"))
        .arg("--keys")
        .arg(d.join("keys"))
        .args(["--catalogue", CATALOGUE, "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A running `confiance serve`, killed (SIGKILL) and reaped when dropped.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `confiance serve --db URL` on a free loopback port; the key file and the catalogue
/// are the files every process shares. Its stderr goes nowhere.
pub fn start(d: &Path, url: &str) -> Server {
    try_start(d, url, Stdio::null()).unwrap_or_else(|said| panic!("serve said: {said:?}"))
}

/// As [`start`], with the process's stderr going to `stderr`; `Err` with what it printed
/// on stdout instead of `listening on ADDR` (it failed to open or bind).
pub fn try_start(d: &Path, url: &str, stderr: impl Into<Stdio>) -> Result<Server, String> {
    try_start_with(d, url, &[], stderr)
}

/// [`start`] with `serve`'s options `args` added (`--token-secret FILE`, …).
pub fn start_with(d: &Path, url: &str, args: &[&str]) -> Server {
    try_start_with(d, url, args, Stdio::null()).unwrap_or_else(|said| panic!("serve said: {said:?}"))
}

fn try_start_with(d: &Path, url: &str, args: &[&str], stderr: impl Into<Stdio>) -> Result<Server, String> {
    let mut child = bin()
        .args(["--db", url])
        .arg("--keys")
        .arg(d.join("keys"))
        .args(["--catalogue", CATALOGUE])
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let Some(addr) = line.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(line);
    };
    Ok(Server { base: format!("http://{addr}"), child })
}

/// An HTTP client that returns error statuses as answers.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// A GET with the bearer `token` (`body` `None`) or a POST of `body`; the status and
/// the JSON answer, or the transport error (connection refused, cut, …).
pub fn try_send(
    agent: &ureq::Agent,
    url: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> Result<(u16, Value), ureq::Error> {
    let mut r = match body {
        None => {
            let mut rq = agent.get(url);
            if let Some(t) = token {
                rq = rq.header("Authorization", &format!("Bearer {t}"));
            }
            rq.call()
        }
        Some(b) => agent.post(url).send(b),
    }?;
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string()?;
    Ok((status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"))))
}

/// [`try_send`], panicking on a transport error.
pub fn send(agent: &ureq::Agent, url: &str, token: Option<&str>, body: Option<&[u8]>) -> (u16, Value) {
    try_send(agent, url, token, body).unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// The wall clock as a [`Timestamp`].
pub fn now() -> Timestamp {
    Timestamp::from_secs(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
    )
}

/// What a fleet sends: consent receipts and sealed envelopes (frames).
pub struct Fleet {
    pub receipts: Vec<Vec<u8>>,
    pub frames: Vec<Vec<u8>>,
}

/// What a multi-process test starts from: a fresh database (`None`, the test skipped,
/// without a PostgreSQL server), a scratch directory with new keys (`cli keygen`), an
/// auditor's bearer token and the key file.
pub struct Setup {
    pub url: String,
    pub dir: std::path::PathBuf,
    pub auditor: String,
    pub keys: confiance_aggregator::server::KeyFile,
}

/// [`Setup`] on the database `db` and the scratch directory `dir`.
pub fn setup(db: &str, dir: &str) -> Option<Setup> {
    let url = fresh_database(db)?;
    let dir = scratch_dir(dir);
    cli(&dir, &["keygen"]);
    let auditor = cli(&dir, &["token", "--role", "auditor"])["token"].as_str().unwrap().to_owned();
    let keys = confiance_aggregator::server::KeyFile::read(&dir.join("keys")).unwrap();
    Some(Setup { url, dir, auditor, keys })
}

/// `devices` devices of brand calora (seeds from `seed`), sealing to `configs`: every
/// device consents to anonymous statistics, every other one to a pseudonymous fault
/// code, two hours before `t`; each records a mode and a fault code at `t` and flushes.
pub fn fleet(devices: u64, seed: u64, configs: &[KeyConfig], t: Timestamp) -> Fleet {
    fleet_consenting_at(devices, seed, configs, t.saturating_sub_secs(7_200), t)
}

/// [`fleet`], the consents given at `given` instead of two hours before `t`.
pub fn fleet_consenting_at(
    devices: u64,
    seed: u64,
    configs: &[KeyConfig],
    given: Timestamp,
    t: Timestamp,
) -> Fleet {
    let (mut receipts, mut frames) = (Vec::new(), Vec::new());
    for i in 0..devices {
        let mut dev = recorder(seed + i, "calora", configs.to_vec());
        let mut give = |purpose: &str, metric: &str| {
            let request = ConsentRequest::new(
                id("calora"),
                id(purpose),
                Scope::metrics([id::<MetricId>(metric)]),
                "P90D".parse().unwrap(),
            );
            receipts.push(dev.give_consent(request, given).unwrap());
        };
        give("product-improvement", "thermostat.mode");
        if i % 2 == 0 {
            give("service", "thermostat.fault-code");
        }
        let _ = dev.record(
            &id("thermostat.mode"),
            &id("product-improvement"),
            DevValue::Category((i % 3) as u32),
            t,
        );
        let _ = dev.record_service(&id("thermostat.fault-code"), DevValue::Int(7), t);
        frames.extend(dev.flush(t));
    }
    Fleet { receipts, frames }
}

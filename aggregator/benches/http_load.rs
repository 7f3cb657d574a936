//! Load test of the HTTP server on loopback, bounded in count and time: `C` client
//! threads post pre-sealed envelopes as fast as the server acknowledges them; the
//! sustained envelopes/s and the latency percentiles are printed; then the server stops
//! gracefully and every acknowledged envelope is checked in the database.
//!
//! `cargo bench -p confiance-aggregator --bench http_load` (env `LOAD_ENVELOPES`,
//! default 3000; `LOAD_CLIENTS`, default 4; `LOAD_COMMIT_MAX` and `LOAD_COMMIT_WAIT_MS`,
//! the group-commit policy, default 256 and 2 — `LOAD_COMMIT_MAX=1` commits every
//! envelope on its own, as the server did before group commit; `LOAD_REPORTS`, default 0,
//! threads asking `GET /v1/report?format=json` over and over while the clients post, to
//! see whether reports hold ingest up; stops after 60 s whatever the count).
//!
//! `LOAD_POSTGRES=postgres://user@host:port/DB` puts the aggregator on PostgreSQL instead
//! of an SQLite file: the database `confiance_load` on that server (the URL's database
//! replaced), dropped and created afresh; `LOAD_SERVERS=N` (default 1; more needs
//! `LOAD_POSTGRES`) runs N servers in this process, each with its own aggregator on that
//! database as N `confiance serve --db postgres://…` processes would have, the clients
//! sending each envelope to the next server in turn.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{ConsentRequest, ConsentState, DeviceKey, Scope};
use confiance::envelope::{AeadId, EnvelopeId};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::MetricId;
use confiance::pseudonym::DeviceSecret;
use confiance::recorder::{MemoryStorage, Recorder, RecorderParts, Value};
use confiance_aggregator::audit::CheckpointSigner;
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::server::{GroupCommit, Role, ServerConfig, TokenEntry, serve_until, unhex};
use confiance_aggregator::service::{Aggregator, AggregatorConfig};
use sha2::Digest as _;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Where the aggregator keeps its state.
enum Db {
    Sqlite(std::path::PathBuf),
    /// The URL of a database this run created.
    Postgres(String),
}

impl Db {
    /// `LOAD_POSTGRES`'s server with a fresh database `confiance_load`, or an SQLite
    /// file in `dir`.
    fn new(dir: &std::path::Path) -> Self {
        let Ok(url) = std::env::var("LOAD_POSTGRES") else { return Self::Sqlite(dir.join("db.sqlite")) };
        let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("LOAD_POSTGRES");
        // One call per statement: one string would run both in one transaction, which
        // DROP DATABASE refuses.
        admin.batch_execute("DROP DATABASE IF EXISTS confiance_load WITH (FORCE)").unwrap();
        admin.batch_execute("CREATE DATABASE confiance_load").unwrap();
        let (server, _) = url.rsplit_once('/').expect("LOAD_POSTGRES=postgres://user@host:port/DB");
        Self::Postgres(format!("{server}/confiance_load"))
    }

    fn open(&self, cat: &Catalogue, keys: &KeyStore) -> Aggregator {
        let config = AggregatorConfig::default();
        match self {
            Self::Sqlite(path) => Aggregator::open(path, cat.clone(), keys.clone(), config).unwrap(),
            Self::Postgres(url) => {
                let store = confiance_aggregator::store::PgStore::connect(url).unwrap();
                let ledger = confiance_aggregator::ledger::Ledger::open_postgres(url, cat.clone()).unwrap();
                Aggregator::with_store(Box::new(store), ledger, cat.clone(), keys.clone(), config).unwrap()
            }
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let total = env("LOAD_ENVELOPES", 3_000);
    let clients = env("LOAD_CLIENTS", 4);
    let reporters = env("LOAD_REPORTS", 0);
    let servers = env("LOAD_SERVERS", 1).max(1);
    let group_commit = GroupCommit {
        max_envelopes: env("LOAD_COMMIT_MAX", 256),
        max_wait: Duration::from_millis(env("LOAD_COMMIT_WAIT_MS", 2) as u64),
    };
    let deadline = Duration::from_secs(60);
    let cat = Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml")).unwrap();
    let now = Timestamp::from_secs(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
    );
    let mut rng = SeededRng::seed_from_u64(1);
    let mut keys = KeyStore::new(86_400);
    let config = keys
        .generate(
            AeadId::ChaCha20Poly1305,
            now.saturating_sub_secs(86_400),
            now.saturating_add_secs(86_400),
            &mut rng,
        )
        .unwrap();
    let dir = std::env::temp_dir().join(format!("confiance-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = Db::new(&dir);
    assert!(servers == 1 || matches!(db, Db::Postgres(_)), "LOAD_SERVERS > 1 needs LOAD_POSTGRES");
    let mut agg = db.open(&cat, &keys);

    // Envelopes from real devices, one per device (consent registered directly).
    eprintln!("sealing {total} envelopes…");
    let mut frames = Vec::with_capacity(total);
    let mut i = 0u64;
    while frames.len() < total {
        let mut r = SeededRng::seed_from_u64(1_000 + i);
        let parts = RecorderParts {
            catalogue: cat.clone(),
            consent: ConsentState::new(DeviceKey::generate(&mut r)),
            pseudonyms: DeviceSecret::generate(&mut r),
            controller: "calora".parse().unwrap(),
            key_configs: vec![config],
            rng: r,
        };
        let mut d = Recorder::new(parts, MemoryStorage::default());
        let t = now.saturating_sub_secs(7_200);
        let receipt = d
            .give_consent(
                ConsentRequest::new(
                    "calora".parse().unwrap(),
                    "product-improvement".parse().unwrap(),
                    Scope::metrics(["thermostat.mode".parse::<MetricId>().unwrap()]),
                    "P90D".parse().unwrap(),
                ),
                t,
            )
            .unwrap();
        agg.receive_receipt(&receipt, t).unwrap();
        let _ = d.record(
            &"thermostat.mode".parse().unwrap(),
            &"product-improvement".parse().unwrap(),
            Value::Category((i % 6) as u32),
            now,
        );
        frames.extend(d.flush(now));
        i += 1;
    }
    frames.truncate(total);

    let token = "cf_load";
    let auditor = "cf_load_auditor";
    // Envelopes need no bearer token (devices sign; envelopes are anonymous): the `token`
    // sent with them is ignored, as a real client's would be.
    let tokens = vec![TokenEntry {
        role: Role::Auditor,
        recipient: None,
        sha256: sha2::Sha256::digest(auditor).into(),
    }];
    // Every server signs with the same checkpoint key, as processes sharing a key file do.
    let mut aggs = vec![agg];
    aggs.extend((1..servers).map(|_| db.open(&cat, &keys)));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (mut stops, mut server_threads) = (Vec::new(), Vec::new());
    for agg in aggs {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut server_config = ServerConfig::new(1 << 16, tokens.clone());
        server_config.group_commit = group_commit;
        let signer = CheckpointSigner::from_secret_bytes("confiance/load", &[9; 32]).unwrap();
        let addr_tx = addr_tx.clone();
        server_threads.push(std::thread::spawn(move || {
            serve_until(
                agg,
                signer,
                server_config,
                "127.0.0.1:0".parse().unwrap(),
                |a| addr_tx.send(a).unwrap(),
                async {
                    let _ = stop_rx.await;
                },
            )
            .unwrap();
        }));
        stops.push(stop_tx);
    }
    let bases: Vec<String> = (0..servers).map(|_| format!("http://{}", addr_rx.recv().unwrap())).collect();
    let base = bases[0].clone();
    let urls: Arc<Vec<String>> = Arc::new(bases.iter().map(|b| format!("{b}/v1/envelopes")).collect());
    let posting = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let report_threads: Vec<_> = (0..reporters)
        .map(|_| {
            let (posting, url) = (Arc::clone(&posting), format!("{base}/v1/report?format=json"));
            std::thread::spawn(move || {
                let agent: ureq::Agent =
                    ureq::Agent::config_builder().http_status_as_error(false).build().into();
                let mut lat = Vec::new();
                while posting.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let mut r =
                        agent.get(&url).header("Authorization", &format!("Bearer {auditor}")).call().unwrap();
                    let _ = r.body_mut().read_to_string().unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();

    let frames = Arc::new(frames);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (frames, next, urls) = (Arc::clone(&frames), Arc::clone(&next), Arc::clone(&urls));
            std::thread::spawn(move || {
                let agent: ureq::Agent =
                    ureq::Agent::config_builder().http_status_as_error(false).build().into();
                let (mut lat, mut acked, mut refused) = (Vec::new(), Vec::new(), 0u64);
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= frames.len() || start.elapsed() > deadline {
                        break;
                    }
                    let t = Instant::now();
                    let mut r = agent
                        .post(&urls[k % urls.len()])
                        .header("Authorization", &format!("Bearer {token}"))
                        .send(&frames[k][..])
                        .unwrap();
                    let body = r.body_mut().read_to_string().unwrap();
                    lat.push(t.elapsed());
                    if r.status().as_u16() == 201 {
                        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                        acked.push(v["envelope"].as_str().unwrap().to_owned());
                    } else {
                        refused += 1;
                    }
                }
                (lat, acked, refused)
            })
        })
        .collect();
    let (mut lat, mut acked, mut refused) = (Vec::new(), Vec::new(), 0);
    for w in workers {
        let (l, a, r) = w.join().unwrap();
        lat.extend(l);
        acked.extend(a);
        refused += r;
    }
    let elapsed = start.elapsed();
    posting.store(false, Ordering::Relaxed);
    let mut reports: Vec<Duration> = report_threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    reports.sort();
    if reporters > 0 {
        println!(
            "http_load: {} reports by {reporters} threads meanwhile, median {:.0} ms",
            reports.len(),
            reports.get(reports.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e3)
        );
    }
    for (stop, server) in stops.into_iter().zip(server_threads) {
        stop.send(()).unwrap();
        server.join().unwrap();
    }

    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let agg = db.open(&cat, &keys);
    let lost = acked
        .iter()
        .filter(|a| !agg.has_envelope(&EnvelopeId(unhex(a).unwrap().try_into().unwrap())).unwrap())
        .count();
    println!(
        "http_load: {} envelopes ({} acknowledged, {} refused) by {clients} clients to {servers} server(s) on {} in {:.2} s \
         (group commit: {} envelopes or {} ms): {:.0} envelopes/s; \
         latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; acknowledged but lost: {lost} \
         (each acknowledged id looked up in the reopened database)",
        lat.len(),
        acked.len(),
        refused,
        if matches!(db, Db::Postgres(_)) { "PostgreSQL" } else { "SQLite" },
        elapsed.as_secs_f64(),
        group_commit.max_envelopes,
        group_commit.max_wait.as_millis(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
    );
    assert_eq!(lost, 0, "acknowledged envelopes lost");
    assert_eq!(refused, 0);
    drop(agg);
    let _ = std::fs::remove_dir_all(&dir);
}

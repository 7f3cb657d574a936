//! The aggregator service on PostgreSQL ([`Aggregator::with_store`] with a
//! [`PgStore`]): one process answers exactly as on SQLite (same partitions, estimates,
//! purge and audit log, byte for byte), and two processes on one database keep replay
//! protection exact — a report id committed by one is refused by the other, whose own
//! replay filter never saw it.
//!
//! Needs `CONFIANCE_TEST_POSTGRES=postgres://…` naming a server where the user may
//! create databases (`bash .ci/postgres` starts a throw-away one and runs this file);
//! without it each test prints why it is skipped: never a silent pass.

#![cfg(feature = "postgres")]

use confiance::Timestamp;
use confiance::envelope::{self, AeadId, HeaderFields, KeyConfig};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::report::Report;
use confiance_aggregator::ingest::IngestError;
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::ledger::Ledger;
use confiance_aggregator::service::{Aggregator, AggregatorConfig};
use confiance_aggregator::store::{PgStore, Store as _, StoreError};
use postgres::{Client, Config, NoTls};

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/serve.rs"]
mod serve;
use fixtures::{catalogue, id};

const T0: u64 = 1_800_000_000;

/// A fresh, empty database named after the test, or `None` (said on stderr) when
/// `CONFIANCE_TEST_POSTGRES` is unset.
fn fresh_database(name: &str) -> Option<Config> {
    use std::io::Write as _;
    let Ok(url) = std::env::var("CONFIANCE_TEST_POSTGRES") else {
        let _ = writeln!(
            std::io::stderr(),
            "skipped: CONFIANCE_TEST_POSTGRES is unset (bash .ci/postgres runs this file on a throw-away server)"
        );
        return None;
    };
    let admin: Config = url.parse().expect("CONFIANCE_TEST_POSTGRES is not a postgres:// URL");
    let db = format!("confiance_s_{name}");
    let mut c: Client = admin.connect(NoTls).expect("cannot connect to CONFIANCE_TEST_POSTGRES");
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    c.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let mut config = admin;
    config.dbname(&db);
    Some(config)
}

fn keys() -> (KeyStore, KeyConfig) {
    let mut rng = SeededRng::seed_from_u64(7);
    let mut keys = KeyStore::new(86_400);
    let config = keys
        .generate(
            AeadId::ChaCha20Poly1305,
            Timestamp::EPOCH,
            Timestamp::from_secs(T0 + 100 * 86_400),
            &mut rng,
        )
        .unwrap();
    (keys, config)
}

/// `n` devices' consent receipts and sealed envelopes (anonymous thermostat modes, and
/// a pseudonymous fault code from every other device).
fn fleet(n: u64, config: KeyConfig) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (given, now) = (Timestamp::from_secs(T0 - 10_000), Timestamp::from_secs(T0));
    let serve::Fleet { receipts, frames } = serve::fleet_consenting_at(n, 100, &[config], given, now);
    (receipts, frames)
}

/// A process on the database `config` names, its ledger in memory.
fn on_postgres(config: &Config, keys: KeyStore) -> Aggregator {
    with_ledger(config, keys, Ledger::in_memory(catalogue()).unwrap())
}

fn with_ledger(config: &Config, keys: KeyStore, ledger: Ledger) -> Aggregator {
    let store = Box::new(PgStore::with_config(config).unwrap());
    Aggregator::with_store(store, ledger, catalogue(), keys, AggregatorConfig::default()).unwrap()
}

/// A ledger in a SQLite file of its own (it outlives a restart of the process).
fn ledger_file(name: &str) -> (std::path::PathBuf, impl Fn() -> Ledger) {
    let path = std::env::temp_dir().join(format!("confiance-pg-ledger-{name}-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let p = path.clone();
    (path, move || Ledger::open(rusqlite::Connection::open(&p).unwrap(), catalogue()).unwrap())
}

#[test]
fn one_process_on_postgres_answers_as_on_sqlite() {
    let Some(db) = fresh_database("same_as_sqlite") else { return };
    let (keys, config) = keys();
    let (receipts, frames) = fleet(60, config);
    let now = Timestamp::from_secs(T0);
    let given = Timestamp::from_secs(T0 - 10_000);
    let mut sqlite = Aggregator::in_memory(catalogue(), keys.clone(), AggregatorConfig::default()).unwrap();
    let (ledger_path, ledger) = ledger_file("same_as_sqlite");
    let mut pg = with_ledger(&db, keys.clone(), ledger());
    for agg in [&mut sqlite, &mut pg] {
        for r in &receipts {
            agg.receive_receipt(r, given).unwrap();
        }
        let mut reports = 0;
        for f in &frames {
            reports += agg.ingest(f, now).unwrap().reports;
        }
        assert_eq!(reports, 60 + 30);
        assert!(matches!(agg.ingest(&frames[0], now), Err(IngestError::ReplayedEnvelope(_))));
    }
    assert_eq!(pg.partition_states(), sqlite.partition_states());
    // A restart reloads nothing into memory and reads what the database holds.
    drop(pg);
    let mut pg = with_ledger(&db, keys, ledger());
    assert_eq!(pg.partitions().count(), 0, "this process has committed nothing yet");
    assert_eq!(pg.partition_states(), sqlite.partition_states());
    let release = |agg: &mut Aggregator| {
        agg.release(&id("calora"), &id("thermostat.mode"), Timestamp::EPOCH, Timestamp::MAX, now).unwrap()
    };
    let (a, b) = (release(&mut sqlite), release(&mut pg));
    assert_eq!((a.partitions, a.estimate.n), (b.partitions, b.estimate.n));
    assert_eq!(format!("{:?}", a.estimate.values), format!("{:?}", b.estimate.values));
    let records = |agg: &mut Aggregator| {
        agg.release_records(
            &id("calora"),
            &id("thermostat.fault-code"),
            Timestamp::EPOCH,
            Timestamp::MAX,
            now,
        )
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.collected_at))
        .collect::<Vec<_>>()
    };
    let (ra, rb) = (records(&mut sqlite), records(&mut pg));
    assert_eq!(ra.len(), 30);
    assert_eq!(ra, rb);
    let later = Timestamp::from_secs(T0 + 400 * 86_400);
    let (pa, pb) = (sqlite.purge(later).unwrap(), pg.purge(later).unwrap());
    assert_eq!((pa.partitions, pa.records, pa.ids_forgotten), (pb.partitions, pb.records, pb.ids_forgotten));
    assert!(pa.records > 0 && pa.partitions > 0);
    // The same events in the same order: the same log, the same root.
    let (la, lb) = (sqlite.store().audit_log().unwrap(), pg.store().audit_log().unwrap());
    assert_eq!(lb.export(lb.size()).unwrap(), la.export(la.size()).unwrap());
    assert_eq!((lb.size(), lb.root()), (la.size(), la.root()));
    drop((la, lb));
    let _ = std::fs::remove_file(ledger_path);
}

#[test]
fn a_report_committed_by_one_process_is_refused_by_the_other() {
    let Some(db) = fresh_database("replay_across") else { return };
    let (keys, config) = keys();
    let (receipts, frames) = fleet(40, config);
    let now = Timestamp::from_secs(T0);
    let given = Timestamp::from_secs(T0 - 10_000);
    // Both open before anything is ingested: neither's replay filter knows the other's ids.
    let (mut a, mut b) = (on_postgres(&db, keys.clone()), on_postgres(&db, keys));
    for agg in [&mut a, &mut b] {
        for r in &receipts {
            agg.receive_receipt(r, given).unwrap();
        }
    }
    let (mine, theirs) = frames.split_at(frames.len() / 2);
    for f in mine {
        a.ingest(f, now).unwrap();
    }
    for f in theirs {
        b.ingest(f, now).unwrap();
    }
    // Every frame again, to the process that did not take it: a replay for both.
    for f in mine {
        assert!(matches!(b.ingest(f, now), Err(IngestError::ReplayedEnvelope(_))));
    }
    for f in theirs {
        assert!(matches!(a.ingest(f, now), Err(IngestError::ReplayedEnvelope(_))));
    }
    // Each report of `a`'s envelopes, alone in a new envelope sent to `b` (whose replay
    // filter never saw its id): acknowledged as already held, and not kept again.
    let mut rng = SeededRng::seed_from_u64(9);
    for f in mine {
        let opened = a.keys().open(f, now, &catalogue().digest()).unwrap();
        let (_, reports) = envelope::decode_body::<Report>(&opened.plaintext, &Default::default()).unwrap();
        for r in reports {
            let plain = envelope::encode_body(&[], &[r]).unwrap();
            let fields =
                HeaderFields { catalogue_digest: catalogue().digest(), time_bucket: now.truncate(86_400) };
            let resent = envelope::seal(&config, &fields, &plain, &mut rng).unwrap();
            let ack = b.ingest(&resent, now).unwrap();
            assert_eq!((ack.reports, ack.refused.len()), (0, 0), "a report held by the other process");
        }
    }
    assert_eq!(a.store().seen_ids(Timestamp::EPOCH).unwrap().len(), 40 + 20);
    // Both processes ingested into the same partitions: each wrote its own partial, and
    // what either reads is byte for byte what one process ingesting everything holds.
    let mut one = Aggregator::in_memory(catalogue(), a.keys().clone(), AggregatorConfig::default()).unwrap();
    for r in &receipts {
        one.receive_receipt(r, given).unwrap();
    }
    for f in &frames {
        one.ingest(f, now).unwrap();
    }
    assert!(a.partitions().count() > 0 && b.partitions().count() > 0);
    assert_eq!(a.partition_states(), one.partition_states());
    assert_eq!(b.partition_states(), one.partition_states());
    let release = |agg: &mut Aggregator| {
        let r = agg
            .release(&id("calora"), &id("thermostat.mode"), Timestamp::EPOCH, Timestamp::MAX, now)
            .unwrap();
        (r.partitions, r.estimate.n, format!("{:?}", r.estimate.values))
    };
    let want = release(&mut one);
    assert_eq!(want.1, 40);
    assert_eq!(release(&mut a), want);
    assert_eq!(release(&mut b), want);
    // Two commits racing with one id: the store's unique key refuses the second whole.
    use confiance_aggregator::store::{CommitBatch, SeenIds, Store as _};
    let batch = |digest: u8| CommitBatch {
        seen: vec![SeenIds { envelope: [digest; 32], expires_at: Timestamp::MAX, ids: vec![[0xee; 16]] }],
        ..CommitBatch::default()
    };
    let mut s1 = PgStore::with_config(&db).unwrap();
    let mut s2 = PgStore::with_config(&db).unwrap();
    s1.commit(&batch(1)).unwrap();
    assert!(matches!(s2.commit(&batch(2)), Err(StoreError::Conflict)));
    assert!(s2.id_seen(&[0xee; 16]).unwrap());
    assert!(!s2.envelope_seen(&[2; 32]).unwrap(), "the refused batch left nothing");
}

/// What one process saw while it ingested: per frame, how each attempt ended, and the
/// (size, root) of the audit log it read now and then.
#[derive(Default)]
struct Seen {
    acked: Vec<(usize, u32)>,
    replays: usize,
    conflicts: usize,
    roots: Vec<(u64, confiance_aggregator::audit::Hash)>,
}

#[test]
fn three_processes_fed_concurrently_with_overlapping_replays_count_each_envelope_once() {
    use confiance_aggregator::audit::{CheckpointSigner, EventKind, Verifier};
    let Some(db) = fresh_database("three_processes") else { return };
    let (keys, config) = keys();
    let (receipts, frames) = fleet(90, config);
    let now = Timestamp::from_secs(T0);
    let given = Timestamp::from_secs(T0 - 10_000);
    let mut procs: Vec<Aggregator> = (0..3).map(|_| on_postgres(&db, keys.clone())).collect();
    for agg in &mut procs {
        for r in &receipts {
            agg.receive_receipt(r, given).unwrap();
        }
    }
    // Three ledgers, one log: each process recorded every receipt it was given, and the
    // log holds one consent event per receipt, whichever process logged it first (the
    // others' copies are left out: schema version 5).
    let consent_events = procs[0].store().audit_log().unwrap().size();
    assert_eq!(consent_events, receipts.len() as u64);
    // Every frame goes to every process, each in its own order, and every fifth frame a
    // second time to the same process: all but one attempt per frame are replays.
    let n = frames.len();
    let orders: Vec<Vec<usize>> =
        vec![(0..n).collect(), (0..n).rev().collect(), (0..n).map(|i| (i * 7 + n / 2) % n).collect()];
    assert!(orders[2].iter().collect::<std::collections::BTreeSet<_>>().len() == n, "a permutation");
    let seen: Vec<Seen> = std::thread::scope(|s| {
        let handles: Vec<_> = procs
            .iter_mut()
            .zip(&orders)
            .map(|(agg, order)| {
                let frames = &frames;
                s.spawn(move || {
                    let mut seen = Seen::default();
                    let mut queue: Vec<usize> =
                        order.iter().flat_map(|&i| if i % 5 == 0 { vec![i, i] } else { vec![i] }).collect();
                    let mut round = 0;
                    while !queue.is_empty() {
                        let mut retry = Vec::new();
                        for (k, &i) in queue.iter().enumerate() {
                            match agg.ingest(&frames[i], now) {
                                Ok(ack) => seen.acked.push((i, ack.reports)),
                                Err(IngestError::ReplayedEnvelope(_)) => seen.replays += 1,
                                // Another process committed the same envelope between this
                                // one's check and its commit: nothing kept, send again.
                                Err(IngestError::Store(StoreError::Conflict)) => {
                                    seen.conflicts += 1;
                                    retry.push(i);
                                }
                                Err(e) => panic!("frame {i}: {e}"),
                            }
                            if k % 16 == 0 {
                                let log = agg.store().audit_log().unwrap();
                                seen.roots.push((log.size(), log.root()));
                            }
                        }
                        queue = retry;
                        round += 1;
                        assert!(round < 10, "conflicts do not end");
                    }
                    seen
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Each frame acknowledged exactly once, by one process; every other attempt refused.
    let mut acked: Vec<usize> = seen.iter().flat_map(|s| s.acked.iter().map(|&(i, _)| i)).collect();
    acked.sort_unstable();
    assert_eq!(acked, (0..n).collect::<Vec<_>>());
    let attempts = 3 * n + 3 * (0..n).filter(|i| i % 5 == 0).count();
    let refused: usize = seen.iter().map(|s| s.replays).sum();
    assert_eq!(refused, attempts - n);
    assert!(seen.iter().all(|s| !s.acked.is_empty()), "every process acknowledged some");
    // Counted exactly once: what the processes' partials merge to is byte for byte what
    // one process ingesting each frame once holds.
    let mut one =
        Aggregator::in_memory(catalogue(), procs[0].keys().clone(), AggregatorConfig::default()).unwrap();
    for r in &receipts {
        one.receive_receipt(r, given).unwrap();
    }
    let mut reports = 0;
    for f in &frames {
        reports += one.ingest(f, now).unwrap().reports;
    }
    assert_eq!(seen.iter().flat_map(|s| &s.acked).map(|&(_, r)| r).sum::<u32>(), reports);
    for p in &procs {
        assert_eq!(p.partition_states(), one.partition_states());
    }
    // One linear log: one ingest event per acknowledged envelope, a signed checkpoint
    // of the whole log that verifies against the events, and every root a process read
    // while others appended is the final log's root at that size (one history).
    let log = procs[1].store().audit_log().unwrap();
    let events = log.export(log.size()).unwrap();
    let ingests = events.iter().filter(|e| e.event.kind() == EventKind::IngestBatch).count();
    assert_eq!(ingests, n);
    assert_eq!(log.size(), consent_events + n as u64);
    let signer = CheckpointSigner::generate("confiance.test/log", &mut SeededRng::seed_from_u64(3)).unwrap();
    let cp = log.checkpoint(&signer, now);
    Verifier::new(signer.origin(), signer.verifying_key()).unwrap().audit(&cp, &events).unwrap();
    let observed: usize = seen.iter().map(|s| s.roots.len()).sum();
    assert!(observed >= 3 * (n / 16));
    for (size, root) in seen.iter().flat_map(|s| &s.roots) {
        assert_eq!(log.root_at(*size).unwrap(), *root, "a root at size {size} outside the one history");
    }
}

/// `config` as a URL (what `Ledger::open_postgres` and `confiance serve --db` take).
fn url_of(config: &Config) -> String {
    let host = match &config.get_hosts()[0] {
        postgres::config::Host::Tcp(h) => h.clone(),
        #[cfg(unix)]
        postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let db = config.get_dbname().unwrap_or("postgres");
    format!("postgres://{user}@{host}:{port}/{db}")
}

/// A process whose store and ledger are both on the database `config` names.
fn all_on_postgres(config: &Config, keys: KeyStore) -> Aggregator {
    let ledger = Ledger::open_postgres(&url_of(config), catalogue()).unwrap();
    with_ledger(config, keys, ledger)
}

/// A process that starts while another commits: its ledger is loaded before the other's
/// commit and its reconciliation reads the store after it, so what the other stored and
/// noted meanwhile looks missing from its (stale) holdings. Its reconciliation catches up
/// first and notes nothing twice — it used to note those records again, fail with
/// "already noted" and refuse to start (found by pg_crash.rs, a restart under load).
#[test]
fn a_process_starting_while_another_commits_notes_nothing_twice() {
    let Some(db) = fresh_database("start_during_commit") else { return };
    let (keys, config) = keys();
    let (receipts, frames) = fleet(8, config);
    let (given, now) = (Timestamp::from_secs(T0 - 10_000), Timestamp::from_secs(T0));
    let mut a = all_on_postgres(&db, keys.clone());
    for r in &receipts {
        a.receive_receipt(r, given).unwrap();
    }
    // The second process has loaded its ledger; then the first commits and notes.
    let stale = Ledger::open_postgres(&url_of(&db), catalogue()).unwrap();
    for f in &frames {
        a.ingest(f, now).unwrap();
    }
    let mut b = with_ledger(&db, keys, stale);
    let store = PgStore::with_config(&db).unwrap();
    let stored = store.record_heads().unwrap().len() as u64;
    assert_eq!(stored, 4);
    assert_eq!(b.ledger().stats().records, stored);
    for agg in [&mut a, &mut b] {
        assert!(agg.reconcile().unwrap().is_clean());
    }
    let ledger = Ledger::open_postgres(&url_of(&db), catalogue()).unwrap();
    assert_eq!(ledger.stats().records, stored);
    assert_eq!(ledger.held_records().len() as u64, stored);
}

mod tokens {
    use confiance::Timestamp;
    use confiance::consent::DeviceKey;
    use confiance::hazmat::{SeedableRng as _, SeededRng};
    use confiance::token::{PendingTokens, TokenPeriod, TokenScope};
    use confiance_aggregator::issuer::{IssueError, IssuerSecret};
    use confiance_aggregator::service::Aggregator;

    pub use super::fixtures::calora_mode_receipt as receipt;
    use super::fixtures::id;

    pub const DAY: u64 = 86_400;

    pub fn t(s: u64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    pub fn scope(now: Timestamp) -> TokenScope {
        TokenScope::new([id("calora")], id("product-improvement"), TokenPeriod::at(now, DAY))
    }

    pub fn enable(agg: &mut Aggregator) {
        agg.enable_tokens(IssuerSecret::from_bytes([7; 32])).unwrap();
    }

    /// Asks for `n` tokens; on success checks the proof and returns how many came.
    pub fn ask(
        agg: &mut Aggregator,
        key: &DeviceKey,
        scope: &TokenScope,
        n: usize,
        now: Timestamp,
        seed: u64,
    ) -> Result<usize, IssueError> {
        let mut rng = SeededRng::seed_from_u64(seed);
        let pk = agg.token_public_key(scope)?;
        let (pending, request) = PendingTokens::request(key, scope.clone(), pk, n, &mut rng).unwrap();
        let response = agg.issue_tokens(&request, now, &mut rng)?;
        Ok(pending.finalize(&response).expect("the aggregator's proof verifies").len())
    }
}

/// The ledger and the token quotas on PostgreSQL, three processes: a delegation and a
/// receipt recorded by one are the policy of the others' next issuance; the quota is
/// exact when the three issue to one device at once (24 tokens in all, not one more);
/// a withdrawal recorded by one stops the others' issuance at once.
#[test]
fn the_ledger_and_the_token_quota_are_shared_exactly_by_three_processes() {
    use confiance::consent::{DeviceKey, SubjectKey};
    use confiance::token::{TokenPeriod, TokenScope};
    use tokens::{DAY, ask, enable, receipt, scope, t};
    let Some(config) = fresh_database("ledger_tokens") else { return };
    let mut procs: Vec<Aggregator> = (0..3).map(|_| all_on_postgres(&config, keys().0)).collect();
    for p in &mut procs {
        enable(p);
    }
    let owner = SubjectKey::from_bytes(&[1; 32]);
    let dev = DeviceKey::from_bytes(&[11; 32]);
    let start = t(T0 - 30 * DAY);
    let now = t(T0 + 3_600);
    let s = scope(now);
    // Process 0 records the delegation; before the receipt, process 1 refuses: no consent.
    procs[0]
        .receive_delegation(&owner.delegate(dev.public_key(), start, None, start).unwrap().to_bytes(), start)
        .unwrap();
    assert_eq!(ask(&mut procs[1], &dev, &s, 1, now, 1).unwrap_err().code(), "not_consented");
    let r = receipt(&owner, &dev, T0 - 20 * DAY, 1);
    procs[0].receive_receipt(&r.to_bytes(), t(T0 - 20 * DAY)).unwrap();
    // Three processes, twelve requests of one token each, at once: 24 issued in all.
    let quota = catalogue().limits().tokens_per_period as usize;
    assert_eq!(quota, 24);
    let barrier = std::sync::Barrier::new(procs.len());
    let results: Vec<Vec<Result<usize, confiance_aggregator::issuer::IssueError>>> =
        std::thread::scope(|sc| {
            let workers: Vec<_> = procs
                .iter_mut()
                .enumerate()
                .map(|(k, agg)| {
                    let (barrier, dev, s) = (&barrier, &dev, &s);
                    sc.spawn(move || {
                        barrier.wait();
                        (0..12).map(|i| ask(agg, dev, s, 1, now, 100 * k as u64 + i)).collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
    let issued: usize = results.iter().flatten().filter_map(|r| r.as_ref().ok()).sum();
    assert_eq!(issued, quota, "the quota is exact across processes: {results:?}");
    for r in results.iter().flatten().filter(|r| r.is_err()) {
        assert_eq!(r.as_ref().unwrap_err().code(), "over_quota", "{r:?}");
    }
    assert!(results.iter().all(|p| p.iter().any(Result::is_ok)), "every process issued some: {results:?}");
    // The next period's quota is its own; a withdrawal recorded by process 2 stops
    // process 1 at its next request.
    let next = TokenScope { period: TokenPeriod(s.period.0 + 1), ..s.clone() };
    assert_eq!(ask(&mut procs[1], &dev, &next, 2, now, 7), Ok(2));
    procs[2].receive_withdrawal(&owner.withdraw(&r, now, now).unwrap().to_bytes(), now).unwrap();
    let later = t(now.as_secs() + 1);
    assert_eq!(ask(&mut procs[1], &dev, &next, 1, later, 8).unwrap_err().code(), "not_consented");
    // A restarted process reads the same ledger and counts.
    drop(procs);
    let mut again = all_on_postgres(&config, keys().0);
    enable(&mut again);
    assert_eq!(again.ledger().stats().withdrawals, 1);
    assert_eq!(ask(&mut again, &dev, &s, 1, now, 9).unwrap_err().code(), "not_consented");
}

/// `agg` receives `receipts` (given at `T0 - 10 000`) and ingests `frames` (at `T0`).
fn feed(agg: &mut Aggregator, receipts: &[Vec<u8>], frames: &[Vec<u8>]) {
    for r in receipts {
        agg.receive_receipt(r, Timestamp::from_secs(T0 - 10_000)).unwrap();
    }
    for f in frames {
        agg.ingest(f, Timestamp::from_secs(T0)).unwrap();
    }
}

/// Every row of the ledger's tables, the stored records and the audit log (each table's
/// rows as text, `seq` first where there is one): two databases with equal dumps hold
/// the same facts in the same order.
fn dump(config: &Config) -> Vec<String> {
    let mut c = config.connect(NoTls).unwrap();
    [
        "ledger_head",
        "ledger_receipt",
        "ledger_withdrawal",
        "ledger_record",
        "ledger_record_purge",
        "ledger_partition",
        "ledger_partition_purge",
        "record",
        "audit_leaf",
        "audit_consent",
    ]
    .iter()
    .map(|t| {
        let q = format!("SELECT COALESCE(string_agg(x::text, '|' ORDER BY x::text), '') FROM {t} x");
        format!("{t}: {}", c.query_one(&q, &[]).unwrap().get::<_, String>(0))
    })
    .collect()
}

fn count(config: &Config, table: &str) -> i64 {
    let mut c = config.connect(NoTls).unwrap();
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[]).unwrap().get(0)
}

/// The reconciliation at open of a lazily loaded ledger (`Ledger::open_postgres_lazy`,
/// what `confiance serve` opens) works from SQL (`Store::ledger_gaps`: anti-joins
/// between the store's, the ledger's and the log's tables) and repairs exactly what the
/// in-memory one repairs, in the same order: one crashed database, copied, is reconciled
/// once each way, and the two end with the same ledger, records and audit log, row for
/// row. The crash: the holdings notes of two stored records lost, two records purged
/// from the store without their notes, a receipt and a withdrawal recorded without
/// their consent events, and one consent event logged before schema version 5 (its key
/// not in `audit_consent`, the database set back to version 5: the migration to 6 finds
/// its key in the log, and it is not logged twice).
#[test]
fn the_reconciliation_from_sql_repairs_exactly_what_the_in_memory_one_repairs() {
    use confiance::consent::{DeviceKey, SubjectKey};
    let Some(db) = fresh_database("reconcile_sql") else { return };
    let (keys, config) = keys();
    let (receipts, frames) = fleet(12, config);
    feed(&mut all_on_postgres(&db, keys.clone()), &receipts, &frames);
    // A receipt and its withdrawal written by the ledger alone: no consent events.
    let mut ledger = Ledger::open_postgres(&url_of(&db), catalogue()).unwrap();
    let (owner, dev) = (SubjectKey::from_bytes(&[9; 32]), DeviceKey::from_bytes(&[9; 32]));
    let receipt = fixtures::calora_mode_receipt(&owner, &dev, T0 - 5_000, 1);
    ledger.ingest_receipt(&receipt.to_bytes(), Timestamp::from_secs(T0 - 5_000)).unwrap();
    let w = owner.withdraw(&receipt, Timestamp::from_secs(T0 - 100), Timestamp::from_secs(T0 - 100)).unwrap();
    ledger.ingest_withdrawal(&w.to_bytes(), Timestamp::from_secs(T0 - 90)).unwrap();
    drop(ledger);
    {
        let mut c = db.connect(NoTls).unwrap();
        assert!(count(&db, "record") >= 4);
        c.batch_execute(
            "DELETE FROM ledger_record WHERE id IN (SELECT id FROM record ORDER BY seq DESC LIMIT 2);
             DELETE FROM record WHERE id IN (SELECT id FROM record ORDER BY seq LIMIT 2);
             DELETE FROM audit_consent WHERE receipt = (SELECT id FROM ledger_receipt ORDER BY seq LIMIT 1);
             UPDATE confiance_schema SET version = 5;",
        )
        .unwrap();
    }
    // The same crashed state twice.
    let mut copy = db.clone();
    copy.dbname("confiance_s_reconcile_sql_lazy");
    {
        let mut admin: Config = std::env::var("CONFIANCE_TEST_POSTGRES").unwrap().parse().unwrap();
        admin.dbname("postgres");
        let mut c = admin.connect(NoTls).unwrap();
        c.batch_execute("DROP DATABASE IF EXISTS confiance_s_reconcile_sql_lazy WITH (FORCE)").unwrap();
        c.batch_execute("CREATE DATABASE confiance_s_reconcile_sql_lazy TEMPLATE confiance_s_reconcile_sql")
            .unwrap();
    }
    let crashed = dump(&db);
    assert_eq!(dump(&copy), crashed);
    let (leaves, records, purges) =
        (count(&db, "audit_leaf"), count(&db, "ledger_record"), count(&db, "ledger_record_purge"));

    let eager = all_on_postgres(&db, keys.clone());
    let lazy = with_ledger(&copy, keys, Ledger::open_postgres_lazy(&url_of(&copy), catalogue()).unwrap());
    // The lazy one loaded the subjects of what it repaired only.
    let loaded = lazy.ledger().loaded_subjects().unwrap();
    assert!((1..receipts.len()).contains(&loaded), "{loaded} subjects loaded");
    drop((eager, lazy));
    let repaired = dump(&db);
    assert_ne!(repaired, crashed, "something was repaired");
    assert_eq!(count(&db, "audit_leaf"), leaves + 2, "two consent events logged, the older one not again");
    assert_eq!(count(&db, "ledger_record"), records + 2, "two holdings noted");
    assert_eq!(count(&db, "ledger_record_purge"), purges + 2, "two holdings noted purged");
    assert_eq!(dump(&copy), repaired, "the reconciliation from SQL repaired the same, in the same order");
}

/// A lazily loaded process on the database `config` names (what `confiance serve` opens).
fn lazy_on_postgres(config: &Config, keys: KeyStore) -> Aggregator {
    with_ledger(config, keys, Ledger::open_postgres_lazy(&url_of(config), catalogue()).unwrap())
}

/// What a reconciliation has left to repair, counted over the whole database (the
/// oracle: no watermark): stored records without a holding, held records the store no
/// longer has, receipts and withdrawals without a consent event's key.
fn unrepaired(config: &Config) -> [i64; 3] {
    let mut c = config.connect(NoTls).unwrap();
    let mut n = |q: &str| -> i64 { c.query_one(q, &[]).unwrap().get(0) };
    [
        n("SELECT count(*) FROM record r WHERE NOT EXISTS (SELECT 1 FROM ledger_record l WHERE l.id = r.id)"),
        n("SELECT count(*) FROM ledger_record l
           WHERE NOT EXISTS (SELECT 1 FROM ledger_record_purge p WHERE p.record = l.id)
             AND NOT EXISTS (SELECT 1 FROM record r WHERE r.id = l.id)"),
        n("SELECT (SELECT count(*) FROM ledger_receipt c WHERE NOT EXISTS
             (SELECT 1 FROM audit_consent a WHERE a.receipt = c.id AND NOT a.withdrawn))
           + (SELECT count(*) FROM ledger_withdrawal w WHERE NOT EXISTS
             (SELECT 1 FROM audit_consent a WHERE a.receipt = w.receipt AND a.withdrawn))"),
    ]
}

/// The stored watermark (`ledger_seq`, `record_seq`, `gone_seq`), if any.
fn mark(config: &Config) -> Option<(i64, i64, i64)> {
    let mut c = config.connect(NoTls).unwrap();
    c.query_opt("SELECT ledger_seq, record_seq, gone_seq FROM reconcile_mark", &[])
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

/// A receipt and its withdrawal recorded by the ledger alone — a process that crashed
/// between the ledger's commit and the consent events' — for the subject `k`.
fn consent_without_events(config: &Config, k: u8) {
    use confiance::consent::{DeviceKey, SubjectKey};
    let mut ledger = Ledger::open_postgres(&url_of(config), catalogue()).unwrap();
    let (owner, dev) = (SubjectKey::from_bytes(&[k; 32]), DeviceKey::from_bytes(&[k; 32]));
    let receipt = fixtures::calora_mode_receipt(&owner, &dev, T0 - 5_000, 1);
    ledger.ingest_receipt(&receipt.to_bytes(), Timestamp::from_secs(T0 - 5_000)).unwrap();
    let w = owner.withdraw(&receipt, Timestamp::from_secs(T0 - 100), Timestamp::from_secs(T0 - 100)).unwrap();
    ledger.ingest_withdrawal(&w.to_bytes(), Timestamp::from_secs(T0 - 90)).unwrap();
}

/// Schema version 6's watermark: a reconciliation examines only what was written after
/// the last one, and what a crash leaves after it is still repaired — consent facts
/// without their events, a stored record without its holdings note, records purged
/// without their purge notes (old holdings, found through `record_gone`). And the bound
/// is real: a gap made *under* the mark (an old event's key removed by hand) is not
/// examined again.
#[test]
fn after_a_watermark_a_crash_between_a_fact_and_its_audit_event_is_still_repaired() {
    let Some(db) = fresh_database("reconcile_mark") else { return };
    let (keys, config) = keys();
    let (receipts, frames) = fleet(12, config);
    // The first six devices' envelopes: nine, as the three with a record seal it apart
    // from their statistic (an envelope carries one track).
    assert_eq!(frames.len(), 18);
    feed(&mut lazy_on_postgres(&db, keys.clone()), &receipts, &frames[..9]);
    // A start on a consistent database marks what it covered.
    drop(lazy_on_postgres(&db, keys.clone()));
    let first = mark(&db).expect("a reconciliation stores its mark");
    let old_records = count(&db, "record");
    assert!(old_records >= 3 && first.1 > 0, "{first:?}, {old_records} records");

    // After the mark: consent without events, and a record stored without its note.
    feed(&mut lazy_on_postgres(&db, keys.clone()), &[], &frames[9..]);
    consent_without_events(&db, 9);
    db.connect(NoTls)
        .unwrap()
        .batch_execute(
            "DELETE FROM ledger_record WHERE id = (SELECT id FROM record ORDER BY seq DESC LIMIT 1)",
        )
        .unwrap();
    // Under the mark: an old receipt's event key removed (not a crash a mark must cover).
    db.connect(NoTls)
        .unwrap()
        .batch_execute(
            "DELETE FROM audit_consent WHERE receipt = (SELECT id FROM ledger_receipt ORDER BY seq LIMIT 1)",
        )
        .unwrap();
    assert_eq!(unrepaired(&db), [1, 0, 3]);
    let c = lazy_on_postgres(&db, keys.clone());
    assert_eq!(c.ledger().loaded_subjects(), Some(1), "the subject of the record noted only");
    drop(c);
    assert_eq!(unrepaired(&db), [0, 0, 1], "repaired after the mark; the gap under it not examined");
    let second = mark(&db).unwrap();
    assert!(second.0 > first.0 && second.1 > first.1, "{first:?} then {second:?}");

    // After the second mark: the store purges every record, and the process crashes
    // before the ledger's purge notes (holdings noted before the mark).
    let purged = PgStore::with_config(&db).unwrap().purge(Timestamp::from_secs(T0 + 400 * 86_400)).unwrap();
    assert_eq!(i64::try_from(purged.records).unwrap(), count(&db, "ledger_record"));
    assert_eq!(unrepaired(&db), [0, purged.records as i64, 1]);
    drop(lazy_on_postgres(&db, keys));
    assert_eq!(unrepaired(&db), [0, 0, 1]);
    let third = mark(&db).unwrap();
    assert!(third.2 > second.2, "{second:?} then {third:?}");
    assert_eq!(count(&db, "record_gone"), 0, "purges under the mark are not kept");
}

/// A store whose `ledger_gaps` lets another process write right after it has read —
/// a write that falls between a reconciliation's reading of the gaps and its storing
/// of the mark.
struct WriteDuringReconcile {
    inner: PgStore,
    meanwhile: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl confiance_aggregator::store::Store for WriteDuringReconcile {
    fn partitions(&self) -> Result<Vec<confiance_aggregator::store::StoredPartition>, StoreError> {
        self.inner.partitions()
    }
    fn seen_ids(&self, now: Timestamp) -> Result<Vec<([u8; 16], Timestamp)>, StoreError> {
        self.inner.seen_ids(now)
    }
    fn for_each_seen_id(
        &self,
        now: Timestamp,
        f: &mut dyn FnMut(&[u8; 16], Timestamp),
    ) -> Result<(), StoreError> {
        self.inner.for_each_seen_id(now, f)
    }
    fn id_seen(&self, id: &[u8; 16]) -> Result<bool, StoreError> {
        self.inner.id_seen(id)
    }
    fn for_each_seen_envelope(&self, f: &mut dyn FnMut(&[u8; 32])) -> Result<(), StoreError> {
        self.inner.for_each_seen_envelope(f)
    }
    fn envelope_seen(&self, digest: &[u8; 32]) -> Result<bool, StoreError> {
        self.inner.envelope_seen(digest)
    }
    fn commit(&mut self, batch: &confiance_aggregator::store::CommitBatch) -> Result<(), StoreError> {
        self.inner.commit(batch)
    }
    fn records(
        &self,
        recipient: &confiance::ids::RecipientId,
        metric: &confiance::ids::MetricId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<confiance_aggregator::store::Record>, StoreError> {
        self.inner.records(recipient, metric, from, to)
    }
    fn purge(&mut self, now: Timestamp) -> Result<confiance_aggregator::store::PurgeReport, StoreError> {
        self.inner.purge(now)
    }
    fn append_audit(&mut self, events: &[confiance_aggregator::audit::AuditEvent]) -> Result<(), StoreError> {
        self.inner.append_audit(events)
    }
    fn record_heads(&self) -> Result<Vec<confiance_aggregator::store::RecordHead>, StoreError> {
        self.inner.record_heads()
    }
    fn audit_store(&self) -> Box<dyn confiance_aggregator::audit::AuditStore + '_> {
        self.inner.audit_store()
    }
    fn shared(&self) -> bool {
        self.inner.shared()
    }
    fn ledger_gaps(&self) -> Result<Option<confiance_aggregator::store::LedgerGaps>, StoreError> {
        let gaps = self.inner.ledger_gaps();
        if let Some(write) = self.meanwhile.lock().unwrap().take() {
            write();
        }
        gaps
    }
    fn mark_reconciled(
        &mut self,
        mark: &confiance_aggregator::store::ReconcileMark,
    ) -> Result<(), StoreError> {
        self.inner.mark_reconciled(mark)
    }
}

/// Several processes share one database, so a reconciliation's mark must not cover what
/// another wrote while it ran: a receipt and withdrawal recorded (and their events lost
/// in a crash) and a record stored (its holdings note lost) between the reconciliation's
/// reading of the gaps and its storing of the mark are repaired by the next start. (A
/// mark taken when it is stored — the head of the ledger then, the highest record then —
/// would skip them for ever.)
#[test]
fn a_fact_written_by_another_process_during_reconciliation_is_not_skipped_by_the_watermark() {
    let Some(db) = fresh_database("reconcile_mark_race") else { return };
    let (keys, config) = keys();
    let (receipts, frames) = fleet(12, config);
    let now = Timestamp::from_secs(T0);
    let mut a = lazy_on_postgres(&db, keys.clone());
    feed(&mut a, &receipts, &frames[..6]);
    // The other process, already running, writes while the next one reconciles.
    let (other_db, late) = (db.clone(), frames[6..].to_vec());
    let write: Box<dyn FnOnce() + Send> = Box::new(move || {
        consent_without_events(&other_db, 9);
        for f in &late {
            a.ingest(f, now).unwrap();
        }
        other_db
            .connect(NoTls)
            .unwrap()
            .batch_execute(
                "DELETE FROM ledger_record WHERE id = (SELECT id FROM record ORDER BY seq DESC LIMIT 1)",
            )
            .unwrap();
    });
    let store = WriteDuringReconcile {
        inner: PgStore::with_config(&db).unwrap(),
        meanwhile: std::sync::Mutex::new(Some(write)),
    };
    let lazy = Ledger::open_postgres_lazy(&url_of(&db), catalogue()).unwrap();
    let b =
        Aggregator::with_store(Box::new(store), lazy, catalogue(), keys.clone(), AggregatorConfig::default())
            .unwrap();
    drop(b);
    assert_eq!(unrepaired(&db), [1, 0, 2], "written during the reconciliation, after its reading");
    assert!(mark(&db).is_some());
    drop(lazy_on_postgres(&db, keys));
    assert_eq!(unrepaired(&db), [0, 0, 0], "the next start repairs them");
}

/// `AggregatorConfig::max_loaded_subjects` (`serve --max-loaded-subjects`): a lazily
/// loaded process forgets the subjects it holds, at the start of its next decision, once
/// they are more than the cap — and after a question across subjects, which loaded the
/// whole ledger — and answers as before. Loaded counts 1, 2, 3, 4 then back to 1 with a
/// cap of 3; without the bound they would reach 12.
#[test]
fn a_lazy_process_keeps_no_more_subjects_loaded_than_its_cap_between_decisions() {
    use confiance::ids::SubjectId;
    let Some(db) = fresh_database("subject_cap") else { return };
    let (keys, config) = keys();
    let (receipts, frames) = fleet(12, config);
    let now = Timestamp::from_secs(T0);
    let mut whole = all_on_postgres(&db, keys.clone());
    feed(&mut whole, &receipts, &frames);
    let subjects: Vec<SubjectId> = db
        .connect(NoTls)
        .unwrap()
        .query("SELECT DISTINCT subject FROM ledger_receipt ORDER BY subject", &[])
        .unwrap()
        .iter()
        .map(|r| SubjectId(r.get::<_, &[u8]>(0).try_into().unwrap()))
        .collect();
    assert_eq!(subjects.len(), 12);
    let capped = AggregatorConfig { max_loaded_subjects: 3, ..AggregatorConfig::default() };
    let lazy = Ledger::open_postgres_lazy(&url_of(&db), catalogue()).unwrap();
    let store = Box::new(PgStore::with_config(&db).unwrap());
    let mut agg = Aggregator::with_store(store, lazy, catalogue(), keys, capped).unwrap();
    let mut held = Vec::new();
    for s in &subjects {
        agg.refresh_ledger().unwrap();
        agg.load_subject(s).unwrap();
        assert_eq!(agg.ledger().subject_access(s, now, None), whole.ledger().subject_access(s, now, None));
        held.push(agg.ledger().loaded_subjects().unwrap());
    }
    assert_eq!(held, [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4]);
    // A question across subjects loads everything; the next decision is lazy again.
    agg.load_everything().unwrap();
    assert_eq!(agg.ledger().loaded_subjects(), None);
    assert_eq!(agg.ledger().overdue(now, None), whole.ledger().overdue(now, None));
    agg.refresh_ledger().unwrap();
    assert_eq!(agg.ledger().loaded_subjects(), Some(0));
    agg.load_subject(&subjects[5]).unwrap();
    assert_eq!(
        agg.ledger().subject_access(&subjects[5], now, None),
        whole.ledger().subject_access(&subjects[5], now, None)
    );
}

/// The questions across subjects and the auditor report on a lazily loaded process,
/// read a page of at most its cap of subjects at a time (3 of 12 here: five pages), are
/// those of a process holding the whole ledger — at three instants, before and after a
/// purge, overdue records included — and the subjects it keeps loaded stay as they were
/// (none added past the cap: before, each of these loaded the whole ledger).
#[test]
fn questions_across_subjects_on_a_lazy_process_read_pages_and_answer_as_the_whole_ledger() {
    use confiance::ids::CategoryId;
    use confiance_aggregator::report::{GatherOptions, ReportData, RetentionKind};
    use confiance_aggregator::server::{Query, run_query};
    let Some(db) = fresh_database("across_pages") else { return };
    let (keys, config) = keys();
    let (receipts, frames) = fleet(12, config);
    let mut whole = all_on_postgres(&db, keys.clone());
    feed(&mut whole, &receipts, &frames);
    // Committed: the records and partitions are noted in the ledger.
    whole.commit(Timestamp::from_secs(T0)).unwrap();
    let capped = AggregatorConfig { max_loaded_subjects: 3, ..AggregatorConfig::default() };
    let lazy = Ledger::open_postgres_lazy(&url_of(&db), catalogue()).unwrap();
    let store = Box::new(PgStore::with_config(&db).unwrap());
    let mut agg = Aggregator::with_store(store, lazy, catalogue(), keys, capped).unwrap();
    assert_eq!(agg.ledger().scan_chunk(), 3);
    let later = Timestamp::from_secs(T0 + 400 * 86_400);
    for round in 0..2 {
        if round == 1 {
            // Purged by the whole process: facts the lazy one has not loaded.
            whole.purge(Timestamp::from_secs(T0 + 200 * 86_400)).unwrap();
        }
        whole.refresh_ledger().unwrap();
        agg.refresh_ledger().unwrap();
        let held = agg.ledger().loaded_subjects();
        // Before the records' deadlines (T0 + 90 days), past them, and past the purge.
        let overdue_at = Timestamp::from_secs(T0 + 150 * 86_400);
        for at in [Timestamp::from_secs(T0), overdue_at, later] {
            let queries = [
                Query::Metric { metric: id("thermostat.mode"), at, as_known_at: None },
                Query::Metric { metric: id("thermostat.fault-code"), at, as_known_at: None },
                Query::Category { category: CategoryId::new("usage").unwrap(), at, as_known_at: None },
                Query::Category { category: CategoryId::new("device-state").unwrap(), at, as_known_at: None },
                Query::Overdue { now: at, as_known_at: None },
                Query::Disclosures { from: Timestamp::EPOCH, to: at },
            ];
            for q in &queries {
                let want = run_query(&mut whole, q).unwrap();
                assert_eq!(run_query(&mut agg, q).unwrap(), want, "{q:?}");
                assert_eq!(agg.ledger().loaded_subjects(), held, "{q:?} kept no subject loaded");
            }
            let opts = GatherOptions { at, generated_at: later, ..GatherOptions::default() };
            let paged = ReportData::gather_paged(&mut agg, &opts).unwrap();
            assert_eq!(agg.ledger().loaded_subjects(), held, "the report kept no subject loaded");
            // The reference: the same process (its store's partitions) with the whole ledger.
            agg.load_everything().unwrap();
            assert_eq!(paged, ReportData::gather(&agg, &opts).unwrap(), "round {round} at {at:?}");
            if at == overdue_at {
                let overdue = paged.retention.iter().filter(|r| r.kind == RetentionKind::Records);
                assert_eq!(overdue.clone().count(), 6, "the six records, overdue: {:?}", paged.retention);
                assert_eq!(overdue.filter(|r| r.purged_at.is_some()).count(), 6 * round, "purged later");
            }
            assert!(!paged.access.is_empty() && !paged.summary.is_empty());
            agg.refresh_ledger().unwrap();
        }
    }
}

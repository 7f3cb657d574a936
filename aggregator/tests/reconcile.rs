//! Crash repair across the store, the consent ledger and the audit log
//! (`service/reconcile.rs`, `docs/crash-safety.md`).
//!
//! A file-backed aggregator lives through consent, ingest and a purge; then each crash
//! point is simulated on a copy of its database by removing exactly what the crash would
//! not have written (raw SQL on the file), and the copy is reopened. The repaired database
//! must answer `who_sees`, `subject_access`, `recipient_view` and `overdue` as the
//! uncrashed copy does, its audit log must verify and extend the last checkpoint, and its
//! tables must be byte-identical to the uncrashed copy's. Reopening an intact database
//! writes nothing; reconciling twice repairs nothing the second time.
//!
//! The SIGKILL tests re-run this executable as a child (`--exact sigkill_child`) with the
//! test-only crash point set ([`CRASH_POINT_ENV`]); the child stops at that point, the
//! parent kills it with SIGKILL and reopens the database.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{ConsentState, DeviceKey, Scope};
use confiance::envelope::AeadId;
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{MetricId, ReceiptId, RecipientId, SubjectId};
use confiance::pseudonym::DeviceSecret;
use confiance::recorder::{MemoryStorage, Recorder, RecorderParts, Value};
use confiance_aggregator::audit::{AuditLog, CheckpointSigner, SqliteStore as AuditSqlite, Verifier};
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::ledger::{Ledger, Target};
use confiance_aggregator::service::{
    Aggregator, AggregatorConfig, CRASH_POINT_ENV, ConsentMessage, ReconcileReport,
};
use rusqlite::Connection;

const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;
const DEVICES: u64 = 16;
const DIR_ENV: &str = "CONFIANCE_RECONCILE_CHILD_DIR";
const OP_ENV: &str = "CONFIANCE_RECONCILE_CHILD_OP";

fn t(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
}

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

fn catalogue() -> Catalogue {
    Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml")).unwrap()
}

/// The aggregator's keys, identical in every process (fixed seed).
fn keys() -> (KeyStore, confiance::envelope::KeyConfig) {
    let mut rng = SeededRng::seed_from_u64(0x5EED);
    let mut keys = KeyStore::new(DAY);
    let config =
        keys.generate(AeadId::ChaCha20Poly1305, Timestamp::EPOCH, t(T0 + 1_000 * DAY), &mut rng).unwrap();
    (keys, config)
}

fn open(path: &Path) -> Aggregator {
    Aggregator::open(path, catalogue(), keys().0, AggregatorConfig::default()).unwrap()
}

fn device(i: u64, config: confiance::envelope::KeyConfig) -> Recorder<SeededRng, MemoryStorage> {
    let mut rng = SeededRng::seed_from_u64(1_000 + i);
    let parts = RecorderParts {
        catalogue: catalogue(),
        consent: ConsentState::new(DeviceKey::generate(&mut rng)),
        pseudonyms: DeviceSecret::generate(&mut rng),
        controller: id("calora"),
        key_configs: vec![config],
        rng,
    };
    Recorder::new(parts, MemoryStorage::default())
}

/// What the devices send, made once so that every copy of the history sees the same bytes.
struct Script {
    /// Receipts of every device: usage statistics and service records (`recorded_at`).
    consent: Vec<(Vec<u8>, Timestamp)>,
    /// Envelopes of day 0 and day 1.
    day0: Vec<Vec<u8>>,
    day1: Vec<Vec<u8>>,
    /// Withdrawals of a few devices and receipts of new ones (the last consent batch).
    late_consent: Vec<(ConsentMessage<'static>, Timestamp)>,
    /// Envelopes of days 121 and 130, sent after the purge (the last commit).
    late: Vec<Vec<u8>>,
    subjects: Vec<SubjectId>,
}

fn leak(v: Vec<u8>) -> &'static [u8] {
    Box::leak(v.into_boxed_slice())
}

fn script() -> Script {
    let (_, config) = keys();
    let mut devices: Vec<_> = (0..DEVICES + 4).map(|i| device(i, config)).collect();
    let given = t(T0 - 10_000);
    let mut consent = Vec::new();
    let mut receipts: Vec<ReceiptId> = Vec::new();
    let mut late_consent = Vec::new();
    for (i, d) in devices.iter_mut().enumerate() {
        let late = i as u64 >= DEVICES;
        let when = if late { t(T0 + 120 * DAY) } else { given };
        for (purpose, metric, hold) in
            [("product-improvement", "thermostat.mode", "P60D"), ("service", "thermostat.fault-code", "P40D")]
        {
            let bytes = d
                .give_consent(
                    id("calora"),
                    id(purpose),
                    Scope::metrics([id::<MetricId>(metric)]),
                    when,
                    None,
                    hold.parse().unwrap(),
                    when,
                )
                .unwrap();
            if late {
                late_consent.push((ConsentMessage::Receipt(leak(bytes)), when));
            } else {
                receipts.push(confiance::consent::SignedReceipt::from_bytes(&bytes).unwrap().id());
                consent.push((bytes, when));
            }
        }
    }
    let day = |devices: &mut [Recorder<SeededRng, MemoryStorage>], now: Timestamp| {
        let mut frames = Vec::new();
        for (i, d) in devices.iter_mut().enumerate() {
            d.record(&id("thermostat.mode"), &id("product-improvement"), Value::Category(i as u32 % 4), now);
            d.record_service(&id("thermostat.fault-code"), Value::Int(i as i64 % 9), now);
            let sent = d.flush(now);
            for f in &sent {
                d.acknowledge(f);
            }
            frames.extend(sent);
        }
        frames
    };
    let day0 = day(&mut devices[..DEVICES as usize], t(T0));
    let day1 = day(&mut devices[..DEVICES as usize], t(T0 + DAY));
    // Devices 0..4 withdraw their service receipt (taking effect at T0 + 2 days).
    for i in 0..4 {
        let w = devices[i].withdraw_consent(&receipts[2 * i + 1], t(T0 + 2 * DAY)).unwrap();
        late_consent.push((ConsentMessage::Withdrawal(leak(w)), t(T0 + 120 * DAY)));
    }
    let mut late = day(&mut devices[4..], t(T0 + 121 * DAY));
    late.extend(day(&mut devices[4..], t(T0 + 130 * DAY)));
    let subjects = devices.iter().map(Recorder::subject).collect();
    Script { consent, day0, day1, late_consent, late, subjects }
}

/// The shared history: consent, two days of ingest, a purge at T0 + 100 days that drops
/// the records (40-day hold) and the day-0/1 partitions (60-day hold).
fn history(path: &Path, s: &Script) {
    let mut agg = open(path);
    let batch: Vec<_> = s.consent.iter().map(|(b, at)| (ConsentMessage::Receipt(b), *at)).collect();
    assert!(agg.receive_consent_batch(&batch).unwrap().iter().all(Result::is_ok));
    for f in &s.day0 {
        agg.ingest(f, t(T0 + 60)).unwrap();
    }
    for f in &s.day1 {
        agg.stage(f, t(T0 + DAY + 60)).unwrap();
    }
    agg.commit(t(T0 + DAY + 60)).unwrap();
    let purged = agg.purge(t(T0 + 100 * DAY)).unwrap();
    assert!(purged.partitions > 0 && purged.records > 0, "{purged:?}");
}

fn last_consent(agg: &mut Aggregator, s: &Script) {
    let r = agg.receive_consent_batch(&s.late_consent).unwrap();
    assert!(r.iter().all(Result::is_ok), "{r:?}");
}

fn last_commit(agg: &mut Aggregator, s: &Script) {
    for f in &s.late {
        agg.stage(f, t(LATE_COMMIT)).unwrap();
    }
    assert_eq!(agg.commit(t(LATE_COMMIT)).unwrap().len(), s.late.len());
}

const LATE_COMMIT: u64 = T0 + 130 * DAY + 30;
/// Drops the day-121 partition (deadline day 182) and every late record (40-day hold),
/// keeps the day-130 partition.
const LAST_PURGE: u64 = T0 + 185 * DAY;

fn last_purge(agg: &mut Aggregator) {
    let p = agg.purge(t(LAST_PURGE)).unwrap();
    assert!(p.partitions > 0 && p.records > 0, "{p:?}");
}

/// Every row of every table, sorted: what "byte-identical tables" compares.
fn dump(path: &Path) -> BTreeMap<String, Vec<String>> {
    dump_from(path, |_| 0)
}

/// As [`dump`] without what a store commit fills with fresh randomness (record nonces and
/// ciphertexts, period keys) or in hash-set order (an envelope's report ids): for
/// comparing a commit redone in another process.
fn dump_clear(path: &Path) -> BTreeMap<String, Vec<String>> {
    let mut d = dump(path);
    let conn = Connection::open(path).unwrap();
    for (table, cols) in [
        ("record", "id, metric, recipient, receipt, collected_at, deadline, key_id"),
        ("period_key", "key_id, hold, period_start, destroy_after"),
        ("seen_envelope", "digest, expires_at, length(ids)"),
    ] {
        let mut st = conn.prepare(&format!("SELECT {cols} FROM {table}")).unwrap();
        let n = st.column_count();
        let mut rows: Vec<String> = st
            .query_map([], |r| {
                (0..n).map(|i| r.get::<_, rusqlite::types::Value>(i)).collect::<Result<Vec<_>, _>>()
            })
            .unwrap()
            .map(|r| format!("{:?}", r.unwrap()))
            .collect();
        rows.sort();
        d.insert(table.into(), rows);
    }
    d
}

/// As [`dump`], leaving out each table's first `skip(table)` columns.
fn dump_from(path: &Path, skip: impl Fn(&str) -> usize) -> BTreeMap<String, Vec<String>> {
    let conn = Connection::open(path).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = BTreeMap::new();
    for name in tables {
        let mut st = conn.prepare(&format!("SELECT * FROM \"{name}\"")).unwrap();
        let n = st.column_count();
        let first = skip(&name);
        let mut rows: Vec<String> = st
            .query_map([], |r| {
                (first..n).map(|i| r.get::<_, rusqlite::types::Value>(i)).collect::<Result<Vec<_>, _>>()
            })
            .unwrap()
            .map(|r| format!("{:?}", r.unwrap()))
            .collect();
        rows.sort();
        out.insert(name, rows);
    }
    out
}

fn copy_db(from: &Path, to: &Path) {
    for ext in ["", "-wal", "-shm"] {
        let src = PathBuf::from(format!("{}{ext}", from.display()));
        let dst = PathBuf::from(format!("{}{ext}", to.display()));
        let _ = std::fs::remove_file(&dst);
        if src.exists() {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("confiance-reconcile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const INSTANTS: [u64; 11] = [
    T0 - 20_000,
    T0 + 30,
    T0 + 60,
    T0 + DAY + 60,
    T0 + 3 * DAY,
    T0 + 99 * DAY,
    T0 + 121 * DAY + 3_600,
    LATE_COMMIT,
    T0 + 150 * DAY,
    T0 + 186 * DAY,
    T0 + 400 * DAY,
];

/// Everything the ledger answers about the history, as known now.
#[derive(Debug, PartialEq)]
struct Answers(Vec<String>);

fn answers(ledger: &Ledger, subjects: &[SubjectId]) -> Answers {
    let mut out = Vec::new();
    for at in INSTANTS.map(t) {
        for m in ["thermostat.mode", "thermostat.fault-code"] {
            out.push(format!("{:?}", ledger.who_sees(&Target::Metric(id(m)), at, None)));
        }
        out.push(format!("{:?}", ledger.recipient_view(&id::<RecipientId>("calora"), at, None)));
        out.push(format!("{:?}", ledger.overdue(at)));
        for s in subjects {
            out.push(format!("{:?}", ledger.subject_access(s, at, None)));
        }
    }
    Answers(out)
}

/// The ledger as the crashed file holds it, before any repair.
fn raw_answers(path: &Path, subjects: &[SubjectId]) -> Answers {
    answers(&Ledger::open(Connection::open(path).unwrap(), catalogue()).unwrap(), subjects)
}

fn signer() -> CheckpointSigner {
    CheckpointSigner::from_secret_bytes("confiance.test/audit", &[9; 32]).unwrap()
}

/// Checks the whole log against a fresh checkpoint, and that it extends `old`.
fn verify_log(agg: &Aggregator, old: &confiance_aggregator::audit::SignedCheckpoint) {
    let log = agg.store().audit_log().unwrap();
    let signer = signer();
    let verifier = Verifier::new("confiance.test/audit", signer.verifying_key()).unwrap();
    let cp = log.checkpoint(&signer, t(T0 + 500 * DAY));
    verifier.audit(&cp, &log.export(log.size()).unwrap()).unwrap();
    let proof = log.consistency_proof(old.checkpoint().size(), log.size()).unwrap();
    verifier.verify_consistency(old, &cp, &proof).unwrap();
}

fn checkpoint(path: &Path) -> confiance_aggregator::audit::SignedCheckpoint {
    let log = AuditLog::open(AuditSqlite::attach(Connection::open(path).unwrap())).unwrap();
    log.checkpoint(&signer(), t(T0))
}

fn sql(path: &Path, batch: &str) -> usize {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(batch).unwrap();
    usize::try_from(conn.changes()).unwrap()
}

fn count(path: &Path, query: &str) -> u64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row(query, [], |r| r.get::<_, i64>(0)).unwrap() as u64
}

/// Reopens the crashed copy and checks it against the uncrashed one: same answers, same
/// tables, a verifying log extending `old`; then that repair is idempotent.
fn same_tables(a: &BTreeMap<String, Vec<String>>, b: &BTreeMap<String, Vec<String>>) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (t, rows) in a {
        let other = &b[t];
        let only_a: Vec<_> = rows.iter().filter(|r| !other.contains(r)).collect();
        let only_b: Vec<_> = other.iter().filter(|r| !rows.contains(r)).collect();
        assert!(only_a.is_empty() && only_b.is_empty(), "table {t}: {only_a:?} vs {only_b:?}");
        assert_eq!(rows, other, "table {t}");
    }
}

fn check_repair(
    crashed: &Path,
    reference: &Path,
    subjects: &[SubjectId],
    old: &confiance_aggregator::audit::SignedCheckpoint,
    dump: fn(&Path) -> BTreeMap<String, Vec<String>>,
) {
    let ref_agg = open(reference);
    let mut agg = open(crashed);
    assert_eq!(answers(agg.ledger(), subjects), answers(ref_agg.ledger(), subjects));
    assert_eq!(agg.store().audit_log().unwrap().root(), ref_agg.store().audit_log().unwrap().root());
    verify_log(&agg, old);
    // What the open repaired is now on disk: a second pass finds nothing.
    assert_eq!(agg.reconcile().unwrap(), ReconcileReport::default());
    drop((agg, ref_agg));
    same_tables(&dump(crashed), &dump(reference));
    // Reopening the repaired database changes nothing more.
    drop(open(crashed));
    same_tables(&dump(crashed), &dump(reference));
}

/// Runs `last` on a copy of the shared history and returns (base, done): the database
/// before and after it.
fn prepared(dir: &Path, s: &Script, last: impl FnOnce(&mut Aggregator)) -> (PathBuf, PathBuf) {
    let base = dir.join("base.sqlite");
    history(&base, s);
    // Every crash scenario also starts from the previous step's crash-free state.
    let done = dir.join("done.sqlite");
    copy_db(&base, &done);
    let mut agg = open(&done);
    last(&mut agg);
    drop(agg);
    (base, done)
}

/// What one reopen of (a copy of) `path` repairs, counted as the rows it adds.
fn reconcile_report(path: &Path) -> ReconcileReport {
    let copy = path.with_extension("report.sqlite");
    copy_db(path, &copy);
    let before = dump(&copy);
    let agg = open(&copy);
    drop(agg);
    let after = dump(&copy);
    let added = |table: &str| {
        let (a, b) = (before.get(table).map_or(0, Vec::len), after.get(table).map_or(0, Vec::len));
        (b - a) as u64
    };
    ReconcileReport {
        partitions_noted: added("ledger_partition"),
        records_noted: added("ledger_record"),
        partitions_purged: added("ledger_partition_purge"),
        records_purged: added("ledger_record_purge"),
        consent_events_logged: added("audit_leaf"),
        audit_log_unreadable: false,
    }
}

#[test]
fn crash_after_store_commit_before_holdings() {
    let dir = scratch("commit");
    let s = script();
    let (base, done) = prepared(&dir, &s, |agg| {
        last_consent(agg, &s);
        last_commit(agg, &s);
    });
    let old = checkpoint(&base);
    let crashed = dir.join("crashed.sqlite");
    copy_db(&done, &crashed);
    // The commit's holdings notes were never written.
    let at = LATE_COMMIT as i64;
    let p = sql(&crashed, &format!("DELETE FROM ledger_partition WHERE recorded_at = {at}"));
    let r = sql(&crashed, &format!("DELETE FROM ledger_record WHERE recorded_at = {at}"));
    assert!(p > 0 && r > 0);
    assert_ne!(raw_answers(&crashed, &s.subjects), raw_answers(&done, &s.subjects), "the crash shows");
    assert_eq!(
        reconcile_report(&crashed),
        ReconcileReport { partitions_noted: p as u64, records_noted: r as u64, ..ReconcileReport::default() }
    );
    check_repair(&crashed, &done, &s.subjects, &old, dump);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn crash_after_store_purge_before_holdings() {
    let dir = scratch("purge");
    let s = script();
    let (base, done) = prepared(&dir, &s, |agg| {
        last_consent(agg, &s);
        last_commit(agg, &s);
        last_purge(agg);
    });
    let old = checkpoint(&base);
    let crashed = dir.join("crashed.sqlite");
    copy_db(&done, &crashed);
    let at = LAST_PURGE as i64;
    let p = sql(&crashed, &format!("DELETE FROM ledger_partition_purge WHERE recorded_at = {at}"));
    let r = sql(&crashed, &format!("DELETE FROM ledger_record_purge WHERE recorded_at = {at}"));
    assert!(p > 0 && r > 0);
    let raw = raw_answers(&crashed, &s.subjects);
    assert_ne!(raw, raw_answers(&done, &s.subjects), "the crash shows");
    assert_eq!(
        reconcile_report(&crashed),
        ReconcileReport {
            partitions_purged: p as u64,
            records_purged: r as u64,
            ..ReconcileReport::default()
        }
    );
    check_repair(&crashed, &done, &s.subjects, &old, dump);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn crash_after_consent_before_audit() {
    let dir = scratch("consent");
    let s = script();
    let (base, done) = prepared(&dir, &s, |agg| {
        last_consent(agg, &s);
    });
    // The last checkpoint covers the log before the batch; its events are the tail.
    let old = checkpoint(&base);
    let n0 = old.checkpoint().size();
    let crashed = dir.join("crashed.sqlite");
    copy_db(&done, &crashed);
    let tail = count(&crashed, &format!("SELECT COUNT(*) FROM audit_leaf WHERE seq >= {n0}"));
    assert_eq!(tail, s.late_consent.len() as u64);
    sql(
        &crashed,
        &format!(
            "DROP TRIGGER audit_leaf_no_delete; DROP TRIGGER audit_node_no_delete;
             DELETE FROM audit_leaf WHERE seq >= {n0};
             DELETE FROM audit_node WHERE ((idx + 1) << level) > {n0};"
        ),
    );
    assert_eq!(count(&crashed, "SELECT COUNT(*) FROM audit_leaf"), n0);
    assert_eq!(
        reconcile_report(&crashed),
        ReconcileReport { consent_events_logged: tail, ..ReconcileReport::default() }
    );
    check_repair(&crashed, &done, &s.subjects, &old, dump);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reopening_an_intact_database_writes_nothing() {
    let dir = scratch("intact");
    let s = script();
    let (base, done) = prepared(&dir, &s, |agg| {
        last_consent(agg, &s);
        last_commit(agg, &s);
        last_purge(agg);
    });
    let old = checkpoint(&base);
    let before = dump(&done);
    let mut agg = open(&done);
    assert_eq!(agg.reconcile().unwrap(), ReconcileReport::default());
    verify_log(&agg, &old);
    drop(agg);
    assert_eq!(dump(&done), before);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every hole at once, as a database written before consent and audit shared a
/// transaction could hold: a consent batch never logged *in the middle* of the log (the
/// aggregator went on ingesting after the crash), a partition stored without its
/// holdings note, a purge without its notes. One reopen repairs all of it: the same answers, every consent fact
/// logged once, the log verifying and extending the last checkpoint.
#[test]
fn all_holes_at_once_are_repaired_in_one_open() {
    let dir = scratch("all");
    let s = script();
    let (base, done) = prepared(&dir, &s, |agg| {
        last_consent(agg, &s);
        last_commit(agg, &s);
        last_purge(agg);
    });
    let old = checkpoint(&base);
    let crashed = dir.join("crashed.sqlite");
    copy_db(&done, &crashed);
    let n0 = old.checkpoint().size();
    let k = s.late_consent.len() as u64;
    let (c, p) = (LATE_COMMIT as i64, LAST_PURGE as i64);
    sql(
        &crashed,
        &format!(
            "DELETE FROM ledger_partition WHERE recorded_at = {c}
               AND id NOT IN (SELECT partition FROM ledger_partition_purge);
             DELETE FROM ledger_partition_purge WHERE recorded_at = {p};
             DELETE FROM ledger_record_purge WHERE recorded_at = {p};"
        ),
    );
    // Rewrite the log without the consent batch's events (seq n0 .. n0 + k): the events
    // after them move up, as if the batch had never been logged.
    {
        let conn = Connection::open(&crashed).unwrap();
        let later: Vec<_> = {
            let log = AuditLog::open(AuditSqlite::attach(&conn)).unwrap();
            (n0 + k..log.size()).map(|i| log.event(i).unwrap().event).collect()
        };
        assert!(!later.is_empty());
        conn.execute_batch(&format!(
            "DROP TRIGGER audit_leaf_no_delete; DROP TRIGGER audit_node_no_delete;
             DELETE FROM audit_leaf WHERE seq >= {n0};
             DELETE FROM audit_node WHERE ((idx + 1) << level) > {n0};"
        ))
        .unwrap();
        let mut log = AuditLog::open(AuditSqlite::attach(&conn)).unwrap();
        log.append_batch(&later).unwrap();
    }
    let mut agg = open(&crashed);
    let ref_agg = open(&done);
    assert_eq!(answers(agg.ledger(), &s.subjects), answers(ref_agg.ledger(), &s.subjects));
    verify_log(&agg, &old);
    assert_eq!(agg.reconcile().unwrap(), ReconcileReport::default());
    // Same events, the batch's now at the end, in the ledger's order.
    let events = |a: &Aggregator| {
        let log = a.store().audit_log().unwrap();
        log.export(log.size()).unwrap().into_iter().map(|e| e.event).collect::<Vec<_>>()
    };
    let (mine, theirs) = (events(&agg), events(&ref_agg));
    let n0 = n0 as usize;
    let k = k as usize;
    assert_eq!(mine.len(), theirs.len());
    assert_eq!(mine[..n0], theirs[..n0]);
    assert_eq!(mine[n0..mine.len() - k], theirs[n0 + k..]);
    assert_eq!(mine[mine.len() - k..], theirs[n0..n0 + k]);
    drop((agg, ref_agg));
    // The same facts, but those noted by the repair took later sequence numbers (the
    // first column of every ledger table), and the audit rows moved (checked above).
    let skip = |t: &str| usize::from(t.starts_with("ledger_") && t != "ledger_meta");
    let (mut a, mut b) = (dump_from(&crashed, skip), dump_from(&done, skip));
    for t in ["audit_leaf", "audit_node"] {
        a.remove(t);
        b.remove(t);
    }
    assert_eq!(a, b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The child of the SIGKILL tests (a no-op unless [`DIR_ENV`] is set): opens
/// `db.sqlite` in that directory and runs the operation named by [`OP_ENV`]; the crash
/// point named by [`CRASH_POINT_ENV`] stops it there until the parent kills it.
#[test]
fn sigkill_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else { return };
    let s = script();
    let mut agg = open(&PathBuf::from(dir).join("db.sqlite"));
    match std::env::var(OP_ENV).unwrap().as_str() {
        "commit" => last_commit(&mut agg, &s),
        "purge" => last_purge(&mut agg),
        "consent" => last_consent(&mut agg, &s),
        op => panic!("unknown op {op}"),
    }
    println!("not killed");
}

/// Runs `op` on `dir/db.sqlite` in a child that stops at crash point `point`, and kills
/// it there with SIGKILL.
fn kill_at(dir: &Path, op: &str, point: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sigkill_child", "--nocapture", "--test-threads=1"])
        .env(DIR_ENV, dir)
        .env(OP_ENV, op)
        .env(CRASH_POINT_ENV, point)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let marker = format!("crash-point {point}");
    let mut stopped = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.contains(&marker) {
            stopped = true;
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(stopped, "the child never reached {point}");
    assert!(!status.success());
}

/// A real SIGKILL between the store's commit and the holdings notes: the reopened
/// database equals one where the commit finished.
#[test]
fn sigkill_after_store_commit() {
    let dir = scratch("kill-commit");
    let s = script();
    let (base, done) = prepared(&dir, &s, |agg| {
        last_consent(agg, &s);
        last_commit(agg, &s);
    });
    let old = checkpoint(&base);
    // `base` is the history only: bring a copy to just before the commit.
    let db = dir.join("db.sqlite");
    copy_db(&base, &db);
    let mut agg = open(&db);
    last_consent(&mut agg, &s);
    drop(agg);
    kill_at(&dir, "commit", "holdings");
    // The store committed (the envelopes are in), the holdings did not.
    assert_eq!(count(&db, "SELECT COUNT(*) FROM record"), count(&done, "SELECT COUNT(*) FROM record"));
    assert!(
        count(&db, "SELECT COUNT(*) FROM ledger_record") < count(&done, "SELECT COUNT(*) FROM ledger_record")
    );
    check_repair(&db, &done, &s.subjects, &old, dump_clear);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A real SIGKILL between the store's purge and the ledger's purge notes.
#[test]
fn sigkill_after_store_purge() {
    let dir = scratch("kill-purge");
    let s = script();
    let (base, done) = prepared(&dir, &s, |agg| {
        last_consent(agg, &s);
        last_commit(agg, &s);
        last_purge(agg);
    });
    let old = checkpoint(&base);
    let db = dir.join("db.sqlite");
    copy_db(&base, &db);
    let mut agg = open(&db);
    last_consent(&mut agg, &s);
    last_commit(&mut agg, &s);
    drop(agg);
    kill_at(&dir, "purge", "holdings");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM record"), 0);
    assert!(
        count(&db, "SELECT COUNT(*) FROM ledger_record_purge")
            < count(&done, "SELECT COUNT(*) FROM ledger_record_purge")
    );
    check_repair(&db, &done, &s.subjects, &old, dump_clear);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A real SIGKILL inside the consent transaction, after the ledger's writes and before
/// the audit append: neither survives, and the devices' resend is then recorded and
/// logged as if nothing had happened.
#[test]
fn sigkill_inside_consent_transaction() {
    let dir = scratch("kill-consent");
    let s = script();
    let (base, done) = prepared(&dir, &s, |agg| last_consent(agg, &s));
    let old = checkpoint(&base);
    let db = dir.join("db.sqlite");
    copy_db(&base, &db);
    kill_at(&dir, "consent", "ledger-audit");
    drop(open(&db));
    assert_eq!(dump(&db), dump(&base), "nothing of the batch survives");
    let mut agg = open(&db);
    last_consent(&mut agg, &s);
    verify_log(&agg, &old);
    drop(agg);
    assert_eq!(dump(&db), dump(&done));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A log whose leaf no longer reads back (tampering) is not "repaired": the aggregator
/// opens, appends nothing, and says so — verification is the auditor's finding.
#[test]
fn a_damaged_log_is_left_for_the_auditor() {
    let dir = scratch("damaged");
    let s = script();
    let db = dir.join("db.sqlite");
    history(&db, &s);
    let n = count(&db, "SELECT COUNT(*) FROM audit_leaf");
    sql(
        &db,
        "DROP TRIGGER audit_leaf_no_update;
         UPDATE audit_leaf SET leaf = (SELECT leaf FROM audit_leaf WHERE seq = 1) WHERE seq = 0;",
    );
    let before = dump(&db);
    let mut agg = open(&db);
    let report = agg.reconcile().unwrap();
    assert!(report.audit_log_unreadable && report.consent_events_logged == 0, "{report:?}");
    drop(agg);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM audit_leaf"), n);
    assert_eq!(dump(&db), before);
    let _ = std::fs::remove_dir_all(&dir);
}

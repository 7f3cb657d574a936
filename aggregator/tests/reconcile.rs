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
use confiance::consent::{ConsentRequest, Scope};
use confiance::envelope::AeadId;
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{MetricId, ReceiptId, RecipientId, SubjectId};
use confiance::recorder::{MemoryStorage, Recorder, Value};
use confiance_aggregator::audit::{
    AuditLog, CheckpointSigner, SignedCheckpoint, SqliteStore as AuditSqlite, Verifier,
};
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::ledger::{Ledger, Target};
use confiance_aggregator::service::{
    Aggregator, AggregatorConfig, CRASH_POINT_ENV, ConsentMessage, ReconcileReport,
};
use rusqlite::Connection;

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{catalogue, id, recorder};

const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;
const DEVICES: u64 = 16;
const DIR_ENV: &str = "CONFIANCE_RECONCILE_CHILD_DIR";
const OP_ENV: &str = "CONFIANCE_RECONCILE_CHILD_OP";

fn t(secs: u64) -> Timestamp {
    Timestamp::from_secs(secs)
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
    recorder(1_000 + i, "calora", vec![config])
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
                    ConsentRequest::new(
                        id("calora"),
                        id(purpose),
                        Scope::metrics([id::<MetricId>(metric)]),
                        hold.parse().unwrap(),
                    ),
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
            let _ = d.record(
                &id("thermostat.mode"),
                &id("product-improvement"),
                Value::Category(i as u32 % 4),
                now,
            );
            let _ = d.record_service(&id("thermostat.fault-code"), Value::Int(i as i64 % 9), now);
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

/// The operations that end a scenario, each a crash point's subject.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// The late consent batch (receipts of new devices, withdrawals).
    Consent,
    /// The late commit (days 121 and 130, after the late consent).
    Commit,
    /// The purge at [`LAST_PURGE`].
    Purge,
}

const LATE_COMMIT: u64 = T0 + 130 * DAY + 30;
/// Drops the day-121 partition (deadline day 182) and every late record (40-day hold),
/// keeps the day-130 partition.
const LAST_PURGE: u64 = T0 + 185 * DAY;

impl Step {
    fn run(self, agg: &mut Aggregator, s: &Script) {
        match self {
            Self::Consent => {
                let r = agg.receive_consent_batch(&s.late_consent).unwrap();
                assert!(r.iter().all(Result::is_ok), "{r:?}");
            }
            Self::Commit => {
                for f in &s.late {
                    agg.stage(f, t(LATE_COMMIT)).unwrap();
                }
                assert_eq!(agg.commit(t(LATE_COMMIT)).unwrap().len(), s.late.len());
            }
            Self::Purge => {
                let p = agg.purge(t(LAST_PURGE)).unwrap();
                assert!(p.partitions > 0 && p.records > 0, "{p:?}");
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Consent => "consent",
            Self::Commit => "commit",
            Self::Purge => "purge",
        }
    }
}

/// Every row of every table, sorted: what "byte-identical tables" compares.
fn dump(path: &Path) -> BTreeMap<String, Vec<String>> {
    dump_from(path, |_| 0)
}

/// As [`dump`] without what a store commit fills with fresh randomness (record nonces and
/// ciphertexts, period keys): for comparing a commit redone in another process. (The
/// envelopes' report ids, in hash-set order, were another column of `seen_envelope` up
/// to schema 3; its rows are now digest and expiry, compared whole.)
fn dump_clear(path: &Path) -> BTreeMap<String, Vec<String>> {
    let mut d = dump(path);
    let conn = Connection::open(path).unwrap();
    for (table, cols) in [
        ("record", "id, metric, recipient, receipt, collected_at, deadline, key_id"),
        ("period_key", "key_id, hold, period_start, destroy_after"),
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
        out.push(format!("{:?}", ledger.overdue(at, None)));
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
fn verify_log(agg: &Aggregator, old: &SignedCheckpoint) {
    let log = agg.store().audit_log().unwrap();
    let signer = signer();
    let verifier = Verifier::new("confiance.test/audit", signer.verifying_key()).unwrap();
    let cp = log.checkpoint(&signer, t(T0 + 500 * DAY));
    verifier.audit(&cp, &log.export(log.size()).unwrap()).unwrap();
    let proof = log.consistency_proof(old.checkpoint().size(), log.size()).unwrap();
    verifier.verify_consistency(old, &cp, &proof).unwrap();
}

fn checkpoint(path: &Path) -> SignedCheckpoint {
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

/// Asserts two dumps equal, naming the first table that differs and its odd rows.
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

/// Reopens the crashed copy and checks it against the uncrashed one: same answers, same
/// tables, a verifying log extending `old`; then that repair is idempotent.
fn check_repair(
    crashed: &Path,
    reference: &Path,
    subjects: &[SubjectId],
    old: &SignedCheckpoint,
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

/// One scenario in its own directory: `base.sqlite` holds the shared history,
/// `done.sqlite` the history then `steps`, run to completion (the uncrashed reference).
struct Case {
    dir: PathBuf,
    s: Script,
    steps: Vec<Step>,
    base: PathBuf,
    done: PathBuf,
    /// A checkpoint of `base`'s log: the last one an auditor holds.
    old: SignedCheckpoint,
}

impl Case {
    fn new(name: &str, steps: &[Step]) -> Self {
        let dir = scratch(name);
        let s = script();
        let (base, done) = (dir.join("base.sqlite"), dir.join("done.sqlite"));
        history(&base, &s);
        copy_db(&base, &done);
        let mut agg = open(&done);
        for step in steps {
            step.run(&mut agg, &s);
        }
        drop(agg);
        let old = checkpoint(&base);
        Self { dir, s, steps: steps.to_vec(), base, done, old }
    }

    /// A copy of `from` named `name`.
    fn copy(&self, from: &Path, name: &str) -> PathBuf {
        let to = self.dir.join(name);
        copy_db(from, &to);
        to
    }

    /// `db.sqlite`: the history and every step but the last.
    fn before_last(&self) -> PathBuf {
        let db = self.copy(&self.base, "db.sqlite");
        let mut agg = open(&db);
        for step in &self.steps[..self.steps.len() - 1] {
            step.run(&mut agg, &self.s);
        }
        db
    }

    fn check_repair(&self, crashed: &Path, dump: fn(&Path) -> BTreeMap<String, Vec<String>>) {
        check_repair(crashed, &self.done, &self.s.subjects, &self.old, dump);
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What one reopen of (a copy of) `path` repairs, counted as the rows it adds.
fn reconcile_report(path: &Path) -> ReconcileReport {
    let copy = path.with_extension("report.sqlite");
    copy_db(path, &copy);
    let before = dump(&copy);
    drop(open(&copy));
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

/// Deletes the holdings notes of the commit at [`LATE_COMMIT`] (with [`with_times`]).
const DROP_COMMIT_NOTES: &str = "DELETE FROM ledger_partition WHERE recorded_at = {c};
     DELETE FROM ledger_record WHERE recorded_at = {c};";

/// `sql` with `{c}` and `{p}` standing for the late commit's and the last purge's times.
fn with_times(sql: &str) -> String {
    sql.replace("{c}", &LATE_COMMIT.to_string()).replace("{p}", &LAST_PURGE.to_string())
}

/// Deletes the notes of the purge at [`LAST_PURGE`] (with [`with_times`]).
const DROP_PURGE_NOTES: &str = "DELETE FROM ledger_partition_purge WHERE recorded_at = {p};
     DELETE FROM ledger_record_purge WHERE recorded_at = {p};";

/// Drops the audit log's tail from `n0` on (no checkpoint covers it yet); the
/// append-only triggers go first, and come back when the store reopens the log.
fn drop_log_tail(conn: &Connection, n0: u64) {
    conn.execute_batch(&format!(
        "DROP TRIGGER audit_leaf_no_delete; DROP TRIGGER audit_node_no_delete;
         DELETE FROM audit_leaf WHERE seq >= {n0};
         DELETE FROM audit_node WHERE ((idx + 1) << level) > {n0};"
    ))
    .unwrap();
}

#[test]
fn crash_after_store_commit_before_holdings() {
    let c = Case::new("commit", &[Step::Consent, Step::Commit]);
    let crashed = c.copy(&c.done, "crashed.sqlite");
    let (p, r) = (
        count(&crashed, &with_times("SELECT COUNT(*) FROM ledger_partition WHERE recorded_at = {c}")),
        count(&crashed, &with_times("SELECT COUNT(*) FROM ledger_record WHERE recorded_at = {c}")),
    );
    assert!(p > 0 && r > 0);
    sql(&crashed, &with_times(DROP_COMMIT_NOTES));
    assert_ne!(raw_answers(&crashed, &c.s.subjects), raw_answers(&c.done, &c.s.subjects), "the crash shows");
    let expected = ReconcileReport { partitions_noted: p, records_noted: r, ..ReconcileReport::default() };
    assert_eq!(reconcile_report(&crashed), expected);
    c.check_repair(&crashed, dump);
}

#[test]
fn crash_after_store_purge_before_holdings() {
    let c = Case::new("purge", &[Step::Consent, Step::Commit, Step::Purge]);
    let crashed = c.copy(&c.done, "crashed.sqlite");
    let (p, r) = (
        count(&crashed, &with_times("SELECT COUNT(*) FROM ledger_partition_purge WHERE recorded_at = {p}")),
        count(&crashed, &with_times("SELECT COUNT(*) FROM ledger_record_purge WHERE recorded_at = {p}")),
    );
    assert!(p > 0 && r > 0);
    sql(&crashed, &with_times(DROP_PURGE_NOTES));
    assert_ne!(raw_answers(&crashed, &c.s.subjects), raw_answers(&c.done, &c.s.subjects), "the crash shows");
    let expected = ReconcileReport { partitions_purged: p, records_purged: r, ..ReconcileReport::default() };
    assert_eq!(reconcile_report(&crashed), expected);
    c.check_repair(&crashed, dump);
}

#[test]
fn crash_after_consent_before_audit() {
    let c = Case::new("consent", &[Step::Consent]);
    // The last checkpoint covers the log before the batch; its events are the tail.
    let n0 = c.old.checkpoint().size();
    let crashed = c.copy(&c.done, "crashed.sqlite");
    let tail = count(&crashed, &format!("SELECT COUNT(*) FROM audit_leaf WHERE seq >= {n0}"));
    assert_eq!(tail, c.s.late_consent.len() as u64);
    drop_log_tail(&Connection::open(&crashed).unwrap(), n0);
    assert_eq!(count(&crashed, "SELECT COUNT(*) FROM audit_leaf"), n0);
    let expected = ReconcileReport { consent_events_logged: tail, ..ReconcileReport::default() };
    assert_eq!(reconcile_report(&crashed), expected);
    c.check_repair(&crashed, dump);
}

#[test]
fn reopening_an_intact_database_writes_nothing() {
    let c = Case::new("intact", &[Step::Consent, Step::Commit, Step::Purge]);
    let before = dump(&c.done);
    let mut agg = open(&c.done);
    assert_eq!(agg.reconcile().unwrap(), ReconcileReport::default());
    verify_log(&agg, &c.old);
    drop(agg);
    assert_eq!(dump(&c.done), before);
}

/// Every hole at once, as a database written before consent and audit shared a
/// transaction could hold: a consent batch never logged *in the middle* of the log (the
/// aggregator went on ingesting after the crash), a partition stored without its
/// holdings note, a purge without its notes. One reopen repairs all of it: the same
/// answers, every consent fact logged once, the log verifying and extending the last
/// checkpoint.
#[test]
fn all_holes_at_once_are_repaired_in_one_open() {
    let c = Case::new("all", &[Step::Consent, Step::Commit, Step::Purge]);
    let crashed = c.copy(&c.done, "crashed.sqlite");
    let n0 = c.old.checkpoint().size();
    let k = c.s.late_consent.len() as u64;
    sql(
        &crashed,
        &with_times(
            "DELETE FROM ledger_partition WHERE recorded_at = {c}
               AND id NOT IN (SELECT partition FROM ledger_partition_purge);",
        ),
    );
    sql(&crashed, &with_times(DROP_PURGE_NOTES));
    // Rewrite the log without the consent batch's events (seq n0 .. n0 + k): the events
    // after them move up, as if the batch had never been logged.
    {
        let conn = Connection::open(&crashed).unwrap();
        let later: Vec<_> = {
            let log = AuditLog::open(AuditSqlite::attach(&conn)).unwrap();
            (n0 + k..log.size()).map(|i| log.event(i).unwrap().event).collect()
        };
        assert!(!later.is_empty());
        drop_log_tail(&conn, n0);
        let mut log = AuditLog::open(AuditSqlite::attach(&conn)).unwrap();
        log.append_batch(&later).unwrap();
    }
    let mut agg = open(&crashed);
    let ref_agg = open(&c.done);
    assert_eq!(answers(agg.ledger(), &c.s.subjects), answers(ref_agg.ledger(), &c.s.subjects));
    verify_log(&agg, &c.old);
    assert_eq!(agg.reconcile().unwrap(), ReconcileReport::default());
    // Same events, the batch's now at the end, in the ledger's order.
    let events = |a: &Aggregator| {
        let log = a.store().audit_log().unwrap();
        log.export(log.size()).unwrap().into_iter().map(|e| e.event).collect::<Vec<_>>()
    };
    let (mine, theirs) = (events(&agg), events(&ref_agg));
    let (n0, k) = (n0 as usize, k as usize);
    assert_eq!(mine.len(), theirs.len());
    assert_eq!(mine[..n0], theirs[..n0]);
    assert_eq!(mine[n0..mine.len() - k], theirs[n0 + k..]);
    assert_eq!(mine[mine.len() - k..], theirs[n0..n0 + k]);
    drop((agg, ref_agg));
    // The same facts, but those noted by the repair took later sequence numbers (the
    // first column of every ledger table), and the audit rows moved (checked above).
    let skip = |t: &str| usize::from(t.starts_with("ledger_") && t != "ledger_meta");
    let (mut a, mut b) = (dump_from(&crashed, skip), dump_from(&c.done, skip));
    for t in ["audit_leaf", "audit_node"] {
        a.remove(t);
        b.remove(t);
    }
    assert_eq!(a, b);
}

/// The child of the SIGKILL tests (a no-op unless [`DIR_ENV`] is set): opens
/// `db.sqlite` in that directory and runs the step named by [`OP_ENV`]; the crash
/// point named by [`CRASH_POINT_ENV`] stops it there until the parent kills it.
#[test]
fn sigkill_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else { return };
    let s = script();
    let mut agg = open(&PathBuf::from(dir).join("db.sqlite"));
    let op = std::env::var(OP_ENV).unwrap();
    let step = [Step::Consent, Step::Commit, Step::Purge].into_iter().find(|s| s.name() == op).unwrap();
    step.run(&mut agg, &s);
    println!("not killed");
}

/// Runs the case's last step on `db.sqlite` in a child that stops at crash point
/// `point`, and kills it there with SIGKILL.
fn kill_at(c: &Case, point: &str) -> PathBuf {
    let db = c.before_last();
    let step = c.steps.last().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sigkill_child", "--nocapture", "--test-threads=1"])
        .env(DIR_ENV, &c.dir)
        .env(OP_ENV, step.name())
        .env(CRASH_POINT_ENV, point)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let marker = format!("crash-point {point}");
    let mut stopped = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if line.unwrap().contains(&marker) {
            stopped = true;
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(stopped, "the child never reached {point}");
    assert!(!status.success());
    db
}

/// A real SIGKILL between the store's commit and the holdings notes: the reopened
/// database equals one where the commit finished.
#[test]
fn sigkill_after_store_commit() {
    let c = Case::new("kill-commit", &[Step::Consent, Step::Commit]);
    let db = kill_at(&c, "holdings");
    // The store committed (the envelopes are in), the holdings did not.
    let n = |p: &Path, table: &str| count(p, &format!("SELECT COUNT(*) FROM {table}"));
    assert_eq!(n(&db, "record"), n(&c.done, "record"));
    assert!(n(&db, "ledger_record") < n(&c.done, "ledger_record"));
    c.check_repair(&db, dump_clear);
}

/// A real SIGKILL between the store's purge and the ledger's purge notes.
#[test]
fn sigkill_after_store_purge() {
    let c = Case::new("kill-purge", &[Step::Consent, Step::Commit, Step::Purge]);
    let db = kill_at(&c, "holdings");
    let n = |p: &Path, table: &str| count(p, &format!("SELECT COUNT(*) FROM {table}"));
    assert_eq!(n(&db, "record"), 0);
    assert!(n(&db, "ledger_record_purge") < n(&c.done, "ledger_record_purge"));
    c.check_repair(&db, dump_clear);
}

/// A real SIGKILL inside the consent transaction, after the ledger's writes and before
/// the audit append: neither survives, and the devices' resend is then recorded and
/// logged as if nothing had happened.
#[test]
fn sigkill_inside_consent_transaction() {
    let c = Case::new("kill-consent", &[Step::Consent]);
    let db = kill_at(&c, "ledger-audit");
    drop(open(&db));
    assert_eq!(dump(&db), dump(&c.base), "nothing of the batch survives");
    let mut agg = open(&db);
    Step::Consent.run(&mut agg, &c.s);
    verify_log(&agg, &c.old);
    drop(agg);
    assert_eq!(dump(&db), dump(&c.done));
}

/// A log whose leaf no longer reads back (tampering) is not "repaired": the aggregator
/// opens, appends nothing, and says so — verification is the auditor's finding.
#[test]
fn a_damaged_log_is_left_for_the_auditor() {
    let c = Case::new("damaged", &[]);
    let n = count(&c.base, "SELECT COUNT(*) FROM audit_leaf");
    sql(
        &c.base,
        "DROP TRIGGER audit_leaf_no_update;
         UPDATE audit_leaf SET leaf = (SELECT leaf FROM audit_leaf WHERE seq = 1) WHERE seq = 0;",
    );
    let before = dump(&c.base);
    let mut agg = open(&c.base);
    let report = agg.reconcile().unwrap();
    assert!(report.audit_log_unreadable && report.consent_events_logged == 0, "{report:?}");
    drop(agg);
    assert_eq!(count(&c.base, "SELECT COUNT(*) FROM audit_leaf"), n);
    assert_eq!(dump(&c.base), before);
}

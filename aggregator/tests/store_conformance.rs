//! One conformance suite for every storage backend: the same test functions run against
//! SQLite (always) and PostgreSQL (with the `postgres` feature and
//! `CONFIANCE_TEST_POSTGRES=postgres://…` naming a server where the user may create
//! databases; `.ci/postgres` starts a throw-away one). Without either, each PostgreSQL
//! test prints why it is skipped: never a silent pass.
//!
//! Covered: commit atomicity, replay protection (`id_seen` exact, envelopes, expiry),
//! records (filters, order, decryption), purge (deadlines, key destruction, forgotten
//! ids, its audit events), audit events committed with their batch, and the
//! [`AuditStore`] contract (append, node, leaf, out-of-order refusal, reopen). Then, on
//! PostgreSQL only: several handles on one database from several threads (stand-ins for
//! several processes) — one report id committed by exactly one of them, and audit appends
//! from all of them forming one linear log.

use std::collections::BTreeSet;

use confiance::Timestamp;
use confiance::ids::{MetricId, ReceiptId, RecipientId};
use confiance_aggregator::audit::{
    AppendBatch, AuditError, AuditEvent, AuditLog, AuditStore, LoggedEvent, MemoryStore, merkle,
};
use confiance_aggregator::store::{
    CommitBatch, NewRecord, PartitionKey, SeenIds, SqliteStore, Store, StoreError, StoredPartition,
};

const DAY: u64 = 86_400;

/// A store under test, with what the `Store` trait does not expose (the audit log).
enum Backend {
    Sqlite(SqliteStore),
    #[cfg(feature = "postgres")]
    Pg(Box<confiance_aggregator::store::PgStore>),
}

impl Backend {
    fn sqlite() -> Self {
        Self::Sqlite(SqliteStore::in_memory().unwrap())
    }

    fn store(&mut self) -> &mut dyn Store {
        match self {
            Self::Sqlite(s) => s,
            #[cfg(feature = "postgres")]
            Self::Pg(s) => &mut **s,
        }
    }

    fn audit_events(&self) -> Vec<LoggedEvent> {
        match self {
            Self::Sqlite(s) => {
                let log = s.audit_log().unwrap();
                log.export(log.size()).unwrap()
            }
            #[cfg(feature = "postgres")]
            Self::Pg(s) => s.audit_events().unwrap(),
        }
    }

    fn is_pg(&self) -> bool {
        !matches!(self, Self::Sqlite(_))
    }
}

/// Says on stderr, past the test harness's capture (which would hide it for a passing
/// test), that a PostgreSQL test did not run and why.
fn skip(why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "skipped on PostgreSQL: {why}");
}

#[cfg(feature = "postgres")]
mod pg {
    use postgres::{Client, Config, NoTls};

    /// The server named by `CONFIANCE_TEST_POSTGRES`, or why the test is skipped.
    pub fn server() -> Result<Config, &'static str> {
        let url = std::env::var("CONFIANCE_TEST_POSTGRES").map_err(
            |_| "CONFIANCE_TEST_POSTGRES is unset (bash .ci/postgres runs this suite on a throw-away server)",
        )?;
        Ok(url.parse().expect("CONFIANCE_TEST_POSTGRES is not a postgres:// URL"))
    }

    /// A fresh, empty database named after the test (dropped first if a previous run left
    /// it), and the configuration to reach it.
    pub fn fresh_database(name: &str) -> Option<Config> {
        let admin = match server() {
            Ok(c) => c,
            Err(why) => {
                super::skip(why);
                return None;
            }
        };
        let db = format!("confiance_t_{name}");
        let mut c: Client = admin.connect(NoTls).expect("cannot connect to CONFIANCE_TEST_POSTGRES");
        // Two calls: a multi-statement string is one implicit transaction, which
        // DROP DATABASE refuses.
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
        let mut config = admin;
        config.dbname(&db);
        Some(config)
    }
}

/// Runs each named test function once per backend: `sqlite::name` and `postgres::name`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                super::$name(&mut super::Backend::sqlite());
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                #[cfg(feature = "postgres")]
                if let Some(config) = super::pg::fresh_database(stringify!($name)) {
                    let store = confiance_aggregator::store::PgStore::with_config(&config).unwrap();
                    super::$name(&mut super::Backend::Pg(Box::new(store)));
                }
                #[cfg(not(feature = "postgres"))]
                super::skip("built without the `postgres` feature (bash .ci/postgres runs it)");
            })*
        }
    };
}

conformance!(
    a_failed_commit_changes_nothing,
    report_ids_are_remembered_exactly,
    records_are_filtered_ordered_and_decrypted,
    partitions_are_written_whole,
    purge_deletes_what_is_due_and_keeps_the_rest,
    audit_events_commit_with_their_batch,
    record_heads_list_clear_columns_in_storage_order,
    the_audit_view_matches_the_log_and_scans_by_kind,
    a_log_kept_open_leaves_the_store_readable,
);

fn metric() -> MetricId {
    MetricId::new("car.odometer-km").unwrap()
}

fn recipient() -> RecipientId {
    RecipientId::new("voltis").unwrap()
}

fn record(i: u8, collected: u64, hold: &str, body: &[u8]) -> NewRecord {
    NewRecord {
        id: [i; 16],
        metric: metric(),
        recipient: recipient(),
        receipt: ReceiptId([i; 32]),
        collected_at: Timestamp::from_secs(collected),
        hold: hold.parse().unwrap(),
        body: body.to_vec(),
    }
}

fn partition(bucket: u64, hold: &str) -> PartitionKey {
    PartitionKey {
        metric: MetricId::new("thermostat.mode").unwrap(),
        bucket_start: Timestamp::from_secs(bucket * DAY),
        bucket_end: Timestamp::from_secs((bucket + 1) * DAY),
        audience: BTreeSet::from([RecipientId::new("calora").unwrap()]),
        hold: hold.parse().unwrap(),
    }
}

fn ingest_event(digest: u8, at: u64) -> AuditEvent {
    AuditEvent::IngestBatch {
        envelope_digest: [digest; 32],
        reports: 2,
        partitions: 1,
        at: Timestamp::from_secs(at),
    }
}

fn a_failed_commit_changes_nothing(b: &mut Backend) {
    let key = partition(0, "P1Y");
    let seen =
        SeenIds { envelope: [9; 32], expires_at: Timestamp::from_secs(2 * DAY), ids: vec![[1; 16], [2; 16]] };
    let ok = CommitBatch {
        partitions: vec![StoredPartition { key: key.clone(), state: vec![1, 2, 3], reports: 2 }],
        records: vec![record(5, 0, "P30D", b"kept")],
        seen: vec![seen.clone()],
        audit: vec![ingest_event(9, 5)],
    };
    b.store().commit(&ok).unwrap();
    // The same envelope again, among 40 new ones (a store may write them several rows a
    // statement: the failing row is mid-statement), with a new record and a new partition
    // state: the unique digest fails the batch, and none of it may remain.
    let fresh = |i: u8| SeenIds { envelope: [100 + i; 32], expires_at: seen.expires_at, ids: Vec::new() };
    let replay = CommitBatch {
        partitions: vec![
            StoredPartition { key: key.clone(), state: vec![7, 7, 7], reports: 4 },
            StoredPartition { key: partition(1, "P1Y"), state: vec![8], reports: 1 },
        ],
        records: vec![record(3, 0, "P30D", b"x")],
        seen: (0..20)
            .map(fresh)
            .chain([SeenIds { ids: vec![[4; 16]], ..seen.clone() }])
            .chain((20..40).map(fresh))
            .collect(),
        audit: vec![ingest_event(9, 6)],
    };
    let err = b.store().commit(&replay).unwrap_err();
    if b.is_pg() {
        assert!(matches!(err, StoreError::Conflict), "{err}");
    }
    let s = b.store();
    assert_eq!(s.partitions().unwrap(), vec![StoredPartition { key, state: vec![1, 2, 3], reports: 2 }]);
    let ids: Vec<[u8; 16]> = s
        .records(&recipient(), &metric(), Timestamp::EPOCH, Timestamp::MAX)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec![[5; 16]]);
    assert!(!s.id_seen(&[4; 16]).unwrap());
    assert!((0..40).all(|i| !s.envelope_seen(&[100 + i; 32]).unwrap()));
    assert_eq!(s.seen_ids(Timestamp::EPOCH).unwrap().len(), 2);
    assert_eq!(b.audit_events().len(), 1);
    // And the store still takes a good batch afterwards.
    let next = CommitBatch {
        seen: vec![SeenIds { envelope: [10; 32], expires_at: Timestamp::from_secs(DAY), ids: vec![[6; 16]] }],
        audit: vec![ingest_event(10, 7)],
        ..CommitBatch::default()
    };
    b.store().commit(&next).unwrap();
    assert_eq!(b.audit_events().len(), 2);
}

fn report_ids_are_remembered_exactly(b: &mut Backend) {
    let s = b.store();
    // 3 envelopes, 300 ids whose first bytes collide (same SQLite bucket) and differ.
    let id = |i: u16| {
        let mut id = [0u8; 16];
        id[0] = (i % 3) as u8;
        id[1..3].copy_from_slice(&i.to_be_bytes());
        id[15] = 0xaa;
        id
    };
    for e in 0..3u16 {
        let ids: Vec<[u8; 16]> = (e * 100..(e + 1) * 100).map(id).collect();
        let expires_at = Timestamp::from_secs(u64::from(e + 1) * DAY);
        s.commit(&CommitBatch {
            seen: vec![SeenIds { envelope: [e as u8; 32], expires_at, ids }],
            ..CommitBatch::default()
        })
        .unwrap();
    }
    for i in 0..300 {
        assert!(s.id_seen(&id(i)).unwrap(), "id {i} committed");
        let mut other = id(i);
        other[15] = 0xab;
        assert!(!s.id_seen(&other).unwrap(), "an id one byte away from {i} was never committed");
    }
    assert!(s.envelope_seen(&[2; 32]).unwrap());
    assert!(!s.envelope_seen(&[3; 32]).unwrap());
    // Expiry: ids are listed while `now < expires_at`.
    assert_eq!(s.seen_ids(Timestamp::EPOCH).unwrap().len(), 300);
    let mut listed = s.seen_ids(Timestamp::from_secs(DAY)).unwrap();
    listed.sort_unstable();
    let mut want: Vec<([u8; 16], Timestamp)> = (100..200)
        .map(|i| (id(i), Timestamp::from_secs(2 * DAY)))
        .chain((200..300).map(|i| (id(i), Timestamp::from_secs(3 * DAY))))
        .collect();
    want.sort_unstable();
    assert_eq!(listed, want);
    let mut n = 0;
    s.for_each_seen_id(Timestamp::from_secs(2 * DAY), &mut |_, exp| {
        assert_eq!(exp, Timestamp::from_secs(3 * DAY));
        n += 1;
    })
    .unwrap();
    assert_eq!(n, 100);
    // Expired but not purged: still remembered (the exact answer stays exact until purge).
    assert!(s.id_seen(&id(0)).unwrap());
    assert_eq!(s.purge(Timestamp::from_secs(DAY - 1)).unwrap().ids_forgotten, 0);
    assert_eq!(s.purge(Timestamp::from_secs(2 * DAY)).unwrap().ids_forgotten, 200);
    assert!(!s.id_seen(&id(0)).unwrap() && !s.id_seen(&id(199)).unwrap());
    assert!(s.id_seen(&id(200)).unwrap());
    assert!(!s.envelope_seen(&[0; 32]).unwrap() && s.envelope_seen(&[2; 32]).unwrap());
}

fn records_are_filtered_ordered_and_decrypted(b: &mut Backend) {
    let s = b.store();
    let mut other_metric = record(7, 50, "P30D", b"other metric");
    other_metric.metric = MetricId::new("car.speed").unwrap();
    let mut other_recipient = record(8, 50, "P30D", b"other recipient");
    other_recipient.recipient = RecipientId::new("calora").unwrap();
    let batch = CommitBatch {
        // Stored out of order; two share an instant (ordered by id).
        records: vec![
            record(4, 300, "P1Y", b"four"),
            record(2, 100, "P30D", b"two"),
            record(1, 100, "P30D", b"one"),
            record(3, 2 * DAY, "P30D", b"three, next period"),
            other_metric,
            other_recipient,
        ],
        ..CommitBatch::default()
    };
    s.commit(&batch).unwrap();
    let all = s.records(&recipient(), &metric(), Timestamp::EPOCH, Timestamp::MAX).unwrap();
    let got: Vec<(u8, &[u8])> = all.iter().map(|r| (r.id[0], r.body.as_slice())).collect();
    assert_eq!(got, vec![(1, &b"one"[..]), (2, b"two"), (4, b"four"), (3, b"three, next period")]);
    let one = &all[0];
    assert_eq!((one.receipt, one.collected_at), (ReceiptId([1; 32]), Timestamp::from_secs(100)));
    assert_eq!(one.deadline, record(1, 100, "P30D", b"").deadline());
    // [from, to): 100 is in, 300 is out.
    let window =
        s.records(&recipient(), &metric(), Timestamp::from_secs(100), Timestamp::from_secs(300)).unwrap();
    assert_eq!(window.iter().map(|r| r.id[0]).collect::<Vec<_>>(), vec![1, 2]);
    let speed =
        s.records(&recipient(), &MetricId::new("car.speed").unwrap(), Timestamp::EPOCH, Timestamp::MAX);
    assert_eq!(speed.unwrap().len(), 1);
    let calora = s.records(&RecipientId::new("calora").unwrap(), &metric(), Timestamp::EPOCH, Timestamp::MAX);
    assert_eq!(calora.unwrap()[0].body, b"other recipient");
    // A record id is stored once.
    let again = CommitBatch { records: vec![record(4, 400, "P1Y", b"again")], ..CommitBatch::default() };
    assert!(s.commit(&again).is_err());
}

fn partitions_are_written_whole(b: &mut Backend) {
    let s = b.store();
    let (k0, k1) = (partition(0, "P1Y"), partition(1, "P30D"));
    s.commit(&CommitBatch {
        partitions: vec![
            StoredPartition { key: k1.clone(), state: vec![1; 40], reports: 3 },
            StoredPartition { key: k0.clone(), state: vec![2], reports: 1 },
        ],
        ..CommitBatch::default()
    })
    .unwrap();
    s.commit(&CommitBatch {
        partitions: vec![StoredPartition { key: k0.clone(), state: vec![3, 3], reports: 5 }],
        ..CommitBatch::default()
    })
    .unwrap();
    let mut want = vec![
        StoredPartition { key: k0, state: vec![3, 3], reports: 5 },
        StoredPartition { key: k1, state: vec![1; 40], reports: 3 },
    ];
    // Both backends list partitions ordered by their encoded key.
    want.sort_by_key(|p| p.key.to_bytes());
    assert_eq!(s.partitions().unwrap(), want);
}

fn purge_deletes_what_is_due_and_keeps_the_rest(b: &mut Backend) {
    let s = b.store();
    s.commit(&CommitBatch {
        partitions: vec![
            StoredPartition { key: partition(0, "P1D"), state: vec![1], reports: 1 },
            StoredPartition { key: partition(0, "P1Y"), state: vec![2], reports: 1 },
        ],
        records: vec![
            record(1, 0, "P1D", b"short"),
            record(2, 10, "P1D", b"short too"),
            record(3, 20, "P1Y", b"long"),
        ],
        seen: vec![SeenIds { envelope: [1; 32], expires_at: Timestamp::from_secs(DAY), ids: vec![[1; 16]] }],
        audit: vec![],
    })
    .unwrap();
    // Before anything is due: nothing goes, but the purge is still logged.
    let early = s.purge(Timestamp::from_secs(DAY - 1)).unwrap();
    assert_eq!(
        (early.partitions, early.records, early.keys_destroyed.len(), early.ids_forgotten),
        (0, 0, 0, 0)
    );
    // P1D partition of day 0: deadline 2 days. P1D records: 1 day after collection;
    // their period key: 1 day after the period's end (2 days).
    let at = Timestamp::from_secs(2 * DAY);
    let report = s.purge(at).unwrap();
    assert_eq!((report.partitions, report.records, report.ids_forgotten), (1, 2, 1));
    assert_eq!(report.partition_keys, vec![partition(0, "P1D").to_bytes()]);
    let mut ids = report.record_ids.clone();
    ids.sort_unstable();
    assert_eq!(ids, vec![[1; 16], [2; 16]]);
    assert_eq!(report.keys_destroyed.len(), 1, "the P1D key, and not the P1Y one");
    let left = s.records(&recipient(), &metric(), Timestamp::EPOCH, Timestamp::MAX).unwrap();
    assert_eq!(left.iter().map(|r| r.body.as_slice()).collect::<Vec<_>>(), vec![&b"long"[..]]);
    assert_eq!(s.partitions().unwrap().len(), 1);
    let again = s.purge(at).unwrap();
    assert_eq!((again.partitions, again.records, again.keys_destroyed.len()), (0, 0, 0));
    let events: Vec<AuditEvent> = b.audit_events().into_iter().map(|e| e.event).collect();
    assert_eq!(
        events,
        vec![
            AuditEvent::Purge { partitions: 0, records: 0, at: Timestamp::from_secs(DAY - 1) },
            AuditEvent::Purge { partitions: 1, records: 2, at },
            AuditEvent::KeyDestruction { key_id: report.keys_destroyed[0], at },
            AuditEvent::Purge { partitions: 0, records: 0, at },
        ]
    );
}

fn audit_events_commit_with_their_batch(b: &mut Backend) {
    let consent = AuditEvent::ConsentGiven { receipt: ReceiptId([3; 32]) };
    b.store().append_audit(core::slice::from_ref(&consent)).unwrap();
    b.store()
        .commit(&CommitBatch {
            audit: vec![ingest_event(1, 1), ingest_event(2, 2)],
            ..CommitBatch::default()
        })
        .unwrap();
    b.store().append_audit(&[]).unwrap();
    let events = b.audit_events();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(
        events.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        vec![consent, ingest_event(1, 1), ingest_event(2, 2)]
    );
}

fn record_heads_list_clear_columns_in_storage_order(b: &mut Backend) {
    let s = b.store();
    assert!(s.record_heads().unwrap().is_empty());
    let (r4, r2) = (record(4, 300, "P1Y", b"four"), record(2, 100, "P30D", b"two"));
    s.commit(&CommitBatch { records: vec![r4.clone(), r2.clone()], ..CommitBatch::default() }).unwrap();
    let r9 = record(9, 50, "P30D", b"nine");
    s.commit(&CommitBatch { records: vec![r9.clone()], ..CommitBatch::default() }).unwrap();
    let heads = s.record_heads().unwrap();
    // Storage order, not id or time order; the deadline is the record's.
    assert_eq!(heads.iter().map(|h| h.id[0]).collect::<Vec<_>>(), vec![4, 2, 9]);
    for (h, r) in heads.iter().zip([&r4, &r2, &r9]) {
        assert_eq!(
            (&h.metric, &h.recipient, h.receipt, h.collected_at, h.deadline),
            (&r.metric, &r.recipient, r.receipt, r.collected_at, r.deadline())
        );
    }
    s.purge(Timestamp::from_secs(400 + 31 * DAY)).unwrap();
    assert_eq!(s.record_heads().unwrap().iter().map(|h| h.id[0]).collect::<Vec<_>>(), vec![4]);
}

fn the_audit_view_matches_the_log_and_scans_by_kind(b: &mut Backend) {
    use confiance_aggregator::audit::EventKind;
    let consent = |i: u8| AuditEvent::ConsentGiven { receipt: ReceiptId([i; 32]) };
    assert_eq!(b.store().audit_log().unwrap().size(), 0);
    assert_eq!(b.store().audit_store().last_of_kind(&[EventKind::ConsentGiven]).unwrap(), None);
    b.store().append_audit(&[consent(1), ingest_event(1, 1)]).unwrap();
    b.store()
        .commit(&CommitBatch {
            audit: vec![ingest_event(2, 2), ingest_event(3, 3)],
            ..CommitBatch::default()
        })
        .unwrap();
    b.store().append_audit(&[consent(2)]).unwrap();
    let all = b.audit_events();
    let mut reference = AuditLog::in_memory();
    reference.append_batch(all.iter().map(|e| &e.event)).unwrap();
    let s = b.store();
    let log = s.audit_log().unwrap();
    assert_eq!((log.size(), log.root()), (5, reference.root()));
    assert_eq!(log.export(5).unwrap(), all);
    drop(log);
    let view = s.audit_store();
    let found = view.events_of_kind(&[EventKind::ConsentGiven]).unwrap();
    assert_eq!(
        found.iter().map(|e| (e.seq, e.event.clone())).collect::<Vec<_>>(),
        vec![(0, consent(1)), (4, consent(2))]
    );
    let both = view.events_of_kind(&[EventKind::IngestBatch, EventKind::ConsentGiven]).unwrap();
    assert_eq!(both.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
    let last = view.last_of_kind(&[EventKind::IngestBatch]).unwrap().unwrap();
    assert_eq!((last.seq, last.event), (3, ingest_event(3, 3)));
    assert!(view.events_of_kind(&[EventKind::Purge]).unwrap().is_empty());
    // The default scan (leaf by leaf) agrees with the backend's filtered one.
    let mut memory = AuditLog::in_memory();
    memory.append_batch(all.iter().map(|e| &e.event)).unwrap();
    assert_eq!(memory.store().events_of_kind(&[EventKind::ConsentGiven]).unwrap(), found);
    assert_eq!(memory.store().last_of_kind(&[EventKind::IngestBatch]).unwrap().map(|e| e.seq), Some(3));
}

/// A log kept open (`Store::audit_log`) while the store is read, as a report does: on
/// PostgreSQL the log's view used to hold the store's one connection for its whole life,
/// so the fleet example on PostgreSQL waited forever in its report. A watchdog ends the
/// test binary with a failure rather than let it hang.
fn a_log_kept_open_leaves_the_store_readable(b: &mut Backend) {
    b.store()
        .commit(&CommitBatch {
            partitions: vec![StoredPartition { key: partition(0, "P1Y"), state: vec![1], reports: 1 }],
            records: vec![record(1, 10, "P30D", b"r")],
            audit: vec![ingest_event(1, 1)],
            ..CommitBatch::default()
        })
        .unwrap();
    let (done, watched) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if watched.recv_timeout(std::time::Duration::from_secs(30)).is_err() {
            use std::io::Write as _;
            // Past the harness's capture, which `exit` would discard.
            let _ = writeln!(std::io::stderr(), "the store blocked while a log was open");
            std::process::exit(101);
        }
    });
    let s = b.store();
    let log = s.audit_log().unwrap();
    assert_eq!(s.partitions().unwrap().len(), 1);
    assert_eq!(s.record_heads().unwrap().len(), 1);
    assert_eq!(
        s.audit_store().events_of_kind(&[confiance_aggregator::audit::EventKind::IngestBatch]).unwrap().len(),
        1
    );
    assert_eq!(log.size(), 1);
    assert_eq!(log.export(1).unwrap().len(), 1);
    done.send(()).unwrap();
    watchdog.join().unwrap();
}

// ---- The AuditStore contract, on the three audit stores. ----

fn events(n: u8) -> Vec<AuditEvent> {
    (0..n).map(|i| AuditEvent::ConsentGiven { receipt: ReceiptId([i; 32]) }).collect()
}

/// Append in uneven batches, read every leaf and node back, refuse a batch out of place,
/// reopen: the same root as the in-memory reference.
fn audit_store_contract<S: AuditStore>(empty: S, reopen: impl FnOnce(S) -> S) {
    let all = events(37);
    let mut reference = AuditLog::in_memory();
    reference.append_batch(all.iter()).unwrap();
    let mut log = AuditLog::open(empty).unwrap();
    assert!(log.store().is_empty().unwrap());
    let mut at = 0;
    for n in [1, 2, 5, 8, 21] {
        log.append_batch(all[at..at + n].iter()).unwrap();
        at += n;
    }
    assert_eq!(log.store().len().unwrap(), 37);
    assert_eq!(log.root(), reference.root());
    for (i, e) in all.iter().enumerate() {
        let i = i as u64;
        let leaf = log.store().leaf(i).unwrap();
        assert_eq!(LoggedEvent::from_leaf_bytes(&leaf).unwrap(), LoggedEvent { seq: i, event: e.clone() });
        assert_eq!(log.store().node(0, i).unwrap(), merkle::leaf_hash(&leaf));
        assert_eq!(log.store().node(0, i).unwrap(), reference.store().node(0, i).unwrap());
    }
    // Every complete subtree: 18 at level 1, 9 at 2, 4 at 3, 2 at 4, 1 at 5.
    for (level, count) in [(1u32, 18u64), (2, 9), (3, 4), (4, 2), (5, 1)] {
        for i in 0..count {
            assert_eq!(log.store().node(level, i).unwrap(), reference.store().node(level, i).unwrap());
        }
        assert!(matches!(log.store().node(level, count), Err(AuditError::Corrupt(_))));
    }
    assert!(matches!(log.store().leaf(37), Err(AuditError::OutOfRange { index: 37, size: 37 })));
    // A batch that does not start at the end is refused and writes nothing.
    let mut store = log.into_store();
    let stale = AppendBatch { first: 36, leaves: vec![([0; 32], vec![1])], nodes: vec![] };
    assert!(matches!(store.append(&stale), Err(AuditError::OutOfRange { index: 36, size: 37 })));
    assert_eq!(store.len().unwrap(), 37);
    let reopened = AuditLog::open(reopen(store)).unwrap();
    assert_eq!((reopened.size(), reopened.root()), (37, reference.root()));
}

#[test]
fn audit_store_contract_memory() {
    // Nothing to reopen from elsewhere: the same store is read again.
    audit_store_contract(MemoryStore::default(), |s| s);
}

#[test]
fn audit_store_contract_sqlite() {
    let dir = std::env::temp_dir().join(format!("confiance-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("audit.sqlite");
    let open =
        || confiance_aggregator::audit::SqliteStore::open(rusqlite::Connection::open(&db).unwrap()).unwrap();
    audit_store_contract(open(), |s| {
        drop(s);
        open()
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn audit_store_contract_postgres() {
    #[cfg(feature = "postgres")]
    if let Some(config) = pg::fresh_database("audit_store_contract") {
        let open = || {
            confiance_aggregator::audit::PgStore::open(config.connect(::postgres::NoTls).unwrap()).unwrap()
        };
        audit_store_contract(open(), |s| {
            drop(s);
            open()
        });
    }
    #[cfg(not(feature = "postgres"))]
    skip("built without the `postgres` feature (bash .ci/postgres runs it)");
}

// ---- PostgreSQL only: migrations, and several handles on one database. ----

#[cfg(feature = "postgres")]
mod postgres_only {
    use std::sync::{Arc, Barrier};

    use confiance_aggregator::store::{PG_SCHEMA_VERSION, PgStore};

    use super::*;

    #[test]
    fn a_schema_from_the_future_is_refused() {
        let Some(config) = pg::fresh_database("schema_future") else { return };
        let store = PgStore::with_config(&config).unwrap();
        assert_eq!(store.schema_version().unwrap(), PG_SCHEMA_VERSION);
        drop(store);
        // Reopening a current schema migrates nothing and keeps the data.
        let mut store = PgStore::with_config(&config).unwrap();
        store.append_audit(&events(1)).unwrap();
        drop(store);
        let store = PgStore::with_config(&config).unwrap();
        assert_eq!(store.audit_events().unwrap().len(), 1);
        store.with_client(|c| c.execute("UPDATE confiance_schema SET version = 99", &[])).unwrap();
        drop(store);
        assert!(matches!(
            PgStore::with_config(&config),
            Err(StoreError::SchemaTooNew { found: 99, supported: PG_SCHEMA_VERSION })
        ));
    }

    #[test]
    fn the_audit_tables_refuse_update_delete_and_truncate() {
        let Some(config) = pg::fresh_database("append_only") else { return };
        let mut store = PgStore::with_config(&config).unwrap();
        store.append_audit(&events(2)).unwrap();
        for sql in ["UPDATE audit_leaf SET leaf = '\\x00'", "DELETE FROM audit_node", "TRUNCATE audit_leaf"] {
            let err = store.with_client(|c| c.batch_execute(sql)).unwrap_err();
            assert!(
                err.to_string().contains("append-only") || format!("{err:?}").contains("append-only"),
                "{sql}: {err:?}"
            );
        }
        assert_eq!(store.audit_events().unwrap().len(), 2);
    }

    #[test]
    fn each_handle_writes_its_own_partial_of_a_partition() {
        let Some(config) = pg::fresh_database("partials") else { return };
        let (mut a, mut b) = (PgStore::with_config(&config).unwrap(), PgStore::with_config(&config).unwrap());
        let (k0, k1) = (partition(0, "P1D"), partition(1, "P1Y"));
        let write = |s: &mut PgStore, key: &PartitionKey, state: Vec<u8>, reports| {
            s.commit(&CommitBatch {
                partitions: vec![StoredPartition { key: key.clone(), state, reports }],
                ..CommitBatch::default()
            })
            .unwrap();
        };
        write(&mut a, &k0, vec![1], 1);
        write(&mut b, &k0, vec![2], 2);
        // `a` writes its partial whole again: `b`'s stays.
        write(&mut a, &k0, vec![3], 3);
        write(&mut b, &k1, vec![4], 4);
        let listed = a.partitions().unwrap();
        let mut of_k0: Vec<(Vec<u8>, u64)> =
            listed.iter().filter(|p| p.key == k0).map(|p| (p.state.clone(), p.reports)).collect();
        of_k0.sort();
        assert_eq!(of_k0, vec![(vec![2], 2), (vec![3], 3)]);
        assert_eq!(listed.len(), 3);
        assert!(listed.windows(2).all(|w| w[0].key.to_bytes() <= w[1].key.to_bytes()), "ordered by key");
        // A purge deletes every partial of a partition due and counts the partition once.
        let report = b.purge(Timestamp::from_secs(2 * DAY)).unwrap();
        assert_eq!((report.partitions, report.partition_keys), (1, vec![k0.to_bytes()]));
        assert_eq!(a.partitions().unwrap().iter().map(|p| p.reports).collect::<Vec<_>>(), vec![4]);
    }

    #[test]
    fn a_version_1_database_is_migrated_keeping_its_partitions() {
        let Some(config) = pg::fresh_database("migrate_v1") else { return };
        let mut store = PgStore::with_config(&config).unwrap();
        store
            .commit(&CommitBatch {
                partitions: vec![StoredPartition { key: partition(0, "P1Y"), state: vec![9], reports: 9 }],
                ..CommitBatch::default()
            })
            .unwrap();
        // Back to version 1: without version 3's ledger and token tables (and version
        // 4's indexes on them), version 5's consent keys, version 8's device
        // certificates, and the partition keyed by `pkey` alone.
        store
            .with_client(|c| {
                c.batch_execute(
                    "DROP TABLE ledger_meta, ledger_head, ledger_receipt, ledger_withdrawal, ledger_record,
                       ledger_record_purge, ledger_partition, ledger_partition_purge, ledger_delegation,
                       ledger_revocation, ledger_override, ledger_disclosure, token_issued, token_scope_issued,
                       audit_consent, ledger_certificate;
                     ALTER TABLE partition_state DROP CONSTRAINT partition_state_pkey;
                     ALTER TABLE partition_state DROP COLUMN writer;
                     ALTER TABLE partition_state ADD PRIMARY KEY (pkey);
                     UPDATE confiance_schema SET version = 1;",
                )
            })
            .unwrap();
        drop(store);
        let store = PgStore::with_config(&config).unwrap();
        assert_eq!(store.schema_version().unwrap(), PG_SCHEMA_VERSION);
        let listed = store.partitions().unwrap();
        assert_eq!(
            listed.iter().map(|p| (p.state.clone(), p.reports)).collect::<Vec<_>>(),
            vec![(vec![9], 9)]
        );
    }

    fn envelope(round: u8, handle: usize) -> [u8; 32] {
        let mut d = [0xee; 32];
        d[0] = round;
        d[1] = handle as u8;
        d
    }

    #[test]
    fn a_report_id_is_committed_by_exactly_one_of_several_handles() {
        let Some(config) = pg::fresh_database("replay_race") else { return };
        const HANDLES: usize = 4;
        const ROUNDS: u8 = 25;
        let stores: Vec<PgStore> = (0..HANDLES).map(|_| PgStore::with_config(&config).unwrap()).collect();
        let barrier = Arc::new(Barrier::new(HANDLES));
        let wins: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let threads: Vec<_> = stores
                .into_iter()
                .enumerate()
                .map(|(h, mut store)| {
                    let barrier = Arc::clone(&barrier);
                    scope.spawn(move || {
                        let mut won = Vec::new();
                        for round in 0..ROUNDS {
                            // Every handle sends the same report id in its own envelope.
                            let batch = CommitBatch {
                                seen: vec![SeenIds {
                                    envelope: envelope(round, h),
                                    expires_at: Timestamp::MAX,
                                    ids: vec![[round; 16]],
                                }],
                                audit: vec![ingest_event(round, u64::from(round))],
                                ..CommitBatch::default()
                            };
                            barrier.wait();
                            match store.commit(&batch) {
                                Ok(()) => won.push(round),
                                Err(StoreError::Conflict) => {}
                                Err(e) => panic!("handle {h}, round {round}: {e}"),
                            }
                        }
                        won
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let mut all: Vec<u8> = wins.concat();
        all.sort_unstable();
        assert_eq!(all, (0..ROUNDS).collect::<Vec<_>>(), "each round won by exactly one handle");
        let store = PgStore::with_config(&config).unwrap();
        assert_eq!(store.seen_ids(Timestamp::EPOCH).unwrap().len(), usize::from(ROUNDS));
        // One audit event per accepted envelope, in one linear log.
        let logged = store.audit_events().unwrap();
        assert_eq!(logged.len(), usize::from(ROUNDS));
        assert!(logged.iter().enumerate().all(|(i, e)| e.seq == i as u64));
    }

    /// The consent-event race of several processes: a process writes a consent fact,
    /// then its event (two steps); another, starting in between, finds the fact without
    /// its event and appends it (its reconciliation). Each appends through its own
    /// handle; whichever comes first is logged, the other's copy left out.
    #[test]
    fn a_consent_event_appended_by_racing_handles_is_logged_once() {
        let Some(config) = pg::fresh_database("consent_race") else { return };
        const HANDLES: usize = 4;
        const RECEIPTS: u8 = 20;
        let stores: Vec<PgStore> = (0..HANDLES).map(|_| PgStore::with_config(&config).unwrap()).collect();
        let barrier = Arc::new(Barrier::new(HANDLES));
        std::thread::scope(|scope| {
            for (h, mut store) in stores.into_iter().enumerate() {
                let barrier = Arc::clone(&barrier);
                scope.spawn(move || {
                    for r in 0..RECEIPTS {
                        let receipt = ReceiptId([r; 32]);
                        // Each round every handle appends the receipt's events at once,
                        // with one event of its own (which must be kept).
                        let events = [
                            AuditEvent::ConsentGiven { receipt },
                            AuditEvent::ConsentWithdrawn { receipt, at: Timestamp::from_secs(u64::from(r)) },
                            ingest_event(r, u64::try_from(h).unwrap()),
                        ];
                        barrier.wait();
                        store.append_audit(&events).unwrap();
                    }
                });
            }
        });
        let logged = PgStore::with_config(&config).unwrap().audit_events().unwrap();
        let count = |f: &dyn Fn(&AuditEvent) -> bool| logged.iter().filter(|e| f(&e.event)).count();
        for r in 0..RECEIPTS {
            let receipt = ReceiptId([r; 32]);
            assert_eq!(count(&|e| *e == AuditEvent::ConsentGiven { receipt }), 1, "receipt {r} given");
            assert_eq!(
                count(&|e| matches!(e, AuditEvent::ConsentWithdrawn { receipt: x, .. } if *x == receipt)),
                1,
                "receipt {r} withdrawn"
            );
        }
        assert_eq!(logged.len(), usize::from(RECEIPTS) * (2 + HANDLES), "every other event kept");
        assert!(logged.iter().enumerate().all(|(i, e)| e.seq == i as u64), "one linear log");
    }

    #[test]
    fn audit_appends_from_several_handles_form_one_linear_log() {
        let Some(config) = pg::fresh_database("audit_race") else { return };
        const HANDLES: u8 = 4;
        const APPENDS: u8 = 30;
        let stores: Vec<PgStore> = (0..HANDLES).map(|_| PgStore::with_config(&config).unwrap()).collect();
        // Roots seen by each handle after each of its appends: every one must be a root of
        // the final log at some size (one checkpoint history, no fork).
        let observed: Vec<Vec<(u64, merkle::Hash)>> = std::thread::scope(|scope| {
            let threads: Vec<_> = stores
                .into_iter()
                .enumerate()
                .map(|(h, mut store)| {
                    scope.spawn(move || {
                        let mut roots = Vec::new();
                        for i in 0..APPENDS {
                            let receipt = ReceiptId([h as u8 * APPENDS + i; 32]);
                            // Alternate the two write paths that append.
                            if i % 2 == 0 {
                                store.append_audit(&[AuditEvent::ConsentGiven { receipt }]).unwrap();
                            } else {
                                let batch = CommitBatch {
                                    audit: vec![AuditEvent::ConsentGiven { receipt }],
                                    ..CommitBatch::default()
                                };
                                store.commit(&batch).unwrap();
                            }
                            roots.push(store.audit_root().unwrap());
                        }
                        roots
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let store = PgStore::with_config(&config).unwrap();
        let logged = store.audit_events().unwrap();
        let total = usize::from(HANDLES) * usize::from(APPENDS);
        assert_eq!(logged.len(), total);
        assert!(
            logged.iter().enumerate().all(|(i, e)| e.seq == i as u64),
            "sequence numbers 0..n, no gap or repeat"
        );
        let mut receipts: Vec<ReceiptId> = logged
            .iter()
            .map(|e| match e.event {
                AuditEvent::ConsentGiven { receipt } => receipt,
                _ => panic!("unexpected event"),
            })
            .collect();
        receipts.sort_unstable_by_key(|r| *r.as_bytes());
        receipts.dedup();
        assert_eq!(receipts.len(), total, "every append present once");
        // Rebuild the log in memory from the stored events: every root a handle observed is
        // this log's root at that size.
        let mut reference = AuditLog::in_memory();
        reference.append_batch(logged.iter().map(|e| &e.event)).unwrap();
        assert_eq!(store.audit_root().unwrap(), (total as u64, reference.root()));
        for (size, root) in observed.concat() {
            assert_eq!(reference.root_at(size).unwrap(), root, "root at size {size}");
        }
    }
}

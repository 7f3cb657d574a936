//! The SQLite store: atomic commits, encrypted records, and purges that leave no trace
//! of a purged record — plaintext, ciphertext or key — in the database, its WAL or journal.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use confiance::Timestamp;
use confiance::ids::{MetricId, ReceiptId, RecipientId};
use confiance_aggregator::audit::AuditEvent;
use confiance_aggregator::store::{
    CommitBatch, NewRecord, PERIOD_SECS, PartitionKey, SeenIds, SqliteStore, Store, StoredPartition,
};

const DAY: u64 = 86_400;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("confiance-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("agg.sqlite")
}

fn record(i: u8, collected: u64, hold: &str, body: &[u8]) -> NewRecord {
    NewRecord {
        id: [i; 16],
        metric: MetricId::new("car.odometer-km").unwrap(),
        recipient: RecipientId::new("voltis").unwrap(),
        receipt: ReceiptId([i; 32]),
        collected_at: Timestamp::from_secs(collected),
        hold: hold.parse().unwrap(),
        body: body.to_vec(),
    }
}

/// Every file SQLite may keep for `db`, concatenated.
fn all_bytes(db: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for suffix in ["", "-wal", "-journal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        if let Ok(b) = std::fs::read(&p) {
            out.extend(b);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn records_are_encrypted_at_rest_and_purged_without_trace() {
    let db = tmp("purge");
    let mut store = SqliteStore::open(&db).unwrap();
    let secret_a = b"SECRET-ODOMETER-READING-AAAA-123456";
    let secret_b = b"SECRET-ODOMETER-READING-BBBB-654321";
    // a: held 30 days; b: held 2 years — different hold classes, different keys.
    let batch = CommitBatch {
        records: vec![record(1, 10 * DAY, "P30D", secret_a), record(2, 10 * DAY, "P2Y", secret_b)],
        ..CommitBatch::default()
    };
    store.commit(&batch).unwrap();
    let bytes = all_bytes(&db);
    assert!(!contains(&bytes, secret_a) && !contains(&bytes, secret_b), "plaintext at rest");

    let (r, m) = (RecipientId::new("voltis").unwrap(), MetricId::new("car.odometer-km").unwrap());
    let got = store.records(&r, &m, Timestamp::EPOCH, Timestamp::MAX).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got.iter().find(|x| x.id == [1; 16]).unwrap().body, secret_a);

    // Grab a's ciphertext and key as stored, to look for them after the purge.
    let (ct_a, key_a): (Vec<u8>, Vec<u8>) = store
        .connection()
        .query_row(
            "SELECT r.ciphertext, k.key FROM record r JOIN period_key k USING (key_id) WHERE r.id = ?1",
            [&[1u8; 16][..]],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    store.connection().query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).unwrap();
    assert!(contains(&all_bytes(&db), &ct_a), "the ciphertext is in the files before the purge");

    // Before a's deadline nothing goes; after it, a and its key go, b stays.
    let early = store.purge(Timestamp::from_secs(39 * DAY)).unwrap();
    assert_eq!((early.records, early.keys_destroyed.len()), (0, 0));
    let report = store.purge(Timestamp::from_secs(10 * DAY + 30 * DAY + PERIOD_SECS)).unwrap();
    assert_eq!(report.records, 1);
    assert_eq!(report.keys_destroyed.len(), 1);
    drop(store);

    let bytes = all_bytes(&db);
    assert!(!contains(&bytes, secret_a), "plaintext of the purged record found");
    assert!(!contains(&bytes, &ct_a[..32]), "ciphertext of the purged record found");
    assert!(!contains(&bytes, &key_a), "key of the purged period found");

    let store = SqliteStore::open(&db).unwrap();
    let left = store.records(&r, &m, Timestamp::EPOCH, Timestamp::MAX).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].body, secret_b);
    let log = store.audit_log().unwrap();
    let kinds: Vec<AuditEvent> = log.export(log.size()).unwrap().into_iter().map(|e| e.event).collect();
    assert!(kinds.iter().any(|e| matches!(e, AuditEvent::Purge { records: 1, .. })));
    assert!(kinds.iter().any(|e| matches!(e, AuditEvent::KeyDestruction { .. })));
}

#[test]
fn a_failed_commit_changes_nothing() {
    let mut store = SqliteStore::in_memory().unwrap();
    let key = PartitionKey {
        metric: MetricId::new("thermostat.mode").unwrap(),
        bucket_start: Timestamp::from_secs(0),
        bucket_end: Timestamp::from_secs(DAY),
        audience: BTreeSet::from([RecipientId::new("calora").unwrap()]),
        hold: "P1Y".parse().unwrap(),
    };
    let seen =
        SeenIds { envelope: [9; 32], expires_at: Timestamp::from_secs(2 * DAY), ids: vec![[1; 16], [2; 16]] };
    let ok = CommitBatch {
        partitions: vec![StoredPartition { key: key.clone(), state: vec![1, 2, 3], reports: 2 }],
        seen: vec![seen.clone()],
        audit: vec![AuditEvent::IngestBatch {
            envelope_digest: [9; 32],
            reports: 2,
            partitions: 1,
            at: Timestamp::from_secs(5),
        }],
        ..CommitBatch::default()
    };
    store.commit(&ok).unwrap();
    assert!(store.envelope_seen(&[9; 32]).unwrap());
    // The same envelope again: the unique digest makes the whole batch fail.
    let replay = CommitBatch {
        partitions: vec![StoredPartition { key: key.clone(), state: vec![7, 7, 7], reports: 4 }],
        records: vec![record(3, 0, "P30D", b"x")],
        seen: vec![seen],
        audit: vec![AuditEvent::IngestBatch {
            envelope_digest: [9; 32],
            reports: 2,
            partitions: 1,
            at: Timestamp::from_secs(6),
        }],
    };
    assert!(store.commit(&replay).is_err());
    let parts = store.partitions().unwrap();
    assert_eq!(parts, vec![StoredPartition { key, state: vec![1, 2, 3], reports: 2 }]);
    let r = RecipientId::new("voltis").unwrap();
    let m = MetricId::new("car.odometer-km").unwrap();
    assert!(store.records(&r, &m, Timestamp::EPOCH, Timestamp::MAX).unwrap().is_empty());
    assert_eq!(store.audit_log().unwrap().size(), 1);
    assert_eq!(store.seen_ids(Timestamp::from_secs(0)).unwrap().len(), 2);
    assert!(store.id_seen(&[1; 16]).unwrap() && !store.id_seen(&[3; 16]).unwrap());
    assert!(
        store.seen_ids(Timestamp::from_secs(2 * DAY)).unwrap().is_empty(),
        "expired ids are not returned"
    );
    // Purge forgets them, at their expiry and not before.
    assert_eq!(store.purge(Timestamp::from_secs(2 * DAY - 1)).unwrap().ids_forgotten, 0);
    assert_eq!(store.purge(Timestamp::from_secs(2 * DAY)).unwrap().ids_forgotten, 2);
    assert!(!store.id_seen(&[1; 16]).unwrap());
}

#[test]
fn tampered_ciphertext_is_refused() {
    let mut store = SqliteStore::in_memory().unwrap();
    store
        .commit(&CommitBatch { records: vec![record(4, 0, "P30D", b"value")], ..CommitBatch::default() })
        .unwrap();
    store.connection().execute("UPDATE record SET ciphertext = zeroblob(length(ciphertext))", []).unwrap();
    let r = RecipientId::new("voltis").unwrap();
    let m = MetricId::new("car.odometer-km").unwrap();
    assert!(store.records(&r, &m, Timestamp::EPOCH, Timestamp::MAX).is_err());
}

#[test]
fn schema_from_the_future_is_refused() {
    let db = tmp("schema");
    drop(SqliteStore::open(&db).unwrap());
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert!(matches!(
        SqliteStore::open(&db),
        Err(confiance_aggregator::store::StoreError::SchemaTooNew { found: 99, .. })
    ));
}

#[test]
fn report_ids_of_a_schema_1_database_are_migrated_through_schema_2() {
    let db = tmp("migrate-ids");
    drop(SqliteStore::open(&db).unwrap());
    // Back to schema 1: ids lived in a blob per envelope.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "DROP TABLE seen_run;
         DROP TABLE seen_envelope;
         CREATE TABLE seen_envelope (digest BLOB PRIMARY KEY, expires_at INTEGER NOT NULL, ids BLOB NOT NULL);
         CREATE INDEX seen_expiry ON seen_envelope (expires_at);
         PRAGMA user_version = 1;",
    )
    .unwrap();
    let ids: Vec<u8> = [[1u8; 16], [2; 16], [3; 16]].concat();
    conn.execute(
        "INSERT INTO seen_envelope (digest, expires_at, ids) VALUES (?1, ?2, ?3)",
        rusqlite::params![&[9u8; 32][..], 2 * DAY as i64, ids],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO seen_envelope (digest, expires_at, ids) VALUES (?1, ?2, ?3)",
        rusqlite::params![&[8u8; 32][..], 3 * DAY as i64, &[4u8; 16][..]],
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&db).unwrap();
    let mut seen = store.seen_ids(Timestamp::EPOCH).unwrap();
    seen.sort();
    let t = |d: u64| Timestamp::from_secs(d * DAY);
    assert_eq!(seen, vec![([1; 16], t(2)), ([2; 16], t(2)), ([3; 16], t(2)), ([4; 16], t(3))]);
    assert!(store.id_seen(&[2; 16]).unwrap() && !store.id_seen(&[5; 16]).unwrap());
    assert!(store.envelope_seen(&[9; 32]).unwrap() && store.envelope_seen(&[8; 32]).unwrap());
    // The per-envelope copies are gone with the column (schema 4).
    assert!(store.connection().prepare("SELECT ids FROM seen_envelope").is_err());
}

//! The SQLite audit store: same tree as in memory, cold reopen gives the same root, appends
//! inside a caller's transaction commit or roll back with it, and tampering with the file
//! is caught.
#![allow(clippy::unwrap_used, reason = "a test: failing loudly is the point")]

use std::path::PathBuf;

use confiance::Timestamp;
use confiance::ids::ReceiptId;
use confiance_aggregator::audit::{
    AuditError, AuditEvent, AuditLog, AuditStore, CheckpointSigner, SqliteStore, Verifier,
};
use proptest::prelude::*;
use rusqlite::Connection;

#[path = "support/fixtures.rs"]
mod fixtures;

fn ev(i: u32) -> AuditEvent {
    match i % 4 {
        0 => AuditEvent::ConsentGiven { receipt: ReceiptId([i as u8; 32]) },
        1 => AuditEvent::IngestBatch {
            envelope_digest: [(i >> 8) as u8; 32],
            reports: i,
            partitions: i / 3,
            at: Timestamp::from_secs(u64::from(i)),
        },
        2 => AuditEvent::Purge { partitions: i, records: i * 2, at: Timestamp::from_secs(u64::from(i)) },
        _ => AuditEvent::KeyDestruction { key_id: [(i % 251) as u8; 32], at: Timestamp::from_secs(7) },
    }
}

/// A scratch database file, removed on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("confiance-audit-{}-{name}.sqlite", std::process::id()));
        let _ = std::fs::remove_file(&p);
        Self(p)
    }
    fn open(&self) -> Connection {
        let c = Connection::open(&self.0).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;").unwrap();
        c
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// SQLite and memory logs built from the same events in the same batches have the same
    /// roots at every size and the same proofs.
    #[test]
    fn sqlite_and_memory_logs_agree(batches in prop::collection::vec(1u32..40, 1..6), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        let mut mem = AuditLog::in_memory();
        let mut sql = AuditLog::open_sqlite(Connection::open_in_memory().unwrap()).unwrap();
        let mut next = 0u32;
        for len in batches {
            let events: Vec<AuditEvent> = (next..next + len).map(ev).collect();
            next += len;
            prop_assert_eq!(mem.append_batch(&events).unwrap(), sql.append_batch(&events).unwrap());
            prop_assert_eq!(mem.root(), sql.root());
        }
        let n = mem.size();
        let size = b.index(n as usize) as u64 + 1;
        let m = a.index(size as usize) as u64;
        let old = m.max(1);
        prop_assert_eq!(mem.root_at(size).unwrap(), sql.root_at(size).unwrap());
        prop_assert_eq!(mem.inclusion_proof(m, size).unwrap(), sql.inclusion_proof(m, size).unwrap());
        prop_assert_eq!(mem.consistency_proof(old, size).unwrap(), sql.consistency_proof(old, size).unwrap());
        prop_assert_eq!(mem.event(m).unwrap(), sql.event(m).unwrap());
        // Reopening the same connection rebuilds the frontier from stored nodes.
        let reopened = AuditLog::open(sql.into_store()).unwrap();
        prop_assert_eq!(reopened.root(), mem.root());
        prop_assert_eq!(reopened.size(), n);
    }
}

#[test]
fn cold_reopen_from_file_gives_the_same_root_and_proofs() {
    let db = TempDb::new("reopen");
    let signer = CheckpointSigner::from_secret_bytes("reopen.test", &[5; 32]).unwrap();
    let (root, cp, proof) = {
        let mut log = AuditLog::open_sqlite(db.open()).unwrap();
        for chunk in (0..2_000u32).collect::<Vec<_>>().chunks(333) {
            let events: Vec<AuditEvent> = chunk.iter().copied().map(ev).collect();
            log.append_batch(&events).unwrap();
        }
        log.append(&ev(2_000)).unwrap();
        (
            log.root(),
            log.checkpoint(&signer, Timestamp::from_secs(1)),
            log.inclusion_proof(1234, 2_001).unwrap(),
        )
    }; // connection closed here
    let log = AuditLog::open_sqlite(db.open()).unwrap();
    assert_eq!(log.size(), 2_001);
    assert_eq!(log.root(), root);
    assert_eq!(log.inclusion_proof(1234, 2_001).unwrap(), proof);
    let v = Verifier::new("reopen.test", signer.verifying_key()).unwrap();
    v.verify_inclusion(&cp, &log.event(1234).unwrap(), &proof).unwrap();
    v.audit(&cp, &log.export(2_001).unwrap()).unwrap();
    // Appending after the reopen continues the same tree.
    let mut log = log;
    log.append(&ev(2_001)).unwrap();
    let c = log.consistency_proof(2_001, 2_002).unwrap();
    v.verify_consistency(&cp, &log.checkpoint(&signer, Timestamp::from_secs(2)), &c).unwrap();
}

#[test]
fn appends_in_a_caller_transaction_commit_or_roll_back_with_it() {
    let mut conn = Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE ingest (id INTEGER PRIMARY KEY, n INTEGER)").unwrap();
    let first_root = {
        let mut log = AuditLog::open_sqlite(&conn).unwrap();
        log.append(&ev(0)).unwrap();
        log.root()
    };
    // Rolled back: neither the ingest row nor the audit event stays.
    {
        let tx = conn.transaction().unwrap();
        tx.execute("INSERT INTO ingest (n) VALUES (1)", []).unwrap();
        let mut log = AuditLog::open(SqliteStore::open(&*tx).unwrap()).unwrap();
        log.append_batch(&[ev(1), ev(2)]).unwrap();
        assert_eq!(log.size(), 3);
        drop(log);
        tx.rollback().unwrap();
    }
    let log = AuditLog::open_sqlite(&conn).unwrap();
    assert_eq!((log.size(), log.root()), (1, first_root));
    let rows: i64 = conn.query_row("SELECT COUNT(*) FROM ingest", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 0);
    drop(log);
    // Committed: both stay.
    {
        let tx = conn.transaction().unwrap();
        tx.execute("INSERT INTO ingest (n) VALUES (1)", []).unwrap();
        // The tables exist: attach without re-running the schema.
        let mut log = AuditLog::open(SqliteStore::attach(&*tx)).unwrap();
        log.append_batch(&[ev(1), ev(2)]).unwrap();
        drop(log);
        tx.commit().unwrap();
    }
    let log = AuditLog::open_sqlite(&conn).unwrap();
    assert_eq!(log.size(), 3);
    let mut mem = AuditLog::in_memory();
    mem.append_batch(&[ev(0), ev(1), ev(2)]).unwrap();
    assert_eq!(log.root(), mem.root());
}

#[test]
fn attaching_without_tables_is_an_error_not_a_panic() {
    let conn = Connection::open_in_memory().unwrap();
    assert!(matches!(AuditLog::open(SqliteStore::attach(&conn)), Err(AuditError::Sqlite(_))));
}

#[test]
fn a_failed_append_leaves_the_store_unchanged() {
    let conn = Connection::open_in_memory().unwrap();
    let mut log = AuditLog::open_sqlite(&conn).unwrap();
    log.append_batch(&[ev(0), ev(1), ev(2)]).unwrap();
    let root = log.root();
    // A second writer got there first: this log's view is stale, the store refuses.
    let mut other = AuditLog::open_sqlite(&conn).unwrap();
    other.append(&ev(3)).unwrap();
    assert!(matches!(log.append(&ev(9)), Err(AuditError::OutOfRange { index: 3, size: 4 })));
    assert_eq!(log.size(), 3);
    assert_eq!(log.root(), root);
    assert_eq!(AuditLog::open_sqlite(&conn).unwrap().size(), 4);
}

#[test]
fn the_tables_are_append_only_and_tampering_is_detected() {
    let db = TempDb::new("tamper");
    let signer = CheckpointSigner::from_secret_bytes("tamper.test", &[6; 32]).unwrap();
    let v = Verifier::new("tamper.test", signer.verifying_key()).unwrap();
    let conn = db.open();
    let cp = {
        let mut log = AuditLog::open_sqlite(&conn).unwrap();
        log.append_batch(&(0..20).map(ev).collect::<Vec<_>>()).unwrap();
        log.checkpoint(&signer, Timestamp::from_secs(1))
    };
    for sql in [
        "UPDATE audit_leaf SET leaf = x'00' WHERE seq = 3",
        "DELETE FROM audit_leaf WHERE seq = 19",
        "UPDATE audit_node SET hash = zeroblob(32) WHERE level = 1 AND idx = 0",
        "DELETE FROM audit_node",
    ] {
        let err = conn.execute(sql, []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    // An attacker who drops the triggers and rewrites event 3 (and its leaf hash):
    let forged = {
        let mut f = AuditLog::in_memory();
        let mut events: Vec<AuditEvent> = (0..20).map(ev).collect();
        events[3] = AuditEvent::Purge { partitions: 0, records: 0, at: Timestamp::from_secs(0) };
        f.append_batch(&events).unwrap();
        f.event(3).unwrap()
    };
    conn.execute_batch("DROP TRIGGER audit_leaf_no_update").unwrap();
    conn.execute(
        "UPDATE audit_leaf SET leaf = ?1, hash = ?2 WHERE seq = 3",
        rusqlite::params![forged.leaf_bytes().unwrap(), forged.leaf_hash().unwrap()],
    )
    .unwrap();
    let log = AuditLog::open_sqlite(&conn).unwrap();
    let export = log.export(20).unwrap();
    assert_eq!(export[3], forged);
    assert!(matches!(v.audit(&cp, &export), Err(AuditError::RootMismatch)));
    // Rewriting only the leaf bytes (not the hash) is caught on read. (Opening the log
    // recreated the trigger, so the attacker drops it again.)
    conn.execute_batch("DROP TRIGGER audit_leaf_no_update").unwrap();
    conn.execute("UPDATE audit_leaf SET leaf = ?1 WHERE seq = 5", [forged.leaf_bytes().unwrap()]).unwrap();
    assert!(matches!(log.event(5), Err(AuditError::Corrupt(_))));
    assert_eq!(log.store().len().unwrap(), 20);
}

/// A stored inner node off the root's path can be rewritten without touching an event or
/// the root: the full audit of the events still passes, yet the inclusion proofs the log
/// serves through that node fail for the auditor. `AuditLog::check_nodes` recomputes
/// every stored node from the leaves and catches it (`confiance audit verify` runs it).
#[test]
fn a_rewritten_inner_node_is_caught_by_check_nodes() {
    let db = TempDb::new("inner-node");
    let signer = CheckpointSigner::from_secret_bytes("tamper.test", &[6; 32]).unwrap();
    let v = Verifier::new("tamper.test", signer.verifying_key()).unwrap();
    let conn = db.open();
    let cp = {
        let mut log = AuditLog::open_sqlite(&conn).unwrap();
        log.append_batch(&(0..20).map(ev).collect::<Vec<_>>()).unwrap();
        log.check_nodes().unwrap();
        log.checkpoint(&signer, Timestamp::from_secs(1))
    };
    // 20 leaves: the root is made of the subtrees (level 4, 0) and (level 2, 4); the node
    // (level 1, 0) over events 0 and 1 is on no root path, only on inclusion proofs.
    conn.execute_batch(
        "DROP TRIGGER audit_node_no_update;
         UPDATE audit_node SET hash = zeroblob(32) WHERE level = 1 AND idx = 0;",
    )
    .unwrap();
    let log = AuditLog::open_sqlite(&conn).unwrap();
    v.audit(&cp, &log.export(20).unwrap()).unwrap();
    let proof = log.inclusion_proof(3, 20).unwrap();
    assert!(v.verify_inclusion(&cp, &log.event(3).unwrap(), &proof).is_err(), "the served proof fails");
    assert!(matches!(log.check_nodes(), Err(AuditError::Corrupt(_))));
}

/// `verify_signed_facts` reads the ledger's rows after the log was read: a consent fact
/// whose event is not among those events is a finding only when no event appended since
/// (`later`: what a process serving the same database may have appended meanwhile) holds
/// it either, and `later` is read only then; an event whose fact the ledger lacks is a
/// finding whatever came later (a fact is committed before or with its event).
#[test]
fn a_consent_fact_is_missing_from_the_log_only_if_no_later_event_holds_it() {
    use confiance_aggregator::audit::{LoggedEvent, verify_signed_facts};
    let catalogue =
        confiance::catalogue::Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml"))
            .unwrap();
    let mut ledger = confiance_aggregator::ledger::Ledger::in_memory(catalogue.clone()).unwrap();
    let mut dev = {
        use confiance::hazmat::SeedableRng as _;
        let mut rng = confiance::hazmat::SeededRng::seed_from_u64(5);
        confiance::recorder::Recorder::new(
            confiance::recorder::RecorderParts {
                catalogue,
                consent: confiance::consent::ConsentState::new(confiance::consent::DeviceKey::generate(
                    &mut rng,
                )),
                pseudonyms: confiance::pseudonym::DeviceSecret::generate(&mut rng),
                controller: "calora".parse().unwrap(),
                key_configs: vec![],
                rng,
            },
            confiance::recorder::MemoryStorage::default(),
        )
    };
    let request = confiance::consent::ConsentRequest::new(
        "calora".parse().unwrap(),
        "product-improvement".parse().unwrap(),
        confiance::consent::Scope::metrics(["thermostat.mode".parse().unwrap()]),
        "P90D".parse().unwrap(),
    );
    let t = Timestamp::from_secs(1_000);
    let receipt = ledger.ingest_receipt(&dev.give_consent(request, t).unwrap(), t).unwrap();
    let given = LoggedEvent { seq: 0, event: AuditEvent::ConsentGiven { receipt } };
    let err = verify_signed_facts(&ledger, &[], || Ok(Vec::new())).unwrap_err();
    assert_eq!(err, format!("consent given for receipt {receipt}: the ledger holds it, the log does not"));
    let later = verify_signed_facts(&ledger, &[], || Ok(vec![given.clone()])).unwrap();
    assert_eq!((later.receipts, later.withdrawals), (1, 0));
    let logged =
        verify_signed_facts(&ledger, std::slice::from_ref(&given), || panic!("not read: nothing is missing"));
    assert_eq!(logged.unwrap().receipts, 1);
    let stray = LoggedEvent { seq: 1, event: AuditEvent::ConsentGiven { receipt: ReceiptId([9; 32]) } };
    let err = verify_signed_facts(&ledger, &[given.clone(), stray], || Ok(Vec::new())).unwrap_err();
    assert!(err.ends_with("the log holds it, the ledger does not"), "{err}");
    // A withdrawal the log lacks, then logged since.
    let at = Timestamp::from_secs(2_000);
    ledger.ingest_withdrawal(&dev.withdraw_consent(&receipt, at).unwrap(), at).unwrap();
    let err = verify_signed_facts(&ledger, std::slice::from_ref(&given), || Ok(Vec::new())).unwrap_err();
    assert_eq!(
        err,
        format!("consent withdrawn for receipt {receipt}: the ledger holds it, the log does not")
    );
    let withdrawn = LoggedEvent { seq: 1, event: AuditEvent::ConsentWithdrawn { receipt, at } };
    let both = verify_signed_facts(&ledger, &[given], || Ok(vec![withdrawn])).unwrap();
    assert_eq!((both.receipts, both.withdrawals), (1, 1));
}

/// `verify_signed_facts` replays the ledger's rule on who may sign for a subject from the
/// rows: a receipt row — its signature valid, its columns what was signed — whose signer
/// the subject never delegated, signed after the signer's revocation, or outside the
/// signer's delegation, is a finding naming the row (a row written into the database past
/// the ledger's checks); receipts the ledger accepted pass, also one signed by a device
/// later revoked.
#[test]
fn a_receipt_whose_signer_did_not_speak_for_its_subject_is_a_finding() {
    use confiance::consent::{DeviceKey, SignedReceipt, SubjectKey};
    use confiance_aggregator::audit::{LoggedEvent, verify_signed_facts};
    let t = Timestamp::from_secs;
    let mut ledger = confiance_aggregator::ledger::Ledger::in_memory(fixtures::catalogue()).unwrap();
    let owner = SubjectKey::from_bytes(&[1; 32]);
    let (dev1, stranger, brief) =
        (DeviceKey::from_bytes(&[2; 32]), DeviceKey::from_bytes(&[3; 32]), DeviceKey::from_bytes(&[4; 32]));
    for (dev, until) in [(&dev1, None), (&brief, Some(t(100)))] {
        let d = owner.delegate(dev.public_key(), t(0), until, t(0)).unwrap();
        ledger.ingest_delegation(&d.to_bytes(), t(1)).unwrap();
    }
    let honest = fixtures::calora_mode_receipt(&owner, &dev1, 10, 1);
    let id = ledger.ingest_receipt(&honest.to_bytes(), t(10)).unwrap();
    ledger.ingest_revocation(&owner.revoke(dev1.public_key(), t(500), t(500)).to_bytes(), t(500)).unwrap();
    let events = [LoggedEvent { seq: 0, event: AuditEvent::ConsentGiven { receipt: id } }];
    let facts = verify_signed_facts(&ledger, &events, || Ok(Vec::new())).unwrap();
    assert_eq!((facts.receipts, facts.delegations, facts.revocations), (1, 2, 1));
    // Rows written by SQL, as the ledger would have written them had it accepted them.
    let insert = |signed: &SignedReceipt| {
        let r = signed.receipt();
        ledger
            .connection()
            .execute(
                "INSERT INTO ledger_receipt (seq, id, subject, device_key, recipient, purpose, metrics, hold,
                 valid_from, valid_until, recorded_at, signed)
                 VALUES (100, ?1, ?2, ?3, 'calora', 'product-improvement', 'thermostat.mode', 'P90D', ?4, -1, ?4, ?5)",
                rusqlite::params![
                    signed.id().as_bytes().as_slice(),
                    r.subject.as_bytes().as_slice(),
                    r.signer.as_bytes().as_slice(),
                    r.valid_from.as_secs() as i64,
                    signed.to_bytes()
                ],
            )
            .unwrap();
    };
    for (signed, says) in [
        (
            fixtures::calora_mode_receipt(&owner, &stranger, 20, 2),
            "its signer is not a device key its subject delegated",
        ),
        (fixtures::calora_mode_receipt(&owner, &dev1, 600, 3), "its signer had been revoked"),
        (
            fixtures::calora_mode_receipt(&owner, &brief, 150, 4),
            "its signer's delegation was not in force when it was signed",
        ),
    ] {
        insert(&signed);
        let err = verify_signed_facts(&ledger, &events, || Ok(Vec::new())).unwrap_err();
        assert_eq!(err, format!("receipt row 100: {says}"));
        ledger.connection().execute("DELETE FROM ledger_receipt WHERE seq = 100", []).unwrap();
    }
    // Signed by the subject key itself: no delegation needed.
    let own = fixtures::calora_mode_receipt(&owner, &DeviceKey::from_bytes(&[1; 32]), 30, 5);
    assert_eq!(own.receipt().signer, owner.public_key().as_device_key());
    insert(&own);
    let given = LoggedEvent { seq: 1, event: AuditEvent::ConsentGiven { receipt: own.id() } };
    let facts = verify_signed_facts(&ledger, &events, || Ok(vec![given])).unwrap();
    assert_eq!(facts.receipts, 2);
}

//! One conformance suite for the consent ledger's two backends: the same test functions
//! run on SQLite (always) and PostgreSQL (with the `postgres` feature and
//! `CONFIANCE_TEST_POSTGRES=postgres://…` naming a server where the user may create
//! databases; `bash .ci/postgres` starts a throw-away one). Without either, each
//! PostgreSQL test prints why it is skipped: never a silent pass.
//!
//! Covered on both: every kind of fact reads back after a reopen with the same answers
//! (receipts, withdrawals, delegations, revocations, records, partitions, purges,
//! disclosures, an override), a refused batch leaves nothing, bulk ingest reads back.
//! Then, on PostgreSQL only, several handles on one database (stand-ins for several
//! processes): a fact one records is seen by another's next refresh; a write checked
//! against a stale index catches up first (or is refused when it cannot); concurrent
//! writers get one dense history; a newer schema and another catalogue are refused.

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{
    ConsentReceipt, ConsentState, DeviceKey, Grant, RECEIPT_VERSION, Scope, SignedReceipt, SubjectKey,
    Withdrawal,
};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{MetricId, PurposeId, ReceiptId, RecipientId, SubjectId};
use confiance_aggregator::ledger::{
    Disclosure, DisclosureKind, Ledger, LedgerError, PartitionNote, Party, RecordNote, Target,
};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{catalogue, id};

const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(s)
}

/// Opens handles on one ledger database: each call a new handle (a reopen, or another
/// process).
trait Backend {
    fn open(&mut self) -> Ledger;
    fn is_pg(&self) -> bool;
}

struct Sqlite(std::path::PathBuf);

impl Backend for Sqlite {
    fn open(&mut self) -> Ledger {
        Ledger::open(rusqlite::Connection::open(&self.0).unwrap(), catalogue()).unwrap()
    }
    fn is_pg(&self) -> bool {
        false
    }
}

impl Sqlite {
    fn fresh(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("confiance-ledger-conf-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir.join("ledger.sqlite"))
    }
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(feature = "postgres")]
struct Pg(String);

#[cfg(feature = "postgres")]
impl Backend for Pg {
    fn open(&mut self) -> Ledger {
        Ledger::open_postgres(&self.0, catalogue()).unwrap()
    }
    fn is_pg(&self) -> bool {
        true
    }
}

/// A PostgreSQL ledger opened lazily ([`Ledger::open_postgres_lazy`]): no subject
/// loaded at open, each loaded by the write or question that needs it.
#[cfg(feature = "postgres")]
struct PgLazy(String);

#[cfg(feature = "postgres")]
impl Backend for PgLazy {
    fn open(&mut self) -> Ledger {
        let l = Ledger::open_postgres_lazy(&self.0, catalogue()).unwrap();
        assert_eq!(l.loaded_subjects(), Some(0));
        l
    }
    fn is_pg(&self) -> bool {
        true
    }
}

/// Says on stderr, past the test harness's capture, that a PostgreSQL test did not run
/// and why.
fn skip(why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "skipped on PostgreSQL: {why}");
}

/// A fresh, empty database named after the test, as a URL; `None` (said on stderr)
/// when `CONFIANCE_TEST_POSTGRES` is unset.
#[cfg(feature = "postgres")]
fn fresh_pg(name: &str) -> Option<String> {
    use ::postgres::{Client, NoTls};
    let Ok(url) = std::env::var("CONFIANCE_TEST_POSTGRES") else {
        skip("CONFIANCE_TEST_POSTGRES is unset (bash .ci/postgres runs this suite on a throw-away server)");
        return None;
    };
    // PostgreSQL names are at most 63 bytes.
    let db: String = format!("confiance_l_{name}").chars().take(63).collect();
    let mut c = Client::connect(&url, NoTls).expect("cannot connect to CONFIANCE_TEST_POSTGRES");
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).unwrap();
    c.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let mut config: ::postgres::Config = url.parse().unwrap();
    config.dbname(&db);
    // Back to a URL: the ledger takes one, as `confiance serve --db` does.
    let host = match &config.get_hosts()[0] {
        ::postgres::config::Host::Tcp(h) => h.clone(),
        #[cfg(unix)]
        ::postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    Some(format!("postgres://{user}@{host}:{port}/{db}"))
}

/// Runs each named test function once per backend: `sqlite::name` and `postgres::name`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                super::$name(&mut super::Sqlite::fresh(stringify!($name)));
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                #[cfg(feature = "postgres")]
                if let Some(url) = super::fresh_pg(stringify!($name)) {
                    super::$name(&mut super::Pg(url));
                }
                #[cfg(not(feature = "postgres"))]
                super::skip("built without the `postgres` feature (bash .ci/postgres runs it)");
            })*
        }
        mod postgres_lazy {
            $(#[test]
            fn $name() {
                #[cfg(feature = "postgres")]
                if let Some(url) = super::fresh_pg(concat!("z_", stringify!($name))) {
                    super::$name(&mut super::PgLazy(url));
                }
                #[cfg(not(feature = "postgres"))]
                super::skip("built without the `postgres` feature (bash .ci/postgres runs it)");
            })*
        }
    };
}

conformance!(
    every_kind_of_fact_reads_back_with_the_same_answers,
    a_refused_batch_leaves_nothing,
    bulk_ingest_reads_back
);

struct Names {
    lab: RecipientId,
    research: PurposeId,
    setpoint: MetricId,
}

fn names() -> Names {
    Names { lab: id("lab-eu"), research: id("research"), setpoint: id("thermostat.setpoint") }
}

/// A device (its own subject) and a receipt it gives `lab-eu` for research on the
/// setpoint, valid from `from`.
fn device_receipt(cat: &Catalogue, seed: u64, from: u64) -> (ConsentState, SignedReceipt) {
    let n = names();
    let mut rng = SeededRng::seed_from_u64(seed);
    let mut device = ConsentState::new(DeviceKey::generate(&mut rng));
    let grant = Grant {
        recipient: n.lab,
        purpose: n.research,
        scope: Scope::metrics([n.setpoint]),
        valid_from: t(from),
        valid_until: None,
        hold: "P30D".parse().unwrap(),
    };
    let receipt = device.give(cat, grant, t(from), &mut rng).unwrap();
    (device, receipt)
}

/// What a ledger holds, all of it (a lazily loaded ledger loads everything first).
fn all_stats(l: &mut Ledger) -> confiance_aggregator::ledger::LedgerStats {
    l.load_everything().unwrap();
    l.stats()
}

/// What a ledger answers about `subjects`, as text (every answer type is `Debug`). A
/// lazily loaded ledger loads everything first: these questions span subjects.
fn answers(l: &mut Ledger, subjects: &[SubjectId]) -> String {
    l.load_everything().unwrap();
    let n = names();
    let mut out = format!("{:?}\n", l.stats());
    for s in subjects {
        for at in [T0 - DAY, T0 + 10, T0 + 2 * DAY, T0 + 40 * DAY] {
            out += &format!("{:?}\n", l.check_at(&n.lab, &n.setpoint, &n.research, s, t(at), None));
            out += &format!("{:?}\n", l.subject_access(s, t(at), None));
        }
        out += &format!("{:?}\n", l.history(&Party::Subject(*s), t(0), t(T0 + 100 * DAY)));
    }
    out += &format!("{:?}\n", l.who_sees(&Target::Metric(n.setpoint.clone()), t(T0 + 10), None));
    out += &format!("{:?}\n", l.overdue(t(T0 + 100 * DAY), None));
    out += &format!("{:?}\n", l.unconsented_disclosures(t(0), t(T0 + 100 * DAY)));
    out += &format!("{:?}\n", l.held_partitions());
    out += &format!("{:?}\n", l.held_records());
    out
}

fn every_kind_of_fact_reads_back_with_the_same_answers(b: &mut dyn Backend) {
    let cat = catalogue();
    let n = names();
    let mut l = b.open();
    // Two single-device subjects; the first withdraws.
    let (mut d1, r1) = device_receipt(&cat, 1, T0);
    let (_d2, r2) = device_receipt(&cat, 2, T0 + 5);
    l.ingest_receipt(&r1.to_bytes(), t(T0)).unwrap();
    l.ingest_receipt(&r2.to_bytes(), t(T0 + 5)).unwrap();
    let w = d1.withdraw(&r1.id(), t(T0 + DAY)).unwrap();
    l.ingest_withdrawal(&w.to_bytes(), t(T0 + DAY)).unwrap();
    // A subject with a delegated device, then revoked; then closed by an override.
    let owner = SubjectKey::from_bytes(&[9; 32]);
    let dev = DeviceKey::from_bytes(&[10; 32]);
    let start = t(T0);
    l.ingest_delegation(&owner.delegate(dev.public_key(), start, None, start).unwrap().to_bytes(), start)
        .unwrap();
    let lost = t(T0 + 3 * DAY);
    l.ingest_revocation(&owner.revoke(dev.public_key(), lost, lost).to_bytes(), lost).unwrap();
    // Holdings: a record under r2, a partition, their purges, and a disclosure.
    let s2 = r2.receipt().subject;
    let record = RecordNote {
        record: [7; 16],
        subject: s2,
        recipient: n.lab.clone(),
        metric: n.setpoint.clone(),
        receipt: r2.id(),
        collected_at: t(T0 + 100),
        deadline: t(T0 + 30 * DAY),
    };
    l.note_record(&record, t(T0 + 100)).unwrap();
    let partition = PartitionNote {
        partition: vec![1, 2, 3],
        metric: n.setpoint.clone(),
        bucket_end: t(T0 + DAY),
        audience: vec![n.lab.clone()],
        deadline: t(T0 + 10 * DAY),
    };
    l.note_partition(&partition, t(T0 + 200)).unwrap();
    l.note_partition(&PartitionNote { partition: vec![4], ..partition.clone() }, t(T0 + 300)).unwrap();
    l.note_partition_purged(&[1, 2, 3], t(T0 + 10 * DAY), t(T0 + 10 * DAY)).unwrap();
    let d = Disclosure {
        kind: DisclosureKind::Release,
        recipient: n.lab.clone(),
        metric: n.setpoint.clone(),
        purpose: n.research.clone(),
        subject: s2,
        at: t(T0 + 2 * DAY),
        record: Some([7; 16]),
    };
    assert!(l.disclose(&d, t(T0 + 2 * DAY)).unwrap().allowed());
    l.note_record_purged(&[7; 16], t(T0 + 30 * DAY), t(T0 + 30 * DAY)).unwrap();
    let s1 = r1.receipt().subject;
    let closed = l.override_subject(&s2, "lost key", t(T0 + 31 * DAY), t(T0 + 31 * DAY)).unwrap();
    assert_eq!(closed, vec![r2.id()], "the override withdraws the running receipt");
    let subjects = [s1, s2, owner.subject_id()];
    let before = answers(&mut l, &subjects);
    let stats = l.stats();
    assert_eq!(
        (stats.receipts, stats.withdrawals, stats.records, stats.partitions, stats.disclosures),
        (2, 2, 1, 2, 1)
    );
    drop(l);
    assert_eq!(answers(&mut b.open(), &subjects), before, "a reopened ledger answers as before");
    // The signed facts stay refused as duplicates after the reopen (a lazily loaded
    // ledger finds them through the indexes).
    let mut l = b.open();
    assert!(matches!(
        l.ingest_receipt(&r1.to_bytes(), t(T0 + 50 * DAY)),
        Err(LedgerError::DuplicateReceipt(_))
    ));
    assert!(matches!(
        l.note_partition(&partition, t(T0 + 50 * DAY)),
        Err(LedgerError::DuplicatePartition(_))
    ));
}

fn a_refused_batch_leaves_nothing(b: &mut dyn Backend) {
    let cat = catalogue();
    let mut l = b.open();
    let (_, r1) = device_receipt(&cat, 1, T0);
    let (_, r2) = device_receipt(&cat, 2, T0);
    let r = l.atomically(|l| {
        l.ingest_receipt(&r1.to_bytes(), t(T0))?;
        l.ingest_receipt(&r2.to_bytes(), t(T0))?;
        l.ingest_receipt(&r1.to_bytes(), t(T0))
    });
    assert!(matches!(r, Err(LedgerError::DuplicateReceipt(_))));
    assert_eq!(l.stats().receipts, 0, "nothing in memory");
    drop(l);
    let mut l = b.open();
    assert_eq!(all_stats(&mut b.open()).receipts, 0, "nothing stored");
    // And the ledger still takes both afterwards, at the sequence numbers the refused
    // batch did not keep.
    l.ingest_receipt(&r1.to_bytes(), t(T0)).unwrap();
    l.ingest_receipt(&r2.to_bytes(), t(T0)).unwrap();
    drop(l);
    assert_eq!(all_stats(&mut b.open()).receipts, 2);
}

/// Receipt `i` taken on trust: lab-eu's research on the setpoint, held P30D, recorded at
/// `T0`; its id, subject and device key are `i` in 32 bytes.
fn unverified(
    n: &Names,
    i: u32,
    valid_from: Timestamp,
    valid_until: Option<Timestamp>,
) -> confiance_aggregator::ledger::UnverifiedReceipt {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&i.to_le_bytes());
    confiance_aggregator::ledger::UnverifiedReceipt {
        id: confiance::ids::ReceiptId(bytes),
        subject: SubjectId(bytes),
        device_key: bytes,
        recipient: n.lab.clone(),
        purpose: n.research.clone(),
        metrics: vec![n.setpoint.clone()],
        valid_from,
        valid_until,
        hold: "P30D".parse().unwrap(),
        recorded_at: t(T0),
    }
}

fn bulk_ingest_reads_back(b: &mut dyn Backend) {
    let n = names();
    let mut l = b.open();
    let receipts: Vec<_> = (0..200u32)
        .map(|i| unverified(&n, i, t(T0 + u64::from(i % 7) * DAY), (i % 3 == 0).then(|| t(T0 + 20 * DAY))))
        .collect();
    assert_eq!(l.ingest_unverified(receipts.clone()).unwrap(), 200);
    let subjects: Vec<SubjectId> = receipts.iter().take(20).map(|r| r.subject).collect();
    let before = answers(&mut l, &subjects);
    assert!(matches!(l.ingest_unverified(receipts[..1].to_vec()), Err(LedgerError::DuplicateReceipt(_))));
    drop(l);
    assert_eq!(answers(&mut b.open(), &subjects), before);
    assert!(!b.is_pg() || b.open().is_shared());
}

#[cfg(feature = "postgres")]
mod postgres_only {
    use super::*;

    fn pg(name: &str) -> Option<Pg> {
        fresh_pg(name).map(Pg)
    }

    #[test]
    fn a_fact_one_handle_records_is_seen_by_the_others_next_refresh() {
        let Some(mut b) = pg("seen_by_refresh") else { return };
        let cat = catalogue();
        let n = names();
        let (mut a, mut other) = (b.open(), b.open());
        let (mut d, r) = device_receipt(&cat, 1, T0);
        let s = r.receipt().subject;
        a.ingest_receipt(&r.to_bytes(), t(T0)).unwrap();
        let allowed =
            |l: &Ledger| l.check_at(&n.lab, &n.setpoint, &n.research, &s, t(T0 + 10), None).allowed();
        assert!(!allowed(&other), "before a refresh the other handle's cache does not have it");
        assert!(other.refresh().unwrap(), "the change sequence moved");
        assert!(allowed(&other));
        assert!(!other.refresh().unwrap(), "nothing new: one query, nothing read");
        let w = d.withdraw(&r.id(), t(T0 + 5)).unwrap();
        other.ingest_withdrawal(&w.to_bytes(), t(T0 + 6)).unwrap();
        a.refresh().unwrap();
        assert!(!allowed(&a), "the withdrawal recorded by the other handle is seen");
        assert_eq!(answers(&mut a, &[s]), answers(&mut other, &[s]));
    }

    /// A question across subjects asked again at the same change sequence is answered
    /// from the memo (no page read); once another handle (process) writes and this one
    /// refreshes, the memo is dropped and the answer is the new ledger's.
    #[test]
    fn a_repeated_question_across_subjects_is_kept_until_another_handle_writes() {
        let Some(mut b) = pg("scan_memo") else { return };
        let cat = catalogue();
        let n = names();
        let mut writer = b.open();
        let (_, r1) = device_receipt(&cat, 1, T0);
        writer.ingest_receipt(&r1.to_bytes(), t(T0)).unwrap();
        let mut lazy = Ledger::open_postgres_lazy(&b.0, catalogue()).unwrap();
        lazy.set_scan_chunk(1);
        let target = Target::Metric(n.setpoint.clone());
        let ask = |l: &mut Ledger| {
            (l.scan_who_sees(&target, t(T0 + 10), None).unwrap(), l.scan_overdue(t(T0 + 10), None).unwrap())
        };
        let first = ask(&mut lazy);
        assert_eq!(lazy.scan_memo_hits(), 0);
        assert_eq!(ask(&mut lazy), first);
        assert_eq!(lazy.scan_memo_hits(), 2, "both answered from the memo");
        // Another process gives a second receipt for the setpoint.
        let mut other = Ledger::open_postgres_lazy(&b.0, catalogue()).unwrap();
        let (_, r2) = device_receipt(&cat, 2, T0);
        other.atomically(|l| l.ingest_receipt(&r2.to_bytes(), t(T0))).unwrap();
        assert!(lazy.refresh().unwrap(), "the change sequence moved");
        let second = ask(&mut lazy);
        assert_eq!(lazy.scan_memo_hits(), 2, "read again, not from the memo");
        let mut whole = b.open();
        whole.load_everything().unwrap();
        assert_eq!(second.0, whole.who_sees(&target, t(T0 + 10), None));
        assert_eq!(second.0.entries[0].subjects, 2);
        assert_ne!(second.0, first.0, "the memo of the earlier sequence was dropped");
    }

    #[test]
    fn a_write_checked_against_a_stale_index_catches_up_or_is_refused() {
        let Some(mut b) = pg("stale_write") else { return };
        let cat = catalogue();
        let (mut a, mut stale) = (b.open(), b.open());
        let (_, r) = device_receipt(&cat, 1, T0);
        let (_, r2) = device_receipt(&cat, 2, T0);
        a.ingest_receipt(&r.to_bytes(), t(T0)).unwrap();
        // Outside a transaction the stale handle checks against what it knows, and its
        // write is refused because another process wrote since: nothing is stored.
        let e = stale.ingest_receipt(&r.to_bytes(), t(T0)).unwrap_err();
        assert!(matches!(e, LedgerError::Shared(confiance_aggregator::store::StoreError::Conflict)), "{e:?}");
        // Inside `atomically` it first catches up under the writers' lock: the duplicate
        // is found as such, and a new receipt is written after the other's.
        let e = stale.atomically(|l| l.ingest_receipt(&r.to_bytes(), t(T0))).unwrap_err();
        assert!(matches!(e, LedgerError::DuplicateReceipt(_)), "{e:?}");
        stale.atomically(|l| l.ingest_receipt(&r2.to_bytes(), t(T0))).unwrap();
        assert_eq!(b.open().stats().receipts, 2);
        a.refresh().unwrap();
        assert_eq!(a.stats(), stale.stats());
    }

    #[test]
    fn concurrent_writers_make_one_history() {
        let Some(mut b) = pg("concurrent_writers") else { return };
        let cat = catalogue();
        const HANDLES: u64 = 4;
        const EACH: u64 = 15;
        let receipts: Vec<Vec<SignedReceipt>> = (0..HANDLES)
            .map(|h| (0..EACH).map(|i| device_receipt(&cat, 1_000 * h + i, T0).1).collect())
            .collect();
        let mut handles: Vec<Ledger> = (0..HANDLES).map(|_| b.open()).collect();
        let barrier = std::sync::Barrier::new(HANDLES as usize);
        std::thread::scope(|s| {
            for (l, rs) in handles.iter_mut().zip(&receipts) {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    for r in rs {
                        // Each write catches up first: never a conflict, never a duplicate.
                        l.atomically(|l| l.ingest_receipt(&r.to_bytes(), t(T0))).unwrap();
                    }
                });
            }
        });
        let all: Vec<SubjectId> = receipts.iter().flatten().map(|r| r.receipt().subject).collect();
        let mut fresh = b.open();
        assert_eq!(fresh.stats().receipts, HANDLES * EACH);
        let expected = answers(&mut fresh, &all);
        for l in &mut handles {
            l.refresh().unwrap();
            assert_eq!(answers(l, &all), expected, "every handle's cache is the database's ledger");
        }
        // One dense sequence: every fact has its own seq, 0..n.
        let mut c = ::postgres::Client::connect(&b.0, ::postgres::NoTls).unwrap();
        let seqs: Vec<i64> = c
            .query("SELECT seq FROM ledger_receipt ORDER BY seq", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(seqs, (0..i64::try_from(HANDLES * EACH).unwrap()).collect::<Vec<_>>());
        let head: i64 = c.query_one("SELECT next_seq FROM ledger_head", &[]).unwrap().get(0);
        assert_eq!(head, i64::try_from(HANDLES * EACH).unwrap());
    }

    #[test]
    fn a_newer_schema_and_another_catalogue_are_refused() {
        let Some(mut b) = pg("refusals") else { return };
        drop(b.open());
        let other = Catalogue::from_toml_str(&include_str!("../../examples/catalogue.toml").replacen(
            "\nversion = 1\n",
            "\nversion = 2\n",
            1,
        ))
        .unwrap();
        assert_ne!(other.digest(), catalogue().digest());
        assert!(matches!(Ledger::open_postgres(&b.0, other), Err(LedgerError::CatalogueChanged)));
        let mut c = ::postgres::Client::connect(&b.0, ::postgres::NoTls).unwrap();
        c.batch_execute("UPDATE confiance_schema SET version = 99").unwrap();
        let e = Ledger::open_postgres(&b.0, catalogue()).unwrap_err();
        assert!(
            matches!(
                e,
                LedgerError::Shared(confiance_aggregator::store::StoreError::SchemaTooNew { found: 99, .. })
            ),
            "{e:?}"
        );
    }

    /// `n` receipts, one subject each, valid from `T0` until withdrawn.
    fn bulk(n: u32) -> Vec<confiance_aggregator::ledger::UnverifiedReceipt> {
        let nm = names();
        (0..n).map(|i| unverified(&nm, i, t(T0), None)).collect()
    }

    #[test]
    fn a_lazy_ledger_starts_holding_no_subject_and_loads_one_on_demand() {
        let Some(mut b) = pg("lazy_start") else { return };
        let n = names();
        let mut full = b.open();
        full.ingest_unverified(bulk(300)).unwrap();
        let partition = PartitionNote {
            partition: vec![1],
            metric: n.setpoint.clone(),
            bucket_end: t(T0 + DAY),
            audience: vec![n.lab.clone()],
            deadline: t(T0 + 10 * DAY),
        };
        full.note_partition(&partition, t(T0)).unwrap();
        let mut lazy = Ledger::open_postgres_lazy(&b.0, catalogue()).unwrap();
        // At open: the partitions and the head, not one subject's fact.
        let stats = lazy.stats();
        assert_eq!((stats.receipts, stats.subjects, stats.grants, stats.partitions), (0, 0, 0, 1));
        assert_eq!(lazy.loaded_subjects(), Some(0));
        let s = bulk(300)[123].subject;
        let allowed =
            |l: &Ledger| l.check_at(&n.lab, &n.setpoint, &n.research, &s, t(T0 + 10), None).allowed();
        assert!(!allowed(&lazy), "a subject not loaded is not in the index");
        lazy.load_subject(&s).unwrap();
        assert!(allowed(&lazy));
        assert_eq!(lazy.stats().receipts, 1, "exactly that subject's facts were read");
        assert_eq!(lazy.loaded_subjects(), Some(1));
        // A receipt is found by its id (its subject loaded), a duplicate refused.
        let other = bulk(300)[7].clone();
        assert!(lazy.receipt_terms(&other.id).is_none());
        lazy.load_receipt(&other.id).unwrap();
        assert_eq!(lazy.receipt_terms(&other.id).map(|r| r.subject), Some(other.subject));
        let dup = lazy.atomically(|l| l.ingest_unverified(bulk(300)[200..201].to_vec()));
        assert!(matches!(dup, Err(LedgerError::DuplicateReceipt(_))), "{dup:?}");
        assert_eq!(lazy.loaded_subjects(), Some(0), "a refused write forgets every subject loaded");
        assert_eq!(lazy.stats().receipts, 0);
        lazy.load_subject(&s).unwrap();
        // A new fact of a loaded subject written by another handle comes with a refresh;
        // one of a subject not loaded is not read.
        let mut again = bulk(300)[123].clone();
        again.id = confiance::ids::ReceiptId([0xee; 32]);
        full.ingest_unverified([again]).unwrap();
        let (_, r) = device_receipt(&catalogue(), 5, T0);
        full.ingest_receipt(&r.to_bytes(), t(T0)).unwrap();
        assert!(lazy.refresh().unwrap());
        assert_eq!(lazy.stats().receipts, 2, "the loaded subject's two receipts, not the other's");
        // Forgetting the loaded subjects bounds the index; outside a transaction only.
        assert!(!lazy.atomically(|l| l.forget_subjects()).unwrap());
        assert_eq!(lazy.loaded_subjects(), Some(1));
        assert!(lazy.forget_subjects().unwrap());
        assert_eq!((lazy.loaded_subjects(), lazy.stats().receipts, lazy.stats().partitions), (Some(0), 0, 1));
        assert!(!allowed(&lazy));
        lazy.load_subject(&s).unwrap();
        assert!(allowed(&lazy), "loaded again, with both receipts");
        assert_eq!(lazy.stats().receipts, 2);
        lazy.load_everything().unwrap();
        assert_eq!(lazy.loaded_subjects(), None);
        assert_eq!(lazy.stats(), full.stats());
    }

    /// One step of a history written by two lazily loaded handles on one database.
    #[derive(Debug, Clone)]
    enum Op {
        /// Subject `s` gives a receipt signed by its key (`signer` 0) or a device key
        /// ([`dev`]: any subject's device, so a signer some other subject delegated too).
        Give {
            s: u8,
            signer: u8,
            from: u8,
            len: Option<u8>,
            wide: bool,
        },
        /// Subject `s` withdraws the `k`-th receipt given (any subject's: a mismatch is refused).
        Withdraw {
            s: u8,
            k: u8,
            signer: u8,
            at: u8,
        },
        /// Subject `s` delegates device key `d` ([`dev`]).
        Delegate {
            s: u8,
            d: u8,
            until: Option<u8>,
        },
        Revoke {
            s: u8,
            d: u8,
            at: u8,
        },
        /// A record under the `k`-th receipt given.
        Record {
            k: u8,
            at: u8,
        },
        /// A purge of the `k`-th record noted.
        Purge {
            k: u8,
            at: u8,
        },
        /// A release of subject `s`'s setpoint at `at`: through `disclose` (noted only when
        /// allowed) or noted whatever the consent (`forced`).
        Disclose {
            s: u8,
            at: u8,
            forced: bool,
        },
        Override {
            s: u8,
        },
        /// The handle loads subject `s` (a question about it).
        Look {
            s: u8,
        },
    }

    const SUBJECTS: u8 = 4;
    const H: u64 = 3_600;

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0..SUBJECTS, 0..=DEVICES, 0..48u8, proptest::option::of(1..48u8), any::<bool>())
                .prop_map(|(s, signer, from, len, wide)| Op::Give { s, signer, from, len, wide }),
            2 => (0..SUBJECTS, 0..16u8, 0..=DEVICES, 0..48u8).prop_map(|(s, k, signer, at)| Op::Withdraw { s, k, signer, at }),
            2 => (0..SUBJECTS, 1..=DEVICES, proptest::option::of(1..96u8)).prop_map(|(s, d, until)| Op::Delegate { s, d, until }),
            1 => (0..SUBJECTS, 1..=DEVICES, 0..96u8).prop_map(|(s, d, at)| Op::Revoke { s, d, at }),
            2 => (0..16u8, 0..96u8).prop_map(|(k, at)| Op::Record { k, at }),
            1 => (0..8u8, 0..96u8).prop_map(|(k, at)| Op::Purge { k, at }),
            2 => (0..SUBJECTS, 0..96u8, any::<bool>()).prop_map(|(s, at, forced)| Op::Disclose { s, at, forced }),
            1 => (0..SUBJECTS).prop_map(|s| Op::Override { s }),
            3 => (0..SUBJECTS).prop_map(|s| Op::Look { s }),
        ]
    }

    fn owner(s: u8) -> SubjectKey {
        SubjectKey::from_bytes(&[s + 1; 32])
    }

    /// Device keys `1..=DEVICES`, each of which any subject may try to delegate.
    const DEVICES: u8 = 5;

    fn dev(d: u8) -> DeviceKey {
        DeviceKey::from_bytes(&[100 + d; 32])
    }

    /// Signs with subject `s`'s key (`signer` 0) or device key `signer`.
    fn signed_receipt(r: ConsentReceipt, s: u8, signer: u8) -> SignedReceipt {
        if signer == 0 { r.sign_by_subject(&owner(s)) } else { r.sign(&dev(signer)) }
    }

    /// Everything a ledger answers about one subject, as text; the subject is loaded
    /// first (a no-op on a fully loaded ledger).
    fn subject_answers(l: &mut Ledger, s: u8, receipts: &[ReceiptId], records: &[[u8; 16]]) -> String {
        let subject = owner(s).subject_id();
        l.load_subject(&subject).unwrap();
        for d in 1..=DEVICES {
            l.load_device(&dev(d).public_key()).unwrap();
        }
        for r in receipts {
            l.load_receipt(r).unwrap();
        }
        for r in records {
            l.load_record(r).unwrap();
        }
        let n = names();
        let heating: MetricId = id("thermostat.heating-minutes");
        let mut out = String::new();
        for h in [0, 5, 20, 47, 60, 100] {
            let at = t(T0 + h * H);
            for m in [&n.setpoint, &heating] {
                for known in [None, Some(t(T0 + 200 * 60)), Some(at)] {
                    out += &format!("{:?}\n", l.check_at(&n.lab, m, &n.research, &subject, at, known));
                }
            }
            out += &format!("{:?}\n", l.subject_access(&subject, at, None));
            out += &format!("{:?}\n", l.subject_access(&subject, at, Some(t(T0 + 300 * 60))));
            for d in 1..=DEVICES {
                out += &format!("{:?}\n", l.enrolled_device(&dev(d).public_key(), at));
            }
        }
        out += &format!("{:?}\n", l.history(&Party::Subject(subject), t(0), t(u64::MAX)));
        out += &format!("{:?} {:?}\n", l.knows_subject(&subject), l.closed(&subject));
        for r in receipts {
            out += &format!("{:?} {:?}\n", l.receipt_terms(r), l.receipt_recorded_at(r));
        }
        for r in records {
            out += &format!("{}\n", l.knows_record(r));
        }
        out
    }

    /// Runs `op` on `l` at record time `now`; whatever it answers (refusals included).
    #[allow(clippy::too_many_lines, reason = "one arm per kind of fact")]
    fn apply(
        l: &mut Ledger,
        op: &Op,
        now: Timestamp,
        given: &mut Vec<(u8, ReceiptId, Timestamp)>,
        records: &mut Vec<[u8; 16]>,
    ) -> String {
        let cat = catalogue();
        let n = names();
        match *op {
            Op::Give { s, signer, from, len, wide } => {
                let mut metrics = vec![n.setpoint.clone()];
                if wide {
                    metrics.push(id("thermostat.heating-minutes"));
                }
                let valid_from = t(T0 + u64::from(from) * H);
                let receipt = ConsentReceipt {
                    version: RECEIPT_VERSION,
                    catalogue_version: cat.version(),
                    catalogue_digest: cat.digest(),
                    subject: owner(s).subject_id(),
                    subject_key: owner(s).public_key(),
                    recipient: n.lab.clone(),
                    purpose: n.research.clone(),
                    scope: Scope::metrics(metrics),
                    valid_from,
                    valid_until: len.map(|h| valid_from.saturating_add_secs(u64::from(h) * H)),
                    hold: if wide { "P2D" } else { "P30D" }.parse().unwrap(),
                    issued_at: now,
                    nonce: [u8::try_from(given.len() % 256).unwrap(); 16],
                    signer: owner(s).public_key().as_device_key(),
                };
                let signed = signed_receipt(receipt, s, signer);
                let r = l.atomically(|l| l.ingest_receipt(&signed.to_bytes(), now));
                if let Ok(id) = r {
                    given.push((s, id, valid_from));
                }
                format!("{r:?}")
            }
            Op::Withdraw { s, k, signer, at } => {
                let Some(&(_, receipt, from)) = given.get(usize::from(k)) else { return "none".into() };
                let w = Withdrawal {
                    version: RECEIPT_VERSION,
                    receipt,
                    subject: owner(s).subject_id(),
                    subject_key: owner(s).public_key(),
                    at: from.saturating_add_secs(u64::from(at) * H),
                    issued_at: now,
                    signer: owner(s).public_key().as_device_key(),
                };
                let w = if signer == 0 { w.sign_by_subject(&owner(s)) } else { w.sign(&dev(signer)) };
                format!("{:?}", l.atomically(|l| l.ingest_withdrawal(&w.to_bytes(), now)))
            }
            Op::Delegate { s, d, until } => {
                let until = until.map(|h| t(T0 + u64::from(h) * H));
                let dl = owner(s).delegate(dev(d).public_key(), t(T0), until, now).unwrap();
                format!("{:?}", l.atomically(|l| l.ingest_delegation(&dl.to_bytes(), now)))
            }
            Op::Revoke { s, d, at } => {
                let rv = owner(s).revoke(dev(d).public_key(), t(T0 + u64::from(at) * H), now);
                format!("{:?}", l.atomically(|l| l.ingest_revocation(&rv.to_bytes(), now)))
            }
            Op::Record { k, at } => {
                let Some(&(s, receipt, _)) = given.get(usize::from(k)) else { return "none".into() };
                let mut record = [0u8; 16];
                record[0] = u8::try_from(records.len() % 256).unwrap() + 1;
                record[1] = 0xaa;
                let note = RecordNote {
                    record,
                    subject: owner(s).subject_id(),
                    recipient: n.lab.clone(),
                    metric: n.setpoint.clone(),
                    receipt,
                    collected_at: t(T0 + u64::from(at) * H),
                    deadline: t(T0 + u64::from(at) * H + 10 * DAY),
                };
                let r = l.atomically(|l| l.note_record(&note, now));
                if r.is_ok() {
                    records.push(record);
                }
                format!("{r:?}")
            }
            Op::Purge { k, at } => {
                let Some(record) = records.get(usize::from(k)) else { return "none".into() };
                let at = t(T0 + u64::from(at) * H);
                format!("{:?}", l.atomically(|l| l.note_record_purged(record, at, now)))
            }
            Op::Disclose { s, at, forced } => {
                let d = Disclosure {
                    kind: DisclosureKind::Release,
                    recipient: n.lab.clone(),
                    metric: n.setpoint.clone(),
                    purpose: n.research.clone(),
                    subject: owner(s).subject_id(),
                    at: t(T0 + u64::from(at) * H),
                    record: None,
                };
                if forced {
                    format!("{:?}", l.atomically(|l| l.note_disclosure(&d, now)))
                } else {
                    format!("{:?}", l.atomically(|l| l.disclose(&d, now)))
                }
            }
            Op::Override { s } => {
                let s = owner(s).subject_id();
                format!("{:?}", l.atomically(|l| l.override_subject(&s, "lost key", t(T0 + 40 * H), now)))
            }
            Op::Look { s } => {
                l.refresh().unwrap();
                l.load_subject(&owner(s).subject_id()).unwrap();
                // Remembered: the next load of the recipient looks only at later facts.
                l.load_recipient(&names().lab).unwrap();
                "looked".into()
            }
        }
    }

    /// The answers across subjects, of a fully loaded ledger (`answers` loads everything).
    fn global_answers(l: &mut Ledger) -> String {
        let n = names();
        let subjects: Vec<SubjectId> = (0..SUBJECTS).map(|s| owner(s).subject_id()).collect();
        let mut out = answers(l, &subjects);
        out += &recipient_answers(l, &n.lab);
        out += &format!("{:?}\n", l.consent_facts());
        out
    }

    /// A recipient's view at three instants and its whole history: all a lazily loaded
    /// ledger needs for them is `load_recipient`.
    fn recipient_answers(l: &Ledger, r: &RecipientId) -> String {
        let mut out = String::new();
        for h in [0, 10, 50] {
            out += &format!("{:?}\n", l.recipient_view(r, t(T0 + h * H), None));
        }
        out + &format!("{:?}\n", l.history(&Party::Recipient(r.clone()), t(0), t(u64::MAX)))
    }

    /// A catalogue without `lab-eu` among the setpoint's recipients: its diff from the
    /// example catalogue removes accesses the histories' receipts name.
    fn narrower_catalogue() -> Catalogue {
        let text = include_str!("../../examples/catalogue.toml");
        let from = "recipients = [\"calora\", \"gridco\", \"lab-eu\"]";
        let i = text.find(from).unwrap();
        let narrowed =
            format!("{}recipients = [\"calora\", \"gridco\"]{}", &text[..i], &text[i + from.len()..]);
        Catalogue::from_toml_str(&narrowed).unwrap()
    }

    /// The instants (valid, record) the questions across subjects are asked at.
    fn instants() -> Vec<(Timestamp, Option<Timestamp>)> {
        let mut out = Vec::new();
        for h in [0, 5, 20, 47, 60, 100, 400] {
            let at = t(T0 + h * H);
            for known in [None, Some(t(T0 + 200 * 60)), Some(at)] {
                out.push((at, known));
            }
        }
        out
    }

    fn targets() -> [Target; 3] {
        [
            Target::Metric(names().setpoint),
            Target::Metric(id("thermostat.heating-minutes")),
            Target::Category(id("energy")),
        ]
    }

    /// Who sees what, overdue holdings, unconsented disclosures and the catalogue diff,
    /// from a fully loaded ledger's in-memory queries.
    fn across_answers(l: &Ledger) -> String {
        let mut out = String::new();
        for (at, known) in instants() {
            for target in targets() {
                out += &format!("{:?}\n", l.who_sees(&target, at, known));
            }
            out += &format!("{:?}\n", l.overdue(at, known));
            out += &format!("{:?}\n", l.unconsented_disclosures(t(T0 + 10 * H), at));
        }
        out += &format!("{:?}\n", l.unconsented_disclosures(t(0), t(u64::MAX)));
        out + &format!("{:?}\n", l.diff(&catalogue(), &narrower_catalogue()))
    }

    /// The same questions read page by page (`scan_*`), asserting after each that the
    /// subjects the ledger keeps loaded are the ones it held before (none added: the
    /// cap is never passed).
    fn across_answers_scanned(l: &mut Ledger) -> String {
        let held = l.loaded_subjects();
        let mut out = String::new();
        let kept = |l: &Ledger| assert_eq!(l.loaded_subjects(), held, "a scan keeps no subject loaded");
        for (at, known) in instants() {
            for target in targets() {
                out += &format!("{:?}\n", l.scan_who_sees(&target, at, known).unwrap());
                kept(l);
            }
            out += &format!("{:?}\n", l.scan_overdue(at, known).unwrap());
            kept(l);
            out += &format!("{:?}\n", l.scan_unconsented_disclosures(t(T0 + 10 * H), at).unwrap());
            kept(l);
        }
        out += &format!("{:?}\n", l.scan_unconsented_disclosures(t(0), t(u64::MAX)).unwrap());
        out += &format!("{:?}\n", l.scan_diff(&catalogue(), &narrower_catalogue()).unwrap());
        kept(l);
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 16, ..Default::default() })]

        /// Two lazily loaded handles write one history in turns, each loading (or not)
        /// the subjects it is asked about; each write's outcome is what a fully loaded
        /// ledger gives, and at the end each handle — its cached subjects brought up to
        /// date by a refresh, the others loaded on demand — answers every question about
        /// every subject, then every question across subjects, as a ledger loaded whole
        /// from the database.
        #[test]
        fn a_lazily_loaded_ledger_answers_as_a_fully_loaded_one(
            ops in proptest::collection::vec((op(), proptest::prelude::any::<bool>()), 8..40),
        ) {
            let Some(mut b) = pg("lazy_props") else { return Ok(()) };
            let mut handles = [
                Ledger::open_postgres_lazy(&b.0, catalogue()).unwrap(),
                Ledger::open_postgres_lazy(&b.0, catalogue()).unwrap(),
            ];
            // The reference for each write's outcome: a fully loaded SQLite ledger fed
            // the same writes in the same order.
            let mut full = Ledger::in_memory(catalogue()).unwrap();
            let (mut given, mut records) = (Vec::new(), Vec::new());
            let (mut given_full, mut records_full) = (Vec::new(), Vec::new());
            for (i, (op, which)) in ops.iter().enumerate() {
                let now = t(T0 + 60 * u64::try_from(i).unwrap());
                let h = &mut handles[usize::from(*which)];
                let got = apply(h, op, now, &mut given, &mut records);
                if !matches!(op, Op::Look { .. }) {
                    let want = apply(&mut full, op, now, &mut given_full, &mut records_full);
                    proptest::prop_assert_eq!(got, want, "step {}: {:?}", i, op);
                }
            }
            let mut fresh = b.open();
            let given_ids: Vec<(u8, ReceiptId)> = given.iter().map(|&(s, id, _)| (s, id)).collect();
            for h in &mut handles {
                h.refresh().unwrap();
                if h.is_lazy() {
                    h.load_recipient(&names().lab).unwrap();
                    proptest::prop_assert_eq!(
                        recipient_answers(h, &names().lab),
                        recipient_answers(&fresh, &names().lab)
                    );
                }
                for s in 0..SUBJECTS {
                    let mine: Vec<ReceiptId> = given_ids.iter().filter(|g| g.0 == s).map(|g| g.1).collect();
                    proptest::prop_assert_eq!(
                        subject_answers(h, s, &mine, &records),
                        subject_answers(&mut fresh, s, &mine, &records)
                    );
                }
                proptest::prop_assert_eq!(global_answers(h), global_answers(&mut fresh));
            }
            // A recipient's questions on a new lazy handle: only the subjects with a
            // receipt or disclosure for it are loaded, and the answers are the whole
            // ledger's (`fresh` was loaded whole above).
            let mut lazy = Ledger::open_postgres_lazy(&b.0, catalogue()).unwrap();
            lazy.load_recipient(&names().lab).unwrap();
            proptest::prop_assert!(lazy.is_lazy());
            proptest::prop_assert_eq!(recipient_answers(&lazy, &names().lab), recipient_answers(&fresh, &names().lab));
            // The questions across subjects, page by page: one subject a page (every
            // history of more than one subject takes several pages), then two, on a
            // handle holding one subject loaded (the cap of a host: it stays so).
            let want = across_answers(&fresh);
            for chunk in [1, 2] {
                let mut lazy = Ledger::open_postgres_lazy(&b.0, catalogue()).unwrap();
                lazy.set_scan_chunk(chunk);
                lazy.load_subject(&owner(0).subject_id()).unwrap();
                proptest::prop_assert!(lazy.is_lazy());
                proptest::prop_assert_eq!(&across_answers_scanned(&mut lazy), &want, "pages of {}", chunk);
            }
            // On a fully loaded ledger the scans are the in-memory queries.
            proptest::prop_assert_eq!(&across_answers_scanned(&mut fresh), &want);
        }
    }
}

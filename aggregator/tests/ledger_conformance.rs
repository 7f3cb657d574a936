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
use confiance::consent::{ConsentState, DeviceKey, Grant, Scope, SignedReceipt, SubjectKey};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{MetricId, PurposeId, RecipientId, SubjectId};
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
    let db = format!("confiance_l_{name}");
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

/// What a ledger answers about `subjects`, as text (every answer type is `Debug`).
fn answers(l: &Ledger, subjects: &[SubjectId]) -> String {
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
    let before = answers(&l, &subjects);
    let stats = l.stats();
    assert_eq!(
        (stats.receipts, stats.withdrawals, stats.records, stats.partitions, stats.disclosures),
        (2, 2, 1, 2, 1)
    );
    drop(l);
    let l = b.open();
    assert_eq!(answers(&l, &subjects), before, "a reopened ledger answers as before");
    // The signed facts stay refused as duplicates after the reopen.
    let mut l = l;
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
    assert_eq!(l.stats().receipts, 0, "nothing stored");
    // And the ledger still takes both afterwards, at the sequence numbers the refused
    // batch did not keep.
    l.ingest_receipt(&r1.to_bytes(), t(T0)).unwrap();
    l.ingest_receipt(&r2.to_bytes(), t(T0)).unwrap();
    drop(l);
    assert_eq!(b.open().stats().receipts, 2);
}

fn bulk_ingest_reads_back(b: &mut dyn Backend) {
    let n = names();
    let mut l = b.open();
    let receipts: Vec<_> = (0..200u32)
        .map(|i| {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&i.to_le_bytes());
            confiance_aggregator::ledger::UnverifiedReceipt {
                id: confiance::ids::ReceiptId(bytes),
                subject: SubjectId(bytes),
                device_key: bytes,
                recipient: n.lab.clone(),
                purpose: n.research.clone(),
                metrics: vec![n.setpoint.clone()],
                valid_from: t(T0 + u64::from(i % 7) * DAY),
                valid_until: (i % 3 == 0).then(|| t(T0 + 20 * DAY)),
                hold: "P30D".parse().unwrap(),
                recorded_at: t(T0),
            }
        })
        .collect();
    assert_eq!(l.ingest_unverified(receipts.clone()).unwrap(), 200);
    let subjects: Vec<SubjectId> = receipts.iter().take(20).map(|r| r.subject).collect();
    let before = answers(&l, &subjects);
    assert!(matches!(l.ingest_unverified(receipts[..1].to_vec()), Err(LedgerError::DuplicateReceipt(_))));
    drop(l);
    assert_eq!(answers(&b.open(), &subjects), before);
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
        assert_eq!(answers(&a, &[s]), answers(&other, &[s]));
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
        let fresh = b.open();
        assert_eq!(fresh.stats().receipts, HANDLES * EACH);
        let expected = answers(&fresh, &all);
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
}

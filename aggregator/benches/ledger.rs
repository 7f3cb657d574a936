//! Consent ledger at scale: 10^7 grants (10^6 receipts of 10 metrics each) over 10^6
//! subjects, 20 recipients and 50 metrics, 10^4 of them withdrawn.
//!
//! The receipts go in through [`Ledger::ingest_unverified`] — the documented hazard
//! path that skips signatures, since signing 10^6 receipts would dominate the run; the
//! withdrawals are real Ed25519 signatures verified on ingest. The database is built
//! once into the temp directory and reused. Then: cold load from SQLite (timed once,
//! memory measured as the growth of resident memory from `/proc/self/statm`), and
//! criterion medians for check, subject_access, recipient_view and who_sees.
//!
//! With `LEDGER_BENCH_POSTGRES=postgres://user@host:port/DB`, the same ledger is also
//! built once on PostgreSQL, in the database `confiance_ledger_bench` on that server
//! (created if missing, reused when complete), and its cold load — `Ledger::open_postgres`,
//! which every `confiance serve --db postgres://…` process does at start — is timed and
//! measured beside SQLite's. The queries are the same in-memory index either way.
//!
//! Run: `cargo bench -p confiance-aggregator --bench ledger`.

#![allow(missing_docs, reason = "criterion_group! generates an undocumented function")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use confiance::Timestamp;
use confiance::catalogue::{Catalogue, LegalBasis, Metric, MetricKind, Purpose, Recipient, Role};
use confiance::consent::{RECEIPT_VERSION, Withdrawal};
use confiance::ids::{CategoryId, MetricId, PurposeId, ReceiptId, RecipientId, SubjectId};
use confiance_aggregator::ledger::{Ledger, Target, UnverifiedReceipt};
use criterion::{Criterion, criterion_group, criterion_main};

const SUBJECTS: u32 = 1_000_000;
const RECIPIENTS: u32 = 20;
const METRICS: u32 = 50;
const PER_RECEIPT: u32 = 10;
const WITHDRAWN: u32 = 10_000;
const HORIZON: u64 = 1_000_000;

fn catalogue() -> Catalogue {
    let purposes = [PurposeId::new("service").unwrap(), PurposeId::new("research").unwrap()];
    let recipients: Vec<RecipientId> =
        (0..RECIPIENTS).map(|r| RecipientId::new(&format!("r{r:02}")).unwrap()).collect();
    let mut b = Catalogue::builder("bench", 1);
    for p in &purposes {
        b = b.purpose(p.clone(), Purpose::new("bench", LegalBasis::Consent));
    }
    for r in &recipients {
        b = b.recipient(r.clone(), Recipient::new("bench", Role::ThirdParty, "FR"));
    }
    for m in 0..METRICS {
        b = b.metric(
            metric(m),
            Metric::new("bench", MetricKind::Boolean, CategoryId::new(&format!("c{}", m / 10)).unwrap())
                .pseudonymous()
                .purposes(purposes.clone())
                .recipients(recipients.clone())
                .max_hold("P1Y".parse().unwrap()),
        );
    }
    b.build().unwrap()
}

fn metric(m: u32) -> MetricId {
    MetricId::new(&format!("m{m:02}")).unwrap()
}

/// The first `WITHDRAWN` subjects are self-certifying (their key signs their withdrawals);
/// the rest are arbitrary bytes (their receipts go in unverified).
fn subject(i: u32) -> SubjectId {
    if i < WITHDRAWN {
        let pk = signing_key(i).verifying_key().to_bytes();
        return SubjectId::of_key(&confiance::ids::SubjectPublicKey(pk));
    }
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&i.to_le_bytes());
    b[4] = 0x5a;
    SubjectId(b)
}

fn signing_key(i: u32) -> ed25519_dalek::SigningKey {
    let mut b = [7u8; 32];
    b[..4].copy_from_slice(&i.to_le_bytes());
    ed25519_dalek::SigningKey::from_bytes(&b)
}

/// A cheap deterministic mix (SplitMix64) for the synthetic data.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn receipt(i: u32, device_key: [u8; 32]) -> UnverifiedReceipt {
    let h = mix(u64::from(i));
    let first = u32::try_from(h % u64::from(METRICS)).unwrap();
    let valid_from = (h >> 8) % HORIZON;
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&h.to_le_bytes());
    id[8..12].copy_from_slice(&i.to_le_bytes());
    UnverifiedReceipt {
        id: ReceiptId(id),
        subject: subject(i),
        device_key,
        recipient: RecipientId::new(&format!("r{:02}", i % RECIPIENTS)).unwrap(),
        purpose: PurposeId::new(if h & 1 == 0 { "service" } else { "research" }).unwrap(),
        metrics: (0..PER_RECEIPT).map(|k| metric((first + k) % METRICS)).collect(),
        valid_from: Timestamp::from_secs(valid_from),
        valid_until: (h & 6 == 0).then(|| Timestamp::from_secs(valid_from + (h >> 40) % HORIZON + 1)),
        hold: "P30D".parse().unwrap(),
        recorded_at: Timestamp::from_secs(valid_from),
    }
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

fn build(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;").unwrap();
    fill(&mut Ledger::open(conn, catalogue()).unwrap());
}

/// Opens `ledger` (a fresh one) and prints how long it took, what it holds and the growth
/// of resident memory.
fn cold_load(what: &str, open: impl FnOnce() -> Ledger) -> Ledger {
    let before = resident_bytes();
    let start = Instant::now();
    let ledger = open();
    let load = start.elapsed();
    let after = resident_bytes();
    let stats = ledger.stats();
    assert_eq!(stats.grants, u64::from(SUBJECTS * PER_RECEIPT));
    println!(
        "ledger cold load ({what}): {} grants, {} receipts, {} subjects, {} withdrawals in {:.2} s; resident memory +{} MiB = {:.0} bytes/grant",
        stats.grants,
        stats.receipts,
        stats.subjects,
        stats.withdrawals,
        load.as_secs_f64(),
        after.saturating_sub(before) >> 20,
        after.saturating_sub(before) as f64 / stats.grants as f64
    );
    ledger
}

/// The PostgreSQL cold load, when `LEDGER_BENCH_POSTGRES` names a server; the ledger is
/// built there first unless a previous run left it whole (its withdrawals go in last).
fn postgres_cold_load() {
    let Ok(url) = std::env::var("LEDGER_BENCH_POSTGRES") else { return };
    let (server, _) = url.rsplit_once('/').expect("LEDGER_BENCH_POSTGRES=postgres://user@host:port/DB");
    let db = format!("{server}/confiance_ledger_bench");
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let complete = postgres::Client::connect(&db, postgres::NoTls)
        .ok()
        .and_then(|mut c| c.query_one("SELECT count(*) FROM ledger_withdrawal", &[]).ok())
        .is_some_and(|r| r.get::<_, i64>(0) == i64::from(WITHDRAWN));
    if !complete {
        admin.batch_execute("DROP DATABASE IF EXISTS confiance_ledger_bench WITH (FORCE)").unwrap();
        admin.batch_execute("CREATE DATABASE confiance_ledger_bench").unwrap();
        println!("building the ledger on PostgreSQL…");
        fill(&mut Ledger::open_postgres(&db, catalogue()).unwrap());
    }
    drop(cold_load("PostgreSQL", || Ledger::open_postgres(&db, catalogue()).unwrap()));
}

/// Writes the bench's receipts and withdrawals into `ledger`.
fn fill(ledger: &mut Ledger) {
    let start = Instant::now();
    for chunk in 0..SUBJECTS / 100_000 {
        let batch = (chunk * 100_000..(chunk + 1) * 100_000).map(|i| {
            let key = if i < WITHDRAWN { signing_key(i).verifying_key().to_bytes() } else { [1; 32] };
            receipt(i, key)
        });
        ledger.ingest_unverified(batch).unwrap();
    }
    let receipts = start.elapsed();
    let start = Instant::now();
    for i in 0..WITHDRAWN {
        let r = receipt(i, [0; 32]);
        let key = confiance::consent::DeviceKey::from_bytes(&signing_key(i).to_bytes());
        let at = r.valid_from.saturating_add_secs(1_000);
        let w = Withdrawal {
            version: RECEIPT_VERSION,
            receipt: r.id,
            subject: r.subject,
            subject_key: key.public_key().as_subject_key(),
            at,
            issued_at: at,
            signer: key.public_key(),
        };
        let bytes = w.sign(&key).to_bytes();
        ledger.ingest_withdrawal(&bytes, r.valid_from.saturating_add_secs(5_000)).unwrap();
    }
    println!(
        "ledger build: {} receipts (unverified bulk) in {:.1} s; {WITHDRAWN} signed withdrawals (sign + verify + insert) in {:.1} s",
        SUBJECTS,
        receipts.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
}

fn bench(c: &mut Criterion) {
    let path = std::env::temp_dir().join("confiance-ledger-bench-v2.sqlite");
    let fresh = !path.exists();
    if fresh {
        build(&path);
    }
    let ledger = cold_load("SQLite", || {
        Ledger::open(rusqlite::Connection::open(&path).unwrap(), catalogue()).unwrap()
    });
    postgres_cold_load();

    let queries: Vec<(RecipientId, MetricId, PurposeId, SubjectId, Timestamp)> = (0..4096u32)
        .map(|q| {
            let i = u32::try_from(mix(u64::from(q) + 77) % u64::from(SUBJECTS)).unwrap();
            let r = receipt(i, [0; 32]);
            let m = r.metrics[usize::try_from(q % PER_RECEIPT).unwrap()].clone();
            let at = Timestamp::from_secs(mix(u64::from(q)) % HORIZON);
            (r.recipient, m, r.purpose, r.subject, at)
        })
        .collect();
    let allowed =
        queries.iter().filter(|(r, m, p, s, at)| ledger.check_at(r, m, p, s, *at, None).allowed()).count();
    println!("ledger check: {allowed} of {} sampled queries allowed", queries.len());

    let mut g = c.benchmark_group("ledger");
    g.sample_size(50).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    let mut k = 0usize;
    g.bench_function("check", |b| {
        b.iter(|| {
            k = (k + 1) % queries.len();
            let (r, m, p, s, at) = &queries[k];
            black_box(ledger.check_at(r, m, p, s, *at, None))
        });
    });
    g.bench_function("check_as_known_at", |b| {
        b.iter(|| {
            k = (k + 1) % queries.len();
            let (r, m, p, s, at) = &queries[k];
            black_box(ledger.check_at(r, m, p, s, *at, Some(*at)))
        });
    });
    g.bench_function("subject_access", |b| {
        b.iter(|| {
            k = (k + 1) % queries.len();
            let (_, _, _, s, at) = &queries[k];
            black_box(ledger.subject_access(s, *at, None))
        });
    });
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("recipient_view", |b| {
        b.iter(|| {
            k = (k + 1) % queries.len();
            let (r, _, _, _, at) = &queries[k];
            black_box(ledger.recipient_view(r, *at, None))
        });
    });
    g.bench_function("who_sees_metric", |b| {
        b.iter(|| {
            k = (k + 1) % queries.len();
            let (_, m, _, _, at) = &queries[k];
            black_box(ledger.who_sees(&Target::Metric(m.clone()), *at, None))
        });
    });
    g.bench_function("who_sees_category_10_metrics", |b| {
        b.iter(|| {
            k = (k + 1) % queries.len();
            let (_, _, _, _, at) = &queries[k];
            black_box(ledger.who_sees(&Target::Category(CategoryId::new("c1").unwrap()), *at, None))
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

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
//! measured beside SQLite's; then `Ledger::open_postgres_lazy` (which loads no subject)
//! is timed, and `check` / `subject_access` latencies (p50 / p99 over 2 000 distinct
//! subjects, each call timed on its own) are printed for the in-memory index and for the
//! lazy ledger: a subject's first question (its facts read through PostgreSQL's indexes)
//! and the next ones (cached). `LEDGER_BENCH_RECEIPTS=N` (default 10^6) sizes the ledger:
//! N receipts of 10 metrics, its own SQLite file and PostgreSQL database.
//!
//! `LEDGER_BENCH_SERVE=DIR` builds (or reuses) the PostgreSQL ledger only, writes its
//! catalogue to `DIR/catalogue.toml` and stops: what `confiance serve` start times are
//! measured on (docs/benchmarks.md, issue #18).
//!
//! `LEDGER_BENCH_SCAN=lazy|whole` times who sees a metric and what is overdue on that
//! PostgreSQL ledger, page by page or after loading it whole, with each process's peak
//! resident memory (docs/benchmarks.md, issue #18); `report-lazy|report-whole` the
//! auditor report on an aggregator over it (`report-prepare` starts one first).
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

/// Receipts (one subject each): `LEDGER_BENCH_RECEIPTS`, 10^6 by default (10^7 grants).
fn subjects() -> u32 {
    static N: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("LEDGER_BENCH_RECEIPTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
    })
}

/// A name for this size's database: the default size keeps the historical name.
fn sized(name: &str) -> String {
    if subjects() == 1_000_000 { name.to_owned() } else { format!("{name}_{}", subjects()) }
}
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
    assert_eq!(stats.grants, u64::from(subjects() * PER_RECEIPT));
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
/// Returns the database's URL.
fn postgres_cold_load() -> Option<String> {
    let url = std::env::var("LEDGER_BENCH_POSTGRES").ok()?;
    let (server, _) = url.rsplit_once('/').expect("LEDGER_BENCH_POSTGRES=postgres://user@host:port/DB");
    let name = sized("confiance_ledger_bench");
    let db = format!("{server}/{name}");
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let complete = postgres::Client::connect(&db, postgres::NoTls)
        .ok()
        .and_then(|mut c| c.query_one("SELECT count(*) FROM ledger_withdrawal", &[]).ok())
        .is_some_and(|r| r.get::<_, i64>(0) == i64::from(WITHDRAWN));
    if !complete {
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        println!("building the ledger on PostgreSQL…");
        fill(&mut Ledger::open_postgres(&db, catalogue()).unwrap());
    }
    drop(cold_load("PostgreSQL", || Ledger::open_postgres(&db, catalogue()).unwrap()));
    let before = resident_bytes();
    let start = Instant::now();
    let lazy = Ledger::open_postgres_lazy(&db, catalogue()).unwrap();
    println!(
        "ledger lazy open (PostgreSQL): {:.1} ms, {} receipts in the index, resident memory +{} KiB",
        start.elapsed().as_secs_f64() * 1e3,
        lazy.stats().receipts,
        resident_bytes().saturating_sub(before) >> 10
    );
    Some(db)
}

/// p50 and p99 of `f` over `n` calls, each timed on its own.
fn percentiles(n: usize, mut f: impl FnMut(usize)) -> (Duration, Duration) {
    let mut v: Vec<Duration> = (0..n)
        .map(|i| {
            let start = Instant::now();
            f(i);
            start.elapsed()
        })
        .collect();
    v.sort_unstable();
    (v[n / 2], v[n * 99 / 100])
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `check` and `subject_access` latencies, p50 / p99, on the in-memory index (loaded whole
/// from SQLite) and on a lazily loaded PostgreSQL ledger: a subject's first question (its
/// facts read through the indexes, then the query) and the next ones (cached).
#[allow(clippy::type_complexity, reason = "one tuple per sampled query")]
fn latencies(
    memory: &Ledger,
    db: &str,
    queries: &[(RecipientId, MetricId, PurposeId, SubjectId, Timestamp)],
) {
    let n = queries.len();
    let (c50, c99) = percentiles(n, |i| {
        let (r, m, p, s, at) = &queries[i];
        black_box(memory.check_at(r, m, p, s, *at, None));
    });
    let (a50, a99) = percentiles(n, |i| {
        let (_, _, _, s, at) = &queries[i];
        black_box(memory.subject_access(s, *at, None));
    });
    println!(
        "in memory: check p50 {:.2} µs p99 {:.2} µs; subject_access p50 {:.2} µs p99 {:.2} µs",
        us(c50),
        us(c99),
        us(a50),
        us(a99)
    );
    for what in ["check", "subject_access"] {
        let mut lazy = Ledger::open_postgres_lazy(db, catalogue()).unwrap();
        let ask = |l: &mut Ledger, i: usize| {
            let (r, m, p, s, at) = &queries[i];
            if what == "check" {
                black_box(l.check_at(r, m, p, s, *at, None));
            } else {
                black_box(l.subject_access(s, *at, None));
            }
        };
        let (cold50, cold99) = percentiles(n, |i| {
            lazy.load_subject(&queries[i].3).unwrap();
            ask(&mut lazy, i);
        });
        let (warm50, warm99) = percentiles(n, |i| {
            lazy.load_subject(&queries[i].3).unwrap();
            ask(&mut lazy, i);
        });
        let (ref50, ref99) = percentiles(n, |i| {
            lazy.refresh().unwrap();
            lazy.load_subject(&queries[i].3).unwrap();
            ask(&mut lazy, i);
        });
        println!(
            "PostgreSQL lazy {what}: first question of a subject (load + query) p50 {:.1} µs p99 {:.1} µs; cached p50 {:.2} µs p99 {:.2} µs; cached after a refresh (one head query) p50 {:.1} µs p99 {:.1} µs; {} subjects loaded",
            us(cold50),
            us(cold99),
            us(warm50),
            us(warm99),
            us(ref50),
            us(ref99),
            lazy.loaded_subjects().unwrap_or(0)
        );
    }
}

/// Writes the bench's receipts and withdrawals into `ledger`.
fn fill(ledger: &mut Ledger) {
    let start = Instant::now();
    for chunk in 0..subjects().div_ceil(100_000) {
        let batch = (chunk * 100_000..((chunk + 1) * 100_000).min(subjects())).map(|i| {
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
        subjects(),
        receipts.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
}

/// Pseudonymous records the scan bench adds (once) to the PostgreSQL ledger: one on each
/// of `SCAN_RECORDS` subjects, held a day, every other one purged before its deadline.
const SCAN_RECORDS: u32 = 10_000;

/// Peak and current resident memory (`VmHWM`, `VmRSS`), bytes.
fn peak_and_resident() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmHWM:"), kb("VmRSS:"))
}

/// `LEDGER_BENCH_SCAN=lazy|whole` (with `LEDGER_BENCH_POSTGRES`, on the database a run
/// with `LEDGER_BENCH_SERVE` built): who sees a metric and what is overdue, on a lazily
/// loaded ledger read page by page (`lazy`: `scan_who_sees`, `scan_overdue`, pages of
/// 50 000 subjects) or after `load_everything` (`whole`), each in a process of its own so
/// that its peak resident memory is its own. Records are added first if the database has
/// none (`SCAN_RECORDS`).
fn scan_bench(mode: &str) {
    let url = std::env::var("LEDGER_BENCH_POSTGRES").expect("LEDGER_BENCH_SCAN needs LEDGER_BENCH_POSTGRES");
    let (server, _) = url.rsplit_once('/').unwrap();
    let db = format!("{server}/{}", sized("confiance_ledger_bench"));
    let mut client = postgres::Client::connect(&db, postgres::NoTls).unwrap();
    let records: i64 = client.query_one("SELECT count(*) FROM ledger_record", &[]).unwrap().get(0);
    if records == 0 {
        let mut l = Ledger::open_postgres_lazy(&db, catalogue()).unwrap();
        for batch in 0..SCAN_RECORDS / 1_000 {
            l.atomically(|l| {
                for j in batch * 1_000..(batch + 1) * 1_000 {
                    let r = receipt((j * 97) % subjects(), [0; 32]);
                    let collected = r.valid_from.saturating_add_secs(10);
                    let mut id = [0u8; 16];
                    id[..4].copy_from_slice(&j.to_le_bytes());
                    let note = confiance_aggregator::ledger::RecordNote {
                        record: id,
                        subject: r.subject,
                        recipient: r.recipient.clone(),
                        metric: r.metrics[0].clone(),
                        receipt: r.id,
                        collected_at: collected,
                        deadline: collected.saturating_add_secs(86_400),
                    };
                    l.note_record(&note, collected)?;
                    if j % 2 == 1 {
                        l.note_record_purged(&id, collected.saturating_add_secs(3_600), collected)?;
                    }
                }
                Ok::<(), confiance_aggregator::ledger::LedgerError>(())
            })
            .unwrap();
        }
        println!("scan bench: {SCAN_RECORDS} records noted, every other one purged in time");
    }
    client.batch_execute("ANALYZE").unwrap();
    let mut l = Ledger::open_postgres_lazy(&db, catalogue()).unwrap();
    if let Some(mode) = mode.strip_prefix("report-") {
        report_bench(mode, &db, l);
        return;
    }
    let (peak0, _) = peak_and_resident();
    let mut load = Duration::ZERO;
    if mode == "whole" {
        let start = Instant::now();
        l.load_everything().unwrap();
        load = start.elapsed();
    }
    let target = Target::Metric(metric(7));
    let at = Timestamp::from_secs(HORIZON / 2);
    let start = Instant::now();
    let seen = l.scan_who_sees(&target, at, None).unwrap();
    let who = start.elapsed();
    let start = Instant::now();
    assert_eq!(l.scan_who_sees(&target, at, None).unwrap(), seen);
    let again = start.elapsed();
    let now = Timestamp::from_secs(HORIZON + 3 * 86_400);
    let start = Instant::now();
    let overdue = l.scan_overdue(now, None).unwrap();
    let over = start.elapsed();
    let (peak, rss) = peak_and_resident();
    println!(
        "scan bench ({mode}, {} receipts): load_everything {:.2} s; who_sees(m07) {:.2} s ({} pairs, {} subjects), again {:.3} ms ({} from the memo); overdue {:.3} s ({} records); peak resident {} MiB (+{} MiB over the open), resident {} MiB, {} subjects loaded",
        subjects(),
        load.as_secs_f64(),
        who.as_secs_f64(),
        seen.entries.len(),
        seen.entries.iter().map(|e| e.subjects).sum::<u64>(),
        again.as_secs_f64() * 1e3,
        l.scan_memo_hits(),
        over.as_secs_f64(),
        overdue.records.len(),
        peak >> 20,
        peak.saturating_sub(peak0) >> 20,
        rss >> 20,
        l.loaded_subjects().map_or_else(|| "all".to_owned(), |n| n.to_string()),
    );
}

/// `LEDGER_BENCH_SCAN=report-prepare|report-lazy|report-whole`: the auditor report of
/// an aggregator on that database (store and ledger on PostgreSQL), gathered page by page
/// (`lazy`) or after `load_everything` (`whole`); `prepare` only starts the aggregator
/// once (its first start logs the ledger's consent events).
fn report_bench(mode: &str, db: &str, ledger: Ledger) {
    use confiance_aggregator::report::{GatherOptions, ReportData};
    use confiance_aggregator::service::{Aggregator, AggregatorConfig};
    let start = Instant::now();
    let store = Box::new(confiance_aggregator::store::PgStore::connect(db).unwrap());
    let keys = confiance_aggregator::keys::KeyStore::new(86_400);
    let mut agg =
        Aggregator::with_store(store, ledger, catalogue(), keys, AggregatorConfig::default()).unwrap();
    println!("report bench: aggregator started in {:.1} s", start.elapsed().as_secs_f64());
    if mode == "prepare" {
        return;
    }
    let (peak0, _) = peak_and_resident();
    let at = Timestamp::from_secs(HORIZON + 3 * 86_400);
    let opts = GatherOptions { at, generated_at: at, ..GatherOptions::default() };
    let start = Instant::now();
    let data = if mode == "whole" {
        agg.load_everything().unwrap();
        ReportData::gather(&agg, &opts).unwrap()
    } else {
        ReportData::gather_paged(&mut agg, &opts).unwrap()
    };
    let took = start.elapsed();
    let (peak, rss) = peak_and_resident();
    println!(
        "report bench ({mode}, {} receipts): gathered in {:.2} s ({} access rows, {} retention rows); peak resident {} MiB (+{} MiB over the start), resident {} MiB",
        subjects(),
        took.as_secs_f64(),
        data.access.len(),
        data.retention.len(),
        peak >> 20,
        peak.saturating_sub(peak0) >> 20,
        rss >> 20
    );
}

fn bench(c: &mut Criterion) {
    if let Ok(mode) = std::env::var("LEDGER_BENCH_SCAN") {
        scan_bench(&mode);
        return;
    }
    // `LEDGER_BENCH_SERVE=DIR` (with `LEDGER_BENCH_POSTGRES`): only the PostgreSQL ledger,
    // built if missing, and its catalogue written to DIR/catalogue.toml, for timing
    // `confiance serve --db postgres://…` starts on it (docs/benchmarks.md, #18).
    if let Ok(dir) = std::env::var("LEDGER_BENCH_SERVE") {
        let db = postgres_cold_load().expect("LEDGER_BENCH_SERVE needs LEDGER_BENCH_POSTGRES");
        let toml = catalogue().to_toml_string().unwrap();
        std::fs::write(std::path::Path::new(&dir).join("catalogue.toml"), toml).unwrap();
        println!("serve bench database: {db}");
        return;
    }
    let path = std::env::temp_dir().join(format!("{}.sqlite", sized("confiance-ledger-bench-v2")));
    let fresh = !path.exists();
    if fresh {
        build(&path);
    }
    let ledger = cold_load("SQLite", || {
        Ledger::open(rusqlite::Connection::open(&path).unwrap(), catalogue()).unwrap()
    });
    let pg = postgres_cold_load();

    let queries: Vec<(RecipientId, MetricId, PurposeId, SubjectId, Timestamp)> = (0..4096u32)
        .map(|q| {
            let i = u32::try_from(mix(u64::from(q) + 77) % u64::from(subjects())).unwrap();
            let r = receipt(i, [0; 32]);
            let m = r.metrics[usize::try_from(q % PER_RECEIPT).unwrap()].clone();
            let at = Timestamp::from_secs(mix(u64::from(q)) % HORIZON);
            (r.recipient, m, r.purpose, r.subject, at)
        })
        .collect();
    let allowed =
        queries.iter().filter(|(r, m, p, s, at)| ledger.check_at(r, m, p, s, *at, None).allowed()).count();
    println!("ledger check: {allowed} of {} sampled queries allowed", queries.len());
    if let Some(db) = &pg {
        // Distinct subjects, so that each first question is a cold one.
        let mut seen = std::collections::HashSet::new();
        let distinct: Vec<_> = queries.iter().filter(|q| seen.insert(q.3)).take(2_000).cloned().collect();
        latencies(&ledger, db, &distinct);
    }

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

//! Audit log benchmarks: append throughput (in memory and SQLite, in batches) and proof
//! size and time for n = 10^3 … 10^7 events (log n growth).
//!
//! `cargo bench -p confiance-aggregator --bench audit`; figures in docs/benchmarks.md.
#![allow(clippy::unwrap_used, missing_docs, reason = "a benchmark: failing loudly is the point")]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use confiance::Timestamp;
use confiance_aggregator::audit::merkle::{verify_consistency, verify_inclusion};
use confiance_aggregator::audit::{AuditEvent, AuditLog, MemoryStore, SqliteStore};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rusqlite::Connection;

fn event(i: u64) -> AuditEvent {
    let mut envelope_digest = [0u8; 32];
    envelope_digest[..8].copy_from_slice(&i.to_le_bytes());
    AuditEvent::IngestBatch {
        envelope_digest,
        reports: (i % 500) as u32,
        partitions: (i % 7) as u32,
        at: Timestamp::from_secs(1_700_000_000 + i / 100),
    }
}

const BATCH: u64 = 1_000;
const PER_ITER: u64 = 10_000;

fn append(c: &mut Criterion) {
    let events: Vec<AuditEvent> = (0..PER_ITER).map(event).collect();
    let mut g = c.benchmark_group("audit_append");
    g.throughput(Throughput::Elements(PER_ITER));

    g.bench_function("memory/batch_1000", |b| {
        b.iter_batched(
            AuditLog::in_memory,
            |mut log| {
                for chunk in events.chunks(BATCH as usize) {
                    log.append_batch(chunk).unwrap();
                }
                log
            },
            BatchSize::SmallInput,
        );
    });
    g.bench_function("memory/one_by_one", |b| {
        b.iter_batched(
            AuditLog::in_memory,
            |mut log| {
                for e in &events {
                    log.append(e).unwrap();
                }
                log
            },
            BatchSize::SmallInput,
        );
    });

    // SQLite in memory: the cost of the SQL work alone.
    let conn = Connection::open_in_memory().unwrap();
    let mut log = AuditLog::open_sqlite(&conn).unwrap();
    g.bench_function("sqlite_memory/batch_1000", |b| {
        b.iter(|| {
            for chunk in events.chunks(BATCH as usize) {
                log.append_batch(chunk).unwrap();
            }
        });
    });
    drop(log);
    drop(conn);

    // The per-envelope pattern of docs/design.md#store: in the ingest's own transaction, attach the
    // store, open the log (frontier: popcount(n) reads), append one event, commit.
    // In-memory SQLite, so this is the audit log's overhead without the fsync.
    let mut conn = Connection::open_in_memory().unwrap();
    let mut seed = AuditLog::open_sqlite(&conn).unwrap();
    for chunk in (0..100_000).map(event).collect::<Vec<_>>().chunks(BATCH as usize) {
        seed.append_batch(chunk).unwrap();
    }
    drop(seed);
    let one = event(7);
    g.throughput(Throughput::Elements(1));
    g.bench_function("sqlite_memory/one_per_transaction", |b| {
        b.iter(|| {
            let tx = conn.transaction().unwrap();
            let mut log = AuditLog::open(SqliteStore::attach(&*tx)).unwrap();
            log.append(&one).unwrap();
            drop(log);
            tx.commit().unwrap();
        });
    });
    drop(conn);
    g.throughput(Throughput::Elements(PER_ITER));

    // SQLite file, WAL, synchronous=FULL as the aggregator runs it: one transaction (one
    // fsync) per batch of 1,000 events; the file keeps growing across iterations.
    let path: PathBuf =
        std::env::temp_dir().join(format!("confiance-audit-bench-{}.sqlite", std::process::id()));
    let file = Connection::open(&path).unwrap();
    file.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;").unwrap();
    let mut log = AuditLog::open_sqlite(&file).unwrap();
    g.bench_function("sqlite_file_wal_full/batch_1000", |b| {
        b.iter(|| {
            for chunk in events.chunks(BATCH as usize) {
                log.append_batch(chunk).unwrap();
            }
        });
    });
    eprintln!("sqlite file log ended with {} events", log.size());
    drop(log);
    drop(file);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    g.finish();
}

fn build(n: u64) -> AuditLog<MemoryStore> {
    let mut store = MemoryStore::default();
    store.reserve(n as usize);
    let mut log = AuditLog::open(store).unwrap();
    let mut chunk = Vec::with_capacity(100_000);
    let mut i = 0;
    while i < n {
        chunk.clear();
        chunk.extend((i..n.min(i + 100_000)).map(event));
        log.append_batch(&chunk).unwrap();
        i += chunk.len() as u64;
    }
    log
}

/// Spread-out leaf indices, so a proof's cost is averaged over positions.
fn index(k: u64, n: u64) -> u64 {
    k.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n
}

fn proofs(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit_proof");
    let mut table = Vec::new();
    for exp in 3..=7u32 {
        let n = 10u64.pow(exp);
        let t0 = Instant::now();
        let log = build(n);
        let built = t0.elapsed();
        let root = log.root();
        // A past size that is not a power of two, for consistency proofs.
        let old = n - n / 3 - 1;
        let old_root = log.root_at(old).unwrap();

        let samples: Vec<_> = (0..256).map(|k| log.inclusion_proof(index(k, n), n).unwrap()).collect();
        let mean_incl = samples.iter().map(|p| p.path.len()).sum::<usize>() as f64 / samples.len() as f64;
        let max_incl = samples.iter().map(|p| p.path.len()).max().unwrap_or(0);
        let cons = log.consistency_proof(old, n).unwrap();
        table.push((n, built, mean_incl, max_incl, cons.path.len()));

        let mut k = 0u64;
        g.bench_with_input(BenchmarkId::new("inclusion_generate", n), &n, |b, &n| {
            b.iter(|| {
                k += 1;
                black_box(log.inclusion_proof(index(k, n), n).unwrap())
            });
        });
        let leaves: Vec<_> =
            (0..256u64).map(|k| log.event(index(k, n)).unwrap().leaf_hash().unwrap()).collect();
        let mut k = 0usize;
        g.bench_with_input(BenchmarkId::new("inclusion_verify", n), &n, |b, &n| {
            b.iter(|| {
                k = (k + 1) % samples.len();
                let p = &samples[k];
                verify_inclusion(&leaves[k], p.leaf_index, n, &p.path, &root).unwrap();
            });
        });
        g.bench_with_input(BenchmarkId::new("consistency_generate", n), &n, |b, &n| {
            b.iter(|| black_box(log.consistency_proof(old, n).unwrap()));
        });
        g.bench_with_input(BenchmarkId::new("consistency_verify", n), &n, |b, &n| {
            b.iter(|| verify_consistency(old, n, &cons.path, &old_root, &root).unwrap());
        });
        drop(log);
    }
    g.finish();
    eprintln!(
        "\n| n | build (s) | inclusion path: mean hashes (bytes) | max | consistency path hashes (bytes) |"
    );
    eprintln!("|---|---|---|---|---|");
    for (n, built, mean, max, cons) in table {
        eprintln!(
            "| {n} | {:.2} | {mean:.1} ({:.0} B) | {max} | {cons} ({} B) |",
            built.as_secs_f64(),
            mean * 32.0,
            cons * 32
        );
    }
}

/// Proof generation straight from SQLite (in memory: the B-tree reads, not the disk).
fn sqlite_proofs(c: &mut Criterion) {
    let mut g = c.benchmark_group("audit_proof_sqlite");
    for exp in [4u32, 6] {
        let n = 10u64.pow(exp);
        let conn = Connection::open_in_memory().unwrap();
        let mut log = AuditLog::open_sqlite(&conn).unwrap();
        let events: Vec<AuditEvent> = (0..n).map(event).collect();
        for chunk in events.chunks(10_000) {
            log.append_batch(chunk).unwrap();
        }
        let old = n - n / 3 - 1;
        let mut k = 0u64;
        g.bench_with_input(BenchmarkId::new("inclusion_generate", n), &n, |b, &n| {
            b.iter(|| {
                k += 1;
                black_box(log.inclusion_proof(index(k, n), n).unwrap())
            });
        });
        g.bench_with_input(BenchmarkId::new("consistency_generate", n), &n, |b, &n| {
            b.iter(|| black_box(log.consistency_proof(old, n).unwrap()));
        });
        g.bench_with_input(BenchmarkId::new("reopen", n), &n, |b, _| {
            b.iter(|| black_box(AuditLog::open(SqliteStore::attach(&conn)).unwrap().root()));
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .without_plots()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1200));
    targets = append, proofs, sqlite_proofs
}
criterion_main!(benches);

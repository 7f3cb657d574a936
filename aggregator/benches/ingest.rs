//! Aggregator ingest throughput and memory (docs/design.md#ingest), in one run:
//!
//! - (a) one-report envelopes per second against 1 / (one X25519 of RFC 7748, as
//!   x25519-dalek computes it: curve25519-dalek's Montgomery ladder, `mul_clamped`)
//!   measured in the same run (target ratio ≥ 0.85, issue 20);
//! - (b) reports per second in envelopes of 100 reports, durable commits every 10,000
//!   reports to a file-backed store with `synchronous=FULL` (target ≥ 300,000/s);
//! - (c) peak resident memory (VmHWM, reset through `/proc/self/clear_refs`) ingesting
//!   10^5 and 10^7 anonymous reports (target: within 10%), and the time to reopen the
//!   database afterwards (partitions loaded, replay filter rebuilt from the `seen_run` table).
//!
//! Each criterion case also runs through `Aggregator::stage_many` (`*_stage_many`: envelopes
//! opened on every core, applied in order).
//!
//! `cargo bench -p confiance-aggregator --bench ingest` runs the criterion benches, then
//! prints the table. `CONFIANCE_BENCH_BIG=<n>` changes the large memory run's size
//! (default 10^7, minutes); `CONFIANCE_BENCH_BIG=0` skips it (the 10^5 run stays).
//!
//! `CONFIANCE_BENCH_PROFILE=<n>` runs nothing of the above: it seals `n` one-report
//! envelopes, then calls `ingest_one_report_envelopes` (stage each, commit every 10,000
//! and at the end) and `x25519_multiplications` (`n` multiplications), each a function of
//! its own, for a profiler. Instructions per envelope against instructions per
//! multiplication is the load-independent form of ratio (a), e.g.
//! `valgrind --tool=callgrind --toggle-collect='*ingest_one_report_envelopes*'
//! --toggle-collect='*x25519_multiplications*' target/release/deps/ingest-… ` then
//! `callgrind_annotate --inclusive=yes`.
#![allow(missing_docs, reason = "criterion_group generates undocumented items")]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{ConsentRequest, ConsentState, DeviceKey, Scope};
use confiance::envelope::{self, AeadId, HeaderFields, KeyConfig, ReportId};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::MetricId;
use confiance::pseudonym::DeviceSecret;
use confiance::recorder::{MemoryStorage, Recorder, RecorderParts, Value};
use confiance::report::Report;
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::service::{Aggregator, AggregatorConfig};
use criterion::{Criterion, Throughput};
use curve25519_dalek::{MontgomeryPoint, Scalar};

const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;
const COMMIT_EVERY: u64 = 10_000;

fn catalogue() -> Catalogue {
    Catalogue::from_toml_str(include_str!("../../examples/catalogue.toml")).unwrap()
}

fn now() -> Timestamp {
    Timestamp::from_secs(T0)
}

fn keys() -> (KeyStore, KeyConfig) {
    let mut rng = SeededRng::seed_from_u64(0xBE7C);
    let mut keys = KeyStore::new(DAY);
    let config = keys
        .generate(AeadId::ChaCha20Poly1305, Timestamp::EPOCH, Timestamp::from_secs(T0 + 100 * DAY), &mut rng)
        .unwrap();
    (keys, config)
}

/// Makes sealed envelopes of anonymous reports: templates recorded by real devices, each
/// re-used under fresh report ids.
struct Source {
    config: KeyConfig,
    templates: Vec<Report>,
    digest: confiance::catalogue::CatalogueDigest,
    rng: SeededRng,
    next: usize,
}

impl Source {
    fn new(config: KeyConfig, keys: &KeyStore) -> Self {
        let mut templates = Vec::new();
        for dev in 0..8u64 {
            let mut rng = SeededRng::seed_from_u64(900 + dev);
            let parts = RecorderParts {
                catalogue: catalogue(),
                consent: ConsentState::new(DeviceKey::generate(&mut rng)),
                pseudonyms: DeviceSecret::generate(&mut rng),
                controller: "calora".parse().unwrap(),
                key_configs: vec![config],
                rng,
            };
            let mut d = Recorder::new(parts, MemoryStorage::default());
            let t = Timestamp::from_secs(T0 - 10 * DAY);
            d.give_consent(
                ConsentRequest::new(
                    "calora".parse().unwrap(),
                    "product-improvement".parse().unwrap(),
                    Scope::metrics(["thermostat.mode".parse::<MetricId>().unwrap()]),
                    "P90D".parse().unwrap(),
                ),
                t,
            )
            .unwrap();
            let _ = d.record(
                &"thermostat.mode".parse().unwrap(),
                &"product-improvement".parse().unwrap(),
                Value::Category((dev % 6) as u32),
                now(),
            );
            for frame in d.flush(now()) {
                let opened = keys.open(&frame, now(), &catalogue().digest()).unwrap();
                templates.extend(
                    envelope::decode_body::<Report>(&opened.plaintext, &Default::default())
                        .map(|(_, r)| r)
                        .unwrap(),
                );
            }
        }
        assert!(!templates.is_empty());
        Self { config, templates, digest: catalogue().digest(), rng: SeededRng::seed_from_u64(3), next: 0 }
    }

    fn envelope(&mut self, reports: usize) -> Vec<u8> {
        let batch: Vec<Report> = (0..reports)
            .map(|_| {
                self.next = (self.next + 1) % self.templates.len();
                Report { id: ReportId::random(&mut self.rng), ..self.templates[self.next].clone() }
            })
            .collect();
        let plain = envelope::encode_body(&[], &batch).unwrap();
        let fields = HeaderFields { catalogue_digest: self.digest, time_bucket: now().truncate(DAY) };
        envelope::seal(&self.config, &fields, &plain, &mut self.rng).unwrap()
    }
}

/// A fresh file-backed aggregator in its own temporary directory.
struct Sink {
    agg: Aggregator,
    dir: PathBuf,
}

impl Sink {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("confiance-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let agg =
            Aggregator::open(dir.join("agg.sqlite"), catalogue(), keys().0, AggregatorConfig::default())
                .unwrap();
        Self { agg, dir }
    }

    /// Stages every frame, committing whenever 10,000 reports are staged and at the end;
    /// returns the reports acknowledged.
    fn ingest(&mut self, frames: &[Vec<u8>]) -> u64 {
        let mut acked = 0;
        for f in frames {
            self.agg.stage(f, now()).unwrap();
            if self.agg.staged_reports() >= COMMIT_EVERY {
                acked += self.agg.commit(now()).unwrap().iter().map(|a| u64::from(a.reports)).sum::<u64>();
            }
        }
        acked + self.agg.commit(now()).unwrap().iter().map(|a| u64::from(a.reports)).sum::<u64>()
    }

    /// As [`Self::ingest`], staging through `stage_many` (HPKE opening on every core) in
    /// slices of 10,000 reports, each followed by a commit.
    fn ingest_many(&mut self, frames: &[Vec<u8>], reports_per_frame: usize) -> u64 {
        let per_commit = (COMMIT_EVERY as usize).div_ceil(reports_per_frame);
        let mut acked = 0;
        for chunk in frames.chunks(per_commit) {
            let refs: Vec<(&[u8], Timestamp)> = chunk.iter().map(|f| (f.as_slice(), now())).collect();
            assert!(self.agg.stage_many(&refs).iter().all(Result::is_ok));
            acked += self.agg.commit(now()).unwrap().iter().map(|a| u64::from(a.reports)).sum::<u64>();
        }
        acked
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The reference `t_X25519`: RFC 7748's `X25519(k, u)` as x25519-dalek computes it,
/// curve25519-dalek's Montgomery ladder with a clamped scalar (`mul_clamped`). (Until
/// 2026-12-07 this was `point * Scalar`, the ladder over all 256 bits of a reduced
/// scalar: 5 % more instructions, about 1 % more time.)
fn x25519_inputs() -> (MontgomeryPoint, [u8; 32]) {
    let point = curve25519_dalek::constants::X25519_BASEPOINT * Scalar::from_bytes_mod_order([7; 32]);
    (point, [9; 32])
}

fn criterion_benches(c: &mut Criterion, source: &mut Source) {
    let mut g = c.benchmark_group("ingest");
    let (point, scalar) = x25519_inputs();
    g.bench_function("x25519_variable_base", |b| {
        b.iter(|| black_box(black_box(point).mul_clamped(black_box(scalar))))
    });
    for reports in [1usize, 100] {
        let mut sink = Sink::new(&format!("criterion-{reports}"));
        g.throughput(Throughput::Elements(reports as u64));
        g.bench_function(format!("envelopes_of_{reports}"), |b| {
            b.iter_custom(|iters| {
                let frames: Vec<Vec<u8>> = (0..iters).map(|_| source.envelope(reports)).collect();
                let start = Instant::now();
                black_box(sink.ingest(&frames));
                start.elapsed()
            });
        });
        let mut sink = Sink::new(&format!("criterion-many-{reports}"));
        g.bench_function(format!("envelopes_of_{reports}_stage_many"), |b| {
            b.iter_custom(|iters| {
                let frames: Vec<Vec<u8>> = (0..iters).map(|_| source.envelope(reports)).collect();
                let start = Instant::now();
                black_box(sink.ingest_many(&frames, reports));
                start.elapsed()
            });
        });
    }
    g.finish();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (a) and (b) by our own interleaved rounds, so the ratio compares like with like
/// under the same machine load: median µs per X25519 multiplication, per one-report
/// envelope, per report in 100-report envelopes, per one-report envelope through
/// `stage_many`.
fn throughput_rounds(source: &mut Source) -> (f64, f64, f64, f64) {
    let (point, scalar) = x25519_inputs();
    let (mut x, mut one, mut hundred, mut many) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut sink1 = Sink::new("round-1");
    let mut sink100 = Sink::new("round-100");
    let mut sink_many = Sink::new("round-many");
    for _ in 0..7 {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < Duration::from_millis(100) {
            black_box(black_box(point).mul_clamped(black_box(scalar)));
            n += 1;
        }
        x.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(n));

        let frames: Vec<Vec<u8>> = (0..COMMIT_EVERY).map(|_| source.envelope(1)).collect();
        let start = Instant::now();
        let got = sink1.ingest(&frames);
        one.push(start.elapsed().as_secs_f64() * 1e6 / got as f64);

        let frames: Vec<Vec<u8>> = (0..1_000).map(|_| source.envelope(100)).collect();
        let start = Instant::now();
        let got = sink100.ingest(&frames);
        hundred.push(start.elapsed().as_secs_f64() * 1e6 / got as f64);

        let frames: Vec<Vec<u8>> = (0..COMMIT_EVERY).map(|_| source.envelope(1)).collect();
        let start = Instant::now();
        let got = sink_many.ingest_many(&frames, 1);
        many.push(start.elapsed().as_secs_f64() * 1e6 / got as f64);
    }
    (median(&mut x), median(&mut one), median(&mut hundred), median(&mut many))
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field).map(|r| r.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

struct Memory {
    reports: u64,
    baseline_kb: u64,
    peak_kb: u64,
    seen_ids: usize,
    secs: f64,
    /// Reopening the database: loading partitions and rebuilding the replay filter.
    reopen_secs: f64,
}

/// (c) Peak RSS while ingesting `n` anonymous reports (100-report envelopes sealed on the
/// fly in chunks of 10,000 reports, so only one chunk of frames is alive at a time).
fn memory_run(source: &mut Source, n: u64) -> Memory {
    let mut sink = Sink::new(&format!("memory-{n}"));
    let baseline_kb = status_kb("VmRSS:");
    // Linux: writing 5 resets VmHWM to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let frames: Vec<Vec<u8>> = (0..COMMIT_EVERY / 100).map(|_| source.envelope(100)).collect();
        done += sink.ingest(&frames);
    }
    let secs = start.elapsed().as_secs_f64();
    let peak_kb = status_kb("VmHWM:");
    let seen_ids = sink.agg.store().as_sqlite().expect("a SQLite store").connection().query_row(
        "SELECT COALESCE(SUM(LENGTH(ids)), 0) / 16 FROM seen_run",
        [],
        |r| r.get::<_, i64>(0),
    );
    let start = Instant::now();
    sink.agg =
        Aggregator::open(sink.dir.join("agg.sqlite"), catalogue(), keys().0, AggregatorConfig::default())
            .unwrap();
    let reopen_secs = start.elapsed().as_secs_f64();
    Memory {
        reports: done,
        baseline_kb,
        peak_kb,
        seen_ids: seen_ids.unwrap_or(0) as usize,
        secs,
        reopen_secs,
    }
}

/// Stages `frames` (one-report envelopes) into `sink`, committing every 10,000: what
/// ratio (a) measures, as one function for a profiler to count.
#[inline(never)]
fn ingest_one_report_envelopes(sink: &mut Sink, frames: &[Vec<u8>]) -> u64 {
    sink.ingest(frames)
}

/// `n` X25519 variable-base multiplications, as one function for a profiler to count.
#[inline(never)]
fn x25519_multiplications(n: u64) {
    let (point, scalar) = x25519_inputs();
    for _ in 0..n {
        black_box(black_box(point).mul_clamped(black_box(scalar)));
    }
}

/// `CONFIANCE_BENCH_PROFILE=<n>`: see the module documentation.
fn profile_run(source: &mut Source, n: u64) {
    let frames: Vec<Vec<u8>> = (0..n).map(|_| source.envelope(1)).collect();
    let mut sink = Sink::new("profile");
    // Warm: the first commit creates the tables' pages.
    let warm: Vec<Vec<u8>> = (0..100).map(|_| source.envelope(1)).collect();
    assert_eq!(sink.ingest(&warm), 100);
    let got = ingest_one_report_envelopes(&mut sink, &frames);
    assert_eq!(got, n);
    x25519_multiplications(n);
    println!("profiled: {n} one-report envelopes staged and committed, {n} X25519 multiplications");
}

fn main() {
    let (keys, config) = keys();
    let mut source = Source::new(config, &keys);
    if let Some(n) = std::env::var("CONFIANCE_BENCH_PROFILE").ok().and_then(|s| s.parse().ok()) {
        profile_run(&mut source, n);
        return;
    }
    let measure = !std::env::args().any(|a| a == "--test" || a == "--list");
    // Memory first, while the process is fresh: the small run's peak is then its own.
    let memory = measure.then(|| {
        let small = memory_run(&mut source, 100_000);
        let big_n =
            std::env::var("CONFIANCE_BENCH_BIG").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000_000);
        // `CONFIANCE_BENCH_BIG=0`: no large run.
        let big = (big_n > 0).then(|| memory_run(&mut source, big_n));
        (small, big)
    });
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
        .without_plots()
        .configure_from_args();
    criterion_benches(&mut c, &mut source);
    c.final_summary();
    let Some((small, big)) = memory else { return };
    let (x_us, one_us, per_report_us, many_us) = throughput_rounds(&mut source);

    println!(
        "\nAggregator ingest (medians of 7 interleaved rounds; commits every {COMMIT_EVERY} reports, synchronous=FULL)"
    );
    println!("| measure | value | target | ratio |");
    println!("|---|---:|---:|---:|");
    let x_rate = 1e6 / x_us;
    let one_rate = 1e6 / one_us;
    println!("| X25519 variable-base multiplication | {x_us:.1} µs ({x_rate:.0}/s) | | |");
    println!(
        "| (a) one-report envelopes | {one_us:.1} µs ({one_rate:.0}/s) | ≥ 0.85 × {x_rate:.0}/s | {:.2} |",
        one_rate / x_rate
    );
    let many_rate = 1e6 / many_us;
    println!(
        "| (a) one-report envelopes, `stage_many` on {} threads | {many_us:.1} µs ({many_rate:.0}/s) | | {:.2} |",
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        many_rate / x_rate
    );
    let hundred_rate = 1e6 / per_report_us;
    println!(
        "| (b) reports in 100-report envelopes | {per_report_us:.2} µs ({hundred_rate:.0}/s) | ≥ 300000/s | {:.2} |",
        hundred_rate / 300_000.0
    );
    for m in std::iter::once(&small).chain(big.as_ref()) {
        println!(
            "| (c) peak RSS, {} reports | {} kB (baseline {} kB, +{} kB; {} report ids remembered; {:.1} s; reopen {:.2} s) | | |",
            m.reports,
            m.peak_kb,
            m.baseline_kb,
            m.peak_kb.saturating_sub(m.baseline_kb),
            m.seen_ids,
            m.secs,
            m.reopen_secs
        );
    }
    let Some(big) = big else {
        println!("| (c) large run | skipped (`CONFIANCE_BENCH_BIG=0`) | | |");
        return;
    };
    println!(
        "| (c) peak RSS ratio {} / {} reports | {:.2} | ≤ 1.10 | |",
        big.reports,
        small.reports,
        big.peak_kb as f64 / small.peak_kb.max(1) as f64
    );
    let grown = big.peak_kb.saturating_sub(small.peak_kb) as f64 * 1024.0;
    println!(
        "| (c) growth per remembered report id | {:.1} bytes | | |",
        grown / (big.seen_ids.saturating_sub(small.seen_ids)).max(1) as f64
    );
}

//! Crash safety (docs/design.md#store): ingest runs in a child process that is killed with
//! SIGKILL at random moments — while staging, while committing, between commits — and
//! restarted each time; the parent plays the devices and re-sends every envelope it has
//! not seen acknowledged. At the end, every report is counted exactly once: the
//! partitions equal those of one clean ingest of the whole stream, every envelope has
//! exactly one `IngestBatch` audit event, and every report id is remembered once.
//!
//! The child is this test executable itself, re-run with `--exact child_entry` and
//! `CONFIANCE_CRASH_CHILD` set to the working directory.
//!
//! Sizing (2 cores, test profile): 10^5 envelopes of 1 or 2 one-report LDP statistics
//! (≈ 1.25 × 10^5 reports, four days), commits of 100–1000 envelopes, 24 kills; ≈ 65 s.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use confiance::Timestamp;
use confiance::consent::{ConsentRequest, Scope};
use confiance::envelope::{self, AeadId, HeaderFields, KeyConfig, ReportId};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::MetricId;
use confiance::recorder::Value;
use confiance::report::{Payload, Report};
use confiance_aggregator::audit::AuditEvent;
use confiance_aggregator::ingest::IngestError;
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::service::{Aggregator, AggregatorConfig};

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{catalogue, id, recorder};

const T0: u64 = 1_800_000_000;
const DAY: u64 = 86_400;
const ENVELOPES: usize = 100_000;
const KILLS: usize = 24;
const CHILD_ENV: &str = "CONFIANCE_CRASH_CHILD";
const SEED_ENV: &str = "CONFIANCE_CRASH_SEED";

fn now() -> Timestamp {
    Timestamp::from_secs(T0)
}

/// The aggregator's keys, rebuilt identically in every process from a fixed seed.
fn keys() -> (KeyStore, KeyConfig) {
    let mut rng = SeededRng::seed_from_u64(0xC4A5);
    let mut keys = KeyStore::new(DAY);
    let config = keys
        .generate(AeadId::ChaCha20Poly1305, Timestamp::EPOCH, Timestamp::from_secs(T0 + 100 * DAY), &mut rng)
        .unwrap();
    (keys, config)
}

/// SplitMix64: the harness's own seeded choices (kill moments, batch sizes).
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Real devices record statistics on four days; their reports are the templates the
/// stream is made of (each envelope re-uses templates of one day under fresh report ids).
fn templates(config: &KeyConfig, keys: &KeyStore) -> BTreeMap<Timestamp, Vec<Report>> {
    let mut out: BTreeMap<Timestamp, Vec<Report>> = BTreeMap::new();
    for dev in 0..6u64 {
        let mut d = recorder(500 + dev, "calora", vec![*config]);
        let t = Timestamp::from_secs(T0 - 10 * DAY);
        d.give_consent(
            ConsentRequest::new(
                id("calora"),
                id("product-improvement"),
                Scope::metrics([id::<MetricId>("thermostat.mode"), id("thermostat.setpoint")]),
                "P90D".parse().unwrap(),
            ),
            t,
        )
        .unwrap();
        for day in 0..4u64 {
            let at = Timestamp::from_secs(T0 - day * DAY);
            let pi = id("product-improvement");
            let _ = d.record(&id("thermostat.mode"), &pi, Value::Category(((dev + day) % 6) as u32), at);
            let _ = d.record(&id("thermostat.setpoint"), &pi, Value::Int(150 + (dev * 20) as i64), at);
            for frame in d.flush(at) {
                let opened = keys.open(&frame, now(), &catalogue().digest()).unwrap();
                let reports: Vec<Report> =
                    envelope::decode_body::<Report>(&opened.plaintext, &Default::default())
                        .map(|(_, r)| r)
                        .unwrap();
                for r in reports {
                    assert!(matches!(r.payload, Payload::Statistic(_)));
                    out.entry(r.time.truncate(DAY)).or_default().push(r);
                }
            }
        }
    }
    assert_eq!(out.len(), 4);
    out
}

/// Seals the stream once: `ENVELOPES` envelopes of one or two reports.
fn generate(path: &Path) -> usize {
    let (keys, config) = keys();
    let templates: Vec<(Timestamp, Vec<Report>)> = templates(&config, &keys).into_iter().collect();
    let digest = catalogue().digest();
    let mut rng = SeededRng::seed_from_u64(77);
    let mut mix = Mix(78);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut reports = 0;
    for _ in 0..ENVELOPES {
        let (day, ts) = &templates[mix.below(templates.len() as u64) as usize];
        let n = if mix.below(4) == 0 { 2 } else { 1 };
        let batch: Vec<Report> = (0..n)
            .map(|_| Report {
                id: ReportId::random(&mut rng),
                ..ts[mix.below(ts.len() as u64) as usize].clone()
            })
            .collect();
        reports += batch.len();
        let plain = envelope::encode_body(&[], &batch).unwrap();
        let fields = HeaderFields { catalogue_digest: digest, time_bucket: *day };
        let frame = envelope::seal(&config, &fields, &plain, &mut rng).unwrap();
        file.write_all(&u32::try_from(frame.len()).unwrap().to_le_bytes()).unwrap();
        file.write_all(&frame).unwrap();
    }
    file.flush().unwrap();
    reports
}

fn read_frames(path: &Path) -> Vec<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path).unwrap().read_to_end(&mut bytes).unwrap();
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let (len, tail) = rest.split_at(4);
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        let (frame, tail) = tail.split_at(len);
        frames.push(frame.to_vec());
        rest = tail;
    }
    frames
}

/// The child: ingests the pending envelopes in batches, printing `B` before each commit
/// and `A i j …` (the acknowledged indices) only after the commit returned. An envelope
/// refused as a replay was committed by an earlier life whose ack was lost: `R i`.
#[test]
fn child_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let dir = PathBuf::from(dir);
    let seed: u64 = std::env::var(SEED_ENV).unwrap().parse().unwrap();
    let frames = read_frames(&dir.join("envelopes.bin"));
    let pending: Vec<usize> = std::fs::read(dir.join("pending.bin"))
        .unwrap()
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as usize)
        .collect();
    let mut agg =
        Aggregator::open(dir.join("agg.sqlite"), catalogue(), keys().0, AggregatorConfig::default()).unwrap();
    let out = std::io::stdout();
    // libtest has printed `test child_entry ... ` without a newline: start a line.
    writeln!(out.lock(), "\nREADY").unwrap();
    let mut mix = Mix(seed);
    let mut rest = &pending[..];
    while !rest.is_empty() {
        let size = (100 + mix.below(901) as usize).min(rest.len());
        let (batch, tail) = rest.split_at(size);
        rest = tail;
        let mut staged = Vec::with_capacity(size);
        for &i in batch {
            match agg.stage(&frames[i], now()) {
                Ok(()) => staged.push(i),
                Err(IngestError::ReplayedEnvelope(_)) => writeln!(out.lock(), "R {i}").unwrap(),
                Err(e) => panic!("envelope {i}: {e}"),
            }
        }
        writeln!(out.lock(), "B").unwrap();
        let acks = agg.commit(now()).unwrap();
        assert_eq!(acks.len(), staged.len());
        let line: Vec<String> = staged.iter().map(ToString::to_string).collect();
        writeln!(out.lock(), "A {}", line.join(" ")).unwrap();
    }
    writeln!(out.lock(), "DONE").unwrap();
}

/// What one life of the child told the parent before it died or finished.
#[derive(Default)]
struct Life {
    acked: Vec<usize>,
    replays: usize,
    /// The last complete line was `B`: the kill landed during (or right after) a commit.
    in_commit: bool,
    done: bool,
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged_and_counts_nothing_twice() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("confiance-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let total_reports = generate(&dir.join("envelopes.bin"));
    let frames = read_frames(&dir.join("envelopes.bin"));
    assert_eq!(frames.len(), ENVELOPES);

    let exe = std::env::current_exe().unwrap();
    let mut mix = Mix(2026);
    let mut acked = vec![false; ENVELOPES];
    let (mut kills, mut in_commit, mut replays, mut lives) = (0usize, 0usize, 0usize, 0usize);
    loop {
        let pending: Vec<u32> = (0..ENVELOPES).filter(|&i| !acked[i]).map(|i| i as u32).collect();
        if pending.is_empty() {
            break;
        }
        std::fs::write(
            dir.join("pending.bin"),
            pending.iter().flat_map(|i| i.to_le_bytes()).collect::<Vec<_>>(),
        )
        .unwrap();
        lives += 1;
        assert!(lives <= KILLS + 5, "no progress");
        let mut child = Command::new(&exe)
            .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .env(SEED_ENV, mix.next().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                // Only complete lines count: a line cut by the kill is an ack the device never got.
                if r.read_until(b'\n', &mut buf).unwrap_or(0) == 0 || buf.last() != Some(&b'\n') {
                    break;
                }
                if tx.send(String::from_utf8_lossy(&buf[..buf.len() - 1]).into_owned()).is_err() {
                    break;
                }
            }
        });
        let mut life = Life::default();
        let absorb = |line: &str, life: &mut Life| {
            life.in_commit = line == "B";
            if let Some(rest) = line.strip_prefix("A ") {
                life.acked.extend(rest.split_whitespace().map(|s| s.parse::<usize>().unwrap()));
            } else if let Some(i) = line.strip_prefix("R ") {
                life.acked.push(i.parse().unwrap());
                life.replays += 1;
            } else if line == "DONE" {
                life.done = true;
            }
        };
        // Wait for the child to be up (it is killed only once it could have done work).
        loop {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) else {
                panic!("child did not start: {:?}", child.wait());
            };
            if line.ends_with("READY") {
                break;
            }
        }
        if kills < KILLS {
            // Let it ack a random share of what is left (so that ≥ KILLS kills happen before
            // the stream ends), then either kill it at a random instant or aim at a commit.
            let target = mix.below((2 * pending.len() / (KILLS - kills + 3)).max(1) as u64) as usize;
            let aim_commit = mix.below(3) == 0;
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut seen = 0;
            while seen < target && Instant::now() < deadline {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(line) => {
                        absorb(&line, &mut life);
                        seen = life.acked.len();
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            if aim_commit {
                while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
                    absorb(&line, &mut life);
                    if life.in_commit {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_micros(mix.below(3_000)));
            } else {
                std::thread::sleep(Duration::from_micros(mix.below(40_000)));
            }
            child.kill().unwrap();
        }
        let status = child.wait().unwrap();
        reader.join().unwrap();
        for line in rx.try_iter() {
            absorb(&line, &mut life);
        }
        if life.done {
            assert!(status.success(), "child failed: {status}");
        } else {
            use std::os::unix::process::ExitStatusExt as _;
            assert_eq!(status.signal(), Some(9), "child died on its own: {status}");
            kills += 1;
            in_commit += usize::from(life.in_commit);
        }
        replays += life.replays;
        for i in life.acked {
            assert!(!acked[i], "envelope {i} acknowledged twice");
            acked[i] = true;
        }
    }
    eprintln!(
        "crash safety: {ENVELOPES} envelopes, {total_reports} reports, {lives} lives, {kills} SIGKILLs \
         ({in_commit} after a commit began and before its ack), {replays} committed-but-unacknowledged \
         envelopes re-sent and refused as replays"
    );
    assert!(kills >= 20, "only {kills} kills");
    assert!(in_commit >= 1, "no kill landed inside a commit");

    // What one clean ingest of the whole stream holds.
    let mut reference = Aggregator::in_memory(catalogue(), keys().0, AggregatorConfig::default()).unwrap();
    for chunk in frames.chunks(1000) {
        for f in chunk {
            reference.stage(f, now()).unwrap();
        }
        reference.commit(now()).unwrap();
    }

    // The survivor's database, reopened.
    let agg =
        Aggregator::open(dir.join("agg.sqlite"), catalogue(), keys().0, AggregatorConfig::default()).unwrap();
    let counted: u64 = agg.partitions().map(|(_, n)| n).sum();
    assert_eq!(counted, total_reports as u64, "reports counted");
    assert_eq!(agg.partition_states(), reference.partition_states(), "accumulators");
    assert!(agg.partitions().count() >= 4, "one partition a day at least");

    // Exactly one IngestBatch audit event per envelope, with its report count.
    let log = agg.store().audit_log().unwrap();
    let mut per_envelope: HashMap<[u8; 32], u32> = HashMap::new();
    for e in log.export(log.size()).unwrap() {
        if let AuditEvent::IngestBatch { envelope_digest, reports, .. } = e.event {
            assert!(per_envelope.insert(envelope_digest, reports).is_none(), "envelope logged twice");
        }
    }
    assert_eq!(per_envelope.len(), ENVELOPES);
    assert_eq!(per_envelope.values().map(|&n| n as usize).sum::<usize>(), total_reports);
    for f in &frames {
        let id = agg.keys().open(f, now(), &catalogue().digest()).unwrap().envelope_id;
        assert!(per_envelope.contains_key(&id.0));
        assert!(agg.has_envelope(&id).unwrap());
    }

    // Every report id remembered exactly once.
    let seen = agg.store().seen_ids(Timestamp::EPOCH).unwrap();
    assert_eq!(seen.len(), total_reports);
    assert_eq!(seen.iter().map(|(i, _)| *i).collect::<HashSet<_>>().len(), total_reports);
    let _ = std::fs::remove_dir_all(&dir);
}

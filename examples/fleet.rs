//! The main job: a simulated multi-brand fleet, end to end.
//!
//! Thermostats (Calora), watches (Pulsa) and cars (Voltis) report to their brands, to a
//! grid operator (GridCo) and to a research lab. Over simulated months owners give,
//! narrow and withdraw consent; every device privatises its statistics with local DP,
//! tags and seals them; the aggregator ingests them, estimates with confidence intervals
//! (printed beside the true values), answers who sees what for how long, purges what is
//! past its deadline, verifies its audit log and writes an HTML report.
//!
//! Run: `cargo run --release --example fleet [-- --devices N --months M --out DIR]`

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use confiance::Timestamp;
use confiance::catalogue::{Catalogue, MetricKind, Privacy};
use confiance::consent::{ConsentState, DeviceKey, Scope, SignedReceipt};
use confiance::envelope::{AeadId, KeyConfig};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{MetricId, PurposeId, RecipientId, SubjectId};
use confiance::pseudonym::DeviceSecret;
use confiance::recorder::{NullStorage, Recorder, RecorderParts, Value};
use confiance::rng::Rng as _;
use confiance_aggregator::audit::{CheckpointSigner, Verifier};
use confiance_aggregator::keys::KeyStore;
use confiance_aggregator::ledger::Target;
use confiance_aggregator::report::{
    self, AccessRow, EstimateRow, Header, LogStatus, ReportData, RetentionKind, RetentionRow,
};
use confiance_aggregator::service::{Aggregator, AggregatorConfig, ConsentMessage};
use indicatif::{ProgressBar, ProgressStyle};

const DAY: u64 = 86_400;
const WEEK: u64 = 7 * DAY;
const MONTH: u64 = 30 * DAY;

/// One brand: its controller, its statistics (metric, purposes) and its service record.
struct Brand {
    name: &'static str,
    controller: &'static str,
    stats: &'static [&'static str],
    record: &'static str,
}

const BRANDS: [Brand; 3] = [
    Brand {
        name: "thermostat",
        controller: "calora",
        stats: &["thermostat.mode", "thermostat.setpoint", "thermostat.heating-minutes"],
        record: "thermostat.fault-code",
    },
    Brand {
        name: "watch",
        controller: "pulsa",
        stats: &["watch.activity", "watch.always-on-display", "watch.heart-rate-zone"],
        record: "watch.battery-health",
    },
    Brand {
        name: "car",
        controller: "voltis",
        stats: &["car.drive-mode", "car.charging-kwh"],
        record: "car.odometer-km",
    },
];

/// Consent each owner may give, with the share of owners who give it.
const OFFERS: [(&str, &str, u32); 3] =
    [("brand", "product-improvement", 90), ("gridco", "grid-balancing", 50), ("lab-eu", "research", 30)];

/// What a device sends, in simulated time.
enum Traffic {
    Receipt(Vec<u8>),
    Withdrawal(Vec<u8>),
    Envelope(Vec<u8>),
}

/// The truth behind the estimates: per (recipient, metric), counts per category or the
/// sum of numeric values, over the reports whose audience holds the recipient.
#[derive(Default)]
struct Truth {
    cats: BTreeMap<(String, String), Vec<u64>>,
    sums: BTreeMap<(String, String), (f64, u64)>,
}

impl Truth {
    fn merge(&mut self, o: Truth) {
        for (k, v) in o.cats {
            let e = self.cats.entry(k).or_insert_with(|| vec![0; v.len()]);
            for (a, b) in e.iter_mut().zip(v) {
                *a += b;
            }
        }
        for (k, (s, n)) in o.sums {
            let e = self.sums.entry(k).or_default();
            e.0 += s;
            e.1 += n;
        }
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("a valid id")
}

/// A value for `metric` drawn from the brand's usage pattern (skewed, as real use is).
fn draw(kind: &MetricKind, rng: &mut SeededRng) -> Value {
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    match kind {
        MetricKind::Boolean => Value::Bool(u < 0.3),
        MetricKind::Categorical { labels } => {
            // Zipf(1): label i with weight 1/(i+1).
            let d = labels.len();
            let total: f64 = (1..=d).map(|i| 1.0 / i as f64).sum();
            let mut acc = 0.0;
            let mut pick = d - 1;
            for i in 0..d {
                acc += 1.0 / (i + 1) as f64 / total;
                if u < acc {
                    pick = i;
                    break;
                }
            }
            Value::Category(pick as u32)
        }
        MetricKind::Numeric { min, max } => {
            let (lo, hi) = (*min as f64, *max as f64);
            // A tent around 40% of the range.
            let v = rng.next_u64() as f64 / u64::MAX as f64;
            let x = lo + (hi - lo) * (0.4 * (u + v) / 2.0 + 0.6 * u * v);
            Value::Int(x.round().clamp(lo, hi) as i64)
        }
        MetricKind::Count { max } => Value::Int((u * u * (*max as f64)).round() as i64),
    }
}

/// Simulates one device over the whole period; returns its traffic in time order and
/// adds what it really sent to `truth`.
fn simulate_device(
    d: u64,
    catalogue: &Catalogue,
    config: KeyConfig,
    start: Timestamp,
    months: u64,
    truth: &mut Truth,
    subjects: &mut Vec<(String, SubjectId)>,
) -> Vec<(Timestamp, Traffic)> {
    let brand = &BRANDS[(d % 3) as usize];
    let mut rng = SeededRng::seed_from_u64(0xF1EE7 ^ d.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let parts = RecorderParts {
        catalogue: catalogue.clone(),
        consent: ConsentState::new(DeviceKey::generate(&mut rng)),
        pseudonyms: DeviceSecret::generate(&mut rng),
        controller: id(brand.controller),
        key_configs: vec![config],
        rng: SeededRng::seed_from_u64(d),
    };
    let mut dev = Recorder::new(parts, NullStorage);
    let mut out = Vec::new();
    let joined = start.saturating_add_secs(rng.next_u64() % (20 * DAY));
    let end = start.saturating_add_secs(months * MONTH);
    let mut receipts = Vec::new();
    for (who, purpose, share) in OFFERS {
        let recipient = if who == "brand" { brand.controller } else { who };
        let r: RecipientId = id(recipient);
        let p: PurposeId = id(purpose);
        let metrics: Vec<MetricId> =
            brand.stats.iter().map(|m| id::<MetricId>(m)).filter(|m| catalogue.allows(m, &p, &r)).collect();
        if metrics.is_empty() || rng.next_u32() % 100 >= share {
            continue;
        }
        let hold = ["P30D", "P90D", "P6M"][(rng.next_u32() % 3) as usize].parse().expect("period");
        if let Ok(b) = dev.give_consent(r, p, Scope::metrics(metrics), joined, None, hold, joined) {
            receipts.push(SignedReceipt::from_bytes(&b).map(|s| s.id()).ok());
            out.push((joined, Traffic::Receipt(b)));
        }
    }
    if rng.next_u32() % 100 < 70 {
        let b = dev.give_consent(
            id(brand.controller),
            id("service"),
            Scope::metrics([id(brand.record)]),
            joined,
            None,
            "P1Y".parse().expect("period"),
            joined,
        );
        if let Ok(b) = b {
            out.push((joined, Traffic::Receipt(b)));
        }
    }
    if d < 4 {
        subjects.push((brand.name.to_string(), dev.subject()));
    }
    // Some owners change their mind once: 10% withdraw their first consent, 5% narrow it.
    let change = rng.next_u32() % 100;
    let change_at = joined.saturating_add_secs(MONTH + rng.next_u64() % ((months.max(2) - 1) * MONTH));
    let mut changed = false;
    let mut t = joined.saturating_add_secs(DAY);
    let mut next_flush = joined.saturating_add_secs(MONTH);
    while t < end {
        if !changed && t >= change_at {
            changed = true;
            if let Some(Some(first)) = receipts.first() {
                if change < 10 {
                    if let Ok(w) = dev.withdraw_consent(first, change_at) {
                        out.push((next_flush, Traffic::Withdrawal(w)));
                    }
                } else if change < 15 {
                    let covered: Vec<MetricId> = dev
                        .consent()
                        .get(first)
                        .map(|e| match &e.receipt.receipt().scope {
                            Scope::Metrics(m) => m.iter().cloned().collect(),
                            Scope::Categories(_) => Vec::new(),
                        })
                        .unwrap_or_default();
                    if covered.len() > 1
                        && let Ok((w, r)) =
                            dev.narrow_consent(first, Scope::metrics(covered.into_iter().take(1)), change_at)
                    {
                        out.push((next_flush, Traffic::Withdrawal(w)));
                        out.push((next_flush, Traffic::Receipt(r)));
                    }
                }
            }
        }
        for m in brand.stats {
            let metric: MetricId = id(m);
            let meta = catalogue.metric(&metric).expect("catalogue metric");
            let value = draw(&meta.kind, &mut rng);
            for purpose in &meta.purposes {
                let before = dev.counters().recorded;
                dev.record(&metric, purpose, value, t);
                if dev.counters().recorded == before {
                    continue;
                }
                for r in &meta.recipients {
                    if dev.consent().active_receipt(catalogue, r, &metric, purpose, t).is_none() {
                        continue;
                    }
                    let key = (r.to_string(), m.to_string());
                    match (value, &meta.kind) {
                        (Value::Bool(b), MetricKind::Boolean) => {
                            truth.cats.entry(key).or_insert_with(|| vec![0; 2])[usize::from(b)] += 1;
                        }
                        (Value::Category(c), MetricKind::Categorical { labels }) => {
                            truth.cats.entry(key).or_insert_with(|| vec![0; labels.len()])[c as usize] += 1;
                        }
                        (Value::Int(x), MetricKind::Count { max }) => {
                            let e = truth.sums.entry(key).or_default();
                            e.0 += x.clamp(0, *max as i64) as f64;
                            e.1 += 1;
                        }
                        (Value::Int(x), _) => {
                            let e = truth.sums.entry(key).or_default();
                            e.0 += x as f64;
                            e.1 += 1;
                        }
                        _ => {}
                    }
                }
            }
        }
        if t >= next_flush {
            let meta = catalogue.metric(&id(brand.record)).expect("record metric");
            dev.record_service(&id(brand.record), draw(&meta.kind, &mut rng), t);
            for frame in dev.flush(t) {
                out.push((t, Traffic::Envelope(frame.clone())));
                dev.acknowledge(&frame);
            }
            next_flush = next_flush.saturating_add_secs(MONTH);
        }
        t = t.saturating_add_secs(WEEK);
    }
    out
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("  {msg:<22} [{bar:40}] {pos:>7}/{len:7} {elapsed_precise} eta {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let devices = arg("--devices", 20_000);
    let months = arg("--months", 6).max(2);
    let out_dir = std::env::args()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[0] == "--out")
        .map(|w| PathBuf::from(&w[1]))
        .unwrap_or_else(|| PathBuf::from("out"));
    let started = Instant::now();
    std::fs::create_dir_all(&out_dir)?;
    let db = out_dir.join("fleet.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }

    let catalogue = Catalogue::from_toml_str(include_str!("catalogue.toml"))?;
    println!("confiance fleet: {devices} devices, {months} months");
    println!("catalogue `{}` v{} digest {}", catalogue.name(), catalogue.version(), catalogue.digest());
    let start = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z")?;
    let end = start.saturating_add_secs(months * MONTH);
    let mut rng = SeededRng::seed_from_u64(2026);
    let mut keys = KeyStore::new(30 * DAY);
    let config = keys.generate(AeadId::ChaCha20Poly1305, start, end.saturating_add_secs(DAY), &mut rng)?;
    let agg_config = AggregatorConfig { max_report_age_secs: 2 * MONTH, ..AggregatorConfig::default() };
    let mut agg = Aggregator::open(&db, catalogue.clone(), keys, agg_config)?;
    let signer = CheckpointSigner::from_secret_bytes("confiance.example/fleet", &[42; 32])?;

    // Devices run on worker threads, chunk by chunk; the aggregator ingests each chunk's
    // traffic in time order on this thread, committing every 20 000 envelopes.
    let chunk = 4_000u64;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4) as u64;
    let pb = bar(devices, "devices simulated");
    let mut truth = Truth::default();
    let mut subjects = Vec::new();
    let (mut envelopes, mut reports, mut refused, mut receipts, mut withdrawals) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut first = 0u64;
    while first < devices {
        let last = (first + chunk).min(devices);
        let (tx, rx) = mpsc::channel();
        std::thread::scope(|s| {
            for w in 0..workers {
                let tx = tx.clone();
                let catalogue = &catalogue;
                let pb = &pb;
                s.spawn(move || {
                    let mut t = Truth::default();
                    let mut subj = Vec::new();
                    let mut traffic = Vec::new();
                    for d in (first + w..last).step_by(workers as usize) {
                        traffic
                            .extend(simulate_device(d, catalogue, config, start, months, &mut t, &mut subj));
                        pb.inc(1);
                    }
                    let _ = tx.send((traffic, t, subj));
                });
            }
        });
        drop(tx);
        let mut traffic = Vec::new();
        for (t, tr, subj) in rx {
            traffic.extend(t);
            truth.merge(tr);
            subjects.extend(subj);
        }
        // Per simulated day: receipts, then withdrawals, then envelopes — so the consent
        // messages of a day go to the ledger in one durable batch.
        let rank = |tr: &Traffic| match tr {
            Traffic::Receipt(_) => 0,
            Traffic::Withdrawal(_) => 1,
            Traffic::Envelope(_) => 2,
        };
        traffic.sort_by_key(|(t, tr)| (t.truncate(DAY), rank(tr), *t));
        let mut consent: Vec<(ConsentMessage<'_>, Timestamp)> = Vec::new();
        for (i, (t, tr)) in traffic.iter().enumerate() {
            let t = *t;
            match tr {
                Traffic::Receipt(b) => consent.push((ConsentMessage::Receipt(b), t)),
                Traffic::Withdrawal(b) => consent.push((ConsentMessage::Withdrawal(b), t)),
                Traffic::Envelope(_) => {}
            }
            // Consent messages go in one durable batch before the next envelope needs them.
            let next_is_envelope = matches!(traffic.get(i + 1), Some((_, Traffic::Envelope(_))) | None);
            if next_is_envelope && !consent.is_empty() {
                for (r, (m, _)) in agg.receive_consent_batch(&consent)?.iter().zip(&consent) {
                    match (r, m) {
                        (Ok(_), ConsentMessage::Receipt(_)) => receipts += 1,
                        (Ok(_), ConsentMessage::Withdrawal(_)) => withdrawals += 1,
                        (Err(e), _) => pb.println(format!("  refused consent message: {e}")),
                    }
                }
                consent.clear();
            }
            let Traffic::Envelope(f) = tr else { continue };
            {
                match agg.stage(f, t) {
                    Ok(()) => {
                        if agg.staged_envelopes() >= 20_000 {
                            for ack in agg.commit(t)? {
                                envelopes += 1;
                                reports += u64::from(ack.reports);
                            }
                        }
                    }
                    Err(e) => {
                        refused += 1;
                        if refused <= 3 {
                            pb.println(format!("  refused envelope: {e}"));
                        }
                    }
                }
            }
        }
        for ack in agg.commit(end)? {
            envelopes += 1;
            reports += u64::from(ack.reports);
        }
        first = last;
    }
    pb.finish();
    println!(
        "\ningested {envelopes} envelopes ({reports} reports), {receipts} receipts, {withdrawals} withdrawals; {refused} envelopes refused; {} partitions",
        agg.partitions().count()
    );

    // Estimates beside the truth.
    println!("\nestimates released to each recipient (95% intervals) beside the true values:");
    println!(
        "  {:<8} {:<28} {:<12} {:>9} {:>21} {:>9} {:>8}",
        "to", "metric", "label", "estimate", "95% interval", "truth", "covered"
    );
    let mut est_rows = Vec::new();
    let (mut covered, mut total) = (0u32, 0u32);
    let pairs: Vec<(RecipientId, MetricId)> = catalogue
        .metrics()
        .filter(|(_, m)| matches!(m.privacy, Privacy::Ldp { .. }))
        .flat_map(|(mid, m)| m.recipients.iter().map(move |r| (r.clone(), mid.clone())))
        .collect();
    for (r, m) in &pairs {
        let Ok(rel) = agg.release(r, m, start, end, end) else { continue };
        let key = (r.to_string(), m.to_string());
        let n = rel.estimate.n as f64;
        let truths: Vec<f64> = if let Some(c) = truth.cats.get(&key) {
            let tot: u64 = c.iter().sum();
            c.iter().map(|x| *x as f64 / tot.max(1) as f64).collect()
        } else if let Some((s, k)) = truth.sums.get(&key) {
            vec![s / (*k).max(1) as f64]
        } else {
            continue;
        };
        for (i, p) in rel.estimate.values.iter().enumerate() {
            let label = rel.labels.get(i).cloned().unwrap_or_else(|| "mean".to_string());
            let t = truths.get(i).copied().unwrap_or(f64::NAN);
            let ok = p.ci95_low <= t && t <= p.ci95_high;
            covered += u32::from(ok);
            total += 1;
            if i < 3 {
                println!(
                    "  {:<8} {:<28} {:<12} {:>9.4} [{:>9.4}, {:>9.4}] {:>9.4} {:>8}",
                    r.as_str(),
                    m.as_str(),
                    label,
                    p.value,
                    p.ci95_low,
                    p.ci95_high,
                    t,
                    if ok { "yes" } else { "NO" }
                );
            }
            est_rows.push(EstimateRow {
                metric: format!("{m} → {r}"),
                label,
                estimate: p.value,
                ci95_low: p.ci95_low,
                ci95_high: p.ci95_high,
                std_error: p.std_error,
                true_value: Some(t),
                n: n as u64,
            });
        }
    }
    println!(
        "  {covered}/{total} intervals cover the true value ({:.1}%; 95% expected)",
        100.0 * f64::from(covered) / f64::from(total.max(1))
    );

    // Who sees what, for how long.
    let mid = start.saturating_add_secs(months * MONTH / 2);
    println!("\nwho sees what, for how long — at {}:", mid.to_rfc3339());
    let mut access_rows = Vec::new();
    for (brand, subject) in subjects.iter().take(3) {
        let sa = agg.ledger().subject_access(subject, mid, None);
        println!("  one {brand} owner ({}…):", &subject.to_string()[..12]);
        for e in &sa.entries {
            let until = e.window_until.map_or_else(|| "—".to_string(), |u| u.to_string());
            println!(
                "    {:<8} {:<28} window until {until:<28} records held {}",
                e.recipient.as_str(),
                e.metric.as_str(),
                e.records_held
            );
        }
    }
    for r in ["gridco", "lab-eu"] {
        let view = agg.ledger().recipient_view(&id(r), mid, None);
        println!("  recipient {r}:");
        for m in &view.metrics {
            println!(
                "    {:<28} {:>7} subjects in window, {:>3} partitions, consent {}",
                m.metric.as_str(),
                m.subjects_in_window,
                m.partitions.len(),
                m.consent_until.map_or_else(|| "—".to_string(), |u| u.to_string())
            );
            access_rows.push(AccessRow {
                recipient: r.to_string(),
                metric: m.metric.to_string(),
                subject: format!("{} subjects", m.subjects_in_window),
                window_start: start,
                window_end: None,
                hold_secs: 90 * DAY,
            });
        }
    }
    let ws = agg.ledger().who_sees(&Target::Metric(id("thermostat.setpoint")), mid, None);
    println!("  metric thermostat.setpoint is seen by:");
    for e in &ws.entries {
        println!(
            "    {:<8} {:>7} subjects in window, {:>3} partitions",
            e.recipient.as_str(),
            e.subjects_in_window,
            e.partitions.len()
        );
    }

    // Pseudonymous records, released only where the ledger allows.
    let recs = agg.release_records(&id("calora"), &id("thermostat.fault-code"), start, end, end)?;
    println!("\nrecords of thermostat.fault-code released to calora at the end: {}", recs.len());

    // Retention: purge what is past its deadline four months after the end.
    let purge_at = end.saturating_add_secs(4 * MONTH);
    let overdue_before = agg.ledger().overdue(purge_at);
    let purged = agg.purge(purge_at)?;
    println!(
        "purge at {}: {} partitions and {} records deleted, {} period keys destroyed ({} items were overdue)",
        purge_at.to_rfc3339(),
        purged.partitions,
        purged.records,
        purged.keys_destroyed.len(),
        overdue_before.records.len() + overdue_before.partitions.len()
    );

    // The audit log: checkpoint, full verification from the public key alone.
    let log = agg.store().audit_log()?;
    let cp = log.checkpoint(&signer, purge_at);
    let verifier = Verifier::new("confiance.example/fleet", signer.verifying_key())?;
    let events = log.export(log.size())?;
    let verified = verifier.audit(&cp, &events).is_ok();
    let overdue_after = agg.ledger().overdue(purge_at);
    println!("overdue after the purge: {}", overdue_after.records.len() + overdue_after.partitions.len());
    println!(
        "audit log: {} events, root {}…, verified: {verified}",
        log.size(),
        &cp.checkpoint().root().iter().map(|b| format!("{b:02x}")).collect::<String>()[..16]
    );

    // The report.
    let mut data = ReportData::new(Header {
        title: "confiance fleet — who sees what, for how long".into(),
        catalogue_name: catalogue.name().into(),
        catalogue_version: catalogue.version(),
        catalogue_digest_hex: catalogue.digest().to_string(),
        generated_at: purge_at,
        at: mid,
        as_known_at: None,
        horizon: Some(end),
    });
    data.access = access_rows;
    data.budgets = catalogue
        .metrics()
        .filter_map(|(mid, m)| match &m.privacy {
            Privacy::Ldp { epsilon, budget: Some(b), .. } => Some(report::BudgetRow {
                metric: mid.to_string(),
                epsilon_per_report: epsilon.to_f64(),
                budget_per_period: b.epsilon.to_f64(),
                period_secs: b.period.fixed_secs().unwrap_or(DAY),
                reports_received: agg.partitions().filter(|(k, _)| &k.metric == mid).map(|(_, n)| n).sum(),
                spent: None,
            }),
            _ => None,
        })
        .collect();
    data.estimates = est_rows;
    data.retention = purged
        .partition_keys
        .iter()
        .take(20)
        .enumerate()
        .map(|(i, _)| RetentionRow {
            item: format!("partition {i}"),
            kind: RetentionKind::Partition,
            metric: String::new(),
            records: 0,
            collected_from: None,
            deadline: purge_at,
            purged_at: Some(purge_at),
            overdue_by_secs: None,
        })
        .collect();
    data.log = Some(LogStatus {
        tree_size: log.size(),
        root_hex: cp.checkpoint().root().iter().map(|b| format!("{b:02x}")).collect(),
        checkpoint_verified: verified,
        consistency_verified: None,
        inclusion_checked: 0,
        inclusion_failed: 0,
        message: format!("full audit of {} events against the signed checkpoint", events.len()),
    });
    let html = out_dir.join("fleet-report.html");
    std::fs::write(&html, report::render_html(&data))?;
    std::fs::write(out_dir.join("fleet-report.json"), report::render_json(&data)?)?;
    std::fs::write(out_dir.join("fleet-report.md"), report::render_markdown(&data))?;
    println!("report written to {}", html.display());
    println!("\ndone in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

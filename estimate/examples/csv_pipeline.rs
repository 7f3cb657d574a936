//! A standalone estimation pipeline — no aggregator, no database, no HTTP: a CSV of LDP
//! reports in, frequencies with intervals out.
//!
//! ```text
//! cargo run -p confiance-estimate --example csv_pipeline -- [REPORTS.csv] [options]
//!   --metric NAME       the metric the reports were encoded for (default app.screen)
//!   --d N               number of categories (default 16)
//!   --epsilon E         ε as a decimal (default 1)
//!   --mechanism NAME    grr, oue, sue, olh, hadamard, hadamard_blocks, auto (default olh)
//!   --level L           interval level in (0, 1) (default 0.95)
//!   --write FILE        with no input: also write the simulated CSV to FILE
//! ```
//!
//! The CSV has a header `period,report` and one report per line: the start of the
//! report's time bucket in seconds, and the hex of the report's postcard bytes
//! (docs/wire-format.md, `LdpReport`). The mechanism's public key comes from the metric
//! and the period ([`Selection::for_period`]), exactly as on the device: reports are
//! accumulated per period and the periods' estimates combined ([`Combined`]). A line that
//! does not parse or does not fit the mechanism is counted under its error and skipped.
//!
//! With no input file it simulates 40 000 devices over four daily periods (Zipf-like
//! data), encodes them as a device would, and prints each estimate beside the truth.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss, reason = "an example")]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use confiance::Epsilon;
use confiance::hazmat::{ChaCha20Rng, SeedableRng};
use confiance::ldp::{Domain, LdpReport, LdpValue, MechanismName, Selection};
use confiance_estimate::{Accumulator, Combined, Level};

struct Options {
    input: Option<String>,
    metric: String,
    d: u32,
    epsilon: Epsilon,
    mechanism: MechanismName,
    level: Level,
    write: Option<String>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        input: None,
        metric: "app.screen".into(),
        d: 16,
        epsilon: Epsilon::from_ratio(1, 1).map_err(|e| e.to_string())?,
        mechanism: MechanismName::Olh,
        level: Level::P95,
        write: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--metric" => o.metric = value()?,
            "--d" => o.d = value()?.parse().map_err(|e| format!("--d: {e}"))?,
            "--epsilon" => o.epsilon = value()?.parse().map_err(|e| format!("--epsilon: {e}"))?,
            "--mechanism" => o.mechanism = value()?.parse().map_err(|e| format!("--mechanism: {e}"))?,
            "--level" => {
                let l: f64 = value()?.parse().map_err(|e| format!("--level: {e}"))?;
                o.level = Level::new(l).map_err(|e| format!("--level: {e}"))?;
            }
            "--write" => o.write = Some(value()?),
            path if !path.starts_with("--") && o.input.is_none() => o.input = Some(path.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Simulated devices: a Zipf-like population, encoded per period as a device would.
fn simulate(sel: &Selection, metric: &str, d: u32) -> (String, Vec<f64>) {
    const DEVICES: u32 = 10_000;
    const DAY: u64 = 86_400;
    let weights: Vec<f64> = (1..=d).map(|i| 1.0 / f64::from(i)).collect();
    let total: f64 = weights.iter().sum();
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let mut csv = String::from("period,report\n");
    let mut counts = vec![0u64; d as usize];
    for day in 0..4u64 {
        let period = 1_800_000_000 - 1_800_000_000 % DAY + day * DAY;
        let m = sel.for_period(metric, period);
        for i in 0..DEVICES {
            // Device i holds the category where its quantile falls.
            let u = (f64::from(i) + 0.5) / f64::from(DEVICES) * total;
            let mut acc = 0.0;
            let v = weights.iter().position(|w| {
                acc += w;
                u < acc
            });
            let v = v.unwrap_or(d as usize - 1);
            counts[v] += 1;
            let report = m.encode(LdpValue::Category(v as u32), &mut rng).expect("in the domain");
            let _ = writeln!(csv, "{period},{}", hex(&postcard::to_allocvec(&report).expect("serialises")));
        }
    }
    let n: u64 = counts.iter().sum();
    (csv, counts.iter().map(|c| *c as f64 / n as f64).collect())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = options()?;
    let sel = Selection::new(Domain::Categorical { d: o.d }, o.epsilon, o.mechanism)?;
    let (csv, truth) = match &o.input {
        Some(path) => (std::fs::read_to_string(path)?, None),
        None => {
            let (csv, truth) = simulate(&sel, &o.metric, o.d);
            if let Some(path) = &o.write {
                if let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(path, &csv)?;
                println!("wrote {path}");
            }
            (csv, Some(truth))
        }
    };

    // Accumulate per period: each period's reports were encoded under that period's key.
    let mut periods: BTreeMap<u64, Accumulator> = BTreeMap::new();
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    for (i, line) in csv.lines().enumerate().skip(1) {
        let parsed = line.split_once(',').and_then(|(p, r)| {
            let report: LdpReport = postcard::from_bytes(&unhex(r.trim())?).ok()?;
            Some((p.trim().parse::<u64>().ok()?, report))
        });
        let Some((period, report)) = parsed else {
            *refused.entry("unparsable line".into()).or_default() += 1;
            eprintln!("line {}: not `period,hex report`", i + 1);
            continue;
        };
        let acc =
            periods.entry(period).or_insert_with(|| Accumulator::new(&sel.for_period(&o.metric, period)));
        if let Err(e) = acc.add(&report) {
            *refused.entry(e.to_string()).or_default() += 1;
        }
    }
    let mut all = Combined::new(&sel);
    for acc in periods.values() {
        all.add(acc)?;
    }
    let est = all.estimate();

    println!(
        "{} reports of {} over {} periods, {} (ε = {}), {:.0}% intervals",
        est.n,
        o.metric,
        periods.len(),
        sel.name(),
        o.epsilon,
        100.0 * o.level.get()
    );
    for (reason, n) in &refused {
        println!("refused: {n} × {reason}");
    }
    println!("category   estimate        interval{}", if truth.is_some() { "        truth" } else { "" });
    let mut covered = 0;
    for (v, p) in est.values.iter().enumerate() {
        let (lo, hi) = p.interval(o.level);
        let t = truth.as_ref().map(|t| t[v]);
        covered += usize::from(t.is_some_and(|t| lo <= t && t <= hi));
        let truth = t.map_or(String::new(), |t| format!("   {t:>8.4}"));
        println!("{v:>8}   {:>8.4}   [{lo:>7.4}, {hi:>7.4}]{truth}", p.value);
    }
    if let Some(t) = &truth {
        println!("{covered} of {} intervals cover the truth", t.len());
        // A self-check for CI: at 95% missing more than a third would mean a broken pipeline.
        if covered * 3 < t.len() * 2 {
            return Err("too few intervals cover the truth".into());
        }
    }
    Ok(())
}

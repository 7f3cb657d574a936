//! The main job: a simulated multi-brand fleet, end to end.
//!
//! Thermostats (Calora), watches (Pulsa) and cars (Voltis) report to their brands, a grid
//! operator and a research lab. Over simulated months the owners give, narrow and
//! withdraw consent; every report is tagged from the catalogue and the consent state.
//!
//! Run: `cargo run --release --example fleet [-- --devices N]`

use std::collections::BTreeMap;
use std::time::Instant;

use confiance::Timestamp;
use confiance::catalogue::Catalogue;
use confiance::consent::{ConsentState, DeviceKey, Grant, Scope};
use confiance::hazmat::{SeedableRng as _, SeededRng};
use confiance::ids::{MetricId, PurposeId, RecipientId, SubjectId};
use confiance::retention::RetentionTag;
use confiance::rng::Rng as _;

const DAY: u64 = 86_400;

struct Brand {
    name: &'static str,
    recipient: &'static str,
    /// (metric, purpose, third parties the owner may also let have it)
    statistics: &'static [(&'static str, &'static str, &'static [&'static str])],
}

const BRANDS: &[Brand] = &[
    Brand {
        name: "thermostat",
        recipient: "calora",
        statistics: &[
            ("thermostat.mode", "product-improvement", &[]),
            ("thermostat.setpoint", "grid-balancing", &["gridco"]),
            ("thermostat.heating-minutes", "grid-balancing", &["gridco"]),
        ],
    },
    Brand {
        name: "watch",
        recipient: "pulsa",
        statistics: &[
            ("watch.activity", "product-improvement", &[]),
            ("watch.heart-rate-zone", "research", &["lab-eu"]),
        ],
    },
    Brand {
        name: "car",
        recipient: "voltis",
        statistics: &[
            ("car.drive-mode", "product-improvement", &[]),
            ("car.charging-kwh", "grid-balancing", &["gridco"]),
        ],
    },
];

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let devices = arg("--devices", 30_000);
    let months = arg("--months", 6);
    let started = Instant::now();
    let catalogue = Catalogue::from_toml_str(include_str!("catalogue.toml"))?;
    println!(
        "confiance fleet — catalogue `{}` v{} digest {}",
        catalogue.name(),
        catalogue.version(),
        catalogue.digest()
    );
    println!(
        "  {} purposes, {} recipients, {} metrics ({} anonymous, {} pseudonymous)",
        catalogue.purposes().count(),
        catalogue.recipients().count(),
        catalogue.metrics().count(),
        catalogue.metrics().filter(|(_, m)| m.is_anonymous()).count(),
        catalogue.metrics().filter(|(_, m)| !m.is_anonymous()).count(),
    );

    let start = Timestamp::parse_rfc3339("2026-01-01T00:00:00Z")?;
    let mut rng = SeededRng::seed_from_u64(2026);
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut tags_by_recipient: BTreeMap<String, u64> = BTreeMap::new();
    let mut sample_window = None;

    for d in 0..devices {
        let brand = &BRANDS[(d % BRANDS.len() as u64) as usize];
        let mut consent = ConsentState::new(DeviceKey::generate(&mut rng));
        let mut subject = [0u8; 32];
        rng.fill_bytes(&mut subject);
        let joined = start.saturating_add_secs(rng.next_u64() % (30 * DAY));
        let mut receipts = Vec::new();
        for (metric, purpose, third) in brand.statistics {
            for recipient in std::iter::once(&brand.recipient).chain(third.iter()) {
                // Owners agree to the brand 90% of the time, to third parties 60%.
                let p = if recipient == &brand.recipient { 90 } else { 60 };
                if rng.next_u32() % 100 >= p {
                    continue;
                }
                let grant = Grant {
                    subject: SubjectId(subject),
                    recipient: RecipientId::new(recipient)?,
                    purpose: PurposeId::new(purpose)?,
                    scope: Scope::metrics([MetricId::new(metric)?]),
                    valid_from: joined,
                    valid_until: None,
                    hold: ["P30D", "P90D", "P6M"][(rng.next_u32() % 3) as usize].parse()?,
                };
                receipts.push((consent.give(&catalogue, grant, joined, &mut rng)?.id(), *metric, *purpose));
                *counts.entry("consents given").or_default() += 1;
            }
        }
        // Some owners withdraw one consent at a random moment of the simulation.
        if let Some((id, _, _)) = receipts.first().filter(|_| rng.next_u32() % 100 < 15) {
            let at = joined.saturating_add_secs(rng.next_u64() % (months * 30 * DAY));
            consent.withdraw(id, at)?;
            *counts.entry("consents withdrawn").or_default() += 1;
        }
        // Each device tags one report per metric per month; tags refused are counted.
        for month in 0..months {
            let at = joined.saturating_add_secs(month * 30 * DAY + DAY);
            for (metric, purpose, third) in brand.statistics {
                let (metric, purpose) = (MetricId::new(metric)?, PurposeId::new(purpose)?);
                let audience: Vec<RecipientId> = std::iter::once(&brand.recipient)
                    .chain(third.iter())
                    .filter_map(|r| RecipientId::new(r).ok())
                    .filter(|r| consent.active_receipt(&catalogue, r, &metric, &purpose, at).is_some())
                    .collect();
                if audience.is_empty() {
                    *counts.entry("reports not sent (no consent)").or_default() += 1;
                    continue;
                }
                let tag = RetentionTag::for_statistic(&catalogue, &consent, &metric, &purpose, audience, at)?;
                for r in tag.audience() {
                    *tags_by_recipient.entry(r.to_string()).or_default() += 1;
                }
                *counts.entry("reports tagged").or_default() += 1;
            }
        }
        if sample_window.is_none() && receipts.len() > 1 {
            let (_, metric, _) = receipts[0];
            let m = MetricId::new(metric)?;
            let r = RecipientId::new(brand.recipient)?;
            sample_window = Some((brand.name, metric, consent.access_window(&catalogue, &r, &m)));
        }
    }

    println!("\n{devices} devices over {months} months:");
    for (k, v) in &counts {
        println!("  {k:<32} {v:>10}");
    }
    println!("\nreports tagged per recipient (audience members):");
    for (k, v) in &tags_by_recipient {
        println!("  {k:<32} {v:>10}");
    }
    if let Some((brand, metric, window)) = sample_window {
        println!("\nwho sees what, for how long — on one {brand}, metric {metric}:");
        for (a, b) in window {
            println!(
                "  from {} until {}",
                a.to_rfc3339(),
                if b == Timestamp::MAX { "withdrawn".into() } else { b.to_rfc3339() }
            );
        }
    }
    println!("\ndone in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

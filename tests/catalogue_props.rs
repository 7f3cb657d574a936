//! Property tests of the catalogue digest: invariant under reordering and reformatting of
//! the TOML, changed by every change of meaning; TOML and canonical forms round-trip.

use std::fmt::Write as _;

use confiance::catalogue::{
    Catalogue, LegalBasis, Metric, MetricKind, Purpose, Recipient, Role, Sensitivity,
};
use confiance::ids::{CategoryId, MetricId, PurposeId, RecipientId};
use confiance::ldp::MechanismName;
use proptest::prelude::*;
use proptest::test_runner::TestRng;
use rand::seq::SliceRandom;
use toml::{Table, Value};

fn arb_catalogue() -> impl Strategy<Value = Catalogue> {
    (1usize..4, 1usize..4, 1usize..6, any::<u64>()).prop_map(|(np, nr, nm, seed)| {
        let mut rng = rand_chacha_seed(seed);
        let purposes: Vec<PurposeId> =
            (0..np).map(|i| PurposeId::new(&format!("purpose-{i}")).unwrap()).collect();
        let recipients: Vec<RecipientId> =
            (0..nr).map(|i| RecipientId::new(&format!("rcpt-{i}")).unwrap()).collect();
        let mut b = Catalogue::builder("prop", 1 + (seed % 7) as u32);
        for (i, p) in purposes.iter().enumerate() {
            let basis = [LegalBasis::Consent, LegalBasis::Contract, LegalBasis::LegitimateInterest][i % 3];
            b = b.purpose(p.clone(), Purpose::new(&format!("purpose number {i}"), basis));
        }
        for (i, r) in recipients.iter().enumerate() {
            let role = [Role::Controller, Role::Processor, Role::ThirdParty][i % 3];
            b = b.recipient(
                r.clone(),
                Recipient::new(&format!("Recipient {i}"), role, ["FR", "DE", "US"][i % 3]),
            );
        }
        for i in 0..nm {
            let pick = |n: usize, rng: &mut u64| -> usize { (next(rng) % n as u64) as usize };
            let kind_ix = pick(4, &mut rng);
            let (kind, mech) = match kind_ix {
                0 => (MetricKind::Boolean, MechanismName::Grr),
                1 => (
                    MetricKind::Categorical {
                        labels: (0..2 + pick(6, &mut rng)).map(|j| format!("l{j}")).collect(),
                    },
                    [MechanismName::Oue, MechanismName::Olh, MechanismName::Hadamard, MechanismName::Auto]
                        [pick(4, &mut rng)],
                ),
                2 => (
                    MetricKind::Numeric {
                        min: -(pick(100, &mut rng) as i64),
                        max: 1 + pick(1000, &mut rng) as i64,
                    },
                    MechanismName::Piecewise,
                ),
                _ => (MetricKind::Count { max: 1 + pick(500, &mut rng) as u64 }, MechanismName::Duchi),
            };
            let mut m = Metric::new(
                &format!("metric {i}"),
                kind,
                CategoryId::new(["usage", "energy"][i % 2]).unwrap(),
            )
            .purposes(
                purposes
                    .iter()
                    .filter(|_| next(&mut rng).is_multiple_of(2))
                    .cloned()
                    .chain([purposes[0].clone()]),
            )
            .recipients(
                recipients
                    .iter()
                    .filter(|_| next(&mut rng).is_multiple_of(2))
                    .cloned()
                    .chain([recipients[i % nr].clone()]),
            )
            .max_hold(["P30D", "P6M", "P1Y", "P2Y"][pick(4, &mut rng)].parse().unwrap())
            .sensitivity([Sensitivity::Low, Sensitivity::High][i % 2]);
            m = if pick(3, &mut rng) == 0 {
                m.pseudonymous()
            } else {
                m.ldp(["0.5", "1", "2", "1.25"][pick(4, &mut rng)].parse().unwrap(), mech)
            };
            b = b.metric(MetricId::new(&format!("m{i}.x")).unwrap(), m);
        }
        b.build().unwrap()
    })
}

fn rand_chacha_seed(seed: u64) -> u64 {
    seed | 1
}

fn next(s: &mut u64) -> u64 {
    // xorshift64*: deterministic choices inside a strategy, seeded by proptest.
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Writes `table` as TOML with every table and key in a random order, random blank
/// lines, comments and spacing, and every id list shuffled (they are sets).
fn scrambled_toml(table: &Table, rng: &mut TestRng) -> String {
    let mut out = String::new();
    let pad = |rng: &mut TestRng| " ".repeat(rng.random_range(0..3));
    let mut scalars: Vec<(&String, &Value)> = table.iter().filter(|(_, v)| !v.is_table()).collect();
    scalars.shuffle(rng);
    for (k, v) in scalars {
        writeln!(out, "{k}{}={}{v}", pad(rng), pad(rng)).unwrap();
    }
    let mut sections: Vec<(String, &Table)> = Vec::new();
    for (k, v) in table.iter().filter(|(_, v)| v.is_table()) {
        let inner = v.as_table().unwrap();
        if k == "limits" {
            sections.push((k.clone(), inner));
        } else {
            for (id, t) in inner {
                sections.push((format!("{k}.\"{id}\""), t.as_table().unwrap()));
            }
        }
    }
    sections.shuffle(rng);
    for (header, t) in sections {
        writeln!(out, "\n# a comment{}\n[{header}]", pad(rng)).unwrap();
        let mut keys: Vec<(&String, &Value)> = t.iter().collect();
        keys.shuffle(rng);
        for (k, v) in keys {
            let v = match v {
                Value::Array(a) if k == "purposes" || k == "recipients" => {
                    let mut a = a.clone();
                    a.shuffle(rng);
                    Value::Array(a)
                }
                other => other.clone(),
            };
            writeln!(
                out,
                "{}{k}{}={}{v}{}",
                pad(rng),
                pad(rng),
                pad(rng),
                if rng.random_bool(0.3) { " # c" } else { "" }
            )
            .unwrap();
        }
    }
    out
}

/// One change of meaning, chosen by `which`, applied to the TOML table; `None` when the
/// catalogue has no item for it.
fn mutate(table: &mut Table, which: usize, pick: usize) -> Option<&'static str> {
    let metrics = table.get_mut("metrics")?.as_table_mut()?;
    let keys: Vec<String> = metrics.keys().cloned().collect();
    let m = metrics.get_mut(&keys[pick % keys.len()])?.as_table_mut()?;
    let label = match which {
        0 => {
            m.insert("description".into(), Value::String("another description".into()));
            "metric description"
        }
        1 => {
            let max_hold = m["max_hold"].as_str()?.to_string();
            m.insert(
                "max_hold".into(),
                Value::String(if max_hold == "P30D" { "P31D" } else { "P30D" }.into()),
            );
            "max hold"
        }
        2 => {
            let eps = m.get("epsilon")?.as_str()?.to_string();
            m.insert("epsilon".into(), Value::String(if eps == "0.5" { "0.75" } else { "0.5" }.into()));
            "epsilon"
        }
        3 => {
            let labels = m.get_mut("labels")?.as_array_mut()?;
            labels.swap(0, 1);
            "label order"
        }
        4 => {
            let s = m["sensitivity"].as_str()?.to_string();
            m.insert("sensitivity".into(), Value::String(if s == "low" { "medium" } else { "low" }.into()));
            "sensitivity"
        }
        5 => {
            m.insert("time_precision".into(), Value::String("PT2H".into()));
            "time precision"
        }
        6 => {
            let recipients = m.get_mut("recipients")?.as_array_mut()?;
            if recipients.len() < 2 {
                return None;
            }
            recipients.pop();
            "audience"
        }
        7 => {
            let max = m.get("max")?.as_integer()?;
            m.insert("max".into(), Value::Integer(max + 1));
            "range"
        }
        8 => {
            table.insert("version".into(), Value::Integer(table["version"].as_integer()? + 1));
            "version"
        }
        9 => {
            let p = table.get_mut("purposes")?.as_table_mut()?.iter_mut().next()?.1.as_table_mut()?;
            let lb = p["legal_basis"].as_str()?.to_string();
            p.insert(
                "legal_basis".into(),
                Value::String(if lb == "consent" { "contract" } else { "consent" }.into()),
            );
            "legal basis"
        }
        10 => {
            let r = table.get_mut("recipients")?.as_table_mut()?.iter_mut().next()?.1.as_table_mut()?;
            r.insert("country".into(), Value::String("ZZ".into()));
            "country"
        }
        _ => {
            let r = table.get_mut("recipients")?.as_table_mut()?.iter_mut().next()?.1.as_table_mut()?;
            let role = r["role"].as_str()?.to_string();
            r.insert(
                "role".into(),
                Value::String(if role == "processor" { "controller" } else { "processor" }.into()),
            );
            "role"
        }
    };
    Some(label)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn digest_ignores_order_and_formatting(c in arb_catalogue(), seed in any::<[u8; 32]>()) {
        let table: Table = toml::from_str(&c.to_toml_string().unwrap()).unwrap();
        let mut rng = TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &seed);
        let text = scrambled_toml(&table, &mut rng);
        let again = Catalogue::from_toml_str(&text).unwrap();
        prop_assert_eq!(again.digest(), c.digest(), "{}", text);
    }

    #[test]
    fn digest_changes_with_meaning(c in arb_catalogue(), which in 0usize..12, pick in any::<usize>()) {
        let mut table: Table = toml::from_str(&c.to_toml_string().unwrap()).unwrap();
        if let Some(what) = mutate(&mut table, which, pick) {
            let changed = Catalogue::from_toml_str(&toml::to_string(&table).unwrap()).unwrap();
            prop_assert_ne!(changed.digest(), c.digest(), "{} did not change the digest", what);
        }
    }

    #[test]
    fn canonical_and_toml_forms_round_trip(c in arb_catalogue()) {
        prop_assert_eq!(&Catalogue::from_canonical_bytes(&c.canonical_bytes()).unwrap(), &c);
        prop_assert_eq!(&Catalogue::from_toml_str(&c.to_toml_string().unwrap()).unwrap(), &c);
    }

    #[test]
    fn truncated_canonical_bytes_are_rejected(c in arb_catalogue(), cut in any::<prop::sample::Index>()) {
        let bytes = c.canonical_bytes();
        let n = cut.index(bytes.len());
        prop_assert!(Catalogue::from_canonical_bytes(&bytes[..n]).is_err());
    }
}

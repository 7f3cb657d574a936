//! A realistic made-up report (a thermostat fleet), for docs, tests and trying renderers.

use confiance::Timestamp;

use super::{
    AccessRow, BudgetRow, EstimateRow, Header, LogStatus, PurposeBasis, RecipientSummary, ReportData,
    RetentionKind, RetentionRow, SpentSummary,
};

const DAY: u64 = 86_400;

fn day(n: u64) -> Timestamp {
    // 2027-01-01T00:00:00Z plus `n` days.
    Timestamp::from_secs(1_798_761_600 + n * DAY)
}

pub(super) fn demo() -> ReportData {
    let mut d = ReportData::new(Header {
        title: "Thermostat fleet — auditor report".into(),
        catalogue_name: "thermostat".into(),
        catalogue_version: 3,
        catalogue_digest_hex: "9f2c4e71a0b35d86c1e7f04a2b9d6e3810c5f7a94e2b1d08c6a3f5e7091b2d4c".into(),
        generated_at: day(151).saturating_add_secs(9 * 3_600 + 30 * 60),
        at: day(151),
        as_known_at: None,
        horizon: None,
    });
    let access =
        |recipient: &str, metric: &str, subject: &str, start: u64, end: Option<u64>, hold_days: u64| {
            AccessRow {
                recipient: recipient.into(),
                metric: metric.into(),
                subject: subject.into(),
                window_start: day(start),
                window_end: end.map(day),
                hold_secs: hold_days * DAY,
                hold: Some(format!("P{hold_days}D")),
            }
        };
    d.access = vec![
        access("brand-a-cloud", "indoor_temp", "brand-a devices (anonymous)", 0, None, 30),
        access("brand-a-cloud", "setpoint", "subject 3f9a…c2", 10, Some(95), 30),
        access("brand-a-cloud", "heating_on", "subject 3f9a…c2", 10, Some(95), 14),
        access("grid-operator", "heating_on", "all brands (anonymous)", 31, None, 90),
        access("grid-operator", "indoor_temp", "all brands (anonymous)", 31, Some(120), 90),
        access("research-lab", "indoor_temp", "opted-in cohort (anonymous)", 59, Some(140), 180),
        access("research-lab", "setpoint", "subject 81d0…7e", 59, Some(104), 60),
    ];
    let budget = |metric: &str, eps: f64, per: f64, received: u64, median: f64, max: f64| BudgetRow {
        metric: metric.into(),
        epsilon_per_report: eps,
        budget_per_period: per,
        period_secs: DAY,
        reports_received: received,
        spent: Some(SpentSummary { devices: 100_000, min: 0.0, median, p90: (median + max) / 2.0, max }),
    };
    d.budgets = vec![
        budget("indoor_temp", 0.5, 2.0, 2_391_204, 1.5, 2.0),
        budget("heating_on", 0.25, 1.0, 1_804_339, 0.5, 1.0),
        BudgetRow { spent: None, ..budget("setpoint", 1.0, 1.0, 96_112, 0.0, 0.0) },
    ];
    let est = |metric: &str, label: &str, estimate: f64, se: f64, truth: f64, n: u64| EstimateRow {
        metric: metric.into(),
        label: label.into(),
        estimate,
        ci95_low: estimate - 1.96 * se,
        ci95_high: estimate + 1.96 * se,
        std_error: se,
        true_value: Some(truth),
        n,
    };
    d.estimates = vec![
        est("indoor_temp", "mean", 20.46, 0.031, 20.41, 99_871),
        est("heating_on", "off", 0.412, 0.0061, 0.405, 99_871),
        est("heating_on", "eco", 0.247, 0.0058, 0.251, 99_871),
        est("heating_on", "comfort", 0.341, 0.0060, 0.344, 99_871),
        est("setpoint", "mean", 19.8, 0.12, 19.93, 4_112),
    ];
    let part = |item: &str,
                metric: &str,
                records: Option<u64>,
                from: u64,
                deadline: u64,
                purged: Option<u64>,
                hold: &str| {
        RetentionRow {
            item: item.into(),
            kind: RetentionKind::Partition,
            metric: metric.into(),
            records,
            collected_from: Some(day(from)),
            deadline: day(deadline),
            hold: Some(hold.into()),
            purged_at: purged.map(day),
            overdue_by_secs: None,
        }
    };
    d.retention = vec![
        part("indoor_temp 2027-01 / brand-a-cloud", "indoor_temp", None, 0, 61, Some(61), "P1M"),
        RetentionRow {
            overdue_by_secs: Some(12 * DAY + 6 * 3_600),
            ..part("heating_on 2027-02 / grid-operator", "heating_on", Some(2_700_000), 31, 139, None, "P3M")
        },
        part("indoor_temp 2027-03 / research-lab", "indoor_temp", Some(1_200_000), 59, 270, None, "P6M"),
        RetentionRow {
            kind: RetentionKind::Records,
            ..part("subject 3f9a…c2 / brand-a-cloud", "setpoint", Some(412), 10, 125, None, "P90D")
        },
    ];
    // The overdue partition's deadline passed 12 days 6 hours before `at`.
    if let Some(r) = d.retention.get_mut(1) {
        r.deadline = day(151).saturating_sub_secs(12 * DAY + 6 * 3_600);
    }
    d.log = Some(LogStatus {
        tree_size: 1_048_576,
        root_hex: "5be0f1c2a3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e".into(),
        checkpoint_verified: true,
        consistency_verified: Some(true),
        inclusion_checked: 64,
        inclusion_failed: 0,
        message:
            "Checkpoint signature, consistency with the previous checkpoint and 64 inclusion proofs verified."
                .into(),
        signer_key_hex: Some("8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c".into()),
    });
    let purpose = |p: &str, b: &str| PurposeBasis { purpose: p.into(), legal_basis: b.into() };
    d.summary = vec![
        RecipientSummary {
            recipient: "brand-a-cloud".into(),
            name: "Brand A Cloud".into(),
            role: "controller".into(),
            metrics: vec!["heating_on".into(), "indoor_temp".into(), "setpoint".into()],
            purposes: vec![purpose("product-improvement", "consent"), purpose("service", "contract")],
            from: Some(day(0)),
            until: None,
            open_until_withdrawn: true,
            longest_hold: Some("P1M".into()),
            partitions_held: 120,
            records_held: 840,
            releases: 6,
            records_disclosed: 212,
            overdue: 0,
            purged: 35,
        },
        RecipientSummary {
            recipient: "grid-operator".into(),
            name: "Grid Operator".into(),
            role: "third-party".into(),
            metrics: vec!["heating_on".into(), "indoor_temp".into()],
            purposes: vec![purpose("grid-balancing", "consent")],
            from: Some(day(31)),
            until: None,
            open_until_withdrawn: true,
            longest_hold: Some("P3M".into()),
            partitions_held: 240,
            records_held: 0,
            releases: 20,
            records_disclosed: 0,
            overdue: 1,
            purged: 12,
        },
        RecipientSummary {
            recipient: "research-lab".into(),
            name: "Research Lab".into(),
            role: "third-party".into(),
            metrics: vec!["indoor_temp".into(), "setpoint".into()],
            purposes: vec![purpose("research", "consent")],
            from: Some(day(59)),
            until: Some(day(140)),
            open_until_withdrawn: false,
            longest_hold: Some("P6M".into()),
            partitions_held: 81,
            records_held: 45,
            releases: 2,
            records_disclosed: 45,
            overdue: 0,
            purged: 0,
        },
    ];
    d.notes = vec![
        "Simulated fleet of 100 000 thermostats over five months; true values are known because the data is simulated."
            .into(),
    ];
    d
}

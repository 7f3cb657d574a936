//! Renderers on arbitrary data: never panic (NaN, ±∞, instants up to `u64::MAX`, empty and
//! hostile strings), always escape, always deterministic, and JSON either round-trips or is
//! refused with `InvalidNumber`.

use confiance::Timestamp;
use confiance_aggregator::report::{
    self, AccessRow, BudgetRow, EstimateRow, Header, LogStatus, ReportData, ReportError, RetentionKind,
    RetentionRow, SpentSummary,
};
use proptest::prelude::*;

fn instant() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        4 => (1_790_000_000u64..1_830_000_000).prop_map(Timestamp::from_secs),
        1 => any::<u64>().prop_map(Timestamp::from_secs),
        1 => Just(Timestamp::EPOCH),
        1 => Just(Timestamp::MAX),
    ]
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![4 => -1e3..1e3f64, 1 => any::<f64>(), 1 => Just(f64::NAN), 1 => Just(0.0)]
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 <>&|'\"*_`\\\\\n-]{0,24}"
}

fn access() -> impl Strategy<Value = AccessRow> {
    (text(), text(), text(), instant(), proptest::option::of(instant()), any::<u64>()).prop_map(
        |(r, metric, subject, window_start, window_end, hold_secs)| AccessRow {
            recipient: format!("<script>{r}"),
            metric,
            subject,
            window_start,
            window_end,
            hold_secs,
            hold: None,
        },
    )
}

fn budget() -> impl Strategy<Value = BudgetRow> {
    (text(), number(), number(), any::<u64>(), any::<u64>(), proptest::option::of((number(), number())))
        .prop_map(|(metric, e, b, period_secs, reports_received, spent)| BudgetRow {
            metric,
            epsilon_per_report: e,
            budget_per_period: b,
            period_secs,
            reports_received,
            spent: spent.map(|(median, max)| SpentSummary { devices: 7, min: 0.0, median, p90: max, max }),
        })
}

fn estimate() -> impl Strategy<Value = EstimateRow> {
    (
        prop_oneof![Just("m1".to_string()), Just("m2".to_string()), text()],
        text(),
        number(),
        number(),
        number(),
        proptest::option::of(number()),
    )
        .prop_map(|(metric, label, estimate, a, b, true_value)| EstimateRow {
            metric,
            label,
            estimate,
            ci95_low: a.min(b),
            ci95_high: a.max(b),
            std_error: (b - a).abs() / 3.92,
            true_value,
            n: 10,
        })
}

fn retention() -> impl Strategy<Value = RetentionRow> {
    (
        text(),
        instant(),
        proptest::option::of(instant()),
        proptest::option::of(instant()),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(item, deadline, collected_from, purged_at, overdue_by_secs)| RetentionRow {
            item,
            kind: RetentionKind::Partition,
            metric: "m".into(),
            records: Some(1),
            collected_from,
            deadline,
            hold: None,
            purged_at,
            overdue_by_secs,
        })
}

fn report_data() -> impl Strategy<Value = ReportData> {
    (
        (text(), instant(), proptest::option::of(instant()), proptest::option::of(instant())),
        proptest::collection::vec(access(), 0..8),
        proptest::collection::vec(budget(), 0..4),
        proptest::collection::vec(estimate(), 0..8),
        proptest::collection::vec(retention(), 0..6),
        proptest::option::of((any::<bool>(), text())),
    )
        .prop_map(|((title, at, as_known_at, horizon), access, budgets, estimates, retention, log)| {
            let mut d = ReportData::new(Header {
                title,
                catalogue_name: "c".into(),
                catalogue_version: 1,
                catalogue_digest_hex: "00".into(),
                generated_at: at,
                at,
                as_known_at,
                horizon,
            });
            d.access = access;
            d.budgets = budgets;
            d.estimates = estimates;
            d.retention = retention;
            d.log = log.map(|(ok, message)| LogStatus {
                tree_size: 3,
                root_hex: "ab".into(),
                checkpoint_verified: ok,
                consistency_verified: None,
                inclusion_checked: 1,
                inclusion_failed: 0,
                message,
                signer_key_hex: None,
            });
            d
        })
}

proptest! {
    // Each case renders three formats (a few ms); 256 cases cover the odd values above.
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn renderers_are_total_escaped_and_deterministic(d in report_data()) {
        let html = report::render_html(&d);
        prop_assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
        prop_assert!(!html.contains("<script"));
        prop_assert!(!html.contains("class=\"chart-error\""), "a chart failed to draw");
        prop_assert_eq!(&html, &report::render_html(&d));
        let md = report::render_markdown(&d);
        prop_assert!(!md.contains("<script"));
        prop_assert_eq!(&md, &report::render_markdown(&d));
        match report::render_json(&d) {
            Ok(json) => prop_assert_eq!(ReportData::from_json(&json).unwrap(), d),
            Err(e) => prop_assert!(matches!(e, ReportError::InvalidNumber(_)), "{e}"),
        }
    }
}

//! The report renderers: JSON round-trips, Markdown lists every row, HTML escapes every
//! text, output is deterministic, and every chart draws its data (not an empty frame).

use confiance::Timestamp;
use confiance_aggregator::report::{
    self, AccessRow, BudgetRow, EstimateRow, Header, ReportData, ReportError, SCHEMA_VERSION, SpentSummary,
};

const NASTY: &str = "Bob's <script>alert(\"x\")</script> & Co | ltd";

fn t(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn sample() -> ReportData {
    let mut d = ReportData::demo();
    d.access.push(AccessRow {
        recipient: NASTY.into(),
        metric: "indoor_temp".into(),
        subject: "<b>cohort</b> & friends".into(),
        window_start: t("2027-02-10"),
        window_end: None,
        hold_secs: 7 * 86_400,
        hold: None,
    });
    d.notes.push(format!("Note about {NASTY}"));
    d.header.as_known_at = Some(t("2027-05-31T12:00:00Z"));
    d
}

/// Every `<svg …>…</svg>` in `html`.
fn svgs(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<svg") {
        let tail = &rest[start..];
        let end = tail.find("</svg>").unwrap() + "</svg>".len();
        out.push(&tail[..end]);
        rest = &tail[end..];
    }
    out
}

fn svg_id(svg: &str) -> &str {
    svg.split("id=\"").nth(1).unwrap().split('"').next().unwrap()
}

/// Filled rectangles of one of `colours` that are not legend swatches (15×14 px).
fn data_rects(svg: &str, colours: &[&str]) -> usize {
    svg.split("<rect ")
        .skip(1)
        .filter(|r| colours.iter().any(|c| r.contains(&format!("fill=\"{c}\""))))
        .filter(|r| !(r.contains("width=\"15\"") && r.contains("height=\"14\"")))
        .count()
}

#[test]
fn json_round_trips() {
    let d = sample();
    let json = report::render_json(&d).unwrap();
    assert!(json.contains(&format!("\"schema_version\": {SCHEMA_VERSION}")));
    for field in [
        "\"header\"",
        "\"access\"",
        "\"window_end\": null",
        "\"hold_secs\"",
        "\"ci95_low\"",
        "\"overdue_by_secs\"",
        "\"root_hex\"",
        "\"kind\": \"partition\"",
    ] {
        assert!(json.contains(field), "JSON lacks {field}");
    }
    assert_eq!(ReportData::from_json(&json).unwrap(), d);

    let mut empty = ReportData::new(d.header.clone());
    empty.header.horizon = Some(t("2028-01-01"));
    let back = ReportData::from_json(&report::render_json(&empty).unwrap()).unwrap();
    assert_eq!(back, empty);
}

#[test]
fn json_rejects_other_schemas_and_non_finite_numbers() {
    let json =
        report::render_json(&sample()).unwrap().replace("\"schema_version\": 1", "\"schema_version\": 99");
    assert!(matches!(ReportData::from_json(&json), Err(ReportError::UnsupportedSchema { found: 99 })));
    assert!(matches!(ReportData::from_json("{\"schema_version\": 1}"), Err(ReportError::Json(_))));

    let mut d = sample();
    d.estimates[0].std_error = f64::NAN;
    assert!(matches!(report::render_json(&d), Err(ReportError::InvalidNumber(m)) if m.contains("std_error")));
    let mut d = sample();
    d.estimates[0].ci95_low = d.estimates[0].ci95_high + 1.0;
    assert!(report::render_json(&d).is_err());
    // HTML and Markdown still render what they can.
    assert!(report::render_html(&d).contains("</html>"));
}

#[test]
fn markdown_lists_every_row() {
    let d = sample();
    let md = report::render_markdown(&d);
    let lines: Vec<&str> = md.lines().collect();
    let has_row = |cells: &[String]| {
        lines.iter().any(|l| l.starts_with('|') && cells.iter().all(|c| l.contains(c.as_str())))
    };
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('|', "\\|");
    for a in &d.access {
        assert!(has_row(&[esc(&a.recipient), esc(&a.metric), esc(&a.subject)]), "access row {a:?}");
    }
    assert!(has_row(&[esc(NASTY), "until withdrawn".into(), "withdrawal + 7 days".into()]));
    for b in &d.budgets {
        assert!(
            has_row(&[format!("| {} |", b.metric), b.reports_received.to_string()]),
            "budget {}",
            b.metric
        );
    }
    for e in &d.estimates {
        assert!(md.contains(&format!("### {}", e.metric)));
        assert!(has_row(&[format!("| {} |", e.label), e.n.to_string(), "| yes |".into()]), "estimate {e:?}");
    }
    for r in &d.retention {
        assert!(has_row(&[esc(&r.item), cell(r.records)]), "retention {}", r.item);
    }
    assert!(has_row(&["1048576".into(), "verified".into()]));
    assert!(md.contains("Overdue items: **1**"));
    assert!(!md.contains("<script>") && md.contains(&esc(NASTY)));
    // A table row has as many cells as its header: escaped pipes do not split cells.
    let nasty_row = lines.iter().find(|l| l.starts_with('|') && l.contains("Bob's")).unwrap();
    assert_eq!(nasty_row.replace("\\|", "").matches('|').count(), 8, "{nasty_row}");
}

#[test]
fn html_escapes_all_text() {
    let d = sample();
    let html = report::render_html(&d);
    assert!(!html.contains("<script"), "raw <script in the page");
    assert!(!html.contains("<b>cohort"), "raw markup from a subject label");
    let escaped = "Bob&#39;s &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co | ltd";
    // In the table, in the notes, and in the access chart's title (SVG text and aria-label).
    assert!(
        html.matches(escaped).count() >= 3,
        "escaped name appears {} times",
        html.matches(escaped).count()
    );
    let chart = svgs(&html).into_iter().find(|s| s.contains("aria-label=\"Access timeline — Bob")).unwrap();
    assert!(chart.contains("&lt;script&gt;"), "SVG text escaped");
    // No JavaScript, no fetch of anything outside the file.
    for bad in ["<script", "javascript:", "src=", "href=\"http", "@import", "url("] {
        assert!(!html.contains(bad), "page contains {bad}");
    }
    assert!(html.contains("Content-Security-Policy"));
}

#[test]
fn output_is_deterministic() {
    let a = sample();
    let b = a.clone();
    assert_eq!(report::render_html(&a), report::render_html(&b));
    assert_eq!(report::render_markdown(&a), report::render_markdown(&b));
    assert_eq!(report::render_json(&a).unwrap(), report::render_json(&b).unwrap());
    // And through a JSON round trip (what an auditor re-rendering a stored report does).
    let c = ReportData::from_json(&report::render_json(&a).unwrap()).unwrap();
    assert_eq!(report::render_html(&a), report::render_html(&c));
    // The output does change with the data.
    let mut d = a.clone();
    d.estimates[0].estimate += 0.01;
    assert_ne!(report::render_html(&a), report::render_html(&d));
}

#[test]
fn every_chart_draws_its_data() {
    let d = sample();
    let html = report::render_html(&d);
    let charts = svgs(&html);
    let ids: Vec<&str> = charts.iter().map(|s| svg_id(s)).collect();
    assert_eq!(
        ids,
        [
            "chart-access-1",
            "chart-access-2",
            "chart-access-3",
            "chart-access-4",
            "chart-budget",
            "chart-estimates-1",
            "chart-estimates-2",
            "chart-estimates-3",
            "chart-retention"
        ]
    );
    let mut recipients: Vec<&str> = d.access.iter().map(|a| a.recipient.as_str()).collect();
    recipients.sort_unstable();
    recipients.dedup();
    for (svg, r) in charts.iter().zip(&recipients) {
        let rows = d.access.iter().filter(|a| a.recipient == *r).count();
        let bars = data_rects(svg, &["#1F77B4", "#2CA02C"]);
        assert_eq!(bars, rows, "{}: one window bar per access row", svg_id(svg));
        assert!(svg.contains("<title>") && svg.contains("date (UTC)") && svg.contains(">\n2027-03-01\n<"));
    }
    let budget = charts[4];
    // A budget bar per metric, and spent bars for the two metrics with a spent summary.
    assert_eq!(data_rects(budget, &["#D9D9D9"]), d.budgets.len());
    assert_eq!(data_rects(budget, &["#E6550D"]), 2);
    for (k, metric) in ["indoor_temp", "heating_on", "setpoint"].iter().enumerate() {
        let svg = charts[5 + k];
        let n = d.estimates.iter().filter(|e| e.metric == *metric).count();
        // One filled dot per estimate plus the legend's.
        assert_eq!(svg.matches("<circle ").count(), n + 1, "{metric}");
        // Interval line + two caps per estimate, then the true-value crosses (two strokes each).
        assert!(svg.matches("<polyline ").count() >= 3 * n + 2 * n, "{metric}");
    }
    let retention = charts[8];
    let overdue = d.retention.iter().filter(|r| r.overdue_by_secs.is_some()).count();
    assert_eq!(data_rects(retention, &["#D62728"]), overdue);
    assert_eq!(data_rects(retention, &["#1F77B4", "#BDBDBD"]), d.retention.len());
    assert!(retention.contains("OVERDUE · heating_on"));
}

#[test]
fn empty_sections_render_without_charts() {
    let header = Header {
        title: "Nothing yet".into(),
        catalogue_name: "thermostat".into(),
        catalogue_version: 1,
        catalogue_digest_hex: "ab".repeat(32),
        generated_at: t("2027-01-01"),
        at: t("2027-01-01"),
        as_known_at: None,
        horizon: None,
    };
    let d = ReportData::new(header);
    let html = report::render_html(&d);
    assert!(svgs(&html).is_empty());
    for msg in
        ["NOT CHECKED", "No recipient has access", "No privacy budget", "No estimates", "No retained data"]
    {
        assert!(html.contains(msg), "{msg}");
        assert!(report::render_markdown(&d).contains(msg), "{msg}");
    }
}

#[test]
fn big_and_odd_data_is_capped_and_does_not_break() {
    let mut d = sample();
    // 100 estimates of one metric, one with a NaN, one degenerate interval; and a
    // budget overspent by a device.
    d.estimates = (0..100)
        .map(|i| EstimateRow {
            metric: "bucketed".into(),
            label: format!("bucket {i:03} with a rather long label that will be truncated in the chart"),
            estimate: if i == 7 { f64::NAN } else { f64::from(i) },
            ci95_low: f64::from(i) - 1.0,
            ci95_high: if i == 8 { f64::from(i) - 1.0 } else { f64::from(i) + 1.0 },
            std_error: 0.5,
            true_value: None,
            n: 10,
        })
        .collect();
    d.budgets.push(BudgetRow {
        metric: "overspent".into(),
        epsilon_per_report: 0.5,
        budget_per_period: 1.0,
        period_secs: 7 * 86_400,
        reports_received: 3,
        spent: Some(SpentSummary { devices: 3, min: 0.5, median: 0.5, p90: 1.5, max: 1.5 }),
    });
    let html = report::render_html(&d);
    assert!(
        !html.contains("class=\"chart-error\""),
        "a chart failed to draw: {}",
        html.split("class=\"chart-error\"").nth(1).unwrap_or("").chars().take(300).collect::<String>()
    );
    assert!(html.contains("The chart shows 40 of 100 estimates; the table lists them all."));
    assert!(html.contains("bucket 099 with a rather long label"), "the table keeps every row in full");
    let budget = svgs(&html).into_iter().find(|s| svg_id(s) == "chart-budget").unwrap();
    assert!(budget.contains("over budget") && data_rects(budget, &["#A50F15"]) == 1);
    assert!(html.contains("<tr class=\"overdue\"><td>overspent</td>"));
}

/// The long tables (access windows, retention) sit in an appendix after the notes,
/// linked from the summary and from their sections; each retention row names its hold
/// as written (issue #19). Fails before the change: the tables were inline.
#[test]
fn long_tables_are_in_a_linked_appendix() {
    let d = ReportData::demo();
    let html = report::render_html(&d);
    let pos = |needle: &str| html.find(needle).unwrap_or_else(|| panic!("{needle} missing"));
    let (summary, notes, appendix) =
        (pos("id=\"summary\""), pos("id=\"notes\""), pos("<section id=\"appendix\""));
    assert!(summary < notes && notes < appendix);
    for table in ["<th scope=\"col\">Window start</th>", "<th scope=\"col\">Deadline</th>"] {
        assert_eq!(html.matches(table).count(), 1, "{table} once");
        assert!(pos(table) > appendix, "{table} in the appendix");
    }
    let summary_text = &html[summary..pos("id=\"log\"")];
    for target in ["appendix-access", "appendix-retention"] {
        assert!(summary_text.contains(&format!("href=\"#{target}\"")), "the summary links {target}");
        assert_eq!(html.matches(&format!("href=\"#{target}\"")).count(), 2, "summary and section");
        assert!(html.contains(&format!("id=\"{target}\"")));
    }
    let retention = &html[pos("id=\"appendix-retention\"")..];
    for hold in ["P1M", "P3M", "P6M", "P90D"] {
        assert!(retention.contains(&format!("<td>{hold}</td>")), "{hold}");
    }
}

/// The Markdown report has the HTML report's appendix: the summary first, the access and
/// retention tables once each, after the notes, under headings whose anchors the summary
/// and the sections link to (issue #19: the Markdown report put its long tables inline).
#[test]
fn markdown_long_tables_are_in_a_linked_appendix() {
    let d = ReportData::demo();
    let md = report::render_markdown(&d);
    let pos = |needle: &str| md.find(needle).unwrap_or_else(|| panic!("{needle} missing"));
    let (summary, access, retention, notes, appendix) =
        (pos("## Summary"), pos("## Access"), pos("## Retention"), pos("## Notes"), pos("\n## Appendix\n"));
    assert!(summary < access && access < retention && retention < notes && notes < appendix);
    for head in ["| Window start |", "| Deadline |"] {
        assert_eq!(md.matches(head).count(), 1, "{head} once");
        assert!(pos(head) > appendix, "{head} in the appendix");
    }
    // Each anchor is the GitHub slug of its heading, linked from the summary and its section.
    for (heading, slug, section) in [
        ("### A. Access windows", "a-access-windows", access),
        ("### B. Retention: partitions and record sets", "b-retention-partitions-and-record-sets", retention),
    ] {
        assert!(pos(heading) > appendix);
        let gh: String = heading
            .trim_start_matches('#')
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        assert_eq!(gh, slug);
        let link = format!("](#{slug})");
        assert_eq!(md.matches(&link).count(), 2, "{slug}: summary and section");
        assert!(md[summary..access].contains(&link), "the summary links {slug}");
        assert!(md[section..notes].contains(&link), "its section links {slug}");
    }
    let appendix_text = &md[appendix..];
    for r in &d.retention {
        assert!(appendix_text.contains(&format!("| {} |", cell(r.records))), "retention row {}", r.item);
    }
    for hold in ["P1M", "P3M", "P6M", "P90D"] {
        assert!(appendix_text.contains(&format!("| {hold} |")), "{hold}");
    }
}

/// A retention row's Records cell: the count, or "—" when the store no longer holds it.
fn cell(records: Option<u64>) -> String {
    records.map_or_else(|| "—".to_string(), |n| n.to_string())
}

//! The Markdown report: the HTML report's content with every chart replaced by its table.

use core::fmt::Write as _;

use super::charts::by_metric;
use super::text::{duration, instant, markdown_cell as cell, num};
use super::{ReportData, RetentionKind, SCHEMA_VERSION};

/// The report as Markdown (GitHub-flavoured tables), one table per chart of the HTML report.
/// Every row of the data appears; text is escaped for table cells.
///
/// ```
/// use confiance_aggregator::report::{render_markdown, ReportData};
/// let md = render_markdown(&ReportData::demo());
/// assert!(md.starts_with("# ") && md.contains("## Access: who sees what, for how long"));
/// ```
#[must_use]
pub fn render_markdown(data: &ReportData) -> String {
    let mut out = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail.
    let _ = write_md(&mut out, data);
    out
}

fn table(o: &mut String, head: &[&str], rows: impl Iterator<Item = Vec<String>>) -> core::fmt::Result {
    writeln!(o, "| {} |", head.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | "))?;
    writeln!(o, "|{}", "---|".repeat(head.len()))?;
    for r in rows {
        writeln!(o, "| {} |", r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | "))?;
    }
    o.push('\n');
    Ok(())
}

fn write_md(o: &mut String, d: &ReportData) -> core::fmt::Result {
    let h = &d.header;
    writeln!(o, "# {}\n", cell(&h.title))?;
    let known = h
        .as_known_at
        .map_or_else(|| format!("as known at generation ({})", instant(h.generated_at)), instant);
    writeln!(o, "- Catalogue: {} v{}", cell(&h.catalogue_name), h.catalogue_version)?;
    writeln!(o, "- Catalogue digest: `{}`", h.catalogue_digest_hex.replace('`', ""))?;
    writeln!(o, "- About the instant (at): {}", instant(h.at))?;
    writeln!(o, "- As known at: {known}")?;
    writeln!(o, "- Generated: {}\n", instant(h.generated_at))?;

    o.push_str("## Audit log verification\n\n");
    match &d.log {
        None => o.push_str("**NOT CHECKED**: the audit log was not verified for this report.\n\n"),
        Some(l) => {
            let word = if l.all_verified() { "VERIFIED" } else { "FAILED" };
            writeln!(o, "**{word}**: {}\n", cell(&l.message))?;
            let yes_no = |b: bool| if b { "verified" } else { "FAILED" };
            table(
                o,
                &[
                    "Tree size",
                    "Root",
                    "Signed checkpoint",
                    "Consistency",
                    "Inclusion checked",
                    "Inclusion failed",
                ],
                core::iter::once(vec![
                    l.tree_size.to_string(),
                    l.root_hex.clone(),
                    yes_no(l.checkpoint_verified).into(),
                    l.consistency_verified.map_or("no earlier checkpoint", yes_no).into(),
                    l.inclusion_checked.to_string(),
                    l.inclusion_failed.to_string(),
                ]),
            )?;
        }
    }

    o.push_str("## Access: who sees what, for how long\n\n");
    if d.access.is_empty() {
        o.push_str("No recipient has access to anything at this instant.\n\n");
    } else {
        let mut rows: Vec<_> = d.access.iter().collect();
        rows.sort_by(|a, b| a.recipient.cmp(&b.recipient));
        table(
            o,
            &["Recipient", "Metric", "Subject or cohort", "Window start", "Window end", "Hold", "Sees until"],
            rows.iter().map(|r| {
                vec![
                    r.recipient.clone(),
                    r.metric.clone(),
                    r.subject.clone(),
                    instant(r.window_start),
                    r.window_end.map_or_else(|| "until withdrawn".into(), instant),
                    duration(r.hold_secs),
                    r.hold_until().map_or_else(|| format!("withdrawal + {}", duration(r.hold_secs)), instant),
                ]
            }),
        )?;
    }

    o.push_str("## Privacy budget per metric\n\n");
    if d.budgets.is_empty() {
        o.push_str("No privacy budget to report.\n\n");
    } else {
        let opt = |v: Option<f64>| v.map_or_else(|| "—".to_string(), num);
        table(
            o,
            &[
                "Metric",
                "ε per report",
                "Budget per period",
                "Period",
                "Reports received",
                "Devices",
                "Spent median",
                "Spent p90",
                "Spent max",
            ],
            d.budgets.iter().map(|b| {
                let s = b.spent.as_ref();
                vec![
                    b.metric.clone(),
                    num(b.epsilon_per_report),
                    num(b.budget_per_period),
                    duration(b.period_secs),
                    b.reports_received.to_string(),
                    s.map_or_else(|| "—".to_string(), |s| s.devices.to_string()),
                    opt(s.map(|s| s.median)),
                    opt(s.map(|s| s.p90)),
                    opt(s.map(|s| s.max)),
                ]
            }),
        )?;
    }

    o.push_str("## Estimates with 95% confidence intervals\n\n");
    if d.estimates.is_empty() {
        o.push_str("No estimates in this report.\n\n");
    }
    for (metric, rows) in by_metric(&d.estimates) {
        writeln!(o, "### {}\n", cell(metric))?;
        table(
            o,
            &["Label", "Estimate", "95% CI low", "95% CI high", "Std. error", "n", "True value", "Covered"],
            rows.iter().map(|e| {
                let (t, cov) = match e.true_value {
                    Some(t) => (num(t), if (e.ci95_low..=e.ci95_high).contains(&t) { "yes" } else { "no" }),
                    None => ("—".into(), "—"),
                };
                vec![
                    e.label.clone(),
                    num(e.estimate),
                    num(e.ci95_low),
                    num(e.ci95_high),
                    num(e.std_error),
                    e.n.to_string(),
                    t,
                    cov.into(),
                ]
            }),
        )?;
    }

    o.push_str("## Retention deadlines and overdue data\n\n");
    if d.retention.is_empty() {
        o.push_str("No retained data to report.\n\n");
    } else {
        let overdue = d.retention.iter().filter(|r| r.overdue_by_secs.is_some()).count();
        writeln!(o, "Overdue items: **{overdue}**\n")?;
        table(
            o,
            &["Item", "Kind", "Metric", "Records", "Collected from", "Deadline", "Purged", "Overdue by"],
            d.retention.iter().map(|r| {
                let kind = match r.kind {
                    RetentionKind::Partition => "anonymous partition",
                    RetentionKind::Records => "pseudonymous records",
                };
                vec![
                    r.item.clone(),
                    kind.into(),
                    r.metric.clone(),
                    r.records.to_string(),
                    r.collected_from.map_or_else(|| "—".to_string(), instant),
                    instant(r.deadline),
                    r.purged_at.map_or_else(|| "no".to_string(), instant),
                    r.overdue_by_secs.map_or_else(|| "—".to_string(), duration),
                ]
            }),
        )?;
    }

    o.push_str("## Notes\n\n");
    if d.notes.is_empty() {
        o.push_str("No notes.\n\n");
    }
    for n in &d.notes {
        writeln!(o, "{}\n", cell(n))?;
    }
    writeln!(o, "---\nconfiance auditor report · schema version {SCHEMA_VERSION} · all instants UTC")
}

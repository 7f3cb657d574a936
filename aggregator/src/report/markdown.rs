//! The Markdown report: the HTML report's content with every chart replaced by its table.

use core::fmt::Write as _;

use super::charts::by_metric;
use super::summary;
use super::table::{self, Cell, Row, Table};
use super::text::{instant, markdown_cell as cell};
use super::{ReportData, SCHEMA_VERSION};

/// The report as Markdown (GitHub-flavoured tables), one table per chart of the HTML report,
/// the long ones (access windows, retention) in an appendix at the end linked from the
/// summary and their sections, as in the HTML report. Every row of the data appears; text
/// is escaped for table cells.
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

/// The anchors of the appendix's headings "A. Access windows" and "B. Retention:
/// partitions and record sets".
const APPENDIX_ACCESS: &str = "a-access-windows";
const APPENDIX_RETENTION: &str = "b-retention-partitions-and-record-sets";

/// Writes `t` as a GitHub-flavoured table (row flags have no Markdown form).
fn table(o: &mut String, t: &Table) -> core::fmt::Result {
    writeln!(o, "| {} |", t.head.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | "))?;
    writeln!(o, "|{}", "---|".repeat(t.head.len()))?;
    for r in &t.rows {
        writeln!(o, "| {} |", r.cells.iter().map(|c| cell(c.text())).collect::<Vec<_>>().join(" | "))?;
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

    o.push_str("## Summary: who sees what, and for how long\n\n");
    if d.summary.is_empty() {
        o.push_str("_No recipient in this report._\n\n");
    }
    for s in &d.summary {
        writeln!(o, "### {} ({}, {})\n", cell(&s.name), cell(&s.recipient), cell(&s.role))?;
        for (k, v) in summary::lines(s) {
            writeln!(o, "- **{k}**: {}", cell(&v))?;
        }
        o.push('\n');
    }
    writeln!(
        o,
        "In detail: [Appendix A, every access window ({})](#{APPENDIX_ACCESS}); \
         [Appendix B, every partition and record set with its deadline ({})](#{APPENDIX_RETENTION}).\n",
        d.access.len(),
        d.retention.len()
    )?;

    o.push_str("## Audit log verification\n\n");
    match &d.log {
        None => o.push_str("**NOT CHECKED**: the audit log was not verified for this report.\n\n"),
        Some(l) => {
            let (_, word, what) = summary::log_badge(l);
            writeln!(o, "**{word}**: {}\n", cell(&l.message))?;
            writeln!(o, "{}\n", cell(&what))?;
            let yes_no = |b: bool| if b { "verified" } else { "FAILED" };
            let cells = [
                l.tree_size.to_string(),
                l.root_hex.clone(),
                yes_no(l.checkpoint_verified).into(),
                l.consistency_verified.map_or("no earlier checkpoint", yes_no).into(),
                l.inclusion_checked.to_string(),
                l.inclusion_failed.to_string(),
            ];
            let head = vec![
                "Tree size",
                "Root",
                "Signed checkpoint",
                "Consistency",
                "Inclusion checked",
                "Inclusion failed",
            ];
            let rows = vec![Row { flagged: false, cells: cells.into_iter().map(Cell::Text).collect() }];
            table(o, &Table { head, rows })?;
        }
    }

    o.push_str("## Access: who sees what, for how long\n\n");
    if d.access.is_empty() {
        o.push_str("No recipient has access to anything at this instant.\n\n");
    } else {
        writeln!(o, "[Appendix A: every access window ({} rows)](#{APPENDIX_ACCESS})\n", d.access.len())?;
    }

    o.push_str("## Privacy budget per metric\n\n");
    if d.budgets.is_empty() {
        o.push_str("No privacy budget to report.\n\n");
    } else {
        table(o, &table::budget(d))?;
    }

    o.push_str("## Estimates with 95% confidence intervals\n\n");
    if d.estimates.is_empty() {
        o.push_str("No estimates in this report.\n\n");
    }
    for (metric, rows) in by_metric(&d.estimates) {
        writeln!(o, "### {}\n", cell(metric))?;
        // Markdown always shows the truth columns (dashes where unknown).
        table(o, &table::estimates(&rows, true))?;
    }

    o.push_str("## Retention deadlines and overdue data\n\n");
    if d.retention.is_empty() {
        o.push_str("No retained data to report.\n\n");
    } else {
        let overdue = d.retention.iter().filter(|r| r.overdue_by_secs.is_some()).count();
        writeln!(o, "Overdue items: **{overdue}**\n")?;
        writeln!(o, "{}\n", cell(&summary::overdue_badge_text(d)))?;
        writeln!(
            o,
            "[Appendix B: every partition and record set with its hold and deadline ({} rows)](#{APPENDIX_RETENTION})\n",
            d.retention.len()
        )?;
    }

    o.push_str("## Notes\n\n");
    if d.notes.is_empty() {
        o.push_str("No notes.\n\n");
    }
    for n in &d.notes {
        writeln!(o, "{}\n", cell(n))?;
    }

    // The long tables last, as in the HTML report; linked by their headings' anchors
    // (GitHub's: lower case, punctuation dropped, spaces as hyphens).
    o.push_str("## Appendix\n\n### A. Access windows\n\n");
    if d.access.is_empty() {
        o.push_str("No access window.\n\n");
    } else {
        table(o, &table::access(d))?;
    }
    o.push_str("### B. Retention: partitions and record sets\n\n");
    if d.retention.is_empty() {
        o.push_str("No retained data.\n\n");
    } else {
        writeln!(o, "{}\n", table::RETENTION_KINDS)?;
        table(o, &table::retention(d))?;
    }
    writeln!(o, "---\nconfiance auditor report · schema version {SCHEMA_VERSION} · all instants UTC")
}

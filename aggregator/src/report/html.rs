//! The HTML report: one self-contained file — inline CSS, inline SVG, no JavaScript and no
//! external fetch (a Content-Security-Policy forbids both, should any text slip through).

use core::fmt::Write as _;

use super::charts::{self, Chart};
use super::summary;
use super::table::{self, Cell, Table};
use super::text::{html, instant};
use super::{ReportData, SCHEMA_VERSION};

pub(super) const CSS: &str = "\
:root{color-scheme:light}\
body{font-family:'DejaVu Sans',Verdana,sans-serif;color:#252525;background:#fafafa;margin:0;line-height:1.45}\
main{max-width:1080px;margin:0 auto;padding:24px 32px 48px;background:#fff}\
h1{font-size:1.7em;margin:0 0 .3em}h2{font-size:1.3em;margin:1.8em 0 .5em;border-bottom:2px solid #e3e3e3;padding-bottom:.2em}\
h3{font-size:1.05em;margin:1.2em 0 .4em}\
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1.2em;margin:0}\
dl.meta dt{font-weight:bold}dl.meta dd{margin:0;overflow-wrap:anywhere}\
code{font-family:'DejaVu Sans Mono',monospace;font-size:.9em}\
nav ul{display:flex;flex-wrap:wrap;gap:.4em 1.4em;padding:0;list-style:none}\
figure.chart{margin:1em 0;padding:0}figure.chart svg{max-width:100%;height:auto;display:block;border:1px solid #e3e3e3}\
figure.chart figcaption{font-size:.9em;color:#555;margin-top:.3em}\
table{border-collapse:collapse;width:100%;font-size:.88em;margin:.6em 0 1em}\
th,td{border:1px solid #d9d9d9;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}\
tr.overdue td{background:#fde0dd}\
.badge{display:inline-block;padding:.15em .6em;border-radius:.3em;font-weight:bold;color:#fff}\
.ok{background:#2c7a2c}.fail{background:#a50f15}.unknown{background:#737373}\
p.empty{color:#737373;font-style:italic}p.more{font-size:.92em}p.chart-error{color:#a50f15}\
footer{margin-top:2.5em;font-size:.85em;color:#737373}\
section.summary .recipient{border:1px solid #d9d9d9;border-radius:.4em;padding:.4em .9em;margin:.6em 0;break-inside:avoid}\
section.summary h3{margin:.3em 0}\
p.explain{font-size:.92em;color:#444;background:#f6f6f6;padding:.5em .8em;border-left:3px solid #bdbdbd}\
p.warn{font-size:.92em;background:#fff4e5;padding:.5em .8em;border-left:3px solid #e6550d}\
@media print{body{background:#fff;font-size:10pt}main{max-width:none;padding:0}nav{display:none}\
section{break-before:auto}section.summary{break-after:page}section.appendix{break-before:page}h2,h3{break-after:avoid}\
figure.chart,tr{break-inside:avoid}table{font-size:8.5pt}\
figure.chart svg{max-height:125mm;width:auto}\
section.appendix table{font-size:7pt;line-height:1.15}section.appendix th,section.appendix td{padding:.05em .3em}\
section.appendix td+td{white-space:nowrap}a{color:inherit;text-decoration:none}\
@page{size:A4;margin:14mm 12mm}}";

/// The report as one self-contained HTML page: header, audit-log status, access timelines,
/// privacy budget, estimates, retention and notes, each section a chart and a table.
///
/// All text from the data is escaped; the output depends on nothing but `data`.
///
/// ```
/// use confiance_aggregator::report::{render_html, ReportData};
/// let mut data = ReportData::demo();
/// data.access[0].recipient = "<script>alert(1)</script>".into();
/// let page = render_html(&data);
/// assert!(!page.contains("<script>") && page.contains("&lt;script&gt;"));
/// assert_eq!(page, render_html(&data));
/// ```
#[must_use]
pub fn render_html(data: &ReportData) -> String {
    let mut out = String::with_capacity(64 * 1024);
    // Writing into a String cannot fail.
    let _ = write_page(&mut out, data);
    out
}

fn write_page(o: &mut String, d: &ReportData) -> core::fmt::Result {
    let h = &d.header;
    let title = html(&h.title);
    write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"confiance-aggregator {}\">\n\
         <title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(o, "<header>\n<h1>{title}</h1>\n<dl class=\"meta\">")?;
    let known = h
        .as_known_at
        .map_or_else(|| format!("as known at generation ({})", instant(h.generated_at)), instant);
    for (k, v) in [
        ("Catalogue", format!("{} v{}", html(&h.catalogue_name), h.catalogue_version)),
        ("Catalogue digest", format!("<code>{}</code>", html(&h.catalogue_digest_hex))),
        ("About the instant (at)", html(&instant(h.at))),
        ("As known at", html(&known)),
        ("Generated", html(&instant(h.generated_at))),
    ] {
        writeln!(o, "<dt>{k}</dt><dd>{v}</dd>")?;
    }
    o.push_str("</dl>\n</header>\n");
    o.push_str(
        "<nav aria-label=\"Sections\"><ul><li><a href=\"#summary\">Summary</a></li><li><a href=\"#log\">Audit log</a></li>\
         <li><a href=\"#access\">Access</a></li><li><a href=\"#budget\">Privacy budget</a></li>\
         <li><a href=\"#estimates\">Estimates</a></li><li><a href=\"#retention\">Retention</a></li>\
         <li><a href=\"#notes\">Notes</a></li><li><a href=\"#appendix\">Appendix</a></li></ul></nav>\n",
    );
    write_summary(o, d)?;
    write_log(o, d)?;
    write_access(o, d)?;
    write_budget(o, d)?;
    write_estimates(o, d)?;
    write_retention(o, d)?;
    write_notes(o, d)?;
    write_appendix(o, d)?;
    write!(
        o,
        "<footer>confiance auditor report · schema version {SCHEMA_VERSION} · all instants UTC</footer>\n\
         </main>\n</body>\n</html>\n"
    )
}

fn figure(o: &mut String, c: &Chart) -> core::fmt::Result {
    writeln!(o, "<figure class=\"chart\" data-chart=\"{}\">", html(&c.id))?;
    match &c.svg {
        Ok(svg) => o.push_str(svg),
        Err(e) => writeln!(
            o,
            "<p class=\"chart-error\">The chart “{}” could not be drawn: {}</p>",
            html(&c.title),
            html(e)
        )?,
    }
    if let Some(note) = &c.note {
        writeln!(o, "<figcaption>{}</figcaption>", html(note))?;
    }
    o.push_str("</figure>\n");
    Ok(())
}

/// Writes `t`; flagged rows get the `overdue` class (red), numbers the `num` class.
fn table(o: &mut String, t: &Table) -> core::fmt::Result {
    o.push_str("<table>\n<thead><tr>");
    for h in &t.head {
        write!(o, "<th scope=\"col\">{}</th>", html(h))?;
    }
    o.push_str("</tr></thead>\n<tbody>\n");
    for row in &t.rows {
        o.push_str(if row.flagged { "<tr class=\"overdue\">" } else { "<tr>" });
        for c in &row.cells {
            match c {
                Cell::Text(t) => write!(o, "<td>{}</td>", html(t))?,
                Cell::Num(t) => write!(o, "<td class=\"num\">{}</td>", html(t))?,
            }
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody>\n</table>\n");
    Ok(())
}

fn empty(o: &mut String, what: &str) -> core::fmt::Result {
    writeln!(o, "<p class=\"empty\">{}</p>", html(what))
}

/// The first page: one card per recipient, in plain language.
fn write_summary(o: &mut String, d: &ReportData) -> core::fmt::Result {
    o.push_str(
        "<section id=\"summary\" class=\"summary\">\n<h2>Summary: who sees what, and for how long</h2>\n",
    );
    if d.summary.is_empty() {
        empty(o, "No recipient in this report.")?;
        return o.write_str("</section>\n");
    }
    if let Some(l) = &d.log {
        let (class, word, _) = summary::log_badge(l);
        writeln!(o, "<p>Audit log: <span class=\"badge {class}\">{word}</span> (details below).</p>")?;
    }
    for s in &d.summary {
        writeln!(
            o,
            "<div class=\"recipient\" data-recipient=\"{}\">\n<h3>{} <small>({}, {})</small></h3>\n<dl class=\"meta\">",
            html(&s.recipient),
            html(&s.name),
            html(&s.recipient),
            html(&s.role)
        )?;
        for (k, v) in summary::lines(s) {
            writeln!(o, "<dt>{k}</dt><dd data-field=\"{}\">{}</dd>", html(k), html(&v))?;
        }
        o.push_str("</dl>\n</div>\n");
    }
    writeln!(
        o,
        "<p class=\"more\">In detail: <a href=\"#appendix-access\">Appendix A, every access window ({})</a>; \
         <a href=\"#appendix-retention\">Appendix B, every partition and record set with its deadline ({})</a>.</p>",
        d.access.len(),
        d.retention.len()
    )?;
    o.push_str("</section>\n");
    Ok(())
}

fn appendix_link(o: &mut String, id: &str, letter: &str, what: &str) -> core::fmt::Result {
    writeln!(o, "<p class=\"more\"><a href=\"#{id}\">Appendix {letter}: {}</a></p>", html(what))
}

/// The long tables, after everything else, each linked from its section and the summary.
fn write_appendix(o: &mut String, d: &ReportData) -> core::fmt::Result {
    o.push_str("<section id=\"appendix\" class=\"appendix\">\n<h2>Appendix</h2>\n");
    o.push_str("<h3 id=\"appendix-access\">A. Access windows</h3>\n");
    if d.access.is_empty() {
        empty(o, "No access window.")?;
    } else {
        table(o, &table::access(d))?;
    }
    o.push_str("<h3 id=\"appendix-retention\">B. Retention: partitions and record sets</h3>\n");
    if d.retention.is_empty() {
        empty(o, "No retained data.")?;
    } else {
        writeln!(o, "<p>{} {}</p>", html(&summary::overdue_badge_text(d)), table::RETENTION_KINDS)?;
        table(o, &table::retention(d))?;
    }
    o.push_str("</section>\n");
    Ok(())
}

fn write_log(o: &mut String, d: &ReportData) -> core::fmt::Result {
    o.push_str("<section id=\"log\">\n<h2>Audit log verification</h2>\n");
    let Some(l) = &d.log else {
        o.push_str("<p><span class=\"badge unknown\">NOT CHECKED</span> The audit log was not verified for this report.</p>\n</section>\n");
        return Ok(());
    };
    let (class, word, what) = summary::log_badge(l);
    writeln!(o, "<p><span class=\"badge {class}\">{word}</span> {}</p>", html(&l.message))?;
    writeln!(o, "<p>{}</p>", html(&what))?;
    let yes_no = |b: bool| if b { "verified" } else { "FAILED" };
    let consistency = l.consistency_verified.map_or("no earlier checkpoint", yes_no);
    o.push_str("<dl class=\"meta\">\n");
    for (k, v) in [
        ("Tree size", l.tree_size.to_string()),
        ("Root", format!("<code>{}</code>", html(&l.root_hex))),
        ("Signed checkpoint", yes_no(l.checkpoint_verified).to_string()),
        ("Consistency with the previous checkpoint", consistency.to_string()),
        ("Events recomputed", format!("{} checked, {} failed", l.inclusion_checked, l.inclusion_failed)),
        (
            "Signer public key (Ed25519)",
            l.signer_key_hex
                .as_deref()
                .map_or_else(|| "not given".into(), |k| format!("<code>{}</code>", html(k))),
        ),
    ] {
        writeln!(o, "<dt>{k}</dt><dd>{v}</dd>")?;
    }
    o.push_str("</dl>\n</section>\n");
    Ok(())
}

fn write_access(o: &mut String, d: &ReportData) -> core::fmt::Result {
    o.push_str("<section id=\"access\">\n<h2>Access: who sees what, for how long</h2>\n");
    if d.access.is_empty() {
        empty(o, "No recipient has access to anything at this instant.")?;
        return o.write_str("</section>\n");
    }
    o.push_str(
        "<p>Each bar is an access window (docs/design.md#access-window): the recipient sees the metric \
         from its start to its end, then may keep what it collected until the end of the hold. Open windows last until the consent is \
         withdrawn and run to the right edge.</p>\n",
    );
    for c in charts::access_charts(d) {
        figure(o, &c)?;
    }
    appendix_link(o, "appendix-access", "A", &format!("every access window ({} rows)", d.access.len()))?;
    o.push_str("</section>\n");
    Ok(())
}

fn write_budget(o: &mut String, d: &ReportData) -> core::fmt::Result {
    o.push_str("<section id=\"budget\">\n<h2>Privacy budget per metric</h2>\n");
    let Some(c) = charts::budget_chart(d) else {
        empty(o, "No privacy budget to report.")?;
        return o.write_str("</section>\n");
    };
    figure(o, &c)?;
    table(o, &table::budget(d))?;
    o.push_str("</section>\n");
    Ok(())
}

fn write_estimates(o: &mut String, d: &ReportData) -> core::fmt::Result {
    o.push_str("<section id=\"estimates\">\n<h2>Estimates with 95% confidence intervals</h2>\n");
    if d.estimates.is_empty() {
        empty(o, "No estimates in this report.")?;
        return o.write_str("</section>\n");
    }
    o.push_str(
        "<p class=\"explain\">Each device randomizes what it reports before it leaves the device \
         (local differential privacy). <b>ε</b> (epsilon) bounds what one report can reveal about \
         its device: the smaller, the more private — with ε = 1, any answer is at most e ≈ 2.7 \
         times likelier under one true value than under another. The shares are estimated from \
         the randomized reports; a <b>95% interval</b> is the range that, computed this way, \
         contains the true share 95 times in 100. Shares are fractions of reports (0 to 1); means \
         are in the metric's own unit. Raw estimates may fall slightly below 0 or above 1 because \
         of the noise.</p>\n",
    );
    let small: Vec<&str> = charts::by_metric(&d.estimates)
        .into_iter()
        .filter(|(_, rows)| rows.first().is_some_and(|r| r.n < 1_000))
        .map(|(m, _)| m)
        .collect();
    if !small.is_empty() {
        writeln!(
            o,
            "<p class=\"warn\">Small sample: {} rest on fewer than 1 000 reports; their intervals are wide and the shares are rough.</p>",
            html(&small.join(", "))
        )?;
    }
    let charts = charts::estimate_charts(d);
    for ((metric, rows), c) in charts::by_metric(&d.estimates).into_iter().zip(&charts) {
        writeln!(o, "<h3>{}</h3>", html(metric))?;
        figure(o, c)?;
        // The truth columns only where some row knows the truth (a simulation).
        table(o, &table::estimates(&rows, rows.iter().any(|e| e.true_value.is_some())))?;
    }
    o.push_str("</section>\n");
    Ok(())
}

fn write_retention(o: &mut String, d: &ReportData) -> core::fmt::Result {
    o.push_str("<section id=\"retention\">\n<h2>Retention deadlines and overdue data</h2>\n");
    let Some(c) = charts::retention_chart(d) else {
        empty(o, "No retained data to report.")?;
        return o.write_str("</section>\n");
    };
    let (class, word) = summary::overdue_badge(d);
    writeln!(
        o,
        "<p id=\"overdue\"><span class=\"badge {class}\">{}</span> {}</p>",
        html(&word),
        html(&summary::overdue_badge_text(d))
    )?;
    figure(o, &c)?;
    appendix_link(
        o,
        "appendix-retention",
        "B",
        &format!("every partition and record set with its hold and deadline ({} rows)", d.retention.len()),
    )?;
    o.push_str("</section>\n");
    Ok(())
}

fn write_notes(o: &mut String, d: &ReportData) -> core::fmt::Result {
    o.push_str("<section id=\"notes\">\n<h2>Notes</h2>\n");
    if d.notes.is_empty() {
        empty(o, "No notes.")?;
    }
    for n in &d.notes {
        writeln!(o, "<p>{}</p>", html(n))?;
    }
    o.push_str("</section>\n");
    Ok(())
}

//! The report's SVG charts, drawn with `plotters` into strings.
//!
//! Every chart is a set of labelled horizontal rows over a numeric or time axis: one row
//! per access window, metric, estimate or retained item. Each SVG gets an `id`, a
//! `<title>`, a `<desc>` and `role="img"` with an `aria-label`, and a legend drawn in the
//! SVG itself whenever colours carry meaning. Output depends only on the data (no clock,
//! no hash-map order), so the same report gives the same bytes.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::text::{duration, html, truncate};
use super::time_axis;
use super::{AccessRow, EstimateRow, ReportData, RetentionRow};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Width of every chart, in SVG pixels (the page scales it down on narrow screens).
const WIDTH: u32 = 1000;
/// Most rows drawn in one chart; tables always list them all.
pub(crate) const MAX_ROWS: usize = 40;
/// Longest row label drawn, in characters.
const MAX_LABEL: usize = 46;
/// plotters writes `font-size = size / 1.24`; these give about 18 px titles and 13 px labels.
const TITLE_FONT: f64 = 22.0;
const LABEL_FONT: f64 = 16.0;
/// Pessimistic width of one label character at `LABEL_FONT`, in pixels.
const CHAR_W: f64 = 7.4;
const FONT: &str = "sans-serif";

const WINDOW: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const HOLD: RGBColor = RGBColor(0x9e, 0xca, 0xe1);
const OPEN: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const AT: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const BUDGET: RGBColor = RGBColor(0xd9, 0xd9, 0xd9);
const MAX_SPENT: RGBColor = RGBColor(0xfd, 0xae, 0x6b);
const MEDIAN_SPENT: RGBColor = RGBColor(0xe6, 0x55, 0x0d);
const OVER: RGBColor = RGBColor(0xa5, 0x0f, 0x15);
const INK: RGBColor = RGBColor(0x25, 0x25, 0x25);
const GRID: RGBColor = RGBColor(0xe3, 0xe3, 0xe3);
const PURGED: RGBColor = RGBColor(0xbd, 0xbd, 0xbd);
const OVERDUE: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const CI: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const TRUE_VALUE: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// One rendered chart: its element id and its SVG (or why it could not be drawn).
pub(crate) struct Chart {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) svg: Result<String, String>,
    /// A line under the chart, e.g. "showing 40 of 120 rows".
    pub(crate) note: Option<String>,
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Swatch {
    Fill(RGBColor),
    Line(RGBColor),
    Dot(RGBColor),
    Cross(RGBColor),
}

/// The x axis: its range, tick positions, and how ticks are labelled.
struct XAxis {
    from: f64,
    to: f64,
    ticks: Vec<f64>,
    kind: XKind,
    desc: String,
}

enum XKind {
    Time { with_time: bool },
    Number { decimals: usize },
}

impl XAxis {
    fn time(from: u64, to: u64) -> Self {
        let to = to.max(from.saturating_add(3_600));
        let t = time_axis::ticks(from, to);
        Self {
            from: from as f64,
            to: to as f64,
            ticks: t.ticks,
            kind: XKind::Time { with_time: t.with_time },
            desc: "date (UTC)".into(),
        }
    }

    fn number(lo: f64, hi: f64, desc: &str) -> Self {
        let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 1.0, hi + 1.0) };
        let (ticks, decimals) = nice_ticks(lo, hi, 8);
        Self { from: lo, to: hi, ticks, kind: XKind::Number { decimals }, desc: desc.into() }
    }

    fn label(&self, v: f64) -> String {
        match self.kind {
            XKind::Time { with_time } => time_axis::label(v, with_time),
            XKind::Number { decimals } => {
                let s = format!("{v:.decimals$}");
                if s.starts_with('-') && s.trim_start_matches(['-', '0', '.']).is_empty() {
                    s.trim_start_matches('-').to_string()
                } else {
                    s
                }
            }
        }
    }
}

/// Ticks at multiples of 1, 2, 2.5 or 5 × 10^k, at most about `max` of them, with the
/// number of decimals their labels need.
fn nice_ticks(lo: f64, hi: f64, max: usize) -> (Vec<f64>, usize) {
    let raw = (hi - lo) / max as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let mut step = mag * 10.0;
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if mag * m >= raw {
            step = mag * m;
            break;
        }
    }
    let mut decimals = (-step.log10().floor()).max(0.0) as usize;
    if (step / 10f64.powi(-(decimals as i32)) - 2.5).abs() < 1e-9 {
        decimals += 1;
    }
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    ((first..=last).map(|k| k as f64 * step).collect(), decimals.min(12))
}

/// A chart of `labels.len()` rows, row 0 at the top; `draw` adds the data.
struct RowChart<'a> {
    id: String,
    title: String,
    desc: String,
    labels: Vec<String>,
    /// Width of the row-label area; `None` fits the longest label. Charts that share a
    /// time axis share this too, so their axes line up on the page.
    label_w: Option<u32>,
    row_h: u32,
    x: XAxis,
    legend: Vec<(&'a str, Swatch)>,
}

/// The row-label area that fits `labels`, in pixels.
fn label_width<'a>(labels: impl Iterator<Item = &'a str>) -> u32 {
    let chars = labels.map(|l| l.chars().count()).max().unwrap_or(4);
    ((chars as f64 * CHAR_W) as u32 + 24).max(90)
}

/// A linear f64 axis whose ticks are exactly `keys`. (plotters' `WithKeyPoints` over
/// `RangedCoordf64` cannot take a label formatter in 0.3.7, so we implement `Ranged` here.)
struct KeyAxis {
    from: f64,
    to: f64,
    keys: Vec<f64>,
}

impl Ranged for KeyAxis {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.to - self.from;
        if span.abs() < f64::EPSILON || !value.is_finite() {
            return limit.0;
        }
        let frac = ((value - self.from) / span).clamp(-1.0, 2.0);
        limit.0 + (f64::from(limit.1 - limit.0) * frac).round() as i32
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() { Vec::new() } else { self.keys.clone() }
    }

    fn range(&self) -> core::ops::Range<f64> {
        self.from..self.to
    }
}

type Ctx<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<KeyAxis, KeyAxis>>;

/// The y interval `[lo, hi]` (fractions of the row height, 0 = bottom) of row `i` of `n`.
fn band(n: usize, i: usize, lo: f64, hi: f64) -> (f64, f64) {
    let base = (n - 1 - i) as f64;
    (base + lo, base + hi)
}

fn center(n: usize, i: usize) -> f64 {
    (n - 1 - i) as f64 + 0.5
}

impl RowChart<'_> {
    fn render(self, draw: impl FnOnce(&mut Ctx<'_, '_>, &XAxis) -> Res<()>) -> Chart {
        let mut svg = String::new();
        let drawn = self.draw_into(&mut svg, draw);
        let svg =
            drawn.map(|()| finish_svg(&svg, &self.id, &self.title, &self.desc)).map_err(|e| e.to_string());
        Chart { id: self.id, title: self.title, svg, note: None }
    }

    fn draw_into(&self, out: &mut String, draw: impl FnOnce(&mut Ctx<'_, '_>, &XAxis) -> Res<()>) -> Res<()> {
        let n = self.labels.len().max(1);
        let label_w = self.label_w.unwrap_or_else(|| label_width(self.labels.iter().map(String::as_str)));
        let legend_lines = legend_layout(&self.legend).last().map_or(0, |(_, _, line)| line + 1);
        let legend_h = if legend_lines == 0 { 4 } else { 24 * legend_lines + 8 };
        let title_h = 40;
        let plot_h = (self.row_h * n as u32).max(60);
        let height = title_h + legend_h + plot_h + 58;
        {
            let root = SVGBackend::with_string(out, (WIDTH, height)).into_drawing_area();
            root.fill(&WHITE)?;
            root.draw(&Text::new(
                self.title.as_str(),
                (16, 12),
                (FONT, TITLE_FONT).into_font().style(FontStyle::Bold).color(&INK),
            ))?;
            let below_title = root.split_vertically(title_h).1;
            let (legend_area, plot_area) = below_title.split_vertically(legend_h);
            draw_legend(&legend_area, &self.legend, label_w as i32)?;
            let y_keys: Vec<f64> = (0..n).map(|i| center(n, i)).collect();
            let mut chart = ChartBuilder::on(&plot_area)
                .margin_right(28)
                .margin_left(8)
                .margin_top(4)
                .x_label_area_size(50)
                .y_label_area_size(label_w)
                .build_cartesian_2d(
                    KeyAxis { from: self.x.from, to: self.x.to, keys: self.x.ticks.clone() },
                    KeyAxis { from: 0.0, to: n as f64, keys: y_keys },
                )?;
            let labels = &self.labels;
            let y_label = |y: &f64| {
                let i = n as f64 - 1.0 - y.floor();
                labels.get(i.max(0.0) as usize).cloned().unwrap_or_default()
            };
            let x_label = |v: &f64| self.x.label(*v);
            chart
                .configure_mesh()
                .disable_y_mesh()
                .bold_line_style(GRID)
                .light_line_style(TRANSPARENT)
                .axis_style(INK)
                .label_style((FONT, LABEL_FONT).into_font().color(&INK))
                .axis_desc_style((FONT, LABEL_FONT).into_font().color(&INK))
                .x_desc(self.x.desc.as_str())
                .x_label_formatter(&x_label)
                .y_label_formatter(&y_label)
                .draw()?;
            draw(&mut chart, &self.x)?;
            root.present()?;
        }
        Ok(())
    }
}

/// Positions `(x, y-offset-free index, line)` of legend entries, wrapping at the width.
fn legend_layout(items: &[(&str, Swatch)]) -> Vec<(i32, usize, u32)> {
    let (mut x, mut line) = (0i32, 0u32);
    let max_x = WIDTH as i32 - 40;
    let mut out = Vec::new();
    for (i, (label, _)) in items.iter().enumerate() {
        let w = 22 + (label.chars().count() as f64 * CHAR_W) as i32 + 26;
        if x > 0 && x + w > max_x {
            x = 0;
            line += 1;
        }
        out.push((x, i, line));
        x += w;
    }
    out
}

fn draw_legend(area: &DrawingArea<SVGBackend<'_>, Shift>, items: &[(&str, Swatch)], left: i32) -> Res<()> {
    let left = left.min(120) + 8;
    for (x, i, line) in legend_layout(items) {
        let Some((label, swatch)) = items.get(i) else { continue };
        let (x, y) = (left + x, 4 + 24 * line as i32);
        let mid = (x + 7, y + 8);
        match swatch {
            Swatch::Fill(c) => area.draw(&Rectangle::new([(x, y + 1), (x + 15, y + 15)], c.filled()))?,
            Swatch::Line(c) => {
                area.draw(&PathElement::new(vec![(x, y + 8), (x + 15, y + 8)], c.stroke_width(3)))?
            }
            Swatch::Dot(c) => area.draw(&Circle::new(mid, 5, c.filled()))?,
            Swatch::Cross(c) => area.draw(&Cross::new(mid, 5, c.stroke_width(2)))?,
        }
        area.draw(&Text::new(*label, (x + 22, y), (FONT, LABEL_FONT).into_font().color(&INK)))?;
    }
    Ok(())
}

/// Adds `id`, `role`, `aria-label`, `<title>` and `<desc>` to the SVG plotters wrote.
fn finish_svg(svg: &str, id: &str, title: &str, desc: &str) -> String {
    let body = svg.strip_prefix("<svg ").unwrap_or(svg);
    let (open_rest, inner) = body.split_once(">\n").unwrap_or((body, ""));
    let (id, title, desc) = (html(id), html(title), html(desc));
    format!(
        "<svg id=\"{id}\" role=\"img\" aria-label=\"{title}\" aria-describedby=\"{id}-desc\" {open_rest}>\n\
         <title>{title}</title>\n<desc id=\"{id}-desc\">{desc}</desc>\n{inner}"
    )
}

/// The right end of the time axes: the header's horizon, or a little past the latest
/// instant in the data and at least 30 days after `at`.
pub(crate) fn horizon(data: &ReportData) -> u64 {
    if let Some(h) = data.header.horizon {
        return h.as_secs();
    }
    let at = data.header.at.as_secs();
    let access = data.access.iter().flat_map(|r| [Some(r.window_start), r.window_end, r.hold_until()]);
    let retention = data.retention.iter().flat_map(|r| {
        [Some(r.deadline), r.purged_at, r.overdue_by_secs.map(|s| r.deadline.saturating_add_secs(s))]
    });
    // An open window lasts at least to `at`; what was collected until then is held on.
    let open = data
        .access
        .iter()
        .filter(|r| r.window_end.is_none())
        .map(|r| Some(data.header.at.saturating_add_secs(r.hold_secs)));
    let latest =
        access.chain(retention).chain(open).flatten().map(|t| t.as_secs()).max().unwrap_or(at).max(at);
    let earliest = data.access.iter().map(|r| r.window_start.as_secs()).min().unwrap_or(at).min(at);
    let padded = latest.saturating_add(latest.saturating_sub(earliest) / 20);
    padded.max(at.saturating_add(30 * 86_400))
}

/// Rows shown in a chart: the first `MAX_ROWS`, and the note saying so if some are left out.
fn cap<T>(rows: Vec<T>, what: &str) -> (Vec<T>, Option<String>) {
    let total = rows.len();
    if total <= MAX_ROWS {
        (rows, None)
    } else {
        let shown = rows.into_iter().take(MAX_ROWS).collect();
        (shown, Some(format!("The chart shows {MAX_ROWS} of {total} {what}; the table lists them all.")))
    }
}

/// One access-timeline chart per recipient (recipients sorted by name), sharing one time axis.
pub(crate) fn access_charts(data: &ReportData) -> Vec<Chart> {
    let mut recipients: Vec<&str> = data.access.iter().map(|r| r.recipient.as_str()).collect();
    recipients.sort_unstable();
    recipients.dedup();
    let end = horizon(data);
    let start = data.access.iter().map(|r| r.window_start.as_secs()).min().unwrap_or(0);
    let start = start.min(data.header.at.as_secs()).min(end.saturating_sub(86_400));
    // Start on a whole day so the first date tick is not crammed against the axis.
    let start = start - start % 86_400;
    let at = data.header.at.as_secs() as f64;
    let row_label = |r: &AccessRow| truncate(&format!("{} · {}", r.metric, r.subject), MAX_LABEL);
    let all_labels: Vec<String> = data.access.iter().map(row_label).collect();
    let label_w = label_width(all_labels.iter().map(String::as_str));
    recipients
        .iter()
        .enumerate()
        .map(|(k, recipient)| {
            let rows: Vec<&AccessRow> = data.access.iter().filter(|r| r.recipient == *recipient).collect();
            let (rows, note) = cap(rows, "access windows");
            let n = rows.len();
            let labels = rows.iter().map(|r| row_label(r)).collect();
            let title = format!("Access timeline — {recipient}");
            let desc = format!(
                "What {recipient} sees and for how long: {n} access windows over time, each followed by its hold; \
                 open windows last until withdrawn."
            );
            let chart = RowChart {
                id: format!("chart-access-{}", k + 1),
                title,
                desc,
                labels,
                label_w: Some(label_w),
                row_h: 20,
                x: XAxis::time(start, end),
                legend: vec![
                    ("access window", Swatch::Fill(WINDOW)),
                    ("hold after the window", Swatch::Fill(HOLD)),
                    ("open: until withdrawn", Swatch::Fill(OPEN)),
                    ("report instant (at)", Swatch::Line(AT)),
                ],
            };
            let mut c = chart.render(|chart, x| {
                let clamp = |t: u64| (t as f64).clamp(x.from, x.to);
                let mut bars = Vec::new();
                let mut notes = Vec::new();
                for (i, r) in rows.iter().enumerate() {
                    let (y0, y1) = band(n, i, 0.2, 0.8);
                    let s = clamp(r.window_start.as_secs());
                    match r.window_end {
                        Some(e) => {
                            let e = clamp(e.as_secs());
                            bars.push(Rectangle::new([(s, y0), (e, y1)], WINDOW.filled()));
                            let h_end = clamp(r.hold_until().map_or(0, |t| t.as_secs()));
                            if h_end > e {
                                bars.push(Rectangle::new([(e, y0), (h_end, y1)], HOLD.filled()));
                            }
                        }
                        None => {
                            bars.push(Rectangle::new([(s, y0), (x.to, y1)], OPEN.filled()));
                            // Say it in words where the bar is long enough to hold them.
                            if (x.to - s) / (x.to - x.from) > 0.3 {
                                let style = (FONT, LABEL_FONT)
                                    .into_font()
                                    .color(&WHITE)
                                    .pos(Pos::new(HPos::Right, VPos::Center));
                                let pos = (x.to - (x.to - x.from) * 0.01, center(n, i));
                                notes.push(Text::new("until withdrawn →", pos, style));
                            }
                        }
                    }
                }
                chart.draw_series(bars)?;
                chart.draw_series(notes)?;
                if at >= x.from && at <= x.to {
                    chart.draw_series([PathElement::new(vec![(at, 0.0), (at, n as f64)], AT.stroke_width(2))])?;
                }
                Ok(())
            });
            c.note = note;
            c
        })
        .collect()
}

/// The privacy budget per metric: budget per period, ε spent (median, max), ε per report.
pub(crate) fn budget_chart(data: &ReportData) -> Option<Chart> {
    if data.budgets.is_empty() {
        return None;
    }
    let (rows, note) = cap(data.budgets.iter().collect::<Vec<_>>(), "metrics");
    let n = rows.len();
    let hi = rows
        .iter()
        .flat_map(|b| [b.budget_per_period, b.epsilon_per_report, b.spent.as_ref().map_or(0.0, |s| s.max)])
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let hi = if hi > 0.0 { hi * 1.08 } else { 1.0 };
    let over = rows.iter().any(|b| b.spent.as_ref().is_some_and(|s| s.max > b.budget_per_period));
    let mut legend = vec![
        ("budget per period", Swatch::Fill(BUDGET)),
        ("most spent by a device", Swatch::Fill(MAX_SPENT)),
        ("median spent", Swatch::Fill(MEDIAN_SPENT)),
        ("ε per report", Swatch::Line(INK)),
    ];
    if over {
        legend.push(("over budget", Swatch::Fill(OVER)));
    }
    let labels = rows
        .iter()
        .map(|b| truncate(&format!("{} (per {})", b.metric, duration(b.period_secs)), MAX_LABEL))
        .collect();
    let chart = RowChart {
        id: "chart-budget".into(),
        title: "Privacy budget per metric (ε)".into(),
        desc: format!(
            "For each of {n} metrics: the ε budget per period, the median and largest ε a device spent in the \
             latest period, and the ε one report costs."
        ),
        labels,
        label_w: None,
        row_h: 36,
        x: XAxis::number(0.0, hi, "ε"),
        legend,
    };
    let mut c = chart.render(|chart, _| {
        let fin = |v: f64| if v.is_finite() { v.max(0.0) } else { 0.0 };
        let mut bars = Vec::new();
        let mut ticks = Vec::new();
        for (i, b) in rows.iter().enumerate() {
            let (y0, y1) = band(n, i, 0.12, 0.88);
            bars.push(Rectangle::new([(0.0, y0), (fin(b.budget_per_period), y1)], BUDGET.filled()));
            if let Some(s) = &b.spent {
                let (z0, z1) = band(n, i, 0.3, 0.7);
                let max_color = if s.max > b.budget_per_period { OVER } else { MAX_SPENT };
                bars.push(Rectangle::new([(0.0, z0), (fin(s.max), z1)], max_color.filled()));
                bars.push(Rectangle::new([(0.0, z0), (fin(s.median), z1)], MEDIAN_SPENT.filled()));
            }
            let (t0, t1) = band(n, i, 0.05, 0.95);
            let e = fin(b.epsilon_per_report);
            ticks.push(PathElement::new(vec![(e, t0), (e, t1)], INK.stroke_width(3)));
        }
        chart.draw_series(bars)?;
        chart.draw_series(ticks)?;
        Ok(())
    });
    c.note = note;
    Some(c)
}

/// The metrics of `estimates` in order of first appearance, each with its rows.
pub(crate) fn by_metric(estimates: &[EstimateRow]) -> Vec<(&str, Vec<&EstimateRow>)> {
    let mut groups: Vec<(&str, Vec<&EstimateRow>)> = Vec::new();
    for e in estimates {
        match groups.iter_mut().find(|(m, _)| *m == e.metric) {
            Some((_, rows)) => rows.push(e),
            None => groups.push((&e.metric, vec![e])),
        }
    }
    groups
}

/// One chart per metric: each estimate with its 95 % interval, and the true value if known.
pub(crate) fn estimate_charts(data: &ReportData) -> Vec<Chart> {
    by_metric(&data.estimates)
        .into_iter()
        .enumerate()
        .map(|(k, (metric, rows))| {
            let (rows, note) = cap(rows, "estimates");
            let n = rows.len();
            let values = rows
                .iter()
                .flat_map(|e| [Some(e.ci95_low), Some(e.ci95_high), Some(e.estimate), e.true_value]);
            let (lo, hi) = values
                .flatten()
                .filter(|v| v.is_finite())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
            let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
            let pad = ((hi - lo) * 0.08).max(1e-9);
            let has_truth = rows.iter().any(|e| e.true_value.is_some());
            let mut legend =
                vec![("estimate", Swatch::Dot(CI)), ("95% confidence interval", Swatch::Line(CI))];
            if has_truth {
                legend.push(("true value (simulation)", Swatch::Cross(TRUE_VALUE)));
            }
            let chart = RowChart {
                id: format!("chart-estimates-{}", k + 1),
                title: format!("Estimates — {metric}"),
                desc: format!("{n} estimates of {metric}, each with its 95% confidence interval."),
                labels: rows.iter().map(|e| truncate(&e.label, MAX_LABEL)).collect(),
                label_w: None,
                row_h: 28,
                x: XAxis::number(lo - pad, hi + pad, "estimate"),
                legend,
            };
            let mut c = chart.render(|chart, _| {
                let mut lines = Vec::new();
                let mut dots = Vec::new();
                let mut crosses = Vec::new();
                for (i, e) in rows.iter().enumerate() {
                    if ![e.ci95_low, e.ci95_high, e.estimate].iter().all(|v| v.is_finite()) {
                        continue;
                    }
                    let y = center(n, i);
                    let (c0, c1) = band(n, i, 0.3, 0.7);
                    lines.push(PathElement::new(vec![(e.ci95_low, y), (e.ci95_high, y)], CI.stroke_width(2)));
                    lines
                        .push(PathElement::new(vec![(e.ci95_low, c0), (e.ci95_low, c1)], CI.stroke_width(2)));
                    lines.push(PathElement::new(
                        vec![(e.ci95_high, c0), (e.ci95_high, c1)],
                        CI.stroke_width(2),
                    ));
                    dots.push(Circle::new((e.estimate, y), 5, CI.filled()));
                    if let Some(t) = e.true_value.filter(|t| t.is_finite()) {
                        crosses.push(Cross::new((t, y), 6, TRUE_VALUE.stroke_width(2)));
                    }
                }
                chart.draw_series(lines)?;
                chart.draw_series(dots)?;
                chart.draw_series(crosses)?;
                Ok(())
            });
            c.note = note;
            c
        })
        .collect()
}

/// Retention: each partition's or record set's holding period up to its deadline, the time
/// held past it in red, and the report instant. Overdue items come first.
pub(crate) fn retention_chart(data: &ReportData) -> Option<Chart> {
    if data.retention.is_empty() {
        return None;
    }
    let mut rows: Vec<&RetentionRow> = data.retention.iter().collect();
    // Stable: overdue first, each group in the given order.
    rows.sort_by_key(|r| r.overdue_by_secs.is_none());
    let (rows, note) = cap(rows, "retained items");
    let n = rows.len();
    let at = data.header.at.as_secs();
    let late_end = |r: &RetentionRow| r.overdue_by_secs.map(|s| r.deadline.saturating_add_secs(s).as_secs());
    let from =
        rows.iter().map(|r| r.collected_from.unwrap_or(r.deadline).as_secs()).min().unwrap_or(at).min(at);
    let to = rows
        .iter()
        .flat_map(|r| [Some(r.deadline.as_secs()), r.purged_at.map(|t| t.as_secs()), late_end(r)])
        .flatten()
        .max()
        .unwrap_or(at)
        .max(at);
    let pad = (to - from) / 20 + 86_400;
    let (from, to) = (from.saturating_sub(pad), to.saturating_add(pad));
    let from = from - from % 86_400;
    let chart = RowChart {
        id: "chart-retention".into(),
        title: "Retention deadlines".into(),
        desc: format!(
            "{n} partitions or record sets: held from collection to their deadline; red where data was held past \
             its deadline."
        ),
        labels: rows
            .iter()
            .map(|r| {
                let mark = if r.overdue_by_secs.is_some() { "OVERDUE · " } else { "" };
                truncate(&format!("{mark}{}", r.item), MAX_LABEL)
            })
            .collect(),
        label_w: None,
        row_h: 20,
        x: XAxis::time(from, to),
        legend: vec![
            ("held until the deadline", Swatch::Fill(WINDOW)),
            ("purged", Swatch::Fill(PURGED)),
            ("held past the deadline", Swatch::Fill(OVERDUE)),
            ("deadline", Swatch::Line(INK)),
            ("report instant (at)", Swatch::Line(AT)),
        ],
    };
    let mut c = chart.render(|chart, x| {
        let clamp = |t: u64| (t as f64).clamp(x.from, x.to);
        let mut bars = Vec::new();
        let mut marks = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let (y0, y1) = band(n, i, 0.22, 0.78);
            let d = clamp(r.deadline.as_secs());
            let held = if r.purged_at.is_some() { PURGED } else { WINDOW };
            if let Some(c) = r.collected_from {
                bars.push(Rectangle::new([(clamp(c.as_secs()), y0), (d, y1)], held.filled()));
            }
            if let Some(end) = late_end(r) {
                bars.push(Rectangle::new([(d, y0), (clamp(end), y1)], OVERDUE.filled()));
            }
            let (t0, t1) = band(n, i, 0.08, 0.92);
            marks.push(PathElement::new(vec![(d, t0), (d, t1)], INK.stroke_width(2)));
        }
        chart.draw_series(bars)?;
        chart.draw_series(marks)?;
        let at = at as f64;
        chart.draw_series([PathElement::new(vec![(at, 0.0), (at, n as f64)], AT.stroke_width(2))])?;
        Ok(())
    });
    c.note = note;
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks_are_round() {
        let (t, d) = nice_ticks(0.0, 1.08, 8);
        assert_eq!(d, 1);
        assert!((t[1] - 0.2).abs() < 1e-12 && t.len() == 6, "{t:?}");
        let (t, d) = nice_ticks(0.0, 2.0, 8);
        assert!((t[1] - 0.25).abs() < 1e-12 && d == 2, "{t:?} {d}");
        let (t, d) = nice_ticks(-3.0, 97.0, 8);
        assert_eq!((t.first().copied(), d), (Some(0.0), 0));
    }

    #[test]
    fn svg_gets_title_and_label() {
        let s = finish_svg("<svg width=\"1\" height=\"1\">\n<rect/>\n</svg>\n", "c", "A & <b>", "d");
        assert!(s.starts_with("<svg id=\"c\" role=\"img\" aria-label=\"A &amp; &lt;b&gt;\""), "{s}");
        assert!(s.contains("<title>A &amp; &lt;b&gt;</title>") && s.contains("<rect/>"));
    }
}

//! The report's tables as data — headings, rows, cells — built once from [`ReportData`]
//! and rendered by each format (`html.rs`, `markdown.rs`), so that both list the same
//! columns with the same text.

use super::text::{duration, instant, num};
use super::{EstimateRow, ReportData, RetentionKind};

/// One cell's text, and whether it is a number (right-aligned in HTML).
pub(super) enum Cell {
    /// Text.
    Text(String),
    /// A number, already formatted.
    Num(String),
}

impl Cell {
    pub(super) fn text(&self) -> &str {
        match self {
            Self::Text(t) | Self::Num(t) => t,
        }
    }
}

/// A row, and whether it needs attention (over budget, overdue: marked in HTML).
pub(super) struct Row {
    pub flagged: bool,
    pub cells: Vec<Cell>,
}

/// A table: its column headings and its rows.
pub(super) struct Table {
    pub head: Vec<&'static str>,
    pub rows: Vec<Row>,
}

fn or_dash(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), num)
}

/// Who sees what, for how long: one row per access window, by recipient.
pub(super) fn access(d: &ReportData) -> Table {
    let mut rows: Vec<_> = d.access.iter().collect();
    rows.sort_by(|a, b| a.recipient.cmp(&b.recipient));
    Table {
        head: vec![
            "Recipient",
            "Metric",
            "Subject or cohort",
            "Window start",
            "Window end",
            "Hold",
            "Sees until",
        ],
        rows: rows
            .iter()
            .map(|r| Row {
                flagged: false,
                cells: vec![
                    Cell::Text(r.recipient.clone()),
                    Cell::Text(r.metric.clone()),
                    Cell::Text(r.subject.clone()),
                    Cell::Text(instant(r.window_start)),
                    Cell::Text(r.window_end.map_or_else(|| "until withdrawn".to_string(), instant)),
                    Cell::Text(r.hold.clone().unwrap_or_else(|| duration(r.hold_secs))),
                    Cell::Text(r.hold_until().map_or_else(
                        || {
                            format!(
                                "withdrawal + {}",
                                r.hold.clone().unwrap_or_else(|| duration(r.hold_secs))
                            )
                        },
                        instant,
                    )),
                ],
            })
            .collect(),
    }
}

/// The privacy budget per metric; a row is flagged when some device spent more than the
/// budget of a period.
pub(super) fn budget(d: &ReportData) -> Table {
    Table {
        head: vec![
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
        rows: d
            .budgets
            .iter()
            .map(|b| {
                let s = b.spent.as_ref();
                Row {
                    flagged: s.is_some_and(|s| s.max > b.budget_per_period),
                    cells: vec![
                        Cell::Text(b.metric.clone()),
                        Cell::Num(num(b.epsilon_per_report)),
                        Cell::Num(num(b.budget_per_period)),
                        Cell::Text(duration(b.period_secs)),
                        Cell::Num(b.reports_received.to_string()),
                        Cell::Num(s.map_or_else(|| "—".to_string(), |s| s.devices.to_string())),
                        Cell::Num(or_dash(s.map(|s| s.median))),
                        Cell::Num(or_dash(s.map(|s| s.p90))),
                        Cell::Num(or_dash(s.map(|s| s.max))),
                    ],
                }
            })
            .collect(),
    }
}

/// One metric's estimates; with `truth`, the true value and whether the interval covers
/// it (a dash where it is unknown).
pub(super) fn estimates(rows: &[&EstimateRow], truth: bool) -> Table {
    let mut head = vec!["Label", "Estimate", "95% CI low", "95% CI high", "Std. error", "n"];
    if truth {
        head.extend(["True value", "Covered"]);
    }
    Table {
        head,
        rows: rows
            .iter()
            .map(|e| {
                let mut cells = vec![
                    Cell::Text(e.label.clone()),
                    Cell::Num(num(e.estimate)),
                    Cell::Num(num(e.ci95_low)),
                    Cell::Num(num(e.ci95_high)),
                    Cell::Num(num(e.std_error)),
                    Cell::Num(e.n.to_string()),
                ];
                if truth {
                    let (t, cov) = match e.true_value {
                        Some(t) => {
                            (num(t), if (e.ci95_low..=e.ci95_high).contains(&t) { "yes" } else { "no" })
                        }
                        None => ("—".into(), "—"),
                    };
                    cells.extend([Cell::Num(t), Cell::Text(cov.into())]);
                }
                Row { flagged: false, cells }
            })
            .collect(),
    }
}

/// What the retention table's "Kind" column means (its words are short, to fit a row).
pub(super) const RETENTION_KINDS: &str = "A partition holds anonymous statistics (randomized on the devices); \
     records are pseudonymous, linked to their subject.";

/// Retention deadlines; a row is flagged when its data is overdue. The item names the
/// metric (prefixed when it does not), so the metric has no column of its own.
pub(super) fn retention(d: &ReportData) -> Table {
    Table {
        head: vec!["Item", "Kind", "Records", "Collected from", "Hold", "Deadline", "Purged", "Overdue by"],
        rows: d
            .retention
            .iter()
            .map(|r| {
                // Short words, so that a row prints on one line; the sentence above the
                // table says what they mean. The item names the metric.
                let kind = match r.kind {
                    RetentionKind::Partition => "partition",
                    RetentionKind::Records => "records",
                };
                Row {
                    flagged: r.overdue_by_secs.is_some(),
                    cells: vec![
                        Cell::Text(if r.item.starts_with(&r.metric) {
                            r.item.clone()
                        } else {
                            format!("{} · {}", r.metric, r.item)
                        }),
                        Cell::Text(kind.into()),
                        r.records.map_or_else(|| Cell::Text("—".into()), |n| Cell::Num(n.to_string())),
                        Cell::Text(r.collected_from.map_or_else(|| "—".to_string(), instant)),
                        Cell::Text(r.hold.clone().unwrap_or_else(|| "—".to_string())),
                        Cell::Text(instant(r.deadline)),
                        Cell::Text(r.purged_at.map_or_else(|| "no".to_string(), instant)),
                        Cell::Text(r.overdue_by_secs.map_or_else(|| "—".to_string(), duration)),
                    ],
                }
            })
            .collect(),
    }
}

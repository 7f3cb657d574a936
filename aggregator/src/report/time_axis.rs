//! Time axes: tick instants on calendar boundaries (hours, days, weeks, month starts) and
//! their UTC labels, so a chart's dates read as dates rather than as round numbers of seconds.

use confiance::Timestamp;

const DAY: u64 = 86_400;
/// At most this many ticks on a time axis, so the date labels never overlap.
const MAX_TICKS: u64 = 9;

/// Tick instants in `[from, to]` and whether labels need the time of day.
pub(crate) struct TimeTicks {
    pub(crate) ticks: Vec<f64>,
    pub(crate) with_time: bool,
}

/// Calendar-aligned ticks for the span `[from, to]` (seconds).
pub(crate) fn ticks(from: u64, to: u64) -> TimeTicks {
    let span = to.saturating_sub(from).max(1);
    // Hours and days, aligned to UTC midnight.
    for step in [3_600, 3 * 3_600, 6 * 3_600, 12 * 3_600, DAY, 2 * DAY, 7 * DAY, 14 * DAY] {
        if span / step <= MAX_TICKS {
            // Checked steps: an instant near `u64::MAX` must not overflow.
            let first = from.div_ceil(step).checked_mul(step);
            let ticks = core::iter::successors(first, |t| t.checked_add(step))
                .take_while(|t| *t <= to)
                .map(|t| t as f64)
                .collect();
            return TimeTicks { ticks, with_time: step < DAY };
        }
    }
    // Month starts, every 1, 2, 3, 6, 12, … months.
    let months_total = span / (30 * DAY) + 1;
    let mut step: u32 = 1;
    for s in [1u32, 2, 3, 6, 12, 24, 60, 120, 600] {
        step = s;
        if months_total / u64::from(s) <= MAX_TICKS {
            break;
        }
    }
    // Month index since year 0, rounded up to a multiple of `step`, then `step` at a time.
    let (y, m) = year_month(from);
    let step = i64::from(step);
    let mut idx = (y * 12 + i64::from(m) - 1 + step - 1) / step * step;
    let mut ticks = Vec::new();
    while let Some(t) = month_start(idx / 12, (idx % 12) as u32 + 1) {
        if t > to {
            break;
        }
        if t >= from {
            ticks.push(t as f64);
        }
        idx += step;
    }
    TimeTicks { ticks, with_time: false }
}

/// The label of a tick at `secs`: `YYYY-MM-DD`, with `HH:MM` when `with_time`.
pub(crate) fn label(secs: f64, with_time: bool) -> String {
    let t = Timestamp::from_secs(secs.max(0.0).round() as u64).to_rfc3339();
    if with_time {
        format!("{} {}", t.get(5..10).unwrap_or(""), t.get(11..16).unwrap_or(""))
    } else {
        t.get(..10).unwrap_or(&t).to_string()
    }
}

fn year_month(secs: u64) -> (i64, u32) {
    let t = Timestamp::from_secs(secs).to_rfc3339();
    let y = t.get(..4).and_then(|s| s.parse().ok()).unwrap_or(1970);
    let m = t.get(5..7).and_then(|s| s.parse().ok()).unwrap_or(1);
    (y, m)
}

fn month_start(y: i64, m: u32) -> Option<u64> {
    Timestamp::parse_rfc3339(&format!("{y:04}-{m:02}-01")).ok().map(Timestamp::as_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> u64 {
        Timestamp::parse_rfc3339(s).unwrap().as_secs()
    }

    #[test]
    fn month_ticks_on_first_of_month() {
        let t = ticks(at("2027-01-15"), at("2027-09-20"));
        let labels: Vec<_> = t.ticks.iter().map(|x| label(*x, t.with_time)).collect();
        assert_eq!(labels.first().map(String::as_str), Some("2027-02-01"));
        assert!(labels.iter().all(|l| l.ends_with("-01")), "{labels:?}");
        assert!(labels.len() as u64 <= MAX_TICKS && labels.len() >= 4, "{labels:?}");
    }

    #[test]
    fn day_and_hour_ticks() {
        let t = ticks(at("2027-01-01T05:00:00Z"), at("2027-01-08T00:00:00Z"));
        assert!(!t.with_time);
        assert_eq!(label(t.ticks[0], false), "2027-01-02");
        assert_eq!(t.ticks.len(), 7);
        let t = ticks(at("2027-01-01T05:00:00Z"), at("2027-01-01T12:00:00Z"));
        assert!(t.with_time);
        assert_eq!(label(t.ticks[0], true), "01-01 05:00");
    }
}

//! The report's first page in words: per recipient, what it sees, why, since and until
//! when, what it holds now, what it received, what is overdue and what was purged; and
//! what the audit-log badge may claim.

use super::text::instant;
use super::{LogStatus, RecipientSummary, ReportData};

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The summary of one recipient as labelled sentences, in reading order. Every value is
/// non-empty (an absent fact is said in words: "nothing", "never").
pub(crate) fn lines(s: &RecipientSummary) -> Vec<(&'static str, String)> {
    let sees = if s.metrics.is_empty() { "nothing so far".to_owned() } else { s.metrics.join(", ") };
    let purposes = if s.purposes.is_empty() {
        "no purpose yet".to_owned()
    } else {
        s.purposes
            .iter()
            .map(|p| format!("{} (legal basis: {})", p.purpose, p.legal_basis))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let from = s.from.map_or_else(|| "never had access".to_owned(), instant);
    let hold = s
        .longest_hold
        .as_deref()
        .map_or_else(String::new, |h| format!(", then keeps what it collected for up to {h}"));
    let until = match (s.open_until_withdrawn, s.until) {
        (true, _) => format!("open — until the subjects withdraw{hold}"),
        (false, Some(u)) => format!("{}{hold}", instant(u)),
        (false, None) => "no access window".to_owned(),
    };
    let holds = format!(
        "{} of anonymous statistics and {} of pseudonymous data",
        plural(s.partitions_held, "partition", "partitions"),
        plural(s.records_held, "record", "records")
    );
    let received = format!(
        "{}; {} disclosed",
        plural(s.releases, "release", "releases"),
        plural(s.records_disclosed, "record", "records")
    );
    let overdue = format!(
        "{} overdue at the report instant; {} purged in all (before or after it)",
        if s.overdue == 0 { "nothing".to_owned() } else { s.overdue.to_string() },
        s.purged
    );
    vec![
        ("Sees", sees),
        ("For", purposes),
        ("From", from),
        ("Until, at the longest", until),
        ("Holds now", holds),
        ("Released and disclosed", received),
        ("Overdue and purged", overdue),
    ]
}

/// The audit-log badge: its CSS class, its word and the sentence saying what was
/// checked. "VERIFIED" only when something was: an empty log, or one checked against
/// nothing, says so instead.
pub(crate) fn log_badge(l: &LogStatus) -> (&'static str, &'static str, String) {
    let key = l
        .signer_key_hex
        .as_deref()
        .map_or_else(|| "an unnamed key".to_owned(), |k| format!("key {}…", k.get(..16).unwrap_or(k)));
    let consistency = match l.consistency_verified {
        Some(true) => "consistent with the previous checkpoint",
        Some(false) => "NOT consistent with the previous checkpoint",
        None => "consistency with an earlier checkpoint not checked (none was given)",
    };
    let what = format!(
        "Checked: a checkpoint of {} signed by {key} ({}); {} of {} recomputed{}; {consistency}.",
        plural(l.tree_size, "event", "events"),
        if l.checkpoint_verified { "signature valid" } else { "signature INVALID" },
        l.inclusion_checked,
        plural(l.tree_size, "event", "events"),
        if l.inclusion_failed > 0 { format!(", {} failed", l.inclusion_failed) } else { String::new() },
    );
    if !l.all_verified() {
        ("fail", "FAILED", what)
    } else if l.verified_something() {
        ("ok", "VERIFIED", what)
    } else {
        ("unknown", "NOTHING VERIFIED", what)
    }
}

/// The retention badge, as of the report instant: its CSS class and its words. Rows
/// purged after the instant still count as overdue at it.
pub(crate) fn overdue_badge(d: &ReportData) -> (&'static str, String) {
    let at = instant(d.header.at);
    match d.retention.iter().filter(|r| r.overdue_by_secs.is_some()).count() {
        0 => ("ok", format!("NONE OVERDUE AT {at}")),
        n => ("fail", format!("{n} OVERDUE AT {at}")),
    }
}

/// The sentence beside the retention badge: what the table shows (the state at the
/// report instant) and the purges after it, so that a later purge is never mistaken for
/// the state at the instant.
pub(crate) fn overdue_badge_text(d: &ReportData) -> String {
    let at = d.header.at;
    let overdue: Vec<_> = d.retention.iter().filter(|r| r.overdue_by_secs.is_some()).collect();
    let later = |r: &&super::RetentionRow| r.purged_at.is_some_and(|p| p > at);
    let purged_later = overdue.iter().filter(|r| later(r)).count();
    let last = d.retention.iter().filter(later).filter_map(|r| r.purged_at).max();
    let mut s = format!("The table shows what was held at the report instant ({}). ", instant(at));
    if overdue.is_empty() {
        s.push_str("Nothing was held past its deadline then.");
    } else {
        s.push_str(&format!(
            "{} held past its deadline then (marked in red).",
            plural(overdue.len() as u64, "item was", "items were")
        ));
    }
    let listed_later = d.retention.iter().filter(later).count();
    if let Some(last) = last {
        s.push_str(&format!(
            " Purged after the instant: {} of the {} listed{}, the last at {} (column “Purged”).",
            listed_later,
            plural(d.retention.len() as u64, "item", "items"),
            if overdue.is_empty() {
                String::new()
            } else {
                format!(", {purged_later} of them overdue at the instant")
            },
            instant(last)
        ));
    }
    s
}

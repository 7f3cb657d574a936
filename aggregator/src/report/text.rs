//! Text formatting and escaping shared by the renderers.

use confiance::Timestamp;

/// Escapes text for HTML element content and double- or single-quoted attribute values.
pub(crate) fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for a Markdown table cell: pipes and backslashes are escaped, line breaks
/// become spaces, and `<`, `>`, `&` become entities so a renderer that allows inline HTML
/// shows them as text.
pub(crate) fn markdown_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\\' => out.push_str("\\\\"),
            '`' => out.push_str("\\`"),
            '*' => out.push_str("\\*"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM UTC`, or just the date at midnight.
pub(crate) fn instant(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    if t == Timestamp::MAX {
        return s;
    }
    let (date, time) = (s.get(..10).unwrap_or(&s), s.get(11..16).unwrap_or(""));
    if t.as_secs().is_multiple_of(86_400) { date.to_string() } else { format!("{date} {time} UTC") }
}

/// A duration in the largest whole unit that fits: `90 days`, `36 hours`, `0 s`.
pub(crate) fn duration(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "day"), (3_600, "hour"), (60, "minute"), (1, "second")];
    if secs == 0 {
        return "0 seconds".to_string();
    }
    for (unit, name) in UNITS {
        if secs.is_multiple_of(unit) || unit == 1 || secs >= 3 * unit {
            let n = secs / unit;
            let rem = secs % unit;
            let approx = if rem == 0 { "" } else { "≈ " };
            let n = if rem * 2 >= unit { n + 1 } else { n };
            return format!("{approx}{n} {name}{}", if n == 1 { "" } else { "s" });
        }
    }
    format!("{secs} seconds")
}

/// A number with a sensible number of significant digits for a table (deterministic).
pub(crate) fn num(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let a = x.abs();
    if a == 0.0 {
        "0".to_string()
    } else if !(1e-3..1e6).contains(&a) {
        format!("{x:.3e}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.3}")
    } else {
        format!("{x:.4}")
    }
}

/// `s` cut to at most `max` characters, with an ellipsis when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(html(r#"<script>a&b"c'</script>"#), "&lt;script&gt;a&amp;b&quot;c&#39;&lt;/script&gt;");
        assert_eq!(markdown_cell("a|b<c>\nd&"), "a\\|b&lt;c&gt; d&amp;");
    }

    #[test]
    fn formats() {
        assert_eq!(instant(Timestamp::from_secs(86_400)), "1970-01-02");
        assert_eq!(instant(Timestamp::from_secs(86_400 + 3_660)), "1970-01-02 01:01 UTC");
        assert_eq!(duration(90 * 86_400), "90 days");
        assert_eq!(duration(3_600), "1 hour");
        assert_eq!(duration(36 * 3_600), "36 hours");
        assert_eq!(duration(45), "45 seconds");
        assert_eq!(num(0.5), "0.5000");
        assert_eq!(num(1234.56), "1234.6");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}

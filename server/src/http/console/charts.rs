//! Inline SVG drawn on the server: the versions bar chart of the fleet page and the
//! coverage time line of a device. Each scales with its `viewBox`, so it fits a phone.
//! Every text is escaped here; the templates insert the result as is.

use jiff::civil::Date;
use np_common::warranty::{days_between, Term, TermKind};
use std::fmt::Write as _;

/// Escapes text for SVG/HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const BAR_H: u32 = 26;
const LABEL_W: u32 = 110;
const BARS_W: u32 = 360;

/// A horizontal bar per (version, boxes): the label, the bar and the count. Each bar is a
/// `<g class="bar" data-version data-count>` with a `<title>`, for people and tests.
pub fn version_bars(rows: &[(String, u64)]) -> String {
    if rows.is_empty() {
        return "<p>No box has reported a version yet.</p>".to_owned();
    }
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1);
    let h = BAR_H * u32::try_from(rows.len()).unwrap_or(u32::MAX / BAR_H) + 4;
    let width = LABEL_W + BARS_W + 90;
    let mut s = format!(
        "<svg class=\"chart\" role=\"img\" aria-labelledby=\"versions-title\" viewBox=\"0 0 {width} {h}\" width=\"100%\" preserveAspectRatio=\"xMinYMin meet\">\
         <title id=\"versions-title\">Boxes by running version</title>"
    );
    for (i, (version, n)) in rows.iter().enumerate() {
        let y = BAR_H * u32::try_from(i).unwrap_or(0) + 2;
        let w = u64::from(BARS_W) * n / max;
        let v = esc(version);
        let plural = if *n == 1 { "box" } else { "boxes" };
        let _ = write!(
            s,
            "<g class=\"bar\" data-version=\"{v}\" data-count=\"{n}\"><title>{v}: {n} {plural}</title>\
             <text class=\"label\" x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">{v}</text>\
             <rect x=\"{LABEL_W}\" y=\"{y}\" width=\"{w}\" height=\"{bh}\" rx=\"3\"></rect>\
             <text class=\"count\" x=\"{cx}\" y=\"{ty}\">{n}</text></g>",
            lx = LABEL_W - 8,
            ty = y + 17,
            bh = BAR_H - 6,
            cx = u64::from(LABEL_W) + w + 6,
        );
    }
    s.push_str("</svg>");
    s
}

fn kind_name(k: TermKind) -> &'static str {
    match k {
        TermKind::Warranty => "warranty",
        TermKind::Extension => "extension",
        TermKind::Reinstatement => "reinstatement",
    }
}

/// The terms on a time line from the first start to the last end (or today, if later),
/// with a mark at today.
pub fn timeline(terms: &[Term], today: Date) -> String {
    let (Some(first), Some(last)) = (
        terms.iter().map(|t| t.start).min(),
        terms.iter().map(|t| t.end).max(),
    ) else {
        return "<p>No terms.</p>".to_owned();
    };
    let end = last.max(today);
    let span = days_between(first, end).max(1);
    let w: i64 = 600;
    let x = |d: Date| 10 + days_between(first, d) * w / span;
    let mut s = format!(
        "<svg class=\"timeline\" role=\"img\" aria-labelledby=\"terms-title\" viewBox=\"0 0 {} 76\" width=\"100%\">\
         <title id=\"terms-title\">Coverage terms from {first} to {last}</title>",
        w + 20
    );
    for t in terms {
        let (x0, x1) = (x(t.start), x(t.end));
        let k = kind_name(t.kind);
        let _ = write!(
            s,
            "<rect class=\"term {k}\" x=\"{x0}\" y=\"20\" width=\"{}\" height=\"22\"><title>{k}: {} to {}</title></rect>",
            (x1 - x0).max(1),
            t.start,
            t.end
        );
    }
    let tx = x(today);
    let anchor = if tx > w - 20 {
        "end"
    } else if tx < 30 {
        "start"
    } else {
        "middle"
    };
    let _ = write!(
        s,
        "<line class=\"today\" x1=\"{tx}\" y1=\"14\" x2=\"{tx}\" y2=\"48\"></line>\
         <text x=\"10\" y=\"66\">{first}</text><text x=\"{}\" y=\"66\" text-anchor=\"end\">{end}</text>\
         <text x=\"{tx}\" y=\"11\" text-anchor=\"{anchor}\" class=\"today-label\">today</text></svg>",
        w + 10
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn bars_carry_their_numbers_and_escape_labels() {
        let svg = version_bars(&[("5.3.0".into(), 4), ("<x>".into(), 2)]);
        assert!(svg.contains("data-version=\"5.3.0\" data-count=\"4\""));
        assert!(svg.contains("<title>5.3.0: 4 boxes</title>"));
        assert!(svg.contains("&lt;x&gt;") && !svg.contains("<x>"));
        // The longest bar is full width, the other in proportion.
        assert!(svg.contains("width=\"360\""));
        assert!(svg.contains("width=\"180\""));
    }

    #[test]
    fn timeline_draws_each_term() {
        let terms = [
            Term {
                kind: TermKind::Warranty,
                start: date(2025, 1, 1),
                end: date(2026, 1, 1),
            },
            Term {
                kind: TermKind::Extension,
                start: date(2026, 1, 1),
                end: date(2026, 7, 1),
            },
        ];
        let svg = timeline(&terms, date(2026, 3, 1));
        assert_eq!(svg.matches("<rect class=\"term").count(), 2);
        assert!(svg.contains("extension: 2026-01-01 to 2026-07-01"));
    }
}

//! A hand-written SVG bar chart of the throughput figures (no plotting dependency).

use std::fmt::Write as _;

const WIDTH: f64 = 760.0;
const LABEL_W: f64 = 250.0;
const VALUE_W: f64 = 110.0;
const ROW_H: f64 = 34.0;
const TOP: f64 = 44.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Horizontal bars, one per `(label, messages/s)`, scaled to the largest.
pub(crate) fn chart(title: &str, rows: &[(String, f64)]) -> String {
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max).max(1.0);
    let height = TOP + ROW_H * rows.len() as f64 + 16.0;
    let bar_w = WIDTH - LABEL_W - VALUE_W - 20.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="24" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        let w = (value / max * bar_w).max(1.0);
        let colour = if label.starts_with("ThreadManager") {
            "#2b7bb9"
        } else if label.starts_with("Python") {
            "#c0504d"
        } else {
            "#9aa5b1"
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.0}" y="{:.0}" text-anchor="end">{}</text>"#,
            LABEL_W - 8.0,
            y + 17.0,
            escape(label)
        );
        let _ = writeln!(
            s,
            r#"<rect x="{LABEL_W}" y="{:.0}" width="{w:.1}" height="24" fill="{colour}"/>"#,
            y + 2.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.0}">{value:.0}/s</text>"#,
            LABEL_W + w + 6.0,
            y + 17.0
        );
    }
    s.push_str("</svg>\n");
    s
}

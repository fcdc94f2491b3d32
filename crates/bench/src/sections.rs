//! Sections of `docs/BENCHMARKS.md` that a mode writes on its own (`--rebalance`,
//! `--fetch-path`): found by their heading, replaced in place, and kept by the other
//! runs.

/// The section under `heading` in `report`, if it has one (up to the next `## `).
pub(crate) fn section_at<'a>(report: &'a str, heading: &str) -> Option<&'a str> {
    let start = report.find(heading)?;
    let rest = &report[start..];
    let len = rest[heading.len()..]
        .find("\n## ")
        .map_or(rest.len(), |i| heading.len() + i + 1);
    Some(&rest[..len])
}

/// The sections of `report` under any of `headings`, in that order, if it has any.
pub(crate) fn existing(report: &str, headings: &[&str]) -> Option<String> {
    let found: Vec<&str> = headings
        .iter()
        .filter_map(|h| section_at(report, h).map(str::trim_end))
        .collect();
    (!found.is_empty()).then(|| found.join("\n\n"))
}

/// `report` with its section under `heading` replaced by `section` (appended when
/// absent).
pub(crate) fn splice_at(report: &str, section: &str, heading: &str) -> String {
    match section_at(report, heading) {
        Some(old) => report.replacen(old, section, 1),
        None if report.is_empty() => section.to_owned(),
        None => format!("{}\n\n{section}", report.trim_end()),
    }
}

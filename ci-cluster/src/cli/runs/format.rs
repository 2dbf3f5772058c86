//! How `ci-cluster runs` prints: aligned tables, short durations and ages,
//! and text made safe for a terminal.

use std::fmt::Write as _;

use crate::api::model::Run;

/// Renders rows under a header as columns separated by two spaces; the last
/// column is not padded (it is usually free text).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(cell.chars().count());
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `1.2s`, `3m04s`, `2h05m`.
pub fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..60 => format!("{}.{}s", secs, (ms % 1000) / 100),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

/// How long ago, coarsely: `12s`, `5m`, `3h`, `4d`.
pub fn age(then_ms: u64, now_ms: u64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// `2024-05-01 10:00:00 UTC`.
pub fn timestamp(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A run's duration so far (running) or in total (final).
pub fn run_duration(run: &Run, now_ms: u64) -> String {
    match (run.started_ms, run.finished_ms) {
        (Some(start), Some(end)) => duration(end.saturating_sub(start)),
        (Some(start), None) => duration(now_ms.saturating_sub(start)),
        _ => "-".into(),
    }
}

/// What the run ran: the change and patchset for a change, else the ref.
pub fn subject(run: &Run) -> String {
    match (&run.change_number, run.patchset) {
        (Some(change), Some(ps)) if ps > 0 => format!("change {change},{ps}"),
        (Some(change), _) => format!("change {change}"),
        _ => cell(&run.git_ref, 200),
    }
}

/// Text from payloads (titles, names, reasons) for a table cell: control
/// characters (escape sequences could rewrite the terminal, newlines forge
/// rows) are escaped visibly, and long text is cut.
pub fn cell(text: &str, max_chars: usize) -> String {
    let escaped = airlock_pipeline::terminal::field(text);
    let mut out: String = escaped.chars().take(max_chars).collect();
    if escaped.chars().count() > max_chars {
        out.pop();
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_leave_the_last_column_unpadded() {
        let t = table(
            &["ID", "NAME"],
            &[
                vec!["1".into(), "a".into()],
                vec!["100".into(), "bb".into()],
            ],
        );
        assert_eq!(t, "ID   NAME\n1    a\n100  bb\n");
    }

    #[test]
    fn durations_and_ages_are_short() {
        assert_eq!(duration(1234), "1.2s");
        assert_eq!(duration(184_000), "3m04s");
        assert_eq!(duration(7_500_000), "2h05m");
        assert_eq!(age(0, 90_000), "1m");
        assert_eq!(age(0, 3 * 86_400_000), "3d");
    }

    #[test]
    fn terminal_controls_are_neutralised() {
        assert_eq!(cell("a\u{1b}]0;pwned\u{7}b", 80), "a\\x1b]0;pwned\\x07b");
        assert_eq!(cell("row\nforged", 80), "row\\nforged");
        assert_eq!(cell("abcdef", 4), "abc…");
        assert_eq!(
            airlock_pipeline::terminal::log_line(
                "\u{1b}[31mred\u{1b}[0m \u{1b}[2Jclear\u{1b}]0;t\u{7}",
                true
            ),
            "\u{1b}[31mred\u{1b}[0m clear\u{1b}[0m"
        );
        assert_eq!(
            airlock_pipeline::terminal::log_line("\u{1b}[31mred", false),
            "red"
        );
        assert_eq!(
            airlock_pipeline::terminal::log_line("tab\there\r", true),
            "tab\there"
        );
    }
}

//! The page shell and the small pieces every page uses: status badges (icon
//! and word, so they read without colour), times, durations, sizes.

use airlock_pipeline::events::JobState;
use maud::{DOCTYPE, Markup, html};

use crate::event::ForgeEvent;
use crate::store::{RunRow, RunStatus};

/// Which navigation entry is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// `/`.
    Projects,
    /// `/runs` and everything under a run.
    Runs,
    /// Error pages.
    None,
}

/// A whole HTML page. Scripts and styles are files of this origin only (CSP).
pub fn page(title: &str, nav: Nav, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Airlock CI" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header.top {
                    div.wrap {
                        a.brand href="/" { span.logo aria-hidden="true" { "◆" } " Airlock CI" }
                        nav aria-label="Main" {
                            a href="/" aria-current=[(nav == Nav::Projects).then_some("page")] { "Projects" }
                            a href="/runs" aria-current=[(nav == Nav::Runs).then_some("page")] { "Runs" }
                        }
                    }
                }
                main.wrap { (body) }
                footer.wrap { "Airlock CI · times in UTC · " a href="/runs" { "all runs" } }
            }
        }
    }
}

/// Icon, CSS class and word for a run status.
pub fn run_status_parts(status: RunStatus) -> (&'static str, &'static str, &'static str) {
    match status {
        RunStatus::Queued => ("○", "st-queued", "queued"),
        RunStatus::Running => ("◐", "st-running", "running"),
        RunStatus::Passed => ("✓", "st-passed", "passed"),
        RunStatus::Failed => ("✗", "st-failed", "failed"),
        RunStatus::Cancelled => ("⊘", "st-cancelled", "cancelled"),
        RunStatus::Error => ("⚠", "st-error", "error"),
    }
}

/// Icon, CSS class and word for a job state; the class suffix is the state's
/// serialised name (what the live stream sends).
pub fn job_state_parts(state: JobState) -> (&'static str, &'static str, &'static str) {
    match state {
        JobState::Pending => ("○", "st-pending", "pending"),
        JobState::Running => ("◐", "st-running", "running"),
        JobState::Passed => ("✓", "st-passed", "passed"),
        JobState::Failed => ("✗", "st-failed", "failed"),
        JobState::TimedOut => ("✗", "st-timed_out", "timed out"),
        JobState::OutOfMemory => ("✗", "st-out_of_memory", "out of memory"),
        JobState::Skipped => ("↷", "st-skipped", "skipped"),
        JobState::Cancelled => ("⊘", "st-cancelled", "cancelled"),
        JobState::Error => ("⚠", "st-error", "error"),
    }
}

/// Whether a job's log should be open by default: it is what a reviewer came for.
pub fn job_needs_attention(state: JobState) -> bool {
    matches!(
        state,
        JobState::Failed
            | JobState::TimedOut
            | JobState::OutOfMemory
            | JobState::Error
            | JobState::Running
    )
}

fn badge(parts: (&str, &str, &str)) -> Markup {
    let (icon, class, word) = parts;
    html! { span class={ "badge " (class) } { span.icon aria-hidden="true" { (icon) } " " span.word { (word) } } }
}

/// A run status badge.
pub fn run_badge(status: RunStatus) -> Markup {
    badge(run_status_parts(status))
}

/// A job state badge.
pub fn job_badge(state: JobState) -> Markup {
    badge(job_state_parts(state))
}

/// The first characters of a commit id, the full id on hover.
pub fn commit_short(commit: &str) -> Markup {
    let short: String = commit.chars().take(10).collect();
    html! { code.commit title=(commit) { (short) } }
}

/// `refs/heads/main` as `main`, `refs/changes/01/1/2` as-is (that is what Gerrit users know).
pub fn ref_label(git_ref: &str) -> &str {
    git_ref
        .strip_prefix("refs/heads/")
        .or_else(|| git_ref.strip_prefix("refs/tags/"))
        .unwrap_or(git_ref)
}

/// A UTC timestamp for people.
pub fn absolute_time(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

/// "5 min ago" (the absolute time on hover and for machines).
pub fn when(ms: u64, now_ms: u64) -> Markup {
    let ago = now_ms.saturating_sub(ms) / 1000;
    let text = match ago {
        0..10 => "just now".to_string(),
        10..60 => format!("{ago} s ago"),
        60..3600 => format!("{} min ago", ago / 60),
        3600..86_400 => format!("{} h ago", ago / 3600),
        86_400..2_592_000 => format!("{} days ago", ago / 86_400),
        _ => absolute_time(ms).chars().take(10).collect(),
    };
    let iso = i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    html! { time datetime=(iso) title=(absolute_time(ms)) { (text) } }
}

/// "850 ms", "12.3 s", "3 min 04 s", "1 h 02 min".
pub fn duration(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {:02} s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{} h {:02} min", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// How long something took, or has been taking.
pub fn span_ms(started: Option<u64>, finished: Option<u64>, now_ms: u64) -> Option<u64> {
    started.map(|s| finished.unwrap_or(now_ms).saturating_sub(s))
}

/// "1.2 KiB".
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A link to a page on the forge, only for http(s) URLs: the URL comes from a
/// webhook payload, and a `javascript:` URL must never become a link.
pub fn external_link(url: Option<&str>, text: &str) -> Markup {
    match url.filter(|u| u.starts_with("https://") || u.starts_with("http://")) {
        Some(u) => html! { a.external href=(u) rel="noopener noreferrer" { (text) " ↗" } },
        None => html! {},
    }
}

/// Where the change of a run is shown here, if it is a change.
pub fn change_href(run: &RunRow) -> Option<String> {
    run.change_number
        .as_ref()
        .map(|c| format!("/changes/{}/{}", url_segment(&run.project), url_segment(c)))
}

/// "change 12 · patchset 3", "PR 5", or nothing.
pub fn change_label(run: &RunRow) -> Option<String> {
    let number = run.change_number.as_ref()?;
    Some(match run.patchset {
        Some(p) if p > 0 => format!("change {number} · patchset {p}"),
        _ => format!("change {number}"),
    })
}

/// The event's title, or a fallback, so a row never has an empty cell.
pub fn event_title(event: &ForgeEvent) -> &str {
    if event.title.trim().is_empty() {
        "(no title)"
    } else {
        &event.title
    }
}

/// Percent-encodes a path segment (project names and change numbers are
/// plain, but a stored row is not trusted to be).
pub fn url_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    airlock_pipeline::log::now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_for_people() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_340), "12.3 s");
        assert_eq!(duration(184_000), "3 min 04 s");
        assert_eq!(duration(3_720_000), "1 h 02 min");
        assert_eq!(size(512), "512 bytes");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(url_segment("a b/../c"), "a%20b%2F..%2Fc");
        assert_eq!(ref_label("refs/heads/main"), "main");
    }

    #[test]
    fn only_http_links_become_links() {
        assert!(
            external_link(Some("javascript:alert(1)"), "x")
                .into_string()
                .is_empty()
        );
        let link = external_link(Some("https://g/c/1\"><script>"), "x").into_string();
        assert!(link.contains("&quot;&gt;&lt;script&gt;"), "{link}");
    }
}

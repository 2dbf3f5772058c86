//! Job logs: one collapsible section per job with numbered, colour-rendered
//! lines (failed and running jobs open), and the raw text of a log.

use airlock_pipeline::log::{LogLine, Stream};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use maud::{Markup, PreEscaped, html};

use super::{WebError, ansi, layout, read_store};
use crate::kernel::AppState;
use crate::store::{JobRow, RunId, Store, StoreError};

/// Lines of one job shown on the page; the raw log has them all. A job log
/// is capped at 4 MiB by the runner, so reading a whole one stays bounded.
pub const MAX_LINES_ON_PAGE: usize = 5000;
/// Lines read from the store per query.
const CHUNK: usize = 5000;

/// A job's log as shown: the last lines, and how many came before them.
#[derive(Debug, Default)]
pub struct LogTail {
    /// `(seq, line)`, in order.
    pub lines: Vec<(u64, LogLine)>,
    /// Lines left out before the first shown.
    pub hidden: u64,
    /// The last sequence number stored (where a live tail goes on from).
    pub last_seq: u64,
}

/// Reads the last [`MAX_LINES_ON_PAGE`] lines of a job's log: the end is
/// where a failure is.
pub fn read_tail(store: &Store, run: RunId, job: &str) -> Result<LogTail, StoreError> {
    let mut tail = LogTail::default();
    loop {
        let chunk = store.log(run, job, tail.last_seq, CHUNK)?;
        let Some((last, _)) = chunk.last() else { break };
        tail.last_seq = *last;
        let done = chunk.len() < CHUNK;
        tail.lines.extend(chunk);
        if tail.lines.len() > MAX_LINES_ON_PAGE {
            let cut = tail.lines.len() - MAX_LINES_ON_PAGE;
            tail.lines.drain(..cut);
            tail.hidden += cut as u64;
        }
        if done {
            break;
        }
    }
    Ok(tail)
}

/// The class marking lines a job wrote to stderr, and Airlock's own lines
/// (retries, timeouts, truncation); stdout lines have none.
pub fn stream_class(stream: Stream) -> Option<&'static str> {
    match stream {
        Stream::Stdout => None,
        Stream::Stderr => Some("stderr"),
        Stream::System => Some("system"),
    }
}

/// One log line as an `<li>`: a line-number link (drawn by CSS from
/// `data-n`, so copying a log copies no numbers) and the rendered text.
pub fn line_item(job: &str, seq: u64, line: &LogLine) -> Markup {
    let anchor = format!("job-{job}-L{seq}");
    html! {
        li id=(anchor) class=[stream_class(line.stream)] {
            a.ln href={ "#" (anchor) } data-n=(seq) aria-label={ "line " (seq) } {}
            // Escaped and colour-classed by `ansi::line_to_html`.
            span.tx { (PreEscaped(ansi::line_to_html(&line.text))) }
        }
    }
}

/// "12 lines" (counting the hidden ones), or nothing for an empty log.
fn line_count(tail: &LogTail) -> String {
    match tail.last_seq {
        0 => String::new(),
        1 => "1 line".into(),
        n => format!("{n} lines"),
    }
}

/// A job's section: summary line (state, duration, detail) and its log.
pub fn job_section(run: RunId, job: &JobRow, tail: &LogTail, now: u64) -> Markup {
    let (_, class, _) = layout::job_state_parts(job.state);
    let open = layout::job_needs_attention(job.state);
    let took = layout::span_ms(job.started_ms, job.finished_ms, now);
    html! {
        details class={ "job " (class) } id={ "job-" (job.name) } data-job=(job.name) open[open] {
            summary {
                span.job-badge { (layout::job_badge(job.state)) }
                span.job-name { (job.name) }
                @let running = job.state == airlock_pipeline::events::JobState::Running;
                span.dur data-since=[job.started_ms.filter(|_| running)] { @if let Some(d) = took { (layout::duration(d)) } }
                span.lines { (line_count(tail)) }
                span.detail {
                    @if let Some(detail) = &job.detail { (detail) }
                    @if job.attempts > 1 { " · attempt " (job.attempts) }
                }
                a.raw href={ "/runs/" (run) "/jobs/" (layout::url_segment(&job.name)) "/log.txt" } { "raw" }
            }
            div.log-wrap {
                @if tail.hidden > 0 {
                    p.hidden-lines {
                        (tail.hidden) " earlier lines are not shown; "
                        a href={ "/runs/" (run) "/jobs/" (layout::url_segment(&job.name)) "/log.txt" } { "the raw log" }
                        " has them all."
                    }
                }
                ol.log data-job=(job.name) data-seq=(tail.last_seq) {
                    @for (seq, line) in &tail.lines {
                        (line_item(&job.name, *seq, line))
                    }
                }
                @if tail.lines.is_empty() {
                    p.no-output { @if job.state.is_final() { "No output." } @else { "Waiting for output…" } }
                }
            }
        }
    }
}

/// `GET /runs/{id}/jobs/{job}/log.txt`: the whole log as text (escape codes
/// kept; `text/plain` with `nosniff` is inert in a browser).
pub async fn raw(
    State(state): State<AppState>,
    Path((id, job)): Path<(RunId, String)>,
) -> Result<impl IntoResponse, WebError> {
    let name = job.clone();
    let text = read_store(&state, move |store| {
        if store.run(id)?.is_none() || !store.jobs(id)?.iter().any(|j| j.name == name) {
            return Ok(None);
        }
        let mut text = String::new();
        let mut after = 0;
        loop {
            let chunk = store.log(id, &name, after, CHUNK)?;
            let Some((last, _)) = chunk.last() else { break };
            after = *last;
            for (_, line) in &chunk {
                text.push_str(&line.text);
                text.push('\n');
            }
        }
        Ok(Some(text))
    })
    .await?
    .ok_or_else(|| WebError::not_found(format!("Run {id} has no job {job}.")))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}

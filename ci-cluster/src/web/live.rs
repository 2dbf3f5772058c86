//! `GET /runs/{id}/live`: Server-Sent Events for an open run page.
//!
//! The runner writes log lines and job states to the store as they happen
//! (lines in batches every 200 ms); this stream polls the store every
//! [`POLL`] for what is newer than what the page has, so it works the same
//! for a page opened mid-run, after a reconnect, or against a server that
//! restarted. Events:
//!
//! - `log`: `{"job", "seq", "class", "html"}`, one line, `html` escaped and
//!   colour-classed by [`super::ansi`], `class` `stderr`, `system` or null;
//! - `job`: `{"job", "state", "class", "icon", "word", "meta", "duration", "since", "detail", "open"}`
//!   when a job's state changes (all jobs once at the start);
//! - `run`: `{"status", "class", "icon", "word"}` once the run is final and
//!   every line was sent; then the stream ends.
//!
//! The page says where it is with `?after=SEQ:JOB` pairs (one per job, the
//! last line number it shows). Polling the store keeps the runner free of
//! subscribers; the number of open streams is capped ([`MAX_STREAMS`]) because
//! anyone may open one.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use airlock_pipeline::events::JobState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{WebError, ansi, dag, layout, logs, read_store};
use crate::kernel::AppState;
use crate::store::{JobRow, RunId, RunStatus};

/// How often the store is asked for news.
pub const POLL: Duration = Duration::from_millis(250);
/// Open live streams at most; more get 503 and the page stays static.
pub const MAX_STREAMS: usize = 256;
/// Lines per job per poll; the rest follow at the next poll.
const LINES_PER_POLL: usize = 1000;

static STREAMS: Semaphore = Semaphore::const_new(MAX_STREAMS);

/// What the page last heard about a job.
type JobKey = (JobState, u32, Option<u64>, Option<u64>, Option<String>);

struct Tail {
    state: AppState,
    run: RunId,
    /// Last line sent per job.
    after: HashMap<String, u64>,
    /// Last state sent per job.
    jobs: HashMap<String, JobKey>,
    first: bool,
    done: bool,
    _permit: SemaphorePermit<'static>,
}

/// `GET /runs/{id}/live`.
pub async fn stream(
    State(state): State<AppState>,
    Path(id): Path<RunId>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let Ok(permit) = STREAMS.try_acquire() else {
        return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live streams; reload later",
        )
            .into_response());
    };
    if read_store(&state, move |store| store.run(id))
        .await?
        .is_none()
    {
        return Err(WebError::not_found(format!("There is no run {id}.")));
    }
    let after = pairs
        .iter()
        .filter(|(k, _)| k == "after")
        .filter_map(|(_, v)| v.split_once(':'))
        .filter_map(|(seq, job)| Some((job.to_string(), seq.parse::<u64>().ok()?)))
        .collect();
    let tail = Tail {
        state,
        run: id,
        after,
        jobs: HashMap::new(),
        first: true,
        done: false,
        _permit: permit,
    };
    let events = futures_util::stream::unfold(tail, next_batch).flat_map(|batch| {
        futures_util::stream::iter(batch.into_iter().map(Ok::<Event, Infallible>))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Waits for the next poll (not before the first) and returns what is new.
/// `None` ends the stream: the run is final, the server stops, or the store failed.
async fn next_batch(mut tail: Tail) -> Option<(Vec<Event>, Tail)> {
    if tail.done {
        return None;
    }
    if !tail.first {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            // A long-lived response would hold graceful shutdown open.
            _ = tail.state.shutdown.cancelled() => return None,
        }
    }
    tail.first = false;
    let (run, after) = (tail.run, tail.after.clone());
    let polled = read_store(&tail.state, move |store| {
        // Status first: once it reads final, every line and job state was
        // already stored (the runner stores them before finishing the run).
        let status = store.run(run)?.map(|r| r.status);
        let jobs = store.jobs(run)?;
        let mut lines = Vec::new();
        let mut drained = true;
        for job in &jobs {
            let from = after.get(&job.name).copied().unwrap_or(0);
            let chunk = store.log(run, &job.name, from, LINES_PER_POLL)?;
            drained &= chunk.len() < LINES_PER_POLL;
            lines.extend(
                chunk
                    .into_iter()
                    .map(|(seq, line)| (job.name.clone(), seq, line)),
            );
        }
        Ok((status, jobs, lines, drained))
    })
    .await;
    let Ok((status, jobs, lines, drained)) = polled else {
        return None;
    };
    let now = layout::now_ms();
    let mut events = Vec::new();
    for job in &jobs {
        let key = (
            job.state,
            job.attempts,
            job.started_ms,
            job.finished_ms,
            job.detail.clone(),
        );
        if tail.jobs.get(&job.name) != Some(&key) {
            events.push(job_event(job, now));
            tail.jobs.insert(job.name.clone(), key);
        }
    }
    for (job, seq, line) in lines {
        let class = logs::stream_class(line.stream);
        let data =
            json!({"job": job, "seq": seq, "class": class, "html": ansi::line_to_html(&line.text)});
        events.push(Event::default().event("log").data(data.to_string()));
        tail.after.insert(job, seq);
    }
    match status {
        None => return None,
        Some(status) if status.is_final() && drained => {
            events.push(run_event(status));
            tail.done = true;
        }
        Some(_) => {}
    }
    Some((events, tail))
}

fn job_event(job: &JobRow, now: u64) -> Event {
    let (icon, class, word) = layout::job_state_parts(job.state);
    let took = layout::span_ms(job.started_ms, job.finished_ms, now);
    let mut detail = job.detail.clone().unwrap_or_default();
    if job.attempts > 1 {
        detail.push_str(&format!(" · attempt {}", job.attempts));
    }
    let data = json!({
        "job": job.name,
        "state": job.state,
        "class": class,
        "icon": icon,
        "word": word,
        "meta": dag::meta_text(job.state, took),
        "duration": took.map(layout::duration).unwrap_or_default(),
        // A running job's duration ticks in the page from here.
        "since": job.started_ms.filter(|_| job.state == JobState::Running),
        "detail": detail,
        "open": layout::job_needs_attention(job.state),
    });
    Event::default().event("job").data(data.to_string())
}

fn run_event(status: RunStatus) -> Event {
    let (icon, class, word) = layout::run_status_parts(status);
    let data = json!({"status": status.as_str(), "class": class, "icon": icon, "word": word});
    Event::default().event("run").data(data.to_string())
}

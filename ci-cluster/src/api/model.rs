//! The JSON shapes of `/api/v1`: the wire contract that the OpenAPI document
//! describes and `ci-cluster runs` reads back.
//!
//! They mirror the store's rows instead of serialising them directly, so a
//! new column in the store or a new variant of a pipeline enum cannot change
//! the API unnoticed: the conversions below are exhaustive `match`es, and an
//! unknown variant fails to compile here until it is described.

use airlock_pipeline::events::JobState as PipelineJobState;
use airlock_pipeline::log::{LogLine as PipelineLogLine, Stream as PipelineStream};
use airlock_pipeline::spec::EventKind as PipelineEventKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::event::{Change, Forge, Intent, ReportTarget};
use crate::store::{JobRow, ReportRow, RunRow, RunStatus};

/// What caused a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A change under review (Gerrit patchset, pull/merge request).
    Change,
    /// A push to a branch.
    Push,
    /// A tag was pushed.
    Tag,
    /// A cron schedule from the configuration.
    Schedule,
    /// Started by a person (`ci-cluster trigger`, the admin API).
    Manual,
}

impl EventKind {
    /// The serialised name, for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Change => "change",
            EventKind::Push => "push",
            EventKind::Tag => "tag",
            EventKind::Schedule => "schedule",
            EventKind::Manual => "manual",
        }
    }
}

impl From<PipelineEventKind> for EventKind {
    fn from(kind: PipelineEventKind) -> Self {
        match kind {
            PipelineEventKind::Change => EventKind::Change,
            PipelineEventKind::Push => EventKind::Push,
            PipelineEventKind::Tag => EventKind::Tag,
            PipelineEventKind::Schedule => EventKind::Schedule,
            PipelineEventKind::Manual => EventKind::Manual,
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its `needs` or for a free slot.
    Pending,
    /// Running.
    Running,
    /// Exited 0 and its outputs were collected.
    Passed,
    /// Exited non-zero, was killed by a signal, or its outputs could not be collected.
    Failed,
    /// Ran past its timeout and was killed.
    TimedOut,
    /// Killed for exceeding its memory limit.
    OutOfMemory,
    /// Not run because a job it needs did not pass.
    Skipped,
    /// Stopped (or never started) because the run was cancelled.
    Cancelled,
    /// The executor could not run it at all.
    Error,
}

impl JobState {
    /// The serialised name, for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Passed => "passed",
            JobState::Failed => "failed",
            JobState::TimedOut => "timed_out",
            JobState::OutOfMemory => "out_of_memory",
            JobState::Skipped => "skipped",
            JobState::Cancelled => "cancelled",
            JobState::Error => "error",
        }
    }
}

impl From<PipelineJobState> for JobState {
    fn from(state: PipelineJobState) -> Self {
        match state {
            PipelineJobState::Pending => JobState::Pending,
            PipelineJobState::Running => JobState::Running,
            PipelineJobState::Passed => JobState::Passed,
            PipelineJobState::Failed => JobState::Failed,
            PipelineJobState::TimedOut => JobState::TimedOut,
            PipelineJobState::OutOfMemory => JobState::OutOfMemory,
            PipelineJobState::Skipped => JobState::Skipped,
            PipelineJobState::Cancelled => JobState::Cancelled,
            PipelineJobState::Error => JobState::Error,
        }
    }
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The job's standard output.
    Stdout,
    /// The job's standard error.
    Stderr,
    /// Written by Airlock itself (retries, timeouts, truncation).
    System,
}

impl From<PipelineStream> for Stream {
    fn from(stream: PipelineStream) -> Self {
        match stream {
            PipelineStream::Stdout => Stream::Stdout,
            PipelineStream::Stderr => Stream::Stderr,
            PipelineStream::System => Stream::System,
        }
    }
}

/// A run: one pipeline execution for one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    /// Run id (increasing).
    pub id: i64,
    /// Configured project name.
    pub project: String,
    /// Where the run stands.
    pub status: RunStatus,
    /// Why it is in this status (superseded, cancelled by an admin, re-run of…).
    pub reason: Option<String>,
    /// What caused it.
    pub kind: EventKind,
    /// Full ref.
    pub git_ref: String,
    /// Commit id run.
    pub commit: String,
    /// Change number, for change events.
    pub change_number: Option<String>,
    /// Patchset (0 for forges without patchsets), for change events.
    pub patchset: Option<u32>,
    /// Where the event came from.
    pub forge: Forge,
    /// Commit subject or change title.
    pub title: String,
    /// Who caused it.
    pub author: String,
    /// The event this run executes.
    pub event_id: i64,
    /// Claims so far (above 1 after a restart re-queued it).
    pub attempt: u32,
    /// A cancel was requested while it ran.
    pub cancel_requested: bool,
    /// When it was queued (ms since the Unix epoch).
    pub created_ms: u64,
    /// When the current or last attempt started.
    pub started_ms: Option<u64>,
    /// When it reached a final status.
    pub finished_ms: Option<u64>,
    /// The run's page in the web UI.
    pub url: String,
}

impl Run {
    /// The API view of a stored run; `public_url` is the configured base of links.
    pub fn from_row(row: &RunRow, public_url: &str) -> Run {
        Run {
            id: row.id,
            project: row.project.clone(),
            status: row.status,
            reason: row.reason.clone(),
            kind: row.kind.into(),
            git_ref: row.git_ref.clone(),
            commit: row.commit.clone(),
            change_number: row.change_number.clone(),
            patchset: row.patchset,
            forge: row.event.forge,
            title: row.event.title.clone(),
            author: row.event.author.clone(),
            event_id: row.event_id,
            attempt: row.attempt,
            cancel_requested: row.cancel_requested,
            created_ms: row.created_ms,
            started_ms: row.started_ms,
            finished_ms: row.finished_ms,
            url: format!("{public_url}/runs/{}", row.id),
        }
    }
}

/// The normalised forge event that caused a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Event id.
    pub id: i64,
    /// Source.
    pub forge: Forge,
    /// The repository as the forge names it.
    pub repository: String,
    /// The forge's delivery id (de-duplication key).
    pub delivery: String,
    /// Run or cancel.
    pub intent: Intent,
    /// Kind.
    pub kind: EventKind,
    /// Full ref.
    pub git_ref: String,
    /// Commit id (empty for a cancellation).
    pub commit: String,
    /// The change, for change events.
    pub change: Option<Change>,
    /// Commit subject or change title.
    pub title: String,
    /// Who caused it.
    pub author: String,
    /// Where the verdict is reported.
    pub report: ReportTarget,
}

impl Event {
    /// The event of a stored run.
    pub fn from_row(row: &RunRow) -> Event {
        let e = &row.event;
        Event {
            id: row.event_id,
            forge: e.forge,
            repository: e.repository.clone(),
            delivery: e.delivery.clone(),
            intent: e.intent,
            kind: e.kind.into(),
            git_ref: e.git_ref.clone(),
            commit: e.commit.clone(),
            change: e.change.clone(),
            title: e.title.clone(),
            author: e.author.clone(),
            report: e.report.clone(),
        }
    }
}

/// A file a job produced, kept content-addressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Output {
    /// Workspace-relative path.
    pub path: String,
    /// Lowercase hex sha256 of the contents.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether an execute bit was set.
    pub executable: bool,
}

/// A job of a run, with its outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// Job name from the pipeline file.
    pub name: String,
    /// Where it stands.
    pub state: JobState,
    /// Attempts so far.
    pub attempts: u32,
    /// Exit code of the last attempt.
    pub exit_code: Option<i32>,
    /// Why it failed, was skipped…
    pub detail: Option<String>,
    /// When the last attempt started.
    pub started_ms: Option<u64>,
    /// When it ended.
    pub finished_ms: Option<u64>,
    /// `finished_ms - started_ms`, once both are known.
    pub duration_ms: Option<u64>,
    /// Collected outputs.
    pub outputs: Vec<Output>,
}

impl From<JobRow> for Job {
    fn from(row: JobRow) -> Self {
        let duration_ms = match (row.started_ms, row.finished_ms) {
            (Some(start), Some(end)) => Some(end.saturating_sub(start)),
            _ => None,
        };
        Job {
            name: row.name,
            state: row.state.into(),
            attempts: row.attempts,
            exit_code: row.exit_code,
            detail: row.detail,
            started_ms: row.started_ms,
            finished_ms: row.finished_ms,
            duration_ms,
            outputs: row
                .outputs
                .into_iter()
                .map(|o| Output {
                    path: o.path,
                    sha256: o.sha256,
                    size: o.size,
                    executable: o.executable,
                })
                .collect(),
        }
    }
}

/// A report sent (or to be sent) back to the forge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Report {
    /// Outbox id.
    pub id: i64,
    /// Where it goes.
    pub target: ReportTarget,
    /// The forge-specific body (Gerrit ReviewInput, GitHub or GitLab status).
    pub body: serde_json::Value,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When it was enqueued.
    pub created_ms: u64,
    /// Earliest time of the next attempt.
    pub next_attempt_ms: u64,
    /// When delivery was last tried.
    pub last_attempt_ms: Option<u64>,
    /// When it was delivered.
    pub sent_ms: Option<u64>,
    /// The last delivery error.
    pub last_error: Option<String>,
    /// Delivery was abandoned.
    pub gave_up: bool,
}

impl From<ReportRow> for Report {
    fn from(r: ReportRow) -> Self {
        Report {
            id: r.id,
            target: r.target,
            body: r.body,
            attempts: r.attempts,
            created_ms: r.created_ms,
            next_attempt_ms: r.next_attempt_ms,
            last_attempt_ms: r.last_attempt_ms,
            sent_ms: r.sent_ms,
            last_error: r.last_error,
            gave_up: r.gave_up,
        }
    }
}

/// One line of a job's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// Sequence number within the job's log, from 1; pass the last one seen as `after`.
    pub seq: u64,
    /// When it was written (ms since the Unix epoch).
    pub at_ms: u64,
    /// Origin.
    pub stream: Stream,
    /// Text without the trailing newline; may hold ANSI colour codes.
    pub text: String,
}

impl LogLine {
    /// A stored line with its sequence number.
    pub fn from_stored(seq: u64, line: PipelineLogLine) -> LogLine {
        LogLine {
            seq,
            at_ms: line.at_ms,
            stream: line.stream.into(),
            text: line.text,
        }
    }
}

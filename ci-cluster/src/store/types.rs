//! The values the store takes and returns.

use std::collections::BTreeMap;
use std::str::FromStr;

use airlock_pipeline::events::JobState;
use airlock_pipeline::outputs::OutputFile;
use airlock_pipeline::spec::EventKind;
use serde::{Deserialize, Serialize};

use crate::event::{ForgeEvent, ReportTarget};

/// A run's id (SQLite rowid, increasing).
pub type RunId = i64;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting for a free slot.
    Queued,
    /// Claimed by a runner.
    Running,
    /// Every selected job passed.
    Passed,
    /// A job did not pass.
    Failed,
    /// Cancelled (superseded, change abandoned, by an admin).
    Cancelled,
    /// Airlock could not run it (fetch failed, bad pipeline file, interrupted too often).
    Error,
}

impl RunStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Passed,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::Error,
    ];

    /// The stored and serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Passed => "passed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Error => "error",
        }
    }

    /// Whether the run will not change status again.
    pub fn is_final(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown run status '{s}'"))
    }
}

/// What [`Store::accept_event`](super::Store::accept_event) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// The (forge, delivery) pair was seen before; nothing changed.
    Duplicate,
    /// The same authenticated body from this forge was accepted before, as
    /// event `event_id`, under another delivery id: a replay with new headers
    /// (or a second hook sending one event). Nothing changed.
    Replayed {
        /// The event first accepted with this body.
        event_id: i64,
    },
    /// The event is older than what is known of its change (an older head or
    /// patchset, a close before a newer event) or its change is closed: it
    /// was stored with `reason` and does nothing else. Forges get a 2xx, so
    /// they do not retry it.
    Ignored {
        /// The stored event.
        event_id: i64,
        /// Why, for the log and the webhook's answer.
        reason: String,
    },
    /// The event was stored.
    New {
        /// The event's id.
        event_id: i64,
        /// The queued run, for `Intent::Run`.
        run: Option<RunId>,
        /// Running runs now flagged for cancellation: the caller stops them.
        cancel_running: Vec<RunId>,
    },
}

/// A run handed to a runner by [`Store::claim_next`](super::Store::claim_next).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedRun {
    /// The run.
    pub id: RunId,
    /// The event it runs for.
    pub event_id: i64,
    /// Configured project name.
    pub project: String,
    /// Full ref.
    pub git_ref: String,
    /// Commit id to run.
    pub commit: String,
    /// 1-based attempt (above 1 after a restart re-queued it).
    pub attempt: u32,
    /// The event as accepted.
    pub event: ForgeEvent,
}

/// A report to put in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewReport {
    /// Where it goes.
    pub target: ReportTarget,
    /// Forge-specific body, built by the reporter.
    pub body: serde_json::Value,
}

/// A report the sender should deliver now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingReport {
    /// Outbox id (pass it to `report_sent` / `report_failed`).
    pub id: i64,
    /// The run it reports on.
    pub run: RunId,
    /// Where it goes.
    pub target: ReportTarget,
    /// Body.
    pub body: serde_json::Value,
    /// Delivery attempts so far (for the backoff).
    pub attempts: u32,
}

/// A job's whole current state, upserted by (run, name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobUpdate {
    /// Job name.
    pub name: String,
    /// State.
    pub state: JobState,
    /// Attempts so far.
    pub attempts: u32,
    /// Exit code of the last attempt.
    pub exit_code: Option<i32>,
    /// Free text (why it failed, was skipped...).
    pub detail: Option<String>,
    /// When the current attempt started.
    pub started_ms: Option<u64>,
    /// When it ended.
    pub finished_ms: Option<u64>,
}

/// What [`Store::recover`](super::Store::recover) did with interrupted runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Put back in the queue.
    pub requeued: Vec<RunId>,
    /// Finished as `Error` (out of attempts), with failure reports enqueued.
    pub failed: Vec<RunId>,
    /// Finished as `Cancelled` because a cancel was requested before the crash.
    pub cancelled: Vec<RunId>,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRow {
    /// Run id.
    pub id: RunId,
    /// Event id.
    pub event_id: i64,
    /// Configured project name.
    pub project: String,
    /// Full ref.
    pub git_ref: String,
    /// Commit id.
    pub commit: String,
    /// Event kind.
    pub kind: EventKind,
    /// Change number, for change events.
    pub change_number: Option<String>,
    /// Patchset (0 for forges without patchsets), for change events.
    pub patchset: Option<u32>,
    /// Status.
    pub status: RunStatus,
    /// Why it is in this status (superseded, interrupted...).
    pub reason: Option<String>,
    /// Claims so far.
    pub attempt: u32,
    /// When it was queued.
    pub created_ms: u64,
    /// When the current (or last) attempt started.
    pub started_ms: Option<u64>,
    /// When it reached a final status.
    pub finished_ms: Option<u64>,
    /// A cancel was requested while it ran.
    pub cancel_requested: bool,
    /// The event it runs for.
    pub event: ForgeEvent,
}

/// Which runs [`Store::runs`](super::Store::runs) lists, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Only this project.
    pub project: Option<String>,
    /// Only this status.
    pub status: Option<RunStatus>,
    /// Only this ref.
    pub git_ref: Option<String>,
    /// Only this change number.
    pub change: Option<String>,
    /// Only this commit id (the trusted side's audit trace walks back by commit).
    pub commit: Option<String>,
    /// At most this many (0: no limit; the API layer picks its own cap).
    pub limit: usize,
    /// Skip this many.
    pub offset: usize,
}

/// A job as stored, with its outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRow {
    /// Job name.
    pub name: String,
    /// State.
    pub state: JobState,
    /// Attempts so far.
    pub attempts: u32,
    /// Exit code of the last attempt.
    pub exit_code: Option<i32>,
    /// Free text.
    pub detail: Option<String>,
    /// When it started.
    pub started_ms: Option<u64>,
    /// When it ended.
    pub finished_ms: Option<u64>,
    /// Collected outputs, in the order they were given.
    pub outputs: Vec<OutputFile>,
}

/// An outbox entry as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportRow {
    /// Outbox id.
    pub id: i64,
    /// Where it goes.
    pub target: ReportTarget,
    /// Body.
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

/// Totals for metrics and the UI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Events stored.
    pub events: u64,
    /// Runs per status name (every status present, zeros included).
    pub runs_by_status: BTreeMap<String, u64>,
    /// Runs waiting in the queue.
    pub queued: u64,
    /// Reports neither sent nor given up.
    pub reports_pending: u64,
}

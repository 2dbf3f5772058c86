//! Request and response bodies of `/api/v1`, built from the shapes in
//! [`model`](super::model).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::model::{Event, Job, JobState, LogLine, Report, Run};
use crate::event::Forge;
use crate::store::RunStatus;

/// Every refusal: a machine-readable reason and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// `not_found`, `unknown_project`, `unauthorized`, `malformed`, `too_large`,
    /// `not_final`, `unresolvable`, `not_configured` or `internal`.
    pub error: String,
    /// What went wrong, for people. Never holds a secret.
    pub message: String,
}

/// A configured project and its newest run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectSummary {
    /// Name in URLs.
    pub name: String,
    /// The forge that sends its events.
    pub forge: Forge,
    /// The forge's name for the repository.
    pub repository: String,
    /// The newest run, if any.
    pub latest_run: Option<Run>,
}

/// `GET /api/v1/projects`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectList {
    /// Every configured project, in configuration order.
    pub projects: Vec<ProjectSummary>,
}

/// `GET /api/v1/runs`: one page of runs, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunPage {
    /// The runs of this page.
    pub runs: Vec<Run>,
    /// This page (from 1).
    pub page: u32,
    /// Page size used.
    pub per_page: u32,
    /// The next page's number, when there are more runs.
    pub next_page: Option<u32>,
}

/// `GET /api/v1/runs/{id}`: a run with everything about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunDetail {
    /// The run.
    pub run: Run,
    /// The event that caused it.
    pub event: Event,
    /// Its jobs in the order they were first reported, each with its outputs.
    pub jobs: Vec<Job>,
    /// What was (or will be) reported back to the forge, oldest first.
    pub reports: Vec<Report>,
}

/// `GET /api/v1/changes/{project}/{change}`: every run of a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChangeRuns {
    /// Project.
    pub project: String,
    /// Change number (Gerrit change, pull request or merge request).
    pub change: String,
    /// The newest run's change title.
    pub title: String,
    /// Link to the change on the forge, if known.
    pub url: Option<String>,
    /// Its runs, newest first (every patchset).
    pub runs: Vec<Run>,
}

/// `GET /api/v1/runs/{id}/jobs/{job}/log`: a slice of a job's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    /// Run id.
    pub run: i64,
    /// Job name.
    pub job: String,
    /// The job's state now; null while the job has not been reported yet.
    pub job_state: Option<JobState>,
    /// The run's status now: once it is final, the log is complete.
    pub run_status: RunStatus,
    /// Lines after `after`, oldest first.
    pub lines: Vec<LogLine>,
    /// Pass this as `after` to get the next lines.
    pub next_after: u64,
    /// The page was full: more lines are there already.
    pub more: bool,
}

/// Body of a manual run request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// Full ref to run, e.g. `refs/heads/main`.
    #[serde(rename = "ref")]
    pub git_ref: String,
}

/// Answer to an accepted event (webhook or manual run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// `queued` (a run was queued), `cancelled` (the event cancelled runs),
    /// `duplicate` (seen before, nothing new) or `ignored`.
    pub status: String,
    /// The stored event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<i64>,
    /// The queued run.
    #[serde(default)]
    pub run: Option<i64>,
    /// Runs this event cancelled (older patchsets, a closed change).
    #[serde(default)]
    pub cancelled: Vec<i64>,
    /// The delivery id, for a duplicate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// Why an event was ignored (not acted on, older than what is known of
    /// its change, or its change is closed), or why a delivery with a new id
    /// is a duplicate (its body was accepted before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /api/v1/runs/{id}/cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Cancelled {
    /// Run id.
    pub run: i64,
    /// Whether this request changed anything (false: already final or already asked).
    pub changed: bool,
    /// The run's status now: `cancelled` for a queued run; a running one stays
    /// `running` with `cancel_requested` until its jobs are stopped.
    pub status: RunStatus,
    /// A cancel is pending for the running run.
    pub cancel_requested: bool,
}

/// `POST /api/v1/runs/{id}/rerun`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rerun {
    /// Always `queued`.
    pub status: String,
    /// The new run.
    pub run: i64,
    /// The run it repeats.
    pub rerun_of: i64,
}

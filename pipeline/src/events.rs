//! State changes the DAG engine publishes; the CLI, the CI cluster and the UI subscribe.

use serde::Serialize;

use crate::log::LogLine;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its `needs` or for a free slot.
    Pending,
    /// Running (see `attempt`).
    Running,
    /// Exited 0 and its outputs were collected.
    Passed,
    /// Exited non-zero, was killed by a signal, or its outputs could not be collected.
    Failed,
    /// Ran past its timeout and was killed with its children.
    TimedOut,
    /// Killed by the kernel for exceeding its memory limit.
    OutOfMemory,
    /// Not run because a job it needs did not pass.
    Skipped,
    /// Stopped (or never started) because the run was cancelled.
    Cancelled,
    /// The executor could not run it at all (sandbox missing, workspace unreadable...).
    Error,
}

impl JobState {
    /// Whether the job will not change state again.
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Pending | JobState::Running)
    }
    /// Lowercase name for display.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Passed => "passed",
            JobState::Failed => "failed",
            JobState::TimedOut => "timed out",
            JobState::OutOfMemory => "out of memory",
            JobState::Skipped => "skipped",
            JobState::Cancelled => "cancelled",
            JobState::Error => "error",
        }
    }
}

/// One event of a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunEvent {
    /// A job changed state.
    Job {
        /// Job name.
        job: String,
        /// New state.
        state: JobState,
        /// 1-based attempt (0 before the first).
        attempt: u32,
        /// Free-text reason (exit code, skipped because...).
        detail: Option<String>,
        /// Milliseconds since the Unix epoch.
        at_ms: u64,
    },
    /// A log line of a running job.
    Log {
        /// Job name.
        job: String,
        /// The line.
        line: LogLine,
    },
    /// Every job is final.
    Finished {
        /// Whether every job passed.
        passed: bool,
        /// Whether the run was cancelled.
        cancelled: bool,
    },
}

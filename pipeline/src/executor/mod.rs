//! Executors run one job attempt in isolation.
//!
//! The trait knows nothing of bubblewrap or Kubernetes: the DAG engine hands
//! over a prepared workspace and a [`LogSink`], and gets back how the process
//! ended. The sandbox executor is the embedded default.

pub mod ceiling;
mod cgroup;
mod disk;
mod root;
mod sandbox;
mod seccomp;
mod supervise;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

pub use ceiling::JobCeilings;
pub use cgroup::CgroupSupport;
pub use disk::{DiskLease, DiskSupport, HostReserve, mounts_beneath, remove_work_dir};
pub use root::{HOST_MODE_NOTICE, HostMode};
pub use sandbox::{DEFAULT_HOST_RESERVE_BYTES, SandboxConfig, SandboxExecutor};

use crate::log::LogSink;
use crate::spec::ResourceLimits;

/// One attempt of one job, ready to start.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// Job name (for logs and cgroup names).
    pub job: String,
    /// Unique id of this attempt (safe for file and cgroup names).
    pub attempt_id: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// The whole environment the job sees.
    pub env: BTreeMap<String, String>,
    /// Host directory mounted read-write as the job's workspace.
    pub workspace: PathBuf,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Limits to enforce.
    pub resources: ResourceLimits,
    /// The image the job runs in; None: host mode.
    pub image: Option<crate::image::ImageRef>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// The process exited with this code.
    Exited(i32),
    /// The process was killed by this signal (not by us).
    Signalled(i32),
    /// It ran past its timeout; we killed it and its children.
    TimedOut,
    /// The kernel killed it for exceeding its memory limit.
    OutOfMemory,
    /// The run was cancelled; we killed it and its children.
    Cancelled,
    /// The job's writes brought the host's free disk space below its reserve; we killed it.
    HostDiskLow,
}

impl ExitReason {
    /// Whether the attempt succeeded.
    pub fn success(self) -> bool {
        self == ExitReason::Exited(0)
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitReason::Exited(code) => write!(f, "exit code {code}"),
            ExitReason::Signalled(sig) => write!(f, "killed by signal {sig}"),
            ExitReason::TimedOut => f.write_str("timed out"),
            ExitReason::OutOfMemory => f.write_str("out of memory"),
            ExitReason::Cancelled => f.write_str("cancelled"),
            ExitReason::HostDiskLow => {
                f.write_str("stopped: the host's free disk space fell below its reserve")
            }
        }
    }
}

/// The result of one attempt.
#[derive(Debug, Clone)]
pub struct Execution {
    /// How it ended.
    pub reason: ExitReason,
    /// When the process started.
    pub started: SystemTime,
    /// When it ended.
    pub finished: SystemTime,
}

/// Why an executor could not run a job at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The sandbox tool is missing or unusable.
    #[error("sandbox unavailable: {0}")]
    Unavailable(String),
    /// The workspace cannot be used.
    #[error("workspace {path}: {reason}")]
    Workspace {
        /// The workspace.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Starting the process failed.
    #[error("could not start the job: {0}")]
    Spawn(#[source] std::io::Error),
    /// Resource limits could not be set up.
    #[error("could not set up resource limits: {0}")]
    Limits(String),
    /// The job's image could not be made ready (or it names none where one is required).
    #[error("image: {0}")]
    Image(String),
}

/// What holds an attempt's workspace in place (e.g. its size-limited filesystem) until its
/// outputs are collected; dropping it releases the workspace.
#[derive(Debug, Default)]
pub struct WorkspaceLease {
    _disk: Option<DiskLease>,
}

impl WorkspaceLease {
    /// Makes `path` a plain directory: the workspace where no size limit applies.
    pub fn plain_dir(path: &Path) -> Result<Self, ExecutorError> {
        std::fs::create_dir_all(path).map_err(|e| ExecutorError::Workspace {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(WorkspaceLease::default())
    }

    /// A workspace that is a size-limited filesystem.
    pub fn disk(lease: DiskLease) -> Self {
        WorkspaceLease { _disk: Some(lease) }
    }
}

/// Runs one job attempt in isolation.
pub trait Executor: Send + Sync + 'static {
    /// Short name shown in logs ("sandbox", "kubernetes").
    fn name(&self) -> &'static str;

    /// Makes `path` (absent or removed) an empty directory for an attempt's workspace under the
    /// job's `limits`. The engine fills it, runs the attempt, collects the outputs, then drops
    /// the lease. Runs on a blocking thread. The default is a plain directory.
    fn provision_workspace(
        &self,
        path: &Path,
        limits: &ResourceLimits,
        log: &LogSink,
    ) -> Result<WorkspaceLease, ExecutorError> {
        let _ = (limits, log);
        WorkspaceLease::plain_dir(path)
    }

    /// Runs the attempt to the end, writing its output to `log`. Must kill
    /// the whole process tree on timeout or when `cancel` fires before returning.
    fn execute(
        &self,
        request: JobRequest,
        log: LogSink,
        cancel: CancellationToken,
    ) -> impl Future<Output = Result<Execution, ExecutorError>> + Send;
}

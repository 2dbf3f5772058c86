//! The checked job model: what the DAG engine runs and what provenance records.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

pub use super::file::EventKind;

/// Default wall-clock limit for one attempt of a job.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A validated pipeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pipeline {
    /// Jobs in file order.
    pub jobs: Vec<JobSpec>,
    /// sha256 (hex) of the pipeline file's bytes, recorded in pass records.
    pub file_sha256: String,
}

impl Pipeline {
    /// The job with this name.
    pub fn job(&self, name: &str) -> Option<&JobSpec> {
        self.jobs.iter().find(|j| j.name == name)
    }
}

/// What a job executes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A shell script, run as `/bin/sh -eu -c SCRIPT`.
    Script(String),
    /// An argv, run without a shell.
    Command(Vec<String>),
}

impl Action {
    /// The argv an executor starts.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Action::Script(script) => {
                vec!["/bin/sh".into(), "-eu".into(), "-c".into(), script.clone()]
            }
            Action::Command(argv) => argv.clone(),
        }
    }
}

/// A validated job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSpec {
    /// Unique name.
    pub name: String,
    /// What it runs.
    pub action: Action,
    /// Jobs that must pass first.
    pub needs: Vec<String>,
    /// Its whole environment.
    pub env: BTreeMap<String, String>,
    /// Limit per attempt.
    #[serde(with = "humantime_serde_secs")]
    pub timeout: Duration,
    /// Extra attempts after a failure.
    pub retries: u32,
    /// Selection rule.
    pub when: WhenSpec,
    /// Output patterns (workspace-relative).
    pub outputs: Vec<String>,
    /// The image it runs in (its own, else the file's default); None: host mode.
    pub image: Option<crate::image::ImageRef>,
    /// Resource limits.
    pub resources: ResourceLimits,
    /// What may be published.
    pub publish: Option<PublishSpec>,
}

/// When a job is selected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WhenSpec {
    /// Empty: every kind.
    pub events: Vec<EventKind>,
    /// Empty: every ref.
    pub refs: Vec<String>,
}

impl WhenSpec {
    /// Whether an event of `kind` on `git_ref` selects the job.
    ///
    /// Ref patterns were compiled once during validation, so a failure here
    /// cannot happen for a validated spec; an uncompilable pattern matches nothing.
    pub fn selects(&self, kind: EventKind, git_ref: &str) -> bool {
        let kind_ok = self.events.is_empty() || self.events.contains(&kind);
        let ref_ok = self.refs.is_empty()
            || self.refs.iter().any(|p| {
                globset::GlobBuilder::new(p)
                    .literal_separator(true)
                    .build()
                    .map(|g| g.compile_matcher().is_match(git_ref))
                    .unwrap_or(false)
            });
        kind_ok && ref_ok
    }
}

/// Limits an executor enforces; `None` means the executor's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ResourceLimits {
    /// CPU in millicores.
    pub cpu_millis: Option<u64>,
    /// Memory in bytes.
    pub memory_bytes: Option<u64>,
    /// Processes and threads.
    pub pids: Option<u32>,
    /// Size of the workspace's filesystem in bytes.
    pub disk_bytes: Option<u64>,
}

/// What the trusted builder may produce from a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishSpec {
    /// An image, if any.
    pub image: Option<PublishImage>,
    /// Outputs pushed as OCI artifacts.
    pub artifacts: Vec<String>,
}

/// Base of a published image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseImage {
    /// No base layers.
    Scratch,
    /// A base pinned by digest.
    Pinned {
        /// Repository, e.g. `docker.io/library/busybox`.
        repository: String,
        /// `sha256:<hex>`.
        digest: String,
    },
}

/// An image assembled from outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishImage {
    /// Base layers.
    pub base: BaseImage,
    /// Output path → absolute path in the image, sorted by output path.
    pub files: BTreeMap<String, String>,
    /// Entrypoint argv.
    pub entrypoint: Vec<String>,
    /// Config env.
    pub env: BTreeMap<String, String>,
    /// Config labels.
    pub labels: BTreeMap<String, String>,
}

mod humantime_serde_secs {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

//! The pipeline file as written: `.pipeline/config.yaml`.
//!
//! These types mirror the YAML one to one (unknown keys are errors) and keep
//! positions; [`super::validate`] turns them into the checked
//! [`super::model`] that the engine runs.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::located::{Located, LocatedMap};

/// A pipeline file (`.pipeline/config.yaml`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Airlock pipeline file (.pipeline/config.yaml)")]
pub struct PipelineFile {
    /// Format version. Only `1` exists.
    pub version: Located<u32>,
    /// The image every job runs in unless it names its own: `REPOSITORY@sha256:<digest>`.
    #[serde(default)]
    pub image: Option<Located<String>>,
    /// Jobs by name. A name is 1-63 characters: letters, digits, `-` and `_`.
    pub jobs: LocatedMap<JobFile>,
}

/// One job as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// A shell script run with `/bin/sh -eu`. Exactly one of `run` and `command`.
    #[serde(default)]
    pub run: Option<Located<String>>,
    /// A program and its arguments, run without a shell. Exactly one of `run` and `command`.
    #[serde(default)]
    pub command: Option<Located<Vec<String>>>,
    /// Jobs that must pass before this one starts; their outputs are copied into this job's workspace.
    #[serde(default)]
    pub needs: Vec<Located<String>>,
    /// Environment variables. The job sees these and nothing else from the host.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Wall-clock limit per attempt, e.g. `90s`, `10m`, `1h 30m`. Default `30m`.
    #[serde(default)]
    pub timeout: Option<Located<String>>,
    /// Extra attempts after a failure (not after a timeout caused by cancellation). Default 0.
    #[serde(default)]
    pub retries: Option<Located<u32>>,
    /// When the job is selected. Absent: always.
    #[serde(default)]
    pub when: Option<WhenFile>,
    /// Workspace-relative files, directories or globs collected after the job passes.
    #[serde(default)]
    pub outputs: Vec<Located<String>>,
    /// The image the job runs in, pinned by digest: `REPOSITORY@sha256:<digest>` (a tag is an
    /// error). Default: the file's top-level `image`; with neither, the job runs on the host's
    /// system directories where the runner allows that (host mode). Recorded in the pass record
    /// and the provenance.
    #[serde(default)]
    pub image: Option<Located<String>>,
    /// Resource limits.
    #[serde(default)]
    pub resources: Option<ResourcesFile>,
    /// What the trusted builder may produce from this job's outputs.
    #[serde(default)]
    pub publish: Option<PublishFile>,
}

/// Selection of a job by event kind and ref.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WhenFile {
    /// Event kinds; absent or empty means every kind.
    #[serde(default)]
    pub events: Vec<EventKind>,
    /// Ref globs such as `refs/heads/main` or `refs/tags/v*`; absent or empty means every ref.
    #[serde(default)]
    pub refs: Vec<Located<String>>,
}

/// What caused a run.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Deserialize,
    serde::Serialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A change under review (Gerrit patchset, pull/merge request).
    Change,
    /// A push to a branch.
    Push,
    /// A tag was pushed.
    Tag,
    /// A cron schedule from the CI configuration.
    Schedule,
    /// Started by a person (`ci-cluster trigger`, `ci-cluster run`).
    Manual,
}

impl EventKind {
    /// The spelling used in pipeline files.
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

impl std::str::FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "change" => Ok(EventKind::Change),
            "push" => Ok(EventKind::Push),
            "tag" => Ok(EventKind::Tag),
            "schedule" => Ok(EventKind::Schedule),
            "manual" => Ok(EventKind::Manual),
            other => Err(format!(
                "unknown event kind '{other}' (expected change, push, tag, schedule or manual)"
            )),
        }
    }
}

/// Resource limits as written.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesFile {
    /// CPU cores: a number (`1`, `0.5`) or millicores (`500m`).
    #[serde(default)]
    pub cpu: Option<Located<Quantity>>,
    /// Memory: bytes, or with a suffix `Ki`, `Mi`, `Gi`, `K`, `M`, `G` (e.g. `512Mi`).
    #[serde(default)]
    pub memory: Option<Located<Quantity>>,
    /// Maximum number of processes and threads.
    #[serde(default)]
    pub pids: Option<Located<u32>>,
    /// Disk space of the job's workspace (source, inputs and everything the job writes there):
    /// bytes, or with a suffix as for `memory` (e.g. `2Gi`). Default 10Gi.
    #[serde(default)]
    pub disk: Option<Located<Quantity>>,
}

/// A number or a string with a unit, as in Kubernetes resource quantities.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Quantity {
    /// A plain number.
    Number(f64),
    /// A number with a unit suffix.
    Text(String),
}

/// What the trusted builder may produce from a job.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishFile {
    /// An OCI image assembled from outputs.
    #[serde(default)]
    pub image: Option<PublishImageFile>,
    /// Outputs pushed as OCI artifacts.
    #[serde(default)]
    pub artifacts: Vec<Located<String>>,
}

/// An OCI image assembled from a job's outputs.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishImageFile {
    /// `scratch`, or a base image pinned by digest: `REPOSITORY@sha256:<64 hex>`.
    pub base: Located<String>,
    /// Output path → absolute path inside the image.
    #[serde(default)]
    pub files: LocatedMap<Located<String>>,
    /// Entrypoint argv.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// Environment of the image config.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Labels of the image config.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

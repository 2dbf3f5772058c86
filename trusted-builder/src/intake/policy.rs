//! The intake policy: a typed, versioned input evaluated by `policies/intake.rego` with regorus.
//!
//! Rust gathers facts; the policy alone decides. The input is a typed struct rather than ad-hoc
//! JSON so that the Rust side and the policy cannot silently disagree about a field's name, and
//! it carries a version so that a changed shape is refused by an older policy instead of being
//! misread.

use std::path::Path;

use serde::Serialize;

/// The intake policy shipped in the repository, used when no other path is configured.
pub const EMBEDDED_POLICY: &str = include_str!("../../../policies/intake.rego");

/// The version of [`IntakeInput`] this code writes.
pub const INTAKE_INPUT_VERSION: u32 = 1;

/// Everything the policy sees about one pass record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntakeInput {
    /// [`INTAKE_INPUT_VERSION`].
    pub version: u32,
    /// What the record claims (already signature-checked, so it names its origin, nothing more).
    pub record: RecordClaims,
    /// What the builder found out itself.
    pub facts: IntakeFacts,
    /// The builder's own settings.
    pub settings: IntakeSettings,
}

/// The claims of a record the policy reasons about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordClaims {
    /// Project name.
    pub project: String,
    /// Git URL the CI says it fetched from.
    pub git_url: String,
    /// Full ref name.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Commit id.
    pub commit: String,
    /// Job name.
    pub job: String,
}

/// Facts gathered by the builder from its own configuration, mirror and state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntakeFacts {
    /// The project is configured on this builder.
    pub project_allowed: bool,
    /// The configured canonical Git URL, when the project is configured.
    pub canonical_git_url: Option<String>,
    /// The commit is reachable from the protected ref named by the record, in the builder's own
    /// mirror of the canonical Git.
    pub commit_reachable_from_protected: bool,
    /// The record's ref when it matches one of the project's protected ref globs.
    pub protected_ref_matched: Option<String>,
    /// The pipeline file at that commit declares `publish` for the job.
    pub job_declares_publish: bool,
    /// This (project, commit, job) was built before.
    pub already_built: bool,
}

/// Builder settings visible to the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IntakeSettings {
    /// Refuse when a rebuilt output differs from CI's.
    pub strict_reproducibility: bool,
}

pub use crate::rego::PolicyError;
use crate::rego::RegoPolicy;

/// The compiled intake policy (package `airlock.intake`).
#[derive(Debug, Clone)]
pub struct IntakePolicy(RegoPolicy);

const WHAT: &str = "intake";
const PACKAGE: &str = "airlock.intake";

impl IntakePolicy {
    /// The policy shipped in the repository ([`EMBEDDED_POLICY`]).
    pub fn embedded() -> Result<Self, PolicyError> {
        Self::load(None)
    }

    /// The policy at `path`, or the embedded one when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, PolicyError> {
        RegoPolicy::load(WHAT, PACKAGE, path, "policies/intake.rego", EMBEDDED_POLICY).map(Self)
    }

    /// Compiles a policy from its text; `name` appears in error messages.
    pub fn from_source(name: &str, text: &str) -> Result<Self, PolicyError> {
        RegoPolicy::from_source(WHAT, PACKAGE, name, text).map(Self)
    }

    /// The reasons to refuse, sorted; empty means allowed.
    pub fn evaluate(&self, input: &IntakeInput) -> Result<Vec<String>, PolicyError> {
        self.0.evaluate(input)
    }
}

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

/// Why the policy could not be loaded or evaluated (not a refusal: a broken policy).
#[derive(Debug, thiserror::Error)]
#[error("intake policy: {0}")]
pub struct PolicyError(String);

/// A compiled intake policy, cheap to evaluate many times.
#[derive(Clone)]
pub struct IntakePolicy {
    engine: regorus::Engine,
}

impl std::fmt::Debug for IntakePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntakePolicy").finish_non_exhaustive()
    }
}

const DENY_RULE: &str = "data.airlock.intake.deny";
const ALLOW_RULE: &str = "data.airlock.intake.allow";

impl IntakePolicy {
    /// The policy shipped in the repository ([`EMBEDDED_POLICY`]).
    pub fn embedded() -> Result<Self, PolicyError> {
        Self::from_source("policies/intake.rego", EMBEDDED_POLICY)
    }

    /// The policy at `path`, or the embedded one when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, PolicyError> {
        match path {
            None => Self::embedded(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| PolicyError(format!("{}: {e}", path.display())))?;
                Self::from_source(&path.display().to_string(), &text)
            }
        }
    }

    /// Compiles a policy from its text; `name` appears in error messages.
    pub fn from_source(name: &str, text: &str) -> Result<Self, PolicyError> {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy(name.to_string(), text.to_string())
            .map_err(|e| PolicyError(format!("{name}: {e}")))?;
        let policy = IntakePolicy { engine };
        // Refuse a policy without the rules we query now, not at the first record.
        policy.reasons_and_allow(&serde_json::json!({"version": 0}))?;
        Ok(policy)
    }

    /// The reasons to refuse, sorted; empty means allowed. A policy whose `allow` disagrees
    /// with an empty `deny` is treated as denying, so a mistake in it fails closed.
    pub fn evaluate(&self, input: &IntakeInput) -> Result<Vec<String>, PolicyError> {
        let json = serde_json::to_value(input).map_err(|e| PolicyError(e.to_string()))?;
        let (mut reasons, allow) = self.reasons_and_allow(&json)?;
        if reasons.is_empty() && !allow {
            reasons.push("intake policy does not allow the record".to_string());
        }
        reasons.sort();
        Ok(reasons)
    }

    fn reasons_and_allow(
        &self,
        input: &serde_json::Value,
    ) -> Result<(Vec<String>, bool), PolicyError> {
        let mut engine = self.engine.clone();
        let value = regorus::Value::from_json_str(&input.to_string())
            .map_err(|e| PolicyError(format!("input: {e}")))?;
        engine.set_input(value);
        let deny = engine
            .eval_rule(DENY_RULE.to_string())
            .map_err(|e| PolicyError(format!("{DENY_RULE}: {e}")))?;
        let allow = engine
            .eval_rule(ALLOW_RULE.to_string())
            .map_err(|e| PolicyError(format!("{ALLOW_RULE}: {e}")))?;
        let deny = serde_json::to_value(&deny).map_err(|e| PolicyError(e.to_string()))?;
        let reasons = match deny {
            serde_json::Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
            other => {
                return Err(PolicyError(format!(
                    "{DENY_RULE} is not a set of strings: {other}"
                )));
            }
        };
        let allow = serde_json::to_value(&allow).map_err(|e| PolicyError(e.to_string()))?;
        Ok((reasons, allow == serde_json::Value::Bool(true)))
    }
}

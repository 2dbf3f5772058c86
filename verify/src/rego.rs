//! One way to evaluate a Rego policy with regorus, shared by the intake, admission and promotion
//! policies.
//!
//! Every policy has the same contract: `deny` is a set of human-readable reasons, `allow` holds
//! only when there is none. Rust gathers facts into a typed, versioned input struct; the policy
//! alone decides. A policy whose `allow` disagrees with an empty `deny` is treated as denying, so
//! a mistake in it fails closed.

use std::path::Path;

use serde::Serialize;

/// Why a policy could not be loaded or evaluated (not a refusal: a broken policy).
#[derive(Debug, thiserror::Error)]
#[error("{what} policy: {reason}")]
pub struct PolicyError {
    what: &'static str,
    reason: String,
}

/// A compiled policy, evaluated many times by one engine (evaluations are serialised: cloning
/// the engine per evaluation cost more than the evaluation itself).
#[derive(Clone)]
pub struct RegoPolicy {
    what: &'static str,
    engine: std::sync::Arc<std::sync::Mutex<regorus::Engine>>,
    deny_rule: String,
    allow_rule: String,
}

impl std::fmt::Debug for RegoPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoPolicy")
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl RegoPolicy {
    /// The policy at `path`, or `embedded` (named `embedded_name`) when `path` is `None`.
    /// `package` is the Rego package holding `deny` and `allow`, e.g. `airlock.intake`.
    pub fn load(
        what: &'static str,
        package: &str,
        path: Option<&Path>,
        embedded_name: &str,
        embedded: &str,
    ) -> Result<Self, PolicyError> {
        match path {
            None => Self::from_source(what, package, embedded_name, embedded),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
                    what,
                    reason: format!("{}: {e}", path.display()),
                })?;
                Self::from_source(what, package, &path.display().to_string(), &text)
            }
        }
    }

    /// Compiles a policy from its text; `name` appears in error messages.
    pub fn from_source(
        what: &'static str,
        package: &str,
        name: &str,
        text: &str,
    ) -> Result<Self, PolicyError> {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy(name.to_string(), text.to_string())
            .map_err(|e| PolicyError {
                what,
                reason: format!("{name}: {e}"),
            })?;
        let policy = RegoPolicy {
            what,
            engine: std::sync::Arc::new(std::sync::Mutex::new(engine)),
            deny_rule: format!("data.{package}.deny"),
            allow_rule: format!("data.{package}.allow"),
        };
        // Refuse a policy without the rules we query now, not at the first evaluation.
        policy.reasons_and_allow(&serde_json::json!({"version": 0}))?;
        Ok(policy)
    }

    fn error(&self, reason: impl Into<String>) -> PolicyError {
        PolicyError {
            what: self.what,
            reason: reason.into(),
        }
    }

    /// The reasons to refuse `input`, sorted; empty means allowed.
    pub fn evaluate<T: Serialize>(&self, input: &T) -> Result<Vec<String>, PolicyError> {
        let json = serde_json::to_value(input).map_err(|e| self.error(e.to_string()))?;
        let (mut reasons, allow) = self.reasons_and_allow(&json)?;
        if reasons.is_empty() && !allow {
            reasons.push(format!("{} policy does not allow it", self.what));
        }
        reasons.sort();
        Ok(reasons)
    }

    fn reasons_and_allow(
        &self,
        input: &serde_json::Value,
    ) -> Result<(Vec<String>, bool), PolicyError> {
        // A poisoned lock only means another evaluation panicked; the engine holds no state
        // between evaluations but the input, which is replaced below.
        let mut engine = self
            .engine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let value = regorus::Value::from_json_str(&input.to_string())
            .map_err(|e| self.error(format!("input: {e}")))?;
        engine.set_input(value);
        let deny = engine
            .eval_rule(self.deny_rule.clone())
            .map_err(|e| self.error(format!("{}: {e}", self.deny_rule)))?;
        let allow = engine
            .eval_rule(self.allow_rule.clone())
            .map_err(|e| self.error(format!("{}: {e}", self.allow_rule)))?;
        let deny = serde_json::to_value(&deny).map_err(|e| self.error(e.to_string()))?;
        let reasons = match deny {
            serde_json::Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
            other => {
                return Err(self.error(format!(
                    "{} is not a set of strings: {other}",
                    self.deny_rule
                )));
            }
        };
        let allow = serde_json::to_value(&allow).map_err(|e| self.error(e.to_string()))?;
        Ok((reasons, allow == serde_json::Value::Bool(true)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// One engine serves every evaluation: nothing of one input may leak into the next.
    #[test]
    fn alternating_inputs_are_judged_independently() {
        let policy = RegoPolicy::from_source(
            "test",
            "t",
            "t.rego",
            "package t\nimport rego.v1\ndefault allow := false\nallow if count(deny) == 0\ndeny contains \"bad\" if input.bad\ndeny contains sprintf(\"n=%v\", [input.n]) if input.n > 5\n",
        )
        .unwrap();
        for i in 0..50 {
            let bad = i % 3 == 0;
            let n = i % 10;
            let reasons = policy
                .evaluate(&serde_json::json!({"version": 1, "bad": bad, "n": n}))
                .unwrap();
            let mut expected = Vec::new();
            if bad {
                expected.push("bad".to_owned());
            }
            if n > 5 {
                expected.push(format!("n={n}"));
            }
            expected.sort();
            assert_eq!(reasons, expected, "evaluation {i}");
        }
    }
}

//! The job environment: the variables a run gives every job, built in one place for the CI
//! cluster (`ci-cluster serve`), `ci-cluster run` and the trusted builder's rebuild, so that a
//! job sees the same environment on both sides of the trust boundary.
//!
//! [`JobContext::env`] is the one function that makes them; the sandbox adds its small fixed base
//! (`PATH`, `HOME`, `CI`…), the image's own variables, the engine adds `AIRLOCK_JOB`, and the job's
//! `env:` comes last.

use std::collections::BTreeMap;

use crate::record::PassRecord;
use crate::source::{CommitId, SourceError};
use crate::spec::EventKind;

/// A portable variable name: a letter or `_`, then letters, digits and `_`.
pub fn is_env_name(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The commit being built: 40 lowercase hex digits.
pub const AIRLOCK_COMMIT: &str = "AIRLOCK_COMMIT";
/// The full ref name the run is for, e.g. `refs/heads/main`.
pub const AIRLOCK_REF: &str = "AIRLOCK_REF";
/// The kind of event the run is for: `change`, `push`, `tag`, `schedule` or `manual`.
pub const AIRLOCK_EVENT: &str = "AIRLOCK_EVENT";
/// The run that executes the job ([`RunName`]); a run-only variable.
pub const AIRLOCK_RUN: &str = "AIRLOCK_RUN";
/// The commit's committer time in seconds since the epoch, for tools that stamp times.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// The variables whose value names the run rather than the source, and so differ between CI's
/// run of a job and the trusted builder's rebuild of it. Every other variable of
/// [`JobContext::env`] is equal on both sides for the same record.
pub const RUN_ONLY_VARIABLES: &[&str] = &[AIRLOCK_RUN];

/// Which run executes the job: the value of `AIRLOCK_RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunName {
    /// A run of the CI cluster, by its run id (the pass record's `ci_run_id`).
    Ci(String),
    /// `ci-cluster run` on someone's machine: `local`.
    Local,
    /// The trusted builder's rebuild of a pass record: `rebuild`. Nothing of the record's free
    /// text (its `ci_run_id`) goes into it; the builder's decision log says which record a
    /// rebuild was for.
    Rebuild,
}

impl RunName {
    /// The value of `AIRLOCK_RUN`.
    pub fn value(&self) -> String {
        match self {
            RunName::Ci(id) => id.clone(),
            RunName::Local => "local".to_string(),
            RunName::Rebuild => "rebuild".to_string(),
        }
    }
}

/// What a run knows about the source and itself that its jobs are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobContext {
    /// The commit being built.
    pub commit: CommitId,
    /// The full ref name the run is for.
    pub git_ref: String,
    /// The kind of event the run is for.
    pub event: EventKind,
    /// The commit's committer time, seconds since the epoch (from the runner's own mirror).
    pub commit_time: i64,
    /// The run that executes the job.
    pub run: RunName,
}

impl JobContext {
    /// The context of the trusted builder's rebuild of `record`: its commit, ref and event, the
    /// commit time from the builder's own mirror, and `AIRLOCK_RUN` = `rebuild`.
    pub fn rebuild_of(record: &PassRecord, commit_time: i64) -> Result<Self, SourceError> {
        Ok(JobContext {
            commit: record.commit.parse()?,
            git_ref: record.git_ref.clone(),
            event: record.event,
            commit_time,
            run: RunName::Rebuild,
        })
    }

    /// The variables every job of the run gets (`EngineConfig::env`):
    ///
    /// | variable | value | run-only |
    /// |---|---|---|
    /// | `AIRLOCK_COMMIT` | the commit id | no |
    /// | `AIRLOCK_REF` | the full ref name | no |
    /// | `AIRLOCK_EVENT` | `change`, `push`, `tag`, `schedule` or `manual` | no |
    /// | `SOURCE_DATE_EPOCH` | the commit's committer time | no |
    /// | `AIRLOCK_RUN` | CI's run id; `local` (`ci-cluster run`); `rebuild` (trusted builder) | **yes** |
    ///
    /// **Run-only variables** ([`RUN_ONLY_VARIABLES`]) name the run, not the source, and are
    /// deliberately different in the trusted builder's rebuild. The rebuild does not copy CI's
    /// run id: that id is free text chosen by the CI and verified by nobody, and copying it
    /// would let the untrusted side feed a value into an output the builder then signs as
    /// "reproduced from source". A job may log `AIRLOCK_RUN`, but an output that depends on it
    /// does not reproduce, and the builder says so (`reproduced: false`, refused under strict
    /// reproducibility): that is the truth about such an output. Every other variable is a
    /// function of what the builder checks itself (commit, protected ref, commit time from its
    /// own mirror) or of the record's `event`, which the record's validation ties to the ref
    /// (`tag` only on `refs/tags/`, `push` only elsewhere); so for the same record they are
    /// identical on both sides.
    pub fn env(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (AIRLOCK_COMMIT.to_string(), self.commit.to_string()),
            (AIRLOCK_REF.to_string(), self.git_ref.clone()),
            (AIRLOCK_EVENT.to_string(), self.event.as_str().to_string()),
            (AIRLOCK_RUN.to_string(), self.run.value()),
            (SOURCE_DATE_EPOCH.to_string(), self.commit_time.to_string()),
        ])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::record::PASS_RECORD_VERSION;

    const COMMIT: &str = "53634573c37a0e5b9d1f8e6b2a4c7d90e1f2a3b4";

    fn record(git_ref: &str, event: EventKind) -> PassRecord {
        PassRecord {
            version: PASS_RECORD_VERSION,
            project: "greet".into(),
            git_url: "https://git.example.org/greet.git".into(),
            git_ref: git_ref.into(),
            event,
            commit: COMMIT.into(),
            job: "publish".into(),
            pipeline_sha256: "a".repeat(64),
            images: BTreeMap::new(),
            outputs: Vec::new(),
            log_sha256: "d".repeat(64),
            ci_run_id: "42".into(),
            started_at: "2025-11-23T15:30:00Z".into(),
            finished_at: "2025-11-23T15:31:00Z".into(),
        }
    }

    /// Keys whose values differ, or that only one side has.
    fn differing(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> BTreeSet<String> {
        a.keys()
            .chain(b.keys())
            .filter(|k| a.get(*k) != b.get(*k))
            .cloned()
            .collect()
    }

    #[test]
    fn ci_and_rebuild_environments_differ_only_in_the_run_only_variables() {
        for (git_ref, event) in [
            ("refs/heads/main", EventKind::Push),
            ("refs/tags/v1.0", EventKind::Tag),
            ("refs/heads/main", EventKind::Schedule),
        ] {
            let record = record(git_ref, event);
            record.validate().unwrap();
            // What the CI runner builds for the run that wrote this record.
            let ci = JobContext {
                commit: COMMIT.parse().unwrap(),
                git_ref: git_ref.to_string(),
                event,
                commit_time: 1_700_000_000,
                run: RunName::Ci(record.ci_run_id.clone()),
            }
            .env();
            let rebuild = JobContext::rebuild_of(&record, 1_700_000_000)
                .unwrap()
                .env();
            // The exact set: a variable added on one side only, or computed differently,
            // shows up here.
            assert_eq!(
                differing(&ci, &rebuild),
                BTreeSet::from(["AIRLOCK_RUN".to_string()]),
                "{ci:?} vs {rebuild:?}"
            );
            assert_eq!(
                differing(&ci, &rebuild),
                RUN_ONLY_VARIABLES.iter().map(|v| v.to_string()).collect()
            );
            assert_eq!(ci["AIRLOCK_RUN"], "42");
            assert_eq!(rebuild["AIRLOCK_RUN"], "rebuild");
            assert_eq!(rebuild["AIRLOCK_EVENT"], event.as_str());
            assert_eq!(rebuild["AIRLOCK_COMMIT"], COMMIT);
            assert_eq!(rebuild["SOURCE_DATE_EPOCH"], "1700000000");
            assert_eq!(
                rebuild.keys().map(String::as_str).collect::<Vec<_>>(),
                [
                    "AIRLOCK_COMMIT",
                    "AIRLOCK_EVENT",
                    "AIRLOCK_REF",
                    "AIRLOCK_RUN",
                    "SOURCE_DATE_EPOCH"
                ]
            );
        }
        // Control: the comparison does see a difference that is not run-only.
        let record = record("refs/heads/main", EventKind::Push);
        let mut other = JobContext::rebuild_of(&record, 1_700_000_000).unwrap();
        other.event = EventKind::Manual;
        assert_eq!(
            differing(
                &JobContext::rebuild_of(&record, 1_700_000_000)
                    .unwrap()
                    .env(),
                &other.env()
            ),
            BTreeSet::from(["AIRLOCK_EVENT".to_string()])
        );
    }

    #[test]
    fn local_runs_are_named_local() {
        let local = JobContext {
            commit: COMMIT.parse().unwrap(),
            git_ref: "refs/heads/topic".into(),
            event: EventKind::Manual,
            commit_time: 0,
            run: RunName::Local,
        };
        assert_eq!(local.env()["AIRLOCK_RUN"], "local");
    }
}

//! Pass records: one per publishable job that passed on a protected ref,
//! signed with the CI's origin key and written to the one-way outbox. The
//! CI never connects to the trusted side; the trusted builder pulls.
//!
//! A record says "this commit passed on this ref". The event that named the
//! ref is only a claim (a Gerrit or GitLab token signs nothing, and a ref
//! moves on or is rewritten while a run runs), so a record is written only
//! with a [`ReachableFromRef`]: the commit is an ancestor of (or is) what the
//! ref points to in our own, freshly fetched mirror of the canonical
//! repository. The trusted builder checks the same again on its side.

use airlock_pipeline::dag::RunReport;
use airlock_pipeline::events::JobState;
use airlock_pipeline::record::{
    DirOutbox, OriginKey, Outbox, OutputDigest, PASS_RECORD_VERSION, PassRecord, RecordError,
    job_images,
};
use airlock_pipeline::source::{CommitId, SourceCache, SourceError};
use airlock_pipeline::spec::{EventKind, Pipeline};
use sha2::{Digest, Sha256};

use crate::config::ProjectFile;
use crate::store::RunId;

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// Proof that a commit is reachable from a ref in the canonical repository,
/// as our own mirror saw it just now. Only [`ReachableFromRef::check`] makes
/// one, and [`write_pass_records`] takes the ref and commit from it: no
/// record names a (ref, commit) pair that was not checked.
#[derive(Debug)]
pub struct ReachableFromRef {
    git_ref: String,
    commit: String,
}

/// Why a passed run gets no pass record.
#[derive(Debug, thiserror::Error)]
pub enum NotReachable {
    /// The commit is not in the ref's history.
    #[error("commit {commit} is not reachable from {git_ref} (which points to {tip})")]
    NotOnRef {
        /// The ref the event named.
        git_ref: String,
        /// The commit that ran.
        commit: String,
        /// Where the ref points now.
        tip: String,
    },
    /// The ref or the commit could not be fetched or compared.
    #[error("cannot check that commit {commit} is reachable from {git_ref}: {source}")]
    Unchecked {
        /// The ref the event named.
        git_ref: String,
        /// The commit that ran.
        commit: String,
        /// What failed (URL credentials are already redacted by the source module).
        #[source]
        source: Box<SourceError>,
    },
}

impl ReachableFromRef {
    /// Fetches `git_ref` from `git_url` into our mirror now (so a ref that
    /// moved on or was rewritten during the run is seen as it is) and checks
    /// that `commit` is the commit it points to or one of its ancestors.
    /// Blocking (network and disk).
    pub fn check(
        sources: &SourceCache,
        git_url: &str,
        git_ref: &str,
        commit: &str,
    ) -> Result<ReachableFromRef, NotReachable> {
        let unchecked = |source| NotReachable::Unchecked {
            git_ref: git_ref.to_string(),
            commit: commit.to_string(),
            source: Box::new(source),
        };
        let _: CommitId = commit.parse().map_err(unchecked)?;
        let (mirror, tip) = sources.fetch_rev(git_url, git_ref).map_err(unchecked)?;
        let not_on_ref = || NotReachable::NotOnRef {
            git_ref: git_ref.to_string(),
            commit: commit.to_string(),
            tip: tip.to_string(),
        };
        // The fetch brought the ref's whole history: a commit the mirror does
        // not have is not in it.
        let wanted = match mirror.resolve(commit) {
            Ok(wanted) => wanted,
            Err(SourceError::RevNotFound { .. }) => return Err(not_on_ref()),
            Err(other) => return Err(unchecked(other)),
        };
        if !mirror.is_ancestor(&wanted, &tip).map_err(unchecked)? {
            return Err(not_on_ref());
        }
        Ok(ReachableFromRef {
            git_ref: git_ref.to_string(),
            commit: commit.to_string(),
        })
    }
}

/// One passed run, as the pass records describe it.
pub struct PassedRun<'a> {
    /// The project.
    pub project: &'a ProjectFile,
    /// The run id.
    pub run: RunId,
    /// The kind of event it ran for (the jobs' `AIRLOCK_EVENT`).
    pub event: EventKind,
    /// The ref it ran for and the commit it ran, checked.
    pub reachable: &'a ReachableFromRef,
    /// The pipeline file at that commit.
    pub pipeline: &'a Pipeline,
    /// What the engine reported.
    pub report: &'a RunReport,
}

/// Writes the pass records of a passed run; returns the outbox names written.
pub fn write_pass_records(
    outbox: &DirOutbox,
    key: &OriginKey,
    passed: &PassedRun<'_>,
) -> Result<Vec<String>, RecordError> {
    let PassedRun {
        project,
        run,
        event,
        reachable,
        pipeline,
        report,
    } = *passed;
    let (git_ref, commit) = (reachable.git_ref.as_str(), reachable.commit.as_str());
    let mut written = Vec::new();
    for job in &report.jobs {
        let publishes = pipeline
            .job(&job.name)
            .is_some_and(|spec| spec.publish.is_some());
        if !publishes || job.state != JobState::Passed {
            continue;
        }
        // The job's image and those of every job it needs, as the builder will find them in the
        // pipeline file at this commit.
        let images = job_images(pipeline, &job.name)
            .map_err(|e| RecordError::Invalid(format!("images of job '{}': {e}", job.name)))?
            .into_iter()
            .map(|(name, image)| (name, image.to_string()))
            .collect();
        let record = PassRecord {
            version: PASS_RECORD_VERSION,
            project: project.name.clone(),
            git_url: project.git_url.clone(),
            git_ref: git_ref.to_string(),
            event,
            commit: commit.to_string(),
            job: job.name.clone(),
            pipeline_sha256: pipeline.file_sha256.clone(),
            images,
            outputs: job.outputs.iter().map(OutputDigest::from).collect(),
            log_sha256: hex::encode(Sha256::digest(job.log.to_text().as_bytes())),
            ci_run_id: run.to_string(),
            started_at: rfc3339(job.started_ms.unwrap_or(0)),
            finished_at: rfc3339(job.finished_ms.or(job.started_ms).unwrap_or(0)),
        };
        let signed = key.sign(&record)?;
        written.push(outbox.put(&signed, &format!("{}-{}-run{run}", project.name, job.name))?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use airlock_pipeline::dag::{JobReport, RunReport};
    use airlock_pipeline::outputs::ContentStore;
    use airlock_tests::git::{SampleRepo, init_bare};

    use super::*;

    const TOOLS: &str = "127.0.0.1:5000/tools@sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const CC: &str =
        "127.0.0.1:5000/cc@sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const OTHER: &str = "127.0.0.1:5000/other@sha256:3333333333333333333333333333333333333333333333333333333333333333";

    fn passed(name: &str) -> JobReport {
        JobReport {
            name: name.into(),
            state: JobState::Passed,
            attempts: 1,
            exit_code: Some(0),
            detail: None,
            started_ms: Some(1_700_000_000_000),
            finished_ms: Some(1_700_000_001_000),
            log: Default::default(),
            outputs: Vec::new(),
        }
    }

    #[test]
    fn pass_records_carry_the_event_and_the_images_of_the_job_and_what_it_needs() {
        let tmp = tempfile::tempdir().expect("tmp");
        // `publish` needs `tools` (own image) and `host` (host mode); `other` ran in the same
        // run with its own image but is not something `publish` needs.
        let text = format!(
            "version: 1\n\
             jobs:\n\
             \x20 tools: {{run: 'true', image: '{TOOLS}'}}\n\
             \x20 host: {{run: 'true'}}\n\
             \x20 other: {{run: 'true', image: '{OTHER}'}}\n\
             \x20 publish:\n\
             \x20   needs: [tools, host]\n\
             \x20   image: '{CC}'\n\
             \x20   run: 'true'\n\
             \x20   outputs: [out.txt]\n\
             \x20   publish: {{artifacts: [out.txt]}}\n"
        );
        let pipeline = airlock_pipeline::spec::parse("config.yaml", text.as_bytes())
            .unwrap_or_else(|d| panic!("{d}"));
        let report = RunReport {
            jobs: ["tools", "host", "other", "publish"]
                .into_iter()
                .map(passed)
                .collect(),
            cancelled: false,
            store: ContentStore::new(tmp.path().join("store")),
        };
        let project: ProjectFile = toml::from_str(
            "name = 'app'\nforge = 'gerrit'\ngit_url = 'https://git.example.org/app'\n",
        )
        .expect("project");
        let reachable = ReachableFromRef {
            git_ref: "refs/tags/v1.0".into(),
            commit: "a".repeat(40),
        };
        let outbox = DirOutbox::new(tmp.path().join("outbox"));
        let key = OriginKey::generate();
        let written = write_pass_records(
            &outbox,
            &key,
            &PassedRun {
                project: &project,
                run: 7,
                event: EventKind::Tag,
                reachable: &reachable,
                pipeline: &pipeline,
                report: &report,
            },
        )
        .expect("written");
        assert_eq!(written.len(), 1, "{written:?}");
        let bytes = outbox.read(&written[0]).expect("read");
        let record = airlock_pipeline::record::open(&bytes, &[key.verifying_key()]).expect("open");
        assert_eq!(
            (record.version, record.event, record.job.as_str()),
            (2, EventKind::Tag, "publish")
        );
        assert_eq!(
            record.images,
            BTreeMap::from([
                ("publish".to_string(), CC.to_string()),
                ("tools".to_string(), TOOLS.to_string()),
            ])
        );
        assert_eq!(record.ci_run_id, "7");
    }

    #[test]
    fn reachable_only_from_the_refs_history_as_the_canonical_repository_has_it_now() {
        let tmp = tempfile::tempdir().expect("tmp");
        let canonical = init_bare(&tmp.path().join("served"), "app");
        let url = canonical.display().to_string();
        let repo = SampleRepo::init(tmp.path().join("work"));
        repo.write("README", "one\n");
        let first = repo.commit("one");
        repo.write("README", "two\n");
        let second = repo.commit("two");
        repo.push(&url, &second, "refs/heads/main");
        // A commit that is only on a change ref, never on main.
        repo.write("README", "proposed\n");
        let proposed = repo.commit("proposed");
        repo.push(&url, &proposed, "refs/changes/01/1/1");
        let sources = SourceCache::new(tmp.path().join("mirrors"));
        let check =
            |git_ref: &str, commit: &str| ReachableFromRef::check(&sources, &url, git_ref, commit);

        // Control: main's tip, and an older commit of main (main moved on during the run).
        for commit in [&second, &first] {
            let ok = check("refs/heads/main", commit).expect("reachable");
            assert_eq!(
                (ok.git_ref.as_str(), ok.commit.as_str()),
                ("refs/heads/main", commit.as_str())
            );
        }
        // A commit the canonical repository has, but not on main.
        let refused = check("refs/heads/main", &proposed).expect_err("not on main");
        assert!(
            matches!(&refused, NotReachable::NotOnRef { tip, .. } if *tip == second),
            "{refused:?}"
        );
        assert_eq!(
            refused.to_string(),
            format!(
                "commit {proposed} is not reachable from refs/heads/main (which points to {second})"
            )
        );
        // The commit is reachable from the ref it really is on.
        check("refs/changes/01/1/1", &proposed).expect("on its change ref");

        // Main is rewritten back to `first` after the run started: `second`
        // is no longer on it, although the mirror fetched it before.
        repo.git(&[
            "push",
            "-q",
            "--force",
            &url,
            &format!("{first}:refs/heads/main"),
        ]);
        assert!(matches!(
            check("refs/heads/main", &second),
            Err(NotReachable::NotOnRef { .. })
        ));
        // A ref that does not exist, or a commit id that is not one: no proof either.
        assert!(matches!(
            check("refs/heads/gone", &first),
            Err(NotReachable::Unchecked { .. })
        ));
        assert!(matches!(
            check("refs/heads/main", "not-a-commit"),
            Err(NotReachable::Unchecked { .. })
        ));
    }
}

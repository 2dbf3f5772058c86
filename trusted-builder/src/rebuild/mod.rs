//! The hermetic rebuild: the accepted job and everything it `needs`, from the builder's own
//! checkout, in the sandbox executor (every namespace unshared, so no network), with the job
//! environment of [`JobContext::rebuild_of`] (`SOURCE_DATE_EPOCH` = the commit time); then its
//! output digests compared with CI's. Intake has already checked that every job of this plan
//! names the image the record says it ran in on CI.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_pipeline::dag::{Engine, EngineConfig, Plan, Selection};
use airlock_pipeline::env::JobContext;
use airlock_pipeline::executor::SandboxExecutor;
use airlock_pipeline::outputs::{ContentStore, OutputFile};
use airlock_pipeline::record::OutputDigest;
use airlock_pipeline::source::Mirror;
use tokio_util::sync::CancellationToken;

use crate::intake::AcceptedRecord;

/// Why a rebuild did not produce outputs to compare.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The checkout or work directory could not be prepared.
    #[error("cannot prepare the rebuild: {0}")]
    Prepare(String),
    /// The job or one it needs did not pass.
    #[error("rebuild failed: {0}")]
    Failed(String),
    /// Rebuilt outputs differ from CI's and the builder is strict.
    #[error("rebuilt outputs differ from CI's (strict reproducibility): {}", .0.join(", "))]
    NotReproduced(Vec<String>),
}

/// A finished rebuild.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    /// Every rebuilt output equals CI's (same paths, same digests).
    pub reproduced: bool,
    /// Paths whose digest differs, or that only one side has; sorted.
    pub differing: Vec<String>,
    /// The job's rebuilt outputs.
    pub outputs: Vec<OutputFile>,
    /// Where the outputs' contents are ([`ContentStore::blob_path`]).
    pub store: ContentStore,
    /// The rebuild's work directory (the caller removes it when done with the outputs).
    pub work_dir: PathBuf,
}

/// Rebuilds accepted records.
#[derive(Clone)]
pub struct Rebuilder {
    executor: Arc<SandboxExecutor>,
    work_root: PathBuf,
}

impl Rebuilder {
    /// A rebuilder running jobs in `executor`, in work directories under `work_root` (which the
    /// sandbox user must be able to traverse, e.g. under /var/tmp).
    pub fn new(executor: Arc<SandboxExecutor>, work_root: impl Into<PathBuf>) -> Self {
        Rebuilder {
            executor,
            work_root: work_root.into(),
        }
    }

    /// Rebuilds the record's job and compares its outputs with the record's. With
    /// `strict_reproducibility` a difference is [`RebuildError::NotReproduced`] (the work
    /// directory is removed); otherwise it is reported in [`Rebuilt::differing`].
    pub async fn rebuild(
        &self,
        accepted: &AcceptedRecord,
        cancel: CancellationToken,
    ) -> Result<Rebuilt, RebuildError> {
        let record = &accepted.record;
        let plan = Plan::new(
            &accepted.pipeline,
            &Selection::Named(vec![record.job.clone()]),
        )
        .map_err(|e| RebuildError::Prepare(e.to_string()))?;
        let env = JobContext::rebuild_of(record, accepted.commit_time)
            .map_err(|e| RebuildError::Prepare(e.to_string()))?
            .env();
        let work = self.work_root.join(format!(
            "rebuild-{}-{}-{}",
            &record.commit[..12.min(record.commit.len())],
            record.job,
            unique()
        ));
        let src = work.join("src");
        let (mirror_path, commit, work_clone, src_clone) = (
            accepted.mirror_path.clone(),
            accepted.commit,
            work.clone(),
            src.clone(),
        );
        tokio::task::spawn_blocking(move || {
            prepare(&mirror_path, &commit, &work_clone, &src_clone)
        })
        .await
        .map_err(|e| RebuildError::Prepare(e.to_string()))??;

        let mut config = EngineConfig::new(&work);
        // The CI runner's variables (pipeline::env), the same for this record except the
        // documented run-only ones (AIRLOCK_RUN=rebuild); the commit time is our own mirror's.
        config.env = env;
        let engine = Engine::new(self.executor.clone(), config);
        let report = engine.run(&plan, &src, cancel).await;
        let failed = |why: String| {
            let _ = airlock_pipeline::executor::remove_work_dir(&work);
            RebuildError::Failed(why)
        };
        if !report.passed() {
            let what: Vec<String> = report
                .jobs
                .iter()
                .filter(|j| j.state != airlock_pipeline::events::JobState::Passed)
                .map(|j| match &j.detail {
                    Some(detail) => format!("{}: {:?} ({detail})", j.name, j.state),
                    None => format!("{}: {:?}", j.name, j.state),
                })
                .collect();
            return Err(failed(what.join(", ")));
        }
        let Some(job) = report.jobs.iter().find(|j| j.name == record.job) else {
            return Err(failed(format!("job '{}' is not in the plan", record.job)));
        };
        let differing = compare(&job.outputs, &record.outputs);
        if !differing.is_empty() && accepted.strict_reproducibility {
            let _ = airlock_pipeline::executor::remove_work_dir(&work);
            return Err(RebuildError::NotReproduced(differing));
        }
        Ok(Rebuilt {
            reproduced: differing.is_empty(),
            differing,
            outputs: job.outputs.clone(),
            store: report.store.clone(),
            work_dir: work,
        })
    }
}

/// The work directory (traversable, not listable: the sandbox user reaches only its own
/// workspace) and the checkout from the builder's own mirror.
fn prepare(
    mirror_path: &Path,
    commit: &airlock_pipeline::source::CommitId,
    work: &Path,
    src: &Path,
) -> Result<(), RebuildError> {
    let err = |e: &dyn std::fmt::Display| RebuildError::Prepare(e.to_string());
    std::fs::create_dir_all(work).map_err(|e| err(&e))?;
    std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o711)).map_err(|e| err(&e))?;
    let mirror = Mirror::open(mirror_path).map_err(|e| err(&e))?;
    mirror.materialise(commit, src).map_err(|e| err(&e))?;
    Ok(())
}

/// Paths where the rebuilt outputs and CI's claims differ (digest, or present on one side only).
pub fn compare(rebuilt: &[OutputFile], claimed: &[OutputDigest]) -> Vec<String> {
    let ours: BTreeMap<&str, &str> = rebuilt
        .iter()
        .map(|o| (o.path.as_str(), o.sha256.as_str()))
        .collect();
    let theirs: BTreeMap<&str, &str> = claimed
        .iter()
        .map(|o| (o.path.as_str(), o.sha256.as_str()))
        .collect();
    let paths: BTreeSet<&str> = ours.keys().chain(theirs.keys()).copied().collect();
    paths
        .into_iter()
        .filter(|p| ours.get(p) != theirs.get(p))
        .map(str::to_string)
        .collect()
}

/// Distinguishes work directories of rebuilds of one job started in the same instant.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

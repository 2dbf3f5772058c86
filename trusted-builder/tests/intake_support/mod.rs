//! Shared set-up for the intake and rebuild tests: a real `git daemon` serving the sample
//! service, a builder's intake over it, and pass records written the way the CI writes them.
#![allow(clippy::unwrap_used, dead_code)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock_pipeline::dag::{Engine, EngineConfig, Plan, Selection};
use airlock_pipeline::env::{JobContext, RunName};
use airlock_pipeline::executor::{SandboxConfig, SandboxExecutor};
use airlock_pipeline::record::{OriginKey, OutputDigest, PASS_RECORD_VERSION, PassRecord};
use airlock_pipeline::source::SourceCache;
use airlock_pipeline::spec::EventKind;
use airlock_tests::git::{GitDaemon, SampleRepo, init_bare};
use airlock_tests::sample::sample_repo;
use airlock_tests::sandbox::work_dir;
use ed25519_dalek::VerifyingKey;
use tokio_util::sync::CancellationToken;
use trusted_builder::audit::AuditLog;
use trusted_builder::intake::{
    BuilderProject, BuilderProjects, BuiltState, Intake, IntakePolicy, IntakeSettings,
};
use trusted_builder::rebuild::Rebuilder;

/// The project name the builder is configured with.
pub const PROJECT: &str = "svc";

/// The CI run id of [`World::record`]'s records and of [`World::ci_outputs_on`]'s run.
pub const CI_RUN_ID: &str = "run-1";

/// The event the CI records for a run on `git_ref`: a tag push or a branch push.
pub fn ci_event(git_ref: &str) -> EventKind {
    if git_ref.starts_with("refs/tags/") {
        EventKind::Tag
    } else {
        EventKind::Push
    }
}

/// A canonical Git with the sample service on `main`, and the CI's origin key.
pub struct World {
    pub tmp: tempfile::TempDir,
    pub daemon: GitDaemon,
    pub repo: SampleRepo,
    pub url: String,
    pub main_commit: String,
    pub origin: OriginKey,
}

impl World {
    pub fn start() -> World {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tmp = tempfile::tempdir().unwrap();
        let served = tmp.path().join("served");
        init_bare(&served, PROJECT);
        let daemon = GitDaemon::start(&served);
        let url = daemon.url(PROJECT);
        let repo = sample_repo(&tmp.path().join("work"));
        let main_commit = repo.head();
        repo.push(&url, &main_commit, "refs/heads/main");
        World {
            tmp,
            daemon,
            repo,
            url,
            main_commit,
            origin: OriginKey::generate(),
        }
    }

    /// The builder's data directory (mirrors, state, log), fresh per call.
    pub fn builder(&self, name: &str, strict: bool, extra_keys: &[VerifyingKey]) -> Builder {
        let data = self.tmp.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        let projects: BuilderProjects = BTreeMap::from([(
            PROJECT.to_string(),
            BuilderProject {
                git_url: self.url.clone(),
                protected_refs: vec!["refs/heads/main".into(), "refs/tags/v*".into()],
            },
        )]);
        let mut keys = vec![self.origin.verifying_key()];
        keys.extend_from_slice(extra_keys);
        let intake = Intake::new(
            projects,
            keys,
            SourceCache::new(data.join("mirrors")),
            IntakePolicy::load(None).unwrap(),
            BuiltState::open(data.join("built.jsonl")).unwrap(),
            IntakeSettings {
                strict_reproducibility: strict,
            },
        );
        let audit = AuditLog::open(data.join("decisions.jsonl")).unwrap();
        let work = work_dir();
        let rebuilder = Rebuilder::new(executor(), work.path());
        Builder {
            intake,
            audit,
            rebuilder,
            work,
            data,
        }
    }

    /// A record for `commit`/`job` on `git_ref` with these outputs, as the CI would write it for
    /// a push (a tag push on `refs/tags/`), its run [`CI_RUN_ID`], no job images (the sample
    /// pipeline names none).
    pub fn record(
        &self,
        commit: &str,
        git_ref: &str,
        job: &str,
        outputs: Vec<OutputDigest>,
    ) -> PassRecord {
        PassRecord {
            version: PASS_RECORD_VERSION,
            project: PROJECT.into(),
            git_url: self.url.clone(),
            git_ref: git_ref.into(),
            event: ci_event(git_ref),
            commit: commit.into(),
            job: job.into(),
            pipeline_sha256: "a".repeat(64),
            images: BTreeMap::new(),
            outputs,
            log_sha256: "b".repeat(64),
            ci_run_id: CI_RUN_ID.into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:01:00Z".into(),
        }
    }

    /// Signed with the CI's origin key, as the bytes of an outbox file.
    pub fn signed(&self, record: &PassRecord) -> Vec<u8> {
        self.origin.sign(record).unwrap().to_json().unwrap()
    }

    /// Runs `job` the way the CI does for a push to main; see [`World::ci_outputs_on`].
    pub async fn ci_outputs(&self, commit: &str, job: &str) -> Vec<OutputDigest> {
        self.ci_outputs_on(commit, "refs/heads/main", job).await
    }

    /// Runs `job` the way the CI runner does for the event [`World::record`] names (its own
    /// checkout, the sandbox, the job environment of `pipeline::env` for CI run [`CI_RUN_ID`])
    /// and returns the job's outputs as a record carries them.
    pub async fn ci_outputs_on(&self, commit: &str, git_ref: &str, job: &str) -> Vec<OutputDigest> {
        let cache = SourceCache::new(self.tmp.path().join("ci-mirrors"));
        let (mirror, id) = cache.fetch_rev(&self.url, commit).unwrap();
        let pipeline_bytes = mirror
            .read_file(&id, airlock_pipeline::spec::PIPELINE_PATH, 1 << 20)
            .unwrap()
            .unwrap();
        let pipeline = airlock_pipeline::spec::parse("pipeline", &pipeline_bytes).unwrap();
        let work = work_dir();
        let src = work.path().join("src");
        mirror.materialise(&id, &src).unwrap();
        let mut config = EngineConfig::new(work.path());
        config.env = JobContext {
            commit: id,
            git_ref: git_ref.to_string(),
            event: ci_event(git_ref),
            commit_time: mirror.commit_time(&id).unwrap(),
            run: RunName::Ci(CI_RUN_ID.to_string()),
        }
        .env();
        let engine = Engine::new(executor(), config);
        let plan = Plan::new(&pipeline, &Selection::Named(vec![job.to_string()])).unwrap();
        let report = engine.run(&plan, &src, CancellationToken::new()).await;
        assert!(
            report.passed(),
            "CI run failed: {:?}",
            report
                .jobs
                .iter()
                .map(|j| (&j.name, j.state, &j.detail))
                .collect::<Vec<_>>()
        );
        let job = report.jobs.iter().find(|j| j.name == job).unwrap();
        job.outputs
            .iter()
            .map(|o| OutputDigest {
                path: o.path.clone(),
                sha256: o.sha256.clone(),
                size: o.size,
            })
            .collect()
    }
}

/// One trusted builder's pieces.
pub struct Builder {
    pub intake: Intake,
    pub audit: AuditLog,
    pub rebuilder: Rebuilder,
    pub work: tempfile::TempDir,
    pub data: PathBuf,
}

impl Builder {
    pub fn log_path(&self) -> &Path {
        self.audit.path()
    }

    /// Nothing was ever rebuilt under the work directory.
    pub fn no_build_dirs(&self) -> bool {
        std::fs::read_dir(self.work.path())
            .unwrap()
            .next()
            .is_none()
    }
}

pub fn executor() -> Arc<SandboxExecutor> {
    Arc::new(
        SandboxExecutor::new(SandboxConfig::default())
            .expect("bubblewrap is installed (make test installs it)"),
    )
}

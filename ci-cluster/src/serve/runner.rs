//! Runs queued runs: claim fairly from the store, fetch the exact revision
//! with gix, read the pipeline file from that commit's tree, select jobs by
//! `when`, execute them in the sandbox, persist states, logs and outputs,
//! write pass records, and finish the run together with its report.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use airlock_pipeline::dag::{Engine, EngineConfig, Plan, PlanError, RunReport, Selection};
use airlock_pipeline::env::{JobContext, RunName};
use airlock_pipeline::events::RunEvent;
use airlock_pipeline::executor::SandboxExecutor;
use airlock_pipeline::log::LogLine;
use airlock_pipeline::record::{DirOutbox, OriginKey};
use airlock_pipeline::spec::{self, Pipeline};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

use super::records::ReachableFromRef;
use super::reports::{final_report, pending_report};
use crate::artifacts::{ArtifactStore, LocalArtifacts};
use crate::kernel::{AppState, now_ms};
use crate::store::{ClaimedRun, JobUpdate, RunId, RunStatus};

/// What a run needs besides the shared state.
#[derive(Clone)]
pub struct RunnerDeps {
    /// The sandbox.
    pub executor: Arc<SandboxExecutor>,
    /// Signs pass records.
    pub origin_key: Arc<OriginKey>,
    /// Where pass records go.
    pub outbox: Arc<DirOutbox>,
    /// Where outputs are kept.
    pub artifacts: Arc<LocalArtifacts>,
    /// Per-run work directories.
    pub work_root: PathBuf,
}

/// Claims and starts runs until shutdown.
pub async fn run_loop(state: AppState, deps: RunnerDeps) {
    if state.config.file.concurrency == 0 {
        // Intake only (see `ConfigFile::concurrency`). `claim_next(0, ..)`
        // would claim nothing anyway, but each attempt is a write transaction
        // taken on every queued event, competing with intake for the store.
        tracing::warn!("concurrency = 0: intake only, queued runs are not executed");
        state.shutdown.cancelled().await;
        return;
    }
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        if state.shutdown.is_cancelled() {
            break;
        }
        let store = state.store.clone();
        let config = state.config.clone();
        let claimed = tokio::task::spawn_blocking(move || {
            let limit = |name: &str| config.project(name).map(|p| p.concurrency).unwrap_or(1);
            store.claim_next(config.file.concurrency, &limit, now_ms())
        })
        .await;
        match claimed {
            Ok(Ok(Some(run))) => {
                // Phase markers ("run claimed", "source fetched", "workspace
                // materialised", then the executor's "sandbox started"): a
                // subscriber that timestamps them splits a run's start-up
                // latency into its phases (benches/latency.rs does).
                tracing::debug!(run = run.id, "run claimed");
                let span = info_span!("run", run = run.id, project = %run.project);
                tasks.spawn(execute(state.clone(), deps.clone(), run).instrument(span));
                continue;
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot claim a run"),
            Err(e) => tracing::error!(error = %e, "claim task failed"),
        }
        tokio::select! {
            _ = state.runs_queued.notified() => {}
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = state.shutdown.cancelled() => break,
        }
    }
    // Let running runs stop (their tokens are children of `shutdown`); they stay
    // Running in the store and the next start re-queues them.
    while tasks.join_next().await.is_some() {}
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(f).await?)
}

/// One run from claim to final state.
async fn execute(state: AppState, deps: RunnerDeps, claimed: ClaimedRun) {
    let run = claimed.id;
    let cancel = state.shutdown.child_token();
    if let Ok(mut map) = state.running.lock() {
        map.insert(run, cancel.clone());
    }
    let outcome = execute_inner(&state, &deps, &claimed, cancel.clone()).await;
    if let Ok(mut map) = state.running.lock() {
        map.remove(&run);
    }
    if state.shutdown.is_cancelled() {
        tracing::info!("shutting down: run left for recovery at the next start");
        return;
    }
    let (status, reason, report) = match outcome {
        Ok(o) => o,
        Err(e) => (RunStatus::Error, Some(format!("{e:#}")), None),
    };
    let project = state.config.project(&claimed.project).cloned();
    let reports = match &project {
        Some(p) if p.report => vec![final_report(&state, &claimed, status, report.as_ref())],
        _ => Vec::new(),
    };
    let store = state.store.clone();
    let reason_text = reason.clone();
    let finished =
        blocking(move || store.finish_run(run, status, reason_text.as_deref(), &reports, now_ms()))
            .await;
    match finished {
        Ok(Ok(true)) => {
            tracing::info!(status = ?status, reason = reason.as_deref().unwrap_or(""), "run finished")
        }
        Ok(Ok(false)) => tracing::warn!("run was already final"),
        Ok(Err(e)) => tracing::error!(error = %e, "cannot record the end of the run"),
        Err(e) => tracing::error!(error = %e, "finish task failed"),
    }
    state.reports_queued.notify_one();
    let _ = airlock_pipeline::executor::remove_work_dir(&deps.work_root.join(format!("run-{run}")));
}

type Outcome = (RunStatus, Option<String>, Option<RunReport>);

async fn execute_inner(
    state: &AppState,
    deps: &RunnerDeps,
    claimed: &ClaimedRun,
    cancel: CancellationToken,
) -> anyhow::Result<Outcome> {
    let run = claimed.id;
    let project = state
        .config
        .project(&claimed.project)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("project '{}' is no longer configured", claimed.project))?;
    let event = claimed.event.clone();

    if project.report {
        let store = state.store.clone();
        let pending = vec![pending_report(state, claimed)];
        blocking(move || store.enqueue_reports(run, &pending, now_ms())).await??;
        state.reports_queued.notify_one();
    }

    // Our own fetch of exactly that revision: the ref first, the commit id if the ref moved on.
    let (sources, url, git_ref, commit) = (
        state.sources.clone(),
        project.git_url.clone(),
        event.git_ref.clone(),
        event.commit.clone(),
    );
    let mirror = blocking(move || -> anyhow::Result<_> {
        let (mirror, at_ref) = sources.fetch_rev(&url, &git_ref)?;
        if at_ref.to_string() == commit {
            return Ok(mirror);
        }
        let (mirror, _) = sources.fetch_rev(&url, &commit)?;
        Ok(mirror)
    })
    .await??;
    tracing::debug!(run, "source fetched");
    let commit_id: airlock_pipeline::source::CommitId = event.commit.parse()?;

    let bytes = mirror.read_file(
        &commit_id,
        spec::PIPELINE_PATH,
        spec::MAX_PIPELINE_BYTES as u64 + 1,
    )?;
    let Some(bytes) = bytes else {
        return Ok((
            RunStatus::Failed,
            Some(format!(
                "commit {} has no {}",
                &event.commit[..12],
                spec::PIPELINE_PATH
            )),
            None,
        ));
    };
    let pipeline: Pipeline = match spec::parse(spec::PIPELINE_PATH, &bytes) {
        Ok(p) => p,
        Err(d) => {
            return Ok((
                RunStatus::Failed,
                Some(format!("invalid pipeline file:\n{d}")),
                None,
            ));
        }
    };
    let plan = match Plan::new(
        &pipeline,
        &Selection::Event {
            kind: event.kind,
            git_ref: event.git_ref.clone(),
        },
    ) {
        Ok(p) => p,
        Err(PlanError::Empty) => {
            return Ok((
                RunStatus::Passed,
                Some("no job is selected for this event".into()),
                None,
            ));
        }
        Err(e) => return Ok((RunStatus::Failed, Some(e.to_string()), None)),
    };

    let work = deps.work_root.join(format!("run-{run}"));
    let src = work.join("src");
    // The commit time comes from the mirror already open here, not from a second open.
    let commit_time = {
        let (work, src, commit_id) = (work.clone(), src.clone(), commit_id);
        blocking(move || -> anyhow::Result<i64> {
            // A run interrupted by a crash may have left its workspaces mounted.
            airlock_pipeline::executor::remove_work_dir(&work)?;
            std::fs::create_dir_all(&work)?;
            // Traversable, not listable: the sandbox user reaches only its own workspace.
            std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o711))?;
            mirror.materialise(&commit_id, &src)?;
            Ok(mirror.commit_time(&commit_id)?)
        })
        .await??
    };
    tracing::debug!(run, "workspace materialised");

    let mut config = EngineConfig::new(&work);
    config.concurrency = 2;
    config.outputs = state.config.file.artifacts.output_limits();
    // The same variables the trusted builder's rebuild gives the job (pipeline::env); the run
    // id here is the pass record's `ci_run_id`.
    config.env = JobContext {
        commit: commit_id,
        git_ref: event.git_ref.clone(),
        event: event.kind,
        commit_time,
        run: RunName::Ci(run.to_string()),
    }
    .env();
    let engine = Engine::new(deps.executor.clone(), config);
    let persister = tokio::spawn(persist_events(state.clone(), run, engine.subscribe()));
    let watcher = tokio::spawn(watch_cancel_flag(state.clone(), run, cancel.clone()));
    let report = engine.run(&plan, &src, cancel).await;
    watcher.abort();
    let _ = persister.await;
    for job in &report.jobs {
        if let (Some(started), Some(finished)) = (job.started_ms, job.finished_ms) {
            state.metrics.job_finished(started, finished);
        }
    }

    // Outputs survive the work directory in the artifact store.
    let (store, artifacts, rep) = (state.store.clone(), deps.artifacts.clone(), report.clone());
    blocking(move || -> anyhow::Result<()> {
        for job in &rep.jobs {
            store.set_job(
                run,
                &JobUpdate {
                    name: job.name.clone(),
                    state: job.state,
                    attempts: job.attempts,
                    exit_code: job.exit_code,
                    detail: job.detail.clone(),
                    started_ms: job.started_ms,
                    finished_ms: job.finished_ms,
                },
                now_ms(),
            )?;
            // Recorded BEFORE they are copied in: the retention sweep deletes only blobs
            // no queued or running run references (checked under the store's write lock),
            // so from here on this run's blobs are kept, and one the sweep deleted just
            // before is stored again by the put below (a put of a blob still present
            // does nothing, which is only safe because of this order).
            store.set_outputs(run, &job.name, &job.outputs)?;
            for file in &job.outputs {
                artifacts.put(&file.sha256, &rep.store.blob_path(&file.sha256))?;
            }
        }
        Ok(())
    })
    .await??;

    let status = if report.cancelled {
        RunStatus::Cancelled
    } else if report.passed() {
        RunStatus::Passed
    } else {
        RunStatus::Failed
    };
    let mut reason = None;
    if status == RunStatus::Passed && project.is_protected(&event.git_ref) {
        let (outbox, key, p, rep, pl, sources) = (
            deps.outbox.clone(),
            deps.origin_key.clone(),
            project.clone(),
            report.clone(),
            pipeline.clone(),
            state.sources.clone(),
        );
        let (git_ref, commit, kind) = (event.git_ref.clone(), event.commit.clone(), event.kind);
        let written = blocking(move || -> anyhow::Result<_> {
            // The event's ref is a claim: check it against the canonical repository first.
            let reachable = match ReachableFromRef::check(&sources, &p.git_url, &git_ref, &commit) {
                Ok(reachable) => reachable,
                Err(refused) => return Ok(Err(refused)),
            };
            Ok(Ok(super::records::write_pass_records(
                &outbox,
                &key,
                &super::records::PassedRun {
                    project: &p,
                    run,
                    event: kind,
                    reachable: &reachable,
                    pipeline: &pl,
                    report: &rep,
                },
            )?))
        })
        .await??;
        match written {
            Ok(written) if !written.is_empty() => {
                tracing::info!(records = ?written, "pass records written to the outbox");
            }
            Ok(_) => {}
            Err(refused) => {
                let why = format!("passed, but no pass record was written: {refused}");
                tracing::warn!(reason = %why, "pass record refused");
                reason = Some(why);
            }
        }
    }
    Ok((status, reason, Some(report)))
}

/// Mirrors the engine's events into the store: job states at once, log lines in batches.
async fn persist_events(
    state: AppState,
    run: RunId,
    mut events: tokio::sync::broadcast::Receiver<RunEvent>,
) {
    let mut lines: Vec<(String, LogLine)> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(RunEvent::Job { job, state: job_state, attempt, detail, at_ms }) => {
                    flush(&state, run, &mut lines).await;
                    let update = JobUpdate {
                        name: job,
                        state: job_state,
                        attempts: attempt,
                        exit_code: None,
                        detail,
                        started_ms: (job_state == airlock_pipeline::events::JobState::Running).then_some(at_ms),
                        finished_ms: job_state.is_final().then_some(at_ms),
                    };
                    let store = state.store.clone();
                    if let Ok(Err(e)) = blocking(move || store.set_job(run, &update, now_ms())).await {
                        tracing::warn!(error = %e, "cannot store job state");
                    }
                }
                Ok(RunEvent::Log { job, line }) => {
                    lines.push((job, line));
                    if lines.len() >= 500 {
                        flush(&state, run, &mut lines).await;
                    }
                }
                Ok(RunEvent::Finished { .. }) | Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "log persistence lagged; some live lines were not stored");
                }
            },
            _ = tick.tick() => flush(&state, run, &mut lines).await,
        }
    }
    flush(&state, run, &mut lines).await;
}

async fn flush(state: &AppState, run: RunId, lines: &mut Vec<(String, LogLine)>) {
    if lines.is_empty() {
        return;
    }
    let batch = std::mem::take(lines);
    let store = state.store.clone();
    let _ = blocking(move || {
        let mut by_job: BTreeMap<String, Vec<LogLine>> = BTreeMap::new();
        for (job, line) in batch {
            by_job.entry(job).or_default().push(line);
        }
        for (job, lines) in by_job {
            if let Err(e) = store.append_log(run, &job, &lines) {
                tracing::warn!(error = %e, "cannot store log lines");
            }
        }
    })
    .await;
}

/// Cancels the run when another process (or a restart) set its cancel flag.
async fn watch_cancel_flag(state: AppState, run: RunId, cancel: CancellationToken) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let store = state.store.clone();
        if let Ok(Ok(true)) = blocking(move || store.cancel_requested(run)).await {
            cancel.cancel();
            return;
        }
    }
}

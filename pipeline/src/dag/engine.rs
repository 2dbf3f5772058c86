//! Running a [`Plan`]: ready jobs start concurrently up to a limit; a job
//! that does not pass skips its dependents while independent branches go
//! on; cancellation stops everything and reports what it stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

use super::plan::Plan;
use super::workspace;
use crate::events::{JobState, RunEvent};
use crate::executor::{Executor, ExitReason, JobRequest};
use crate::log::{JobLog, LogSink, now_ms};
use crate::outputs::{self, ContentStore, OutputFile, OutputLimits};
use crate::spec::JobSpec;
use crate::tree::TreeRoot;

/// Settings of one engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Most jobs running at once.
    pub concurrency: usize,
    /// Log bytes kept per job.
    pub log_cap: usize,
    /// Directory for workspaces (`jobs/<name>`) and collected outputs (`outputs/`).
    pub work_root: PathBuf,
    /// Variables every job gets under its own `env` (e.g. `AIRLOCK_COMMIT`).
    pub env: BTreeMap<String, String>,
    /// Caps on each job's outputs (per file, per job). A job over them fails with a message
    /// naming the file, its size and the limit, and none of its outputs is stored.
    pub outputs: OutputLimits,
}

impl EngineConfig {
    /// Defaults: two jobs at once, 4 MiB of log per job, outputs of at most 1 GiB per file and
    /// 4 GiB per job.
    pub fn new(work_root: impl Into<PathBuf>) -> Self {
        EngineConfig {
            concurrency: 2,
            log_cap: crate::log::DEFAULT_LOG_CAP,
            work_root: work_root.into(),
            env: BTreeMap::new(),
            outputs: OutputLimits::default(),
        }
    }
}

/// What became of one job.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    /// Job name.
    pub name: String,
    /// Final state.
    pub state: JobState,
    /// Attempts made (0 if never started).
    pub attempts: u32,
    /// Exit code of the last attempt, if it exited.
    pub exit_code: Option<i32>,
    /// Human-readable reason for the state.
    pub detail: Option<String>,
    /// Start of the first attempt, ms since the epoch.
    pub started_ms: Option<u64>,
    /// End of the last attempt, ms since the epoch.
    pub finished_ms: Option<u64>,
    /// The log of every attempt.
    pub log: JobLog,
    /// Collected outputs (when passed).
    pub outputs: Vec<OutputFile>,
}

impl JobReport {
    fn not_run(name: &str, state: JobState, detail: String) -> Self {
        JobReport {
            name: name.to_string(),
            state,
            attempts: 0,
            exit_code: None,
            detail: Some(detail),
            started_ms: None,
            finished_ms: None,
            log: JobLog::default(),
            outputs: Vec::new(),
        }
    }

    /// Wall-clock time across attempts, if it ran.
    pub fn duration_ms(&self) -> Option<u64> {
        Some(self.finished_ms?.saturating_sub(self.started_ms?))
    }
}

/// What became of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Every planned job, in plan order.
    pub jobs: Vec<JobReport>,
    /// Whether the run was cancelled.
    pub cancelled: bool,
    /// Where collected outputs are stored (content-addressed).
    #[serde(skip)]
    pub store: ContentStore,
}

impl RunReport {
    /// Whether every job passed.
    pub fn passed(&self) -> bool {
        !self.cancelled && self.jobs.iter().all(|j| j.state == JobState::Passed)
    }
}

/// Runs plans with one executor.
pub struct Engine<E: Executor> {
    executor: Arc<E>,
    config: EngineConfig,
    events: broadcast::Sender<RunEvent>,
}

static ATTEMPTS: AtomicU64 = AtomicU64::new(0);

impl<E: Executor> Engine<E> {
    /// An engine; nothing runs until [`Engine::run`].
    pub fn new(executor: Arc<E>, config: EngineConfig) -> Self {
        // Lagging subscribers lose events rather than grow memory without bound.
        let (events, _) = broadcast::channel(8192);
        Engine {
            executor,
            config: EngineConfig {
                concurrency: config.concurrency.max(1),
                ..config
            },
            events,
        }
    }

    /// State changes and log lines of every run of this engine.
    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.events.subscribe()
    }

    fn emit(&self, job: &str, state: JobState, attempt: u32, detail: Option<String>) {
        let _ = self.events.send(RunEvent::Job {
            job: job.to_string(),
            state,
            attempt,
            detail,
            at_ms: now_ms(),
        });
    }

    /// Runs every job of `plan` on a copy of the `source` tree.
    pub async fn run(&self, plan: &Plan, source: &Path, cancel: CancellationToken) -> RunReport {
        let store = ContentStore::new(self.config.work_root.join("outputs"));
        // One output count for the whole run, shared by its jobs.
        let output_limits = self.config.outputs.for_run();
        let n = plan.jobs.len();
        let mut reports: Vec<Option<JobReport>> = vec![None; n];
        let mut started = vec![false; n];
        for job in &plan.jobs {
            self.emit(&job.name, JobState::Pending, 0, None);
        }
        let mut running: JoinSet<(usize, JobReport)> = JoinSet::new();
        let mut task_index: std::collections::HashMap<tokio::task::Id, usize> =
            std::collections::HashMap::new();
        loop {
            if !cancel.is_cancelled() {
                for i in 0..n {
                    if running.len() >= self.config.concurrency {
                        break;
                    }
                    let ready = !started[i]
                        && reports[i].is_none()
                        && plan.needs[i].iter().all(|&d| {
                            reports[d]
                                .as_ref()
                                .is_some_and(|r| r.state == JobState::Passed)
                        });
                    if !ready {
                        continue;
                    }
                    started[i] = true;
                    let inputs: Vec<OutputFile> = plan
                        .needs_closure(i)
                        .into_iter()
                        .filter_map(|d| reports[d].as_ref())
                        .flat_map(|r| r.outputs.iter().cloned())
                        .collect();
                    let task = JobTask {
                        executor: self.executor.clone(),
                        job: plan.jobs[i].clone(),
                        inputs,
                        source: source.to_path_buf(),
                        workspace: self.config.work_root.join("jobs").join(&plan.jobs[i].name),
                        store: store.clone(),
                        log: LogSink::new(
                            &plan.jobs[i].name,
                            self.config.log_cap,
                            Some(self.events.clone()),
                        ),
                        env: self.config.env.clone(),
                        output_limits: output_limits.clone(),
                        events: self.events.clone(),
                        cancel: cancel.child_token(),
                    };
                    let span = info_span!("job", job = %plan.jobs[i].name);
                    let handle =
                        running.spawn(async move { (i, task.run().await) }.instrument(span));
                    task_index.insert(handle.id(), i);
                }
            }
            let Some(done) = running.join_next_with_id().await else {
                break;
            };
            let (i, report) = match done {
                Ok((_, pair)) => pair,
                Err(e) => {
                    // A panicking job task must not take the run down.
                    tracing::error!(error = %e, "job task failed");
                    let Some(&i) = task_index.get(&e.id()) else {
                        continue;
                    };
                    let report = JobReport::not_run(
                        &plan.jobs[i].name,
                        JobState::Error,
                        format!("internal error: {e}"),
                    );
                    self.emit(
                        &plan.jobs[i].name,
                        JobState::Error,
                        0,
                        report.detail.clone(),
                    );
                    (i, report)
                }
            };
            let passed = report.state == JobState::Passed;
            reports[i] = Some(report);
            if !passed {
                self.skip_dependents(plan, i, &mut reports, cancel.is_cancelled());
            }
        }
        for (i, slot) in reports.iter_mut().enumerate() {
            if slot.is_none() {
                let (state, why) = if cancel.is_cancelled() {
                    (
                        JobState::Cancelled,
                        "run cancelled before it started".to_string(),
                    )
                } else {
                    (JobState::Skipped, "not reached".to_string())
                };
                self.emit(&plan.jobs[i].name, state, 0, Some(why.clone()));
                *slot = Some(JobReport::not_run(&plan.jobs[i].name, state, why));
            }
        }
        let jobs: Vec<JobReport> = reports.into_iter().flatten().collect();
        let report = RunReport {
            jobs,
            cancelled: cancel.is_cancelled(),
            store,
        };
        let _ = self.events.send(RunEvent::Finished {
            passed: report.passed(),
            cancelled: report.cancelled,
        });
        report
    }

    fn skip_dependents(
        &self,
        plan: &Plan,
        failed: usize,
        reports: &mut [Option<JobReport>],
        cancelled: bool,
    ) {
        let mut stack = vec![(failed, plan.jobs[failed].name.clone())];
        while let Some((i, cause)) = stack.pop() {
            for &d in &plan.dependents[i] {
                if reports[d].is_none() {
                    let (state, why) = if cancelled {
                        (
                            JobState::Cancelled,
                            "run cancelled before it started".to_string(),
                        )
                    } else {
                        (
                            JobState::Skipped,
                            format!("needs '{cause}', which did not pass"),
                        )
                    };
                    self.emit(&plan.jobs[d].name, state, 0, Some(why.clone()));
                    reports[d] = Some(JobReport::not_run(&plan.jobs[d].name, state, why));
                    stack.push((d, plan.jobs[d].name.clone()));
                }
            }
        }
    }
}

struct JobTask<E: Executor> {
    executor: Arc<E>,
    job: JobSpec,
    inputs: Vec<OutputFile>,
    source: PathBuf,
    workspace: PathBuf,
    store: ContentStore,
    log: LogSink,
    env: BTreeMap<String, String>,
    output_limits: OutputLimits,
    events: broadcast::Sender<RunEvent>,
    cancel: CancellationToken,
}

impl<E: Executor> JobTask<E> {
    fn emit(&self, state: JobState, attempt: u32, detail: Option<String>) {
        let _ = self.events.send(RunEvent::Job {
            job: self.job.name.clone(),
            state,
            attempt,
            detail,
            at_ms: now_ms(),
        });
    }

    async fn run(self) -> JobReport {
        let mut report = JobReport::not_run(&self.job.name, JobState::Pending, String::new());
        let max_attempts = self.job.retries + 1;
        for attempt in 1..=max_attempts {
            if self.cancel.is_cancelled() {
                report.state = JobState::Cancelled;
                report.detail = Some("run cancelled".into());
                break;
            }
            report.attempts = attempt;
            if attempt > 1 {
                self.log
                    .system(format!("[airlock] attempt {attempt} of {max_attempts}"));
            }
            self.emit(JobState::Running, attempt, None);
            let (state, detail, exit_code) = self.attempt(attempt, &mut report).await;
            report.state = state;
            report.detail = detail;
            report.exit_code = exit_code;
            let retryable = matches!(
                state,
                JobState::Failed | JobState::TimedOut | JobState::OutOfMemory
            );
            if !retryable || attempt == max_attempts {
                break;
            }
            let why = report.detail.clone().unwrap_or_default();
            self.log.system(format!(
                "[airlock] attempt {attempt} did not pass ({why}); retrying"
            ));
        }
        report.log = self.log.finish();
        let detail = match (report.state, report.duration_ms()) {
            (JobState::Passed, Some(ms)) => Some(format!("passed in {:.1}s", ms as f64 / 1000.0)),
            _ => report.detail.clone(),
        };
        self.emit(report.state, report.attempts, detail);
        report
    }

    async fn attempt(
        &self,
        attempt: u32,
        report: &mut JobReport,
    ) -> (JobState, Option<String>, Option<i32>) {
        let (source, workspace, store, inputs, executor, limits, log) = (
            self.source.clone(),
            self.workspace.clone(),
            self.store.clone(),
            self.inputs.clone(),
            self.executor.clone(),
            self.job.resources,
            self.log.clone(),
        );
        // Held until the outputs are collected: the workspace may be a filesystem of its own.
        let prepared = tokio::task::spawn_blocking(move || {
            workspace::remove_workspace(&workspace)?;
            let lease = executor
                .provision_workspace(&workspace, &limits, &log)
                .map_err(std::io::Error::other)?;
            workspace::fill(&source, &workspace, &store, &inputs)?;
            Ok::<_, std::io::Error>(lease)
        })
        .await;
        let lease = match prepared {
            Ok(Ok(lease)) => lease,
            Ok(Err(e)) => {
                return (
                    JobState::Error,
                    Some(format!("could not prepare the workspace: {e}")),
                    None,
                );
            }
            Err(e) => {
                return (
                    JobState::Error,
                    Some(format!("could not prepare the workspace: {e}")),
                    None,
                );
            }
        };
        let outcome = self.run_prepared(attempt, report).await;
        // Releasing may unmount the workspace's filesystem (a process): not on the runtime.
        let _ = tokio::task::spawn_blocking(move || drop(lease)).await;
        outcome
    }

    /// Runs a prepared attempt and collects its outputs.
    async fn run_prepared(
        &self,
        attempt: u32,
        report: &mut JobReport,
    ) -> (JobState, Option<String>, Option<i32>) {
        // The executor's deadline (image pull and script) and then collecting the outputs.
        let deadline = std::time::Instant::now() + self.job.timeout;
        let mut env = self.env.clone();
        env.insert("AIRLOCK_JOB".into(), self.job.name.clone());
        env.extend(self.job.env.clone());
        let request = JobRequest {
            job: self.job.name.clone(),
            attempt_id: format!(
                "{}-{}-{}-{attempt}",
                std::process::id(),
                ATTEMPTS.fetch_add(1, Ordering::Relaxed),
                self.job.name
            ),
            argv: self.job.action.argv(),
            env,
            workspace: self.workspace.clone(),
            timeout: self.job.timeout,
            resources: self.job.resources,
            image: self.job.image.clone(),
        };
        let execution = match self
            .executor
            .execute(request, self.log.clone(), self.cancel.clone())
            .await
        {
            Ok(e) => e,
            Err(e) => {
                self.log.system(format!("[airlock] {e}"));
                return (JobState::Error, Some(e.to_string()), None);
            }
        };
        report.started_ms.get_or_insert(ms(execution.started));
        report.finished_ms = Some(ms(execution.finished));
        let exit_code = match execution.reason {
            ExitReason::Exited(c) => Some(c),
            _ => None,
        };
        let state = match execution.reason {
            ExitReason::Exited(0) => JobState::Passed,
            ExitReason::Exited(_) | ExitReason::Signalled(_) | ExitReason::HostDiskLow => {
                JobState::Failed
            }
            ExitReason::TimedOut => JobState::TimedOut,
            ExitReason::OutOfMemory => JobState::OutOfMemory,
            ExitReason::Cancelled => JobState::Cancelled,
        };
        if state != JobState::Passed {
            return (state, Some(execution.reason.to_string()), exit_code);
        }
        match self.collect(deadline).await {
            Ok(files) => {
                report.outputs = files;
                (JobState::Passed, None, exit_code)
            }
            Err((state, e)) => {
                self.log.system(format!("[airlock] {e}"));
                (state, Some(e), exit_code)
            }
        }
    }

    /// Collects and stores the outputs by `deadline`; a job whose outputs take longer times
    /// out like one whose script does.
    async fn collect(
        &self,
        deadline: std::time::Instant,
    ) -> Result<Vec<OutputFile>, (JobState, String)> {
        let (workspace, patterns, store) = (
            self.workspace.clone(),
            self.job.outputs.clone(),
            self.store.clone(),
        );
        let limits = OutputLimits {
            deadline: Some(deadline),
            ..self.output_limits.clone()
        };
        let failed = |e: outputs::OutputError| {
            let state = match e {
                outputs::OutputError::OutOfTime { .. } => JobState::TimedOut,
                _ => JobState::Failed,
            };
            (state, e.to_string())
        };
        tokio::task::spawn_blocking(move || {
            // One handle on the workspace for collecting and storing: everything beneath it is
            // the job's, so nothing is looked up by host path. Every size is checked before
            // the first file is stored.
            let root = TreeRoot::open(&workspace).map_err(|e| (JobState::Failed, e.to_string()))?;
            let files = outputs::collect_limited(&root, &patterns, &limits).map_err(failed)?;
            let stored = files.iter().enumerate().try_for_each(|(done, f)| {
                limits.check_deadline(done, files.len()).map_err(failed)?;
                store.put(&root, f).map(drop).map_err(|e| {
                    (
                        JobState::Failed,
                        format!("storing output '{}': {e}", f.path),
                    )
                })
            });
            if stored.is_err() {
                limits.give_back(files.len());
            }
            stored.map(|()| files)
        })
        .await
        .map_err(|e| (JobState::Error, e.to_string()))?
    }
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

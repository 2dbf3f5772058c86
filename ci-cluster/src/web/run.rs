//! `/runs/{id}`: what caused the run, its job graph, each job's log (live
//! while it runs, through `app.js` and [`super::live`]), outputs and reports.

use airlock_pipeline::dag::{Plan, Selection};
use airlock_pipeline::events::JobState;
use airlock_pipeline::source::{CommitId, Mirror, SourceCache};
use airlock_pipeline::spec::{self, Pipeline};
use axum::extract::{Path, State};
use maud::{Markup, html};

use super::dag::{self, Node};
use super::layout::{self, Nav};
use super::logs::{self, LogTail};
use super::run_sections;
use super::{WebError, read_store};
use crate::kernel::AppState;
use crate::store::{JobRow, ReportRow, RunId, RunRow};

/// Everything the run page shows.
pub struct RunView {
    /// The run with its event.
    pub run: RunRow,
    /// Its jobs (stored ones, then planned ones not reported yet), with their log tails.
    pub jobs: Vec<(JobRow, LogTail)>,
    /// `needs` by index into `jobs`, when the pipeline file could be read.
    pub needs: Option<Vec<Vec<usize>>>,
    /// Reports to the forge.
    pub reports: Vec<ReportRow>,
}

/// The pipeline file of `commit`, from the mirror the runner fetched it
/// into; `None` when that is not possible (not fetched yet, pruned, invalid).
fn pipeline_at(sources: &SourceCache, git_url: &str, commit: &str) -> Option<Pipeline> {
    let mirror = Mirror::open(&sources.mirror_path(git_url)).ok()?;
    let id: CommitId = commit.parse().ok()?;
    let bytes = mirror
        .read_file(&id, spec::PIPELINE_PATH, spec::MAX_PIPELINE_BYTES as u64)
        .ok()??;
    spec::parse(spec::PIPELINE_PATH, &bytes).ok()
}

/// Stored jobs plus the planned jobs not reported yet (a queued run), and
/// the `needs` edges by index, from the pipeline when there is one.
fn with_plan(
    run: &RunRow,
    mut jobs: Vec<JobRow>,
    pipeline: Option<&Pipeline>,
) -> (Vec<JobRow>, Option<Vec<Vec<usize>>>) {
    let Some(pipeline) = pipeline else {
        return (jobs, None);
    };
    if let Ok(plan) = Plan::new(
        pipeline,
        &Selection::Event {
            kind: run.kind,
            git_ref: run.git_ref.clone(),
        },
    ) {
        for job in &plan.jobs {
            if !run.status.is_final() && !jobs.iter().any(|j| j.name == job.name) {
                jobs.push(JobRow {
                    name: job.name.clone(),
                    state: JobState::Pending,
                    attempts: 0,
                    exit_code: None,
                    detail: None,
                    started_ms: None,
                    finished_ms: None,
                    outputs: Vec::new(),
                });
            }
        }
    }
    let index = |name: &str| jobs.iter().position(|j| j.name == name);
    let needs = jobs
        .iter()
        .map(|j| {
            pipeline
                .job(&j.name)
                .map(|spec| spec.needs.iter().filter_map(|n| index(n)).collect())
                .unwrap_or_default()
        })
        .collect();
    (jobs, Some(needs))
}

/// Loads a run's page data; `None` when there is no such run.
pub async fn load(state: &AppState, id: RunId) -> Result<Option<RunView>, WebError> {
    let found = read_store(state, move |store| {
        let Some(run) = store.run(id)? else {
            return Ok(None);
        };
        Ok(Some((run, store.jobs(id)?, store.reports(id)?)))
    })
    .await?;
    let Some((run, jobs, reports)) = found else {
        return Ok(None);
    };
    let git_url = state
        .config
        .project(&run.project)
        .map(|p| p.git_url.clone());
    let (sources, commit) = (state.sources.clone(), run.commit.clone());
    let pipeline = match git_url {
        Some(url) => tokio::task::spawn_blocking(move || pipeline_at(&sources, &url, &commit))
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let (jobs, needs) = with_plan(&run, jobs, pipeline.as_ref());
    let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
    let tails = read_store(state, move |store| {
        names
            .iter()
            .map(|name| logs::read_tail(store, id, name))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(Some(RunView {
        run,
        jobs: jobs.into_iter().zip(tails).collect(),
        needs,
        reports,
    }))
}

/// `GET /runs/{id}`.
pub async fn page(
    State(state): State<AppState>,
    Path(id): Path<RunId>,
) -> Result<Markup, WebError> {
    let view = load(&state, id)
        .await?
        .ok_or_else(|| WebError::not_found(format!("There is no run {id}.")))?;
    let now = layout::now_ms();
    let run = &view.run;
    let nodes: Vec<Node> = view
        .jobs
        .iter()
        .map(|(j, _)| Node {
            name: j.name.clone(),
            state: j.state,
            duration_ms: layout::span_ms(j.started_ms, j.finished_ms, now),
            running_since: j.started_ms.filter(|_| j.state == JobState::Running),
        })
        .collect();
    let live = (!run.status.is_final()).then(|| format!("/runs/{id}/live"));
    let body = html! {
        div #run data-run=(id) data-live=[live] data-now=(now) {
            (run_sections::header(run, now))
            section.panel #graph data-refresh {
                h2 { "Pipeline" }
                @if nodes.is_empty() {
                    p.empty { @if run.status.is_final() { "No job ran." } @else { "Jobs appear when the run starts." } }
                } @else {
                    div.dag-wrap { (dag::svg(&nodes, view.needs.as_deref())) }
                    @if view.needs.is_none() {
                        p.note { "Dependencies unknown (the pipeline file of this commit could not be read): jobs are shown in start order." }
                    }
                }
            }
            section.panel #jobs {
                h2 { "Jobs and logs" span.live-indicator { "● following live" } }
                @for (job, tail) in &view.jobs {
                    (logs::job_section(id, job, tail, now))
                }
                (run_sections::job_template(id))
            }
            (run_sections::outputs(id, &view.jobs))
            (run_sections::reports(&view.reports, now))
        }
    };
    Ok(layout::page(
        &format!("Run #{id} · {}", run.project),
        Nav::Runs,
        body,
    ))
}

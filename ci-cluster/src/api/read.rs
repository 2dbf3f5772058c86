//! Public reads: projects, runs, a run, a job's log, a change's runs. No
//! authentication: CI results are what reviewers read from their change.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::model::{Event, Job, LogLine, Report, Run};
use super::responses::{ChangeRuns, LogPage, ProjectList, ProjectSummary, RunDetail, RunPage};
use super::{from_path, from_query, store_call};
use crate::kernel::AppState;
use crate::kernel::Refusal;
use crate::store::{RunFilter, RunStatus};

/// Runs per page unless `per_page` says otherwise.
const DEFAULT_PER_PAGE: u32 = 50;
/// Largest page: a bigger one would hold the store's read lock for long.
const MAX_PER_PAGE: u32 = 500;
/// Log lines per answer unless `limit` says otherwise.
const DEFAULT_LOG_LIMIT: u32 = 1000;
/// Largest `limit` for a log slice.
const MAX_LOG_LIMIT: u32 = 10_000;

fn answer<T: serde::Serialize>(result: Result<T, Refusal>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// Every configured project with its newest run.
#[utoipa::path(
    get, path = "/api/v1/projects", tag = "runs",
    responses(
        (status = 200, description = "Configured projects, in configuration order", body = ProjectList),
        (status = 500, description = "The store failed", body = super::responses::ApiError),
    )
)]
pub(super) async fn projects(State(state): State<AppState>) -> Response {
    let config = state.config.clone();
    answer(
        store_call(&state, move |store| {
            let mut projects = Vec::new();
            for p in &config.file.projects {
                let filter = RunFilter {
                    project: Some(p.name.clone()),
                    limit: 1,
                    ..Default::default()
                };
                let latest = store
                    .runs(&filter)?
                    .first()
                    .map(|r| Run::from_row(r, &config.public_url));
                projects.push(ProjectSummary {
                    name: p.name.clone(),
                    forge: p.forge,
                    repository: p.repository.clone().unwrap_or_else(|| p.name.clone()),
                    latest_run: latest,
                });
            }
            Ok(ProjectList { projects })
        })
        .await,
    )
}

/// Filters and page of `GET /api/v1/runs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RunsQuery {
    /// Only this project.
    project: Option<String>,
    /// Only this status (empty: any).
    #[param(value_type = Option<RunStatus>)]
    status: Option<String>,
    /// Only this full ref.
    #[serde(rename = "ref")]
    #[param(rename = "ref")]
    git_ref: Option<String>,
    /// Only this change number.
    change: Option<String>,
    /// Only this commit id.
    commit: Option<String>,
    /// Page number, from 1 (default 1).
    #[param(minimum = 1)]
    page: Option<u32>,
    /// Runs per page (default 50, at most 500).
    #[param(minimum = 1, maximum = 500)]
    per_page: Option<u32>,
}

/// An empty parameter (as an HTML form sends it) means "no filter".
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// Runs matching the filters, newest first, one page at a time.
#[utoipa::path(
    get, path = "/api/v1/runs", tag = "runs", params(RunsQuery),
    responses(
        (status = 200, description = "One page of runs, newest first", body = RunPage),
        (status = 400, description = "A parameter is malformed (`malformed`)", body = super::responses::ApiError),
        (status = 500, description = "The store failed", body = super::responses::ApiError),
    )
)]
pub(super) async fn list_runs(
    State(state): State<AppState>,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let q = from_query(query)?;
        let status = match non_empty(q.status) {
            Some(s) => Some(
                s.parse::<RunStatus>()
                    .map_err(|e| Refusal::malformed(format!("status: {e}")))?,
            ),
            None => None,
        };
        let page = q.page.unwrap_or(1);
        let per_page = q.per_page.unwrap_or(DEFAULT_PER_PAGE);
        if page == 0 || per_page == 0 || per_page > MAX_PER_PAGE {
            return Err(Refusal::malformed(format!(
                "page must be >= 1 and per_page within 1..={MAX_PER_PAGE}"
            )));
        }
        // One more than the page tells whether a next page exists without a count query.
        let filter = RunFilter {
            project: non_empty(q.project),
            status,
            git_ref: non_empty(q.git_ref),
            change: non_empty(q.change),
            commit: non_empty(q.commit),
            limit: per_page as usize + 1,
            offset: (page as usize - 1).saturating_mul(per_page as usize),
        };
        let public_url = state.config.public_url.clone();
        let rows = store_call(&state, move |store| store.runs(&filter)).await?;
        let next_page = (rows.len() > per_page as usize).then(|| page.saturating_add(1));
        let runs = rows
            .iter()
            .take(per_page as usize)
            .map(|r| Run::from_row(r, &public_url))
            .collect();
        Ok(RunPage {
            runs,
            page,
            per_page,
            next_page,
        })
    }
    .await;
    answer(result)
}

/// A run with its event, jobs (and their outputs) and reports.
#[utoipa::path(
    get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = i64, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run", body = RunDetail),
        (status = 400, description = "The id is not a number (`malformed`)", body = super::responses::ApiError),
        (status = 404, description = "No such run (`not_found`)", body = super::responses::ApiError),
        (status = 500, description = "The store failed", body = super::responses::ApiError),
    )
)]
pub(super) async fn get_run(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Response {
    let result = async {
        let id = from_path(id)?;
        let public_url = state.config.public_url.clone();
        let found = store_call(&state, move |store| {
            Ok(match store.run(id)? {
                Some(run) => Some((run, store.jobs(id)?, store.reports(id)?)),
                None => None,
            })
        })
        .await?;
        let (run, jobs, reports) =
            found.ok_or_else(|| Refusal::not_found(format!("no run {id}")))?;
        Ok(RunDetail {
            run: Run::from_row(&run, &public_url),
            event: Event::from_row(&run),
            jobs: jobs.into_iter().map(Job::from).collect(),
            reports: reports.into_iter().map(Report::from).collect(),
        })
    }
    .await;
    answer(result)
}

/// Where a log slice starts and how long it is.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct LogQuery {
    /// Only lines with a sequence number above this (default 0: from the start).
    after: Option<u64>,
    /// At most this many lines (default 1000, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

/// A slice of a job's log; poll with `after` = the last `next_after` to follow it live.
#[utoipa::path(
    get, path = "/api/v1/runs/{id}/jobs/{job}/log", tag = "runs",
    params(("id" = i64, Path, description = "Run id"), ("job" = String, Path, description = "Job name"), LogQuery),
    responses(
        (status = 200, description = "Log lines after `after`, oldest first", body = LogPage),
        (status = 400, description = "A parameter is malformed (`malformed`)", body = super::responses::ApiError),
        (status = 404, description = "No such run, or the run is final and has no such job (`not_found`)", body = super::responses::ApiError),
        (status = 500, description = "The store failed", body = super::responses::ApiError),
    )
)]
pub(super) async fn job_log(
    State(state): State<AppState>,
    path: Result<Path<(i64, String)>, PathRejection>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Response {
    let result = async {
        let (id, job) = from_path(path)?;
        let q = from_query(query)?;
        let after = q.after.unwrap_or(0);
        let limit = q.limit.unwrap_or(DEFAULT_LOG_LIMIT);
        if limit == 0 || limit > MAX_LOG_LIMIT {
            return Err(Refusal::malformed(format!(
                "limit must be within 1..={MAX_LOG_LIMIT}"
            )));
        }
        let name = job.clone();
        let found = store_call(&state, move |store| {
            // The status is read before the lines: a run seen final here had
            // all of its lines stored already, so the slice after it is complete.
            let Some(run) = store.run(id)? else {
                return Ok(None);
            };
            let job_state = store
                .jobs(id)?
                .into_iter()
                .find(|j| j.name == name)
                .map(|j| j.state);
            let lines = store.log(id, &name, after, limit as usize)?;
            Ok(Some((run.status, job_state, lines)))
        })
        .await?;
        let (run_status, job_state, lines) =
            found.ok_or_else(|| Refusal::not_found(format!("no run {id}")))?;
        if job_state.is_none() && run_status.is_final() && lines.is_empty() {
            return Err(Refusal::not_found(format!("run {id} has no job '{job}'")));
        }
        let more = lines.len() >= limit as usize;
        let next_after = lines.last().map(|(seq, _)| *seq).unwrap_or(after);
        Ok(LogPage {
            run: id,
            job,
            job_state: job_state.map(Into::into),
            run_status,
            lines: lines
                .into_iter()
                .map(|(seq, line)| LogLine::from_stored(seq, line))
                .collect(),
            next_after,
            more,
        })
    }
    .await;
    answer(result)
}

/// Every run of a change (all patchsets), newest first.
#[utoipa::path(
    get, path = "/api/v1/changes/{project}/{change}", tag = "runs",
    params(("project" = String, Path, description = "Project name"), ("change" = String, Path, description = "Change, pull request or merge request number")),
    responses(
        (status = 200, description = "The change's runs", body = ChangeRuns),
        (status = 404, description = "No such project (`unknown_project`) or no run of this change (`not_found`)", body = super::responses::ApiError),
        (status = 500, description = "The store failed", body = super::responses::ApiError),
    )
)]
pub(super) async fn change_runs(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let result = async {
        let (project, change) = from_path(path)?;
        if state.config.project(&project).is_none() {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "unknown_project",
                format!("no project '{project}'"),
            ));
        }
        let filter = RunFilter {
            project: Some(project.clone()),
            change: Some(change.clone()),
            ..Default::default()
        };
        let rows = store_call(&state, move |store| store.runs(&filter)).await?;
        let newest = rows
            .first()
            .ok_or_else(|| Refusal::not_found(format!("no run of change {change} in {project}")))?;
        let (title, url) = (
            newest.event.title.clone(),
            newest.event.change.as_ref().and_then(|c| c.url.clone()),
        );
        let runs = rows
            .iter()
            .map(|r| Run::from_row(r, &state.config.public_url))
            .collect();
        Ok(ChangeRuns {
            project,
            change,
            title,
            url,
            runs,
        })
    }
    .await;
    answer(result)
}

//! Admin actions: cancel, re-run, manual run. Each checks the bearer admin
//! token (constant time, [`require_admin`]) before it reads anything else, so
//! a request without it learns nothing (not even whether the run exists)
//! and changes nothing.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::responses::{Cancelled, Rerun, TriggerRequest};
use super::{from_path, store_call};
use crate::event::Forge;
use crate::kernel::{AppState, now_ms};
use crate::kernel::{Refusal, limited_body, require_admin, store_event};

/// The reason stored on a run an admin cancelled.
pub const REASON_ADMIN_CANCEL: &str = "cancelled by an admin";

/// Cancels a run: a queued one at once, a running one by stopping its jobs.
#[utoipa::path(
    post, path = "/api/v1/runs/{id}/cancel", tag = "admin",
    params(("id" = i64, Path, description = "Run id")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Cancelled, or cancellation under way; `changed` is false for a run that was already final", body = Cancelled),
        (status = 400, description = "The id is not a number (`malformed`)", body = super::responses::ApiError),
        (status = 401, description = "Missing or wrong admin token (`unauthorized`); nothing changed", body = super::responses::ApiError),
        (status = 404, description = "No such run (`not_found`)", body = super::responses::ApiError),
        (status = 500, description = "The store failed", body = super::responses::ApiError),
    )
)]
pub(super) async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
) -> Response {
    let result = async {
        require_admin(&state, &headers)?;
        let id = from_path(id)?;
        let (changed, run) = store_call(&state, move |store| {
            let changed = store.request_cancel(id, REASON_ADMIN_CANCEL, now_ms())?;
            Ok((changed, store.run(id)?))
        })
        .await?;
        let run = run.ok_or_else(|| Refusal::not_found(format!("no run {id}")))?;
        // A run executing in this process stops now; the runner's flag watcher
        // covers a run claimed before a restart too, within half a second.
        state.cancel_local(id);
        state.runs_queued.notify_one();
        tracing::info!(run = id, changed, "admin cancel");
        Ok::<_, Refusal>(Cancelled {
            run: id,
            changed,
            status: run.status,
            cancel_requested: run.cancel_requested,
        })
    }
    .await;
    match result {
        Ok(body) => Json(body).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// Queues a new run for the same event, ref and commit as a final run.
#[utoipa::path(
    post, path = "/api/v1/runs/{id}/rerun", tag = "admin",
    params(("id" = i64, Path, description = "Run id")),
    security(("admin_token" = [])),
    responses(
        (status = 202, description = "A new run was queued", body = Rerun),
        (status = 400, description = "The id is not a number (`malformed`)", body = super::responses::ApiError),
        (status = 401, description = "Missing or wrong admin token (`unauthorized`); nothing changed", body = super::responses::ApiError),
        (status = 404, description = "No such run (`not_found`)", body = super::responses::ApiError),
        (status = 409, description = "The run is still queued or running (`not_final`)", body = super::responses::ApiError),
        (status = 500, description = "The store failed", body = super::responses::ApiError),
    )
)]
pub(super) async fn rerun(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
) -> Response {
    let result = async {
        require_admin(&state, &headers)?;
        let id = from_path(id)?;
        let new = store_call(&state, move |store| store.requeue(id, now_ms())).await?;
        let new = new.ok_or_else(|| {
            Refusal::new(
                StatusCode::CONFLICT,
                "not_final",
                format!("run {id} is still queued or running"),
            )
        })?;
        state.runs_queued.notify_one();
        tracing::info!(run = id, new, "admin re-run");
        Ok::<_, Refusal>(Rerun {
            status: "queued".into(),
            run: new,
            rerun_of: id,
        })
    }
    .await;
    match result {
        Ok(body) => (StatusCode::ACCEPTED, Json(body)).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// Queues a manual run of a ref (what `ci-cluster trigger` sends).
#[utoipa::path(
    post, path = "/api/v1/projects/{project}/runs", tag = "admin",
    params(("project" = String, Path, description = "Project name")),
    request_body(content = TriggerRequest, content_type = "application/json"),
    security(("admin_token" = [])),
    responses(
        (status = 202, description = "The run was queued (`status` = `queued`)", body = super::responses::Accepted),
        (status = 400, description = "The body is not `{\"ref\": \"refs/...\"}` (`malformed`)", body = super::responses::ApiError),
        (status = 401, description = "Missing or wrong admin token (`unauthorized`); nothing changed", body = super::responses::ApiError),
        (status = 404, description = "No such project (`unknown_project`)", body = super::responses::ApiError),
        (status = 413, description = "Body over 1 MiB (`too_large`)", body = super::responses::ApiError),
        (status = 422, description = "The ref cannot be resolved to a commit (`unresolvable`)", body = super::responses::ApiError),
        (status = 500, description = "The store failed", body = super::responses::ApiError),
    )
)]
pub(super) async fn trigger_run(
    State(state): State<AppState>,
    project: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        require_admin(&state, &headers)?;
        let project = from_path(project)?;
        let body = limited_body(body, state.config.file.http.read_timeout.0).await?;
        let request: TriggerRequest = serde_json::from_slice(&body)
            .map_err(|e| Refusal::malformed(format!("expected {{\"ref\": \"refs/...\"}}: {e}")))?;
        let project = state
            .config
            .project(&project)
            .ok_or_else(|| {
                Refusal::new(
                    StatusCode::NOT_FOUND,
                    "unknown_project",
                    format!("no project '{project}'"),
                )
            })?
            .clone();
        let event = crate::kernel::manual_event(&state, &project, &request.git_ref, Forge::Manual)
            .await
            .map_err(|e| {
                Refusal::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unresolvable",
                    e.to_string(),
                )
            })?;
        store_event(&state, &project.name, event).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

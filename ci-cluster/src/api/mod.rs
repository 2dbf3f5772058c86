//! The JSON API under `/api/v1`, its OpenAPI document and `/metrics`.
//!
//! Reads are public (reviewers follow the link on their change); admin
//! actions need the bearer admin token. Every refusal is the same JSON
//! shape as the webhooks' (`{"error": reason, "message": ...}`), including
//! malformed path and query parameters, so clients handle one error shape.
//!
//! Split by responsibility: `model` and `responses` (the wire types),
//! `read` (public reads), `admin` (cancel, re-run, manual run), `metrics`,
//! `doc` (the OpenAPI document).

mod admin;
mod doc;
pub mod metrics;
pub mod model;
mod read;
pub mod responses;

use std::sync::OnceLock;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use utoipa::OpenApi;

pub use admin::REASON_ADMIN_CANCEL;
pub use doc::ApiDoc;

use crate::kernel::AppState;
use crate::kernel::{Refusal, internal};
use crate::store::{Store, StoreError};

/// The API's routes, merged into the server's router by `serve::http`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/projects", get(read::projects))
        .route("/api/v1/projects/{project}/runs", post(admin::trigger_run))
        .route("/api/v1/runs", get(read::list_runs))
        .route("/api/v1/runs/{id}", get(read::get_run))
        .route("/api/v1/runs/{id}/jobs/{job}/log", get(read::job_log))
        .route("/api/v1/runs/{id}/cancel", post(admin::cancel))
        .route("/api/v1/runs/{id}/rerun", post(admin::rerun))
        .route("/api/v1/changes/{project}/{change}", get(read::change_runs))
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/metrics", get(metrics::metrics))
}

/// The OpenAPI document as JSON text.
pub fn openapi_text() -> &'static str {
    // Generated once: the document is static for a given binary.
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot serialise the OpenAPI document");
            String::from("{}")
        })
    })
}

async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_text()).into_response()
}

/// Runs a blocking store call off the async threads; a missing run is a
/// 404 `not_found`, anything else a 500 `internal` (details only in the log).
async fn store_call<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Refusal> {
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(StoreError::NotFound(what))) => {
            Err(Refusal::not_found(format!("{what} does not exist")))
        }
        Ok(Err(e)) => Err(internal(e)),
        Err(e) => Err(internal(e)),
    }
}

/// A path parameter, or a JSON `malformed` refusal instead of axum's plain-text one.
fn from_path<T>(value: Result<Path<T>, PathRejection>) -> Result<T, Refusal> {
    value
        .map(|Path(v)| v)
        .map_err(|e| Refusal::malformed(e.body_text()))
}

/// Query parameters, or a JSON `malformed` refusal instead of axum's plain-text one.
fn from_query<T>(value: Result<Query<T>, QueryRejection>) -> Result<T, Refusal> {
    value
        .map(|Query(v)| v)
        .map_err(|e| Refusal::malformed(e.body_text()))
}

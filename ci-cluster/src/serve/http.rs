//! The HTTP surface: forge webhooks and health, with the JSON API (`crate::api`) and the web UI
//! (`crate::web`) merged in. Refusals and the event path are the kernel's (`crate::kernel`).
//!
//! Every refusal is a JSON `{"error": reason, "message": ...}` and stores
//! nothing. An accepted event is committed to the store before the 2xx.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::event::Forge;
use crate::intake::{self, Intake, IntakeError};
use crate::kernel::{AppState, Refusal, limited_body, refuse_delivery, store_event};
use crate::secret::Secret;

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/hooks/github", post(github_hook))
        .route("/hooks/gitlab", post(gitlab_hook))
        .route("/hooks/gerrit", post(gerrit_hook))
        .merge(crate::api::routes())
        .merge(crate::web::routes())
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// The path every webhook shares: the size limit while reading, the forge's
/// secret, authentication and parsing (by `parse`), then the store.
async fn handle_hook(
    state: &AppState,
    forge: Forge,
    body: Body,
    parse: impl FnOnce(&Secret, &[u8]) -> Result<Intake, IntakeError>,
) -> Response {
    let result = async {
        let body = limited_body(body, state.config.file.http.read_timeout.0).await?;
        let configured = match forge {
            Forge::Github => state.config.github.as_ref(),
            Forge::Gitlab => state.config.gitlab.as_ref(),
            Forge::Gerrit => state.config.gerrit.as_ref(),
            Forge::Manual | Forge::Schedule => None,
        };
        let (secret, _) = configured.ok_or_else(|| {
            Refusal::new(
                StatusCode::NOT_FOUND,
                "not_configured",
                format!("{} is not configured", forge.as_str()),
            )
        })?;
        let intake = parse(secret, &body)?;
        accept(state, forge, intake).await
    }
    .await;
    result.unwrap_or_else(|refusal| refuse_delivery(state, refusal))
}

async fn github_hook(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    handle_hook(&state, Forge::Github, body, |secret, body| {
        intake::github::parse(&headers, body, secret)
    })
    .await
}

async fn gitlab_hook(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    handle_hook(&state, Forge::Gitlab, body, |token, body| {
        intake::gitlab::parse(&headers, body, token)
    })
    .await
}

async fn gerrit_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    let presented = intake::gerrit::presented_token(&headers, query.as_deref());
    handle_hook(&state, Forge::Gerrit, body, |secret, body| {
        intake::gerrit::parse(presented.as_deref(), body, secret)
    })
    .await
}

/// Stores an authenticated event (or says why it is ignored).
async fn accept(state: &AppState, forge: Forge, intake: Intake) -> Result<Response, Refusal> {
    let event = match intake {
        Intake::Ignored(why) => {
            return Ok((
                StatusCode::ACCEPTED,
                Json(json!({"status": "ignored", "reason": why})),
            )
                .into_response());
        }
        Intake::Event(event) => event,
    };
    let project = state
        .config
        .project_for(forge, &event.repository)
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::NOT_FOUND,
                "unknown_project",
                format!(
                    "no project serves {} repository '{}'",
                    forge.as_str(),
                    event.repository
                ),
            )
        })?
        .name
        .clone();
    store_event(state, &project, event).await
}

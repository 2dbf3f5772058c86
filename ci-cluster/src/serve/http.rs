//! The HTTP surface: forge webhooks and health, with the JSON API
//! (`crate::api`) merged in.
//!
//! Every refusal is a JSON `{"error": reason, "message": ...}` and stores
//! nothing. An accepted event is committed to the store before the 2xx.

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::state::AppState;
use crate::event::{Forge, ForgeEvent, Intent};
use crate::intake::{self, Intake, IntakeError};
use crate::secret::Secret;
use crate::store::Accepted;

/// Largest webhook or API body accepted; checked while reading, before parsing.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

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

/// A refusal: status, machine reason, human message.
pub struct Refusal {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

impl Refusal {
    /// A refusal with this status and machine reason.
    pub(crate) fn new(
        status: StatusCode,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Refusal {
            status,
            reason,
            message: message.into(),
        }
    }

    /// 404 `not_found`.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 400 `malformed`.
    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, "malformed", message)
    }
}

/// Answers a refused webhook delivery, counting it by reason for `/metrics`.
fn refuse_delivery(state: &AppState, refusal: Refusal) -> Response {
    state.metrics.intake_refused(refusal.reason);
    refusal.into_response()
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        tracing::info!(
            status = self.status.as_u16(),
            reason = self.reason,
            "refused"
        );
        (
            self.status,
            Json(json!({"error": self.reason, "message": self.message})),
        )
            .into_response()
    }
}

impl From<IntakeError> for Refusal {
    fn from(e: IntakeError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        Refusal::new(status, e.reason(), e.to_string())
    }
}

/// 500 `internal`; the details go to the server log only.
pub(crate) fn internal(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "internal error");
    Refusal::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; see the server log",
    )
}

/// Reads the body with the size limit applied while reading.
pub(crate) async fn limited_body(body: Body) -> Result<Bytes, Refusal> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body larger than {MAX_BODY_BYTES} bytes"),
            )
        })
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
        let body = limited_body(body).await?;
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

/// Commits the event (batched with concurrent ones, see `intake_writer`)
/// and only then answers.
pub(crate) async fn store_event(
    state: &AppState,
    project: &str,
    event: ForgeEvent,
) -> Result<Response, Refusal> {
    // What the answer and the log line need; the event itself moves to the writer.
    let (delivery, intent, git_ref) = (event.delivery.clone(), event.intent, event.git_ref.clone());
    let accepted = state
        .intake
        .accept(project.to_string(), event)
        .await
        .map_err(internal)?;
    match accepted {
        Accepted::Duplicate => Ok((
            StatusCode::OK,
            Json(json!({"status": "duplicate", "delivery": delivery})),
        )
            .into_response()),
        Accepted::Replayed { event_id } => {
            // Same answer as a redelivery: a replayer learns nothing more.
            tracing::warn!(project, first_event = event_id, delivery = %delivery,
                "replayed body: accepted before under another delivery id; nothing stored");
            Ok((
                StatusCode::OK,
                Json(json!({
                    "status": "duplicate",
                    "delivery": delivery,
                    "reason": "this body was accepted before under another delivery id",
                })),
            )
                .into_response())
        }
        Accepted::Ignored { event_id, reason } => {
            // Stored, acknowledged (so the forge does not retry), and nothing else.
            tracing::info!(project, event_id, intent = ?intent, git_ref = %git_ref, reason = %reason,
                "event ignored: older than what is known of its change, or the change is closed");
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"status": "ignored", "event": event_id, "reason": reason})),
            )
                .into_response())
        }
        Accepted::New {
            event_id,
            run,
            cancel_running,
        } => {
            for id in &cancel_running {
                state.cancel_local(*id);
            }
            if run.is_some() {
                state.runs_queued.notify_one();
            }
            tracing::info!(project, event_id, run = ?run, intent = ?intent, git_ref = %git_ref, "event accepted");
            let status = if intent == Intent::Run {
                "queued"
            } else {
                "cancelled"
            };
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"status": status, "event": event_id, "run": run, "cancelled": cancel_running})),
            )
                .into_response())
        }
    }
}

/// Checks `Authorization: Bearer <admin token>` in constant time.
pub fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(token) = &state.config.admin_token else {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "no admin token is configured",
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if token.matches(presented.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin bearer token is required",
        ))
    }
}

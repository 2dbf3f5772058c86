//! Refusals: every request the server turns away gets a JSON `{"error": reason, "message": ...}`
//! and stores nothing. Shared by the webhooks, the API and the web UI.

use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::state::AppState;
use crate::intake::IntakeError;

/// Largest webhook or API body accepted; checked while reading, before parsing.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

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
pub(crate) fn refuse_delivery(state: &AppState, refusal: Refusal) -> Response {
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

/// Reads the body with the size limit applied while reading, within `read_timeout` (a client
/// sending a byte a minute must not hold the request).
pub(crate) async fn limited_body(body: Body, read_timeout: Duration) -> Result<Bytes, Refusal> {
    match tokio::time::timeout(read_timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("body larger than {MAX_BODY_BYTES} bytes"),
        )),
        Err(_) => Err(Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the body did not arrive within {}",
                humantime::format_duration(read_timeout)
            ),
        )),
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

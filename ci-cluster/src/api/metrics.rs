//! `GET /metrics`: OpenMetrics text of what the store knows (runs by status, queue) and what
//! the server counted ([`crate::kernel::metrics::Metrics`]).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::kernel::AppState;
use crate::kernel::metrics::CONTENT_TYPE;

/// `GET /metrics`.
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let store = state.store.clone();
    let counts = match tokio::task::spawn_blocking(move || store.counts()).await {
        Ok(Ok(counts)) => counts,
        Ok(Err(e)) => return crate::kernel::internal(e).into_response(),
        Err(e) => return crate::kernel::internal(e).into_response(),
    };
    state.metrics.set_counts(&counts);
    match state.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

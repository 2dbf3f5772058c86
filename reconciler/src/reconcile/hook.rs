//! `POST /hooks/env`: the environment repository's forge says "something changed". The hook
//! carries no data (the reconciler fetches the configured URL itself) and is refused without
//! its bearer token, compared in constant time.

use std::sync::Arc;

use airlock_verify::secret::Secret;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::sync::Notify;

/// Largest hook body read (the body is ignored: the hook only says "look now").
const MAX_HOOK_BODY: usize = 64 * 1024;

#[derive(Clone)]
struct HookState {
    wake: Arc<Notify>,
    token: Option<Arc<Secret>>,
}

// The body is ignored, but taken as `Bytes` so the size limit applies (413) rather than a
// sender being able to stream without end into an unread request.
async fn hook(
    State(state): State<HookState>,
    headers: HeaderMap,
    _body: axum::body::Bytes,
) -> StatusCode {
    if let Some(token) = &state.token {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            return StatusCode::UNAUTHORIZED;
        }
    }
    state.wake.notify_one();
    StatusCode::ACCEPTED
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The hook router: `POST /hooks/env` wakes the loop. Public for tests.
pub fn hook_router(wake: Arc<Notify>, token: Option<Secret>) -> axum::Router {
    axum::Router::new()
        .route("/hooks/env", post(hook))
        .layer(DefaultBodyLimit::max(MAX_HOOK_BODY))
        .with_state(HookState {
            wake,
            token: token.map(Arc::new),
        })
}

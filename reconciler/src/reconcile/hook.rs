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

/// The hook's port may be reachable by more than the forge: the same bounds as the CI's port
/// (HTTP/1, one request per connection, headers within 30 s), 64 connections at once.
pub const HOOK_LIMITS: airlock_pipeline::http_server::HttpLimits =
    airlock_pipeline::http_server::HttpLimits {
        max_connections: 64,
        read_timeout: std::time::Duration::from_secs(30),
    };

/// Serves the hook on `listener` within `limits` until `stop`.
pub async fn serve_hook(
    listener: tokio::net::TcpListener,
    wake: Arc<Notify>,
    token: Option<Secret>,
    limits: airlock_pipeline::http_server::HttpLimits,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    airlock_pipeline::http_server::serve(listener, hook_router(wake, token), limits, stop).await
}

/// The hook router: `POST /hooks/env` wakes the loop.
pub fn hook_router(wake: Arc<Notify>, token: Option<Secret>) -> axum::Router {
    axum::Router::new()
        .route("/hooks/env", post(hook))
        .layer(DefaultBodyLimit::max(MAX_HOOK_BODY))
        .with_state(HookState {
            wake,
            token: token.map(Arc::new),
        })
}

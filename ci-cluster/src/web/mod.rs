//! The reviewer web UI: server-rendered pages (readable without JavaScript),
//! a live log tail over Server-Sent Events, output downloads.
//!
//! Everything shown comes from forge payloads, commit messages and job logs,
//! i.e. from whoever can push a change, so it is all escaped: maud escapes
//! every splice, and [`ansi`] escapes log text while turning colour codes into
//! classes. No page carries an inline script, inline style or event handler,
//! and every response carries a strict Content-Security-Policy (see
//! [`security_headers`]), so even a missed escape could not run script.
//!
//! Split by responsibility: `layout` (page shell, badges, formatting), `home`
//! (`/`), `runs` (`/runs`), `change` (`/changes/..`), `run` and `run_sections` (`/runs/{id}`),
//! `logs` (log rendering and raw logs), `dag` (the job graph as SVG), `live`
//! (SSE), `outputs` (downloads), `assets` (CSS and JS).

pub mod ansi;
mod assets;
mod change;
mod dag;
mod home;
mod layout;
mod live;
mod logs;
mod outputs;
mod run;
mod run_sections;
mod runs;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::kernel::AppState;
use crate::store::{Store, StoreError};

/// The Content-Security-Policy of every UI response: scripts and styles only
/// from this origin's files, no plugins, no framing, forms only to itself.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The UI's routes; merged into the server's router (`serve::http::router`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home::page))
        .route("/runs", get(runs::page))
        .route("/changes/{project}/{change}", get(change::page))
        .route("/runs/{id}", get(run::page))
        .route("/runs/{id}/live", get(live::stream))
        .route("/runs/{id}/jobs/{job}/log.txt", get(logs::raw))
        .route("/runs/{id}/outputs/{sha256}", get(outputs::download))
        .route("/assets/app.js", get(assets::script))
        .route("/assets/app.css", get(assets::style))
        .layer(map_response(security_headers))
}

/// Adds the CSP and its companions to a response (not replacing ones a
/// handler set on purpose).
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// A page that could not be shown: rendered as an HTML error page.
#[derive(Debug)]
pub struct WebError {
    status: StatusCode,
    message: String,
}

impl WebError {
    /// 404 with a message for people.
    pub fn not_found(message: impl Into<String>) -> Self {
        WebError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// 410: it existed and was removed on purpose (an expired output).
    pub fn gone(message: impl Into<String>) -> Self {
        WebError {
            status: StatusCode::GONE,
            message: message.into(),
        }
    }

    /// 400 with a message for people.
    pub fn bad_request(message: impl Into<String>) -> Self {
        WebError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 500; the cause goes to the server log, not to the browser.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "web UI: internal error");
        WebError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "Internal error; see the server log.".into(),
        }
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        WebError::internal(e)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = layout::page(
            title,
            layout::Nav::None,
            maud::html! {
                section.error-page {
                    h1 { (self.status.as_u16()) " " (title) }
                    p { (self.message) }
                    p { a href="/" { "Back to the projects" } }
                }
            },
        );
        (self.status, body).into_response()
    }
}

/// Runs a blocking store read off the async workers.
async fn read_store<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, WebError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(WebError::internal)?
        .map_err(WebError::from)
}

//! The OpenAPI document served at `/api/v1/openapi.json`, generated from the
//! handlers' `#[utoipa::path]` annotations and the `ToSchema` types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::responses::{Accepted, ApiError};
use super::{admin, read};

/// The API description; `ApiDoc::openapi()` builds it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Airlock CI cluster API",
        description = "CI results of the untrusted plane: projects, runs, jobs, logs and changes (public), \
                       admin actions (bearer admin token), forge webhooks, metrics. Every refusal is \
                       `{\"error\": reason, \"message\": ...}`. Times are milliseconds since the Unix epoch.",
    ),
    paths(
        read::projects,
        read::list_runs,
        read::get_run,
        read::job_log,
        read::change_runs,
        admin::cancel,
        admin::rerun,
        admin::trigger_run,
        openapi_json,
        metrics,
        healthz,
        github_hook,
        gitlab_hook,
        gerrit_hook,
    ),
    modifiers(&AdminToken),
    tags(
        (name = "runs", description = "Public CI results; no authentication"),
        (name = "admin", description = "Needs `Authorization: Bearer <admin token>`; without it: 401 and nothing changes"),
        (name = "webhooks", description = "Forge deliveries; authenticated before any JSON is parsed"),
        (name = "operations", description = "Health, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// Declares the `admin_token` bearer scheme the admin paths require.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token from the server configuration (`admin_token`)",
                    ))
                    .build(),
            ),
        );
    }
}

// The operations below are served outside this module (the webhooks and
// health check by `serve::http`, the document and metrics by `api::mod`);
// these bodiless functions only carry their description into the document.

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = serde_json::Value)))]
#[allow(dead_code)]
fn openapi_json() {}

/// Prometheus metrics: `airlock_runs{status}`, `airlock_queue_depth`,
/// `airlock_job_duration_seconds` (histogram), `airlock_intake_refusals_total{reason}`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text exposition", content_type = "application/openmetrics-text", body = String)))]
#[allow(dead_code)]
fn metrics() {}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The server is up", content_type = "text/plain", body = String)))]
#[allow(dead_code)]
fn healthz() {}

/// A GitHub webhook delivery: `push`, `pull_request`, `ping`; signed with
/// `X-Hub-Signature-256` over the raw body, de-duplicated on
/// `X-GitHub-Hook-ID` + `X-GitHub-Delivery` and on the sha256 of the signed
/// body (which the signature covers and those headers are not).
#[utoipa::path(post, path = "/hooks/github", tag = "webhooks",
    request_body(content = serde_json::Value, content_type = "application/json", description = "GitHub's payload, as sent"),
    params(
        ("X-Hub-Signature-256" = String, Header, description = "`sha256=` HMAC of the raw body with the webhook secret"),
        ("X-GitHub-Event" = String, Header, description = "Event name"),
        ("X-GitHub-Delivery" = String, Header, description = "Delivery id"),
    ),
    responses(
        (status = 200, description = "Duplicate: the same delivery id, or the same body under another one; nothing new was stored", body = Accepted),
        (status = 202, description = "Stored (`queued`, `cancelled`) or `ignored` (not acted on; or older than what is known of its change, or its change is closed: stored with the reason)", body = Accepted),
        (status = 400, description = "Malformed payload (`malformed`)", body = ApiError),
        (status = 401, description = "Bad signature (`unauthorized`)", body = ApiError),
        (status = 404, description = "No project serves the repository (`unknown_project`) or GitHub is not configured (`not_configured`)", body = ApiError),
        (status = 413, description = "Body over 1 MiB (`too_large`)", body = ApiError),
    ))]
#[allow(dead_code)]
fn github_hook() {}

/// A GitLab webhook delivery: `Push Hook`, `Tag Push Hook`, `Merge Request Hook`, `Note Hook`.
#[utoipa::path(post, path = "/hooks/gitlab", tag = "webhooks",
    request_body(content = serde_json::Value, content_type = "application/json", description = "GitLab's payload, as sent"),
    params(
        ("X-Gitlab-Token" = String, Header, description = "The configured webhook token"),
        ("X-Gitlab-Event" = String, Header, description = "Event name"),
    ),
    responses(
        (status = 200, description = "Duplicate: the same delivery id, or the same body under another one; nothing new was stored", body = Accepted),
        (status = 202, description = "Stored (`queued`, `cancelled`) or `ignored` (not acted on; or older than what is known of its change, or its change is closed: stored with the reason)", body = Accepted),
        (status = 400, description = "Malformed payload (`malformed`)", body = ApiError),
        (status = 401, description = "Wrong token (`unauthorized`)", body = ApiError),
        (status = 404, description = "No project serves the repository (`unknown_project`) or GitLab is not configured (`not_configured`)", body = ApiError),
        (status = 413, description = "Body over 1 MiB (`too_large`)", body = ApiError),
    ))]
#[allow(dead_code)]
fn gitlab_hook() {}

/// A Gerrit webhooks-plugin delivery: `patchset-created`, `ref-updated`,
/// `change-merged`, `change-abandoned`, `comment-added` (`recheck`).
#[utoipa::path(post, path = "/hooks/gerrit", tag = "webhooks",
    request_body(content = serde_json::Value, content_type = "application/json", description = "The webhooks plugin's event JSON"),
    params(
        ("Authorization" = Option<String>, Header, description = "`Bearer <webhook secret>`"),
        ("token" = Option<String>, Query, description = "The webhook secret, for senders that cannot set headers (ends up in access logs: prefer the header)"),
    ),
    responses(
        (status = 200, description = "Duplicate: the same delivery id, or the same body under another one; nothing new was stored", body = Accepted),
        (status = 202, description = "Stored (`queued`, `cancelled`) or `ignored` (not acted on; or older than what is known of its change, or its change is closed: stored with the reason)", body = Accepted),
        (status = 400, description = "Malformed payload (`malformed`)", body = ApiError),
        (status = 401, description = "Wrong or missing token (`unauthorized`)", body = ApiError),
        (status = 404, description = "No project serves the repository (`unknown_project`) or Gerrit is not configured (`not_configured`)", body = ApiError),
        (status = 413, description = "Body over 1 MiB (`too_large`)", body = ApiError),
    ))]
#[allow(dead_code)]
fn gerrit_hook() {}

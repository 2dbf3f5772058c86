//! A stand-in forge: an HTTP server on 127.0.0.1 that answers the three report APIs Airlock
//! calls (Gerrit Set Review, GitHub and GitLab commit statuses) the way the real servers do,
//! and records every request so a test can check what was sent.
//!
//! Outages are scripted with [`StandInForge::fail_next`]. The `stand-in-forge` binary runs the
//! same server for the demo and prints each request.
//!
//! Harness code: [`StandInForge::start`] panics if it cannot bind, like the other fixtures.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Largest request body read; a report is a few kilobytes.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Headers whose values are credentials: recorded (tests check them) but never printed.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "private-token",
    "proxy-authorization",
    "cookie",
];

/// One request as the stand-in received it.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `POST`, `GET`...
    pub method: String,
    /// Path as sent, still percent-encoded (`/a/changes/team%2Fapp~12/...`).
    pub path: String,
    /// Query string, without the `?`.
    pub query: Option<String>,
    /// Headers in arrival order, names lowercase.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// The status the stand-in answered.
    pub status: u16,
}

impl fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Credentials stay out of test failure output, like everywhere else in Airlock.
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if CREDENTIAL_HEADERS.contains(&name.as_str()) {
                    "[redacted]"
                } else {
                    value.as_str()
                };
                (name.as_str(), shown)
            })
            .collect();
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .field("status", &self.status)
            .finish()
    }
}

/// Which forge API a request addressed, with its path parameters percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForgeCall {
    /// `POST /a/changes/{change}/revisions/{revision}/review`.
    GerritReview {
        /// Change id (`12`, `team/app~12`).
        change: String,
        /// Revision id (commit, patch set number, `current`).
        revision: String,
    },
    /// `POST /repos/{owner}/{repo}/statuses/{sha}`.
    GithubStatus {
        /// Owner.
        owner: String,
        /// Repository name.
        repo: String,
        /// Commit.
        sha: String,
    },
    /// `POST /projects/{id}/statuses/{sha}`.
    GitlabStatus {
        /// Project id (numeric or URL-encoded path).
        project: String,
        /// Commit.
        sha: String,
    },
    /// Anything else.
    Other,
}

impl ForgeCall {
    /// Recognises `path` by its tail, so an API under a prefix (`/api/v3`, `/api/v4`, `/r`)
    /// is recognised too.
    pub fn parse(path: &str) -> ForgeCall {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let n = segments.len();
        let tail = |k: usize| if n >= k { &segments[n - k..] } else { &[][..] };
        if let ["a", "changes", change, "revisions", revision, "review"] = tail(6) {
            return ForgeCall::GerritReview {
                change: percent_decode(change),
                revision: percent_decode(revision),
            };
        }
        if let ["repos", owner, repo, "statuses", sha] = tail(5) {
            return ForgeCall::GithubStatus {
                owner: percent_decode(owner),
                repo: percent_decode(repo),
                sha: percent_decode(sha),
            };
        }
        if let ["projects", project, "statuses", sha] = tail(4) {
            return ForgeCall::GitlabStatus {
                project: percent_decode(project),
                sha: percent_decode(sha),
            };
        }
        ForgeCall::Other
    }
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The API this request addressed.
    pub fn call(&self) -> ForgeCall {
        ForgeCall::parse(&self.path)
    }

    /// One readable line, without credentials: `201 POST /repos/o/r/statuses/abc  github status success "3 jobs passed" (auth: bearer)`.
    pub fn summary_line(&self) -> String {
        let body = self.json().unwrap_or(Value::Null);
        let text = |key: &str| {
            body.get(key)
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned()
        };
        let what = match self.call() {
            ForgeCall::GerritReview { change, revision } => {
                let votes = body
                    .get("labels")
                    .and_then(Value::as_object)
                    .filter(|labels| !labels.is_empty())
                    .map(|labels| {
                        labels
                            .iter()
                            .map(|(label, vote)| format!("{label} {}", signed(vote)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_else(|| "no vote".to_owned());
                format!("gerrit review of change {change} revision {revision}: {votes}")
            }
            ForgeCall::GithubStatus { owner, repo, sha } => {
                format!(
                    "github status {owner}/{repo}@{}: {} \"{}\"",
                    short(&sha),
                    text("state"),
                    text("description")
                )
            }
            ForgeCall::GitlabStatus { project, sha } => {
                format!(
                    "gitlab status project {project}@{}: {} \"{}\"",
                    short(&sha),
                    text("state"),
                    text("description")
                )
            }
            ForgeCall::Other => "not a forge API this stand-in knows".to_owned(),
        };
        let auth = match (self.header("authorization"), self.header("private-token")) {
            (Some(value), _) => value.split(' ').next().unwrap_or("?").to_ascii_lowercase(),
            (None, Some(_)) => "private-token".to_owned(),
            (None, None) => "none".to_owned(),
        };
        let query = self
            .query
            .as_deref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        format!(
            "{} {} {}{query}  {what} (auth: {auth})",
            self.status, self.method, self.path
        )
    }
}

fn signed(vote: &Value) -> String {
    match vote.as_i64() {
        Some(v) if v > 0 => format!("+{v}"),
        Some(v) => v.to_string(),
        None => vote.to_string(),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// `%2F` → `/`; invalid escapes are kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Called with each request once it is recorded (the binary prints it).
pub type Observer = Arc<dyn Fn(&RecordedRequest) + Send + Sync>;

#[derive(Default)]
struct Recorder {
    requests: Vec<RecordedRequest>,
    /// Statuses to answer instead of the real behaviour, one per coming request.
    failures: VecDeque<u16>,
    observer: Option<Observer>,
}

struct Shared {
    recorder: Mutex<Recorder>,
    /// Number of requests recorded; `wait_for` sleeps on it.
    count: watch::Sender<usize>,
    /// Ids for created statuses.
    next_id: AtomicU64,
    /// `http://addr`, for the `url` fields of GitHub's answers.
    base_url: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Recorder> {
        // A test that panicked while holding the lock must not hide the recordings from others.
        self.recorder.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running stand-in. Dropping it stops the server.
pub struct StandInForge {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for StandInForge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StandInForge")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl StandInForge {
    /// Starts a stand-in on a free port of 127.0.0.1. Panics if it cannot bind (test harness).
    pub async fn start() -> StandInForge {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        StandInForge::bind(addr)
            .await
            .unwrap_or_else(|err| panic!("cannot start the stand-in forge on {addr}: {err}"))
    }

    /// Starts a stand-in listening on `addr` (port 0 picks a free one).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<StandInForge> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            recorder: Mutex::new(Recorder::default()),
            count: watch::Sender::new(0),
            next_id: AtomicU64::new(1),
            base_url: format!("http://{addr}"),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        let task = tokio::spawn(async move {
            let server =
                axum::serve(listener, app).with_graceful_shutdown(signal.cancelled_owned());
            if let Err(err) = server.await {
                eprintln!("stand-in forge on {addr} stopped: {err}");
            }
        });
        Ok(StandInForge {
            addr,
            shared,
            shutdown,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`, the base URL for every client (Gerrit base, GitHub and GitLab
    /// API base).
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Forgets the recorded requests (scripted failures stay).
    pub fn clear(&self) {
        self.shared.lock().requests.clear();
    }

    /// Answers the next `n` requests, whatever they are, with `status` (e.g. 503 to script an
    /// outage, 404 or 422 for a refusal). Adds to failures already scripted.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.shared
            .lock()
            .failures
            .extend(std::iter::repeat_n(status, n));
    }

    /// Calls `observer` with every request from now on, after it is recorded.
    pub fn on_request(&self, observer: impl Fn(&RecordedRequest) + Send + Sync + 'static) {
        self.shared.lock().observer = Some(Arc::new(observer));
    }

    /// Waits until `predicate` holds for the requests recorded so far and returns them; after
    /// `timeout`, an error listing what did arrive.
    pub async fn wait_for(
        &self,
        predicate: impl Fn(&[RecordedRequest]) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Vec<RecordedRequest>> {
        let mut count = self.shared.count.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Marks the current count seen before checking, so a request arriving between the
            // check and the wait still wakes us.
            let _seen = *count.borrow_and_update();
            let requests = self.requests();
            if predicate(&requests) {
                return Ok(requests);
            }
            if tokio::time::timeout_at(deadline, count.changed())
                .await
                .is_err()
            {
                let lines: Vec<String> =
                    requests.iter().map(RecordedRequest::summary_line).collect();
                anyhow::bail!(
                    "stand-in forge: condition not met after {timeout:?}; {} request(s) arrived:\n{}",
                    lines.len(),
                    lines.join("\n")
                );
            }
        }
    }
}

impl Drop for StandInForge {
    fn drop(&mut self) {
        // Graceful shutdown closes idle keep-alive connections; the abort covers the rest.
        self.shutdown.cancel();
        self.task.abort();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes.to_vec(),
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response(),
    };
    let mut recorded = RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        status: 0,
    };
    let scripted = shared.lock().failures.pop_front();
    let response = match scripted {
        Some(status) => scripted_failure(status),
        None => answer(&shared, &recorded),
    };
    recorded.status = response.status().as_u16();
    let observer = {
        let mut recorder = shared.lock();
        recorder.requests.push(recorded.clone());
        recorder.observer.clone()
    };
    shared.count.send_modify(|count| *count += 1);
    // Outside the lock: the observer may be slow (it prints) or call back into the forge.
    if let Some(observer) = observer {
        observer(&recorded);
    }
    response
}

fn scripted_failure(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let reason = status.canonical_reason().unwrap_or("scripted failure");
    (
        status,
        axum::Json(json!({ "message": reason, "stand_in": "scripted failure" })),
    )
        .into_response()
}

fn answer(shared: &Shared, request: &RecordedRequest) -> Response {
    let call = request.call();
    if call != ForgeCall::Other && request.method != "POST" {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            axum::Json(json!({ "message": "Method Not Allowed" })),
        )
            .into_response();
    }
    match call {
        ForgeCall::GerritReview { .. } => gerrit_review(request),
        ForgeCall::GithubStatus { owner, repo, sha } => {
            github_status(shared, request, &owner, &repo, &sha)
        }
        ForgeCall::GitlabStatus { sha, .. } => gitlab_status(shared, request, &sha),
        ForgeCall::Other => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "message": "Not Found" })),
        )
            .into_response(),
    }
}

/// Gerrit's answers are plain text on errors and `)]}'`-guarded JSON on success.
fn gerrit_text(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        format!("{text}\n"),
    )
        .into_response()
}

fn gerrit_review(request: &RecordedRequest) -> Response {
    // `/a/` means authenticated: Gerrit refuses it without credentials.
    let authorized = request
        .header("authorization")
        .and_then(|value| value.get(..6).zip(value.get(6..)))
        .is_some_and(|(scheme, credentials)| {
            scheme.eq_ignore_ascii_case("basic ") && !credentials.trim().is_empty()
        });
    if !authorized {
        return gerrit_text(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let Some(Value::Object(input)) = request.json() else {
        return gerrit_text(StatusCode::BAD_REQUEST, "Expected JSON object");
    };
    let labels = match input.get("labels") {
        None => serde_json::Map::new(),
        Some(Value::Object(labels)) => labels.clone(),
        Some(_) => return gerrit_text(StatusCode::BAD_REQUEST, "labels must be an object"),
    };
    // The stand-in's project has a Verified label from -1 to +1, like a typical CI setup.
    for (label, vote) in &labels {
        match (label.as_str(), vote.as_i64()) {
            ("Verified", Some(-1..=1)) => {}
            ("Verified", _) => {
                return gerrit_text(
                    StatusCode::BAD_REQUEST,
                    &format!("Applying label \"Verified\": {vote} is restricted"),
                );
            }
            _ => {
                return gerrit_text(
                    StatusCode::BAD_REQUEST,
                    &format!("label \"{label}\" is not a configured label"),
                );
            }
        }
    }
    let result = if labels.is_empty() {
        json!({})
    } else {
        json!({ "labels": labels })
    };
    let mut response = Response::new(Body::from(format!(")]}}'\n{result}\n")));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn github_status(
    shared: &Shared,
    request: &RecordedRequest,
    owner: &str,
    repo: &str,
    sha: &str,
) -> Response {
    let invalid = |field: &str, message: &str| {
        let body = json!({
            "message": "Validation Failed",
            "errors": [{ "resource": "Status", "field": field, "code": "custom", "message": message }],
            "documentation_url": "https://docs.github.com/rest/commits/statuses#create-a-commit-status",
        });
        (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
    };
    let Some(Value::Object(input)) = request.json() else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "message": "Problems parsing JSON" })),
        )
            .into_response();
    };
    let text = |key: &str| input.get(key).and_then(Value::as_str);
    let state = text("state").unwrap_or_default();
    if !matches!(state, "error" | "failure" | "pending" | "success") {
        return invalid("state", "state is not included in the list");
    }
    let description = text("description");
    if description.is_some_and(|d| d.chars().count() > 140) {
        return invalid(
            "description",
            "description is too long (maximum is 140 characters)",
        );
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let body = json!({
        "url": format!("{}/repos/{owner}/{repo}/statuses/{sha}", shared.base_url),
        "id": id,
        "node_id": format!("SC_stand_in_{id}"),
        "state": state,
        "description": description,
        "target_url": text("target_url"),
        "context": text("context").unwrap_or("default"),
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "creator": { "login": "airlock-ci", "type": "Bot" },
    });
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

fn gitlab_status(shared: &Shared, request: &RecordedRequest, sha: &str) -> Response {
    let Some(Value::Object(input)) = request.json() else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "400 Bad request - invalid JSON" })),
        )
            .into_response();
    };
    let text = |key: &str| input.get(key).and_then(Value::as_str);
    let state = text("state").unwrap_or_default();
    if !matches!(
        state,
        "pending" | "running" | "success" | "failed" | "canceled" | "skipped"
    ) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "state does not have a valid value" })),
        )
            .into_response();
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let finished = matches!(state, "success" | "failed" | "canceled" | "skipped");
    let body = json!({
        "id": id,
        "sha": sha,
        "ref": text("ref"),
        "status": state,
        "name": text("name").unwrap_or("default"),
        "target_url": text("target_url"),
        "description": text("description"),
        "created_at": "2024-01-01T00:00:00.000Z",
        "started_at": "2024-01-01T00:00:00.000Z",
        "finished_at": if finished { Value::from("2024-01-01T00:00:01.000Z") } else { Value::Null },
        "allow_failure": false,
        "coverage": null,
        "author": { "username": "airlock-ci", "name": "Airlock" },
    });
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(url: &str, headers: &[(&str, &str)], body: Value) -> (u16, String) {
        let mut request = reqwest::Client::new().post(url).json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request reaches the stand-in");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    #[tokio::test]
    async fn gerrit_review_needs_basic_auth_and_answers_with_the_xssi_prefix() {
        let forge = StandInForge::start().await;
        let url = format!(
            "{}/a/changes/team%2Fapp~12/revisions/abc123/review",
            forge.url()
        );
        let input =
            json!({ "message": "ok", "labels": { "Verified": 1 }, "tag": "autogenerated:airlock" });

        let (status, text) = post(&url, &[], input.clone()).await;
        assert_eq!(status, 401, "{text}");

        let (status, text) = post(
            &url,
            &[("authorization", "Basic YWlybG9jazpzZWNyZXQ=")],
            input,
        )
        .await;
        assert_eq!(status, 200, "{text}");
        let json = text.strip_prefix(")]}'\n").expect("XSSI guard line");
        let result: Value = serde_json::from_str(json).expect("JSON after the guard");
        assert_eq!(result, json!({ "labels": { "Verified": 1 } }));

        let requests = forge.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].status, 401);
        assert_eq!(
            requests[1].path,
            "/a/changes/team%2Fapp~12/revisions/abc123/review"
        );
        assert_eq!(
            requests[1].call(),
            ForgeCall::GerritReview {
                change: "team/app~12".into(),
                revision: "abc123".into()
            }
        );
        assert_eq!(requests[1].json().expect("json")["labels"]["Verified"], 1);
    }

    #[tokio::test]
    async fn gerrit_message_only_review_echoes_no_labels_and_bad_votes_are_refused() {
        let forge = StandInForge::start().await;
        let url = format!("{}/a/changes/12/revisions/current/review", forge.url());
        let auth = [("authorization", "Basic dTpw")];
        let (status, text) = post(&url, &auth, json!({ "message": "cancelled" })).await;
        assert_eq!((status, text.as_str()), (200, ")]}'\n{}\n"));
        let (status, _) = post(&url, &auth, json!({ "labels": { "Verified": 2 } })).await;
        assert_eq!(status, 400);
        let (status, _) = post(&url, &auth, json!({ "labels": { "Code-Review": 2 } })).await;
        assert_eq!(status, 400);
    }

    #[tokio::test]
    async fn github_and_gitlab_statuses_are_created_and_validated() {
        let forge = StandInForge::start().await;
        let github = format!("{}/repos/octo/app/statuses/{}", forge.url(), "a".repeat(40));
        let (status, text) = post(
            &github,
            &[],
            json!({ "state": "success", "context": "airlock" }),
        )
        .await;
        assert_eq!(status, 201, "{text}");
        let created: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            (created["state"].as_str(), created["context"].as_str()),
            (Some("success"), Some("airlock"))
        );
        let (status, _) = post(&github, &[], json!({ "state": "passed" })).await;
        assert_eq!(status, 422);
        let (status, _) = post(
            &github,
            &[],
            json!({ "state": "success", "description": "x".repeat(141) }),
        )
        .await;
        assert_eq!(status, 422);

        // Under an API prefix, as GitLab's `/api/v4` base puts it.
        let gitlab = format!(
            "{}/api/v4/projects/7/statuses/{}",
            forge.url(),
            "b".repeat(40)
        );
        let (status, text) = post(
            &gitlab,
            &[("private-token", "t")],
            json!({ "state": "running", "name": "airlock" }),
        )
        .await;
        assert_eq!(status, 201, "{text}");
        let (status, _) = post(&gitlab, &[], json!({ "state": "pending-ish" })).await;
        assert_eq!(status, 400);
        assert_eq!(
            forge.requests()[3].call(),
            ForgeCall::GitlabStatus {
                project: "7".into(),
                sha: "b".repeat(40)
            }
        );
    }

    #[tokio::test]
    async fn fail_next_scripts_an_outage_then_recovers() {
        let forge = StandInForge::start().await;
        forge.fail_next(2, 503);
        let url = format!("{}/projects/7/statuses/{}", forge.url(), "c".repeat(40));
        let body = json!({ "state": "success", "name": "airlock" });
        assert_eq!(post(&url, &[], body.clone()).await.0, 503);
        assert_eq!(post(&url, &[], body.clone()).await.0, 503);
        assert_eq!(post(&url, &[], body).await.0, 201);
        let statuses: Vec<u16> = forge.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [503, 503, 201]);
    }

    #[tokio::test]
    async fn unknown_paths_are_404_and_recorded() {
        let forge = StandInForge::start().await;
        let (status, _) = post(&format!("{}/nothing/here", forge.url()), &[], json!({})).await;
        assert_eq!(status, 404);
        assert_eq!(forge.requests()[0].call(), ForgeCall::Other);
    }

    #[tokio::test]
    async fn wait_for_wakes_on_arrival_and_times_out_with_what_arrived() {
        let forge = StandInForge::start().await;
        let url = format!("{}/repos/o/r/statuses/{}", forge.url(), "d".repeat(40));
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            post(&url, &[], json!({ "state": "pending" })).await
        });
        let got = forge
            .wait_for(|r| r.len() == 1, Duration::from_secs(10))
            .await
            .expect("arrives");
        assert_eq!(got[0].json().expect("json")["state"], "pending");
        sender.await.expect("sender");

        let err = forge
            .wait_for(|r| r.len() == 2, Duration::from_millis(100))
            .await
            .expect_err("times out");
        assert!(
            err.to_string()
                .contains("github status o/r@dddddddddddd: pending"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn debug_and_summary_never_show_credentials() {
        let forge = StandInForge::start().await;
        let url = format!("{}/a/changes/1/revisions/1/review", forge.url());
        post(
            &url,
            &[("authorization", "Basic c2VjcmV0LXZhbHVl")],
            json!({ "labels": { "Verified": -1 } }),
        )
        .await;
        let request = &forge.requests()[0];
        assert_eq!(
            request.header("Authorization"),
            Some("Basic c2VjcmV0LXZhbHVl")
        );
        let shown = format!("{request:?} {}", request.summary_line());
        assert!(!shown.contains("c2VjcmV0LXZhbHVl"), "{shown}");
        assert!(
            request.summary_line().contains("Verified -1 (auth: basic)"),
            "{}",
            request.summary_line()
        );
    }

    #[tokio::test]
    async fn drop_stops_the_server() {
        let forge = StandInForge::start().await;
        let url = forge.url();
        drop(forge);
        // The listener closes once the server task is gone.
        let mut refused = false;
        for _ in 0..50 {
            if reqwest::Client::new()
                .post(format!("{url}/x"))
                .send()
                .await
                .is_err()
            {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused, "stand-in still answering after drop");
    }

    #[test]
    fn percent_decoding_keeps_invalid_escapes() {
        assert_eq!(percent_decode("team%2Fapp~12"), "team/app~12");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}

//! GitHub: a commit status with context `airlock`, pending when a run starts and its verdict at
//! the end, linking to the run.

use std::fmt;

use reqwest::Url;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde::Serialize;

use super::{
    ReportBody, ReportError, ReportStatus, check_sha, endpoint, http_client, parse_base_url,
    secret_header, send, status_error, summary,
};
use crate::secret::Secret;

/// The status context: one line per CI system in a pull request's checks.
pub const STATUS_CONTEXT: &str = "airlock";

/// The REST API version this client is written against.
const API_VERSION: &str = "2022-11-28";

/// Posts commit statuses through GitHub's REST API.
#[derive(Clone)]
pub struct GithubClient {
    base: Url,
    token: Option<Secret>,
    http: reqwest::Client,
}

impl fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token prints as `[redacted]`.
        f.debug_struct("GithubClient")
            .field("base", &self.base.as_str())
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// The body of `POST /repos/{owner}/{repo}/statuses/{sha}`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct StatusInput {
    /// `pending`, `success`, `failure` or `error`.
    pub state: &'static str,
    /// The run page.
    pub target_url: String,
    /// At most 140 characters.
    pub description: String,
    /// [`STATUS_CONTEXT`].
    pub context: &'static str,
}

/// GitHub's state for a report: a cancelled run is an `error` (GitHub has no cancelled state,
/// and `failure` would blame the change).
pub fn github_state(status: ReportStatus) -> &'static str {
    match status {
        ReportStatus::Pending => "pending",
        ReportStatus::Passed => "success",
        ReportStatus::Failed => "failure",
        ReportStatus::Error | ReportStatus::Cancelled => "error",
    }
}

/// The status body for `body`.
pub fn status_input(body: &ReportBody) -> StatusInput {
    StatusInput {
        state: github_state(body.status),
        target_url: body.url.clone(),
        description: summary(body),
        context: STATUS_CONTEXT,
    }
}

impl GithubClient {
    /// A client for the REST API at `api_url` (`https://api.github.com`, or
    /// `https://host/api/v3` for GitHub Enterprise Server). Without a token requests are
    /// anonymous, which only a stand-in forge accepts.
    pub fn new(api_url: &str, token: Option<Secret>) -> Result<Self, ReportError> {
        Ok(GithubClient {
            base: parse_base_url("github", api_url)?,
            token,
            http: http_client()?,
        })
    }

    /// Sets the `airlock` status of commit `sha` in `repo` (`owner/name`) from `body`.
    pub async fn status(
        &self,
        repo: &str,
        sha: &str,
        body: &ReportBody,
    ) -> Result<(), ReportError> {
        let (owner, name) = repo
            .split_once('/')
            .filter(|(owner, name)| !owner.is_empty() && !name.is_empty() && !name.contains('/'))
            .ok_or_else(|| {
                ReportError::Permanent(format!(
                    "github: bad target: repository {repo:?} is not owner/name"
                ))
            })?;
        check_sha("github", sha)?;
        let url = endpoint(
            "github",
            &self.base,
            &["repos", owner, name, "statuses", sha],
        )?;
        let mut request = self
            .http
            .post(url)
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .json(&status_input(body));
        if let Some(token) = &self.token {
            let value = secret_header("github", &format!("Bearer {}", token.expose()))?;
            request = request.header(AUTHORIZATION, value);
        }
        let answer = send("github", request).await?;
        if !answer.status.is_success() {
            return Err(status_error(
                "github",
                &format!("status of {repo}@{sha}"),
                &answer,
            ));
        }
        tracing::debug!(
            repo,
            sha,
            run_id = body.run_id,
            state = github_state(body.status),
            "github status posted"
        );
        Ok(())
    }
}

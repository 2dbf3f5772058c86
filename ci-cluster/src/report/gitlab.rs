//! GitLab: a commit status named `airlock`, running when a run starts and its verdict at the
//! end, linking to the run.

use std::fmt;

use reqwest::Url;
use serde::Serialize;

use super::{
    ReportBody, ReportError, ReportStatus, check_sha, endpoint, http_client, parse_base_url,
    secret_header, send, status_error, summary,
};
use crate::secret::Secret;

/// The status name: one line per CI system in a merge request's pipeline widget.
pub const STATUS_NAME: &str = "airlock";

/// Posts commit statuses through GitLab's REST API (v4).
#[derive(Clone)]
pub struct GitlabClient {
    base: Url,
    token: Option<Secret>,
    http: reqwest::Client,
}

impl fmt::Debug for GitlabClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token prints as `[redacted]`.
        f.debug_struct("GitlabClient")
            .field("base", &self.base.as_str())
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// The body of `POST /projects/{id}/statuses/{sha}`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct StatusInput {
    /// `running`, `success`, `failed` or `canceled`.
    pub state: &'static str,
    /// The run page.
    pub target_url: String,
    /// One-line summary.
    pub description: String,
    /// [`STATUS_NAME`].
    pub name: &'static str,
}

/// GitLab's state for a report. A started run is `running` (GitLab refuses `pending` →
/// `success` without `running` in between); GitLab has no `error`, so an error is `failed`.
pub fn gitlab_state(status: ReportStatus) -> &'static str {
    match status {
        ReportStatus::Pending => "running",
        ReportStatus::Passed => "success",
        ReportStatus::Failed | ReportStatus::Error => "failed",
        ReportStatus::Cancelled => "canceled",
    }
}

/// The status body for `body`.
pub fn status_input(body: &ReportBody) -> StatusInput {
    StatusInput {
        state: gitlab_state(body.status),
        target_url: body.url.clone(),
        description: summary(body),
        name: STATUS_NAME,
    }
}

/// GitLab answers 400 `Cannot transition status via :run from :running` when an unfinished
/// status is already in the state sent: typically a retry whose first attempt landed but whose
/// answer was lost. Retrying cannot help and the forge already shows that state, so it counts
/// as delivered.
fn is_redundant_transition(answer: &super::Answer) -> bool {
    answer.status == reqwest::StatusCode::BAD_REQUEST
        && answer.text().contains("Cannot transition status")
}

impl GitlabClient {
    /// A client for the REST API at `api_url` (e.g. `https://gitlab.example.org/api/v4`).
    /// Without a token requests are anonymous, which only a stand-in forge accepts.
    pub fn new(api_url: &str, token: Option<Secret>) -> Result<Self, ReportError> {
        Ok(GitlabClient {
            base: parse_base_url("gitlab", api_url)?,
            token,
            http: http_client()?,
        })
    }

    /// Sets the `airlock` status of commit `sha` in project `project_id` from `body`.
    pub async fn status(
        &self,
        project_id: u64,
        sha: &str,
        body: &ReportBody,
    ) -> Result<(), ReportError> {
        check_sha("gitlab", sha)?;
        let id = project_id.to_string();
        let url = endpoint("gitlab", &self.base, &["projects", &id, "statuses", sha])?;
        let mut request = self.http.post(url).json(&status_input(body));
        if let Some(token) = &self.token {
            let value = secret_header("gitlab", token.expose())?;
            request = request.header("PRIVATE-TOKEN", value);
        }
        let answer = send("gitlab", request).await?;
        if is_redundant_transition(&answer) {
            tracing::info!(
                project_id,
                sha,
                run_id = body.run_id,
                state = gitlab_state(body.status),
                "gitlab already has this status or a later one"
            );
            return Ok(());
        }
        if !answer.status.is_success() {
            return Err(status_error(
                "gitlab",
                &format!("status of project {project_id}@{sha}"),
                &answer,
            ));
        }
        tracing::debug!(
            project_id,
            sha,
            run_id = body.run_id,
            state = gitlab_state(body.status),
            "gitlab status posted"
        );
        Ok(())
    }
}

//! The one shape every forge event is normalised to before it is stored.

use airlock_pipeline::spec::EventKind;
use serde::{Deserialize, Serialize};

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Forge {
    /// Gerrit webhooks plugin.
    Gerrit,
    /// GitHub webhook.
    Github,
    /// GitLab webhook.
    Gitlab,
    /// `ci-cluster trigger` or `POST /api/v1/projects/{p}/runs`.
    Manual,
    /// A cron schedule from the config.
    Schedule,
}

impl Forge {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::Gerrit => "gerrit",
            Forge::Github => "github",
            Forge::Gitlab => "gitlab",
            Forge::Manual => "manual",
            Forge::Schedule => "schedule",
        }
    }
}

/// What the CI does with an accepted event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Run the pipeline at `commit`.
    Run,
    /// Cancel every queued or running run of `change` (abandoned, closed).
    CancelChange,
}

/// What an event does to a change's life, when it does something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// Reopened (GitHub `reopened`, GitLab `reopen`) or restored (Gerrit `change-restored`).
    Reopened,
    /// Abandoned (Gerrit).
    Abandoned,
    /// Closed without being merged (GitHub, GitLab).
    Closed,
    /// Merged (Gerrit `change-merged`, GitHub `closed` with `merged`, GitLab `merge`).
    Merged,
    /// Deleted (Gerrit).
    Deleted,
}

impl Transition {
    /// Lowercase name, as stored and shown (`abandoned`, `merged`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Reopened => "reopened",
            Transition::Abandoned => "abandoned",
            Transition::Closed => "closed",
            Transition::Merged => "merged",
            Transition::Deleted => "deleted",
        }
    }
}

/// A change under review: Gerrit change + patchset, GitHub pull request, GitLab merge request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// Gerrit change number, PR number or MR iid, as text.
    pub number: String,
    /// Gerrit patchset number; for GitHub and GitLab 0 (a new head supersedes by commit).
    pub patchset: u32,
    /// Link to the change on the forge, if the payload had one.
    pub url: Option<String>,
    /// When the forge says the event happened, in milliseconds since the Unix
    /// epoch (Gerrit `eventCreatedOn`, GitHub `pull_request.updated_at`,
    /// GitLab `object_attributes.updated_at`). Orders the events of one change
    /// that arrive out of order; absent when the payload has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_ms: Option<u64>,
    /// What the event does to the change: reopens it, or closes it and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<Transition>,
}

/// Where the verdict goes back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "forge", rename_all = "lowercase")]
pub enum ReportTarget {
    /// `POST /a/changes/{change}/revisions/{revision}/review`.
    Gerrit {
        /// Change number (or `project~number`).
        change: String,
        /// Revision (commit id or patchset number).
        revision: String,
    },
    /// `POST /repos/{repo}/statuses/{sha}`.
    Github {
        /// `owner/name`.
        repo: String,
        /// Commit.
        sha: String,
    },
    /// `POST /projects/{project_id}/statuses/{sha}`.
    Gitlab {
        /// Numeric project id.
        project_id: u64,
        /// Commit.
        sha: String,
    },
    /// Nothing to report to (manual and scheduled runs).
    None,
}

/// An authenticated, normalised forge event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgeEvent {
    /// Source.
    pub forge: Forge,
    /// The repository as the forge names it (Gerrit project, GitHub `owner/name`,
    /// GitLab `path_with_namespace`); matched against the configured projects.
    pub repository: String,
    /// De-duplication key, unique per forge: a replay with the same key creates nothing.
    pub delivery: String,
    /// Lowercase hex sha256 of the exact body bytes intake authenticated (what
    /// GitHub's HMAC covers; GitLab's and Gerrit's tokens cover nothing). Unique
    /// per forge like `delivery`: the same body under new delivery headers, which
    /// no signature covers, is a replay and creates nothing. `None` for manual
    /// and scheduled runs, which have no body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_sha256: Option<String>,
    /// Run or cancel.
    pub intent: Intent,
    /// Kind for `when.events` (change, push, tag...).
    pub kind: EventKind,
    /// Full ref: `refs/changes/34/1234/2`, `refs/heads/main`, `refs/pull/5/head`, `refs/tags/v1`.
    pub git_ref: String,
    /// 40-hex commit id to run (empty for `CancelChange`).
    pub commit: String,
    /// The change, for change events.
    pub change: Option<Change>,
    /// Commit subject or change title, for people.
    pub title: String,
    /// Who caused it.
    pub author: String,
    /// Where to report.
    pub report: ReportTarget,
}

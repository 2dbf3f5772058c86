//! GitLab webhooks: `X-Gitlab-Token` check, then push, tag push, merge
//! request and note (comment) deliveries.
//!
//! Mapping:
//! - `Push Hook` / `Tag Push Hook`: `refs/heads/*` → [`EventKind::Push`],
//!   `refs/tags/*` → [`EventKind::Tag`] (decided by the ref, which always
//!   agrees with the hook name); `after` all zeros (deletion) is ignored.
//!   The commit is `checkout_sha` (for an annotated tag the commit, not the
//!   tag object), else `after`.
//! - `Merge Request Hook`: `open`/`reopen` → run; `update` → run only when
//!   `object_attributes.oldrev` is present (new commits were pushed; other
//!   updates are title, label or description edits); `close` and `merge` →
//!   cancel the change's runs and mark it closed (the merge commit itself
//!   arrives as a push); every other action → ignored.
//!   `object_attributes.updated_at` (for a note, its `created_at`) orders a
//!   merge request's events, so that the store can ignore one that arrives
//!   after a newer one or after the close.
//! - `Note Hook` on an open merge request whose text, trimmed, is exactly
//!   `recheck` → run the merge request's last commit; any other note → ignored.
//! - Every other hook (pipeline, job, issue...) → ignored.
//!
//! GitLab signs nothing: the token is a shared secret sent verbatim, so
//! anyone who sees one request can forge others. Serve this over TLS only.

use axum::http::HeaderMap;
use serde_json::Value;

use super::{
    Intake, IntakeError, branch_or_tag, check_commit, check_ref, check_repository, display_text,
    get, id_header, is_zero_id, malformed, name_for_message, opt_str, opt_time_ms, opt_uint,
    parse_json, req_commit, req_str, req_uint, require_configured, sha256_hex, single_header,
    unauthorized,
};
use crate::event::{Change, Forge, ForgeEvent, Intent, ReportTarget, Transition};
use crate::secret::Secret;
use airlock_pipeline::spec::EventKind;

/// Header carrying the hook's secret token.
pub const TOKEN_HEADER: &str = "x-gitlab-token";

/// Authenticates and parses one GitLab webhook delivery.
///
/// The delivery key is `X-Gitlab-Event-UUID` (GitLab 14.8+), else
/// `Idempotency-Key` (17.4+, stable across retries), else `sha256:` + the
/// hex sha256 of the body. The token covers none of these headers (nor the
/// body), so the event also carries the body's digest, which the store keeps
/// unique: the same body under new ids is a replay.
pub fn parse(headers: &HeaderMap, body: &[u8], token: &Secret) -> Result<Intake, IntakeError> {
    verify_token(headers, token)?;

    let event = single_header(headers, "x-gitlab-event")
        .map_err(malformed)?
        .ok_or_else(|| malformed("missing header X-Gitlab-Event"))?;
    let delivery = match id_header(headers, "x-gitlab-event-uuid")? {
        Some(uuid) => uuid.to_string(),
        None => match id_header(headers, "idempotency-key")? {
            Some(key) => key.to_string(),
            None => format!("sha256:{}", sha256_hex(body)),
        },
    };

    let payload = parse_json(body)?;
    let intake = match event {
        "Push Hook" | "Tag Push Hook" => push(&payload, delivery)?,
        "Merge Request Hook" => merge_request(&payload, delivery)?,
        "Note Hook" => note(&payload, delivery)?,
        other => Intake::Ignored(format!(
            "event '{}' is not acted on",
            name_for_message(other)
        )),
    };
    Ok(intake.with_body_digest(body))
}

/// Checks `X-Gitlab-Token` against the configured token in constant time
/// (for equal lengths: `subtle` returns early on a length mismatch, which
/// reveals the token's length, not its content).
pub fn verify_token(headers: &HeaderMap, token: &Secret) -> Result<(), IntakeError> {
    require_configured(token)?;
    let presented = single_header(headers, TOKEN_HEADER)
        .map_err(unauthorized)?
        .ok_or_else(|| {
            unauthorized(
                "missing header X-Gitlab-Token (is a secret token set on the GitLab hook?)",
            )
        })?;
    if token.matches(presented.as_bytes()) {
        Ok(())
    } else {
        Err(unauthorized("X-Gitlab-Token does not match"))
    }
}

/// The numeric project id statuses are posted to: top-level `project_id`
/// (push, note), else `project.id` (the target project of a merge request),
/// else `object_attributes.target_project_id`.
fn project_id(p: &Value) -> Result<u64, IntakeError> {
    for path in [
        "project_id",
        "project.id",
        "object_attributes.target_project_id",
    ] {
        if let Some(id) = opt_uint(p, path)? {
            return Ok(id);
        }
    }
    Err(malformed("missing field `project_id` (nor `project.id`)"))
}

/// `project.path_with_namespace`, validated.
fn repository(p: &Value) -> Result<String, IntakeError> {
    let name = req_str(p, "project.path_with_namespace")?;
    check_repository(name, "project.path_with_namespace")?;
    Ok(name.to_string())
}

/// Push Hook and Tag Push Hook.
fn push(p: &Value, delivery: String) -> Result<Intake, IntakeError> {
    let git_ref = req_str(p, "ref")?;
    let after = req_str(p, "after")?;
    if is_zero_id(after) {
        return Ok(Intake::Ignored("ref deleted".into()));
    }
    check_ref(git_ref, "ref")?;
    let Some(kind) = branch_or_tag(git_ref) else {
        return Ok(Intake::Ignored(
            "push to a ref that is neither a branch nor a tag".into(),
        ));
    };
    let (commit, field) = match opt_str(p, "checkout_sha") {
        Some(sha) => (sha, "checkout_sha"),
        None => (after, "after"),
    };
    check_commit(commit, field)?;
    // The subject of the pushed head commit if it is among the (at most 20) listed
    // commits, else a tag's annotation message, else nothing.
    let subject = get(p, "commits")
        .and_then(Value::as_array)
        .and_then(|commits| {
            commits
                .iter()
                .find(|c| c.get("id").and_then(Value::as_str) == Some(commit))
        })
        .and_then(|c| c.get("message").and_then(Value::as_str))
        .or_else(|| opt_str(p, "message"))
        .unwrap_or("");
    let author = opt_str(p, "user_name")
        .or_else(|| opt_str(p, "user_username"))
        .unwrap_or("");
    Ok(Intake::Event(ForgeEvent {
        forge: Forge::Gitlab,
        repository: repository(p)?,
        delivery,
        body_sha256: None,
        intent: Intent::Run,
        kind,
        git_ref: git_ref.to_string(),
        commit: commit.to_string(),
        change: None,
        title: display_text(subject),
        author: display_text(author),
        report: ReportTarget::Gitlab {
            project_id: project_id(p)?,
            sha: commit.to_string(),
        },
    }))
}

/// Merge Request Hook.
fn merge_request(p: &Value, delivery: String) -> Result<Intake, IntakeError> {
    let action = req_str(p, "object_attributes.action")?;
    let (intent, transition) = match action {
        "open" => (Intent::Run, None),
        "reopen" => (Intent::Run, Some(Transition::Reopened)),
        "update" if get(p, "object_attributes.oldrev").is_some() => (Intent::Run, None),
        "update" => {
            return Ok(Intake::Ignored(
                "merge request updated without new commits".into(),
            ));
        }
        "close" => (Intent::CancelChange, Some(Transition::Closed)),
        // The merge commit arrives as a push; this closes the request.
        "merge" => (Intent::CancelChange, Some(Transition::Merged)),
        other => {
            return Ok(Intake::Ignored(format!(
                "merge request action '{}' is not acted on",
                name_for_message(other)
            )));
        }
    };
    let iid = req_uint(p, "object_attributes.iid")?;
    let commit = req_commit(p, "object_attributes.last_commit.id")?;
    let author = mr_author(p);
    let url = opt_str(p, "object_attributes.url").map(str::to_string);
    let title = opt_str(p, "object_attributes.title").unwrap_or("");
    change_event(
        p,
        delivery,
        MergeRequest {
            intent,
            iid,
            commit,
            url,
            title,
            author,
            event_ms: opt_time_ms(p, "object_attributes.updated_at"),
            transition,
        },
    )
}

/// Note Hook: only `recheck` on an open merge request does something.
fn note(p: &Value, delivery: String) -> Result<Intake, IntakeError> {
    if opt_str(p, "object_attributes.noteable_type") != Some("MergeRequest") {
        return Ok(Intake::Ignored(
            "only notes on merge requests are acted on".into(),
        ));
    }
    if opt_str(p, "object_attributes.note").map(str::trim) != Some("recheck") {
        return Ok(Intake::Ignored("note is not `recheck`".into()));
    }
    // A recheck on a closed or merged request would report on a change nobody reviews any more.
    if let Some(state @ ("closed" | "merged" | "locked")) = opt_str(p, "merge_request.state") {
        return Ok(Intake::Ignored(format!("merge request is {state}")));
    }
    let iid = req_uint(p, "merge_request.iid")?;
    let commit = req_commit(p, "merge_request.last_commit.id")?;
    // Older payloads have no `merge_request.url`; the note's URL is the request's plus `#note_N`.
    let url = opt_str(p, "merge_request.url")
        .or_else(|| opt_str(p, "object_attributes.url").and_then(|u| u.split('#').next()))
        .map(str::to_string);
    let author = mr_author(p);
    let title = opt_str(p, "merge_request.title").unwrap_or("");
    change_event(
        p,
        delivery,
        MergeRequest {
            intent: Intent::Run,
            iid,
            commit,
            url,
            title,
            author,
            // When the note was written.
            event_ms: opt_time_ms(p, "object_attributes.created_at")
                .or_else(|| opt_time_ms(p, "object_attributes.updated_at")),
            transition: None,
        },
    )
}

/// Who acted on a merge request (or wrote the note): the username, else the display name.
fn mr_author(p: &Value) -> &str {
    opt_str(p, "user.username")
        .or_else(|| opt_str(p, "user.name"))
        .unwrap_or("")
}

/// What a merge request or a note on one says about the change.
struct MergeRequest<'a> {
    intent: Intent,
    iid: u64,
    commit: String,
    url: Option<String>,
    title: &'a str,
    author: &'a str,
    event_ms: Option<u64>,
    transition: Option<Transition>,
}

/// The event for merge request `iid` at `commit`, on `refs/merge-requests/{iid}/head`
/// (the ref GitLab keeps in the target project, also for requests from forks).
fn change_event(p: &Value, delivery: String, mr: MergeRequest<'_>) -> Result<Intake, IntakeError> {
    let MergeRequest {
        intent,
        iid,
        commit,
        url,
        title,
        author,
        event_ms,
        transition,
    } = mr;
    let git_ref = format!("refs/merge-requests/{iid}/head");
    check_ref(&git_ref, "iid")?;
    Ok(Intake::Event(ForgeEvent {
        forge: Forge::Gitlab,
        repository: repository(p)?,
        delivery,
        body_sha256: None,
        intent,
        kind: EventKind::Change,
        git_ref,
        commit: commit.clone(),
        change: Some(Change {
            number: iid.to_string(),
            patchset: 0,
            url,
            event_ms,
            transition,
        }),
        title: display_text(title),
        author: display_text(author),
        report: ReportTarget::Gitlab {
            project_id: project_id(p)?,
            sha: commit,
        },
    }))
}

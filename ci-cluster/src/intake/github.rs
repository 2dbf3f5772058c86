//! GitHub webhooks: `X-Hub-Signature-256` HMAC check, then `push` and
//! `pull_request` deliveries.
//!
//! Mapping:
//! - `ping` and every event other than `push` and `pull_request`: ignored.
//!   (`issue_comment` carries no head commit, so a comment command would need
//!   an API call; intake makes none.)
//! - `push` to `refs/heads/*` → [`EventKind::Push`], to `refs/tags/*` →
//!   [`EventKind::Tag`]; a deletion (`deleted: true` or `after` all zeros) and
//!   any other ref are ignored.
//! - `pull_request` `opened`/`synchronize`/`reopened` → run the head commit as
//!   a change on `refs/pull/{n}/head`; `closed` (merged or not) → cancel the
//!   change's runs (a merge arrives as a `push`); other actions are ignored.
//!   `pull_request.updated_at` orders a pull request's events, so that the
//!   store can ignore one that arrives after a newer one (or after the close).

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{
    Intake, IntakeError, branch_or_tag, check_commit, check_ref, check_repository, display_text,
    get, id_header, is_zero_id, malformed, name_for_message, opt_str, opt_time_ms, parse_json,
    req_commit, req_str, req_uint, require_configured, single_header, unauthorized,
};
use crate::event::{Change, Forge, ForgeEvent, Intent, ReportTarget, Transition};
use crate::secret::Secret;
use airlock_pipeline::spec::EventKind;

/// Header with `sha256=` + hex HMAC-SHA256 of the raw body, keyed by the hook secret.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Authenticates and parses one GitHub webhook delivery.
///
/// The signature is checked over the exact received bytes before anything
/// else is looked at. The delivery key is `{X-GitHub-Hook-ID}:{X-GitHub-Delivery}`
/// (`-` for a missing hook id): GitHub's delivery GUID identifies the event and
/// is shared by every hook subscribed to it, and a redelivery repeats it. The
/// signature covers neither header, so the event also carries the digest of
/// the signed body, which the store keeps unique too.
pub fn parse(headers: &HeaderMap, body: &[u8], secret: &Secret) -> Result<Intake, IntakeError> {
    verify_signature(headers, body, secret)?;

    let event = single_header(headers, "x-github-event")
        .map_err(malformed)?
        .ok_or_else(|| malformed("missing header X-GitHub-Event"))?;
    let guid = id_header(headers, "x-github-delivery")?
        .ok_or_else(|| malformed("missing header X-GitHub-Delivery"))?;
    let hook = id_header(headers, "x-github-hook-id")?.unwrap_or("-");
    let delivery = format!("{hook}:{guid}");

    // Parsed for every event, ignored ones included, so a broken body is
    // always reported the same way.
    let payload = parse_json(body)?;
    let intake = match event {
        "ping" => Intake::Ignored("ping: the hook is set up; nothing to run".into()),
        "push" => push(&payload, delivery)?,
        "pull_request" => pull_request(&payload, delivery)?,
        other => Intake::Ignored(format!(
            "event '{}' is not acted on",
            name_for_message(other)
        )),
    };
    Ok(intake.with_body_digest(body))
}

/// Checks `X-Hub-Signature-256` against HMAC-SHA256(secret, body) in constant
/// time. A missing or malformed header is refused like a wrong one.
pub fn verify_signature(
    headers: &HeaderMap,
    body: &[u8],
    secret: &Secret,
) -> Result<(), IntakeError> {
    require_configured(secret)?;
    let header = single_header(headers, SIGNATURE_HEADER)
        .map_err(unauthorized)?
        .ok_or_else(|| {
            unauthorized("missing header X-Hub-Signature-256 (is a secret set on the GitHub hook?)")
        })?;
    let presented = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .filter(|bytes| bytes.len() == 32)
        .ok_or_else(|| {
            unauthorized("header X-Hub-Signature-256 is not `sha256=` followed by 64 hex digits")
        })?;
    // HMAC accepts keys of any length, so this cannot fail; mapped rather than unwrapped.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| unauthorized("the webhook secret cannot be used as an HMAC key"))?;
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&presented)
        .map_err(|_| unauthorized("X-Hub-Signature-256 does not match the body"))
}

/// `push`: a branch or tag moved.
fn push(p: &Value, delivery: String) -> Result<Intake, IntakeError> {
    let git_ref = req_str(p, "ref")?;
    let after = req_str(p, "after")?;
    if get(p, "deleted").and_then(Value::as_bool) == Some(true) || is_zero_id(after) {
        return Ok(Intake::Ignored("ref deleted".into()));
    }
    check_ref(git_ref, "ref")?;
    let Some(kind) = branch_or_tag(git_ref) else {
        return Ok(Intake::Ignored(
            "push to a ref that is neither a branch nor a tag".into(),
        ));
    };
    check_commit(after, "after")?;
    // For an annotated tag `after` is the tag object, not a commit; `head_commit`
    // is the commit it points to, which is what is checked out and reported on.
    // For a lightweight tag and for branches the two are the same.
    let commit = match (kind, opt_str(p, "head_commit.id")) {
        (EventKind::Tag, Some(id)) => {
            check_commit(id, "head_commit.id")?;
            id.to_string()
        }
        _ => after.to_string(),
    };
    let repository = req_str(p, "repository.full_name")?;
    check_repository(repository, "repository.full_name")?;
    let author = opt_str(p, "pusher.name")
        .or_else(|| opt_str(p, "head_commit.author.username"))
        .or_else(|| opt_str(p, "head_commit.author.name"))
        .unwrap_or("");
    Ok(Intake::Event(ForgeEvent {
        forge: Forge::Github,
        repository: repository.to_string(),
        delivery,
        body_sha256: None,
        intent: Intent::Run,
        kind,
        git_ref: git_ref.to_string(),
        commit: commit.clone(),
        change: None,
        title: display_text(opt_str(p, "head_commit.message").unwrap_or("")),
        author: display_text(author),
        report: ReportTarget::Github {
            repo: repository.to_string(),
            sha: commit,
        },
    }))
}

/// `pull_request`: a change under review was opened, updated or closed.
fn pull_request(p: &Value, delivery: String) -> Result<Intake, IntakeError> {
    let action = req_str(p, "action")?;
    let (intent, transition) = match action {
        "opened" | "synchronize" => (Intent::Run, None),
        "reopened" => (Intent::Run, Some(Transition::Reopened)),
        "closed" if get(p, "pull_request.merged").and_then(Value::as_bool) == Some(true) => {
            (Intent::CancelChange, Some(Transition::Merged))
        }
        "closed" => (Intent::CancelChange, Some(Transition::Closed)),
        other => {
            return Ok(Intake::Ignored(format!(
                "pull_request action '{}' is not acted on",
                name_for_message(other)
            )));
        }
    };
    let number = match get(p, "pull_request.number") {
        Some(_) => req_uint(p, "pull_request.number")?,
        None => req_uint(p, "number")?,
    };
    let sha = req_commit(p, "pull_request.head.sha")?;
    // The base repository: the one the hook is on and the status goes to, also for PRs from forks.
    let repository = req_str(p, "repository.full_name")?;
    check_repository(repository, "repository.full_name")?;
    let git_ref = format!("refs/pull/{number}/head");
    check_ref(&git_ref, "pull_request.number")?;
    Ok(Intake::Event(ForgeEvent {
        forge: Forge::Github,
        repository: repository.to_string(),
        delivery,
        body_sha256: None,
        intent,
        kind: EventKind::Change,
        git_ref,
        commit: sha.clone(),
        change: Some(Change {
            number: number.to_string(),
            patchset: 0,
            url: opt_str(p, "pull_request.html_url").map(str::to_string),
            // Every action updates it, so it orders the events of one pull request.
            event_ms: opt_time_ms(p, "pull_request.updated_at"),
            transition,
        }),
        title: display_text(opt_str(p, "pull_request.title").unwrap_or("")),
        author: display_text(opt_str(p, "pull_request.user.login").unwrap_or("")),
        report: ReportTarget::Github {
            repo: repository.to_string(),
            sha,
        },
    }))
}

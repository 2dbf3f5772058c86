//! Gerrit events (webhooks plugin, or the same JSON from stream-events /
//! events-log): shared-token check, then the event's `type`.
//!
//! The webhooks plugin defines no signature header, so a Gerrit delivery is
//! authenticated by a shared token, presented as `Authorization: Bearer <t>`
//! (a reverse proxy or a plugin configuration that can add headers) or as the
//! `token` query parameter of the configured URL (a secret URL: it shows up
//! in access logs, so prefer the header where the setup allows it).
//!
//! Mapping:
//! - `patchset-created` → run the new patchset (`patchSet.ref` / `patchSet.revision`).
//! - `comment-added` whose cover message, once Gerrit's leading `Patch Set N: <votes>`
//!   line(s), `(N comments)` lines and blank lines are removed, is exactly
//!   `recheck` → run the patchset **the comment was made on** (the event's
//!   `patchSet`; the store ignores it when a newer patchset is known); any
//!   other comment, or a comment on a merged or abandoned change, is ignored.
//! - `change-restored` → run the event's patchset again, like a reopened pull
//!   request (the runs were cancelled when it was abandoned).
//! - `change-abandoned`, `change-deleted` and `change-merged` → cancel the
//!   change's runs and mark it closed (a merged commit arrives as `ref-updated`).
//!
//! `patchSet.number` and `eventCreatedOn` order a change's events, so that
//! the store can ignore one that arrives after a newer patchset or after the
//! change was closed.
//! - `ref-updated` on `refs/heads/*` → [`EventKind::Push`], on `refs/tags/*` →
//!   [`EventKind::Tag`] (short names such as `master` from old servers mean
//!   `refs/heads/master`); deletions and every other ref (`refs/changes/*`,
//!   `refs/meta/*`) are ignored. Nothing is reported back for these.
//! - Every other type (there are more with every release) → ignored.
//!
//! Numbers are accepted as JSON numbers or strings: old servers send `"654"`.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use serde_json::Value;

use super::{
    Intake, IntakeError, branch_or_tag, check_commit, check_ref, check_repository, display_text,
    get, is_zero_id, malformed, name_for_message, opt_str, opt_uint, parse_json, req_commit,
    req_str, req_uint, require_configured, sha256_hex, unauthorized,
};
use crate::event::{Change, Forge, ForgeEvent, Intent, ReportTarget, Transition};
use crate::secret::Secret;
use airlock_pipeline::spec::EventKind;

/// The token a Gerrit delivery presents: the `Authorization: Bearer <t>`
/// header, else the `token` query parameter (percent-decoded). `None` when
/// neither is there or the value is empty.
pub fn presented_token(headers: &HeaderMap, query: Option<&str>) -> Option<Vec<u8>> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty());
    if let Some(token) = bearer {
        return Some(token.as_bytes().to_vec());
    }
    query?
        .split('&')
        .find_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name) == b"token").then(|| percent_decode(value))
        })
        .filter(|token| !token.is_empty())
}

/// `application/x-www-form-urlencoded` decoding of one query component: `+` is
/// a space, `%XX` a byte; a `%` not followed by two hex digits stays as it is.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Authenticates and parses one Gerrit event.
///
/// `presented_token` is what [`presented_token`] found on the request; it must
/// equal the secret (constant-time comparison). The delivery key is
/// `{type}:{change or ref}:{patchset or newRev}:{eventCreatedOn}:{first 16 hex of sha256(body)}`:
/// Gerrit sends no delivery id, and the plugin's retries repeat the body, so
/// an identical replay dedupes while two different events never collide.
pub fn parse(
    presented_token: Option<&[u8]>,
    body: &[u8],
    secret: &Secret,
) -> Result<Intake, IntakeError> {
    require_configured(secret)?;
    let presented = presented_token.ok_or_else(|| {
        unauthorized("no token presented (Authorization: Bearer, or ?token= in the URL)")
    })?;
    if !secret.matches(presented) {
        return Err(unauthorized("the presented token does not match"));
    }

    let p = parse_json(body)?;
    let kind = req_str(&p, "type")?;
    let key = DeliveryKey { kind, body };
    let intake = match kind {
        "patchset-created" => patchset_event(
            &p,
            &key,
            &["uploader", "patchSet.uploader", "change.owner"],
            None,
        ),
        "comment-added" => {
            if !is_recheck(opt_str(&p, "comment").unwrap_or("")) {
                return Ok(Intake::Ignored("comment is not `recheck`".into()));
            }
            if change_is_closed(&p) {
                return Ok(Intake::Ignored(
                    "recheck on a merged or abandoned change".into(),
                ));
            }
            patchset_event(
                &p,
                &key,
                &["author", "patchSet.uploader", "change.owner"],
                None,
            )
        }
        "change-restored" => patchset_event(
            &p,
            &key,
            &["restorer", "patchSet.uploader", "change.owner"],
            Some(Transition::Reopened),
        ),
        "change-abandoned" => cancel_event(&p, &key, "abandoner", Transition::Abandoned),
        "change-deleted" => cancel_event(&p, &key, "deleter", Transition::Deleted),
        // The merged commit arrives as ref-updated; this closes the change.
        "change-merged" => cancel_event(&p, &key, "submitter", Transition::Merged),
        "ref-updated" => ref_updated(&p, &key),
        other => Ok(Intake::Ignored(format!(
            "event '{}' is not acted on",
            name_for_message(other)
        ))),
    }?;
    Ok(intake.with_body_digest(body))
}

/// What the delivery key is built from besides the event's own coordinates.
struct DeliveryKey<'a> {
    /// The event `type`.
    kind: &'a str,
    /// The raw body, hashed into the key.
    body: &'a [u8],
}

impl DeliveryKey<'_> {
    /// `{type}:{what}:{which}:{eventCreatedOn or -}:{16 hex of sha256(body)}`.
    fn build(&self, p: &Value, what: &str, which: &str) -> String {
        // A missing or odd timestamp only makes the key less readable; the hash keeps it unique.
        let created = opt_uint(p, "eventCreatedOn")
            .ok()
            .flatten()
            .map_or_else(|| "-".to_string(), |t| t.to_string());
        let hash = sha256_hex(self.body);
        format!("{}:{what}:{which}:{created}:{}", self.kind, &hash[..16])
    }
}

/// `name`, else `username`, else `email` of the first account object found
/// at `paths` (any of them may be missing).
fn account(p: &Value, paths: &[&str]) -> String {
    paths
        .iter()
        .find_map(|path| {
            ["name", "username", "email"]
                .iter()
                .find_map(|field| opt_str(p, &format!("{path}.{field}")))
        })
        .map(display_text)
        .unwrap_or_default()
}

/// `change.project`, else the top-level `project` newer servers add.
fn project(p: &Value) -> Result<String, IntakeError> {
    let (name, field) = match opt_str(p, "change.project") {
        Some(name) => (name, "change.project"),
        None => (
            req_str(p, "project").map_err(|_| malformed("missing field `change.project`"))?,
            "project",
        ),
    };
    check_repository(name, field)?;
    Ok(name.to_string())
}

/// `change.number` (a number or a decimal string).
fn change_number(p: &Value) -> Result<u64, IntakeError> {
    req_uint(p, "change.number")
}

/// A patchset number, which must fit the event's `u32`.
fn patchset_number(p: &Value) -> Result<Option<u32>, IntakeError> {
    opt_uint(p, "patchSet.number")?
        .map(|n| u32::try_from(n).map_err(|_| malformed("field `patchSet.number` is too large")))
        .transpose()
}

/// `patchSet.ref`, else the ref Gerrit would give it:
/// `refs/changes/<last two digits>/<change>/<patchset>`.
fn patchset_ref(p: &Value, change: u64, patchset: u32) -> Result<String, IntakeError> {
    match opt_str(p, "patchSet.ref") {
        Some(r) => {
            check_ref(r, "patchSet.ref")?;
            Ok(r.to_string())
        }
        None => Ok(format!(
            "refs/changes/{:02}/{change}/{patchset}",
            change % 100
        )),
    }
}

/// A merged or abandoned change: `change.status`, or `change.open: false`.
fn change_is_closed(p: &Value) -> bool {
    matches!(opt_str(p, "change.status"), Some("MERGED" | "ABANDONED"))
        || get(p, "change.open").and_then(Value::as_bool) == Some(false)
}

/// `eventCreatedOn` (seconds) in milliseconds: orders the events of one change.
fn event_ms(p: &Value) -> Option<u64> {
    opt_uint(p, "eventCreatedOn")
        .ok()
        .flatten()
        .and_then(|s| s.checked_mul(1000))
}

/// Run the event's patchset (patchset-created, recheck, restore).
fn patchset_event(
    p: &Value,
    key: &DeliveryKey<'_>,
    who: &[&str],
    transition: Option<Transition>,
) -> Result<Intake, IntakeError> {
    let number = change_number(p)?;
    let patchset =
        patchset_number(p)?.ok_or_else(|| malformed("missing field `patchSet.number`"))?;
    let commit = req_commit(p, "patchSet.revision")?;
    if is_zero_id(&commit) {
        return Err(malformed("field `patchSet.revision` is the null object id"));
    }
    let git_ref = patchset_ref(p, number, patchset)?;
    Ok(Intake::Event(ForgeEvent {
        forge: Forge::Gerrit,
        repository: project(p)?,
        delivery: key.build(p, &number.to_string(), &patchset.to_string()),
        body_sha256: None,
        intent: Intent::Run,
        kind: EventKind::Change,
        git_ref,
        commit: commit.clone(),
        change: Some(Change {
            number: number.to_string(),
            patchset,
            url: opt_str(p, "change.url").map(str::to_string),
            event_ms: event_ms(p),
            transition,
        }),
        title: display_text(opt_str(p, "change.subject").unwrap_or("")),
        author: account(p, who),
        // The exact revision tested, so a vote never lands on a newer patchset.
        report: ReportTarget::Gerrit {
            change: number.to_string(),
            revision: commit,
        },
    }))
}

/// Cancel the change's runs (abandoned, deleted, merged). Only the change
/// number is required: the patchset may be absent (`change-deleted` has
/// none), and a cancel applies to every patchset of the change anyway.
fn cancel_event(
    p: &Value,
    key: &DeliveryKey<'_>,
    who: &str,
    transition: Transition,
) -> Result<Intake, IntakeError> {
    let number = change_number(p)?;
    let patchset = patchset_number(p)?;
    let commit = match opt_str(p, "patchSet.revision") {
        Some(rev) => {
            check_commit(rev, "patchSet.revision")?;
            rev.to_string()
        }
        None => String::new(),
    };
    // Old events-log lines carry an all-zero revision: nothing to report on.
    let commit = if is_zero_id(&commit) {
        String::new()
    } else {
        commit
    };
    // Without a patchset the ref names the change itself (`refs/changes/NN/N`).
    let git_ref = match patchset {
        Some(ps) => patchset_ref(p, number, ps)?,
        None => format!("refs/changes/{:02}/{number}", number % 100),
    };
    let report = if commit.is_empty() {
        ReportTarget::None
    } else {
        ReportTarget::Gerrit {
            change: number.to_string(),
            revision: commit.clone(),
        }
    };
    Ok(Intake::Event(ForgeEvent {
        forge: Forge::Gerrit,
        repository: project(p)?,
        delivery: key.build(
            p,
            &number.to_string(),
            &patchset.map_or_else(|| "-".to_string(), |ps| ps.to_string()),
        ),
        body_sha256: None,
        intent: Intent::CancelChange,
        kind: EventKind::Change,
        git_ref,
        commit,
        change: Some(Change {
            number: number.to_string(),
            patchset: patchset.unwrap_or(0),
            url: opt_str(p, "change.url").map(str::to_string),
            event_ms: event_ms(p),
            transition: Some(transition),
        }),
        title: display_text(opt_str(p, "change.subject").unwrap_or("")),
        author: account(p, &[who, "change.owner"]),
        report,
    }))
}

/// `ref-updated`: a branch or tag moved (direct push or a submitted change).
fn ref_updated(p: &Value, key: &DeliveryKey<'_>) -> Result<Intake, IntakeError> {
    let new_rev = req_str(p, "refUpdate.newRev")?;
    if is_zero_id(new_rev) {
        return Ok(Intake::Ignored("ref deleted".into()));
    }
    let name = req_str(p, "refUpdate.refName")?;
    // Old servers send the short branch name (`master`); tags always came in full.
    let git_ref = if name.starts_with("refs/") {
        name.to_string()
    } else {
        format!("refs/heads/{name}")
    };
    check_ref(&git_ref, "refUpdate.refName")?;
    let Some(kind) = branch_or_tag(&git_ref) else {
        return Ok(Intake::Ignored(
            "ref-updated on a ref that is neither a branch nor a tag".into(),
        ));
    };
    check_commit(new_rev, "refUpdate.newRev")?;
    let repository = req_str(p, "refUpdate.project")?;
    check_repository(repository, "refUpdate.project")?;
    Ok(Intake::Event(ForgeEvent {
        forge: Forge::Gerrit,
        repository: repository.to_string(),
        delivery: key.build(p, &git_ref, new_rev),
        body_sha256: None,
        intent: Intent::Run,
        kind,
        git_ref,
        // For an annotated tag this is the tag object: the event carries nothing
        // else, and checkout peels it to the commit.
        commit: new_rev.to_string(),
        change: None,
        title: String::new(),
        author: account(p, &["submitter"]),
        // Gerrit has no place for a verdict on a branch or tag; it is shown in Airlock only.
        report: ReportTarget::None,
    }))
}

/// True when a comment-added cover message asks for a recheck: after Gerrit's
/// own leading lines (`Patch Set 3: Code-Review+1`, `(2 comments)`) and blank
/// lines, what the person wrote is exactly `recheck`.
fn is_recheck(comment: &str) -> bool {
    let mut written = comment
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .skip_while(|line| is_patch_set_line(line) || is_comment_count_line(line));
    written.next() == Some("recheck") && written.next().is_none()
}

/// `Patch Set <digits>:` followed by vote text (or nothing).
fn is_patch_set_line(line: &str) -> bool {
    line.strip_prefix("Patch Set ")
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `(1 comment)` / `(12 comments)`: Gerrit's count of inline comments.
fn is_comment_count_line(line: &str) -> bool {
    line.strip_prefix('(')
        .and_then(|rest| {
            rest.strip_suffix(" comment)")
                .or_else(|| rest.strip_suffix(" comments)"))
        })
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

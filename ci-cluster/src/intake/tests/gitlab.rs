//! GitLab intake tests.

use axum::http::{HeaderMap, HeaderValue};
use serde_json::Value;

use super::{Expect, assert_unauthorized, check, error, event, fixture, fixture_json};
use crate::event::{Change, Forge, Intent, ReportTarget, Transition};
use crate::intake::{Intake, IntakeError, gitlab};
use crate::secret::Secret;
use airlock_pipeline::spec::EventKind;

pub(super) const TOKEN: &str = "test-gitlab-webhook-token";

pub(super) const PUSH: &str = "Push Hook";
const TAG: &str = "Tag Push Hook";
pub(super) const MR: &str = "Merge Request Hook";
pub(super) const NOTE: &str = "Note Hook";

/// Every GitLab fixture, the `X-Gitlab-Event` it is delivered with, and the outcome.
pub(super) const FIXTURES: &[(&str, &str, Expect)] = &[
    (
        "gitlab/docs/merge_request.json",
        MR,
        Expect::Run(EventKind::Change),
    ),
    (
        "gitlab/docs/note_commit.json",
        NOTE,
        Expect::Ignored("only notes on merge requests"),
    ),
    (
        "gitlab/docs/note_merge_request.json",
        NOTE,
        Expect::Ignored("note is not `recheck`"),
    ),
    (
        "gitlab/docs/pipeline.json",
        "Pipeline Hook",
        Expect::Ignored("event 'Pipeline Hook' is not acted on"),
    ),
    ("gitlab/docs/push.json", PUSH, Expect::Run(EventKind::Push)),
    (
        "gitlab/docs/tag_push.json",
        TAG,
        Expect::Run(EventKind::Tag),
    ),
    (
        "gitlab/go-gitlab/job.json",
        "Job Hook",
        Expect::Ignored("event 'Job Hook' is not acted on"),
    ),
    (
        "gitlab/go-gitlab/merge_request.json",
        MR,
        Expect::Run(EventKind::Change),
    ),
    (
        "gitlab/go-gitlab/note_commit.json",
        NOTE,
        Expect::Ignored("only notes on merge requests"),
    ),
    (
        "gitlab/go-gitlab/note_merge_request.json",
        NOTE,
        Expect::Ignored("note is not `recheck`"),
    ),
    (
        "gitlab/go-gitlab/pipeline.json",
        "Pipeline Hook",
        Expect::Ignored("Pipeline Hook"),
    ),
    (
        "gitlab/go-gitlab/push.json",
        PUSH,
        Expect::Run(EventKind::Push),
    ),
    (
        "gitlab/go-gitlab/tag_push.json",
        TAG,
        Expect::Run(EventKind::Tag),
    ),
    (
        "gitlab/go-scm/branch_create.json",
        PUSH,
        Expect::Run(EventKind::Push),
    ),
    (
        "gitlab/go-scm/branch_delete.json",
        PUSH,
        Expect::Ignored("ref deleted"),
    ),
    (
        "gitlab/go-scm/merge_request_comment_create.json",
        NOTE,
        Expect::Ignored("note is not `recheck`"),
    ),
    (
        "gitlab/go-scm/pipeline_hook.json",
        "Pipeline Hook",
        Expect::Ignored("Pipeline Hook"),
    ),
    ("gitlab/go-scm/pull_request_close.json", MR, Expect::Cancel),
    (
        "gitlab/go-scm/pull_request_create.json",
        MR,
        Expect::Run(EventKind::Change),
    ),
    ("gitlab/go-scm/pull_request_merge.json", MR, Expect::Cancel),
    (
        "gitlab/go-scm/pull_request_reopen.json",
        MR,
        Expect::Run(EventKind::Change),
    ),
    (
        "gitlab/go-scm/push.json",
        PUSH,
        Expect::Run(EventKind::Push),
    ),
    (
        "gitlab/go-scm/push_merge.json",
        PUSH,
        Expect::Run(EventKind::Push),
    ),
    (
        "gitlab/go-scm/tag_create.json",
        TAG,
        Expect::Run(EventKind::Tag),
    ),
    (
        "gitlab/go-scm/tag_delete.json",
        TAG,
        Expect::Ignored("ref deleted"),
    ),
];

/// The headers GitLab sends, with `token` and an event UUID.
pub(super) fn headers(event: &str, token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "x-gitlab-event",
        HeaderValue::from_str(event).expect("header"),
    );
    h.insert(
        "x-gitlab-token",
        HeaderValue::from_str(token).expect("header"),
    );
    h.insert(
        "x-gitlab-event-uuid",
        HeaderValue::from_static("13792a34-cac6-4fda-95a8-c58e00a3954e"),
    );
    h.insert(
        "x-gitlab-instance",
        HeaderValue::from_static("https://gitlab.example.com"),
    );
    h
}

/// Parses `body` delivered as `event` with the right token.
pub(super) fn deliver(event: &str, body: &[u8]) -> Result<Intake, IntakeError> {
    gitlab::parse(&headers(event, TOKEN), body, &Secret::new(TOKEN))
}

/// Parses an edited payload.
fn deliver_json(event: &str, v: &Value) -> Result<Intake, IntakeError> {
    deliver(event, &serde_json::to_vec(v).expect("json"))
}

#[test]
fn intake_gitlab_every_fixture_gives_the_expected_outcome() {
    for (rel, event, expect) in FIXTURES {
        check(rel, deliver(event, &fixture(rel)), *expect);
    }
}

#[test]
fn intake_gitlab_push_to_branch_runs_checkout_sha() {
    let e = event(deliver(PUSH, &fixture("gitlab/docs/push.json")));
    assert_eq!(e.forge, Forge::Gitlab);
    assert_eq!(e.repository, "mike/diaspora");
    assert_eq!(e.delivery, "13792a34-cac6-4fda-95a8-c58e00a3954e");
    assert_eq!((e.intent, e.kind), (Intent::Run, EventKind::Push));
    assert_eq!(e.git_ref, "refs/heads/master");
    assert_eq!(e.commit, "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
    assert_eq!(e.change, None);
    assert_eq!(e.title, "fixed readme");
    assert_eq!(e.author, "John Smith");
    assert_eq!(
        e.report,
        ReportTarget::Gitlab {
            project_id: 15,
            sha: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7".into()
        }
    );

    // A merge pushed to the branch: the merge commit is the head.
    let m = event(deliver(PUSH, &fixture("gitlab/go-scm/push_merge.json")));
    assert_eq!(m.commit, "78a76ee6b4992a6baf64c59fc4c44c7323d60438");
    assert_eq!(m.title, "Merge branch 'feature' into 'master'");
    assert_eq!(
        m.report,
        ReportTarget::Gitlab {
            project_id: 4861503,
            sha: m.commit.clone()
        }
    );
}

#[test]
fn intake_gitlab_tag_push_is_a_tag_event() {
    let e = event(deliver(TAG, &fixture("gitlab/go-scm/tag_create.json")));
    assert_eq!((e.intent, e.kind), (Intent::Run, EventKind::Tag));
    assert_eq!(e.git_ref, "refs/tags/v1.0.0");
    assert_eq!(e.commit, "2adc9465c4edfc33834e173fe89436a7cb899a1d");
    assert_eq!(e.repository, "gitlab-org/hello-world");
    assert_eq!(e.author, "Sid Sijbrandij");

    // An annotated tag: `after` is the tag object, `checkout_sha` the commit.
    let mut v = fixture_json("gitlab/docs/tag_push.json");
    v["after"] = "1111111111111111111111111111111111111111".into();
    let e = event(deliver_json(TAG, &v));
    assert_eq!(e.commit, "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7");
    assert_eq!(
        e.report,
        ReportTarget::Gitlab {
            project_id: 1,
            sha: e.commit.clone()
        }
    );

    // Without checkout_sha (older servers), `after` is used.
    v["checkout_sha"] = Value::Null;
    assert_eq!(
        event(deliver_json(TAG, &v)).commit,
        "1111111111111111111111111111111111111111"
    );
}

#[test]
fn intake_gitlab_branch_and_tag_deletion_are_ignored() {
    assert_eq!(
        deliver(PUSH, &fixture("gitlab/go-scm/branch_delete.json")),
        Ok(Intake::Ignored("ref deleted".into()))
    );
    assert_eq!(
        deliver(TAG, &fixture("gitlab/go-scm/tag_delete.json")),
        Ok(Intake::Ignored("ref deleted".into()))
    );
}

#[test]
fn intake_gitlab_merge_request_open_runs_the_last_commit() {
    let e = event(deliver(
        MR,
        &fixture("gitlab/go-scm/pull_request_create.json"),
    ));
    assert_eq!((e.intent, e.kind), (Intent::Run, EventKind::Change));
    assert_eq!(e.repository, "gitlab-org/hello-world");
    assert_eq!(e.git_ref, "refs/merge-requests/1/head");
    assert_eq!(e.commit, "c4c79227ed610f1151f05bbc5be33b4f340d39c8");
    assert_eq!(
        e.change,
        Some(Change {
            number: "1".into(),
            patchset: 0,
            url: Some("https://gitlab.com/gitlab-org/hello-world/merge_requests/1".into()),
            // object_attributes.updated_at, 2017-12-10 17:01:11 UTC.
            event_ms: Some(1512925271000),
            transition: None,
        })
    );
    assert_eq!(e.title, "update readme");
    assert_eq!(e.author, "sytses");
    assert_eq!(
        e.report,
        ReportTarget::Gitlab {
            project_id: 4861503,
            sha: "c4c79227ed610f1151f05bbc5be33b4f340d39c8".into()
        }
    );

    // The docs example: `project.id` (1) is the target project and wins over
    // `object_attributes.target_project_id` (14, inconsistent in the docs).
    let d = event(deliver(MR, &fixture("gitlab/docs/merge_request.json")));
    assert_eq!(d.repository, "gitlabhq/gitlab-test");
    assert_eq!(d.commit, "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
    assert_eq!(
        d.report,
        ReportTarget::Gitlab {
            project_id: 1,
            sha: d.commit.clone()
        }
    );
    assert_eq!(d.title, "MS-Viewport");
}

#[test]
fn intake_gitlab_merge_request_close_merge_and_update() {
    let c = event(deliver(
        MR,
        &fixture("gitlab/go-scm/pull_request_close.json"),
    ));
    assert_eq!(
        (c.intent, c.kind, c.git_ref.as_str()),
        (
            Intent::CancelChange,
            EventKind::Change,
            "refs/merge-requests/1/head"
        )
    );
    assert_eq!(
        c.change.as_ref().map(|c| (c.number.as_str(), c.transition)),
        Some(("1", Some(Transition::Closed)))
    );

    // A merge closes the request too (its commit arrives as a push).
    let m = event(deliver(
        MR,
        &fixture("gitlab/go-scm/pull_request_merge.json"),
    ));
    assert_eq!(m.intent, Intent::CancelChange);
    assert_eq!(
        m.change.as_ref().map(|c| (c.transition, c.event_ms)),
        // object_attributes.updated_at, 2017-12-10 17:08:07 UTC.
        Some((Some(Transition::Merged), Some(1_512_925_687_000)))
    );

    let mut v = fixture_json("gitlab/go-scm/pull_request_create.json");
    v["object_attributes"]["action"] = "update".into();
    assert_eq!(
        deliver_json(MR, &v),
        Ok(Intake::Ignored(
            "merge request updated without new commits".into()
        ))
    );
    v["object_attributes"]["oldrev"] = "2adc9465c4edfc33834e173fe89436a7cb899a1d".into();
    let u = event(deliver_json(MR, &v));
    assert_eq!(
        (u.intent, u.commit.as_str()),
        (Intent::Run, "c4c79227ed610f1151f05bbc5be33b4f340d39c8")
    );

    v["object_attributes"]["action"] = "approved".into();
    assert_eq!(
        deliver_json(MR, &v),
        Ok(Intake::Ignored(
            "merge request action 'approved' is not acted on".into()
        ))
    );
}

/// The go-scm MR comment with its text replaced.
fn note_with(text: &str) -> Value {
    let mut v = fixture_json("gitlab/go-scm/merge_request_comment_create.json");
    v["object_attributes"]["note"] = text.into();
    v
}

#[test]
fn intake_gitlab_recheck_note_runs_the_merge_request_head() {
    for text in ["recheck", "  recheck\n", "\nrecheck\t"] {
        let e = event(deliver_json(NOTE, &note_with(text)));
        assert_eq!(
            (e.intent, e.kind),
            (Intent::Run, EventKind::Change),
            "{text:?}"
        );
        assert_eq!(e.git_ref, "refs/merge-requests/1/head");
        assert_eq!(e.commit, "c4c79227ed610f1151f05bbc5be33b4f340d39c8");
        assert_eq!(
            e.change,
            Some(Change {
                number: "1".into(),
                patchset: 0,
                url: Some("https://gitlab.com/gitlab-org/hello-world/merge_requests/1".into()),
                // The note's created_at, 2017-12-10 17:05:14 UTC.
                event_ms: Some(1512925514000),
                transition: None,
            })
        );
        assert_eq!(e.author, "sytses");
        assert_eq!(
            e.report,
            ReportTarget::Gitlab {
                project_id: 4861503,
                sha: e.commit.clone()
            }
        );
    }
    // The docs example has no `merge_request.url`: the note URL without its anchor is the request's.
    let mut v = fixture_json("gitlab/docs/note_merge_request.json");
    v["object_attributes"]["note"] = "recheck".into();
    let e = event(deliver_json(NOTE, &v));
    assert_eq!(e.commit, "562e173be03b8ff2efb05345d12df18815438a4b");
    assert_eq!(e.repository, "gitlab-org/gitlab-test");
    assert_eq!(
        e.change.and_then(|c| c.url),
        Some("http://example.com/gitlab-org/gitlab-test/merge_requests/1".into())
    );
}

#[test]
fn intake_gitlab_other_notes_are_ignored() {
    // The real comment in the fixture is `lgtm`.
    assert_eq!(
        deliver(
            NOTE,
            &fixture("gitlab/go-scm/merge_request_comment_create.json")
        ),
        Ok(Intake::Ignored("note is not `recheck`".into()))
    );
    for text in [
        "Recheck",
        "recheck please",
        "please recheck",
        "/recheck",
        "",
    ] {
        assert_eq!(
            deliver_json(NOTE, &note_with(text)),
            Ok(Intake::Ignored("note is not `recheck`".into())),
            "{text:?}"
        );
    }
    // `recheck` on a commit, or on a merged request, does nothing.
    let mut on_commit = fixture_json("gitlab/docs/note_commit.json");
    on_commit["object_attributes"]["note"] = "recheck".into();
    assert_eq!(
        deliver_json(NOTE, &on_commit),
        Ok(Intake::Ignored(
            "only notes on merge requests are acted on".into()
        ))
    );
    let mut merged = note_with("recheck");
    merged["merge_request"]["state"] = "merged".into();
    assert_eq!(
        deliver_json(NOTE, &merged),
        Ok(Intake::Ignored("merge request is merged".into()))
    );
}

#[test]
fn intake_gitlab_wrong_or_missing_token_is_refused() {
    let body = fixture("gitlab/go-scm/push.json");
    let secret = Secret::new(TOKEN);
    for (what, token) in [
        ("wrong token", "not-the-token"),
        ("prefix of the token", &TOKEN[..TOKEN.len() - 1]),
        ("token plus a byte", "test-gitlab-webhook-tokenX"),
        ("empty token", ""),
    ] {
        assert_unauthorized(
            what,
            gitlab::parse(&headers(PUSH, token), &body, &secret),
            TOKEN,
        );
    }
    let mut missing = headers(PUSH, TOKEN);
    missing.remove("x-gitlab-token");
    assert_unauthorized(
        "missing token",
        gitlab::parse(&missing, &body, &secret),
        TOKEN,
    );
    // Checked before the body is parsed.
    assert_unauthorized(
        "garbage with a wrong token",
        gitlab::parse(&headers(PUSH, "nope"), b"\xff", &secret),
        TOKEN,
    );
    // An empty configured token authenticates nothing, not even an empty header.
    assert_unauthorized(
        "empty configured token",
        gitlab::parse(&headers(PUSH, ""), &body, &Secret::new("")),
        TOKEN,
    );
}

#[test]
fn intake_gitlab_not_json_and_missing_fields_are_malformed() {
    let e = error(deliver(PUSH, b"<html>"));
    assert_eq!((e.status(), e.reason()), (400, "malformed"));
    let mut v = fixture_json("gitlab/go-scm/push.json");
    v["project"]["path_with_namespace"] = Value::Null;
    assert_eq!(
        error(deliver_json(PUSH, &v)),
        IntakeError::Malformed("missing field `project.path_with_namespace`".into())
    );
    let mut v = fixture_json("gitlab/go-scm/pull_request_create.json");
    v["object_attributes"]["last_commit"] = Value::Null;
    assert_eq!(
        error(deliver_json(MR, &v)),
        IntakeError::Malformed("missing field `object_attributes.last_commit.id`".into())
    );
    let mut v = fixture_json("gitlab/go-scm/push.json");
    v["checkout_sha"] = "not a sha".into();
    assert_eq!(error(deliver_json(PUSH, &v)).reason(), "malformed");
    let mut h = headers(PUSH, TOKEN);
    h.remove("x-gitlab-event");
    assert_eq!(
        error(gitlab::parse(
            &h,
            &fixture("gitlab/go-scm/push.json"),
            &Secret::new(TOKEN)
        )),
        IntakeError::Malformed("missing header X-Gitlab-Event".into())
    );
}

#[test]
fn intake_gitlab_delivery_key_falls_back_from_uuid_to_idempotency_key_to_body_hash() {
    let body = fixture("gitlab/go-scm/push.json");
    let secret = Secret::new(TOKEN);
    let key = |h: &HeaderMap, body: &[u8]| event(gitlab::parse(h, body, &secret)).delivery;

    let mut h = headers(PUSH, TOKEN);
    h.insert(
        "idempotency-key",
        HeaderValue::from_static("c8b5d0a1-0000-4000-8000-000000000001"),
    );
    assert_eq!(key(&h, &body), "13792a34-cac6-4fda-95a8-c58e00a3954e");

    h.remove("x-gitlab-event-uuid");
    assert_eq!(key(&h, &body), "c8b5d0a1-0000-4000-8000-000000000001");

    h.remove("idempotency-key");
    let hashed = key(&h, &body);
    assert!(
        hashed.starts_with("sha256:") && hashed.len() == 7 + 64,
        "{hashed}"
    );
    assert_eq!(key(&h, &body), hashed, "same body, same key");
    let mut other = body.clone();
    other.push(b'\n');
    assert_ne!(key(&h, &other), hashed, "different body, different key");
}

//! GitHub intake tests.

use axum::http::{HeaderMap, HeaderValue};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Expect, assert_unauthorized, check, error, event, fixture, fixture_json};
use crate::event::{Change, Forge, Intent, ReportTarget};
use crate::intake::{Intake, IntakeError, github};
use crate::secret::Secret;
use airlock_pipeline::spec::EventKind;

pub(super) const SECRET: &str = "test-github-webhook-secret";
const GUID: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
pub(super) const SIGNATURE_VECTOR: &str = "github/signature-test-vector.json";

/// Every GitHub fixture, the `X-GitHub-Event` it is delivered with, and the outcome.
pub(super) const FIXTURES: &[(&str, &str, Expect)] = &[
    (
        "github/go-scm/check_run.json",
        "check_run",
        Expect::Ignored("event 'check_run' is not acted on"),
    ),
    (
        "github/go-scm/comment.json",
        "issue_comment",
        Expect::Ignored("event 'issue_comment' is not acted on"),
    ),
    (
        "github/go-scm/pr_closed.json",
        "pull_request",
        Expect::Cancel,
    ),
    (
        "github/go-scm/pr_labeled.json",
        "pull_request",
        Expect::Ignored("action 'labeled' is not acted on"),
    ),
    (
        "github/go-scm/pr_opened.json",
        "pull_request",
        Expect::Run(EventKind::Change),
    ),
    (
        "github/go-scm/pr_reopened.json",
        "pull_request",
        Expect::Run(EventKind::Change),
    ),
    (
        "github/go-scm/pr_sync.json",
        "pull_request",
        Expect::Run(EventKind::Change),
    ),
    (
        "github/go-scm/push.json",
        "push",
        Expect::Run(EventKind::Push),
    ),
    (
        "github/go-scm/push_branch_create.json",
        "push",
        Expect::Run(EventKind::Push),
    ),
    (
        "github/go-scm/push_branch_delete.json",
        "push",
        Expect::Ignored("ref deleted"),
    ),
    (
        "github/go-scm/push_tag.json",
        "push",
        Expect::Run(EventKind::Tag),
    ),
    (
        "github/go-scm/push_tag_delete.json",
        "push",
        Expect::Ignored("ref deleted"),
    ),
    (
        "github/go-scm/status.json",
        "status",
        Expect::Ignored("event 'status' is not acted on"),
    ),
    (
        "github/octokit-webhooks/api.github.com/check_run/completed.payload.json",
        "check_run",
        Expect::Ignored("check_run"),
    ),
    (
        "github/octokit-webhooks/api.github.com/check_run/created.payload.json",
        "check_run",
        Expect::Ignored("check_run"),
    ),
    (
        "github/octokit-webhooks/api.github.com/check_run/rerequested.payload.json",
        "check_run",
        Expect::Ignored("check_run"),
    ),
    (
        "github/octokit-webhooks/api.github.com/check_suite/completed.payload.json",
        "check_suite",
        Expect::Ignored("check_suite"),
    ),
    (
        "github/octokit-webhooks/api.github.com/check_suite/requested.payload.json",
        "check_suite",
        Expect::Ignored("check_suite"),
    ),
    (
        "github/octokit-webhooks/api.github.com/check_suite/rerequested.payload.json",
        "check_suite",
        Expect::Ignored("check_suite"),
    ),
    (
        "github/octokit-webhooks/api.github.com/create/payload.json",
        "create",
        Expect::Ignored("event 'create'"),
    ),
    (
        "github/octokit-webhooks/api.github.com/delete/payload.json",
        "delete",
        Expect::Ignored("event 'delete'"),
    ),
    (
        "github/octokit-webhooks/api.github.com/issue_comment/created.payload.json",
        "issue_comment",
        Expect::Ignored("issue_comment"),
    ),
    (
        "github/octokit-webhooks/api.github.com/ping/payload.json",
        "ping",
        Expect::Ignored("ping"),
    ),
    (
        "github/octokit-webhooks/api.github.com/ping/with-app_id.payload.json",
        "ping",
        Expect::Ignored("ping"),
    ),
    (
        "github/octokit-webhooks/api.github.com/ping/with-organization.payload.json",
        "ping",
        Expect::Ignored("ping"),
    ),
    (
        "github/octokit-webhooks/api.github.com/pull_request/closed.payload.json",
        "pull_request",
        Expect::Cancel,
    ),
    (
        "github/octokit-webhooks/api.github.com/pull_request/labeled.payload.json",
        "pull_request",
        Expect::Ignored("labeled"),
    ),
    (
        "github/octokit-webhooks/api.github.com/pull_request/opened.payload.json",
        "pull_request",
        Expect::Run(EventKind::Change),
    ),
    (
        "github/octokit-webhooks/api.github.com/pull_request/opened.with-null-body.json",
        "pull_request",
        Expect::Run(EventKind::Change),
    ),
    (
        "github/octokit-webhooks/api.github.com/pull_request/reopened.payload.json",
        "pull_request",
        Expect::Run(EventKind::Change),
    ),
    (
        "github/octokit-webhooks/api.github.com/pull_request/synchronize.payload.json",
        "pull_request",
        Expect::Run(EventKind::Change),
    ),
    (
        "github/octokit-webhooks/api.github.com/push/1.payload.json",
        "push",
        Expect::Ignored("ref deleted"),
    ),
    (
        "github/octokit-webhooks/api.github.com/push/payload.json",
        "push",
        Expect::Ignored("ref deleted"),
    ),
    (
        "github/octokit-webhooks/api.github.com/push/with-new-branch.payload.json",
        "push",
        Expect::Run(EventKind::Push),
    ),
    (
        "github/octokit-webhooks/api.github.com/push/with-no-username-committer.payload.json",
        "push",
        Expect::Run(EventKind::Push),
    ),
    (
        "github/octokit-webhooks/api.github.com/push/with-organization.payload.json",
        "push",
        Expect::Ignored("ref deleted"),
    ),
    (
        "github/octokit-webhooks/api.github.com/status/payload.json",
        "status",
        Expect::Ignored("event 'status'"),
    ),
    (
        "github/octokit-webhooks/ghes-35/push/payload.json",
        "push",
        Expect::Run(EventKind::Tag),
    ),
];

/// `sha256=` + hex HMAC-SHA256(secret, body), as GitHub computes it.
pub(super) fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The headers GitHub sends, signed with `secret`.
fn headers(event: &str, body: &[u8], secret: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "x-github-event",
        HeaderValue::from_str(event).expect("header"),
    );
    h.insert("x-github-delivery", HeaderValue::from_static(GUID));
    h.insert("x-github-hook-id", HeaderValue::from_static("292430182"));
    h.insert(
        "user-agent",
        HeaderValue::from_static("GitHub-Hookshot/044aadd"),
    );
    h.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&sign(secret, body)).expect("header"),
    );
    h
}

/// Parses `body` delivered as `event`, correctly signed.
fn deliver(event: &str, body: &[u8]) -> Result<Intake, IntakeError> {
    github::parse(&headers(event, body, SECRET), body, &Secret::new(SECRET))
}

/// Parses a fixture delivered as `event`, correctly signed.
pub(super) fn deliver_fixture(event: &str, rel: &str) -> Result<Intake, IntakeError> {
    deliver(event, &fixture(rel))
}

#[test]
fn intake_github_every_fixture_gives_the_expected_outcome() {
    for (rel, event, expect) in FIXTURES {
        check(rel, deliver_fixture(event, rel), *expect);
    }
}

#[test]
fn intake_github_signature_known_answer_vector() {
    let v = fixture_json(SIGNATURE_VECTOR);
    let secret = v["secret"].as_str().expect("secret");
    let payload = v["payload"].as_str().expect("payload").as_bytes();
    let expected = v["x_hub_signature_256"].as_str().expect("signature");
    // The test's own signer agrees with GitHub's published answer...
    assert_eq!(sign(secret, payload), expected);
    // ...and the verifier accepts the published header value over the published body.
    let mut h = HeaderMap::new();
    h.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(expected).expect("header"),
    );
    github::verify_signature(&h, payload, &Secret::new(secret))
        .expect("known-answer vector verifies");
    // Through `parse`, authentication passes and the non-JSON body is then malformed.
    h.insert("x-github-event", HeaderValue::from_static("push"));
    h.insert("x-github-delivery", HeaderValue::from_static(GUID));
    let e = error(github::parse(&h, payload, &Secret::new(secret)));
    assert!(
        matches!(e, IntakeError::Malformed(ref m) if m.contains("not JSON")),
        "{e:?}"
    );
    // One flipped bit of the published signature is refused.
    let mut flipped = expected.to_string();
    flipped.replace_range(expected.len() - 1.., "6");
    h.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&flipped).expect("header"),
    );
    assert_unauthorized(
        "flipped bit",
        github::parse(&h, payload, &Secret::new(secret)),
        secret,
    );
}

#[test]
fn intake_github_push_to_branch_runs_the_pushed_commit() {
    let e = event(deliver_fixture("push", "github/go-scm/push.json"));
    assert_eq!(e.forge, Forge::Github);
    assert_eq!(e.repository, "Codertocat/Hello-World");
    assert_eq!(e.delivery, format!("292430182:{GUID}"));
    assert_eq!((e.intent, e.kind), (Intent::Run, EventKind::Push));
    assert_eq!(e.git_ref, "refs/heads/master");
    assert_eq!(e.commit, "199eddf46df50de8d02e99bf1c5fdb4101338224");
    assert_eq!(e.change, None);
    assert_eq!(e.title, "Update README");
    assert_eq!(e.author, "Codertocat");
    assert_eq!(
        e.report,
        ReportTarget::Github {
            repo: "Codertocat/Hello-World".into(),
            sha: "199eddf46df50de8d02e99bf1c5fdb4101338224".into()
        }
    );
}

#[test]
fn intake_github_new_branch_push_runs_its_head() {
    let e = event(deliver_fixture(
        "push",
        "github/octokit-webhooks/api.github.com/push/with-new-branch.payload.json",
    ));
    assert_eq!(
        (e.kind, e.git_ref.as_str()),
        (EventKind::Push, "refs/heads/master")
    );
    assert_eq!(e.commit, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(e.title, "Initial commit");
}

#[test]
fn intake_github_tag_push_is_a_tag_event() {
    let e = event(deliver_fixture("push", "github/go-scm/push_tag.json"));
    assert_eq!((e.intent, e.kind), (Intent::Run, EventKind::Tag));
    assert_eq!(e.git_ref, "refs/tags/v0.0.1");
    assert_eq!(e.commit, "d2b75aa7797ec26b088fa2dd527e9d2c052fcedd");
    assert_eq!(e.repository, "bradrydzewski/drone-test-go");
    assert_eq!(e.author, "bradrydzewski");
    let ghes = event(deliver_fixture(
        "push",
        "github/octokit-webhooks/ghes-35/push/payload.json",
    ));
    assert_eq!(
        (ghes.kind, ghes.git_ref.as_str()),
        (EventKind::Tag, "refs/tags/simple-tag")
    );
    assert_eq!(ghes.title, "Adding a .gitignore file");
}

#[test]
fn intake_github_annotated_tag_runs_the_commit_not_the_tag_object() {
    let mut v = fixture_json("github/go-scm/push_tag.json");
    v["after"] = "1111111111111111111111111111111111111111".into(); // the tag object
    let body = serde_json::to_vec(&v).expect("json");
    let e = event(deliver("push", &body));
    assert_eq!(e.commit, "d2b75aa7797ec26b088fa2dd527e9d2c052fcedd");
    assert_eq!(
        e.report,
        ReportTarget::Github {
            repo: e.repository.clone(),
            sha: e.commit.clone()
        }
    );
}

#[test]
fn intake_github_branch_and_tag_deletion_are_ignored() {
    for rel in [
        "github/go-scm/push_branch_delete.json",
        "github/go-scm/push_tag_delete.json",
    ] {
        assert_eq!(
            deliver_fixture("push", rel),
            Ok(Intake::Ignored("ref deleted".into())),
            "{rel}"
        );
    }
    // `after` all zeros alone is enough, whatever `deleted` says.
    let mut v = fixture_json("github/go-scm/push_branch_delete.json");
    v["deleted"] = false.into();
    assert_eq!(
        deliver("push", &serde_json::to_vec(&v).expect("json")),
        Ok(Intake::Ignored("ref deleted".into()))
    );
}

#[test]
fn intake_github_pull_request_opened_runs_the_head_commit() {
    let e = event(deliver_fixture(
        "pull_request",
        "github/octokit-webhooks/api.github.com/pull_request/opened.payload.json",
    ));
    assert_eq!((e.intent, e.kind), (Intent::Run, EventKind::Change));
    assert_eq!(e.repository, "Codertocat/Hello-World");
    assert_eq!(e.git_ref, "refs/pull/2/head");
    assert_eq!(e.commit, "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
    assert_eq!(
        e.change,
        Some(Change {
            number: "2".into(),
            patchset: 0,
            url: Some("https://github.com/Codertocat/Hello-World/pull/2".into()),
            // pull_request.updated_at, 2019-05-15T15:20:33Z.
            event_ms: Some(1557933633000),
            transition: None,
        })
    );
    assert_eq!(e.title, "Update the README with new information.");
    assert_eq!(e.author, "Codertocat");
    assert_eq!(
        e.report,
        ReportTarget::Github {
            repo: "Codertocat/Hello-World".into(),
            sha: "ec26c3e57ca3a959ca5aad62de7213c562f8c821".into()
        }
    );
}

#[test]
fn intake_github_pull_request_synchronize_runs_the_new_head() {
    let e = event(deliver_fixture(
        "pull_request",
        "github/go-scm/pr_sync.json",
    ));
    assert_eq!((e.intent, e.kind), (Intent::Run, EventKind::Change));
    assert_eq!(e.git_ref, "refs/pull/1/head");
    assert_eq!(e.commit, "8102e371cd01cf668893cb2d04a04d52331b1dc9");
    assert_eq!(e.change.as_ref().map(|c| c.number.as_str()), Some("1"));
    assert_eq!(e.author, "bradrydzewski");
}

#[test]
fn intake_github_pull_request_closed_cancels_the_change() {
    for rel in [
        "github/go-scm/pr_closed.json",
        "github/octokit-webhooks/api.github.com/pull_request/closed.payload.json",
    ] {
        let e = event(deliver_fixture("pull_request", rel));
        assert_eq!(
            (e.intent, e.kind),
            (Intent::CancelChange, EventKind::Change),
            "{rel}"
        );
        assert!(
            e.git_ref.starts_with("refs/pull/") && e.git_ref.ends_with("/head"),
            "{rel}"
        );
        assert!(
            super::super::is_commit(&e.commit),
            "{rel}: the head sha is kept"
        );
    }
    let e = event(deliver_fixture(
        "pull_request",
        "github/go-scm/pr_closed.json",
    ));
    assert_eq!(e.commit, "d2b75aa7797ec26b088fa2dd527e9d2c052fcedd");
    assert_eq!(e.change.map(|c| c.number), Some("1".into()));
}

#[test]
fn intake_github_ping_is_ignored() {
    let r = deliver_fixture(
        "ping",
        "github/octokit-webhooks/api.github.com/ping/payload.json",
    );
    assert!(
        matches!(r, Ok(Intake::Ignored(ref why)) if why.starts_with("ping")),
        "{r:?}"
    );
}

#[test]
fn intake_github_forged_missing_and_wrong_signatures_are_refused() {
    let body = fixture("github/go-scm/push.json");
    let secret = Secret::new(SECRET);

    let mut forged = headers("push", &body, SECRET);
    forged.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&format!("sha256={}", "ab".repeat(32))).expect("header"),
    );
    assert_unauthorized(
        "forged signature",
        github::parse(&forged, &body, &secret),
        SECRET,
    );

    let mut missing = headers("push", &body, SECRET);
    missing.remove("x-hub-signature-256");
    assert_unauthorized(
        "missing signature",
        github::parse(&missing, &body, &secret),
        SECRET,
    );

    let wrong_secret = headers("push", &body, "not-the-secret");
    assert_unauthorized(
        "signed with another secret",
        github::parse(&wrong_secret, &body, &secret),
        SECRET,
    );

    let signed = headers("push", &body, SECRET);
    // Still valid JSON, so only the signature can catch it.
    let mut altered = body.clone();
    altered.push(b' ');
    assert_unauthorized(
        "body altered after signing",
        github::parse(&signed, &altered, &secret),
        SECRET,
    );

    let good = sign(SECRET, &body);
    for bad in [
        good.replacen("sha256=", "sha1=", 1),
        good.replacen("sha256=", "", 1),
        good[..good.len() - 2].to_string(),
        format!("{good}00"),
        format!("sha256={}", "zz".repeat(32)),
        String::new(),
    ] {
        let mut h = headers("push", &body, SECRET);
        h.insert(
            "x-hub-signature-256",
            HeaderValue::from_str(&bad).expect("header"),
        );
        assert_unauthorized(
            &format!("malformed signature {bad:?}"),
            github::parse(&h, &body, &secret),
            SECRET,
        );
    }

    // Two signature headers: refused rather than guessing which one counts.
    let mut twice = headers("push", &body, SECRET);
    twice.append(
        "x-hub-signature-256",
        HeaderValue::from_str(&good).expect("header"),
    );
    assert_unauthorized(
        "duplicated signature header",
        github::parse(&twice, &body, &secret),
        SECRET,
    );
}

#[test]
fn intake_github_authenticates_before_parsing() {
    // An unsigned non-JSON body is unauthorized, not malformed: JSON is never parsed first.
    let mut h = headers("push", b"{}", SECRET);
    h.remove("x-hub-signature-256");
    assert_unauthorized(
        "unsigned garbage",
        github::parse(&h, b"\xff not json", &Secret::new(SECRET)),
        SECRET,
    );
}

#[test]
fn intake_github_empty_secret_authenticates_nothing() {
    // An HMAC with an empty key is something anyone can compute.
    let body = fixture("github/go-scm/push.json");
    assert_unauthorized(
        "empty secret",
        github::parse(&headers("push", &body, ""), &body, &Secret::new("")),
        SECRET,
    );
}

#[test]
fn intake_github_signed_non_json_is_malformed() {
    for body in [
        &b"not json"[..],
        b"",
        b"{\"ref\": \"refs/heads/main\",",
        b"payload=%7B%7D",
    ] {
        let e = error(deliver("push", body));
        assert_eq!(
            (e.status(), e.reason()),
            (400, "malformed"),
            "{body:?}: {e:?}"
        );
    }
    let e = error(deliver("push", b"payload=%7B%7D"));
    assert!(e.to_string().contains("application/json"), "{e}");
}

#[test]
fn intake_github_missing_fields_and_bad_values_are_malformed() {
    let base = fixture_json("github/go-scm/push.json");
    let cases: &[(&str, serde_json::Value, &str)] = &[
        ("/ref", serde_json::Value::Null, "missing field `ref`"),
        ("/after", serde_json::Value::Null, "missing field `after`"),
        (
            "/after",
            "199EDDF46DF50DE8D02E99BF1C5FDB4101338224".into(),
            "`after` is not a 40-hex",
        ),
        ("/after", "199eddf".into(), "`after` is not a 40-hex"),
        ("/ref", "refs/heads/../../etc".into(), "`ref` is not a full"),
        ("/ref", "master".into(), "`ref` is not a full"),
        (
            "/repository/full_name",
            serde_json::Value::Null,
            "missing field `repository.full_name`",
        ),
        (
            "/repository/full_name",
            5.into(),
            "`repository.full_name` is not a string",
        ),
    ];
    for (pointer, value, message) in cases {
        let mut v = base.clone();
        *v.pointer_mut(pointer).expect("pointer") = value.clone();
        let e = error(deliver("push", &serde_json::to_vec(&v).expect("json")));
        assert!(
            matches!(e, IntakeError::Malformed(ref m) if m.contains(message)),
            "{pointer}: {e:?}"
        );
    }
    let pr = fixture_json("github/go-scm/pr_opened.json");
    let mut v = pr.clone();
    v["pull_request"]["head"]["sha"] = serde_json::Value::Null;
    let e = error(deliver(
        "pull_request",
        &serde_json::to_vec(&v).expect("json"),
    ));
    assert_eq!(
        e,
        IntakeError::Malformed("missing field `pull_request.head.sha`".into())
    );
}

#[test]
fn intake_github_other_refs_are_ignored() {
    let mut v = fixture_json("github/go-scm/push.json");
    v["ref"] = "refs/notes/commits".into();
    let r = deliver("push", &serde_json::to_vec(&v).expect("json"));
    assert!(
        matches!(r, Ok(Intake::Ignored(ref why)) if why.contains("neither a branch nor a tag")),
        "{r:?}"
    );
}

#[test]
fn intake_github_delivery_key_is_hook_and_guid() {
    let body = fixture("github/go-scm/push.json");
    let secret = Secret::new(SECRET);
    let first = event(github::parse(
        &headers("push", &body, SECRET),
        &body,
        &secret,
    ));
    let again = event(github::parse(
        &headers("push", &body, SECRET),
        &body,
        &secret,
    ));
    assert_eq!(
        first.delivery, again.delivery,
        "a redelivery repeats the key"
    );

    let mut other_hook = headers("push", &body, SECRET);
    other_hook.insert("x-github-hook-id", HeaderValue::from_static("7"));
    assert_eq!(
        event(github::parse(&other_hook, &body, &secret)).delivery,
        format!("7:{GUID}")
    );

    let mut no_hook = headers("push", &body, SECRET);
    no_hook.remove("x-github-hook-id");
    assert_eq!(
        event(github::parse(&no_hook, &body, &secret)).delivery,
        format!("-:{GUID}")
    );

    let mut no_guid = headers("push", &body, SECRET);
    no_guid.remove("x-github-delivery");
    assert_eq!(
        error(github::parse(&no_guid, &body, &secret)),
        IntakeError::Malformed("missing header X-GitHub-Delivery".into())
    );

    let mut bad_guid = headers("push", &body, SECRET);
    bad_guid.insert("x-github-delivery", HeaderValue::from_static("a b"));
    assert_eq!(
        error(github::parse(&bad_guid, &body, &secret)).reason(),
        "malformed"
    );

    let mut no_event = headers("push", &body, SECRET);
    no_event.remove("x-github-event");
    assert_eq!(
        error(github::parse(&no_event, &body, &secret)),
        IntakeError::Malformed("missing header X-GitHub-Event".into())
    );
}

#[test]
fn intake_github_odd_event_names_are_not_echoed() {
    // A header value that is not visible ASCII is refused before routing.
    let mut h = headers("push", b"{}", SECRET);
    h.insert(
        "x-github-event",
        HeaderValue::from_bytes(b"weird\xffevent").expect("obs-text is a valid header value"),
    );
    assert_eq!(
        github::parse(&h, b"{}", &Secret::new(SECRET)).map_err(|e| e.reason()),
        Err("malformed")
    );
    let r = deliver(&"x".repeat(100), b"{}");
    assert_eq!(r, Ok(Intake::Ignored("event '?' is not acted on".into())));
}

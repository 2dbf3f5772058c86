//! Gerrit intake tests.

use axum::http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::{Expect, assert_unauthorized, check, error, event, fixture, fixture_json};
use crate::event::{Change, Forge, Intent, ReportTarget, Transition};
use crate::intake::{Intake, IntakeError, gerrit};
use crate::secret::Secret;
use airlock_pipeline::spec::EventKind;

pub(super) const SECRET: &str = "test-gerrit-webhook-secret";
const REV: &str = "4a1b2c3d4e5f60718293a4b5c6d7e8f901234567";

/// Every Gerrit fixture file and its outcome.
pub(super) const FIXTURES: &[(&str, Expect)] = &[
    (
        "gerrit/gerrit-events/DeserializeChangeDeletedTest.json",
        Expect::Cancel,
    ),
    (
        "gerrit/gerrit-events/DeserializeEventCreatedOnTest.json",
        Expect::Run(EventKind::Change),
    ),
    (
        "gerrit/gerrit-events/DeserializeVoteDeletedTest.json",
        Expect::Ignored("event 'vote-deleted' is not acted on"),
    ),
    (
        "gerrit/gerrit-events/malformed/DeserializeHashtagsChangedTest.json",
        Expect::Malformed("body is not JSON"),
    ),
    // REST bodies (Set Review), not events: refused for want of a `type`.
    (
        "gerrit/docs/review-input.verified-example.json",
        Expect::Malformed("missing field `type`"),
    ),
    (
        "gerrit/docs/set-review.request.json",
        Expect::Malformed("missing field `type`"),
    ),
    (
        "gerrit/docs/set-review.response.json",
        Expect::Malformed("missing field `type`"),
    ),
];

/// Files with one event per line, and the outcome of each line in order.
pub(super) const JSONL_FIXTURES: &[(&str, &[Expect])] = &[(
    "gerrit/go-gerrit/events-log.jsonl",
    &[
        Expect::Cancel,                              // change-merged
        Expect::Ignored("comment is not `recheck`"), // comment-added "Some comment"
    ],
)];

/// Parses `body` presented with the right token.
pub(super) fn deliver(body: &[u8]) -> Result<Intake, IntakeError> {
    gerrit::parse(Some(SECRET.as_bytes()), body, &Secret::new(SECRET))
}

/// Parses a JSON value presented with the right token.
fn deliver_json(v: &Value) -> Result<Intake, IntakeError> {
    deliver(&serde_json::to_vec(v).expect("json"))
}

/// A `patchset-created` event built from gerrit/FORMAT.md (no real recording
/// with a usable licence exists), in the Gerrit 3.x shape: integer numbers,
/// top-level `project`/`refName`/`changeKey`.
pub(super) fn patchset_created() -> Value {
    json!({
        "type": "patchset-created",
        "uploader": {"name": "Uma Uploader", "email": "uma@example.org", "username": "uma"},
        "change": {
            "project": "platform/build",
            "branch": "main",
            "id": "I8473b95934b5732ac55d26311a706c9c2bde9940",
            "number": 1234,
            "subject": "Build: cache the toolchain\n",
            "owner": {"name": "Olga Owner", "email": "olga@example.org", "username": "olga"},
            "url": "https://review.example.org/c/platform/build/+/1234",
            "commitMessage": "Build: cache the toolchain\n\nChange-Id: I8473b95934b5732ac55d26311a706c9c2bde9940\n",
            "createdOn": 1718000000,
            "status": "NEW",
            "wip": false
        },
        "patchSet": {
            "number": 2,
            "revision": REV,
            "parents": ["0123456789abcdef0123456789abcdef01234567"],
            "ref": "refs/changes/34/1234/2",
            "uploader": {"name": "Uma Uploader", "email": "uma@example.org", "username": "uma"},
            "author": {"name": "Olga Owner", "email": "olga@example.org", "username": "olga"},
            "createdOn": 1718000100,
            "kind": "REWORK",
            "sizeInsertions": 12,
            "sizeDeletions": -3
        },
        "project": "platform/build",
        "refName": "refs/heads/main",
        "changeKey": {"id": "I8473b95934b5732ac55d26311a706c9c2bde9940"},
        "eventCreatedOn": 1718000101
    })
}

/// A `comment-added` on the same change and patchset, with `comment` as the cover message.
pub(super) fn comment_added(comment: &str) -> Value {
    let mut v = patchset_created();
    let o = v.as_object_mut().expect("object");
    o.remove("uploader");
    o.insert("type".into(), "comment-added".into());
    o.insert(
        "author".into(),
        json!({"name": "Rita Reviewer", "username": "rita"}),
    );
    o.insert(
        "approvals".into(),
        json!([{"type": "Code-Review", "description": "Code-Review", "value": "1"}]),
    );
    o.insert("comment".into(), comment.into());
    v
}

/// A `ref-updated` event for `ref_name` moving to `new_rev`.
fn ref_updated(ref_name: &str, new_rev: &str) -> Value {
    json!({
        "type": "ref-updated",
        "submitter": {"name": "Sam Submitter", "username": "sam"},
        "refUpdate": {
            "oldRev": "0123456789abcdef0123456789abcdef01234567",
            "newRev": new_rev,
            "refName": ref_name,
            "project": "platform/build"
        },
        "eventCreatedOn": 1718000200
    })
}

#[test]
fn intake_gerrit_every_fixture_gives_the_expected_outcome() {
    for (rel, expect) in FIXTURES {
        check(rel, deliver(&fixture(rel)), *expect);
    }
    for (rel, expects) in JSONL_FIXTURES {
        let text = String::from_utf8(fixture(rel)).expect("utf-8");
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            expects.len(),
            "{rel}: one expectation per line"
        );
        for (n, (line, expect)) in lines.iter().zip(expects.iter()).enumerate() {
            check(
                &format!("{rel} line {}", n + 1),
                deliver(line.as_bytes()),
                *expect,
            );
        }
    }
}

#[test]
fn intake_gerrit_patchset_created_runs_the_new_patchset() {
    let e = event(deliver_json(&patchset_created()));
    assert_eq!(e.forge, Forge::Gerrit);
    assert_eq!(e.repository, "platform/build");
    assert_eq!((e.intent, e.kind), (Intent::Run, EventKind::Change));
    assert_eq!(e.git_ref, "refs/changes/34/1234/2");
    assert_eq!(e.commit, REV);
    assert_eq!(
        e.change,
        Some(Change {
            number: "1234".into(),
            patchset: 2,
            url: Some("https://review.example.org/c/platform/build/+/1234".into()),
            // eventCreatedOn, in milliseconds.
            event_ms: Some(1_718_000_101_000),
            transition: None,
        })
    );
    assert_eq!(e.title, "Build: cache the toolchain");
    assert_eq!(e.author, "Uma Uploader");
    assert_eq!(
        e.report,
        ReportTarget::Gerrit {
            change: "1234".into(),
            revision: REV.into()
        }
    );
    assert!(
        e.delivery
            .starts_with("patchset-created:1234:2:1718000101:"),
        "{}",
        e.delivery
    );
    assert_eq!(e.delivery.rsplit(':').next().map(str::len), Some(16));
}

#[test]
fn intake_gerrit_numbers_may_be_strings_and_the_ref_may_be_missing() {
    // The Gerrit 2.x shape: string numbers, no top-level project, no uploader account.
    let mut v = patchset_created();
    v["change"]["number"] = "654".into();
    v["patchSet"]["number"] = "3".into();
    v["patchSet"]["ref"] = "refs/changes/54/654/3".into();
    let o = v.as_object_mut().expect("object");
    o.remove("project");
    o.remove("uploader");
    let e = event(deliver_json(&v));
    assert_eq!(
        e.change.as_ref().map(|c| (c.number.as_str(), c.patchset)),
        Some(("654", 3))
    );
    assert_eq!(e.git_ref, "refs/changes/54/654/3");
    assert_eq!(e.author, "Uma Uploader", "patchSet.uploader stands in");

    // No patchSet.ref at all: the ref Gerrit gives it, last two digits zero-padded.
    v["patchSet"].as_object_mut().expect("object").remove("ref");
    v["change"]["number"] = 5.into();
    assert_eq!(event(deliver_json(&v)).git_ref, "refs/changes/05/5/3");

    // Only `project` at the top (change.project missing) still names the repository.
    let mut v = patchset_created();
    v["change"]
        .as_object_mut()
        .expect("object")
        .remove("project");
    assert_eq!(event(deliver_json(&v)).repository, "platform/build");

    for bad in [
        json!("12a"),
        json!(-1),
        json!(1.5),
        json!("+7"),
        json!(true),
    ] {
        let mut v = patchset_created();
        v["change"]["number"] = bad.clone();
        assert_eq!(
            error(deliver_json(&v)),
            IntakeError::Malformed("field `change.number` is not a non-negative integer".into()),
            "{bad}"
        );
    }
}

#[test]
fn intake_gerrit_patchset_created_bad_fields_are_malformed() {
    let cases: &[(&str, Value, &str)] = &[
        (
            "/patchSet/revision",
            Value::Null,
            "missing field `patchSet.revision`",
        ),
        (
            "/patchSet/revision",
            REV.to_uppercase().into(),
            "`patchSet.revision` is not a 40-hex",
        ),
        (
            "/patchSet/revision",
            "0000000000000000000000000000000000000000".into(),
            "null object id",
        ),
        (
            "/patchSet/ref",
            "refs/changes/34/1234/../../heads/main".into(),
            "`patchSet.ref` is not a full",
        ),
        (
            "/patchSet/ref",
            "refs/changes/34/1234/2 ".into(),
            "`patchSet.ref` is not a full",
        ),
        (
            "/patchSet/number",
            Value::Null,
            "missing field `patchSet.number`",
        ),
        (
            "/patchSet/number",
            4_294_967_296_u64.into(),
            "`patchSet.number` is too large",
        ),
        (
            "/change/number",
            Value::Null,
            "missing field `change.number`",
        ),
    ];
    for (pointer, value, message) in cases {
        let mut v = patchset_created();
        *v.pointer_mut(pointer).expect("pointer") = value.clone();
        let e = error(deliver_json(&v));
        assert!(
            matches!(e, IntakeError::Malformed(ref m) if m.contains(message)),
            "{pointer}: {e:?}"
        );
    }
    let mut v = patchset_created();
    v["change"]
        .as_object_mut()
        .expect("object")
        .remove("project");
    v.as_object_mut().expect("object").remove("project");
    assert_eq!(
        error(deliver_json(&v)),
        IntakeError::Malformed("missing field `change.project`".into())
    );
    assert_eq!(
        error(deliver(b"[]")),
        IntakeError::Malformed("missing field `type`".into())
    );
}

#[test]
fn intake_gerrit_recheck_comment_runs_the_commented_patchset() {
    for comment in [
        "recheck",
        "Patch Set 2:\n\nrecheck",
        "Patch Set 2: Code-Review+1\n\nrecheck",
        "Patch Set 2: Verified-1 Code-Review-2\n\n(3 comments)\n\nrecheck\n",
        "Patch Set 12: -Verified\n\n(1 comment)\n\n  recheck  ",
    ] {
        let e = event(deliver_json(&comment_added(comment)));
        assert_eq!(
            (e.intent, e.kind),
            (Intent::Run, EventKind::Change),
            "{comment:?}"
        );
        // The patchset the comment was made on, from the event itself.
        assert_eq!(
            (e.git_ref.as_str(), e.commit.as_str()),
            ("refs/changes/34/1234/2", REV),
            "{comment:?}"
        );
        assert_eq!(e.change.as_ref().map(|c| c.patchset), Some(2));
        assert_eq!(e.author, "Rita Reviewer", "the person who asked");
        assert_eq!(
            e.report,
            ReportTarget::Gerrit {
                change: "1234".into(),
                revision: REV.into()
            }
        );
        assert!(
            e.delivery.starts_with("comment-added:1234:2:"),
            "{}",
            e.delivery
        );
    }
}

#[test]
fn intake_gerrit_other_comments_are_ignored() {
    for comment in [
        "Patch Set 2: Code-Review+2",
        "Patch Set 2:\n\nrecheck please",
        "Patch Set 2:\n\nplease recheck",
        "Patch Set 2:\n\nrecheck\nand also this",
        "Patch Set 2:\n\nRECHECK",
        "Patch Set 2: recheck",
        "Patch Set 2:\n\nBuild Successful\n\nhttps://ci.example.org/42 : SUCCESS",
        "",
    ] {
        assert_eq!(
            deliver_json(&comment_added(comment)),
            Ok(Intake::Ignored("comment is not `recheck`".into())),
            "{comment:?}"
        );
    }
    let mut merged = comment_added("Patch Set 2:\n\nrecheck");
    merged["change"]["status"] = "MERGED".into();
    assert_eq!(
        deliver_json(&merged),
        Ok(Intake::Ignored(
            "recheck on a merged or abandoned change".into()
        ))
    );
    let mut abandoned = comment_added("recheck");
    abandoned["change"]["status"] = "ABANDONED".into();
    assert_eq!(
        deliver_json(&abandoned),
        Ok(Intake::Ignored(
            "recheck on a merged or abandoned change".into()
        ))
    );
}

#[test]
fn intake_gerrit_abandon_and_delete_cancel_the_change() {
    let mut v = patchset_created();
    v["type"] = "change-abandoned".into();
    v["abandoner"] = json!({"name": "Olga Owner"});
    v["reason"] = "superseded".into();
    v["change"]["status"] = "ABANDONED".into();
    let e = event(deliver_json(&v));
    assert_eq!(
        (e.intent, e.kind),
        (Intent::CancelChange, EventKind::Change)
    );
    assert_eq!(e.change.as_ref().map(|c| c.number.as_str()), Some("1234"));
    assert_eq!(
        (e.git_ref.as_str(), e.commit.as_str()),
        ("refs/changes/34/1234/2", REV)
    );
    assert_eq!(e.author, "Olga Owner");

    // The real change-deleted fixture: no patchSet at all.
    let d = event(deliver(&fixture(
        "gerrit/gerrit-events/DeserializeChangeDeletedTest.json",
    )));
    assert_eq!(
        (d.intent, d.repository.as_str()),
        (Intent::CancelChange, "bwnUVH")
    );
    assert_eq!(
        d.change,
        Some(Change {
            number: "3".into(),
            patchset: 0,
            url: Some("http://testGerrit/c/bwnUVH/+/3".into()),
            event_ms: Some(1_710_524_800_000),
            transition: Some(Transition::Deleted),
        })
    );
    assert_eq!(
        (d.git_ref.as_str(), d.commit.as_str(), &d.report),
        ("refs/changes/03/3", "", &ReportTarget::None)
    );
    assert_eq!(d.author, "Administrator");
    assert!(
        d.delivery.starts_with("change-deleted:3:-:1710524800:"),
        "{}",
        d.delivery
    );
}

#[test]
fn intake_gerrit_restore_runs_again() {
    // The real 2014 change-restored fixture: string numbers.
    let e = event(deliver(&fixture(
        "gerrit/gerrit-events/DeserializeEventCreatedOnTest.json",
    )));
    assert_eq!((e.intent, e.kind), (Intent::Run, EventKind::Change));
    assert_eq!(e.repository, "playback-test");
    assert_eq!(e.git_ref, "refs/changes/54/654/1");
    assert_eq!(e.commit, "b2b5f7c8fb8f96312d629d4d4f379f34f5b9b651");
    assert_eq!(
        e.change,
        Some(Change {
            number: "654".into(),
            patchset: 1,
            url: Some("http://localhost:9090/654".into()),
            event_ms: Some(1_418_133_772_000),
            transition: Some(Transition::Reopened),
        })
    );
    assert_eq!(e.title, "Mon Dec  8 20:53:56 EST 2014");
    assert_eq!(e.author, "Scott");
    assert_eq!(
        e.report,
        ReportTarget::Gerrit {
            change: "654".into(),
            revision: "b2b5f7c8fb8f96312d629d4d4f379f34f5b9b651".into()
        }
    );
    assert!(
        e.delivery.starts_with("change-restored:654:1:1418133772:"),
        "{}",
        e.delivery
    );
}

#[test]
fn intake_gerrit_ref_updated_branches_and_tags_run_other_refs_do_not() {
    let e = event(deliver_json(&ref_updated("refs/heads/main", REV)));
    assert_eq!((e.intent, e.kind), (Intent::Run, EventKind::Push));
    assert_eq!(
        (e.repository.as_str(), e.git_ref.as_str(), e.commit.as_str()),
        ("platform/build", "refs/heads/main", REV)
    );
    assert_eq!((e.change, e.report), (None, ReportTarget::None));
    assert_eq!(e.author, "Sam Submitter");
    assert_eq!(
        e.delivery.split(':').take(4).collect::<Vec<_>>(),
        ["ref-updated", "refs/heads/main", REV, "1718000200"]
    );

    // Old servers: a short branch name.
    assert_eq!(
        event(deliver_json(&ref_updated("master", REV))).git_ref,
        "refs/heads/master"
    );

    let t = event(deliver_json(&ref_updated("refs/tags/v1.2.0", REV)));
    assert_eq!(
        (t.kind, t.git_ref.as_str()),
        (EventKind::Tag, "refs/tags/v1.2.0")
    );

    for other in [
        "refs/changes/34/1234/2",
        "refs/changes/34/1234/meta",
        "refs/meta/config",
        "refs/users/00/1000000",
    ] {
        assert_eq!(
            deliver_json(&ref_updated(other, REV)),
            Ok(Intake::Ignored(
                "ref-updated on a ref that is neither a branch nor a tag".into()
            )),
            "{other}"
        );
    }
    assert_eq!(
        deliver_json(&ref_updated(
            "refs/heads/main",
            "0000000000000000000000000000000000000000"
        )),
        Ok(Intake::Ignored("ref deleted".into()))
    );
    assert_eq!(
        error(deliver_json(&ref_updated("refs/heads/a..b", REV))).reason(),
        "malformed"
    );
    assert_eq!(
        error(deliver_json(&ref_updated("refs/heads/main", "abc"))).reason(),
        "malformed"
    );
}

#[test]
fn intake_gerrit_change_merged_closes_the_change_and_unknown_types_are_ignored() {
    // A merge closes the change (the merged commit itself arrives as ref-updated).
    let mut v = patchset_created();
    v["type"] = "change-merged".into();
    v["submitter"] = json!({"name": "Sam Submitter"});
    v["change"]["status"] = "MERGED".into();
    let m = event(deliver_json(&v));
    assert_eq!(
        (m.intent, m.kind, m.author.as_str()),
        (Intent::CancelChange, EventKind::Change, "Sam Submitter")
    );
    assert_eq!(
        m.change.map(|c| (c.number, c.patchset, c.transition)),
        Some(("1234".into(), 2, Some(Transition::Merged)))
    );
    // The events-log line, with its all-zero revision: nothing to report on.
    let text = String::from_utf8(fixture("gerrit/go-gerrit/events-log.jsonl")).expect("utf-8");
    let line = event(deliver(text.lines().next().expect("first line").as_bytes()));
    assert_eq!(
        (line.intent, line.commit.as_str(), &line.report),
        (Intent::CancelChange, "", &ReportTarget::None)
    );

    v["type"] = "change-deferred".into();
    assert_eq!(
        deliver_json(&v),
        Ok(Intake::Ignored(
            "event 'change-deferred' is not acted on".into()
        ))
    );
    v["type"] = "x\ny".into();
    assert_eq!(
        deliver_json(&v),
        Ok(Intake::Ignored("event '?' is not acted on".into()))
    );
}

#[test]
fn intake_gerrit_wrong_or_missing_token_is_refused() {
    let body = serde_json::to_vec(&patchset_created()).expect("json");
    let secret = Secret::new(SECRET);
    for (what, token) in [
        ("wrong token", Some(&b"not-the-secret"[..])),
        ("prefix", Some(&SECRET.as_bytes()[..5])),
        ("empty", Some(&b""[..])),
        ("none", None),
    ] {
        assert_unauthorized(what, gerrit::parse(token, &body, &secret), SECRET);
    }
    // Checked before the body is parsed.
    assert_unauthorized(
        "garbage",
        gerrit::parse(Some(b"nope"), b"\xff{", &secret),
        SECRET,
    );
    assert_unauthorized(
        "empty configured secret",
        gerrit::parse(Some(b""), &body, &Secret::new("")),
        SECRET,
    );
}

#[test]
fn intake_gerrit_presented_token_from_bearer_header_or_query() {
    let mut h = HeaderMap::new();
    assert_eq!(gerrit::presented_token(&h, None), None);
    assert_eq!(
        gerrit::presented_token(&h, Some("token=s3cr%2Ft%2B+x&other=1")),
        Some(b"s3cr/t+ x".to_vec())
    );
    assert_eq!(
        gerrit::presented_token(&h, Some("a=1&token=abc")),
        Some(b"abc".to_vec())
    );
    assert_eq!(
        gerrit::presented_token(&h, Some("tok%65n=abc")),
        Some(b"abc".to_vec())
    );
    assert_eq!(
        gerrit::presented_token(&h, Some("token=100%")),
        Some(b"100%".to_vec())
    );
    assert_eq!(gerrit::presented_token(&h, Some("token=")), None);
    assert_eq!(gerrit::presented_token(&h, Some("tokens=abc")), None);

    h.insert(
        "authorization",
        HeaderValue::from_static("Bearer from-header"),
    );
    assert_eq!(
        gerrit::presented_token(&h, Some("token=from-query")),
        Some(b"from-header".to_vec())
    );
    h.insert("authorization", HeaderValue::from_static("bearer  spaced "));
    assert_eq!(gerrit::presented_token(&h, None), Some(b"spaced".to_vec()));
    // Not a bearer token: the query is used.
    h.insert(
        "authorization",
        HeaderValue::from_static("Basic dXNlcjpwYXNz"),
    );
    assert_eq!(
        gerrit::presented_token(&h, Some("token=q")),
        Some(b"q".to_vec())
    );
    assert_eq!(gerrit::presented_token(&h, None), None);

    // End to end: what the server does.
    let body = serde_json::to_vec(&patchset_created()).expect("json");
    let query = format!("token={SECRET}");
    let token = gerrit::presented_token(&HeaderMap::new(), Some(&query));
    assert!(matches!(
        gerrit::parse(token.as_deref(), &body, &Secret::new(SECRET)),
        Ok(Intake::Event(_))
    ));
}

#[test]
fn intake_gerrit_delivery_key_dedupes_replays_only() {
    let body = serde_json::to_vec(&patchset_created()).expect("json");
    let first = event(deliver(&body)).delivery;
    assert_eq!(
        event(deliver(&body)).delivery,
        first,
        "an identical replay has the same key"
    );

    // Same change, patchset and second, but a different body: a different key.
    let mut v = patchset_created();
    v["uploader"]["name"] = "Someone Else".into();
    let other = event(deliver_json(&v)).delivery;
    assert_ne!(other, first);
    assert_eq!(
        other.rsplit_once(':').map(|(head, _)| head),
        first.rsplit_once(':').map(|(head, _)| head)
    );

    // Two recheck comments in the same second on the same patchset differ by body.
    let a = event(deliver_json(&comment_added("recheck"))).delivery;
    let b = event(deliver_json(&comment_added("Patch Set 2:\n\nrecheck"))).delivery;
    assert_ne!(a, b);

    // A missing timestamp is written as `-`.
    let mut v = patchset_created();
    v.as_object_mut().expect("object").remove("eventCreatedOn");
    assert!(
        event(deliver_json(&v))
            .delivery
            .starts_with("patchset-created:1234:2:-:")
    );
}

#[test]
fn intake_gerrit_real_comment_added_fixture_fields() {
    // The events-log comment-added line, with its cover message replaced by a recheck:
    // its all-zero revision is refused rather than run.
    let text = String::from_utf8(fixture("gerrit/go-gerrit/events-log.jsonl")).expect("utf-8");
    let line = text.lines().nth(1).expect("second line");
    let mut v: Value = serde_json::from_str(line).expect("json");
    v["comment"] = "Patch Set 1:\n\n(2 comments)\n\nrecheck".into();
    assert_eq!(
        error(deliver_json(&v)),
        IntakeError::Malformed("field `patchSet.revision` is the null object id".into())
    );
    v["patchSet"]["revision"] = REV.into();
    let e = event(deliver_json(&v));
    // Old Gerrit: `refs/changes/1/1/1` (not zero-padded) is taken as sent.
    assert_eq!(
        (e.git_ref.as_str(), e.repository.as_str()),
        ("refs/changes/1/1/1", "test")
    );
    assert_eq!(
        e.change.map(|c| (c.number, c.patchset)),
        Some(("1".into(), 1))
    );
    assert_eq!(e.author, "Foo Bar");
    let _ = fixture_json("gerrit/gerrit-events/DeserializeVoteDeletedTest.json"); // strict JSON, read by the table too
}

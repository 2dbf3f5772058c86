//! Events that arrive late: an older head or patchset, or anything for a
//! closed change, is stored as ignored and never cancels newer work. Each
//! forge's recorded payloads, delivered out of order into a real store.

use std::sync::atomic::{AtomicU32, Ordering};

use axum::http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::{Db, event, fixture_json};
use crate::event::ForgeEvent;
use crate::intake::{gerrit, github, gitlab};
use crate::secret::Secret;
use crate::store::{Accepted, RunId, RunStatus};

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// A fresh, unique delivery id for each delivery of these tests.
fn next_id() -> String {
    format!(
        "00000000-0000-4000-8000-{:012}",
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

impl Db {
    /// Accepts an event that must queue a run; returns the run.
    fn accept_run(&self, what: &str, event: &ForgeEvent) -> RunId {
        match self.accept(event) {
            Accepted::New { run: Some(run), .. } => run,
            other => panic!("{what}: expected a new run, got {other:?}"),
        }
    }

    /// Claims the next queued run, which must be `run`.
    fn claim(&self, run: RunId) {
        let claimed = self
            .store()
            .claim_next(10, &|_| 10, 2_000)
            .expect("claim")
            .expect("a queued run");
        assert_eq!(claimed.id, run);
    }

    /// Asserts the run is running and nobody asked it to stop.
    fn assert_running_untouched(&self, run: RunId) {
        let row = self.store().run(run).expect("query").expect("run");
        assert_eq!(
            (row.status, row.cancel_requested, row.reason.as_deref()),
            (RunStatus::Running, false, None),
            "run {run} was touched by a late event"
        );
    }

    fn status(&self, run: RunId) -> RunStatus {
        self.store().run(run).expect("query").expect("run").status
    }
}

/// Asserts that a late event was stored as ignored, for a reason mentioning `why`,
/// and that it queued and cancelled nothing.
fn assert_ignored(what: &str, accepted: &Accepted, why: &str) {
    match accepted {
        Accepted::Ignored { reason, .. } => assert!(
            reason.contains(why),
            "{what}: ignored for {reason:?}, expected a reason mentioning {why:?}"
        ),
        other => panic!("{what}: expected to be ignored ({why}), got {other:?}"),
    }
}

/// A GitHub `pull_request` fixture, edited by `edit`, signed and delivered
/// under a fresh delivery id.
fn github_pr(rel: &str, edit: impl FnOnce(&mut Value)) -> ForgeEvent {
    let mut payload = fixture_json(rel);
    edit(&mut payload);
    let body = serde_json::to_vec(&payload).expect("json");
    let mut h = HeaderMap::new();
    h.insert("x-github-event", HeaderValue::from_static("pull_request"));
    h.insert(
        "x-github-delivery",
        HeaderValue::from_str(&next_id()).expect("h"),
    );
    h.insert("x-github-hook-id", HeaderValue::from_static("292430182"));
    h.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&super::github::sign(super::github::SECRET, &body)).expect("h"),
    );
    event(github::parse(
        &h,
        &body,
        &Secret::new(super::github::SECRET),
    ))
}

const NEWER_HEAD: &str = "1111111111111111111111111111111111111111";

#[test]
fn stale_github_event_for_an_older_head_cancels_nothing_and_runs_nothing() {
    let db = Db::new();
    // go-scm's pull request #1: opened at d2b75aa7 on 2018-06-22, synchronized
    // to 8102e371 on 2018-06-25. The synchronize arrives first.
    let sync = db.accept_run(
        "synchronize",
        &github_pr("github/go-scm/pr_sync.json", |_| {}),
    );
    db.claim(sync);

    let late = db.accept(&github_pr("github/go-scm/pr_opened.json", |_| {}));
    assert_ignored("late opened", &late, "older");
    db.assert_running_untouched(sync);

    // Control: a newer push to the pull request still supersedes the running run.
    let newer = db.accept(&github_pr("github/go-scm/pr_sync.json", |p| {
        p["pull_request"]["head"]["sha"] = json!(NEWER_HEAD);
        p["pull_request"]["updated_at"] = json!("2018-06-25T19:30:00Z");
    }));
    match newer {
        Accepted::New {
            run: Some(_),
            cancel_running,
            ..
        } => assert_eq!(cancel_running, vec![sync]),
        other => panic!("newer head: {other:?}"),
    }
}

#[test]
fn stale_github_event_for_a_closed_pull_request_runs_nothing_until_reopened() {
    let mut db = Db::new();
    // Closed at 19:12:58; then the opening (of three days before) arrives.
    let closed = db.accept(&github_pr("github/go-scm/pr_closed.json", |_| {}));
    assert!(
        matches!(closed, Accepted::New { run: None, .. }),
        "{closed:?}"
    );
    db.restart();
    let late = db.accept(&github_pr("github/go-scm/pr_opened.json", |_| {}));
    assert_ignored("opened after closed", &late, "closed");

    // Control: reopened at 19:13:41 runs again, and the synchronize of 19:21:45
    // supersedes it.
    let reopened = db.accept_run(
        "reopened",
        &github_pr("github/go-scm/pr_reopened.json", |_| {}),
    );
    let sync = db.accept_run(
        "synchronize",
        &github_pr("github/go-scm/pr_sync.json", |_| {}),
    );
    assert_eq!(db.status(reopened), RunStatus::Cancelled);
    assert_eq!(db.status(sync), RunStatus::Queued);
    // A close that happened before the reopening, delivered late, closes nothing.
    let late_close = db.accept(&github_pr("github/go-scm/pr_closed.json", |p| {
        p["pull_request"]["title"] = json!("a different body, the same close");
    }));
    assert_ignored("late close", &late_close, "older");
    assert_eq!(db.status(sync), RunStatus::Queued);
}

/// A GitLab Merge Request (or Note) Hook fixture, edited by `edit`, under a fresh event UUID.
fn gitlab_hook(hook: &str, rel: &str, edit: impl FnOnce(&mut Value)) -> ForgeEvent {
    let mut payload = fixture_json(rel);
    edit(&mut payload);
    let body = serde_json::to_vec(&payload).expect("json");
    let mut h = super::gitlab::headers(hook, super::gitlab::TOKEN);
    h.insert(
        "x-gitlab-event-uuid",
        HeaderValue::from_str(&next_id()).expect("h"),
    );
    event(gitlab::parse(&h, &body, &Secret::new(super::gitlab::TOKEN)))
}

fn gitlab_mr(rel: &str, edit: impl FnOnce(&mut Value)) -> ForgeEvent {
    gitlab_hook(super::gitlab::MR, rel, edit)
}

#[test]
fn stale_gitlab_events_for_older_heads_or_a_merged_request_change_nothing() {
    let db = Db::new();
    // go-scm's merge request !1: opened 17:01:11, closed 17:02:46, reopened
    // 17:03:25, merged 17:08:07. Here new commits are pushed at 17:04:00, and
    // that update arrives first.
    let update = db.accept_run(
        "update",
        &gitlab_mr("gitlab/go-scm/pull_request_create.json", |p| {
            p["object_attributes"]["action"] = json!("update");
            p["object_attributes"]["oldrev"] = json!("c4c79227ed610f1151f05bbc5be33b4f340d39c8");
            p["object_attributes"]["last_commit"]["id"] = json!(NEWER_HEAD);
            p["object_attributes"]["updated_at"] = json!("2017-12-10 17:04:00 UTC");
        }),
    );
    db.claim(update);
    for rel in [
        "gitlab/go-scm/pull_request_create.json",
        "gitlab/go-scm/pull_request_close.json",
        "gitlab/go-scm/pull_request_reopen.json",
    ] {
        let late = db.accept(&gitlab_mr(rel, |_| {}));
        assert_ignored(rel, &late, "older");
        db.assert_running_untouched(update);
    }

    // Control: the merge, the newest event, is acted on.
    let merged = db.accept(&gitlab_mr("gitlab/go-scm/pull_request_merge.json", |_| {}));
    match merged {
        Accepted::New {
            run: None,
            cancel_running,
            ..
        } => assert_eq!(cancel_running, vec![update]),
        other => panic!("merge: {other:?}"),
    }
    // A `recheck` written at 17:05:14, before the merge, delivered after it.
    let recheck = db.accept(&gitlab_hook(
        super::gitlab::NOTE,
        "gitlab/go-scm/merge_request_comment_create.json",
        |p| p["object_attributes"]["note"] = json!("recheck"),
    ));
    assert_ignored("late recheck", &recheck, "merged");
}

/// A Gerrit event built from `gerrit/FORMAT.md` (see the gerrit tests),
/// edited by `edit` and presented with the right token.
fn gerrit_event(base: Value, edit: impl FnOnce(&mut Value)) -> ForgeEvent {
    let mut payload = base;
    edit(&mut payload);
    let body = serde_json::to_vec(&payload).expect("json");
    event(gerrit::parse(
        Some(super::gerrit::SECRET.as_bytes()),
        &body,
        &Secret::new(super::gerrit::SECRET),
    ))
}

/// Change 1234 at patchset `ps` (commit `rev`), event created at `created`.
fn gerrit_patchset(base: Value, ps: u32, rev: &str, created: u64) -> ForgeEvent {
    gerrit_event(base, |p| {
        p["patchSet"]["number"] = json!(ps);
        p["patchSet"]["revision"] = json!(rev);
        p["patchSet"]["ref"] = json!(format!("refs/changes/34/1234/{ps}"));
        p["eventCreatedOn"] = json!(created);
    })
}

fn rev(n: u32) -> String {
    format!("{n:08x}").repeat(5)
}

#[test]
fn stale_gerrit_events_for_older_patchsets_or_closed_changes_get_no_run() {
    let mut db = Db::new();
    let created = super::gerrit::patchset_created;
    let recheck = || super::gerrit::comment_added("Patch Set 1:\n\nrecheck");

    let ps2 = db.accept_run(
        "patchset 2",
        &gerrit_patchset(created(), 2, &rev(2), 1_718_000_200),
    );
    db.claim(ps2);
    db.restart();
    // Patchset 1 (uploaded before patchset 2) arrives late, and so does a recheck on it.
    let late = db.accept(&gerrit_patchset(created(), 1, &rev(1), 1_718_000_100));
    assert_ignored("late patchset 1", &late, "patchset 1");
    let late = db.accept(&gerrit_patchset(recheck(), 1, &rev(1), 1_718_000_150));
    assert_ignored("recheck of patchset 1", &late, "patchset 1");
    db.assert_running_untouched(ps2);

    // Control: patchset 3 supersedes patchset 2.
    let ps3 = match db.accept(&gerrit_patchset(created(), 3, &rev(3), 1_718_000_300)) {
        Accepted::New {
            run: Some(run),
            cancel_running,
            ..
        } => {
            assert_eq!(cancel_running, vec![ps2]);
            run
        }
        other => panic!("patchset 3: {other:?}"),
    };

    // Abandoned at ...400; a recheck written at ...350 arrives after that.
    let abandoned = db.accept(&gerrit_event(created(), |p| {
        p["type"] = json!("change-abandoned");
        p["abandoner"] = json!({"name": "Olga Owner"});
        p["change"]["status"] = json!("ABANDONED");
        p["patchSet"]["number"] = json!(3);
        p["patchSet"]["revision"] = json!(rev(3));
        p["eventCreatedOn"] = json!(1_718_000_400);
    }));
    assert!(
        matches!(abandoned, Accepted::New { run: None, .. }),
        "{abandoned:?}"
    );
    assert_eq!(db.status(ps3), RunStatus::Cancelled);
    let late = db.accept(&gerrit_patchset(recheck(), 3, &rev(3), 1_718_000_350));
    assert_ignored("recheck of an abandoned change", &late, "abandoned");

    // Control: restored at ...500, it runs again.
    db.accept_run(
        "restored",
        &gerrit_event(created(), |p| {
            p["type"] = json!("change-restored");
            p["restorer"] = json!({"name": "Olga Owner"});
            p["patchSet"]["number"] = json!(3);
            p["patchSet"]["revision"] = json!(rev(3));
            p["patchSet"]["ref"] = json!("refs/changes/34/1234/3");
            p["eventCreatedOn"] = json!(1_718_000_500);
        }),
    );

    // Merged at ...600 (the same shape as the events-log fixture's change-merged);
    // a recheck of ...550 arrives after that.
    let merged = db.accept(&gerrit_event(created(), |p| {
        p["type"] = json!("change-merged");
        p["submitter"] = json!({"name": "Sam Submitter"});
        p["change"]["status"] = json!("MERGED");
        p["patchSet"]["number"] = json!(3);
        p["patchSet"]["revision"] = json!(rev(3));
        p["eventCreatedOn"] = json!(1_718_000_600);
    }));
    assert!(
        matches!(merged, Accepted::New { run: None, .. }),
        "{merged:?}"
    );
    let late = db.accept(&gerrit_patchset(recheck(), 3, &rev(3), 1_718_000_550));
    assert_ignored("recheck of a merged change", &late, "merged");
}

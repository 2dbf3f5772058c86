//! Accepting events: de-duplication, superseding, cancelling, re-runs.

use super::*;
use crate::store::codec::{JOB_STATES, job_state_name, stream_name};
use crate::store::{RunStatus, StoreError};
use airlock_pipeline::log::Stream;

fn status(store: &Store, run: RunId) -> (RunStatus, Option<String>, bool) {
    let row = store.run(run).expect("query").expect("run exists");
    (row.status, row.reason, row.cancel_requested)
}

#[test]
fn duplicate_delivery_creates_nothing() {
    let (_dir, store) = open();
    let first = store
        .accept_event("app", &push("d-1", 1), 10)
        .expect("accept");
    let Accepted::New {
        event_id,
        run: Some(run),
        cancel_running,
    } = first
    else {
        panic!("{first:?}")
    };
    assert!(cancel_running.is_empty());
    // A redelivery reuses the delivery id, even if the payload differs.
    assert_eq!(
        store
            .accept_event("app", &push("d-1", 2), 11)
            .expect("accept"),
        Accepted::Duplicate
    );
    let counts = store.counts().expect("counts");
    assert_eq!((counts.events, counts.queued), (1, 1));
    let row = store.run(run).expect("query").expect("run");
    assert_eq!(
        (row.event_id, row.commit.as_str(), row.created_ms),
        (event_id, commit(1).as_str(), 10)
    );
    assert_eq!(row.event, push("d-1", 1));
    // The key is per forge: the same id from another forge is another event.
    let gerrit = ForgeEvent {
        forge: Forge::Gerrit,
        ..push("d-1", 1)
    };
    assert!(matches!(
        store.accept_event("app", &gerrit, 12).expect("accept"),
        Accepted::New { .. }
    ));
}

#[test]
fn the_same_body_under_another_delivery_is_a_replay_per_forge_and_within_a_batch() {
    let (_dir, store) = open();
    let body = |mut event: ForgeEvent, digest: char| {
        event.body_sha256 = Some(digest.to_string().repeat(64));
        event
    };
    // In one batch (group commit), the second copy sees the first.
    let batch = [
        ("app".to_string(), body(push("d-1", 1), 'a')),
        ("app".to_string(), body(push("d-2", 1), 'a')),
        ("app".to_string(), body(push("d-1", 1), 'a')),
    ];
    let accepted = store.accept_events(&batch, 10).expect("batch");
    let Accepted::New { event_id, .. } = accepted[0] else {
        panic!("{accepted:?}")
    };
    assert_eq!(
        accepted[1..],
        [Accepted::Replayed { event_id }, Accepted::Duplicate]
    );
    // The key is per forge, like the delivery id.
    let gerrit = ForgeEvent {
        forge: Forge::Gerrit,
        ..body(push("d-3", 1), 'a')
    };
    assert!(matches!(
        store.accept_event("app", &gerrit, 11).expect("accept"),
        Accepted::New { .. }
    ));
    let counts = store.counts().expect("counts");
    assert_eq!((counts.events, counts.queued), (2, 2));
}

#[test]
fn higher_patchset_supersedes_lower_ones() {
    let (_dir, store) = open();
    let ps1 = accept_run(&store, "core", &patchset("g-1", "1234", 1, 1), 1);
    let other_change = accept_run(&store, "core", &patchset("g-2", "999", 1, 2), 2);
    let main = accept_run(&store, "core", &push("p-1", 3), 3);
    let claimed = store
        .claim_next(10, &unlimited, 4)
        .expect("claim")
        .expect("a run");
    assert_eq!(claimed.id, ps1);

    // Patchset 2: patchset 1 is running, so it is flagged and returned.
    let accepted = store
        .accept_event("core", &patchset("g-3", "1234", 2, 4), 5)
        .expect("accept");
    let Accepted::New {
        run: Some(ps2),
        cancel_running,
        ..
    } = accepted
    else {
        panic!("{accepted:?}")
    };
    assert_eq!(cancel_running, vec![ps1]);
    assert_eq!(
        status(&store, ps1),
        (
            RunStatus::Running,
            Some("superseded by patchset 2".into()),
            true
        )
    );
    assert!(store.cancel_requested(ps1).expect("flag"));

    // A recheck of patchset 2 does not supersede patchset 2.
    let recheck = accept_run(&store, "core", &patchset("g-4", "1234", 2, 4), 6);
    assert_eq!(status(&store, ps2).0, RunStatus::Queued);

    // Patchset 3: the queued runs of patchset 2 are cancelled at once; the
    // running one is returned again, keeping its first reason.
    let accepted = store
        .accept_event("core", &patchset("g-5", "1234", 3, 5), 7)
        .expect("accept");
    let Accepted::New {
        run: Some(ps3),
        cancel_running,
        ..
    } = accepted
    else {
        panic!("{accepted:?}")
    };
    assert_eq!(cancel_running, vec![ps1]);
    for run in [ps2, recheck] {
        assert_eq!(
            status(&store, run),
            (
                RunStatus::Cancelled,
                Some("superseded by patchset 3".into()),
                false
            )
        );
        assert_eq!(
            store.run(run).expect("q").expect("run").finished_ms,
            Some(7)
        );
    }
    assert_eq!(
        status(&store, ps1).1.as_deref(),
        Some("superseded by patchset 2")
    );
    assert_eq!(status(&store, ps3).0, RunStatus::Queued);
    // Another change, or the same change number in another project, is untouched.
    assert_eq!(status(&store, other_change).0, RunStatus::Queued);
    assert_eq!(status(&store, main).0, RunStatus::Queued);
    let elsewhere = accept_run(&store, "other", &patchset("g-6", "1234", 1, 6), 8);
    accept_run(&store, "core", &patchset("g-7", "1234", 4, 7), 9);
    assert_eq!(status(&store, elsewhere).0, RunStatus::Queued);
}

#[test]
fn new_head_commit_supersedes_pull_request_runs() {
    let (_dir, store) = open();
    let first = accept_run(&store, "app", &pull("h-1", "5", 1), 1);
    let second = accept_run(&store, "app", &pull("h-2", "5", 2), 2);
    let short = &commit(2)[..12];
    assert_eq!(
        status(&store, first),
        (
            RunStatus::Cancelled,
            Some(format!("superseded by {short}")),
            false
        )
    );
    // Reopening the pull request at the same head runs it again but does not
    // cancel the run of that head.
    accept_run(&store, "app", &pull("h-3", "5", 2), 3);
    assert_eq!(status(&store, second).0, RunStatus::Queued);
}

/// A pull request head (patchset 0) that the forge dated `at_ms`.
fn pull_at(delivery: &str, number: &str, n: u32, at_ms: u64) -> ForgeEvent {
    let mut event = pull(delivery, number, n);
    if let Some(change) = event.change.as_mut() {
        change.event_ms = Some(at_ms);
    }
    event
}

#[test]
fn an_event_never_supersedes_the_run_of_a_newer_or_same_second_event() {
    let (_dir, store) = open();
    let first = accept_run(&store, "app", &pull_at("h-1", "5", 1, 2_000), 1);
    store
        .claim_next(10, &unlimited, 2)
        .expect("claim")
        .expect("run");
    // Another head in the same second: the two cannot be ordered, so both
    // run and neither cancels the other.
    let accepted = store
        .accept_event("app", &pull_at("h-2", "5", 2, 2_000), 3)
        .expect("accept");
    let Accepted::New {
        run: Some(second),
        cancel_running,
        ..
    } = accepted
    else {
        panic!("{accepted:?}")
    };
    assert_eq!(cancel_running, Vec::<RunId>::new());
    assert_eq!(status(&store, first), (RunStatus::Running, None, false));

    // An older head: stored as ignored, with its reason, and nothing else.
    let accepted = store
        .accept_event("app", &pull_at("h-3", "5", 3, 1_000), 4)
        .expect("accept");
    let Accepted::Ignored { event_id, reason } = accepted else {
        panic!("{accepted:?}")
    };
    assert!(
        reason.contains("older than the latest of change 5"),
        "{reason}"
    );
    let stored: Option<String> = store
        .lock()
        .query_row(
            "SELECT ignored FROM events WHERE id = ?1",
            [event_id],
            |r| r.get(0),
        )
        .expect("event row");
    assert_eq!(stored.as_deref(), Some(reason.as_str()));
    assert_eq!(status(&store, first), (RunStatus::Running, None, false));
    assert_eq!(status(&store, second).0, RunStatus::Queued);

    // Control: a strictly newer head supersedes both.
    let accepted = store
        .accept_event("app", &pull_at("h-4", "5", 4, 3_000), 5)
        .expect("accept");
    let Accepted::New {
        run: Some(fourth),
        cancel_running,
        ..
    } = accepted
    else {
        panic!("{accepted:?}")
    };
    assert_eq!(cancel_running, vec![first]);
    assert_eq!(status(&store, second).0, RunStatus::Cancelled);
    // Issue 19: an event the forge sent without a time cannot be ordered against dated ones,
    // so it supersedes none of them (it once cancelled the newer head's run): only runs of
    // other undated events, by arrival.
    let accepted = store
        .accept_event("app", &pull("h-5", "5", 5), 6)
        .expect("accept");
    assert!(
        matches!(&accepted, Accepted::New { cancel_running, .. } if cancel_running.is_empty()),
        "{accepted:?}"
    );
    assert_eq!(status(&store, fourth).0, RunStatus::Queued);
    let Accepted::New {
        run: Some(fifth), ..
    } = accepted
    else {
        panic!("{accepted:?}")
    };
    store
        .accept_event("app", &pull("h-6", "5", 6), 7)
        .expect("accept");
    assert_eq!(status(&store, fifth).0, RunStatus::Cancelled);
    assert_eq!(status(&store, fourth).0, RunStatus::Queued);
}

#[test]
fn cancel_change_cancels_every_run_of_the_change() {
    let (_dir, store) = open();
    let running = accept_run(&store, "core", &patchset("g-1", "77", 1, 1), 1);
    store
        .claim_next(10, &unlimited, 2)
        .expect("claim")
        .expect("run");
    let queued = accept_run(&store, "core", &patchset("g-2", "77", 1, 1), 3);
    let other = accept_run(&store, "core", &patchset("g-3", "78", 1, 2), 4);

    let accepted = store
        .accept_event("core", &cancel(Forge::Gerrit, "g-4", "77"), 5)
        .expect("accept");
    let Accepted::New {
        run,
        cancel_running,
        ..
    } = accepted
    else {
        panic!("{accepted:?}")
    };
    assert_eq!((run, cancel_running), (None, vec![running]));
    assert_eq!(
        status(&store, queued),
        (
            RunStatus::Cancelled,
            Some("change abandoned/closed".into()),
            false
        )
    );
    assert_eq!(
        status(&store, running),
        (
            RunStatus::Running,
            Some("change abandoned/closed".into()),
            true
        )
    );
    assert_eq!(status(&store, other).0, RunStatus::Queued);
    let counts = store.counts().expect("counts");
    assert_eq!((counts.events, counts.runs_by_status["cancelled"]), (4, 1));
}

#[test]
fn requeue_makes_a_new_run_for_a_finished_one() {
    let (_dir, store) = open();
    let run = accept_run(&store, "app", &push("d-1", 1), 1);
    assert_eq!(
        store.requeue(run, 2).expect("requeue"),
        None,
        "still queued"
    );
    store
        .claim_next(1, &unlimited, 3)
        .expect("claim")
        .expect("run");
    assert!(
        store
            .finish_run(run, RunStatus::Failed, Some("job test failed"), &[], 4)
            .expect("finish")
    );
    let again = store.requeue(run, 5).expect("requeue").expect("new run");
    let old = store.run(run).expect("q").expect("run");
    let new = store.run(again).expect("q").expect("run");
    assert_ne!(again, run);
    assert_eq!(
        (new.event_id, &new.git_ref, &new.commit, new.kind),
        (old.event_id, &old.git_ref, &old.commit, old.kind)
    );
    assert_eq!(
        (new.status, new.attempt, new.created_ms),
        (RunStatus::Queued, 0, 5)
    );
    assert_eq!(new.reason, Some(format!("re-run of run {run}")));
    assert!(matches!(
        store.requeue(12345, 6),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn stored_names_are_the_serde_names() {
    for state in JOB_STATES {
        assert_eq!(
            serde_json::to_value(state).expect("json"),
            job_state_name(state)
        );
    }
    for stream in [Stream::Stdout, Stream::Stderr, Stream::System] {
        assert_eq!(
            serde_json::to_value(stream).expect("json"),
            stream_name(stream)
        );
    }
    for status in RunStatus::ALL {
        assert_eq!(serde_json::to_value(status).expect("json"), status.as_str());
        assert_eq!(status.as_str().parse::<RunStatus>(), Ok(status));
    }
}

//! The queue: fairness, limits, cancellation.

use super::*;
use crate::store::{RunStatus, StoreError};

/// Claims until nothing is claimable; returns (project, run) in claim order.
fn claim_all(
    store: &Store,
    global: usize,
    limit: &dyn Fn(&str) -> usize,
    now_ms: u64,
) -> Vec<(String, RunId)> {
    let mut claimed = Vec::new();
    while let Some(run) = store.claim_next(global, limit, now_ms).expect("claim") {
        claimed.push((run.project, run.id));
    }
    claimed
}

#[test]
fn claims_alternate_between_projects() {
    let (_dir, store) = open();
    let a: Vec<RunId> = (0..5)
        .map(|i| accept_run(&store, "a", &push(&format!("a-{i}"), i), u64::from(i)))
        .collect();
    let b = accept_run(&store, "b", &push("b-0", 100), 10);
    let mut order = Vec::new();
    // Every claim at the same millisecond: rotation must not depend on the clock.
    while let Some(run) = store.claim_next(1, &unlimited, 20).expect("claim") {
        assert!(
            store
                .claim_next(1, &unlimited, 20)
                .expect("claim")
                .is_none(),
            "global limit 1"
        );
        order.push((run.project.clone(), run.id));
        assert!(
            store
                .finish_run(run.id, RunStatus::Passed, None, &[], 21)
                .expect("finish")
        );
    }
    let expected: Vec<(String, RunId)> = [
        ("a", a[0]),
        ("b", b),
        ("a", a[1]),
        ("a", a[2]),
        ("a", a[3]),
        ("a", a[4]),
    ]
    .into_iter()
    .map(|(p, r)| (p.to_string(), r))
    .collect();
    assert_eq!(order, expected);
}

#[test]
fn busy_project_does_not_starve_a_late_one() {
    let (_dir, store) = open();
    for i in 0..4 {
        accept_run(&store, "a", &push(&format!("a-{i}"), i), 1);
    }
    let first = store
        .claim_next(1, &unlimited, 2)
        .expect("claim")
        .expect("run");
    assert!(
        store
            .finish_run(first.id, RunStatus::Passed, None, &[], 3)
            .expect("finish")
    );
    // B arrives after A has been served once: it goes next, ahead of A's backlog.
    let b = accept_run(&store, "b", &push("b-0", 9), 4);
    let next = store
        .claim_next(1, &unlimited, 5)
        .expect("claim")
        .expect("run");
    assert_eq!((next.project.as_str(), next.id), ("b", b));
}

#[test]
fn per_project_and_global_limits_are_respected() {
    let (_dir, store) = open();
    for i in 0..3 {
        accept_run(&store, "a", &push(&format!("a-{i}"), i), 1);
        accept_run(&store, "b", &push(&format!("b-{i}"), 10 + i), 1);
    }
    let limit = |project: &str| if project == "a" { 1 } else { 2 };
    let claimed = claim_all(&store, 10, &limit, 2);
    let count = |p: &str| claimed.iter().filter(|(project, _)| project == p).count();
    assert_eq!((count("a"), count("b")), (1, 2));
    // Finishing A's run makes room for A only.
    let a_run = claimed
        .iter()
        .find(|(p, _)| p == "a")
        .map(|(_, id)| *id)
        .expect("an A run");
    assert!(
        store
            .finish_run(a_run, RunStatus::Passed, None, &[], 3)
            .expect("finish")
    );
    let next = claim_all(&store, 10, &limit, 4);
    assert_eq!(
        next.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        vec!["a"]
    );

    // Global limit: 3 running now, so a limit of 3 claims nothing more.
    accept_run(&store, "c", &push("c-0", 50), 5);
    assert!(store.claim_next(3, &unlimited, 6).expect("claim").is_none());
    let c = store
        .claim_next(4, &unlimited, 6)
        .expect("claim")
        .expect("run");
    assert_eq!(c.project, "c");
    // A project limit of 0 pauses the project.
    accept_run(&store, "d", &push("d-0", 60), 7);
    assert!(
        store
            .claim_next(100, &|p: &str| usize::from(p != "d"), 8)
            .expect("claim")
            .is_none()
    );
}

#[test]
fn a_global_limit_of_zero_claims_nothing() {
    // `concurrency = 0` in the config (intake only) relies on this: with no
    // run running, `0 >= 0` already says "full".
    let (_dir, store) = open();
    let run = accept_run(&store, "a", &push("a-0", 1), 1);
    assert!(store.claim_next(0, &unlimited, 2).expect("claim").is_none());
    let row = store.run(run).expect("query").expect("run");
    assert_eq!(
        (row.status, row.attempt, row.started_ms),
        (RunStatus::Queued, 0, None)
    );
    assert_eq!(
        store
            .claim_next(1, &unlimited, 3)
            .expect("claim")
            .map(|c| c.id),
        Some(run)
    );
}

#[test]
fn claim_marks_the_run_running_and_carries_the_event() {
    let (_dir, store) = open();
    let event = patchset("g-1", "42", 3, 7);
    let run = accept_run(&store, "core", &event, 1);
    let claimed = store
        .claim_next(1, &unlimited, 50)
        .expect("claim")
        .expect("run");
    assert_eq!(
        (claimed.id, claimed.project.as_str(), claimed.attempt),
        (run, "core", 1)
    );
    assert_eq!(
        (claimed.git_ref.as_str(), claimed.commit.as_str()),
        ("refs/changes/42/3", commit(7).as_str())
    );
    assert_eq!(claimed.event, event);
    let row = store.run(run).expect("q").expect("run");
    assert_eq!(
        (row.status, row.started_ms, row.attempt),
        (RunStatus::Running, Some(50), 1)
    );
    assert_eq!(
        (row.change_number.as_deref(), row.patchset),
        (Some("42"), Some(3))
    );
}

#[test]
fn request_cancel_cancels_queued_and_flags_running() {
    let (_dir, store) = open();
    let running = accept_run(&store, "app", &push("d-1", 1), 1);
    store
        .claim_next(10, &unlimited, 2)
        .expect("claim")
        .expect("run");
    let queued = accept_run(&store, "app", &push("d-2", 2), 3);

    assert!(
        store
            .request_cancel(queued, "cancelled by admin", 4)
            .expect("cancel")
    );
    let row = store.run(queued).expect("q").expect("run");
    assert_eq!(
        (row.status, row.reason.as_deref(), row.finished_ms),
        (RunStatus::Cancelled, Some("cancelled by admin"), Some(4))
    );
    assert!(
        store
            .claim_next(10, &unlimited, 5)
            .expect("claim")
            .is_none(),
        "a cancelled run is never claimed"
    );

    assert!(!store.cancel_requested(running).expect("flag"));
    assert!(
        store
            .request_cancel(running, "cancelled by admin", 6)
            .expect("cancel")
    );
    assert!(store.cancel_requested(running).expect("flag"));
    assert!(
        !store.request_cancel(running, "again", 7).expect("cancel"),
        "already flagged"
    );
    assert_eq!(
        store
            .run(running)
            .expect("q")
            .expect("run")
            .reason
            .as_deref(),
        Some("cancelled by admin")
    );
    assert!(
        store
            .finish_run(running, RunStatus::Cancelled, None, &[], 8)
            .expect("finish")
    );
    assert_eq!(
        store
            .run(running)
            .expect("q")
            .expect("run")
            .reason
            .as_deref(),
        Some("cancelled by admin")
    );
    assert!(
        !store.request_cancel(running, "late", 9).expect("cancel"),
        "already final"
    );
    assert!(matches!(
        store.request_cancel(999, "x", 10),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.cancel_requested(999),
        Err(StoreError::NotFound(_))
    ));
}

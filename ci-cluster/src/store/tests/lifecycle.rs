//! Finishing, recovery, the outbox, job data and persistence.

use airlock_pipeline::events::JobState;
use airlock_pipeline::log::{LogLine, Stream};
use airlock_pipeline::outputs::OutputFile;
use serde_json::json;

use super::*;
use crate::store::{
    JobUpdate, NewReport, Recovery, RunFilter, RunRow, RunStatus, SCHEMA_VERSION, StoreError,
};

fn report(body: &str) -> NewReport {
    NewReport {
        target: ReportTarget::Github {
            repo: "org/app".into(),
            sha: commit(1),
        },
        body: json!({ "state": body }),
    }
}

fn claimed_run(store: &Store, delivery: &str, now_ms: u64) -> RunId {
    let run = accept_run(store, "app", &push(delivery, 1), now_ms);
    let claimed = store
        .claim_next(100, &unlimited, now_ms)
        .expect("claim")
        .expect("run");
    assert_eq!(claimed.id, run);
    run
}

#[test]
fn finish_run_enqueues_reports_with_the_status_and_only_once() {
    let (_dir, store) = open();
    let run = claimed_run(&store, "d-1", 1);
    assert!(
        store
            .finish_run(run, RunStatus::Passed, None, &[report("success")], 9)
            .expect("finish")
    );
    let row = store.run(run).expect("q").expect("run");
    assert_eq!((row.status, row.finished_ms), (RunStatus::Passed, Some(9)));
    // A second finish (a retry after a lost reply, a racing cancel) changes nothing.
    assert!(
        !store
            .finish_run(
                run,
                RunStatus::Failed,
                Some("again"),
                &[report("failure")],
                10
            )
            .expect("finish")
    );
    let reports = store.reports(run).expect("reports");
    assert_eq!(reports.len(), 1);
    assert_eq!(
        (
            reports[0].body.clone(),
            reports[0].created_ms,
            reports[0].sent_ms
        ),
        (json!({"state": "success"}), 9, None)
    );
    assert_eq!(
        store.run(run).expect("q").expect("run").status,
        RunStatus::Passed
    );

    // Never claimed, or a non-final status: refused.
    let running = claimed_run(&store, "d-3", 11);
    let queued = accept_run(&store, "app", &push("d-2", 2), 12);
    assert!(
        !store
            .finish_run(queued, RunStatus::Passed, None, &[report("x")], 13)
            .expect("finish")
    );
    assert!(
        !store
            .finish_run(running, RunStatus::Queued, None, &[report("x")], 14)
            .expect("finish")
    );
    assert!(store.reports(queued).expect("reports").is_empty());
    assert!(store.reports(running).expect("reports").is_empty());
    assert!(matches!(
        store.finish_run(999, RunStatus::Passed, None, &[], 15),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn recover_requeues_then_fails_after_max_attempts() {
    let (_dir, store) = open();
    let run = claimed_run(&store, "d-1", 1);
    let job = JobUpdate {
        name: "test".into(),
        state: JobState::Running,
        attempts: 1,
        exit_code: None,
        detail: None,
        started_ms: Some(2),
        finished_ms: None,
    };
    store.set_job(run, &job, 2).expect("job");
    let fail = |row: &RunRow| {
        vec![report(&format!(
            "{}: {}",
            row.status.as_str(),
            row.reason.as_deref().unwrap_or("")
        ))]
    };

    let first = store.recover(2, &fail, 3).expect("recover");
    assert_eq!(
        first,
        Recovery {
            requeued: vec![run],
            ..Recovery::default()
        }
    );
    let row = store.run(run).expect("q").expect("run");
    assert_eq!(
        (row.status, row.reason.as_deref(), row.started_ms),
        (
            RunStatus::Queued,
            Some("interrupted by a restart, re-queued"),
            None
        )
    );
    assert!(
        store.jobs(run).expect("jobs").is_empty(),
        "the re-run reports its jobs afresh"
    );
    assert!(store.reports(run).expect("reports").is_empty());

    let again = store
        .claim_next(1, &unlimited, 4)
        .expect("claim")
        .expect("run");
    assert_eq!((again.id, again.attempt), (run, 2));
    let second = store.recover(2, &fail, 5).expect("recover");
    assert_eq!(
        second,
        Recovery {
            failed: vec![run],
            ..Recovery::default()
        }
    );
    let row = store.run(run).expect("q").expect("run");
    assert_eq!(
        (row.status, row.reason.as_deref(), row.finished_ms),
        (RunStatus::Error, Some("interrupted by a restart"), Some(5))
    );
    // Recovering again finds nothing: exactly one failure report.
    assert_eq!(
        store.recover(2, &fail, 6).expect("recover"),
        Recovery::default()
    );
    let reports = store.reports(run).expect("reports");
    assert_eq!(reports.len(), 1);
    assert_eq!(
        reports[0].body,
        json!({ "state": "error: interrupted by a restart" })
    );
}

#[test]
fn recover_finishes_a_run_whose_cancel_was_requested() {
    let (_dir, store) = open();
    let run = accept_run(&store, "core", &patchset("g-1", "5", 1, 1), 1);
    store
        .claim_next(1, &unlimited, 2)
        .expect("claim")
        .expect("run");
    accept_run(&store, "core", &patchset("g-2", "5", 2, 2), 3);
    let recovery = store
        .recover(3, &|_: &RunRow| Vec::new(), 4)
        .expect("recover");
    assert_eq!(
        recovery,
        Recovery {
            cancelled: vec![run],
            ..Recovery::default()
        }
    );
    let row = store.run(run).expect("q").expect("run");
    assert_eq!(
        (row.status, row.reason.as_deref()),
        (RunStatus::Cancelled, Some("superseded by patchset 2"))
    );
}

#[test]
fn report_retries_are_due_only_after_their_time_and_in_order() {
    let (_dir, store) = open();
    let a = claimed_run(&store, "d-1", 1);
    let b = claimed_run(&store, "d-2", 1);
    store
        .enqueue_reports(a, &[report("pending")], 2)
        .expect("enqueue");
    store
        .enqueue_reports(b, &[report("pending")], 2)
        .expect("enqueue");
    assert!(
        store
            .finish_run(a, RunStatus::Passed, None, &[report("success")], 3)
            .expect("finish")
    );
    let ids = |due: Vec<crate::store::PendingReport>| {
        due.into_iter()
            .map(|r| (r.run, r.attempts))
            .collect::<Vec<_>>()
    };

    // A's "success" waits behind A's "pending".
    let due = store.due_reports(3, 10).expect("due");
    let (a_pending, b_pending) = (due[0].id, due[1].id);
    assert_eq!(ids(due), vec![(a, 0), (b, 0)]);
    assert_eq!(store.due_reports(3, 1).expect("due").len(), 1, "limit");
    store
        .report_failed(a_pending, "HTTP 502", 1_000, false, 4)
        .expect("failed");
    store.report_sent(b_pending, 5).expect("sent");
    assert!(
        store.due_reports(999, 10).expect("due").is_empty(),
        "A's pending is not due, and blocks A's success"
    );
    let due = store.due_reports(1_000, 10).expect("due");
    assert_eq!(ids(due), vec![(a, 1)]);
    store
        .report_failed(a_pending, "HTTP 422", 2_000, true, 1_001)
        .expect("gave up");
    let due = store.due_reports(1_001, 10).expect("due");
    assert_eq!(
        ids(due.clone()),
        vec![(a, 0)],
        "after giving up on pending, success goes"
    );
    store.report_sent(due[0].id, 1_002).expect("sent");
    assert!(store.due_reports(u64::MAX, 10).expect("due").is_empty());

    let rows = store.reports(a).expect("reports");
    assert_eq!(
        (
            rows[0].attempts,
            rows[0].gave_up,
            rows[0].last_error.as_deref()
        ),
        (2, true, Some("HTTP 422"))
    );
    assert_eq!(
        (rows[0].sent_ms, rows[0].last_attempt_ms),
        (None, Some(1_001))
    );
    assert_eq!(
        (rows[1].attempts, rows[1].sent_ms, rows[1].gave_up),
        (1, Some(1_002), false)
    );
    // A late failure of an already sent report does not un-send it.
    store
        .report_failed(rows[1].id, "timeout", 5_000, false, 1_003)
        .expect("failed");
    assert_eq!(store.reports(a).expect("reports")[1].sent_ms, Some(1_002));
    assert_eq!(store.counts().expect("counts").reports_pending, 0);
    assert!(matches!(
        store.report_sent(999, 1),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.enqueue_reports(999, &[report("x")], 1),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn jobs_logs_and_outputs_round_trip() {
    let (_dir, store) = open();
    let run = claimed_run(&store, "d-1", 1);
    let mut build = JobUpdate {
        name: "build".into(),
        state: JobState::Running,
        attempts: 1,
        exit_code: None,
        detail: None,
        started_ms: Some(2),
        finished_ms: None,
    };
    store.set_job(run, &build, 2).expect("job");
    let test = JobUpdate {
        name: "test".into(),
        state: JobState::TimedOut,
        detail: Some("after 60s".into()),
        ..build.clone()
    };
    store.set_job(run, &test, 3).expect("job");
    build.state = JobState::Passed;
    build.exit_code = Some(0);
    build.finished_ms = Some(4);
    store.set_job(run, &build, 4).expect("job upsert");
    let out = OutputFile {
        path: "dist/app".into(),
        sha256: "ab".repeat(32),
        size: 1 << 40,
        executable: true,
    };
    store
        .set_outputs(run, "build", std::slice::from_ref(&out))
        .expect("outputs");
    store
        .set_outputs(run, "build", std::slice::from_ref(&out))
        .expect("outputs replaced, not duplicated");

    let jobs = store.jobs(run).expect("jobs");
    assert_eq!(
        jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(),
        vec!["build", "test"]
    );
    assert_eq!(
        (jobs[0].state, jobs[0].exit_code, jobs[0].finished_ms),
        (JobState::Passed, Some(0), Some(4))
    );
    assert_eq!(jobs[0].outputs, vec![out]);
    assert_eq!(
        (jobs[1].state, jobs[1].detail.as_deref()),
        (JobState::TimedOut, Some("after 60s"))
    );
    assert!(jobs[1].outputs.is_empty());

    let line = |i: u64| LogLine {
        at_ms: i,
        stream: if i.is_multiple_of(2) {
            Stream::Stdout
        } else {
            Stream::Stderr
        },
        text: format!("line {i}"),
    };
    store
        .append_log(run, "build", &[line(1), line(2), line(3)])
        .expect("log");
    store.append_log(run, "build", &[line(4)]).expect("log");
    store.append_log(run, "test", &[line(9)]).expect("log");
    let tail = store.log(run, "build", 1, 2).expect("log");
    assert_eq!(tail, vec![(2, line(2)), (3, line(3))]);
    assert_eq!(
        store.log(run, "build", 3, 100).expect("log"),
        vec![(4, line(4))]
    );
    assert_eq!(
        store.log(run, "test", 0, 100).expect("log"),
        vec![(1, line(9))]
    );
    assert!(matches!(
        store.set_job(999, &build, 1),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.append_log(999, "x", &[line(1)]),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn data_survives_reopening_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested/dir/ci.sqlite");
    let run = {
        let store = Store::open(&path).expect("open");
        let run = accept_run(&store, "app", &pull("h-1", "8", 1), 1);
        store
            .claim_next(1, &unlimited, 2)
            .expect("claim")
            .expect("run");
        store
            .append_log(
                run,
                "test",
                &[LogLine {
                    at_ms: 3,
                    stream: Stream::System,
                    text: "hi".into(),
                }],
            )
            .expect("log");
        assert!(
            store
                .finish_run(
                    run,
                    RunStatus::Failed,
                    Some("test failed"),
                    &[report("failure")],
                    4
                )
                .expect("finish")
        );
        accept_run(&store, "other", &push("d-9", 2), 5);
        run
    };
    let store = Store::open(&path).expect("reopen");
    assert_eq!(
        store
            .accept_event("app", &pull("h-1", "8", 1), 6)
            .expect("accept"),
        Accepted::Duplicate
    );
    let row = store.run(run).expect("q").expect("run");
    assert_eq!(
        (row.status, row.reason.as_deref(), row.event.clone()),
        (RunStatus::Failed, Some("test failed"), pull("h-1", "8", 1))
    );
    assert_eq!(store.log(run, "test", 0, 10).expect("log").len(), 1);
    assert_eq!(store.due_reports(10, 10).expect("due").len(), 1);

    let filter = RunFilter {
        project: Some("app".into()),
        ..RunFilter::default()
    };
    assert_eq!(
        store
            .runs(&filter)
            .expect("runs")
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        vec![run]
    );
    let all = store.runs(&RunFilter::default()).expect("runs");
    assert_eq!(all.len(), 2);
    assert!(all[0].id > all[1].id, "newest first");
    let page = RunFilter {
        limit: 1,
        offset: 1,
        ..RunFilter::default()
    };
    assert_eq!(
        store
            .runs(&page)
            .expect("runs")
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        vec![run]
    );
    let by_change = RunFilter {
        change: Some("8".into()),
        status: Some(RunStatus::Failed),
        git_ref: Some("refs/pull/8/head".into()),
        ..RunFilter::default()
    };
    assert_eq!(store.runs(&by_change).expect("runs").len(), 1);
    let by_commit = |commit: &str| RunFilter {
        commit: Some(commit.into()),
        ..RunFilter::default()
    };
    let ids = |f: &RunFilter| {
        store
            .runs(f)
            .expect("runs")
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&by_commit(&row.event.commit)), vec![run]);
    assert!(ids(&by_commit(&"f".repeat(40))).is_empty());
    let counts = store.counts().expect("counts");
    assert_eq!(
        (counts.events, counts.queued, counts.reports_pending),
        (2, 1, 1)
    );
    assert_eq!(
        (
            counts.runs_by_status["failed"],
            counts.runs_by_status["passed"]
        ),
        (1, 0)
    );
}

#[test]
fn schema_is_versioned_and_a_newer_one_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ci.sqlite");
    drop(Store::open(&path).expect("open"));
    let conn = rusqlite::Connection::open(&path).expect("raw open");
    let version: u32 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
    drop(Store::open(&path).expect("reopening migrates nothing"));
    conn.execute(
        "INSERT INTO schema_version (version, applied_ms) VALUES (?1, 0)",
        [SCHEMA_VERSION + 1],
    )
    .expect("bump");
    assert!(matches!(Store::open(&path), Err(StoreError::Corrupt(_))));
}

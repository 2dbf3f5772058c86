//! Engine behaviour against a scripted executor (the real sandbox is
//! exercised end to end in `tests/e2e/sandbox.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::*;
use crate::events::{JobState, RunEvent};
use crate::executor::{Execution, Executor, ExecutorError, ExitReason, JobRequest};
use crate::log::{LogSink, Stream};

/// What the scripted executor does for a job: fail the first `failures`
/// attempts, then sleep `delay` and pass (or hang until timeout / cancel).
#[derive(Clone, Copy, Default)]
struct Script {
    delay_ms: u64,
    failures: u32,
    hang: bool,
    /// Files written into the workspace when the job passes: (name, size in bytes).
    files: &'static [(&'static str, u64)],
}

#[derive(Default)]
struct Scripted {
    scripts: HashMap<String, Script>,
    attempts: Mutex<HashMap<String, u32>>,
    order: Mutex<Vec<(String, &'static str)>>,
}

impl Executor for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    async fn execute(
        &self,
        req: JobRequest,
        log: LogSink,
        cancel: CancellationToken,
    ) -> Result<Execution, ExecutorError> {
        let script = self.scripts.get(&req.job).copied().unwrap_or_default();
        let attempt = {
            let mut a = self.attempts.lock().expect("lock");
            let n = a.entry(req.job.clone()).or_insert(0);
            *n += 1;
            *n
        };
        self.order
            .lock()
            .expect("lock")
            .push((req.job.clone(), "start"));
        let started = SystemTime::now();
        log.push(
            Stream::Stdout,
            format!("hello from {} attempt {attempt}", req.job),
        );
        // Each job sees the outputs of what it needs.
        let marker = req.workspace.join(format!("{}.out", req.job));
        let reason = if script.hang {
            tokio::select! {
                _ = tokio::time::sleep(req.timeout) => ExitReason::TimedOut,
                _ = cancel.cancelled() => ExitReason::Cancelled,
            }
        } else if attempt <= script.failures {
            ExitReason::Exited(3)
        } else {
            tokio::time::sleep(Duration::from_millis(script.delay_ms)).await;
            let seen: Vec<String> = std::fs::read_dir(&req.workspace)
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().to_string())
                        .collect()
                })
                .unwrap_or_default();
            let _ = std::fs::write(&marker, seen.join(","));
            for (name, size) in script.files {
                let path = req.workspace.join(name);
                std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                let file = std::fs::File::create(path).expect("create");
                // Sparse: the size is what counts, not the disk it takes.
                file.set_len(*size).expect("set_len");
            }
            ExitReason::Exited(0)
        };
        self.order
            .lock()
            .expect("lock")
            .push((req.job.clone(), "end"));
        Ok(Execution {
            reason,
            started,
            finished: SystemTime::now(),
        })
    }
}

fn setup(text: &str, scripts: &[(&str, Script)]) -> (Plan, Arc<Scripted>, tempfile::TempDir) {
    let pipeline = crate::spec::parse("t.yaml", text.as_bytes()).expect("valid");
    let plan = Plan::new(&pipeline, &Selection::All).expect("plan");
    let exec = Arc::new(Scripted {
        scripts: scripts.iter().map(|(n, s)| (n.to_string(), *s)).collect(),
        ..Default::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("src")).expect("mkdir");
    std::fs::write(dir.path().join("src/README"), "source").expect("write");
    (plan, exec, dir)
}

fn state_of(report: &RunReport, name: &str) -> JobState {
    report
        .jobs
        .iter()
        .find(|j| j.name == name)
        .map(|j| j.state)
        .expect("job in report")
}

const DIAMOND: &str = "version: 1\njobs:\n  a: {run: x, outputs: [a.out]}\n  b: {run: x, needs: [a], outputs: [b.out]}\n  c: {run: x, needs: [a], outputs: [c.out]}\n  d: {run: x, needs: [b, c], outputs: [d.out]}\n";

#[tokio::test]
async fn diamond_runs_in_order_and_passes_outputs_down() {
    let (plan, exec, dir) = setup(
        DIAMOND,
        &[(
            "b",
            Script {
                delay_ms: 50,
                ..Default::default()
            },
        )],
    );
    let engine = Engine::new(exec.clone(), EngineConfig::new(dir.path().join("work")));
    let mut events = engine.subscribe();
    let report = engine
        .run(&plan, &dir.path().join("src"), CancellationToken::new())
        .await;
    assert!(report.passed(), "{report:#?}");
    let order = exec.order.lock().expect("lock").clone();
    let pos = |job: &str, what: &str| {
        order
            .iter()
            .position(|(j, w)| j == job && *w == what)
            .expect("event")
    };
    assert!(pos("a", "end") < pos("b", "start") && pos("a", "end") < pos("c", "start"));
    assert!(pos("b", "end") < pos("d", "start") && pos("c", "end") < pos("d", "start"));
    // d's workspace held the source and the outputs of a, b and c (transitively).
    let d_saw = std::fs::read_to_string(dir.path().join("work/jobs/d/d.out")).expect("d output");
    for name in ["README", "a.out", "b.out", "c.out"] {
        assert!(d_saw.contains(name), "d saw {d_saw}");
    }
    let d = report.jobs.iter().find(|j| j.name == "d").expect("d");
    assert_eq!(d.outputs.len(), 1);
    assert_eq!(d.outputs[0].sha256.len(), 64);
    // Events: every job went pending -> running -> passed, and the run finished.
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let RunEvent::Job { job, state, .. } = &e {
            seen.push((job.clone(), *state));
        }
        if let RunEvent::Finished { passed, .. } = e {
            assert!(passed);
        }
    }
    for job in ["a", "b", "c", "d"] {
        let states: Vec<JobState> = seen
            .iter()
            .filter(|(j, _)| j == job)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(
            states,
            [JobState::Pending, JobState::Running, JobState::Passed],
            "{job}"
        );
    }
}

#[tokio::test]
async fn failure_skips_dependents_while_an_independent_branch_finishes() {
    let text = "version: 1\njobs:\n  broken: {run: x}\n  after: {run: x, needs: [broken]}\n  later: {run: x, needs: [after]}\n  slow: {run: x}\n";
    let (plan, exec, dir) = setup(
        text,
        &[
            (
                "broken",
                Script {
                    failures: 1,
                    ..Default::default()
                },
            ),
            (
                "slow",
                Script {
                    delay_ms: 300,
                    ..Default::default()
                },
            ),
        ],
    );
    let engine = Engine::new(exec.clone(), EngineConfig::new(dir.path().join("work")));
    let report = engine
        .run(&plan, &dir.path().join("src"), CancellationToken::new())
        .await;
    assert!(!report.passed());
    assert_eq!(state_of(&report, "broken"), JobState::Failed);
    assert_eq!(state_of(&report, "after"), JobState::Skipped);
    assert_eq!(state_of(&report, "later"), JobState::Skipped);
    assert_eq!(state_of(&report, "slow"), JobState::Passed);
    let order = exec.order.lock().expect("lock").clone();
    let broken_end = order
        .iter()
        .position(|(j, w)| j == "broken" && *w == "end")
        .expect("end");
    let slow_end = order
        .iter()
        .position(|(j, w)| j == "slow" && *w == "end")
        .expect("end");
    assert!(
        slow_end > broken_end,
        "slow finished after its sibling failed: {order:?}"
    );
    let broken = report
        .jobs
        .iter()
        .find(|j| j.name == "broken")
        .expect("job");
    assert_eq!(broken.exit_code, Some(3));
    let after = report.jobs.iter().find(|j| j.name == "after").expect("job");
    assert_eq!(
        after.detail.as_deref(),
        Some("needs 'broken', which did not pass")
    );
}

#[tokio::test]
async fn retries_until_it_passes() {
    let text =
        "version: 1\njobs:\n  flaky: {run: x, retries: 2}\n  hopeless: {run: x, retries: 1}\n";
    let (plan, exec, dir) = setup(
        text,
        &[
            (
                "flaky",
                Script {
                    failures: 2,
                    ..Default::default()
                },
            ),
            (
                "hopeless",
                Script {
                    failures: 5,
                    ..Default::default()
                },
            ),
        ],
    );
    let engine = Engine::new(exec, EngineConfig::new(dir.path().join("work")));
    let report = engine
        .run(&plan, &dir.path().join("src"), CancellationToken::new())
        .await;
    let flaky = report.jobs.iter().find(|j| j.name == "flaky").expect("job");
    assert_eq!((flaky.state, flaky.attempts), (JobState::Passed, 3));
    assert!(
        flaky
            .log
            .lines
            .iter()
            .any(|l| l.text.contains("attempt 3 of 3"))
    );
    let hopeless = report
        .jobs
        .iter()
        .find(|j| j.name == "hopeless")
        .expect("job");
    assert_eq!((hopeless.state, hopeless.attempts), (JobState::Failed, 2));
}

#[tokio::test]
async fn timeout_is_reported() {
    let text =
        "version: 1\njobs:\n  stuck: {run: x, timeout: 200ms}\n  next: {run: x, needs: [stuck]}\n";
    let (plan, exec, dir) = setup(
        text,
        &[(
            "stuck",
            Script {
                hang: true,
                ..Default::default()
            },
        )],
    );
    let engine = Engine::new(exec, EngineConfig::new(dir.path().join("work")));
    let report = engine
        .run(&plan, &dir.path().join("src"), CancellationToken::new())
        .await;
    assert_eq!(state_of(&report, "stuck"), JobState::TimedOut);
    assert_eq!(state_of(&report, "next"), JobState::Skipped);
}

#[tokio::test]
async fn cancel_stops_running_jobs_and_never_starts_the_rest() {
    let text = "version: 1\njobs:\n  a: {run: x}\n  b: {run: x}\n  c: {run: x, needs: [a]}\n";
    let (plan, exec, dir) = setup(
        text,
        &[
            (
                "a",
                Script {
                    hang: true,
                    ..Default::default()
                },
            ),
            (
                "b",
                Script {
                    hang: true,
                    ..Default::default()
                },
            ),
        ],
    );
    let engine = Engine::new(exec.clone(), EngineConfig::new(dir.path().join("work")));
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let report = tokio::time::timeout(
        Duration::from_secs(10),
        engine.run(&plan, &dir.path().join("src"), cancel),
    )
    .await
    .expect("cancel ends the run");
    assert!(report.cancelled && !report.passed());
    assert_eq!(state_of(&report, "a"), JobState::Cancelled);
    assert_eq!(state_of(&report, "b"), JobState::Cancelled);
    assert_eq!(state_of(&report, "c"), JobState::Cancelled);
    assert!(
        !exec
            .order
            .lock()
            .expect("lock")
            .iter()
            .any(|(j, _)| j == "c"),
        "c never started"
    );
}

#[tokio::test]
async fn concurrency_limit_is_respected() {
    let text =
        "version: 1\njobs:\n  j1: {run: x}\n  j2: {run: x}\n  j3: {run: x}\n  j4: {run: x}\n";
    let slow = Script {
        delay_ms: 50,
        ..Default::default()
    };
    let (plan, exec, dir) = setup(
        text,
        &[("j1", slow), ("j2", slow), ("j3", slow), ("j4", slow)],
    );
    let mut config = EngineConfig::new(dir.path().join("work"));
    config.concurrency = 2;
    let engine = Engine::new(exec.clone(), config);
    assert!(
        engine
            .run(&plan, &dir.path().join("src"), CancellationToken::new())
            .await
            .passed()
    );
    let mut now = 0i32;
    let mut peak = 0;
    for (_, what) in exec.order.lock().expect("lock").iter() {
        now += if *what == "start" { 1 } else { -1 };
        peak = peak.max(now);
    }
    assert_eq!(peak, 2);
}

#[tokio::test]
async fn a_missing_output_fails_the_job() {
    let text = "version: 1\njobs:\n  a: {run: x, outputs: [never-written]}\n";
    let (plan, exec, dir) = setup(text, &[]);
    let engine = Engine::new(exec, EngineConfig::new(dir.path().join("work")));
    let report = engine
        .run(&plan, &dir.path().join("src"), CancellationToken::new())
        .await;
    let a = &report.jobs[0];
    assert_eq!(a.state, JobState::Failed);
    assert!(
        a.detail
            .as_deref()
            .unwrap_or("")
            .contains("was not produced"),
        "{:?}",
        a.detail
    );
}

/// Blobs in the run's content store.
fn stored_blobs(work: &std::path::Path) -> Vec<String> {
    match std::fs::read_dir(work.join("outputs/sha256")) {
        Ok(dir) => dir
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("listing the store: {e}"),
    }
}

const BIG_OUTPUTS: &str = "version: 1\njobs:\n  build: {run: x, outputs: [build.out, dist]}\n  ship: {run: x, needs: [build], outputs: [ship.out]}\n";

fn limits(file: u64, total: u64) -> crate::outputs::OutputLimits {
    use crate::outputs::{OutputLimits, SizeLimit};
    OutputLimits {
        max_file: Some(SizeLimit::new(file, "artifacts.max_output_size")),
        max_total: Some(SizeLimit::new(total, "artifacts.max_job_outputs_size")),
        ..OutputLimits::unlimited()
    }
}

#[tokio::test]
async fn an_output_over_the_per_file_limit_fails_the_job_and_nothing_of_it_is_stored() {
    let script = Script {
        files: &[("dist/big.bin", 2_202_010), ("dist/small.txt", 10)],
        ..Default::default()
    };
    for (limit, passes) in [(1 << 20, false), (4 << 20, true)] {
        let (plan, exec, dir) = setup(BIG_OUTPUTS, &[("build", script)]);
        let work = dir.path().join("work");
        let mut config = EngineConfig::new(&work);
        config.outputs = limits(limit, 64 << 20);
        let report = Engine::new(exec, config)
            .run(&plan, &dir.path().join("src"), CancellationToken::new())
            .await;
        let build = report
            .jobs
            .iter()
            .find(|j| j.name == "build")
            .expect("build");
        if passes {
            // Control: under a higher limit the same outputs pass and are stored.
            assert!(report.passed(), "{:?}", build.detail);
            assert_eq!(build.outputs.len(), 3);
            assert_eq!(
                stored_blobs(&work).len(),
                4,
                "build.out, big.bin, small.txt and ship.out"
            );
            continue;
        }
        assert_eq!(build.state, JobState::Failed);
        assert_eq!(
            build.detail.as_deref(),
            Some(
                "output 'dist/big.bin' is 2.1 MiB, over the limit of 1 MiB (artifacts.max_output_size)"
            )
        );
        assert!(build.outputs.is_empty());
        assert!(
            stored_blobs(&work).is_empty(),
            "nothing of the job is stored: {:?}",
            stored_blobs(&work)
        );
        assert!(
            build
                .log
                .lines
                .iter()
                .any(|l| l.text.contains("over the limit of 1 MiB")),
            "the job's log says why"
        );
        assert_eq!(state_of(&report, "ship"), JobState::Skipped);
    }
}

#[tokio::test]
async fn outputs_over_the_per_job_limit_fail_the_job_and_nothing_is_stored() {
    let script = Script {
        files: &[("dist/a.bin", 700 << 10), ("dist/b.bin", 600 << 10)],
        ..Default::default()
    };
    for (total, passes) in [(1 << 20, false), (2 << 20, true)] {
        let (plan, exec, dir) = setup(BIG_OUTPUTS, &[("build", script)]);
        let work = dir.path().join("work");
        let mut config = EngineConfig::new(&work);
        // Each file is under the per-file limit; together they are not.
        config.outputs = limits(1 << 20, total);
        let report = Engine::new(exec, config)
            .run(&plan, &dir.path().join("src"), CancellationToken::new())
            .await;
        let build = report
            .jobs
            .iter()
            .find(|j| j.name == "build")
            .expect("build");
        if passes {
            assert!(report.passed(), "{:?}", build.detail);
            assert_eq!(stored_blobs(&work).len(), 4, "both files and two markers");
            continue;
        }
        assert_eq!(build.state, JobState::Failed);
        let detail = build.detail.as_deref().unwrap_or("");
        assert!(
            detail.contains(
                "outputs come to 1.3 MiB, over the limit of 1 MiB (artifacts.max_job_outputs_size)"
            ) && detail.contains("'dist/a.bin' (700 KiB)"),
            "{detail}"
        );
        assert!(stored_blobs(&work).is_empty());
    }
}

#[tokio::test]
async fn the_default_limits_are_one_gib_per_file_and_four_per_job() {
    let config = EngineConfig::new("/nonexistent");
    let file = config.outputs.max_file.expect("per-file limit");
    let total = config.outputs.max_total.expect("per-job limit");
    assert_eq!((file.bytes, total.bytes), (1 << 30, 4 << 30));
    // A sparse 1 GiB + 1 byte output costs a stat, not a read: refused at once.
    let script = Script {
        files: &[("dist/huge.bin", (1 << 30) + 1)],
        ..Default::default()
    };
    let (plan, exec, dir) = setup(BIG_OUTPUTS, &[("build", script)]);
    let work = dir.path().join("work");
    let report = Engine::new(exec, EngineConfig::new(&work))
        .run(&plan, &dir.path().join("src"), CancellationToken::new())
        .await;
    let build = report
        .jobs
        .iter()
        .find(|j| j.name == "build")
        .expect("build");
    assert_eq!(
        build.detail.as_deref(),
        Some(
            "output 'dist/huge.bin' is 1 GiB (1073741825 bytes), over the limit of 1 GiB (1073741824 bytes) (the default per-file output limit)"
        )
    );
    assert!(stored_blobs(&work).is_empty());
}

fn job<'a>(report: &'a RunReport, name: &str) -> &'a JobReport {
    report
        .jobs
        .iter()
        .find(|j| j.name == name)
        .expect("job in report")
}

/// Issue 19: the run as a whole has a cap on output files, taken before any is hashed.
#[tokio::test]
async fn the_runs_output_count_is_capped_across_its_jobs() {
    use crate::outputs::{CountLimit, OutputLimits, RunOutputCount};
    const TWO: &str = "version: 1\njobs:\n  a: {run: x, outputs: [a.out, dist]}\n  b: {run: x, outputs: [b.out, dist]}\n";
    let script = Script {
        files: &[("dist/1", 1), ("dist/2", 1)],
        ..Default::default()
    };
    // Each job has 3 outputs: 6 fit, 5 do not.
    for (limit, passes) in [(6, true), (5, false)] {
        let (plan, exec, dir) = setup(TWO, &[("a", script), ("b", script)]);
        let work = dir.path().join("work");
        let mut config = EngineConfig::new(&work);
        config.outputs = OutputLimits {
            max_run_files: Some(RunOutputCount::new(CountLimit::new(
                limit,
                "artifacts.max_run_outputs",
            ))),
            ..OutputLimits::unlimited()
        };
        let engine = Engine::new(exec, config);
        // Two runs of the same engine: each run has a count of its own.
        for _ in 0..2 {
            let report = engine
                .run(&plan, &dir.path().join("src"), CancellationToken::new())
                .await;
            if passes {
                assert!(report.passed(), "{report:?}");
                continue;
            }
            let failed: Vec<&JobReport> = report
                .jobs
                .iter()
                .filter(|j| j.state == JobState::Failed)
                .collect();
            assert_eq!(failed.len(), 1, "{report:?}");
            assert_eq!(
                failed[0].detail.as_deref(),
                Some(
                    "the job's 3 output files would bring the run's to 6, over the limit of 5 files (artifacts.max_run_outputs)"
                )
            );
            assert!(failed[0].outputs.is_empty());
        }
    }
}

/// Issue 19: collecting and storing outputs is part of the job's time; a job whose timeout
/// has run out by then times out instead of hashing on after it.
#[tokio::test]
async fn outputs_are_collected_within_the_jobs_timeout() {
    const SLOW: &str = "version: 1\njobs:\n  slow: {run: x, timeout: 3s, outputs: [dist]}\n";
    // The scripted executor does not enforce timeouts: the script "passes" after its delay.
    for (delay_ms, passes) in [(0, true), (3500, false)] {
        let script = Script {
            delay_ms,
            files: &[("dist/1", 1), ("dist/2", 1)],
            ..Default::default()
        };
        let (plan, exec, dir) = setup(SLOW, &[("slow", script)]);
        let work = dir.path().join("work");
        let report = Engine::new(exec, EngineConfig::new(&work))
            .run(&plan, &dir.path().join("src"), CancellationToken::new())
            .await;
        let slow = job(&report, "slow");
        if passes {
            assert_eq!(slow.state, JobState::Passed, "{:?}", slow.detail);
            assert_eq!(slow.outputs.len(), 2);
            continue;
        }
        assert_eq!(slow.state, JobState::TimedOut, "{:?}", slow.detail);
        assert_eq!(
            slow.detail.as_deref(),
            Some("the job's timeout ran out while its outputs were collected (0 of 2 files done)")
        );
        assert!(stored_blobs(&work).is_empty(), "{:?}", stored_blobs(&work));
    }
}

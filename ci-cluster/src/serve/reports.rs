//! Reports back to the forge: built when a run starts and ends, stored in the
//! outbox table in the same transaction as the run's state, and sent by a
//! worker that retries with exponential backoff, so a forge being down
//! delays a report and never loses it.

use std::time::Duration;

use airlock_pipeline::dag::RunReport;

use crate::kernel::{AppState, now_ms};
use crate::report::{JobLine, ReportBody, ReportError, ReportStatus, Reporter, RetryPolicy};
use crate::store::{ClaimedRun, NewReport, RunRow, RunStatus};

fn run_url(state: &AppState, run: i64) -> String {
    format!("{}/runs/{run}", state.config.public_url)
}

fn body(
    state: &AppState,
    run: i64,
    project: &str,
    git_ref: &str,
    commit: &str,
    status: ReportStatus,
    jobs: Vec<JobLine>,
) -> serde_json::Value {
    let body = ReportBody {
        run_id: run,
        project: project.to_string(),
        status,
        url: run_url(state, run),
        git_ref: git_ref.to_string(),
        commit: commit.to_string(),
        jobs,
    };
    serde_json::to_value(body).unwrap_or_default()
}

/// A report on a claimed run, to the forge its event came from.
fn claimed_report(
    state: &AppState,
    run: &ClaimedRun,
    status: ReportStatus,
    jobs: Vec<JobLine>,
) -> NewReport {
    let e = &run.event;
    NewReport {
        target: e.report.clone(),
        body: body(
            state,
            run.id,
            &run.project,
            &e.git_ref,
            &e.commit,
            status,
            jobs,
        ),
    }
}

/// "Pending" at the start of a run (GitHub and GitLab show it; Gerrit ignores it).
pub fn pending_report(state: &AppState, run: &ClaimedRun) -> NewReport {
    claimed_report(state, run, ReportStatus::Pending, Vec::new())
}

fn status_of(status: RunStatus) -> ReportStatus {
    match status {
        RunStatus::Passed => ReportStatus::Passed,
        RunStatus::Failed => ReportStatus::Failed,
        RunStatus::Cancelled => ReportStatus::Cancelled,
        RunStatus::Error | RunStatus::Queued | RunStatus::Running => ReportStatus::Error,
    }
}

/// The final verdict with every job's result and duration.
pub fn final_report(
    state: &AppState,
    run: &ClaimedRun,
    status: RunStatus,
    report: Option<&RunReport>,
) -> NewReport {
    let jobs = report
        .map(|r| {
            r.jobs
                .iter()
                .map(|j| JobLine {
                    name: j.name.clone(),
                    state: j.state.as_str().to_string(),
                    duration_ms: j.duration_ms(),
                })
                .collect()
        })
        .unwrap_or_default();
    claimed_report(state, run, status_of(status), jobs)
}

/// The report for a run that recovery finished (failed after restarts, or cancelled).
pub fn interrupted_report(state: &AppState, row: &RunRow) -> Vec<NewReport> {
    let project_reports = state.config.project(&row.project).is_some_and(|p| p.report);
    if !project_reports {
        return Vec::new();
    }
    vec![NewReport {
        target: row.event.report.clone(),
        body: body(
            state,
            row.id,
            &row.project,
            &row.git_ref,
            &row.commit,
            status_of(row.status),
            Vec::new(),
        ),
    }]
}

/// Sends due reports until shutdown.
pub async fn report_loop<R: Reporter + 'static>(state: AppState, reporter: R) {
    loop {
        let store = state.store.clone();
        let due = tokio::task::spawn_blocking(move || store.due_reports(now_ms(), 32)).await;
        let due = match due {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the report outbox");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        for pending in due {
            let outcome = match serde_json::from_value::<ReportBody>(pending.body.clone()) {
                Ok(body) => reporter.report(&pending.target, &body).await,
                Err(e) => Err(ReportError::Permanent(format!(
                    "unreadable report body: {e}"
                ))),
            };
            let store = state.store.clone();
            let attempts = pending.attempts + 1;
            let result = tokio::task::spawn_blocking(move || match outcome {
                Ok(()) => store.report_sent(pending.id, now_ms()),
                Err(ReportError::Transient(why)) => {
                    let delay = RetryPolicy::REPORTS.delay_after(attempts, pending.id as u64);
                    let give_up = delay.is_none();
                    let delay_ms = delay.map_or(0, |d| d.as_millis() as u64);
                    tracing::warn!(report = pending.id, attempts, give_up, error = %why, "report failed");
                    store.report_failed(pending.id, &why, now_ms() + delay_ms, give_up, now_ms())
                }
                Err(ReportError::Permanent(why)) => {
                    tracing::error!(report = pending.id, error = %why, "report refused; giving up");
                    store.report_failed(pending.id, &why, now_ms(), true, now_ms())
                }
            })
            .await;
            if let Ok(Err(e)) = result {
                tracing::error!(error = %e, "cannot update the report outbox");
            }
        }
        tokio::select! {
            _ = state.reports_queued.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = state.shutdown.cancelled() => break,
        }
    }
}

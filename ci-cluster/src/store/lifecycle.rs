//! The end of a run: finishing it with its reports, and crash recovery.

use rusqlite::{OptionalExtension, params};

use super::codec::to_i64;
use super::outbox::insert_reports;
use super::query::{RUN_SELECT, load_run, run_from_row};
use super::types::{NewReport, Recovery, RunId, RunRow, RunStatus};
use super::{Store, StoreError};

/// Reason given to a run re-queued by [`Store::recover`].
pub const REASON_REQUEUED: &str = "interrupted by a restart, re-queued";
/// Reason given to a run [`Store::recover`] gave up on.
pub const REASON_INTERRUPTED: &str = "interrupted by a restart";

impl Store {
    /// Finishes a running run: its final status, reason (kept from before
    /// when `None`, e.g. "superseded by patchset 3") and `finished_ms`, AND
    /// `reports` in the outbox, in one transaction. Either both survive a
    /// crash or neither does, which is what makes every final result reported
    /// exactly once.
    ///
    /// Returns `Ok(false)` and changes nothing if the run is not `Running`
    /// (already final, or never claimed) or `status` is not final.
    pub fn finish_run(
        &self,
        run: RunId,
        status: RunStatus,
        reason: Option<&str>,
        reports: &[NewReport],
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        if !status.is_final() {
            tracing::warn!(
                run,
                status = status.as_str(),
                "store: finish_run with a non-final status refused"
            );
            return Ok(false);
        }
        self.write(|tx| {
            let current: Option<String> =
                tx.query_row("SELECT status FROM runs WHERE id = ?1", [run], |r| r.get(0)).optional()?;
            match current.as_deref() {
                None => return Err(StoreError::NotFound(format!("run {run}"))),
                Some("running") => {}
                Some(_) => return Ok(false),
            }
            tx.execute(
                "UPDATE runs SET status = ?2, reason = COALESCE(?3, reason), finished_ms = ?4 WHERE id = ?1",
                params![run, status.as_str(), reason, to_i64(now_ms)],
            )?;
            insert_reports(tx, run, reports, now_ms)?;
            Ok(true)
        })
    }

    /// Startup recovery after a crash, in one transaction: every `Running`
    /// run was interrupted (no runner survives a restart), and
    /// - if a cancel had been requested, it becomes `Cancelled` (running a
    ///   superseded change again would be wasted work);
    /// - else if `attempt < max_attempts`, it is re-queued with reason
    ///   "interrupted by a restart, re-queued", its job rows and outputs
    ///   cleared (the re-run reports them afresh; logs are kept, as history);
    /// - else it becomes `Error` with reason "interrupted by a restart".
    ///
    /// For each run finished here, `fail_reports` gets the run as it now
    /// stands (final status, reason, `finished_ms`) and its reports are
    /// enqueued in the same transaction, so the result is reported once.
    pub fn recover(
        &self,
        max_attempts: u32,
        fail_reports: &dyn Fn(&RunRow) -> Vec<NewReport>,
        now_ms: u64,
    ) -> Result<Recovery, StoreError> {
        let recovery = self.write(|tx| {
            let mut recovery = Recovery::default();
            let interrupted = {
                let sql = format!("{RUN_SELECT} WHERE r.status = 'running' ORDER BY r.id");
                let mut stmt = tx.prepare(&sql)?;
                stmt.query_map([], run_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?
            };
            for run in interrupted {
                let id = run.id;
                if !run.cancel_requested && run.attempt < max_attempts {
                    tx.execute(
                        "UPDATE runs SET status = 'queued', reason = ?2, started_ms = NULL WHERE id = ?1",
                        params![id, REASON_REQUEUED],
                    )?;
                    tx.execute("DELETE FROM job_outputs WHERE run_id = ?1", [id])?;
                    tx.execute("DELETE FROM jobs WHERE run_id = ?1", [id])?;
                    recovery.requeued.push(id);
                    continue;
                }
                let (status, reason) = if run.cancel_requested {
                    // Keep the reason the cancel was asked with.
                    (RunStatus::Cancelled, run.reason.as_deref().unwrap_or(REASON_INTERRUPTED).to_string())
                } else {
                    (RunStatus::Error, REASON_INTERRUPTED.to_string())
                };
                tx.execute(
                    "UPDATE runs SET status = ?2, reason = ?3, finished_ms = ?4 WHERE id = ?1",
                    params![id, status.as_str(), reason, to_i64(now_ms)],
                )?;
                let finished = load_run(tx, id)?.ok_or_else(|| StoreError::NotFound(format!("run {id}")))?;
                insert_reports(tx, id, &fail_reports(&finished), now_ms)?;
                match status {
                    RunStatus::Cancelled => recovery.cancelled.push(id),
                    _ => recovery.failed.push(id),
                }
            }
            Ok(recovery)
        })?;
        if recovery != Recovery::default() {
            tracing::warn!(
                requeued = ?recovery.requeued,
                failed = ?recovery.failed,
                cancelled = ?recovery.cancelled,
                "store: recovered runs interrupted by a restart"
            );
        }
        Ok(recovery)
    }
}

//! The report outbox: verdicts and statuses waiting to be delivered to forges.
//!
//! A report is inserted in the same transaction as the state it announces, so
//! after a crash either both exist or neither does; the sender then retries it
//! with backoff until it is sent or given up. A forge being down delays a
//! report and never loses it.

use rusqlite::{Connection, params};

use super::codec::{get_json, to_i64, to_json};
use super::query::require_run;
use super::types::{NewReport, PendingReport, RunId};
use super::{Store, StoreError};

/// Inserts `reports` for `run`, due at once. Callers hold a transaction.
pub(super) fn insert_reports(
    conn: &Connection,
    run: RunId,
    reports: &[NewReport],
    now_ms: u64,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(
        "INSERT INTO reports (run_id, target, body, created_ms, next_attempt_ms) VALUES (?1, ?2, ?3, ?4, ?4)",
    )?;
    for report in reports {
        stmt.execute(params![
            run,
            to_json(&report.target)?,
            to_json(&report.body)?,
            to_i64(now_ms)
        ])?;
    }
    Ok(())
}

fn require_report(conn: &Connection, id: i64) -> Result<(), StoreError> {
    let exists: i64 = conn.query_row("SELECT COUNT(*) FROM reports WHERE id = ?1", [id], |r| {
        r.get(0)
    })?;
    if exists == 0 {
        return Err(StoreError::NotFound(format!("report {id}")));
    }
    Ok(())
}

impl Store {
    /// Enqueues reports that announce no state change of their own (a
    /// "pending" status when a run starts), committed before return.
    pub fn enqueue_reports(
        &self,
        run: RunId,
        reports: &[NewReport],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            require_run(tx, run)?;
            insert_reports(tx, run, reports, now_ms)
        })
    }

    /// Up to `limit` reports due at `now_ms`, oldest first.
    ///
    /// A report waits while an older report of the same run is still
    /// undelivered, even if its own time has come: a forge keeps the last
    /// status it was sent, so a retried "pending" must never land after the
    /// final "success" and overwrite it.
    pub fn due_reports(&self, now_ms: u64, limit: usize) -> Result<Vec<PendingReport>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT r.id, r.run_id, r.target, r.body, r.attempts FROM reports r
                 WHERE r.sent_ms IS NULL AND r.gave_up = 0 AND r.next_attempt_ms <= ?1
                   AND NOT EXISTS (SELECT 1 FROM reports o
                                   WHERE o.run_id = r.run_id AND o.id < r.id
                                     AND o.sent_ms IS NULL AND o.gave_up = 0)
                 ORDER BY r.id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![to_i64(now_ms), to_i64(limit as u64)], |r| {
                Ok(PendingReport {
                    id: r.get(0)?,
                    run: r.get(1)?,
                    target: get_json(r, 2)?,
                    body: get_json(r, 3)?,
                    attempts: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Records a delivery. Recording it twice keeps the first time.
    pub fn report_sent(&self, id: i64, now_ms: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE reports SET sent_ms = ?2, last_attempt_ms = ?2, attempts = attempts + 1, last_error = NULL
                 WHERE id = ?1 AND sent_ms IS NULL",
                params![id, to_i64(now_ms)],
            )?;
            if changed == 0 {
                require_report(tx, id)?;
            }
            Ok(())
        })
    }

    /// Records a failed delivery: the report is due again at
    /// `next_attempt_ms`, or never if `give_up` (a permanent refusal, or too
    /// many attempts).
    pub fn report_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_ms: u64,
        give_up: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE reports SET attempts = attempts + 1, last_error = ?2, next_attempt_ms = ?3, gave_up = ?4,
                                    last_attempt_ms = ?5
                 WHERE id = ?1 AND sent_ms IS NULL",
                params![id, error, to_i64(next_attempt_ms), give_up, to_i64(now_ms)],
            )?;
            if changed == 0 {
                // Unknown, or already sent: a late failure of a duplicate
                // attempt must not un-send it.
                require_report(tx, id)?;
            }
            Ok(())
        })
    }
}

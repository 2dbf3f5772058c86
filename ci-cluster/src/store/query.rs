//! Reads for the API, the UI and tests.

use std::collections::BTreeMap;

use airlock_pipeline::outputs::OutputFile;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::codec::{get_job_state, get_json, get_opt_u64, get_parsed, get_u64, to_i64};
use super::types::{Counts, JobRow, ReportRow, RunFilter, RunId, RunRow, RunStatus};
use super::{Store, StoreError};

/// The columns [`run_from_row`] reads, joined with the run's event.
pub(super) const RUN_SELECT: &str =
    "SELECT r.id, r.event_id, r.project, r.git_ref, r.commit_id, r.kind,
        r.change_number, r.patchset, r.status, r.reason, r.attempt, r.created_ms, r.started_ms,
        r.finished_ms, r.cancel_requested, e.body
    FROM runs r JOIN events e ON e.id = r.event_id";

/// Decodes a row of [`RUN_SELECT`].
pub(super) fn run_from_row(row: &Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: row.get(0)?,
        event_id: row.get(1)?,
        project: row.get(2)?,
        git_ref: row.get(3)?,
        commit: row.get(4)?,
        kind: get_parsed(row, 5)?,
        change_number: row.get(6)?,
        patchset: row.get(7)?,
        status: get_parsed::<RunStatus>(row, 8)?,
        reason: row.get(9)?,
        attempt: row.get(10)?,
        created_ms: get_u64(row, 11)?,
        started_ms: get_opt_u64(row, 12)?,
        finished_ms: get_opt_u64(row, 13)?,
        cancel_requested: row.get(14)?,
        event: get_json(row, 15)?,
    })
}

/// One run, inside any transaction.
pub(super) fn load_run(conn: &Connection, id: RunId) -> Result<Option<RunRow>, StoreError> {
    let sql = format!("{RUN_SELECT} WHERE r.id = ?1");
    Ok(conn.query_row(&sql, [id], run_from_row).optional()?)
}

/// Whether the run exists; `NotFound` otherwise, so writes keyed by a run
/// fail with a clear error instead of a foreign-key violation.
pub(super) fn require_run(conn: &Connection, id: RunId) -> Result<(), StoreError> {
    let found: Option<i64> = conn
        .query_row("SELECT 1 FROM runs WHERE id = ?1", [id], |r| r.get(0))
        .optional()?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!("run {id}"))),
    }
}

impl Store {
    /// One run, or `None`.
    pub fn run(&self, id: RunId) -> Result<Option<RunRow>, StoreError> {
        self.read(|tx| load_run(tx, id))
    }

    /// Runs matching `filter`, newest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        let mut sql = format!("{RUN_SELECT} WHERE 1 = 1");
        let mut args: Vec<Value> = Vec::new();
        let mut add = |clause: &str, value: Value| {
            args.push(value);
            sql.push_str(&format!(" AND {clause} ?{}", args.len()));
        };
        if let Some(project) = &filter.project {
            add("r.project =", Value::Text(project.clone()));
        }
        if let Some(status) = filter.status {
            add("r.status =", Value::Text(status.as_str().to_string()));
        }
        if let Some(git_ref) = &filter.git_ref {
            add("r.git_ref =", Value::Text(git_ref.clone()));
        }
        if let Some(change) = &filter.change {
            add("r.change_number =", Value::Text(change.clone()));
        }
        if let Some(commit) = &filter.commit {
            add("r.commit_id =", Value::Text(commit.clone()));
        }
        // SQLite reads LIMIT -1 as "no limit".
        let limit = if filter.limit == 0 {
            -1
        } else {
            to_i64(filter.limit as u64)
        };
        args.push(Value::Integer(limit));
        args.push(Value::Integer(to_i64(filter.offset as u64)));
        sql.push_str(&format!(
            " ORDER BY r.id DESC LIMIT ?{} OFFSET ?{}",
            args.len() - 1,
            args.len()
        ));
        self.read(|tx| {
            let mut stmt = tx.prepare(&sql)?;
            let rows = stmt.query_map(params_from_iter(args), run_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// A run's jobs in the order they were first reported, with their outputs.
    pub fn jobs(&self, run: RunId) -> Result<Vec<JobRow>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT name, state, attempts, exit_code, detail, started_ms, finished_ms
                 FROM jobs WHERE run_id = ?1 ORDER BY rowid",
            )?;
            let mut jobs = stmt
                .query_map([run], |row| {
                    Ok(JobRow {
                        name: row.get(0)?,
                        state: get_job_state(row, 1)?,
                        attempts: row.get(2)?,
                        exit_code: row.get(3)?,
                        detail: row.get(4)?,
                        started_ms: get_opt_u64(row, 5)?,
                        finished_ms: get_opt_u64(row, 6)?,
                        outputs: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut outputs = tx.prepare(
                "SELECT path, sha256, size, executable FROM job_outputs
                 WHERE run_id = ?1 AND job = ?2 ORDER BY rowid",
            )?;
            for job in &mut jobs {
                job.outputs = outputs
                    .query_map(params![run, job.name], |row| {
                        Ok(OutputFile {
                            path: row.get(0)?,
                            sha256: row.get(1)?,
                            size: get_u64(row, 2)?,
                            executable: row.get(3)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
            }
            Ok(jobs)
        })
    }

    /// A run's outbox entries, oldest first.
    pub fn reports(&self, run: RunId) -> Result<Vec<ReportRow>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT id, target, body, attempts, created_ms, next_attempt_ms, last_attempt_ms, sent_ms,
                        last_error, gave_up
                 FROM reports WHERE run_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([run], |row| {
                Ok(ReportRow {
                    id: row.get(0)?,
                    target: get_json(row, 1)?,
                    body: get_json(row, 2)?,
                    attempts: row.get(3)?,
                    created_ms: get_u64(row, 4)?,
                    next_attempt_ms: get_u64(row, 5)?,
                    last_attempt_ms: get_opt_u64(row, 6)?,
                    sent_ms: get_opt_u64(row, 7)?,
                    last_error: row.get(8)?,
                    gave_up: row.get(9)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Totals for metrics and the UI.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        self.read(|tx| {
            let events: i64 = tx.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
            let mut runs_by_status: BTreeMap<String, u64> = RunStatus::ALL
                .iter()
                .map(|s| (s.as_str().to_string(), 0))
                .collect();
            let mut stmt = tx.prepare("SELECT status, COUNT(*) FROM runs GROUP BY status")?;
            for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, get_u64(r, 1)?)))? {
                let (status, n) = row?;
                runs_by_status.insert(status, n);
            }
            let reports_pending: i64 = tx.query_row(
                "SELECT COUNT(*) FROM reports WHERE sent_ms IS NULL AND gave_up = 0",
                [],
                |r| r.get(0),
            )?;
            Ok(Counts {
                events: u64::try_from(events).unwrap_or(0),
                queued: runs_by_status
                    .get(RunStatus::Queued.as_str())
                    .copied()
                    .unwrap_or(0),
                runs_by_status,
                reports_pending: u64::try_from(reports_pending).unwrap_or(0),
            })
        })
    }
}

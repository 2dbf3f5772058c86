//! Job rows, log lines and outputs of a run.

use airlock_pipeline::log::LogLine;
use airlock_pipeline::outputs::OutputFile;
use rusqlite::params;

use super::codec::{get_stream, get_u64, job_state_name, opt_i64, stream_name, to_i64};
use super::query::require_run;
use super::types::{JobUpdate, RunId};
use super::{Store, StoreError};

impl Store {
    /// Upserts a job by (run, name). `job` is the job's whole current state:
    /// every field overwrites the stored one, so a retried job's
    /// `finished_ms` goes back to `None` with it.
    pub fn set_job(&self, run: RunId, job: &JobUpdate, now_ms: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            require_run(tx, run)?;
            tx.execute(
                "INSERT INTO jobs (run_id, name, state, attempts, exit_code, detail, started_ms, finished_ms,
                                   updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (run_id, name) DO UPDATE SET
                     state = excluded.state, attempts = excluded.attempts, exit_code = excluded.exit_code,
                     detail = excluded.detail, started_ms = excluded.started_ms,
                     finished_ms = excluded.finished_ms, updated_ms = excluded.updated_ms",
                params![
                    run,
                    job.name,
                    job_state_name(job.state),
                    job.attempts,
                    job.exit_code,
                    job.detail,
                    opt_i64(job.started_ms),
                    opt_i64(job.finished_ms),
                    to_i64(now_ms)
                ],
            )?;
            Ok(())
        })
    }

    /// Appends lines to a job's log in one transaction, numbering them on
    /// from the last stored line (1 for the first). Callers batch lines: a
    /// commit per line would cost an fsync per line.
    pub fn append_log(&self, run: RunId, job: &str, lines: &[LogLine]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            require_run(tx, run)?;
            let last: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM log_lines WHERE run_id = ?1 AND job = ?2",
                params![run, job],
                |r| r.get(0),
            )?;
            let mut stmt = tx.prepare(
                "INSERT INTO log_lines (run_id, job, seq, at_ms, stream, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (seq, line) in (last + 1..).zip(lines) {
                stmt.execute(params![run, job, seq, to_i64(line.at_ms), stream_name(line.stream), line.text])?;
            }
            Ok(())
        })
    }

    /// Up to `limit` lines of a job's log after sequence number `after_seq`
    /// (0 for the start), with their sequence numbers: a live tail passes the
    /// last number it saw.
    pub fn log(
        &self,
        run: RunId,
        job: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, LogLine)>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT seq, at_ms, stream, text FROM log_lines
                 WHERE run_id = ?1 AND job = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![run, job, to_i64(after_seq), to_i64(limit as u64)],
                |r| {
                    Ok((
                        get_u64(r, 0)?,
                        LogLine {
                            at_ms: get_u64(r, 1)?,
                            stream: get_stream(r, 2)?,
                            text: r.get(3)?,
                        },
                    ))
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    /// Replaces a job's outputs with `outputs` (collection happens once per
    /// attempt, and the last attempt's files are the ones that count).
    pub fn set_outputs(
        &self,
        run: RunId,
        job: &str,
        outputs: &[OutputFile],
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            require_run(tx, run)?;
            tx.execute(
                "DELETE FROM job_outputs WHERE run_id = ?1 AND job = ?2",
                params![run, job],
            )?;
            let mut stmt = tx.prepare(
                "INSERT INTO job_outputs (run_id, job, path, sha256, size, executable)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for out in outputs {
                stmt.execute(params![
                    run,
                    job,
                    out.path,
                    out.sha256,
                    to_i64(out.size),
                    out.executable
                ])?;
            }
            Ok(())
        })
    }
}

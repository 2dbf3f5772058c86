//! The CI cluster's durable store: events, runs, jobs, logs, outputs and the
//! report outbox, in one SQLite file.
//!
//! Everything the cluster promises across a `kill -9` lives here: an accepted
//! event is committed before the webhook's 2xx goes out, a run's final status
//! is committed together with the reports that announce it, and a restart
//! finds every interrupted run (see [`Store::recover`]). The API is blocking;
//! async callers wrap calls in `tokio::task::spawn_blocking`.
//!
//! Times are milliseconds since the Unix epoch passed in by the caller, so
//! tests control the clock.
//!
//! The store is split by responsibility: `schema` (pragmas and migrations),
//! `runs` (intake, queue, cancellation), `lifecycle` (finishing and crash
//! recovery), `jobs` (job rows, logs, outputs), `outbox` (reports),
//! `blobs` (which runs reference a stored output, for retention) and
//! `query` (reads for the API, the UI and tests).

mod blobs;
mod codec;
mod jobs;
mod lifecycle;
mod outbox;
mod query;
mod runs;
mod schema;
mod types;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, Transaction, TransactionBehavior};

pub use blobs::BlobRefs;
pub use lifecycle::{REASON_INTERRUPTED, REASON_REQUEUED};
pub use runs::REASON_CHANGE_CLOSED;
pub use schema::SCHEMA_VERSION;
pub use types::{
    Accepted, ClaimedRun, Counts, JobRow, JobUpdate, NewReport, PendingReport, Recovery, ReportRow,
    RunFilter, RunId, RunRow, RunStatus,
};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed (I/O error, disk full, constraint...).
    #[error("database error: {0}")]
    Sqlite(#[source] rusqlite::Error),
    /// The database holds something this binary cannot read back (a newer
    /// schema, an unknown status, malformed JSON).
    #[error("database content is not understood: {0}")]
    Corrupt(String),
    /// The run (or report) named by the caller does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The database's directory could not be created.
    #[error("creating the database directory: {0}")]
    Io(#[from] std::io::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        // Decoding failures mean the stored data is not what this binary
        // wrote; callers treat that differently from SQLite failing.
        match e {
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnType(..) => StoreError::Corrupt(e.to_string()),
            other => StoreError::Sqlite(other),
        }
    }
}

/// The durable store. `Send + Sync`: share it in an `Arc`.
///
/// One connection behind a mutex serialises every statement. That is simple
/// and correct, and fast enough: a write's cost is the WAL fsync, which a
/// second connection could not overlap anyway.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating it and its parent directories if needed) the database
    /// at `path`, switches it to WAL with `synchronous = FULL` and foreign
    /// keys on, and applies any pending migration.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        let mut conn = Connection::open(path)?;
        schema::configure(&conn)?;
        schema::migrate(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held unwound through a `Transaction`,
        // whose drop rolled it back, so the connection is consistent and the
        // poison carries no information worth failing every later call for.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in an IMMEDIATE transaction and commits it before returning,
    /// so the change is durable (WAL + `synchronous = FULL`) when the caller
    /// sees `Ok`. IMMEDIATE takes the write lock up front: a deferred
    /// transaction that reads and then writes can fail with `SQLITE_BUSY` if
    /// another process (a CLI) wrote in between, without waiting.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in a read transaction, so multi-statement reads (a run's jobs
    /// and their outputs) see one snapshot.
    fn read<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        f(&tx)
        // Dropping `tx` rolls back, which for a read only ends the snapshot.
    }
}

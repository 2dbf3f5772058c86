//! Connection settings and forward-only migrations.
//!
//! Each entry of [`MIGRATIONS`] is applied once, in order, in its own
//! transaction together with its `schema_version` row, so a crash mid-upgrade
//! leaves the database at the previous version, never half-way. Migrations are
//! never edited once released: a change to the schema is a new entry.

use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};

use super::StoreError;
use super::codec::to_i64;

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Migration `i` brings the schema to version `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
    -- Every accepted forge event; (forge, delivery) makes a replay a no-op.
    CREATE TABLE events (
        id            INTEGER PRIMARY KEY,
        forge         TEXT    NOT NULL,
        delivery      TEXT    NOT NULL,
        project       TEXT    NOT NULL,
        intent        TEXT    NOT NULL,
        kind          TEXT    NOT NULL,
        git_ref       TEXT    NOT NULL,
        commit_id     TEXT    NOT NULL,
        change_number TEXT,
        patchset      INTEGER,
        body          TEXT    NOT NULL,   -- the ForgeEvent as JSON
        received_ms   INTEGER NOT NULL,
        UNIQUE (forge, delivery)
    );

    -- One row per execution request; an admin re-run is a new row for the same event.
    CREATE TABLE runs (
        id               INTEGER PRIMARY KEY,
        event_id         INTEGER NOT NULL REFERENCES events (id),
        project          TEXT    NOT NULL,
        git_ref          TEXT    NOT NULL,
        commit_id        TEXT    NOT NULL,
        kind             TEXT    NOT NULL,
        change_number    TEXT,
        patchset         INTEGER,
        status           TEXT    NOT NULL CHECK (status IN
                             ('queued', 'running', 'passed', 'failed', 'cancelled', 'error')),
        reason           TEXT,
        attempt          INTEGER NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        created_ms       INTEGER NOT NULL,
        started_ms       INTEGER,
        finished_ms      INTEGER
    );
    CREATE INDEX runs_by_status  ON runs (status, project, id);
    CREATE INDEX runs_by_project ON runs (project, id);
    CREATE INDEX runs_by_event   ON runs (event_id);
    CREATE INDEX runs_by_change  ON runs (project, change_number) WHERE change_number IS NOT NULL;

    -- Round robin across projects: the project claimed longest ago goes first.
    -- A sequence, not a time, so claims within one millisecond still rotate.
    CREATE TABLE project_claims (
        project        TEXT    PRIMARY KEY,
        last_claim_seq INTEGER NOT NULL,
        last_claim_ms  INTEGER NOT NULL
    );

    -- A rowid table so jobs list in the order they were first reported.
    CREATE TABLE jobs (
        run_id      INTEGER NOT NULL REFERENCES runs (id),
        name        TEXT    NOT NULL,
        state       TEXT    NOT NULL,
        attempts    INTEGER NOT NULL,
        exit_code   INTEGER,
        detail      TEXT,
        started_ms  INTEGER,
        finished_ms INTEGER,
        updated_ms  INTEGER NOT NULL,
        PRIMARY KEY (run_id, name)
    );

    -- Keyed by run and job name only (not a foreign key to jobs) so outputs
    -- and logs can be written before or without a job row.
    CREATE TABLE job_outputs (
        run_id     INTEGER NOT NULL REFERENCES runs (id),
        job        TEXT    NOT NULL,
        path       TEXT    NOT NULL,
        sha256     TEXT    NOT NULL,
        size       INTEGER NOT NULL,
        executable INTEGER NOT NULL,
        PRIMARY KEY (run_id, job, path)
    );

    CREATE TABLE log_lines (
        run_id INTEGER NOT NULL REFERENCES runs (id),
        job    TEXT    NOT NULL,
        seq    INTEGER NOT NULL,   -- 1, 2, 3... per (run, job)
        at_ms  INTEGER NOT NULL,
        stream TEXT    NOT NULL,
        text   TEXT    NOT NULL,
        PRIMARY KEY (run_id, job, seq)
    ) WITHOUT ROWID;

    -- The outbox: a report is written in the same transaction as the state it
    -- announces and deleted never; sent_ms or gave_up ends it.
    CREATE TABLE reports (
        id              INTEGER PRIMARY KEY,
        run_id          INTEGER NOT NULL REFERENCES runs (id),
        target          TEXT    NOT NULL,   -- ReportTarget as JSON
        body            TEXT    NOT NULL,   -- JSON
        created_ms      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_attempt_ms INTEGER,
        sent_ms         INTEGER,
        last_error      TEXT,
        gave_up         INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX reports_by_run ON reports (run_id, id);
    CREATE INDEX reports_due    ON reports (next_attempt_ms) WHERE sent_ms IS NULL AND gave_up = 0;
    "#,
    // 2: the digest of the authenticated body, unique per forge like the
    // delivery id, so that a body accepted once is a replay under any
    // delivery headers. Rows from before have none (only the normalised event
    // was kept, not the body); NULLs never collide in a UNIQUE index.
    r#"
    ALTER TABLE events ADD COLUMN body_sha256 TEXT;
    CREATE UNIQUE INDEX events_by_body ON events (forge, body_sha256) WHERE body_sha256 IS NOT NULL;
    "#,
    // 3: events of one change that arrive out of order. Each event keeps the
    // forge's own time of it and, when it was ignored as stale, why; each
    // change keeps what the newest events said, so that an older or closed
    // one is ignored instead of running or cancelling newer work.
    r#"
    ALTER TABLE events ADD COLUMN forge_time_ms INTEGER;
    ALTER TABLE events ADD COLUMN ignored TEXT;

    CREATE TABLE changes (
        project         TEXT    NOT NULL,
        change_number   TEXT    NOT NULL,
        latest_patchset INTEGER NOT NULL,   -- highest patchset acted on (0: forges without)
        latest_commit   TEXT    NOT NULL,   -- head of the newest event acted on ('' if none ran)
        latest_ms       INTEGER,            -- the forge's time of the newest event acted on
        closed          TEXT,               -- NULL while open; abandoned, closed, merged, deleted
        closed_ms       INTEGER,            -- the forge's time of the closing event
        seen_ms         INTEGER NOT NULL,   -- when the newest event acted on was received
        PRIMARY KEY (project, change_number)
    );

    -- What the events stored before say: the highest patchset, the head of
    -- the last event that ran, and closed when the last event cancelled the
    -- change. Their forge times were not kept.
    INSERT INTO changes (project, change_number, latest_patchset, latest_commit, latest_ms,
                         closed, closed_ms, seen_ms)
    SELECT e.project, e.change_number,
           (SELECT COALESCE(MAX(r.patchset), 0) FROM events r
             WHERE r.project = e.project AND r.change_number = e.change_number AND r.intent = 'run'),
           COALESCE((SELECT r.commit_id FROM events r
                      WHERE r.project = e.project AND r.change_number = e.change_number
                        AND r.intent = 'run'
                      ORDER BY r.id DESC LIMIT 1), ''),
           NULL,
           CASE WHEN e.intent = 'cancel_change' THEN 'closed' END,
           NULL,
           e.received_ms
    FROM events e
    WHERE e.change_number IS NOT NULL
      AND e.id = (SELECT MAX(x.id) FROM events x
                   WHERE x.project = e.project AND x.change_number = e.change_number);
    "#,
    // 4: the artifact retention sweep asks, per stored blob, which runs
    // reference it, under the write lock before each deletion.
    r#"
    CREATE INDEX job_outputs_by_sha256 ON job_outputs (sha256);
    "#,
];

/// Sets the pragmas every connection needs and checks they took effect:
/// WAL so readers never block the writer, `synchronous = FULL` so a commit is
/// on disk when it returns (NORMAL may lose the last commits on power loss),
/// foreign keys so a row never points at a run that does not exist.
pub(super) fn configure(conn: &Connection) -> Result<(), StoreError> {
    // Another process (a CLI) may hold the write lock for a moment.
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!(
            "cannot switch the database to WAL (journal_mode is '{mode}')"
        )));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    let foreign_keys: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    if synchronous != 2 || foreign_keys != 1 {
        return Err(StoreError::Corrupt(format!(
            "pragmas did not take effect (synchronous={synchronous}, foreign_keys={foreign_keys})"
        )));
    }
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`]; returns the version found before.
/// Refuses a database written by a newer binary rather than guessing.
pub(super) fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    INTEGER PRIMARY KEY,
             applied_ms INTEGER NOT NULL
         )",
    )?;
    let found = current_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "database schema version {found} is newer than this binary's {SCHEMA_VERSION}"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let target = index as u32 + 1;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-read under the write lock: another process may have migrated
        // between our first read and now.
        if current_version(&tx)? >= target {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_ms) VALUES (?1, ?2)",
            params![target, to_i64(airlock_pipeline::log::now_ms())],
        )?;
        tx.commit()?;
        tracing::info!(version = target, "store: applied schema migration");
    }
    Ok(found)
}

fn current_version(conn: &Connection) -> Result<u32, StoreError> {
    let version: Option<u32> =
        conn.query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))?;
    Ok(version.unwrap_or(0))
}

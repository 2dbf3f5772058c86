//! Intake and the queue: accepting events, superseding and cancelling runs,
//! claiming the next run fairly, admin re-runs.

use airlock_pipeline::spec::EventKind;
use rusqlite::{Connection, OptionalExtension, params};

use super::codec::{get_json, get_opt_u64, short_commit, to_i64, to_json};
use super::query::{load_run, require_run};
use super::types::{Accepted, ClaimedRun, RunId};
use super::{Store, StoreError};
use crate::event::{Change, ForgeEvent, Intent, Transition};

/// Reason given to runs of an abandoned or closed change.
pub const REASON_CHANGE_CLOSED: &str = "change abandoned/closed";

/// Which of a change's runs a cancellation reaches.
enum Scope<'a> {
    /// Every run of the change.
    All,
    /// Runs of a lower patchset (Gerrit).
    BelowPatchset(u32),
    /// Runs of another commit (forges without patchsets: GitHub, GitLab).
    OtherCommit(&'a str),
}

/// What the new run is made from.
struct NewRun<'a> {
    event_id: i64,
    project: &'a str,
    git_ref: &'a str,
    commit: &'a str,
    kind: EventKind,
    change_number: Option<&'a str>,
    patchset: Option<u32>,
    reason: Option<&'a str>,
}

fn insert_run(conn: &Connection, run: &NewRun<'_>, now_ms: u64) -> Result<RunId, StoreError> {
    conn.execute(
        "INSERT INTO runs (event_id, project, git_ref, commit_id, kind, change_number, patchset,
                           status, reason, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?9)",
        params![
            run.event_id,
            run.project,
            run.git_ref,
            run.commit,
            run.kind.as_str(),
            run.change_number,
            run.patchset,
            run.reason,
            to_i64(now_ms)
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Cancels the change's queued runs older than `before` in `scope` at once and
/// flags its running ones; returns every running run in scope (flagged now or
/// earlier: asking a runner to stop twice is harmless, missing one is not).
///
/// `events_before_ms` keeps newer work out of reach: when it is set, only runs
/// of events the forge dated strictly before it are touched, so an event can
/// never cancel the run of a newer one, whatever order they arrived in. Runs
/// of events without a forge time (stored before times were kept, or sent
/// without one) can only be ordered by arrival and stay in scope; an event
/// without a time passes 0, which reaches only those.
#[allow(clippy::too_many_arguments)]
fn cancel_change_runs(
    conn: &Connection,
    project: &str,
    change_number: &str,
    before: RunId,
    scope: &Scope<'_>,
    events_before_ms: Option<u64>,
    reason: &str,
    now_ms: u64,
) -> Result<Vec<RunId>, StoreError> {
    let (below, other_commit) = match scope {
        Scope::All => (None, None),
        Scope::BelowPatchset(n) => (Some(*n), None),
        Scope::OtherCommit(c) => (None, Some(*c)),
    };
    let events_before = events_before_ms.map(to_i64);
    // One condition for every scope, so each statement binds the same six
    // parameters: NULL switches a clause off.
    let scope_sql = "project = ?1 AND change_number = ?2 AND id < ?3
        AND (?4 IS NULL OR COALESCE(patchset, 0) < ?4)
        AND (?5 IS NULL OR commit_id <> ?5)
        AND (?6 IS NULL OR COALESCE(
                (SELECT e.forge_time_ms FROM events e WHERE e.id = runs.event_id), -1) < ?6)";
    let now = to_i64(now_ms);
    let args = params![
        project,
        change_number,
        before,
        below,
        other_commit,
        events_before
    ];
    let cancelled = format!(
        "UPDATE runs SET status = 'cancelled', reason = ?7, finished_ms = ?8 WHERE status = 'queued' AND {scope_sql}"
    );
    let mut with_reason: Vec<&dyn rusqlite::ToSql> = args.to_vec();
    with_reason.push(&reason);
    with_reason.push(&now);
    conn.execute(&cancelled, with_reason.as_slice())?;
    // The first reason stays: it says why the cancel was asked for.
    let flag = format!(
        "UPDATE runs SET cancel_requested = 1, reason = ?7
         WHERE status = 'running' AND cancel_requested = 0 AND {scope_sql}"
    );
    conn.execute(&flag, &with_reason[..7])?;
    let running =
        format!("SELECT id FROM runs WHERE status = 'running' AND {scope_sql} ORDER BY id");
    let mut stmt = conn.prepare(&running)?;
    let ids = stmt
        .query_map(args, |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<RunId>>>()?;
    Ok(ids)
}

/// What the store knows of one change: the `changes` table.
struct ChangeState {
    latest_patchset: u32,
    latest_commit: String,
    latest_ms: Option<u64>,
    closed: Option<String>,
    closed_ms: Option<u64>,
}

fn load_change(
    conn: &Connection,
    project: &str,
    number: &str,
) -> Result<Option<ChangeState>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT latest_patchset, latest_commit, latest_ms, closed, closed_ms
             FROM changes WHERE project = ?1 AND change_number = ?2",
            params![project, number],
            |r| {
                Ok(ChangeState {
                    latest_patchset: r.get(0)?,
                    latest_commit: r.get(1)?,
                    latest_ms: get_opt_u64(r, 2)?,
                    closed: r.get(3)?,
                    closed_ms: get_opt_u64(r, 4)?,
                })
            },
        )
        .optional()?)
}

/// A forge time for a message.
fn when(ms: Option<u64>) -> String {
    ms.and_then(|ms| i64::try_from(ms).ok())
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(
            || "an unknown time".to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
}

/// Why `event` must not be acted on, given what is known of its `change`:
/// it is older than the newest event acted on (a lower patchset; for forges
/// without patchsets, an earlier forge time), or the change is closed and
/// the event does not reopen it. `None`: act on it.
///
/// Times compare only when both are known, and only strictly: forges give
/// seconds, and two events of one second cannot be ordered (they are then
/// taken in arrival order, and neither cancels the other's run, see
/// [`cancel_change_runs`]).
fn stale_reason(state: &ChangeState, event: &ForgeEvent, change: &Change) -> Option<String> {
    let n = &change.number;
    let at = change.event_ms;
    let before = |t: Option<u64>| matches!((at, t), (Some(a), Some(b)) if a < b);
    let after = |t: Option<u64>| matches!((at, t), (Some(a), Some(b)) if a > b);
    match event.intent {
        Intent::Run => {
            if let Some(how) = &state.closed {
                // Forges send nothing that runs for a closed change, so an
                // explicit reopen, or any event dated after the close, means
                // it was reopened; an event from before the close never does.
                let reopens = (change.transition == Some(Transition::Reopened)
                    || after(state.closed_ms))
                    && !before(state.closed_ms);
                if !reopens {
                    return Some(format!(
                        "change {n} is {how} (since {}); this event (of {}) does not reopen it",
                        when(state.closed_ms),
                        when(at)
                    ));
                }
            }
            if change.patchset < state.latest_patchset {
                return Some(format!(
                    "patchset {} is older than patchset {}, the latest of change {n}",
                    change.patchset, state.latest_patchset
                ));
            }
            if change.patchset == 0 && before(state.latest_ms) {
                return Some(format!(
                    "this event (of {}, for {}) is older than the latest of change {n} (of {}, for {})",
                    when(at),
                    short_commit(&event.commit),
                    when(state.latest_ms),
                    short_commit(&state.latest_commit)
                ));
            }
            None
        }
        Intent::CancelChange => {
            let how = change.transition.map_or("close", Transition::as_str);
            if change.patchset > 0 && change.patchset < state.latest_patchset {
                return Some(format!(
                    "this {how} event names patchset {}, older than patchset {}, the latest of change {n}",
                    change.patchset, state.latest_patchset
                ));
            }
            if before(state.latest_ms) {
                return Some(format!(
                    "this {how} event (of {}) is older than the latest event of change {n} (of {})",
                    when(at),
                    when(state.latest_ms)
                ));
            }
            None
        }
    }
}

/// Records what an event acted on says about its change.
fn record_change(
    conn: &Connection,
    project: &str,
    event: &ForgeEvent,
    change: &Change,
    known: Option<&ChangeState>,
    now_ms: u64,
) -> Result<(), StoreError> {
    let latest_patchset = known.map_or(0, |k| k.latest_patchset).max(change.patchset);
    let latest_ms = match (known.and_then(|k| k.latest_ms), change.event_ms) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let (latest_commit, closed, closed_ms) = match event.intent {
        // Not stale, so the newest: its head is the change's head, and a run
        // on a closed change reopened it.
        Intent::Run => (event.commit.clone(), None, None),
        Intent::CancelChange => (
            known.map(|k| k.latest_commit.clone()).unwrap_or_default(),
            Some(change.transition.map_or("closed", Transition::as_str)),
            change.event_ms,
        ),
    };
    conn.execute(
        "INSERT INTO changes (project, change_number, latest_patchset, latest_commit, latest_ms,
                              closed, closed_ms, seen_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (project, change_number) DO UPDATE SET
             latest_patchset = excluded.latest_patchset, latest_commit = excluded.latest_commit,
             latest_ms = excluded.latest_ms, closed = excluded.closed,
             closed_ms = excluded.closed_ms, seen_ms = excluded.seen_ms",
        params![
            project,
            change.number,
            latest_patchset,
            latest_commit,
            latest_ms.map(to_i64),
            closed,
            closed_ms.map(to_i64),
            to_i64(now_ms)
        ],
    )?;
    Ok(())
}

/// The body of [`Store::accept_event`], inside the caller's transaction, so
/// that [`Store::accept_events`] can run it once per item of a batch: each
/// item sees every earlier item of the batch exactly as if it had been
/// committed on its own (a repeated delivery is a duplicate, a later patchset
/// supersedes an earlier one's run).
fn accept_in(
    tx: &Connection,
    project: &str,
    event: &ForgeEvent,
    now_ms: u64,
) -> Result<Accepted, StoreError> {
    let body = to_json(event)?;
    let intent = match event.intent {
        Intent::Run => "run",
        Intent::CancelChange => "cancel_change",
    };
    let change_number = event.change.as_ref().map(|c| c.number.as_str());
    let patchset = event.change.as_ref().map(|c| c.patchset);
    let forge = event.forge.as_str();
    // A redelivery (same id) first, so that it is told apart from a replay.
    let seen: Option<i64> = tx
        .query_row(
            "SELECT id FROM events WHERE forge = ?1 AND delivery = ?2",
            params![forge, event.delivery],
            |r| r.get(0),
        )
        .optional()?;
    if seen.is_some() {
        return Ok(Accepted::Duplicate);
    }
    // The same authenticated body under another delivery id: the headers that
    // make the id are not covered by any forge's signature or token.
    if let Some(digest) = &event.body_sha256 {
        let first: Option<i64> = tx
            .query_row(
                "SELECT id FROM events WHERE forge = ?1 AND body_sha256 = ?2",
                params![forge, digest],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(event_id) = first {
            return Ok(Accepted::Replayed { event_id });
        }
    }
    // A change event is judged against what is known of its change first.
    let change = event
        .change
        .as_ref()
        .filter(|_| event.kind == EventKind::Change);
    let known = match change {
        Some(change) => load_change(tx, project, &change.number)?,
        None => None,
    };
    let ignored = match (change, &known) {
        (Some(change), Some(known)) => stale_reason(known, event, change),
        _ => None,
    };
    tx.execute(
        "INSERT INTO events (forge, delivery, project, intent, kind, git_ref, commit_id,
                             change_number, patchset, body, received_ms, body_sha256,
                             forge_time_ms, ignored)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            forge,
            event.delivery,
            project,
            intent,
            event.kind.as_str(),
            event.git_ref,
            event.commit,
            change_number,
            patchset,
            body,
            to_i64(now_ms),
            event.body_sha256,
            change.and_then(|c| c.event_ms).map(to_i64),
            ignored,
        ],
    )?;
    let event_id = tx.last_insert_rowid();
    if let Some(reason) = ignored {
        // Kept (a replay of it is a duplicate), and nothing else.
        return Ok(Accepted::Ignored { event_id, reason });
    }
    if let Some(change) = change {
        record_change(tx, project, event, change, known.as_ref(), now_ms)?;
    }
    let (run, cancel_running) = match (event.intent, &event.change) {
        (Intent::Run, change) => {
            let new = NewRun {
                event_id,
                project,
                git_ref: &event.git_ref,
                commit: &event.commit,
                kind: event.kind,
                change_number,
                patchset,
                reason: None,
            };
            let id = insert_run(tx, &new, now_ms)?;
            let cancel = match change {
                Some(change) if event.kind == EventKind::Change => {
                    // Gerrit orders by patchset; the others by the forge's time:
                    // only runs of strictly older events are superseded.
                    let (scope, events_before_ms, reason) = if change.patchset > 0 {
                        let n = change.patchset;
                        (
                            Scope::BelowPatchset(n),
                            None,
                            format!("superseded by patchset {n}"),
                        )
                    } else {
                        let short = short_commit(&event.commit);
                        // An undated event cannot be ordered against dated ones: it
                        // supersedes only runs of other undated events (0 admits exactly
                        // those, whose time counts as -1), never a newer head's run.
                        (
                            Scope::OtherCommit(&event.commit),
                            Some(change.event_ms.unwrap_or(0)),
                            format!("superseded by {short}"),
                        )
                    };
                    cancel_change_runs(
                        tx,
                        project,
                        &change.number,
                        id,
                        &scope,
                        events_before_ms,
                        &reason,
                        now_ms,
                    )?
                }
                _ => Vec::new(),
            };
            (Some(id), cancel)
        }
        (Intent::CancelChange, Some(change)) => {
            // Runs of events up to the close; never one of a later event.
            let all = cancel_change_runs(
                tx,
                project,
                &change.number,
                RunId::MAX,
                &Scope::All,
                change.event_ms.map(|t| t.saturating_add(1)),
                REASON_CHANGE_CLOSED,
                now_ms,
            )?;
            (None, all)
        }
        // Nothing to cancel without a change; the event is still kept.
        (Intent::CancelChange, None) => (None, Vec::new()),
    };
    Ok(Accepted::New {
        event_id,
        run,
        cancel_running,
    })
}

impl Store {
    /// Stores an accepted event in one transaction, committed before return.
    ///
    /// A (forge, delivery) pair seen before returns [`Accepted::Duplicate`], a
    /// (forge, body digest) pair seen before under another delivery id
    /// [`Accepted::Replayed`]; neither changes anything.
    ///
    /// A change event older than what is known of its change (a lower
    /// patchset, or for patchset-0 forges an earlier forge time), or for a
    /// closed change that it does not reopen, is stored as
    /// [`Accepted::Ignored`] with the reason and does nothing else.
    ///
    /// Otherwise `Intent::Run` queues a run; for a change event, older runs of
    /// the same (project, change) with a lower patchset (or, for patchset-0
    /// forges, another commit of a strictly older event) are superseded:
    /// queued ones become `Cancelled`, running ones are flagged and returned in
    /// `cancel_running`. `Intent::CancelChange` does the same to every run of
    /// the change (of events up to the close), marks the change closed and
    /// queues nothing.
    pub fn accept_event(
        &self,
        project: &str,
        event: &ForgeEvent,
        now_ms: u64,
    ) -> Result<Accepted, StoreError> {
        self.write(|tx| accept_in(tx, project, event, now_ms))
    }

    /// Group commit: stores a batch of accepted events in ONE transaction,
    /// committed (one WAL fsync) before return.
    ///
    /// Item `i` of the result is exactly what `accept_event` would have
    /// returned for `batch[i]` had the items been accepted one by one, in
    /// order: a delivery repeated inside the batch is a [`Accepted::Duplicate`],
    /// a later patchset supersedes the run an earlier item queued, and so on.
    /// It exists because `synchronous = FULL` makes every commit cost an
    /// fsync, which caps one-commit-per-event intake at the disk's fsync rate;
    /// sharing the commit among concurrent deliveries lifts that cap without
    /// weakening "committed before the 2xx" (callers answer only after this
    /// returns `Ok`).
    ///
    /// All or nothing: if any item fails, nothing of the batch is stored and
    /// the error is returned (callers that want per-item errors then retry
    /// the items one by one with `accept_event`).
    pub fn accept_events(
        &self,
        batch: &[(String, ForgeEvent)],
        now_ms: u64,
    ) -> Result<Vec<Accepted>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|tx| {
            batch
                .iter()
                .map(|(project, event)| accept_in(tx, project, event, now_ms))
                .collect()
        })
    }

    /// Claims the next queued run and marks it `Running` (attempt + 1,
    /// `started_ms`) in the same transaction.
    ///
    /// Nothing is claimed while `global_limit` runs are running. Among
    /// projects with a queued run and fewer running runs than
    /// `project_limit(project)`, the one claimed longest ago (or never) goes
    /// first, then its oldest queued run: a busy project cannot starve others.
    pub fn claim_next(
        &self,
        global_limit: usize,
        project_limit: &dyn Fn(&str) -> usize,
        now_ms: u64,
    ) -> Result<Option<ClaimedRun>, StoreError> {
        self.write(|tx| {
            let running: i64 = tx.query_row("SELECT COUNT(*) FROM runs WHERE status = 'running'", [], |r| r.get(0))?;
            if usize::try_from(running).unwrap_or(usize::MAX) >= global_limit {
                return Ok(None);
            }
            let mut stmt = tx.prepare(
                "SELECT q.project, q.first_id, COALESCE(c.last_claim_seq, 0) AS seq, COALESCE(n.running, 0)
                 FROM (SELECT project, MIN(id) AS first_id FROM runs WHERE status = 'queued' GROUP BY project) q
                 LEFT JOIN project_claims c ON c.project = q.project
                 LEFT JOIN (SELECT project, COUNT(*) AS running FROM runs WHERE status = 'running'
                            GROUP BY project) n ON n.project = q.project
                 ORDER BY seq, q.first_id",
            )?;
            let candidates = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, RunId>(1)?, r.get::<_, i64>(3)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let chosen = candidates
                .into_iter()
                .find(|(project, _, running)| usize::try_from(*running).unwrap_or(usize::MAX) < project_limit(project));
            let Some((project, id, _)) = chosen else { return Ok(None) };
            tx.execute(
                "UPDATE runs SET status = 'running', attempt = attempt + 1, started_ms = ?2, finished_ms = NULL
                 WHERE id = ?1",
                params![id, to_i64(now_ms)],
            )?;
            tx.execute(
                "INSERT INTO project_claims (project, last_claim_seq, last_claim_ms)
                 VALUES (?1, (SELECT COALESCE(MAX(last_claim_seq), 0) + 1 FROM project_claims), ?2)
                 ON CONFLICT (project) DO UPDATE SET last_claim_seq = excluded.last_claim_seq,
                                                     last_claim_ms = excluded.last_claim_ms",
                params![project, to_i64(now_ms)],
            )?;
            let claimed = tx.query_row(
                "SELECT r.id, r.event_id, r.project, r.git_ref, r.commit_id, r.attempt, e.body
                 FROM runs r JOIN events e ON e.id = r.event_id WHERE r.id = ?1",
                [id],
                |r| {
                    Ok(ClaimedRun {
                        id: r.get(0)?,
                        event_id: r.get(1)?,
                        project: r.get(2)?,
                        git_ref: r.get(3)?,
                        commit: r.get(4)?,
                        attempt: r.get(5)?,
                        event: get_json(r, 6)?,
                    })
                },
            )?;
            Ok(Some(claimed))
        })
    }

    /// Whether a cancel was requested for the run (runners poll this).
    pub fn cancel_requested(&self, run: RunId) -> Result<bool, StoreError> {
        self.read(|tx| {
            let flag: Option<bool> = tx
                .query_row(
                    "SELECT cancel_requested FROM runs WHERE id = ?1",
                    [run],
                    |r| r.get(0),
                )
                .optional()?;
            flag.ok_or_else(|| StoreError::NotFound(format!("run {run}")))
        })
    }

    /// Cancels a run: a queued one becomes `Cancelled` at once, a running one
    /// is flagged (its runner stops it and calls `finish_run`). Returns
    /// whether anything changed (false for a final or already-flagged run).
    pub fn request_cancel(
        &self,
        run: RunId,
        reason: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE runs SET status = 'cancelled', reason = ?2, finished_ms = ?3
                 WHERE id = ?1 AND status = 'queued'",
                params![run, reason, to_i64(now_ms)],
            )? + tx.execute(
                "UPDATE runs SET cancel_requested = 1, reason = ?2
                 WHERE id = ?1 AND status = 'running' AND cancel_requested = 0",
                params![run, reason],
            )?;
            if changed == 0 {
                require_run(tx, run)?;
            }
            Ok(changed > 0)
        })
    }

    /// Admin re-run: queues a new run for the same event, ref and commit.
    /// Returns `None` while the run is still queued or running (a second copy
    /// would only duplicate it).
    pub fn requeue(&self, run: RunId, now_ms: u64) -> Result<Option<RunId>, StoreError> {
        self.write(|tx| {
            let old =
                load_run(tx, run)?.ok_or_else(|| StoreError::NotFound(format!("run {run}")))?;
            if !old.status.is_final() {
                return Ok(None);
            }
            let reason = format!("re-run of run {run}");
            let new = NewRun {
                event_id: old.event_id,
                project: &old.project,
                git_ref: &old.git_ref,
                commit: &old.commit,
                kind: old.kind,
                change_number: old.change_number.as_deref(),
                patchset: old.patchset,
                reason: Some(&reason),
            };
            Ok(Some(insert_run(tx, &new, now_ms)?))
        })
    }
}

//! Upgrading a database written by an older binary: in place, keeping
//! everything, and the new guarantees hold for what comes after.

use rusqlite::{Connection, params};

use super::*;
use crate::store::RunStatus;
use crate::store::schema::{MIGRATIONS, SCHEMA_VERSION};

/// Writes a database exactly as a binary with schema version `version` left
/// it, holding one accepted push (delivery `old-1`) with its queued run.
fn database_at(path: &std::path::Path, version: usize) {
    let conn = Connection::open(path).expect("open");
    conn.execute_batch(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
    )
    .expect("schema_version");
    for (i, sql) in MIGRATIONS[..version].iter().enumerate() {
        conn.execute_batch(sql).expect("old migration");
        conn.execute(
            "INSERT INTO schema_version (version, applied_ms) VALUES (?1, 0)",
            [i as i64 + 1],
        )
        .expect("version row");
    }
    // The rows the version-1 `accept_event` wrote for a push (event 1)...
    let event = push("old-1", 1);
    insert_event(&conn, &event, "run");
    conn.execute(
        "INSERT INTO runs (event_id, project, git_ref, commit_id, kind, status, created_ms)
         VALUES (1, 'app', 'refs/heads/main', ?1, 'push', 'queued', 5)",
        [&event.commit],
    )
    .expect("run");
    // ...patchsets 1 and 2 of change 77, and change 78 abandoned after patchset 1.
    insert_event(&conn, &patchset("g-1", "77", 1, 11), "run");
    insert_event(&conn, &patchset("g-2", "77", 2, 12), "run");
    insert_event(&conn, &patchset("g-3", "78", 1, 13), "run");
    insert_event(&conn, &cancel(Forge::Gerrit, "g-4", "78"), "cancel_change");
}

/// An `events` row as the version-1 `accept_event` wrote it.
fn insert_event(conn: &Connection, event: &ForgeEvent, intent: &str) {
    let change = event.change.as_ref();
    conn.execute(
        "INSERT INTO events (forge, delivery, project, intent, kind, git_ref, commit_id,
                             change_number, patchset, body, received_ms)
         VALUES (?1, ?2, 'app', ?3, ?4, ?5, ?6, ?7, ?8, ?9, 5)",
        params![
            event.forge.as_str(),
            event.delivery,
            intent,
            event.kind.as_str(),
            event.git_ref,
            event.commit,
            change.map(|c| c.number.as_str()),
            change.map(|c| c.patchset),
            serde_json::to_string(event).expect("json"),
        ],
    )
    .expect("event");
}

fn version(store: &Store) -> u32 {
    store
        .lock()
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .expect("version")
}

/// `event` as if intake had authenticated a body with this digest.
fn with_body(mut event: ForgeEvent, digest: &str) -> ForgeEvent {
    event.body_sha256 = Some(digest.repeat(64 / digest.len()));
    event
}

#[test]
fn a_version_1_database_upgrades_in_place_and_keeps_its_events() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("ci.sqlite");
    database_at(&path, 1);

    let store = Store::open(&path).expect("upgrade");
    assert_eq!(version(&store), SCHEMA_VERSION);
    // What was there is still there and still reads back.
    let old = store.run(1).expect("query").expect("old run");
    assert_eq!(
        (old.status, old.event.delivery.as_str()),
        (RunStatus::Queued, "old-1")
    );
    assert_eq!(old.event.body_sha256, None);
    // An old delivery id is still a duplicate.
    assert_eq!(
        store
            .accept_event("app", &push("old-1", 1), 10)
            .expect("accept"),
        Accepted::Duplicate
    );
    // Events without a body (manual, scheduled, and every row from before)
    // never collide with each other on the digest.
    for delivery in ["manual-1", "manual-2"] {
        assert!(matches!(
            store
                .accept_event("app", &push(delivery, 2), 11)
                .expect("accept"),
            Accepted::New { .. }
        ));
    }
    // New events are de-duplicated on their body, across a restart too.
    let first = store
        .accept_event("app", &with_body(push("new-1", 3), "a1"), 12)
        .expect("accept");
    let Accepted::New { event_id, .. } = first else {
        panic!("{first:?}")
    };
    drop(store);
    let store = Store::open(&path).expect("reopen");
    assert_eq!(version(&store), SCHEMA_VERSION, "nothing applied twice");
    assert_eq!(
        store
            .accept_event("app", &with_body(push("new-2", 3), "a1"), 13)
            .expect("accept"),
        Accepted::Replayed { event_id }
    );
    // Control: another body is another event.
    assert!(matches!(
        store
            .accept_event("app", &with_body(push("new-3", 4), "b2"), 14)
            .expect("accept"),
        Accepted::New { .. }
    ));
    assert_eq!(store.counts().expect("counts").events, 9);

    // What the old events said about changes was carried over: a late
    // patchset 1 of change 77 is ignored, patchset 3 runs, and change 78
    // stays abandoned.
    let late = store
        .accept_event("app", &patchset("g-5", "77", 1, 11), 20)
        .expect("accept");
    assert!(
        matches!(&late, Accepted::Ignored { reason, .. } if reason.contains("patchset 1 is older than patchset 2")),
        "{late:?}"
    );
    assert!(matches!(
        store
            .accept_event("app", &patchset("g-6", "77", 3, 14), 21)
            .expect("accept"),
        Accepted::New { run: Some(_), .. }
    ));
    let closed = store
        .accept_event("app", &patchset("g-7", "78", 1, 13), 22)
        .expect("accept");
    assert!(
        matches!(&closed, Accepted::Ignored { reason, .. } if reason.contains("change 78 is closed")),
        "{closed:?}"
    );
}

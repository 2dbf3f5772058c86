//! `kill -9` durability: a child process accepts events in a loop and says
//! which it committed; the parent SIGKILLs it mid-stream and checks that every
//! event the child reported is in the database and the file is intact.
//!
//! The child is this same test binary, re-run with [`CHILD_ENV`] naming the
//! database; [`crash_child_accepts_until_killed`] is a no-op without it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::store::RunStatus;

/// Set (to the database path) only in the child process.
const CHILD_ENV: &str = "AIRLOCK_STORE_CRASH_CHILD";
/// Accepts to see before killing the child.
const KILL_AFTER: usize = 150;

#[test]
fn crash_child_accepts_until_killed() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = Store::open(std::path::Path::new(&path)).expect("child: open");
    let mut stdout = std::io::stdout().lock();
    // Bounded, so an orphaned child (parent died) still ends.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i: u32 = 0;
    while Instant::now() < deadline {
        let event = patchset(&format!("crash-{i}"), &format!("{}", i % 7), i / 7 + 1, i);
        let accepted = store
            .accept_event("app", &event, u64::from(i))
            .expect("child: accept");
        let Accepted::New {
            event_id,
            run: Some(run),
            ..
        } = accepted
        else {
            panic!("child: {accepted:?}")
        };
        // Printed only after the commit returned: every line is a promise.
        // One write per line, so a kill cuts at most the last line short.
        let line = format!("ACCEPTED {event_id} {run} crash-{i}\n");
        stdout.write_all(line.as_bytes()).expect("child: stdout");
        stdout.flush().expect("child: flush");
        i += 1;
    }
}

#[test]
fn kill_9_loses_no_accepted_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ci.sqlite");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "store::tests::crash::crash_child_accepts_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let mut stdout = BufReader::new(child.stdout.take().expect("child stdout"));
    let mut promised: Vec<(i64, i64, String)> = Vec::new();
    // A promise is a whole line (a kill may cut the last one short). The
    // harness may print the test's name on the same line before it.
    let mut next_line = |promised: &mut Vec<(i64, i64, String)>| -> bool {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).expect("read child");
        let Some((_, rest)) = line
            .strip_suffix('\n')
            .and_then(|l| l.split_once("ACCEPTED "))
        else {
            return n > 0;
        };
        let mut parts = rest.split(' ');
        if let (Some(event), Some(run), Some(delivery)) = (parts.next(), parts.next(), parts.next())
        {
            promised.push((
                event.parse().expect("event id"),
                run.parse().expect("run id"),
                delivery.to_string(),
            ));
        }
        true
    };
    while promised.len() < KILL_AFTER {
        assert!(next_line(&mut promised), "child ended early");
    }
    // SIGKILL, mid-loop: the child is likely inside a transaction right now.
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap child");
    assert!(
        !status.success(),
        "the child was killed, not finished: {status:?}"
    );
    // Lines written before the kill are still in the pipe; each is a promise too.
    while next_line(&mut promised) {}
    assert!(promised.len() >= KILL_AFTER);

    let store = Store::open(&path).expect("reopen after kill -9");
    let integrity: String = rusqlite::Connection::open(&path)
        .expect("raw open")
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(integrity, "ok");
    for (event_id, run, delivery) in &promised {
        let row = store
            .run(*run)
            .expect("query")
            .unwrap_or_else(|| panic!("run {run} of {delivery} lost"));
        assert_eq!(
            (row.event_id, row.event.delivery.as_str()),
            (*event_id, delivery.as_str())
        );
        assert!(matches!(
            row.status,
            RunStatus::Queued | RunStatus::Cancelled
        ));
    }
    // The child may have committed one more than it managed to report; never fewer.
    let events = store.counts().expect("counts").events;
    assert!(
        events == promised.len() as u64 || events == promised.len() as u64 + 1,
        "{events} vs {}",
        promised.len()
    );
}

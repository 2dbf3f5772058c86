//! Store tests: each opens a fresh database in a temporary directory.

mod batch;
mod crash;
mod intake;
mod lifecycle;
mod migrate;
mod queue;

use airlock_pipeline::spec::EventKind;
use tempfile::TempDir;

use super::{Accepted, RunId, Store};
use crate::event::{Change, Forge, ForgeEvent, Intent, ReportTarget};

/// A fresh store; keep the directory alive as long as the store.
fn open() -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("data/ci.sqlite")).expect("open store");
    (dir, store)
}

/// A 40-hex commit id made from `n`.
fn commit(n: u32) -> String {
    format!("{n:08x}").repeat(5)
}

/// A run event for `repository`, on `git_ref`.
fn run_event(
    forge: Forge,
    delivery: &str,
    git_ref: &str,
    commit: &str,
    change: Option<Change>,
) -> ForgeEvent {
    ForgeEvent {
        forge,
        repository: "org/app".into(),
        delivery: delivery.into(),
        body_sha256: None,
        intent: Intent::Run,
        kind: if change.is_some() {
            EventKind::Change
        } else {
            EventKind::Push
        },
        git_ref: git_ref.into(),
        commit: commit.into(),
        change,
        title: "a change".into(),
        author: "dev".into(),
        report: ReportTarget::Github {
            repo: "org/app".into(),
            sha: commit.into(),
        },
    }
}

/// A push to `refs/heads/main`.
fn push(delivery: &str, n: u32) -> ForgeEvent {
    run_event(Forge::Github, delivery, "refs/heads/main", &commit(n), None)
}

/// A Gerrit patchset of change `number`.
fn patchset(delivery: &str, number: &str, ps: u32, n: u32) -> ForgeEvent {
    let change = Change {
        number: number.into(),
        patchset: ps,
        url: None,
        event_ms: None,
        transition: None,
    };
    let git_ref = format!("refs/changes/{number}/{ps}");
    run_event(Forge::Gerrit, delivery, &git_ref, &commit(n), Some(change))
}

/// A GitHub pull request head (patchset 0).
fn pull(delivery: &str, number: &str, n: u32) -> ForgeEvent {
    let change = Change {
        number: number.into(),
        patchset: 0,
        url: None,
        event_ms: None,
        transition: None,
    };
    let git_ref = format!("refs/pull/{number}/head");
    run_event(Forge::Github, delivery, &git_ref, &commit(n), Some(change))
}

/// The change is abandoned or closed.
fn cancel(forge: Forge, delivery: &str, number: &str) -> ForgeEvent {
    let change = Change {
        number: number.into(),
        patchset: 0,
        url: None,
        event_ms: None,
        transition: None,
    };
    ForgeEvent {
        intent: Intent::CancelChange,
        commit: String::new(),
        ..run_event(forge, delivery, "refs/changes/x", "", Some(change))
    }
}

/// Accepts `event` for `project` and returns the queued run.
fn accept_run(store: &Store, project: &str, event: &ForgeEvent, now_ms: u64) -> RunId {
    match store.accept_event(project, event, now_ms).expect("accept") {
        Accepted::New { run: Some(run), .. } => run,
        other => panic!("expected a new run, got {other:?}"),
    }
}

/// No per-project limit.
fn unlimited(_: &str) -> usize {
    usize::MAX
}

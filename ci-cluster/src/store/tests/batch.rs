//! Group commit: `accept_events` must store a batch exactly as accepting its
//! items one by one would, including items that interact with each other.

use super::*;
use crate::store::{RunFilter, RunStatus};

fn batch(items: &[(&str, ForgeEvent)]) -> Vec<(String, ForgeEvent)> {
    items
        .iter()
        .map(|(project, event)| (project.to_string(), event.clone()))
        .collect()
}

#[test]
fn a_batch_gives_the_results_and_rows_of_sequential_accepts() {
    let items = batch(&[
        ("app", push("p-1", 1)),
        ("core", patchset("g-1", "77", 1, 2)),
        ("app", pull("h-1", "5", 3)),
        ("core", patchset("g-2", "77", 2, 4)),
        ("app", push("p-1", 5)),
        ("app", pull("h-2", "5", 6)),
        ("core", cancel(Forge::Gerrit, "g-3", "77")),
        ("other", push("p-2", 7)),
        ("app", cancel(Forge::Github, "h-3", "5")),
    ]);
    let (_a, sequential) = open();
    // A run claimed before the batch, so a cancel inside it has a running run to flag.
    let running = accept_run(&sequential, "core", &patchset("g-0", "77", 1, 9), 1);
    assert_eq!(
        sequential
            .claim_next(10, &unlimited, 2)
            .expect("claim")
            .map(|c| c.id),
        Some(running)
    );
    let expected: Vec<Accepted> = items
        .iter()
        .map(|(p, e)| sequential.accept_event(p, e, 3).expect("accept"))
        .collect();

    let (_b, batched) = open();
    assert_eq!(
        accept_run(&batched, "core", &patchset("g-0", "77", 1, 9), 1),
        running
    );
    batched
        .claim_next(10, &unlimited, 2)
        .expect("claim")
        .expect("a run");
    let got = batched.accept_events(&items, 3).expect("accept batch");

    assert_eq!(got, expected);
    assert!(got.iter().any(
        |a| matches!(a, Accepted::New { cancel_running, .. } if cancel_running == &[running])
    ));
    let all = RunFilter::default();
    assert_eq!(
        batched.runs(&all).expect("runs"),
        sequential.runs(&all).expect("runs")
    );
    assert_eq!(
        batched.counts().expect("counts"),
        sequential.counts().expect("counts")
    );
}

#[test]
fn a_delivery_repeated_inside_a_batch_is_a_duplicate() {
    let (_dir, store) = open();
    let got = store
        .accept_events(
            &batch(&[
                ("app", push("d-1", 1)),
                ("app", push("d-1", 2)),
                ("app", push("d-2", 3)),
            ]),
            5,
        )
        .expect("accept");
    assert!(
        matches!(got[0], Accepted::New { run: Some(_), .. }),
        "{got:?}"
    );
    assert_eq!(got[1], Accepted::Duplicate);
    assert!(
        matches!(got[2], Accepted::New { run: Some(_), .. }),
        "{got:?}"
    );
    let counts = store.counts().expect("counts");
    assert_eq!((counts.events, counts.queued), (2, 2));
    // The first copy is the one kept, as with sequential accepts.
    let Accepted::New {
        run: Some(first), ..
    } = got[0]
    else {
        unreachable!()
    };
    assert_eq!(
        store.run(first).expect("query").expect("run").commit,
        commit(1)
    );
    // And a later batch still sees it.
    assert_eq!(
        store
            .accept_events(&batch(&[("app", push("d-2", 4))]), 6)
            .expect("accept"),
        vec![Accepted::Duplicate]
    );
}

#[test]
fn a_later_patchset_in_the_same_batch_supersedes_the_earlier_one() {
    let (_dir, store) = open();
    let got = store
        .accept_events(
            &batch(&[
                ("core", patchset("g-1", "12", 1, 1)),
                ("core", patchset("g-2", "12", 2, 2)),
            ]),
            8,
        )
        .expect("accept");
    let (
        Accepted::New { run: Some(ps1), .. },
        Accepted::New {
            run: Some(ps2),
            cancel_running,
            ..
        },
    ) = (&got[0], &got[1])
    else {
        panic!("{got:?}")
    };
    // The first run was still queued, so it is cancelled at once, not flagged.
    assert!(cancel_running.is_empty(), "{got:?}");
    let first = store.run(*ps1).expect("query").expect("run");
    assert_eq!(
        (first.status, first.reason.as_deref(), first.finished_ms),
        (
            RunStatus::Cancelled,
            Some("superseded by patchset 2"),
            Some(8)
        )
    );
    assert_eq!(
        store.run(*ps2).expect("query").expect("run").status,
        RunStatus::Queued
    );
    assert_eq!(
        store
            .claim_next(10, &unlimited, 9)
            .expect("claim")
            .map(|c| c.id),
        Some(*ps2)
    );
}

#[test]
fn an_empty_batch_stores_nothing() {
    let (_dir, store) = open();
    assert_eq!(store.accept_events(&[], 1).expect("accept"), Vec::new());
    assert_eq!(store.counts().expect("counts").events, 0);
}

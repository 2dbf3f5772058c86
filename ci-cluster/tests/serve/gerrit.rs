//! Gerrit: a vote per run, newer patchsets cancel older runs, protected refs
//! get signed pass records.

use std::time::Duration;

use serde_json::json;

use crate::support::*;
use crate::{SUBJECT, config};

#[test]
fn gerrit_patchset_gets_exactly_one_verified_vote_per_run() {
    let world = World::new();
    let server = Server::start(&config(&world, ""));
    let good = world.repo.head();
    world.push_change(1, 1, &good);
    let (status, body) = post(
        &server.url("/hooks/gerrit"),
        &gerrit_headers(),
        &patchset_created(1, 1, &good, SUBJECT),
    );
    assert_eq!(status, 202, "{body}");
    let run = body["run"].as_i64().expect("run id");
    let done = server.wait_final_within(run, Duration::from_secs(90));
    assert_eq!(
        done["run"]["status"],
        "passed",
        "{done:#}\n{}",
        server.log_text()
    );

    let requests = world.wait_requests(
        "Verified +1",
        |r| !reviews(r).is_empty(),
        Duration::from_secs(30),
    );
    let review = reviews(&requests)[0].clone();
    assert_eq!(review.path, format!("/a/changes/1/revisions/{good}/review"));
    assert!(
        review
            .header("authorization")
            .is_some_and(|h| h.starts_with("Basic "))
    );
    let input = review.json().expect("ReviewInput JSON");
    assert_eq!(input["labels"]["Verified"], 1, "{input:#}");
    let message = input["message"].as_str().expect("message");
    for needle in ["test", "build", &format!("/runs/{run}")] {
        assert!(
            message.contains(needle),
            "message lacks {needle}: {message}"
        );
    }

    // A second patchset that breaks the test gets -1.
    let source = std::fs::read_to_string(world.repo.dir().join("src/greet.c")).expect("read");
    world
        .repo
        .write("src/greet.c", source.replace("Hello, %s!", "Howdy, %s!"));
    let bad = world.repo.commit("say howdy");
    world.push_change(1, 2, &bad);
    let (status, body) = post(
        &server.url("/hooks/gerrit"),
        &gerrit_headers(),
        &patchset_created(1, 2, &bad, SUBJECT),
    );
    assert_eq!(status, 202, "{body}");
    let run2 = body["run"].as_i64().expect("run id");
    assert_eq!(
        server.wait_final_within(run2, Duration::from_secs(90))["run"]["status"],
        "failed"
    );
    let requests = world.wait_requests(
        "Verified -1",
        |r| reviews(r).len() >= 2,
        Duration::from_secs(30),
    );
    let second = reviews(&requests)[1].json().expect("json");
    assert_eq!(second["labels"]["Verified"], -1, "{second:#}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        reviews(&world.forge.requests()).len(),
        2,
        "exactly one review per run"
    );
}

#[test]
fn a_new_patchset_cancels_the_older_runs() {
    let world = World::new();
    let slow = "version: 1\njobs:\n  slow:\n    run: sleep 300\n";
    world.repo.write(".pipeline/config.yaml", slow);
    let first = world.repo.commit("slow");
    world.push_change(2, 1, &first);
    let server = Server::start(&config(&world, ""));
    let (_, reply) = post(
        &server.url("/hooks/gerrit"),
        &gerrit_headers(),
        &patchset_created(2, 1, &first, SUBJECT),
    );
    let run1 = reply["run"].as_i64().expect("run");
    // Wait until it is running, then send patchset 2.
    server.wait_running(run1);
    world.repo.write(
        ".pipeline/config.yaml",
        "version: 1\njobs:\n  quick:\n    run: echo quick\n",
    );
    let second = world.repo.commit("quick");
    world.push_change(2, 2, &second);
    let (_, reply) = post(
        &server.url("/hooks/gerrit"),
        &gerrit_headers(),
        &patchset_created(2, 2, &second, SUBJECT),
    );
    let run2 = reply["run"].as_i64().expect("run");
    assert!(
        reply["cancelled"]
            .as_array()
            .is_some_and(|a| a.contains(&json!(run1))),
        "{reply}"
    );
    assert_eq!(
        server.wait_final_within(run1, Duration::from_secs(30))["run"]["status"],
        "cancelled"
    );
    assert_eq!(
        server.wait_final_within(run2, Duration::from_secs(60))["run"]["status"],
        "passed"
    );
}

#[test]
fn a_passing_push_to_a_protected_ref_writes_signed_pass_records() {
    let world = World::new();
    let server = Server::start(&config(&world, ""));
    let head = world.repo.head();
    let ref_updated = serde_json::to_vec(&json!({
        "type": "ref-updated",
        "refUpdate": {"project": "greet", "refName": "refs/heads/main", "oldRev": "0".repeat(40), "newRev": head},
        "submitter": {"name": "Dev"},
        "eventCreatedOn": 1700000100
    }))
    .expect("json");
    let (status, reply) = post(
        &server.url("/hooks/gerrit"),
        &gerrit_headers(),
        &ref_updated,
    );
    assert_eq!(status, 202, "{reply}");
    let run = reply["run"].as_i64().expect("run");
    assert_eq!(
        server.wait_final_within(run, Duration::from_secs(90))["run"]["status"],
        "passed",
        "{}",
        server.log_text()
    );
    let outbox = airlock_pipeline::record::DirOutbox::new(world.root.join("data/outbox"));
    let names = outbox.list().expect("outbox");
    assert_eq!(names.len(), 1, "{names:?}");
    let public = std::fs::read_to_string(world.root.join("data/keys/ci-origin.key.pub"))
        .expect("public key");
    let key = airlock_pipeline::record::parse_public_key_hex(public.trim()).expect("key");
    let record = airlock_pipeline::record::open(&outbox.read(&names[0]).expect("read"), &[key])
        .expect("valid signed record");
    assert_eq!(
        (
            record.job.as_str(),
            record.commit.as_str(),
            record.git_ref.as_str()
        ),
        ("publish", head.as_str(), "refs/heads/main")
    );
    assert_eq!(record.outputs.len(), 2);
    // Version 2: the run's event; no images, since the sample pipeline runs in host mode.
    assert_eq!(
        (record.version, record.event),
        (2, airlock_pipeline::spec::EventKind::Push)
    );
    assert!(record.images.is_empty(), "{:?}", record.images);
}

/// Gerrit's `ref-updated` for `refs/heads/main` of project `greet`, moving to `new_rev`.
fn main_updated(new_rev: &str, created: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "ref-updated",
        "refUpdate": {"project": "greet", "refName": "refs/heads/main", "oldRev": "0".repeat(40), "newRev": new_rev},
        "submitter": {"name": "Dev"},
        "eventCreatedOn": created
    }))
    .expect("json")
}

#[test]
fn a_commit_not_on_the_protected_ref_gets_no_pass_record() {
    let world = World::new();
    let server = Server::start(&config(&world, ""));
    let on_main = world.repo.head();
    // A commit that passes every job but lives only on a change ref, never on main.
    world.repo.write("NOTES.md", "not reviewed, not merged\n");
    let elsewhere = world.repo.commit("not on main");
    world.push_change(9, 1, &elsewhere);
    let outbox = airlock_pipeline::record::DirOutbox::new(world.root.join("data/outbox"));

    // An event that names refs/heads/main with that commit.
    let (status, reply) = post(
        &server.url("/hooks/gerrit"),
        &gerrit_headers(),
        &main_updated(&elsewhere, 1700000200),
    );
    assert_eq!(status, 202, "{reply}");
    let run = reply["run"].as_i64().expect("run");
    let done = server.wait_final_within(run, Duration::from_secs(90));
    assert_eq!(done["run"]["status"], "passed", "{}", server.log_text());
    // (The outbox directory is created by the first record written.)
    assert_eq!(
        outbox.list().unwrap_or_default(),
        Vec::<String>::new(),
        "a pass record was signed for a commit that is not on refs/heads/main"
    );
    let reason = done["run"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("not reachable from refs/heads/main") && reason.contains(&elsewhere[..12]),
        "{done:#}"
    );
    assert!(
        server
            .log_text()
            .contains("not reachable from refs/heads/main"),
        "{}",
        server.log_text()
    );

    // Control: the commit main points to gets its record.
    let (status, reply) = post(
        &server.url("/hooks/gerrit"),
        &gerrit_headers(),
        &main_updated(&on_main, 1700000300),
    );
    assert_eq!(status, 202, "{reply}");
    let run = reply["run"].as_i64().expect("run");
    assert_eq!(
        server.wait_final_within(run, Duration::from_secs(90))["run"]["status"],
        "passed",
        "{}",
        server.log_text()
    );
    let names = outbox.list().expect("outbox");
    assert_eq!(names.len(), 1, "{names:?}");
    let public = std::fs::read_to_string(world.root.join("data/keys/ci-origin.key.pub"))
        .expect("public key");
    let key = airlock_pipeline::record::parse_public_key_hex(public.trim()).expect("key");
    let record = airlock_pipeline::record::open(&outbox.read(&names[0]).expect("read"), &[key])
        .expect("valid signed record");
    assert_eq!(
        (record.commit.as_str(), record.git_ref.as_str()),
        (on_main.as_str(), "refs/heads/main")
    );
}

//! After `kill -9` nothing is lost and nothing is reported twice.

use std::time::Duration;

use crate::support::*;
use crate::{SUBJECT, config};

#[test]
fn after_kill_9_every_event_gets_a_run_and_every_run_exactly_one_report() {
    let world = World::new();
    world.repo.write(
        ".pipeline/config.yaml",
        "version: 1\njobs:\n  work:\n    run: sleep 2; echo done\n",
    );
    let commit = world.repo.commit("two-second job");
    let mut server = Server::start(&config(&world, ""));
    let mut runs = Vec::new();
    for change in 10..16 {
        world.push_change(change, 1, &commit);
        let (status, reply) = post(
            &server.url("/hooks/gerrit"),
            &gerrit_headers(),
            &patchset_created(change, 1, &commit, SUBJECT),
        );
        assert_eq!(status, 202, "{reply}");
        runs.push(reply["run"].as_i64().expect("run"));
    }
    // Some runs are in flight and the rest queued (concurrency 2): kill -9.
    std::thread::sleep(Duration::from_millis(1500));
    server.kill9();
    server.spawn();
    server.wait_until(Duration::from_secs(10), || {
        if server
            .log_text()
            .contains("recovered after a restart: re-queued [")
        {
            Ok(())
        } else {
            Err("no recovery after kill -9".to_string())
        }
    });
    for run in &runs {
        let status = server.wait_final(*run)["run"]["status"].clone();
        assert_eq!(status, "passed", "run {run}:\n{}", server.log_text());
    }
    world.wait_requests(
        "a review per run",
        |r| reviews(r).len() >= runs.len(),
        Duration::from_secs(60),
    );
    // Anything duplicated would arrive within the report worker's next rounds.
    std::thread::sleep(Duration::from_secs(2));
    for change in 10..16 {
        let n = reviews(&world.forge.requests())
            .iter()
            .filter(|r| r.path.starts_with(&format!("/a/changes/{change}/")))
            .count();
        assert_eq!(n, 1, "change {change} got {n} reviews");
    }
}

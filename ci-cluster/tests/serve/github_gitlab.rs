//! GitHub pull requests and GitLab merge requests get commit statuses.

use std::time::Duration;

use serde_json::{Value, json};

use crate::config;
use crate::support::*;

/// The `state`s of the status reports posted to `path`, in order.
fn states(requests: &[airlock_tests::forge::RecordedRequest], path: &str) -> Vec<String> {
    requests
        .iter()
        .filter(|q| q.path == path)
        .filter_map(|q| q.json())
        .map(|j| j["state"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn github_pull_request_gets_pending_then_success_and_replays_create_nothing() {
    let world = World::new();
    let server = Server::start(&config(&world, ""));
    let sha = world.repo.head();
    world.push(&sha, "refs/pull/5/head");
    let body = github_pr("opened", &sha, 5);
    let headers = github_headers(&body, "pull_request", "delivery-1");
    let (status, reply) = post(&server.url("/hooks/github"), &headers, &body);
    assert_eq!(status, 202, "{reply}");
    let run = reply["run"].as_i64().expect("run");
    // The same delivery again (GitHub redelivers with the same id): nothing new.
    let (status, reply) = post(&server.url("/hooks/github"), &headers, &body);
    assert_eq!((status, reply["status"].as_str()), (200, Some("duplicate")));
    // The captured signed body under a new delivery id: the signature still
    // verifies (it covers only the body), and it is still nothing new.
    let replay = github_headers(&body, "pull_request", "delivery-replayed");
    let (status, reply) = post(&server.url("/hooks/github"), &replay, &body);
    assert_eq!(
        (status, reply["status"].as_str()),
        (200, Some("duplicate")),
        "{reply}"
    );
    assert_eq!(
        server.wait_final_within(run, Duration::from_secs(90))["run"]["status"],
        "passed"
    );
    let path = format!("/repos/example/greet/statuses/{sha}");
    let requests = world.wait_requests(
        "pending then success",
        |r| r.iter().filter(|q| q.path == path).count() >= 2,
        Duration::from_secs(30),
    );
    assert_eq!(states(&requests, &path), ["pending", "success"]);
    assert!(
        requests
            .iter()
            .all(|q| q.header("authorization") == Some("Bearer gh-token"))
    );
    assert!(
        server.run(run + 1)["run"].is_null(),
        "the replay created a run"
    );
}

#[test]
fn gitlab_merge_request_gets_running_then_success() {
    let world = World::new();
    let server = Server::start(&config(&world, ""));
    let sha = world.repo.head();
    world.push(&sha, "refs/merge-requests/7/head");
    // GitLab's documented Merge Request Hook, pointed at our repository and commit.
    let mut payload: Value = serde_json::from_slice(&airlock_tests::fixtures::read(
        "gitlab/docs/merge_request.json",
    ))
    .expect("json");
    payload["project"]["path_with_namespace"] = json!("example/greet");
    payload["project"]["id"] = json!(42);
    payload["object_attributes"]["iid"] = json!(7);
    payload["object_attributes"]["action"] = json!("open");
    payload["object_attributes"]["last_commit"]["id"] = json!(sha);
    let body = serde_json::to_vec(&payload).expect("json");
    let headers = vec![
        ("x-gitlab-event", "Merge Request Hook".to_string()),
        ("x-gitlab-token", GITLAB_TOKEN.to_string()),
        ("x-gitlab-event-uuid", "uuid-1".to_string()),
        ("content-type", "application/json".to_string()),
    ];
    let wrong = vec![
        ("x-gitlab-event", "Merge Request Hook".to_string()),
        ("x-gitlab-token", "nope".to_string()),
    ];
    assert_eq!(post(&server.url("/hooks/gitlab"), &wrong, &body).0, 401);
    let (status, reply) = post(&server.url("/hooks/gitlab"), &headers, &body);
    assert_eq!(status, 202, "{reply}");
    let run = reply["run"].as_i64().expect("run");
    assert_eq!(
        server.wait_final_within(run, Duration::from_secs(90))["run"]["status"],
        "passed",
        "{}",
        server.log_text()
    );
    let path = format!("/api/v4/projects/42/statuses/{sha}");
    let requests = world.wait_requests(
        "running then success",
        |r| r.iter().filter(|q| q.path == path).count() >= 2,
        Duration::from_secs(30),
    );
    assert_eq!(states(&requests, &path), ["running", "success"]);
    assert!(
        requests
            .iter()
            .filter(|q| q.path == path)
            .all(|q| q.header("private-token") == Some("gl-api-token"))
    );
}

#[test]
fn a_late_pull_request_event_for_an_older_head_cancels_nothing_and_reports_nothing() {
    let world = World::new();
    let server = Server::start(&config(&world, ""));
    let older = world.repo.head();
    world.repo.write(
        ".pipeline/config.yaml",
        "version: 1\njobs:\n  slow:\n    run: sleep 4\n",
    );
    let newer = world.repo.commit("slow");
    world.push(&newer, "refs/pull/5/head");

    // The synchronize to the newer head (10:00) arrives first and runs...
    let body = github_pr_at("synchronize", &newer, 5, "2026-01-02T10:00:00Z");
    let headers = github_headers(&body, "pull_request", "delivery-sync");
    let (status, reply) = post(&server.url("/hooks/github"), &headers, &body);
    assert_eq!(status, 202, "{reply}");
    let run = reply["run"].as_i64().expect("run");
    server.wait_running(run);

    // ...then the opening at the older head (09:00) arrives late: acknowledged, ignored.
    let late = github_pr_at("opened", &older, 5, "2026-01-02T09:00:00Z");
    let headers = github_headers(&late, "pull_request", "delivery-opened");
    let (status, reply) = post(&server.url("/hooks/github"), &headers, &late);
    assert_eq!(
        (status, reply["status"].as_str()),
        (202, Some("ignored")),
        "{reply}"
    );
    assert!(
        reply["reason"]
            .as_str()
            .is_some_and(|r| r.contains("older")),
        "{reply}"
    );
    assert!(server.log_text().contains("older"), "{}", server.log_text());

    // The newer head's run was not cancelled: it passes and reports pending, success.
    assert_eq!(
        server.wait_final_within(run, Duration::from_secs(90))["run"]["status"],
        "passed",
        "{}",
        server.log_text()
    );
    let path = format!("/repos/example/greet/statuses/{newer}");
    let requests = world.wait_requests(
        "pending then success",
        |r| r.iter().filter(|q| q.path == path).count() >= 2,
        Duration::from_secs(30),
    );
    assert_eq!(states(&requests, &path), ["pending", "success"]);
    let older_path = format!("/repos/example/greet/statuses/{older}");
    assert!(
        !requests.iter().any(|q| q.path == older_path),
        "the late event was reported on"
    );
    assert!(
        server.run(run + 1)["run"].is_null(),
        "the late event got a run"
    );
}

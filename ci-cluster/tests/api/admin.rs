//! Admin actions need the bearer admin token: without it 401 and nothing
//! changes; with it they take effect.

use std::time::Duration;

use serde_json::json;

use super::fixtures::*;
use super::support::*;

fn run_ids(server: &Server) -> Vec<i64> {
    let (_, page) = get(&server.url("/api/v1/runs"));
    page["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["id"].as_i64().expect("id"))
        .collect()
}

#[test]
fn admin_cancel_and_rerun_need_the_admin_token() {
    let world = World::new();
    let server = Server::start(&config(&world));
    let passed = world.change_with_pipeline(&server, 1, "greet: passes", PASSING);
    assert_eq!(server.wait_final(passed)["run"]["status"], "passed");
    let sleeping = world.change_with_pipeline(&server, 2, "greet: waits", SLEEPING);
    server.wait_running(sleeping);
    let before = run_ids(&server);

    let cancel = server.url(&format!("/api/v1/runs/{sleeping}/cancel"));
    let rerun = server.url(&format!("/api/v1/runs/{passed}/rerun"));
    let forged: [Vec<(&str, String)>; 5] = [
        vec![],
        vec![("authorization", "Bearer wrong".into())],
        vec![("authorization", format!("Bearer {ADMIN_TOKEN}x"))],
        vec![("authorization", format!("Basic {ADMIN_TOKEN}"))],
        vec![("authorization", format!("bearer{ADMIN_TOKEN}"))],
    ];
    for headers in &forged {
        for url in [&cancel, &rerun] {
            let (status, reply) = request("POST", url, headers, b"");
            assert_eq!(
                (status, &reply["error"]),
                (401, &json!("unauthorized")),
                "{url} {headers:?}: {reply}"
            );
            assert!(!reply.to_string().contains(ADMIN_TOKEN), "{reply}");
        }
    }
    // Issue 26: without the token, a run that does not exist answers exactly as one that does:
    // the caller learns nothing, not even whether it exists. (Control, below: with the token,
    // the missing run is a 404.)
    let missing_cancel = server.url("/api/v1/runs/999999/cancel");
    let (status, reply) = request("POST", &missing_cancel, &forged[0], b"");
    let (status_existing, reply_existing) = request("POST", &cancel, &forged[0], b"");
    assert_eq!(
        (status, &reply),
        (status_existing, &reply_existing),
        "{reply}"
    );
    let (status, _) = request("POST", &missing_cancel, &admin(), b"");
    assert_eq!(status, 404);
    // Nothing changed: still running, no cancel flag, no new run.
    std::thread::sleep(Duration::from_secs(1));
    let run = server.run(sleeping);
    assert_eq!(
        (&run["run"]["status"], &run["run"]["cancel_requested"]),
        (&json!("running"), &json!(false)),
        "{run:#}"
    );
    assert_eq!(run_ids(&server), before);

    // With the token: the running job is stopped and the run cancelled.
    let (status, reply) = request("POST", &cancel, &admin(), b"");
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        (&reply["changed"], &reply["cancel_requested"]),
        (&json!(true), &json!(true)),
        "{reply}"
    );
    let done = server.wait_final(sleeping);
    assert_eq!(done["run"]["status"], "cancelled", "{done:#}");
    assert_eq!(done["run"]["reason"], "cancelled by an admin");
    assert_eq!(done["jobs"][0]["state"], "cancelled", "{done:#}");
    let (status, again) = request("POST", &cancel, &admin(), b"");
    assert_eq!(
        (status, &again["changed"], &again["status"]),
        (200, &json!(false), &json!("cancelled")),
        "{again}"
    );

    // Re-run: a new run of the same commit, which passes again.
    let (status, reply) = request("POST", &rerun, &admin(), b"");
    assert_eq!(status, 202, "{reply}");
    let new = reply["run"].as_i64().expect("new run");
    assert!(!before.contains(&new));
    let new_run = server.wait_final(new);
    let old_run = server.run(passed);
    assert_eq!(new_run["run"]["status"], "passed", "{new_run:#}");
    assert_eq!(new_run["run"]["commit"], old_run["run"]["commit"]);
    assert_eq!(new_run["run"]["reason"], format!("re-run of run {passed}"));
    assert_eq!(new_run["event"]["id"], old_run["event"]["id"]);
    assert!(
        !server.log_text().contains(ADMIN_TOKEN),
        "the admin token leaked into the log"
    );
}

/// A server killed while a job runs leaves nothing mounted once its world is gone: the job's
/// workspace filesystem (a loop-mounted ext4 as root) is detached with the temporary tree.
/// Before the world cleaned up after itself, every such test left a loop device mounted.
#[test]
fn a_server_killed_mid_job_leaves_no_workspace_mounted() {
    use airlock_pipeline::executor::{DiskSupport, mounts_beneath};
    let world = World::new();
    let root = world.root.clone();
    let mut server = Server::start(&config(&world));
    let sleeping = world.change_with_pipeline(&server, 1, "greet: waits", SLEEPING);
    server.wait_running(sleeping);
    // Control: the running job's workspace is a mounted filesystem where disk limits exist.
    if matches!(DiskSupport::detect(), DiskSupport::LoopMount) {
        server.wait_until(Duration::from_secs(30), || {
            let mounted = mounts_beneath(&root).map_err(|e| e.to_string())?;
            if mounted.is_empty() {
                Err(format!("no workspace mounted under {}", root.display()))
            } else {
                Ok(())
            }
        });
    }
    server.kill9();
    drop(server);
    drop(world);
    let after = mounts_beneath(&root).expect("mountinfo");
    assert!(after.is_empty(), "left mounted: {after:?}");
    assert!(!root.exists(), "{} was not removed", root.display());
}

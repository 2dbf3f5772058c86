//! Runs that no forge asked for: manual (admin token) and cron schedules.

use std::process::Command;
use std::time::Duration;

use crate::config;
use crate::support::*;

#[test]
fn manual_runs_need_the_admin_token() {
    let world = World::new();
    let server = Server::start(&config(&world, ""));
    let url = server.url("/api/v1/projects/greet/runs");
    let (status, _) = post(
        &url,
        &[("authorization", "Bearer wrong".into())],
        br#"{"ref": "refs/heads/main"}"#,
    );
    assert_eq!(status, 401);
    assert!(server.run(1)["run"].is_null());
    let out = Command::new(env!("CARGO_BIN_EXE_ci-cluster"))
        .args([
            "trigger",
            "--project",
            "greet",
            "--ref",
            "refs/heads/main",
            "--server",
            &server.base,
            "--token-file",
        ])
        .arg(world.root.join("admin"))
        .output()
        .expect("trigger");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("queued run 1"));
    assert_eq!(
        server.wait_final_within(1, Duration::from_secs(90))["run"]["status"],
        "passed"
    );

    // Issue 19: the title of a manual run is the commit's subject, written by its author: one
    // clean line of at most 200 characters, as a forge's title is.
    let subject = format!("{}\u{1b}]0;owned\u{7}", "long ".repeat(100));
    let commit = world.repo.commit(&subject);
    world.push(&commit, "refs/heads/long");
    let (status, reply) = post(
        &url,
        &[("authorization", format!("Bearer {ADMIN_TOKEN}"))],
        br#"{"ref": "refs/heads/long"}"#,
    );
    assert_eq!(status, 202, "{reply}");
    let run = reply["run"].as_i64().expect("run");
    let title = server.run(run)["run"]["title"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(title.chars().count(), 200, "{title:?}");
    assert!(!title.chars().any(char::is_control), "{title:?}");
}

#[test]
fn cron_schedules_queue_runs() {
    let world = World::new();
    let server = Server::start(&config(
        &world,
        r#"schedules = [{ cron = "*/2 * * * * *", ref = "refs/heads/main" }]"#,
    ));
    server.wait_until(Duration::from_secs(20), || {
        if server.run(1)["run"].is_null() {
            Err("no scheduled run".to_string())
        } else {
            Ok(())
        }
    });
    let run = server.wait_final_within(1, Duration::from_secs(90));
    assert_eq!(run["run"]["status"], "passed", "{run:#}");
    assert_eq!(run["run"]["kind"], "schedule", "{run:#}");
    assert_eq!(run["run"]["project"], "greet-gh");
}

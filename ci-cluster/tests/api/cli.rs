//! `ci-cluster runs list | get | logs` against the real server.

use airlock_pipeline::executor::HOST_MODE_NOTICE;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::fixtures::*;
use super::support::*;

fn runs(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ci-cluster"))
        .arg("runs")
        .args(args)
        .args(["--server", server])
        .output()
        .expect("ci-cluster runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn runs_list_get_and_logs_read_the_server() {
    let world = World::new();
    let server = Server::start(&config(&world));
    let passed = world.change_with_pipeline(&server, 1, "greet: passes", PASSING);
    let failed =
        world.change_with_pipeline(&server, 2, "greet: fails \u{1b}]0;pwned\u{7}", FAILING);
    server.wait_final(passed);
    server.wait_final(failed);

    let out = runs(&server.base, &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let header = text.lines().next().expect("header");
    assert!(
        header.starts_with("ID") && header.contains("STATUS") && header.contains("TITLE"),
        "{text}"
    );
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with(&failed.to_string())
                && l.contains("failed")
                && l.contains("change 2,1")),
        "{text}"
    );
    assert!(
        text.lines()
            .nth(2)
            .is_some_and(|l| l.starts_with(&passed.to_string())
                && l.contains("passed")
                && l.contains("greet: passes")),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "a title's escape sequence reached the terminal: {text:?}"
    );

    let out = runs(
        &server.base,
        &["list", "--status", "passed", "--project", "greet"],
    );
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));
    let out = runs(&server.base, &["list", "--project", "greet-gh"]);
    assert!(
        out.status.success() && stdout(&out).contains("No runs found."),
        "{}",
        stdout(&out)
    );
    let out = runs(&server.base, &["list", "-o", "json", "--limit", "1"]);
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (&page["runs"][0]["id"], &page["next_page"]),
        (&serde_json::json!(failed), &serde_json::json!(2))
    );

    let out = runs(&server.base, &["get", &passed.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "Status:   passed",
        "Title:    greet: passes",
        "JOB ",
        "build",
        "test",
        "dist/out.txt",
        "sha256:",
        "REPORT",
        &format!("/runs/{passed}"),
    ] {
        assert!(
            text.contains(needle),
            "`runs get` lacks {needle:?}:\n{text}"
        );
    }
    let out = runs(&server.base, &["get", &failed.to_string(), "-o", "json"]);
    let detail: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(detail["jobs"][1]["exit_code"], 1, "{detail:#}");

    let out = runs(&server.base, &["get", "999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no run 999"), "{}", stderr(&out));
    let out = runs(&server.base, &["logs", "999"]);
    assert_eq!(out.status.code(), Some(1));

    let out = runs(&server.base, &["logs", &failed.to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("build | building") && text.contains("test  | not ok 1 - greets"),
        "{text}"
    );
    let out = runs(
        &server.base,
        &["logs", &failed.to_string(), "--job", "test"],
    );
    assert_eq!(
        stdout(&out),
        format!("{HOST_MODE_NOTICE}\nnot ok 1 - greets\n")
    );
    let out = runs(
        &server.base,
        &["logs", &failed.to_string(), "--job", "nope"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));

    // Nothing listens on port 1.
    let out = runs("http://127.0.0.1:1", &["list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach the server at http://127.0.0.1:1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn runs_logs_follow_prints_lines_as_they_arrive_and_exits_with_the_run() {
    let world = World::new();
    let server = Server::start(&config(&world));
    let run = world.change_with_pipeline(&server, 1, "greet: ticks", &ticking(8, "0.5"));
    server.wait_running(run);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ci-cluster"))
        .args([
            "runs",
            "logs",
            &run.to_string(),
            "-f",
            "--job",
            "tick",
            "--server",
            &server.base,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs logs -f");
    let started = Instant::now();
    let reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut seen: Vec<(String, Duration, String)> = Vec::new();
    for line in reader.lines() {
        let line = line.expect("line");
        // Whether the run was still going when this line reached us.
        let status = server.run(run)["run"]["status"]
            .as_str()
            .unwrap_or("")
            .to_string();
        seen.push((line, started.elapsed(), status));
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still following after a minute: {seen:?}"
        );
    }
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    let texts: Vec<&str> = seen.iter().map(|(l, _, _)| l.as_str()).collect();
    // The job names no image: its log starts with the host-mode notice.
    let want: Vec<String> = std::iter::once(HOST_MODE_NOTICE.to_string())
        .chain((1..=8).map(|i| format!("tick {i}")))
        .collect();
    assert_eq!(texts, want, "{seen:?}");
    // Live: the first line came while the run was running, well before the last.
    assert_eq!(seen[0].2, "running", "{seen:?}");
    assert!(
        seen[8].1 - seen[1].1 >= Duration::from_secs(2),
        "lines came in one burst: {seen:?}"
    );
    // And it stopped on its own once the run was final.
    assert_eq!(server.run(run)["run"]["status"], "passed");
}

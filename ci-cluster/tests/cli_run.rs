//! `ci-cluster run`, `validate` and `schema` as a developer uses them: the
//! real binary, a real Git repository, the real bubblewrap sandbox.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use airlock_tests::git::{GitDaemon, init_bare};
use airlock_tests::sample::sample_repo;
use airlock_tests::sandbox::host_processes_matching;

fn ci_cluster(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ci-cluster"))
        .args(args)
        .output()
        .expect("run ci-cluster")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn sample_pipeline_passes_and_outputs_are_collected_with_digests() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = sample_repo(&tmp.path().join("repo"));
    let out_dir = tmp.path().join("out");
    let report = tmp.path().join("report.json");
    let o = ci_cluster(&[
        "run",
        "--repo",
        &repo.dir().display().to_string(),
        "--event",
        "push",
        "--out",
        &out_dir.display().to_string(),
        "--report",
        &report.display().to_string(),
    ]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    for line in [
        "✔ test",
        "✔ build",
        "✔ publish",
        "PASSED — 3 of 3 jobs passed",
    ] {
        assert!(stderr.contains(line), "missing '{line}' in:\n{stderr}");
    }
    let binary = out_dir.join("dist/greet");
    let digest = sha256_file(&binary);
    assert!(
        stdout.contains(&format!("{digest}  dist/greet")),
        "digest table:\n{stdout}"
    );
    let run = Command::new(&binary)
        .arg("Reviewer")
        .output()
        .expect("run the built binary");
    assert_eq!(String::from_utf8_lossy(&run.stdout), "Hello, Reviewer!\n");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    let states: Vec<&str> = json["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["state"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(states, ["passed", "passed", "passed"]);
}

#[test]
fn rebuilding_the_same_commit_gives_the_same_archive() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = sample_repo(&tmp.path().join("repo"));
    let mut digests = Vec::new();
    for n in 0..2 {
        let out_dir = tmp.path().join(format!("out{n}"));
        let o = ci_cluster(&[
            "run",
            "--repo",
            &repo.dir().display().to_string(),
            "--job",
            "publish",
            "--out",
            &out_dir.display().to_string(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        digests.push(sha256_file(&out_dir.join("dist/greet.tar.gz")));
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn a_failing_test_exits_1_shows_the_log_tail_and_skips_dependents() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = sample_repo(&tmp.path().join("repo"));
    let source = std::fs::read_to_string(repo.dir().join("src/greet.c")).expect("read");
    repo.write("src/greet.c", source.replace("Hello, %s!", "Howdy, %s!"));
    repo.commit("break the greeting");
    let o = ci_cluster(&[
        "run",
        "--repo",
        &repo.dir().display().to_string(),
        "--event",
        "push",
    ]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("✘ test"), "{stderr}");
    assert!(
        stderr.contains("FAIL greet Airlock: expected 'Hello, Airlock!', got 'Howdy, Airlock!'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("⊘ build") && stderr.contains("needs 'test', which did not pass"),
        "{stderr}"
    );
    assert!(stderr.contains("FAILED — 0 of 3 jobs passed"), "{stderr}");
}

#[test]
fn an_invalid_pipeline_exits_2_with_its_position_and_runs_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = sample_repo(&tmp.path().join("repo"));
    repo.write(
        ".pipeline/config.yaml",
        "version: 1\njobs:\n  build:\n    run: make\n    needs: [tset]\n",
    );
    repo.commit("typo in needs");
    let o = ci_cluster(&["run", "--repo", &repo.dir().display().to_string()]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(".pipeline/config.yaml:5:13: error: job 'build' needs 'tset'"),
        "{stderr}"
    );
    assert!(!stderr.contains("running"), "{stderr}");
}

#[test]
fn job_selection_runs_only_what_is_asked_and_what_it_needs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = sample_repo(&tmp.path().join("repo"));
    let o = ci_cluster(&[
        "run",
        "--repo",
        &repo.dir().display().to_string(),
        "--job",
        "build",
    ]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("✔ test")
            && stderr.contains("✔ build")
            && !stderr.contains("publish      running"),
        "{stderr}"
    );
    let o = ci_cluster(&[
        "run",
        "--repo",
        &repo.dir().display().to_string(),
        "--job",
        "deploy",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o)
            .1
            .contains("no job named 'deploy' (jobs: test, build, publish)")
    );
}

#[test]
fn a_change_ref_is_run_from_a_git_daemon_url() {
    let tmp = tempfile::tempdir().expect("tmp");
    let served = tmp.path().join("served");
    let bare = init_bare(&served, "greet");
    let repo = sample_repo(&tmp.path().join("repo"));
    let commit = repo.head();
    repo.push(&bare.display().to_string(), &commit, "refs/changes/01/1/1");
    let daemon = GitDaemon::start(&served);
    let cache = tmp.path().join("cache");
    let o = ci_cluster(&[
        "run",
        "--repo",
        &daemon.url("greet"),
        "--rev",
        "refs/changes/01/1/1",
        "--cache",
        &cache.display().to_string(),
    ]);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&commit[..12]), "{stderr}");
    // A change selects `change` jobs: test and build, not publish.
    assert!(
        stderr.contains("not selected for change on refs/changes/01/1/1: publish"),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_cancels_the_run_and_kills_the_jobs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = airlock_tests::git::SampleRepo::init(tmp.path().join("repo"));
    repo.write(".pipeline/config.yaml", "version: 1\njobs:\n  slow:\n    run: echo started; sleep 4242\n  after:\n    needs: [slow]\n    run: echo never\n");
    repo.commit("slow pipeline");
    let child = Command::new(env!("CARGO_BIN_EXE_ci-cluster"))
        .args(["run", "--repo", &repo.dir().display().to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while host_processes_matching("sleep 4242").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "job never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let o = child.wait_with_output().expect("wait");
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cancelling") && stderr.contains("(cancelled)"),
        "{stderr}"
    );
    assert!(stderr.contains("■ after"), "{stderr}");
    assert!(
        host_processes_matching("sleep 4242").is_empty(),
        "job survived Ctrl-C"
    );
}

#[test]
fn validate_and_schema() {
    let tmp = tempfile::tempdir().expect("tmp");
    let good = airlock_tests::sample::sample_service_dir().join(".pipeline/config.yaml");
    let o = ci_cluster(&["validate", &good.display().to_string()]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o).0.contains("3 jobs (test, build, publish)"));
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\njobs:\n  a:\n    run: x\n    outputs: [../../etc/passwd]\n",
    )
    .expect("write");
    let o = ci_cluster(&["validate", &bad.display().to_string()]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = text(&o).1;
    assert!(
        stderr.contains(&format!(
            "{}:5:15: error: output '../../etc/passwd' climbs out of the workspace",
            bad.display()
        )),
        "{stderr}"
    );
    let o = ci_cluster(&["schema"]);
    let schema: serde_json::Value = serde_json::from_slice(&o.stdout).expect("schema is JSON");
    assert!(schema["properties"]["jobs"].is_object());
}

/// What a job writes cannot talk to the developer's terminal through `ci-cluster run`: escape
/// sequences in a failed job's log tail are dropped (colours too, off a terminal), and an
/// output whose name holds a newline cannot forge a row of the outputs table.
#[test]
fn job_text_cannot_drive_the_terminal_or_forge_output_rows() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = sample_repo(&tmp.path().join("repo"));
    repo.write(
        ".pipeline/config.yaml",
        "version: 1\njobs:\n  outs:\n    run: |\n      mkdir -p dist\n      printf x > \"$(printf 'dist/a\\nforged  1  ffff  evil')\"\n    outputs: ['dist/*']\n  loud:\n    run: |\n      printf '\\033]0;pwned\\007\\033[2J\\033[1;1H\\033[31mred\\033[0m tail-line\\n'\n      exit 3\n",
    );
    repo.commit("a job that writes escape sequences and odd names");
    let o = ci_cluster(&[
        "run",
        "--repo",
        &repo.dir().display().to_string(),
        "--event",
        "push",
    ]);
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    // Control: the job's text itself arrives, and the odd output was collected.
    assert!(stderr.contains("red tail-line"), "{stderr}");
    assert!(
        stdout.contains("dist/a\\nforged  1  ffff  evil"),
        "{stdout}"
    );
    assert!(
        !stdout.lines().any(|l| l.starts_with("forged")),
        "a row was forged:\n{stdout}"
    );
    for out in [&stdout, &stderr] {
        assert!(
            !out.contains('\u{1b}'),
            "an escape reached the terminal: {out:?}"
        );
        assert!(
            !out.contains('\u{7}'),
            "a bell reached the terminal: {out:?}"
        );
    }
}

//! What a job can reach beyond its workspace, tried as an attacker would (issue 11): inherited
//! file descriptors, the host's disk, host paths in /proc, and dangerous system calls. Each
//! test runs the real `ci-cluster run` in the real bubblewrap sandbox, with a control.

use std::path::Path;
use std::process::{Command, Output};

use airlock_tests::git::SampleRepo;

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `ci-cluster run` on `repo`, started by a shell so `redirect` (e.g. `9>>file`) applies.
fn ci_run_from_shell(repo: &Path, redirect: &str) -> Output {
    let script = format!(
        "exec \"$0\" run --repo \"$1\" --event push {redirect}",
    );
    Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_ci-cluster"))
        .arg(repo)
        .output()
        .expect("run ci-cluster")
}

fn repo_with(dir: &Path, pipeline: &str) -> SampleRepo {
    let repo = SampleRepo::init(dir);
    repo.write(".pipeline/config.yaml", pipeline);
    repo.commit("pipeline");
    repo
}

#[test]
fn an_inherited_descriptor_does_not_reach_the_job() {
    let tmp = tempfile::tempdir().expect("tmp");
    let target = tmp.path().join("host.log");
    std::fs::write(&target, "").expect("create");
    // Control: the shell's `9>>file` really is inherited by what it starts.
    let control = Command::new("/bin/sh")
        .arg("-c")
        .arg("sh -c 'echo inherited >&9' 9>>\"$0\"")
        .arg(&target)
        .output()
        .expect("sh");
    assert!(control.status.success());
    assert_eq!(std::fs::read_to_string(&target).expect("read"), "inherited\n");
    std::fs::write(&target, "").expect("truncate");

    let repo = repo_with(
        &tmp.path().join("repo"),
        r#"version: 1
jobs:
  probe:
    run: |
      ls -l /proc/self/fd
      if echo 'written by the job' >&9; then echo 'fd 9 was open'; exit 1; fi
      echo 'fd 9 is closed'
"#,
    );
    let out = ci_run_from_shell(repo.dir(), &format!("9>>{}", target.display()));
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("✔ probe"), "{all}");
    assert_eq!(
        std::fs::read_to_string(&target).expect("read"),
        "",
        "the job wrote through the inherited fd:\n{all}"
    );
}

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

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn a_job_cannot_write_past_the_default_disk_limit() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = repo_with(
        &tmp.path().join("repo"),
        r#"version: 1
jobs:
  fill:
    run: |
      # Control: writing within the limit works.
      fallocate -l 100M small || exit 1
      rm -f small
      if fallocate -l 11G big; then echo 'wrote 11G into the workspace'; exit 1; fi
      echo 'refused past the limit'
"#,
    );
    let out = ci_run_from_shell(repo.dir(), "");
    let all = text(&out);
    if !is_root() {
        assert!(all.contains("disk limit is not enforced"), "{all}");
        return;
    }
    // The job itself checks both (it exits 1 if 11G fit or 100M did not).
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("✔ fill"), "{all}");
}

#[test]
fn a_job_is_held_to_its_own_disk_limit_and_its_outputs_survive_it() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = repo_with(
        &tmp.path().join("repo"),
        r#"version: 1
jobs:
  fill:
    resources: {disk: 64Mi}
    run: |
      head -c 1M /dev/zero > out.bin || exit 1
      if head -c 100M /dev/zero > big; then echo 'wrote 100M'; exit 1; fi
      rm -f big
      echo 'no space past 64Mi'
    outputs: [out.bin]
  after:
    needs: [fill]
    resources: {disk: 64Mi}
    run: test "$(wc -c < out.bin)" -eq 1048576
"#,
    );
    let out = ci_run_from_shell(repo.dir(), "");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("✔ fill"), "{all}");
    assert!(all.contains("✔ after"), "outputs collected before unmount:\n{all}");
    // Nothing of the attempt stays mounted.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains("airlock-run-"), "{mounts}");
}

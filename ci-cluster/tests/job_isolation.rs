//! What a job can reach beyond its workspace, tried as an attacker would (issue 11): inherited
//! file descriptors, the host's disk, host paths in /proc, and dangerous system calls. Each
//! test runs the real `ci-cluster run` in the real bubblewrap sandbox, with a control.

use std::path::Path;
use std::process::{Command, Output};

use airlock_tests::git::SampleRepo;
use airlock_tests::hostile::output_text;

/// `ci-cluster run` on `repo`, started by a shell so `redirect` (e.g. `9>>file`) applies.
fn ci_run_from_shell(repo: &Path, redirect: &str) -> Output {
    let script = format!("exec \"$0\" run --repo \"$1\" --event push {redirect}",);
    Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_ci-cluster"))
        .arg(repo)
        .output()
        .expect("run ci-cluster")
}

/// Runs `repo`'s pipeline and asserts that `job` passed (the jobs check what they probe and
/// exit 1 when it is wrong).
fn assert_job_passes(repo: &SampleRepo, job: &str) {
    let out = ci_run_from_shell(repo.dir(), "");
    let all = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains(&format!("✔ {job}")), "{all}");
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
    assert_eq!(
        std::fs::read_to_string(&target).expect("read"),
        "inherited\n"
    );
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
    let all = output_text(&out);
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
    let all = output_text(&out);
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
    let all = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("✔ fill"), "{all}");
    assert!(
        all.contains("✔ after"),
        "outputs collected before unmount:\n{all}"
    );
}

#[test]
fn dangerous_system_calls_are_denied_and_ordinary_ones_work() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Each probe exits 1 when a denied call succeeds; the controls exit 1 when an ordinary
    // call (fork, threads through clone3's fallback, getpid) fails.
    let repo = repo_with(
        &tmp.path().join("repo"),
        r#"version: 1
jobs:
  probe:
    run: |
      set -e
      # Controls: processes and threads still work.
      sh -c 'sleep 0 & wait'
      python3 -c 'import threading; t = threading.Thread(target=print, args=("thread ok",)); t.start(); t.join()'
      python3 - <<'PY'
      import ctypes, errno, os, sys
      libc = ctypes.CDLL(None, use_errno=True)
      assert libc.syscall(39) == os.getpid(), "control: getpid"
      denied = {"keyctl": (250, 0), "bpf": (321, 0), "ptrace": (101, 0, 0, 0, 0), "unshare(NEWUSER)": (272, 0x10000000),
                "perf_event_open": (298, 0), "userfaultfd": (323, 0), "io_uring_setup": (425, 1, 0),
                "mount": (165, 0), "setns": (308, 0, 0), "add_key": (248, 0), "x32 keyctl": (0x40000000 | 250, 0),
                "personality(ADDR_NO_RANDOMIZE)": (135, 0x0040000), "personality(READ_IMPLIES_EXEC)": (135, 0x0400000)}
      # Controls: querying and setting the ordinary personality still work.
      assert libc.syscall(135, 0xffffffff) == 0, "control: personality query"
      assert libc.syscall(135, 0) == 0, "control: personality(PER_LINUX)"
      bad = []
      for name, call in denied.items():
          r = libc.syscall(*call)
          e = ctypes.get_errno()
          print(f"{name}: {r} {errno.errorcode.get(e)}")
          if not (r == -1 and e in (errno.EPERM, errno.ENOSYS)) or (name != "x32 keyctl" and e != errno.EPERM):
              bad.append(name)
      sys.exit(f"not denied: {bad}" if bad else 0)
      PY
      if unshare -U true 2>/dev/null; then echo 'nested user namespace created'; exit 1; fi
"#,
    );
    assert_job_passes(&repo, "probe");
}

#[test]
fn proc_shows_no_host_paths() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = repo_with(
        &tmp.path().join("repo"),
        r#"version: 1
jobs:
  look:
    run: |
      # Control: /proc is readable (the job's own command line is there).
      grep -q sh /proc/self/cmdline || exit 1
      # bubblewrap's command line (PID 1) would name the host work directory; the workspace
      # mount would show its host path in mountinfo.
      if cat /proc/1/cmdline 2>/dev/null | tr '\0' ' ' | grep -q airlock-run-; then echo 'host path in /proc/1/cmdline'; exit 1; fi
      if grep airlock-run- /proc/self/mountinfo /proc/1/mountinfo; then echo 'host path in mountinfo'; exit 1; fi
      # Its environment would name the runner's working directory (PWD).
      if [ -n "$(tr '\0' '\n' < /proc/1/environ 2>/dev/null)" ]; then echo "/proc/1/environ: $(tr '\0' ' ' < /proc/1/environ)"; exit 1; fi
"#,
    );
    assert_job_passes(&repo, "look");
}

//! Links in an untrusted tree never make the host write outside it (issue 11).
//!
//! The attack as reported: a repository commits `dist -> /some/host/dir`; job `produce`
//! replaces `dist` with a real directory, writes `dist/victim.conf` and declares it as an
//! output; job `consume` needs it, so the runner (root) copies the input into `consume`'s fresh
//! workspace, where the committed link is back. Each test runs the real `ci-cluster run` with
//! the real bubblewrap sandbox and has a control showing the host file was reachable through
//! the same tree by a plain path lookup.

use std::path::Path;
use std::process::{Command, Output};

use airlock_tests::git::SampleRepo;
use airlock_tests::hostile::{host_victim_dir, output_text};

fn ci_run(repo: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ci-cluster"))
        .args([
            "run",
            "--repo",
            &repo.display().to_string(),
            "--event",
            "push",
        ])
        .output()
        .expect("run ci-cluster")
}

const PRODUCE_CONSUME: &str = r#"version: 1
jobs:
  produce:
    run: |
      rm -f dist
      mkdir -p dist
      echo 'written by the job' > dist/victim.conf
    outputs: [dist/victim.conf]
  consume:
    needs: [produce]
    run: cat dist/victim.conf
"#;

#[test]
fn a_committed_absolute_link_is_refused_when_the_tree_is_materialised() {
    let tmp = tempfile::tempdir().expect("tmp");
    let host = host_victim_dir(tmp.path(), "host secret\n");
    let repo = SampleRepo::init(tmp.path().join("repo"));
    repo.write(".pipeline/config.yaml", PRODUCE_CONSUME)
        .symlink("dist", &host.display().to_string());
    repo.commit("plant a link to the host");
    // Control: through the committed tree, a plain path lookup reaches the host file.
    assert_eq!(
        std::fs::read_to_string(repo.dir().join("dist/victim.conf")).expect("control"),
        "host secret\n"
    );

    let out = ci_run(repo.dir());
    let all = output_text(&out);
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("dist") && all.contains("absolute"),
        "the error names the entry and why:\n{all}"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("victim.conf")).expect("victim"),
        "host secret\n",
        "{all}"
    );
}

#[test]
fn a_committed_link_that_climbs_out_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let host = host_victim_dir(tmp.path(), "host secret\n");
    let repo = SampleRepo::init(tmp.path().join("repo"));
    // Enough `..` to reach `/` from any work directory, then down to the host directory.
    let climb = format!(
        "{}{}",
        "../".repeat(40),
        host.display().to_string().trim_start_matches('/')
    );
    repo.write(".pipeline/config.yaml", PRODUCE_CONSUME)
        .symlink("sub/dist", &climb);
    repo.commit("plant a climbing link");
    assert!(
        repo.dir().join("sub/dist/victim.conf").exists(),
        "control: the link reaches the host"
    );

    let out = ci_run(repo.dir());
    let all = output_text(&out);
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("sub/dist") && all.contains("climbs out"),
        "the error names the entry and why:\n{all}"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("victim.conf")).expect("victim"),
        "host secret\n"
    );
}

#[test]
fn an_input_is_never_copied_through_a_link_inside_the_tree() {
    // `dist -> build` stays inside the tree, so it is allowed in a commit; but the host still
    // never writes through it: the input lands nowhere and the job is told why.
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = SampleRepo::init(tmp.path().join("repo"));
    repo.write(".pipeline/config.yaml", PRODUCE_CONSUME)
        .write("build/README", "build dir\n")
        .symlink("dist", "build");
    repo.commit("an in-tree link");

    let out = ci_run(repo.dir());
    let all = output_text(&out);
    assert_ne!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("✔ produce"), "control: produce passed:\n{all}");
    assert!(
        all.contains("dist/victim.conf") && all.contains("symbolic link"),
        "consume's workspace was refused with the reason:\n{all}"
    );
}

#[test]
fn a_dangling_link_at_the_last_component_is_replaced_not_written_through() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = SampleRepo::init(tmp.path().join("repo"));
    repo.write(
        ".pipeline/config.yaml",
        r#"version: 1
jobs:
  produce:
    run: |
      rm -f out/app
      echo app > out/app
    outputs: [out/app]
  consume:
    needs: [produce]
    run: |
      # The committed dangling link was replaced by the input, not followed to create 'planted'.
      test ! -L out/app
      test "$(cat out/app)" = app
      test ! -e out/planted
"#,
    )
    .symlink("out/app", "planted");
    repo.commit("a dangling link where an input goes");

    let out = ci_run(repo.dir());
    let all = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("✔ consume"), "{all}");
}

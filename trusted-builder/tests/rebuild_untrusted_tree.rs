//! The link attack of issue 11 through the trusted builder's hermetic rebuild, on the host that
//! holds the signing key: a real `git daemon`, the real intake and the real bubblewrap sandbox.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod intake_support;

use airlock_pipeline::record::OutputDigest;
use airlock_tests::hostile::host_victim_dir;
use intake_support::*;
use tokio_util::sync::CancellationToken;
use trusted_builder::rebuild::RebuildError;

/// The reported attack: `produce` replaces the committed `dist` link with a directory and
/// outputs `dist/victim.conf`; `publish` needs it, so the host copies the input into a fresh
/// workspace where the committed link is back.
const ATTACK: &str = r#"version: 1
jobs:
  produce:
    run: |
      rm -f dist
      mkdir -p dist
      echo 'written by the job' > dist/victim.conf
    outputs: [dist/victim.conf]
  publish:
    needs: [produce]
    run: cat dist/victim.conf
    outputs: [dist/victim.conf]
    publish:
      artifacts: [dist/victim.conf]
"#;

fn any_outputs() -> Vec<OutputDigest> {
    vec![OutputDigest {
        path: "dist/victim.conf".into(),
        sha256: "c".repeat(64),
        size: 19,
    }]
}

async fn rebuild(world: &World, commit: &str) -> Result<(), RebuildError> {
    let builder = world.builder("builder", false, &[]);
    let bytes = world.signed(&world.record(commit, "refs/heads/main", "publish", any_outputs()));
    let accepted = builder
        .intake
        .check(&bytes)
        .map_err(|r| r.reason)
        .expect("the record itself is acceptable");
    builder
        .rebuilder
        .rebuild(&accepted, CancellationToken::new())
        .await
        .map(|_| ())
}

#[tokio::test]
async fn a_committed_absolute_link_is_refused_before_anything_runs_on_the_builder() {
    let world = World::start();
    let host = host_victim_dir(world.tmp.path(), "signing host secret\n");
    world
        .repo
        .write(".pipeline/config.yaml", ATTACK)
        .symlink("dist", &host.display().to_string());
    let commit = world
        .repo
        .commit_and_push("plant a link", &world.url, "refs/heads/main");
    // Control: through the committed tree, a plain lookup reaches the builder host's file.
    assert_eq!(
        std::fs::read_to_string(world.repo.dir().join("dist/victim.conf")).unwrap(),
        "signing host secret\n"
    );

    let err = rebuild(&world, &commit).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(
        std::fs::read_to_string(host.join("victim.conf")).unwrap(),
        "signing host secret\n",
        "{text}"
    );
    assert!(matches!(err, RebuildError::Prepare(_)), "{text}");
    assert!(
        text.contains("\"dist\"") && text.contains("absolute"),
        "{text}"
    );
}

#[tokio::test]
async fn an_input_is_never_copied_through_an_in_tree_link_on_the_builder() {
    let world = World::start();
    world
        .repo
        .write(".pipeline/config.yaml", ATTACK)
        .write("build/README", "build dir\n")
        .symlink("dist", "build");
    let commit = world
        .repo
        .commit_and_push("an in-tree link", &world.url, "refs/heads/main");

    let err = rebuild(&world, &commit).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, RebuildError::Failed(_)), "{text}");
    // produce passed (control); publish was refused its workspace, before it ran.
    assert!(
        text.contains("publish") && !text.contains("produce"),
        "{text}"
    );
    assert!(
        text.contains("could not prepare the workspace") && text.contains("symbolic link"),
        "{text}"
    );
}

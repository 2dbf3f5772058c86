//! Promotion by Git: `airlock-reconciler promote` refuses production while staging does not run
//! the digest healthily, accepts after, commits as the release manager with a trailer saying
//! what was verified, and the reconciler (real podman) then runs it. Refusals change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod reconcile_support;

use std::process::Command;

use airlock_reconciler::promote::{PromoteError, Request, promote};
use airlock_reconciler::reconcile::config::ReconcilerConfig;
use airlock_reconciler::reconcile::run::Reconciler;
use airlock_tests::git::git;
use reconcile_support::*;

fn request(image: &str, to: &str, from: Option<&str>) -> Request {
    Request {
        image: image.to_owned(),
        to: to.to_owned(),
        from: from.map(str::to_owned),
        author: "Rita Release <rita@example.org>".to_owned(),
    }
}

fn refused(result: Result<airlock_reconciler::promote::Outcome, PromoteError>) -> String {
    match result {
        Err(PromoteError::Refused(reasons)) => reasons.join("\n"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

struct Cleanup(std::path::PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for pod in ["promo-stg-greet", "promo-prod-greet"] {
            let _ = Command::new("podman")
                .args(["pod", "rm", "--force", pod])
                .env("CONTAINERS_CONF", &self.0)
                .output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_takes_only_what_staging_runs_healthily() {
    if !podman_available() {
        eprintln!("SKIPPED: podman is not installed (scripts/install-deps.sh installs it)");
        return;
    }
    let world = World::new();
    let (path, _) = world.config(&[
        ("staging", "podman", &[("promo-stg", &[SOURCE])]),
        ("production", "podman", &[("promo-prod", &[SOURCE])]),
    ]);
    // Production admits only what staging ran healthily: enforced by the reconciler too.
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[environments.production]\ntarget = \"podman\"\n",
        "[environments.production]\ntarget = \"podman\"\nrequires_healthy_in = \"staging\"\n",
    );
    assert!(text.contains("requires_healthy_in"));
    std::fs::write(&path, text).unwrap();
    let config = ReconcilerConfig::load(&path).unwrap();
    let _cleanup = Cleanup(world.dir.path().join("containers.conf"));
    let v1 = world.image("greet", 1, Vouch::Trusted(SOURCE)).await;
    world.write_manifest(
        "staging",
        "promo-stg",
        "greet.yaml",
        &format!("# greet in staging\n{}", deployment("greet", &v1)),
    );
    world.write_manifest(
        "production",
        "promo-prod",
        "greet.yaml",
        &deployment("greet", &v1),
    );
    world.commit("greet v1 everywhere");
    let reconciler = Reconciler::open(config.clone()).await.unwrap();
    // Sync 1: staging starts v1; production refuses it (not yet healthy in staging).
    let r = reconciler.sync_once("test").await.unwrap();
    let prod_refusal = r
        .namespaces
        .iter()
        .find(|n| n.environment == "production")
        .and_then(|n| n.refused.first())
        .map(|x| x.reasons.join("; "))
        .unwrap_or_default();
    assert!(
        prod_refusal
            .contains("has not run healthily in 'staging', which 'production' requires first"),
        "{r:#?}"
    );
    // Sync 2: staging settled (recorded); sync 3: production admits it; sync 4: both settled.
    for _ in 0..2 {
        reconciler.sync_once("test").await.unwrap();
    }
    let r = reconciler.sync_once("test").await.unwrap();
    assert!(
        r.runs_healthy("staging", &v1) && r.runs_healthy("production", &v1),
        "{r:#?}"
    );

    let v2 = world.image("greet", 2, Vouch::Trusted(SOURCE)).await;
    let bare = world.env_bare.clone();
    let head = || git(&bare, &["rev-parse", "refs/heads/main"]);

    // Someone skips `promote` and pushes v2 straight to production: the reconciler refuses it
    // and production keeps running v1.
    world.write_manifest(
        "production",
        "promo-prod",
        "greet.yaml",
        &deployment("greet", &v2),
    );
    world.commit("v2 straight to production");
    let r = reconciler.sync_once("test").await.unwrap();
    let prod = r
        .namespaces
        .iter()
        .find(|n| n.environment == "production")
        .unwrap();
    assert!(prod.applied.is_empty(), "{prod:#?}");
    assert!(
        prod.refused[0].reasons[0].contains("has not run healthily in 'staging'"),
        "{prod:#?}"
    );
    assert_eq!(
        prod.health["Deployment.apps/greet"].images,
        std::slice::from_ref(&v1)
    );
    world.write_manifest(
        "production",
        "promo-prod",
        "greet.yaml",
        &deployment("greet", &v1),
    );
    world.commit("back to v1");
    reconciler.sync_once("test").await.unwrap();
    let before = head();

    // Production without --from, and from staging before staging runs v2: refused.
    let why = refused(promote(&config, &request(&v2, "production", None)).await);
    assert!(
        why.contains("production takes only a digest promoted from staging"),
        "{why}"
    );
    let why = refused(promote(&config, &request(&v2, "production", Some("staging"))).await);
    assert!(why.contains("does not run healthily in 'staging'"), "{why}");
    // Unsigned, and signed by someone else: refused before anything is looked at in Git.
    let unsigned = world.image("greet", 3, Vouch::Unsigned).await;
    let why = refused(promote(&config, &request(&unsigned, "staging", None)).await);
    assert!(why.contains("no valid signature by a trusted key"), "{why}");
    let foreign = world.image("greet", 4, Vouch::OtherKey).await;
    let why = refused(promote(&config, &request(&foreign, "staging", None)).await);
    assert!(why.contains("no valid signature by a trusted key"), "{why}");
    // An image no workload uses.
    let other = world.image("other", 5, Vouch::Trusted(SOURCE)).await;
    let why = refused(promote(&config, &request(&other, "staging", None)).await);
    assert!(
        why.contains("no workload in environment 'staging' uses"),
        "{why}"
    );
    assert_eq!(head(), before, "a refused promotion changed the repository");

    // Staging first.
    let outcome = promote(&config, &request(&v2, "staging", None))
        .await
        .unwrap();
    assert_eq!(outcome.changed.len(), 1);
    assert_eq!(head(), outcome.commit);
    let author = git(&bare, &["log", "-1", "--format=%an <%ae>", &outcome.commit]);
    assert_eq!(author, "Rita Release <rita@example.org>");
    let staged = git(
        &bare,
        &[
            "show",
            &format!(
                "{}:environments/staging/promo-stg/greet.yaml",
                outcome.commit
            ),
        ],
    );
    assert!(
        staged.starts_with("# greet in staging\n"),
        "comment lost:\n{staged}"
    );
    assert!(staged.contains(&v2) && !staged.contains(&v1), "{staged}");
    let prod = git(
        &bare,
        &[
            "show",
            &format!(
                "{}:environments/production/promo-prod/greet.yaml",
                outcome.commit
            ),
        ],
    );
    assert!(prod.contains(&v1), "staging promotion touched production");

    // Applied in staging, but just started: production still refuses it.
    let r = reconciler.sync_once("test").await.unwrap();
    assert!(!r.runs_healthy("staging", &v2), "{r:#?}");
    let why = refused(promote(&config, &request(&v2, "production", Some("staging"))).await);
    assert!(why.contains("does not run healthily in 'staging'"), "{why}");
    // One sync later it is still up: settled.
    let r = reconciler.sync_once("test").await.unwrap();
    assert!(r.runs_healthy("staging", &v2), "{r:#?}");
    assert!(r.runs_healthy("production", &v1));

    // Now production, from staging.
    let outcome = promote(&config, &request(&v2, "production", Some("staging")))
        .await
        .unwrap();
    let trailer = git(
        &bare,
        &[
            "log",
            "-1",
            "--format=%(trailers:key=Airlock-Verified,valueonly)",
            &outcome.commit,
        ],
    );
    assert!(trailer.contains("signature by key"), "{trailer}");
    assert!(
        trailer.contains(&format!(
            "SLSA provenance by https://airlock.dev/trusted-builder/test from {SOURCE}@"
        )),
        "{trailer}"
    );
    assert!(trailer.contains("healthy in staging at"), "{trailer}");
    let image = git(
        &bare,
        &[
            "log",
            "-1",
            "--format=%(trailers:key=Airlock-Image,valueonly)",
            &outcome.commit,
        ],
    );
    assert_eq!(image.trim(), v2);
    reconciler.sync_once("test").await.unwrap();
    let r = reconciler.sync_once("test").await.unwrap();
    assert!(r.runs_healthy("production", &v2), "{r:#?}");

    // Promoting again changes nothing and says why.
    let why = refused(promote(&config, &request(&v2, "production", Some("staging"))).await);
    assert!(why.contains("already runs"), "{why}");
}

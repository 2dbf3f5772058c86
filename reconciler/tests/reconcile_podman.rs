//! The reconciler against real podman (runc, no network): a signed image from a real
//! docker-registry runs after a commit to the environment repository, is replaced when the
//! digest changes, repaired when stopped by hand, and pruned when its file is deleted; every
//! image the trusted builder did not vouch for is refused and never runs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod reconcile_support;

use std::process::Command;

use airlock_reconciler::reconcile::history::SyncRecord;
use airlock_reconciler::reconcile::run::{self, Reconciler};
use reconcile_support::*;

fn podman(conf: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("podman")
        .args(args)
        .env("CONTAINERS_CONF", conf)
        .output()
        .expect("podman");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

/// Removes every pod of the given namespaces when the test ends, passed or not.
struct Pods {
    conf: std::path::PathBuf,
    namespaces: Vec<&'static str>,
}

impl Pods {
    fn exists(&self, pod: &str) -> bool {
        podman(&self.conf, &["pod", "exists", pod]).0
    }
    fn state(&self, pod: &str) -> String {
        podman(
            &self.conf,
            &["pod", "inspect", pod, "--format", "{{.State}}"],
        )
        .1
    }
    fn image_of(&self, container: &str) -> String {
        podman(
            &self.conf,
            &["inspect", container, "--format", "{{.ImageName}}"],
        )
        .1
    }
    fn clean(&self) {
        for ns in &self.namespaces {
            let (_, list) = podman(
                &self.conf,
                &[
                    "pod",
                    "ps",
                    "--format",
                    "{{.Name}}",
                    "--filter",
                    &format!("label=airlock.dev/namespace={ns}"),
                ],
            );
            for pod in list.lines().filter(|l| !l.is_empty()) {
                podman(&self.conf, &["pod", "rm", "--force", pod]);
            }
        }
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        self.clean();
    }
}

fn applied(record: &SyncRecord) -> Vec<(String, String)> {
    record
        .namespaces
        .iter()
        .flat_map(|n| {
            n.applied
                .iter()
                .map(|c| (c.action.clone(), c.object.clone()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_image_runs_is_replaced_repaired_and_pruned() {
    if !podman_available() {
        eprintln!("SKIPPED: podman is not installed (scripts/install-deps.sh installs it)");
        return;
    }
    let world = World::new();
    let (_, config) = world.config(&[("staging", "podman", &[("podshop", &[SOURCE])])]);
    let pods = Pods {
        conf: world.dir.path().join("containers.conf"),
        namespaces: vec!["podshop"],
    };
    pods.clean();
    let first = world.image("web", 1, Vouch::Trusted(SOURCE)).await;
    world.write_manifest("staging", "podshop", "web.yaml", &deployment("web", &first));
    world
        .env
        .write("environments/staging/README.md", "not a manifest\n");
    let c1 = world.commit("web v1");

    let reconciler = Reconciler::open(config.clone()).await.unwrap();
    let r = reconciler.sync_once("test").await.unwrap();
    assert_eq!(r.commit, c1);
    assert_eq!(
        applied(&r),
        [("create".to_owned(), "Deployment/web".to_owned())],
        "{r:#?}"
    );
    assert_eq!(pods.state("podshop-web"), "Running");
    assert_eq!(pods.image_of("podshop-web-web"), first);
    let (_, logs) = podman(&pods.conf, &["logs", "podshop-web-web"]);
    assert!(logs.contains("serving web"), "{logs}");
    let health = &r.namespaces[0].health["Deployment.apps/web"];
    assert!(health.health.is_healthy(), "{health:?}");
    // Just started: healthy, but not yet settled enough to promote from.
    assert!(!health.settled && !r.runs_healthy("staging", &first));

    // A pod that runs to completion, beside it.
    let once = pod("batch", &first).replace(
        "spec:\n  containers:",
        "spec:\n  restartPolicy: Never\n  containers:",
    ) + "    args: [\"once\"]\n";
    world.write_manifest("staging", "podshop", "batch.yaml", &once);
    world.commit("a one-shot pod");
    let r = reconciler.sync_once("test").await.unwrap();
    assert_eq!(
        applied(&r),
        [("create".to_owned(), "Pod/batch".to_owned())],
        "{r:#?}"
    );
    for _ in 0..50 {
        if pods.state("podshop-batch") == "Exited" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(pods.state("podshop-batch"), "Exited");

    // Nothing changed: nothing applied (the finished one-shot pod is not run again).
    let r = reconciler.sync_once("test").await.unwrap();
    assert!(applied(&r).is_empty(), "{r:#?}");
    assert_eq!(r.namespaces[0].unchanged, ["Pod/batch", "Deployment/web"]);
    // Still running one sync after it was applied: now it counts.
    assert!(r.runs_healthy("staging", &first));
    world.env.remove("environments/staging/podshop/batch.yaml");

    // Drift: someone stops the pod by hand; the next sync repairs it.
    assert!(podman(&pods.conf, &["pod", "stop", "podshop-web"]).0);
    let r = reconciler.sync_once("test").await.unwrap();
    let change = &r.namespaces[0].applied[0];
    assert_eq!(change.action, "repair");
    assert!(
        change
            .drift
            .as_deref()
            .unwrap_or("")
            .contains("podshop-web"),
        "{change:?}"
    );
    assert_eq!(pods.state("podshop-web"), "Running");

    // A new digest replaces the pod.
    let second = world.image("web", 2, Vouch::Trusted(SOURCE)).await;
    assert_ne!(first, second);
    world.write_manifest(
        "staging",
        "podshop",
        "web.yaml",
        &deployment("web", &second),
    );
    world.commit("web v2");
    let r = reconciler.sync_once("test").await.unwrap();
    assert_eq!(
        applied(&r),
        [("update".to_owned(), "Deployment/web".to_owned())]
    );
    assert_eq!(pods.image_of("podshop-web-web"), second);
    assert_eq!(pods.state("podshop-web"), "Running");

    // A pod that is not Airlock's, in the same namespace's name space, is never touched.
    std::fs::write(
        world.dir.path().join("foreign.yaml"),
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: podshop-foreign, labels: {{airlock.dev/namespace: podshop}}}}\nspec:\n  containers:\n  - name: c\n    image: {second}\n"),
    )
    .unwrap();
    let play = Command::new("podman")
        .args(["kube", "play", "--network=none", "--tls-verify=false"])
        .arg(world.dir.path().join("foreign.yaml"))
        .current_dir(world.dir.path())
        .env("CONTAINERS_CONF", &pods.conf)
        .output()
        .unwrap();
    assert!(
        play.status.success(),
        "{}",
        String::from_utf8_lossy(&play.stderr)
    );

    // Deleting the file prunes the pod (and only it).
    world.env.remove("environments/staging/podshop/web.yaml");
    world.commit("retire web");
    let r = reconciler.sync_once("test").await.unwrap();
    assert_eq!(r.namespaces[0].pruned, ["Deployment/web"]);
    assert!(!pods.exists("podshop-web"));
    assert!(
        pods.exists("podshop-foreign"),
        "a pod Airlock did not create was removed"
    );

    let status = run::status(&config, 10).unwrap();
    assert!(status.contains("pruned Deployment/web"), "{status}");
    assert!(status.contains("update Deployment/web"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unvouched_images_are_refused_and_never_run() {
    if !podman_available() {
        eprintln!("SKIPPED: podman is not installed (scripts/install-deps.sh installs it)");
        return;
    }
    let world = World::new();
    let (config_path, config) = world.config(&[("staging", "podman", &[("podrefuse", &[SOURCE])])]);
    let pods = Pods {
        conf: world.dir.path().join("containers.conf"),
        namespaces: vec!["podrefuse"],
    };
    pods.clean();
    let good = world.image("good", 1, Vouch::Trusted(SOURCE)).await;
    let unsigned = world.image("unsigned", 2, Vouch::Unsigned).await;
    let other_key = world.image("otherkey", 3, Vouch::OtherKey).await;
    let other_source = world
        .image("othersource", 4, Vouch::Trusted(OTHER_SOURCE))
        .await;
    let repo = world.repo("tagged");
    world.push_image(&repo, 5, "tagged").await;
    let tagged = format!("{repo}:s5");
    let mut text = String::new();
    for (name, image) in [
        ("good", &good),
        ("unsigned", &unsigned),
        ("otherkey", &other_key),
        ("othersource", &other_source),
        ("tagged", &tagged),
    ] {
        text.push_str("---\n");
        text.push_str(&pod(name, image));
    }
    text.push_str(
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: svc}\nspec: {ports: [{port: 80}]}\n",
    );
    text.push_str(&format!(
        "---\n{}",
        pod("escape", &good).replace(
            "  name: escape\n",
            "  name: escape\n  namespace: kube-system\n"
        )
    ));
    world.write_manifest("staging", "podrefuse", "all.yaml", &text);
    // Signed images, but pod specs that reach into the host or pick a network.
    let root = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: hostroot}}\nspec:\n  volumes:\n  - {{name: root, hostPath: {{path: /}}}}\n  containers:\n  - name: c\n    image: {good}\n    securityContext: {{privileged: true}}\n"
    );
    let net = pod("net", &good).replace(
        "  name: net\n",
        "  name: net\n  annotations: {airlock.dev/podman-network: host}\n",
    );
    world.write_manifest(
        "staging",
        "podrefuse",
        "host.yaml",
        &format!("{root}---\n{net}"),
    );
    world.write_manifest("staging", "unlisted", "x.yaml", &pod("x", &good));
    world.write_manifest("staging", "Bad_Name", "y.yaml", &pod("y", &good));
    world
        .env
        .write("environments/staging/stray.yaml", pod("z", &good));
    world.commit("a mixed bag");

    // The plan says the same and touches nothing.
    let out = Command::new(env!("CARGO_BIN_EXE_airlock-reconciler"))
        .args(["reconcile", "plan", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(plan.contains("create   Pod/good"), "{plan}");
    assert!(
        plan.contains("plan: 1 to apply, 0 to prune, 11 refused"),
        "{plan}"
    );
    assert!(!pods.exists("podrefuse-good"), "plan applied something");

    let reconciler = Reconciler::open(config).await.unwrap();
    let r = reconciler.sync_once("test").await.unwrap();
    assert_eq!(applied(&r), [("create".to_owned(), "Pod/good".to_owned())]);
    assert_eq!(pods.state("podrefuse-good"), "Running");
    let refused: std::collections::BTreeMap<String, String> = r
        .namespaces
        .iter()
        .flat_map(|n| {
            n.refused
                .iter()
                .map(|x| (x.object.clone(), x.reasons.join("; ")))
        })
        .collect();
    let reason = |o: &str| {
        refused
            .get(o)
            .cloned()
            .unwrap_or_else(|| panic!("{o} not refused: {refused:#?}"))
    };
    assert!(
        reason("Pod/unsigned").contains("no valid signature by a trusted key"),
        "{refused:#?}"
    );
    assert!(
        reason("Pod/otherkey").contains("no valid signature by a trusted key"),
        "{refused:#?}"
    );
    assert!(
        reason("Pod/othersource").contains(&format!("was built from {OTHER_SOURCE}")),
        "{refused:#?}"
    );
    assert!(
        reason("Pod/tagged").contains("is not pinned by digest"),
        "{refused:#?}"
    );
    assert!(
        reason("Service/svc").contains("podman target runs v1 Pods and apps/v1 Deployments only")
    );
    assert!(
        reason("Pod/escape").contains("differs from its folder"),
        "{refused:#?}"
    );
    assert!(
        reason("Pod/x").contains("'unlisted' is not configured"),
        "{refused:#?}"
    );
    let host = reason("Pod/hostroot");
    assert!(
        host.contains("container 'c' is privileged") && host.contains("mounts the host path /"),
        "{refused:#?}"
    );
    assert!(
        reason("Pod/net").contains("podman network 'host' is not in podman_networks"),
        "{refused:#?}"
    );
    assert!(
        reason("environments/staging/Bad_Name/y.yaml").contains("not a DNS label"),
        "{refused:#?}"
    );
    assert!(
        reason("environments/staging/stray.yaml").contains("must sit directly in"),
        "{refused:#?}"
    );
    for pod in [
        "unsigned",
        "otherkey",
        "othersource",
        "tagged",
        "escape",
        "hostroot",
        "net",
    ] {
        assert!(!pods.exists(&format!("podrefuse-{pod}")), "{pod} runs");
    }
    assert!(!pods.exists("unlisted-x"));
    // Nothing of ours is in an unconfigured namespace: no inventory is written for it.
    let inventories = world.dir.path().join("state/podman/inventory/staging");
    assert!(inventories.join("podrefuse.json").exists());
    assert!(
        !inventories.join("unlisted.json").exists(),
        "an inventory was written for an unconfigured namespace"
    );

    // The CLI's --once exits non-zero because something was refused, and says what.
    let out = Command::new(env!("CARGO_BIN_EXE_airlock-reconciler"))
        .args(["reconcile", "--once", "--config"])
        .arg(world.dir.path().join("reconciler.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("REFUSED Pod/unsigned"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("11 object(s) refused"));
}

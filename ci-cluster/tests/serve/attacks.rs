//! Issue 19: one project's change runs every bounded-work attack at once against a real
//! `ci-cluster serve` (real sandbox, real registry), and another project's run is served
//! meanwhile and passes. Each attack ends with its own clear error.

use std::time::Duration;

use airlock_tests::images::{busybox_rootfs, push_rootfs};
use airlock_tests::registry::TestRegistry;

use crate::support::*;

/// A busybox image with 200 MiB of zeros in one file: about 2 MiB of layer.
fn bomb_image(world: &World, registry: &TestRegistry) -> String {
    let dir = tempfile::tempdir().expect("tmp");
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs, "bomb").expect("rootfs");
    let zeros = std::fs::File::create(rootfs.join("zeros")).expect("zeros");
    zeros.set_len(200 << 20).expect("sparse zeros");
    world
        .rt
        .block_on(push_rootfs(&registry.host, "bomb", "bomb", &rootfs))
        .expect("push")
        .reference
}

/// A registry that accepts connections and never answers.
fn stalling_registry(world: &World) -> String {
    let listener = world
        .rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    world.rt.spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    host
}

fn job<'a>(detail: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    detail["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["name"] == name))
        .unwrap_or_else(|| panic!("no job {name} in {detail}"))
}

#[test]
fn serve_keeps_serving_other_projects_while_one_runs_every_attack() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let world = World::new();
    let registry = TestRegistry::start();
    let bomb = bomb_image(&world, &registry);
    let stall = stalling_registry(&world);
    let cache = world.root.join("images");
    let server = Server::start(
        &world.config(
            Config::default()
                .github()
                .concurrency(2)
                .project(Project::gerrit("greet").with("concurrency = 1"))
                .project(Project::github("greet-gh"))
                .section(&format!(
                    "[images]\ncache_dir = \"{}\"\ninsecure = [\"{}\", \"{stall}\"]\nmax_unpacked_size = \"100Mi\"",
                    cache.display(),
                    registry.host
                )),
        ),
    );

    // The honest project's change, committed first.
    world.repo.write(
        ".pipeline/config.yaml",
        "version: 1\njobs:\n  hello:\n    run: echo hello > hello.txt\n    outputs: [hello.txt]\n",
    );
    let honest = world.repo.commit("an honest change");
    world.push(&honest, "refs/pull/5/head");

    // The attacker's change: every job is one attack.
    let attacks = format!(
        r#"version: 1
jobs:
  stall:
    image: {stall}/stall@sha256:{zeros}
    run: "true"
    timeout: 40s
  bomb:
    image: {bomb}
    run: "true"
  many-outputs:
    run: mkdir -p dist && cd dist && seq 3000 | xargs touch
    outputs: [dist]
  empty-lines:
    run: yes '' | head -n 2000000
  latin1-output:
    run: mkdir -p dist && touch "dist/$(printf 'caf\351')"
    outputs: [dist]
  terminal:
    run: printf '\033]0;owned\007\033[2J\033[Hnot a real line\n'
"#,
        zeros = "0".repeat(64)
    );
    let attack = world.change_with_pipeline(&server, 1, "every attack at once", &attacks);
    server.wait_running(attack);

    let body = github_pr("opened", &honest, 5);
    let (status, reply) = post(
        &server.url("/hooks/github"),
        &github_headers(&body, "pull_request", "honest-1"),
        &body,
    );
    assert_eq!(status, 202, "{reply}");
    let honest_run = reply["run"].as_i64().expect("run id");
    let served = server.wait_final_within(honest_run, Duration::from_secs(120));
    assert_eq!(served["run"]["status"], "passed", "{served}");
    // Served while the attacks were still going (the stalled pull holds its job for 40 s, while the honest run needs a few).
    let attacking = server.run(attack);
    assert_eq!(attacking["run"]["status"], "running", "{attacking}");

    let detail = server.wait_final_within(attack, Duration::from_secs(180));
    assert_eq!(detail["run"]["status"], "failed", "{detail}");
    let expect = [
        ("stall", "timed_out", "timed out"),
        ("bomb", "error", "is larger than 104857600 bytes"),
        ("many-outputs", "failed", "over the limit of 1000 files"),
        (
            "latin1-output",
            "failed",
            "dist/caf\\xe9' has a name that is not UTF-8",
        ),
    ];
    for (name, state, says) in expect {
        let j = job(&detail, name);
        assert_eq!(j["state"], state, "{name}: {j}");
        assert!(
            j["detail"].as_str().unwrap_or_default().contains(says),
            "{name}: {j}"
        );
    }
    // The flood of empty lines and the escape sequences are only text: the job passes with
    // its log held to the cap.
    for name in ["empty-lines", "terminal"] {
        assert_eq!(job(&detail, name)["state"], "passed", "{name}");
    }
    // Nothing of the bomb was kept.
    let entries: Vec<String> = std::fs::read_dir(&cache)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(entries.is_empty(), "{entries:?}");
}

//! `trusted-builder serve --once` end to end with real components: a `git daemon` serving the
//! canonical repository, a Debian `docker-registry`, the bubblewrap sandbox, and the real
//! binary. The pass record is produced the way the CI produces it (a CI-style run of the job,
//! signed with an origin key, stored through `DirOutbox`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod intake_support;
mod oci_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use airlock_pipeline::record::{DirOutbox, Outbox as _, SignedPassRecord};
use airlock_tests::git::snapshot_dir;
use airlock_tests::sandbox::work_dir;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use intake_support::*;
use oci_support::TestRegistry;
use trusted_builder::attach::{attestation_tag, signature_tag};
use trusted_builder::audit::{Decision, read_entries, verify_chain};
use trusted_builder::oci::{Registry, RegistryConfig};
use trusted_builder::sign::{Secret, generate_key_pair};

const PASSWORD: &str = "serve-test";

fn run(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_trusted-builder"))
        .args(args)
        .env_remove("COSIGN_PASSWORD")
        .output()
        .expect("run trusted-builder");
    eprintln!(
        "$ trusted-builder {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn serve_once(config: &Path) -> Output {
    run(&["serve", "--config", config.to_str().unwrap(), "--once"])
}

/// Every tag of every repository, read from the registry's own storage.
fn registry_tags(reg: &TestRegistry) -> BTreeSet<String> {
    let root = reg.data_dir().join("data/docker/registry/v2/repositories");
    let mut tags = BTreeSet::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_name() == "_manifests" {
                let repo = dir.strip_prefix(&root).unwrap().display().to_string();
                if let Ok(t) = std::fs::read_dir(p.join("tags")) {
                    for tag in t.flatten() {
                        tags.insert(format!("{repo}:{}", tag.file_name().to_string_lossy()));
                    }
                }
            } else if p.is_dir() && !e.file_name().to_string_lossy().starts_with('_') {
                stack.push(p);
            }
        }
    }
    tags
}

fn events(log: &Path) -> Vec<Decision> {
    read_entries(log)
        .unwrap()
        .into_iter()
        .map(|e| e.decision)
        .collect()
}

#[tokio::test]
async fn serve_once_builds_pushes_signs_attests_then_is_idempotent_and_refuses_tampering() {
    let world = World::start();
    let reg = TestRegistry::start();
    let dir = world.tmp.path().join("builder-etc");
    std::fs::create_dir_all(&dir).unwrap();

    // The CI side: run the job, sign the record with the origin key, store it in the outbox.
    let outbox_dir = world.tmp.path().join("outbox");
    let outbox = DirOutbox::new(&outbox_dir);
    let outputs = world.ci_outputs(&world.main_commit, "publish").await;
    let record = world.record(&world.main_commit, "refs/heads/main", "publish", outputs);
    let signed = world.origin.sign(&record).unwrap();
    let name = outbox.put(&signed, "svc-publish").unwrap();

    // The builder's keys and config.
    std::fs::write(
        dir.join("ci-origin.pub"),
        format!("{}\n", world.origin.public_key_hex()),
    )
    .unwrap();
    let pair = generate_key_pair(&dir, &Secret::new(PASSWORD)).unwrap();
    std::fs::write(dir.join("cosign.password"), format!("{PASSWORD}\n")).unwrap();
    let work = work_dir();
    let repository = format!("{}/greet", reg.host);
    let config = dir.join("builder.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "data"
outbox_dir = "{outbox}"
origin_keys = ["ci-origin.pub"]
builder_id = "https://airlock.test/trusted-builder"
strict_reproducibility = true
poll_interval_secs = 1
work_dir = "{work}"

[registry]
insecure = ["{host}"]

# The sample's jobs name no image here (tests/e2e/chain.rs runs them in one).
[images]
host_mode = true

[signing]
backend = "file"
key = "{key}"
password = {{ file = "cosign.password" }}

[projects.{PROJECT}]
git_url = "{url}"
protected_refs = ["refs/heads/main", "refs/tags/v*"]
image_repository = "{repository}"
"#,
            outbox = outbox_dir.display(),
            work = work.path().display(),
            host = reg.host,
            key = pair.private_key.display(),
            url = world.url,
        ),
    )
    .unwrap();
    let log = dir.join("data/decisions.jsonl");

    // First run: built, pushed, signed, attested.
    let out = serve_once(&config);
    assert!(out.status.success(), "serve --once failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&name),
        "a progress line names the record: {stderr}"
    );
    let first = events(&log);
    assert!(
        matches!(&first[0], Decision::Accepted { subject } if subject.commit == world.main_commit && subject.job == "publish"),
        "{first:?}"
    );
    assert!(
        matches!(&first[1], Decision::Built { reproduced: true, differing, .. } if differing.is_empty()),
        "{first:?}"
    );
    let short = &world.main_commit[..12];
    let image_ref = format!("{repository}:publish-{short}");
    let Decision::Pushed { image, digest, .. } = &first[2] else {
        panic!("{first:?}")
    };
    assert_eq!(image, &image_ref);
    let digest = digest.clone();
    assert!(
        matches!(&first[3], Decision::Signed { image, digest: d, .. } if image == &repository && d == &digest),
        "{first:?}"
    );
    let artifacts_ref = format!("{repository}-artifacts:publish-{short}");
    let Decision::Pushed {
        image,
        digest: artifacts_digest,
        ..
    } = &first[4]
    else {
        panic!("{first:?}")
    };
    assert_eq!(image, &artifacts_ref);
    let artifacts_digest = artifacts_digest.clone();
    let artifacts_repository = format!("{repository}-artifacts");
    assert!(
        matches!(&first[5], Decision::Signed { image, digest: d, .. } if image == &artifacts_repository && d == &artifacts_digest),
        "{first:?}"
    );
    assert_eq!(first.len(), 6, "{first:?}");
    assert_eq!(verify_chain(&log).unwrap().0, 6);

    // In the registry: the image under its tag, its .sig and .att, the artifacts.
    let registry = Registry::new(&RegistryConfig {
        insecure: vec![reg.host.clone()],
        ..Default::default()
    })
    .unwrap();
    for tag in [
        format!("publish-{short}"),
        signature_tag(&digest).unwrap(),
        attestation_tag(&digest).unwrap(),
    ] {
        let found = registry
            .fetch_manifest_by_tag(&repository, &tag)
            .await
            .unwrap();
        assert!(found.is_some(), "{repository}:{tag} missing");
    }
    let (bytes, _) = registry
        .fetch_manifest_by_tag(&repository, &format!("publish-{short}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(trusted_builder::oci::sha256_digest(&bytes), digest);
    assert!(
        registry
            .fetch_manifest_by_tag(
                &format!("{repository}-artifacts"),
                &format!("publish-{short}")
            )
            .await
            .unwrap()
            .is_some()
    );

    // Independent check through the CLI.
    let out = run(&[
        "verify",
        &format!("{repository}@{digest}"),
        "--key",
        pair.public_key.to_str().unwrap(),
        "--insecure-registry",
        &reg.host,
    ]);
    assert!(out.status.success(), "verify failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("reproduced: true"), "{stdout}");
    assert!(stdout.contains(&world.main_commit), "{stdout}");
    // The artifacts carry a signature and provenance of their own.
    let out = run(&[
        "verify",
        &format!("{artifacts_repository}@{artifacts_digest}"),
        "--key",
        pair.public_key.to_str().unwrap(),
        "--insecure-registry",
        &reg.host,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verify of the artifacts failed: {stdout}"
    );
    assert!(stdout.contains(&world.main_commit), "{stdout}");

    // Second run: a no-op. Nothing logged, registry untouched.
    let tags = registry_tags(&reg);
    // The registry's storage names repositories without the host.
    for tag in [
        format!("greet:publish-{short}"),
        format!("greet:{}", signature_tag(&digest).unwrap()),
        format!("greet:{}", attestation_tag(&digest).unwrap()),
        format!("greet-artifacts:publish-{short}"),
        format!(
            "greet-artifacts:{}",
            signature_tag(&artifacts_digest).unwrap()
        ),
        format!(
            "greet-artifacts:{}",
            attestation_tag(&artifacts_digest).unwrap()
        ),
    ] {
        assert!(tags.contains(&tag), "{tag} not in {tags:?}");
    }
    assert_eq!(tags.len(), 6, "{tags:?}");
    let storage = reg.data_dir().join("data");
    let before = snapshot_dir(&storage);
    let out = serve_once(&config);
    assert!(out.status.success(), "second serve --once failed");
    assert_eq!(events(&log).len(), 6, "a replay logged something");
    assert_eq!(
        snapshot_dir(&storage),
        before,
        "a replay touched the registry"
    );

    // A tampered record: one byte of the payload changed, signature kept.
    let mut payload = BASE64.decode(&signed.payload).unwrap();
    let at = payload
        .windows(5)
        .position(|w| w == b"run-1")
        .expect("ci_run_id in the payload");
    payload[at + 4] = b'2';
    let tampered = SignedPassRecord {
        payload: BASE64.encode(&payload),
        ..signed.clone()
    };
    let tampered_name = outbox.put(&tampered, "svc-tampered").unwrap();
    assert_ne!(tampered_name, name);
    let out = serve_once(&config);
    assert!(
        out.status.success(),
        "a refusal is not a failure of the builder"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&tampered_name) && stderr.contains("REFUSED"),
        "{stderr}"
    );
    let all = events(&log);
    assert_eq!(all.len(), 7, "{all:?}");
    assert!(
        matches!(&all[6], Decision::Refused { subject: None, reason } if reason.contains("signature does not verify")),
        "{:?}",
        all[6]
    );
    assert_eq!(verify_chain(&log).unwrap().0, 7);
    assert_eq!(
        registry_tags(&reg),
        tags,
        "a refusal changed the registry's tags"
    );
    assert_eq!(
        snapshot_dir(&storage),
        before,
        "a refusal touched the registry"
    );

    // Processed names are durable: yet another run re-logs nothing.
    let out = serve_once(&config);
    assert!(out.status.success());
    assert_eq!(events(&log).len(), 7);
    let processed = std::fs::read_to_string(dir.join("data/processed.jsonl")).unwrap();
    assert_eq!(processed.lines().count(), 2, "{processed}");
}

#[test]
fn serve_with_a_bad_config_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config: PathBuf = dir.path().join("builder.toml");
    std::fs::write(&config, "data_dir = \"d\"\ncolour = \"blue\"\n").unwrap();
    let out = serve_once(&config);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("builder.toml") && stderr.contains("colour"),
        "{stderr}"
    );
}

/// Without `--once` the builder polls until SIGTERM, then exits cleanly. Nothing else is
/// running here: an empty outbox needs neither Git nor a registry.
#[test]
fn serve_polls_until_sigterm() {
    use std::io::BufRead as _;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let origin = airlock_pipeline::record::OriginKey::generate();
    std::fs::write(dir.path().join("ci.pub"), origin.public_key_hex()).unwrap();
    let pair = generate_key_pair(dir.path(), &Secret::new(PASSWORD)).unwrap();
    std::fs::write(dir.path().join("pw"), PASSWORD).unwrap();
    let work = work_dir();
    let config = dir.path().join("builder.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "data"
outbox_dir = "outbox-not-yet-created"
origin_keys = ["ci.pub"]
builder_id = "https://airlock.test/trusted-builder"
strict_reproducibility = true
poll_interval_secs = 1
work_dir = "{work}"

[signing]
backend = "file"
key = "{key}"
password = {{ file = "pw" }}

[projects.svc]
git_url = "git://127.0.0.1:1/svc"
protected_refs = ["refs/heads/main"]
image_repository = "127.0.0.1:1/svc"
"#,
            work = work.path().display(),
            key = pair.private_key.display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_trusted-builder"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("COSIGN_PASSWORD")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("no listening port"), "{line}");
    // A few polls of the missing outbox are not errors.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "serve exited on its own"
    );
    // Issue 26: no listening socket in the process itself, not only in what it prints
    // (`sockets::listening` sees one in a control: airlock_tests' own unit test).
    let listening = airlock_tests::sockets::listening(child.id());
    assert!(listening.is_empty(), "the builder listens: {listening:?}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(status.success(), "{status:?}: {rest}");
    assert!(rest.contains("shutting down"), "{rest}");
}

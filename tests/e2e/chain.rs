//! The whole chain, headless: runs the README's first command (`scripts/demo.sh --once`) on free
//! ports with the binaries of this build, then checks every hop from what each component left
//! on disk and in Git, not from the narration alone:
//! review vote on the stand-in Gerrit → pass record (origin signature checked here) → builder
//! decisions (accepted, rebuilt and reproduced, pushed, signed) → promotion commits with their
//! trailers → the reconciler's sync showing the digest healthy in production → the trace. And the
//! two attacks: a tampered pass record refused by the builder, an unsigned image in the
//! environment repository refused by the reconciler; both in the trace with their reasons.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use airlock_pipeline::record::{self, parse_public_key_hex};
use serde_json::Value;

fn bin_dir() -> PathBuf {
    let forge = PathBuf::from(env!("CARGO_BIN_EXE_stand-in-forge"));
    let dir = forge.parent().expect("bin dir").to_path_buf();
    for b in ["ci-cluster", "trusted-builder", "airlock-reconciler"] {
        assert!(
            dir.join(b).exists(),
            "{} is missing: build the workspace first (cargo build --workspace --bins)",
            dir.join(b).display()
        );
    }
    dir
}

/// Six consecutive free ports on 127.0.0.1.
fn port_base() -> u16 {
    let start = 20_000 + (std::process::id() % 20_000) as u16;
    (0..200u16)
        .map(|i| start.wrapping_add(i * 7))
        .find(|b| (0..6).all(|k| TcpListener::bind(("127.0.0.1", b + k)).is_ok()))
        .expect("no free ports")
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn the_demo_walks_the_whole_chain_and_the_boundary_holds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let demo = tempfile::Builder::new()
        .prefix("airlock-e2e-chain-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let base = port_base();
    let out = Command::new("sh")
        .arg(root.join("scripts/demo.sh"))
        .arg("--once")
        .current_dir(root)
        .env("AIRLOCK_BIN_DIR", bin_dir())
        .env("AIRLOCK_DEMO_DIR", demo.path())
        .env("AIRLOCK_DEMO_PORT_BASE", base.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed\n{stdout}\n{stderr}");
    let d = demo.path();
    let registry = format!("127.0.0.1:{}", base + 3);

    // Review: the stand-in Gerrit got Verified +1 for the good patchset, -1 for the broken one.
    let forge = std::fs::read_to_string(d.join("forge.log")).unwrap();
    assert!(
        forge.contains("Verified +1") && forge.contains("Verified -1"),
        "{forge}"
    );

    // The pass record: opened here with the CI's origin key.
    let key = std::fs::read_to_string(d.join("ci-data/keys/ci-origin.key.pub")).unwrap();
    let key = parse_public_key_hex(&key).unwrap();
    let mut genuine = Vec::new();
    for entry in std::fs::read_dir(d.join("ci-data/outbox")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match record::open(&bytes, &[key]) {
            Ok(r) => genuine.push((name, r)),
            Err(e) => assert_eq!(name, "zz-tampered.json", "{name} does not open: {e}"),
        }
    }
    assert_eq!(genuine.len(), 1, "{genuine:?}");
    let (record_name, record) = &genuine[0];
    assert_eq!(
        (record.job.as_str(), record.git_ref.as_str()),
        ("publish", "refs/heads/main")
    );

    // Every job ran in the toolchain image the pipeline pins (from the public registry); the
    // builder pulled the same digest from its own, trusted registry.
    let public = format!("127.0.0.1:{}", base + 5);
    let toolchain = &record.images["publish"];
    assert!(
        toolchain.starts_with(&format!("{public}/toolchain@sha256:")),
        "{:?}",
        record.images
    );
    assert_eq!(record.images.len(), 3, "{:?}", record.images);
    assert!(record.images.values().all(|i| i == toolchain));
    let hex = toolchain.rsplit_once(":").unwrap().1;
    let pulled: Value = serde_json::from_slice(
        &std::fs::read(d.join(format!("images-builder/sha256-{hex}/image.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        pulled["pulled_from"],
        format!("{registry}/toolchain@sha256:{hex}").as_str()
    );

    // The builder: accepted, rebuilt with identical outputs, pushed, signed; tampered refused.
    let decisions = lines(&d.join("builder-data/decisions.jsonl"));
    let about =
        |name: &str| -> Vec<&Value> { decisions.iter().filter(|e| e["record"] == name).collect() };
    let events: Vec<&str> = about(record_name)
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events[..4],
        ["accepted", "built", "pushed", "signed"],
        "{decisions:#?}"
    );
    let built = about(record_name)
        .into_iter()
        .find(|e| e["event"] == "built")
        .unwrap();
    assert_eq!(built["reproduced"], true);
    let signed = about(record_name)
        .into_iter()
        .find(|e| e["event"] == "signed")
        .unwrap();
    let digest = signed["digest"].as_str().unwrap().to_owned();
    let image = format!("{registry}/greet@{digest}");
    let tampered = about("zz-tampered.json");
    assert_eq!(tampered.len(), 1, "{decisions:#?}");
    assert_eq!(tampered[0]["event"], "refused");
    assert!(
        tampered[0]["reason"]
            .as_str()
            .unwrap()
            .contains("signature does not verify")
    );

    // Promotion: two commits by the release manager naming the digest, the rogue one by Mallory.
    let log = Command::new("git")
        .arg("--git-dir")
        .arg(d.join("git/environments.git"))
        .args(["log", "--format=%an|%s|%(trailers:key=Airlock-Image,valueonly,separator=%x2C)|%(trailers:key=Airlock-From,valueonly,separator=%x2C)", "main"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&log.stdout);
    let promoted: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("Rita Release|"))
        .collect();
    assert_eq!(promoted.len(), 2, "{log}");
    assert!(promoted.iter().all(|l| l.contains(&image)), "{log}");
    assert!(
        promoted[0].contains("to production") && promoted[0].ends_with("|staging"),
        "{log}"
    );
    assert!(log.lines().any(|l| l.starts_with("Mallory|")), "{log}");

    // The reconciler: production runs the digest healthily; the rogue pod was refused.
    let syncs = lines(&d.join("reconciler-data/syncs.jsonl"));
    let last = syncs.last().unwrap();
    let prod = last["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["environment"] == "production")
        .unwrap();
    let greet = &prod["health"]["Deployment.apps/greet"];
    assert_eq!(greet["health"]["state"], "healthy", "{prod:#}");
    assert_eq!(greet["images"][0], image.as_str());
    assert!(
        prod["health"].get("Pod/rogue").is_none(),
        "the rogue pod is a member: {prod:#}"
    );
    let rogue = prod["refused"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["object"] == "Pod/rogue")
        .unwrap_or_else(|| panic!("rogue not refused: {prod:#}"));
    assert!(
        rogue["reasons"][0]
            .as_str()
            .unwrap()
            .contains("no valid signature by a trusted key")
    );
    assert!(
        stdout.contains("Hello there, Airlock (production)!"),
        "{stdout}"
    );

    // The trace walks every hop back to the review and shows both refusals.
    let trace = std::fs::read_to_string(d.join("trace.txt")).unwrap();
    for needle in [
        format!("trace of {image}"),
        "production/greet-prod Deployment.apps/greet: healthy".into(),
        "promoted by Rita Release <rita@example.org>".into(),
        "signature: valid".into(),
        "reproduced: true".into(),
        format!("image of job publish {}", toolchain),
        "hash chain intact".into(),
        format!("{record_name}: signed and attested"),
        "outputs match the provenance".into(),
        format!("run {} passed: push refs/heads/main", record.ci_run_id),
        "review: change 1 patchset 1".into(),
        "Verified +1 on Gerrit".into(),
        "builder zz-tampered.json: pass record signature does not verify".into(),
        "Pod/rogue".into(),
        "the chain holds".into(),
    ] {
        assert!(trace.contains(&needle), "trace lacks {needle:?}:\n{trace}");
    }

    // Nothing is left running once the demo has exited.
    let left = Command::new("podman")
        .args(["pod", "exists", "greet-prod-greet"])
        .env("CONTAINERS_CONF", d.join("containers.conf"))
        .status()
        .unwrap();
    assert!(!left.success(), "the demo left its pod running");
}

//! Pass record version 2 at the builder, against a real `git daemon` and the real sandbox: the
//! rebuild's job environment equals the CI's but for the run-only variables, the record's job
//! images must match the pipeline file at the commit, and version 1 records still open.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod intake_support;

use std::collections::BTreeMap;

use airlock_pipeline::env::RUN_ONLY_VARIABLES;
use airlock_pipeline::record::{PASS_RECORD_PAYLOAD_TYPE, SignedPassRecord, key_id_of, pae};
use airlock_pipeline::spec::EventKind;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey};
use intake_support::*;
use tokio_util::sync::CancellationToken;
use trusted_builder::intake::ImageMismatch;

/// `env-job` writes its environment without the run-only variable; `env-all` with it (the
/// control: it must not reproduce, or the comparison would prove nothing).
const ENV_PIPELINE: &str = r#"version: 1
jobs:
  env-job:
    run: env | sort | grep -v '^AIRLOCK_RUN=' > env.txt
    outputs: [env.txt]
    publish:
      artifacts: [env.txt]
  env-all:
    run: env | sort > env-all.txt
    outputs: [env-all.txt]
    publish:
      artifacts: [env-all.txt]
"#;

#[tokio::test]
async fn the_rebuild_sees_the_ci_environment_except_the_run_only_variables() {
    assert_eq!(RUN_ONLY_VARIABLES, ["AIRLOCK_RUN"]);
    let world = World::start();
    world.repo.write(".pipeline/config.yaml", ENV_PIPELINE);
    let commit = world
        .repo
        .commit_and_push("print the environment", &world.url, "refs/heads/main");
    let builder = world.builder("builder", false, &[]);

    let mut rebuilt = BTreeMap::new();
    for job in ["env-job", "env-all"] {
        let outputs = world.ci_outputs(&commit, job).await;
        let bytes = world.signed(&world.record(&commit, "refs/heads/main", job, outputs));
        let accepted = builder.intake.check(&bytes).map_err(|r| r.reason).unwrap();
        let result = builder
            .rebuilder
            .rebuild(&accepted, CancellationToken::new())
            .await
            .unwrap();
        let text =
            std::fs::read_to_string(result.store.blob_path(&result.outputs[0].sha256)).unwrap();
        rebuilt.insert(job, (result.reproduced, result.differing.clone(), text));
    }

    let (reproduced, differing, text) = &rebuilt["env-job"];
    assert!(reproduced, "differing: {differing:?}\n{text}");
    for line in [
        format!("AIRLOCK_COMMIT={commit}"),
        "AIRLOCK_REF=refs/heads/main".to_string(),
        "AIRLOCK_EVENT=push".to_string(),
        "AIRLOCK_JOB=env-job".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert!(
        text.lines().any(|l| l.starts_with("SOURCE_DATE_EPOCH=")),
        "{text}"
    );
    // Control: with AIRLOCK_RUN in it the output differs, and AIRLOCK_RUN is the only line
    // that does.
    let (reproduced, differing, text) = &rebuilt["env-all"];
    assert!(!reproduced, "{text}");
    assert_eq!(differing, &["env-all.txt"]);
    let run_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("AIRLOCK_RUN="))
        .collect();
    assert_eq!(run_lines, ["AIRLOCK_RUN=rebuild"], "{text}");
}

const TOOLS: &str =
    "127.0.0.1:1/tools@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const CC: &str =
    "127.0.0.1:1/cc@sha256:2222222222222222222222222222222222222222222222222222222222222222";
const OTHER: &str =
    "127.0.0.1:1/cc@sha256:3333333333333333333333333333333333333333333333333333333333333333";

/// `publish` runs in the file's default image, needs `gen` (its own image) and `lint` (host
/// mode). The registry does not exist: intake decides without pulling anything.
fn image_pipeline() -> String {
    format!(
        r#"version: 1
image: {CC}
jobs:
  gen:
    image: {TOOLS}
    run: echo gen > gen.txt
    outputs: [gen.txt]
  publish:
    needs: [gen]
    run: cp gen.txt out.txt
    outputs: [out.txt]
    publish:
      artifacts: [out.txt]
"#
    )
}

fn images(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(job, image)| (job.to_string(), image.to_string()))
        .collect()
}

#[tokio::test]
async fn a_record_whose_images_differ_from_the_source_is_refused_before_anything_runs() {
    let world = World::start();
    world.repo.write(".pipeline/config.yaml", image_pipeline());
    let commit = world
        .repo
        .commit_and_push("pin images", &world.url, "refs/heads/main");
    let builder = world.builder("builder", true, &[]);
    let record = |images: BTreeMap<String, String>| {
        let mut record = world.record(&commit, "refs/heads/main", "publish", Vec::new());
        record.images = images;
        world.signed(&record)
    };

    let cases = [
        (
            images(&[("gen", TOOLS), ("publish", OTHER)]),
            ImageMismatch::Differs {
                job: "publish".into(),
                recorded: OTHER.into(),
                pinned: CC.into(),
            },
        ),
        (
            images(&[("publish", CC)]),
            ImageMismatch::OnlyInSource {
                job: "gen".into(),
                pinned: TOOLS.into(),
            },
        ),
        (
            images(&[("gen", TOOLS), ("publish", CC), ("lint", CC)]),
            ImageMismatch::NotRebuilt {
                job: "lint".into(),
                recorded: CC.into(),
            },
        ),
    ];
    for (images, expected) in cases {
        let refusal = builder.intake.check(&record(images)).unwrap_err();
        assert_eq!(
            refusal.image_mismatch.as_ref(),
            Some(&expected),
            "{refusal}"
        );
        assert_eq!(refusal.reason, expected.to_string());
        assert!(
            refusal
                .subject
                .is_some_and(|s| s.job == "publish" && s.commit == commit),
            "{}",
            refusal.reason
        );
    }
    // The message names the job and both references.
    let refusal = builder
        .intake
        .check(&record(images(&[("gen", TOOLS), ("publish", OTHER)])))
        .unwrap_err();
    for part in ["'publish'", OTHER, CC] {
        assert!(refusal.reason.contains(part), "{}", refusal.reason);
    }

    // Control: the images the CI records for this pipeline are accepted, and handed on.
    let accepted = builder
        .intake
        .check(&record(images(&[("gen", TOOLS), ("publish", CC)])))
        .map_err(|r| r.reason)
        .unwrap();
    let handed_on: BTreeMap<String, String> = accepted
        .images
        .iter()
        .map(|(job, image)| (job.clone(), image.to_string()))
        .collect();
    assert_eq!(handed_on, images(&[("gen", TOOLS), ("publish", CC)]));
    assert!(builder.no_build_dirs());
}

/// Signs a payload with a key the builder trusts, without the writer's checks: how a version 1
/// CI's record looks.
fn hand_signed(key: &SigningKey, payload: &[u8]) -> Vec<u8> {
    let signature = key.sign(&pae(PASS_RECORD_PAYLOAD_TYPE, payload));
    serde_json::to_vec(&SignedPassRecord {
        payload_type: PASS_RECORD_PAYLOAD_TYPE.into(),
        payload: BASE64.encode(payload),
        key_id: key_id_of(&key.verifying_key()),
        signature: BASE64.encode(signature.to_bytes()),
    })
    .unwrap()
}

/// The record as a version 1 writer wrote it: no `event`, no `images`.
fn as_v1(world: &World, commit: &str, git_ref: &str) -> Vec<u8> {
    let mut json =
        serde_json::to_value(world.record(commit, git_ref, "publish", Vec::new())).unwrap();
    let fields = json.as_object_mut().unwrap();
    fields.remove("event");
    fields.remove("images");
    fields.insert("version".into(), 1.into());
    serde_json::to_vec(&json).unwrap()
}

#[tokio::test]
async fn a_version_1_record_still_opens_but_cannot_vouch_for_images() {
    let world = World::start();
    let v1_ci = SigningKey::from_bytes(&[11u8; 32]);
    let builder = world.builder("builder", true, &[v1_ci.verifying_key()]);

    // The sample pipeline runs in host mode: nothing to compare, the record is accepted.
    let bytes = hand_signed(
        &v1_ci,
        &as_v1(&world, &world.main_commit, "refs/heads/main"),
    );
    let accepted = builder.intake.check(&bytes).map_err(|r| r.reason).unwrap();
    assert_eq!(
        (accepted.record.version, accepted.record.event),
        (1, EventKind::Push)
    );
    assert!(accepted.record.images.is_empty() && accepted.images.is_empty());

    // A version 1 record lists no images, so for a pipeline that pins them it disagrees with
    // the source and is refused like a version 2 record without them.
    world.repo.write(".pipeline/config.yaml", image_pipeline());
    let pinned = world
        .repo
        .commit_and_push("pin images", &world.url, "refs/heads/main");
    let refusal = builder
        .intake
        .check(&hand_signed(
            &v1_ci,
            &as_v1(&world, &pinned, "refs/heads/main"),
        ))
        .unwrap_err();
    assert!(
        matches!(refusal.image_mismatch.as_ref(), Some(ImageMismatch::OnlyInSource { job, .. }) if job == "gen"),
        "{}",
        refusal.reason
    );
    assert!(builder.no_build_dirs());
}

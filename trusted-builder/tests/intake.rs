//! Intake, hermetic rebuild and the decision log against a real `git daemon` and the real
//! bubblewrap sandbox, with pass records signed in the test as the CI signs them.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod intake_support;

use airlock_pipeline::record::{
    MAX_RECORD_BYTES, OutputDigest, PASS_RECORD_PAYLOAD_TYPE, SignedPassRecord, key_id_of, pae,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey};
use intake_support::*;
use tokio_util::sync::CancellationToken;
use trusted_builder::audit::{Decision, read_entries, verify_chain};
use trusted_builder::intake::Subject;

/// What the serve loop will do with one record (kept small: the loop itself comes later).
async fn process(
    builder: &mut Builder,
    bytes: &[u8],
) -> Result<trusted_builder::rebuild::Rebuilt, String> {
    let accepted = match builder.intake.check(bytes) {
        Ok(a) => a,
        Err(refusal) => {
            builder
                .audit
                .append(Decision::Refused {
                    subject: refusal.subject,
                    reason: refusal.reason.clone(),
                })
                .unwrap();
            return Err(refusal.reason);
        }
    };
    let subject = Subject::of(&accepted.record);
    builder
        .audit
        .append(Decision::Accepted {
            subject: subject.clone(),
        })
        .unwrap();
    match builder
        .rebuilder
        .rebuild(&accepted, CancellationToken::new())
        .await
    {
        Ok(rebuilt) => {
            builder
                .intake
                .built()
                .insert(&accepted.built_key())
                .unwrap();
            let outputs = rebuilt.outputs.iter().map(OutputDigest::from).collect();
            builder
                .audit
                .append(Decision::Built {
                    subject,
                    reproduced: rebuilt.reproduced,
                    differing: rebuilt.differing.clone(),
                    outputs,
                })
                .unwrap();
            Ok(rebuilt)
        }
        Err(e) => {
            builder
                .audit
                .append(Decision::Refused {
                    subject: Some(subject),
                    reason: e.to_string(),
                })
                .unwrap();
            Err(e.to_string())
        }
    }
}

fn events(builder: &Builder) -> Vec<Decision> {
    read_entries(builder.log_path())
        .unwrap()
        .into_iter()
        .map(|e| e.decision)
        .collect()
}

#[tokio::test]
async fn good_record_is_rebuilt_reproduced_and_a_replay_is_a_logged_no_op() {
    let world = World::start();
    let mut builder = world.builder("builder", true, &[]);
    let outputs = world.ci_outputs(&world.main_commit, "publish").await;
    assert!(
        outputs.iter().any(|o| o.path == "dist/greet.tar.gz"),
        "{outputs:?}"
    );
    let bytes = world.signed(&world.record(
        &world.main_commit,
        "refs/heads/main",
        "publish",
        outputs.clone(),
    ));

    let rebuilt = process(&mut builder, &bytes).await.unwrap();
    assert!(rebuilt.reproduced, "differing: {:?}", rebuilt.differing);
    assert!(rebuilt.differing.is_empty());
    for claimed in &outputs {
        let ours = rebuilt
            .outputs
            .iter()
            .find(|o| o.path == claimed.path)
            .unwrap();
        assert_eq!(ours.sha256, claimed.sha256);
        assert!(rebuilt.store.blob_path(&ours.sha256).is_file());
    }

    // The same record again: refused as a replay, logged, nothing rebuilt.
    let reason = process(&mut builder, &bytes).await.unwrap_err();
    assert!(reason.contains("already built"), "{reason}");

    let log = events(&builder);
    assert!(
        matches!(&log[0], Decision::Accepted { subject } if subject.commit == world.main_commit)
    );
    assert!(
        matches!(&log[1], Decision::Built { reproduced: true, differing, .. } if differing.is_empty())
    );
    assert!(
        matches!(&log[2], Decision::Refused { reason, .. } if reason.contains("already built"))
    );
    assert_eq!(log.len(), 3);
    assert_eq!(verify_chain(builder.log_path()).unwrap().0, 3);

    // The built state is durable: a builder restarted on the same data dir still refuses it.
    let mut restarted = world.builder("builder", true, &[]);
    let reason = process(&mut restarted, &bytes).await.unwrap_err();
    assert!(reason.contains("already built"), "{reason}");
}

#[tokio::test]
async fn differing_ci_digest_is_flagged_and_refused_in_strict_mode() {
    let world = World::start();
    let claimed = vec![
        OutputDigest {
            path: "dist/greet".into(),
            sha256: "c".repeat(64),
            size: 1,
        },
        OutputDigest {
            path: "dist/greet.tar.gz".into(),
            sha256: "d".repeat(64),
            size: 1,
        },
    ];
    let bytes =
        world.signed(&world.record(&world.main_commit, "refs/heads/main", "publish", claimed));

    let mut lenient = world.builder("lenient", false, &[]);
    let rebuilt = process(&mut lenient, &bytes).await.unwrap();
    assert!(!rebuilt.reproduced);
    assert_eq!(
        rebuilt.differing,
        vec!["dist/greet".to_string(), "dist/greet.tar.gz".to_string()]
    );
    assert!(
        matches!(&events(&lenient)[1], Decision::Built { reproduced: false, differing, .. } if differing.len() == 2)
    );

    let mut strict = world.builder("strict", true, &[]);
    let reason = process(&mut strict, &bytes).await.unwrap_err();
    assert!(
        reason.contains("differ from CI") && reason.contains("dist/greet.tar.gz"),
        "{reason}"
    );
    assert!(
        strict.no_build_dirs(),
        "a refused rebuild leaves its work directory behind"
    );
    let log = events(&strict);
    assert!(matches!(&log[1], Decision::Refused { reason, .. } if reason.contains("strict")));
    // Refused in strict mode means not built: the same record is not a replay.
    assert!(
        !strict
            .intake
            .built()
            .contains(&trusted_builder::intake::BuiltKey {
                project: PROJECT.into(),
                commit: world.main_commit.clone(),
                job: "publish".into(),
            })
    );
    verify_chain(strict.log_path()).unwrap();
}

/// Signs a hand-written record payload with `key`, bypassing the writer's checks, as a forger
/// holding a trusted key would.
fn hand_signed(key: &SigningKey, payload: &[u8]) -> Vec<u8> {
    let signature = key.sign(&pae(PASS_RECORD_PAYLOAD_TYPE, payload));
    let envelope = SignedPassRecord {
        payload_type: PASS_RECORD_PAYLOAD_TYPE.into(),
        payload: BASE64.encode(payload),
        key_id: key_id_of(&key.verifying_key()),
        signature: BASE64.encode(signature.to_bytes()),
    };
    serde_json::to_vec(&envelope).unwrap()
}

#[tokio::test]
async fn refusals_are_logged_with_their_reason_and_build_nothing() {
    let world = World::start();
    // A key the builder trusts but that signs records the writer would never produce.
    let forger = SigningKey::from_bytes(&[7u8; 32]);
    let mut builder = world.builder("builder", true, &[forger.verifying_key()]);
    let main = world.main_commit.clone();
    let no_outputs = Vec::new();

    // A commit that only reached a change ref of the canonical Git.
    world.repo.write("src/extra.txt", "not reviewed\n");
    let change = world.repo.commit("unreviewed change");
    world.repo.push(&world.url, &change, "refs/changes/01/1/1");

    let other_key = airlock_pipeline::record::OriginKey::generate();
    let good = world.record(&main, "refs/heads/main", "publish", no_outputs.clone());
    let mut wrong_url = good.clone();
    wrong_url.git_url = "git://127.0.0.1:1/elsewhere.git".into();
    let mut dotdot = serde_json::to_value(&good).unwrap();
    dotdot["outputs"] =
        serde_json::json!([{"path": "../etc/passwd", "sha256": "e".repeat(64), "size": 1}]);

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "another key",
            other_key.sign(&good).unwrap().to_json().unwrap(),
            "unknown key",
        ),
        (
            "commit only on a change ref",
            world.signed(&world.record(&change, "refs/heads/main", "publish", no_outputs.clone())),
            "not reachable from a protected ref",
        ),
        (
            "ref that is not protected",
            world.signed(&world.record(
                &change,
                "refs/changes/01/1/1",
                "publish",
                no_outputs.clone(),
            )),
            "is not a protected ref",
        ),
        (
            "job without publish",
            world.signed(&world.record(&main, "refs/heads/main", "build", no_outputs.clone())),
            "does not declare publish",
        ),
        (
            "git_url differs",
            world.signed(&wrong_url),
            "git_url differs",
        ),
        (
            "oversized",
            vec![b' '; MAX_RECORD_BYTES + 1],
            "more than the limit",
        ),
        (
            "malformed JSON",
            b"{\"payload_type\": ".to_vec(),
            "malformed",
        ),
        (
            "output path with ..",
            hand_signed(&forger, &serde_json::to_vec(&dotdot).unwrap()),
            "invalid pass record",
        ),
    ];
    for (what, bytes, expected) in &cases {
        let reason = process(&mut builder, bytes).await.unwrap_err();
        assert!(reason.contains(expected), "{what}: {reason}");
    }
    // The `..` refusal names the field that broke the rule.
    let log = events(&builder);
    assert_eq!(log.len(), cases.len(), "{log:?}");
    for ((what, _, expected), decision) in cases.iter().zip(&log) {
        match decision {
            Decision::Refused { reason, .. } => {
                assert!(reason.contains(expected), "{what}: {reason}")
            }
            other => panic!("{what}: logged {other:?}"),
        }
    }
    let Decision::Refused { reason, .. } = &log[7] else {
        unreachable!()
    };
    assert!(reason.contains("path"), "{reason}");
    assert!(builder.no_build_dirs());
    verify_chain(builder.log_path()).unwrap();
}

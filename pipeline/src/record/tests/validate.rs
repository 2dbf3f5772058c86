//! `PassRecord::validate`: one test per rule, each a broken copy of a valid record.

use super::{image, sample};
use crate::record::{
    MAX_FIELD_BYTES, MAX_IMAGES, MAX_OUTPUTS, OutputDigest, PassRecord, RecordError,
};
use crate::spec::EventKind;

#[test]
fn record_validate_accepts_the_sample_and_its_variants() {
    sample().validate().unwrap();
    let variants: [fn(&mut PassRecord); 14] = [
        |r| r.outputs.clear(),
        |r| r.images.clear(),
        |r| {
            r.git_ref = "refs/tags/v1.0".into();
            r.event = EventKind::Tag
        },
        |r| r.event = EventKind::Manual,
        |r| r.event = EventKind::Schedule,
        |r| {
            r.git_ref = "refs/tags/v1.0".into();
            r.event = EventKind::Manual
        },
        |r| {
            r.images.insert("docker-hub".into(), image("busybox", '1'));
        },
        |r| {
            r.version = 1;
            r.images.clear()
        },
        |r| r.finished_at = r.started_at.clone(),
        |r| r.git_ref = "refs/changes/34/1234/2".into(),
        |r| r.git_url = "ssh://ci@review.example.org:29418/greet".into(),
        |r| r.job = "build_linux-x86_64".into(),
        |r| r.started_at = "2025-11-23T15:30:00.123456789Z".into(),
        |r| r.project = "greet.server".into(),
    ];
    for (i, vary) in variants.iter().enumerate() {
        let mut record = sample();
        vary(&mut record);
        record
            .validate()
            .unwrap_or_else(|e| panic!("variant {i}: {e}"));
    }
}

#[test]
fn record_validate_refuses_each_broken_rule() {
    let long = "x".repeat(MAX_FIELD_BYTES + 1);
    type Case = (&'static str, Box<dyn Fn(&mut PassRecord)>);
    let cases: Vec<Case> = vec![
        ("project", Box::new(|r| r.project = String::new())),
        ("project", Box::new(|r| r.project = "org/greet".into())),
        ("project", Box::new(|r| r.project = "..".into())),
        ("project", Box::new(|r| r.project = "gr\0eet".into())),
        ("project", Box::new(|r| r.project = "greet\n".into())),
        ("git_url", Box::new(|r| r.git_url = String::new())),
        (
            "git_url",
            Box::new(|r| r.git_url = "https://git.example.org/a b".into()),
        ),
        (
            "git_url",
            Box::new(|r| r.git_url = "https://ci:hunter2@git.example.org/greet.git".into()),
        ),
        ("git_ref", Box::new(|r| r.git_ref = "main".into())),
        ("git_ref", Box::new(|r| r.git_ref = "refs/".into())),
        (
            "git_ref",
            Box::new(|r| r.git_ref = "refs/heads/../tags/v1".into()),
        ),
        (
            "git_ref",
            Box::new(|r| r.git_ref = "refs/heads/ma in".into()),
        ),
        (
            "git_ref",
            Box::new(|r| r.git_ref = "refs/heads/ma\0in".into()),
        ),
        ("commit", Box::new(|r| r.commit = r.commit.to_uppercase())),
        ("job", Box::new(|r| r.job = String::new())),
        ("job", Box::new(|r| r.job = "j".repeat(64))),
        ("job", Box::new(|r| r.job = "pub lish".into())),
        (
            "pipeline_sha256",
            Box::new(|r| r.pipeline_sha256 = "a".repeat(63)),
        ),
        ("log_sha256", Box::new(|r| r.log_sha256 = "Z".repeat(64))),
        (
            "output sha256",
            Box::new(|r| r.outputs[0].sha256 = "sha256:".to_string() + &"b".repeat(64)),
        ),
        (
            "output path",
            Box::new(|r| r.outputs[0].path = "/etc/passwd".into()),
        ),
        ("output path", Box::new(|r| r.outputs[0].path = "..".into())),
        (
            "output path",
            Box::new(|r| r.outputs[0].path = "dist/../x".into()),
        ),
        (
            "output path",
            Box::new(|r| r.outputs[0].path = "dist\\x".into()),
        ),
        (
            "output path",
            Box::new(|r| r.outputs[0].path = "dist/\0x".into()),
        ),
        (
            "output path",
            Box::new(|r| r.outputs[0].path = "dist//x".into()),
        ),
        (
            "output path",
            Box::new(|r| r.outputs[0].path = "./dist/x".into()),
        ),
        (
            "output path",
            Box::new(|r| r.outputs[0].path = String::new()),
        ),
        (
            "listed twice",
            Box::new(|r| r.outputs[1].path = r.outputs[0].path.clone()),
        ),
        (
            "outputs",
            Box::new(|r| {
                r.outputs = (0..=MAX_OUTPUTS)
                    .map(|i| OutputDigest {
                        path: format!("f{i}"),
                        sha256: "e".repeat(64),
                        size: 0,
                    })
                    .collect()
            }),
        ),
        ("ci_run_id", Box::new(|r| r.ci_run_id = String::new())),
        (
            "started_at",
            Box::new(|r| r.started_at = "yesterday".into()),
        ),
        (
            "started_at",
            Box::new(|r| r.started_at = "2025-11-23T15:30:00+01:00".into()),
        ),
        (
            "finished_at",
            Box::new(|r| r.finished_at = "2025-11-23 15:31:00".into()),
        ),
        (
            "before started_at",
            Box::new(|r| r.finished_at = "2025-11-23T15:29:59Z".into()),
        ),
        ("limit", Box::new(move |r| r.ci_run_id = long.clone())),
        ("event is 'tag'", Box::new(|r| r.event = EventKind::Tag)),
        (
            "event is 'push'",
            Box::new(|r| r.git_ref = "refs/tags/v1.0".into()),
        ),
        (
            "images: job",
            Box::new(|r| {
                r.images.insert("pub lish".into(), image("cc", 'e'));
            }),
        ),
        (
            "images: job",
            Box::new(|r| {
                r.images.insert(String::new(), image("cc", 'e'));
            }),
        ),
        (
            "image of job 'publish'",
            Box::new(|r| {
                r.images
                    .insert("publish".into(), "registry.example.org/cc:12".into());
            }),
        ),
        (
            // A tag before the digest names the same image, but not in the one spelling.
            "image of job 'publish'",
            Box::new(|r| {
                r.images.insert(
                    "publish".into(),
                    format!("registry.example.org/cc:12@sha256:{}", "e".repeat(64)),
                );
            }),
        ),
        (
            "image of job 'publish'",
            Box::new(|r| {
                r.images.insert(
                    "publish".into(),
                    format!("registry.example.org/cc@sha256:{}", "E".repeat(64)),
                );
            }),
        ),
        (
            "images: image",
            Box::new(|r| {
                r.images
                    .insert("publish".into(), "x".repeat(MAX_FIELD_BYTES + 1));
            }),
        ),
        (
            "images, more than the limit",
            Box::new(|r| {
                r.images = (0..=MAX_IMAGES)
                    .map(|i| (format!("j{i}"), image("cc", 'e')))
                    .collect()
            }),
        ),
        (
            "version 1 record lists no images",
            Box::new(|r| r.version = 1),
        ),
        (
            "event a version 1 record",
            Box::new(|r| {
                r.version = 1;
                r.images.clear();
                r.event = EventKind::Manual
            }),
        ),
    ];
    for (i, (expect, mutate)) in cases.iter().enumerate() {
        let mut record = sample();
        mutate(&mut record);
        match record.validate() {
            Err(RecordError::Invalid(m)) => assert!(
                m.contains(expect),
                "case {i}: '{m}' does not mention '{expect}'"
            ),
            other => panic!("case {i} ({expect}): {other:?}"),
        }
    }
}

#[test]
fn record_validate_does_not_echo_passwords_or_raw_control_characters() {
    let mut record = sample();
    record.git_url = "https://ci:hunter2@git.example.org/greet.git".into();
    let message = record.validate().unwrap_err().to_string();
    assert!(!message.contains("hunter2"), "{message}");
    record.git_url = "https://ci:hunter2@git.example.org/gr eet\n.git".into();
    let message = record.validate().unwrap_err().to_string();
    assert!(!message.contains("hunter2"), "{message}");

    let mut record = sample();
    record.project = "x\nINFO forged log line".into();
    let message = record.validate().unwrap_err().to_string();
    assert!(
        !message.contains('\n') && message.contains("\\n"),
        "{message}"
    );
}

//! OCI artifacts, the insecure-registry rule, and skopeo as an independent reader.

mod oci_support;

use oci_support::*;
use serde_json::Value;
use trusted_builder::oci::artifact::MEDIA_TYPE_FILE;
use trusted_builder::oci::{
    ARTIFACT_TYPE, MEDIA_TYPE_EMPTY, OciError, Registry, RegistryConfig, assemble,
    assemble_artifact, resolve_artifacts,
};

#[tokio::test]
async fn artifacts_push_with_artifact_type_and_a_layer_per_file() {
    init();
    let reg = TestRegistry::start();
    let registry = insecure(&reg);
    let dir = outputs();
    let resolve = resolver(dir.path());
    let outputs = vec!["share/readme.txt".to_string(), "bin/hello".to_string()];
    let files = resolve_artifacts(&outputs, &resolve).expect("resolve");
    let artifact =
        assemble_artifact(&files, ARTIFACT_TYPE, EPOCH, SOURCE, REVISION).expect("artifact");
    let again =
        assemble_artifact(&files, ARTIFACT_TYPE, EPOCH, SOURCE, REVISION).expect("artifact");
    assert_eq!(artifact.manifest_digest, again.manifest_digest);
    let repo = format!("{}/demo/hello", reg.host);
    let digest = registry
        .push(&format!("{repo}:artifacts"), &artifact)
        .await
        .expect("push");

    let raw: Value = serde_json::from_slice(
        &registry
            .fetch_manifest(&repo, &digest)
            .await
            .expect("manifest"),
    )
    .expect("json");
    assert_eq!(raw["artifactType"], ARTIFACT_TYPE);
    assert_eq!(raw["config"]["mediaType"], MEDIA_TYPE_EMPTY);
    assert_eq!(
        raw["config"]["digest"],
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    assert_eq!(raw["config"]["size"], 2);
    let (manifest, _, layers) = pull(&registry, &repo, &digest).await;
    let titles: Vec<String> = manifest
        .layers
        .iter()
        .map(|l| {
            l.annotations.as_ref().expect("annotations")["org.opencontainers.image.title"].clone()
        })
        .collect();
    assert_eq!(titles, ["hello", "readme.txt"]);
    assert!(
        manifest
            .layers
            .iter()
            .all(|l| l.media_type == MEDIA_TYPE_FILE)
    );
    assert_eq!(layers[0], b"#!/bin/sh\necho hello\n");
    assert_eq!(layers[1], b"read me\n");

    // Two outputs with one file name would be indistinguishable to a puller.
    std::fs::create_dir_all(dir.path().join("other")).expect("mkdir");
    std::fs::write(dir.path().join("other/hello"), "x").expect("write");
    let clash =
        resolve_artifacts(&["bin/hello".into(), "other/hello".into()], &resolve).expect("resolve");
    assert!(assemble_artifact(&clash, ARTIFACT_TYPE, EPOCH, SOURCE, REVISION).is_err());
    // A declared artifact that was not produced is an error, not a skip.
    assert!(matches!(
        resolve_artifacts(&["nope".into()], &resolve),
        Err(OciError::MissingOutput(_))
    ));
}

#[tokio::test]
async fn plain_http_only_for_registries_listed_as_insecure() {
    init();
    let reg = TestRegistry::start();
    let dir = outputs();
    let resolve = resolver(dir.path());
    let image = scratch_image();
    let assembled = assemble(&inputs(&image, &resolve, EPOCH), None).expect("assemble");
    let repo = format!("{}/demo/hello", reg.host);
    // Listed under another name: still HTTPS for 127.0.0.1:PORT.
    let port = reg.host.rsplit(':').next().expect("port");
    for insecure in [vec![], vec![format!("localhost:{port}")]] {
        let strict = Registry::new(&RegistryConfig {
            insecure,
            ..Default::default()
        })
        .expect("client");
        let err = strict
            .push(&format!("{repo}:v1"), &assembled)
            .await
            .expect_err("https to an http registry");
        match &err {
            OciError::Registry { registry, reason } => {
                assert_eq!(registry, &reg.host);
                // It tried HTTPS (and the TLS handshake failed), never HTTP.
                assert!(
                    reason.contains(&format!("https://{}", reg.host)),
                    "{reason}"
                );
                eprintln!("refused as expected: {reason}");
            }
            other => panic!("unexpected {other}"),
        }
    }
    // Nothing reached the registry.
    let err = insecure(&reg)
        .fetch_manifest(&repo, &assembled.manifest_digest)
        .await
        .expect_err("absent");
    assert!(matches!(err, OciError::Registry { .. }), "{err}");
}

#[tokio::test]
async fn skopeo_reads_what_we_pushed() {
    init();
    if std::process::Command::new("skopeo")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skopeo not installed; skipping the independent reader");
        return;
    }
    let reg = TestRegistry::start();
    let registry = insecure(&reg);
    let dir = outputs();
    let resolve = resolver(dir.path());
    let image = scratch_image();
    let assembled = assemble(&inputs(&image, &resolve, EPOCH), None).expect("assemble");
    let repo = format!("{}/demo/hello", reg.host);
    let digest = registry
        .push(&format!("{repo}:v1"), &assembled)
        .await
        .expect("push");
    let skopeo = |extra: &[&str]| -> Vec<u8> {
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--tls-verify=false"])
            .args(extra)
            .arg(format!("docker://{repo}@{digest}"))
            .env("HOME", reg.data_dir())
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    assert_eq!(skopeo(&["--raw"]), assembled.manifest);
    let info: Value = serde_json::from_slice(&skopeo(&[])).expect("json");
    assert_eq!(info["Digest"], digest);
    assert_eq!(
        info["Labels"]["org.opencontainers.image.revision"],
        REVISION
    );
    assert_eq!(info["Env"], serde_json::json!(["A=1", "B=2"]));
    assert_eq!(info["Created"], "2023-11-14T22:13:20Z");
}

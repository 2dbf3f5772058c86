//! Deterministic OCI images (scratch and on a pinned base) against a real `docker-registry`.

mod oci_support;

use airlock_pipeline::spec::model::BaseImage;
use flate2::read::GzDecoder;
use oci_support::*;
use std::collections::BTreeMap;
use std::io::Read;
use trusted_builder::oci::{MEDIA_TYPE_LAYER_GZIP, OciError, Registry, RegistryConfig, assemble};

#[tokio::test]
async fn scratch_image_round_trips_with_normalized_layer_and_config() {
    init();
    let reg = TestRegistry::start();
    let registry = insecure(&reg);
    let dir = outputs();
    let image = scratch_image();
    let resolve = resolver(dir.path());
    let assembled = assemble(&inputs(&image, &resolve, EPOCH), None).expect("assemble");
    let repo = format!("{}/demo/hello", reg.host);
    let digest = registry
        .push(&format!("{repo}:v1"), &assembled)
        .await
        .expect("push");
    assert_eq!(digest, assembled.manifest_digest);

    let (manifest, config, layers) = pull(&registry, &repo, &digest).await;
    assert_eq!(manifest.schema_version, 2);
    assert_eq!(
        manifest.media_type.as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    assert_eq!(manifest.layers.len(), 1);
    assert_eq!(manifest.layers[0].media_type, MEDIA_TYPE_LAYER_GZIP);

    // gzip header: no FNAME flag, mtime 0, OS "unknown".
    let gz = &layers[0];
    assert_eq!(&gz[..4], &[0x1f, 0x8b, 8, 0]);
    assert_eq!(&gz[4..8], &[0, 0, 0, 0]);
    assert_eq!(gz[9], 255);

    let entries = untar(gz);
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "usr/",
            "usr/local/",
            "usr/local/bin/",
            "usr/local/bin/hello",
            "usr/share/",
            "usr/share/doc/",
            "usr/share/doc/hello/",
            "usr/share/doc/hello/README",
        ]
    );
    for (path, kind, mode, uid, gid, mtime, uname, gname, data) in &entries {
        assert_eq!((*uid, *gid, *mtime), (0, 0, EPOCH as u64), "{path}");
        assert_eq!((uname.as_str(), gname.as_str()), ("", ""), "{path}");
        let want = match (kind, path.as_str()) {
            ('d', _) | (_, "usr/local/bin/hello") => 0o755,
            _ => 0o644,
        };
        assert_eq!(*mode, want, "{path}");
        if path == "usr/local/bin/hello" {
            assert_eq!(data, b"#!/bin/sh\necho hello\n");
        }
    }

    let mut raw = Vec::new();
    GzDecoder::new(gz.as_slice())
        .read_to_end(&mut raw)
        .expect("gunzip");
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        trusted_builder::oci::sha256_digest(&raw)
    );
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/hello"])
    );
    assert_eq!(config["config"]["Env"], serde_json::json!(["A=1", "B=2"]));
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.source"], SOURCE);
    assert_eq!(labels["org.opencontainers.image.revision"], REVISION);
    assert_eq!(labels["com.example.team"], "build");
    for h in config["history"].as_array().expect("history") {
        assert_eq!(h["created"], "2023-11-14T22:13:20Z");
    }
}

#[tokio::test]
async fn same_inputs_same_digest_and_other_epoch_other_digest() {
    init();
    let reg = TestRegistry::start();
    let registry = insecure(&reg);
    let image = scratch_image();
    // Two separate output directories: host paths and file timestamps differ.
    let (a, b) = (outputs(), outputs());
    let (ra, rb) = (resolver(a.path()), resolver(b.path()));
    let first = assemble(&inputs(&image, &ra, EPOCH), None).expect("first");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = assemble(&inputs(&image, &rb, EPOCH), None).expect("second");
    assert_eq!(first.manifest, second.manifest);
    let repo = format!("{}/demo/repro", reg.host);
    let d1 = registry
        .push(&format!("{repo}:one"), &first)
        .await
        .expect("push");
    let d2 = registry
        .push(&format!("{repo}:two"), &second)
        .await
        .expect("push");
    assert_eq!(d1, d2);
    // Pushing by digest works and lands on the same manifest.
    let d3 = registry
        .push(&format!("{repo}@{d1}"), &second)
        .await
        .expect("push by digest");
    assert_eq!(d1, d3);

    let later = assemble(&inputs(&image, &ra, EPOCH + 1), None).expect("later");
    assert_ne!(later.manifest_digest, first.manifest_digest);
}

#[tokio::test]
async fn image_on_base_pinned_by_digest_keeps_base_layers() {
    init();
    let reg = TestRegistry::start();
    let registry = insecure(&reg);
    let dir = outputs();
    let resolve = resolver(dir.path());
    let mut base_image = publish(
        BaseImage::Scratch,
        &[("share/readme.txt", "/etc/base-release")],
    );
    base_image.entrypoint = vec!["/bin/sh".into()];
    base_image.env = BTreeMap::from([
        ("PATH".into(), "/usr/bin".into()),
        ("A".into(), "base".into()),
    ]);
    base_image.labels = BTreeMap::from([("com.example.base".into(), "yes".into())]);
    let base = assemble(&inputs(&base_image, &resolve, EPOCH - 100), None).expect("base");
    let base_repo = format!("{}/library/base", reg.host);
    let base_digest = registry
        .push(&format!("{base_repo}:1"), &base)
        .await
        .expect("push base");

    let image = publish(
        BaseImage::Pinned {
            repository: base_repo.clone(),
            digest: base_digest.clone(),
        },
        &[("bin/hello", "/usr/local/bin/hello")],
    );
    let built = registry
        .assemble_image(&inputs(&image, &resolve, EPOCH))
        .await
        .expect("assemble on base");
    let again = registry
        .assemble_image(&inputs(&image, &resolve, EPOCH))
        .await
        .expect("again");
    assert_eq!(built.manifest_digest, again.manifest_digest);
    let repo = format!("{}/demo/on-base", reg.host);
    let digest = registry
        .push(&format!("{repo}:v1"), &built)
        .await
        .expect("push");

    let (manifest, config, layers) = pull(&registry, &repo, &digest).await;
    let base_manifest = base.parsed_manifest().expect("base manifest");
    assert_eq!(manifest.layers.len(), 2);
    assert_eq!(manifest.layers[0], base_manifest.layers[0]);
    assert!(untar(&layers[0]).iter().any(|e| e.0 == "etc/base-release"));
    assert!(
        untar(&layers[1])
            .iter()
            .any(|e| e.0 == "usr/local/bin/hello")
    );
    assert_eq!(
        config["rootfs"]["diff_ids"]
            .as_array()
            .expect("diff_ids")
            .len(),
        2
    );
    assert_eq!(config["history"].as_array().expect("history").len(), 2);
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!(["A=1", "B=2", "PATH=/usr/bin"])
    );
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/hello"])
    );
    assert_eq!(config["config"]["Labels"]["com.example.base"], "yes");
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.revision"],
        REVISION
    );
    let ann = manifest.annotations.expect("annotations");
    assert_eq!(ann["org.opencontainers.image.base.digest"], base_digest);

    // A base given by tag is not pinned and is refused before any request.
    let err = registry
        .fetch_base(&base_repo, "1")
        .await
        .expect_err("tag base");
    assert!(matches!(err, OciError::UnpinnedBase(_)), "{err}");
}

#[tokio::test]
async fn tampered_base_blob_is_refused() {
    init();
    let reg = TestRegistry::start();
    let registry = insecure(&reg);
    let dir = outputs();
    let resolve = resolver(dir.path());
    let base_image = publish(
        BaseImage::Scratch,
        &[("share/readme.txt", "/etc/base-release")],
    );
    let base = assemble(&inputs(&base_image, &resolve, EPOCH), None).expect("base");
    let base_repo = format!("{}/library/base", reg.host);
    let base_digest = registry
        .push(&format!("{base_repo}:1"), &base)
        .await
        .expect("push base");

    let layer_digest = base.parsed_manifest().expect("manifest").layers[0]
        .digest
        .clone();
    let file = reg.blob_file(&layer_digest);
    let mut bytes = std::fs::read(&file).expect("stored blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, bytes).expect("tamper");

    let image = publish(
        BaseImage::Pinned {
            repository: base_repo.clone(),
            digest: base_digest,
        },
        &[("bin/hello", "/usr/local/bin/hello")],
    );
    let err = registry
        .assemble_image(&inputs(&image, &resolve, EPOCH))
        .await
        .expect_err("tampered base");
    assert!(
        matches!(&err, OciError::DigestMismatch { expected, .. } if *expected == layer_digest),
        "{err}"
    );
    let err = registry
        .fetch_blob(&base_repo, &layer_digest, u64::MAX)
        .await
        .expect_err("tampered blob");
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err}");
}

#[test]
fn unsafe_paths_and_missing_outputs_are_refused() {
    let dir = outputs();
    let resolve = resolver(dir.path());
    for bad in [
        "usr/bin/x",
        "/usr/../etc/passwd",
        "/usr/./x",
        "/usr//x",
        "/usr/x/",
        "/",
    ] {
        let image = publish(BaseImage::Scratch, &[("bin/hello", bad)]);
        let err = assemble(&inputs(&image, &resolve, EPOCH), None).expect_err(bad);
        assert!(
            matches!(err, OciError::InvalidImagePath { .. }),
            "{bad}: {err}"
        );
    }
    // A file where another file needs a directory.
    let image = publish(
        BaseImage::Scratch,
        &[
            ("bin/hello", "/opt/app"),
            ("share/readme.txt", "/opt/app/README"),
        ],
    );
    assert!(matches!(
        assemble(&inputs(&image, &resolve, EPOCH), None),
        Err(OciError::InvalidImagePath { .. })
    ));
    // A declared output that was not produced.
    let image = publish(BaseImage::Scratch, &[("bin/missing", "/bin/missing")]);
    assert!(matches!(
        assemble(&inputs(&image, &resolve, EPOCH), None),
        Err(OciError::MissingOutput(_))
    ));
    // A pinned base must have been fetched (and verified) first.
    let pinned = BaseImage::Pinned {
        repository: "127.0.0.1:1/base".into(),
        digest: format!("sha256:{}", "0".repeat(64)),
    };
    let image = publish(pinned, &[("bin/hello", "/bin/hello")]);
    assert!(assemble(&inputs(&image, &resolve, EPOCH), None).is_err());
    assert!(matches!(
        assemble(&inputs(&scratch_image(), &resolve, -1), None),
        Err(OciError::InvalidEpoch(-1))
    ));
}

/// Issue 19: a base image's registry is named by the pipeline file, so the builder reads from
/// it only bounded amounts: a manifest through a capped stream (oci-client read it whole), a
/// blob no further than the size it was asked for.
#[tokio::test]
async fn a_base_registry_cannot_make_the_builder_hold_more_than_it_asked_for() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    init();
    // An endless manifest: chunks of 1 MiB until the client leaves (or 256 MiB).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let server = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 1 << 20];
                for _ in 0..256 {
                    let framed =
                        [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                    if socket.write_all(&framed).await.is_err() {
                        return;
                    }
                    counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
            });
        }
    });
    let registry = Registry::new(&RegistryConfig {
        insecure: vec![host.clone()],
        ..Default::default()
    })
    .expect("client");
    let digest = format!("sha256:{}", "a".repeat(64));
    let err = registry
        .fetch_manifest(&format!("{host}/library/base"), &digest)
        .await
        .expect_err("an endless manifest");
    assert!(
        err.to_string().contains("larger than 4194304 bytes"),
        "{err}"
    );
    assert!(
        sent.load(Ordering::SeqCst) < 64 << 20,
        "the registry sent {} MiB",
        sent.load(Ordering::SeqCst) >> 20
    );
    server.abort();

    // A blob asked for by its declared size is cut off there (a real registry); control: the
    // same blob at its size.
    let reg = TestRegistry::start();
    let registry = insecure(&reg);
    let dir = outputs();
    let resolve = resolver(dir.path());
    let image = publish(
        BaseImage::Scratch,
        &[("share/readme.txt", "/etc/base-release")],
    );
    let assembled = assemble(&inputs(&image, &resolve, EPOCH), None).expect("assemble");
    let repo = format!("{}/library/base", reg.host);
    registry
        .push(&format!("{repo}:1"), &assembled)
        .await
        .expect("push");
    let layer = &assembled.parsed_manifest().expect("manifest").layers[0];
    let err = registry
        .fetch_blob(&repo, &layer.digest, layer.size - 1)
        .await
        .expect_err("past the size asked for");
    assert!(err.to_string().contains("is larger than"), "{err}");
    let data = registry
        .fetch_blob(&repo, &layer.digest, layer.size)
        .await
        .expect("at its size");
    assert_eq!(data.len() as u64, layer.size);
}

/// Issue 19: per-read timeouts alone let a base registry trickle forever; the whole base image
/// has a deadline.
#[tokio::test]
async fn a_base_image_that_never_arrives_ends_at_the_deadline() {
    init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket); // read nothing, answer nothing
        }
    });
    let registry = Registry::new(&RegistryConfig {
        insecure: vec![host.clone()],
        ..Default::default()
    })
    .expect("client")
    .with_base_deadline(std::time::Duration::from_secs(1));
    let started = std::time::Instant::now();
    let Err(err) = registry
        .fetch_base(
            &format!("{host}/library/base"),
            &format!("sha256:{}", "b".repeat(64)),
        )
        .await
    else {
        panic!("a silent registry gave a base image");
    };
    assert!(err.to_string().contains("not fetched within 1s"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    server.abort();
}

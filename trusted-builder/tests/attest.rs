//! Image signatures and provenance attestations against a real
//! docker-registry, checked by verifiers that are not ours: the `sigstore`
//! crate's cosign verifier, the openssl CLI, and DSSE's PAE written out here
//! by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod oci_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use oci_support::*;
use sigstore::cosign::verification_constraint::{PublicKeyVerifier, VerificationConstraintVec};
use sigstore::cosign::{ClientBuilder, CosignCapabilities, verify_constraints};
use sigstore::crypto::{CosignVerificationKey, Signature, SigningScheme};
use sigstore::registry::{Auth, ClientConfig, ClientProtocol, OciReference};
use trusted_builder::attach::{
    append_layer, attest_image, attestation_tag, sign_image, signature_tag,
};
use trusted_builder::oci::{Blob, ImageManifest, Registry};
use trusted_builder::provenance::{
    ExternalParameters, InternalParameters, ProvenanceInputs, Statement,
};
use trusted_builder::sign::cosign::{ANNOTATION_SIGNATURE, MEDIA_TYPE_SIMPLE_SIGNING};
use trusted_builder::sign::dsse::{Envelope, MEDIA_TYPE_DSSE};
use trusted_builder::sign::{FileKey, GeneratedKeyPair, Secret, generate_key_pair};
use trusted_builder::verify::{PublicKey, fetch, verify_fetched};

const PASSWORD: &str = "attest-test";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

struct Keys {
    _dir: tempfile::TempDir,
    pair: GeneratedKeyPair,
    key: FileKey,
    pem: Vec<u8>,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let pair = generate_key_pair(dir.path(), &Secret::new(PASSWORD)).unwrap();
    let key = FileKey::load(&pair.private_key, &Secret::new(PASSWORD)).unwrap();
    let pem = std::fs::read(&pair.public_key).unwrap();
    Keys {
        _dir: dir,
        pair,
        key,
        pem,
    }
}

/// Pushes a small scratch image; `epoch` varies its digest.
async fn push_image(registry: &Registry, repo: &str, epoch: i64) -> String {
    let out = outputs();
    let image = scratch_image();
    let resolve = resolver(out.path());
    let built = registry
        .assemble_image(&inputs(&image, &resolve, epoch))
        .await
        .unwrap();
    registry
        .push(&format!("{repo}:e{epoch}"), &built)
        .await
        .unwrap()
}

fn statement(repo: &str, digest: &str) -> Statement {
    let t = chrono::DateTime::from_timestamp(EPOCH, 0).unwrap();
    Statement::new(&ProvenanceInputs {
        image_repository: repo.to_owned(),
        image_digest: digest.to_owned(),
        external: ExternalParameters {
            repository: SOURCE.to_owned(),
            git_ref: "refs/heads/main".to_owned(),
            commit: COMMIT.to_owned(),
            job: "package".to_owned(),
        },
        internal: InternalParameters {
            source_date_epoch: EPOCH,
            strict_reproducibility: true,
        },
        base_image: None,
        job_images: BTreeMap::new(),
        builder_id: "https://airlock.dev/trusted-builder/test".to_owned(),
        invocation_id: "inv-1".to_owned(),
        started_on: t,
        finished_on: t + chrono::Duration::seconds(42),
        ci_outputs: BTreeMap::from([(
            "bin/hello".to_owned(),
            format!("sha256:{}", "b".repeat(64)),
        )]),
        ci_log_digest: format!("sha256:{}", "c".repeat(64)),
        reproduced: true,
    })
    .unwrap()
}

async fn sig_manifest(registry: &Registry, repo: &str, digest: &str) -> (Vec<u8>, ImageManifest) {
    let tag = signature_tag(digest).unwrap();
    let (bytes, _) = registry
        .fetch_manifest_by_tag(repo, &tag)
        .await
        .unwrap()
        .expect("sig manifest");
    let m = serde_json::from_slice(&bytes).unwrap();
    (bytes, m)
}

/// Copies image `from`'s `.sig` manifest onto image `to`'s `.sig` tag, as an
/// attacker with push rights would.
async fn copy_signature(registry: &Registry, repo: &str, from: &str, to: &str) {
    let (bytes, _) = sig_manifest(registry, repo, from).await;
    let target = trusted_builder::oci::registry::parse_reference(&format!(
        "{repo}:{}",
        signature_tag(to).unwrap()
    ))
    .unwrap();
    registry.push_manifest_bytes(&target, &bytes).await.unwrap();
}

fn constraints(pem: &[u8]) -> VerificationConstraintVec {
    vec![Box::new(
        PublicKeyVerifier::new(pem, &SigningScheme::ECDSA_P256_SHA256_ASN1).unwrap(),
    )]
}

#[tokio::test]
async fn sigstore_cosign_verifier_accepts_and_rejects_wrong_key_and_copied_signature() {
    init();
    let reg = TestRegistry::start();
    let registry = insecure(&reg);
    let repo = format!("{}/demo/app", reg.host);
    let (a, b) = (keys(), keys());
    let good = push_image(&registry, &repo, EPOCH).await;
    let other = push_image(&registry, &repo, EPOCH + 1).await;
    sign_image(&registry, &a.key, &repo, &good, None)
        .await
        .unwrap();
    copy_signature(&registry, &repo, &good, &other).await;

    let mut client = ClientBuilder::default()
        .with_oci_client_config(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![reg.host.clone()]),
            ..ClientConfig::default()
        })
        .build()
        .unwrap();
    let image: OciReference = format!("{repo}@{good}").parse().unwrap();
    let layers = client
        .trusted_signature_layers(&Auth::Anonymous, &image)
        .await
        .unwrap();
    assert_eq!(layers.len(), 1);
    // Offline verification does not check the digest: do it, as cosign does.
    assert!(layers[0].simple_signing.satisfies_manifest_digest(&good));
    assert!(verify_constraints(&layers, constraints(&a.pem).iter()).is_ok());
    assert!(verify_constraints(&layers, constraints(&b.pem).iter()).is_err());

    // The copied signature is for `good`: sigstore drops it for `other`.
    let copied: OciReference = format!("{repo}@{other}").parse().unwrap();
    let layers = client
        .trusted_signature_layers(&Auth::Anonymous, &copied)
        .await
        .unwrap_or_default();
    assert!(
        layers
            .iter()
            .all(|l| !l.simple_signing.satisfies_manifest_digest(&other))
    );
    assert!(verify_constraints(&layers, constraints(&a.pem).iter()).is_err());
}

fn openssl_verifies(dir: &Path, public_key: &Path, sig: &[u8], payload: &[u8]) -> bool {
    std::fs::write(dir.join("sig.der"), sig).unwrap();
    std::fs::write(dir.join("payload"), payload).unwrap();
    Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(public_key)
        .args(["-signature", "sig.der", "payload"])
        .current_dir(dir)
        .output()
        .expect("the openssl CLI")
        .status
        .success()
}

#[tokio::test]
async fn openssl_accepts_payload_signature_and_dsse_verifies_by_pae() {
    init();
    let reg = TestRegistry::start();
    let registry = insecure(&reg);
    let repo = format!("{}/demo/app", reg.host);
    let a = keys();
    let digest = push_image(&registry, &repo, EPOCH).await;
    sign_image(&registry, &a.key, &repo, &digest, None)
        .await
        .unwrap();
    let st = statement(&repo, &digest);
    attest_image(&registry, &a.key, &repo, &digest, &st)
        .await
        .unwrap();
    let fetched = fetch(&registry, &repo, &digest).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // (2) The raw payload signature, checked by openssl.
    let sig_layer = &fetched.signatures.as_ref().unwrap()[0];
    assert_eq!(sig_layer.descriptor.media_type, MEDIA_TYPE_SIMPLE_SIGNING);
    let sig_b64 = &sig_layer.descriptor.annotations.as_ref().unwrap()[ANNOTATION_SIGNATURE];
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sig_b64)
        .unwrap();
    let payload: serde_json::Value = serde_json::from_slice(&sig_layer.data).unwrap();
    assert_eq!(
        payload["critical"]["identity"]["docker-reference"],
        repo.as_str()
    );
    assert_eq!(
        payload["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert!(openssl_verifies(
        tmp.path(),
        &a.pair.public_key,
        &sig,
        &sig_layer.data
    ));

    // (3) DSSE: PAE written out by hand from the spec, verified by sigstore and openssl.
    let att = &fetched.attestations.as_ref().unwrap()[0];
    assert_eq!(att.descriptor.media_type, MEDIA_TYPE_DSSE);
    assert_eq!(
        att.descriptor.annotations.as_ref().unwrap()["predicateType"],
        "https://slsa.dev/provenance/v1"
    );
    let env: serde_json::Value = serde_json::from_slice(&att.data).unwrap();
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = b64.decode(env["payload"].as_str().unwrap()).unwrap();
    let dsse_sig = b64
        .decode(env["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    let pae = |body: &[u8]| {
        let t = "application/vnd.in-toto+json";
        let mut m = format!("DSSEv1 {} {t} {} ", t.len(), body.len()).into_bytes();
        m.extend_from_slice(body);
        m
    };
    let key =
        CosignVerificationKey::from_pem(&a.pem, &SigningScheme::ECDSA_P256_SHA256_ASN1).unwrap();
    assert!(
        key.verify_signature(Signature::Raw(&dsse_sig), &pae(&body))
            .is_ok()
    );
    assert!(openssl_verifies(
        tmp.path(),
        &a.pair.public_key,
        &dsse_sig,
        &pae(&body)
    ));
    let mut flipped = body.clone();
    flipped[10] ^= 1;
    assert!(
        key.verify_signature(Signature::Raw(&dsse_sig), &pae(&flipped))
            .is_err()
    );
    assert!(!openssl_verifies(
        tmp.path(),
        &a.pair.public_key,
        &dsse_sig,
        &pae(&flipped)
    ));

    // The statement's shape, as a consumer reads it.
    let s: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(s["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(s["subject"][0]["name"], repo.as_str());
    assert_eq!(s["subject"][0]["digest"]["sha256"], &digest[7..]);
    let def = &s["predicate"]["buildDefinition"];
    assert_eq!(
        def["buildType"],
        "https://airlock.dev/build/pipeline-job/v1"
    );
    assert_eq!(def["externalParameters"]["commit"], COMMIT);
    assert_eq!(
        def["resolvedDependencies"][0]["digest"]["gitCommit"],
        COMMIT
    );
    assert_eq!(
        def["resolvedDependencies"][0]["uri"],
        format!("git+{SOURCE}@refs/heads/main")
    );
    assert_eq!(
        s["predicate"]["runDetails"]["metadata"]["startedOn"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(Statement::from_json(&body).unwrap(), st);
    assert_eq!(st.reproduced(), Some(true));
}

#[tokio::test]
async fn second_signature_and_attestation_append() {
    init();
    let reg = TestRegistry::start();
    let registry = insecure(&reg);
    let repo = format!("{}/demo/app", reg.host);
    let (a, b) = (keys(), keys());
    let digest = push_image(&registry, &repo, EPOCH).await;
    let first = sign_image(&registry, &a.key, &repo, &digest, None)
        .await
        .unwrap();
    assert_eq!(first.layers, 1);
    let second = sign_image(&registry, &b.key, &repo, &digest, None)
        .await
        .unwrap();
    assert_eq!(second.layers, 2);
    let (_, m) = sig_manifest(&registry, &repo, &digest).await;
    assert_eq!(m.layers.len(), 2);
    let st = statement(&repo, &digest);
    attest_image(&registry, &a.key, &repo, &digest, &st)
        .await
        .unwrap();
    let att = attest_image(&registry, &b.key, &repo, &digest, &st)
        .await
        .unwrap();
    assert_eq!(att.layers, 2);
    assert_eq!(att.tag, attestation_tag(&digest).unwrap());

    // Either key verifies: the first signer was kept.
    let fetched = fetch(&registry, &repo, &digest).await.unwrap();
    for k in [&a.pem, &b.pem] {
        verify_fetched(&fetched, &PublicKey::from_pem(k).unwrap()).unwrap();
    }
}

fn cli_verify(image: &str, key: &Path, host: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trusted-builder"))
        .args(["verify", image, "--key"])
        .arg(key)
        .args(["--insecure-registry", host])
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn verify_cli_accepts_good_image_and_names_each_failure() {
    init();
    let reg = TestRegistry::start();
    let registry = insecure(&reg);
    let repo = format!("{}/demo/app", reg.host);
    let (a, b) = (keys(), keys());
    let good = push_image(&registry, &repo, EPOCH).await;
    sign_image(&registry, &a.key, &repo, &good, None)
        .await
        .unwrap();
    attest_image(&registry, &a.key, &repo, &good, &statement(&repo, &good))
        .await
        .unwrap();

    let (ok, stdout, stderr) = cli_verify(&format!("{repo}@{good}"), &a.pair.public_key, &reg.host);
    assert!(ok, "{stderr}");
    for want in [
        COMMIT,
        "refs/heads/main",
        "package",
        SOURCE,
        "reproduced: true",
        "trusted-builder/test",
    ] {
        assert!(stdout.contains(want), "{want} missing in {stdout}");
    }

    // Wrong key.
    let (ok, _, stderr) = cli_verify(&format!("{repo}@{good}"), &b.pair.public_key, &reg.host);
    assert!(!ok);
    assert!(stderr.contains("does not verify with the key"), "{stderr}");

    // Unsigned image.
    let unsigned = push_image(&registry, &repo, EPOCH + 1).await;
    let (ok, _, stderr) = cli_verify(&format!("{repo}@{unsigned}"), &a.pair.public_key, &reg.host);
    assert!(!ok);
    assert!(stderr.contains("no signatures found"), "{stderr}");

    // Signature copied from `good`.
    let copied = push_image(&registry, &repo, EPOCH + 2).await;
    copy_signature(&registry, &repo, &good, &copied).await;
    let (ok, _, stderr) = cli_verify(&format!("{repo}@{copied}"), &a.pair.public_key, &reg.host);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("signature is for {good}")),
        "{stderr}"
    );

    // Tampered attestation: a valid envelope whose statement was then edited.
    let tampered = push_image(&registry, &repo, EPOCH + 3).await;
    sign_image(&registry, &a.key, &repo, &tampered, None)
        .await
        .unwrap();
    let st = statement(&repo, &tampered);
    let mut env = trusted_builder::sign::dsse::sign_envelope(
        &a.key,
        "application/vnd.in-toto+json",
        &st.to_json().unwrap(),
    )
    .await
    .unwrap();
    let mut forged = st.clone();
    forged.predicate.build_definition.external_parameters.commit = "f".repeat(40);
    env.payload = base64::engine::general_purpose::STANDARD.encode(forged.to_json().unwrap());
    let data = env.to_json().unwrap();
    let layer = Blob {
        descriptor: trusted_builder::oci::Descriptor::of(MEDIA_TYPE_DSSE, &data),
        data,
    };
    let tag = attestation_tag(&tampered).unwrap();
    append_layer(&registry, &repo, &tag, "x", layer, BTreeMap::new())
        .await
        .unwrap();
    let (ok, _, stderr) = cli_verify(&format!("{repo}@{tampered}"), &a.pair.public_key, &reg.host);
    assert!(!ok);
    assert!(
        stderr.contains("DSSE signature does not verify"),
        "{stderr}"
    );
    assert!(Envelope::from_json(&env.to_json().unwrap()).is_ok());
}

#[test]
fn statement_versions_are_checked_on_read() {
    let st = statement("reg/app", &format!("sha256:{}", "a".repeat(64)));
    let json: serde_json::Value = serde_json::from_slice(&st.to_json().unwrap()).unwrap();
    for (pointer, value) in [
        ("/predicateType", "https://slsa.dev/provenance/v0.2"),
        ("/_type", "https://in-toto.io/Statement/v2"),
        (
            "/predicate/buildDefinition/buildType",
            "https://example.com/other",
        ),
    ] {
        let mut j = json.clone();
        *j.pointer_mut(pointer).unwrap() = value.into();
        let err = Statement::from_json(&serde_json::to_vec(&j).unwrap()).unwrap_err();
        assert!(err.to_string().contains(value), "{err}");
    }
    assert!(st.has_subject_digest(&format!("sha256:{}", "a".repeat(64))));
    assert!(!st.has_subject_digest(&format!("sha256:{}", "b".repeat(64))));
}

/// Issue 26: a signature names the repository as well as the digest. The same image (same
/// digest) in another repository must not borrow it: an attacker copying a signed image and its
/// signature to a repository a namespace trusts would otherwise pass.
#[tokio::test]
async fn a_signature_for_the_same_digest_in_another_repository_is_refused() {
    init();
    let reg = TestRegistry::start();
    let registry = insecure(&reg);
    let repo = format!("{}/demo/app", reg.host);
    let elsewhere = format!("{}/demo/elsewhere", reg.host);
    let k = keys();
    let good = push_image(&registry, &repo, EPOCH).await;
    assert_eq!(
        push_image(&registry, &elsewhere, EPOCH).await,
        good,
        "same content, same digest"
    );
    sign_image(&registry, &k.key, &repo, &good, None)
        .await
        .unwrap();
    let fetched = fetch(&registry, &repo, &good).await.unwrap();
    let signatures = fetched.signatures.as_deref().expect("signed");
    let key = PublicKey::from_pem(&k.pem).unwrap();
    // Control: for the repository it was made for, the signature verifies.
    trusted_builder::verify::verify_signatures(signatures, &key, &repo, &good).unwrap();
    let err = trusted_builder::verify::verify_signatures(signatures, &key, &elsewhere, &good)
        .unwrap_err();
    assert!(
        err.to_string().contains("names repository")
            || format!("{err:?}").contains("names repository"),
        "{err:?}"
    );
}

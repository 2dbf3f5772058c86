//! Local cosign key files: generate, load, sign, and verify with verifiers
//! that are not ours (sigstore's cosign verifier and the openssl CLI).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use sigstore::crypto::{CosignVerificationKey, Signature, SigningScheme};
use trusted_builder::sign::{FileKey, Secret, SignError, Signer, generate_key_pair};

const PASSWORD: &str = "correct horse battery staple";

fn sigstore_verifies(pub_pem: &[u8], sig: &[u8], payload: &[u8]) -> bool {
    let key =
        CosignVerificationKey::from_pem(pub_pem, &SigningScheme::ECDSA_P256_SHA256_ASN1).unwrap();
    key.verify_signature(Signature::Raw(sig), payload).is_ok()
}

/// `openssl dgst -sha256 -verify PUB -signature SIG PAYLOAD`, run as a process.
fn openssl_verifies(dir: &Path, pub_key: &Path, sig: &[u8], payload: &[u8]) -> bool {
    std::fs::write(dir.join("sig.der"), sig).unwrap();
    std::fs::write(dir.join("payload"), payload).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(pub_key)
        .args(["-signature", "sig.der", "payload"])
        .current_dir(dir)
        .output()
        .expect("the openssl CLI (scripts/install-deps.sh installs it)");
    let ok = out.status.success();
    assert_eq!(
        ok,
        String::from_utf8_lossy(&out.stdout).trim() == "Verified OK"
    );
    ok
}

#[tokio::test]
async fn generated_key_signs_and_independent_verifiers_agree() {
    let dir = tempfile::tempdir().unwrap();
    let pair = generate_key_pair(dir.path(), &Secret::new(PASSWORD)).unwrap();
    let private_pem = std::fs::read_to_string(&pair.private_key).unwrap();
    assert!(private_pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
    let public_pem = std::fs::read_to_string(&pair.public_key).unwrap();
    assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));

    let key = FileKey::load(&pair.private_key, &Secret::new(PASSWORD)).unwrap();
    assert_eq!(key.public_key_pem(), public_pem);
    assert_eq!(key.key_id(), pair.key_id);

    // The exact bytes cosign generates (recorded, not written by us).
    let payload = airlock_tests::fixtures::read(
        "supply-chain/cosign/simplesigning-payload.cosign-generated.json",
    );
    let sig = key.sign(&payload).await.unwrap();

    assert!(sigstore_verifies(public_pem.as_bytes(), &sig, &payload));
    assert!(openssl_verifies(
        dir.path(),
        &pair.public_key,
        &sig,
        &payload
    ));
    // A changed payload fails both.
    let mut tampered = payload.clone();
    tampered.push(b' ');
    assert!(!sigstore_verifies(public_pem.as_bytes(), &sig, &tampered));
    assert!(!openssl_verifies(
        dir.path(),
        &pair.public_key,
        &sig,
        &tampered
    ));
}

#[tokio::test]
async fn signature_does_not_verify_under_another_key() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let pa = generate_key_pair(a.path(), &Secret::new(PASSWORD)).unwrap();
    let pb = generate_key_pair(b.path(), &Secret::new(PASSWORD)).unwrap();
    assert_ne!(pa.key_id, pb.key_id);
    let key = FileKey::load(&pa.private_key, &Secret::new(PASSWORD)).unwrap();
    let sig = key.sign(b"payload").await.unwrap();
    let other_pem = std::fs::read(&pb.public_key).unwrap();
    assert!(!sigstore_verifies(&other_pem, &sig, b"payload"));
    assert!(!openssl_verifies(
        a.path(),
        &pb.public_key,
        &sig,
        b"payload"
    ));
}

#[test]
fn wrong_password_is_a_clear_error_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let pair = generate_key_pair(dir.path(), &Secret::new(PASSWORD)).unwrap();
    let wrong = "Tr0ub4dor&3-wrong";
    let err = FileKey::load(&pair.private_key, &Secret::new(wrong)).unwrap_err();
    assert!(matches!(err, SignError::Decrypt { .. }), "{err:?}");
    let text = format!("{err} | {err:?}");
    assert!(text.contains("wrong password"), "{text}");
    assert!(text.contains("cosign.key"), "{text}");
    assert!(!text.contains(wrong) && !text.contains(PASSWORD), "{text}");
}

#[test]
fn private_key_is_mode_0600_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let pair = generate_key_pair(dir.path(), &Secret::new(PASSWORD)).unwrap();
    let mode = std::fs::metadata(&pair.private_key)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let before = std::fs::read(&pair.private_key).unwrap();

    let err = generate_key_pair(dir.path(), &Secret::new("other")).unwrap_err();
    assert!(matches!(err, SignError::AlreadyExists(_)), "{err:?}");
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    assert_eq!(std::fs::read(&pair.private_key).unwrap(), before);

    // Only the public half present: still refused, and no private key appears.
    let only_pub = tempfile::tempdir().unwrap();
    std::fs::write(only_pub.path().join("cosign.pub"), "x").unwrap();
    assert!(generate_key_pair(only_pub.path(), &Secret::new(PASSWORD)).is_err());
    assert!(!only_pub.path().join("cosign.key").exists());
}

#[test]
fn debug_of_a_key_shows_no_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let pair = generate_key_pair(dir.path(), &Secret::new(PASSWORD)).unwrap();
    let key = FileKey::load(&pair.private_key, &Secret::new(PASSWORD)).unwrap();
    let dbg = format!("{key:?}");
    assert!(dbg.contains(&pair.key_id), "{dbg}");
    assert!(!dbg.contains("PRIVATE") && !dbg.contains(PASSWORD), "{dbg}");
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trusted-builder"))
}

#[test]
fn cli_keys_generate_reads_cosign_password_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("keys");
    let out = cli()
        .args(["keys", "generate", "--out"])
        .arg(&out_dir)
        .env("COSIGN_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cosign.pub") && stdout.contains("fingerprint: sha256:"),
        "{stdout}"
    );
    FileKey::load(&out_dir.join("cosign.key"), &Secret::new(PASSWORD)).unwrap();

    // Second run: refused, key untouched.
    let again = cli()
        .args(["keys", "generate", "--out"])
        .arg(&out_dir)
        .env("COSIGN_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));

    // Password from a file; COSIGN_PASSWORD unset.
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, "from-a-file\n").unwrap();
    let file_dir = dir.path().join("k2");
    let out = cli()
        .args(["keys", "generate", "--out"])
        .arg(&file_dir)
        .arg("--password-file")
        .arg(&pw_file)
        .env_remove("COSIGN_PASSWORD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    FileKey::load(&file_dir.join("cosign.key"), &Secret::new("from-a-file")).unwrap();

    // Neither: a clear error naming both ways.
    let out = cli()
        .args(["keys", "generate", "--out"])
        .arg(dir.path().join("k3"))
        .env_remove("COSIGN_PASSWORD")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("COSIGN_PASSWORD") && err.contains("--password-file"),
        "{err}"
    );
}

#[test]
fn cli_help_explains_keys_generate() {
    let out = cli().args(["keys", "generate", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("cosign.key") && help.contains("COSIGN_PASSWORD") && help.contains("0600"),
        "{help}"
    );
}

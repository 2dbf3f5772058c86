//! Vault transit signing through vaultrs, against the stand-in in
//! `vault_stand_in` (no Vault server can be installed here; see that module).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod vault_stand_in;

use serde_json::json;
use sigstore::crypto::{CosignVerificationKey, Signature, SigningScheme};
use trusted_builder::sign::{
    Secret, SignError, Signer, VaultConfig, VaultTransit, read_kv2_secret,
};
use vault_stand_in::VaultStandIn;

const TOKEN: &str = "s.stand-in-root-token-4f1c";

fn config(vault: &VaultStandIn, token: &str, key: &str) -> VaultConfig {
    VaultConfig {
        address: vault.address.clone(),
        token: Secret::new(token),
        mount: "transit".to_owned(),
        key_name: key.to_owned(),
    }
}

fn provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[tokio::test]
async fn vault_signature_verifies_with_the_public_key() {
    provider();
    let vault = VaultStandIn::start(TOKEN, &["airlock", "other"], vec![]).await;
    let signer = VaultTransit::connect(config(&vault, TOKEN, "airlock"))
        .await
        .unwrap();
    assert_eq!(signer.public_key_pem(), vault.public_key_pem("airlock"));
    assert!(signer.key_id().starts_with("sha256:"));

    let payload = br#"{"critical":{"type":"cosign container image signature"}}"#;
    let sig = signer.sign(payload).await.unwrap();

    // What vaultrs actually sent, checked against Vault's documented fields.
    let sent = vault.sign_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["hash_algorithm"], "sha2-256");
    assert_eq!(sent[0]["marshaling_algorithm"], "asn1");
    assert_eq!(sent[0]["prehashed"], false);

    // Independent verification: sigstore's cosign verifier with the PEM Vault gave out.
    let scheme = SigningScheme::ECDSA_P256_SHA256_ASN1;
    let key = CosignVerificationKey::from_pem(signer.public_key_pem().as_bytes(), &scheme).unwrap();
    key.verify_signature(Signature::Raw(&sig), payload).unwrap();
    assert!(
        key.verify_signature(Signature::Raw(&sig), b"another payload")
            .is_err()
    );
    let other =
        CosignVerificationKey::from_pem(vault.public_key_pem("other").as_bytes(), &scheme).unwrap();
    assert!(
        other
            .verify_signature(Signature::Raw(&sig), payload)
            .is_err()
    );

    // And the openssl CLI, as a separate process.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vault.pub"), signer.public_key_pem()).unwrap();
    std::fs::write(dir.path().join("sig.der"), &sig).unwrap();
    std::fs::write(dir.path().join("payload"), payload).unwrap();
    let out = std::process::Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-verify",
            "vault.pub",
            "-signature",
            "sig.der",
            "payload",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Verified OK");
}

#[tokio::test]
async fn wrong_token_is_a_clear_error_without_the_token() {
    provider();
    let vault = VaultStandIn::start(TOKEN, &["airlock"], vec![]).await;
    let wrong = "s.wrong-token-93ad";
    let err = VaultTransit::connect(config(&vault, wrong, "airlock"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SignError::VaultDenied { code: 403, .. }),
        "{err:?}"
    );
    let text = format!("{err} {err:?}");
    assert!(text.contains("refused the token"), "{text}");
    assert!(text.contains("transit/keys/airlock"), "{text}");
    assert!(!text.contains(wrong) && !text.contains(TOKEN), "{text}");

    // The Debug of a working signer never shows its token either.
    let signer = VaultTransit::connect(config(&vault, TOKEN, "airlock"))
        .await
        .unwrap();
    assert!(!format!("{signer:?}").contains(TOKEN));
}

#[tokio::test]
async fn unknown_key_is_reported_with_its_name() {
    provider();
    let vault = VaultStandIn::start(TOKEN, &["airlock"], vec![]).await;
    let err = VaultTransit::connect(config(&vault, TOKEN, "missing"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("transit/keys/missing"), "{err}");
    assert!(err.to_string().contains("404"), "{err}");
}

#[tokio::test]
async fn key_password_is_read_from_kv_v2() {
    provider();
    let kv = vec![(
        "airlock/cosign",
        json!({ "password": "kv-held-password", "n": 1 }),
    )];
    let vault = VaultStandIn::start(TOKEN, &[], kv).await;
    let token = Secret::new(TOKEN);
    let pw = read_kv2_secret(
        &vault.address,
        &token,
        "secret",
        "airlock/cosign",
        "password",
    )
    .await
    .unwrap();
    assert_eq!(pw.expose(), "kv-held-password");

    let err = read_kv2_secret(&vault.address, &token, "secret", "airlock/cosign", "nope")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"nope\""), "{err}");
    assert!(!err.to_string().contains("kv-held-password"));

    let err = read_kv2_secret(
        &vault.address,
        &Secret::new("bad"),
        "secret",
        "airlock/cosign",
        "password",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, SignError::VaultDenied { code: 403, .. }),
        "{err:?}"
    );
}

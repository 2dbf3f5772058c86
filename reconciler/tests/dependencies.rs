//! The reconciler never holds a signing key by construction, not by configuration: its
//! dependency tree (normal dependencies, what the binary links) has no Vault client, no
//! sigstore (whose key handling decrypts cosign private keys), no scrypt/secretbox (the
//! decryption itself) and not the trusted builder. The control runs the same query on the
//! trusted builder, which must show exactly those crates, so the check can see them.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;

/// Package names in the normal dependency tree of `package`.
fn linked_packages(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args([
            "--format",
            "{p}",
            "--manifest-path",
            manifest,
            "-p",
            package,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

const SIGNING_SIDE: &[&str] = &[
    "vaultrs",
    "sigstore",
    "scrypt",
    "crypto_secretbox",
    "trusted-builder",
];

#[test]
fn the_reconciler_links_no_vault_client_and_no_key_decryption() {
    let reconciler = linked_packages("airlock-reconciler");
    assert!(reconciler.contains("airlock-verify"), "{reconciler:?}");
    let found: Vec<&&str> = SIGNING_SIDE
        .iter()
        .filter(|name| reconciler.contains(**name))
        .collect();
    assert!(found.is_empty(), "the reconciler links {found:?}");

    // Control: the builder, which signs, links them (so the query does list such crates).
    let builder = linked_packages("trusted-builder");
    for name in ["vaultrs", "sigstore", "scrypt"] {
        assert!(
            builder.contains(name),
            "{name} not in the builder's tree: {builder:?}"
        );
    }
}

//! The origin key file and public key parsing.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use crate::record::{OriginKey, RecordError, parse_public_key_hex};

fn mode(path: &std::path::Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn record_key_file_is_created_0600_with_a_pub_file_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/keys/ci-origin.key");
    let key = OriginKey::load_or_create(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("state/keys")), 0o700);
    let public = fs::read_to_string(dir.path().join("state/keys/ci-origin.key.pub")).unwrap();
    assert_eq!(public.trim(), key.public_key_hex());
    assert_eq!(parse_public_key_hex(&public).unwrap(), key.verifying_key());
    // No temporary file is left beside it.
    let mut names: Vec<_> = fs::read_dir(dir.path().join("state/keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["ci-origin.key", "ci-origin.key.pub"]);

    let again = OriginKey::load_or_create(&path).unwrap();
    assert_eq!(again.key_id(), key.key_id());
    // The pub file is written again when it is missing.
    fs::remove_file(dir.path().join("state/keys/ci-origin.key.pub")).unwrap();
    let again = OriginKey::load_or_create(&path).unwrap();
    assert_eq!(again.key_id(), key.key_id());
    assert!(dir.path().join("state/keys/ci-origin.key.pub").exists());
}

#[test]
fn record_key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ci.key");
    OriginKey::load_or_create(&path).unwrap();
    for bad in [0o644, 0o640, 0o604, 0o620] {
        fs::set_permissions(&path, fs::Permissions::from_mode(bad)).unwrap();
        let err = OriginKey::load_or_create(&path).unwrap_err();
        assert!(
            matches!(&err, RecordError::Key(m) if m.contains("chmod 600")),
            "{bad:o}: {err}"
        );
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    OriginKey::load_or_create(&path).unwrap();
}

#[test]
fn record_key_file_link_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.key");
    OriginKey::load_or_create(&real).unwrap();
    let link = dir.path().join("link.key");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = OriginKey::load_or_create(&link).unwrap_err();
    assert!(
        matches!(&err, RecordError::Key(m) if m.contains("symbolic link")),
        "{err}"
    );
}

#[test]
fn record_bad_key_file_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ci.key");
    let almost = format!("{}zz", "ab".repeat(31));
    fs::write(&path, &almost).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let err = OriginKey::load_or_create(&path).unwrap_err();
    let message = format!("{err} {err:?}");
    assert!(matches!(err, RecordError::Key(_)), "{message}");
    assert!(
        !message.contains("abab"),
        "the error must not show the file's contents: {message}"
    );
}

#[test]
fn record_mismatched_pub_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ci.key");
    OriginKey::load_or_create(&path).unwrap();
    fs::write(
        dir.path().join("ci.key.pub"),
        format!("{}\n", OriginKey::generate().public_key_hex()),
    )
    .unwrap();
    let err = OriginKey::load_or_create(&path).unwrap_err();
    assert!(
        matches!(&err, RecordError::Key(m) if m.contains(".pub")),
        "{err}"
    );
}

#[test]
fn record_key_debug_shows_only_the_key_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ci.key");
    let key = OriginKey::load_or_create(&path).unwrap();
    let seed = fs::read_to_string(&path).unwrap();
    let debug = format!("{key:?}");
    assert!(debug.contains(&key.key_id()), "{debug}");
    assert!(
        !debug.contains(seed.trim()) && !debug.contains(&seed.trim()[..16]),
        "{debug}"
    );
}

#[test]
fn record_public_keys_parse_from_hex_only() {
    let key = OriginKey::generate();
    assert_eq!(
        parse_public_key_hex(&format!("  {}\n", key.public_key_hex())).unwrap(),
        key.verifying_key()
    );
    assert_eq!(
        parse_public_key_hex(&key.public_key_hex().to_uppercase()).unwrap(),
        key.verifying_key()
    );
    for bad in ["", "abcd", &"g".repeat(64), &"0".repeat(66)] {
        assert!(
            matches!(parse_public_key_hex(bad), Err(RecordError::Key(_))),
            "{bad}"
        );
    }
    // The identity point: small order, so it is weak and every signature would "verify".
    let identity = format!("01{}", "00".repeat(31));
    assert!(matches!(
        parse_public_key_hex(&identity),
        Err(RecordError::Key(_))
    ));
}

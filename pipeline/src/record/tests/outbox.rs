//! `DirOutbox`: names, idempotence, and what the reader refuses.

use std::fs;

use super::{ci_key, other_key, sample};
use crate::record::{DirOutbox, MAX_RECORD_BYTES, Outbox, RecordError};

fn is_record_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".json") else {
        return false;
    };
    let Some((hint, digest)) = stem.rsplit_once('-') else {
        return false;
    };
    !hint.is_empty()
        && hint
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && digest.len() == 12
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[test]
fn record_outbox_put_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = DirOutbox::new(dir.path());
    let env = ci_key().sign(&sample()).unwrap();
    let first = outbox.put(&env, "greet/publish").unwrap();
    let second = outbox.put(&env, "greet/publish").unwrap();
    assert_eq!(first, second);
    assert!(
        first.starts_with("greet_publish-") && is_record_name(&first),
        "{first}"
    );
    // One file, no temporary left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    assert_eq!(outbox.read(&first).unwrap(), env.to_json().unwrap());

    let mut other = sample();
    other.job = "build".into();
    let third = outbox
        .put(&ci_key().sign(&other).unwrap(), "greet/publish")
        .unwrap();
    assert_ne!(third, first);
    assert_eq!(outbox.list().unwrap().len(), 2);
}

#[test]
fn record_outbox_never_overwrites_a_different_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = DirOutbox::new(dir.path());
    let ours = ci_key().sign(&sample()).unwrap();
    let name = outbox.put(&ours, "r").unwrap();
    // The same record signed by another key maps to the same name.
    let theirs = other_key().sign(&sample()).unwrap();
    let err = outbox.put(&theirs, "r").unwrap_err();
    assert!(
        matches!(&err, RecordError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{err}"
    );
    assert_eq!(outbox.read(&name).unwrap(), ours.to_json().unwrap());
}

#[test]
fn record_outbox_names_are_sanitised() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = DirOutbox::new(dir.path().join("new/outbox"));
    let env = ci_key().sign(&sample()).unwrap();
    for hint in [
        "../../etc/passwd",
        ".hidden",
        "",
        "a b\nc",
        "ünïcode",
        &"x".repeat(300),
    ] {
        let name = outbox.put(&env, hint).unwrap();
        assert!(
            is_record_name(&name) && !name.contains("..") && name.len() < 100,
            "{hint:?} -> {name}"
        );
        assert!(outbox.read(&name).is_ok());
    }
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing written outside the outbox"
    );
}

#[test]
fn record_outbox_list_shows_complete_records_only() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = DirOutbox::new(dir.path());
    let name = outbox
        .put(&ci_key().sign(&sample()).unwrap(), "greet")
        .unwrap();
    fs::write(dir.path().join(".tmp-1-00000000deadbeef"), b"{half").unwrap();
    fs::write(dir.path().join("notes.txt"), b"x").unwrap();
    fs::create_dir(dir.path().join("dir.json")).unwrap();
    std::os::unix::fs::symlink(dir.path().join(&name), dir.path().join("link.json")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd.json")).unwrap();
    fs::write(dir.path().join("a-000000000000.json"), b"{}").unwrap();
    assert_eq!(
        outbox.list().unwrap(),
        ["a-000000000000.json".to_string(), name]
    );
}

#[test]
fn record_outbox_read_refuses_hostile_entries() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = DirOutbox::new(dir.path().join("outbox"));
    let name = outbox
        .put(&ci_key().sign(&sample()).unwrap(), "greet")
        .unwrap();
    fs::write(dir.path().join("secret.json"), b"{}").unwrap();
    for bad in [
        "../secret.json",
        "sub/x.json",
        "..",
        ".",
        "",
        ".tmp-1-2",
        "a\0b",
    ] {
        assert!(
            matches!(outbox.read(bad), Err(RecordError::Invalid(_))),
            "{bad:?}"
        );
    }
    let out = dir.path().join("outbox");
    std::os::unix::fs::symlink(out.join(&name), out.join("link.json")).unwrap();
    assert!(
        matches!(outbox.read("link.json"), Err(RecordError::Invalid(m)) if m.contains("symbolic link"))
    );
    fs::create_dir(out.join("dir.json")).unwrap();
    assert!(matches!(
        outbox.read("dir.json"),
        Err(RecordError::Invalid(_))
    ));
    // A FIFO would block a plain open(2) until a writer came; it is refused at once.
    nix::unistd::mkfifo(
        &out.join("fifo.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    assert!(matches!(
        outbox.read("fifo.json"),
        Err(RecordError::Invalid(_))
    ));
    fs::write(out.join("big.json"), vec![b' '; MAX_RECORD_BYTES + 1]).unwrap();
    assert!(matches!(
        outbox.read("big.json"),
        Err(RecordError::TooLarge { .. })
    ));
    assert!(matches!(
        outbox.read("missing.json"),
        Err(RecordError::Io { .. })
    ));
}

//! Every form of link attack on a tree, each with a control showing that a plain path call
//! would have reached the host file.
#![allow(clippy::disallowed_methods, clippy::unwrap_used)]

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::Path;

use super::{EntryKind, TreeError, TreeRoot};

struct Scene {
    _tmp: tempfile::TempDir,
    tree: std::path::PathBuf,
    host: std::path::PathBuf,
}

/// A tree and, beside it, a "host" directory holding `victim.conf`.
fn scene() -> Scene {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let host = tmp.path().join("host");
    fs::create_dir_all(&tree).unwrap();
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("victim.conf"), "host secret\n").unwrap();
    Scene {
        _tmp: tmp,
        tree,
        host,
    }
}

fn victim(s: &Scene) -> String {
    fs::read_to_string(s.host.join("victim.conf")).unwrap()
}

#[test]
fn link_on_a_parent_directory_is_never_written_through() {
    let s = scene();
    symlink(&s.host, s.tree.join("dist")).unwrap();
    // Control: a plain path call reaches the host file through the link.
    assert_eq!(
        fs::read_to_string(s.tree.join("dist/victim.conf")).unwrap(),
        "host secret\n"
    );

    let root = TreeRoot::open(&s.tree).unwrap();
    let err = root
        .replace_file(Path::new("dist/victim.conf"), 0o644)
        .unwrap_err();
    assert!(matches!(err, TreeError::Link { .. }), "{err:?}");
    let err = root.open_file(Path::new("dist/victim.conf")).unwrap_err();
    assert!(matches!(err, TreeError::Link { .. }), "{err:?}");
    let err = root
        .create_dir_all(Path::new("dist/sub"), 0o755)
        .unwrap_err();
    assert!(matches!(err, TreeError::Link { .. }), "{err:?}");
    let err = root.metadata(Path::new("dist/victim.conf")).unwrap_err();
    assert!(matches!(err, TreeError::Link { .. }), "{err:?}");
    assert_eq!(victim(&s), "host secret\n");
    assert!(!s.host.join("sub").exists());
}

#[test]
fn dangling_link_at_the_last_component_creates_nothing() {
    let s = scene();
    let target = s.host.join("planted.conf");
    symlink(&target, s.tree.join("out")).unwrap();
    // Control: a plain create follows the dangling link and makes a host file.
    {
        let probe = s.tree.join("out");
        fs::write(&probe, "x").unwrap();
        assert!(target.exists());
        fs::remove_file(&target).unwrap();
    }

    let root = TreeRoot::open(&s.tree).unwrap();
    assert!(root.create_file(Path::new("out"), 0o644).is_err());
    assert!(!target.exists());
    // replace_file removes the link itself, then writes a file in the tree.
    let mut f = root.replace_file(Path::new("out"), 0o600).unwrap();
    f.write_all(b"inside").unwrap();
    assert!(!target.exists());
    assert_eq!(fs::read_to_string(s.tree.join("out")).unwrap(), "inside");
    assert_eq!(
        fs::metadata(s.tree.join("out"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

#[test]
fn link_to_a_climbing_target_is_refused_and_dotdot_paths_too() {
    let s = scene();
    fs::create_dir_all(s.tree.join("a")).unwrap();
    symlink("../../host", s.tree.join("a/up")).unwrap();
    // Control: the relative link reaches the host directory.
    assert!(s.tree.join("a/up/victim.conf").exists());

    let root = TreeRoot::open(&s.tree).unwrap();
    let err = root.open_file(Path::new("a/up/victim.conf")).unwrap_err();
    assert!(matches!(err, TreeError::Link { .. }), "{err:?}");
    for bad in [
        "../host/victim.conf",
        "a/../../host/victim.conf",
        "/etc/passwd",
    ] {
        let err = root.replace_file(Path::new(bad), 0o644).unwrap_err();
        assert!(matches!(err, TreeError::BadPath { .. }), "{bad}: {err:?}");
    }
    assert_eq!(victim(&s), "host secret\n");
}

#[test]
fn a_link_inside_the_tree_is_not_followed_either() {
    // Even a link that stays inside is not followed: what a job sees as `dist/x` must be the
    // file the host collects, not whatever the link points at next.
    let s = scene();
    fs::create_dir_all(s.tree.join("real")).unwrap();
    fs::write(s.tree.join("real/x"), "x").unwrap();
    symlink("real", s.tree.join("dist")).unwrap();
    let root = TreeRoot::open(&s.tree).unwrap();
    assert!(root.open_file(Path::new("real/x")).is_ok(), "control");
    let err = root.open_file(Path::new("dist/x")).unwrap_err();
    assert!(matches!(err, TreeError::Link { .. }), "{err:?}");
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let s = scene();
    nix::unistd::mkfifo(
        &s.tree.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    fs::write(s.tree.join("file"), "f").unwrap();
    let root = TreeRoot::open(&s.tree).unwrap();
    let mut ok = String::new();
    root.open_file(Path::new("file"))
        .unwrap()
        .read_to_string(&mut ok)
        .unwrap();
    assert_eq!(ok, "f", "control");
    let err = root.open_file(Path::new("pipe")).unwrap_err();
    assert!(matches!(err, TreeError::WrongKind { .. }), "{err:?}");
}

#[test]
fn walk_lists_links_as_links_and_never_enters_them() {
    let s = scene();
    fs::create_dir_all(s.tree.join("b/c")).unwrap();
    fs::write(s.tree.join("b/c/f"), "f").unwrap();
    fs::write(s.tree.join("a.txt"), "a").unwrap();
    symlink(&s.host, s.tree.join("b/host")).unwrap();
    let root = TreeRoot::open(&s.tree).unwrap();
    let listed: Vec<(String, EntryKind)> = root
        .walk(Path::new(""))
        .unwrap()
        .into_iter()
        .map(|e| (e.rel.display().to_string(), e.meta.kind))
        .collect();
    assert_eq!(
        listed,
        [
            ("a.txt".to_string(), EntryKind::File),
            ("b".to_string(), EntryKind::Dir),
            ("b/c".to_string(), EntryKind::Dir),
            ("b/c/f".to_string(), EntryKind::File),
            ("b/host".to_string(), EntryKind::Symlink),
        ]
    );
}

#[test]
fn copy_into_keeps_links_as_links_and_drops_special_bits() {
    let s = scene();
    fs::create_dir_all(s.tree.join("d")).unwrap();
    fs::write(s.tree.join("d/run"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(s.tree.join("d/run"), fs::Permissions::from_mode(0o4755)).unwrap();
    symlink(&s.host, s.tree.join("hostlink")).unwrap();
    let dest_path = s.host.join("copy");
    let dest = TreeRoot::create(&dest_path, 0o755).unwrap();
    TreeRoot::open(&s.tree).unwrap().copy_into(&dest).unwrap();
    assert_eq!(
        fs::metadata(dest_path.join("d/run"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
    assert_eq!(fs::read_link(dest_path.join("hostlink")).unwrap(), s.host);
}

#[test]
fn the_root_itself_may_not_be_a_link() {
    let s = scene();
    let link = s.tree.join("root-link");
    symlink(&s.host, &link).unwrap();
    assert!(TreeRoot::open(&link).is_err());
    assert!(TreeRoot::open(&s.host).is_ok(), "control");
}

//! Writing trees to disk, and refusing hostile ones.

use std::fs;
use std::path::Path;

use tempfile::TempDir;

use super::{Upstream, git, git_with_input, id};
use crate::source::{Mirror, SourceError};

#[test]
fn source_materialise_writes_files_modes_and_symlinks() {
    use std::os::unix::fs::PermissionsExt as _;
    let up = Upstream::new();
    let mirror = Mirror::open(&up.dir).unwrap();
    let tmp = TempDir::new().unwrap();
    let dest = tmp.path().join("a/b/work");
    let stats = mirror.materialise(&id(&up.main), &dest).unwrap();
    assert_eq!(stats.files, 4, "README, lib.rs, run.sh, link");
    assert_eq!(
        stats.bytes,
        ("hello\n".len()
            + "pub fn f() {}\n".len()
            + "#!/bin/sh\necho hi\n".len()
            + "src/lib.rs".len()) as u64
    );
    assert_eq!(
        fs::read_to_string(dest.join("README.md")).unwrap(),
        "hello\n"
    );
    let mode = |p: &str| fs::metadata(dest.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("README.md"), 0o644);
    assert_eq!(mode("src/bin/run.sh"), 0o755);
    assert_eq!(mode("src/bin"), 0o755);
    let link = dest.join("link");
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("src/lib.rs"));
    assert!(!dest.join(".git").exists());

    // A non-empty destination is refused.
    let err = mirror.materialise(&id(&up.main), &dest).unwrap_err();
    assert!(
        matches!(err, SourceError::DestinationNotEmpty { .. }),
        "{err:?}"
    );
    // An existing empty directory is fine.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    mirror.materialise(&id(&up.main_first), &empty).unwrap();
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 1);
}

#[test]
fn source_materialise_skips_submodules() {
    let up = Upstream::new();
    // A tree with a gitlink next to a file.
    let blob = git(&up.dir, &["rev-parse", "HEAD:README.md"]);
    let listing = format!(
        "100644 blob {blob}\tREADME.md\n160000 commit {}\tsub\n",
        up.main_first
    );
    let tree = git_with_input(&up.dir, &["mktree"], Some(listing.as_bytes()));
    let commit = git(&up.dir, &["commit-tree", "-m", "with submodule", &tree]);
    let mirror = Mirror::open(&up.dir).unwrap();
    let tmp = TempDir::new().unwrap();
    let stats = mirror.materialise(&id(&commit), tmp.path()).unwrap();
    assert_eq!(stats.files, 1);
    assert!(!tmp.path().join("sub").exists());
}

/// Write a tree object from raw entries, bypassing git's own checks.
fn hostile_tree(dir: &Path, entries: &[(&str, &[u8], &str)]) -> String {
    let mut bytes = Vec::new();
    for (mode, name, hex) in entries {
        bytes.extend_from_slice(mode.as_bytes());
        bytes.push(b' ');
        bytes.extend_from_slice(name);
        bytes.push(0);
        bytes.extend_from_slice(&hex::decode(hex).unwrap());
    }
    git_with_input(
        dir,
        &["hash-object", "-t", "tree", "--literally", "-w", "--stdin"],
        Some(&bytes),
    )
}

#[test]
fn source_materialise_refuses_hostile_trees() {
    let up = Upstream::new();
    let blob = git_with_input(&up.dir, &["hash-object", "-w", "--stdin"], Some(b"pwned\n"));
    let mirror = Mirror::open(&up.dir).unwrap();
    let names: [&[u8]; 6] = [b"..", b".", b".git", b".GiT", b"a/b", b""];
    for name in names {
        // Put the bad entry one level down, after a harmless file, so that writing "as we
        // go" would already have created something.
        let inner = hostile_tree(&up.dir, &[("100644", name, &blob)]);
        let outer = hostile_tree(
            &up.dir,
            &[
                ("100644", b"aaa-harmless", &blob),
                ("40000", b"dir", &inner),
            ],
        );
        let commit = git(&up.dir, &["commit-tree", "-m", "evil", &outer]);
        let tmp = TempDir::new().unwrap();
        let dest = tmp.path().join("dest");
        let err = mirror.materialise(&id(&commit), &dest).unwrap_err();
        assert!(
            matches!(err, SourceError::UnsafePath { .. }),
            "{:?}: {err:?}",
            String::from_utf8_lossy(name)
        );
        if !name.is_empty() {
            assert!(
                err.to_string()
                    .contains(&String::from_utf8_lossy(name).to_string()),
                "{err}"
            );
        }
        // Nothing at all was written, inside or outside dest.
        let listing: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert!(listing.is_empty(), "{listing:?}");
    }

    // A top-level ".." next to a real file, the classic escape.
    let tree = hostile_tree(&up.dir, &[("100644", b"..", &blob)]);
    let commit = git(&up.dir, &["commit-tree", "-m", "evil", &tree]);
    let tmp = TempDir::new().unwrap();
    let dest = tmp.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let err = mirror.materialise(&id(&commit), &dest).unwrap_err();
    assert!(err.to_string().contains("\"..\""), "{err}");
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    assert_eq!(fs::read_dir(&dest).unwrap().count(), 0);

    // Duplicate names (a symlink and a directory called "x") are refused too.
    let sub = hostile_tree(&up.dir, &[("100644", b"f", &blob)]);
    let link_target = git_with_input(&up.dir, &["hash-object", "-w", "--stdin"], Some(b"/etc"));
    let tree = hostile_tree(
        &up.dir,
        &[("120000", b"x", &link_target), ("40000", b"x", &sub)],
    );
    let commit = git(&up.dir, &["commit-tree", "-m", "evil", &tree]);
    let tmp = TempDir::new().unwrap();
    let err = mirror
        .materialise(&id(&commit), &tmp.path().join("d"))
        .unwrap_err();
    assert!(matches!(err, SourceError::UnsafePath { .. }), "{err:?}");
}

/// Issue 19: a checkout is bounded in entries, bytes per file, bytes in all and by the host's
/// reserve, all checked while the tree is planned, before anything is written. The main tree
/// has 6 entries, files of 6, 14 and 18 bytes and a link whose target is 10 (48 in all).
#[test]
fn source_materialise_refuses_trees_over_their_limits_and_writes_nothing() {
    use crate::source::TreeLimits;
    let up = Upstream::new();
    let mirror = Mirror::open(&up.dir).unwrap();
    let fits = TreeLimits {
        max_entries: 6,
        max_file_bytes: 18,
        max_total_bytes: 48,
        reserve_bytes: 0,
    };
    let cases = [
        (
            TreeLimits {
                max_entries: 5,
                ..fits
            },
            "more than 5 entries",
        ),
        (
            TreeLimits {
                max_file_bytes: 17,
                ..fits
            },
            "'src/bin/run.sh' is 18 bytes, over the limit of 17 bytes per file",
        ),
        (
            TreeLimits {
                max_total_bytes: 47,
                ..fits
            },
            "its files come to more than 47 bytes",
        ),
        (
            TreeLimits {
                reserve_bytes: u64::MAX / 2,
                ..fits
            },
            "would take the host below its reserve",
        ),
    ];
    for (limits, expected) in cases {
        let tmp = TempDir::new().unwrap();
        let dest = tmp.path().join("dest");
        let err = mirror
            .materialise_limited(&id(&up.main), &dest, &limits)
            .unwrap_err();
        assert!(matches!(err, SourceError::TreeTooLarge { .. }), "{err:?}");
        assert!(err.to_string().contains(expected), "{err}");
        assert!(err.to_string().contains("nothing was written"), "{err}");
        let written = fs::read_dir(&dest).map(|d| d.count()).unwrap_or(0);
        assert_eq!(written, 0, "{expected}");
    }
    // Control: exactly at every limit the tree is written.
    let tmp = TempDir::new().unwrap();
    let stats = mirror
        .materialise_limited(&id(&up.main), tmp.path(), &fits)
        .unwrap();
    assert_eq!((stats.files, stats.bytes), (4, 48));

    // A link target longer than a path can be is refused before it is loaded.
    let long = "a/".repeat(2100);
    let target = git_with_input(
        &up.dir,
        &["hash-object", "-w", "--stdin"],
        Some(long.as_bytes()),
    );
    let tree = hostile_tree(&up.dir, &[("120000", b"deep", &target)]);
    let commit = git(&up.dir, &["commit-tree", "-m", "long link", &tree]);
    let tmp = TempDir::new().unwrap();
    let err = mirror.materialise(&id(&commit), tmp.path()).unwrap_err();
    assert!(
        err.to_string().contains("longer than a path can be"),
        "{err}"
    );
}

/// Issue 19: names in a commit are carried as bytes (Git stores bytes): a non-UTF-8 name is
/// written as committed, not as a lossy copy that would name another file.
#[test]
fn source_materialise_carries_non_utf8_names_as_bytes() {
    use std::os::unix::ffi::OsStrExt as _;
    let up = Upstream::new();
    let blob = git(&up.dir, &["rev-parse", "HEAD:README.md"]);
    let tree = hostile_tree(
        &up.dir,
        &[
            ("100644", b"caf\xe9", &blob),
            ("100644", "café".as_bytes(), &blob),
        ],
    );
    let commit = git(&up.dir, &["commit-tree", "-m", "latin-1 name", &tree]);
    let mirror = Mirror::open(&up.dir).unwrap();
    let tmp = TempDir::new().unwrap();
    let stats = mirror.materialise(&id(&commit), tmp.path()).unwrap();
    assert_eq!(stats.files, 2);
    let latin1 = tmp.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    assert_eq!(fs::read_to_string(latin1).unwrap(), "hello\n");
    assert_eq!(
        fs::read_to_string(tmp.path().join("café")).unwrap(),
        "hello\n"
    );
}

/// Issue 26: a committed link may climb with `..` only before any name: after a name, that name
/// could itself be a link and `..` would climb from wherever it points.
#[test]
fn source_materialise_refuses_dotdot_after_a_name_in_a_link_target() {
    let up = Upstream::new();
    let mirror = Mirror::open(&up.dir).unwrap();
    let blob = git(&up.dir, &["rev-parse", "HEAD:README.md"]);
    let link = |target: &str| {
        git_with_input(
            &up.dir,
            &["hash-object", "-w", "--stdin"],
            Some(target.as_bytes()),
        )
    };
    // `d/l -> x/../README.md`: lexically inside, but `x` could be a link.
    let sub = hostile_tree(
        &up.dir,
        &[
            ("100644", b"x", &blob),
            ("120000", b"l", &link("x/../README.md")),
        ],
    );
    let tree = hostile_tree(
        &up.dir,
        &[("100644", b"README.md", &blob), ("40000", b"d", &sub)],
    );
    let commit = git(
        &up.dir,
        &["commit-tree", "-m", "dotdot after a name", &tree],
    );
    let tmp = TempDir::new().unwrap();
    let err = mirror.materialise(&id(&commit), tmp.path()).unwrap_err();
    assert!(err.to_string().contains("'..' after a name"), "{err}");
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing written"
    );
    // Control: the same destination reached with `..` first is a plain in-tree link.
    let sub = hostile_tree(
        &up.dir,
        &[
            ("100644", b"x", &blob),
            ("120000", b"l", &link("../README.md")),
        ],
    );
    let tree = hostile_tree(
        &up.dir,
        &[("100644", b"README.md", &blob), ("40000", b"d", &sub)],
    );
    let commit = git(&up.dir, &["commit-tree", "-m", "dotdot first", &tree]);
    let tmp = TempDir::new().unwrap();
    mirror.materialise(&id(&commit), tmp.path()).unwrap();
    assert_eq!(
        fs::read_link(tmp.path().join("d/l")).unwrap(),
        Path::new("../README.md")
    );
}

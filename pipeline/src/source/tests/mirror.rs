//! Opening repositories, resolving revisions, reading files and commit metadata.

use std::fs;

use tempfile::TempDir;

use super::{Upstream, git, id};
use crate::source::{Mirror, SourceError};

#[test]
fn source_read_file_present_absent_too_large() {
    let up = Upstream::new();
    let mirror = Mirror::open(&up.dir).unwrap();
    let main = id(&up.main);
    assert_eq!(
        mirror.read_file(&main, "src/lib.rs", 100).unwrap().unwrap(),
        b"pub fn f() {}\n"
    );
    assert_eq!(
        mirror.read_file(&main, "src/missing.rs", 100).unwrap(),
        None
    );
    assert_eq!(mirror.read_file(&main, "README.md/x", 100).unwrap(), None);
    let err = mirror.read_file(&main, "src/lib.rs", 5).unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::FileTooLarge {
                size: 14,
                max: 5,
                ..
            }
        ),
        "{err:?}"
    );
    let err = mirror.read_file(&main, "src", 100).unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::NotAFile {
                kind: "directory",
                ..
            }
        ),
        "{err:?}"
    );
    let err = mirror.read_file(&main, "link", 100).unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::NotAFile {
                kind: "symlink",
                ..
            }
        ),
        "{err:?}"
    );
    for bad in [
        "",
        "/src/lib.rs",
        "src//lib.rs",
        "src/../README.md",
        "./README.md",
    ] {
        let err = mirror.read_file(&main, bad, 100).unwrap_err();
        assert!(
            matches!(err, SourceError::InvalidPath { .. }),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn source_resolve_and_ancestry() {
    let up = Upstream::new();
    let mirror = Mirror::open(&up.dir).unwrap();
    assert_eq!(mirror.resolve("HEAD").unwrap(), id(&up.main));
    assert_eq!(mirror.resolve("HEAD~1").unwrap(), id(&up.main_first));
    assert_eq!(mirror.resolve(&up.main[..10]).unwrap(), id(&up.main));
    assert_eq!(
        mirror.resolve("refs/changes/01/1/1").unwrap(),
        id(&up.change)
    );
    let err = mirror.resolve("does-not-exist").unwrap_err();
    assert!(matches!(err, SourceError::RevNotFound { .. }), "{err:?}");

    // A side branch from the first commit: neither it nor main is the other's ancestor.
    git(&up.dir, &["checkout", "-q", "-b", "side", &up.main_first]);
    fs::write(up.dir.join("side.txt"), "side\n").unwrap();
    git(&up.dir, &["add", "."]);
    git(&up.dir, &["commit", "-q", "-m", "side"]);
    let side = id(&git(&up.dir, &["rev-parse", "HEAD"]));
    let mirror = Mirror::open(&up.dir).unwrap();
    let (first, main, change) = (id(&up.main_first), id(&up.main), id(&up.change));
    assert!(mirror.is_ancestor(&first, &main).unwrap());
    assert!(mirror.is_ancestor(&main, &change).unwrap());
    assert!(mirror.is_ancestor(&main, &main).unwrap());
    assert!(!mirror.is_ancestor(&main, &first).unwrap());
    assert!(!mirror.is_ancestor(&side, &main).unwrap());
    assert!(!mirror.is_ancestor(&main, &side).unwrap());
    assert!(mirror.is_ancestor(&first, &side).unwrap());
    // Unrelated history (an orphan commit).
    let tree = git(&up.dir, &["rev-parse", "HEAD^{tree}"]);
    let orphan = id(&git(&up.dir, &["commit-tree", "-m", "orphan", &tree]));
    assert!(!mirror.is_ancestor(&orphan, &main).unwrap());
    // Unknown ids are an error, not "no".
    let unknown = id("1234567890123456789012345678901234567890");
    assert!(mirror.is_ancestor(&unknown, &main).is_err());

    assert_eq!(mirror.ref_target("refs/heads/side").unwrap(), Some(side));
    assert_eq!(mirror.ref_target("refs/heads/nope").unwrap(), None);
    assert!(mirror.ref_target("side").is_err());
}

#[test]
fn source_commit_time_and_summary() {
    let up = Upstream::new();
    let mirror = Mirror::open(&up.dir).unwrap();
    let first = id(&up.main_first);
    // 2021-02-03T04:05:06Z
    assert_eq!(mirror.commit_time(&first).unwrap(), 1_612_325_106);
    let summary = mirror.commit_summary(&first).unwrap();
    assert_eq!(summary.subject, "first commit");
    assert_eq!(summary.author, "Test Author <author@example.com>");
}

#[test]
fn source_open_reports_missing_repository() {
    let tmp = TempDir::new().unwrap();
    let err = Mirror::open(tmp.path()).unwrap_err();
    assert!(matches!(err, SourceError::Open { .. }), "{err:?}");
}

//! Mirror paths and fetching.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::{Upstream, git, git_with_input, id};
use crate::source::{SourceCache, SourceError};

fn pack_indices(mirror: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(mirror.join("objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    out.sort();
    out
}

fn objects_in_pack(idx: &Path) -> usize {
    let data = fs::read(idx).unwrap();
    let out = git_with_input(idx.parent().unwrap(), &["show-index"], Some(&data));
    out.lines().count()
}

#[test]
fn source_mirror_path_is_stable_and_ignores_credentials() {
    let cache = SourceCache::new("/cache");
    let a = cache.mirror_path("https://example.com/org/Repo.git");
    let b = cache.mirror_path("https://user:secret@example.com/org/Repo.git");
    assert_eq!(a, b);
    let name = a.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.ends_with("-Repo.git"), "{name}");
    assert_eq!(name.len(), 16 + 1 + "Repo.git".len());
    assert!(!b.to_string_lossy().contains("secret"));
    assert_ne!(a, cache.mirror_path("https://example.com/org/other.git"));
    assert!(
        cache
            .mirror_path("/srv/git/../..")
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("-repo.git")
    );
    assert!(
        cache
            .mirror_path("git@host:team/my%20thing.git/")
            .to_string_lossy()
            .ends_with("-my_20thing.git")
    );
}

#[test]
fn source_fetch_branch_by_name() {
    let up = Upstream::new();
    let tmp = TempDir::new().unwrap();
    let cache = SourceCache::new(tmp.path().join("cache"));
    let (mirror, commit) = cache.fetch_rev(&up.url(), "main").unwrap();
    assert_eq!(commit, id(&up.main));
    assert_eq!(mirror.path(), cache.mirror_path(&up.url()));
    assert!(mirror.path().starts_with(tmp.path()));
    assert_eq!(
        mirror.ref_target("refs/heads/main").unwrap(),
        Some(id(&up.main))
    );
    // Only what was asked for: the change ref was not fetched.
    assert_eq!(mirror.ref_target("refs/changes/01/1/1").unwrap(), None);
    assert_eq!(mirror.resolve("main~1").unwrap(), id(&up.main_first));
}

#[test]
fn source_concurrent_first_fetches_share_one_mirror() {
    let up = Upstream::new();
    let tmp = TempDir::new().unwrap();
    let cache = SourceCache::new(tmp.path().join("cache"));
    let url = up.url();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (cache, url) = (&cache, &url);
                scope.spawn(move || {
                    let rev = if i % 2 == 0 {
                        "main"
                    } else {
                        "refs/changes/01/1/1"
                    };
                    cache.fetch_rev(url, rev).map(|(_, c)| c)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, result) in results.into_iter().enumerate() {
        let expected = if i % 2 == 0 { &up.main } else { &up.change };
        assert_eq!(result.unwrap(), id(expected));
    }
    // One mirror, no staging directories left behind.
    let names: Vec<_> = fs::read_dir(cache.root())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn source_fetch_from_plain_local_path() {
    let up = Upstream::new();
    let tmp = TempDir::new().unwrap();
    let cache = SourceCache::new(tmp.path());
    let url = up.dir.to_str().unwrap();
    let mirror = cache
        .fetch(url, &["+refs/heads/*:refs/heads/*".to_owned()])
        .unwrap();
    assert_eq!(mirror.resolve("refs/heads/main").unwrap(), id(&up.main));
}

#[test]
fn source_fetch_branch_falls_back_to_tag() {
    let up = Upstream::new();
    git(
        &up.dir,
        &["tag", "-a", "-m", "release", "v1", &up.main_first],
    );
    let tmp = TempDir::new().unwrap();
    let cache = SourceCache::new(tmp.path());
    let (_, commit) = cache.fetch_rev(&up.url(), "v1").unwrap();
    assert_eq!(commit, id(&up.main_first), "annotated tag is peeled");
}

#[test]
fn source_fetch_change_ref() {
    let up = Upstream::new();
    let tmp = TempDir::new().unwrap();
    let cache = SourceCache::new(tmp.path());
    let (mirror, commit) = cache.fetch_rev(&up.url(), "refs/changes/01/1/1").unwrap();
    assert_eq!(commit, id(&up.change));
    assert_eq!(
        mirror.ref_target("refs/changes/01/1/1").unwrap(),
        Some(commit)
    );
    let yaml = mirror
        .read_file(&commit, ".pipeline/config.yaml", 1024)
        .unwrap();
    assert_eq!(yaml.as_deref(), Some(&b"jobs:\n  build: {}\n"[..]));
    assert!(mirror.is_ancestor(&id(&up.main), &commit).unwrap());
}

#[test]
fn source_fetch_by_commit_id() {
    let up = Upstream::new();
    let tmp = TempDir::new().unwrap();
    let cache = SourceCache::new(tmp.path());
    // Only reachable from the change ref, so the change glob must have been fetched.
    let (mirror, commit) = cache.fetch_rev(&up.url(), &up.change).unwrap();
    assert_eq!(commit, id(&up.change));
    // A second request for a known commit is answered from the mirror.
    let (_, again) = cache.fetch_rev(&up.url(), &up.main_first).unwrap();
    assert_eq!(again, id(&up.main_first));

    let absent = "1234567890123456789012345678901234567890";
    let err = cache.fetch_rev(&up.url(), absent).unwrap_err();
    assert!(
        matches!(err, SourceError::CommitNotFound { ref commit, .. } if commit == absent),
        "{err}"
    );
    assert!(err.to_string().contains(absent));
    drop(mirror);
}

#[test]
fn source_commit_id_on_a_remote_without_matching_refs_is_not_found() {
    let up = Upstream::new();
    // Only a ref outside heads/tags/changes remains: the globs match nothing at all.
    git(&up.dir, &["update-ref", "refs/meta/config", &up.main]);
    git(&up.dir, &["checkout", "-q", "--detach"]);
    git(&up.dir, &["branch", "-q", "-D", "main"]);
    git(&up.dir, &["update-ref", "-d", "refs/changes/01/1/1"]);
    let tmp = TempDir::new().unwrap();
    let cache = SourceCache::new(tmp.path());
    let err = cache.fetch_rev(&up.url(), &up.main).unwrap_err();
    assert!(matches!(err, SourceError::CommitNotFound { .. }), "{err:?}");
}

#[test]
fn source_missing_ref_is_named_in_the_error() {
    let up = Upstream::new();
    let tmp = TempDir::new().unwrap();
    let cache = SourceCache::new(tmp.path());
    let err = cache
        .fetch_rev(&up.url(), "refs/changes/99/99/9")
        .unwrap_err();
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("refs/changes/99/99/9"), "{err}");

    let err = cache.fetch_rev(&up.url(), "no-such-branch").unwrap_err();
    assert!(
        err.to_string().contains("refs/heads/no-such-branch"),
        "{err}"
    );

    // Every exact refspec must match, even when another one does.
    let err = cache
        .fetch(
            &up.url(),
            &[
                "+refs/heads/main:refs/heads/main".to_owned(),
                "+refs/heads/gone:refs/heads/gone".to_owned(),
            ],
        )
        .unwrap_err();
    assert!(err.to_string().contains("refs/heads/gone"), "{err}");
    assert!(!err.to_string().contains("refs/heads/main"), "{err}");
}

#[test]
fn source_rejects_bad_input() {
    let tmp = TempDir::new().unwrap();
    let cache = SourceCache::new(tmp.path());
    let err = cache
        .fetch_rev("/nonexistent", "refs/heads/a:refs/x")
        .unwrap_err();
    assert!(matches!(err, SourceError::InvalidRev { .. }), "{err:?}");
    let err = cache
        .fetch_rev("--upload-pack=touch /tmp/x", "main")
        .unwrap_err();
    assert!(matches!(err, SourceError::InvalidUrl { .. }), "{err:?}");
    let err = cache.fetch("/nonexistent", &[]).unwrap_err();
    assert!(matches!(err, SourceError::NoRefspecs { .. }), "{err:?}");
    let err = cache
        .fetch("/nonexistent", &["refs/heads/*:refs/x".to_owned()])
        .unwrap_err();
    assert!(matches!(err, SourceError::InvalidRefspec { .. }), "{err:?}");
}

#[test]
fn source_incremental_fetch_picks_up_new_commit() {
    let up = Upstream::new();
    let tmp = TempDir::new().unwrap();
    let cache = SourceCache::new(tmp.path());
    let (mirror, first) = cache.fetch_rev(&up.url(), "main").unwrap();
    assert_eq!(first, id(&up.main));
    let before = pack_indices(mirror.path());
    let total_before: usize = before.iter().map(|p| objects_in_pack(p)).sum();

    fs::write(up.dir.join("NEW.txt"), "new\n").unwrap();
    git(&up.dir, &["add", "."]);
    git(&up.dir, &["commit", "-q", "-m", "third"]);
    let third = git(&up.dir, &["rev-parse", "HEAD"]);

    let (mirror, second) = cache.fetch_rev(&up.url(), "main").unwrap();
    assert_eq!(second, id(&third));
    let after = pack_indices(mirror.path());
    let new: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(new.len(), 1, "one new pack: {after:?}");
    let new_objects = objects_in_pack(new[0]);
    // commit + root tree + blob; never the whole history again.
    assert!(
        new_objects < total_before,
        "{new_objects} vs {total_before}"
    );
    assert!(new_objects <= 4, "{new_objects}");

    // Nothing new: no pack at all.
    let (mirror, third_again) = cache.fetch_rev(&up.url(), "main").unwrap();
    assert_eq!(third_again, second);
    assert_eq!(pack_indices(mirror.path()), after);
}

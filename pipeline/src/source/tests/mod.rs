//! Tests of the source module, and the scratch repositories and `git` helpers they share.

mod cache;
mod error;
mod materialise;
mod mirror;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::{CommitId, Mirror, SourceCache, SourceError};

/// Run `git` in `dir` with a fixed identity and dates, independent of global configuration.
fn git(dir: &Path, args: &[&str]) -> String {
    git_with_input(dir, args, None)
}

fn git_with_input(dir: &Path, args: &[&str], input: Option<&[u8]>) -> String {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args([
            "-c",
            "user.name=Test Author",
            "-c",
            "user.email=author@example.com",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_DATE", "2021-02-03T04:05:06Z")
        .env("GIT_COMMITTER_DATE", "2021-02-03T04:05:06Z")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = input {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// An upstream work repository with `main` (two commits) and a change ref on top of it.
struct Upstream {
    _tmp: TempDir,
    dir: PathBuf,
    main_first: String,
    main: String,
    change: String,
}

impl Upstream {
    fn new() -> Upstream {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("upstream");
        fs::create_dir(&dir).unwrap();
        git(&dir, &["init", "-q"]);
        fs::write(dir.join("README.md"), "hello\n").unwrap();
        git(&dir, &["add", "."]);
        git(&dir, &["commit", "-q", "-m", "first commit\n\nbody text"]);
        let main_first = git(&dir, &["rev-parse", "HEAD"]);
        fs::create_dir_all(dir.join("src/bin")).unwrap();
        fs::write(dir.join("src/lib.rs"), "pub fn f() {}\n").unwrap();
        fs::write(dir.join("src/bin/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
        git(&dir, &["add", "."]);
        git(&dir, &["update-index", "--chmod=+x", "src/bin/run.sh"]);
        std::os::unix::fs::symlink("src/lib.rs", dir.join("link")).unwrap();
        git(&dir, &["add", "link"]);
        git(&dir, &["commit", "-q", "-m", "second commit"]);
        let main = git(&dir, &["rev-parse", "HEAD"]);
        // The change: a commit on top of main that only exists under refs/changes.
        git(&dir, &["checkout", "-q", "-b", "change"]);
        fs::create_dir_all(dir.join(".pipeline")).unwrap();
        fs::write(dir.join(".pipeline/config.yaml"), "jobs:\n  build: {}\n").unwrap();
        git(&dir, &["add", "."]);
        git(&dir, &["commit", "-q", "-m", "add pipeline"]);
        let change = git(&dir, &["rev-parse", "HEAD"]);
        git(&dir, &["update-ref", "refs/changes/01/1/1", &change]);
        git(&dir, &["checkout", "-q", "main"]);
        git(&dir, &["branch", "-q", "-D", "change"]);
        Upstream {
            _tmp: tmp,
            dir,
            main_first,
            main,
            change,
        }
    }

    fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }
}

fn id(hex: &str) -> CommitId {
    hex.parse().unwrap()
}

#[test]
fn source_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Mirror>();
    check::<SourceCache>();
    check::<SourceError>();
    check::<CommitId>();
}

#[test]
fn source_commit_id_round_trips() {
    let hex = "0123456789abcdef0123456789abcdef01234567";
    let parsed: CommitId = hex.parse().unwrap();
    assert_eq!(parsed.to_string(), hex);
    assert!(matches!(
        "0123".parse::<CommitId>(),
        Err(SourceError::InvalidCommitId { .. })
    ));
    assert!(
        "zz23456789abcdef0123456789abcdef01234567"
            .parse::<CommitId>()
            .is_err()
    );
}

//! Git fixtures for end-to-end tests: a real `git daemon` on 127.0.0.1 and sample repositories
//! built with the `git` command line.
//!
//! Everything here panics on failure (it only ever runs inside tests); panic messages carry
//! git's stderr so a failing fixture explains itself.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Committer and author time of the first commit a [`SampleRepo`] makes (2023-11-14T22:13:20Z).
/// Each further commit is one minute later, so histories are reproducible to the commit id.
pub const BASE_EPOCH: i64 = 1_700_000_000;

/// A `git` command isolated from the machine's system and global configuration, with a fixed
/// identity.
pub fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Sample Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Sample Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ]);
    cmd
}

/// Run `git args` in `dir` (isolated as [`git_command`]) and return its trimmed stdout.
/// Panics with git's stderr if it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    run(git_command(dir).args(args), args, None)
}

/// Like [`git`], feeding `input` on stdin.
pub fn git_with_input(dir: &Path, args: &[&str], input: &[u8]) -> String {
    run(git_command(dir).args(args), args, Some(input))
}

fn run(cmd: &mut Command, args: &[&str], input: Option<&[u8]>) -> String {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run git {args:?}: {err}"));
    if let Some(input) = input
        && let Some(mut stdin) = child.stdin.take()
    {
        stdin
            .write_all(input)
            .unwrap_or_else(|err| panic!("cannot write to git {args:?}: {err}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|err| panic!("cannot wait for git {args:?}: {err}"));
    assert!(
        out.status.success(),
        "git {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Create the bare repository `dir/name.git` with `HEAD` pointing at `refs/heads/main`, and
/// return its path.
pub fn init_bare(dir: &Path, name: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
    let path = dir.join(format!("{}.git", name.trim_end_matches(".git")));
    let path_str = path.to_string_lossy().into_owned();
    git(dir, &["init", "-q", "--bare", &path_str]);
    git(&path, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    path
}

/// Objects stored in a repository (loose plus packed), from `git count-objects -v`.
pub fn count_objects(git_dir: &Path) -> u64 {
    let out = git(git_dir, &["count-objects", "-v"]);
    out.lines()
        .filter_map(|line| line.split_once(": "))
        .filter(|(key, _)| *key == "count" || *key == "in-pack")
        .map(|(key, value)| {
            value
                .trim()
                .parse::<u64>()
                .unwrap_or_else(|err| panic!("bad count-objects line {key}: {value}: {err}"))
        })
        .sum()
}

/// Distinct objects in a repository. Unlike [`count_objects`], an object stored in two packs
/// (a thin pack's delta base appended when it was completed, say) counts once.
pub fn distinct_objects(git_dir: &Path) -> u64 {
    let out = git(
        git_dir,
        &[
            "cat-file",
            "--batch-all-objects",
            "--batch-check=%(objectname)",
        ],
    );
    let ids: std::collections::HashSet<&str> = out.lines().collect();
    ids.len() as u64
}

/// Every file and symlink under `dir`, by slash-separated relative path. Directories are
/// implied by their contents.
pub fn snapshot_dir(dir: &Path) -> BTreeMap<String, Entry> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
        let entries =
            fs::read_dir(dir).unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|err| panic!("cannot list {}: {err}", dir.display()));
            let path = entry.path();
            let meta = fs::symlink_metadata(&path)
                .unwrap_or_else(|err| panic!("cannot stat {}: {err}", path.display()));
            let rel = path
                .strip_prefix(root)
                .unwrap_or_else(|err| {
                    panic!("{} outside {}: {err}", path.display(), root.display())
                })
                .to_string_lossy()
                .into_owned();
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path)
                    .unwrap_or_else(|err| panic!("cannot read link {}: {err}", path.display()));
                out.insert(rel, Entry::Symlink(target.to_string_lossy().into_owned()));
            } else if meta.is_dir() {
                walk(root, &path, out);
            } else {
                let contents = fs::read(&path)
                    .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
                out.insert(
                    rel,
                    Entry::File {
                        contents,
                        mode: meta.permissions().mode() & 0o777,
                    },
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A file system entry recorded by [`snapshot_dir`] or expected by a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A regular file.
    File {
        /// Its bytes.
        contents: Vec<u8>,
        /// Permission bits (`0o644`, `0o755`).
        mode: u32,
    },
    /// A symbolic link.
    Symlink(String),
}

/// A `git daemon` serving every repository under a base path on 127.0.0.1, with pushes
/// enabled. Killed and reaped on drop.
pub struct GitDaemon {
    child: Child,
    port: u16,
    base_path: PathBuf,
    log: PathBuf,
}

impl GitDaemon {
    /// Start a daemon serving `base_path` on a free port and wait until it accepts connections.
    pub fn start(base_path: impl AsRef<Path>) -> GitDaemon {
        let base_path = base_path.as_ref().to_path_buf();
        let mut last_log = String::new();
        // The port is free when we look but may be taken before git binds it; try a few.
        for attempt in 0..10 {
            let port = free_port();
            let log = base_path.with_file_name(format!(
                "git-daemon-{}-{port}-{attempt}.log",
                std::process::id()
            ));
            let log_file = fs::File::create(&log)
                .unwrap_or_else(|err| panic!("cannot create {}: {err}", log.display()));
            let base = base_path.to_string_lossy().into_owned();
            let child = daemon_command(&base_path)
                .args([
                    "--reuseaddr",
                    "--listen=127.0.0.1",
                    &format!("--port={port}"),
                    &format!("--base-path={base}"),
                    "--export-all",
                    "--enable=receive-pack",
                    "--informative-errors",
                    &base,
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                // A file, not a pipe: nobody reads the daemon's chatter while it runs, and a
                // full pipe would block it.
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|err| panic!("cannot start git daemon: {err}"));
            let mut daemon = GitDaemon {
                child,
                port,
                base_path: base_path.clone(),
                log,
            };
            if daemon.wait_until_ready(Duration::from_secs(10)) {
                return daemon;
            }
            last_log = daemon.log_text();
            // Drop kills and reaps this attempt.
        }
        panic!("git daemon did not start after 10 attempts; last log:\n{last_log}");
    }

    /// `git://127.0.0.1:PORT/name.git` for the repository `name` under the base path.
    pub fn url(&self, repo_name: &str) -> String {
        format!(
            "git://127.0.0.1:{}/{}.git",
            self.port,
            repo_name.trim_end_matches(".git")
        )
    }

    /// The TCP port the daemon listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory served.
    pub fn base_path(&self) -> &Path {
        &self.base_path
    }

    /// What the daemon wrote to stderr so far (useful in assertion messages).
    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    fn wait_until_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // Exited: most likely the port was taken in the meantime.
                return false;
            }
            if TcpStream::connect_timeout(
                &([127, 0, 0, 1], self.port).into(),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                // Something accepts; make sure it is our daemon and not a port thief.
                return matches!(self.child.try_wait(), Ok(None));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.log);
    }
}

/// `git-daemon` itself, not `git daemon`: the latter is a wrapper process that runs the daemon
/// as its child, so killing it would orphan the daemon that holds the port.
fn daemon_command(dir: &Path) -> Command {
    let exec_path = git(dir, &["--exec-path"]);
    // Same isolated environment as every other git call, but a different program.
    let envs: Vec<_> = git_command(dir)
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())))
        .collect();
    let mut cmd = Command::new(Path::new(&exec_path).join("git-daemon"));
    cmd.current_dir(dir).envs(envs);
    cmd
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|err| panic!("cannot bind a free port on 127.0.0.1: {err}"));
    listener
        .local_addr()
        .unwrap_or_else(|err| panic!("cannot read the bound port: {err}"))
        .port()
}

/// A work repository for building sample histories: write files, commit with fixed dates, and
/// push commits to any ref of a remote.
///
/// Commit `n` (counting from 0) is authored and committed at [`BASE_EPOCH`]` + 60 * n`, so the
/// same sequence of calls always produces the same commit ids.
pub struct SampleRepo {
    dir: PathBuf,
    commits: Cell<i64>,
}

impl SampleRepo {
    /// Initialise a work repository in `dir` (created if missing) on branch `main`.
    pub fn init(dir: impl AsRef<Path>) -> SampleRepo {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
        git(&dir, &["init", "-q"]);
        SampleRepo {
            dir,
            commits: Cell::new(0),
        }
    }

    /// The work tree.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write a regular (0644) file at `path` (slash-separated, parents created) and stage it.
    pub fn write(&self, path: &str, contents: impl AsRef<[u8]>) -> &Self {
        self.write_mode(path, contents.as_ref(), false)
    }

    /// Write an executable (0755) file at `path` and stage it.
    pub fn write_exec(&self, path: &str, contents: impl AsRef<[u8]>) -> &Self {
        self.write_mode(path, contents.as_ref(), true)
    }

    /// Write a file, executable or not, and stage it.
    pub fn write_mode(&self, path: &str, contents: &[u8], executable: bool) -> &Self {
        let full = self.dir.join(path);
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|err| panic!("cannot create {}: {err}", parent.display()));
        }
        fs::write(&full, contents)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", full.display()));
        let mode = if executable { 0o755 } else { 0o644 };
        fs::set_permissions(&full, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|err| panic!("cannot chmod {}: {err}", full.display()));
        git(&self.dir, &["add", "--", path]);
        // Be explicit in the index too, whatever core.fileMode says.
        let chmod = if executable {
            "--chmod=+x"
        } else {
            "--chmod=-x"
        };
        git(&self.dir, &["update-index", chmod, "--", path]);
        self
    }

    /// Create a symlink at `path` pointing at `target` and stage it.
    pub fn symlink(&self, path: &str, target: &str) -> &Self {
        let full = self.dir.join(path);
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|err| panic!("cannot create {}: {err}", parent.display()));
        }
        std::os::unix::fs::symlink(target, &full)
            .unwrap_or_else(|err| panic!("cannot symlink {}: {err}", full.display()));
        git(&self.dir, &["add", "--", path]);
        self
    }

    /// Delete `path` from the work tree and the index.
    pub fn remove(&self, path: &str) -> &Self {
        git(&self.dir, &["rm", "-q", "-r", "--", path]);
        self
    }

    /// Commit what is staged (empty commits allowed) and return the commit id.
    pub fn commit(&self, message: &str) -> String {
        let n = self.commits.get();
        self.commits.set(n + 1);
        let date = format!("{} +0000", BASE_EPOCH + 60 * n);
        run(
            git_command(&self.dir)
                .env("GIT_AUTHOR_DATE", &date)
                .env("GIT_COMMITTER_DATE", &date)
                .args(["commit", "-q", "--allow-empty", "-m", message]),
            &["commit", message],
            None,
        );
        self.head()
    }

    /// The commit id of `HEAD`.
    pub fn head(&self) -> String {
        git(&self.dir, &["rev-parse", "HEAD"])
    }

    /// Push `commit` (an id or any revision) to `full_ref` (e.g. `refs/heads/main` or
    /// `refs/changes/01/1/1`) of `remote` (a URL or path), forcing.
    pub fn push(&self, remote: &str, commit: &str, full_ref: &str) {
        let spec = format!("+{commit}:{full_ref}");
        git(&self.dir, &["push", "-q", remote, &spec]);
    }

    /// Commit and push `HEAD` to `full_ref` of `remote`; returns the commit id.
    pub fn commit_and_push(&self, message: &str, remote: &str, full_ref: &str) -> String {
        let id = self.commit(message);
        self.push(remote, &id, full_ref);
        id
    }

    /// Move the work tree and `HEAD` to `rev` (detached), e.g. to build the next patchset of a
    /// change on top of the same parent.
    pub fn reset_to(&self, rev: &str) -> &Self {
        git(&self.dir, &["checkout", "-q", "--detach", rev]);
        self
    }

    /// Run any git command in the work tree and return its stdout.
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.dir, args)
    }
}

//! `airlock_pipeline::source` against a real `git daemon` on 127.0.0.1: Gerrit-style change
//! refs fetched over `git://`, read and written out without any git checkout.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use airlock_pipeline::source::{CommitId, SourceCache, SourceError};
use airlock_tests::git::{self, BASE_EPOCH, Entry, GitDaemon, SampleRepo};
use tempfile::TempDir;

const PIPELINE_V1: &str = "\
# Airlock pipeline
jobs:
  build:
    image: busybox
    run: ./scripts/build.sh
  test:
    needs: [build]
    run: echo \"tests: ok\"
";

const PIPELINE_V2: &str = "\
jobs:
  build:
    image: busybox
    run: ./scripts/build.sh --release
";

/// A served bare repository with `refs/heads/main` and the change `refs/changes/01/1/1`.
struct Fixture {
    // Fields drop in order: stop the daemon before its directory is deleted.
    daemon: GitDaemon,
    work: SampleRepo,
    url: String,
    main: String,
    change: String,
    tmp: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = TempDir::new().unwrap();
        let served = tmp.path().join("srv");
        git::init_bare(&served, "sample");
        let daemon = GitDaemon::start(&served);
        let url = daemon.url("sample");

        let work = SampleRepo::init(tmp.path().join("work"));
        work.write("README.md", "# Sample\n")
            .write("src/main.rs", "fn main() {\n    println!(\"hi\");\n}\n")
            .write("docs/guide/intro.md", "Intro\n")
            .write_exec("scripts/build.sh", "#!/bin/sh\nset -eu\necho building\n")
            .symlink("docs/latest", "guide/intro.md");
        let main = work.commit_and_push("Initial import", &url, "refs/heads/main");

        work.write(".pipeline/config.yaml", PIPELINE_V1);
        let change = work.commit_and_push(
            "Add pipeline\n\nChange-Id: I0001",
            &url,
            "refs/changes/01/1/1",
        );

        Fixture {
            daemon,
            work,
            url,
            main,
            change,
            tmp,
        }
    }

    fn cache(&self, name: &str) -> SourceCache {
        SourceCache::new(self.tmp.path().join(name))
    }

    fn dest(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

fn id(hex: &str) -> CommitId {
    hex.parse().unwrap()
}

#[test]
fn change_ref_is_fetched_over_git_protocol_and_pipeline_file_read_from_tree() {
    let fx = Fixture::new();
    let cache = fx.cache("cache");
    let (mirror, commit) = cache.fetch_rev(&fx.url, "refs/changes/01/1/1").unwrap();
    assert_eq!(
        commit,
        id(&fx.change),
        "daemon log:\n{}",
        fx.daemon.log_text()
    );
    assert_eq!(mirror.path(), cache.mirror_path(&fx.url));
    assert_eq!(
        mirror.ref_target("refs/changes/01/1/1").unwrap(),
        Some(commit)
    );

    let yaml = mirror
        .read_file(&commit, ".pipeline/config.yaml", 64 * 1024)
        .unwrap()
        .expect("pipeline file present");
    assert_eq!(yaml, PIPELINE_V1.as_bytes());
    // The parent (main) has no pipeline file.
    assert_eq!(
        mirror
            .read_file(&id(&fx.main), ".pipeline/config.yaml", 64 * 1024)
            .unwrap(),
        None
    );
    assert!(matches!(
        mirror.read_file(&commit, ".pipeline/config.yaml", 10),
        Err(SourceError::FileTooLarge { .. })
    ));

    let summary = mirror.commit_summary(&commit).unwrap();
    assert_eq!(summary.subject, "Add pipeline");
    assert_eq!(summary.author, "Sample Author <author@example.com>");
    assert_eq!(mirror.commit_time(&commit).unwrap(), BASE_EPOCH + 60);
    assert!(mirror.is_ancestor(&id(&fx.main), &commit).unwrap());
    assert!(!mirror.is_ancestor(&commit, &id(&fx.main)).unwrap());
    assert_eq!(
        mirror.resolve("refs/changes/01/1/1~1").unwrap(),
        id(&fx.main)
    );
}

#[test]
fn materialised_tree_matches_the_commit() {
    let fx = Fixture::new();
    let cache = fx.cache("cache");
    let (mirror, commit) = cache.fetch_rev(&fx.url, "refs/changes/01/1/1").unwrap();
    let dest = fx.dest("checkout");
    let stats = mirror.materialise(&commit, &dest).unwrap();

    let file = |text: &str, mode| Entry::File {
        contents: text.as_bytes().to_vec(),
        mode,
    };
    let expected: BTreeMap<String, Entry> = [
        (".pipeline/config.yaml", file(PIPELINE_V1, 0o644)),
        ("README.md", file("# Sample\n", 0o644)),
        ("docs/guide/intro.md", file("Intro\n", 0o644)),
        ("docs/latest", Entry::Symlink("guide/intro.md".to_owned())),
        (
            "scripts/build.sh",
            file("#!/bin/sh\nset -eu\necho building\n", 0o755),
        ),
        (
            "src/main.rs",
            file("fn main() {\n    println!(\"hi\");\n}\n", 0o644),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let actual = git::snapshot_dir(&dest);
    assert_eq!(actual, expected);

    // Cross-check the path list against git's own view of the commit.
    let listed: Vec<String> = fx
        .work
        .git(&["ls-tree", "-r", "--name-only", &fx.change])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(listed, actual.keys().cloned().collect::<Vec<_>>());

    assert_eq!(stats.files, 6);
    let bytes: usize = expected
        .values()
        .map(|e| match e {
            Entry::File { contents, .. } => contents.len(),
            Entry::Symlink(target) => target.len(),
        })
        .sum();
    assert_eq!(stats.bytes, bytes as u64);
}

#[test]
fn second_patchset_fetch_is_incremental() {
    let fx = Fixture::new();
    let cache = fx.cache("cache");
    let (mirror, ps1) = cache.fetch_rev(&fx.url, "refs/changes/01/1/1").unwrap();
    assert_eq!(ps1, id(&fx.change));
    let stored_before = git::count_objects(mirror.path());
    let distinct_before = git::distinct_objects(mirror.path());

    // Patchset 2: the same change amended, again on top of main.
    fx.work
        .reset_to(&fx.main)
        .write(".pipeline/config.yaml", PIPELINE_V2);
    let ps2 = fx.work.commit_and_push(
        "Add pipeline\n\nChange-Id: I0001",
        &fx.url,
        "refs/changes/01/1/2",
    );
    assert_ne!(ps2, fx.change);

    let (mirror, resolved) = cache.fetch_rev(&fx.url, "refs/changes/01/1/2").unwrap();
    assert_eq!(resolved, id(&ps2));
    // New: commit, root tree, .pipeline tree, config blob. Nothing of main is sent again.
    let new = git::distinct_objects(mirror.path()) - distinct_before;
    assert_eq!(new, 4, "new distinct objects (had {distinct_before})");
    // The received pack may repeat a delta base or two when it is completed ("thin pack"),
    // but it is far from the whole history.
    let stored = git::count_objects(mirror.path()) - stored_before;
    assert!(
        stored < 8 && stored < stored_before,
        "{stored} objects stored (had {stored_before})"
    );

    assert_eq!(
        mirror
            .read_file(&resolved, ".pipeline/config.yaml", 4096)
            .unwrap()
            .unwrap(),
        PIPELINE_V2.as_bytes()
    );
    // Patchset 1 is still there and resolvable.
    assert_eq!(mirror.ref_target("refs/changes/01/1/1").unwrap(), Some(ps1));
    assert!(!mirror.is_ancestor(&ps1, &resolved).unwrap());
    assert!(mirror.is_ancestor(&id(&fx.main), &resolved).unwrap());
}

#[test]
fn fetch_by_commit_id() {
    let fx = Fixture::new();
    let cache = fx.cache("cache");
    // Reachable only through the change ref.
    let (mirror, commit) = cache.fetch_rev(&fx.url, &fx.change).unwrap();
    assert_eq!(commit, id(&fx.change));
    assert!(
        mirror
            .read_file(&commit, ".pipeline/config.yaml", 4096)
            .unwrap()
            .is_some()
    );

    let (_, main) = fx.cache("other").fetch_rev(&fx.url, &fx.main).unwrap();
    assert_eq!(main, id(&fx.main));

    let absent = "0123456789abcdef0123456789abcdef01234567";
    let err = cache.fetch_rev(&fx.url, absent).unwrap_err();
    assert!(matches!(err, SourceError::CommitNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains(absent), "{err}");
}

#[test]
fn fetch_of_missing_ref_names_it() {
    let fx = Fixture::new();
    let cache = fx.cache("cache");
    let err = cache.fetch_rev(&fx.url, "refs/changes/01/1/9").unwrap_err();
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("refs/changes/01/1/9"), "{message}");
    assert!(message.contains(&fx.url), "{message}");

    let err = cache.fetch_rev(&fx.url, "no-such-branch").unwrap_err();
    assert!(
        err.to_string().contains("refs/heads/no-such-branch"),
        "{err}"
    );

    // A repository the daemon does not serve.
    let err = cache
        .fetch_rev(&fx.daemon.url("missing"), "main")
        .unwrap_err();
    assert!(err.to_string().contains("missing.git"), "{err}");
}

#[test]
fn branch_fetch_over_git_protocol() {
    let fx = Fixture::new();
    let cache = fx.cache("cache");
    let (mirror, main) = cache.fetch_rev(&fx.url, "main").unwrap();
    assert_eq!(main, id(&fx.main));
    assert_eq!(mirror.commit_time(&main).unwrap(), BASE_EPOCH);
    // Nothing else came along.
    assert_eq!(mirror.ref_target("refs/changes/01/1/1").unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_from_async_context_via_spawn_blocking() {
    let fx = Fixture::new();
    let cache = fx.cache("cache");
    let url = fx.url.clone();
    let (mirror, commit) =
        tokio::task::spawn_blocking(move || cache.fetch_rev(&url, "refs/changes/01/1/1"))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(commit, id(&fx.change));
    let yaml = tokio::task::spawn_blocking(move || {
        mirror.read_file(&commit, ".pipeline/config.yaml", 4096)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(yaml.as_deref(), Some(PIPELINE_V1.as_bytes()));
}

/// Runs `fetch` on a thread and gives up waiting after `within`: a fetch that hangs fails the
/// test instead of hanging it.
fn fetch_within(
    cache: SourceCache,
    url: String,
    within: std::time::Duration,
) -> Result<(), SourceError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = cache
            .fetch(&url, &["+refs/heads/main:refs/heads/main".to_string()])
            .map(|_| ());
        let _ = tx.send(result);
    });
    rx.recv_timeout(within)
        .unwrap_or_else(|_| panic!("the fetch still hangs after {within:?}"))
}

/// Issue 19: a Git server that accepts the connection and then sends nothing cannot hold a
/// fetch (and with it a run, the builder's loop or the reconciler's) forever.
#[test]
fn a_git_server_that_stalls_fails_the_fetch_at_the_read_timeout() {
    use airlock_pipeline::source::FetchLimits;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for socket in listener.incoming() {
            held.push(socket); // read nothing, answer nothing
        }
    });
    let tmp = TempDir::new().unwrap();
    let limits = FetchLimits {
        read_timeout: std::time::Duration::from_secs(1),
        ..FetchLimits::default()
    };
    let cache = SourceCache::new(tmp.path().join("cache")).with_limits(limits);
    let err = fetch_within(
        cache,
        format!("git://127.0.0.1:{port}/sample"),
        std::time::Duration::from_secs(30),
    )
    .expect_err("a silent server");
    assert!(
        err.to_string()
            .contains("the git server sent nothing for 1s"),
        "{err}"
    );

    // One that trickles a byte at a time, each within the read timeout, ends at the deadline.
    let trickle = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let trickle_port = trickle.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for socket in trickle.incoming() {
            let Ok(mut socket) = socket else { continue };
            std::thread::spawn(move || {
                use std::io::Write as _;
                // A pkt-line of 4096 bytes announced, its body a byte every 300 ms.
                let _ = socket.write_all(b"1004");
                while socket.write_all(b"a").is_ok() {
                    std::thread::sleep(std::time::Duration::from_millis(300));
                }
            });
        }
    });
    let limits = FetchLimits {
        read_timeout: std::time::Duration::from_secs(1),
        deadline: std::time::Duration::from_secs(2),
        ..FetchLimits::default()
    };
    let cache = SourceCache::new(tmp.path().join("trickle")).with_limits(limits);
    let err = fetch_within(
        cache,
        format!("git://127.0.0.1:{trickle_port}/sample"),
        std::time::Duration::from_secs(30),
    )
    .expect_err("a trickling server");
    assert!(err.to_string().contains("took longer than 2s"), "{err}");

    // And one that sends more than a fetch may take is cut off (the real daemon, a tiny cap);
    // control: the same fetch within the default bounds.
    let fx = Fixture::new();
    let small = FetchLimits {
        max_bytes: 512,
        ..FetchLimits::default()
    };
    let cache = SourceCache::new(fx.tmp.path().join("capped")).with_limits(small);
    let err = fetch_within(cache, fx.url.clone(), std::time::Duration::from_secs(30))
        .expect_err("over the byte cap");
    assert!(err.to_string().contains("more than 512 bytes"), "{err}");
    let cache = SourceCache::new(fx.tmp.path().join("plain"));
    fetch_within(cache, fx.url.clone(), std::time::Duration::from_secs(30)).expect("fetches");
}

//! gix fetch of a Gerrit change ref into a fresh mirror, against `git fetch`
//! of the same ref into a fresh bare repository, from the same `git daemon`.

use std::process::Command;
use std::time::{Duration, Instant};

use airlock_pipeline::source::SourceCache;
use airlock_tests::git::{GitDaemon, SampleRepo, init_bare};

const ROUNDS: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let tmp = tempfile::tempdir().expect("tmp");
    let served = tmp.path().join("served");
    let bare = init_bare(&served, "bench");
    let repo = SampleRepo::init(tmp.path().join("work"));
    // 300 commits touching 50 files of a few KiB: a small but real history.
    for c in 0..300 {
        for f in 0..3 {
            let n = (c * 7 + f) % 50;
            repo.write(
                &format!("src/file{n}.txt"),
                format!("commit {c} file {n}\n").repeat(200),
            );
        }
        repo.commit(&format!("commit {c}"));
    }
    let head = repo.head();
    repo.push(&bare.display().to_string(), &head, "refs/changes/01/1/1");
    let daemon = GitDaemon::start(&served);
    let url = daemon.url("bench");

    let mut gix_times = Vec::new();
    let mut git_times = Vec::new();
    for round in 0..ROUNDS {
        let cache = tmp.path().join(format!("cache{round}"));
        let t = Instant::now();
        let (_, commit) = SourceCache::new(&cache)
            .fetch_rev(&url, "refs/changes/01/1/1")
            .expect("gix fetch");
        gix_times.push(t.elapsed());
        assert_eq!(commit.to_string(), head);

        let dest = tmp.path().join(format!("git{round}"));
        let t = Instant::now();
        let init = Command::new("git")
            .args(["init", "-q", "--bare"])
            .arg(&dest)
            .status()
            .expect("git init");
        let fetch = Command::new("git")
            .arg("-C")
            .arg(&dest)
            .args([
                "fetch",
                "-q",
                &url,
                "+refs/changes/01/1/1:refs/changes/01/1/1",
            ])
            .status()
            .expect("git fetch");
        git_times.push(t.elapsed());
        assert!(init.success() && fetch.success());
    }
    let (g, c) = (median(gix_times), median(git_times));
    println!(
        "fetch of refs/changes/01/1/1 (300 commits) from git daemon, fresh mirror, median of {ROUNDS}"
    );
    println!(
        "  gix (SourceCache::fetch_rev): {:>8.1} ms",
        g.as_secs_f64() * 1e3
    );
    println!(
        "  git init --bare + git fetch:  {:>8.1} ms",
        c.as_secs_f64() * 1e3
    );
    println!(
        "  ratio gix / git:              {:>8.2}",
        g.as_secs_f64() / c.as_secs_f64()
    );
}

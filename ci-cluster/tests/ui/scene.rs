//! What the UI tests look at: the shared [`World`] and `ci-cluster serve`
//! with projects `greet` and `docs`, one passed run (the sample service on
//! change 1, its vote sent), one failed run (change 3) and one running run
//! (change 2, whose job follows a file in its workspace). Everything started
//! here is stopped by a `Drop`, so a failing assertion leaves nothing behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::support::{
    Config, Project, Server, World, fetch_get, gerrit_headers, patchset_created, post, reviews,
};

/// Markup a change title and a log line carry; it must render as text.
pub const HOSTILE_TITLE: &str =
    "greet: <script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">";

/// The running job: prints, then follows `live.txt` in its workspace until
/// the file holds a line `stop`.
pub const LIVE_PIPELINE: &str = r#"version: 1
jobs:
  live:
    timeout: 5m
    run: |
      echo started
      printf '\033[32mgreen text\033[0m and \033[1;31mbold red\033[0m\n'
      echo '<script>window.__pwned=3</script><img src=x onerror="window.__pwned=4">'
      touch live.txt
      tail -s 0.1 -f live.txt &
      while ! grep -qx stop live.txt; do sleep 0.1; done
      sleep 0.3
      kill $!
"#;

/// A failing run: one job passes, one fails, one is skipped because of it.
pub const FAILING_PIPELINE: &str = r#"version: 1
jobs:
  lint:
    run: echo "lint ok"
  unit:
    run: |
      echo "running 2 tests"
      printf 'test greet_world ... \033[32mok\033[0m\n'
      printf 'test greet_name ... \033[1;31mFAILED\033[0m\n'
      echo "expected 'Hello, Airlock!', got 'Howdy, Airlock!'" >&2
      exit 1
  package:
    needs: [lint, unit]
    run: echo never
"#;

/// The server with a passed, a failed and a running run.
pub struct Scene {
    // Dropped in this order: the server before the forge and the daemon.
    pub server: Server,
    world: World,
    pub finished: i64,
    pub failed: i64,
    pub running: i64,
}

impl Scene {
    pub fn start() -> Scene {
        let world = World::new();
        let repo = &world.repo;
        let good = repo.head();
        world.push_change(1, 1, &good);
        repo.write(".pipeline/config.yaml", FAILING_PIPELINE);
        let failing_commit = repo.commit("unit: a failing test");
        world.push_change(3, 1, &failing_commit);
        repo.write(".pipeline/config.yaml", LIVE_PIPELINE);
        let live = repo.commit("follow a file");
        world.push_change(2, 1, &live);
        let server = Server::start(
            &world.config(
                Config::default()
                    .project(Project::gerrit("greet").with("concurrency = 2"))
                    .project(Project::gerrit("docs")),
            ),
        );

        let send = |change: u32, commit: &str, subject: &str| {
            let (status, reply) = post(
                &server.url("/hooks/gerrit"),
                &gerrit_headers(),
                &patchset_created(change, 1, commit, subject),
            );
            assert_eq!(status, 202, "{reply}");
            reply["run"].as_i64().expect("run id")
        };
        let finished = send(1, &good, HOSTILE_TITLE);
        assert_eq!(
            wait_status(&server, finished, &["passed", "failed", "error"]),
            "passed"
        );
        // The vote reached the forge, so the reports table shows "sent".
        world.wait_requests(
            "Verified vote",
            |r| !reviews(r).is_empty(),
            Duration::from_secs(30),
        );
        let failed = send(3, &failing_commit, "greet: break a test");
        assert_eq!(
            wait_status(&server, failed, &["passed", "failed", "error"]),
            "failed"
        );
        let running = send(2, &live, "greet: follow a file");
        let scene = Scene {
            server,
            world,
            finished,
            failed,
            running,
        };
        scene.wait_live_job_following();
        scene
    }

    /// Runs a future on the world's runtime (the browser's).
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.world.rt.block_on(future)
    }

    /// The live job's file, on the host.
    pub fn live_file(&self) -> PathBuf {
        self.world
            .root
            .join(format!("data/work/run-{}/jobs/live/live.txt", self.running))
    }

    /// Waits until the live job printed its first lines (stored) and follows its file.
    fn wait_live_job_following(&self) {
        let raw = self
            .server
            .url(&format!("/runs/{}/jobs/live/log.txt", self.running));
        self.server.wait_until(Duration::from_secs(90), || {
            let log = fetch_get(&raw).map(|r| r.body).unwrap_or_default();
            if self.live_file().exists() && log.contains("window.__pwned=3") {
                Ok(())
            } else {
                Err(format!("live job not following:\n{log}"))
            }
        });
    }

    /// Appends a line to the live job's file, as the job's own output would grow.
    pub fn append_live_line(&self, line: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.live_file())
            .expect("open live.txt");
        file.write_all(format!("{line}\n").as_bytes())
            .expect("append");
        file.sync_all().expect("sync");
    }
}

/// The run's status as the UI's raw pages can tell without the JSON API:
/// the status badge's word in the run page.
fn page_status(server: &Server, run: i64) -> String {
    let page = fetch_get(&server.url(&format!("/runs/{run}")))
        .map(|r| r.body)
        .unwrap_or_default();
    let Some(at) = page.find("id=\"run-status\"") else {
        return String::new();
    };
    let word = &page[at..];
    let start = word
        .find("<span class=\"word\">")
        .map(|i| i + 19)
        .unwrap_or(0);
    word[start..].split('<').next().unwrap_or("").to_string()
}

/// Waits up to 120 s until the run page shows one of `want`.
fn wait_status(server: &Server, run: i64, want: &[&str]) -> String {
    server.wait_until(Duration::from_secs(120), || {
        let status = page_status(server, run);
        if want.contains(&status.as_str()) {
            Ok(status)
        } else {
            Err(format!("run {run} is '{status}', wanted {want:?}"))
        }
    })
}

/// Where screenshots go: `ui-artifacts/` in cargo's scratch folder for tests (`target/tmp/`),
/// which outlives the checkout the tests ran from (scripts/test.sh runs them in a clone).
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

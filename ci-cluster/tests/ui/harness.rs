//! The world the UI tests look at: a real `git daemon`, the stand-in Gerrit,
//! the real `ci-cluster serve` with one finished run (the sample service
//! passing on change 1) and one running run (change 2, whose job follows a
//! file in its workspace). Adapted from `tests/serve.rs`; everything started
//! here is stopped by a `Drop`, so a failing assertion leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock_tests::forge::StandInForge;
use airlock_tests::git::{GitDaemon, SampleRepo, init_bare};
use airlock_tests::sample::sample_repo;
use serde_json::{Value, json};

pub const GERRIT_SECRET: &str = "gerrit-hook-secret";

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

/// A running `ci-cluster serve`, killed on drop.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    log: PathBuf,
}

impl Server {
    fn start(config: &Path, log: PathBuf) -> Server {
        let port = free_port();
        let text = std::fs::read_to_string(config)
            .expect("config")
            .replace("@PORT@", &port.to_string());
        std::fs::write(config, text).expect("config");
        let log_file = std::fs::File::create(&log).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_ci-cluster"))
            .args(["serve", "--config"])
            .arg(config)
            .env("AIRLOCK_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn ci-cluster serve");
        let server = Server {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let started = Instant::now();
        while get(&format!("{}/healthz", server.base)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server did not start:\n{}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The run's status as the UI's raw pages can tell without the JSON API:
    /// the status badge's word in the run page.
    pub fn status(&self, run: i64) -> String {
        let page = get(&format!("{}/runs/{run}", self.base))
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

    pub fn wait_status(&self, run: i64, want: &[&str], timeout: Duration) -> String {
        let started = Instant::now();
        loop {
            let status = self.status(run);
            if want.contains(&status.as_str()) {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "run {run} is '{status}', wanted {want:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A response: status, headers, body.
pub struct Fetched {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    pub bytes: Vec<u8>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
}

/// A plain GET (no browser).
pub fn get(url: &str) -> reqwest::Result<Fetched> {
    runtime().block_on(async {
        let resp = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let bytes = resp.bytes().await?.to_vec();
        Ok(Fetched {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
        })
    })
}

pub fn post(url: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
    runtime().block_on(async {
        let mut req = reqwest::Client::new()
            .post(url)
            .body(body.to_vec())
            .timeout(Duration::from_secs(10));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("post");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn patchset_created(change: u32, patchset: u32, commit: &str, subject: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "patchset-created",
        "change": {"project": "greet", "branch": "main", "number": change, "subject": subject, "owner": {"name": "Dev"}, "url": format!("http://gerrit.example/c/greet/+/{change}")},
        "patchSet": {"number": patchset, "revision": commit, "ref": format!("refs/changes/{:02}/{change}/{patchset}", change % 100), "uploader": {"name": "Dev Eloper"}},
        "uploader": {"name": "Dev Eloper"},
        "eventCreatedOn": 1700000000 + change * 10 + patchset
    }))
    .expect("json")
}

/// Git, the forge and the server, with a passed, a failed and a running run.
pub struct World {
    // Dropped in this order: the server before the forge and the daemon.
    pub server: Server,
    _forge: StandInForge,
    _daemon: GitDaemon,
    pub rt: tokio::runtime::Runtime,
    pub root: PathBuf,
    pub finished: i64,
    pub failed: i64,
    pub running: i64,
    _tmp: tempfile::TempDir,
}

impl World {
    pub fn start() -> World {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("rt");
        // Under /var/tmp like serve.rs: the sandbox user must traverse to its workspace.
        let tmp = tempfile::Builder::new()
            .prefix("airlock-ui-")
            .tempdir_in("/var/tmp")
            .expect("tmp");
        let root = tmp.path().to_path_buf();
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .expect("chmod");
        let bare = init_bare(&root.join("served"), "greet");
        let repo: SampleRepo = sample_repo(&root.join("repo"));
        let good = repo.head();
        let remote = bare.display().to_string();
        repo.push(&remote, &good, "refs/heads/main");
        repo.push(&remote, &good, "refs/changes/01/1/1");
        repo.write(".pipeline/config.yaml", FAILING_PIPELINE);
        let failing_commit = repo.commit("unit: a failing test");
        repo.push(&remote, &failing_commit, "refs/changes/03/3/1");
        repo.write(".pipeline/config.yaml", LIVE_PIPELINE);
        let live = repo.commit("follow a file");
        repo.push(&remote, &live, "refs/changes/02/2/1");
        let daemon = GitDaemon::start(root.join("served"));
        let forge = rt.block_on(StandInForge::start());

        for (name, value) in [
            ("gerrit-secret", GERRIT_SECRET),
            ("gerrit-password", "http-pw"),
        ] {
            std::fs::write(root.join(name), value).expect("secret");
        }
        let config = format!(
            r#"listen = "127.0.0.1:@PORT@"
data_dir = "{data}"
concurrency = 2

[forges.gerrit]
webhook_secret = {{ file = "{root}/gerrit-secret" }}
url = "{forge}"
user = "airlock-ci"
password = {{ file = "{root}/gerrit-password" }}

[[projects]]
name = "greet"
forge = "gerrit"
git_url = "{git}"
concurrency = 2

[[projects]]
name = "docs"
forge = "gerrit"
git_url = "{git}"
"#,
            data = root.join("data").display(),
            root = root.display(),
            forge = forge.url(),
            git = daemon.url("greet"),
        );
        std::fs::write(root.join("ci.toml"), config).expect("config");
        let server = Server::start(&root.join("ci.toml"), root.join("server.log"));

        let hook = format!("{}/hooks/gerrit", server.base);
        let headers = [
            ("authorization", format!("Bearer {GERRIT_SECRET}")),
            ("content-type", "application/json".into()),
        ];
        let (status, reply) = post(
            &hook,
            &headers,
            &patchset_created(1, 1, &good, HOSTILE_TITLE),
        );
        assert_eq!(status, 202, "{reply}");
        let finished = reply["run"].as_i64().expect("run id");
        assert_eq!(
            server.wait_status(
                finished,
                &["passed", "failed", "error"],
                Duration::from_secs(120)
            ),
            "passed"
        );
        // The vote reached the forge, so the reports table shows "sent".
        rt.block_on(forge.wait_for(
            |r| r.iter().any(|q| q.path.ends_with("/review")),
            Duration::from_secs(30),
        ))
        .expect("Verified vote");

        let (status, reply) = post(
            &hook,
            &headers,
            &patchset_created(3, 1, &failing_commit, "greet: break a test"),
        );
        assert_eq!(status, 202, "{reply}");
        let failed = reply["run"].as_i64().expect("run id");
        assert_eq!(
            server.wait_status(
                failed,
                &["passed", "failed", "error"],
                Duration::from_secs(120)
            ),
            "failed"
        );

        let (status, reply) = post(
            &hook,
            &headers,
            &patchset_created(2, 1, &live, "greet: follow a file"),
        );
        assert_eq!(status, 202, "{reply}");
        let running = reply["run"].as_i64().expect("run id");
        let world = World {
            server,
            _forge: forge,
            _daemon: daemon,
            rt,
            root,
            finished,
            failed,
            running,
            _tmp: tmp,
        };
        world.wait_live_job_following();
        world
    }

    /// The live job's file, on the host.
    pub fn live_file(&self) -> PathBuf {
        self.root
            .join(format!("data/work/run-{}/jobs/live/live.txt", self.running))
    }

    /// Waits until the live job printed its first lines (stored) and follows its file.
    fn wait_live_job_following(&self) {
        let started = Instant::now();
        let raw = format!(
            "{}/runs/{}/jobs/live/log.txt",
            self.server.base, self.running
        );
        loop {
            let log = get(&raw).map(|r| r.body).unwrap_or_default();
            if self.live_file().exists() && log.contains("window.__pwned=3") {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "live job not following:\n{log}\n{}",
                self.server.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
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

/// Where screenshots go: `target/ui-artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ui-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

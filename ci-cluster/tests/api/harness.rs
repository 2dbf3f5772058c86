//! The e2e harness of `tests/api.rs`, after `tests/serve.rs`: the real
//! `ci-cluster serve` binary on 127.0.0.1, a real `git daemon`, the real
//! sandbox and SQLite, and the stand-in forge for reports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock_tests::forge::StandInForge;
use airlock_tests::git::{GitDaemon, SampleRepo, init_bare};
use airlock_tests::sample::sample_repo;
use serde_json::{Value, json};

pub const GERRIT_SECRET: &str = "gerrit-hook-secret";
pub const GITHUB_SECRET: &str = "github-hook-secret";
pub const ADMIN_TOKEN: &str = "admin-token-for-api-tests";

/// A running `ci-cluster serve` process.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    log: PathBuf,
}

impl Server {
    pub fn start(config: &Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let text = std::fs::read_to_string(config)
            .expect("config")
            .replace("@PORT@", &port.to_string());
        std::fs::write(config, text).expect("config");
        let log = config.with_extension("log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_ci-cluster"))
            .args(["serve", "--config"])
            .arg(config)
            .env("AIRLOCK_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn ci-cluster serve");
        let server = Server {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let started = Instant::now();
        while request("GET", &format!("{}/healthz", server.base), &[], b"").0 != 200 {
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

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /api/v1/runs/{id}` (Null when it fails).
    pub fn run(&self, id: i64) -> Value {
        let (status, body) = get(&self.url(&format!("/api/v1/runs/{id}")));
        if status == 200 { body } else { Value::Null }
    }

    /// Waits until the run's status satisfies `pred`; returns the run detail.
    pub fn wait_run(
        &self,
        id: i64,
        what: &str,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Value {
        let started = Instant::now();
        loop {
            let run = self.run(id);
            let status = run["run"]["status"].as_str().unwrap_or("").to_string();
            if pred(&status) {
                return run;
            }
            assert!(
                started.elapsed() < timeout,
                "run {id} never {what} (last: {status}):\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_final(&self, id: i64) -> Value {
        self.wait_run(
            id,
            "final",
            |s| ["passed", "failed", "cancelled", "error"].contains(&s),
            Duration::from_secs(120),
        )
    }

    pub fn wait_running(&self, id: i64) -> Value {
        self.wait_run(id, "running", |s| s == "running", Duration::from_secs(60))
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

/// One HTTP request: (status, JSON body or the text as a JSON string, content type).
pub fn request_full(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Value, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = reqwest::Client::new()
            .request(method, url)
            .timeout(Duration::from_secs(10));
        if !body.is_empty() {
            req = req.body(body.to_vec());
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let Ok(resp) = req.send().await else {
            return (0, Value::Null, String::new());
        };
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            content_type,
        )
    })
}

pub fn request(method: &str, url: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
    let (status, body, _) = request_full(method, url, headers, body);
    (status, body)
}

pub fn get(url: &str) -> (u16, Value) {
    request("GET", url, &[], b"")
}

pub fn admin() -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {ADMIN_TOKEN}"))]
}

pub fn gerrit_headers() -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {GERRIT_SECRET}")),
        ("content-type", "application/json".into()),
    ]
}

pub fn patchset_created(change: u32, patchset: u32, commit: &str, subject: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "patchset-created",
        "change": {"project": "greet", "branch": "main", "number": change, "subject": subject, "owner": {"name": "Dev"}, "url": format!("http://gerrit/c/greet/+/{change}")},
        "patchSet": {"number": patchset, "revision": commit, "ref": format!("refs/changes/{:02}/{change}/{patchset}", change % 100), "uploader": {"name": "Dev"}},
        "uploader": {"name": "Dev"},
        "eventCreatedOn": 1700000000 + patchset
    }))
    .expect("json")
}

/// A git daemon serving the sample repository, the stand-in forge and a temp dir.
pub struct World {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    daemon: GitDaemon,
    bare: PathBuf,
    pub repo: SampleRepo,
    forge: StandInForge,
    _rt: tokio::runtime::Runtime,
}

impl World {
    pub fn new() -> World {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("rt");
        let tmp = tempfile::Builder::new()
            .prefix("airlock-api-")
            .tempdir_in("/var/tmp")
            .expect("tmp");
        let root = tmp.path().to_path_buf();
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .expect("chmod");
        let served = root.join("served");
        let bare = init_bare(&served, "greet");
        let repo = sample_repo(&root.join("repo"));
        repo.push(&bare.display().to_string(), &repo.head(), "refs/heads/main");
        let daemon = GitDaemon::start(&served);
        let forge = rt.block_on(StandInForge::start());
        World {
            _tmp: tmp,
            root,
            daemon,
            bare,
            repo,
            forge,
            _rt: rt,
        }
    }

    /// Writes ci.toml (with `@PORT@` for [`Server::start`]) and its secrets.
    pub fn config(&self) -> PathBuf {
        for (name, value) in [
            ("gerrit-secret", GERRIT_SECRET),
            ("gerrit-password", "http-pw"),
            ("github-secret", GITHUB_SECRET),
            ("admin", ADMIN_TOKEN),
        ] {
            std::fs::write(self.root.join(name), value).expect("secret");
        }
        let text = format!(
            r#"listen = "127.0.0.1:@PORT@"
data_dir = "{root}/data"
concurrency = 3
admin_token = {{ file = "{root}/admin" }}

[forges.gerrit]
webhook_secret = {{ file = "{root}/gerrit-secret" }}
url = "{forge}"
user = "airlock-ci"
password = {{ file = "{root}/gerrit-password" }}

[forges.github]
webhook_secret = {{ file = "{root}/github-secret" }}

[[projects]]
name = "greet"
forge = "gerrit"
git_url = "{git}"
concurrency = 3

[[projects]]
name = "greet-gh"
forge = "github"
repository = "example/greet"
git_url = "{git}"
"#,
            root = self.root.display(),
            forge = self.forge.url(),
            git = self.daemon.url("greet"),
        );
        let path = self.root.join("ci.toml");
        std::fs::write(&path, text).expect("config");
        path
    }

    /// Commits `pipeline` as the pipeline file, pushes it as patchset 1 of
    /// `change` and sends Gerrit's `patchset-created`; returns the run id.
    pub fn change_with_pipeline(
        &self,
        server: &Server,
        change: u32,
        subject: &str,
        pipeline: &str,
    ) -> i64 {
        self.repo.write(".pipeline/config.yaml", pipeline);
        let commit = self.repo.commit(subject);
        self.repo.push(
            &self.bare.display().to_string(),
            &commit,
            &format!("refs/changes/{:02}/{change}/1", change % 100),
        );
        let (status, reply) = request(
            "POST",
            &server.url("/hooks/gerrit"),
            &gerrit_headers(),
            &patchset_created(change, 1, &commit, subject),
        );
        assert_eq!(status, 202, "{reply}");
        reply["run"].as_i64().expect("run id")
    }
}

/// Passes: two jobs, one output.
pub const PASSING: &str = "version: 1\njobs:\n  build:\n    run: mkdir -p dist && echo built > dist/out.txt && echo built\n    outputs: [dist/out.txt]\n  test:\n    needs: [build]\n    run: echo 'ok 1 - greets'\n";
/// Fails in its second job.
pub const FAILING: &str = "version: 1\njobs:\n  build:\n    run: echo building\n  test:\n    needs: [build]\n    run: echo 'not ok 1 - greets' && exit 1\n";
/// Runs for five minutes unless cancelled.
pub const SLEEPING: &str =
    "version: 1\njobs:\n  wait:\n    run: echo waiting && sleep 300\n    timeout: 10m\n";

/// Writes `lines` numbered lines, one every `interval` seconds, then ends.
pub fn ticking(lines: u32, interval: &str) -> String {
    format!(
        "version: 1\njobs:\n  tick:\n    run: for i in $(seq 1 {lines}); do echo \"tick $i\"; sleep {interval}; done\n"
    )
}

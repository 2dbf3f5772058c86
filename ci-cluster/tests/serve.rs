//! `ci-cluster serve` end to end: the real binary, a real `git daemon`, the
//! real sandbox, and a stand-in forge that records the API calls Gerrit,
//! GitHub and GitLab would receive (no forge server can be installed here;
//! the stand-in follows the recorded formats in shared/fixtures).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock_tests::forge::{RecordedRequest, StandInForge};
use airlock_tests::git::{GitDaemon, SampleRepo, init_bare};
use airlock_tests::sample::sample_repo;
use hmac::Mac;
use serde_json::{Value, json};

const GERRIT_SECRET: &str = "gerrit-hook-secret";
const GITHUB_SECRET: &str = "github-hook-secret";
const ADMIN_TOKEN: &str = "admin-token-for-tests";
const GITLAB_TOKEN: &str = "gitlab-hook-token";

/// A running `ci-cluster serve` process with its data directory.
struct Server {
    child: Option<Child>,
    base: String,
    config: PathBuf,
    log: PathBuf,
}

impl Server {
    fn start(config: &Path, data: &Path) -> Server {
        let port = free_port();
        let text = std::fs::read_to_string(config)
            .expect("config")
            .replace("@PORT@", &port.to_string());
        std::fs::write(config, text).expect("config");
        let log = data.with_extension("log");
        let mut server = Server {
            child: None,
            base: format!("http://127.0.0.1:{port}"),
            config: config.into(),
            log,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_ci-cluster"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("AIRLOCK_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ci-cluster serve");
        self.child = Some(child);
        let started = Instant::now();
        while reqwest::blocking_get(&format!("{}/healthz", self.base)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server did not start:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn run(&self, id: i64) -> Value {
        let text =
            reqwest::blocking_get(&format!("{}/api/v1/runs/{id}", self.base)).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Waits until the run is final; returns it.
    fn wait_final(&self, id: i64, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            let run = self.run(id);
            let status = run["run"]["status"].as_str().unwrap_or("");
            if ["passed", "failed", "cancelled", "error"].contains(&status) {
                return run;
            }
            assert!(
                started.elapsed() < timeout,
                "run {id} not final ({status}):\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Tiny blocking HTTP helpers on top of reqwest's async client (no blocking feature).
mod reqwest {
    pub use ::reqwest::*;
    pub fn blocking_get(url: &str) -> Result<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async {
            Client::new()
                .get(url)
                .timeout(std::time::Duration::from_secs(5))
                .send()
                .await?
                .text()
                .await
        })
    }
}

fn post(url: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let mut req = ::reqwest::Client::new()
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    daemon: GitDaemon,
    bare: PathBuf,
    repo: SampleRepo,
    forge: StandInForge,
    rt: tokio::runtime::Runtime,
}

impl World {
    fn new() -> World {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("rt");
        let tmp = tempfile::Builder::new()
            .prefix("airlock-serve-")
            .tempdir_in("/var/tmp")
            .expect("tmp");
        let root = tmp.path().to_path_buf();
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .expect("chmod");
        let served = root.join("served");
        let bare = init_bare(&served, "greet");
        let repo = sample_repo(&root.join("repo"));
        let head = repo.head();
        repo.push(&bare.display().to_string(), &head, "refs/heads/main");
        let daemon = GitDaemon::start(&served);
        let forge = rt.block_on(StandInForge::start());
        World {
            _tmp: tmp,
            root,
            daemon,
            bare,
            repo,
            forge,
            rt,
        }
    }

    fn config(&self, extra: &str) -> PathBuf {
        for (name, value) in [
            ("gerrit-secret", GERRIT_SECRET),
            ("gerrit-password", "http-pw"),
            ("github-secret", GITHUB_SECRET),
            ("github-token", "gh-token"),
            ("gitlab-token", GITLAB_TOKEN),
            ("gitlab-api", "gl-api-token"),
            ("admin", ADMIN_TOKEN),
        ] {
            std::fs::write(self.root.join(name), value).expect("secret");
        }
        let text = format!(
            r#"listen = "127.0.0.1:@PORT@"
data_dir = "{data}"
concurrency = 2
admin_token = {{ file = "{root}/admin" }}

[forges.gerrit]
webhook_secret = {{ file = "{root}/gerrit-secret" }}
url = "{forge}"
user = "airlock-ci"
password = {{ file = "{root}/gerrit-password" }}

[forges.github]
webhook_secret = {{ file = "{root}/github-secret" }}
api_url = "{forge}"
api_token = {{ file = "{root}/github-token" }}

[forges.gitlab]
webhook_token = {{ file = "{root}/gitlab-token" }}
api_url = "{forge}/api/v4"
api_token = {{ file = "{root}/gitlab-api" }}

[[projects]]
name = "greet-gl"
forge = "gitlab"
repository = "example/greet"
git_url = "{git}"

[[projects]]
name = "greet"
forge = "gerrit"
git_url = "{git}"
protected = ["refs/heads/main"]
concurrency = 2

[[projects]]
name = "greet-gh"
forge = "github"
repository = "example/greet"
git_url = "{git}"
{extra}
"#,
            data = self.root.join("data").display(),
            root = self.root.display(),
            forge = self.forge.url(),
            git = self.daemon.url("greet"),
        );
        let path = self.root.join("ci.toml");
        std::fs::write(&path, text).expect("config");
        path
    }

    fn push_change(&self, change: u32, patchset: u32, commit: &str) {
        self.repo.push(
            &self.bare.display().to_string(),
            commit,
            &format!("refs/changes/{:02}/{change}/{patchset}", change % 100),
        );
    }

    fn wait_requests(
        &self,
        what: &str,
        pred: impl Fn(&[RecordedRequest]) -> bool,
        timeout: Duration,
    ) -> Vec<RecordedRequest> {
        self.rt
            .block_on(self.forge.wait_for(pred, timeout))
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }
}

fn patchset_created(change: u32, patchset: u32, commit: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "patchset-created",
        "change": {"project": "greet", "branch": "main", "number": change, "subject": "greet: a change", "owner": {"name": "Dev"}, "url": format!("http://gerrit/c/greet/+/{change}")},
        "patchSet": {"number": patchset, "revision": commit, "ref": format!("refs/changes/{:02}/{change}/{patchset}", change % 100), "uploader": {"name": "Dev"}},
        "uploader": {"name": "Dev"},
        "eventCreatedOn": 1700000000 + patchset
    }))
    .expect("json")
}

fn gerrit_headers() -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {GERRIT_SECRET}")),
        ("content-type", "application/json".into()),
    ]
}

fn reviews(requests: &[RecordedRequest]) -> Vec<&RecordedRequest> {
    requests
        .iter()
        .filter(|r| r.path.ends_with("/review"))
        .collect()
}

#[test]
fn gerrit_patchset_gets_exactly_one_verified_vote_per_run() {
    let world = World::new();
    let server = Server::start(&world.config(""), &world.root.join("data"));
    let good = world.repo.head();
    world.push_change(1, 1, &good);
    let (status, body) = post(
        &format!("{}/hooks/gerrit", server.base),
        &gerrit_headers(),
        &patchset_created(1, 1, &good),
    );
    assert_eq!(status, 202, "{body}");
    let run = body["run"].as_i64().expect("run id");
    let done = server.wait_final(run, Duration::from_secs(90));
    assert_eq!(
        done["run"]["status"],
        "passed",
        "{done:#}\n{}",
        server.log_text()
    );

    let requests = world.wait_requests(
        "Verified +1",
        |r| !reviews(r).is_empty(),
        Duration::from_secs(30),
    );
    let review = reviews(&requests)[0].clone();
    assert_eq!(review.path, format!("/a/changes/1/revisions/{good}/review"));
    assert!(
        review
            .header("authorization")
            .is_some_and(|h| h.starts_with("Basic "))
    );
    let input = review.json().expect("ReviewInput JSON");
    assert_eq!(input["labels"]["Verified"], 1, "{input:#}");
    let message = input["message"].as_str().expect("message");
    for needle in ["test", "build", &format!("/runs/{run}")] {
        assert!(
            message.contains(needle),
            "message lacks {needle}: {message}"
        );
    }

    // A second patchset that breaks the test gets -1.
    let source = std::fs::read_to_string(world.repo.dir().join("src/greet.c")).expect("read");
    world
        .repo
        .write("src/greet.c", source.replace("Hello, %s!", "Howdy, %s!"));
    let bad = world.repo.commit("say howdy");
    world.push_change(1, 2, &bad);
    let (status, body) = post(
        &format!("{}/hooks/gerrit", server.base),
        &gerrit_headers(),
        &patchset_created(1, 2, &bad),
    );
    assert_eq!(status, 202, "{body}");
    let run2 = body["run"].as_i64().expect("run id");
    assert_eq!(
        server.wait_final(run2, Duration::from_secs(90))["run"]["status"],
        "failed"
    );
    let requests = world.wait_requests(
        "Verified -1",
        |r| reviews(r).len() >= 2,
        Duration::from_secs(30),
    );
    let second = reviews(&requests)[1].json().expect("json");
    assert_eq!(second["labels"]["Verified"], -1, "{second:#}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        reviews(&world.forge.requests()).len(),
        2,
        "exactly one review per run"
    );
}

fn github_pr(action: &str, sha: &str, number: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": action,
        "number": number,
        "pull_request": {"number": number, "title": "Greet louder", "html_url": "https://github.com/example/greet/pull/5", "user": {"login": "dev"}, "head": {"sha": sha, "ref": "feature"}},
        "repository": {"full_name": "example/greet"},
        "sender": {"login": "dev"}
    }))
    .expect("json")
}

fn github_headers(body: &[u8], event: &str, delivery: &str) -> Vec<(&'static str, String)> {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(GITHUB_SECRET.as_bytes()).expect("hmac");
    mac.update(body);
    vec![
        ("x-github-event", event.to_string()),
        ("x-github-delivery", delivery.to_string()),
        ("x-github-hook-id", "42".to_string()),
        (
            "x-hub-signature-256",
            format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
        ),
        ("content-type", "application/json".into()),
    ]
}

#[test]
fn github_pull_request_gets_pending_then_success_and_replays_create_nothing() {
    let world = World::new();
    let server = Server::start(&world.config(""), &world.root.join("data"));
    let sha = world.repo.head();
    world
        .repo
        .push(&world.bare.display().to_string(), &sha, "refs/pull/5/head");
    let body = github_pr("opened", &sha, 5);
    let headers = github_headers(&body, "pull_request", "delivery-1");
    let (status, reply) = post(&format!("{}/hooks/github", server.base), &headers, &body);
    assert_eq!(status, 202, "{reply}");
    let run = reply["run"].as_i64().expect("run");
    // The same delivery again (GitHub redelivers with the same id): nothing new.
    let (status, reply) = post(&format!("{}/hooks/github", server.base), &headers, &body);
    assert_eq!((status, reply["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(
        server.wait_final(run, Duration::from_secs(90))["run"]["status"],
        "passed"
    );
    let path = format!("/repos/example/greet/statuses/{sha}");
    let requests = world.wait_requests(
        "pending then success",
        |r| r.iter().filter(|q| q.path == path).count() >= 2,
        Duration::from_secs(30),
    );
    let states: Vec<String> = requests
        .iter()
        .filter(|q| q.path == path)
        .filter_map(|q| q.json())
        .map(|j| j["state"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(states, ["pending", "success"]);
    assert!(
        requests
            .iter()
            .all(|q| q.header("authorization") == Some("Bearer gh-token"))
    );
    assert!(
        server.run(run + 1)["run"].is_null(),
        "the replay created a run"
    );
}

#[test]
fn forged_and_malformed_requests_are_refused_and_store_nothing() {
    let world = World::new();
    let server = Server::start(&world.config(""), &world.root.join("data"));
    let sha = world.repo.head();
    let body = github_pr("opened", &sha, 5);
    let hooks = |forge: &str| format!("{}/hooks/{forge}", server.base);

    let mut forged = github_headers(&body, "pull_request", "d-1");
    forged[3].1 = format!("sha256={}", "0".repeat(64));
    // (name, url, headers, body, expected status, expected reason)
    type Case<'a> = (
        &'a str,
        String,
        Vec<(&'a str, String)>,
        Vec<u8>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "forged signature",
            hooks("github"),
            forged,
            body.clone(),
            401,
            "unauthorized",
        ),
        (
            "signed with another secret",
            hooks("github"),
            {
                let mut mac =
                    hmac::Hmac::<sha2::Sha256>::new_from_slice(b"not-the-secret").expect("hmac");
                mac.update(&body);
                let mut h = github_headers(&body, "pull_request", "d-2");
                h[3].1 = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                h
            },
            body.clone(),
            401,
            "unauthorized",
        ),
        (
            "wrong gerrit token",
            hooks("gerrit"),
            vec![("authorization", "Bearer nope".into())],
            patchset_created(1, 1, &sha),
            401,
            "unauthorized",
        ),
        (
            "missing gerrit token",
            hooks("gerrit"),
            vec![],
            patchset_created(1, 1, &sha),
            401,
            "unauthorized",
        ),
        (
            "oversized body",
            hooks("gerrit"),
            gerrit_headers(),
            vec![b' '; 2 * 1024 * 1024],
            413,
            "too_large",
        ),
        (
            "malformed JSON",
            hooks("gerrit"),
            gerrit_headers(),
            b"{\"type\": ".to_vec(),
            400,
            "malformed",
        ),
    ];
    for (name, url, headers, body, want, reason) in cases {
        let (status, reply) = post(&url, &headers, &body);
        assert_eq!(status, want, "{name}: {reply}");
        assert_eq!(reply["error"], reason, "{name}: {reply}");
        assert!(
            reply["message"]
                .as_str()
                .is_some_and(|m| !m.contains(GERRIT_SECRET) && !m.contains(GITHUB_SECRET))
        );
    }
    let other = String::from_utf8(patchset_created(1, 1, &sha))
        .expect("utf8")
        .replace("\"project\":\"greet\"", "\"project\":\"elsewhere\"");
    let (status, reply) = post(&hooks("gerrit"), &gerrit_headers(), other.as_bytes());
    assert_eq!(
        (status, reply["error"].as_str()),
        (404, Some("unknown_project")),
        "{reply}"
    );
    let (status, reply) = post(
        &hooks("github"),
        &github_headers(b"{}", "status", "d-3"),
        b"{}",
    );
    assert_eq!(
        (status, reply["status"].as_str()),
        (202, Some("ignored")),
        "{reply}"
    );
    // Nothing was stored: no run exists.
    assert!(server.run(1)["run"].is_null(), "{}", server.run(1));
    assert!(
        !server.log_text().contains(GERRIT_SECRET) && !server.log_text().contains(GITHUB_SECRET)
    );
}

#[test]
fn a_new_patchset_cancels_the_older_runs() {
    let world = World::new();
    let slow = "version: 1\njobs:\n  slow:\n    run: sleep 300\n";
    world.repo.write(".pipeline/config.yaml", slow);
    let first = world.repo.commit("slow");
    world.push_change(2, 1, &first);
    let server = Server::start(&world.config(""), &world.root.join("data"));
    let (_, reply) = post(
        &format!("{}/hooks/gerrit", server.base),
        &gerrit_headers(),
        &patchset_created(2, 1, &first),
    );
    let run1 = reply["run"].as_i64().expect("run");
    // Wait until it is running, then send patchset 2.
    let started = Instant::now();
    while server.run(run1)["run"]["status"] != "running" {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    world.repo.write(
        ".pipeline/config.yaml",
        "version: 1\njobs:\n  quick:\n    run: echo quick\n",
    );
    let second = world.repo.commit("quick");
    world.push_change(2, 2, &second);
    let (_, reply) = post(
        &format!("{}/hooks/gerrit", server.base),
        &gerrit_headers(),
        &patchset_created(2, 2, &second),
    );
    let run2 = reply["run"].as_i64().expect("run");
    assert!(
        reply["cancelled"]
            .as_array()
            .is_some_and(|a| a.contains(&json!(run1))),
        "{reply}"
    );
    assert_eq!(
        server.wait_final(run1, Duration::from_secs(30))["run"]["status"],
        "cancelled"
    );
    assert_eq!(
        server.wait_final(run2, Duration::from_secs(60))["run"]["status"],
        "passed"
    );
}

#[test]
fn after_kill_9_every_event_gets_a_run_and_every_run_exactly_one_report() {
    let world = World::new();
    world.repo.write(
        ".pipeline/config.yaml",
        "version: 1\njobs:\n  work:\n    run: sleep 2; echo done\n",
    );
    let commit = world.repo.commit("two-second job");
    let mut server = Server::start(&world.config(""), &world.root.join("data"));
    let mut runs = Vec::new();
    for change in 10..16 {
        world.push_change(change, 1, &commit);
        let (status, reply) = post(
            &format!("{}/hooks/gerrit", server.base),
            &gerrit_headers(),
            &patchset_created(change, 1, &commit),
        );
        assert_eq!(status, 202, "{reply}");
        runs.push(reply["run"].as_i64().expect("run"));
    }
    // Some runs are in flight and the rest queued (concurrency 2): kill -9.
    std::thread::sleep(Duration::from_millis(1500));
    server.kill9();
    server.spawn();
    let started = Instant::now();
    while !server
        .log_text()
        .contains("recovered after a restart: re-queued [")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no recovery after kill -9:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for run in &runs {
        let status = server.wait_final(*run, Duration::from_secs(120))["run"]["status"].clone();
        assert_eq!(status, "passed", "run {run}:\n{}", server.log_text());
    }
    world.wait_requests(
        "a review per run",
        |r| reviews(r).len() >= runs.len(),
        Duration::from_secs(60),
    );
    // Anything duplicated would arrive within the report worker's next rounds.
    std::thread::sleep(Duration::from_secs(2));
    for change in 10..16 {
        let n = reviews(&world.forge.requests())
            .iter()
            .filter(|r| r.path.starts_with(&format!("/a/changes/{change}/")))
            .count();
        assert_eq!(n, 1, "change {change} got {n} reviews");
    }
}

#[test]
fn a_passing_push_to_a_protected_ref_writes_signed_pass_records() {
    let world = World::new();
    let server = Server::start(&world.config(""), &world.root.join("data"));
    let head = world.repo.head();
    let ref_updated = serde_json::to_vec(&json!({
        "type": "ref-updated",
        "refUpdate": {"project": "greet", "refName": "refs/heads/main", "oldRev": "0".repeat(40), "newRev": head},
        "submitter": {"name": "Dev"},
        "eventCreatedOn": 1700000100
    }))
    .expect("json");
    let (status, reply) = post(
        &format!("{}/hooks/gerrit", server.base),
        &gerrit_headers(),
        &ref_updated,
    );
    assert_eq!(status, 202, "{reply}");
    let run = reply["run"].as_i64().expect("run");
    assert_eq!(
        server.wait_final(run, Duration::from_secs(90))["run"]["status"],
        "passed",
        "{}",
        server.log_text()
    );
    let outbox = airlock_pipeline::record::DirOutbox::new(world.root.join("data/outbox"));
    let names = outbox.list().expect("outbox");
    assert_eq!(names.len(), 1, "{names:?}");
    let public = std::fs::read_to_string(world.root.join("data/keys/ci-origin.key.pub"))
        .expect("public key");
    let key = airlock_pipeline::record::parse_public_key_hex(public.trim()).expect("key");
    let record = airlock_pipeline::record::open(&outbox.read(&names[0]).expect("read"), &[key])
        .expect("valid signed record");
    assert_eq!(
        (
            record.job.as_str(),
            record.commit.as_str(),
            record.git_ref.as_str()
        ),
        ("publish", head.as_str(), "refs/heads/main")
    );
    assert_eq!(record.outputs.len(), 2);
}

#[test]
fn manual_runs_need_the_admin_token() {
    let world = World::new();
    let server = Server::start(&world.config(""), &world.root.join("data"));
    let url = format!("{}/api/v1/projects/greet/runs", server.base);
    let (status, _) = post(
        &url,
        &[("authorization", "Bearer wrong".into())],
        br#"{"ref": "refs/heads/main"}"#,
    );
    assert_eq!(status, 401);
    assert!(server.run(1)["run"].is_null());
    let out = Command::new(env!("CARGO_BIN_EXE_ci-cluster"))
        .args([
            "trigger",
            "--project",
            "greet",
            "--ref",
            "refs/heads/main",
            "--server",
            &server.base,
            "--token-file",
        ])
        .arg(world.root.join("admin"))
        .output()
        .expect("trigger");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("queued run 1"));
    assert_eq!(
        server.wait_final(1, Duration::from_secs(90))["run"]["status"],
        "passed"
    );
}

#[test]
fn cron_schedules_queue_runs() {
    let world = World::new();
    let server = Server::start(
        &world.config(r#"schedules = [{ cron = "*/2 * * * * *", ref = "refs/heads/main" }]"#),
        &world.root.join("data"),
    );
    let started = Instant::now();
    while server.run(1)["run"].is_null() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no scheduled run:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let run = server.wait_final(1, Duration::from_secs(90));
    assert_eq!(run["run"]["status"], "passed", "{run:#}");
    assert_eq!(run["run"]["kind"], "schedule", "{run:#}");
    assert_eq!(run["run"]["project"], "greet-gh");
}

#[test]
fn gitlab_merge_request_gets_running_then_success() {
    let world = World::new();
    let server = Server::start(&world.config(""), &world.root.join("data"));
    let sha = world.repo.head();
    world.repo.push(
        &world.bare.display().to_string(),
        &sha,
        "refs/merge-requests/7/head",
    );
    // GitLab's documented Merge Request Hook, pointed at our repository and commit.
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/gitlab/docs/merge_request.json");
    let mut payload: Value =
        serde_json::from_slice(&std::fs::read(fixture).expect("fixture")).expect("json");
    payload["project"]["path_with_namespace"] = json!("example/greet");
    payload["project"]["id"] = json!(42);
    payload["object_attributes"]["iid"] = json!(7);
    payload["object_attributes"]["action"] = json!("open");
    payload["object_attributes"]["last_commit"]["id"] = json!(sha);
    let body = serde_json::to_vec(&payload).expect("json");
    let headers = vec![
        ("x-gitlab-event", "Merge Request Hook".to_string()),
        ("x-gitlab-token", GITLAB_TOKEN.to_string()),
        ("x-gitlab-event-uuid", "uuid-1".to_string()),
        ("content-type", "application/json".to_string()),
    ];
    let wrong = vec![
        ("x-gitlab-event", "Merge Request Hook".to_string()),
        ("x-gitlab-token", "nope".to_string()),
    ];
    assert_eq!(
        post(&format!("{}/hooks/gitlab", server.base), &wrong, &body).0,
        401
    );
    let (status, reply) = post(&format!("{}/hooks/gitlab", server.base), &headers, &body);
    assert_eq!(status, 202, "{reply}");
    let run = reply["run"].as_i64().expect("run");
    assert_eq!(
        server.wait_final(run, Duration::from_secs(90))["run"]["status"],
        "passed",
        "{}",
        server.log_text()
    );
    let path = format!("/api/v4/projects/42/statuses/{sha}");
    let requests = world.wait_requests(
        "running then success",
        |r| r.iter().filter(|q| q.path == path).count() >= 2,
        Duration::from_secs(30),
    );
    let states: Vec<String> = requests
        .iter()
        .filter(|q| q.path == path)
        .filter_map(|q| q.json())
        .map(|j| j["state"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(states, ["running", "success"]);
    assert!(
        requests
            .iter()
            .filter(|q| q.path == path)
            .all(|q| q.header("private-token") == Some("gl-api-token"))
    );
}

//! Intake throughput: authenticated GitHub `push` deliveries per second, each
//! committed to the store (SQLite, WAL, `synchronous = FULL`) before its 2xx.
//!
//! The real `ci-cluster serve` binary runs with `concurrency = 0` (intake
//! only: runs are queued, never executed) and `wrk` drives it over HTTP/1.1
//! keep-alive. Every request carries the same recorded `push` payload
//! (`tests/fixtures/github/go-scm/push.json`, 8.5 KB) and its precomputed
//! `X-Hub-Signature-256` (the signature covers the body only), and a unique
//! `X-GitHub-Delivery` (a counter in the Lua `request()`), so each request is
//! a new event the server must authenticate, parse, commit, then answer 202.
//!
//! Afterwards the server is killed with SIGKILL and the store reopened: every
//! acknowledged delivery must be there (the one check made; nothing is
//! asserted about time: the figures are printed).
//!
//! Needs wrk, which is not part of the test dependencies:
//! `apt-get install -y wrk` (Debian). Without it this prints how to install it
//! and exits 0. Run with `cargo bench -p ci-cluster --bench intake`; tune with
//! `AIRLOCK_BENCH_SECONDS` (default 10) and `AIRLOCK_BENCH_CONNECTIONS` (64).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ci_cluster::store::Store;
use hmac::Mac;

const SECRET: &str = "bench-webhook-secret";
/// `repository.full_name` of the recorded payload; the project is configured for it.
const REPOSITORY: &str = "Codertocat/Hello-World";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// User + system CPU seconds of a process from `/proc/PID/stat` (`self`
/// for this one, whose `cutime`/`cstime` then cover its reaped children).
fn cpu_seconds(pid: &str, children: bool) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name, which may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime, stime, cutime, cstime are fields 14-17 of stat(5): 11-14 here.
    let ticks = if children {
        fields.get(13).zip(fields.get(14))
    } else {
        fields.get(11).zip(fields.get(12))
    };
    // USER_HZ is 100 on every Linux build this runs on.
    ticks.map(|(u, s)| (u + s) as f64 / 100.0).unwrap_or(0.0)
}

/// Load average and any compiler running, so a reader can tell a quiet
/// machine from a busy one.
fn machine_state() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut busy = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) {
            let comm = comm.trim();
            if comm == "rustc" || comm == "cargo" {
                busy.push(comm.to_string());
            }
        }
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "{cores} cores, load average {}, compilers running: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        // `cargo bench` itself is one cargo process.
        if busy.len() <= 1 {
            "none besides this cargo".to_string()
        } else {
            busy.join(", ")
        }
    )
}

struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(config: &Path, port: u16, log: PathBuf) -> Server {
        let child = Command::new(env!("CARGO_BIN_EXE_ci-cluster"))
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn ci-cluster serve");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server did not start:\n{}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Lua script: body and signature fixed, delivery id unique per request
/// (prefix per wrk run and thread, then a counter), and a `done` line this
/// bench parses.
fn lua_script(body_file: &Path, signature: &str) -> String {
    format!(
        r#"-- Generated by ci-cluster/benches/intake.rs.
wrk.method = "POST"
wrk.path = "/hooks/github"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "GitHub-Hookshot/bench"
wrk.headers["X-GitHub-Event"] = "push"
wrk.headers["X-GitHub-Hook-ID"] = "4242"
wrk.headers["X-Hub-Signature-256"] = "{signature}"
local f = assert(io.open("{body}", "rb"))
wrk.body = f:read("*a")
f:close()

local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_no", thread_count)
end

local prefix = ""
local counter = 0
function init(args)
  prefix = (args[1] or "run") .. "-" .. thread_no .. "-"
end

function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = prefix .. counter
  return wrk.format()
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("AIRLOCK requests=%d duration_us=%d non2xx=%d socket_errors=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"#,
        body = body_file.display(),
    )
}

/// The figures of one wrk run, from its `done` line.
#[derive(Debug, Default)]
struct WrkRun {
    requests: u64,
    duration_us: u64,
    non2xx: u64,
    socket_errors: u64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    output: String,
}

impl WrkRun {
    fn acknowledged(&self) -> u64 {
        self.requests.saturating_sub(self.non2xx)
    }
}

fn wrk(script: &Path, url: &str, connections: u64, seconds: u64, prefix: &str) -> WrkRun {
    // One wrk thread: the load generator shares the 2 cores with the server,
    // and a second thread would only take CPU from it.
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .args(["--", prefix])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "wrk failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut run = WrkRun {
        output: text.clone(),
        ..Default::default()
    };
    let line = text
        .lines()
        .find(|l| l.starts_with("AIRLOCK "))
        .expect("the script's summary line");
    for pair in line.split_whitespace().skip(1) {
        let (key, value) = pair.split_once('=').expect("key=value");
        let value: u64 = value.parse().expect("number");
        match key {
            "requests" => run.requests = value,
            "duration_us" => run.duration_us = value,
            "non2xx" => run.non2xx = value,
            "socket_errors" => run.socket_errors = value,
            "p50_us" => run.p50_us = value,
            "p99_us" => run.p99_us = value,
            "max_us" => run.max_us = value,
            _ => {}
        }
    }
    run
}

fn main() {
    if Command::new("wrk").arg("--version").output().is_err() {
        println!("intake bench skipped: wrk is not installed (Debian: apt-get install -y wrk)");
        return;
    }
    let seconds = env_or("AIRLOCK_BENCH_SECONDS", 10);
    let connections = env_or("AIRLOCK_BENCH_CONNECTIONS", 64);

    // /var/tmp: on disk (a tmpfs /tmp would make fsync free and the figure meaningless).
    let tmp = tempfile::Builder::new()
        .prefix("airlock-intake-")
        .tempdir_in("/var/tmp")
        .expect("tmp");
    let root = tmp.path();
    let body = airlock_tests::fixtures::read("github/go-scm/push.json");
    let body_file = root.join("push.json");
    std::fs::write(&body_file, &body).expect("body");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("hmac");
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let script = root.join("push.lua");
    std::fs::write(&script, lua_script(&body_file, &signature)).expect("script");

    std::fs::write(root.join("github-secret"), SECRET).expect("secret");
    let port = free_port();
    let data = root.join("data");
    let config = root.join("ci.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:{port}"
data_dir = "{data}"
# Intake only: the runner claims nothing, so runs stay queued.
concurrency = 0

[forges.github]
webhook_secret = {{ file = "{root}/github-secret" }}

[[projects]]
name = "hello"
forge = "github"
repository = "{REPOSITORY}"
git_url = "git://127.0.0.1:9/never-fetched.git"
report = false
"#,
            data = data.display(),
            root = root.display(),
        ),
    )
    .expect("config");

    let server = Server::start(&config, port, root.join("server.log"));
    let url = format!("{}/hooks/github", server.base);

    // One delivery by hand first: proves the setup (signature, project) is
    // right, so the figure below is not a figure of 401s or 404s.
    let probe = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
        .block_on(async {
            reqwest::Client::new()
                .post(&url)
                .header("content-type", "application/json")
                .header("x-github-event", "push")
                .header("x-github-hook-id", "4242")
                .header("x-github-delivery", "probe")
                .header("x-hub-signature-256", &signature)
                .body(body.clone())
                .send()
                .await
                .expect("probe delivery")
                .status()
                .as_u16()
        });
    assert_eq!(
        probe,
        202,
        "the probe delivery was not accepted:\n{}",
        server.log_text()
    );

    println!("intake: GitHub push deliveries, HMAC-checked, each committed before its 2xx");
    println!("  machine: {}", machine_state());
    println!(
        "  payload: {} bytes (github/go-scm/push.json); wrk: 1 thread, {connections} connections, {seconds} s after a 3 s warm-up",
        body.len(),
    );
    let warmup = wrk(&script, &url, connections, 3, "warmup");
    let server_pid = server.child.id().to_string();
    let (server_cpu0, wrk_cpu0) = (cpu_seconds(&server_pid, false), cpu_seconds("self", true));
    let run = wrk(&script, &url, connections, seconds, "run");
    let (server_cpu, wrk_cpu) = (
        cpu_seconds(&server_pid, false) - server_cpu0,
        cpu_seconds("self", true) - wrk_cpu0,
    );
    let load_after = machine_state();

    // SIGKILL, then count what the store holds: every 2xx must be there.
    let mut server = server;
    let _ = server.child.kill();
    let _ = server.child.wait();
    let store = Store::open(&data.join("ci.sqlite")).expect("reopen the store");
    let counts = store.counts().expect("counts");
    let acknowledged = 1 + warmup.acknowledged() + run.acknowledged();

    let secs = run.duration_us as f64 / 1e6;
    println!(
        "{}",
        run.output
            .lines()
            .filter(|l| !l.starts_with("AIRLOCK "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!(
        "  requests: {} in {secs:.2} s, non-2xx: {}, socket errors: {}",
        run.requests, run.non2xx, run.socket_errors
    );
    println!(
        "  request latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        run.p50_us as f64 / 1e3,
        run.p99_us as f64 / 1e3,
        run.max_us as f64 / 1e3
    );
    println!(
        "  CPU during the run: server {server_cpu:.1} s, wrk {wrk_cpu:.1} s, of {:.1} s available",
        secs * std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as f64
    );
    println!("  machine after: {load_after}");
    println!(
        "  after SIGKILL the store holds {} events, {} runs queued; {} deliveries were acknowledged",
        counts.events, counts.queued, acknowledged
    );
    println!(
        "  durably stored deliveries/s: {:>8.0}  (goal >= 5000 on 2 cores)",
        run.acknowledged() as f64 / secs
    );
    // Not a speed check: an acknowledged event missing after a crash is a bug.
    assert!(
        counts.events >= acknowledged,
        "acknowledged deliveries are missing from the store"
    );
}

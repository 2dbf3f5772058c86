//! Start latency: from a GitHub `push` webhook's 2xx to the first job's
//! process running in the sandbox, p50 and p99 over 200 events.
//!
//! Real components throughout: `ci-cluster serve` (in this process, through
//! `serve::serve`, on the same kind of runtime its binary builds), the sample
//! repository served by `git daemon`, gix fetching from it, and the
//! bubblewrap sandbox (with cgroups when run as root). The sample's pipeline
//! is replaced by one job whose first command is `date +%s%N`: the job
//! prints the moment it runs, and the bench reads it back from the job's log
//! in the store. Both clocks are this machine's `CLOCK_REALTIME`.
//!
//! Each event is a new commit pushed to `refs/heads/main` of the served
//! repository, then its signed `push` delivery; the next one is sent only
//! once the run is final, so runs never overlap and each figure is one run's
//! start-up alone. Phases come from timestamping the runner's debug markers
//! ("run claimed", "source fetched", "workspace materialised") and the
//! executor's "sandbox started" (just after the launcher is spawned) with a
//! tracing layer.
//!
//! `cargo bench -p ci-cluster --bench latency`; `AIRLOCK_BENCH_EVENTS`
//! changes the count (default 200). Figures are printed, nothing about time
//! is asserted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use airlock_tests::git::{GitDaemon, init_bare};
use airlock_tests::sample::sample_repo;
use ci_cluster::config::Config;
use ci_cluster::store::{RunStatus, Store};
use hmac::Mac;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, filter};

const SECRET: &str = "bench-webhook-secret";
const WARMUP: usize = 5;
const JOB: &str = "start";

/// The phase markers, in the order a run passes them.
const MARKS: [&str; 4] = [
    "run claimed",
    "source fetched",
    "workspace materialised",
    "sandbox started",
];

fn nanos(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Records when each marker event fires (wall clock, taken in the event).
#[derive(Clone, Default)]
struct Marks(Arc<Mutex<Vec<(String, SystemTime)>>>);

impl Marks {
    fn take(&self) -> Vec<(String, SystemTime)> {
        std::mem::take(&mut *self.0.lock().expect("marks"))
    }
}

struct Message(Option<String>);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Marks {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let at = SystemTime::now();
        let mut message = Message(None);
        event.record(&mut message);
        if let Some(m) = message.0.filter(|m| MARKS.contains(&m.as_str())) {
            self.0.lock().expect("marks").push((m, at));
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn machine_state() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let compilers = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .filter(|c| c.trim() == "rustc" || c.trim() == "cargo")
        .count();
    format!(
        "{} cores, load average {}, rustc/cargo processes: {compilers} (cargo bench itself is one)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn push_body(commit: &str, before: &str, n: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": "refs/heads/main",
        "before": before,
        "after": commit,
        "created": false,
        "deleted": false,
        "repository": {"full_name": "example/greet"},
        "pusher": {"name": "dev"},
        "head_commit": {"id": commit, "message": format!("bench {n}"), "author": {"name": "Dev", "username": "dev"}}
    }))
    .expect("json")
}

fn main() {
    // As the binary does: rustls' provider before anything builds a client.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let marks = Marks::default();
    let targets = filter::Targets::new()
        .with_target("ci_cluster::serve::runner", tracing::Level::DEBUG)
        .with_target("airlock_pipeline::executor::sandbox", tracing::Level::DEBUG);
    tracing_subscriber::registry()
        .with(marks.clone().with_filter(targets))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter::LevelFilter::WARN),
        )
        .init();
    let events: usize = std::env::var("AIRLOCK_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);

    // World: bare repository served by git daemon, sample service with a one-job pipeline.
    let tmp = tempfile::Builder::new()
        .prefix("airlock-latency-")
        .tempdir_in("/var/tmp")
        .expect("tmp");
    let root = tmp.path().to_path_buf();
    // The sandbox user must traverse down to its workspace under the data directory.
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o711))
        .expect("chmod");
    let served = root.join("served");
    let bare = init_bare(&served, "greet");
    let bare_path = bare.display().to_string();
    let repo = sample_repo(&root.join("repo"));
    repo.write(
        ".pipeline/config.yaml",
        format!("version: 1\njobs:\n  {JOB}:\n    run: |\n      date +%s%N\n"),
    );
    let mut head = repo.commit("one job that prints when it starts");
    repo.push(&bare_path, &head, "refs/heads/main");
    let daemon = GitDaemon::start(&served);

    std::fs::write(root.join("github-secret"), SECRET).expect("secret");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let data = root.join("data");
    let config_path = root.join("ci.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"listen = "127.0.0.1:{port}"
data_dir = "{data}"

[forges.github]
webhook_secret = {{ file = "{root}/github-secret" }}

[[projects]]
name = "greet"
forge = "github"
repository = "example/greet"
git_url = "{git}"
report = false
"#,
            data = data.display(),
            root = root.display(),
            git = daemon.url("greet"),
        ),
    )
    .expect("config");
    let config = Config::load(&config_path).expect("config");

    // The server's runtime, built as `ci-cluster serve` builds it (one worker per core).
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stop = CancellationToken::new();
    let server = server_rt.spawn(ci_cluster::serve::serve(config, stop.clone()));
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/hooks/github");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A second connection to the same database, for reads only (WAL lets it
    // read while the server writes).
    let store = Store::open(&data.join("ci.sqlite")).expect("store");

    let sandbox = if nix_is_root() {
        "as root: cgroup limits applied"
    } else {
        "not root: no cgroups"
    };
    println!(
        "latency: webhook 2xx -> first job process running ({events} events, {WARMUP} warm-up; sandbox {sandbox})"
    );
    println!("  machine before: {}", machine_state());

    let mut totals = Vec::new();
    let mut phases: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for n in 0..WARMUP + events {
        // A new commit on main, pushed before the forge would send its hook.
        repo.write("bench.txt", format!("event {n}\n"));
        let before = head.clone();
        head = repo.commit(&format!("bench {n}"));
        repo.push(&bare_path, &head, "refs/heads/main");
        let body = push_body(&head, &before, n);
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("hmac");
        mac.update(&body);
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        marks.take();

        let (status, reply, acked) = client_rt.block_on(async {
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-github-event", "push")
                .header("x-github-hook-id", "4242")
                .header("x-github-delivery", format!("latency-{n}"))
                .header("x-hub-signature-256", signature)
                .body(body)
                .send()
                .await
                .expect("deliver");
            // The 2xx is in: status and headers have arrived.
            let acked = SystemTime::now();
            let status = response.status().as_u16();
            (
                status,
                response.json::<serde_json::Value>().await.expect("reply"),
                acked,
            )
        });
        assert_eq!(status, 202, "{reply}");
        let run = reply["run"].as_i64().expect("a run id");

        // Wait for the run to end: its log then holds the job's first line.
        let deadline = Instant::now() + Duration::from_secs(60);
        let row = loop {
            let row = store.run(run).expect("query").expect("run");
            if row.status.is_final() {
                break row;
            }
            assert!(
                Instant::now() < deadline,
                "run {run} did not finish: {row:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        assert_eq!(row.status, RunStatus::Passed, "run {run}: {row:?}");
        let lines = store.log(run, JOB, 0, 10).expect("log");
        let printed: i128 = lines
            .iter()
            .find_map(|(_, l)| l.text.trim().parse().ok())
            .unwrap_or_else(|| panic!("run {run}: no start time in the log: {lines:?}"));
        if n < WARMUP {
            // The first run clones the mirror and warms caches; not counted.
            continue;
        }
        let acked = nanos(acked);
        totals.push((printed - acked) as f64 / 1e6);
        // Phase boundaries: 2xx, the markers, then the job's own clock.
        let marked = marks.take();
        let mut points = vec![acked];
        for mark in MARKS {
            let at = marked
                .iter()
                .find(|(m, _)| m == mark)
                .map(|(_, t)| nanos(*t));
            points.push(at.unwrap_or_else(|| panic!("run {run}: no '{mark}' marker")));
        }
        points.push(printed);
        for (i, pair) in points.windows(2).enumerate() {
            phases
                .entry(i)
                .or_default()
                .push((pair[1] - pair[0]) as f64 / 1e6);
        }
    }
    let machine_after = machine_state();
    stop.cancel();
    let _ = server_rt.block_on(server);

    let names = [
        "2xx -> run claimed (runner wake-up, claim commit)",
        "claimed -> fetched (gix fetch from git daemon)",
        "fetched -> materialised (pipeline file, plan, checkout)",
        "materialised -> launcher spawned (engine, workspace copy, cgroups)",
        "spawned -> job running (launcher, setpriv, bwrap, sh)",
    ];
    // Every fetch adds a pack to the mirror and nothing repacks it: compare
    // the first and last quarter to see whether fetches slow down with that.
    let quarter = |v: &[f64], last: bool| {
        let q = (v.len() / 4).max(1);
        let part = if last {
            &v[v.len().saturating_sub(q)..]
        } else {
            &v[..q.min(v.len())]
        };
        part.iter().sum::<f64>() / part.len().max(1) as f64
    };
    let fetches = phases.get(&1).cloned().unwrap_or_default();
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    println!(
        "  {:<width$}  {:>7}  {:>7}  {:>7}",
        "phase (ms)", "p50", "p99", "mean"
    );
    for (i, name) in names.iter().enumerate() {
        let mut v = phases.remove(&i).unwrap_or_default();
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        println!(
            "  {name:<width$}  {:>7.2}  {:>7.2}  {mean:>7.2}",
            percentile(&v, 50.0),
            percentile(&v, 99.0)
        );
    }
    println!(
        "  fetch mean over the first quarter of events {:.2} ms, last quarter {:.2} ms (one more pack in the mirror per event)",
        quarter(&fetches, false),
        quarter(&fetches, true)
    );
    totals.sort_by(f64::total_cmp);
    let mean = totals.iter().sum::<f64>() / totals.len() as f64;
    println!("  machine after: {machine_after}");
    println!(
        "  2xx -> first job process running: p50 {:.1} ms, p99 {:.1} ms, mean {mean:.1} ms, max {:.1} ms  (goal p99 < 100 ms)",
        percentile(&totals, 50.0),
        percentile(&totals, 99.0),
        totals.last().copied().unwrap_or(0.0)
    );
}

/// Whether this process is root (the sandbox applies cgroup limits only then).
fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

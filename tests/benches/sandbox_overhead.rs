//! Sandbox start overhead: median wall time of `true` in the sandbox
//! (launcher, cgroups, bubblewrap, namespaces, workspace preparation)
//! minus a bare `true`, with one executor reused as the engine does.

use std::time::{Duration, Instant};

use airlock_pipeline::executor::{Executor, JobRequest, SandboxConfig, SandboxExecutor};
use airlock_pipeline::log::LogSink;
use airlock_tests::sandbox::work_dir;
use tokio_util::sync::CancellationToken;

const RUNS: usize = 60;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let work = work_dir();
    let workspace = work.path().join("ws");
    std::fs::create_dir_all(&workspace).expect("workspace");
    let executor = SandboxExecutor::new(SandboxConfig::default()).expect("bubblewrap");
    let request = |n: usize| JobRequest {
        job: "bench".into(),
        attempt_id: format!("bench-{}-{n}", std::process::id()),
        argv: vec!["true".into()],
        env: Default::default(),
        workspace: workspace.clone(),
        timeout: Duration::from_secs(30),
        resources: Default::default(),
        image: None,
    };

    let mut bare = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let status = tokio::process::Command::new("true")
            .status()
            .await
            .expect("true");
        assert!(status.success());
        bare.push(t.elapsed());
    }
    let mut sandboxed = Vec::new();
    for n in 0..RUNS + 1 {
        let t = Instant::now();
        let exec = executor
            .execute(
                request(n),
                LogSink::new("bench", 1 << 20, None),
                CancellationToken::new(),
            )
            .await
            .expect("sandbox");
        assert!(exec.reason.success());
        if n > 0 {
            // The first run warms the page cache and the cgroup hierarchy.
            sandboxed.push(t.elapsed());
        }
    }
    let (b, s) = (median(bare), median(sandboxed));
    println!(
        "sandbox start overhead ({RUNS} runs each, `true`; cgroups: {:?})",
        executor.config().cgroups
    );
    println!(
        "  bare true, median:        {:>8.2} ms",
        b.as_secs_f64() * 1e3
    );
    println!(
        "  sandboxed true, median:   {:>8.2} ms",
        s.as_secs_f64() * 1e3
    );
    println!(
        "  overhead, median:         {:>8.2} ms  (goal <= 10 ms)",
        s.saturating_sub(b).as_secs_f64() * 1e3
    );
}

//! The sandbox's guarantees, each against real bubblewrap and cgroups.
//! Every test has a control that shows the probe works outside the sandbox,
//! so a test cannot pass because the probe itself is broken.

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use airlock_pipeline::executor::ExitReason;
use airlock_pipeline::spec::ResourceLimits;
use airlock_tests::sandbox::{
    SandboxJob, SmallHostDisk, host_processes_matching, rss_and_peak, work_dir,
};

/// What the job itself wrote (Airlock's own lines, such as the host-mode notice, left out).
fn text(log: &airlock_pipeline::log::JobLog) -> String {
    log.lines
        .iter()
        .filter(|l| l.stream != airlock_pipeline::log::Stream::System)
        .map(|l| format!("{}\n", l.text))
        .collect()
}

#[tokio::test]
async fn job_cannot_connect_to_a_host_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let probe = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo CONNECTED");

    // Control: the same probe outside the sandbox does connect.
    let outside = std::process::Command::new("bash")
        .arg("-c")
        .arg(&probe)
        .output()
        .expect("bash");
    assert!(
        String::from_utf8_lossy(&outside.stdout).contains("CONNECTED"),
        "control probe failed"
    );
    let _ = listener.accept().expect("control connection arrived");

    let work = work_dir();
    let (exec, log) = SandboxJob::new(&format!("bash -c '{probe}'"))
        .run(work.path())
        .await;
    assert_ne!(exec.reason, ExitReason::Exited(0), "log: {}", text(&log));
    assert!(!text(&log).contains("CONNECTED"));
    assert!(
        listener.accept().is_err(),
        "a connection from the sandbox reached the host listener"
    );

    let (_, log) = SandboxJob::new("cat /proc/net/dev").run(work.path()).await;
    let dev = text(&log);
    let ifaces: Vec<&str> = dev
        .lines()
        .filter(|l| l.contains(':'))
        .map(|l| l.trim())
        .collect();
    assert!(
        ifaces.iter().all(|l| l.starts_with("lo:")),
        "only loopback expected: {ifaces:?}"
    );
}

#[tokio::test]
async fn job_cannot_read_files_outside_its_workspace() {
    let outside = work_dir();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "the-secret-value").expect("write");
    // World-readable, so only the sandbox's mounts can hide it.
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    assert_eq!(
        std::fs::read_to_string(&secret).expect("control read"),
        "the-secret-value"
    );

    let work = work_dir();
    let script = format!(
        "cat {} || echo NOT-VISIBLE; cat /root/.bashrc 2>/dev/null || echo NO-HOME",
        secret.display()
    );
    let (exec, log) = SandboxJob::new(&script).run(work.path()).await;
    assert_eq!(exec.reason, ExitReason::Exited(0));
    let out = text(&log);
    assert!(!out.contains("the-secret-value"), "{out}");
    assert!(
        out.contains("NOT-VISIBLE") && out.contains("NO-HOME"),
        "{out}"
    );
}

#[tokio::test]
async fn job_cannot_write_outside_its_workspace_and_tmp_is_private() {
    let work = work_dir();
    let marker = format!("airlock-escape-{}", std::process::id());
    let script = format!(
        "for d in /usr /etc /var/tmp /root; do (echo x > $d/{marker}) 2>/dev/null && echo WROTE-$d; done; \
         echo private > /tmp/{marker}; echo inside > result.txt; echo done"
    );
    let (exec, log) = SandboxJob::new(&script).run(work.path()).await;
    assert_eq!(exec.reason, ExitReason::Exited(0), "{}", text(&log));
    assert!(!text(&log).contains("WROTE-"), "{}", text(&log));
    for dir in ["/usr", "/etc", "/var/tmp", "/root", "/tmp"] {
        assert!(
            !std::path::Path::new(dir).join(&marker).exists(),
            "file appeared in {dir}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(work.path().join("ws/result.txt")).expect("workspace write"),
        "inside\n"
    );
}

#[tokio::test]
async fn job_runs_unprivileged_with_a_cleared_environment() {
    let work = work_dir();
    let mut job = SandboxJob::new(
        "id -u; id -g; env; cat /etc/shadow >/dev/null 2>&1 && echo SHADOW-READ || echo SHADOW-DENIED",
    );
    job.env.insert("JOB_VAR".into(), "job-value".into());
    let (exec, log) = job.run(work.path()).await;
    assert_eq!(exec.reason, ExitReason::Exited(0));
    let out = text(&log);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("65534"), "{out}");
    assert_eq!(lines.next(), Some("65534"), "{out}");
    assert!(out.contains("JOB_VAR=job-value"), "{out}");
    assert!(out.contains("SHADOW-DENIED"), "{out}");
    // Nothing of the runner's environment leaks in.
    for (key, _) in std::env::vars() {
        if !["PATH", "HOME", "LANG", "TMPDIR", "CI", "PWD", "SHLVL", "_"].contains(&key.as_str()) {
            assert!(
                !out.lines().any(|l| l.starts_with(&format!("{key}="))),
                "{key} leaked into the job"
            );
        }
    }
}

#[tokio::test]
async fn fork_bomb_is_stopped_by_the_pids_limit() {
    let work = work_dir();
    // Every bomb process forks two more and waits; at the limit fork fails,
    // and the parent (busy with shell builtins only) counts what is left.
    let script = "set +e; b() { b & b & wait; }; b & i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; \
                  n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo procs=$n";
    let mut job = SandboxJob::new(script);
    job.limits = ResourceLimits {
        pids: Some(64),
        ..Default::default()
    };
    job.timeout = Duration::from_secs(60);
    let started = Instant::now();
    let (exec, log) = job.run(work.path()).await;
    let out = text(&log);
    assert!(
        out.contains("Cannot fork"),
        "the limit never refused a fork ({:?}): {}",
        exec.reason,
        &out[..out.len().min(2000)]
    );
    let procs: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count ({:?})", exec.reason));
    assert!(procs <= 64, "{procs} processes despite pids=64");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the bomb was not contained"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        host_processes_matching("while [ $i -lt 300000 ]").is_empty(),
        "bomb survived the job"
    );
}

#[tokio::test]
async fn pids_limit_is_the_configured_number() {
    let work = work_dir();
    let script = "i=0; while [ $i -lt 200 ]; do sleep 3071 & i=$((i+1)); echo started=$i; done";
    let mut job = SandboxJob::new(script);
    job.limits = ResourceLimits {
        pids: Some(40),
        ..Default::default()
    };
    let (exec, log) = job.run(work.path()).await;
    assert_ne!(exec.reason, ExitReason::Exited(0));
    let out = text(&log);
    let last: u32 = out
        .lines()
        .filter_map(|l| l.strip_prefix("started="))
        .filter_map(|n| n.parse().ok())
        .max()
        .unwrap_or(0);
    // 40 tasks in all: the launcher chain, bubblewrap's init and the shell take a few.
    assert!(
        (30..40).contains(&last),
        "started {last} sleeps under pids=40"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        host_processes_matching("sleep 3071").is_empty(),
        "sleepers survived the job"
    );
}

#[tokio::test]
async fn memory_hog_is_oom_killed_and_reported() {
    let work = work_dir();
    // Grows a shell variable to ~400 MB in 64 MiB of memory.
    let mut job =
        SandboxJob::new("x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived ${#x}");
    job.limits = ResourceLimits {
        memory_bytes: Some(64 << 20),
        ..Default::default()
    };
    let (exec, log) = job.run(work.path()).await;
    assert_eq!(exec.reason, ExitReason::OutOfMemory, "{}", text(&log));
    assert!(!text(&log).contains("survived"));
    assert!(log.to_text().contains("memory limit of 64 MiB exceeded"));
}

#[tokio::test]
async fn endless_output_is_truncated_and_runner_memory_stays_bounded() {
    let work = work_dir();
    let (rss_before, _) = rss_and_peak();
    // ~300 MB of output; the job must still run to completion (we keep draining).
    let mut job = SandboxJob::new(
        "head -c 300000000 /dev/zero | tr '\\0' a | fold -w 100; echo finished >&2",
    );
    job.log_cap = 1 << 20;
    let (exec, log) = job.run(work.path()).await;
    assert_eq!(exec.reason, ExitReason::Exited(0));
    assert!(log.truncated);
    assert!(log.kept_bytes <= 1 << 20);
    assert!(
        log.dropped_bytes > 250_000_000,
        "dropped {}",
        log.dropped_bytes
    );
    assert!(log.lines.iter().any(|l| l.text.contains("log truncated")));
    let (_, peak) = rss_and_peak();
    assert!(
        peak.saturating_sub(rss_before) < 128 << 20,
        "runner memory grew by {} MiB",
        (peak - rss_before) >> 20
    );
}

/// Issue 19: a stream of empty lines once cost nothing against the cap (`yes ''` kept millions
/// of lines in the runner's memory); each line now counts what keeping it costs.
#[tokio::test]
async fn a_flood_of_empty_lines_is_held_to_the_log_cap() {
    use airlock_pipeline::log::LINE_OVERHEAD;
    let work = work_dir();
    let mut job = SandboxJob::new("yes '' | head -n 3000000; echo finished >&2");
    job.log_cap = 1 << 20;
    let (exec, log) = job.run(work.path()).await;
    assert_eq!(exec.reason, ExitReason::Exited(0));
    assert!(log.truncated);
    assert!(
        log.lines.len() <= (1 << 20) / LINE_OVERHEAD + 2,
        "{} lines kept",
        log.lines.len()
    );
    assert!(
        log.dropped_bytes > 2_000_000,
        "dropped {}",
        log.dropped_bytes
    );
}

#[tokio::test]
async fn job_ignoring_sigterm_is_killed_at_timeout_with_its_children() {
    let work = work_dir();
    let tag = format!("{}", 3000 + std::process::id() % 1000);
    let script = format!("trap '' TERM; sleep 1{tag} & sleep 2{tag} & sleep 3{tag}");
    let mut job = SandboxJob::new(&script);
    job.timeout = Duration::from_secs(2);
    job.grace = Duration::from_millis(500);
    let started = Instant::now();
    let (exec, log) = job.run(work.path()).await;
    assert_eq!(exec.reason, ExitReason::TimedOut);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(log.to_text().contains("timeout of 2s reached"));
    for child in [
        format!("sleep 1{tag}"),
        format!("sleep 2{tag}"),
        format!("sleep 3{tag}"),
    ] {
        let left = host_processes_matching(&child);
        assert!(left.is_empty(), "survivors: {left:?}");
    }
}

#[tokio::test]
async fn cgroups_are_removed_after_the_job() {
    use airlock_pipeline::executor::CgroupSupport;
    // This process's cgroups named for a job of this test binary, in every controller.
    let job_cgroups = || {
        let mut found = Vec::new();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        for controller in ["memory", "pids", "cpu"] {
            let rel = own
                .lines()
                .find_map(|l| {
                    let parts: Vec<&str> = l.splitn(3, ':').collect();
                    (parts.len() == 3 && parts[1].split(',').any(|c| c == controller))
                        .then(|| parts[2].to_string())
                })
                .unwrap_or_default();
            let dir = std::path::Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(rel.trim_start_matches('/'));
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with(&format!("airlock-test-{}-", std::process::id())) {
                    found.push(e.path());
                }
            }
        }
        found
    };
    let work = work_dir();
    let ws = work.path().join("ws");
    let job = tokio::spawn({
        let work = work.path().to_path_buf();
        async move {
            SandboxJob::new("touch started; while [ ! -e done ]; do sleep 0.05; done")
                .run(&work)
                .await
        }
    });
    while !ws.join("started").exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Issue 26: while the job runs, its cgroups exist (else "none left" proves nothing).
    let during = job_cgroups();
    std::fs::write(ws.join("done"), "").expect("done");
    let (exec, _) = job.await.expect("job");
    assert_eq!(exec.reason, ExitReason::Exited(0));
    if CgroupSupport::detect() != CgroupSupport::Unavailable {
        assert!(!during.is_empty(), "the running job had no cgroup");
    }
    let leftovers = job_cgroups();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn control_the_probes_do_escape_without_the_sandbox() {
    // Proves the write/read probes above are meaningful: run bare, they work.
    let dir = work_dir();
    let target = dir.path().join("outside.txt");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("echo x > {}", target.display()))
        .status()
        .expect("sh");
    assert!(status.success() && target.exists());
    let mut s = String::new();
    std::fs::File::open(&target)
        .expect("open")
        .read_to_string(&mut s)
        .expect("read");
    assert_eq!(s, "x\n");
}

async fn run_on_small_host(
    disk: &SmallHostDisk,
    reserve: u64,
    script: &str,
) -> Result<(airlock_pipeline::executor::Execution, String), String> {
    use airlock_pipeline::executor::{
        Executor, HostReserve, JobRequest, SandboxConfig, SandboxExecutor,
    };
    let config = SandboxConfig {
        host_reserve: HostReserve { bytes: reserve },
        kill_grace: Duration::from_millis(200),
        ..SandboxConfig::default()
    };
    let executor = SandboxExecutor::new(config).expect("bubblewrap");
    let log = airlock_pipeline::log::LogSink::new("fill", 1 << 20, None);
    let workspace = disk.dir.path().join("jobs").join("fill");
    std::fs::create_dir_all(disk.dir.path().join("jobs")).expect("jobs dir");
    let lease = executor
        .provision_workspace(&workspace, &ResourceLimits::default(), &log)
        .map_err(|e| e.to_string())?;
    let request = JobRequest {
        job: "fill".into(),
        attempt_id: format!("reserve-{}", std::process::id()),
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: Default::default(),
        workspace,
        timeout: Duration::from_secs(60),
        resources: ResourceLimits::default(),
        image: None,
    };
    let exec = executor
        .execute(
            request,
            log.clone(),
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .map_err(|e| e.to_string())?;
    drop(lease);
    Ok((exec, log.finish().to_text()))
}

#[tokio::test]
async fn a_job_is_stopped_before_it_takes_the_hosts_disk_reserve() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let disk = SmallHostDisk::mount(256);
    // Control: writing well within the reserve passes.
    let (exec, log) = run_on_small_host(&disk, 128 << 20, "head -c 20M /dev/zero > small")
        .await
        .expect("runs");
    assert_eq!(exec.reason, ExitReason::Exited(0), "{log}");
    // 200 MiB on a 256 MiB host with a 128 MiB reserve: the job's own limit (10 GiB) is far
    // away, the host's reserve is not. The job writes slowly enough to be watched.
    let (exec, log) = run_on_small_host(
        &disk,
        128 << 20,
        "for i in $(seq 200); do head -c 1M /dev/zero >> big; sleep 0.01; done; echo filled",
    )
    .await
    .expect("runs");
    assert_eq!(exec.reason, ExitReason::HostDiskLow, "{log}");
    assert!(log.contains("below its reserve of 128 MiB"), "{log}");
    assert!(!log.contains("filled"), "{log}");
    let free = airlock_pipeline::executor::HostReserve::free_bytes(disk.dir.path()).expect("df");
    assert!(
        free > 64 << 20,
        "the host kept most of its reserve: {} MiB free",
        free >> 20
    );
    // Below the reserve nothing starts.
    let err = run_on_small_host(&disk, 512 << 20, "true")
        .await
        .expect_err("nothing starts below the reserve");
    assert!(
        err.contains("not started") && err.contains("reserve of 512 MiB"),
        "{err}"
    );
}

/// Issue 19: a pipeline file's requests replace the runner's defaults, so each has a ceiling: a
/// job asking for more memory (a terabyte would mean no cgroup limit in effect), processes or
/// time than the runner allows is refused before it starts.
#[tokio::test]
async fn requests_over_the_runners_ceilings_are_refused_before_the_job_starts() {
    use airlock_pipeline::executor::{SandboxConfig, SandboxExecutor};
    let executor = SandboxExecutor::new(SandboxConfig::default()).expect("bubblewrap");
    let work = work_dir();
    let script = "touch ran";
    // Control: at the ceilings the job runs.
    let mut job = SandboxJob::new(script);
    job.limits.memory_bytes = Some(16 << 30);
    let (done, log) = job.run_in(&work.path().join("control"), &executor).await;
    assert_eq!(
        done.expect("runs").reason,
        ExitReason::Exited(0),
        "{}",
        log.to_text()
    );
    assert!(work.path().join("control/ws/ran").exists());

    let mut memory = SandboxJob::new(script);
    memory.limits.memory_bytes = Some(1 << 40);
    let mut pids = SandboxJob::new(script);
    pids.limits.pids = Some(1 << 30);
    let mut timeout = SandboxJob::new(script);
    timeout.timeout = Duration::from_secs(30 * 86_400);
    for (name, job, says) in [
        (
            "memory",
            memory,
            "1 TiB of memory; this runner allows at most 16 GiB (limits.max_memory)",
        ),
        ("pids", pids, "limits.max_pids"),
        ("timeout", timeout, "limits.max_timeout"),
    ] {
        let (done, _) = job.run_in(&work.path().join(name), &executor).await;
        let err = done.expect_err(name).to_string();
        assert!(err.contains(says), "{name}: {err}");
        assert!(
            !work.path().join(name).join("ws/ran").exists(),
            "{name} ran"
        );
    }
}

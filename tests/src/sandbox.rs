//! Helpers for running one job in the real bubblewrap sandbox.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use airlock_pipeline::executor::{Execution, Executor, JobRequest, SandboxConfig, SandboxExecutor};
use airlock_pipeline::log::{JobLog, LogSink};
use airlock_pipeline::spec::ResourceLimits;
use tokio_util::sync::CancellationToken;

/// A work directory the sandbox user can reach: under /var/tmp, mode 0711
/// (tempfile's default 0700 would lock the unprivileged job out).
pub fn work_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("airlock-test-")
        .tempdir_in("/var/tmp")
        .expect("tempdir in /var/tmp");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    dir
}

/// A small tmpfs standing in for the host's disk (work directories, the image cache), so
/// tests can fill it; unmounted on drop, even when the test fails.
pub struct SmallHostDisk {
    /// The mount point (mode 0711, under /var/tmp).
    pub dir: tempfile::TempDir,
    /// The ext4 image file behind a loop mount.
    image: Option<tempfile::NamedTempFile>,
}

impl SmallHostDisk {
    /// Mounts a tmpfs of `mib` MiB. Needs root.
    pub fn mount(mib: u64) -> SmallHostDisk {
        let dir = work_dir();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={mib}m,mode=0711"))
            .arg("tmpfs")
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(ok.success(), "mount tmpfs");
        SmallHostDisk { dir, image: None }
    }

    /// Loop-mounts an ext4 filesystem of `mib` MiB (no blocks reserved for root), as a real
    /// host's disk would be. Needs root, `mkfs.ext4` and loop devices.
    pub fn ext4(mib: u64) -> SmallHostDisk {
        let image = tempfile::Builder::new()
            .prefix("airlock-disk-")
            .tempfile_in("/var/tmp")
            .expect("image file");
        image.as_file().set_len(mib << 20).expect("size the image");
        let ok = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(image.path())
            .status()
            .expect("mkfs.ext4");
        assert!(ok.success(), "mkfs.ext4");
        let dir = work_dir();
        let ok = std::process::Command::new("mount")
            .args(["-o", "loop,nosuid,nodev"])
            .arg(image.path())
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(ok.success(), "mount the ext4 image");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod");
        SmallHostDisk {
            dir,
            image: Some(image),
        }
    }
}

impl Drop for SmallHostDisk {
    fn drop(&mut self) {
        // Lazily: a test that failed may still hold files open there. The loop device goes
        // with the last reference (mount's autoclear); the image file goes after.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
        drop(self.image.take());
    }
}

/// One job to run in the sandbox.
pub struct SandboxJob {
    /// Shell script (run with /bin/sh -eu -c).
    pub script: String,
    /// Limits.
    pub limits: ResourceLimits,
    /// Timeout.
    pub timeout: Duration,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Grace between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Log cap.
    pub log_cap: usize,
    /// The image it runs in; None: host mode.
    pub image: Option<airlock_pipeline::image::ImageRef>,
}

impl SandboxJob {
    /// A script with a 60 s timeout and default limits.
    pub fn new(script: &str) -> Self {
        SandboxJob {
            script: script.to_string(),
            limits: ResourceLimits::default(),
            timeout: Duration::from_secs(60),
            env: BTreeMap::new(),
            grace: Duration::from_millis(500),
            log_cap: airlock_pipeline::log::DEFAULT_LOG_CAP,
            image: None,
        }
    }

    /// Runs it in a fresh workspace under `work`; returns how it ended and its log.
    pub async fn run(self, work: &std::path::Path) -> (Execution, JobLog) {
        let config = SandboxConfig {
            kill_grace: self.grace,
            ..SandboxConfig::default()
        };
        let executor =
            SandboxExecutor::new(config).expect("bubblewrap is installed (make test installs it)");
        let (execution, log) = self.run_in(work, &executor).await;
        (execution.expect("sandbox runs"), log)
    }

    /// Runs it with `executor` in the workspace `work/ws`; the executor's refusal (no image
    /// where one is required, an image that cannot be pulled) is returned as an error.
    pub async fn run_in(
        self,
        work: &std::path::Path,
        executor: &SandboxExecutor,
    ) -> (
        Result<Execution, airlock_pipeline::executor::ExecutorError>,
        JobLog,
    ) {
        let workspace = work.join("ws");
        std::fs::create_dir_all(&workspace).expect("workspace");
        let log = LogSink::new("probe", self.log_cap, None);
        let request = JobRequest {
            job: "probe".into(),
            attempt_id: format!("test-{}-{}", std::process::id(), unique()),
            argv: vec!["/bin/sh".into(), "-eu".into(), "-c".into(), self.script],
            env: self.env,
            workspace,
            timeout: self.timeout,
            resources: self.limits,
            image: self.image,
        };
        let execution = executor
            .execute(request, log.clone(), CancellationToken::new())
            .await;
        (execution, log.finish())
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Host processes whose command line contains `needle`.
pub fn host_processes_matching(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        // Zombies have an empty cmdline and hold nothing; only live processes count.
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        if status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
        {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) {
            found.push(format!("{name}: {text}"));
        }
    }
    found
}

/// This process's resident set and its peak, in bytes, from /proc/self/status.
pub fn rss_and_peak() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

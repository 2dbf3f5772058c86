//! The embedded default executor: a bubblewrap sandbox.
//!
//! Guarantees (each proven by a test in `tests/e2e/sandbox.rs`):
//! every namespace unshared, so no network but a private loopback; host
//! system directories read-only; only the workspace writable; a private
//! `/tmp`; a cleared environment; an unprivileged uid (when the runner is
//! root, the launcher drops to `sandbox_uid` before bubblewrap starts, so the
//! job is not root outside either); `--die-with-parent` and a new session;
//! cgroup limits joined *before* the job's first instruction. Since issue 11
//! (tests in `ci-cluster/tests/job_isolation.rs`): a seccomp denylist and no
//! nested user namespaces; no inherited descriptor above 2; PID 1's command
//! line masked; the workspace a filesystem of the job's disk limit.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use tracing::instrument;

use super::ceiling::JobCeilings;
use super::cgroup::{Cgroup, CgroupSupport};
use super::disk::{DiskLease, DiskSupport, HostReserve};
use super::root::{HostMode, JobRoot, check_reachable, job_env, job_root, root_args};
use super::seccomp::SeccompPrograms;
use super::supervise::{Terminator, supervise};
use super::{Execution, Executor, ExecutorError, ExitReason, JobRequest, WorkspaceLease};
use crate::image::{ImageCache, ImageSettings, Rootfs};
use crate::log::LogSink;
use crate::spec::ResourceLimits;
use crate::tree::TreeRoot;

/// Where the workspace appears inside the sandbox.
pub const SANDBOX_WORKSPACE: &str = "/workspace";

/// A job's workspace filesystem when it sets no `resources.disk`: 10 GiB, reserved on the host
/// while the job runs.
pub const DEFAULT_DISK_BYTES: u64 = 10 << 30;

/// The host's default reserve of free disk space: 1 GiB.
pub const DEFAULT_HOST_RESERVE_BYTES: u64 = 1 << 30;

/// How often a running job's host is checked against the reserve.
const HOST_RESERVE_POLL: Duration = Duration::from_millis(200);

/// Settings of the sandbox executor.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The bubblewrap binary.
    pub bwrap: PathBuf,
    /// uid and gid the job runs as when the runner is root (default: nobody, 65534).
    pub sandbox_uid: u32,
    /// See `sandbox_uid`.
    pub sandbox_gid: u32,
    /// Time between SIGTERM and SIGKILL on timeout or cancel.
    pub kill_grace: Duration,
    /// Limits applied when a job sets none.
    pub default_limits: ResourceLimits,
    /// Host directories mounted read-only at the same path, for jobs in host mode.
    pub read_only: Vec<PathBuf>,
    /// Where the `read_only` directories are taken from: `/`, except where a test stands in
    /// another host's toolchain.
    pub host_root: PathBuf,
    /// Whether a job that names no image may run on the host's directories.
    pub host_mode: HostMode,
    /// How job images are fetched, verified and kept.
    pub images: ImageSettings,
    /// Which cgroups to use.
    pub cgroups: CgroupSupport,
    /// Whether workspaces get a filesystem of the job's disk limit.
    pub disk: DiskSupport,
    /// Free space the host keeps where work directories live: no attempt starts below it, and
    /// a running job whose writes bring the host below it is stopped.
    pub host_reserve: HostReserve,
    /// The most a job may ask for (timeout, memory, processes, disk).
    pub ceilings: JobCeilings,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            bwrap: PathBuf::from("bwrap"),
            sandbox_uid: 65534,
            sandbox_gid: 65534,
            kill_grace: Duration::from_secs(5),
            default_limits: ResourceLimits {
                cpu_millis: None,
                memory_bytes: Some(4 << 30),
                pids: Some(4096),
                disk_bytes: Some(DEFAULT_DISK_BYTES),
            },
            read_only: [
                "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
            ]
            .iter()
            .map(PathBuf::from)
            .collect(),
            host_root: PathBuf::from("/"),
            host_mode: HostMode::Allow,
            images: ImageSettings::default(),
            cgroups: CgroupSupport::detect(),
            disk: DiskSupport::detect(),
            host_reserve: HostReserve {
                bytes: DEFAULT_HOST_RESERVE_BYTES,
            },
            ceilings: JobCeilings::default(),
        }
    }
}

/// Runs jobs under bubblewrap.
#[derive(Debug, Clone)]
pub struct SandboxExecutor {
    config: SandboxConfig,
    as_root: bool,
    /// None where no filter could be compiled (each job's log says so).
    seccomp: Option<Arc<SeccompPrograms>>,
    /// The image cache, or why it cannot be used (reported to jobs that name an image).
    images: Result<Arc<ImageCache>, String>,
}

impl SandboxExecutor {
    /// Checks that bubblewrap runs here.
    pub fn new(config: SandboxConfig) -> Result<Self, ExecutorError> {
        let probe = std::process::Command::new(&config.bwrap)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                ExecutorError::Unavailable(format!(
                    "cannot run {} ({e}); install it with `apt-get install -y bubblewrap`",
                    config.bwrap.display()
                ))
            })?;
        if !probe.status.success() {
            return Err(ExecutorError::Unavailable(format!(
                "{} --version failed",
                config.bwrap.display()
            )));
        }
        let as_root = nix::unistd::geteuid().is_root();
        let seccomp = match SeccompPrograms::compile() {
            Ok(programs) => Some(Arc::new(programs)),
            Err(why) => {
                tracing::warn!(reason = %why, "jobs will run without a seccomp filter");
                None
            }
        };
        // Pulls keep the same reserve free as jobs' writes do.
        let images = ImageCache::new(ImageSettings {
            reserve_bytes: config.host_reserve.bytes,
            ..config.images.clone()
        })
        .map(Arc::new)
        .map_err(|e| e.to_string());
        Ok(SandboxExecutor {
            config,
            as_root,
            seccomp,
            images,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Prepares a workspace for the sandbox user: reachable through every
    /// parent directory and owned by that user.
    #[deny(clippy::disallowed_methods)]
    fn prepare_workspace(&self, workspace: &Path) -> Result<(), ExecutorError> {
        let err = |reason: String| ExecutorError::Workspace {
            path: workspace.to_path_buf(),
            reason,
        };
        // The workspace holds an untrusted tree: it is opened once (as a directory, never through
        // a link) and re-owned through that handle.
        let root = TreeRoot::open(workspace).map_err(|e| err(e.to_string()))?;
        if !self.as_root {
            return Ok(());
        }
        check_reachable(workspace, "work directories", self.config.sandbox_uid).map_err(err)?;
        root.chown_all(self.config.sandbox_uid, self.config.sandbox_gid)
            .map_err(|e| err(format!("chown: {e}")))
    }

    fn bwrap_args(&self, request: &JobRequest, rootfs: Option<&Rootfs>) -> Vec<String> {
        let mut args: Vec<String> = [
            "--unshare-all",
            // Explicit (--unshare-all only tries): required by --disable-userns.
            "--unshare-user",
            // No user namespace inside the sandbox's own: the door to most unprivileged kernel
            // exploits stays shut even where the seccomp filter is unavailable.
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--hostname",
            "airlock-sandbox",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // The root first: every later mount lands inside it.
        args.extend(root_args(
            rootfs,
            &self.config.host_root,
            &self.config.read_only,
        ));
        args.extend(
            [
                "--proc",
                "/proc",
                // PID 1 is bubblewrap itself: its command line names host paths and every
                // setting, its environment is the launcher's.
                "--ro-bind",
                "/dev/null",
                "/proc/1/cmdline",
                "--ro-bind",
                "/dev/null",
                "/proc/1/environ",
                "--dev",
                "/dev",
                "--tmpfs",
                "/tmp",
            ]
            .map(String::from),
        );
        args.extend([
            "--bind".into(),
            request.workspace.display().to_string(),
            SANDBOX_WORKSPACE.into(),
            "--chdir".into(),
            SANDBOX_WORKSPACE.into(),
            "--clearenv".into(),
        ]);
        if self.seccomp.is_some() {
            // Opened by the launcher (see `command`).
            args.extend(["--add-seccomp-fd", "3", "--add-seccomp-fd", "4"].map(String::from));
        }
        for (k, v) in job_env(rootfs, &request.env) {
            args.extend(["--setenv".into(), k, v]);
        }
        args.push("--".into());
        args.extend(request.argv.iter().cloned());
        args
    }

    fn command(&self, request: &JobRequest, rootfs: Option<&Rootfs>, cgroup: &Cgroup) -> Command {
        let bwrap = self.config.bwrap.display().to_string();
        // The launcher joins the cgroups, opens the seccomp programs as descriptors 3 and 4
        // for bubblewrap, then (as root) drops to the sandbox user and execs bubblewrap: the
        // job is limited from its first instruction and never holds root outside the sandbox.
        let mut script = String::from(
            r#"n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; n=$((n-1)); done; "#,
        );
        if self.seccomp.is_some() {
            script.push_str(r#"exec 3<"$1" 4<"$2" || exit 125; shift 2; "#);
        }
        script.push_str(r#"exec "$@""#);
        let procs = cgroup.procs_files();
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .arg("airlock-launcher")
            .arg(procs.len().to_string())
            .args(procs.iter().map(|p| p.display().to_string()));
        if let Some(programs) = &self.seccomp {
            cmd.args(programs.files());
        }
        if self.as_root {
            cmd.arg("setpriv")
                .arg(format!("--reuid={}", self.config.sandbox_uid))
                .arg(format!("--regid={}", self.config.sandbox_gid))
                .arg("--clear-groups")
                .arg("--");
        }
        cmd.arg(bwrap);
        cmd.args(self.bwrap_args(request, rootfs))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            // Not the runner's own directory: the shell would export it as PWD.
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Own process group: a Ctrl-C at the terminal reaches the runner,
            // which cancels in order, not the job directly.
            .process_group(0);
        cmd
    }

    fn limits(&self, requested: &ResourceLimits) -> ResourceLimits {
        let d = &self.config.default_limits;
        ResourceLimits {
            cpu_millis: requested.cpu_millis.or(d.cpu_millis),
            memory_bytes: requested.memory_bytes.or(d.memory_bytes),
            pids: requested.pids.or(d.pids),
            disk_bytes: requested.disk_bytes.or(d.disk_bytes),
        }
    }
}

/// Cancels `stop` (and says why in `low`) once the host's free space at `dir` falls below the
/// reserve. A failed look is not a reason to stop a job.
async fn watch_host_reserve(
    dir: PathBuf,
    workspace: PathBuf,
    reserve: HostReserve,
    stop: CancellationToken,
    low: Arc<std::sync::atomic::AtomicBool>,
    log: LogSink,
) {
    loop {
        tokio::time::sleep(HOST_RESERVE_POLL).await;
        // What the job wrote may still sit in its filesystem's cache: count it as taken.
        if let Ok(free) = HostReserve::free_bytes(&dir)
            .map(|free| free.saturating_sub(HostReserve::pending_bytes(&workspace)))
            && free < reserve.bytes
        {
            log.system(format!(
                "[airlock] stopping the job: the host's free disk space ({} MiB) fell below its reserve of {} MiB",
                free >> 20,
                reserve.bytes >> 20
            ));
            low.store(true, std::sync::atomic::Ordering::SeqCst);
            stop.cancel();
            return;
        }
    }
}

struct SandboxTree<'a> {
    cgroup: &'a Cgroup,
    launcher: Option<u32>,
}

impl Terminator for SandboxTree<'_> {
    fn signal_tree(&self, signal: Signal) {
        self.cgroup.signal_all(signal);
        // Without cgroups, killing bubblewrap is enough: its child dies with
        // it (--die-with-parent) and the pid namespace takes every descendant.
        if let Some(pid) = self.launcher.and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }
}

impl Executor for SandboxExecutor {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn provision_workspace(
        &self,
        path: &Path,
        limits: &ResourceLimits,
        log: &LogSink,
    ) -> Result<WorkspaceLease, ExecutorError> {
        let err = |reason: String| ExecutorError::Workspace {
            path: path.to_path_buf(),
            reason,
        };
        self.config
            .ceilings
            .check_resources(limits)
            .map_err(|e| err(format!("not started: {e}")))?;
        let bytes = self.limits(limits).disk_bytes;
        if let Some(parent) = path.parent() {
            self.config
                .host_reserve
                .check(parent)
                .map_err(|e| err(format!("not started: {e}")))?;
        }
        match (bytes, self.config.disk, self.as_root) {
            (Some(bytes), DiskSupport::LoopMount, true) => DiskLease::mount(
                path,
                bytes,
                self.config.sandbox_uid,
                self.config.sandbox_gid,
            )
            .map(WorkspaceLease::disk)
            .map_err(|e| err(format!("disk limit: {e}"))),
            (bytes, ..) => {
                if bytes.is_some() {
                    log.system(
                        "[airlock] warning: loop devices unavailable here (needs root and mkfs.ext4); the disk limit is not enforced",
                    );
                }
                WorkspaceLease::plain_dir(path)
            }
        }
    }

    #[instrument(skip_all, fields(job = %request.job, attempt = %request.attempt_id))]
    async fn execute(
        &self,
        request: JobRequest,
        log: LogSink,
        cancel: CancellationToken,
    ) -> Result<Execution, ExecutorError> {
        let ceilings = &self.config.ceilings;
        ceilings
            .check_resources(&request.resources)
            .and_then(|()| ceilings.check_timeout(request.timeout))
            .map_err(ExecutorError::Limits)?;
        self.prepare_workspace(&request.workspace)?;
        let pull_started = std::time::Instant::now();
        let rootfs = match job_root(
            &self.config,
            &self.images,
            self.as_root,
            &request,
            &log,
            &cancel,
        )
        .await?
        {
            JobRoot::Ready(rootfs) => rootfs,
            JobRoot::Stopped(reason) => {
                let now = SystemTime::now();
                return Ok(Execution {
                    reason,
                    started: now,
                    finished: now,
                });
            }
        };
        // The job's timeout covers pulling its image too.
        let deadline = tokio::time::Instant::from_std(pull_started) + request.timeout;
        let limits = self.limits(&request.resources);
        let support = if self.as_root {
            self.config.cgroups
        } else {
            CgroupSupport::Unavailable
        };
        if self.seccomp.is_none() {
            log.system("[airlock] warning: no seccomp filter here; only namespaces confine the job's system calls");
        }
        if support == CgroupSupport::Unavailable {
            log.system("[airlock] warning: cgroups unavailable here; memory, pids and cpu limits are not enforced");
        }
        let cgroup = Cgroup::create(support, &request.attempt_id, &limits)
            .map_err(|e| ExecutorError::Limits(e.to_string()))?;
        // A descriptor this process inherited without close-on-exec (a shell's `9>>file`, a
        // parent's leak) would otherwise pass through bubblewrap into the job. Everything the
        // job should have is 0-2; mark the rest close-on-exec (the process's own are already).
        close_fds::set_fds_cloexec_threadsafe(3, &[]);
        let started = SystemTime::now();
        let child = self
            .command(&request, rootfs.as_ref(), &cgroup)
            .spawn()
            .map_err(ExecutorError::Spawn)?;
        tracing::debug!(pid = child.id(), "sandbox started");
        let tree = SandboxTree {
            cgroup: &cgroup,
            launcher: child.id(),
        };
        // The job's writes land on the host's disk (sparse workspace image): watch the reserve.
        let stop = cancel.child_token();
        let disk_low = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watchdog = request.workspace.parent().map(|dir| {
            tokio::spawn(watch_host_reserve(
                dir.to_path_buf(),
                request.workspace.clone(),
                self.config.host_reserve,
                stop.clone(),
                disk_low.clone(),
                log.clone(),
            ))
        });
        let reason = supervise(
            child,
            &log,
            request.timeout,
            deadline,
            self.config.kill_grace,
            &stop,
            &tree,
        )
        .await
        .map_err(ExecutorError::Spawn);
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        let mut reason = reason?;
        if reason == ExitReason::Cancelled && disk_low.load(std::sync::atomic::Ordering::SeqCst) {
            reason = ExitReason::HostDiskLow;
        }
        let reason = match reason {
            ExitReason::Exited(0) => reason,
            ExitReason::TimedOut | ExitReason::Cancelled => reason,
            _ if cgroup.oom_killed() => {
                log.system(format!(
                    "[airlock] killed by the kernel: memory limit of {} MiB exceeded",
                    limits.memory_bytes.unwrap_or(0) >> 20
                ));
                ExitReason::OutOfMemory
            }
            ExitReason::Exited(125) if self.as_root => {
                log.system("[airlock] the launcher could not join the job's cgroups");
                reason
            }
            _ => reason,
        };
        cgroup.remove().await;
        Ok(Execution {
            reason,
            started,
            finished: SystemTime::now(),
        })
    }
}

//! Resource limits through cgroups: v2 where the unified hierarchy has
//! controllers, else the v1 `memory`, `pids` and `cpu` controllers.
//!
//! Each attempt gets its own group under the runner's own group, so limits
//! nest inside whatever the host already imposes. Groups are removed after.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::spec::ResourceLimits;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CPU_PERIOD_US: u64 = 100_000;

/// Which cgroup layout this host offers us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupSupport {
    /// Unified hierarchy with controllers.
    V2,
    /// Legacy per-controller hierarchies.
    V1,
    /// None we can write to: limits are not enforced.
    Unavailable,
}

impl CgroupSupport {
    /// Looks at this host.
    pub fn detect() -> CgroupSupport {
        let root = Path::new(CGROUP_ROOT);
        if root.join("cgroup.controllers").exists() {
            return CgroupSupport::V2;
        }
        let v1 = ["memory", "pids", "cpu"]
            .iter()
            .all(|c| root.join(c).join("cgroup.procs").exists());
        let writable = nix::unistd::geteuid().is_root();
        if v1 && writable {
            CgroupSupport::V1
        } else {
            CgroupSupport::Unavailable
        }
    }
}

/// The groups of one attempt.
#[derive(Debug)]
pub(super) struct Cgroup {
    /// (controller, directory); controller is "" for v2.
    dirs: Vec<(&'static str, PathBuf)>,
}

impl Cgroup {
    /// Creates the groups and writes the limits.
    pub(super) fn create(
        support: CgroupSupport,
        name: &str,
        limits: &ResourceLimits,
    ) -> io::Result<Cgroup> {
        let mut cg = Cgroup { dirs: Vec::new() };
        match support {
            CgroupSupport::Unavailable => return Ok(cg),
            CgroupSupport::V1 => {
                for controller in ["memory", "pids", "cpu"] {
                    let dir = own_group(controller).join(format!("airlock-{name}"));
                    fs::create_dir_all(&dir)?;
                    cg.dirs.push((controller, dir));
                }
                if let Some(bytes) = limits.memory_bytes {
                    let dir = cg.dir("memory");
                    fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string())?;
                    // Without this the job swaps instead of hitting its limit.
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        fs::write(memsw, bytes.to_string())?;
                    }
                }
                if let Some(pids) = limits.pids {
                    fs::write(cg.dir("pids").join("pids.max"), pids.to_string())?;
                }
                if let Some(millis) = limits.cpu_millis {
                    let quota = millis * CPU_PERIOD_US / 1000;
                    fs::write(
                        cg.dir("cpu").join("cpu.cfs_period_us"),
                        CPU_PERIOD_US.to_string(),
                    )?;
                    fs::write(cg.dir("cpu").join("cpu.cfs_quota_us"), quota.to_string())?;
                }
            }
            CgroupSupport::V2 => {
                let dir = own_group("").join(format!("airlock-{name}"));
                fs::create_dir_all(&dir)?;
                cg.dirs.push(("", dir.clone()));
                if let Some(bytes) = limits.memory_bytes {
                    fs::write(dir.join("memory.max"), bytes.to_string())?;
                    let _ = fs::write(dir.join("memory.swap.max"), "0");
                }
                if let Some(pids) = limits.pids {
                    fs::write(dir.join("pids.max"), pids.to_string())?;
                }
                if let Some(millis) = limits.cpu_millis {
                    fs::write(
                        dir.join("cpu.max"),
                        format!("{} {CPU_PERIOD_US}", millis * CPU_PERIOD_US / 1000),
                    )?;
                }
            }
        }
        Ok(cg)
    }

    fn dir(&self, controller: &str) -> &Path {
        self.dirs
            .iter()
            .find(|(c, _)| *c == controller)
            .map(|(_, d)| d.as_path())
            .unwrap_or(Path::new("/nonexistent"))
    }

    /// The `cgroup.procs` files a launcher writes its pid into before it execs the job.
    pub(super) fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|(_, d)| d.join("cgroup.procs"))
            .collect()
    }

    /// Every process in the group (host pids).
    pub(super) fn pids(&self) -> Vec<i32> {
        let Some((_, dir)) = self.dirs.iter().find(|(c, _)| *c == "pids" || c.is_empty()) else {
            return Vec::new();
        };
        fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Signals every process in the group.
    pub(super) fn signal_all(&self, signal: Signal) {
        for pid in self.pids() {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// Whether the kernel's OOM killer killed something in the group.
    pub(super) fn oom_killed(&self) -> bool {
        let file = match self
            .dirs
            .iter()
            .find(|(c, _)| *c == "memory" || c.is_empty())
        {
            Some(("memory", dir)) => dir.join("memory.oom_control"),
            Some((_, dir)) => dir.join("memory.events"),
            None => return false,
        };
        fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("oom_kill "))
            .any(|n| n.trim().parse::<u64>().unwrap_or(0) > 0)
    }

    /// Kills what is left and removes the groups.
    pub(super) async fn remove(mut self) {
        // Exiting processes linger in cgroup.procs for a moment; poll briefly
        // first (the common case) and back off only for stubborn leftovers.
        for attempt in 0u64..100 {
            if self.pids().is_empty() {
                break;
            }
            self.signal_all(Signal::SIGKILL);
            tokio::time::sleep(std::time::Duration::from_millis(if attempt < 20 {
                1
            } else {
                20
            }))
            .await;
        }
        for (_, dir) in self.dirs.drain(..) {
            if let Err(e) = fs::remove_dir(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove cgroup");
            }
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Only reached when `remove` was not awaited (a panic or an early return).
        for (_, dir) in &self.dirs {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// This process's own group for `controller` ("" for v2), from /proc/self/cgroup.
fn own_group(controller: &str) -> PathBuf {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let rel = text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if controller.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        hit.then(|| path.trim_start_matches('/').to_string())
    });
    let base = if controller.is_empty() {
        PathBuf::from(CGROUP_ROOT)
    } else {
        Path::new(CGROUP_ROOT).join(controller)
    };
    match rel {
        Some(rel) if !rel.is_empty() && base.join(&rel).is_dir() => base.join(rel),
        _ => base,
    }
}

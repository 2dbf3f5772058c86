//! A job's disk limit: its workspace is a filesystem of exactly that size, and the host keeps a
//! reserve of free space no job may take.
//!
//! The workspace is an ext4 filesystem in a sparse image file, loop-mounted `nosuid,nodev` at the
//! workspace path: a job that writes past its limit gets `ENOSPC` inside its own filesystem. The
//! image takes host space only as the job writes, so the host also keeps a **reserve** (as the
//! kubelet keeps `nodefs.available`): an attempt does not start while the host's free space is
//! below it, and a running job is stopped when its writes bring the host below it (see
//! [`HostReserve`]). Reserving every job's whole limit up front was tried first: ten parallel
//! jobs then needed 100 GiB free before any of them wrote a byte. The lease lasts from workspace
//! preparation through output collection; dropping it unmounts and deletes the image.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether this host can give workspaces a size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskSupport {
    /// Root, `mkfs.ext4` and loop devices are available.
    LoopMount,
    /// Not here: disk limits are not enforced (the run says so).
    Unavailable,
}

impl DiskSupport {
    /// Looks at this host.
    pub fn detect() -> DiskSupport {
        let root = nix::unistd::geteuid().is_root();
        let loop_control = Path::new("/dev/loop-control").exists();
        let mkfs = Command::new("mkfs.ext4")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if root && loop_control && mkfs {
            DiskSupport::LoopMount
        } else {
            DiskSupport::Unavailable
        }
    }
}

/// Free space the host keeps for itself on the filesystem holding the work directories.
#[derive(Debug, Clone, Copy)]
pub struct HostReserve {
    /// Bytes that must stay free.
    pub bytes: u64,
}

impl HostReserve {
    /// Free bytes (for unprivileged users too, as `df` shows) on the filesystem holding `path`.
    pub fn free_bytes(path: &Path) -> io::Result<u64> {
        let stat = nix::sys::statvfs::statvfs(path)?;
        Ok(stat.blocks_available().saturating_mul(stat.fragment_size()))
    }

    /// Host bytes a workspace's filesystem will still take: what the job has written into it
    /// (its used space, dirty page cache included) beyond what its image already holds on the
    /// host. Zero for a workspace that is a plain directory.
    pub fn pending_bytes(workspace: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(image) = std::fs::metadata(image_path(workspace)) else {
            return 0;
        };
        let Ok(inner) = nix::sys::statvfs::statvfs(workspace) else {
            return 0;
        };
        let used = inner
            .blocks()
            .saturating_sub(inner.blocks_free())
            .saturating_mul(inner.fragment_size());
        used.saturating_sub(image.blocks().saturating_mul(512))
    }

    /// An error naming both figures when the host is below the reserve at `path`.
    pub fn check(&self, path: &Path) -> io::Result<()> {
        // The work directory may not exist yet: its nearest existing ancestor is on the same
        // filesystem it will be created on.
        let existing = path.ancestors().find(|p| p.exists()).unwrap_or(path);
        let free = HostReserve::free_bytes(existing)?;
        if free < self.bytes {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "the host has {} MiB free where work directories live, below its reserve of {} MiB",
                    free >> 20,
                    self.bytes >> 20
                ),
            ));
        }
        Ok(())
    }
}

/// A size-limited filesystem mounted at a workspace; unmounted and deleted on drop.
#[derive(Debug)]
pub struct DiskLease {
    image: PathBuf,
    mountpoint: PathBuf,
}

/// The image file beside the workspace (in the host-only `jobs/` directory, never mounted into
/// a sandbox).
fn image_path(workspace: &Path) -> PathBuf {
    let mut name = workspace
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".disk");
    workspace.with_file_name(name)
}

fn run(cmd: &mut Command, what: &str) -> io::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl DiskLease {
    /// Makes `workspace` (an absent or empty directory) a filesystem of `bytes`, owned by
    /// `uid:gid` at its root.
    pub fn mount(workspace: &Path, bytes: u64, uid: u32, gid: u32) -> io::Result<DiskLease> {
        let image = image_path(workspace);
        // A crash may have left a previous attempt mounted here.
        unmount(workspace);
        match std::fs::remove_file(&image) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(workspace)?;
        let file = File::options().write(true).create_new(true).open(&image)?;
        // Sparse: host space is taken only as the job writes; the host reserve bounds the sum.
        file.set_len(bytes)?;
        drop(file);
        let lease = DiskLease {
            image,
            mountpoint: workspace.to_path_buf(),
        };
        run(
            Command::new("mkfs.ext4")
                // No journal: the filesystem lives exactly as long as one attempt.
                .args(["-q", "-F", "-m", "0", "-O", "^has_journal", "-E"])
                .arg(format!(
                    "lazy_itable_init=1,nodiscard,root_owner={uid}:{gid}"
                ))
                .arg(&lease.image),
            "mkfs.ext4",
        )?;
        run(
            Command::new("mount")
                .args(["-t", "ext4", "-o", "loop,nosuid,nodev,noatime"])
                .arg(&lease.image)
                .arg(&lease.mountpoint),
            "mount",
        )?;
        // mkfs's lost+found would show up in every job's workspace.
        std::fs::remove_dir(lease.mountpoint.join("lost+found"))?;
        Ok(lease)
    }
}

/// Unmounts `path` if something is mounted there (as the kernel's mount table says).
fn unmount(path: &Path) {
    // The table names canonical paths.
    let path = &path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if mounts_beneath(path).is_ok_and(|mounts| mounts.iter().any(|m| m == path)) {
        let ok = Command::new("umount")
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds it (a straggler the kernel is tearing down): detach now,
            // the kernel frees it when the last user goes.
            let _ = Command::new("umount").arg("-l").arg(path).status();
        }
    }
}

impl Drop for DiskLease {
    fn drop(&mut self) {
        unmount(&self.mountpoint);
        if let Err(e) = std::fs::remove_file(&self.image) {
            tracing::warn!(image = %self.image.display(), error = %e, "could not remove a workspace disk image");
        }
    }
}

/// Mount points at or beneath `root`, deepest first, from the kernel's table of this process's
/// mount namespace (octal escapes such as `\040` decoded).
pub fn mounts_beneath(root: &Path) -> io::Result<Vec<PathBuf>> {
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut found: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|escaped| PathBuf::from(unescape_mount_path(escaped)))
        .filter(|mount| mount.starts_with(root))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    Ok(found)
}

fn unescape_mount_path(escaped: &str) -> String {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes a work directory (a run's or a rebuild's) and everything in it. Workspace
/// filesystems still mounted beneath it — left by a process killed mid-job, whose leases never
/// dropped — are detached first, so removal neither fails on a mount point nor leaves the mount
/// behind. A missing directory is not an error.
pub fn remove_work_dir(path: &Path) -> io::Result<()> {
    let root = match path.canonicalize() {
        Ok(root) => root,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for mount in mounts_beneath(&root)? {
        tracing::info!(mount = %mount.display(), "detaching a workspace filesystem left by an earlier process");
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&mount)
            .stderr(Stdio::null())
            .status();
    }
    std::fs::remove_dir_all(&root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(
            unescape_mount_path(r"/var/tmp/a\040b\011c"),
            "/var/tmp/a b\tc"
        );
        assert_eq!(unescape_mount_path(r"/x\\y\09"), r"/x\\y\09");
    }

    #[test]
    fn a_workspace_left_mounted_by_a_killed_process_is_detached_and_removed() {
        if DiskSupport::detect() != DiskSupport::LoopMount {
            return;
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let work = tmp.path().join("run-1");
        let ws = work.join("jobs/build");
        let lease = DiskLease::mount(&ws, 32 << 20, 0, 0).expect("mount");
        std::fs::write(ws.join("f"), "x").expect("write");
        // A killed process never drops its lease.
        std::mem::forget(lease);
        assert_eq!(
            mounts_beneath(&work).expect("mounts"),
            std::slice::from_ref(&ws),
            "control"
        );
        // Plain removal fails on the mount point (after emptying the job's filesystem).
        assert!(std::fs::remove_dir_all(&work).is_err(), "control");
        remove_work_dir(&work).expect("remove");
        assert!(!work.exists());
        assert!(mounts_beneath(tmp.path()).expect("mounts").is_empty());
    }
}

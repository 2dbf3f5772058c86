//! A job's disk limit: its workspace is a filesystem of exactly that size.
//!
//! The workspace is an ext4 filesystem in an image file *fully allocated up front*
//! (`fallocate`), loop-mounted `nosuid,nodev` at the workspace path. A job that writes past its
//! limit gets `ENOSPC` inside its own filesystem; the host's disk (where `ci.sqlite`, the outbox
//! and the artifact store live) is never touched by its writes, because the space was taken
//! before the job started. If the host cannot spare the space, the attempt fails before it
//! starts, with the reason. The lease lasts from workspace preparation through output
//! collection; dropping it unmounts and deletes the image.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::FallocateFlags;

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
        // Take the whole size now: a job can then never consume the host's free space.
        let len = i64::try_from(bytes).map_err(io::Error::other)?;
        if let Err(errno) = nix::fcntl::fallocate(&file, FallocateFlags::empty(), 0, len) {
            drop(file);
            let _ = std::fs::remove_file(&image);
            return Err(io::Error::new(
                io::Error::from(errno).kind(),
                format!(
                    "cannot reserve the job's disk limit of {} MiB on the host ({errno}); \
                     free space or lower `resources.disk`",
                    bytes >> 20
                ),
            ));
        }
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

fn unmount(path: &Path) {
    let mounted = |p: &Path| {
        Command::new("mountpoint")
            .arg("-q")
            .arg(p)
            .status()
            .is_ok_and(|s| s.success())
    };
    if mounted(path) {
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

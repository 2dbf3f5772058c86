//! What a sandboxed job sees as `/`: the image it names (read-only), or, in host mode, the
//! host's system directories (read-only) where the configuration allows that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::image::Rootfs;

/// The line a job's log starts with when it runs in host mode.
pub const HOST_MODE_NOTICE: &str = "[airlock] host mode: this job names no image, so it runs on this host's system directories (read-only)";

/// Whether a job that names no image may run on the host's system directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostMode {
    /// It may; its log says it ran in host mode.
    #[default]
    Allow,
    /// It is refused: every job must name an image.
    Deny,
}

/// bubblewrap arguments that build the job's root: the image bound read-only at `/`, or the
/// host directories `read_only` (taken from beneath `host_root`) bound at their own paths.
/// They come before every other mount, which lands inside this root.
pub(super) fn root_args(
    rootfs: Option<&Rootfs>,
    host_root: &Path,
    read_only: &[PathBuf],
) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(rootfs) = rootfs {
        args.extend([
            "--ro-bind".into(),
            rootfs.path.display().to_string(),
            "/".into(),
        ]);
        return args;
    }
    for dir in read_only {
        let Ok(inside) = dir.strip_prefix("/") else {
            continue;
        };
        let source = host_root.join(inside);
        match std::fs::symlink_metadata(&source) {
            // merged-/usr systems: /bin -> usr/bin; recreate the link, don't bind it.
            Ok(m) if m.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(&source) {
                    args.extend([
                        "--symlink".into(),
                        target.display().to_string(),
                        dir.display().to_string(),
                    ]);
                }
            }
            Ok(_) => args.extend([
                "--ro-bind".into(),
                source.display().to_string(),
                dir.display().to_string(),
            ]),
            Err(_) => {}
        }
    }
    args
}

/// The job's whole environment: a minimal base, then the image config's variables (its
/// `PATH`, say), then the job's own (which include the `AIRLOCK_*` ones).
pub(super) fn job_env(
    rootfs: Option<&Rootfs>,
    job: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
        (
            "PATH".to_string(),
            "/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin".to_string(),
        ),
        ("HOME".into(), "/tmp".into()),
        ("TMPDIR".into(), "/tmp".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("CI".into(), "true".into()),
        ("AIRLOCK".into(), "1".into()),
    ]);
    if let Some(rootfs) = rootfs {
        env.extend(rootfs.env.iter().cloned());
    }
    env.extend(job.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

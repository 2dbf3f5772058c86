//! What a sandboxed job sees as `/`: the image it names (read-only), or, in host mode, the
//! host's system directories (read-only) where the configuration allows that.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::sandbox::SandboxConfig;
use super::{ExecutorError, ExitReason, JobRequest};
use crate::image::{ImageCache, Rootfs};
use crate::log::LogSink;

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

/// What the job runs in, or why it never started.
pub(super) enum JobRoot {
    /// Its image (`None`: host mode).
    Ready(Option<Rootfs>),
    /// Its timeout ran out or it was cancelled while the image was being pulled.
    Stopped(ExitReason),
}

/// The job's root: its image, pulled and unpacked unless cached; or host mode, if allowed. A
/// pull counts against the job's timeout and stops when the run is cancelled.
pub(super) async fn job_root(
    config: &SandboxConfig,
    images: &Result<Arc<ImageCache>, String>,
    as_root: bool,
    request: &JobRequest,
    log: &LogSink,
    cancel: &CancellationToken,
) -> Result<JobRoot, ExecutorError> {
    let Some(image) = &request.image else {
        return match config.host_mode {
            HostMode::Allow => {
                log.system(HOST_MODE_NOTICE);
                Ok(JobRoot::Ready(None))
            }
            HostMode::Deny => Err(ExecutorError::Image(
                "this job names no image and this runner does not allow host mode: add `image: REPOSITORY@sha256:<digest>` to the job or the top of the pipeline file".into(),
            )),
        };
    };
    let cache = images.as_ref().map_err(|why| {
        ExecutorError::Image(format!("{image}: the image cache is unusable: {why}"))
    })?;
    // Dropping the pull removes its temporary directory; nothing half-made is ever cached.
    let rootfs = tokio::select! {
        pulled = tokio::time::timeout(request.timeout, cache.ensure(image, log)) => match pulled {
            Ok(pulled) => pulled.map_err(|e| ExecutorError::Image(format!("{image}: {e}")))?,
            Err(_) => {
                log.system(format!(
                    "[airlock] image {image}: the job's timeout of {} s ran out while pulling",
                    request.timeout.as_secs()
                ));
                return Ok(JobRoot::Stopped(ExitReason::TimedOut));
            }
        },
        () = cancel.cancelled() => {
            log.system(format!("[airlock] image {image}: cancelled while pulling"));
            return Ok(JobRoot::Stopped(ExitReason::Cancelled));
        }
    };
    if as_root {
        check_reachable(
            &rootfs.path.join("."),
            "the image cache",
            config.sandbox_uid,
        )
        .map_err(ExecutorError::Image)?;
    }
    Ok(JobRoot::Ready(Some(rootfs)))
}

/// The sandbox user (bubblewrap runs as it) must traverse every directory above `path`.
pub(super) fn check_reachable(path: &Path, what: &str, sandbox_uid: u32) -> Result<(), String> {
    for ancestor in path.ancestors().skip(1) {
        // The host's own directories above the workspace or image cache.
        #[allow(clippy::disallowed_methods)]
        let meta = std::fs::metadata(ancestor).map_err(|e| e.to_string())?;
        let traversable = meta.mode() & 0o001 != 0 || meta.uid() == sandbox_uid;
        if !traversable {
            return Err(format!(
                "the sandbox user {sandbox_uid} cannot reach {}: {} has mode {:o}; put {what} \
                 under a traversable path such as /var/tmp (the default) or `chmod o+x` the \
                 directory",
                path.display(),
                ancestor.display(),
                meta.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

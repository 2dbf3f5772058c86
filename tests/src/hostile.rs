//! What the untrusted-tree tests attack: a host directory a job must never reach.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// A 0700 directory `parent/host` holding a 0600 `victim.conf` with `content`, as a
/// root-owned file on a real host.
pub fn host_victim_dir(parent: &Path, content: &str) -> PathBuf {
    let host = parent.join("host");
    std::fs::create_dir_all(&host).expect("mkdir host");
    std::fs::write(host.join("victim.conf"), content).expect("write victim");
    std::fs::set_permissions(
        host.join("victim.conf"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod victim");
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o700)).expect("chmod host");
    host
}

/// Stdout and stderr of a finished command, as one text.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

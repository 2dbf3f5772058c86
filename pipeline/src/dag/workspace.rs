//! Preparing a job's workspace: a fresh copy of the source tree plus the
//! outputs of every job it needs, at their workspace paths.
//!
//! The source tree came from an untrusted commit and the inputs from untrusted jobs: every
//! operation goes through [`TreeRoot`], so no link in either is ever followed by the host.
#![deny(clippy::disallowed_methods)]

use std::io;
use std::path::Path;

use crate::outputs::{ContentStore, OutputFile};
use crate::tree::TreeRoot;

/// Fills the empty directory `dest` with a copy of `source` (files, permission bits, symlinks
/// as symlinks) and the given outputs.
pub(super) fn fill(
    source: &Path,
    dest: &Path,
    store: &ContentStore,
    inputs: &[OutputFile],
) -> io::Result<()> {
    let source = TreeRoot::open(source)?;
    let dest = TreeRoot::open(dest)?;
    source.copy_into(&dest)?;
    for file in inputs {
        // Paths were checked when the producing job collected them; TreeRoot checks again
        // (no `..`, not absolute, no link on the way) because this is where one would do harm.
        store
            .copy_out(file, &dest, Path::new(&file.path))
            .map_err(|e| io::Error::new(e.kind(), format!("input '{}': {e}", file.path)))?;
    }
    Ok(())
}

/// Removes a previous attempt's workspace. `std::fs::remove_dir_all` never follows links below
/// its argument (it walks with `openat`/`unlinkat` and `O_NOFOLLOW`); the argument itself is the
/// host's own path.
pub(super) fn remove_workspace(dest: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

//! Preparing a job's workspace: a fresh copy of the source tree plus the
//! outputs of every job it needs, at their workspace paths.

use std::fs;
use std::io;
use std::path::Path;

use crate::outputs::{ContentStore, OutputFile};

/// Replaces `dest` with a copy of `source` (files, executable bits,
/// symlinks as symlinks) and the given outputs.
pub(super) fn prepare(
    source: &Path,
    dest: &Path,
    store: &ContentStore,
    inputs: &[OutputFile],
) -> io::Result<()> {
    if dest.exists() {
        fs::remove_dir_all(dest)?;
    }
    fs::create_dir_all(dest)?;
    copy_tree(source, dest)?;
    for file in inputs {
        // Paths were checked when the producing job collected them; check again
        // because this is where a bad path would do harm.
        if file.path.split('/').any(|c| c == ".." || c.is_empty()) || file.path.starts_with('/') {
            return Err(io::Error::other(format!(
                "refusing output path '{}'",
                file.path
            )));
        }
        let target = dest.join(&file.path);
        if target.exists() {
            fs::remove_file(&target)?;
        }
        store.copy_out(file, &target)?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    for entry in walkdir::WalkDir::new(from).follow_links(false).min_depth(1) {
        let entry = entry.map_err(io::Error::other)?;
        let rel = entry.path().strip_prefix(from).map_err(io::Error::other)?;
        let target = to.join(rel);
        let kind = entry.file_type();
        if kind.is_dir() {
            fs::create_dir_all(&target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

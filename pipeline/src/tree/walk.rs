//! Listing an untrusted tree through directory handles, never following a link.
#![deny(clippy::disallowed_methods)]

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;

use super::{EntryKind, EntryMeta, TreeError, TreeRoot};

/// One entry found by [`TreeRoot::walk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Path relative to the tree's root.
    pub rel: PathBuf,
    /// What it is (links are links).
    pub meta: EntryMeta,
}

impl TreeRoot {
    /// Every entry beneath `rel_dir` (not `rel_dir` itself), depth first, each directory before
    /// its contents, names in byte order. Links are listed, never entered. An explicit stack,
    /// not recursion: a hostile, deeply nested tree cannot overflow the thread's stack.
    pub fn walk(&self, rel_dir: &Path) -> Result<Vec<TreeEntry>, TreeError> {
        self.walk_at_most(rel_dir, usize::MAX)
    }

    /// [`Self::walk`], refused with [`TreeError::TooManyEntries`] as soon as more than `max`
    /// entries are seen (before they are all listed, so a huge tree costs `max` entries).
    pub fn walk_at_most(&self, rel_dir: &Path, max: usize) -> Result<Vec<TreeEntry>, TreeError> {
        let mut out = Vec::new();
        let mut pending = vec![rel_dir.to_path_buf()];
        while let Some(dir_rel) = pending.pop() {
            let fd = self.open_beneath(
                "list directory",
                &dir_rel,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                Mode::empty(),
            )?;
            let mut dir = Dir::from_fd(fd).map_err(|e| self.io("list directory", &dir_rel, e))?;
            let mut names: Vec<Vec<u8>> = Vec::new();
            for entry in dir.iter() {
                let entry = entry.map_err(|e| self.io("list directory", &dir_rel, e))?;
                let name = entry.file_name().to_bytes();
                if name != b"." && name != b".." {
                    if out.len() + names.len() >= max {
                        return Err(TreeError::TooManyEntries {
                            path: dir_rel.display().to_string(),
                            max,
                        });
                    }
                    names.push(name.to_vec());
                }
            }
            names.sort();
            let mut subdirs = Vec::new();
            for name in names {
                let name = OsStr::from_bytes(&name);
                let rel = dir_rel.join(name);
                let stat = nix::sys::stat::fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| self.io("inspect", &rel, e))?;
                let meta = EntryMeta::from_stat(&stat);
                if meta.kind == EntryKind::Dir {
                    subdirs.push(rel.clone());
                }
                out.push(TreeEntry { rel, meta });
            }
            // Reversed so the first name is walked first.
            pending.extend(subdirs.into_iter().rev());
        }
        // Pre-order by path, so a directory always precedes its contents.
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(out)
    }
}

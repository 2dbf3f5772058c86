//! Removing, linking and re-moding entries of an untrusted tree (layer unpacking needs these:
//! whiteouts remove, hard links link, a re-stated directory changes mode).
#![deny(clippy::disallowed_methods)]

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;

use super::{EntryKind, TreeError, TreeRoot};

impl TreeRoot {
    /// Removes the empty directory at `rel`.
    pub fn remove_dir(&self, rel: &Path) -> Result<(), TreeError> {
        let (parent, leaf) = self.parent(rel)?;
        nix::unistd::unlinkat(parent.as_fd(), leaf, UnlinkatFlags::RemoveDir)
            .map_err(|e| self.io("remove directory", rel, e))
    }

    /// Removes whatever is at `rel`, a directory with everything beneath it; links are removed,
    /// never followed. Nothing there is not an error.
    pub fn remove_all(&self, rel: &Path) -> Result<(), TreeError> {
        let meta = match self.metadata(rel) {
            Ok(meta) => meta,
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        if meta.kind != EntryKind::Dir {
            return self.remove_file(rel);
        }
        // Pre-order listing reversed: every entry goes before the directory holding it.
        for entry in self.walk(rel)?.iter().rev() {
            if entry.meta.kind == EntryKind::Dir {
                self.remove_dir(&entry.rel)?;
            } else {
                self.remove_file(&entry.rel)?;
            }
        }
        self.remove_dir(rel)
    }

    /// Makes `new` a hard link to the entry at `existing` (both beneath the root; a link at
    /// `existing` is linked itself, never followed).
    pub fn hard_link(&self, existing: &Path, new: &Path) -> Result<(), TreeError> {
        let (from_dir, from_leaf) = self.parent(existing)?;
        let (to_dir, to_leaf) = self.parent(new)?;
        nix::unistd::linkat(
            from_dir.as_fd(),
            from_leaf,
            to_dir.as_fd(),
            to_leaf,
            AtFlags::empty(),
        )
        .map_err(|e| self.io("create hard link", new, e))
    }

    /// Sets the permission bits of the directory at `rel` through a handle.
    pub fn set_dir_mode(&self, rel: &Path, mode: u32) -> Result<(), TreeError> {
        let dir = self.open_beneath(
            "open directory",
            rel,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )?;
        File::from(dir)
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|source| TreeError::Io {
                action: "set permissions of",
                path: rel.display().to_string(),
                root: self.path.clone(),
                source,
            })
    }
}

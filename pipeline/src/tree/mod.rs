//! Host-side file operations on trees that a change or a job controls.
//!
//! A source tree comes from an untrusted commit and a workspace is written by an untrusted job,
//! yet the host (often as root) has to write into them, read from them and walk them. Plain
//! path calls follow symbolic links on every component, so one committed or job-made link turns
//! "write `dist/app` in the workspace" into "write any host file". Every such operation goes
//! through [`TreeRoot`] instead, which:
//!
//! - holds the tree's root as a directory handle and resolves every path *beneath* it with
//!   `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`: a link on any
//!   component, or a path that would climb out, is refused by the kernel itself;
//! - acts on the last component with `*at` calls that never follow it (`O_NOFOLLOW`, `O_EXCL`,
//!   `AT_SYMLINK_NOFOLLOW`), so a dangling link there is never written through;
//! - never writes into an existing file: it creates a new one (`O_CREAT | O_EXCL`), so a hard
//!   link planted in the tree is never a way to another inode;
//! - opens files with `O_NONBLOCK`, so a FIFO planted where a file was expected cannot hang the
//!   host.
//!
//! Plain `std::fs` path calls are denied in the modules that handle such trees (clippy's
//! `disallowed_methods`, configured in the workspace's `clippy.toml`), so a new call site cannot
//! forget this module.
#![deny(clippy::disallowed_methods)]

mod modify;
mod walk;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::{Gid, Uid, UnlinkatFlags};

pub use walk::TreeEntry;

/// Why an operation on an untrusted tree was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A symbolic link was on the path (any component). Links inside an untrusted tree are
    /// never followed by the host.
    #[error(
        "'{path}' is or passes through a symbolic link; the host never follows links in an untrusted tree"
    )]
    Link {
        /// The path, relative to the tree.
        path: String,
    },
    /// The path is absolute, empty, or climbs with `..`.
    #[error("'{path}' is not a plain relative path inside the tree ({reason})")]
    BadPath {
        /// The offending path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The entry exists but is of another kind than the operation needs.
    #[error("'{path}' is not a {expected}")]
    WrongKind {
        /// The path, relative to the tree.
        path: String,
        /// What was expected ("regular file", "directory").
        expected: &'static str,
    },
    /// A listing went past its limit on entries.
    #[error("more than {max} entries under '{path}'")]
    TooManyEntries {
        /// The directory being listed when the limit was reached.
        path: String,
        /// The limit.
        max: usize,
    },
    /// Any other failure of the system call.
    #[error("{action} '{path}' in {root}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path, relative to the tree.
        path: String,
        /// The tree's root, for the message.
        root: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl TreeError {
    /// The underlying I/O error kind, if this is an I/O failure.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            TreeError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

impl From<TreeError> for io::Error {
    fn from(err: TreeError) -> io::Error {
        let kind = match &err {
            TreeError::Io { source, .. } => source.kind(),
            TreeError::Link { .. } | TreeError::BadPath { .. } => io::ErrorKind::PermissionDenied,
            TreeError::WrongKind { .. } => io::ErrorKind::InvalidInput,
            TreeError::TooManyEntries { .. } => io::ErrorKind::QuotaExceeded,
        };
        io::Error::new(kind, err)
    }
}

/// What an entry is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// A FIFO, socket or device node.
    Other,
}

/// Metadata of one entry, read without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
}

impl EntryMeta {
    fn from_stat(stat: &FileStat) -> EntryMeta {
        let fmt = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
        let kind = if fmt == SFlag::S_IFREG {
            EntryKind::File
        } else if fmt == SFlag::S_IFDIR {
            EntryKind::Dir
        } else if fmt == SFlag::S_IFLNK {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        };
        EntryMeta {
            kind,
            mode: stat.st_mode & 0o7777,
            size: u64::try_from(stat.st_size).unwrap_or(0),
        }
    }
}

/// An open directory whose contents are untrusted; every path given to it is relative to it.
#[derive(Debug)]
pub struct TreeRoot {
    dir: OwnedFd,
    path: PathBuf,
}

/// The resolution every lookup beneath a root uses.
fn beneath() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// Splits a tree-relative path into checked components: only plain names, `.` skipped.
fn components(rel: &Path) -> Result<Vec<&OsStr>, TreeError> {
    let bad = |reason| TreeError::BadPath {
        path: rel.display().to_string(),
        reason,
    };
    let mut out = Vec::new();
    for component in rel.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            Component::ParentDir => return Err(bad("it climbs with '..'")),
            Component::RootDir | Component::Prefix(_) => return Err(bad("it is absolute")),
        }
    }
    Ok(out)
}

impl TreeRoot {
    /// Opens the existing directory at `path` as a root. `path` itself is the host's (trusted);
    /// only its last component is checked not to be a link.
    pub fn open(path: &Path) -> Result<TreeRoot, TreeError> {
        let dir = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| TreeError::Io {
            action: "open tree root",
            path: String::new(),
            root: path.to_path_buf(),
            source: errno.into(),
        })?;
        Ok(TreeRoot {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// Creates the directory at `path` (and its parents, which are the host's) with `mode`
    /// (less the umask) if it is missing, and opens it. An existing directory is left as it is.
    pub fn create(path: &Path, mode: u32) -> Result<TreeRoot, TreeError> {
        use std::os::unix::fs::DirBuilderExt as _;
        #[allow(clippy::disallowed_methods)] // the host's own path, above any untrusted tree
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
            .map_err(|source| TreeError::Io {
                action: "create tree root",
                path: String::new(),
                root: path.to_path_buf(),
                source,
            })?;
        TreeRoot::open(path)
    }

    /// The root's host path (for messages, and for handing to a sandbox).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, action: &'static str, rel: &Path, errno: Errno) -> TreeError {
        match errno {
            // ELOOP: RESOLVE_NO_SYMLINKS or O_NOFOLLOW met a link; EXDEV: RESOLVE_BENEATH
            // refused an escape.
            Errno::ELOOP | Errno::EXDEV => TreeError::Link {
                path: rel.display().to_string(),
            },
            _ => TreeError::Io {
                action,
                path: rel.display().to_string(),
                root: self.path.clone(),
                source: errno.into(),
            },
        }
    }

    /// Opens `rel` beneath the root with `flags`; a link anywhere on the way is refused.
    fn open_beneath(
        &self,
        action: &'static str,
        rel: &Path,
        flags: OFlag,
        mode: Mode,
    ) -> Result<OwnedFd, TreeError> {
        let parts = components(rel)?;
        let joined: PathBuf = if parts.is_empty() {
            PathBuf::from(".")
        } else {
            parts.iter().collect()
        };
        // No O_NOFOLLOW: with O_PATH it would hand back the link itself; RESOLVE_NO_SYMLINKS
        // already refuses a link on every component, the last one included (ELOOP).
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .mode(mode)
            .resolve(beneath());
        nix::fcntl::openat2(self.dir.as_fd(), &joined, how).map_err(|e| self.io(action, rel, e))
    }

    /// The directory holding `rel`'s last component, and that component.
    fn parent<'a>(&self, rel: &'a Path) -> Result<(OwnedFd, &'a OsStr), TreeError> {
        let mut parts = components(rel)?;
        let Some(leaf) = parts.pop() else {
            return Err(TreeError::BadPath {
                path: rel.display().to_string(),
                reason: "it names the tree's root",
            });
        };
        let parent: PathBuf = parts.iter().collect();
        let fd = self.open_beneath(
            "open the directory of",
            &parent,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            Mode::empty(),
        )?;
        Ok((fd, leaf))
    }

    /// Opens a sub-directory as a root of its own.
    pub fn open_dir(&self, rel: &Path) -> Result<TreeRoot, TreeError> {
        let dir = self.open_beneath(
            "open directory",
            rel,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            Mode::empty(),
        )?;
        Ok(TreeRoot {
            dir,
            path: self.path.join(rel),
        })
    }

    /// Metadata of `rel` itself (a link is reported as a link, never followed). A link on a
    /// parent component is refused with [`TreeError::Link`].
    pub fn metadata(&self, rel: &Path) -> Result<EntryMeta, TreeError> {
        if components(rel)?.is_empty() {
            let stat =
                nix::sys::stat::fstat(self.dir.as_fd()).map_err(|e| self.io("inspect", rel, e))?;
            return Ok(EntryMeta::from_stat(&stat));
        }
        let (parent, leaf) = self.parent(rel)?;
        let stat = nix::sys::stat::fstatat(parent.as_fd(), leaf, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| self.io("inspect", rel, e))?;
        Ok(EntryMeta::from_stat(&stat))
    }

    /// Whether `rel` exists (as anything, links included, without following them).
    pub fn exists(&self, rel: &Path) -> Result<bool, TreeError> {
        match self.metadata(rel) {
            Ok(_) => Ok(true),
            Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates one directory with exactly `mode`.
    pub fn create_dir(&self, rel: &Path, mode: u32) -> Result<(), TreeError> {
        let (parent, leaf) = self.parent(rel)?;
        nix::sys::stat::mkdirat(parent.as_fd(), leaf, Mode::from_bits_truncate(mode))
            .map_err(|e| self.io("create directory", rel, e))?;
        // The umask may have narrowed it; set it exactly through a handle, not a path.
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

    /// Creates `rel` and every missing parent (each with `mode`). An existing link or file on
    /// the way is refused.
    pub fn create_dir_all(&self, rel: &Path, mode: u32) -> Result<(), TreeError> {
        let mut sofar = PathBuf::new();
        for part in components(rel)? {
            sofar.push(part);
            match self.metadata(&sofar) {
                Ok(meta) if meta.kind == EntryKind::Dir => continue,
                Ok(meta) if meta.kind == EntryKind::Symlink => {
                    return Err(TreeError::Link {
                        path: sofar.display().to_string(),
                    });
                }
                Ok(_) => {
                    return Err(TreeError::WrongKind {
                        path: sofar.display().to_string(),
                        expected: "directory",
                    });
                }
                Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) => {
                    self.create_dir(&sofar, mode)?
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Creates a new regular file with exactly `mode`; anything already at `rel` (a dangling
    /// link included) makes it fail rather than be written through.
    pub fn create_file(&self, rel: &Path, mode: u32) -> Result<File, TreeError> {
        let (parent, leaf) = self.parent(rel)?;
        let fd = nix::fcntl::openat(
            parent.as_fd(),
            leaf,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|e| self.io("create file", rel, e))?;
        let file = File::from(fd);
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|source| TreeError::Io {
                action: "set permissions of",
                path: rel.display().to_string(),
                root: self.path.clone(),
                source,
            })?;
        Ok(file)
    }

    /// Removes whatever non-directory is at `rel` (a link is removed, not followed), then
    /// creates a new file there. Missing parents are created (0755).
    pub fn replace_file(&self, rel: &Path, mode: u32) -> Result<File, TreeError> {
        let parts = components(rel)?;
        if let Some((_, dirs)) = parts.split_last() {
            self.create_dir_all(&dirs.iter().collect::<PathBuf>(), 0o755)?;
        }
        if self.exists(rel)? {
            self.remove_file(rel)?;
        }
        self.create_file(rel, mode)
    }

    /// Opens an existing regular file for reading. A link anywhere on the path is refused; a
    /// FIFO or device is refused without blocking.
    pub fn open_file(&self, rel: &Path) -> Result<File, TreeError> {
        let fd = self.open_beneath(
            "open file",
            rel,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK,
            Mode::empty(),
        )?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(|source| TreeError::Io {
            action: "inspect",
            path: rel.display().to_string(),
            root: self.path.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(TreeError::WrongKind {
                path: rel.display().to_string(),
                expected: "regular file",
            });
        }
        Ok(file)
    }

    /// Creates a symbolic link at `rel` with `target` verbatim. The link is never followed by
    /// this module; whether its target is acceptable is the caller's policy.
    pub fn symlink(&self, target: &OsStr, rel: &Path) -> Result<(), TreeError> {
        let (parent, leaf) = self.parent(rel)?;
        nix::unistd::symlinkat(target, parent.as_fd(), leaf)
            .map_err(|e| self.io("create symlink", rel, e))
    }

    /// The target of the link at `rel`.
    pub fn read_link(&self, rel: &Path) -> Result<OsString, TreeError> {
        let (parent, leaf) = self.parent(rel)?;
        nix::fcntl::readlinkat(parent.as_fd(), leaf).map_err(|e| self.io("read link", rel, e))
    }

    /// Removes the non-directory at `rel` (a link itself, never its target).
    pub fn remove_file(&self, rel: &Path) -> Result<(), TreeError> {
        let (parent, leaf) = self.parent(rel)?;
        nix::unistd::unlinkat(parent.as_fd(), leaf, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| self.io("remove", rel, e))
    }

    /// Gives the root and everything beneath it to `uid:gid`; links are re-owned themselves,
    /// never their targets.
    pub fn chown_all(&self, uid: u32, gid: u32) -> Result<(), TreeError> {
        let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        let root = self.open_beneath(
            "open directory",
            Path::new(""),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )?;
        nix::unistd::fchown(root.as_fd(), uid, gid)
            .map_err(|e| self.io("change owner of", Path::new(""), e))?;
        for entry in self.walk(Path::new(""))? {
            let (parent, leaf) = self.parent(&entry.rel)?;
            nix::unistd::fchownat(parent.as_fd(), leaf, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| self.io("change owner of", &entry.rel, e))?;
        }
        Ok(())
    }

    /// Copies everything beneath this root into `dest` (which must hold none of the names):
    /// directories, files with their permission bits (setuid/setgid/sticky dropped) and links
    /// as links, never followed.
    pub fn copy_into(&self, dest: &TreeRoot) -> Result<(), TreeError> {
        for entry in self.walk(Path::new(""))? {
            match entry.meta.kind {
                EntryKind::Dir => dest.create_dir(&entry.rel, entry.meta.mode & 0o777)?,
                EntryKind::File => {
                    let mut from = self.open_file(&entry.rel)?;
                    let mut to = dest.create_file(&entry.rel, entry.meta.mode & 0o777)?;
                    io::copy(&mut from, &mut to).map_err(|source| TreeError::Io {
                        action: "copy",
                        path: entry.rel.display().to_string(),
                        root: dest.path.clone(),
                        source,
                    })?;
                }
                EntryKind::Symlink => {
                    let target = self.read_link(&entry.rel)?;
                    dest.symlink(&target, &entry.rel)?;
                }
                // FIFOs, sockets, devices: nothing a source tree needs.
                EntryKind::Other => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

//! Source checkout: bare mirrors of remote repositories, fetched with `gix`.
//!
//! Everything here is blocking (gix's network and object database APIs are). Async callers wrap
//! calls in `tokio::task::spawn_blocking`; for that reason [`SourceCache`] and [`Mirror`] are
//! `Send + Sync` (a [`Mirror`] holds a [`gix::ThreadSafeRepository`] and makes a thread-local
//! handle per call).
//!
//! Nothing in this module ever checks out a work tree with git's machinery: files are read straight
//! from commit trees, and [`Mirror::materialise`] writes a tree into a fresh directory itself, so
//! that a hostile tree (entry names like `..` or `.git`) can be refused before anything is written.

mod cache;
mod error;
mod materialise;
mod mirror;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use self::error::{SourceError, redact_text};

/// A commit id (hex SHA-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitId(pub gix::ObjectId);

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for CommitId {
    type Err = SourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only full ids: an abbreviated id is ambiguous until it is looked up in a repository,
        // which is what `Mirror::resolve` is for.
        if !is_full_hex_id(s) {
            return Err(SourceError::InvalidCommitId {
                input: s.to_owned(),
            });
        }
        gix::ObjectId::from_hex(s.as_bytes())
            .map(CommitId)
            .map_err(|_| SourceError::InvalidCommitId {
                input: s.to_owned(),
            })
    }
}

impl From<gix::ObjectId> for CommitId {
    fn from(id: gix::ObjectId) -> Self {
        CommitId(id)
    }
}

/// What one checkout may take: a commit is as untrusted as its author, and its tree is written
/// on the host (outside any job's disk limit), so its size is bounded before a byte is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLimits {
    /// Entries (files, directories, links) in the whole tree.
    pub max_entries: u64,
    /// Bytes of one file (each is loaded whole to be written).
    pub max_file_bytes: u64,
    /// Bytes of all files together.
    pub max_total_bytes: u64,
    /// Free space the host keeps where the tree is written: the checkout must fit above it.
    pub reserve_bytes: u64,
}

/// Entries of one checkout by default (the largest public monorepos have a few hundred
/// thousand).
pub const DEFAULT_MAX_TREE_ENTRIES: u64 = 500_000;
/// One file of a checkout by default: 256 MiB (forges refuse files over 100 MB).
pub const DEFAULT_MAX_TREE_FILE_BYTES: u64 = 256 << 20;
/// A whole checkout by default: 4 GiB.
pub const DEFAULT_MAX_TREE_BYTES: u64 = 4 << 30;

impl Default for TreeLimits {
    fn default() -> Self {
        TreeLimits {
            max_entries: DEFAULT_MAX_TREE_ENTRIES,
            max_file_bytes: DEFAULT_MAX_TREE_FILE_BYTES,
            max_total_bytes: DEFAULT_MAX_TREE_BYTES,
            reserve_bytes: crate::executor::DEFAULT_HOST_RESERVE_BYTES,
        }
    }
}

/// Counts reported by [`Mirror::materialise`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaterialiseStats {
    /// Regular files and symlinks written.
    pub files: u64,
    /// Bytes written: file contents plus symlink targets.
    pub bytes: u64,
}

/// What to show a person about a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSummary {
    /// First line of the commit message.
    pub subject: String,
    /// The author as `Name <email>`.
    pub author: String,
}

/// Where bare mirrors of remote repositories live.
#[derive(Debug, Clone)]
pub struct SourceCache {
    root: PathBuf,
    limits: FetchLimits,
}

/// Bounds on one fetch: the Git server is as untrusted as the commits it serves (a forge, or
/// whatever URL a project names), and a fetch that never ends holds a run, the builder's loop
/// or the reconciler's forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Longest wait for the server to send anything (`git://`: each read and write).
    pub read_timeout: std::time::Duration,
    /// Longest a whole fetch's pack transfer may take (every transport).
    pub deadline: std::time::Duration,
    /// Most bytes the server may send in one fetch (`git://`).
    pub max_bytes: u64,
}

/// Longest silence from a Git server by default.
pub const DEFAULT_FETCH_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Longest pack transfer by default.
pub const DEFAULT_FETCH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// Most bytes of one fetch by default: 8 GiB.
pub const DEFAULT_FETCH_MAX_BYTES: u64 = 8 << 30;

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            read_timeout: DEFAULT_FETCH_READ_TIMEOUT,
            deadline: DEFAULT_FETCH_DEADLINE,
            max_bytes: DEFAULT_FETCH_MAX_BYTES,
        }
    }
}

/// An opened repository: a bare mirror, or any local repository opened with [`Mirror::open`].
pub struct Mirror {
    repo: gix::ThreadSafeRepository,
    path: PathBuf,
}

impl fmt::Debug for Mirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mirror").field("path", &self.path).finish()
    }
}

fn validate_ref_name(name: &str) -> Result<(), SourceError> {
    gix::refs::FullName::try_from(name)
        .map(|_| ())
        .map_err(|err| SourceError::InvalidRev {
            rev: name.to_owned(),
            message: err.to_string(),
        })
}

fn is_full_hex_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

//! Where run outputs are kept after the run's work directory is gone.

use std::io;
use std::path::{Path, PathBuf};

/// Content-addressed storage for outputs; object storage can implement it later.
pub trait ArtifactStore: Send + Sync {
    /// Stores the file at `from` under its sha256 (hex). Idempotent.
    fn put(&self, sha256: &str, from: &Path) -> io::Result<()>;
    /// The local path of a stored blob, if present.
    fn path(&self, sha256: &str) -> Option<PathBuf>;
}

/// Blobs under `ROOT/sha256/<hex>` on the local disk.
#[derive(Debug, Clone)]
pub struct LocalArtifacts {
    root: PathBuf,
}

impl LocalArtifacts {
    /// A store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalArtifacts { root: root.into() }
    }

    fn blob(&self, sha256: &str) -> Option<PathBuf> {
        // The digest names a file: only accept exactly 64 hex characters.
        (sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| self.root.join("sha256").join(sha256))
    }
}

impl ArtifactStore for LocalArtifacts {
    fn put(&self, sha256: &str, from: &Path) -> io::Result<()> {
        let dest = self
            .blob(sha256)
            .ok_or_else(|| io::Error::other("not a sha256 digest"))?;
        if dest.exists() {
            return Ok(());
        }
        std::fs::create_dir_all(self.root.join("sha256"))?;
        let tmp = dest.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::copy(from, &tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &dest)
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        self.blob(sha256).filter(|p| p.exists())
    }
}

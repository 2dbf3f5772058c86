//! Where run outputs are kept after the run's work directory is gone.

pub mod retention;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// One blob in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// Its sha256 (hex), which is its name.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Content-addressed storage for outputs; object storage can implement it later.
pub trait ArtifactStore: Send + Sync {
    /// Stores the file at `from` under its sha256 (hex). Idempotent.
    fn put(&self, sha256: &str, from: &Path) -> io::Result<()>;
    /// The local path of a stored blob, if present.
    fn path(&self, sha256: &str) -> Option<PathBuf>;
    /// Every stored blob with its size (a put in progress is not one yet).
    fn list(&self) -> io::Result<Vec<StoredBlob>>;
    /// Deletes a blob; one that is already gone is not an error.
    fn remove(&self, sha256: &str) -> io::Result<()>;
    /// Deletes what puts interrupted by a crash left behind, if older than
    /// `older_than`; returns how many files and bytes.
    fn remove_stale_temporaries(&self, older_than: Duration) -> io::Result<(usize, u64)> {
        let _ = older_than;
        Ok((0, 0))
    }
}

/// Whether `name` is a sha256 in lowercase or uppercase hex (a blob's name).
fn is_digest(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
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
        is_digest(sha256).then(|| self.root.join("sha256").join(sha256))
    }

    /// Entries of the blob directory (none if it does not exist yet).
    fn entries(&self) -> io::Result<Vec<std::fs::DirEntry>> {
        match std::fs::read_dir(self.root.join("sha256")) {
            Ok(dir) => dir.collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

impl ArtifactStore for LocalArtifacts {
    /// Copies into a temporary file with a unique name in the blob directory
    /// (so concurrent puts, from threads of one process or from several
    /// processes, never share one), fsyncs it, then renames it into place:
    /// readers see no blob or a complete one. Two puts of one digest both
    /// succeed; the second rename replaces identical content atomically.
    fn put(&self, sha256: &str, from: &Path) -> io::Result<()> {
        let dest = self
            .blob(sha256)
            .ok_or_else(|| io::Error::other("not a sha256 digest"))?;
        if dest.exists() {
            return Ok(());
        }
        let dir = self.root.join("sha256");
        std::fs::create_dir_all(&dir)?;
        // A leading dot and no 64-hex name: never taken for a blob by `path`.
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(&dir)?;
        let mut source = std::fs::File::open(from)?;
        io::copy(&mut source, tmp.as_file_mut())?;
        // The source's permission bits, as `fs::copy` kept them (tempfile creates 0600).
        tmp.as_file()
            .set_permissions(source.metadata()?.permissions())?;
        tmp.as_file().sync_all()?;
        // On error the temporary file is removed when `PersistError` drops.
        tmp.persist(&dest).map_err(|e| e.error)?;
        // Make the rename itself durable.
        std::fs::File::open(&dir)?.sync_all()
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        self.blob(sha256).filter(|p| p.exists())
    }

    fn list(&self) -> io::Result<Vec<StoredBlob>> {
        let mut blobs = Vec::new();
        for entry in self.entries()? {
            let name = entry.file_name();
            let Some(name) = name.to_str().filter(|n| is_digest(n)) else {
                continue;
            };
            // Not following links: only regular files are blobs.
            match entry.metadata() {
                Ok(meta) if meta.is_file() => blobs.push(StoredBlob {
                    sha256: name.to_string(),
                    size: meta.len(),
                }),
                Ok(_) => {}
                // Removed since the listing (another sweep, an operator).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(blobs)
    }

    fn remove(&self, sha256: &str) -> io::Result<()> {
        let blob = self
            .blob(sha256)
            .ok_or_else(|| io::Error::other("not a sha256 digest"))?;
        match std::fs::remove_file(blob) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn remove_stale_temporaries(&self, older_than: Duration) -> io::Result<(usize, u64)> {
        let (mut files, mut bytes) = (0, 0);
        let now = SystemTime::now();
        for entry in self.entries()? {
            if !entry.file_name().to_string_lossy().starts_with(".tmp-") {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            if meta.is_file() && age > older_than && std::fs::remove_file(entry.path()).is_ok() {
                files += 1;
                bytes += meta.len();
            }
        }
        Ok((files, bytes))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use sha2::{Digest, Sha256};

    use super::*;

    /// Every name in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn concurrent_puts_of_one_digest_all_succeed_and_leave_one_complete_blob() {
        let dir = tempfile::tempdir().expect("tmp");
        // Big enough that copies overlap: 4 MiB of varied bytes.
        let content: Vec<u8> = (0..4u32 * 1024 * 1024)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let digest = hex::encode(Sha256::digest(&content));
        let source = dir.path().join("output");
        std::fs::write(&source, &content).expect("write");

        // Several rounds, each a fresh store and 16 threads released at once,
        // as 16 runs that produced the same output store it together.
        for round in 0..8 {
            let store = Arc::new(LocalArtifacts::new(
                dir.path().join(format!("store-{round}")),
            ));
            let threads = 16;
            let start = Arc::new(Barrier::new(threads));
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (store, start, digest, source) =
                        (store.clone(), start.clone(), digest.clone(), source.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        store.put(&digest, &source)
                    })
                })
                .collect();
            let results: Vec<io::Result<()>> = handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect();
            let failed: Vec<String> = results
                .iter()
                .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
                .collect();
            assert!(
                failed.is_empty(),
                "round {round}: {} of {threads} concurrent puts failed: {failed:?}",
                failed.len()
            );
            let blob = store.path(&digest).expect("stored");
            assert_eq!(
                std::fs::read(&blob).expect("read"),
                content,
                "round {round}"
            );
            // Nothing but the blob is left behind: no temporary files.
            assert_eq!(
                names(&dir.path().join(format!("store-{round}/sha256"))),
                vec![digest.clone()],
                "round {round}"
            );
        }

        // Control: a single put into a fresh store, and a second put of the
        // same digest, also succeed; a name that is not a digest is refused.
        let store = LocalArtifacts::new(dir.path().join("single"));
        store.put(&digest, &source).expect("put");
        store.put(&digest, &source).expect("idempotent put");
        assert_eq!(
            std::fs::read(store.path(&digest).expect("stored")).expect("read"),
            content
        );
        assert!(store.put("../escape", &source).is_err());
    }
}

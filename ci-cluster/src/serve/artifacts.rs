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

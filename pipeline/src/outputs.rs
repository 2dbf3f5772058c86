//! Collecting a job's outputs, content-addressed by sha256.
//!
//! The workspace was written by untrusted code, so every look at it goes through
//! [`TreeRoot`]: a link anywhere on an output's path is refused, never followed, and a FIFO or
//! device is refused without blocking.
#![deny(clippy::disallowed_methods)]

use std::fs::File;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tree::{EntryKind, TreeError, TreeRoot};

/// One collected file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Workspace-relative path with `/` separators.
    pub path: String,
    /// Lowercase hex sha256 of the contents.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether any execute bit was set.
    pub executable: bool,
}

/// Why outputs could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A declared literal output does not exist.
    #[error("output '{0}' was not produced by the job")]
    Missing(String),
    /// A glob matched nothing.
    #[error("output pattern '{0}' matched no file")]
    NoMatch(String),
    /// A link was found on the path.
    #[error(
        "output '{0}' is or passes through a symbolic link; outputs must be regular files inside the workspace"
    )]
    Symlink(String),
    /// Not a regular file or directory.
    #[error("output '{0}' is not a regular file")]
    NotAFile(String),
    /// The pattern is not a valid glob.
    #[error("output pattern '{pattern}' is invalid: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// I/O failure.
    #[error("reading output '{path}': {source}")]
    Io {
        /// The output.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl OutputError {
    fn from_tree(rel: &str, err: TreeError) -> OutputError {
        match err {
            TreeError::Link { .. } | TreeError::BadPath { .. } => OutputError::Symlink(rel.into()),
            TreeError::WrongKind { .. } => OutputError::NotAFile(rel.into()),
            other => OutputError::Io {
                path: rel.into(),
                source: other.into(),
            },
        }
    }
}

fn has_glob_meta(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

/// Collects every file the patterns name, sorted by path, without duplicates.
pub fn collect(workspace: &Path, patterns: &[String]) -> Result<Vec<OutputFile>, OutputError> {
    let root = TreeRoot::open(workspace).map_err(|e| OutputError::Io {
        path: String::new(),
        source: e.into(),
    })?;
    collect_in(&root, patterns)
}

/// [`collect`] on an already open workspace.
pub fn collect_in(root: &TreeRoot, patterns: &[String]) -> Result<Vec<OutputFile>, OutputError> {
    let mut found: Vec<String> = Vec::new();
    for pattern in patterns {
        let pattern = pattern.trim_start_matches("./").trim_end_matches('/');
        if has_glob_meta(pattern) {
            let matcher = globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| OutputError::Pattern {
                    pattern: pattern.into(),
                    reason: e.to_string(),
                })?
                .compile_matcher();
            let mut any = false;
            for rel in walk_files(root, Path::new(""), Some(&matcher), pattern)? {
                if matcher.is_match(&rel) {
                    any = true;
                    found.push(rel);
                }
            }
            if !any {
                return Err(OutputError::NoMatch(pattern.into()));
            }
        } else {
            let rel = plain_relative(pattern)?;
            let meta = match root.metadata(&rel) {
                Ok(meta) => meta,
                Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) => {
                    return Err(OutputError::Missing(pattern.into()));
                }
                Err(e) => return Err(OutputError::from_tree(pattern, e)),
            };
            match meta.kind {
                EntryKind::Dir => found.extend(walk_files(root, &rel, None, pattern)?),
                EntryKind::File => found.push(rel.display().to_string()),
                EntryKind::Symlink => return Err(OutputError::Symlink(pattern.into())),
                EntryKind::Other => return Err(OutputError::NotAFile(pattern.into())),
            }
        }
    }
    found.sort();
    found.dedup();
    found.iter().map(|rel| digest_file(root, rel)).collect()
}

/// The pattern as a plain relative path: `..` and absolute paths refused.
fn plain_relative(rel: &str) -> Result<PathBuf, OutputError> {
    let mut path = PathBuf::new();
    for component in Path::new(rel).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            _ => return Err(OutputError::Symlink(rel.into())),
        }
    }
    Ok(path)
}

/// Regular files under `sub`, as root-relative paths. Links are refused, not followed; under a
/// glob, only a link the glob would collect is an error.
fn walk_files(
    root: &TreeRoot,
    sub: &Path,
    glob: Option<&globset::GlobMatcher>,
    pattern: &str,
) -> Result<Vec<String>, OutputError> {
    let mut out = Vec::new();
    let entries = root
        .walk(sub)
        .map_err(|e| OutputError::from_tree(pattern, e))?;
    for entry in entries {
        let rel_text = entry.rel.display().to_string();
        match entry.meta.kind {
            EntryKind::Symlink => {
                if glob.is_some_and(|g| !g.is_match(&rel_text)) {
                    continue;
                }
                return Err(OutputError::Symlink(rel_text));
            }
            EntryKind::File => out.push(rel_text),
            EntryKind::Dir | EntryKind::Other => {}
        }
    }
    Ok(out)
}

fn digest_file(root: &TreeRoot, rel: &str) -> Result<OutputFile, OutputError> {
    let io_err = |source| OutputError::Io {
        path: rel.into(),
        source,
    };
    let mut file = root
        .open_file(Path::new(rel))
        .map_err(|e| OutputError::from_tree(rel, e))?;
    let meta = file.metadata().map_err(io_err)?;
    let mut hasher = Sha256::new();
    let size = io::copy(&mut file, &mut hasher).map_err(io_err)?;
    Ok(OutputFile {
        path: rel.to_string(),
        sha256: hex::encode(hasher.finalize()),
        size,
        executable: std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0,
    })
}

/// A directory of blobs named by their sha256: `ROOT/sha256/<hex>`. The store is the host's
/// own directory, never inside a workspace; only the workspace side is untrusted.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ContentStore { root: root.into() }
    }

    /// Where the blob with this digest lives.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("sha256").join(sha256)
    }

    /// Copies a collected output from the workspace into the store.
    /// Writes to a temporary file with a unique name and renames it, so a crash never leaves
    /// a half-written blob under its digest and two runs storing the same output at once
    /// never collide.
    #[allow(clippy::disallowed_methods)] // the store is the host's own directory
    pub fn put(&self, workspace: &TreeRoot, file: &OutputFile) -> io::Result<PathBuf> {
        let dest = self.blob_path(&file.sha256);
        if dest.exists() {
            return Ok(dest);
        }
        let dir = self.root.join("sha256");
        std::fs::create_dir_all(&dir)?;
        let mut src = workspace.open_file(Path::new(&file.path))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", file.sha256))
            .suffix(".tmp")
            .tempfile_in(&dir)?;
        let mut hasher = Sha256::new();
        let mut tee = TeeWriter {
            out: tmp.as_file_mut(),
            hasher: &mut hasher,
        };
        io::copy(&mut src, &mut tee)?;
        tmp.as_file().sync_all()?;
        if hex::encode(hasher.finalize()) != file.sha256 {
            return Err(io::Error::other(format!(
                "{} changed while it was being stored",
                file.path
            )));
        }
        // The blob is read-only for everyone else: its name is its content.
        tmp.as_file()
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        tmp.persist(&dest).map_err(|e| e.error)?;
        Ok(dest)
    }

    /// Copies a stored blob to `rel` beneath `dest` (parents created), restoring the execute
    /// bit. Whatever is at `rel` is replaced, never written through; a link on a parent is
    /// refused.
    #[allow(clippy::disallowed_methods)] // File::open of the store's own blob
    pub fn copy_out(&self, file: &OutputFile, dest: &TreeRoot, rel: &Path) -> io::Result<()> {
        let mode = if file.executable { 0o755 } else { 0o644 };
        let mut from = File::open(self.blob_path(&file.sha256))?;
        let mut to = dest.replace_file(rel, mode)?;
        io::copy(&mut from, &mut to)?;
        Ok(())
    }
}

struct TeeWriter<'a> {
    out: &'a mut File,
    hasher: &'a mut Sha256,
}

impl io::Write for TeeWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use std::fs;

    fn ws() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(d.path().join("dist/sub")).expect("mkdir");
        fs::write(d.path().join("dist/app"), b"binary").expect("write");
        fs::write(d.path().join("dist/app.tgz"), b"tar").expect("write");
        fs::write(d.path().join("dist/sub/x.txt"), b"x").expect("write");
        d
    }

    #[test]
    fn literal_glob_and_directory() {
        let d = ws();
        let files = collect(d.path(), &["dist/app".into()]).expect("collect");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].sha256, hex::encode(Sha256::digest(b"binary")));
        let files = collect(d.path(), &["dist/*.tgz".into()]).expect("collect");
        assert_eq!(
            files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["dist/app.tgz"]
        );
        let files = collect(d.path(), &["dist".into(), "dist/app".into()]).expect("collect");
        assert_eq!(files.len(), 3, "deduplicated: {files:?}");
    }

    #[test]
    fn missing_and_empty_globs_fail() {
        let d = ws();
        assert!(matches!(
            collect(d.path(), &["nope".into()]),
            Err(OutputError::Missing(_))
        ));
        assert!(matches!(
            collect(d.path(), &["*.zip".into()]),
            Err(OutputError::NoMatch(_))
        ));
    }

    #[test]
    fn links_out_of_the_workspace_are_never_followed() {
        let d = ws();
        let secret = tempfile::tempdir().expect("tempdir");
        fs::write(secret.path().join("key"), b"secret").expect("write");
        std::os::unix::fs::symlink(secret.path().join("key"), d.path().join("dist/leak"))
            .expect("link");
        std::os::unix::fs::symlink(secret.path(), d.path().join("linkdir")).expect("link");
        assert!(matches!(
            collect(d.path(), &["dist/leak".into()]),
            Err(OutputError::Symlink(_))
        ));
        assert!(matches!(
            collect(d.path(), &["linkdir/key".into()]),
            Err(OutputError::Symlink(_))
        ));
        assert!(matches!(
            collect(d.path(), &["dist".into()]),
            Err(OutputError::Symlink(_))
        ));
        assert!(matches!(
            collect(d.path(), &["dist/*".into()]),
            Err(OutputError::Symlink(_))
        ));
        // A glob that does not match the link is unaffected by it.
        assert!(collect(d.path(), &["dist/*.tgz".into()]).is_ok());
    }

    #[test]
    fn store_round_trip() {
        let d = ws();
        let files = collect(d.path(), &["dist/app".into()]).expect("collect");
        let store_dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::new(store_dir.path());
        let ws = TreeRoot::open(d.path()).expect("open");
        let blob = store.put(&ws, &files[0]).expect("put");
        assert_eq!(fs::read(blob).expect("read"), b"binary");
        let out = TreeRoot::create(&store_dir.path().join("out"), 0o755).expect("out");
        store
            .copy_out(&files[0], &out, Path::new("dist/app"))
            .expect("copy out");
        assert_eq!(
            fs::read(store_dir.path().join("out/dist/app")).expect("read"),
            b"binary"
        );
    }

    #[test]
    fn concurrent_puts_of_one_digest_all_succeed() {
        // Before unique temporary names, every put in one process wrote `<digest>.tmp-<pid>`:
        // two runs storing the same output at once made one of them fail.
        let d = ws();
        let files = collect(d.path(), &["dist/app".into()]).expect("collect");
        let store_dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::new(store_dir.path());
        let ws = TreeRoot::open(d.path()).expect("open");
        let barrier = std::sync::Barrier::new(16);
        let results: Vec<io::Result<PathBuf>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        store.put(&ws, &files[0])
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("join"))
                .collect()
        });
        for result in &results {
            assert!(result.is_ok(), "{result:?}");
        }
        let names: Vec<_> = fs::read_dir(store_dir.path().join("sha256"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            names,
            [std::ffi::OsString::from(&files[0].sha256)],
            "no temp file left"
        );
        assert_eq!(
            fs::read(store.blob_path(&files[0].sha256)).expect("blob"),
            b"binary"
        );
    }

    #[test]
    fn a_fifo_output_is_refused_without_hanging() {
        let d = ws();
        nix::unistd::mkfifo(
            &d.path().join("dist/pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .expect("mkfifo");
        assert!(matches!(
            collect(d.path(), &["dist/pipe".into()]),
            Err(OutputError::NotAFile(_))
        ));
        assert!(collect(d.path(), &["dist/app".into()]).is_ok(), "control");
    }
}

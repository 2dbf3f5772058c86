//! Collecting a job's outputs, content-addressed by sha256.
//!
//! The workspace was written by untrusted code, so collection never follows
//! a symbolic link: a link anywhere on an output's path is refused, and
//! files are opened with `O_NOFOLLOW`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

fn has_glob_meta(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

/// Collects every file the patterns name, sorted by path, without duplicates.
pub fn collect(workspace: &Path, patterns: &[String]) -> Result<Vec<OutputFile>, OutputError> {
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
            for rel in walk_files(workspace, Path::new(""), pattern)? {
                if matcher.is_match(&rel) {
                    any = true;
                    found.push(rel);
                }
            }
            if !any {
                return Err(OutputError::NoMatch(pattern.into()));
            }
        } else {
            let full = inside(workspace, pattern)?;
            let meta =
                fs::symlink_metadata(&full).map_err(|_| OutputError::Missing(pattern.into()))?;
            if meta.is_dir() {
                found.extend(walk_files(workspace, Path::new(pattern), pattern)?);
            } else if meta.is_file() {
                found.push(pattern.to_string());
            } else if meta.file_type().is_symlink() {
                return Err(OutputError::Symlink(pattern.into()));
            } else {
                return Err(OutputError::NotAFile(pattern.into()));
            }
        }
    }
    found.sort();
    found.dedup();
    found
        .iter()
        .map(|rel| digest_file(workspace, rel))
        .collect()
}

/// Joins `rel` to `root`, refusing `..`, absolute paths and any symlink on the way.
fn inside(root: &Path, rel: &str) -> Result<PathBuf, OutputError> {
    let mut path = root.to_path_buf();
    for component in Path::new(rel).components() {
        match component {
            Component::Normal(part) => {
                path.push(part);
                if fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_symlink()) {
                    return Err(OutputError::Symlink(rel.into()));
                }
            }
            Component::CurDir => {}
            _ => return Err(OutputError::Symlink(rel.into())),
        }
    }
    Ok(path)
}

/// Regular files under `root/sub`, as root-relative paths. Links are refused, not followed.
fn walk_files(root: &Path, sub: &Path, pattern: &str) -> Result<Vec<String>, OutputError> {
    let mut out = Vec::new();
    let start = root.join(sub);
    for entry in walkdir::WalkDir::new(&start)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| OutputError::Io {
            path: pattern.into(),
            source: e.into(),
        })?;
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let rel_text = rel.to_string_lossy().to_string();
        if entry.file_type().is_symlink() {
            // A glob may sweep past unrelated links; only a link it would collect is an error.
            if has_glob_meta(pattern) && entry.depth() > 0 {
                let matches = globset::Glob::new(pattern)
                    .map(|g| g.compile_matcher().is_match(&rel_text))
                    .unwrap_or(false);
                if !matches {
                    continue;
                }
            }
            return Err(OutputError::Symlink(rel_text));
        }
        if entry.file_type().is_file() {
            out.push(rel_text);
        }
    }
    Ok(out)
}

fn open_no_follow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
}

fn digest_file(root: &Path, rel: &str) -> Result<OutputFile, OutputError> {
    let io_err = |source| OutputError::Io {
        path: rel.into(),
        source,
    };
    let mut file = open_no_follow(&root.join(rel)).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(OutputError::NotAFile(rel.into()));
    }
    let mut hasher = Sha256::new();
    let size = io::copy(&mut file, &mut hasher).map_err(io_err)?;
    Ok(OutputFile {
        path: rel.to_string(),
        sha256: hex::encode(hasher.finalize()),
        size,
        executable: meta.permissions().mode() & 0o111 != 0,
    })
}

/// A directory of blobs named by their sha256: `ROOT/sha256/<hex>`.
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
    /// Writes to a temporary name and renames, so a crash never leaves a
    /// half-written blob under its digest.
    pub fn put(&self, workspace: &Path, file: &OutputFile) -> io::Result<PathBuf> {
        let dest = self.blob_path(&file.sha256);
        if dest.exists() {
            return Ok(dest);
        }
        fs::create_dir_all(self.root.join("sha256"))?;
        let tmp =
            self.root
                .join("sha256")
                .join(format!(".{}.tmp-{}", file.sha256, std::process::id()));
        let mut src = open_no_follow(&workspace.join(&file.path))?;
        let mut out = File::create(&tmp)?;
        let mut hasher = Sha256::new();
        let mut tee = TeeWriter {
            out: &mut out,
            hasher: &mut hasher,
        };
        io::copy(&mut src, &mut tee)?;
        out.sync_all()?;
        if hex::encode(hasher.finalize()) != file.sha256 {
            let _ = fs::remove_file(&tmp);
            return Err(io::Error::other(format!(
                "{} changed while it was being stored",
                file.path
            )));
        }
        fs::rename(&tmp, &dest)?;
        Ok(dest)
    }

    /// Copies a stored blob to `dest` (parents created), restoring the execute bit.
    pub fn copy_out(&self, file: &OutputFile, dest: &Path) -> io::Result<()> {
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(self.blob_path(&file.sha256), dest)?;
        let mode = if file.executable { 0o755 } else { 0o644 };
        fs::set_permissions(dest, fs::Permissions::from_mode(mode))
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
mod tests {
    use super::*;

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
        let blob = store.put(d.path(), &files[0]).expect("put");
        assert_eq!(fs::read(blob).expect("read"), b"binary");
        let dest = store_dir.path().join("out/dist/app");
        store.copy_out(&files[0], &dest).expect("copy out");
        assert_eq!(fs::read(dest).expect("read"), b"binary");
    }
}

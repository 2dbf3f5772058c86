//! [`Mirror::materialise`]: writing a commit's tree into a directory, after checking every
//! entry.

use std::collections::HashSet;
use std::fs;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use gix::objs::tree::EntryKind;

use super::{CommitId, MaterialiseStats, Mirror, SourceError};

impl Mirror {
    /// Write the commit's tree into `dest`, which must be empty or absent.
    ///
    /// Regular files get mode 0644, executables 0755, symlinks are created with their target
    /// verbatim (the sandbox that uses the tree has no host paths for them to reach), and
    /// submodule entries are skipped with a warning. The whole tree is checked before anything
    /// is written: an entry named `""`, `.`, `..`, `.git` (any case), containing `/` or NUL, or
    /// appearing twice in one directory is refused with [`SourceError::UnsafePath`].
    ///
    /// If writing fails part-way (disk full, say), `dest` is left partly filled: callers should
    /// discard it rather than use or retry into it.
    pub fn materialise(
        &self,
        commit: &CommitId,
        dest: &Path,
    ) -> Result<MaterialiseStats, SourceError> {
        let repo = self.repo.to_thread_local();
        let plan = self.plan_tree(&repo, commit)?;
        prepare_destination(dest)?;

        let mut stats = MaterialiseStats::default();
        for step in plan {
            match step {
                Step::Dir { rel } => {
                    let path = dest.join(&rel);
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&path)
                        .map_err(|source| SourceError::Io {
                            action: "create directory",
                            path,
                            source,
                        })?;
                }
                Step::File {
                    rel,
                    id,
                    executable,
                } => {
                    let path = dest.join(&rel);
                    let mut blob = repo.find_blob(id).map_err(|err| {
                        self.repo_error(format!("read blob {id} for {}", rel.display()), &err)
                    })?;
                    let data = blob.take_data();
                    let mode = if executable { 0o755 } else { 0o644 };
                    // create_new: never follow or overwrite anything already at the path.
                    let mut file = fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(mode)
                        .open(&path)
                        .map_err(|source| SourceError::Io {
                            action: "create file",
                            path: path.clone(),
                            source,
                        })?;
                    file.write_all(&data).map_err(|source| SourceError::Io {
                        action: "write file",
                        path: path.clone(),
                        source,
                    })?;
                    // The umask may have narrowed the creation mode; set it exactly, via the
                    // handle so no path lookup is involved.
                    file.set_permissions(fs::Permissions::from_mode(mode))
                        .map_err(|source| SourceError::Io {
                            action: "set permissions of",
                            path,
                            source,
                        })?;
                    stats.files += 1;
                    stats.bytes += data.len() as u64;
                }
                Step::Symlink { rel, id } => {
                    let path = dest.join(&rel);
                    let mut blob = repo.find_blob(id).map_err(|err| {
                        self.repo_error(format!("read blob {id} for {}", rel.display()), &err)
                    })?;
                    let target = blob.take_data();
                    if target.is_empty() || target.contains(&0) {
                        return Err(SourceError::UnsafePath {
                            commit: *commit,
                            entry: rel.display().to_string(),
                            reason: "symlink target is empty or contains a NUL byte",
                        });
                    }
                    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &path)
                        .map_err(|source| SourceError::Io {
                            action: "create symlink",
                            path,
                            source,
                        })?;
                    stats.files += 1;
                    stats.bytes += target.len() as u64;
                }
            }
        }
        tracing::debug!(
            commit = %commit,
            dest = %dest.display(),
            files = stats.files,
            bytes = stats.bytes,
            "materialised source tree"
        );
        Ok(stats)
    }

    /// Walk the commit's tree and list what to create, refusing unsafe entries. Nothing is
    /// written until the whole tree has been checked.
    fn plan_tree(
        &self,
        repo: &gix::Repository,
        commit: &CommitId,
    ) -> Result<Vec<Step>, SourceError> {
        let root = self.commit_tree(repo, commit)?.id;
        let mut plan = Vec::new();
        // An explicit stack rather than recursion: a hostile, deeply nested tree must not be able
        // to overflow the thread's stack.
        let mut pending = vec![(root, PathBuf::new())];
        while let Some((tree_id, dir)) = pending.pop() {
            let tree = repo
                .find_tree(tree_id)
                .map_err(|err| self.repo_error(format!("read tree {tree_id}"), &err))?;
            let decoded = tree
                .decode()
                .map_err(|err| self.repo_error(format!("decode tree {tree_id}"), &err))?;
            let mut seen = HashSet::new();
            for entry in &decoded.entries {
                let name: &[u8] = entry.filename;
                let display = || {
                    dir.join(std::ffi::OsStr::from_bytes(name))
                        .display()
                        .to_string()
                };
                if let Some(reason) = unsafe_entry_name(name) {
                    return Err(SourceError::UnsafePath {
                        commit: *commit,
                        entry: display(),
                        reason,
                    });
                }
                if !seen.insert(name) {
                    return Err(SourceError::UnsafePath {
                        commit: *commit,
                        entry: display(),
                        reason: "the name appears twice in one directory",
                    });
                }
                let rel = dir.join(std::ffi::OsStr::from_bytes(name));
                let id = entry.oid.to_owned();
                match entry.mode.kind() {
                    EntryKind::Tree => {
                        plan.push(Step::Dir { rel: rel.clone() });
                        pending.push((id, rel));
                    }
                    EntryKind::Blob => plan.push(Step::File {
                        rel,
                        id,
                        executable: false,
                    }),
                    EntryKind::BlobExecutable => plan.push(Step::File {
                        rel,
                        id,
                        executable: true,
                    }),
                    EntryKind::Link => plan.push(Step::Symlink { rel, id }),
                    EntryKind::Commit => {
                        tracing::warn!(
                            commit = %commit,
                            path = %rel.display(),
                            submodule = %id,
                            "skipping submodule: submodules are not checked out"
                        );
                    }
                }
            }
        }
        Ok(plan)
    }
}

/// One thing [`Mirror::materialise`] creates, relative to the destination. Directories always
/// come before their contents.
enum Step {
    Dir {
        rel: PathBuf,
    },
    File {
        rel: PathBuf,
        id: gix::ObjectId,
        executable: bool,
    },
    Symlink {
        rel: PathBuf,
        id: gix::ObjectId,
    },
}

/// Why a tree entry name may not be written to disk, if it may not.
fn unsafe_entry_name(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty name")
    } else if name == b"." || name == b".." {
        Some("relative directory name")
    } else if name.contains(&b'/') {
        Some("name contains '/'")
    } else if name.contains(&0) {
        Some("name contains a NUL byte")
    } else if name.eq_ignore_ascii_case(b".git") {
        Some("a .git entry would plant repository metadata")
    } else {
        None
    }
}

/// Make `dest` an existing, empty directory.
fn prepare_destination(dest: &Path) -> Result<(), SourceError> {
    match fs::symlink_metadata(dest) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(SourceError::DestinationNotEmpty {
                    path: dest.to_owned(),
                });
            }
            let mut entries = fs::read_dir(dest).map_err(|source| SourceError::Io {
                action: "list",
                path: dest.to_owned(),
                source,
            })?;
            if entries.next().is_some() {
                return Err(SourceError::DestinationNotEmpty {
                    path: dest.to_owned(),
                });
            }
            Ok(())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dest)
            .map_err(|source| SourceError::Io {
                action: "create directory",
                path: dest.to_owned(),
                source,
            }),
        Err(source) => Err(SourceError::Io {
            action: "inspect",
            path: dest.to_owned(),
            source,
        }),
    }
}

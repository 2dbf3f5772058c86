//! [`Mirror::materialise`]: writing a commit's tree into a directory, after checking every
//! entry. Every write goes through [`TreeRoot`], beneath the destination, never through a link.
#![deny(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::fs;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Component, Path, PathBuf};

use gix::objs::tree::EntryKind;

use super::{CommitId, MaterialiseStats, Mirror, SourceError, TreeLimits};
use crate::tree::{TreeError, TreeRoot};

impl Mirror {
    /// Write the commit's tree into `dest`, which must be empty or absent.
    ///
    /// Regular files get mode 0644, executables 0755, symlinks are created with their target
    /// verbatim, and submodule entries are skipped with a warning. The whole tree is checked
    /// before anything is written: an entry named `""`, `.`, `..`, `.git` (any case), containing
    /// `/` or NUL, or appearing twice in one directory, and a symlink whose target is absolute
    /// or climbs out of the tree, are refused with [`SourceError::UnsafePath`] naming the entry.
    /// Every write goes through [`TreeRoot`], so nothing is ever written through a link.
    ///
    /// If writing fails part-way (disk full, say), `dest` is left partly filled: callers should
    /// discard it rather than use or retry into it.
    pub fn materialise(
        &self,
        commit: &CommitId,
        dest: &Path,
    ) -> Result<MaterialiseStats, SourceError> {
        self.materialise_limited(commit, dest, &TreeLimits::default())
    }

    /// [`Self::materialise`] within `limits`: entries and sizes (from the object headers) are
    /// counted while the tree is planned, and the whole checkout must fit above the host's
    /// reserve, all before anything is written.
    pub fn materialise_limited(
        &self,
        commit: &CommitId,
        dest: &Path,
        limits: &TreeLimits,
    ) -> Result<MaterialiseStats, SourceError> {
        let repo = self.repo.to_thread_local();
        let (plan, planned_bytes) = self.plan_tree(&repo, commit, limits)?;
        prepare_destination(dest)?;
        // Each entry takes up to a block beyond its bytes, and a block of its own (inode,
        // directory entry): half a million empty files are not free.
        let disk_cost = planned_bytes.saturating_add((plan.len() as u64).saturating_mul(8192));
        check_room(commit, dest, disk_cost, limits.reserve_bytes)?;

        let root = TreeRoot::open(dest).map_err(|e| tree_io("open", dest, e))?;
        let mut stats = MaterialiseStats::default();
        for step in plan {
            match step {
                Step::Dir { rel } => root
                    .create_dir(&rel, 0o755)
                    .map_err(|e| tree_io("create directory", &rel, e))?,
                Step::File {
                    rel,
                    id,
                    executable,
                } => {
                    let mut blob = repo.find_blob(id).map_err(|err| {
                        self.repo_error(format!("read blob {id} for {}", rel.display()), &err)
                    })?;
                    let data = blob.take_data();
                    // The header was checked while planning; the loaded object is the truth.
                    if data.len() as u64 > limits.max_file_bytes {
                        return Err(too_large(
                            commit,
                            format!(
                                "'{}' is {} bytes, over the limit of {} bytes per file",
                                rel.display(),
                                data.len(),
                                limits.max_file_bytes
                            ),
                        ));
                    }
                    let mode = if executable { 0o755 } else { 0o644 };
                    // A new file (O_EXCL) beneath the root: nothing already there is followed.
                    let mut file = root
                        .create_file(&rel, mode)
                        .map_err(|e| tree_io("create file", &rel, e))?;
                    file.write_all(&data).map_err(|source| SourceError::Io {
                        action: "write file",
                        path: dest.join(&rel),
                        source,
                    })?;
                    stats.files += 1;
                    stats.bytes += data.len() as u64;
                }
                Step::Symlink { rel, target } => {
                    root.symlink(std::ffi::OsStr::from_bytes(&target), &rel)
                        .map_err(|e| tree_io("create symlink", &rel, e))?;
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
        limits: &TreeLimits,
    ) -> Result<(Vec<Step>, u64), SourceError> {
        let root = self.commit_tree(repo, commit)?.id;
        let mut plan = Vec::new();
        let mut total_bytes: u64 = 0;
        // A file's size from its object header (no blob is loaded to plan).
        let mut add_file = |rel: &Path, id: gix::ObjectId| -> Result<(), SourceError> {
            let size = repo
                .find_header(id)
                .map_err(|err| {
                    self.repo_error(format!("read the header of {} ({id})", rel.display()), &err)
                })?
                .size();
            if size > limits.max_file_bytes {
                return Err(too_large(
                    commit,
                    format!(
                        "'{}' is {size} bytes, over the limit of {} bytes per file",
                        rel.display(),
                        limits.max_file_bytes
                    ),
                ));
            }
            total_bytes = total_bytes.saturating_add(size);
            if total_bytes > limits.max_total_bytes {
                return Err(too_large(
                    commit,
                    format!(
                        "its files come to more than {} bytes (at '{}')",
                        limits.max_total_bytes,
                        rel.display()
                    ),
                ));
            }
            Ok(())
        };
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
                if plan.len() as u64 >= limits.max_entries {
                    return Err(too_large(
                        commit,
                        format!(
                            "its tree has more than {} entries (at '{}')",
                            limits.max_entries,
                            dir.join(std::ffi::OsStr::from_bytes(name)).display()
                        ),
                    ));
                }
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
                    EntryKind::Blob | EntryKind::BlobExecutable => {
                        add_file(&rel, id)?;
                        plan.push(Step::File {
                            rel,
                            id,
                            executable: entry.mode.kind() == EntryKind::BlobExecutable,
                        });
                    }
                    EntryKind::Link => {
                        // Its size from the header first (a link's target is a blob like any
                        // other, and counts in the total): a target longer than a path can be
                        // is refused before it is loaded.
                        add_file(&rel, id)?;
                        let size = repo
                            .find_header(id)
                            .map_err(|err| {
                                self.repo_error(
                                    format!("read the header of {}", rel.display()),
                                    &err,
                                )
                            })?
                            .size();
                        if size > MAX_LINK_TARGET_BYTES {
                            return Err(SourceError::UnsafePath {
                                commit: *commit,
                                entry: rel.display().to_string(),
                                reason: "a symlink target longer than a path can be (4095 bytes)",
                            });
                        }
                        let mut blob = repo.find_blob(id).map_err(|err| {
                            self.repo_error(format!("read blob {id} for {}", rel.display()), &err)
                        })?;
                        let target = blob.take_data();
                        if let Some(reason) = unsafe_link_target(&rel, &target) {
                            return Err(SourceError::UnsafePath {
                                commit: *commit,
                                entry: rel.display().to_string(),
                                reason,
                            });
                        }
                        plan.push(Step::Symlink { rel, target });
                    }
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
        Ok((plan, total_bytes))
    }
}

/// Longest symlink target (Linux's `PATH_MAX` less its NUL).
const MAX_LINK_TARGET_BYTES: u64 = 4095;

fn too_large(commit: &CommitId, what: String) -> SourceError {
    SourceError::TreeTooLarge {
        commit: *commit,
        what,
    }
}

/// The checkout (`disk_cost`: its bytes and a per-entry cost) must fit above the host's
/// reserve. The free figure goes to the server's log, not into the run's reason (which the
/// change's author reads).
fn check_room(
    commit: &CommitId,
    dest: &Path,
    planned_bytes: u64,
    reserve: u64,
) -> Result<(), SourceError> {
    let free =
        crate::executor::HostReserve::free_bytes(dest).map_err(|source| SourceError::Io {
            action: "measure free space",
            path: dest.to_path_buf(),
            source,
        })?;
    let needed = planned_bytes.saturating_add(reserve);
    if free < needed {
        tracing::warn!(commit = %commit, free, needed = planned_bytes, reserve, "a checkout does not fit above the host's reserve");
        return Err(too_large(
            commit,
            format!(
                "its files (about {} MiB on disk) would take the host below its reserve of {} MiB",
                planned_bytes >> 20,
                reserve >> 20
            ),
        ));
    }
    Ok(())
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
        target: Vec<u8>,
    },
}

/// Why a committed link may not be written, if it may not.
///
/// A link may point anywhere inside the tree, but not outside it: an absolute target, or one
/// that climbs above the tree's root, is refused. `..` is only accepted at the start of the
/// target, where it climbs through the link's own (real) parent directories; after a name, the
/// name could itself be a link and `..` would then climb from wherever that one points.
fn unsafe_link_target(link: &Path, target: &[u8]) -> Option<&'static str> {
    if target.is_empty() || target.contains(&0) {
        return Some("symlink target is empty or contains a NUL byte");
    }
    let target = Path::new(std::ffi::OsStr::from_bytes(target));
    // Directories above the link, within the tree.
    let mut depth = link.components().count().saturating_sub(1);
    let mut seen_name = false;
    for component in target.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => {
                return Some("symlink target is absolute (links may only point inside the tree)");
            }
            Component::CurDir => {}
            Component::ParentDir if seen_name => {
                return Some(
                    "symlink target has '..' after a name (it could climb through another link)",
                );
            }
            Component::ParentDir => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return Some("symlink target climbs out of the tree"),
            },
            Component::Normal(_) => seen_name = true,
        }
    }
    None
}

/// A refusal or failure of the beneath-root layer, as a located source error.
fn tree_io(action: &'static str, rel: &Path, err: TreeError) -> SourceError {
    SourceError::Io {
        action,
        path: rel.to_path_buf(),
        source: err.into(),
    }
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

/// Make `dest` an existing, empty directory. `dest` is the host's own path, above the tree.
#[allow(clippy::disallowed_methods)]
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

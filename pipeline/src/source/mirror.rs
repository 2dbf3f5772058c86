//! [`Mirror`]: opening a repository, resolving revisions, reading files and commit metadata.

use std::path::Path;

use gix::bstr::ByteSlice as _;
use gix::objs::tree::EntryKind;

use super::error::describe;
use super::{CommitId, CommitSummary, Mirror, SourceError, validate_ref_name};

impl Mirror {
    /// Open an existing local repository (bare, or a work tree with `.git`) without fetching.
    pub fn open(path: &Path) -> Result<Mirror, SourceError> {
        let repo = gix::ThreadSafeRepository::open(path).map_err(|err| SourceError::Open {
            path: path.to_owned(),
            message: describe(&err, ""),
        })?;
        Ok(Mirror {
            repo,
            path: path.to_owned(),
        })
    }

    /// The path this repository was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Resolve a revision (`HEAD`, a branch, a tag, a full ref, a hex id, `HEAD~1`, ...) to a
    /// commit, peeling annotated tags.
    pub fn resolve(&self, rev: &str) -> Result<CommitId, SourceError> {
        let repo = self.repo.to_thread_local();
        let not_found = |message: String| SourceError::RevNotFound {
            rev: rev.to_owned(),
            repo: self.path.clone(),
            message,
        };
        let id = repo
            .rev_parse_single(rev)
            .map_err(|err| not_found(describe(&err, "")))?;
        let object = id.object().map_err(|err| not_found(describe(&err, "")))?;
        let commit = object
            .peel_to_commit()
            .map_err(|err| not_found(describe(&err, "")))?;
        Ok(CommitId(commit.id))
    }

    /// Read the blob at `path` (`a/b/c`, forward slashes) in the commit's tree, without a work
    /// tree. `Ok(None)` when there is nothing at `path`; [`SourceError::FileTooLarge`] when the
    /// blob is bigger than `max_bytes` (checked from the object header, before loading it).
    pub fn read_file(
        &self,
        commit: &CommitId,
        path: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>, SourceError> {
        let components = split_repo_path(path)?;
        let repo = self.repo.to_thread_local();
        let tree = self.commit_tree(&repo, commit)?;
        let entry = tree
            .lookup_entry(components.iter().copied())
            .map_err(|err| self.repo_error(format!("look up {path:?} in commit {commit}"), &err))?;
        let Some(entry) = entry else {
            return Ok(None);
        };
        let not_a_file = |kind| SourceError::NotAFile {
            path: path.to_owned(),
            commit: *commit,
            kind,
        };
        match entry.mode().kind() {
            EntryKind::Blob | EntryKind::BlobExecutable => {}
            EntryKind::Tree => return Err(not_a_file("directory")),
            EntryKind::Link => return Err(not_a_file("symlink")),
            EntryKind::Commit => return Err(not_a_file("submodule")),
        }
        let id = entry.object_id();
        let header = repo
            .find_header(id)
            .map_err(|err| self.repo_error(format!("read the header of {path:?} ({id})"), &err))?;
        let too_large = |size| SourceError::FileTooLarge {
            path: path.to_owned(),
            commit: *commit,
            size,
            max: max_bytes,
        };
        if header.size() > max_bytes {
            return Err(too_large(header.size()));
        }
        let mut blob = repo
            .find_blob(id)
            .map_err(|err| self.repo_error(format!("read {path:?} ({id})"), &err))?;
        let data = blob.take_data();
        // The header is authoritative, but a corrupt object database should not get past the limit.
        if data.len() as u64 > max_bytes {
            return Err(too_large(data.len() as u64));
        }
        Ok(Some(data))
    }

    /// Paths (relative to `dir`, forward slashes) of every regular file below the directory
    /// `dir` in the commit's tree, sorted. `Ok(empty)` when `dir` does not exist; symlinks and
    /// submodules are skipped. More than `max_files` entries is [`SourceError::Repository`], so a
    /// hostile tree cannot make the caller hold an unbounded list.
    pub fn list_files(
        &self,
        commit: &CommitId,
        dir: &str,
        max_files: usize,
    ) -> Result<Vec<String>, SourceError> {
        let repo = self.repo.to_thread_local();
        let tree = self.commit_tree(&repo, commit)?;
        let components = split_repo_path(dir)?;
        let entry = tree
            .lookup_entry(components.iter().copied())
            .map_err(|err| self.repo_error(format!("look up {dir:?} in commit {commit}"), &err))?;
        let Some(entry) = entry else {
            return Ok(Vec::new());
        };
        if entry.mode().kind() != EntryKind::Tree {
            return Ok(Vec::new());
        }
        let sub = repo
            .find_tree(entry.object_id())
            .map_err(|err| self.repo_error(format!("read the tree {dir:?}"), &err))?;
        let mut recorder = gix::traverse::tree::Recorder::default();
        sub.traverse()
            .breadthfirst(&mut recorder)
            .map_err(|err| self.repo_error(format!("walk the tree {dir:?}"), &err))?;
        let mut files: Vec<String> = recorder
            .records
            .into_iter()
            .filter(|r| matches!(r.mode.kind(), EntryKind::Blob | EntryKind::BlobExecutable))
            .map(|r| r.filepath.to_str_lossy().into_owned())
            .collect();
        if files.len() > max_files {
            return Err(SourceError::Repository {
                action: format!("list {dir:?} in commit {commit}"),
                repo: self.path.clone(),
                message: format!("{} files (limit {max_files})", files.len()),
            });
        }
        files.sort();
        Ok(files)
    }

    /// Committer time in seconds since the Unix epoch.
    pub fn commit_time(&self, commit: &CommitId) -> Result<i64, SourceError> {
        let repo = self.repo.to_thread_local();
        let found = self.find_commit(&repo, commit)?;
        let time = found
            .time()
            .map_err(|err| self.repo_error(format!("read the committer time of {commit}"), &err))?;
        Ok(time.seconds)
    }

    /// First line of the commit message and the author as `Name <email>`.
    pub fn commit_summary(&self, commit: &CommitId) -> Result<CommitSummary, SourceError> {
        let repo = self.repo.to_thread_local();
        let found = self.find_commit(&repo, commit)?;
        let message = found
            .message()
            .map_err(|err| self.repo_error(format!("read the message of {commit}"), &err))?;
        let author = found
            .author()
            .map_err(|err| self.repo_error(format!("read the author of {commit}"), &err))?;
        Ok(CommitSummary {
            subject: message.summary().to_str_lossy().into_owned(),
            author: format!(
                "{} <{}>",
                author.name.to_str_lossy(),
                author.email.to_str_lossy()
            ),
        })
    }

    /// Whether `ancestor` is reachable from `descendant` (a commit counts as reachable from
    /// itself).
    pub fn is_ancestor(
        &self,
        ancestor: &CommitId,
        descendant: &CommitId,
    ) -> Result<bool, SourceError> {
        if ancestor == descendant {
            return Ok(true);
        }
        let repo = self.repo.to_thread_local();
        // Fail clearly on unknown ids rather than answering "no".
        self.find_commit(&repo, ancestor)?;
        self.find_commit(&repo, descendant)?;
        // If `ancestor` is reachable from `descendant`, it is their unique best merge base.
        let base = repo.merge_base(ancestor.0, descendant.0).map_err(|err| {
            self.repo_error(
                format!("compute the merge base of {ancestor} and {descendant}"),
                &err,
            )
        })?;
        Ok(base.is_some_and(|base| base.detach() == ancestor.0))
    }

    /// The branch `HEAD` points to (`refs/heads/main`), or `None` when HEAD is detached.
    pub fn head_ref(&self) -> Option<String> {
        let repo = self.repo.to_thread_local();
        repo.head_name()
            .ok()
            .flatten()
            .map(|name| name.as_bstr().to_string())
    }

    /// The commit the full ref name `full_ref` (e.g. `refs/heads/main`) points to, if it exists.
    /// Annotated tags are peeled.
    pub fn ref_target(&self, full_ref: &str) -> Result<Option<CommitId>, SourceError> {
        // A partial name like `main` would be looked up in several places; only accept a full
        // name so the answer is about exactly the ref asked for.
        if full_ref != "HEAD" && !full_ref.starts_with("refs/") {
            return Err(SourceError::InvalidRev {
                rev: full_ref.to_owned(),
                message: "expected a full ref name starting with refs/".to_owned(),
            });
        }
        validate_ref_name(full_ref)?;
        let repo = self.repo.to_thread_local();
        let reference = repo
            .try_find_reference(full_ref)
            .map_err(|err| self.repo_error(format!("look up {full_ref}"), &err))?;
        let Some(mut reference) = reference else {
            return Ok(None);
        };
        let commit = reference
            .peel_to_commit()
            .map_err(|err| SourceError::RevNotFound {
                rev: full_ref.to_owned(),
                repo: self.path.clone(),
                message: describe(&err, ""),
            })?;
        Ok(Some(CommitId(commit.id)))
    }

    pub(super) fn has_object(&self, id: gix::ObjectId) -> bool {
        self.repo.to_thread_local().has_object(id)
    }

    /// Peel `id` (a commit or an annotated tag) to a commit; `rev` names it in errors.
    pub(super) fn peel_to_commit(
        &self,
        id: gix::ObjectId,
        rev: &str,
    ) -> Result<CommitId, SourceError> {
        let repo = self.repo.to_thread_local();
        let not_found = |message: String| SourceError::RevNotFound {
            rev: rev.to_owned(),
            repo: self.path.clone(),
            message,
        };
        let object = repo
            .find_object(id)
            .map_err(|err| not_found(describe(&err, "")))?;
        let commit = object
            .peel_to_commit()
            .map_err(|err| not_found(describe(&err, "")))?;
        Ok(CommitId(commit.id))
    }

    fn find_commit<'r>(
        &self,
        repo: &'r gix::Repository,
        commit: &CommitId,
    ) -> Result<gix::Commit<'r>, SourceError> {
        repo.find_commit(commit.0)
            .map_err(|err| SourceError::RevNotFound {
                rev: commit.to_string(),
                repo: self.path.clone(),
                message: describe(&err, ""),
            })
    }

    pub(super) fn commit_tree<'r>(
        &self,
        repo: &'r gix::Repository,
        commit: &CommitId,
    ) -> Result<gix::Tree<'r>, SourceError> {
        self.find_commit(repo, commit)?
            .tree()
            .map_err(|err| self.repo_error(format!("read the tree of commit {commit}"), &err))
    }

    pub(super) fn repo_error(
        &self,
        action: String,
        err: &(dyn std::error::Error + 'static),
    ) -> SourceError {
        SourceError::Repository {
            action,
            repo: self.path.clone(),
            message: describe(err, ""),
        }
    }
}

/// Split a repository-relative path into its components, refusing anything but plain names.
fn split_repo_path(path: &str) -> Result<Vec<&str>, SourceError> {
    let invalid = |reason| SourceError::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    if path.is_empty() {
        return Err(invalid("empty path"));
    }
    if path.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    let components: Vec<&str> = path.split('/').collect();
    for component in &components {
        match *component {
            "" => return Err(invalid("empty component (leading, trailing or double '/')")),
            "." | ".." => return Err(invalid("'.' and '..' components are not allowed")),
            _ => {}
        }
    }
    Ok(components)
}

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

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::AtomicBool;

use gix::bstr::ByteSlice as _;
use gix::objs::tree::EntryKind;
use gix::remote::fetch::refmap::SpecIndex;
use sha2::{Digest as _, Sha256};

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

/// Errors from fetching, resolving and reading sources.
///
/// Messages never contain a URL's userinfo (`user:password@`): URLs are redacted, and errors
/// coming from gix are flattened into redacted text rather than kept as `#[source]`, because
/// their own messages may quote the URL verbatim.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The repository URL could not be parsed.
    #[error("invalid repository URL {url}: {message}")]
    InvalidUrl {
        /// The URL, redacted.
        url: String,
        /// What was wrong with it.
        message: String,
    },
    /// A refspec could not be parsed.
    #[error("invalid fetch refspec {spec:?}: {message}")]
    InvalidRefspec {
        /// The refspec as given.
        spec: String,
        /// What was wrong with it.
        message: String,
    },
    /// `fetch` was called without any refspec.
    #[error("nothing to fetch from {url}: no refspecs were given")]
    NoRefspecs {
        /// The URL, redacted.
        url: String,
    },
    /// A revision given to `fetch_rev` is not usable as a ref name.
    #[error("invalid revision {rev:?}: {message}")]
    InvalidRev {
        /// The revision as given.
        rev: String,
        /// What was wrong with it.
        message: String,
    },
    /// A string that should be a full hex commit id is not one.
    #[error("{input:?} is not a full hexadecimal commit id")]
    InvalidCommitId {
        /// The string as given.
        input: String,
    },
    /// Creating or locking the bare mirror failed.
    #[error("cannot prepare the mirror at {path}: {message}")]
    Mirror {
        /// The mirror's directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A local repository could not be opened.
    #[error("cannot open the git repository at {path}: {message}")]
    Open {
        /// The path given.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Connecting to the remote or listing its refs failed.
    #[error("cannot reach the git repository {url}: {message}")]
    Connect {
        /// The URL, redacted.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The remote does not have a ref that was asked for by exact name.
    #[error(
        "the git repository {url} has no ref {reference} (check the branch name, tag, or change and patchset number)"
    )]
    RefNotFound {
        /// The URL, redacted.
        url: String,
        /// The ref that was asked for.
        reference: String,
    },
    /// Negotiating or receiving the pack failed.
    #[error("fetching from {url} failed: {message}")]
    Fetch {
        /// The URL, redacted.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A commit id was asked for but the remote does not have it on any branch, tag or change ref.
    #[error(
        "commit {commit} was not found in {url} (it is on no branch, tag or change ref the server advertises)"
    )]
    CommitNotFound {
        /// The URL, redacted.
        url: String,
        /// The commit that was asked for.
        commit: String,
    },
    /// A revision did not resolve to a commit in the local repository.
    #[error("revision {rev:?} does not name a commit in {repo}: {message}")]
    RevNotFound {
        /// The revision as given.
        rev: String,
        /// The repository searched.
        repo: PathBuf,
        /// Why it did not resolve.
        message: String,
    },
    /// A path given to `read_file` is not a plain relative path.
    #[error("invalid path {path:?} inside the repository: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `read_file` found something that is not a regular file.
    #[error("{path:?} in commit {commit} is a {kind}, not a regular file")]
    NotAFile {
        /// The path as given.
        path: String,
        /// The commit read from.
        commit: CommitId,
        /// What it is instead (directory, symlink, submodule).
        kind: &'static str,
    },
    /// A file is larger than the caller allows.
    #[error("{path:?} in commit {commit} is {size} bytes, more than the limit of {max} bytes")]
    FileTooLarge {
        /// The path as given.
        path: String,
        /// The commit read from.
        commit: CommitId,
        /// The blob's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A tree entry would escape or corrupt the destination directory; nothing was written.
    #[error(
        "refusing to write commit {commit}: tree entry {entry:?} is unsafe ({reason}); nothing was written"
    )]
    UnsafePath {
        /// The commit being written.
        commit: CommitId,
        /// The entry's path inside the tree, lossily decoded.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The destination for `materialise` already has content.
    #[error(
        "cannot write the source tree into {path}: it must be an empty directory or not exist yet"
    )]
    DestinationNotEmpty {
        /// The destination.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done ("create directory", "write file", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Reading objects from the local repository failed.
    #[error("cannot {action} in {repo}: {message}")]
    Repository {
        /// What was being done.
        action: String,
        /// The repository.
        repo: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Where bare mirrors of remote repositories live.
#[derive(Debug, Clone)]
pub struct SourceCache {
    root: PathBuf,
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

/// Refspecs used when a bare commit id is asked for: every place a CI commit usually lives.
const ALL_REFS: [&str; 3] = [
    "+refs/heads/*:refs/heads/*",
    "+refs/tags/*:refs/tags/*",
    "+refs/changes/*:refs/changes/*",
];

/// File name of the advisory lock held inside a mirror while fetching into it.
const FETCH_LOCK: &str = "airlock-fetch.lock";

impl SourceCache {
    /// A cache whose mirrors live under `root` (created on first fetch).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SourceCache { root: root.into() }
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the bare mirror for this URL:
    /// `root/<first 16 hex of sha256(url)>-<sanitised last path segment>.git`.
    ///
    /// The hash is taken over the URL with any userinfo removed: credentials are not part of a
    /// repository's identity, and a short unsalted hash of a password in a directory name would
    /// leak it to anyone who can list the cache.
    pub fn mirror_path(&self, url: &str) -> PathBuf {
        let identity = strip_userinfo(url);
        let digest = Sha256::digest(identity.as_bytes());
        let hash = hex::encode(digest);
        let name = format!("{}-{}.git", &hash[..16], last_segment(&identity));
        self.root.join(name)
    }

    /// Create the bare mirror if missing, then fetch `refspecs` from `url` into it.
    ///
    /// `url` may be `file://`, `git://`, `http(s)://` or a plain local path. Fetches are
    /// incremental: the mirror's refs are offered to the server as haves. Every refspec without
    /// a glob must match a ref on the remote, otherwise [`SourceError::RefNotFound`] names it.
    pub fn fetch(&self, url: &str, refspecs: &[String]) -> Result<Mirror, SourceError> {
        let specs: Vec<&str> = refspecs.iter().map(String::as_str).collect();
        let (mirror, _matched) = self.fetch_inner(url, &specs, Require::EveryExactSpec)?;
        Ok(mirror)
    }

    /// Fetch what is needed to resolve `rev` from `url` and return the mirror and the commit.
    ///
    /// * `refs/...` (a full ref name, e.g. a Gerrit change `refs/changes/NN/N/P`): fetches
    ///   `+rev:rev`.
    /// * 40 hex characters: the commit is looked for in the mirror, and if absent all branches,
    ///   tags and change refs are fetched; [`SourceError::CommitNotFound`] if it is still absent.
    /// * anything else: the branch `refs/heads/<rev>`, or failing that the tag `refs/tags/<rev>`.
    ///
    /// Annotated tags are peeled to their commit.
    pub fn fetch_rev(&self, url: &str, rev: &str) -> Result<(Mirror, CommitId), SourceError> {
        if rev.starts_with("refs/") {
            validate_ref_name(rev)?;
            let spec = format!("+{rev}:{rev}");
            let (mirror, matched) = self.fetch_inner(url, &[&spec], Require::EveryExactSpec)?;
            let id = matched
                .into_iter()
                .find(|(name, _)| name == rev)
                .map(|(_, id)| id)
                .ok_or_else(|| SourceError::RefNotFound {
                    url: redact_url(url),
                    reference: rev.to_owned(),
                })?;
            let commit = mirror.peel_to_commit(id, rev)?;
            return Ok((mirror, commit));
        }

        if is_full_hex_id(rev) {
            let wanted: CommitId = rev.parse()?;
            // A commit id names immutable content: when the mirror already has it, asking the
            // server again cannot change the answer, so skip the network.
            let path = self.mirror_path(url);
            if path.exists()
                && let Ok(mirror) = open_mirror(&path)
                && mirror.has_object(wanted.0)
            {
                let commit = mirror.peel_to_commit(wanted.0, rev)?;
                return Ok((mirror, commit));
            }
            let (mirror, _) = self.fetch_inner(url, &ALL_REFS, Require::Nothing)?;
            if !mirror.has_object(wanted.0) {
                return Err(SourceError::CommitNotFound {
                    url: redact_url(url),
                    commit: wanted.to_string(),
                });
            }
            let commit = mirror.peel_to_commit(wanted.0, rev)?;
            return Ok((mirror, commit));
        }

        let branch = format!("refs/heads/{rev}");
        let tag = format!("refs/tags/{rev}");
        validate_ref_name(&branch)?;
        // Both in one round trip; the answer is taken from what the *server* advertised, so a
        // stale branch left in the mirror never shadows a tag of the same name.
        let specs = [format!("+{branch}:{branch}"), format!("+{tag}:{tag}")];
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        let (mirror, matched) = match self.fetch_inner(url, &specs, Require::AnyExactSpec) {
            Ok(found) => found,
            Err(SourceError::RefNotFound { url, .. }) => {
                return Err(SourceError::RefNotFound {
                    url,
                    reference: format!("{branch} (nor {tag})"),
                });
            }
            Err(other) => return Err(other),
        };
        let pick = |name: &str| {
            matched
                .iter()
                .find(|(remote, _)| remote == name)
                .map(|(_, id)| *id)
        };
        let id = pick(&branch)
            .or_else(|| pick(&tag))
            .ok_or_else(|| SourceError::RefNotFound {
                url: redact_url(url),
                reference: branch.clone(),
            })?;
        let commit = mirror.peel_to_commit(id, rev)?;
        Ok((mirror, commit))
    }

    /// Shared body of the fetch functions. Returns the mirror and, for each remote ref that
    /// matched a refspec, its name and the object id the server advertised.
    fn fetch_inner(
        &self,
        url: &str,
        refspecs: &[&str],
        require: Require,
    ) -> Result<(Mirror, Vec<(String, gix::ObjectId)>), SourceError> {
        let safe_url = redact_url(url);
        if url.starts_with('-') {
            // Never let a "URL" reach a spawned git (file transport) as an option.
            return Err(SourceError::InvalidUrl {
                url: safe_url,
                message: "a repository URL cannot start with '-'".to_owned(),
            });
        }
        if refspecs.is_empty() {
            return Err(SourceError::NoRefspecs { url: safe_url });
        }
        // Parse every refspec up front so that an error names the offending one.
        for spec in refspecs {
            gix::refspec::parse(
                spec.as_bytes().as_bstr(),
                gix::refspec::parse::Operation::Fetch,
            )
            .map_err(|err| SourceError::InvalidRefspec {
                spec: (*spec).to_owned(),
                message: describe(&err, url),
            })?;
        }

        let path = self.mirror_path(url);
        ensure_mirror(&self.root, &path)?;
        // Serialise fetches into one mirror (threads and processes alike). An OS file lock is
        // released when the holder dies, so a crash cannot leave the mirror locked forever.
        let lock_path = path.join(FETCH_LOCK);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| SourceError::Io {
                action: "open the fetch lock",
                path: lock_path.clone(),
                source,
            })?;
        lock.lock().map_err(|source| SourceError::Io {
            action: "lock",
            path: lock_path.clone(),
            source,
        })?;

        let mirror = open_mirror(&path)?;
        let repo = mirror.repo.to_thread_local();
        let remote = repo
            .remote_at(url)
            .map_err(|err| SourceError::InvalidUrl {
                url: safe_url.clone(),
                message: describe(&err, url),
            })?
            // Only what the refspecs name: no tag auto-following, so a fetch of one change ref
            // does not drag in unrelated history.
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(refspecs.iter().copied(), gix::remote::Direction::Fetch)
            .map_err(|err| SourceError::InvalidRefspec {
                spec: refspecs.join(" "),
                message: describe(&err, url),
            })?;
        let connection = remote
            .connect(gix::remote::Direction::Fetch)
            .map_err(|err| SourceError::Connect {
                url: safe_url.clone(),
                message: describe(&err, url),
            })?;
        let prepare = connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|err| SourceError::Connect {
                url: safe_url.clone(),
                message: describe(&err, url),
            })?;

        let ref_map = prepare.ref_map();
        let mut matched = Vec::new();
        for mapping in &ref_map.mappings {
            if let (Some(name), Some(id)) = (mapping.remote.as_name(), mapping.remote.as_id()) {
                matched.push((name.to_str_lossy().into_owned(), id.to_owned()));
            }
        }
        // gix only complains when *no* exact refspec matched; we want every exact one checked
        // (or at least one, for branch-or-tag lookups) and the missing ref named in the error.
        let mut missing = Vec::new();
        let mut exact = 0usize;
        for (index, spec) in ref_map.refspecs.iter().enumerate() {
            let spec = spec.to_ref();
            let Some(source) = spec.source() else {
                continue;
            };
            if source.find_byteset(b"*?[]\\").is_some() || gix::ObjectId::from_hex(source).is_ok() {
                continue;
            }
            exact += 1;
            let found = ref_map
                .mappings
                .iter()
                .any(|m| m.spec_index == SpecIndex::ExplicitInRemote(index));
            if !found {
                missing.push(source.to_str_lossy().into_owned());
            }
        }
        let fail = match require {
            Require::EveryExactSpec => !missing.is_empty(),
            Require::AnyExactSpec => exact > 0 && missing.len() == exact,
            Require::Nothing => false,
        };
        if fail {
            return Err(SourceError::RefNotFound {
                url: safe_url,
                reference: missing.join(", "),
            });
        }
        if ref_map.mappings.is_empty() {
            // Only possible with globs that match nothing (say, a server without change refs):
            // there is nothing to fetch, and gix would report that as a failure.
            tracing::info!(url = %safe_url, mirror = %path.display(), "no matching refs to fetch");
            drop(prepare);
            drop(lock);
            return Ok((mirror, matched));
        }

        let outcome = prepare
            .receive(gix::progress::Discard, &AtomicBool::new(false))
            .map_err(|err| SourceError::Fetch {
                url: safe_url.clone(),
                message: describe(&err, url),
            })?;
        let objects = match &outcome.status {
            gix::remote::fetch::Status::Change {
                write_pack_bundle, ..
            } => u64::from(write_pack_bundle.index.num_objects),
            gix::remote::fetch::Status::NoPackReceived { .. } => 0,
        };
        tracing::info!(
            url = %safe_url,
            mirror = %path.display(),
            refs = matched.len(),
            objects,
            "fetched"
        );
        drop(lock);
        Ok((mirror, matched))
    }
}

/// How strictly `fetch_inner` insists that exact (non-glob) refspecs match a remote ref.
#[derive(Clone, Copy)]
enum Require {
    EveryExactSpec,
    AnyExactSpec,
    Nothing,
}

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

    fn has_object(&self, id: gix::ObjectId) -> bool {
        self.repo.to_thread_local().has_object(id)
    }

    /// Peel `id` (a commit or an annotated tag) to a commit; `rev` names it in errors.
    fn peel_to_commit(&self, id: gix::ObjectId, rev: &str) -> Result<CommitId, SourceError> {
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

    fn commit_tree<'r>(
        &self,
        repo: &'r gix::Repository,
        commit: &CommitId,
    ) -> Result<gix::Tree<'r>, SourceError> {
        self.find_commit(repo, commit)?
            .tree()
            .map_err(|err| self.repo_error(format!("read the tree of commit {commit}"), &err))
    }

    fn repo_error(&self, action: String, err: &(dyn std::error::Error + 'static)) -> SourceError {
        SourceError::Repository {
            action,
            repo: self.path.clone(),
            message: describe(err, ""),
        }
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

/// Create the bare mirror at `path` if it does not exist yet.
fn ensure_mirror(root: &Path, path: &Path) -> Result<(), SourceError> {
    if path.join("HEAD").exists() {
        return Ok(());
    }
    let mirror_error = |message: String| SourceError::Mirror {
        path: path.to_owned(),
        message,
    };
    fs::create_dir_all(root).map_err(|source| SourceError::Io {
        action: "create the source cache directory",
        path: root.to_owned(),
        source,
    })?;
    // Initialise under a temporary name and rename into place, so concurrent first fetches of
    // one URL never see (or both write) a half-initialised repository.
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let staging = root.join(format!(
        ".init-{}-{}-{nanos}",
        file_name,
        std::process::id()
    ));
    gix::init_bare(&staging).map_err(|err| mirror_error(describe(&err, "")))?;
    match fs::rename(&staging, path) {
        Ok(()) => {
            tracing::debug!(mirror = %path.display(), "created bare mirror");
            Ok(())
        }
        Err(err) => {
            // Best effort: the staging directory is ours and now useless either way.
            let _ = fs::remove_dir_all(&staging);
            if path.join("HEAD").exists() {
                // Someone else created it first; theirs is as good as ours.
                Ok(())
            } else {
                Err(mirror_error(format!(
                    "could not move the new repository into place: {err}"
                )))
            }
        }
    }
}

fn open_mirror(path: &Path) -> Result<Mirror, SourceError> {
    let repo = gix::ThreadSafeRepository::open(path).map_err(|err| SourceError::Mirror {
        path: path.to_owned(),
        message: format!(
            "{} (delete the directory to have it re-created on the next fetch)",
            describe(&err, "")
        ),
    })?;
    Ok(Mirror {
        repo,
        path: path.to_owned(),
    })
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

/// Flatten an error and its causes into one line, with `url`'s credentials removed.
fn describe(err: &(dyn std::error::Error + 'static), url: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(gix_err) = err.downcast_ref::<gix::Error>() {
        for cause in gix_err.iter_errors() {
            // Nested gix errors are expanded by the iterator itself; printing them too would
            // repeat their text.
            if cause.is::<gix::Error>() {
                continue;
            }
            let text = cause.to_string();
            if !text.is_empty() && parts.last() != Some(&text) {
                parts.push(text);
            }
        }
    }
    if parts.is_empty() {
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = current {
            let text = e.to_string();
            if !text.is_empty() && parts.last() != Some(&text) {
                parts.push(text);
            }
            current = e.source();
        }
    }
    redact_text(&parts.join(": "), url)
}

/// The userinfo (`user:password`) of a `scheme://userinfo@host/...` URL, if it has one.
fn userinfo(url: &str) -> Option<(usize, usize)> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_len].rfind('@')?;
    Some((scheme_end, scheme_end + at + 1))
}

/// `url` without its userinfo (used for the mirror's identity).
fn strip_userinfo(url: &str) -> String {
    match userinfo(url) {
        Some((start, end)) => format!("{}{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// `url` with its userinfo replaced by `***`, fit for errors and logs.
fn redact_url(url: &str) -> String {
    match userinfo(url) {
        Some((start, end)) => format!("{}***@{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// Remove credentials from an error text: every `scheme://userinfo@` in it, and any verbatim
/// or percent-decoded copy of `url`'s userinfo or password that gix may have quoted elsewhere.
fn redact_text(text: &str, url: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let start = pos + 3;
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'' || c == '>')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***@");
                rest = &tail[at + 1..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);

    if let Some((start, end)) = userinfo(url) {
        let info = &url[start..end - 1];
        let mut secrets = vec![info.to_owned()];
        if let Some((_, password)) = info.split_once(':') {
            secrets.push(password.to_owned());
            secrets.push(percent_decode(password));
        }
        secrets.push(percent_decode(info));
        // Longest first, so a password inside the whole userinfo does not leave the rest behind.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in secrets {
            if secret.len() >= 3 {
                out = out.replace(&secret, "***");
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            out.push(hi * 16 + lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// A file-name-safe rendering of the URL's last path segment, without `.git`.
fn last_segment(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/.git").unwrap_or(trimmed);
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    let segment = trimmed.rsplit(['/', ':', '\\']).next().unwrap_or_default();
    let mut clean: String = segment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    // No hidden names and nothing that reads as `.` or `..`.
    while clean.starts_with('.') {
        clean.remove(0);
    }
    if clean.is_empty() {
        clean.push_str("repo");
    }
    clean
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use tempfile::TempDir;

    /// Run `git` in `dir` with a fixed identity and dates, independent of global configuration.
    fn git(dir: &Path, args: &[&str]) -> String {
        git_with_input(dir, args, None)
    }

    fn git_with_input(dir: &Path, args: &[&str], input: Option<&[u8]>) -> String {
        let mut cmd = Command::new("git");
        cmd.current_dir(dir)
            .args([
                "-c",
                "user.name=Test Author",
                "-c",
                "user.email=author@example.com",
                "-c",
                "init.defaultBranch=main",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_DATE", "2021-02-03T04:05:06Z")
            .env("GIT_COMMITTER_DATE", "2021-02-03T04:05:06Z")
            .env("GIT_COMMITTER_NAME", "Test Committer")
            .env("GIT_COMMITTER_EMAIL", "committer@example.com")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = input {
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// An upstream work repository with `main` (two commits) and a change ref on top of it.
    struct Upstream {
        _tmp: TempDir,
        dir: PathBuf,
        main_first: String,
        main: String,
        change: String,
    }

    impl Upstream {
        fn new() -> Upstream {
            let tmp = TempDir::new().unwrap();
            let dir = tmp.path().join("upstream");
            fs::create_dir(&dir).unwrap();
            git(&dir, &["init", "-q"]);
            fs::write(dir.join("README.md"), "hello\n").unwrap();
            git(&dir, &["add", "."]);
            git(&dir, &["commit", "-q", "-m", "first commit\n\nbody text"]);
            let main_first = git(&dir, &["rev-parse", "HEAD"]);
            fs::create_dir_all(dir.join("src/bin")).unwrap();
            fs::write(dir.join("src/lib.rs"), "pub fn f() {}\n").unwrap();
            fs::write(dir.join("src/bin/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
            git(&dir, &["add", "."]);
            git(&dir, &["update-index", "--chmod=+x", "src/bin/run.sh"]);
            std::os::unix::fs::symlink("src/lib.rs", dir.join("link")).unwrap();
            git(&dir, &["add", "link"]);
            git(&dir, &["commit", "-q", "-m", "second commit"]);
            let main = git(&dir, &["rev-parse", "HEAD"]);
            // The change: a commit on top of main that only exists under refs/changes.
            git(&dir, &["checkout", "-q", "-b", "change"]);
            fs::create_dir_all(dir.join(".pipeline")).unwrap();
            fs::write(dir.join(".pipeline/config.yaml"), "jobs:\n  build: {}\n").unwrap();
            git(&dir, &["add", "."]);
            git(&dir, &["commit", "-q", "-m", "add pipeline"]);
            let change = git(&dir, &["rev-parse", "HEAD"]);
            git(&dir, &["update-ref", "refs/changes/01/1/1", &change]);
            git(&dir, &["checkout", "-q", "main"]);
            git(&dir, &["branch", "-q", "-D", "change"]);
            Upstream {
                _tmp: tmp,
                dir,
                main_first,
                main,
                change,
            }
        }

        fn url(&self) -> String {
            format!("file://{}", self.dir.display())
        }
    }

    fn id(hex: &str) -> CommitId {
        hex.parse().unwrap()
    }

    fn pack_indices(mirror: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = fs::read_dir(mirror.join("objects/pack"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "idx"))
            .collect();
        out.sort();
        out
    }

    fn objects_in_pack(idx: &Path) -> usize {
        let data = fs::read(idx).unwrap();
        let out = git_with_input(idx.parent().unwrap(), &["show-index"], Some(&data));
        out.lines().count()
    }

    #[test]
    fn source_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Mirror>();
        check::<SourceCache>();
        check::<SourceError>();
        check::<CommitId>();
    }

    #[test]
    fn source_commit_id_round_trips() {
        let hex = "0123456789abcdef0123456789abcdef01234567";
        let parsed: CommitId = hex.parse().unwrap();
        assert_eq!(parsed.to_string(), hex);
        assert!(matches!(
            "0123".parse::<CommitId>(),
            Err(SourceError::InvalidCommitId { .. })
        ));
        assert!(
            "zz23456789abcdef0123456789abcdef01234567"
                .parse::<CommitId>()
                .is_err()
        );
    }

    #[test]
    fn source_mirror_path_is_stable_and_ignores_credentials() {
        let cache = SourceCache::new("/cache");
        let a = cache.mirror_path("https://example.com/org/Repo.git");
        let b = cache.mirror_path("https://user:secret@example.com/org/Repo.git");
        assert_eq!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.ends_with("-Repo.git"), "{name}");
        assert_eq!(name.len(), 16 + 1 + "Repo.git".len());
        assert!(!b.to_string_lossy().contains("secret"));
        assert_ne!(a, cache.mirror_path("https://example.com/org/other.git"));
        assert!(
            cache
                .mirror_path("/srv/git/../..")
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with("-repo.git")
        );
        assert!(
            cache
                .mirror_path("git@host:team/my%20thing.git/")
                .to_string_lossy()
                .ends_with("-my_20thing.git")
        );
    }

    #[test]
    fn source_redacts_url_credentials() {
        let url = "https://bob:p%40ss@example.com/r.git";
        assert_eq!(redact_url(url), "https://***@example.com/r.git");
        assert_eq!(redact_url("git://h/r.git"), "git://h/r.git");
        let text = redact_text(
            "could not connect to \"https://bob:p%40ss@example.com/r.git\"; password p@ss; raw p%40ss",
            url,
        );
        assert!(!text.contains("bob:"), "{text}");
        assert!(!text.contains("p@ss"), "{text}");
        assert!(!text.contains("p%40ss"), "{text}");
        assert!(text.contains("https://***@example.com/r.git"), "{text}");
    }

    #[test]
    fn source_fetch_branch_by_name() {
        let up = Upstream::new();
        let tmp = TempDir::new().unwrap();
        let cache = SourceCache::new(tmp.path().join("cache"));
        let (mirror, commit) = cache.fetch_rev(&up.url(), "main").unwrap();
        assert_eq!(commit, id(&up.main));
        assert_eq!(mirror.path(), cache.mirror_path(&up.url()));
        assert!(mirror.path().starts_with(tmp.path()));
        assert_eq!(
            mirror.ref_target("refs/heads/main").unwrap(),
            Some(id(&up.main))
        );
        // Only what was asked for: the change ref was not fetched.
        assert_eq!(mirror.ref_target("refs/changes/01/1/1").unwrap(), None);
        assert_eq!(mirror.resolve("main~1").unwrap(), id(&up.main_first));
    }

    #[test]
    fn source_concurrent_first_fetches_share_one_mirror() {
        let up = Upstream::new();
        let tmp = TempDir::new().unwrap();
        let cache = SourceCache::new(tmp.path().join("cache"));
        let url = up.url();
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let (cache, url) = (&cache, &url);
                    scope.spawn(move || {
                        let rev = if i % 2 == 0 {
                            "main"
                        } else {
                            "refs/changes/01/1/1"
                        };
                        cache.fetch_rev(url, rev).map(|(_, c)| c)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, result) in results.into_iter().enumerate() {
            let expected = if i % 2 == 0 { &up.main } else { &up.change };
            assert_eq!(result.unwrap(), id(expected));
        }
        // One mirror, no staging directories left behind.
        let names: Vec<_> = fs::read_dir(cache.root())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn source_fetch_from_plain_local_path() {
        let up = Upstream::new();
        let tmp = TempDir::new().unwrap();
        let cache = SourceCache::new(tmp.path());
        let url = up.dir.to_str().unwrap();
        let mirror = cache
            .fetch(url, &["+refs/heads/*:refs/heads/*".to_owned()])
            .unwrap();
        assert_eq!(mirror.resolve("refs/heads/main").unwrap(), id(&up.main));
    }

    #[test]
    fn source_fetch_branch_falls_back_to_tag() {
        let up = Upstream::new();
        git(
            &up.dir,
            &["tag", "-a", "-m", "release", "v1", &up.main_first],
        );
        let tmp = TempDir::new().unwrap();
        let cache = SourceCache::new(tmp.path());
        let (_, commit) = cache.fetch_rev(&up.url(), "v1").unwrap();
        assert_eq!(commit, id(&up.main_first), "annotated tag is peeled");
    }

    #[test]
    fn source_fetch_change_ref() {
        let up = Upstream::new();
        let tmp = TempDir::new().unwrap();
        let cache = SourceCache::new(tmp.path());
        let (mirror, commit) = cache.fetch_rev(&up.url(), "refs/changes/01/1/1").unwrap();
        assert_eq!(commit, id(&up.change));
        assert_eq!(
            mirror.ref_target("refs/changes/01/1/1").unwrap(),
            Some(commit)
        );
        let yaml = mirror
            .read_file(&commit, ".pipeline/config.yaml", 1024)
            .unwrap();
        assert_eq!(yaml.as_deref(), Some(&b"jobs:\n  build: {}\n"[..]));
        assert!(mirror.is_ancestor(&id(&up.main), &commit).unwrap());
    }

    #[test]
    fn source_fetch_by_commit_id() {
        let up = Upstream::new();
        let tmp = TempDir::new().unwrap();
        let cache = SourceCache::new(tmp.path());
        // Only reachable from the change ref, so the change glob must have been fetched.
        let (mirror, commit) = cache.fetch_rev(&up.url(), &up.change).unwrap();
        assert_eq!(commit, id(&up.change));
        // A second request for a known commit is answered from the mirror.
        let (_, again) = cache.fetch_rev(&up.url(), &up.main_first).unwrap();
        assert_eq!(again, id(&up.main_first));

        let absent = "1234567890123456789012345678901234567890";
        let err = cache.fetch_rev(&up.url(), absent).unwrap_err();
        assert!(
            matches!(err, SourceError::CommitNotFound { ref commit, .. } if commit == absent),
            "{err}"
        );
        assert!(err.to_string().contains(absent));
        drop(mirror);
    }

    #[test]
    fn source_commit_id_on_a_remote_without_matching_refs_is_not_found() {
        let up = Upstream::new();
        // Only a ref outside heads/tags/changes remains: the globs match nothing at all.
        git(&up.dir, &["update-ref", "refs/meta/config", &up.main]);
        git(&up.dir, &["checkout", "-q", "--detach"]);
        git(&up.dir, &["branch", "-q", "-D", "main"]);
        git(&up.dir, &["update-ref", "-d", "refs/changes/01/1/1"]);
        let tmp = TempDir::new().unwrap();
        let cache = SourceCache::new(tmp.path());
        let err = cache.fetch_rev(&up.url(), &up.main).unwrap_err();
        assert!(matches!(err, SourceError::CommitNotFound { .. }), "{err:?}");
    }

    #[test]
    fn source_missing_ref_is_named_in_the_error() {
        let up = Upstream::new();
        let tmp = TempDir::new().unwrap();
        let cache = SourceCache::new(tmp.path());
        let err = cache
            .fetch_rev(&up.url(), "refs/changes/99/99/9")
            .unwrap_err();
        assert!(matches!(err, SourceError::RefNotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("refs/changes/99/99/9"), "{err}");

        let err = cache.fetch_rev(&up.url(), "no-such-branch").unwrap_err();
        assert!(
            err.to_string().contains("refs/heads/no-such-branch"),
            "{err}"
        );

        // Every exact refspec must match, even when another one does.
        let err = cache
            .fetch(
                &up.url(),
                &[
                    "+refs/heads/main:refs/heads/main".to_owned(),
                    "+refs/heads/gone:refs/heads/gone".to_owned(),
                ],
            )
            .unwrap_err();
        assert!(err.to_string().contains("refs/heads/gone"), "{err}");
        assert!(!err.to_string().contains("refs/heads/main"), "{err}");
    }

    #[test]
    fn source_rejects_bad_input() {
        let tmp = TempDir::new().unwrap();
        let cache = SourceCache::new(tmp.path());
        let err = cache
            .fetch_rev("/nonexistent", "refs/heads/a:refs/x")
            .unwrap_err();
        assert!(matches!(err, SourceError::InvalidRev { .. }), "{err:?}");
        let err = cache
            .fetch_rev("--upload-pack=touch /tmp/x", "main")
            .unwrap_err();
        assert!(matches!(err, SourceError::InvalidUrl { .. }), "{err:?}");
        let err = cache.fetch("/nonexistent", &[]).unwrap_err();
        assert!(matches!(err, SourceError::NoRefspecs { .. }), "{err:?}");
        let err = cache
            .fetch("/nonexistent", &["refs/heads/*:refs/x".to_owned()])
            .unwrap_err();
        assert!(matches!(err, SourceError::InvalidRefspec { .. }), "{err:?}");
    }

    #[test]
    fn source_unreachable_remote_error_is_redacted() {
        let tmp = TempDir::new().unwrap();
        let cache = SourceCache::new(tmp.path());
        // Nothing listens on port 1; the error must not repeat the password.
        let url = "http://alice:hunter2secret@127.0.0.1:1/repo.git";
        let err = cache.fetch_rev(url, "main").unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("hunter2secret"), "{text}");
        assert!(!text.contains("alice"), "{text}");
        assert!(!cache.mirror_path(url).to_string_lossy().contains("hunter2"));
    }

    #[test]
    fn source_incremental_fetch_picks_up_new_commit() {
        let up = Upstream::new();
        let tmp = TempDir::new().unwrap();
        let cache = SourceCache::new(tmp.path());
        let (mirror, first) = cache.fetch_rev(&up.url(), "main").unwrap();
        assert_eq!(first, id(&up.main));
        let before = pack_indices(mirror.path());
        let total_before: usize = before.iter().map(|p| objects_in_pack(p)).sum();

        fs::write(up.dir.join("NEW.txt"), "new\n").unwrap();
        git(&up.dir, &["add", "."]);
        git(&up.dir, &["commit", "-q", "-m", "third"]);
        let third = git(&up.dir, &["rev-parse", "HEAD"]);

        let (mirror, second) = cache.fetch_rev(&up.url(), "main").unwrap();
        assert_eq!(second, id(&third));
        let after = pack_indices(mirror.path());
        let new: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
        assert_eq!(new.len(), 1, "one new pack: {after:?}");
        let new_objects = objects_in_pack(new[0]);
        // commit + root tree + blob; never the whole history again.
        assert!(
            new_objects < total_before,
            "{new_objects} vs {total_before}"
        );
        assert!(new_objects <= 4, "{new_objects}");

        // Nothing new: no pack at all.
        let (mirror, third_again) = cache.fetch_rev(&up.url(), "main").unwrap();
        assert_eq!(third_again, second);
        assert_eq!(pack_indices(mirror.path()), after);
    }

    #[test]
    fn source_read_file_present_absent_too_large() {
        let up = Upstream::new();
        let mirror = Mirror::open(&up.dir).unwrap();
        let main = id(&up.main);
        assert_eq!(
            mirror.read_file(&main, "src/lib.rs", 100).unwrap().unwrap(),
            b"pub fn f() {}\n"
        );
        assert_eq!(
            mirror.read_file(&main, "src/missing.rs", 100).unwrap(),
            None
        );
        assert_eq!(mirror.read_file(&main, "README.md/x", 100).unwrap(), None);
        let err = mirror.read_file(&main, "src/lib.rs", 5).unwrap_err();
        assert!(
            matches!(
                err,
                SourceError::FileTooLarge {
                    size: 14,
                    max: 5,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = mirror.read_file(&main, "src", 100).unwrap_err();
        assert!(
            matches!(
                err,
                SourceError::NotAFile {
                    kind: "directory",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = mirror.read_file(&main, "link", 100).unwrap_err();
        assert!(
            matches!(
                err,
                SourceError::NotAFile {
                    kind: "symlink",
                    ..
                }
            ),
            "{err:?}"
        );
        for bad in [
            "",
            "/src/lib.rs",
            "src//lib.rs",
            "src/../README.md",
            "./README.md",
        ] {
            let err = mirror.read_file(&main, bad, 100).unwrap_err();
            assert!(
                matches!(err, SourceError::InvalidPath { .. }),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn source_materialise_writes_files_modes_and_symlinks() {
        use std::os::unix::fs::PermissionsExt as _;
        let up = Upstream::new();
        let mirror = Mirror::open(&up.dir).unwrap();
        let tmp = TempDir::new().unwrap();
        let dest = tmp.path().join("a/b/work");
        let stats = mirror.materialise(&id(&up.main), &dest).unwrap();
        assert_eq!(stats.files, 4, "README, lib.rs, run.sh, link");
        assert_eq!(
            stats.bytes,
            ("hello\n".len()
                + "pub fn f() {}\n".len()
                + "#!/bin/sh\necho hi\n".len()
                + "src/lib.rs".len()) as u64
        );
        assert_eq!(
            fs::read_to_string(dest.join("README.md")).unwrap(),
            "hello\n"
        );
        let mode = |p: &str| fs::metadata(dest.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("README.md"), 0o644);
        assert_eq!(mode("src/bin/run.sh"), 0o755);
        assert_eq!(mode("src/bin"), 0o755);
        let link = dest.join("link");
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("src/lib.rs"));
        assert!(!dest.join(".git").exists());

        // A non-empty destination is refused.
        let err = mirror.materialise(&id(&up.main), &dest).unwrap_err();
        assert!(
            matches!(err, SourceError::DestinationNotEmpty { .. }),
            "{err:?}"
        );
        // An existing empty directory is fine.
        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        mirror.materialise(&id(&up.main_first), &empty).unwrap();
        assert_eq!(fs::read_dir(&empty).unwrap().count(), 1);
    }

    #[test]
    fn source_materialise_skips_submodules() {
        let up = Upstream::new();
        // A tree with a gitlink next to a file.
        let blob = git(&up.dir, &["rev-parse", "HEAD:README.md"]);
        let listing = format!(
            "100644 blob {blob}\tREADME.md\n160000 commit {}\tsub\n",
            up.main_first
        );
        let tree = git_with_input(&up.dir, &["mktree"], Some(listing.as_bytes()));
        let commit = git(&up.dir, &["commit-tree", "-m", "with submodule", &tree]);
        let mirror = Mirror::open(&up.dir).unwrap();
        let tmp = TempDir::new().unwrap();
        let stats = mirror.materialise(&id(&commit), tmp.path()).unwrap();
        assert_eq!(stats.files, 1);
        assert!(!tmp.path().join("sub").exists());
    }

    /// Write a tree object from raw entries, bypassing git's own checks.
    fn hostile_tree(dir: &Path, entries: &[(&str, &[u8], &str)]) -> String {
        let mut bytes = Vec::new();
        for (mode, name, hex) in entries {
            bytes.extend_from_slice(mode.as_bytes());
            bytes.push(b' ');
            bytes.extend_from_slice(name);
            bytes.push(0);
            bytes.extend_from_slice(&hex::decode(hex).unwrap());
        }
        git_with_input(
            dir,
            &["hash-object", "-t", "tree", "--literally", "-w", "--stdin"],
            Some(&bytes),
        )
    }

    #[test]
    fn source_materialise_refuses_hostile_trees() {
        let up = Upstream::new();
        let blob = git_with_input(&up.dir, &["hash-object", "-w", "--stdin"], Some(b"pwned\n"));
        let mirror = Mirror::open(&up.dir).unwrap();
        let names: [&[u8]; 6] = [b"..", b".", b".git", b".GiT", b"a/b", b""];
        for name in names {
            // Put the bad entry one level down, after a harmless file, so that writing "as we
            // go" would already have created something.
            let inner = hostile_tree(&up.dir, &[("100644", name, &blob)]);
            let outer = hostile_tree(
                &up.dir,
                &[
                    ("100644", b"aaa-harmless", &blob),
                    ("40000", b"dir", &inner),
                ],
            );
            let commit = git(&up.dir, &["commit-tree", "-m", "evil", &outer]);
            let tmp = TempDir::new().unwrap();
            let dest = tmp.path().join("dest");
            let err = mirror.materialise(&id(&commit), &dest).unwrap_err();
            assert!(
                matches!(err, SourceError::UnsafePath { .. }),
                "{:?}: {err:?}",
                String::from_utf8_lossy(name)
            );
            if !name.is_empty() {
                assert!(
                    err.to_string()
                        .contains(&String::from_utf8_lossy(name).to_string()),
                    "{err}"
                );
            }
            // Nothing at all was written, inside or outside dest.
            let listing: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
            assert!(listing.is_empty(), "{listing:?}");
        }

        // A top-level ".." next to a real file, the classic escape.
        let tree = hostile_tree(&up.dir, &[("100644", b"..", &blob)]);
        let commit = git(&up.dir, &["commit-tree", "-m", "evil", &tree]);
        let tmp = TempDir::new().unwrap();
        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let err = mirror.materialise(&id(&commit), &dest).unwrap_err();
        assert!(err.to_string().contains("\"..\""), "{err}");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
        assert_eq!(fs::read_dir(&dest).unwrap().count(), 0);

        // Duplicate names (a symlink and a directory called "x") are refused too.
        let sub = hostile_tree(&up.dir, &[("100644", b"f", &blob)]);
        let link_target = git_with_input(&up.dir, &["hash-object", "-w", "--stdin"], Some(b"/etc"));
        let tree = hostile_tree(
            &up.dir,
            &[("120000", b"x", &link_target), ("40000", b"x", &sub)],
        );
        let commit = git(&up.dir, &["commit-tree", "-m", "evil", &tree]);
        let tmp = TempDir::new().unwrap();
        let err = mirror
            .materialise(&id(&commit), &tmp.path().join("d"))
            .unwrap_err();
        assert!(matches!(err, SourceError::UnsafePath { .. }), "{err:?}");
    }

    #[test]
    fn source_resolve_and_ancestry() {
        let up = Upstream::new();
        let mirror = Mirror::open(&up.dir).unwrap();
        assert_eq!(mirror.resolve("HEAD").unwrap(), id(&up.main));
        assert_eq!(mirror.resolve("HEAD~1").unwrap(), id(&up.main_first));
        assert_eq!(mirror.resolve(&up.main[..10]).unwrap(), id(&up.main));
        assert_eq!(
            mirror.resolve("refs/changes/01/1/1").unwrap(),
            id(&up.change)
        );
        let err = mirror.resolve("does-not-exist").unwrap_err();
        assert!(matches!(err, SourceError::RevNotFound { .. }), "{err:?}");

        // A side branch from the first commit: neither it nor main is the other's ancestor.
        git(&up.dir, &["checkout", "-q", "-b", "side", &up.main_first]);
        fs::write(up.dir.join("side.txt"), "side\n").unwrap();
        git(&up.dir, &["add", "."]);
        git(&up.dir, &["commit", "-q", "-m", "side"]);
        let side = id(&git(&up.dir, &["rev-parse", "HEAD"]));
        let mirror = Mirror::open(&up.dir).unwrap();
        let (first, main, change) = (id(&up.main_first), id(&up.main), id(&up.change));
        assert!(mirror.is_ancestor(&first, &main).unwrap());
        assert!(mirror.is_ancestor(&main, &change).unwrap());
        assert!(mirror.is_ancestor(&main, &main).unwrap());
        assert!(!mirror.is_ancestor(&main, &first).unwrap());
        assert!(!mirror.is_ancestor(&side, &main).unwrap());
        assert!(!mirror.is_ancestor(&main, &side).unwrap());
        assert!(mirror.is_ancestor(&first, &side).unwrap());
        // Unrelated history (an orphan commit).
        let tree = git(&up.dir, &["rev-parse", "HEAD^{tree}"]);
        let orphan = id(&git(&up.dir, &["commit-tree", "-m", "orphan", &tree]));
        assert!(!mirror.is_ancestor(&orphan, &main).unwrap());
        // Unknown ids are an error, not "no".
        let unknown = id("1234567890123456789012345678901234567890");
        assert!(mirror.is_ancestor(&unknown, &main).is_err());

        assert_eq!(mirror.ref_target("refs/heads/side").unwrap(), Some(side));
        assert_eq!(mirror.ref_target("refs/heads/nope").unwrap(), None);
        assert!(mirror.ref_target("side").is_err());
    }

    #[test]
    fn source_commit_time_and_summary() {
        let up = Upstream::new();
        let mirror = Mirror::open(&up.dir).unwrap();
        let first = id(&up.main_first);
        // 2021-02-03T04:05:06Z
        assert_eq!(mirror.commit_time(&first).unwrap(), 1_612_325_106);
        let summary = mirror.commit_summary(&first).unwrap();
        assert_eq!(summary.subject, "first commit");
        assert_eq!(summary.author, "Test Author <author@example.com>");
    }

    #[test]
    fn source_open_reports_missing_repository() {
        let tmp = TempDir::new().unwrap();
        let err = Mirror::open(tmp.path()).unwrap_err();
        assert!(matches!(err, SourceError::Open { .. }), "{err:?}");
    }
}

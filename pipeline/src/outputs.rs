//! Collecting a job's outputs, content-addressed by sha256.
//!
//! The workspace was written by untrusted code, so every look at it goes through
//! [`TreeRoot`]: a link anywhere on an output's path is refused, never followed, and a FIFO or
//! device is refused without blocking.
#![deny(clippy::disallowed_methods)]

use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

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

/// A cap on output sizes, with the setting that sets it (named in the error a job gets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeLimit {
    /// Most bytes allowed.
    pub bytes: u64,
    /// Where the limit comes from, e.g. `artifacts.max_output_size`.
    pub setting: String,
}

impl SizeLimit {
    /// A limit of `bytes` set by `setting`.
    pub fn new(bytes: u64, setting: impl Into<String>) -> Self {
        SizeLimit {
            bytes,
            setting: setting.into(),
        }
    }
}

/// Per-file output size when nothing else is configured: 1 GiB.
pub const DEFAULT_MAX_OUTPUT_SIZE: u64 = 1 << 30;
/// Total output size of one job when nothing else is configured: 4 GiB.
pub const DEFAULT_MAX_JOB_OUTPUTS_SIZE: u64 = 4 << 30;
/// Most output files of one job when nothing else is configured: as many as a pass record may
/// carry ([`crate::record::MAX_OUTPUTS`]), so CI never collects what it could not record.
pub const DEFAULT_MAX_JOB_OUTPUTS: usize = crate::record::MAX_OUTPUTS;

/// A cap on a number of files, and the setting it comes from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountLimit {
    /// The most allowed.
    pub count: usize,
    /// Where the limit comes from, e.g. `artifacts.max_job_outputs`.
    pub setting: String,
}

impl CountLimit {
    /// A limit of `count` set by `setting`.
    pub fn new(count: usize, setting: impl Into<String>) -> Self {
        CountLimit {
            count,
            setting: setting.into(),
        }
    }
}

/// Most output files of one run when nothing else is configured.
pub const DEFAULT_MAX_RUN_OUTPUTS: usize = 10_000;

/// Most entries an output pattern may look at in a workspace (a job can make hundreds of
/// thousands of files; naming a directory or `**` must not mean listing them all).
pub const MAX_WALK_ENTRIES: usize = 200_000;

/// The output files the jobs of one run have collected so far, against the run's cap. Clones
/// share the count; [`OutputLimits::for_run`] starts a new one.
#[derive(Debug, Clone)]
pub struct RunOutputCount {
    limit: CountLimit,
    used: Arc<AtomicUsize>,
}

impl PartialEq for RunOutputCount {
    fn eq(&self, other: &Self) -> bool {
        self.limit == other.limit
    }
}
impl Eq for RunOutputCount {}

impl RunOutputCount {
    /// A fresh count under `limit`.
    pub fn new(limit: CountLimit) -> Self {
        RunOutputCount {
            limit,
            used: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Takes `files` from what the run may still collect, or says why not (taking nothing).
    fn take(&self, files: usize) -> Result<(), OutputError> {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(files).filter(|n| *n <= self.limit.count)
            })
            .map(|_| ())
            .map_err(|used| OutputError::RunTooMany {
                files,
                used,
                limit: self.limit.clone(),
            })
    }
}

/// Caps on what one job may leave as outputs. Checked while collecting, before anything is
/// hashed in full or copied into a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLimits {
    /// Largest single output file.
    pub max_file: Option<SizeLimit>,
    /// Largest total of one job's outputs.
    pub max_total: Option<SizeLimit>,
    /// Most output files of one job: checked before any file is hashed or stored, since each
    /// costs a hash, a copy and an fsync however small it is.
    pub max_files: Option<CountLimit>,
    /// Most output files of all the jobs of one run together, checked the same way.
    pub max_run_files: Option<RunOutputCount>,
    /// When collecting must be done: the job's own deadline (its timeout covers its outputs).
    pub deadline: Option<Instant>,
}

impl OutputLimits {
    /// No limit at all.
    pub fn unlimited() -> Self {
        OutputLimits {
            max_file: None,
            max_total: None,
            max_files: None,
            max_run_files: None,
            deadline: None,
        }
    }

    /// The same limits with a fresh run count: one per run, shared by its jobs.
    pub fn for_run(&self) -> Self {
        OutputLimits {
            max_run_files: self
                .max_run_files
                .as_ref()
                .map(|run| RunOutputCount::new(run.limit.clone())),
            ..self.clone()
        }
    }

    /// Gives `files` back to the run's count: the attempt that took them kept nothing.
    pub fn give_back(&self, files: usize) {
        if let Some(run) = &self.max_run_files {
            let _ = run
                .used
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                    Some(used.saturating_sub(files))
                });
        }
    }

    /// An error once the deadline has passed; `done` of `total` files were handled.
    pub fn check_deadline(&self, done: usize, total: usize) -> Result<(), OutputError> {
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => {
                Err(OutputError::OutOfTime { done, total })
            }
            _ => Ok(()),
        }
    }
}

impl Default for OutputLimits {
    /// 1 GiB per file, 4 GiB and 1000 files per job.
    fn default() -> Self {
        OutputLimits {
            max_file: Some(SizeLimit::new(
                DEFAULT_MAX_OUTPUT_SIZE,
                "the default per-file output limit",
            )),
            max_total: Some(SizeLimit::new(
                DEFAULT_MAX_JOB_OUTPUTS_SIZE,
                "the default per-job output limit",
            )),
            max_files: Some(CountLimit::new(
                DEFAULT_MAX_JOB_OUTPUTS,
                "the default per-job output count",
            )),
            max_run_files: Some(RunOutputCount::new(CountLimit::new(
                DEFAULT_MAX_RUN_OUTPUTS,
                "the default per-run output count",
            ))),
            deadline: None,
        }
    }
}

/// `1 GiB`, `2.1 GiB`, `512 MiB`, `17 bytes`: for messages.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    format!(
        "{} {}",
        text.strip_suffix(".0").unwrap_or(&text),
        UNITS[unit]
    )
}

/// "2.1 GiB, over the limit of 1 GiB (setting)"; with exact byte counts when rounding would
/// make the two look equal.
fn over_limit(size: u64, limit: &SizeLimit) -> String {
    let (mut a, mut b) = (human_size(size), human_size(limit.bytes));
    if a == b && size != limit.bytes {
        a = format!("{a} ({size} bytes)");
        b = format!("{b} ({} bytes)", limit.bytes);
    }
    format!("{a}, over the limit of {b} ({})", limit.setting)
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
    /// One file is over [`OutputLimits::max_file`].
    #[error("output '{path}' is {}", over_limit(*.size, .limit))]
    TooLarge {
        /// The output.
        path: String,
        /// Its size in bytes.
        size: u64,
        /// The limit it broke.
        limit: SizeLimit,
    },
    /// The job's outputs together are over [`OutputLimits::max_total`].
    #[error(
        "the job's {files} outputs come to {}; the largest is '{largest}' ({})",
        over_limit(*.total, .limit),
        human_size(*.largest_size)
    )]
    TotalTooLarge {
        /// How many files were collected.
        files: usize,
        /// Their total size in bytes.
        total: u64,
        /// The largest of them.
        largest: String,
        /// Its size.
        largest_size: u64,
        /// The limit it broke.
        limit: SizeLimit,
    },
    /// The job left more output files than [`OutputLimits::max_files`].
    #[error(
        "the job's outputs are {files} files, over the limit of {} files ({})",
        .limit.count,
        .limit.setting
    )]
    TooMany {
        /// How many files the patterns matched.
        files: usize,
        /// The limit it broke.
        limit: CountLimit,
    },
    /// This job's outputs would take the run past [`OutputLimits::max_run_files`].
    #[error(
        "the job's {files} output files would bring the run's to {}, over the limit of {} files ({})",
        .used + .files,
        .limit.count,
        .limit.setting
    )]
    RunTooMany {
        /// This job's output files.
        files: usize,
        /// Output files the run's other jobs collected before.
        used: usize,
        /// The limit it broke.
        limit: CountLimit,
    },
    /// The job's timeout ran out while its outputs were being hashed or stored.
    #[error(
        "the job's timeout ran out while its outputs were collected ({done} of {total} files done)"
    )]
    OutOfTime {
        /// Files hashed or stored before the deadline.
        done: usize,
        /// Files to do.
        total: usize,
    },
    /// An output's name is not UTF-8: it could not be carried in the pass record or provenance
    /// (JSON), and a lossy copy would name another file.
    #[error(
        "output '{path}' has a name that is not UTF-8 (shown escaped); output names must be UTF-8, since they are recorded in the pass record and provenance"
    )]
    NotUtf8 {
        /// The path, non-UTF-8 bytes escaped as `\xNN`.
        path: String,
    },
    /// An output pattern covers more of the workspace than is ever listed.
    #[error(
        "the output patterns look at more than {max} entries of the workspace (at '{pattern}'); name narrower directories or patterns"
    )]
    WalkTooLarge {
        /// The pattern.
        pattern: String,
        /// [`MAX_WALK_ENTRIES`].
        max: usize,
    },
    /// A file grew past its limit after it was first looked at.
    #[error(
        "output '{path}' grew past the limit of {} ({}) while it was being collected",
        human_size(.limit.bytes),
        .limit.setting
    )]
    Grew {
        /// The output.
        path: String,
        /// The limit it broke.
        limit: SizeLimit,
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
    collect_limited(root, patterns, &OutputLimits::unlimited())
}

/// [`collect_in`] under `limits`: every file's size is checked from its metadata before any
/// file is hashed, and hashing reads at most one byte past the per-file limit, so an oversized
/// output costs a `stat`, not a read of the whole file.
pub fn collect_limited(
    root: &TreeRoot,
    patterns: &[String],
    limits: &OutputLimits,
) -> Result<Vec<OutputFile>, OutputError> {
    let mut found = find(root, patterns)?;
    found.sort();
    found.dedup();
    check_sizes(
        found.iter().map(|(rel, size)| (rel.as_str(), *size)),
        limits,
    )?;
    if let Some(run) = &limits.max_run_files {
        run.take(found.len())?;
    }
    let digested = (|| {
        let max = limits.max_file.as_ref();
        let mut files = Vec::with_capacity(found.len());
        for (done, (rel, _)) in found.iter().enumerate() {
            limits.check_deadline(done, found.len())?;
            files.push(digest_file(root, rel, max)?);
        }
        // Again with the sizes actually read: a file may have grown since its metadata was read.
        check_sizes(files.iter().map(|f| (f.path.as_str(), f.size)), limits)?;
        Ok(files)
    })();
    if digested.is_err() {
        // Nothing of this attempt is kept: its count goes back to the run (a retry takes it again).
        limits.give_back(found.len());
    }
    digested
}

fn check_sizes<'a>(
    files: impl Iterator<Item = (&'a str, u64)>,
    limits: &OutputLimits,
) -> Result<(), OutputError> {
    let files: Vec<(&str, u64)> = files.collect();
    if let Some(limit) = &limits.max_files
        && files.len() > limit.count
    {
        return Err(OutputError::TooMany {
            files: files.len(),
            limit: limit.clone(),
        });
    }
    let (mut count, mut total, mut largest) = (0usize, 0u64, ("", 0u64));
    for (rel, size) in files {
        if let Some(limit) = &limits.max_file
            && size > limit.bytes
        {
            return Err(OutputError::TooLarge {
                path: rel.into(),
                size,
                limit: limit.clone(),
            });
        }
        count += 1;
        total = total.saturating_add(size);
        if size > largest.1 {
            largest = (rel, size);
        }
    }
    match &limits.max_total {
        Some(limit) if total > limit.bytes => Err(OutputError::TotalTooLarge {
            files: count,
            total,
            largest: largest.0.into(),
            largest_size: largest.1,
            limit: limit.clone(),
        }),
        _ => Ok(()),
    }
}

/// Every regular file the patterns name, with its size from its metadata.
fn find(root: &TreeRoot, patterns: &[String]) -> Result<Vec<(String, u64)>, OutputError> {
    let mut found: Vec<(String, u64)> = Vec::new();
    // One budget for all the patterns together: each glob walks from the root.
    let mut budget = MAX_WALK_ENTRIES;
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
            for (rel, size) in
                walk_files(root, Path::new(""), Some(&matcher), pattern, &mut budget)?
            {
                if matcher.is_match(&rel) {
                    any = true;
                    found.push((rel, size));
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
                EntryKind::Dir => found.extend(walk_files(root, &rel, None, pattern, &mut budget)?),
                EntryKind::File => found.push((rel.display().to_string(), meta.size)),
                EntryKind::Symlink => return Err(OutputError::Symlink(pattern.into())),
                EntryKind::Other => return Err(OutputError::NotAFile(pattern.into())),
            }
        }
    }
    Ok(found)
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

/// Regular files under `sub`, as root-relative paths with their sizes. Links are refused, not
/// followed; under a glob, only a link the glob would collect is an error.
fn walk_files(
    root: &TreeRoot,
    sub: &Path,
    glob: Option<&globset::GlobMatcher>,
    pattern: &str,
    budget: &mut usize,
) -> Result<Vec<(String, u64)>, OutputError> {
    let mut out = Vec::new();
    let entries = root.walk_at_most(sub, *budget).map_err(|e| match e {
        TreeError::TooManyEntries { .. } => OutputError::WalkTooLarge {
            pattern: pattern.into(),
            max: MAX_WALK_ENTRIES,
        },
        e => OutputError::from_tree(pattern, e),
    })?;
    *budget = budget.saturating_sub(entries.len());
    for entry in entries {
        let Some(rel_text) = entry.rel.to_str().map(str::to_string) else {
            // Only an entry that would be collected (or refused) matters; under a glob the
            // lossy form decides whether it would match.
            let lossy = entry.rel.to_string_lossy();
            if glob.is_some_and(|g| !g.is_match(lossy.as_ref())) {
                continue;
            }
            if matches!(entry.meta.kind, EntryKind::Dir) {
                continue;
            }
            use std::os::unix::ffi::OsStrExt as _;
            return Err(OutputError::NotUtf8 {
                path: entry.rel.as_os_str().as_bytes().escape_ascii().to_string(),
            });
        };
        match entry.meta.kind {
            EntryKind::Symlink => {
                if glob.is_some_and(|g| !g.is_match(&rel_text)) {
                    continue;
                }
                return Err(OutputError::Symlink(rel_text));
            }
            EntryKind::File => out.push((rel_text, entry.meta.size)),
            EntryKind::Dir | EntryKind::Other => {}
        }
    }
    Ok(out)
}

/// Hashes one output, reading at most one byte more than `max` allows.
fn digest_file(
    root: &TreeRoot,
    rel: &str,
    max: Option<&SizeLimit>,
) -> Result<OutputFile, OutputError> {
    let io_err = |source| OutputError::Io {
        path: rel.into(),
        source,
    };
    let file = root
        .open_file(Path::new(rel))
        .map_err(|e| OutputError::from_tree(rel, e))?;
    let meta = file.metadata().map_err(io_err)?;
    let mut hasher = Sha256::new();
    let bound = max.map_or(u64::MAX, |m| m.bytes.saturating_add(1));
    let size = io::copy(&mut file.take(bound), &mut hasher).map_err(io_err)?;
    if let Some(limit) = max
        && size > limit.bytes
    {
        return Err(OutputError::Grew {
            path: rel.into(),
            limit: limit.clone(),
        });
    }
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
    /// never collide. Copies at most one byte more than the size collected (which the
    /// [`OutputLimits`] were checked against): a file that grew since is refused without
    /// filling the store's disk.
    #[allow(clippy::disallowed_methods)] // the store is the host's own directory
    pub fn put(&self, workspace: &TreeRoot, file: &OutputFile) -> io::Result<PathBuf> {
        let dest = self.blob_path(&file.sha256);
        if dest.exists() {
            return Ok(dest);
        }
        let dir = self.root.join("sha256");
        std::fs::create_dir_all(&dir)?;
        let src = workspace.open_file(Path::new(&file.path))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", file.sha256))
            .suffix(".tmp")
            .tempfile_in(&dir)?;
        let mut hasher = Sha256::new();
        let mut tee = TeeWriter {
            out: tmp.as_file_mut(),
            hasher: &mut hasher,
        };
        let copied = io::copy(&mut src.take(file.size.saturating_add(1)), &mut tee)?;
        if copied != file.size {
            return Err(io::Error::other(format!(
                "{} changed size while it was being stored ({} bytes collected, {} read)",
                file.path,
                file.size,
                if copied > file.size {
                    format!("more than {}", file.size)
                } else {
                    copied.to_string()
                }
            )));
        }
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

    #[test]
    fn a_file_that_grew_after_collection_is_copied_no_further_than_its_size() {
        let d = ws();
        let files = collect(d.path(), &["dist/app".into()]).expect("collect");
        assert_eq!(files[0].size, 6);
        let store_dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::new(store_dir.path());
        let root = TreeRoot::open(d.path()).expect("open");
        // The job's file grows (sparse, 256 MiB) after its size was checked.
        fs::OpenOptions::new()
            .write(true)
            .open(d.path().join("dist/app"))
            .expect("open")
            .set_len(256 << 20)
            .expect("grow");
        let err = store.put(&root, &files[0]).expect_err("refused");
        assert!(
            err.to_string().contains(
                "changed size while it was being stored (6 bytes collected, more than 6 read)"
            ),
            "{err}"
        );
        let left: Vec<_> = fs::read_dir(store_dir.path().join("sha256"))
            .expect("list")
            .collect();
        assert!(left.is_empty(), "no blob and no temporary file: {left:?}");
        // Control: the same file at its collected size is stored.
        fs::write(d.path().join("dist/app"), b"binary").expect("write");
        store.put(&root, &files[0]).expect("stored");
    }

    /// Issue 19: a non-UTF-8 output name once became a lossy copy that named no file ("No such
    /// file or directory"); it is refused by its escaped name.
    #[test]
    fn a_non_utf8_output_name_is_refused_by_its_escaped_name() {
        use std::os::unix::ffi::OsStrExt as _;
        let d = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(d.path().join("dist")).expect("mkdir");
        // Control: a UTF-8 name beyond ASCII is collected as it is.
        fs::write(d.path().join("dist/café"), b"x").expect("write");
        let root = TreeRoot::open(d.path()).expect("open");
        let files = collect_limited(&root, &["dist".into()], &OutputLimits::unlimited())
            .expect("utf-8 names");
        assert_eq!(files[0].path, "dist/café");
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9");
        fs::write(d.path().join("dist").join(name), b"y").expect("write");
        for pattern in ["dist", "dist/*", "**/caf*"] {
            let err = collect_limited(&root, &[pattern.into()], &OutputLimits::unlimited())
                .expect_err("non-UTF-8 name");
            assert_eq!(
                err.to_string(),
                "output 'dist/caf\\xe9' has a name that is not UTF-8 (shown escaped); output names must be UTF-8, since they are recorded in the pass record and provenance",
                "{pattern}"
            );
        }
        // A glob that would not collect it leaves it alone.
        let files = collect_limited(&root, &["dist/*é".into()], &OutputLimits::unlimited())
            .expect("not matched");
        assert_eq!(files.len(), 1);
    }

    /// Issue 19: naming a directory or `**` must not mean listing a workspace of any size.
    #[test]
    fn a_pattern_over_a_huge_tree_is_refused_after_a_bounded_walk() {
        let d = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(d.path().join("many/deep")).expect("mkdir");
        for i in 0..50 {
            fs::write(d.path().join(format!("many/deep/{i}")), b"x").expect("write");
        }
        let root = TreeRoot::open(d.path()).expect("open");
        // Control: within the bound the walk is whole.
        assert_eq!(
            root.walk_at_most(Path::new("many"), 51)
                .expect("walk")
                .len(),
            51
        );
        let err = root
            .walk_at_most(Path::new("many"), 50)
            .expect_err("over the bound");
        assert!(
            matches!(err, TreeError::TooManyEntries { max: 50, .. }),
            "{err}"
        );
        // Outputs use the bound and name the pattern.
        let files = collect_limited(&root, &["many/**".into()], &OutputLimits::unlimited())
            .expect("50 files");
        assert_eq!(files.len(), 50);
        let err =
            super::walk_files(&root, Path::new(""), None, "many/**", &mut 10).expect_err("bound");
        assert_eq!(
            err.to_string(),
            format!(
                "the output patterns look at more than {MAX_WALK_ENTRIES} entries of the workspace (at 'many/**'); name narrower directories or patterns"
            )
        );
        // The budget is shared: what one pattern walked, the next cannot.
        let mut budget = 60;
        super::walk_files(&root, Path::new(""), None, "many", &mut budget).expect("52 entries");
        assert_eq!(budget, 8);
        super::walk_files(&root, Path::new(""), None, "many", &mut budget).expect_err("8 left");
    }

    #[test]
    fn past_the_deadline_nothing_more_is_hashed() {
        let d = ws();
        let root = TreeRoot::open(d.path()).expect("open");
        let mut limits = OutputLimits::unlimited();
        limits.max_run_files = Some(RunOutputCount::new(CountLimit::new(10, "run")));
        let used = |limits: &OutputLimits| {
            limits
                .max_run_files
                .as_ref()
                .map(|r| r.used.load(Ordering::SeqCst))
        };
        limits.deadline = Some(Instant::now() + std::time::Duration::from_secs(3600));
        assert!(collect_limited(&root, &["dist".into()], &limits).is_ok());
        let taken = used(&limits);
        limits.deadline = Some(Instant::now());
        let err = collect_limited(&root, &["dist".into()], &limits).expect_err("late");
        assert!(
            matches!(err, OutputError::OutOfTime { done: 0, .. }),
            "{err}"
        );
        // The late attempt's files went back to the run's count.
        assert_eq!(used(&limits), taken);
    }

    #[test]
    fn limits_are_checked_from_metadata_before_anything_is_hashed() {
        let d = ws();
        let root = TreeRoot::open(d.path()).expect("open");
        let limits = |file, total| OutputLimits {
            max_file: Some(SizeLimit::new(file, "max_output_size")),
            max_total: Some(SizeLimit::new(total, "max_job_outputs_size")),
            ..OutputLimits::unlimited()
        };
        let err = collect_limited(&root, &["dist".into()], &limits(5, 100)).expect_err("over");
        assert_eq!(
            err.to_string(),
            "output 'dist/app' is 6 bytes, over the limit of 5 bytes (max_output_size)"
        );
        let err = collect_limited(&root, &["dist".into()], &limits(6, 9)).expect_err("over");
        assert_eq!(
            err.to_string(),
            "the job's 3 outputs come to 10 bytes, over the limit of 9 bytes (max_job_outputs_size); the largest is 'dist/app' (6 bytes)"
        );
        // Control: at exactly the limits everything is collected.
        let files =
            collect_limited(&root, &["dist".into()], &limits(6, 10)).expect("at the limits");
        assert_eq!(files.len(), 3);
        assert_eq!(human_size(2_202_010), "2.1 MiB");
        assert_eq!(human_size(1 << 30), "1 GiB");
        assert_eq!(human_size(1023), "1023 bytes");
    }

    /// Thousands of tiny outputs cost a hash, a copy and an fsync each: the count is capped
    /// before anything is hashed. (Before the cap, 30,000 files took 132 s to collect after a
    /// 2.9 s job.)
    #[test]
    fn more_outputs_than_the_count_limit_are_refused_before_hashing() {
        let d = tempfile::tempdir().expect("tempdir");
        fs::create_dir(d.path().join("many")).expect("mkdir");
        for i in 0..=DEFAULT_MAX_JOB_OUTPUTS {
            fs::write(d.path().join(format!("many/{i:05}")), b"x").expect("write");
        }
        let root = TreeRoot::open(d.path()).expect("open");
        let err = match collect_limited(&root, &["many".into()], &OutputLimits::default()) {
            Err(e) => e,
            Ok(files) => panic!("{} files collected past the limit", files.len()),
        };
        assert!(
            matches!(&err, OutputError::TooMany { files, limit }
                if *files == DEFAULT_MAX_JOB_OUTPUTS + 1 && limit.count == DEFAULT_MAX_JOB_OUTPUTS),
            "{err}"
        );
        assert!(
            err.to_string().contains("the default per-job output count"),
            "{err}"
        );
        // Control: one file fewer is collected whole.
        fs::remove_file(d.path().join("many/00000")).expect("rm");
        let files = collect_limited(&root, &["many".into()], &OutputLimits::default())
            .expect("exactly the limit");
        assert_eq!(files.len(), DEFAULT_MAX_JOB_OUTPUTS);
    }
}

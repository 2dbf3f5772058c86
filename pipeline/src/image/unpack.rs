//! Applying image layers onto a root filesystem on the host, safely.
//!
//! A job may name any image, so on the CI cluster a layer is as untrusted as a commit. Every
//! entry goes through [`TreeRoot`] (the same beneath-the-root module as source trees and
//! workspaces): paths are plain relative names (an absolute path or `..` refuses the image),
//! no link is followed on the way to an entry (a layer that writes "through" a link is
//! refused), files are created new, never written through an existing one. Device nodes and
//! FIFOs are skipped (a job never needs the host's devices; `/dev` is bubblewrap's), setuid,
//! setgid, sticky and group/other-write bits are dropped (the cache is shared by every job).
//! Whiteouts (`.wh.NAME`) and opaque directories (`.wh..wh..opq`) hide what lower layers put
//! there, as the OCI image specification describes. The uncompressed stream is hashed on the
//! way and must match the config's `diff_id`.
#![deny(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

use super::ImageError;
use super::fetch::{Compression, LayerBlob};
use super::space::{SpaceLedger, entry_cost};
use crate::tree::{EntryKind, TreeError, TreeRoot};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Largest body of a GNU long-name/long-link or PAX header (real ones are a few hundred bytes).
pub const MAX_EXTENSION_BYTES: u64 = 64 << 10;

/// Most bytes read after the end-of-archive blocks (writers pad to a 10 KiB record).
const MAX_TRAILING_BYTES: u64 = 1 << 20;

/// Limits on what one image may unpack to (a small gzip can inflate enormously).
#[derive(Debug, Clone)]
pub struct UnpackBudget {
    /// Bytes of entry bodies (files, and whatever other entries declare) over all layers.
    pub max_bytes: u64,
    /// Entries over all layers (whiteouts and extension headers included).
    pub max_entries: u64,
    bytes: u64,
    entries: u64,
    /// The host's disk: each entry claims its size here before it is written.
    space: Option<Arc<SpaceLedger>>,
}

impl UnpackBudget {
    /// A budget of `max_bytes` and `max_entries`.
    pub fn new(max_bytes: u64, max_entries: u64) -> Self {
        UnpackBudget {
            max_bytes,
            max_entries,
            bytes: 0,
            entries: 0,
            space: None,
        }
    }

    /// The same budget, with every entry also claiming its size on the host's disk first (so
    /// an unpack stops at the entry that would take the host below its reserve).
    pub fn with_space(mut self, space: Arc<SpaceLedger>) -> Self {
        self.space = Some(space);
        self
    }

    /// Bytes of regular files written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// What applying one layer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Entries written (files, directories, links).
    pub entries: u64,
    /// Lower-layer paths removed by whiteouts and opaque directories.
    pub hidden: u64,
    /// Device nodes and FIFOs skipped.
    pub skipped_special: u64,
}

/// Reads through, hashing what it reads.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A layer entry's path as plain components; `None` for the root itself.
fn entry_path(raw: &[u8]) -> Result<Option<PathBuf>, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    let mut out = PathBuf::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("climbs with '..'"),
            name => {
                if name.contains(&0) {
                    return Err("NUL in name");
                }
                out.push(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name));
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Applies one layer (the verified blob in `blob`) onto `root`.
///
/// The tar reader runs in raw mode: GNU long names and PAX headers are read here, each body
/// capped at [`MAX_EXTENSION_BYTES`] before it is buffered (the tar crate would otherwise read
/// a header body of any declared size into memory). Every entry counts against the budget,
/// and every body's declared size counts against its bytes, so a layer that declares
/// gigabytes of directory "contents" to be skipped is refused rather than inflated.
pub fn apply_layer(
    root: &TreeRoot,
    blob: File,
    layer: &LayerBlob,
    budget: &mut UnpackBudget,
) -> Result<LayerStats, ImageError> {
    let reader: Box<dyn Read> = match layer.compression {
        Compression::None => Box::new(BufReader::new(blob)),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(BufReader::new(blob))),
    };
    let mut archive = tar::Archive::new(HashingReader {
        inner: reader,
        hasher: Sha256::new(),
    });
    let mut applier = Applier {
        root,
        layer,
        kept: HashSet::new(),
        stats: LayerStats::default(),
    };
    let entries = archive
        .entries()
        .map_err(|e| applier.malformed(format!("not a tar: {e}")))?
        .raw(true);
    let mut pending = Extensions::default();
    for entry in entries {
        let mut entry = entry.map_err(|e| applier.malformed(format!("reading the tar: {e}")))?;
        let shown = PathBuf::from(String::from_utf8_lossy(&entry.path_bytes()).into_owned());
        budget.entries += 1;
        if budget.entries > budget.max_entries {
            return Err(ImageError::TooLarge {
                what: format!("image (entries, at {})", shown.display()),
                max: budget.max_entries,
            });
        }
        let size = entry
            .header()
            .entry_size()
            .map_err(|e| applier.malformed(format!("size of '{}': {e}", shown.display())))?;
        budget.bytes = budget.bytes.saturating_add(size);
        if budget.bytes > budget.max_bytes {
            return Err(ImageError::TooLarge {
                what: format!("image (unpacked, at {})", shown.display()),
                max: budget.max_bytes,
            });
        }
        let kind = entry.header().entry_type();
        if kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions()
        {
            if size > MAX_EXTENSION_BYTES {
                return Err(applier.refuse(
                    &shown,
                    format!("an extension header of {size} bytes (at most {MAX_EXTENSION_BYTES})"),
                ));
            }
            let mut body = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut body)
                .map_err(|e| applier.malformed(format!("reading the tar: {e}")))?;
            pending
                .absorb(kind, body)
                .map_err(|why| applier.refuse(&shown, why))?;
            continue;
        }
        // Claimed before a byte is written, released once written (the filesystem then
        // counts it): a bomb stops at the entry that would cross the host's reserve.
        let _claim = match &budget.space {
            Some(space) => Some(
                space
                    .claim(entry_cost(size), &format!("entry '{}'", shown.display()))
                    .map_err(|e| ImageError::io(format!("layer {}", layer.digest), e))?,
            ),
            None => None,
        };
        let path = pending
            .path
            .take()
            .unwrap_or_else(|| entry.path_bytes().into_owned());
        let link = pending
            .link
            .take()
            .or_else(|| entry.link_name_bytes().map(|l| l.into_owned()))
            .unwrap_or_default();
        applier.apply(&mut entry, &path, &link)?;
    }
    if pending.path.is_some() || pending.link.is_some() {
        return Err(applier.malformed("a long-name or PAX header describes no entry".into()));
    }
    // The tar reader stops at the end-of-archive blocks; the diff_id covers the whole stream.
    // Writers pad to a record (10 KiB); megabytes after the end are an inflation attempt.
    let mut rest = archive.into_inner();
    let trailing = io::copy(
        &mut (&mut rest).take(MAX_TRAILING_BYTES + 1),
        &mut io::sink(),
    )
    .map_err(|e| applier.malformed(format!("reading the tar: {e}")))?;
    if trailing > MAX_TRAILING_BYTES {
        return Err(applier.malformed(format!(
            "more than {MAX_TRAILING_BYTES} bytes after the end of the archive"
        )));
    }
    let actual = format!("sha256:{}", hex::encode(rest.hasher.finalize()));
    if actual != layer.diff_id {
        return Err(ImageError::DigestMismatch {
            what: format!("uncompressed layer {}", layer.digest),
            expected: layer.diff_id.clone(),
            actual,
        });
    }
    Ok(applier.stats)
}

/// GNU long-name/long-link and PAX `path`/`linkpath` values waiting for the entry they name.
#[derive(Default)]
struct Extensions {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
}

impl Extensions {
    fn absorb(&mut self, kind: tar::EntryType, body: Vec<u8>) -> Result<(), String> {
        let trimmed = |mut b: Vec<u8>| {
            while b.last() == Some(&0) {
                b.pop();
            }
            b
        };
        if kind.is_gnu_longname() {
            return set_once(
                &mut self.path,
                trimmed(body),
                "two long names for one entry",
            );
        }
        if kind.is_gnu_longlink() {
            return set_once(
                &mut self.link,
                trimmed(body),
                "two long link names for one entry",
            );
        }
        let global = kind.is_pax_global_extensions();
        for record in tar::PaxExtensions::new(&body) {
            let record = record.map_err(|e| format!("malformed PAX header: {e}"))?;
            let key = record.key_bytes();
            // A PAX size would change where the next entry's body ends; sparse files would
            // need a map this unpacker does not apply. Neither appears in real image layers.
            if key == b"size" || key.starts_with(b"GNU.sparse.") {
                return Err(format!(
                    "PAX record '{}' is not supported",
                    String::from_utf8_lossy(key)
                ));
            }
            if global {
                continue; // defaults for later entries (times, owners): nothing this unpacker uses
            }
            match key {
                b"path" => set_once(&mut self.path, record.value_bytes().to_vec(), "two paths")?,
                b"linkpath" => set_once(
                    &mut self.link,
                    record.value_bytes().to_vec(),
                    "two link paths",
                )?,
                _ => {}
            }
        }
        Ok(())
    }
}

fn set_once(slot: &mut Option<Vec<u8>>, value: Vec<u8>, twice: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(twice.to_string());
    }
    *slot = Some(value);
    Ok(())
}

struct Applier<'a> {
    root: &'a TreeRoot,
    layer: &'a LayerBlob,
    /// Paths this layer wrote and their ancestors: whiteouts and opaque directories only hide
    /// what lower layers put there, never this layer's own entries.
    kept: HashSet<PathBuf>,
    stats: LayerStats,
}

impl Applier<'_> {
    fn malformed(&self, reason: String) -> ImageError {
        ImageError::Malformed {
            what: format!("layer {}", self.layer.digest),
            reason,
        }
    }

    fn refuse(&self, entry: &Path, reason: impl std::fmt::Display) -> ImageError {
        ImageError::UnsafeEntry {
            layer: self.layer.digest.clone(),
            entry: entry.display().to_string(),
            reason: reason.to_string(),
        }
    }

    fn tree(&self, rel: &Path, err: TreeError) -> ImageError {
        match err {
            TreeError::Io { source, .. } => ImageError::io(self.root.path().join(rel), source),
            other => self.refuse(rel, other),
        }
    }

    /// Records that this layer wrote `rel`.
    fn keep(&mut self, rel: PathBuf) {
        let mut next = Some(rel.as_path());
        while let Some(path) = next {
            if path.as_os_str().is_empty() || !self.kept.insert(path.to_path_buf()) {
                break;
            }
            next = path.parent();
        }
    }

    /// Applies one entry (its body size already counted) at `raw` (linking to `link`).
    fn apply<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        link: &[u8],
    ) -> Result<(), ImageError> {
        let shown = PathBuf::from(String::from_utf8_lossy(raw).into_owned());
        let rel = match entry_path(raw) {
            Ok(Some(rel)) => rel,
            Ok(None) => return Ok(()), // the root directory itself
            Err(why) => return Err(self.refuse(&shown, why)),
        };
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if name == OPAQUE_MARKER {
            return self.clear_lower(&parent);
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(&shown, &parent, hidden);
        }
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644);
        let kind = header.entry_type();
        let mtime = header.mtime().ok();
        if !parent.as_os_str().is_empty() {
            self.root
                .create_dir_all(&parent, 0o755)
                .map_err(|e| self.tree(&parent, e))?;
        }
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                // Owner rwx: the unpacking user must be able to fill it; jobs are "other".
                // Never group/other-writable or sticky: the cache is shared by every job.
                let mode = (mode & 0o755) | 0o700;
                match self.root.metadata(&rel) {
                    Ok(meta) if meta.kind == EntryKind::Dir => self.root.set_dir_mode(&rel, mode),
                    _ => {
                        self.replace(&rel)?;
                        self.root.create_dir(&rel, mode)
                    }
                }
                .map_err(|e| self.tree(&rel, e))?;
            }
            T::Regular | T::Continuous => {
                self.replace(&rel)?;
                // setuid/setgid never survive: nothing in a job may gain privileges; nor
                // group/other write: no local user may change a cached image.
                let mut file = self
                    .root
                    .create_file(&rel, mode & 0o755)
                    .map_err(|e| self.tree(&rel, e))?;
                io::copy(entry, &mut file)
                    .map_err(|e| ImageError::io(self.root.path().join(&rel), e))?;
                if let Some(secs) = mtime {
                    let _ = file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
                }
            }
            T::Symlink => {
                self.replace(&rel)?;
                // Stored verbatim: it resolves inside the job's root, never on the host (the host
                // never follows a link in this tree).
                let target = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(link);
                self.root
                    .symlink(target, &rel)
                    .map_err(|e| self.tree(&rel, e))?;
            }
            T::Link => {
                let target = match entry_path(link) {
                    Ok(Some(target)) => target,
                    Ok(None) => return Err(self.refuse(&shown, "hard link to the root")),
                    Err(why) => return Err(self.refuse(&shown, format!("hard link target: {why}"))),
                };
                if target != rel {
                    self.replace(&rel)?;
                    self.root
                        .hard_link(&target, &rel)
                        .map_err(|e| self.tree(&rel, e))?;
                }
            }
            T::Char | T::Block | T::Fifo => {
                self.stats.skipped_special += 1;
                return Ok(());
            }
            T::GNUSparse => return Err(self.refuse(&shown, "sparse files are not supported")),
            // Anything else carries no file (its body, if any, was counted and is skipped).
            _ => return Ok(()),
        }
        self.stats.entries += 1;
        self.keep(rel);
        Ok(())
    }

    /// `.wh.NAME` in `parent`: hides what lower layers put at `parent/NAME`.
    fn whiteout(&mut self, shown: &Path, parent: &Path, hidden: &str) -> Result<(), ImageError> {
        if hidden.starts_with(WHITEOUT_PREFIX) {
            // Other `.wh..wh.` names are aufs bookkeeping (hard-link directories): no file.
            return Ok(());
        }
        if matches!(hidden, "" | "." | "..") {
            return Err(self.refuse(shown, "a whiteout that names no entry"));
        }
        let target = parent.join(hidden);
        if self.kept.contains(&target) {
            // This layer wrote beneath it: hide only the lower layers' part.
            return self.clear_lower(&target);
        }
        self.root
            .remove_all(&target)
            .map_err(|e| self.tree(&target, e))?;
        self.stats.hidden += 1;
        Ok(())
    }

    /// Removes what a lower layer left at `rel` (a directory with its contents).
    fn replace(&self, rel: &Path) -> Result<(), ImageError> {
        self.root.remove_all(rel).map_err(|e| self.tree(rel, e))
    }

    /// An opaque directory: everything lower layers put beneath `dir` goes; what this layer
    /// wrote there stays.
    fn clear_lower(&mut self, dir: &Path) -> Result<(), ImageError> {
        match self.root.metadata(dir) {
            Ok(meta) if meta.kind == EntryKind::Dir => {}
            Ok(_) => return Ok(()),
            Err(e) if e.io_kind() == Some(io::ErrorKind::NotFound) => return Ok(()),
            Err(e) => return Err(self.tree(dir, e)),
        }
        let entries = self.root.walk(dir).map_err(|e| self.tree(dir, e))?;
        for entry in entries.iter().rev() {
            if self.kept.contains(&entry.rel) {
                continue;
            }
            let removed = if entry.meta.kind == EntryKind::Dir {
                self.root.remove_dir(&entry.rel)
            } else {
                self.root.remove_file(&entry.rel)
            };
            removed.map_err(|e| self.tree(&entry.rel, e))?;
            self.stats.hidden += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;

//! Applying image layers onto a root filesystem on the host, safely.
//!
//! A job may name any image, so on the CI cluster a layer is as untrusted as a commit. Every
//! entry goes through [`TreeRoot`] (the same beneath-the-root module as source trees and
//! workspaces): paths are plain relative names (an absolute path or `..` refuses the image),
//! no link is followed on the way to an entry (a layer that writes "through" a link is
//! refused), files are created new, never written through an existing one. Device nodes and
//! FIFOs are skipped (a job never needs the host's devices; `/dev` is bubblewrap's), setuid and
//! setgid bits are dropped. Whiteouts (`.wh.NAME`) and opaque directories (`.wh..wh..opq`)
//! hide what lower layers put there, as the OCI image specification describes. The
//! uncompressed stream is hashed on the way and must match the config's `diff_id`.
#![deny(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

use super::ImageError;
use super::fetch::{Compression, LayerBlob};
use crate::tree::{EntryKind, TreeError, TreeRoot};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Limits on what one image may unpack to (a small gzip can inflate enormously).
#[derive(Debug, Clone, Copy)]
pub struct UnpackBudget {
    /// Bytes of regular files over all layers.
    pub max_bytes: u64,
    /// Entries over all layers.
    pub max_entries: u64,
    bytes: u64,
    entries: u64,
}

impl UnpackBudget {
    /// A budget of `max_bytes` and `max_entries`.
    pub fn new(max_bytes: u64, max_entries: u64) -> Self {
        UnpackBudget {
            max_bytes,
            max_entries,
            bytes: 0,
            entries: 0,
        }
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
        written: HashSet::new(),
        stats: LayerStats::default(),
    };
    let entries = archive
        .entries()
        .map_err(|e| applier.malformed(format!("not a tar: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| applier.malformed(format!("reading the tar: {e}")))?;
        applier.apply(entry, budget)?;
    }
    // The tar reader stops at the end-of-archive blocks; the diff_id covers the whole stream.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink())
        .map_err(|e| applier.malformed(format!("reading the tar: {e}")))?;
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

struct Applier<'a> {
    root: &'a TreeRoot,
    layer: &'a LayerBlob,
    /// Paths this layer wrote: whiteouts only hide what lower layers put there.
    written: HashSet<PathBuf>,
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

    fn apply<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        budget: &mut UnpackBudget,
    ) -> Result<(), ImageError> {
        let raw = entry.path_bytes().into_owned();
        let shown = PathBuf::from(String::from_utf8_lossy(&raw).into_owned());
        let rel = match entry_path(&raw) {
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
            let target = parent.join(hidden);
            if !self.written.contains(&target) {
                self.root
                    .remove_all(&target)
                    .map_err(|e| self.tree(&target, e))?;
                self.stats.hidden += 1;
            }
            return Ok(());
        }
        budget.entries += 1;
        if budget.entries > budget.max_entries {
            return Err(ImageError::TooLarge {
                what: format!("image (entries, at {})", shown.display()),
                max: budget.max_entries,
            });
        }
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644);
        let kind = header.entry_type();
        let mtime = header.mtime().ok();
        let link = entry
            .link_name_bytes()
            .map(|l| l.into_owned())
            .unwrap_or_default();
        if !parent.as_os_str().is_empty() {
            self.root
                .create_dir_all(&parent, 0o755)
                .map_err(|e| self.tree(&parent, e))?;
        }
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                // Owner rwx: the unpacking user must be able to fill it; jobs are "other".
                let mode = (mode & 0o1777) | 0o700;
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
                // setuid/setgid (and sticky) never survive: nothing in a job may gain privileges.
                let mut file = self
                    .root
                    .create_file(&rel, mode & 0o777)
                    .map_err(|e| self.tree(&rel, e))?;
                let left = budget.max_bytes.saturating_sub(budget.bytes);
                let copied = io::copy(&mut (&mut entry).take(left.saturating_add(1)), &mut file)
                    .map_err(|e| ImageError::io(self.root.path().join(&rel), e))?;
                budget.bytes += copied;
                if budget.bytes > budget.max_bytes {
                    return Err(ImageError::TooLarge {
                        what: format!("image (unpacked, at {})", shown.display()),
                        max: budget.max_bytes,
                    });
                }
                if let Some(secs) = mtime {
                    let _ = file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
                }
            }
            T::Symlink => {
                self.replace(&rel)?;
                // Stored verbatim: it resolves inside the job's root, never on the host (the host
                // never follows a link in this tree).
                let target = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&link);
                self.root
                    .symlink(target, &rel)
                    .map_err(|e| self.tree(&rel, e))?;
            }
            T::Link => {
                let target = match entry_path(&link) {
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
            // Extension headers are consumed by the tar reader; anything else carries no file.
            _ => return Ok(()),
        }
        self.stats.entries += 1;
        self.written.insert(rel);
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
        let keep: HashSet<&Path> = self.written.iter().flat_map(|p| p.ancestors()).collect();
        let entries = self.root.walk(dir).map_err(|e| self.tree(dir, e))?;
        for entry in entries.iter().rev() {
            if keep.contains(entry.rel.as_path()) {
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

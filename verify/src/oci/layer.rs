//! One reproducible layer: tar of the declared files, then deterministic gzip.
//!
//! Everything that usually leaks the build host into a tarball is fixed:
//! entry order (sorted by path), owner (0/0, no names), modes (0755/0644),
//! mtimes (SOURCE_DATE_EPOCH), and the gzip header (no name, mtime 0, fixed
//! OS byte and level).

use super::OciError;
use flate2::{Compression, GzBuilder};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// gzip level: fixed so the compressed bytes (and digest) never depend on a default.
const GZIP_LEVEL: u32 = 6;
/// gzip header OS byte 255 ("unknown"): the host OS must not change the digest.
const GZIP_OS_UNKNOWN: u8 = 255;

/// A declared output as found on the builder's disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedFile {
    /// Local file holding the output's bytes.
    pub path: PathBuf,
    /// Whether it goes into the image with mode 0755 (else 0644).
    pub executable: bool,
}

/// What goes into the layer at one image path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerEntry {
    /// A directory (mode 0755).
    Dir,
    /// A regular file.
    File(ResolvedFile),
}

/// A built layer.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The gzip-compressed tar (the blob pushed).
    pub compressed: Vec<u8>,
    /// `sha256:` of the uncompressed tar (the config's diff_id).
    pub diff_id: String,
    /// `sha256:` of [`Self::compressed`] (the layer's descriptor digest).
    pub digest: String,
}

/// A writer that hashes everything passing through it on the way to `inner`,
/// so the tar and the gzip are each hashed while they are produced instead of
/// being buffered and read again.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The inner writer and `sha256:<hex>` of everything written.
    fn finish(self) -> (W, String) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Turns an absolute image path into the tar-relative form, refusing
/// anything that could escape or alias another path (`..`, `.`, `//`).
pub fn clean_image_path(path: &str) -> Result<String, OciError> {
    let bad = |reason| OciError::InvalidImagePath {
        path: path.to_owned(),
        reason,
    };
    let rel = path
        .strip_prefix('/')
        .ok_or_else(|| bad("must be absolute"))?;
    if rel.is_empty() {
        return Err(bad("must name a file, not /"));
    }
    if rel.contains('\0') {
        return Err(bad("contains NUL"));
    }
    for part in rel.split('/') {
        match part {
            "" => return Err(bad("empty component or trailing slash")),
            "." | ".." => return Err(bad("contains . or .. component")),
            _ => {}
        }
    }
    Ok(rel.to_owned())
}

/// Plans the layer: every file at its image path plus every parent
/// directory, keyed by relative path so iteration is sorted.
pub fn plan_entries<'a>(
    files: impl IntoIterator<Item = (&'a str, ResolvedFile)>,
) -> Result<BTreeMap<String, LayerEntry>, OciError> {
    let mut entries = BTreeMap::new();
    for (image_path, file) in files {
        let rel = clean_image_path(image_path)?;
        let mut parent = String::new();
        let parts: Vec<&str> = rel.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            if let Some(LayerEntry::File(_)) = entries.get(&parent) {
                return Err(OciError::InvalidImagePath {
                    path: image_path.to_owned(),
                    reason: "a parent is also a file",
                });
            }
            entries.insert(parent.clone(), LayerEntry::Dir);
        }
        if entries.insert(rel, LayerEntry::File(file)).is_some() {
            return Err(OciError::InvalidImagePath {
                path: image_path.to_owned(),
                reason: "declared twice or also a directory",
            });
        }
    }
    Ok(entries)
}

/// Builds the tar (sorted, normalized) and its deterministic gzip.
pub fn build_layer(entries: &BTreeMap<String, LayerEntry>, epoch: i64) -> Result<Layer, OciError> {
    let mtime = u64::try_from(epoch).map_err(|_| OciError::InvalidEpoch(epoch))?;
    let io_err = |path: &str| {
        let path = path.to_owned();
        move |source| OciError::Io { path, source }
    };
    // One pass: tar -> sha256 (diff_id) -> gzip -> sha256 (digest) -> bytes.
    let gz = GzBuilder::new()
        .mtime(0)
        .operating_system(GZIP_OS_UNKNOWN)
        .write(HashingWriter::new(Vec::new()), Compression::new(GZIP_LEVEL));
    let mut tar = tar::Builder::new(HashingWriter::new(gz));
    for (path, entry) in entries {
        // Every header field is set here rather than copied from the host file's
        // metadata; a fresh GNU header leaves uname/gname (and atime/ctime) zeroed.
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        match entry {
            LayerEntry::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, format!("{path}/"), std::io::empty())
                    .map_err(io_err(path))?;
            }
            LayerEntry::File(file) => {
                let shown = file.path.display().to_string();
                let data = std::fs::read(&file.path).map_err(io_err(&shown))?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if file.executable { 0o755 } else { 0o644 });
                header.set_size(data.len() as u64);
                tar.append_data(&mut header, path, data.as_slice())
                    .map_err(io_err(path))?;
            }
        }
    }
    // into_inner writes the tar's end-of-archive blocks (through the hasher).
    let (gz, diff_id) = tar.into_inner().map_err(io_err("layer tar"))?.finish();
    let (compressed, digest) = gz.finish().map_err(io_err("layer gzip"))?.finish();
    Ok(Layer {
        compressed,
        diff_id,
        digest,
    })
}

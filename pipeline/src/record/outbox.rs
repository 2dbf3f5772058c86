//! The one-way transport of signed pass records from the CI cluster to the trusted builder.
//!
//! The CI only ever adds files; the trusted side only ever reads them. Nothing in a record is
//! trusted because of where it was found: [`super::open`] checks every file read from here.

use std::fs::{self, OpenOptions};
use std::io::{self, Read as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand_core::{OsRng, RngCore as _};
use sha2::{Digest as _, Sha256};

use super::sign::sync_dir;
use super::{MAX_RECORD_BYTES, RecordError, SignedPassRecord, quote};

/// A one-way transport: the CI writes, the trusted side reads. A directory by default
/// ([`DirOutbox`]).
pub trait Outbox: Send + Sync {
    /// Stores a signed record and returns the name it is stored under. Storing the same record
    /// again returns the same name and stores nothing new.
    fn put(&self, record: &SignedPassRecord, name_hint: &str) -> Result<String, RecordError>;
}

/// An outbox in a local (or mounted) directory: one `<hint>-<digest>.json` file per record.
#[derive(Debug, Clone)]
pub struct DirOutbox {
    dir: PathBuf,
}

/// Longest name hint kept; the digest makes names unique, the hint only makes them readable.
const MAX_HINT_CHARS: usize = 64;

/// Temporary files start with this; they are never listed or read.
const TMP_PREFIX: &str = ".tmp-";

impl DirOutbox {
    /// An outbox in `dir`. Nothing is touched until the first call; [`Outbox::put`] creates the
    /// directory when it is missing.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirOutbox { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Names of the complete records in the outbox, sorted: regular `.json` files with an
    /// acceptable name, never temporary files, symbolic links or directories.
    pub fn list(&self) -> Result<Vec<String>, RecordError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| RecordError::io(&self.dir, e))? {
            let entry = entry.map_err(|e| RecordError::io(&self.dir, e))?;
            // DirEntry::file_type does not follow links, so a link is never taken for a file.
            let file_type = entry
                .file_type()
                .map_err(|e| RecordError::io(entry.path(), e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if file_type.is_file() && name.ends_with(".json") && check_name(&name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// The bytes of the record stored under `name`, to be given to [`super::open`].
    ///
    /// Refuses names with `/`, `..` or a leading `.`, symbolic links and anything that is not a
    /// regular file (a FIFO would otherwise block the reader forever), and reads at most
    /// [`MAX_RECORD_BYTES`], since the writer is not trusted.
    pub fn read(&self, name: &str) -> Result<Vec<u8>, RecordError> {
        check_name(name)?;
        let path = self.dir.join(name);
        let file = OpenOptions::new()
            .read(true)
            .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
            .open(&path)
            .map_err(|e| {
                if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) {
                    RecordError::Invalid(format!(
                        "outbox entry {} is a symbolic link; refused",
                        quote(name)
                    ))
                } else {
                    RecordError::io(&path, e)
                }
            })?;
        let meta = file.metadata().map_err(|e| RecordError::io(&path, e))?;
        if !meta.is_file() {
            return Err(RecordError::Invalid(format!(
                "outbox entry {} is not a regular file",
                quote(name)
            )));
        }
        if meta.len() > MAX_RECORD_BYTES as u64 {
            return Err(RecordError::TooLarge {
                size: meta.len(),
                max: MAX_RECORD_BYTES,
            });
        }
        // The file can still grow after the check: read one byte past the limit to notice.
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_RECORD_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| RecordError::io(&path, e))?;
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge {
                size: bytes.len() as u64,
                max: MAX_RECORD_BYTES,
            });
        }
        Ok(bytes)
    }

    fn write_tmp(&self, bytes: &[u8]) -> Result<PathBuf, RecordError> {
        use std::io::Write as _;
        let tmp = self.dir.join(format!(
            "{TMP_PREFIX}{}-{:016x}",
            std::process::id(),
            OsRng.next_u64()
        ));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&tmp)?;
            // Records are not secret, and the trusted side may read them as another user.
            file.set_permissions(fs::Permissions::from_mode(0o644))?;
            file.write_all(bytes)?;
            file.sync_all()
        })();
        match result {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(RecordError::io(&tmp, e))
            }
        }
    }

    /// Ok when `name` already holds exactly `bytes`; an error when it holds something else.
    fn same_as_existing(&self, name: &str, bytes: &[u8]) -> Result<bool, RecordError> {
        match self.read(name) {
            Ok(existing) if existing == bytes => Ok(true),
            Ok(_) => Err(RecordError::io(
                self.dir.join(name),
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a different envelope for the same record is already in the outbox; it is left as it is",
                ),
            )),
            Err(RecordError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

impl Outbox for DirOutbox {
    /// Writes the envelope to a temporary file in the outbox, syncs it, links it into place as
    /// `<hint>-<first 12 hex of sha256(record bytes)>.json` and syncs the directory, so a reader
    /// sees either no file or the whole file, also after a crash.
    ///
    /// The final step is a hard link rather than a rename because a link never replaces an
    /// existing file: a file already under that name with the same bytes makes this a no-op,
    /// one with other bytes (the same record signed by another key, or a digest-prefix
    /// collision) is an error, never overwritten.
    fn put(&self, record: &SignedPassRecord, name_hint: &str) -> Result<String, RecordError> {
        let bytes = record.to_json()?;
        let body = BASE64
            .decode(&record.payload)
            .map_err(|e| RecordError::Malformed(format!("payload is not base64: {e}")))?;
        let digest = hex::encode(Sha256::digest(&body));
        // A sha256 in hex is always 64 characters, so the slice cannot fail.
        let name = format!("{}-{}.json", sanitise_hint(name_hint), &digest[..12]);
        fs::create_dir_all(&self.dir).map_err(|e| RecordError::io(&self.dir, e))?;
        if self.same_as_existing(&name, &bytes)? {
            return Ok(name);
        }
        let tmp = self.write_tmp(&bytes)?;
        let final_path = self.dir.join(&name);
        let linked = fs::hard_link(&tmp, &final_path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            // Another writer stored it between the check and the link.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.same_as_existing(&name, &bytes)?;
            }
            Err(e) => return Err(RecordError::io(&final_path, e)),
        }
        sync_dir(&self.dir).map_err(|e| RecordError::io(&self.dir, e))?;
        Ok(name)
    }
}

/// Keeps letters, digits, `-` and `_`, so a hint can never add a path separator, a `..`, a
/// leading dot or a second extension; the rest becomes `_`.
fn sanitise_hint(hint: &str) -> String {
    let clean: String = hint
        .chars()
        .take(MAX_HINT_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "record".into()
    } else {
        clean
    }
}

fn check_name(name: &str) -> Result<(), RecordError> {
    if name.is_empty()
        || name.len() > 255
        || name.contains(['/', '\0'])
        || name.contains("..")
        || name.starts_with('.')
    {
        return Err(RecordError::Invalid(format!(
            "outbox entry name {} refused",
            quote(name)
        )));
    }
    Ok(())
}

/// The reading end of a one-way transport: the trusted side pulls records
/// from it; nothing is ever pushed at the trusted side. A directory today;
/// other one-way transports (a data diode, object storage) implement this.
pub trait RecordSource: Send + Sync {
    /// Where the records come from, for messages.
    fn describe(&self) -> String;
    /// Names of complete records, in order; empty while the source does not exist yet.
    fn list(&self) -> Result<Vec<String>, RecordError>;
    /// One record's bytes, size-limited before anything parses them.
    fn read(&self, name: &str) -> Result<Vec<u8>, RecordError>;
}

impl RecordSource for DirOutbox {
    fn describe(&self) -> String {
        self.dir().display().to_string()
    }
    fn list(&self) -> Result<Vec<String>, RecordError> {
        // The CI creates the directory with its first record; until then there is nothing to read.
        if !self.dir().exists() {
            return Ok(Vec::new());
        }
        DirOutbox::list(self)
    }
    fn read(&self, name: &str) -> Result<Vec<u8>, RecordError> {
        DirOutbox::read(self, name)
    }
}

//! The CI's origin key: loading, creating, signing; and DSSE's pre-authentication encoding.
//!
//! The key proves only which CI wrote a record. It lives on the untrusted plane, so losing it
//! lets someone forge where a record came from, not what the trusted builder will sign: that
//! side rebuilds everything itself.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand_core::{OsRng, RngCore as _};
use sha2::{Digest as _, Sha256};

use super::{
    PASS_RECORD_PAYLOAD_TYPE, PASS_RECORD_VERSION, PassRecord, RecordError, SignedPassRecord,
    encode_record,
};

/// A key file is a hex seed and a newline; anything much larger is not a key file, and is not
/// read into memory.
const MAX_KEY_FILE_BYTES: u64 = 1024;

/// DSSE's pre-authentication encoding: `"DSSEv1" SP len(type) SP type SP len(body) SP body`, with
/// lengths as decimal byte counts. This, not the JSON envelope, is what gets signed, so the
/// payload type is covered by the signature and the encoding is unambiguous.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let header = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    );
    let mut out = Vec::with_capacity(header.len() + body.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

/// The key id of a public key: lowercase hex sha256 of its 32 bytes.
pub fn key_id_of(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Parses a public key written as 64 hex digits (the `.pub` file [`OriginKey::load_or_create`]
/// writes); surrounding whitespace is ignored. Weak (small-order) keys are refused, since any
/// signature could verify under them.
pub fn parse_public_key_hex(text: &str) -> Result<VerifyingKey, RecordError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .map_err(|_| RecordError::Key("a public key must be 64 hex digits".into()))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| RecordError::Key("not a valid ed25519 public key".into()))?;
    if key.is_weak() {
        return Err(RecordError::Key("weak ed25519 public key refused".into()));
    }
    Ok(key)
}

/// The CI cluster's ed25519 signing key. Its `Debug` shows only the key id.
pub struct OriginKey {
    key: SigningKey,
}

impl fmt::Debug for OriginKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

/// Overwrites a buffer that held secret material. Best effort: without a zeroize crate the
/// compiler is free to drop the writes, `black_box` only makes that unlikely.
fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    std::hint::black_box(&buf);
}

impl OriginKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        OriginKey {
            key: SigningKey::generate(&mut OsRng),
        }
    }

    /// Loads the key from `path` (a file holding the 32-byte seed as 64 hex digits), or, when
    /// there is no file, creates one: parent directories (mode 0700), the key file (mode 0600),
    /// and `path.pub` beside it with the public key in hex, for the trusted side's operators.
    ///
    /// Refuses a key file that is a symbolic link or has any group or other permission bits
    /// (like ssh, since a key others could read proves nothing about origin). Writes `path.pub`
    /// when it is missing, and refuses to start when it names a different key, since operators
    /// would then trust the wrong key.
    pub fn load_or_create(path: &Path) -> Result<OriginKey, RecordError> {
        let key = match read_key_file(path)? {
            Some(key) => key,
            None => create_key_file(path)?,
        };
        let pub_path = pub_path(path);
        let public = key.public_key_hex();
        match fs::read_to_string(&pub_path) {
            Ok(existing) => {
                // Compared as keys, not text, so that case or a missing newline do not matter.
                if parse_public_key_hex(&existing).ok() != Some(key.verifying_key()) {
                    return Err(RecordError::Key(format!(
                        "{} does not hold the public key of {}; remove it to have it written again",
                        pub_path.display(),
                        path.display()
                    )));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_new_file(&pub_path, format!("{public}\n").as_bytes(), 0o644)
                    .or_else(|e| {
                        if e.kind() == io::ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| RecordError::io(&pub_path, e))?;
            }
            Err(e) => return Err(RecordError::io(&pub_path, e)),
        }
        Ok(key)
    }

    /// The public key as 64 lowercase hex digits.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// The public key, for a verifier.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Lowercase hex sha256 of the public key (see [`key_id_of`]).
    pub fn key_id(&self) -> String {
        key_id_of(&self.key.verifying_key())
    }

    /// Validates the record, serialises it and signs it. Refuses a record that
    /// [`PassRecord::validate`] refuses or whose envelope would exceed [`MAX_RECORD_BYTES`](super::MAX_RECORD_BYTES):
    /// the reader would refuse both, so the CI learns now rather than the trusted side later.
    /// Only [`PASS_RECORD_VERSION`] is written: an older version is read, never produced (its
    /// shape has no `event` or `images`).
    pub fn sign(&self, record: &PassRecord) -> Result<SignedPassRecord, RecordError> {
        if record.version != PASS_RECORD_VERSION {
            return Err(RecordError::UnsupportedVersion(record.version));
        }
        record.validate()?;
        let body = encode_record(record)?;
        let signature = self.key.sign(&pae(PASS_RECORD_PAYLOAD_TYPE, &body));
        let envelope = SignedPassRecord {
            payload_type: PASS_RECORD_PAYLOAD_TYPE.into(),
            payload: BASE64.encode(&body),
            key_id: self.key_id(),
            signature: BASE64.encode(signature.to_bytes()),
        };
        // Encoding once more is cheap next to signing, and the only way to learn the envelope's
        // real size: to_json refuses one over MAX_RECORD_BYTES.
        envelope.to_json()?;
        Ok(envelope)
    }
}

#[cfg(test)]
impl OriginKey {
    /// A key from a fixed seed, so that tests produce the same bytes on every run.
    pub(super) fn from_seed(seed: [u8; 32]) -> Self {
        OriginKey {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// Signs any bytes under any payload type, skipping validation: how tests make envelopes
    /// that only the reader's later checks can refuse.
    pub(super) fn sign_raw(&self, payload_type: &str, body: &[u8]) -> SignedPassRecord {
        SignedPassRecord {
            payload_type: payload_type.into(),
            payload: BASE64.encode(body),
            key_id: self.key_id(),
            signature: BASE64.encode(self.key.sign(&pae(payload_type, body)).to_bytes()),
        }
    }
}

fn pub_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Reads an existing key file; `None` when there is none.
fn read_key_file(path: &Path) -> Result<Option<OriginKey>, RecordError> {
    // O_NOFOLLOW: a link could point the CI at a key file someone else controls.
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => {
            return Err(RecordError::Key(format!(
                "{} is a symbolic link; refused",
                path.display()
            )));
        }
        Err(e) => return Err(RecordError::io(path, e)),
    };
    let meta = file.metadata().map_err(|e| RecordError::io(path, e))?;
    if !meta.is_file() {
        return Err(RecordError::Key(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(RecordError::Key(format!(
            "{} has mode {mode:04o}, readable or writable by group or others; run chmod 600 on it",
            path.display()
        )));
    }
    let mut text = Vec::new();
    file.take(MAX_KEY_FILE_BYTES)
        .read_to_end(&mut text)
        .map_err(|e| RecordError::io(path, e))?;
    let mut seed = [0u8; 32];
    let parsed = hex::decode_to_slice(text.trim_ascii(), &mut seed);
    wipe(&mut text);
    // The error says what is expected, never what was found: that could be (part of) a key.
    parsed.map_err(|_| {
        RecordError::Key(format!(
            "{} does not hold a 64-hex-digit ed25519 seed",
            path.display()
        ))
    })?;
    let key = SigningKey::from_bytes(&seed);
    wipe(&mut seed);
    Ok(Some(OriginKey { key }))
}

/// Creates a new key file without ever replacing one: the seed is written to a private temporary
/// file, synced, then hard-linked into place, which fails if another process got there first (then
/// its key is loaded instead, so two CI processes starting together agree on one key).
fn create_key_file(path: &Path) -> Result<OriginKey, RecordError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| RecordError::io(&dir, e))?;
    let key = OriginKey::generate();
    let mut text = format!("{}\n", hex::encode(key.key.to_bytes())).into_bytes();
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{:016x}",
        file_name(path),
        std::process::id(),
        OsRng.next_u64()
    ));
    let written = write_new_file(&tmp, &text, 0o600);
    wipe(&mut text);
    written.map_err(|e| RecordError::io(&tmp, e))?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(&dir).map_err(|e| RecordError::io(&dir, e))?;
            Ok(key)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            read_key_file(path)?.ok_or_else(|| {
                RecordError::Key(format!(
                    "{} vanished while it was being created",
                    path.display()
                ))
            })
        }
        Err(e) => Err(RecordError::io(path, e)),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into())
}

/// Writes a file that must not exist yet, with `mode` from the start (never briefly wider), and
/// syncs it.
fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // The umask may have narrowed the mode; it must never have widened it, but set it exactly so
    // that a .pub file is readable whatever the umask.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

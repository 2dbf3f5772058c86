//! The pass record: the one type that crosses the trust boundary.
//!
//! When a publishable job passes on a protected ref, the CI cluster writes one [`PassRecord`] into
//! a one-way [`Outbox`]; the trusted builder pulls it from there. The CI's ed25519 signature on it
//! proves only which CI wrote it, never that it is true: the trusted builder still fetches the
//! source itself by commit id, re-runs the job and compares the output digests.
//!
//! # Format (version 2)
//!
//! A file in the outbox is one JSON object, the envelope ([`SignedPassRecord`]), at most
//! [`MAX_RECORD_BYTES`] bytes; unknown fields are refused at every level:
//!
//! ```json
//! {
//!   "payload_type": "application/vnd.airlock.pass-record.v1+json",
//!   "payload": "<standard base64, padded, of the exact record bytes>",
//!   "key_id": "<lowercase hex sha256 of the 32-byte ed25519 public key>",
//!   "signature": "<standard base64, padded, of the 64-byte ed25519 signature>"
//! }
//! ```
//!
//! The payload type names the kind of document, not its shape: every version of the record has
//! the same one, and the record's own `version` field says which shape it has (so an older
//! reader refuses a newer record as an unsupported version, not as a foreign document).
//!
//! The signature is over DSSE's pre-authentication encoding ([`pae`]), not over the JSON:
//! `"DSSEv1" SP len(payload_type) SP payload_type SP len(record) SP record`, lengths in decimal
//! bytes. Binding the type means an envelope cannot be replayed as some other kind of document
//! signed by the same key. Only the signing step is DSSE's: the envelope itself is Airlock's own
//! (one signature, snake_case names), so a DSSE library cannot read it, by design: nothing else
//! should mistake it for an attestation.
//!
//! The record is the compact JSON that `serde_json` writes for [`PassRecord`] (field order as in
//! the struct, `outputs` as written by the CI). The reader never re-serialises it: it verifies the
//! signature over the bytes it received and parses those.
//!
//! Version 2 added `event` and `images`. Version 1 records are still read (see [`v1`]): their
//! event is derived from the ref, their `images` are empty. Versions above
//! [`PASS_RECORD_VERSION`] are refused; only [`PASS_RECORD_VERSION`] is written.
//!
//! # Reading
//!
//! [`open`] is the only way to get a [`PassRecord`] out of bytes, in this order: size limit,
//! envelope (strict JSON), key lookup by `key_id` among the trusted keys, signature
//! (`verify_strict`, so malleable signatures and weak keys are refused), payload type, record
//! version, strict record parse, [`PassRecord::validate`]. Serialisation happens only in
//! [`OriginKey::sign`] and [`SignedPassRecord::to_json`], so the two sides cannot drift apart.
//!
//! # Writing
//!
//! [`DirOutbox`] is the default transport: complete files appear atomically under a name derived
//! from the record's content, so writing the same record twice is harmless, and the reader never
//! sees half a file.

mod images;
mod outbox;
mod rules;
mod sign;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
pub mod v1;

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

pub use self::images::job_images;
pub use self::outbox::{DirOutbox, Outbox, RecordSource};
pub use self::sign::{OriginKey, key_id_of, pae, parse_public_key_hex};

/// The record format version this code writes; it reads this one and every earlier one.
pub const PASS_RECORD_VERSION: u32 = 2;

/// Upper bound on an envelope, checked before any parsing (the writer checks it too, so the CI
/// never writes a record the trusted side would refuse for its size).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// The DSSE payload type of a pass record of any version, bound into the signature.
pub const PASS_RECORD_PAYLOAD_TYPE: &str = "application/vnd.airlock.pass-record.v1+json";

/// Upper bound on the length in bytes of any one string field of a record.
pub const MAX_FIELD_BYTES: usize = 4 * 1024;

/// Upper bound on the number of outputs in one record.
pub const MAX_OUTPUTS: usize = 1000;

/// Upper bound on the number of job images in one record.
pub const MAX_IMAGES: usize = 1000;

/// A record that one job passed: what the trusted builder should rebuild and what CI says the
/// outputs were.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassRecord {
    /// Record format version; [`PASS_RECORD_VERSION`].
    pub version: u32,
    /// Project name: non-empty, no `/`, no `..`, no control characters.
    pub project: String,
    /// Canonical Git URL the CI fetched from (never with a password in it).
    pub git_url: String,
    /// Full ref name, starting with `refs/`.
    pub git_ref: String,
    /// The kind of event the run was for, as its lowercase name (`push`, `tag`, `change`,
    /// `schedule`, `manual`); `tag` only on a ref under `refs/tags/`, `push` only elsewhere. The
    /// rebuild gives jobs the same `AIRLOCK_EVENT`. Since version 2 (a version 1 record reads as
    /// [`v1::event_of_v1_ref`]).
    pub event: crate::spec::EventKind,
    /// Commit id: 40 lowercase hex digits (SHA-1).
    pub commit: String,
    /// Job name: 1-63 letters, digits, `-` or `_`, as in the pipeline file.
    pub job: String,
    /// Lowercase hex sha256 of the pipeline file the job came from.
    pub pipeline_sha256: String,
    /// Job name → the image it ran in, `REPOSITORY@sha256:<hex>` exactly as
    /// [`ImageRef`](crate::image::ImageRef) writes it: the recorded job and every job in its
    /// `needs` closure that names an image ([`job_images`]); jobs in host mode are absent. At most
    /// [`MAX_IMAGES`]. The builder refuses the record unless the pipeline file at the commit
    /// says the same. Since version 2 (empty in a version 1 record).
    pub images: BTreeMap<String, String>,
    /// The job's outputs as CI collected them.
    pub outputs: Vec<OutputDigest>,
    /// Lowercase hex sha256 of the job's log.
    pub log_sha256: String,
    /// CI's own identifier of the run, for cross-referencing its UI and audit log.
    pub ci_run_id: String,
    /// When the job started: RFC 3339, UTC (`YYYY-MM-DDThh:mm:ss[.frac]Z`).
    pub started_at: String,
    /// When the job finished: RFC 3339, UTC, not before `started_at`.
    pub finished_at: String,
}

/// One output file of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputDigest {
    /// Workspace-relative path with `/` separators.
    pub path: String,
    /// Lowercase hex sha256 of the contents.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl From<&crate::outputs::OutputFile> for OutputDigest {
    fn from(o: &crate::outputs::OutputFile) -> Self {
        OutputDigest {
            path: o.path.clone(),
            sha256: o.sha256.clone(),
            size: o.size,
        }
    }
}

/// The signed envelope written to the outbox as JSON (see the module docs for the format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedPassRecord {
    /// [`PASS_RECORD_PAYLOAD_TYPE`]; covered by the signature.
    pub payload_type: String,
    /// Standard base64 (padded) of the exact record bytes that were signed.
    pub payload: String,
    /// Lowercase hex sha256 of the signer's 32-byte public key; selects the key, proves nothing.
    pub key_id: String,
    /// Standard base64 (padded) of the ed25519 signature over [`pae`]`(payload_type, payload)`.
    pub signature: String,
}

/// Why a record could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The envelope is larger than [`MAX_RECORD_BYTES`]; nothing of it was parsed.
    #[error("pass record is {size} bytes, more than the limit of {max}")]
    TooLarge {
        /// Its size in bytes (at least this many, when read from a stream).
        size: u64,
        /// The limit.
        max: usize,
    },
    /// Not a well-formed envelope or record (JSON, base64, unknown fields, payload type).
    #[error("malformed pass record: {0}")]
    Malformed(String),
    /// The envelope names a key that is not among the trusted ones.
    #[error("pass record signed by unknown key {0}")]
    UnknownKey(String),
    /// The signature does not verify with the named key.
    #[error("pass record signature does not verify")]
    BadSignature,
    /// A record version this code does not read (or, when writing, does not write).
    #[error(
        "pass record version {0} is not supported (this build reads versions 1 to {PASS_RECORD_VERSION} and writes version {PASS_RECORD_VERSION})"
    )]
    UnsupportedVersion(u32),
    /// Well-formed and signed, but a field breaks the rules in [`PassRecord::validate`].
    #[error("invalid pass record: {0}")]
    Invalid(String),
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A key could not be loaded, created or parsed. Never contains key material.
    #[error("key: {0}")]
    Key(String),
}

impl RecordError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        RecordError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Quotes text that came from outside (a field value, a parser message) for an error message:
/// control characters escaped so it cannot forge log lines, and cut short so it cannot flood them.
pub(crate) fn quote(text: &str) -> String {
    const MAX_CHARS: usize = 120;
    let mut out = String::from("\"");
    for (i, c) in text.chars().enumerate() {
        if i == MAX_CHARS {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

impl SignedPassRecord {
    /// The envelope's bytes as written to the outbox; refused when larger than
    /// [`MAX_RECORD_BYTES`], since the reader would refuse them.
    pub fn to_json(&self) -> Result<Vec<u8>, RecordError> {
        let bytes = serde_json::to_vec(self)
            .map_err(|e| RecordError::Malformed(format!("encoding envelope: {e}")))?;
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge {
                size: bytes.len() as u64,
                max: MAX_RECORD_BYTES,
            });
        }
        Ok(bytes)
    }
}

/// The record's bytes as signed; the writer's half of the record codec.
fn encode_record(record: &PassRecord) -> Result<Vec<u8>, RecordError> {
    serde_json::to_vec(record).map_err(|e| RecordError::Malformed(format!("encoding record: {e}")))
}

/// Reads just the version, leniently, so that a newer record is reported as a version this build
/// does not read rather than as a pile of unknown fields.
#[derive(Deserialize)]
struct VersionProbe {
    version: u32,
}

/// Reads a pass record: the only way to get one from bytes that came from outside.
///
/// In order: size limit (before any parsing), envelope (strict JSON), key lookup by `key_id`
/// among `trusted`, signature over the PAE, payload type, version, record (strict JSON, in the
/// shape of its version; a version 1 record is read as described in [`v1`]), then
/// [`PassRecord::validate`]. The payload is not parsed at all unless the signature verifies.
pub fn open(
    bytes: &[u8],
    trusted: &[ed25519_dalek::VerifyingKey],
) -> Result<PassRecord, RecordError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge {
            size: bytes.len() as u64,
            max: MAX_RECORD_BYTES,
        });
    }
    let envelope: SignedPassRecord = serde_json::from_slice(bytes)
        .map_err(|e| RecordError::Malformed(format!("envelope: {}", quote(&e.to_string()))))?;
    // Checked before the lookup so that the key id in an UnknownKey error is safe to print.
    if !rules::is_lower_hex(&envelope.key_id, 64) {
        return Err(RecordError::Malformed(format!(
            "key_id {} is not 64 lowercase hex digits",
            quote(&envelope.key_id)
        )));
    }
    let key = trusted
        .iter()
        .find(|k| key_id_of(k) == envelope.key_id)
        .ok_or_else(|| RecordError::UnknownKey(envelope.key_id.clone()))?;
    let payload = BASE64
        .decode(&envelope.payload)
        .map_err(|e| RecordError::Malformed(format!("payload is not base64: {e}")))?;
    let signature = BASE64
        .decode(&envelope.signature)
        .map_err(|e| RecordError::Malformed(format!("signature is not base64: {e}")))?;
    let signature = ed25519_dalek::Signature::from_slice(&signature).map_err(|_| {
        RecordError::Malformed(format!("signature is {} bytes, not 64", signature.len()))
    })?;
    key.verify_strict(&pae(&envelope.payload_type, &payload), &signature)
        .map_err(|_| RecordError::BadSignature)?;
    decode_verified(&envelope.payload_type, &payload)
}

/// The reader's half of the record codec, for bytes whose signature has been verified: payload
/// type, version, strict parse, validation. Kept apart so the parser can be fuzzed without paying
/// for a signature per input; nothing outside this module may call it, since it checks no
/// signature.
fn decode_verified(payload_type: &str, payload: &[u8]) -> Result<PassRecord, RecordError> {
    // DSSE's order: verify, then look at the type. A signed envelope of another type is
    // something this key signed for another purpose, not a pass record.
    if payload_type != PASS_RECORD_PAYLOAD_TYPE {
        return Err(RecordError::Malformed(format!(
            "payload type {} is not {PASS_RECORD_PAYLOAD_TYPE}",
            quote(payload_type)
        )));
    }
    let malformed =
        |e: serde_json::Error| RecordError::Malformed(format!("record: {}", quote(&e.to_string())));
    let probe: VersionProbe = serde_json::from_slice(payload).map_err(malformed)?;
    let record: PassRecord = match probe.version {
        1 => serde_json::from_slice::<v1::PassRecordV1>(payload)
            .map_err(malformed)?
            .into(),
        PASS_RECORD_VERSION => serde_json::from_slice(payload).map_err(malformed)?,
        other => return Err(RecordError::UnsupportedVersion(other)),
    };
    record.validate()?;
    Ok(record)
}

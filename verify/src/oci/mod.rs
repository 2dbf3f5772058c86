//! Deterministic OCI images and artifacts, and the registry they are pushed to.
//!
//! The trusted builder turns a job's declared outputs into an image whose
//! manifest digest depends only on the inputs (files, publish section, commit
//! time), so two builds of one commit give the same digest and CI's build can
//! be corroborated byte for byte.
//!
//! - [`layer`]: one reproducible tar+gzip layer from the declared files.
//! - [`image`]: image config + manifest, on `scratch` or a base pinned by digest.
//! - [`artifact`]: outputs pushed as an OCI artifact (`artifactType`, one layer per file).
//! - [`registry`]: push and verified fetch over oci-client; plain HTTP only for
//!   registries the configuration lists as insecure.

pub mod artifact;
pub mod image;
pub mod layer;
pub mod registry;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

pub use artifact::{ARTIFACT_TYPE, ArtifactFile, assemble_artifact, resolve_artifacts};
pub use image::{AssembledImage, BaseParts, Blob, ImageInputs, assemble};
pub use layer::{LayerEntry, ResolvedFile, build_layer};
pub use registry::{Registry, RegistryConfig};

/// `[registry]` of builder.toml and reconciler.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    /// Registries (HOST:PORT) reached over plain HTTP.
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Registries (HOST[:PORT]) on private or local addresses reached over HTTPS (the builder's
    /// own, say). Any other registry (a base image's, named by a pipeline file) must resolve to
    /// public addresses only, as must its token realm and redirects.
    #[serde(default)]
    pub private: Vec<String>,
}

impl RegistrySection {
    /// The client settings.
    pub fn config(&self) -> RegistryConfig {
        RegistryConfig {
            insecure: self.insecure.clone(),
            private: self.private.clone(),
        }
    }
}

/// Media type of an OCI image manifest.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image config.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzip-compressed OCI layer.
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of the empty descriptor artifacts use as their config.
pub const MEDIA_TYPE_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Docker schema 2 manifest (accepted for base images only).
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (accepted for base images only).
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker gzip layer: same bytes as the OCI type, renamed when rebased.
pub const MEDIA_TYPE_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Annotation naming a file (used on artifact layers).
pub const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";
/// Label/annotation: source repository URL.
pub const ANNOTATION_SOURCE: &str = "org.opencontainers.image.source";
/// Label/annotation: source revision (commit id).
pub const ANNOTATION_REVISION: &str = "org.opencontainers.image.revision";
/// Annotation: creation time (RFC 3339, from SOURCE_DATE_EPOCH).
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";

/// Everything that can go wrong assembling, pushing or fetching.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// An image path in the publish section is not a clean absolute path.
    #[error("invalid image path {path:?}: {reason}")]
    InvalidImagePath {
        /// The offending path.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A declared output has no local file.
    #[error("declared output {0:?} was not produced")]
    MissingOutput(String),
    /// Reading a local file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// SOURCE_DATE_EPOCH is out of range for tar / RFC 3339.
    #[error("SOURCE_DATE_EPOCH {0} is out of range")]
    InvalidEpoch(i64),
    /// Content fetched from a registry did not hash to its digest.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was fetched.
        what: String,
        /// The digest it was addressed by.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A base image must be pinned by `sha256:` digest.
    #[error("base image must be pinned by sha256 digest, got {0:?}")]
    UnpinnedBase(String),
    /// A manifest or config could not be understood.
    #[error("unsupported or malformed {what}: {reason}")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// Details.
        reason: String,
    },
    /// An image reference could not be parsed.
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The registry refused or could not be reached (including TLS failures
    /// when a plain-HTTP registry is not listed as insecure).
    #[error("registry {registry}: {reason}")]
    Registry {
        /// Registry host[:port].
        registry: String,
        /// The client's error, with its source chain.
        reason: String,
    },
}

/// An OCI content descriptor (field order fixed: it is part of the digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// `sha256:<hex>` of the content.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Optional annotations (sorted, since BTreeMap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    /// Describes `data` with `media_type`.
    pub fn of(media_type: &str, data: &[u8]) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: sha256_digest(data),
            size: data.len() as u64,
            annotations: None,
        }
    }
}

/// An OCI image manifest (also used for artifacts via `artifactType`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// Always [`MEDIA_TYPE_MANIFEST`] for what we write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Set for artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, bottom first.
    pub layers: Vec<Descriptor>,
    /// Manifest annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in Sha256::digest(data) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Checks that `data` hashes to `expected` (`sha256:<hex>` only: anything
/// else cannot be verified here and is refused rather than trusted).
pub fn verify_digest(what: &str, expected: &str, data: &[u8]) -> Result<(), OciError> {
    if !is_sha256_digest(expected) {
        return Err(OciError::UnpinnedBase(expected.to_owned()));
    }
    let actual = sha256_digest(data);
    if actual != expected {
        return Err(OciError::DigestMismatch {
            what: what.to_owned(),
            expected: expected.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// True for `sha256:` followed by 64 lowercase hex digits.
pub fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// SOURCE_DATE_EPOCH as RFC 3339 with seconds and `Z` (what `created` holds).
pub fn epoch_rfc3339(epoch: i64) -> Result<String, OciError> {
    if epoch < 0 {
        return Err(OciError::InvalidEpoch(epoch));
    }
    chrono::DateTime::from_timestamp(epoch, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .ok_or(OciError::InvalidEpoch(epoch))
}

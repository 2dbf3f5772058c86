//! cosign's simple-signing payload: the bytes an image signature covers.
//!
//! The layout and key spelling follow cosign's `SIGNATURE_SPEC.md` and the
//! bytes `cosign sign` generates, so `cosign verify` and the `sigstore`
//! crate accept what we write. `critical.image.docker-manifest-digest` is what
//! binds a signature to one image; `docker-reference` is the repository
//! without a tag, as cosign writes it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::oci::{OciError, is_sha256_digest};

/// `critical.type` of every cosign image signature (the format's version tag).
pub const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";
/// Media type of a `.sig` layer whose blob is the simple-signing payload.
pub const MEDIA_TYPE_SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature over the layer's bytes.
pub const ANNOTATION_SIGNATURE: &str = "dev.cosignproject.cosign/signature";

/// The simple-signing payload. Top-level fields other tools add are ignored,
/// but `critical` is closed: an unknown critical claim must not be skipped.
/// Legacy capitalized keys (`Critical`, written by old cosign and hidden by
/// Go's case-insensitive decoding) are refused on purpose: we never write
/// them and accepting two spellings would make the checked field ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimpleSigningPayload {
    /// Claims a verifier must understand.
    pub critical: Critical,
    /// Free-form claims (`null` when none, as cosign writes it).
    pub optional: Option<BTreeMap<String, serde_json::Value>>,
}

/// The `critical` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Critical {
    /// Which repository the signature is for.
    pub identity: Identity,
    /// Which manifest the signature is for.
    pub image: SignedImage,
    /// Always [`SIMPLE_SIGNING_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
}

/// `critical.identity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The repository, without tag or digest (e.g. `registry:5000/team/app`).
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

/// `critical.image`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedImage {
    /// `sha256:<hex>` of the signed manifest.
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// Why a payload could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The repository carries a tag or digest, or the digest is not sha256.
    #[error("invalid simple-signing input: {0}")]
    Invalid(String),
    /// The bytes are not a simple-signing payload we understand.
    #[error("malformed simple-signing payload: {0}")]
    Malformed(String),
}

/// True when `repository` names a repository only: no `@digest`, and no
/// `:tag` after the last `/` (a `:` before it is a registry port).
pub fn is_bare_repository(repository: &str) -> bool {
    !repository.is_empty()
        && !repository.contains('@')
        && !repository
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .contains(':')
}

impl SimpleSigningPayload {
    /// The payload cosign would write for `repository@digest`.
    pub fn new(
        repository: &str,
        digest: &str,
        optional: Option<BTreeMap<String, serde_json::Value>>,
    ) -> Result<Self, PayloadError> {
        if !is_bare_repository(repository) {
            return Err(PayloadError::Invalid(format!(
                "{repository:?} is not a repository without tag or digest"
            )));
        }
        if !is_sha256_digest(digest) {
            return Err(PayloadError::Invalid(format!(
                "{digest:?} is not a sha256 digest"
            )));
        }
        Ok(Self {
            critical: Critical {
                identity: Identity {
                    docker_reference: repository.to_owned(),
                },
                image: SignedImage {
                    docker_manifest_digest: digest.to_owned(),
                },
                kind: SIMPLE_SIGNING_TYPE.to_owned(),
            },
            optional,
        })
    }

    /// The exact bytes to sign and store (compact JSON, cosign's key order).
    pub fn to_bytes(&self) -> Result<Vec<u8>, PayloadError> {
        serde_json::to_vec(self).map_err(|e| PayloadError::Malformed(e.to_string()))
    }

    /// Parses payload bytes and checks `critical.type`. Call only on bytes
    /// whose signature has already been verified.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PayloadError> {
        let payload: Self =
            serde_json::from_slice(bytes).map_err(|e| PayloadError::Malformed(e.to_string()))?;
        if payload.critical.kind != SIMPLE_SIGNING_TYPE {
            return Err(PayloadError::Malformed(format!(
                "critical.type is {:?}, expected {SIMPLE_SIGNING_TYPE:?}",
                payload.critical.kind
            )));
        }
        Ok(payload)
    }
}

/// `sha256-<hex>.<suffix>` for `sha256:<hex>`: where cosign keeps what it attaches to an image.
pub fn tag_for(digest: &str, suffix: &str) -> Result<String, OciError> {
    if !is_sha256_digest(digest) {
        return Err(OciError::UnpinnedBase(digest.to_owned()));
    }
    Ok(format!("{}.{suffix}", digest.replacen(':', "-", 1)))
}

/// The `.sig` tag of `digest`.
pub fn signature_tag(digest: &str) -> Result<String, OciError> {
    tag_for(digest, "sig")
}

/// The `.att` tag of `digest`.
pub fn attestation_tag(digest: &str) -> Result<String, OciError> {
    tag_for(digest, "att")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn payload_bytes_match_what_cosign_generates() {
        // Byte-for-byte the fixture `simplesigning-payload.cosign-generated.json`.
        let expected = br#"{"critical":{"identity":{"docker-reference":"index.docker.io/namespace/image"},"image":{"docker-manifest-digest":"sha256:4aa3054270f7a70b4528f2064ee90961788e1e1518703592ae4463de3b889dec"},"type":"cosign container image signature"},"optional":null}"#;
        let p = SimpleSigningPayload::new(
            "index.docker.io/namespace/image",
            "sha256:4aa3054270f7a70b4528f2064ee90961788e1e1518703592ae4463de3b889dec",
            None,
        )
        .unwrap();
        assert_eq!(p.to_bytes().unwrap(), expected.to_vec());
        assert_eq!(SimpleSigningPayload::from_bytes(expected).unwrap(), p);
    }

    #[test]
    fn tags_digests_and_legacy_spelling_are_refused() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert!(SimpleSigningPayload::new("reg:5000/app:v1", &d, None).is_err());
        assert!(SimpleSigningPayload::new("reg:5000/app@sha256:x", &d, None).is_err());
        assert!(SimpleSigningPayload::new("reg:5000/app", "latest", None).is_err());
        assert!(SimpleSigningPayload::new("reg:5000/app", &d, None).is_ok());
        let legacy = br#"{"Critical":{"Identity":{"docker-reference":"r"},"Image":{"Docker-manifest-digest":"sha256:00"},"Type":"cosign container image signature"},"Optional":null}"#;
        assert!(SimpleSigningPayload::from_bytes(legacy).is_err());
        let wrong_type = br#"{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":"sha256:00"},"type":"other"},"optional":null}"#;
        assert!(SimpleSigningPayload::from_bytes(wrong_type).is_err());
    }
}

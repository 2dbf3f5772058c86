//! Signatures and attestations attached to an image by cosign's tag scheme:
//! `sha256-<hex>.sig` and `sha256-<hex>.att` in the image's repository.
//!
//! The registry we must support has no referrers API, so these are image
//! manifests under predictable tags, one layer per signature/attestation.
//! Attaching APPENDS a layer to the manifest already under the tag (as cosign
//! does), so a second signer never erases the first. Two builders appending
//! at the same instant can still lose one write (the registry has no
//! compare-and-swap on tags); the trusted builder signs one image at a time.

use std::collections::BTreeMap;

use crate::oci::artifact::artifact_manifest;
use crate::oci::{AssembledImage, Blob, Descriptor, ImageManifest, OciError, Registry};
use crate::provenance::{ProvenanceError, Statement};
use crate::sign::cosign::{PayloadError, SimpleSigningPayload, signature_layer};
use crate::sign::dsse::{EnvelopeError, MEDIA_TYPE_DSSE, PAYLOAD_TYPE_IN_TOTO, sign_envelope};
use crate::sign::{SignError, Signer};

/// `artifactType` of `.sig` manifests (OCI 1.1 wants one with the empty config).
pub const ARTIFACT_TYPE_SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// `artifactType` of `.att` manifests.
pub const ARTIFACT_TYPE_ATT: &str = "application/vnd.dev.cosign.artifact.att.v1+json";
/// Annotation naming an attestation's predicate type (on layer and manifest).
pub const ANNOTATION_PREDICATE_TYPE: &str = "predicateType";

/// Why attaching failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Signing failed (no key material in the message).
    #[error("signing: {0}")]
    Sign(#[from] SignError),
    /// The registry refused, or its content was malformed.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// The payload could not be built.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The statement could not be serialized.
    #[error(transparent)]
    Provenance(#[from] ProvenanceError),
    /// The envelope could not be serialized.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

/// What ended up under the tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The tag (`sha256-<hex>.sig` / `.att`).
    pub tag: String,
    /// Digest of the manifest now under the tag.
    pub manifest_digest: String,
    /// How many layers that manifest has (previous ones included).
    pub layers: usize,
}

pub use airlock_verify::cosign::{attestation_tag, signature_tag, tag_for};

/// Appends `layer` to the manifest under `repository:tag` (creating it when
/// absent) and pushes the result. Existing layers are kept as they are, even
/// ones of other media types: they are not ours to drop. An identical layer
/// (same digest and annotations) is not added twice.
pub async fn append_layer(
    registry: &Registry,
    repository: &str,
    tag: &str,
    artifact_type: &str,
    layer: Blob,
    manifest_annotations: BTreeMap<String, String>,
) -> Result<Attached, OciError> {
    let mut layers: Vec<Descriptor> = Vec::new();
    let mut annotations = BTreeMap::new();
    if let Some((bytes, _)) = registry.fetch_manifest_by_tag(repository, tag).await? {
        let existing: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| OciError::Malformed {
                what: "existing attachment manifest",
                reason: e.to_string(),
            })?;
        layers = existing.layers;
        annotations = existing.annotations.unwrap_or_default();
    }
    if !layers.contains(&layer.descriptor) {
        layers.push(layer.descriptor.clone());
    }
    annotations.extend(manifest_annotations);
    let (config, manifest) = artifact_manifest(artifact_type, layers, annotations);
    let count = manifest.layers.len();
    // Only the new layer and the config need uploading: earlier layers are
    // already blobs of this repository (the registry refuses the manifest otherwise).
    let image = AssembledImage::new(&manifest, vec![config, layer])?;
    let manifest_digest = registry
        .push(&format!("{repository}:{tag}"), &image)
        .await?;
    Ok(Attached {
        tag: tag.to_owned(),
        manifest_digest,
        layers: count,
    })
}

/// Signs `repository@digest` with a cosign simple-signing payload and
/// appends it under the `.sig` tag.
pub async fn sign_image<S: Signer>(
    registry: &Registry,
    signer: &S,
    repository: &str,
    digest: &str,
    optional: Option<BTreeMap<String, serde_json::Value>>,
) -> Result<Attached, AttachError> {
    let payload = SimpleSigningPayload::new(repository, digest, optional)?.to_bytes()?;
    let layer = signature_layer(signer, &payload).await?;
    let tag = signature_tag(digest)?;
    Ok(append_layer(
        registry,
        repository,
        &tag,
        ARTIFACT_TYPE_SIG,
        layer,
        BTreeMap::new(),
    )
    .await?)
}

/// Wraps `statement` in a DSSE envelope signed by `signer` and appends it
/// under the `.att` tag of `digest` in `repository`.
pub async fn attest_image<S: Signer>(
    registry: &Registry,
    signer: &S,
    repository: &str,
    digest: &str,
    statement: &Statement,
) -> Result<Attached, AttachError> {
    let body = statement.to_json()?;
    let envelope = sign_envelope(signer, PAYLOAD_TYPE_IN_TOTO, &body).await?;
    let data = envelope.to_json()?;
    let predicate = BTreeMap::from([(
        ANNOTATION_PREDICATE_TYPE.to_owned(),
        statement.predicate_type.clone(),
    )]);
    let mut descriptor = Descriptor::of(MEDIA_TYPE_DSSE, &data);
    descriptor.annotations = Some(predicate.clone());
    let tag = attestation_tag(digest)?;
    Ok(append_layer(
        registry,
        repository,
        &tag,
        ARTIFACT_TYPE_ATT,
        Blob { descriptor, data },
        predicate,
    )
    .await?)
}

//! Push and verified fetch against a plain OCI distribution registry.
//!
//! Only the core distribution API is used (blobs, manifests by tag and by
//! digest), so a registry without the referrers API works. HTTPS is the rule;
//! plain HTTP is used only for registries the configuration names as
//! insecure, so a typo'd or hijacked name fails the TLS handshake instead of
//! silently downgrading.

use super::image::{
    AssembledImage, BaseParts, Blob, ImageInputs, assemble, normalize_layer_media_type,
};
use super::{
    Descriptor, ImageManifest, MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST, OciError, is_sha256_digest, verify_digest,
};
use airlock_pipeline::spec::model::BaseImage;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;

/// Manifest types accepted when fetching (bases may be Docker-built).
const ACCEPTED_MANIFESTS: &[&str] = &[
    MEDIA_TYPE_MANIFEST,
    MEDIA_TYPE_INDEX,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_LIST,
];

/// Registry access settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryConfig {
    /// `host[:port]` of registries reached over plain HTTP. Everything else is HTTPS.
    pub insecure: Vec<String>,
    /// `host[:port]` of registries on private addresses reached over HTTPS; every other one
    /// (and `insecure` aside) must resolve to public addresses only.
    pub private: Vec<String>,
}

/// Largest manifest read (by digest or tag); real ones are a few KiB.
pub const MAX_MANIFEST_BYTES: usize = airlock_pipeline::image::manifest::MAX_MANIFEST_BYTES;
/// Largest base-image layer held (base layers are assembled in memory).
pub const MAX_BASE_LAYER_BYTES: u64 = 1 << 30;
/// Largest base image in all (its layers).
pub const MAX_BASE_BYTES: u64 = 2 << 30;
/// Each connect to a registry.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Each read from a registry.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A registry client (anonymous access). A base image's registry is named by the pipeline
/// file, so everything read is bounded while it is read: manifests through a capped stream
/// (oci-client reads them whole), blobs cut off past their declared size, every connect and
/// read under a timeout.
pub struct Registry {
    client: Client,
    manifests: airlock_pipeline::image::capped::ManifestClient,
    /// How long a whole base image may take to fetch (per-read timeouts alone let a registry
    /// trickle a byte a minute).
    base_deadline: std::time::Duration,
}

/// How long a whole base image may take to fetch by default.
pub const DEFAULT_BASE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

/// Parses `host[:port]/repo[:tag][@sha256:…]`.
pub fn parse_reference(reference: &str) -> Result<Reference, OciError> {
    Reference::try_from(reference).map_err(|e| OciError::InvalidReference {
        reference: reference.to_owned(),
        reason: e.to_string(),
    })
}

fn capped_err(reference: &Reference, err: airlock_pipeline::image::ImageError) -> OciError {
    OciError::Registry {
        registry: reference.resolve_registry().to_owned(),
        reason: err.to_string(),
    }
}

fn registry_err(reference: &Reference, err: OciDistributionError) -> OciError {
    if let OciDistributionError::DigestError(DigestError::VerificationError { expected, actual }) =
        err
    {
        return OciError::DigestMismatch {
            what: reference.whole(),
            expected,
            actual,
        };
    }
    // Keep the source chain: for the HTTPS-to-HTTP case the useful part
    // (the TLS failure) is several sources deep.
    OciError::Registry {
        registry: reference.resolve_registry().to_owned(),
        reason: airlock_pipeline::error_chain::error_chain(&err),
    }
}

impl Registry {
    /// A client that uses plain HTTP exactly for `config.insecure`.
    pub fn new(config: &RegistryConfig) -> Result<Self, OciError> {
        let client_config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(config.insecure.clone()),
            // One PUT per blob instead of 4 MiB PATCH chunks: a 100 MB layer
            // was 25 round trips (see benches/assemble_push_sign.rs).
            use_monolithic_push: true,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..ClientConfig::default()
        };
        let client = Client::try_from(client_config).map_err(|e| OciError::Registry {
            registry: "(client setup)".into(),
            reason: e.to_string(),
        })?;
        let manifests = airlock_pipeline::image::capped::ManifestClient::with_private(
            &config.insecure,
            &config.private,
            CONNECT_TIMEOUT,
            READ_TIMEOUT,
        )
        .map_err(|e| OciError::Registry {
            registry: "(client setup)".into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            client,
            manifests,
            base_deadline: DEFAULT_BASE_DEADLINE,
        })
    }

    /// The same client with another deadline for fetching a base image.
    pub fn with_base_deadline(mut self, deadline: std::time::Duration) -> Self {
        self.base_deadline = deadline;
        self
    }

    async fn anonymous(&self, reference: &Reference) {
        self.client
            .store_auth_if_needed(reference.resolve_registry(), &RegistryAuth::Anonymous)
            .await;
    }

    /// Uploads one blob unless the repository already has it.
    pub async fn push_blob(&self, reference: &Reference, blob: &Blob) -> Result<(), OciError> {
        self.anonymous(reference).await;
        let digest = &blob.descriptor.digest;
        let exists = self
            .client
            .blob_exists(reference, digest)
            .await
            .map_err(|e| registry_err(reference, e))?;
        if !exists {
            self.client
                .push_blob(reference, blob.data.clone(), digest)
                .await
                .map_err(|e| registry_err(reference, e))?;
        }
        Ok(())
    }

    /// Pushes an assembled image or artifact to `reference` (by tag or by
    /// digest) and returns its manifest digest.
    pub async fn push(&self, reference: &str, image: &AssembledImage) -> Result<String, OciError> {
        let target = parse_reference(reference)?;
        if let Some(digest) = target.digest()
            && digest != image.manifest_digest
        {
            return Err(OciError::DigestMismatch {
                what: reference.to_owned(),
                expected: digest.to_owned(),
                actual: image.manifest_digest.clone(),
            });
        }
        for blob in &image.blobs {
            self.push_blob(&target, blob).await?;
        }
        self.push_manifest_bytes(&target, &image.manifest).await?;
        Ok(image.manifest_digest.clone())
    }

    /// Pushes raw OCI image manifest bytes (never re-serialized: the bytes are the digest).
    pub async fn push_manifest_bytes(
        &self,
        reference: &Reference,
        manifest: &[u8],
    ) -> Result<String, OciError> {
        self.anonymous(reference).await;
        let content_type = http::HeaderValue::from_static(MEDIA_TYPE_MANIFEST);
        self.client
            .push_manifest_raw(reference, manifest.to_vec(), content_type)
            .await
            .map_err(|e| registry_err(reference, e))?;
        Ok(super::sha256_digest(manifest))
    }

    /// Fetches a manifest of `repository` by digest and checks its bytes hash to it.
    pub async fn fetch_manifest(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<u8>, OciError> {
        if !is_sha256_digest(digest) {
            return Err(OciError::UnpinnedBase(digest.to_owned()));
        }
        let reference = parse_reference(&format!("{repository}@{digest}"))?;
        let body = self
            .manifests
            .fetch(&reference, ACCEPTED_MANIFESTS, MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| capped_err(&reference, e))?
            .ok_or_else(|| OciError::Registry {
                registry: reference.resolve_registry().to_owned(),
                reason: format!("{}: manifest not found", reference.whole()),
            })?;
        verify_digest(&reference.whole(), digest, &body)?;
        Ok(body)
    }

    /// Fetches the manifest `repository:tag`, or None when the tag does not
    /// exist. A tag names no digest, so the bytes are returned with their
    /// digest and cannot be checked here: callers treat them as untrusted and
    /// verify what they reference (every blob is then fetched by digest).
    pub async fn fetch_manifest_by_tag(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<(Vec<u8>, String)>, OciError> {
        let reference = parse_reference(&format!("{repository}:{tag}"))?;
        let body = self
            .manifests
            .fetch(
                &reference,
                // cosign itself writes `.sig` manifests with the Docker type.
                &[MEDIA_TYPE_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST],
                MAX_MANIFEST_BYTES,
            )
            .await
            .map_err(|e| capped_err(&reference, e))?;
        Ok(body.map(|body| {
            let digest = super::sha256_digest(&body);
            (body, digest)
        }))
    }

    /// Fetches a blob of `repository` by digest, at most `max` bytes (reading stops there),
    /// and checks its bytes hash to it. Read through the capped client, not oci-client: its
    /// token flow would ask any realm the registry names.
    pub async fn fetch_blob(
        &self,
        repository: &str,
        digest: &str,
        max: u64,
    ) -> Result<Vec<u8>, OciError> {
        if !is_sha256_digest(digest) {
            return Err(OciError::UnpinnedBase(digest.to_owned()));
        }
        let reference = parse_reference(&format!("{repository}@{digest}"))?;
        let mut out = Vec::new();
        self.manifests
            .blob(&reference, digest, max, &mut out)
            .await
            .map_err(|e| capped_err(&reference, e))?;
        verify_digest(&format!("{repository} blob"), digest, &out)?;
        Ok(out)
    }

    /// Assembles `inputs.image`, fetching and verifying its pinned base first.
    pub async fn assemble_image(
        &self,
        inputs: &ImageInputs<'_>,
    ) -> Result<AssembledImage, OciError> {
        let base = match &inputs.image.base {
            BaseImage::Scratch => None,
            BaseImage::Pinned { repository, digest } => {
                Some(self.fetch_base(repository, digest).await?)
            }
        };
        assemble(inputs, base.as_ref())
    }

    /// Fetches a base image pinned by digest: manifest (through an index to
    /// linux/amd64 if needed), config and layers, each verified against the
    /// digest that references it, so the whole chain hangs off the pin.
    pub async fn fetch_base(&self, repository: &str, digest: &str) -> Result<BaseParts, OciError> {
        tokio::time::timeout(self.base_deadline, self.fetch_base_now(repository, digest))
            .await
            .map_err(|_| OciError::Registry {
                registry: repository.to_owned(),
                reason: format!(
                    "base image {digest} not fetched within {}",
                    humantime::format_duration(self.base_deadline)
                ),
            })?
    }

    async fn fetch_base_now(&self, repository: &str, digest: &str) -> Result<BaseParts, OciError> {
        let mut manifest_bytes = self.fetch_manifest(repository, digest).await?;
        if let Some(platform_digest) = select_platform(&manifest_bytes)? {
            manifest_bytes = self.fetch_manifest(repository, &platform_digest).await?;
            if select_platform(&manifest_bytes)?.is_some() {
                return Err(OciError::Malformed {
                    what: "base manifest",
                    reason: "nested index".into(),
                });
            }
        }
        let manifest: ImageManifest =
            serde_json::from_slice(&manifest_bytes).map_err(|e| OciError::Malformed {
                what: "base manifest",
                reason: e.to_string(),
            })?;
        let config_bytes = self
            .fetch_blob(
                repository,
                &manifest.config.digest,
                MAX_MANIFEST_BYTES as u64,
            )
            .await?;
        let config: Value =
            serde_json::from_slice(&config_bytes).map_err(|e| OciError::Malformed {
                what: "base config",
                reason: e.to_string(),
            })?;
        let diff_ids = config
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if diff_ids != manifest.layers.len() {
            return Err(OciError::Malformed {
                what: "base image",
                reason: format!("{} layers but {diff_ids} diff_ids", manifest.layers.len()),
            });
        }
        let declared = manifest
            .layers
            .iter()
            .fold(0u64, |sum, l| sum.saturating_add(l.size));
        if declared > MAX_BASE_BYTES
            || manifest
                .layers
                .iter()
                .any(|l| l.size > MAX_BASE_LAYER_BYTES)
        {
            return Err(OciError::Malformed {
                what: "base image",
                reason: format!(
                    "layers of {declared} bytes (at most {MAX_BASE_LAYER_BYTES} each and {MAX_BASE_BYTES} in all)"
                ),
            });
        }
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for layer in &manifest.layers {
            // Cut off past the declared size: that is all the size check below allows.
            let data = self
                .fetch_blob(repository, &layer.digest, layer.size)
                .await?;
            let size = data.len() as u64;
            if size != layer.size {
                return Err(OciError::Malformed {
                    what: "base layer",
                    reason: format!("{} size mismatch", layer.digest),
                });
            }
            let descriptor = Descriptor {
                media_type: normalize_layer_media_type(&layer.media_type)?.to_owned(),
                digest: layer.digest.clone(),
                size,
                annotations: layer.annotations.clone(),
            };
            layers.push(Blob { descriptor, data });
        }
        Ok(BaseParts {
            repository: repository.to_owned(),
            digest: digest.to_owned(),
            layers,
            config,
        })
    }
}

/// For an index / manifest list, the linux/amd64 entry's digest; None for a
/// single-image manifest.
fn select_platform(manifest: &[u8]) -> Result<Option<String>, OciError> {
    let v: Value = serde_json::from_slice(manifest).map_err(|e| OciError::Malformed {
        what: "base manifest",
        reason: e.to_string(),
    })?;
    let media_type = v
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(entries) = v.get("manifests").and_then(Value::as_array) else {
        return Ok(None);
    };
    if media_type != MEDIA_TYPE_INDEX
        && media_type != MEDIA_TYPE_DOCKER_LIST
        && !media_type.is_empty()
    {
        return Err(OciError::Malformed {
            what: "base manifest",
            reason: format!("unexpected {media_type}"),
        });
    }
    entries
        .iter()
        .find(|e| {
            e.pointer("/platform/os").and_then(Value::as_str) == Some("linux")
                && e.pointer("/platform/architecture").and_then(Value::as_str) == Some("amd64")
        })
        .and_then(|e| e.get("digest").and_then(Value::as_str))
        .map(|d| Some(d.to_owned()))
        .ok_or_else(|| OciError::Malformed {
            what: "base index",
            reason: "no linux/amd64 image".into(),
        })
}

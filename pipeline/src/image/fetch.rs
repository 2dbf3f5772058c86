//! Fetching an image by digest: manifest (through an index to linux/amd64), config and layer
//! blobs, each size-limited and checked against the digest that names it, so everything hangs
//! off the pin the job wrote. Verifying is here; unpacking is [`super::unpack`].

use std::path::Path;

use futures_util::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::{Client, Reference};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::{ImageError, ImageRef};

/// Largest manifest or image config read (real ones are a few KiB).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MEDIA_TYPE_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const ACCEPTED_MANIFESTS: &[&str] = &[
    MEDIA_TYPE_MANIFEST,
    MEDIA_TYPE_INDEX,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_LIST,
];

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// tar + gzip.
    Gzip,
}

/// One layer to fetch and apply, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// `sha256:<hex>` of the blob as stored.
    pub digest: String,
    /// Its size as the manifest declares it (a longer download is cut off).
    pub size: u64,
    /// How to read it.
    pub compression: Compression,
    /// `sha256:<hex>` of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
}

/// A verified manifest and config: what to fetch and how the job's process starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The linux/amd64 image manifest's digest (the pinned one, unless it pins an index).
    pub manifest_digest: String,
    /// The config's `Env` (`NAME=value`).
    pub env: Vec<String>,
    /// Layers, bottom first.
    pub layers: Vec<LayerBlob>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<DescriptorJson>,
    #[serde(default)]
    layers: Vec<DescriptorJson>,
    #[serde(default)]
    manifests: Vec<IndexEntryJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorJson {
    media_type: String,
    digest: String,
    size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntryJson {
    digest: String,
    #[serde(default)]
    platform: Option<PlatformJson>,
}

#[derive(Deserialize)]
struct PlatformJson {
    architecture: String,
    os: String,
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    config: Option<RunConfigJson>,
    rootfs: RootfsJson,
}

#[derive(Deserialize)]
struct RunConfigJson {
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RootfsJson {
    #[serde(rename = "type")]
    kind: String,
    diff_ids: Vec<String>,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn is_sha256_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn malformed(what: &str, reason: impl std::fmt::Display) -> ImageError {
    ImageError::Malformed {
        what: what.to_string(),
        reason: reason.to_string(),
    }
}

/// An anonymous registry client: HTTPS, except plain HTTP for the registries listed as insecure
/// (so a typo'd name fails the TLS handshake instead of silently downgrading).
pub struct RegistryClient {
    client: Client,
    manifests: super::capped::ManifestClient,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient").finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client using plain HTTP exactly for `insecure` (`host[:port]`).
    pub fn new(insecure: &[String]) -> Result<Self, ImageError> {
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure.to_vec()),
            // A registry that accepts and then stalls must not hold a runner: these bound each
            // connect and each read; the job's timeout bounds the whole pull.
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| ImageError::Registry {
            registry: "(client setup)".into(),
            reason: e.to_string(),
        })?;
        let manifests =
            super::capped::ManifestClient::new(insecure, CONNECT_TIMEOUT, READ_TIMEOUT)?;
        Ok(RegistryClient { client, manifests })
    }

    fn reference(image: &ImageRef, digest: &str) -> Reference {
        Reference::with_digest(
            image.registry().to_string(),
            image.path(),
            digest.to_string(),
        )
    }

    fn registry_err(image: &ImageRef, err: impl std::error::Error) -> ImageError {
        // The useful part (a TLS failure, a refused connection) is often several sources deep;
        // the text may quote the registry's response body, so it is cut to one short line.
        super::capped::registry_err(image.registry(), crate::error_chain::error_chain(&err))
    }

    /// The manifest `digest` of `image`'s repository, checked to hash to it. Read through a
    /// capped stream: never more than [`MAX_MANIFEST_BYTES`] is held.
    async fn manifest(&self, image: &ImageRef, digest: &str) -> Result<Vec<u8>, ImageError> {
        let body = self
            .manifests
            .manifest(image, digest, ACCEPTED_MANIFESTS, MAX_MANIFEST_BYTES)
            .await?;
        let actual = sha256_digest(&body);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("manifest of {}", image.repository()),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(body)
    }

    /// Resolves the pinned image: its manifest (via an index to linux/amd64) and its config,
    /// both verified.
    pub async fn resolve(&self, image: &ImageRef) -> Result<ResolvedImage, ImageError> {
        let mut digest = image.digest().to_string();
        let mut body = self.manifest(image, &digest).await?;
        let mut manifest: ManifestJson =
            serde_json::from_slice(&body).map_err(|e| malformed("manifest", e))?;
        if !manifest.manifests.is_empty() || is_index(manifest.media_type.as_deref()) {
            let entry = manifest
                .manifests
                .iter()
                .find(|m| {
                    m.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                })
                .ok_or_else(|| ImageError::Unsupported {
                    what: format!("image {image}"),
                    reason: "its index has no linux/amd64 image".into(),
                })?;
            if !is_sha256_digest(&entry.digest) {
                return Err(malformed("index", format!("digest '{}'", entry.digest)));
            }
            digest = entry.digest.clone();
            body = self.manifest(image, &digest).await?;
            manifest = serde_json::from_slice(&body).map_err(|e| malformed("manifest", e))?;
            if !manifest.manifests.is_empty() {
                return Err(malformed("manifest", "an index inside an index"));
            }
        }
        if manifest.schema_version != 2 {
            return Err(malformed(
                "manifest",
                format!("schemaVersion {}", manifest.schema_version),
            ));
        }
        let config_desc = manifest
            .config
            .as_ref()
            .ok_or_else(|| malformed("manifest", "no config"))?;
        if config_desc.size > MAX_MANIFEST_BYTES as u64 {
            return Err(ImageError::TooLarge {
                what: format!("image config {}", config_desc.digest),
                max: MAX_MANIFEST_BYTES as u64,
            });
        }
        let mut config_bytes = Vec::new();
        self.blob_into(
            image,
            &config_desc.digest,
            config_desc.size,
            &mut config_bytes,
        )
        .await?;
        let config: ConfigJson =
            serde_json::from_slice(&config_bytes).map_err(|e| malformed("image config", e))?;
        if config.os.as_deref().is_some_and(|os| os != "linux")
            || config.architecture.as_deref().is_some_and(|a| a != "amd64")
        {
            return Err(ImageError::Unsupported {
                what: format!("image {image}"),
                reason: format!(
                    "it is for {}/{}; this runner runs linux/amd64",
                    config.os.unwrap_or_default(),
                    config.architecture.unwrap_or_default()
                ),
            });
        }
        if config.rootfs.kind != "layers" || config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(malformed(
                "image config",
                format!(
                    "{} layers but {} diff_ids of type '{}'",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len(),
                    config.rootfs.kind
                ),
            ));
        }
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            if !is_sha256_digest(&layer.digest) || !is_sha256_digest(diff_id) {
                return Err(malformed(
                    "manifest",
                    format!("layer digest '{}'", layer.digest),
                ));
            }
            layers.push(LayerBlob {
                digest: layer.digest.clone(),
                size: layer.size,
                compression: compression_of(&layer.media_type)?,
                diff_id: diff_id.clone(),
            });
        }
        Ok(ResolvedImage {
            manifest_digest: digest,
            env: config.config.and_then(|c| c.env).unwrap_or_default(),
            layers,
        })
    }

    /// Streams the blob `digest` (at most `size` bytes) into `out`, checking its digest.
    async fn blob_into<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        image: &ImageRef,
        digest: &str,
        size: u64,
        out: &mut W,
    ) -> Result<u64, ImageError> {
        let reference = Self::reference(image, digest);
        let descriptor = OciDescriptor {
            digest: digest.to_string(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            ..OciDescriptor::default()
        };
        let mut stream = self
            .client
            .pull_blob_stream(&reference, &descriptor)
            .await
            .map_err(|e| Self::registry_err(image, e))?;
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Self::registry_err(image, e))?;
            total += chunk.len() as u64;
            // The manifest declared the size: more is a hostile or broken registry.
            if total > size {
                return Err(ImageError::TooLarge {
                    what: format!("blob {digest} (declared {size} bytes)"),
                    max: size,
                });
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|e| ImageError::io(format!("blob {digest}"), e))?;
        }
        out.flush()
            .await
            .map_err(|e| ImageError::io(format!("blob {digest}"), e))?;
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("blob of {}", image.repository()),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(total)
    }

    /// Downloads the layer, verified, into an unnamed file in `dir` and returns it rewound:
    /// the bytes that were checked are the bytes read back (no path to swap a file under).
    pub async fn layer_to_file(
        &self,
        image: &ImageRef,
        layer: &LayerBlob,
        dir: &Path,
    ) -> Result<std::fs::File, ImageError> {
        use std::io::Seek as _;
        let file = tempfile::tempfile_in(dir).map_err(|e| ImageError::io(dir, e))?;
        let mut file = tokio::fs::File::from_std(file);
        self.blob_into(image, &layer.digest, layer.size, &mut file)
            .await?;
        let mut file = file.into_std().await;
        file.rewind()
            .map_err(|e| ImageError::io(format!("blob {}", layer.digest), e))?;
        Ok(file)
    }
}

fn is_index(media_type: Option<&str>) -> bool {
    matches!(media_type, Some(MEDIA_TYPE_INDEX | MEDIA_TYPE_DOCKER_LIST))
}

/// The layer media types a runner can apply.
fn compression_of(media_type: &str) -> Result<Compression, ImageError> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Ok(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
        other => Err(ImageError::Unsupported {
            what: "layer".into(),
            reason: format!("media type '{other}' (tar and tar+gzip layers are supported)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_media_types() {
        assert_eq!(
            compression_of("application/vnd.oci.image.layer.v1.tar+gzip").ok(),
            Some(Compression::Gzip)
        );
        assert_eq!(
            compression_of("application/vnd.oci.image.layer.v1.tar").ok(),
            Some(Compression::None)
        );
        let zstd = compression_of("application/vnd.oci.image.layer.v1.tar+zstd").expect_err("zstd");
        assert!(zstd.to_string().contains("zstd"), "{zstd}");
    }
}

//! Parsing what a registry returns for an image (manifest or index, config) into what to
//! fetch: pure functions over bytes, apart from fetching, so they can be fuzzed. Every input
//! here is untrusted (the job names the image; its registry serves these bytes), and is already
//! capped at [`MAX_MANIFEST_BYTES`] and checked against its digest when it arrives here.

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::ImageError;

/// Largest manifest or image config read (real ones are a few KiB).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// Most layers in one image (overlay-based engines stop at 127 or 128).
pub const MAX_LAYERS: usize = 128;

const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(super) const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(super) const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub(super) const ACCEPTED_MANIFESTS: &[&str] = &[
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

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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

/// `sha256:` and 64 lowercase hex digits.
pub fn is_sha256_digest(text: &str) -> bool {
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

/// What a manifest body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// An index: the digest of its linux/amd64 image manifest.
    Index {
        /// `sha256:<hex>`.
        linux_amd64: String,
    },
    /// An image manifest.
    Image(ImageManifest),
}

/// An image manifest's config and layers, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageManifest {
    /// `sha256:<hex>` of the config blob.
    pub config_digest: String,
    /// Its declared size (at most [`MAX_MANIFEST_BYTES`]).
    pub config_size: u64,
    layers: Vec<DescriptorJson>,
}

impl ImageManifest {
    /// How many layers it lists.
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }
}

/// Parses a manifest or index body. `nested`: it was reached through an index, so it may not
/// be one.
pub fn parse_manifest(body: &[u8], image: &str, nested: bool) -> Result<Manifest, ImageError> {
    if body.len() > MAX_MANIFEST_BYTES {
        return Err(ImageError::TooLarge {
            what: format!("manifest of {image}"),
            max: MAX_MANIFEST_BYTES as u64,
        });
    }
    let manifest: ManifestJson =
        serde_json::from_slice(body).map_err(|e| malformed("manifest", e))?;
    if !manifest.manifests.is_empty() || is_index(manifest.media_type.as_deref()) {
        if nested {
            return Err(malformed("manifest", "an index inside an index"));
        }
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
        return Ok(Manifest::Index {
            linux_amd64: entry.digest.clone(),
        });
    }
    if manifest.schema_version != 2 {
        return Err(malformed(
            "manifest",
            format!("schemaVersion {}", manifest.schema_version),
        ));
    }
    let config = manifest
        .config
        .ok_or_else(|| malformed("manifest", "no config"))?;
    if !is_sha256_digest(&config.digest) {
        return Err(malformed(
            "manifest",
            format!("config digest '{}'", config.digest),
        ));
    }
    if config.size > MAX_MANIFEST_BYTES as u64 {
        return Err(ImageError::TooLarge {
            what: format!("image config {}", config.digest),
            max: MAX_MANIFEST_BYTES as u64,
        });
    }
    if manifest.layers.len() > MAX_LAYERS {
        return Err(malformed(
            "manifest",
            format!("{} layers (at most {MAX_LAYERS})", manifest.layers.len()),
        ));
    }
    Ok(Manifest::Image(ImageManifest {
        config_digest: config.digest,
        config_size: config.size,
        layers: manifest.layers,
    }))
}

/// Parses the image config against its manifest: the image's `Env` and its layers, bottom
/// first, each with the `diff_id` its uncompressed tar must hash to.
pub fn parse_config(
    bytes: &[u8],
    manifest: &ImageManifest,
    image: &str,
) -> Result<(Vec<String>, Vec<LayerBlob>), ImageError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ImageError::TooLarge {
            what: format!("image config of {image}"),
            max: MAX_MANIFEST_BYTES as u64,
        });
    }
    let config: ConfigJson =
        serde_json::from_slice(bytes).map_err(|e| malformed("image config", e))?;
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
    Ok((
        config.config.and_then(|c| c.env).unwrap_or_default(),
        layers,
    ))
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

    fn digest(n: u8) -> String {
        format!("sha256:{}", hex::encode([n; 32]))
    }

    fn image_manifest(layers: usize) -> Vec<u8> {
        let layers: Vec<serde_json::Value> = (0..layers)
            .map(|i| {
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(i as u8),
                    "size": 10,
                })
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(200), "size": 100},
            "layers": layers,
        }))
        .unwrap_or_default()
    }

    #[test]
    fn an_index_leads_to_its_linux_amd64_manifest_but_never_to_another_index() {
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": [
                {"digest": digest(1), "platform": {"os": "linux", "architecture": "arm64"}},
                {"digest": digest(2), "platform": {"os": "linux", "architecture": "amd64"}},
            ],
        }))
        .unwrap_or_default();
        assert_eq!(
            parse_manifest(&index, "img", false).ok(),
            Some(Manifest::Index {
                linux_amd64: digest(2)
            })
        );
        let nested = parse_manifest(&index, "img", true).expect_err("nested");
        assert!(
            nested.to_string().contains("index inside an index"),
            "{nested}"
        );
    }

    #[test]
    fn layer_counts_and_config_are_checked() {
        // Control: at the limit.
        let Ok(Manifest::Image(manifest)) =
            parse_manifest(&image_manifest(MAX_LAYERS), "img", false)
        else {
            panic!("a manifest of {MAX_LAYERS} layers is refused");
        };
        let err = parse_manifest(&image_manifest(MAX_LAYERS + 1), "img", false).expect_err("over");
        assert!(
            err.to_string().contains("129 layers (at most 128)"),
            "{err}"
        );
        let diff_ids: Vec<String> = (0..MAX_LAYERS).map(|i| digest(i as u8)).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap_or_default();
        let (env, layers) = parse_config(&config, &manifest, "img").expect("config");
        assert_eq!((env.len(), layers.len()), (1, MAX_LAYERS));
        let short = serde_json::to_vec(&serde_json::json!({
            "rootfs": {"type": "layers", "diff_ids": [digest(0)]},
        }))
        .unwrap_or_default();
        let err = parse_config(&short, &manifest, "img").expect_err("diff_ids");
        assert!(
            err.to_string().contains("128 layers but 1 diff_ids"),
            "{err}"
        );
        let oversized = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            parse_manifest(&oversized, "img", false),
            Err(ImageError::TooLarge { .. })
        ));
    }

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

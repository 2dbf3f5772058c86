//! Image config + manifest from a job's `publish.image` section.
//!
//! Pure and synchronous: the base image (if any) is fetched and verified by
//! [`super::Registry::fetch_base`] first, so this module never touches the
//! network and its output is a function of its inputs alone.

use super::layer::{ResolvedFile, build_layer, plan_entries};
use super::{
    ANNOTATION_CREATED, ANNOTATION_REVISION, ANNOTATION_SOURCE, Descriptor, ImageManifest,
    MEDIA_TYPE_CONFIG, MEDIA_TYPE_DOCKER_LAYER_GZIP, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_MANIFEST,
    OciError, epoch_rfc3339, sha256_digest,
};
use airlock_pipeline::spec::model::{BaseImage, PublishImage};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Standard annotation: digest of the base image's manifest.
const ANNOTATION_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
/// Standard annotation: name of the base image.
const ANNOTATION_BASE_NAME: &str = "org.opencontainers.image.base.name";
/// `created_by` of our history entry; a constant so history never varies.
const HISTORY_CREATED_BY: &str = "airlock trusted-builder: publish layer";

/// Inputs of one image assembly.
pub struct ImageInputs<'a> {
    /// The job's `publish.image` section.
    pub image: &'a PublishImage,
    /// Maps a declared output path to its local file (None: not produced).
    pub resolve: &'a (dyn Fn(&str) -> Option<ResolvedFile> + Sync),
    /// Commit time; every timestamp in the image is this.
    pub source_date_epoch: i64,
    /// `org.opencontainers.image.source` (repository URL).
    pub source: &'a str,
    /// `org.opencontainers.image.revision` (commit id).
    pub revision: &'a str,
}

/// A base image fetched by digest, every blob already verified.
#[derive(Debug, Clone)]
pub struct BaseParts {
    /// Repository it came from.
    pub repository: String,
    /// Digest of the manifest it was pinned by.
    pub digest: String,
    /// Its layers (media types normalized to OCI), bottom first, with bytes.
    pub layers: Vec<Blob>,
    /// Its image config.
    pub config: Value,
}

/// A blob and its descriptor.
#[derive(Debug, Clone)]
pub struct Blob {
    /// How the manifest refers to it.
    pub descriptor: Descriptor,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// An assembled image or artifact, ready to push.
#[derive(Debug, Clone)]
pub struct AssembledImage {
    /// Manifest bytes exactly as pushed.
    pub manifest: Vec<u8>,
    /// `sha256:` of [`Self::manifest`]: the image's identity.
    pub manifest_digest: String,
    /// Config and layer blobs to push before the manifest.
    pub blobs: Vec<Blob>,
}

impl AssembledImage {
    /// Serializes `manifest` and bundles it with its blobs.
    pub fn new(manifest: &ImageManifest, blobs: Vec<Blob>) -> Result<Self, OciError> {
        let bytes = serde_json::to_vec(manifest).map_err(|e| OciError::Malformed {
            what: "manifest",
            reason: e.to_string(),
        })?;
        Ok(Self {
            manifest_digest: sha256_digest(&bytes),
            manifest: bytes,
            blobs,
        })
    }

    /// Parses [`Self::manifest`] back (for checks and tests).
    pub fn parsed_manifest(&self) -> Result<ImageManifest, OciError> {
        serde_json::from_slice(&self.manifest).map_err(|e| OciError::Malformed {
            what: "manifest",
            reason: e.to_string(),
        })
    }
}

/// Assembles the image. `base` must be the fetched base when the publish
/// section pins one, and None for `scratch`.
pub fn assemble(
    inputs: &ImageInputs<'_>,
    base: Option<&BaseParts>,
) -> Result<AssembledImage, OciError> {
    let image = inputs.image;
    match (&image.base, base) {
        (BaseImage::Scratch, None) => {}
        (BaseImage::Pinned { repository, digest }, Some(b))
            if *repository == b.repository && *digest == b.digest => {}
        _ => {
            return Err(OciError::Malformed {
                what: "base image",
                reason: "the fetched base does not match the publish section".into(),
            });
        }
    }
    let created = epoch_rfc3339(inputs.source_date_epoch)?;

    let mut files = Vec::with_capacity(image.files.len());
    for (output, image_path) in &image.files {
        let file =
            (inputs.resolve)(output).ok_or_else(|| OciError::MissingOutput(output.clone()))?;
        files.push((image_path.as_str(), file));
    }
    let layer = build_layer(&plan_entries(files)?, inputs.source_date_epoch)?;

    let config = build_config(inputs, base.map(|b| &b.config), &layer.diff_id, &created)?;
    let config_bytes = serde_json::to_vec(&config).map_err(|e| OciError::Malformed {
        what: "config",
        reason: e.to_string(),
    })?;

    let mut blobs = Vec::new();
    if let Some(b) = base {
        blobs.extend(b.layers.iter().cloned());
    }
    // The layer's digest was computed while it was compressed: no second pass.
    blobs.push(Blob {
        descriptor: Descriptor {
            media_type: MEDIA_TYPE_LAYER_GZIP.to_owned(),
            digest: layer.digest,
            size: layer.compressed.len() as u64,
            annotations: None,
        },
        data: layer.compressed,
    });
    let layers = blobs.iter().map(|b| b.descriptor.clone()).collect();
    let config_blob = Blob {
        descriptor: Descriptor::of(MEDIA_TYPE_CONFIG, &config_bytes),
        data: config_bytes,
    };

    let mut annotations = BTreeMap::from([
        (ANNOTATION_CREATED.to_owned(), created),
        (ANNOTATION_SOURCE.to_owned(), inputs.source.to_owned()),
        (ANNOTATION_REVISION.to_owned(), inputs.revision.to_owned()),
    ]);
    if let Some(b) = base {
        annotations.insert(ANNOTATION_BASE_NAME.to_owned(), b.repository.clone());
        annotations.insert(ANNOTATION_BASE_DIGEST.to_owned(), b.digest.clone());
    }
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_MANIFEST.to_owned()),
        artifact_type: None,
        config: config_blob.descriptor.clone(),
        layers,
        annotations: Some(annotations),
    };
    blobs.push(config_blob);
    AssembledImage::new(&manifest, blobs)
}

/// Normalizes a base layer's media type: Docker's gzip layer is the same
/// bytes as OCI's, and an OCI manifest must name OCI types.
pub fn normalize_layer_media_type(media_type: &str) -> Result<&'static str, OciError> {
    match media_type {
        MEDIA_TYPE_LAYER_GZIP | MEDIA_TYPE_DOCKER_LAYER_GZIP => Ok(MEDIA_TYPE_LAYER_GZIP),
        "application/vnd.oci.image.layer.v1.tar" => Ok("application/vnd.oci.image.layer.v1.tar"),
        "application/vnd.oci.image.layer.v1.tar+zstd" => {
            Ok("application/vnd.oci.image.layer.v1.tar+zstd")
        }
        // Foreign / non-distributable layers live outside the registry and
        // could change behind the pinned digest's back.
        other => Err(OciError::Malformed {
            what: "base layer",
            reason: format!("unsupported media type {other}"),
        }),
    }
}

/// The base's config (or a scratch one) with our layer, entrypoint, env and
/// labels applied. Base fields are kept unless the publish section overrides them.
fn build_config(
    inputs: &ImageInputs<'_>,
    base: Option<&Value>,
    diff_id: &str,
    created: &str,
) -> Result<Value, OciError> {
    let malformed = |reason: &str| OciError::Malformed {
        what: "base config",
        reason: reason.to_owned(),
    };
    let mut root = match base {
        Some(v) => v.clone(),
        None => json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        }),
    };
    let obj = root
        .as_object_mut()
        .ok_or_else(|| malformed("not an object"))?;
    obj.insert("created".into(), Value::String(created.to_owned()));

    let rootfs = obj
        .get_mut("rootfs")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| malformed("no rootfs"))?;
    let diff_ids = rootfs
        .get_mut("diff_ids")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| malformed("no diff_ids"))?;
    diff_ids.push(Value::String(diff_id.to_owned()));

    // A history entry per layer keeps tools that pair history with layers
    // happy; its timestamp is the epoch, so it never varies. A base without
    // history stays without (a lone entry would mispair).
    if let Some(history) = obj.get_mut("history").and_then(Value::as_array_mut) {
        history.push(json!({"created": created, "created_by": HISTORY_CREATED_BY}));
    }

    if !obj.get("config").is_some_and(Value::is_object) {
        obj.insert("config".into(), Value::Object(Map::new()));
    }
    let cfg = obj
        .get_mut("config")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| malformed("config"))?;
    let image = inputs.image;
    if !image.entrypoint.is_empty() {
        cfg.insert("Entrypoint".into(), json!(image.entrypoint));
        // As with a Dockerfile ENTRYPOINT: the base's Cmd was arguments for
        // the base's entrypoint, not ours.
        cfg.remove("Cmd");
    }

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    if let Some(base_env) = cfg.get("Env").and_then(Value::as_array) {
        for kv in base_env.iter().filter_map(Value::as_str) {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            env.insert(k.to_owned(), v.to_owned());
        }
    }
    env.extend(image.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    if !env.is_empty() {
        let list: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        cfg.insert("Env".into(), json!(list));
    }

    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    if let Some(base_labels) = cfg.get("Labels").and_then(Value::as_object) {
        for (k, v) in base_labels {
            if let Some(v) = v.as_str() {
                labels.insert(k.clone(), v.to_owned());
            }
        }
    }
    labels.extend(image.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    // Builder-established facts win over anything the pipeline file says.
    labels.insert(ANNOTATION_SOURCE.to_owned(), inputs.source.to_owned());
    labels.insert(ANNOTATION_REVISION.to_owned(), inputs.revision.to_owned());
    cfg.insert("Labels".into(), json!(labels));
    Ok(root)
}

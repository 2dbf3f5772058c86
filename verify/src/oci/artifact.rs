//! Declared artifacts pushed as one OCI artifact.
//!
//! The registry we must support (distribution 2.8) has no artifact manifest
//! type, so this is an image manifest with `artifactType`, the empty config
//! (`{}`), and one raw layer per file titled with its file name, the layout
//! ORAS and the OCI 1.1 guidance use.

use super::image::{AssembledImage, Blob};
use super::layer::ResolvedFile;
use super::{
    ANNOTATION_CREATED, ANNOTATION_REVISION, ANNOTATION_SOURCE, ANNOTATION_TITLE, Descriptor,
    ImageManifest, MEDIA_TYPE_EMPTY, MEDIA_TYPE_MANIFEST, OciError, epoch_rfc3339,
};
use std::collections::BTreeMap;

/// `artifactType` of Airlock's artifact manifests.
pub const ARTIFACT_TYPE: &str = "application/vnd.airlock.artifact.v1";
/// Media type of each file layer: the bytes are the file itself, no tar.
pub const MEDIA_TYPE_FILE: &str = "application/octet-stream";
/// The empty config blob's content, fixed by the OCI spec.
pub const EMPTY_CONFIG: &[u8] = b"{}";

/// One file of an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactFile {
    /// Declared output path (as in the pipeline file).
    pub output: String,
    /// Where its bytes are on the builder.
    pub file: ResolvedFile,
}

/// Resolves every declared artifact output, refusing missing ones.
pub fn resolve_artifacts(
    outputs: &[String],
    resolve: &dyn Fn(&str) -> Option<ResolvedFile>,
) -> Result<Vec<ArtifactFile>, OciError> {
    outputs
        .iter()
        .map(|o| {
            let file = resolve(o).ok_or_else(|| OciError::MissingOutput(o.clone()))?;
            Ok(ArtifactFile {
                output: o.clone(),
                file,
            })
        })
        .collect()
}

/// Builds the artifact manifest: layers sorted by title (the file name,
/// i.e. the output path's last component; two outputs with one name are
/// refused since a puller could not tell them apart).
pub fn assemble_artifact(
    files: &[ArtifactFile],
    artifact_type: &str,
    source_date_epoch: i64,
    source: &str,
    revision: &str,
) -> Result<AssembledImage, OciError> {
    let created = epoch_rfc3339(source_date_epoch)?;
    let mut by_title: BTreeMap<String, &ArtifactFile> = BTreeMap::new();
    for f in files {
        let title = f.output.rsplit('/').next().unwrap_or_default();
        if title.is_empty() || title == "." || title == ".." {
            return Err(OciError::InvalidImagePath {
                path: f.output.clone(),
                reason: "artifact needs a file name",
            });
        }
        if by_title.insert(title.to_owned(), f).is_some() {
            return Err(OciError::InvalidImagePath {
                path: f.output.clone(),
                reason: "two artifacts share a file name",
            });
        }
    }
    if by_title.is_empty() {
        return Err(OciError::Malformed {
            what: "artifact",
            reason: "no files".into(),
        });
    }

    let mut blobs = Vec::with_capacity(by_title.len() + 1);
    for (title, f) in by_title {
        let data = std::fs::read(&f.file.path).map_err(|source| OciError::Io {
            path: f.file.path.display().to_string(),
            source,
        })?;
        let mut descriptor = Descriptor::of(MEDIA_TYPE_FILE, &data);
        descriptor.annotations = Some(BTreeMap::from([(ANNOTATION_TITLE.to_owned(), title)]));
        blobs.push(Blob { descriptor, data });
    }
    let layers = blobs.iter().map(|b| b.descriptor.clone()).collect();
    let (config, manifest) = artifact_manifest(
        artifact_type,
        layers,
        BTreeMap::from([
            (ANNOTATION_CREATED.to_owned(), created),
            (ANNOTATION_SOURCE.to_owned(), source.to_owned()),
            (ANNOTATION_REVISION.to_owned(), revision.to_owned()),
        ]),
    );
    blobs.push(config);
    AssembledImage::new(&manifest, blobs)
}

/// An OCI artifact manifest (an image manifest with `artifactType` and the empty `{}` config,
/// as registries without the artifact media type need) and its config blob. Used for published
/// artifacts and for the `.sig` / `.att` attachments alike.
pub fn artifact_manifest(
    artifact_type: &str,
    layers: Vec<Descriptor>,
    annotations: BTreeMap<String, String>,
) -> (Blob, ImageManifest) {
    let config = Blob {
        descriptor: Descriptor::of(MEDIA_TYPE_EMPTY, EMPTY_CONFIG),
        data: EMPTY_CONFIG.to_vec(),
    };
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_MANIFEST.to_owned()),
        artifact_type: Some(artifact_type.to_owned()),
        config: config.descriptor.clone(),
        layers,
        annotations: (!annotations.is_empty()).then_some(annotations),
    };
    (config, manifest)
}

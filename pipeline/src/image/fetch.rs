//! Fetching an image by digest: manifest (through an index to linux/amd64), config and layer
//! blobs, each size-limited and checked against the digest that names it, so everything hangs
//! off the pin the job wrote. Verifying is here; unpacking is [`super::unpack`].

use std::path::Path;

use oci_client::Reference;

use super::{ImageError, ImageRef};

use super::manifest::{ACCEPTED_MANIFESTS, Manifest, parse_config, parse_manifest};
pub use super::manifest::{
    Compression, LayerBlob, MAX_MANIFEST_BYTES, ResolvedImage, sha256_digest,
};

const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// An anonymous registry client: HTTPS, except plain HTTP for the registries listed as insecure
/// (so a typo'd name fails the TLS handshake instead of silently downgrading). Manifests and
/// blobs alike are read through [`super::capped::ManifestClient`]: capped while read, and never
/// from (or redirected or challenged to) a private address the settings do not name.
pub struct RegistryClient {
    manifests: super::capped::ManifestClient,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient").finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client using plain HTTP exactly for `insecure` (`host[:port]`); only those and the
    /// `private` registries may be on private or local addresses.
    pub fn new(insecure: &[String], private: &[String]) -> Result<Self, ImageError> {
        // A registry that accepts and then stalls must not hold a runner: these bound each
        // connect and each read; the job's timeout bounds the whole pull.
        let manifests = super::capped::ManifestClient::with_private(
            insecure,
            private,
            CONNECT_TIMEOUT,
            READ_TIMEOUT,
        )?;
        Ok(RegistryClient { manifests })
    }

    fn reference(image: &ImageRef, digest: &str) -> Reference {
        Reference::with_digest(
            image.registry().to_string(),
            image.path(),
            digest.to_string(),
        )
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
        let shown = image.to_string();
        let mut digest = image.digest().to_string();
        let mut manifest = parse_manifest(&self.manifest(image, &digest).await?, &shown, false)?;
        if let Manifest::Index { linux_amd64 } = manifest {
            digest = linux_amd64;
            manifest = parse_manifest(&self.manifest(image, &digest).await?, &shown, true)?;
        }
        let Manifest::Image(manifest) = manifest else {
            return Err(ImageError::Malformed {
                what: "manifest".into(),
                reason: "an index inside an index".into(),
            });
        };
        let mut config_bytes = Vec::new();
        self.blob_into(
            image,
            &manifest.config_digest,
            manifest.config_size,
            &mut config_bytes,
        )
        .await?;
        let (env, layers) = parse_config(&config_bytes, &manifest, &shown)?;
        Ok(ResolvedImage {
            manifest_digest: digest,
            env,
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
        // The manifest declared the size: more is a hostile or broken registry (cut off there).
        let (total, actual) = self.manifests.blob(&reference, digest, size, out).await?;
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

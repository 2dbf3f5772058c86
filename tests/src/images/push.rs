//! Packing a root filesystem into one deterministic layer and pushing it as an OCI image.

use anyhow::{Context, Result, bail, ensure};
use flate2::{Compression, GzBuilder};
use futures_util::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::config::{Architecture, Config, ConfigFile, Os, Rootfs};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciDescriptor,
    OciImageManifest,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::{self, BufWriter, Seek as _, Write};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use super::{GZIP_LEVEL, GZIP_OS_UNKNOWN, IMAGE_PATH};

/// An image pushed by [`push_rootfs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedImage {
    /// `REGISTRY/REPOSITORY@sha256:HEX`: the pinned reference.
    pub reference: String,
    /// `REGISTRY/REPOSITORY`.
    pub repository: String,
    /// `sha256:HEX` of the manifest bytes the registry stores.
    pub digest: String,
    /// `sha256:HEX` of the (only) layer blob.
    pub layer_digest: String,
    /// Size of the gzip-compressed layer.
    pub layer_bytes: u64,
    /// Size of the uncompressed layer tar.
    pub uncompressed_bytes: u64,
}

/// A writer that hashes and counts everything passing through to `inner`.
struct Digesting<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Digesting<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, `sha256:HEX` and the byte count.
    fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{:x}", self.hasher.finalize());
        (self.inner, digest, self.bytes)
    }
}

impl<W: Write> Write for Digesting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The compressed layer in an unnamed temp file, rewound.
struct Layer {
    file: fs::File,
    /// `sha256:` of the compressed bytes.
    digest: String,
    /// `sha256:` of the tar.
    diff_id: String,
    compressed: u64,
    uncompressed: u64,
}

/// Tars `root` deterministically (sorted paths, mtime 0, owner 0:0 without
/// names, modes kept, no `./` prefix, directories as `dir/`) and gzips it to
/// a temp file, hashing both on the way.
fn build_layer(root: &Path) -> Result<Layer> {
    let mut entries = Vec::new();
    for entry in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let entry = entry?;
        let rel = entry
            .path()
            .strip_prefix(root)?
            .to_str()
            .with_context(|| format!("{} is not UTF-8", entry.path().display()))?
            .to_owned();
        entries.push((rel, entry.into_path()));
    }
    entries.sort();

    let file = tempfile::tempfile().context("layer temp file")?;
    let gzip = GzBuilder::new().operating_system(GZIP_OS_UNKNOWN).write(
        Digesting::new(BufWriter::new(file)),
        Compression::new(GZIP_LEVEL),
    );
    let mut tar = tar::Builder::new(Digesting::new(gzip));
    for (rel, path) in &entries {
        let meta =
            fs::symlink_metadata(path).with_context(|| format!("stat {}", path.display()))?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mode(meta.mode() & 0o7777);
        header.set_size(0);
        let file_type = meta.file_type();
        if file_type.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            tar.append_data(&mut header, format!("{rel}/"), io::empty())?;
        } else if file_type.is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            let target = fs::read_link(path)?;
            tar.append_link(&mut header, rel, target)?;
        } else if file_type.is_file() {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.len());
            let data = fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
            tar.append_data(&mut header, rel, data)?;
        } else {
            bail!(
                "{}: only files, directories and symlinks go into a layer",
                path.display()
            );
        }
    }
    let (gzip, diff_id, uncompressed) = tar.into_inner()?.finish();
    let (buffered, digest, compressed) = gzip.finish()?.finish();
    let mut file = buffered.into_inner().map_err(|e| e.into_error())?;
    file.rewind()?;
    Ok(Layer {
        file,
        digest,
        diff_id,
        compressed,
        uncompressed,
    })
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The image config: linux/amd64, `PATH`, one layer, no timestamps.
fn image_config(diff_id: &str) -> Result<Vec<u8>> {
    let config = ConfigFile {
        architecture: Architecture::Amd64,
        os: Os::Linux,
        config: Some(Config {
            env: Some(vec![IMAGE_PATH.to_owned()]),
            ..Config::default()
        }),
        rootfs: Rootfs {
            r#type: "layers".to_owned(),
            diff_ids: vec![diff_id.to_owned()],
        },
        ..ConfigFile::default()
    };
    Ok(serde_json::to_vec(&config)?)
}

/// Packs `rootfs` into a deterministic single-layer OCI image (gzip layer,
/// linux/amd64 config without timestamps, OCI image manifest), pushes it to
/// `registry` (`host:port`, plain HTTP, anonymous) as `repository:tag`, and
/// checks that the registry serves exactly those manifest bytes. The same
/// tree always gives the same digest.
pub async fn push_rootfs(
    registry: &str,
    repository: &str,
    tag: &str,
    rootfs: &Path,
) -> Result<PushedImage> {
    let root = rootfs.to_path_buf();
    let layer = tokio::task::spawn_blocking(move || build_layer(&root))
        .await
        .context("layer task")??;

    let config = image_config(&layer.diff_id)?;
    let config_digest = sha256_digest(&config);
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_owned()),
        config: OciDescriptor {
            media_type: IMAGE_CONFIG_MEDIA_TYPE.to_owned(),
            digest: config_digest.clone(),
            size: i64::try_from(config.len())?,
            ..OciDescriptor::default()
        },
        layers: vec![OciDescriptor {
            media_type: IMAGE_LAYER_GZIP_MEDIA_TYPE.to_owned(),
            digest: layer.digest.clone(),
            size: i64::try_from(layer.compressed)?,
            ..OciDescriptor::default()
        }],
        ..OciImageManifest::default()
    };
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let digest = sha256_digest(&manifest_bytes);

    // Harmless when already installed; reqwest needs one for its TLS setup.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![registry.to_owned()]),
        // One PUT per blob, streamed from the temp file.
        use_monolithic_push: true,
        ..ClientConfig::default()
    });
    let repo = format!("{registry}/{repository}");
    let tagged: Reference = format!("{repo}:{tag}")
        .parse()
        .with_context(|| format!("bad image reference {repo}:{tag}"))?;
    let pinned: Reference = format!("{repo}@{digest}")
        .parse()
        .with_context(|| format!("bad image reference {repo}@{digest}"))?;
    let auth = RegistryAuth::Anonymous;
    client.store_auth_if_needed(registry, &auth).await;

    if !client.blob_exists(&tagged, &layer.digest).await? {
        let file = tokio::fs::File::from_std(layer.file);
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
            .map(|chunk| chunk.map_err(OciDistributionError::from));
        client
            .push_blob_stream(&tagged, stream, &layer.digest, Some(layer.compressed))
            .await
            .with_context(|| format!("push layer {} to {repo}", layer.digest))?;
    }
    if !client.blob_exists(&tagged, &config_digest).await? {
        client
            .push_blob(&tagged, config, &config_digest)
            .await
            .with_context(|| format!("push config {config_digest} to {repo}"))?;
    }
    let content_type = reqwest::header::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE);
    client
        .push_manifest_raw(&tagged, manifest_bytes.clone(), content_type)
        .await
        .with_context(|| format!("push manifest to {repo}:{tag}"))?;

    // Read back: the tag serves exactly these bytes, the digest resolves.
    let (stored, _) = client
        .pull_manifest_raw(&tagged, &auth, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .with_context(|| format!("fetch manifest {repo}:{tag}"))?;
    ensure!(
        stored.as_ref() == manifest_bytes.as_slice(),
        "{repo}:{tag} serves a manifest other than the one pushed ({} instead of {digest})",
        sha256_digest(&stored)
    );
    let served = client
        .fetch_manifest_digest(&pinned, &auth)
        .await
        .with_context(|| format!("HEAD {repo}@{digest}"))?;
    ensure!(
        served == digest,
        "{repo}@{digest}: registry reports digest {served}"
    );

    Ok(PushedImage {
        reference: format!("{repo}@{digest}"),
        repository: repo,
        digest,
        layer_digest: layer.digest.clone(),
        layer_bytes: layer.compressed,
        uncompressed_bytes: layer.uncompressed,
    })
}

//! Test support: a real Debian `docker-registry` (distribution 2.8) on a free
//! 127.0.0.1 port with its storage in a temp dir, killed on Drop; and the
//! fixtures (outputs, publish sections, untar) both OCI test files share.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use airlock_pipeline::spec::model::{BaseImage, PublishImage};
use flate2::read::GzDecoder;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use trusted_builder::oci::{ImageInputs, ImageManifest, Registry, RegistryConfig, ResolvedFile};

pub use airlock_tests::registry::TestRegistry;

pub const EPOCH: i64 = 1_700_000_000;
pub const SOURCE: &str = "https://git.example/airlock/demo";
pub const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";

pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Outputs on the builder's disk: an executable script and a text file.
pub fn outputs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("bin")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("share")).expect("mkdir");
    std::fs::write(dir.path().join("bin/hello"), "#!/bin/sh\necho hello\n").expect("write");
    std::fs::write(dir.path().join("share/readme.txt"), "read me\n").expect("write");
    dir
}

pub fn publish(base: BaseImage, files: &[(&str, &str)]) -> PublishImage {
    PublishImage {
        base,
        files: files
            .iter()
            .map(|(o, i)| (o.to_string(), i.to_string()))
            .collect(),
        entrypoint: vec!["/usr/local/bin/hello".into()],
        env: BTreeMap::from([("B".into(), "2".into()), ("A".into(), "1".into())]),
        labels: BTreeMap::from([("com.example.team".into(), "build".into())]),
    }
}

pub fn scratch_image() -> PublishImage {
    publish(
        BaseImage::Scratch,
        &[
            ("bin/hello", "/usr/local/bin/hello"),
            ("share/readme.txt", "/usr/share/doc/hello/README"),
        ],
    )
}

pub fn resolver(root: &Path) -> impl Fn(&str) -> Option<ResolvedFile> + Sync + use<> {
    let root = root.to_path_buf();
    move |output: &str| {
        let path = root.join(output);
        path.exists().then(|| ResolvedFile {
            executable: output.starts_with("bin/"),
            path,
        })
    }
}

pub fn inputs<'a>(
    image: &'a PublishImage,
    resolve: &'a (dyn Fn(&str) -> Option<ResolvedFile> + Sync),
    epoch: i64,
) -> ImageInputs<'a> {
    ImageInputs {
        image,
        resolve,
        source_date_epoch: epoch,
        source: SOURCE,
        revision: REVISION,
    }
}

pub fn insecure(reg: &TestRegistry) -> Registry {
    Registry::new(&RegistryConfig {
        insecure: vec![reg.host.clone()],
        ..Default::default()
    })
    .expect("client")
}

/// (path, type, mode, uid, gid, mtime, uname, gname, content)
pub type Entry = (String, char, u32, u64, u64, u64, String, String, Vec<u8>);

pub fn untar(gz: &[u8]) -> Vec<Entry> {
    let mut archive = tar::Archive::new(GzDecoder::new(gz));
    let mut out = Vec::new();
    for e in archive.entries().expect("entries") {
        let mut e = e.expect("entry");
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read");
        let kind = if h.entry_type().is_dir() { 'd' } else { 'f' };
        let name = |v: Option<&[u8]>| String::from_utf8_lossy(v.unwrap_or_default()).into_owned();
        out.push((
            e.path().expect("path").display().to_string(),
            kind,
            h.mode().expect("mode"),
            h.uid().expect("uid"),
            h.gid().expect("gid"),
            h.mtime().expect("mtime"),
            name(h.username_bytes()),
            name(h.groupname_bytes()),
            data,
        ));
    }
    out
}

pub async fn pull(
    registry: &Registry,
    repo: &str,
    digest: &str,
) -> (ImageManifest, Value, Vec<Vec<u8>>) {
    let manifest: ImageManifest = serde_json::from_slice(
        &registry
            .fetch_manifest(repo, digest)
            .await
            .expect("manifest"),
    )
    .expect("json");
    let config = serde_json::from_slice(
        &registry
            .fetch_blob(repo, &manifest.config.digest, manifest.config.size)
            .await
            .expect("config"),
    )
    .expect("json");
    let mut layers = Vec::new();
    for l in &manifest.layers {
        layers.push(
            registry
                .fetch_blob(repo, &l.digest, l.size)
                .await
                .expect("layer"),
        );
    }
    (manifest, config, layers)
}

//! `[images]`: where jobs' images come from and whether a job may run without one.

use std::path::PathBuf;

use airlock_pipeline::executor::HostMode;
use airlock_pipeline::image::{ImageSettings, cache::DEFAULT_IMAGE_CACHE};
use serde::Deserialize;

use super::{ByteSize, HumanDuration};

/// `[images]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesFile {
    /// Where unpacked images are kept; the sandbox user must be able to traverse it.
    /// Default `/var/tmp/airlock/images`.
    #[serde(default = "default_cache_dir")]
    pub cache_dir: PathBuf,
    /// Registries (`HOST:PORT`) reached over plain HTTP; every other one over HTTPS.
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Registries on private or local addresses jobs may name (HTTPS); any other a job names
    /// must resolve to public addresses only.
    #[serde(default)]
    pub private_registries: Vec<String>,
    /// Pull every image from this registry instead of the one the job names (same path, same
    /// digest), e.g. a pull-through cache.
    #[serde(default)]
    pub mirror: Option<String>,
    /// Whether a job that names no image may run on this host's system directories (read-only).
    /// Default true; its log says "host mode".
    #[serde(default = "default_host_mode")]
    pub host_mode: bool,
    /// Largest unpacked image. Default 4Gi.
    #[serde(default = "default_max_unpacked_size")]
    pub max_unpacked_size: ByteSize,
    /// Unpacked images the cache keeps; the least recently used not in use go first. Default 32Gi.
    #[serde(default = "default_max_cache_size")]
    pub max_cache_size: ByteSize,
    /// Images no job used for this long are removed. Default 7d.
    #[serde(default = "default_max_unused")]
    pub max_unused: HumanDuration,
}

fn default_cache_dir() -> PathBuf {
    PathBuf::from(DEFAULT_IMAGE_CACHE)
}
fn default_host_mode() -> bool {
    true
}
fn default_max_unpacked_size() -> ByteSize {
    ByteSize(ImageSettings::default().max_unpacked_bytes)
}
fn default_max_cache_size() -> ByteSize {
    ByteSize(ImageSettings::default().max_cache_bytes)
}
fn default_max_unused() -> HumanDuration {
    HumanDuration(ImageSettings::default().max_unused)
}

impl Default for ImagesFile {
    fn default() -> Self {
        ImagesFile {
            cache_dir: default_cache_dir(),
            insecure: Vec::new(),
            private_registries: Vec::new(),
            mirror: None,
            host_mode: default_host_mode(),
            max_unpacked_size: default_max_unpacked_size(),
            max_cache_size: default_max_cache_size(),
            max_unused: default_max_unused(),
        }
    }
}

impl ImagesFile {
    /// The executor's image settings.
    pub fn settings(&self) -> ImageSettings {
        ImageSettings {
            cache_dir: self.cache_dir.clone(),
            mirror: self.mirror.clone(),
            insecure: self.insecure.clone(),
            private_registries: self.private_registries.clone(),
            max_unpacked_bytes: self.max_unpacked_size.0,
            max_cache_bytes: self.max_cache_size.0,
            max_unused: self.max_unused.0,
            ..ImageSettings::default()
        }
    }

    /// Host mode as the executor takes it.
    pub fn host_mode(&self) -> HostMode {
        if self.host_mode {
            HostMode::Allow
        } else {
            HostMode::Deny
        }
    }
}

//! Unpacked root filesystems, kept by the digest a job names.
//!
//! `<cache_dir>/sha256-<hex>/` holds `rootfs/` and `image.json` (written last). An image is
//! pulled and unpacked into a private temporary directory and renamed into place whole, so a
//! crash leaves either nothing or a complete entry; a digest names the same bytes whichever
//! registry served them, so entries are shared by every job, project and registry. Entries are
//! only read by jobs (bound read-only), never changed.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::fetch::RegistryClient;
use super::retention::{self, CacheLimits, EntryPin};
use super::space::{Reclaim, SpaceLedger, mib};
use super::unpack::{UnpackBudget, apply_layer};
use super::{ImageError, ImageRef};
use crate::log::LogSink;
use crate::tree::{EntryKind, TreeRoot};

/// Where the sandbox mounts things inside an image's root: they must be directories there,
/// because the root is bound read-only and bubblewrap cannot create them.
const MOUNT_POINTS: &[&str] = &["proc", "dev", "tmp", "workspace"];

/// How images are fetched and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSettings {
    /// Where unpacked images are kept. The sandbox user must be able to traverse it.
    pub cache_dir: PathBuf,
    /// Fetch every image from this registry instead of the one it names (same repository
    /// path, same digest). The trusted builder sets its own registry here, so it never fetches
    /// from anywhere the CI cluster chose.
    pub mirror: Option<String>,
    /// Pull from nowhere but `mirror`: without one, an image not already cached is refused.
    /// The trusted builder sets this, so the registry a job names is never contacted.
    pub require_mirror: bool,
    /// Registries (`host[:port]`) reached over plain HTTP; all others over HTTPS.
    pub insecure: Vec<String>,
    /// Registries on private or local addresses that jobs may name (over HTTPS). Any other
    /// registry a job names must resolve to public addresses only: the runner pulling it sits
    /// on the host's network. The mirror and the `insecure` registries are allowed as well.
    pub private_registries: Vec<String>,
    /// Largest unpacked size of one image (regular files, all layers).
    pub max_unpacked_bytes: u64,
    /// Most entries in one image (all layers).
    pub max_entries: u64,
    /// Free space the host keeps on the cache's filesystem: every write of a pull (blob or
    /// unpacked entry) that would go below it stops the pull.
    pub reserve_bytes: u64,
    /// Total unpacked bytes the cache keeps; least recently used entries not in use go first.
    pub max_cache_bytes: u64,
    /// Entries not used for this long are removed.
    pub max_unused: Duration,
}

/// The default image cache: under /var/tmp, which the sandbox user can traverse.
pub const DEFAULT_IMAGE_CACHE: &str = "/var/tmp/airlock/images";

/// The trusted builder's default image cache. Never the CI cluster's: a cache entry is trusted
/// by its name, so a plane may only run on entries it unpacked itself (the two planes are
/// different machines in a deployment; on one test host they must still not share).
pub const DEFAULT_BUILDER_IMAGE_CACHE: &str = "/var/tmp/airlock/builder-images";

/// Largest unpacked image by default: 4 GiB (toolchain images are one to two).
pub const DEFAULT_MAX_UNPACKED_BYTES: u64 = 4 << 30;

/// What the cache keeps by default: 32 GiB of unpacked images.
pub const DEFAULT_MAX_CACHE_BYTES: u64 = 32 << 30;

/// Entries unused for a week are removed by default.
pub const DEFAULT_MAX_UNUSED: Duration = Duration::from_secs(7 * 86_400);

impl Default for ImageSettings {
    fn default() -> Self {
        ImageSettings {
            cache_dir: PathBuf::from(DEFAULT_IMAGE_CACHE),
            mirror: None,
            require_mirror: false,
            insecure: Vec::new(),
            private_registries: Vec::new(),
            max_unpacked_bytes: DEFAULT_MAX_UNPACKED_BYTES,
            max_entries: 1_000_000,
            reserve_bytes: 0,
            max_cache_bytes: DEFAULT_MAX_CACHE_BYTES,
            max_unused: DEFAULT_MAX_UNUSED,
        }
    }
}

/// An image ready to be a job's root; its cache entry is not pruned while this (or a clone)
/// lives.
#[derive(Debug, Clone)]
pub struct Rootfs {
    /// The image as the job named it.
    pub image: ImageRef,
    /// The unpacked root filesystem.
    pub path: PathBuf,
    /// The image config's environment (`PATH` and the like), in order.
    pub env: Vec<(String, String)>,
    /// The linux/amd64 manifest the layers came from.
    pub manifest_digest: String,
    _pin: Arc<EntryPin>,
}

/// What `image.json` records about an unpacked entry.
#[derive(Debug, Serialize, Deserialize)]
struct CachedImage {
    pulled_from: String,
    manifest_digest: String,
    env: Vec<String>,
    layers: Vec<String>,
    unpacked_bytes: u64,
}

fn cache_limits(settings: &ImageSettings) -> CacheLimits {
    CacheLimits {
        max_bytes: settings.max_cache_bytes,
        max_unused: settings.max_unused,
    }
}

/// What an entry's `image.json` says it unpacked to.
fn unpacked_size(json: &[u8]) -> Option<u64> {
    serde_json::from_slice::<CachedImage>(json)
        .ok()
        .map(|m| m.unpacked_bytes)
}

/// (registry pulled from, digest).
type PullKey = (String, String);

/// The cache of unpacked images.
#[derive(Debug)]
pub struct ImageCache {
    settings: ImageSettings,
    client: RegistryClient,
    /// One pull per (registry, digest) at a time within this process. Keyed by the registry
    /// too: a job naming a registry that stalls must not hold up another job pulling the same
    /// digest from a registry that answers (the stalled pull ends with its own job's timeout).
    pulls: Mutex<HashMap<PullKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Every write a pull makes claims its bytes here first.
    space: Arc<SpaceLedger>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |e| ImageError::io(path, e)
}

impl ImageCache {
    /// Opens (creating, mode 0755) the cache directory and removes what interrupted pulls of
    /// processes no longer running left behind.
    pub fn new(settings: ImageSettings) -> Result<Self, ImageError> {
        use std::os::unix::fs::DirBuilderExt as _;
        for registry in settings
            .mirror
            .iter()
            .chain(&settings.insecure)
            .chain(&settings.private_registries)
        {
            check_registry_name(registry)?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&settings.cache_dir)
            .map_err(io_err(&settings.cache_dir))?;
        check_trusted_dir(&settings.cache_dir)?;
        if let Ok(entries) = std::fs::read_dir(&settings.cache_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let pid = name
                    .strip_prefix(".tmp-")
                    .and_then(|rest| rest.split('-').nth(1))
                    .and_then(|pid| pid.parse::<u32>().ok());
                if let Some(pid) = pid
                    && !Path::new(&format!("/proc/{pid}")).exists()
                {
                    // remove_dir_all never follows links (it works through directory handles).
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let private: Vec<String> = settings
            .private_registries
            .iter()
            .chain(&settings.mirror)
            .cloned()
            .collect();
        let client = RegistryClient::new(&settings.insecure, &private)?;
        // A write that does not fit first prunes unused entries (never one in use): a full
        // cache must not refuse every later pull.
        let (dir, limits) = (settings.cache_dir.clone(), cache_limits(&settings));
        let reclaim: Reclaim = Box::new(move |short: u64, room: &dyn Fn() -> bool| {
            let pruned = retention::prune(&dir, limits, unpacked_size, room, short);
            if pruned.entries > 0 {
                tracing::info!(
                    entries = pruned.entries,
                    bytes = pruned.bytes,
                    "image cache pruned to make room"
                );
            }
        });
        let space = SpaceLedger::new(&settings.cache_dir, settings.reserve_bytes, Some(reclaim));
        let cache = ImageCache {
            settings,
            client,
            pulls: Mutex::new(HashMap::new()),
            space,
        };
        let pruned = cache.prune_now(|| true);
        if pruned.entries > 0 {
            tracing::info!(
                entries = pruned.entries,
                bytes = pruned.bytes,
                "image cache pruned at start"
            );
        }
        Ok(cache)
    }

    fn limits(&self) -> CacheLimits {
        cache_limits(&self.settings)
    }

    /// Prunes stale entries and the least recently used over the cache's size, and more while
    /// `room()` says no. Entries in use (here or in another process) stay.
    fn prune_now(&self, room: impl Fn() -> bool) -> retention::Pruned {
        retention::prune(
            &self.settings.cache_dir,
            self.limits(),
            unpacked_size,
            room,
            0,
        )
    }

    /// [`Self::prune_now`] on a blocking thread (removing an image is many unlinks), logged.
    async fn prune(&self, image: &ImageRef, need: Option<u64>, log: &LogSink) {
        let dir = self.settings.cache_dir.clone();
        let limits = self.limits();
        let space = Arc::clone(&self.space);
        let pruned = tokio::task::spawn_blocking(move || {
            let short = need.map_or(0, |bytes| space.shortfall(bytes).unwrap_or(0));
            retention::prune(
                &dir,
                limits,
                unpacked_size,
                || need.is_none_or(|bytes| space.check(bytes, "").is_ok()),
                short,
            )
        })
        .await
        .unwrap_or_default();
        if pruned.entries > 0 || pruned.pinned > 0 {
            log.system(format!(
                "[airlock] image {image}: the cache removed {} unused image(s) ({}){}",
                pruned.entries,
                mib(pruned.bytes),
                if pruned.pinned > 0 {
                    format!("; {} more in use stay", pruned.pinned)
                } else {
                    String::new()
                }
            ));
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &ImageSettings {
        &self.settings
    }

    fn entry_dir(&self, image: &ImageRef) -> PathBuf {
        self.settings
            .cache_dir
            .join(format!("sha256-{}", image.digest_hex()))
    }

    /// The cached entry, pinned and marked used.
    fn cached(&self, image: &ImageRef) -> Option<Rootfs> {
        let dir = self.entry_dir(image);
        let (pin, meta) = retention::pin_entry(&dir)?;
        let meta: CachedImage = serde_json::from_slice(&meta).ok()?;
        Some(rootfs_of(image, &dir, &meta, pin))
    }

    /// The image's root filesystem, pulled (from the mirror, if one is set), verified and
    /// unpacked first unless the cache has it. Progress goes to `log`.
    pub async fn ensure(&self, image: &ImageRef, log: &LogSink) -> Result<Rootfs, ImageError> {
        if let Some(rootfs) = self.cached(image) {
            log.system(format!("[airlock] image {image} (cached)"));
            return Ok(rootfs);
        }
        let source = self.source_of(image)?;
        let lock = {
            let mut pulls = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
            pulls
                .entry((source.registry().to_string(), image.digest().to_string()))
                .or_default()
                .clone()
        };
        let _held = lock.lock().await;
        if let Some(rootfs) = self.cached(image) {
            log.system(format!("[airlock] image {image} (cached)"));
            return Ok(rootfs);
        }
        // A private (0700), unguessable directory, removed when the last handle goes: an
        // error, a cancelled pull or a timeout leaves nothing (an unpack still running on a
        // blocking thread holds a handle, so removal waits for it). The pid in the name lets a
        // later process clear what a crashed one left.
        let tmp = Arc::new(
            tempfile::Builder::new()
                .prefix(&format!(
                    ".tmp-{}-{}-",
                    &image.digest_hex()[..16.min(image.digest_hex().len())],
                    std::process::id()
                ))
                .permissions(std::fs::Permissions::from_mode(0o700))
                .tempdir_in(&self.settings.cache_dir)
                .map_err(io_err(&self.settings.cache_dir))?,
        );
        self.pull_into(image, &source, &tmp, log).await?;
        // Complete and flushed: jobs' bubblewrap may now read it.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(io_err(tmp.path()))?;
        let dir = self.entry_dir(image);
        if let Err(e) = std::fs::rename(tmp.path(), &dir) {
            // Another process finished the same digest first: theirs is as good as ours.
            return self.cached(image).ok_or_else(|| ImageError::io(&dir, e));
        }
        // Renamed: nothing left for the guard to remove (no unpack holds it any more).
        if let Ok(tmp) = Arc::try_unwrap(tmp) {
            let _ = tmp.keep();
        }
        // Pinned before pruning, so the new entry is never what goes.
        let rootfs = self.cached(image).ok_or_else(|| {
            ImageError::io(
                &dir,
                std::io::Error::other("the entry just unpacked could not be opened"),
            )
        })?;
        self.prune(image, None, log).await;
        Ok(rootfs)
    }

    /// Room for the image's declared layers (twice: the blob and what it unpacks to) beside
    /// the host's reserve, pruning unused entries if that makes it. Only a first look: the
    /// unpack claims every entry's real size as it writes it.
    async fn make_room(
        &self,
        image: &ImageRef,
        declared: u64,
        log: &LogSink,
    ) -> Result<(), ImageError> {
        let need = declared.saturating_mul(2);
        let what = format!("image {image} (layers declared {})", mib(declared));
        if self.space.check(need, &what).is_err() {
            self.prune(image, Some(need), log).await;
        }
        let dir = &self.settings.cache_dir;
        self.space.check(need, &what).map_err(io_err(dir))
    }

    /// Where `image` is pulled from: the mirror if one is set, else the registry it names
    /// (unless only the mirror may be used).
    fn source_of(&self, image: &ImageRef) -> Result<ImageRef, ImageError> {
        match (&self.settings.mirror, self.settings.require_mirror) {
            (Some(mirror), _) => Ok(image.in_registry(mirror)),
            (None, false) => Ok(image.clone()),
            (None, true) => Err(ImageError::Unsupported {
                what: format!("image {image}"),
                reason:
                    "this runner pulls images only from its own registry and none is configured"
                        .into(),
            }),
        }
    }

    async fn pull_into(
        &self,
        image: &ImageRef,
        source: &ImageRef,
        guard: &Arc<tempfile::TempDir>,
        log: &LogSink,
    ) -> Result<CachedImage, ImageError> {
        let tmp = guard.path();
        let started = Instant::now();
        log.system(format!(
            "[airlock] image {image}: pulling from {}",
            source.registry()
        ));
        let resolved = self.client.resolve(source).await?;
        let total = resolved
            .layers
            .iter()
            .fold(0u64, |sum, l| sum.saturating_add(l.size));
        log.system(format!(
            "[airlock] image {image}: {} layer(s), {}",
            resolved.layers.len(),
            mib(total)
        ));
        // Compressed layers never shrink when unpacked (by more than a few headers): a manifest
        // declaring more than the unpack limit is refused before a byte is fetched.
        if total > self.settings.max_unpacked_bytes {
            return Err(ImageError::TooLarge {
                what: format!("image {image} (layers declared {total} bytes)"),
                max: self.settings.max_unpacked_bytes,
            });
        }
        self.make_room(image, total, log).await?;
        let rootfs_path = tmp.join("rootfs");
        let mut root = TreeRoot::create(&rootfs_path, 0o755)
            .map_err(|e| ImageError::io(&rootfs_path, e.into()))?;
        let mut budget =
            UnpackBudget::new(self.settings.max_unpacked_bytes, self.settings.max_entries)
                .with_space(Arc::clone(&self.space));
        for (i, layer) in resolved.layers.iter().enumerate() {
            let fetch_started = Instant::now();
            let blob = {
                let _claim = self
                    .space
                    .claim(layer.size, &format!("layer {}", short(&layer.digest)))
                    .map_err(io_err(&self.settings.cache_dir))?;
                self.client.layer_to_file(source, layer, tmp).await?
            };
            let fetched = fetch_started.elapsed();
            let layer_clone = layer.clone();
            let unpack_started = Instant::now();
            let held = Arc::clone(guard);
            let (back, back_budget, stats) = tokio::task::spawn_blocking(move || {
                let stats = apply_layer(&root, blob, &layer_clone, &mut budget);
                drop(held);
                (root, budget, stats)
            })
            .await
            .map_err(|e| ImageError::io(&rootfs_path, std::io::Error::other(e)))?;
            root = back;
            budget = back_budget;
            let stats = stats?;
            log.system(format!(
                "[airlock] image {image}: layer {}/{} {} ({}) fetched in {:.1} s, unpacked in {:.1} s: {} entries{}{}",
                i + 1,
                resolved.layers.len(),
                short(&layer.digest),
                mib(layer.size),
                fetched.as_secs_f64(),
                unpack_started.elapsed().as_secs_f64(),
                stats.entries,
                if stats.hidden > 0 { format!(", {} hidden by whiteouts", stats.hidden) } else { String::new() },
                if stats.skipped_special > 0 {
                    format!(", {} device nodes/FIFOs skipped", stats.skipped_special)
                } else {
                    String::new()
                },
            ));
        }
        for name in MOUNT_POINTS {
            let rel = Path::new(name);
            let is_dir = matches!(root.metadata(rel), Ok(m) if m.kind == EntryKind::Dir);
            if !is_dir {
                root.remove_all(rel)
                    .and_then(|()| root.create_dir(rel, 0o755))
                    .map_err(|e| ImageError::io(rootfs_path.join(name), e.into()))?;
            }
        }
        let meta = CachedImage {
            pulled_from: source.to_string(),
            manifest_digest: resolved.manifest_digest.clone(),
            env: resolved.env.clone(),
            layers: resolved.layers.iter().map(|l| l.digest.clone()).collect(),
            unpacked_bytes: budget.bytes(),
        };
        let meta_path = tmp.join("image.json");
        let json =
            serde_json::to_vec_pretty(&meta).map_err(|e| ImageError::io(&meta_path, e.into()))?;
        std::fs::write(&meta_path, json).map_err(io_err(&meta_path))?;
        // Everything on disk before the rename makes the entry visible: a crash after it must
        // not leave a "complete" entry with empty files.
        sync_filesystem(tmp)?;
        log.system(format!(
            "[airlock] image {image}: ready in {:.1} s ({} unpacked)",
            started.elapsed().as_secs_f64(),
            mib(budget.bytes())
        ));
        Ok(meta)
    }
}

fn rootfs_of(image: &ImageRef, dir: &Path, meta: &CachedImage, pin: EntryPin) -> Rootfs {
    Rootfs {
        image: image.clone(),
        path: dir.join("rootfs"),
        // Only real variable names: an image's `Env` is as untrusted as the image.
        env: meta
            .env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| crate::env::is_env_name(k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        manifest_digest: meta.manifest_digest.clone(),
        _pin: Arc::new(pin),
    }
}

fn short(digest: &str) -> &str {
    &digest[..19.min(digest.len())]
}

/// `host[:port]`, nothing else: a mirror or insecure registry given with a scheme or a path
/// would otherwise be pasted into URLs.
fn check_registry_name(registry: &str) -> Result<(), ImageError> {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(ImageError::Unsupported {
            what: format!("registry '{registry}'"),
            reason: "write it as host[:port] (no scheme, no path)".into(),
        })
    }
}

/// The cache and every directory above it must be writable only by root or this user (or be
/// sticky, as /var/tmp is): the cache is what jobs run on, so whoever can rename an entry in
/// it chooses every job's root. A cache directory another local user created first (say in
/// /var/tmp) is refused rather than used.
fn check_trusted_dir(dir: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::MetadataExt as _;
    let euid = nix::unistd::geteuid().as_raw();
    let dir = std::fs::canonicalize(dir).map_err(io_err(dir))?;
    for (i, path) in dir.ancestors().enumerate() {
        #[allow(clippy::disallowed_methods)] // host directories above the cache, not a tree
        let meta = std::fs::metadata(path).map_err(io_err(path))?;
        let owner_ok = meta.uid() == 0 || meta.uid() == euid;
        let shared_write = meta.mode() & 0o022 != 0;
        let sticky = meta.mode() & 0o1000 != 0;
        let write_ok = !shared_write || (i > 0 && sticky);
        if !owner_ok || !write_ok {
            return Err(ImageError::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "not a safe place for the image cache {}: owned by uid {} with mode {:o}; \
                         it and every directory above it must be owned by root or uid {euid} \
                         and not writable by others",
                        dir.display(),
                        meta.uid(),
                        meta.mode() & 0o7777
                    ),
                ),
            ));
        }
    }
    Ok(())
}

/// Flushes the filesystem holding `dir` (syncfs): every file of the unpacked image at once.
fn sync_filesystem(dir: &Path) -> Result<(), ImageError> {
    let handle = std::fs::File::open(dir).map_err(io_err(dir))?;
    nix::unistd::syncfs(&handle).map_err(|e| ImageError::io(dir, e.into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_cache_others_can_write_or_own_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        let shared = temp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        let cache = shared.join("cache");
        std::fs::create_dir(&cache).unwrap();
        // Control: private directories are fine.
        check_trusted_dir(&cache).unwrap();
        // A world-writable sticky parent (as /var/tmp) is fine; the cache itself never is.
        chmod(&shared, 0o1777);
        check_trusted_dir(&cache).unwrap();
        chmod(&cache, 0o775);
        let err = check_trusted_dir(&cache).expect_err("group-writable cache");
        assert!(err.to_string().contains("not a safe place"), "{err}");
        chmod(&cache, 0o755);
        chmod(&shared, 0o777);
        let err = check_trusted_dir(&cache).expect_err("writable parent without sticky bit");
        assert!(
            err.to_string().contains(&shared.display().to_string()),
            "{err}"
        );
        chmod(&shared, 0o755);
        // Another user's directory (as if they created /var/tmp/airlock first).
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&cache, Some(nix::unistd::Uid::from_raw(4321)), None).unwrap();
            let err = check_trusted_dir(&cache).expect_err("someone else's cache");
            assert!(err.to_string().contains("uid 4321"), "{err}");
        }
    }

    /// Issue 19: a job's registry on a private or local address is refused unless the runner's
    /// settings name it (before anything is sent to it).
    #[tokio::test]
    async fn a_registry_on_a_private_address_is_refused_unless_listed() {
        let temp = tempfile::tempdir().unwrap();
        let image =
            ImageRef::parse(&format!("127.0.0.2:5999/x@sha256:{}", "a".repeat(64))).unwrap();
        let log = LogSink::new("t", 1 << 20, None);
        let cache = ImageCache::new(ImageSettings {
            cache_dir: temp.path().join("a"),
            ..ImageSettings::default()
        })
        .unwrap();
        let err = cache.ensure(&image, &log).await.unwrap_err();
        assert!(
            err.to_string().contains("private or local address"),
            "{err}"
        );
        // Control: listed, it is tried (and, nothing listening, fails to connect instead).
        let cache = ImageCache::new(ImageSettings {
            cache_dir: temp.path().join("b"),
            private_registries: vec!["127.0.0.2:5999".into()],
            ..ImageSettings::default()
        })
        .unwrap();
        let err = cache.ensure(&image, &log).await.unwrap_err();
        assert!(
            !err.to_string().contains("private or local address"),
            "{err}"
        );
        assert!(err.to_string().contains("127.0.0.2:5999"), "{err}");
    }

    /// Issue 26: what a crashed pull left is removed when the cache is next opened; a pull of
    /// a process still running is left alone.
    #[test]
    fn leftovers_of_crashed_pulls_are_removed_and_live_ones_kept() {
        let temp = tempfile::tempdir().unwrap();
        let cache_dir = temp.path().join("cache");
        std::fs::create_dir(&cache_dir).unwrap();
        // A pid that is not running (beyond any pid_max) and this process's own.
        let dead = cache_dir.join(".tmp-0123456789abcdef-4999999-Xy12");
        let live = cache_dir.join(format!(".tmp-0123456789abcdef-{}-Ab34", std::process::id()));
        for dir in [&dead, &live] {
            std::fs::create_dir_all(dir.join("rootfs/usr")).unwrap();
            std::fs::write(dir.join("rootfs/usr/file"), "x").unwrap();
        }
        ImageCache::new(ImageSettings {
            cache_dir: cache_dir.clone(),
            ..ImageSettings::default()
        })
        .unwrap();
        assert!(!dead.exists(), "a dead pull's leftovers stayed");
        assert!(live.exists(), "a running pull's directory was removed");
    }

    #[test]
    fn registries_are_host_and_port_only() {
        for good in [
            "127.0.0.1:5000",
            "registry.internal",
            "localhost:443",
            "a-b.example",
        ] {
            check_registry_name(good).unwrap();
        }
        for bad in [
            "http://registry",
            "registry/path",
            "registry:0",
            "registry:99999",
            "",
            "reg istry",
            "a..b",
        ] {
            assert!(check_registry_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}

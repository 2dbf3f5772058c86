//! Which unpacked images the cache keeps: entries in use are pinned, the rest go when they
//! have not been used for a while, when the cache is over its size, or when a pull needs room.
//!
//! A job pins its entry with a shared `flock` on the entry's `image.json` for as long as it
//! runs; pruning takes the same lock exclusively (without waiting) and renames the entry away
//! while holding it, so an entry is never removed under a running job, in this process or
//! another one on the same cache. A job that opened `image.json` just before a prune renamed it
//! sees, once it holds its lock, that the path no longer names that file, and pulls again.
//! Each use sets `image.json`'s modification time: that is the entry's last use.

use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};

/// An entry in use: it is not pruned while this lives.
#[derive(Debug)]
pub struct EntryPin {
    _lock: Flock<File>,
}

/// How much the cache keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Total unpacked bytes kept; the least recently used entries go first.
    pub max_bytes: u64,
    /// Entries unused for longer than this go.
    pub max_unused: Duration,
}

/// What one prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Entries removed.
    pub entries: u64,
    /// Their unpacked bytes.
    pub bytes: u64,
    /// Entries that would have gone but are in use.
    pub pinned: u64,
}

/// Opens `image.json` of the entry at `dir`, pins the entry and marks it used; `None` when
/// there is no complete entry there (or a prune took it meanwhile).
pub(super) fn pin_entry(dir: &Path) -> Option<(EntryPin, Vec<u8>)> {
    let meta_path = dir.join("image.json");
    pin_opened(File::open(&meta_path).ok()?, &meta_path)
}

fn pin_opened(file: File, meta_path: &Path) -> Option<(EntryPin, Vec<u8>)> {
    use std::io::Read as _;
    let mut lock = Flock::lock(file, FlockArg::LockShared).ok()?;
    // Still the entry's file? A prune renames the entry while holding the exclusive lock.
    let held = lock.metadata().ok()?;
    let here = std::fs::symlink_metadata(meta_path).ok()?;
    if (held.dev(), held.ino()) != (here.dev(), here.ino()) {
        return None;
    }
    let mut json = Vec::new();
    // image.json is this cache's own small file; the cap only guards against a damaged one.
    (&mut *lock).take(1 << 20).read_to_end(&mut json).ok()?;
    let _ = lock.set_modified(SystemTime::now());
    Some((EntryPin { _lock: lock }, json))
}

/// An entry found in the cache directory.
struct Entry {
    dir: PathBuf,
    last_used: SystemTime,
    bytes: u64,
}

fn entries(cache_dir: &Path, size_of: impl Fn(&[u8]) -> Option<u64>) -> Vec<Entry> {
    let Ok(read) = std::fs::read_dir(cache_dir) else {
        return Vec::new();
    };
    let mut found: Vec<Entry> = read
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("sha256-"))
        .filter_map(|e| {
            let meta_path = e.path().join("image.json");
            let last_used = std::fs::symlink_metadata(&meta_path)
                .ok()?
                .modified()
                .ok()?;
            let json = std::fs::read(&meta_path).ok()?;
            Some(Entry {
                dir: e.path(),
                last_used,
                bytes: size_of(&json).unwrap_or(0),
            })
        })
        .collect();
    found.sort_by_key(|e| e.last_used);
    found
}

/// Whether the entry at `dir` is in use right now (a job holds its shared lock).
fn in_use(dir: &Path) -> bool {
    let Ok(file) = File::open(dir.join("image.json")) else {
        return false;
    };
    Flock::lock(file, FlockArg::LockExclusiveNonblock).is_err()
}

/// Names of entries being removed: unique within the process (prunes may run at once).
static DOOMED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Removes the entry at `dir` unless it is in use; `Ok(false)` when it is.
fn remove_entry(cache_dir: &Path, dir: &Path) -> std::io::Result<bool> {
    let serial = DOOMED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = File::open(dir.join("image.json"))?;
    let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(false),
        Err((_, errno)) => return Err(errno.into()),
    };
    // Renamed under the lock, removed after: a crash in between leaves a `.tmp-` directory the
    // next process removes (the pid in its name is gone by then).
    let doomed = cache_dir.join(format!(".tmp-prune-{}-{serial}", std::process::id()));
    std::fs::rename(dir, &doomed)?;
    drop(lock);
    // remove_dir_all never follows links (it works through directory handles).
    std::fs::remove_dir_all(&doomed)?;
    Ok(true)
}

/// Removes entries unused for longer than `limits.max_unused`, then the least recently used
/// until the cache holds at most `limits.max_bytes` and `room()` says there is room (it is
/// asked again after each removal). Entries in use stay. `shortfall` is how many bytes the
/// room is short of: when the unused entries together hold less, none is removed for room
/// (one image larger than the disk must not empty every project's cache, every time).
pub(super) fn prune(
    cache_dir: &Path,
    limits: CacheLimits,
    size_of: impl Fn(&[u8]) -> Option<u64>,
    room: impl Fn() -> bool,
    shortfall: u64,
) -> Pruned {
    let found = entries(cache_dir, size_of);
    let mut total: u64 = found.iter().map(|e| e.bytes).sum();
    let reclaimable: u64 = found
        .iter()
        .filter(|e| !in_use(&e.dir))
        .map(|e| e.bytes)
        .sum();
    let prune_for_room = shortfall == 0 || reclaimable >= shortfall;
    let room = || !prune_for_room || room();
    let now = SystemTime::now();
    let mut pruned = Pruned::default();
    for entry in &found {
        let stale = now
            .duration_since(entry.last_used)
            .is_ok_and(|unused| unused > limits.max_unused);
        if !stale && total <= limits.max_bytes && room() {
            // Sorted oldest first: nothing later is staler.
            break;
        }
        match remove_entry(cache_dir, &entry.dir) {
            Ok(true) => {
                pruned.entries += 1;
                pruned.bytes += entry.bytes;
                total = total.saturating_sub(entry.bytes);
            }
            Ok(false) => pruned.pinned += 1,
            Err(e) => {
                tracing::warn!(entry = %entry.dir.display(), error = %e, "could not prune an image");
            }
        }
    }
    pruned
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(cache: &Path, name: &str, bytes: u64, age: Duration) -> PathBuf {
        let dir = cache.join(format!("sha256-{name}"));
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        std::fs::write(dir.join("image.json"), bytes.to_string()).unwrap();
        let file = File::options()
            .write(true)
            .open(dir.join("image.json"))
            .unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
        dir
    }

    fn size(json: &[u8]) -> Option<u64> {
        std::str::from_utf8(json).ok()?.parse().ok()
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn stale_and_oversized_entries_go_oldest_first_and_pinned_ones_stay() {
        let cache = tempfile::tempdir().unwrap();
        let old = entry(cache.path(), "old", 10, 10 * DAY);
        let mid = entry(cache.path(), "mid", 100, 2 * DAY);
        let new = entry(cache.path(), "new", 100, DAY);
        let limits = CacheLimits {
            max_bytes: 150,
            max_unused: 7 * DAY,
        };
        // Control: within every limit nothing goes.
        let generous = CacheLimits {
            max_bytes: 1000,
            max_unused: 30 * DAY,
        };
        assert_eq!(
            prune(cache.path(), generous, size, || true, 0),
            Pruned::default()
        );
        assert!(old.exists() && mid.exists() && new.exists());
        // `old` is stale; then 200 > 150 takes the least recently used: pinning `mid` just
        // marked it used, so that is `new`.
        let (pin, json) = pin_entry(&mid).unwrap();
        assert_eq!(json, b"100");
        let pruned = prune(cache.path(), limits, size, || true, 0);
        assert_eq!(
            pruned,
            Pruned {
                entries: 2,
                bytes: 110,
                pinned: 0
            }
        );
        assert!(!old.exists() && mid.exists() && !new.exists());
        // Over a zero-byte limit `mid` would go, but it is in use.
        let nothing = CacheLimits {
            max_bytes: 0,
            max_unused: 7 * DAY,
        };
        let pruned = prune(cache.path(), nothing, size, || true, 0);
        assert_eq!(
            pruned,
            Pruned {
                entries: 0,
                bytes: 0,
                pinned: 1
            }
        );
        assert!(mid.exists());
        // Unpinned, it goes when room is needed, though within every other limit; but not when
        // removing it could never make the room asked for.
        drop(pin);
        let pruned = prune(cache.path(), limits, size, || !mid.exists(), 101);
        assert_eq!(pruned.entries, 0);
        assert!(mid.exists());
        let pruned = prune(cache.path(), limits, size, || !mid.exists(), 100);
        assert_eq!(pruned.entries, 1);
        assert!(!mid.exists());
        let leftovers: Vec<_> = std::fs::read_dir(cache.path()).unwrap().flatten().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_pin_on_an_entry_pruned_meanwhile_is_refused() {
        let cache = tempfile::tempdir().unwrap();
        let dir = entry(cache.path(), "gone", 1, Duration::ZERO);
        let meta_path = dir.join("image.json");
        // Opened, then pruned before the lock is taken; a new entry appears at the same path.
        let opened = File::open(&meta_path).unwrap();
        assert!(remove_entry(cache.path(), &dir).unwrap());
        let dir = entry(cache.path(), "gone", 1, Duration::ZERO);
        assert!(pin_opened(opened, &meta_path).is_none());
        // Control: opened after, it pins.
        assert!(pin_opened(File::open(&meta_path).unwrap(), &meta_path).is_some());
        assert!(pin_entry(&dir).is_some());
    }
}

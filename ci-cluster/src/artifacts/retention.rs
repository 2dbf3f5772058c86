//! The artifact retention sweep: keeps the artifact store from growing
//! without bound (`[artifacts]` in the config).
//!
//! 1. **Age.** A blob that no queued or running run references, and no final
//!    run that finished within `retention` references, is deleted.
//! 2. **Size.** If the store is still over `max_total_size` or holds more than
//!    `max_total_files` blobs (each is a file, an inode and a directory entry,
//!    however small), the blobs whose
//!    newest referencing run finished longest ago go first (unreferenced ones
//!    before all), until it is under. Blobs of queued or running runs and
//!    blobs within `retention` are never deleted for size: the sweep logs a
//!    warning instead. With a retention window, everything outside it went in
//!    step 1, so this step only warns; with `retention = "off"` it is the
//!    only bound.
//!
//! Every deletion is checked again under the store's write lock (see
//! [`Store::remove_unreferenced`]): a run that recorded the digest since the
//! sweep looked keeps it, and a run that records it afterwards stores the
//! blob again, because the runner records outputs before it copies them in.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ArtifactStore, StoredBlob};
use crate::config::ArtifactsFile;
use crate::kernel::{AppState, now_ms};
use crate::store::{BlobRefs, Store, StoreError};

/// Temporary files of puts older than this were left by a crash.
const STALE_TEMPORARY: Duration = Duration::from_secs(24 * 3600);

/// What the sweep enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Keep blobs referenced by a run that finished within this long; `None`: no age limit.
    pub retention: Option<Duration>,
    /// The size the store should stay under.
    pub max_total_size: u64,
    /// The number of blobs the store should stay under.
    pub max_total_files: usize,
}

impl From<&ArtifactsFile> for Policy {
    fn from(file: &ArtifactsFile) -> Self {
        Policy {
            retention: file.retention.0,
            max_total_size: file.max_total_size.0,
            max_total_files: file.max_total_files,
        }
    }
}

impl Policy {
    /// Finish times at or after this keep a blob; `None` without an age limit.
    pub fn keep_since_ms(&self, now_ms: u64) -> Option<u64> {
        self.retention
            .map(|r| now_ms.saturating_sub(u64::try_from(r.as_millis()).unwrap_or(u64::MAX)))
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Blobs found.
    pub scanned_blobs: usize,
    /// Their bytes.
    pub scanned_bytes: u64,
    /// Deleted for age.
    pub expired_blobs: usize,
    /// Their bytes.
    pub expired_bytes: u64,
    /// Deleted for size, oldest first.
    pub evicted_blobs: usize,
    /// Their bytes.
    pub evicted_bytes: u64,
    /// What is left.
    pub kept_blobs: usize,
    /// Its bytes.
    pub kept_bytes: u64,
    /// The store is still over `max_total_size` or `max_total_files` (everything left is
    /// protected).
    pub over_limit: bool,
    /// Deletions that failed (logged; tried again at the next sweep).
    pub failed: usize,
    /// Temporary files of interrupted puts removed.
    pub stale_temporaries: usize,
}

/// Deletions of one step.
#[derive(Default)]
struct Tally {
    blobs: usize,
    bytes: u64,
    failed: usize,
}

/// Why a sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The blob directory could not be listed.
    #[error("listing the artifact store: {0}")]
    List(#[source] std::io::Error),
    /// The store could not say which runs reference what.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies `policy` once: deletes what it allows and says what it did.
pub fn sweep(
    store: &Store,
    artifacts: &dyn ArtifactStore,
    policy: &Policy,
    now_ms: u64,
) -> Result<Outcome, SweepError> {
    let mut outcome = Outcome::default();
    match artifacts.remove_stale_temporaries(STALE_TEMPORARY) {
        Ok((files, _)) => outcome.stale_temporaries = files,
        Err(e) => tracing::warn!(error = %e, "artifact sweep: cannot remove stale temporary files"),
    }
    // Listed before the references are read: a blob put after this listing
    // is not looked at, and a reference recorded after the read is seen by
    // the check under the write lock.
    let blobs = artifacts.list().map_err(SweepError::List)?;
    let refs = store.blob_refs()?;
    let keep_since = policy.keep_since_ms(now_ms);
    outcome.scanned_blobs = blobs.len();
    outcome.scanned_bytes = blobs.iter().map(|b| b.size).sum();
    let sizes: HashMap<&str, u64> = blobs.iter().map(|b| (b.sha256.as_str(), b.size)).collect();
    let refs_of = |b: &StoredBlob| refs.get(&b.sha256).copied().unwrap_or_default();

    // 1. Age.
    let expired: Vec<String> = match keep_since {
        Some(since) => blobs
            .iter()
            .filter(|b| refs_of(b).removable(Some(since)))
            .map(|b| b.sha256.clone())
            .collect(),
        None => Vec::new(),
    };
    // (bytes, blobs) still in the store.
    let mut total = (outcome.scanned_bytes, outcome.scanned_blobs);
    let over = |(bytes, blobs): (u64, usize)| {
        bytes > policy.max_total_size || blobs > policy.max_total_files
    };
    let delete = |digest: &str, tally: &mut Tally, total: &mut (u64, usize)| match artifacts
        .remove(digest)
    {
        Ok(()) => {
            let size = sizes.get(digest).copied().unwrap_or(0);
            tally.blobs += 1;
            tally.bytes += size;
            total.0 = total.0.saturating_sub(size);
            total.1 = total.1.saturating_sub(1);
        }
        Err(e) => {
            tracing::warn!(sha256 = digest, error = %e, "artifact sweep: cannot delete a blob");
            tally.failed += 1;
        }
    };
    let mut aged = Tally::default();
    store.remove_unreferenced(&expired, keep_since, &mut |digest| {
        delete(digest, &mut aged, &mut total);
        ControlFlow::Continue(())
    })?;

    // 2. Size: the oldest newest-reference first, never a protected blob.
    let mut evicted = Tally::default();
    if over(total) {
        let tried: HashSet<&str> = expired.iter().map(String::as_str).collect();
        let mut candidates: Vec<(&StoredBlob, BlobRefs)> = blobs
            .iter()
            .filter(|b| !tried.contains(b.sha256.as_str()))
            .map(|b| (b, refs_of(b)))
            .filter(|(_, r)| r.removable(keep_since))
            .collect();
        candidates.sort_by(|(a, ra), (b, rb)| {
            (ra.newest_finished_ms, &a.sha256).cmp(&(rb.newest_finished_ms, &b.sha256))
        });
        let order: Vec<String> = candidates.iter().map(|(b, _)| b.sha256.clone()).collect();
        store.remove_unreferenced(&order, keep_since, &mut |digest| {
            delete(digest, &mut evicted, &mut total);
            if !over(total) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
    }
    (outcome.expired_blobs, outcome.expired_bytes) = (aged.blobs, aged.bytes);
    (outcome.evicted_blobs, outcome.evicted_bytes) = (evicted.blobs, evicted.bytes);
    outcome.failed = aged.failed + evicted.failed;
    outcome.kept_blobs = outcome.scanned_blobs - outcome.expired_blobs - outcome.evicted_blobs;
    outcome.kept_bytes = outcome.scanned_bytes - outcome.expired_bytes - outcome.evicted_bytes;
    outcome.over_limit = over((outcome.kept_bytes, outcome.kept_blobs));
    Ok(outcome)
}

/// Sweeps at start, then every `[artifacts] sweep_interval`, on a blocking
/// thread, until shutdown.
pub async fn sweep_loop(state: AppState, artifacts: Arc<dyn ArtifactStore>) {
    let policy = Policy::from(&state.config.file.artifacts);
    let interval = state.config.file.artifacts.sweep_interval.0;
    loop {
        let (store, artifacts_now) = (state.store.clone(), artifacts.clone());
        let started = Instant::now();
        let swept = tokio::task::spawn_blocking(move || {
            sweep(&store, artifacts_now.as_ref(), &policy, now_ms())
        })
        .await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match swept {
            Ok(Ok(o)) => {
                macro_rules! report {
                    ($level:expr) => {
                        tracing::event!(
                            $level,
                            expired_blobs = o.expired_blobs,
                            expired_bytes = o.expired_bytes,
                            evicted_blobs = o.evicted_blobs,
                            evicted_bytes = o.evicted_bytes,
                            kept_blobs = o.kept_blobs,
                            kept_bytes = o.kept_bytes,
                            failed = o.failed,
                            stale_temporaries = o.stale_temporaries,
                            elapsed_ms,
                            "artifact sweep"
                        )
                    };
                }
                // A sweep that found nothing to do is not news.
                if o.expired_blobs + o.evicted_blobs + o.failed + o.stale_temporaries > 0 {
                    report!(tracing::Level::INFO);
                } else {
                    report!(tracing::Level::DEBUG);
                }
                if o.over_limit {
                    tracing::warn!(
                        kept_bytes = o.kept_bytes,
                        max_total_size = policy.max_total_size,
                        kept_blobs = o.kept_blobs,
                        "artifact store is over artifacts.max_total_size, but every blob left \
                         belongs to a queued or running run or to one within artifacts.retention"
                    );
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "artifact sweep failed"),
            Err(e) => tracing::error!(error = %e, "artifact sweep task failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = state.shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use airlock_pipeline::outputs::OutputFile;
    use airlock_pipeline::spec::EventKind;
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::artifacts::LocalArtifacts;
    use crate::event::{Forge, ForgeEvent, Intent, ReportTarget};
    use crate::store::{Accepted, RunId, RunStatus};

    const DAY: u64 = 86_400_000;
    const NOW: u64 = 1_000 * DAY;

    /// A real store and a real artifact directory.
    struct World {
        dir: tempfile::TempDir,
        store: Store,
        artifacts: LocalArtifacts,
        pushes: std::cell::Cell<u32>,
    }

    impl World {
        fn new() -> World {
            let dir = tempfile::tempdir().expect("tmp");
            let store = Store::open(&dir.path().join("ci.sqlite")).expect("store");
            let artifacts = LocalArtifacts::new(dir.path().join("artifacts"));
            World {
                dir,
                store,
                artifacts,
                pushes: Default::default(),
            }
        }

        /// Stores `size` bytes made from `name` as a blob; returns its digest.
        fn blob(&self, name: &str, size: usize) -> String {
            let content: Vec<u8> = name.bytes().cycle().take(size).collect();
            let digest = hex::encode(Sha256::digest(&content));
            let file = self.dir.path().join(name);
            std::fs::write(&file, &content).expect("write");
            self.artifacts.put(&digest, &file).expect("put");
            digest
        }

        fn path(&self, digest: &str) -> PathBuf {
            self.dir.path().join("artifacts/sha256").join(digest)
        }

        fn stored(&self, digest: &str) -> bool {
            self.path(digest).exists()
        }

        /// A run (a push) that claimed, recorded `outputs`, and finished at
        /// `finished_ms` (or is still running with `None`).
        fn run(&self, outputs: &[&str], finished_ms: Option<u64>) -> RunId {
            let n = self.pushes.get() + 1;
            self.pushes.set(n);
            let commit = format!("{n:040x}");
            let event = ForgeEvent {
                forge: Forge::Github,
                repository: "org/app".into(),
                delivery: format!("d-{n}"),
                body_sha256: None,
                intent: Intent::Run,
                kind: EventKind::Push,
                git_ref: "refs/heads/main".into(),
                commit: commit.clone(),
                change: None,
                title: "a push".into(),
                author: "dev".into(),
                report: ReportTarget::Github {
                    repo: "org/app".into(),
                    sha: commit,
                },
            };
            let started = finished_ms.unwrap_or(NOW).saturating_sub(60_000);
            let run = match self.store.accept_event("app", &event, started) {
                Ok(Accepted::New { run: Some(run), .. }) => run,
                other => panic!("expected a run: {other:?}"),
            };
            let claimed = self
                .store
                .claim_next(1000, &|_| usize::MAX, started)
                .expect("claim")
                .expect("claimed");
            assert_eq!(claimed.id, run);
            let files: Vec<OutputFile> = outputs
                .iter()
                .enumerate()
                .map(|(i, sha256)| OutputFile {
                    path: format!("dist/{i}"),
                    sha256: sha256.to_string(),
                    size: 1,
                    executable: false,
                })
                .collect();
            self.store
                .set_outputs(run, "build", &files)
                .expect("outputs");
            if let Some(at) = finished_ms {
                assert!(
                    self.store
                        .finish_run(run, RunStatus::Passed, None, &[], at)
                        .expect("finish")
                );
            }
            run
        }

        fn sweep(&self, retention_days: Option<u64>, max_total_size: u64) -> Outcome {
            self.sweep_files(retention_days, max_total_size, usize::MAX)
        }

        fn sweep_files(
            &self,
            retention_days: Option<u64>,
            max_total_size: u64,
            max_total_files: usize,
        ) -> Outcome {
            let policy = Policy {
                retention: retention_days.map(|d| Duration::from_millis(d * DAY)),
                max_total_size,
                max_total_files,
            };
            sweep(&self.store, &self.artifacts, &policy, NOW).expect("sweep")
        }
    }

    #[test]
    fn the_sweep_deletes_old_and_unreferenced_blobs_and_keeps_recent_and_running_ones() {
        let w = World::new();
        let old = w.blob("old", 1000);
        let orphan = w.blob("orphan", 500);
        let recent = w.blob("recent", 100);
        let running = w.blob("running", 10);
        let shared = w.blob("shared", 1);
        w.run(&[&old, &running, &shared], Some(NOW - 40 * DAY));
        w.run(&[&recent], Some(NOW - DAY));
        // Exactly at the edge of the window counts as within it.
        let edge = w.blob("edge", 1);
        w.run(&[&edge], Some(NOW - 30 * DAY));
        w.run(&[&shared], Some(NOW - 2 * DAY));
        let live = w.run(&[&running], None);

        let outcome = w.sweep(Some(30), 50 << 30);
        assert_eq!(
            (
                outcome.expired_blobs,
                outcome.expired_bytes,
                outcome.kept_blobs,
                outcome.evicted_blobs
            ),
            (2, 1500, 4, 0),
            "{outcome:?}"
        );
        assert!(
            !w.stored(&old) && !w.stored(&orphan),
            "old and orphan deleted"
        );
        for (name, digest) in [
            ("recent", &recent),
            ("running", &running),
            ("shared", &shared),
            ("edge", &edge),
        ] {
            assert!(w.stored(digest), "{name} kept");
        }
        // A second sweep finds nothing more to do.
        assert_eq!(w.sweep(Some(30), 50 << 30).expired_blobs, 0);
        // Once the running run finished long ago, its blob goes too.
        w.store
            .finish_run(live, RunStatus::Passed, None, &[], NOW - 31 * DAY)
            .expect("finish");
        let outcome = w.sweep(Some(30), 50 << 30);
        assert_eq!((outcome.expired_blobs, outcome.expired_bytes), (1, 10));
        assert!(!w.stored(&running) && w.stored(&recent));
    }

    #[test]
    fn a_reference_recorded_after_the_sweep_looked_keeps_the_blob() {
        let w = World::new();
        let blob = w.blob("reused", 64);
        w.run(&[&blob], Some(NOW - 40 * DAY));
        // The sweep's snapshot: removable.
        let refs = w.store.blob_refs().expect("refs");
        let keep_since = Some(NOW - 30 * DAY);
        assert!(refs[&blob].removable(keep_since));
        // A run records the same output before the sweep gets to it...
        w.run(&[&blob], None);
        // ...so the check under the write lock keeps it.
        let mut handed = Vec::new();
        w.store
            .remove_unreferenced(std::slice::from_ref(&blob), keep_since, &mut |d| {
                handed.push(d.to_string());
                ControlFlow::Continue(())
            })
            .expect("remove");
        assert!(handed.is_empty(), "{handed:?}");
        // Control: without the new run's reference the same call removes it.
        let w = World::new();
        let blob = w.blob("reused", 64);
        w.run(&[&blob], Some(NOW - 40 * DAY));
        let mut handed = Vec::new();
        w.store
            .remove_unreferenced(std::slice::from_ref(&blob), keep_since, &mut |d| {
                handed.push(d.to_string());
                ControlFlow::Continue(())
            })
            .expect("remove");
        assert_eq!(handed, [blob]);
    }

    #[test]
    fn over_max_total_size_the_blobs_whose_newest_run_is_oldest_go_first() {
        // Without an age limit, the size limit alone decides.
        let w = World::new();
        let unreferenced = w.blob("unreferenced", 100);
        let day10 = w.blob("day10", 100);
        let day20 = w.blob("day20", 100);
        let day30 = w.blob("day30", 100);
        // Referenced on day 5 and again on day 35: its newest run counts.
        let shared = w.blob("shared", 100);
        let running = w.blob("running", 100);
        w.run(&[&shared], Some(5 * DAY));
        w.run(&[&day20], Some(20 * DAY));
        w.run(&[&day10], Some(10 * DAY));
        w.run(&[&day30], Some(30 * DAY));
        w.run(&[&shared], Some(35 * DAY));
        w.run(&[&running], None);

        // 600 bytes, limit 350: the unreferenced blob, day 10 and day 20 go, nothing else.
        let outcome = w.sweep(None, 350);
        assert_eq!(
            (
                outcome.evicted_blobs,
                outcome.evicted_bytes,
                outcome.kept_bytes
            ),
            (3, 300, 300),
            "{outcome:?}"
        );
        assert!(!w.stored(&unreferenced) && !w.stored(&day10) && !w.stored(&day20));
        assert!(w.stored(&day30) && w.stored(&shared) && w.stored(&running));
        assert!(!outcome.over_limit);
        // Under the limit: nothing more goes.
        assert_eq!(w.sweep(None, 350).evicted_blobs, 0);
        // A limit below what the running run holds: all else goes, in order, and it stays.
        let outcome = w.sweep(None, 50);
        assert_eq!(outcome.evicted_blobs, 2);
        assert!(!w.stored(&day30) && !w.stored(&shared) && w.stored(&running));
        assert!(
            outcome.over_limit,
            "still over: only a protected blob is left"
        );
    }

    /// Issue 19: many tiny blobs cost files, inodes and directory entries whatever their bytes.
    #[test]
    fn over_max_total_files_the_oldest_go_first_though_the_bytes_are_few() {
        let w = World::new();
        let blobs: Vec<String> = (0..5).map(|i| w.blob(&format!("{i}tiny"), 1)).collect();
        for (day, blob) in blobs.iter().enumerate() {
            w.run(&[blob], Some((day as u64 + 1) * DAY));
        }
        // Control: 5 bytes is far under the size limit, and 5 files within a limit of 5.
        assert_eq!(w.sweep_files(None, 1 << 30, 5).evicted_blobs, 0);
        // A limit of 3 files: the two whose runs are oldest go.
        let outcome = w.sweep_files(None, 1 << 30, 3);
        assert_eq!(
            (outcome.evicted_blobs, outcome.kept_blobs),
            (2, 3),
            "{outcome:?}"
        );
        assert!(!w.stored(&blobs[0]) && !w.stored(&blobs[1]) && w.stored(&blobs[2]));
        assert!(!outcome.over_limit);
    }

    #[test]
    fn eviction_order_is_by_newest_reference_not_by_name_or_first_reference() {
        let w = World::new();
        // Names sort the other way round from the finish times.
        let a = w.blob("a-newest", 100);
        let b = w.blob("b-middle", 100);
        let c = w.blob("c-oldest", 100);
        w.run(&[&a], Some(3 * DAY));
        w.run(&[&b], Some(2 * DAY));
        w.run(&[&c], Some(DAY));
        // First referenced early, but referenced again last of all.
        w.run(&[&c, &a], Some(DAY / 2));
        w.run(&[&c], Some(4 * DAY));
        let mut gone = Vec::new();
        for limit in [200, 100, 0] {
            w.sweep(None, limit.max(1));
            for (name, digest) in [("a", &a), ("b", &b), ("c", &c)] {
                if !w.stored(digest) && !gone.contains(&name) {
                    gone.push(name);
                }
            }
        }
        assert_eq!(gone, ["b", "a", "c"]);
    }

    #[test]
    fn within_the_retention_window_nothing_is_deleted_for_size() {
        let w = World::new();
        let recent = w.blob("recent", 1000);
        let running = w.blob("running", 1000);
        let old = w.blob("old", 1000);
        w.run(&[&recent], Some(NOW - DAY));
        w.run(&[&running], None);
        w.run(&[&old], Some(NOW - 31 * DAY));
        let outcome = w.sweep(Some(30), 100);
        assert_eq!((outcome.expired_blobs, outcome.evicted_blobs), (1, 0));
        assert!(w.stored(&recent) && w.stored(&running) && !w.stored(&old));
        assert!(
            outcome.over_limit,
            "over the limit, with a warning, not a deletion"
        );
    }

    #[test]
    fn stale_temporary_files_are_removed_and_fresh_ones_kept() {
        let w = World::new();
        let blob = w.blob("kept", 10);
        w.run(&[&blob], Some(NOW - DAY));
        let dir = w.dir.path().join("artifacts/sha256");
        let stale = dir.join(".tmp-crashed");
        let fresh = dir.join(".tmp-in-progress");
        std::fs::write(&stale, b"half").expect("write");
        std::fs::write(&fresh, b"half").expect("write");
        let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .expect("open")
            .set_modified(two_days_ago)
            .expect("mtime");
        let outcome = w.sweep(Some(30), 50 << 30);
        assert_eq!((outcome.stale_temporaries, outcome.scanned_blobs), (1, 1));
        assert!(!stale.exists() && fresh.exists() && w.stored(&blob));
    }
}

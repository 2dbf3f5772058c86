//! The disk space image pulls may take, checked at every write rather than once up front.
//!
//! A layer's declared (compressed) size says nothing about what it unpacks to: a 2.5 MiB gzip
//! of zeros inflates to gigabytes. So every write a pull makes (a blob download, each unpacked
//! entry) first *claims* its bytes here, against a fresh reading of the cache filesystem's free
//! space minus the host's reserve minus what other pulls of this process have claimed and not
//! yet written. Concurrent pulls therefore cannot all pass one check at once, and a bomb stops
//! at the entry that would cross the reserve, not after it. A claim ends when its write is done
//! (the filesystem's free count then shows the bytes; ext4, xfs and tmpfs count buffered writes
//! at once).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::executor::HostReserve;

/// Bytes one entry costs beyond its contents (inode, directory entry, block rounding).
const ENTRY_OVERHEAD: u64 = 4096;

/// Frees space when a claim does not fit (prunes unused cache entries); it is given a test
/// that says whether there is room yet.
/// It is given how many bytes the claim is short of, and a test for whether there is room yet.
pub type Reclaim = Box<dyn Fn(u64, &dyn Fn() -> bool) + Send + Sync>;

/// Space claimed by this process's pulls on the image cache's filesystem.
pub struct SpaceLedger {
    dir: PathBuf,
    reserve: u64,
    claimed: Mutex<u64>,
    reclaim: Option<Reclaim>,
}

impl std::fmt::Debug for SpaceLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceLedger")
            .field("dir", &self.dir)
            .field("reserve", &self.reserve)
            .field("claimed", &self.claimed)
            .finish_non_exhaustive()
    }
}

/// Bytes being written; released on drop.
#[derive(Debug)]
pub struct SpaceClaim {
    ledger: Arc<SpaceLedger>,
    bytes: u64,
}

impl Drop for SpaceClaim {
    fn drop(&mut self) {
        let mut claimed = self
            .ledger
            .claimed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *claimed = claimed.saturating_sub(self.bytes);
    }
}

/// What an entry of `size` content bytes takes on disk, at most (whole 4 KiB blocks plus one).
pub fn entry_cost(size: u64) -> u64 {
    size.div_ceil(ENTRY_OVERHEAD)
        .saturating_mul(ENTRY_OVERHEAD)
        .saturating_add(ENTRY_OVERHEAD)
}

impl SpaceLedger {
    /// A ledger for the filesystem holding `dir`, keeping `reserve` bytes free.
    pub fn new(dir: &Path, reserve: u64, reclaim: Option<Reclaim>) -> Arc<SpaceLedger> {
        Arc::new(SpaceLedger {
            dir: dir.to_path_buf(),
            reserve,
            claimed: Mutex::new(0),
            reclaim,
        })
    }

    /// Claims `bytes` for `what` (a blob, an entry's path), or says why there is no room. When
    /// they do not fit, unused cache entries are pruned first (once) if that makes room.
    pub fn claim(self: &Arc<Self>, bytes: u64, what: &str) -> io::Result<SpaceClaim> {
        if let Some(reclaim) = &self.reclaim {
            let short = self.shortfall(bytes)?;
            if short > 0 {
                reclaim(short, &|| self.check(bytes, what).is_ok());
            }
        }
        let mut claimed = self.claimed.lock().unwrap_or_else(|e| e.into_inner());
        self.fits(*claimed, bytes, what)?;
        *claimed = claimed.saturating_add(bytes);
        Ok(SpaceClaim {
            ledger: Arc::clone(self),
            bytes,
        })
    }

    /// How many bytes `bytes` more are short of fitting now (0: they fit).
    pub fn shortfall(&self, bytes: u64) -> io::Result<u64> {
        let claimed = *self.claimed.lock().unwrap_or_else(|e| e.into_inner());
        let free = HostReserve::free_bytes(&self.dir)?;
        Ok(bytes
            .saturating_add(claimed)
            .saturating_add(self.reserve)
            .saturating_sub(free))
    }

    /// Whether `bytes` more would fit now, without claiming them.
    pub fn check(&self, bytes: u64, what: &str) -> io::Result<()> {
        let claimed = *self.claimed.lock().unwrap_or_else(|e| e.into_inner());
        self.fits(claimed, bytes, what)
    }

    fn fits(&self, claimed: u64, bytes: u64, what: &str) -> io::Result<()> {
        let free = HostReserve::free_bytes(&self.dir)?;
        let needed = bytes.saturating_add(claimed).saturating_add(self.reserve);
        if free >= needed {
            return Ok(());
        }
        // What other pulls (other projects' jobs) are writing and the host's free space go to
        // the server's log only: the error reaches this job's log, which its author reads.
        tracing::warn!(
            dir = %self.dir.display(),
            free,
            claimed_by_others = claimed,
            bytes,
            reserve = self.reserve,
            "an image pull does not fit above the host's reserve"
        );
        Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "{what} ({}) would take the host below its reserve of {}",
                mib(bytes),
                mib(self.reserve)
            ),
        ))
    }
}

/// `12.3 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn claims_add_up_until_they_are_released() {
        let dir = tempfile::tempdir().unwrap();
        let free = HostReserve::free_bytes(dir.path()).unwrap();
        // Keep all but 10 MiB of what is free: 10 MiB may be claimed.
        let ledger = SpaceLedger::new(dir.path(), free.saturating_sub(10 << 20), None);
        let first = ledger.claim(6 << 20, "first").unwrap();
        // Control passed; the second claim alone would fit, together they do not.
        let err = ledger.claim(6 << 20, "second").expect_err("both at once");
        assert!(err.to_string().contains("second (6.0 MiB)"), "{err}");
        // Nothing about other pulls or the host's free space reaches the job.
        assert!(!err.to_string().contains("free"), "{err}");
        assert!(ledger.check(6 << 20, "second").is_err());
        drop(first);
        let _second = ledger.claim(6 << 20, "second").unwrap();
    }

    #[test]
    fn a_claim_that_does_not_fit_reclaims_first() {
        let dir = tempfile::tempdir().unwrap();
        let free = HostReserve::free_bytes(dir.path()).unwrap();
        let asked = Arc::new(Mutex::new(0));
        let seen = Arc::clone(&asked);
        let ledger = SpaceLedger::new(
            dir.path(),
            free.saturating_sub(1 << 20),
            Some(Box::new(move |short: u64, room: &dyn Fn() -> bool| {
                assert!(short > 0 && !room(), "asked to reclaim while there is room");
                *seen.lock().unwrap() += 1;
            })),
        );
        // Control: a claim that fits reclaims nothing.
        drop(ledger.claim(4096, "small").unwrap());
        assert_eq!(*asked.lock().unwrap(), 0);
        // Reclaiming freed nothing here, so the claim still fails, after one attempt.
        ledger.claim(64 << 20, "big").expect_err("no room");
        assert_eq!(*asked.lock().unwrap(), 1);
    }

    #[test]
    fn entries_cost_whole_blocks_plus_one() {
        assert_eq!(entry_cost(0), 4096);
        assert_eq!(entry_cost(1), 8192);
        assert_eq!(entry_cost(4096), 8192);
        assert_eq!(entry_cost(u64::MAX), u64::MAX);
    }
}

//! Sync history: one JSON line per sync in `data_dir/syncs.jsonl` (commit, applied, pruned,
//! refused and why, failures, health). `airlock-reconciler reconcile status` prints it; `promote`
//! reads the last sync of the source environment to learn what runs healthily there.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::target::Health;

/// The version of [`SyncRecord`] this code writes.
pub const SYNC_RECORD_VERSION: u32 = 1;
/// File name under `data_dir`.
pub const HISTORY_FILE: &str = "syncs.jsonl";

/// One sync of every configured environment at one commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRecord {
    /// [`SYNC_RECORD_VERSION`].
    pub version: u32,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
    /// Environment repository commit.
    pub commit: String,
    /// `poll`, `hook` or `once`.
    pub trigger: String,
    /// Per namespace.
    pub namespaces: Vec<NamespaceResult>,
}

/// What one sync did to one namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NamespaceResult {
    /// Environment.
    pub environment: String,
    /// Namespace.
    pub namespace: String,
    /// Objects applied (created, updated or repaired after drift).
    pub applied: Vec<Change>,
    /// Objects already as desired.
    pub unchanged: Vec<String>,
    /// Inventory members deleted because Git no longer has them.
    pub pruned: Vec<String>,
    /// Why pruning was held back, if it was.
    pub prune_held: Option<String>,
    /// Objects not admitted, with every reason.
    pub refused: Vec<Refusal>,
    /// Objects the target failed to apply or delete.
    pub failed: Vec<Failure>,
    /// Health of every member after the sync, by `Kind/name`.
    pub health: BTreeMap<String, MemberHealth>,
}

/// One applied object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// `Kind/name`.
    pub object: String,
    /// `create`, `update` or `repair`.
    pub action: String,
    /// Where it is defined.
    pub location: String,
    /// For `repair`: what had drifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
}

/// One refused object (or file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// `Kind/name`, or the file when it could not be read.
    pub object: String,
    /// `file#document`.
    pub location: String,
    /// Every reason.
    pub reasons: Vec<String>,
}

/// One failed target operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// `Kind/name`.
    pub object: String,
    /// What the target said.
    pub error: String,
}

/// Health of one member and what it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberHealth {
    /// Health.
    pub health: Health,
    /// Images (`REPO@sha256:...`).
    pub images: Vec<String>,
    /// Not applied or failed in this sync: the health was seen at least one sync after the
    /// change, so a container that crashes right after starting does not count as healthy.
    #[serde(default)]
    pub settled: bool,
}

impl SyncRecord {
    /// Total counts: (applied, pruned, refused, failed).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        self.namespaces.iter().fold((0, 0, 0, 0), |acc, n| {
            (
                acc.0 + n.applied.len(),
                acc.1 + n.pruned.len(),
                acc.2 + n.refused.len(),
                acc.3 + n.failed.len(),
            )
        })
    }

    /// True when `image` runs healthily somewhere in `environment` at this sync, on an object
    /// that this sync did not (re)apply: healthy one sync after the change, not just started.
    pub fn runs_healthy(&self, environment: &str, image: &str) -> bool {
        self.namespaces
            .iter()
            .filter(|n| n.environment == environment)
            .flat_map(|n| n.health.values())
            .any(|h| h.settled && h.health.is_healthy() && h.images.iter().any(|i| i == image))
    }
}

/// Appends `record` as one line and syncs it to disk.
pub fn append(data_dir: &Path, record: &SyncRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    airlock_pipeline::jsonl::append_line(&data_dir.join(HISTORY_FILE), record)
}

/// The last `n` records, oldest first. A torn last line (a crash mid-write) is skipped.
pub fn read_last(data_dir: &Path, n: usize) -> std::io::Result<Vec<SyncRecord>> {
    let path = data_dir.join(HISTORY_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = std::collections::VecDeque::with_capacity(n.min(1024));
    for line in BufReader::new(file).lines() {
        let line = line?;
        if let Ok(record) = serde_json::from_str::<SyncRecord>(&line) {
            if out.len() == n {
                out.pop_front();
            }
            out.push_back(record);
        }
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(commit: &str) -> SyncRecord {
        SyncRecord {
            version: SYNC_RECORD_VERSION,
            started_at: "t".into(),
            finished_at: "t".into(),
            commit: commit.into(),
            trigger: "once".into(),
            namespaces: vec![NamespaceResult {
                environment: "staging".into(),
                namespace: "shop".into(),
                health: BTreeMap::from([(
                    "Pod/web".into(),
                    MemberHealth {
                        health: Health::Healthy,
                        images: vec!["r@sha256:1".into()],
                        settled: true,
                    },
                )]),
                ..NamespaceResult::default()
            }],
        }
    }

    #[test]
    fn keeps_the_last_n_and_skips_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        for c in ["a", "b", "c"] {
            append(dir.path(), &record(c)).unwrap();
        }
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(HISTORY_FILE))
            .unwrap()
            .write_all(b"{\"version\":1,\"sta")
            .unwrap();
        let last = read_last(dir.path(), 2).unwrap();
        assert_eq!(
            last.iter().map(|r| r.commit.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        assert!(last[1].runs_healthy("staging", "r@sha256:1"));
        assert!(!last[1].runs_healthy("production", "r@sha256:1"));
        assert!(!last[1].runs_healthy("staging", "r@sha256:2"));
    }
}

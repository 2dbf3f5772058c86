//! The durable set of (project, commit, job) the builder has built, so that a replayed pass record
//! is a no-op. A JSON-lines file appended to and fsynced per entry: tiny, append-only, and
//! readable by an operator without tools.

use std::collections::BTreeSet;
use std::io::{self, BufRead as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One built job.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltKey {
    /// Project name.
    pub project: String,
    /// Commit id.
    pub commit: String,
    /// Job name.
    pub job: String,
}

/// The built set, loaded at open and kept in memory.
#[derive(Debug)]
pub struct BuiltState {
    path: PathBuf,
    built: Mutex<BTreeSet<BuiltKey>>,
}

impl BuiltState {
    /// Opens (or starts) the state file at `path`. A line that does not parse is an error: a
    /// silently skipped line would let that build be replayed.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let built: BTreeSet<BuiltKey> = read_json_lines(&path)?.into_iter().collect();
        Ok(BuiltState {
            path,
            built: Mutex::new(built),
        })
    }

    /// The file this state lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `key` was built. A poisoned lock answers yes: refusing a record is recoverable,
    /// building one twice is not.
    pub fn contains(&self, key: &BuiltKey) -> bool {
        self.built
            .lock()
            .map(|set| set.contains(key))
            .unwrap_or(true)
    }

    /// Records `key` as built, durably, before returning.
    pub fn insert(&self, key: &BuiltKey) -> io::Result<()> {
        let mut set = self
            .built
            .lock()
            .map_err(|_| io::Error::other("built state lock poisoned"))?;
        if set.contains(key) {
            return Ok(());
        }
        append_json_line(&self.path, key)?;
        set.insert(key.clone());
        Ok(())
    }
}

/// Every line of a JSON-lines file (none when it does not exist yet). A line that does not
/// parse is an error naming the file and line: skipping it silently would forget an entry.
pub(crate) fn read_json_lines<T: DeserializeOwned>(path: &Path) -> io::Result<Vec<T>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut entries = Vec::new();
    for (n, line) in io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let entry = serde_json::from_str(&line).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} line {}: {e}", path.display(), n + 1),
            )
        })?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Appends one JSON line (file mode 0600) and syncs it before returning.
pub(crate) fn append_json_line<T: Serialize>(path: &Path, entry: &T) -> io::Result<()> {
    airlock_pipeline::jsonl::append_line(path, entry)
}

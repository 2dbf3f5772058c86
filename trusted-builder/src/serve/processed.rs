//! The durable set of outbox names the builder has dealt with (`processed.jsonl`).

use std::collections::BTreeSet;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Outcome;
use crate::intake::state::{append_json_line, read_json_lines};

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessedLine {
    name: String,
    outcome: Outcome,
}

/// The durable set of outbox names dealt with (JSON lines, fsynced per entry).
#[derive(Debug)]
pub struct Processed {
    path: PathBuf,
    names: BTreeSet<String>,
}

impl Processed {
    /// Opens (or starts) the file; a line that does not parse is an error, since skipping it
    /// would re-process (and re-log) that record.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let names = read_json_lines::<ProcessedLine>(&path)?
            .into_iter()
            .map(|entry| entry.name)
            .collect();
        Ok(Processed { path, names })
    }

    /// Whether `name` was dealt with.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Records `name` as dealt with, durably.
    pub fn mark(&mut self, name: &str, outcome: Outcome) -> io::Result<()> {
        if self.names.contains(name) {
            return Ok(());
        }
        let entry = ProcessedLine {
            name: name.to_owned(),
            outcome,
        };
        append_json_line(&self.path, &entry)?;
        self.names.insert(name.to_owned());
        Ok(())
    }
}

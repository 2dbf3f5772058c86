//! The builder's append-only decision log: one JSON object per line, each a typed [`Decision`]
//! with a sequence number, a time and the sha256 of the previous line, so that editing,
//! removing or reordering lines breaks [`verify_chain`].
//!
//! The file is opened with `O_APPEND` and every line is fsynced before [`AuditLog::append`]
//! returns: a decision that was acted on is on disk. The chain detects tampering by someone who
//! cannot also rewrite every later line; shipping the last hash elsewhere (later) closes that.

use std::fs::File;
use std::io::{self, BufRead as _};
use std::path::{Path, PathBuf};

use airlock_pipeline::jsonl::JsonLines;
use airlock_pipeline::record::OutputDigest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use airlock_pipeline::record::PassRecord;

/// The decision log's file name in the builder's data directory.
pub const DECISIONS_FILE: &str = "decisions.jsonl";

/// Which record a decision is about, when it could be read at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// Project name.
    pub project: String,
    /// Full ref name.
    pub git_ref: String,
    /// Commit id.
    pub commit: String,
    /// Job name.
    pub job: String,
}

impl Subject {
    /// The subject of a record.
    pub fn of(record: &PassRecord) -> Self {
        Subject {
            project: record.project.clone(),
            git_ref: record.git_ref.clone(),
            commit: record.commit.clone(),
            job: record.job.clone(),
        }
    }
}

/// The `prev_sha256` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One decision of the builder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Decision {
    /// Intake accepted a record.
    Accepted {
        /// The record's subject.
        subject: Subject,
    },
    /// A record was refused (at intake, or after a rebuild in strict mode).
    Refused {
        /// The record's subject, when it could be opened.
        subject: Option<Subject>,
        /// Why.
        reason: String,
    },
    /// A job was rebuilt.
    Built {
        /// The record's subject.
        subject: Subject,
        /// Every output equals CI's.
        reproduced: bool,
        /// Paths whose digests differ from CI's.
        differing: Vec<String>,
        /// The rebuilt outputs.
        outputs: Vec<OutputDigest>,
    },
    /// An image or artifact manifest was pushed to the registry.
    Pushed {
        /// The record's subject.
        subject: Subject,
        /// Where it was pushed: `REGISTRY/REPOSITORY:TAG`.
        image: String,
        /// The manifest digest (`sha256:<hex>`).
        digest: String,
    },
    /// An image was signed (cosign signature) and its provenance attached.
    Signed {
        /// The record's subject.
        subject: Subject,
        /// The repository the signature and attestation were pushed to.
        image: String,
        /// The signed manifest digest (`sha256:<hex>`).
        digest: String,
    },
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// 0 for the first line, then one more per line.
    pub seq: u64,
    /// When it was written: RFC 3339, UTC.
    pub at: String,
    /// Lowercase hex sha256 of the previous line's bytes (without its newline); [`GENESIS`] first.
    pub prev_sha256: String,
    /// The outbox entry (pass record file name) the decision is about, so a refusal of a record
    /// that could not even be opened can still be found by its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// What was decided.
    #[serde(flatten)]
    pub decision: Decision,
}

/// Why the log could not be written or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The log file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A line does not parse or does not continue the chain.
    #[error("decision log line {line}: {why}")]
    Broken {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        why: String,
    },
}

/// The open decision log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: JsonLines,
    next_seq: u64,
    prev: String,
}

impl AuditLog {
    /// Opens the log at `path` (mode 0600 when created), verifying the chain of what is already
    /// there: appending to a broken chain would hide where it broke.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, AuditError> {
        let path = path.into();
        let (next_seq, prev) = match verify_chain(&path) {
            Ok(tail) => tail,
            Err(AuditError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                (0, GENESIS.to_string())
            }
            Err(e) => return Err(e),
        };
        let file = JsonLines::open(&path).map_err(|source| AuditError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(AuditLog {
            path,
            file,
            next_seq,
            prev,
        })
    }

    /// Appends one decision and fsyncs it; returns the entry as written.
    pub fn append(&mut self, decision: Decision) -> Result<Entry, AuditError> {
        self.append_entry(None, decision)
    }

    /// Appends one decision about the pass record `record` (its outbox name).
    pub fn append_for(&mut self, record: &str, decision: Decision) -> Result<Entry, AuditError> {
        self.append_entry(Some(record.to_owned()), decision)
    }

    fn append_entry(
        &mut self,
        record: Option<String>,
        decision: Decision,
    ) -> Result<Entry, AuditError> {
        let entry = Entry {
            seq: self.next_seq,
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            prev_sha256: self.prev.clone(),
            record,
            decision,
        };
        let io_err = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        // One write of the whole line (O_APPEND: it lands in one piece at the end), synced.
        let line = self.file.append(&entry).map_err(io_err)?;
        self.prev = hex::encode(Sha256::digest(&line));
        self.next_seq += 1;
        Ok(entry)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads every entry of the log at `path` (for tests and operators), without checking the chain.
pub fn read_entries(path: &Path) -> Result<Vec<Entry>, AuditError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|e| AuditError::Broken {
                line: n as u64 + 1,
                why: e.to_string(),
            })
        })
        .collect()
}

/// Verifies the chain of the log at `path`: every line parses, numbers run from 0, and each
/// carries the sha256 of the line before it. Returns the number of entries and the hash of the
/// last line (what the next entry will carry).
pub fn verify_chain(path: &Path) -> Result<(u64, String), AuditError> {
    let file = File::open(path).map_err(|source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut prev = GENESIS.to_string();
    let mut seq = 0u64;
    for line in io::BufReader::new(file).lines() {
        let line = line.map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let broken = |why: String| AuditError::Broken { line: seq + 1, why };
        let entry: Entry = serde_json::from_str(&line).map_err(|e| broken(e.to_string()))?;
        if entry.seq != seq {
            return Err(broken(format!(
                "sequence number {} where {seq} was expected",
                entry.seq
            )));
        }
        if entry.prev_sha256 != prev {
            return Err(broken(
                "previous-line hash does not match: the log was edited".to_string(),
            ));
        }
        prev = hex::encode(Sha256::digest(line.as_bytes()));
        seq += 1;
    }
    Ok((seq, prev))
}

//! Append-only JSON-lines files (the builder's decision log, replay guard and processed list, the
//! reconciler's sync history): one value per line, written with a single `write` to a file
//! opened `O_APPEND` (so a line lands whole at the end, never interleaved) and flushed with
//! `fdatasync` before the call returns, because callers act on what they appended. Created
//! with mode 0600. Readers skip a torn last line (a crash mid-write).

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use serde::Serialize;

/// An open JSON-lines file.
#[derive(Debug)]
pub struct JsonLines {
    file: File,
}

impl JsonLines {
    /// Opens `path` for appending (created with mode 0600).
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(JsonLines { file })
    }

    /// Appends `value` as one line and syncs it; returns the line as written (without the
    /// newline), for callers that chain hashes over lines.
    pub fn append<T: Serialize>(&mut self, value: &T) -> io::Result<Vec<u8>> {
        let line = serde_json::to_vec(value).map_err(io::Error::other)?;
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(&line);
        buf.push(b'\n');
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        Ok(line)
    }
}

/// Opens `path`, appends `value` as one line and syncs it.
pub fn append_line<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    JsonLines::open(path)?.append(value).map(|_| ())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn lines_are_appended_whole_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        append_line(&path, &serde_json::json!({"a": 1})).unwrap();
        let mut log = JsonLines::open(&path).unwrap();
        let line = log.append(&serde_json::json!({"b": "x\ny"})).unwrap();
        assert_eq!(line, br#"{"b":"x\ny"}"#);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":\"x\\ny\"}\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

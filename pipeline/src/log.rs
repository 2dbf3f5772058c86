//! Job logs: timestamped lines, capped in memory with a visible marker.
//!
//! A job is untrusted and may print forever; the cap keeps the runner's
//! memory bounded while the rest of the output is still drained (so the job
//! never blocks on a full pipe) and counted.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::events::RunEvent;

/// Default cap on the bytes of log kept per job.
pub const DEFAULT_LOG_CAP: usize = 4 * 1024 * 1024;
/// Longest line kept; longer lines are split, so one newline-free stream cannot grow a line forever.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// What keeping one line costs beyond its text (timestamp, stream, allocation; one row and one
/// event downstream), counted against the cap: a stream of empty lines is not free.
pub const LINE_OVERHEAD: usize = 64;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The job's standard output.
    Stdout,
    /// The job's standard error.
    Stderr,
    /// Written by Airlock itself (retries, timeouts, truncation).
    System,
}

/// One line of a job's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Origin.
    pub stream: Stream,
    /// Text without the trailing newline (invalid UTF-8 replaced).
    pub text: String,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A job's log as kept in memory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobLog {
    /// Kept lines, in arrival order.
    pub lines: Vec<LogLine>,
    /// Bytes of text kept.
    pub kept_bytes: usize,
    /// Bytes received after the cap and dropped.
    pub dropped_bytes: u64,
    /// Whether the cap was reached.
    pub truncated: bool,
}

impl JobLog {
    /// The last `n` lines as text.
    pub fn tail(&self, n: usize) -> Vec<&str> {
        let start = self.lines.len().saturating_sub(n);
        self.lines[start..]
            .iter()
            .map(|l| l.text.as_str())
            .collect()
    }

    /// The log as plain text, one line per line (used for the log digest).
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.kept_bytes + self.lines.len());
        for line in &self.lines {
            out.push_str(&line.text);
            out.push('\n');
        }
        out
    }
}

/// Where an executor writes a job's output. Cheap to clone.
#[derive(Clone)]
pub struct LogSink {
    job: Arc<str>,
    cap: usize,
    log: Arc<Mutex<JobLog>>,
    events: Option<broadcast::Sender<RunEvent>>,
}

impl LogSink {
    /// A sink keeping at most `cap` bytes, publishing lines to `events` if given.
    pub fn new(job: &str, cap: usize, events: Option<broadcast::Sender<RunEvent>>) -> Self {
        LogSink {
            job: job.into(),
            cap,
            log: Arc::new(Mutex::new(JobLog::default())),
            events,
        }
    }

    /// Appends one line (already split at newlines by the caller).
    pub fn push(&self, stream: Stream, text: String) {
        let Ok(mut log) = self.log.lock() else { return };
        if log.truncated {
            log.dropped_bytes += text.len() as u64 + 1;
            return;
        }
        let cost = (log.lines.len() + 1)
            .saturating_mul(LINE_OVERHEAD)
            .saturating_add(log.kept_bytes + text.len());
        if cost > self.cap {
            log.truncated = true;
            log.dropped_bytes += text.len() as u64 + 1;
            let marker = LogLine {
                at_ms: now_ms(),
                stream: Stream::System,
                text: format!(
                    "[airlock] log truncated: more than {} bytes (each line counts {LINE_OVERHEAD} more than its text); the rest is dropped",
                    self.cap
                ),
            };
            self.publish(&marker);
            log.lines.push(marker);
            return;
        }
        let line = LogLine {
            at_ms: now_ms(),
            stream,
            text,
        };
        log.kept_bytes += line.text.len();
        self.publish(&line);
        log.lines.push(line);
    }

    /// Appends a line written by Airlock itself. Never dropped by the cap,
    /// so a timeout or retry notice is always visible.
    pub fn system(&self, text: impl Into<String>) {
        let line = LogLine {
            at_ms: now_ms(),
            stream: Stream::System,
            text: text.into(),
        };
        self.publish(&line);
        if let Ok(mut log) = self.log.lock() {
            log.lines.push(line);
        }
    }

    fn publish(&self, line: &LogLine) {
        if let Some(tx) = &self.events {
            // No subscriber is fine: events are for whoever watches.
            let _ = tx.send(RunEvent::Log {
                job: self.job.to_string(),
                line: line.clone(),
            });
        }
    }

    /// A copy of the log so far.
    pub fn snapshot(&self) -> JobLog {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Closes the log, noting how much was dropped, and returns it.
    pub fn finish(&self) -> JobLog {
        let dropped = self
            .log
            .lock()
            .map(|l| (l.truncated, l.dropped_bytes))
            .unwrap_or((false, 0));
        if dropped.0 {
            self.system(format!(
                "[airlock] {} bytes of output were dropped after the log cap",
                dropped.1
            ));
        }
        self.snapshot()
    }
}

/// Splits a byte stream into lines of at most [`MAX_LINE_BYTES`].
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; calls `emit` for each complete line.
    pub fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(String)) {
        while !bytes.is_empty() {
            let room = MAX_LINE_BYTES - self.pending.len();
            let window = &bytes[..bytes.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.pending.extend_from_slice(&window[..i]);
                    emit(self.take());
                    bytes = &bytes[i + 1..];
                }
                None => {
                    self.pending.extend_from_slice(window);
                    bytes = &bytes[window.len()..];
                    if self.pending.len() >= MAX_LINE_BYTES {
                        emit(self.take());
                    }
                }
            }
        }
    }

    /// Emits what is left at end of stream.
    pub fn flush(&mut self, mut emit: impl FnMut(String)) {
        if !self.pending.is_empty() {
            emit(self.take());
        }
    }

    fn take(&mut self) -> String {
        let bytes = std::mem::take(&mut self.pending);
        let text = String::from_utf8_lossy(&bytes);
        text.strip_suffix('\r').unwrap_or(&text).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_handles_partial_and_long_lines() {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        s.feed(b"ab", |l| out.push(l));
        s.feed(b"c\nde\r\nf", |l| out.push(l));
        s.flush(|l| out.push(l));
        assert_eq!(out, ["abc", "de", "f"]);
        let mut out = Vec::new();
        s.feed(&vec![b'x'; MAX_LINE_BYTES * 2 + 5], |l| out.push(l));
        s.flush(|l| out.push(l));
        assert_eq!(
            out.iter().map(String::len).collect::<Vec<_>>(),
            [MAX_LINE_BYTES, MAX_LINE_BYTES, 5]
        );
    }

    /// Issue 19: empty lines cost a line each, not nothing.
    #[test]
    fn empty_lines_count_against_the_cap() {
        let sink = LogSink::new("j", 10 * LINE_OVERHEAD, None);
        for _ in 0..1000 {
            sink.push(Stream::Stdout, String::new());
        }
        let log = sink.finish();
        assert!(log.truncated);
        // Ten lines, the marker and the dropped-bytes notice.
        assert_eq!(log.lines.len(), 12, "{:?}", log.lines.len());
        assert_eq!(log.dropped_bytes, 990);
    }

    #[test]
    fn cap_truncates_with_a_marker_and_counts_the_rest() {
        let sink = LogSink::new("j", 10 + 2 * LINE_OVERHEAD, None);
        for _ in 0..5 {
            sink.push(Stream::Stdout, "abcd".into());
        }
        let log = sink.finish();
        assert!(log.truncated);
        assert_eq!(log.kept_bytes, 8);
        assert!(log.lines.iter().any(|l| l.text.contains("log truncated")));
        assert!(
            log.lines
                .last()
                .map(|l| l.text.contains("15 bytes of output were dropped"))
                .unwrap_or(false)
        );
    }
}

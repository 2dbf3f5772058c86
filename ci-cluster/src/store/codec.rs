//! Conversions between Rust values and SQLite columns.
//!
//! rusqlite is built without `fallible_uint`, so `u64` times go through
//! `i64` here; enums the pipeline crate only serialises are mapped by hand,
//! with exhaustive matches so a new variant is a compile error, not a row
//! that cannot be read back.

use airlock_pipeline::events::JobState;
use airlock_pipeline::log::Stream;
use rusqlite::Row;
use rusqlite::types::Type;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;

/// A time or size for SQLite. Milliseconds since the epoch fit in `i64` for
/// the next 290 million years; saturate rather than fail on nonsense input.
pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Same, for optional columns.
pub(super) fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(to_i64)
}

/// A decoding failure at column `idx`, reported as [`StoreError::Corrupt`].
pub(super) fn bad(idx: usize, msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, msg.into())
}

/// A non-negative integer column as `u64`.
pub(super) fn get_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v))
}

/// A nullable non-negative integer column as `Option<u64>`.
pub(super) fn get_opt_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    match row.get::<_, Option<i64>>(idx)? {
        None => Ok(None),
        Some(v) => u64::try_from(v)
            .map(Some)
            .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v)),
    }
}

/// A JSON text column.
pub(super) fn get_json<T: DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| bad(idx, format!("stored JSON does not parse: {e}")))
}

/// A text column parsed with `FromStr`.
pub(super) fn get_parsed<T>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text: String = row.get(idx)?;
    text.parse().map_err(|e: T::Err| bad(idx, e.to_string()))
}

/// JSON text for a column.
pub(super) fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    // Serialising our own plain data types cannot fail in practice; if it
    // ever does, the value is not something we could store faithfully.
    serde_json::to_string(v)
        .map_err(|e| StoreError::Corrupt(format!("cannot serialise for storage: {e}")))
}

/// `JobState`'s snake_case serde name (checked against serde in the tests).
pub(super) fn job_state_name(state: JobState) -> &'static str {
    match state {
        JobState::Pending => "pending",
        JobState::Running => "running",
        JobState::Passed => "passed",
        JobState::Failed => "failed",
        JobState::TimedOut => "timed_out",
        JobState::OutOfMemory => "out_of_memory",
        JobState::Skipped => "skipped",
        JobState::Cancelled => "cancelled",
        JobState::Error => "error",
    }
}

/// Every `JobState`, for parsing and tests.
pub(super) const JOB_STATES: [JobState; 9] = [
    JobState::Pending,
    JobState::Running,
    JobState::Passed,
    JobState::Failed,
    JobState::TimedOut,
    JobState::OutOfMemory,
    JobState::Skipped,
    JobState::Cancelled,
    JobState::Error,
];

/// A stored job state.
pub(super) fn get_job_state(row: &Row<'_>, idx: usize) -> rusqlite::Result<JobState> {
    let text: String = row.get(idx)?;
    JOB_STATES
        .into_iter()
        .find(|s| job_state_name(*s) == text)
        .ok_or_else(|| bad(idx, format!("unknown job state '{text}'")))
}

/// `Stream`'s lowercase serde name.
pub(super) fn stream_name(stream: Stream) -> &'static str {
    match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
        Stream::System => "system",
    }
}

/// A stored stream name.
pub(super) fn get_stream(row: &Row<'_>, idx: usize) -> rusqlite::Result<Stream> {
    let text: String = row.get(idx)?;
    [Stream::Stdout, Stream::Stderr, Stream::System]
        .into_iter()
        .find(|s| stream_name(*s) == text)
        .ok_or_else(|| bad(idx, format!("unknown log stream '{text}'")))
}

/// The first 12 characters of a commit id, as people quote it.
pub(super) fn short_commit(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

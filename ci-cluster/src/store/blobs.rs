//! Which runs reference which stored output, for the artifact retention sweep
//! (`serve::retention`).
//!
//! A blob in the artifact store is named by its sha256; `job_outputs` says
//! which runs produced it. The sweep may delete a blob only when no queued or
//! running run names it and no final run that names it finished within the
//! retention window, and it checks that again under the write lock right
//! before each deletion (see [`Store::remove_unreferenced`]).

use std::collections::HashMap;
use std::ops::ControlFlow;

use rusqlite::{OptionalExtension, Transaction};

use super::codec::get_opt_u64;
use super::{Store, StoreError};

/// Digests checked and removed per write transaction: short enough that
/// intake and runners wait a few milliseconds at most.
const BATCH: usize = 256;

/// The runs that reference one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlobRefs {
    /// A queued or running run references it.
    pub active: bool,
    /// When the newest final run that references it finished.
    pub newest_finished_ms: Option<u64>,
}

impl BlobRefs {
    /// Whether a sweep may delete the blob: no queued or running run
    /// references it, and (when `keep_since_ms` is set) no final run that
    /// finished at or after `keep_since_ms` does.
    pub fn removable(&self, keep_since_ms: Option<u64>) -> bool {
        if self.active {
            return false;
        }
        match (keep_since_ms, self.newest_finished_ms) {
            (Some(since), Some(newest)) => newest < since,
            _ => true,
        }
    }
}

/// Per digest: whether any referencing run is active, and the newest finish
/// time of the final ones (a final run without `finished_ms`, which the store
/// never writes, counts from its start or creation).
const REFS_SELECT: &str = "SELECT o.sha256,
        MAX(r.status IN ('queued', 'running')),
        MAX(CASE WHEN r.status IN ('queued', 'running') THEN NULL
                 ELSE COALESCE(r.finished_ms, r.started_ms, r.created_ms) END)
     FROM job_outputs o JOIN runs r ON r.id = o.run_id";

fn refs_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, BlobRefs)> {
    Ok((
        row.get(0)?,
        BlobRefs {
            active: row.get::<_, i64>(1)? != 0,
            newest_finished_ms: get_opt_u64(row, 2)?,
        },
    ))
}

fn refs_of(tx: &Transaction<'_>, sha256: &str) -> Result<BlobRefs, StoreError> {
    let sql = format!("{REFS_SELECT} WHERE o.sha256 = ?1 GROUP BY o.sha256");
    Ok(tx
        .query_row(&sql, [sha256], refs_from_row)
        .optional()?
        .map(|(_, refs)| refs)
        .unwrap_or_default())
}

impl Store {
    /// Every digest that some run's outputs name, with its references.
    pub fn blob_refs(&self) -> Result<HashMap<String, BlobRefs>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare(&format!("{REFS_SELECT} GROUP BY o.sha256"))?;
            let rows = stmt.query_map([], refs_from_row)?;
            Ok(rows.collect::<rusqlite::Result<HashMap<_, _>>>()?)
        })
    }

    /// The references of one digest.
    pub fn blob_refs_of(&self, sha256: &str) -> Result<BlobRefs, StoreError> {
        self.read(|tx| refs_of(tx, sha256))
    }

    /// Goes through `digests` in order; for each one that is still
    /// [`BlobRefs::removable`] with `keep_since_ms`, calls `remove` (which
    /// deletes the blob and says whether to go on). Returns how many digests
    /// were handed to `remove`.
    ///
    /// The check and `remove` happen inside one IMMEDIATE transaction (per
    /// batch), so no run can record a reference between them: recording
    /// outputs (`set_outputs`) is a write too. A run that records the digest
    /// afterwards stores the blob again, because the runner records a job's
    /// outputs before it copies them into the artifact store. `remove` must
    /// not call the store.
    pub fn remove_unreferenced(
        &self,
        digests: &[String],
        keep_since_ms: Option<u64>,
        remove: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<usize, StoreError> {
        let mut handed = 0;
        for batch in digests.chunks(BATCH) {
            let stop = self.write(|tx| {
                for digest in batch {
                    if !refs_of(tx, digest)?.removable(keep_since_ms) {
                        continue;
                    }
                    handed += 1;
                    if remove(digest).is_break() {
                        return Ok(true);
                    }
                }
                Ok(false)
            })?;
            if stop {
                break;
            }
        }
        Ok(handed)
    }
}

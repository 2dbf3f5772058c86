//! What the server's tasks share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use airlock_pipeline::source::SourceCache;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::intake_writer::IntakeWriter;
use crate::config::Config;
use crate::store::{RunId, Store};

/// Shared state of `ci-cluster serve`.
#[derive(Clone)]
pub struct AppState {
    /// The loaded configuration.
    pub config: Arc<Config>,
    /// The durable store.
    pub store: Arc<Store>,
    /// Commits accepted events in batches (group commit) before their 2xx.
    pub intake: IntakeWriter,
    /// Wakes the runner when a run was queued.
    pub runs_queued: Arc<Notify>,
    /// Wakes the report worker when a report was enqueued.
    pub reports_queued: Arc<Notify>,
    /// Cancel handles of the runs executing in this process.
    pub running: Arc<Mutex<HashMap<RunId, CancellationToken>>>,
    /// Git mirrors under the data directory.
    pub sources: SourceCache,
    /// Stops every task on shutdown.
    pub shutdown: CancellationToken,
    /// What `/metrics` exports that the store does not know (job durations, refusals).
    pub metrics: Arc<crate::kernel::metrics::Metrics>,
}

impl AppState {
    /// Cancels a run executing here (no-op for one that is not).
    pub fn cancel_local(&self, run: RunId) {
        if let Some(token) = self
            .running
            .lock()
            .ok()
            .and_then(|map| map.get(&run).cloned())
        {
            token.cancel();
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    airlock_pipeline::log::now_ms()
}

//! Group commit for intake: every accepted event goes through one writer
//! task that commits whatever has queued up meanwhile in one transaction.
//!
//! An event must be committed before its 2xx, and with `synchronous = FULL`
//! every commit costs an fsync, so one commit per event caps intake at the
//! disk's fsync rate (a few thousand per second at best, far less on a
//! network disk). Here a handler queues its event and awaits the reply; the
//! writer takes the first queued event and every other one already waiting,
//! commits them with [`Store::accept_events`] (one fsync) and answers each.
//! Nothing waits for a batch to fill: an event arriving at an idle writer is
//! committed alone at once, so batching adds no latency at low load and
//! batches grow only while a commit is in flight.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::state::now_ms;
use crate::event::ForgeEvent;
use crate::store::{Accepted, Store, StoreError};

/// Most events per transaction: bounds how long one commit holds the store
/// (the runner and the API wait for it) and what one failure rolls back.
const MAX_BATCH: usize = 256;

/// Events queued for the writer before handlers wait to queue theirs: under
/// overload, requests slow down instead of memory growing.
const QUEUE_CAPACITY: usize = 4096;

/// One event waiting for its commit, and where its outcome goes.
struct Pending {
    project: String,
    event: ForgeEvent,
    reply: oneshot::Sender<Result<Accepted, StoreError>>,
}

/// Why an event could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum IntakeWriteError {
    /// The store refused or failed; nothing was stored for this event.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer task is gone (shutdown, or it panicked): the outcome is unknown.
    #[error("the intake writer has stopped")]
    Stopped,
}

/// Handle to the writer task; cheap to clone. The task ends when the last
/// handle is dropped.
#[derive(Clone)]
pub struct IntakeWriter {
    queue: mpsc::Sender<Pending>,
}

impl IntakeWriter {
    /// Starts the writer task on the current Tokio runtime.
    pub fn start(store: Arc<Store>) -> IntakeWriter {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(write_loop(store, receiver));
        IntakeWriter { queue }
    }

    /// Stores the event for `project`; returns once it is committed (or
    /// refused), exactly as [`Store::accept_event`] would have.
    pub async fn accept(
        &self,
        project: String,
        event: ForgeEvent,
    ) -> Result<Accepted, IntakeWriteError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending {
                project,
                event,
                reply,
            })
            .await
            .map_err(|_| IntakeWriteError::Stopped)?;
        Ok(answer.await.map_err(|_| IntakeWriteError::Stopped)??)
    }
}

async fn write_loop(store: Arc<Store>, mut queue: mpsc::Receiver<Pending>) {
    let mut pending = Vec::with_capacity(MAX_BATCH);
    // `recv_many` waits for one event, then takes those already queued
    // without waiting for more; 0 means every handle was dropped.
    while queue.recv_many(&mut pending, MAX_BATCH).await > 0 {
        let (items, replies): (Vec<_>, Vec<_>) = pending
            .drain(..)
            .map(|p| ((p.project, p.event), p.reply))
            .unzip();
        let store = store.clone();
        match tokio::task::spawn_blocking(move || commit(&store, &items)).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    // The handler may be gone (client hung up); its event is stored all the same.
                    let _ = reply.send(result);
                }
            }
            // Dropping the replies makes each handler answer 500: it cannot
            // know whether the commit happened, and the forge will redeliver
            // (a committed event then dedupes).
            Err(e) => tracing::error!(error = %e, "intake commit task failed"),
        }
    }
}

/// Commits a batch; per-event results, in order.
fn commit(store: &Store, items: &[(String, ForgeEvent)]) -> Vec<Result<Accepted, StoreError>> {
    let now = now_ms();
    match store.accept_events(items, now) {
        Ok(accepted) => accepted.into_iter().map(Ok).collect(),
        Err(e) if items.len() > 1 => {
            // The batch rolled back as a whole. One by one, an event that
            // cannot be stored fails alone instead of taking the others with it.
            tracing::warn!(error = %e, events = items.len(), "batch commit failed; storing its events one by one");
            items
                .iter()
                .map(|(project, event)| store.accept_event(project, event, now))
                .collect()
        }
        Err(e) => vec![Err(e)],
    }
}

#[cfg(test)]
mod tests {
    use airlock_pipeline::spec::EventKind;

    use super::*;
    use crate::event::{Forge, Intent, ReportTarget};

    fn push(delivery: &str) -> ForgeEvent {
        let sha = "ab".repeat(20);
        ForgeEvent {
            forge: Forge::Github,
            repository: "org/app".into(),
            delivery: delivery.into(),
            body_sha256: None,
            intent: Intent::Run,
            kind: EventKind::Push,
            git_ref: "refs/heads/main".into(),
            commit: sha.clone(),
            change: None,
            title: String::new(),
            author: String::new(),
            report: ReportTarget::Github {
                repo: "org/app".into(),
                sha,
            },
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_deliveries_each_get_their_own_committed_outcome() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Arc::new(Store::open(&dir.path().join("ci.sqlite")).expect("open"));
        let writer = IntakeWriter::start(store.clone());
        // Every delivery twice, all at once: whatever the batches turn out to
        // be, each delivery is stored once and its copy is a duplicate.
        let mut handlers = tokio::task::JoinSet::new();
        for i in 0..400 {
            let writer = writer.clone();
            handlers.spawn(async move {
                (
                    i / 2,
                    writer
                        .accept("app".into(), push(&format!("d-{}", i / 2)))
                        .await,
                )
            });
        }
        let mut new_by_delivery = std::collections::BTreeMap::<usize, usize>::new();
        while let Some(joined) = handlers.join_next().await {
            let (delivery, outcome) = joined.expect("handler");
            let counted = new_by_delivery.entry(delivery).or_default();
            match outcome.expect("stored") {
                Accepted::New { run: Some(run), .. } => {
                    *counted += 1;
                    // Answered only once committed: the run is readable now.
                    assert!(store.run(run).expect("query").is_some());
                }
                Accepted::Duplicate | Accepted::Replayed { .. } | Accepted::Ignored { .. } => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(new_by_delivery.len(), 200);
        assert!(
            new_by_delivery.values().all(|&n| n == 1),
            "{new_by_delivery:?}"
        );
        let counts = store.counts().expect("counts");
        assert_eq!((counts.events, counts.queued), (200, 200));
    }
}

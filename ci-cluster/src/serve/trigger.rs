//! Scheduled runs: each project's cron schedules make a manual-style event
//! ([`crate::kernel::manual_event`]) stored like any forge event.

use croner::Cron;

use crate::event::Forge;
use crate::kernel::{AppState, manual_event, now_ms};
use crate::store::Accepted;

/// Runs every project's cron schedules until shutdown.
pub async fn schedules(state: AppState) {
    let mut tasks = tokio::task::JoinSet::new();
    for project in state.config.file.projects.clone() {
        for schedule in project.schedules.clone() {
            let cron = match schedule.cron.parse::<Cron>() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(project = %project.name, cron = %schedule.cron, error = %e, "invalid cron schedule; skipped");
                    continue;
                }
            };
            let (state, project) = (state.clone(), project.clone());
            tasks.spawn(async move {
                loop {
                    let now = chrono::Utc::now();
                    let Ok(next) = cron.find_next_occurrence(&now, false) else { break };
                    let wait = (next - now).to_std().unwrap_or_default();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = state.shutdown.cancelled() => break,
                    }
                    match manual_event(&state, &project, &schedule.git_ref, Forge::Schedule).await {
                        Ok(event) => {
                            let store = state.store.clone();
                            let name = project.name.clone();
                            let stored = tokio::task::spawn_blocking(move || store.accept_event(&name, &event, now_ms())).await;
                            if let Ok(Ok(Accepted::New { .. })) = stored {
                                state.runs_queued.notify_one();
                            }
                            tracing::info!(project = %project.name, git_ref = %schedule.git_ref, "scheduled run queued");
                        }
                        Err(e) => tracing::error!(project = %project.name, error = %e, "scheduled run failed to start"),
                    }
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
}

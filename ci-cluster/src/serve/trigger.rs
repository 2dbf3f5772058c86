//! Manual and scheduled runs: resolve a ref to a commit in our own mirror
//! and store the event like any forge event.

use std::sync::atomic::{AtomicU64, Ordering};

use airlock_pipeline::spec::EventKind;
use croner::Cron;

use super::state::{AppState, now_ms};
use crate::config::ProjectFile;
use crate::event::{Forge, ForgeEvent, Intent, ReportTarget};
use crate::store::Accepted;

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Builds the event for a manual (`Forge::Manual`) or scheduled (`Forge::Schedule`) run of `git_ref`.
pub async fn manual_event(
    state: &AppState,
    project: &ProjectFile,
    git_ref: &str,
    forge: Forge,
) -> anyhow::Result<ForgeEvent> {
    if !git_ref.starts_with("refs/")
        || git_ref.contains("..")
        || git_ref.contains(char::is_whitespace)
    {
        anyhow::bail!("'{git_ref}' is not a full ref name such as refs/heads/main");
    }
    let (sources, url, r) = (
        state.sources.clone(),
        project.git_url.clone(),
        git_ref.to_string(),
    );
    let (commit, title) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(String, String)> {
            let (mirror, commit) = sources.fetch_rev(&url, &r)?;
            let title = mirror
                .commit_summary(&commit)
                .map(|s| s.subject)
                .unwrap_or_default();
            Ok((commit.to_string(), title))
        })
        .await??;
    let kind = match forge {
        Forge::Schedule => EventKind::Schedule,
        _ => EventKind::Manual,
    };
    Ok(ForgeEvent {
        forge,
        repository: project.name.clone(),
        delivery: format!(
            "{}:{}:{}:{}",
            forge.as_str(),
            project.name,
            now_ms(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ),
        body_sha256: None,
        intent: Intent::Run,
        kind,
        git_ref: git_ref.to_string(),
        commit,
        change: None,
        title,
        author: forge.as_str().to_string(),
        report: ReportTarget::None,
    })
}

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

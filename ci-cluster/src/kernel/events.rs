//! Storing an accepted event: committed (group commit) before the 2xx, then the runner is woken
//! and superseded runs here are cancelled. Manual and scheduled runs build their event here too.

use std::sync::atomic::{AtomicU64, Ordering};

use airlock_pipeline::spec::EventKind;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::refusal::{Refusal, internal};
use super::state::{AppState, now_ms};
use crate::config::ProjectFile;
use crate::event::{Forge, ForgeEvent, Intent, ReportTarget};
use crate::store::Accepted;

/// Commits the event (batched with concurrent ones, see `intake_writer`)
/// and only then answers.
pub(crate) async fn store_event(
    state: &AppState,
    project: &str,
    event: ForgeEvent,
) -> Result<Response, Refusal> {
    // What the answer and the log line need; the event itself moves to the writer.
    let (delivery, intent, git_ref) = (event.delivery.clone(), event.intent, event.git_ref.clone());
    let accepted = state
        .intake
        .accept(project.to_string(), event)
        .await
        .map_err(internal)?;
    match accepted {
        Accepted::Duplicate => Ok((
            StatusCode::OK,
            Json(json!({"status": "duplicate", "delivery": delivery})),
        )
            .into_response()),
        Accepted::Replayed { event_id } => {
            // Same answer as a redelivery: a replayer learns nothing more.
            tracing::warn!(project, first_event = event_id, delivery = %delivery,
                "replayed body: accepted before under another delivery id; nothing stored");
            Ok((
                StatusCode::OK,
                Json(json!({
                    "status": "duplicate",
                    "delivery": delivery,
                    "reason": "this body was accepted before under another delivery id",
                })),
            )
                .into_response())
        }
        Accepted::Ignored { event_id, reason } => {
            // Stored, acknowledged (so the forge does not retry), and nothing else.
            tracing::info!(project, event_id, intent = ?intent, git_ref = %git_ref, reason = %reason,
                "event ignored: older than what is known of its change, or the change is closed");
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"status": "ignored", "event": event_id, "reason": reason})),
            )
                .into_response())
        }
        Accepted::New {
            event_id,
            run,
            cancel_running,
        } => {
            for id in &cancel_running {
                state.cancel_local(*id);
            }
            if run.is_some() {
                state.runs_queued.notify_one();
            }
            tracing::info!(project, event_id, run = ?run, intent = ?intent, git_ref = %git_ref, "event accepted");
            let status = if intent == Intent::Run {
                "queued"
            } else {
                "cancelled"
            };
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"status": status, "event": event_id, "run": run, "cancelled": cancel_running})),
            )
                .into_response())
        }
    }
}

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
            // The commit's author wrote the subject: the same one clean line of at most 200
            // characters as a forge's title.
            let title = mirror
                .commit_summary(&commit)
                .map(|s| crate::intake::display_text(&s.subject))
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

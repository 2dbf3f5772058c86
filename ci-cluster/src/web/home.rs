//! `/`: every configured project with its latest run, then the latest runs.

use axum::extract::State;
use maud::{Markup, html};

use super::layout::{self, Nav};
use super::runs::runs_table;
use super::{WebError, read_store};
use crate::kernel::AppState;
use crate::store::{RunFilter, RunRow, RunStatus};

/// How many runs the front page lists under the projects.
const RECENT: usize = 15;

/// `GET /`.
pub async fn page(State(state): State<AppState>) -> Result<Markup, WebError> {
    let names: Vec<String> = state
        .config
        .file
        .projects
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let (latest, recent, counts) = read_store(&state, move |store| {
        let mut latest = Vec::with_capacity(names.len());
        for name in names {
            let filter = RunFilter {
                project: Some(name.clone()),
                limit: 1,
                ..RunFilter::default()
            };
            latest.push((name, store.runs(&filter)?.into_iter().next()));
        }
        let recent = store.runs(&RunFilter {
            limit: RECENT,
            ..RunFilter::default()
        })?;
        Ok((latest, recent, store.counts()?))
    })
    .await?;
    let now = layout::now_ms();
    let count = |s: RunStatus| counts.runs_by_status.get(s.as_str()).copied().unwrap_or(0);
    let body = html! {
        div.page-head {
            h1 { "Projects" }
            p.summary {
                @for status in [RunStatus::Running, RunStatus::Queued, RunStatus::Passed, RunStatus::Failed] {
                    a.stat href={ "/runs?status=" (status.as_str()) } {
                        (layout::run_badge(status)) " " strong { (count(status)) }
                    }
                }
            }
        }
        @if latest.is_empty() {
            p.empty { "No project is configured. Add a " code { "[[projects]]" } " table to the server's ci.toml." }
        } @else {
            div.cards {
                @for (name, run) in &latest {
                    (project_card(&state, name, run.as_ref(), now))
                }
            }
        }
        h2 { "Latest runs" }
        @if recent.is_empty() {
            p.empty { "Nothing has run yet." }
        } @else {
            (runs_table(&recent, now))
            p.more { a href="/runs" { "All runs →" } }
        }
    };
    Ok(layout::page("Projects", Nav::Projects, body))
}

fn project_card(state: &AppState, name: &str, run: Option<&RunRow>, now: u64) -> Markup {
    let project = state.config.project(name);
    let class = run
        .map(|r| layout::run_status_parts(r.status).1)
        .unwrap_or("st-none");
    html! {
        article class={ "card " (class) } {
            header {
                h3 { a href={ "/runs?project=" (layout::url_segment(name)) } { (name) } }
                @if let Some(p) = project {
                    span.forge { (p.forge.as_str()) }
                }
            }
            @match run {
                Some(r) => {
                    p.latest {
                        (layout::run_badge(r.status)) " "
                        a href={ "/runs/" (r.id) } { "#" (r.id) }
                        " on " code.ref { (layout::ref_label(&r.git_ref)) }
                        " at " (layout::commit_short(&r.commit))
                    }
                    p.title { a href={ "/runs/" (r.id) } { (layout::event_title(&r.event)) } }
                    p.meta {
                        (layout::when(r.finished_ms.or(r.started_ms).unwrap_or(r.created_ms), now))
                        @if let Some(d) = layout::span_ms(r.started_ms, r.finished_ms, now) {
                            " · took " (layout::duration(d))
                        }
                        @if !r.event.author.is_empty() { " · by " (r.event.author) }
                    }
                }
                None => p.empty { "No run yet." }
            }
        }
    }
}

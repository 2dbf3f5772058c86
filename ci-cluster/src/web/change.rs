//! `/changes/{project}/{change}`: every patchset of a change and each of its
//! runs with the jobs' results, newest first.

use axum::extract::{Path, State};
use maud::{Markup, html};

use super::layout::{self, Nav};
use super::{WebError, read_store};
use crate::kernel::AppState;
use crate::store::{JobRow, RunFilter, RunRow};

/// `GET /changes/{project}/{change}`.
pub async fn page(
    State(state): State<AppState>,
    Path((project, change)): Path<(String, String)>,
) -> Result<Markup, WebError> {
    let filter = RunFilter {
        project: Some(project.clone()),
        change: Some(change.clone()),
        ..RunFilter::default()
    };
    let runs: Vec<(RunRow, Vec<JobRow>)> = read_store(&state, move |store| {
        let mut out = Vec::new();
        for run in store.runs(&filter)? {
            let jobs = store.jobs(run.id)?;
            out.push((run, jobs));
        }
        Ok(out)
    })
    .await?;
    if runs.is_empty() {
        return Err(WebError::not_found(format!(
            "No run of change {change} in project {project}."
        )));
    }
    // Newest patchset first, and within one patchset the newest run first.
    let mut runs = runs;
    runs.sort_by(|(a, _), (b, _)| b.patchset.cmp(&a.patchset).then(b.id.cmp(&a.id)));
    let now = layout::now_ms();
    let newest = &runs[0].0;
    let forge_url = newest.event.change.as_ref().and_then(|c| c.url.clone());
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/" { "Projects" } " › "
            a href={ "/runs?project=" (layout::url_segment(&project)) } { (project) } " › "
            span { "change " (change) }
        }
        div.page-head {
            h1 { "Change " (change) " " span.subtle { (layout::event_title(&newest.event)) } }
            p.meta {
                (newest.event.forge.as_str()) " · " (runs.len()) " run" @if runs.len() != 1 { "s" }
                @if !newest.event.author.is_empty() { " · by " (newest.event.author) }
                " " (layout::external_link(forge_url.as_deref(), "open on the forge"))
            }
        }
        ol.patchsets {
            @for (run, jobs) in &runs {
                li class={ "patchset " (layout::run_status_parts(run.status).1) } {
                    div.ps-head {
                        span.ps-number {
                            @match run.patchset { Some(p) if p > 0 => { "Patchset " (p) }, _ => { "Revision" } }
                        }
                        (layout::run_badge(run.status))
                        a.run-link href={ "/runs/" (run.id) } { "Run #" (run.id) }
                        (layout::commit_short(&run.commit))
                        span.ps-title { (layout::event_title(&run.event)) }
                        span.ps-when { (layout::when(run.created_ms, now)) }
                    }
                    @if let Some(reason) = &run.reason { p.reason { (reason) } }
                    @if !jobs.is_empty() {
                        ul.job-chips {
                            @for job in jobs {
                                li {
                                    a href={ "/runs/" (run.id) "#job-" (job.name) } {
                                        (layout::job_badge(job.state)) " " span.job-name { (job.name) }
                                        @if let Some(d) = layout::span_ms(job.started_ms, job.finished_ms, now) {
                                            span.dur { (layout::duration(d)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        &format!("Change {change} · {project}"),
        Nav::Runs,
        body,
    ))
}

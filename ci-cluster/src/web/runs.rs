//! `/runs`: every run, newest first, filtered by a plain GET form and
//! paginated with `?page=N`; and the runs table other pages reuse.

use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, Nav, url_segment};
use super::{WebError, read_store};
use crate::kernel::AppState;
use crate::store::{RunFilter, RunRow, RunStatus};

/// Runs per page.
pub const PER_PAGE: usize = 50;

/// The filter form's fields; empty fields mean "any".
#[derive(Debug, Default, Deserialize)]
pub struct RunsQuery {
    project: Option<String>,
    status: Option<String>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    change: Option<String>,
    page: Option<String>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl RunsQuery {
    fn filter(&self) -> Result<RunFilter, WebError> {
        let status = match non_empty(&self.status) {
            Some(s) => Some(s.parse::<RunStatus>().map_err(WebError::bad_request)?),
            None => None,
        };
        let git_ref = non_empty(&self.git_ref).map(|r| {
            // People type `main`; the store keeps full refs.
            if r.starts_with("refs/") {
                r
            } else {
                format!("refs/heads/{r}")
            }
        });
        Ok(RunFilter {
            project: non_empty(&self.project),
            status,
            git_ref,
            change: non_empty(&self.change),
            limit: PER_PAGE + 1,
            offset: (self.page_number() - 1).saturating_mul(PER_PAGE),
            commit: None,
        })
    }

    fn page_number(&self) -> usize {
        self.page
            .as_deref()
            .and_then(|p| p.trim().parse::<usize>().ok())
            .unwrap_or(1)
            .clamp(1, 1_000_000)
    }

    /// This query string with another page number.
    fn href(&self, page: usize) -> String {
        let mut parts = Vec::new();
        for (key, value) in [
            ("project", &self.project),
            ("status", &self.status),
            ("ref", &self.git_ref),
            ("change", &self.change),
        ] {
            if let Some(v) = non_empty(value) {
                parts.push(format!("{key}={}", url_segment(&v)));
            }
        }
        if page > 1 {
            parts.push(format!("page={page}"));
        }
        if parts.is_empty() {
            "/runs".into()
        } else {
            format!("/runs?{}", parts.join("&"))
        }
    }
}

/// `GET /runs`.
pub async fn page(
    State(state): State<AppState>,
    Query(query): Query<RunsQuery>,
) -> Result<Markup, WebError> {
    let filter = query.filter()?;
    let mut rows = read_store(&state, move |store| store.runs(&filter)).await?;
    let has_next = rows.len() > PER_PAGE;
    rows.truncate(PER_PAGE);
    let page = query.page_number();
    let now = layout::now_ms();
    let projects: Vec<&str> = state
        .config
        .file
        .projects
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    let chosen_project = non_empty(&query.project).unwrap_or_default();
    let chosen_status = non_empty(&query.status).unwrap_or_default();
    let body = html! {
        div.page-head { h1 { "Runs" } }
        form.filters method="get" action="/runs" {
            label { "Project "
                select name="project" {
                    option value="" { "any" }
                    @for p in &projects {
                        option value=(p) selected[*p == chosen_project] { (p) }
                    }
                }
            }
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for s in RunStatus::ALL {
                        option value=(s.as_str()) selected[s.as_str() == chosen_status] { (s.as_str()) }
                    }
                }
            }
            label { "Ref " input type="text" name="ref" placeholder="main or refs/…" value=[non_empty(&query.git_ref)]; }
            label { "Change " input type="text" name="change" inputmode="numeric" size="8" value=[non_empty(&query.change)]; }
            button type="submit" { "Filter" }
            @if query.href(1) != "/runs" { a.reset href="/runs" { "Clear" } }
        }
        @if rows.is_empty() {
            p.empty { @if page > 1 { "No runs on this page." } @else { "No run matches." } }
        } @else {
            (runs_table(&rows, now))
        }
        nav.pager aria-label="Pages" {
            @if page > 1 { a rel="prev" href=(query.href(page - 1)) { "← Newer" } } @else { span.disabled { "← Newer" } }
            span.pageno { "Page " (page) }
            @if has_next { a rel="next" href=(query.href(page + 1)) { "Older →" } } @else { span.disabled { "Older →" } }
        }
    };
    Ok(layout::page("Runs", Nav::Runs, body))
}

/// The runs table: status, run, project, ref or change, commit, title, when, duration.
pub fn runs_table(rows: &[RunRow], now: u64) -> Markup {
    html! {
        div.table-wrap {
            table.runs {
                thead { tr {
                    th { "Status" } th { "Run" } th { "Project" } th { "Ref / change" } th { "Commit" }
                    th { "Title" } th { "When" } th.num { "Duration" }
                } }
                tbody {
                    @for r in rows {
                        tr {
                            td { (layout::run_badge(r.status)) }
                            td { a href={ "/runs/" (r.id) } { "#" (r.id) } }
                            td { (r.project) }
                            td {
                                @match (layout::change_href(r), layout::change_label(r)) {
                                    (Some(href), Some(label)) => a href=(href) { (label) },
                                    _ => code.ref { (layout::ref_label(&r.git_ref)) },
                                }
                            }
                            td { (layout::commit_short(&r.commit)) }
                            td.title-cell {
                                a href={ "/runs/" (r.id) } { (layout::event_title(&r.event)) }
                                @if !r.event.author.is_empty() { span.by { " · " (r.event.author) } }
                            }
                            td.when { (layout::when(r.created_ms, now)) }
                            td.num {
                                @if let Some(d) = layout::span_ms(r.started_ms, r.finished_ms, now) { (layout::duration(d)) } @else { "–" }
                            }
                        }
                    }
                }
            }
        }
    }
}

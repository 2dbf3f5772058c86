//! The sections of the run page other than the graph and the logs: the
//! header (what caused the run, when, how long), outputs and reports.

use maud::{Markup, html};

use super::layout;
use super::logs::LogTail;
use crate::event::ReportTarget;
use crate::store::{JobRow, ReportRow, RunId, RunRow};

/// Breadcrumbs, status, title and the facts about the run and its event.
pub fn header(run: &RunRow, now: u64) -> Markup {
    let event = &run.event;
    let change_url = event.change.as_ref().and_then(|c| c.url.as_deref());
    html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/" { "Projects" } " › "
            a href={ "/runs?project=" (layout::url_segment(&run.project)) } { (run.project) } " › "
            @if let (Some(href), Some(number)) = (layout::change_href(run), &run.change_number) {
                a href=(href) { "change " (number) } " › "
            }
            span { "run #" (run.id) }
        }
        header.run-head #run-head data-refresh {
            div.run-title-row {
                span #run-status { (layout::run_badge(run.status)) }
                h1 { "Run #" (run.id) " " span.subtle { "of " (run.project) } }
            }
            p.run-title { (layout::event_title(event)) }
            dl.facts {
                div { dt { "Ref" } dd { code.ref { (run.git_ref) } } }
                div.wide { dt { "Commit" } dd { code.commit-full { (run.commit) } } }
                div { dt { "Trigger" } dd { (event.forge.as_str()) " " (event.kind.as_str()) " event" } }
                @if let Some(label) = layout::change_label(run) {
                    div { dt { "Change" } dd {
                        @if let Some(href) = layout::change_href(run) { a href=(href) { (label) } } @else { (label) }
                        " " (layout::external_link(change_url, event.forge.as_str()))
                    } }
                }
                @if !event.author.is_empty() {
                    div { dt { "Author" } dd { (event.author) } }
                }
                @match run.started_ms {
                    Some(started) => div { dt { "Started" } dd {
                        (layout::when(started, now))
                        " · queued " (layout::duration(started.saturating_sub(run.created_ms)))
                    } },
                    None => div { dt { "Queued" } dd { (layout::when(run.created_ms, now)) } },
                }
                div { dt { "Duration" } dd {
                    @match layout::span_ms(run.started_ms, run.finished_ms, now) {
                        Some(d) if run.finished_ms.is_some() => { (layout::duration(d)) },
                        Some(d) => {
                            // `app.js` keeps this ticking while the page is live.
                            span data-since=[run.started_ms] data-suffix=" so far" { (layout::duration(d)) " so far" }
                        },
                        None => { "–" },
                    }
                } }
                @if run.attempt > 1 {
                    div { dt { "Attempt" } dd { (run.attempt) " (re-queued after a restart)" } }
                }
            }
            @if let Some(reason) = &run.reason {
                pre.reason { (reason) }
            }
        }
    }
}

/// A hidden job section `app.js` clones when the live stream names a job the
/// page does not have yet (a run that was queued when the page loaded).
pub fn job_template(run: RunId) -> Markup {
    html! {
        template #job-template data-run=(run) {
            details.job.st-pending open {
                summary {
                    span.job-badge { (layout::job_badge(airlock_pipeline::events::JobState::Pending)) }
                    span.job-name {}
                    span.dur {}
                    span.lines {}
                    span.detail {}
                    a.raw { "raw" }
                }
                div.log-wrap { ol.log data-seq="0" {} }
            }
        }
    }
}

/// Every output with size, digest and a download link.
pub fn outputs(run: RunId, jobs: &[(JobRow, LogTail)]) -> Markup {
    let files: Vec<(&str, &airlock_pipeline::outputs::OutputFile)> = jobs
        .iter()
        .flat_map(|(j, _)| j.outputs.iter().map(move |o| (j.name.as_str(), o)))
        .collect();
    html! {
        section.panel #outputs data-refresh {
            h2 { "Outputs" }
            @if files.is_empty() {
                p.empty { "No outputs." }
            } @else {
                div.table-wrap {
                    table.outputs {
                        thead { tr { th { "File" } th { "Job" } th.num { "Size" } th { "sha256" } th {} } }
                        tbody {
                            @for (job, file) in &files {
                                tr {
                                    td { code { (file.path) } @if file.executable { span.tag { "executable" } } }
                                    td { (job) }
                                    td.num { (layout::size(file.size)) }
                                    td { code.digest { (file.sha256) } }
                                    td { a.button href={ "/runs/" (run) "/outputs/" (file.sha256) } download { "Download" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn target_text(target: &ReportTarget) -> String {
    let short = |s: &str| s.chars().take(10).collect::<String>();
    match target {
        ReportTarget::Gerrit { change, revision } => {
            format!("Gerrit change {change}, revision {}", short(revision))
        }
        ReportTarget::Github { repo, sha } => format!("GitHub {repo} at {}", short(sha)),
        ReportTarget::Gitlab { project_id, sha } => {
            format!("GitLab project {project_id} at {}", short(sha))
        }
        ReportTarget::None => "nowhere (manual or scheduled run)".into(),
    }
}

/// What was reported back to the forge and whether it got there.
pub fn reports(reports: &[ReportRow], now: u64) -> Markup {
    html! {
        section.panel #reports data-refresh {
            h2 { "Reports to the forge" }
            @if reports.is_empty() {
                p.empty { "Nothing reported (yet)." }
            } @else {
                div.table-wrap {
                    table.reports {
                        thead { tr { th { "Target" } th { "Reported" } th { "Delivery" } th.num { "Attempts" } th { "Last error" } } }
                        tbody {
                            @for r in reports {
                                tr {
                                    td { (target_text(&r.target)) }
                                    td { code { (r.body.get("status").and_then(|s| s.as_str()).unwrap_or("-")) } }
                                    td {
                                        @if let Some(sent) = r.sent_ms {
                                            span.delivery.ok { "✓ sent " (layout::when(sent, now)) }
                                        } @else if r.gave_up {
                                            span.delivery.bad { "✗ gave up" }
                                        } @else {
                                            span.delivery.wait { "○ pending" }
                                        }
                                    }
                                    td.num { (r.attempts) }
                                    td { @if let Some(e) = &r.last_error { span.error-text { (e) } } @else { "–" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

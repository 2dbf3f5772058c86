//! `ci-cluster runs list | get | logs`: read CI results from a running
//! server, modelled on `argo list / get / logs`.
//!
//! Exit status: 0 done, 1 the run (or job) does not exist, the server
//! refused or could not be reached, 2 usage.

mod client;
mod format;
mod logs;

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use self::client::{Client, ClientError, encode};
use self::format::{age, cell, duration, run_duration, subject, table, timestamp};
use crate::api::model::Run;
use crate::api::responses::{RunDetail, RunPage};
use crate::serve::now_ms;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// The API's JSON (one object per line for `logs`).
    Json,
}

/// Options every `runs` subcommand takes.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// The server's base URL.
    #[arg(
        long,
        global = true,
        env = "AIRLOCK_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// Arguments of `runs`.
#[derive(Args, Clone, Debug)]
pub struct RunsArgs {
    #[command(subcommand)]
    command: RunsCommand,
    #[command(flatten)]
    common: Common,
}

#[derive(Subcommand, Clone, Debug)]
enum RunsCommand {
    /// List runs, newest first.
    List(ListArgs),
    /// Show a run: its event, jobs, outputs and reports.
    Get {
        /// Run id.
        id: i64,
    },
    /// Print a run's job logs; -f follows them until the run ends.
    Logs(logs::LogsArgs),
}

#[derive(Args, Clone, Debug)]
struct ListArgs {
    /// Only this project.
    #[arg(long)]
    project: Option<String>,
    /// Only this status.
    #[arg(long, value_parser = ["queued", "running", "passed", "failed", "cancelled", "error"])]
    status: Option<String>,
    /// Only this full ref.
    #[arg(long = "ref", value_name = "REF")]
    git_ref: Option<String>,
    /// Only this change (Gerrit change, pull or merge request number).
    #[arg(long)]
    change: Option<String>,
    /// Runs per page.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
    limit: u32,
    /// Page, from 1.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    page: u32,
}

/// Entry point of `ci-cluster runs`.
pub fn main(args: RunsArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        let client = Client::new(&args.common.server)?;
        match &args.command {
            RunsCommand::List(list_args) => list(&client, list_args, args.common.output).await,
            RunsCommand::Get { id } => get(&client, *id, args.common.output).await,
            RunsCommand::Logs(logs_args) => {
                logs::logs(&client, logs_args, args.common.output).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, ClientError> {
    serde_json::to_string_pretty(value).map_err(|e| ClientError::Invalid {
        url: String::new(),
        why: e.to_string(),
    })
}

async fn list(client: &Client, args: &ListArgs, output: Output) -> Result<(), ClientError> {
    let mut query = format!("/api/v1/runs?page={}&per_page={}", args.page, args.limit);
    for (name, value) in [
        ("project", &args.project),
        ("status", &args.status),
        ("ref", &args.git_ref),
        ("change", &args.change),
    ] {
        if let Some(value) = value {
            query.push_str(&format!("&{name}={}", encode(value)));
        }
    }
    let page: RunPage = client.get(&query).await?;
    if output == Output::Json {
        println!("{}", json(&page)?);
        return Ok(());
    }
    if page.runs.is_empty() {
        println!("No runs found.");
        return Ok(());
    }
    let now = now_ms();
    let rows: Vec<Vec<String>> = page
        .runs
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                cell(&r.project, 30),
                r.status.as_str().to_string(),
                subject(r),
                r.commit.chars().take(12).collect(),
                age(r.created_ms, now),
                run_duration(r, now),
                cell(&r.title, 60),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "ID", "PROJECT", "STATUS", "ON", "COMMIT", "AGE", "DURATION", "TITLE"
            ],
            &rows
        )
    );
    if let Some(next) = page.next_page {
        println!("\nMore runs: --page {next}");
    }
    Ok(())
}

async fn get(client: &Client, id: i64, output: Output) -> Result<(), ClientError> {
    let detail: RunDetail = client.get(&format!("/api/v1/runs/{id}")).await?;
    if output == Output::Json {
        println!("{}", json(&detail)?);
        return Ok(());
    }
    print!("{}", describe(&detail, now_ms()));
    Ok(())
}

/// The `runs get` text: the run's fields, then its jobs, outputs and reports.
fn describe(detail: &RunDetail, now: u64) -> String {
    let run: &Run = &detail.run;
    let mut fields: Vec<(&str, String)> = vec![
        ("Run", run.id.to_string()),
        ("Project", cell(&run.project, 80)),
        (
            "Status",
            match &run.reason {
                Some(reason) => format!("{} ({})", run.status.as_str(), cell(reason, 200)),
                None => run.status.as_str().to_string(),
            },
        ),
        (
            "On",
            format!(
                "{} ({} event from {})",
                subject(run),
                run.kind.as_str(),
                run.forge.as_str()
            ),
        ),
        ("Ref", cell(&run.git_ref, 200)),
        ("Commit", run.commit.clone()),
        ("Title", cell(&run.title, 200)),
        ("Author", cell(&run.author, 80)),
        ("Created", timestamp(run.created_ms)),
    ];
    if let Some(url) = detail.event.change.as_ref().and_then(|c| c.url.as_deref()) {
        fields.push(("Change", cell(url, 200)));
    }
    if let Some(started) = run.started_ms {
        fields.push(("Started", timestamp(started)));
    }
    if let Some(finished) = run.finished_ms {
        fields.push(("Finished", timestamp(finished)));
    }
    fields.push(("Duration", run_duration(run, now)));
    if run.attempt > 1 {
        fields.push(("Attempt", run.attempt.to_string()));
    }
    if run.cancel_requested && !run.status.is_final() {
        fields.push(("Cancel", "requested".into()));
    }
    fields.push(("URL", run.url.clone()));
    let mut out: String = fields
        .iter()
        .map(|(k, v)| format!("{:<10}{v}\n", format!("{k}:")))
        .collect();

    if !detail.jobs.is_empty() {
        let rows: Vec<Vec<String>> = detail
            .jobs
            .iter()
            .map(|j| {
                let running = match (j.started_ms, j.duration_ms) {
                    (_, Some(d)) => duration(d),
                    (Some(start), None) => duration(now.saturating_sub(start)),
                    _ => "-".into(),
                };
                vec![
                    cell(&j.name, 40),
                    j.state.as_str().to_string(),
                    j.attempts.to_string(),
                    j.exit_code
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "-".into()),
                    running,
                    cell(j.detail.as_deref().unwrap_or(""), 100),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &["JOB", "STATE", "ATTEMPTS", "EXIT", "DURATION", "DETAIL"],
            &rows,
        ));
    }
    let outputs: Vec<Vec<String>> = detail
        .jobs
        .iter()
        .flat_map(|j| j.outputs.iter().map(move |o| (j, o)))
        .map(|(j, o)| {
            vec![
                cell(&j.name, 40),
                cell(&o.path, 100),
                format!("{} B", o.size),
                format!("sha256:{}", o.sha256),
            ]
        })
        .collect();
    if !outputs.is_empty() {
        out.push('\n');
        out.push_str(&table(&["JOB", "OUTPUT", "SIZE", "DIGEST"], &outputs));
    }
    if !detail.reports.is_empty() {
        let rows: Vec<Vec<String>> = detail
            .reports
            .iter()
            .map(|r| {
                let target = serde_json::to_value(&r.target)
                    .ok()
                    .and_then(|v| v.get("forge").and_then(|f| f.as_str()).map(str::to_string))
                    .unwrap_or_default();
                let state = match (r.sent_ms, r.gave_up) {
                    (Some(sent), _) => format!("sent {}", timestamp(sent)),
                    (None, true) => "gave up".into(),
                    (None, false) => "pending".into(),
                };
                vec![
                    r.id.to_string(),
                    target,
                    state,
                    r.attempts.to_string(),
                    cell(r.last_error.as_deref().unwrap_or(""), 100),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &["REPORT", "TO", "STATE", "ATTEMPTS", "LAST ERROR"],
            &rows,
        ));
    }
    out
}

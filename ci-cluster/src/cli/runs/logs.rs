//! `ci-cluster runs logs`: a run's job logs; with `-f`, followed live by
//! polling the log endpoint with `after=` (the last sequence number seen)
//! until the run is final.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use clap::Args;

use super::Output;
use super::client::{Client, ClientError, encode};
use crate::api::model::LogLine;
use crate::api::responses::{LogPage, RunDetail};
use airlock_pipeline::terminal::log_line;

/// How often a followed log is polled: fast enough to feel live, slow
/// enough to cost the server one cheap read per job per poll.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Arguments of `runs logs`.
#[derive(Args, Clone, Debug)]
pub struct LogsArgs {
    /// Run id.
    id: i64,
    /// Only this job (default: every job, each line prefixed with its job).
    #[arg(long, short)]
    job: Option<String>,
    /// Follow: print new lines as they are written, until the run ends.
    #[arg(long, short)]
    follow: bool,
}

/// Prints the logs (following them with `-f`).
pub async fn logs(client: &Client, args: &LogsArgs, output: Output) -> Result<(), ClientError> {
    let id = args.id;
    let mut cursors: BTreeMap<String, u64> = BTreeMap::new();
    let mut out = std::io::stdout();
    loop {
        let detail: RunDetail = client.get(&format!("/api/v1/runs/{id}")).await?;
        // Read before the lines: once the run is seen final, every line is
        // stored, so this pass is the last one needed.
        let final_now = detail.run.status.is_final();
        let jobs: Vec<String> = match &args.job {
            Some(job) => vec![job.clone()],
            None => detail.jobs.iter().map(|j| j.name.clone()).collect(),
        };
        let width = jobs.iter().map(|j| j.chars().count()).max().unwrap_or(0);
        for job in &jobs {
            loop {
                let after = cursors.get(job).copied().unwrap_or(0);
                let page: LogPage = client
                    .get(&format!(
                        "/api/v1/runs/{id}/jobs/{}/log?after={after}",
                        encode(job)
                    ))
                    .await?;
                let prefix = args
                    .job
                    .is_none()
                    .then(|| format!("{:<width$} | ", super::format::cell(job, 40)));
                if !print_lines(&mut out, job, prefix.as_deref(), &page.lines, output) {
                    // stdout was closed (`| head`): nothing more to do.
                    return Ok(());
                }
                cursors.insert(job.clone(), page.next_after);
                if !page.more {
                    break;
                }
            }
        }
        if !args.follow || final_now {
            return Ok(());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Writes lines to stdout and flushes them; false once stdout is gone.
fn print_lines(
    out: &mut std::io::Stdout,
    job: &str,
    prefix: Option<&str>,
    lines: &[LogLine],
    output: Output,
) -> bool {
    use std::io::IsTerminal as _;
    let colours = out.is_terminal();
    let mut lock = out.lock();
    for line in lines {
        let written = match output {
            Output::Json => {
                let value = serde_json::json!({
                    "job": job, "seq": line.seq, "at_ms": line.at_ms, "stream": line.stream, "text": line.text,
                });
                writeln!(lock, "{value}")
            }
            Output::Table => writeln!(
                lock,
                "{}{}",
                prefix.unwrap_or(""),
                log_line(&line.text, colours)
            ),
        };
        if written.is_err() {
            return false;
        }
    }
    lock.flush().is_ok()
}

//! Live progress of a run: a line per job state change; on a terminal, a
//! spinner with counts below them.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use airlock_pipeline::events::{JobState, RunEvent};
use airlock_pipeline::log::Stream;
use airlock_pipeline::terminal;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::broadcast;

/// Prints events until the run finishes; returns when it does.
pub async fn follow(mut events: broadcast::Receiver<RunEvent>, total: usize) {
    let started = Instant::now();
    let spinner = std::io::stderr().is_terminal().then(|| {
        let pb = ProgressBar::new_spinner();
        pb.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    });
    let width = 12;
    let mut states: HashMap<String, JobState> = HashMap::new();
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => break,
        };
        match event {
            RunEvent::Job {
                job,
                state,
                attempt,
                detail,
                ..
            } => {
                states.insert(job.clone(), state);
                if state == JobState::Pending {
                    continue;
                }
                let (mark, what) = match state {
                    JobState::Running if attempt > 1 => {
                        ("▶", format!("running (attempt {attempt})"))
                    }
                    JobState::Running => ("▶", "running".to_string()),
                    JobState::Passed => ("✔", detail.unwrap_or_else(|| "passed".into())),
                    JobState::Skipped => ("⊘", format!("skipped: {}", detail.unwrap_or_default())),
                    JobState::Cancelled => {
                        ("■", format!("cancelled: {}", detail.unwrap_or_default()))
                    }
                    other => (
                        "✘",
                        format!("{}: {}", other.as_str(), detail.unwrap_or_default()),
                    ),
                };
                // A detail can quote what the job wrote (a refused output's path).
                let line = format!(
                    "{:>6.1}s {mark} {:<width$} {}",
                    started.elapsed().as_secs_f64(),
                    terminal::field(&job),
                    terminal::field(&what)
                );
                match &spinner {
                    Some(pb) => pb.println(line),
                    None => eprintln!("{line}"),
                }
                if let Some(pb) = &spinner {
                    pb.set_message(counts(&states, total));
                }
            }
            // Pulling an image can take a while: its progress, and host mode, are shown live.
            // Only Airlock's own lines: a job printing "[airlock] image" is the job's text.
            RunEvent::Log { job, line }
                if line.stream == Stream::System
                    && (line.text.starts_with("[airlock] image ")
                        || line.text.starts_with("[airlock] host mode")) =>
            {
                let text = format!(
                    "{:>6.1}s   {:<width$} {}",
                    started.elapsed().as_secs_f64(),
                    terminal::field(&job),
                    terminal::field(line.text.trim_start_matches("[airlock] "))
                );
                match &spinner {
                    Some(pb) => pb.println(text),
                    None => eprintln!("{text}"),
                }
            }
            RunEvent::Log { .. } => {}
            RunEvent::Finished { .. } => break,
        }
    }
    if let Some(pb) = spinner {
        pb.finish_and_clear();
    }
}

fn counts(states: &HashMap<String, JobState>, total: usize) -> String {
    let n = |s: JobState| states.values().filter(|v| **v == s).count();
    let failed = states
        .values()
        .filter(|v| {
            v.is_final()
                && !matches!(
                    v,
                    JobState::Passed | JobState::Skipped | JobState::Cancelled
                )
        })
        .count();
    format!(
        "{} running · {} passed · {} failed · {} skipped · {} of {total} done",
        n(JobState::Running),
        n(JobState::Passed),
        failed,
        n(JobState::Skipped),
        states.values().filter(|v| v.is_final()).count()
    )
}

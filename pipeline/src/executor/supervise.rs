//! Watching a started job: draining its output into the log, and ending it
//! on timeout or cancellation together with everything it started.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use super::ExitReason;
use crate::log::{LineSplitter, LogSink, Stream};

/// How to signal a job's whole process tree.
pub(super) trait Terminator: Send + Sync {
    /// Sends `signal` to every process of the job.
    fn signal_tree(&self, signal: Signal);
}

/// Runs `child` to its end. At `deadline` (the job's `timeout` after its start, image pull
/// included) or on cancel: SIGTERM to the tree, then SIGKILL after `grace`. Returns the reason
/// and whether the output streams reached their end.
pub(super) async fn supervise(
    mut child: Child,
    log: &LogSink,
    timeout: Duration,
    deadline: tokio::time::Instant,
    grace: Duration,
    cancel: &CancellationToken,
    tree: &dyn Terminator,
) -> std::io::Result<ExitReason> {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let pump_out = tokio::spawn(pump(stdout, log.clone(), Stream::Stdout));
    let pump_err = tokio::spawn(pump(stderr, log.clone(), Stream::Stderr));

    let ended_by_us = tokio::select! {
        status = child.wait() => { let s = status?; finish_pumps(pump_out, pump_err).await; return Ok(classify(s)); }
        _ = tokio::time::sleep_until(deadline) => ExitReason::TimedOut,
        _ = cancel.cancelled() => ExitReason::Cancelled,
    };

    log.system(match ended_by_us {
        ExitReason::TimedOut => format!(
            "[airlock] timeout of {} reached: stopping the job",
            humantime::format_duration(timeout)
        ),
        _ => "[airlock] run cancelled: stopping the job".to_string(),
    });
    tree.signal_tree(Signal::SIGTERM);
    let exited = tokio::time::timeout(grace, child.wait()).await;
    if exited.is_err() {
        log.system(format!(
            "[airlock] still running {}s after SIGTERM: killing it",
            grace.as_secs_f32()
        ));
    }
    // Always: a child may have ignored SIGTERM even if the job's main process exited.
    tree.signal_tree(Signal::SIGKILL);
    let _ = child.kill().await;
    let _ = child.wait().await;
    finish_pumps(pump_out, pump_err).await;
    Ok(ended_by_us)
}

/// Waits for the output pumps, but not forever: a grandchild that escaped
/// (impossible in the sandbox, possible elsewhere) could hold a pipe open.
async fn finish_pumps(a: tokio::task::JoinHandle<()>, b: tokio::task::JoinHandle<()>) {
    let both = async {
        let _ = a.await;
        let _ = b.await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), both).await;
}

fn classify(status: std::process::ExitStatus) -> ExitReason {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitReason::Exited(code),
        (None, Some(sig)) => ExitReason::Signalled(sig),
        (None, None) => ExitReason::Exited(-1),
    }
}

async fn pump<R: AsyncRead + Unpin>(reader: Option<R>, log: LogSink, stream: Stream) {
    let Some(mut reader) = reader else { return };
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => splitter.feed(&buf[..n], |line| log.push(stream, line)),
        }
    }
    splitter.flush(|line| log.push(stream, line));
}

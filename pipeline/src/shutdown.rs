//! Stopping the long-running loops (`ci-cluster serve`, `trusted-builder serve`,
//! `airlock-reconciler reconcile`) cleanly on SIGINT or SIGTERM.

use tokio_util::sync::CancellationToken;

/// Cancels `stop` on SIGINT or SIGTERM (printing "`who`: shutting down"); the task ends on its
/// own once `stop` is cancelled by anyone else.
pub fn cancel_on_signal(stop: CancellationToken, who: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = stop.cancelled() => return,
        }
        eprintln!("{who}: shutting down");
        stop.cancel();
    })
}

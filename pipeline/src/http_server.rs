//! The HTTP server loop of `ci-cluster serve` and the reconciler's hook: what `axum::serve`
//! does, plus the bounds an open port needs. Anyone can connect to the webhook port, so a
//! client that sends its headers a byte a minute, or opens connections and sends nothing, must
//! not hold memory and tasks without end.
//!
//! - at most [`HttpLimits::max_connections`] connections at once; one over it is closed at
//!   accept;
//! - HTTP/1 only, one request per connection (no keep-alive): HTTP/2 would multiply what one
//!   connection may hold, and hyper's header timer does not run while a keep-alive connection
//!   idles between requests;
//! - the request's headers must arrive within [`HttpLimits::read_timeout`] from the moment the
//!   connection is served, whether or not a byte came (hyper's header read timeout, which needs
//!   a timer: `axum::serve` sets none, and its HTTP/1-or-2 detection reads the first bytes with
//!   no timeout at all);
//! - the body must then be read within the same time by the handler (the CI's
//!   `limited_body`; the hook reads at most 64 KiB).
//!
//! Long-lived responses (the live log stream) are not cut: the bound is on what the client
//! sends, not on how long it reads.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The bounds on clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time for a request's headers (and, in the handlers, its body) to arrive.
    pub read_timeout: Duration,
}

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A boxed error, as hyper takes them.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `service` (an axum `Router`, say) on `listener` until `stop`, then lets requests in
/// flight finish (at most [`SHUTDOWN_GRACE`]).
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    limits: HttpLimits,
    stop: CancellationToken,
) -> std::io::Result<()>
where
    S: tower::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    // Refusals are logged at most once a second, with how many there were.
    let (mut refused, mut refusals_logged) = (0u64, std::time::Instant::now());
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, say: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            drop(stream);
            refused += 1;
            if refusals_logged.elapsed() >= Duration::from_secs(1) {
                tracing::warn!(%peer, refused, max = limits.max_connections, "too many connections; closed at accept");
                (refused, refusals_logged) = (0, std::time::Instant::now());
            }
            continue;
        };
        let service = TowerToHyperService::new(service.clone());
        let closing = closing.clone();
        connections.spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.read_timeout)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                () = closing.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    closing.cancel();
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        // Returning drops the runtime's hold on them: the process is ending.
        tracing::warn!("connections still open after the shutdown grace are abandoned");
    }
    Ok(())
}

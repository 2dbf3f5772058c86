//! `POST /hooks/env` wakes the reconciler at once; a wrong token or an oversized body is refused
//! and causes no sync.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod reconcile_support;

use std::sync::Arc;
use std::time::Duration;

use airlock_reconciler::reconcile::hook::serve_hook;
use airlock_reconciler::reconcile::run::{Reconciler, serve_loop};
use airlock_verify::secret::Secret;
use reconcile_support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

async fn post(addr: std::net::SocketAddr, auth: Option<&str>, body: &[u8]) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "POST /hooks/env HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer 413 before reading the whole body; a broken pipe is fine then.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_syncs_at_once_and_refuses_strangers() {
    let world = World::new();
    let (_, config) = world.config(&[("staging", "podman", &[("hookns", &[SOURCE])])]);
    world
        .env
        .write("environments/staging/README.md", "empty for now\n");
    world.commit("empty");
    let reconciler = Reconciler::open(config).await.unwrap();

    let wake = Arc::new(Notify::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The server loop `reconcile` runs, with a short read timeout for the silent client below.
    let limits = airlock_pipeline::http_server::HttpLimits {
        max_connections: 8,
        read_timeout: Duration::from_secs(2),
    };
    let server_stop = CancellationToken::new();
    tokio::spawn(serve_hook(
        listener,
        wake.clone(),
        Some(Secret::new("s3cret-hook-token")),
        limits,
        server_stop.clone(),
    ));

    let (tx, mut syncs) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let loop_stop = stop.clone();
    let looping = tokio::spawn(async move {
        serve_loop(&reconciler, &wake, &loop_stop, |r| {
            let _ = tx.send((r.trigger.clone(), r.commit.clone()));
        })
        .await;
    });
    let (trigger, _) = syncs.recv().await.unwrap();
    assert_eq!(trigger, "start");

    assert_eq!(post(addr, None, b"{}").await, 401);
    assert_eq!(post(addr, Some("wrong"), b"{}").await, 401);
    assert_eq!(
        post(addr, Some("s3cret-hook-token"), &vec![b'x'; 70 * 1024]).await,
        413
    );
    // The poll interval is an hour: any sync now would come from a refused hook.
    assert!(
        tokio::time::timeout(Duration::from_millis(700), syncs.recv())
            .await
            .is_err(),
        "a refused hook caused a sync"
    );

    let commit = world.commit_file("environments/staging/README.md", "changed\n");
    assert_eq!(post(addr, Some("s3cret-hook-token"), b"{}").await, 202);
    let (trigger, synced) = tokio::time::timeout(Duration::from_secs(20), syncs.recv())
        .await
        .expect("no sync after the hook")
        .unwrap();
    assert_eq!(
        (trigger.as_str(), synced.as_str()),
        ("hook", commit.as_str())
    );
    // Issue 19: a client that connects and sends nothing is closed at the read timeout.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(15), silent.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a silent client is still connected: {closed:?}"
    );
    stop.cancel();
    server_stop.cancel();
    looping.await.unwrap();
}

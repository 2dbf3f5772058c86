//! `POST /hooks/env` wakes the reconciler at once; a wrong token or an oversized body is refused
//! and causes no sync.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod reconcile_support;

use std::sync::Arc;
use std::time::Duration;

use airlock_reconciler::reconcile::hook::hook_router;
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
    let app = hook_router(wake.clone(), Some(Secret::new("s3cret-hook-token")));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

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
    stop.cancel();
    looping.await.unwrap();
}

//! Benchmark: the reconciler's Kubernetes path at 1,000 Deployments over 50 namespaces (20
//! each), against the scripted API server of `tests/support_fake_apiserver` (no API server
//! installs here), with a real docker-registry holding signed images and a real environment
//! repository. Prints figures only:
//!
//! * the time of a no-op sync (after a first sync applied everything), median of several runs;
//! * the time from an environment-repository commit (one new, signed image digest in the LAST
//!   namespace synced, the worst place) to that Deployment's apply arriving at the API server,
//!   when `POST /hooks/env` (the real hook router over TCP) wakes `run::serve_loop`.
//!
//! For scale: Flux's published figure for 1,000 Kustomizations is 4 m 15 s.
//!
//! `cargo bench -p airlock-reconciler --bench reconcile`
//! Env: `AIRLOCK_BENCH_RUNS` (default 7).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/reconcile_support/mod.rs"]
mod reconcile_support;
#[path = "../tests/support_fake_apiserver/mod.rs"]
mod support_fake_apiserver;

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_reconciler::reconcile::run::{self, AnyTarget, Reconciler};
use airlock_reconciler::reconcile::target::kubernetes::KubernetesTarget;
use reconcile_support::{SOURCE, Vouch, World, deployment};
use support_fake_apiserver::{FakeApiServer, by_method, deployment_path};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

const ENV: &str = "prod";
const NAMESPACES: usize = 50;
const PER_NAMESPACE: usize = 20;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn summary(v: &[Duration]) -> String {
    let mut s = v.to_vec();
    s.sort();
    format!(
        "min {:.1} ms, max {:.1} ms over {} runs",
        ms(s[0]),
        ms(s[s.len() - 1]),
        s.len()
    )
}

/// `POST /hooks/env` over a plain TCP connection; returns the status line.
async fn post_hook(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!(
                "POST /hooks/env HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

fn main() {
    let runs: usize = std::env::var("AIRLOCK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7)
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(runs));
}

async fn bench(runs: usize) {
    let world = World::new();
    let mut images = Vec::new();
    for seed in 1..=4 {
        images.push(world.image("svc", seed, Vouch::Trusted(SOURCE)).await);
    }
    let names: Vec<String> = (0..NAMESPACES).map(|n| format!("ns-{n:02}")).collect();
    let sources: &[&str] = &[SOURCE];
    let namespaces: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), sources)).collect();
    let (_, config) = world.config(&[(ENV, "kubernetes", &namespaces)]);
    for (n, ns) in names.iter().enumerate() {
        for i in 0..PER_NAMESPACE {
            let name = format!("app-{i:02}");
            world.write_manifest(
                ENV,
                ns,
                &format!("{name}.yaml"),
                &deployment(&name, &images[(n + i) % images.len()]),
            );
        }
    }
    world.commit("1000 deployments");
    let objects = NAMESPACES * PER_NAMESPACE;

    let (api, client) = FakeApiServer::start();
    let reconciler = Arc::new(
        Reconciler::with_targets(
            config,
            vec![(
                ENV.into(),
                AnyTarget::Kubernetes(KubernetesTarget::new(client)),
            )],
        )
        .expect("reconciler"),
    );

    // First sync: everything is created.
    let t = Instant::now();
    let record = reconciler.sync_once("bench").await.expect("first sync");
    let first = t.elapsed();
    let (applied, pruned, refused, failed) = record.counts();
    assert_eq!(
        (applied, pruned, refused, failed),
        (objects, 0, 0, 0),
        "first sync"
    );
    let requests = api.take_requests();
    println!(
        "reconcile first sync, {objects} objects / {NAMESPACES} namespaces (all created): {:.1} ms ({} API requests)",
        ms(first),
        requests.len()
    );

    // (a) No-op syncs.
    let mut noop = Vec::new();
    let mut per_sync = None;
    for _ in 0..runs {
        let t = Instant::now();
        let record = reconciler.sync_once("bench").await.expect("no-op sync");
        noop.push(t.elapsed());
        let (applied, pruned, refused, failed) = record.counts();
        assert_eq!((applied, pruned, refused, failed), (0, 0, 0, 0), "no-op");
        let requests = api.take_requests();
        assert!(
            !requests.iter().any(|r| r.writes()),
            "a no-op sync writes nothing: {:?}",
            by_method(&requests)
        );
        per_sync = Some(by_method(&requests));
    }
    let per_sync = per_sync.unwrap_or_default();
    println!(
        "reconcile no-op sync, {objects} objects / {NAMESPACES} namespaces: median {:.1} ms ({}; per sync {} GETs + {} server-side-apply dry runs, no writes)",
        ms(median(noop.clone())),
        summary(&noop),
        per_sync.get("GET").copied().unwrap_or(0),
        per_sync.get("PATCH dry-run").copied().unwrap_or(0)
    );

    // Where a no-op sync's time goes: fetching and reading the repository is part of it.
    let mut fetch = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let desired = reconciler.fetch_desired().await.expect("fetch");
        fetch.push(t.elapsed());
        assert_eq!(
            desired.objects.values().map(Vec::len).sum::<usize>(),
            objects
        );
    }
    println!(
        "  of which fetch + read desired state ({objects} objects): median {:.1} ms ({})",
        ms(median(fetch.clone())),
        summary(&fetch)
    );

    let mut plans = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let (_, plan) = reconciler.plan().await.expect("plan");
        plans.push(t.elapsed());
        assert!(
            plan.iter()
                .all(|p| p.apply.is_empty() && p.prune.is_empty())
        );
    }
    let requests = api.take_requests().len() / runs;
    println!(
        "  of which plan (fetch, admission of {objects} objects, {requests} read-only requests): median {:.1} ms ({})",
        ms(median(plans.clone())),
        summary(&plans)
    );

    // (b) Commit -> applied, woken by the hook.
    let mut fresh = Vec::new();
    for seed in 0..runs {
        fresh.push(
            world
                .image("svc", 100 + seed as i64, Vouch::Trusted(SOURCE))
                .await,
        );
    }
    let wake = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = airlock_reconciler::reconcile::hook::hook_router(wake.clone(), None);
    let stopped = stop.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await;
    });
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let looping = {
        let (reconciler, wake, stop) = (reconciler.clone(), wake.clone(), stop.clone());
        tokio::spawn(async move {
            run::serve_loop(&reconciler, &wake, &stop, |record| {
                let _ = done_tx.send((Instant::now(), record.counts(), record.trigger.clone()));
            })
            .await;
        })
    };
    // The loop's own first sync ("start") finds nothing to do.
    let (_, counts, trigger) = done.recv().await.expect("start sync");
    assert_eq!((counts, trigger.as_str()), ((0, 0, 0, 0), "start"));
    api.take_requests();

    let ns = names.last().expect("namespaces").clone();
    let target = deployment_path(&ns, "app-07");
    let mut to_applied = Vec::new();
    let mut to_synced = Vec::new();
    for image in &fresh {
        world.write_manifest(ENV, &ns, "app-07.yaml", &deployment("app-07", image));
        world.commit("new digest for app-07");
        let path = target.clone();
        let arrived = api.wait_for(move |r| r.writes() && r.method == "PATCH" && r.path == path);
        let t = Instant::now();
        let status = post_hook(addr).await;
        assert!(status.contains("202"), "hook answered {status:?}");
        let at = arrived.await.expect("the apply arrived");
        to_applied.push(at - t);
        let (finished, counts, trigger) = done.recv().await.expect("hook sync");
        to_synced.push(finished - t);
        assert_eq!(trigger, "hook");
        assert_eq!(counts, (1, 0, 0, 0), "exactly the changed object applied");
        let requests = api.take_requests();
        let patches: Vec<_> = requests
            .iter()
            .filter(|r| r.writes() && r.method == "PATCH")
            .collect();
        // The Deployment and its namespace's inventory (new member hash and commit).
        assert_eq!(patches.len(), 2, "{patches:?}");
        let live = api.get(&target).expect("applied");
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"][0]["image"],
            image.as_str()
        );
    }
    println!(
        "reconcile commit -> applied via hook ({objects} objects, change in the last of {NAMESPACES} namespaces, new signed digest verified): median {:.1} ms ({})",
        ms(median(to_applied.clone())),
        summary(&to_applied)
    );
    println!(
        "reconcile commit -> whole sync recorded via hook: median {:.1} ms ({})",
        ms(median(to_synced.clone())),
        summary(&to_synced)
    );
    println!("(Flux's published figure for 1,000 Kustomizations: 4 m 15 s)");
    stop.cancel();
    let _ = looping.await;
    let _ = server.await;
}

//! A scripted fake Kubernetes API server for kube's `Client`, following kube-rs's own test
//! pattern (`tower_test::mock::pair` + `Client::new(service, "default")`): no API server
//! installs here (FIELD-NOTES, "kube").
//!
//! It keeps objects in memory keyed by URL path (`/apis/apps/v1/namespaces/shop/deployments/web`,
//! `/api/v1/namespaces/shop/configmaps/airlock-inventory`) and answers like the real API server
//! for what the reconciler uses:
//!
//! * `GET` — the object, or a 404 `Status` (`reason: NotFound`);
//! * `PATCH` with `application/apply-patch+yaml` (server-side apply) — the body becomes the live
//!   object, with `uid`, `creationTimestamp`, `generation` (bumped when `spec` changes),
//!   `resourceVersion` (bumped when anything changes), `managedFields`, and for a Deployment a
//!   status that makes it healthy (Pods get `phase: Running`). Like the real server it refuses
//!   another patch type (415), an apply without `fieldManager` (400), a body whose name or
//!   namespace differs from the URL (400), and a takeover of another manager's object without
//!   `force=true` (409 Conflict);
//! * `DELETE` — removes the object and answers a `Status` success (404 when absent).
//!
//! Every request is recorded (method, path, query, content type, body) for assertions; a test
//! can put, change and remove live objects (drift, objects Airlock does not own), make requests
//! fail, and wait for a request to arrive (the benchmark's "applied" moment).
//!
//! Split by responsibility: `store` (the in-memory objects and the helpers that read and change
//! them), `handler` (answering GET/PATCH/DELETE and injected failures), `record` (recorded
//! requests, waiting for and reacting to one) and `paths` (URL paths).
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

mod handler;
mod paths;
mod record;
mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use http::{Request, Response};
use kube::client::Body;
use tokio::sync::oneshot;

// The public API; like the helpers themselves, each binary uses only some of these.
#[allow(unused_imports)]
pub use handler::status;
#[allow(unused_imports)]
pub use paths::{configmap_path, deployment_path, inventory_path};
#[allow(unused_imports)]
pub use record::{Recorded, by_method};

use handler::Injected;
use store::Stored;

/// Content type of a server-side apply.
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";

type Waiter = (
    Box<dyn Fn(&Recorded) -> bool + Send>,
    oneshot::Sender<Instant>,
);
type After = (
    Box<dyn Fn(&Recorded) -> bool + Send>,
    Box<dyn FnOnce(&FakeApiServer) + Send>,
);

#[derive(Default)]
struct Inner {
    objects: BTreeMap<String, Stored>,
    requests: Vec<Recorded>,
    failures: Vec<Injected>,
    waiters: Vec<Waiter>,
    afters: Vec<After>,
    resource_version: u64,
    uid: u64,
}

/// The fake API server; cheap to clone (shared state).
#[derive(Clone)]
pub struct FakeApiServer {
    inner: Arc<Mutex<Inner>>,
}

impl FakeApiServer {
    /// Starts the fake on the current tokio runtime; returns it and a `Client` talking to it.
    pub fn start() -> (FakeApiServer, kube::Client) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let server = FakeApiServer {
            inner: Arc::new(Mutex::new(Inner::default())),
        };
        let answering = server.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let response = answering.handle(request).await;
                send.send_response(response);
            }
        });
        (server, client)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

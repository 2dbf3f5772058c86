//! The reconciler's Kubernetes target driven by the real sync code against a scripted API server
//! (kube's `Client` over `tower_test`; no API server installs here), with images in a real
//! docker-registry signed by the trusted builder's own code and desired state committed to a
//! real environment repository. The exact requests are asserted: paths, server-side apply with
//! `fieldManager=airlock` and `force=true`, the inventory ConfigMap, prune of inventory
//! members only, drift repair, refusals, and a `plan` that writes nothing.
//!
//! One test target in several files, by concern: `apply` (first sync, no-op, drift repair, a
//! failed apply), `prune` (prune and the inventory), `refusals` (admission refusals and `plan`);
//! the shared helpers are here.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

#[path = "../reconcile_support/mod.rs"]
mod reconcile_support;
#[path = "../support_fake_apiserver/mod.rs"]
mod support_fake_apiserver;

mod apply;
mod prune;
mod refusals;

use airlock_reconciler::reconcile::history::{NamespaceResult, SyncRecord};
use airlock_reconciler::reconcile::plan::Action;
use airlock_reconciler::reconcile::run::{AnyTarget, Reconciler};
use airlock_reconciler::reconcile::target::Health;
use airlock_reconciler::reconcile::target::kubernetes::KubernetesTarget;
use reconcile_support::*;
use serde_json::{Value, json};
use support_fake_apiserver::{
    APPLY_PATCH, FakeApiServer, Recorded, by_method, deployment_path, inventory_path,
};

const ENV: &str = "prod";
const NS: &str = "shop";

/// A reconciler for environment `prod` (namespace `shop`, source SOURCE) over a fake API server.
fn reconciler(world: &World) -> (Reconciler, FakeApiServer) {
    let (_, config) = world.config(&[(ENV, "kubernetes", &[(NS, &[SOURCE])])]);
    let (api, client) = FakeApiServer::start();
    let reconciler = Reconciler::with_targets(
        config,
        vec![(
            ENV.into(),
            AnyTarget::Kubernetes(KubernetesTarget::new(client)),
        )],
    )
    .expect("reconciler");
    (reconciler, api)
}

fn ns_result<'a>(record: &'a SyncRecord, ns: &str) -> &'a NamespaceResult {
    record
        .namespaces
        .iter()
        .find(|n| n.environment == ENV && n.namespace == ns)
        .unwrap_or_else(|| panic!("no result for {ns}: {record:#?}"))
}

fn lines(requests: &[Recorded]) -> Vec<(String, String)> {
    requests.iter().map(Recorded::line).collect()
}

fn req(method: &str, path: &str) -> (String, String) {
    (method.to_owned(), path.to_owned())
}

fn applied(ns: &NamespaceResult) -> Vec<(String, String)> {
    ns.applied
        .iter()
        .map(|c| (c.object.clone(), c.action.clone()))
        .collect()
}

/// Every PATCH is a forced server-side apply by field manager `airlock`.
fn assert_server_side_apply(r: &Recorded) {
    assert_eq!(r.method, "PATCH");
    assert_eq!(r.content_type.as_deref(), Some(APPLY_PATCH), "{r:?}");
    assert_eq!(
        r.query_pairs(),
        vec![
            ("fieldManager".to_owned(), "airlock".to_owned()),
            ("force".to_owned(), "true".to_owned())
        ],
        "{r:?}"
    );
}

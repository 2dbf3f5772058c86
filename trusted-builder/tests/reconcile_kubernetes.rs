//! The reconciler's Kubernetes target driven by the real sync code against a scripted API server
//! (kube's `Client` over `tower_test`; no API server installs here), with images in a real
//! docker-registry signed by the trusted builder's own code and desired state committed to a
//! real environment repository. The exact requests are asserted: paths, server-side apply with
//! `fieldManager=airlock` and `force=true`, the inventory ConfigMap, prune of inventory
//! members only, drift repair, refusals, and a `plan` that writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod reconcile_support;
mod support_fake_apiserver;

use reconcile_support::*;
use serde_json::{Value, json};
use support_fake_apiserver::{
    APPLY_PATCH, FakeApiServer, Recorded, by_method, deployment_path, inventory_path,
};
use trusted_builder::reconcile::history::{NamespaceResult, SyncRecord};
use trusted_builder::reconcile::run::{AnyTarget, Reconciler};
use trusted_builder::reconcile::sync::Action;
use trusted_builder::reconcile::target::Health;
use trusted_builder::reconcile::target::kubernetes::KubernetesTarget;

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

fn with_namespace(manifest: &str, namespace: &str) -> String {
    manifest.replacen(
        "metadata:\n",
        &format!("metadata:\n  namespace: {namespace}\n"),
        1,
    )
}

fn cluster_role(name: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {name}\nrules:\n- apiGroups: [\"*\"]\n  resources: [\"*\"]\n  verbs: [\"*\"]\n"
    )
}

/// A Deployment that someone else created by hand: no Airlock label.
fn foreign_deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": name, "image": "nginx:latest"}]}}},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_applies_each_object_and_the_inventory_then_a_second_sync_only_reads() {
    let world = World::new();
    let web = world.image("web", 1, Vouch::Trusted(SOURCE)).await;
    let api_image = world.image("api", 2, Vouch::Trusted(SOURCE)).await;
    world.write_manifest(ENV, NS, "web.yaml", &deployment("web", &web));
    world.write_manifest(ENV, NS, "api.yaml", &deployment("api", &api_image));
    let commit = world.commit("web and api");
    let (reconciler, api) = reconciler(&world);
    let (web_path, api_path, inv) = (
        deployment_path(NS, "web"),
        deployment_path(NS, "api"),
        inventory_path(NS),
    );

    let record = reconciler.sync_once("test").await.expect("sync");
    assert_eq!(record.commit, commit);
    let shop = ns_result(&record, NS);
    assert_eq!(
        applied(shop),
        [
            ("Deployment/api".to_owned(), "create".to_owned()),
            ("Deployment/web".to_owned(), "create".to_owned())
        ],
        "{record:#?}"
    );
    assert!(
        shop.refused.is_empty() && shop.failed.is_empty(),
        "{shop:#?}"
    );
    assert_eq!(shop.health["Deployment/web"].health, Health::Healthy);
    assert_eq!(
        shop.health["Deployment/web"].images,
        std::slice::from_ref(&web)
    );
    assert_eq!(shop.health["Deployment/api"].health, Health::Healthy);

    // Read the inventory, observe each object, apply each, write the inventory, read health.
    let first = api.take_requests();
    assert_eq!(
        lines(&first),
        [
            req("GET", &inv),
            req("GET", &api_path),
            req("GET", &web_path),
            req("PATCH", &api_path),
            req("PATCH", &web_path),
            req("PATCH", &inv),
            req("GET", &api_path),
            req("GET", &web_path),
        ]
    );
    for r in first.iter().filter(|r| r.method == "PATCH") {
        assert_server_side_apply(r);
    }
    let body = first[4].body.as_ref().expect("apply body");
    assert_eq!(body["apiVersion"], "apps/v1");
    assert_eq!(body["kind"], "Deployment");
    assert_eq!(body["metadata"]["name"], "web");
    assert_eq!(body["metadata"]["namespace"], NS);
    assert_eq!(
        body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "airlock"
    );
    assert_eq!(body["metadata"]["labels"]["airlock.dev/environment"], ENV);
    assert_eq!(
        body["spec"]["template"]["spec"]["containers"][0]["image"],
        web.as_str()
    );
    // The inventory ConfigMap: Airlock's label, both members with their images and commit.
    let cm = first[5].body.as_ref().expect("inventory body");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "airlock-inventory");
    assert_eq!(cm["metadata"]["namespace"], NS);
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "airlock"
    );
    let inventory: Value =
        serde_json::from_str(cm["data"]["inventory.json"].as_str().expect("text")).expect("json");
    assert_eq!(inventory["environment"], ENV);
    assert_eq!(inventory["namespace"], NS);
    assert_eq!(
        inventory["members"]["Deployment/web"]["images"],
        json!([web])
    );
    assert_eq!(inventory["members"]["Deployment/web"]["commit"], commit);
    assert_eq!(
        inventory["members"]["Deployment/api"]["images"],
        json!([api_image])
    );
    assert_eq!(
        api.inventory_members(NS),
        ["Deployment/api", "Deployment/web"]
    );
    let web_live = api.get(&web_path).expect("web is live");
    let rv = web_live["metadata"]["resourceVersion"].clone();

    // Nothing changed: the Deployments are only read, never patched.
    let record = reconciler.sync_once("test").await.expect("second sync");
    let shop = ns_result(&record, NS);
    assert!(shop.applied.is_empty(), "{shop:#?}");
    assert_eq!(shop.unchanged, ["Deployment/api", "Deployment/web"]);
    assert!(shop.failed.is_empty() && shop.pruned.is_empty());
    let second = api.take_requests();
    // Only reads: the objects and the inventory (its text would not change) are not written.
    assert_eq!(
        lines(&second),
        [
            req("GET", &inv),
            req("GET", &api_path),
            req("GET", &web_path),
            req("GET", &api_path),
            req("GET", &web_path),
        ]
    );
    // Same members, same commit; the live object was not rewritten.
    assert_eq!(
        api.inventory(NS).expect("inventory")["members"],
        inventory["members"]
    );
    assert_eq!(
        api.get(&web_path).expect("web")["metadata"]["resourceVersion"],
        rv
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_only_inventory_members_and_never_touches_foreign_objects() {
    let world = World::new();
    let web = world.image("web", 1, Vouch::Trusted(SOURCE)).await;
    let api_image = world.image("api", 2, Vouch::Trusted(SOURCE)).await;
    world.write_manifest(ENV, NS, "web.yaml", &deployment("web", &web));
    world.write_manifest(ENV, NS, "api.yaml", &deployment("api", &api_image));
    world.commit("web and api");
    let (reconciler, api) = reconciler(&world);
    let (web_path, api_path, inv) = (
        deployment_path(NS, "web"),
        deployment_path(NS, "api"),
        inventory_path(NS),
    );
    let (foreign_path, taken_path) = (deployment_path(NS, "foreign"), deployment_path(NS, "taken"));
    reconciler.sync_once("test").await.expect("first sync");
    let api_uid = api.get(&api_path).expect("api")["metadata"]["uid"].clone();
    assert!(api_uid.is_string());

    // Someone else's Deployments: one Airlock never heard of, one whose name Git now claims.
    api.put(&foreign_path, foreign_deployment("foreign"), "kubectl");
    api.put(&taken_path, foreign_deployment("taken"), "kubectl");
    let (foreign_before, taken_before) = (api.get(&foreign_path), api.get(&taken_path));
    world
        .env
        .remove(&format!("environments/{ENV}/{NS}/api.yaml"));
    world.write_manifest(ENV, NS, "taken.yaml", &deployment("taken", &web));
    world.commit("drop api, claim taken");
    api.take_requests();

    let record = reconciler.sync_once("test").await.expect("sync");
    let shop = ns_result(&record, NS);
    assert_eq!(shop.pruned, ["Deployment/api"], "{shop:#?}");
    assert!(shop.applied.is_empty(), "{shop:#?}");
    assert_eq!(shop.refused.len(), 1, "{shop:#?}");
    assert_eq!(shop.refused[0].object, "Deployment/taken");
    assert_eq!(
        shop.refused[0].reasons,
        [
            "Deployment/taken already exists in namespace 'shop' and is not managed by Airlock; it is left alone"
        ]
    );
    let requests = api.take_requests();
    let deletes: Vec<&Recorded> = requests.iter().filter(|r| r.method == "DELETE").collect();
    assert_eq!(deletes.len(), 1, "{:?}", lines(&requests));
    assert_eq!(deletes[0].path, api_path);
    let options = deletes[0].body.as_ref().expect("delete options");
    assert_eq!(options["propagationPolicy"], "Background");
    // Only the very object seen carrying the label (its uid) may be deleted.
    assert_eq!(options["preconditions"], json!({"uid": api_uid}));
    // The prune looked at the live object (its label) before deleting it.
    let api_requests: Vec<_> = lines(&requests)
        .into_iter()
        .filter(|(_, p)| p == &api_path)
        .collect();
    assert_eq!(
        api_requests,
        [req("GET", &api_path), req("DELETE", &api_path)]
    );
    // Foreign: not a single request. Taken: read (to find it is not ours), never written.
    assert!(
        !requests.iter().any(|r| r.path == foreign_path),
        "{:?}",
        lines(&requests)
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.path == taken_path)
            .all(|r| r.method == "GET"),
        "{:?}",
        lines(&requests)
    );
    assert_eq!(api.get(&foreign_path), foreign_before);
    assert_eq!(api.get(&taken_path), taken_before);
    assert_eq!(api.get(&api_path), None);
    assert!(api.get(&web_path).is_some());
    let patches: Vec<_> = requests.iter().filter(|r| r.method == "PATCH").collect();
    assert!(
        patches.iter().all(|r| r.path == inv),
        "{:?}",
        lines(&requests)
    );
    // The refused object is not adopted into the inventory.
    assert_eq!(api.inventory_members(NS), ["Deployment/web"]);

    // A member whose live object lost Airlock's label is not deleted when Git drops it.
    api.modify(&web_path, |o| {
        o["metadata"]["labels"]
            .as_object_mut()
            .expect("labels")
            .remove("app.kubernetes.io/managed-by");
    });
    world
        .env
        .remove(&format!("environments/{ENV}/{NS}/web.yaml"));
    world.commit("drop web");
    let record = reconciler.sync_once("test").await.expect("sync");
    let shop = ns_result(&record, NS);
    assert!(shop.pruned.is_empty(), "{shop:#?}");
    assert_eq!(shop.failed.len(), 1, "{shop:#?}");
    assert_eq!(shop.failed[0].object, "Deployment/web");
    assert!(
        shop.failed[0]
            .error
            .contains("no longer carries Airlock's label"),
        "{shop:#?}"
    );
    let requests = api.take_requests();
    assert!(
        !requests.iter().any(|r| r.method == "DELETE"),
        "{:?}",
        lines(&requests)
    );
    assert!(api.get(&web_path).is_some());
    assert_eq!(api.get(&foreign_path), foreign_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_repaired_and_a_git_change_is_an_update() {
    let world = World::new();
    let web = world.image("web", 1, Vouch::Trusted(SOURCE)).await;
    world.write_manifest(ENV, NS, "web.yaml", &deployment("web", &web));
    world.commit("web");
    let (reconciler, api) = reconciler(&world);
    let web_path = deployment_path(NS, "web");
    reconciler.sync_once("test").await.expect("first sync");
    assert_eq!(api.get(&web_path).expect("web")["spec"]["replicas"], 1);

    // Someone scales the Deployment by hand.
    api.modify(&web_path, |o| o["spec"]["replicas"] = json!(5));
    api.take_requests();
    let record = reconciler.sync_once("test").await.expect("sync");
    let shop = ns_result(&record, NS);
    assert_eq!(shop.applied.len(), 1, "{shop:#?}");
    assert_eq!(shop.applied[0].object, "Deployment/web");
    assert_eq!(shop.applied[0].action, "repair");
    assert_eq!(
        shop.applied[0].drift.as_deref(),
        Some("/spec/replicas differs from Git")
    );
    let requests = api.take_requests();
    let patches: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.path == web_path)
        .collect();
    assert_eq!(patches.len(), 1, "{:?}", lines(&requests));
    assert_server_side_apply(patches[0]);
    assert_eq!(
        patches[0].body.as_ref().expect("body")["spec"]["replicas"],
        1
    );
    let live = api.get(&web_path).expect("web");
    assert_eq!(live["spec"]["replicas"], 1);
    assert_eq!(shop.health["Deployment/web"].health, Health::Healthy);
    assert!(
        trusted_builder::reconcile::run::describe(&record)
            .contains("repair Deployment/web (drift: /spec/replicas differs from Git)")
    );

    // Repaired: the next sync does nothing to it.
    let record = reconciler.sync_once("test").await.expect("sync");
    assert!(ns_result(&record, NS).applied.is_empty());
    assert!(
        !api.take_requests()
            .iter()
            .any(|r| r.method == "PATCH" && r.path == web_path)
    );

    // A new digest in Git is an update, applied once.
    let web2 = world.image("web", 2, Vouch::Trusted(SOURCE)).await;
    world.write_manifest(ENV, NS, "web.yaml", &deployment("web", &web2));
    let commit = world.commit("web v2");
    let record = reconciler.sync_once("test").await.expect("sync");
    let shop = ns_result(&record, NS);
    assert_eq!(
        applied(shop),
        [("Deployment/web".to_owned(), "update".to_owned())]
    );
    assert_eq!(shop.applied[0].drift, None);
    assert_eq!(
        api.get(&web_path).expect("web")["spec"]["template"]["spec"]["containers"][0]["image"],
        web2.as_str()
    );
    assert_eq!(
        api.inventory(NS).expect("inventory")["members"]["Deployment/web"]["commit"],
        commit
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_objects_are_never_sent_while_the_rest_of_the_namespace_syncs() {
    let world = World::new();
    let good = world.image("good", 1, Vouch::Trusted(SOURCE)).await;
    let unsigned = world.image("unsigned", 2, Vouch::Unsigned).await;
    let other_key = world.image("otherkey", 3, Vouch::OtherKey).await;
    let other_source = world
        .image("othersource", 4, Vouch::Trusted(OTHER_SOURCE))
        .await;
    // Signed by the trusted key, but named by tag.
    let signed = world.image("tagged", 5, Vouch::Trusted(SOURCE)).await;
    let by_tag = format!("{}:s5", world.repo("tagged"));
    assert!(signed.starts_with(&world.repo("tagged")));
    let files = [
        ("good.yaml", deployment("good", &good)),
        ("unsigned.yaml", deployment("unsigned", &unsigned)),
        ("otherkey.yaml", deployment("otherkey", &other_key)),
        ("othersource.yaml", deployment("othersource", &other_source)),
        ("tagged.yaml", deployment("tagged", &by_tag)),
        (
            "escape.yaml",
            with_namespace(&deployment("escape", &good), "payments"),
        ),
        ("admin.yaml", cluster_role("airlock-admin")),
    ];
    for (file, text) in &files {
        world.write_manifest(ENV, NS, file, text);
    }
    world.commit("one good, six refused");
    let (reconciler, api) = reconciler(&world);

    let record = reconciler.sync_once("test").await.expect("sync");
    let shop = ns_result(&record, NS);
    assert_eq!(
        applied(shop),
        [("Deployment/good".to_owned(), "create".to_owned())],
        "{shop:#?}"
    );
    assert!(shop.failed.is_empty(), "{shop:#?}");
    let reasons = |object: &str| -> String {
        shop.refused
            .iter()
            .find(|r| r.object == object)
            .unwrap_or_else(|| panic!("{object} not refused: {shop:#?}"))
            .reasons
            .join("\n")
    };
    assert_eq!(shop.refused.len(), 6, "{shop:#?}");
    let r = reasons("Deployment/unsigned");
    assert!(
        r.contains(&format!(
            "image {unsigned} has no valid signature by a trusted key"
        )),
        "{r}"
    );
    let r = reasons("Deployment/otherkey");
    assert!(
        r.contains(&format!(
            "image {other_key} has no valid signature by a trusted key"
        )),
        "{r}"
    );
    let r = reasons("Deployment/othersource");
    assert_eq!(
        r,
        format!(
            "image {other_source} was built from {OTHER_SOURCE}, which namespace 'shop' does not allow"
        )
    );
    let r = reasons("Deployment/tagged");
    assert_eq!(
        r,
        format!("image {by_tag} is not pinned by digest (use REPOSITORY@sha256:...)")
    );
    let r = reasons("Deployment/escape");
    assert_eq!(
        r,
        "metadata.namespace 'payments' differs from its folder 'shop'"
    );
    let r = reasons("ClusterRole/airlock-admin");
    assert_eq!(
        r,
        "cluster-scoped kind ClusterRole is not allowed in namespace 'shop'"
    );
    assert_eq!(
        shop.refused
            .iter()
            .find(|r| r.object == "ClusterRole/airlock-admin")
            .expect("admin")
            .location,
        format!("environments/{ENV}/{NS}/admin.yaml#1")
    );

    // Only the admitted object and the inventory were written; the refused ones were not even
    // looked up (admission comes before any request), in any namespace.
    let requests = api.take_requests();
    let good_path = deployment_path(NS, "good");
    let inv = inventory_path(NS);
    assert_eq!(
        lines(&requests),
        [
            req("GET", &inv),
            req("GET", &good_path),
            req("PATCH", &good_path),
            req("PATCH", &inv),
            req("GET", &good_path),
        ]
    );
    for r in requests.iter().filter(|r| r.method == "PATCH") {
        assert_server_side_apply(r);
    }
    assert!(!requests.iter().any(|r| r.path.contains("payments")));
    assert!(!requests.iter().any(|r| r.path.contains("clusterroles")));
    assert_eq!(
        api.paths(),
        [inv.clone(), good_path.clone()]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    assert_eq!(api.inventory_members(NS), ["Deployment/good"]);
    let (_, _, refused, failed) = record.counts();
    assert_eq!((refused, failed), (6, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_only_reads() {
    let world = World::new();
    let web = world.image("web", 1, Vouch::Trusted(SOURCE)).await;
    let api_image = world.image("api", 2, Vouch::Trusted(SOURCE)).await;
    world.write_manifest(ENV, NS, "web.yaml", &deployment("web", &web));
    world.write_manifest(ENV, NS, "api.yaml", &deployment("api", &api_image));
    world.commit("web and api");
    let (reconciler, api) = reconciler(&world);

    // On an empty cluster: everything is a create, nothing is written.
    let (_, plan) = reconciler.plan().await.expect("plan");
    assert_eq!(plan.len(), 1);
    let actions: Vec<_> = plan[0]
        .apply
        .iter()
        .map(|a| (a.object.key.to_string(), a.action.clone()))
        .collect();
    assert_eq!(
        actions,
        [
            ("Deployment/api".to_owned(), Action::Create),
            ("Deployment/web".to_owned(), Action::Create)
        ]
    );
    let requests = api.take_requests();
    assert!(
        requests.iter().all(|r| r.method == "GET"),
        "{:?}",
        lines(&requests)
    );
    assert!(api.paths().is_empty());

    reconciler.sync_once("test").await.expect("sync");
    // Git drops api and adds cart; web has drifted on the cluster.
    let cart = world.image("cart", 3, Vouch::Trusted(SOURCE)).await;
    world
        .env
        .remove(&format!("environments/{ENV}/{NS}/api.yaml"));
    world.write_manifest(ENV, NS, "cart.yaml", &deployment("cart", &cart));
    world.commit("drop api, add cart");
    let web_path = deployment_path(NS, "web");
    api.modify(&web_path, |o| o["spec"]["replicas"] = json!(4));
    let before: Vec<_> = api
        .paths()
        .into_iter()
        .map(|p| (p.clone(), api.get(&p)))
        .collect();
    api.take_requests();

    let (_, plan) = reconciler.plan().await.expect("plan");
    let ns = &plan[0];
    let actions: Vec<_> = ns
        .apply
        .iter()
        .map(|a| (a.object.key.to_string(), a.action.clone()))
        .collect();
    assert_eq!(
        actions,
        [
            ("Deployment/cart".to_owned(), Action::Create),
            (
                "Deployment/web".to_owned(),
                Action::Repair("/spec/replicas differs from Git".into())
            )
        ]
    );
    assert_eq!(
        ns.prune
            .iter()
            .map(|m| m.key.to_string())
            .collect::<Vec<_>>(),
        ["Deployment/api"]
    );
    let requests = api.take_requests();
    let methods = by_method(&requests);
    assert_eq!(methods.get("PATCH"), None, "{:?}", lines(&requests));
    assert_eq!(methods.get("DELETE"), None, "{:?}", lines(&requests));
    assert!(requests.iter().all(|r| r.method == "GET"));
    let after: Vec<_> = api
        .paths()
        .into_iter()
        .map(|p| (p.clone(), api.get(&p)))
        .collect();
    assert_eq!(before, after);
    // plan leaves no sync record.
    let status = trusted_builder::reconcile::run::status(reconciler.config(), 10).expect("status");
    assert_eq!(
        status.lines().filter(|l| l.contains("sync ")).count(),
        1,
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_apply_is_reported_kept_in_the_inventory_and_retried() {
    let world = World::new();
    let web = world.image("web", 1, Vouch::Trusted(SOURCE)).await;
    let api_image = world.image("api", 2, Vouch::Trusted(SOURCE)).await;
    world.write_manifest(ENV, NS, "web.yaml", &deployment("web", &web));
    world.write_manifest(ENV, NS, "api.yaml", &deployment("api", &api_image));
    world.commit("web and api");
    let (reconciler, api) = reconciler(&world);
    let web_path = deployment_path(NS, "web");
    api.fail(
        http::Method::PATCH,
        &web_path,
        500,
        "InternalError",
        Some(1),
    );

    let record = reconciler.sync_once("test").await.expect("sync");
    let shop = ns_result(&record, NS);
    assert_eq!(
        applied(shop),
        [("Deployment/api".to_owned(), "create".to_owned())]
    );
    assert_eq!(shop.failed.len(), 1, "{shop:#?}");
    assert_eq!(shop.failed[0].object, "Deployment/web");
    assert!(
        shop.failed[0].error.contains("apply Deployment/web"),
        "{shop:#?}"
    );
    assert!(matches!(
        shop.health["Deployment/web"].health,
        Health::Degraded(_)
    ));
    // Still Airlock's responsibility: in the inventory, so it is retried (not "created" again
    // from scratch, and prunable if Git drops it).
    assert_eq!(
        api.inventory_members(NS),
        ["Deployment/api", "Deployment/web"]
    );
    let record = reconciler.sync_once("test").await.expect("sync");
    let shop = ns_result(&record, NS);
    assert_eq!(
        applied(shop),
        [("Deployment/web".to_owned(), "repair".to_owned())]
    );
    assert_eq!(
        shop.applied[0].drift.as_deref(),
        Some("the object is missing")
    );
    assert!(api.get(&web_path).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_inventory_holds_prune_back_and_is_never_overwritten() {
    let world = World::new();
    let web = world.image("web", 1, Vouch::Trusted(SOURCE)).await;
    let api_image = world.image("api", 2, Vouch::Trusted(SOURCE)).await;
    world.write_manifest(ENV, NS, "web.yaml", &deployment("web", &web));
    world.write_manifest(ENV, NS, "api.yaml", &deployment("api", &api_image));
    world.commit("web and api");
    let (reconciler, api) = reconciler(&world);
    let (api_path, inv) = (deployment_path(NS, "api"), inventory_path(NS));
    reconciler.sync_once("test").await.expect("first sync");
    world
        .env
        .remove(&format!("environments/{ENV}/{NS}/api.yaml"));
    world.commit("drop api");
    let stored = api.get(&inv).expect("inventory");

    // The API server fails the inventory read once: nothing is pruned, and the inventory
    // (which still names api) is not replaced by one that forgets it.
    api.fail(http::Method::GET, &inv, 500, "InternalError", Some(1));
    api.take_requests();
    let record = reconciler.sync_once("test").await.expect("sync");
    let shop = ns_result(&record, NS);
    assert!(shop.pruned.is_empty(), "{shop:#?}");
    assert!(
        shop.prune_held
            .as_deref()
            .is_some_and(|h| h.starts_with("inventory unreadable")),
        "{shop:#?}"
    );
    assert!(
        shop.failed
            .iter()
            .any(|f| f.object == "inventory" && f.error.contains("not rewritten")),
        "{shop:#?}"
    );
    let requests = api.take_requests();
    assert!(
        !requests.iter().any(|r| r.method != "GET"),
        "{:?}",
        lines(&requests)
    );
    assert_eq!(api.get(&inv), Some(stored));
    assert!(api.get(&api_path).is_some());

    // Readable again: api is pruned after all.
    let record = reconciler.sync_once("test").await.expect("sync");
    assert_eq!(ns_result(&record, NS).pruned, ["Deployment/api"]);
    assert_eq!(api.get(&api_path), None);
    assert_eq!(api.inventory_members(NS), ["Deployment/web"]);

    // Another environment's inventory in this namespace is not taken over either.
    let mut theirs = api.get(&inv).expect("inventory");
    let mut text: Value =
        serde_json::from_str(theirs["data"]["inventory.json"].as_str().expect("text"))
            .expect("json");
    text["environment"] = json!("staging");
    theirs["data"]["inventory.json"] = json!(serde_json::to_string_pretty(&text).expect("json"));
    api.put(&inv, theirs.clone(), "airlock");
    let before = api.get(&inv);
    let record = reconciler.sync_once("test").await.expect("sync");
    let shop = ns_result(&record, NS);
    assert!(
        shop.failed.iter().any(|f| f.object == "inventory"
            && f.error.contains("inventoried by environment \"staging\"")),
        "{shop:#?}"
    );
    assert_eq!(api.get(&inv), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_never_deletes_an_object_replaced_after_it_was_checked() {
    let world = World::new();
    let web = world.image("web", 1, Vouch::Trusted(SOURCE)).await;
    let api_image = world.image("api", 2, Vouch::Trusted(SOURCE)).await;
    world.write_manifest(ENV, NS, "web.yaml", &deployment("web", &web));
    world.write_manifest(ENV, NS, "api.yaml", &deployment("api", &api_image));
    world.commit("web and api");
    let (reconciler, api) = reconciler(&world);
    let api_path = deployment_path(NS, "api");
    reconciler.sync_once("test").await.expect("first sync");
    world
        .env
        .remove(&format!("environments/{ENV}/{NS}/api.yaml"));
    world.commit("drop api");

    // Right after the prune's GET saw Airlock's label, someone deletes api and creates their
    // own Deployment of that name (a new uid, no Airlock label).
    let watched = api_path.clone();
    api.after(
        move |r| r.method == "GET" && r.path == watched,
        |server| {
            let path = deployment_path(NS, "api");
            server.remove(&path);
            server.put(&path, foreign_deployment("api"), "kubectl");
        },
    );
    api.take_requests();
    let record = reconciler.sync_once("test").await.expect("sync");
    let shop = ns_result(&record, NS);
    assert!(shop.pruned.is_empty(), "{shop:#?}");
    assert_eq!(shop.failed.len(), 1, "{shop:#?}");
    assert_eq!(shop.failed[0].object, "Deployment/api");
    assert!(
        shop.failed[0].error.starts_with("prune failed")
            && shop.failed[0].error.contains("Precondition failed"),
        "{shop:#?}"
    );
    let requests = api.take_requests();
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.path == api_path)
            .map(Recorded::line)
            .collect::<Vec<_>>(),
        // Checked, refused delete, then read for health (still a member).
        [
            req("GET", &api_path),
            req("DELETE", &api_path),
            req("GET", &api_path)
        ]
    );
    let theirs = api.get(&api_path).expect("their Deployment survives");
    assert_eq!(theirs["spec"]["replicas"], 3);
    // Kept as a member after the failed delete; the next sync sees it is not Airlock's any
    // more, leaves it alone and drops it from the inventory.
    assert_eq!(
        api.inventory_members(NS),
        ["Deployment/api", "Deployment/web"]
    );
    let record = reconciler.sync_once("test").await.expect("sync");
    let shop = ns_result(&record, NS);
    assert!(
        shop.failed[0]
            .error
            .contains("no longer carries Airlock's label"),
        "{shop:#?}"
    );
    assert!(
        !api.take_requests().iter().any(|r| r.method == "DELETE"),
        "a second attempt deleted"
    );
    assert!(api.get(&api_path).is_some());
    assert_eq!(api.inventory_members(NS), ["Deployment/web"]);
}

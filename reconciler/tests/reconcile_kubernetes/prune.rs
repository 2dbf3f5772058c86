//! Prune and the inventory: only inventory members still carrying Airlock's label are deleted,
//! an unreadable inventory holds prune back, and an object replaced after its check survives.

use super::*;

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
    let patches: Vec<_> = requests
        .iter()
        .filter(|r| r.writes() && r.method == "PATCH")
        .collect();
    assert!(
        patches.iter().all(|r| r.path == inv),
        "{:?}",
        lines(&requests)
    );
    // The refused object is not adopted into the inventory.
    assert_eq!(api.inventory_members(NS), ["Deployment.apps/web"]);

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
        !requests.iter().any(|r| r.writes()),
        "{:?}",
        lines(&requests)
    );
    assert_eq!(api.get(&inv), Some(stored));
    assert!(api.get(&api_path).is_some());

    // Readable again: api is pruned after all.
    let record = reconciler.sync_once("test").await.expect("sync");
    assert_eq!(ns_result(&record, NS).pruned, ["Deployment/api"]);
    assert_eq!(api.get(&api_path), None);
    assert_eq!(api.inventory_members(NS), ["Deployment.apps/web"]);

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
        ["Deployment.apps/api", "Deployment.apps/web"]
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
    assert_eq!(api.inventory_members(NS), ["Deployment.apps/web"]);
}

//! Applying: the first sync and a no-op second sync, drift repair and a Git change, and a failed
//! apply that stays in the inventory and is retried.

use super::*;

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
    assert_eq!(shop.health["Deployment.apps/web"].health, Health::Healthy);
    assert_eq!(
        shop.health["Deployment.apps/web"].images,
        std::slice::from_ref(&web)
    );
    assert_eq!(shop.health["Deployment.apps/api"].health, Health::Healthy);

    // Read the inventory, observe each object, write the inventory AHEAD of the applies (a
    // crash mid-sync leaves nothing unrecorded), apply each, read health. The final inventory
    // equals the one written ahead, so it is not written twice.
    let first = api.take_requests();
    assert_eq!(
        lines(&first),
        [
            req("GET", &inv),
            req("GET", &api_path),
            req("GET", &web_path),
            req("PATCH", &inv),
            req("PATCH", &api_path),
            req("PATCH", &web_path),
            req("GET", &api_path),
            req("GET", &web_path),
        ]
    );
    for r in first.iter().filter(|r| r.writes() && r.method == "PATCH") {
        assert_server_side_apply(r);
    }
    let body = first[5].body.as_ref().expect("apply body");
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
    let cm = first[3].body.as_ref().expect("inventory body");
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
        inventory["members"]["Deployment.apps/web"]["images"],
        json!([web])
    );
    assert_eq!(
        inventory["members"]["Deployment.apps/web"]["commit"],
        commit
    );
    assert_eq!(
        inventory["members"]["Deployment.apps/api"]["images"],
        json!([api_image])
    );
    assert_eq!(
        api.inventory_members(NS),
        ["Deployment.apps/api", "Deployment.apps/web"]
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
    // Nothing written: the objects and the inventory (its text would not change) are only read,
    // each object once (its health comes from the same read), and compared with what the server
    // would make of Git's object (a server-side-apply dry run, which changes nothing).
    assert_eq!(
        lines(&second),
        [
            req("GET", &inv),
            req("GET", &api_path),
            req("PATCH dry-run", &api_path),
            req("GET", &web_path),
            req("PATCH dry-run", &web_path),
        ]
    );
    for r in second.iter().filter(|r| r.dry_run) {
        assert_eq!(r.content_type.as_deref(), Some(APPLY_PATCH), "{r:?}");
        assert!(
            r.query_pairs()
                .contains(&("dryRun".to_owned(), "All".to_owned())),
            "{r:?}"
        );
    }
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
        .filter(|r| r.writes() && r.method == "PATCH" && r.path == web_path)
        .collect();
    assert_eq!(patches.len(), 1, "{:?}", lines(&requests));
    assert_server_side_apply(patches[0]);
    assert_eq!(
        patches[0].body.as_ref().expect("body")["spec"]["replicas"],
        1
    );
    let live = api.get(&web_path).expect("web");
    assert_eq!(live["spec"]["replicas"], 1);
    assert_eq!(shop.health["Deployment.apps/web"].health, Health::Healthy);
    assert!(
        airlock_reconciler::reconcile::run::describe(&record)
            .contains("repair Deployment/web (drift: /spec/replicas differs from Git)")
    );

    // Repaired: the next sync does nothing to it.
    let record = reconciler.sync_once("test").await.expect("sync");
    assert!(ns_result(&record, NS).applied.is_empty());
    assert!(
        !api.take_requests()
            .iter()
            .any(|r| r.writes() && r.method == "PATCH" && r.path == web_path)
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
        api.inventory(NS).expect("inventory")["members"]["Deployment.apps/web"]["commit"],
        commit
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
        shop.health["Deployment.apps/web"].health,
        Health::Degraded(_)
    ));
    // Still Airlock's responsibility: in the inventory, so it is retried (not "created" again
    // from scratch, and prunable if Git drops it).
    assert_eq!(
        api.inventory_members(NS),
        ["Deployment.apps/api", "Deployment.apps/web"]
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

/// The server stores quantities in canonical form: Git's `cpu: 0.5` reads back as `500m`. Drift
/// is judged against a server-side-apply dry run, so that is never drift (a raw comparison of
/// Git's text with the live object repaired it on every sync). Control: a real change to the
/// same field is still drift, and is repaired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_normalisation_is_never_drift_but_a_real_change_is() {
    let world = World::new();
    let web = world.image("web", 1, Vouch::Trusted(SOURCE)).await;
    let text = format!(
        "{}        resources:\n          limits: {{cpu: 0.5}}\n",
        deployment("web", &web)
    );
    world.write_manifest(ENV, NS, "web.yaml", &text);
    world.commit("web with a cpu limit");
    let (reconciler, api) = reconciler(&world);
    let web_path = deployment_path(NS, "web");
    reconciler.sync_once("test").await.expect("first sync");
    let cpu = "/spec/template/spec/containers/0/resources/limits/cpu";
    // The server normalised it: Git's text and the live object do differ as text.
    assert_eq!(
        api.get(&web_path).expect("web").pointer(cpu),
        Some(&json!("500m"))
    );
    api.take_requests();

    let record = reconciler.sync_once("test").await.expect("second sync");
    let shop = ns_result(&record, NS);
    assert!(shop.applied.is_empty(), "{shop:#?}");
    assert_eq!(shop.unchanged, ["Deployment/web"]);
    assert!(
        !api.take_requests().iter().any(|r| r.writes()),
        "the normalised object was rewritten"
    );

    // Control: someone raises the limit by hand; that is drift, repaired back to Git's value.
    api.modify(&web_path, |o| {
        o["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!("2");
    });
    let record = reconciler
        .sync_once("test")
        .await
        .expect("sync after drift");
    let shop = ns_result(&record, NS);
    assert_eq!(
        applied(shop),
        [("Deployment/web".to_owned(), "repair".to_owned())]
    );
    assert_eq!(
        shop.applied[0].drift.as_deref(),
        Some(format!("{cpu} differs from Git").as_str())
    );
    assert_eq!(
        api.get(&web_path).expect("web").pointer(cpu),
        Some(&json!("500m"))
    );
}

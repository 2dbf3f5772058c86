//! Refusals and `plan`: refused objects are never sent while the rest of the namespace syncs,
//! and a `plan` only reads.

use super::*;

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
        // A custom kind that may start pods of its own: its images cannot be checked.
        (
            "rollout.yaml",
            "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: r\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n        image: evil:latest\n"
                .to_owned()
        ),
        // The reconciler's own inventory cannot be written from Git.
        (
            "inventory.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: airlock-inventory\ndata: {}\n"
                .to_owned(),
        ),
    ];
    for (file, text) in &files {
        world.write_manifest(ENV, NS, file, text);
    }
    world.commit("one good, eight refused");
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
    assert_eq!(shop.refused.len(), 8, "{shop:#?}");
    let r = reasons("Rollout/r");
    assert!(
        r.contains("kind Rollout (argoproj.io/v1alpha1) is not known to Airlock"),
        "{r}"
    );
    let r = reasons("ConfigMap/airlock-inventory");
    assert!(r.contains("reserved for the reconciler's inventory"), "{r}");
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

    // Only the inventory (written ahead) and the admitted object were written; the refused ones were not even
    // looked up (admission comes before any request), in any namespace.
    let requests = api.take_requests();
    let good_path = deployment_path(NS, "good");
    let inv = inventory_path(NS);
    assert_eq!(
        lines(&requests),
        [
            req("GET", &inv),
            req("GET", &good_path),
            req("PATCH", &inv),
            req("PATCH", &good_path),
            req("GET", &good_path),
        ]
    );
    for r in requests
        .iter()
        .filter(|r| r.writes() && r.method == "PATCH")
    {
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
    assert_eq!(api.inventory_members(NS), ["Deployment.apps/good"]);
    let (_, _, refused, failed) = record.counts();
    assert_eq!((refused, failed), (8, 0));
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
    // Reads and dry runs only: plan changes nothing on the cluster.
    assert!(
        requests.iter().all(|r| !r.writes()),
        "{:?}",
        lines(&requests)
    );
    let after: Vec<_> = api
        .paths()
        .into_iter()
        .map(|p| (p.clone(), api.get(&p)))
        .collect();
    assert_eq!(before, after);
    // plan leaves no sync record.
    let status =
        airlock_reconciler::reconcile::run::status(reconciler.config(), 10).expect("status");
    assert_eq!(
        status.lines().filter(|l| l.contains("sync ")).count(),
        1,
        "{status}"
    );
}

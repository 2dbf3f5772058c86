//! The Kubernetes target, kept thin: server-side apply with field manager `airlock`, an
//! inventory ConfigMap per namespace, drift by comparing a server-side-apply dry run with the
//! live object (so the server's normalisation is never drift), and health from the usual status
//! fields ([`crate::reconcile::health`]). Everything else is the shared sync logic.
//!
//! Tested against kube's `Client` over a scripted `tower_test` service (no API server installs
//! here): the exact paths, query parameters and content types are asserted in
//! `tests/reconcile_kubernetes/`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    Preconditions,
};
use serde_json::{Value, json};

use super::{Deleted, Health, Observed, Target, TargetError};
use crate::reconcile::diff::drift;
use crate::reconcile::health::health_of;
use crate::reconcile::inventory::{Inventory, Member};
use crate::reconcile::manifest::{MANAGED_BY, MANAGED_BY_LABEL, ObjectKey, is_cluster_scoped};

/// The field manager every apply uses.
pub const FIELD_MANAGER: &str = "airlock";
/// Name of the inventory ConfigMap in each namespace.
pub const INVENTORY_CONFIGMAP: &str = "airlock-inventory";
/// Key of the inventory in its ConfigMap.
pub const INVENTORY_KEY: &str = "inventory.json";

/// Applies objects to a Kubernetes cluster with server-side apply.
#[derive(Clone)]
pub struct KubernetesTarget {
    client: Client,
    /// Per namespace, the inventory as last read from (or written to) the cluster: a sync that
    /// changes nothing writes nothing, and an inventory that could not be read is never
    /// overwritten (its members would be forgotten, never pruned).
    inventories: Arc<Mutex<HashMap<String, Stored>>>,
}

/// What the cluster holds as a namespace's inventory, as far as this target knows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stored {
    /// No inventory ConfigMap.
    Absent,
    /// This text, with Airlock's label on the ConfigMap.
    Text(String),
    /// The last read failed (API error, malformed, another environment's).
    Unreadable(String),
}

fn err(what: impl std::fmt::Display) -> TargetError {
    TargetError(what.to_string())
}

fn apply_params() -> PatchParams {
    // force: Git is the source of truth; a conflicting manager's fields are taken over.
    PatchParams::apply(FIELD_MANAGER).force()
}

fn owned(labels: &std::collections::BTreeMap<String, String>) -> bool {
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
}

impl KubernetesTarget {
    /// A target over an existing client.
    pub fn new(client: Client) -> Self {
        KubernetesTarget {
            client,
            inventories: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn remember(&self, namespace: &str, stored: Option<Stored>) {
        let mut known = self
            .inventories
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match stored {
            Some(s) => known.insert(namespace.to_owned(), s),
            None => known.remove(namespace),
        };
    }

    fn known(&self, namespace: &str) -> Option<Stored> {
        self.inventories
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(namespace)
            .cloned()
    }

    /// Reads the inventory and remembers what the cluster holds (see [`KubernetesTarget::inventories`]).
    async fn fetch_inventory(&self, env: &str, ns: &str) -> Result<Inventory, TargetError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let Some(cm) = api
            .get_opt(INVENTORY_CONFIGMAP)
            .await
            .map_err(|e| err(format!("get ConfigMap/{INVENTORY_CONFIGMAP}: {e}")))?
        else {
            self.remember(ns, Some(Stored::Absent));
            return Ok(Inventory::new(env, ns));
        };
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get(INVENTORY_KEY))
            .ok_or_else(|| {
                err(format!(
                    "ConfigMap/{INVENTORY_CONFIGMAP} has no {INVENTORY_KEY}"
                ))
            })?;
        let inventory = Inventory::from_json(text.as_bytes()).map_err(err)?;
        if inventory.environment != env {
            return Err(err(format!(
                "namespace {ns} is inventoried by environment {:?}, not {env:?}",
                inventory.environment
            )));
        }
        // A ConfigMap that lost Airlock's label is rewritten (with it) even if its text is
        // the same.
        let labelled = owned(cm.metadata.labels.as_ref().unwrap_or(&Default::default()));
        self.remember(ns, labelled.then(|| Stored::Text(text.clone())));
        Ok(inventory)
    }

    fn api(&self, namespace: &str, key: &ObjectKey) -> Api<DynamicObject> {
        let (group, version) = match key.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", key.api_version.as_str()),
        };
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &key.kind));
        if is_cluster_scoped(&key.kind) {
            Api::all_with(self.client.clone(), &resource)
        } else {
            Api::namespaced_with(self.client.clone(), namespace, &resource)
        }
    }

    async fn live(
        &self,
        namespace: &str,
        key: &ObjectKey,
    ) -> Result<Option<DynamicObject>, TargetError> {
        self.api(namespace, key)
            .get_opt(&key.name)
            .await
            .map_err(|e| err(format!("get {key}: {e}")))
    }
}

impl Target for KubernetesTarget {
    fn unsupported(&self, _key: &ObjectKey) -> Option<String> {
        None
    }

    async fn read_inventory(&self, env: &str, ns: &str) -> Result<Inventory, TargetError> {
        let read = self.fetch_inventory(env, ns).await;
        if let Err(e) = &read {
            self.remember(ns, Some(Stored::Unreadable(e.to_string())));
        }
        read
    }

    async fn write_inventory(&self, inventory: &Inventory) -> Result<(), TargetError> {
        let ns = inventory.namespace.as_str();
        let text = inventory.to_json();
        match self.known(ns) {
            Some(Stored::Unreadable(why)) => {
                return Err(err(format!(
                    "ConfigMap/{INVENTORY_CONFIGMAP} not written: it could not be read ({why}), \
                     and overwriting it would forget its members"
                )));
            }
            Some(Stored::Text(stored)) if stored == text => return Ok(()),
            _ => {}
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let cm = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": INVENTORY_CONFIGMAP,
                "namespace": inventory.namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            },
            "data": {INVENTORY_KEY: text},
        });
        let written = api
            .patch(INVENTORY_CONFIGMAP, &apply_params(), &Patch::Apply(cm))
            .await;
        // Unknown after a failure: the next write goes through.
        self.remember(ns, written.is_ok().then_some(Stored::Text(text)));
        written.map_err(|e| err(format!("apply ConfigMap/{INVENTORY_CONFIGMAP}: {e}")))?;
        Ok(())
    }

    async fn observe(
        &self,
        ns: &str,
        key: &ObjectKey,
        desired: &Value,
        _hash: &str,
    ) -> Result<Observed, TargetError> {
        let Some(live) = self.live(ns, key).await? else {
            return Ok(Observed::Missing);
        };
        if !owned(live.metadata.labels.as_ref().unwrap_or(&Default::default())) {
            return Ok(Observed::NotOwned);
        }
        // What the server would store if Git's object were applied now (its defaults, its
        // canonical quantities, other managers' fields kept), compared with what it stores.
        let would_be = self
            .api(ns, key)
            .patch(&key.name, &apply_params().dry_run(), &Patch::Apply(desired))
            .await
            .map_err(|e| err(format!("dry-run apply {key}: {e}")))?;
        let live = serde_json::to_value(&live).map_err(|e| err(e.to_string()))?;
        let would_be = serde_json::to_value(&would_be).map_err(|e| err(e.to_string()))?;
        match drift(&would_be, &live) {
            None => Ok(Observed::Matches(health_of(&key.kind, &live))),
            Some(at) => Ok(Observed::Differs(format!("{at} differs from Git"))),
        }
    }

    async fn apply(
        &self,
        ns: &str,
        key: &ObjectKey,
        desired: &Value,
        _hash: &str,
    ) -> Result<(), TargetError> {
        self.api(ns, key)
            .patch(&key.name, &apply_params(), &Patch::Apply(desired))
            .await
            .map_err(|e| err(format!("apply {key}: {e}")))?;
        Ok(())
    }

    async fn delete(&self, ns: &str, member: &Member) -> Result<Deleted, TargetError> {
        let Some(live) = self.live(ns, &member.key).await? else {
            return Ok(Deleted::Gone);
        };
        if !owned(live.metadata.labels.as_ref().unwrap_or(&Default::default())) {
            return Ok(Deleted::NotOwned);
        }
        // Only the object just seen carrying the label: if it was replaced since (same name,
        // someone else's), the API server refuses with 409 instead of deleting that one.
        let params = DeleteParams {
            preconditions: live.metadata.uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match self
            .api(ns, &member.key)
            .delete(&member.key.name, &params)
            .await
        {
            Ok(_) => Ok(Deleted::Deleted),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Deleted::Gone),
            Err(e) => Err(err(format!("delete {}: {e}", member.key))),
        }
    }

    async fn health(&self, ns: &str, key: &ObjectKey) -> Result<Health, TargetError> {
        let Some(live) = self.live(ns, key).await? else {
            return Ok(Health::Degraded(format!("{key} does not exist")));
        };
        let live = serde_json::to_value(&live).map_err(|e| err(e.to_string()))?;
        Ok(health_of(&key.kind, &live))
    }
}

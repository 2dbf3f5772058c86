//! The in-memory object store: live objects keyed by URL path, the server fields an apply adds
//! (`uid`, `generation`, `resourceVersion`, `managedFields`, a healthy status), and the helpers
//! a test uses to read and change live objects without a request.

use serde_json::{Value, json};

use super::paths::{inventory_path, parse_path};
use super::{FakeApiServer, Inner};

/// A live object and who applied it last.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    pub(super) object: Value,
    pub(super) manager: String,
}

fn int_at(v: &Value, ptr: &str) -> Option<i64> {
    v.pointer(ptr).and_then(Value::as_i64)
}

impl FakeApiServer {
    /// The live object at `path`, as a GET would return it.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.lock().objects.get(path).map(|s| s.object.clone())
    }

    /// Paths of every stored object.
    pub fn paths(&self) -> Vec<String> {
        self.lock().objects.keys().cloned().collect()
    }

    /// Creates or replaces a live object as `manager` would (someone else's object, say);
    /// server fields are added as for an apply.
    pub fn put(&self, path: &str, object: Value, manager: &str) {
        let mut inner = self.lock();
        inner.store(path, object, manager);
    }

    /// Changes a live object in place (drift), bumping its resourceVersion (and generation when
    /// `spec` changed) like the server would; Deployment status is NOT recomputed, as a
    /// controller would only later. Panics when there is no such object.
    pub fn modify(&self, path: &str, change: impl FnOnce(&mut Value)) {
        let mut inner = self.lock();
        inner.resource_version += 1;
        let rv = inner.resource_version.to_string();
        let stored = inner
            .objects
            .get_mut(path)
            .unwrap_or_else(|| panic!("no object at {path}"));
        let before = stored.object.get("spec").cloned();
        change(&mut stored.object);
        let o = &mut stored.object;
        if o.get("spec").cloned() != before {
            let generation = int_at(o, "/metadata/generation").unwrap_or(1) + 1;
            o["metadata"]["generation"] = json!(generation);
        }
        o["metadata"]["resourceVersion"] = json!(rv);
    }

    /// Removes a live object without a request.
    pub fn remove(&self, path: &str) -> Option<Value> {
        self.lock().objects.remove(path).map(|s| s.object)
    }

    /// The inventory stored in a namespace's `airlock-inventory` ConfigMap, parsed.
    pub fn inventory(&self, namespace: &str) -> Option<Value> {
        let cm = self.get(&inventory_path(namespace))?;
        let text = cm.pointer("/data/inventory.json")?.as_str()?.to_owned();
        serde_json::from_str(&text).ok()
    }

    /// Member keys (`Kind.group/name`) of a namespace's stored inventory.
    pub fn inventory_members(&self, namespace: &str) -> Vec<String> {
        self.inventory(namespace)
            .and_then(|i| i.get("members").and_then(Value::as_object).cloned())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// Quantities in container resources, in the canonical form the API server stores them in
/// (`cpu: 0.5` and `cpu: "0.5"` read back as `"500m"`, `cpu: 2` as `"2"`): what makes a raw
/// comparison of Git's text with the live object see drift that is not there.
fn canonical_quantities(object: &mut Value) {
    for pointer in [
        "/spec/containers",
        "/spec/initContainers",
        "/spec/template/spec/containers",
        "/spec/template/spec/initContainers",
    ] {
        let Some(containers) = object.pointer_mut(pointer).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers {
            for section in ["limits", "requests"] {
                let Some(values) = container
                    .pointer_mut(&format!("/resources/{section}"))
                    .and_then(Value::as_object_mut)
                else {
                    continue;
                };
                for (name, value) in values.iter_mut() {
                    let number = match value {
                        Value::Number(n) => n.as_f64(),
                        Value::String(s) => s.parse::<f64>().ok(),
                        _ => None,
                    };
                    let Some(n) = number else { continue };
                    *value = if n.fract() == 0.0 {
                        json!(format!("{}", n as i64))
                    } else if name == "cpu" {
                        json!(format!("{}m", (n * 1000.0).round() as i64))
                    } else {
                        continue;
                    };
                }
            }
        }
    }
}

impl Inner {
    /// Stores `object` at `path` with server fields; returns the stored object.
    pub(super) fn store(&mut self, path: &str, object: Value, manager: &str) -> Value {
        self.apply_as(path, object, manager, false)
    }

    /// What an apply of `object` makes of the object at `path`; stored unless `dry_run`
    /// (`?dryRun=All`: the answer is the same, nothing changes, not even resourceVersion).
    pub(super) fn apply_as(
        &mut self,
        path: &str,
        mut object: Value,
        manager: &str,
        dry_run: bool,
    ) -> Value {
        canonical_quantities(&mut object);
        let counters = (self.resource_version, self.uid);
        let previous = self.objects.get(path).map(|s| s.object.clone());
        if let Some(parts) = parse_path(path)
            && let (Some(ns), Some(meta)) = (
                parts.namespace,
                object.get_mut("metadata").and_then(Value::as_object_mut),
            )
        {
            meta.entry("namespace").or_insert(json!(ns));
        }
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("status");
                if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                    for k in [
                        "uid",
                        "creationTimestamp",
                        "generation",
                        "resourceVersion",
                        "managedFields",
                    ] {
                        m.remove(k);
                    }
                }
            }
            v
        };
        if let Some(prev) = &previous
            && strip(prev) == strip(&object)
        {
            // A no-op apply: nothing changes, not even resourceVersion.
            return prev.clone();
        }
        let spec_changed = previous.as_ref().map(|p| p.get("spec")) != Some(object.get("spec"));
        let generation = match &previous {
            None => 1,
            Some(p) => {
                let g = int_at(p, "/metadata/generation").unwrap_or(1);
                if spec_changed { g + 1 } else { g }
            }
        };
        self.resource_version += 1;
        let uid = match previous
            .as_ref()
            .and_then(|p| p.pointer("/metadata/uid"))
            .cloned()
        {
            Some(u) => u,
            None => {
                self.uid += 1;
                json!(format!("00000000-0000-4000-8000-{:012}", self.uid))
            }
        };
        let created = previous
            .as_ref()
            .and_then(|p| p.pointer("/metadata/creationTimestamp"))
            .cloned()
            .unwrap_or(json!("2026-01-01T00:00:00Z"));
        let api_version = object.get("apiVersion").cloned().unwrap_or(Value::Null);
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("uid".into(), uid);
            meta.insert("creationTimestamp".into(), created);
            meta.insert("generation".into(), json!(generation));
            meta.insert(
                "resourceVersion".into(),
                json!(self.resource_version.to_string()),
            );
            meta.insert(
                "managedFields".into(),
                json!([{"manager": manager, "operation": "Apply", "apiVersion": api_version,
                        "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {}}]),
            );
        }
        match object.get("kind").and_then(Value::as_str) {
            Some("Deployment" | "StatefulSet") => {
                let replicas = int_at(&object, "/spec/replicas").unwrap_or(1);
                object["status"] = json!({
                    "observedGeneration": generation,
                    "replicas": replicas,
                    "availableReplicas": replicas,
                    "readyReplicas": replicas,
                    "updatedReplicas": replicas,
                });
            }
            Some("Pod") => {
                // A running pod whose every container is ready, as the kubelet would report it.
                let statuses: Vec<Value> = object
                    .pointer("/spec/containers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|c| json!({"name": c.get("name").cloned().unwrap_or_default(), "ready": true}))
                    .collect();
                object["status"] = json!({"phase": "Running", "containerStatuses": statuses});
            }
            _ => {}
        }
        if dry_run {
            (self.resource_version, self.uid) = counters;
        } else {
            self.objects.insert(
                path.to_owned(),
                Stored {
                    object: object.clone(),
                    manager: manager.to_owned(),
                },
            );
        }
        object
    }
}

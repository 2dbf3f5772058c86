//! Kubernetes objects as read from the environment repository: identity, the container images
//! they name, whether a kind is cluster-scoped, and the comparison used for drift.
//!
//! Objects stay `serde_json::Value`s: the reconciler must carry any kind (CRDs included) to the
//! target unchanged, so only the few fields it reasons about are read, by path.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Label put on every object Airlock applies; prune touches nothing without it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "airlock";
/// Label naming the environment an object was applied from.
pub const ENVIRONMENT_LABEL: &str = "airlock.dev/environment";

/// Which object: what Kubernetes itself uses to name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    /// `apiVersion`, e.g. `apps/v1`.
    pub api_version: String,
    /// `kind`, e.g. `Deployment`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectKey {
    /// The API group (`apps` for `apps/v1`; empty for the core group's `v1`).
    pub fn group(&self) -> &str {
        self.api_version
            .split_once('/')
            .map_or("", |(group, _)| group)
    }

    /// The object's identity as inventories and health reports key it: `Kind.group/name`, as
    /// `kubectl` names a resource (`Deployment.apps/web`), or `Kind/name` in the core group
    /// (`ConfigMap/settings`). Two kinds of the same name in different groups never collide.
    pub fn id(&self) -> String {
        match self.group() {
            "" => format!("{}/{}", self.kind, self.name),
            group => format!("{}.{group}/{}", self.kind, self.name),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Why a document is not a usable object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// A required field is absent or not a string.
    #[error("{0} is missing or not a string")]
    Missing(&'static str),
    /// `metadata.name` is not a DNS subdomain.
    #[error("metadata.name {0:?} is not a valid object name")]
    BadName(String),
}

/// Reads `apiVersion`, `kind` and `metadata.name`.
pub fn object_key(object: &Value) -> Result<ObjectKey, ManifestError> {
    let text = |ptr: &str, what| {
        object
            .pointer(ptr)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or(ManifestError::Missing(what))
    };
    let key = ObjectKey {
        api_version: text("/apiVersion", "apiVersion")?,
        kind: text("/kind", "kind")?,
        name: text("/metadata/name", "metadata.name")?,
    };
    if !valid_name(&key.name) {
        return Err(ManifestError::BadName(key.name));
    }
    Ok(key)
}

/// DNS-1123 subdomain (what Kubernetes allows for most names); it also keeps names safe as file
/// and pod names.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !name.contains("..")
}

/// `metadata.namespace` as written in the file, if any.
pub fn declared_namespace(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
}

/// Kinds that live outside any namespace (the built-in ones; a CRD's scope is not known here,
/// so a custom kind is treated as namespaced and the API server has the last word).
pub fn is_cluster_scoped(kind: &str) -> bool {
    matches!(
        kind,
        "Namespace"
            | "Node"
            | "PersistentVolume"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "CustomResourceDefinition"
            | "StorageClass"
            | "PriorityClass"
            | "RuntimeClass"
            | "IngressClass"
            | "APIService"
            | "MutatingWebhookConfiguration"
            | "ValidatingWebhookConfiguration"
            | "ValidatingAdmissionPolicy"
            | "ValidatingAdmissionPolicyBinding"
            | "CSIDriver"
            | "CSINode"
            | "VolumeAttachment"
            | "CertificateSigningRequest"
            | "FlowSchema"
            | "PriorityLevelConfiguration"
    )
}

/// Built-in kinds that hold no pod spec (so no image) and are safe to carry unchanged.
pub fn is_known_without_pod_spec(kind: &str) -> bool {
    matches!(
        kind,
        "ConfigMap"
            | "Secret"
            | "Service"
            | "ServiceAccount"
            | "Role"
            | "RoleBinding"
            | "Ingress"
            | "NetworkPolicy"
            | "PersistentVolumeClaim"
            | "HorizontalPodAutoscaler"
            | "PodDisruptionBudget"
            | "LimitRange"
            | "ResourceQuota"
            | "Endpoints"
            | "EndpointSlice"
    )
}

/// A kind whose images Airlock knows how to find (or that has none).
pub fn is_known_kind(kind: &str) -> bool {
    pod_spec_pointer(kind).is_some() || is_known_without_pod_spec(kind) || is_cluster_scoped(kind)
}

/// What the pod spec asks of the host: privileged containers, host namespaces, host paths,
/// added capabilities. Each is a way out of the container for anyone who can write the
/// environment repository, whatever image runs; the admission policy refuses them unless the
/// namespace allows host access.
pub fn host_access(object: &Value) -> Vec<String> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let Some(spec) = pod_spec_pointer(kind).and_then(|p| object.pointer(p)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec.get(field).and_then(Value::as_bool) == Some(true) {
            out.push(format!("{field}: true"));
        }
    }
    for v in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(path) = v.pointer("/hostPath/path").and_then(Value::as_str) {
            let name = v.get("name").and_then(Value::as_str).unwrap_or("");
            out.push(format!("volume '{name}' mounts the host path {path}"));
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            let sc = c.get("securityContext");
            if sc
                .and_then(|s| s.get("privileged"))
                .and_then(Value::as_bool)
                == Some(true)
            {
                out.push(format!("container '{name}' is privileged"));
            }
            let added = sc
                .and_then(|s| s.pointer("/capabilities/add"))
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty());
            if let Some(added) = added {
                let caps: Vec<&str> = added.iter().filter_map(Value::as_str).collect();
                out.push(format!(
                    "container '{name}' adds capabilities {}",
                    caps.join(", ")
                ));
            }
            for p in c
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if p.get("hostPort").is_some() {
                    out.push(format!("container '{name}' binds a host port"));
                }
            }
        }
    }
    out
}

/// One container image named by an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUse {
    /// JSON pointer of the `image` field, e.g. `/spec/template/spec/containers/0/image`.
    pub path: String,
    /// The container's name.
    pub container: String,
    /// The reference as written.
    pub reference: String,
}

/// Where a kind keeps its pod spec, as a JSON pointer.
pub fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template/spec"),
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        "PodTemplate" => Some("/template/spec"),
        _ => None,
    }
}

/// Every image in containers, initContainers and ephemeralContainers of the object's pod spec.
/// A container without a string `image` is reported with an empty reference (and refused).
pub fn images(object: &Value) -> Vec<ImageUse> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let Some(spec_ptr) = pod_spec_pointer(kind) else {
        return Vec::new();
    };
    let Some(spec) = object.pointer(spec_ptr) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // Image volumes (`volumes[].image.reference`) run no process but put an image's files in
    // front of one: they are checked like containers.
    if let Some(volumes) = spec.get("volumes").and_then(Value::as_array) {
        for (i, v) in volumes.iter().enumerate() {
            if let Some(image) = v.get("image") {
                out.push(ImageUse {
                    path: format!("{spec_ptr}/volumes/{i}/image/reference"),
                    container: format!(
                        "volume {}",
                        v.get("name").and_then(Value::as_str).unwrap_or("")
                    ),
                    reference: image
                        .get("reference")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                });
            }
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        let Some(containers) = spec.get(list).and_then(Value::as_array) else {
            continue;
        };
        for (i, c) in containers.iter().enumerate() {
            out.push(ImageUse {
                path: format!("{spec_ptr}/{list}/{i}/image"),
                container: c
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                reference: c
                    .get("image")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            });
        }
    }
    out
}

/// A reference split into repository and digest when it is pinned: `REPO@sha256:<64 hex>`
/// with no tag between (a `repo:tag@digest` is refused too: the tag would only mislead).
pub fn pinned(reference: &str) -> Option<(&str, &str)> {
    let (repository, digest) = reference.rsplit_once('@')?;
    if !airlock_verify::oci::is_sha256_digest(digest) || repository.is_empty() {
        return None;
    }
    let last = repository.rsplit('/').next().unwrap_or(repository);
    if last.contains(':') {
        return None;
    }
    Some((repository, digest))
}

/// The object as it will be applied: the folder's namespace set and Airlock's labels added.
pub fn prepared(object: &Value, namespace: Option<&str>, environment: &str) -> Value {
    let mut out = object.clone();
    let cluster_scoped = object
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(is_cluster_scoped);
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        // A cluster-scoped object has no namespace: setting one would read as drift forever.
        if let Some(ns) = namespace.filter(|_| !cluster_scoped) {
            meta.insert("namespace".into(), Value::String(ns.to_owned()));
        }
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(MANAGED_BY_LABEL.into(), Value::String(MANAGED_BY.into()));
            labels.insert(
                ENVIRONMENT_LABEL.into(),
                Value::String(environment.to_owned()),
            );
        }
    }
    out
}

/// `sha256:<hex>` of the object's canonical JSON (serde_json sorts object keys).
pub fn desired_hash(object: &Value) -> String {
    let bytes = serde_json::to_vec(object).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn images_cover_every_container_list_and_pod_template() {
        let deploy = json!({"kind": "Deployment", "spec": {"template": {"spec": {
            "initContainers": [{"name": "i", "image": "a"}],
            "containers": [{"name": "c", "image": "b"}, {"name": "d"}],
            "ephemeralContainers": [{"name": "e", "image": "c"}]}}}});
        let refs: Vec<_> = images(&deploy).into_iter().map(|i| i.reference).collect();
        assert_eq!(refs, ["b", "", "a", "c"]);
        let cron = json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template":
            {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}}});
        assert_eq!(
            images(&cron)[0].path,
            "/spec/jobTemplate/spec/template/spec/containers/0/image"
        );
        assert!(images(&json!({"kind": "ConfigMap"})).is_empty());
    }

    #[test]
    fn host_access_is_found_in_every_container_list() {
        let pod = json!({"kind": "Deployment", "spec": {"template": {"spec": {
            "hostNetwork": true, "hostPID": false,
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}, {"name": "e", "emptyDir": {}}],
            "initContainers": [{"name": "i", "securityContext": {"privileged": true}}],
            "containers": [{"name": "c", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}},
                            "ports": [{"containerPort": 80, "hostPort": 80}]}]}}}});
        assert_eq!(
            host_access(&pod),
            [
                "hostNetwork: true",
                "volume 'root' mounts the host path /",
                "container 'c' adds capabilities SYS_ADMIN",
                "container 'c' binds a host port",
                "container 'i' is privileged",
            ]
        );
        assert!(
            host_access(&json!({"kind": "Pod", "spec": {"containers": [{"name": "c"}]}}))
                .is_empty()
        );
        let vol = json!({"kind": "Pod", "spec": {"volumes": [{"name": "m", "image": {"reference": "x"}}],
            "containers": [{"name": "c", "image": "y"}]}});
        let refs: Vec<_> = images(&vol)
            .into_iter()
            .map(|i| (i.container, i.reference))
            .collect();
        assert_eq!(
            refs,
            [("volume m".into(), "x".into()), ("c".into(), "y".into())]
        );
        assert!(!is_known_kind("Rollout") && is_known_kind("Service") && is_known_kind("CronJob"));
    }

    #[test]
    fn pinned_means_digest_and_no_tag() {
        assert_eq!(
            pinned(&format!("127.0.0.1:5000/greet@{D}")),
            Some(("127.0.0.1:5000/greet", D))
        );
        assert_eq!(pinned("127.0.0.1:5000/greet:1.0"), None);
        assert_eq!(pinned(&format!("greet:1.0@{D}")), None);
        assert_eq!(pinned("greet@sha256:abc"), None);
        assert_eq!(pinned(&format!("@{D}")), None);
    }

    #[test]
    fn names_that_climb_or_shout_are_refused() {
        for bad in ["../x", "a/b", "A", "", "-a", "a..b", "a b"] {
            let o = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": bad}});
            assert!(object_key(&o).is_err(), "{bad:?}");
        }
        let o = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1.a"}});
        assert_eq!(object_key(&o).unwrap().to_string(), "Pod/web-1.a");
    }

    #[test]
    fn prepared_sets_namespace_and_labels_and_hash_is_stable() {
        let o = json!({"metadata": {"name": "a", "labels": {"app": "a"}}});
        let p = prepared(&o, Some("shop"), "staging");
        assert_eq!(p["metadata"]["namespace"], "shop");
        assert_eq!(p["metadata"]["labels"][MANAGED_BY_LABEL], "airlock");
        assert_eq!(p["metadata"]["labels"]["app"], "a");
        assert_eq!(desired_hash(&p), desired_hash(&p.clone()));
        assert_ne!(desired_hash(&p), desired_hash(&o));
    }
}

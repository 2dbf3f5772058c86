//! The podman target: the embedded single-machine default. Each admitted Pod or Deployment
//! becomes one podman pod named `<namespace>-<name>`, played with `podman kube play --replace`
//! and removed with `podman kube down`, with no network unless the manifest asks for one.
//!
//! Inventories live in files under the state directory; every pod carries Airlock's labels and
//! the hash of what was applied, which is how drift and ownership are seen.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Map, Value, json};
use tokio::process::Command;

use super::{Deleted, Health, Observed, Target, TargetError};
use crate::reconcile::config::PodmanConfig;
use crate::reconcile::inventory::{Inventory, Member};
use crate::reconcile::manifest::{MANAGED_BY, MANAGED_BY_LABEL, ObjectKey};

/// Pod label holding (a prefix of) the applied object's hash.
pub const HASH_LABEL: &str = "airlock.dev/hash";
/// Pod label holding the namespace.
pub const NAMESPACE_LABEL: &str = "airlock.dev/namespace";
/// Pod label holding the object's kind.
pub const KIND_LABEL: &str = "airlock.dev/kind";
/// Object annotation choosing a podman network other than `none`.
pub const NETWORK_ANNOTATION: &str = "airlock.dev/podman-network";

/// Runs admitted objects as podman pods on this machine.
#[derive(Debug, Clone)]
pub struct PodmanTarget {
    binary: PathBuf,
    containers_conf: Option<PathBuf>,
    tls_verify: bool,
    state_dir: PathBuf,
}

/// The podman pod name for an object.
pub fn pod_name(namespace: &str, name: &str) -> String {
    format!("{namespace}-{name}")
}

fn short_hash(hash: &str) -> String {
    hash.trim_start_matches("sha256:")
        .chars()
        .take(40)
        .collect()
}

fn err(what: impl std::fmt::Display) -> TargetError {
    TargetError(what.to_string())
}

/// Turns a prepared Pod or Deployment into the one Pod podman plays: named
/// `<namespace>-<name>`, Airlock's labels and the hash on the pod. A Deployment runs one
/// replica: a single host has no scheduler to spread more.
pub fn to_pod(
    namespace: &str,
    key: &ObjectKey,
    desired: &Value,
    hash: &str,
) -> Result<Value, TargetError> {
    let (spec, template_labels) = match key.kind.as_str() {
        "Pod" => (desired.get("spec"), None),
        "Deployment" => (
            desired.pointer("/spec/template/spec"),
            desired.pointer("/spec/template/metadata/labels"),
        ),
        other => return Err(err(format!("podman cannot run kind {other}"))),
    };
    let spec = spec.ok_or_else(|| err(format!("{key} has no pod spec")))?;
    let mut labels = Map::new();
    for source in [template_labels, desired.pointer("/metadata/labels")]
        .into_iter()
        .flatten()
    {
        if let Some(m) = source.as_object() {
            labels.extend(m.clone());
        }
    }
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels.insert(NAMESPACE_LABEL.into(), namespace.into());
    labels.insert(KIND_LABEL.into(), key.kind.clone().into());
    labels.insert(HASH_LABEL.into(), short_hash(hash).into());
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod_name(namespace, &key.name), "labels": labels},
        "spec": spec,
    }))
}

/// What `podman pod inspect` says about a pod, reduced to what the reconciler uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// `Running`, `Created`, `Degraded`, `Exited`, `Stopped`, ...
    pub state: String,
    /// Pod labels.
    pub labels: Map<String, Value>,
    /// (name, state) of each container but the infra one.
    pub containers: Vec<(String, String)>,
}

/// Parses `podman pod inspect` output (an object, or an array of one in newer versions).
pub fn parse_inspect(text: &str) -> Result<PodView, TargetError> {
    let v: Value = serde_json::from_str(text).map_err(|e| err(format!("pod inspect: {e}")))?;
    let v = match v {
        Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
        other => other,
    };
    let infra = v
        .get("InfraContainerID")
        .and_then(Value::as_str)
        .unwrap_or("");
    Ok(PodView {
        state: v
            .get("State")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        labels: v
            .get("Labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        containers: v
            .get("Containers")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter(|c| c.get("Id").and_then(Value::as_str) != Some(infra))
                    .map(|c| {
                        let s = |k| c.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                        (s("Name"), s("State"))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

impl PodmanTarget {
    /// A target with its state (inventories, applied files) under `state_dir`, which is
    /// created with podman's empty working directory.
    pub fn new(config: &PodmanConfig, state_dir: PathBuf) -> Result<Self, TargetError> {
        let target = PodmanTarget {
            binary: config.binary.clone().unwrap_or_else(|| "podman".into()),
            containers_conf: config.containers_conf.clone(),
            tls_verify: config.tls_verify,
            state_dir,
        };
        let work = target.work_dir();
        std::fs::create_dir_all(&work).map_err(|e| err(format!("{}: {e}", work.display())))?;
        Ok(target)
    }

    fn inventory_path(&self, env: &str, ns: &str) -> PathBuf {
        self.state_dir
            .join("inventory")
            .join(env)
            .join(format!("{ns}.json"))
    }

    fn applied_path(&self, pod: &str) -> PathBuf {
        self.state_dir.join("applied").join(format!("{pod}.json"))
    }

    /// An empty directory as podman's working directory: `kube play` builds an image from a
    /// folder in the working directory named like the image, which must never happen here.
    fn work_dir(&self) -> PathBuf {
        self.state_dir.join("work")
    }

    async fn podman(&self, args: &[&str]) -> Result<std::process::Output, TargetError> {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .current_dir(self.work_dir())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(conf) = &self.containers_conf {
            cmd.env("CONTAINERS_CONF", conf);
        }
        cmd.output()
            .await
            .map_err(|e| err(format!("could not run {}: {e}", self.binary.display())))
    }

    async fn podman_ok(&self, args: &[&str]) -> Result<String, TargetError> {
        let out = self.podman(args).await?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        Err(err(format!(
            "podman {} failed: {}",
            args.first().copied().unwrap_or(""),
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )))
    }

    /// `Ok(None)` when the pod does not exist.
    pub async fn inspect(&self, pod: &str) -> Result<Option<PodView>, TargetError> {
        // One process per look: `pod inspect` itself says when there is no such pod.
        let out = self.podman(&["pod", "inspect", pod]).await?;
        if !out.status.success() {
            if String::from_utf8_lossy(&out.stderr).contains("no such pod") {
                return Ok(None);
            }
            return Err(err(format!(
                "podman pod inspect {pod} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        parse_inspect(&String::from_utf8_lossy(&out.stdout)).map(Some)
    }
}

/// Health of a pod from one `podman pod inspect`.
fn pod_health(pod: &str, view: &PodView) -> Health {
    match view.state.as_str() {
        "Running" if view.containers.iter().all(|(_, s)| s == "running") => Health::Healthy,
        "Created" | "Initialized" => Health::Progressing(format!("pod {pod} is starting")),
        state => {
            let containers: Vec<String> = view
                .containers
                .iter()
                .map(|(n, s)| format!("{n} {s}"))
                .collect();
            Health::Degraded(format!("pod {pod} is {state} ({})", containers.join(", ")))
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TargetError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| err(format!("{}: {e}", parent.display())))?;
    // Written, synced, renamed, and the directory synced: after a crash the file is the old
    // one or the new one, never empty.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let io = |e: std::io::Error| err(format!("{}: {e}", path.display()));
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

/// Ours, and for exactly this (namespace, kind): pod names alone could be shared by
/// `Pod/web` and `Deployment/web`, and the labels tell them apart.
fn owned(view: &PodView, namespace: &str, key: &ObjectKey) -> bool {
    let label = |k: &str| view.labels.get(k).and_then(Value::as_str);
    label(MANAGED_BY_LABEL) == Some(MANAGED_BY)
        && label(NAMESPACE_LABEL) == Some(namespace)
        && label(KIND_LABEL) == Some(key.kind.as_str())
}

impl Target for PodmanTarget {
    fn unsupported(&self, key: &ObjectKey) -> Option<String> {
        match (key.api_version.as_str(), key.kind.as_str()) {
            ("v1", "Pod") | ("apps/v1", "Deployment") => None,
            _ => Some(format!(
                "the podman target runs v1 Pods and apps/v1 Deployments only, not {} {}",
                key.api_version, key.kind
            )),
        }
    }

    async fn read_inventory(&self, env: &str, ns: &str) -> Result<Inventory, TargetError> {
        let path = self.inventory_path(env, ns);
        match std::fs::read(&path) {
            Ok(bytes) => {
                Inventory::from_json(&bytes).map_err(|e| err(format!("{}: {e}", path.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Inventory::new(env, ns)),
            Err(e) => Err(err(format!("{}: {e}", path.display()))),
        }
    }

    async fn write_inventory(&self, inventory: &Inventory) -> Result<(), TargetError> {
        let path = self.inventory_path(&inventory.environment, &inventory.namespace);
        write_atomically(&path, inventory.to_json().as_bytes())
    }

    async fn observe(
        &self,
        ns: &str,
        key: &ObjectKey,
        desired: &Value,
        hash: &str,
    ) -> Result<Observed, TargetError> {
        let pod = pod_name(ns, &key.name);
        let Some(view) = self.inspect(&pod).await? else {
            return Ok(Observed::Missing);
        };
        if !owned(&view, ns, key) {
            return Ok(Observed::NotOwned);
        }
        let live_hash = view
            .labels
            .get(HASH_LABEL)
            .and_then(Value::as_str)
            .unwrap_or("");
        if live_hash != short_hash(hash) {
            return Ok(Observed::Differs(format!("pod {pod} runs another version")));
        }
        // A pod meant to run to completion that has exited is done, not drifted: re-playing
        // it on every sync would run it again and again.
        let runs_once = key.kind == "Pod"
            && desired
                .pointer("/spec/restartPolicy")
                .and_then(Value::as_str)
                .is_some_and(|p| p != "Always");
        if runs_once && view.state == "Exited" {
            return Ok(Observed::Matches(pod_health(&pod, &view)));
        }
        if view.state != "Running" {
            return Ok(Observed::Differs(format!("pod {pod} is {}", view.state)));
        }
        if let Some((name, state)) = view.containers.iter().find(|(_, s)| s != "running") {
            return Ok(Observed::Differs(format!("container {name} is {state}")));
        }
        Ok(Observed::Matches(pod_health(&pod, &view)))
    }

    async fn apply(
        &self,
        ns: &str,
        key: &ObjectKey,
        desired: &Value,
        hash: &str,
    ) -> Result<(), TargetError> {
        let pod = to_pod(ns, key, desired, hash)?;
        let name = pod_name(ns, &key.name);
        let network = desired
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(NETWORK_ANNOTATION))
            .and_then(Value::as_str)
            .unwrap_or("none")
            .to_owned();
        let file = self.applied_path(&name);
        let bytes = serde_json::to_vec_pretty(&pod).map_err(|e| err(e.to_string()))?;
        write_atomically(&file, &bytes)?;
        let file_arg = file.display().to_string();
        let network_arg = format!("--network={network}");
        let tls = format!("--tls-verify={}", self.tls_verify);
        self.podman_ok(&["kube", "play", "--replace", &network_arg, &tls, &file_arg])
            .await?;
        Ok(())
    }

    async fn delete(&self, ns: &str, member: &Member) -> Result<Deleted, TargetError> {
        let pod = pod_name(ns, &member.key.name);
        let Some(view) = self.inspect(&pod).await? else {
            let _ = std::fs::remove_file(self.applied_path(&pod));
            return Ok(Deleted::Gone);
        };
        if !owned(&view, ns, &member.key) {
            return Ok(Deleted::NotOwned);
        }
        let file = self.applied_path(&pod);
        if file.exists() {
            self.podman_ok(&["kube", "down", &file.display().to_string()])
                .await?;
        } else {
            self.podman_ok(&["pod", "rm", "--force", &pod]).await?;
        }
        let _ = std::fs::remove_file(&file);
        Ok(Deleted::Deleted)
    }

    async fn health(&self, ns: &str, key: &ObjectKey) -> Result<Health, TargetError> {
        let pod = pod_name(ns, &key.name);
        let Some(view) = self.inspect(&pod).await? else {
            return Ok(Health::Degraded(format!("pod {pod} does not exist")));
        };
        Ok(pod_health(&pod, &view))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::reconcile::manifest::ENVIRONMENT_LABEL;

    #[test]
    fn a_deployment_becomes_one_labelled_pod() {
        let key = ObjectKey {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
        };
        let d = json!({"metadata": {"name": "web", "labels": {ENVIRONMENT_LABEL: "staging"}},
            "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        let pod = to_pod("shop", &key, &d, &format!("sha256:{}", "a".repeat(64))).unwrap();
        assert_eq!(pod["metadata"]["name"], "shop-web");
        assert_eq!(pod["metadata"]["labels"]["app"], "web");
        assert_eq!(pod["metadata"]["labels"][MANAGED_BY_LABEL], "airlock");
        assert_eq!(pod["metadata"]["labels"][HASH_LABEL], "a".repeat(40));
        assert_eq!(pod["spec"]["containers"][0]["image"], "x");
    }

    #[test]
    fn inspect_output_drops_the_infra_container() {
        let text = r#"{"State": "Running", "InfraContainerID": "i", "Labels": {"a": "b"},
            "Containers": [{"Id": "i", "Name": "p-infra", "State": "running"},
                           {"Id": "c", "Name": "p-web", "State": "exited"}]}"#;
        let v = parse_inspect(text).unwrap();
        assert_eq!(
            v.containers,
            vec![("p-web".to_owned(), "exited".to_owned())]
        );
        assert_eq!(parse_inspect(&format!("[{text}]")).unwrap(), v);
    }
}

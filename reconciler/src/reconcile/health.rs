//! Health per kind, from an object's status, as `kubectl rollout status` judges it. Kept apart
//! from the targets: the Kubernetes target reads live objects and asks here; podman's pods are
//! judged by the same rules for a Pod.

use serde_json::Value;

use super::manifest::{is_cluster_scoped, is_known_without_pod_spec};
pub use super::target::Health;

/// Health from an object's status, for the kinds that have a notion of it.
pub fn health_of(kind: &str, object: &Value) -> Health {
    let int = |ptr: &str| object.pointer(ptr).and_then(Value::as_i64);
    let condition = |kind: &str| {
        object
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
            })
            .cloned()
    };
    let generation_seen =
        int("/status/observedGeneration").unwrap_or(0) >= int("/metadata/generation").unwrap_or(0);
    if !generation_seen && matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet") {
        return Health::Progressing("the controller has not seen this generation yet".into());
    }
    match kind {
        // The same judgement as `kubectl rollout status`: the new replicas are all there and
        // available, and no old replica is left.
        "Deployment" => {
            if let Some(c) = condition("Progressing")
                && c.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
            {
                return Health::Degraded("progress deadline exceeded".into());
            }
            let want = int("/spec/replicas").unwrap_or(1);
            let updated = int("/status/updatedReplicas").unwrap_or(0);
            let replicas = int("/status/replicas").unwrap_or(0);
            let available = int("/status/availableReplicas").unwrap_or(0);
            if updated < want {
                Health::Progressing(format!("{updated}/{want} replicas updated"))
            } else if replicas > updated {
                Health::Progressing(format!(
                    "{} old replicas pending termination",
                    replicas - updated
                ))
            } else if available < updated {
                Health::Progressing(format!("{available}/{updated} updated replicas available"))
            } else {
                Health::Healthy
            }
        }
        "StatefulSet" => {
            let want = int("/spec/replicas").unwrap_or(1);
            let ready = int("/status/readyReplicas").unwrap_or(0);
            let updated = int("/status/updatedReplicas").unwrap_or(0);
            if ready >= want && updated >= want {
                Health::Healthy
            } else {
                Health::Progressing(format!("{ready}/{want} ready, {updated}/{want} updated"))
            }
        }
        "DaemonSet" => {
            let want = int("/status/desiredNumberScheduled").unwrap_or(0);
            let updated = int("/status/updatedNumberScheduled").unwrap_or(0);
            let available = int("/status/numberAvailable").unwrap_or(0);
            if updated >= want && available >= want {
                Health::Healthy
            } else {
                Health::Progressing(format!(
                    "{available}/{want} available, {updated}/{want} updated"
                ))
            }
        }
        "Job" => {
            if condition("Failed")
                .is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"))
            {
                return Health::Degraded("job failed".into());
            }
            let want = int("/spec/completions").unwrap_or(1);
            let done = int("/status/succeeded").unwrap_or(0);
            if done >= want {
                Health::Healthy
            } else {
                Health::Progressing(format!("{done}/{want} completions"))
            }
        }
        "Pod" => {
            let statuses = object
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array);
            let crashing = statuses.into_iter().flatten().find_map(|c| {
                let reason = c.pointer("/state/waiting/reason").and_then(Value::as_str)?;
                matches!(
                    reason,
                    "CrashLoopBackOff" | "ImagePullBackOff" | "ErrImagePull"
                )
                .then(|| {
                    format!(
                        "container {} {reason}",
                        c.get("name").and_then(Value::as_str).unwrap_or("")
                    )
                })
            });
            if let Some(why) = crashing {
                return Health::Degraded(why);
            }
            let all_ready = statuses.is_some_and(|cs| {
                !cs.is_empty()
                    && cs
                        .iter()
                        .all(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
            });
            match object.pointer("/status/phase").and_then(Value::as_str) {
                Some("Succeeded") => Health::Healthy,
                Some("Running") if all_ready => Health::Healthy,
                Some("Failed") => Health::Degraded("pod failed".into()),
                other => Health::Progressing(format!(
                    "phase {}{}",
                    other.unwrap_or("unknown"),
                    if all_ready {
                        ""
                    } else {
                        ", containers not ready"
                    }
                )),
            }
        }
        // No pod of its own: there once applied is as healthy as it gets.
        k if is_known_without_pod_spec(k) || is_cluster_scoped(k) => Health::Healthy,
        k => Health::Progressing(format!("the health of a {k} is not judged by Airlock")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn deployment_health_follows_replicas_and_generation() {
        let d = |generation, seen, avail| {
            json!({"metadata": {"generation": generation}, "spec": {"replicas": 2},
                   "status": {"observedGeneration": seen, "availableReplicas": avail, "updatedReplicas": avail}})
        };
        assert_eq!(health_of("Deployment", &d(2, 2, 2)), Health::Healthy);
        assert!(matches!(
            health_of("Deployment", &d(3, 2, 2)),
            Health::Progressing(_)
        ));
        assert!(matches!(
            health_of("Deployment", &d(2, 2, 1)),
            Health::Progressing(_)
        ));
        let failed = json!({"status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        assert!(matches!(health_of("Job", &failed), Health::Degraded(_)));
        assert_eq!(
            health_of("Job", &json!({"status": {"succeeded": 1}})),
            Health::Healthy
        );
        assert_eq!(health_of("ConfigMap", &json!({})), Health::Healthy);
        // Old replicas still there (maxSurge 100%): not yet.
        let surge = json!({"spec": {"replicas": 2}, "status": {"replicas": 4, "updatedReplicas": 2, "availableReplicas": 4}});
        assert!(matches!(
            health_of("Deployment", &surge),
            Health::Progressing(_)
        ));
        let crash = json!({"status": {"phase": "Running", "containerStatuses": [
            {"name": "c", "ready": false, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert!(matches!(health_of("Pod", &crash), Health::Degraded(_)));
        let ready = json!({"status": {"phase": "Running", "containerStatuses": [{"name": "c", "ready": true}]}});
        assert_eq!(health_of("Pod", &ready), Health::Healthy);
        assert!(matches!(
            health_of("Rollout", &json!({})),
            Health::Progressing(_)
        ));
    }
}

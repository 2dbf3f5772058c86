//! Drift: whether a live object still is what was applied.
//!
//! On Kubernetes the desired object is not compared with the live one as text: the server
//! normalises what it stores (`cpu: 0.5` reads back as `500m`, defaults are filled in), so the
//! target asks the server what an apply would make of the object now (a server-side-apply dry
//! run) and compares that with the live object, both [`comparable`]. Equal means no drift; the
//! first path where they differ is the drift report.

use serde_json::Value;

/// True when every field of `desired` is present in `live` with the same value. Lists must have
/// the same length and match element by element. Fields the server adds (status, defaults,
/// managedFields) do not count as drift; a changed or removed field does.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d
            .iter()
            .all(|(k, dv)| l.get(k).is_some_and(|lv| is_subset(dv, lv))),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| is_subset(dv, lv))
        }
        // Kubernetes echoes integers as numbers of the same value; compare numerically.
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
        (d, l) => d == l,
    }
}

/// The first path where `desired` is not found in `live`, for the drift report.
pub fn first_difference(desired: &Value, live: &Value, at: &str) -> Option<String> {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().find_map(|(k, dv)| match l.get(k) {
            None => Some(format!("{at}/{k}")),
            Some(lv) => first_difference(dv, lv, &format!("{at}/{k}")),
        }),
        (Value::Array(d), Value::Array(l)) if d.len() == l.len() => d
            .iter()
            .zip(l)
            .enumerate()
            .find_map(|(i, (dv, lv))| first_difference(dv, lv, &format!("{at}/{i}"))),
        _ if is_subset(desired, live) => None,
        _ => Some(if at.is_empty() { "/".into() } else { at.into() }),
    }
}

/// The object without what the server alone decides: `status` and the bookkeeping in
/// `metadata` (uid, resourceVersion, generation, creationTimestamp, managedFields).
pub fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
        if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            for key in [
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "managedFields",
                "selfLink",
            ] {
                meta.remove(key);
            }
        }
    }
    object
}

/// The first path where `would_be` (a dry-run apply's answer) and `live` differ, in either
/// direction (a field Git dropped is drift as much as one someone changed); `None` when equal.
pub fn drift(would_be: &Value, live: &Value) -> Option<String> {
    let (would_be, live) = (comparable(would_be), comparable(live));
    first_difference(&would_be, &live, "").or_else(|| first_difference(&live, &would_be, ""))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn subset_ignores_server_fields_but_sees_changes() {
        let desired = json!({"spec": {"replicas": 2, "x": [1, {"a": 1}]}});
        let live =
            json!({"spec": {"replicas": 2.0, "x": [1, {"a": 1, "b": 2}], "y": 1}, "status": {}});
        assert!(is_subset(&desired, &live));
        let changed = json!({"spec": {"replicas": 3, "x": [1, {"a": 1}]}});
        assert!(!is_subset(&desired, &changed));
        assert_eq!(
            first_difference(&desired, &changed, "").unwrap(),
            "/spec/replicas"
        );
        let shorter = json!({"spec": {"replicas": 2, "x": [1]}});
        assert_eq!(first_difference(&desired, &shorter, "").unwrap(), "/spec/x");
    }

    #[test]
    fn drift_compares_what_the_server_would_store_with_what_it_stores() {
        let live = json!({"metadata": {"name": "w", "resourceVersion": "7", "managedFields": []},
            "spec": {"cpu": "500m", "extra": 1}, "status": {"ready": 1}});
        // The dry run's answer: the same spec, other bookkeeping.
        let same = json!({"metadata": {"name": "w", "resourceVersion": "8"},
            "spec": {"cpu": "500m", "extra": 1}});
        assert_eq!(drift(&same, &live), None);
        let changed = json!({"metadata": {"name": "w"}, "spec": {"cpu": "1", "extra": 1}});
        assert_eq!(drift(&changed, &live).as_deref(), Some("/spec/cpu"));
        // A field Git no longer sets (the dry run drops it) is drift too.
        let dropped = json!({"metadata": {"name": "w"}, "spec": {"cpu": "500m"}});
        assert_eq!(drift(&dropped, &live).as_deref(), Some("/spec/extra"));
    }
}

//! Drift: whether a live object still is what was applied. Every field the desired object sets
//! must be in the live one with the same value; what the server adds (status, defaults,
//! managedFields) is not drift.

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
}

//! The inventory: which objects Airlock applied into one namespace. Pruning deletes only
//! inventory members (and, on the target, only objects still carrying Airlock's label), so an
//! object Airlock never created is never touched.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::manifest::ObjectKey;

/// The version of [`Inventory`] this code writes (2: members keyed by [`ObjectKey::id`], with
/// the API group; version 1 keyed them `Kind/name` and is still read).
pub const INVENTORY_VERSION: u32 = 2;

/// Why a stored inventory cannot be used (it is then never overwritten: its members would be
/// forgotten, never pruned).
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// Not an inventory.
    #[error("malformed inventory: {0}")]
    Malformed(#[source] serde_json::Error),
    /// A version this reconciler does not read.
    #[error("inventory version {0} (this reconciler reads 1 and {INVENTORY_VERSION})")]
    Version(u32),
    /// A member stored under another key than its identity.
    #[error("inventory member stored as {stored:?} is {expected:?}")]
    Key {
        /// The key in the file.
        stored: String,
        /// The member's identity.
        expected: String,
    },
}

/// The members of one (environment, namespace).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// [`INVENTORY_VERSION`].
    pub version: u32,
    /// Environment.
    pub environment: String,
    /// Namespace.
    pub namespace: String,
    /// Members by [`ObjectKey::id`] (`Kind.group/name`).
    pub members: BTreeMap<String, Member>,
}

/// One applied object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Identity.
    pub key: ObjectKey,
    /// [`super::manifest::desired_hash`] of what was applied.
    pub hash: String,
    /// The images it runs.
    #[serde(default)]
    pub images: Vec<String>,
    /// Commit of the environment repository it was applied from.
    pub commit: String,
}

impl Inventory {
    /// An empty inventory.
    pub fn new(environment: &str, namespace: &str) -> Self {
        Inventory {
            version: INVENTORY_VERSION,
            environment: environment.to_owned(),
            namespace: namespace.to_owned(),
            members: BTreeMap::new(),
        }
    }

    /// Parses a stored inventory. Version 1 (members keyed `Kind/name`) is read and re-keyed
    /// by [`ObjectKey::id`] (each member carries its whole key, so nothing is guessed); it is
    /// written back as version 2 at the next sync. Any other version is an error.
    pub fn from_json(bytes: &[u8]) -> Result<Self, InventoryError> {
        let mut inv: Inventory =
            serde_json::from_slice(bytes).map_err(InventoryError::Malformed)?;
        match inv.version {
            INVENTORY_VERSION => {
                if let Some((stored, member)) = inv.members.iter().find(|(k, m)| **k != m.key.id())
                {
                    return Err(InventoryError::Key {
                        stored: stored.clone(),
                        expected: member.key.id(),
                    });
                }
            }
            1 => {
                inv.members = std::mem::take(&mut inv.members)
                    .into_values()
                    .map(|m| (m.key.id(), m))
                    .collect();
                inv.version = INVENTORY_VERSION;
            }
            other => return Err(InventoryError::Version(other)),
        }
        Ok(inv)
    }

    /// The stored form.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn member(api_version: &str, kind: &str, name: &str) -> Member {
        Member {
            key: ObjectKey {
                api_version: api_version.into(),
                kind: kind.into(),
                name: name.into(),
            },
            hash: "sha256:00".into(),
            images: Vec::new(),
            commit: "c".into(),
        }
    }

    #[test]
    fn keys_carry_the_api_group_so_same_kind_and_name_never_collide() {
        let mut inv = Inventory::new("prod", "shop");
        for m in [
            member("networking.k8s.io/v1", "Ingress", "web"),
            member("extensions/v1beta1", "Ingress", "web"),
            member("v1", "ConfigMap", "web"),
        ] {
            inv.members.insert(m.key.id(), m);
        }
        assert_eq!(
            inv.members.keys().collect::<Vec<_>>(),
            [
                "ConfigMap/web",
                "Ingress.extensions/web",
                "Ingress.networking.k8s.io/web"
            ]
        );
        let back = Inventory::from_json(inv.to_json().as_bytes()).unwrap();
        assert_eq!(back, inv);
    }

    #[test]
    fn a_version_1_inventory_is_re_keyed_and_a_mismatched_key_refused() {
        let v1 = serde_json::json!({"version": 1, "environment": "prod", "namespace": "shop",
            "members": {"Deployment/web": member("apps/v1", "Deployment", "web")}});
        let inv = Inventory::from_json(v1.to_string().as_bytes()).unwrap();
        assert_eq!(inv.version, INVENTORY_VERSION);
        assert_eq!(
            inv.members.keys().collect::<Vec<_>>(),
            ["Deployment.apps/web"]
        );

        let mut v2 = v1.clone();
        v2["version"] = 2.into();
        let err = Inventory::from_json(v2.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, InventoryError::Key { .. }), "{err}");
        v2["version"] = 3.into();
        let err = Inventory::from_json(v2.to_string().as_bytes()).unwrap_err();
        assert!(matches!(err, InventoryError::Version(3)), "{err}");
    }
}

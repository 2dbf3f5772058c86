//! The inventory: which objects Airlock applied into one namespace. Pruning deletes only
//! inventory members (and, on the target, only objects still carrying Airlock's label), so an
//! object Airlock never created is never touched.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::manifest::ObjectKey;

/// The version of [`Inventory`] this code writes.
pub const INVENTORY_VERSION: u32 = 1;

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
    /// Members by `Kind/name`.
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

    /// Parses a stored inventory; another version is an error, never a guess.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let inv: Inventory =
            serde_json::from_slice(bytes).map_err(|e| format!("malformed inventory: {e}"))?;
        if inv.version != INVENTORY_VERSION {
            return Err(format!(
                "inventory version {} (this reconciler reads {INVENTORY_VERSION})",
                inv.version
            ));
        }
        Ok(inv)
    }

    /// The stored form.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

//! Where objects go. The sync logic (admission, inventory, prune, drift) is the same for every
//! target; a target only knows how to observe, apply and delete one object and where to keep an
//! inventory.

pub mod kubernetes;
pub mod podman;

use std::future::Future;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::inventory::{Inventory, Member};
use super::manifest::ObjectKey;

/// Why a target operation failed (the object's sync fails; the rest goes on).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

/// How the live object compares with the desired one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Not there.
    Missing,
    /// There and matching, with its health read in the same look (no second request).
    Matches(Health),
    /// There but different (the first differing field or what differs).
    Differs(String),
    /// There, but without Airlock's label: someone else's object, left alone.
    NotOwned,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// Deleted.
    Deleted,
    /// Already gone.
    Gone,
    /// Present but not carrying Airlock's label: left alone.
    NotOwned,
}

/// Health of an applied object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "detail", rename_all = "lowercase")]
pub enum Health {
    /// Running as wanted (Deployment available, Job succeeded, pod running).
    Healthy,
    /// Not there yet (rolling out, starting).
    Progressing(String),
    /// Failed (Job failed, container exited with an error, pod gone).
    Degraded(String),
}

impl Health {
    /// True for [`Health::Healthy`].
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy)
    }
}

/// A place objects are applied to.
pub trait Target: Send + Sync {
    /// `Some(reason)` when this target cannot carry `kind` (the object is refused).
    fn unsupported(&self, key: &ObjectKey) -> Option<String>;

    /// The namespace's inventory (empty when none is stored).
    fn read_inventory(
        &self,
        environment: &str,
        namespace: &str,
    ) -> impl Future<Output = Result<Inventory, TargetError>> + Send;

    /// Stores the namespace's inventory.
    fn write_inventory(
        &self,
        inventory: &Inventory,
    ) -> impl Future<Output = Result<(), TargetError>> + Send;

    /// Compares the live object with `desired` (already prepared: namespace and labels set);
    /// `hash` is its [`super::manifest::desired_hash`].
    fn observe(
        &self,
        namespace: &str,
        key: &ObjectKey,
        desired: &Value,
        hash: &str,
    ) -> impl Future<Output = Result<Observed, TargetError>> + Send;

    /// Makes the live object equal `desired`.
    fn apply(
        &self,
        namespace: &str,
        key: &ObjectKey,
        desired: &Value,
        hash: &str,
    ) -> impl Future<Output = Result<(), TargetError>> + Send;

    /// Deletes an inventory member, only if the live object still carries Airlock's label.
    fn delete(
        &self,
        namespace: &str,
        member: &Member,
    ) -> impl Future<Output = Result<Deleted, TargetError>> + Send;

    /// Health of an applied object.
    fn health(
        &self,
        namespace: &str,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Health, TargetError>> + Send;
}

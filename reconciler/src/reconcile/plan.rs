//! Planning a sync: desired state → admission → a read-only look at the target (inventories and
//! live objects) → what to apply, keep and prune. Nothing on the target changes here, so
//! `reconcile plan` is the same code path as a real sync, stopped before
//! [`super::execute`].

use std::collections::{BTreeMap, BTreeSet};

use tracing::{instrument, warn};

use super::admission::{AdmissionPolicy, ImageVerifier, gather};
use super::config::ReconcilerConfig;
use super::desired::{DesiredObject, DesiredState};
use super::history::{Failure, Refusal, SyncRecord};
use super::inventory::{Inventory, Member};
use super::manifest::{desired_hash, images, prepared};
use super::target::{Health, Observed, Target};
use airlock_verify::rego::PolicyError;

/// What will happen to one admitted object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Not on the target yet.
    Create,
    /// Git changed it.
    Update,
    /// Git did not change it but the live object drifted (what differs).
    Repair(String),
}

impl Action {
    /// How it is shown: create, update, repair.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Repair(_) => "repair",
        }
    }
}

/// One object to apply.
#[derive(Debug, Clone)]
pub struct PlannedApply {
    /// From the repository.
    pub object: DesiredObject,
    /// With namespace and labels set.
    pub prepared: serde_json::Value,
    /// Its hash.
    pub hash: String,
    /// Why.
    pub action: Action,
    /// The inventory member it replaces, if any: kept when the apply fails, so the record never
    /// claims a version runs that the target refused.
    pub previous: Option<Member>,
}

/// The plan for one (environment, namespace).
#[derive(Debug, Clone, Default)]
pub struct NamespacePlan {
    /// Environment.
    pub environment: String,
    /// Namespace.
    pub namespace: String,
    /// Objects to apply.
    pub apply: Vec<PlannedApply>,
    /// Admitted objects already as desired (member records to keep), with the health read
    /// while observing them.
    pub unchanged: Vec<(Member, Health)>,
    /// Members to delete.
    pub prune: Vec<Member>,
    /// Why pruning is held back.
    pub prune_held: Option<String>,
    /// Refused objects and files.
    pub refused: Vec<Refusal>,
    /// Members whose new version was refused or failed to observe: kept as they run.
    pub kept: Vec<Member>,
    /// Target failures while planning.
    pub failed: Vec<Failure>,
    /// The namespace is configured for this environment (otherwise nothing of ours is there:
    /// no inventory is read or written and no health is looked up).
    pub configured: bool,
    /// The stored inventory could not be read: it must not be overwritten.
    pub inventory_unreadable: bool,
}

/// The plan for a whole sync.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Environment repository commit.
    pub commit: String,
    /// Per namespace, sorted by (environment, namespace).
    pub namespaces: Vec<NamespacePlan>,
}

/// Why a sync could not run at all (a broken policy; target trouble is per object).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The admission policy failed to evaluate.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

pub(super) fn member(object: &DesiredObject, hash: &str, commit: &str) -> Member {
    Member {
        key: object.key.clone(),
        hash: hash.to_owned(),
        images: images(&object.object)
            .into_iter()
            .map(|i| i.reference)
            .collect(),
        commit: commit.to_owned(),
    }
}

/// Everything a sync needs besides the desired state.
pub struct SyncContext<'a, T, V> {
    /// The configuration.
    pub config: &'a ReconcilerConfig,
    /// Where the environment's objects go.
    pub target: &'a T,
    /// Signature and provenance facts.
    pub verifier: &'a V,
    /// The admission policy.
    pub policy: &'a AdmissionPolicy,
    /// The last recorded sync, for `requires_healthy_in`.
    pub last_sync: Option<&'a SyncRecord>,
}

/// Plans `environment` at the desired state: admission, then a read-only look at the target.
pub async fn plan_environment<T: Target, V: ImageVerifier>(
    ctx: &SyncContext<'_, T, V>,
    environment: &str,
    desired: &DesiredState,
) -> Result<Vec<NamespacePlan>, SyncError> {
    let env_config = ctx.config.environments.get(environment);
    let mut namespaces: BTreeSet<String> = desired.namespaces(environment);
    if let Some(e) = env_config {
        namespaces.extend(e.namespaces.keys().cloned());
    }
    let mut out = Vec::new();
    for namespace in namespaces {
        out.push(plan_namespace(ctx, environment, &namespace, desired).await?);
    }
    // Files outside any usable namespace folder are reported too, under no namespace.
    let homeless: Vec<Refusal> = desired
        .problems
        .iter()
        .filter(|p| p.environment == environment && p.namespace.is_empty())
        .map(|p| Refusal {
            object: p.location.clone(),
            location: p.location.clone(),
            reasons: vec![p.reason.clone()],
        })
        .collect();
    if !homeless.is_empty() {
        out.push(NamespacePlan {
            environment: environment.to_owned(),
            refused: homeless,
            ..NamespacePlan::default()
        });
    }
    Ok(out)
}

#[instrument(skip_all, fields(environment, namespace))]
async fn plan_namespace<T: Target, V: ImageVerifier>(
    ctx: &SyncContext<'_, T, V>,
    environment: &str,
    namespace: &str,
    desired: &DesiredState,
) -> Result<NamespacePlan, SyncError> {
    let ns_config = ctx
        .config
        .environments
        .get(environment)
        .and_then(|e| e.namespaces.get(namespace));
    let mut plan = NamespacePlan {
        environment: environment.to_owned(),
        namespace: namespace.to_owned(),
        configured: ns_config.is_some(),
        ..NamespacePlan::default()
    };
    // A namespace not configured has no inventory of ours on the target: never read one.
    let inventory = if ns_config.is_some() {
        match ctx.target.read_inventory(environment, namespace).await {
            Ok(inv) => inv,
            Err(e) => {
                // Without the inventory nothing can be pruned or compared safely.
                plan.failed.push(Failure {
                    object: "inventory".into(),
                    error: e.to_string(),
                });
                plan.prune_held = Some(format!("inventory unreadable: {e}"));
                plan.inventory_unreadable = true;
                Inventory::new(environment, namespace)
            }
        }
    } else {
        Inventory::new(environment, namespace)
    };
    for p in desired
        .problems
        .iter()
        .filter(|p| p.environment == environment && p.namespace == namespace)
    {
        plan.refused.push(Refusal {
            object: p.location.clone(),
            location: p.location.clone(),
            reasons: vec![p.reason.clone()],
        });
    }
    if let Some(p) = desired.prune_blocked(environment, namespace) {
        plan.prune_held = Some(format!("{} could not be read", p.location));
    }
    let empty = Vec::new();
    let objects = desired
        .objects
        .get(&(environment.to_owned(), namespace.to_owned()))
        .unwrap_or(&empty);
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for object in objects {
        wanted.insert(object.key.id());
        let old = inventory.members.get(&object.key.id());
        let mut input = gather(
            object,
            ns_config,
            ctx.target.unsupported(&object.key),
            ctx.verifier,
        )
        .await;
        let required = ctx
            .config
            .environments
            .get(environment)
            .and_then(|e| e.requires_healthy_in.clone());
        for image in input.images.iter_mut().filter(|i| i.pinned) {
            image.already_running = old.is_some_and(|m| m.images.contains(&image.reference));
            image.healthy_there = required.as_deref().is_some_and(|first| {
                ctx.last_sync
                    .is_some_and(|r| r.runs_healthy(first, &image.reference))
            });
            image.requires_healthy_in = required.clone();
        }
        let reasons = ctx.policy.evaluate(&input)?;
        if !reasons.is_empty() {
            warn!(object = %object.key, reasons = ?reasons, "refused");
            plan.refused.push(Refusal {
                object: object.key.to_string(),
                location: object.location(),
                reasons,
            });
            plan.kept.extend(old.cloned());
            continue;
        }
        let ready = prepared(&object.object, Some(namespace), environment);
        let hash = desired_hash(&ready);
        let observed = ctx
            .target
            .observe(namespace, &object.key, &ready, &hash)
            .await;
        let action = match observed {
            Err(e) => {
                plan.failed.push(Failure {
                    object: object.key.to_string(),
                    error: e.to_string(),
                });
                plan.kept.extend(old.cloned());
                continue;
            }
            Ok(Observed::NotOwned) => {
                // Someone else's object (or ours with Airlock's labels taken off): never taken
                // over. A member stays in the inventory, where prune will not delete it either.
                plan.refused.push(Refusal {
                    object: object.key.to_string(),
                    location: object.location(),
                    reasons: vec![format!(
                        "{} already exists in namespace '{namespace}' and is not managed by Airlock; it is left alone",
                        object.key
                    )],
                });
                plan.kept.extend(old.cloned());
                continue;
            }
            Ok(Observed::Missing) if old.is_none() => Action::Create,
            Ok(Observed::Missing) => Action::Repair("the object is missing".into()),
            Ok(Observed::Matches(health)) => {
                plan.unchanged.push((
                    member(
                        object,
                        &hash,
                        &old.map_or(desired.commit.clone(), |m| m.commit.clone()),
                    ),
                    health,
                ));
                continue;
            }
            Ok(Observed::Differs(what)) => match old {
                Some(m) if m.hash == hash => Action::Repair(what),
                _ => Action::Update,
            },
        };
        plan.apply.push(PlannedApply {
            object: object.clone(),
            prepared: ready,
            hash,
            action,
            previous: old.cloned(),
        });
    }
    for (name, m) in &inventory.members {
        if !wanted.contains(name) {
            if plan.prune_held.is_some() {
                plan.kept.push(m.clone());
            } else {
                plan.prune.push(m.clone());
            }
        }
    }
    Ok(plan)
}

/// Renders a plan for people: one line per action.
pub fn render_plan(plan: &[NamespacePlan]) -> String {
    let mut out = String::new();
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for ns in plan {
        out.push_str(&format!("{}/{}\n", ns.environment, ns.namespace));
        for a in &ns.apply {
            let why = match &a.action {
                Action::Repair(what) => format!(" (drift: {what})"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "  {:<8} {}  [{}]{why}\n",
                a.action.name(),
                a.object.key,
                a.object.location()
            ));
            *totals.entry("apply").or_default() += 1;
        }
        for (m, _) in &ns.unchanged {
            out.push_str(&format!("  {:<8} {}\n", "ok", m.key));
        }
        for m in &ns.prune {
            out.push_str(&format!("  {:<8} {}\n", "prune", m.key));
            *totals.entry("prune").or_default() += 1;
        }
        if let Some(why) = &ns.prune_held {
            out.push_str(&format!("  prune held back: {why}\n"));
        }
        for r in &ns.refused {
            out.push_str(&format!(
                "  {:<8} {}  [{}]\n",
                "REFUSE", r.object, r.location
            ));
            for reason in &r.reasons {
                out.push_str(&format!("             - {reason}\n"));
            }
            *totals.entry("refuse").or_default() += 1;
        }
        for f in &ns.failed {
            out.push_str(&format!("  {:<8} {}: {}\n", "ERROR", f.object, f.error));
        }
    }
    out.push_str(&format!(
        "plan: {} to apply, {} to prune, {} refused\n",
        totals.get("apply").unwrap_or(&0),
        totals.get("prune").unwrap_or(&0),
        totals.get("refuse").unwrap_or(&0)
    ));
    out
}

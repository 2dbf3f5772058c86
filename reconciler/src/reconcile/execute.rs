//! Carrying out a namespace's plan: the inventory written ahead, applies, prunes, the inventory
//! written back, and the health of every member.

use std::collections::{BTreeMap, BTreeSet};

use tracing::{info, instrument, warn};

use super::history::{Change, Failure, MemberHealth, NamespaceResult};
use super::inventory::{Inventory, Member};
use super::plan::{Action, NamespacePlan, member};
use super::target::{Deleted, Health, Target};

/// Carries out one namespace's plan and reports what happened.
#[instrument(skip_all, fields(environment = %plan.environment, namespace = %plan.namespace))]
pub async fn execute_namespace<T: Target>(
    target: &T,
    plan: NamespacePlan,
    commit: &str,
) -> NamespaceResult {
    let mut result = NamespaceResult {
        environment: plan.environment.clone(),
        namespace: plan.namespace.clone(),
        prune_held: plan.prune_held.clone(),
        refused: plan.refused,
        failed: plan.failed,
        ..NamespaceResult::default()
    };
    let mut inventory = Inventory::new(&plan.environment, &plan.namespace);
    let mut seen_health = BTreeMap::new();
    for (m, health) in plan.unchanged {
        result.unchanged.push(m.key.to_string());
        seen_health.insert(m.key.id(), health);
        inventory.members.insert(m.key.id(), m);
    }
    for m in plan.kept {
        inventory.members.insert(m.key.id(), m);
    }
    // Nothing is created without a record of it: the inventory is written ahead with every
    // object about to be applied, so a crash mid-sync leaves no object that prune forgets.
    // Without a readable inventory nothing is applied at all.
    let mut apply = plan.apply;
    if !apply.is_empty() && plan.configured {
        let blocked = if plan.inventory_unreadable {
            Some("not applied: the stored inventory could not be read".to_owned())
        } else {
            let mut ahead = inventory.clone();
            for m in &plan.prune {
                ahead.members.insert(m.key.id(), m.clone());
            }
            for step in &apply {
                let m = member(&step.object, &step.hash, commit);
                ahead.members.insert(m.key.id(), m);
            }
            target
                .write_inventory(&ahead)
                .await
                .err()
                .map(|e| format!("not applied: the inventory could not be written ahead: {e}"))
        };
        if let Some(why) = blocked {
            for step in apply.drain(..) {
                result.failed.push(Failure {
                    object: step.object.key.to_string(),
                    error: why.clone(),
                });
                if let Some(m) = step.previous {
                    inventory.members.insert(m.key.id(), m);
                }
            }
        }
    }
    let mut keep = |m: Member| {
        inventory.members.insert(m.key.id(), m);
    };
    for step in apply {
        let key = step.object.key.clone();
        match target
            .apply(&plan.namespace, &key, &step.prepared, &step.hash)
            .await
        {
            Ok(()) => {
                info!(object = %key, action = step.action.name(), "applied");
                result.applied.push(Change {
                    object: key.to_string(),
                    action: step.action.name().into(),
                    location: step.object.location(),
                    drift: match &step.action {
                        Action::Repair(what) => Some(what.clone()),
                        _ => None,
                    },
                });
                keep(member(&step.object, &step.hash, commit));
            }
            Err(e) => {
                warn!(object = %key, error = %e, "apply failed");
                result.failed.push(Failure {
                    object: key.to_string(),
                    error: e.to_string(),
                });
                // What ran before still runs: keep its member (and so its images in the health
                // report). A failed create may be partly there: stay responsible for it.
                keep(
                    step.previous
                        .unwrap_or_else(|| member(&step.object, &step.hash, commit)),
                );
            }
        }
    }
    for m in plan.prune {
        match target.delete(&plan.namespace, &m).await {
            Ok(Deleted::Deleted | Deleted::Gone) => {
                info!(object = %m.key, "pruned");
                result.pruned.push(m.key.to_string());
            }
            Ok(Deleted::NotOwned) => {
                warn!(object = %m.key, "not pruned: no longer carries Airlock's label");
                result.failed.push(Failure {
                    object: m.key.to_string(),
                    error: "not pruned: the live object no longer carries Airlock's label".into(),
                });
            }
            Err(e) => {
                result.failed.push(Failure {
                    object: m.key.to_string(),
                    error: format!("prune failed: {e}"),
                });
                keep(m);
            }
        }
    }
    if !plan.configured {
        // Nothing was admitted, so nothing of ours is there: leave the namespace untouched
        // (a namespace dropped from the config keeps its inventory for when it comes back).
        return result;
    }
    if plan.inventory_unreadable {
        result.failed.push(Failure {
            object: "inventory".into(),
            error: "not rewritten: the stored inventory could not be read".into(),
        });
    } else if let Err(e) = target.write_inventory(&inventory).await {
        result.failed.push(Failure {
            object: "inventory".into(),
            error: e.to_string(),
        });
    }
    let touched: BTreeSet<String> = result
        .applied
        .iter()
        .map(|c| c.object.clone())
        .chain(result.failed.iter().map(|f| f.object.clone()))
        .collect();
    for (name, m) in &inventory.members {
        // Unchanged objects were just read while observing them: no second request.
        let health = match seen_health.remove(name) {
            Some(h) => h,
            None => match target.health(&plan.namespace, &m.key).await {
                Ok(h) => h,
                Err(e) => Health::Degraded(e.to_string()),
            },
        };
        result.health.insert(
            name.clone(),
            MemberHealth {
                health,
                images: m.images.clone(),
                settled: !touched.contains(&m.key.to_string()),
            },
        );
    }
    result
}

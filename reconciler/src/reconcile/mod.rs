//! The GitOps reconciler (`airlock-reconciler reconcile`): makes a target match the environment
//! repository, admitting only images the trusted builder signed for the namespace's sources.
//!
//! A separate process from `serve`, with its own credentials: trusted PUBLIC keys and target
//! access, never a signing key.
//!
//! * [`config`] — the `reconciler.toml` file.
//! * [`desired`] — objects under `environments/<env>/<namespace>/*.yaml` at the branch head (gix).
//! * [`manifest`] — object identity, kinds, images.
//! * [`admission`] — facts + `policies/admission.rego`.
//! * [`plan`] — what a sync would do, read-only (and `reconcile plan`'s rendering).
//! * [`execute`] — carrying a plan out: inventory ahead, apply, prune, inventory, health.
//! * [`diff`] — drift between an applied object and the live one.
//! * [`health`] — health per kind from an object's status.
//! * [`inventory`] — what Airlock applied per namespace (the prune list).
//! * [`target`] — Kubernetes (kube-rs) and podman behind one trait.
//! * [`history`] — the sync log behind `reconcile status`.
//! * [`hook`] — `POST /hooks/env`.
//! * [`run`] — the loop, `plan` and `status`.

pub mod admission;
pub mod config;
pub mod desired;
pub mod diff;
pub mod execute;
pub mod health;
pub mod history;
pub mod hook;
pub mod inventory;
pub mod manifest;
pub mod plan;
pub mod run;
pub mod target;

//! The GitOps reconciler (`airlock-reconciler reconcile`): makes a target match the environment
//! repository, admitting only images the trusted builder signed for the namespace's sources.
//!
//! A separate process from `serve`, with its own credentials: trusted PUBLIC keys and target
//! access, never a signing key.
//!
//! * [`config`] — the `reconciler.toml` file.
//! * [`desired`] — objects under `environments/<env>/<namespace>/*.yaml` at the branch head (gix).
//! * [`manifest`] — object identity, images, drift comparison.
//! * [`admission`] — facts + `policies/admission.rego`.
//! * [`target`] — Kubernetes (kube-rs) and podman behind one trait.
//! * [`sync`] — plan (read-only) and execute: apply, prune inventory members, health.
//! * [`history`] — the sync log behind `reconcile status`.
//! * [`run`] — the loop, the hook listener, `plan` and `status`.

pub mod admission;
pub mod config;
pub mod desired;
pub mod history;
pub mod inventory;
pub mod manifest;
pub mod run;
pub mod sync;
pub mod target;

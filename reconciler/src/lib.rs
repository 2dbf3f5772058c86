//! Airlock's deploy side as a library: the pieces the `airlock-reconciler` binary is made of,
//! public so integration tests can drive them directly.
//!
//! A separate process from the trusted builder, with other credentials: trusted *public* keys
//! and target access. It depends on `airlock-verify` (formats, registry client, verification,
//! policies), never on the builder, so no signing key can be opened here and no Vault client is
//! linked (`tests/dependencies.rs` checks the dependency tree).
//!
//! - [`reconcile`]: makes a target match the environment repository (GitOps).
//! - [`promote`]: release managers promote a signed image by a commit to that repository.
//! - [`trace`]: walks back from a running image to the review that started it.
#![forbid(unsafe_code)]

pub mod promote;
pub mod reconcile;
pub mod trace;

//! Airlock's trusted builder as a library: the pieces the `trusted-builder`
//! binary is made of, public so integration tests can drive them directly.
//!
//! What the reconciler also needs (registry client, formats, verification, policies) lives in
//! `airlock-verify` and is re-exported here under its old paths; private keys are opened only
//! in [`sign`].
#![forbid(unsafe_code)]

pub use airlock_pipeline::shutdown;
pub use airlock_verify::signature as verify;
pub use airlock_verify::{audit, oci, provenance, rego};

pub mod attach;
pub mod intake;
pub mod rebuild;
pub mod serve;
pub mod sign;

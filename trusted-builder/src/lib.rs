//! Airlock's trusted builder as a library: the pieces the `trusted-builder`
//! binary is made of, public so integration tests can drive them directly.
#![forbid(unsafe_code)]

pub mod attach;
pub mod audit;
pub mod intake;
pub mod oci;
pub mod promote;
pub mod provenance;
pub mod rebuild;
pub mod reconcile;
pub mod rego;
pub mod serve;
pub mod shutdown;
pub mod sign;
pub mod trace;
pub mod verify;

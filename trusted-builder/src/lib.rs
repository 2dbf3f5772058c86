//! Airlock's trusted builder as a library: the pieces the `trusted-builder`
//! binary is made of, public so integration tests can drive them directly.
#![forbid(unsafe_code)]

pub mod oci;
pub mod sign;

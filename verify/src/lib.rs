//! What both trusted-side processes need to *verify*, and nothing that signs: the OCI registry
//! client and image formats, cosign's signature payload and DSSE envelopes, SLSA provenance,
//! signature and provenance verification with a public key, the Rego policy wrapper, the
//! builder's decision-log format and one [`secret::Secret`] type.
//!
//! The trusted builder signs (its `sign` module is the only place a private key is opened);
//! the reconciler (`airlock-reconciler`) only verifies, and depends on this crate, not on the
//! builder: its dependency tree has no Vault client and no key decryption
//! (`reconciler/tests/dependencies.rs`).
#![forbid(unsafe_code)]

pub mod audit;
pub mod cosign;
pub mod dsse;
pub mod oci;
pub mod provenance;
pub mod rego;
pub mod secret;
pub mod signature;

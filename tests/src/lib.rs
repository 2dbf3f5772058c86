//! Harness for Airlock's end-to-end tests: starts real components (git daemon,
//! bubblewrap sandboxes) on 127.0.0.1 and builds sample repositories.

pub mod fixtures;
pub mod forge;
pub mod git;
pub mod hostile;
pub mod images;
pub mod registry;
pub mod repo_paths;
pub mod sample;
pub mod sandbox;
pub mod security_claims;
pub mod sockets;

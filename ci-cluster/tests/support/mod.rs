//! The shared end-to-end harness of `ci-cluster serve`, for the `serve`,
//! `api` and `ui` test targets: the real binary on 127.0.0.1 ([`server`]), a
//! real `git daemon` with the sample repository and the stand-in forge that
//! records the API calls Gerrit, GitHub and GitLab would receive ([`world`];
//! no forge server can be installed here, the stand-in follows the recorded
//! formats in tests/fixtures), blocking HTTP requests ([`http`]) and the
//! forges' webhook deliveries ([`hooks`]).
//!
//! Each target includes it with `#[path = "support/mod.rs"] mod support;`.
// Each test target uses a different subset of these helpers.
#![allow(dead_code)]

pub mod hooks;
pub mod http;
pub mod server;
pub mod world;

pub use hooks::*;
pub use http::*;
pub use server::*;
pub use world::*;

/// The webhook and API secrets [`World::config`] writes for the server.
pub const GERRIT_SECRET: &str = "gerrit-hook-secret";
pub const GITHUB_SECRET: &str = "github-hook-secret";
pub const GITLAB_TOKEN: &str = "gitlab-hook-token";
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";

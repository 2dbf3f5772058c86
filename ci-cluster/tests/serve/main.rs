//! `ci-cluster serve` end to end: the real binary, a real `git daemon`, the
//! real sandbox, and a stand-in forge that records the API calls Gerrit,
//! GitHub and GitLab would receive (no forge server can be installed here;
//! the stand-in follows the recorded formats in tests/fixtures).

#[path = "../support/mod.rs"]
mod support;

mod artifacts;
mod attacks;
mod gerrit;
mod github_gitlab;
mod recovery;
mod refusals;
mod schedules_manual;
mod slow_clients;

use std::path::PathBuf;

use support::{Config, Project, World};

/// The subject of the changes these tests send.
const SUBJECT: &str = "greet: a change";

/// All three forges reporting to the stand-in, admin actions, and a project
/// on each forge; `extra` is TOML for the GitHub project `greet-gh`.
fn config(world: &World, extra: &str) -> PathBuf {
    world.config(
        Config::default()
            .admin()
            .github()
            .gitlab()
            .project(Project::gitlab("greet-gl"))
            .project(
                Project::gerrit("greet")
                    .with(r#"protected = ["refs/heads/main"]"#)
                    .with("concurrency = 2"),
            )
            .project(Project::github("greet-gh").with(extra)),
    )
}

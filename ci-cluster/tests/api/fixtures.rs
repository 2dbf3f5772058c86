//! The API tests' server configuration and pipelines.

use std::path::PathBuf;

use super::support::{Config, Project, World};

/// Gerrit and GitHub, admin actions, three runs at a time; projects `greet`
/// (Gerrit) and `greet-gh` (GitHub), no GitLab.
pub fn config(world: &World) -> PathBuf {
    world.config(
        Config::default()
            .concurrency(3)
            .admin()
            .github()
            .project(Project::gerrit("greet").with("concurrency = 3"))
            .project(Project::github("greet-gh")),
    )
}

/// Passes: two jobs, one output.
pub const PASSING: &str = "version: 1\njobs:\n  build:\n    run: mkdir -p dist && echo built > dist/out.txt && echo built\n    outputs: [dist/out.txt]\n  test:\n    needs: [build]\n    run: echo 'ok 1 - greets'\n";
/// Fails in its second job.
pub const FAILING: &str = "version: 1\njobs:\n  build:\n    run: echo building\n  test:\n    needs: [build]\n    run: echo 'not ok 1 - greets' && exit 1\n";
/// Runs for five minutes unless cancelled.
pub const SLEEPING: &str =
    "version: 1\njobs:\n  wait:\n    run: echo waiting && sleep 300\n    timeout: 10m\n";

/// Writes `lines` numbered lines, one every `interval` seconds, then ends.
pub fn ticking(lines: u32, interval: &str) -> String {
    format!(
        "version: 1\njobs:\n  tick:\n    run: for i in $(seq 1 {lines}); do echo \"tick $i\"; sleep {interval}; done\n"
    )
}

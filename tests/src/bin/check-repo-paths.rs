//! Fails when a file in the repository refers to the development machines' `shared/` folder
//! or to any path above the repository root (see `airlock_tests::repo_paths`).
//!
//!     cargo run -q -p airlock-tests --bin check-repo-paths [-- ROOT]
//!
//! `scripts/test.sh` runs it before anything else.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")));
    match airlock_tests::repo_paths::check_repository(&root) {
        Ok(findings) if findings.is_empty() => ExitCode::SUCCESS,
        Ok(findings) => {
            for finding in &findings {
                eprintln!("{finding}");
            }
            eprintln!(
                "check-repo-paths: {} reference(s) outside the repository; a clone has nothing \
                 beside it (recorded inputs go in tests/fixtures, see its README)",
                findings.len()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("check-repo-paths: {e}");
            ExitCode::from(2)
        }
    }
}

//! `ci-cluster`: Airlock's untrusted plane. It runs the pipeline stored in
//! each change and reports back; it holds no signing key and never connects
//! to the trusted side.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use ci_cluster::cli;
use clap::{Parser, Subcommand};

/// Airlock CI cluster (untrusted plane): runs each change's pipeline in a sandbox.
#[derive(Parser)]
#[command(name = "ci-cluster", version, about, long_about = None, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a repository's pipeline locally, in the same sandbox CI uses.
    ///
    /// Runs the committed state at --rev (uncommitted changes are not seen,
    /// exactly as in CI). Exit status: 0 every selected job passed, 1 a job
    /// did not pass, 2 usage, source or pipeline error.
    Run(cli::run::RunArgs),
    /// Check a pipeline file; prints every problem as file:line:col. Exit 2 when invalid.
    Validate(cli::validate::ValidateArgs),
    /// Print the JSON Schema of the pipeline file (for editors).
    Schema,
    /// Serve webhooks, run every change's pipeline and report back (see README).
    Serve(ci_cluster::serve::ServeArgs),
    /// Ask a running server for a manual run of a ref (needs the admin token).
    Trigger(cli::trigger::TriggerArgs),
    /// Read CI results from a running server: `runs list`, `runs get ID`, `runs logs ID [-f]`.
    ///
    /// Exit status: 0 done, 1 not found, refused or server unreachable, 2 usage.
    Runs(cli::runs::RunsArgs),
}

fn main() -> ExitCode {
    // rustls with aws-lc-rs is the only TLS stack; install it before anything dials out.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    airlock_pipeline::logging::init_stderr("AIRLOCK_LOG");
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => cli::run::main(args),
        Command::Validate(args) => cli::validate::main(args),
        Command::Schema => cli::validate::schema(),
        Command::Serve(args) => ci_cluster::serve::main(args),
        Command::Trigger(args) => cli::trigger::main(args),
        Command::Runs(args) => cli::runs::main(args),
    }
}

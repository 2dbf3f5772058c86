//! `ci-cluster validate` and `ci-cluster schema`.

use std::path::PathBuf;
use std::process::ExitCode;

use airlock_pipeline::spec;

use super::EXIT_USAGE;

/// Arguments of `validate`.
#[derive(clap::Args)]
pub struct ValidateArgs {
    /// The pipeline file.
    #[arg(default_value = spec::PIPELINE_PATH)]
    path: PathBuf,
}

/// Validates one file.
pub fn main(args: ValidateArgs) -> ExitCode {
    match spec::load(&args.path) {
        Ok(pipeline) => {
            let names: Vec<&str> = pipeline.jobs.iter().map(|j| j.name.as_str()).collect();
            println!(
                "ok: {}: {} jobs ({})",
                args.path.display(),
                names.len(),
                names.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            let n = diagnostics.items.len();
            eprintln!("{n} problem{} found", if n == 1 { "" } else { "s" });
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Prints the JSON Schema.
pub fn schema() -> ExitCode {
    match serde_json::to_string_pretty(&spec::json_schema()) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

//! `ci-cluster trigger`: ask a running server for a manual run.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::secret::SecretSource;

/// Arguments of `trigger`.
#[derive(clap::Args, Clone)]
pub struct TriggerArgs {
    /// Project name as configured.
    #[arg(long)]
    project: String,
    /// Full ref to run, e.g. refs/heads/main.
    #[arg(long = "ref", value_name = "REF")]
    git_ref: String,
    /// The server's base URL.
    #[arg(long, env = "AIRLOCK_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// File holding the admin token (else the AIRLOCK_ADMIN_TOKEN variable).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// Sends the request and prints the queued run.
pub fn main(args: TriggerArgs) -> ExitCode {
    let source = match &args.token_file {
        Some(f) => SecretSource::File(f.clone()),
        None => SecretSource::Env("AIRLOCK_ADMIN_TOKEN".into()),
    };
    let token = match source.load_non_empty() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: admin token: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let url = format!(
        "{}/api/v1/projects/{}/runs",
        args.server.trim_end_matches('/'),
        args.project
    );
    let result = runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(&url)
            .bearer_auth(token.expose())
            .json(&serde_json::json!({"ref": args.git_ref}))
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        Ok::<_, reqwest::Error>((status, body))
    });
    match result {
        Ok((status, body)) if status.is_success() => {
            println!(
                "queued run {} for {} at {}",
                body["run"], args.project, args.git_ref
            );
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!(
                "error: {status}: {}",
                body["message"].as_str().unwrap_or("request refused")
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: cannot reach {}: {e}", args.server);
            ExitCode::from(1)
        }
    }
}

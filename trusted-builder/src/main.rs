//! `trusted-builder`: Airlock's trusted plane. It pulls pass records (it
//! never accepts a connection from the CI cluster), rebuilds hermetically,
//! signs and attests. `serve` is the loop; `keys` and `verify` are the tools
//! around it.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use trusted_builder::sign::{COSIGN_PASSWORD_ENV, Secret, generate_key_pair};

/// Airlock trusted builder (trusted plane, air-gapped).
///
/// Pulls records of passing CI jobs, re-derives the source from the canonical
/// Git server by commit id, rebuilds the job with no network, and produces
/// signed OCI images with SLSA provenance. It opens no port for the CI
/// cluster and takes nothing from it but a hint.
#[derive(Parser)]
#[command(name = "trusted-builder", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull pass records from the outbox, rebuild, push, sign and attest.
    ///
    /// Opens NO listening port: the CI cluster cannot push to the builder. The
    /// builder reads the outbox directory the CI writes (never writes to it),
    /// takes each new record in name order through intake, the hermetic
    /// rebuild, image and artifact push, cosign signature and SLSA provenance,
    /// and writes every decision to its append-only log under data_dir.
    /// Without --once it polls until SIGINT or SIGTERM.
    Serve {
        /// The builder's configuration (builder.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Process the records present now, then exit (non-zero when a
        /// record could not be published and is left for the next run).
        #[arg(long)]
        once: bool,
    },
    /// Moved to `airlock-reconciler` (kept so old scripts get a pointer, not a usage error).
    #[command(name = "reconcile", hide = true, alias = "promote", alias = "audit")]
    Moved {
        /// Everything after it.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        rest: Vec<String>,
    },
    /// Manage the signing key (cosign formats).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Verify an image's signature and SLSA provenance with a public key.
    ///
    /// Fetches the cosign signature (tag sha256-<hex>.sig) and attestation
    /// (sha256-<hex>.att) from the image's repository, every blob checked
    /// against its digest. Exit 0 only when a signature verifies with the key
    /// and names exactly this digest and repository, AND a DSSE-wrapped SLSA
    /// v1 statement verifies with the key and has this digest as subject.
    /// Prints the provenance summary; otherwise the reason, and exit 1.
    Verify {
        /// The image, by digest: REGISTRY/REPOSITORY@sha256:<hex>.
        #[arg(value_name = "IMAGE@sha256:...")]
        image: String,
        /// The public key (cosign.pub, PEM).
        #[arg(long, value_name = "PUB")]
        key: PathBuf,
        /// Reach this registry (HOST:PORT) over plain HTTP; repeatable.
        #[arg(long, value_name = "HOST:PORT")]
        insecure_registry: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate a P-256 key pair in cosign's formats.
    ///
    /// Writes DIR/cosign.key (encrypted private key, mode 0600) and
    /// DIR/cosign.pub (public key PEM), exactly as `cosign generate-key-pair`
    /// does; both are usable with cosign. Refuses to overwrite existing files.
    /// The password comes from COSIGN_PASSWORD, or from --password-file.
    /// Prints the public key's path and its fingerprint (sha256 of its DER).
    Generate {
        /// Directory to write cosign.key and cosign.pub into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Read the key password from this file (one trailing newline is
        /// ignored) instead of the COSIGN_PASSWORD environment variable.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trusted-builder: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, once } => {
            airlock_pipeline::logging::init_stderr("RUST_LOG");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(trusted_builder::serve::serve(&config, once))
        }
        Command::Verify {
            image,
            key,
            insecure_registry,
        } => verify(&image, &key, insecure_registry),
        Command::Moved { .. } => anyhow::bail!(
            "`reconcile`, `promote` and `audit trace` are now subcommands of `airlock-reconciler`: \
             the reconciler is its own binary, with public keys only (it does not link this \
             binary's signing code)"
        ),
        Command::Keys(KeysCommand::Generate { out, password_file }) => {
            let password = match password_file {
                Some(f) => Secret::from_file(&f)?,
                None => Secret::from_env(COSIGN_PASSWORD_ENV).map_err(|e| {
                    anyhow::anyhow!("{e}; set {COSIGN_PASSWORD_ENV} or pass --password-file")
                })?,
            };
            std::fs::create_dir_all(&out)
                .map_err(|e| anyhow::anyhow!("could not create {}: {e}", out.display()))?;
            let pair = generate_key_pair(&out, &password)?;
            println!("private key: {} (mode 0600)", pair.private_key.display());
            println!("public key:  {}", pair.public_key.display());
            println!("fingerprint: {}", pair.key_id);
            Ok(())
        }
    }
}

fn verify(image: &str, key: &std::path::Path, insecure: Vec<String>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let summary = runtime
        .block_on(airlock_verify::signature::verify_with_key_file(
            image, key, insecure,
        ))
        .map_err(|e| anyhow::anyhow!("verification FAILED for {image}: {e}"))?;
    println!("{summary}");
    Ok(())
}

//! `airlock-reconciler`: Airlock's deploy side. It reconciles the environment repository into
//! targets, promotes signed images and traces a running image back to its review. It holds
//! trusted PUBLIC keys and target access only: no signing key, no Vault client.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Airlock reconciler (deploy side: public keys and target access only).
///
/// Applies the desired state kept in the environment Git repository, admitting only images
/// signed by a trusted key with provenance from an allowed source; promotes signed images by a
/// commit to that repository; and traces a running image back to the review that started it.
/// It never holds a signing key: it does not link the trusted builder's signing code.
#[derive(Parser)]
#[command(name = "airlock-reconciler", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a target match the environment repository (GitOps), admitting only
    /// images signed by a trusted key with provenance from an allowed source.
    ///
    /// A separate process from `serve`, configured by reconciler.toml: it holds
    /// trusted PUBLIC keys and target access, never a signing key. Reads
    /// environments/<env>/<namespace>/*.yaml at the head of the configured
    /// branch (gix), runs every object through policies/admission.rego, then
    /// applies what is admitted (podman or Kubernetes), prunes inventory members
    /// removed from Git, repairs drift and records health. Without a subcommand
    /// it syncs now, then every poll_interval_secs and at once on POST
    /// /hooks/env (when `listen` is set), until SIGINT or SIGTERM.
    #[command(args_conflicts_with_subcommands = true)]
    Reconcile {
        /// The reconciler's configuration (reconciler.toml).
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        /// Sync once and exit (exit 1 when anything was refused or failed).
        #[arg(long)]
        once: bool,
        #[command(subcommand)]
        action: Option<ReconcileCommand>,
    },
    /// Promote a signed image to an environment by changing the environment repository.
    ///
    /// Verifies the image's signature and SLSA provenance with the trusted keys
    /// of reconciler.toml, gathers facts (which workloads of --to use the image's
    /// repository, whether --from runs this digest healthily at its last sync)
    /// and asks policies/promotion.rego. When allowed, rewrites the image
    /// references under environments/<to>/, commits with you as the author and a
    /// trailer summarising what was verified, and pushes to the configured
    /// branch. Otherwise prints why and changes nothing.
    Promote {
        /// The image, by digest: REGISTRY/REPOSITORY@sha256:<hex>.
        #[arg(value_name = "IMAGE@sha256:...")]
        image: String,
        /// The environment to promote into.
        #[arg(long, value_name = "ENV")]
        to: String,
        /// The environment the digest must already run healthily in.
        #[arg(long, value_name = "ENV")]
        from: Option<String>,
        /// The reconciler's configuration (keys, environment repo, history).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The release manager, as the commit's author: "Name <email>".
        #[arg(long, value_name = "NAME <EMAIL>")]
        author: String,
    },
    /// Read the audit trail: walk back from a running image to its review.
    #[command(subcommand)]
    Audit(AuditCommand),
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
enum ReconcileCommand {
    /// Print what a sync would apply, prune and refuse, touching nothing.
    Plan,
    /// Print the last syncs (commit, applied, pruned, refused and why) and health.
    Status {
        /// How many syncs to show.
        #[arg(long, default_value_t = 10)]
        last: usize,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk back from an image digest to the review event that started it.
    ///
    /// running (the reconciler's sync history and the promotion commits in its
    /// mirror of the environment repository) -> image (signature and SLSA
    /// provenance verified with the trusted keys) -> the builder's hash-chained
    /// decision log -> the pass record (origin signature checked, outputs
    /// compared with the provenance) -> the CI run -> the review event (from
    /// the CI's public API, only with --ci-url). Also lists what the builder and
    /// the reconciler refused for the same project or repository, and why.
    /// Exit 1 when any hop does not hold: no valid signature or provenance, a broken
    /// decision-log chain, no logged signing of the digest (signed outside the builder), a
    /// pass record that does not open or whose outputs differ from the provenance.
    Trace {
        /// The image: REGISTRY/REPOSITORY@sha256:<hex> (e.g. from `podman inspect`).
        #[arg(value_name = "IMAGE@sha256:...")]
        image: String,
        /// The builder's configuration (decision log, outbox, origin keys).
        #[arg(long, value_name = "FILE")]
        builder_config: PathBuf,
        /// The reconciler's configuration (sync history, environment repo, trusted keys).
        #[arg(long, value_name = "FILE")]
        reconciler_config: Option<PathBuf>,
        /// A cosign public key to verify with (repeatable; adds to the reconciler's).
        #[arg(long, value_name = "PUB")]
        key: Vec<PathBuf>,
        /// The CI's public URL, to read the run and the review (read-only API).
        #[arg(long, value_name = "URL")]
        ci_url: Option<String>,
    },
}

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("airlock-reconciler: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Reconcile {
            config,
            once,
            action,
        } => {
            let config = config.ok_or_else(|| anyhow::anyhow!("--config FILE is required"))?;
            reconcile(&config, once, action)
        }
        Command::Promote {
            image,
            to,
            from,
            config,
            author,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let outcome = runtime.block_on(airlock_reconciler::promote::promote_from_config(
                &config,
                &airlock_reconciler::promote::Request {
                    image,
                    to,
                    from,
                    author,
                },
            ))?;
            println!("{outcome}");
            Ok(())
        }
        Command::Verify {
            image,
            key,
            insecure_registry,
        } => verify(&image, &key, insecure_registry),
        Command::Audit(AuditCommand::Trace {
            image,
            builder_config,
            reconciler_config,
            key,
            ci_url,
        }) => {
            use airlock_reconciler::reconcile::config::ReconcilerConfig;
            use airlock_reconciler::trace;
            use airlock_reconciler::trace::BuilderView;
            let sources = trace::Sources {
                builder: BuilderView::load(&builder_config)?,
                reconciler: reconciler_config
                    .as_deref()
                    .map(ReconcilerConfig::load)
                    .transpose()?,
                keys: key,
                ci_url,
            };
            if sources.reconciler.is_none() && sources.keys.is_empty() {
                anyhow::bail!("no public key: pass --reconciler-config or --key");
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let t = runtime.block_on(trace::trace(&image, &sources))?;
            print!("{}", trace::render(&t));
            let breaks = t.breaks();
            if !breaks.is_empty() {
                anyhow::bail!(
                    "the chain of {image} does not hold ({} break(s))",
                    breaks.len()
                );
            }
            Ok(())
        }
    }
}

fn reconcile(
    config: &std::path::Path,
    once: bool,
    action: Option<ReconcileCommand>,
) -> anyhow::Result<()> {
    use airlock_reconciler::reconcile::config::ReconcilerConfig;
    use airlock_reconciler::reconcile::run;
    airlock_pipeline::logging::init_stderr("RUST_LOG");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match action {
        None => runtime.block_on(run::run(config, once)),
        Some(ReconcileCommand::Status { last }) => {
            let config = ReconcilerConfig::load(config)?;
            print!("{}", run::status(&config, last)?);
            Ok(())
        }
        Some(ReconcileCommand::Plan) => runtime.block_on(async {
            let config = ReconcilerConfig::load(config)?;
            let reconciler = run::Reconciler::open(config).await?;
            let (commit, plan) = reconciler.plan().await?;
            println!("environment repository at {commit}");
            print!(
                "{}",
                airlock_reconciler::reconcile::plan::render_plan(&plan)
            );
            Ok(())
        }),
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

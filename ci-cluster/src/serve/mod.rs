//! `ci-cluster serve`: the CI cluster as a server: webhooks in, runs in the
//! sandbox, reports out, pass records into the one-way outbox.

pub mod http;
mod records;
mod reports;
mod runner;
mod trigger;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use airlock_pipeline::executor::{SandboxConfig, SandboxExecutor};
use airlock_pipeline::record::{DirOutbox, OriginKey};
use airlock_pipeline::source::SourceCache;
use anyhow::Context;
use tokio_util::sync::CancellationToken;

pub use crate::kernel::{AppState, now_ms};

use crate::config::Config;
use crate::report::{ForgeReporter, GerritClient, GithubClient, GitlabClient};
use crate::store::Store;

/// Runs that a restart interrupts are re-queued this many times, then failed.
const MAX_RUN_ATTEMPTS: u32 = 2;

/// Arguments of `serve`.
#[derive(clap::Args, Clone)]
pub struct ServeArgs {
    /// The configuration file (see README: "Operating the CI cluster").
    #[arg(long, short, default_value = "ci.toml")]
    pub config: PathBuf,
}

/// Entry point of `ci-cluster serve`.
pub fn main(args: ServeArgs) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(serve(config, CancellationToken::new())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn reporter(config: &Config) -> anyhow::Result<ForgeReporter> {
    let forges = &config.file.forges;
    let gerrit = match (&forges.gerrit, &config.gerrit) {
        (Some(g), Some((_, Some(password)))) if g.url.is_some() => Some(GerritClient::new(
            g.url.as_deref().unwrap_or_default(),
            g.user.as_deref().unwrap_or("airlock-ci"),
            password.clone(),
        )?),
        _ => None,
    };
    let github = match (&forges.github, &config.github) {
        (Some(g), Some((_, token))) => Some(GithubClient::new(
            g.api_url.as_deref().unwrap_or("https://api.github.com"),
            token.clone(),
        )?),
        _ => None,
    };
    let gitlab = match (&forges.gitlab, &config.gitlab) {
        (Some(g), Some((_, token))) if g.api_url.is_some() => Some(GitlabClient::new(
            g.api_url.as_deref().unwrap_or_default(),
            token.clone(),
        )?),
        _ => None,
    };
    Ok(ForgeReporter::new(gerrit, github, gitlab))
}

/// Serves until `stop` is cancelled or the process gets SIGINT/SIGTERM.
pub async fn serve(config: Config, stop: CancellationToken) -> anyhow::Result<()> {
    let data = config.file.data_dir.clone();
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let work_root = data.join("work");
    std::fs::create_dir_all(&work_root)?;
    // The sandbox user must traverse (not list) down to its workspace.
    for dir in [&data, &work_root] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("chmod {}", dir.display()))?;
    }
    let store = {
        let path = data.join("ci.sqlite");
        Arc::new(tokio::task::spawn_blocking(move || Store::open(&path)).await??)
    };
    let origin_key = Arc::new(OriginKey::load_or_create(
        &config
            .file
            .ci_key
            .clone()
            .unwrap_or_else(|| data.join("keys/ci-origin.key")),
    )?);
    let executor = Arc::new(SandboxExecutor::new(SandboxConfig {
        host_mode: config.file.images.host_mode(),
        images: config.file.images.settings(),
        ceilings: config.file.limits.ceilings(),
        ..SandboxConfig::default()
    })?);
    let reporter = reporter(&config)?;
    let listener = tokio::net::TcpListener::bind(config.file.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.file.listen))?;
    let addr = listener.local_addr()?;
    let state = AppState {
        config: Arc::new(config),
        intake: crate::kernel::IntakeWriter::start(store.clone()),
        store,
        runs_queued: Default::default(),
        reports_queued: Default::default(),
        running: Default::default(),
        sources: SourceCache::new(data.join("git")),
        shutdown: stop.clone(),
        metrics: Default::default(),
    };

    let recovery = {
        let (store, st) = (state.store.clone(), state.clone());
        tokio::task::spawn_blocking(move || {
            store.recover(
                MAX_RUN_ATTEMPTS,
                &|row| reports::interrupted_report(&st, row),
                now_ms(),
            )
        })
        .await??
    };
    if !recovery.requeued.is_empty() || !recovery.failed.is_empty() {
        tracing::warn!(requeued = ?recovery.requeued, failed = ?recovery.failed, "recovered runs interrupted by a restart");
        eprintln!(
            "ci-cluster: recovered after a restart: re-queued {:?}, failed {:?}",
            recovery.requeued, recovery.failed
        );
    }

    let artifacts = Arc::new(crate::artifacts::LocalArtifacts::new(
        data.join("artifacts"),
    ));
    let deps = runner::RunnerDeps {
        executor,
        origin_key,
        outbox: Arc::new(DirOutbox::new(state.config.outbox_dir.clone())),
        artifacts: artifacts.clone(),
        work_root,
    };
    let mut tasks = tokio::task::JoinSet::new();
    // After recovery, so re-queued runs count as queued and failed ones as final.
    tasks.spawn(crate::artifacts::retention::sweep_loop(
        state.clone(),
        artifacts,
    ));
    tasks.spawn(runner::run_loop(state.clone(), deps));
    tasks.spawn(reports::report_loop(state.clone(), reporter));
    tasks.spawn(trigger::schedules(state.clone()));

    let _signals = airlock_pipeline::shutdown::cancel_on_signal(stop.clone(), "ci-cluster");

    eprintln!(
        "ci-cluster: listening on http://{addr} (data in {})",
        data.display()
    );
    tracing::info!(%addr, "listening");
    let shutdown = stop.clone();
    let limits = airlock_pipeline::http_server::HttpLimits {
        max_connections: state.config.file.http.max_connections,
        read_timeout: state.config.file.http.read_timeout.0,
    };
    airlock_pipeline::http_server::serve(listener, http::router(state.clone()), limits, shutdown)
        .await?;
    while tasks.join_next().await.is_some() {}
    Ok(())
}

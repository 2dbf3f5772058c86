//! `ci-cluster run`: a repository's pipeline, locally, in the CI sandbox.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use airlock_pipeline::dag::{Engine, EngineConfig, Plan, RunReport, Selection};
use airlock_pipeline::env::{JobContext, RunName};
use airlock_pipeline::events::JobState;
use airlock_pipeline::executor::{HostMode, SandboxConfig, SandboxExecutor};
use airlock_pipeline::image::ImageSettings;
use airlock_pipeline::source::{CommitId, Mirror, SourceCache};
use airlock_pipeline::spec::{self, EventKind};
use airlock_pipeline::terminal;
use airlock_pipeline::tree::TreeRoot;
use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use super::EXIT_USAGE;

/// Arguments of `run`.
#[derive(clap::Args, Clone)]
pub struct RunArgs {
    /// A local repository path, or a Git URL (file://, git://, http(s)://).
    #[arg(long, default_value = ".")]
    repo: String,
    /// Commit id, branch, tag, full ref (refs/changes/34/1234/2) or any rev-parse expression.
    #[arg(long, default_value = "HEAD")]
    rev: String,
    /// Run only this job and what it needs (repeatable). Ignores `when`.
    #[arg(long = "job", value_name = "NAME")]
    jobs: Vec<String>,
    /// Copy every collected output here, at its workspace path.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Select jobs as CI would for this kind of event: change, push, tag, schedule, manual.
    #[arg(long, default_value = "change", value_parser = parse_event)]
    event: EventKind,
    /// Ref matched against `when.refs` (default: --rev when it is a ref, else refs/heads/<rev>).
    #[arg(long = "ref", value_name = "REF")]
    git_ref: Option<String>,
    /// Jobs running at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Work directory (default: a new one under /var/tmp, removed afterwards).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Keep the work directory (workspaces and outputs) for inspection.
    #[arg(long)]
    keep_work: bool,
    /// Cache of Git mirrors for URLs.
    #[arg(long, env = "AIRLOCK_CACHE", value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Write the run report (states, exit codes, logs, output digests) as JSON here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Lines of log shown for each job that did not pass.
    #[arg(long, default_value_t = 20)]
    tail: usize,
    /// Where unpacked job images are kept (the sandbox user must be able to traverse it).
    #[arg(long, env = "AIRLOCK_IMAGE_CACHE", value_name = "DIR", default_value = airlock_pipeline::image::cache::DEFAULT_IMAGE_CACHE)]
    image_cache: PathBuf,
    /// A registry (HOST:PORT) reached over plain HTTP when pulling job images (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    /// Refuse jobs that name no image instead of running them on this host's directories.
    #[arg(long)]
    no_host_mode: bool,
}

fn parse_event(s: &str) -> Result<EventKind, String> {
    s.parse()
}

/// Runs the command; maps errors to exit status 2.
pub fn main(args: RunArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

struct Checkout {
    mirror: Mirror,
    commit: CommitId,
}

fn checkout(args: &RunArgs) -> anyhow::Result<Checkout> {
    if args.repo.contains("://") {
        if args.rev == "HEAD" {
            bail!("with a URL, name what to run with --rev (a branch, tag, full ref or commit id)");
        }
        let cache = args.cache.clone().unwrap_or_else(default_cache);
        let (mirror, commit) = SourceCache::new(cache).fetch_rev(&args.repo, &args.rev)?;
        Ok(Checkout { mirror, commit })
    } else {
        let mirror = Mirror::open(Path::new(&args.repo))?;
        let commit = mirror.resolve(&args.rev)?;
        Ok(Checkout { mirror, commit })
    }
}

fn default_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"))
        .join("airlock/git")
}

fn default_ref(rev: &str) -> String {
    if rev.starts_with("refs/") {
        rev.to_string()
    } else if rev == "HEAD" || rev.len() == 40 || rev.contains(['~', '^', '@']) {
        "HEAD".to_string()
    } else {
        format!("refs/heads/{rev}")
    }
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let checkout = {
        let a = args.clone();
        tokio::task::spawn_blocking(move || checkout(&a))
            .await?
            .with_context(|| format!("cannot get the source from {}", args.repo))?
    };
    let short = checkout.commit.to_string()[..12].to_string();
    let summary = checkout.mirror.commit_summary(&checkout.commit).ok();
    eprintln!(
        "airlock: {} at {short}{}",
        args.repo,
        summary
            .map(|s| format!(" \"{}\"", s.subject))
            .unwrap_or_default()
    );

    let bytes = checkout
        .mirror
        .read_file(
            &checkout.commit,
            spec::PIPELINE_PATH,
            spec::MAX_PIPELINE_BYTES as u64 + 1,
        )?
        .with_context(|| format!("commit {short} has no {}", spec::PIPELINE_PATH))?;
    let pipeline = match spec::parse(spec::PIPELINE_PATH, &bytes) {
        Ok(p) => p,
        Err(d) => {
            eprintln!("{d}");
            eprintln!("(the pipeline file of commit {short} is invalid; nothing was run)");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };

    let git_ref = args.git_ref.clone().unwrap_or_else(|| {
        match (args.rev.as_str(), checkout.mirror.head_ref()) {
            ("HEAD", Some(branch)) => branch,
            _ => default_ref(&args.rev),
        }
    });
    let selection = if args.jobs.is_empty() {
        Selection::Event {
            kind: args.event,
            git_ref: git_ref.clone(),
        }
    } else {
        Selection::Named(args.jobs.clone())
    };
    let plan = match Plan::new(&pipeline, &selection) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            if args.jobs.is_empty() {
                eprintln!(
                    "(selecting for event '{}' on {git_ref}; use --event, --ref or --job)",
                    args.event.as_str()
                );
            }
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let not_selected: Vec<&str> = pipeline
        .jobs
        .iter()
        .filter(|j| !plan.jobs.iter().any(|p| p.name == j.name))
        .map(|j| j.name.as_str())
        .collect();
    if !not_selected.is_empty() {
        eprintln!(
            "airlock: not selected for {} on {git_ref}: {} (use --job to run them)",
            args.event.as_str(),
            not_selected.join(", ")
        );
    }

    let executor = Arc::new(SandboxExecutor::new(SandboxConfig {
        host_mode: if args.no_host_mode {
            HostMode::Deny
        } else {
            HostMode::Allow
        },
        images: ImageSettings {
            cache_dir: args.image_cache.clone(),
            insecure: args.insecure_registries.clone(),
            ..ImageSettings::default()
        },
        ..SandboxConfig::default()
    })?);
    let commit_time = checkout.mirror.commit_time(&checkout.commit)?;
    let (work, _temp) = work_dir(&args)?;
    let src = work.join("src");
    let commit = checkout.commit;
    {
        let (mirror, src) = (checkout.mirror, src.clone());
        tokio::task::spawn_blocking(move || mirror.materialise(&commit, &src)).await??;
    }

    let mut config = EngineConfig::new(&work);
    config.concurrency = args.concurrency;
    // The CI's and the trusted builder's variables (pipeline::env), with AIRLOCK_RUN=local.
    config.env = JobContext {
        commit,
        git_ref: git_ref.clone(),
        event: args.event,
        commit_time,
        run: RunName::Local,
    }
    .env();
    let engine = Engine::new(executor, config);
    let printer = tokio::spawn(super::progress::follow(engine.subscribe(), plan.jobs.len()));
    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nairlock: cancelling (stopping running jobs)...");
            on_ctrl_c.cancel();
        }
    });
    eprintln!(
        "airlock: running {} job{} in the sandbox",
        plan.jobs.len(),
        if plan.jobs.len() == 1 { "" } else { "s" }
    );
    let report = engine.run(&plan, &src, cancel).await;
    let _ = printer.await;

    print_failures(&report, args.tail);
    print_outputs(&report);
    if let Some(out) = &args.out {
        copy_outputs(&report, out)?;
        eprintln!("airlock: outputs copied to {}", out.display());
    }
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    if args.keep_work {
        eprintln!("airlock: work directory kept at {}", work.display());
    }
    let passed = report
        .jobs
        .iter()
        .filter(|j| j.state == JobState::Passed)
        .count();
    eprintln!(
        "airlock: {} — {passed} of {} jobs passed{}",
        if report.passed() { "PASSED" } else { "FAILED" },
        report.jobs.len(),
        if report.cancelled { " (cancelled)" } else { "" }
    );
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The work directory, and the temp dir guard that removes it (unless kept).
fn work_dir(args: &RunArgs) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    if let Some(dir) = &args.work_dir {
        std::fs::create_dir_all(dir)?;
        return Ok((dir.clone(), None));
    }
    let temp = tempfile::Builder::new()
        .prefix("airlock-run-")
        .tempdir_in("/var/tmp")?;
    // Traversable (not listable) so the unprivileged sandbox user reaches its workspace.
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o711))?;
    let path = temp.path().to_path_buf();
    if args.keep_work {
        return Ok((temp.keep(), None));
    }
    Ok((path, Some(temp)))
}

/// The tails of failed jobs' logs, on stderr. Job logs are the job's text: escape sequences
/// other than colours (and colours too when stderr is not a terminal) are dropped, and the
/// job's detail is escaped (see `airlock_pipeline::terminal`).
fn print_failures(report: &RunReport, tail: usize) {
    use std::io::IsTerminal as _;
    let colours = std::io::stderr().is_terminal();
    for job in &report.jobs {
        if matches!(
            job.state,
            JobState::Passed | JobState::Skipped | JobState::Cancelled
        ) {
            continue;
        }
        eprintln!(
            "\n── {} {} ({}) ── last {tail} lines of its log:",
            terminal::field(&job.name),
            job.state.as_str(),
            terminal::field(job.detail.as_deref().unwrap_or(""))
        );
        for line in job.log.tail(tail) {
            eprintln!("   │ {}", terminal::log_line(line, colours));
        }
    }
}

fn print_outputs(report: &RunReport) {
    let outputs: Vec<_> = report
        .jobs
        .iter()
        .flat_map(|j| j.outputs.iter().map(move |o| (j, o)))
        .collect();
    if outputs.is_empty() {
        return;
    }
    println!("{:<12} {:>10}  {:<64}  path", "job", "bytes", "sha256");
    // Paths are named by the job: a newline or an escape sequence in one must not forge a row.
    for (job, o) in outputs {
        println!(
            "{:<12} {:>10}  {}  {}",
            terminal::field(&job.name),
            o.size,
            o.sha256,
            terminal::field(&o.path)
        );
    }
}

/// Copies every output to its path beneath `out`. The paths were named by untrusted jobs, so
/// they are written beneath `out` through [`TreeRoot`]: never through a link, never above it.
fn copy_outputs(report: &RunReport, out: &Path) -> anyhow::Result<()> {
    let root = TreeRoot::create(out, 0o755)
        .with_context(|| format!("creating output directory {}", out.display()))?;
    for job in &report.jobs {
        for file in &job.outputs {
            report
                .store
                .copy_out(file, &root, Path::new(&file.path))
                .with_context(|| format!("copying {} into {}", file.path, out.display()))?;
        }
    }
    Ok(())
}

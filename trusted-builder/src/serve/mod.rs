//! `trusted-builder serve`: the builder's loop.
//!
//! The builder **opens no listening port**: the CI cluster cannot push anything to it. It pulls
//! pass records from the outbox (a directory the CI writes and the builder only reads,
//! [`DirOutbox`]) and, for each record it has not seen before, in name order:
//!
//! 1. intake ([`Intake::check`]): size, signature of a trusted CI origin, policy over facts from
//!    the builder's own mirror; a refusal is logged with its reason;
//! 2. the hermetic rebuild ([`Rebuilder::rebuild`]) and the comparison with CI's outputs (a
//!    difference is refused in strict mode);
//! 3. when the job publishes an image: a deterministic image from the rebuilt outputs, pushed to
//!    `<image_repository>:<job>-<short commit>`, signed (cosign `.sig`) and attested (SLSA
//!    provenance in DSSE, `.att`); declared artifacts are pushed as one OCI artifact to
//!    `<artifacts_repository>:<job>-<short commit>`;
//! 4. every decision goes to the append-only [`AuditLog`].
//!
//! The names of the outbox files dealt with are kept in `processed.jsonl` under the data
//! directory, so a restart neither rebuilds nor re-logs them. A record whose publishing failed
//! (registry unreachable, say) is logged as refused "will retry" and left unprocessed: the next
//! poll takes it again.

pub mod config;
mod processed;
mod publish;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use airlock_pipeline::executor::SandboxExecutor;
use airlock_pipeline::record::{DirOutbox, OutputDigest, RecordSource, parse_public_key_hex};
use airlock_pipeline::source::SourceCache;
// What the builder prints quotes pass records and rebuild errors: untrusted text, escaped.
use airlock_pipeline::terminal::field;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditLog, Decision};
use crate::intake::{BuiltState, Intake, IntakePolicy, IntakeSettings, Subject};
use crate::oci::Registry;
use crate::rebuild::Rebuilder;
use crate::sign::AnySigner;

pub use self::config::{BuilderConfig, ConfigError, RegistrySection, ServeProject};
pub use self::processed::Processed;

/// File under the data directory naming the outbox entries already dealt with.
pub const PROCESSED_FILE: &str = "processed.jsonl";
/// The decision log under the data directory.
pub use airlock_verify::audit::DECISIONS_FILE;
/// The built state under the data directory.
pub const BUILT_FILE: &str = "built.jsonl";

/// What became of one outbox entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Rebuilt and published.
    Built,
    /// Refused (at intake or after the rebuild); final.
    Refused,
    /// Publishing failed; left for the next poll (never persisted).
    Retry,
}

/// Counts of one pass over the outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassSummary {
    /// Records rebuilt and published.
    pub built: usize,
    /// Records refused.
    pub refused: usize,
    /// Records left for the next poll.
    pub retry: usize,
}

/// The running builder.
pub struct Server {
    config: BuilderConfig,
    intake: Arc<Intake>,
    audit: AuditLog,
    rebuilder: Rebuilder,
    registry: Registry,
    signer: AnySigner,
    outbox: Box<dyn RecordSource>,
    processed: Processed,
}

impl Server {
    /// Opens everything the configuration names: keys, policy, state, log, sandbox, registry
    /// client, signer. Fails before touching the outbox if any of it is missing.
    pub async fn open(config: BuilderConfig) -> anyhow::Result<Self> {
        let data = &config.data_dir;
        std::fs::create_dir_all(data)
            .with_context(|| format!("cannot create the data directory {}", data.display()))?;
        let mut keys = Vec::new();
        for path in &config.origin_keys {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read origin key {}", path.display()))?;
            keys.push(
                parse_public_key_hex(&text)
                    .with_context(|| format!("origin key {}", path.display()))?,
            );
        }
        let policy = IntakePolicy::load(config.intake_policy.as_deref())?;
        let built = BuiltState::open(data.join(BUILT_FILE))
            .with_context(|| format!("built state in {}", data.display()))?;
        let intake = Intake::new(
            config.intake_projects(),
            keys,
            SourceCache::new(data.join("mirrors")),
            policy,
            built,
            IntakeSettings {
                strict_reproducibility: config.strict_reproducibility,
            },
        );
        let audit = AuditLog::open(data.join(DECISIONS_FILE))?;
        let processed = Processed::open(data.join(PROCESSED_FILE))
            .with_context(|| format!("processed names in {}", data.display()))?;
        let executor = SandboxExecutor::new(config.sandbox_config())
            .map_err(|e| anyhow::anyhow!("cannot start the sandbox executor: {e}"))?;
        std::fs::create_dir_all(&config.work_dir).with_context(|| {
            format!(
                "cannot create the work directory {}",
                config.work_dir.display()
            )
        })?;
        // Rebuild directories of a builder that was killed mid-job (their workspace filesystems
        // may still be mounted): nothing in them is needed, every rebuild starts afresh.
        if let Ok(entries) = std::fs::read_dir(&config.work_dir) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with("rebuild-")
                    && let Err(e) = airlock_pipeline::executor::remove_work_dir(&entry.path())
                {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "cannot remove a stale rebuild directory");
                }
            }
        }
        let rebuilder = Rebuilder::new(Arc::new(executor), &config.work_dir);
        let registry = Registry::new(&config.registry.config())?;
        let signer = config
            .signing
            .open()
            .await
            .context("cannot open the signing key")?;
        let outbox: Box<dyn RecordSource> = Box::new(DirOutbox::new(&config.outbox_dir));
        Ok(Server {
            config,
            intake: Arc::new(intake),
            audit,
            rebuilder,
            registry,
            signer,
            outbox,
            processed,
        })
    }

    /// The decision log's path.
    pub fn audit_path(&self) -> &Path {
        self.audit.path()
    }

    /// Polls the outbox until `stop` is cancelled (or once, with `once`).
    pub async fn run(&mut self, once: bool, stop: CancellationToken) -> anyhow::Result<()> {
        let interval = Duration::from_secs(self.config.poll_interval_secs);
        loop {
            let summary = self.pass(&stop).await?;
            if once {
                eprintln!(
                    "trusted-builder: done: {} built, {} refused, {} to retry",
                    summary.built, summary.refused, summary.retry
                );
                if summary.retry > 0 {
                    anyhow::bail!(
                        "{} record(s) could not be published; they stay for the next run",
                        summary.retry
                    );
                }
                return Ok(());
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// One look at the outbox: every new name, in order.
    pub async fn pass(&mut self, stop: &CancellationToken) -> anyhow::Result<PassSummary> {
        let names = self
            .outbox
            .list()
            .with_context(|| format!("cannot list the outbox {}", self.outbox.describe()))?;
        let mut summary = PassSummary::default();
        for name in names {
            if stop.is_cancelled() {
                break;
            }
            if self.processed.contains(&name) {
                continue;
            }
            let outcome = self.process(&name, stop).await?;
            match outcome {
                Outcome::Built => summary.built += 1,
                Outcome::Refused => summary.refused += 1,
                Outcome::Retry => summary.retry += 1,
            }
            if outcome != Outcome::Retry {
                self.processed.mark(&name, outcome)?;
            }
        }
        Ok(summary)
    }

    fn log(&mut self, record: &str, decision: Decision) -> anyhow::Result<()> {
        self.audit.append_for(record, decision)?;
        Ok(())
    }

    fn refuse(
        &mut self,
        name: &str,
        subject: Option<Subject>,
        reason: String,
    ) -> anyhow::Result<Outcome> {
        eprintln!(
            "trusted-builder: {}: REFUSED: {}",
            field(name),
            field(&reason)
        );
        tracing::warn!(record = name, %reason, "refused");
        self.log(name, Decision::Refused { subject, reason })?;
        Ok(Outcome::Refused)
    }

    /// One outbox entry. `Err` only when the builder's own state cannot be written.
    async fn process(&mut self, name: &str, stop: &CancellationToken) -> anyhow::Result<Outcome> {
        let bytes = match self.outbox.read(name) {
            Ok(bytes) => bytes,
            Err(e) => return self.refuse(name, None, e.to_string()),
        };
        let intake = self.intake.clone();
        let checked = tokio::task::spawn_blocking(move || intake.check(&bytes))
            .await
            .context("intake task panicked")?;
        let accepted = match checked {
            Ok(accepted) => accepted,
            Err(refusal) => return self.refuse(name, refusal.subject, refusal.reason),
        };
        let subject = Subject::of(&accepted.record);
        eprintln!(
            "trusted-builder: {}: accepted {} {} {} {}",
            field(name),
            field(&subject.project),
            field(&subject.git_ref),
            field(&subject.commit),
            field(&subject.job)
        );
        tracing::info!(record = name, project = %subject.project, commit = %subject.commit, job = %subject.job, "accepted");
        self.log(
            name,
            Decision::Accepted {
                subject: subject.clone(),
            },
        )?;
        let started = chrono::Utc::now();
        let rebuilt = match self.rebuilder.rebuild(&accepted, stop.child_token()).await {
            Ok(rebuilt) => rebuilt,
            Err(e) => return self.refuse(name, Some(subject), e.to_string()),
        };
        eprintln!(
            "trusted-builder: {}: rebuilt, reproduced: {}",
            field(name),
            rebuilt.reproduced
        );
        tracing::info!(record = name, reproduced = rebuilt.reproduced, differing = ?rebuilt.differing, "built");
        self.log(
            name,
            Decision::Built {
                subject: subject.clone(),
                reproduced: rebuilt.reproduced,
                differing: rebuilt.differing.clone(),
                outputs: rebuilt.outputs.iter().map(OutputDigest::from).collect(),
            },
        )?;
        let published = self
            .publish(name, &accepted, &rebuilt, &subject, started)
            .await;
        let _ = airlock_pipeline::executor::remove_work_dir(&rebuilt.work_dir);
        match published {
            Ok(()) => {
                self.intake.built().insert(&accepted.built_key())?;
                eprintln!("trusted-builder: {}: done", field(name));
                Ok(Outcome::Built)
            }
            Err(e) => {
                let reason = format!("publishing failed (will retry): {e:#}");
                eprintln!("trusted-builder: {}: {}", field(name), field(&reason));
                tracing::error!(record = name, %reason, "publish failed");
                self.log(
                    name,
                    Decision::Refused {
                        subject: Some(subject),
                        reason,
                    },
                )?;
                Ok(Outcome::Retry)
            }
        }
    }
}

/// `trusted-builder serve`: loads `config_path`, then polls (or, with `once`, takes what is
/// there and returns). Stops on SIGINT or SIGTERM between two records.
pub async fn serve(config_path: &Path, once: bool) -> anyhow::Result<()> {
    let config = BuilderConfig::load(config_path)?;
    let mut server = Server::open(config).await?;
    eprintln!(
        "trusted-builder: serving (no listening port); outbox {}, log {}",
        server.outbox.describe(),
        server.audit_path().display()
    );
    let stop = CancellationToken::new();
    let watcher = crate::shutdown::cancel_on_signal(stop.clone(), "trusted-builder");
    let result = server.run(once, stop.clone()).await;
    stop.cancel();
    let _ = watcher.await;
    result
}

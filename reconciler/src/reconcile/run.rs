//! The reconciler process: fetch the environment repository, sync every environment, record
//! the sync; repeat on a timer or at once on `POST /hooks/env`. Also `plan` and `status`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use airlock_pipeline::source::SourceCache;
use anyhow::Context as _;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::admission::{AdmissionPolicy, RegistryVerifier, load_public_keys};
use super::config::{ReconcilerConfig, TargetKind};
use super::desired::{DesiredState, read_desired};
use super::execute::execute_namespace;
use super::history::{self, SYNC_RECORD_VERSION, SyncRecord};
use super::hook::{HOOK_LIMITS, serve_hook};
use super::inventory::{Inventory, Member};
use super::manifest::ObjectKey;
use super::plan::{NamespacePlan, SyncContext, plan_environment};
use super::target::kubernetes::KubernetesTarget;
use super::target::podman::PodmanTarget;
use super::target::{Deleted, Health, Observed, Target, TargetError};
use airlock_verify::oci::Registry;

/// The target of one environment.
pub enum AnyTarget {
    /// Podman on this machine.
    Podman(PodmanTarget),
    /// A Kubernetes cluster.
    Kubernetes(KubernetesTarget),
}

macro_rules! dispatch {
    ($self:ident, $t:ident => $e:expr) => {
        match $self {
            AnyTarget::Podman($t) => $e,
            AnyTarget::Kubernetes($t) => $e,
        }
    };
}

impl Target for AnyTarget {
    fn unsupported(&self, key: &ObjectKey) -> Option<String> {
        dispatch!(self, t => t.unsupported(key))
    }
    async fn read_inventory(&self, env: &str, ns: &str) -> Result<Inventory, TargetError> {
        dispatch!(self, t => t.read_inventory(env, ns).await)
    }
    async fn write_inventory(&self, inventory: &Inventory) -> Result<(), TargetError> {
        dispatch!(self, t => t.write_inventory(inventory).await)
    }
    async fn observe(
        &self,
        ns: &str,
        key: &ObjectKey,
        desired: &Value,
        hash: &str,
    ) -> Result<Observed, TargetError> {
        dispatch!(self, t => t.observe(ns, key, desired, hash).await)
    }
    async fn apply(
        &self,
        ns: &str,
        key: &ObjectKey,
        desired: &Value,
        hash: &str,
    ) -> Result<(), TargetError> {
        dispatch!(self, t => t.apply(ns, key, desired, hash).await)
    }
    async fn delete(&self, ns: &str, member: &Member) -> Result<Deleted, TargetError> {
        dispatch!(self, t => t.delete(ns, member).await)
    }
    async fn health(&self, ns: &str, key: &ObjectKey) -> Result<Health, TargetError> {
        dispatch!(self, t => t.health(ns, key).await)
    }
}

/// A loaded reconciler: config, policy, verifier, one target per environment.
pub struct Reconciler {
    config: ReconcilerConfig,
    cache: SourceCache,
    policy: AdmissionPolicy,
    verifier: RegistryVerifier,
    targets: Vec<(String, AnyTarget)>,
    /// The last recorded sync, read once at start and kept as each sync is appended: the
    /// history file only grows, and every sync needs just its tail.
    last: std::sync::Mutex<Option<SyncRecord>>,
}

impl Reconciler {
    /// Loads keys, policy and targets. A Kubernetes target reads the usual kubeconfig or the
    /// in-cluster service account.
    pub async fn open(config: ReconcilerConfig) -> anyhow::Result<Self> {
        let mut targets = Vec::new();
        for (env, e) in &config.environments {
            let target = match e.target {
                TargetKind::Podman => AnyTarget::Podman(PodmanTarget::new(
                    &config.podman,
                    config.data_dir.join("podman"),
                )?),
                TargetKind::Kubernetes => {
                    let client = match &e.kube_context {
                        None => kube::Client::try_default().await.context(
                            "could not configure the Kubernetes client (kubeconfig or in-cluster)",
                        )?,
                        Some(context) => {
                            let options = kube::config::KubeConfigOptions {
                                context: Some(context.clone()),
                                ..Default::default()
                            };
                            let kc = kube::Config::from_kubeconfig(&options).await.with_context(
                                || format!("could not load kubeconfig context {context:?}"),
                            )?;
                            kube::Client::try_from(kc)?
                        }
                    };
                    AnyTarget::Kubernetes(KubernetesTarget::new(client))
                }
            };
            targets.push((env.clone(), target));
        }
        Self::with_targets(config, targets)
    }

    /// A reconciler over given targets (one per configured environment), for tests and
    /// benchmarks that drive a scripted Kubernetes API.
    pub fn with_targets(
        config: ReconcilerConfig,
        targets: Vec<(String, AnyTarget)>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("could not create {}", config.data_dir.display()))?;
        let keys = load_public_keys(&config.trusted_keys).map_err(anyhow::Error::msg)?;
        let policy = AdmissionPolicy::load(config.admission_policy.as_deref())?;
        let registry = Registry::new(&config.registry.config())?;
        let last = history::read_last(&config.data_dir, 1)
            .with_context(|| format!("could not read {}", history::HISTORY_FILE))?
            .pop();
        Ok(Reconciler {
            last: std::sync::Mutex::new(last),
            cache: SourceCache::new(config.data_dir.join("mirror")),
            verifier: RegistryVerifier::new(registry, keys),
            policy,
            targets,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ReconcilerConfig {
        &self.config
    }

    /// Fetches the branch head and reads the desired state of every configured environment.
    pub async fn fetch_desired(&self) -> anyhow::Result<DesiredState> {
        let cache = self.cache.clone();
        let repo = self.config.environment_repo.clone();
        let envs: Vec<String> = self.config.environments.keys().cloned().collect();
        tokio::task::spawn_blocking(move || -> anyhow::Result<DesiredState> {
            let rev = format!("refs/heads/{}", repo.branch);
            let (mirror, commit) = cache
                .fetch_rev(&repo.url, &rev)
                .with_context(|| format!("could not fetch {rev} of the environment repository"))?;
            let names: Vec<&str> = envs.iter().map(String::as_str).collect();
            Ok(read_desired(&mirror, &commit, &names)?)
        })
        .await?
    }

    fn context<'a>(
        &'a self,
        target: &'a AnyTarget,
        last_sync: Option<&'a SyncRecord>,
    ) -> SyncContext<'a, AnyTarget, RegistryVerifier> {
        SyncContext {
            config: &self.config,
            target,
            verifier: &self.verifier,
            policy: &self.policy,
            last_sync,
        }
    }

    /// The last recorded sync (what `requires_healthy_in` is judged against).
    fn last_sync(&self) -> Option<SyncRecord> {
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// What a sync would do, touching nothing.
    pub async fn plan(&self) -> anyhow::Result<(String, Vec<NamespacePlan>)> {
        let desired = self.fetch_desired().await?;
        let last = self.last_sync();
        let mut out = Vec::new();
        for (env, target) in &self.targets {
            out.extend(
                plan_environment(&self.context(target, last.as_ref()), env, &desired).await?,
            );
        }
        Ok((desired.commit, out))
    }

    /// One sync of every environment, appended to the history.
    pub async fn sync_once(&self, trigger: &str) -> anyhow::Result<SyncRecord> {
        let started_at = now();
        let desired = self.fetch_desired().await?;
        let last = self.last_sync();
        let mut namespaces = Vec::new();
        for (env, target) in &self.targets {
            for plan in
                plan_environment(&self.context(target, last.as_ref()), env, &desired).await?
            {
                namespaces.push(execute_namespace(target, plan, &desired.commit).await);
            }
        }
        let record = SyncRecord {
            version: SYNC_RECORD_VERSION,
            started_at,
            finished_at: now(),
            commit: desired.commit,
            trigger: trigger.to_owned(),
            namespaces,
        };
        history::append(&self.config.data_dir, &record)
            .with_context(|| format!("could not append to {}", history::HISTORY_FILE))?;
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(record.clone());
        Ok(record)
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One line per sync for the terminal, then one per refusal.
pub fn describe(record: &SyncRecord) -> String {
    let (applied, pruned, refused, failed) = record.counts();
    let short = record.commit.get(..12).unwrap_or(&record.commit);
    let mut out = format!(
        "sync {short} ({}): {applied} applied, {pruned} pruned, {refused} refused, {failed} failed",
        record.trigger
    );
    for ns in &record.namespaces {
        for c in &ns.applied {
            out.push_str(&format!(
                "\n  {}/{}: {} {}",
                ns.environment, ns.namespace, c.action, c.object
            ));
            if let Some(d) = &c.drift {
                out.push_str(&format!(" (drift: {d})"));
            }
        }
        for p in &ns.pruned {
            out.push_str(&format!(
                "\n  {}/{}: pruned {p}",
                ns.environment, ns.namespace
            ));
        }
        for r in &ns.refused {
            out.push_str(&format!(
                "\n  {}/{}: REFUSED {} [{}]: {}",
                ns.environment,
                ns.namespace,
                r.object,
                r.location,
                r.reasons.join("; ")
            ));
        }
        for f in &ns.failed {
            out.push_str(&format!(
                "\n  {}/{}: FAILED {}: {}",
                ns.environment, ns.namespace, f.object, f.error
            ));
        }
    }
    out
}

/// `reconcile status`: the last `n` syncs and the health after the latest.
pub fn status(config: &ReconcilerConfig, n: usize) -> anyhow::Result<String> {
    let records = history::read_last(&config.data_dir, n)?;
    let Some(last) = records.last() else {
        return Ok("no sync recorded yet\n".into());
    };
    let mut out = String::new();
    for r in &records {
        out.push_str(&format!("{}  {}\n", r.finished_at, describe(r)));
    }
    out.push_str(&format!("\nhealth after {}:\n", last.commit));
    for ns in &last.namespaces {
        for (object, h) in &ns.health {
            let state = match &h.health {
                Health::Healthy => "healthy".to_owned(),
                Health::Progressing(d) => format!("progressing: {d}"),
                Health::Degraded(d) => format!("DEGRADED: {d}"),
            };
            out.push_str(&format!(
                "  {}/{} {object}: {state}  {}\n",
                ns.environment,
                ns.namespace,
                h.images.join(", ")
            ));
        }
    }
    Ok(out)
}

/// `airlock-reconciler reconcile`: sync now, then on every poll or hook until stopped; with
/// `once`, sync once and return (non-zero when anything was refused or failed).
pub async fn run(config_path: &Path, once: bool) -> anyhow::Result<()> {
    let config = ReconcilerConfig::load(config_path)?;
    // One reconciler per data directory: two would apply and prune over each other.
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("could not create {}", config.data_dir.display()))?;
    let lock_path = config.data_dir.join("reconciler.lock");
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("could not open {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        anyhow::bail!(
            "another reconciler is running on {} (it holds {})",
            config.data_dir.display(),
            lock_path.display()
        );
    }
    let reconciler = Reconciler::open(config).await?;
    if once {
        let record = reconciler.sync_once("once").await?;
        println!("{}", describe(&record));
        let (_, _, refused, failed) = record.counts();
        if refused + failed > 0 {
            anyhow::bail!("{refused} object(s) refused, {failed} failed");
        }
        return Ok(());
    }
    let stop = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    let config = reconciler.config().clone();
    if let Some(listen) = &config.listen {
        let token = config.hook_token.as_ref().map(|s| s.load()).transpose()?;
        if token.as_ref().is_some_and(|t| t.expose().is_empty()) {
            anyhow::bail!("hook_token is empty: the hook would accept anyone");
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("could not listen on {listen}"))?;
        let (wake, stopped) = (wake.clone(), stop.clone());
        eprintln!("airlock-reconciler reconcile: hook on http://{listen}/hooks/env");
        tokio::spawn(async move {
            let _ = serve_hook(listener, wake, token, HOOK_LIMITS, stopped).await;
        });
    }
    // serve_loop returns only once `stop` is cancelled, when this task is done too.
    let _signals =
        airlock_pipeline::shutdown::cancel_on_signal(stop.clone(), "airlock-reconciler reconcile");
    serve_loop(&reconciler, &wake, &stop, |record| {
        println!("{}", describe(record))
    })
    .await;
    Ok(())
}

/// Syncs now, then after every poll interval or wake-up, until `stop`; `report` sees each
/// sync. A failed sync (repository unreachable, say) is reported and retried next time.
pub async fn serve_loop(
    reconciler: &Reconciler,
    wake: &Notify,
    stop: &CancellationToken,
    mut report: impl FnMut(&SyncRecord),
) {
    let interval = Duration::from_secs(reconciler.config().poll_interval_secs);
    let mut trigger = "start";
    loop {
        match reconciler.sync_once(trigger).await {
            Ok(record) => report(&record),
            Err(e) => eprintln!("airlock-reconciler reconcile: sync failed: {e:#}"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wake.notified() => trigger = "hook",
            _ = tokio::time::sleep(interval) => trigger = "poll",
        }
    }
}

//! `reconciler.toml`: the reconciler's whole configuration, strict like `builder.toml` (an
//! unknown key is an error). It holds trusted PUBLIC keys and target access, never a signing key.
//!
//! ```toml
//! data_dir = "/var/lib/airlock-reconciler"   # env-repo mirror, inventories, sync history
//! trusted_keys = ["/etc/airlock/cosign.pub"]  # images must be signed by one of these
//! poll_interval_secs = 30                     # default 30
//! listen = "127.0.0.1:8480"                   # POST /hooks/env syncs at once; omit for no port
//! hook_token = { file = "/etc/airlock/env-hook.token" }    # required with listen
//! # admission_policy = "/etc/airlock/admission.rego"       # default: embedded policies/admission.rego
//! # promotion_policy = "/etc/airlock/promotion.rego"       # default: embedded policies/promotion.rego
//!
//! [environment_repo]
//! url = "git://git.internal/environments"
//! branch = "main"
//!
//! [registry]
//! insecure = ["127.0.0.1:5000"]
//!
//! [environments.staging]
//! target = "podman"                           # or "kubernetes"
//! [environments.staging.namespaces.shop]
//! allowed_sources = ["git://git.internal/sample-service"]
//! # allow_cluster_scoped = false
//!
//! [podman]                                    # only for podman targets
//! # containers_conf = "/etc/airlock/containers.conf"
//! # tls_verify = true
//! ```
//!
//! Relative paths are taken relative to the directory holding the config file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use airlock_verify::secret::SecretSource;

fn default_poll() -> u64 {
    30
}

fn default_branch() -> String {
    "main".to_owned()
}

fn default_true() -> bool {
    true
}

/// The `reconciler.toml` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcilerConfig {
    /// Env-repo mirror, inventories (podman), sync history and status.
    pub data_dir: PathBuf,
    /// cosign public keys (PEM); an image must carry a signature and attestation by one.
    pub trusted_keys: Vec<PathBuf>,
    /// Seconds between two polls of the environment repository.
    #[serde(default = "default_poll")]
    pub poll_interval_secs: u64,
    /// Address of the hook listener (`POST /hooks/env`); none when absent.
    #[serde(default)]
    pub listen: Option<String>,
    /// Bearer token the hook must carry; required when `listen` is set.
    #[serde(default)]
    pub hook_token: Option<SecretSource>,
    /// A Rego admission policy replacing the embedded one.
    #[serde(default)]
    pub admission_policy: Option<PathBuf>,
    /// A Rego promotion policy replacing the embedded one.
    #[serde(default)]
    pub promotion_policy: Option<PathBuf>,
    /// The environment repository.
    pub environment_repo: EnvironmentRepo,
    /// Registry settings.
    #[serde(default)]
    pub registry: airlock_verify::oci::RegistrySection,
    /// Environments reconciled by this process, by name (`environments/<name>/` in the repo).
    pub environments: BTreeMap<String, EnvironmentConfig>,
    /// Podman settings (only read when an environment targets podman).
    #[serde(default)]
    pub podman: PodmanConfig,
}

/// `[environment_repo]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentRepo {
    /// Git URL (`git://`, `file://`, `http(s)://` or a path).
    pub url: String,
    /// Branch whose head is the desired state.
    #[serde(default = "default_branch")]
    pub branch: String,
}

/// Which kind of target an environment is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// Pods on this machine through `podman kube play`.
    Podman,
    /// A Kubernetes cluster through its API (kubeconfig or in-cluster config).
    Kubernetes,
}

/// `[environments.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentConfig {
    /// Where the environment's objects go.
    pub target: TargetKind,
    /// For a Kubernetes target: the kubeconfig context (cluster) to use; without one, the
    /// current context or the in-cluster service account.
    #[serde(default)]
    pub kube_context: Option<String>,
    /// The namespaces this environment may hold; a folder not listed here is refused whole.
    pub namespaces: BTreeMap<String, NamespaceConfig>,
    /// Admit an image here only once it ran healthily (settled) in that environment, as this
    /// reconciler last saw it, or when it already runs here. Enforced by admission, so a direct
    /// push to the environment repository cannot skip it (e.g. production requires staging).
    #[serde(default)]
    pub requires_healthy_in: Option<String>,
}

/// `[environments.NAME.namespaces.NS]`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    /// Source repositories (as the provenance names them) whose images may run here.
    pub allowed_sources: Vec<String>,
    /// Admit cluster-scoped kinds (Namespace, ClusterRole, ...) from this folder.
    #[serde(default)]
    pub allow_cluster_scoped: bool,
    /// Admit pod specs that reach into the host (privileged, host namespaces, hostPath,
    /// added capabilities, host ports). Off: anyone who can write the environment repository
    /// could otherwise get a root shell on the target with any signed image.
    #[serde(default)]
    pub allow_host_access: bool,
    /// Kinds Airlock does not know (custom resources) admitted here anyway, by `kind`. Their
    /// images, if any, are NOT checked: list only kinds known to hold none.
    #[serde(default)]
    pub allowed_kinds: Vec<String>,
    /// Podman networks the `airlock.dev/podman-network` annotation may choose (default: none).
    #[serde(default)]
    pub podman_networks: Vec<String>,
}

/// `[podman]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodmanConfig {
    /// `CONTAINERS_CONF` for every podman call (runtime, ulimits).
    #[serde(default)]
    pub containers_conf: Option<PathBuf>,
    /// Verify TLS when pulling; set false only for the registries listed as insecure.
    #[serde(default = "default_true")]
    pub tls_verify: bool,
    /// The podman binary.
    #[serde(default)]
    pub binary: Option<PathBuf>,
}

impl Default for PodmanConfig {
    fn default() -> Self {
        PodmanConfig {
            containers_conf: None,
            tls_verify: true,
            binary: None,
        }
    }
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ConfigError {
    /// The config file.
    pub path: PathBuf,
    /// What is wrong (with the TOML position where there is one).
    pub message: String,
}

impl ReconcilerConfig {
    /// Reads and checks `path`; relative paths inside are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(err)
    }

    /// Parses the text of a config file; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let mut config: ReconcilerConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        config.resolve(base);
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.trusted_keys.is_empty() {
            return Err("trusted_keys is empty: no image could ever be admitted".into());
        }
        if self.environments.is_empty() {
            return Err("no [environments.NAME] section: nothing would be reconciled".into());
        }
        if self.poll_interval_secs == 0 {
            return Err("poll_interval_secs must be at least 1".into());
        }
        if self.listen.is_some() && self.hook_token.is_none() {
            return Err(
                "listen is set but hook_token is not: the hook must be authenticated".into(),
            );
        }
        // One cluster, one owner per namespace: two environments applying into the same
        // namespace of the same cluster would overwrite each other and share an inventory.
        let mut kube_namespaces: BTreeMap<(Option<&str>, &str), &str> = BTreeMap::new();
        for (env, e) in &self.environments {
            if e.target == TargetKind::Kubernetes {
                for ns in e.namespaces.keys() {
                    if let Some(other) =
                        kube_namespaces.insert((e.kube_context.as_deref(), ns), env)
                    {
                        return Err(format!(
                            "namespace {ns:?} is in Kubernetes environments {other:?} and {env:?} on the same cluster (kube_context)"
                        ));
                    }
                }
            }
        }
        for (env, e) in &self.environments {
            if let Some(first) = &e.requires_healthy_in
                && (first == env || !self.environments.contains_key(first))
            {
                return Err(format!(
                    "environments.{env}.requires_healthy_in = {first:?} must name another environment of this reconciler"
                ));
            }
        }
        let mut podman_namespaces: BTreeMap<&str, &str> = BTreeMap::new();
        for (env, e) in &self.environments {
            check_name("environment", env)?;
            for ns in e.namespaces.keys() {
                check_name("namespace", ns)?;
                // Podman pods are named <namespace>-<name> on one host: two environments
                // sharing a namespace there would fight over the same pods.
                if e.target == TargetKind::Podman
                    && let Some(other) = podman_namespaces.insert(ns, env)
                {
                    return Err(format!(
                        "namespace {ns:?} is in podman environments {other:?} and {env:?}; \
                             on one host each namespace may belong to one environment"
                    ));
                }
            }
        }
        // Pods are named <namespace>-<name>: with namespaces `shop` and `shop-prod`, the pod
        // `shop-prod-web` could be either's. Refuse such pairs so every pod name has one owner.
        for a in podman_namespaces.keys() {
            for b in podman_namespaces.keys() {
                if b.starts_with(&format!("{a}-")) {
                    return Err(format!(
                        "podman namespaces {a:?} and {b:?}: pod names <namespace>-<name> would be ambiguous; rename one"
                    ));
                }
            }
        }
        Ok(())
    }

    fn resolve(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut self.data_dir);
        self.trusted_keys.iter_mut().for_each(abs);
        for p in [&mut self.admission_policy, &mut self.promotion_policy]
            .into_iter()
            .flatten()
        {
            abs(p);
        }
        if let Some(SecretSource::File(p)) = self.hook_token.as_mut() {
            abs(p);
        }
        if let Some(p) = self.podman.containers_conf.as_mut() {
            abs(p);
        }
    }
}

/// Environment and namespace names become path segments and pod names: DNS-1123 labels only.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?} is not a DNS label (lowercase letters, digits, '-', at most 63)"
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const BASE: &str = r#"
data_dir = "state"
trusted_keys = ["cosign.pub"]
[environment_repo]
url = "git://127.0.0.1/env"
[environments.staging]
target = "podman"
[environments.staging.namespaces.shop]
allowed_sources = ["git://127.0.0.1/svc"]
"#;

    #[test]
    fn parses_and_resolves_relative_paths() {
        let c = ReconcilerConfig::parse(BASE, Path::new("/etc/airlock")).unwrap();
        assert_eq!(c.data_dir, Path::new("/etc/airlock/state"));
        assert_eq!(c.trusted_keys[0], Path::new("/etc/airlock/cosign.pub"));
        assert_eq!(c.environment_repo.branch, "main");
        assert_eq!(c.poll_interval_secs, 30);
        assert!(c.podman.tls_verify);
    }

    /// Issue 26: the hook never listens unauthenticated.
    #[test]
    fn a_hook_without_a_token_is_refused() {
        let listening = format!("listen = \"127.0.0.1:0\"\n{BASE}");
        let e = ReconcilerConfig::parse(&listening, Path::new("/")).unwrap_err();
        assert!(e.contains("hook_token is not"), "{e}");
        // Control: with a token it is accepted.
        let with_token =
            format!("listen = \"127.0.0.1:0\"\nhook_token = {{ file = \"hook.token\" }}\n{BASE}");
        ReconcilerConfig::parse(&with_token, Path::new("/")).unwrap();
    }

    #[test]
    fn refuses_typos_empty_keys_bad_names_and_shared_podman_namespaces() {
        let typo = BASE
            .replace("poll_interval_secs", "x")
            .replace("data_dir", "data_dri");
        assert!(ReconcilerConfig::parse(&typo, Path::new("/")).is_err());
        let no_keys = BASE.replace(r#"["cosign.pub"]"#, "[]");
        let e = ReconcilerConfig::parse(&no_keys, Path::new("/")).unwrap_err();
        assert!(e.contains("trusted_keys"), "{e}");
        let bad = BASE.replace("namespaces.shop", "namespaces.\"../etc\"");
        let e = ReconcilerConfig::parse(&bad, Path::new("/")).unwrap_err();
        assert!(e.contains("not a DNS label"), "{e}");
        let shared = format!(
            "{BASE}\n[environments.prod]\ntarget = \"podman\"\n[environments.prod.namespaces.shop]\nallowed_sources = []\n"
        );
        let e = ReconcilerConfig::parse(&shared, Path::new("/")).unwrap_err();
        assert!(e.contains("one environment"), "{e}");
        let prefix = format!(
            "{BASE}\n[environments.prod]\ntarget = \"podman\"\n[environments.prod.namespaces.shop-prod]\nallowed_sources = []\n"
        );
        let e = ReconcilerConfig::parse(&prefix, Path::new("/")).unwrap_err();
        assert!(e.contains("ambiguous"), "{e}");
        let kube = |ctx: &str| {
            format!(
                "{}\n[environments.a]\ntarget = \"kubernetes\"\n[environments.a.namespaces.x]\nallowed_sources = []\n[environments.b]\ntarget = \"kubernetes\"\n{ctx}[environments.b.namespaces.x]\nallowed_sources = []\n",
                BASE
            )
        };
        let e = ReconcilerConfig::parse(&kube(""), Path::new("/")).unwrap_err();
        assert!(e.contains("same cluster"), "{e}");
        assert!(
            ReconcilerConfig::parse(&kube("kube_context = \"prod\"\n"), Path::new("/")).is_ok()
        );
    }
}

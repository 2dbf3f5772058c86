//! `builder.toml`: the trusted builder's whole configuration, typed and strict (an unknown key is
//! an error, so a typo never silently falls back to a default).
//!
//! ```toml
//! data_dir = "/var/lib/airlock-builder"       # mirrors, built state, processed names, decision log
//! outbox_dir = "/srv/airlock/outbox"          # where the CI writes pass records (only read)
//! origin_keys = ["/etc/airlock/ci-origin.pub"] # hex Ed25519 public keys of trusted CI origins
//! builder_id = "https://airlock.example/trusted-builder/v1"
//! strict_reproducibility = true               # refuse when rebuilt outputs differ from CI's
//! poll_interval_secs = 10                     # default 10
//! work_dir = "/var/tmp"                       # default; rebuild work dirs (sandbox-traversable)
//! # intake_policy = "/etc/airlock/intake.rego" # default: the embedded policies/intake.rego
//!
//! [registry]
//! insecure = ["127.0.0.1:5000"]               # plain HTTP only for these
//!
//! [images]                                    # the images jobs run in
//! registry = "127.0.0.1:5000"                 # the builder's own: every job image is pulled
//!                                             # from here (same path and digest as the job names)
//! # cache_dir = "/var/tmp/airlock/builder-images"  # the default (never CI's cache)
//! # host_mode = false                         # the default: a job without an image is refused
//!
//! [signing]
//! backend = "file"
//! key = "/etc/airlock/cosign.key"
//! password = { env = "COSIGN_PASSWORD" }
//!
//! [projects.svc]
//! git_url = "git://git.internal/svc"
//! protected_refs = ["refs/heads/main", "refs/tags/v*"]
//! image_repository = "127.0.0.1:5000/greet"
//! # artifacts_repository = "127.0.0.1:5000/greet-artifacts"  # the default
//! ```
//!
//! Relative paths are taken relative to the directory holding the config file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::intake::{BuilderProject, BuilderProjects};
use crate::sign::{SecretSource, SigningConfig};

fn default_poll() -> u64 {
    10
}

fn default_work_dir() -> PathBuf {
    PathBuf::from("/var/tmp")
}

/// The `builder.toml` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuilderConfig {
    /// The builder's own state: Git mirrors, built state, processed names, decision log.
    pub data_dir: PathBuf,
    /// The directory the CI writes pass records into; the builder only reads it.
    pub outbox_dir: PathBuf,
    /// Files holding the hex Ed25519 public keys of the CI origins whose records are read.
    pub origin_keys: Vec<PathBuf>,
    /// SLSA `builder.id` written into provenance.
    pub builder_id: String,
    /// Refuse a record whose rebuilt outputs differ from CI's.
    pub strict_reproducibility: bool,
    /// Seconds between two looks at the outbox (without `--once`).
    #[serde(default = "default_poll")]
    pub poll_interval_secs: u64,
    /// Where rebuild work directories are made; the sandbox user must be able to traverse it.
    #[serde(default = "default_work_dir")]
    pub work_dir: PathBuf,
    /// A Rego intake policy replacing the embedded one.
    #[serde(default)]
    pub intake_policy: Option<PathBuf>,
    /// Registry settings.
    #[serde(default)]
    pub registry: RegistrySection,
    /// Where the images jobs run in come from.
    #[serde(default)]
    pub images: ImagesSection,
    /// The signing key.
    pub signing: SigningConfig,
    /// The projects built, by name.
    pub projects: BTreeMap<String, ServeProject>,
}

pub use airlock_verify::oci::RegistrySection;

/// `[images]`: the images jobs are rebuilt in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesSection {
    /// The builder's own registry (HOST:PORT). Every job image is pulled from here, by the path
    /// and digest the job names, never from the registry the job names (which the CI side
    /// chose). Unset: a job that names an image is refused. Plain HTTP if listed in
    /// `[registry] insecure`.
    #[serde(default)]
    pub registry: Option<String>,
    /// Where unpacked images are kept (sandbox-traversable). Default `/var/tmp/airlock/builder-images`.
    #[serde(default = "default_image_cache")]
    pub cache_dir: PathBuf,
    /// Whether a job that names no image may be rebuilt on this host's system directories.
    /// Default false: then CI's and the builder's toolchains could differ unseen.
    #[serde(default)]
    pub host_mode: bool,
}

fn default_image_cache() -> PathBuf {
    PathBuf::from(airlock_pipeline::image::cache::DEFAULT_BUILDER_IMAGE_CACHE)
}

impl Default for ImagesSection {
    fn default() -> Self {
        ImagesSection {
            registry: None,
            cache_dir: default_image_cache(),
            host_mode: false,
        }
    }
}

impl BuilderConfig {
    /// The sandbox the builder rebuilds in: images only from its own registry; host mode only if
    /// configured.
    pub fn sandbox_config(&self) -> airlock_pipeline::executor::SandboxConfig {
        use airlock_pipeline::executor::{HostMode, SandboxConfig};
        SandboxConfig {
            host_mode: if self.images.host_mode {
                HostMode::Allow
            } else {
                HostMode::Deny
            },
            images: airlock_pipeline::image::ImageSettings {
                cache_dir: self.images.cache_dir.clone(),
                mirror: self.images.registry.clone(),
                require_mirror: true,
                insecure: self.registry.insecure.clone(),
                ..airlock_pipeline::image::ImageSettings::default()
            },
            ..SandboxConfig::default()
        }
    }
}

/// `[projects.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeProject {
    /// The canonical Git URL: the only place the builder fetches the project from.
    pub git_url: String,
    /// Globs of full ref names whose history may be built.
    pub protected_refs: Vec<String>,
    /// Where images go, without tag: `REGISTRY/REPOSITORY`.
    pub image_repository: String,
    /// Where artifacts go; `<image_repository>-artifacts` when not given.
    #[serde(default)]
    pub artifacts_repository: Option<String>,
}

impl ServeProject {
    /// The artifacts repository (configured or derived).
    pub fn artifacts_repository(&self) -> String {
        self.artifacts_repository
            .clone()
            .unwrap_or_else(|| format!("{}-artifacts", self.image_repository))
    }
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file does not parse, has unknown or missing keys, or a value that cannot work.
    #[error("{}: {problem}", path.display())]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        problem: ConfigProblem,
    },
}

/// What is wrong inside a builder.toml.
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    /// Not TOML, an unknown key, a missing one, a wrong type (with the TOML position).
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    /// No CI origin key: no record could ever be accepted.
    #[error("origin_keys is empty: no CI origin would be trusted")]
    NoOriginKeys,
    /// No project: nothing would be built.
    #[error("no [projects.NAME] section: nothing would be built")]
    NoProjects,
    /// The poll interval is zero.
    #[error("poll_interval_secs must be at least 1")]
    ZeroPollInterval,
    /// The builder id is empty.
    #[error("builder_id is empty")]
    EmptyBuilderId,
    /// An image repository carries a tag or digest.
    #[error(
        "projects.{project}.image_repository {repository:?} must be REGISTRY/REPOSITORY without tag or digest"
    )]
    TaggedRepository {
        /// The project.
        project: String,
        /// The configured repository.
        repository: String,
    },
    /// A project protects no ref.
    #[error("projects.{0}.protected_refs is empty")]
    NoProtectedRefs(String),
}

impl BuilderConfig {
    /// Reads and checks `path`; relative paths inside are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|problem| ConfigError::Invalid {
            path: path.to_path_buf(),
            problem,
        })
    }

    /// Parses the text of a config file; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigProblem> {
        let mut config: BuilderConfig = toml::from_str(text)?;
        config.check()?;
        config.resolve(base);
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigProblem> {
        if self.origin_keys.is_empty() {
            return Err(ConfigProblem::NoOriginKeys);
        }
        if self.projects.is_empty() {
            return Err(ConfigProblem::NoProjects);
        }
        if self.poll_interval_secs == 0 {
            return Err(ConfigProblem::ZeroPollInterval);
        }
        if self.builder_id.trim().is_empty() {
            return Err(ConfigProblem::EmptyBuilderId);
        }
        for (name, p) in &self.projects {
            if p.image_repository.contains('@') || last_segment_has_tag(&p.image_repository) {
                return Err(ConfigProblem::TaggedRepository {
                    project: name.clone(),
                    repository: p.image_repository.clone(),
                });
            }
            if p.protected_refs.is_empty() {
                return Err(ConfigProblem::NoProtectedRefs(name.clone()));
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
        abs(&mut self.outbox_dir);
        abs(&mut self.work_dir);
        abs(&mut self.images.cache_dir);
        self.origin_keys.iter_mut().for_each(abs);
        if let Some(p) = self.intake_policy.as_mut() {
            abs(p);
        }
        match &mut self.signing {
            SigningConfig::File { key, password } => {
                abs(key);
                if let SecretSource::File(p) = password {
                    abs(p);
                }
            }
            SigningConfig::VaultTransit { token, .. } => {
                if let SecretSource::File(p) = token {
                    abs(p);
                }
            }
        }
    }

    /// The projects as intake sees them.
    pub fn intake_projects(&self) -> BuilderProjects {
        self.projects
            .iter()
            .map(|(name, p)| {
                (
                    name.clone(),
                    BuilderProject {
                        git_url: p.git_url.clone(),
                        protected_refs: p.protected_refs.clone(),
                    },
                )
            })
            .collect()
    }
}

/// Whether the last path segment carries a `:tag` (a `:` in the first segment is a port).
fn last_segment_has_tag(repository: &str) -> bool {
    match repository.rsplit_once('/') {
        Some((_, last)) => last.contains(':'),
        None => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
data_dir = "data"
outbox_dir = "/srv/outbox"
origin_keys = ["ci.pub"]
builder_id = "https://airlock.example/tb"
strict_reproducibility = true

[registry]
insecure = ["127.0.0.1:5000"]

[signing]
backend = "file"
key = "cosign.key"
password = { file = "pw" }

[projects.svc]
git_url = "git://127.0.0.1/svc"
protected_refs = ["refs/heads/main"]
image_repository = "127.0.0.1:5000/greet"
"#;

    #[test]
    fn parses_with_defaults_and_resolves_relative_paths() {
        let c = BuilderConfig::parse(GOOD, Path::new("/etc/airlock")).unwrap();
        assert_eq!(c.data_dir, Path::new("/etc/airlock/data"));
        assert_eq!(c.outbox_dir, Path::new("/srv/outbox"));
        assert_eq!(c.origin_keys, vec![PathBuf::from("/etc/airlock/ci.pub")]);
        assert_eq!(c.poll_interval_secs, 10);
        assert_eq!(c.work_dir, Path::new("/var/tmp"));
        assert_eq!(
            c.signing,
            SigningConfig::File {
                key: "/etc/airlock/cosign.key".into(),
                password: SecretSource::File("/etc/airlock/pw".into()),
            }
        );
        assert_eq!(
            c.projects["svc"].artifacts_repository(),
            "127.0.0.1:5000/greet-artifacts"
        );
        assert_eq!(c.intake_projects()["svc"].git_url, "git://127.0.0.1/svc");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_file_name() {
        let typo = GOOD.replace("strict_reproducibility", "strict_reproducability");
        let e = BuilderConfig::parse(&typo, Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("strict_reproducability"), "{e}");
        let tagged = GOOD.replace("5000/greet\"", "5000/greet:latest\"");
        let e = BuilderConfig::parse(&tagged, Path::new("/")).unwrap_err();
        assert!(matches!(e, ConfigProblem::TaggedRepository { .. }), "{e}");
        assert!(e.to_string().contains("without tag"), "{e}");
        let no_keys = GOOD.replace("[\"ci.pub\"]", "[]");
        assert!(matches!(
            BuilderConfig::parse(&no_keys, Path::new("/")),
            Err(ConfigProblem::NoOriginKeys)
        ));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("builder.toml");
        std::fs::write(&path, typo).unwrap();
        let e = BuilderConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("builder.toml"), "{e}");
        assert!(e.contains("strict_reproducability"), "{e}");
    }
}

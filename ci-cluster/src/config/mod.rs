//! `ci.toml`: what `ci-cluster serve` listens on, where it keeps its data,
//! and the projects it serves. Secrets are named (file or environment
//! variable), never written in the file.

mod images;

pub use images::ImagesFile;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock_pipeline::executor::{JobCeilings, ceiling};
use airlock_pipeline::outputs::{
    CountLimit, DEFAULT_MAX_JOB_OUTPUTS, DEFAULT_MAX_JOB_OUTPUTS_SIZE, DEFAULT_MAX_OUTPUT_SIZE,
    DEFAULT_MAX_RUN_OUTPUTS, OutputLimits, RunOutputCount, SizeLimit,
};
use serde::{Deserialize, Deserializer};

use crate::event::Forge;
use crate::secret::{Secret, SecretError, SecretSource};

/// Largest config file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The config file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Database, artifacts, logs and mirrors live here.
    pub data_dir: PathBuf,
    /// Base URL of this server as reviewers reach it (links in reports). Default `http://{listen}`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Runs at once across all projects. Default 2.
    ///
    /// `0` means intake only: webhooks are authenticated and events stored
    /// (and their runs queued) as usual, but the runner claims nothing, so
    /// queued runs wait for a server started with a limit above 0. Used to
    /// measure intake alone (`benches/intake.rs`), or to keep accepting
    /// events while execution is paused.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Where pass records are written for the trusted builder. Default `{data_dir}/outbox`.
    #[serde(default)]
    pub outbox_dir: Option<PathBuf>,
    /// Bearer token for the admin API (manual runs, cancel, re-run).
    #[serde(default)]
    pub admin_token: Option<SecretSource>,
    /// The CI's ed25519 key that signs pass records (proves origin only). Created if missing.
    #[serde(default)]
    pub ci_key: Option<PathBuf>,
    /// Forge credentials.
    #[serde(default)]
    pub forges: ForgesFile,
    /// Output size caps and how long outputs are kept.
    #[serde(default)]
    pub artifacts: ArtifactsFile,
    /// Job images: cache, registries, host mode.
    #[serde(default)]
    pub images: ImagesFile,
    /// The most one job may ask for in its pipeline file.
    #[serde(default)]
    pub limits: LimitsFile,
    /// Bounds on HTTP clients (the webhook port is open to anyone).
    #[serde(default)]
    pub http: HttpFile,
    /// Projects served.
    #[serde(default)]
    pub projects: Vec<ProjectFile>,
}

fn default_concurrency() -> usize {
    2
}

/// `[http]`: bounds on clients of the server's port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    /// Connections open at once; one more is closed at accept. Default 512.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time for a request's headers, and then its body, to arrive; also how long an idle
    /// connection is kept. Default 30s.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: HumanDuration,
}

fn default_max_connections() -> usize {
    512
}
fn default_read_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl Default for HttpFile {
    fn default() -> Self {
        HttpFile {
            max_connections: default_max_connections(),
            read_timeout: default_read_timeout(),
        }
    }
}

/// `[limits]`: the most one job may ask for (a pipeline file is written by whoever opens a
/// change); a job over one is refused before it starts, with the setting named.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Longest `timeout`. Default 6h.
    #[serde(default = "default_max_timeout")]
    pub max_timeout: HumanDuration,
    /// Largest `resources.memory`. Default 16Gi.
    #[serde(default = "default_max_memory")]
    pub max_memory: ByteSize,
    /// Most `resources.pids`. Default 32768.
    #[serde(default = "default_max_pids")]
    pub max_pids: u32,
    /// Largest `resources.disk`. Default 100Gi.
    #[serde(default = "default_max_disk")]
    pub max_disk: ByteSize,
}

fn default_max_timeout() -> HumanDuration {
    HumanDuration(ceiling::DEFAULT_MAX_TIMEOUT)
}
fn default_max_memory() -> ByteSize {
    ByteSize(ceiling::DEFAULT_MAX_MEMORY_BYTES)
}
fn default_max_pids() -> u32 {
    ceiling::DEFAULT_MAX_PIDS
}
fn default_max_disk() -> ByteSize {
    ByteSize(ceiling::DEFAULT_MAX_DISK_BYTES)
}

impl Default for LimitsFile {
    fn default() -> Self {
        LimitsFile {
            max_timeout: default_max_timeout(),
            max_memory: default_max_memory(),
            max_pids: default_max_pids(),
            max_disk: default_max_disk(),
        }
    }
}

impl LimitsFile {
    /// The executor's ceilings.
    pub fn ceilings(&self) -> JobCeilings {
        JobCeilings {
            max_timeout: self.max_timeout.0,
            max_memory_bytes: self.max_memory.0,
            max_pids: self.max_pids,
            max_disk_bytes: self.max_disk.0,
        }
    }
}

/// `[artifacts]`: what a job may leave as outputs, and how long the artifact store keeps them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsFile {
    /// Largest single output file; a job with a larger one fails and stores nothing. Default 1Gi.
    #[serde(default = "default_max_output_size")]
    pub max_output_size: ByteSize,
    /// Largest total of one job's outputs. Default 4Gi.
    #[serde(default = "default_max_job_outputs_size")]
    pub max_job_outputs_size: ByteSize,
    /// Most output files of one job (default 1000, what a pass record can carry).
    #[serde(default = "default_max_job_outputs")]
    pub max_job_outputs: usize,
    /// Most output files of all the jobs of one run together. Default 10000.
    #[serde(default = "default_max_run_outputs")]
    pub max_run_outputs: usize,
    /// Outputs not referenced by any run that finished within this long are deleted.
    /// Default 30 days; `"off"`: no age limit (only `max_total_size` deletes).
    #[serde(default = "default_retention")]
    pub retention: Retention,
    /// When the store is larger, the outputs whose newest run is oldest go first — but never
    /// one of a queued or running run, nor one within `retention`. Default 50Gi.
    #[serde(default = "default_max_total_size")]
    pub max_total_size: ByteSize,
    /// The same for the number of stored files. Default 1000000.
    #[serde(default = "default_max_total_files")]
    pub max_total_files: usize,
    /// How often `serve` sweeps the store (and once at start). Default 1 hour.
    #[serde(default = "default_sweep_interval")]
    pub sweep_interval: HumanDuration,
}

impl Default for ArtifactsFile {
    fn default() -> Self {
        ArtifactsFile {
            max_output_size: default_max_output_size(),
            max_job_outputs_size: default_max_job_outputs_size(),
            max_job_outputs: default_max_job_outputs(),
            max_run_outputs: default_max_run_outputs(),
            retention: default_retention(),
            max_total_size: default_max_total_size(),
            max_total_files: default_max_total_files(),
            sweep_interval: default_sweep_interval(),
        }
    }
}

impl ArtifactsFile {
    /// The caps the engine enforces, named after these settings in the errors jobs get.
    pub fn output_limits(&self) -> OutputLimits {
        OutputLimits {
            max_file: Some(SizeLimit::new(
                self.max_output_size.0,
                "artifacts.max_output_size",
            )),
            max_total: Some(SizeLimit::new(
                self.max_job_outputs_size.0,
                "artifacts.max_job_outputs_size",
            )),
            max_files: Some(CountLimit::new(
                self.max_job_outputs,
                "artifacts.max_job_outputs",
            )),
            max_run_files: Some(RunOutputCount::new(CountLimit::new(
                self.max_run_outputs,
                "artifacts.max_run_outputs",
            ))),
            deadline: None,
        }
    }
}

fn default_max_output_size() -> ByteSize {
    ByteSize(DEFAULT_MAX_OUTPUT_SIZE)
}
fn default_max_run_outputs() -> usize {
    DEFAULT_MAX_RUN_OUTPUTS
}
fn default_max_total_files() -> usize {
    1_000_000
}
fn default_max_job_outputs() -> usize {
    DEFAULT_MAX_JOB_OUTPUTS
}
fn default_max_job_outputs_size() -> ByteSize {
    ByteSize(DEFAULT_MAX_JOB_OUTPUTS_SIZE)
}
fn default_retention() -> Retention {
    Retention(Some(Duration::from_secs(30 * 24 * 3600)))
}
fn default_max_total_size() -> ByteSize {
    ByteSize(50 << 30)
}
fn default_sweep_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}

/// A size in bytes, written `"512Mi"`, `"1Gi"`, `"2G"` (as `resources` in pipeline files) or as
/// a whole number of bytes. Never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        let bytes = match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a size such as \"512Mi\" or \"20Gi\"")
        })? {
            Raw::Number(n) => u64::try_from(n)
                .map_err(|_| serde::de::Error::custom(format!("{n} is not a size in bytes")))?,
            Raw::Text(t) => {
                airlock_pipeline::spec::parse_bytes(&t).map_err(serde::de::Error::custom)?
            }
        };
        if bytes == 0 {
            return Err(serde::de::Error::custom("a size of zero is not allowed"));
        }
        Ok(ByteSize(bytes))
    }
}

/// A duration written like `"30d"`, `"12h"`, `"90m"` (humantime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let duration = humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!("'{text}' is not a duration such as \"30d\" ({e})"))
        })?;
        if duration.is_zero() {
            return Err(serde::de::Error::custom(
                "a duration of zero is not allowed",
            ));
        }
        Ok(HumanDuration(duration))
    }
}

/// How long outputs are kept after the last run that references them finished: a duration,
/// or `"off"` for no age limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim() == "off" {
            return Ok(Retention(None));
        }
        let duration = humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "'{text}' is not a duration such as \"30d\", nor \"off\" ({e})"
            ))
        })?;
        if duration.is_zero() {
            return Err(serde::de::Error::custom(
                "a retention of zero would delete every output once its run ended; write \"off\" for no age limit",
            ));
        }
        Ok(Retention(Some(duration)))
    }
}

/// Per-forge settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgesFile {
    /// GitHub.
    pub github: Option<GithubFile>,
    /// GitLab.
    pub gitlab: Option<GitlabFile>,
    /// Gerrit.
    pub gerrit: Option<GerritFile>,
}

/// GitHub settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubFile {
    /// Webhook secret (HMAC key of `X-Hub-Signature-256`).
    pub webhook_secret: SecretSource,
    /// REST API base, default `https://api.github.com`.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Token for commit statuses.
    #[serde(default)]
    pub api_token: Option<SecretSource>,
}

/// GitLab settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitlabFile {
    /// Expected `X-Gitlab-Token`.
    pub webhook_token: SecretSource,
    /// REST API base, e.g. `https://gitlab.example.org/api/v4`.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Token for commit statuses (`PRIVATE-TOKEN`).
    #[serde(default)]
    pub api_token: Option<SecretSource>,
}

/// Gerrit settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GerritFile {
    /// Shared secret the webhooks plugin presents (`Authorization: Bearer …` or `?token=`).
    pub webhook_secret: SecretSource,
    /// Gerrit base URL for the REST API.
    #[serde(default)]
    pub url: Option<String>,
    /// HTTP user for `/a/` calls.
    #[serde(default)]
    pub user: Option<String>,
    /// HTTP password for `/a/` calls.
    #[serde(default)]
    pub password: Option<SecretSource>,
}

/// A cron schedule.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    /// Cron expression (5 or 6 fields), UTC.
    pub cron: String,
    /// Full ref to run.
    #[serde(rename = "ref")]
    pub git_ref: String,
}

/// One project.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    /// Name in URLs and the UI.
    pub name: String,
    /// Forge kind.
    pub forge: Forge,
    /// The name the forge uses (Gerrit project, GitHub `owner/name`, GitLab path). Default: `name`.
    #[serde(default)]
    pub repository: Option<String>,
    /// Canonical Git URL the CI fetches from.
    pub git_url: String,
    /// Ref globs whose passing runs produce pass records, e.g. `refs/heads/main`.
    #[serde(default)]
    pub protected: Vec<String>,
    /// Runs of this project at once. Default 1.
    #[serde(default = "default_project_concurrency")]
    pub concurrency: usize,
    /// Whether to report results to the forge. Default true.
    #[serde(default = "default_true")]
    pub report: bool,
    /// Cron schedules.
    #[serde(default)]
    pub schedules: Vec<ScheduleFile>,
}

fn default_project_concurrency() -> usize {
    1
}
fn default_true() -> bool {
    true
}

/// Why the config is unusable. Never contains a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Too large.
    #[error("{0} is larger than 1 MiB")]
    TooLarge(PathBuf),
    /// Not valid TOML for this schema (the message has line and column).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message with position.
        message: String,
    },
    /// Semantically wrong.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A named secret could not be loaded.
    #[error("{path}: {source}")]
    Secret {
        /// The file.
        path: PathBuf,
        /// Which secret.
        #[source]
        source: SecretError,
    },
}

/// The config with secrets loaded.
#[derive(Debug, Clone)]
pub struct Config {
    /// As written.
    pub file: ConfigFile,
    /// Base URL for links.
    pub public_url: String,
    /// Pass-record outbox.
    pub outbox_dir: PathBuf,
    /// Admin token.
    pub admin_token: Option<Secret>,
    /// GitHub webhook secret and API token.
    pub github: Option<(Secret, Option<Secret>)>,
    /// GitLab webhook token and API token.
    pub gitlab: Option<(Secret, Option<Secret>)>,
    /// Gerrit webhook secret and HTTP password.
    pub gerrit: Option<(Secret, Option<Secret>)>,
}

impl Config {
    /// Reads, validates and loads secrets.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read_err = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge(path.to_path_buf()));
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        Self::parse(path, &text)
    }

    /// Parses config text (`path` is used in messages).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if file.http.max_connections == 0 {
            return Err(invalid(
                "http.max_connections = 0 would refuse every connection".into(),
            ));
        }
        let record_max = airlock_pipeline::record::MAX_OUTPUTS;
        if file.artifacts.max_job_outputs > record_max {
            // A job with more outputs would pass, yet no pass record could carry them.
            return Err(invalid(format!(
                "artifacts.max_job_outputs = {} is more than a pass record can carry ({record_max})",
                file.artifacts.max_job_outputs
            )));
        }
        let mut names = std::collections::HashSet::new();
        for p in &file.projects {
            if !names.insert(p.name.as_str()) {
                return Err(invalid(format!("project '{}' is declared twice", p.name)));
            }
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(invalid(format!(
                    "project name '{}' must be letters, digits, '-', '_' or '.'",
                    p.name
                )));
            }
            for pattern in &p.protected {
                globset::Glob::new(pattern).map_err(|e| {
                    invalid(format!(
                        "project '{}': protected pattern '{pattern}': {e}",
                        p.name
                    ))
                })?;
            }
            for s in &p.schedules {
                if let Err(e) = s.cron.parse::<croner::Cron>() {
                    return Err(invalid(format!(
                        "project '{}': schedule '{}': {e}",
                        p.name, s.cron
                    )));
                }
                if !s.git_ref.starts_with("refs/") {
                    return Err(invalid(format!(
                        "project '{}': schedule ref '{}' must be a full ref",
                        p.name, s.git_ref
                    )));
                }
            }
            let needs = match p.forge {
                Forge::Github => file.forges.github.is_none().then_some("github"),
                Forge::Gitlab => file.forges.gitlab.is_none().then_some("gitlab"),
                Forge::Gerrit => file.forges.gerrit.is_none().then_some("gerrit"),
                Forge::Manual | Forge::Schedule => None,
            };
            if let Some(forge) = needs {
                return Err(invalid(format!(
                    "project '{}' uses {forge} but [forges.{forge}] is missing",
                    p.name
                )));
            }
        }
        let secret = |s: &SecretSource| {
            s.load_non_empty().map_err(|source| ConfigError::Secret {
                path: path.to_path_buf(),
                source,
            })
        };
        let optional = |s: &Option<SecretSource>| s.as_ref().map(secret).transpose();
        let public_url = file
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", file.listen));
        Ok(Config {
            public_url: public_url.trim_end_matches('/').to_string(),
            outbox_dir: file
                .outbox_dir
                .clone()
                .unwrap_or_else(|| file.data_dir.join("outbox")),
            admin_token: optional(&file.admin_token)?,
            github: file
                .forges
                .github
                .as_ref()
                .map(|g| Ok((secret(&g.webhook_secret)?, optional(&g.api_token)?)))
                .transpose()?,
            gitlab: file
                .forges
                .gitlab
                .as_ref()
                .map(|g| Ok((secret(&g.webhook_token)?, optional(&g.api_token)?)))
                .transpose()?,
            gerrit: file
                .forges
                .gerrit
                .as_ref()
                .map(|g| Ok((secret(&g.webhook_secret)?, optional(&g.password)?)))
                .transpose()?,
            file,
        })
    }

    /// The project a forge event names.
    pub fn project_for(&self, forge: Forge, repository: &str) -> Option<&ProjectFile> {
        self.file
            .projects
            .iter()
            .find(|p| p.forge == forge && p.repository.as_deref().unwrap_or(&p.name) == repository)
    }

    /// The project with this name.
    pub fn project(&self, name: &str) -> Option<&ProjectFile> {
        self.file.projects.iter().find(|p| p.name == name)
    }
}

impl ProjectFile {
    /// Whether runs on `git_ref` produce pass records.
    pub fn is_protected(&self, git_ref: &str) -> bool {
        self.protected.iter().any(|p| {
            globset::GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .map(|g| g.compile_matcher().is_match(git_ref))
                .unwrap_or(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(dir: &Path) -> String {
        std::fs::write(dir.join("admin"), "admin-s3cret\n").expect("write");
        std::fs::write(dir.join("gerrit"), "gerrit-s3cret").expect("write");
        format!(
            r#"
listen = "127.0.0.1:8080"
data_dir = "/var/lib/airlock-ci"
admin_token = {{ file = "{admin}" }}

[forges.gerrit]
webhook_secret = {{ file = "{gerrit}" }}
url = "http://127.0.0.1:8081"
user = "airlock-ci"

[[projects]]
name = "greet"
forge = "gerrit"
git_url = "git://127.0.0.1:9418/greet.git"
protected = ["refs/heads/main", "refs/tags/v*"]
schedules = [{{ cron = "0 3 * * *", ref = "refs/heads/main" }}]
"#,
            admin = dir.join("admin").display(),
            gerrit = dir.join("gerrit").display()
        )
    }

    #[test]
    fn loads_and_never_shows_secrets() {
        let dir = tempfile::tempdir().expect("tmp");
        let c = Config::parse(Path::new("ci.toml"), &example(dir.path())).expect("valid");
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        assert!(
            c.admin_token
                .as_ref()
                .is_some_and(|t| t.matches(b"admin-s3cret"))
        );
        let p = c.project_for(Forge::Gerrit, "greet").expect("project");
        assert!(
            p.is_protected("refs/heads/main")
                && p.is_protected("refs/tags/v1.2")
                && !p.is_protected("refs/heads/dev")
        );
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn artifacts_section_has_defaults_and_reads_sizes_and_durations() {
        let dir = tempfile::tempdir().expect("tmp");
        let c = Config::parse(Path::new("ci.toml"), &example(dir.path())).expect("valid");
        let a = &c.file.artifacts;
        assert_eq!(
            (
                a.max_output_size.0,
                a.max_job_outputs_size.0,
                a.max_total_size.0
            ),
            (1 << 30, 4 << 30, 50 << 30)
        );
        assert_eq!(a.retention.0, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(a.sweep_interval.0, Duration::from_secs(3600));
        let text = format!(
            "{}\n[artifacts]\nmax_output_size = \"512Mi\"\nmax_job_outputs_size = 3000000000\nretention = \"7d 12h\"\nmax_total_size = \"1.5Ti\"\nsweep_interval = \"10m\"\n",
            example(dir.path())
        );
        let c = Config::parse(Path::new("ci.toml"), &text).expect("valid");
        let a = &c.file.artifacts;
        assert_eq!(
            (
                a.max_output_size.0,
                a.max_job_outputs_size.0,
                a.max_total_size.0
            ),
            (512 << 20, 3_000_000_000, 3 << 39)
        );
        assert_eq!(
            a.retention.0,
            Some(Duration::from_secs(7 * 86_400 + 12 * 3600))
        );
        assert_eq!(a.sweep_interval.0, Duration::from_secs(600));
        let limits = a.output_limits();
        assert_eq!(
            limits.max_file.map(|l| (l.bytes, l.setting)),
            Some((512 << 20, "artifacts.max_output_size".to_string()))
        );
        let off = format!(
            "{}\n[artifacts]\nretention = \"off\"\n",
            example(dir.path())
        );
        let c = Config::parse(Path::new("ci.toml"), &off).expect("valid");
        assert_eq!(c.file.artifacts.retention.0, None);
    }

    #[test]
    fn bad_artifact_settings_name_the_file_the_line_and_the_value() {
        let dir = tempfile::tempdir().expect("tmp");
        let base = example(dir.path());
        // After the example: an empty line, `[artifacts]`, then the setting.
        let line = base.lines().count() + 3;
        for (setting, expected) in [
            (
                "max_output_size = \"12 parsecs\"",
                "'12 parsecs' is not a size",
            ),
            ("max_output_size = \"-1Gi\"", "'-1Gi' is not a size"),
            ("max_job_outputs_size = 0", "a size of zero is not allowed"),
            ("max_total_size = -5", "-5 is not a size in bytes"),
            ("max_total_size = true", "expected a size such as"),
            ("retention = \"a month\"", "'a month' is not a duration"),
            ("retention = \"0s\"", "write \"off\" for no age limit"),
            ("sweep_interval = \"often\"", "'often' is not a duration"),
            ("max_size = \"1Gi\"", "unknown field `max_size`"),
        ] {
            let text = format!("{base}\n[artifacts]\n{setting}\n");
            let e = Config::parse(Path::new("ci.toml"), &text).expect_err(setting);
            let e = e.to_string();
            assert!(
                e.starts_with("ci.toml: ")
                    && e.contains(&format!("line {line}"))
                    && e.contains(expected),
                "{setting}: {e}"
            );
        }
        // Control: the same lines with good values parse.
        let good = format!("{base}\n[artifacts]\nmax_output_size = \"1Gi\"\nretention = \"30d\"\n");
        Config::parse(Path::new("ci.toml"), &good).expect("valid");
    }

    #[test]
    fn errors_name_the_problem() {
        let dir = tempfile::tempdir().expect("tmp");
        let e = Config::parse(Path::new("ci.toml"), "listen = 5\n").expect_err("bad");
        assert!(
            e.to_string().contains("ci.toml") && e.to_string().contains("line 1"),
            "{e}"
        );
        let e = Config::parse(
            Path::new("ci.toml"),
            "listen = \"127.0.0.1:1\"\ndata_dir = \"/x\"\n[artifacts]\nmax_job_outputs = 1001\n",
        )
        .expect_err("more outputs than a record carries");
        assert!(
            e.to_string()
                .contains("more than a pass record can carry (1000)"),
            "{e}"
        );
        Config::parse(
            Path::new("ci.toml"),
            "listen = \"127.0.0.1:1\"\ndata_dir = \"/x\"\n[artifacts]\nmax_job_outputs = 1000\n",
        )
        .expect("at the record's limit");
        let missing = example(dir.path()).replace("[forges.gerrit]", "[forges.gitlab_typo]");
        assert!(Config::parse(Path::new("ci.toml"), &missing).is_err());
        let e = Config::parse(
            Path::new("ci.toml"),
            "listen = \"127.0.0.1:1\"\ndata_dir = \"/x\"\nadmin_token = { env = \"AIRLOCK_TEST_UNSET_VAR\" }\n",
        )
        .expect_err("unset");
        assert!(
            e.to_string()
                .contains("environment variable AIRLOCK_TEST_UNSET_VAR"),
            "{e}"
        );
    }
}

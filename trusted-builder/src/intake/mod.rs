//! Intake of pass records: the first two steps of the builder's loop.
//!
//! 1. size limit and [`record::open`] with the trusted CI origin keys: the signature only says
//!    which CI wrote the record;
//! 2. facts from the builder's own mirror of the project's canonical Git (fetched from the
//!    configured URL, never from the one in the record) and its own built state;
//! 3. the intake policy (`policies/intake.rego`) decides;
//! 4. when it allows, the record's job images are compared with the pipeline file at the commit
//!    ([`check_images`]): any difference refuses the record, whatever the policy said.

mod images;
mod policy;
pub(crate) mod state;

use std::collections::BTreeMap;
use std::path::PathBuf;

use airlock_pipeline::image::ImageRef;
use airlock_pipeline::record::{self, MAX_RECORD_BYTES, PassRecord};
use airlock_pipeline::source::{CommitId, Mirror, SourceCache, SourceError};
use airlock_pipeline::spec::{self, Pipeline};
use ed25519_dalek::VerifyingKey;
use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

pub use self::images::{ImageMismatch, check_images};
pub use self::policy::{
    EMBEDDED_POLICY, INTAKE_INPUT_VERSION, IntakeFacts, IntakeInput, IntakePolicy, IntakeSettings,
    PolicyError, RecordClaims,
};
pub use self::state::{BuiltKey, BuiltState};

/// One project the builder builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuilderProject {
    /// The canonical Git URL: the only place the builder fetches this project from.
    pub git_url: String,
    /// Globs of full ref names whose history may be built (`*` stays within one path segment),
    /// e.g. `refs/heads/main`, `refs/tags/v*`.
    pub protected_refs: Vec<String>,
}

/// The builder's projects by name (a `[projects.NAME]` table in its config).
pub type BuilderProjects = BTreeMap<String, BuilderProject>;

pub use airlock_verify::audit::Subject;

/// A record refused at intake, with why. The reason holds no secrets: record errors quote
/// fields only after their checks, and Git errors have credentials redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pass record refused: {reason}")]
pub struct Refusal {
    /// Why, for the decision log.
    pub reason: String,
    /// The record's subject when it was opened successfully.
    pub subject: Option<Subject>,
    /// Set when the record's images contradict the pipeline file at its commit (`reason` is its
    /// text); None for every other refusal.
    pub image_mismatch: Option<ImageMismatch>,
}

/// A record the policy allows, with what the builder found out about it.
#[derive(Debug, Clone)]
pub struct AcceptedRecord {
    /// The record (a hint: its outputs are CI's claims, compared after the rebuild).
    pub record: PassRecord,
    /// The commit, parsed.
    pub commit: CommitId,
    /// The commit's committer time (seconds since the epoch), for SOURCE_DATE_EPOCH.
    pub commit_time: i64,
    /// The pipeline file at that commit, from the builder's own mirror.
    pub pipeline: Pipeline,
    /// The image each job of the rebuild runs in, by job name, from that pipeline file (equal to
    /// the record's `images`, which intake checked); host-mode jobs are absent.
    pub images: BTreeMap<String, ImageRef>,
    /// The builder's own mirror the commit was found in.
    pub mirror_path: PathBuf,
    /// The builder's strict reproducibility setting at intake.
    pub strict_reproducibility: bool,
}

impl AcceptedRecord {
    /// The key under which this build is remembered.
    pub fn built_key(&self) -> BuiltKey {
        BuiltKey {
            project: self.record.project.clone(),
            commit: self.record.commit.clone(),
            job: self.record.job.clone(),
        }
    }
}

/// Intake: opens, investigates and judges pass records.
#[derive(Debug)]
pub struct Intake {
    projects: BuilderProjects,
    trusted_keys: Vec<VerifyingKey>,
    sources: SourceCache,
    policy: IntakePolicy,
    built: BuiltState,
    settings: IntakeSettings,
}

/// Facts and what came with them (the parsed pipeline and commit) for an accepted record.
struct Gathered {
    facts: IntakeFacts,
    found: Option<(Mirror, CommitId, Pipeline)>,
}

fn refuse(reason: impl Into<String>, subject: Option<Subject>) -> Box<Refusal> {
    Box::new(Refusal {
        reason: reason.into(),
        subject,
        image_mismatch: None,
    })
}

impl Intake {
    /// An intake over the builder's projects, the CI origin keys it trusts, its own source cache,
    /// policy and built state.
    pub fn new(
        projects: BuilderProjects,
        trusted_keys: Vec<VerifyingKey>,
        sources: SourceCache,
        policy: IntakePolicy,
        built: BuiltState,
        settings: IntakeSettings,
    ) -> Self {
        Intake {
            projects,
            trusted_keys,
            sources,
            policy,
            built,
            settings,
        }
    }

    /// The built state (the caller marks a record built once its build is done).
    pub fn built(&self) -> &BuiltState {
        &self.built
    }

    /// Runs intake on the bytes of one outbox file. Blocking (Git fetches): call it from a
    /// blocking task in async code.
    pub fn check(&self, bytes: &[u8]) -> Result<AcceptedRecord, Box<Refusal>> {
        // Checked here as well as in record::open so that the limit holds whatever open does.
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(refuse(
                format!(
                    "pass record is {} bytes, more than the limit of {MAX_RECORD_BYTES}",
                    bytes.len()
                ),
                None,
            ));
        }
        let record =
            record::open(bytes, &self.trusted_keys).map_err(|e| refuse(e.to_string(), None))?;
        let subject = Subject::of(&record);
        let gathered = self
            .gather(&record)
            .map_err(|e| refuse(e.to_string(), Some(subject.clone())))?;
        let input = IntakeInput {
            version: INTAKE_INPUT_VERSION,
            record: RecordClaims {
                project: record.project.clone(),
                git_url: record.git_url.clone(),
                git_ref: record.git_ref.clone(),
                commit: record.commit.clone(),
                job: record.job.clone(),
            },
            facts: gathered.facts,
            settings: self.settings,
        };
        let reasons = self
            .policy
            .evaluate(&input)
            .map_err(|e| refuse(e.to_string(), Some(subject.clone())))?;
        if !reasons.is_empty() {
            return Err(refuse(reasons.join("; "), Some(subject)));
        }
        // The policy allowing without these would be a policy bug: fail closed.
        let Some((mirror, commit, pipeline)) = gathered.found else {
            return Err(refuse(
                "intake policy allowed a record whose commit or job was not found",
                Some(subject),
            ));
        };
        // Not a policy question: a record that contradicts the source is never rebuilt.
        let images = check_images(&record, &pipeline).map_err(|mismatch| {
            Box::new(Refusal {
                reason: mismatch.to_string(),
                subject: Some(subject.clone()),
                image_mismatch: Some(mismatch),
            })
        })?;
        let commit_time = mirror
            .commit_time(&commit)
            .map_err(|e| refuse(e.to_string(), Some(subject.clone())))?;
        Ok(AcceptedRecord {
            record,
            commit,
            commit_time,
            pipeline,
            images,
            mirror_path: mirror.path().to_path_buf(),
            strict_reproducibility: self.settings.strict_reproducibility,
        })
    }

    /// Gathers the facts. `Err` only for failures that are not facts (network, corrupt mirror).
    fn gather(&self, record: &PassRecord) -> Result<Gathered, GatherError> {
        let already_built = self.built.contains(&BuiltKey {
            project: record.project.clone(),
            commit: record.commit.clone(),
            job: record.job.clone(),
        });
        let mut facts = IntakeFacts {
            project_allowed: false,
            canonical_git_url: None,
            commit_reachable_from_protected: false,
            protected_ref_matched: None,
            job_declares_publish: false,
            already_built,
        };
        let Some(project) = self.projects.get(&record.project) else {
            return Ok(Gathered { facts, found: None });
        };
        facts.project_allowed = true;
        facts.canonical_git_url = Some(project.git_url.clone());
        if !ref_matches(&project.protected_refs, &record.git_ref)? {
            return Ok(Gathered { facts, found: None });
        }
        facts.protected_ref_matched = Some(record.git_ref.clone());
        if record.git_url != project.git_url {
            // The policy refuses it anyway; fetching would only cost time.
            return Ok(Gathered { facts, found: None });
        }
        let commit: CommitId = record.commit.parse().map_err(GatherError::Commit)?;
        // Only the protected ref the record names is fetched, from the configured URL: a commit
        // that reached the canonical Git only through some other ref stays unknown here.
        let (mirror, tip) = match self.sources.fetch_rev(&project.git_url, &record.git_ref) {
            Ok(found) => found,
            Err(SourceError::RefNotFound { .. }) => return Ok(Gathered { facts, found: None }),
            Err(e) => return Err(GatherError::Fetch(e)),
        };
        facts.commit_reachable_from_protected = match mirror.is_ancestor(&commit, &tip) {
            Ok(reachable) => reachable,
            // An unknown commit is one the protected ref does not lead to.
            Err(SourceError::CommitNotFound { .. } | SourceError::RevNotFound { .. }) => false,
            Err(e) => return Err(GatherError::Mirror(e)),
        };
        if !facts.commit_reachable_from_protected {
            return Ok(Gathered { facts, found: None });
        }
        let bytes = mirror
            .read_file(
                &commit,
                spec::PIPELINE_PATH,
                spec::MAX_PIPELINE_BYTES as u64,
            )
            .map_err(GatherError::Mirror)?;
        let pipeline = match bytes.map(|b| spec::parse(spec::PIPELINE_PATH, &b)) {
            Some(Ok(pipeline)) => pipeline,
            // No or an invalid pipeline file declares nothing.
            _ => return Ok(Gathered { facts, found: None }),
        };
        facts.job_declares_publish = pipeline
            .job(&record.job)
            .is_some_and(|job| job.publish.is_some());
        Ok(Gathered {
            facts,
            found: Some((mirror, commit, pipeline)),
        })
    }
}

/// Why the facts about a record could not be gathered (not a fact about it: the record is
/// refused for now and the reason logged).
#[derive(Debug, thiserror::Error)]
enum GatherError {
    /// The record's commit id is not one.
    #[error("commit id: {0}")]
    Commit(#[source] SourceError),
    /// The canonical Git could not be fetched.
    #[error("cannot fetch the canonical Git: {0}")]
    Fetch(#[source] SourceError),
    /// The builder's mirror could not be read.
    #[error("the builder's mirror: {0}")]
    Mirror(#[source] SourceError),
    /// A configured protected-ref pattern is not a glob.
    #[error("protected ref glob {pattern:?}: {source}")]
    Glob {
        /// The pattern.
        pattern: String,
        /// Why.
        source: globset::Error,
    },
}

fn glob(pattern: &str) -> Result<GlobMatcher, GatherError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|source| GatherError::Glob {
            pattern: pattern.to_owned(),
            source,
        })
}

/// Whether `git_ref` matches one of the globs.
fn ref_matches(globs: &[String], git_ref: &str) -> Result<bool, GatherError> {
    for pattern in globs {
        if glob(pattern)?.is_match(git_ref) {
            return Ok(true);
        }
    }
    Ok(false)
}

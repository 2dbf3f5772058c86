//! SLSA provenance v1 in an in-toto Statement v1: what the builder attests
//! about each image it signs.
//!
//! Field names follow in-toto `spec/v1/statement.md` and SLSA
//! `spec/build-provenance.md`. This module is the one place the statement is
//! (de)serialised; [`Statement::from_json`] checks the statement type, the
//! predicate type and our build type, which together version the format.

use std::collections::BTreeMap;

use airlock_pipeline::image::ImageRef;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// `_type` of the statements we write.
pub const STATEMENT_TYPE_V1: &str = "https://in-toto.io/Statement/v1";
/// `predicateType` of SLSA provenance v1 (consumers must match it exactly).
pub const PREDICATE_TYPE_SLSA_V1: &str = "https://slsa.dev/provenance/v1";
/// Our `buildType`: a pipeline job rebuilt by the trusted builder. Its
/// version suffix versions [`ExternalParameters`] and [`InternalParameters`].
pub const BUILD_TYPE: &str = "https://airlock.dev/build/pipeline-job/v1";
/// Byproduct name carrying whether the rebuild reproduced CI's outputs.
pub const BYPRODUCT_REPRODUCED: &str = "airlock.dev/reproduced";
/// Byproduct name of CI's job log.
pub const BYPRODUCT_CI_LOG: &str = "airlock.dev/ci-log";
/// Prefix of byproduct names of CI's outputs (followed by the output path).
pub const BYPRODUCT_CI_OUTPUT_PREFIX: &str = "airlock.dev/ci-output/";
/// Prefix of the names of the resolved dependencies that are job images (followed by the job).
pub const JOB_IMAGE_NAME_PREFIX: &str = "image of job ";

/// An in-toto Statement v1 whose predicate is SLSA provenance v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    /// [`STATEMENT_TYPE_V1`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// The image: name = repository, digest.sha256 = manifest digest hex.
    pub subject: Vec<ResourceDescriptor>,
    /// [`PREDICATE_TYPE_SLSA_V1`].
    pub predicate_type: String,
    /// The provenance.
    pub predicate: Provenance,
}

/// An in-toto ResourceDescriptor (only the fields we use).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    /// Where the resource is (e.g. `git+https://host/repo@refs/heads/main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Algorithm -> lowercase hex (`sha256`, `gitCommit`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    /// A name for the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Media type of `content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The resource itself, base64 (used for small values like `reproduced`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// SLSA provenance v1 predicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// What was built and from what.
    pub build_definition: BuildDefinition,
    /// Who built it and when.
    pub run_details: RunDetails,
}

/// `buildDefinition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    /// [`BUILD_TYPE`].
    pub build_type: String,
    /// The untrusted inputs (from the pass record).
    pub external_parameters: ExternalParameters,
    /// Builder-controlled settings.
    pub internal_parameters: InternalParameters,
    /// Source commit, the base image when there is one, then the image of each job of the
    /// rebuild that ran in one (sorted by job name).
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// `externalParameters`: what the pass record asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalParameters {
    /// Canonical Git URL of the source repository.
    pub repository: String,
    /// The ref the commit was reached from (e.g. `refs/heads/main`).
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Full commit id.
    pub commit: String,
    /// The job name in the pipeline file.
    pub job: String,
}

/// `internalParameters`: decided by the builder, not by CI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InternalParameters {
    /// SOURCE_DATE_EPOCH used for every timestamp in the image (commit time).
    pub source_date_epoch: i64,
    /// Whether a rebuild differing from CI would have been refused.
    pub strict_reproducibility: bool,
}

/// `runDetails`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    /// The builder.
    pub builder: Builder,
    /// Invocation id and times.
    pub metadata: BuildMetadata,
    /// CI's output digests, CI's log digest, and `reproduced`.
    pub byproducts: Vec<ResourceDescriptor>,
}

/// `runDetails.builder`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Builder {
    /// URI identifying the trusted builder instance.
    pub id: String,
}

/// `runDetails.metadata` (times RFC 3339 with seconds and `Z`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    /// Unique id of this build.
    pub invocation_id: String,
    /// When the rebuild started.
    pub started_on: String,
    /// When it finished.
    pub finished_on: String,
}

/// Everything the provenance says, as the builder knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenanceInputs {
    /// Image repository (the subject's name), without tag.
    pub image_repository: String,
    /// Image manifest digest `sha256:<hex>`.
    pub image_digest: String,
    /// What the pass record asked for.
    pub external: ExternalParameters,
    /// Builder settings.
    pub internal: InternalParameters,
    /// Base image `(repository, sha256:<hex>)`, None for scratch.
    pub base_image: Option<(String, String)>,
    /// The image each job of the rebuild ran in (the job and what it needs), by job name;
    /// host-mode jobs are absent. Each becomes a resolved dependency
    /// `{"uri": "oci://REPOSITORY", "digest": {"sha256": HEX}, "name": "image of job JOB"}`.
    pub job_images: BTreeMap<String, ImageRef>,
    /// `runDetails.builder.id`.
    pub builder_id: String,
    /// `runDetails.metadata.invocationId`.
    pub invocation_id: String,
    /// Rebuild start.
    pub started_on: DateTime<Utc>,
    /// Rebuild end.
    pub finished_on: DateTime<Utc>,
    /// CI's declared outputs: path -> `sha256:<hex>`.
    pub ci_outputs: BTreeMap<String, String>,
    /// `sha256:<hex>` of CI's job log.
    pub ci_log_digest: String,
    /// Whether the rebuild's outputs equal CI's.
    pub reproduced: bool,
}

/// Why a statement was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    /// Not JSON of the expected shape.
    #[error("malformed provenance statement: {0}")]
    Malformed(String),
    /// A type URI is not one this version understands.
    #[error("unsupported {field} {found:?} (expected {expected:?})")]
    Unsupported {
        /// `_type`, `predicateType` or `buildType`.
        field: &'static str,
        /// What the statement says.
        found: String,
        /// What we understand.
        expected: &'static str,
    },
    /// A digest is not `sha256:<hex>`.
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
}

fn sha256_descriptor(name: String, digest: &str) -> Result<ResourceDescriptor, ProvenanceError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|_| crate::oci::is_sha256_digest(digest))
        .ok_or_else(|| ProvenanceError::InvalidDigest(digest.to_owned()))?;
    Ok(ResourceDescriptor {
        name: Some(name),
        digest: BTreeMap::from([("sha256".to_owned(), hex.to_owned())]),
        ..ResourceDescriptor::default()
    })
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Statement {
    /// Builds the statement for one signed image.
    pub fn new(inputs: &ProvenanceInputs) -> Result<Self, ProvenanceError> {
        let subject = sha256_descriptor(inputs.image_repository.clone(), &inputs.image_digest)?;
        let mut deps = vec![ResourceDescriptor {
            uri: Some(format!(
                "git+{}@{}",
                inputs.external.repository, inputs.external.git_ref
            )),
            digest: BTreeMap::from([("gitCommit".to_owned(), inputs.external.commit.clone())]),
            ..ResourceDescriptor::default()
        }];
        if let Some((repo, digest)) = &inputs.base_image {
            let mut base = sha256_descriptor(repo.clone(), digest)?;
            base.uri = Some(format!("oci://{repo}@{digest}"));
            base.name = None;
            deps.push(base);
        }
        // In job-name order (a BTreeMap), so two builds of one record list them alike.
        for (job, image) in &inputs.job_images {
            let mut descriptor =
                sha256_descriptor(format!("{JOB_IMAGE_NAME_PREFIX}{job}"), image.digest())?;
            descriptor.uri = Some(format!("oci://{}", image.repository()));
            deps.push(descriptor);
        }
        let mut byproducts = Vec::with_capacity(inputs.ci_outputs.len() + 2);
        for (path, digest) in &inputs.ci_outputs {
            byproducts.push(sha256_descriptor(
                format!("{BYPRODUCT_CI_OUTPUT_PREFIX}{path}"),
                digest,
            )?);
        }
        byproducts.push(sha256_descriptor(
            BYPRODUCT_CI_LOG.to_owned(),
            &inputs.ci_log_digest,
        )?);
        // A ResourceDescriptor needs uri, digest or content: a boolean is content.
        let reproduced = if inputs.reproduced { "true" } else { "false" };
        byproducts.push(ResourceDescriptor {
            name: Some(BYPRODUCT_REPRODUCED.to_owned()),
            media_type: Some("application/json".to_owned()),
            content: Some(base64::engine::general_purpose::STANDARD.encode(reproduced)),
            ..ResourceDescriptor::default()
        });
        Ok(Self {
            statement_type: STATEMENT_TYPE_V1.to_owned(),
            subject: vec![subject],
            predicate_type: PREDICATE_TYPE_SLSA_V1.to_owned(),
            predicate: Provenance {
                build_definition: BuildDefinition {
                    build_type: BUILD_TYPE.to_owned(),
                    external_parameters: inputs.external.clone(),
                    internal_parameters: inputs.internal.clone(),
                    resolved_dependencies: deps,
                },
                run_details: RunDetails {
                    builder: Builder {
                        id: inputs.builder_id.clone(),
                    },
                    metadata: BuildMetadata {
                        invocation_id: inputs.invocation_id.clone(),
                        started_on: rfc3339(&inputs.started_on),
                        finished_on: rfc3339(&inputs.finished_on),
                    },
                    byproducts,
                },
            },
        })
    }

    /// Serializes the statement (the DSSE body).
    pub fn to_json(&self) -> Result<Vec<u8>, ProvenanceError> {
        serde_json::to_vec(self).map_err(|e| ProvenanceError::Malformed(e.to_string()))
    }

    /// Parses a statement and checks its version URIs. `_type` v0.1 is
    /// accepted too (in-toto says consumers should), the predicate and build
    /// types only exactly.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ProvenanceError> {
        let s: Self =
            serde_json::from_slice(bytes).map_err(|e| ProvenanceError::Malformed(e.to_string()))?;
        if s.statement_type != STATEMENT_TYPE_V1
            && s.statement_type != "https://in-toto.io/Statement/v0.1"
        {
            return Err(ProvenanceError::Unsupported {
                field: "_type",
                found: s.statement_type,
                expected: STATEMENT_TYPE_V1,
            });
        }
        if s.predicate_type != PREDICATE_TYPE_SLSA_V1 {
            return Err(ProvenanceError::Unsupported {
                field: "predicateType",
                found: s.predicate_type,
                expected: PREDICATE_TYPE_SLSA_V1,
            });
        }
        if s.predicate.build_definition.build_type != BUILD_TYPE {
            return Err(ProvenanceError::Unsupported {
                field: "buildType",
                found: s.predicate.build_definition.build_type,
                expected: BUILD_TYPE,
            });
        }
        Ok(s)
    }

    /// True when a subject has digest `sha256:<hex>` (in-toto matches subjects by digest only).
    pub fn has_subject_digest(&self, digest: &str) -> bool {
        let Some(hex) = digest.strip_prefix("sha256:") else {
            return false;
        };
        self.subject
            .iter()
            .any(|s| s.digest.get("sha256").is_some_and(|d| d == hex))
    }

    /// The `reproduced` byproduct; None when absent or unreadable.
    pub fn reproduced(&self) -> Option<bool> {
        let d = self
            .predicate
            .run_details
            .byproducts
            .iter()
            .find(|b| b.name.as_deref() == Some(BYPRODUCT_REPRODUCED))?;
        let raw = crate::dsse::decode_base64(d.content.as_deref()?).ok()?;
        serde_json::from_slice(&raw).ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn hex(c: char) -> String {
        c.to_string().repeat(64)
    }

    fn inputs(job_images: &[(&str, &str)]) -> ProvenanceInputs {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        ProvenanceInputs {
            image_repository: "127.0.0.1:5000/greet".into(),
            image_digest: format!("sha256:{}", hex('1')),
            external: ExternalParameters {
                repository: "git://127.0.0.1/svc".into(),
                git_ref: "refs/heads/main".into(),
                commit: COMMIT.into(),
                job: "publish".into(),
            },
            internal: InternalParameters {
                source_date_epoch: 1_700_000_000,
                strict_reproducibility: true,
            },
            base_image: Some(("127.0.0.1:5000/base".into(), format!("sha256:{}", hex('2')))),
            builder_id: "https://airlock.test/builder".into(),
            invocation_id: "inv-1".into(),
            started_on: t,
            finished_on: t,
            ci_outputs: BTreeMap::new(),
            ci_log_digest: format!("sha256:{}", hex('3')),
            reproduced: true,
            job_images: job_images
                .iter()
                .map(|(job, image)| (job.to_string(), ImageRef::parse(image).unwrap()))
                .collect(),
        }
    }

    fn resolved(statement: &Statement) -> serde_json::Value {
        let json: serde_json::Value =
            serde_json::from_slice(&statement.to_json().unwrap()).unwrap();
        json["predicate"]["buildDefinition"]["resolvedDependencies"].clone()
    }

    #[test]
    fn job_images_are_resolved_dependencies_in_job_order() {
        let publish = format!("127.0.0.1:5000/tools/cc@sha256:{}", hex('b'));
        let build = format!("docker.io/library/gcc@sha256:{}", hex('a'));
        // Given out of order: the statement lists them by job name.
        let statement =
            Statement::new(&inputs(&[("publish", &publish), ("build", &build)])).unwrap();
        let deps = resolved(&statement);
        assert_eq!(
            deps,
            serde_json::json!([
                {"uri": format!("git+git://127.0.0.1/svc@refs/heads/main"), "digest": {"gitCommit": COMMIT}},
                {"uri": format!("oci://127.0.0.1:5000/base@sha256:{}", hex('2')), "digest": {"sha256": hex('2')}},
                {"uri": "oci://docker.io/library/gcc", "digest": {"sha256": hex('a')}, "name": "image of job build"},
                {"uri": "oci://127.0.0.1:5000/tools/cc", "digest": {"sha256": hex('b')}, "name": "image of job publish"},
            ])
        );
        // The same inputs give the same bytes; and the statement reads back.
        assert_eq!(
            statement.to_json().unwrap(),
            Statement::new(&inputs(&[("build", &build), ("publish", &publish)]))
                .unwrap()
                .to_json()
                .unwrap()
        );
        assert_eq!(
            Statement::from_json(&statement.to_json().unwrap()).unwrap(),
            statement
        );

        // Control: jobs in host mode add nothing, only the source and the base remain.
        let host = Statement::new(&inputs(&[])).unwrap();
        assert_eq!(resolved(&host).as_array().unwrap().len(), 2);
    }
}

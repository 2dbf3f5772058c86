//! Publishing a rebuilt record: the image and the artifacts, pushed, signed, attested and logged.

use std::collections::BTreeMap;

use airlock_pipeline::spec::model::{BaseImage, PublishSpec};
use airlock_pipeline::terminal::field;
use anyhow::Context as _;

use super::Server;
use crate::attach::{attest_image, sign_image};
use crate::audit::Decision;
use crate::intake::{AcceptedRecord, Subject};
use crate::oci::{
    ARTIFACT_TYPE, AssembledImage, ImageInputs, ResolvedFile, assemble_artifact, resolve_artifacts,
};
use crate::provenance::{ExternalParameters, InternalParameters, ProvenanceInputs, Statement};
use crate::rebuild::Rebuilt;

impl Server {
    /// Pushes an image or artifact manifest under `reference` and logs it; returns its digest.
    async fn push_logged(
        &mut self,
        name: &str,
        subject: &Subject,
        reference: String,
        manifest: &AssembledImage,
    ) -> anyhow::Result<String> {
        let digest = self
            .registry
            .push(&reference, manifest)
            .await
            .with_context(|| format!("pushing {reference}"))?;
        eprintln!(
            "trusted-builder: {}: pushed {} {digest}",
            field(name),
            field(&reference.to_string())
        );
        tracing::info!(record = name, image = %reference, %digest, "pushed");
        self.log(
            name,
            Decision::Pushed {
                subject: subject.clone(),
                image: reference,
                digest: digest.clone(),
            },
        )?;
        Ok(digest)
    }

    /// Signs `target` with a cosign signature and attaches its SLSA provenance, then logs it.
    async fn sign_and_attest(
        &mut self,
        name: &str,
        subject: &Subject,
        accepted: &AcceptedRecord,
        rebuilt: &Rebuilt,
        started: chrono::DateTime<chrono::Utc>,
        target: Attest<'_>,
    ) -> anyhow::Result<()> {
        let record = &accepted.record;
        let (repository, digest) = (target.repository, target.digest);
        sign_image(&self.registry, &self.signer, repository, digest, None)
            .await
            .with_context(|| format!("signing {repository}@{digest}"))?;
        let statement = Statement::new(&ProvenanceInputs {
            image_repository: repository.to_owned(),
            image_digest: digest.to_owned(),
            external: ExternalParameters {
                repository: record.git_url.clone(),
                git_ref: record.git_ref.clone(),
                commit: record.commit.clone(),
                job: record.job.clone(),
            },
            internal: InternalParameters {
                source_date_epoch: accepted.commit_time,
                strict_reproducibility: accepted.strict_reproducibility,
            },
            base_image: target.base_image,
            job_images: accepted.images.clone(),
            builder_id: self.config.builder_id.clone(),
            invocation_id: format!(
                "{name}@{}",
                started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ),
            started_on: started,
            finished_on: chrono::Utc::now(),
            ci_outputs: record
                .outputs
                .iter()
                .map(|o| (o.path.clone(), format!("sha256:{}", o.sha256)))
                .collect::<BTreeMap<_, _>>(),
            ci_log_digest: format!("sha256:{}", record.log_sha256),
            reproduced: rebuilt.reproduced,
        })
        .context("provenance statement")?;
        attest_image(&self.registry, &self.signer, repository, digest, &statement)
            .await
            .with_context(|| format!("attaching the provenance of {repository}@{digest}"))?;
        eprintln!(
            "trusted-builder: {}: signed and attested {}@{digest}",
            field(name),
            field(repository)
        );
        tracing::info!(record = name, image = %repository, %digest, "signed");
        self.log(
            name,
            Decision::Signed {
                subject: subject.clone(),
                image: repository.to_owned(),
                digest: digest.to_owned(),
            },
        )
    }

    /// Image (push, sign, attest) and artifacts of one rebuilt record.
    pub(super) async fn publish(
        &mut self,
        name: &str,
        accepted: &AcceptedRecord,
        rebuilt: &Rebuilt,
        subject: &Subject,
        started: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<()> {
        let record = &accepted.record;
        let project = self
            .config
            .projects
            .get(&record.project)
            .with_context(|| format!("project {:?} is not configured", record.project))?
            .clone();
        let spec: PublishSpec = accepted
            .pipeline
            .job(&record.job)
            .and_then(|j| j.publish.clone())
            .with_context(|| format!("job {:?} declares no publish section", record.job))?;
        let short = &record.commit[..12.min(record.commit.len())];
        let tag = format!("{}-{short}", record.job);
        let resolve = |output: &str| {
            rebuilt
                .outputs
                .iter()
                .find(|o| o.path == output)
                .map(|o| ResolvedFile {
                    path: rebuilt.store.blob_path(&o.sha256),
                    executable: o.executable,
                })
        };
        if let Some(image) = &spec.image {
            let repository = project.image_repository.as_str();
            let assembled = self
                .registry
                .assemble_image(&ImageInputs {
                    image,
                    resolve: &resolve,
                    source_date_epoch: accepted.commit_time,
                    source: &record.git_url,
                    revision: &record.commit,
                })
                .await
                .context("assembling the image")?;
            let digest = self
                .push_logged(name, subject, format!("{repository}:{tag}"), &assembled)
                .await?;
            let base_image = match &image.base {
                BaseImage::Scratch => None,
                BaseImage::Pinned { repository, digest } => {
                    Some((repository.clone(), digest.clone()))
                }
            };
            let target = Attest {
                repository,
                digest: &digest,
                base_image,
            };
            self.sign_and_attest(name, subject, accepted, rebuilt, started, target)
                .await?;
        }
        if !spec.artifacts.is_empty() {
            let files = resolve_artifacts(&spec.artifacts, &resolve)?;
            let artifact = assemble_artifact(
                &files,
                ARTIFACT_TYPE,
                accepted.commit_time,
                &record.git_url,
                &record.commit,
            )?;
            let reference = format!("{}:{tag}", project.artifacts_repository());
            let digest = self
                .push_logged(name, subject, reference, &artifact)
                .await?;
            // Artifacts are vouched for like images: a cosign signature and the same
            // provenance, so `verify` and the reconciler's checks apply to them too.
            let repository = project.artifacts_repository();
            let target = Attest {
                repository: &repository,
                digest: &digest,
                base_image: None,
            };
            self.sign_and_attest(name, subject, accepted, rebuilt, started, target)
                .await?;
        }
        Ok(())
    }
}

/// What [`Server::sign_and_attest`] vouches for.
struct Attest<'a> {
    repository: &'a str,
    digest: &'a str,
    base_image: Option<(String, String)>,
}

//! Pass records: one per publishable job that passed on a protected ref,
//! signed with the CI's origin key and written to the one-way outbox. The
//! CI never connects to the trusted side; the trusted builder pulls.

use airlock_pipeline::dag::RunReport;
use airlock_pipeline::events::JobState;
use airlock_pipeline::record::{
    DirOutbox, OriginKey, Outbox, OutputDigest, PASS_RECORD_VERSION, PassRecord,
};
use airlock_pipeline::spec::Pipeline;
use sha2::{Digest, Sha256};

use crate::config::ProjectFile;
use crate::store::RunId;

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// One passed run, as the pass records describe it.
pub struct PassedRun<'a> {
    /// The project.
    pub project: &'a ProjectFile,
    /// The run id.
    pub run: RunId,
    /// The ref it ran for.
    pub git_ref: &'a str,
    /// The commit it ran.
    pub commit: &'a str,
    /// The pipeline file at that commit.
    pub pipeline: &'a Pipeline,
    /// What the engine reported.
    pub report: &'a RunReport,
}

/// Writes the pass records of a passed run; returns the outbox names written.
pub fn write_pass_records(
    outbox: &DirOutbox,
    key: &OriginKey,
    passed: &PassedRun<'_>,
) -> Result<Vec<String>, airlock_pipeline::record::RecordError> {
    let PassedRun {
        project,
        run,
        git_ref,
        commit,
        pipeline,
        report,
    } = *passed;
    let mut written = Vec::new();
    for job in &report.jobs {
        let publishes = pipeline
            .job(&job.name)
            .is_some_and(|spec| spec.publish.is_some());
        if !publishes || job.state != JobState::Passed {
            continue;
        }
        let record = PassRecord {
            version: PASS_RECORD_VERSION,
            project: project.name.clone(),
            git_url: project.git_url.clone(),
            git_ref: git_ref.to_string(),
            commit: commit.to_string(),
            job: job.name.clone(),
            pipeline_sha256: pipeline.file_sha256.clone(),
            outputs: job.outputs.iter().map(OutputDigest::from).collect(),
            log_sha256: hex::encode(Sha256::digest(job.log.to_text().as_bytes())),
            ci_run_id: run.to_string(),
            started_at: rfc3339(job.started_ms.unwrap_or(0)),
            finished_at: rfc3339(job.finished_ms.or(job.started_ms).unwrap_or(0)),
        };
        let signed = key.sign(&record)?;
        written.push(outbox.put(&signed, &format!("{}-{}-run{run}", project.name, job.name))?);
    }
    Ok(written)
}

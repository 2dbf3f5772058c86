//! Version 1 records: still read, never written.
//!
//! A version 1 record has neither `event` nor `images`. It is parsed strictly with its own
//! struct (so a version 1 record carrying a field of version 2 is refused as an unknown field, as
//! a version 1 reader would refuse it) and then read as a [`PassRecord`] that keeps
//! `version: 1`, with the event derived from its ref ([`event_of_v1_ref`]) and no images.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{OutputDigest, PassRecord, RecordError};
use crate::spec::EventKind;

/// The fields of a version 1 record, in its field order.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PassRecordV1 {
    version: u32,
    project: String,
    git_url: String,
    git_ref: String,
    commit: String,
    job: String,
    pipeline_sha256: String,
    outputs: Vec<OutputDigest>,
    log_sha256: String,
    ci_run_id: String,
    started_at: String,
    finished_at: String,
}

/// The event a version 1 record stands for: it was written only for runs on protected refs,
/// which forges announce as a tag push (`refs/tags/…`) or a branch push (anything else).
pub fn event_of_v1_ref(git_ref: &str) -> EventKind {
    if git_ref.starts_with("refs/tags/") {
        EventKind::Tag
    } else {
        EventKind::Push
    }
}

impl From<PassRecordV1> for PassRecord {
    fn from(v1: PassRecordV1) -> Self {
        PassRecord {
            version: v1.version,
            event: event_of_v1_ref(&v1.git_ref),
            project: v1.project,
            git_url: v1.git_url,
            git_ref: v1.git_ref,
            commit: v1.commit,
            job: v1.job,
            pipeline_sha256: v1.pipeline_sha256,
            images: BTreeMap::new(),
            outputs: v1.outputs,
            log_sha256: v1.log_sha256,
            ci_run_id: v1.ci_run_id,
            started_at: v1.started_at,
            finished_at: v1.finished_at,
        }
    }
}

/// A record that says `version: 1` holds exactly what a version 1 record can say: no images and
/// the event its ref implies.
pub(super) fn check_upgraded(record: &PassRecord) -> Result<(), RecordError> {
    if !record.images.is_empty() {
        return Err(RecordError::Invalid(
            "images: a version 1 record lists no images".into(),
        ));
    }
    let implied = event_of_v1_ref(&record.git_ref);
    if record.event != implied {
        return Err(RecordError::Invalid(format!(
            "event '{}' is not '{}', the event a version 1 record on this ref stands for",
            record.event.as_str(),
            implied.as_str()
        )));
    }
    Ok(())
}

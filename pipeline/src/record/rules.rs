//! The rules of a record's fields: [`PassRecord::validate`] and the checks it is made of.

use std::collections::{BTreeMap, HashSet};

use super::{
    MAX_FIELD_BYTES, MAX_IMAGES, MAX_OUTPUTS, PASS_RECORD_VERSION, PassRecord, RecordError, quote,
    v1,
};
use crate::image::ImageRef;
use crate::spec::EventKind;

fn invalid(field: &str, value: &str, why: &str) -> RecordError {
    RecordError::Invalid(format!("{field} {} {why}", quote(value)))
}

pub(super) fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_len(field: &str, value: &str) -> Result<(), RecordError> {
    if value.len() > MAX_FIELD_BYTES {
        return Err(RecordError::Invalid(format!(
            "{field} is {} bytes, more than the limit of {MAX_FIELD_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

fn check_sha256(field: &str, value: &str) -> Result<(), RecordError> {
    if !is_lower_hex(value, 64) {
        return Err(invalid(field, value, "is not 64 lowercase hex digits"));
    }
    Ok(())
}

/// Free text fields may hold anything printable, but never control characters: they end up in
/// logs and UIs on the trusted side.
fn check_text(field: &str, value: &str) -> Result<(), RecordError> {
    check_len(field, value)?;
    if value.is_empty() {
        return Err(RecordError::Invalid(format!("{field} is empty")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, value, "contains a control character"));
    }
    Ok(())
}

fn check_git_url(url: &str) -> Result<(), RecordError> {
    // A password in the URL would be copied to every system that stores records; the CI must
    // strip credentials before writing. Checked first, and the value is not quoted, so that no
    // later error message repeats the password.
    if let Some((_, rest)) = url.split_once("://") {
        let authority = rest.split('/').next().unwrap_or_default();
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && userinfo.contains(':')
        {
            return Err(RecordError::Invalid("git_url contains a password".into()));
        }
    }
    check_text("git_url", url)?;
    if url.chars().any(char::is_whitespace) {
        return Err(invalid("git_url", url, "contains whitespace"));
    }
    Ok(())
}

fn check_git_ref(git_ref: &str) -> Result<(), RecordError> {
    check_text("git_ref", git_ref)?;
    if !git_ref.starts_with("refs/") || git_ref.len() == "refs/".len() {
        return Err(invalid(
            "git_ref",
            git_ref,
            "is not a full ref name under refs/",
        ));
    }
    if git_ref.contains("..") || git_ref.chars().any(char::is_whitespace) {
        return Err(invalid("git_ref", git_ref, "contains '..' or whitespace"));
    }
    Ok(())
}

fn check_project(project: &str) -> Result<(), RecordError> {
    check_text("project", project)?;
    // The trusted side may use the project name as a path component or a policy key.
    if project == "." || project.contains('/') || project.contains('\\') || project.contains("..") {
        return Err(invalid(
            "project",
            project,
            "contains '/', '\\' or '..', or is '.'",
        ));
    }
    Ok(())
}

fn check_job(field: &str, job: &str) -> Result<(), RecordError> {
    // Same rule as the pipeline file's job names (spec::validate).
    let ok_chars = job
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if job.is_empty() || job.len() > 63 || !ok_chars {
        return Err(invalid(
            field,
            job,
            "is not 1-63 letters, digits, '-' or '_'",
        ));
    }
    Ok(())
}

/// An output path as `outputs::collect` writes them: relative, `/`-separated, normalised. `.` and
/// empty components are refused as well as `..`, so that one file cannot be listed twice under two
/// spellings.
fn check_output_path(path: &str) -> Result<(), RecordError> {
    check_text("output path", path)?;
    if path.starts_with('/') || path.contains('\\') {
        return Err(invalid("output path", path, "is absolute or contains '\\'"));
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(invalid(
            "output path",
            path,
            "has an empty, '.' or '..' component",
        ));
    }
    Ok(())
}

/// The event must agree with the ref where the forges leave no choice: a tag push is on a ref
/// under `refs/tags/`, a branch push is not. (Changes, schedules and manual runs may name any
/// ref.) A version 1 record's event is derived from its ref by the same rule.
fn check_event(event: EventKind, git_ref: &str) -> Result<(), RecordError> {
    let on_tag = git_ref.starts_with("refs/tags/");
    match event {
        EventKind::Tag if !on_tag => Err(invalid(
            "git_ref",
            git_ref,
            "is not under refs/tags/, but the event is 'tag'",
        )),
        EventKind::Push if on_tag => Err(invalid(
            "git_ref",
            git_ref,
            "is a tag, but the event is 'push' (a tag push is 'tag')",
        )),
        _ => Ok(()),
    }
}

/// Job names as in the pipeline file, images pinned by digest and written exactly as
/// [`ImageRef`] writes them (no tag, no other spelling of the same reference), at most
/// [`MAX_IMAGES`] of them.
fn check_images(images: &BTreeMap<String, String>) -> Result<(), RecordError> {
    if images.len() > MAX_IMAGES {
        return Err(RecordError::Invalid(format!(
            "{} images, more than the limit of {MAX_IMAGES}",
            images.len()
        )));
    }
    for (job, image) in images {
        check_job("images: job", job)?;
        check_len("images: image", image)?;
        if !matches!(ImageRef::parse(image), Ok(pinned) if pinned.to_string() == *image) {
            return Err(invalid(
                &format!("images: image of job '{job}'"),
                image,
                "is not REPOSITORY@sha256:<64 lowercase hex digits>",
            ));
        }
    }
    Ok(())
}

fn parse_time(field: &str, value: &str) -> Result<std::time::SystemTime, RecordError> {
    check_len(field, value)?;
    humantime::parse_rfc3339(value)
        .map_err(|e| invalid(field, value, &format!("is not an RFC 3339 UTC time ({e})")))
}

impl PassRecord {
    /// Checks every field against the format's rules; the first broken rule is the error.
    ///
    /// Both sides call it: the CI before signing (it never signs what the reader would refuse),
    /// the reader after the signature checks out (a trusted CI can still have a bug).
    pub fn validate(&self) -> Result<(), RecordError> {
        if self.version == 0 || self.version > PASS_RECORD_VERSION {
            return Err(RecordError::UnsupportedVersion(self.version));
        }
        check_project(&self.project)?;
        check_git_url(&self.git_url)?;
        check_git_ref(&self.git_ref)?;
        check_event(self.event, &self.git_ref)?;
        if self.version == 1 {
            v1::check_upgraded(self)?;
        }
        if !is_lower_hex(&self.commit, 40) {
            return Err(invalid(
                "commit",
                &self.commit,
                "is not 40 lowercase hex digits",
            ));
        }
        check_job("job", &self.job)?;
        check_sha256("pipeline_sha256", &self.pipeline_sha256)?;
        check_images(&self.images)?;
        check_sha256("log_sha256", &self.log_sha256)?;
        check_text("ci_run_id", &self.ci_run_id)?;
        if self.outputs.len() > MAX_OUTPUTS {
            return Err(RecordError::Invalid(format!(
                "{} outputs, more than the limit of {MAX_OUTPUTS}",
                self.outputs.len()
            )));
        }
        let mut seen = HashSet::with_capacity(self.outputs.len());
        for output in &self.outputs {
            check_output_path(&output.path)?;
            check_sha256("output sha256", &output.sha256)?;
            if !seen.insert(output.path.as_str()) {
                return Err(invalid("output path", &output.path, "is listed twice"));
            }
        }
        let started = parse_time("started_at", &self.started_at)?;
        let finished = parse_time("finished_at", &self.finished_at)?;
        if finished < started {
            return Err(RecordError::Invalid(format!(
                "finished_at {} is before started_at {}",
                quote(&self.finished_at),
                quote(&self.started_at)
            )));
        }
        Ok(())
    }
}

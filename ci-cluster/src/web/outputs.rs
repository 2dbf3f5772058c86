//! `GET /runs/{id}/outputs/{sha256}`: an output of that run, as a download.
//!
//! Only a digest that is an output of the named run is served (the artifact
//! store holds every run's outputs; a link names one run's), the digest must
//! be exactly 64 hex characters before it gets near a path, and the file is
//! always an attachment, never rendered by the browser. An output the
//! retention policy removed answers 410 Gone and says so.

use airlock_pipeline::outputs::human_size;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncReadExt;

use super::{WebError, read_store};
use crate::artifacts::retention::Policy;
use crate::artifacts::{ArtifactStore, LocalArtifacts};
use crate::config::ArtifactsFile;
use crate::kernel::{AppState, now_ms};
use crate::store::{RunId, RunRow};

/// Bytes read per chunk while streaming a file.
const CHUNK: usize = 64 * 1024;

/// Whether `s` is a sha256 in hex.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A `Content-Disposition` filename from an output path: its last component,
/// with anything outside a conservative set replaced, so a crafted file name
/// cannot break out of the header's quotes.
pub fn download_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim_start_matches('.').to_string();
    if clean.is_empty() {
        "output".into()
    } else {
        clean
    }
}

/// Why an output of `run` is not in the artifact store: **410 Gone** when
/// the retention policy removed it (the run finished before the retention
/// window, or there is no window and `max_total_size` removes the oldest), 404
/// otherwise (not stored yet while the run is going, or lost).
fn missing(policy: &ArtifactsFile, run: &RunRow, now_ms: u64) -> WebError {
    if !run.status.is_final() {
        return WebError::not_found(
            "The output is not stored yet: outputs are stored when the run finishes.",
        );
    }
    match Policy::from(policy).keep_since_ms(now_ms) {
        None => WebError::gone(format!(
            "This output expired under the retention policy: the artifact store keeps at most {} \
             and removes the outputs of the oldest runs first (artifacts.max_total_size).",
            human_size(policy.max_total_size.0)
        )),
        Some(since) if run.finished_ms.is_none_or(|f| f < since) => WebError::gone(format!(
            "This output expired under the retention policy: outputs are kept for {} after the \
             last run that produced them finished (artifacts.retention).",
            humantime::format_duration(policy.retention.0.unwrap_or_default())
        )),
        Some(_) => WebError::not_found("The output is no longer stored."),
    }
}

/// `GET /runs/{id}/outputs/{sha256}`.
pub async fn download(
    State(state): State<AppState>,
    Path((id, digest)): Path<(RunId, String)>,
) -> Result<Response, WebError> {
    if !is_sha256_hex(&digest) {
        return Err(WebError::not_found("Not a sha256 digest."));
    }
    let digest = digest.to_ascii_lowercase();
    let wanted = digest.clone();
    let (run, path) = read_store(&state, move |store| {
        let Some(run) = store.run(id)? else {
            return Ok(None);
        };
        let path = store
            .jobs(id)?
            .into_iter()
            .flat_map(|j| j.outputs)
            .find(|o| o.sha256 == wanted)
            .map(|o| o.path);
        Ok(path.map(|path| (run, path)))
    })
    .await?
    .ok_or_else(|| WebError::not_found(format!("Run {id} has no output {digest}.")))?;
    let artifacts = LocalArtifacts::new(state.config.file.data_dir.join("artifacts"));
    let blob = artifacts
        .path(&digest)
        .ok_or_else(|| missing(&state.config.file.artifacts, &run, now_ms()))?;
    let file = match tokio::fs::File::open(&blob).await {
        Ok(file) => file,
        // Removed by the retention sweep since `path` looked.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(missing(&state.config.file.artifacts, &run, now_ms()));
        }
        Err(e) => return Err(WebError::internal(e)),
    };
    let length = file.metadata().await.map_err(WebError::internal)?.len();

    let stream = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let disposition = format!("attachment; filename=\"{}\"", download_name(&path));
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).map_err(WebError::internal)?,
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400, immutable"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_digests_are_checked() {
        assert!(is_sha256_hex(&"a".repeat(64)));
        assert!(
            !is_sha256_hex(&"g".repeat(64))
                && !is_sha256_hex("../../etc/passwd")
                && !is_sha256_hex("")
        );
        assert_eq!(download_name("dist/greet.tar.gz"), "greet.tar.gz");
        assert_eq!(download_name("dist/a\"b\r\n;c.txt"), "a_b___c.txt");
        assert_eq!(download_name("dist/.."), "output");
    }
}

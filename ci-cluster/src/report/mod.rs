//! Reporting a run's verdict back to the forge it came from.
//!
//! The runner builds a [`ReportBody`], the outbox stores it as JSON, and a worker hands it
//! to a [`Reporter`] (in production the [`ForgeReporter`]) until it is delivered or the error
//! is [`ReportError::Permanent`]. Transient failures are retried after [`next_delay_ms`], so
//! a forge being down delays a verdict and never loses it.
//!
//! Secrets (Gerrit HTTP password, GitHub and GitLab tokens) live in [`Secret`]s inside the
//! clients and are only exposed where a request header is built: no error message, log line
//! or `Debug` output carries them.
//!
//! [`Secret`]: crate::secret::Secret

use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::{StatusCode, Url, redirect};
use serde::{Deserialize, Serialize};

use crate::event::ReportTarget;

pub mod gerrit;
pub mod github;
pub mod gitlab;

#[cfg(test)]
mod tests;

pub use gerrit::GerritClient;
pub use github::GithubClient;
pub use gitlab::GitlabClient;

/// What is reported: built by the runner, stored as JSON in the report outbox, sent by a reporter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportBody {
    /// The run's id in the store.
    pub run_id: i64,
    /// Project name as configured.
    pub project: String,
    /// Where the run is.
    pub status: ReportStatus,
    /// Link to the run page.
    pub url: String,
    /// Full ref that was run.
    pub git_ref: String,
    /// Commit that was run.
    pub commit: String,
    /// One line per job, in the order reviewers should read them.
    pub jobs: Vec<JobLine>,
}

/// The run's state as a forge sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportStatus {
    /// The run started (GitHub "pending", GitLab "running"; nothing for Gerrit).
    Pending,
    /// Every selected job passed.
    Passed,
    /// At least one job did not pass.
    Failed,
    /// The run was cancelled (superseded, abandoned, by hand).
    Cancelled,
    /// Airlock could not run the pipeline (bad pipeline file, fetch failure, crash).
    Error,
}

impl ReportStatus {
    /// Lowercase name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Pending => "pending",
            ReportStatus::Passed => "passed",
            ReportStatus::Failed => "failed",
            ReportStatus::Cancelled => "cancelled",
            ReportStatus::Error => "error",
        }
    }

    /// Whether this is a run's last report (anything but `Pending`).
    pub fn is_final(self) -> bool {
        self != ReportStatus::Pending
    }
}

/// One job's outcome in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLine {
    /// Job name from the pipeline file.
    pub name: String,
    /// The job's final state as the engine names it: "passed", "failed", "skipped", "timed out"...
    pub state: String,
    /// Wall time of the job, if it ran.
    pub duration_ms: Option<u64>,
}

/// Why a report was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Retry later: connection error, timeout, 5xx, 429, 408.
    #[error("report failed, will retry: {0}")]
    Transient(String),
    /// Give up: any other 4xx, a bad target, a forge that is not configured.
    #[error("report failed for good: {0}")]
    Permanent(String),
}

impl ReportError {
    /// Whether the outbox should try again later.
    pub fn is_transient(&self) -> bool {
        matches!(self, ReportError::Transient(_))
    }
}

/// Sends one report to one target. Implemented by [`ForgeReporter`]; tests and the outbox
/// worker can substitute their own.
pub trait Reporter: Send + Sync {
    /// Delivers `body` to `target`. `Ok` means the forge accepted it (or there was nothing
    /// to send); the outbox then marks the report done.
    fn report(
        &self,
        target: &ReportTarget,
        body: &ReportBody,
    ) -> impl Future<Output = Result<(), ReportError>> + Send;
}

/// Dispatches each report to the client for its target's forge.
#[derive(Debug, Clone, Default)]
pub struct ForgeReporter {
    gerrit: Option<GerritClient>,
    github: Option<GithubClient>,
    gitlab: Option<GitlabClient>,
}

impl ForgeReporter {
    /// A reporter with the clients of the forges that are configured; a report to any other
    /// forge fails with [`ReportError::Permanent`].
    pub fn new(
        gerrit: Option<GerritClient>,
        github: Option<GithubClient>,
        gitlab: Option<GitlabClient>,
    ) -> Self {
        ForgeReporter {
            gerrit,
            github,
            gitlab,
        }
    }
}

impl Reporter for ForgeReporter {
    async fn report(&self, target: &ReportTarget, body: &ReportBody) -> Result<(), ReportError> {
        match target {
            // Manual and scheduled runs have no forge to tell.
            ReportTarget::None => Ok(()),
            ReportTarget::Gerrit { change, revision } => {
                let client = self
                    .gerrit
                    .as_ref()
                    .ok_or_else(|| not_configured("gerrit"))?;
                client.review(change, revision, body).await
            }
            ReportTarget::Github { repo, sha } => {
                let client = self
                    .github
                    .as_ref()
                    .ok_or_else(|| not_configured("github"))?;
                client.status(repo, sha, body).await
            }
            ReportTarget::Gitlab { project_id, sha } => {
                let client = self
                    .gitlab
                    .as_ref()
                    .ok_or_else(|| not_configured("gitlab"))?;
                client.status(*project_id, sha, body).await
            }
        }
    }
}

fn not_configured(forge: &str) -> ReportError {
    ReportError::Permanent(format!("no {forge} client configured"))
}

/// Backoff for the outbox worker: attempt n (1-based) waits min(base * 2^(n-1), cap) with
/// ±20 % jitter from a caller-given u64 seed (so a test can pin it and many reports that failed
/// together do not all retry in the same instant). Attempt 0 is treated as attempt 1. The result
/// lies in `[d - d/5, d + d/5]` where `d = min(base * 2^(n-1), cap)`. Giving up after a number of
/// attempts is the caller's decision; [`RetryPolicy`] bundles both.
pub fn next_delay_ms(attempt: u32, base_ms: u64, cap_ms: u64, jitter_seed: u64) -> u64 {
    let exponent = attempt.saturating_sub(1);
    // 2^63 is the largest power of two in a u64; beyond it (and on overflow) the cap applies anyway.
    let factor = 1u64.checked_shl(exponent).unwrap_or(u64::MAX);
    let delay = base_ms.saturating_mul(factor).min(cap_ms);
    let span = delay / 5;
    if span == 0 {
        return delay;
    }
    // Mix the attempt in, so one report's successive retries do not all land on the same side.
    let random = splitmix64(jitter_seed ^ u64::from(attempt).rotate_left(32));
    // `span * 2 + 1` cannot overflow: span <= u64::MAX / 5.
    let offset = random % (span * 2 + 1);
    (delay - span).saturating_add(offset)
}

/// One step of SplitMix64: a cheap, well-mixed hash of the seed. Jitter needs spread, not secrecy.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// When the outbox retries a transient failure, and when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub base_ms: u64,
    /// Longest delay between two attempts.
    pub cap_ms: u64,
    /// Attempts (including the first) after which a report is given up.
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// The report outbox's policy (the only one): 0.5 s doubling up to 1 min, 60 attempts, so a
    /// report survives a forge outage of about an hour before it is given up.
    pub const REPORTS: RetryPolicy = RetryPolicy {
        base_ms: 500,
        cap_ms: 60_000,
        max_attempts: 60,
    };
}

impl Default for RetryPolicy {
    /// [`RetryPolicy::REPORTS`].
    fn default() -> Self {
        RetryPolicy::REPORTS
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based), or `None` once `max_attempts`
    /// attempts have failed and the report should be given up.
    pub fn delay_after(&self, attempt: u32, jitter_seed: u64) -> Option<Duration> {
        (attempt < self.max_attempts).then(|| {
            Duration::from_millis(next_delay_ms(
                attempt,
                self.base_ms,
                self.cap_ms,
                jitter_seed,
            ))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Text shared by the clients.

/// States that count as "did not pass" in a summary: everything but passed and skipped, so an
/// engine state this module has never heard of is shown rather than hidden.
fn job_failed(job: &JobLine) -> bool {
    !matches!(job.state.as_str(), "passed" | "skipped")
}

/// A symbol per job state, for Gerrit's message (same symbols as `ci-cluster run`).
fn state_symbol(state: &str) -> &'static str {
    match state {
        "passed" => "✔",
        "failed" | "timed out" | "error" => "✘",
        "skipped" => "○",
        "cancelled" | "canceled" => "⊘",
        "running" | "pending" | "queued" => "▶",
        _ => "•",
    }
}

/// `1.2s`, `2m 05s`, `1h 02m`: precise where it matters, short where it does not.
pub fn format_duration(ms: u64) -> String {
    let secs = ms / 1000;
    if secs < 60 {
        format!("{secs}.{}s", (ms % 1000) / 100)
    } else if secs < 3600 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// Job names and states come from the change under test (its pipeline file): keep them to
/// one line so they cannot forge extra lines in a review message.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// One-line summary for commit-status descriptions (GitHub allows 140 characters; GitLab's
/// UI shows about as much), truncated on a character boundary.
pub fn summary(body: &ReportBody) -> String {
    let total = body.jobs.len();
    let failed: Vec<&JobLine> = body.jobs.iter().filter(|j| job_failed(j)).collect();
    let failed_names = || {
        failed
            .iter()
            .map(|j| one_line(&j.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = match body.status {
        ReportStatus::Pending if total == 0 => format!("Airlock run {} started", body.run_id),
        ReportStatus::Pending => format!(
            "Airlock run {}: running {}",
            body.run_id,
            plural(total, "job")
        ),
        ReportStatus::Passed if total == 0 => "no jobs selected for this event".to_owned(),
        ReportStatus::Passed => format!("{} passed", plural(total, "job")),
        ReportStatus::Failed => format!(
            "{} of {} did not pass: {}",
            failed.len(),
            plural(total, "job"),
            failed_names()
        ),
        ReportStatus::Error if failed.is_empty() => "Airlock could not run the pipeline".to_owned(),
        ReportStatus::Error => format!("Airlock could not finish the pipeline: {}", failed_names()),
        ReportStatus::Cancelled => format!("Airlock run {} was cancelled", body.run_id),
    };
    truncate_chars(&text, 140)
}

fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The first line of a verdict, e.g. `Airlock build failed: 1 of 3 jobs did not pass.`
fn headline(body: &ReportBody) -> String {
    let total = body.jobs.len();
    let failed = body.jobs.iter().filter(|j| job_failed(j)).count();
    match body.status {
        ReportStatus::Pending => "Airlock build started.".to_owned(),
        ReportStatus::Passed if total == 0 => {
            "Airlock build passed: no jobs selected for this event.".to_owned()
        }
        ReportStatus::Passed => format!("Airlock build passed: {}.", plural(total, "job")),
        ReportStatus::Failed => format!(
            "Airlock build failed: {failed} of {} did not pass.",
            plural(total, "job")
        ),
        ReportStatus::Error => {
            "Airlock build error: the pipeline could not be run to the end.".to_owned()
        }
        ReportStatus::Cancelled => "Airlock build cancelled.".to_owned(),
    }
}

/// Jobs listed in one message at most; a pipeline with more is summarised (Gerrit limits the
/// size of a change message, and nobody reads line 500).
const MAX_JOB_LINES: usize = 200;

/// The review message for Gerrit, in its plain-text style: a headline paragraph, a `- ` list
/// (which Gerrit renders as a list, one job per line) and the link to the run:
///
/// ```text
/// Airlock build failed: 1 of 2 jobs did not pass.
///
/// - ✔ test passed (1.2s)
/// - ✘ lint failed (3.4s)
///
/// Run 42 of demo (refs/changes/34/1234/2 at 53634573c37a): https://ci.example/runs/42
/// ```
pub fn review_message(body: &ReportBody) -> String {
    let mut out = headline(body);
    out.push('\n');
    if !body.jobs.is_empty() {
        out.push('\n');
        for job in body.jobs.iter().take(MAX_JOB_LINES) {
            let state = one_line(&job.state);
            let _ = write!(
                out,
                "- {} {} {}",
                state_symbol(&job.state),
                one_line(&job.name),
                state
            );
            if let Some(ms) = job.duration_ms {
                let _ = write!(out, " ({})", format_duration(ms));
            }
            out.push('\n');
        }
        if body.jobs.len() > MAX_JOB_LINES {
            let _ = writeln!(
                out,
                "- … and {} more (see the run)",
                body.jobs.len() - MAX_JOB_LINES
            );
        }
    }
    let short_commit: String = body.commit.chars().take(12).collect();
    let _ = write!(
        out,
        "\nRun {} of {} ({} at {}): {}",
        body.run_id,
        one_line(&body.project),
        one_line(&body.git_ref),
        one_line(&short_commit),
        one_line(&body.url)
    );
    out
}

// ---------------------------------------------------------------------------------------------
// HTTP shared by the clients.

/// Connecting to a forge takes longer than this only when something is wrong.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole request, response body included: the outbox retries rather than waits.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(15);
/// Forge answers are small JSON documents; more than this is not a forge talking.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Response text quoted in an error message.
const MAX_QUOTED_CHARS: usize = 300;

/// The HTTP client every forge client uses: rustls, connect and total timeouts, and redirects
/// followed only on the same scheme, host and port. A token header (`PRIVATE-TOKEN`, a bearer
/// token sent over a proxy) must never follow a redirect to another host, and reqwest only
/// strips `Authorization` on such a redirect.
fn http_client() -> Result<reqwest::Client, ReportError> {
    let policy = redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.stop();
        };
        let next = attempt.url();
        let same_origin = next.scheme() == first.scheme()
            && next.host_str() == first.host_str()
            && next.port_or_known_default() == first.port_or_known_default();
        if !same_origin {
            // Returned to the caller as a 3xx, which is a permanent failure.
            attempt.stop()
        } else if attempt.previous().len() > 5 {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TOTAL_TIMEOUT)
        .redirect(policy)
        .user_agent("airlock-ci")
        .build()
        .map_err(|err| ReportError::Permanent(format!("cannot build the HTTP client: {err}")))
}

/// Parses a configured API base URL. Credentials in the URL are refused: they would end up in
/// every error message that names the URL; they belong in the secret settings.
fn parse_base_url(forge: &str, raw: &str) -> Result<Url, ReportError> {
    let bad = |why: &str| ReportError::Permanent(format!("{forge}: invalid API base URL: {why}"));
    // The URL's text is not echoed in errors: a misconfigured one may hold a password.
    let url = Url::parse(raw.trim()).map_err(|err| bad(&err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "it must not contain credentials; configure them as secrets",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not have a query or fragment"));
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(bad("it has no host"));
    }
    Ok(url)
}

/// `base` with `segments` appended, each percent-encoded as one path segment (so a Gerrit
/// project `team/app` becomes `team%2Fapp`, as Gerrit requires).
fn endpoint(forge: &str, base: &Url, segments: &[&str]) -> Result<Url, ReportError> {
    for segment in segments {
        // The url crate silently drops "." and ".." segments, which would change the endpoint.
        if segment.is_empty() || *segment == "." || *segment == ".." {
            return Err(ReportError::Permanent(format!(
                "{forge}: bad target: invalid path segment {segment:?}"
            )));
        }
    }
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| ReportError::Permanent(format!("{forge}: API base URL cannot take a path")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// A commit id as GitHub and GitLab take it: hex, at most 64 characters (SHA-256 repositories).
fn check_sha(forge: &str, sha: &str) -> Result<(), ReportError> {
    if sha.is_empty() || sha.len() > 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ReportError::Permanent(format!(
            "{forge}: bad target: {sha:?} is not a commit id"
        )));
    }
    Ok(())
}

/// A header value carrying a credential, marked sensitive so it stays out of reqwest's and
/// hyper's `Debug` output. The error does not show the value.
fn secret_header(forge: &str, value: &str) -> Result<HeaderValue, ReportError> {
    let mut value = HeaderValue::try_from(value).map_err(|_| {
        ReportError::Permanent(format!(
            "{forge}: the API token is not a valid header value"
        ))
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// A forge's answer, read up to [`MAX_RESPONSE_BYTES`].
struct Answer {
    status: StatusCode,
    rate_limited: bool,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` and reads the answer. Failures to get an answer at all (connect, timeout,
/// reset) are transient; an error while building the request is permanent.
async fn send(forge: &str, request: reqwest::RequestBuilder) -> Result<Answer, ReportError> {
    let mut response = request
        .send()
        .await
        .map_err(|err| transport_error(forge, &err))?;
    let status = response.status();
    let headers = response.headers();
    // GitHub answers 403 (not 429) when a rate limit is hit; these headers tell it apart from
    // a permission problem.
    let rate_limited = headers.get("retry-after").is_some()
        || headers
            .get("x-ratelimit-remaining")
            .is_some_and(|v| v.as_bytes() == b"0");
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| transport_error(forge, &err))?
    {
        let room = MAX_RESPONSE_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_RESPONSE_BYTES {
            break;
        }
    }
    Ok(Answer {
        status,
        rate_limited,
        body,
    })
}

/// reqwest's messages name the URL (which carries no secret: credentials are refused in base
/// URLs and travel in headers only) and the cause.
fn transport_error(forge: &str, err: &reqwest::Error) -> ReportError {
    let message = format!(
        "{forge}: {}",
        airlock_pipeline::error_chain::error_chain(err)
    );
    if err.is_builder() || err.is_redirect() {
        ReportError::Permanent(message)
    } else {
        ReportError::Transient(message)
    }
}

/// Maps a non-2xx answer to an error: 408, 429, 5xx and rate-limited 403 are worth retrying;
/// every other status (other 4xx, a refused cross-host redirect) will not get better by itself.
fn status_error(forge: &str, what: &str, answer: &Answer) -> ReportError {
    let status = answer.status;
    let quoted = truncate_chars(
        &one_line(strip_xssi_prefix(&answer.text()).trim()),
        MAX_QUOTED_CHARS,
    );
    let message = format!("{forge}: {what}: HTTP {status}: {quoted}");
    if is_transient_status(status) || (status == StatusCode::FORBIDDEN && answer.rate_limited) {
        ReportError::Transient(message)
    } else {
        ReportError::Permanent(message)
    }
}

/// 408 Request Timeout, 429 Too Many Requests and every 5xx.
pub fn is_transient_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// Gerrit starts every JSON response with the XSSI guard line `)]}'`; returns the JSON after
/// it. Text without the guard is returned unchanged (a proxy's error page, an older server).
pub fn strip_xssi_prefix(text: &str) -> &str {
    match text.strip_prefix(")]}'") {
        Some(rest) => rest.split_once('\n').map_or(rest, |(_, json)| json),
        None => text,
    }
}

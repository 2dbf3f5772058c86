//! Reading the CI cluster's public, read-only JSON API (`/api/v1/runs/...`) for the trace.
//!
//! Only an auditor's `audit trace` calls this, never the builder's loop: the builder stays
//! without any connection to the CI cluster. The API is untrusted here: responses are
//! size-limited, and nothing read from it is used to decide anything, only printed.

use serde_json::Value;

/// Largest API response read.
const MAX_RESPONSE: usize = 1024 * 1024;

/// The run as the CI reports it, reduced to what the trace prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiRun {
    /// Run id.
    pub id: i64,
    /// `passed`, `failed`, ...
    pub status: String,
    /// `change`, `push`, ...
    pub kind: String,
    /// Ref.
    pub git_ref: String,
    /// Commit.
    pub commit: String,
    /// Change number for change events.
    pub change: Option<String>,
    /// Patchset.
    pub patchset: Option<u64>,
    /// Title.
    pub title: String,
    /// Who caused it.
    pub author: String,
    /// Forge.
    pub forge: String,
    /// Event id and forge delivery id.
    pub event: String,
    /// The run's page.
    pub url: String,
    /// Reports sent to the forge (e.g. `Verified +1`).
    pub reports: Vec<String>,
}

fn text(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Parses a `RunDetail` (or a bare `Run` from a listing, then without event and reports).
pub fn parse_run(v: &Value) -> Option<CiRun> {
    let run = v.get("run").unwrap_or(v);
    let reports = v
        .get("reports")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .filter(|r| !r.get("sent_ms").is_none_or(Value::is_null))
                .map(|r| {
                    let forge = text(r, "/target/forge");
                    let status = text(r, "/body/status");
                    // The CI's Gerrit client turns a verdict into a Verified vote and sends
                    // nothing for "pending"; GitHub and GitLab get a commit status.
                    match (forge.as_str(), status.as_str()) {
                        ("gerrit", "passed") => "Verified +1 on Gerrit".to_owned(),
                        ("gerrit", "failed" | "error") => "Verified -1 on Gerrit".to_owned(),
                        ("gerrit", _) => String::new(),
                        (forge, status) => format!("status {status} on {forge}"),
                    }
                })
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Some(CiRun {
        id: run.get("id")?.as_i64()?,
        status: text(run, "/status"),
        kind: text(run, "/kind"),
        git_ref: text(run, "/git_ref"),
        commit: text(run, "/commit"),
        change: run
            .get("change_number")
            .and_then(Value::as_str)
            .map(str::to_owned),
        patchset: run.get("patchset").and_then(Value::as_u64),
        title: text(run, "/title"),
        author: text(run, "/author"),
        forge: text(run, "/forge"),
        event: match v.get("event") {
            Some(e) => format!(
                "event {} (delivery {})",
                text(e, "/id"),
                text(e, "/delivery")
            ),
            None => format!("event {}", text(run, "/event_id")),
        },
        url: text(run, "/url"),
        reports,
    })
}

/// A small client for the CI's API.
#[derive(Debug, Clone)]
pub struct CiApi {
    base: String,
    http: reqwest::Client,
}

impl CiApi {
    /// `base` is the CI's public URL, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(CiApi {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            if body.len() + chunk.len() > MAX_RESPONSE {
                return Err(format!(
                    "GET {url}: response larger than {MAX_RESPONSE} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: {e}"))
    }

    /// `GET /api/v1/runs/{id}`.
    pub async fn run(&self, id: &str) -> Result<CiRun, String> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("CI run id {id:?} is not a number"));
        }
        let v = self.get(&format!("/api/v1/runs/{id}")).await?;
        parse_run(&v).ok_or_else(|| "unexpected run document".to_owned())
    }

    /// Every run of `commit` (newest first), each with its reports.
    pub async fn runs_of_commit(&self, commit: &str) -> Result<Vec<CiRun>, String> {
        if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("commit {commit:?} is not a full id"));
        }
        let page = self
            .get(&format!("/api/v1/runs?commit={commit}&per_page=50"))
            .await?;
        let mut out = Vec::new();
        for r in page
            .get("runs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(id) = r.get("id").and_then(Value::as_i64) {
                out.push(self.run(&id.to_string()).await?);
            }
        }
        Ok(out)
    }
}

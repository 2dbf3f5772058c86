//! A small typed client of the server's `/api/v1` for `ci-cluster runs`.

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::api::responses::ApiError;

/// How long one request may take before the command gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request failed, in the words the command prints.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered at the server's address.
    #[error(
        "cannot reach the server at {server}: {cause} (is `ci-cluster serve` running there? Set --server or AIRLOCK_SERVER)"
    )]
    Unreachable {
        /// Base URL.
        server: String,
        /// The innermost cause (connection refused, DNS, timeout…).
        cause: String,
    },
    /// 404: the run (or job) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Any other refusal.
    #[error("the server answered {status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The refusal's message.
        message: String,
    },
    /// The answer is not what this client understands (another version?).
    #[error("unexpected answer from {url}: {why}")]
    Invalid {
        /// What was requested.
        url: String,
        /// What was wrong with it.
        why: String,
    },
}

/// The server's API.
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Result<Client, ClientError> {
        let base = base.trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Invalid {
                url: base.clone(),
                why: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(Client { base, http })
    }

    /// GETs `path` (with its query) under the base URL and decodes the JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                server: self.base.clone(),
                cause: innermost(&e),
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable {
                server: self.base.clone(),
                cause: innermost(&e),
            })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Invalid {
                url,
                why: e.to_string(),
            });
        }
        let message = serde_json::from_slice::<ApiError>(&bytes)
            .map(|e| e.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).chars().take(200).collect());
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(ClientError::NotFound(message));
        }
        Err(ClientError::Refused {
            status: status.as_u16(),
            message,
        })
    }
}

/// The deepest source of an error: "Connection refused (os error 111)"
/// says more than reqwest's "error sending request for url".
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Percent-encodes a query or path value (RFC 3986 unreserved kept).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

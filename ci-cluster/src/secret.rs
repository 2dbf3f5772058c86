//! Secrets read from files or environment variables. A `Secret` never
//! prints its value: `Debug` and `Display` show `[redacted]`, so it cannot
//! leak into a log line, an error or an API response by accident.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// A secret value. Compare with [`Secret::matches`] (constant time).
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (tests and already-loaded values).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for the one place that must send it (an HTTP header, an HMAC key).
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Constant-time comparison with a presented value.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(presented).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where a secret comes from, as written in the config: `{ file = "/run/secrets/x" }`
/// or `{ env = "GITHUB_WEBHOOK_SECRET" }`. Never the value itself.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretSource {
    /// A file whose contents (trailing newline removed) are the secret.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

/// Why a secret could not be loaded. Names the source, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("cannot read secret file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The variable is not set.
    #[error("environment variable {0} is not set")]
    Env(String),
    /// The secret is empty.
    #[error("secret from {0} is empty")]
    Empty(String),
}

impl SecretSource {
    /// Reads the secret.
    pub fn load(&self) -> Result<Secret, SecretError> {
        let (value, name) = match self {
            SecretSource::File(path) => (
                std::fs::read_to_string(path).map_err(|source| SecretError::File {
                    path: path.clone(),
                    source,
                })?,
                path.display().to_string(),
            ),
            SecretSource::Env(var) => (
                std::env::var(var).map_err(|_| SecretError::Env(var.clone()))?,
                var.clone(),
            ),
        };
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        if value.is_empty() {
            return Err(SecretError::Empty(name));
        }
        Ok(Secret(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s} {s:?}").contains("hunter2"));
        assert!(s.matches(b"hunter2") && !s.matches(b"hunter3") && !s.matches(b"hunter"));
    }
}

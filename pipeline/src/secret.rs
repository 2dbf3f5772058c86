//! The one secret type of every Airlock process: webhook secrets and API tokens on the CI
//! cluster, key passwords and Vault tokens on the builder, the hook token of the reconciler.
//!
//! A [`Secret`] never prints its value (`Debug` and `Display` show `[redacted]`, so it cannot
//! leak into a log line, an error or an API response by accident), is wiped from memory when
//! dropped, and is compared in constant time. A [`SecretSource`] is what a config file holds:
//! where the secret is (`{ file = "/run/secrets/x" }` or `{ env = "VAR" }`), never the value.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

/// A password, token or shared secret. Its memory is wiped when dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value already in memory.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// Reads the secret from an environment variable. An unset variable is an error that names
    /// the variable; an empty one is an empty secret (cosign's empty password).
    pub fn from_env(var: &str) -> Result<Self, SecretError> {
        std::env::var(var)
            .map(Self::new)
            .map_err(|_| SecretError::Missing {
                source_name: format!("environment variable {var}"),
            })
    }

    /// Reads the secret from a file. One trailing newline (`\n` or `\r\n`) is removed because
    /// editors and `echo` add one that is not part of the secret.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let raw =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| SecretError::Read {
                    path: path.to_path_buf(),
                    source,
                })?,
            );
        let trimmed = raw
            .strip_suffix("\r\n")
            .or_else(|| raw.strip_suffix('\n'))
            .unwrap_or(&raw);
        Ok(Self::new(trimmed))
    }

    /// The value, for the one place that must hand it on (an HTTP header, an HMAC key, a KDF).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a presented value.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq as _;
        self.0.as_bytes().ct_eq(presented).into()
    }

    /// True for an empty secret.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a secret could not be read. Names where it was looked for, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The source named in the configuration is not there.
    #[error("no secret found in the {source_name}")]
    Missing {
        /// Where the secret was looked for.
        source_name: String,
    },
    /// The file could not be read.
    #[error("could not read the secret file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The secret is empty where an empty one would accept anyone.
    #[error("the secret from {source_name} is empty")]
    Empty {
        /// Where it was read from.
        source_name: String,
    },
}

/// Where a secret comes from: `{ file = "/run/secrets/x" }` or `{ env = "VAR" }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretSource {
    /// A file whose contents (one trailing newline removed) are the secret.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

impl SecretSource {
    /// Reads the secret (an empty one is allowed: a key password may be empty).
    pub fn load(&self) -> Result<Secret, SecretError> {
        match self {
            SecretSource::File(p) => Secret::from_file(p),
            SecretSource::Env(var) => Secret::from_env(var),
        }
    }

    /// Reads a secret that authenticates others (a webhook secret, an API token): an empty one
    /// would accept anyone, so it is refused.
    pub fn load_non_empty(&self) -> Result<Secret, SecretError> {
        let secret = self.load()?;
        if secret.is_empty() {
            return Err(SecretError::Empty {
                source_name: self.to_string(),
            });
        }
        Ok(secret)
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "file {}", p.display()),
            SecretSource::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn never_printed_and_compared_in_full() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
        assert!(s.matches(b"hunter2") && !s.matches(b"hunter3") && !s.matches(b"hunter"));
    }

    #[test]
    fn file_loses_one_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "pa ss\n\n").unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "pa ss\n");
        std::fs::write(&p, "x\r\n").unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "x");
    }

    #[test]
    fn missing_and_empty_sources_are_named_never_shown() {
        let err = Secret::from_env("AIRLOCK_TEST_SURELY_UNSET_VAR").unwrap_err();
        assert!(err.to_string().contains("AIRLOCK_TEST_SURELY_UNSET_VAR"));
        let err = Secret::from_file(Path::new("/nonexistent/pw")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pw"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty");
        std::fs::write(&p, "\n").unwrap();
        let source = SecretSource::File(p.clone());
        assert!(source.load().unwrap().is_empty());
        let err = source.load_non_empty().unwrap_err();
        assert!(matches!(err, SecretError::Empty { .. }), "{err}");
        assert!(err.to_string().contains(&p.display().to_string()), "{err}");
    }
}

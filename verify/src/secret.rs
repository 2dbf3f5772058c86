//! A password or token held in memory. It is never printed: Debug and Display
//! show `[redacted]`, so a secret cannot leak through a log line, an error or
//! a `{:?}` of a struct that holds one.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use zeroize::Zeroizing;

/// A password or token. Its memory is wiped when dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value already in memory.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// Reads the secret from an environment variable (cosign reads its key
    /// password from `COSIGN_PASSWORD`). An unset variable is an error that
    /// names the variable; an empty one is a valid (empty) password, as in cosign.
    pub fn from_env(var: &str) -> Result<Self, SecretError> {
        std::env::var(var)
            .map(Self::new)
            .map_err(|_| SecretError::Missing {
                source_name: format!("environment variable {var}"),
            })
    }

    /// Reads the secret from a file. One trailing newline (`\n` or `\r\n`) is
    /// removed because editors and `echo` add one that is not part of the password.
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

    /// The value, for the one place that must hand it on (a KDF, an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
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
    fn missing_sources_are_named() {
        let err = Secret::from_env("AIRLOCK_TEST_SURELY_UNSET_VAR").unwrap_err();
        assert!(err.to_string().contains("AIRLOCK_TEST_SURELY_UNSET_VAR"));
        let err = Secret::from_file(Path::new("/nonexistent/pw")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pw"));
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
        source: std::io::Error,
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
    /// Reads the secret; errors name the source, never the value.
    pub fn load(&self) -> Result<Secret, SecretError> {
        match self {
            SecretSource::File(p) => Secret::from_file(p),
            SecretSource::Env(var) => Secret::from_env(var),
        }
    }
}

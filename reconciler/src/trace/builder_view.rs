//! What `audit trace` reads of the builder's `builder.toml`: where its decision log and outbox
//! are, which CI origin keys it trusts, and which registries are plain HTTP.
//!
//! Only these fields are read; the builder's signing and project sections are its own business
//! and are not parsed here (the reconciler links no signing or Vault code to parse them).
//! Relative paths are resolved against the file's directory, as the builder does.

use std::path::{Path, PathBuf};

use airlock_verify::oci::RegistrySection;
use serde::Deserialize;

/// The part of `builder.toml` a trace needs.
#[derive(Debug, Clone, Deserialize)]
pub struct BuilderView {
    /// The builder's data directory (its decision log is there).
    pub data_dir: PathBuf,
    /// Where the CI cluster writes pass records.
    pub outbox_dir: PathBuf,
    /// CI origin public keys (hex), to check pass records.
    pub origin_keys: Vec<PathBuf>,
    /// `[registry]`.
    #[serde(default)]
    pub registry: RegistrySection,
}

/// Why `builder.toml` could not be read for a trace.
#[derive(Debug, thiserror::Error)]
pub enum BuilderViewError {
    /// The file could not be read.
    #[error("could not read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// It is not valid TOML or lacks a field the trace needs.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Largest builder.toml read (real ones are a few KiB).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

impl BuilderView {
    /// Reads the fields a trace needs from the builder's configuration file.
    pub fn load(path: &Path) -> Result<Self, BuilderViewError> {
        use std::io::Read as _;
        let read_err = |source| BuilderViewError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(read_err)?
            .take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(BuilderViewError::Invalid {
                path: path.to_path_buf(),
                message: format!("larger than {MAX_CONFIG_BYTES} bytes"),
            });
        }
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|message| BuilderViewError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses the text of a builder.toml; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let mut view: BuilderView = toml::from_str(text).map_err(|e| e.to_string())?;
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut view.data_dir);
        abs(&mut view.outbox_dir);
        view.origin_keys.iter_mut().for_each(abs);
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_its_fields_ignores_the_signing_section_and_resolves_paths() {
        let text = r#"
data_dir = "data"
outbox_dir = "/srv/outbox"
origin_keys = ["keys/ci.pub"]
builder_id = "https://airlock.example/trusted-builder/v1"

[registry]
insecure = ["127.0.0.1:5000"]

[signing]
backend = "vault-transit"
address = "https://vault.internal:8200"
"#;
        let view = BuilderView::parse(text, Path::new("/etc/airlock")).unwrap();
        assert_eq!(view.data_dir, Path::new("/etc/airlock/data"));
        assert_eq!(view.outbox_dir, Path::new("/srv/outbox"));
        assert_eq!(
            view.origin_keys,
            vec![PathBuf::from("/etc/airlock/keys/ci.pub")]
        );
        assert_eq!(view.registry.insecure, vec!["127.0.0.1:5000".to_string()]);
        let err = BuilderView::parse("data_dir = \"d\"", Path::new("/")).unwrap_err();
        assert!(err.contains("outbox_dir"), "{err}");
    }
}

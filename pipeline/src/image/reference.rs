//! An image reference pinned by digest: `REGISTRY/REPOSITORY@sha256:<64 hex>`.
//!
//! A tag names different bytes tomorrow, so a job's `image:` (and a published image's `base:`)
//! must carry the digest; the tag, if written before it, is only a comment and is dropped.

use std::fmt;

use serde::{Serialize, Serializer};

/// Why a string is not a pinned image reference: what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ImageRefError {
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: String,
}

/// `REPOSITORY@sha256:<hex>`, where the repository's first component is its registry
/// (`127.0.0.1:5000/toolchain`, `docker.io/library/busybox`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    repository: String,
    digest: String,
}

impl ImageRef {
    /// Parses `REPOSITORY[:TAG]@sha256:<64 lowercase hex>`.
    pub fn parse(text: &str) -> Result<ImageRef, ImageRefError> {
        let err = |message: String, help: &str| ImageRefError {
            message,
            help: help.to_string(),
        };
        if text.trim().is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err(
                format!("'{text}' is not an image reference"),
                "write `REPOSITORY@sha256:<digest>`, e.g. `registry.example/toolchain@sha256:…`",
            ));
        }
        let Some((repository, digest)) = text.split_once('@') else {
            let repository = strip_tag(text);
            return Err(ImageRefError {
                message: format!("image '{text}' is given by tag, not by digest"),
                help: format!(
                    "pin it: `{repository}@sha256:<digest>` (`skopeo inspect docker://{text}` prints the digest)"
                ),
            });
        };
        let hex = digest.strip_prefix("sha256:").unwrap_or("");
        let hex_ok = hex.len() == 64
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        let repository = strip_tag(repository);
        let repo_ok = !repository.is_empty()
            && repository.len() <= 255
            && !repository.starts_with('/')
            && !repository.ends_with('/')
            && repository
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..")
            && repository
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c));
        if !hex_ok || !repo_ok {
            return Err(err(
                format!("image '{text}' is not `REPOSITORY@sha256:<64 lowercase hex>`"),
                "copy the digest exactly as the registry reports it",
            ));
        }
        Ok(ImageRef {
            repository: repository.to_string(),
            digest: digest.to_string(),
        })
    }

    /// The repository with its registry, e.g. `127.0.0.1:5000/toolchain`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `sha256:<hex>`.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The registry (`host[:port]`): the first component when it looks like a host (has a `.`
    /// or `:`, or is `localhost`), else Docker Hub, as every container tool reads it.
    pub fn registry(&self) -> &str {
        match self.repository.split_once('/') {
            Some((first, _))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                first
            }
            _ => "docker.io",
        }
    }

    /// The repository path inside its registry (`toolchain`, `library/busybox`).
    pub fn path(&self) -> String {
        let path = match self.repository.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                rest
            }
            _ => self.repository.as_str(),
        };
        // Docker Hub's official images live under `library/`, however the name is written.
        let hub = matches!(self.registry(), "docker.io" | "index.docker.io");
        if hub && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        }
    }

    /// The same repository path and digest in another registry (a mirror the trusted builder
    /// keeps for itself): the digest pins the content wherever it is fetched from.
    pub fn in_registry(&self, registry: &str) -> ImageRef {
        ImageRef {
            repository: format!("{registry}/{}", self.path()),
            digest: self.digest.clone(),
        }
    }

    /// The digest's hex, safe as a file name.
    pub fn digest_hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }
}

/// `repo:tag` → `repo` (a `:` after the last `/` is a tag, one before it a port).
fn strip_tag(text: &str) -> &str {
    match text.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => text,
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.repository, self.digest)
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ImageRefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ImageRef::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn pinned_references_parse_and_name_their_registry() {
        let r =
            ImageRef::parse(&format!("127.0.0.1:5000/tools/cc:12@sha256:{HEX}")).expect("parse");
        assert_eq!(r.repository(), "127.0.0.1:5000/tools/cc");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.path(), "tools/cc");
        assert_eq!(
            r.to_string(),
            format!("127.0.0.1:5000/tools/cc@sha256:{HEX}")
        );
        let hub = ImageRef::parse(&format!("busybox@sha256:{HEX}")).expect("parse");
        assert_eq!(
            (hub.registry(), hub.path().as_str()),
            ("docker.io", "library/busybox")
        );
        // However Docker Hub is written, official images are under `library/`; others not.
        for (text, path) in [
            ("docker.io/busybox", "library/busybox"),
            ("index.docker.io/busybox", "library/busybox"),
            ("docker.io/acme/tool", "acme/tool"),
            ("acme/tool", "acme/tool"),
            ("localhost/busybox", "busybox"),
        ] {
            let r = ImageRef::parse(&format!("{text}@sha256:{HEX}")).expect("parse");
            assert_eq!(r.path(), path, "{text}");
        }
        let moved = r.in_registry("mirror.internal:443");
        assert_eq!(
            moved.to_string(),
            format!("mirror.internal:443/tools/cc@sha256:{HEX}")
        );
    }

    #[test]
    fn tags_and_malformed_digests_are_refused_with_a_hint() {
        let tag = ImageRef::parse("debian:bookworm").expect_err("tag");
        assert!(tag.message.contains("by tag"), "{tag:?}");
        assert!(tag.help.contains("debian@sha256:"), "{tag:?}");
        for bad in [
            String::new(),
            "a b@sha256:x".into(),
            format!("repo@sha256:{}", &HEX[1..]),
            format!("repo@sha256:{}", HEX.to_uppercase()),
            format!("repo@sha512:{HEX}"),
            format!("/abs@sha256:{HEX}"),
            format!("a/../b@sha256:{HEX}"),
            format!("@sha256:{HEX}"),
        ] {
            assert!(ImageRef::parse(&bad).is_err(), "{bad:?} was accepted");
        }
    }
}

//! Job images: a job names an OCI image pinned by digest and runs with that image as its root.
//!
//! - [`reference`]: `REPOSITORY@sha256:…`, the only form a job may name.
//! - [`fetch`]: the registry client (oci-client): manifests and blobs by digest, each checked
//!   against the digest that names it and size-limited while it is read, before it is parsed
//!   (manifests through `capped`, since oci-client reads a manifest whole).
//! - [`unpack`]: layers applied onto a root filesystem through [`crate::tree::TreeRoot`], so a
//!   hostile layer cannot write outside it (no absolute or `..` paths, links never followed on
//!   the way, no device nodes, no setuid bits; whiteouts and opaque directories honoured).
//! - [`cache`]: unpacked root filesystems kept by digest, shared by every job that names it;
//!   [`space`] claims every write of a pull against the host's free space and reserve while it
//!   happens, [`retention`] prunes entries by age and size, never one a job is using.
//!
//! Both planes use this: the CI cluster pulls from the registry the job names, the trusted
//! builder only from its own registry (a mirror: same path, same digest).

pub mod address;
pub mod cache;
pub mod capped;
pub mod fetch;
pub mod manifest;
pub mod reference;
mod retention;
mod space;
pub mod unpack;

use std::path::PathBuf;

pub use cache::{ImageCache, ImageSettings, Rootfs};
pub use fetch::RegistryClient;
pub use reference::{ImageRef, ImageRefError};

/// Why an image could not be made ready for a job.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The registry could not be reached or refused the request.
    #[error("registry {registry}: {reason}")]
    Registry {
        /// `host[:port]`.
        registry: String,
        /// What went wrong.
        reason: String,
    },
    /// Fetched bytes do not hash to the digest that names them.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was fetched.
        what: String,
        /// The pinned digest.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// Something is larger than its limit (or than its descriptor says).
    #[error("{what} is larger than {max} bytes")]
    TooLarge {
        /// What.
        what: String,
        /// The limit.
        max: u64,
    },
    /// A manifest or config is not what the OCI specification describes.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What.
        what: String,
        /// Why.
        reason: String,
    },
    /// Valid, but not something this runner runs (zstd layers, no linux/amd64 image).
    #[error("unsupported {what}: {reason}")]
    Unsupported {
        /// What.
        what: String,
        /// Why.
        reason: String,
    },
    /// A layer entry was refused; nothing of the image is used.
    #[error("layer {layer}: entry '{entry}': {reason}")]
    UnsafeEntry {
        /// The layer's digest.
        layer: String,
        /// The entry's path as written in the layer.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// A local file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            path: path.into(),
            source,
        }
    }
}

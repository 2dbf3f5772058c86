//! The one secret type ([`airlock_pipeline::secret`]), re-exported for the trusted side.

pub use airlock_pipeline::secret::{Secret, SecretError, SecretSource};

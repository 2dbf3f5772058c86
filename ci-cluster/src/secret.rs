//! Secrets read from files or environment variables: the one secret type of every Airlock
//! process ([`airlock_pipeline::secret`]), re-exported. Webhook secrets and tokens are loaded
//! with `load_non_empty`: an empty one would accept anyone.

pub use airlock_pipeline::secret::{Secret, SecretError, SecretSource};

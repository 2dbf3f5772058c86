//! Signing keys behind one trait: a local cosign key file (the default) and
//! Vault transit (the private key never leaves Vault). Every backend produces
//! what cosign produces and verifies: an ASN.1 DER ECDSA P-256 signature over
//! the SHA-256 of the message.

mod config;
pub mod cosign;
pub mod dsse;
mod file_key;
mod vault;

use std::future::Future;
use std::path::PathBuf;

pub use airlock_verify::secret::{Secret, SecretError, SecretSource};
pub use config::{AnySigner, SigningConfig};
pub use file_key::{
    FileKey, GeneratedKeyPair, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, generate_key_pair,
};
pub use vault::{VaultConfig, VaultTransit, read_kv2_secret};

/// The environment variable cosign reads a key password from.
pub const COSIGN_PASSWORD_ENV: &str = "COSIGN_PASSWORD";

/// A key that signs as cosign does (ECDSA P-256, SHA-256, ASN.1 DER).
pub trait Signer {
    /// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), the
    /// format of `cosign.pub`.
    fn public_key_pem(&self) -> String;

    /// Signs `message` (hashed with SHA-256 by the signer, never prehashed by
    /// the caller) and returns the ASN.1 DER ECDSA signature.
    fn sign(&self, message: &[u8]) -> impl Future<Output = Result<Vec<u8>, SignError>> + Send;

    /// A stable identifier of the public key: `sha256:<hex>` of its DER
    /// (SubjectPublicKeyInfo). Used as a DSSE `keyid` hint and in logs.
    fn key_id(&self) -> String;
}

pub use airlock_verify::signature::key_id_of_der;

/// Everything that can go wrong while creating, loading or using a key.
/// No variant carries a password, token or private key.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// A file could not be read or written.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "write the private key".
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Key generation refuses to replace an existing key file.
    #[error("{} already exists; refusing to overwrite a key (move it away or pick another --out)", .0.display())]
    AlreadyExists(PathBuf),
    /// The password (or token) source named in the configuration is not there or unreadable.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// Vault has no secret at the configured path.
    #[error("no secret found in the {source_name}")]
    SecretMissing {
        /// Where the secret was looked for (never its value).
        source_name: String,
    },
    /// The encrypted private key could not be opened with the password given.
    #[error("could not decrypt the private key {}: wrong password or damaged key file ({reason})", path.display())]
    Decrypt {
        /// The key file.
        path: PathBuf,
        /// sigstore's reason (it never includes the password).
        reason: String,
    },
    /// The key is not an ECDSA P-256 key, the only scheme Airlock signs with.
    #[error("{what} is not an ECDSA P-256 key ({detail})")]
    WrongKeyType {
        /// The key file or Vault key concerned.
        what: String,
        /// What was found instead.
        detail: String,
    },
    /// A cryptographic operation failed inside sigstore.
    #[error("{action} failed: {reason}")]
    Crypto {
        /// The operation, e.g. "generating a P-256 key".
        action: &'static str,
        /// sigstore's reason.
        reason: String,
    },
    /// The Vault address is not a valid URL.
    #[error("invalid Vault address {address:?}: {reason}")]
    VaultAddress {
        /// The configured address.
        address: String,
        /// Why it was refused.
        reason: String,
    },
    /// Vault refused the token (HTTP 403 or 401).
    #[error(
        "Vault at {address} refused the token for {operation} (HTTP {code}): check that the token is valid and its policy allows this path"
    )]
    VaultDenied {
        /// The Vault address.
        address: String,
        /// The request, e.g. "POST transit/sign/airlock".
        operation: String,
        /// The HTTP status code.
        code: u16,
    },
    /// Any other error talking to Vault.
    #[error("Vault request {operation} to {address} failed: {reason}")]
    Vault {
        /// The Vault address.
        address: String,
        /// The request, e.g. "GET transit/keys/airlock".
        operation: String,
        /// vaultrs' error, with Vault's own error messages when it sent any.
        reason: String,
    },
    /// Vault answered with something that is not what its API documents.
    #[error("unexpected answer from Vault for {operation}: {reason}")]
    VaultResponse {
        /// The request.
        operation: String,
        /// What was wrong with the answer.
        reason: String,
    },
}

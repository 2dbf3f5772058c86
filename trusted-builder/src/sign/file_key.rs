//! A local cosign key pair: `cosign.key` (PEM `ENCRYPTED SIGSTORE PRIVATE
//! KEY`: PKCS#8 sealed with scrypt + NaCl secretbox, what `cosign
//! generate-key-pair` writes) and `cosign.pub` (PEM `PUBLIC KEY`). sigstore's
//! own implementation of that format is used so files stay interchangeable
//! with cosign.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sigstore::crypto::signing_key::ecdsa::ec::{EcdsaKeys, EcdsaSigner};
use sigstore::crypto::signing_key::ecdsa::{ECDSAKeys, EllipticCurve};
use sigstore::crypto::signing_key::{KeyPair, Signer as _};

use super::{Secret, SignError, Signer, key_id_of_der};

/// File name of the encrypted private key, as cosign names it.
pub const PRIVATE_KEY_FILE: &str = "cosign.key";
/// File name of the public key, as cosign names it.
pub const PUBLIC_KEY_FILE: &str = "cosign.pub";

/// A P-256 private key loaded from a cosign key file and decrypted in memory.
pub struct FileKey {
    path: PathBuf,
    signer: EcdsaSigner,
    public_pem: String,
    key_id: String,
}

/// Where [`generate_key_pair`] wrote the keys.
#[derive(Debug, Clone)]
pub struct GeneratedKeyPair {
    /// The encrypted private key (mode 0600).
    pub private_key: PathBuf,
    /// The public key.
    pub public_key: PathBuf,
    /// [`Signer::key_id`] of the new key.
    pub key_id: String,
}

impl FileKey {
    /// Reads and decrypts a cosign private key file. scrypt makes this take
    /// tens of milliseconds on purpose: load once, sign many times.
    pub fn load(path: &Path, password: &Secret) -> Result<Self, SignError> {
        let pem = std::fs::read(path).map_err(|source| SignError::Io {
            action: "read the private key",
            path: path.to_path_buf(),
            source,
        })?;
        let keys =
            EcdsaKeys::from_encrypted_pem(&pem, password.expose().as_bytes()).map_err(|e| {
                SignError::Decrypt {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                }
            })?;
        Self::from_keys(path, keys)
    }

    fn from_keys(path: &Path, keys: EcdsaKeys) -> Result<Self, SignError> {
        // The only scheme every cosign verifier must support; refuse others
        // here rather than produce signatures no one can check.
        let wrapped = keys
            .to_wrapped_ecdsa_keys()
            .map_err(crypto("reading the key"))?;
        if !matches!(wrapped, ECDSAKeys::P256(_)) {
            return Err(SignError::WrongKeyType {
                what: path.display().to_string(),
                detail: wrapped.to_string(),
            });
        }
        let public_pem = keys
            .public_key_to_pem()
            .map_err(crypto("encoding the public key"))?;
        let der = keys
            .public_key_to_der()
            .map_err(crypto("encoding the public key"))?;
        let signer = keys
            .to_signer()
            .map_err(crypto("importing the private key"))?;
        Ok(Self {
            path: path.to_path_buf(),
            signer,
            public_pem,
            key_id: key_id_of_der(&der),
        })
    }

    /// The file the key was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for FileKey {
    // Written by hand so no future field can print key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKey")
            .field("path", &self.path)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Signer for FileKey {
    fn public_key_pem(&self) -> String {
        self.public_pem.clone()
    }

    fn sign(
        &self,
        message: &[u8],
    ) -> impl std::future::Future<Output = Result<Vec<u8>, SignError>> + Send {
        // Local signing is fast and synchronous; the future is already resolved.
        let result = self.signer.sign(message).map_err(crypto("signing"));
        std::future::ready(result)
    }

    fn key_id(&self) -> String {
        self.key_id.clone()
    }
}

/// Generates a P-256 key pair and writes `cosign.key` (encrypted with
/// `password`, mode 0600) and `cosign.pub` into `dir`, which must exist.
/// Refuses to overwrite either file: replacing a signing key by accident
/// would orphan every signature made with it.
pub fn generate_key_pair(dir: &Path, password: &Secret) -> Result<GeneratedKeyPair, SignError> {
    let private_key = dir.join(PRIVATE_KEY_FILE);
    let public_key = dir.join(PUBLIC_KEY_FILE);
    for p in [&private_key, &public_key] {
        if p.symlink_metadata().is_ok() {
            return Err(SignError::AlreadyExists(p.clone()));
        }
    }
    let keys = EcdsaKeys::new(EllipticCurve::P256).map_err(crypto("generating a P-256 key"))?;
    let encrypted = keys
        .private_key_to_encrypted_pem(password.expose().as_bytes())
        .map_err(crypto("encrypting the private key"))?;
    let public_pem = keys
        .public_key_to_pem()
        .map_err(crypto("encoding the public key"))?;
    let der = keys
        .public_key_to_der()
        .map_err(crypto("encoding the public key"))?;

    write_new(
        &private_key,
        encrypted.as_bytes(),
        0o600,
        "write the private key",
    )?;
    if let Err(e) = write_new(
        &public_key,
        public_pem.as_bytes(),
        0o644,
        "write the public key",
    ) {
        // Leave no private key without its public half behind.
        let _ = std::fs::remove_file(&private_key);
        return Err(e);
    }
    Ok(GeneratedKeyPair {
        private_key,
        public_key,
        key_id: key_id_of_der(&der),
    })
}

/// Creates `path` (never replacing it, never following a link there) with
/// `mode` from the start, so the private key is never readable by others even
/// for an instant.
fn write_new(path: &Path, bytes: &[u8], mode: u32, action: &'static str) -> Result<(), SignError> {
    let io = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            SignError::AlreadyExists(path.to_path_buf())
        } else {
            SignError::Io {
                action,
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

fn crypto(action: &'static str) -> impl Fn(sigstore::errors::SigstoreError) -> SignError {
    move |e| SignError::Crypto {
        action,
        reason: e.to_string(),
    }
}

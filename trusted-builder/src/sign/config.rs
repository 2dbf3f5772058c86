//! The `[signing]` section of `builder.toml`: which backend holds the key and
//! where its password or token comes from (a name, never the value).
//!
//! ```toml
//! [signing]
//! backend = "file"
//! key = "/etc/airlock/cosign.key"
//! password = { env = "COSIGN_PASSWORD" }      # the default; or { file = "/run/secrets/pw" }
//!
//! # or
//! [signing]
//! backend = "vault-transit"
//! address = "https://vault.internal:8200"
//! token = { file = "/run/secrets/vault-token" }
//! mount = "transit"                           # the default
//! key = "airlock"
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use super::{
    COSIGN_PASSWORD_ENV, FileKey, SecretSource, SignError, Signer, VaultConfig, VaultTransit,
};

fn cosign_password_env() -> SecretSource {
    SecretSource::Env(COSIGN_PASSWORD_ENV.to_owned())
}

fn transit_mount() -> String {
    "transit".to_owned()
}

/// Which backend signs.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, tag = "backend", rename_all = "kebab-case")]
pub enum SigningConfig {
    /// A cosign key file on local disk (the default backend).
    File {
        /// The encrypted private key (`cosign.key`).
        key: PathBuf,
        /// Its password; `COSIGN_PASSWORD` when not given, as cosign does.
        #[serde(default = "cosign_password_env")]
        password: SecretSource,
    },
    /// A Vault transit key of type `ecdsa-p256`.
    VaultTransit {
        /// Vault's address.
        address: String,
        /// The Vault token.
        token: SecretSource,
        /// The transit mount path.
        #[serde(default = "transit_mount")]
        mount: String,
        /// The transit key's name.
        key: String,
    },
}

impl SigningConfig {
    /// Loads the key (file) or connects and reads the public key (Vault).
    /// Loading a file key runs scrypt, tens of milliseconds of CPU: done once
    /// at startup, not per signature.
    pub async fn open(&self) -> Result<AnySigner, SignError> {
        match self {
            SigningConfig::File { key, password } => {
                Ok(AnySigner::File(FileKey::load(key, &password.load()?)?))
            }
            SigningConfig::VaultTransit {
                address,
                token,
                mount,
                key,
            } => {
                let config = VaultConfig {
                    address: address.clone(),
                    token: token.load()?,
                    mount: mount.clone(),
                    key_name: key.clone(),
                };
                Ok(AnySigner::Vault(Box::new(
                    VaultTransit::connect(config).await?,
                )))
            }
        }
    }
}

/// Either backend, chosen at run time from the configuration. (`Signer`
/// returns `impl Future`, so it cannot be a trait object; this enum is the
/// dispatch instead.)
#[derive(Debug)]
pub enum AnySigner {
    /// A local key file.
    File(FileKey),
    /// Vault transit (boxed: its HTTP client is far larger than a file key).
    Vault(Box<VaultTransit>),
}

impl Signer for AnySigner {
    fn public_key_pem(&self) -> String {
        match self {
            AnySigner::File(k) => k.public_key_pem(),
            AnySigner::Vault(k) => k.public_key_pem(),
        }
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match self {
            AnySigner::File(k) => k.sign(message).await,
            AnySigner::Vault(k) => k.sign(message).await,
        }
    }

    fn key_id(&self) -> String {
        match self {
            AnySigner::File(k) => k.key_id(),
            AnySigner::Vault(k) => k.key_id(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        signing: SigningConfig,
    }

    fn parse(s: &str) -> Result<SigningConfig, toml::de::Error> {
        toml::from_str::<Doc>(s).map(|d| d.signing)
    }

    #[test]
    fn both_backends_parse_with_defaults() {
        let file = parse("[signing]\nbackend = \"file\"\nkey = \"/k/cosign.key\"\n").unwrap();
        assert_eq!(
            file,
            SigningConfig::File {
                key: "/k/cosign.key".into(),
                password: SecretSource::Env("COSIGN_PASSWORD".into()),
            }
        );
        let vault = parse(
            "[signing]\nbackend = \"vault-transit\"\naddress = \"http://127.0.0.1:8200\"\n\
             token = { file = \"/run/t\" }\nkey = \"airlock\"\n",
        )
        .unwrap();
        assert_eq!(
            vault,
            SigningConfig::VaultTransit {
                address: "http://127.0.0.1:8200".into(),
                token: SecretSource::File("/run/t".into()),
                mount: "transit".into(),
                key: "airlock".into(),
            }
        );
    }

    #[test]
    fn unknown_keys_and_inline_secrets_are_refused() {
        assert!(parse("[signing]\nbackend = \"file\"\nkey = \"k\"\ncolour = 1\n").is_err());
        // A password written into the config itself is not a source.
        assert!(
            parse("[signing]\nbackend = \"file\"\nkey = \"k\"\npassword = \"hunter2\"\n").is_err()
        );
        assert!(parse("[signing]\nbackend = \"hsm\"\n").is_err());
    }

    #[tokio::test]
    async fn file_backend_opens_with_a_password_file() {
        let dir = tempfile::tempdir().unwrap();
        let pair =
            super::super::generate_key_pair(dir.path(), &crate::sign::Secret::new("pw")).unwrap();
        std::fs::write(dir.path().join("pw"), "pw\n").unwrap();
        let config = SigningConfig::File {
            key: pair.private_key.clone(),
            password: SecretSource::File(dir.path().join("pw")),
        };
        let signer = config.open().await.unwrap();
        assert_eq!(signer.key_id(), pair.key_id);
        assert!(!signer.sign(b"m").await.unwrap().is_empty());
    }
}

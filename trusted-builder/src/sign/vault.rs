//! Vault transit as a signing backend, through vaultrs. The key lives in
//! Vault (`ecdsa-p256`); Airlock sends the message and gets back
//! `vault:v<N>:<base64 ASN.1 DER>`, which without its prefix is exactly a
//! cosign signature. The private key never leaves Vault.

use std::fmt;

use airlock_pipeline::error_chain::error_chain;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use vaultrs::api::transit::requests::SignDataRequestBuilder;
use vaultrs::api::transit::responses::ReadKeyData;
use vaultrs::api::transit::{HashAlgorithm, KeyType, MarshalingAlgorithm};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use super::{Secret, SignError, Signer, key_id_of_der};

/// Where the transit key is and how to reach it.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// Vault's address, e.g. `https://vault.internal:8200`.
    pub address: String,
    /// A token whose policy allows `update` on `<mount>/sign/<key>` and
    /// `read` on `<mount>/keys/<key>`.
    pub token: Secret,
    /// The transit engine's mount path (usually `transit`).
    pub mount: String,
    /// The transit key's name.
    pub key_name: String,
}

/// A signer whose private key stays in Vault's transit engine.
pub struct VaultTransit {
    client: VaultClient,
    config: VaultConfig,
    public_pem: String,
    key_id: String,
}

impl fmt::Debug for VaultTransit {
    // vaultrs' client settings derive Debug with the token in them: never show them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultTransit")
            .field("address", &self.config.address)
            .field("mount", &self.config.mount)
            .field("key_name", &self.config.key_name)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn client(address: &str, token: &Secret) -> Result<VaultClient, SignError> {
    // vaultrs' address setter panics on a bad URL: check it first.
    let url = url::Url::parse(address).map_err(|e| SignError::VaultAddress {
        address: address.to_owned(),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SignError::VaultAddress {
            address: address.to_owned(),
            reason: "the scheme must be http or https".to_owned(),
        });
    }
    let settings = VaultClientSettingsBuilder::default()
        .address(address)
        .token(token.expose())
        .build()
        .map_err(|e| SignError::VaultAddress {
            address: address.to_owned(),
            reason: e.to_string(),
        })?;
    VaultClient::new(settings).map_err(|e| vault_err(address, "client setup".to_owned(), e))
}

fn vault_err(address: &str, operation: String, e: ClientError) -> SignError {
    match e {
        ClientError::APIError {
            code: code @ (401 | 403),
            ..
        } => SignError::VaultDenied {
            address: address.to_owned(),
            operation,
            code,
        },
        ClientError::APIError { code, errors } => SignError::Vault {
            address: address.to_owned(),
            operation,
            reason: format!("HTTP {code}: {}", errors.join("; ")),
        },
        other => SignError::Vault {
            address: address.to_owned(),
            operation,
            reason: error_chain(&other),
        },
    }
}

impl VaultTransit {
    /// Connects to Vault and reads the key's public half (`GET
    /// <mount>/keys/<name>`), refusing any key type but `ecdsa-p256`. The
    /// newest key version's public key is used, which is the version Vault
    /// signs with when no version is given.
    pub async fn connect(config: VaultConfig) -> Result<Self, SignError> {
        let client = client(&config.address, &config.token)?;
        let operation = format!("GET {}/keys/{}", config.mount, config.key_name);
        let key = vaultrs::transit::key::read(&client, &config.mount, &config.key_name)
            .await
            .map_err(|e| vault_err(&config.address, operation.clone(), e))?;
        if !matches!(key.key_type, KeyType::EcdsaP256) {
            return Err(SignError::WrongKeyType {
                what: format!("Vault transit key {}", config.key_name),
                detail: format!("type {:?}", key.key_type),
            });
        }
        let ReadKeyData::Asymmetric(versions) = key.keys else {
            return Err(SignError::VaultResponse {
                operation,
                reason: "no public keys in the answer".to_owned(),
            });
        };
        let newest = versions
            .iter()
            .filter_map(|(v, entry)| v.parse::<u64>().ok().map(|n| (n, entry)))
            .max_by_key(|(n, _)| *n)
            .map(|(_, entry)| entry.public_key.clone())
            .ok_or_else(|| SignError::VaultResponse {
                operation: operation.clone(),
                reason: "no key versions in the answer".to_owned(),
            })?;
        let der = pem_body(&newest).ok_or_else(|| SignError::VaultResponse {
            operation,
            reason: "public_key is not a PEM PUBLIC KEY".to_owned(),
        })?;
        Ok(Self {
            client,
            public_pem: newest,
            key_id: key_id_of_der(&der),
            config,
        })
    }
}

/// The DER inside a `-----BEGIN PUBLIC KEY-----` PEM block.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN PUBLIC KEY-----")? + "-----BEGIN PUBLIC KEY-----".len();
    let end = pem[start..].find("-----END PUBLIC KEY-----")? + start;
    let b64: String = pem[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    B64.decode(b64).ok()
}

impl Signer for VaultTransit {
    fn public_key_pem(&self) -> String {
        self.public_pem.clone()
    }

    fn sign(
        &self,
        message: &[u8],
    ) -> impl std::future::Future<Output = Result<Vec<u8>, SignError>> + Send {
        let input = B64.encode(message);
        async move {
            let c = &self.config;
            let operation = format!("POST {}/sign/{}", c.mount, c.key_name);
            // Vault hashes the input itself (prehashed false), so the
            // signature is over SHA-256(message), as cosign verifies it.
            let mut opts = SignDataRequestBuilder::default();
            opts.hash_algorithm(HashAlgorithm::Sha2_256)
                .marshaling_algorithm(MarshalingAlgorithm::Asn1)
                .prehashed(false);
            let answer = vaultrs::transit::data::sign(
                &self.client,
                &c.mount,
                &c.key_name,
                &input,
                Some(&mut opts),
            )
            .await
            .map_err(|e| vault_err(&c.address, operation.clone(), e))?;
            decode_vault_signature(&answer.signature).map_err(|e| SignError::VaultResponse {
                operation,
                reason: e.to_string(),
            })
        }
    }

    fn key_id(&self) -> String {
        self.key_id.clone()
    }
}

/// Why a Vault transit signature could not be read.
#[derive(Debug, thiserror::Error)]
enum VaultSignatureError {
    /// Not `vault:v<N>:<base64>`.
    #[error("signature is not of the form vault:v<N>:<base64>")]
    Form,
    /// The base64 part is not base64.
    #[error("signature is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
}

/// `vault:v<N>:<base64>` to DER bytes.
fn decode_vault_signature(sig: &str) -> Result<Vec<u8>, VaultSignatureError> {
    let mut parts = sig.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("vault"), Some(v), Some(b64)) if v.starts_with('v') => Ok(B64.decode(b64)?),
        _ => Err(VaultSignatureError::Form),
    }
}

/// Reads one field of a KV v2 secret (`GET <mount>/data/<path>`), e.g. the
/// password of a key file kept in Vault.
pub async fn read_kv2_secret(
    address: &str,
    token: &Secret,
    mount: &str,
    path: &str,
    field: &str,
) -> Result<Secret, SignError> {
    let client = client(address, token)?;
    let operation = format!("GET {mount}/data/{path}");
    let data: std::collections::HashMap<String, serde_json::Value> =
        vaultrs::kv2::read(&client, mount, path)
            .await
            .map_err(|e| vault_err(address, operation.clone(), e))?;
    match data.get(field) {
        Some(serde_json::Value::String(s)) => Ok(Secret::new(s.clone())),
        _ => Err(SignError::SecretMissing {
            source_name: format!("field {field:?} of Vault KV secret {mount}/{path}"),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn vault_signatures_lose_their_prefix() {
        assert_eq!(
            decode_vault_signature("vault:v1:AQID").unwrap(),
            vec![1, 2, 3]
        );
        assert_eq!(
            decode_vault_signature("vault:v12:AQID").unwrap(),
            vec![1, 2, 3]
        );
        assert!(decode_vault_signature("AQID").is_err());
        assert!(decode_vault_signature("vault:x:AQID").is_err());
    }

    #[test]
    fn bad_addresses_are_errors_not_panics() {
        let t = Secret::new("tok");
        assert!(matches!(
            client("not a url", &t),
            Err(SignError::VaultAddress { .. })
        ));
        assert!(matches!(
            client("ftp://x", &t),
            Err(SignError::VaultAddress { .. })
        ));
    }
}

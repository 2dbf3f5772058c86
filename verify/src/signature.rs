//! `trusted-builder verify`: does this image digest carry a signature and a
//! provenance attestation from our key, both bound to that digest?
//!
//! Fetching and verifying are kept apart (as sigstore-rs does): [`fetch`]
//! only gathers bytes, every blob checked against the digest that names it;
//! [`verify_signatures`] and [`verify_attestations`] are small pure functions
//! over those bytes, so they can be tested and reasoned about on their own.
//! Nothing fetched is parsed before its signature has been checked.

use std::fmt;

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use sha2::{Digest as _, Sha256};

use crate::cosign::{
    ANNOTATION_SIGNATURE, MEDIA_TYPE_SIMPLE_SIGNING, SimpleSigningPayload, attestation_tag,
    signature_tag,
};
use crate::dsse::{Envelope, MEDIA_TYPE_DSSE, PAYLOAD_TYPE_IN_TOTO, decode_base64, pae};
use crate::oci::registry::parse_reference;
use crate::oci::{Descriptor, ImageManifest, OciError, Registry, is_sha256_digest};
use crate::provenance::Statement;

/// Most layers read from one `.sig` / `.att` manifest.
pub const MAX_LAYERS: usize = 256;
/// Largest signature payload or attestation envelope read.
pub const MAX_LAYER_BYTES: u64 = 4 * 1024 * 1024;

/// Why verification failed. Each message says which check did not hold.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The image reference is not `REPOSITORY@sha256:<hex>`.
    #[error("invalid image reference {0:?}: expected REPOSITORY@sha256:<hex>")]
    Reference(String),
    /// The public key file cannot be used.
    #[error("public key: {0}")]
    Key(String),
    /// The registry could not be read, or returned content not matching its digest.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// Nothing is attached under the tag.
    #[error("no {what} found: {repository}:{tag} does not exist")]
    Missing {
        /// "signatures" or "attestations".
        what: &'static str,
        /// The repository.
        repository: String,
        /// The tag looked for.
        tag: String,
    },
    /// Layers exist but none passes every check.
    #[error("no valid {what} for {digest}: {}", reasons.join("; "))]
    NoneValid {
        /// "signature" or "attestation".
        what: &'static str,
        /// The digest asked for.
        digest: String,
        /// One reason per layer.
        reasons: Vec<String>,
    },
}

/// A public key that verifies cosign signatures (ECDSA P-256, SHA-256, DER). Verifying needs
/// nothing of sigstore's key handling (no private key format is ever parsed on this side).
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey(ecdsa-p256)")
    }
}

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY` (the `cosign.pub` format).
    pub fn from_pem(pem: &[u8]) -> Result<Self, VerifyError> {
        let text = std::str::from_utf8(pem).map_err(|_| {
            VerifyError::Key("not an ECDSA P-256 public key PEM (not UTF-8)".into())
        })?;
        VerifyingKey::from_public_key_pem(text)
            .map(Self)
            .map_err(|e| VerifyError::Key(format!("not an ECDSA P-256 public key PEM ({e})")))
    }

    /// True when `sig` (ASN.1 DER) is a signature of `message` (hashed with SHA-256 here, as
    /// cosign signs) under this key.
    pub fn verifies(&self, sig: &[u8], message: &[u8]) -> bool {
        DerSignature::from_bytes(sig).is_ok_and(|sig| self.0.verify(message, &sig).is_ok())
    }
}

/// A layer and its bytes (already checked against the layer's digest).
#[derive(Debug, Clone)]
pub struct FetchedLayer {
    /// The manifest's descriptor of the layer.
    pub descriptor: Descriptor,
    /// The blob.
    pub data: Vec<u8>,
}

/// Everything attached to one image, as fetched (unverified).
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Repository, without tag.
    pub repository: String,
    /// The image digest asked about.
    pub digest: String,
    /// `.sig` layers; None when the tag does not exist.
    pub signatures: Option<Vec<FetchedLayer>>,
    /// `.att` layers; None when the tag does not exist.
    pub attestations: Option<Vec<FetchedLayer>>,
}

/// Splits `REPOSITORY@sha256:<hex>` (a tag is refused: verify a digest, never a tag).
pub fn parse_image(image: &str) -> Result<(String, String), VerifyError> {
    let bad = || VerifyError::Reference(image.to_owned());
    let (repository, digest) = image.rsplit_once('@').ok_or_else(bad)?;
    if !is_sha256_digest(digest) || !crate::cosign::is_bare_repository(repository) {
        return Err(bad());
    }
    // Same parser as the registry client, so both agree on what was meant.
    parse_reference(image).map_err(|_| bad())?;
    Ok((repository.to_owned(), digest.to_owned()))
}

async fn fetch_tag(
    registry: &Registry,
    repository: &str,
    tag: &str,
) -> Result<Option<Vec<FetchedLayer>>, OciError> {
    let Some((bytes, _)) = registry.fetch_manifest_by_tag(repository, tag).await? else {
        return Ok(None);
    };
    let manifest: ImageManifest =
        serde_json::from_slice(&bytes).map_err(|e| OciError::Malformed {
            what: "attachment manifest",
            reason: e.to_string(),
        })?;
    // The registry is untrusted: bound what it can make us download.
    if manifest.layers.len() > MAX_LAYERS {
        return Err(OciError::Malformed {
            what: "attachment manifest",
            reason: format!("{} layers (limit {MAX_LAYERS})", manifest.layers.len()),
        });
    }
    let mut out = Vec::with_capacity(manifest.layers.len());
    for descriptor in manifest.layers {
        if descriptor.size > MAX_LAYER_BYTES {
            return Err(OciError::Malformed {
                what: "attachment layer",
                reason: format!(
                    "{} is {} bytes (limit {MAX_LAYER_BYTES})",
                    descriptor.digest, descriptor.size
                ),
            });
        }
        let data = registry
            .fetch_blob(repository, &descriptor.digest, descriptor.size)
            .await?;
        out.push(FetchedLayer { descriptor, data });
    }
    Ok(Some(out))
}

/// Fetches the `.sig` and `.att` manifests of `repository@digest` and their layers.
pub async fn fetch(
    registry: &Registry,
    repository: &str,
    digest: &str,
) -> Result<Fetched, VerifyError> {
    let signatures = fetch_tag(registry, repository, &signature_tag(digest)?).await?;
    let attestations = fetch_tag(registry, repository, &attestation_tag(digest)?).await?;
    Ok(Fetched {
        repository: repository.to_owned(),
        digest: digest.to_owned(),
        signatures,
        attestations,
    })
}

fn check_signature_layer(
    layer: &FetchedLayer,
    key: &PublicKey,
    repository: &str,
    digest: &str,
) -> Result<SimpleSigningPayload, String> {
    if layer.descriptor.media_type != MEDIA_TYPE_SIMPLE_SIGNING {
        return Err(format!("media type {}", layer.descriptor.media_type));
    }
    let sig_b64 = layer
        .descriptor
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_SIGNATURE))
        .ok_or("no signature annotation")?;
    let sig = decode_base64(sig_b64).map_err(|e| e.to_string())?;
    if !key.verifies(&sig, &layer.data) {
        return Err("signature does not verify with the key".into());
    }
    let payload = SimpleSigningPayload::from_bytes(&layer.data).map_err(|e| e.to_string())?;
    let signed = &payload.critical.image.docker_manifest_digest;
    if signed != digest {
        return Err(format!("signature is for {signed}, not this image"));
    }
    let reference = &payload.critical.identity.docker_reference;
    if reference != repository {
        return Err(format!(
            "signature names repository {reference}, not {repository}"
        ));
    }
    Ok(payload)
}

/// The first `.sig` layer whose signature verifies with `key` and whose
/// payload names exactly `repository` and `digest`.
pub fn verify_signatures(
    layers: &[FetchedLayer],
    key: &PublicKey,
    repository: &str,
    digest: &str,
) -> Result<SimpleSigningPayload, VerifyError> {
    let mut reasons = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        match check_signature_layer(layer, key, repository, digest) {
            Ok(p) => return Ok(p),
            Err(r) => reasons.push(format!("layer {}: {r}", i + 1)),
        }
    }
    Err(VerifyError::NoneValid {
        what: "signature",
        digest: digest.to_owned(),
        reasons,
    })
}

/// Verifies a DSSE envelope with `key` over PAE and returns its body.
pub fn verify_envelope(envelope: &Envelope, key: &PublicKey) -> Result<Vec<u8>, String> {
    if envelope.payload_type != PAYLOAD_TYPE_IN_TOTO {
        return Err(format!("payloadType {}", envelope.payload_type));
    }
    let body = envelope.body().map_err(|e| e.to_string())?;
    let message = pae(&envelope.payload_type, &body);
    let ok = envelope
        .signatures
        .iter()
        .any(|s| decode_base64(&s.sig).is_ok_and(|sig| key.verifies(&sig, &message)));
    if ok {
        Ok(body)
    } else {
        Err("DSSE signature does not verify with the key".into())
    }
}

fn check_attestation_layer(
    layer: &FetchedLayer,
    key: &PublicKey,
    digest: &str,
) -> Result<Statement, String> {
    if layer.descriptor.media_type != MEDIA_TYPE_DSSE {
        return Err(format!("media type {}", layer.descriptor.media_type));
    }
    let envelope = Envelope::from_json(&layer.data).map_err(|e| e.to_string())?;
    let body = verify_envelope(&envelope, key)?;
    let statement = Statement::from_json(&body).map_err(|e| e.to_string())?;
    if !statement.has_subject_digest(digest) {
        return Err("statement's subject is another image".into());
    }
    Ok(statement)
}

/// The first `.att` layer whose envelope verifies with `key` and whose
/// SLSA v1 statement has `digest` as a subject.
pub fn verify_attestations(
    layers: &[FetchedLayer],
    key: &PublicKey,
    digest: &str,
) -> Result<Statement, VerifyError> {
    let mut reasons = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        match check_attestation_layer(layer, key, digest) {
            Ok(s) => return Ok(s),
            Err(r) => reasons.push(format!("layer {}: {r}", i + 1)),
        }
    }
    Err(VerifyError::NoneValid {
        what: "attestation",
        digest: digest.to_owned(),
        reasons,
    })
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Image repository.
    pub image: String,
    /// Image digest.
    pub digest: String,
    /// Source repository (external parameter).
    pub source: String,
    /// Commit built.
    pub commit: String,
    /// Ref it was reached from.
    pub git_ref: String,
    /// Job built.
    pub job: String,
    /// `builder.id`.
    pub builder_id: String,
    /// Whether the rebuild reproduced CI's outputs (None: not stated).
    pub reproduced: Option<bool>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "verified:   {}@{}", self.image, self.digest)?;
        writeln!(f, "repository: {}", self.source)?;
        writeln!(f, "commit:     {}", self.commit)?;
        writeln!(f, "ref:        {}", self.git_ref)?;
        writeln!(f, "job:        {}", self.job)?;
        writeln!(f, "builder:    {}", self.builder_id)?;
        let reproduced = self.reproduced.map_or("unknown".into(), |r| r.to_string());
        write!(f, "reproduced: {reproduced}")
    }
}

/// Checks fetched attachments: a signature and an attestation must both hold.
pub fn verify_fetched(fetched: &Fetched, key: &PublicKey) -> Result<Summary, VerifyError> {
    let missing = |what, suffix| VerifyError::Missing {
        what,
        repository: fetched.repository.clone(),
        tag: format!("{}.{suffix}", fetched.digest.replacen(':', "-", 1)),
    };
    let sigs = fetched
        .signatures
        .as_deref()
        .ok_or_else(|| missing("signatures", "sig"))?;
    verify_signatures(sigs, key, &fetched.repository, &fetched.digest)?;
    let atts = fetched
        .attestations
        .as_deref()
        .ok_or_else(|| missing("attestations", "att"))?;
    let statement = verify_attestations(atts, key, &fetched.digest)?;
    let ext = &statement.predicate.build_definition.external_parameters;
    Ok(Summary {
        image: fetched.repository.clone(),
        digest: fetched.digest.clone(),
        source: ext.repository.clone(),
        commit: ext.commit.clone(),
        git_ref: ext.git_ref.clone(),
        job: ext.job.clone(),
        builder_id: statement.predicate.run_details.builder.id.clone(),
        reproduced: statement.reproduced(),
    })
}

/// Fetches and verifies `image` (`REPOSITORY@sha256:<hex>`).
pub async fn verify_image(
    registry: &Registry,
    image: &str,
    key: &PublicKey,
) -> Result<Summary, VerifyError> {
    let (repository, digest) = parse_image(image)?;
    let fetched = fetch(registry, &repository, &digest).await?;
    verify_fetched(&fetched, key)
}

/// `verify IMAGE --key PUB`: reads the public key file, fetches from the image's registry
/// (plain HTTP for `insecure`) and verifies signature and provenance. Both binaries' `verify`
/// commands are this.
pub async fn verify_with_key_file(
    image: &str,
    key_file: &std::path::Path,
    insecure: Vec<String>,
) -> Result<Summary, VerifyError> {
    let pem = std::fs::read(key_file).map_err(|e| {
        VerifyError::Key(format!(
            "could not read the public key {}: {e}",
            key_file.display()
        ))
    })?;
    let key = PublicKey::from_pem(&pem)?;
    let registry = Registry::new(&crate::oci::RegistryConfig {
        insecure,
        ..Default::default()
    })?;
    verify_image(&registry, image, &key).await
}

/// The identifier of a public key given as DER (SubjectPublicKeyInfo): `sha256:<hex>` of it,
/// the DSSE `keyid` hint the builder writes.
pub fn key_id_of_der(spki_der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(spki_der)))
}

//! The promotion policy's input: typed and versioned, so the Rust side and
//! `policies/promotion.rego` cannot silently disagree about a field.

use serde::Serialize;

use crate::reconcile::admission::ProvenanceFacts;

/// Everything the promotion policy sees.
#[derive(Debug, Clone, Serialize)]
pub struct PromotionInput {
    /// [`super::PROMOTION_INPUT_VERSION`].
    pub version: u32,
    /// The image.
    pub image: ImageRef,
    /// What verification established.
    pub verification: Verification,
    /// The target environment.
    pub to: ToFacts,
    /// The source environment, when `--from` was given.
    pub from: Option<FromFacts>,
}

/// `repository` and `digest`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRef {
    /// Repository.
    pub repository: String,
    /// `sha256:<hex>`.
    pub digest: String,
}

/// Signature and provenance facts.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// A trusted key signed this digest for this repository.
    pub signature_ok: bool,
    /// Fingerprint of that key.
    pub signature_key: Option<String>,
    /// Why not.
    pub signature_error: Option<String>,
    /// The provenance, when an attestation by a trusted key names the digest.
    pub provenance: Option<ProvenanceFacts>,
    /// Why not.
    pub provenance_error: Option<String>,
}

/// One image field to change.
#[derive(Debug, Clone, Serialize)]
pub struct UseFact {
    /// Repository path of the file.
    pub file: String,
    /// Namespace folder.
    pub namespace: String,
    /// `Kind/name`.
    pub object: String,
    /// Container.
    pub container: String,
    /// Current reference.
    pub current: String,
}

/// Facts about the target environment.
#[derive(Debug, Clone, Serialize)]
pub struct ToFacts {
    /// Name.
    pub name: String,
    /// Configured on the reconciler.
    pub configured: bool,
    /// Image fields naming the repository.
    pub uses: Vec<UseFact>,
    /// Every use already names this digest.
    pub already_current: bool,
    /// Namespaces (with uses) whose `allowed_sources` lack the provenance's source.
    pub namespaces_refusing_source: Vec<String>,
}

/// Facts about the source environment.
#[derive(Debug, Clone, Serialize)]
pub struct FromFacts {
    /// Name.
    pub name: String,
    /// Configured on the reconciler.
    pub configured: bool,
    /// Environment-repository commit of its last recorded sync ("none" without one).
    pub last_sync: String,
    /// At that sync, a member running exactly this image was healthy.
    pub runs_healthy: bool,
}

//! Admission: every object is judged by `policies/admission.rego` before anything is applied.
//!
//! Rust gathers facts (is each image pinned, does a trusted key sign it, what source does its
//! provenance name, which namespace is the folder); the policy alone decides. Image facts come
//! from an [`ImageVerifier`], so fetching from a registry stays apart from the decision and tests
//! can script it.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use super::config::NamespaceConfig;
use super::desired::DesiredObject;
use super::manifest::{
    declared_namespace, host_access, images, is_cluster_scoped, is_known_kind, pinned,
};
use super::target::kubernetes::INVENTORY_CONFIGMAP;
use super::target::podman::NETWORK_ANNOTATION;
use airlock_verify::oci::Registry;
use airlock_verify::rego::{PolicyError, RegoPolicy};
use airlock_verify::signature::{self as verify, PublicKey};

/// The admission policy shipped in the repository.
pub const EMBEDDED_POLICY: &str = include_str!("../../../policies/admission.rego");
/// The version of [`AdmissionInput`] this code writes.
pub const ADMISSION_INPUT_VERSION: u32 = 1;

/// Everything the policy sees about one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdmissionInput {
    /// [`ADMISSION_INPUT_VERSION`].
    pub version: u32,
    /// Environment folder.
    pub environment: String,
    /// Namespace folder the file sits in.
    pub folder_namespace: String,
    /// The object.
    pub object: ObjectFacts,
    /// The folder's namespace settings; `configured` false when the config does not list it.
    pub namespace: NamespaceFacts,
    /// One entry per container image.
    pub images: Vec<ImageFacts>,
    /// What the pod spec asks of the host (privileged, host namespaces, hostPath, ...).
    pub host_access: Vec<String>,
    /// The podman network the object's annotation asks for, if any.
    pub podman_network: Option<String>,
}

/// Facts about the object itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectFacts {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` as written, if any.
    pub namespace: Option<String>,
    /// A built-in cluster-scoped kind.
    pub cluster_scoped: bool,
    /// The target cannot carry this kind (podman runs Pods and Deployments only).
    pub unsupported_by_target: Option<String>,
    /// Airlock knows where this kind keeps its images (or that it has none).
    pub kind_known: bool,
    /// The name is reserved for the reconciler's own objects (the inventory ConfigMap).
    pub reserved: bool,
}

/// The namespace's configuration, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceFacts {
    /// The namespace is listed for this environment in `reconciler.toml`.
    pub configured: bool,
    /// Source repositories allowed.
    pub allowed_sources: Vec<String>,
    /// Cluster-scoped kinds allowed.
    pub allow_cluster_scoped: bool,
    /// Host access allowed.
    pub allow_host_access: bool,
    /// Unknown kinds admitted anyway.
    pub allowed_kinds: Vec<String>,
    /// Podman networks allowed.
    pub podman_networks: Vec<String>,
}

/// What was established about one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageFacts {
    /// Container name.
    pub container: String,
    /// The reference as written.
    pub reference: String,
    /// `REPO@sha256:<hex>` with no tag.
    pub pinned: bool,
    /// The signature check (absent when not pinned: nothing to check).
    pub signature: Option<Check>,
    /// The provenance, when an attestation by a trusted key names this digest.
    pub provenance: Option<ProvenanceFacts>,
    /// Why no provenance was found (when it was looked for).
    pub provenance_error: Option<String>,
    /// The environment this image must first run healthily in, when the config says so.
    pub requires_healthy_in: Option<String>,
    /// It ran healthily (settled) there at the last recorded sync.
    pub healthy_there: bool,
    /// It already runs in this object (the inventory member's images): admitted before.
    pub already_running: bool,
}

/// A pass/fail with the reason when it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// It holds.
    pub ok: bool,
    /// Fingerprint of the key that verified, when it holds.
    pub key: Option<String>,
    /// Why not.
    pub error: Option<String>,
}

/// The provenance's claims an admission rule can use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvenanceFacts {
    /// Source repository (`externalParameters.repository`).
    pub source_repository: String,
    /// Commit built.
    pub commit: String,
    /// Ref it was reached from.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Job built.
    pub job: String,
    /// `builder.id`.
    pub builder_id: String,
}

/// The result of verifying one `repository@digest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedImage {
    /// The signature check.
    pub signature: Check,
    /// Provenance or why there is none.
    pub provenance: Result<ProvenanceFacts, String>,
}

/// Establishes signature and provenance facts for an image digest.
pub trait ImageVerifier: Send + Sync {
    /// Verifies `repository@digest`; never fails: a failure is a fact.
    fn verify(&self, repository: &str, digest: &str) -> impl Future<Output = VerifiedImage> + Send;
}

/// Verifies against a registry with the trusted public keys. A verified digest is remembered
/// (its signature cannot become invalid short of changing the keys, which restarts the
/// process); a failure is looked up again next time, since a signature may arrive later.
pub struct RegistryVerifier {
    registry: Registry,
    keys: Vec<(String, PublicKey)>,
    verified: Mutex<HashMap<String, VerifiedImage>>,
}

impl std::fmt::Debug for RegistryVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryVerifier")
            .field("keys", &self.keys.iter().map(|k| &k.0).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Reads PEM public keys and names each by its fingerprint (sha256 of the DER).
pub fn load_public_keys(paths: &[impl AsRef<Path>]) -> Result<Vec<(String, PublicKey)>, String> {
    paths
        .iter()
        .map(|p| {
            let p = p.as_ref();
            let pem = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let key = PublicKey::from_pem(&pem).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok((key_fingerprint(&pem), key))
        })
        .collect()
}

fn key_fingerprint(pem: &[u8]) -> String {
    let text = String::from_utf8_lossy(pem);
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    match airlock_verify::dsse::decode_base64(&b64) {
        Ok(der) => airlock_verify::signature::key_id_of_der(&der),
        Err(_) => "unknown".into(),
    }
}

impl RegistryVerifier {
    /// A verifier over `registry` trusting `keys`.
    pub fn new(registry: Registry, keys: Vec<(String, PublicKey)>) -> Self {
        RegistryVerifier {
            registry,
            keys,
            verified: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, image: &str) -> Option<VerifiedImage> {
        self.verified.lock().ok()?.get(image).cloned()
    }
}

/// Checks fetched attachments with each trusted key; the first key that verifies wins.
pub fn judge(fetched: &verify::Fetched, keys: &[(String, PublicKey)]) -> VerifiedImage {
    let mut sig_errors = Vec::new();
    let mut signature = None;
    match fetched.signatures.as_deref() {
        None => sig_errors.push("no signature is attached".to_owned()),
        Some(layers) => {
            for (id, key) in keys {
                match verify::verify_signatures(layers, key, &fetched.repository, &fetched.digest) {
                    Ok(_) => {
                        signature = Some(id.clone());
                        break;
                    }
                    Err(e) => sig_errors.push(e.to_string()),
                }
            }
        }
    }
    let signature = match signature {
        Some(key) => Check {
            ok: true,
            key: Some(key),
            error: None,
        },
        None => Check {
            ok: false,
            key: None,
            error: Some(sig_errors.join("; ")),
        },
    };
    let provenance = match fetched.attestations.as_deref() {
        None => Err("no attestation is attached".to_owned()),
        Some(layers) => {
            let mut errors = Vec::new();
            let mut found = None;
            for (_, key) in keys {
                match verify::verify_attestations(layers, key, &fetched.digest) {
                    Ok(s) => {
                        let ext = &s.predicate.build_definition.external_parameters;
                        found = Some(ProvenanceFacts {
                            source_repository: ext.repository.clone(),
                            commit: ext.commit.clone(),
                            git_ref: ext.git_ref.clone(),
                            job: ext.job.clone(),
                            builder_id: s.predicate.run_details.builder.id.clone(),
                        });
                        break;
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            found.ok_or_else(|| errors.join("; "))
        }
    };
    VerifiedImage {
        signature,
        provenance,
    }
}

impl ImageVerifier for RegistryVerifier {
    async fn verify(&self, repository: &str, digest: &str) -> VerifiedImage {
        let image = format!("{repository}@{digest}");
        if let Some(hit) = self.cached(&image) {
            return hit;
        }
        let result = match verify::fetch(&self.registry, repository, digest).await {
            Ok(fetched) => judge(&fetched, &self.keys),
            Err(e) => VerifiedImage {
                signature: Check {
                    ok: false,
                    key: None,
                    error: Some(format!("could not fetch signatures: {e}")),
                },
                provenance: Err(format!("could not fetch attestations: {e}")),
            },
        };
        if result.signature.ok
            && result.provenance.is_ok()
            && let Ok(mut cache) = self.verified.lock()
        {
            cache.insert(image, result.clone());
        }
        result
    }
}

/// The compiled admission policy (package `airlock.admission`).
#[derive(Debug, Clone)]
pub struct AdmissionPolicy(RegoPolicy);

impl AdmissionPolicy {
    /// The policy at `path`, or the embedded `policies/admission.rego`.
    pub fn load(path: Option<&Path>) -> Result<Self, PolicyError> {
        RegoPolicy::load(
            "admission",
            "airlock.admission",
            path,
            "policies/admission.rego",
            EMBEDDED_POLICY,
        )
        .map(Self)
    }

    /// The reasons to refuse, sorted; empty means admitted.
    pub fn evaluate(&self, input: &AdmissionInput) -> Result<Vec<String>, PolicyError> {
        self.0.evaluate(input)
    }
}

/// Gathers the facts about `object` (verifying its images) into the policy input.
pub async fn gather<V: ImageVerifier>(
    object: &DesiredObject,
    namespace: Option<&NamespaceConfig>,
    unsupported_by_target: Option<String>,
    verifier: &V,
) -> AdmissionInput {
    let mut image_facts = Vec::new();
    for image in images(&object.object) {
        let pin = pinned(&image.reference).map(|(r, d)| (r.to_owned(), d.to_owned()));
        let is_pinned = pin.is_some();
        let (signature, provenance, provenance_error) = match pin {
            None => (None, None, None),
            Some((repository, digest)) => {
                let v = verifier.verify(&repository, &digest).await;
                match v.provenance {
                    Ok(p) => (Some(v.signature), Some(p), None),
                    Err(e) => (Some(v.signature), None, Some(e)),
                }
            }
        };
        image_facts.push(ImageFacts {
            container: image.container,
            reference: image.reference,
            pinned: is_pinned,
            signature,
            provenance,
            provenance_error,
            requires_healthy_in: None,
            healthy_there: false,
            already_running: false,
        });
    }
    AdmissionInput {
        version: ADMISSION_INPUT_VERSION,
        environment: object.environment.clone(),
        folder_namespace: object.namespace.clone(),
        object: ObjectFacts {
            api_version: object.key.api_version.clone(),
            kind: object.key.kind.clone(),
            name: object.key.name.clone(),
            namespace: declared_namespace(&object.object).map(str::to_owned),
            cluster_scoped: is_cluster_scoped(&object.key.kind),
            unsupported_by_target,
            kind_known: is_known_kind(&object.key.kind),
            reserved: object.key.kind == "ConfigMap" && object.key.name == INVENTORY_CONFIGMAP,
        },
        namespace: NamespaceFacts {
            configured: namespace.is_some(),
            allowed_sources: namespace
                .map(|n| n.allowed_sources.clone())
                .unwrap_or_default(),
            allow_cluster_scoped: namespace.is_some_and(|n| n.allow_cluster_scoped),
            allow_host_access: namespace.is_some_and(|n| n.allow_host_access),
            allowed_kinds: namespace
                .map(|n| n.allowed_kinds.clone())
                .unwrap_or_default(),
            podman_networks: namespace
                .map(|n| n.podman_networks.clone())
                .unwrap_or_default(),
        },
        images: image_facts,
        host_access: host_access(&object.object),
        podman_network: object
            .object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(NETWORK_ANNOTATION))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
    }
}

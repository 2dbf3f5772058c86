//! `airlock-reconciler audit trace IMAGE@sha256:...`: walks back from a running workload to the
//! review event that started it, and shows what was refused at the boundaries on the way.
//!
//! running (reconciler sync history, promotion commits) → image (signature and SLSA provenance
//! verified with the trusted keys) → the builder's hash-chained decision log (accepted, built,
//! pushed, signed) → the pass record (origin signature checked, outputs compared with the
//! provenance) → the CI run → the review event. Each hop is gathered from its own source and
//! printed with where it came from; a hop that cannot be established says why instead.

pub mod builder_view;
pub mod ci;
mod render;

use std::path::PathBuf;

use airlock_pipeline::record::{self, PassRecord, parse_public_key_hex};
use airlock_pipeline::source::SourceCache;

pub use self::builder_view::BuilderView;
pub use self::render::render;
use crate::reconcile::config::ReconcilerConfig;
use crate::reconcile::history;
use airlock_verify::audit::DECISIONS_FILE;
use airlock_verify::audit::{self, Decision, Entry};
use airlock_verify::oci::Registry;
use airlock_verify::provenance::{BYPRODUCT_CI_OUTPUT_PREFIX, Statement};
use airlock_verify::signature::{self as verify, PublicKey};

/// Where the trace reads from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// `builder.toml`: decision log, outbox, CI origin keys.
    pub builder: BuilderView,
    /// `reconciler.toml`: sync history, environment repository mirror, trusted keys.
    pub reconciler: Option<ReconcilerConfig>,
    /// cosign public keys (in addition to the reconciler's trusted keys).
    pub keys: Vec<PathBuf>,
    /// The CI's public URL, to read the run and the review event.
    pub ci_url: Option<String>,
}

/// Where the image runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Environment / namespace.
    pub place: String,
    /// `Kind/name`.
    pub object: String,
    /// Health text.
    pub health: String,
    /// Environment-repository commit of that sync.
    pub env_commit: String,
    /// When.
    pub at: String,
}

/// A commit of the environment repository that promoted the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// Commit.
    pub commit: String,
    /// Author.
    pub author: String,
    /// Date.
    pub date: String,
    /// Subject line.
    pub subject: String,
    /// `Airlock-Verified` trailer.
    pub verified: String,
}

/// A refusal at a boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `builder` or `reconciler`.
    pub at: &'static str,
    /// What was refused.
    pub what: String,
    /// Why.
    pub reason: String,
    /// When.
    pub when: String,
}

/// Everything found.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Repository.
    pub repository: String,
    /// Digest.
    pub digest: String,
    /// Where it runs (last sync).
    pub running: Vec<Running>,
    /// Promotions in the environment repository.
    pub promotions: Vec<Promotion>,
    /// Why running/promotions are unknown.
    pub running_error: Option<String>,
    /// Fingerprint of the key that signed, or why no signature holds.
    pub signature: Result<String, String>,
    /// The verified provenance, or why none.
    pub provenance: Result<Statement, String>,
    /// Decision-log entries about the record that produced the image.
    pub decisions: Vec<Entry>,
    /// Decision log: number of entries and whether the chain holds.
    pub log_chain: Result<u64, String>,
    /// The record's outbox name.
    pub record_name: Option<String>,
    /// The pass record, origin signature checked, or why not.
    pub record: Option<Result<PassRecord, String>>,
    /// Output digests where the record and the provenance disagree.
    pub record_mismatch: Vec<String>,
    /// The CI run named by the record.
    pub ci_run: Option<Result<ci::CiRun, String>>,
    /// Review runs of the same commit (change events).
    pub reviews: Vec<ci::CiRun>,
    /// Refusals at the builder and the reconciler touching this repository or project.
    pub refused: Vec<Refused>,
}

impl Trace {
    /// Every reason the chain does not hold end to end (empty: it holds). A valid signature
    /// whose signing is not in the decision log is the sign of a key used outside the builder.
    pub fn breaks(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = &self.signature {
            out.push(format!("no valid signature: {e}"));
        }
        if let Err(e) = &self.provenance {
            out.push(format!("no valid provenance: {e}"));
        }
        if let Err(e) = &self.log_chain {
            out.push(format!("the decision log's hash chain is broken: {e}"));
        }
        if self.record_name.is_none() {
            out.push(
                "the decision log has no signing of this digest (signed outside the builder?)"
                    .into(),
            );
        }
        match &self.record {
            Some(Err(e)) => out.push(format!("the pass record does not open: {e}")),
            None if self.record_name.is_some() => out.push("the pass record was not read".into()),
            _ => {}
        }
        if !self.record_mismatch.is_empty() {
            out.push(format!(
                "the pass record's outputs differ from the provenance: {}",
                self.record_mismatch.join(", ")
            ));
        }
        out
    }
}

/// Gathers the trace of `image` (`REPOSITORY@sha256:<hex>`).
pub async fn trace(image: &str, sources: &Sources) -> anyhow::Result<Trace> {
    let (repository, digest) = verify::parse_image(image)?;
    let mut t = Trace {
        repository: repository.clone(),
        digest: digest.clone(),
        running: Vec::new(),
        promotions: Vec::new(),
        running_error: None,
        signature: Err("not checked".into()),
        provenance: Err("not checked".into()),
        decisions: Vec::new(),
        log_chain: Err("not read".into()),
        record_name: None,
        record: None,
        record_mismatch: Vec::new(),
        ci_run: None,
        reviews: Vec::new(),
        refused: Vec::new(),
    };
    let reference = format!("{repository}@{digest}");
    if let Some(rc) = &sources.reconciler {
        running(&mut t, rc, &reference);
    }

    // Image: signature and provenance with the trusted keys.
    let mut key_paths = sources.keys.clone();
    if let Some(rc) = &sources.reconciler {
        key_paths.extend(rc.trusted_keys.iter().cloned());
    }
    let keys =
        crate::reconcile::admission::load_public_keys(&key_paths).map_err(anyhow::Error::msg)?;
    let mut settings = sources.builder.registry.config();
    if let Some(rc) = &sources.reconciler {
        settings
            .insecure
            .extend(rc.registry.insecure.iter().cloned());
        settings.private.extend(rc.registry.private.iter().cloned());
    }
    let registry = Registry::new(&settings)?;
    match verify::fetch(&registry, &repository, &digest).await {
        Err(e) => {
            t.signature = Err(e.to_string());
            t.provenance = Err(e.to_string());
        }
        Ok(fetched) => {
            let judged = crate::reconcile::admission::judge(&fetched, &keys);
            t.signature = match judged.signature.key {
                Some(k) if judged.signature.ok => Ok(k),
                _ => Err(judged.signature.error.unwrap_or_default()),
            };
            t.provenance = first_statement(&fetched, &keys);
        }
    }

    // The builder's decision log: which record produced this digest.
    let log_path = sources.builder.data_dir.join(DECISIONS_FILE);
    t.log_chain = audit::verify_chain(&log_path)
        .map(|(n, _)| n)
        .map_err(|e| e.to_string());
    let entries = audit::read_entries(&log_path).unwrap_or_default();
    t.record_name = entries.iter().find_map(|e| match &e.decision {
        Decision::Signed {
            digest: d, image, ..
        } if *d == digest && *image == repository => e.record.clone(),
        _ => None,
    });
    if let Some(name) = &t.record_name {
        t.decisions = entries
            .iter()
            .filter(|e| e.record.as_ref() == Some(name))
            .cloned()
            .collect();
    }
    let project = t.decisions.iter().find_map(|e| match &e.decision {
        Decision::Accepted { subject } => Some(subject.project.clone()),
        _ => None,
    });
    for e in &entries {
        if let Decision::Refused { subject, reason } = &e.decision {
            let related = match subject {
                Some(s) => Some(&s.project) == project.as_ref(),
                None => true, // not attributable to a project: show it, it may be this one
            };
            if related {
                t.refused.push(Refused {
                    at: "builder",
                    what: e.record.clone().unwrap_or_else(|| "a record".into()),
                    reason: reason.clone(),
                    when: e.at.clone(),
                });
            }
        }
    }

    // The pass record itself, from the outbox, with its origin signature checked.
    if let Some(name) = &t.record_name {
        t.record = Some(read_record(&sources.builder, name));
    }
    if let (Some(Ok(record)), Ok(statement)) = (&t.record, &t.provenance) {
        t.record_mismatch = compare_outputs(record, statement);
    }

    // The CI run and the review event, from the CI's public API.
    if let (Some(url), Some(Ok(record))) = (&sources.ci_url, &t.record) {
        match ci::CiApi::new(url) {
            Err(e) => t.ci_run = Some(Err(e)),
            Ok(api) => {
                t.ci_run = Some(api.run(&record.ci_run_id).await);
                if let Ok(runs) = api.runs_of_commit(&record.commit).await {
                    t.reviews = runs.into_iter().filter(|r| r.kind == "change").collect();
                }
            }
        }
    }
    Ok(t)
}

fn first_statement(
    fetched: &verify::Fetched,
    keys: &[(String, PublicKey)],
) -> Result<Statement, String> {
    let Some(layers) = fetched.attestations.as_deref() else {
        return Err("no attestation is attached".into());
    };
    let mut errors = Vec::new();
    for (_, key) in keys {
        match verify::verify_attestations(layers, key, &fetched.digest) {
            Ok(s) => return Ok(s),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(errors.join("; "))
}

fn running(t: &mut Trace, rc: &ReconcilerConfig, reference: &str) {
    match history::read_last(&rc.data_dir, 200) {
        Err(e) => t.running_error = Some(format!("sync history: {e}")),
        Ok(records) => {
            if let Some(last) = records.last() {
                for ns in &last.namespaces {
                    for (object, h) in &ns.health {
                        if h.images.iter().any(|i| i == reference) {
                            t.running.push(Running {
                                place: format!("{}/{}", ns.environment, ns.namespace),
                                object: object.clone(),
                                health: match &h.health {
                                    crate::reconcile::target::Health::Healthy => "healthy".into(),
                                    crate::reconcile::target::Health::Progressing(d) => {
                                        format!("progressing: {d}")
                                    }
                                    crate::reconcile::target::Health::Degraded(d) => {
                                        format!("DEGRADED: {d}")
                                    }
                                },
                                env_commit: last.commit.clone(),
                                at: last.finished_at.clone(),
                            });
                        }
                    }
                }
            }
            // Admission refusals of this repository, newest sync first, each reason once.
            let mut seen = std::collections::BTreeSet::new();
            for r in records.iter().rev() {
                for ns in &r.namespaces {
                    for refusal in &ns.refused {
                        for reason in &refusal.reasons {
                            if reason.contains(&t.repository)
                                && seen.insert((refusal.object.clone(), reason.clone()))
                            {
                                t.refused.push(Refused {
                                    at: "reconciler",
                                    what: format!(
                                        "{}/{} {} [{}]",
                                        ns.environment,
                                        ns.namespace,
                                        refusal.object,
                                        refusal.location
                                    ),
                                    reason: reason.clone(),
                                    when: r.finished_at.clone(),
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    t.promotions = promotions(rc, reference).unwrap_or_default();
}

/// Commits of the reconciler's own mirror of the environment repository whose `Airlock-Image`
/// trailer names `reference` (read with `git log`, read-only).
fn promotions(rc: &ReconcilerConfig, reference: &str) -> Result<Vec<Promotion>, String> {
    let mirror = SourceCache::new(rc.data_dir.join("mirror")).mirror_path(&rc.environment_repo.url);
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(&mirror)
        .args([
            "log",
            "--format=%H%x1f%an <%ae>%x1f%aI%x1f%s%x1f%(trailers:key=Airlock-Image,valueonly,separator=%x2C)%x1f%(trailers:key=Airlock-Verified,valueonly,separator=%x2C)%x1e",
            &format!("refs/heads/{}", rc.environment_repo.branch),
        ])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split('\x1e')
        .filter_map(|rec| {
            let f: Vec<&str> = rec.trim().split('\x1f').collect();
            (f.len() == 6 && f[4].trim() == reference).then(|| Promotion {
                commit: f[0].to_owned(),
                author: f[1].to_owned(),
                date: f[2].to_owned(),
                subject: f[3].to_owned(),
                verified: f[5].trim().to_owned(),
            })
        })
        .collect())
}

fn read_record(builder: &BuilderView, name: &str) -> Result<PassRecord, String> {
    // The name comes from our own log, but it still must not climb out of the outbox.
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(format!("record name {name:?} is not a plain file name"));
    }
    let mut keys = Vec::new();
    for p in &builder.origin_keys {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        keys.push(parse_public_key_hex(&text).map_err(|e| format!("{}: {e}", p.display()))?);
    }
    // The outbox is written by the untrusted CI: read the way the builder reads it (no link
    // followed, no FIFO waited on, the size capped while reading).
    let bytes = record::DirOutbox::new(&builder.outbox_dir)
        .read(name)
        .map_err(|e| format!("{}: {e}", builder.outbox_dir.join(name).display()))?;
    record::open(&bytes, &keys).map_err(|e| e.to_string())
}

fn compare_outputs(record: &PassRecord, statement: &Statement) -> Vec<String> {
    let declared: std::collections::BTreeMap<String, String> = statement
        .predicate
        .run_details
        .byproducts
        .iter()
        .filter_map(|b| {
            let path = b
                .name
                .as_deref()?
                .strip_prefix(BYPRODUCT_CI_OUTPUT_PREFIX)?;
            Some((path.to_owned(), b.digest.get("sha256")?.clone()))
        })
        .collect();
    record
        .outputs
        .iter()
        .filter(|o| declared.get(&o.path) != Some(&o.sha256))
        .map(|o| o.path.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Issue 19: the outbox is the untrusted CI's; the trace reads it as the builder does.
    #[test]
    fn a_record_name_that_is_a_link_or_a_fifo_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox");
        std::fs::create_dir(&outbox).unwrap();
        let view = BuilderView {
            data_dir: dir.path().to_path_buf(),
            outbox_dir: outbox.clone(),
            origin_keys: Vec::new(),
            registry: Default::default(),
        };
        std::fs::write(dir.path().join("secret"), b"host file").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), outbox.join("linked.json")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(outbox.join("fifo.json"))
            .status()
            .unwrap();
        assert!(made.success());
        for name in ["linked.json", "fifo.json"] {
            let err = read_record(&view, name).unwrap_err();
            assert!(err.contains(name), "{err}");
        }
        // Control: a regular file is read (and then refused as a record: it is not one).
        std::fs::write(outbox.join("plain.json"), b"{}").unwrap();
        let err = read_record(&view, "plain.json").unwrap_err();
        assert!(!err.contains("No such file"), "{err}");
    }
}

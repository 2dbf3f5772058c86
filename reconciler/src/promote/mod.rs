//! `airlock-reconciler promote IMAGE@sha256:... --to ENV [--from ENV]`: release managers promote by
//! changing Git, never by touching a target.
//!
//! 1. verify the image's signature and provenance with the reconciler's trusted keys;
//! 2. gather facts: which workloads of `--to` use the image's repository, whether the source is
//!    allowed in their namespaces, whether `--from` runs this digest healthily at its last sync;
//! 3. `policies/promotion.rego` decides;
//! 4. rewrite the references in a fresh clone, commit as the release manager with a trailer
//!    saying what was verified, push. A refusal or a rejected push changes nothing.

mod input;
pub mod rewrite;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use airlock_pipeline::source::redact_text;
use anyhow::Context as _;

use crate::reconcile::admission::{judge, load_public_keys};
use crate::reconcile::config::ReconcilerConfig;
use crate::reconcile::history;
use airlock_verify::oci::Registry;
use airlock_verify::rego::RegoPolicy;
use airlock_verify::signature as verify;

pub use self::input::{FromFacts, ImageRef, PromotionInput, ToFacts, UseFact, Verification};

/// The promotion policy shipped in the repository.
pub const EMBEDDED_POLICY: &str = include_str!("../../../policies/promotion.rego");
/// The version of [`PromotionInput`] this code writes.
pub const PROMOTION_INPUT_VERSION: u32 = 1;
/// How many past syncs are searched for the source environment's last one.
const HISTORY_WINDOW: usize = 200;

/// What was asked.
#[derive(Debug, Clone)]
pub struct Request {
    /// `REPOSITORY@sha256:<hex>`.
    pub image: String,
    /// Target environment.
    pub to: String,
    /// Environment it must already run healthily in.
    pub from: Option<String>,
    /// `Name <email>` of the release manager.
    pub author: String,
}

/// A successful promotion.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The image promoted.
    pub image: String,
    /// Environment.
    pub to: String,
    /// Commit pushed.
    pub commit: String,
    /// Branch pushed to.
    pub branch: String,
    /// Image fields changed.
    pub changed: Vec<UseFact>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "promoted {} to {}", self.image, self.to)?;
        let short = |r: &str| {
            r.rsplit_once('@')
                .map_or(r.to_owned(), |(_, d)| d.chars().take(19).collect())
        };
        for u in &self.changed {
            writeln!(
                f,
                "  {} {} ({}): {} -> {}",
                u.file,
                u.object,
                u.container,
                short(&u.current),
                short(&self.image)
            )?;
        }
        write!(
            f,
            "commit {} pushed to {}; the reconciler applies it at its next sync",
            self.commit, self.branch
        )
    }
}

/// Why a promotion did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// The policy refused; every reason.
    #[error("promotion refused, nothing changed:\n  - {}", .0.join("\n  - "))]
    Refused(Vec<String>),
    /// Anything else (unreadable config, Git failure, push rejected).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The compiled promotion policy (package `airlock.promotion`).
pub fn load_policy(path: Option<&Path>) -> Result<RegoPolicy, airlock_verify::rego::PolicyError> {
    RegoPolicy::load(
        "promotion",
        "airlock.promotion",
        path,
        "policies/promotion.rego",
        EMBEDDED_POLICY,
    )
}

/// Runs git in `dir`; its messages may echo `url` with credentials, which are redacted.
fn git(dir: &Path, url: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .context("could not run git")?;
    if !out.status.success() {
        anyhow::bail!(
            "git {} failed: {}",
            args.first().copied().unwrap_or(""),
            redact_text(String::from_utf8_lossy(&out.stderr).trim(), url)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Splits `Name <email>`.
pub fn parse_author(author: &str) -> Result<(String, String), String> {
    let bad = || format!("--author {author:?} must look like \"Name <email>\"");
    let (name, rest) = author.split_once('<').ok_or_else(bad)?;
    let email = rest.strip_suffix('>').ok_or_else(bad)?;
    let name = name.trim();
    if name.is_empty()
        || email.is_empty()
        || email.contains(['<', '>', '\n'])
        || name.contains('\n')
    {
        return Err(bad());
    }
    Ok((name.to_owned(), email.to_owned()))
}

/// Finds every use of `repository` under `environments/<env>/` of a checkout.
fn find_uses(checkout: &Path, env: &str, repository: &str) -> anyhow::Result<Vec<UseFact>> {
    let root = checkout.join("environments").join(env);
    let mut out = Vec::new();
    if !std::fs::symlink_metadata(&root).is_ok_and(|m| m.is_dir()) {
        return Ok(out);
    }
    let Ok(namespaces) = std::fs::read_dir(&root) else {
        return Ok(out);
    };
    // Symlinks are not followed (the reconciler ignores them too): a rewrite must never
    // write outside the clone.
    let mut dirs: Vec<PathBuf> = namespaces
        .flatten()
        .map(|e| e.path())
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
        .collect();
    dirs.sort();
    for dir in dirs {
        let namespace = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        for file in files {
            let meta = std::fs::symlink_metadata(&file)?;
            if !meta.is_file() || meta.len() > crate::reconcile::desired::MAX_MANIFEST_BYTES {
                continue;
            }
            let text = std::fs::read_to_string(&file)?;
            let rel = file
                .strip_prefix(checkout)
                .unwrap_or(&file)
                .display()
                .to_string();
            let uses =
                rewrite::uses(&text, repository).map_err(|e| anyhow::anyhow!("{rel}: {e}"))?;
            out.extend(uses.into_iter().map(|u| UseFact {
                file: rel.clone(),
                namespace: namespace.clone(),
                object: u.object,
                container: u.container,
                current: u.current,
            }));
        }
    }
    Ok(out)
}

/// Verifies, decides and, when allowed, commits and pushes.
pub async fn promote(
    config: &ReconcilerConfig,
    request: &Request,
) -> Result<Outcome, PromoteError> {
    let (name, email) = parse_author(&request.author).map_err(anyhow::Error::msg)?;
    let (repository, digest) = verify::parse_image(&request.image).map_err(anyhow::Error::from)?;
    let keys = load_public_keys(&config.trusted_keys).map_err(anyhow::Error::msg)?;
    let policy = load_policy(config.promotion_policy.as_deref()).map_err(anyhow::Error::from)?;
    let registry = Registry::new(&config.registry.config()).map_err(anyhow::Error::from)?;
    let verified = match verify::fetch(&registry, &repository, &digest).await {
        Ok(fetched) => judge(&fetched, &keys),
        Err(e) => {
            return Err(PromoteError::Refused(vec![format!(
                "could not read the image's signatures: {e}"
            )]));
        }
    };
    let verification = Verification {
        signature_ok: verified.signature.ok,
        signature_key: verified.signature.key.clone(),
        signature_error: verified.signature.error.clone(),
        provenance_error: verified.provenance.as_ref().err().cloned(),
        provenance: verified.provenance.clone().ok(),
    };

    let workdir = tempfile::Builder::new()
        .prefix("airlock-promote-")
        .tempdir()
        .context("could not make a temporary directory")?;
    let checkout = workdir.path().join("env");
    let branch = &config.environment_repo.branch;
    let out = Command::new("git")
        .args(["clone", "--quiet", "--single-branch", "--branch", branch])
        .arg(&config.environment_repo.url)
        .arg(&checkout)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .context("could not run git clone")?;
    if !out.status.success() {
        return Err(anyhow::anyhow!(
            "could not clone the environment repository: {}",
            redact_text(
                String::from_utf8_lossy(&out.stderr).trim(),
                &config.environment_repo.url
            )
        )
        .into());
    }

    let uses = find_uses(&checkout, &request.to, &repository)?;
    let to_config = config.environments.get(&request.to);
    let namespaces_refusing_source = match (&verification.provenance, to_config) {
        (Some(p), Some(env)) => {
            let mut refusing: Vec<String> = uses
                .iter()
                .map(|u| u.namespace.clone())
                .filter(|ns| {
                    env.namespaces
                        .get(ns)
                        .is_none_or(|c| !c.allowed_sources.contains(&p.source_repository))
                })
                .collect();
            refusing.sort();
            refusing.dedup();
            refusing
        }
        _ => Vec::new(),
    };
    let new_reference = format!("{repository}@{digest}");
    let from = match &request.from {
        None => None,
        Some(env) => {
            let records = history::read_last(&config.data_dir, HISTORY_WINDOW)
                .context("could not read the reconciler's sync history")?;
            let last = records
                .iter()
                .rev()
                .find(|r| r.namespaces.iter().any(|n| &n.environment == env));
            Some(FromFacts {
                name: env.clone(),
                configured: config.environments.contains_key(env),
                last_sync: last.map_or("none".into(), |r| r.commit.clone()),
                runs_healthy: last.is_some_and(|r| r.runs_healthy(env, &new_reference)),
            })
        }
    };
    let input = PromotionInput {
        version: PROMOTION_INPUT_VERSION,
        image: ImageRef {
            repository: repository.clone(),
            digest: digest.clone(),
        },
        to: ToFacts {
            name: request.to.clone(),
            configured: to_config.is_some(),
            already_current: !uses.is_empty() && uses.iter().all(|u| u.current == new_reference),
            uses,
            namespaces_refusing_source,
        },
        verification,
        from,
    };
    let reasons = policy.evaluate(&input).map_err(anyhow::Error::from)?;
    if !reasons.is_empty() {
        return Err(PromoteError::Refused(reasons));
    }

    let mut files: Vec<&str> = input.to.uses.iter().map(|u| u.file.as_str()).collect();
    files.dedup();
    for file in &files {
        let path = checkout.join(file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {file}"))?;
        let new_text = rewrite::rewrite(&text, &repository, &new_reference)
            .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        std::fs::write(&path, new_text).with_context(|| format!("write {file}"))?;
    }
    let message = commit_message(&input, &new_reference);
    let message_file = workdir.path().join("message");
    std::fs::write(&message_file, &message).context("write the commit message")?;
    let url = config.environment_repo.url.as_str();
    git(&checkout, url, &["add", "--all", "environments"])?;
    let author = format!("{name} <{email}>");
    git(
        &checkout,
        url,
        &[
            "-c",
            &format!("user.name={name}"),
            "-c",
            &format!("user.email={email}"),
            "commit",
            "--quiet",
            "--author",
            &author,
            "--file",
            &message_file.display().to_string(),
        ],
    )?;
    let commit = git(&checkout, url, &["rev-parse", "HEAD"])?;
    git(&checkout, url, &["push", "--quiet", "origin", &format!("HEAD:refs/heads/{branch}")]).map_err(
        |e| anyhow::anyhow!("{e}\nthe environment repository was not changed; if it moved on meanwhile, run promote again"),
    )?;
    Ok(Outcome {
        image: new_reference,
        to: request.to.clone(),
        commit,
        branch: branch.clone(),
        changed: input.to.uses.clone(),
    })
}

/// The commit message: what changed, then trailers saying what was verified.
pub fn commit_message(input: &PromotionInput, new_reference: &str) -> String {
    let mut m = format!(
        "Promote {} to {}\n\n",
        input.image.repository, input.to.name
    );
    for u in &input.to.uses {
        m.push_str(&format!(
            "{} {} ({}): {}\n",
            u.file, u.object, u.container, u.current
        ));
    }
    m.push('\n');
    let v = &input.verification;
    let mut verified = vec![format!(
        "signature by key {}",
        v.signature_key.as_deref().unwrap_or("?")
    )];
    if let Some(p) = &v.provenance {
        verified.push(format!(
            "SLSA provenance by {} from {}@{} ({}, job {})",
            p.builder_id, p.source_repository, p.commit, p.git_ref, p.job
        ));
    }
    if let Some(f) = &input.from {
        verified.push(format!("healthy in {} at {}", f.name, f.last_sync));
    }
    verified.push("promotion policy allowed".into());
    m.push_str(&format!("Airlock-Image: {new_reference}\n"));
    if let Some(p) = &v.provenance {
        m.push_str(&format!(
            "Airlock-Source: {}@{}\n",
            p.source_repository, p.commit
        ));
    }
    if let Some(f) = &input.from {
        m.push_str(&format!("Airlock-From: {}\n", f.name));
    }
    m.push_str(&format!("Airlock-Verified: {}\n", verified.join("; ")));
    m
}

/// Loads `reconciler.toml` and promotes.
pub async fn promote_from_config(path: &Path, request: &Request) -> Result<Outcome, PromoteError> {
    let config = ReconcilerConfig::load(path).map_err(anyhow::Error::from)?;
    promote(&config, request).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn credentials_in_git_messages_are_redacted() {
        // The one redaction the Git source uses too (airlock_pipeline::source::redact_text).
        assert_eq!(
            redact_text(
                "fatal: unable to access 'https://rm:hunter2@git.example/env.git/': 403",
                ""
            ),
            "fatal: unable to access 'https://***@git.example/env.git/': 403"
        );
        assert_eq!(
            redact_text("git://h/x and ssh://a@b/c", ""),
            "git://h/x and ssh://***@b/c"
        );
    }

    #[test]
    fn authors_must_be_name_and_email() {
        assert_eq!(
            parse_author("Rel Manager <rm@example.org>").unwrap(),
            ("Rel Manager".into(), "rm@example.org".into())
        );
        for bad in ["rm@example.org", "<rm@x>", "A <b", "A <b>\n<c>", "A\nB <c>"] {
            assert!(parse_author(bad).is_err(), "{bad:?}");
        }
    }
}

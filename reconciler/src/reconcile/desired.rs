//! The desired state: every object under `environments/<env>/<namespace>/*.yaml` at one commit
//! of the environment repository, read from the reconciler's own gix mirror (no work tree).

use std::collections::{BTreeMap, BTreeSet};

use airlock_pipeline::source::{CommitId, Mirror, SourceError};
use serde_json::Value;

use super::manifest::{ObjectKey, object_key};

/// Largest manifest file read; bigger files are refused whole.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;
/// Most files under one environment folder.
pub const MAX_FILES: usize = 10_000;
/// Most manifest bytes read in one sync, all environments together.
pub const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
/// Most objects in one sync, all environments together.
pub const MAX_OBJECTS: usize = 20_000;

/// One object from the repository, as written there.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObject {
    /// Environment folder.
    pub environment: String,
    /// Namespace folder.
    pub namespace: String,
    /// Repository path of the file.
    pub file: String,
    /// 1-based document number in the file.
    pub document: usize,
    /// Identity.
    pub key: ObjectKey,
    /// The object.
    pub object: Value,
}

impl DesiredObject {
    /// `file#document`, where a reader finds it.
    pub fn location(&self) -> String {
        format!("{}#{}", self.file, self.document)
    }
}

/// Something in the repository that could not become an object; it is refused and reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Environment folder.
    pub environment: String,
    /// Namespace folder ("" when the file is not inside one).
    pub namespace: String,
    /// `file` or `file#document`.
    pub location: String,
    /// Why.
    pub reason: String,
    /// True when the file's objects are unknown (unreadable YAML): pruning the namespace would
    /// delete objects that may still be wanted, so it is held back.
    pub blocks_prune: bool,
}

/// Everything read at one commit for the configured environments.
#[derive(Debug, Clone, Default)]
pub struct DesiredState {
    /// The commit read.
    pub commit: String,
    /// Objects by (environment, namespace).
    pub objects: BTreeMap<(String, String), Vec<DesiredObject>>,
    /// Files and documents refused before admission.
    pub problems: Vec<Problem>,
}

impl DesiredState {
    /// Namespace folders present for `environment`.
    pub fn namespaces(&self, environment: &str) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self
            .objects
            .keys()
            .filter(|(e, _)| e == environment)
            .map(|(_, n)| n.clone())
            .collect();
        out.extend(
            self.problems
                .iter()
                .filter(|p| p.environment == environment && !p.namespace.is_empty())
                .map(|p| p.namespace.clone()),
        );
        out
    }

    /// True when a problem in this namespace holds back pruning.
    pub fn prune_blocked(&self, environment: &str, namespace: &str) -> Option<&Problem> {
        self.problems
            .iter()
            .find(|p| p.environment == environment && p.namespace == namespace && p.blocks_prune)
    }
}

/// YAML limits for manifests: the environment repository is written by people, and a mistake
/// or a hostile commit must not take the reconciler down (bigger files than pipeline files).
fn yaml_options() -> serde_saphyr::Options {
    airlock_pipeline::spec::untrusted_yaml_options(500_000, 50_000)
}

/// Parses a multi-document YAML file into its objects (empty documents skipped).
pub fn parse_documents(text: &str) -> Result<Vec<(usize, Value)>, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, yaml_options())
        .map_err(|e| e.to_string())?;
    Ok(docs
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_null())
        .map(|(i, v)| (i + 1, v))
        .collect())
}

/// Reads the desired state of `environments` at `commit`.
pub fn read_desired(
    mirror: &Mirror,
    commit: &CommitId,
    environments: &[&str],
) -> Result<DesiredState, SourceError> {
    let mut state = DesiredState {
        commit: commit.to_string(),
        ..DesiredState::default()
    };
    // A hostile or mistaken commit must not exhaust memory: the whole desired state is bounded,
    // and going over fails the sync (nothing applied, nothing pruned) instead of a partial view.
    let too_big = |what: String| SourceError::Repository {
        action: format!("read the desired state at {commit}"),
        repo: mirror.path().to_path_buf(),
        message: what,
    };
    let mut total_bytes = 0u64;
    let mut total_objects = 0usize;
    for env in environments {
        let root = format!("environments/{env}");
        for rel in mirror.list_files(commit, &root, MAX_FILES)? {
            let path = format!("{root}/{rel}");
            if !(rel.ends_with(".yaml") || rel.ends_with(".yml")) {
                continue; // READMEs and the like
            }
            let parts: Vec<&str> = rel.split('/').collect();
            let problem = |namespace: &str, reason: String, blocks_prune| Problem {
                environment: (*env).to_owned(),
                namespace: namespace.to_owned(),
                location: path.clone(),
                reason,
                blocks_prune,
            };
            let [namespace, _file] = parts.as_slice() else {
                state.problems.push(problem(
                    "",
                    "manifests must sit directly in environments/<env>/<namespace>/".into(),
                    false,
                ));
                continue;
            };
            // Folder names become namespaces, pod names and file names: DNS labels only.
            if let Err(reason) = super::config::check_name("namespace folder", namespace) {
                state.problems.push(problem("", reason, false));
                continue;
            }
            let text = match mirror.read_file(commit, &path, MAX_MANIFEST_BYTES) {
                Ok(Some(bytes)) => {
                    total_bytes += bytes.len() as u64;
                    if total_bytes > MAX_TOTAL_BYTES {
                        return Err(too_big(format!(
                            "more than {MAX_TOTAL_BYTES} bytes of manifests"
                        )));
                    }
                    String::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())
                }
                // Listed but not found by that name: a path that is not valid UTF-8. Its
                // objects are unknown, so pruning this namespace waits.
                Ok(None) => Err("the file name is not valid UTF-8".to_owned()),
                Err(SourceError::FileTooLarge { size, max, .. }) => {
                    Err(format!("{size} bytes (limit {max})"))
                }
                Err(e) => return Err(e),
            };
            let docs = text.and_then(|t| parse_documents(&t));
            let docs = match docs {
                Ok(d) => d,
                Err(reason) => {
                    state.problems.push(problem(namespace, reason, true));
                    continue;
                }
            };
            let list = state
                .objects
                .entry(((*env).to_owned(), (*namespace).to_owned()))
                .or_default();
            total_objects += docs.len();
            if total_objects > MAX_OBJECTS {
                return Err(too_big(format!("more than {MAX_OBJECTS} objects")));
            }
            for (document, object) in docs {
                let key = match object_key(&object) {
                    Ok(k) => k,
                    Err(e) => {
                        let mut p = problem(namespace, e.to_string(), true);
                        p.location = format!("{path}#{document}");
                        state.problems.push(p);
                        continue;
                    }
                };
                if let Some(first) = list.iter().find(|o| o.key == key) {
                    let mut p = problem(
                        namespace,
                        format!("{key} is also defined at {}", first.location()),
                        false,
                    );
                    p.location = format!("{path}#{document}");
                    state.problems.push(p);
                    continue;
                }
                list.push(DesiredObject {
                    environment: (*env).to_owned(),
                    namespace: (*namespace).to_owned(),
                    file: path.clone(),
                    document,
                    key,
                    object,
                });
            }
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn multi_document_files_skip_empty_documents() {
        let docs = parse_documents("---\na: 1\n---\n---\nb: [1, 2]\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].1["b"][1], 2);
    }

    #[test]
    fn alias_bombs_and_duplicate_keys_are_refused() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = (b'a' + i - 1) as char;
            let cur = (b'a' + i) as char;
            bomb.push_str(&format!(
                "{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        assert!(parse_documents(&bomb).is_err());
        let dup = parse_documents("a: 1\na: 2\n").unwrap_err();
        assert!(dup.contains("line 2"), "{dup}");
    }

    /// Issue 19: manifests accept any nesting, so the YAML depth budget (64) is what bounds it.
    #[test]
    fn nesting_deeper_than_the_budget_is_refused() {
        let nested = |depth: usize| format!("a: {}1{}\n", "[".repeat(depth), "]".repeat(depth));
        parse_documents(&nested(60)).expect("60 levels");
        let err = parse_documents(&nested(200)).unwrap_err();
        assert!(err.to_lowercase().contains("depth"), "{err}");
    }
}

#[cfg(test)]
mod example_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::reconcile::manifest::{images, object_key, pinned};

    /// The example environment repository in `manifests/` is what the README points people to.
    #[test]
    fn the_example_environment_repository_parses_and_pins_every_image() {
        for text in [
            include_str!(
                "../../../manifests/environments-example/environments/staging/shop/greet.yaml"
            ),
            include_str!(
                "../../../manifests/environments-example/environments/production/shop/greet.yaml"
            ),
        ] {
            let docs = parse_documents(text).unwrap();
            assert_eq!(docs.len(), 2);
            for (_, object) in &docs {
                object_key(object).unwrap();
                for image in images(object) {
                    assert!(pinned(&image.reference).is_some(), "{}", image.reference);
                }
            }
        }
    }
}

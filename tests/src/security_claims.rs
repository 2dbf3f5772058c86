//! Every test SECURITY.md names exists (issue 26). A claim whose test was renamed or deleted
//! points at nothing, and a reader would still believe it proven.
//!
//! A "test name" here is a backticked lowercase identifier with at least three underscores
//! (`a_job_cannot_write_past_the_default_disk_limit`), alone or as the last segment of a path
//! (`source::tests::materialise::source_materialise_refuses_hostile_trees`); a path ending in
//! `*` names a whole module and is left out. It must be the name of a function somewhere in
//! the repository's Rust sources.

use std::collections::BTreeSet;
use std::path::Path;

/// The test names `markdown` mentions, in order of first mention.
pub fn named_tests(markdown: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut names = Vec::new();
    for (i, span) in markdown.split('`').enumerate() {
        // Odd pieces are inside backticks.
        if i % 2 == 0 || span.ends_with('*') {
            continue;
        }
        let last = span.rsplit("::").next().unwrap_or(span);
        let looks_like_a_test = last.matches('_').count() >= 3
            && last
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && last.starts_with(|c: char| c.is_ascii_lowercase());
        if looks_like_a_test && seen.insert(last.to_string()) {
            names.push(last.to_string());
        }
    }
    names
}

/// The names of every function (`fn NAME`) in the Rust files under `dirs` of `root`.
pub fn defined_functions(root: &Path, dirs: &[&str]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut pending: Vec<std::path::PathBuf> = dirs.iter().map(|d| root.join(d)).collect();
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                // Build output is not source.
                if path.file_name().is_some_and(|n| n != "target") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                for piece in text.split("fn ").skip(1) {
                    let name: String = piece
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        names.insert(name);
                    }
                }
            }
        }
    }
    names
}

/// The test names in `markdown` that no function in `defined` has.
pub fn missing(markdown: &str, defined: &BTreeSet<String>) -> Vec<String> {
    named_tests(markdown)
        .into_iter()
        .filter(|name| !defined.contains(name))
        .collect()
}

/// The Rust file paths `markdown` mentions (`dir/file.rs` or `file.rs`) that do not exist:
/// a path with a directory must exist from `root`, from a crate directory or from a crate's
/// `src/`; a bare file name anywhere in the sources.
pub fn missing_paths(markdown: &str, root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for dir in SOURCE_DIRS {
        let mut pending = vec![root.join(dir)];
        while let Some(d) = pending.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    if path.file_name().is_some_and(|n| n != "target") {
                        pending.push(path);
                    }
                } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                    files.push(name.to_string());
                }
            }
        }
    }
    let mut missing = Vec::new();
    for word in markdown.split(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c))) {
        let Some(path) = word.strip_suffix(".rs").map(|_| word) else {
            continue;
        };
        let exists = if path.contains('/') {
            root.join(path).exists()
                || SOURCE_DIRS.iter().any(|d| {
                    root.join(d).join(path).exists() || root.join(d).join("src").join(path).exists()
                })
        } else {
            files.iter().any(|f| f == path)
        };
        if !exists && !missing.iter().any(|m| m == path) {
            missing.push(path.to_string());
        }
    }
    missing
}

/// Where the repository's Rust sources are.
pub const SOURCE_DIRS: &[&str] = &[
    "pipeline",
    "ci-cluster",
    "trusted-builder",
    "reconciler",
    "verify",
    "tests",
    "fuzz/fuzz_targets",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_in_backticks_and_paths_and_wildcards_are_left_out() {
        let text = "| a | `x::tests::a_job_is_refused_here` and `b_thing_is_kept_too`, \
                    `tree::tests::*`, `MAX_BODY_BYTES`, `check_realm`, `ci-cluster run` |";
        assert_eq!(
            named_tests(text),
            ["a_job_is_refused_here", "b_thing_is_kept_too"]
        );
    }

    #[test]
    fn every_test_security_md_names_exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let security = std::fs::read_to_string(root.join("SECURITY.md")).expect("SECURITY.md");
        let defined = defined_functions(&root, SOURCE_DIRS);
        // Control: the check sees what is there, and a name that is not there.
        assert!(defined.contains("every_test_security_md_names_exists"));
        assert_eq!(
            missing("`a_claim_whose_test_was_deleted`", &defined),
            ["a_claim_whose_test_was_deleted"]
        );
        let named = named_tests(&security);
        assert!(named.len() > 50, "only {} test names found", named.len());
        let missing = missing(&security, &defined);
        assert!(
            missing.is_empty(),
            "SECURITY.md names tests that do not exist: {missing:?}"
        );
        // And the files it points to.
        assert_eq!(
            missing_paths("`tests/no/such_file.rs`", &root),
            ["tests/no/such_file.rs"]
        );
        let stale = missing_paths(&security, &root);
        assert!(
            stale.is_empty(),
            "SECURITY.md names files that do not exist: {stale:?}"
        );
    }
}

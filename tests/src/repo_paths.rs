//! The guard that keeps a clone self-sufficient: no tracked file may point at the development
//! machines' `shared/` folder, or at any path above the repository root.
//!
//! A clone has nothing beside it, so a test, bench or script that reads `../…` past the root
//! passes on a developer's machine and fails for everyone else. Two rules catch that class:
//!
//! 1. Any mention of the development machines' `shared` folder beside the checkout (see
//!    [`forbidden_names`]) is refused outright, wherever it appears.
//! 2. A relative path that is *resolved against a known base* must stay inside the root: in
//!    Rust, `include_str!`/`include_bytes!`/`#[path]` resolve against the file's folder and
//!    anything on a line naming `CARGO_MANIFEST_DIR` against the crate's folder; in shell
//!    scripts, `$(dirname "$0")/…` against the script's folder; in `Cargo.toml`, `path = "…"`
//!    against the manifest's folder; in Markdown, link targets against the file's folder.
//!
//! Relative strings with no such base (a hostile `../../etc/passwd` a test feeds to a parser)
//! are data, not paths we read, and are left alone.

use std::path::{Component, Path, PathBuf};

/// One offending reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file, relative to the repository root.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// Names that only exist on the development machines. Spelled in pieces so this file does not
/// trip its own rule.
fn forbidden_names() -> [String; 2] {
    [format!("../{}", "shared"), format!("{}/fixtures", "shared")]
}

/// Checks one file's text. `rel` is its path relative to the repository root, `crate_dir` the
/// folder (relative to the root) of the nearest `Cargo.toml` above it, if any.
pub fn check_text(rel: &Path, crate_dir: Option<&Path>, text: &str) -> Vec<Finding> {
    let file = rel.display().to_string();
    let file_dir = rel.parent().unwrap_or(Path::new(""));
    let ext = rel.extension().and_then(|e| e.to_str()).unwrap_or("");
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        // `concat!(env!("CARGO_MANIFEST_DIR"), "/…")` is often split over lines by rustfmt.
        let manifest_dir_join = lines[i.saturating_sub(2)..=i]
            .iter()
            .any(|l| l.contains("CARGO_MANIFEST_DIR"));
        let mut push = |reason: String| {
            out.push(Finding {
                file: file.clone(),
                line: i + 1,
                reason,
            })
        };
        for bad in forbidden_names() {
            if line.contains(&bad) {
                push(format!(
                    "refers to `{bad}`, which exists only beside the development checkouts \
                     (recorded inputs belong in tests/fixtures)"
                ));
            }
        }
        let base: Option<&Path> = match ext {
            "rs" if manifest_dir_join => crate_dir,
            "rs" if ["include_str!", "include_bytes!", "#[path"]
                .iter()
                .any(|m| line.contains(m)) =>
            {
                Some(file_dir)
            }
            "sh" if line.contains("dirname \"$0\"") => Some(file_dir),
            "toml" if name == "Cargo.toml" && line.contains("path") => Some(file_dir),
            "md" if line.contains("](") => Some(file_dir),
            _ => None,
        };
        let Some(base) = base else { continue };
        for candidate in relative_paths(line) {
            if climbs_out(base, &candidate) {
                push(format!(
                    "`{candidate}` from {} resolves above the repository root",
                    if base.as_os_str().is_empty() {
                        "the root".to_string()
                    } else {
                        format!("{}/", base.display())
                    }
                ));
            }
        }
    }
    out
}

/// The relative paths on a line that start by climbing: `..` or `../x` as a word, and `/..` or
/// `/../x` right after a quote or `)` (the tail joined to `CARGO_MANIFEST_DIR` or
/// `$(dirname "$0")`).
fn relative_paths(line: &str) -> Vec<String> {
    const ENDS: &[char] = &['"', '\'', ')', '`', '>', ' ', '\t', ',', '\\', ']'];
    let bytes = line.as_bytes();
    let climbs_here = |rest: &str| {
        rest.strip_prefix("..").is_some_and(|after| {
            after.is_empty() || after.starts_with('/') || after.starts_with(ENDS)
        })
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &line[i..];
        let prev = if i == 0 { b' ' } else { bytes[i - 1] };
        let word = matches!(
            prev,
            b' ' | b'"' | b'\'' | b'(' | b'=' | b'`' | b'<' | b'\t'
        ) && climbs_here(rest);
        let joined =
            matches!(prev, b'"' | b')' | b'\'') && rest.strip_prefix('/').is_some_and(climbs_here);
        if word || joined {
            let end = rest[1..].find(ENDS).map_or(rest.len(), |e| e + 1);
            out.push(rest[..end].trim_start_matches('/').to_string());
            i += end;
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

/// Whether `path`, taken relative to `base` (itself relative to the root), leaves the root.
fn climbs_out(base: &Path, path: &str) -> bool {
    let mut depth: i64 = 0;
    for c in base.join(path).components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    false
}

/// The folder of the nearest `Cargo.toml` at or above `rel`'s folder, among `manifests`.
fn crate_dir_of<'a>(rel: &Path, manifests: &'a [PathBuf]) -> Option<&'a Path> {
    manifests
        .iter()
        .map(PathBuf::as_path)
        .filter(|dir| rel.starts_with(dir))
        .max_by_key(|dir| dir.components().count())
}

/// Checks every file `git` lists in the repository at `root` (tracked, and new files not
/// ignored), except the recorded fixtures themselves, which are data.
pub fn check_repository(root: &Path) -> Result<Vec<Finding>, String> {
    let listed = std::process::Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot run git ls-files in {}: {e}", root.display()))?;
    if !listed.status.success() {
        return Err(format!(
            "git ls-files failed in {}: {}",
            root.display(),
            String::from_utf8_lossy(&listed.stderr)
        ));
    }
    let files: Vec<PathBuf> = listed
        .stdout
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| PathBuf::from(String::from_utf8_lossy(f).into_owned()))
        .collect();
    let manifests: Vec<PathBuf> = files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n == "Cargo.toml"))
        .map(|f| f.parent().unwrap_or(Path::new("")).to_path_buf())
        .collect();
    let mut findings = Vec::new();
    for rel in &files {
        if rel.starts_with("tests/fixtures") || rel.file_name().is_some_and(|n| n == "Cargo.lock") {
            continue;
        }
        // Deleted but still in the index, or not text: nothing to read.
        let Ok(bytes) = std::fs::read(root.join(rel)) else {
            continue;
        };
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        findings.extend(check_text(rel, crate_dir_of(rel, &manifests), &text));
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `text` with each `UP/` read as `../`: the inputs below are spelled that way so
    /// that this file passes the guard it tests.
    fn check(rel: &str, crate_dir: Option<&str>, text: &str) -> Vec<Finding> {
        let text = text.replace("UP/", "../");
        check_text(Path::new(rel), crate_dir.map(Path::new), &text)
    }

    #[test]
    fn a_test_reading_the_shared_folder_is_refused_and_the_fixtures_folder_is_not() {
        let shared = format!(
            "const V: &str = concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/UP/UP/{}/fixtures/x.json\");",
            "shared"
        );
        let found = check(
            "pipeline/src/record/tests/pae.rs",
            Some("pipeline"),
            &shared,
        );
        assert_eq!(found.len(), 3, "{found:?}"); // both names, and the climb
        assert!(found.iter().all(|f| f.line == 1));
        assert!(
            found[2]
                .reason
                .contains("resolves above the repository root")
        );
        // Control: the same line pointing at the repository's own fixtures.
        let inside =
            "const V: &str = concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/UP/tests/fixtures/x.json\");";
        assert_eq!(
            check("pipeline/src/record/tests/pae.rs", Some("pipeline"), inside),
            vec![]
        );
    }

    #[test]
    fn climbs_are_resolved_against_the_right_base() {
        // include_str! is relative to the file: three levels up from reconciler/src/promote is
        // the root, four is above it.
        let ok = r#"pub const P: &str = include_str!("UP/UP/UP/policies/promotion.rego");"#;
        assert_eq!(
            check("reconciler/src/promote/mod.rs", Some("reconciler"), ok),
            vec![]
        );
        let out = r#"pub const P: &str = include_str!("UP/UP/UP/UP/policies/promotion.rego");"#;
        assert_eq!(
            check("reconciler/src/promote/mod.rs", Some("reconciler"), out).len(),
            1
        );
        // CARGO_MANIFEST_DIR joins are relative to the crate, wherever the file is.
        let join = r#"let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("UP/UP/elsewhere/x");"#;
        assert_eq!(
            check("ci-cluster/tests/deep/a/b.rs", Some("ci-cluster"), join).len(),
            1
        );
        let split = "const V: &str = concat!(\n    env!(\"CARGO_MANIFEST_DIR\"),\n    \"/UP/UP/elsewhere/x.json\"\n);";
        let found = check("pipeline/src/a.rs", Some("pipeline"), split);
        assert_eq!(
            (found.len(), found.first().map(|f| f.line)),
            (1, Some(3)),
            "{found:?}"
        );
        let join_ok = r#"let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("UP/target/x");"#;
        assert_eq!(
            check("ci-cluster/tests/deep/a/b.rs", Some("ci-cluster"), join_ok),
            vec![]
        );
        // Scripts: $(dirname "$0") is the script's folder.
        let sh = "cd \"$(dirname \"$0\")/UP/..\"";
        assert_eq!(check("scripts/test.sh", None, sh).len(), 1);
        assert_eq!(
            check("scripts/test.sh", None, "cd \"$(dirname \"$0\")/..\""),
            vec![]
        );
        assert_eq!(
            check("top.sh", None, "cd \"$(dirname \"$0\")/..\"").len(),
            1
        );
        // Manifests and Markdown links.
        assert_eq!(
            check("fuzz/Cargo.toml", None, "x = { path = \"UP/UP/outside\" }").len(),
            1
        );
        assert_eq!(
            check("fuzz/Cargo.toml", None, "x = { path = \"UP/pipeline\" }"),
            vec![]
        );
        assert_eq!(
            check("README.md", None, "see [notes](UP/notes.md)").len(),
            1
        );
        assert_eq!(
            check("docs/a.md", None, "see [notes](UP/README.md)"),
            vec![]
        );
    }

    #[test]
    fn hostile_strings_fed_to_parsers_are_data_not_paths() {
        let attack = r#"assert!(check_workspace_path("UP/UP/etc/passwd").is_err());"#;
        assert_eq!(
            check("pipeline/src/spec/tests.rs", Some("pipeline"), attack),
            vec![]
        );
    }

    #[test]
    fn this_repository_passes_its_own_guard() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let findings = check_repository(&root).expect("git ls-files");
        assert!(
            findings.is_empty(),
            "paths outside the repository:\n{}",
            findings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

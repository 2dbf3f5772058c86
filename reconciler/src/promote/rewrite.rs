//! Rewriting image references in environment-repository files, keeping every other byte (and
//! so comments and formatting) as the release manager wrote it. The result is parsed again and
//! must equal the original objects with only the image fields changed.

use serde_json::Value;

use crate::reconcile::desired::parse_documents;
use crate::reconcile::manifest::images;

/// The repository part of an image reference: without `@digest` and without `:tag`.
pub fn repository_of(reference: &str) -> &str {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    match no_digest.rsplit_once('/') {
        Some((prefix, last)) => match last.split_once(':') {
            Some((name, _tag)) => &no_digest[..prefix.len() + 1 + name.len()],
            None => no_digest,
        },
        None => no_digest.split(':').next().unwrap_or(no_digest),
    }
}

/// One image field that names the repository being promoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    /// 1-based document.
    pub document: usize,
    /// `Kind/name`.
    pub object: String,
    /// Container name.
    pub container: String,
    /// The reference now.
    pub current: String,
}

/// Every image field in `text` naming `repository`.
pub fn uses(text: &str, repository: &str) -> Result<Vec<Use>, String> {
    let mut out = Vec::new();
    for (document, object) in parse_documents(text)? {
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("?");
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("?");
        for image in images(&object) {
            if repository_of(&image.reference) == repository {
                out.push(Use {
                    document,
                    object: format!("{kind}/{name}"),
                    container: image.container,
                    current: image.reference,
                });
            }
        }
    }
    Ok(out)
}

fn is_reference_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '@' | '.' | '-' | '_')
}

/// Replaces every whole occurrence of each `old` reference with `new`.
fn replace_whole(text: &str, old: &str, new: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(old) {
        out.push_str(&rest[..i]);
        let before_ok = out.chars().last().is_none_or(|c| !is_reference_char(c));
        let after_ok = rest[i + old.len()..]
            .chars()
            .next()
            .is_none_or(|c| !is_reference_char(c));
        out.push_str(if before_ok && after_ok { new } else { old });
        rest = &rest[i + old.len()..];
    }
    out.push_str(rest);
    out
}

fn set_images(object: &mut Value, repository: &str, new: &str) {
    for image in images(object) {
        if repository_of(&image.reference) == repository
            && let Some(slot) = object.pointer_mut(&image.path)
        {
            *slot = Value::String(new.to_owned());
        }
    }
}

/// `text` with every image of `repository` pointing at `new`. Checked: the rewritten file parses
/// to exactly the original objects with those image fields replaced, or this is an error.
pub fn rewrite(text: &str, repository: &str, new: &str) -> Result<String, String> {
    let mut out = text.to_owned();
    let mut olds: Vec<String> = uses(text, repository)?
        .into_iter()
        .map(|u| u.current)
        .collect();
    olds.sort();
    olds.dedup();
    for old in &olds {
        out = replace_whole(&out, old, new);
    }
    let mut expected = parse_documents(text)?;
    for (_, object) in &mut expected {
        set_images(object, repository, new);
    }
    let got = parse_documents(&out)?;
    if got != expected {
        return Err(
            "the image references could not be rewritten in place (written in an unusual way?); edit the file by hand"
                .into(),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn repository_of_strips_tag_and_digest_but_not_the_port() {
        assert_eq!(
            repository_of("127.0.0.1:5000/greet@sha256:x"),
            "127.0.0.1:5000/greet"
        );
        assert_eq!(
            repository_of("127.0.0.1:5000/greet:1.0"),
            "127.0.0.1:5000/greet"
        );
        assert_eq!(
            repository_of("127.0.0.1:5000/greet"),
            "127.0.0.1:5000/greet"
        );
        assert_eq!(repository_of("greet:1"), "greet");
    }

    #[test]
    fn rewrites_only_the_repository_and_keeps_comments() {
        let text = format!(
            "# the web tier\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  template:\n    spec:\n      containers:\n      - name: web  # main\n        image: r.example/web@{A}\n      - name: side\n        image: r.example/web-sidecar@{A}\n"
        );
        let out = rewrite(&text, "r.example/web", &format!("r.example/web@{B}")).unwrap();
        assert!(out.contains("# the web tier") && out.contains("# main"));
        assert!(out.contains(&format!("image: r.example/web@{B}")));
        assert!(out.contains(&format!("r.example/web-sidecar@{A}")), "{out}");
    }

    #[test]
    fn a_tag_prefix_of_another_tag_is_not_touched() {
        let text = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: a, image: \"r/x:1\"}\n  - {name: b, image: \"r/y:10\"}\n";
        let out = rewrite(text, "r/x", &format!("r/x@{B}")).unwrap();
        assert!(
            out.contains(&format!("r/x@{B}")) && out.contains("r/y:10"),
            "{out}"
        );
    }

    #[test]
    fn a_reference_outside_an_image_field_makes_it_refuse() {
        let text = format!(
            "kind: Pod\nmetadata:\n  name: p\n  annotations: {{pinned: \"r/x@{A}\"}}\nspec:\n  containers:\n  - {{name: a, image: \"r/x@{A}\"}}\n"
        );
        assert!(rewrite(&text, "r/x", &format!("r/x@{B}")).is_err());
    }
}

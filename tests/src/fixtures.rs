//! Recorded third-party inputs (forge payloads, published test vectors) kept in this
//! repository under `tests/fixtures/`, with their origins and licences in its README. Every
//! crate's tests read them through here, so a clone alone passes its tests.

use std::path::{Component, Path, PathBuf};

/// The folder holding the fixtures: `tests/fixtures` in this repository.
pub fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))
}

/// The path of the fixture `rel` (relative to [`dir`], never climbing out of it).
///
/// Panics on a name that is absolute or has a `..`: fixtures live in this repository only.
pub fn path(rel: &str) -> PathBuf {
    let inside = Path::new(rel)
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    assert!(
        inside && !rel.is_empty(),
        "fixture name {rel:?} must be a plain relative path below {}",
        dir().display()
    );
    dir().join(rel)
}

/// The bytes of the fixture `rel`; panics naming the file when it cannot be read.
pub fn read(rel: &str) -> Vec<u8> {
    let path = path(rel);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read fixture {}: {e} (fixtures are in tests/fixtures, see its README)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_are_read_from_inside_the_repository() {
        let bytes = read("supply-chain/dsse/protocol-test-vector.json");
        assert!(bytes.starts_with(b"{"));
        assert!(dir().starts_with(env!("CARGO_MANIFEST_DIR")));
    }

    #[test]
    #[should_panic(expected = "must be a plain relative path")]
    fn a_fixture_name_cannot_climb_out() {
        let _ = path("github/../../Cargo.toml");
    }

    #[test]
    #[should_panic(expected = "must be a plain relative path")]
    fn a_fixture_name_cannot_be_absolute() {
        let _ = path("/etc/passwd");
    }
}

//! Credentials never reach error messages.

use tempfile::TempDir;

use crate::source::SourceCache;
use crate::source::error::{redact_text, redact_url};

#[test]
fn source_redacts_url_credentials() {
    let url = "https://bob:p%40ss@example.com/r.git";
    assert_eq!(redact_url(url), "https://***@example.com/r.git");
    assert_eq!(redact_url("git://h/r.git"), "git://h/r.git");
    let text = redact_text(
        "could not connect to \"https://bob:p%40ss@example.com/r.git\"; password p@ss; raw p%40ss",
        url,
    );
    assert!(!text.contains("bob:"), "{text}");
    assert!(!text.contains("p@ss"), "{text}");
    assert!(!text.contains("p%40ss"), "{text}");
    assert!(text.contains("https://***@example.com/r.git"), "{text}");
}

#[test]
fn source_unreachable_remote_error_is_redacted() {
    let tmp = TempDir::new().unwrap();
    let cache = SourceCache::new(tmp.path());
    // Nothing listens on port 1; the error must not repeat the password.
    let url = "http://alice:hunter2secret@127.0.0.1:1/repo.git";
    let err = cache.fetch_rev(url, "main").unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2secret"), "{text}");
    assert!(!text.contains("alice"), "{text}");
    assert!(!cache.mirror_path(url).to_string_lossy().contains("hunter2"));
}

//! Intake tests: every recorded payload under `tests/fixtures/{github,gitlab,gerrit}`
//! is parsed and its outcome checked, plus authentication, validation and
//! delivery-key tests. Fixture payloads are unsigned, so the tests sign them
//! (or present the token) with a test secret.

mod gerrit;
mod github;
mod gitlab;
mod replay;
mod stale;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use airlock_pipeline::spec::EventKind;

use super::{Intake, IntakeError};
use crate::event::{ForgeEvent, Intent};

/// A store in a temporary directory that can be closed and opened again
/// (the replay and stale-event tests).
struct Db {
    dir: tempfile::TempDir,
    store: Option<crate::store::Store>,
}

impl Db {
    fn new() -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = crate::store::Store::open(&dir.path().join("ci.sqlite")).expect("open");
        Db {
            dir,
            store: Some(store),
        }
    }

    fn store(&self) -> &crate::store::Store {
        self.store.as_ref().expect("open")
    }

    /// Closes the database and opens it again, as a restart does.
    fn restart(&mut self) {
        drop(self.store.take());
        self.store =
            Some(crate::store::Store::open(&self.dir.path().join("ci.sqlite")).expect("reopen"));
    }

    fn accept(&self, event: &ForgeEvent) -> crate::store::Accepted {
        self.store()
            .accept_event("app", event, 1_000)
            .expect("accept")
    }
}

/// The recorded payloads, kept in the repository (`tests/fixtures`, see its README).
fn fixtures_dir() -> PathBuf {
    airlock_tests::fixtures::dir()
}

/// A fixture's bytes, by path relative to the fixtures directory.
fn fixture(rel: &str) -> Vec<u8> {
    airlock_tests::fixtures::read(rel)
}

/// A fixture parsed as JSON, for tests that edit a real payload.
fn fixture_json(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(rel))
        .unwrap_or_else(|e| panic!("fixture {rel} is not JSON: {e}"))
}

/// The outcome a fixture must produce.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// `Intent::Run` with this kind.
    Run(EventKind),
    /// `Intent::CancelChange`.
    Cancel,
    /// Ignored, with a reason containing this text.
    Ignored(&'static str),
    /// Malformed, with a message containing this text.
    Malformed(&'static str),
}

/// Asserts that `result` is what `expect` says, naming `what` on failure.
fn check(what: &str, result: Result<Intake, IntakeError>, expect: Expect) {
    match (expect, result) {
        (Expect::Run(kind), Ok(Intake::Event(e))) => {
            assert_eq!(e.intent, Intent::Run, "{what}: {e:?}");
            assert_eq!(e.kind, kind, "{what}: {e:?}");
            assert_event_is_well_formed(what, &e);
        }
        (Expect::Cancel, Ok(Intake::Event(e))) => {
            assert_eq!(e.intent, Intent::CancelChange, "{what}: {e:?}");
            assert_eq!(e.kind, EventKind::Change, "{what}: {e:?}");
            assert!(
                e.change.is_some(),
                "{what}: a cancel names its change: {e:?}"
            );
        }
        (Expect::Ignored(why), Ok(Intake::Ignored(reason))) => {
            assert!(
                reason.contains(why),
                "{what}: ignored for {reason:?}, expected a reason containing {why:?}"
            );
        }
        (Expect::Malformed(msg), Err(IntakeError::Malformed(m))) => {
            assert!(
                m.contains(msg),
                "{what}: malformed {m:?}, expected a message containing {msg:?}"
            );
        }
        (expect, got) => panic!("{what}: expected {expect:?}, got {got:?}"),
    }
}

/// What every `Run` event must satisfy, whatever the forge.
fn assert_event_is_well_formed(what: &str, e: &ForgeEvent) {
    assert!(super::is_commit(&e.commit), "{what}: commit {:?}", e.commit);
    assert!(
        super::check_ref(&e.git_ref, "ref").is_ok(),
        "{what}: ref {:?}",
        e.git_ref
    );
    assert!(
        !e.repository.is_empty() && !e.delivery.is_empty(),
        "{what}: {e:?}"
    );
    assert_eq!(
        e.kind == EventKind::Change,
        e.change.is_some(),
        "{what}: change iff kind change: {e:?}"
    );
}

/// The event inside an `Intake`, or a panic naming what came instead.
fn event(result: Result<Intake, IntakeError>) -> ForgeEvent {
    match result {
        Ok(Intake::Event(e)) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// The error of a refused delivery.
fn error(result: Result<Intake, IntakeError>) -> IntakeError {
    match result {
        Err(e) => e,
        Ok(other) => panic!("expected an error, got {other:?}"),
    }
}

/// Asserts an `Unauthorized` whose message (Display and Debug) does not leak `secret`.
fn assert_unauthorized(what: &str, result: Result<Intake, IntakeError>, secret: &str) {
    let e = error(result);
    assert!(
        matches!(e, IntakeError::Unauthorized(_)),
        "{what}: expected unauthorized, got {e:?}"
    );
    assert_eq!((e.status(), e.reason()), (401, "unauthorized"), "{what}");
    assert!(
        !format!("{e} {e:?}").contains(secret),
        "{what}: the secret leaked into {e:?}"
    );
}

/// Every `.json` / `.jsonl` file below `dir`, relative to the fixtures directory.
fn payload_files(dir: &Path, out: &mut BTreeSet<String>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            payload_files(&path, out);
        } else if path
            .extension()
            .is_some_and(|x| x == "json" || x == "jsonl")
        {
            let rel = path
                .strip_prefix(fixtures_dir())
                .expect("below the fixtures directory");
            out.insert(rel.to_string_lossy().into_owned());
        }
    }
}

/// A fixture added later cannot be silently skipped: every payload file of
/// the three forges must appear in one of the tables the other tests run.
#[test]
fn intake_every_forge_fixture_is_covered_by_a_test() {
    let mut on_disk = BTreeSet::new();
    for forge in ["github", "gitlab", "gerrit"] {
        payload_files(&fixtures_dir().join(forge), &mut on_disk);
    }
    assert!(
        on_disk.len() >= 70,
        "fixtures not found under {}: {on_disk:?}",
        fixtures_dir().display()
    );
    let mut tested: BTreeSet<String> = BTreeSet::new();
    tested.extend(github::FIXTURES.iter().map(|(path, _, _)| path.to_string()));
    tested.extend(gitlab::FIXTURES.iter().map(|(path, _, _)| path.to_string()));
    tested.extend(gerrit::FIXTURES.iter().map(|(path, _)| path.to_string()));
    tested.extend(
        gerrit::JSONL_FIXTURES
            .iter()
            .map(|(path, _)| path.to_string()),
    );
    tested.insert(github::SIGNATURE_VECTOR.to_string());
    let untested: Vec<_> = on_disk.difference(&tested).collect();
    assert!(untested.is_empty(), "fixtures no test reads: {untested:?}");
    let missing: Vec<_> = tested.difference(&on_disk).collect();
    assert!(
        missing.is_empty(),
        "tables name files that do not exist: {missing:?}"
    );
}

#[test]
fn intake_error_status_and_reason() {
    let u = IntakeError::Unauthorized("x".into());
    let m = IntakeError::Malformed("y".into());
    assert_eq!(
        (u.status(), u.reason(), u.to_string().as_str()),
        (401, "unauthorized", "unauthorized: x")
    );
    assert_eq!(
        (m.status(), m.reason(), m.to_string().as_str()),
        (400, "malformed", "malformed: y")
    );
}

#[test]
fn intake_ref_and_commit_validation() {
    for good in [
        "refs/heads/main",
        "refs/tags/v1.0.0",
        "refs/changes/54/654/1",
        "refs/pull/5/head",
        "refs/heads/feature/x-y_z",
    ] {
        assert!(super::check_ref(good, "ref").is_ok(), "{good}");
    }
    for bad in [
        "main",
        "refs/heads/a..b",
        "refs/heads/a b",
        "refs/heads/a\0b",
        "refs/heads/a\nb",
        "refs/heads/",
        "refs//heads",
        "refs/heads/.hidden",
        "refs/heads/x.lock",
        "refs/heads/a@{1}",
        "refs/heads/a:b",
        "refs/heads/a~1",
        "refs/heads/a\\b",
        "",
    ] {
        assert!(
            super::check_ref(bad, "ref").is_err(),
            "{bad:?} must be refused"
        );
    }
    assert!(super::is_commit("0123456789abcdef0123456789abcdef01234567"));
    for bad in [
        "0123456789ABCDEF0123456789abcdef01234567",
        "0123456789abcdef",
        "g123456789abcdef0123456789abcdef01234567",
        "",
    ] {
        assert!(!super::is_commit(bad), "{bad:?}");
    }
    for bad in ["", "/etc", "a/../b", "a//b", "a\nb"] {
        assert!(
            super::check_repository(bad, "repository").is_err(),
            "{bad:?}"
        );
    }
    assert!(super::check_repository("platform/build", "repository").is_ok());
}

#[test]
fn intake_not_json_names_the_position_not_the_content() {
    let e = super::parse_json(b"{\"secret-looking\": nope}").expect_err("not JSON");
    assert_eq!(e.reason(), "malformed");
    assert!(e.to_string().contains("line 1"), "{e}");
    assert!(
        !e.to_string().contains("nope") && !e.to_string().contains("secret-looking"),
        "{e}"
    );
}

#[test]
fn intake_display_text_is_one_clean_line() {
    assert_eq!(super::display_text("Subject\n\nBody"), "Subject");
    assert_eq!(super::display_text("  a\u{1b}[31mb\t "), "a[31mb");
    assert_eq!(super::display_text(&"x".repeat(1000)).len(), 200);
}

/// Issue 19: each field a forge sends has its own bound, proven at the limit (accepted) and one
/// past it (refused).
#[test]
fn intake_field_lengths_are_bounded_at_their_limits() {
    use axum::http::{HeaderMap, HeaderValue};
    let header = |value: String| {
        let mut headers = HeaderMap::new();
        headers.insert("x-delivery", HeaderValue::from_str(&value).expect("header"));
        headers
    };
    assert!(super::id_header(&header("d".repeat(200)), "x-delivery").is_ok());
    assert!(super::id_header(&header("d".repeat(201)), "x-delivery").is_err());

    let at_ref = format!("refs/heads/{}", "r".repeat(1024 - "refs/heads/".len()));
    assert!(super::check_ref(&at_ref, "ref").is_ok());
    assert!(super::check_ref(&format!("{at_ref}r"), "ref").is_err());

    let repo = |n: usize| format!("org/{}", "p".repeat(n - "org/".len()));
    assert!(super::check_repository(&repo(512), "repository").is_ok());
    assert!(super::check_repository(&repo(513), "repository").is_err());

    let number = |text: &str| super::opt_uint(&serde_json::json!({ "n": text }), "n");
    assert_eq!(
        number(&"9".repeat(19)).ok().flatten(),
        Some(9_999_999_999_999_999_999)
    );
    assert!(number(&"1".repeat(20)).is_err());
}

#[test]
fn intake_forge_times_in_the_formats_forges_send() {
    let time = |s: &str| super::opt_time_ms(&serde_json::json!({ "t": s }), "t");
    // GitHub and current GitLab: RFC 3339, with any offset.
    assert_eq!(time("2018-06-25T19:21:45Z"), Some(1_529_954_505_000));
    assert_eq!(time("2018-06-25T21:21:45+02:00"), Some(1_529_954_505_000));
    // Older GitLab.
    assert_eq!(time("2017-12-10 17:05:14 UTC"), Some(1_512_925_514_000));
    assert_eq!(time("2017-12-10 18:05:14 +0100"), Some(1_512_925_514_000));
    // Anything else is no time (arrival order), never an error: the GitLab
    // docs' own `2015-04-08T21: 00:25-07:00`, a number, nothing.
    assert_eq!(time("2015-04-08T21: 00:25-07:00"), None);
    assert_eq!(time("yesterday"), None);
    assert_eq!(time("1969-12-31T23:59:59Z"), None);
    assert_eq!(super::opt_time_ms(&serde_json::json!({"t": 5}), "t"), None);
    assert_eq!(super::opt_time_ms(&serde_json::json!({}), "t"), None);
}

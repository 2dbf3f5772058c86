//! The decision log's hash chain and the intake policy on its own (no Git, no sandbox).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::os::unix::fs::PermissionsExt as _;

use trusted_builder::audit::{AuditError, AuditLog, Decision, GENESIS, read_entries, verify_chain};
use trusted_builder::intake::{
    EMBEDDED_POLICY, INTAKE_INPUT_VERSION, IntakeFacts, IntakeInput, IntakePolicy, IntakeSettings,
    RecordClaims, Subject,
};

fn subject() -> Subject {
    Subject {
        project: "svc".into(),
        git_ref: "refs/heads/main".into(),
        commit: "a".repeat(40),
        job: "publish".into(),
    }
}

fn write_log(path: &std::path::Path) {
    let mut log = AuditLog::open(path).unwrap();
    log.append(Decision::Refused {
        subject: None,
        reason: "malformed pass record".into(),
    })
    .unwrap();
    log.append(Decision::Accepted { subject: subject() })
        .unwrap();
    log.append(Decision::Built {
        subject: subject(),
        reproduced: true,
        differing: vec![],
        outputs: vec![],
    })
    .unwrap();
}

#[test]
fn chain_verifies_survives_reopen_and_breaks_when_a_line_is_edited() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decisions.jsonl");
    write_log(&path);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(verify_chain(&path).unwrap().0, 3);
    // Reopening continues the chain rather than starting a new one.
    AuditLog::open(&path)
        .unwrap()
        .append(Decision::Accepted { subject: subject() })
        .unwrap();
    let entries = read_entries(&path).unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0].prev_sha256, GENESIS);
    assert_eq!(entries[3].seq, 3);
    assert_eq!(verify_chain(&path).unwrap().0, 4);

    // Turn the refusal into an acceptance of sorts: still valid JSON, but the chain breaks.
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replacen("malformed pass record", "all fine, nothing here", 1);
    assert_ne!(text, edited);
    std::fs::write(&path, edited).unwrap();
    match verify_chain(&path) {
        Err(AuditError::Broken { line, why }) => {
            assert_eq!(line, 2);
            assert!(why.contains("edited"), "{why}");
        }
        other => panic!("tampering not detected: {other:?}"),
    }
    // A broken log is not appended to.
    assert!(AuditLog::open(&path).is_err());

    // Removing a line is detected too.
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
    assert!(matches!(
        verify_chain(&path),
        Err(AuditError::Broken { line: 2, .. })
    ));
}

fn input() -> IntakeInput {
    IntakeInput {
        version: INTAKE_INPUT_VERSION,
        record: RecordClaims {
            project: "svc".into(),
            git_url: "git://git.example/svc.git".into(),
            git_ref: "refs/heads/main".into(),
            commit: "a".repeat(40),
            job: "publish".into(),
        },
        facts: IntakeFacts {
            project_allowed: true,
            canonical_git_url: Some("git://git.example/svc.git".into()),
            commit_reachable_from_protected: true,
            protected_ref_matched: Some("refs/heads/main".into()),
            job_declares_publish: true,
            already_built: false,
        },
        settings: IntakeSettings {
            strict_reproducibility: true,
        },
    }
}

#[test]
fn policy_allows_only_when_every_fact_holds() {
    let policy = IntakePolicy::embedded().unwrap();
    assert_eq!(policy.evaluate(&input()).unwrap(), Vec::<String>::new());

    let mut unknown = input();
    unknown.facts.project_allowed = false;
    unknown.facts.canonical_git_url = None;
    assert_eq!(
        policy.evaluate(&unknown).unwrap(),
        vec!["project 'svc' is not configured on this builder"]
    );

    let mut newer = input();
    newer.version = 2;
    assert_eq!(
        policy.evaluate(&newer).unwrap(),
        vec!["intake input version is not 1"]
    );

    let mut several = input();
    several.facts.already_built = true;
    several.facts.job_declares_publish = false;
    let reasons = policy.evaluate(&several).unwrap();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    // The same policy, after refusals, still allows a good input: nothing carries over.
    assert_eq!(policy.evaluate(&input()).unwrap(), Vec::<String>::new());
}

#[test]
fn policy_loads_from_the_repository_file_and_a_broken_one_is_an_error() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/intake.rego");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), EMBEDDED_POLICY);
    let policy = IntakePolicy::load(Some(&path)).unwrap();
    assert!(policy.evaluate(&input()).unwrap().is_empty());

    // A policy that allows everything without a deny rule is refused at load, not at a record.
    assert!(
        IntakePolicy::from_source("x.rego", "package airlock.intake\nallow := true\n").is_err()
    );
    assert!(IntakePolicy::from_source("x.rego", "package airlock.intake\ndeny contains").is_err());
    // A policy whose allow never holds fails closed.
    let closed = IntakePolicy::from_source(
        "x.rego",
        "package airlock.intake\nimport rego.v1\ndeny contains \"x\" if false\nallow := false\n",
    )
    .unwrap();
    assert_eq!(
        closed.evaluate(&input()).unwrap(),
        vec!["intake policy does not allow it"]
    );
}

//! Forged, malformed and unknown deliveries are refused and store nothing.

use crate::support::*;
use crate::{SUBJECT, config};

#[test]
fn forged_and_malformed_requests_are_refused_and_store_nothing() {
    let world = World::new();
    let server = Server::start(&config(&world, ""));
    let sha = world.repo.head();
    let body = github_pr("opened", &sha, 5);
    let hooks = |forge: &str| server.url(&format!("/hooks/{forge}"));

    let mut forged = github_headers(&body, "pull_request", "d-1");
    forged[3].1 = format!("sha256={}", "0".repeat(64));
    // (name, url, headers, body, expected status, expected reason)
    type Case<'a> = (
        &'a str,
        String,
        Vec<(&'a str, String)>,
        Vec<u8>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "forged signature",
            hooks("github"),
            forged,
            body.clone(),
            401,
            "unauthorized",
        ),
        (
            "signed with another secret",
            hooks("github"),
            {
                let mut h = github_headers(&body, "pull_request", "d-2");
                h[3].1 = hub_signature(b"not-the-secret", &body);
                h
            },
            body.clone(),
            401,
            "unauthorized",
        ),
        (
            "wrong gerrit token",
            hooks("gerrit"),
            vec![("authorization", "Bearer nope".into())],
            patchset_created(1, 1, &sha, SUBJECT),
            401,
            "unauthorized",
        ),
        (
            "missing gerrit token",
            hooks("gerrit"),
            vec![],
            patchset_created(1, 1, &sha, SUBJECT),
            401,
            "unauthorized",
        ),
        (
            "oversized body",
            hooks("gerrit"),
            gerrit_headers(),
            vec![b' '; 2 * 1024 * 1024],
            413,
            "too_large",
        ),
        (
            "malformed JSON",
            hooks("gerrit"),
            gerrit_headers(),
            b"{\"type\": ".to_vec(),
            400,
            "malformed",
        ),
    ];
    for (name, url, headers, body, want, reason) in cases {
        let (status, reply) = post(&url, &headers, &body);
        assert_eq!(status, want, "{name}: {reply}");
        assert_eq!(reply["error"], reason, "{name}: {reply}");
        assert!(
            reply["message"]
                .as_str()
                .is_some_and(|m| !m.contains(GERRIT_SECRET) && !m.contains(GITHUB_SECRET))
        );
    }
    let other = String::from_utf8(patchset_created(1, 1, &sha, SUBJECT))
        .expect("utf8")
        .replace("\"project\":\"greet\"", "\"project\":\"elsewhere\"");
    let (status, reply) = post(&hooks("gerrit"), &gerrit_headers(), other.as_bytes());
    assert_eq!(
        (status, reply["error"].as_str()),
        (404, Some("unknown_project")),
        "{reply}"
    );
    let (status, reply) = post(
        &hooks("github"),
        &github_headers(b"{}", "status", "d-3"),
        b"{}",
    );
    assert_eq!(
        (status, reply["status"].as_str()),
        (202, Some("ignored")),
        "{reply}"
    );
    // Nothing was stored: no run exists.
    assert!(server.run(1)["run"].is_null(), "{}", server.run(1));
    assert!(
        !server.log_text().contains(GERRIT_SECRET) && !server.log_text().contains(GITHUB_SECRET)
    );
}

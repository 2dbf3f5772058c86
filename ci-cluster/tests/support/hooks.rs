//! What the forges deliver to `/hooks/*`, and the headers that authenticate
//! deliveries and admin calls.

use hmac::Mac;
use serde_json::json;

use super::{ADMIN_TOKEN, GERRIT_SECRET, GITHUB_SECRET};

/// Gerrit's `patchset-created` for project `greet`, branch `main`.
pub fn patchset_created(change: u32, patchset: u32, commit: &str, subject: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "patchset-created",
        "change": {"project": "greet", "branch": "main", "number": change, "subject": subject, "owner": {"name": "Dev"}, "url": format!("http://gerrit.example/c/greet/+/{change}")},
        "patchSet": {"number": patchset, "revision": commit, "ref": format!("refs/changes/{:02}/{change}/{patchset}", change % 100), "uploader": {"name": "Dev Eloper"}},
        "uploader": {"name": "Dev Eloper"},
        "eventCreatedOn": 1700000000 + change * 10 + patchset
    }))
    .expect("json")
}

pub fn gerrit_headers() -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {GERRIT_SECRET}")),
        ("content-type", "application/json".into()),
    ]
}

/// GitHub's `pull_request` event for `example/greet`.
pub fn github_pr(action: &str, sha: &str, number: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": action,
        "number": number,
        "pull_request": {"number": number, "title": "Greet louder", "html_url": "https://github.com/example/greet/pull/5", "user": {"login": "dev"}, "head": {"sha": sha, "ref": "feature"}},
        "repository": {"full_name": "example/greet"},
        "sender": {"login": "dev"}
    }))
    .expect("json")
}

/// [`github_pr`] with the pull request's `updated_at` (RFC 3339, as GitHub sends it).
pub fn github_pr_at(action: &str, sha: &str, number: u64, updated_at: &str) -> Vec<u8> {
    let mut payload: serde_json::Value =
        serde_json::from_slice(&github_pr(action, sha, number)).expect("json");
    payload["pull_request"]["updated_at"] = json!(updated_at);
    serde_json::to_vec(&payload).expect("json")
}

/// `sha256=<hex HMAC of body>`, as in `x-hub-signature-256`.
pub fn hub_signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("hmac");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// GitHub's headers, signed with [`GITHUB_SECRET`]; the signature is at index 3.
pub fn github_headers(body: &[u8], event: &str, delivery: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-github-event", event.to_string()),
        ("x-github-delivery", delivery.to_string()),
        ("x-github-hook-id", "42".to_string()),
        (
            "x-hub-signature-256",
            hub_signature(GITHUB_SECRET.as_bytes(), body),
        ),
        ("content-type", "application/json".into()),
    ]
}

/// The bearer admin token.
pub fn admin() -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {ADMIN_TOKEN}"))]
}

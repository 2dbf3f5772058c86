//! Replays under new headers: an authenticated body captured once and sent
//! again with fresh delivery headers creates nothing, for every forge, also
//! after a restart. What decides is the body the forge authenticated, not
//! headers the signature does not cover.

use axum::http::{HeaderMap, HeaderValue};

use super::{Db, event, fixture};
use crate::event::ForgeEvent;
use crate::intake::{gerrit, github, gitlab};
use crate::secret::Secret;
use crate::store::Accepted;

impl Db {
    /// (events, runs) stored so far.
    fn totals(&self) -> (u64, u64) {
        let counts = self.store().counts().expect("counts");
        (counts.events, counts.runs_by_status.values().sum())
    }
}

fn is_new_run(accepted: &Accepted) -> bool {
    matches!(accepted, Accepted::New { run: Some(_), .. })
}

/// GitHub's headers for `body`, correctly signed, with this delivery GUID and hook id.
fn github_headers(body: &[u8], guid: &str, hook: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-github-event", HeaderValue::from_static("pull_request"));
    h.insert("x-github-delivery", HeaderValue::from_str(guid).expect("h"));
    h.insert("x-github-hook-id", HeaderValue::from_str(hook).expect("h"));
    h.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&super::github::sign(super::github::SECRET, body)).expect("h"),
    );
    h
}

fn github(body: &[u8], guid: &str, hook: &str) -> ForgeEvent {
    event(github::parse(
        &github_headers(body, guid, hook),
        body,
        &Secret::new(super::github::SECRET),
    ))
}

#[test]
fn replay_github_signed_body_with_new_delivery_headers_creates_nothing() {
    let mut db = Db::new();
    let body = fixture("github/go-scm/pr_reopened.json");
    let first = db.accept(&github(
        &body,
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "292430182",
    ));
    assert!(is_new_run(&first), "{first:?}");

    // GitHub's own redelivery repeats the GUID: a duplicate, as before.
    let redelivered = db.accept(&github(
        &body,
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "292430182",
    ));
    assert_eq!(redelivered, Accepted::Duplicate);

    // The captured body under a new GUID, and under a new hook id too: the
    // signature still verifies (it covers the body only), but nothing is new.
    for (guid, hook) in [
        ("00000000-1111-2222-3333-444444444444", "292430182"),
        ("55555555-6666-7777-8888-999999999999", "1"),
    ] {
        let replay = db.accept(&github(&body, guid, hook));
        assert_eq!(
            replay,
            Accepted::Replayed { event_id: 1 },
            "a replay under delivery {hook}:{guid}"
        );
    }
    assert_eq!(db.totals(), (1, 1), "the replays stored nothing");

    // The digest is durable: after a restart the replay is still refused.
    db.restart();
    let replay = db.accept(&github(&body, "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "7"));
    assert_eq!(
        replay,
        Accepted::Replayed { event_id: 1 },
        "after a restart"
    );

    // Control: another signed body (the pull request's next event) under a
    // new GUID is a new event.
    let other = fixture("github/go-scm/pr_sync.json");
    let accepted = db.accept(&github(
        &other,
        "bbbbbbbb-0000-0000-0000-000000000000",
        "292430182",
    ));
    assert!(matches!(accepted, Accepted::New { .. }), "{accepted:?}");
    assert_eq!(db.totals().0, 2);
}

fn gitlab(body: &[u8], uuid: Option<&str>, idempotency: Option<&str>) -> ForgeEvent {
    let mut h = super::gitlab::headers(super::gitlab::PUSH, super::gitlab::TOKEN);
    h.remove("x-gitlab-event-uuid");
    if let Some(uuid) = uuid {
        h.insert(
            "x-gitlab-event-uuid",
            HeaderValue::from_str(uuid).expect("h"),
        );
    }
    if let Some(key) = idempotency {
        h.insert("idempotency-key", HeaderValue::from_str(key).expect("h"));
    }
    event(gitlab::parse(&h, body, &Secret::new(super::gitlab::TOKEN)))
}

#[test]
fn replay_gitlab_body_with_new_event_uuid_or_idempotency_key_creates_nothing() {
    let mut db = Db::new();
    let body = fixture("gitlab/go-scm/push.json");
    let first = db.accept(&gitlab(
        &body,
        Some("13792a34-cac6-4fda-95a8-c58e00a3954e"),
        Some("c8b5d0a1-0000-4000-8000-000000000001"),
    ));
    assert!(is_new_run(&first), "{first:?}");
    // A retry repeats the UUID: a duplicate, as before.
    let retried = db.accept(&gitlab(
        &body,
        Some("13792a34-cac6-4fda-95a8-c58e00a3954e"),
        None,
    ));
    assert_eq!(retried, Accepted::Duplicate);
    // The token signs nothing: whoever saw one request can send its body with
    // any headers. New ids, or none at all, are still the same body.
    for (uuid, key) in [
        (Some("ffffffff-cac6-4fda-95a8-c58e00a3954e"), None),
        (None, Some("c8b5d0a1-0000-4000-8000-000000000002")),
        (None, None),
    ] {
        let replay = db.accept(&gitlab(&body, uuid, key));
        assert_eq!(
            replay,
            Accepted::Replayed { event_id: 1 },
            "a replay with uuid {uuid:?}, idempotency key {key:?}"
        );
    }
    db.restart();
    let replay = db.accept(&gitlab(&body, Some("after-restart"), None));
    assert_eq!(
        replay,
        Accepted::Replayed { event_id: 1 },
        "after a restart"
    );
    assert_eq!(db.totals(), (1, 1), "the replays stored nothing");

    // Control: another push (another body) with a new UUID is a new event.
    let other = fixture("gitlab/go-scm/push_merge.json");
    let accepted = db.accept(&gitlab(&other, Some("another-uuid"), None));
    assert!(matches!(accepted, Accepted::New { .. }), "{accepted:?}");
}

#[test]
fn replay_gerrit_body_however_presented_creates_nothing() {
    // Gerrit sends no delivery id: its key is made from the body, so however
    // the token is presented, the same body is the same event.
    let mut db = Db::new();
    let body = fixture("gerrit/gerrit-events/DeserializeEventCreatedOnTest.json");
    let secret = Secret::new(super::gerrit::SECRET);
    let deliver = |body: &[u8]| {
        event(gerrit::parse(
            Some(super::gerrit::SECRET.as_bytes()),
            body,
            &secret,
        ))
    };
    assert!(is_new_run(&db.accept(&deliver(&body))));
    db.restart();
    assert_eq!(db.accept(&deliver(&body)), Accepted::Duplicate);
    // Control: the same event with one more space is another body, and new.
    let mut other = body.clone();
    other.push(b' ');
    assert!(matches!(db.accept(&deliver(&other)), Accepted::New { .. }));
}

#[test]
fn replay_every_forge_event_carries_the_digest_of_its_authenticated_body() {
    use sha2::{Digest, Sha256};

    use crate::intake::Intake;

    let mut events = 0;
    let mut check = |rel: &str, result: Result<Intake, crate::intake::IntakeError>| {
        if let Ok(Intake::Event(e)) = result {
            let expected = hex::encode(Sha256::digest(fixture(rel)));
            assert_eq!(e.body_sha256.as_deref(), Some(expected.as_str()), "{rel}");
            events += 1;
        }
    };
    for (rel, event, _) in super::github::FIXTURES {
        check(rel, super::github::deliver_fixture(event, rel));
    }
    for (rel, event, _) in super::gitlab::FIXTURES {
        check(rel, super::gitlab::deliver(event, &fixture(rel)));
    }
    for (rel, _) in super::gerrit::FIXTURES {
        check(rel, super::gerrit::deliver(&fixture(rel)));
    }
    // Not vacuous: every forge's fixtures hold events.
    assert!(events >= 20, "only {events} events among the fixtures");
}

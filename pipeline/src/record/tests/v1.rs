//! Version 1 records: still opened, read with the event their ref implies and no images; never
//! with version 2's fields.

use std::collections::BTreeMap;

use super::{ci_key, sample, sample_v1_json, signed_json};
use crate::record::v1::event_of_v1_ref;
use crate::record::{RecordError, open};
use crate::spec::EventKind;

fn trusted() -> Vec<ed25519_dalek::VerifyingKey> {
    vec![ci_key().verifying_key()]
}

#[test]
fn record_v1_opens_with_the_event_of_its_ref_and_no_images() {
    let record = open(&signed_json(&sample_v1_json()), &trusted()).unwrap();
    let mut expected = sample();
    expected.version = 1;
    expected.event = EventKind::Push;
    expected.images = BTreeMap::new();
    assert_eq!(record, expected);

    let mut tagged = sample_v1_json();
    tagged["git_ref"] = "refs/tags/v1.2.0".into();
    let record = open(&signed_json(&tagged), &trusted()).unwrap();
    assert_eq!(
        (record.version, record.event, record.git_ref.as_str()),
        (1, EventKind::Tag, "refs/tags/v1.2.0")
    );
    assert_eq!(event_of_v1_ref("refs/changes/01/1/1"), EventKind::Push);
}

#[test]
fn record_v1_with_a_field_of_version_2_is_refused() {
    // A version 1 reader would refuse these as unknown fields; so does this one.
    for field in ["event", "images"] {
        let mut record = sample_v1_json();
        record[field] = serde_json::to_value(sample()).unwrap()[field].clone();
        let err = open(&signed_json(&record), &trusted()).unwrap_err();
        assert!(
            matches!(&err, RecordError::Malformed(m) if m.contains(field)),
            "{field}: {err}"
        );
    }
    // Control: without them it opens.
    open(&signed_json(&sample_v1_json()), &trusted()).unwrap();
}

#[test]
fn record_v2_without_event_or_images_is_refused() {
    for field in ["event", "images"] {
        let mut record = serde_json::to_value(sample()).unwrap();
        record.as_object_mut().unwrap().remove(field);
        let err = open(&signed_json(&record), &trusted()).unwrap_err();
        assert!(
            matches!(&err, RecordError::Malformed(m) if m.contains(field)),
            "{field}: {err}"
        );
    }
}

#[test]
fn record_event_is_its_lowercase_name() {
    let text = serde_json::to_string(&sample()).unwrap();
    assert!(text.contains(r#""event":"push""#), "{text}");
    for (name, kind) in [
        ("change", EventKind::Change),
        ("schedule", EventKind::Schedule),
        ("manual", EventKind::Manual),
    ] {
        let mut record = serde_json::to_value(sample()).unwrap();
        record["event"] = name.into();
        assert_eq!(open(&signed_json(&record), &trusted()).unwrap().event, kind);
    }
    let mut record = serde_json::to_value(sample()).unwrap();
    record["event"] = "Push".into();
    assert!(matches!(
        open(&signed_json(&record), &trusted()),
        Err(RecordError::Malformed(_))
    ));
}

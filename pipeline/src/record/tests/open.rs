//! `open`: the round trip, and every way an envelope is refused.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{ci_key, decode_payload, other_key, sample, sample_envelope, signed_json};
use crate::record::{
    DirOutbox, MAX_RECORD_BYTES, Outbox, OutputDigest, PASS_RECORD_PAYLOAD_TYPE, RecordError,
    SignedPassRecord, open,
};

fn trusted() -> Vec<ed25519_dalek::VerifyingKey> {
    vec![other_key().verifying_key(), ci_key().verifying_key()]
}

fn envelope() -> SignedPassRecord {
    ci_key().sign(&sample()).unwrap()
}

#[test]
fn record_round_trip_sign_put_list_read_open() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = DirOutbox::new(dir.path().join("outbox"));
    let name = outbox.put(&envelope(), "greet-publish").unwrap();
    assert_eq!(outbox.list().unwrap(), std::slice::from_ref(&name));
    let bytes = outbox.read(&name).unwrap();
    assert_eq!(open(&bytes, &trusted()).unwrap(), sample());
}

#[test]
fn record_envelope_has_the_documented_shape() {
    let env = envelope();
    assert_eq!(env.payload_type, PASS_RECORD_PAYLOAD_TYPE);
    assert_eq!(env.key_id, ci_key().key_id());
    assert_eq!(env.key_id.len(), 64);
    assert_eq!(BASE64.decode(&env.signature).unwrap().len(), 64);
    // The payload is the record exactly as serde_json writes it, in struct field order.
    assert_eq!(decode_payload(&env), serde_json::to_vec(&sample()).unwrap());
    let text = String::from_utf8(decode_payload(&env)).unwrap();
    assert!(
        text.starts_with(r#"{"version":2,"project":"greet","#),
        "{text}"
    );
    // ed25519 is deterministic: the same record and key give the same envelope.
    assert_eq!(env, envelope());
}

#[test]
fn record_tampered_payload_is_refused() {
    let mut env = envelope();
    let mut body = decode_payload(&env);
    let at = body.windows(7).position(|w| w == b"publish").unwrap();
    body[at] = b'P'; // still a valid job name: only the signature can catch it
    env.payload = BASE64.encode(&body);
    let err = open(&env.to_json().unwrap(), &trusted()).unwrap_err();
    assert!(matches!(err, RecordError::BadSignature), "{err}");
}

#[test]
fn record_tampered_signature_is_refused() {
    let mut env = envelope();
    let mut sig = BASE64.decode(&env.signature).unwrap();
    sig[10] ^= 0x01;
    env.signature = BASE64.encode(&sig);
    let err = open(&env.to_json().unwrap(), &trusted()).unwrap_err();
    assert!(matches!(err, RecordError::BadSignature), "{err}");
}

#[test]
fn record_swapped_payload_type_is_refused_by_the_signature() {
    let mut env = envelope();
    env.payload_type = "application/vnd.in-toto+json".into();
    let err = open(&env.to_json().unwrap(), &trusted()).unwrap_err();
    assert!(matches!(err, RecordError::BadSignature), "{err}");
}

#[test]
fn record_of_another_payload_type_signed_by_a_trusted_key_is_refused() {
    let body = serde_json::to_vec(&sample()).unwrap();
    let env = ci_key().sign_raw("application/vnd.in-toto+json", &body);
    let err = open(&env.to_json().unwrap(), &trusted()).unwrap_err();
    assert!(
        matches!(&err, RecordError::Malformed(m) if m.contains("payload type")),
        "{err}"
    );
}

#[test]
fn record_unknown_key_is_refused() {
    let err = open(&sample_envelope(), &[other_key().verifying_key()]).unwrap_err();
    assert!(
        matches!(&err, RecordError::UnknownKey(id) if *id == ci_key().key_id()),
        "{err}"
    );
    let err = open(&sample_envelope(), &[]).unwrap_err();
    assert!(matches!(err, RecordError::UnknownKey(_)), "{err}");
}

#[test]
fn record_signed_by_another_key_is_refused() {
    // Signed by a key nobody trusts, claiming to be the trusted CI key.
    let mut env = other_key().sign(&sample()).unwrap();
    env.key_id = ci_key().key_id();
    let err = open(&env.to_json().unwrap(), &[ci_key().verifying_key()]).unwrap_err();
    assert!(matches!(err, RecordError::BadSignature), "{err}");
    // Signed by that key and saying so.
    let env = other_key().sign(&sample()).unwrap();
    let err = open(&env.to_json().unwrap(), &[ci_key().verifying_key()]).unwrap_err();
    assert!(matches!(err, RecordError::UnknownKey(_)), "{err}");
}

#[test]
fn record_with_a_climbing_output_path_is_refused() {
    let mut record = sample();
    record.outputs.push(OutputDigest {
        path: "dist/../../etc/passwd".into(),
        sha256: "e".repeat(64),
        size: 1,
    });
    assert!(
        matches!(ci_key().sign(&record), Err(RecordError::Invalid(_))),
        "the CI does not sign it"
    );
    let bytes = signed_json(&serde_json::to_value(&record).unwrap());
    let err = open(&bytes, &trusted()).unwrap_err();
    assert!(
        matches!(&err, RecordError::Invalid(m) if m.contains("..")),
        "{err}"
    );
}

#[test]
fn record_with_a_bad_commit_id_is_refused() {
    for commit in [
        "53634573c37a",
        &"A".repeat(40),
        &"g".repeat(40),
        &"0".repeat(64),
    ] {
        let mut record = sample();
        record.commit = commit.to_string();
        let err = open(
            &signed_json(&serde_json::to_value(&record).unwrap()),
            &trusted(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, RecordError::Invalid(m) if m.contains("commit")),
            "{commit}: {err}"
        );
    }
}

#[test]
fn record_with_another_version_is_refused() {
    let mut record = serde_json::to_value(sample()).unwrap();
    for version in [3, 0, u32::MAX] {
        record["version"] = version.into();
        let err = open(&signed_json(&record), &trusted()).unwrap_err();
        assert!(
            matches!(err, RecordError::UnsupportedVersion(v) if v == version),
            "{err}"
        );
    }
    // A newer record with fields this build does not know is still reported by its version.
    record["version"] = 3.into();
    record["provenance"] = "future".into();
    let err = open(&signed_json(&record), &trusted()).unwrap_err();
    assert!(matches!(err, RecordError::UnsupportedVersion(3)), "{err}");
    // Control: the same record as version 2 opens.
    let mut record = serde_json::to_value(sample()).unwrap();
    record["version"] = 2.into();
    assert_eq!(open(&signed_json(&record), &trusted()).unwrap(), sample());
    // Only the current version is written: 0, a future one, and 1 (read, never written).
    for version in [0, 1, 3] {
        let mut record = sample();
        record.version = version;
        if version == 1 {
            record.images.clear();
        }
        let err = ci_key().sign(&record).unwrap_err();
        assert!(
            matches!(err, RecordError::UnsupportedVersion(v) if v == version),
            "{version}: {err}"
        );
    }
}

#[test]
fn record_with_an_unknown_field_is_refused() {
    let mut record = serde_json::to_value(sample()).unwrap();
    record["approved"] = true.into();
    let err = open(&signed_json(&record), &trusted()).unwrap_err();
    assert!(
        matches!(&err, RecordError::Malformed(m) if m.contains("approved")),
        "{err}"
    );

    let mut record = serde_json::to_value(sample()).unwrap();
    record["outputs"][0]["mode"] = 0o755.into();
    let err = open(&signed_json(&record), &trusted()).unwrap_err();
    assert!(
        matches!(&err, RecordError::Malformed(m) if m.contains("mode")),
        "{err}"
    );

    let mut env = serde_json::to_value(envelope()).unwrap();
    env["signatures"] = serde_json::json!([]);
    let err = open(&serde_json::to_vec(&env).unwrap(), &trusted()).unwrap_err();
    assert!(
        matches!(&err, RecordError::Malformed(m) if m.contains("signatures")),
        "{err}"
    );
}

#[test]
fn record_with_a_duplicated_field_is_refused() {
    // Two "job" keys: a reader that took the first and one that took the last would disagree.
    let body = String::from_utf8(serde_json::to_vec(&sample()).unwrap()).unwrap();
    let body = body.replacen(r#""job":"publish","#, r#""job":"publish","job":"test","#, 1);
    let env = ci_key().sign_raw(PASS_RECORD_PAYLOAD_TYPE, body.as_bytes());
    let err = open(&env.to_json().unwrap(), &trusted()).unwrap_err();
    assert!(
        matches!(&err, RecordError::Malformed(m) if m.contains("duplicate")),
        "{err}"
    );
}

#[test]
fn record_oversized_envelope_is_refused_before_parsing() {
    // Not JSON at all: a parser would say Malformed, so TooLarge proves nothing was parsed.
    let bytes = vec![b'{'; MAX_RECORD_BYTES + 1];
    let err = open(&bytes, &trusted()).unwrap_err();
    assert!(
        matches!(err, RecordError::TooLarge { size, max } if size == MAX_RECORD_BYTES as u64 + 1 && max == MAX_RECORD_BYTES)
    );
    // A valid envelope padded past the limit with whitespace is refused the same way.
    let mut bytes = sample_envelope();
    bytes.resize(MAX_RECORD_BYTES + 1, b' ');
    assert!(matches!(
        open(&bytes, &trusted()),
        Err(RecordError::TooLarge { .. })
    ));
    // Exactly at the limit is still read.
    let mut bytes = sample_envelope();
    bytes.resize(MAX_RECORD_BYTES, b' ');
    assert_eq!(open(&bytes, &trusted()).unwrap(), sample());
}

#[test]
fn record_too_large_to_send_is_not_signed() {
    let mut record = sample();
    record.outputs = (0..1000)
        .map(|i| OutputDigest {
            path: format!("dist/{i:04}/{}", "x".repeat(40)),
            sha256: "e".repeat(64),
            size: 1,
        })
        .collect();
    let err = ci_key().sign(&record).unwrap_err();
    assert!(matches!(err, RecordError::TooLarge { .. }), "{err}");
}

#[test]
fn record_non_json_is_refused() {
    for bytes in [&b""[..], b"not json", b"\xff\xfe{}", b"[]", b"{}", b"null"] {
        let err = open(bytes, &trusted()).unwrap_err();
        assert!(matches!(err, RecordError::Malformed(_)), "{bytes:?}: {err}");
    }
    // Trailing bytes after the envelope.
    let mut bytes = sample_envelope();
    bytes.extend_from_slice(b"{}");
    assert!(matches!(
        open(&bytes, &trusted()),
        Err(RecordError::Malformed(_))
    ));
    // A signed payload that is not JSON.
    let env = ci_key().sign_raw(PASS_RECORD_PAYLOAD_TYPE, b"\x00\x01 not json");
    assert!(matches!(
        open(&env.to_json().unwrap(), &trusted()),
        Err(RecordError::Malformed(_))
    ));
}

#[test]
fn record_malformed_envelope_fields_are_refused() {
    type Case = (&'static str, fn(&mut SignedPassRecord));
    let cases: [Case; 4] = [
        ("key id not hex", |e| e.key_id = "not-a-key-id\n".into()),
        ("key id upper case", |e| e.key_id = e.key_id.to_uppercase()),
        ("payload not base64", |e| e.payload = "***".into()),
        ("short signature", |e| {
            e.signature = BASE64.encode([0u8; 63])
        }),
    ];
    for (what, mutate) in cases {
        let mut env = envelope();
        mutate(&mut env);
        let err = open(&serde_json::to_vec(&env).unwrap(), &trusted()).unwrap_err();
        assert!(
            matches!(&err, RecordError::Malformed(m) if !m.contains('\n')),
            "{what}: {err}"
        );
    }
}

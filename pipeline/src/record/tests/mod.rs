//! Tests of the pass record, and the sample record and keys they share.

mod fuzz;
mod key;
mod open;
mod outbox;
mod pae;
mod v1;
mod validate;

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{OriginKey, OutputDigest, PassRecord, SignedPassRecord};
use crate::spec::EventKind;

/// The CI key most tests sign with; fixed so that every run produces the same bytes.
fn ci_key() -> OriginKey {
    OriginKey::from_seed([7; 32])
}

/// Some other CI's key.
fn other_key() -> OriginKey {
    OriginKey::from_seed([9; 32])
}

fn sha(c: char) -> String {
    c.to_string().repeat(64)
}

/// An image reference as the record writes them.
fn image(repository: &str, c: char) -> String {
    format!("{repository}@sha256:{}", sha(c))
}

/// A valid record.
fn sample() -> PassRecord {
    PassRecord {
        version: super::PASS_RECORD_VERSION,
        project: "greet".into(),
        git_url: "https://git.example.org/greet.git".into(),
        git_ref: "refs/heads/main".into(),
        event: EventKind::Push,
        commit: "53634573c37a0e5b9d1f8e6b2a4c7d90e1f2a3b4".into(),
        job: "publish".into(),
        pipeline_sha256: sha('a'),
        images: BTreeMap::from([
            ("build".into(), image("registry.example.org/toolchain", 'e')),
            ("publish".into(), image("127.0.0.1:5000/tools/cc", 'f')),
        ]),
        outputs: vec![
            OutputDigest {
                path: "dist/greet".into(),
                sha256: sha('b'),
                size: 682_696,
            },
            OutputDigest {
                path: "dist/greet.tar.gz".into(),
                sha256: sha('c'),
                size: 303_539,
            },
        ],
        log_sha256: sha('d'),
        ci_run_id: "run-42".into(),
        started_at: "2025-11-23T15:30:00Z".into(),
        finished_at: "2025-11-23T15:30:00.600Z".into(),
    }
}

/// The envelope's bytes for the sample, signed by [`ci_key`].
fn sample_envelope() -> Vec<u8> {
    ci_key().sign(&sample()).unwrap().to_json().unwrap()
}

fn decode_payload(envelope: &SignedPassRecord) -> Vec<u8> {
    BASE64.decode(&envelope.payload).unwrap()
}

/// The sample as a version 1 writer wrote it: no `event`, no `images`.
fn sample_v1_json() -> serde_json::Value {
    let mut record = serde_json::to_value(sample()).unwrap();
    let fields = record.as_object_mut().unwrap();
    fields.remove("event");
    fields.remove("images");
    fields.insert("version".into(), 1.into());
    record
}

/// Signs arbitrary JSON as a pass record with [`ci_key`], bypassing validation.
fn signed_json(record: &serde_json::Value) -> Vec<u8> {
    let body = serde_json::to_vec(record).unwrap();
    ci_key()
        .sign_raw(super::PASS_RECORD_PAYLOAD_TYPE, &body)
        .to_json()
        .unwrap()
}

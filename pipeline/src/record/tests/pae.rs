//! DSSE's pre-authentication encoding against the DSSE protocol's own test vector.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::record::pae;

/// Recorded from the DSSE specification, not written by us; kept in the repository's
/// `tests/fixtures` (origin and licence in its README). This crate cannot use the
/// `airlock-tests` helper (that crate depends on this one), so the path is spelled here.
const VECTOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/supply-chain/dsse/protocol-test-vector.json"
);

#[test]
fn record_pae_matches_the_dsse_protocol_test_vector() {
    let text = std::fs::read_to_string(VECTOR).unwrap_or_else(|e| panic!("{VECTOR}: {e}"));
    let vector: serde_json::Value = serde_json::from_str(&text).unwrap();
    let payload_type = vector["payload_type"].as_str().unwrap();
    let body = vector["serialized_body"].as_str().unwrap();
    let expected = vector["pae"].as_str().unwrap();
    assert_eq!(pae(payload_type, body.as_bytes()), expected.as_bytes());
    // The envelope in the vector carries the same body and type.
    assert_eq!(
        BASE64
            .decode(vector["envelope"]["payload"].as_str().unwrap())
            .unwrap(),
        body.as_bytes()
    );
    assert_eq!(vector["envelope"]["payloadType"], payload_type);
}

#[test]
fn record_pae_counts_bytes_not_characters() {
    // Hand-computed: "ÿ" is 2 bytes in UTF-8, the body holds a space and a NUL.
    assert_eq!(pae("tÿpe", b"a \0"), b"DSSEv1 5 t\xc3\xbfpe 3 a \0");
    assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    assert_eq!(
        pae("application/vnd.airlock.pass-record.v1+json", b"{}"),
        b"DSSEv1 43 application/vnd.airlock.pass-record.v1+json 2 {}"
    );
}

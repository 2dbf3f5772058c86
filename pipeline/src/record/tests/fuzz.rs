//! Fuzz-style tests: deterministic byte mutations of a valid envelope and of signed records.
//!
//! A seeded generator instead of a fuzzing engine, so they run in `cargo test` everywhere and a
//! failure names the iteration that reproduces it. `open` is also a ready fuzz target:
//! `open(data, &[key])` on arbitrary bytes.

use std::panic::{AssertUnwindSafe, catch_unwind};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{ci_key, sample, sample_envelope};
use crate::record::{PASS_RECORD_PAYLOAD_TYPE, PassRecord, RecordError, decode_verified, open};

/// splitmix64: small, fixed, good enough to spread mutations around.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to three mutations: flip a bit, truncate, insert a byte (often one JSON cares about),
/// delete a byte, or overwrite one.
fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    const INTERESTING: &[u8] = b"{}[]\":,\\ 0a=+/\0\xff";
    let mut bytes = original.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(bytes.len());
        match rng.below(5) {
            0 if !bytes.is_empty() => bytes[at] ^= 1 << rng.below(8),
            1 => bytes.truncate(at),
            2 => {
                let byte = if rng.below(2) == 0 {
                    INTERESTING[rng.below(INTERESTING.len())]
                } else {
                    rng.next() as u8
                };
                bytes.insert(at.min(bytes.len()), byte);
            }
            3 if !bytes.is_empty() => {
                bytes.remove(at);
            }
            _ if !bytes.is_empty() => bytes[at] = rng.next() as u8,
            _ => bytes.push(b'{'),
        }
    }
    bytes
}

fn open_without_panic(
    bytes: &[u8],
    trusted: &[ed25519_dalek::VerifyingKey],
    what: &str,
) -> Result<PassRecord, RecordError> {
    catch_unwind(AssertUnwindSafe(|| open(bytes, trusted))).unwrap_or_else(|_| {
        panic!(
            "open panicked on {what}: {:?}",
            String::from_utf8_lossy(bytes)
        )
    })
}

#[test]
fn record_fuzz_mutated_envelopes_never_panic_nor_yield_another_record() {
    let original = sample_envelope();
    let trusted = [ci_key().verifying_key()];
    let mut rng = Rng(0x5eed_0001);
    let mut accepted = 0;
    for i in 0..3000 {
        let bytes = mutate(&mut rng, &original);
        if let Ok(record) = open_without_panic(&bytes, &trusted, &format!("envelope mutation {i}"))
        {
            // Only changes JSON ignores (whitespace between tokens) may pass, and only as the
            // very same record.
            assert_eq!(
                record,
                sample(),
                "mutation {i} was accepted as a different record"
            );
            accepted += 1;
        }
    }
    assert!(
        accepted < 3000 / 10,
        "{accepted} of 3000 mutations accepted: the mutations are not reaching the checks"
    );
}

#[test]
fn record_fuzz_mutated_payloads_never_verify() {
    let envelope = ci_key().sign(&sample()).unwrap();
    let body = BASE64.decode(&envelope.payload).unwrap();
    let trusted = [ci_key().verifying_key()];
    let mut rng = Rng(0x5eed_0002);
    // Each input costs a signature check (slow in debug builds); a few hundred show the point.
    for i in 0..300 {
        let mutated = mutate(&mut rng, &body);
        if mutated == body {
            continue;
        }
        let mut env = envelope.clone();
        env.payload = BASE64.encode(&mutated);
        let Ok(bytes) = env.to_json() else { continue };
        let result = open_without_panic(&bytes, &trusted, &format!("payload mutation {i}"));
        assert!(
            matches!(result, Err(RecordError::BadSignature)),
            "payload mutation {i}: {result:?}"
        );
    }
}

#[test]
fn record_fuzz_signed_garbage_never_panics_and_only_valid_records_pass() {
    // What a compromised or buggy CI could sign: the parser and validator must hold on their own.
    // Most inputs go straight to the post-signature decoder (no signature cost); every 20th goes
    // through `open` with a real signature, to show the two paths agree.
    let body = serde_json::to_vec(&sample()).unwrap();
    let key = ci_key();
    let trusted = [key.verifying_key()];
    let mut rng = Rng(0x5eed_0003);
    let mut accepted = 0;
    for i in 0..4000 {
        let mutated = mutate(&mut rng, &body);
        let what = format!("signed mutation {i}");
        let result = catch_unwind(AssertUnwindSafe(|| {
            decode_verified(PASS_RECORD_PAYLOAD_TYPE, &mutated)
        }))
        .unwrap_or_else(|_| {
            panic!(
                "decoding panicked on {what}: {:?}",
                String::from_utf8_lossy(&mutated)
            )
        });
        if i % 20 == 0 {
            let bytes = key
                .sign_raw(PASS_RECORD_PAYLOAD_TYPE, &mutated)
                .to_json()
                .unwrap();
            let opened = open_without_panic(&bytes, &trusted, &what);
            assert_eq!(
                format!("{opened:?}"),
                format!("{result:?}"),
                "{what}: open and decode disagree"
            );
        }
        if let Ok(record) = result {
            record.validate().unwrap();
            assert_eq!(
                serde_json::from_slice::<PassRecord>(&mutated).unwrap(),
                record,
                "{what}"
            );
            accepted += 1;
        }
    }
    assert!(
        accepted < 4000 / 10,
        "{accepted} of 4000 mutations accepted: the mutations are not reaching the checks"
    );
}

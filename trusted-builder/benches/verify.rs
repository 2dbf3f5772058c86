//! Benchmark (issue 5): cosign signature verifications per second.
//! In-process, no network: `verify_signatures` over `.sig` layer bytes as
//! `verify::fetch` returns them, next to the raw ECDSA P-256 (SHA-256, DER)
//! verify of the same payload with the same key. Prints figures only.
//!
//! `cargo bench -p trusted-builder --bench verify`
//! Env: `AIRLOCK_BENCH_ITERS` (default 2000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;
use std::time::Instant;

use base64::Engine as _;
use trusted_builder::sign::cosign::{ANNOTATION_SIGNATURE, SimpleSigningPayload, signature_layer};
use trusted_builder::sign::{FileKey, PRIVATE_KEY_FILE, Secret, Signer, generate_key_pair};
use trusted_builder::verify::{FetchedLayer, PublicKey, verify_signatures};

const REPOSITORY: &str = "registry.example:5000/airlock/app";

fn rate(label: &str, iters: usize, mut f: impl FnMut()) -> f64 {
    // Warm-up, then timed loop.
    for _ in 0..iters.min(50) {
        f();
    }
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    let el = t.elapsed().as_secs_f64();
    let per_s = iters as f64 / el;
    println!(
        "  {label}: {iters} in {el:.3}s = {per_s:.0}/s ({:.1} µs each)",
        el * 1e6 / iters as f64
    );
    per_s
}

fn main() {
    let iters: usize = std::env::var("AIRLOCK_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let keys = tempfile::tempdir().unwrap();
    let password = Secret::new("bench-password");
    generate_key_pair(keys.path(), &password).unwrap();
    let key = FileKey::load(&keys.path().join(PRIVATE_KEY_FILE), &password).unwrap();
    let public = PublicKey::from_pem(key.public_key_pem().as_bytes()).unwrap();

    let digest = format!("sha256:{}", "ab".repeat(32));
    let payload = SimpleSigningPayload::new(REPOSITORY, &digest, None)
        .unwrap()
        .to_bytes()
        .unwrap();
    let blob = rt.block_on(signature_layer(&key, &payload)).unwrap();
    let sig_der = base64::engine::general_purpose::STANDARD
        .decode(
            blob.descriptor
                .annotations
                .as_ref()
                .unwrap()
                .get(ANNOTATION_SIGNATURE)
                .unwrap(),
        )
        .unwrap();
    // What `verify::fetch` hands over for a `.sig` tag with one layer.
    let one = vec![FetchedLayer {
        descriptor: blob.descriptor.clone(),
        data: blob.data.clone(),
    }];
    assert!(verify_signatures(&one, &public, REPOSITORY, &digest).is_ok());
    assert!(public.verifies(&sig_der, &payload));

    println!(
        "cosign signature verification (payload {} bytes, ECDSA P-256 / SHA-256, 1 thread)",
        payload.len()
    );
    let full = rate("verify_signatures (1 layer)", iters, || {
        black_box(verify_signatures(black_box(&one), &public, REPOSITORY, &digest).unwrap());
    });
    let raw = rate(
        "raw ECDSA P-256 verify (PublicKey::verifies)",
        iters,
        || {
            assert!(black_box(&public).verifies(black_box(&sig_der), black_box(&payload)));
        },
    );
    let sign = rate("sign (FileKey, for comparison)", iters, || {
        black_box(rt.block_on(key.sign(black_box(&payload))).unwrap());
    });
    println!(
        "  verify_signatures / raw verify = {:.3}; sign / raw verify = {:.3}",
        full / raw,
        sign / raw
    );
}

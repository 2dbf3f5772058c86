//! Fuzz target: parsing what a registry serves for an image a job names, a manifest or index
//! and then the image config (`image::manifest::{parse_manifest, parse_config}`).
//!
//! On the CI cluster the job chooses the registry, so every byte here is the attacker's (capped
//! at 4 MiB and checked against its digest before it gets here, which costs the attacker
//! nothing: they publish the bytes they want). The input is the manifest, a 0xFF byte, then the
//! config (never valid UTF-8, so never inside JSON); seeds in `fuzz/seeds/image_manifest/` are
//! real manifest, index and config shapes. Checked: no panic, and whatever is accepted is what
//! the fetch relies on — well-formed sha256 digests, a config within the size cap, at most
//! `MAX_LAYERS` layers, one `diff_id` per layer, and an index never reached through an index.
#![no_main]
#![forbid(unsafe_code)]

use airlock_pipeline::image::manifest::{
    MAX_LAYERS, MAX_MANIFEST_BYTES, Manifest, is_sha256_digest, parse_config, parse_manifest,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (manifest, config) = match data.iter().position(|b| *b == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    for nested in [false, true] {
        match parse_manifest(manifest, "fuzz", nested) {
            Ok(Manifest::Index { linux_amd64 }) => {
                assert!(!nested, "an index reached through an index was accepted");
                assert!(is_sha256_digest(&linux_amd64), "{linux_amd64:?}");
            }
            Ok(Manifest::Image(image)) => {
                assert!(is_sha256_digest(&image.config_digest));
                assert!(image.config_size <= MAX_MANIFEST_BYTES as u64);
                assert!(image.layer_count() <= MAX_LAYERS);
                if let Ok((_env, layers)) = parse_config(config, &image, "fuzz") {
                    assert_eq!(layers.len(), image.layer_count());
                    for layer in &layers {
                        assert!(is_sha256_digest(&layer.digest), "{:?}", layer.digest);
                        assert!(is_sha256_digest(&layer.diff_id), "{:?}", layer.diff_id);
                    }
                }
            }
            Err(_) => {}
        }
    }
});

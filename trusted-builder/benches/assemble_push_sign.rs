//! Benchmark (issue 5): assemble + push + sign an image from a 100 MB output,
//! relative to the ceiling "sha256 + gzip of the same bytes" measured in the
//! same run. Prints figures; asserts nothing about time.
//!
//! `cargo bench -p trusted-builder --bench assemble_push_sign`
//! Env: `AIRLOCK_BENCH_MB` (default 100), `AIRLOCK_BENCH_ROUNDS` (default 3).
//! Needs Debian's `docker-registry` (scripts/install-deps.sh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use airlock_pipeline::spec::model::{BaseImage, PublishImage};
use flate2::{Compression, GzBuilder};
use sha2::{Digest as _, Sha256};
use trusted_builder::attach::sign_image;
use trusted_builder::oci::{ImageInputs, Registry, RegistryConfig, ResolvedFile};
use trusted_builder::sign::{FileKey, PRIVATE_KEY_FILE, Secret, generate_key_pair};

/// The level `oci::layer` uses (GZIP_LEVEL there; kept in step by hand).
const GZIP_LEVEL: u32 = 6;
const EPOCH: i64 = 1_700_000_000;

/// splitmix64: deterministic, fast, no dependency.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Incompressible: PRNG bytes.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut rng = Prng(0x00A1_8C0C);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Compressible: log-like text lines (about 3-4x with gzip -6).
fn text_bytes(len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "INFO", "DEBUG", "build", "step", "cache", "hit", "miss", "compile", "link", "crate",
        "airlock", "ok", "done", "target", "release", "artifact", "\n",
    ];
    let mut rng = Prng(0x7E47);
    let mut out = Vec::with_capacity(len + 64);
    let mut line = 0u64;
    while out.len() < len {
        line += 1;
        write!(out, "{line:08} ").unwrap();
        let r = rng.next();
        for i in 0..6 {
            out.extend_from_slice(WORDS[((r >> (i * 8)) as usize) % (WORDS.len() - 1)].as_bytes());
            out.push(b' ');
        }
        writeln!(out, "{:04x}", r >> 48).unwrap();
    }
    out.truncate(len);
    out
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed())
}

#[derive(Default, Clone)]
struct Round {
    sha256: f64,
    gzip: f64,
    ceiling: f64,
    assemble: f64,
    push: f64,
    sign: f64,
    total: f64,
    ratio: f64,
    gz_bytes: usize,
}

async fn round(name: &str, out_dir: &Path, data: &[u8], key: &FileKey, round_no: usize) -> Round {
    // Ceiling: sha256 + gzip (same level / header as the assembler) of the bytes.
    let (_digest, t_sha) = time(|| Sha256::digest(data));
    let (gz, t_gz) = time(|| {
        let mut gz = GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(Vec::new(), Compression::new(GZIP_LEVEL));
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    });
    let gz_bytes = gz.len();
    drop(gz);

    // A fresh registry per round so nothing is already there (not timed).
    let reg = airlock_tests::registry::TestRegistry::start();
    let registry = Registry::new(&RegistryConfig {
        insecure: vec![reg.host.clone()],
        ..Default::default()
    })
    .expect("client");
    let repository = format!("{}/bench/{name}-{round_no}", reg.host);

    let image = PublishImage {
        base: BaseImage::Scratch,
        files: BTreeMap::from([("out.bin".to_owned(), "/opt/app/out.bin".to_owned())]),
        entrypoint: vec!["/opt/app/out.bin".into()],
        env: BTreeMap::new(),
        labels: BTreeMap::new(),
    };
    let root = out_dir.to_path_buf();
    let resolve = move |output: &str| {
        let path = root.join(output);
        path.exists().then_some(ResolvedFile {
            path,
            executable: true,
        })
    };
    let inputs = ImageInputs {
        image: &image,
        resolve: &resolve,
        source_date_epoch: EPOCH,
        source: "https://git.example/airlock/bench",
        revision: "0123456789abcdef0123456789abcdef01234567",
    };

    let t = Instant::now();
    let assembled = registry.assemble_image(&inputs).await.expect("assemble");
    let t_asm = t.elapsed();
    let t = Instant::now();
    let digest = registry
        .push(&format!("{repository}:latest"), &assembled)
        .await
        .expect("push");
    let t_push = t.elapsed();
    let t = Instant::now();
    sign_image(&registry, key, &repository, &digest, None)
        .await
        .expect("sign");
    let t_sign = t.elapsed();
    drop(reg);

    let ceiling = secs(t_sha) + secs(t_gz);
    let total = secs(t_asm) + secs(t_push) + secs(t_sign);
    Round {
        sha256: secs(t_sha),
        gzip: secs(t_gz),
        ceiling,
        assemble: secs(t_asm),
        push: secs(t_push),
        sign: secs(t_sign),
        total,
        ratio: ceiling / total,
        gz_bytes,
    }
}

/// Diagnostic breakdown of what the assembler does, step by step, on the
/// same bytes (not part of the ratio).
fn breakdown(path: &Path, len: usize) {
    let (data, t_read) = time(|| std::fs::read(path).unwrap());
    let (tar, t_tar) = time(|| {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, "opt/app/out.bin", data.as_slice())
            .unwrap();
        tar.into_inner().unwrap()
    });
    let (_, t_sha_tar) = time(|| Sha256::digest(&tar));
    let (gz, t_gz) = time(|| {
        let mut gz = GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(Vec::new(), Compression::new(GZIP_LEVEL));
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    });
    let (_, t_sha_gz) = time(|| Sha256::digest(&gz));
    let (_, t_clone) = time(|| std::hint::black_box(gz.clone()));
    // The assembler streams the tar into gzip in small writes; the bytes
    // (hence digests) must not depend on how the input was chunked.
    let mut chunked = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::new(GZIP_LEVEL));
    for c in tar.chunks(8192 + 512) {
        chunked.write_all(c).unwrap();
    }
    let same = chunked.finish().unwrap() == gz;
    println!(
        "  breakdown ({} MB): read {:.3}s  tar {:.3}s  sha256(tar) {:.3}s  gzip {:.3}s  sha256(gz) {:.3}s  copy(gz) {:.3}s; gzip(chunked writes) == gzip(one write): {same}",
        len >> 20,
        secs(t_read),
        secs(t_tar),
        secs(t_sha_tar),
        secs(t_gz),
        secs(t_sha_gz),
        secs(t_clone),
    );
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mb: usize = std::env::var("AIRLOCK_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rounds: usize = std::env::var("AIRLOCK_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let len = mb << 20;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let keys = tempfile::tempdir().unwrap();
    let password = Secret::new("bench-password");
    generate_key_pair(keys.path(), &password).unwrap();
    let key = FileKey::load(&keys.path().join(PRIVATE_KEY_FILE), &password).unwrap();

    println!(
        "assemble + push + sign vs sha256 + gzip -{GZIP_LEVEL} ceiling ({mb} MiB, median of {rounds})"
    );
    for (name, generate) in [
        ("random", random_bytes as fn(usize) -> Vec<u8>),
        ("text", text_bytes),
    ] {
        let out_dir = tempfile::tempdir().unwrap();
        let data = generate(len);
        let path = out_dir.path().join("out.bin");
        std::fs::write(&path, &data).unwrap();
        println!("{name}:");
        let mut all = Vec::new();
        for r in 0..rounds {
            let x = rt.block_on(round(name, out_dir.path(), &data, &key, r));
            println!(
                "  round {}: ceiling {:.3}s (sha256 {:.3}s + gzip {:.3}s, gz {:.1} MiB)  total {:.3}s (assemble {:.3}s + push {:.3}s + sign {:.3}s)  ratio {:.3}",
                r + 1,
                x.ceiling,
                x.sha256,
                x.gzip,
                x.gz_bytes as f64 / f64::from(1 << 20),
                x.total,
                x.assemble,
                x.push,
                x.sign,
                x.ratio
            );
            all.push(x);
        }
        let m = |f: fn(&Round) -> f64| median(all.iter().map(f).collect());
        println!(
            "  MEDIAN {name}: ceiling {:.3}s (sha256 {:.3}s, gzip {:.3}s)  total {:.3}s (assemble {:.3}s, push {:.3}s, sign {:.3}s)  ratio ceiling/total {:.3}  ({:.1} MB/s end to end)",
            m(|r| r.ceiling),
            m(|r| r.sha256),
            m(|r| r.gzip),
            m(|r| r.total),
            m(|r| r.assemble),
            m(|r| r.push),
            m(|r| r.sign),
            m(|r| r.ratio),
            len as f64 / 1e6 / m(|r| r.total),
        );
        breakdown(&path, len);
    }
}

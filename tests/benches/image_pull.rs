//! Job images, measured against a real docker-registry on 127.0.0.1:
//!
//! - cold pull + unpack of the toolchain image (Debian's gcc, libc6-dev, binutils, ... from
//!   this host's packages, about 100 MB unpacked) with Airlock's image cache (oci-client,
//!   digest checks, TreeRoot unpack), against `skopeo copy` to an OCI layout plus `tar -x` of
//!   its layers (no digest-checked unpack, no whiteouts);
//! - warm start: `true` in the cached image against `true` in host mode, same executor.
//!
//! `cargo bench -p airlock-tests --bench image_pull` prints the figures.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use airlock_pipeline::executor::{Executor, JobRequest, SandboxConfig, SandboxExecutor};
use airlock_pipeline::image::{ImageCache, ImageRef, ImageSettings};
use airlock_pipeline::log::LogSink;
use airlock_tests::images::{TOOLCHAIN_PACKAGES, debian_rootfs, push_rootfs};
use airlock_tests::registry::TestRegistry;
use airlock_tests::sandbox::work_dir;
use tokio_util::sync::CancellationToken;

const COLD_RUNS: usize = 3;
const WARM_RUNS: usize = 40;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn du(path: &Path) -> u64 {
    let out = Command::new("du")
        .arg("-sb")
        .arg(path)
        .output()
        .expect("du");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let registry = TestRegistry::start();
    let build = tempfile::tempdir().expect("tempdir");
    let rootfs = build.path().join("rootfs");
    let t = Instant::now();
    let made = debian_rootfs(&rootfs, TOOLCHAIN_PACKAGES).expect("toolchain rootfs");
    let built_in = t.elapsed();
    let t = Instant::now();
    let image = push_rootfs(&registry.host, "toolchain", "bench", &rootfs)
        .await
        .expect("push");
    println!(
        "toolchain image: {} packages, {:.1} MB unpacked, {:.1} MB compressed layer (rootfs {:.1} s, tar+gzip+push {:.1} s)",
        made.packages.len(),
        image.uncompressed_bytes as f64 / 1e6,
        image.layer_bytes as f64 / 1e6,
        built_in.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    let reference = ImageRef::parse(&image.reference).expect("reference");
    let work = work_dir();

    let mut ours = Vec::new();
    for n in 0..COLD_RUNS {
        let cache = ImageCache::new(ImageSettings {
            cache_dir: work.path().join(format!("cold-{n}")),
            insecure: vec![registry.host.clone()],
            ..ImageSettings::default()
        })
        .expect("cache");
        let t = Instant::now();
        cache
            .ensure(&reference, &LogSink::new("bench", 1 << 20, None))
            .await
            .expect("pull");
        ours.push(t.elapsed());
    }
    let mut skopeo = Vec::new();
    for n in 0..COLD_RUNS {
        let dir = work.path().join(format!("skopeo-{n}"));
        let unpacked = dir.join("rootfs");
        std::fs::create_dir_all(&unpacked).expect("dir");
        let t = Instant::now();
        let ok = Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{}", image.reference))
            .arg(format!("oci:{}:bench", dir.join("layout").display()))
            .status()
            .expect("skopeo")
            .success();
        assert!(ok, "skopeo copy");
        let blobs = dir.join("layout/blobs/sha256");
        let layer = blobs.join(image.layer_digest.trim_start_matches("sha256:"));
        let ok = Command::new("tar")
            .arg("-xzf")
            .arg(&layer)
            .arg("-C")
            .arg(&unpacked)
            .status()
            .expect("tar")
            .success();
        assert!(ok, "tar -x");
        skopeo.push(t.elapsed());
        assert!(du(&unpacked) > 0);
    }
    println!("cold pull + unpack ({COLD_RUNS} runs each, fresh cache every run):");
    println!(
        "  airlock image cache, median: {:>8.0} ms",
        ms(median(ours))
    );
    println!(
        "  skopeo copy + tar -x, median:{:>8.0} ms",
        ms(median(skopeo))
    );

    let cache_dir = work.path().join("cold-0");
    let executor = SandboxExecutor::new(SandboxConfig {
        images: ImageSettings {
            cache_dir,
            insecure: vec![registry.host.clone()],
            ..ImageSettings::default()
        },
        ..SandboxConfig::default()
    })
    .expect("bubblewrap");
    let workspace = work.path().join("ws");
    let mut times = [Vec::new(), Vec::new()];
    for n in 0..=WARM_RUNS {
        for (which, image) in [None, Some(reference.clone())].into_iter().enumerate() {
            std::fs::create_dir_all(&workspace).expect("workspace");
            let request = JobRequest {
                job: "bench".into(),
                attempt_id: format!("bench-{}-{n}-{which}", std::process::id()),
                argv: vec!["true".into()],
                env: Default::default(),
                workspace: workspace.clone(),
                timeout: Duration::from_secs(30),
                resources: Default::default(),
                image,
            };
            let t = Instant::now();
            let exec = executor
                .execute(
                    request,
                    LogSink::new("bench", 1 << 20, None),
                    CancellationToken::new(),
                )
                .await
                .expect("sandbox");
            assert!(exec.reason.success());
            if n > 0 {
                times[which].push(t.elapsed());
            }
        }
    }
    let [host, cached] = times;
    let (host, cached) = (median(host), median(cached));
    println!("warm start, `true` ({WARM_RUNS} runs each, interleaved):");
    println!("  host mode, median:           {:>8.2} ms", ms(host));
    println!("  cached image, median:        {:>8.2} ms", ms(cached));
    println!(
        "  image overhead, median:      {:>8.2} ms",
        ms(cached) - ms(host)
    );
}

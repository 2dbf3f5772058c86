//! `build-test-image busybox|toolchain --registry 127.0.0.1:PORT --repository NAME`: builds a
//! test image from files installed on this host (busybox-static, or the Debian toolchain
//! packages), pushes it over plain HTTP and prints the pinned reference
//! (`HOST/REPO@sha256:HEX`) alone on stdout. Progress goes to stderr.
#![forbid(unsafe_code)]

use std::time::Instant;

use airlock_tests::images::{
    DEBIAN_MARKER, TOOLCHAIN_PACKAGES, busybox_rootfs, debian_rootfs, push_rootfs,
};
use anyhow::Context as _;
use clap::{Parser, ValueEnum};

/// Which root filesystem to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// busybox-static with an applet link per command (about 1 MB compressed).
    Busybox,
    /// gcc, libc6-dev, binutils, dash, coreutils, tar, gzip and their dependencies.
    Toolchain,
}

/// Build a test image from this host's files and push it by digest.
#[derive(Debug, Parser)]
#[command(name = "build-test-image")]
struct Args {
    /// The image to build.
    kind: Kind,
    /// Registry `host:port`, reached over plain HTTP.
    #[arg(long)]
    registry: String,
    /// Repository within the registry.
    #[arg(long)]
    repository: String,
    /// Tag to push as (the printed reference is pinned by digest regardless).
    #[arg(long, default_value = "latest")]
    tag: String,
    /// Line written to `/etc/airlock-image` (default: `busybox` or `debian-toolchain`).
    #[arg(long)]
    marker: Option<String>,
    /// Build the root filesystem in DIR (absent or empty) and keep it, instead of a temp dir.
    #[arg(long, value_name = "DIR")]
    keep_rootfs: Option<std::path::PathBuf>,
    /// Print the Debian packages (`name=version`) copied into a toolchain image to stderr.
    #[arg(long)]
    list_packages: bool,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let dir = tempfile::tempdir().context("temp dir")?;
    let rootfs = args
        .keep_rootfs
        .clone()
        .unwrap_or_else(|| dir.path().join("rootfs"));
    if rootfs.exists() {
        anyhow::ensure!(
            std::fs::read_dir(&rootfs)?.next().is_none(),
            "{} is not empty",
            rootfs.display()
        );
    }

    let started = Instant::now();
    match args.kind {
        Kind::Busybox => {
            let marker = args.marker.as_deref().unwrap_or("busybox");
            busybox_rootfs(&rootfs, marker)?;
            eprintln!(
                "build-test-image: busybox rootfs in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        Kind::Toolchain => {
            let built = debian_rootfs(&rootfs, TOOLCHAIN_PACKAGES)?;
            if let Some(marker) = &args.marker
                && marker != DEBIAN_MARKER
            {
                anyhow::ensure!(!marker.contains('\n'), "--marker must be one line");
                std::fs::write(rootfs.join("etc/airlock-image"), format!("{marker}\n"))
                    .context("write etc/airlock-image")?;
            }
            eprintln!(
                "build-test-image: toolchain rootfs: {} packages, {:.1} MiB, {:.1} s",
                built.packages.len(),
                mib(built.bytes),
                started.elapsed().as_secs_f64()
            );
            if args.list_packages {
                for package in &built.packages {
                    eprintln!("  {package}");
                }
                for skipped in &built.skipped {
                    eprintln!("  (not installed, left out: {skipped})");
                }
            }
        }
    }

    let pushing = Instant::now();
    let image = push_rootfs(&args.registry, &args.repository, &args.tag, &rootfs).await?;
    eprintln!(
        "build-test-image: pushed {}:{} layer {:.1} MiB ({:.1} MiB uncompressed) in {:.1} s",
        image.repository,
        args.tag,
        mib(image.layer_bytes),
        mib(image.uncompressed_bytes),
        pushing.elapsed().as_secs_f64()
    );
    println!("{}", image.reference);
    Ok(())
}

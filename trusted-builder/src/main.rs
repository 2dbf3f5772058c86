//! `trusted-builder`: Airlock's trusted plane. It pulls pass records (it
//! never accepts a connection from the CI cluster), rebuilds hermetically,
//! signs and attests. Only `--help` and `--version` exist so far; intake,
//! rebuild, signing and the reconciler land with the trusted-builder issue.
#![forbid(unsafe_code)]

use clap::Parser;

/// Airlock trusted builder (trusted plane, air-gapped).
///
/// Pulls records of passing CI jobs, re-derives the source from the canonical
/// Git server by commit id, rebuilds the job with no network, and produces
/// signed OCI images with SLSA provenance. It opens no port for the CI
/// cluster and takes nothing from it but a hint.
#[derive(Parser)]
#[command(name = "trusted-builder", version, about, long_about)]
struct Cli {}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let _cli = Cli::parse();
    eprintln!("trusted-builder: no subcommands yet; see `trusted-builder --help`");
    std::process::exit(2);
}

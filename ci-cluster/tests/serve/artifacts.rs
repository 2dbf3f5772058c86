//! `[artifacts]`: size limits at collection and the retention sweep, with the
//! real binary and the real sandbox.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::support::*;

/// Makes `dist/big.bin` of `size` zero bytes and a small `dist/small.txt`.
fn pipeline(size: u64) -> String {
    format!(
        "version: 1\njobs:\n  build:\n    run: mkdir -p dist && head -c {size} /dev/zero > dist/big.bin && echo small > dist/small.txt\n    outputs: [dist]\n"
    )
}

fn zeros_digest(size: usize) -> String {
    hex::encode(Sha256::digest(vec![0u8; size]))
}

fn blobs(data: &Path) -> Vec<String> {
    match std::fs::read_dir(data.join("artifacts/sha256")) {
        Ok(dir) => dir
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The server log without ANSI colour sequences (tracing colours field names).
fn without_colours(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, ending with a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn start(world: &World, artifacts: &str) -> Server {
    Server::start(
        &world.config(
            Config::default()
                .project(Project::gerrit("greet"))
                .section(artifacts),
        ),
    )
}

#[test]
fn an_output_over_max_output_size_fails_its_job_with_the_limit_named_and_stores_nothing() {
    let world = World::new();
    let server = start(&world, "[artifacts]\nmax_output_size = \"1Mi\"");
    let data = world.root.join("data");

    let run = world.change_with_pipeline(&server, 1, "a big output", &pipeline(2_202_010));
    let detail = server.wait_final(run);
    assert_eq!(detail["run"]["status"], "failed", "{detail}");
    let job = &detail["jobs"][0];
    assert_eq!(
        job["detail"],
        "output 'dist/big.bin' is 2.1 MiB, over the limit of 1 MiB (artifacts.max_output_size)",
        "{job}"
    );
    assert_eq!(job["outputs"], serde_json::json!([]));
    assert!(
        blobs(&data).is_empty(),
        "nothing of the job is stored: {:?}",
        blobs(&data)
    );
    let (_, log) = get(&server.url(&format!("/api/v1/runs/{run}/jobs/build/log")));
    assert!(
        log.to_string().contains("over the limit of 1 MiB"),
        "the job's log says why: {log}"
    );

    // Control: the same job under the limit passes, and both files are stored.
    let run = world.change_with_pipeline(&server, 2, "a smaller output", &pipeline(700_000));
    let detail = server.wait_final(run);
    assert_eq!(detail["run"]["status"], "passed", "{detail}");
    let mut stored = blobs(&data);
    stored.sort();
    let mut expected = vec![
        zeros_digest(700_000),
        hex::encode(Sha256::digest(b"small\n")),
    ];
    expected.sort();
    assert_eq!(stored, expected);
    // A blob lost within the retention window (removed by hand here) is not
    // "expired": 404, not 410.
    let digest = zeros_digest(700_000);
    let url = server.url(&format!("/runs/{run}/outputs/{digest}"));
    assert_eq!(fetch_get(&url).expect("GET").status, 200);
    std::fs::remove_file(data.join("artifacts/sha256").join(&digest)).expect("rm");
    let lost = fetch_get(&url).expect("GET");
    assert_eq!(lost.status, 404);
    assert!(lost.body.contains("no longer stored"), "{}", lost.body);
}

#[test]
fn an_expired_output_answers_410_gone_after_the_sweep_removed_it() {
    let world = World::new();
    let server = start(
        &world,
        "[artifacts]\nretention = \"4s\"\nsweep_interval = \"1s\"",
    );
    let data = world.root.join("data");
    let run = world.change_with_pipeline(&server, 1, "an output", &pipeline(1000));
    let detail = server.wait_final(run);
    assert_eq!(detail["run"]["status"], "passed", "{detail}");
    let digest = zeros_digest(1000);
    let url = server.url(&format!("/runs/{run}/outputs/{digest}"));

    // Control: within the retention window it downloads.
    let fresh = fetch_get(&url).expect("GET");
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.bytes, vec![0u8; 1000]);

    server.wait_until(Duration::from_secs(30), || {
        if blobs(&data).contains(&digest) {
            Err("the sweep never removed the expired blob".to_string())
        } else {
            Ok(())
        }
    });
    let gone = fetch_get(&url).expect("GET");
    assert_eq!(gone.status, 410, "{}", gone.body);
    assert!(
        gone.body.contains("expired under the retention policy")
            && gone.body.contains("artifacts.retention"),
        "{}",
        gone.body
    );
    // A digest the run never had is still 404.
    let other =
        fetch_get(&server.url(&format!("/runs/{run}/outputs/{}", "0".repeat(64)))).expect("GET");
    assert_eq!(other.status, 404);
    // The sweep logs what it removed (once its blocking task is back).
    server.wait_until(Duration::from_secs(10), || {
        let log = without_colours(&server.log_text());
        if log.contains("artifact sweep") && log.contains("expired_blobs=2 expired_bytes=1006") {
            Ok(())
        } else {
            Err("no log line of the sweep that removed the blobs".to_string())
        }
    });
}

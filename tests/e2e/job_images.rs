//! Jobs run in the image they name (issue 12), against a real docker-registry and bubblewrap:
//! the image is pulled with oci-client, verified, unpacked and becomes the job's `/`; a job
//! without an image runs in host mode only where that is allowed; a tampered blob is refused;
//! and two "builder hosts" with different toolchains give the same output when the job names
//! one image (and different ones in host mode: the control).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use airlock_pipeline::executor::{
    ExitReason, HostMode, HostReserve, SandboxConfig, SandboxExecutor,
};
use airlock_pipeline::image::{ImageRef, ImageSettings};
use airlock_tests::images::{IMAGE_PATH, PushedImage, busybox_rootfs, push_rootfs};
use airlock_tests::registry::TestRegistry;
use airlock_tests::sandbox::{SandboxJob, work_dir};

fn executor(cache: &Path, settings: impl FnOnce(&mut SandboxConfig)) -> SandboxExecutor {
    let mut config = SandboxConfig {
        images: ImageSettings {
            cache_dir: cache.to_path_buf(),
            ..ImageSettings::default()
        },
        ..SandboxConfig::default()
    };
    settings(&mut config);
    SandboxExecutor::new(config).expect("bubblewrap is installed (make test installs it)")
}

async fn busybox_image(registry: &TestRegistry, repository: &str, marker: &str) -> PushedImage {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs, marker).unwrap();
    push_rootfs(&registry.host, repository, marker, &rootfs)
        .await
        .unwrap()
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// Each line runs whatever the one before found (under `sh -eu` a failing `cat` would end the
// probe before the toolchain check it guards).
const PROBE: &str = "cat /etc/airlock-image > marker 2>/dev/null || echo 'no image marker' > marker\n\
    if [ -e /usr/bin/gcc ]; then echo 'the host toolchain is visible'; exit 1; fi\n\
    echo \"$PATH\" > path";

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_in_the_image_it_names_and_the_second_start_is_cached() {
    let registry = TestRegistry::start();
    let image = busybox_image(&registry, "busybox", "image-a").await;
    let work = work_dir();
    let exec = executor(&work.path().join("images"), |c| {
        c.images.insecure = vec![registry.host.clone()];
    });

    let mut job = SandboxJob::new(PROBE);
    job.image = Some(ImageRef::parse(&image.reference).unwrap());
    let (done, log) = job.run_in(&work.path().join("first"), &exec).await;
    let text = log.to_text();
    assert_eq!(done.unwrap().reason, ExitReason::Exited(0), "{text}");
    assert_eq!(read(work.path().join("first/ws/marker")), "image-a\n");
    // The image config's PATH (not the sandbox's default) is the job's.
    let image_path = IMAGE_PATH.strip_prefix("PATH=").unwrap();
    assert_eq!(
        read(work.path().join("first/ws/path")),
        format!("{image_path}\n")
    );
    assert!(text.contains("pulling from"), "{text}");

    let mut again = SandboxJob::new(PROBE);
    again.image = Some(ImageRef::parse(&image.reference).unwrap());
    let (done, log) = again.run_in(&work.path().join("second"), &exec).await;
    let text = log.to_text();
    assert_eq!(done.unwrap().reason, ExitReason::Exited(0), "{text}");
    assert!(
        text.contains("(cached)") && !text.contains("pulling"),
        "{text}"
    );

    // Control: the same probe in host mode sees the host (its gcc, no image marker). Issue 26:
    // it once failed at its first line, so the toolchain check it stands for never ran.
    let (done, log) = SandboxJob::new(PROBE)
        .run_in(&work.path().join("host"), &exec)
        .await;
    let text = log.to_text();
    assert_ne!(done.unwrap().reason, ExitReason::Exited(0), "{text}");
    assert!(text.contains("host mode"), "{text}");
    assert!(text.contains("the host toolchain is visible"), "{text}");
    assert_eq!(
        read(work.path().join("host/ws/marker")),
        "no image marker\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_image_a_job_is_refused_where_host_mode_is_off() {
    let work = work_dir();
    let exec = executor(&work.path().join("images"), |c| {
        c.host_mode = HostMode::Deny
    });
    let (done, _log) = SandboxJob::new("true")
        .run_in(&work.path().join("a"), &exec)
        .await;
    let err = done.expect_err("refused");
    assert!(err.to_string().contains("names no image"), "{err}");
    // Control: allowed, the same job runs.
    let allowed = executor(&work.path().join("images"), |c| {
        c.host_mode = HostMode::Allow
    });
    let (done, _log) = SandboxJob::new("true")
        .run_in(&work.path().join("b"), &allowed)
        .await;
    assert!(done.unwrap().reason.success());
}

/// The registry's copy of a layer is changed on disk: the pull is refused by its digest and
/// nothing is cached; an image whose digest the registry does not have is refused too. An
/// untouched image from the same registry runs (the control).
#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_or_unknown_image_is_refused_and_nothing_is_cached() {
    let registry = TestRegistry::start();
    let good = busybox_image(&registry, "good", "good").await;
    let bad = busybox_image(&registry, "bad", "bad").await;
    let layer = blob_file(&registry, &bad.layer_digest);
    let mut bytes = std::fs::read(&layer).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();

    let work = work_dir();
    let cache = work.path().join("images");
    let exec = executor(&cache, |c| c.images.insecure = vec![registry.host.clone()]);
    let mut job = SandboxJob::new("true");
    job.image = Some(ImageRef::parse(&bad.reference).unwrap());
    let (done, _) = job.run_in(&work.path().join("bad"), &exec).await;
    let err = done.expect_err("tampered layer").to_string();
    // Checked by oci-client while streaming and again by us: either names the layer's digest.
    assert!(
        err.to_lowercase().contains("digest") && err.contains(&bad.layer_digest),
        "{err}"
    );

    let unknown = format!("{}/good@sha256:{}", registry.host, "1".repeat(64));
    let mut job = SandboxJob::new("true");
    job.image = Some(ImageRef::parse(&unknown).unwrap());
    let (done, _) = job.run_in(&work.path().join("unknown"), &exec).await;
    let err = done.expect_err("unknown digest");
    assert!(err.to_string().contains(&registry.host), "{err}");

    let entries: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(entries.is_empty(), "cache holds {entries:?}");

    let mut job = SandboxJob::new(PROBE);
    job.image = Some(ImageRef::parse(&good.reference).unwrap());
    let (done, log) = job.run_in(&work.path().join("good"), &exec).await;
    assert!(done.unwrap().reason.success(), "{}", log.to_text());
}

/// Where docker-registry (filesystem storage) keeps a blob.
fn blob_file(registry: &TestRegistry, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    registry
        .dir
        .path()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// A host whose toolchain is `tool` printing `version`, marked `marker`.
fn fake_host(dir: &Path, marker: &str, version: &str) -> PathBuf {
    let root = dir.join(marker);
    busybox_rootfs(&root, marker).unwrap();
    let tool = root.join("usr/bin/tool");
    std::fs::create_dir_all(tool.parent().unwrap()).unwrap();
    std::fs::write(&tool, format!("#!/bin/sh\necho {version}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    root
}

fn copy_image(from: &TestRegistry, image: &PushedImage, to: &TestRegistry) {
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", "--preserve-digests"])
        .args(["--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{}", image.reference))
        .arg(format!(
            "docker://{}/{}:copied",
            to.host,
            image.repository.split_once('/').unwrap().1
        ))
        .status()
        .expect("skopeo is installed (make test installs it)");
    assert!(status.success(), "skopeo copy failed");
    let _ = from;
}

/// Two builder hosts whose own toolchains differ (`tool` 2.0 vs 3.0) rebuild the same job. In
/// host mode their outputs differ (the control, and the reason images exist); naming one image,
/// each pulled from its own registry (a copy with the same digest) and never from the public
/// one the job names (stopped first), their outputs are the same bytes.
#[tokio::test(flavor = "multi_thread")]
async fn two_builder_hosts_with_different_toolchains_agree_when_the_job_names_an_image() {
    let public = TestRegistry::start();
    let toolchain_dir = tempfile::tempdir().unwrap();
    let toolchain = fake_host(toolchain_dir.path(), "toolchain", "tool 1.0");
    let image = push_rootfs(&public.host, "toolchain", "v1", &toolchain)
        .await
        .unwrap();
    let (registry_a, registry_b) = (TestRegistry::start(), TestRegistry::start());
    copy_image(&public, &image, &registry_a);
    copy_image(&public, &image, &registry_b);
    drop(public);

    let hosts = tempfile::tempdir().unwrap();
    let work = work_dir();
    let builder = |name: &str, version: &str, registry: &TestRegistry| {
        let host_root = fake_host(hosts.path(), name, version);
        let cache = work.path().join(format!("images-{name}"));
        let own = registry.host.clone();
        executor(&cache, move |c| {
            c.host_root = host_root;
            c.images.mirror = Some(own.clone());
            c.images.require_mirror = true;
            c.images.insecure = vec![own];
        })
    };
    let builder_a = builder("host-a", "tool 2.0", &registry_a);
    let builder_b = builder("host-b", "tool 3.0", &registry_b);
    let script = "tool > out; cat /etc/airlock-image >> out";
    let output = |dir: &str| read(work.path().join(dir).join("ws/out"));

    for (name, exec) in [("host-a", &builder_a), ("host-b", &builder_b)] {
        let (done, log) = SandboxJob::new(script)
            .run_in(&work.path().join(name), exec)
            .await;
        assert!(done.unwrap().reason.success(), "{}", log.to_text());
        let mut job = SandboxJob::new(script);
        job.image = Some(ImageRef::parse(&image.reference).unwrap());
        let dir = format!("{name}-image");
        let (done, log) = job.run_in(&work.path().join(&dir), exec).await;
        let text = log.to_text();
        assert!(done.unwrap().reason.success(), "{text}");
        assert!(
            text.contains(&format!(
                "pulling from {}",
                if name == "host-a" {
                    &registry_a.host
                } else {
                    &registry_b.host
                }
            )),
            "{text}"
        );
    }
    assert_ne!(
        output("host-a"),
        output("host-b"),
        "host mode: each host's own toolchain"
    );
    assert_eq!(output("host-a"), "tool 2.0\nhost-a\n");
    assert_eq!(output("host-a-image"), output("host-b-image"));
    assert_eq!(output("host-a-image"), "tool 1.0\ntoolchain\n");
}

/// An image whose mount points are links or files (`tmp -> /`, `workspace -> etc`, `proc` a
/// file, no `dev`) still runs: the cache makes them plain directories, so the workspace and
/// /tmp are bound where the job expects, never through the image's links.
#[tokio::test(flavor = "multi_thread")]
async fn mount_points_that_are_links_or_files_become_directories() {
    let registry = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs, "mounts").unwrap();
    for name in ["tmp", "workspace", "proc", "dev"] {
        std::fs::remove_dir_all(rootfs.join(name)).unwrap();
    }
    std::os::unix::fs::symlink("/", rootfs.join("tmp")).unwrap();
    std::os::unix::fs::symlink("etc", rootfs.join("workspace")).unwrap();
    std::fs::write(rootfs.join("proc"), "not a directory\n").unwrap();
    let image = push_rootfs(&registry.host, "mounts", "mounts", &rootfs)
        .await
        .unwrap();

    let work = work_dir();
    let cache = work.path().join("images");
    let exec = executor(&cache, |c| {
        c.images.insecure = vec![registry.host.clone()];
    });
    let mut job = SandboxJob::new(
        "cat /etc/airlock-image > marker\n\
         echo scratch > /tmp/scratch && cat /tmp/scratch >> marker\n\
         test -r /proc/self/status && echo proc >> marker\n\
         test -c /dev/null && echo dev >> marker",
    );
    job.image = Some(ImageRef::parse(&image.reference).unwrap());
    let (done, log) = job.run_in(&work.path().join("run"), &exec).await;
    let text = log.to_text();
    assert_eq!(done.unwrap().reason, ExitReason::Exited(0), "{text}");
    assert_eq!(
        read(work.path().join("run/ws/marker")),
        "mounts\nscratch\nproc\ndev\n"
    );
    let unpacked = cache
        .join(format!(
            "sha256-{}",
            ImageRef::parse(&image.reference).unwrap().digest_hex()
        ))
        .join("rootfs");
    for name in ["tmp", "workspace", "proc", "dev"] {
        let meta = std::fs::symlink_metadata(unpacked.join(name)).unwrap();
        assert!(meta.is_dir(), "{name} is a directory in the cached root");
    }
    // The job's writes went to its workspace, not through the image's `workspace -> etc`.
    assert!(!unpacked.join("etc/marker").exists());
}

/// A registry that accepts connections and never answers cannot hold a runner: the pull runs
/// into the job's timeout, the job ends as timed out, and nothing is left in the cache.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_registry_runs_into_the_jobs_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let stall = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket); // read nothing, answer nothing
        }
    });
    let work = work_dir();
    let cache = work.path().join("images");
    let exec = executor(&cache, |c| c.images.insecure = vec![host.clone()]);
    let mut job = SandboxJob::new("echo never");
    job.timeout = std::time::Duration::from_secs(2);
    job.image =
        Some(ImageRef::parse(&format!("{host}/stalled@sha256:{}", "a".repeat(64))).unwrap());
    let started = std::time::Instant::now();
    let (done, log) = job.run_in(&work.path().join("run"), &exec).await;
    let text = log.to_text();
    assert_eq!(done.unwrap().reason, ExitReason::TimedOut, "{text}");
    assert!(text.contains("ran out while pulling"), "{text}");
    assert!(!text.contains("never\n"), "{text}");
    // Well before the 60 s read timeout: the job's own timeout stopped it.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let left: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "the cache holds {left:?}");
    stall.abort();
}

/// A job naming a registry that stalls for digest X cannot hold up another project's job
/// pulling X from a registry that answers: pulls are serialised per (registry, digest), not
/// per digest. (With one lock per digest the second job waited on the first until its own
/// timeout, never contacting its registry.)
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_registry_does_not_hold_up_the_same_digest_from_another() {
    let registry = TestRegistry::start();
    let image = busybox_image(&registry, "busybox", "honest").await;
    let digest = ImageRef::parse(&image.reference)
        .unwrap()
        .digest()
        .to_string();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalled_host = listener.local_addr().unwrap().to_string();
    let (contacted, stalled_pull_started) = tokio::sync::oneshot::channel::<()>();
    let stall = tokio::spawn(async move {
        let mut contacted = Some(contacted);
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket); // read nothing, answer nothing
            if let Some(tx) = contacted.take() {
                let _ = tx.send(());
            }
        }
    });

    let work = work_dir();
    let exec = executor(&work.path().join("images"), |c| {
        c.images.insecure = vec![registry.host.clone(), stalled_host.clone()];
    });
    let mut stalled = SandboxJob::new("echo never");
    stalled.timeout = std::time::Duration::from_secs(120);
    stalled.image = Some(ImageRef::parse(&format!("{stalled_host}/busybox@{digest}")).unwrap());
    let mut honest = SandboxJob::new("cat /etc/airlock-image > marker");
    honest.timeout = std::time::Duration::from_secs(20);
    honest.image = Some(ImageRef::parse(&image.reference).unwrap());

    let stalled_dir = work.path().join("stalled");
    let stalled_run = stalled.run_in(&stalled_dir, &exec);
    let honest_run = async {
        stalled_pull_started.await.unwrap();
        honest.run_in(&work.path().join("honest"), &exec).await
    };
    tokio::select! {
        (done, log) = honest_run => {
            let text = log.to_text();
            assert_eq!(done.unwrap().reason, ExitReason::Exited(0), "{text}");
            assert!(text.contains("pulling from"), "{text}");
            assert_eq!(read(work.path().join("honest/ws/marker")), "honest\n");
        }
        _ = stalled_run => panic!("the stalled pull ended first"),
    }
    stall.abort();
}

/// A busybox image with a file of `zeros_mib` MiB of zeros: a few hundred KiB compressed,
/// its real size only known once unpacked.
async fn image_with_zeros(registry: &TestRegistry, marker: &str, zeros_mib: u64) -> PushedImage {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    busybox_rootfs(&rootfs, marker).unwrap();
    let zeros = std::fs::File::create(rootfs.join("zeros")).unwrap();
    zeros.set_len(zeros_mib << 20).unwrap(); // sparse here; real bytes once unpacked
    push_rootfs(&registry.host, marker, marker, &rootfs)
        .await
        .unwrap()
}

fn cache_entries(cache: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn entry_name(image: &PushedImage) -> String {
    format!(
        "sha256-{}",
        ImageRef::parse(&image.reference).unwrap().digest_hex()
    )
}

/// Issue 19: a layer that inflates far beyond its compressed size is stopped at the entry that
/// would take the host below its disk reserve (on a real ext4 filesystem), nothing of it is
/// cached, and jobs go on. The cache makes room by removing unused images when that can make
/// the room (not when it cannot: a bomb does not empty it), never one a running job uses.
#[tokio::test(flavor = "multi_thread")]
async fn a_decompression_bomb_stops_at_the_hosts_reserve_and_the_cache_makes_room() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let registry = TestRegistry::start();
    // 256 MiB of host disk, 96 MiB of it the reserve.
    let disk = airlock_tests::sandbox::SmallHostDisk::ext4(256);
    let cache = disk.dir.path().join("images");
    let exec = &executor(&cache, |c| {
        c.images.insecure = vec![registry.host.clone()];
        c.host_reserve.bytes = 96 << 20;
    });
    let run = |image: &PushedImage, name: &str, script: &str| {
        let mut job = SandboxJob::new(script);
        job.image = Some(ImageRef::parse(&image.reference).unwrap());
        let at = disk.dir.path().join(name);
        async move {
            let (done, log) = job.run_in(&at, exec).await;
            (done, log.to_text())
        }
    };
    const PROBE: &str = "test -e /zeros && cat /etc/airlock-image";

    // Control: 40 MiB unpacked fits beside the reserve.
    let small = image_with_zeros(&registry, "small", 40).await;
    let (done, log) = run(&small, "small", PROBE).await;
    assert_eq!(done.unwrap().reason, ExitReason::Exited(0), "{log}");
    assert_eq!(cache_entries(&cache), [entry_name(&small)]);

    // 200 MiB from a layer of about 2 MiB: the declared sizes pass every first check.
    let bomb = image_with_zeros(&registry, "bomb", 200).await;
    assert!(bomb.layer_bytes < 4 << 20, "{} bytes", bomb.layer_bytes); // busybox, mostly
    let (done, log) = run(&bomb, "bomb", PROBE).await;
    let err = done.expect_err("the bomb is refused");
    assert!(
        err.to_string().contains("below its reserve of 96.0 MiB")
            && err.to_string().contains("'zeros'"),
        "{err}\n{log}"
    );
    // Removing `small` could not have made 200 MiB of room: it is kept.
    assert_eq!(cache_entries(&cache), [entry_name(&small)], "{log}");
    // What the bomb wrote is gone once its temporary directory is (and the journal commits).
    let fs = std::fs::File::open(disk.dir.path()).unwrap();
    nix::unistd::syncfs(&fs).unwrap();
    let free = HostReserve::free_bytes(disk.dir.path()).unwrap();
    assert!(
        free >= 96 << 20,
        "the reserve held: {} MiB free",
        free >> 20
    );

    // An image that fits only once `small` (unused) is gone: the cache makes the room.
    let fits_without_small = ((free - (96 << 20)) >> 20) + 15;
    let medium = image_with_zeros(&registry, "medium", fits_without_small).await;
    let (done, log) = run(&medium, "medium", PROBE).await;
    assert_eq!(done.unwrap().reason, ExitReason::Exited(0), "{log}");
    assert_eq!(cache_entries(&cache), [entry_name(&medium)], "{log}");

    // An image in use is never what goes: while a job runs on `medium`, an image that would
    // need its room is refused and `medium` stays.
    let mut holder = SandboxJob::new("touch started; while [ ! -e go ]; do sleep 0.1; done");
    holder.image = Some(ImageRef::parse(&medium.reference).unwrap());
    let holder_ws = disk.dir.path().join("holder/ws");
    let holding = tokio::spawn({
        let at = disk.dir.path().join("holder");
        let exec = executor(&cache, |c| {
            c.images.insecure = vec![registry.host.clone()];
            c.host_reserve.bytes = 96 << 20;
        });
        async move { holder.run_in(&at, &exec).await.0 }
    });
    while !holder_ws.join("started").exists() {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let other = image_with_zeros(&registry, "other", fits_without_small).await;
    let (done, log) = run(&other, "other", PROBE).await;
    assert!(done.is_err(), "{log}");
    assert_eq!(cache_entries(&cache), [entry_name(&medium)], "{log}");
    std::fs::write(holder_ws.join("go"), "").unwrap();
    assert_eq!(
        holding.await.unwrap().unwrap().reason,
        ExitReason::Exited(0)
    );
}

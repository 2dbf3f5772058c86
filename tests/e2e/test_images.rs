//! Test images built from host files and pushed to a real `docker-registry`:
//! skopeo reads them back by digest, the layer is deterministic, and the
//! Debian toolchain root filesystem runs the sample service's jobs.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use airlock_tests::images::{
    DEBIAN_MARKER, TOOLCHAIN_PACKAGES, busybox_rootfs, debian_rootfs, push_rootfs,
};
use airlock_tests::registry::TestRegistry;
use airlock_tests::sample::sample_service_dir;
use sha2::{Digest as _, Sha256};

/// Runs skopeo and returns its stdout, failing the test on a non-zero exit.
fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo not installed (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// What a layer entry looks like, for the checks below.
struct Entry {
    kind: tar::EntryType,
    mode: u32,
    link: Option<String>,
    data: Vec<u8>,
}

/// Reads a gzip layer with the tar crate, checking every header is
/// normalized, and returns the entries by name in archive order.
fn read_layer(path: &Path) -> Vec<(String, Entry)> {
    let file = std::fs::File::open(path).expect("open layer");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let header = entry.header().clone();
        let name = String::from_utf8(entry.path_bytes().into_owned()).expect("utf-8 name");
        assert!(
            !name.starts_with("./") && !name.starts_with('/'),
            "entry {name:?} is not relative"
        );
        assert_eq!(header.mtime().expect("mtime"), 0, "{name}: mtime");
        assert_eq!(header.uid().expect("uid"), 0, "{name}: uid");
        assert_eq!(header.gid().expect("gid"), 0, "{name}: gid");
        assert_eq!(
            header.username_bytes().unwrap_or_default(),
            b"",
            "{name}: uname"
        );
        assert_eq!(
            header.groupname_bytes().unwrap_or_default(),
            b"",
            "{name}: gname"
        );
        let link = entry
            .link_name()
            .expect("link name")
            .map(|l| l.to_string_lossy().into_owned());
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("read entry");
        out.push((
            name,
            Entry {
                kind: header.entry_type(),
                mode: header.mode().expect("mode"),
                link,
                data,
            },
        ));
    }
    out
}

#[tokio::test]
async fn busybox_image_is_pinned_deterministic_and_readable_by_skopeo() {
    let registry = TestRegistry::start();
    let work = tempfile::tempdir().expect("tempdir");

    let first_root = work.path().join("first");
    busybox_rootfs(&first_root, "alpha").expect("busybox rootfs");
    let first = push_rootfs(&registry.host, "airlock/busybox", "alpha", &first_root)
        .await
        .expect("push");
    assert_eq!(
        first.repository,
        format!("{}/airlock/busybox", registry.host)
    );
    assert_eq!(
        first.reference,
        format!("{}@{}", first.repository, first.digest)
    );
    assert!(first.layer_bytes > 0 && first.uncompressed_bytes > first.layer_bytes);

    // skopeo resolves the pinned reference to the same digest, one layer.
    let pinned = format!("docker://{}", first.reference);
    let inspect: serde_json::Value =
        serde_json::from_slice(&skopeo(&["inspect", "--tls-verify=false", &pinned]))
            .expect("inspect json");
    assert_eq!(inspect["Digest"], first.digest.as_str(), "{inspect:#}");
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
    let layers = inspect["Layers"].as_array().expect("Layers");
    assert_eq!(layers.len(), 1, "{inspect:#}");
    let layer_digest = layers[0].as_str().expect("layer digest").to_owned();
    // The raw manifest hashes to the digest; the tag points at it too.
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &pinned]);
    assert_eq!(format!("sha256:{:x}", Sha256::digest(&raw)), first.digest);
    let by_tag: serde_json::Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}:alpha", first.repository),
    ]))
    .expect("inspect json");
    assert_eq!(by_tag["Digest"], first.digest.as_str());

    // skopeo copies it (checking every blob's digest) into an OCI layout.
    let layout = work.path().join("layout");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &pinned,
        &format!("oci:{}:x", layout.display()),
    ]);
    let hex = layer_digest.strip_prefix("sha256:").expect("sha256");
    let blob = layout.join("blobs/sha256").join(hex);
    assert_eq!(
        std::fs::metadata(&blob).expect("layer blob").len(),
        first.layer_bytes
    );

    // The layer: sorted, normalized headers, modes and links kept.
    let entries = read_layer(&blob);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "entries are not sorted by path");
    let by_name: BTreeMap<&str, &Entry> = entries.iter().map(|(n, e)| (n.as_str(), e)).collect();
    let busybox = by_name["bin/busybox"];
    assert_eq!(busybox.kind, tar::EntryType::Regular);
    assert_eq!(busybox.mode, 0o755);
    for applet in [
        "sh",
        "cat",
        "env",
        "sha256sum",
        "mkdir",
        "cp",
        "tar",
        "gzip",
    ] {
        let link = by_name[format!("bin/{applet}").as_str()];
        assert_eq!(link.kind, tar::EntryType::Symlink, "bin/{applet}");
        assert_eq!(link.link.as_deref(), Some("busybox"), "bin/{applet}");
    }
    assert_eq!(by_name["usr/bin/env"].link.as_deref(), Some("/bin/busybox"));
    assert_eq!(by_name["tmp/"].kind, tar::EntryType::Directory);
    assert_eq!(by_name["tmp/"].mode, 0o1777);
    for dir in ["usr/", "usr/bin/", "proc/", "dev/", "workspace/"] {
        assert_eq!(by_name[dir].kind, tar::EntryType::Directory, "{dir}");
    }
    assert_eq!(by_name["etc/airlock-image"].data, b"alpha\n");
    let passwd = String::from_utf8_lossy(&by_name["etc/passwd"].data).into_owned();
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
    assert!(passwd.contains("nobody:x:65534:65534:"), "{passwd}");

    // GNU tar unpacks it, and the unpacked busybox runs.
    let unpacked = work.path().join("unpacked");
    std::fs::create_dir(&unpacked).expect("mkdir");
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&blob)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .expect("tar");
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(unpacked.join("etc/airlock-image")).expect("marker"),
        "alpha\n"
    );
    let out = Command::new(unpacked.join("bin/sh"))
        .args(["-c", "echo ok"])
        .output()
        .expect("unpacked busybox sh");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    assert_eq!(
        std::fs::metadata(unpacked.join("tmp"))
            .expect("tmp")
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );

    // Determinism: a fresh tree with the same marker, built later in another
    // directory (other mtimes, other inode order), gives the same digest.
    let second_root = work.path().join("second");
    busybox_rootfs(&second_root, "alpha").expect("busybox rootfs");
    let second = push_rootfs(&registry.host, "airlock/busybox", "again", &second_root)
        .await
        .expect("push again");
    assert_eq!(second, first);

    // A different marker is a different image.
    let other_root = work.path().join("other");
    busybox_rootfs(&other_root, "beta").expect("busybox rootfs");
    let other = push_rootfs(&registry.host, "airlock/busybox", "beta", &other_root)
        .await
        .expect("push other");
    assert_ne!(other.digest, first.digest);
}

#[test]
fn toolchain_rootfs_builds_the_sample_service_in_a_chroot() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: chroot needs root, and this test runs as a normal user");
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path().join("rootfs");
    let built = debian_rootfs(&root, TOOLCHAIN_PACKAGES).expect("debian rootfs");

    let mut sorted = built.packages.clone();
    sorted.sort();
    assert_eq!(built.packages, sorted);
    for wanted in TOOLCHAIN_PACKAGES
        .iter()
        .chain(&["linux-libc-dev", "libc6"])
    {
        assert!(
            built
                .packages
                .iter()
                .any(|p| p.starts_with(&format!("{wanted}="))),
            "{wanted} missing from {:?}",
            built.packages
        );
    }
    assert!(built.bytes > 50 << 20, "{} bytes", built.bytes);
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("usr/bin/cc", "gcc"),
        ("usr/bin/sh", "dash"),
    ] {
        assert_eq!(
            std::fs::read_link(root.join(link)).expect(link),
            Path::new(target),
            "{link}"
        );
    }
    assert!(!root.join("usr/share/doc").exists());
    assert!(!root.join("usr/share/man").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/airlock-image")).expect("marker"),
        format!("{DEBIAN_MARKER}\n")
    );

    // The sample service's own jobs, in order, as the executor would run them.
    let workspace = root.join("workspace");
    let sample = sample_service_dir();
    for rel in ["src/greet.c", "tests/run.sh"] {
        let dest = workspace.join(rel);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::copy(sample.join(rel), &dest).expect("copy sample file");
    }
    let pipeline = airlock_pipeline::spec::load(&sample.join(".pipeline/config.yaml"))
        .expect("sample pipeline");
    let mut logs = String::new();
    for job in ["test", "build", "publish"] {
        let argv = pipeline.job(job).expect(job).action.argv();
        let out = Command::new("/usr/sbin/chroot")
            .arg(&root)
            .args(["/bin/sh", "-c", "cd /workspace && exec \"$@\"", "sh"])
            .args(&argv)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .expect("chroot");
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "job {job} failed in the chroot:\n{log}"
        );
        logs.push_str(&log);
    }
    assert!(logs.contains("ok   greet Airlock"), "{logs}");
    assert!(logs.contains("greet 1.0.0"), "{logs}");
    assert!(workspace.join("dist/greet.tar.gz").is_file());

    // And the plainest static link.
    std::fs::write(root.join("tmp/t.c"), "int main(){return 0;}\n").expect("write t.c");
    let out = Command::new("/usr/sbin/chroot")
        .arg(&root)
        .args(["/bin/sh", "-c", "cd /tmp && cc -static -o t t.c && ./t"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("chroot");
    assert!(
        out.status.success(),
        "cc -static in the chroot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

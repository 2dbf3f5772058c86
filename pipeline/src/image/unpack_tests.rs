#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::os::unix::fs::PermissionsExt as _;

use super::*;

/// One tar entry, written with raw header bytes so hostile names can be made.
struct Raw<'a> {
    name: &'a [u8],
    kind: tar::EntryType,
    mode: u32,
    data: &'a [u8],
    link: &'a [u8],
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind: tar::EntryType::Regular,
        mode: 0o644,
        data,
        link: b"",
    }
}
fn dir(name: &str) -> Raw<'_> {
    Raw {
        name: name.as_bytes(),
        kind: tar::EntryType::Directory,
        mode: 0o755,
        data: b"",
        link: b"",
    }
}
fn symlink<'a>(name: &'a str, target: &'a str) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind: tar::EntryType::Symlink,
        mode: 0o777,
        data: b"",
        link: target.as_bytes(),
    }
}

fn tar_of(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut header = tar::Header::new_gnu();
        {
            let gnu = header.as_gnu_mut().unwrap();
            gnu.name[..e.name.len()].copy_from_slice(e.name);
            gnu.linkname[..e.link.len()].copy_from_slice(e.link);
        }
        header.set_entry_type(e.kind);
        header.set_mode(e.mode);
        header.set_size(e.data.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append(&header, e.data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Writes `tar` gzipped as a verified blob and returns it with its descriptor.
fn layer(dir: &Path, tar: &[u8]) -> (File, LayerBlob) {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(tar).unwrap();
    let blob = gz.finish().unwrap();
    let path = dir.join(format!(
        "blob-{}",
        super::super::fetch::sha256_digest(&blob)
    ));
    std::fs::write(&path, &blob).unwrap();
    let desc = LayerBlob {
        digest: super::super::fetch::sha256_digest(&blob),
        size: blob.len() as u64,
        compression: Compression::Gzip,
        diff_id: super::super::fetch::sha256_digest(tar),
    };
    (File::open(&path).unwrap(), desc)
}

fn apply(root: &TreeRoot, scratch: &Path, entries: &[Raw<'_>]) -> Result<LayerStats, ImageError> {
    let (blob, desc) = layer(scratch, &tar_of(entries));
    apply_layer(root, blob, &desc, &mut UnpackBudget::new(1 << 30, 100_000))
}

fn setup() -> (tempfile::TempDir, TreeRoot, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let rootfs = temp.path().join("rootfs");
    let scratch = temp.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let root = TreeRoot::create(&rootfs, 0o755).unwrap();
    (temp, root, scratch)
}

fn exists(root: &TreeRoot, rel: &str) -> bool {
    root.exists(Path::new(rel)).unwrap()
}

#[test]
fn whiteouts_and_opaque_directories_hide_lower_layers_only() {
    let (_t, root, scratch) = setup();
    apply(
        &root,
        &scratch,
        &[
            dir("a"),
            file("a/x", b"1"),
            file("a/sub/deep", b"2"),
            file("b/z", b"3"),
            file("c", b"4"),
            file("keep", b"5"),
        ],
    )
    .unwrap();
    let stats = apply(
        &root,
        &scratch,
        &[
            file("a/new", b"6"),
            file("a/.wh..wh..opq", b""),
            file(".wh.b", b""),
            dir("c"),
            file("c/inside", b"7"),
        ],
    )
    .unwrap();
    assert!(
        exists(&root, "a/new"),
        "this layer's own file in the opaque dir stays"
    );
    for gone in ["a/x", "a/sub", "b"] {
        assert!(!exists(&root, gone), "{gone} should be hidden");
    }
    assert_eq!(root.metadata(Path::new("c")).unwrap().kind, EntryKind::Dir);
    assert!(exists(&root, "c/inside") && exists(&root, "keep"));
    assert!(stats.hidden >= 3, "{stats:?}");
}

#[test]
fn setuid_bits_are_dropped_and_devices_skipped() {
    let (_t, root, scratch) = setup();
    let mut suid = file("bin/su", b"#!/bin/sh\n");
    suid.mode = 0o4755;
    let dev = Raw {
        name: b"dev/sda",
        kind: tar::EntryType::Block,
        mode: 0o666,
        data: b"",
        link: b"",
    };
    let stats = apply(&root, &scratch, &[suid, dev]).unwrap();
    assert_eq!(root.metadata(Path::new("bin/su")).unwrap().mode, 0o755);
    assert!(!exists(&root, "dev/sda"));
    assert_eq!(stats.skipped_special, 1);
}

#[test]
fn links_are_kept_as_links_and_hard_links_stay_inside() {
    let (_t, root, scratch) = setup();
    let hard = Raw {
        name: b"usr/bin/b",
        kind: tar::EntryType::Link,
        mode: 0o755,
        data: b"",
        link: b"usr/bin/a",
    };
    apply(
        &root,
        &scratch,
        &[file("usr/bin/a", b"tool"), hard, symlink("bin", "/usr/bin")],
    )
    .unwrap();
    assert_eq!(root.read_link(Path::new("bin")).unwrap(), "/usr/bin");
    let mut text = String::new();
    root.open_file(Path::new("usr/bin/b"))
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "tool");
}

/// Each hostile layer is refused, and the host file it aims at is untouched. The control shows
/// that a plain path write through the same planted link does reach the host file.
#[test]
fn hostile_layers_are_refused_and_change_nothing_outside() {
    let (temp, root, scratch) = setup();
    let victim_dir = temp.path().join("host-etc");
    std::fs::create_dir_all(&victim_dir).unwrap();
    let victim = victim_dir.join("passwd");
    std::fs::write(&victim, "host\n").unwrap();
    let link_to_host = victim_dir.display().to_string();
    apply(&root, &scratch, &[symlink("etc", &link_to_host)]).unwrap();

    let escape_hard = Raw {
        name: b"x",
        kind: tar::EntryType::Link,
        mode: 0o644,
        data: b"",
        link: b"../host-etc/passwd",
    };
    let abs_hard = Raw {
        name: b"y",
        kind: tar::EntryType::Link,
        mode: 0o644,
        data: b"",
        link: b"/etc/passwd",
    };
    let cases: Vec<(&str, Vec<Raw<'_>>, &str)> = vec![
        (
            "write through a link",
            vec![file("etc/passwd", b"owned\n")],
            "symbolic link",
        ),
        (
            "absolute path",
            vec![Raw {
                name: b"/etc/passwd",
                ..file("", b"owned\n")
            }],
            "absolute",
        ),
        (
            "climbing path",
            vec![file("a/../../host-etc/passwd", b"owned\n")],
            "'..'",
        ),
        ("hard link out", vec![escape_hard], "'..'"),
        ("hard link through a link", vec![abs_hard], "absolute"),
        (
            "whiteout through a link",
            vec![file("etc/.wh.passwd", b"")],
            "symbolic link",
        ),
    ];
    for (what, entries, expected) in cases {
        let err = apply(&root, &scratch, &entries).expect_err(what);
        assert!(err.to_string().contains(expected), "{what}: {err}");
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "host\n",
            "{what}"
        );
    }
    // Control: a plain path write through the planted link lands on the host file.
    std::fs::write(root.path().join("etc/passwd"), "owned\n").unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "owned\n");
}

#[test]
fn a_wrong_diff_id_and_an_inflating_layer_are_refused() {
    let (_t, root, scratch) = setup();
    let (blob, mut desc) = layer(&scratch, &tar_of(&[file("a", b"1")]));
    desc.diff_id = format!("sha256:{}", "0".repeat(64));
    let err =
        apply_layer(&root, blob, &desc, &mut UnpackBudget::new(1 << 20, 100)).expect_err("diff_id");
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");

    let big = vec![0u8; 4096];
    let (blob, desc) = layer(&scratch, &tar_of(&[file("big", &big)]));
    let err =
        apply_layer(&root, blob, &desc, &mut UnpackBudget::new(1000, 100)).expect_err("budget");
    assert!(matches!(err, ImageError::TooLarge { .. }), "{err}");
    // Control: the same layer within budget applies.
    let (blob, desc) = layer(&scratch, &tar_of(&[file("big2", &big)]));
    apply_layer(&root, blob, &desc, &mut UnpackBudget::new(8192, 100)).unwrap();
    assert_eq!(
        std::fs::metadata(root.path().join("big2"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
}

/// A tar written by the tar crate's own builder (GNU long names for long paths, PAX records).
fn built(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    f(&mut builder);
    builder.into_inner().unwrap()
}

fn apply_tar(root: &TreeRoot, scratch: &Path, tar: &[u8]) -> Result<LayerStats, ImageError> {
    let (blob, desc) = layer(scratch, tar);
    apply_layer(root, blob, &desc, &mut UnpackBudget::new(1 << 30, 100_000))
}

fn data_header(size: u64, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(size);
    header
}

#[test]
fn long_names_and_pax_paths_apply_but_oversized_extension_headers_are_refused() {
    let (_t, root, scratch) = setup();
    let long = format!("deep/{}/file", "n".repeat(200));
    let pax_name = format!("pax/{}", "p".repeat(150));
    let tar = built(|b| {
        b.append_data(
            &mut data_header(2, tar::EntryType::Regular),
            &long,
            &b"hi"[..],
        )
        .unwrap();
        b.append_pax_extensions([("path", pax_name.as_bytes())])
            .unwrap();
        b.append_data(
            &mut data_header(1, tar::EntryType::Regular),
            "short",
            &b"x"[..],
        )
        .unwrap();
    });
    apply_tar(&root, &scratch, &tar).unwrap();
    assert!(exists(&root, &long), "GNU long name applied");
    assert!(
        exists(&root, &pax_name),
        "PAX path overrides the header's name"
    );
    assert!(!exists(&root, "short"));

    // A long-name header declaring more than the cap is refused before its body is buffered.
    let bomb = vec![b'a'; MAX_EXTENSION_BYTES as usize + 1];
    let tar = built(|b| {
        let mut header = data_header(bomb.len() as u64, tar::EntryType::GNULongName);
        header.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        header.set_cksum();
        b.append(&header, &bomb[..]).unwrap();
        b.append_data(
            &mut data_header(1, tar::EntryType::Regular),
            "after",
            &b"x"[..],
        )
        .unwrap();
    });
    let err = apply_tar(&root, &scratch, &tar).expect_err("long-name bomb");
    assert!(err.to_string().contains("extension header"), "{err}");
    assert!(!exists(&root, "after"));

    // A PAX size would move where the next body ends: refused, not guessed.
    let tar = built(|b| {
        b.append_pax_extensions([("size", &b"1"[..])]).unwrap();
        b.append_data(
            &mut data_header(1, tar::EntryType::Regular),
            "sized",
            &b"x"[..],
        )
        .unwrap();
    });
    let err = apply_tar(&root, &scratch, &tar).expect_err("pax size");
    assert!(err.to_string().contains("'size'"), "{err}");
}

#[test]
fn declared_bodies_and_trailing_bytes_count_against_the_budget() {
    let (_t, root, scratch) = setup();
    // A directory "containing" 64 KiB the reader would otherwise skip through.
    let tar = built(|b| {
        let header = data_header(64 << 10, tar::EntryType::Directory);
        b.append_data(&mut header.clone(), "d", &vec![0u8; 64 << 10][..])
            .unwrap();
    });
    let (blob, desc) = layer(&scratch, &tar);
    let err = apply_layer(&root, blob, &desc, &mut UnpackBudget::new(32 << 10, 100))
        .expect_err("directory body over budget");
    assert!(matches!(err, ImageError::TooLarge { .. }), "{err}");
    let (blob, desc) = layer(&scratch, &tar);
    apply_layer(&root, blob, &desc, &mut UnpackBudget::new(128 << 10, 100)).unwrap();

    // Megabytes after the end-of-archive blocks (hashed into the diff_id all the same).
    let mut padded = built(|b| {
        b.append_data(&mut data_header(1, tar::EntryType::Regular), "f", &b"x"[..])
            .unwrap();
    });
    let end = padded.len();
    padded.resize(end + (2 << 20), 0);
    let err = apply_tar(&root, &scratch, &padded).expect_err("trailing megabytes");
    assert!(err.to_string().contains("after the end"), "{err}");
    // Control: a record's worth of padding is normal.
    padded.truncate(end + 10240);
    apply_tar(&root, &scratch, &padded).unwrap();

    // Whiteouts are entries too.
    let whiteouts = [file(".wh.a", b""), file(".wh.b", b""), file(".wh.c", b"")];
    let (blob, desc) = layer(&scratch, &tar_of(&whiteouts));
    let err =
        apply_layer(&root, blob, &desc, &mut UnpackBudget::new(1 << 20, 2)).expect_err("entries");
    assert!(err.to_string().contains("entries"), "{err}");
}

#[test]
fn whiteouts_never_hide_this_layers_own_entries_and_must_name_one() {
    let (_t, root, scratch) = setup();
    apply(&root, &scratch, &[file("a/old", b"1"), file("b", b"2")]).unwrap();
    apply(
        &root,
        &scratch,
        &[file("a/new", b"3"), file(".wh.a", b""), file(".wh.b", b"")],
    )
    .unwrap();
    assert!(exists(&root, "a/new"), "this layer's own entry stays");
    assert!(!exists(&root, "a/old") && !exists(&root, "b"));
    for name in [".wh.", "x/.wh.."] {
        let err = apply(&root, &scratch, &[file(name, b"")]).expect_err(name);
        assert!(err.to_string().contains("names no entry"), "{name}: {err}");
    }
    assert!(exists(&root, "a/new"));
}

#[test]
fn shared_write_and_sticky_bits_are_dropped() {
    let (_t, root, scratch) = setup();
    let mut open_file = file("open", b"x");
    open_file.mode = 0o666;
    let mut tmp = dir("tmp");
    tmp.mode = 0o1777;
    apply(&root, &scratch, &[open_file, tmp]).unwrap();
    assert_eq!(root.metadata(Path::new("open")).unwrap().mode, 0o644);
    assert_eq!(root.metadata(Path::new("tmp")).unwrap().mode, 0o755);
}

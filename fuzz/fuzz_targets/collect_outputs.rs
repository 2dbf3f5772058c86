//! Fuzz target: collecting a job's outputs from a hostile workspace, storing them, and copying
//! them out into a hostile destination tree.
//!
//! The job controls its workspace completely: it can plant directories, files, links with any
//! target (absolute ones into the host, `..`-climbing ones, dangling ones, in-tree ones), FIFOs,
//! sockets and hard links to host files, at any path. The pipeline file controls the output
//! patterns. The host then runs [`outputs::collect`], [`ContentStore::put`] for every file
//! collected, and [`ContentStore::copy_out`] into a second tree that is just as hostile (it
//! stands for the next job's workspace, prepared from an untrusted source tree), and
//! [`TreeRoot::copy_into`] (workspace preparation's copy of a source tree).
//!
//! Layout, per iteration, in the per-process base directory (see `airlock_fuzz::Fixture`):
//! `host/` (sentinels, never to be touched), `ws/` (the workspace), `out/` (the copy-out
//! destination), `store/` (the content store) and `copy/` (a `copy_into` of `ws/`).
#![no_main]
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use airlock_fuzz::{Fixture, Node, lstat_beneath, name, place, remove, snapshot};
use airlock_pipeline::outputs::{self, ContentStore, OutputFile};
use airlock_pipeline::tree::TreeRoot;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest as _, Sha256};

/// At most this many tree operations and patterns per input: small trees reach every code
/// path, and keep each iteration well under a millisecond.
const MAX_OPS: usize = 24;
const MAX_PATTERNS: usize = 6;
const MAX_DEPTH: usize = 4;

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
    patterns: Vec<Pattern>,
}

/// Which tree an operation plants something in.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Side {
    /// The job's workspace, which outputs are collected from.
    Workspace,
    /// The destination `copy_out` writes into.
    Out,
    /// Both, at the same path.
    Both,
}

/// One thing the job plants. Paths are bytes, each picking a name from `airlock_fuzz::NAMES`.
#[derive(Arbitrary, Debug)]
enum Op {
    Dir {
        side: Side,
        path: Vec<u8>,
    },
    File {
        side: Side,
        path: Vec<u8>,
        content: Vec<u8>,
        executable: bool,
    },
    Link {
        side: Side,
        path: Vec<u8>,
        target: Target,
    },
    Fifo {
        side: Side,
        path: Vec<u8>,
    },
    Socket {
        side: Side,
        path: Vec<u8>,
    },
    /// A hard link to a host file: reading it is the job reading what it already could, but
    /// writing through it would be the host writing its own file.
    HardLinkToHost {
        side: Side,
        path: Vec<u8>,
        entry: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum Target {
    /// The absolute path of a host entry.
    HostAbsolute(u8),
    /// `../` repeated, then `host/<entry>`: the host sibling reached by climbing.
    ClimbToHost {
        ups: u8,
        entry: u8,
    },
    /// `../` repeated, then names.
    Climb {
        ups: u8,
        rest: Vec<u8>,
    },
    /// Names only: a link inside the tree.
    InTree(Vec<u8>),
    /// A dangling absolute link next to the base directory.
    DanglingOutside,
    /// A dangling relative link climbing out to the base directory.
    DanglingClimb,
    Root,
    Dot,
    /// Anything (NUL bytes dropped; links cannot hold them).
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Pattern {
    Literal {
        parts: Vec<LiteralPart>,
        dot_slash: bool,
        trailing_slash: bool,
        absolute: bool,
    },
    Glob(Vec<GlobPart>),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum LiteralPart {
    Name(u8),
    Dot,
    DotDot,
    Empty,
}

#[derive(Arbitrary, Debug)]
enum GlobPart {
    Name(u8),
    Star,
    DoubleStar,
    Question,
    Class,
    Alternatives,
    StarSuffix(u8),
}

fn rel_path(bytes: &[u8]) -> Vec<&'static str> {
    bytes.iter().take(MAX_DEPTH).map(|b| name(*b)).collect()
}

fn target_text(fixture: &Fixture, target: &Target) -> PathBuf {
    match target {
        Target::HostAbsolute(entry) => fixture.host_entry(*entry),
        Target::ClimbToHost { ups, entry } => {
            let mut path: PathBuf = std::iter::repeat_n("..", usize::from(*ups % 5)).collect();
            path.push("host");
            if let Ok(rel) = fixture.host_entry(*entry).strip_prefix(&fixture.host) {
                path.push(rel);
            }
            path
        }
        Target::Climb { ups, rest } => {
            let mut path: PathBuf = std::iter::repeat_n("..", usize::from(*ups % 5)).collect();
            path.extend(rel_path(rest));
            if path.as_os_str().is_empty() {
                path.push("..");
            }
            path
        }
        Target::InTree(names) => {
            let path: PathBuf = rel_path(names).into_iter().collect();
            if path.as_os_str().is_empty() {
                PathBuf::from("a")
            } else {
                path
            }
        }
        Target::DanglingOutside => fixture
            .base
            .parent()
            .unwrap_or(&fixture.base)
            .join("escaped"),
        Target::DanglingClimb => PathBuf::from("../escaped"),
        Target::Root => PathBuf::from("/"),
        Target::Dot => PathBuf::from("."),
        Target::Raw(bytes) => {
            let bytes: Vec<u8> = bytes.iter().copied().filter(|b| *b != 0).take(64).collect();
            if bytes.is_empty() {
                PathBuf::from("x")
            } else {
                PathBuf::from(std::ffi::OsString::from(
                    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&bytes),
                ))
            }
        }
    }
}

fn pattern_text(pattern: &Pattern) -> String {
    match pattern {
        Pattern::Literal {
            parts,
            dot_slash,
            trailing_slash,
            absolute,
        } => {
            let parts: Vec<&str> = parts
                .iter()
                .take(MAX_DEPTH + 1)
                .map(|p| match p {
                    LiteralPart::Name(b) => name(*b),
                    LiteralPart::Dot => ".",
                    LiteralPart::DotDot => "..",
                    LiteralPart::Empty => "",
                })
                .collect();
            let mut text = parts.join("/");
            if *absolute {
                text.insert(0, '/');
            } else if *dot_slash {
                text.insert_str(0, "./");
            }
            if *trailing_slash {
                text.push('/');
            }
            text
        }
        Pattern::Glob(parts) => parts
            .iter()
            .take(MAX_DEPTH + 1)
            .map(|p| match p {
                GlobPart::Name(b) => name(*b).to_string(),
                GlobPart::Star => "*".into(),
                GlobPart::DoubleStar => "**".into(),
                GlobPart::Question => "?".into(),
                GlobPart::Class => "[ab]*".into(),
                GlobPart::Alternatives => "{a,dist,x.txt}".into(),
                GlobPart::StarSuffix(b) => format!("*{}", name(*b)),
            })
            .collect::<Vec<_>>()
            .join("/"),
        Pattern::Raw(text) => text.chars().take(32).collect(),
    }
}

/// Plants the input's entries. The harness never follows the links it plants (see
/// `airlock_fuzz::place`).
fn plant(fixture: &Fixture, ops: &[Op], ws: &Path, out: &Path) {
    for op in ops.iter().take(MAX_OPS) {
        let (side, path) = match op {
            Op::Dir { side, path }
            | Op::File { side, path, .. }
            | Op::Link { side, path, .. }
            | Op::Fifo { side, path }
            | Op::Socket { side, path }
            | Op::HardLinkToHost { side, path, .. } => (*side, rel_path(path)),
        };
        let roots: &[&Path] = match side {
            Side::Workspace => &[ws],
            Side::Out => &[out],
            Side::Both => &[ws, out],
        };
        for root in roots {
            place(root, &path, |at| match op {
                Op::Dir { .. } => fs::create_dir(at),
                Op::File {
                    content,
                    executable,
                    ..
                } => {
                    fs::write(at, &content[..content.len().min(256)])?;
                    let mode = if *executable { 0o755 } else { 0o644 };
                    fs::set_permissions(at, fs::Permissions::from_mode(mode))
                }
                Op::Link { target, .. } => {
                    std::os::unix::fs::symlink(target_text(fixture, target), at)
                }
                Op::Fifo { .. } => {
                    nix::unistd::mkfifo(at, nix::sys::stat::Mode::from_bits_truncate(0o644))
                        .map_err(std::io::Error::from)
                }
                Op::Socket { .. } => std::os::unix::net::UnixListener::bind(at).map(drop),
                Op::HardLinkToHost { entry, .. } => {
                    let host_file = fixture.host_entry(*entry);
                    if fs::symlink_metadata(&host_file).is_ok_and(|m| m.is_file()) {
                        fs::hard_link(host_file, at)
                    } else {
                        Ok(())
                    }
                }
            });
        }
    }
}

/// Whether one of the patterns asks for `path` (as `collect` reads patterns: `./` and a trailing
/// `/` ignored, a literal directory meaning everything beneath it).
fn claimed(path: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|pattern| {
        let pattern = pattern.trim_start_matches("./").trim_end_matches('/');
        if pattern.contains(['*', '?', '[', '{']) {
            globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .is_ok_and(|glob| glob.compile_matcher().is_match(path))
        } else {
            let literal: PathBuf = Path::new(pattern)
                .components()
                .filter(|c| !matches!(c, Component::CurDir))
                .collect();
            Path::new(path).starts_with(literal)
        }
    })
}

/// The invariants on one collected file, before it is stored.
///
/// - The path is relative, made of plain names only: it is joined onto the next job's
///   workspace by `copy_out`, where `..` or a leading `/` would write outside it.
/// - Every parent is a real directory and the file itself a regular file, checked again with
///   `lstat` here: an output reached through a link would be a host file published as the job's
///   output (a secret leaked into the artifact store).
/// - The digest and size are those of the bytes really there, and the execute bit is reported
///   truthfully: the store is content-addressed, and consumers verify artifacts by this digest.
/// - A pattern asked for it: collection never picks up files nobody declared.
fn check_collected(ws: &Path, file: &OutputFile, patterns: &[String], input: &Input) {
    let meta = lstat_beneath(ws, Path::new(&file.path)).unwrap_or_else(|e| {
        panic!(
            "collected {:?} is not a plain path to a regular file reached without links: {e}\ninput: {input:?}",
            file.path
        )
    });
    assert!(
        meta.is_file(),
        "collected {:?} is not a regular file\ninput: {input:?}",
        file.path
    );
    let bytes = fs::read(ws.join(&file.path)).expect("read a collected file");
    assert_eq!(
        file.sha256,
        hex::encode(Sha256::digest(&bytes)),
        "reported digest of {:?} is wrong\ninput: {input:?}",
        file.path
    );
    assert_eq!(
        file.size,
        bytes.len() as u64,
        "reported size of {:?}",
        file.path
    );
    assert_eq!(
        file.executable,
        meta.permissions().mode() & 0o111 != 0,
        "reported execute bit of {:?}",
        file.path
    );
    assert!(
        claimed(&file.path, patterns),
        "collected {:?}, which no pattern asks for\npatterns: {patterns:?}\ninput: {input:?}",
        file.path
    );
}

/// `copy_into` must reproduce the tree: directories, files (bytes and permission bits) and
/// links (verbatim, never followed); FIFOs and sockets are left out. A copy that followed a
/// link would show the host's bytes, or fail on a FIFO.
fn check_copy(ws: &BTreeMap<PathBuf, Node>, copy: &BTreeMap<PathBuf, Node>, input: &Input) {
    let comparable = |tree: &BTreeMap<PathBuf, Node>| -> BTreeMap<PathBuf, Node> {
        tree.iter()
            .filter(|(_, node)| !matches!(node, Node::Other))
            .map(|(path, node)| {
                let node = match node {
                    Node::File { mode, bytes, .. } => Node::File {
                        mode: mode & 0o777,
                        ino: 0,
                        bytes: bytes.clone(),
                    },
                    Node::Dir { mode } => Node::Dir { mode: mode & 0o777 },
                    other => other.clone(),
                };
                (path.clone(), node)
            })
            .collect()
    };
    let (want, got) = (comparable(ws), comparable(copy));
    assert!(
        want == got,
        "copy_into did not reproduce the tree\nwant: {want:?}\ngot: {got:?}\ninput: {input:?}"
    );
}

fn run(input: &Input) {
    let fixture = Fixture::get();
    let ws = fixture.base.join("ws");
    let out = fixture.base.join("out");
    let store_dir = fixture.base.join("store");
    let copy = fixture.base.join("copy");
    for dir in [&ws, &out, &store_dir, &copy] {
        remove(dir);
    }
    for dir in [&ws, &out, &store_dir] {
        fs::create_dir(dir).expect("create an iteration's directory");
    }
    plant(fixture, &input.ops, &ws, &out);
    let ws_before = snapshot(&ws);

    let mut patterns: Vec<String> = input
        .patterns
        .iter()
        .take(MAX_PATTERNS)
        .map(pattern_text)
        .collect();
    if patterns.is_empty() {
        // No pattern collects nothing, trivially: ask for the whole workspace instead.
        patterns.push(".".into());
    }
    let result = outputs::collect(&ws, &patterns);
    let mut copied_out = 0usize;

    if let Ok(files) = &result {
        // Sorted and without duplicates: the pass record lists each output once.
        assert!(
            files.windows(2).all(|w| w[0].path < w[1].path),
            "outputs not sorted and unique: {files:?}"
        );
        let ws_root = TreeRoot::open(&ws).expect("open the workspace");
        let out_root = TreeRoot::open(&out).expect("open the destination");
        let store = ContentStore::new(&store_dir);
        for file in files {
            check_collected(&ws, file, &patterns, input);
            // Storing a file that was just collected, unchanged, must work, and the blob must
            // be exactly the bytes the digest names (the store is trusted by its names).
            let blob = store.put(&ws_root, file).unwrap_or_else(|e| {
                panic!(
                    "storing collected {:?} failed: {e}\ninput: {input:?}",
                    file.path
                )
            });
            assert_eq!(blob, store.blob_path(&file.sha256));
            let stored = fs::read(&blob).expect("read a stored blob");
            assert_eq!(
                hex::encode(Sha256::digest(&stored)),
                file.sha256,
                "the stored blob is not what its digest names\ninput: {input:?}"
            );
            // Copying out into a hostile tree may be refused (a link or a directory on the
            // way), but when it succeeds the file is where it should be, a fresh regular file
            // with the blob's bytes, reached without links.
            if store
                .copy_out(file, &out_root, Path::new(&file.path))
                .is_ok()
            {
                copied_out += 1;
                let meta = lstat_beneath(&out, Path::new(&file.path)).unwrap_or_else(|e| {
                    panic!(
                        "copy_out of {:?} succeeded but: {e}\ninput: {input:?}",
                        file.path
                    )
                });
                assert!(
                    meta.is_file(),
                    "copy_out of {:?} left no regular file",
                    file.path
                );
                assert_eq!(
                    fs::read(out.join(&file.path)).expect("read a copied-out file"),
                    stored,
                    "copy_out of {:?} wrote other bytes\ninput: {input:?}",
                    file.path
                );
                let mode = if file.executable { 0o755 } else { 0o644 };
                assert_eq!(
                    meta.permissions().mode() & 0o7777,
                    mode,
                    "mode of {:?}",
                    file.path
                );
            }
        }
    }

    if airlock_fuzz::verbose() {
        match &result {
            Ok(files) => eprintln!("outcome: ok {} files, {copied_out} copied out", files.len()),
            Err(e) => {
                let variant = format!("{e:?}");
                let variant = variant.split(['(', ' ', '{']).next().unwrap_or("");
                eprintln!("outcome: err {variant}: {e}");
            }
        }
    }

    // The store holds only complete blobs, each named by its own digest: no temporary file is
    // left behind, and nothing else was written there.
    for (rel, node) in snapshot(&store_dir) {
        match node {
            Node::Dir { .. } => assert_eq!(rel, Path::new("sha256"), "stray store directory"),
            Node::File { bytes, .. } => {
                let digest = hex::encode(Sha256::digest(&bytes));
                assert_eq!(
                    rel,
                    Path::new("sha256").join(&digest),
                    "a store file is not named by its digest\ninput: {input:?}"
                );
            }
            other => panic!("the store holds {rel:?}: {other:?}\ninput: {input:?}"),
        }
    }

    // Workspace preparation copies a tree with `copy_into`: it must reproduce it exactly.
    let copy_root = TreeRoot::create(&copy, 0o755).expect("create the copy's root");
    let ws_root = TreeRoot::open(&ws).expect("open the workspace");
    if let Err(e) = ws_root.copy_into(&copy_root) {
        panic!("copy_into a fresh directory failed: {e}\ninput: {input:?}");
    }
    check_copy(&ws_before, &snapshot(&copy), input);

    // Collection, storing and copying out only ever read the workspace.
    assert!(
        snapshot(&ws) == ws_before,
        "the workspace changed while its outputs were collected\ninput: {input:?}"
    );
    fixture.assert_untouched(&["ws", "out", "store", "copy"], input);
}

fuzz_target!(|input: Input| {
    run(&input);
});

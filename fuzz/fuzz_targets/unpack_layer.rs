//! Fuzz target: applying a hostile image's layers onto a root filesystem with [`apply_layer`].
//!
//! Whoever opens a change on the public CI picks the job's image, so every byte of every layer
//! is theirs: entry names (absolute, `..`, empty, `.`, doubled slashes, NUL, longer than a
//! header holds, whiteouts `.wh.NAME` and `.wh..wh..opq` anywhere, the absolute path of the
//! host's own directory), entry types (files, directories, symbolic and hard links, devices,
//! FIFOs, sparse files, any type byte), link targets (absolute into the host, `../host/...`,
//! through links an earlier layer left), modes (setuid, setgid, sticky, none, nonsense), sizes,
//! GNU long-name and PAX headers, truncated or damaged archives, a gzip stream declared plain
//! and the other way round, a wrong `diff_id`. Each input is one to three such layers, each
//! built as a raw tar with hand-written headers (so hostile names survive), gzipped or not, and
//! applied in order to a fresh `rootfs/` with a small [`UnpackBudget`], stopping at the first
//! error as the image cache does.
//!
//! Layout, in the per-process base directory (see `airlock_fuzz::Fixture`): `host/`
//! (sentinels, never to be touched) and `rootfs/` (made afresh every iteration; sometimes with
//! links to the host directory and its files planted first, as an earlier layer could have
//! left them: see [`PLANTED`]). Layer blobs are unnamed temporary files.
#![no_main]
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Seek as _, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use airlock_fuzz::{Fixture, HOST_ENTRIES, Node, remove, snapshot};
use airlock_pipeline::image::ImageError;
use airlock_pipeline::image::fetch::{Compression, LayerBlob, sha256_digest};
use airlock_pipeline::image::unpack::{UnpackBudget, apply_layer};
use airlock_pipeline::tree::TreeRoot;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

/// Layers after the first one, entries per layer, pieces per path, bytes per file: small
/// layers reach every code path and keep an iteration well under a millisecond.
const MAX_MORE_LAYERS: usize = 2;
const MAX_ENTRIES: usize = 12;
const MAX_PIECES: usize = 6;
const MAX_DATA: usize = 64;
const MAX_RAW: usize = 120;
/// A "big" file's size: over the smallest budgets, under the largest.
const BIG_DATA: usize = 3000;

#[derive(Arbitrary, Debug)]
struct Input {
    first: Layer,
    more: Vec<Layer>,
    /// Which of [`PLANTED`] are in `rootfs/` before the first layer, one bit each.
    plant: u8,
    /// Which of [`BUDGETS`].
    budget: u8,
}

/// Links to the host directory and its files, absolute and climbing, as a lower layer could
/// leave them (`rootfs/NAME -> TARGET`, `HOST/` standing for the host directory's absolute
/// path): writing beneath `etc` or `up`, or hard-linking `secret` or `run.sh`, must not reach
/// the host.
const PLANTED: &[(&str, &str)] = &[
    ("etc", "HOST/"),
    ("up", "../host"),
    ("secret", "HOST/secret"),
    ("run.sh", "../host/run.sh"),
];

/// `(max_bytes, max_entries)` over all layers.
const BUDGETS: &[(u64, u64)] = &[(256, 4), (4096, 16), (1 << 20, 64), (64, 64)];

#[derive(Arbitrary, Debug)]
struct Layer {
    entries: Vec<Entry>,
    /// Mostly plain or gzip as declared; sometimes a plain tar declared gzip, or the reverse.
    compression: u8,
    /// Mostly the true diff_id; sometimes the compressed blob's digest, or zeros.
    diff_id: u8,
    /// How the archive ends: two zero blocks, none, one, or two and trailing junk.
    end: u8,
    /// Sometimes the archive is cut short, or a byte of it flipped, at `at`.
    damage: u8,
    at: u16,
}

#[derive(Arbitrary, Debug)]
struct Entry {
    kind: Kind,
    name: Name,
    link: Target,
    mode: Mode,
    data: Vec<u8>,
    /// At 240 and over the file holds [`BIG_DATA`] bytes.
    size: u8,
    /// At 224 and over the name and link target travel in a PAX header instead.
    pax: u8,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Kind {
    File,
    /// A regular file with the old (pre-POSIX) type byte NUL.
    OldFile,
    Contiguous,
    Dir,
    Symlink,
    HardLink,
    /// A regular file whose last component gets the `.wh.` prefix.
    Whiteout,
    /// `NAME/.wh..wh..opq`.
    Opaque,
    CharDevice,
    BlockDevice,
    Fifo,
    Sparse,
    /// Any type byte (`L`, `K`, `x`, `g` included: extension headers with the entry's data).
    Type(u8),
}

/// Path pieces names are joined from (with `/`), besides [`LONG_OK`], [`LONG_BAD`] and the
/// host directory's absolute path. `etc` and `up` are where links to the host get planted;
/// `host`, `secret`, `sub` and `run.sh` name what is in the host directory.
const PIECES: &[&str] = &[
    "a",
    "b",
    "etc",
    "up",
    "host",
    "secret",
    "sub",
    "run.sh",
    "..",
    ".",
    "",
    "/",
    ".wh.a",
    ".wh.etc",
    ".wh.up",
    ".wh..wh..opq",
    ".wh..",
    ".wh.",
    "a/b",
];

/// The longest name a directory entry can have (255 bytes), and one byte more.
const LONG_OK: (u8, usize) = (b'l', 255);
const LONG_BAD: (u8, usize) = (b'm', 256);

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Piece(u8);

impl Piece {
    fn push(self, fixture: &Fixture, out: &mut Vec<u8>) {
        let i = usize::from(self.0) % (PIECES.len() + 3);
        match i.checked_sub(PIECES.len()) {
            None => out.extend_from_slice(PIECES[i].as_bytes()),
            Some(0) => out.extend(std::iter::repeat_n(LONG_OK.0, LONG_OK.1)),
            Some(1) => out.extend(std::iter::repeat_n(LONG_BAD.0, LONG_BAD.1)),
            Some(_) => out.extend_from_slice(fixture.host.as_os_str().as_bytes()),
        }
    }
}

fn join(fixture: &Fixture, pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, piece) in pieces.iter().take(MAX_PIECES).enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        piece.push(fixture, &mut out);
    }
    out
}

/// An entry's name: mostly pieces joined with `/`, sometimes any bytes.
#[derive(Arbitrary, Debug)]
struct Name {
    pick: u8,
    pieces: Vec<Piece>,
    raw: Vec<u8>,
}

impl Name {
    fn bytes(&self, fixture: &Fixture) -> Vec<u8> {
        match self.pick {
            0..=223 => join(fixture, &self.pieces),
            _ => self.raw.iter().copied().take(MAX_RAW).collect(),
        }
    }
}

/// A link target (symbolic or hard): the absolute path of a host entry, `../` repeated then
/// `host/...`, an absolute path inside the image, any bytes, the name of an earlier entry of
/// the input (a planted link or an entry of this layer or a lower one: what hard links usually
/// name), or pieces joined (`etc/secret` and `up/secret` go through the planted links).
#[derive(Arbitrary, Debug)]
struct Target {
    pick: u8,
    n: u8,
    pieces: Vec<Piece>,
    raw: Vec<u8>,
}

impl Target {
    fn bytes(&self, fixture: &Fixture, earlier: &[Vec<u8>]) -> Vec<u8> {
        match self.pick {
            112..=175 if !earlier.is_empty() => {
                earlier[usize::from(self.n) % earlier.len()].clone()
            }
            0..=39 => fixture.host_entry(self.n).as_os_str().as_bytes().to_vec(),
            40..=79 => {
                let mut text = "../".repeat(usize::from(self.n % 4));
                text.push_str("host");
                let entry = HOST_ENTRIES[usize::from(self.n / 4) % HOST_ENTRIES.len()];
                if !entry.is_empty() {
                    text.push('/');
                    text.push_str(entry);
                }
                text.into_bytes()
            }
            80..=95 => {
                let mut out = b"/".to_vec();
                out.extend(join(fixture, &self.pieces));
                out
            }
            96..=111 => self.raw.iter().copied().take(MAX_RAW).collect(),
            _ => join(fixture, &self.pieces),
        }
    }
}

/// An entry's mode: mostly one of [`MODES`], sometimes anything the 8-byte field holds.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Mode(u8, u32);

const MODES: &[u32] = &[
    0o644, 0o755, 0o600, 0o777, 0o4755, 0o2755, 0o6777, 0o1777, 0o7777, 0o000, 0o4000, 0o2700,
];

impl Mode {
    fn value(self) -> u32 {
        match self.0 {
            0..=199 => MODES[usize::from(self.0) % MODES.len()],
            _ => self.1 % 0o10000000,
        }
    }
}

/// Writes `value` in octal, zero-padded and NUL-terminated, into a header field (high digits
/// that do not fit are dropped).
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    let text = &text.as_bytes()[text.len() - width..];
    field[..width].copy_from_slice(text);
    field[width] = 0;
}

/// One GNU tar header, by hand: name and link name verbatim (cut at 100 bytes), any type byte.
fn header(name: &[u8], kind: u8, mode: u32, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = kind;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar ");
    h[263..265].copy_from_slice(b" \0");
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
    h
}

fn push_entry(tar: &mut Vec<u8>, name: &[u8], kind: u8, mode: u32, data: &[u8], link: &[u8]) {
    tar.extend_from_slice(&header(name, kind, mode, data.len() as u64, link));
    tar.extend_from_slice(data);
    tar.resize(tar.len().next_multiple_of(512), 0);
}

/// A GNU long name (`L`) or long link name (`K`) entry for the header that follows.
fn push_long(tar: &mut Vec<u8>, kind: u8, bytes: &[u8]) {
    let mut data = bytes.to_vec();
    data.push(0);
    push_entry(tar, b"././@LongLink", kind, 0o644, &data, b"");
}

/// A PAX extended header (`x`) with `key=value` records, for the header that follows.
fn push_pax(tar: &mut Vec<u8>, records: &[(&str, &[u8])]) {
    let mut data = Vec::new();
    for (key, value) in records {
        // "LEN KEY=VALUE\n", LEN counting itself.
        let body = key.len() + value.len() + 3;
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    push_entry(tar, b"PaxHeaders/entry", b'x', 0o644, &data, b"");
}

/// Appends `entry` to `tar`; `earlier` holds the names of the links planted and the entries
/// encoded so far.
fn encode(fixture: &Fixture, entry: &Entry, earlier: &mut Vec<Vec<u8>>, tar: &mut Vec<u8>) {
    let mut name = entry.name.bytes(fixture);
    let link = entry.link.bytes(fixture, earlier);
    let (kind, has_data, has_link) = match entry.kind {
        Kind::File => (b'0', true, false),
        Kind::OldFile => (0, true, false),
        Kind::Contiguous => (b'7', true, false),
        Kind::Dir => (b'5', false, false),
        Kind::Symlink => (b'2', false, true),
        Kind::HardLink => (b'1', false, true),
        Kind::Whiteout => {
            let at = name.iter().rposition(|b| *b == b'/').map_or(0, |i| i + 1);
            name.splice(at..at, b".wh.".iter().copied());
            (b'0', false, false)
        }
        Kind::Opaque => {
            if !name.is_empty() {
                name.push(b'/');
            }
            name.extend_from_slice(b".wh..wh..opq");
            (b'0', false, false)
        }
        Kind::CharDevice => (b'3', false, false),
        Kind::BlockDevice => (b'4', false, false),
        Kind::Fifo => (b'6', false, false),
        Kind::Sparse => (b'S', true, false),
        Kind::Type(byte) => (byte, true, true),
    };
    let link = if has_link { link } else { Vec::new() };
    earlier.push(name.clone());
    let mut data: Vec<u8> = if has_data {
        entry.data.iter().copied().take(MAX_DATA).collect()
    } else {
        Vec::new()
    };
    if has_data && entry.size >= 240 {
        data = data
            .iter()
            .copied()
            .chain(std::iter::repeat(b'z'))
            .take(BIG_DATA)
            .collect();
    }
    let (name, link) = if entry.pax >= 224 {
        let mut records: Vec<(&str, &[u8])> = vec![("path", &name)];
        if !link.is_empty() {
            records.push(("linkpath", &link));
        }
        push_pax(tar, &records);
        (
            b"pax-placeholder".to_vec(),
            if link.is_empty() { link } else { b"x".to_vec() },
        )
    } else {
        if name.len() > 100 {
            push_long(tar, b'L', &name);
        }
        if link.len() > 100 {
            push_long(tar, b'K', &link);
        }
        (name, link)
    };
    push_entry(tar, &name, kind, entry.mode.value(), &data, &link);
}

/// A layer as stored and as described by the image.
struct Built {
    blob: Vec<u8>,
    desc: LayerBlob,
    /// Whether `desc.diff_id` is the uncompressed stream's true digest.
    diff_ok: bool,
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("gzip into memory");
    gz.finish().expect("gzip into memory")
}

fn build(fixture: &Fixture, layer: &Layer, earlier: &mut Vec<Vec<u8>>) -> Built {
    let mut tar = Vec::new();
    for entry in layer.entries.iter().take(MAX_ENTRIES) {
        encode(fixture, entry, earlier, &mut tar);
    }
    match layer.end {
        0..=215 => tar.extend_from_slice(&[0; 1024]),
        216..=231 => {}
        232..=243 => tar.extend_from_slice(&[0; 512]),
        _ => {
            tar.extend_from_slice(&[0; 1024]);
            tar.extend_from_slice(b"trailing bytes after the end of the archive");
        }
    }
    if !tar.is_empty() {
        let at = usize::from(layer.at) % tar.len();
        match layer.damage {
            232..=243 => tar.truncate(at),
            244.. => tar[at] ^= 0x5a,
            _ => {}
        }
    }
    let (blob, compression) = match layer.compression {
        0..=119 => (tar.clone(), Compression::None),
        120..=239 => (gzip(&tar), Compression::Gzip),
        240..=247 => (tar.clone(), Compression::Gzip),
        _ => (gzip(&tar), Compression::None),
    };
    let true_diff_id = sha256_digest(&tar);
    let diff_id = match layer.diff_id {
        0..=231 => true_diff_id.clone(),
        232..=243 => sha256_digest(&blob),
        _ => format!("sha256:{}", "0".repeat(64)),
    };
    Built {
        desc: LayerBlob {
            digest: sha256_digest(&blob),
            size: blob.len() as u64,
            compression,
            diff_id: diff_id.clone(),
        },
        blob,
        diff_ok: diff_id == true_diff_id,
    }
}

/// What the oracle compares against, made once per process.
struct Reference {
    /// The base directory, resolved.
    base: PathBuf,
    /// The host directory's file inodes: no file in `rootfs/` may be one of them (a hard link
    /// made through a planted link).
    host_inodes: BTreeSet<u64>,
    /// Paths outside the fixture a layer's names could reach if they were joined or followed
    /// naively (`/a`, `/etc/secret`, the base's parent's `a`...), and whether each existed.
    outside: Vec<(PathBuf, bool)>,
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let fixture = Fixture::get();
        let base = fs::canonicalize(&fixture.base).expect("resolve the base directory");
        let host_inodes = fixture
            .host_snapshot
            .values()
            .filter_map(|node| match node {
                Node::File { ino, .. } => Some(*ino),
                _ => None,
            })
            .collect();
        let mut dirs = vec![PathBuf::from("/"), PathBuf::from("/etc")];
        let mut up = base.parent();
        for _ in 0..2 {
            if let Some(dir) = up {
                dirs.push(dir.to_path_buf());
                up = dir.parent();
            }
        }
        let long = "l".repeat(LONG_OK.1);
        let names = [
            "a", "b", "etc", "up", "host", "secret", "sub", "run.sh", "rootfs", &long,
        ];
        let outside = dirs
            .iter()
            .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
            .filter(|path| !path.starts_with(&base))
            .map(|path| {
                let existed = fs::symlink_metadata(&path).is_ok();
                (path, existed)
            })
            .collect();
        Reference {
            base,
            host_inodes,
            outside,
        }
    })
}

/// The oracle, after every layer, whether it applied or not:
///
/// - the host directory is byte for byte, mode for mode and inode for inode as it was made,
///   and the base holds nothing but it and `rootfs/` (`Fixture::assert_untouched`);
/// - nothing appeared (or went) outside the fixture where a naively joined or followed name
///   would land, and `rootfs/` and `host/` still resolve to themselves (neither was replaced
///   by a link);
/// - in `rootfs/`: no device node, FIFO or socket; no setuid or setgid bit on anything, no
///   sticky bit on a file; every directory open to its owner (the unpacking user fills it and
///   later removes it); no file that is a host file's inode; no more file bytes than the
///   budget allows (one byte over at most: the probe that finds a file too large).
fn check(fixture: &Fixture, rootfs: &Path, max_bytes: u64, input: &Input) {
    fixture.assert_untouched(&["rootfs"], input);
    let reference = reference();
    for (path, existed) in &reference.outside {
        assert_eq!(
            fs::symlink_metadata(path).is_ok(),
            *existed,
            "{path:?} appeared or went outside the fixture\ninput: {input:?}"
        );
    }
    for (dir, name) in [(rootfs, "rootfs"), (fixture.host.as_path(), "host")] {
        assert_eq!(
            fs::canonicalize(dir).ok(),
            Some(reference.base.join(name)),
            "{name} no longer resolves to itself\ninput: {input:?}"
        );
    }
    let mut sizes = BTreeMap::new();
    for (rel, node) in snapshot(rootfs) {
        match node {
            Node::Dir { mode } => {
                assert_eq!(
                    mode & 0o6000,
                    0,
                    "directory {rel:?} has mode {mode:o}\ninput: {input:?}"
                );
                assert_eq!(
                    mode & 0o700,
                    0o700,
                    "directory {rel:?} has mode {mode:o}\ninput: {input:?}"
                );
            }
            Node::File { mode, ino, bytes } => {
                assert_eq!(
                    mode & 0o7000,
                    0,
                    "file {rel:?} has mode {mode:o}\ninput: {input:?}"
                );
                assert!(
                    !reference.host_inodes.contains(&ino),
                    "file {rel:?} is a host file (hard link out of the tree)\ninput: {input:?}"
                );
                sizes.insert(ino, bytes.len() as u64);
            }
            Node::Link { .. } => {}
            Node::Other => panic!("special file {rel:?} in the root filesystem\ninput: {input:?}"),
        }
    }
    let total: u64 = sizes.values().sum();
    assert!(
        total <= max_bytes + 1,
        "{total} bytes of files in the root filesystem, budget {max_bytes}\ninput: {input:?}"
    );
}

fn run(input: &Input) {
    let fixture = Fixture::get();
    let rootfs = fixture.base.join("rootfs");
    remove(&rootfs);
    let root = TreeRoot::create(&rootfs, 0o755).expect("create the root filesystem");
    let mut earlier = Vec::new();
    for (i, (name, target)) in PLANTED.iter().enumerate() {
        if input.plant & (1 << i) != 0 {
            let target = match target.strip_prefix("HOST/") {
                Some("") => fixture.host.clone(),
                Some(rest) => fixture.host.join(rest),
                None => PathBuf::from(target),
            };
            std::os::unix::fs::symlink(target, rootfs.join(name)).expect("plant a link");
            earlier.push(name.as_bytes().to_vec());
        }
    }
    let (max_bytes, max_entries) = BUDGETS[usize::from(input.budget) % BUDGETS.len()];
    let mut budget = UnpackBudget::new(max_bytes, max_entries);

    let layers = std::iter::once(&input.first).chain(input.more.iter().take(MAX_MORE_LAYERS));
    let mut outcomes = Vec::new();
    for layer in layers {
        let built = build(fixture, layer, &mut earlier);
        let mut blob = tempfile::tempfile_in(&fixture.base).expect("create a blob file");
        blob.write_all(&built.blob).expect("write the blob");
        blob.rewind().expect("rewind the blob");

        let result = apply_layer(&root, blob, &built.desc, &mut budget);

        check(fixture, &rootfs, max_bytes, input);
        if let Ok(stats) = &result {
            assert!(
                built.diff_ok,
                "a layer with a wrong diff_id applied: {stats:?}\ninput: {input:?}"
            );
            assert!(
                budget.bytes() <= max_bytes,
                "a layer applied past the budget: {} bytes of {max_bytes}\ninput: {input:?}",
                budget.bytes()
            );
        }
        let failed = result.is_err();
        outcomes.push(result);
        if failed {
            break;
        }
    }

    if airlock_fuzz::verbose() {
        let text: Vec<String> = outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok(stats) => format!(
                    "ok {} entries, {} hidden, {} special",
                    stats.entries, stats.hidden, stats.skipped_special
                ),
                Err(e @ ImageError::UnsafeEntry { .. }) => format!("unsafe: {e}"),
                Err(e) => {
                    let variant = format!("{e:?}");
                    let variant = variant
                        .split(['(', ' ', '{'])
                        .next()
                        .unwrap_or("")
                        .to_string();
                    format!(
                        "err {variant}: {}",
                        e.to_string().chars().take(60).collect::<String>()
                    )
                }
            })
            .collect();
        eprintln!("outcome: {}", text.join(" | "));
    }
}

fuzz_target!(|input: Input| {
    run(&input);
});

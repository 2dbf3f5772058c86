//! Fuzz target: writing a hostile commit's tree to disk with [`Mirror::materialise`].
//!
//! A commit's author controls every byte of its tree objects: entry names (`..`, `.git` in any
//! case, names with `/` or NUL, empty names, duplicates), modes (including nonsense ones),
//! object ids (missing objects, a blob where a tree belongs), symlink targets (any bytes), and
//! even whether a tree object parses. Each input becomes such a commit, written straight into a
//! bare repository with gix (no `git` process: thousands of iterations a second), and is then
//! materialised into `dest/` beside the host sibling of the fixture.
//!
//! Layout, in the per-process base directory (see `airlock_fuzz::Fixture`): `host/` (sentinels,
//! never to be touched), `repo.git/` (the bare repository, kept for the whole process) and
//! `dest/` (made afresh every iteration).
#![no_main]
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::fs;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::OnceLock;

use airlock_fuzz::{Fixture, Node, lexically_inside, name, really_inside, remove, snapshot};
use airlock_pipeline::source::{CommitId, Mirror};
use gix::ObjectId;
use gix::objs::{Kind, WriteTo};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

const MAX_TREES: usize = 6;
const MAX_ENTRIES: usize = 8;
const MAX_BYTES: usize = 64;

#[derive(Arbitrary, Debug)]
struct Input {
    /// `trees[0]` is the commit's root tree; an entry can name only a later tree, so the trees
    /// form a DAG (git's object model cannot express a cycle).
    trees: Vec<Vec<Entry>>,
    /// Arbitrary bytes that replace `trees[n]` as stored: the parser must refuse them, not
    /// panic, and whatever it makes of them must still be written safely.
    raw_tree: Option<(u8, Vec<u8>)>,
    root: Root,
    /// Whether `dest` exists (empty) before materialising, or is created by it.
    dest_exists: bool,
}

#[derive(Arbitrary, Debug)]
struct Entry {
    mode: Mode,
    name: Name,
    object: Object,
}

/// An entry's mode, chosen by one byte: mostly the five git knows, sometimes odd mode text
/// (which gix may read as one of them, or refuse).
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Mode(u8);

/// Mode texts a hand-written tree object can carry besides the canonical five.
const ODD_MODES: &[&str] = &[
    "100664", "100600", "40755", "040000", "120777", "160001", "0", "644", "100000", "170000", "1",
    "777777", "",
];

/// What [`Mode`] stands for, for the oracle in [`must_refuse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModeKind {
    Blob,
    Executable,
    Link,
    Tree,
    Submodule,
    Odd,
}

impl Mode {
    fn kind(self) -> ModeKind {
        match self.0 {
            0..=59 => ModeKind::Blob,
            60..=89 => ModeKind::Executable,
            90..=149 => ModeKind::Link,
            150..=219 => ModeKind::Tree,
            220..=234 => ModeKind::Submodule,
            _ => ModeKind::Odd,
        }
    }

    fn text(self) -> &'static str {
        match self.kind() {
            ModeKind::Blob => "100644",
            ModeKind::Executable => "100755",
            ModeKind::Link => "120000",
            ModeKind::Tree => "40000",
            ModeKind::Submodule => "160000",
            ModeKind::Odd => ODD_MODES[usize::from(self.0) % ODD_MODES.len()],
        }
    }
}

/// An entry's name: mostly a plain one from `airlock_fuzz::NAMES` (so that trees get written
/// and links resolve), sometimes a hostile one, sometimes any bytes.
#[derive(Arbitrary, Debug)]
struct Name {
    pick: u8,
    raw: Vec<u8>,
}

/// Names `materialise` must refuse (and a few it may write: `.git.` is not `.git`). A NUL ends
/// the name in a tree object, so the rest of it is read as the id: the tree is garbled.
const HOSTILE_NAMES: &[&[u8]] = &[
    b".",
    b"..",
    b".git",
    b".GIT",
    b".gIt",
    b".git.",
    b"",
    b"a/b",
    b"../a",
    b"/",
    b"a\0x",
    b".git/hooks",
    b"...",
];

impl Name {
    fn bytes(&self) -> Vec<u8> {
        match self.pick {
            0..=199 => name(self.pick).as_bytes().to_vec(),
            200..=239 => HOSTILE_NAMES[usize::from(self.pick) % HOSTILE_NAMES.len()].to_vec(),
            _ => self.raw.iter().copied().take(16).collect(),
        }
    }
}

/// What an entry's id names, chosen by `pick`: mostly what the entry's mode calls for (a blob
/// of `bytes` for a file, a blob holding `target` for a link, `trees[i + 1 + bytes[0]]` for a
/// tree, an id nothing is stored under for a submodule), sometimes a mismatch (a blob, the
/// empty tree, or a missing object whatever the mode).
#[derive(Arbitrary, Debug)]
struct Object {
    pick: u8,
    bytes: Vec<u8>,
    target: Target,
}

/// What an [`Object`] resolves to for a given mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolved {
    /// A blob of the object's `bytes` (capped).
    Bytes,
    /// A blob holding the link target.
    LinkTarget,
    /// A later tree, by offset (or the empty tree past the end).
    Subtree(u8),
    EmptyTree,
    Missing,
}

impl Object {
    fn resolve(&self, mode: Mode) -> Resolved {
        match self.pick {
            0..=229 => match mode.kind() {
                ModeKind::Blob | ModeKind::Executable | ModeKind::Odd => Resolved::Bytes,
                ModeKind::Link => Resolved::LinkTarget,
                ModeKind::Tree => Resolved::Subtree(self.bytes.first().copied().unwrap_or(0)),
                ModeKind::Submodule => Resolved::Missing,
            },
            230..=239 => Resolved::Bytes,
            240..=247 => Resolved::EmptyTree,
            _ => Resolved::Missing,
        }
    }

    fn content(&self) -> &[u8] {
        &self.bytes[..self.bytes.len().min(MAX_BYTES)]
    }

    fn missing_id(&self) -> ObjectId {
        let mut raw = [0x6d; 20];
        for (to, from) in raw.iter_mut().zip(&self.bytes) {
            *to = *from;
        }
        ObjectId::from_bytes_or_panic(&raw)
    }
}

/// A symlink target (stored as a blob), chosen by `pick`: the absolute path of a host entry,
/// `../` repeated then `host/secret`, any bytes, or `parts` joined with `/` (absolute or
/// relative).
#[derive(Arbitrary, Debug)]
struct Target {
    pick: u8,
    parts: Vec<Part>,
    raw: Vec<u8>,
}

/// One component of a link target: mostly a name, sometimes `..`, `.` or empty.
#[derive(Arbitrary, Debug)]
struct Part(u8);

impl Part {
    fn text(&self) -> &'static str {
        match self.0 {
            0..=159 => name(self.0),
            160..=209 => "..",
            210..=229 => ".",
            _ => "",
        }
    }
}

/// What the commit's tree id names, chosen by one byte: mostly `trees[0]`.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Root(u8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RootKind {
    Tree,
    /// The commit's tree id names a blob.
    Blob,
    /// The commit's tree id names nothing.
    Missing,
    /// What is handed to `materialise` is the tree's id, not a commit's.
    TreeAsCommit,
}

impl Root {
    fn kind(self) -> RootKind {
        match self.0 {
            0..=231 => RootKind::Tree,
            232..=239 => RootKind::Blob,
            240..=247 => RootKind::Missing,
            _ => RootKind::TreeAsCommit,
        }
    }
}

/// An object written verbatim: gix's own writers check what they serialise, an attacker's
/// `git hash-object --literally` does not.
struct Raw<'a> {
    kind: Kind,
    bytes: &'a [u8],
}

impl WriteTo for Raw<'_> {
    fn write_to(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        out.write_all(self.bytes)
    }
    fn kind(&self) -> Kind {
        self.kind
    }
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// The process's bare repository and the mirror reading it. One for the whole process: opening
/// a repository is far slower than the materialising itself. Objects written later are found
/// (loose objects are looked up on disk).
struct Repo {
    writer: gix::ThreadSafeRepository,
    mirror: Mirror,
}

fn repo() -> &'static Repo {
    static REPO: OnceLock<Repo> = OnceLock::new();
    REPO.get_or_init(|| {
        let path = Fixture::get().base.join("repo.git");
        let writer = gix::init_bare(&path)
            .expect("init the bare repository")
            .into_sync();
        let mirror = Mirror::open(&path).expect("open the mirror");
        Repo { writer, mirror }
    })
}

fn write(repo: &gix::Repository, kind: Kind, bytes: &[u8]) -> ObjectId {
    repo.write_object(Raw { kind, bytes })
        .expect("write an object")
        .detach()
}

fn target_bytes(fixture: &Fixture, target: &Target) -> Vec<u8> {
    let parts = || -> String {
        let parts: Vec<&str> = target.parts.iter().take(6).map(Part::text).collect();
        parts.join("/")
    };
    match target.pick {
        0..=15 => fixture
            .host_entry(target.pick)
            .as_os_str()
            .as_bytes()
            .to_vec(),
        16..=31 => {
            let mut text = "../".repeat(usize::from(target.pick % 5));
            text.push_str("host/secret");
            text.into_bytes()
        }
        32..=47 => format!("/{}", parts()).into_bytes(),
        48..=63 => target.raw.iter().copied().take(MAX_BYTES).collect(),
        _ => parts().into_bytes(),
    }
}

/// Writes the input's objects and returns what to materialise.
fn build(repo: &gix::Repository, fixture: &Fixture, input: &Input) -> ObjectId {
    let trees = &input.trees[..input.trees.len().min(MAX_TREES)];
    let empty_tree = write(repo, Kind::Tree, b"");
    let mut ids = vec![empty_tree; trees.len()];
    for (i, tree) in trees.iter().enumerate().rev() {
        let bytes = match &input.raw_tree {
            Some((n, raw)) if usize::from(*n) % trees.len() == i => {
                raw.iter().copied().take(MAX_BYTES * 2).collect()
            }
            _ => {
                let entries = tree;
                let mut bytes = Vec::new();
                for entry in entries.iter().take(MAX_ENTRIES) {
                    let id = match entry.object.resolve(entry.mode) {
                        Resolved::Bytes => write(repo, Kind::Blob, entry.object.content()),
                        Resolved::LinkTarget => write(
                            repo,
                            Kind::Blob,
                            &target_bytes(fixture, &entry.object.target),
                        ),
                        Resolved::Subtree(n) => ids
                            .get(i + 1 + usize::from(n))
                            .copied()
                            .unwrap_or(empty_tree),
                        Resolved::EmptyTree => empty_tree,
                        Resolved::Missing => entry.object.missing_id(),
                    };
                    bytes.extend_from_slice(entry.mode.text().as_bytes());
                    bytes.push(b' ');
                    bytes.extend_from_slice(&entry.name.bytes());
                    bytes.push(0);
                    bytes.extend_from_slice(id.as_bytes());
                }
                bytes
            }
        };
        ids[i] = write(repo, Kind::Tree, &bytes);
    }
    let root_tree = ids.first().copied().unwrap_or(empty_tree);
    let tree = match input.root.kind() {
        RootKind::Tree | RootKind::TreeAsCommit => root_tree,
        RootKind::Blob => write(repo, Kind::Blob, b"not a tree"),
        RootKind::Missing => ObjectId::from_bytes_or_panic(&[0x5a; 20]),
    };
    if input.root.kind() == RootKind::TreeAsCommit {
        return tree;
    }
    let commit = format!(
        "tree {tree}\nauthor Fuzz <fuzz@example.invalid> 0 +0000\ncommitter Fuzz <fuzz@example.invalid> 0 +0000\n\nfuzz\n"
    );
    write(repo, Kind::Commit, commit.as_bytes())
}

/// Whether the input certainly holds an entry `materialise` must refuse, reachable from the
/// root: one with a name that is empty, `.`, `..`, `.git` in any case, or contains `/`; a name
/// twice in one directory; or a symlink whose target is empty or absolute. Only well-formed
/// trees are judged (a raw tree, a NUL in a name or an odd mode make the answer unknown: the
/// result may be an error for another reason, which is fine either way).
fn must_refuse(fixture: &Fixture, input: &Input) -> bool {
    let trees = &input.trees[..input.trees.len().min(MAX_TREES)];
    if trees.is_empty() || input.root.kind() != RootKind::Tree {
        return false;
    }
    let mut pending = vec![0usize];
    while let Some(i) = pending.pop() {
        let Some(entries) = trees.get(i) else {
            continue;
        };
        if input
            .raw_tree
            .as_ref()
            .is_some_and(|(n, _)| usize::from(*n) % trees.len() == i)
        {
            continue;
        }
        let entries = &entries[..entries.len().min(MAX_ENTRIES)];
        // A NUL in a name or an odd mode garbles or changes how the whole tree is read.
        if entries
            .iter()
            .any(|e| e.name.bytes().contains(&0) || e.mode.kind() == ModeKind::Odd)
        {
            continue;
        }
        let mut seen = HashSet::new();
        for entry in entries {
            let name = entry.name.bytes();
            if name.is_empty()
                || name == b"."
                || name == b".."
                || name.contains(&b'/')
                || name.eq_ignore_ascii_case(b".git")
                || !seen.insert(name)
            {
                return true;
            }
            match (entry.mode.kind(), entry.object.resolve(entry.mode)) {
                (ModeKind::Link, link) => {
                    let bytes = match link {
                        Resolved::LinkTarget => target_bytes(fixture, &entry.object.target),
                        Resolved::Bytes => entry.object.content().to_vec(),
                        _ => continue,
                    };
                    if bytes.is_empty() || bytes[0] == b'/' || bytes.contains(&0) {
                        return true;
                    }
                }
                (ModeKind::Tree, Resolved::Subtree(n)) => {
                    let child = i + 1 + usize::from(n);
                    if child < trees.len() {
                        pending.push(child);
                    }
                }
                _ => {}
            }
        }
    }
    false
}

/// The invariants on what `materialise` left in `dest`, checked whether it succeeded or not
/// (the whole tree is checked before anything is written, so even a partial `dest` holds only
/// checked entries):
///
/// - Only directories (0755), regular files (0644 or 0755) and links: no setuid bit, no FIFO,
///   nothing the commit could use to surprise whoever runs in the tree next.
/// - No `.git` entry in any case: a planted `.git` would make tools in the job (or on the host)
///   treat attacker-chosen files as repository metadata (hooks, config).
/// - Every link's target is relative and stays inside `dest`, both lexically from the link's
///   directory and when followed through whatever links it passes: the source tree is handed to
///   host-side code and to the next stages, and a link out of it is how issue 11's attack began.
fn check_dest(dest: &Path, input: &Input) -> (u64, u64) {
    let (mut files, mut links) = (0, 0);
    for (rel, node) in snapshot(dest) {
        let leaf = rel.file_name().map(|n| n.as_bytes()).unwrap_or_default();
        assert!(
            !leaf.eq_ignore_ascii_case(b".git"),
            "materialise wrote {rel:?}\ninput: {input:?}"
        );
        match node {
            Node::Dir { mode } => assert_eq!(mode, 0o755, "mode of directory {rel:?}"),
            Node::File { mode, .. } => {
                assert!(
                    mode == 0o644 || mode == 0o755,
                    "mode {mode:o} of file {rel:?}\ninput: {input:?}"
                );
                files += 1;
            }
            Node::Link { target } => {
                if let Err(e) = lexically_inside(&rel, &target) {
                    panic!("materialise wrote a link out of the tree: {e}\ninput: {input:?}");
                }
                if let Err(e) = really_inside(dest, &rel) {
                    panic!(
                        "materialise wrote a link that leads out of the tree: {e}\ninput: {input:?}"
                    );
                }
                links += 1;
            }
            Node::Other => panic!("materialise wrote a special file {rel:?}\ninput: {input:?}"),
        }
    }
    (files, links)
}

fn run(input: &Input) {
    let fixture = Fixture::get();
    let repo = repo();
    let dest = fixture.base.join("dest");
    remove(&dest);
    if input.dest_exists {
        fs::create_dir(&dest).expect("create dest");
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).expect("chmod dest");
    }
    let writer = repo.writer.to_thread_local();
    let commit = CommitId(build(&writer, fixture, input));
    let refuse = must_refuse(fixture, input);

    let result = repo.mirror.materialise(&commit, &dest);

    let (files, links) = check_dest(&dest, input);
    if airlock_fuzz::verbose() {
        match &result {
            Ok(_) => eprintln!("outcome: ok {files} files, {links} links (must_refuse {refuse})"),
            Err(airlock_pipeline::source::SourceError::UnsafePath { reason, .. }) => {
                eprintln!("outcome: unsafe: {reason} (must_refuse {refuse})")
            }
            Err(e) => eprintln!(
                "outcome: err {} (must_refuse {refuse})",
                e.to_string().chars().take(40).collect::<String>()
            ),
        }
    }
    match &result {
        Ok(stats) => {
            assert!(
                !refuse,
                "materialise accepted a tree with an unsafe entry: {stats:?}\ninput: {input:?}"
            );
            // Every entry it reports is on disk, and nothing more.
            assert_eq!(
                stats.files,
                files + links,
                "reported {stats:?}, wrote {files} files and {links} links\ninput: {input:?}"
            );
        }
        Err(_) if refuse => {
            // Refused before anything was written, `dest` itself included.
            if input.dest_exists {
                assert!(
                    airlock_fuzz::names(&dest).is_empty(),
                    "a refused tree left entries in dest\ninput: {input:?}"
                );
            } else {
                assert!(
                    fs::symlink_metadata(&dest).is_err(),
                    "a refused tree still created dest\ninput: {input:?}"
                );
            }
        }
        Err(_) => {}
    }
    fixture.assert_untouched(&["repo.git", "dest"], input);
}

fuzz_target!(|input: Input| {
    run(&input);
});

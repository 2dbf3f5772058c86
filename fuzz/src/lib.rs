//! Shared fixture and checks of Airlock's fuzz targets (`fuzz_targets/`).
//!
//! Both targets play an attacker who controls a tree (a commit's, or a job's workspace) that
//! the host then reads and writes. Every iteration lays it out in one per-process directory,
//! the *base*, beside a `host/` sibling that stands for everything the host owns and the tree
//! must never reach: its sentinel files are compared byte for byte (and inode for inode) after
//! every iteration, and the base may hold nothing but the directories the host is allowed to
//! write. Links the targets plant point at `host/` both absolutely and by climbing with `..`,
//! so a single followed link shows up as a changed sentinel or a stray entry.
//!
//! The checks here never follow a link themselves: they walk with `lstat` and read links with
//! `readlink`, so a bug in the code under test cannot be masked (or caused) by the checker.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

/// Plain names the targets build paths from: few, so that paths collide and patterns match.
/// `host` is among them so that `../host` from the workspace root names the host sibling.
pub const NAMES: &[&str] = &[
    "a", "b", "dist", "app", "x.txt", ".hidden", "host", "sha256",
];

/// A name from [`NAMES`], chosen by a fuzzed byte.
pub fn name(byte: u8) -> &'static str {
    NAMES[usize::from(byte) % NAMES.len()]
}

/// Entries of the host sibling, relative to it (`""` is the directory itself).
pub const HOST_ENTRIES: &[&str] = &["secret", "sub", "sub/secret2", "run.sh", ""];

/// One entry as seen without following it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory and its permission bits.
    Dir {
        /// `st_mode & 0o7777`.
        mode: u32,
    },
    /// A regular file: permission bits, inode and contents.
    File {
        /// `st_mode & 0o7777`.
        mode: u32,
        /// The inode: a file replaced by another with the same bytes still counts as changed.
        ino: u64,
        /// The contents.
        bytes: Vec<u8>,
    },
    /// A symbolic link and its target, verbatim.
    Link {
        /// The target.
        target: OsString,
    },
    /// A FIFO, socket or device.
    Other,
}

/// Every entry beneath `root` (not `root` itself), keyed by relative path, read with `lstat`:
/// directories are entered only when they really are directories, links are never followed.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let dir = root.join(&rel);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let rel = rel.join(entry.file_name());
            let path = root.join(&rel);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o7777;
            let node = if meta.file_type().is_symlink() {
                Node::Link {
                    target: fs::read_link(&path)
                        .map(PathBuf::into_os_string)
                        .unwrap_or_default(),
                }
            } else if meta.is_dir() {
                pending.push(rel.clone());
                Node::Dir { mode }
            } else if meta.is_file() {
                Node::File {
                    mode,
                    ino: meta.ino(),
                    bytes: fs::read(&path).unwrap_or_default(),
                }
            } else {
                Node::Other
            };
            out.insert(rel, node);
        }
    }
    out
}

/// The names directly in `dir`.
pub fn names(dir: &Path) -> BTreeSet<OsString> {
    fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

/// The per-process fixture: a base directory with the host sibling in it.
#[derive(Debug)]
pub struct Fixture {
    /// The base directory (`$TMPDIR/.tmpXXXX`).
    pub base: PathBuf,
    /// `base/host`: what the untrusted tree must never reach.
    pub host: PathBuf,
    /// The host sibling as it was made.
    pub host_snapshot: BTreeMap<PathBuf, Node>,
    _keep: tempfile::TempDir,
}

impl Fixture {
    /// The process's fixture, made on first use. It is never removed by the process (statics
    /// are not dropped): scripts/fuzz.sh points `TMPDIR` at a directory it removes afterwards.
    pub fn get() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let keep = tempfile::Builder::new()
                .prefix("airlock-fuzz-")
                .tempdir()
                .expect("create the fixture's base directory");
            let base = keep.path().to_path_buf();
            let host = base.join("host");
            fs::create_dir_all(host.join("sub")).expect("create host/sub");
            fs::write(
                host.join("secret"),
                b"host secret: never read, never written\n",
            )
            .expect("write host/secret");
            fs::write(host.join("sub/secret2"), b"another host file\n")
                .expect("write host/sub/secret2");
            fs::write(host.join("run.sh"), b"#!/bin/sh\necho host\n").expect("write host/run.sh");
            fs::set_permissions(host.join("run.sh"), fs::Permissions::from_mode(0o755))
                .expect("chmod host/run.sh");
            let host_snapshot = snapshot(&host);
            Fixture {
                base,
                host,
                host_snapshot,
                _keep: keep,
            }
        })
    }

    /// The absolute path of one of [`HOST_ENTRIES`], chosen by a fuzzed byte.
    pub fn host_entry(&self, byte: u8) -> PathBuf {
        let rel = HOST_ENTRIES[usize::from(byte) % HOST_ENTRIES.len()];
        if rel.is_empty() {
            self.host.clone()
        } else {
            self.host.join(rel)
        }
    }

    /// Panics unless the host sibling is exactly as it was made and the base holds nothing but
    /// `allowed`.
    ///
    /// This is the invariant issue 11 is about: a host-side operation that followed a planted
    /// link (absolute, climbing, or dangling) would write, replace or create something here.
    pub fn assert_untouched(&self, allowed: &[&str], context: &dyn std::fmt::Debug) {
        let now = snapshot(&self.host);
        assert!(
            now == self.host_snapshot,
            "the host sibling changed: a link was followed out of the tree\nbefore: {:?}\nafter: {now:?}\ninput: {context:?}",
            self.host_snapshot
        );
        let mut expected: BTreeSet<OsString> = allowed.iter().map(OsString::from).collect();
        expected.insert("host".into());
        let found = names(&self.base);
        let stray: Vec<_> = found.difference(&expected).collect();
        assert!(
            stray.is_empty(),
            "entries appeared outside the directories the host may write: {stray:?}\ninput: {context:?}"
        );
        // The base's parent is the (private) temporary directory: nothing may land there either.
        if let Some(parent) = self.base.parent() {
            for escaped in ["escaped", "host"] {
                assert!(
                    fs::symlink_metadata(parent.join(escaped)).is_err(),
                    "'{escaped}' appeared next to the base directory\ninput: {context:?}"
                );
            }
        }
    }
}

/// Removes `path` (and everything beneath it) if it exists. `remove_dir_all` never follows a
/// link below its argument.
pub fn remove(path: &Path) {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).expect("clean up"),
        Ok(_) => fs::remove_file(path).expect("clean up"),
        Err(_) => {}
    }
}

/// `lstat` of `root/rel`, after checking that `rel` is a plain relative path (names only: no
/// `..`, `.`, root or empty component) whose every parent is a real directory, not a link.
pub fn lstat_beneath(root: &Path, rel: &Path) -> Result<fs::Metadata, String> {
    let mut here = root.to_path_buf();
    let parts: Vec<Component<'_>> = rel.components().collect();
    if parts.is_empty() {
        return Err(format!("{rel:?} is empty"));
    }
    for (i, part) in parts.iter().enumerate() {
        let Component::Normal(name) = part else {
            return Err(format!("{rel:?} has a {part:?} component"));
        };
        here.push(name);
        let meta = fs::symlink_metadata(&here).map_err(|e| format!("lstat {here:?}: {e}"))?;
        if meta.file_type().is_symlink() {
            return Err(format!("{here:?} is a symbolic link"));
        }
        if i + 1 == parts.len() {
            return Ok(meta);
        }
        if !meta.is_dir() {
            return Err(format!("{here:?} is not a directory"));
        }
    }
    unreachable!("the loop returns on its last component")
}

/// Where a link's target leads, lexically, from the link's own directory: `Err` when it is
/// absolute or climbs above the root at any point.
pub fn lexically_inside(link_rel: &Path, target: &OsStr) -> Result<(), String> {
    let mut depth = link_rel.components().count().saturating_sub(1);
    let target = Path::new(target);
    for component in target.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("{link_rel:?} -> {target:?} is absolute"));
            }
            Component::CurDir => {}
            Component::ParentDir => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("{link_rel:?} -> {target:?} climbs out of the tree"))?;
            }
            Component::Normal(_) => depth += 1,
        }
    }
    Ok(())
}

/// Where a link's target really leads, following every link it passes through (as the kernel
/// would, up to 40 of them), with components past a missing one taken lexically. `Err` when the
/// walk ever leaves `root`. A loop or a file in the middle of the path ends the walk: the
/// kernel would fail there too, so nothing beyond it can be reached.
pub fn really_inside(root: &Path, link_rel: &Path) -> Result<(), String> {
    let mut stack: Vec<OsString> = link_rel
        .parent()
        .map(|p| p.iter().map(OsStr::to_os_string).collect())
        .unwrap_or_default();
    let target = fs::read_link(root.join(link_rel)).map_err(|e| format!("readlink: {e}"))?;
    let mut budget = 40u32;
    let mut pending: Vec<OsString> = Vec::new();
    push_target(&mut pending, &target)?;
    let mut missing = false;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if stack.pop().is_none() {
                return Err(format!(
                    "{link_rel:?} -> {target:?} climbs out of the tree when followed"
                ));
            }
            continue;
        }
        stack.push(part);
        if missing {
            continue;
        }
        let here: PathBuf = stack.iter().fold(root.to_path_buf(), |p, n| p.join(n));
        match fs::symlink_metadata(&here) {
            Err(_) => missing = true,
            Ok(meta) if meta.file_type().is_symlink() => {
                budget = budget.saturating_sub(1);
                if budget == 0 {
                    return Ok(());
                }
                let next = fs::read_link(&here).map_err(|e| format!("readlink: {e}"))?;
                stack.pop();
                push_target(&mut pending, &next).map_err(|e| {
                    format!("{link_rel:?} -> {target:?} leads through {here:?}: {e}")
                })?;
            }
            Ok(meta) if !meta.is_dir() && !pending.is_empty() => return Ok(()),
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Pushes a link target's components onto the pending stack (reversed, so the first is popped
/// first). An absolute target leaves the tree.
fn push_target(pending: &mut Vec<OsString>, target: &Path) -> Result<(), String> {
    if target.as_os_str().as_bytes().first() == Some(&b'/') {
        return Err(format!("absolute target {target:?}"));
    }
    for component in target.components().rev() {
        match component {
            Component::Normal(name) => pending.push(name.to_os_string()),
            Component::ParentDir => pending.push("..".into()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("absolute target {target:?}"));
            }
        }
    }
    Ok(())
}

/// Creates `root/rel` with `make`, creating missing parents as directories, but only if every
/// existing parent is a real directory and nothing is at `rel` yet: the fixture itself must not
/// follow the links it plants (that would be the harness writing to the host, not the code
/// under test). Failures (a socket path too long, say) just leave the entry out.
pub fn place(root: &Path, rel: &[&str], make: impl FnOnce(&Path) -> io::Result<()>) {
    let Some((leaf, parents)) = rel.split_last() else {
        return;
    };
    let mut here = root.to_path_buf();
    for parent in parents {
        here.push(parent);
        match fs::symlink_metadata(&here) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return,
            Err(_) => {
                if fs::create_dir(&here).is_err() {
                    return;
                }
            }
        }
    }
    here.push(leaf);
    if fs::symlink_metadata(&here).is_ok() {
        return;
    }
    let _ = make(&here);
}

/// Whether `AIRLOCK_FUZZ_VERBOSE` is set: the targets then print each input's outcome on
/// stderr, to see what a corpus exercises (`cargo fuzz run TARGET CORPUS -- -runs=0`).
pub fn verbose() -> bool {
    static VERBOSE: OnceLock<bool> = OnceLock::new();
    *VERBOSE.get_or_init(|| std::env::var_os("AIRLOCK_FUZZ_VERBOSE").is_some())
}

//! Root filesystems made from what is installed on this host.

use anyhow::{Context, Result, bail, ensure};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{DEBIAN_MARKER, HOST_BUSYBOX};

/// Host paths never copied into a Debian root filesystem.
const EXCLUDED: &[&str] = &[
    "/usr/share/doc",
    "/usr/share/man",
    "/usr/share/info",
    "/usr/share/locale",
    "/usr/share/lintian",
];

/// Merged /usr: the top-level directories that are links into `usr/`.
const MERGED_USR: &[(&str, &str)] = &[
    ("bin", "usr/bin"),
    ("sbin", "usr/sbin"),
    ("lib", "usr/lib"),
    ("lib64", "usr/lib64"),
];

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// Writes `etc/passwd`, `etc/group`, `etc/airlock-image` and the empty
/// directories every test image has.
fn write_common(dir: &Path, marker: &str) -> Result<()> {
    ensure!(
        !marker.contains('\n'),
        "image marker must be one line: {marker:?}"
    );
    let etc = dir.join("etc");
    fs::create_dir_all(&etc).with_context(|| format!("create {}", etc.display()))?;
    for (name, text) in [
        ("passwd", PASSWD.to_owned()),
        ("group", GROUP.to_owned()),
        ("airlock-image", format!("{marker}\n")),
    ] {
        let path = etc.join(name);
        remove_non_dir(&path)?;
        fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
    }
    for (name, mode) in [
        ("tmp", 0o1777),
        ("proc", 0o755),
        ("dev", 0o755),
        ("workspace", 0o755),
    ] {
        let path = dir.join(name);
        fs::create_dir_all(&path).with_context(|| format!("create {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    Ok(())
}

/// Removes `path` if it is a file or a symlink, so a later write cannot
/// follow an old link out of the root filesystem.
fn remove_non_dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => bail!("{} is a directory", path.display()),
        Ok(_) => fs::remove_file(path).with_context(|| format!("remove {}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("stat {}", path.display())),
    }
}

/// Creates the symlink `link -> target`, replacing a file or link already there.
fn replace_symlink(target: impl AsRef<Path>, link: &Path) -> Result<()> {
    remove_non_dir(link)?;
    symlink(target.as_ref(), link).with_context(|| format!("symlink {}", link.display()))
}

/// Builds a minimal busybox root filesystem in `dir` (created if missing;
/// it should be empty): `bin/busybox` from the host, a `bin/<applet>` link
/// for every applet it lists, `usr/bin/env`, `etc/passwd` and `etc/group`
/// (root, nobody), `etc/airlock-image` holding `marker`, and empty `tmp`,
/// `proc`, `dev` and `workspace`.
pub fn busybox_rootfs(dir: &Path, marker: &str) -> Result<()> {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).with_context(|| format!("create {}", bin.display()))?;
    let busybox = bin.join("busybox");
    remove_non_dir(&busybox)?;
    fs::copy(HOST_BUSYBOX, &busybox).with_context(|| {
        format!("copy {HOST_BUSYBOX} (Debian package busybox-static, scripts/install-deps.sh)")
    })?;
    let out = Command::new(HOST_BUSYBOX)
        .arg("--list")
        .output()
        .with_context(|| format!("run {HOST_BUSYBOX} --list"))?;
    ensure!(
        out.status.success(),
        "{HOST_BUSYBOX} --list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = String::from_utf8(out.stdout).context("busybox --list is not UTF-8")?;
    for applet in list.lines().map(str::trim) {
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        replace_symlink("busybox", &bin.join(applet))?;
    }
    let usr_bin = dir.join("usr/bin");
    fs::create_dir_all(&usr_bin).with_context(|| format!("create {}", usr_bin.display()))?;
    replace_symlink("/bin/busybox", &usr_bin.join("env"))?;
    write_common(dir, marker)
}

/// A root filesystem made by [`debian_rootfs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianRootfs {
    /// Every package copied in, as `name=version`, sorted.
    pub packages: Vec<String>,
    /// Total size of the regular files in the root filesystem.
    pub bytes: u64,
    /// Dependencies left out because no alternative is installed here
    /// (mostly virtual packages), as written in the control field.
    pub skipped: Vec<String>,
}

/// An installed package as dpkg reports it.
#[derive(Debug, Clone)]
struct Installed {
    /// `name` or `name:arch`, as `dpkg-query -L` accepts it unambiguously.
    binary: String,
    version: String,
    /// `Pre-Depends` and `Depends`, comma-separated.
    depends: String,
}

/// Cached `dpkg-query` lookups.
struct Dpkg {
    arch: String,
    cache: HashMap<String, Option<Installed>>,
}

impl Dpkg {
    fn new() -> Result<Self> {
        let out = Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .context("run dpkg --print-architecture")?;
        ensure!(out.status.success(), "dpkg --print-architecture failed");
        let arch = String::from_utf8(out.stdout)
            .context("dpkg architecture is not UTF-8")?
            .trim()
            .to_owned();
        Ok(Self {
            arch,
            cache: HashMap::new(),
        })
    }

    /// The installed package `name` for this architecture (or `all`), if any.
    fn installed(&mut self, name: &str) -> Result<Option<Installed>> {
        if let Some(hit) = self.cache.get(name) {
            return Ok(hit.clone());
        }
        let out = Command::new("dpkg-query")
            .args([
                "-W",
                "-f",
                "${db:Status-Status}\t${Architecture}\t${binary:Package}\t${Version}\t${Pre-Depends}, ${Depends}\n",
                "--",
                name,
            ])
            .output()
            .context("run dpkg-query")?;
        // dpkg-query exits 1 for a name it does not know at all.
        let found = if out.status.success() {
            let text = String::from_utf8(out.stdout).context("dpkg-query output is not UTF-8")?;
            text.lines().find_map(|line| {
                let mut fields = line.splitn(5, '\t');
                let status = fields.next()?;
                let arch = fields.next()?;
                let binary = fields.next()?;
                let version = fields.next()?;
                let depends = fields.next().unwrap_or_default();
                (status == "installed" && (arch == self.arch || arch == "all")).then(|| Installed {
                    binary: binary.to_owned(),
                    version: version.to_owned(),
                    depends: depends.to_owned(),
                })
            })
        } else {
            None
        };
        self.cache.insert(name.to_owned(), found.clone());
        Ok(found)
    }

    /// The paths `dpkg-query -L` lists for an installed package.
    fn files(&self, pkg: &Installed) -> Result<Vec<PathBuf>> {
        let out = Command::new("dpkg-query")
            .args(["-L", "--", &pkg.binary])
            .output()
            .context("run dpkg-query -L")?;
        ensure!(
            out.status.success(),
            "dpkg-query -L {} failed: {}",
            pkg.binary,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).context("dpkg file list is not UTF-8")?;
        // Lines not starting with '/' are diversion notes ("diverted by ...").
        Ok(text
            .lines()
            .filter(|line| line.starts_with('/') && *line != "/.")
            .map(PathBuf::from)
            .collect())
    }
}

/// Parses a `Depends`-style field into groups of alternatives, each name
/// without version constraint, architecture qualifier (`:any`) or
/// restriction list.
fn parse_depends(field: &str) -> Vec<Vec<String>> {
    field
        .split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(|alt| {
                    let word = alt
                        .trim()
                        .split(|c: char| c.is_whitespace() || matches!(c, '(' | '[' | '<'))
                        .next()?;
                    let name = word.split(':').next()?;
                    (!name.is_empty()).then(|| name.to_owned())
                })
                .collect::<Vec<_>>()
        })
        .filter(|group| !group.is_empty())
        .collect()
}

/// Whether `path` (absolute) lies under one of [`EXCLUDED`].
fn is_excluded(path: &Path) -> bool {
    EXCLUDED.iter().any(|prefix| path.starts_with(prefix))
}

/// Maps a host path into `root`, resolving its parent directory on the host
/// (merged /usr: `/bin/sh` lands at `usr/bin/sh`). Returns the host-canonical
/// absolute path and the destination.
fn map_into(root: &Path, host: &Path) -> Result<(PathBuf, PathBuf)> {
    let parent = host
        .parent()
        .with_context(|| format!("{} has no parent", host.display()))?;
    let name = host
        .file_name()
        .with_context(|| format!("{} has no file name", host.display()))?;
    let canonical = fs::canonicalize(parent)
        .with_context(|| format!("canonicalize {}", parent.display()))?
        .join(name);
    let rel = canonical
        .strip_prefix("/")
        .with_context(|| format!("{} is not absolute", canonical.display()))?;
    let dest = root.join(rel);
    Ok((canonical, dest))
}

/// Copies one host path listed by dpkg into `root` (canonical); missing and
/// excluded paths are skipped.
fn copy_listed(root: &Path, host: &Path) -> Result<()> {
    if is_excluded(host) {
        return Ok(());
    }
    let meta = match fs::symlink_metadata(host) {
        Ok(meta) => meta,
        // Listed but gone (dpkg path-exclude, removed by hand): nothing to copy.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("stat {}", host.display())),
    };
    let (canonical, dest) = map_into(root, host)?;
    if is_excluded(&canonical) {
        return Ok(());
    }
    let parent = dest
        .parent()
        .with_context(|| format!("{} has no parent", dest.display()))?;
    fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    // The parent is a real directory inside the root (never through a link
    // the packages brought), so nothing below writes outside it.
    ensure!(
        fs::canonicalize(parent)?.starts_with(root),
        "{} resolves outside the root filesystem",
        parent.display()
    );
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
            return Ok(());
        }
        let target = fs::read_link(host).with_context(|| format!("readlink {}", host.display()))?;
        replace_symlink(target, &dest)?;
    } else if file_type.is_dir() {
        fs::create_dir_all(&dest).with_context(|| format!("create {}", dest.display()))?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .with_context(|| format!("chmod {}", dest.display()))?;
    } else if file_type.is_file() {
        // Never copy onto an existing link: it could point at the host.
        remove_non_dir(&dest)?;
        // fs::copy keeps the permission bits.
        fs::copy(host, &dest)
            .with_context(|| format!("copy {} to {}", host.display(), dest.display()))?;
    }
    Ok(())
}

/// Total size of the regular files under `dir`.
fn regular_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in walkdir::WalkDir::new(dir).follow_links(false) {
        let entry = entry?;
        if entry.file_type().is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Builds a root filesystem in `dir` (created if missing; it should be
/// empty) from Debian packages installed on this host: the dependency
/// closure of `packages` (first installed alternative of each group; groups
/// with none installed, such as virtual packages, are skipped), every path
/// `dpkg-query -L` lists except docs, man pages, info, locales and lintian
/// overrides. Merged /usr layout (`bin -> usr/bin`, ...), `usr/bin/cc ->
/// gcc` and `usr/bin/sh -> dash` when those packages are in the closure,
/// `etc/passwd`, `etc/group`, `etc/airlock-image` ([`DEBIAN_MARKER`]) and
/// empty `tmp`, `proc`, `dev`, `workspace`.
pub fn debian_rootfs(dir: &Path, packages: &[&str]) -> Result<DebianRootfs> {
    let mut dpkg = Dpkg::new()?;
    let mut selected: BTreeMap<String, Installed> = BTreeMap::new();
    let mut skipped = BTreeSet::new();
    let mut queue: VecDeque<String> = VecDeque::new();
    for &name in packages {
        ensure!(
            dpkg.installed(name)?.is_some(),
            "Debian package {name} is not installed on this host (scripts/install-deps.sh)"
        );
        queue.push_back(name.to_owned());
    }
    while let Some(name) = queue.pop_front() {
        if selected.contains_key(&name) {
            continue;
        }
        let Some(pkg) = dpkg.installed(&name)? else {
            continue;
        };
        for group in parse_depends(&pkg.depends) {
            let mut chosen = None;
            for alt in &group {
                if dpkg.installed(alt)?.is_some() {
                    chosen = Some(alt.clone());
                    break;
                }
            }
            match chosen {
                Some(alt) => queue.push_back(alt),
                None => {
                    skipped.insert(group.join(" | "));
                }
            }
        }
        selected.insert(name, pkg);
    }

    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let root = fs::canonicalize(dir).with_context(|| format!("canonicalize {}", dir.display()))?;
    for (link, target) in MERGED_USR {
        let target_dir = root.join(target);
        fs::create_dir_all(&target_dir)
            .with_context(|| format!("create {}", target_dir.display()))?;
        replace_symlink(target, &root.join(link))?;
    }
    for pkg in selected.values() {
        for path in dpkg.files(pkg)? {
            copy_listed(&root, &path)?;
        }
    }
    // update-alternatives and dash's /bin/sh are not in the file lists.
    if selected.contains_key("gcc") {
        replace_symlink("gcc", &root.join("usr/bin/cc"))?;
    }
    if selected.contains_key("dash") {
        replace_symlink("dash", &root.join("usr/bin/sh"))?;
    }
    write_common(&root, DEBIAN_MARKER)?;

    let mut packages: Vec<String> = selected
        .iter()
        .map(|(name, pkg)| format!("{name}={}", pkg.version))
        .collect();
    // As strings: `gcc-12=…` sorts before `gcc=…`.
    packages.sort();
    Ok(DebianRootfs {
        packages,
        bytes: regular_bytes(&root)?,
        skipped: skipped.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_fields_reduce_to_package_names() {
        let groups = parse_depends(
            "libc6 (>= 2.34), , python3:any, debconf (>= 0.5) | debconf-2.0, foo [amd64] <!nocheck>",
        );
        assert_eq!(
            groups,
            vec![
                vec!["libc6".to_owned()],
                vec!["python3".to_owned()],
                vec!["debconf".to_owned(), "debconf-2.0".to_owned()],
                vec!["foo".to_owned()],
            ]
        );
        assert!(parse_depends(", ").is_empty());
    }

    #[test]
    fn excluded_paths_match_whole_components() {
        assert!(is_excluded(Path::new("/usr/share/doc/gcc/copyright")));
        assert!(is_excluded(Path::new("/usr/share/man")));
        assert!(!is_excluded(Path::new("/usr/share/docs")));
        assert!(!is_excluded(Path::new("/usr/bin/gcc")));
    }
}

//! [`SourceCache`]: creating bare mirrors and fetching refspecs into them.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gix::bstr::ByteSlice as _;
use gix::remote::fetch::refmap::SpecIndex;
use sha2::{Digest as _, Sha256};

use super::error::{describe, redact_url, strip_userinfo};
use super::{
    CommitId, FetchLimits, Mirror, SourceCache, SourceError, is_full_hex_id, validate_ref_name,
};

/// Refspecs used when a bare commit id is asked for: every place a CI commit usually lives.
const ALL_REFS: [&str; 3] = [
    "+refs/heads/*:refs/heads/*",
    "+refs/tags/*:refs/tags/*",
    "+refs/changes/*:refs/changes/*",
];

/// File name of the advisory lock held inside a mirror while fetching into it.
const FETCH_LOCK: &str = "airlock-fetch.lock";

impl SourceCache {
    /// A cache whose mirrors live under `root` (created on first fetch).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SourceCache {
            root: root.into(),
            limits: FetchLimits::default(),
        }
    }

    /// The same cache with other fetch bounds.
    pub fn with_limits(mut self, limits: FetchLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the bare mirror for this URL:
    /// `root/<first 16 hex of sha256(url)>-<sanitised last path segment>.git`.
    ///
    /// The hash is taken over the URL with any userinfo removed: credentials are not part of a
    /// repository's identity, and a short unsalted hash of a password in a directory name would
    /// leak it to anyone who can list the cache.
    pub fn mirror_path(&self, url: &str) -> PathBuf {
        let identity = strip_userinfo(url);
        let digest = Sha256::digest(identity.as_bytes());
        let hash = hex::encode(digest);
        let name = format!("{}-{}.git", &hash[..16], last_segment(&identity));
        self.root.join(name)
    }

    /// Create the bare mirror if missing, then fetch `refspecs` from `url` into it.
    ///
    /// `url` may be `file://`, `git://`, `http(s)://` or a plain local path. Fetches are
    /// incremental: the mirror's refs are offered to the server as haves. Every refspec without
    /// a glob must match a ref on the remote, otherwise [`SourceError::RefNotFound`] names it.
    pub fn fetch(&self, url: &str, refspecs: &[String]) -> Result<Mirror, SourceError> {
        let specs: Vec<&str> = refspecs.iter().map(String::as_str).collect();
        let (mirror, _matched) = self.fetch_inner(url, &specs, Require::EveryExactSpec)?;
        Ok(mirror)
    }

    /// Fetch what is needed to resolve `rev` from `url` and return the mirror and the commit.
    ///
    /// * `refs/...` (a full ref name, e.g. a Gerrit change `refs/changes/NN/N/P`): fetches
    ///   `+rev:rev`.
    /// * 40 hex characters: the commit is looked for in the mirror, and if absent all branches,
    ///   tags and change refs are fetched; [`SourceError::CommitNotFound`] if it is still absent.
    /// * anything else: the branch `refs/heads/<rev>`, or failing that the tag `refs/tags/<rev>`.
    ///
    /// Annotated tags are peeled to their commit.
    pub fn fetch_rev(&self, url: &str, rev: &str) -> Result<(Mirror, CommitId), SourceError> {
        if rev.starts_with("refs/") {
            validate_ref_name(rev)?;
            let spec = format!("+{rev}:{rev}");
            let (mirror, matched) = self.fetch_inner(url, &[&spec], Require::EveryExactSpec)?;
            let id = matched
                .into_iter()
                .find(|(name, _)| name == rev)
                .map(|(_, id)| id)
                .ok_or_else(|| SourceError::RefNotFound {
                    url: redact_url(url),
                    reference: rev.to_owned(),
                })?;
            let commit = mirror.peel_to_commit(id, rev)?;
            return Ok((mirror, commit));
        }

        if is_full_hex_id(rev) {
            let wanted: CommitId = rev.parse()?;
            // A commit id names immutable content: when the mirror already has it, asking the
            // server again cannot change the answer, so skip the network.
            let path = self.mirror_path(url);
            if path.exists()
                && let Ok(mirror) = open_mirror(&path)
                && mirror.has_object(wanted.0)
            {
                let commit = mirror.peel_to_commit(wanted.0, rev)?;
                return Ok((mirror, commit));
            }
            let (mirror, _) = self.fetch_inner(url, &ALL_REFS, Require::Nothing)?;
            if !mirror.has_object(wanted.0) {
                return Err(SourceError::CommitNotFound {
                    url: redact_url(url),
                    commit: wanted.to_string(),
                });
            }
            let commit = mirror.peel_to_commit(wanted.0, rev)?;
            return Ok((mirror, commit));
        }

        let branch = format!("refs/heads/{rev}");
        let tag = format!("refs/tags/{rev}");
        validate_ref_name(&branch)?;
        // Both in one round trip; the answer is taken from what the *server* advertised, so a
        // stale branch left in the mirror never shadows a tag of the same name.
        let specs = [format!("+{branch}:{branch}"), format!("+{tag}:{tag}")];
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        let (mirror, matched) = match self.fetch_inner(url, &specs, Require::AnyExactSpec) {
            Ok(found) => found,
            Err(SourceError::RefNotFound { url, .. }) => {
                return Err(SourceError::RefNotFound {
                    url,
                    reference: format!("{branch} (nor {tag})"),
                });
            }
            Err(other) => return Err(other),
        };
        let pick = |name: &str| {
            matched
                .iter()
                .find(|(remote, _)| remote == name)
                .map(|(_, id)| *id)
        };
        let id = pick(&branch)
            .or_else(|| pick(&tag))
            .ok_or_else(|| SourceError::RefNotFound {
                url: redact_url(url),
                reference: branch.clone(),
            })?;
        let commit = mirror.peel_to_commit(id, rev)?;
        Ok((mirror, commit))
    }

    /// Shared body of the fetch functions. Returns the mirror and, for each remote ref that
    /// matched a refspec, its name and the object id the server advertised.
    fn fetch_inner(
        &self,
        url: &str,
        refspecs: &[&str],
        require: Require,
    ) -> Result<(Mirror, Vec<(String, gix::ObjectId)>), SourceError> {
        let safe_url = redact_url(url);
        if url.starts_with('-') {
            // Never let a "URL" reach a spawned git (file transport) as an option.
            return Err(SourceError::InvalidUrl {
                url: safe_url,
                message: "a repository URL cannot start with '-'".to_owned(),
            });
        }
        if refspecs.is_empty() {
            return Err(SourceError::NoRefspecs { url: safe_url });
        }
        // Parse every refspec up front so that an error names the offending one.
        for spec in refspecs {
            gix::refspec::parse(
                spec.as_bytes().as_bstr(),
                gix::refspec::parse::Operation::Fetch,
            )
            .map_err(|err| SourceError::InvalidRefspec {
                spec: (*spec).to_owned(),
                message: describe(&err, url),
            })?;
        }

        let path = self.mirror_path(url);
        ensure_mirror(&self.root, &path)?;
        // Serialise fetches into one mirror (threads and processes alike). An OS file lock is
        // released when the holder dies, so a crash cannot leave the mirror locked forever.
        let lock_path = path.join(FETCH_LOCK);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| SourceError::Io {
                action: "open the fetch lock",
                path: lock_path.clone(),
                source,
            })?;
        lock.lock().map_err(|source| SourceError::Io {
            action: "lock",
            path: lock_path.clone(),
            source,
        })?;

        let mirror = open_mirror(&path)?;
        let repo = mirror.repo.to_thread_local();
        let remote = repo
            .remote_at(url)
            .map_err(|err| SourceError::InvalidUrl {
                url: safe_url.clone(),
                message: describe(&err, url),
            })?
            // Only what the refspecs name: no tag auto-following, so a fetch of one change ref
            // does not drag in unrelated history.
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(refspecs.iter().copied(), gix::remote::Direction::Fetch)
            .map_err(|err| SourceError::InvalidRefspec {
                spec: refspecs.join(" "),
                message: describe(&err, url),
            })?;
        let connect_error = |message: String| SourceError::Connect {
            url: safe_url.clone(),
            message,
        };
        let connection = if remote
            .url(gix::remote::Direction::Fetch)
            .is_some_and(|u| u.scheme == gix::url::Scheme::Git)
        {
            // Same URL checks and protocol version as `connect` (which it would use), then our
            // own socket: see `connect_git_daemon`.
            let (daemon_url, version) = remote
                .sanitized_url_and_version(gix::remote::Direction::Fetch)
                .map_err(|err| connect_error(describe(&err, url)))?;
            let transport = connect_git_daemon(&daemon_url, version, &self.limits)
                .map_err(|err| connect_error(describe(&err, url)))?;
            remote.to_connection_with_transport(transport)
        } else {
            remote
                .connect(gix::remote::Direction::Fetch)
                .map_err(|err| connect_error(describe(&err, url)))?
        };
        let prepare = connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|err| SourceError::Connect {
                url: safe_url.clone(),
                message: describe(&err, url),
            })?;

        let ref_map = prepare.ref_map();
        let mut matched = Vec::new();
        for mapping in &ref_map.mappings {
            if let (Some(name), Some(id)) = (mapping.remote.as_name(), mapping.remote.as_id()) {
                matched.push((name.to_str_lossy().into_owned(), id.to_owned()));
            }
        }
        // gix only complains when *no* exact refspec matched; we want every exact one checked
        // (or at least one, for branch-or-tag lookups) and the missing ref named in the error.
        let mut missing = Vec::new();
        let mut exact = 0usize;
        for (index, spec) in ref_map.refspecs.iter().enumerate() {
            let spec = spec.to_ref();
            let Some(source) = spec.source() else {
                continue;
            };
            if source.find_byteset(b"*?[]\\").is_some() || gix::ObjectId::from_hex(source).is_ok() {
                continue;
            }
            exact += 1;
            let found = ref_map
                .mappings
                .iter()
                .any(|m| m.spec_index == SpecIndex::ExplicitInRemote(index));
            if !found {
                missing.push(source.to_str_lossy().into_owned());
            }
        }
        let fail = match require {
            Require::EveryExactSpec => !missing.is_empty(),
            Require::AnyExactSpec => exact > 0 && missing.len() == exact,
            Require::Nothing => false,
        };
        if fail {
            return Err(SourceError::RefNotFound {
                url: safe_url,
                reference: missing.join(", "),
            });
        }
        if ref_map.mappings.is_empty() {
            // Only possible with globs that match nothing (say, a server without change refs):
            // there is nothing to fetch, and gix would report that as a failure.
            tracing::info!(url = %safe_url, mirror = %path.display(), "no matching refs to fetch");
            drop(prepare);
            drop(lock);
            return Ok((mirror, matched));
        }

        // The pack transfer is interrupted at the deadline, whatever the transport.
        let interrupt = Arc::new(AtomicBool::new(false));
        let (done, watch) = std::sync::mpsc::channel::<()>();
        let timer = {
            let (interrupt, deadline) = (Arc::clone(&interrupt), self.limits.deadline);
            std::thread::spawn(move || {
                if watch.recv_timeout(deadline) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                    interrupt.store(true, Ordering::SeqCst);
                }
            })
        };
        let received = prepare.receive(gix::progress::Discard, &interrupt);
        drop(done);
        let _ = timer.join();
        let outcome = received.map_err(|err| SourceError::Fetch {
            url: safe_url.clone(),
            message: if interrupt.load(Ordering::SeqCst) {
                format!(
                    "stopped after {}: {}",
                    humantime::format_duration(self.limits.deadline),
                    describe(&err, url)
                )
            } else {
                describe(&err, url)
            },
        })?;
        let objects = match &outcome.status {
            gix::remote::fetch::Status::Change {
                write_pack_bundle, ..
            } => u64::from(write_pack_bundle.index.num_objects),
            gix::remote::fetch::Status::NoPackReceived { .. } => 0,
        };
        tracing::info!(
            url = %safe_url,
            mirror = %path.display(),
            refs = matched.len(),
            objects,
            "fetched"
        );
        drop(lock);
        Ok((mirror, matched))
    }
}

/// A `git://` connection as gix makes it, without the 40 ms stalls of Nagle against delayed ACKs.
///
/// The pkt-line protocol is written in many small writes on both sides, and each side then
/// waits for the other's answer: the pattern where Nagle's algorithm on the sender and delayed
/// ACKs on the receiver (40 ms on Linux) stall each other.
/// - Our requests: gix (like git) writes every pkt-line in pieces; with Nagle on, each piece
///   after the first waited for the daemon's delayed ACK. `TCP_NODELAY` sends them at once.
/// - The daemon's answers: `git daemon` does not set `TCP_NODELAY`, so after its first small
///   segment (`packfile`) the next one waited for our delayed ACK. Asking for an immediate ACK
///   before each read (`TCP_QUICKACK`, which the kernel resets by itself, hence every read)
///   releases it.
///
/// Measured against a daemon on the same host (ci-cluster/benches/latency.rs): fetching one new
/// commit went from about 150 ms to about 20 ms.
fn connect_git_daemon(
    url: &gix::Url,
    version: gix::protocol::transport::Protocol,
    limits: &FetchLimits,
) -> std::io::Result<Box<dyn gix::protocol::transport::client::blocking_io::Transport + Send>> {
    use std::net::{TcpStream, ToSocketAddrs as _};
    // Credentials are never sent over git://; refuse them as gix does rather than drop them.
    if url.user().is_some() {
        return Err(std::io::Error::other(
            "a git:// URL cannot carry a user name or password",
        ));
    }
    let host = url
        .host()
        .ok_or_else(|| std::io::Error::other("the git:// URL has no host"))?;
    let addr = (host, url.port.unwrap_or(9418))
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("the git server's host name did not resolve"))?;
    // gix's own timeout for this connect.
    let read = TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))?;
    read.set_nodelay(true)?;
    // A server that stops sending (or reading) fails the fetch instead of holding it.
    read.set_read_timeout(Some(limits.read_timeout))?;
    read.set_write_timeout(Some(limits.read_timeout))?;
    let write = read.try_clone()?;
    Ok(Box::new(
        gix::protocol::transport::client::git::blocking_io::Connection::new(
            QuickAckReader {
                socket: read,
                read: 0,
                limits: *limits,
                // The whole conversation, handshake included (the pack transfer's own
                // interrupt starts later): a server trickling a byte a minute ends here.
                deadline: std::time::Instant::now() + limits.deadline,
            },
            write,
            version,
            url.path.clone(),
            Some((host.to_owned(), url.port)),
            gix::protocol::transport::client::git::ConnectMode::Daemon,
            false,
        ),
    ))
}

/// The read half of a git daemon connection (see [`connect_git_daemon`]), counting what the
/// server sends against [`FetchLimits::max_bytes`] and naming a read timeout as one.
struct QuickAckReader {
    socket: std::net::TcpStream,
    read: u64,
    limits: FetchLimits,
    deadline: std::time::Instant,
}

impl std::io::Read for QuickAckReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Best effort: failing only brings the delayed ACK back.
        #[cfg(target_os = "linux")]
        let _ = socket2::SockRef::from(&self.socket).set_tcp_quickack(true);
        if std::time::Instant::now() >= self.deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the fetch took longer than {}",
                    humantime::format_duration(self.limits.deadline)
                ),
            ));
        }
        let n = match self.socket.read(buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the git server sent nothing for {}",
                        humantime::format_duration(self.limits.read_timeout)
                    ),
                ));
            }
            Err(e) => return Err(e),
        };
        self.read = self.read.saturating_add(n as u64);
        if self.read > self.limits.max_bytes {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!(
                    "the git server sent more than {} bytes in one fetch",
                    self.limits.max_bytes
                ),
            ));
        }
        Ok(n)
    }
}

/// How strictly `fetch_inner` insists that exact (non-glob) refspecs match a remote ref.
#[derive(Clone, Copy)]
enum Require {
    EveryExactSpec,
    AnyExactSpec,
    Nothing,
}

/// Create the bare mirror at `path` if it does not exist yet.
fn ensure_mirror(root: &Path, path: &Path) -> Result<(), SourceError> {
    if path.join("HEAD").exists() {
        return Ok(());
    }
    let mirror_error = |message: String| SourceError::Mirror {
        path: path.to_owned(),
        message,
    };
    fs::create_dir_all(root).map_err(|source| SourceError::Io {
        action: "create the source cache directory",
        path: root.to_owned(),
        source,
    })?;
    // Initialise under a temporary name and rename into place, so concurrent first fetches of
    // one URL never see (or both write) a half-initialised repository.
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let staging = root.join(format!(
        ".init-{}-{}-{nanos}",
        file_name,
        std::process::id()
    ));
    gix::init_bare(&staging).map_err(|err| mirror_error(describe(&err, "")))?;
    match fs::rename(&staging, path) {
        Ok(()) => {
            tracing::debug!(mirror = %path.display(), "created bare mirror");
            Ok(())
        }
        Err(err) => {
            // Best effort: the staging directory is ours and now useless either way.
            let _ = fs::remove_dir_all(&staging);
            if path.join("HEAD").exists() {
                // Someone else created it first; theirs is as good as ours.
                Ok(())
            } else {
                Err(mirror_error(format!(
                    "could not move the new repository into place: {err}"
                )))
            }
        }
    }
}

fn open_mirror(path: &Path) -> Result<Mirror, SourceError> {
    let repo = gix::ThreadSafeRepository::open(path).map_err(|err| SourceError::Mirror {
        path: path.to_owned(),
        message: format!(
            "{} (delete the directory to have it re-created on the next fetch)",
            describe(&err, "")
        ),
    })?;
    Ok(Mirror {
        repo,
        path: path.to_owned(),
    })
}

/// A file-name-safe rendering of the URL's last path segment, without `.git`.
fn last_segment(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/.git").unwrap_or(trimmed);
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    let segment = trimmed.rsplit(['/', ':', '\\']).next().unwrap_or_default();
    let mut clean: String = segment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    // No hidden names and nothing that reads as `.` or `..`.
    while clean.starts_with('.') {
        clean.remove(0);
    }
    if clean.is_empty() {
        clean.push_str("repo");
    }
    clean
}

//! [`SourceError`], and the redaction of URL credentials from everything it carries.

use std::path::PathBuf;

use super::CommitId;

/// Errors from fetching, resolving and reading sources.
///
/// Messages never contain a URL's userinfo (`user:password@`): URLs are redacted, and errors
/// coming from gix are flattened into redacted text rather than kept as `#[source]`, because
/// their own messages may quote the URL verbatim.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The repository URL could not be parsed.
    #[error("invalid repository URL {url}: {message}")]
    InvalidUrl {
        /// The URL, redacted.
        url: String,
        /// What was wrong with it.
        message: String,
    },
    /// A refspec could not be parsed.
    #[error("invalid fetch refspec {spec:?}: {message}")]
    InvalidRefspec {
        /// The refspec as given.
        spec: String,
        /// What was wrong with it.
        message: String,
    },
    /// `fetch` was called without any refspec.
    #[error("nothing to fetch from {url}: no refspecs were given")]
    NoRefspecs {
        /// The URL, redacted.
        url: String,
    },
    /// A revision given to `fetch_rev` is not usable as a ref name.
    #[error("invalid revision {rev:?}: {message}")]
    InvalidRev {
        /// The revision as given.
        rev: String,
        /// What was wrong with it.
        message: String,
    },
    /// A string that should be a full hex commit id is not one.
    #[error("{input:?} is not a full hexadecimal commit id")]
    InvalidCommitId {
        /// The string as given.
        input: String,
    },
    /// Creating or locking the bare mirror failed.
    #[error("cannot prepare the mirror at {path}: {message}")]
    Mirror {
        /// The mirror's directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A local repository could not be opened.
    #[error("cannot open the git repository at {path}: {message}")]
    Open {
        /// The path given.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Connecting to the remote or listing its refs failed.
    #[error("cannot reach the git repository {url}: {message}")]
    Connect {
        /// The URL, redacted.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The remote does not have a ref that was asked for by exact name.
    #[error(
        "the git repository {url} has no ref {reference} (check the branch name, tag, or change and patchset number)"
    )]
    RefNotFound {
        /// The URL, redacted.
        url: String,
        /// The ref that was asked for.
        reference: String,
    },
    /// Negotiating or receiving the pack failed.
    #[error("fetching from {url} failed: {message}")]
    Fetch {
        /// The URL, redacted.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A commit id was asked for but the remote does not have it on any branch, tag or change ref.
    #[error(
        "commit {commit} was not found in {url} (it is on no branch, tag or change ref the server advertises)"
    )]
    CommitNotFound {
        /// The URL, redacted.
        url: String,
        /// The commit that was asked for.
        commit: String,
    },
    /// A revision did not resolve to a commit in the local repository.
    #[error("revision {rev:?} does not name a commit in {repo}: {message}")]
    RevNotFound {
        /// The revision as given.
        rev: String,
        /// The repository searched.
        repo: PathBuf,
        /// Why it did not resolve.
        message: String,
    },
    /// A path given to `read_file` is not a plain relative path.
    #[error("invalid path {path:?} inside the repository: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `read_file` found something that is not a regular file.
    #[error("{path:?} in commit {commit} is a {kind}, not a regular file")]
    NotAFile {
        /// The path as given.
        path: String,
        /// The commit read from.
        commit: CommitId,
        /// What it is instead (directory, symlink, submodule).
        kind: &'static str,
    },
    /// A file is larger than the caller allows.
    #[error("{path:?} in commit {commit} is {size} bytes, more than the limit of {max} bytes")]
    FileTooLarge {
        /// The path as given.
        path: String,
        /// The commit read from.
        commit: CommitId,
        /// The blob's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The commit's tree is larger than a checkout may be; nothing was written.
    #[error("refusing to write commit {commit}: {what}; nothing was written")]
    TreeTooLarge {
        /// The commit being written.
        commit: CommitId,
        /// Which limit, where, and its setting.
        what: String,
    },
    /// A tree entry would escape or corrupt the destination directory; nothing was written.
    #[error(
        "refusing to write commit {commit}: tree entry {entry:?} is unsafe ({reason}); nothing was written"
    )]
    UnsafePath {
        /// The commit being written.
        commit: CommitId,
        /// The entry's path inside the tree, lossily decoded.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The destination for `materialise` already has content.
    #[error(
        "cannot write the source tree into {path}: it must be an empty directory or not exist yet"
    )]
    DestinationNotEmpty {
        /// The destination.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done ("create directory", "write file", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Reading objects from the local repository failed.
    #[error("cannot {action} in {repo}: {message}")]
    Repository {
        /// What was being done.
        action: String,
        /// The repository.
        repo: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Flatten an error and its causes into one line, with `url`'s credentials removed.
pub(super) fn describe(err: &(dyn std::error::Error + 'static), url: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(gix_err) = err.downcast_ref::<gix::Error>() {
        for cause in gix_err.iter_errors() {
            // Nested gix errors are expanded by the iterator itself; printing them too would
            // repeat their text.
            if cause.is::<gix::Error>() {
                continue;
            }
            let text = cause.to_string();
            if !text.is_empty() && parts.last() != Some(&text) {
                parts.push(text);
            }
        }
    }
    if parts.is_empty() {
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = current {
            let text = e.to_string();
            if !text.is_empty() && parts.last() != Some(&text) {
                parts.push(text);
            }
            current = e.source();
        }
    }
    redact_text(&parts.join(": "), url)
}

/// The userinfo (`user:password`) of a `scheme://userinfo@host/...` URL, if it has one.
fn userinfo(url: &str) -> Option<(usize, usize)> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_len].rfind('@')?;
    Some((scheme_end, scheme_end + at + 1))
}

/// `url` without its userinfo (used for the mirror's identity).
pub(super) fn strip_userinfo(url: &str) -> String {
    match userinfo(url) {
        Some((start, end)) => format!("{}{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// `url` with its userinfo replaced by `***`, fit for errors and logs.
pub(super) fn redact_url(url: &str) -> String {
    match userinfo(url) {
        Some((start, end)) => format!("{}***@{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// Remove credentials from an error text: every `scheme://userinfo@` in it, and any verbatim
/// or percent-decoded copy of `url`'s userinfo or password that gix may have quoted elsewhere.
pub fn redact_text(text: &str, url: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let start = pos + 3;
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'' || c == '>')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***@");
                rest = &tail[at + 1..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);

    if let Some((start, end)) = userinfo(url) {
        let info = &url[start..end - 1];
        let mut secrets = vec![info.to_owned()];
        if let Some((_, password)) = info.split_once(':') {
            secrets.push(password.to_owned());
            secrets.push(percent_decode(password));
        }
        secrets.push(percent_decode(info));
        // Longest first, so a password inside the whole userinfo does not leave the rest behind.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in secrets {
            if secret.len() >= 3 {
                out = out.replace(&secret, "***");
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            out.push(hi * 16 + lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

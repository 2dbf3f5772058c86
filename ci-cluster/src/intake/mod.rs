//! Forge webhook intake: authenticate a delivery, then turn its JSON into a
//! [`ForgeEvent`] (or say why it is ignored).
//!
//! These are pure functions: no I/O, no clock, no database. The HTTP server
//! calls them after it has enforced the 1 MiB body limit, and stores the
//! event under [`ForgeEvent::delivery`] and [`ForgeEvent::body_sha256`] so
//! that a replay creates nothing: neither a redelivery with the same id nor
//! the same authenticated body under new delivery headers, which no forge's
//! signature or token covers.
//!
//! Every parser authenticates **before** it parses any JSON, so an
//! unauthenticated sender never reaches the JSON parser. Error messages name
//! headers and fields, never their values and never a secret, so they can be
//! returned to the caller and logged as they are.

pub mod gerrit;
pub mod github;
pub mod gitlab;

#[cfg(test)]
mod tests;

use airlock_pipeline::spec::EventKind;
use axum::http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::ForgeEvent;
use crate::secret::Secret;

/// What intake decided.
// One value per delivery, consumed at once: boxing the event would only add
// an allocation and a less direct API.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    /// An authenticated event to store (run or cancel).
    Event(ForgeEvent),
    /// An authenticated delivery that needs no action, and why (e.g. `event 'status' is not acted on`).
    /// The server answers 2xx so the forge does not retry it.
    Ignored(String),
}

impl Intake {
    /// Records on the event the digest of the body it was parsed from: the
    /// exact bytes that were authenticated, whatever the headers say.
    fn with_body_digest(self, body: &[u8]) -> Intake {
        match self {
            Intake::Event(mut event) => {
                event.body_sha256 = Some(sha256_hex(body));
                Intake::Event(event)
            }
            ignored => ignored,
        }
    }
}

/// Why a delivery was refused. The messages name headers and fields, never
/// their values or a secret: they are safe to return to the caller and to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntakeError {
    /// The delivery did not prove it comes from the forge (HTTP 401).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Authenticated, but the body or a header is not what the forge sends (HTTP 400).
    #[error("malformed: {0}")]
    Malformed(String),
}

impl IntakeError {
    /// HTTP status to answer with: 401 or 400.
    pub fn status(&self) -> u16 {
        match self {
            IntakeError::Unauthorized(_) => 401,
            IntakeError::Malformed(_) => 400,
        }
    }

    /// Short label for metrics: `unauthorized` or `malformed`.
    pub fn reason(&self) -> &'static str {
        match self {
            IntakeError::Unauthorized(_) => "unauthorized",
            IntakeError::Malformed(_) => "malformed",
        }
    }
}

/// Shorthand for a [`IntakeError::Malformed`].
fn malformed(message: impl Into<String>) -> IntakeError {
    IntakeError::Malformed(message.into())
}

/// Shorthand for a [`IntakeError::Unauthorized`].
fn unauthorized(message: impl Into<String>) -> IntakeError {
    IntakeError::Unauthorized(message.into())
}

/// Refuses an empty configured secret. `Secret::load` already refuses one,
/// but a `Secret::new("")` would otherwise make an empty token (or an HMAC
/// with an empty key, which anyone can compute) authenticate.
fn require_configured(secret: &Secret) -> Result<(), IntakeError> {
    if secret.expose().is_empty() {
        return Err(unauthorized(
            "no webhook secret is configured for this forge",
        ));
    }
    Ok(())
}

/// The single value of a header, as text. `Ok(None)` when absent. A header
/// sent twice is refused: which copy a proxy or a framework picks differs,
/// and a delivery from the forge never repeats one.
fn single_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, String> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(format!("header {name} is sent more than once"));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| format!("header {name} is not visible ASCII"))
}

/// An optional header that becomes part of a key (delivery ids, hook ids):
/// printable ASCII without spaces, at most 200 bytes, so that keys stay
/// short and cannot carry line breaks into logs.
fn id_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, IntakeError> {
    let Some(value) = single_header(headers, name).map_err(malformed)? else {
        return Ok(None);
    };
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > 200 || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed(format!(
            "header {name} is not a delivery id (printable ASCII, at most 200 bytes)"
        )));
    }
    Ok(Some(value))
}

/// Parses the body. serde_json's own message is not used because a type
/// error can quote a piece of the input; the position is enough to debug.
fn parse_json(body: &[u8]) -> Result<Value, IntakeError> {
    serde_json::from_slice(body).map_err(|e| {
        // A form-encoded hook (GitHub's other content type) fails here; say how to fix it.
        if body.starts_with(b"payload=") {
            malformed(
                "body is form-encoded: configure the webhook with content type application/json",
            )
        } else {
            malformed(format!(
                "body is not JSON (error at line {}, column {})",
                e.line(),
                e.column()
            ))
        }
    })
}

/// The value at a dotted path (`pull_request.head.sha`); `None` when any
/// step is missing or the value is `null`, since forges send `null` for
/// "not applicable" (e.g. `head_commit` of a deleted branch).
fn get<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    let mut current = value;
    for step in path.split('.') {
        current = current.get(step)?;
    }
    if current.is_null() {
        None
    } else {
        Some(current)
    }
}

/// A string field that may be absent. Present but not a string counts as
/// absent: optional fields are for people (titles, names), never decisions.
fn opt_str<'v>(value: &'v Value, path: &str) -> Option<&'v str> {
    get(value, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A required string field.
fn req_str<'v>(value: &'v Value, path: &str) -> Result<&'v str, IntakeError> {
    match get(value, path) {
        None => Err(malformed(format!("missing field `{path}`"))),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(malformed(format!("field `{path}` is empty"))),
        Some(_) => Err(malformed(format!("field `{path}` is not a string"))),
    }
}

/// A non-negative integer sent either as a JSON number or as a decimal
/// string (old Gerrit sends `"654"`, newer sends `654`). `None` when absent.
fn opt_uint(value: &Value, path: &str) -> Result<Option<u64>, IntakeError> {
    let parsed = match get(value, path) {
        None => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        // Digits only: `str::parse` would also take a leading `+`.
        Some(Value::String(s))
            if !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse().ok()
        }
        Some(_) => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| malformed(format!("field `{path}` is not a non-negative integer")))
}

/// A forge timestamp at `path` in milliseconds since the Unix epoch: RFC 3339
/// (`2018-06-25T19:21:45Z`, GitHub and current GitLab) or GitLab's older
/// `2017-12-10 17:05:14 UTC`. `None` when absent or in any other form: it only
/// orders events of one change, and without it they are taken in arrival order.
fn opt_time_ms(value: &Value, path: &str) -> Option<u64> {
    let text = opt_str(value, path)?;
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S UTC")
                .map(|t| t.and_utc().timestamp_millis())
        })
        .or_else(|_| {
            chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S %z")
                .map(|t| t.timestamp_millis())
        })
        .ok()?;
    u64::try_from(parsed).ok()
}

/// A required non-negative integer (number or decimal string).
fn req_uint(value: &Value, path: &str) -> Result<u64, IntakeError> {
    opt_uint(value, path)?.ok_or_else(|| malformed(format!("missing field `{path}`")))
}

/// True for a full 40-hex lowercase commit id, the only form every forge sends.
fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Git's "no object" id, used by every forge for "the ref was deleted".
fn is_zero_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == b'0')
}

/// A required commit id field, validated.
fn req_commit(value: &Value, path: &str) -> Result<String, IntakeError> {
    let s = req_str(value, path)?;
    check_commit(s, path)?;
    Ok(s.to_string())
}

/// Validates a commit id read from `field`.
fn check_commit(s: &str, field: &str) -> Result<(), IntakeError> {
    if is_commit(s) {
        Ok(())
    } else {
        Err(malformed(format!(
            "field `{field}` is not a 40-hex lowercase commit id"
        )))
    }
}

/// Validates a full ref name before it reaches Git or a log line: `refs/`
/// prefix, and none of what `git check-ref-format` refuses (`..`, control
/// characters including NUL, space, `~^:?*[\`, `@{`, empty or dot-led
/// components, `.lock` components, trailing `/` or `.`).
fn check_ref(r: &str, field: &str) -> Result<(), IntakeError> {
    let bad = || {
        Err(malformed(format!(
            "field `{field}` is not a full, well-formed ref name"
        )))
    };
    if !r.starts_with("refs/") || r.len() > 1024 || r.ends_with('/') || r.ends_with('.') {
        return bad();
    }
    if r.contains("..") || r.contains("@{") {
        return bad();
    }
    if r.chars()
        .any(|c| c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return bad();
    }
    if r.split('/')
        .any(|c| c.is_empty() || c.starts_with('.') || c.ends_with(".lock"))
    {
        return bad();
    }
    Ok(())
}

/// Validates a repository name (`owner/name`, a GitLab namespace path, a
/// Gerrit project): it is matched against the config and may end up in paths
/// and log lines, so no control characters, no `..` component, no leading
/// `/`.
fn check_repository(name: &str, field: &str) -> Result<(), IntakeError> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && !name.starts_with('/')
        && !name.chars().any(char::is_control)
        && !name
            .split('/')
            .any(|c| c == ".." || c == "." || c.is_empty());
    if ok {
        Ok(())
    } else {
        Err(malformed(format!(
            "field `{field}` is not an acceptable repository name"
        )))
    }
}

/// Text for people (titles, author names): the first line, trimmed, without
/// control characters, at most 200 characters, so that a payload cannot put
/// line breaks or terminal escapes into logs and UIs.
pub(crate) fn display_text(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    line.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// An event or action name for an `Ignored` message: echoed only when it
/// looks like a name, so a message never carries arbitrary input.
fn name_for_message(name: &str) -> &str {
    let looks_like_a_name = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b' ' | b'.'));
    if looks_like_a_name { name } else { "?" }
}

/// Push or tag, from a full ref. Other refs (notes, Gerrit's change and meta
/// refs) are not something a pipeline is written for, so they are ignored.
fn branch_or_tag(git_ref: &str) -> Option<EventKind> {
    if git_ref.starts_with("refs/heads/") {
        Some(EventKind::Push)
    } else if git_ref.starts_with("refs/tags/") {
        Some(EventKind::Tag)
    } else {
        None
    }
}

/// Lowercase hex sha256 of the body: [`ForgeEvent::body_sha256`], and the
/// fallback delivery key when the forge sends no delivery id.
fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

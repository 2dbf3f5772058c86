//! Registry documents that are parsed whole (manifests, indexes, token answers), read through
//! a capped stream.
//!
//! oci-client reads a manifest response whole into memory before the caller can look at its
//! size, so a registry a job names could make the runner (not the job's cgroup) hold any
//! amount of memory: a 1 GiB manifest took `ci-cluster serve` to 1.1 GB. Here the declared
//! `Content-Length` is checked first and the body is counted while it arrives; reading stops
//! at the cap. Anonymous pulls from registries that want a bearer token (Docker Hub's
//! `WWW-Authenticate: Bearer realm=…` flow) are handled the same way.

use std::time::Duration;

use oci_client::Reference;

use crate::error_chain::error_chain;

use super::address::{PrivateAllowed, PublicOnlyResolver};
use super::{ImageError, ImageRef};

/// Largest token answer read (real ones are a few KiB).
const MAX_TOKEN_BYTES: usize = 64 << 10;
/// How much of a registry's error text is kept.
const MAX_REASON_BYTES: usize = 300;

/// An anonymous HTTP client for manifests: HTTPS except for the registries listed as insecure.
/// Used for job images here and by `airlock-verify` for base images and signatures.
#[derive(Debug, Clone)]
pub struct ManifestClient {
    http: reqwest::Client,
    insecure: Vec<String>,
    /// What may be reached on private addresses (see [`super::address`]).
    allowed: PrivateAllowed,
}

/// A registry error whose reason is cut to [`MAX_REASON_BYTES`] (it may quote a response body).
pub(super) fn registry_err(registry: &str, reason: impl std::fmt::Display) -> ImageError {
    let mut reason = reason.to_string();
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    ImageError::Registry {
        registry: registry.to_string(),
        reason,
    }
}

impl ManifestClient {
    /// A client with these timeouts for each connect and each read; only the `insecure`
    /// registries may be on private addresses.
    pub fn new(
        insecure: &[String],
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Result<Self, ImageError> {
        Self::with_private(insecure, &[], connect_timeout, read_timeout)
    }

    /// [`Self::new`], with `private` registries (HTTPS) allowed on private addresses too.
    pub fn with_private(
        insecure: &[String],
        private: &[String],
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Result<Self, ImageError> {
        let allowed = PrivateAllowed::new(insecure.iter().chain(private).cloned());
        let redirects = allowed.clone();
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .read_timeout(read_timeout)
            // Every name is resolved through the guard, at connect time: a registry, realm or
            // redirect target on a private address is refused unless the settings name it.
            .dns_resolver(std::sync::Arc::new(PublicOnlyResolver::new(
                allowed.clone(),
            )))
            // A redirect stays on its origin, or goes to HTTPS (blob storage); never to a
            // private address the settings do not name. A short chain at most.
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                let first = attempt.previous().first().cloned();
                let same_origin = first.is_some_and(|first| {
                    first.scheme() == attempt.url().scheme()
                        && first.host_str() == attempt.url().host_str()
                        && first.port_or_known_default() == attempt.url().port_or_known_default()
                });
                let allowed = redirects.check_url(attempt.url()).is_ok();
                if attempt.previous().len() > 3 {
                    attempt.error("more than 3 redirects")
                } else if allowed && (same_origin || attempt.url().scheme() == "https") {
                    attempt.follow()
                } else {
                    attempt.stop()
                }
            }))
            .build()
            .map_err(|e| registry_err("(client setup)", error_chain(&e)))?;
        Ok(ManifestClient {
            http,
            insecure: insecure.to_vec(),
            allowed,
        })
    }

    /// The manifest `digest` of `image`'s repository: at most `max` bytes, never more read.
    pub(super) async fn manifest(
        &self,
        image: &ImageRef,
        digest: &str,
        accept: &[&str],
        max: usize,
    ) -> Result<Vec<u8>, ImageError> {
        let reference = Reference::with_digest(
            image.registry().to_string(),
            image.path(),
            digest.to_string(),
        );
        self.fetch(&reference, accept, max).await?.ok_or_else(|| {
            registry_err(
                image.registry(),
                format!("manifest {digest}: 404 Not Found"),
            )
        })
    }

    /// The manifest `reference` names (by digest or tag): at most `max` bytes, never more read;
    /// `None` when the registry answers 404. The caller checks a digest.
    pub async fn fetch(
        &self,
        reference: &Reference,
        accept: &[&str],
        max: usize,
    ) -> Result<Option<Vec<u8>>, ImageError> {
        let digest = reference
            .digest()
            .or(reference.tag())
            .unwrap_or("latest")
            .to_string();
        let (url, host) = self.url(reference, "manifests", &digest);
        let what = format!("manifest {digest}");
        let response = self.authorized_get(&url, accept, &host).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = success(response, &what, &host).await?;
        read_capped(response, max, &what, &host).await.map(Some)
    }

    /// Streams the blob `digest` of `reference`'s repository into `out`, at most `max` bytes
    /// (reading stops there); returns its size and `sha256:<hex>` for the caller to check.
    pub async fn blob<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        reference: &Reference,
        digest: &str,
        max: u64,
        out: &mut W,
    ) -> Result<(u64, String), ImageError> {
        use sha2::Digest as _;
        use tokio::io::AsyncWriteExt as _;
        let (url, host) = self.url(reference, "blobs", digest);
        let what = format!("blob {digest}");
        let response = self.authorized_get(&url, &["*/*"], &host).await?;
        let mut response = success(response, &what, &host).await?;
        if response.content_length().is_some_and(|n| n > max) {
            return Err(ImageError::TooLarge { what, max });
        }
        let mut hasher = sha2::Sha256::new();
        let mut total = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| registry_err(&host, format!("{what}: {}", error_chain(&e))))?
        {
            total = total.saturating_add(chunk.len() as u64);
            if total > max {
                return Err(ImageError::TooLarge { what, max });
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|e| ImageError::io(&what, e))?;
        }
        out.flush().await.map_err(|e| ImageError::io(&what, e))?;
        Ok((total, format!("sha256:{}", hex::encode(hasher.finalize()))))
    }

    /// `scheme://registry/v2/<repository>/<kind>/<digest or tag>` and the registry's host.
    fn url(&self, reference: &Reference, kind: &str, tail: &str) -> (String, String) {
        let host = reference.resolve_registry().to_string();
        let scheme = if self.insecure.contains(&host) {
            "http"
        } else {
            "https"
        };
        let url = format!(
            "{scheme}://{host}/v2/{}/{kind}/{tail}",
            reference.repository()
        );
        (url, host)
    }

    /// GET `url`; on a bearer challenge, once more with an anonymous token from its realm.
    async fn authorized_get(
        &self,
        url: &str,
        accept: &[&str],
        host: &str,
    ) -> Result<reqwest::Response, ImageError> {
        let response = self.get(url, accept, None, host).await?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED
            && let Some(challenge) = response
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(BearerChallenge::parse)
        {
            let token = self.token(&challenge, host).await?;
            return self.get(url, accept, Some(&token), host).await;
        }
        Ok(response)
    }

    async fn get(
        &self,
        url: &str,
        accept: &[&str],
        token: Option<&str>,
        host: &str,
    ) -> Result<reqwest::Response, ImageError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| registry_err(host, e))?;
        self.allowed
            .check_url(&parsed)
            .map_err(|why| registry_err(host, why))?;
        let mut request = self
            .http
            .get(parsed)
            .header(reqwest::header::ACCEPT, accept.join(", "));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .map_err(|e| registry_err(host, error_chain(&e)))
    }

    /// An anonymous pull token from the challenge's realm.
    async fn token(&self, challenge: &BearerChallenge, host: &str) -> Result<String, ImageError> {
        check_realm(&challenge.realm, host, &self.allowed)
            .map_err(|why| registry_err(host, why))?;
        let mut query = Vec::new();
        if let Some(service) = &challenge.service {
            query.push(("service", service.as_str()));
        }
        if let Some(scope) = &challenge.scope {
            query.push(("scope", scope.as_str()));
        }
        let response = self
            .http
            .get(&challenge.realm)
            .query(&query)
            .send()
            .await
            .map_err(|e| registry_err(host, format!("token: {}", error_chain(&e))))?;
        if !response.status().is_success() {
            return Err(registry_err(
                host,
                format!("token from {}: {}", challenge.realm, response.status()),
            ));
        }
        let body = read_capped(response, MAX_TOKEN_BYTES, "token answer", host).await?;
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            registry_err(host, format!("token answer from {}: {e}", challenge.realm))
        })?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                registry_err(
                    host,
                    format!("token answer from {} holds no token", challenge.realm),
                )
            })
    }
}

/// Whether the runner may ask `realm` for a token on behalf of the registry at `host`. The
/// registry is the job's choice, so its challenge must not turn the runner (which sits on the
/// host's network, not the sandbox's) into a client of internal services: a realm on the
/// registry's own host and port is fine (the runner already talks to it); any other must be
/// HTTPS, and is refused at connect time if its name resolves to a private address (or now, if
/// it is one) that the settings do not allow.
fn check_realm(realm: &str, host: &str, allowed: &PrivateAllowed) -> Result<(), String> {
    let url = reqwest::Url::parse(realm).map_err(|e| format!("token realm '{realm}': {e}"))?;
    let realm_origin = format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(0)
    );
    let registry_origin = match host.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => host.to_string(),
        _ => format!("{host}:{}", url.port_or_known_default().unwrap_or(0)),
    };
    if realm_origin.eq_ignore_ascii_case(&registry_origin) {
        return Ok(());
    }
    if url.scheme() != "https" {
        return Err(format!(
            "token realm '{realm}' is on another host than the registry and not HTTPS"
        ));
    }
    allowed.check_url(&url)
}

/// A response that is a success, or the error naming its status and the start of its text.
async fn success(
    response: reqwest::Response,
    what: &str,
    host: &str,
) -> Result<reqwest::Response, ImageError> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let text = read_capped(response, MAX_REASON_BYTES, what, host)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    Err(registry_err(
        host,
        format!("{what}: {status} {}", text.trim()),
    ))
}

/// Reads `response`'s body, refusing it as soon as it is known to exceed `max` bytes: by its
/// declared length before reading, or by what arrived while reading.
async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
    what: &str,
    host: &str,
) -> Result<Vec<u8>, ImageError> {
    let too_large = || ImageError::TooLarge {
        what: what.to_string(),
        max: max as u64,
    };
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| registry_err(host, format!("{what}: {}", error_chain(&e))))?
    {
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `WWW-Authenticate: Bearer realm="…",service="…",scope="…"`.
#[derive(Debug, PartialEq, Eq)]
struct BearerChallenge {
    realm: String,
    service: Option<String>,
    scope: Option<String>,
}

impl BearerChallenge {
    fn parse(header: &str) -> Option<Self> {
        let (scheme, params) = header.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let (mut realm, mut service, mut scope) = (None, None, None);
        let mut rest = params.trim();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let after = after.trim_start();
            let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim(), &after[end..])
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "realm" => realm = Some(value.to_string()),
                "service" => service = Some(value.to_string()),
                "scope" => scope = Some(value.to_string()),
                _ => {}
            }
            rest = next.trim_start().trim_start_matches(',').trim_start();
        }
        let realm = realm?;
        // A token from anywhere but HTTP(S) is not a token.
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return None;
        }
        Some(BearerChallenge {
            realm,
            service,
            scope,
        })
    }
}

#[cfg(test)]
#[path = "capped_tests.rs"]
mod tests;

//! Answering requests like the API server: `GET`, server-side apply `PATCH` and `DELETE` with
//! their refusals and `Status` bodies, and injected failures.

use std::time::Instant;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

use super::paths::parse_path;
use super::{APPLY_PATCH, FakeApiServer, Inner, Recorded};

/// A failure to answer instead of handling a request.
#[derive(Debug, Clone)]
pub(super) struct Injected {
    method: Method,
    path: String,
    code: u16,
    reason: String,
    /// Remaining times (None: always).
    times: Option<u32>,
}

/// A `Status` the way the API server writes one.
pub fn status(code: u16, reason: &str, message: &str, parts: Option<(&str, &str, &str)>) -> Value {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": if code < 400 { "Success" } else { "Failure" },
        "code": code,
    });
    if code >= 400 {
        s["message"] = json!(message);
        s["reason"] = json!(reason);
    }
    if let Some((group, kind, name)) = parts {
        s["details"] = json!({"name": name, "group": group, "kind": kind});
    }
    s
}

fn respond(code: u16, body: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

impl FakeApiServer {
    pub(super) async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let bytes = body
            .collect_bytes()
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        let recorded = Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: serde_json::from_slice(&bytes).ok(),
            dry_run: false,
        };
        let recorded = Recorded {
            dry_run: recorded
                .query_pairs()
                .iter()
                .any(|(k, v)| k == "dryRun" && v == "All"),
            ..recorded
        };
        let mut inner = self.lock();
        inner.requests.push(recorded.clone());
        let now = Instant::now();
        let waiters = std::mem::take(&mut inner.waiters);
        for (pred, tx) in waiters {
            if pred(&recorded) {
                let _ = tx.send(now);
            } else {
                inner.waiters.push((pred, tx));
            }
        }
        let (code, body) = inner.answer(&parts.method, &recorded, &bytes);
        let mut due = Vec::new();
        for (pred, then) in std::mem::take(&mut inner.afters) {
            if pred(&recorded) {
                due.push(then);
            } else {
                inner.afters.push((pred, then));
            }
        }
        drop(inner);
        // Before the client sees the answer: the change lands between two requests for sure.
        for then in due {
            then(self);
        }
        respond(code, &body)
    }

    /// Answers `code` (a `Status` with `reason`) to `method path` `times` times (None: always).
    pub fn fail(&self, method: Method, path: &str, code: u16, reason: &str, times: Option<u32>) {
        self.lock().failures.push(Injected {
            method,
            path: path.to_owned(),
            code,
            reason: reason.to_owned(),
            times,
        });
    }

    /// Forgets every injected failure.
    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }
}

impl Inner {
    fn injected(&mut self, method: &Method, path: &str) -> Option<(u16, String)> {
        let i = self
            .failures
            .iter()
            .position(|f| f.method == *method && f.path == path)?;
        let f = &mut self.failures[i];
        let out = (f.code, f.reason.clone());
        match &mut f.times {
            Some(1) => {
                self.failures.remove(i);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(out)
    }

    fn answer(&mut self, method: &Method, r: &Recorded, raw: &[u8]) -> (u16, Value) {
        let Some(parts) = parse_path(&r.path) else {
            return (
                404,
                status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                    None,
                ),
            );
        };
        let name = parts.name.clone().unwrap_or_default();
        let details = (parts.group.as_str(), parts.plural.as_str(), name.as_str());
        if let Some((code, reason)) = self.injected(method, &r.path) {
            return (
                code,
                status(code, &reason, &format!("injected {reason}"), Some(details)),
            );
        }
        let not_found = || {
            let what = if parts.group.is_empty() {
                parts.plural.clone()
            } else {
                format!("{}.{}", parts.plural, parts.group)
            };
            (
                404,
                status(
                    404,
                    "NotFound",
                    &format!("{what} \"{name}\" not found"),
                    Some(details),
                ),
            )
        };
        let bad = |message: String| (400, status(400, "BadRequest", &message, Some(details)));
        if parts.name.is_none() {
            return (
                405,
                status(
                    405,
                    "MethodNotAllowed",
                    "collections are not served by this fake",
                    None,
                ),
            );
        }
        match *method {
            Method::GET => match self.objects.get(&r.path) {
                Some(s) => (200, s.object.clone()),
                None => not_found(),
            },
            Method::DELETE => match self.objects.get(&r.path) {
                Some(s) => {
                    // `preconditions` as the API server checks them: 409 on a mismatch.
                    let meta = &s.object["metadata"];
                    for (field, live) in [
                        ("uid", &meta["uid"]),
                        ("resourceVersion", &meta["resourceVersion"]),
                    ] {
                        let want = r
                            .body
                            .as_ref()
                            .and_then(|b| b.pointer(&format!("/preconditions/{field}")));
                        if let Some(want) = want
                            && want != live
                        {
                            let message = format!(
                                "Precondition failed: {field} in precondition: {want}, {field} in object meta: {live}"
                            );
                            return (409, status(409, "Conflict", &message, Some(details)));
                        }
                    }
                    let s = self.objects.remove(&r.path).expect("present");
                    let uid = s
                        .object
                        .pointer("/metadata/uid")
                        .cloned()
                        .unwrap_or(Value::Null);
                    let mut ok = status(200, "", "", Some(details));
                    ok["details"]["uid"] = uid;
                    (200, ok)
                }
                None => not_found(),
            },
            Method::PATCH => {
                if r.content_type.as_deref() != Some(APPLY_PATCH) {
                    return (
                        415,
                        status(
                            415,
                            "UnsupportedMediaType",
                            &format!(
                                "the body of the request was in an unknown format - accepted media types include: {APPLY_PATCH} (this fake serves apply only), got {:?}",
                                r.content_type
                            ),
                            Some(details),
                        ),
                    );
                }
                let query = r.query_pairs();
                let Some(manager) = query
                    .iter()
                    .find(|(k, _)| k == "fieldManager")
                    .map(|(_, v)| v.clone())
                else {
                    return bad("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into());
                };
                let force = query.iter().any(|(k, v)| k == "force" && v == "true");
                let Some(body) = r.body.clone().filter(Value::is_object) else {
                    return bad(format!(
                        "error decoding the apply body ({} bytes)",
                        raw.len()
                    ));
                };
                if body
                    .pointer("/apiVersion")
                    .and_then(Value::as_str)
                    .is_none()
                    || body.pointer("/kind").and_then(Value::as_str).is_none()
                {
                    return bad("apiVersion and kind must be set in an apply body".into());
                }
                let api_version = if parts.group.is_empty() {
                    parts.version.clone()
                } else {
                    format!("{}/{}", parts.group, parts.version)
                };
                if body["apiVersion"] != json!(api_version) {
                    return bad(format!(
                        "the API version in the data ({}) does not match the expected API version ({api_version})",
                        body["apiVersion"]
                    ));
                }
                let kind = body["kind"].as_str().unwrap_or("");
                let plural = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
                    &parts.group,
                    &parts.version,
                    kind,
                ))
                .plural;
                if plural != parts.plural {
                    return bad(format!(
                        "kind {kind} does not match resource {}",
                        parts.plural
                    ));
                }
                if body.pointer("/metadata/name").and_then(Value::as_str) != Some(name.as_str()) {
                    return bad("the name of the object does not match the name on the URL".into());
                }
                let body_ns = body.pointer("/metadata/namespace").and_then(Value::as_str);
                match (&parts.namespace, body_ns) {
                    (Some(url_ns), Some(ns)) if url_ns != ns => {
                        return bad("the namespace of the provided object does not match the namespace sent on the request".into());
                    }
                    (None, Some(_)) => {
                        return bad(
                            "a cluster-scoped object cannot carry metadata.namespace".into()
                        );
                    }
                    _ => {}
                }
                if let Some(existing) = self.objects.get(&r.path)
                    && existing.manager != manager
                    && !force
                {
                    return (
                        409,
                        status(
                            409,
                            "Conflict",
                            &format!(
                                "Apply failed with 1 conflict: conflict with \"{}\"",
                                existing.manager
                            ),
                            Some(details),
                        ),
                    );
                }
                let dry_run = r.dry_run;
                let answer = self.apply_as(&r.path, body, &manager, dry_run);
                (200, answer)
            }
            _ => (
                405,
                status(
                    405,
                    "MethodNotAllowed",
                    "method not served by this fake",
                    Some(details),
                ),
            ),
        }
    }
}

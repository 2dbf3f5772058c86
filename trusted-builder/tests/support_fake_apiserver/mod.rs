//! A scripted fake Kubernetes API server for kube's `Client`, following kube-rs's own test
//! pattern (`tower_test::mock::pair` + `Client::new(service, "default")`): no API server
//! installs here (FIELD-NOTES, "kube").
//!
//! It keeps objects in memory keyed by URL path (`/apis/apps/v1/namespaces/shop/deployments/web`,
//! `/api/v1/namespaces/shop/configmaps/airlock-inventory`) and answers like the real API server
//! for what the reconciler uses:
//!
//! * `GET` — the object, or a 404 `Status` (`reason: NotFound`);
//! * `PATCH` with `application/apply-patch+yaml` (server-side apply) — the body becomes the live
//!   object, with `uid`, `creationTimestamp`, `generation` (bumped when `spec` changes),
//!   `resourceVersion` (bumped when anything changes), `managedFields`, and for a Deployment a
//!   status that makes it healthy (Pods get `phase: Running`). Like the real server it refuses
//!   another patch type (415), an apply without `fieldManager` (400), a body whose name or
//!   namespace differs from the URL (400), and a takeover of another manager's object without
//!   `force=true` (409 Conflict);
//! * `DELETE` — removes the object and answers a `Status` success (404 when absent).
//!
//! Every request is recorded (method, path, query, content type, body) for assertions; a test
//! can put, change and remove live objects (drift, objects Airlock does not own), make requests
//! fail, and wait for a request to arrive (the benchmark's "applied" moment).
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Content type of a server-side apply.
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// One request as the fake API server received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// `GET`, `PATCH`, `DELETE`, ...
    pub method: String,
    /// URL path.
    pub path: String,
    /// Raw query string ("" when none).
    pub query: String,
    /// `content-type` header.
    pub content_type: Option<String>,
    /// The body parsed as JSON (None when empty or not JSON).
    pub body: Option<Value>,
}

impl Recorded {
    /// The query's pairs, decoded, sorted.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(self.query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        pairs.sort();
        pairs
    }

    /// `(method, path)`, for comparing sequences.
    pub fn line(&self) -> (String, String) {
        (self.method.clone(), self.path.clone())
    }
}

/// A failure to answer instead of handling a request.
#[derive(Debug, Clone)]
struct Injected {
    method: Method,
    path: String,
    code: u16,
    reason: String,
    /// Remaining times (None: always).
    times: Option<u32>,
}

/// A live object and who applied it last.
#[derive(Debug, Clone)]
struct Stored {
    object: Value,
    manager: String,
}

type Waiter = (
    Box<dyn Fn(&Recorded) -> bool + Send>,
    oneshot::Sender<Instant>,
);
type After = (
    Box<dyn Fn(&Recorded) -> bool + Send>,
    Box<dyn FnOnce(&FakeApiServer) + Send>,
);

#[derive(Default)]
struct Inner {
    objects: BTreeMap<String, Stored>,
    requests: Vec<Recorded>,
    failures: Vec<Injected>,
    waiters: Vec<Waiter>,
    afters: Vec<After>,
    resource_version: u64,
    uid: u64,
}

/// The fake API server; cheap to clone (shared state).
#[derive(Clone)]
pub struct FakeApiServer {
    inner: Arc<Mutex<Inner>>,
}

/// `/apis/apps/v1/namespaces/<ns>/deployments/<name>`.
pub fn deployment_path(namespace: &str, name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
}

/// `/api/v1/namespaces/<ns>/configmaps/<name>`.
pub fn configmap_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/configmaps/{name}")
}

/// The inventory ConfigMap of a namespace.
pub fn inventory_path(namespace: &str) -> String {
    configmap_path(namespace, "airlock-inventory")
}

/// What a URL path names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathParts {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<PathParts> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => (String::new(), (*version).to_owned(), rest),
        ["apis", group, version, rest @ ..] => ((*group).to_owned(), (*version).to_owned(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (plural, name) = match rest {
        [plural] => ((*plural).to_owned(), None),
        [plural, name] => ((*plural).to_owned(), Some((*name).to_owned())),
        _ => return None,
    };
    Some(PathParts {
        group,
        version,
        namespace,
        plural,
        name,
    })
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

fn int_at(v: &Value, ptr: &str) -> Option<i64> {
    v.pointer(ptr).and_then(Value::as_i64)
}

impl FakeApiServer {
    /// Starts the fake on the current tokio runtime; returns it and a `Client` talking to it.
    pub fn start() -> (FakeApiServer, kube::Client) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let server = FakeApiServer {
            inner: Arc::new(Mutex::new(Inner::default())),
        };
        let answering = server.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let response = answering.handle(request).await;
                send.send_response(response);
            }
        });
        (server, client)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
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

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Takes (and forgets) the requests so far.
    pub fn take_requests(&self) -> Vec<Recorded> {
        std::mem::take(&mut self.lock().requests)
    }

    /// The live object at `path`, as a GET would return it.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.lock().objects.get(path).map(|s| s.object.clone())
    }

    /// Paths of every stored object.
    pub fn paths(&self) -> Vec<String> {
        self.lock().objects.keys().cloned().collect()
    }

    /// Creates or replaces a live object as `manager` would (someone else's object, say);
    /// server fields are added as for an apply.
    pub fn put(&self, path: &str, object: Value, manager: &str) {
        let mut inner = self.lock();
        inner.store(path, object, manager);
    }

    /// Changes a live object in place (drift), bumping its resourceVersion (and generation when
    /// `spec` changed) like the server would; Deployment status is NOT recomputed, as a
    /// controller would only later. Panics when there is no such object.
    pub fn modify(&self, path: &str, change: impl FnOnce(&mut Value)) {
        let mut inner = self.lock();
        inner.resource_version += 1;
        let rv = inner.resource_version.to_string();
        let stored = inner
            .objects
            .get_mut(path)
            .unwrap_or_else(|| panic!("no object at {path}"));
        let before = stored.object.get("spec").cloned();
        change(&mut stored.object);
        let o = &mut stored.object;
        if o.get("spec").cloned() != before {
            let generation = int_at(o, "/metadata/generation").unwrap_or(1) + 1;
            o["metadata"]["generation"] = json!(generation);
        }
        o["metadata"]["resourceVersion"] = json!(rv);
    }

    /// Removes a live object without a request.
    pub fn remove(&self, path: &str) -> Option<Value> {
        self.lock().objects.remove(path).map(|s| s.object)
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

    /// Resolves with the moment the first request matching `pred` arrives (from now on).
    pub fn wait_for(
        &self,
        pred: impl Fn(&Recorded) -> bool + Send + 'static,
    ) -> oneshot::Receiver<Instant> {
        let (tx, rx) = oneshot::channel();
        self.lock().waiters.push((Box::new(pred), tx));
        rx
    }

    /// Runs `then` once, right after answering the first request matching `pred` (and before
    /// the client gets that answer): a change made "between" two requests of the reconciler.
    pub fn after(
        &self,
        pred: impl Fn(&Recorded) -> bool + Send + 'static,
        then: impl FnOnce(&FakeApiServer) + Send + 'static,
    ) {
        self.lock().afters.push((Box::new(pred), Box::new(then)));
    }

    /// The inventory stored in a namespace's `airlock-inventory` ConfigMap, parsed.
    pub fn inventory(&self, namespace: &str) -> Option<Value> {
        let cm = self.get(&inventory_path(namespace))?;
        let text = cm.pointer("/data/inventory.json")?.as_str()?.to_owned();
        serde_json::from_str(&text).ok()
    }

    /// Member names (`Kind/name`) of a namespace's stored inventory.
    pub fn inventory_members(&self, namespace: &str) -> Vec<String> {
        self.inventory(namespace)
            .and_then(|i| i.get("members").and_then(Value::as_object).cloned())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
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
                let stored = self.store(&r.path, body, &manager);
                (200, stored)
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

    /// Stores `object` at `path` with server fields; returns the stored object.
    fn store(&mut self, path: &str, mut object: Value, manager: &str) -> Value {
        let previous = self.objects.get(path).map(|s| s.object.clone());
        if let Some(parts) = parse_path(path)
            && let (Some(ns), Some(meta)) = (
                parts.namespace,
                object.get_mut("metadata").and_then(Value::as_object_mut),
            )
        {
            meta.entry("namespace").or_insert(json!(ns));
        }
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("status");
                if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                    for k in [
                        "uid",
                        "creationTimestamp",
                        "generation",
                        "resourceVersion",
                        "managedFields",
                    ] {
                        m.remove(k);
                    }
                }
            }
            v
        };
        if let Some(prev) = &previous
            && strip(prev) == strip(&object)
        {
            // A no-op apply: nothing changes, not even resourceVersion.
            return prev.clone();
        }
        let spec_changed = previous.as_ref().map(|p| p.get("spec")) != Some(object.get("spec"));
        let generation = match &previous {
            None => 1,
            Some(p) => {
                let g = int_at(p, "/metadata/generation").unwrap_or(1);
                if spec_changed { g + 1 } else { g }
            }
        };
        self.resource_version += 1;
        let uid = match previous
            .as_ref()
            .and_then(|p| p.pointer("/metadata/uid"))
            .cloned()
        {
            Some(u) => u,
            None => {
                self.uid += 1;
                json!(format!("00000000-0000-4000-8000-{:012}", self.uid))
            }
        };
        let created = previous
            .as_ref()
            .and_then(|p| p.pointer("/metadata/creationTimestamp"))
            .cloned()
            .unwrap_or(json!("2026-01-01T00:00:00Z"));
        let api_version = object.get("apiVersion").cloned().unwrap_or(Value::Null);
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("uid".into(), uid);
            meta.insert("creationTimestamp".into(), created);
            meta.insert("generation".into(), json!(generation));
            meta.insert(
                "resourceVersion".into(),
                json!(self.resource_version.to_string()),
            );
            meta.insert(
                "managedFields".into(),
                json!([{"manager": manager, "operation": "Apply", "apiVersion": api_version,
                        "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {}}]),
            );
        }
        match object.get("kind").and_then(Value::as_str) {
            Some("Deployment" | "StatefulSet") => {
                let replicas = int_at(&object, "/spec/replicas").unwrap_or(1);
                object["status"] = json!({
                    "observedGeneration": generation,
                    "replicas": replicas,
                    "availableReplicas": replicas,
                    "readyReplicas": replicas,
                    "updatedReplicas": replicas,
                });
            }
            Some("Pod") => object["status"] = json!({"phase": "Running"}),
            _ => {}
        }
        self.objects.insert(
            path.to_owned(),
            Stored {
                object: object.clone(),
                manager: manager.to_owned(),
            },
        );
        object
    }
}

/// Counts of requests by method.
pub fn by_method(requests: &[Recorded]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for r in requests {
        *out.entry(r.method.clone()).or_default() += 1;
    }
    out
}

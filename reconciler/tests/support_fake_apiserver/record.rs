//! Recorded requests: what the fake received, for assertions, and waiting for or reacting to a
//! request as it arrives.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::oneshot;

use super::FakeApiServer;

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
    /// `?dryRun=All`: answered, nothing changed.
    pub dry_run: bool,
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

    /// `(method, path)`, for comparing sequences; a dry run shows as `"PATCH dry-run"`.
    pub fn line(&self) -> (String, String) {
        (self.verb(), self.path.clone())
    }

    /// The method, or `"PATCH dry-run"` for a dry-run apply (which changes nothing).
    pub fn verb(&self) -> String {
        if self.dry_run {
            format!("{} dry-run", self.method)
        } else {
            self.method.clone()
        }
    }

    /// A request that may change something: not a read, not a dry run.
    pub fn writes(&self) -> bool {
        !self.dry_run && self.method != "GET"
    }
}

impl FakeApiServer {
    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Takes (and forgets) the requests so far.
    pub fn take_requests(&self) -> Vec<Recorded> {
        std::mem::take(&mut self.lock().requests)
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
}

/// Counts of requests by method (dry runs apart, as `"PATCH dry-run"`).
pub fn by_method(requests: &[Recorded]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for r in requests {
        *out.entry(r.verb()).or_default() += 1;
    }
    out
}

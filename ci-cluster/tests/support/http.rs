//! Blocking HTTP requests on top of reqwest's async client (the workspace
//! does not enable its blocking feature): each call runs on its own
//! current-thread runtime, with a 10 s timeout.

use std::time::Duration;

use serde_json::Value;

/// A response: status, headers, body.
pub struct Fetched {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    pub bytes: Vec<u8>,
}

impl Fetched {
    /// The body as JSON, or as a JSON string when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| Value::String(self.body.clone()))
    }

    pub fn content_type(&self) -> String {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }
}

/// One request; `body` is sent when it is not empty.
pub fn fetch(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> reqwest::Result<Fetched> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = reqwest::Client::new()
            .request(method, url)
            .timeout(Duration::from_secs(10));
        if !body.is_empty() {
            req = req.body(body.to_vec());
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await?;
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let bytes = resp.bytes().await?.to_vec();
        Ok(Fetched {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
        })
    })
}

/// A plain GET (no browser).
pub fn fetch_get(url: &str) -> reqwest::Result<Fetched> {
    fetch("GET", url, &[], b"")
}

/// One request: (status, JSON body or the text as a JSON string, content
/// type); (0, Null, "") when it gets no response.
pub fn request_full(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Value, String) {
    match fetch(method, url, headers, body) {
        Ok(r) => (r.status, r.json(), r.content_type()),
        Err(_) => (0, Value::Null, String::new()),
    }
}

pub fn request(method: &str, url: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
    let (status, body, _) = request_full(method, url, headers, body);
    (status, body)
}

pub fn get(url: &str) -> (u16, Value) {
    request("GET", url, &[], b"")
}

/// A POST that must get a response.
pub fn post(url: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
    let r = fetch("POST", url, headers, body).expect("post");
    (r.status, r.json())
}

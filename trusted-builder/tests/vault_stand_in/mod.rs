//! A stand-in for HashiCorp Vault, because no Vault server can be installed on
//! the machines these tests run on (it is in neither Debian, PyPI nor npm).
//! It follows Vault's documented HTTP API for the few endpoints Airlock uses,
//! so the real client (vaultrs) is exercised unchanged:
//!
//! - `GET  /v1/transit/keys/:name`: key metadata with `keys.{"1": {public_key: PEM}}`;
//! - `POST /v1/transit/sign/:name`: `input` (base64), `hash_algorithm`,
//!   `marshaling_algorithm`, `prehashed`; answers `vault:v1:<base64 DER>`;
//! - `GET  /v1/secret/data/:path`: KV v2 read, `data.data` + `data.metadata`.
//!
//! The token travels in `X-Vault-Token`; a wrong or missing one gets 403
//! `{"errors":["permission denied"]}` as Vault answers. vaultrs sends no
//! Content-Type header, so bodies are parsed as JSON whatever it says.
//! The stand-in signs with its own P-256 key (sigstore's implementation),
//! independent of the code under test, which never holds the private key.
//! Only sha2-256 with asn1 marshaling and prehashed false is implemented; any
//! other combination is refused with 400 so a client sending it is noticed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use sigstore::crypto::signing_key::ecdsa::EllipticCurve;
use sigstore::crypto::signing_key::ecdsa::ec::EcdsaKeys;
use sigstore::crypto::signing_key::{KeyPair, Signer};

/// A running stand-in; the server stops when the test's runtime ends.
pub struct VaultStandIn {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    state: Arc<Inner>,
}

struct Inner {
    token: String,
    keys: HashMap<String, EcdsaKeys>,
    kv: HashMap<String, Value>,
    /// The JSON bodies of every sign request, for assertions on what the client sent.
    sign_requests: Mutex<Vec<Value>>,
}

impl VaultStandIn {
    /// Starts on an ephemeral 127.0.0.1 port with one `ecdsa-p256` transit
    /// key per name in `keys` and the given KV v2 secrets (path -> data).
    pub async fn start(token: &str, keys: &[&str], kv: Vec<(&str, Value)>) -> Self {
        let keys = keys
            .iter()
            .map(|n| (n.to_string(), EcdsaKeys::new(EllipticCurve::P256).unwrap()))
            .collect();
        let kv = kv.into_iter().map(|(p, v)| (p.to_string(), v)).collect();
        let state = Arc::new(Inner {
            token: token.to_owned(),
            keys,
            kv,
            sign_requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/transit/keys/{name}", get(read_key))
            .route("/v1/transit/sign/{name}", post(sign))
            .route("/v1/secret/data/{*path}", get(read_kv2))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { address, state }
    }

    /// The public key PEM of a transit key, as the test's ground truth.
    pub fn public_key_pem(&self, name: &str) -> String {
        self.state.keys[name].public_key_to_pem().unwrap()
    }

    /// Bodies of the sign requests received so far.
    pub fn sign_requests(&self) -> Vec<Value> {
        self.state.sign_requests.lock().unwrap().clone()
    }
}

fn vault_error(code: StatusCode, msg: &str) -> Response {
    (code, axum::Json(json!({ "errors": [msg] }))).into_response()
}

/// Vault's response envelope around `data`.
fn ok(data: Value) -> Response {
    axum::Json(json!({
        "request_id": "00000000-0000-0000-0000-000000000000",
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": data,
        "wrap_info": null,
        "warnings": null,
        "auth": null,
    }))
    .into_response()
}

fn authorised(inner: &Inner, headers: &HeaderMap) -> bool {
    headers.get("x-vault-token").and_then(|v| v.to_str().ok()) == Some(inner.token.as_str())
}

async fn read_key(
    State(s): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if !authorised(&s, &headers) {
        return vault_error(StatusCode::FORBIDDEN, "permission denied");
    }
    let Some(key) = s.keys.get(&name) else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({ "errors": [] }))).into_response();
    };
    ok(json!({
        "type": "ecdsa-p256",
        "name": name,
        "deletion_allowed": false,
        "derived": false,
        "exportable": false,
        "allow_plaintext_backup": false,
        "keys": { "1": {
            "creation_time": "2026-11-01T00:00:00.000000000Z",
            "name": "P-256",
            "public_key": key.public_key_to_pem().unwrap(),
        }},
        "latest_version": 1,
        "min_available_version": 0,
        "min_decryption_version": 1,
        "min_encryption_version": 0,
        "supports_encryption": false,
        "supports_decryption": false,
        "supports_derivation": false,
        "supports_signing": true,
        "imported": false,
    }))
}

async fn sign(
    State(s): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    if !authorised(&s, &headers) {
        return vault_error(StatusCode::FORBIDDEN, "permission denied");
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return vault_error(StatusCode::BAD_REQUEST, "failed to parse JSON input");
    };
    s.sign_requests.lock().unwrap().push(req.clone());
    let Some(key) = s.keys.get(&name) else {
        return vault_error(StatusCode::BAD_REQUEST, "signing key not found");
    };
    // Vault's defaults when a field is absent.
    let hash = req["hash_algorithm"].as_str().unwrap_or("sha2-256");
    let marshaling = req["marshaling_algorithm"].as_str().unwrap_or("asn1");
    let prehashed = req["prehashed"].as_bool().unwrap_or(false);
    if hash != "sha2-256" || marshaling != "asn1" || prehashed {
        return vault_error(
            StatusCode::BAD_REQUEST,
            "stand-in supports sha2-256/asn1/not prehashed only",
        );
    }
    let Some(input) = req["input"].as_str().and_then(|i| B64.decode(i).ok()) else {
        return vault_error(StatusCode::BAD_REQUEST, "missing or invalid input");
    };
    let der = key.to_signer().unwrap().sign(&input).unwrap();
    ok(json!({ "signature": format!("vault:v1:{}", B64.encode(der)), "key_version": 1 }))
}

async fn read_kv2(
    State(s): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(path): Path<String>,
) -> Response {
    if !authorised(&s, &headers) {
        return vault_error(StatusCode::FORBIDDEN, "permission denied");
    }
    let Some(data) = s.kv.get(&path) else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({ "errors": [] }))).into_response();
    };
    ok(json!({
        "data": data,
        "metadata": {
            "created_time": "2026-11-01T00:00:00.000000000Z",
            "custom_metadata": null,
            "deletion_time": "",
            "destroyed": false,
            "version": 1,
        },
    }))
}

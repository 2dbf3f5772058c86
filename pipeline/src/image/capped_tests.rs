//! Manifests are read through a capped stream: a scripted registry on 127.0.0.1 serves
//! bodies of every size and shape, and counts what it managed to send.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;
use crate::image::ImageRef;
use crate::image::address::PrivateAllowed;

const CAP: usize = 4 << 20;

/// What the scripted registry answers to every request.
#[derive(Clone)]
enum Answer {
    /// An endless chunked body (until `limit` bytes or the client leaves).
    Endless { limit: u64 },
    /// A body of `len` bytes with its Content-Length.
    Sized { len: usize },
    /// A Content-Length far beyond the cap, then a few bytes.
    Declared { len: u64 },
    /// 401 with a bearer challenge unless the request carries `Bearer good-token`; the realm
    /// (`/token` on the same server) answers the token.
    Token {
        body: Vec<u8>,
        /// Another realm to name in the challenge than this server's `/token`.
        realm: Option<String>,
    },
    /// 302 to `to`.
    Redirect { to: String },
}

struct Registry {
    host: String,
    sent: Arc<AtomicU64>,
    /// Connections accepted.
    connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(answer: Answer) -> Registry {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let connections = Arc::new(AtomicU64::new(0));
    let accepted = Arc::clone(&connections);
    let realm = match &answer {
        Answer::Token {
            realm: Some(realm), ..
        } => realm.clone(),
        _ => format!("http://{host}/token"),
    };
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::Relaxed);
            let answer = answer.clone();
            let counter = Arc::clone(&counter);
            let realm = realm.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let request = String::from_utf8_lossy(&request).into_owned();
                let _ = respond(&mut socket, &answer, &request, &realm, &counter).await;
            });
        }
    });
    Registry {
        host,
        sent,
        connections,
        task,
    }
}

async fn respond(
    socket: &mut tokio::net::TcpStream,
    answer: &Answer,
    request: &str,
    realm: &str,
    counter: &AtomicU64,
) -> std::io::Result<()> {
    match answer {
        Answer::Endless { limit } => {
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await?;
            let chunk = vec![b' '; 64 << 10];
            let framed = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk,
                b"\r\n".to_vec(),
            ]
            .concat();
            while counter.load(Ordering::Relaxed) < *limit {
                socket.write_all(&framed).await?;
                counter.fetch_add(64 << 10, Ordering::Relaxed);
            }
            socket.write_all(b"0\r\n\r\n").await
        }
        Answer::Sized { len } => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
            socket.write_all(head.as_bytes()).await?;
            socket.write_all(&vec![b'{'; *len]).await?;
            counter.fetch_add(*len as u64, Ordering::Relaxed);
            Ok(())
        }
        Answer::Declared { len } => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n{{}}");
            socket.write_all(head.as_bytes()).await
        }
        Answer::Redirect { to } => {
            let head = format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n");
            socket.write_all(head.as_bytes()).await
        }
        Answer::Token { body, .. } => {
            if request.starts_with("GET /token?") {
                assert!(request.contains("service=test-registry"), "{request}");
                assert!(
                    request.contains("scope=repository%3Aimg%3Apull"),
                    "{request}"
                );
                let token = br#"{"token":"good-token"}"#;
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", token.len());
                socket.write_all(head.as_bytes()).await?;
                return socket.write_all(token).await;
            }
            if request
                .to_ascii_lowercase()
                .contains("authorization: bearer good-token")
            {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                socket.write_all(head.as_bytes()).await?;
                return socket.write_all(body).await;
            }
            let head = format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"test-registry\",scope=\"repository:img:pull\"\r\nContent-Length: 0\r\n\r\n"
            );
            socket.write_all(head.as_bytes()).await
        }
    }
}

fn client(host: &str) -> ManifestClient {
    ManifestClient::new(
        &[host.to_string()],
        Duration::from_secs(5),
        Duration::from_secs(5),
    )
    .unwrap()
}

fn image(host: &str) -> ImageRef {
    ImageRef::parse(&format!("{host}/img@sha256:{}", "a".repeat(64))).unwrap()
}

async fn fetch(registry: &Registry) -> Result<Vec<u8>, ImageError> {
    let image = image(&registry.host);
    client(&registry.host)
        .manifest(&image, image.digest(), &["application/json"], CAP)
        .await
}

#[tokio::test]
async fn an_endless_manifest_is_cut_off_at_the_cap() {
    // 256 MiB on offer; reading stops at 4 MiB (what the sockets buffer on top is the kernel's).
    let registry = serve(Answer::Endless { limit: 256 << 20 }).await;
    let err = fetch(&registry).await.unwrap_err();
    assert!(
        matches!(err, ImageError::TooLarge { max, .. } if max == CAP as u64),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = registry.sent.load(Ordering::Relaxed);
    assert!(sent < 32 << 20, "the registry got {sent} bytes out");
}

#[tokio::test]
async fn a_declared_length_past_the_cap_is_refused_before_reading() {
    let registry = serve(Answer::Declared { len: 1 << 40 }).await;
    let err = fetch(&registry).await.unwrap_err();
    assert!(matches!(err, ImageError::TooLarge { .. }), "{err}");
}

#[tokio::test]
async fn bodies_up_to_the_cap_are_read_whole() {
    // Control: exactly the cap is fine, one byte more is not.
    let registry = serve(Answer::Sized { len: CAP }).await;
    assert_eq!(fetch(&registry).await.unwrap().len(), CAP);
    let registry = serve(Answer::Sized { len: CAP + 1 }).await;
    assert!(matches!(
        fetch(&registry).await.unwrap_err(),
        ImageError::TooLarge { .. }
    ));
}

#[tokio::test]
async fn an_anonymous_bearer_token_is_fetched_from_the_realm() {
    let registry = serve(Answer::Token {
        body: b"{\"schemaVersion\":2}".to_vec(),
        realm: None,
    })
    .await;
    assert_eq!(fetch(&registry).await.unwrap(), b"{\"schemaVersion\":2}");
}

/// Issue 19: a registry's challenge must not make the runner a client of internal services.
#[tokio::test]
async fn a_token_realm_on_another_internal_host_is_never_asked() {
    // The "internal service" would hand out a token: it is never asked.
    let body = b"{\"schemaVersion\":2}".to_vec();
    let internal = serve(Answer::Token {
        body: body.clone(),
        realm: None,
    })
    .await;
    let realm = format!(
        "http://localhost:{}/token",
        internal.host.rsplit_once(':').unwrap().1
    );
    let registry = serve(Answer::Token {
        body,
        realm: Some(realm.clone()),
    })
    .await;
    let err = fetch(&registry).await.expect_err("realm on another host");
    assert!(err.to_string().contains("not HTTPS"), "{err}");
    assert_eq!(internal.connections.load(Ordering::Relaxed), 0);
    // Nor by a redirect: only the host asked is followed to.
    let redirecting = serve(Answer::Redirect {
        to: format!(
            "http://localhost:{}/v2/img/manifests/x",
            internal.host.rsplit_once(':').unwrap().1
        ),
    })
    .await;
    let err = fetch(&redirecting).await.expect_err("redirect elsewhere");
    assert!(err.to_string().contains("302"), "{err}");
    assert_eq!(internal.connections.load(Ordering::Relaxed), 0);
    // Over HTTPS a redirect or realm may leave the origin, but a name resolving to a private
    // address is refused when it is resolved, before any connection.
    let port = internal.host.rsplit_once(':').unwrap().1.to_string();
    let redirecting = serve(Answer::Redirect {
        to: format!("https://localhost:{port}/v2/img/manifests/x"),
    })
    .await;
    let err = fetch(&redirecting)
        .await
        .expect_err("https redirect to localhost");
    assert!(
        err.to_string().contains("private or local address"),
        "{err}"
    );
    let registry = serve(Answer::Token {
        body: b"{}".to_vec(),
        realm: Some(format!("https://localhost:{port}/token")),
    })
    .await;
    let err = fetch(&registry)
        .await
        .expect_err("https realm on localhost");
    assert!(
        err.to_string().contains("private or local address"),
        "{err}"
    );
    // Blobs go the same way (once, oci-client fetched their tokens from any realm).
    let mut sink = Vec::new();
    let reference = Reference::with_digest(
        registry.host.clone(),
        "img".into(),
        format!("sha256:{}", "a".repeat(64)),
    );
    let err = client(&registry.host)
        .blob(
            &reference,
            &format!("sha256:{}", "a".repeat(64)),
            1 << 20,
            &mut sink,
        )
        .await
        .expect_err("blob realm on localhost");
    assert!(
        err.to_string().contains("private or local address"),
        "{err}"
    );
    assert_eq!(internal.connections.load(Ordering::Relaxed), 0);
    for (realm, host, allowed) in [
        // Control: the registry's own host, whatever its scheme.
        ("http://127.0.0.1:5000/token", "127.0.0.1:5000", true),
        // Another host over plain HTTP, an internal address over HTTPS, a metadata service.
        (realm.as_str(), "127.0.0.1:5000", false),
        ("https://127.0.0.2/token", "127.0.0.1:5000", false),
        ("https://169.254.169.254/latest", "registry.example", false),
        ("https://10.1.2.3/token", "registry.example", false),
        ("https://[::1]/token", "registry.example", false),
        // A name is checked when it is resolved, at connect time.
        ("https://auth.docker.io/token", "registry-1.docker.io", true),
    ] {
        let result = check_realm(realm, host, &PrivateAllowed::default());
        assert_eq!(result.is_ok(), allowed, "{realm} for {host}: {result:?}");
    }
    for public in ["8.8.8.8", "2606:4700::1111"] {
        assert!(
            crate::image::address::is_public(&public.parse().unwrap()),
            "{public}"
        );
    }
    for private in [
        "100.64.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "fd00::1",
        "fe80::1",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",
        "2002:a00:1::",
        "fec0::1",
        "240.0.0.1",
        "198.18.0.1",
        "192.0.0.8",
        "0.0.0.0",
    ] {
        assert!(
            !crate::image::address::is_public(&private.parse().unwrap()),
            "{private}"
        );
    }
}

#[test]
fn bearer_challenges_are_parsed_and_odd_realms_refused() {
    let c = BearerChallenge::parse(
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
    )
    .unwrap();
    assert_eq!(c.realm, "https://auth.docker.io/token");
    assert_eq!(c.service.as_deref(), Some("registry.docker.io"));
    assert_eq!(c.scope.as_deref(), Some("repository:library/busybox:pull"));
    assert_eq!(BearerChallenge::parse(r#"Basic realm="x""#), None);
    assert_eq!(
        BearerChallenge::parse(r#"Bearer realm="file:///etc/passwd""#),
        None
    );
    assert_eq!(BearerChallenge::parse(r#"Bearer service="x""#), None);
}

#[tokio::test]
async fn the_registry_client_reads_manifests_through_the_cap() {
    // What a job's image pull does: before the cap was applied while reading, this read all
    // 256 MiB into the runner's memory and only then refused it.
    let registry = serve(Answer::Endless { limit: 256 << 20 }).await;
    let client =
        crate::image::RegistryClient::new(std::slice::from_ref(&registry.host), &[]).unwrap();
    let err = client.resolve(&image(&registry.host)).await.unwrap_err();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = registry.sent.load(Ordering::Relaxed);
    assert!(sent < 32 << 20, "the registry got {sent} bytes out ({err})");
    assert!(matches!(err, ImageError::TooLarge { .. }), "{err}");
}

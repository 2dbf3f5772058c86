//! Issue 19: the server's port is open to anyone; a client that sends slowly or holds
//! connections open must not hold the server's memory and tasks without end.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::*;

/// Everything the server sends until it closes the connection (or the client gives up).
fn read_until_closed(stream: &mut TcpStream) -> (String, bool) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // Reset by the server counts as closed; a client-side timeout does not.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&got).into_owned(), true);
            }
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

fn connect(server: &Server) -> TcpStream {
    let addr = server
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    TcpStream::connect(addr).expect("connect")
}

fn healthz(server: &Server) -> String {
    let mut stream = connect(server);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    read_until_closed(&mut stream).0
}

#[test]
fn slow_and_idle_clients_are_cut_off_and_connections_are_capped() {
    let world = World::new();
    let server = Server::start(
        &world.config(
            Config::default()
                .github()
                .project(Project::github("greet-gh"))
                .section("[http]\nread_timeout = \"3s\"\nmax_connections = 3"),
        ),
    );
    // Control: an ordinary request is answered.
    assert!(healthz(&server).starts_with("HTTP/1.1 200"), "control");

    // Part of the headers, then nothing; and nothing at all: both closed at the read timeout
    // (3 s here; the client waits 20).
    for (what, sent) in [
        (
            "unfinished headers",
            &b"POST /hooks/github HTTP/1.1\r\nHost: x\r\n"[..],
        ),
        ("a silent client", &b""[..]),
    ] {
        let started = std::time::Instant::now();
        let mut stream = connect(&server);
        stream.write_all(sent).expect("write");
        let (_, closed) = read_until_closed(&mut stream);
        assert!(closed, "{what}: still connected");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: closed only after {:?}",
            started.elapsed()
        );
    }
    // HTTP/2 (prior knowledge) is not spoken: one connection, one request.
    let mut h2 = connect(&server);
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .expect("write");
    let (reply, closed) = read_until_closed(&mut h2);
    assert!(closed && !reply.contains("HTTP/2"), "{reply:?}");
    // And a second request on one connection is not read.
    let mut twice = connect(&server);
    twice
        .write_all(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .expect("write");
    let (reply, _) = read_until_closed(&mut twice);
    assert_eq!(reply.matches("HTTP/1.1 200").count(), 1, "{reply}");

    // A body announced and never sent: 408 at the read timeout, nothing stored.
    let mut slow_body = connect(&server);
    slow_body
        .write_all(
            b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":",
        )
        .expect("write");
    let (reply, _) = read_until_closed(&mut slow_body);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("request_timeout"), "{reply}");

    // Three connections held open (the cap), then a fourth: closed at accept, unanswered.
    let held: Vec<TcpStream> = (0..3).map(|_| connect(&server)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let refused = healthz(&server);
    assert!(
        refused.is_empty(),
        "a fourth connection was served: {refused}"
    );
    // Once they are gone, the server answers again.
    drop(held);
    let answered = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(200));
        healthz(&server).starts_with("HTTP/1.1 200")
    });
    assert!(
        answered,
        "the server did not answer after the held connections closed"
    );
}

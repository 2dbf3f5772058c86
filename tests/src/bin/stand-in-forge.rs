//! `stand-in-forge --listen 127.0.0.1:PORT`: a local stand-in for Gerrit, GitHub and GitLab's
//! report APIs, for the demo. Each request is printed as one line (status, method, path, what
//! it means) followed by its JSON body, pretty-printed; credentials are never printed.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Instant;

use airlock_tests::forge::{RecordedRequest, StandInForge};

const USAGE: &str = "usage: stand-in-forge --listen ADDR   (e.g. --listen 127.0.0.1:8089)";

/// `Ok(None)` for `--help`.
fn parse_args() -> Result<Option<SocketAddr>, String> {
    let mut args = std::env::args().skip(1);
    let mut listen = None;
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => args
                .next()
                .ok_or_else(|| format!("--listen needs an address\n{USAGE}"))?,
            other => match other.strip_prefix("--listen=") {
                Some(value) => value.to_owned(),
                None => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            },
        };
        listen = Some(
            value
                .parse::<SocketAddr>()
                .map_err(|err| format!("bad --listen address {value:?}: {err}"))?,
        );
    }
    listen.map(Some).ok_or_else(|| USAGE.to_owned())
}

fn print_request(started: Instant, request: &RecordedRequest) {
    let mut text = format!(
        "{:8.3}s {}\n",
        started.elapsed().as_secs_f64(),
        request.summary_line()
    );
    match request.json() {
        Some(json) => {
            let pretty = serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string());
            for line in pretty.lines() {
                text.push_str("          ");
                text.push_str(line);
                text.push('\n');
            }
            // A Gerrit review message is several lines; JSON shows them as `\n`, so show it
            // again the way a reviewer reads it.
            if let Some(message) = json
                .get("message")
                .and_then(|m| m.as_str())
                .filter(|m| m.contains('\n'))
            {
                text.push_str("          message as Gerrit shows it:\n");
                for line in message.lines() {
                    text.push_str("          | ");
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        None if !request.body.is_empty() => {
            text.push_str(&format!(
                "          ({} bytes, not JSON)\n",
                request.body.len()
            ));
        }
        None => {}
    }
    // One write per request, so concurrent requests do not interleave their lines.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> ExitCode {
    let addr = match parse_args() {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let forge = match StandInForge::bind(addr).await {
        Ok(forge) => forge,
        Err(err) => {
            eprintln!("stand-in-forge: cannot listen on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    forge.on_request(move |request| print_request(started, request));
    println!("stand-in forge listening on {}", forge.url());
    println!("  gerrit: POST /a/changes/{{change}}/revisions/{{revision}}/review (basic auth)");
    println!("  github: POST /repos/{{owner}}/{{repo}}/statuses/{{sha}}");
    println!("  gitlab: POST /projects/{{id}}/statuses/{{sha}}");
    if let Err(err) = tokio::signal::ctrl_c().await {
        eprintln!("stand-in-forge: cannot wait for Ctrl-C: {err}");
        return ExitCode::FAILURE;
    }
    drop(forge);
    ExitCode::SUCCESS
}

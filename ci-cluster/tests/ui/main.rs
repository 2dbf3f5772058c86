//! The reviewer web UI end to end: the real server with a finished and a
//! running run, looked at in real headless Chromium (Debian's `chromium` and
//! `chromium-driver`) and with plain HTTP requests.
//!
//! Screenshots of the run pages go to `target/tmp/ui-artifacts/`.

mod browser;
mod scene;
#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use browser::Browser;
use scene::{HOSTILE_TITLE, Scene, artifacts_dir};
use serde_json::Value;
use sha2::Digest;
use support::{Fetched, fetch_get};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

#[test]
fn reviewer_pages_render_in_chromium_and_a_running_log_follows_live() {
    let world = Scene::start();
    let base = world.server.base.clone();
    let (done, live) = (world.finished, world.running);
    world.block_on(async {
        let b = Browser::start().await;

        // `/`: every project with its latest run.
        b.goto(&format!("{base}/")).await;
        let cards = b.text("div.cards").await;
        assert!(cards.contains("greet") && cards.contains("docs") && cards.contains("No run yet."), "{cards}");
        let greet = b.text("article.card").await;
        assert!(greet.contains(&format!("#{live}")) && greet.contains("running") && greet.contains("follow a file"), "{greet}");
        let recent = b.text("table.runs").await;
        assert!(recent.contains(HOSTILE_TITLE), "titles render as text: {recent}");
        save(&b, "home.png").await;

        // `/runs`, unfiltered and filtered by the GET form's parameters.
        b.goto(&format!("{base}/runs")).await;
        assert_eq!(b.count("table.runs tbody tr").await, 3);
        save(&b, "runs.png").await;
        b.goto(&format!("{base}/runs?project=greet&status=passed")).await;
        assert_eq!(b.count("table.runs tbody tr").await, 1);
        let row = b.text("table.runs tbody tr").await;
        assert!(row.contains(&format!("#{done}")) && row.contains("passed") && row.contains("change 1"), "{row}");
        assert_eq!(b.eval("return document.querySelector('select[name=status]').value;").await, "passed");
        assert_eq!(b.eval("return document.querySelector('select[name=project]').value;").await, "greet");
        b.goto(&format!("{base}/runs?project=docs")).await;
        assert!(b.text("main").await.contains("No run matches."));

        // `/changes/greet/1`: its patchset and the jobs' results.
        b.goto(&format!("{base}/changes/greet/1")).await;
        let change = b.text("ol.patchsets").await;
        for needle in ["Patchset 1", &format!("Run #{done}"), "passed", "test", "build"] {
            assert!(change.contains(needle), "change page lacks {needle}: {change}");
        }
        save(&b, "change.png").await;

        // `/runs/{finished}`.
        b.goto(&format!("{base}/runs/{done}")).await;
        assert!(b.text("#run-status").await.contains("passed"));
        assert_eq!(b.text(".run-title").await, HOSTILE_TITLE);
        let facts = b.text("dl.facts").await;
        for needle in ["refs/changes/01/1/1", "gerrit change event", "Dev Eloper", "change 1 · patchset 1"] {
            assert!(facts.contains(needle), "facts lack {needle}: {facts}");
        }
        // The graph: two jobs, build needs test (read from the commit's pipeline file).
        assert_eq!(b.count("svg.dag g.node").await, 2);
        assert_eq!(b.count("svg.dag path.edge").await, 1);
        assert_eq!(b.count("svg.dag g.node.st-passed").await, 2);
        // Passed jobs are closed; their logs are there.
        assert_eq!(b.eval("return document.getElementById('job-test').open;").await, false);
        let test_log = b.eval("return document.querySelector('#job-test ol.log').textContent;").await;
        assert!(test_log.as_str().is_some_and(|t| t.contains("ok   greet Airlock")), "{test_log}");
        let outputs = b.text("#outputs").await;
        assert!(outputs.contains("dist/greet") && outputs.contains("Download"), "{outputs}");
        let href = b.eval("return document.querySelector('#outputs a.button').getAttribute('href');").await;
        let href = href.as_str().unwrap_or_default().to_string();
        assert!(href.starts_with(&format!("/runs/{done}/outputs/")) && href.len() == format!("/runs/{done}/outputs/").len() + 64, "{href}");
        let reports = b.text("#reports").await;
        assert!(reports.contains("Gerrit change 1") && reports.contains("sent") && reports.contains("passed"), "{reports}");
        assert_eq!(b.eval("return typeof window.__pwned;").await, "undefined");
        save(&b, "run-page.png").await;

        // `/runs/{failed}`: the failed job is open, the others closed; the skipped one is drawn so.
        b.goto(&format!("{base}/runs/{}", world.failed)).await;
        assert!(b.text("#run-status").await.contains("failed"));
        assert_eq!(b.eval("return document.getElementById('job-unit').open;").await, true);
        assert_eq!(b.eval("return document.getElementById('job-lint').open;").await, false);
        assert_eq!(b.count("svg.dag g.node.st-failed").await, 1);
        assert_eq!(b.count("svg.dag g.node.st-skipped").await, 1);
        assert_eq!(b.count("svg.dag path.edge").await, 2);
        assert!(b.text("#job-unit ol.log").await.contains("expected 'Hello, Airlock!', got 'Howdy, Airlock!'"));
        assert_eq!(b.text("#job-unit .a-fg1.a-b").await, "FAILED");
        save(&b, "run-page-failed.png").await;

        // `/runs/{running}`: open log, colours, markup as text, then a live line.
        b.goto(&format!("{base}/runs/{live}")).await;
        assert!(b.text("#run-status").await.contains("running"));
        assert_eq!(b.eval("return document.getElementById('job-live').open;").await, true);
        assert_eq!(b.count("svg.dag g.node.st-running").await, 1);
        let log = b.text("#job-live ol.log").await;
        assert!(log.contains("started") && log.contains("<script>window.__pwned=3</script><img src=x onerror=\"window.__pwned=4\">"), "{log}");
        assert_eq!(b.text("#job-live .a-fg2").await, "green text");
        assert_eq!(b.text("#job-live .a-fg1.a-b").await, "bold red");
        b.wait_true("return document.getElementById('run').dataset.stream === 'open';", Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", b.log_text()));
        b.eval("window.__sameDocument = 42; return null;").await;

        world.append_live_line("appended line <b>bold</b> \x1b[31mred\x1b[0m <script>window.__pwned=5</script>");
        let seen = "return [...document.querySelectorAll('#job-live ol.log li')].some(li => li.textContent.includes('appended line'));";
        let took = b.wait_true(seen, Duration::from_secs(2)).await.unwrap_or_else(|e| panic!("{e}\n{}", world.server.log_text()));
        eprintln!("live line shown {took:?} after it was written");
        let last = b.eval("return document.querySelector('#job-live ol.log li:last-child .tx').textContent;").await;
        assert_eq!(last, "appended line <b>bold</b> red <script>window.__pwned=5</script>");
        assert_eq!(b.text("#job-live ol.log li:last-child .a-fg1").await, "red");
        assert_eq!(b.count("#job-live ol.log li:last-child b").await, 0);
        assert_eq!(b.eval("return window.__sameDocument;").await, 42, "the page was reloaded");
        assert_eq!(b.eval("return typeof window.__pwned;").await, "undefined");
        save(&b, "run-page-running.png").await;
        let narrow = b.full_page_png_at(480).await;
        std::fs::write(artifacts_dir().join("run-page-running-narrow.png"), narrow).expect("save screenshot");

        // The job ends: its state, the run's verdict and the report arrive without a reload.
        world.append_live_line("stop");
        let passed = "return document.getElementById('run-status').textContent.includes('passed');";
        b.wait_true(passed, Duration::from_secs(30)).await.unwrap_or_else(|e| panic!("{e}\n{}", world.server.log_text()));
        b.wait_true("return document.querySelector('#reports').textContent.includes('passed');", Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.count("details#job-live.st-passed").await, 1);
        assert_eq!(b.count("svg.dag g.node.st-passed").await, 1);
        assert!(b.text("#job-live .job-badge").await.contains("passed"));
        assert_eq!(b.eval("return window.__sameDocument;").await, 42, "the page was reloaded");
        assert_eq!(b.eval("return document.querySelectorAll('[data-since]').length;").await, 0, "durations still ticking");
        b.close().await;
    });
}

/// Saves a full-page screenshot under `target/tmp/ui-artifacts/`.
async fn save(b: &Browser, name: &str) {
    let png = b.full_page_png().await;
    std::fs::write(artifacts_dir().join(name), png).expect("save screenshot");
}

fn assert_safe_headers(url: &str, page: &Fetched) {
    let header = |name: &str| {
        page.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(header("content-security-policy"), CSP, "{url}");
    assert_eq!(header("x-content-type-options"), "nosniff", "{url}");
    assert_eq!(header("referrer-policy"), "no-referrer", "{url}");
}

#[test]
fn every_page_is_escaped_under_a_strict_csp_and_outputs_download_only_from_their_run() {
    let world = Scene::start();
    let base = world.server.base.clone();
    let (done, live) = (world.finished, world.running);
    let pages = [
        "/".to_string(),
        "/runs".into(),
        "/runs?project=greet&status=passed".into(),
        "/runs?page=2".into(),
        "/changes/greet/1".into(),
        format!("/runs/{done}"),
        format!("/runs/{}", world.failed),
        "/changes/greet/3".into(),
        format!("/runs/{live}"),
    ];
    for path in &pages {
        let url = format!("{base}{path}");
        let page = fetch_get(&url).expect("GET");
        assert_eq!(page.status, 200, "{url}");
        assert_safe_headers(&url, &page);
        // One script element, the file; no inline style or handler anywhere.
        assert_eq!(page.body.matches("<script").count(), 1, "{url}");
        assert!(
            page.body
                .contains("<script src=\"/assets/app.js\" defer></script>"),
            "{url}"
        );
        assert!(
            !page.body.contains(" style=") && !page.body.contains("onerror=\"window"),
            "{url}"
        );
        assert!(
            !page.body.contains("<script>window") && !page.body.contains("<img src=x"),
            "{url}"
        );
    }
    let run_page = fetch_get(&format!("{base}/runs/{done}")).expect("GET").body;
    assert!(
        run_page.contains("&lt;script&gt;window.__pwned=1&lt;/script&gt;"),
        "the title is escaped"
    );
    for (path, status) in [
        (format!("/runs/{}", live + 10), 404),
        ("/changes/greet/999".into(), 404),
        ("/runs?status=bogus".into(), 400),
    ] {
        let page = fetch_get(&format!("{base}{path}")).expect("GET");
        assert_eq!(page.status, status, "{path}");
        assert_safe_headers(&path, &page);
    }
    for (path, kind) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let asset = fetch_get(&format!("{base}{path}")).expect("GET");
        assert_eq!(asset.status, 200);
        assert!(
            asset.headers["content-type"]
                .to_str()
                .unwrap_or("")
                .starts_with(kind),
            "{path}"
        );
        assert_safe_headers(path, &asset);
    }

    // Downloads: the digest of run 1's output, only through run 1.
    let marker = format!("/runs/{done}/outputs/");
    let at = run_page.find(&marker).expect("a download link");
    let digest = run_page[at + marker.len()..at + marker.len() + 64].to_string();
    let file = fetch_get(&format!("{base}/runs/{done}/outputs/{digest}")).expect("GET");
    assert_eq!(file.status, 200);
    assert_eq!(hex::encode(sha2::Sha256::digest(&file.bytes)), digest);
    assert_eq!(
        file.headers["content-disposition"],
        "attachment; filename=\"greet\""
    );
    assert_eq!(file.headers["content-type"], "application/octet-stream");
    assert_safe_headers("download", &file);
    for path in [
        format!("/runs/{live}/outputs/{digest}"),
        format!("/runs/{done}/outputs/{}", "0".repeat(64)),
        format!("/runs/{done}/outputs/..%2F..%2Fci.sqlite"),
        format!("/runs/{done}/outputs/{}", "g".repeat(64)),
    ] {
        assert_eq!(
            fetch_get(&format!("{base}{path}")).expect("GET").status,
            404,
            "{path}"
        );
    }

    // The raw log is text, never HTML.
    let raw = fetch_get(&format!("{base}/runs/{live}/jobs/live/log.txt")).expect("GET");
    assert!(
        raw.headers["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/plain")
    );
    assert!(raw.body.contains("<script>window.__pwned=3</script>"));

    // The live stream of a finished run sends its jobs and the verdict, then ends.
    let finished = fetch_get(&format!("{base}/runs/{done}/live")).expect("a finite stream");
    assert!(
        finished.headers["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/event-stream")
    );
    assert!(
        finished.body.contains("event: job") && finished.body.contains("event: run"),
        "{}",
        finished.body
    );
    assert!(
        finished.body.contains("\"status\":\"passed\""),
        "{}",
        finished.body
    );
    // A running one sends escaped lines after the cursor it is given.
    let lines = world.block_on(read_stream_until(
        &format!("{base}/runs/{live}/live?after=1:live"),
        "__pwned=3",
    ));
    let data: Vec<Value> = lines
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v.get("seq").is_some())
        .collect();
    assert!(
        data.iter().all(|v| v["seq"].as_u64() > Some(1)),
        "sent lines before the cursor: {lines}"
    );
    let html = data
        .iter()
        .filter_map(|v| v["html"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        html.contains("&lt;script&gt;window.__pwned=3&lt;/script&gt;") && !html.contains("<script"),
        "{html}"
    );
}

/// Reads an SSE response until `needle` arrives (or 10 s pass).
async fn read_stream_until(url: &str, needle: &str) -> String {
    let mut response = reqwest::Client::new()
        .get(url)
        .send()
        .await
        .expect("stream");
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !text.contains(needle) {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!(
                "stream ended or stalled ({:?}) before {needle}: {text}",
                other.map(|r| r.map(|c| c.map(|b| b.len())))
            ),
        }
    }
    text
}

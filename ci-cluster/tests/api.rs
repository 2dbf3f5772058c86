//! The JSON API end to end: the real `ci-cluster serve` with runs that
//! passed, failed, are running and were cancelled through the admin API;
//! every answer (including 400, 401, 404, 409, 413, 422) is validated
//! against the server's own `/api/v1/openapi.json`.

#[path = "api/fixtures.rs"]
mod fixtures;
#[path = "api/openapi.rs"]
mod openapi;
#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use fixtures::*;
use openapi::OpenApi;
use serde_json::{Value, json};
use support::*;

/// Sends a request, checks its status and validates its JSON body against
/// the document; returns the body.
fn check(
    api: &mut OpenApi,
    server: &Server,
    method: &str,
    (path, template): (&str, &str),
    headers: &[(&str, String)],
    body: &[u8],
    want: u16,
) -> Value {
    let (status, reply, content_type) = request_full(method, &server.url(path), headers, body);
    assert_eq!(status, want, "{method} {path}: {reply}");
    assert!(
        content_type.starts_with("application/json"),
        "{method} {path}: content type {content_type}"
    );
    api.validate(method, template, status, &reply);
    reply
}

fn wait_log_lines(server: &Server, run: i64, job: &str, n: usize) {
    let started = Instant::now();
    loop {
        let (_, page) = get(&server.url(&format!("/api/v1/runs/{run}/jobs/{job}/log")));
        if page["lines"].as_array().is_some_and(|l| l.len() >= n) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no {n} log lines in {job}: {page}\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_api_response_validates_against_the_openapi_document() {
    let world = World::new();
    let server = Server::start(&config(&world));
    let (status, doc, content_type) =
        request_full("GET", &server.url("/api/v1/openapi.json"), &[], b"");
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let mut api = OpenApi::new(doc.clone());
    api.validate("get", "/api/v1/openapi.json", 200, &doc);

    let passed = world.change_with_pipeline(&server, 1, "greet: passes", PASSING);
    let failed = world.change_with_pipeline(&server, 2, "greet: fails", FAILING);
    assert_eq!(server.wait_final(passed)["run"]["status"], "passed");
    assert_eq!(server.wait_final(failed)["run"]["status"], "failed");
    let running = world.change_with_pipeline(&server, 3, "greet: ticks", &ticking(600, "0.2"));
    let cancelled = world.change_with_pipeline(&server, 4, "greet: waits", SLEEPING);
    server.wait_running(running);
    server.wait_running(cancelled);
    let path = format!("/api/v1/runs/{cancelled}/cancel");
    let reply = check(
        &mut api,
        &server,
        "POST",
        (&path, "/api/v1/runs/{id}/cancel"),
        &admin(),
        b"",
        200,
    );
    assert_eq!(reply["changed"], true, "{reply}");
    assert_eq!(server.wait_final(cancelled)["run"]["status"], "cancelled");
    wait_log_lines(&server, running, "tick", 4);

    // Projects: each with its newest run.
    let reply = check(
        &mut api,
        &server,
        "GET",
        ("/api/v1/projects", "/api/v1/projects"),
        &[],
        b"",
        200,
    );
    assert_eq!(reply["projects"][0]["name"], "greet");
    assert_eq!(reply["projects"][0]["latest_run"]["id"], cancelled);
    assert!(reply["projects"][1]["latest_run"].is_null(), "{reply}");

    // Runs: filters and pages.
    let list = |api: &mut OpenApi, query: &str, want: u16| {
        check(
            api,
            &server,
            "GET",
            (&format!("/api/v1/runs{query}"), "/api/v1/runs"),
            &[],
            b"",
            want,
        )
    };
    let ids = |page: &Value| {
        page["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|r| r["id"].as_i64().expect("id"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&list(&mut api, "", 200)),
        [cancelled, running, failed, passed]
    );
    let first = list(&mut api, "?per_page=3", 200);
    assert_eq!(
        (ids(&first), &first["next_page"]),
        (vec![cancelled, running, failed], &json!(2))
    );
    let second = list(&mut api, "?per_page=3&page=2", 200);
    assert_eq!(
        (ids(&second), &second["next_page"]),
        (vec![passed], &Value::Null)
    );
    assert_eq!(ids(&list(&mut api, "?status=failed", 200)), [failed]);
    assert_eq!(
        ids(&list(&mut api, "?status=&project=greet&change=1", 200)),
        [passed]
    );
    assert_eq!(
        ids(&list(&mut api, "?ref=refs/changes/03/3/1", 200)),
        [running]
    );
    assert!(ids(&list(&mut api, "?project=greet-gh", 200)).is_empty());
    for bad in ["?status=bogus", "?page=0", "?per_page=501", "?per_page=x"] {
        assert_eq!(list(&mut api, bad, 400)["error"], "malformed");
    }

    // One run each state, with event, jobs, outputs and reports.
    for id in [passed, failed, running, cancelled] {
        let path = format!("/api/v1/runs/{id}");
        let detail = check(
            &mut api,
            &server,
            "GET",
            (&path, "/api/v1/runs/{id}"),
            &[],
            b"",
            200,
        );
        assert_eq!(detail["run"]["id"], id);
        assert_eq!(detail["event"]["forge"], "gerrit");
    }
    let detail = server.run(passed);
    assert_eq!(
        detail["jobs"][0]["outputs"][0]["path"], "dist/out.txt",
        "{detail:#}"
    );
    assert_eq!(
        detail["run"]["url"],
        format!("{}/runs/{passed}", server.base)
    );
    assert!(
        !detail["reports"].as_array().expect("reports").is_empty(),
        "{detail:#}"
    );
    assert_eq!(
        server.run(cancelled)["run"]["reason"],
        "cancelled by an admin"
    );
    assert_eq!(
        check(
            &mut api,
            &server,
            "GET",
            ("/api/v1/runs/999", "/api/v1/runs/{id}"),
            &[],
            b"",
            404
        )["error"],
        "not_found"
    );
    assert_eq!(
        check(
            &mut api,
            &server,
            "GET",
            ("/api/v1/runs/abc", "/api/v1/runs/{id}"),
            &[],
            b"",
            400
        )["error"],
        "malformed"
    );

    // Logs: whole, sliced with after/limit, errors.
    let log =
        |run: i64, job: &str, query: &str| format!("/api/v1/runs/{run}/jobs/{job}/log{query}");
    let template = "/api/v1/runs/{id}/jobs/{job}/log";
    let page = check(
        &mut api,
        &server,
        "GET",
        (&log(passed, "build", ""), template),
        &[],
        b"",
        200,
    );
    assert!(
        page["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .any(|l| l["text"] == "built"),
        "{page}"
    );
    assert_eq!(
        (&page["run_status"], &page["job_state"], &page["more"]),
        (&json!("passed"), &json!("passed"), &json!(false))
    );
    let page = check(
        &mut api,
        &server,
        "GET",
        (&log(running, "tick", "?limit=3"), template),
        &[],
        b"",
        200,
    );
    assert_eq!(
        (
            &page["lines"][2]["text"],
            &page["next_after"],
            &page["more"]
        ),
        // Line 1 is the host-mode notice (these jobs name no image).
        (&json!("tick 2"), &json!(3), &json!(true))
    );
    let page = check(
        &mut api,
        &server,
        "GET",
        (&log(running, "tick", "?after=3&limit=1"), template),
        &[],
        b"",
        200,
    );
    assert_eq!(
        (
            &page["lines"][0]["seq"],
            &page["lines"][0]["text"],
            &page["run_status"]
        ),
        (&json!(4), &json!("tick 3"), &json!("running"))
    );
    let page = check(
        &mut api,
        &server,
        "GET",
        (&log(failed, "test", ""), template),
        &[],
        b"",
        200,
    );
    assert!(
        page["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .any(|l| l["text"] == "not ok 1 - greets"),
        "{page}"
    );
    check(
        &mut api,
        &server,
        "GET",
        (&log(passed, "nope", ""), template),
        &[],
        b"",
        404,
    );
    check(
        &mut api,
        &server,
        "GET",
        (&log(999, "build", ""), template),
        &[],
        b"",
        404,
    );
    check(
        &mut api,
        &server,
        "GET",
        (&log(passed, "build", "?limit=0"), template),
        &[],
        b"",
        400,
    );

    // A change's runs.
    let template = "/api/v1/changes/{project}/{change}";
    let change = check(
        &mut api,
        &server,
        "GET",
        ("/api/v1/changes/greet/2", template),
        &[],
        b"",
        200,
    );
    assert_eq!(
        (&change["runs"][0]["id"], &change["title"]),
        (&json!(failed), &json!("greet: fails"))
    );
    assert_eq!(
        check(
            &mut api,
            &server,
            "GET",
            ("/api/v1/changes/greet/99", template),
            &[],
            b"",
            404
        )["error"],
        "not_found"
    );
    assert_eq!(
        check(
            &mut api,
            &server,
            "GET",
            ("/api/v1/changes/nope/2", template),
            &[],
            b"",
            404
        )["error"],
        "unknown_project"
    );

    // Admin actions: 401 without the token, 404, 409, 202.
    let wrong = vec![("authorization", "Bearer wrong".to_string())];
    for (path, template) in [
        (
            format!("/api/v1/runs/{running}/cancel"),
            "/api/v1/runs/{id}/cancel",
        ),
        (
            format!("/api/v1/runs/{passed}/rerun"),
            "/api/v1/runs/{id}/rerun",
        ),
        (
            "/api/v1/projects/greet/runs".into(),
            "/api/v1/projects/{project}/runs",
        ),
    ] {
        for headers in [vec![], wrong.clone()] {
            assert_eq!(
                check(
                    &mut api,
                    &server,
                    "POST",
                    (&path, template),
                    &headers,
                    br#"{"ref": "refs/heads/main"}"#,
                    401
                )["error"],
                "unauthorized"
            );
        }
    }
    check(
        &mut api,
        &server,
        "POST",
        ("/api/v1/runs/999/cancel", "/api/v1/runs/{id}/cancel"),
        &admin(),
        b"",
        404,
    );
    check(
        &mut api,
        &server,
        "POST",
        ("/api/v1/runs/x/cancel", "/api/v1/runs/{id}/cancel"),
        &admin(),
        b"",
        400,
    );
    check(
        &mut api,
        &server,
        "POST",
        ("/api/v1/runs/999/rerun", "/api/v1/runs/{id}/rerun"),
        &admin(),
        b"",
        404,
    );
    check(
        &mut api,
        &server,
        "POST",
        ("/api/v1/runs/x/rerun", "/api/v1/runs/{id}/rerun"),
        &admin(),
        b"",
        400,
    );
    let path = format!("/api/v1/runs/{running}/rerun");
    assert_eq!(
        check(
            &mut api,
            &server,
            "POST",
            (&path, "/api/v1/runs/{id}/rerun"),
            &admin(),
            b"",
            409
        )["error"],
        "not_final"
    );
    let path = format!("/api/v1/runs/{passed}/rerun");
    let rerun = check(
        &mut api,
        &server,
        "POST",
        (&path, "/api/v1/runs/{id}/rerun"),
        &admin(),
        b"",
        202,
    );
    assert_eq!(rerun["rerun_of"], passed);
    let template = "/api/v1/projects/{project}/runs";
    let mut json_admin = admin();
    json_admin.push(("content-type", "application/json".into()));
    check(
        &mut api,
        &server,
        "POST",
        ("/api/v1/projects/greet/runs", template),
        &json_admin,
        b"{}",
        400,
    );
    check(
        &mut api,
        &server,
        "POST",
        ("/api/v1/projects/nope/runs", template),
        &json_admin,
        br#"{"ref": "refs/heads/main"}"#,
        404,
    );
    check(
        &mut api,
        &server,
        "POST",
        ("/api/v1/projects/greet/runs", template),
        &json_admin,
        &vec![b' '; 2 << 20],
        413,
    );
    check(
        &mut api,
        &server,
        "POST",
        ("/api/v1/projects/greet/runs", template),
        &json_admin,
        br#"{"ref": "refs/heads/nope"}"#,
        422,
    );
    let manual = check(
        &mut api,
        &server,
        "POST",
        ("/api/v1/projects/greet/runs", template),
        &json_admin,
        br#"{"ref": "refs/heads/main"}"#,
        202,
    );
    assert_eq!(manual["status"], "queued");
    assert_eq!(
        server.wait_final(rerun["run"].as_i64().expect("run"))["run"]["status"],
        "passed"
    );

    // Webhooks: refusals and acceptances share the documented shapes.
    let gerrit = ("/hooks/gerrit", "/hooks/gerrit");
    check(&mut api, &server, "POST", gerrit, &[], b"{}", 401);
    check(
        &mut api,
        &server,
        "POST",
        gerrit,
        &gerrit_headers(),
        b"{\"type\": ",
        400,
    );
    check(
        &mut api,
        &server,
        "POST",
        gerrit,
        &gerrit_headers(),
        &vec![b' '; 2 << 20],
        413,
    );
    let other = String::from_utf8(patchset_created(1, 1, &world.repo.head(), "x"))
        .expect("utf8")
        .replace("\"project\":\"greet\"", "\"project\":\"elsewhere\"");
    check(
        &mut api,
        &server,
        "POST",
        gerrit,
        &gerrit_headers(),
        other.as_bytes(),
        404,
    );
    check(
        &mut api,
        &server,
        "POST",
        gerrit,
        &gerrit_headers(),
        br#"{"type": "reviewer-added"}"#,
        202,
    );
    let github = [
        ("x-github-event", "ping".to_string()),
        ("x-github-delivery", "d".into()),
        ("x-hub-signature-256", format!("sha256={}", "0".repeat(64))),
    ];
    check(
        &mut api,
        &server,
        "POST",
        ("/hooks/github", "/hooks/github"),
        &github,
        b"{}",
        401,
    );
    check(
        &mut api,
        &server,
        "POST",
        ("/hooks/gitlab", "/hooks/gitlab"),
        &[],
        b"{}",
        404,
    );

    // The plain-text operations.
    let (status, text, content_type) = request_full("GET", &server.url("/metrics"), &[], b"");
    assert!(
        status == 200
            && content_type.starts_with("application/openmetrics-text")
            && text.as_str().is_some_and(|t| t.ends_with("# EOF\n"))
    );
    api.checked.insert(("get".into(), "/metrics".into(), 200));
    assert_eq!(get(&server.url("/healthz")), (200, json!("ok")));
    api.checked.insert(("get".into(), "/healthz".into(), 200));

    let unchecked: Vec<_> = api
        .operations()
        .into_iter()
        .filter(|(m, p)| !api.checked.iter().any(|(cm, cp, _)| cm == m && cp == p))
        .collect();
    assert!(
        unchecked.is_empty(),
        "documented but never exercised: {unchecked:?}"
    );
}

/// The validation above proves something only if it rejects what the
/// document does not describe.
#[test]
fn the_validator_rejects_bodies_the_document_does_not_describe() {
    let doc: Value = serde_json::from_str(ci_cluster::api::openapi_text()).expect("document");
    let mut api = OpenApi::new(doc);
    let good = json!({"error": "not_found", "message": "no run 9"});
    api.validate("get", "/api/v1/runs/{id}", 404, &good);
    let page = json!({"run": 1, "job": "b", "job_state": null, "run_status": "running", "lines": [{"seq": 1, "at_ms": 5, "stream": "stdout", "text": "x"}], "next_after": 1, "more": false});
    api.validate("get", "/api/v1/runs/{id}/jobs/{job}/log", 200, &page);
    let bad = [
        (
            "get",
            "/api/v1/runs/{id}",
            404,
            json!({"error": "not_found"}),
        ),
        (
            "get",
            "/api/v1/runs/{id}",
            404,
            json!({"error": "not_found", "message": "m", "extra": 1}),
        ),
        ("get", "/api/v1/runs/{id}/jobs/{job}/log", 200, {
            let mut p = page.clone();
            p["lines"][0]["stream"] = json!("stdin");
            p
        }),
        ("get", "/api/v1/runs/{id}/jobs/{job}/log", 200, {
            let mut p = page.clone();
            p["run_status"] = json!("paused");
            p
        }),
        ("get", "/api/v1/runs/{id}", 418, good.clone()),
    ];
    for (method, template, status, body) in bad {
        let mut api = OpenApi::new(api_doc());
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            api.validate(method, template, status, &body)
        }));
        assert!(
            result.is_err(),
            "{method} {template} {status} accepted {body}"
        );
    }
}

fn api_doc() -> Value {
    serde_json::from_str(ci_cluster::api::openapi_text()).expect("document")
}

#[path = "api/admin.rs"]
mod admin;
#[path = "api/cli.rs"]
mod cli;
#[path = "api/metrics.rs"]
mod metrics;

//! Reporter tests: text and mapping rules, backoff, redaction, and each client against the
//! stand-in forge from `airlock-tests`.

use std::time::Duration;

use airlock_tests::forge::{RecordedRequest, StandInForge};
use base64::Engine as _;
use serde_json::{Value, json};

use super::gerrit::{parse_review_result, review_input, verified_vote};
use super::github::github_state;
use super::gitlab::gitlab_state;
use super::*;
use crate::secret::Secret;

const SHA: &str = "53634573c37a0b5a47c9d7e8f1a2b3c4d5e6f708";
const PASSWORD: &str = "gerrit-http-password-42";
const TOKEN: &str = "ghp_not_a_real_token_but_secret";

fn body(status: ReportStatus) -> ReportBody {
    ReportBody {
        run_id: 42,
        project: "demo".to_owned(),
        status,
        url: "https://ci.example/runs/42".to_owned(),
        git_ref: "refs/changes/34/1234/2".to_owned(),
        commit: SHA.to_owned(),
        jobs: vec![
            JobLine {
                name: "test".to_owned(),
                state: "passed".to_owned(),
                duration_ms: Some(1_234),
            },
            JobLine {
                name: "build".to_owned(),
                state: "passed".to_owned(),
                duration_ms: Some(125_000),
            },
        ],
    }
}

fn failed_body() -> ReportBody {
    let mut b = body(ReportStatus::Failed);
    b.jobs.push(JobLine {
        name: "lint".to_owned(),
        state: "failed".to_owned(),
        duration_ms: Some(3_400),
    });
    b.jobs.push(JobLine {
        name: "deploy".to_owned(),
        state: "skipped".to_owned(),
        duration_ms: None,
    });
    b
}

// --- text --------------------------------------------------------------------------------

#[test]
fn review_message_lists_each_job_with_state_duration_and_run_link() {
    let message = review_message(&failed_body());
    assert_eq!(
        message,
        "Airlock build failed: 1 of 4 jobs did not pass.\n\
         \n\
         - ✔ test passed (1.2s)\n\
         - ✔ build passed (2m 05s)\n\
         - ✘ lint failed (3.4s)\n\
         - ○ deploy skipped\n\
         \n\
         Run 42 of demo (refs/changes/34/1234/2 at 53634573c37a): https://ci.example/runs/42"
    );
}

#[test]
fn review_message_headlines_and_empty_job_lists() {
    assert!(
        review_message(&body(ReportStatus::Passed))
            .starts_with("Airlock build passed: 2 jobs.\n\n- ✔ test passed (1.2s)\n")
    );
    assert!(
        review_message(&body(ReportStatus::Cancelled)).starts_with("Airlock build cancelled.\n")
    );
    let mut error = body(ReportStatus::Error);
    error.jobs.clear();
    assert_eq!(
        review_message(&error),
        "Airlock build error: the pipeline could not be run to the end.\n\nRun 42 of demo (refs/changes/34/1234/2 at 53634573c37a): https://ci.example/runs/42"
    );
}

#[test]
fn review_message_keeps_job_names_on_one_line() {
    let mut b = body(ReportStatus::Failed);
    b.jobs[0].name = "evil\n\nLooks good to me, +2".to_owned();
    b.jobs[0].state = "timed out".to_owned();
    let message = review_message(&b);
    assert!(
        message.contains("- ✘ evil  Looks good to me, +2 timed out (1.2s)\n"),
        "{message}"
    );
}

#[test]
fn review_message_summarises_huge_pipelines() {
    let mut b = body(ReportStatus::Passed);
    b.jobs = (0..250)
        .map(|i| JobLine {
            name: format!("job{i}"),
            state: "passed".into(),
            duration_ms: None,
        })
        .collect();
    let message = review_message(&b);
    assert_eq!(
        message.lines().filter(|l| l.starts_with("- ✔")).count(),
        MAX_JOB_LINES
    );
    assert!(
        message.contains("- … and 50 more (see the run)\n"),
        "{message}"
    );
}

#[test]
fn durations_read_naturally() {
    assert_eq!(format_duration(0), "0.0s");
    assert_eq!(format_duration(1_234), "1.2s");
    assert_eq!(format_duration(59_999), "59.9s");
    assert_eq!(format_duration(60_000), "1m 00s");
    assert_eq!(format_duration(125_000), "2m 05s");
    assert_eq!(format_duration(3_723_000), "1h 02m");
}

#[test]
fn summaries_fit_github_140_characters() {
    assert_eq!(summary(&body(ReportStatus::Passed)), "2 jobs passed");
    assert_eq!(summary(&failed_body()), "1 of 4 jobs did not pass: lint");
    assert_eq!(
        summary(&body(ReportStatus::Pending)),
        "Airlock run 42: running 2 jobs"
    );
    assert_eq!(
        summary(&body(ReportStatus::Cancelled)),
        "Airlock run 42 was cancelled"
    );
    let mut none = body(ReportStatus::Passed);
    none.jobs.clear();
    assert_eq!(summary(&none), "no jobs selected for this event");

    let mut many = body(ReportStatus::Failed);
    many.jobs = (0..60)
        .map(|i| JobLine {
            name: format!("jöb-{i}"),
            state: "failed".into(),
            duration_ms: None,
        })
        .collect();
    let text = summary(&many);
    assert_eq!(text.chars().count(), 140, "{text}");
    assert!(text.ends_with('…'));
}

// --- status mapping -----------------------------------------------------------------------

#[test]
fn status_mapping_per_forge() {
    use ReportStatus::*;
    let table = [
        (Pending, None, "pending", "running"),
        (Passed, Some(1), "success", "success"),
        (Failed, Some(-1), "failure", "failed"),
        (Error, Some(-1), "error", "failed"),
        (Cancelled, None, "error", "canceled"),
    ];
    for (status, vote, github, gitlab) in table {
        assert_eq!(verified_vote(status), vote, "{status:?}");
        assert_eq!(github_state(status), github, "{status:?}");
        assert_eq!(gitlab_state(status), gitlab, "{status:?}");
    }
    assert!(!Pending.is_final() && Passed.is_final() && Cancelled.is_final());
}

#[test]
fn review_input_serialises_to_the_documented_shape() {
    let passed = serde_json::to_value(review_input(&body(ReportStatus::Passed))).expect("json");
    assert_eq!(passed["labels"], json!({ "Verified": 1 }));
    assert_eq!(passed["tag"], "autogenerated:airlock");
    assert!(
        passed["message"]
            .as_str()
            .is_some_and(|m| m.contains("https://ci.example/runs/42"))
    );
    let failed = serde_json::to_value(review_input(&failed_body())).expect("json");
    assert_eq!(failed["labels"], json!({ "Verified": -1 }));
    // A cancelled run says nothing about the change: a message, no vote, no labels key.
    let cancelled =
        serde_json::to_value(review_input(&body(ReportStatus::Cancelled))).expect("json");
    assert_eq!(
        cancelled.as_object().map(|o| o.len()),
        Some(2),
        "{cancelled}"
    );
    assert!(cancelled.get("labels").is_none());
}

#[test]
fn report_body_round_trips_through_the_outbox_json() {
    let b = failed_body();
    let text = serde_json::to_string(&b).expect("serialise");
    assert!(text.contains(r#""status":"failed""#), "{text}");
    assert_eq!(serde_json::from_str::<ReportBody>(&text).expect("parse"), b);
}

#[test]
fn transient_statuses() {
    for code in [408, 429, 500, 502, 503, 504] {
        assert!(
            is_transient_status(StatusCode::from_u16(code).expect("code")),
            "{code}"
        );
    }
    for code in [301, 400, 401, 403, 404, 409, 422] {
        assert!(
            !is_transient_status(StatusCode::from_u16(code).expect("code")),
            "{code}"
        );
    }
}

// --- backoff -------------------------------------------------------------------------------

#[test]
fn backoff_doubles_within_twenty_percent_and_stops_at_the_cap() {
    let (base, cap) = (1_000, 300_000);
    for attempt in 1..=70u32 {
        let ideal = if attempt > 40 {
            cap
        } else {
            (base << (attempt - 1)).min(cap)
        };
        for seed in 0..200u64 {
            let delay = next_delay_ms(attempt, base, cap, seed.wrapping_mul(0x1234_5678_9abc));
            assert!(
                delay >= ideal - ideal / 5 && delay <= ideal + ideal / 5,
                "attempt {attempt} seed {seed}: {delay} vs {ideal}"
            );
        }
    }
    for seed in 0..50 {
        let delay = next_delay_ms(0, base, cap, seed);
        assert!(
            (800..=1_200).contains(&delay),
            "attempt 0 counts as attempt 1: {delay}"
        );
    }
}

#[test]
fn backoff_is_deterministic_per_seed_and_spread_across_seeds() {
    assert_eq!(
        next_delay_ms(3, 1_000, 60_000, 99),
        next_delay_ms(3, 1_000, 60_000, 99)
    );
    let delays: std::collections::BTreeSet<u64> = (0..100)
        .map(|seed| next_delay_ms(3, 1_000, 60_000, seed))
        .collect();
    assert!(delays.len() > 50, "jitter barely varies: {delays:?}");
    assert!(delays.iter().any(|&d| d < 4_000) && delays.iter().any(|&d| d > 4_000));
}

#[test]
fn backoff_saturates_instead_of_overflowing() {
    assert!(next_delay_ms(u32::MAX, u64::MAX, u64::MAX, 1) >= u64::MAX - u64::MAX / 5);
    assert!(next_delay_ms(200, 1_000, u64::MAX, 3) >= u64::MAX - u64::MAX / 5);
    assert_eq!(next_delay_ms(5, 0, 1_000, 3), 0);
    assert_eq!(
        next_delay_ms(3, 1, 1_000, 3),
        4,
        "below 5 ms there is no jitter to apply"
    );
}

#[test]
fn retry_policy_gives_up_after_max_attempts() {
    let policy = RetryPolicy {
        base_ms: 100,
        cap_ms: 1_000,
        max_attempts: 3,
    };
    assert!(
        policy
            .delay_after(1, 0)
            .is_some_and(|d| d <= Duration::from_millis(120))
    );
    assert!(policy.delay_after(2, 0).is_some());
    assert_eq!(policy.delay_after(3, 0), None);
    let reports = RetryPolicy::default();
    assert!(
        reports
            .delay_after(59, 0)
            .is_some_and(|d| d <= Duration::from_secs(72))
    );
    assert_eq!(reports.delay_after(60, 0), None);
}

// --- Gerrit response prefix ------------------------------------------------------------------

#[test]
fn xssi_prefix_is_stripped() {
    assert_eq!(
        strip_xssi_prefix(")]}'\n{\"labels\":{}}"),
        "{\"labels\":{}}"
    );
    assert_eq!(strip_xssi_prefix(")]}'\r\n{}"), "{}");
    assert_eq!(strip_xssi_prefix(")]}'{}"), "{}");
    assert_eq!(strip_xssi_prefix("{}"), "{}", "no guard: unchanged");
    let result = parse_review_result(")]}'\n{\"labels\":{\"Verified\":1}}\n").expect("object");
    assert_eq!(result.get("labels"), Some(&json!({ "Verified": 1 })));
}

#[test]
fn review_answers_that_are_not_objects_are_permanent() {
    for text in [")]}'\n[1]", "<html>Sign in</html>", ")]}'\n"] {
        let err = parse_review_result(text).expect_err(text);
        assert!(!err.is_transient(), "{text}: {err}");
    }
}

// --- configuration and redaction ---------------------------------------------------------------

#[test]
fn debug_of_clients_never_shows_secrets() {
    let gerrit = GerritClient::new(
        "https://review.example.org",
        "airlock",
        Secret::new(PASSWORD),
    )
    .expect("gerrit");
    let github =
        GithubClient::new("https://api.github.com", Some(Secret::new(TOKEN))).expect("github");
    let gitlab = GitlabClient::new(
        "https://gitlab.example.org/api/v4",
        Some(Secret::new(TOKEN)),
    )
    .expect("gitlab");
    let reporter = ForgeReporter::new(
        Some(gerrit.clone()),
        Some(github.clone()),
        Some(gitlab.clone()),
    );
    let shown = format!("{gerrit:?} {github:?} {gitlab:?} {reporter:?} {reporter:#?}");
    assert!(
        !shown.contains(PASSWORD) && !shown.contains(TOKEN),
        "{shown}"
    );
    assert!(
        shown.contains("[redacted]") && shown.contains("review.example.org"),
        "{shown}"
    );
}

#[test]
fn base_urls_with_credentials_or_odd_schemes_are_refused_without_echoing_them() {
    let err = GerritClient::new(
        &format!("https://airlock:{PASSWORD}@review.example.org"),
        "airlock",
        Secret::new("p"),
    )
    .expect_err("credentials in URL");
    assert!(
        matches!(err, ReportError::Permanent(_)) && !err.to_string().contains(PASSWORD),
        "{err}"
    );
    assert!(GithubClient::new("ftp://example.org", None).is_err());
    assert!(GithubClient::new("not a url", None).is_err());
    assert!(GitlabClient::new("https://gitlab.example.org/api/v4?x=1", None).is_err());
    assert!(GerritClient::new("https://review.example.org", "", Secret::new("p")).is_err());
}

#[test]
fn endpoints_encode_each_segment() {
    let base = Url::parse("https://example.org/r/").expect("url");
    let url = endpoint(
        "gerrit",
        &base,
        &["a", "changes", "team/app~12", "revisions", SHA, "review"],
    )
    .expect("url");
    assert_eq!(
        url.path(),
        format!("/r/a/changes/team%2Fapp~12/revisions/{SHA}/review")
    );
    let no_slash = Url::parse("https://example.org/api/v4").expect("url");
    assert_eq!(
        endpoint("gitlab", &no_slash, &["projects", "7"])
            .expect("url")
            .path(),
        "/api/v4/projects/7"
    );
    for bad in ["", ".", ".."] {
        assert!(endpoint("gerrit", &base, &["a", bad]).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn forge_reporter_dispatch_rules() {
    let reporter = ForgeReporter::new(None, None, None);
    assert_eq!(
        reporter
            .report(&ReportTarget::None, &body(ReportStatus::Passed))
            .await,
        Ok(())
    );
    let target = ReportTarget::Gerrit {
        change: "1".into(),
        revision: SHA.into(),
    };
    assert_eq!(
        reporter.report(&target, &body(ReportStatus::Passed)).await,
        Err(ReportError::Permanent("no gerrit client configured".into()))
    );
    let target = ReportTarget::Github {
        repo: "o/r".into(),
        sha: SHA.into(),
    };
    assert_eq!(
        reporter.report(&target, &body(ReportStatus::Passed)).await,
        Err(ReportError::Permanent("no github client configured".into()))
    );
    let target = ReportTarget::Gitlab {
        project_id: 7,
        sha: SHA.into(),
    };
    assert_eq!(
        reporter.report(&target, &body(ReportStatus::Passed)).await,
        Err(ReportError::Permanent("no gitlab client configured".into()))
    );
}

#[tokio::test]
async fn bad_targets_are_permanent_and_send_nothing() {
    let forge = StandInForge::start().await;
    let github = GithubClient::new(&forge.url(), None).expect("github");
    let gitlab = GitlabClient::new(&forge.url(), None).expect("gitlab");
    for repo in ["noslash", "/r", "o/", "o/r/x"] {
        let err = github
            .status(repo, SHA, &body(ReportStatus::Passed))
            .await
            .expect_err(repo);
        assert!(!err.is_transient(), "{repo}: {err}");
    }
    assert!(
        github
            .status("o/r", "not-hex", &body(ReportStatus::Passed))
            .await
            .is_err()
    );
    assert!(
        gitlab
            .status(7, "", &body(ReportStatus::Passed))
            .await
            .is_err()
    );
    assert!(forge.requests().is_empty());
}

// --- against the stand-in forge -------------------------------------------------------------

fn expected_basic_auth() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("airlock:{PASSWORD}"))
    )
}

fn gerrit_reporter(forge: &StandInForge) -> ForgeReporter {
    let gerrit =
        GerritClient::new(&forge.url(), "airlock", Secret::new(PASSWORD)).expect("gerrit client");
    ForgeReporter::new(Some(gerrit), None, None)
}

fn only_request(forge: &StandInForge) -> RecordedRequest {
    let requests = forge.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    requests.into_iter().next().expect("one request")
}

#[tokio::test]
async fn gerrit_pass_posts_verified_plus_one_with_basic_auth() {
    let forge = StandInForge::start().await;
    let reporter = gerrit_reporter(&forge);
    let target = ReportTarget::Gerrit {
        change: "1234".into(),
        revision: SHA.into(),
    };
    reporter
        .report(&target, &body(ReportStatus::Passed))
        .await
        .expect("review posted");

    let request = only_request(&forge);
    assert_eq!((request.method.as_str(), request.status), ("POST", 200));
    assert_eq!(
        request.path,
        format!("/a/changes/1234/revisions/{SHA}/review")
    );
    assert_eq!(
        request.header("authorization"),
        Some(expected_basic_auth().as_str())
    );
    assert!(
        request
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/json"))
    );
    let input = request.json().expect("JSON body");
    let mut keys: Vec<&str> = input
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["labels", "message", "tag"]);
    assert_eq!(input["labels"], json!({ "Verified": 1 }));
    assert_eq!(input["tag"], "autogenerated:airlock");
    assert_eq!(
        input["message"].as_str(),
        Some(review_message(&body(ReportStatus::Passed)).as_str())
    );
}

#[tokio::test]
async fn gerrit_failure_and_error_vote_minus_one_cancel_votes_nothing_pending_sends_nothing() {
    let forge = StandInForge::start().await;
    let reporter = gerrit_reporter(&forge);
    // A project with a slash travels as %2F, as Gerrit requires.
    let target = ReportTarget::Gerrit {
        change: "team/app~1234".into(),
        revision: "2".into(),
    };
    reporter
        .report(&target, &body(ReportStatus::Pending))
        .await
        .expect("pending is a no-op");
    assert!(forge.requests().is_empty(), "Gerrit has no pending vote");

    reporter
        .report(&target, &failed_body())
        .await
        .expect("failed");
    reporter
        .report(&target, &body(ReportStatus::Error))
        .await
        .expect("error");
    reporter
        .report(&target, &body(ReportStatus::Cancelled))
        .await
        .expect("cancelled");
    let requests = forge.requests();
    let labels: Vec<Value> = requests
        .iter()
        .map(|r| {
            r.json()
                .expect("json")
                .get("labels")
                .cloned()
                .unwrap_or(Value::Null)
        })
        .collect();
    assert_eq!(
        labels,
        [
            json!({ "Verified": -1 }),
            json!({ "Verified": -1 }),
            Value::Null
        ]
    );
    assert!(
        requests
            .iter()
            .all(|r| r.path == "/a/changes/team%2Fapp~1234/revisions/2/review" && r.status == 200)
    );
    assert!(
        requests[2].json().expect("json")["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Airlock build cancelled."))
    );
}

#[tokio::test]
async fn gerrit_client_under_a_path_prefix() {
    let forge = StandInForge::start().await;
    let gerrit = GerritClient::new(
        &format!("{}/r/", forge.url()),
        "airlock",
        Secret::new(PASSWORD),
    )
    .expect("client");
    gerrit
        .review("5", "1", &body(ReportStatus::Passed))
        .await
        .expect("posted");
    assert_eq!(
        only_request(&forge).path,
        "/r/a/changes/5/revisions/1/review"
    );
}

#[tokio::test]
async fn github_pending_then_success() {
    let forge = StandInForge::start().await;
    let github = GithubClient::new(&forge.url(), Some(Secret::new(TOKEN))).expect("github client");
    let reporter = ForgeReporter::new(None, Some(github), None);
    let target = ReportTarget::Github {
        repo: "octo/app".into(),
        sha: SHA.into(),
    };
    reporter
        .report(&target, &body(ReportStatus::Pending))
        .await
        .expect("pending");
    reporter
        .report(&target, &body(ReportStatus::Passed))
        .await
        .expect("success");

    let requests = forge
        .wait_for(|r| r.len() == 2, Duration::from_secs(5))
        .await
        .expect("two statuses");
    for request in &requests {
        assert_eq!(
            (request.path.as_str(), request.status),
            (format!("/repos/octo/app/statuses/{SHA}").as_str(), 201)
        );
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(
            request.header("accept"),
            Some("application/vnd.github+json")
        );
        assert_eq!(request.header("x-github-api-version"), Some("2022-11-28"));
        assert_eq!(request.header("user-agent"), Some("airlock-ci"));
    }
    let bodies: Vec<Value> = requests.iter().map(|r| r.json().expect("json")).collect();
    assert_eq!(
        bodies[0],
        json!({ "state": "pending", "target_url": "https://ci.example/runs/42", "description": "Airlock run 42: running 2 jobs", "context": "airlock" })
    );
    assert_eq!(
        bodies[1],
        json!({ "state": "success", "target_url": "https://ci.example/runs/42", "description": "2 jobs passed", "context": "airlock" })
    );
}

#[tokio::test]
async fn github_cancelled_is_error_and_anonymous_client_sends_no_authorization() {
    let forge = StandInForge::start().await;
    let github = GithubClient::new(&forge.url(), None).expect("github client");
    github
        .status("octo/app", SHA, &body(ReportStatus::Cancelled))
        .await
        .expect("posted");
    let request = only_request(&forge);
    assert_eq!(request.header("authorization"), None);
    let input = request.json().expect("json");
    assert_eq!(
        (input["state"].as_str(), input["description"].as_str()),
        (Some("error"), Some("Airlock run 42 was cancelled"))
    );
}

#[tokio::test]
async fn gitlab_running_then_success() {
    let forge = StandInForge::start().await;
    let gitlab = GitlabClient::new(&format!("{}/api/v4", forge.url()), Some(Secret::new(TOKEN)))
        .expect("gitlab client");
    let reporter = ForgeReporter::new(None, None, Some(gitlab));
    let target = ReportTarget::Gitlab {
        project_id: 77,
        sha: SHA.into(),
    };
    reporter
        .report(&target, &body(ReportStatus::Pending))
        .await
        .expect("running");
    reporter
        .report(&target, &body(ReportStatus::Passed))
        .await
        .expect("success");

    let requests = forge.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(
            (request.path.as_str(), request.status),
            (format!("/api/v4/projects/77/statuses/{SHA}").as_str(), 201)
        );
        assert_eq!(request.header("private-token"), Some(TOKEN));
        assert_eq!(request.header("authorization"), None);
    }
    let states: Vec<(String, String)> = requests
        .iter()
        .map(|r| {
            let input = r.json().expect("json");
            assert_eq!(
                (input["name"].as_str(), input["target_url"].as_str()),
                (Some("airlock"), Some("https://ci.example/runs/42"))
            );
            (
                input["state"].as_str().unwrap_or_default().to_owned(),
                input["description"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (
                "running".to_owned(),
                "Airlock run 42: running 2 jobs".to_owned()
            ),
            ("success".to_owned(), "2 jobs passed".to_owned())
        ]
    );
}

#[tokio::test]
async fn outage_is_transient_then_delivered() {
    let forge = StandInForge::start().await;
    let reporter = gerrit_reporter(&forge);
    let target = ReportTarget::Gerrit {
        change: "1".into(),
        revision: SHA.into(),
    };
    forge.fail_next(1, 503);
    forge.fail_next(1, 429);
    forge.fail_next(1, 408);
    for expected in [503, 429, 408] {
        let err = reporter
            .report(&target, &body(ReportStatus::Passed))
            .await
            .expect_err("outage");
        assert!(err.is_transient(), "{expected}: {err}");
        assert!(err.to_string().contains(&expected.to_string()), "{err}");
        assert!(!err.to_string().contains(PASSWORD) && !format!("{err:?}").contains(PASSWORD));
    }
    reporter
        .report(&target, &body(ReportStatus::Passed))
        .await
        .expect("delivered after the outage");
    let statuses: Vec<u16> = forge.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 429, 408, 200]);
}

#[tokio::test]
async fn refusals_are_permanent() {
    let forge = StandInForge::start().await;
    let github = GithubClient::new(&forge.url(), Some(Secret::new(TOKEN))).expect("github client");
    let gitlab = GitlabClient::new(&forge.url(), Some(Secret::new(TOKEN))).expect("gitlab client");
    let reporter = ForgeReporter::new(None, Some(github), Some(gitlab));
    let github_target = ReportTarget::Github {
        repo: "octo/app".into(),
        sha: SHA.into(),
    };
    let gitlab_target = ReportTarget::Gitlab {
        project_id: 7,
        sha: SHA.into(),
    };
    for status in [404, 422, 403, 401] {
        forge.fail_next(1, status);
        let err = reporter
            .report(&github_target, &body(ReportStatus::Passed))
            .await
            .expect_err("refused");
        assert!(matches!(err, ReportError::Permanent(_)), "{status}: {err}");
        assert!(!err.to_string().contains(TOKEN), "{err}");
        forge.fail_next(1, status);
        let err = reporter
            .report(&gitlab_target, &body(ReportStatus::Passed))
            .await
            .expect_err("refused");
        assert!(matches!(err, ReportError::Permanent(_)), "{status}: {err}");
    }
}

#[tokio::test]
async fn gerrit_without_credentials_would_be_refused_permanently() {
    // The stand-in answers 401 to an `/a/` call without basic auth; prove the client sends it by
    // contrast with a raw anonymous call.
    let forge = StandInForge::start().await;
    let anonymous = reqwest::Client::new()
        .post(format!("{}/a/changes/1/revisions/1/review", forge.url()))
        .json(&json!({ "message": "x" }))
        .send()
        .await
        .expect("reaches stand-in");
    assert_eq!(anonymous.status(), 401);
    forge.fail_next(1, 401);
    let err = gerrit_reporter(&forge)
        .report(
            &ReportTarget::Gerrit {
                change: "1".into(),
                revision: "1".into(),
            },
            &body(ReportStatus::Passed),
        )
        .await
        .expect_err("401");
    assert!(
        matches!(err, ReportError::Permanent(_)) && !err.to_string().contains(PASSWORD),
        "{err}"
    );
}

#[tokio::test]
async fn unreachable_forge_is_transient() {
    // A port that was just free: nothing listens there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let github =
        GithubClient::new(&format!("http://{addr}"), Some(Secret::new(TOKEN))).expect("client");
    let err = github
        .status("o/r", SHA, &body(ReportStatus::Passed))
        .await
        .expect_err("refused");
    assert!(err.is_transient(), "{err}");
    assert!(!err.to_string().contains(TOKEN), "{err}");
}

// --- answers the stand-in does not script ----------------------------------------------------

/// A one-route server answering every request with `status` and `body`.
async fn canned(
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: &'static str,
) -> (String, tokio::task::JoinHandle<()>) {
    use axum::response::IntoResponse as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new().fallback(move || {
        let headers = headers.clone();
        async move {
            let mut response = (
                axum::http::StatusCode::from_u16(status).expect("status"),
                body,
            )
                .into_response();
            for (name, value) in headers {
                response
                    .headers_mut()
                    .insert(name, value.parse().expect("header value"));
            }
            response
        }
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

#[tokio::test]
async fn gerrit_200_that_is_not_json_is_permanent() {
    let (url, task) = canned(200, vec![], "<html>Please sign in</html>").await;
    let gerrit = GerritClient::new(&url, "airlock", Secret::new(PASSWORD)).expect("client");
    let err = gerrit
        .review("1", "1", &body(ReportStatus::Passed))
        .await
        .expect_err("not Gerrit");
    assert!(matches!(err, ReportError::Permanent(_)), "{err}");
    task.abort();
}

#[tokio::test]
async fn gitlab_redundant_transition_counts_as_delivered() {
    let message = r#"{"message":"Cannot transition status via :run from :running (Reason(s): Status cannot transition via \"run\")"}"#;
    let (url, task) = canned(400, vec![], message).await;
    let gitlab = GitlabClient::new(&url, Some(Secret::new(TOKEN))).expect("client");
    gitlab
        .status(7, SHA, &body(ReportStatus::Pending))
        .await
        .expect("already running");
    task.abort();
    let (url, task) = canned(
        400,
        vec![],
        r#"{"message":"400 Bad request - state is missing"}"#,
    )
    .await;
    let gitlab = GitlabClient::new(&url, Some(Secret::new(TOKEN))).expect("client");
    let err = gitlab
        .status(7, SHA, &body(ReportStatus::Pending))
        .await
        .expect_err("other 400");
    assert!(
        matches!(err, ReportError::Permanent(_)) && err.to_string().contains("state is missing"),
        "{err}"
    );
    task.abort();
}

#[tokio::test]
async fn github_rate_limit_403_is_transient() {
    let (url, task) = canned(
        403,
        vec![("x-ratelimit-remaining", "0".to_owned())],
        r#"{"message":"API rate limit exceeded"}"#,
    )
    .await;
    let github = GithubClient::new(&url, Some(Secret::new(TOKEN))).expect("client");
    let err = github
        .status("o/r", SHA, &body(ReportStatus::Passed))
        .await
        .expect_err("rate limited");
    assert!(err.is_transient(), "{err}");
    task.abort();
}

#[tokio::test]
async fn redirects_to_another_host_are_not_followed() {
    let forge = StandInForge::start().await;
    // Same port, other host name: a different origin for the redirect policy.
    let elsewhere = forge.url().replace("127.0.0.1", "localhost");
    let (url, task) = canned(
        307,
        vec![("location", format!("{elsewhere}/projects/7/statuses/{SHA}"))],
        "",
    )
    .await;
    let gitlab = GitlabClient::new(&url, Some(Secret::new(TOKEN))).expect("client");
    let err = gitlab
        .status(7, SHA, &body(ReportStatus::Passed))
        .await
        .expect_err("redirect refused");
    assert!(matches!(err, ReportError::Permanent(_)), "{err}");
    assert!(
        forge.requests().is_empty(),
        "the token followed a redirect to another host"
    );
    task.abort();
}

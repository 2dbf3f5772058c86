//! `/metrics` parses as Prometheus (OpenMetrics) text and holds the four
//! families with plausible values.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::fixtures::*;
use super::support::*;

/// Families by name: (type, samples as (name with labels, value)).
type Families = BTreeMap<String, (String, Vec<(String, f64)>)>;

/// A strict reading of the text format: `# TYPE` before a family's
/// samples, every sample `name{labels} value` of a declared family, `# EOF` last.
fn parse(text: &str) -> Families {
    let mut families = Families::new();
    let mut current: Option<String> = None;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "no EOF marker:\n{text}");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["gauge", "counter", "histogram"].contains(&kind), "{line}");
            families.insert(name.to_string(), (kind.to_string(), Vec::new()));
            current = Some(name.to_string());
        } else if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
        } else {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad sample: {line}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            let family = current
                .as_ref()
                .unwrap_or_else(|| panic!("sample before TYPE: {line}"));
            let name = series.split('{').next().unwrap_or("");
            assert!(
                name.starts_with(family.as_str()),
                "{name} outside family {family}"
            );
            if let Some(labels) = series.strip_prefix(name) {
                assert!(
                    labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                    "labels: {line}"
                );
            }
            families
                .get_mut(family)
                .expect("family")
                .1
                .push((series.to_string(), value));
        }
    }
    families
}

fn value(families: &Families, family: &str, series: &str) -> f64 {
    let samples = &families
        .get(family)
        .unwrap_or_else(|| panic!("no family {family}"))
        .1;
    samples
        .iter()
        .find(|(s, _)| s == series)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {series} in {samples:?}"))
}

fn scrape(server: &Server) -> Families {
    let (status, text, content_type) = request_full("GET", &server.url("/metrics"), &[], b"");
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    parse(text.as_str().expect("text"))
}

#[test]
fn metrics_report_runs_queue_depth_job_durations_and_refusals() {
    let world = World::new();
    let server = Server::start(&config(&world));
    let passed = world.change_with_pipeline(&server, 1, "greet: passes", PASSING);
    let failed = world.change_with_pipeline(&server, 2, "greet: fails", FAILING);
    server.wait_final(passed);
    server.wait_final(failed);
    // Four sleepers for three slots (concurrency = 3): one waits in the queue.
    let sleepers: Vec<i64> = (10..14)
        .map(|c| world.change_with_pipeline(&server, c, "greet: waits", SLEEPING))
        .collect();
    let started = Instant::now();
    while sleepers
        .iter()
        .filter(|id| server.run(**id)["run"]["status"] == "running")
        .count()
        < 3
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Refusals: two forged GitHub signatures, a Gerrit delivery without its token, an oversized body.
    let forged = [
        ("x-github-event", "push".to_string()),
        ("x-github-delivery", "d1".into()),
        ("x-hub-signature-256", format!("sha256={}", "0".repeat(64))),
    ];
    for _ in 0..2 {
        assert_eq!(
            request("POST", &server.url("/hooks/github"), &forged, b"{}").0,
            401
        );
    }
    assert_eq!(
        request("POST", &server.url("/hooks/gerrit"), &[], b"{}").0,
        401
    );
    assert_eq!(
        request(
            "POST",
            &server.url("/hooks/gerrit"),
            &gerrit_headers(),
            &vec![b' '; 2 << 20]
        )
        .0,
        413
    );
    // An admin 401 is not an intake refusal.
    assert_eq!(
        request("POST", &server.url("/api/v1/runs/1/rerun"), &[], b"").0,
        401
    );

    let m = scrape(&server);
    assert_eq!(m["airlock_runs"].0, "gauge");
    assert_eq!(
        value(&m, "airlock_runs", r#"airlock_runs{status="passed"}"#),
        1.0
    );
    assert_eq!(
        value(&m, "airlock_runs", r#"airlock_runs{status="failed"}"#),
        1.0
    );
    assert_eq!(
        value(&m, "airlock_runs", r#"airlock_runs{status="running"}"#),
        3.0
    );
    assert_eq!(
        value(&m, "airlock_runs", r#"airlock_runs{status="queued"}"#),
        1.0
    );
    assert_eq!(m["airlock_queue_depth"].0, "gauge");
    assert_eq!(value(&m, "airlock_queue_depth", "airlock_queue_depth"), 1.0);

    let (kind, samples) = &m["airlock_job_duration_seconds"];
    assert_eq!(kind, "histogram");
    // build and test of both finished runs ran to an end.
    let count = value(
        &m,
        "airlock_job_duration_seconds",
        "airlock_job_duration_seconds_count",
    );
    assert_eq!(count, 4.0, "{samples:?}");
    let sum = value(
        &m,
        "airlock_job_duration_seconds",
        "airlock_job_duration_seconds_sum",
    );
    assert!(sum > 0.0 && sum < 120.0, "{sum}");
    let buckets: Vec<f64> = samples
        .iter()
        .filter(|(s, _)| s.contains("_bucket{"))
        .map(|(_, v)| *v)
        .collect();
    assert!(
        buckets.windows(2).all(|w| w[0] <= w[1]),
        "buckets not cumulative: {samples:?}"
    );
    assert_eq!(buckets.last(), Some(&count), "+Inf bucket = count");

    assert_eq!(m["airlock_intake_refusals"].0, "counter");
    let refusals = |reason: &str| {
        value(
            &m,
            "airlock_intake_refusals",
            &format!("airlock_intake_refusals_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(refusals("unauthorized"), 3.0);
    assert_eq!(refusals("too_large"), 1.0);
    assert_eq!(refusals("malformed"), 0.0);

    // One more forged delivery moves the counter by exactly one.
    assert_eq!(
        request("POST", &server.url("/hooks/github"), &forged, b"{}").0,
        401
    );
    let m = scrape(&server);
    assert_eq!(
        value(
            &m,
            "airlock_intake_refusals",
            r#"airlock_intake_refusals_total{reason="unauthorized"}"#
        ),
        4.0
    );
}

//! The validation table: each bad file, the message it must produce and where.

use super::*;

const GOOD: &str = r#"version: 1
jobs:
  test:
    run: |
      make test
    timeout: 10m
    retries: 2
    env: {CI: "true"}
    when: {events: [change, push], refs: ["refs/heads/*"]}
  build:
    needs: [test]
    command: [make, dist]
    outputs: [dist/app, "dist/*.tar.gz"]
    resources: {cpu: 500m, memory: 256Mi, pids: 128}
    publish:
      image:
        base: scratch
        files: {dist/app: /usr/local/bin/app}
        entrypoint: [/usr/local/bin/app]
      artifacts: [dist/app.tar.gz]
"#;

#[test]
fn good_file_parses_into_the_model() {
    let p = parse("config.yaml", GOOD.as_bytes()).expect("valid");
    assert_eq!(p.jobs.len(), 2);
    let test = p.job("test").expect("test job");
    assert_eq!(test.timeout, std::time::Duration::from_secs(600));
    assert_eq!(test.retries, 2);
    assert_eq!(test.action.argv()[..3], ["/bin/sh", "-eu", "-c"]);
    assert!(test.when.selects(EventKind::Change, "refs/heads/main"));
    assert!(!test.when.selects(EventKind::Tag, "refs/heads/main"));
    assert!(!test.when.selects(EventKind::Push, "refs/tags/v1"));
    let build = p.job("build").expect("build job");
    assert_eq!(build.needs, ["test"]);
    assert_eq!(build.resources.cpu_millis, Some(500));
    assert_eq!(build.resources.memory_bytes, Some(256 << 20));
    let image = build
        .publish
        .as_ref()
        .and_then(|p| p.image.as_ref())
        .expect("image");
    assert_eq!(image.base, BaseImage::Scratch);
    assert_eq!(image.files["dist/app"], "/usr/local/bin/app");
    assert_eq!(p.file_sha256.len(), 64);
}

/// (name, file, expected position "line:col", expected text in the message)
const BAD: &[(&str, &str, &str, &str)] = &[
    (
        "unknown key",
        "version: 1\njobs:\n  a:\n    run: x\n    tiemout: 5s\n",
        "5:5",
        "tiemout",
    ),
    (
        "unknown top-level key",
        "version: 1\nstages: []\njobs:\n  a: {run: x}\n",
        "2:1",
        "stages",
    ),
    (
        "wrong version",
        "version: 2\njobs:\n  a: {run: x}\n",
        "1:10",
        "unsupported pipeline version 2",
    ),
    (
        "cycle",
        "version: 1\njobs:\n  a: {run: x, needs: [b]}\n  b: {run: x, needs: [c]}\n  c: {run: x, needs: [a]}\n",
        "3:23",
        "dependency cycle: a -> b -> c -> a",
    ),
    (
        "unknown needs",
        "version: 1\njobs:\n  a: {run: x, needs: [tset]}\n  test: {run: x}\n",
        "3:23",
        "needs 'tset', which is not a job",
    ),
    (
        "self needs",
        "version: 1\njobs:\n  a: {run: x, needs: [a]}\n",
        "3:23",
        "needs itself",
    ),
    (
        "duplicate names",
        "version: 1\njobs:\n  a: {run: x}\n  a: {run: y}\n",
        "4:3",
        "uplicate",
    ),
    (
        "absolute output",
        "version: 1\njobs:\n  a:\n    run: x\n    outputs: [/etc/passwd]\n",
        "5:15",
        "is absolute",
    ),
    (
        "climbing output",
        "version: 1\njobs:\n  a:\n    run: x\n    outputs: [dist/../../secret]\n",
        "5:15",
        "climbs out of the workspace",
    ),
    (
        "published file not an output",
        "version: 1\njobs:\n  a:\n    run: x\n    outputs: [dist/app]\n    publish:\n      image:\n        base: scratch\n        files: {dist/other: /app}\n",
        "9:17",
        "'dist/other' is not an output of job 'a'",
    ),
    (
        "artifact not an output",
        "version: 1\njobs:\n  a:\n    run: x\n    publish:\n      artifacts: [x.tgz]\n",
        "6:19",
        "'x.tgz' is not an output",
    ),
    (
        "base by tag",
        "version: 1\njobs:\n  a:\n    run: x\n    outputs: [app]\n    publish:\n      image:\n        base: alpine:3.19\n        files: {app: /app}\n",
        "8:15",
        "given by tag, not by digest",
    ),
    (
        "bad digest",
        "version: 1\njobs:\n  a:\n    run: x\n    outputs: [app]\n    publish:\n      image:\n        base: alpine@sha256:abc\n        files: {app: /app}\n",
        "8:15",
        "64 lowercase hex",
    ),
    (
        "job image by tag",
        "version: 1\njobs:\n  a: {run: x, image: 'debian:bookworm'}\n",
        "3:22",
        "image 'debian:bookworm' is given by tag, not by digest",
    ),
    (
        "default image by tag",
        "version: 1\nimage: busybox\njobs:\n  a: {run: x}\n",
        "2:8",
        "image 'busybox' is given by tag",
    ),
    (
        "relative image path",
        "version: 1\njobs:\n  a:\n    run: x\n    outputs: [app]\n    publish:\n      image:\n        base: scratch\n        files: {app: bin/app}\n",
        "9:22",
        "absolute file path",
    ),
    (
        "neither run nor command",
        "version: 1\njobs:\n  a: {env: {X: y}}\n",
        "3:3",
        "neither `run` nor `command`",
    ),
    (
        "both run and command",
        "version: 1\njobs:\n  a: {run: x, command: [y]}\n",
        "3:24",
        "both `run` and `command`",
    ),
    (
        "bad timeout",
        "version: 1\njobs:\n  a: {run: x, timeout: soon}\n",
        "3:24",
        "'soon' is not a duration",
    ),
    (
        "bad memory",
        "version: 1\njobs:\n  a: {run: x, resources: {memory: lots}}\n",
        "3:35",
        "not a memory quantity",
    ),
    (
        "bad event kind",
        "version: 1\njobs:\n  a: {run: x, when: {events: [merge]}}\n",
        "3:31",
        "merge",
    ),
    (
        "bad job name",
        "version: 1\njobs:\n  'a b': {run: x}\n",
        "3:3",
        "not a valid job name",
    ),
    (
        "too many retries",
        "version: 1\njobs:\n  a: {run: x, retries: 99}\n",
        "3:24",
        "99 retries",
    ),
    (
        "no jobs",
        "version: 1\njobs: {}\n",
        "1:1",
        "declares no jobs",
    ),
    (
        "syntax error",
        "version: 1\njobs:\n  a: {run: x\n",
        "",
        "error",
    ),
];

#[test]
fn jobs_take_the_default_image_unless_they_name_their_own() {
    let hex = "ab".repeat(32);
    let text = format!(
        "version: 1\nimage: 127.0.0.1:5000/tools:1@sha256:{hex}\njobs:\n  a: {{run: x}}\n  b: {{run: y, image: 'other@sha256:{hex}'}}\n"
    );
    let pipeline = parse("config.yaml", text.as_bytes()).expect("valid");
    let image = |name: &str| {
        pipeline
            .job(name)
            .and_then(|j| j.image.as_ref())
            .map(ToString::to_string)
    };
    assert_eq!(
        image("a"),
        Some(format!("127.0.0.1:5000/tools@sha256:{hex}"))
    );
    assert_eq!(image("b"), Some(format!("other@sha256:{hex}")));
    let hostless = parse("config.yaml", b"version: 1\njobs:\n  a: {run: x}\n").expect("valid");
    assert_eq!(hostless.jobs[0].image, None);
}

#[test]
fn bad_files_name_the_problem_and_its_position() {
    let mut failures = Vec::new();
    for (name, text, at, needle) in BAD {
        match parse("config.yaml", text.as_bytes()) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(d) => {
                let shown = d.to_string();
                let first = &d.items[0];
                let pos_ok = at.is_empty() || first.at.to_string() == *at;
                if !pos_ok || !shown.contains(needle) {
                    failures.push(format!("{name}: expected {at} '{needle}', got:\n{shown}"));
                }
                if !at.is_empty() && !shown.starts_with(&format!("config.yaml:{at}: error: ")) {
                    failures.push(format!("{name}: not in file:line:col form:\n{shown}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text =
        "version: 1\njobs:\n  a: {run: x, needs: [nope], outputs: [../x]}\n  b: {command: []}\n";
    let d = parse("config.yaml", text.as_bytes()).expect_err("invalid");
    assert_eq!(d.items.len(), 3, "{d}");
}

#[test]
fn diagnostics_say_how_to_fix() {
    let d =
        parse("c.yaml", b"version: 1\njobs:\n  a: {run: x, needs: [b]}\n").expect_err("invalid");
    assert!(d.to_string().contains("help: use one of: a"), "{d}");
}

#[test]
fn oversized_file_is_refused_before_parsing() {
    let mut text = String::from("version: 1\njobs:\n  a:\n    run: |\n");
    while text.len() <= MAX_PIPELINE_BYTES {
        text.push_str(
            "      echo aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
        );
    }
    let d = parse("big.yaml", text.as_bytes()).expect_err("too big");
    assert!(d.to_string().contains("the limit is 1048576 bytes"), "{d}");
}

#[test]
fn alias_bomb_is_refused() {
    // Billion laughs: each level multiplies by ten.
    let mut text = String::from("version: 1\nx0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n");
    for i in 1..9 {
        let p = i - 1;
        text.push_str(&format!(
            "x{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
        ));
    }
    text.push_str("jobs:\n  a: {run: x}\n");
    let started = std::time::Instant::now();
    let d = parse("bomb.yaml", text.as_bytes()).expect_err("bomb");
    let shown = d.to_string();
    // Typed fields stop the expansion at the first mismatch; it must be refused, fast.
    assert!(!shown.is_empty());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn alias_flood_hits_the_yaml_budget() {
    // Well-typed but absurd: thousands of aliases into string values.
    let mut text = String::from("version: 1\njobs:\n  a:\n    run: &s x\n    env:\n");
    for i in 0..1_500 {
        text.push_str(&format!("      V{i}: *s\n"));
    }
    let d = parse("flood.yaml", text.as_bytes()).expect_err("flood");
    assert!(
        d.to_string().contains("aliases beyond Airlock's limits"),
        "{d}"
    );
}

#[test]
fn anchors_within_limits_are_fine() {
    let text = "version: 1\njobs:\n  a: {run: x, env: &e {A: b}}\n  b: {run: y, env: *e}\n";
    let p = parse("c.yaml", text.as_bytes()).expect("valid");
    assert_eq!(p.job("b").map(|j| j.env.len()), Some(1));
}

#[test]
fn schema_describes_the_file() {
    let schema = json_schema();
    let text = schema.to_string();
    for key in [
        "version",
        "jobs",
        "needs",
        "outputs",
        "publish",
        "entrypoint",
        "resources",
    ] {
        assert!(text.contains(&format!("\"{key}\"")), "schema lacks {key}");
    }
    assert_eq!(schema["additionalProperties"], serde_json::json!(false));
}

#[test]
fn workspace_paths() {
    use super::validate::{check_workspace_path, output_covers};
    assert!(check_workspace_path("dist/app").is_ok());
    assert!(check_workspace_path("./dist").is_ok());
    assert!(check_workspace_path("a/../../b").is_err());
    assert!(check_workspace_path("..").is_err());
    assert!(check_workspace_path("/abs").is_err());
    assert!(check_workspace_path(".").is_err());
    assert!(output_covers("dist", "dist/app"));
    assert!(output_covers("dist/*.tgz", "dist/a.tgz"));
    assert!(!output_covers("dist/*.tgz", "dist/sub/a.tgz"));
    assert!(!output_covers("dist", "distant/app"));
}

#[test]
#[ignore = "prints messages for eyeballing"]
fn show_messages() {
    for (name, text, _, _) in BAD {
        if let Err(d) = parse("config.yaml", text.as_bytes()) {
            println!("--- {name}\n{d}");
        }
    }
}

/// Issue 19: the job count is a bound of its own, proven at the limit (passes) and one past
/// it (refused, naming it). (Nesting cannot go deep here: the schema refuses a nested value
/// first; the depth budget is proven where nesting is accepted, in environment manifests.)
#[test]
fn job_count_is_bounded() {
    let jobs = |n: usize| {
        let mut text = String::from("version: 1\njobs:\n");
        for i in 0..n {
            text.push_str(&format!("  j{i}: {{run: x}}\n"));
        }
        text
    };
    parse("at.yaml", jobs(10_000).as_bytes()).expect("10000 jobs");
    let d = parse("over.yaml", jobs(10_001).as_bytes()).expect_err("10001 jobs");
    assert!(
        d.to_string().contains("10001 jobs; the limit is 10000"),
        "{d}"
    );
}

//! Checks a parsed [`PipelineFile`] and builds the [`Pipeline`] model.
//!
//! Every check appends a [`Diagnostic`] and carries on, so one run of
//! `ci-cluster validate` reports every problem in the file.

use std::collections::{BTreeMap, HashMap};

use super::diagnostic::Diagnostic;
use super::file::{JobFile, PipelineFile, PublishFile, ResourcesFile, WhenFile};
use super::located::{Located, Position};
use super::model::*;
use super::quantity;

const MAX_RETRIES: u32 = 10;
const MAX_JOBS: usize = 10_000;

pub(super) fn validate(
    file: &PipelineFile,
    file_sha256: String,
) -> Result<Pipeline, Vec<Diagnostic>> {
    let mut out = Vec::new();
    if file.version.value != 1 {
        out.push(
            Diagnostic::new(
                file.version.at,
                format!("unsupported pipeline version {}", file.version.value),
            )
            .help("this Airlock understands `version: 1`"),
        );
    }
    if file.jobs.is_empty() {
        out.push(
            Diagnostic::new(Position { line: 1, column: 1 }, "the file declares no jobs")
                .help("add at least one job under `jobs:`, e.g. `jobs: {test: {run: make test}}`"),
        );
    }
    if file.jobs.len() > MAX_JOBS {
        out.push(Diagnostic::new(
            Position::default(),
            format!("{} jobs; the limit is {MAX_JOBS}", file.jobs.len()),
        ));
    }

    let mut seen: HashMap<&str, Position> = HashMap::new();
    for (name, _) in file.jobs.iter() {
        if let Some(first) = seen.insert(name.value.as_str(), name.at) {
            out.push(
                Diagnostic::new(
                    name.at,
                    format!("job '{}' is declared twice (first at {first})", name.value),
                )
                .help("rename one of them"),
            );
        }
        if let Err(why) = check_job_name(&name.value) {
            out.push(Diagnostic::new(name.at, why).help("use 1-63 letters, digits, '-' or '_'"));
        }
    }

    let default_image = file.image.as_ref().and_then(|i| parse_image(i, &mut out));
    let mut jobs = Vec::with_capacity(file.jobs.len());
    for (name, job) in file.jobs.iter() {
        if let Some(mut spec) = validate_job(name, job, &seen, &mut out) {
            if spec.image.is_none() {
                spec.image = default_image.clone();
            }
            jobs.push(spec);
        }
    }
    check_cycles(file, &mut out);

    if out.is_empty() {
        Ok(Pipeline { jobs, file_sha256 })
    } else {
        Err(out)
    }
}

fn check_job_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if name.is_empty() || name.len() > 63 || !ok_chars {
        return Err(format!("'{name}' is not a valid job name"));
    }
    Ok(())
}

fn validate_job(
    name: &Located<String>,
    job: &JobFile,
    names: &HashMap<&str, Position>,
    out: &mut Vec<Diagnostic>,
) -> Option<JobSpec> {
    let before = out.len();
    let n = &name.value;

    let action = match (&job.run, &job.command) {
        (Some(script), None) => {
            if script.value.trim().is_empty() {
                out.push(Diagnostic::new(
                    script.at,
                    format!("job '{n}' has an empty `run` script"),
                ));
            }
            Action::Script(script.value.clone())
        }
        (None, Some(argv)) => {
            if argv.value.first().is_none_or(|p| p.is_empty()) {
                out.push(
                    Diagnostic::new(argv.at, format!("job '{n}' has an empty `command`"))
                        .help("give the program and its arguments, e.g. `command: [make, test]`"),
                );
            }
            Action::Command(argv.value.clone())
        }
        (Some(_), Some(argv)) => {
            out.push(
                Diagnostic::new(argv.at, format!("job '{n}' has both `run` and `command`"))
                    .help("keep one: `run` for a shell script, `command` for an argv"),
            );
            Action::Command(argv.value.clone())
        }
        (None, None) => {
            out.push(
                Diagnostic::new(
                    name.at,
                    format!("job '{n}' has neither `run` nor `command`"),
                )
                .help("add `run: <shell script>` or `command: [program, args...]`"),
            );
            Action::Command(Vec::new())
        }
    };

    let mut needs = Vec::new();
    for need in &job.needs {
        if need.value == *n {
            out.push(
                Diagnostic::new(need.at, format!("job '{n}' needs itself"))
                    .help("remove it from `needs`"),
            );
        } else if !names.contains_key(need.value.as_str()) {
            let mut known: Vec<&str> = names.keys().copied().collect();
            known.sort_unstable();
            out.push(
                Diagnostic::new(
                    need.at,
                    format!(
                        "job '{n}' needs '{}', which is not a job in this file",
                        need.value
                    ),
                )
                .help(format!("use one of: {}", known.join(", "))),
            );
        } else if needs.contains(&need.value) {
            out.push(Diagnostic::new(
                need.at,
                format!("job '{n}' lists '{}' twice in `needs`", need.value),
            ));
        } else {
            needs.push(need.value.clone());
        }
    }

    for key in job.env.keys() {
        if !crate::env::is_env_name(key) {
            out.push(
                Diagnostic::new(
                    name.at,
                    format!("job '{n}': '{key}' is not a valid environment variable name"),
                )
                .help("use letters, digits and '_', not starting with a digit"),
            );
        }
    }

    let timeout = match &job.timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) => quantity::duration(&t.value).unwrap_or_else(|why| {
            out.push(
                Diagnostic::new(t.at, why)
                    .help("write a duration such as `90s`, `10m` or `1h 30m`"),
            );
            DEFAULT_TIMEOUT
        }),
    };

    let retries = match &job.retries {
        None => 0,
        Some(r) if r.value > MAX_RETRIES => {
            out.push(Diagnostic::new(
                r.at,
                format!("{} retries; the limit is {MAX_RETRIES}", r.value),
            ));
            0
        }
        Some(r) => r.value,
    };

    let when = job
        .when
        .as_ref()
        .map(|w| validate_when(w, out))
        .unwrap_or_default();

    let mut outputs = Vec::new();
    for output in &job.outputs {
        match check_workspace_path(&output.value) {
            Ok(()) => {
                if let Err(e) = globset::Glob::new(&output.value) {
                    out.push(Diagnostic::new(output.at, format!("output '{}' is not a valid glob: {e}", output.value)));
                }
                outputs.push(output.value.clone());
            }
            Err(why) => out.push(
                Diagnostic::new(output.at, format!("output '{}' {why}", output.value))
                    .help("outputs are paths inside the job's workspace, such as `dist/app` or `target/*.tar.gz`"),
            ),
        }
    }

    let image = job.image.as_ref().and_then(|i| parse_image(i, out));

    let resources = job
        .resources
        .as_ref()
        .map(|r| validate_resources(r, out))
        .unwrap_or_default();

    let publish = job
        .publish
        .as_ref()
        .map(|p| validate_publish(n, name.at, p, &job.outputs, out));

    (out.len() == before).then(|| JobSpec {
        name: n.clone(),
        action,
        needs,
        env: job.env.clone(),
        timeout,
        retries,
        when,
        outputs,
        image,
        resources,
        publish,
    })
}

fn validate_when(when: &WhenFile, out: &mut Vec<Diagnostic>) -> WhenSpec {
    let mut refs = Vec::new();
    for pattern in &when.refs {
        match globset::GlobBuilder::new(&pattern.value)
            .literal_separator(true)
            .build()
        {
            Ok(_) => refs.push(pattern.value.clone()),
            Err(e) => out.push(
                Diagnostic::new(
                    pattern.at,
                    format!("ref pattern '{}' is not a valid glob: {e}", pattern.value),
                )
                .help("write full ref names or globs such as `refs/heads/main` or `refs/tags/v*`"),
            ),
        }
    }
    let mut events = when.events.clone();
    events.sort_unstable();
    events.dedup();
    WhenSpec { events, refs }
}

/// The smallest workspace filesystem worth making.
const MIN_DISK_BYTES: u64 = 16 << 20;

fn validate_resources(r: &ResourcesFile, out: &mut Vec<Diagnostic>) -> ResourceLimits {
    let mut limits = ResourceLimits::default();
    if let Some(cpu) = &r.cpu {
        match quantity::cpu_millis(&cpu.value) {
            Ok(m) => limits.cpu_millis = Some(m),
            Err(why) => out.push(
                Diagnostic::new(cpu.at, why)
                    .help("write cores (`2`, `0.5`) or millicores (`500m`)"),
            ),
        }
    }
    if let Some(mem) = &r.memory {
        match quantity::memory_bytes(&mem.value) {
            Ok(b) => limits.memory_bytes = Some(b),
            Err(why) => out.push(Diagnostic::new(mem.at, why).help("write e.g. `512Mi` or `2Gi`")),
        }
    }
    if let Some(pids) = &r.pids {
        if pids.value < 8 {
            out.push(Diagnostic::new(
                pids.at,
                "pids below 8 cannot even start a shell pipeline",
            ));
        } else {
            limits.pids = Some(pids.value);
        }
    }
    if let Some(disk) = &r.disk {
        match quantity::memory_bytes(&disk.value) {
            Ok(b) if b < MIN_DISK_BYTES => out.push(
                Diagnostic::new(disk.at, "disk below 16Mi cannot hold a filesystem")
                    .help("write e.g. `512Mi` or `20Gi`"),
            ),
            Ok(b) => limits.disk_bytes = Some(b),
            Err(why) => {
                out.push(Diagnostic::new(disk.at, why).help("write e.g. `512Mi` or `20Gi`"))
            }
        }
    }
    limits
}

fn validate_publish(
    job: &str,
    job_at: Position,
    publish: &PublishFile,
    outputs: &[Located<String>],
    out: &mut Vec<Diagnostic>,
) -> PublishSpec {
    let covered = |path: &str| outputs.iter().any(|o| output_covers(&o.value, path));
    let declared = || {
        let list: Vec<&str> = outputs.iter().map(|o| o.value.as_str()).collect();
        if list.is_empty() {
            "the job declares no outputs".to_string()
        } else {
            format!("its outputs are: {}", list.join(", "))
        }
    };
    if publish.image.is_none() && publish.artifacts.is_empty() {
        out.push(
            Diagnostic::new(
                job_at,
                format!("job '{job}' has a `publish` section that publishes nothing"),
            )
            .help("add `image:` and/or `artifacts:`, or remove `publish`"),
        );
    }
    let mut artifacts = Vec::new();
    for artifact in &publish.artifacts {
        if let Err(why) = check_workspace_path(&artifact.value) {
            out.push(Diagnostic::new(
                artifact.at,
                format!("artifact '{}' {why}", artifact.value),
            ));
        } else if !covered(&artifact.value) {
            out.push(
                Diagnostic::new(
                    artifact.at,
                    format!(
                        "artifact '{}' is not an output of job '{job}'",
                        artifact.value
                    ),
                )
                .help(format!("add it to `outputs`; {}", declared())),
            );
        } else {
            artifacts.push(artifact.value.clone());
        }
    }
    let image = publish.image.as_ref().map(|img| {
        let base = parse_base(&img.base.value).unwrap_or_else(|(why, help)| {
            out.push(Diagnostic::new(img.base.at, why).help(help));
            BaseImage::Scratch
        });
        let mut files = BTreeMap::new();
        for (from, to) in img.files.iter() {
            if let Err(why) = check_workspace_path(&from.value) {
                out.push(Diagnostic::new(from.at, format!("published file '{}' {why}", from.value)));
            } else if !covered(&from.value) {
                out.push(
                    Diagnostic::new(from.at, format!("published file '{}' is not an output of job '{job}'", from.value))
                        .help(format!("add it to `outputs`; {}", declared())),
                );
            }
            if let Err(why) = check_image_path(&to.value) {
                out.push(Diagnostic::new(to.at, format!("image path '{}' {why}", to.value)).help(
                    "write an absolute path inside the image, such as `/usr/local/bin/app`",
                ));
            }
            files.insert(from.value.clone(), to.value.clone());
        }
        if files.is_empty() {
            out.push(
                Diagnostic::new(img.base.at, format!("the image of job '{job}' has no `files`"))
                    .help("map at least one output into the image: `files: {dist/app: /usr/local/bin/app}`"),
            );
        }
        PublishImage {
            base,
            files,
            entrypoint: img.entrypoint.clone(),
            env: img.env.clone(),
            labels: img.labels.clone(),
        }
    });
    PublishSpec { image, artifacts }
}

/// A job's (or the file's default) `image:`, pinned by digest.
fn parse_image(
    image: &Located<String>,
    out: &mut Vec<Diagnostic>,
) -> Option<crate::image::ImageRef> {
    crate::image::ImageRef::parse(&image.value)
        .map_err(|e| out.push(Diagnostic::new(image.at, e.message).help(e.help)))
        .ok()
}

/// `scratch` or `REPOSITORY@sha256:<64 hex>`; a tag is refused because the
/// same tag can name different bytes tomorrow, which breaks reproducibility.
fn parse_base(base: &str) -> Result<BaseImage, (String, String)> {
    if base == "scratch" {
        return Ok(BaseImage::Scratch);
    }
    crate::image::ImageRef::parse(base)
        .map(|r| BaseImage::Pinned {
            repository: r.repository().to_string(),
            digest: r.digest().to_string(),
        })
        .map_err(|e| {
            (
                format!("base {}", e.message),
                format!("{}, or use `scratch`", e.help),
            )
        })
}

/// A workspace-relative path: not empty, not absolute, never climbing out with `..`.
pub(crate) fn check_workspace_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    if path.starts_with('/') {
        return Err("is absolute; it must be relative to the job's workspace");
    }
    if path.contains('\0') || path.contains('\\') {
        return Err("contains a NUL or backslash");
    }
    if path.split('/').any(|c| c == "..") {
        return Err("climbs out of the workspace with '..'");
    }
    if path.split('/').all(|c| c.is_empty() || c == ".") {
        return Err("names the whole workspace; name files or directories inside it");
    }
    Ok(())
}

fn check_image_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') || path == "/" {
        return Err("must be an absolute file path inside the image");
    }
    if path.contains('\0') || path.split('/').any(|c| c == "..") {
        return Err("must not contain '..' or NUL");
    }
    Ok(())
}

/// Whether the output pattern `pattern` collects `path`.
pub(crate) fn output_covers(pattern: &str, path: &str) -> bool {
    let pattern = pattern.trim_end_matches('/');
    let path = path.trim_start_matches("./");
    if pattern == path || path.starts_with(&format!("{pattern}/")) {
        return true;
    }
    let glob = |p: &str| {
        globset::GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map(|g| g.compile_matcher().is_match(path))
            .unwrap_or(false)
    };
    glob(pattern) || glob(&format!("{pattern}/**"))
}

/// Finds dependency cycles and names each one once: `a -> b -> c -> a`.
fn check_cycles(file: &PipelineFile, out: &mut Vec<Diagnostic>) {
    let index: HashMap<&str, usize> = file
        .jobs
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.value.as_str(), i))
        .collect();
    let edges: Vec<Vec<(usize, Position)>> = file
        .jobs
        .iter()
        .enumerate()
        .map(|(me, (_, job))| {
            // A job needing itself is reported on its own; not again as a cycle.
            job.needs
                .iter()
                .filter_map(|n| index.get(n.value.as_str()).map(|&i| (i, n.at)))
                .filter(|(i, _)| *i != me)
                .collect()
        })
        .collect();

    // Kahn's algorithm over "needs" edges: whatever cannot be peeled off lies on or behind a cycle.
    let mut pending: Vec<usize> = edges.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); edges.len()];
    for (from, tos) in edges.iter().enumerate() {
        for &(to, _) in tos {
            dependents[to].push(from);
        }
    }
    let mut ready: Vec<usize> = (0..edges.len()).filter(|&i| pending[i] == 0).collect();
    let mut done = vec![false; edges.len()];
    while let Some(i) = ready.pop() {
        done[i] = true;
        for &d in &dependents[i] {
            pending[d] -= 1;
            if pending[d] == 0 {
                ready.push(d);
            }
        }
    }

    let names: Vec<&str> = file.jobs.iter().map(|(n, _)| n.value.as_str()).collect();
    let mut reported = vec![false; edges.len()];
    for start in 0..edges.len() {
        if done[start] || reported[start] {
            continue;
        }
        // Walk unfinished edges until a node repeats: that suffix is a cycle.
        let mut path = vec![start];
        let mut at_pos: Vec<Position> = Vec::new();
        let mut position_in_path: HashMap<usize, usize> = HashMap::from([(start, 0)]);
        let cycle = loop {
            let Some(&current) = path.last() else {
                break None;
            };
            let Some(&(next, pos)) = edges[current].iter().find(|(n, _)| !done[*n]) else {
                break None;
            };
            at_pos.push(pos);
            if let Some(&k) = position_in_path.get(&next) {
                break Some((path[k..].to_vec(), at_pos[k]));
            }
            position_in_path.insert(next, path.len());
            path.push(next);
        };
        if let Some((cycle, pos)) = cycle {
            if cycle.iter().any(|&i| reported[i]) {
                continue;
            }
            for &i in &cycle {
                reported[i] = true;
            }
            let mut text: Vec<&str> = cycle.iter().map(|&i| names[i]).collect();
            text.push(names[cycle[0]]);
            out.push(
                Diagnostic::new(pos, format!("dependency cycle: {}", text.join(" -> ")))
                    .help("remove one of these `needs` so the jobs can run in some order"),
            );
        }
    }
}

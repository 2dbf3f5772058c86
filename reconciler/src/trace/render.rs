//! The trace for people: one numbered hop per source, each saying where it came from.

use std::fmt::Write as _;

use super::Trace;
use airlock_verify::audit::Decision;

fn short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

/// Strings from the CI's API, pass records, commits and manifests are foreign: control
/// characters (newlines, escape sequences) are shown escaped so none can fake a line.
fn clean(s: &str) -> String {
    airlock_pipeline::terminal::field(s)
}

/// Renders a gathered trace.
pub fn render(t: &Trace) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "trace of {}@{}", t.repository, t.digest);

    let _ = writeln!(o, "\n1. running (reconciler sync history)");
    if let Some(e) = &t.running_error {
        let _ = writeln!(o, "   unknown: {}", clean(&e.to_string()));
    } else if t.running.is_empty() {
        let _ = writeln!(o, "   not running anywhere at the last sync");
    }
    for r in &t.running {
        let _ = writeln!(
            o,
            "   {} {}: {} (sync of environment commit {} at {})",
            r.place,
            r.object,
            r.health,
            short(&r.env_commit),
            r.at
        );
    }
    for p in &t.promotions {
        let _ = writeln!(
            o,
            "   promoted by {} in {} ({}): {}\n     its trailer claims: {}",
            clean(&p.author),
            short(&p.commit),
            clean(&p.date),
            clean(&p.subject),
            clean(&p.verified)
        );
    }

    let _ = writeln!(o, "\n2. image (registry, verified with the trusted keys)");
    match &t.signature {
        Ok(k) => {
            let _ = writeln!(o, "   signature: valid, key {}", clean(&k.to_string()));
        }
        Err(e) => {
            let _ = writeln!(o, "   signature: NONE VALID: {}", clean(&e.to_string()));
        }
    }
    match &t.provenance {
        Ok(s) => {
            let ext = &s.predicate.build_definition.external_parameters;
            let _ = writeln!(
                o,
                "   provenance: SLSA v1 by {}\n     source {} commit {} ({}), job {}\n     invocation {}, reproduced: {}",
                clean(&s.predicate.run_details.builder.id),
                clean(&ext.repository),
                clean(&ext.commit),
                clean(&ext.git_ref),
                clean(&ext.job),
                clean(&s.predicate.run_details.metadata.invocation_id),
                s.reproduced().map_or("unknown".into(), |r| r.to_string())
            );
            let deps = &s.predicate.build_definition.resolved_dependencies;
            for dep in deps.iter().filter(|d| {
                d.name.as_deref().is_some_and(|n| {
                    n.starts_with(airlock_verify::provenance::JOB_IMAGE_NAME_PREFIX)
                })
            }) {
                let _ = writeln!(
                    o,
                    "     {} {}@sha256:{}",
                    clean(dep.name.as_deref().unwrap_or_default()),
                    clean(
                        dep.uri
                            .as_deref()
                            .unwrap_or_default()
                            .trim_start_matches("oci://")
                    ),
                    clean(dep.digest.get("sha256").map_or("", String::as_str))
                );
            }
        }
        Err(e) => {
            let _ = writeln!(o, "   provenance: NONE VALID: {}", clean(&e.to_string()));
        }
    }

    let _ = writeln!(o, "\n3. trusted builder (decision log)");
    match &t.log_chain {
        Ok(n) => {
            let _ = writeln!(o, "   hash chain intact ({n} entries)");
        }
        Err(e) => {
            let _ = writeln!(o, "   HASH CHAIN BROKEN: {}", clean(&e.to_string()));
        }
    }
    match &t.record_name {
        None => {
            let _ = writeln!(o, "   no signing of this digest is logged");
        }
        Some(name) => {
            for e in &t.decisions {
                let what = match &e.decision {
                    Decision::Accepted { .. } => "accepted at intake".to_owned(),
                    Decision::Built {
                        reproduced,
                        differing,
                        ..
                    } => {
                        if *reproduced {
                            "rebuilt hermetically: outputs equal CI's".to_owned()
                        } else {
                            format!(
                                "rebuilt: outputs differ from CI's: {}",
                                clean(&differing.join(", "))
                            )
                        }
                    }
                    Decision::Pushed { image, digest, .. } => {
                        format!(
                            "pushed {} ({})",
                            clean(image),
                            short(digest.trim_start_matches("sha256:"))
                        )
                    }
                    Decision::Signed { .. } => "signed and attested".to_owned(),
                    Decision::Refused { reason, .. } => format!("REFUSED: {}", clean(reason)),
                };
                let _ = writeln!(o, "   #{} {} {}: {what}", e.seq, e.at, clean(name));
            }
        }
    }

    let _ = writeln!(o, "\n4. pass record (outbox, origin signature checked)");
    match &t.record {
        None => {
            let _ = writeln!(o, "   unknown (no record is named in the decision log)");
        }
        Some(Err(e)) => {
            let _ = writeln!(o, "   INVALID: {}", clean(&e.to_string()));
        }
        Some(Ok(r)) => {
            let _ = writeln!(
                o,
                "   {} {} {} job {}: CI run {}, {} .. {}",
                clean(&r.project),
                clean(&r.git_ref),
                clean(&r.commit),
                clean(&r.job),
                clean(&r.ci_run_id),
                clean(&r.started_at),
                clean(&r.finished_at)
            );
            if t.record_mismatch.is_empty() {
                let _ = writeln!(
                    o,
                    "   outputs match the provenance ({} files)",
                    r.outputs.len()
                );
            } else {
                let _ = writeln!(
                    o,
                    "   OUTPUTS DIFFER from the provenance: {}",
                    clean(&t.record_mismatch.join(", "))
                );
            }
        }
    }

    let _ = writeln!(o, "\n5. CI run and review (CI public API)");
    match &t.ci_run {
        None => {
            let _ = writeln!(o, "   not looked up (pass --ci-url)");
        }
        Some(Err(e)) => {
            let _ = writeln!(o, "   unknown: {}", clean(&e.to_string()));
        }
        Some(Ok(run)) => {
            let _ = writeln!(
                o,
                "   run {} {}: {} {} at {} ({}, {}), {}",
                run.id,
                clean(&run.status),
                clean(&run.kind),
                clean(&run.git_ref),
                clean(short(&run.commit)),
                clean(&run.forge.to_string()),
                clean(&run.event.to_string()),
                clean(&run.url.to_string())
            );
        }
    }
    for r in &t.reviews {
        let _ = writeln!(
            o,
            "   review: change {} patchset {} \"{}\" by {}: run {} {} {}; reported {}",
            clean(r.change.as_deref().unwrap_or("?")),
            r.patchset.unwrap_or(0),
            clean(&r.title),
            clean(&r.author),
            r.id,
            clean(&r.status),
            clean(&r.event.to_string()),
            if r.reports.is_empty() {
                "nothing yet".to_owned()
            } else {
                clean(&r.reports.join("; "))
            }
        );
    }

    let breaks = t.breaks();
    if breaks.is_empty() {
        let _ = writeln!(
            o,
            "\nthe chain holds: signed by the builder, logged, from a pass record that opens and matches"
        );
    } else {
        let _ = writeln!(o, "\nTHE CHAIN DOES NOT HOLD:");
        for b in &breaks {
            let _ = writeln!(o, "   - {}", clean(b));
        }
    }
    if !t.refused.is_empty() {
        let _ = writeln!(
            o,
            "\nrefused at the boundaries (same project or repository)"
        );
        for r in &t.refused {
            let _ = writeln!(
                o,
                "   {} {} {}: {}",
                clean(&r.when),
                r.at,
                clean(&r.what),
                clean(&r.reason)
            );
        }
    }
    o
}

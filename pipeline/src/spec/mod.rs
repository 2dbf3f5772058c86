//! The pipeline file: its format, validation with positions, and JSON Schema.

mod diagnostic;
pub mod file;
mod located;
pub mod model;
mod quantity;
mod validate;

use sha2::{Digest, Sha256};

pub use diagnostic::{Diagnostic, Diagnostics};
pub use located::{Located, LocatedMap, Position};
pub use model::*;
pub use quantity::parse_bytes;

/// Where a pipeline file lives inside a repository.
pub const PIPELINE_PATH: &str = ".pipeline/config.yaml";

/// Largest pipeline file accepted. Checked before parsing: the file comes
/// from an untrusted change.
pub const MAX_PIPELINE_BYTES: usize = 1024 * 1024;

/// Parses and validates a pipeline file. `source_name` is used in messages.
pub fn parse(source_name: &str, bytes: &[u8]) -> Result<Pipeline, Diagnostics> {
    let fail = |d: Diagnostic| Diagnostics {
        source_name: source_name.to_string(),
        items: vec![d],
    };
    if bytes.len() > MAX_PIPELINE_BYTES {
        return Err(fail(
            Diagnostic::new(
                Position::default(),
                format!(
                    "file is {} bytes; the limit is {} bytes (1 MiB)",
                    bytes.len(),
                    MAX_PIPELINE_BYTES
                ),
            )
            .help("split long scripts into files in the repository and run them from the job"),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        fail(Diagnostic::new(
            Position::default(),
            format!("file is not UTF-8 ({e})"),
        ))
    })?;
    let file: file::PipelineFile = serde_saphyr::from_str_with_options(text, parse_options())
        .map_err(|e| fail(yaml_diagnostic(&e)))?;
    let file_sha256 = hex::encode(Sha256::digest(bytes));
    validate::validate(&file, file_sha256).map_err(|mut items| {
        items.sort_by_key(|d| d.at);
        Diagnostics {
            source_name: source_name.to_string(),
            items,
        }
    })
}

/// Reads and validates a pipeline file from disk.
pub fn load(path: &std::path::Path) -> Result<Pipeline, Diagnostics> {
    let name = path.display().to_string();
    let fail = |msg: String| Diagnostics {
        source_name: name.clone(),
        items: vec![Diagnostic::new(Position::default(), msg)],
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    if meta.len() > MAX_PIPELINE_BYTES as u64 {
        return parse(&name, &vec![0; MAX_PIPELINE_BYTES + 1]);
    }
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    parse(&name, &bytes)
}

/// JSON Schema of the pipeline file, generated from the types, for editors.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(file::PipelineFile)).unwrap_or_default()
}

/// YAML limits for untrusted pipeline files: a few thousand aliases is
/// already more than any honest file needs; a billion-laughs file needs millions.
fn parse_options() -> serde_saphyr::Options {
    untrusted_yaml_options(200_000, 20_000)
}

/// YAML limits for any untrusted YAML (pipeline files, environment manifests): at most
/// `max_events` parser events and `max_replayed` events replayed through aliases, a thousand
/// aliases and anchors, nesting 64 deep, and duplicate keys refused.
pub fn untrusted_yaml_options(max_events: usize, max_replayed: usize) -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_events: max_events,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_depth: 64,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: max_replayed,
            max_replay_stack_depth: 16,
        },
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::Error,
    }
}

fn yaml_diagnostic(err: &serde_saphyr::Error) -> Diagnostic {
    let at = err.location().map(Position::from).unwrap_or_default();
    let inner = err.without_snippet();
    let mut message = inner.to_string();
    // The crate appends its own " at line X column Y"; we print the position in front.
    for tail in [" at line ", ", set DuplicateKeyPolicy"] {
        if let Some(idx) = message.find(tail) {
            message.truncate(idx);
        }
    }
    let lower = message.to_lowercase();
    let help = if lower.contains("unknown field") {
        Some("remove the key or fix its spelling; `ci-cluster schema` prints every allowed key")
    } else if lower.contains("duplicate") {
        Some("every key may appear once; give each job a unique name")
    } else if lower.contains("budget") || lower.contains("alias") || lower.contains("replay") {
        Some(
            "the file expands YAML aliases beyond Airlock's limits; write the values out or use fewer aliases",
        )
    } else if lower.contains("unknown variant") {
        Some("use one of the listed values")
    } else if lower.contains("missing field") {
        Some("add the field; `ci-cluster schema` describes it")
    } else {
        None
    };
    let d = Diagnostic::new(at, message);
    match help {
        Some(h) => d.help(h),
        None => d,
    }
}

#[cfg(test)]
mod tests;

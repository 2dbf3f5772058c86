//! Validates API responses against the server's own OpenAPI document.
//!
//! The schema of a response is found by (path template, method, status);
//! a validator is built over the whole document with a root `$ref` to that
//! schema, so the `$ref`s into `#/components/schemas` resolve in place.
//! Object schemas are made strict (`additionalProperties: false`) first:
//! a field the server sends but the document does not describe fails too.

use std::collections::BTreeSet;

use serde_json::{Value, json};

pub struct OpenApi {
    strict: Value,
    /// (method, template, status) checked so far, for the coverage assertion.
    pub checked: BTreeSet<(String, String, u16)>,
}

impl OpenApi {
    pub fn new(doc: Value) -> OpenApi {
        assert!(
            doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
            "not OpenAPI 3: {}",
            doc["openapi"]
        );
        let mut strict = doc;
        if let Some(schemas) = strict.pointer_mut("/components/schemas") {
            make_strict(schemas);
        }
        OpenApi {
            strict,
            checked: BTreeSet::new(),
        }
    }

    /// Every (method, path template) the document describes.
    pub fn operations(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in self.strict["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    out.insert((method.clone(), path.clone()));
                }
            }
        }
        out
    }

    /// Panics unless `body` is valid for the documented JSON response.
    pub fn validate(&mut self, method: &str, template: &str, status: u16, body: &Value) {
        let method = method.to_lowercase();
        let pointer = format!(
            "/paths/{}/{method}/responses/{status}/content/application~1json/schema",
            template.replace('~', "~0").replace('/', "~1")
        );
        assert!(
            self.strict.pointer(&pointer).is_some(),
            "{method} {template} answered {status}, which the OpenAPI document does not describe: {body}"
        );
        let mut schema = self.strict.clone();
        schema["$ref"] = json!(format!("#{}", percent_encode(&pointer)));
        let validator = jsonschema::draft202012::new(&schema).unwrap_or_else(|e| {
            panic!("schema of {method} {template} {status} does not compile: {e}")
        });
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{e} (at '{}')", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {template} {status}: body does not match the document:\n{}\n{body:#}",
            errors.join("\n")
        );
        self.checked.insert((method, template.to_string(), status));
    }
}

/// Adds `additionalProperties: false` to every object schema with properties.
fn make_strict(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for v in map.values_mut() {
                make_strict(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(make_strict),
        _ => {}
    }
}

/// A JSON pointer as a URI fragment: `{`, `}` and friends percent-encoded.
fn percent_encode(pointer: &str) -> String {
    let mut out = String::new();
    for b in pointer.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

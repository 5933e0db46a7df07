//! The JSON Schemas of the manifest formats, generated from the types (so they cannot
//! drift), and validation of a parsed document against them. Validating against the
//! schema first lets one pass report *every* unknown key, wrong type and bad value in a
//! file, each at its own line and column, instead of stopping at serde's first error.

use std::path::Path;
use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use super::diagnostic::{Diagnostic, nearest};
use super::types::{ClientManifest, FleetManifest};
use super::yaml::Document;

/// Which manifest format a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fleet,
    Client,
}

impl Kind {
    pub fn file_name(self) -> &'static str {
        match self {
            Kind::Fleet => "fleet.schema.json",
            Kind::Client => "client.schema.json",
        }
    }

    /// The generated schema, as published in `schemas/`.
    pub fn schema(self) -> &'static Value {
        static FLEET: OnceLock<Value> = OnceLock::new();
        static CLIENT: OnceLock<Value> = OnceLock::new();
        match self {
            Kind::Fleet => FLEET.get_or_init(|| generate::<FleetManifest>("fleet")),
            Kind::Client => CLIENT.get_or_init(|| generate::<ClientManifest>("client")),
        }
    }

    fn validator(self) -> &'static jsonschema::Validator {
        static FLEET: OnceLock<jsonschema::Validator> = OnceLock::new();
        static CLIENT: OnceLock<jsonschema::Validator> = OnceLock::new();
        let cell = match self {
            Kind::Fleet => &FLEET,
            Kind::Client => &CLIENT,
        };
        cell.get_or_init(|| {
            jsonschema::validator_for(self.schema())
                .unwrap_or_else(|err| panic!("steward's own {self:?} schema is invalid: {err}"))
        })
    }
}

fn generate<T: schemars::JsonSchema>(name: &str) -> Value {
    // Draft 7: editors (yaml-language-server) support it fully, and its meta-schema is one
    // small document, so compiling the validator (which first checks the schema against
    // its meta-schema) costs a fraction of 2020-12's vocabularies. It is paid by every
    // command that loads the fleet.
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut schema = serde_json::to_value(generator.into_root_schema_for::<T>())
        .unwrap_or_else(|err| panic!("schema for {name} does not serialize: {err}"));
    strip_null(&mut schema);
    if let Value::Object(map) = &mut schema {
        map.insert(
            "$id".to_owned(),
            Value::String(format!("https://steward.dev/schemas/{name}.schema.json")),
        );
    }
    schema
}

/// Optional fields may be absent, but not `null`: rewrite schemars' `anyOf [T, null]` and
/// `type: [T, "null"]` to plain `T`, so the validator reports the real problem inside a
/// field instead of "matches no branch of anyOf".
fn strip_null(node: &mut Value) {
    match node {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let single = types.remove(0);
                    map.insert("type".to_owned(), single);
                }
            }
            if let Some(Value::Array(branches)) = map.get("anyOf") {
                let real: Vec<Value> = branches
                    .iter()
                    .filter(|b| b.get("type") != Some(&Value::from("null")))
                    .cloned()
                    .collect();
                if real.len() == 1 && branches.len() == 2 {
                    map.remove("anyOf");
                    if let Value::Object(inner) = &real[0] {
                        for (k, v) in inner {
                            map.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                }
            }
            map.values_mut().for_each(strip_null);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}

/// Check a parsed document against its format's schema; one diagnostic per problem.
pub fn check(kind: Kind, file: &Path, doc: &Document) -> Vec<Diagnostic> {
    let root = kind.schema();
    let mut out = Vec::new();
    for error in kind.validator().iter_errors(&doc.value) {
        let pointer = error.instance_path().as_str().to_owned();
        let field = dotted(&pointer);
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let known = known_keys(root, &pointer);
                for key in unexpected {
                    let child = format!("{pointer}/{}", super::yaml::escape(key));
                    let at = doc.spans.key(&child);
                    let suggestion = nearest(key, known.iter().map(String::as_str));
                    let expected = if known.is_empty() {
                        String::new()
                    } else {
                        format!("; expected one of: {}", known.join(", "))
                    };
                    out.push(
                        Diagnostic::error(
                            file,
                            at,
                            dotted(&child),
                            format!("unknown field `{key}`{expected}"),
                        )
                        .suggest(suggestion),
                    );
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let at = doc.spans.key(&pointer);
                out.push(Diagnostic::error(
                    file,
                    at,
                    field,
                    format!("missing required field `{name}`"),
                ));
            }
            ValidationErrorKind::Type { kind } => {
                let expected = match kind {
                    TypeKind::Single(t) => friendly_type(&t.to_string()).to_owned(),
                    TypeKind::Multiple(set) => format!("{set:?}"),
                };
                let found = json_type(error.instance());
                let at = doc.spans.value(&pointer);
                out.push(Diagnostic::error(
                    file,
                    at,
                    field,
                    format!("expected {expected}, found {found}"),
                ));
            }
            ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. }
                if !allowed_values(root, &pointer).is_empty() =>
            {
                let options = allowed_values(root, &pointer);
                let got = error
                    .instance()
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| error.instance().to_string());
                let at = doc.spans.value(&pointer);
                out.push(
                    Diagnostic::error(
                        file,
                        at,
                        field,
                        format!("`{got}` is not one of: {}", options.join(", ")),
                    )
                    .suggest(nearest(&got, options.iter().map(String::as_str))),
                );
            }
            ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. }
                if pointer.starts_with("/spec/env/")
                    || pointer.starts_with("/spec/defaults/env/") =>
            {
                let at = doc.spans.value(&pointer);
                out.push(Diagnostic::error(
                    file,
                    at,
                    field,
                    format!(
                        "expected a string or a secret reference like `{{ env: NAME, sensitive: true }}`, found {}",
                        json_type(error.instance())
                    ),
                ));
            }
            ValidationErrorKind::Enum { options } => {
                let at = doc.spans.value(&pointer);
                let options: Vec<&str> = options
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let got = error
                    .instance()
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| error.instance().to_string());
                out.push(
                    Diagnostic::error(
                        file,
                        at,
                        field,
                        format!("`{got}` is not one of: {}", options.join(", ")),
                    )
                    .suggest(nearest(&got, options.iter().copied())),
                );
            }
            ValidationErrorKind::Pattern { .. } if pointer.contains("/schedule/windows/") => {
                let at = doc.spans.value(&pointer);
                out.push(Diagnostic::error(
                    file,
                    at,
                    field,
                    format!(
                        "{} is not a window; write it like `Sat 02:00-05:00`, `Mon-Fri 22:00-23:30` or `daily 03:00-04:00`",
                        echo(error.instance())
                    ),
                ));
            }
            _ => {
                let at = doc.spans.value(&pointer);
                // The validator's own message quotes the whole value; a manifest can hold
                // anything, so quote at most a short, single-line prefix of it.
                let instance = error.instance();
                let message = error
                    .to_string()
                    .replace(&instance.to_string(), &echo(instance));
                out.push(Diagnostic::error(file, at, field, message));
            }
        }
    }
    out
}

/// A value as an error may quote it: a string shortened to one line of at most 40
/// characters, anything else by its type.
fn echo(value: &Value) -> String {
    const MAX: usize = 40;
    match value.as_str() {
        Some(text) => {
            let line = text.lines().next().unwrap_or_default();
            let short: String = line.chars().take(MAX).collect();
            if short.len() < text.len() {
                format!("`{short}…`")
            } else {
                format!("`{short}`")
            }
        }
        None => json_type(value).to_owned(),
    }
}

/// `/spec/database/url` → `spec.database.url`.
pub fn dotted(pointer: &str) -> String {
    pointer
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

fn friendly_type(name: &str) -> &str {
    match name {
        "array" => "a list",
        "object" => "a mapping",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "a boolean (true or false)",
        other => other,
    }
}

/// The closed set of values a field takes (a Rust enum), read from `const`/`enum` branches.
fn allowed_values(root: &Value, pointer: &str) -> Vec<String> {
    let mut node = resolve(root, root);
    for segment in pointer.split('/').skip(1) {
        match child(root, node, segment) {
            Some(next) => node = next,
            None => return Vec::new(),
        }
    }
    let mut values = Vec::new();
    for schema in object_schemas(root, node) {
        if let Some(c) = schema.get("const").and_then(Value::as_str) {
            values.push(c.to_owned());
        }
        if let Some(list) = schema.get("enum").and_then(Value::as_array) {
            values.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
        }
    }
    values
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The property names the schema allows at `pointer`, for "did you mean" hints.
fn known_keys(root: &Value, pointer: &str) -> Vec<String> {
    let mut node = resolve(root, root);
    for segment in pointer.split('/').skip(1) {
        let Some(next) = child(root, node, segment) else {
            return Vec::new();
        };
        node = next;
    }
    let mut keys: Vec<String> = object_schemas(root, node)
        .into_iter()
        .filter_map(|s| s.get("properties").and_then(Value::as_object))
        .flat_map(|props| props.keys().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn child<'a>(root: &'a Value, node: &'a Value, segment: &str) -> Option<&'a Value> {
    for schema in object_schemas(root, node) {
        if let Some(prop) = schema.get("properties").and_then(|p| p.get(segment)) {
            return Some(resolve(root, prop));
        }
        if let Some(items) = schema
            .get("items")
            .filter(|_| segment.parse::<usize>().is_ok())
        {
            return Some(resolve(root, items));
        }
        if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            return Some(resolve(root, extra));
        }
    }
    None
}

/// The schema itself, or the branches of an `anyOf`/`oneOf` (how Option<T> is written).
fn object_schemas<'a>(root: &'a Value, node: &'a Value) -> Vec<&'a Value> {
    let node = resolve(root, node);
    let mut out = vec![node];
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(branches) = node.get(key).and_then(Value::as_array) {
            out.extend(branches.iter().map(|b| resolve(root, b)));
        }
    }
    out
}

fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    let mut node = node;
    for _ in 0..16 {
        match node
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
        {
            Some(path) => match root.pointer(path) {
                Some(target) => node = target,
                None => return node,
            },
            None => return node,
        }
    }
    node
}

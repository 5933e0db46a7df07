//! Reading untrusted YAML: size, depth and alias budgets first, then a tree that remembers
//! where every key and value came from, so later checks can point at file:line:column.
//!
//! Manifests arrive in pull requests, so a file is capped in size, nesting depth and alias
//! expansion (a "billion laughs" document is refused in microseconds, not expanded).

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::{DuplicateKeyPolicy, Spanned};

use super::diagnostic::Position;

/// The largest manifest steward reads. Real ones are a few KiB.
pub const MAX_FILE_BYTES: usize = 256 * 1024;
const MAX_DEPTH: usize = 24;
const MAX_NODES: usize = 20_000;
const MAX_ALIASES: usize = 200;

/// A parsed document: the value as JSON, plus where each JSON pointer came from.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: Value,
    pub spans: Spans,
}

/// JSON pointer → position of the value, and of the key that introduced it.
#[derive(Debug, Clone, Default)]
pub struct Spans {
    values: HashMap<String, Position>,
    keys: HashMap<String, Position>,
}

impl Spans {
    /// Where the value at `pointer` is, falling back to its nearest ancestor.
    pub fn value(&self, pointer: &str) -> Position {
        self.lookup(&self.values, pointer)
    }

    /// Where the key that holds `pointer` is, falling back to the value.
    pub fn key(&self, pointer: &str) -> Position {
        self.keys
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.value(pointer))
    }

    fn lookup(&self, map: &HashMap<String, Position>, pointer: &str) -> Position {
        let mut current = pointer;
        loop {
            if let Some(position) = map.get(current) {
                return *position;
            }
            match current.rfind('/') {
                Some(cut) => current = &current[..cut],
                None => return Position::FILE,
            }
        }
    }
}

/// Why a file could not be read as YAML at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub at: Position,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Parse one YAML document under steward's budgets.
pub fn parse(text: &str) -> Result<Document, SyntaxError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(SyntaxError {
            at: Position::FILE,
            message: format!(
                "file is {} bytes; manifests are limited to {MAX_FILE_BYTES} bytes",
                text.len()
            ),
        });
    }
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_aliases: MAX_ALIASES,
            max_documents: 1,
            max_reader_input_bytes: Some(MAX_FILE_BYTES),
        },
        duplicate_keys: DuplicateKeyPolicy::Error,
        strict_booleans: true,
        // `2024_12_18_001` is a schema version, not the YAML 1.1 integer 20241218001.
        underscored_numbers_as_strings: true,
        leading_zero_numbers_as_strings: true,
    };
    let root: Spanned<Node> =
        serde_saphyr::from_str_with_options(text, options).map_err(|err| syntax_error(&err))?;
    let mut spans = Spans::default();
    let value = flatten(root, String::new(), &mut spans);
    Ok(Document { value, spans })
}

fn syntax_error(err: &serde_saphyr::Error) -> SyntaxError {
    let at = err
        .location()
        .map(|loc| Position {
            line: loc.line(),
            column: loc.column(),
        })
        .filter(|p| p.line > 0)
        .unwrap_or(Position::FILE);
    // The plain message, without the snippet: the printer adds file:line:column itself.
    let message = err.without_snippet().to_string();
    let message = message.lines().next().unwrap_or("invalid YAML").to_owned();
    let message = strip_location_suffix(&message);
    let message = if message.contains("budget")
        || message.contains("alias")
        || message.contains("Alias")
    {
        format!(
            "refused: {message}; the document expands past steward's limits (manifests are untrusted input, read with caps on size, depth, nodes and aliases)"
        )
    } else {
        message
    };
    SyntaxError { at, message }
}

/// serde-saphyr appends " at line X column Y"; the diagnostic already carries both.
fn strip_location_suffix(message: &str) -> String {
    match message.find(" at line ") {
        Some(cut) => message[..cut].to_owned(),
        None => message.to_owned(),
    }
}

fn position(spanned: &Spanned<impl Sized>) -> Position {
    Position {
        line: spanned.referenced.line(),
        column: spanned.referenced.column(),
    }
}

fn flatten(node: Spanned<Node>, pointer: String, spans: &mut Spans) -> Value {
    spans.values.insert(pointer.clone(), position(&node));
    match node.value {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Int(i) => Value::Number(i.into()),
        Node::UInt(u) => Value::Number(u.into()),
        Node::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        Node::Str(s) => Value::String(s),
        Node::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| flatten(item, format!("{pointer}/{i}"), spans))
                .collect(),
        ),
        Node::Map(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let child = format!("{pointer}/{}", escape(&key.value));
                spans.keys.insert(child.clone(), position(&key));
                let value = flatten(value, child, spans);
                map.insert(key.value, value);
            }
            Value::Object(map)
        }
    }
}

/// JSON pointer escaping (RFC 6901).
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// A YAML node of any shape, with spans on every child.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_and_key_keeps_its_line_and_column() {
        let doc = parse("a:\n  b: 1\n  list:\n    - x\n    - y\n").expect("valid");
        assert_eq!(doc.value["a"]["b"], 1);
        assert_eq!(doc.spans.key("/a/b"), Position { line: 2, column: 3 });
        assert_eq!(doc.spans.value("/a/b"), Position { line: 2, column: 6 });
        assert_eq!(doc.spans.value("/a/list/1").line, 5);
    }

    #[test]
    fn a_missing_pointer_falls_back_to_its_nearest_ancestor() {
        let doc = parse("a:\n  b: 1\n").expect("valid");
        assert_eq!(doc.spans.value("/a/zzz"), doc.spans.value("/a"));
    }

    #[test]
    fn a_billion_laughs_document_is_refused_quickly() {
        let mut text = String::from(
            "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for i in 1..10 {
            let prev = i - 1;
            let refs = vec![format!("*a{prev}"); 9].join(",");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let started = std::time::Instant::now();
        let err = parse(&text).expect_err("alias bomb must be refused");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(err.message.contains("refused"), "{}", err.message);
    }

    #[test]
    fn duplicate_keys_are_an_error() {
        let err = parse("a: 1\na: 2\n").expect_err("duplicate");
        assert_eq!(err.at.line, 2);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(100) + &"]".repeat(100);
        assert!(parse(&text).is_err());
    }
}

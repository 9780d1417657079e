//! The spanned document tree that both YAML readers and the JSON reader build: one small value
//! type that remembers the line and column of every node and key, the limits every reader
//! holds, and how plain scalars and keys are read (YAML 1.2's core schema).

use crate::diag::Pos;

/// Largest input file accepted, in bytes.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;
/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Most nodes a document may hold after aliases are expanded.
pub const MAX_NODES: usize = 200_000;
/// Mappings with more keys than this index them for the duplicate check (a formation of
/// 1,000 services is one mapping of 1,000 keys: a scan per key would cost).
pub(crate) const SCAN_KEYS: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

impl Node {
    /// A short description of what this node is, for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null => "nothing (null)".into(),
            Value::Bool(b) => format!("boolean {b}"),
            Value::Int(i) => format!("integer {i}"),
            Value::Float(x) => format!("number {x}"),
            Value::Str(s) if s.chars().count() > 40 => {
                format!("a string ({} characters)", s.chars().count())
            }
            Value::Str(s) => format!("string {s:?}"),
            Value::Seq(_) => "a list".into(),
            Value::Map(_) => "a mapping".into(),
        }
    }
}

/// A mapping key's name: a scalar as written (a number or boolean as Rust prints it, a null
/// as the empty string); `None` for a collection.
pub(crate) fn key_name(v: &Value) -> Option<String> {
    Some(match v {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Null => String::new(),
        Value::Seq(_) | Value::Map(_) => return None,
    })
}

/// YAML 1.2 core schema resolution of a plain (unquoted) scalar.
pub(crate) fn resolve_plain(text: String) -> Value {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let t = text.as_str();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = t.parse::<i64>() {
            return Value::Int(i);
        }
        return Value::Str(text);
    }
    if let Some(h) = t.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(h, 16) {
            return Value::Int(i);
        }
    }
    if let Some(o) = t.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(o, 8) {
            return Value::Int(i);
        }
    }
    let looks_float = digits.bytes().any(|b| b.is_ascii_digit())
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E' || b == b'-' || b == b'+')
        && digits.bytes().filter(|b| *b == b'.').count() <= 1;
    if looks_float {
        if let Ok(f) = t.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(text)
}

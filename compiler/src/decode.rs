//! Typed reading of the spanned tree: fields with unknown-key detection ("did you mean"),
//! and scalar accessors that report "expected X, found Y" at the node's position.

use crate::diag::{did_you_mean, Pos, Sink};
use crate::node::{Key, Node, Value};

/// The entries of one mapping, read field by field; `finish` reports every key never read.
pub(crate) struct Fields<'n> {
    entries: &'n [(Key, Node)],
    used: Vec<bool>,
}

impl<'n> Fields<'n> {
    pub fn new(entries: &'n [(Key, Node)]) -> Self {
        Fields { entries, used: vec![false; entries.len()] }
    }

    pub fn get(&mut self, name: &str) -> Option<&'n Node> {
        let i = self.entries.iter().position(|(k, _)| k.name == name)?;
        self.used[i] = true;
        Some(&self.entries[i].1)
    }

    /// Reports every key that was not read, suggesting the closest allowed one.
    pub fn finish(self, sink: &mut Sink<'_>, allowed: &[&str], context: &str) {
        for ((k, _), used) in self.entries.iter().zip(self.used) {
            if used {
                continue;
            }
            let msg = format!("unknown key `{}` in {context}", k.name);
            match did_you_mean(&k.name, allowed) {
                Some(s) => sink.error_hint(k.pos, msg, format!("did you mean `{s}`?")),
                None => sink.error_hint(k.pos, msg, format!("allowed keys: {}", allowed.join(", "))),
            }
        }
    }
}

pub(crate) fn map<'n>(n: &'n Node, sink: &mut Sink<'_>, what: &str) -> Option<&'n [(Key, Node)]> {
    match &n.value {
        Value::Map(m) => Some(m),
        _ => {
            sink.error(n.pos, format!("{what} must be a mapping of `key: value`, found {}", n.describe()));
            None
        }
    }
}

pub(crate) fn seq<'n>(n: &'n Node, sink: &mut Sink<'_>, what: &str) -> Option<&'n [Node]> {
    match &n.value {
        Value::Seq(s) => Some(s),
        _ => {
            sink.error(n.pos, format!("{what} must be a list, found {}", n.describe()));
            None
        }
    }
}

pub(crate) fn string(n: &Node, sink: &mut Sink<'_>, what: &str) -> Option<String> {
    match &n.value {
        Value::Str(s) if !s.is_empty() => Some(s.clone()),
        Value::Str(_) => {
            sink.error(n.pos, format!("{what} must not be empty"));
            None
        }
        _ => {
            sink.error(n.pos, format!("{what} must be a string, found {}", n.describe()));
            None
        }
    }
}

/// A scalar turned into text (for environment values, where `80` and `"80"` mean the same).
pub(crate) fn scalar_text(n: &Node, sink: &mut Sink<'_>, what: &str) -> Option<String> {
    match &n.value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => {
            sink.error_hint(n.pos, format!("{what} must be a string, number or boolean, found {}", n.describe()), "quote the value");
            None
        }
    }
}

pub(crate) fn boolean(n: &Node, sink: &mut Sink<'_>, what: &str) -> Option<bool> {
    match &n.value {
        Value::Bool(b) => Some(*b),
        Value::Str(s) if matches!(s.as_str(), "yes" | "no" | "on" | "off" | "y" | "n") => {
            sink.error_hint(
                n.pos,
                format!("{what} must be true or false, found {}", n.describe()),
                "YAML 1.2 reads yes/no/on/off as strings: write true or false",
            );
            None
        }
        _ => {
            sink.error(n.pos, format!("{what} must be true or false, found {}", n.describe()));
            None
        }
    }
}

/// An integer within `lo..=hi`.
pub(crate) fn int_in(n: &Node, sink: &mut Sink<'_>, what: &str, lo: i64, hi: i64) -> Option<i64> {
    match &n.value {
        Value::Int(i) if (lo..=hi).contains(i) => Some(*i),
        Value::Int(i) => {
            sink.error(n.pos, format!("{what} must be between {lo} and {hi}, found {i}"));
            None
        }
        _ => {
            sink.error(n.pos, format!("{what} must be a whole number, found {}", n.describe()));
            None
        }
    }
}

/// Checks `s` against a simple character-class rule and reports it at `pos` with `rule` as hint.
pub(crate) fn check(sink: &mut Sink<'_>, pos: Pos, ok: bool, msg: impl Into<String>, rule: &str) -> bool {
    if !ok {
        sink.error_hint(pos, msg, rule.to_string());
    }
    ok
}

//! YAML and JSON parsed into the spanned document tree (`tree`), which remembers the line and
//! column of every node and key, so that later checks can point at the source: plain YAML by
//! `plain_yaml`, the rest by yaml-rust2, JSON by a small reader of its own.
//!
//! Parsing is bounded: input size, nesting depth and alias expansion all have limits, so that
//! hostile input (alias bombs, deep nesting, huge files) gets a clear error instead of
//! exhausting memory or the stack.

use crate::diag::{Pos, Sink};
use crate::tree::{key_name, resolve_plain, SCAN_KEYS};
pub use crate::tree::{Key, Node, Value, MAX_DEPTH, MAX_INPUT_BYTES, MAX_NODES};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Parses one YAML document. Returns `None` when the document is unusable; every problem found
/// (syntax, duplicate keys, limits) goes to `sink`. Plain documents are read by
/// `plain_yaml`, the rest by yaml-rust2: the same tree either way.
pub(crate) fn parse_yaml(src: &str, sink: &mut Sink<'_>) -> Option<Node> {
    plain(src).or_else(|| parse_whole(src, sink))
}

/// The document read by the fast reader, when it is plain (and not too large to read).
fn plain(src: &str) -> Option<Node> {
    (src.len() <= MAX_INPUT_BYTES).then(|| crate::plain_yaml::parse(src)).flatten()
}

/// The document read by yaml-rust2, whole: every diagnostic comes from here.
pub(crate) fn parse_whole(src: &str, sink: &mut Sink<'_>) -> Option<Node> {
    if src.len() > MAX_INPUT_BYTES {
        sink.error_hint(
            Pos::new(1, 1),
            format!("file is {} bytes, larger than the {} bytes accepted", src.len(), MAX_INPUT_BYTES),
            "split the file or remove what does not belong in it",
        );
        return None;
    }
    let mut b = YamlBuilder::default();
    let mut parser = Parser::new_from_str(src);
    if let Err(e) = parser.load(&mut b, true) {
        let m = e.marker();
        if e.info().contains("recursion limit") {
            sink.error_hint(marker_pos(m), format!("nesting deeper than {MAX_DEPTH} levels"), "flatten the document");
        } else {
            sink.error_hint(marker_pos(m), format!("YAML syntax: {}", e.info()), "fix the YAML syntax at this position");
        }
        return None;
    }
    if let Some((pos, msg, hint)) = b.fatal {
        sink.error_hint(pos, msg, hint);
        return None;
    }
    for (pos, msg, hint) in b.errors {
        sink.error_hint(pos, msg, hint);
    }
    match b.docs.len() {
        0 => Some(Node { pos: Pos::new(1, 1), value: Value::Null }),
        1 => b.docs.pop(),
        _ => {
            sink.error_hint(b.second_doc, "more than one YAML document in the file", "keep a single document (remove the second `---`)");
            None
        }
    }
}

/// Inputs smaller than this are parsed on one thread: cutting them costs more than it saves.
const PARALLEL_BYTES: usize = 64 * 1024;

/// Parses one YAML document as [`parse_yaml`] does, on up to `workers` threads when it is large
/// and a block mapping of plain top-level keys (`gilliam.yml`: a formation of 1,000 services is
/// one mapping of 1,000 keys). It is cut at top-level keys into a piece for each worker, each
/// piece parsed on its own with its lines numbered from where it starts, and the mappings
/// joined. Anything a piece alone could read otherwise (an error, an alias, a key that two
/// pieces hold) has the whole document parsed at once instead: what it says is what
/// `parse_yaml` says, and the tree is the same either way.
pub(crate) fn parse_yaml_with(src: &str, sink: &mut Sink<'_>, workers: usize) -> Option<Node> {
    plain(src).or_else(|| in_pieces(src, workers)).or_else(|| parse_whole(src, sink))
}

/// The document parsed in pieces, when it can be (`None`: parse it whole).
fn in_pieces(src: &str, workers: usize) -> Option<Node> {
    let cuts = if workers > 1 && src.len() >= PARALLEL_BYTES && src.len() <= MAX_INPUT_BYTES { top_level_cuts(src, workers) } else { Vec::new() };
    if cuts.len() < 2 {
        return None;
    }
    let pieces: Vec<(&str, u32)> = cuts.windows(2).map(|w| (&src[w[0].0..w[1].0], w[0].1)).chain(cuts.last().map(|&(at, line)| (&src[at..], line))).collect();
    let parsed = crate::par::map(pieces, workers, |(text, line0)| {
        let mut b = YamlBuilder { line0, ..YamlBuilder::default() };
        let ok = Parser::new_from_str(text).load(&mut b, true).is_ok();
        (ok && b.fatal.is_none() && b.errors.is_empty() && !b.aliases && b.docs.len() == 1).then(|| (b.docs.pop(), b.nodes))
    });
    let mut entries: Vec<(Key, Node)> = Vec::new();
    let mut names = std::collections::HashSet::new();
    let (mut nodes, mut pos) = (0, None);
    for piece in parsed {
        match piece {
            Some((Some(Node { pos: p, value: Value::Map(e) }), n)) if e.iter().all(|(k, _)| names.insert(k.name.clone())) => {
                pos = pos.or(Some(p));
                nodes += n;
                entries.extend(e);
            }
            _ => return None,
        }
    }
    if nodes > MAX_NODES {
        return None;
    }
    Some(Node { pos: pos.unwrap_or(Pos::new(1, 1)), value: Value::Map(entries) })
}

/// Where `src` can be cut into `workers` pieces of about the same size, each a run of whole
/// top-level entries: (byte offset, line number of the piece's first line, from 0). Empty
/// when `src` is not plainly a block mapping at column 0 (its first line that is neither
/// blank nor a comment is a key).
fn top_level_cuts(src: &str, workers: usize) -> Vec<(usize, u32)> {
    // A line that starts a top-level entry: a plain key at column 0.
    let starts_entry = |line: &str| line.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') && line.contains(':');
    let first = src.lines().find(|l| !l.trim().is_empty() && !l.starts_with('#'));
    if !first.is_some_and(starts_entry) {
        return Vec::new();
    }
    let mut cuts = vec![(0, 0)];
    let step = src.len() / workers;
    let (mut at, mut line) = (0usize, 0u32);
    for l in src.split_inclusive('\n') {
        if cuts.len() < workers && at >= step * cuts.len() && starts_entry(l) {
            cuts.push((at, line));
        }
        at += l.len();
        line += 1;
    }
    cuts
}

fn marker_pos(m: &Marker) -> Pos {
    Pos::new(m.line() as u32, m.col() as u32 + 1)
}

enum Frame {
    Seq(Pos, Vec<Node>, usize),
    /// Entries, the key waiting for its value, the anchor, and an index of the keys (by name,
    /// to their entry) once the mapping is large enough that a scan per key would cost: a
    /// formation of 1,000 services is one mapping of 1,000 keys.
    Map(Pos, Vec<(Key, Node)>, Option<Key>, usize, Option<HashMap<String, usize>>),
}

#[derive(Default)]
struct YamlBuilder {
    stack: Vec<Frame>,
    docs: Vec<Node>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    fatal: Option<(Pos, String, String)>,
    errors: Vec<(Pos, String, String)>,
    second_doc: Pos,
    /// The line the text starts at in its file, less one (a piece of a larger document).
    line0: u32,
    /// Whether an alias was read (a piece of a document may not hold its anchor).
    aliases: bool,
}

fn count_nodes(n: &Node) -> usize {
    1 + match &n.value {
        Value::Seq(v) => v.iter().map(count_nodes).sum(),
        Value::Map(v) => v.iter().map(|(_, n)| 1 + count_nodes(n)).sum(),
        _ => 0,
    }
}

impl YamlBuilder {
    fn fail(&mut self, pos: Pos, msg: impl Into<String>, hint: impl Into<String>) {
        if self.fatal.is_none() {
            self.fatal = Some((pos, msg.into(), hint.into()));
        }
    }

    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if !self.docs.is_empty() && self.docs.len() == 1 {
                    self.second_doc = node.pos;
                }
                self.docs.push(node)
            }
            Some(Frame::Seq(_, items, _)) => items.push(node),
            Some(Frame::Map(_, entries, key, _, index)) => match key.take() {
                None => {
                    let Some(name) = key_name(&node.value) else {
                        let pos = node.pos;
                        self.fail(pos, "a mapping key must be a plain name, not a list or mapping", "write the key as a string");
                        return;
                    };
                    if index.is_none() && entries.len() >= SCAN_KEYS {
                        *index = Some(entries.iter().enumerate().map(|(i, (k, _))| (k.name.clone(), i)).collect());
                    }
                    let first = match index {
                        Some(ix) => ix.get(&name).map(|&i| &entries[i].0),
                        None => entries.iter().find(|(k, _)| k.name == name).map(|(k, _)| k),
                    };
                    if let Some(first) = first {
                        let msg = format!("duplicate key `{name}` (first defined at line {}, column {})", first.pos.line, first.pos.col);
                        self.errors.push((node.pos, msg, "remove one of the two entries".into()));
                    }
                    *key = Some(Key { name, pos: node.pos });
                }
                Some(k) => {
                    if let Some(ix) = index {
                        ix.entry(k.name.clone()).or_insert(entries.len());
                    }
                    entries.push((k, node));
                }
            },
        }
    }

    fn depth_ok(&mut self, pos: Pos) -> bool {
        if self.stack.len() >= MAX_DEPTH {
            self.fail(pos, format!("nesting deeper than {MAX_DEPTH} levels"), "flatten the document");
            return false;
        }
        true
    }
}

impl MarkedEventReceiver for YamlBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.fatal.is_some() {
            return;
        }
        let mut pos = marker_pos(&mark);
        pos.line += self.line0;
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                if let Some(t) = tag {
                    self.fail(
                        pos,
                        format!("YAML tags are not supported (found `{}{}`)", t.handle, t.suffix),
                        "remove the tag; values are plain strings, numbers, booleans, lists and mappings",
                    );
                    return;
                }
                self.nodes += 1;
                let value = if style == TScalarStyle::Plain { resolve_plain(text) } else { Value::Str(text) };
                self.push_node(Node { pos, value }, anchor);
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) if tag.is_some() => {
                let _ = anchor;
                self.fail(pos, "YAML tags are not supported", "remove the tag");
            }
            Event::SequenceStart(anchor, _) => {
                if self.depth_ok(pos) {
                    self.nodes += 1;
                    self.stack.push(Frame::Seq(pos, Vec::new(), anchor));
                }
            }
            Event::MappingStart(anchor, _) => {
                if self.depth_ok(pos) {
                    self.nodes += 1;
                    self.stack.push(Frame::Map(pos, Vec::new(), None, anchor, None));
                }
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(p, items, anchor)) = self.stack.pop() {
                    self.push_node(Node { pos: p, value: Value::Seq(items) }, anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(p, entries, _, anchor, _)) = self.stack.pop() {
                    // A block mapping's start event is marked after its first key; its first
                    // key is where a reader looks for it.
                    let pos = entries.first().map_or(p, |(k, _)| k.pos.min(p));
                    self.push_node(Node { pos, value: Value::Map(entries) }, anchor);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).inspect(|_| self.aliases = true) {
                Some(n) => {
                    let mut n = n.clone();
                    self.nodes += count_nodes(&n);
                    if self.nodes > MAX_NODES {
                        self.fail(pos, format!("aliases expand the document past {MAX_NODES} nodes"), "use fewer or smaller aliases (is this an alias bomb?)");
                        return;
                    }
                    n.pos = pos;
                    self.push_node(n, 0);
                }
                None => self.fail(pos, "alias to an unknown anchor", "define the anchor (&name) before using it"),
            },
            Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd | Event::Nothing => {}
        }
        if self.nodes > MAX_NODES {
            self.fail(pos, format!("document has more than {MAX_NODES} nodes"), "split the file");
        }
    }
}

/// Parses one JSON document (RFC 8259) into the same tree, with positions.
pub(crate) fn parse_json(src: &str, sink: &mut Sink<'_>) -> Option<Node> {
    if src.len() > MAX_INPUT_BYTES {
        sink.error(Pos::new(1, 1), format!("file is {} bytes, larger than the {} bytes accepted", src.len(), MAX_INPUT_BYTES));
        return None;
    }
    let mut p = Json { s: src.as_bytes(), i: 0, line: 1, col: 1, dups: Vec::new() };
    let r = p.ws().and_then(|_| p.value(0)).and_then(|n| {
        p.ws()?;
        if p.i < p.s.len() {
            return Err((p.pos(), "unexpected text after the JSON document".to_string()));
        }
        Ok(n)
    });
    for (pos, m) in std::mem::take(&mut p.dups) {
        sink.error_hint(pos, m, "remove one of the two entries");
    }
    match r {
        Ok(n) => Some(n),
        Err((pos, m)) => {
            sink.error_hint(pos, format!("JSON syntax: {m}"), "fix the JSON syntax at this position");
            None
        }
    }
}

struct Json<'a> {
    s: &'a [u8],
    i: usize,
    line: u32,
    col: u32,
    dups: Vec<(Pos, String)>,
}

type JResult<T> = Result<T, (Pos, String)>;

impl Json<'_> {
    fn pos(&self) -> Pos {
        Pos::new(self.line, self.col)
    }
    fn bump(&mut self) -> Option<u8> {
        let c = *self.s.get(self.i)?;
        self.i += 1;
        if c == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if c & 0xC0 != 0x80 {
            self.col += 1;
        }
        Some(c)
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) -> JResult<()> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.bump();
        }
        Ok(())
    }
    fn expect(&mut self, c: u8) -> JResult<()> {
        if self.peek() == Some(c) {
            self.bump();
            Ok(())
        } else {
            Err((self.pos(), format!("expected `{}`, found {}", c as char, self.found())))
        }
    }
    fn found(&self) -> String {
        match self.peek() {
            None => "end of file".into(),
            Some(c) if c.is_ascii_graphic() => format!("`{}`", c as char),
            Some(_) => "a non-printable character".into(),
        }
    }
    fn value(&mut self, depth: usize) -> JResult<Node> {
        if depth >= MAX_DEPTH {
            return Err((self.pos(), format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        let pos = self.pos();
        let value = match self.peek() {
            Some(b'{') => {
                self.bump();
                let mut entries: Vec<(Key, Node)> = Vec::new();
                self.ws()?;
                if self.peek() == Some(b'}') {
                    self.bump();
                } else {
                    loop {
                        self.ws()?;
                        let kpos = self.pos();
                        if self.peek() != Some(b'"') {
                            return Err((kpos, format!("expected a quoted key, found {}", self.found())));
                        }
                        let name = self.string()?;
                        if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == name) {
                            self.dups.push((kpos, format!("duplicate key `{name}` (first defined at line {}, column {})", first.pos.line, first.pos.col)));
                        }
                        self.ws()?;
                        self.expect(b':')?;
                        self.ws()?;
                        let v = self.value(depth + 1)?;
                        entries.push((Key { name, pos: kpos }, v));
                        self.ws()?;
                        match self.peek() {
                            Some(b',') => {
                                self.bump();
                            }
                            Some(b'}') => {
                                self.bump();
                                break;
                            }
                            _ => return Err((self.pos(), format!("expected `,` or `}}`, found {}", self.found()))),
                        }
                    }
                }
                Value::Map(entries)
            }
            Some(b'[') => {
                self.bump();
                let mut items = Vec::new();
                self.ws()?;
                if self.peek() == Some(b']') {
                    self.bump();
                } else {
                    loop {
                        self.ws()?;
                        items.push(self.value(depth + 1)?);
                        self.ws()?;
                        match self.peek() {
                            Some(b',') => {
                                self.bump();
                            }
                            Some(b']') => {
                                self.bump();
                                break;
                            }
                            _ => return Err((self.pos(), format!("expected `,` or `]`, found {}", self.found()))),
                        }
                    }
                }
                Value::Seq(items)
            }
            Some(b'"') => Value::Str(self.string()?),
            Some(b't') => self.word("true", Value::Bool(true))?,
            Some(b'f') => self.word("false", Value::Bool(false))?,
            Some(b'n') => self.word("null", Value::Null)?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return Err((pos, format!("expected a value, found {}", self.found()))),
        };
        Ok(Node { pos, value })
    }
    fn word(&mut self, w: &str, v: Value) -> JResult<Value> {
        let pos = self.pos();
        if self.s[self.i..].starts_with(w.as_bytes()) {
            for _ in 0..w.len() {
                self.bump();
            }
            Ok(v)
        } else {
            Err((pos, format!("expected a value, found {}", self.found())))
        }
    }
    fn number(&mut self) -> JResult<Value> {
        let pos = self.pos();
        let start = self.i;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
            self.bump();
        }
        let t = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
        let valid = {
            let d = t.strip_prefix('-').unwrap_or(t);
            !d.is_empty() && d.as_bytes()[0].is_ascii_digit() && !(d.len() > 1 && d.starts_with('0') && d.as_bytes()[1].is_ascii_digit())
        };
        if !valid {
            return Err((pos, format!("malformed number `{t}`")));
        }
        if t.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            if let Ok(i) = t.parse::<i64>() {
                return Ok(Value::Int(i));
            }
        }
        t.parse::<f64>().map(Value::Float).map_err(|_| (pos, format!("malformed number `{t}`")))
    }
    fn string(&mut self) -> JResult<String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let pos = self.pos();
            match self.bump() {
                None => return Err((pos, "unterminated string".into())),
                Some(b'"') => break,
                Some(b'\\') => {
                    let c = self.bump().ok_or((pos, "unterminated string".to_string()))?;
                    let ch = match c {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4(pos)?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if self.bump() != Some(b'\\') || self.bump() != Some(b'u') {
                                    return Err((pos, "unpaired surrogate in \\u escape".into()));
                                }
                                let lo = self.hex4(pos)?;
                                0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or((pos, "invalid \\u escape".to_string()))?
                        }
                        _ => return Err((pos, format!("invalid escape `\\{}`", c as char))),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                Some(c) if c < 0x20 => return Err((pos, "control character in string (escape it)".into())),
                Some(c) => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| (self.pos(), "string is not valid UTF-8".to_string()))
    }
    fn hex4(&mut self, pos: Pos) -> JResult<u32> {
        let mut v = 0;
        for _ in 0..4 {
            let c = self.bump().ok_or((pos, "short \\u escape".to_string()))?;
            v = v * 16 + (c as char).to_digit(16).ok_or((pos, "bad hex digit in \\u escape".to_string()))?;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(src: &str) -> (Option<Node>, Vec<crate::diag::Diagnostic>) {
        let mut out = Vec::new();
        let n = parse_yaml(src, &mut Sink { file: "t.yml", out: &mut out });
        (n, out)
    }

    /// A large document of every kind of top-level entry a piece could end on: block scalars
    /// (kept, clipped and stripped trailing newlines), comments at column 0 between entries,
    /// multi-line quoted strings, sequences at column 0, flow mappings.
    fn large(n: usize) -> String {
        let mut s = String::from("# a formation\n\n");
        for i in 0..n {
            s.push_str(&format!("svc-{i:04}:\n  script: |+\n    run {i}\n\n\n# between\n"));
            s.push_str(&format!("w{i}: {{a: 1, b: [x, \"y\"]}}\nq{i}: \"two\n  lines\"\nl{i}:\n- 1\n- two\nz{i}: >-\n  folded\n  text\n\n"));
        }
        s
    }

    fn yaml_with(src: &str, workers: usize) -> (Option<Node>, Vec<crate::diag::Diagnostic>) {
        let mut out = Vec::new();
        let n = parse_yaml_with(src, &mut Sink { file: "t.yml", out: &mut out }, workers);
        (n, out)
    }

    #[test]
    fn a_large_document_parsed_in_pieces_is_the_document_parsed_whole() {
        let src = large(1000);
        assert!(src.len() > PARALLEL_BYTES);
        assert!(top_level_cuts(&src, 3).len() == 3, "cut into three");
        let whole = yaml(&src);
        assert!(whole.1.is_empty(), "{:?}", whole.1);
        for workers in [2, 3, 7] {
            assert_eq!(in_pieces(&src, workers).as_ref(), whole.0.as_ref(), "read in pieces, {workers} workers");
            assert_eq!(yaml_with(&src, workers), whole, "{workers} workers");
        }
    }

    #[test]
    fn what_a_piece_cannot_read_alone_is_read_whole() {
        // A key that two pieces hold: the duplicate is reported, at both of its places.
        let src = format!("{}svc-0000:\n  script: again\n", large(1000));
        assert!(in_pieces(&src, 2).is_none());
        let (n, d) = yaml_with(&src, 2);
        assert_eq!((n.is_some(), d.clone()), (yaml(&src).0.is_some(), yaml(&src).1));
        assert!(d.len() == 1 && d[0].to_string().contains("duplicate key `svc-0000` (first defined at line 3, column 1)"), "{d:?}");
        // An alias to an anchor in another piece.
        let src = format!("base: &b {{script: x}}\n{}last: *b\n", large(1000));
        assert!(in_pieces(&src, 2).is_none());
        assert_eq!(yaml_with(&src, 2), yaml(&src));
        assert!(yaml(&src).1.is_empty());
        // A syntax error: where the whole document has it.
        let src = format!("{}bad: [unclosed\n", large(1000));
        let (n, d) = yaml_with(&src, 2);
        assert!(n.is_none());
        assert_eq!(d, yaml(&src).1);
        // A document that is not a block mapping at column 0 is not cut.
        assert!(top_level_cuts(&format!("---\n{}", large(1000)), 2).is_empty());
    }

    #[test]
    fn yaml_positions_are_one_based() {
        let (n, d) = yaml("a:\n  b: 1\n  c: [x, 'y']\n");
        assert!(d.is_empty(), "{d:?}");
        let Value::Map(top) = n.expect("parses").value else { panic!("not a map") };
        assert_eq!(top[0].0.pos, Pos::new(1, 1));
        let Value::Map(inner) = &top[0].1.value else { panic!() };
        assert_eq!(inner[0].0.pos, Pos::new(2, 3));
        assert_eq!(inner[0].1.pos, Pos::new(2, 6));
        assert_eq!(inner[0].1.value, Value::Int(1));
        assert_eq!(inner[1].0.pos, Pos::new(3, 3));
    }

    #[test]
    fn yaml_duplicate_keys_are_reported_with_both_positions() {
        let (_, d) = yaml("a: 1\nb: 2\na: 3\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].pos, Pos::new(3, 1));
        assert!(d[0].message.contains("duplicate key `a`"), "{}", d[0].message);
        assert!(d[0].message.contains("line 1, column 1"));
    }

    #[test]
    fn yaml_alias_bomb_is_bounded() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            src.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n", p = i - 1));
        }
        let (n, d) = yaml(&src);
        assert!(n.is_none());
        assert!(d[0].message.contains("aliases expand"), "{:?}", d);
    }

    #[test]
    fn yaml_deep_nesting_is_bounded() {
        let src = "[".repeat(10_000);
        let (n, d) = yaml(&src);
        assert!(n.is_none());
        assert_eq!(d.len(), 1, "{d:?}");
    }

    #[test]
    fn yaml_core_schema_scalars() {
        assert_eq!(resolve_plain("80".into()), Value::Int(80));
        assert_eq!(resolve_plain("-3".into()), Value::Int(-3));
        assert_eq!(resolve_plain("1.5".into()), Value::Float(1.5));
        assert_eq!(resolve_plain("yes".into()), Value::Str("yes".into()));
        assert_eq!(resolve_plain("~".into()), Value::Null);
        assert_eq!(resolve_plain("1.2.3".into()), Value::Str("1.2.3".into()));
        assert_eq!(resolve_plain("99999999999999999999".into()), Value::Str("99999999999999999999".into()));
    }

    fn json(src: &str) -> (Option<Node>, Vec<crate::diag::Diagnostic>) {
        let mut out = Vec::new();
        let n = parse_json(src, &mut Sink { file: "r.json", out: &mut out });
        (n, out)
    }

    #[test]
    fn json_round_trip_and_positions() {
        let (n, d) = json("{\n  \"number\": 12,\n  \"s\": \"a\\u00e9\\n\",\n  \"x\": [1.5, true, null]\n}");
        assert!(d.is_empty());
        let Value::Map(m) = n.expect("parses").value else { panic!("not a map") };
        assert_eq!(m[0].0.pos, Pos::new(2, 3));
        assert_eq!(m[0].1.value, Value::Int(12));
        assert_eq!(m[1].1.value, Value::Str("a\u{e9}\n".into()));
    }

    #[test]
    fn json_syntax_error_points_at_the_problem() {
        let (n, d) = json("{\n  \"a\": 1,\n  \"b\" 2\n}");
        assert!(n.is_none());
        assert_eq!(d[0].pos, Pos::new(3, 7));
        assert!(d[0].message.contains("expected `:`"), "{}", d[0].message);
    }

    #[test]
    fn json_rejects_leading_zero_and_trailing_text() {
        assert!(json("{\"a\": 012}").0.is_none());
        assert!(json("{} x").0.is_none());
        assert!(json(&"[".repeat(1000)).0.is_none());
    }
}

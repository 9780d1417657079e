//! A fast reader for the plain YAML that gilliam's inputs are written in, into the same tree
//! as `node::parse_yaml`: block mappings and sequences, flow collections on one line, plain,
//! single-quoted and escape-free double-quoted scalars, comments. Whatever else it meets
//! (block scalars, anchors, tags, multi-line scalars, a null left implicit, a duplicate key,
//! anything it doubts) it declines with `None`, and yaml-rust2 reads the whole document, so
//! that the tree, the positions and every diagnostic are yaml-rust2's. Tested against it on
//! every fixture and on generated documents (`tests/plain_yaml.rs`).

use crate::diag::Pos;
use crate::tree::{key_name, resolve_plain, Key, Node, Value, MAX_DEPTH, MAX_NODES, SCAN_KEYS};
use std::collections::HashSet;

/// One line that holds something: its number, the column its text starts at (from 0, in
/// characters: indentation is spaces only), and its text without the indentation and
/// trailing spaces. A sequence entry's content (`- a: 1`) becomes a line of its own, at the
/// column it starts at.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    no: u32,
    indent: usize,
    text: &'a str,
}

impl Line<'_> {
    /// The 1-based position of byte `off` of the text.
    fn pos(&self, off: usize) -> Pos {
        let head = &self.text[..off];
        let chars = if head.is_ascii() { off } else { head.chars().count() };
        Pos::new(self.no, (self.indent + chars + 1) as u32)
    }
}

/// Longest key read: YAML limits implicit keys to 1,024 characters.
const MAX_KEY: usize = 1000;

/// The document, or `None` when it is not plainly in the subset (parse it with yaml-rust2).
pub(crate) fn parse(src: &str) -> Option<Node> {
    if src.starts_with('\u{feff}') || src.bytes().any(|b| b == b'\t' || b == b'\r' || b == 0) {
        return None;
    }
    let mut lines = Vec::with_capacity(src.len() / 16);
    for (no, raw) in src.split('\n').enumerate() {
        let text = raw.trim_start_matches(' ');
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if raw.starts_with("---") || raw.starts_with("...") || raw.starts_with('%') {
            return None;
        }
        lines.push(Line { no: u32::try_from(no).ok()? + 1, indent: raw.len() - text.len(), text: text.trim_end_matches(' ') });
    }
    let first = lines.first()?.indent;
    let mut p = Reader { lines, at: 0, nodes: 0 };
    let doc = p.block(first, 0)?;
    (p.at == p.lines.len() && p.nodes <= MAX_NODES).then_some(doc)
}

struct Reader<'a> {
    lines: Vec<Line<'a>>,
    at: usize,
    nodes: usize,
}

/// `- ` or a lone `-`: a block sequence entry.
fn is_entry(t: &str) -> bool {
    t == "-" || t.starts_with("- ")
}

/// What may follow a value on its line: nothing, or a comment after a space.
fn is_trailer(rest: &str) -> bool {
    let t = rest.trim_start_matches(' ');
    t.is_empty() || (t.starts_with('#') && t.len() < rest.len())
}

/// A plain key's characters: what needs no quoting in any YAML reader.
fn plain_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/')
}

/// Whether a plain scalar may not start at `b[0]`: YAML's indicators, but for a `-` before a
/// letter or digit (`-1`, `-x`).
fn indicator(b: &[u8]) -> bool {
    match b[0] {
        b'-' => !b.get(1).is_some_and(u8::is_ascii_alphanumeric),
        c => matches!(c, b'?' | b':' | b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'\'' | b'"' | b'%' | b'@' | b'`'),
    }
}

impl<'a> Reader<'a> {
    fn next_indent(&self) -> Option<usize> {
        self.lines.get(self.at).map(|l| l.indent)
    }

    /// The block node whose first line is the current one, at `indent`.
    fn block(&mut self, indent: usize, depth: usize) -> Option<Node> {
        if depth >= MAX_DEPTH / 2 {
            return None;
        }
        if is_entry(self.lines[self.at].text) {
            self.seq(indent, depth, false)
        } else {
            self.map(indent, depth)
        }
    }

    /// A block sequence at `indent`. yaml-rust2 marks one at its first `-`, but a mapping's
    /// value written at the key's own column (`indentless`) where its first entry's content
    /// starts.
    fn seq(&mut self, indent: usize, depth: usize, indentless: bool) -> Option<Node> {
        self.nodes += 1;
        let mut pos = (!indentless).then(|| self.lines[self.at].pos(0));
        let mut items = Vec::new();
        while let Some(&l) = self.lines.get(self.at) {
            if l.indent != indent || !is_entry(l.text) {
                break;
            }
            let rest = l.text[1..].trim_start_matches(' ');
            if rest.is_empty() {
                return None; // a null, or the entry's content on the lines below
            }
            let off = l.text.len() - rest.len();
            pos = pos.or(Some(l.pos(off)));
            if is_entry(rest) || key_at(rest).is_some() {
                // `- a: 1` / `- - x`: the rest is a block of its own, at the column it starts at.
                let col = indent + off;
                self.lines[self.at] = Line { no: l.no, indent: col, text: rest };
                items.push(self.block(col, depth + 1)?);
            } else {
                let (node, after) = self.inline(&l, off, depth + 1)?;
                if !is_trailer(after) {
                    return None;
                }
                self.at += 1;
                items.push(node);
            }
            if self.next_indent().is_some_and(|i| i > indent) {
                return None; // a scalar continued, or an entry's block misaligned
            }
        }
        Some(Node { pos: pos?, value: Value::Seq(items) })
    }

    fn map(&mut self, indent: usize, depth: usize) -> Option<Node> {
        self.nodes += 1;
        let mut entries: Vec<(Key, Node)> = Vec::new();
        let mut index: Option<HashSet<String>> = None;
        while let Some(&l) = self.lines.get(self.at) {
            if l.indent < indent {
                break;
            }
            if l.indent > indent || is_entry(l.text) {
                return None;
            }
            let (key, off) = self.key(&l)?;
            let rest = &l.text[off..];
            let value = if is_trailer(rest) {
                self.at += 1;
                match self.lines.get(self.at) {
                    Some(n) if n.indent > indent => self.block(n.indent, depth + 1)?,
                    Some(n) if n.indent == indent && is_entry(n.text) => self.seq(indent, depth + 1, true)?,
                    _ => return None, // a null left implicit
                }
            } else {
                let v = rest.trim_start_matches(' ');
                let (node, after) = self.inline(&l, l.text.len() - v.len(), depth + 1)?;
                if !is_trailer(after) {
                    return None;
                }
                self.at += 1;
                if self.next_indent().is_some_and(|i| i > indent) {
                    return None;
                }
                node
            };
            if !fresh(&entries, &mut index, &key.name) {
                return None;
            }
            entries.push((key, value));
        }
        let pos = entries.first()?.0.pos;
        Some(Node { pos, value: Value::Map(entries) })
    }

    /// A block mapping's key at the start of `l`, and the offset just past its `:`.
    fn key(&mut self, l: &Line<'_>) -> Option<(Key, usize)> {
        let (value, past) = key_at(l.text)?;
        self.nodes += 1;
        Some((Key { name: key_name(&value)?, pos: l.pos(0) }, past))
    }

    /// A value that starts at byte `off` of `l` and ends on it (a flow collection or a scalar),
    /// and what follows it.
    fn inline<'l>(&mut self, l: &Line<'l>, off: usize, depth: usize) -> Option<(Node, &'l str)> {
        let text = l.text;
        match text.as_bytes()[off] {
            b'[' | b'{' => {
                let (node, end) = self.flow(l, off, depth)?;
                Some((node, &text[end..]))
            }
            b'"' | b'\'' => {
                let (s, end) = quoted(l.text, off)?;
                self.nodes += 1;
                Some((Node { pos: l.pos(off), value: Value::Str(s) }, &text[end..]))
            }
            _ if indicator(&text.as_bytes()[off..]) => None,
            _ => {
                // A plain scalar ends at ` #` (a comment) or at the end of the line.
                let end = text[off..].find(" #").map_or(text.len(), |i| off + i);
                let s = text[off..end].trim_end_matches(' ');
                if s.contains(": ") || s.ends_with(':') {
                    return None;
                }
                self.nodes += 1;
                Some((Node { pos: l.pos(off), value: resolve_plain(s.to_string()) }, &text[off + s.len()..]))
            }
        }
    }

    /// A flow collection that opens at `off` and closes on the same line; the offset past it.
    fn flow(&mut self, l: &Line<'_>, off: usize, depth: usize) -> Option<(Node, usize)> {
        if depth >= MAX_DEPTH / 2 {
            return None;
        }
        let b = l.text.as_bytes();
        let seq = b[off] == b'[';
        let close = if seq { b']' } else { b'}' };
        let skip = |mut i: usize| {
            while b.get(i) == Some(&b' ') {
                i += 1;
            }
            i
        };
        self.nodes += 1;
        let mut i = skip(off + 1);
        let (mut items, mut entries, mut index) = (Vec::new(), Vec::new(), None);
        if b.get(i) == Some(&close) {
            i += 1;
        } else {
            loop {
                if seq {
                    let (node, end) = self.flow_value(l, i, depth + 1)?;
                    items.push(node);
                    i = end;
                } else {
                    let (k, end) = self.flow_scalar(l, i)?;
                    if b.get(end) != Some(&b':') || b.get(end + 1) != Some(&b' ') {
                        return None;
                    }
                    let key = Key { name: key_name(&k.value)?, pos: k.pos };
                    let (node, end) = self.flow_value(l, skip(end + 1), depth + 1)?;
                    if !fresh(&entries, &mut index, &key.name) {
                        return None;
                    }
                    entries.push((key, node));
                    i = end;
                }
                i = skip(i);
                match b.get(i) {
                    Some(&c) if c == close => {
                        i += 1;
                        break;
                    }
                    Some(b',') => {
                        i = skip(i + 1);
                        if matches!(b.get(i), None | Some(b',' | b']' | b'}')) {
                            return None;
                        }
                    }
                    _ => return None,
                }
            }
        }
        let value = if seq { Value::Seq(items) } else { Value::Map(entries) };
        Some((Node { pos: l.pos(off), value }, i))
    }

    fn flow_value(&mut self, l: &Line<'_>, off: usize, depth: usize) -> Option<(Node, usize)> {
        match l.text.as_bytes().get(off)? {
            b'[' | b'{' => self.flow(l, off, depth),
            _ => self.flow_scalar(l, off),
        }
    }

    /// A scalar inside a flow collection: quoted, or plain up to `,`, a bracket or `:`.
    fn flow_scalar(&mut self, l: &Line<'_>, off: usize) -> Option<(Node, usize)> {
        let b = l.text.as_bytes();
        let (value, end) = match *b.get(off)? {
            b'"' | b'\'' => {
                let (s, end) = quoted(l.text, off)?;
                (Value::Str(s), end)
            }
            _ if indicator(&b[off..]) => return None,
            _ => {
                let n = b[off..].iter().take_while(|&&c| !matches!(c, b',' | b'[' | b']' | b'{' | b'}' | b':' | b'#')).count();
                let s = l.text[off..off + n].trim_end_matches(' ');
                if matches!(b.get(off + n), Some(b'#')) || s.is_empty() {
                    return None;
                }
                (resolve_plain(s.to_string()), off + s.len())
            }
        };
        self.nodes += 1;
        Some((Node { pos: l.pos(off), value }, end))
    }
}

/// The key `text` starts with (plain or quoted) followed by its `: ` or a `:` that ends the
/// line: the key's value and the offset just past the `:`.
fn key_at(text: &str) -> Option<(Value, usize)> {
    let b = text.as_bytes();
    let (value, end) = match b.first()? {
        b'"' | b'\'' => {
            let (s, end) = quoted(text, 0)?;
            (Value::Str(s), end)
        }
        c if plain_key_byte(*c) && *c != b'-' => {
            let n = b.iter().take_while(|&&c| plain_key_byte(c)).count();
            (resolve_plain(text[..n].to_string()), n)
        }
        _ => return None,
    };
    (end <= MAX_KEY && b.get(end) == Some(&b':') && matches!(b.get(end + 1), None | Some(b' '))).then_some((value, end + 1))
}

/// A quoted scalar opening at byte `off` of `text` and closing on the same line: its value and
/// the offset past its closing quote. Double-quoted scalars with escapes are declined.
fn quoted(text: &str, off: usize) -> Option<(String, usize)> {
    let t = &text[off + 1..];
    if text.as_bytes()[off] == b'"' {
        let end = t.find(['"', '\\'])?;
        (t.as_bytes()[end] == b'"').then(|| (t[..end].to_string(), off + end + 2))
    } else {
        let mut s = String::new();
        let mut rest = t;
        loop {
            let q = rest.find('\'')?;
            s.push_str(&rest[..q]);
            if rest[q + 1..].starts_with('\'') {
                s.push('\'');
                rest = &rest[q + 2..];
            } else {
                return Some((s, text.len() - rest.len() + q + 1));
            }
        }
    }
}

/// Whether `name` is a key the mapping does not hold yet (a duplicate is declined: yaml-rust2
/// reports it, at both places).
fn fresh(entries: &[(Key, Node)], index: &mut Option<HashSet<String>>, name: &str) -> bool {
    if index.is_none() && entries.len() >= SCAN_KEYS {
        *index = Some(entries.iter().map(|(k, _)| k.name.clone()).collect());
    }
    match index {
        Some(ix) => ix.insert(name.to_string()),
        None => entries.iter().all(|(k, _)| k.name != name),
    }
}

#[cfg(test)]
mod tests {
    use crate::diag::{Diagnostic, Sink};
    use crate::tree::{Node, Value};
    use proptest::prelude::*;

    /// yaml-rust2's reading of `src` (the reference), with its diagnostics.
    fn reference(src: &str) -> (Option<Node>, Vec<Diagnostic>) {
        let mut out = Vec::new();
        let n = crate::node::parse_whole(src, &mut Sink { file: "t.yml", out: &mut out });
        (n, out)
    }

    /// The fast reader either declines `src` or reads exactly what yaml-rust2 reads, positions
    /// included, from a document yaml-rust2 reads without a word. Whether it read it.
    fn agrees(src: &str) -> bool {
        let Some(fast) = super::parse(src) else { return false };
        let (slow, diags) = reference(src);
        assert!(diags.is_empty(), "read a document yaml-rust2 refuses:\n{src}\n{diags:?}");
        assert_eq!(Some(&fast), slow.as_ref(), "read differently:\n{src}");
        true
    }

    #[test]
    fn plain_documents_read_as_yaml_rust2_reads_them() {
        for src in [
            "a: 1\nb: two\nc: 'it''s'\nd: \"q\"\ne: ~\nf: true\ng: 1.5\nh: 0x1f\n",
            "# head\na:\n  b: x # a comment\n  c: [1, 'two', \"3\"]  # another\n\n  d: {min: 2, max: [8, 9]}\n",
            "a:\n- 1\n- x\nb:\n  - {c: d}\n  - [e, f]\n",
            "a: -1\nb: [-2, -x]\nc: http://x/y\n",
            "- a: 1\n  b: 2\n- - x\n  - y\n- z\n",
            "- a:\n    b: 1\n  c:\n  - d\n",
            "  a: 1\n  b:\n    c: 2\n",
            "1: x\ntrue: y\n2.5: z\n\"k k\": v\n'q': w\n",
            "a: b#c\nd: e :f\ng: it's\nh: [ a , b ]\ni: { }\nj: []\nk: x   \n",
            "x: é\nu: ü b\nv: 'ü' # c\nw: [ü, 'ä']\n",
            "svc-0000:\n  script: bin/svc-0000\n  ports: [8080]\n  routes: [\"svc-0000.example.com\", \"example.com/svc-0000/*\"]\n",
        ] {
            assert!(agrees(src), "declined:\n{src}");
        }
    }

    #[test]
    fn what_it_doubts_is_left_to_yaml_rust2() {
        for src in [
            "a: |\n  x\n",
            "a: >-\n  x\n",
            "a: &x 1\nb: *x\n",
            "a: !t 1\n",
            "---\na: 1\n",
            "a: 1\na: 2\n",
            "a:\n",
            "a:\nb: 1\n",
            "a: 1\n b: 2\n",
            "a:\n    b: 1\n  c: 2\n",
            "a: b: c\n",
            "a: b:\n",
            "a:\n  b\n  c\n",
            "a: b\n  c\n",
            "a: [x,\n  y]\n",
            "a: [a:b]\n",
            "a: [,]\n",
            "a: [a,]\n",
            "a: 'x' y\n",
            "a: \"x\"y\n",
            "a: [x] y\n",
            "a: \"x\\ny\"\n",
            "- \n- a\n",
            "a: [http://x]\n",
            "a: -\n",
            "a: [-]\n",
            "a: - b\n",
            "a: x #\n",
            "a: [x #]\n",
            "a:\tb\n",
            "a: b\r\n",
            "? a\n: b\n",
            "a: @x\n",
            "a b: c\n",
            "[a, b]\n",
            "x\n",
            "",
            "# only\n",
            "a: 'x\n  y'\n",
            "a: {b: 1, b: 2}\n",
            "a:\n  - b\n  c: d\n",
            "- a\nb: c\n",
            "a: 1\n- b\n",
            "a:  # c\n  b: 1\n",
            "é: x\n",
        ] {
            // Declined or read the same: never read otherwise.
            agrees(src);
        }
        for src in ["a: |\n  x\n", "a: &x 1\nb: *x\n", "a: 1\na: 2\n", "a:\n", "a: [x,\n  y]\n", "a: b\n  c\n", "a: \"x\\ny\"\n"] {
            assert!(super::parse(src).is_none(), "read what it should leave to yaml-rust2:\n{src}");
        }
    }

    /// A formation of `n` services written as users and the compile bench write them.
    fn formation(n: usize) -> String {
        let mut s = String::from("# services\nx-gilliam:\n  analysis:\n    interval: 1m\n\n");
        for i in 0..n {
            s.push_str(&format!(
                "svc-{i:04}:\n  script: bin/svc-{i:04}\n  ports: [8080]\n  health: /healthz\n  routes: [\"svc-{i:04}.example.com\", \"example.com/svc-{i:04}/*\"]\n  scale: {{min: 2, desired: 2, max: 8}}\n  env:\n    LOG_LEVEL: info\n    MODE: 'fast'\n  depends:\n  - db\n  - cache # warm\n"
            ));
        }
        s
    }

    #[test]
    fn a_large_formation_is_read_by_the_fast_reader() {
        assert!(agrees(&formation(1000)));
    }

    #[test]
    fn every_fixture_reads_the_same_and_the_plain_ones_fast() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut read = Vec::new();
        let mut stack = vec![root.join("tests/fixtures"), root.join("examples")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("fixtures") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
                    let src = std::fs::read_to_string(&p).expect("read");
                    if agrees(&src) {
                        read.push(p.display().to_string());
                    }
                }
            }
        }
        for want in ["tests/fixtures/split/gilliam.yml", "tests/fixtures/seed/gilliam.yml", "examples/quickstart/stage.yml"] {
            assert!(read.iter().any(|p| p.ends_with(want)), "{want} left to yaml-rust2; read fast: {read:?}");
        }
    }

    /// Generated documents: nested block and flow collections of scalars of every kind the
    /// fast reader might misjudge.
    fn scalar() -> impl Strategy<Value = String> {
        const WRITTEN: &[&str] = &["null", "~", "True", "0x1F", "0o17", "1e3", "'it''s'", "'#'", "\"a b\"", "\"\"", "''", "a#b", "a :b", "ü", "a b", "\"é\""];
        prop_oneof![
            1 => "[a-z][a-z0-9_./-]{0,8}",
            1 => "-?[0-9]{1,4}",
            1 => "[0-9]{1,3}\\.[0-9]{1,3}",
            4 => prop::sample::select(WRITTEN).prop_map(str::to_string),
        ]
    }

    fn flow() -> impl Strategy<Value = String> {
        // Left to yaml-rust2 in a flow collection: a plain scalar with `#` or `:`.
        let leaf = scalar().prop_filter("read fast in flow", |s| s.starts_with(['\'', '"']) || !s.contains(['#', ':']));
        leaf.prop_recursive(3, 12, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
                prop::collection::vec(("[a-z]{1,3}", inner), 0..4).prop_map(|v| {
                    let mut seen = std::collections::BTreeSet::new();
                    let e: Vec<String> = v.into_iter().filter(|(k, _)| seen.insert(k.clone())).map(|(k, x)| format!("{k}: {x}")).collect();
                    format!("{{{}}}", e.join(", "))
                }),
            ]
        })
    }

    #[derive(Debug, Clone)]
    enum Block {
        Inline(String),
        Map(Vec<(String, Block)>),
        Seq(Vec<Block>),
    }

    fn block() -> impl Strategy<Value = Block> {
        let leaf = prop_oneof![scalar().prop_map(Block::Inline), flow().prop_map(Block::Inline)];
        leaf.prop_recursive(4, 30, 4, |inner| {
            prop_oneof![
                prop::collection::vec(("[a-z]{1,3}", inner.clone()), 1..4).prop_map(|v| {
                    let mut seen = std::collections::BTreeSet::new();
                    Block::Map(v.into_iter().filter(|(k, _)| seen.insert(k.clone())).collect())
                }),
                prop::collection::vec(inner, 1..4).prop_map(Block::Seq),
            ]
        })
    }

    /// How a generated document is laid out.
    #[derive(Debug, Clone, Copy)]
    struct Style {
        /// Columns a nested block is indented by.
        step: usize,
        /// A mapping's sequences at the key's own column.
        compact: bool,
        /// A comment after every inline value.
        comment: bool,
    }

    /// Writes `b` at `indent`.
    fn write(b: &Block, indent: usize, st: Style, out: &mut String) {
        let pad = " ".repeat(indent);
        match b {
            Block::Inline(s) => out.push_str(&format!("{pad}{s}\n")),
            Block::Map(entries) => {
                for (k, v) in entries {
                    match v {
                        Block::Inline(s) => out.push_str(&format!("{pad}{k}: {s}{}\n", if st.comment { " # note" } else { "" })),
                        Block::Seq(_) if st.compact => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            write(v, indent, st, out);
                        }
                        _ => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            write(v, indent + st.step, st, out);
                        }
                    }
                }
            }
            Block::Seq(items) => {
                for v in items {
                    match v {
                        Block::Inline(s) => out.push_str(&format!("{pad}- {s}\n")),
                        _ => {
                            // `-` then the block at the column a step in, its first line joined.
                            let mut inner = String::new();
                            write(v, indent + st.step, st, &mut inner);
                            out.push_str(&format!("{pad}-{}", &inner[indent + 1..]));
                        }
                    }
                }
            }
        }
    }

    /// `src` with blank lines and comment lines put between its lines, as `gaps` says.
    fn with_gaps(src: &str, gaps: &[u8]) -> String {
        let mut out = String::new();
        for (i, line) in src.lines().enumerate() {
            match gaps.get(i).copied().unwrap_or(0) {
                1 => out.push('\n'),
                2 => out.push_str("# between\n"),
                3 => out.push_str("       # further in\n"),
                _ => {}
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn generated_documents_read_as_yaml_rust2_reads_them(
            b in block(), step in 2usize..5, compact: bool, comment: bool, gaps in prop::collection::vec(0u8..4, 0..24),
            cut in 0usize..400, junk in "[ -~]{0,3}",
        ) {
            // A document that is a scalar alone is left to yaml-rust2.
            let b = if let Block::Inline(_) = b { Block::Map(vec![("top".into(), b)]) } else { b };
            let mut src = String::new();
            write(&b, 0, Style { step, compact, comment }, &mut src);
            let src = with_gaps(&src, &gaps);
            prop_assert!(agrees(&src), "declined a plain document:\n{}", src);
            // The same document damaged: still declined or read as yaml-rust2 reads it.
            let at = src.char_indices().map(|(i, _)| i).nth(cut % src.chars().count().max(1)).unwrap_or(0);
            agrees(&format!("{}{junk}{}", &src[..at], &src[at..]));
            agrees(&src[..at]);
        }
    }

    #[test]
    fn generated_documents_are_mostly_read_fast() {
        // Guard against a reader that declines everything: a document of plain parts is read.
        let doc = "a:\n  b: [1, {c: 'd'}]\n  e:\n  - f\n  - g: h\n    i: ~\n";
        assert!(agrees(doc));
        let Some(Node { value: Value::Map(m), .. }) = super::parse(doc) else { panic!("not a mapping") };
        assert_eq!(m.len(), 1);
    }
}

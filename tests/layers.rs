//! Architecture invariants read from the code itself (ARCHITECTURE.md): no circle of modules in
//! any crate (edges are the `crate::`, `super::` and `self::` paths each module names), only the
//! CLI crates and binaries' `main.rs` know clap, and only the SDK adapters name an `aws_sdk_*`
//! crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every crate's source root, from the workspace root.
const CRATES: &[&str] = &[
    "compiler/src",
    "materializer/src",
    "ec2/src",
    "materializer/doubles/src",
    "compiler/contract/src",
    "cli/src",
    "cli/compile/src",
    "runtime-image/agent/src",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).expect("read source dir").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every source file of every crate: (path from the workspace root, code without comments or
/// its test module).
fn sources() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for krate in CRATES {
        let mut files = Vec::new();
        rust_files(&root().join(krate), &mut files);
        for f in files {
            let rel = f.strip_prefix(root()).unwrap_or(&f).to_string_lossy().into_owned();
            out.push((rel, code(&std::fs::read_to_string(&f).expect("read source"))));
        }
    }
    out
}

/// `a/b.rs` and `a/b/mod.rs` are module `a::b`; `lib.rs` and `main.rs` the crate root ("").
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src").with_extension("");
    let mut parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        parts.clear();
    }
    parts.join("::")
}

/// The code of a file without comments and without its `#[cfg(test)]` module (tests may
/// reach anywhere in their own file).
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every path a piece of code names from `crate`, `super` or `self`, as segments (use groups
/// `a::{b, c::d}` expanded), each with the line it is on.
fn paths(code: &str) -> Vec<(Vec<String>, usize)> {
    fn ident(s: &[u8], mut i: usize) -> usize {
        while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_') {
            i += 1;
        }
        i
    }
    // Expands `prefix::{...}` groups starting at `i` (just after `::{`); returns the end.
    fn group(s: &[u8], mut i: usize, prefix: &[String], line: usize, out: &mut Vec<(Vec<String>, usize)>) -> usize {
        let mut cur = prefix.to_vec();
        while i < s.len() {
            match s[i] {
                b'}' => {
                    if cur.len() > prefix.len() {
                        out.push((cur.clone(), line));
                    }
                    return i + 1;
                }
                b',' => {
                    if cur.len() > prefix.len() {
                        out.push((cur.clone(), line));
                    }
                    cur = prefix.to_vec();
                    i += 1;
                }
                b'{' => {
                    i = group(s, i + 1, &cur, line, out);
                    cur = prefix.to_vec();
                }
                c if c.is_ascii_alphabetic() || c == b'_' => {
                    let end = ident(s, i);
                    cur.push(String::from_utf8_lossy(&s[i..end]).into_owned());
                    i = end;
                }
                _ => i += 1,
            }
        }
        i
    }
    let s = code.as_bytes();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\n' {
            line += 1;
            i += 1;
            continue;
        }
        let boundary = i == 0 || !(s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_' || s[i - 1] == b':');
        let start = ["crate::", "super::", "self::"].iter().find(|p| boundary && s[i..].starts_with(p.as_bytes()));
        let Some(start) = start else {
            i += 1;
            continue;
        };
        let mut segs = vec![start.trim_end_matches("::").to_string()];
        i += start.len();
        loop {
            if i < s.len() && s[i] == b'{' {
                let mut found = Vec::new();
                i = group(s, i + 1, &segs, line, &mut found);
                out.extend(found);
                break;
            }
            let end = ident(s, i);
            if end == i {
                out.push((segs, line));
                break;
            }
            segs.push(String::from_utf8_lossy(&s[i..end]).into_owned());
            i = end;
            if s[i..].starts_with(b"::") {
                i += 2;
            } else {
                out.push((segs, line));
                break;
            }
        }
    }
    out
}

/// The module a path names: its longest prefix that is a module of the crate, resolved from
/// `from` (a file's module; `super` of `a::b` is `a`).
fn resolve(path: &[String], from: &str, modules: &BTreeSet<String>) -> Option<String> {
    let mut base: Vec<String> = if from.is_empty() { Vec::new() } else { from.split("::").map(String::from).collect() };
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        _ => {}
    }
    while rest.first().is_some_and(|s| s == "super") {
        base.pop()?;
        rest = &rest[1..];
    }
    let mut best = None;
    for n in 0..=rest.len() {
        let mut cand = base.clone();
        cand.extend(rest[..n].iter().cloned());
        let name = cand.join("::");
        if modules.contains(&name) {
            best = Some(name);
        }
    }
    best
}

/// The module graph of one crate: module to the modules it names (and the first place each).
fn graph(src: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let mut g = BTreeMap::new();
    for f in &files {
        let from = module_of(src, f);
        let text = std::fs::read_to_string(f).expect("read source");
        let mut edges: BTreeMap<String, String> = BTreeMap::new();
        for (path, line) in paths(&code(&text)) {
            let Some(to) = resolve(&path, &from, &modules) else { continue };
            // The crate root is a facade (declarations and re-exports), not a layer.
            if to == from || to.is_empty() || from.is_empty() {
                continue;
            }
            edges.entry(to).or_insert_with(|| format!("{}:{line} names {}", f.strip_prefix(root()).unwrap_or(f).display(), path.join("::")));
        }
        g.insert(from, edges);
    }
    g
}

/// The strongly connected components with more than one module (Tarjan).
fn circles(g: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    struct T<'g> {
        g: &'g BTreeMap<String, BTreeMap<String, String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(t: &mut T<'g>, v: &'g str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flat_map(|e| e.keys()) {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T { g, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_circle_of_modules_in_any_crate() {
    let mut problems = Vec::new();
    for krate in CRATES {
        let g = graph(&root().join(krate));
        for comp in circles(&g) {
            let set: BTreeSet<&String> = comp.iter().collect();
            let why: Vec<String> =
                comp.iter().flat_map(|m| g[m].iter().filter(|(to, _)| set.contains(to)).map(move |(to, at)| format!("    {m} -> {to}: {at}"))).collect();
            problems.push(format!("{krate}: a circle of {} modules ({}):\n{}", comp.len(), comp.join(", "), why.join("\n")));
        }
    }
    assert!(problems.is_empty(), "arrows must only point down; each circle and the lines that close it:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_a_circle_and_resolves_groups_and_super() {
    let modules: BTreeSet<String> = ["", "a", "b", "ops", "ops::base", "ops::warm"].iter().map(|s| s.to_string()).collect();
    let found = paths("use crate::{a::X, b::{self, Y}};\nuse super::base::Ops;\nfn f() { crate::a::g(); }\n");
    let segs: Vec<String> = found.iter().map(|(p, _)| p.join("::")).collect();
    assert_eq!(segs, ["crate::a::X", "crate::b::self", "crate::b::Y", "super::base::Ops", "crate::a::g"]);
    assert_eq!(resolve(&found[3].0, "ops::warm", &modules).as_deref(), Some("ops::base"));
    assert_eq!(resolve(&found[1].0, "a", &modules).as_deref(), Some("b"));
    let g: BTreeMap<String, BTreeMap<String, String>> = [
        ("a".to_string(), BTreeMap::from([("b".to_string(), String::new())])),
        ("b".to_string(), BTreeMap::from([("a".to_string(), String::new())])),
        ("ops".to_string(), BTreeMap::from([("a".to_string(), String::new())])),
    ]
    .into_iter()
    .collect();
    assert_eq!(circles(&g), vec![vec!["a".to_string(), "b".to_string()]]);
}

#[test]
fn only_the_cli_crates_and_binaries_know_clap() {
    // Argument parsing is the binaries' edge: the CLI crates, and an agent's `main.rs`; no
    // library module parses arguments.
    let found: Vec<String> = sources()
        .into_iter()
        .filter(|(rel, code)| !rel.starts_with("cli/") && !rel.ends_with("/main.rs") && code.contains("clap::"))
        .map(|(rel, _)| rel)
        .collect();
    assert!(found.is_empty(), "library modules that know clap: {found:?}");
}

#[test]
fn only_the_sdk_adapters_name_an_aws_sdk_crate() {
    // The seam's real implementations: everything else goes through the `Aws` / `Cloud` traits
    // (and their retry policy).
    let adapters = ["materializer/src/sdk.rs", "runtime-image/agent/src/sdk.rs"];
    let found: Vec<String> = sources()
        .into_iter()
        .filter(|(rel, _)| !adapters.contains(&rel.as_str()))
        .filter_map(|(rel, code)| code.lines().find(|l| l.contains("aws_sdk_")).map(|l| format!("{rel}: {}", l.trim())))
        .collect();
    assert!(found.is_empty(), "AWS SDK clients outside the seam's adapters (go through the seam and its retry policy):\n{}", found.join("\n"));
}

//! `gilliam.yml`: the application's services, in Gilliam's original shape (services at the top
//! level), decoded and checked with every problem reported at its position.

use crate::decode::{self, Fields};
use crate::diag::{Pos, Sink};
use crate::node::{Node, Value};
use std::collections::BTreeMap;

/// Auxiliary service types the compiler knows how to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuxType {
    Postgres,
    Redis,
    Etcd,
}

impl AuxType {
    pub const ALL: [AuxType; 3] = [AuxType::Postgres, AuxType::Redis, AuxType::Etcd];
    pub fn name(self) -> &'static str {
        match self {
            AuxType::Postgres => "postgres",
            AuxType::Redis => "redis",
            AuxType::Etcd => "etcd",
        }
    }
    pub fn port(self) -> u16 {
        match self {
            AuxType::Postgres => 5432,
            AuxType::Redis => 6379,
            AuxType::Etcd => 2379,
        }
    }
}

/// Scale factors as written; unset fields come from the stage defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartialScale {
    pub min: Option<u32>,
    pub desired: Option<u32>,
    pub max: Option<u32>,
    pub cpu: Option<u32>,
}

/// How the outside reaches a service: host and path patterns on the public load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// As written, for messages.
    pub raw: String,
    /// The load balancer's conditions, variables as `*`.
    pub host: Option<String>,
    pub path: Option<String>,
    pub pos: Pos,
    /// `pattern: target`: how the request is rewritten before it reaches the service.
    pub rewrite: Option<Rewrite>,
}

/// A route's rewrite, as the load balancer's transforms take it: `(regex, replacement)` for the
/// host header and for the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The target as written (`/api/{rest}`), for the manifest and `gilliam status`.
    pub to: String,
    pub host: Option<(String, String)>,
    pub path: Option<(String, String)>,
}

/// One part of a route pattern (host or path), with its variables.
struct Pattern {
    wildcard: String,
    regex: String,
    vars: Vec<String>,
}

fn is_var_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// `users/{rest}` to the condition `users/*` and the regex `^users/(.*)$`; `*` and `?` stay the
/// load balancer's wildcards. Errors name the problem.
fn pattern(part: &str) -> Result<Pattern, String> {
    let mut p = Pattern { wildcard: String::new(), regex: String::from("^"), vars: Vec::new() };
    let mut rest = part;
    while let Some(c) = rest.chars().next() {
        if c == '{' {
            let end = rest.find('}').ok_or_else(|| format!("unclosed `{{` in `{part}`"))?;
            let name = &rest[1..end];
            if !is_var_name(name) {
                return Err(format!("bad variable `{{{name}}}` in `{part}`: lowercase letters, digits and `_`"));
            }
            if p.vars.iter().any(|v| v == name) {
                return Err(format!("variable `{{{name}}}` is bound twice in `{part}`"));
            }
            p.vars.push(name.to_string());
            p.wildcard.push('*');
            p.regex.push_str("(.*)");
            rest = &rest[end + 1..];
            continue;
        }
        if c == '}' {
            return Err(format!("`}}` without `{{` in `{part}`"));
        }
        p.wildcard.push(c);
        match c {
            '*' => p.regex.push_str(".*"),
            '?' => p.regex.push('.'),
            '\\' | '.' | '+' | '(' | ')' | '|' | '[' | ']' | '^' | '$' => {
                p.regex.push('\\');
                p.regex.push(c);
            }
            _ => p.regex.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    p.regex.push('$');
    Ok(p)
}

/// The replacement for one part of a target: `{name}` to `$k`, the k-th variable of `vars`.
/// Errors carry the byte offset of the offending variable in `part`.
fn replacement(part: &str, vars: &[String], other: &[String], other_is: &str) -> Result<String, (usize, String)> {
    let mut out = String::new();
    let mut i = 0;
    while i < part.len() {
        let c = part[i..].chars().next().unwrap_or(' ');
        if c == '$' {
            return Err((i, "a `$` in a rewrite target".into()));
        }
        if c == '{' {
            let end = part[i..].find('}').map(|e| e + i).ok_or((i, format!("unclosed `{{` in `{part}`")))?;
            let name = &part[i + 1..end];
            match vars.iter().position(|v| v == name) {
                Some(k) => out.push_str(&format!("${}", k + 1)),
                None if other.iter().any(|v| v == name) => {
                    return Err((i, format!("`{{{name}}}` is bound in the route's {other_is}, which this part of the target cannot use (the load balancer rewrites host and path separately)")))
                }
                None => return Err((i, format!("`{{{name}}}` is used in the rewrite but not bound in the route"))),
            }
            i = end + 1;
            continue;
        }
        out.push(c);
        i += c.len_utf8();
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    /// The command: a script of the tarball (required then), or the command run in the image
    /// (`None`: the image's own entrypoint and command).
    pub script: Option<String>,
    /// `memory: 512M`: the most memory the service may use, in MiB, and where it was written.
    pub memory: Option<(u32, Pos)>,
    /// `cpus: 0.5`: the most CPU the service may use, in thousandths of a CPU.
    pub cpus: Option<(u32, Pos)>,
    pub port: Option<u16>,
    pub health: String,
    pub scale: PartialScale,
    pub scale_pos: Pos,
    pub instance_type: Option<String>,
    pub routes: Vec<Route>,
    pub internal: bool,
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Auxiliary {
    pub kind: AuxType,
    pub version: Option<String>,
    pub instance_type: Option<String>,
    pub storage_gb: Option<u32>,
    /// etcd: cluster members (1, 3 or 5).
    pub size: u32,
    /// postgres: the database name.
    pub database: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ServiceKind {
    Process(Process),
    Auxiliary(Auxiliary),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub pos: Pos,
    pub kind: ServiceKind,
}

impl Service {
    pub fn process(&self) -> Option<&Process> {
        match &self.kind {
            ServiceKind::Process(p) => Some(p),
            ServiceKind::Auxiliary(_) => None,
        }
    }
    pub fn auxiliary(&self) -> Option<&Auxiliary> {
        match &self.kind {
            ServiceKind::Auxiliary(a) => Some(a),
            ServiceKind::Process(_) => None,
        }
    }
    /// A service with a port is reachable over HTTP.
    pub fn is_http(&self) -> bool {
        self.process().is_some_and(|p| p.port.is_some())
    }
}

/// The application: its services, sorted by name (input order never changes the output).
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub services: Vec<Service>,
    /// `x-gilliam: {build: ...}`: what `gilliam build` runs in the source tree.
    pub build: Option<Build>,
    /// `x-gilliam: {image: REGISTRY/REPOSITORY:TAG}`: `gilliam build` makes the release of
    /// this image (its tag resolved to a digest), as `--image` does.
    pub image: Option<String>,
    /// `x-gilliam: {analysis, hooks, stickiness}`: how traffic moving to a release is judged.
    pub delivery: crate::delivery::Partial,
}

/// `x-gilliam: {build: ...}`: a command `gilliam build` runs in the source tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Build {
    /// `build: CMD`: run before the tree is packed into the release's tarball.
    Tree(String),
    /// `build: {image: CMD}`: CMD makes a container image named `$GILLIAM_IMAGE` (a `docker
    /// build -t "$GILLIAM_IMAGE" .`, a `pack build "$GILLIAM_IMAGE"`...), which gilliam pushes
    /// to the formation's repository; the release is that image, by digest.
    Image(String),
}

impl Build {
    /// The command, whichever kind.
    pub fn command(&self) -> &str {
        match self {
            Build::Tree(c) | Build::Image(c) => c,
        }
    }
}

/// The top-level key for gilliam's own settings (not a service; `x-` as in other tools' files).
pub const SETTINGS_KEY: &str = "x-gilliam";
const SETTINGS_KEYS: &[&str] = &["build", "image", "analysis", "hooks", "stickiness", "release"];

const PROCESS_KEYS: &[&str] = &["script", "ports", "env", "health", "scale", "instance_type", "routes", "internal", "memory", "cpus"];
const AUX_KEYS_POSTGRES: &[&str] = &["type", "version", "instance_type", "storage", "database"];
const AUX_KEYS_REDIS: &[&str] = &["type", "version", "instance_type"];
const AUX_KEYS_ETCD: &[&str] = &["type", "version", "instance_type", "storage", "size"];
pub(crate) const SCALE_KEYS: &[&str] = &["min", "desired", "max", "cpu"];

/// `build`: a shell command (run before the tree is packed), or `{image: CMD}` (CMD makes the
/// image `$GILLIAM_IMAGE`).
fn decode_build(n: &Node, sink: &mut Sink<'_>) -> Option<Build> {
    let (build, pos) = if let Value::Map(m) = &n.value {
        let mut f = Fields::new(m);
        let cmd = f.get("image").map(|c| (decode::scalar_text(c, sink, "`build.image` (a shell command that makes the image $GILLIAM_IMAGE)"), c.pos));
        f.finish(sink, &["image"], "`build`");
        let Some((cmd, pos)) = cmd else {
            sink.error_hint(
                n.pos,
                "`build` as a map needs `image`",
                "write `build: {image: docker build -t \"$GILLIAM_IMAGE\" .}`, or `build: CMD` for a tarball release",
            );
            return None;
        };
        (Build::Image(cmd?), pos)
    } else {
        (Build::Tree(decode::scalar_text(n, sink, "`build` (a shell command, or {image: CMD})")?), n.pos)
    };
    if build.command().trim().is_empty() {
        sink.error_hint(pos, "`build` is empty", "give the command that builds the tree (e.g. `make dist`) or the image, or leave `build` out");
        return None;
    }
    Some(build)
}

/// Largest service count accepted in one formation.
pub const MAX_SERVICES: usize = 5_000;

/// Longest service name: a DNS label, as Kubernetes allows. Names AWS holds to fewer
/// characters (target groups: 32) are shortened with a hash (`names::shorten`).
pub const MAX_SERVICE_NAME: usize = 63;

pub(crate) fn is_service_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_SERVICE_NAME
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
        && !matches!(b[b.len() - 1], b'-' | b'_')
}

pub(crate) fn is_env_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b.len() <= 128 && (b[0].is_ascii_alphabetic() || b[0] == b'_') && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

pub(crate) fn is_instance_type(s: &str) -> bool {
    let mut parts = s.split('.');
    let ok = |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'));
    match s.split('.').count() {
        2 => ok(parts.next()) && ok(parts.next()),
        3 => ok(parts.next()) && ok(parts.next()) && ok(parts.next()),
        _ => false,
    }
}

pub(crate) fn decode(root: &Node, sink: &mut Sink<'_>) -> Option<App> {
    let entries = match &root.value {
        Value::Map(m) => m,
        Value::Null => {
            sink.error_hint(root.pos, "gilliam.yml defines no services", "add a service, e.g. `api: {script: bin/api, ports: [80]}`");
            return None;
        }
        _ => {
            sink.error_hint(
                root.pos,
                format!("gilliam.yml must be a mapping of service names to services, found {}", root.describe()),
                "write `name:` followed by the service's settings",
            );
            return None;
        }
    };
    if entries.len() > MAX_SERVICES {
        sink.error(root.pos, format!("{} services defined; at most {MAX_SERVICES} are accepted in one formation", entries.len()));
        return None;
    }
    let mut services = Vec::new();
    let mut build = None;
    let mut image = None;
    let mut delivery = crate::delivery::Partial::default();
    for (key, node) in entries {
        if key.name == SETTINGS_KEY {
            if let Some(m) = decode::map(node, sink, &format!("`{SETTINGS_KEY}`")) {
                let mut f = Fields::new(m);
                build = f.get("build").and_then(|n| decode_build(n, sink));
                if let Some(n) = f.get("image") {
                    image = decode::string(n, sink, "`image`").filter(|s| match gilliam_contract::image::ImageRef::parse(s) {
                        Ok(_) => true,
                        Err(e) => {
                            sink.error_hint(
                                n.pos,
                                e.to_string(),
                                "write REGISTRY/REPOSITORY:TAG (or @sha256:DIGEST), e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api:main",
                            );
                            false
                        }
                    });
                }
                if let (Some(Build::Image(_)), Some(_)) = (&build, &image) {
                    sink.error_hint(
                        node.pos,
                        "`build: {image: ...}` and `image` both say where the release's image comes from",
                        "keep `build.image` to build and push the image, or `image` to take one CI already pushed",
                    );
                }
                delivery = crate::delivery::decode(&mut f, sink, false);
                f.finish(sink, SETTINGS_KEYS, &format!("`{SETTINGS_KEY}`"));
            }
            continue;
        }
        if !is_service_name(&key.name) {
            sink.error_hint(
                key.pos,
                format!("bad service name `{}`", key.name),
                "a service name starts with a lowercase letter, holds only lowercase letters, digits, `-` and `_`, does not end in `-` or `_`, and has at most 63 characters",
            );
            continue;
        }
        if let Some(kind) = decode_service(&key.name, node, sink) {
            services.push(Service { name: key.name.clone(), pos: key.pos, kind });
        }
    }
    services.sort_by(|a, b| a.name.cmp(&b.name));
    Some(App { services, build, image, delivery })
}

fn decode_service(name: &str, node: &Node, sink: &mut Sink<'_>) -> Option<ServiceKind> {
    let entries = decode::map(node, sink, &format!("service `{name}`"))?;
    let mut f = Fields::new(entries);
    if let Some(t) = f.get("type") {
        let kind = decode_aux_type(t, sink)?;
        let allowed = match kind {
            AuxType::Postgres => AUX_KEYS_POSTGRES,
            AuxType::Redis => AUX_KEYS_REDIS,
            AuxType::Etcd => AUX_KEYS_ETCD,
        };
        let version = f.get("version").and_then(|n| decode::scalar_text(n, sink, "`version`"));
        let instance_type = f.get("instance_type").and_then(|n| instance_type(n, sink));
        let storage_gb =
            if kind == AuxType::Redis { None } else { f.get("storage").and_then(|n| decode::int_in(n, sink, "`storage` (GiB)", 20, 16_384)).map(|v| v as u32) };
        let size = match (kind, f.get("size")) {
            (AuxType::Etcd, Some(n)) => match decode::int_in(n, sink, "`size`", 1, 5) {
                Some(v) if v % 2 == 1 => v as u32,
                Some(v) => {
                    sink.error_hint(n.pos, format!("etcd `size` must be odd, found {v}"), "use 1, 3 or 5 members so that a quorum exists");
                    1
                }
                None => 1,
            },
            _ => 1,
        };
        let database = match (kind, f.get("database")) {
            (AuxType::Postgres, Some(n)) => match decode::string(n, sink, "`database`") {
                Some(d) if d.len() <= 63 && d.as_bytes()[0].is_ascii_alphabetic() && d.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') => d,
                Some(d) => {
                    sink.error_hint(n.pos, format!("bad database name `{d}`"), "start with a letter; letters, digits and `_` only; at most 63 characters");
                    "app".into()
                }
                None => "app".into(),
            },
            _ => "app".into(),
        };
        let what = format!("auxiliary service `{name}` (type {})", kind.name());
        for (k, _) in entries {
            if PROCESS_KEYS.contains(&k.name.as_str()) && !allowed.contains(&k.name.as_str()) {
                sink.error_hint(
                    k.pos,
                    format!("`{}` does not apply to {what}", k.name),
                    "auxiliary services run no script of yours and are never exposed outside the formation; remove the key",
                );
                let _ = f.get(&k.name);
            }
        }
        f.finish(sink, allowed, &what);
        return Some(ServiceKind::Auxiliary(Auxiliary { kind, version, instance_type, storage_gb, size, database }));
    }

    // Without `script`, an image release runs the image's own command (a tarball release
    // needs one: checked against the release).
    let script = f.get("script").and_then(|n| decode::string(n, sink, "`script`"));
    let memory = f.get("memory").and_then(|n| memory(n, sink).map(|m| (m, n.pos)));
    let cpus = f.get("cpus").and_then(|n| cpus(n, sink).map(|c| (c, n.pos)));
    let port = f.get("ports").and_then(|n| ports(n, sink));
    let health_node = f.get("health");
    let health = match health_node {
        Some(n) => match decode::string(n, sink, "`health`") {
            Some(h) if h.starts_with('/') && h.len() <= 1024 && h.bytes().all(|c| c.is_ascii_graphic()) => h,
            Some(h) => {
                sink.error_hint(n.pos, format!("bad health-check path `{h}`"), "give a path that starts with `/`, e.g. `/healthz`");
                "/".into()
            }
            None => "/".into(),
        },
        None => "/".into(),
    };
    if let (Some(n), None) = (health_node, port) {
        sink.error_hint(n.pos, format!("`health` needs `ports`: service `{name}` is a worker"), "add `ports: [PORT]`, or remove `health`");
    }
    let scale_node = f.get("scale");
    let scale = scale_node.map(|n| partial_scale(n, sink)).unwrap_or_default();
    let instance_type = f.get("instance_type").and_then(|n| instance_type(n, sink));
    let internal = f.get("internal").and_then(|n| decode::boolean(n, sink, "`internal`")).unwrap_or(false);
    let env = f.get("env").map(|n| env_map(n, sink, "`env`")).unwrap_or_default();
    let routes_node = f.get("routes");
    let routes = routes_node.map(|n| routes(n, sink)).unwrap_or_default();
    if let Some(rn) = routes_node {
        if port.is_none() && !routes.is_empty() {
            sink.error_hint(
                rn.pos,
                format!("service `{name}` has routes but no `ports`"),
                "a worker cannot be reached over HTTP; add `ports: [PORT]` or remove `routes`",
            );
        }
        if internal && !routes.is_empty() {
            sink.error_hint(rn.pos, format!("service `{name}` is `internal: true` but has public routes"), "remove `routes`, or `internal: true`");
        }
    }
    f.finish(sink, PROCESS_KEYS, &format!("service `{name}`"));
    Some(ServiceKind::Process(Process {
        script,
        memory,
        cpus,
        port,
        health,
        scale,
        scale_pos: scale_node.map_or(node.pos, |n| n.pos),
        instance_type,
        routes,
        internal,
        env,
    }))
}

fn decode_aux_type(n: &Node, sink: &mut Sink<'_>) -> Option<AuxType> {
    let s = decode::string(n, sink, "`type`")?;
    let found = AuxType::ALL.into_iter().find(|t| t.name() == s);
    if found.is_none() {
        let names: Vec<&str> = AuxType::ALL.iter().map(|t| t.name()).collect();
        let hint = match crate::diag::did_you_mean(&s, &names) {
            Some(m) => format!("did you mean `{m}`? supported types: {}", names.join(", ")),
            None => format!("supported types: {}", names.join(", ")),
        };
        sink.error_hint(n.pos, format!("unknown auxiliary service type `{s}`"), hint);
    }
    found
}

/// `512M`, `1536Mi`, `2G`, `1.5Gi`: MiB, at least 16.
fn memory(n: &Node, sink: &mut Sink<'_>) -> Option<u32> {
    let text = decode::scalar_text(n, sink, "`memory`")?;
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = (&t[..split], &t[split..]);
    let mib = match (num.parse::<f64>(), unit) {
        (Ok(v), "M" | "Mi" | "MB" | "MiB") => Some(v),
        (Ok(v), "G" | "Gi" | "GB" | "GiB") => Some(v * 1024.0),
        _ => None,
    };
    match mib {
        Some(m) if m.is_finite() && (16.0..=4_194_304.0).contains(&m) => Some(m.round() as u32),
        Some(_) => {
            sink.error_hint(n.pos, format!("`memory` `{text}` is out of range"), "give between 16M and 4096G");
            None
        }
        None => {
            sink.error_hint(n.pos, format!("`memory` `{text}` is not an amount of memory"), "write MiB or GiB with its unit: `512M`, `1.5G`");
            None
        }
    }
}

/// `0.5`, `2`: thousandths of a CPU, at least 0.01.
fn cpus(n: &Node, sink: &mut Sink<'_>) -> Option<u32> {
    let v = match &n.value {
        crate::node::Value::Int(i) => Some(*i as f64),
        crate::node::Value::Float(f) => Some(*f),
        crate::node::Value::Str(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match v {
        Some(c) if c.is_finite() && (0.01..=448.0).contains(&c) => Some((c * 1000.0).round() as u32),
        _ => {
            sink.error_hint(
                n.pos,
                format!("`cpus` must be a number of CPUs, found {}", n.describe()),
                "write how many CPUs the service may use, e.g. `cpus: 0.5` or `cpus: 2`",
            );
            None
        }
    }
}

fn ports(n: &Node, sink: &mut Sink<'_>) -> Option<u16> {
    let list = decode::seq(n, sink, "`ports`")?;
    let mut out = Vec::new();
    for p in list {
        if let Some(v) = decode::int_in(p, sink, "a port", 1, 65_535) {
            out.push(v as u16);
        }
    }
    match out.len() {
        0 if list.is_empty() => {
            sink.error_hint(n.pos, "`ports` is empty", "give the one port the service listens on, or remove `ports` for a worker");
            None
        }
        0 => None,
        1 => Some(out[0]),
        _ => {
            sink.error_hint(
                list[1].pos,
                "only one port per service is supported",
                "the load balancer forwards HTTP to a single port; split extra ports into services of their own",
            );
            Some(out[0])
        }
    }
}

fn instance_type(n: &Node, sink: &mut Sink<'_>) -> Option<String> {
    let s = decode::string(n, sink, "`instance_type`")?;
    if is_instance_type(&s) {
        Some(s)
    } else {
        sink.error_hint(
            n.pos,
            format!("bad instance type `{s}`"),
            "write an EC2 instance type such as `t3.small` (or `db.t4g.micro` / `cache.t4g.micro` for auxiliaries)",
        );
        None
    }
}

pub(crate) fn partial_scale(n: &Node, sink: &mut Sink<'_>) -> PartialScale {
    if let Value::Int(_) = n.value {
        let v = decode::int_in(n, sink, "`scale`", 0, 1000).map(|v| v as u32);
        return PartialScale { min: v, desired: v, max: v, cpu: None };
    }
    let Some(entries) = decode::map(n, sink, "`scale`") else {
        return PartialScale::default();
    };
    let mut f = Fields::new(entries);
    let mut get = |k: &str, lo, hi| f.get(k).and_then(|n| decode::int_in(n, sink, &format!("`scale.{k}`"), lo, hi)).map(|v| v as u32);
    let s = PartialScale { min: get("min", 0, 1000), desired: get("desired", 0, 1000), max: get("max", 0, 1000), cpu: get("cpu", 1, 100) };
    f.finish(sink, SCALE_KEYS, "`scale`");
    s
}

pub(crate) fn env_map(n: &Node, sink: &mut Sink<'_>, what: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(entries) = decode::map(n, sink, what) else {
        return out;
    };
    for (k, v) in entries {
        if !is_env_name(&k.name) {
            sink.error_hint(k.pos, format!("bad environment variable name `{}`", k.name), "use letters, digits and `_`, not starting with a digit");
            continue;
        }
        if k.name == "PORT" || k.name.starts_with("GILLIAM_") {
            sink.error_hint(k.pos, format!("`{}` is set by gilliam", k.name), "choose another name: PORT and GILLIAM_* are reserved");
            continue;
        }
        if let Some(t) = decode::scalar_text(v, sink, &format!("`{}`", k.name)) {
            out.insert(k.name.clone(), t);
        }
    }
    out
}

fn routes(n: &Node, sink: &mut Sink<'_>) -> Vec<Route> {
    let Some(list) = decode::seq(n, sink, "`routes`") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in list {
        if let Value::Map(m) = &r.value {
            // `pattern: target`, a route with a rewrite.
            if m.len() != 1 {
                sink.error_hint(r.pos, "a route with a rewrite is one `pattern: target` pair", "e.g. `- api.example.com/users/{rest}: /api/{rest}`");
                continue;
            }
            let (k, v) = &m[0];
            let Some(to) = decode::string(v, sink, "a rewrite target") else { continue };
            if let Some(route) = parse_route(&k.name, k.pos, sink).and_then(|route| with_rewrite(route, &to, v.pos, sink)) {
                out.push(route);
            }
            continue;
        }
        if let Some(route) = decode::string(r, sink, "a route").and_then(|s| parse_route(&s, r.pos, sink)) {
            if route.raw.contains('{') {
                sink.error_hint(
                    r.pos,
                    format!("route `{}` binds variables but rewrites nothing", route.raw),
                    "give the target: `- pattern: /target/{var}`, or use `*` wildcards",
                );
                continue;
            }
            out.push(route);
        }
    }
    out
}

/// Adds the rewrite `to` (`/path/{var}`, or `host/path/{var}`) to a route, checking that every
/// variable it uses is bound on the route's side that the load balancer rewrites it from.
fn with_rewrite(mut route: Route, to: &str, pos: Pos, sink: &mut Sink<'_>) -> Option<Route> {
    let (raw_host, raw_path) = split_route(&route.raw);
    let host_pat = match raw_host.as_deref().map(pattern).transpose() {
        Ok(p) => p,
        Err(m) => {
            sink.error(route.pos, m);
            return None;
        }
    };
    let path_pat = match raw_path.as_deref().map(pattern).transpose() {
        Ok(p) => p,
        Err(m) => {
            sink.error(route.pos, m);
            return None;
        }
    };
    let (to_host, to_path) = split_route(to);
    let hv = host_pat.as_ref().map(|p| p.vars.clone()).unwrap_or_default();
    let pv = path_pat.as_ref().map(|p| p.vars.clone()).unwrap_or_default();
    // Where each part starts in `to`, for positions inside the target.
    let path_offset = to_host.as_ref().map_or(0, String::len);
    let at = |offset: usize| Pos { line: pos.line, col: pos.col + offset as u32 };
    let mut rewrite = Rewrite { to: to.to_string(), host: None, path: None };
    if let Some(h) = &to_host {
        match replacement(h, &hv, &pv, "path") {
            Ok(r) => rewrite.host = Some((host_pat.as_ref().map_or("^.*$".into(), |p| p.regex.clone()), r)),
            Err((i, m)) => {
                sink.error_hint(at(i), format!("route `{}`: {m}", route.raw), "bind it in the route, e.g. `{tenant}.example.com`, or drop it from the target");
                return None;
            }
        }
    }
    if let Some(p) = &to_path {
        match replacement(p, &pv, &hv, "host") {
            Ok(r) => rewrite.path = Some((path_pat.as_ref().map_or("^.*$".into(), |p| p.regex.clone()), r)),
            Err((i, m)) => {
                sink.error_hint(at(path_offset + i), format!("route `{}`: {m}", route.raw), "bind it in the route's path, e.g. `/users/{rest}`");
                return None;
            }
        }
    }
    if rewrite.host.is_none() && rewrite.path.is_none() {
        sink.error_hint(pos, format!("route `{}`: empty rewrite target", route.raw), "write the path (or host/path) the service expects");
        return None;
    }
    route.host = host_pat.map(|p| p.wildcard.to_ascii_lowercase());
    route.path = path_pat.map(|p| p.wildcard).filter(|p| route.host.is_none() || p != "/*");
    route.rewrite = Some(rewrite);
    Some(route)
}

/// `host/path` into its parts (`/path` has no host, `host` no path).
fn split_route(raw: &str) -> (Option<String>, Option<String>) {
    match raw.find('/') {
        Some(0) => (None, Some(raw.to_string())),
        Some(i) => (Some(raw[..i].to_string()), Some(raw[i..].to_string())),
        None => (Some(raw.to_string()), None),
    }
}

/// `host/path`, `host` or `/path`; `*` and `?` are the load balancer's wildcards.
pub(crate) fn parse_route(raw: &str, pos: Pos, sink: &mut Sink<'_>) -> Option<Route> {
    let (host, path) = match raw.find('/') {
        Some(0) => (None, Some(raw.to_string())),
        Some(i) => (Some(raw[..i].to_ascii_lowercase()), Some(raw[i..].to_string())),
        None => (Some(raw.to_ascii_lowercase()), None),
    };
    // `host/*` is the host alone; a bare `/*` keeps its path, a rule needs one condition.
    let path = if host.is_some() { path.filter(|p| p != "/*") } else { path };
    // Variables are checked where the rewrite is; here they count as wildcards.
    let wild = |s: &str| pattern(s).map(|p| p.wildcard).unwrap_or_else(|_| s.replace(['{', '}'], "*"));
    let host = host.map(|h| wild(&h));
    let path = path.map(|p| wild(&p));
    if let Some(h) = &host {
        let ok = !h.is_empty()
            && h.len() <= 128
            && h.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'*' | b'?'))
            && !h.starts_with('.')
            && !h.ends_with('.');
        if !ok {
            sink.error_hint(
                pos,
                format!("bad host `{h}` in route `{raw}`"),
                "a host holds letters, digits, `-`, `.` and the wildcards `*` and `?`, e.g. `api.example.com/users/*`",
            );
            return None;
        }
    }
    if let Some(p) = &path {
        let ok = p.len() <= 128 && p.bytes().all(|c| c.is_ascii_graphic() && !matches!(c, b'"' | b'\\' | b'#'));
        if !ok {
            sink.error_hint(pos, format!("bad path in route `{raw}`"), "a path starts with `/`, has at most 128 characters, no spaces, quotes or `#`");
            return None;
        }
    }
    Some(Route { raw: raw.to_string(), host, path, pos, rewrite: None })
}

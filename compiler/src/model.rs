//! The compiler's model: its inputs and outputs (`Source`, `Inputs`, `Options`, `Compiled`,
//! `Error`), one live release's share of traffic, the weight rule every listener rule follows,
//! and the checked, laid-out formation (`Ctx`, `Svc`) that every emitter reads.

use crate::app::Service;
use crate::diag::Diagnostics;
use crate::manifest::{self as mf, Manifest};
use crate::names;
use crate::release::Release;
use crate::stage::Stage;
use std::collections::{BTreeMap, BTreeSet};

/// One input file: the name it is reported under, and its text.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

/// One live release's share of the formation's traffic, as the routing templates see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficShare {
    pub release: u32,
    /// ELBv2 weight, 0 to 999.
    pub weight: u32,
    /// Routing groups the release was compiled with (it must match this compile's).
    pub routing_groups: u32,
    /// Services with an internal target group in that release.
    pub internal: BTreeSet<String>,
    /// Services with a public target group in that release.
    pub public: BTreeSet<String>,
    /// The port of each of its HTTP services: the formation keeps the instances' security
    /// group open on every port a live release uses (the compiler fills in its own release's).
    pub ports: BTreeMap<String, u16>,
}

#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub app: Source<'a>,
    pub release: Source<'a>,
    pub stage: Source<'a>,
}

/// Everything a compile produces: files by relative path (with `Options::sink`, only
/// `manifest.json`: the sink took the others), and the manifest they describe.
#[derive(Debug)]
pub struct Compiled {
    pub files: BTreeMap<String, Vec<u8>>,
    pub manifest: Manifest,
}

impl Compiled {
    /// Every instance role's userdata by name (a service's name, or `AUX-N` for etcd member N),
    /// read back from the launch templates that carry it, where the manifest's entries point:
    /// for review (`gilliam-compile --userdata`) and tests. Nothing else is written twice.
    pub fn userdata(&self) -> Result<BTreeMap<String, String>, String> {
        let mut templates: BTreeMap<&str, serde_json::Value> = BTreeMap::new();
        let mut out = BTreeMap::new();
        for s in &self.manifest.services {
            for (i, e) in s.userdata.iter().enumerate() {
                let name = if s.auxiliary_type.is_some() { format!("{}-{i}", s.name) } else { s.name.clone() };
                let (file, pointer) = e.path.split_once('#').ok_or_else(|| format!("userdata of {name}: `{}` names no place in a template", e.path))?;
                if !templates.contains_key(file) {
                    let bytes = self.files.get(file).ok_or_else(|| format!("userdata of {name}: no file {file}"))?;
                    let t = serde_json::from_slice(bytes).map_err(|err| format!("{file}: {err}"))?;
                    templates.insert(file, t);
                }
                let script = templates[file]
                    .pointer(pointer)
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| format!("userdata of {name}: {} holds no script", e.path))?;
                out.insert(name, script.to_string());
            }
        }
        Ok(out)
    }
}

#[derive(Debug)]
pub enum Error {
    /// The inputs are wrong or do not fit AWS limits: every problem, with its position.
    Invalid(Diagnostics),
    /// A bug in the compiler: it refuses to emit rather than emit something broken.
    Internal(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Invalid(d) => write!(f, "{d}"),
            Error::Internal(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

pub use gilliam_contract::weights::{rule_weights, MAX_WEIGHT};

/// ELBv2: target groups per load balancer (not adjustable).
pub const TARGET_GROUPS_PER_LB: u32 = 100;
/// ELBv2: target groups in one weighted forward action (not adjustable).
pub const TARGET_GROUPS_PER_FORWARD: u32 = 5;

/// A service with everything resolved: IDs, scale with defaults, placement.
#[derive(Debug)]
pub(crate) struct Svc<'a> {
    pub s: &'a Service,
    pub id: String,
    pub env: String,
    pub scale: mf::Scale,
    pub instance_type: String,
    pub group: Option<u32>,
    pub part: u32,
    /// A service this release dropped, still routed (to the older releases that have it)
    /// while one of them carries traffic: in the routing only, without a test-header rule.
    pub carried: bool,
    /// CPU and memory the service may use (from gilliam.yml, else its instance type's).
    pub limits: Option<gilliam_contract::runtime::Limits>,
}

impl Svc<'_> {
    pub fn routed(&self) -> bool {
        self.s.process().is_some_and(|p| !p.routes.is_empty())
    }
}

/// The checked inputs and the layout, shared by every emitter.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub stage: &'a Stage,
    pub release: &'a Release,
    pub svcs: Vec<Svc<'a>>,
    pub groups: u32,
    pub parts: u32,
    pub live: u32,
    pub traffic: Vec<TrafficShare>,
    /// Releases kept cold: in no routing rule, but their ports stay open (`Options::standby`).
    pub standby: Vec<TrafficShare>,
    pub workers: usize,
    pub deployed_rules: BTreeMap<String, crate::priority::DeployedRules>,
    pub delivery: mf::Delivery,
}

impl Ctx<'_> {
    pub fn f(&self) -> &str {
        &self.stage.formation
    }
    pub fn domain(&self) -> String {
        names::internal_domain(self.f())
    }
    pub fn https(&self) -> bool {
        self.stage.certificate.is_some()
    }
    pub fn prefix(&self) -> String {
        gilliam_contract::keys::prefix(self.f())
    }
    pub fn release_stack(&self, part: u32) -> String {
        names::release_stack(self.f(), self.release.number, part, self.parts)
    }
    /// This release's processes (not the services it carries for older releases).
    pub fn processes(&self) -> impl Iterator<Item = &Svc<'_>> {
        self.svcs.iter().filter(|s| s.s.process().is_some() && !s.carried)
    }
    /// Every HTTP service the routing routes: this release's and those it carries.
    pub fn http(&self) -> impl Iterator<Item = &Svc<'_>> {
        self.svcs.iter().filter(|s| s.s.is_http())
    }
    /// This release's own HTTP services.
    pub fn own_http(&self) -> impl Iterator<Item = &Svc<'_>> {
        self.http().filter(|s| !s.carried)
    }
    pub fn auxiliaries(&self) -> impl Iterator<Item = &Svc<'_>> {
        self.svcs.iter().filter(|s| s.s.auxiliary().is_some())
    }
}

/// How to compile, beyond the inputs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Traffic shares to render routing templates with; `None`: the compiled release takes all.
    pub traffic: Option<Vec<TrafficShare>>,
    /// Threads that may build and render stacks at once (0 or 1: the calling thread only).
    /// The output is the same bytes whatever the count.
    pub workers: usize,
    /// The listener rules the routing stacks hold now, by stack name: their priorities are kept
    /// where possible, and new ones never collide with them during the update.
    pub deployed_rules: BTreeMap<String, crate::priority::DeployedRules>,
    /// Releases kept cold (scaled to zero, in no routing rule): the instances' security group
    /// stays open on their ports, so that warming one needs no formation stack update. Their
    /// weights are ignored and they count against no routing limit.
    pub standby: Vec<TrafficShare>,
    /// The gilliam.yml of older releases in `traffic` (release number, text): an HTTP service
    /// this release dropped stays routed, to the releases that have it, while one of them
    /// carries weight (its callers are still those releases).
    pub carried: Vec<(u32, String)>,
    /// Where each file goes as soon as it is complete, from whichever worker rendered it, so
    /// that writing overlaps rendering and no file is held longer than it takes to write it:
    /// `Compiled::files` then holds `manifest.json` alone. `None`: every file into
    /// `Compiled::files`.
    pub sink: Option<std::sync::Arc<dyn FileSink>>,
}

/// Takes a compile's files as each is complete: the binaries write them out while the compile
/// goes on (the compiler does no I/O). Called from the compile's workers, in no fixed order,
/// once per file and never for `manifest.json`, which the compile returns last so that a
/// reader finds a manifest only once every file it names is there. A sink keeps its own
/// errors: the compile goes on, and its caller asks the sink afterwards.
pub trait FileSink: Send + Sync + std::fmt::Debug {
    fn file(&self, path: &str, bytes: &[u8]);
}

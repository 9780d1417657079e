//! The compile pipeline: parse the three inputs, check them against each other, lay the
//! formation out into stacks and load balancers within AWS limits, and emit every file.

use crate::app::{App, AuxType, Service, ServiceKind};
use crate::cfn::{self, Template};
use crate::diag::{Diagnostic, Diagnostics, Pos, Sink};
use crate::manifest::{self as mf, Manifest};
use crate::names;
use crate::release::Release;
use crate::stage::Stage;
use crate::{emit, node};
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

/// Everything a compile produces: files by relative path, and the manifest they describe.
#[derive(Debug)]
pub struct Compiled {
    pub files: BTreeMap<String, Vec<u8>>,
    pub manifest: Manifest,
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

/// Largest ELBv2 forward weight.
pub const MAX_WEIGHT: u32 = 999;

/// The weights one listener rule gives the releases that have its service, from the
/// formation's weights (`(release, weight)` pairs): each release's own weight, except that when
/// none of them has any (a service new in a release without traffic yet), the newest takes the
/// rule with weight 1: nothing else can answer it, and a target group in no weighted rule is
/// never health-checked by ELBv2. The one definition both the rendered templates and the
/// operator's ELBv2 writes follow; `None` when there is no release.
pub fn rule_weights(releases: &[(u32, u32)]) -> Option<Vec<u32>> {
    let mut w: Vec<u32> = releases.iter().map(|(_, w)| *w).collect();
    if w.iter().all(|w| *w == 0) {
        let newest = releases.iter().enumerate().max_by_key(|(_, (n, _))| *n)?.0;
        w[newest] = 1;
    }
    Some(w)
}
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
        format!("gilliam/{}/", self.f())
    }
    pub fn release_stack(&self, part: u32) -> String {
        names::release_stack(self.f(), self.release.number, part, self.parts)
    }
    pub fn processes(&self) -> impl Iterator<Item = &Svc<'_>> {
        self.svcs.iter().filter(|s| s.s.process().is_some())
    }
    pub fn http(&self) -> impl Iterator<Item = &Svc<'_>> {
        self.svcs.iter().filter(|s| s.s.is_http())
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
}

/// Compiles with the default traffic: the release being compiled takes all of it.
pub fn compile(inputs: &Inputs<'_>) -> Result<Compiled, Error> {
    compile_with(inputs, &Options::default())
}

/// Compiles with the given traffic shares; `None` means the compiled release takes it all.
/// The materializer uses this to re-render routing templates with observed weights.
pub fn compile_with_traffic(inputs: &Inputs<'_>, traffic: Option<&[TrafficShare]>) -> Result<Compiled, Error> {
    compile_with(inputs, &Options { traffic: traffic.map(<[TrafficShare]>::to_vec), workers: 1, ..Options::default() })
}

pub fn compile_with(inputs: &Inputs<'_>, options: &Options) -> Result<Compiled, Error> {
    let traffic = options.traffic.as_deref();
    let mut out: Vec<Diagnostic> = Vec::new();
    let app = {
        let mut sink = Sink { file: inputs.app.name, out: &mut out };
        node::parse_yaml(inputs.app.text, &mut sink).and_then(|n| crate::app::decode(&n, &mut sink))
    };
    let release = {
        let mut sink = Sink { file: inputs.release.name, out: &mut out };
        node::parse_json(inputs.release.text, &mut sink).and_then(|n| crate::release::decode(&n, &mut sink))
    };
    let stage = {
        let mut sink = Sink { file: inputs.stage.name, out: &mut out };
        node::parse_yaml(inputs.stage.text, &mut sink).and_then(|n| crate::stage::decode(&n, &mut sink))
    };
    let (Some(app), Some(release), Some(stage)) = (app, release, stage) else {
        return Err(invalid(out));
    };
    let ctx = check(&app, &release, &stage, inputs, traffic, &mut out);
    if !out.is_empty() {
        return Err(invalid(out));
    }
    let mut ctx = ctx.ok_or_else(|| Error::Internal("internal error: layout failed without a diagnostic".into()))?;
    ctx.workers = options.workers.max(1);
    ctx.standby = options.standby.clone();
    ctx.deployed_rules = options.deployed_rules.clone();
    emit::emit(&mut ctx, inputs).map_err(Error::Internal)
}

fn invalid(out: Vec<Diagnostic>) -> Error {
    let mut d = Diagnostics(out);
    d.sort();
    Error::Invalid(d)
}

fn resolve_scale(svc: &Service, stage: &Stage, sink: &mut Sink<'_>) -> Option<mf::Scale> {
    let p = svc.process()?;
    let (w, d) = (p.scale, stage.defaults.scale);
    let min = w.min.or(d.min).unwrap_or(1);
    let max = w.max.or(d.max).unwrap_or(min.max(3));
    let desired = w.desired.unwrap_or_else(|| d.desired.unwrap_or(min).clamp(min, max.max(min)));
    let cpu = w.cpu.or(d.cpu).unwrap_or(60);
    if !(min <= desired && desired <= max) {
        sink.error_hint(
            p.scale_pos,
            format!("service `{}`: scale must satisfy min <= desired <= max, found min {min}, desired {desired}, max {max}", svc.name),
            "adjust `scale` (unset values come from the stage's `defaults.scale`)",
        );
    }
    Some(mf::Scale { min, desired, max, cpu })
}

fn check<'a>(
    app: &'a App,
    release: &'a Release,
    stage: &'a Stage,
    inputs: &Inputs<'_>,
    traffic: Option<&[TrafficShare]>,
    out: &mut Vec<Diagnostic>,
) -> Option<Ctx<'a>> {
    {
        let mut sink = Sink { file: inputs.release.name, out };
        let prefix = crate::release::config_secret_prefix(&stage.formation);
        for (var, (name, pos)) in &release.secrets {
            if !name.starts_with(&prefix) {
                sink.error_hint(
                    *pos,
                    format!("`{var}`: secret `{name}` belongs to another formation"),
                    format!("this formation's config secrets are named {prefix}..."),
                );
            }
        }
    }
    let mut svcs = Vec::new();
    {
        let mut sink = Sink { file: inputs.app.name, out };
        let mut ids: BTreeMap<String, &Service> = BTreeMap::new();
        let mut envs: BTreeMap<String, &Service> = BTreeMap::new();
        for s in &app.services {
            let id = names::logical(&s.name);
            let env = names::env_prefix(&s.name);
            if let Some(first) = ids.get(&id) {
                sink.error_hint(
                    s.pos,
                    format!("services `{}` (line {}) and `{}` both become the CloudFormation logical ID `{id}`", first.name, first.pos.line, s.name),
                    "rename one of them: `-` and `_` are dropped from logical IDs",
                );
            } else if let Some(first) = envs.get(&env) {
                sink.error_hint(
                    s.pos,
                    format!("services `{}` (line {}) and `{}` both become the environment variable `{env}_URL`", first.name, first.pos.line, s.name),
                    "rename one of them",
                );
            }
            ids.entry(id.clone()).or_insert(s);
            envs.entry(env.clone()).or_insert(s);
            let scale = resolve_scale(s, stage, &mut sink);
            let instance_type = match &s.kind {
                ServiceKind::Process(p) => p.instance_type.clone().unwrap_or_else(|| stage.defaults.instance_type.clone()),
                ServiceKind::Auxiliary(a) => a.instance_type.clone().unwrap_or_else(|| match a.kind {
                    AuxType::Postgres => "db.t4g.micro".into(),
                    AuxType::Redis => "cache.t4g.micro".into(),
                    AuxType::Etcd => stage.defaults.instance_type.clone(),
                }),
            };
            if let ServiceKind::Auxiliary(a) = &s.kind {
                let want = match a.kind {
                    AuxType::Postgres => Some("db."),
                    AuxType::Redis => Some("cache."),
                    AuxType::Etcd => None,
                };
                let bad = match want {
                    Some(p) => !instance_type.starts_with(p),
                    None => instance_type.starts_with("db.") || instance_type.starts_with("cache."),
                };
                if bad {
                    sink.error_hint(
                        s.pos,
                        format!("auxiliary `{}`: instance type `{instance_type}` does not fit type {}", s.name, a.kind.name()),
                        match want {
                            Some(p) => format!("use an instance class that starts with `{p}`"),
                            None => "use an EC2 instance type such as `t3.small`".into(),
                        },
                    );
                }
            }
            svcs.push(Svc { s, id, env, scale: scale.unwrap_or(mf::Scale { min: 0, desired: 0, max: 0, cpu: 0 }), instance_type, group: None, part: 0 });
        }

        // Routes: the same host and path may lead to one service only.
        type HostPath = (Option<String>, Option<String>);
        let mut seen: BTreeMap<HostPath, (&str, Pos)> = BTreeMap::new();
        for s in &app.services {
            for r in s.process().map(|p| p.routes.as_slice()).unwrap_or_default() {
                let key = (r.host.clone(), r.path.clone());
                match seen.get(&key) {
                    Some((other, pos)) => sink.error_hint(
                        r.pos,
                        format!("route `{}` collides with the route of service `{other}` at line {}, column {}", r.raw, pos.line, pos.col),
                        "two services cannot share a host and path; change one of them",
                    ),
                    None => {
                        seen.insert(key, (&s.name, r.pos));
                    }
                }
            }
        }
    }

    let mut sink = Sink { file: inputs.stage.name, out };
    let any_routed = svcs.iter().any(Svc::routed);
    let any_http = svcs.iter().any(|s| s.s.is_http());
    let needs_private_pair = any_http || svcs.iter().any(|s| s.s.auxiliary().is_some_and(|a| a.kind != AuxType::Etcd));
    if any_routed && stage.public_subnets.len() < 2 {
        sink.error_hint(
            stage.public_subnets_pos,
            format!(
                "services with routes need a public load balancer, which needs at least 2 `public_subnets` in different zones; {} given",
                stage.public_subnets.len()
            ),
            "list two or more public subnet ids",
        );
    }
    if stage.private_subnets.is_empty() {
        sink.error_hint(stage.private_subnets_pos, "`private_subnets` is empty", "list the subnets the formation's instances run in");
    } else if needs_private_pair && stage.private_subnets.len() < 2 {
        sink.error_hint(
            stage.private_subnets_pos,
            "the internal load balancer and managed databases need at least 2 `private_subnets` in different zones",
            "list two or more private subnet ids",
        );
    }
    let etcd: Vec<&Svc<'_>> = svcs.iter().filter(|s| s.s.auxiliary().is_some_and(|a| a.kind == AuxType::Etcd)).collect();
    if let Some(e) = etcd.first() {
        if stage.auxiliary_image.is_none() {
            sink.error_hint(
                stage.root_pos,
                format!("auxiliary `{}` (etcd) runs on instances, and the stage file has no `auxiliary_image`", e.s.name),
                "add `auxiliary_image: ami-...`: the runtime image for formation-level instances, changed deliberately rather than with every release",
            );
        }
        if stage.private_subnets.iter().any(|s| s.zone.is_none()) {
            sink.error_hint(
                stage.private_subnets_pos,
                format!("auxiliary `{}` (etcd) keeps its data on volumes that live in one zone, so every private subnet needs its `zone`", e.s.name),
                "write each private subnet as `{id: subnet-..., zone: eu-west-1a}`",
            );
        }
    }

    let live = stage.keep_releases + 2;
    let current = TrafficShare {
        release: release.number,
        weight: 100,
        routing_groups: 0,
        internal: svcs.iter().filter(|s| s.s.is_http()).map(|s| s.s.name.clone()).collect(),
        public: svcs.iter().filter(|s| s.routed()).map(|s| s.s.name.clone()).collect(),
        ports: svcs.iter().filter_map(|s| s.s.process().and_then(|p| p.port).map(|p| (s.s.name.clone(), p))).collect(),
    };
    let groups = layout_groups(&mut svcs, stage, live, &mut sink)?;
    let mut shares: Vec<TrafficShare> = match traffic {
        None => vec![current.clone()],
        Some(t) => t.to_vec(),
    };
    for s in &mut shares {
        if s.release == release.number {
            s.internal = current.internal.clone();
            s.public = current.public.clone();
            s.ports = current.ports.clone();
            s.routing_groups = groups;
        }
    }
    check_traffic(&shares, groups, live, &mut sink);
    if !out.is_empty() {
        return None;
    }
    let delivery = crate::delivery::merge(&app.delivery, &stage.delivery);
    Some(Ctx { stage, release, svcs, groups, parts: 1, live, traffic: shares, standby: Vec::new(), workers: 1, deployed_rules: BTreeMap::new(), delivery })
}

fn check_traffic(shares: &[TrafficShare], groups: u32, live: u32, sink: &mut Sink<'_>) {
    let pos = Pos::new(1, 1);
    let mut seen = BTreeSet::new();
    for s in shares {
        if !seen.insert(s.release) {
            sink.error(pos, format!("traffic names release {} twice", s.release));
        }
        if s.weight > MAX_WEIGHT {
            sink.error(pos, format!("traffic weight {} for release {} is over the load balancer's maximum of {MAX_WEIGHT}", s.weight, s.release));
        }
        if s.routing_groups != groups {
            sink.error_hint(
                pos,
                format!(
                    "release {} was laid out over {} routing groups and this one over {groups}: their target groups cannot share load balancers",
                    s.release, s.routing_groups
                ),
                "pin `routing_groups` in the stage file to the live releases' value, or retire them first",
            );
        }
    }
    if shares.len() as u32 > live.min(TARGET_GROUPS_PER_FORWARD) {
        sink.error_hint(
            pos,
            format!(
                "traffic spans {} releases; a weighted forward holds at most {} target groups (keep_releases + 2 = {live})",
                shares.len(),
                TARGET_GROUPS_PER_FORWARD.min(live)
            ),
            "retire releases first",
        );
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Why a layout over `k` routing groups breaks a limit, or `None` when it fits.
fn overflow(svcs: &[Svc<'_>], k: u32, stage: &Stage, live: u32) -> Option<String> {
    let mut http = vec![0u32; k as usize];
    let mut routed = vec![0u32; k as usize];
    let mut routes = vec![0u32; k as usize];
    for s in svcs.iter().filter(|s| s.s.is_http()) {
        let g = (fnv1a(&s.s.name) % u64::from(k)) as usize;
        http[g] += 1;
        if s.routed() {
            routed[g] += 1;
            routes[g] += s.s.process().map_or(0, |p| p.routes.len() as u32);
        }
    }
    let rules = stage.quotas.rules_per_load_balancer;
    for g in 0..k as usize {
        let n = g + 1;
        if http[g] * live > TARGET_GROUPS_PER_LB {
            return Some(format!("routing group {n}'s internal load balancer would hold {} target groups ({} HTTP services x {live} live releases), over ELBv2's limit of {TARGET_GROUPS_PER_LB} per load balancer", http[g] * live, http[g]));
        }
        if routed[g] * live > TARGET_GROUPS_PER_LB {
            return Some(format!("routing group {n}'s public load balancer would hold {} target groups ({} routed services x {live} live releases), over ELBv2's limit of {TARGET_GROUPS_PER_LB} per load balancer", routed[g] * live, routed[g]));
        }
        // Each rule has a twin for the test header (`X-Gilliam-Release`) just before it.
        if 2 * http[g] > rules {
            return Some(format!(
                "routing group {n}'s internal load balancer would need {} rules ({} services, each with its test-header rule), over the quota of {rules} rules per load balancer",
                2 * http[g],
                http[g]
            ));
        }
        if 2 * routes[g] > rules {
            return Some(format!(
                "routing group {n}'s public load balancer would need {} rules ({} routes, each with its test-header rule), over the quota of {rules} rules per load balancer",
                2 * routes[g],
                routes[g]
            ));
        }
    }
    let lbs: u32 = (0..k as usize).map(|g| u32::from(http[g] > 0) + u32::from(routed[g] > 0)).sum();
    if lbs > stage.quotas.load_balancers {
        return Some(format!("the formation would need {lbs} load balancers, over the quota of {} per region", stage.quotas.load_balancers));
    }
    None
}

/// Places every HTTP service in a routing group (one public and one internal load balancer,
/// with their rules, in one stack) by a stable hash of its name.
fn layout_groups(svcs: &mut [Svc<'_>], stage: &Stage, live: u32, sink: &mut Sink<'_>) -> Option<u32> {
    let limit_hint = "raise the quota with AWS and set it under `quotas:` in the stage file, lower `keep_releases`, or split the formation";
    for s in svcs.iter().filter(|s| s.routed()) {
        let n = s.s.process().map_or(0, |p| p.routes.len() as u32);
        if 2 * n > stage.quotas.rules_per_load_balancer {
            sink.error_hint(
                s.s.pos,
                format!(
                    "service `{}` has {n} routes, which need {} rules with their test-header rules, over the quota of {} rules per load balancer",
                    s.s.name,
                    2 * n,
                    stage.quotas.rules_per_load_balancer
                ),
                limit_hint,
            );
            return None;
        }
    }
    let k = match stage.routing_groups {
        Some(k) => {
            if let Some(why) = overflow(svcs, k, stage, live) {
                let fit = (k..=k.saturating_mul(4).max(64)).find(|k| overflow(svcs, *k, stage, live).is_none());
                let hint = match fit {
                    Some(f) => format!("set `routing_groups: {f}` (changing it re-homes services: do it with one live release), or {limit_hint}"),
                    None => limit_hint.to_string(),
                };
                sink.error_hint(stage.root_pos, format!("with `routing_groups: {k}`, {why}"), hint);
                return None;
            }
            k
        }
        None => {
            let http = svcs.iter().filter(|s| s.s.is_http()).count() as u32;
            let max_k = http.max(1);
            match (1..=max_k).find(|k| overflow(svcs, *k, stage, live).is_none()) {
                Some(k) => k,
                None => {
                    let why = overflow(svcs, max_k, stage, live).unwrap_or_default();
                    sink.error_hint(stage.root_pos, format!("the formation does not fit: {why}"), limit_hint);
                    return None;
                }
            }
        }
    };
    for s in svcs.iter_mut().filter(|s| s.s.is_http()) {
        s.group = Some((fnv1a(&s.s.name) % u64::from(k)) as u32 + 1);
    }
    Some(k)
}

/// What one service adds to a release stack: (resources, outputs).
pub(crate) fn release_cost(s: &Svc<'_>) -> (usize, usize) {
    let tgs = usize::from(s.s.is_http()) + usize::from(s.routed());
    (2 + usize::from(s.scale.max > s.scale.min) + tgs, 1 + tgs)
}

/// Release-wide resources in every release stack (role, instance profile) and outputs.
pub(crate) const RELEASE_SHARED: (usize, usize) = (2, 1);
/// Headroom left in every stack for resources added by later features.
const HEADROOM: usize = 20;

/// Bytes a service adds to its release stack besides its userdata (measured on the fixtures
/// at about 7 KB for a routed service, rounded up).
pub(crate) const RELEASE_BYTES_PER_SERVICE: usize = 8_500;
/// Template bytes a release stack is packed to, below CloudFormation's 1,000,000.
pub(crate) const RELEASE_BYTES_BUDGET: usize = 900_000;

/// Splits the release's services into as few stacks as fit CloudFormation's limits on
/// resources, outputs and template size; `userdata_bytes` is each service's userdata as it
/// appears in the template (JSON-escaped).
pub(crate) fn layout_parts(svcs: &mut [Svc<'_>], userdata_bytes: &BTreeMap<String, usize>) -> u32 {
    let (mut res, mut outs, mut bytes, mut part) = (RELEASE_SHARED.0, RELEASE_SHARED.1, 0usize, 1u32);
    for s in svcs.iter_mut().filter(|s| s.s.process().is_some()) {
        let (r, o) = release_cost(s);
        let b = RELEASE_BYTES_PER_SERVICE + userdata_bytes.get(&s.s.name).copied().unwrap_or(0);
        if res + r > cfn::MAX_RESOURCES - HEADROOM || outs + o > cfn::MAX_OUTPUTS - HEADROOM || bytes + b > RELEASE_BYTES_BUDGET {
            part += 1;
            res = RELEASE_SHARED.0;
            outs = RELEASE_SHARED.1;
            bytes = 0;
        }
        res += r;
        outs += o;
        bytes += b;
        s.part = part;
    }
    part
}

pub(crate) fn template_limits(t: &Template, stack: &str, bytes: usize) -> Result<(), String> {
    t.check_limits(stack, bytes).map_err(|e| format!("internal error: {e}"))
}

//! Cross-file checks: what no input shows alone (secrets of another formation, logical-ID
//! and environment-name collisions, route collisions, subnets, etcd prerequisites, scale with
//! the stage's defaults), and the traffic shares against the layout.

use crate::app::{App, AuxType, Service, ServiceKind};
use crate::diag::{Diagnostic, Pos, Sink};
use crate::manifest as mf;
use crate::model::{Ctx, Inputs, Svc, TrafficShare, MAX_WEIGHT, TARGET_GROUPS_PER_FORWARD};
use crate::names;
use crate::release::Release;
use crate::stage::Stage;
use std::collections::{BTreeMap, BTreeSet};

/// The checked formation, not yet laid out, and the compiled release's own share.
#[derive(Debug)]
pub(crate) struct Checked<'a> {
    pub(crate) ctx: Ctx<'a>,
    pub(crate) current: TrafficShare,
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

/// The service's limits: what gilliam.yml says, else what its instance type offers less what
/// the agent and the OS keep; more than the instance has is refused where it is written.
fn limits(s: &Service, p: &crate::app::Process, instance_type: &str, sink: &mut Sink<'_>) -> Option<gilliam_contract::runtime::Limits> {
    let have = crate::sizes::instance(instance_type);
    let default = crate::sizes::default_limits(instance_type);
    if let (Some((mib, pos)), Some((_, total))) = (p.memory, have) {
        let room = total.saturating_sub(crate::sizes::RESERVED_MIB);
        if mib > room {
            sink.error_hint(
                pos,
                format!(
                    "service `{}`: `memory` {mib}M is more than {instance_type} leaves it ({room}M of {total}M: {}M is kept for the agent and the OS)",
                    s.name,
                    crate::sizes::RESERVED_MIB
                ),
                "lower `memory`, or give the service a larger `instance_type`",
            );
        }
    }
    if let (Some((millis, pos)), Some((vcpus, _))) = (p.cpus, have) {
        if millis > vcpus * 1000 {
            sink.error_hint(
                pos,
                format!("service `{}`: `cpus` {} is more than the {vcpus} vCPUs of {instance_type}", s.name, f64::from(millis) / 1000.0),
                "lower `cpus`, or give the service a larger `instance_type`",
            );
        }
    }
    let memory_mib = p.memory.map(|(m, _)| m).or(default.map(|(_, m)| m))?;
    let cpu_millis = p.cpus.map(|(c, _)| c).or(default.map(|(c, _)| c))?;
    Some(gilliam_contract::runtime::Limits { memory_mib, cpu_millis })
}

pub(crate) fn check<'a>(
    app: &'a App,
    release: &'a Release,
    stage: &'a Stage,
    inputs: &Inputs<'_>,
    traffic: Option<&[TrafficShare]>,
    out: &mut Vec<Diagnostic>,
) -> Option<Checked<'a>> {
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
            let limits = s.process().and_then(|p| limits(s, p, &instance_type, &mut sink));
            if let (ServiceKind::Process(p), crate::release::Artifact::Tarball { .. }) = (&s.kind, &release.artifact) {
                if p.script.is_none() {
                    sink.error_hint(
                        s.pos,
                        format!("service `{}` has no `script`: a tarball release runs a script of its own", s.name),
                        "give `script: bin/NAME` (an image release may leave it out to run the image's own command), or `type: postgres|redis|etcd` for an auxiliary service",
                    );
                }
            }
            svcs.push(Svc {
                s,
                id,
                env,
                scale: scale.unwrap_or(mf::Scale { min: 0, desired: 0, max: 0, cpu: 0 }),
                instance_type,
                group: None,
                part: 0,
                carried: false,
                limits,
            });
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
    let shares: Vec<TrafficShare> = match traffic {
        None => vec![current.clone()],
        Some(t) => t.to_vec(),
    };
    let mut delivery = crate::delivery::merge(&app.delivery, &stage.delivery);
    let own: Vec<&str> = svcs.iter().filter(|s| s.s.process().is_some()).map(|s| s.s.name.as_str()).collect();
    delivery.release_phase = crate::delivery::release_phase(&app.delivery, &stage.delivery, &own, (inputs.app.name, inputs.stage.name), out);
    if !out.is_empty() {
        return None;
    }
    Some(Checked {
        ctx: Ctx {
            stage,
            release,
            svcs,
            groups: 0,
            parts: 1,
            live,
            traffic: shares,
            standby: Vec::new(),
            workers: 1,
            deployed_rules: BTreeMap::new(),
            delivery,
        },
        current,
    })
}

pub(crate) fn traffic(shares: &[TrafficShare], groups: u32, live: u32, sink: &mut Sink<'_>) {
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

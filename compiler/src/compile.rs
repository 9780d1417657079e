//! The compile pipeline, in order: parse each input, check them against each other, lay the
//! formation out within AWS's quotas, then emit (runtime configs, whose sizes decide the
//! release stacks' split; userdata; templates; the manifest).

use crate::diag::{Diagnostic, Diagnostics, Sink};
use crate::emit::{manifest, out::Out, stacks, userdata};
use crate::model::{Compiled, Error, Inputs, Options, TrafficShare};
use crate::{check, layout, node};

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
    let mut diags: Vec<Diagnostic> = Vec::new();
    // 1. Parse: each input on its own, every problem at its line and column.
    let app = {
        let mut sink = Sink { file: inputs.app.name, out: &mut diags };
        node::parse_yaml_with(inputs.app.text, &mut sink, options.workers).and_then(|n| crate::app::decode(&n, &mut sink))
    };
    let release = {
        let mut sink = Sink { file: inputs.release.name, out: &mut diags };
        node::parse_json(inputs.release.text, &mut sink).and_then(|n| crate::release::decode(&n, &mut sink))
    };
    let stage = {
        let mut sink = Sink { file: inputs.stage.name, out: &mut diags };
        node::parse_yaml(inputs.stage.text, &mut sink).and_then(|n| crate::stage::decode(&n, &mut sink))
    };
    let (Some(app), Some(release), Some(stage)) = (app, release, stage) else {
        return Err(invalid(diags));
    };
    let carried = carried_services(&app, options);
    // 2. Check: the inputs against each other.
    let checked = check::check(&app, &release, &stage, inputs, options.traffic.as_deref(), &mut diags);
    // 3. Layout: services into routing groups within ELBv2's quotas; the traffic against them.
    let ctx = checked.and_then(|c| {
        let mut sink = Sink { file: inputs.stage.name, out: &mut diags };
        let mut ctx = c.ctx;
        for s in &carried {
            let (id, env) = (crate::names::logical(&s.name), crate::names::env_prefix(&s.name));
            let scale = gilliam_contract::manifest::Scale { min: 0, desired: 0, max: 0, cpu: 0 };
            ctx.svcs.push(crate::model::Svc { s, id, env, scale, instance_type: String::new(), group: None, part: 0, carried: true, limits: None });
        }
        ctx.groups = layout::groups(&mut ctx.svcs, &stage, ctx.live, &mut sink)?;
        for s in ctx.traffic.iter_mut().filter(|s| s.release == release.number) {
            s.internal = c.current.internal.clone();
            s.public = c.current.public.clone();
            s.ports = c.current.ports.clone();
            s.routing_groups = ctx.groups;
        }
        check::traffic(&ctx.traffic, ctx.groups, ctx.live, &mut sink);
        Some(ctx)
    });
    if !diags.is_empty() {
        return Err(invalid(diags));
    }
    let mut ctx = ctx.ok_or_else(|| Error::Internal("internal error: layout failed without a diagnostic".into()))?;
    ctx.workers = options.workers.max(1);
    ctx.standby = options.standby.clone();
    ctx.deployed_rules = options.deployed_rules.clone();
    // 4. Emit: runtime configs first, whose sizes split the services over release stacks;
    // then the templates, each release stack with its services' userdata, and the manifest.
    let mut out = Out { sink: options.sink.clone(), ..Out::default() };
    let configs = userdata::configs(&ctx, &mut out).map_err(Error::Internal)?;
    ctx.parts = layout::parts(&mut ctx.svcs, &configs.sizes);
    let userdata = stacks::templates(&ctx, &configs, &mut out).map_err(Error::Internal)?;
    manifest::finish(&ctx, inputs, out, &configs.discovery, userdata).map_err(Error::Internal)
}

/// The HTTP services of older releases (`options.carried`) that this release dropped and that
/// a release with traffic still has: routed until no release that has them carries weight. A
/// route this release gives to a service of its own stays with it. Newest release first; an
/// older gilliam.yml that no longer parses carries nothing.
fn carried_services(app: &crate::app::App, options: &Options) -> Vec<crate::app::Service> {
    let Some(traffic) = &options.traffic else { return Vec::new() };
    let own: std::collections::BTreeSet<&str> = app.services.iter().map(|s| s.name.as_str()).collect();
    let own_routes: std::collections::BTreeSet<(Option<String>, Option<String>)> =
        app.services.iter().filter_map(|s| s.process()).flat_map(|p| p.routes.iter().map(|r| (r.host.clone(), r.path.clone()))).collect();
    let mut older: Vec<&(u32, String)> = options.carried.iter().collect();
    older.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    let mut out: Vec<crate::app::Service> = Vec::new();
    for (_, text) in older {
        let mut scratch = Vec::new();
        let mut sink = Sink { file: "gilliam.yml", out: &mut scratch };
        let Some(old) = node::parse_yaml(text, &mut sink).and_then(|n| crate::app::decode(&n, &mut sink)) else { continue };
        for mut s in old.services.into_iter().filter(|s| s.is_http()) {
            if own.contains(s.name.as_str()) || out.iter().any(|c| c.name == s.name) {
                continue;
            }
            if !traffic.iter().any(|t| t.weight > 0 && t.internal.contains(&s.name)) {
                continue;
            }
            if let crate::app::ServiceKind::Process(p) = &mut s.kind {
                p.routes.retain(|r| !own_routes.contains(&(r.host.clone(), r.path.clone())));
            }
            out.push(s);
        }
    }
    out
}

fn invalid(out: Vec<Diagnostic>) -> Error {
    let mut d = Diagnostics(out);
    d.sort();
    Error::Invalid(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TrafficShare;
    use std::collections::BTreeSet;

    fn app(text: &str) -> crate::app::App {
        let mut out = Vec::new();
        let mut sink = Sink { file: "gilliam.yml", out: &mut out };
        node::parse_yaml(text, &mut sink).and_then(|n| crate::app::decode(&n, &mut sink)).expect("app")
    }

    fn share(release: u32, weight: u32, services: &[&str]) -> TrafficShare {
        let set: BTreeSet<String> = services.iter().map(|s| s.to_string()).collect();
        TrafficShare { release, weight, routing_groups: 1, internal: set.clone(), public: set, ports: Default::default() }
    }

    const OLD: &str = "api:\n  script: a\n  ports: [80]\n  routes: [/api/*]\nold:\n  script: o\n  ports: [80]\n  routes: [/old/*, /shared/*]\n";
    const NEW: &str = "api:\n  script: a\n  ports: [80]\n  routes: [/api/*, /shared/*]\n";

    #[test]
    fn a_dropped_service_is_carried_while_a_release_that_has_it_has_weight() {
        let carried = |weight: u32| {
            let options = Options {
                traffic: Some(vec![share(1, weight, &["api", "old"]), share(2, 100 - weight, &["api"])]),
                carried: vec![(1, OLD.to_string())],
                ..Options::default()
            };
            carried_services(&app(NEW), &options)
        };
        let c = carried(90);
        assert_eq!(c.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["old"]);
        // A route the new release gives to a service of its own stays with it.
        let routes: Vec<&str> = c[0].process().expect("process").routes.iter().map(|r| r.raw.as_str()).collect();
        assert_eq!(routes, ["/old/*"]);
        assert!(carried(0).is_empty(), "no release that has it serves: it goes");
    }
}

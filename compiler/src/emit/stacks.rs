//! Every template of a laid-out release, rendered in a fixed order: the formation stack, then
//! the release parts and routing groups (independent, so built on the workers allowed).

use super::common::lb_name;
use super::formation::formation_template;
use super::out::{render_stack, Out};
use super::release::release_template;
use super::routing::routing_template;
use super::userdata::{self, Configs, Placed};
use crate::manifest::{self as mf, StackRole};
use crate::model::Ctx;
use crate::names;
use std::collections::{BTreeMap, BTreeSet};

/// Renders every template into `out`; returns the manifest's userdata entries, by service.
/// Each release stack renders its services' userdata on its own worker and moves it into its
/// launch templates, so no script is held for the whole formation.
pub(crate) fn templates(ctx: &Ctx<'_>, configs: &Configs, out: &mut Out) -> Result<BTreeMap<String, Vec<mf::FileEntry>>, String> {
    let mut entries = BTreeMap::new();
    let members = userdata::member_scripts(ctx, out, &mut entries)?;
    let f = ctx.f().to_string();
    if ctx.stage.routing_groups.is_none() && ctx.groups > 1 {
        out.warnings.push(format!(
            "the formation was split over {} routing groups chosen automatically; pin `routing_groups: {}` in the stage file so that adding services never re-homes existing ones",
            ctx.groups, ctx.groups
        ));
    }
    let formation = formation_template(ctx, &members)?;
    let sink = out.sink.clone();
    let sink = sink.as_deref();
    out.push_stack(ctx, render_stack(names::formation_stack(&f), StackRole::Formation, &formation, Vec::new(), None, sink)?);
    let release_stacks: Vec<String> = (1..=ctx.parts).map(|p| ctx.release_stack(p)).collect();
    let mut lb_names = BTreeSet::new();
    for g in 1..=ctx.groups {
        for n in [lb_name(ctx, "public", g), lb_name(ctx, "internal", g)] {
            if !lb_names.insert(n.clone()) {
                return Err(format!("internal error: load balancer name {n} used twice"));
            }
        }
    }
    let jobs: Vec<(StackRole, u32)> = (1..=ctx.parts).map(|p| (StackRole::Release, p)).chain((1..=ctx.groups).map(|g| (StackRole::Routing, g))).collect();
    let rendered = crate::par::map(jobs, ctx.workers, |(role, k)| match role {
        StackRole::Release => {
            let (scripts, placed): (BTreeMap<String, String>, Vec<(String, Placed)>) =
                userdata::part_scripts(ctx, configs, k)?.into_iter().map(|(n, script, p)| ((n.clone(), script), (n, p))).unzip();
            let reads_runtime = configs.shared.is_some() || placed.iter().any(|(_, p)| p.upload.is_some());
            let t = release_template(ctx, k, scripts, reads_runtime)?;
            let r = render_stack(ctx.release_stack(k), role, &t, vec![names::formation_stack(&f)], None, sink)?;
            Ok(Some((r, placed)))
        }
        // CloudFormation refuses a template without resources: a routing group with no HTTP
        // service (a worker-only formation) has no stack; the materializer deletes one that
        // becomes empty.
        _ => routing_template(ctx, k).and_then(|t| {
            if t.resource_count() == 0 {
                return Ok(None);
            }
            let mut deps = vec![names::formation_stack(&f)];
            deps.extend(release_stacks.iter().cloned());
            render_stack(names::routing_stack(&f, k), role, &t, deps, Some(k), sink).map(|r| Some((r, Vec::new())))
        }),
    });
    for r in rendered {
        if let Some((r, placed)) = r? {
            out.push_stack(ctx, r);
            for (service, p) in placed {
                Placed::record(p, out, ctx, &mut entries, &service);
            }
        }
    }
    Ok(entries)
}

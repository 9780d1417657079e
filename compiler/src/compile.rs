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
        node::parse_yaml(inputs.app.text, &mut sink).and_then(|n| crate::app::decode(&n, &mut sink))
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
    // 2. Check: the inputs against each other.
    let checked = check::check(&app, &release, &stage, inputs, options.traffic.as_deref(), &mut diags);
    // 3. Layout: services into routing groups within ELBv2's quotas; the traffic against them.
    let ctx = checked.and_then(|c| {
        let mut sink = Sink { file: inputs.stage.name, out: &mut diags };
        let mut ctx = c.ctx;
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
    // then userdata, the templates and the manifest.
    let mut out = Out::default();
    let configs = userdata::configs(&ctx, &mut out).map_err(Error::Internal)?;
    ctx.parts = layout::parts(&mut ctx.svcs, &configs.sizes);
    let scripts = userdata::scripts(&ctx, &configs, &mut out).map_err(Error::Internal)?;
    stacks::templates(&ctx, &scripts, &mut out).map_err(Error::Internal)?;
    manifest::finish(&ctx, inputs, out, &configs.discovery, scripts.entries).map_err(Error::Internal)
}

fn invalid(out: Vec<Diagnostic>) -> Error {
    let mut d = Diagnostics(out);
    d.sort();
    Error::Invalid(d)
}

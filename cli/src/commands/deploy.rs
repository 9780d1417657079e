//! `gilliam deploy`: compile and converge a release under the formation's lock (building it first when no release file is given), then bake.

use super::build::build_release;
use super::common::*;
use crate::failure::Failure;
use crate::judging::Judging;
use gilliam_materializer::bundle::Bundle;
use gilliam_materializer::lock::{self, LockOptions};
use gilliam_materializer::strategy::Strategy;
use gilliam_materializer::{Converger, Options};
use gilliam_materializer::{Formation, Ops};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub files: ReleaseFiles,
    /// `manual` leaves traffic where it is.
    #[arg(long, default_value = "auto", value_parser = ["auto", "manual"])]
    pub traffic: String,
    /// Seconds between polls of stack status and target health.
    #[arg(long, default_value = "5")]
    pub poll: f64,
    /// How traffic moves to the new release: all-at-once, canary:PERCENT:WAIT (canary:10:5m)
    /// or linear:STEP:WAIT (linear:25:2m); gradual ones abort and put traffic back when the
    /// new release turns unhealthy.
    #[arg(long, default_value = "all-at-once", value_parser = parse_strategy)]
    pub strategy: Strategy,
    #[command(flatten)]
    pub judging: Judging,
    /// Deploy without checking the network first (VPC DNS, zones, routes to AWS): for a routing
    /// the preflight cannot read. Its problems are then CloudFormation's to find, later.
    #[arg(long)]
    pub skip_preflight: bool,
}

pub async fn exec(s: &Session<'_>, a: &Args) -> Result<(), Failure> {
    let Args { files, traffic, poll, strategy, judging, skip_preflight } = a;
    if traffic == "manual" && judging.bake.is_some() {
        return Err(Failure::usage("--bake watches the traffic a deploy moves; with --traffic manual there is none"));
    }
    if traffic == "manual" && *strategy != Strategy::AllAtOnce {
        return Err(Failure::usage("--strategy moves traffic; with --traffic manual there is none to move"));
    }
    let release = match &files.release {
        Some(r) => r.clone(),
        None => {
            let dir = files.app.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let out = files.out.with_file_name("release.json");
            let (n, path) =
                build_release(s.aws, s.formation, dir, &files.app, files.runtime_image.as_deref(), files.image.as_deref(), None, &out, s.say).await?;
            println!("built release {n}");
            path
        }
    };
    let opts = Options {
        traffic_auto: traffic == "auto",
        poll: Duration::from_secs_f64(poll.max(0.05)),
        strategy: *strategy,
        preflight: !skip_preflight,
        ..Options::default()
    };
    deploy_files(s.aws, s.formation, s.stage, &files.app, &release, &files.out, opts, judging, s.lock_opts, s.say).await?;
    Ok(())
}

/// Compiles and converges one release under the formation's lock: planned first without the
/// lock (nothing to do: no lock taken), then planned again and applied under it.
#[allow(clippy::too_many_arguments)]
pub async fn deploy_files<A: gilliam_materializer::aws::Aws>(
    aws: &A,
    formation: &Formation,
    stage: &Path,
    app: &Path,
    release: &Path,
    out: &Path,
    opts: Options,
    judging: &Judging,
    lock_opts: LockOptions,
    say: &(dyn Fn(&str) + Sync),
) -> Result<(), Failure> {
    compile_into(stage, app, release, out)?;
    let bundle = Bundle::load(out).map_err(|e| Failure { code: 1, message: e.0 })?;
    let opts = Options { judge: !judging.no_analysis, hooks: !judging.no_hooks, release_phase: !judging.no_release_phase, ..opts };
    let ops = Ops::new(aws, formation.clone(), say);
    // What a breach during the bake puts back: the traffic before this deploy.
    let restore = if judging.bake.is_some() && opts.traffic_auto { ops.weights_now().await.map_err(Failure::from)? } else { BTreeMap::new() };
    let poll = opts.poll;
    let traffic_auto = opts.traffic_auto;
    let c = Converger::new(aws, &bundle, opts, say);
    let what = format!("deploy release {}", bundle.manifest.release.number);
    let plan = c.plan().await.map_err(Failure::from)?;
    print!("{}", plan.render());
    if plan.is_empty() {
        println!("nothing to do: release {} of {} is deployed as compiled", bundle.manifest.release.number, formation.name);
        return Ok(());
    }
    let report = lock::with_lock(aws, formation, &what, lock_opts, say, crate::materialize_cmd::apply_fresh(&c, &plan)).await.map_err(Failure::from)?;
    let w: Vec<String> = report.traffic.iter().map(|(n, w)| format!("{n}={w}")).collect();
    println!("deployed release {} of {}; traffic {}", bundle.manifest.release.number, formation.name, w.join(" "));
    if traffic_auto {
        if let Some(line) = crate::judging::bake_after(&ops, judging, bundle.manifest.release.number, &restore, poll, lock_opts).await.map_err(Failure::from)? {
            println!("{line}");
        }
    }
    Ok(())
}

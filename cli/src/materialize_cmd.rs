//! `gilliam-materialize`: plan a converge of AWS to a compiled directory, then apply it; or
//! save the plan (`--plan-only --out`), or apply a saved one (`--plan`).

use crate::failure::Failure;
use clap::{Parser, ValueEnum};
use gilliam_materializer::bundle::Bundle;
use gilliam_materializer::lock::{self, LockOptions};
use gilliam_materializer::plan::Plan;
use gilliam_materializer::sdk::{connect_from_env, Endpoint};
use gilliam_materializer::strategy::Strategy;
use gilliam_materializer::Formation;
use gilliam_materializer::{Converger, Error, Options};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrafficMode {
    /// Move all traffic to the new release once its targets are healthy.
    Auto,
    /// Leave weights to the operator (`gilliam traffic`).
    Manual,
}

/// Converge AWS to a directory written by gilliam-compile: plan, then apply.
#[derive(Debug, Parser)]
#[command(
    name = "gilliam-materialize",
    version,
    about,
    after_help = "Exit codes: 0 success (or nothing to do), 1 invalid input (directory, plan file), 2 usage error, 3 internal error, 4 refused or failed in AWS (artifact, stale plan, immutable release, failed stack, timeout), 5 the traffic shift or bake was aborted (a breach, an unhealthy target, too little traffic to judge, a failed hook) and the traffic put back."
)]
pub struct Args {
    /// The output directory of gilliam-compile.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// Only plan: print it (and save it with --out); change nothing.
    #[arg(long)]
    pub plan_only: bool,
    /// With --plan-only: where to save the plan (versioned JSON).
    #[arg(long, value_name = "FILE", requires = "plan_only")]
    pub out: Option<PathBuf>,
    /// Apply this saved plan; refused if AWS changed since it was made.
    #[arg(long, value_name = "FILE", conflicts_with = "plan_only")]
    pub plan: Option<PathBuf>,
    /// What to do with traffic once the new release is healthy.
    #[arg(long, value_enum, default_value = "auto")]
    pub traffic: TrafficMode,
    /// Send every AWS call to this endpoint (a local emulator). Also AWS_ENDPOINT_URL.
    #[arg(long, value_name = "URL", env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// Region override; by default the formation's region from the manifest.
    #[arg(long)]
    pub region: Option<String>,
    /// Seconds between polls of stack status and target health.
    #[arg(long, default_value = "5", value_name = "SECONDS")]
    pub poll: f64,
    /// How traffic moves to a new release: all-at-once, canary:PERCENT:WAIT (canary:10:5m) or
    /// linear:STEP:WAIT (linear:25:2m); gradual ones abort and put traffic back when the new
    /// release turns unhealthy.
    #[arg(long, default_value = "all-at-once", value_parser = parse_strategy)]
    pub strategy: Strategy,
    #[command(flatten)]
    pub judging: crate::judging::Judging,
    /// Deploy without checking the network first (VPC DNS, zones, routes to AWS): for a routing
    /// the preflight cannot read. Its problems are then CloudFormation's to find, later.
    #[arg(long)]
    pub skip_preflight: bool,
    /// How long to wait for the formation's deploy lock when another deploy or traffic change
    /// holds it (0: refuse at once, naming the holder).
    #[arg(long, value_name = "SECONDS", default_value = "300")]
    pub lock_wait: f64,
    /// Also stream each resource event of the stacks being changed.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print no progress, only the plan and the result.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// How the plan is printed on stdout: `text`, or `json` (the saved plan's versioned JSON;
    /// every other line then goes to stderr, so that stdout is the plan alone).
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// The lock options of `--lock-wait SECONDS`.
pub fn lock_options(wait: f64) -> LockOptions {
    LockOptions {
        wait: Duration::from_secs_f64(wait.max(0.0)),
        poll: Duration::from_secs(2).min(Duration::from_secs_f64(wait.max(0.1))),
        ..LockOptions::default()
    }
}

/// Under the lock: plans again (another deploy may have run while this one waited), says so
/// when the plan changed, and applies the new one.
pub async fn apply_fresh<A: gilliam_materializer::aws::Aws>(c: &Converger<'_, A>, earlier: &Plan) -> Result<gilliam_materializer::converge::Report, Error> {
    let fresh = c.plan().await?;
    if fresh.actions != earlier.actions {
        // On stderr: stdout may be holding a JSON plan (`--output json`).
        eprintln!("AWS changed while waiting for the deploy lock; the plan now is:");
        eprint!("{}", fresh.render());
    }
    c.apply_unchecked(&fresh).await
}

fn opts_poll(args: &Args) -> Duration {
    Duration::from_secs_f64(args.poll.max(0.05))
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    s.parse()
}

pub async fn run(args: &Args) -> Result<(), Failure> {
    let bundle = Bundle::load(&args.from).map_err(|e| Failure::input(e.0))?;
    let saved = match &args.plan {
        Some(p) => Some(
            Plan::from_json(&std::fs::read(p).map_err(|e| Failure::input(format!("{}: {e}", p.display())))?)
                .map_err(|e| Failure::input(format!("{}: {e}", p.display())))?,
        ),
        None => None,
    };
    let region = args.region.clone().unwrap_or_else(|| bundle.manifest.formation.region.clone());
    let aws = connect_from_env(&Endpoint { url: args.endpoint_url.clone(), region: Some(region) }).await.map_err(Failure::input)?;
    let progress = crate::progress::Progress::new(args.verbose, args.quiet);
    let say = |line: &str| progress.say(line);
    if args.traffic == TrafficMode::Manual && args.strategy != Strategy::AllAtOnce {
        return Err(Failure::usage("--strategy moves traffic; with --traffic manual there is none to move"));
    }
    if args.traffic == TrafficMode::Manual && args.judging.bake.is_some() {
        return Err(Failure::usage("--bake watches the traffic a converge moves; with --traffic manual there is none"));
    }
    let opts = Options {
        traffic_auto: args.traffic == TrafficMode::Auto,
        poll: Duration::from_secs_f64(args.poll.max(0.05)),
        strategy: args.strategy,
        judge: !args.judging.no_analysis,
        hooks: !args.judging.no_hooks,
        release_phase: !args.judging.no_release_phase,
        preflight: !args.skip_preflight,
        ..Options::default()
    };
    let c = Converger::new(&aws, &bundle, opts, &say);
    let plan = match saved {
        Some(p) => p,
        None => c.plan().await.map_err(Failure::from)?,
    };
    let json = args.output == Output::Json;
    // In JSON mode stdout holds the plan alone; what a person reads goes to stderr.
    let tell = |line: &str| if json { eprintln!("{line}") } else { println!("{line}") };
    if json {
        println!("{}", String::from_utf8_lossy(&plan.to_json()).trim_end());
    } else {
        print!("{}", plan.render());
    }
    if args.plan_only {
        if let Some(out) = &args.out {
            std::fs::write(out, plan.to_json()).map_err(|e| Failure::input(format!("cannot write {}: {e}", out.display())))?;
            tell(&format!("plan saved to {}; apply it with --plan {}", out.display(), out.display()));
        }
        return Ok(());
    }
    // A saved plan is always checked against AWS first, even an empty one.
    if plan.is_empty() && args.plan.is_none() {
        tell("nothing to do: no AWS call that changes anything was made");
        return Ok(());
    }
    // The plan above was made without the lock (planning only reads, and an up-to-date formation
    // needs no lock at all); under the lock a saved plan is checked against AWS again, and an
    // unsaved one is made again, since another deploy may have run while this one waited.
    let lock_opts = lock_options(args.lock_wait);
    let what = format!("converge release {}", bundle.manifest.release.number);
    let saved = args.plan.is_some();
    let formation = Formation::from_manifest(&bundle.manifest);
    let ops = gilliam_materializer::ops::Ops::new(&aws, formation.clone(), &say);
    // What a breach during the bake puts back: the traffic before this converge.
    let restore = if args.judging.bake.is_some() { ops.weights_now().await.map_err(Failure::from)? } else { Default::default() };
    let report = lock::with_lock(&aws, &Formation::from_manifest(&bundle.manifest), &what, lock_opts, &say, async {
        if saved {
            c.apply(&plan).await
        } else {
            apply_fresh(&c, &plan).await
        }
    })
    .await
    .map_err(Failure::from)?;
    for line in &report.changes {
        tell(line);
    }
    let weights: Vec<String> = report.traffic.iter().map(|(n, w)| format!("{n}={w}")).collect();
    tell(&format!("release {} of formation {} converged; traffic {}", bundle.manifest.release.number, bundle.manifest.formation.name, weights.join(" ")));
    if args.traffic == TrafficMode::Auto {
        let bake = crate::judging::bake_after(&ops, &args.judging, bundle.manifest.release.number, &restore, opts_poll(args), lock_opts)
            .await
            .map_err(Failure::from)?;
        if let Some(line) = bake {
            tell(&line);
        }
    }
    if std::env::var_os("GILLIAM_FAULTS").is_some() {
        eprintln!("gilliam: GILLIAM_FAULTS: {} AWS calls, faults injected {:?}", aws.inner.calls(), aws.inner.injected());
    }
    Ok(())
}

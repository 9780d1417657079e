//! `gilliam`: the operator's CLI: the global flags, the verbs, and `run`, which builds the
//! session and dispatches to the verb's module in `commands/`. Every verb reads the formation
//! from AWS and the published state; nothing depends on a local state file.

use crate::commands::common::{Globals, Session};
use crate::commands::{
    build, deploy, docs, env, history, logs, outputs, plan, promote, ps, releases, retire, rollback, scale, status, traffic, unlock, warm, watch,
};
use crate::compile_cmd;
pub use crate::failure::Failure;
use clap::{Parser, Subcommand, ValueEnum};
use gilliam_materializer::sdk::{connect_from_env, Endpoint};
use gilliam_materializer::{Formation, Ops};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Parser)]
#[command(
    name = "gilliam",
    version,
    about = "Deploy releases, move traffic between them, roll back, scale and retire: the operator's CLI.",
    after_help = crate::failure::EXIT_CODES
)]
pub struct Args {
    /// The stage file: which formation, where.
    #[arg(long, value_name = "FILE", global = true, default_value = "stage.yml")]
    pub stage: PathBuf,
    /// Send every AWS call to this endpoint (a local emulator). Also AWS_ENDPOINT_URL.
    #[arg(long, value_name = "URL", env = "AWS_ENDPOINT_URL", global = true)]
    pub endpoint_url: Option<String>,
    /// Output of read verbs.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub output: Output,
    /// Also stream each resource event of the stacks being changed.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Print no progress, only results.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// How long to wait for the formation's deploy lock when another deploy or traffic change
    /// holds it (0: refuse at once, naming the holder).
    #[arg(long, value_name = "SECONDS", default_value = "300", global = true)]
    pub lock_wait: f64,
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Compile and materialize a release in one go.
    Deploy(deploy::Args),
    /// Package a source tree as a release: run the build command of gilliam.yml, pack the tree
    /// reproducibly, upload it (content-addressed, once), allocate the release number, write
    /// the release metadata.
    Build(build::Args),
    /// The config of a release (default the latest), secret values masked; `env set` and
    /// `env unset` make a new release with the changed config and deploy it.
    Env(env::Args),
    /// What a deploy of this release would do (changes nothing).
    Plan(plan::Args),
    /// The live releases: revision, creation, stack status, traffic, instances per service.
    Releases,
    /// The formation at a glance: routes, where traffic goes, health.
    Status,
    /// Set traffic: `traffic 12` sends all to release 12, `traffic 11=90 12=10` splits.
    Traffic(traffic::Args),
    /// Watch the bake window a deploy or traffic change recorded (`--bake`), from any machine:
    /// health and metrics until it ends; a breach puts the earlier traffic back (under the
    /// deploy lock, and only if no one changed the traffic since). With --for, open a window
    /// over the release serving now first.
    Watch(watch::Args),
    /// All traffic back to the previous release that is still running, or cold (warmed first:
    /// its groups back to size, routed, healthy; the time it took is printed).
    Rollback(rollback::Args),
    /// Bring a cold release back (routed at weight 0, groups to their recorded size, instances
    /// in service, targets healthy) without moving traffic; then `gilliam traffic` can reach it.
    Warm(warm::Args),
    /// Scale services of one release: `scale -r12 api=10 worker=2`.
    Scale(scale::Args),
    /// Remove a release that carries no traffic.
    Retire(retire::Args),
    /// Who did what and when.
    History,
    /// The services' output and their agents' lines, from CloudWatch Logs: `logs api -r 12
    /// --since 1h -f`.
    Logs(logs::Args),
    /// The instances of each release and service: zone, lifecycle, health in Auto Scaling and
    /// in each target group, uptime, and the agent's last line.
    Ps(ps::Args),
    /// A one-off process in a release (`run web -- bin/rails db:migrate`): on an instance
    /// launched from the service's launch template, with its environment, secrets and role;
    /// output streamed here, the command's exit status returned.
    Run(crate::commands::run::Args),
    /// The published outputs (the latest manifest).
    Outputs,
    /// Deploy a release of one stage to the next: the same artifact (by sha256, copied into the
    /// target's bucket and checked) and the same gilliam.yml and config, as a new release of
    /// the target formation. Refused when the artifact differs from the one the release was
    /// built from. `--stage` is not used.
    Promote(promote::Args),
    /// Shell completions for gilliam, gilliam-materialize or gilliam-compile, on stdout
    /// (`gilliam completions bash > /etc/bash_completion.d/gilliam`). Reads no stage file.
    Completions(docs::CompletionsArgs),
    /// Man pages of the three binaries and of each gilliam verb (`gilliam-deploy.1`), written
    /// into DIR (`gilliam man /usr/local/share/man/man1`). Reads no stage file.
    Man(docs::ManArgs),
    /// Break the formation's deploy lock (after a crashed deploy on another machine). Asks for
    /// the formation's name unless --yes.
    Unlock(unlock::Args),
}

pub async fn run(args: &Args) -> Result<(), Failure> {
    let gilliam = || <Args as clap::CommandFactory>::command();
    match &args.verb {
        Verb::Completions(a) => return docs::completions(a, &gilliam),
        Verb::Man(a) => return docs::man(a, &gilliam),
        Verb::Promote(a) => {
            let g = Globals { endpoint_url: args.endpoint_url.clone(), verbose: args.verbose, quiet: args.quiet, lock_wait: args.lock_wait };
            return promote::exec(&g, a).await;
        }
        _ => {}
    }
    let text = compile_cmd::read(&args.stage).map_err(|e| Failure::usage(e.to_string().trim_start_matches("gilliam-compile: ").to_string()))?;
    let name = args.stage.display().to_string();
    let stage =
        gilliam_compiler::parse_stage(gilliam_compiler::Source { name: &name, text: &text }).map_err(|d| Failure { code: 1, message: d.to_string() })?;
    let formation = Formation::from_stage(&stage);
    let aws = connect_from_env(&Endpoint { url: args.endpoint_url.clone(), region: Some(formation.region.clone()) }).await.map_err(Failure::usage)?;
    let progress = crate::progress::Progress::new(args.verbose, args.quiet);
    let say = |line: &str| progress.say(line);
    let s = Session {
        aws: &aws,
        formation: &formation,
        ops: Ops::new(&aws, formation.clone(), &say),
        say: &say,
        lock_opts: crate::materialize_cmd::lock_options(args.lock_wait),
        json: args.output == Output::Json,
        stage: &args.stage,
    };
    match &args.verb {
        Verb::Deploy(a) => deploy::exec(&s, a).await?,
        Verb::Build(a) => build::exec(&s, a).await?,
        Verb::Env(a) => env::exec(&s, a).await?,
        Verb::Plan(a) => plan::exec(&s, a).await?,
        Verb::Releases => releases::exec(&s).await?,
        Verb::Status => status::exec(&s).await?,
        Verb::Traffic(a) => traffic::exec(&s, a).await?,
        Verb::Watch(a) => watch::exec(&s, a).await?,
        Verb::Rollback(a) => rollback::exec(&s, a).await?,
        Verb::Warm(a) => warm::exec(&s, a).await?,
        Verb::Scale(a) => scale::exec(&s, a).await?,
        Verb::Retire(a) => retire::exec(&s, a).await?,
        Verb::History => history::exec(&s).await?,
        Verb::Logs(a) => logs::exec(&s, a).await?,
        Verb::Ps(a) => ps::exec(&s, a).await?,
        Verb::Run(a) => crate::commands::run::exec(&s, a).await?,
        Verb::Outputs => outputs::exec(&s).await?,
        Verb::Unlock(a) => unlock::exec(&s, a).await?,
        Verb::Completions(_) | Verb::Man(_) | Verb::Promote(_) => {}
    }
    if std::env::var_os("GILLIAM_FAULTS").is_some() {
        eprintln!("gilliam: GILLIAM_FAULTS: {} AWS calls, faults injected {:?}", aws.inner.calls(), aws.inner.injected());
    }
    Ok(())
}

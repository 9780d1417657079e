//! `gilliam`: the operator's CLI. Every verb reads the formation from AWS and the published
//! state; nothing depends on a local state file.

use crate::compile_cmd;
pub use crate::failure::Failure;
use crate::judging::Judging;
use clap::{Parser, Subcommand, ValueEnum};
use gilliam_materializer::bundle::Bundle;
use gilliam_materializer::lock::{self, LockOptions};
use gilliam_materializer::retry::retry;
use gilliam_materializer::sdk::{connect_from_env, Endpoint};
use gilliam_materializer::strategy::Strategy;
use gilliam_materializer::{Converger, Options};
use gilliam_materializer::{Formation, Ops, ShiftOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// How long a cold release may take to warm.
#[derive(Debug, Clone, clap::Args)]
pub struct Warming {
    /// Give up warming a cold release after this long (traffic is then left as it was).
    #[arg(long = "warm-timeout", value_name = "DURATION", value_parser = parse_duration, default_value = "15m")]
    warm_timeout: Duration,
    /// Seconds between looks at a warming release's instances and targets.
    #[arg(long = "warm-poll", default_value = "10")]
    warm_poll: f64,
}

impl Warming {
    fn options(&self) -> gilliam_materializer::ops::WarmOptions {
        gilliam_materializer::ops::WarmOptions { timeout: self.warm_timeout, poll: Duration::from_secs_f64(self.warm_poll.max(0.05)) }
    }
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Compile and materialize a release in one go.
    Deploy {
        #[command(flatten)]
        files: ReleaseFiles,
        /// `manual` leaves traffic where it is.
        #[arg(long, default_value = "auto", value_parser = ["auto", "manual"])]
        traffic: String,
        /// Seconds between polls of stack status and target health.
        #[arg(long, default_value = "5")]
        poll: f64,
        /// How traffic moves to the new release: all-at-once, canary:PERCENT:WAIT (canary:10:5m)
        /// or linear:STEP:WAIT (linear:25:2m); gradual ones abort and put traffic back when the
        /// new release turns unhealthy.
        #[arg(long, default_value = "all-at-once", value_parser = parse_strategy)]
        strategy: Strategy,
        #[command(flatten)]
        judging: Judging,
    },
    /// Package a source tree as a release: run the build command of gilliam.yml, pack the tree
    /// reproducibly, upload it (content-addressed, once), allocate the release number, write
    /// the release metadata.
    Build {
        /// The source tree (with gilliam.yml at its top).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The runtime image (AMI) of the release; default: the latest release's.
        #[arg(long, value_name = "AMI")]
        runtime_image: Option<String>,
        /// The revision to record; default: git's commit of the tree, else the artifact digest.
        #[arg(long)]
        revision: Option<String>,
        /// Where the release metadata goes.
        #[arg(long, value_name = "FILE", default_value = ".gilliam/release.json")]
        release_out: PathBuf,
    },
    /// The config of a release (default the latest), secret values masked; `env set` and
    /// `env unset` make a new release with the changed config and deploy it.
    Env {
        #[command(subcommand)]
        change: Option<EnvChange>,
        /// Show this release's config instead of the latest one's.
        #[arg(short = 'r', long = "release")]
        release: Option<u32>,
    },
    /// What a deploy of this release would do (changes nothing).
    Plan {
        #[command(flatten)]
        files: ReleaseFiles,
    },
    /// The live releases: revision, creation, stack status, traffic, instances per service.
    Releases,
    /// The formation at a glance: routes, where traffic goes, health.
    Status,
    /// Set traffic: `traffic 12` sends all to release 12, `traffic 11=90 12=10` splits.
    Traffic {
        #[arg(required = true, value_name = "RELEASE[=WEIGHT]")]
        weights: Vec<String>,
        /// all-at-once, canary:PERCENT:WAIT or linear:STEP:WAIT (health-watched, aborts on failure).
        #[arg(long, default_value = "all-at-once", value_parser = parse_strategy)]
        strategy: Strategy,
        /// Seconds between health polls during a gradual shift.
        #[arg(long, default_value = "5")]
        poll: f64,
        #[command(flatten)]
        judging: Judging,
    },
    /// Watch the bake window a deploy or traffic change recorded (`--bake`), from any machine:
    /// health and metrics until it ends; a breach puts the earlier traffic back (under the
    /// deploy lock, and only if no one changed the traffic since). With --for, open a window
    /// over the release serving now first.
    Watch {
        /// Open a bake window of this long over the newest release with traffic (a breach
        /// sends all traffic to the release before it).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        for_: Option<Duration>,
        /// Seconds between health polls.
        #[arg(long, default_value = "5")]
        poll: f64,
    },
    /// All traffic back to the previous release that is still running, or cold (warmed first:
    /// its groups back to size, routed, healthy; the time it took is printed).
    Rollback {
        #[command(flatten)]
        warming: Warming,
    },
    /// Bring a cold release back (routed at weight 0, groups to their recorded size, instances
    /// in service, targets healthy) without moving traffic; then `gilliam traffic` can reach it.
    Warm {
        release: u32,
        #[command(flatten)]
        warming: Warming,
    },
    /// Scale services of one release: `scale -r12 api=10 worker=2`.
    Scale {
        #[arg(short = 'r', long = "release", value_name = "RELEASE")]
        release: u32,
        #[arg(required = true, value_name = "SERVICE=COUNT")]
        counts: Vec<String>,
    },
    /// Remove a release that carries no traffic.
    Retire { release: u32 },
    /// Who did what and when.
    History,
    /// The published outputs (the latest manifest).
    Outputs,
    /// Deploy a release of one stage to the next: the same artifact (by sha256, copied into the
    /// target's bucket and checked) and the same gilliam.yml and config, as a new release of
    /// the target formation. Refused when the artifact differs from the one the release was
    /// built from. `--stage` is not used.
    Promote {
        /// The stage file of the formation the release comes from.
        #[arg(long, value_name = "STAGE_FILE")]
        from: PathBuf,
        /// The stage file of the formation it goes to.
        #[arg(long, value_name = "STAGE_FILE")]
        to: PathBuf,
        /// The release to promote (default: the source formation's latest published).
        release: Option<u32>,
        /// The runtime image in the target (AMIs are per region: needed when the regions differ).
        #[arg(long, value_name = "AMI")]
        runtime_image: Option<String>,
        /// Where the compiled files go.
        #[arg(long, default_value = ".gilliam/promote")]
        out: PathBuf,
        #[arg(long, default_value = "all-at-once", value_parser = parse_strategy)]
        strategy: Strategy,
        /// Seconds between polls of stack status and target health.
        #[arg(long, default_value = "5")]
        poll: f64,
        #[command(flatten)]
        judging: Judging,
    },
    /// Shell completions for gilliam, gilliam-materialize or gilliam-compile, on stdout
    /// (`gilliam completions bash > /etc/bash_completion.d/gilliam`). Reads no stage file.
    Completions {
        shell: clap_complete::Shell,
        /// Which binary the completions are for.
        #[arg(long = "for", default_value = "gilliam", value_parser = ["gilliam", "gilliam-materialize", "gilliam-compile"])]
        for_: String,
    },
    /// Man pages of the three binaries and of each gilliam verb (`gilliam-deploy.1`), written
    /// into DIR (`gilliam man /usr/local/share/man/man1`). Reads no stage file.
    Man { dir: PathBuf },
    /// Break the formation's deploy lock (after a crashed deploy on another machine). Asks for
    /// the formation's name unless --yes.
    Unlock {
        #[arg(long)]
        yes: bool,
    },
}

/// Compiles and converges one release under the formation's lock: planned first without the
/// lock (nothing to do: no lock taken), then planned again and applied under it.
#[allow(clippy::too_many_arguments)]
async fn deploy_files<A: gilliam_materializer::aws::Aws>(
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
    let opts = Options { judge: !judging.no_analysis, hooks: !judging.no_hooks, ..opts };
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

/// The published inputs of a release: (release metadata, gilliam.yml).
async fn published_inputs<A: gilliam_materializer::aws::Aws>(aws: &A, f: &Formation, release: u32) -> Result<(serde_json::Value, String), Failure> {
    let get = |name: &'static str| {
        let key = format!("{}releases/{release}/inputs/{name}", f.prefix);
        async move {
            let o = retry(&format!("read s3://{}/{key}", f.bucket), || aws.get_object(&f.bucket, &key)).await.map_err(Failure::from)?;
            o.map(|o| o.body).ok_or_else(|| Failure { code: 4, message: format!("s3://{}/{key} is missing: release {release} was not published", f.bucket) })
        }
    };
    let rel: serde_json::Value = serde_json::from_slice(&get("release.json").await?)
        .map_err(|e| Failure { code: 4, message: format!("release {release}'s published metadata is not JSON: {e}") })?;
    let app = String::from_utf8(get("gilliam.yml").await?)
        .map_err(|_| Failure { code: 4, message: format!("release {release}'s published gilliam.yml is not UTF-8") })?;
    Ok((rel, app))
}

/// `gilliam env set|unset`: a new release with the latest one's artifact, image and
/// services, and the changed config (secret values in a secret of the new release), deployed.
#[allow(clippy::too_many_arguments)]
async fn config_release<A: gilliam_materializer::aws::Aws>(
    aws: &A,
    formation: &Formation,
    stage: &Path,
    set: &BTreeMap<String, String>,
    secret: bool,
    unset: &[String],
    opts: Options,
    lock_opts: LockOptions,
    say: &(dyn Fn(&str) + Sync),
) -> Result<(), Failure> {
    let ops = Ops::new(aws, formation.clone(), say);
    let (m, _) = ops.outputs().await.map_err(Failure::from)?;
    let latest = m.release.number;
    let (mut rel, app) = published_inputs(aws, formation, latest).await?;
    let mut config = rel["config"].as_object().cloned().unwrap_or_default();
    for k in unset {
        if config.remove(k).is_none() {
            return Err(Failure { code: 1, message: format!("{k} is not set in release {latest}: nothing to unset") });
        }
    }
    for k in set.keys() {
        if !k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(usage(format!("bad config name {k:?}: letters, digits and _, not starting with a digit")));
        }
    }
    let what: Vec<String> = set.keys().map(|k| format!("{k}{}", if secret { " (secret)" } else { "" })).chain(unset.iter().map(|k| format!("-{k}"))).collect();
    let number = gilliam_materializer::state::allocate_release(aws, &formation.bucket, &formation.prefix, &formation.name, &format!("env {}", what.join(" ")))
        .await
        .map_err(Failure::from)?;
    if secret && !set.is_empty() {
        let name = format!("{}r{number}", gilliam_compiler::release::config_secret_prefix(&formation.name));
        let body = serde_json::to_string(set).map_err(|e| Failure { code: 3, message: e.to_string() })?;
        retry(&format!("store secret {name}"), || aws.put_secret(&name, &body, &formation.name)).await.map_err(Failure::from)?;
        for k in set.keys() {
            config.insert(k.clone(), serde_json::json!({ "secret": name }));
        }
    } else {
        for (k, v) in set {
            config.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
    }
    rel["number"] = serde_json::json!(number);
    rel["created"] = serde_json::json!(gilliam_materializer::clock::now());
    rel["config"] = serde_json::Value::Object(config);
    let dir = PathBuf::from(".gilliam/env");
    std::fs::create_dir_all(&dir).map_err(|e| Failure { code: 1, message: format!("{}: {e}", dir.display()) })?;
    let app_path = dir.join("gilliam.yml");
    std::fs::write(&app_path, app).map_err(|e| Failure { code: 1, message: format!("{}: {e}", app_path.display()) })?;
    let release_path = dir.join("release.json");
    crate::build_cmd::write_release(&release_path, &rel).map_err(|m| Failure { code: 1, message: m })?;
    println!("release {number}: release {latest}'s artifact with config {}", what.join(" "));
    deploy_files(aws, formation, stage, &app_path, &release_path, &dir.join("out"), opts, &Judging::default(), lock_opts, say).await
}

/// `gilliam build`: returns the release number and its metadata file.
#[allow(clippy::too_many_arguments)]
async fn build_release<A: gilliam_materializer::aws::Aws>(
    aws: &A,
    formation: &Formation,
    dir: &Path,
    app: &Path,
    runtime_image: Option<&str>,
    revision: Option<&str>,
    out: &Path,
    say: &(dyn Fn(&str) + Sync),
) -> Result<(u32, PathBuf), Failure> {
    use crate::build_cmd;
    let text = compile_cmd::read(app).map_err(|e| Failure { code: 1, message: e.to_string().trim_start_matches("gilliam-compile: ").to_string() })?;
    let name = app.display().to_string();
    let parsed = gilliam_compiler::parse_app(gilliam_compiler::Source { name: &name, text: &text }).map_err(|d| Failure { code: 1, message: d.to_string() })?;
    if let Some(cmd) = &parsed.build {
        say(&format!("build: {cmd}"));
        build_cmd::run_build_command(dir, cmd).map_err(|m| Failure { code: 1, message: m })?;
    }
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let packed = build_cmd::pack(dir, epoch).map_err(|m| Failure { code: 1, message: m })?;
    let previous = build_cmd::previous(aws, formation, say).await.map_err(Failure::from)?;
    let image = runtime_image
        .map(str::to_string)
        .or_else(|| previous.as_ref().and_then(|p| p["runtime_image"].as_str().map(str::to_string)))
        .ok_or_else(|| usage("no runtime image: pass --runtime-image ami-... (the first release needs one; see runtime-image/README.md)"))?;
    let uploaded = build_cmd::upload(aws, formation, &packed).await.map_err(Failure::from)?;
    let key = build_cmd::artifact_key(formation, &packed.sha256);
    say(&format!(
        "artifact s3://{}/{key}: {} entries, {} bytes, {}",
        formation.bucket,
        packed.entries,
        packed.gz.len(),
        if uploaded { "uploaded" } else { "already there" }
    ));
    let revision = revision.map(str::to_string).unwrap_or_else(|| build_cmd::revision(dir, &packed.sha256));
    let number = gilliam_materializer::state::allocate_release(aws, &formation.bucket, &formation.prefix, &formation.name, &format!("build of {revision}"))
        .await
        .map_err(Failure::from)?;
    let config = previous.as_ref().map(|p| p["config"].clone()).filter(|c| c.is_object()).unwrap_or_else(|| serde_json::json!({}));
    let release = serde_json::json!({
        "number": number,
        "artifact": { "url": format!("s3://{}/{key}", formation.bucket), "sha256": packed.sha256 },
        "runtime_image": image,
        "revision": revision,
        "created": gilliam_materializer::clock::now(),
        "config": config,
    });
    build_cmd::write_release(out, &release).map_err(|m| Failure { code: 1, message: m })?;
    Ok((number, out.to_path_buf()))
}

#[derive(Debug, Subcommand)]
pub enum EnvChange {
    /// Set config: `env set KEY=VALUE ...`; with --secret the values are kept in Secrets
    /// Manager and only their secret's name is in the release.
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        #[arg(long)]
        secret: bool,
        #[arg(long, default_value = "all-at-once", value_parser = parse_strategy)]
        strategy: Strategy,
        #[arg(long, default_value = "5")]
        poll: f64,
    },
    /// Remove config: `env unset KEY ...`.
    Unset {
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
        #[arg(long, default_value = "all-at-once", value_parser = parse_strategy)]
        strategy: Strategy,
        #[arg(long, default_value = "5")]
        poll: f64,
    },
}

/// Requests, 5xx rate and p99 as table cells (`-` where unknown).
fn metric_columns(m: Option<&gilliam_materializer::delivery::Sample>) -> (String, String, String) {
    match m {
        None => ("-".into(), "-".into(), "-".into()),
        Some(m) => (
            format!("{}", m.requests as u64),
            if m.requests > 0.0 { format!("{:.1}%", m.error_rate_percent()) } else { "-".into() },
            m.p99_ms.map_or("-".into(), |p| format!("{p:.0}ms")),
        ),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    gilliam_materializer::strategy::parse_duration(s)
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    s.parse()
}

/// The files a release is compiled from, and where the compiled output goes.
#[derive(Debug, clap::Args)]
pub struct ReleaseFiles {
    /// The application's services.
    #[arg(long, default_value = "gilliam.yml")]
    pub app: PathBuf,
    /// The release metadata (number, artifact, runtime image, revision, config). `deploy`
    /// without it builds a release from the tree `gilliam.yml` is in (as `gilliam build`).
    #[arg(long)]
    pub release: Option<PathBuf>,
    /// With no --release: the runtime image of the new release (default: the latest release's).
    #[arg(long, value_name = "AMI")]
    pub runtime_image: Option<String>,
    /// Where the compiled files go.
    #[arg(long, default_value = ".gilliam/out")]
    pub out: PathBuf,
}

fn usage(m: impl Into<String>) -> Failure {
    Failure::usage(m)
}

/// `12` is all traffic to 12; `11=90 12=10` a split.
pub fn parse_weights(args: &[String]) -> Result<BTreeMap<u32, u32>, Failure> {
    let mut out = BTreeMap::new();
    for a in args {
        let (n, w) = match a.split_once('=') {
            Some((n, w)) => (n, w.parse::<u32>().map_err(|_| usage(format!("bad weight in {a:?}: write RELEASE=WEIGHT with a whole number")))?),
            None if args.len() == 1 => (a.as_str(), 100),
            None => return Err(usage(format!("{a:?}: with several releases give each a weight, e.g. 11=90 12=10"))),
        };
        let n: u32 = n.parse().map_err(|_| usage(format!("bad release number in {a:?}")))?;
        if out.insert(n, w).is_some() {
            return Err(usage(format!("release {n} named twice")));
        }
    }
    Ok(out)
}

fn parse_counts(args: &[String]) -> Result<BTreeMap<String, u32>, Failure> {
    let mut out = BTreeMap::new();
    for a in args {
        let (s, n) = a.split_once('=').ok_or_else(|| usage(format!("{a:?}: write SERVICE=COUNT, e.g. api=10")))?;
        let n: u32 = n.parse().map_err(|_| usage(format!("bad count in {a:?}")))?;
        out.insert(s.to_string(), n);
    }
    Ok(out)
}

fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn compile_into(stage_path: &Path, app: &Path, release: &Path, out: &Path) -> Result<(), Failure> {
    compile_cmd::compile_to(app, release, stage_path, out).map(|_| ()).map_err(|e| Failure { code: e.exit_code(), message: e.message().to_string() })
}

/// The clap definition of one of the three binaries.
fn definition(binary: &str) -> clap::Command {
    use clap::CommandFactory;
    match binary {
        "gilliam-materialize" => crate::materialize_cmd::Args::command(),
        "gilliam-compile" => compile_cmd::Args::command(),
        _ => Args::command(),
    }
}

/// `gilliam completions` and `gilliam man`: generated from the clap definitions.
fn generate(verb: &Verb) -> Result<(), Failure> {
    let io = |path: &Path, e: std::io::Error| Failure { code: 2, message: format!("{}: {e}", path.display()) };
    match verb {
        Verb::Completions { shell, for_ } => {
            clap_complete::generate(*shell, &mut definition(for_), for_.as_str(), &mut std::io::stdout());
        }
        Verb::Man { dir } => {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            let mut pages = Vec::new();
            for binary in ["gilliam", "gilliam-materialize", "gilliam-compile"] {
                let cmd = definition(binary);
                if binary == "gilliam" {
                    for sub in cmd.get_subcommands() {
                        pages.push((format!("gilliam-{}", sub.get_name()), sub.clone().name(format!("gilliam-{}", sub.get_name()))));
                    }
                }
                pages.push((binary.to_string(), cmd));
            }
            for (name, cmd) in pages {
                let path = dir.join(format!("{name}.1"));
                let mut page = Vec::new();
                clap_mangen::Man::new(cmd).render(&mut page).map_err(|e| io(&path, e))?;
                std::fs::write(&path, page).map_err(|e| io(&path, e))?;
                println!("{}", path.display());
            }
        }
        _ => {}
    }
    Ok(())
}

fn read_stage(path: &Path) -> Result<gilliam_compiler::stage::Stage, Failure> {
    let text = compile_cmd::read(path).map_err(|e| usage(e.to_string().trim_start_matches("gilliam-compile: ").to_string()))?;
    let name = path.display().to_string();
    gilliam_compiler::parse_stage(gilliam_compiler::Source { name: &name, text: &text }).map_err(|d| Failure { code: 1, message: d.to_string() })
}

/// `gilliam promote`: release `release` of the formation `from` names, as a new release of the
/// formation `to` names, with the same artifact (by digest), gilliam.yml and config.
async fn promote(args: &Args) -> Result<(), Failure> {
    use gilliam_materializer::aws::Aws;
    let Verb::Promote { from, to, release, runtime_image, out, strategy, poll, judging } = &args.verb else { return Ok(()) };
    let (src, dst) = (read_stage(from)?, read_stage(to)?);
    let (sf, df) = (Formation::from_stage(&src), Formation::from_stage(&dst));
    if sf.name == df.name && sf.bucket == df.bucket && src.region == dst.region {
        return Err(usage("--from and --to name the same formation: promote goes from one stage to another"));
    }
    let progress = crate::progress::Progress::new(args.verbose, args.quiet);
    let say = |line: &str| progress.say(line);
    let a = connect_from_env(&Endpoint { url: args.endpoint_url.clone(), region: Some(sf.region.clone()) }).await.map_err(usage)?;
    let b = connect_from_env(&Endpoint { url: args.endpoint_url.clone(), region: Some(df.region.clone()) }).await.map_err(usage)?;
    let n = match release {
        Some(n) => *n,
        None => Ops::new(&a, sf.clone(), &say).outputs().await.map_err(Failure::from)?.0.release.number,
    };
    let (mut rel, app) = published_inputs(&a, &sf, n).await?;
    let sha = rel["artifact"]["sha256"].as_str().unwrap_or_default().to_string();
    let url = rel["artifact"]["url"].as_str().unwrap_or_default().to_string();
    if let Some((var, _)) = rel["config"].as_object().into_iter().flatten().find(|(_, v)| !v.is_string()) {
        return Err(Failure {
            code: 4,
            message: format!(
                "release {n} of {} keeps {var} in a secret of its own formation; set it in {} with `gilliam env set --secret` and promote a release without secret config",
                sf.name, df.name
            ),
        });
    }
    let image = match (runtime_image, src.region == dst.region) {
        (Some(i), _) => i.clone(),
        (None, true) => rel["runtime_image"].as_str().unwrap_or_default().to_string(),
        (None, false) => {
            return Err(usage(format!(
                "{} is in {} and {} in {}: AMIs are per region; copy the runtime image and pass --runtime-image ami-...",
                sf.name, src.region, df.name, dst.region
            )))
        }
    };
    // The artifact, by digest: read from where the release was built, checked, and copied into
    // the target's bucket at its content address unless it is there already.
    let (bucket, key) = url
        .strip_prefix("s3://")
        .and_then(|u| u.split_once('/'))
        .ok_or_else(|| Failure { code: 4, message: format!("release {n}'s artifact URL {url:?} is not s3://BUCKET/KEY") })?;
    let target_key = crate::build_cmd::artifact_key(&df, &sha);
    let there = retry(&format!("look for s3://{}/{target_key}", df.bucket), || b.head_object(&df.bucket, &target_key)).await.map_err(Failure::from)?;
    match there {
        Some(h) if h.sha256.as_deref() == Some(sha.as_str()) => say(&format!("artifact {sha} already in s3://{}/{target_key}", df.bucket)),
        Some(h) => {
            return Err(Failure {
                code: 4,
                message: format!(
                    "s3://{}/{target_key} holds another artifact (sha256 {}) than release {n} of {} was built from ({sha}): refused; remove the object and promote again",
                    df.bucket,
                    h.sha256.unwrap_or_else(|| "unrecorded".into()),
                    sf.name
                ),
            })
        }
        None => {
            let o = retry(&format!("read {url}"), || a.get_object(bucket, key))
                .await
                .map_err(Failure::from)?
                .ok_or_else(|| Failure { code: 4, message: format!("{url} is gone: release {n}'s artifact cannot be promoted") })?;
            let got = gilliam_materializer::sha256_hex(&o.body);
            if got != sha {
                return Err(Failure { code: 4, message: format!("{url} has sha256 {got}, not the {sha} release {n} was built from: refused") });
            }
            if !retry(&format!("look for bucket {}", df.bucket), || b.bucket_exists(&df.bucket)).await.map_err(Failure::from)? {
                retry(&format!("create bucket {}", df.bucket), || b.create_secure_bucket(&df.bucket, &df.region)).await.map_err(Failure::from)?;
            }
            let what = format!("copy the artifact to s3://{}/{target_key}", df.bucket);
            retry(&what, || b.put_object(&df.bucket, &target_key, o.body.clone(), gilliam_materializer::aws::PutCondition::Always))
                .await
                .map_err(Failure::from)?;
            say(&format!("artifact {sha} copied to s3://{}/{target_key}", df.bucket));
        }
    }
    let digest = gilliam_materializer::sha256_hex(format!("{}\n{app}", rel["config"]).as_bytes());
    let purpose = format!("promote release {n} of {}", sf.name);
    let number = gilliam_materializer::state::allocate_release(&b, &df.bucket, &df.prefix, &df.name, &purpose).await.map_err(Failure::from)?;
    rel["number"] = serde_json::json!(number);
    rel["artifact"]["url"] = serde_json::json!(format!("s3://{}/{target_key}", df.bucket));
    rel["runtime_image"] = serde_json::json!(image);
    std::fs::create_dir_all(out).map_err(|e| Failure { code: 1, message: format!("{}: {e}", out.display()) })?;
    let (app_path, release_path) = (out.join("gilliam.yml"), out.join("release.json"));
    std::fs::write(&app_path, &app).map_err(|e| Failure { code: 1, message: format!("{}: {e}", app_path.display()) })?;
    crate::build_cmd::write_release(&release_path, &rel).map_err(|m| Failure { code: 1, message: m })?;
    println!("release {number} of {}: release {n} of {} (artifact {sha}, config and gilliam.yml {})", df.name, sf.name, &digest[..16]);
    let lock_opts = crate::materialize_cmd::lock_options(args.lock_wait);
    let opts = Options { poll: Duration::from_secs_f64(poll.max(0.05)), strategy: *strategy, ..Options::default() };
    deploy_files(&b, &df, to, &app_path, &release_path, &out.join("out"), opts, judging, lock_opts, &say).await?;
    let line = format!("{purpose} as release {number} (artifact {sha}, config and gilliam.yml {})", &digest[..16]);
    gilliam_materializer::state::update(&b, &df.bucket, &df.prefix, &df.name, |st| st.history.push(gilliam_materializer::state::event(line.clone())))
        .await
        .map_err(Failure::from)?;
    Ok(())
}

pub async fn run(args: &Args) -> Result<(), Failure> {
    if matches!(args.verb, Verb::Completions { .. } | Verb::Man { .. }) {
        return generate(&args.verb);
    }
    if matches!(args.verb, Verb::Promote { .. }) {
        return promote(args).await;
    }
    let text = compile_cmd::read(&args.stage).map_err(|e| usage(e.to_string().trim_start_matches("gilliam-compile: ").to_string()))?;
    let name = args.stage.display().to_string();
    let stage =
        gilliam_compiler::parse_stage(gilliam_compiler::Source { name: &name, text: &text }).map_err(|d| Failure { code: 1, message: d.to_string() })?;
    let formation = Formation::from_stage(&stage);
    let aws = connect_from_env(&Endpoint { url: args.endpoint_url.clone(), region: Some(formation.region.clone()) }).await.map_err(usage)?;
    let progress = crate::progress::Progress::new(args.verbose, args.quiet);
    let say = |line: &str| progress.say(line);
    let ops = Ops::new(&aws, formation.clone(), &say);
    let lock_opts = crate::materialize_cmd::lock_options(args.lock_wait);
    let json = args.output == Output::Json;
    match &args.verb {
        Verb::Deploy { files, traffic, poll, strategy, judging } => {
            if traffic == "manual" && judging.bake.is_some() {
                return Err(usage("--bake watches the traffic a deploy moves; with --traffic manual there is none"));
            }
            if traffic == "manual" && *strategy != Strategy::AllAtOnce {
                return Err(usage("--strategy moves traffic; with --traffic manual there is none to move"));
            }
            let release = match &files.release {
                Some(r) => r.clone(),
                None => {
                    let dir = files.app.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                    let out = files.out.with_file_name("release.json");
                    let (n, path) = build_release(&aws, &formation, dir, &files.app, files.runtime_image.as_deref(), None, &out, &say).await?;
                    println!("built release {n}");
                    path
                }
            };
            let opts = Options { traffic_auto: traffic == "auto", poll: Duration::from_secs_f64(poll.max(0.05)), strategy: *strategy, ..Options::default() };
            deploy_files(&aws, &formation, &args.stage, &files.app, &release, &files.out, opts, judging, lock_opts, &say).await?;
        }
        Verb::Plan { files } => {
            let release = files.release.as_ref().ok_or_else(|| usage("plan needs --release FILE (gilliam build writes one)"))?;
            compile_into(&args.stage, &files.app, release, &files.out)?;
            let bundle = Bundle::load(&files.out).map_err(|e| Failure { code: 1, message: e.0 })?;
            let plan = Converger::new(&aws, &bundle, Options::default(), &say).plan().await.map_err(Failure::from)?;
            if json {
                print_json(&plan);
            } else {
                print!("{}", plan.render());
            }
        }
        Verb::Build { dir, runtime_image, revision, release_out } => {
            let app = dir.join("gilliam.yml");
            let (n, path) = build_release(&aws, &formation, dir, &app, runtime_image.as_deref(), revision.as_deref(), release_out, &say).await?;
            println!("release {n}: {}", path.display());
        }
        Verb::Env { change: None, release } => {
            let n = match release {
                Some(n) => *n,
                None => ops.outputs().await.map_err(Failure::from)?.0.release.number,
            };
            let (rel, _) = published_inputs(&aws, &formation, n).await?;
            let config = rel["config"].as_object().cloned().unwrap_or_default();
            if json {
                let shown: serde_json::Map<String, serde_json::Value> = config
                    .iter()
                    .map(|(k, v)| (k.clone(), if v.is_string() { v.clone() } else { serde_json::json!({ "secret": v["secret"], "value": "********" }) }))
                    .collect();
                print_json(&serde_json::json!({ "release": n, "config": shown }));
            } else {
                println!("release {n}:");
                for (k, v) in &config {
                    match v.as_str() {
                        Some(v) => println!("  {k}={v}"),
                        None => println!("  {k}=******** (secret, in {})", v["secret"].as_str().unwrap_or("?")),
                    }
                }
            }
        }
        Verb::Env { change: Some(change), .. } => {
            let (set, secret, unset, strategy, poll) = match change {
                EnvChange::Set { pairs, secret, strategy, poll } => {
                    let mut set = BTreeMap::new();
                    for p in pairs {
                        let (k, v) = p.split_once('=').ok_or_else(|| usage(format!("{p:?}: write KEY=VALUE")))?;
                        set.insert(k.to_string(), v.to_string());
                    }
                    (set, *secret, Vec::new(), *strategy, *poll)
                }
                EnvChange::Unset { keys, strategy, poll } => (BTreeMap::new(), false, keys.clone(), *strategy, *poll),
            };
            let opts = Options { poll: Duration::from_secs_f64(poll.max(0.05)), strategy, ..Options::default() };
            config_release(&aws, &formation, &args.stage, &set, secret, &unset, opts, lock_opts, &say).await?;
        }
        Verb::Releases => {
            let rows = ops.releases().await.map_err(Failure::from)?;
            if json {
                print_json(&rows);
            } else {
                println!(
                    "{:>7}  {:<12} {:<20} {:<16} {:>6}  {:>8} {:>6} {:>7}  services (in service/desired)",
                    "release", "revision", "created", "stack", "weight", "requests", "5xx", "p99"
                );
                for r in rows {
                    let svcs: Vec<String> = r.services.iter().map(|s| format!("{} {}/{}", s.service, s.in_service, s.desired)).collect();
                    let (req, err, p99) = metric_columns(r.metrics.as_ref());
                    println!(
                        "{:>7}  {:<12} {:<20} {:<16} {:>6}  {req:>8} {err:>6} {p99:>7}  {}",
                        r.release,
                        r.revision.chars().take(12).collect::<String>(),
                        r.created,
                        if r.cold { format!("{} cold", r.stack_status) } else { r.stack_status.clone() },
                        r.weight,
                        svcs.join(", ")
                    );
                }
                println!(
                    "(requests, 5xx rate and p99 target response time over the last {} minutes)",
                    gilliam_materializer::ops::METRICS_WINDOW.as_secs() / 60
                );
            }
        }
        Verb::Status => {
            let s = ops.status().await.map_err(Failure::from)?;
            if json {
                print_json(&s);
            } else {
                println!(
                    "formation {} (latest release {}){}",
                    s.formation,
                    s.latest_release,
                    s.public_url.as_ref().map(|u| format!(" at {u}")).unwrap_or_default()
                );
                let t: Vec<String> = s.traffic.iter().map(|(n, w)| format!("{n}={w}")).collect();
                println!("traffic: {}", t.join(" "));
                for r in &s.routes {
                    let w: Vec<String> = r.weights.iter().map(|(n, w)| format!("{n}={w}")).collect();
                    let to = r.rewrite.as_ref().map(|x| format!(" as {x}")).unwrap_or_default();
                    println!("  route {:<40} -> {:<16} {}{to}", r.route, r.service, w.join(" "));
                }
                for (k, v) in &s.internal_urls {
                    println!("  {k}={v}");
                }
                for r in &s.releases {
                    let svcs: Vec<String> = r.services.iter().map(|x| format!("{} {}/{}", x.service, x.in_service, x.desired)).collect();
                    let (req, err, p99) = metric_columns(r.metrics.as_ref());
                    println!(
                        "  release {} ({}, weight {}): {}; last 5 min: {req} requests, {err} 5xx, p99 {p99}",
                        r.release,
                        if r.cold { format!("{}, cold", r.stack_status) } else { r.stack_status.clone() },
                        r.weight,
                        svcs.join(", ")
                    );
                }
            }
        }
        Verb::Traffic { weights, strategy, poll, judging } => {
            let target = parse_weights(weights)?;
            let w: Vec<String> = target.iter().map(|(n, w)| format!("{n}={w}")).collect();
            let poll = Duration::from_secs_f64(poll.max(0.05));
            let shift = ShiftOptions {
                strategy: *strategy,
                poll,
                health_timeout: Options::default().health_timeout,
                judge: !judging.no_analysis,
                hooks: !judging.no_hooks,
            };
            let work = async {
                let (m, _) = ops.outputs().await?;
                ops.shift_on(&m, &target, &shift).await
            };
            let c = lock::with_lock(&aws, &formation, &format!("traffic {}", w.join(" ")), lock_opts, &say, work).await.map_err(Failure::from)?;
            let a: Vec<String> = c.after.iter().map(|(n, w)| format!("{n}={w}")).collect();
            println!("traffic {} ({} rule{} changed)", a.join(" "), c.writes, if c.writes == 1 { "" } else { "s" });
            // The release baked: the newest one that gained traffic.
            let gained = c.after.iter().filter(|(n, w)| **w > c.before.get(n).copied().unwrap_or(0)).map(|(n, _)| *n).max();
            if let Some(release) = gained {
                if let Some(line) = crate::judging::bake_after(&ops, judging, release, &c.before, poll, lock_opts).await.map_err(Failure::from)? {
                    println!("{line}");
                }
            } else if judging.bake.is_some() {
                println!("no release gained traffic: nothing to bake");
            }
        }
        Verb::Watch { for_, poll } => {
            let poll = Duration::from_secs_f64(poll.max(0.05));
            if let Some(d) = for_ {
                if ops.state().await.map_err(Failure::from)?.bake.is_some() {
                    return Err(usage("a bake window is already recorded: run `gilliam watch` without --for to watch it"));
                }
                let weights = ops.weights_now().await.map_err(Failure::from)?;
                let Some(&serving) = weights.iter().filter(|(_, w)| **w > 0).map(|(n, _)| n).max() else {
                    return Err(Failure { code: 4, message: "no release carries traffic: nothing to watch".into() });
                };
                let Some(&previous) = weights.keys().filter(|n| **n < serving).max() else {
                    return Err(Failure {
                        code: 4,
                        message: format!("release {serving} serves and no earlier release runs: a breach would have nowhere to go"),
                    });
                };
                ops.begin_bake(serving, &BTreeMap::from([(previous, 100)]), *d).await.map_err(Failure::from)?;
            }
            let outcome = ops.watch(poll, lock_opts).await.map_err(Failure::from)?;
            println!("{}", crate::judging::describe(&outcome));
        }
        Verb::Rollback { warming } => {
            let r = lock::with_lock(&aws, &formation, "rollback", lock_opts, &say, ops.rollback(&warming.options())).await.map_err(Failure::from)?;
            if let Some(w) = &r.warmed {
                println!("release {} was cold: warmed in {} ({} instance(s))", w.release, w.took(), w.instances);
            }
            let c = &r.change;
            println!("rolled back to release {} ({} rule{} changed)", r.release, c.writes, if c.writes == 1 { "" } else { "s" });
        }
        Verb::Warm { release, warming } => {
            let w = lock::with_lock(&aws, &formation, &format!("warm release {release}"), lock_opts, &say, ops.warm(*release, &warming.options()))
                .await
                .map_err(Failure::from)?;
            println!("release {} warmed in {} ({} instance(s) in service, targets healthy, weight 0)", w.release, w.took(), w.instances);
        }
        Verb::Scale { release, counts } => {
            let counts = parse_counts(counts)?;
            lock::with_lock(&aws, &formation, &format!("scale release {release}"), lock_opts, &say, ops.scale(*release, &counts))
                .await
                .map_err(Failure::from)?;
            let c: Vec<String> = counts.iter().map(|(s, n)| format!("{s}={n}")).collect();
            println!("release {release}: {}", c.join(" "));
        }
        Verb::Retire { release } => {
            lock::with_lock(&aws, &formation, &format!("retire release {release}"), lock_opts, &say, ops.retire(*release)).await.map_err(Failure::from)?;
            println!("retired release {release}");
        }
        Verb::History => {
            let h = ops.history().await.map_err(Failure::from)?;
            if json {
                print_json(&h);
            } else {
                for e in h {
                    println!("{}  {:<12} {}", e.at, e.actor, e.action);
                }
            }
        }
        Verb::Outputs => {
            let (_, bytes) = ops.outputs().await.map_err(Failure::from)?;
            print!("{}", String::from_utf8_lossy(&bytes));
        }
        Verb::Completions { .. } | Verb::Man { .. } => generate(&args.verb)?,
        Verb::Promote { .. } => promote(args).await?,
        Verb::Unlock { yes } => {
            let Some((held, _)) = lock::read(&aws, &formation).await.map_err(Failure::from)? else {
                println!("formation {} has no deploy lock", formation.name);
                return Ok(());
            };
            if held.released {
                println!("formation {}'s deploy lock is free (last: {})", formation.name, held.describe());
                return Ok(());
            }
            println!("formation {} is locked by {}", formation.name, held.describe());
            if !*yes {
                use std::io::{BufRead, IsTerminal, Write};
                if !std::io::stdin().is_terminal() {
                    return Err(usage("breaking a lock needs confirmation: run it on a terminal, or pass --yes"));
                }
                print!("breaking it lets another deploy start while that one may still run; type the formation's name to break it: ");
                let _ = std::io::stdout().flush();
                let mut answer = String::new();
                let _ = std::io::stdin().lock().read_line(&mut answer);
                if answer.trim() != formation.name {
                    return Err(Failure { code: 4, message: "not confirmed; the lock is left as it was".into() });
                }
            }
            lock::break_lock(&aws, &formation).await.map_err(Failure::from)?;
            println!("lock broken; history keeps what was done");
            let _ = gilliam_materializer::state::update(&aws, &formation.bucket, &formation.prefix, &formation.name, |st| {
                st.history.push(gilliam_materializer::state::event(format!("unlock (broke the lock of {})", held.describe())));
            })
            .await;
        }
    }
    if std::env::var_os("GILLIAM_FAULTS").is_some() {
        eprintln!("gilliam: GILLIAM_FAULTS: {} AWS calls, faults injected {:?}", aws.calls(), aws.injected());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(parse_weights(&s(&["12"])).expect("ok"), BTreeMap::from([(12, 100)]));
        assert_eq!(parse_weights(&s(&["11=90", "12=10"])).expect("ok"), BTreeMap::from([(11, 90), (12, 10)]));
        assert!(parse_weights(&s(&["11", "12"])).is_err());
        assert!(parse_weights(&s(&["x=1"])).is_err());
        assert!(parse_weights(&s(&["1=1", "1=2"])).is_err());
        assert_eq!(parse_counts(&s(&["api=10", "worker=2"])).expect("ok").len(), 2);
        assert!(parse_counts(&s(&["api"])).is_err());
    }
}

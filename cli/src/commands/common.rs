//! What the commands share: the session (client, formation, operator handle, progress, lock
//! options, output format), the global flags a command that needs its own clients reads, the
//! argument types and parsers several commands take, and small printing helpers.

use crate::compile_cmd;
use crate::failure::Failure;
use gilliam_materializer::lock::LockOptions;
use gilliam_materializer::strategy::Strategy;
use gilliam_materializer::{Formation, Ops};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The AWS client every command talks through (the SDK, behind the fault injector).
pub use gilliam_materializer::sdk::Client;

/// One run of `gilliam` on one formation.
pub struct Session<'a> {
    pub aws: &'a Client,
    pub formation: &'a Formation,
    pub ops: Ops<'a, Client>,
    pub say: &'a (dyn Fn(&str) + Sync),
    pub lock_opts: LockOptions,
    /// `--output json`.
    pub json: bool,
    /// The stage file.
    pub stage: &'a Path,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("formation", &self.formation).field("json", &self.json).finish()
    }
}

/// The global flags, for a command that opens its own clients (`promote`).
#[derive(Debug, Clone)]
pub struct Globals {
    pub endpoint_url: Option<String>,
    pub verbose: bool,
    pub quiet: bool,
    pub lock_wait: f64,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    gilliam_materializer::strategy::parse_duration(s)
}

pub fn parse_strategy(s: &str) -> Result<Strategy, String> {
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
    /// With no --release: the release is this container image (REGISTRY/REPOSITORY:TAG, its
    /// tag resolved to a digest in ECR, or @sha256:DIGEST), not a tarball of the tree.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Where the compiled files go.
    #[arg(long, default_value = ".gilliam/out")]
    pub out: PathBuf,
}

/// How long a cold release may take to warm.
#[derive(Debug, Clone, clap::Args)]
pub struct Warming {
    /// Give up warming a cold release after this long (traffic is then left as it was).
    #[arg(long = "warm-timeout", value_name = "DURATION", value_parser = parse_duration, default_value = "15m")]
    pub warm_timeout: Duration,
    /// Seconds between looks at a warming release's instances and targets.
    #[arg(long = "warm-poll", default_value = "10")]
    pub warm_poll: f64,
}

impl Warming {
    pub fn options(&self) -> gilliam_materializer::ops::WarmOptions {
        gilliam_materializer::ops::WarmOptions { timeout: self.warm_timeout, poll: Duration::from_secs_f64(self.warm_poll.max(0.05)) }
    }
}

/// Requests, 5xx rate and p99 as table cells (`-` where unknown).
pub fn metric_columns(m: Option<&gilliam_materializer::delivery::Sample>) -> (String, String, String) {
    match m {
        None => ("-".into(), "-".into(), "-".into()),
        Some(m) => (
            format!("{}", m.requests as u64),
            if m.requests > 0.0 { format!("{:.1}%", m.error_rate_percent()) } else { "-".into() },
            m.p99_ms.map_or("-".into(), |p| format!("{p:.0}ms")),
        ),
    }
}

pub fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub fn compile_into(stage_path: &Path, app: &Path, release: &Path, out: &Path) -> Result<(), Failure> {
    compile_cmd::compile_to(app, release, stage_path, out, false).map(|_| ()).map_err(|e| Failure { code: e.exit_code(), message: e.message().to_string() })
}

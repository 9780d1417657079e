//! `gilliam run [-r N] SERVICE -- CMD...`: a one-off process in a release's own artifact,
//! environment, network and role, on an instance launched for it from the service's launch
//! template; its output streamed here (stdout to stdout, stderr to stderr), its exit status
//! gilliam's. Not interactive: the instance has no terminal for this one (see `RUN_HELP`).

use super::common::*;
use crate::failure::Failure;
use std::io::Write;
use std::time::Duration;

/// What the command's help says after its options.
pub const RUN_HELP: &str = "Exit status: the command's own (128 + N when signal N ended it); 124 when it was killed at --timeout; \
125 when it did not run to its end (the release could not boot on the instance, the instance ended without reporting); \
gilliam's own codes (1-4) when no instance was launched.\n\
The instance terminates itself when the command ends, at --timeout, or (whatever happens to gilliam or its agent) 10 minutes later.\n\
Not interactive: stdin is not connected and there is no terminal, so a console (`rails console`, `psql`) does not work here; \
that needs a session into an instance of the release (SSM Session Manager), which gilliam does not provide.";

#[derive(Debug, clap::Args)]
#[command(after_help = RUN_HELP)]
pub struct Args {
    /// The release to run in (default: the newest carrying traffic).
    #[arg(short = 'r', long, value_name = "N")]
    pub release: Option<u32>,
    /// Longest the command may run, from its start on the instance (30s, 10m, 2h).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How often the command's output is read.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub poll: Duration,
    /// The service whose launch template, environment, secrets and role the command gets.
    pub service: String,
    /// The program and its arguments, after `--`: `gilliam run web -- bin/rails db:migrate`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// The deadline the agent enforces: whole seconds, at least one, within a u32.
fn checked_timeout(t: Duration) -> Result<Duration, Failure> {
    if t < Duration::from_secs(1) || t > Duration::from_secs(86_400) {
        return Err(Failure::usage(format!("--timeout {t:?}: give between 1s and 24h")));
    }
    Ok(Duration::from_secs(t.as_secs()))
}

pub async fn exec(s: &Session<'_>, a: &Args) -> Result<(), Failure> {
    let timeout = checked_timeout(a.timeout)?;
    if a.command.first().is_none_or(|c| c.trim().is_empty()) {
        return Err(Failure::usage("give the command after `--`: gilliam run web -- bin/rails db:migrate"));
    }
    let json = s.json;
    let say = s.say;
    let out = move |source: &str, line: &str| {
        if json {
            println!("{}", serde_json::json!({ "source": source, "message": line }));
            return;
        }
        match source {
            "stdout" => {
                let mut o = std::io::stdout().lock();
                let _ = writeln!(o, "{line}");
                let _ = o.flush();
            }
            "stderr" => eprintln!("{line}"),
            _ => say(&format!("[agent] {line}")),
        }
    };
    let outcome = s.ops.run_task(a.release, &a.service, &a.command, timeout, a.poll.max(Duration::from_millis(50)), &out).await.map_err(Failure::from)?;
    if json {
        println!("{}", serde_json::json!({ "instance": outcome.instance, "exit": outcome.exit, "reason": outcome.reason }));
    }
    let what = format!("`{}` on {}", a.command.join(" "), outcome.instance);
    let code = match outcome.exit {
        Some(0) => return Ok(()),
        Some(code) => u8::try_from(code).unwrap_or(u8::MAX),
        None if outcome.timed_out => 124,
        None => 125,
    };
    Err(Failure::new(code, format!("{what}: {}", outcome.describe())))
}

//! Runs the service's script and keeps it running: restarted when it exits, after a delay that
//! doubles with each quick failure (up to a ceiling) and starts over once a run lasted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Spec {
    /// The release's `script` (a path inside `dir`, with optional arguments, split on spaces).
    pub script: String,
    /// The unpacked release.
    pub dir: PathBuf,
    /// The whole environment of the process (nothing is inherited).
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// A run that lasts this long resets the delay.
    pub stable: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { first: Duration::from_secs(1), max: Duration::from_secs(60), stable: Duration::from_secs(30) }
    }
}

/// One start of the script.
pub fn start(spec: &Spec) -> std::io::Result<Child> {
    let mut parts = spec.script.split_whitespace();
    let program = parts.next().ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty script"))?;
    let path = spec.dir.join(program);
    Command::new(path).args(parts).current_dir(&spec.dir).env_clear().envs(&spec.env).stdin(Stdio::null()).spawn()
}

/// What happened to each run, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub status: Option<ExitStatus>,
    /// How long the agent waited before starting the next run.
    pub then_waited: Duration,
}

/// Starts the script and restarts it whenever it exits, until `stop` is set (then the running
/// process is killed) or `max_runs` starts were made. Returns the runs that ended.
pub fn supervise(spec: &Spec, backoff: Backoff, stop: &AtomicBool, max_runs: Option<usize>, log: &dyn Fn(&str)) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut delay = backoff.first;
    let mut started = 0;
    while !stop.load(Ordering::SeqCst) && max_runs.is_none_or(|m| started < m) {
        started += 1;
        let began = Instant::now();
        let status = match start(spec) {
            Ok(mut child) => loop {
                if stop.load(Ordering::SeqCst) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return runs;
                }
                match child.try_wait() {
                    Ok(Some(s)) => break Some(s),
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    Err(e) => {
                        log(&format!("cannot watch {}: {e}", spec.script));
                        break None;
                    }
                }
            },
            Err(e) => {
                log(&format!("cannot start {}: {e}", spec.script));
                None
            }
        };
        if began.elapsed() >= backoff.stable {
            delay = backoff.first;
        }
        log(&format!("{} exited ({}); restarting in {delay:?}", spec.script, status.map_or("did not start".into(), |s| s.to_string())));
        runs.push(Run { status, then_waited: delay });
        let until = Instant::now() + delay;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        delay = (delay * 2).min(backoff.max);
    }
    runs
}

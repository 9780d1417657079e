//! Runs the service's script and keeps it running: restarted when it exits, after a delay that
//! doubles with each quick failure (up to a ceiling) and starts over once a run lasted. The
//! process gets exactly the environment given, optionally another user's identity, and its
//! output is handed line by line to a sink; a stop sends SIGTERM, then SIGKILL after a grace.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a line of the service's output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A function that takes one line of output.
pub type Sink = dyn Fn(Stream, &str) + Send + Sync;

/// Receives the service's output, one line at a time (without its newline).
#[derive(Clone)]
pub struct Output(pub Arc<Sink>);

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Output(..)")
    }
}

/// The identity the process runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// The release's `script` (a path inside `dir`, or an absolute one, with optional arguments,
    /// split on spaces).
    pub script: String,
    /// A one-off command's program and arguments, run instead of `script` when not empty: a
    /// program with a `/` is found from `dir`, one without on the environment's `PATH`.
    pub argv: Vec<String>,
    /// The unpacked release, and the working directory.
    pub dir: PathBuf,
    /// The whole environment of the process (nothing is inherited).
    pub env: BTreeMap<String, String>,
    /// Run as this user and group (supplementary groups dropped); `None`: as the agent.
    pub user: Option<Ids>,
    /// Where output lines go; `None`: inherited from the agent.
    pub output: Option<Output>,
    /// How long a stopped process has between SIGTERM and SIGKILL (zero: SIGKILL at once).
    pub stop_grace: Duration,
    /// The cgroup (memory and CPU limits) each start of the process joins.
    pub cgroup: Option<Arc<crate::cgroup::Cgroup>>,
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

/// What the supervisor is doing, readable from other threads.
#[derive(Debug, Default)]
pub struct Watch {
    /// The running process's pid, 0 when none.
    pub pid: AtomicU32,
    /// How many times the process was started.
    pub starts: AtomicUsize,
}

/// One start of the script.
pub fn start(spec: &Spec) -> std::io::Result<Child> {
    let empty = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty script");
    let mut cmd = if let Some((program, args)) = spec.argv.split_first() {
        // With the environment's PATH (std searches the child's PATH once it is set).
        let mut c = if program.contains('/') { Command::new(spec.dir.join(program)) } else { Command::new(program) };
        c.args(args);
        c
    } else {
        let mut parts = spec.script.split_whitespace();
        let mut c = Command::new(spec.dir.join(parts.next().ok_or_else(empty)?));
        c.args(parts);
        c
    };
    cmd.current_dir(&spec.dir).env_clear().envs(&spec.env).stdin(Stdio::null());
    if let Some(ids) = spec.user {
        // std drops supplementary groups when a process started by root changes its uid.
        cmd.gid(ids.gid).uid(ids.uid);
    }
    if spec.output.is_some() {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    cmd.spawn()
}

/// Hands every line from `r` to the sink, on its own thread; long lines are cut at 64 KiB.
fn pump(r: impl Read + Send + 'static, stream: Stream, out: Output) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut r).take(64 * 1024).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    (out.0)(stream, text.trim_end_matches(['\n', '\r']));
                }
            }
        }
    })
}

/// Ends a process: SIGTERM, then SIGKILL if it is still there after `grace`.
pub fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if !grace.is_zero() {
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.kill();
    child.wait().ok()
}

/// What happened to each run, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub status: Option<ExitStatus>,
    /// How long the agent waited before starting the next run.
    pub then_waited: Duration,
}

/// What the supervisor keeps running: the release's script as a process, or its image as a
/// container (`crate::container`).
pub trait Unit: Send + Sync {
    /// For the log: the script, the image.
    fn describe(&self) -> String;
    /// One start.
    fn launch(&self) -> std::io::Result<Box<dyn Running>>;
    /// How long a stop waits between SIGTERM and SIGKILL.
    fn stop_grace(&self) -> Duration;
}

/// One started run of a unit.
pub trait Running: Send {
    /// Its process id on this host (0 when it has none).
    fn pid(&self) -> u32;
    /// `Some` once it has exited.
    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>>;
    /// How often the supervisor asks `try_wait` (each ask of a container is an API call).
    fn poll_interval(&self) -> Duration {
        Duration::from_millis(20)
    }
    /// SIGTERM, then SIGKILL after `grace`; its status, when known.
    fn terminate(&mut self, grace: Duration) -> Option<ExitStatus>;
    /// After it ended: the last of its output handed on.
    fn finish(&mut self) {}
}

/// A started process and the threads handing its output on.
struct ProcessRun {
    child: Child,
    pumps: Vec<std::thread::JoinHandle<()>>,
}

impl Running for ProcessRun {
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }
    fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        terminate(&mut self.child, grace)
    }
    fn finish(&mut self) {
        for p in self.pumps.drain(..) {
            let _ = p.join();
        }
    }
}

impl Unit for Spec {
    fn describe(&self) -> String {
        if self.argv.is_empty() {
            self.script.clone()
        } else {
            self.argv.join(" ")
        }
    }
    fn launch(&self) -> std::io::Result<Box<dyn Running>> {
        let mut child = start(self)?;
        if let Some(cg) = &self.cgroup {
            // Joined at once: the script has had no time to start anything of its own yet.
            if let Err(e) = cg.join(child.id()) {
                let _ = terminate(&mut child, Duration::ZERO);
                return Err(std::io::Error::other(format!("cannot put the process in its cgroup: {e}")));
            }
        }
        let mut pumps = Vec::new();
        if let Some(out) = &self.output {
            if let Some(o) = child.stdout.take() {
                pumps.push(pump(o, Stream::Stdout, out.clone()));
            }
            if let Some(e) = child.stderr.take() {
                pumps.push(pump(e, Stream::Stderr, out.clone()));
            }
        }
        Ok(Box::new(ProcessRun { child, pumps }))
    }
    fn stop_grace(&self) -> Duration {
        self.stop_grace
    }
}

/// Starts the script and restarts it whenever it exits, until `stop` is set (then the running
/// process is terminated) or `max_runs` starts were made. Returns the runs that ended.
pub fn supervise(spec: &Spec, backoff: Backoff, stop: &AtomicBool, max_runs: Option<usize>, log: &dyn Fn(&str)) -> Vec<Run> {
    supervise_watched(spec, backoff, stop, max_runs, log, &Watch::default())
}

/// `supervise` of any unit, publishing the pid and the number of starts in `watch`.
pub fn supervise_watched(unit: &dyn Unit, backoff: Backoff, stop: &AtomicBool, max_runs: Option<usize>, log: &dyn Fn(&str), watch: &Watch) -> Vec<Run> {
    let mut runs = Vec::new();
    let mut delay = backoff.first;
    let mut started = 0;
    let what = unit.describe();
    while !stop.load(Ordering::SeqCst) && max_runs.is_none_or(|m| started < m) {
        started += 1;
        let began = Instant::now();
        let status = match unit.launch() {
            Ok(mut run) => {
                watch.pid.store(run.pid().max(1), Ordering::SeqCst);
                watch.starts.fetch_add(1, Ordering::SeqCst);
                let status = loop {
                    if stop.load(Ordering::SeqCst) {
                        let status = run.terminate(unit.stop_grace());
                        watch.pid.store(0, Ordering::SeqCst);
                        run.finish();
                        log(&format!("{what} stopped ({})", status.map_or("gone".into(), |s| s.to_string())));
                        return runs;
                    }
                    match run.try_wait() {
                        Ok(Some(s)) => break Some(s),
                        Ok(None) => std::thread::sleep(run.poll_interval()),
                        Err(e) => {
                            log(&format!("cannot watch {what}: {e}"));
                            break None;
                        }
                    }
                };
                watch.pid.store(0, Ordering::SeqCst);
                run.finish();
                status
            }
            Err(e) => {
                log(&format!("cannot start {what}: {e}"));
                None
            }
        };
        if began.elapsed() >= backoff.stable {
            delay = backoff.first;
        }
        log(&format!("{what} exited ({}); restarting in {delay:?}", status.map_or("did not start".into(), |s| s.to_string())));
        runs.push(Run { status, then_waited: delay });
        let until = Instant::now() + delay;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        delay = (delay * 2).min(backoff.max);
    }
    runs
}

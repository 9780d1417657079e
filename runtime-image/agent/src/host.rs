//! What every role of the agent shares (a service, an etcd member, a task): its options and
//! outcome, the AWS clients, the release made ready to run (a container from its image, or a
//! process from its tarball, in a cgroup of the service's limits), and log shipping.

use crate::boot::{self, BootError, Connect, Paths};
use crate::cloud::Cloud;
use crate::identity;
use crate::logs::{Logger, ERR, INFO};
use crate::supervise::{Backoff, Output, Spec, Stream};
use crate::unpack::Limits;
use gilliam_contract::runtime::ServiceConfig;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub paths: Paths,
    /// The unprivileged user services run as (when the agent runs as root).
    pub user: String,
    pub instance_id: Option<String>,
    /// The etcd binary, when no version-specific one is installed.
    pub etcd_bin: PathBuf,
    /// etcd's data directory; when unset, the member's volume is mounted at the default one.
    pub etcd_data_dir: Option<PathBuf>,
    pub health_interval: Duration,
    /// A service without a port is healthy once it ran this long without exiting.
    pub worker_grace: Duration,
    /// The drain ends once no connection was open for this long (or at drain_seconds).
    pub drain_quiet: Duration,
    pub stop_grace: Duration,
    pub backoff: Backoff,
    pub limits: Limits,
    /// The container engine's socket (image releases).
    pub docker_socket: PathBuf,
    /// Longest wait for a release's image to be pulled, retries included.
    pub pull_deadline: Duration,
    /// The cgroup filesystem a tarball release's process is limited through.
    pub cgroup_root: PathBuf,
    /// What the spool of lines CloudWatch Logs has not taken yet may hold on disk.
    pub log_spool_bytes: u64,
    /// How often the shipper sends what was logged.
    pub log_interval: Duration,
    /// What a task's agent runs once the task has ended and its lines are sent: the instance
    /// powers off, and (launched to terminate on shutdown) is gone.
    pub poweroff: Vec<String>,
}

impl Options {
    pub fn new(config: PathBuf, root: PathBuf) -> Options {
        Options {
            config,
            paths: Paths { root },
            user: "gilliam".into(),
            instance_id: None,
            etcd_bin: PathBuf::from("/usr/local/bin/etcd"),
            etcd_data_dir: None,
            health_interval: Duration::from_millis(500),
            worker_grace: Duration::from_secs(10),
            drain_quiet: Duration::from_secs(2),
            stop_grace: Duration::from_secs(20),
            backoff: Backoff::default(),
            limits: Limits::default(),
            log_spool_bytes: 64 * 1024 * 1024,
            log_interval: Duration::from_secs(1),
            docker_socket: PathBuf::from("/var/run/docker.sock"),
            pull_deadline: Duration::from_secs(600),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            poweroff: vec!["systemctl".into(), "poweroff".into()],
        }
    }
}

#[derive(Debug)]
pub enum RunError {
    /// The runtime config is unreadable or invalid: nothing could be signalled.
    Config(BootError),
    /// Boot failed; `signalled` says whether the FAILURE signal reached CloudFormation.
    Boot { error: BootError, signalled: bool },
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Config(e) => write!(f, "{e}"),
            RunError::Boot { error, signalled: true } => write!(f, "{error} (FAILURE signalled)"),
            RunError::Boot { error, signalled: false } => write!(f, "{error} (the FAILURE signal did not go through either)"),
        }
    }
}

impl std::error::Error for RunError {}

pub fn connected<'a>(connect: Connect<'_>, region: &str, log: &Logger) -> Result<Box<dyn Cloud + 'a>, RunError> {
    connect(region).map_err(|m| {
        log.error(&m);
        RunError::Boot { error: BootError::Host(m), signalled: false }
    })
}

/// The shipping thread, stopped (after a last send) by `finish`.
#[derive(Debug)]
pub struct Shipping {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Shipping {
    pub fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

/// Starts shipping `log`'s lines to the config's log group (the queue has held them since
/// the agent started); without a log group in the config, the queue is closed.
pub fn start_shipping(opts: &Options, c: &ServiceConfig, connect: Connect<'_>, log: &Arc<Logger>, instance: &str) -> Option<Shipping> {
    let queue = log.ship_queue()?;
    let Some(logs) = &c.logs else {
        queue.close();
        return None;
    };
    let stream = gilliam_contract::runtime::log_stream(c.release, &c.service, instance);
    let cloud = match connect(&c.region) {
        Ok(cloud) => cloud,
        Err(e) => {
            log.warn(&format!("logs are not shipped: {e}"));
            queue.close();
            return None;
        }
    };
    let spool_dir = opts.paths.state().join("spool");
    let spool = match crate::ship::Spool::open(&spool_dir, opts.log_spool_bytes) {
        Ok(s) => s,
        Err(e) => {
            log.warn(&format!("logs are not shipped: spool {}: {e}", spool_dir.display()));
            queue.close();
            return None;
        }
    };
    log.info(&format!("shipping logs to {} stream {stream} (spool {}, at most {} MiB)", logs.group, spool_dir.display(), opts.log_spool_bytes >> 20));
    let shipper = crate::ship::Shipper::new(crate::ship::CloudSink::new(cloud, &logs.group, &stream), queue, spool);
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, notice_log, interval) = (stop.clone(), log.clone(), opts.log_interval);
    let thread = std::thread::spawn(move || {
        crate::ship::run(shipper, &flag, interval, &|m| notice_log.warn(m));
    });
    Some(Shipping { stop, thread })
}

/// What runs: the release's image as a container (pulled by digest), or its tarball fetched,
/// verified and unpacked with the process in a cgroup of the service's limits; the service's
/// own command, or `argv` instead (a task).
pub fn unit(
    opts: &Options,
    c: &ServiceConfig,
    cloud: &dyn Cloud,
    log: &Arc<Logger>,
    argv: Option<&[String]>,
) -> Result<Box<dyn crate::supervise::Unit>, BootError> {
    let user = identity::service_user(&opts.user).map_err(BootError::Host)?;
    let home = user.as_ref().map_or_else(|| opts.paths.state().join("home").display().to_string(), |u| u.home.clone());
    if let Some(image) = &c.image {
        let env = boot::service_env(c, cloud, &opts.paths, &home)?;
        let engine = crate::container::Engine::connect(&opts.docker_socket).map_err(BootError::Host)?;
        let t = Instant::now();
        // A pull that fails (no permission, no such digest, the registry down past the deadline)
        // is the release's failure: FAILURE with the reason, and the serving release serves on.
        let registry = image.reference.split('/').next().unwrap_or_default().to_string();
        let auth = cloud
            .registry_credentials(&registry)
            .map_err(|e| BootError::Fetch(format!("cannot get credentials for registry {registry}: {e}")))?
            .map(|(username, password)| crate::container::Credentials { username, password, server: format!("https://{registry}") });
        let pulled = engine.pull(image, auth, opts.pull_deadline, &|m| log.info(m)).map_err(BootError::Fetch)?;
        log.info(&format!("image {} {} in {:.1?}", image.reference, if pulled { "pulled and verified" } else { "already present and verified" }, t.elapsed()));
        let spec = crate::container::ContainerSpec {
            name: format!("gilliam-{}-r{}-{}{}", c.formation, c.release, c.service, if argv.is_some() { "-task" } else { "" }),
            image: image.clone(),
            command: argv.map_or_else(|| c.script.split_whitespace().map(str::to_string).collect(), <[String]>::to_vec),
            env,
            limits: c.limits,
            user: user.as_ref().map(|u| format!("{}:{}", u.ids.uid, u.ids.gid)),
            output: Some(output(log)),
            stop_grace: opts.stop_grace,
        };
        return Ok(Box::new(crate::container::ContainerUnit { engine: Arc::new(engine), spec }));
    }
    let t = Instant::now();
    let prepared = boot::prepare_service(c, cloud, &opts.paths, &home, opts.limits)?;
    log.info(&format!(
        "artifact {} {} in {:.1?} at {}",
        c.artifact.as_ref().map_or("", |a| a.sha256.as_str()),
        if prepared.unpacked { "fetched, verified and unpacked" } else { "already verified and unpacked" },
        t.elapsed(),
        prepared.dir.display()
    ));
    // The service's limits, through a cgroup of its own; where the machine gives the agent none
    // to make (not root, no delegation), the service runs unlimited and the log says so.
    let cgroup = c.limits.and_then(|l| match crate::cgroup::create(&opts.cgroup_root, &format!("gilliam-{}", c.service), l) {
        Ok(cg) => {
            log.info(&format!("limits: {} MiB of memory, {} CPUs ({})", l.memory_mib, f64::from(l.cpu_millis) / 1000.0, cg.memory_file.display()));
            Some(Arc::new(cg))
        }
        Err(e) => {
            log.warn(&format!("limits not applied ({e}): the service runs without a memory or CPU limit"));
            None
        }
    });
    Ok(Box::new(Spec {
        script: c.script.clone(),
        argv: argv.map(<[String]>::to_vec).unwrap_or_default(),
        dir: prepared.dir,
        env: prepared.env,
        user: user.as_ref().map(|u| u.ids),
        output: Some(output(log)),
        stop_grace: opts.stop_grace,
        cgroup,
    }))
}

pub fn output(log: &Arc<Logger>) -> Output {
    let log = log.clone();
    Output(Arc::new(move |stream, line| match stream {
        Stream::Stdout => log.line("stdout", INFO, line),
        Stream::Stderr => log.line("stderr", ERR, line),
    }))
}

//! `gilliam-agent run`: read the runtime config and take its role. A release's service (or an
//! etcd member): boot it, prove it healthy, signal CloudFormation, keep it running, and drain
//! it on shutdown; every failure after the config is read is signalled as FAILURE, so that a
//! release that cannot boot never completes. A task: `crate::task`.

use crate::boot::{self, BootError};
use crate::cloud::{Cloud, SignalCall};
use crate::health;
use crate::identity;
use crate::logs::Logger;
use crate::supervise::{self, Spec, Watch};
use gilliam_contract::runtime::{EtcdConfig, RuntimeConfig, ServiceConfig, Signal};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::host::{connected, output, start_shipping, unit};
pub use crate::host::{Options, RunError};

pub use crate::boot::Connect;

/// Runs until `stop` is set (SIGTERM) or boot fails.
pub fn run(opts: &Options, connect: Connect<'_>, stop: &AtomicBool) -> Result<(), RunError> {
    // Release files readable by the service user, nothing writable by it.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let base = Logger::new("gilliam-agent", &[], &opts.paths.journal_socket());
    let cfg = match boot::load_config(&opts.config, connect, &opts.paths) {
        Ok(c) => c,
        Err(e) => {
            base.error(&e.to_string());
            return Err(RunError::Config(e));
        }
    };
    match cfg {
        RuntimeConfig::Service(c) => run_service(opts, &c, &base, connect, stop),
        RuntimeConfig::Etcd(c) => run_etcd(opts, &c, &base, connect, stop),
        RuntimeConfig::Pointer(_) => Err(RunError::Config(BootError::Config("a pointer to a pointer".into()))),
        RuntimeConfig::Task(t) => crate::task::run(opts, &t, &base, connect, stop),
    }
}

/// Signals CloudFormation and says so; returns whether the signal went through.
struct Signaller<'a> {
    cloud: &'a dyn Cloud,
    signal: &'a Signal,
    instance: String,
    log: &'a Logger,
}

impl Signaller<'_> {
    fn send(&self, success: bool) -> bool {
        let call = SignalCall { stack: self.signal.stack.clone(), resource: self.signal.resource.clone(), unique_id: self.instance.clone(), success };
        let word = if success { "SUCCESS" } else { "FAILURE" };
        match self.cloud.signal(&call) {
            Ok(()) => {
                self.log.info(&format!("signalled {word} to {} in stack {} as {}", call.resource, call.stack, call.unique_id));
                true
            }
            Err(e) => {
                self.log.error(&format!("could not signal {word} to {} in stack {}: {e}", call.resource, call.stack));
                false
            }
        }
    }

    fn fail(&self, error: BootError) -> RunError {
        self.log.error(&format!("boot failed: {error}"));
        RunError::Boot { signalled: self.send(false), error }
    }
}

fn run_service(opts: &Options, c: &ServiceConfig, base: &Logger, connect: Connect<'_>, stop: &AtomicBool) -> Result<(), RunError> {
    let release = c.release.to_string();
    let (instance, source) = identity::instance_id(opts.instance_id.as_deref());
    let log = Arc::new(base.with(&[
        ("GILLIAM_FORMATION", &c.formation),
        ("GILLIAM_SERVICE", &c.service),
        ("GILLIAM_RELEASE", &release),
        ("GILLIAM_INSTANCE", &instance),
    ]));
    let shipping = start_shipping(opts, c, connect, &log, &instance);
    let result = serve(opts, c, &log, connect, instance, source, stop);
    if let Some(s) = shipping {
        s.finish();
    }
    result
}

fn serve(
    opts: &Options,
    c: &ServiceConfig,
    log: &Arc<Logger>,
    connect: Connect<'_>,
    instance: String,
    source: &str,
    stop: &AtomicBool,
) -> Result<(), RunError> {
    let log = log.clone();
    let cloud = connected(connect, &c.region, &log)?;
    log.info(&format!("booting release {} of {} in formation {} on {instance} ({source})", c.release, c.service, c.formation));
    let signaller = Signaller { cloud: cloud.as_ref(), signal: &c.signal, instance, log: &log };
    let health = match (c.port, &c.health_path) {
        (Some(port), path) => Health::Http { port, path: path.clone().unwrap_or_else(|| "/".into()) },
        (None, _) => Health::Stays(opts.worker_grace),
    };
    let unit = unit(opts, c, cloud.as_ref(), &log, None).map_err(|e| signaller.fail(e))?;
    keep(opts, unit, health, c.port, c.drain_seconds, &c.signal, &signaller, &log, stop)
}

/// How the agent decides a fresh process is healthy.
#[derive(Debug, Clone)]
enum Health {
    Http {
        port: u16,
        path: String,
    },
    /// Still running, never restarted, after this long.
    Stays(Duration),
}

/// Starts the process under supervision, waits for health, signals, then runs until `stop`,
/// drains and stops the process.
#[allow(clippy::too_many_arguments)]
fn keep(
    opts: &Options,
    unit: Box<dyn crate::supervise::Unit>,
    health: Health,
    drain_port: Option<u16>,
    drain_seconds: u32,
    signal: &Signal,
    signaller: &Signaller<'_>,
    log: &Arc<Logger>,
    stop: &AtomicBool,
) -> Result<(), RunError> {
    let watch = Arc::new(Watch::default());
    let halt = Arc::new(AtomicBool::new(false));
    let supervisor = {
        let (watch, halt, log, backoff) = (watch.clone(), halt.clone(), log.clone(), opts.backoff);
        std::thread::spawn(move || supervise::supervise_watched(unit.as_ref(), backoff, &halt, None, &|m| log.warn(m), &watch))
    };
    let end = |halt: &AtomicBool| {
        halt.store(true, Ordering::SeqCst);
    };
    // Leave a minute before CloudFormation's own timeout, so that FAILURE is what it sees.
    let timeout = Duration::from_secs(u64::from(signal.timeout_seconds));
    let deadline = timeout.saturating_sub(Duration::from_secs(60)).max(timeout / 2);
    let started = Instant::now();
    let verdict: Result<(), String> = loop {
        if stop.load(Ordering::SeqCst) {
            break Err("stopped before it was healthy".into());
        }
        match &health {
            Health::Http { port, path } => match health::probe(*port, path, opts.health_interval.max(Duration::from_millis(200))) {
                Ok(code) if health::healthy(code) => break Ok(()),
                Ok(code) if started.elapsed() >= deadline => break Err(format!("{path} on port {port} answered {code} after {deadline:?}")),
                Err(e) if started.elapsed() >= deadline => break Err(format!("not healthy after {deadline:?}: {e}")),
                _ => {}
            },
            Health::Stays(grace) => {
                if watch.starts.load(Ordering::SeqCst) > 1 || (started.elapsed() > Duration::from_secs(1) && watch.pid.load(Ordering::SeqCst) == 0) {
                    break Err(format!("the process exited within its first {grace:?}"));
                }
                if started.elapsed() >= *grace {
                    break Ok(());
                }
            }
        }
        std::thread::sleep(opts.health_interval);
    };
    match verdict {
        Ok(()) => {
            log.info(&format!("healthy {:.0} ms after start", started.elapsed().as_secs_f64() * 1000.0));
            signaller.send(true);
        }
        Err(m) if stop.load(Ordering::SeqCst) => {
            log.warn(&m);
            end(&halt);
            let _ = supervisor.join();
            return Ok(());
        }
        Err(m) => {
            end(&halt);
            let _ = supervisor.join();
            return Err(signaller.fail(BootError::Unhealthy(m)));
        }
    }
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(port) = drain_port {
        log.info(&format!("draining: waiting for in-flight requests on port {port} (up to {drain_seconds} s)"));
        let (took, left) = crate::drain::drain(port, Duration::from_secs(u64::from(drain_seconds)), opts.drain_quiet);
        log.info(&format!("drained in {:.1?}{}", took, if left > 0 { format!(", {left} connections still open at the deadline") } else { String::new() }));
    }
    end(&halt);
    let _ = supervisor.join();
    log.info("stopped");
    Ok(())
}

/// etcd's binary: a version-specific one when the image has it.
fn etcd_binary(opts: &Options, version: Option<&str>) -> PathBuf {
    if let Some(v) = version {
        let p = opts.paths.root.join("opt/etcd").join(v).join("etcd");
        if p.is_file() {
            return p;
        }
    }
    opts.etcd_bin.clone()
}

fn url_port(url: &str, default: u16) -> u16 {
    url.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).unwrap_or(default)
}

fn run_etcd(opts: &Options, c: &EtcdConfig, base: &Logger, connect: Connect<'_>, stop: &AtomicBool) -> Result<(), RunError> {
    // An etcd member's lines stay in the journal.
    if let Some(q) = base.ship_queue() {
        q.close();
    }
    let log = Arc::new(base.with(&[("GILLIAM_FORMATION", &c.formation), ("GILLIAM_SERVICE", &c.service), ("GILLIAM_MEMBER", &c.member)]));
    let cloud = connected(connect, &c.region, &log)?;
    let (instance, source) = identity::instance_id(opts.instance_id.as_deref());
    log.info(&format!("booting etcd member {} of formation {} on {instance} ({source})", c.member, c.formation));
    let signaller = Signaller { cloud: cloud.as_ref(), signal: &c.signal, instance: instance.clone(), log: &log };
    let user = identity::service_user(&opts.user).map_err(|m| signaller.fail(BootError::Host(m)))?;
    let attached = cloud.attach(&c.attach.tag_key, &c.attach.tag_value, &instance).map_err(|e| signaller.fail(BootError::Host(e.to_string())))?;
    log.info(&format!(
        "attached interface {} and volume {}",
        attached.interface.as_ref().map_or("(none)".into(), |(id, ip)| format!("{id} ({ip})")),
        attached.volume.as_deref().unwrap_or("(none)")
    ));
    let data = match &opts.etcd_data_dir {
        Some(d) => d.clone(),
        None => {
            let d = opts.paths.state().join("etcd");
            if let Some(v) = &attached.volume {
                mount_volume(v, &d, &log).map_err(|m| signaller.fail(BootError::Host(m)))?;
            }
            d
        }
    };
    std::fs::create_dir_all(&data).map_err(|e| signaller.fail(BootError::Host(format!("{}: {e}", data.display()))))?;
    if let Some(u) = &user {
        let (uid, gid) = (rustix::process::Uid::from_raw(u.ids.uid), rustix::process::Gid::from_raw(u.ids.gid));
        rustix::fs::chown(&data, Some(uid), Some(gid)).map_err(|e| signaller.fail(BootError::Host(format!("chown {}: {e}", data.display()))))?;
        // etcd insists on a private data directory.
        rustix::fs::chmod(&data, rustix::fs::Mode::from_raw_mode(0o700))
            .map_err(|e| signaller.fail(BootError::Host(format!("chmod {}: {e}", data.display()))))?;
    }
    let client = url_port(&c.advertise_client_url, 2379);
    let peer = url_port(&c.advertise_peer_url, 2380);
    let script = format!(
        "{bin} --name {m} --data-dir {d} --listen-client-urls http://0.0.0.0:{client} --advertise-client-urls {acu} --listen-peer-urls http://0.0.0.0:{peer} \
         --initial-advertise-peer-urls {apu} --initial-cluster {ic} --initial-cluster-state new --initial-cluster-token {f}-{s}",
        bin = etcd_binary(opts, c.version.as_deref()).display(),
        m = c.member,
        d = data.display(),
        acu = c.advertise_client_url,
        apu = c.advertise_peer_url,
        ic = c.initial_cluster,
        f = c.formation,
        s = c.service,
    );
    let home = user.as_ref().map_or_else(|| data.display().to_string(), |u| u.home.clone());
    let env = [("PATH", "/usr/local/bin:/usr/bin:/bin"), ("HOME", home.as_str())].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let spec = Spec {
        script,
        argv: Vec::new(),
        dir: data,
        env,
        user: user.as_ref().map(|u| u.ids),
        output: Some(output(&log)),
        stop_grace: opts.stop_grace,
        cgroup: None,
    };
    keep(opts, Box::new(spec), Health::Http { port: client, path: "/health".into() }, Some(client), c.drain_seconds, &c.signal, &signaller, &log, stop)
}

/// Mounts the member's volume at `dir`, making a file system on it the first time. The
/// device shows up as NVMe (by its volume id) on Nitro instances, as xvdf on older ones.
fn mount_volume(volume: &str, dir: &Path, log: &Logger) -> Result<(), String> {
    let nvme = format!("/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{}", volume.replace('-', ""));
    let candidates = [nvme.as_str(), "/dev/xvdf", "/dev/sdf"];
    let until = Instant::now() + Duration::from_secs(180);
    let device = loop {
        if let Some(d) = candidates.iter().find(|d| Path::new(d).exists()) {
            break d.to_string();
        }
        if Instant::now() > until {
            return Err(format!("volume {volume} attached but no device appeared ({})", candidates.join(", ")));
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(&dir.display().to_string())) {
        return Ok(());
    }
    let run = |cmd: &str, args: &[&str]| -> Result<std::process::Output, String> {
        std::process::Command::new(cmd).args(args).output().map_err(|e| format!("cannot run {cmd}: {e}"))
    };
    let fs = run("blkid", &["-o", "value", "-s", "TYPE", &device])?;
    if String::from_utf8_lossy(&fs.stdout).trim().is_empty() {
        log.info(&format!("making a file system on {device} (volume {volume}, first boot of this member)"));
        let out = run("mkfs.ext4", &["-q", "-L", "gilliam-etcd", &device])?;
        if !out.status.success() {
            return Err(format!("mkfs.ext4 {device}: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = run("mount", &["-o", "noatime", &device, &dir.display().to_string()])?;
    if !out.status.success() {
        return Err(format!("mount {device} {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr).trim()));
    }
    log.info(&format!("mounted {device} at {}", dir.display()));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_come_from_advertised_urls() {
        assert_eq!(super::url_port("http://etcd-0.f.internal:2379", 1), 2379);
        assert_eq!(super::url_port("http://etcd-0.f.internal:12380/", 1), 12380);
        assert_eq!(super::url_port("http://etcd-0.f.internal", 2379), 2379);
    }
}

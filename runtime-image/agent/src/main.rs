//! The gilliam-agent binary: parses arguments, installs the SIGTERM handler, calls
//! `agent::run` with the real AWS clients, and maps the outcome to documented exit codes.

use clap::{Parser, Subcommand};
use gilliam_agent::agent::{self, Options, RunError};
use gilliam_agent::cloud::Cloud;
use gilliam_agent::patience::{Patience, Patient};
use gilliam_agent::sdk::SdkCloud;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Exit codes: 0 stopped cleanly (SIGTERM); 1 the runtime config is unreadable or invalid
/// (nothing signalled); 2 usage; 3 boot failed (artifact, secrets, health: FAILURE signalled).
#[derive(Debug, Parser)]
#[command(name = "gilliam-agent", version, about = "Boots a gilliam release on this instance and keeps it running", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 stopped cleanly (SIGTERM); 1 runtime config unreadable or invalid (nothing signalled); \
2 usage; 3 boot failed: artifact, secrets or health (FAILURE signalled to CloudFormation).";

#[derive(Debug, Subcommand)]
// Parsed once, at start: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Boot the release the runtime config describes, signal CloudFormation, run until SIGTERM.
    Run {
        /// The runtime config userdata wrote.
        #[arg(long, default_value = "/etc/gilliam/runtime.json")]
        config: PathBuf,
        /// Prefix for the agent's own directories (/var/lib/gilliam, the journal socket).
        #[arg(long, env = "GILLIAM_ROOT", default_value = "/")]
        root: PathBuf,
        /// The unprivileged user services run as (when the agent runs as root).
        #[arg(long, env = "GILLIAM_USER", default_value = "gilliam")]
        user: String,
        /// This instance's id (default: from the instance metadata service).
        #[arg(long, env = "GILLIAM_INSTANCE_ID")]
        instance_id: Option<String>,
        /// etcd's binary, when the image has no version-specific one under /opt/etcd/VERSION/.
        #[arg(long, env = "GILLIAM_ETCD", default_value = "/usr/local/bin/etcd")]
        etcd: PathBuf,
        /// etcd's data directory (default: the member's volume, mounted at /var/lib/gilliam/etcd).
        #[arg(long, env = "GILLIAM_ETCD_DATA_DIR")]
        etcd_data_dir: Option<PathBuf>,
        /// Milliseconds between health probes.
        #[arg(long, env = "GILLIAM_HEALTH_INTERVAL_MS", default_value_t = 500)]
        health_interval_ms: u64,
        /// A service without a port is healthy once it ran this long without exiting.
        #[arg(long, env = "GILLIAM_WORKER_GRACE_SECONDS", default_value_t = 10)]
        worker_grace_seconds: u64,
        /// Seconds the service has between SIGTERM and SIGKILL when stopped.
        #[arg(long, env = "GILLIAM_STOP_GRACE_SECONDS", default_value_t = 20)]
        stop_grace_seconds: u64,
        /// The container engine's socket (image releases).
        #[arg(long, env = "GILLIAM_DOCKER_SOCKET", default_value = "/var/run/docker.sock")]
        docker_socket: PathBuf,
        /// Longest wait for a release's image to be pulled, retries included.
        #[arg(long, env = "GILLIAM_PULL_DEADLINE_SECONDS", default_value_t = 600)]
        pull_deadline_seconds: u64,
        /// What the spool of lines not yet taken by CloudWatch Logs may hold on disk (MiB);
        /// past it, the oldest lines are dropped and counted.
        #[arg(long, env = "GILLIAM_LOG_SPOOL_MIB", default_value_t = 64)]
        log_spool_mib: u64,
        /// Milliseconds between sends to CloudWatch Logs.
        #[arg(long, env = "GILLIAM_LOG_INTERVAL_MS", default_value_t = 1000)]
        log_interval_ms: u64,
        /// What a task's agent runs when the task is over (the instance terminates on shutdown).
        #[arg(long, env = "GILLIAM_POWEROFF", default_value = "systemctl poweroff")]
        poweroff: String,
    },
    /// Read and check a runtime config without touching AWS; print what it would run.
    Check {
        #[arg(long, default_value = "/etc/gilliam/runtime.json")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run {
            config,
            root,
            user,
            instance_id,
            etcd,
            etcd_data_dir,
            health_interval_ms,
            worker_grace_seconds,
            stop_grace_seconds,
            docker_socket,
            pull_deadline_seconds,
            log_spool_mib,
            log_interval_ms,
            poweroff,
        } => {
            let mut opts = Options::new(config, root);
            opts.user = user;
            opts.instance_id = instance_id;
            opts.etcd_bin = etcd;
            opts.etcd_data_dir = etcd_data_dir;
            opts.health_interval = Duration::from_millis(health_interval_ms.max(10));
            opts.worker_grace = Duration::from_secs(worker_grace_seconds);
            opts.stop_grace = Duration::from_secs(stop_grace_seconds);
            opts.docker_socket = docker_socket;
            opts.pull_deadline = Duration::from_secs(pull_deadline_seconds);
            opts.log_spool_bytes = log_spool_mib.max(1) * 1024 * 1024;
            opts.log_interval = Duration::from_millis(log_interval_ms.max(50));
            opts.poweroff = poweroff.split_whitespace().map(str::to_string).collect();
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
                if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
                    eprintln!("gilliam-agent: cannot handle signal {sig}: {e}");
                    return ExitCode::from(3);
                }
            }
            // IAM propagation of a new role and an old etcd member still holding its volume
            // pass on their own: retried for a bounded time (gilliam_agent::patience).
            let connect = |region: &str| {
                SdkCloud::connect(region).map(|c| {
                    let say = Box::new(|m: &str| eprintln!("gilliam-agent: {m}"));
                    Box::new(Patient::new(c, Patience::default(), say)) as Box<dyn Cloud>
                })
            };
            match agent::run(&opts, &connect, &stop) {
                Ok(()) => ExitCode::SUCCESS,
                Err(RunError::Config(e)) => {
                    eprintln!("gilliam-agent: {e}");
                    ExitCode::from(1)
                }
                Err(e @ RunError::Boot { .. }) => {
                    eprintln!("gilliam-agent: {e}");
                    ExitCode::from(3)
                }
            }
        }
    }
}

fn check(config: &std::path::Path) -> ExitCode {
    use gilliam_contract::runtime::{parse, RuntimeConfig};
    let bytes = match std::fs::read(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gilliam-agent: cannot read {}: {e}", config.display());
            return ExitCode::from(1);
        }
    };
    match parse(&bytes) {
        Ok(RuntimeConfig::Service(s)) => {
            let what = match (&s.artifact, &s.image) {
                (Some(a), _) => format!("artifact {} sha256 {}", a.url, a.sha256),
                (None, Some(i)) => format!("image {}", i.reference),
                (None, None) => "no artifact".into(),
            };
            println!("service {} of release {} (formation {}): runs {:?}; {what}", s.service, s.release, s.formation, s.script);
            if let Some(l) = s.limits {
                println!("limits: {} MiB of memory, {} CPUs", l.memory_mib, f64::from(l.cpu_millis) / 1000.0);
            }
            println!(
                "signals {} in stack {}; health {}",
                s.signal.resource,
                s.signal.stack,
                s.port.map_or("(worker)".into(), |p| format!("{}:{p}", s.health_path.as_deref().unwrap_or("/")))
            );
            ExitCode::SUCCESS
        }
        Ok(RuntimeConfig::Etcd(e)) => {
            println!("etcd member {} of formation {}; signals {} in stack {}", e.member, e.formation, e.signal.resource, e.signal.stack);
            ExitCode::SUCCESS
        }
        Ok(RuntimeConfig::Task(t)) => {
            println!("task ({}): runs {:?} within {} s, then powers off", t.purpose, t.command, t.deadline_seconds);
            ExitCode::SUCCESS
        }
        Ok(RuntimeConfig::Pointer(p)) => {
            println!("pointer to {} (sha256 {})", p.config_url, p.config_sha256);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gilliam-agent: {}: {e}", config.display());
            ExitCode::from(1)
        }
    }
}

//! A one-off process (`role: task`: the release phase, `gilliam run`): boot the release as
//! its service would, run one command instead of the service, at most once per instance and
//! within its deadline, ship its output, log its exit status as the stream's last event, and
//! power the instance off. Nothing is signalled: no stack waits on a task.

use crate::boot::{self, BootError, Connect};
use crate::host::{self, Options, RunError};
use crate::identity;
use crate::logs::{Logger, ERR, INFO};
use crate::supervise::Running;
use gilliam_contract::runtime::{RuntimeConfig, ServiceConfig, TaskConfig, TASK_DEADLINE_REASON, TASK_EXIT_FIELD, TASK_REASON_FIELD};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a task ended: the command's exit status (128 + the signal that ended it, as shells
/// say), or `None` when it did not run to its end, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub exit: Option<i32>,
    pub reason: Option<String>,
}

/// Runs the task, reports how it ended, and powers the instance off (whatever happened).
pub fn run(opts: &Options, t: &TaskConfig, base: &Logger, connect: Connect<'_>, stop: &AtomicBool) -> Result<(), RunError> {
    let started = Instant::now();
    let service = match service_config(t, connect, opts) {
        Ok(c) => c,
        Err(e) => {
            base.error(&format!("task: {e}"));
            power_off(opts, base);
            return Err(RunError::Config(e));
        }
    };
    let (instance, source) = identity::instance_id(opts.instance_id.as_deref());
    let release = service.release.to_string();
    let log = Arc::new(base.with(&[
        ("GILLIAM_FORMATION", &service.formation),
        ("GILLIAM_SERVICE", &service.service),
        ("GILLIAM_RELEASE", &release),
        ("GILLIAM_INSTANCE", &instance),
    ]));
    let shipping = host::start_shipping(opts, &service, connect, &log, &instance);
    log.info(&format!(
        "task ({}) of release {} as {} in formation {} on {instance} ({source}): {:?}, within {} s",
        t.purpose, service.release, service.service, service.formation, t.command, t.deadline_seconds
    ));
    let deadline = started + Duration::from_secs(u64::from(t.deadline_seconds));
    let ended = once(opts, t, &service, &log, connect, &instance, deadline, stop);
    let message = match (&ended.exit, &ended.reason) {
        (Some(code), _) => format!("task finished: exit status {code}"),
        (None, Some(why)) => format!("task did not finish: {why}"),
        (None, None) => "task did not finish".to_string(),
    };
    let level = if ended.exit == Some(0) { INFO } else { ERR };
    let extra = [(TASK_EXIT_FIELD, ended.exit.map_or(serde_json::Value::Null, serde_json::Value::from)), (TASK_REASON_FIELD, ended.reason.clone().into())];
    log.line_with("agent", level, &message, &extra);
    // Every line sent (or spooled) before the instance goes.
    if let Some(s) = shipping {
        s.finish();
    }
    power_off(opts, &log);
    Ok(())
}

/// The service config the task runs as (its userdata's, a pointer followed).
fn service_config(t: &TaskConfig, connect: Connect<'_>, opts: &Options) -> Result<ServiceConfig, BootError> {
    let bytes = serde_json::to_vec(&t.service).map_err(|e| BootError::Config(e.to_string()))?;
    let inner = gilliam_contract::runtime::parse(&bytes).map_err(|e| BootError::Config(format!("the task's service: {e}")))?;
    match boot::resolve(inner, connect, &opts.paths)? {
        RuntimeConfig::Service(c) => Ok(*c),
        _ => Err(BootError::Config("a task runs as a service of the release; its config names none".into())),
    }
}

/// Runs the command once: never a second time on this instance (an agent restarted by systemd
/// after a crash reports the first run as interrupted instead).
#[allow(clippy::too_many_arguments)]
fn once(
    opts: &Options,
    t: &TaskConfig,
    c: &ServiceConfig,
    log: &Arc<Logger>,
    connect: Connect<'_>,
    instance: &str,
    deadline: Instant,
    stop: &AtomicBool,
) -> Ended {
    let not_run = |why: String| Ended { exit: None, reason: Some(why) };
    let marker = opts.paths.state().join("tasks").join(format!("{instance}.started"));
    if marker.exists() {
        return not_run("the agent restarted while the command ran; it is not run a second time".into());
    }
    let cloud = match host::connected(connect, &c.region, log) {
        Ok(c) => c,
        Err(e) => return not_run(e.to_string()),
    };
    let unit = match host::unit(opts, c, cloud.as_ref(), log, Some(&t.command)) {
        Ok(u) => u,
        Err(e) => return not_run(format!("the release could not be prepared: {e}")),
    };
    if let Err(e) = marker.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&marker, b"")) {
        return not_run(format!("cannot write {}: {e}", marker.display()));
    }
    let mut run = match unit.launch() {
        Ok(r) => r,
        Err(e) => return not_run(format!("cannot start {}: {e}", unit.describe())),
    };
    log.info(&format!("started {} (pid {})", unit.describe(), run.pid()));
    let ended = wait(run.as_mut(), unit.stop_grace(), deadline, stop);
    run.finish();
    ended
}

/// Waits for the command to exit; at the deadline (or on SIGTERM) it is ended.
pub fn wait(run: &mut dyn Running, grace: Duration, deadline: Instant, stop: &AtomicBool) -> Ended {
    let code = |s: std::process::ExitStatus| s.code().or_else(|| s.signal().map(|n| 128 + n));
    loop {
        match run.try_wait() {
            Ok(Some(s)) => return Ended { exit: code(s), reason: s.signal().map(|n| format!("killed by signal {n}")) },
            Ok(None) => {}
            Err(e) => return Ended { exit: None, reason: Some(format!("cannot watch the command: {e}")) },
        }
        let why = if Instant::now() >= deadline {
            TASK_DEADLINE_REASON
        } else if stop.load(Ordering::SeqCst) {
            "stopped: the instance is shutting down"
        } else {
            std::thread::sleep(run.poll_interval());
            continue;
        };
        run.terminate(grace);
        return Ended { exit: None, reason: Some(why.into()) };
    }
}

/// Runs the configured power-off command: the instance shuts down, and terminates.
fn power_off(opts: &Options, log: &Logger) {
    let Some((program, args)) = opts.poweroff.split_first() else { return };
    log.info(&format!("powering off: {}", opts.poweroff.join(" ")));
    match std::process::Command::new(program).args(args).status() {
        Ok(s) if s.success() => {}
        Ok(s) => log.error(&format!("{} exited with {s}: the userdata's backstop powers the instance off", opts.poweroff.join(" "))),
        Err(e) => log.error(&format!("cannot run {program}: {e}: the userdata's backstop powers the instance off")),
    }
}

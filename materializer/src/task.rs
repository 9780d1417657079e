//! One-off instances, for the release phase and `gilliam run`: an instance launched from the
//! service's own launch template (its image, instance type, role, security group and
//! network), with userdata that makes its agent run one command instead of the service
//! (`gilliam_compiler::task`); the command's output and exit status read back from the
//! instance's log stream. The instance terminates itself when the command ends (it powers off,
//! launched with `InstanceInitiatedShutdownBehavior=terminate`), at the agent's deadline, or at
//! the userdata's backstop: a `gilliam` killed mid-task leaves nothing running for long. Here,
//! it is also terminated once its result is read, and on a timeout.

use crate::aws::{Aws, AwsError, InstanceLaunch};
use crate::bundle::Bundle;
use crate::error::Error;
use crate::retry::retry;
use gilliam_contract::runtime::{TASK_DEADLINE_REASON, TASK_EXIT_FIELD, TASK_REASON_FIELD};
use std::time::Duration;

/// What to run, as which service of which release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    pub release: u32,
    pub service: String,
    pub command: Vec<String>,
    /// The command's own time, from the agent's start on the instance.
    pub timeout: Duration,
    /// For the log and the tags: `release phase`, `gilliam run`.
    pub purpose: String,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    pub instance: String,
    /// The command's exit status (128 + a signal), `None` when it did not run to its end.
    pub exit: Option<i32>,
    /// Why there is no exit status.
    pub reason: Option<String>,
    /// It ran past its time: killed by the agent at its deadline, or no result here in time.
    pub timed_out: bool,
}

impl TaskOutcome {
    /// One line for the operator: `exit status 0`, `did not finish: ...`.
    pub fn describe(&self) -> String {
        match (self.exit, &self.reason) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(why)) => format!("did not finish: {why}"),
            (None, None) => "did not finish".into(),
        }
    }
}

/// How long an instance may take from launch to its agent's start (boot, fetch or pull
/// included) before its command's own time counts; past both, the task is ended here.
pub const BOOT_ALLOWANCE: Duration = Duration::from_secs(15 * 60);

/// How long the stream is read for a result after the instance has gone: CloudWatch Logs
/// shows events a few seconds after they are sent.
const AFTER_GONE: Duration = Duration::from_secs(30);

/// Where the service's instances come from: its launch template (physical id), its userdata and
/// image as the release's template holds them, and the subnets of its Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub launch_template: String,
    pub userdata: String,
    pub image: String,
    pub subnets: Vec<String>,
}

/// Reads where `service`'s instances come from, from the release's bundle and its stack.
pub async fn source<A: Aws>(aws: &A, bundle: &Bundle, service: &str) -> Result<Source, Error> {
    let m = &bundle.manifest;
    let n = m.release.number;
    let entry = m.services.iter().find(|s| s.name == service).ok_or_else(|| {
        let own: Vec<&str> = m.services.iter().filter(|s| s.auto_scaling_group.is_some()).map(|s| s.name.as_str()).collect();
        Error::NotFound(format!("release {n} has no service {service}: it has {}", own.join(", ")))
    })?;
    let asg = entry
        .auto_scaling_group
        .as_deref()
        .ok_or_else(|| Error::Refused(format!("{service} is an auxiliary service of the formation: a task runs as one of its own services")))?;
    let id = asg.strip_suffix("AutoScalingGroup").unwrap_or(asg);
    let lt = format!("{id}LaunchTemplate");
    let stack =
        m.stacks.iter().find(|s| s.name == entry.stack).ok_or_else(|| Error::Corrupt(format!("release {n}'s manifest names no stack {}", entry.stack)))?;
    let template: serde_json::Value =
        serde_json::from_slice(bundle.file(&stack.template)?).map_err(|e| Error::Corrupt(format!("{}: not a template: {e}", stack.template)))?;
    let resources = &template["Resources"];
    let data = &resources[&lt]["Properties"]["LaunchTemplateData"];
    let userdata = data["UserData"]["Fn::Base64"].as_str().ok_or_else(|| Error::Corrupt(format!("{}: {lt} has no userdata", stack.template)))?;
    let subnets: Vec<String> = resources[asg]["Properties"]["VPCZoneIdentifier"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if subnets.is_empty() {
        return Err(Error::Corrupt(format!("{}: {asg} names no subnets", stack.template)));
    }
    let found = retry("list the release stack's resources", || aws.stack_resources(&entry.stack)).await?;
    let physical = found
        .into_iter()
        .find(|(logical, _, _)| *logical == lt)
        .map(|(_, physical, _)| physical)
        .ok_or_else(|| Error::NotFound(format!("stack {} has no launch template {lt}: is release {n} deployed? (`gilliam releases`)", entry.stack)))?;
    Ok(Source { launch_template: physical, userdata: userdata.to_string(), image: data["ImageId"].as_str().unwrap_or_default().to_string(), subnets })
}

/// Launches the task's instance, trying the next subnet when a zone has no capacity.
pub async fn launch<A: Aws>(aws: &A, formation: &str, src: &Source, spec: &TaskSpec) -> Result<String, Error> {
    let deadline_seconds = u32::try_from(spec.timeout.as_secs()).unwrap_or(u32::MAX);
    let task = gilliam_compiler::task::Task {
        formation,
        release: spec.release,
        service: &spec.service,
        purpose: &spec.purpose,
        command: &spec.command,
        deadline_seconds,
        image: &src.image,
    };
    let user_data = gilliam_compiler::task::userdata(&task, &src.userdata).map_err(Error::Refused)?;
    // Unique to this launch (RunInstances' client token: 64 ASCII characters at most).
    let token = format!("gilliam-{}", crate::clock::nonce());
    let tags = vec![
        ("Name".to_string(), format!("{formation}-r{}-{}-task", spec.release, spec.service)),
        ("gilliam:formation".to_string(), formation.to_string()),
        ("gilliam:release".to_string(), spec.release.to_string()),
        ("gilliam:service".to_string(), spec.service.clone()),
        ("gilliam:task".to_string(), spec.purpose.clone()),
    ];
    // Start in a different zone each time; move on where a zone has no capacity.
    let first = (crate::clock::epoch_ms() as usize) % src.subnets.len();
    let mut last = None;
    for i in 0..src.subnets.len() {
        let subnet = &src.subnets[(first + i) % src.subnets.len()];
        let req = InstanceLaunch {
            launch_template_id: src.launch_template.clone(),
            version: "$Latest".into(),
            subnet: subnet.clone(),
            user_data: user_data.clone(),
            tags: tags.clone(),
            client_token: format!("{token}-{i}"),
            shutdown_terminates: true,
        };
        match retry("launch the task's instance", || aws.run_instance(&req)).await {
            Ok(id) => return Ok(id),
            Err(Error::Aws { err: AwsError::Invalid(m) | AwsError::Other(m), .. })
                if m.contains("InsufficientInstanceCapacity") || m.contains("Unsupported") =>
            {
                last = Some(format!("subnet {subnet}: {m}"));
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::Refused(format!("no subnet of {} had capacity for the task: {}", spec.service, last.unwrap_or_default())))
}

/// One line of the task's output: where it came from (`stdout`, `stderr`, `agent`) and the text.
pub type Output<'a> = &'a (dyn Fn(&str, &str) + Sync);

/// Follows the instance's log stream until the agent's last event (its exit status), the
/// instance ending without one, or `limit`; hands every line to `out`. The instance is
/// terminated when it is over (it powers itself off too).
pub async fn follow<A: Aws>(
    aws: &A,
    group: &str,
    stream: &str,
    instance: &str,
    limit: Duration,
    poll: Duration,
    out: Output<'_>,
) -> Result<TaskOutcome, Error> {
    let ids = [instance.to_string()];
    let started = tokio::time::Instant::now();
    // Each read starts at the newest event seen; the events of that millisecond already
    // handed on are known by id.
    let mut since = crate::clock::epoch_ms() - 60_000;
    let mut seen: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut gone_at: Option<tokio::time::Instant> = None;
    let outcome = loop {
        let mut ended = None;
        // The stream is made by the agent's first send: none yet is no lines yet.
        let mut events = crate::logs::events(aws, group, Some(stream), since).await?.unwrap_or_default();
        events.retain(|e| e.stream == stream);
        events.sort_by_key(|e| e.ts_ms);
        for e in events {
            if e.ts_ms > since {
                since = e.ts_ms;
                seen.clear();
            }
            if !seen.insert(e.id.clone()) {
                continue;
            }
            let json: serde_json::Value = serde_json::from_str(&e.message).unwrap_or_default();
            let field = |k: &str| json.get(k).and_then(serde_json::Value::as_str);
            if let Some(exit) = json.get(TASK_EXIT_FIELD) {
                let reason = field(TASK_REASON_FIELD).map(str::to_string);
                ended = Some(TaskOutcome {
                    instance: instance.to_string(),
                    exit: exit.as_i64().and_then(|c| i32::try_from(c).ok()),
                    timed_out: reason.as_deref() == Some(TASK_DEADLINE_REASON),
                    reason,
                });
            }
            // A line some other writer put there is passed on as it is.
            out(field("source").unwrap_or_default(), field("message").unwrap_or(&e.message));
        }
        if let Some(o) = ended {
            break o;
        }
        if started.elapsed() >= limit {
            break TaskOutcome {
                instance: instance.to_string(),
                exit: None,
                reason: Some(format!("no result after {limit:?}: the instance was terminated")),
                timed_out: true,
            };
        }
        if gone_at.is_none() {
            let states = retry("describe the task's instance", || aws.instance_states(&ids)).await?;
            if !states.get(instance).is_some_and(|s| matches!(s.name.as_str(), "pending" | "running")) {
                gone_at = Some(tokio::time::Instant::now());
            }
        }
        if let Some(at) = gone_at {
            if at.elapsed() >= AFTER_GONE {
                let states = retry("describe the task's instance", || aws.instance_states(&ids)).await?;
                let how = states
                    .get(instance)
                    .map_or_else(|| "gone".to_string(), |s| if s.reason.is_empty() { s.name.clone() } else { format!("{} ({})", s.name, s.reason) });
                break TaskOutcome {
                    instance: instance.to_string(),
                    exit: None,
                    reason: Some(format!("the instance ended without reporting an exit status: {how}")),
                    timed_out: false,
                };
            }
        }
        tokio::time::sleep(poll).await;
    };
    // Whatever the agent does next, the instance does not outlive its task.
    retry("terminate the task's instance", || aws.terminate_instances(&ids)).await?;
    Ok(outcome)
}

/// Runs `spec` on a one-off instance of `bundle`'s release: launches it, follows its output
/// into `out`, and returns how the command ended.
pub async fn run<A: Aws>(
    aws: &A,
    bundle: &Bundle,
    spec: &TaskSpec,
    poll: Duration,
    say: &(dyn Fn(&str) + Sync),
    out: Output<'_>,
) -> Result<TaskOutcome, Error> {
    let m = &bundle.manifest;
    let src = source(aws, bundle, &spec.service).await?;
    let instance = launch(aws, &m.formation.name, &src, spec).await?;
    say(&format!("{} of release {}: {} on {instance} ({})", spec.purpose, spec.release, spec.command.join(" "), spec.service));
    let group = gilliam_compiler::names::log_group(&m.formation.name);
    let stream = gilliam_contract::runtime::log_stream(spec.release, &spec.service, &instance);
    follow(aws, &group, &stream, &instance, spec.timeout + BOOT_ALLOWANCE, poll, out).await
}

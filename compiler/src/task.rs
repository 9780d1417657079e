//! One-off instances (the release phase, `gilliam run`): the task runtime config and the
//! userdata that hands it to the agent, made from a service's own userdata. Pure: the
//! materializer reads the service's userdata from the release's template and launches the
//! instance.

use crate::cfn::MAX_USERDATA_BYTES;
use crate::runtime::{self, TaskConfig};

const TASK_TEMPLATE: &str = include_str!("../../templates/task.sh");

/// Minutes past the deadline the backstop powers the instance off: the agent kills the command
/// at the deadline, reports and powers off itself; the backstop is for an agent that cannot.
pub const BACKSTOP_MARGIN_MINUTES: u32 = 10;

/// What to run, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task<'a> {
    pub formation: &'a str,
    pub release: u32,
    pub service: &'a str,
    /// For the log and the userdata's comment: `release phase`, `gilliam run`.
    pub purpose: &'a str,
    pub command: &'a [String],
    pub deadline_seconds: u32,
    /// The runtime image (AMI) the service's launch template names, for the missing-agent hint.
    pub image: &'a str,
}

/// The task's userdata, from the service's own (`service_userdata`, as its launch template
/// holds it): its runtime config (a service config or a pointer to one) goes inside the task's.
pub fn userdata(t: &Task<'_>, service_userdata: &str) -> Result<String, String> {
    let inner = runtime::from_userdata(service_userdata)
        .ok_or_else(|| format!("the userdata of {} in release {} holds no gilliam runtime config", t.service, t.release))?;
    let service: serde_json::Value =
        serde_json::from_str(inner).map_err(|e| format!("the runtime config of {} in release {} is not JSON: {e}", t.service, t.release))?;
    if t.command.is_empty() || t.command[0].trim().is_empty() {
        return Err("the command is empty: give the program and its arguments".into());
    }
    let config = TaskConfig {
        format_version: crate::RUNTIME_CONFIG_VERSION,
        role: "task".into(),
        purpose: t.purpose.to_string(),
        command: t.command.to_vec(),
        deadline_seconds: t.deadline_seconds,
        service,
    };
    let text = serde_json::to_string(&config).map_err(|e| format!("internal error: {e}"))?;
    // A heredoc ends at its marker: a command that holds it would end it early.
    if text.lines().any(|l| l == "GILLIAM_RUNTIME_CONFIG") {
        return Err("the command holds the line GILLIAM_RUNTIME_CONFIG, which userdata cannot carry".into());
    }
    let one_line = |s: &str| s.replace(['\n', '\r'], " ");
    let script = TASK_TEMPLATE
        .replace("{{formation}}", t.formation)
        .replace("{{release}}", &t.release.to_string())
        .replace("{{service}}", t.service)
        .replace("{{purpose}}", &one_line(t.purpose))
        .replace("{{image}}", &one_line(t.image))
        .replace("{{backstop_minutes}}", &backstop_minutes(t.deadline_seconds).to_string())
        .replace("{{runtime_config}}", &text);
    if script.len() > MAX_USERDATA_BYTES {
        return Err(format!(
            "the task's userdata would be {} bytes, over EC2's {MAX_USERDATA_BYTES}: shorten the command (the service's own runtime config takes {} bytes)",
            script.len(),
            inner.len()
        ));
    }
    Ok(script)
}

/// When the userdata's backstop powers the instance off: the deadline, rounded up to minutes,
/// plus the margin.
pub fn backstop_minutes(deadline_seconds: u32) -> u32 {
    deadline_seconds.div_ceil(60) + BACKSTOP_MARGIN_MINUTES
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "#!/bin/bash\ncat > x <<'GILLIAM_RUNTIME_CONFIG'\n{\"format_version\": 1, \"role\": \"service\"}\nGILLIAM_RUNTIME_CONFIG\n";

    fn task(command: &[String]) -> Task<'_> {
        Task { formation: "shop", release: 7, service: "web", purpose: "release phase", command, deadline_seconds: 600, image: "ami-1" }
    }

    #[test]
    fn the_task_config_carries_the_service_config_and_parses() {
        let cmd = vec!["bin/migrate".to_string(), "--all things".to_string()];
        let script = userdata(&task(&cmd), SERVICE).expect("userdata");
        let cfg = runtime::from_userdata(&script).expect("config");
        match runtime::parse(cfg.as_bytes()).expect("parses") {
            runtime::RuntimeConfig::Task(t) => {
                assert_eq!(t.command, cmd);
                assert_eq!(t.deadline_seconds, 600);
                assert_eq!(t.service["role"], "service");
            }
            other => panic!("not a task: {other:?}"),
        }
        assert!(script.contains("shutdown -h +20 "), "backstop at the deadline plus the margin:\n{script}");
    }

    #[test]
    fn refuses_what_userdata_cannot_carry() {
        assert!(userdata(&task(&[]), SERVICE).expect_err("empty").contains("empty"));
        let marker = vec!["sh".to_string(), "-c".to_string(), "x\nGILLIAM_RUNTIME_CONFIG\ny".to_string()];
        // JSON escapes the newline: the marker never stands on a line of its own.
        assert!(userdata(&task(&marker), SERVICE).is_ok());
        let huge = vec!["x".repeat(20_000)];
        assert!(userdata(&task(&huge), SERVICE).expect_err("too big").contains("over EC2's 16384"));
        assert!(userdata(&task(&["a".to_string()]), "#!/bin/bash\necho no config\n").expect_err("no config").contains("no gilliam runtime config"));
    }
}

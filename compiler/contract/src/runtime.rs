//! The runtime config: what userdata hands the on-instance agent (format 1). The compiler
//! writes it; the agent reads it with these types. A contract test parses every config the
//! compiler emits with them, so that the two never drift apart.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    /// The stack whose resource is signalled.
    pub stack: String,
    /// Logical ID of the Auto Scaling group with the CreationPolicy.
    pub resource: String,
    pub timeout_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub url: String,
    pub sha256: String,
}

/// A container image, pulled by digest and checked against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// `REGISTRY/REPOSITORY@sha256:...` (no tag).
    pub reference: String,
    /// `sha256:...`: the manifest digest the pulled image must have.
    pub digest: String,
}

/// What the service may use of the instance: its process's cgroup (a tarball release), its
/// container's limits (an image release).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory, in MiB; the kernel kills the process past it.
    pub memory_mib: u32,
    /// CPU, in thousandths of a CPU (1500: one and a half); throttled past it.
    pub cpu_millis: u32,
}

/// A secret-bearing variable: the agent reads Secrets Manager secret `secret` (a JSON object)
/// and substitutes its fields into `format` (`postgres://{username}:{password}@...`),
/// percent-encoded unless `raw` (secret config: `{API_KEY}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub secret: String,
    pub format: String,
    /// Substitute the fields as they are (config values), not percent-encoded (URLs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw: bool,
}

/// A document to fetch from S3 and check against its sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pinned {
    pub url: String,
    pub sha256: String,
}

/// A service of the release: fetch the artifact, run `script`, keep it healthy, signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub format_version: u32,
    pub role: String,
    pub formation: String,
    pub release: u32,
    pub service: String,
    pub region: String,
    pub signal: Signal,
    /// The tarball to fetch, check and unpack (`None`: the release is a container image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
    /// The container image to pull by digest and run (`None`: a tarball release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// The command: a script in the unpacked tarball, or the command run in the image (empty:
    /// the image's own entrypoint and command).
    pub script: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Where the agent ships every line (the service's output and its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<Logs>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub health_path: Option<String>,
    pub drain_seconds: u32,
    /// Every variable the process gets, but the shared discovery ones and resolved secrets.
    pub env: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, SecretRef>,
    /// Large formations: discovery variables in one shared document, applied below `env`.
    #[serde(default)]
    pub discovery: Option<Pinned>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    /// The formation's CloudWatch Logs group, `/gilliam/FORMATION`; the stream is
    /// `rRELEASE/SERVICE/INSTANCE`.
    pub group: String,
}

/// The log stream of an instance of a release's service.
pub fn log_stream(release: u32, service: &str, instance: &str) -> String {
    format!("r{release}/{service}/{instance}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Attach {
    pub tag_key: String,
    pub tag_value: String,
}

/// A member of a self-hosted etcd cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    pub format_version: u32,
    pub role: String,
    pub formation: String,
    pub service: String,
    pub member: String,
    pub region: String,
    pub signal: Signal,
    #[serde(default)]
    pub version: Option<String>,
    /// The tag by which the member finds its network interface and volume.
    pub attach: Attach,
    pub advertise_client_url: String,
    pub advertise_peer_url: String,
    pub initial_cluster: String,
    pub drain_seconds: u32,
}

/// Userdata that carries only where the config is, when it would not fit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pointer {
    pub format_version: u32,
    pub config_url: String,
    pub config_sha256: String,
    pub region: String,
}

/// A one-off process (the release phase, `gilliam run`): on an instance launched for it from
/// the service's launch template, the agent boots the service's release as `service` says,
/// runs `command` once instead of the service's script, ships its output to the stream
/// `rRELEASE/SERVICE/INSTANCE`, logs its exit status as the stream's last event
/// ([`TASK_EXIT_FIELD`]) and powers the instance off (which terminates it: the instance is
/// launched with `InstanceInitiatedShutdownBehavior=terminate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    pub format_version: u32,
    pub role: String,
    /// Who asked, for the log: `release phase`, `gilliam run by arn:...`.
    pub purpose: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Seconds from the agent's start after which the command is killed (and the instance
    /// powers off all the same).
    pub deadline_seconds: u32,
    /// The service's own runtime config, as its userdata holds it (a service config, or a
    /// pointer to one).
    pub service: serde_json::Value,
}

/// The field of a task's last log event that carries the command's exit status (a number;
/// `null` when the command did not run or was killed at its deadline).
pub const TASK_EXIT_FIELD: &str = "task_exit";

/// The field beside [`TASK_EXIT_FIELD`] that says why a task ended without an exit status.
pub const TASK_REASON_FIELD: &str = "task_reason";

/// The [`TASK_REASON_FIELD`] of a command the agent killed at its deadline.
pub const TASK_DEADLINE_REASON: &str = "killed at its deadline";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeConfig {
    Service(Box<ServiceConfig>),
    Etcd(Box<EtcdConfig>),
    Pointer(Pointer),
    Task(Box<TaskConfig>),
}

/// The shared discovery document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    pub format_version: u32,
    pub env: BTreeMap<String, String>,
}

/// Reads a runtime config, refusing unknown versions, roles and fields.
pub fn parse(bytes: &[u8]) -> Result<RuntimeConfig, String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("runtime config is not JSON: {e}"))?;
    match v.get("format_version").and_then(serde_json::Value::as_u64) {
        Some(1) => {}
        other => return Err(format!("runtime config format_version {other:?}; this agent reads 1")),
    }
    let typed = |r: Result<RuntimeConfig, serde_json::Error>| r.map_err(|e| format!("runtime config: {e}"));
    if v.get("config_url").is_some() {
        return typed(serde_json::from_value(v).map(RuntimeConfig::Pointer));
    }
    match v.get("role").and_then(serde_json::Value::as_str) {
        Some("service") => typed(serde_json::from_value(v).map(|c| RuntimeConfig::Service(Box::new(c)))),
        Some("etcd") => typed(serde_json::from_value(v).map(|c| RuntimeConfig::Etcd(Box::new(c)))),
        Some("task") => typed(serde_json::from_value(v).map(|c| RuntimeConfig::Task(Box::new(c)))),
        other => Err(format!("runtime config role {other:?}; expected \"service\", \"etcd\" or \"task\"")),
    }
}

/// The runtime config inside a userdata script (between the heredoc markers).
pub fn from_userdata(script: &str) -> Option<&str> {
    let start = script.find("<<'GILLIAM_RUNTIME_CONFIG'\n")? + "<<'GILLIAM_RUNTIME_CONFIG'\n".len();
    let end = script[start..].find("\nGILLIAM_RUNTIME_CONFIG\n")?;
    Some(&script[start..start + end])
}

//! The published manifest (`manifest.json`): the ideal state that the materializer converges to
//! and that downstream tools read. Its JSON Schema is generated from these types.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped on any change that an older reader would misread.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Version of this document's format; readers refuse versions they do not know.
    pub format_version: u32,
    pub formation: FormationInfo,
    pub release: ReleaseInfo,
    /// Every stack of this compile, in the order they are created (dependencies first).
    pub stacks: Vec<StackEntry>,
    pub services: Vec<ServiceEntry>,
    /// Public routes, in listener-rule priority order per routing group.
    pub routes: Vec<RouteEntry>,
    /// Service discovery: environment variable name to internal URL.
    pub internal_urls: BTreeMap<String, String>,
    /// Weights the formation's routing templates were compiled with.
    pub traffic: Vec<TrafficEntry>,
    /// Files the materializer uploads to the outputs bucket before creating the release's
    /// stacks (shared discovery document, runtime configs too large for userdata).
    pub uploads: Vec<UploadEntry>,
    /// The inputs, copied into the output directory so that the materializer can re-render
    /// routing templates for other traffic weights with the same compiler.
    pub inputs: InputFiles,
    /// Things that compile but deserve attention.
    pub warnings: Vec<String>,
    /// The auxiliaries' credentials in Secrets Manager, which the materializer keeps (makes,
    /// adopts when one was left by an earlier formation, restores when scheduled for deletion)
    /// before the formation stack reads them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretEntry>,
    /// The header that reaches this release whatever its weight, on every public route and
    /// internal name: `None` when the formation has no HTTP service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_route: Option<TestRoute>,
    /// How traffic moving to a release is judged and announced.
    #[serde(default, skip_serializing_if = "Delivery::is_default")]
    pub delivery: Delivery,
}

/// A request carrying `header: value` reaches this release's target groups only, at any
/// weight, through a listener rule evaluated just before each route's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TestRoute {
    pub header: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// Metric analysis between the steps of a gradual shift and during a bake window; `None`:
    /// only target health is watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    #[serde(default, skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
    #[serde(default, skip_serializing_if = "Notifications::is_empty")]
    pub notifications: Notifications,
    /// During a split, a client stays with the release it first reached for this long (the
    /// weighted forward's target group stickiness); `None`: every request is weighed anew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness_seconds: Option<u32>,
    /// The release phase (`x-gilliam: {release: ...}`): a command run once per release, on a
    /// one-off instance of `service`'s launch template, after the release's stacks exist and
    /// before any traffic moves; its failure stops the deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_phase: Option<ReleasePhase>,
}

/// A command run once per release in the release's own artifact, environment and role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ReleasePhase {
    /// The service whose launch template, environment and secrets the command runs with.
    pub service: String,
    /// The program and its arguments (a path inside the release, or on the image's PATH).
    pub command: Vec<String>,
    /// Past this long (from the instance's launch) the command is killed and the phase fails.
    pub timeout_seconds: u32,
}

/// A release phase's timeout when none is given.
pub const DEFAULT_RELEASE_PHASE_TIMEOUT_SECONDS: u32 = 1800;

impl Delivery {
    pub fn is_default(&self) -> bool {
        *self == Delivery::default()
    }
}

/// Thresholds a release must stay within, over the same window as its baseline (the release
/// it takes traffic from).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Analysis {
    /// Most 5xx answers from the release's targets, in percent of its requests.
    pub max_error_rate_percent: f64,
    /// Highest p99 target response time, in milliseconds; `None`: no absolute ceiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ms: Option<u32>,
    /// The release's error rate and p99 may be at most this multiple of the baseline's.
    pub max_ratio_vs_baseline: f64,
    /// Fewer requests than this in the window: too little traffic to judge (never a pass).
    pub min_requests: u32,
    /// How often the metrics are read while a step is watched.
    pub interval_seconds: u32,
    /// How old a minute of metrics must be to be judged: ELBv2's datapoints reach CloudWatch a
    /// minute or two late, so a window ends this long before now (0 on a local AWS).
    #[serde(default = "default_lag_seconds")]
    pub lag_seconds: u32,
    /// CloudWatch alarms that abort the shift when in ALARM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
}

/// Commands `gilliam` runs where it runs, around a traffic shift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Runs when the new release is healthy, before any weight moves: failing stops the shift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_traffic: Option<String>,
    /// Runs after the last step: failing rolls the traffic back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_traffic: Option<String>,
    /// Runs after an abort has put the traffic back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_abort: Option<String>,
    /// A hook still running after this long is killed and counts as failed.
    pub timeout_seconds: u32,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks { pre_traffic: None, post_traffic: None, on_abort: None, timeout_seconds: DEFAULT_HOOK_TIMEOUT_SECONDS }
    }
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        *self == Hooks::default()
    }
    /// Whether any hook is set.
    pub fn any(&self) -> bool {
        self.pre_traffic.is_some() || self.post_traffic.is_some() || self.on_abort.is_some()
    }
}

/// Where deploy events are sent (see the README for the JSON body).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Notifications {
    /// POSTed a JSON body per event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// SNS topic ARN: the same JSON as the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sns_topic: Option<String>,
    /// EventBridge bus name or ARN: the same JSON as the event's detail, source `gilliam`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_bus: Option<String>,
}

impl Notifications {
    pub fn is_empty(&self) -> bool {
        *self == Notifications::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretEntry {
    /// `gilliam/FORMATION/AUXILIARY`.
    pub name: String,
    pub auxiliary: String,
    /// The user name the secret holds beside its generated password.
    pub username: String,
    /// For a cache: the formation stack's outputs whose address and port the materializer
    /// writes into the secret (`host`, `port`), so that TLS clients connect to the name the
    /// service's certificate covers. (A database's are written by CloudFormation.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_outputs: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FormationInfo {
    pub name: String,
    pub region: String,
    pub vpc: String,
    /// Bucket for templates, artifacts and published outputs.
    pub outputs_bucket: String,
    /// S3 key prefix of this formation's objects in the bucket.
    pub s3_prefix: String,
    /// Private DNS zone in which services and auxiliaries are named.
    pub internal_domain: String,
    pub keep_releases: u32,
    /// Releases kept cold beyond `keep_releases`: no traffic, no routing, groups at zero,
    /// stacks kept; a rollback to one warms it first.
    #[serde(default)]
    pub cold_releases: u32,
    /// Releases that can be live at once: the serving one, those kept, one being deployed.
    pub max_live_releases: u32,
    pub routing_groups: u32,
    pub https: bool,
    pub public_url: Option<String>,
    /// What the formation holds in the region at its peak (a deploy under way, every kept and
    /// cold release): the preflight counts it against the account's quotas and usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footprint: Option<Footprint>,
}

/// The account-wide resources a formation holds at its peak: `keep_releases + 2` live releases
/// (the serving one, those kept, one being deployed) and `cold_releases` cold ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Footprint {
    /// ELBv2 target groups (each release has its own).
    pub target_groups: u32,
    /// Application load balancers (the routing groups' public and internal ones).
    pub load_balancers: u32,
    /// CloudFormation stacks: each release's, the routing stacks and the formation stack.
    pub stacks: u32,
    /// The rules per load balancer the layout was made for (the stage's quota): a routing
    /// update is refused when, at its peak, a listener would hold more.
    pub rules_per_load_balancer: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ReleaseInfo {
    pub number: u32,
    pub revision: String,
    pub created: String,
    pub artifact_url: String,
    pub artifact_sha256: String,
    pub runtime_image: String,
    /// Release config (environment for every service). Not for secrets.
    pub config: BTreeMap<String, String>,
    /// Secret config: variable to the Secrets Manager secret holding its value (never the value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum StackRole {
    /// Security groups, private zone, auxiliaries: lives as long as the formation.
    Formation,
    /// One group of load balancers, listeners, route rules and service DNS names.
    Routing,
    /// One release's launch templates, Auto Scaling groups and target groups.
    Release,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StackEntry {
    pub name: String,
    pub role: StackRole,
    /// Template path, relative to the output directory.
    pub template: String,
    pub sha256: String,
    pub bytes: usize,
    pub resources: usize,
    /// Over 51,200 bytes: must be uploaded and passed as TemplateURL.
    pub upload_required: bool,
    /// Where the materializer uploads the template.
    pub s3_key: String,
    /// Stacks that must exist first (their exports are imported).
    pub depends_on: Vec<String>,
    pub capabilities: Vec<String>,
    pub routing_group: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// Own code with a port: reachable over HTTP.
    Web,
    /// Own code without a port.
    Worker,
    /// Database, cache or coordination service in the formation stack.
    Auxiliary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub min: u32,
    pub desired: u32,
    pub max: u32,
    /// Target average CPU percentage; scaling is elastic when max > min.
    pub cpu: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    pub name: String,
    pub kind: ServiceKind,
    pub auxiliary_type: Option<String>,
    pub script: Option<String>,
    pub port: Option<u16>,
    pub health_path: Option<String>,
    pub scale: Option<Scale>,
    pub instance_type: String,
    pub internal: bool,
    /// Stack holding this service's resources for this release (or the formation stack).
    pub stack: String,
    /// Logical ID of the Auto Scaling group in `stack` (signalled on boot, scaled by `gilliam scale`).
    pub auto_scaling_group: Option<String>,
    pub routing_group: Option<u32>,
    pub internal_target_group_export: Option<String>,
    pub public_target_group_export: Option<String>,
    /// Environment variable other services read to reach this one.
    pub url_variable: Option<String>,
    pub internal_url: Option<String>,
    pub userdata: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct UploadEntry {
    /// Path relative to the output directory.
    pub path: String,
    pub s3_key: String,
    pub sha256: String,
    pub bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    pub service: String,
    pub route: String,
    pub host: Option<String>,
    pub path: Option<String>,
    /// What the request becomes before it reaches the service (`/api/{rest}`), when rewritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<String>,
    pub routing_group: u32,
    pub priority: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TrafficEntry {
    pub release: u32,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct InputFiles {
    pub app: FileEntry,
    pub release: FileEntry,
    pub stage: FileEntry,
}

/// The manifest's JSON Schema as committed (what `gilliam-compile --print-schema` prints): the
/// compile-only build then needs no schemars. `schema_json` generates it from the types; a
/// test (feature `schema`) keeps the two equal.
pub const SCHEMA: &str = include_str!("../../manifest.schema.json");

/// The manifest's JSON Schema, generated from the types.
#[cfg(feature = "schema")]
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Manifest);
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

/// Defaults: a release is judged on at least 50 requests, with at most 1% of them 5xx, and
/// neither its error rate nor its p99 more than 1.5 times the baseline's; checked every minute
/// (ELBv2 publishes its metrics each minute).
pub const DEFAULT_ANALYSIS: Analysis = Analysis {
    max_error_rate_percent: 1.0,
    max_p99_ms: None,
    max_ratio_vs_baseline: 1.5,
    min_requests: 50,
    interval_seconds: 60,
    lag_seconds: DEFAULT_LAG_SECONDS,
    alarms: Vec::new(),
};

/// ELBv2 sends its datapoints in 60-second intervals, and they reach CloudWatch late (commonly
/// a minute or two, sometimes more): judged minutes end three minutes before now unless
/// `analysis.lag` says otherwise.
pub const DEFAULT_LAG_SECONDS: u32 = 180;

fn default_lag_seconds() -> u32 {
    DEFAULT_LAG_SECONDS
}
pub const DEFAULT_HOOK_TIMEOUT_SECONDS: u32 = 600;
